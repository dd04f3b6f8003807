"""The board's pixel path, reproduced on the host.

Everything the K210 feeds its KPU passes through an RGB565 `image.Image` and `pix_to_ai()`,
which expands each channel with round(v*255/31) (R, B) and round(v*255/63) (G). Calibration,
held-out evaluation and the eval host all use `board_pixels`, so TensorFlow, the nncase
simulator and the board see exactly the same uint8 values.
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


def board_pixels(source, width, height):
    """Path or PIL image -> the uint8 HxWx3 RGB pixels the KPU receives."""
    image = load_rgb(source) if isinstance(source, str) else source.convert("RGB")
    return expand_rgb565(quantize_rgb565(np.asarray(resize(image, width, height))))


def to_nchw(hwc_batch):
    """uint8 [N,H,W,3] -> [N,3,H,W] (the kmodel's input layout)."""
    return np.ascontiguousarray(np.asarray(hwc_batch).transpose(0, 3, 1, 2))


INPUT_SCALES = ("0-1", "-1-1", "0-255", "mean-std")


def model_input(pixels_u8, input_scale):
    """uint8 [..., 3] RGB -> the float32 the TF graph expects, per the declared input scale
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
