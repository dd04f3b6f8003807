import hashlib
import os
import re
import subprocess

import numpy as np
import pytest
from PIL import Image

from host import pixels
from host.errors import UserError


def test_expansion_matches_firmware_rule_on_every_level():
    for v in range(32):
        assert pixels.EXPAND5[v] == int(round(v * 255 / 31.0))
    for v in range(64):
        assert pixels.EXPAND6[v] == int(round(v * 255 / 63.0))


def test_rgb565_round_trip_is_idempotent_and_big_endian():
    rng = np.random.RandomState(0)
    rgb = rng.randint(0, 256, size=(7, 5, 3)).astype(np.uint8)
    once = pixels.expand_rgb565(pixels.quantize_rgb565(rgb))
    twice = pixels.expand_rgb565(pixels.quantize_rgb565(once))
    assert np.array_equal(once, twice)
    assert np.max(np.abs(once.astype(int) - rgb)) <= 4  # half a 6/5-bit step
    packed = pixels.quantize_rgb565(np.array([[[255, 0, 0]]], dtype=np.uint8))
    assert pixels.rgb565_bytes(packed) == b"\xf8\x00"
    assert np.array_equal(pixels.rgb565_from_bytes(b"\xf8\x00", 1, 1), packed)


def test_board_pixels_resizes(tmp_path):
    path = str(tmp_path / "a.png")
    Image.new("RGB", (64, 48), (200, 100, 50)).save(path)
    px = pixels.board_pixels(path, 32, 24)
    assert px.shape == (24, 32, 3) and px.dtype == np.uint8
    assert tuple(px[0, 0]) == (197, 101, 49)


def test_list_images_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        pixels.list_images(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="no .jpg"):
        pixels.list_images(str(tmp_path))
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(UserError, match="bad.jpg"):
        pixels.load_rgb(pixels.list_images(str(tmp_path))[0])


def test_model_input_scales():
    u8 = np.array([0, 255], dtype=np.uint8)
    assert np.allclose(pixels.model_input(u8, {"scale": "0-1"}), [0, 1])
    assert np.allclose(pixels.model_input(u8, {"scale": "-1-1"}), [-1, 1])
    ms = pixels.model_input(np.array([[255, 0, 51]], np.uint8),
                            {"scale": "mean-std", "mean": [0.5, 0.5, 0.2], "std": [0.5, 0.25, 0.1]})
    assert np.allclose(ms, [[1.0, -2.0, 0.0]])


# sha256 of COLOR_RGB565_TO_GRAYSCALE for the 65536 RGB565 values (index: the RGB565 value,
# r5 << 11 | g6 << 5 | b5): yuv_table[...*3] + 128 of sipeed/MaixPy-v1
# components/micropython/port/src/omv/img/yuv_tab.c (the const table of the default
# CONFIG_MAIXPY_OMV_CONV_YUV_FAST=y builds), read at the byte-swapped index as the CPU reads
# the big-endian pixel; computed from the firmware source when this test was written
FIRMWARE_GRAYSCALE_SHA256 = "aac80feb1d6e563f2a8d8e7782b4bc9e55ed59dcb52ec2624fba622948944c97"
MAIXPY_MIRROR = "/work/.mirror/sipeed+MaixPy-v1/repo"


def _every_rgb565_gray():
    return pixels.luminance(pixels.expand_rgb565(np.arange(65536, dtype=np.uint16)))[..., 0]


def test_luminance_is_the_firmwares_yuv_table_on_every_rgb565_value():
    gray = _every_rgb565_gray()
    assert hashlib.sha256(gray.tobytes()).hexdigest() == FIRMWARE_GRAYSCALE_SHA256
    # BT.601 weights, truncated: white 255, black 0, pure green brighter than pure red
    assert gray[0xFFFF] == 255 and gray[0] == 0 and gray[0x07E0] > gray[0xF800] > gray[0x001F]


@pytest.mark.skipif(not os.path.isdir(MAIXPY_MIRROR), reason="no MaixPy-v1 mirror here")
def test_luminance_against_the_table_in_the_firmware_source():
    text = subprocess.run(
        ["git", "--git-dir", MAIXPY_MIRROR, "show",
         "HEAD:components/micropython/port/src/omv/img/yuv_tab.c"],
        stdout=subprocess.PIPE, check=True, universal_newlines=True).stdout
    body = text[text.index("const int8_t yuv_table[196608] = {"):]
    values = np.array(re.findall(r"-?\d+", body[body.index("{"):])[:196608], dtype=np.int64)
    in_memory = np.arange(65536, dtype=np.uint16).byteswap()   # CPU's view of BE pixel bytes
    firmware = (values[0::3][in_memory.astype(np.int64)] + 128).astype(np.uint8)
    np.testing.assert_array_equal(_every_rgb565_gray(), firmware)


def test_vboard_to_grayscale_is_the_hosts_luminance():
    """The virtual board's to_grayscale (its own transcription of the table's generator) and
    host.pixels agree on every RGB565 value."""
    from host.vboard import image as vimage
    img = vimage.Image(size=(256, 256))
    img._px[...] = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    gray = img.to_grayscale()
    assert gray.format() == 4 and gray.size() == 65536    # sensor.GRAYSCALE
    np.testing.assert_array_equal(np.frombuffer(gray.to_bytes(), np.uint8), _every_rgb565_gray())


def test_board_gray_pixels(tmp_path):
    path = str(tmp_path / "a.png")
    Image.fromarray(np.full((10, 20, 3), (200, 100, 50), np.uint8)).save(path)
    gray = pixels.board_gray_pixels(path, 8, 4)
    assert gray.shape == (4, 8, 1) and gray.dtype == np.uint8
    rgb = pixels.board_pixels(path, 8, 4)[0, 0].astype(float)
    assert gray[0, 0, 0] == int(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])


def test_gray_input_scale():
    scale = pixels.gray_input_scale({"scale": "mean-std", "mean": [0.5] * 3, "std": [0.25] * 3})
    assert scale["mean"] == [0.5] and scale["std"] == [0.25]
    x = pixels.model_input(np.full((2, 2, 1), 255, np.uint8), scale)
    assert x.shape == (2, 2, 1) and np.allclose(x, 2.0)
    with pytest.raises(UserError, match="--mean 0.1,0.2,0.3 gives 3 different values"):
        pixels.gray_input_scale({"scale": "mean-std", "mean": [0.1, 0.2, 0.3], "std": [1] * 3})
