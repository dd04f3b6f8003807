"""The board's pixel path, reproduced on the host.

Everything the K210 feeds its KPU passes through an `image.Image` and `pix_to_ai()`. RGB565
images give three planes, each channel expanded with round(v*255/31) (R, B) and
round(v*255/63) (G); GRAYSCALE images give their w*h luminance bytes. Calibration, held-out
evaluation and the eval host all use `board_pixels` / `board_gray_pixels`, so TensorFlow, the
nncase simulator and the board see exactly the same uint8 values.
"""
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from host.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm")

# Firmware expansion tables (pix_to_ai): 5-bit and 6-bit levels to 8 bits, rounded.
EXPAND5 = np.array([(v * 255 + 15) // 31 for v in range(32)], dtype=np.uint8)
EXPAND6 = np.array([(v * 255 + 31) // 63 for v in range(64)], dtype=np.uint8)


def list_images(directory, what="image directory"):
    if not os.path.isdir(directory):
        raise UserError("%s %s does not exist: pass an existing folder of .jpg/.png images"
                        % (what, directory))
    names = sorted(n for n in os.listdir(directory)
                   if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith("."))
    if not names:
        raise UserError("%s %s holds no .jpg/.png/.bmp images: add some" % (what, directory))
    return [os.path.join(directory, n) for n in names]


def load_rgb(path):
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise UserError("cannot read image %s (%s): remove it or replace it with a valid "
                        "JPEG/PNG" % (path, exc.__class__.__name__))


def resize(image, width, height):
    if image.size == (width, height):
        return image
    return image.resize((width, height), Image.BILINEAR)


def quantize_rgb565(rgb):
    """uint8 HxWx3 -> uint16 HxW RGB565, rounding to the nearest level like OpenMV's
    COLOR_R8_TO_R5 ((v*31+127)/255)."""
    rgb = np.asarray(rgb, dtype=np.uint32)
    r = (rgb[..., 0] * 31 + 127) // 255
    g = (rgb[..., 1] * 63 + 127) // 255
    b = (rgb[..., 2] * 31 + 127) // 255
    return ((r << 11) | (g << 5) | b).astype(np.uint16)


def expand_rgb565(rgb565):
    """uint16 HxW RGB565 -> uint8 HxWx3 with the firmware's pix_to_ai rule."""
    v = np.asarray(rgb565, dtype=np.uint16)
    return np.stack([EXPAND5[v >> 11], EXPAND6[(v >> 5) & 0x3F], EXPAND5[v & 0x1F]], axis=-1)


def rgb565_bytes(rgb565):
    """Big-endian pixel bytes, as an RGB565 Image holds them in the board's memory."""
    return np.asarray(rgb565, dtype=">u2").tobytes()


def rgb565_from_bytes(data, width, height):
    return np.frombuffer(data, dtype=">u2").reshape(height, width).astype(np.uint16)


def through_rgb565(rgb_u8):
    """uint8 HxWx3 at the model's size -> the pixels the KPU receives from them (an RGB565
    Image, then pix_to_ai's expansion)."""
    return expand_rgb565(quantize_rgb565(rgb_u8))


def board_pixels(source, width, height):
    """Path or PIL image -> the uint8 HxWx3 RGB pixels the KPU receives."""
    image = load_rgb(source) if isinstance(source, str) else source.convert("RGB")
    return through_rgb565(np.asarray(resize(image, width, height)))


def luminance(rgb_u8):
    """uint8 [..., 3] RGB (expanded RGB565 levels) -> uint8 [..., 1]: the GRAYSCALE value the
    firmware gives an RGB565 pixel (`to_grayscale()`: COLOR_RGB565_TO_GRAYSCALE, yuv_table's
    Y + 128). The table (sipeed/MaixPy-v1 omv/img/yuv_tab.c, the build default
    CONFIG_MAIXPY_OMV_CONV_YUV_FAST=y) is OpenMV's gen_rgb2yuv.py output:
    int(0.299*R8 + 0.587*G8 + 0.114*B8) in double precision, truncated; equal for all 65536
    pixels (tests/test_pixels.py checks the formula against a copy of the table's Y column)."""
    rgb = np.asarray(rgb_u8, dtype=np.float64)
    y = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return np.trunc(y).astype(np.uint8)[..., None]


def board_gray_pixels(source, width, height):
    """Path or PIL image -> the uint8 HxWx1 luminance a GRAYSCALE Image of it holds on the
    board: the image quantised to RGB565 (as an rgb565 payload or a camera frame), then the
    firmware's `to_grayscale()` luminance. A gray8 payload carries exactly these bytes."""
    return luminance(board_pixels(source, width, height))


def to_nchw(hwc_batch):
    """uint8 [N,H,W,C] -> [N,C,H,W] (the kmodel's input layout)."""
    return np.ascontiguousarray(np.asarray(hwc_batch).transpose(0, 3, 1, 2))


INPUT_SCALES = ("0-1", "-1-1", "0-255", "mean-std")
INPUT_FORMATS = {3: "rgb", 1: "gray"}   # manifest input.format by channel count


def gray_input_scale(input_scale):
    """A 3-channel --mean/--std (the defaults, or one value given thrice) -> one value each for
    a grayscale model; nncase normalises a 1-channel input with mean[0] and std[0] only
    (kendryte/nncase v1.9.0 src/transforms/neutral/pre_process_setting.cpp)."""
    reduced = dict(input_scale)
    for key in ("mean", "std"):
        values = list(input_scale[key])
        if len(set(values)) != 1:
            raise UserError("--%s %s gives %d different values, but the model's input is "
                            "grayscale (1 channel): give one value" %
                            (key, ",".join("%g" % v for v in values), len(set(values))))
        reduced[key] = values[:1]
    return reduced


def model_input(pixels_u8, input_scale):
    """uint8 [..., C] (RGB or gray; mean/std hold C or 1 values) -> the float32 the TF graph expects, per the declared input scale
    (design.md "Input scales"; nncase applies the same mapping inside the kmodel)."""
    x = np.asarray(pixels_u8, dtype=np.float32)
    scale = input_scale["scale"]
    if scale == "0-1":
        return x / 255.0
    if scale == "-1-1":
        return x / 127.5 - 1.0
    if scale == "0-255":
        return x
    if scale == "mean-std":
        mean = np.asarray(input_scale["mean"], dtype=np.float32)
        std = np.asarray(input_scale["std"], dtype=np.float32)
        return (x / 255.0 - mean) / std
    raise UserError("unknown input scale %r: use one of %s" % (scale, ", ".join(INPUT_SCALES)))
