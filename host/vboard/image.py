"""The firmware's `image` module: an RGB565 (or grayscale) frame plus its KPU "AI" buffer.

The firmware keeps two buffers per image: RGB565 pixels (big-endian in memory) that every
image operation works on, and a planar R,G,B uint8 buffer for the KPU that only the
camera fills by itself; anything else needs `pix_to_ai()` after its last pixel edit.
This module is written from the firmware's rules on purpose (not by importing
host.pixels), so the host's reproduction of the board is checked against an independent
implementation.
"""
import io
import struct
import weakref

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from host.vboard import fs, gcheap, memory

# omv/img/include/imlib.h: image_bpp_t (IMAGE_BPP_GRAYSCALE 1, IMAGE_BPP_RGB565 2, JPEG 4)
GRAYSCALE = 1
RGB565 = 2
JPEG = 4
# py_image.c: py_image_format answers the sensor's pixformat_t (omv/include/sensor.h), not the bpp
_PIXFORMAT = {GRAYSCALE: 4, RGB565: 2}

# pix_to_ai expansion: 5-bit R,B -> round(v*255/31), 6-bit G -> round(v*255/63).
_EXPAND5 = np.array([int(v * 255.0 / 31 + 0.5) for v in range(32)], dtype=np.uint8)
_EXPAND6 = np.array([int(v * 255.0 / 63 + 0.5) for v in range(64)], dtype=np.uint8)

# What an Image object looks like in K210 memory (64-bit RISC-V, MaixPy/CanMV image_t after
# the MicroPython object base): base, w, h, bpp, pixels, pix_ai. Only the probe in
# device/pixel_views.py reads it; the type pointer is an arbitrary firmware-like address.
_OBJ_LAYOUT = struct.Struct("<QIIIIQQ")
_OBJ_SIZE = 64
_PY_IMAGE_OBJ = 40      # py_image_obj_t: mp_obj_base_t + image_t (w, h, bpp, pixels, pix_ai)
_TYPE_ADDR = 0x80012340


def _y_table():
    """COLOR_RGB565_TO_GRAYSCALE for every in-memory pixel value (sipeed/MaixPy-v1
    omv/img/include/imlib.h: yuv_table[pixel * 3] + 128). The const table in omv/img/yuv_tab.c
    (CONFIG_MAIXPY_OMV_CONV_YUV_FAST=y builds) follows its `#if 0` generator yuv_table(idx)
    (OpenMV tools/gen_rgb2yuv.py): the index is the uint16 the CPU reads from the big-endian
    pixel bytes (byte-swapped RGB565), the 5/6-bit levels expand as (uint8_t)((v*255 +
    15.5)/31), the BT.601 sum r*0.299 + g*0.587 + b*0.114 in double. One difference, read off
    the table's 65536 values: the sum is truncated before the 128 is taken off (int(sum) -
    128), where the C generator's (int8_t) of (sum - 128) would round negatives up."""
    pixel = np.arange(65536, dtype=np.int64)
    r = np.floor((((pixel >> 3) & 31) * 255 + 15.5) / 31)
    g = np.floor(((((pixel & 7) << 3) | (pixel >> 13)) * 255 + 31.5) / 63)
    b = np.floor((((pixel >> 8) & 31) * 255 + 15.5) / 31)
    return np.trunc((r * 0.299) + (g * 0.587) + (b * 0.114)).astype(np.uint8)


_GRAYSCALE_OF_565 = _y_table()


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
    return (((r * 31 + 127) // 255) << 11) | (((g * 63 + 127) // 255) << 5) | \
        ((b * 31 + 127) // 255)


class Image:
    def __init__(self, path=None, size=None, from_bytes=False, copy_to_fb=False):
        if path is None:
            w, h = size if size is not None else (320, 240)
            self._set(np.zeros((h, w), dtype=np.uint16), RGB565)
        elif from_bytes:
            # sipeed/MaixPy-v1 omv/img/imlib.c: imlib_load_image with data_type 2: a JPEG
            # that fails to decode raises nothing (`if(data_type != 2)`); picojpeg_util.c:
            # picojpeg_util_read prints its error and the image stays 0x0. The decoder reads
            # to the end of the scan (picojpeg_util.c: pjpeg_load_from_file stops after the last
            # MCU): bytes after it, as in device/payloads.py's session buffer, are never read; PIL
            # stops at the EOI alike
            data = bytes(path)
            if not data.startswith(b"\xff\xd8"):
                raise ValueError("format not supported")
            try:
                pil = _decode(io.BytesIO(data))
            except OSError:
                from host.vboard import board as _board
                _board.current().print("Failed loading source image!")
                self._set(np.zeros((0, 0), dtype=np.uint16), RGB565)
                return
            self._set_pil(pil)
        else:
            real = fs.resolve(path)
            if not real.lower().endswith((".bmp", ".jpg", ".jpeg", ".ppm", ".pgm")):
                raise OSError("Unsupported image format: %s" % path)
            with open(real, "rb") as f:
                self._set_pil(_decode(io.BytesIO(f.read())))

    # -- construction helpers (also used by sensor) --
    @classmethod
    def from_rgb(cls, rgb):
        img = cls.__new__(cls)
        img._set(rgb888_to_565(rgb), RGB565)
        return img

    def _set(self, pixels, fmt):
        # RGB565 is stored big-endian, as in the board's memory, so bytes written through
        # uctypes land exactly as on the board; the arrays are never reallocated
        self._px = pixels.astype(">u2") if fmt == RGB565 else pixels.astype(np.uint8)
        self._fmt = fmt
        self._ai = None                 # uint8 [3*H*W], allocated by the first pix_to_ai()
        self._ai_valid = False
        me = weakref.ref(self)
        self._maps = [memory.alloc(self._px.nbytes, self._px.view(np.uint8).reshape(-1)),
                      memory.alloc(_OBJ_SIZE, lambda: me()._obj_bytes())]
        self.addr, self.obj_addr = self._maps
        weakref.finalize(self, _unmap, self._maps)
        self._heap = None               # the GC heap it counts in (count_in), if any

    def _obj_bytes(self):
        ai_addr = self._maps[2] if len(self._maps) > 2 else 0
        head = _OBJ_LAYOUT.pack(_TYPE_ADDR, self.width(), self.height(), self._px.itemsize, 0,
                                self.addr, ai_addr)
        return head + bytes(_OBJ_SIZE - len(head))

    def _set_pil(self, pil):
        if pil.mode == "L":
            self._set(np.asarray(pil, dtype=np.uint8), GRAYSCALE)
        else:
            self._set(rgb888_to_565(np.asarray(pil.convert("RGB"))), RGB565)

    def to_grayscale(self, copy=False):
        """sipeed/MaixPy-v1 omv/py/py_image.c: py_image_to_grayscale. copy=False converts in
        place: the same pixel buffer (its first w*h bytes) and pix_ai, bpp 1; the firmware
        returns a new object over them, this one returns itself (the state is the same)."""
        if copy:
            img = self.copy()
            return img.to_grayscale()
        if self._fmt == GRAYSCALE:
            return self
        in_memory = self._px.astype(np.uint16).byteswap()   # what the CPU reads (LE) from BE
        gray = _GRAYSCALE_OF_565[in_memory]
        raw = self._px.view(np.uint8).reshape(-1)
        self._px = raw[:gray.size].reshape(gray.shape)
        self._px[...] = gray
        self._fmt = GRAYSCALE
        self._ai_valid = False
        return self

    def _rgb(self):
        if self._fmt == GRAYSCALE:
            return np.repeat(self._px[..., None], 3, axis=2)
        return expand_565(self._px)

    def _from_pil_edit(self, pil):
        if self._fmt == GRAYSCALE:
            self._px[...] = np.asarray(pil.convert("L"), dtype=np.uint8)
        else:
            self._px[...] = rgb888_to_565(np.asarray(pil))

    def count_in(self, heap):
        """An Image board code made lives in the GC heap (sipeed/MaixPy-v1 omv/py/py_image.c:
        py_image_load_image: pixels by xalloc (omv/xalloc.c: gc_alloc), then py_image:
        m_new_obj(py_image_obj_t), 8 + sizeof(image_t) 32 bytes); camera frames and the
        LCD's own buffers are not (never counted). Returns self."""
        heap.alloc(self, [self._px.nbytes], gcheap.XALLOC)
        heap.alloc(self, [_PY_IMAGE_OBJ])
        self._heap = heap
        if self._ai is not None:
            heap.alloc(self, [self._ai_alloc_bytes()], gcheap.XALLOC)
        return self

    def _ai_alloc_bytes(self):
        # py_image.c: py_image_pix_to_ai: RGB565 rows padded to 64 bytes per plane
        # ("64B align for conv function"), grayscale w*h
        w, h = self.width(), self.height()
        return w * h if self._fmt == GRAYSCALE else ((w + 63) & ~63) * h * 3

    # -- queries --
    def width(self):
        return self._px.shape[1]

    def height(self):
        return self._px.shape[0]

    def format(self):
        return _PIXFORMAT[self._fmt]

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
        """A copy of the pixel buffer (RGB565 big-endian)."""
        return self._px.tobytes()

    # The firmware's Image is a read-only buffer (bytes(img), crc32(img)); CPython classes
    # cannot export one, so bytes() works and the crc32 shim accepts an Image.
    __bytes__ = to_bytes

    # OpenMV pixel access by flat index: img[i] -> (r, g, b), img[a:b] = [(r, g, b), ...]
    def __len__(self):
        return self._px.size

    def __getitem__(self, index):
        flat = self._px.reshape(-1)
        if self._fmt == GRAYSCALE:      # py_image.c: py_image_subscr, IMAGE_BPP_GRAYSCALE
            return [int(v) for v in flat[index]] if isinstance(index, slice) else int(flat[index])
        if isinstance(index, slice):
            return [tuple(int(c) for c in expand_565(v)) for v in flat[index]]
        return tuple(int(c) for c in expand_565(flat[index]))

    def __setitem__(self, index, value):
        flat = self._px.reshape(-1)
        if self._fmt == GRAYSCALE:      # py_image.c: py_image_subscr store, a list of ints
            flat[index] = value
            return
        if isinstance(index, slice):
            flat[index] = [_color565(c) for c in value]
        else:
            flat[index] = _color565(value)

    def __repr__(self):
        return "{\"w\":%d, \"h\":%d, \"type\"=\"%s\", \"size\":%d}" % (
            self.width(), self.height(), "rgb565" if self._fmt == RGB565 else "grayscale",
            self.size())

    # -- KPU buffer --
    def pix_to_ai(self):
        """py_image.c: py_image_pix_to_ai: the buffer allocated on the first call only (and
        kept through to_grayscale); RGB565 -> planar R, G, B expanded, GRAYSCALE -> memcpy of
        the w*h bytes."""
        planes = 1 if self._fmt == GRAYSCALE else 3
        if self._ai is None:
            if self._heap is not None:
                self._heap.alloc(self, [self._ai_alloc_bytes()], gcheap.XALLOC)
            self._ai = np.empty(planes * self._px.size, dtype=np.uint8)
            self._maps.append(memory.alloc(self._ai.nbytes, self._ai))
        if planes == 1:
            self._ai[:self._px.size] = self._px.reshape(-1)
        else:
            self._ai.reshape(3, *self._px.shape)[...] = self._rgb().transpose(2, 0, 1)
        self._ai_valid = True

    def ai_data(self):
        """The KPU input last built by pix_to_ai() (or the camera): planar R,G,B bytes, or
        the w*h gray bytes of a GRAYSCALE image; else None."""
        if not self._ai_valid:
            return None
        return self._ai[:(1 if self._fmt == GRAYSCALE else 3) * self._px.size].tobytes()

    # -- drawing: through an RGB888 view, requantised (565 -> 888 -> 565 is lossless) --
    def _draw(self, fn):
        pil = PILImage.fromarray(self._rgb(), "RGB")
        fn(ImageDraw.Draw(pil))
        self._from_pil_edit(pil)
        return self

    # sipeed/MaixPy-v1 omv/py/py_image.c: py_image_draw_rectangle (x, y, w, h or a tuple;
    # color, thickness, fill; imlib_draw_rectangle): live mode's segment mask fills runs
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

    # py_image.c: py_image_draw_string (x, y, text, color, scale, x_spacing, y_spacing,
    # mono_space); the font is PIL's, not the firmware's (what is drawn is not compared)
    def draw_string(self, x, y, text, color=(255, 255, 255), scale=1, x_spacing=0,
                    y_spacing=0, mono_space=True):
        color = tuple(expand_565(_color565(color)))
        return self._draw(lambda d: d.text((x, y), str(text), fill=color))

    # -- geometry --
    def resize(self, w, h):
        pil = PILImage.fromarray(self._rgb(), "RGB").resize((w, h), PILImage.BILINEAR)
        return Image.from_rgb(np.asarray(pil)).count_in(_board_heap())

    def copy(self, roi=None):
        x, y, w, h = roi if roi is not None else (0, 0, self.width(), self.height())
        img = Image.__new__(Image)
        img._set(self._px[y:y + h, x:x + w], self._fmt)
        return img.count_in(_board_heap())

    def save(self, path, quality=95):
        real = fs.resolve(path, for_write=True)
        pil = PILImage.fromarray(self._rgb(), "RGB")
        fmt = "JPEG" if real.lower().endswith((".jpg", ".jpeg")) else "BMP"
        pil.save(real, fmt, quality=quality) if fmt == "JPEG" else pil.save(real, fmt)

    def to_pil(self):
        """Host-side helper (lcd snapshots): the RGB888 the LCD would show."""
        return PILImage.fromarray(self._rgb(), "RGB")


def _board_heap():
    from host.vboard import board as _board
    return _board.current().heap


def _unmap(addresses):
    for addr in addresses:
        memory.free(addr)


def _decode(stream):
    try:
        pil = PILImage.open(stream)
        pil.load()
    except Exception as exc:
        raise OSError("image decode failed: %s" % exc)
    return pil if pil.mode == "L" else pil.convert("RGB")
