"""The firmware's `image` module: an RGB565 (or grayscale) frame plus its KPU "AI" buffer.

The firmware keeps two buffers per image: RGB565 pixels (big-endian in memory) that every
image operation works on, and a planar R,G,B uint8 buffer for the KPU that only the
camera fills by itself; anything else needs `pix_to_ai()` after its last pixel edit.
This module is written from the firmware's rules on purpose (not by importing
host.pixels), so the host's reproduction of the board is checked against an independent
implementation.
"""
import io
import weakref

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from host.vboard import fs

GRAYSCALE = 1
RGB565 = 2
JPEG = 4

# pix_to_ai expansion: 5-bit R,B -> round(v*255/31), 6-bit G -> round(v*255/63).
_EXPAND5 = np.array([int(v * 255.0 / 31 + 0.5) for v in range(32)], dtype=np.uint8)
_EXPAND6 = np.array([int(v * 255.0 / 63 + 0.5) for v in range(64)], dtype=np.uint8)

# Live images, for gc.mem_free()'s estimate of the GC heap in use.
LIVE = weakref.WeakSet()


def rgb888_to_565(rgb):
    """uint8 HxWx3 -> uint16 HxW, rounding to the nearest level (OpenMV's COLOR_R8_TO_R5)."""
    rgb = np.asarray(rgb, dtype=np.uint32)
    r = (rgb[..., 0] * 31 + 127) // 255
    g = (rgb[..., 1] * 63 + 127) // 255
    b = (rgb[..., 2] * 31 + 127) // 255
    return ((r << 11) | (g << 5) | b).astype(np.uint16)


def expand_565(v):
    """uint16 array -> uint8 [..., 3] with the firmware's expansion rule."""
    v = np.asarray(v, dtype=np.uint16)
    return np.stack([_EXPAND5[v >> 11], _EXPAND6[(v >> 5) & 0x3F], _EXPAND5[v & 0x1F]], axis=-1)


def _color565(color):
    if isinstance(color, int):
        return color & 0xFFFF
    r, g, b = color
    return int(rgb888_to_565(np.array([[r, g, b]], dtype=np.uint8))[0])


class Image:
    def __init__(self, path=None, size=None, from_bytes=False, copy_to_fb=False):
        self._ai = None
        if path is None:
            w, h = size if size is not None else (320, 240)
            self._set(np.zeros((h, w), dtype=np.uint16), RGB565)
        elif from_bytes:
            data = bytes(path)
            if not data.startswith(b"\xff\xd8"):
                raise ValueError("from_bytes only supports JPEG data")
            self._set_pil(_decode(io.BytesIO(data)))
        else:
            real = fs.resolve(path)
            if not real.lower().endswith((".bmp", ".jpg", ".jpeg", ".ppm", ".pgm")):
                raise OSError("Unsupported image format: %s" % path)
            with open(real, "rb") as f:
                self._set_pil(_decode(io.BytesIO(f.read())))
        LIVE.add(self)

    # -- construction helpers (also used by sensor) --
    @classmethod
    def from_rgb(cls, rgb):
        img = cls.__new__(cls)
        img._ai = None
        img._set(rgb888_to_565(rgb), RGB565)
        LIVE.add(img)
        return img

    def _set(self, pixels, fmt):
        self._px = pixels            # uint16 (RGB565) or uint8 (grayscale), HxW
        self._fmt = fmt

    def _set_pil(self, pil):
        if pil.mode == "L":
            self._set(np.asarray(pil, dtype=np.uint8).copy(), GRAYSCALE)
        else:
            self._set(rgb888_to_565(np.asarray(pil.convert("RGB"))), RGB565)

    def _rgb(self):
        if self._fmt == GRAYSCALE:
            return np.repeat(self._px[..., None], 3, axis=2)
        return expand_565(self._px)

    def _from_pil_edit(self, pil):
        if self._fmt == GRAYSCALE:
            self._px = np.asarray(pil.convert("L"), dtype=np.uint8).copy()
        else:
            self._px = rgb888_to_565(np.asarray(pil))

    def nbytes(self):
        return self._px.nbytes + (0 if self._ai is None else len(self._ai))

    # -- queries --
    def width(self):
        return self._px.shape[1]

    def height(self):
        return self._px.shape[0]

    def format(self):
        return self._fmt

    def size(self):
        return self._px.nbytes

    def get_pixel(self, x, y, rgbtuple=True):
        if not (0 <= x < self.width() and 0 <= y < self.height()):
            return None
        v = int(self._px[y, x])
        if self._fmt == GRAYSCALE:
            return v
        if not rgbtuple:
            return v
        return tuple(int(c) for c in expand_565(v))

    def set_pixel(self, x, y, color):
        if 0 <= x < self.width() and 0 <= y < self.height():
            if self._fmt == GRAYSCALE:
                self._px[y, x] = color if isinstance(color, int) else sum(color) // 3
            else:
                self._px[y, x] = _color565(color)
        return self

    def to_bytes(self):
        """A copy of the pixel buffer (RGB565 big-endian); the image itself is not a buffer."""
        if self._fmt == GRAYSCALE:
            return self._px.tobytes()
        return self._px.astype(">u2").tobytes()

    def __repr__(self):
        return "{\"w\":%d, \"h\":%d, \"type\"=\"%s\", \"size\":%d}" % (
            self.width(), self.height(), "rgb565" if self._fmt == RGB565 else "grayscale",
            self.size())

    # -- KPU buffer --
    def pix_to_ai(self):
        rgb = self._rgb()
        self._ai = np.ascontiguousarray(rgb.transpose(2, 0, 1)).tobytes()

    def ai_data(self):
        """Planar R,G,B bytes last built by pix_to_ai() (or the camera), else None."""
        return self._ai

    # -- drawing: through an RGB888 view, requantised (565 -> 888 -> 565 is lossless) --
    def _draw(self, fn):
        pil = PILImage.fromarray(self._rgb(), "RGB")
        fn(ImageDraw.Draw(pil))
        self._from_pil_edit(pil)
        return self

    def draw_rectangle(self, x, y=None, w=None, h=None, color=(255, 255, 255), thickness=1,
                       fill=False):
        if y is None:
            x, y, w, h = x
        color = tuple(expand_565(_color565(color)))

        def fn(d):
            if fill:
                d.rectangle([x, y, x + w - 1, y + h - 1], fill=color)
            else:
                for t in range(thickness):
                    d.rectangle([x + t, y + t, x + w - 1 - t, y + h - 1 - t], outline=color)
        return self._draw(fn)

    def draw_line(self, x0, y0=None, x1=None, y1=None, color=(255, 255, 255), thickness=1):
        if y0 is None:
            x0, y0, x1, y1 = x0
        color = tuple(expand_565(_color565(color)))
        return self._draw(lambda d: d.line([x0, y0, x1, y1], fill=color, width=thickness))

    def draw_cross(self, x, y, color=(255, 255, 255), size=5, thickness=1):
        color = tuple(expand_565(_color565(color)))

        def fn(d):
            d.line([x - size, y, x + size, y], fill=color, width=thickness)
            d.line([x, y - size, x, y + size], fill=color, width=thickness)
        return self._draw(fn)

    def draw_string(self, x, y, text, color=(255, 255, 255), scale=1, x_spacing=0,
                    y_spacing=0, mono_space=True):
        color = tuple(expand_565(_color565(color)))
        return self._draw(lambda d: d.text((x, y), str(text), fill=color))

    # -- geometry --
    def resize(self, w, h):
        pil = PILImage.fromarray(self._rgb(), "RGB").resize((w, h), PILImage.BILINEAR)
        return Image.from_rgb(np.asarray(pil))

    def copy(self, roi=None):
        x, y, w, h = roi if roi is not None else (0, 0, self.width(), self.height())
        img = Image.__new__(Image)
        img._ai = None
        img._set(self._px[y:y + h, x:x + w].copy(), self._fmt)
        LIVE.add(img)
        return img

    def save(self, path, quality=95):
        real = fs.resolve(path, for_write=True)
        pil = PILImage.fromarray(self._rgb(), "RGB")
        fmt = "JPEG" if real.lower().endswith((".jpg", ".jpeg")) else "BMP"
        pil.save(real, fmt, quality=quality) if fmt == "JPEG" else pil.save(real, fmt)

    def to_pil(self):
        """Host-side helper (lcd snapshots): the RGB888 the LCD would show."""
        return PILImage.fromarray(self._rgb(), "RGB")


def _decode(stream):
    try:
        pil = PILImage.open(stream)
        pil.load()
    except Exception as exc:
        raise OSError("image decode failed: %s" % exc)
    return pil if pil.mode == "L" else pil.convert("RGB")
