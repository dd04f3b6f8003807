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
