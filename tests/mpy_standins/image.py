# image stand-in: an Image is its RGB565 pixel buffer (2 bytes per pixel, the firmware's byte
# order: byte 0 = RRRRRGGG, byte 1 = GGGBBBBB). Its buffer is readable (crc32(img)) and
# uctypes.addressof() gives the pixel address, as on the firmware (py_image.c get_buffer).
# Sources: MaixPy-v1 components/micropython/port/src/omv/py/py_image.c (py_image,
# py_image_pix_to_ai, py_image_subscr), omv/img/include/imlib.h (COLOR_RGB565_TO_R5/G6/B5),
# omv/img/rgb2rgb_tab.c (rb528_table, g628_table, rb825_table, g826_table), omv/xalloc.c
# (xalloc = gc_alloc: pixels and pix_ai live in the GC heap).
import ubinascii
import standin

# rgb2rgb_tab.c: rb528_table[v] = round(v * 255 / 31), g628_table[v] = round(v * 255 / 63)
RB528 = bytes([(v * 510 + 31) // 62 for v in range(32)])
G628 = bytes([(v * 510 + 63) // 126 for v in range(64)])
# rb825_table[v] = round(v * 31 / 255), g826_table[v] = round(v * 63 / 255)
RB825 = bytes([(v * 62 + 255) // 510 for v in range(256)])
G826 = bytes([(v * 126 + 255) // 510 for v in range(256)])

drawn = []    # (kind, args) of every draw call: what live mode put on the LCD image


class _Image(bytearray):
    def _setup(self, w, h, gray=False):
        self.w = w
        self.h = h
        self.ai = None
        self.gray = gray     # GRAYSCALE (bpp 1): its first w*h bytes are the pixels

    def width(self):
        return self.w

    def height(self):
        return self.h

    def pix_to_ai(self):
        if self.gray:
            self._gray_to_ai()
            return
        # py_image_pix_to_ai, RGB565: xalloc(((w + 63) & ~63) * h * 3) once per image (rows of
        # the allocation padded to 64 pixels), filled planar R, G, B, w * h bytes each.
        n = self.w * self.h
        if self.ai is None:
            self.ai = bytearray(((self.w + 63) & ~63) * self.h * 3)
            standin.sample()
        ai = self.ai
        g0 = n
        b0 = 2 * n
        j = 0
        for i in range(n):
            hi = self[j]
            lo = self[j + 1]
            ai[i] = RB528[hi >> 3]
            ai[g0 + i] = G628[((hi & 7) << 3) | (lo >> 5)]
            ai[b0 + i] = RB528[lo & 31]
            j += 2

    def __setitem__(self, k, v):
        if self.gray:
            return self._gray_store(k, v)
        # py_image_subscr store: an (r, g, b) tuple per pixel -> COLOR_R8_G8_B8_TO_RGB565
        import uctypes
        raw = uctypes.bytearray_at(uctypes.addressof(self), 2 * self.w * self.h)
        if not isinstance(k, slice):
            raise TypeError("image pixels: slice assignment of (r, g, b) tuples")
        j = 2 * k.start
        for px in v:
            r5 = RB825[px[0]]
            g6 = G826[px[1]]
            b5 = RB825[px[2]]
            raw[j] = (r5 << 3) | (g6 >> 3)
            raw[j + 1] = ((g6 & 7) << 5) | b5
            j += 2

    def to_grayscale(self, copy=False):
        # py_image_to_grayscale, RGB565 (copy=False): in place, the same pixel buffer, bpp 1:
        # pixel i becomes byte i, COLOR_RGB565_TO_GRAYSCALE = yuv_table[pixel * 3] + 128
        # (imlib.h), the uint16 read little-endian from the big-endian pixel bytes. The table
        # (64 KiB of rodata on the board, not GC heap) is the test's file (standin.GRAY_TABLE):
        # float32 here cannot redo its double arithmetic
        import uctypes
        n = self.w * self.h
        raw = uctypes.bytearray_at(uctypes.addressof(self), 2 * n)
        one = bytearray(1)
        with open(standin.GRAY_TABLE, "rb") as table:
            for i in range(n):
                table.seek(raw[2 * i] | (raw[2 * i + 1] << 8))
                table.readinto(one)
                raw[i] = one[0]
        self.gray = True
        return self

    def _gray_to_ai(self):
        # py_image_pix_to_ai, GRAYSCALE: xalloc(w*h) once per image, then memcpy of the pixels
        import uctypes
        n = self.w * self.h
        if self.ai is None:
            self.ai = bytearray(n)
            standin.sample()
        self.ai[:] = uctypes.bytearray_at(uctypes.addressof(self), n)

    def _gray_store(self, k, v):
        # py_image_subscr store, GRAYSCALE: a slice takes a list of ints
        import uctypes
        if not isinstance(k, slice) or not isinstance(v, list):
            raise TypeError("grayscale pixels: slice assignment of a list of ints")
        raw = uctypes.bytearray_at(uctypes.addressof(self), self.w * self.h)
        j = k.start
        for p in v:
            raw[j] = p
            j += 1

    def draw_rectangle(self, x, y, w, h, color=(255, 255, 255), thickness=1, fill=False):
        drawn.append(("rect", [x, y, w, h]))
        return self

    def draw_string(self, x, y, text, color=(255, 255, 255), scale=1, mono_space=True):
        drawn.append(("text", [x, y, text]))
        return self


def _new_gray(w, h):
    """A GRAYSCALE image of its own w*h bytes (a camera frame: sensor.py)."""
    img = _Image(w * h)
    img._setup(w, h, True)
    standin.sample()
    return img


def _new(w, h):
    img = _Image(2 * w * h)
    img._setup(w, h)
    standin.sample()
    return img


def _jpeg_len(data):
    """Bytes up to the end of the JPEG's scan: marker segments by their lengths to SOS
    (FF DA), then entropy-coded data to the first marker that is not a stuffed FF 00 or a
    restart (FF D0-D7), EOI included; len(data) if the data ends first."""
    n = len(data)
    i = 2
    while i + 4 <= n and data[i] == 0xFF:
        marker = data[i + 1]
        i += 2 + ((data[i + 2] << 8) | data[i + 3])
        if marker == 0xDA:
            while i + 1 < n:
                if data[i] == 0xFF and data[i + 1] != 0 and not 0xD0 <= data[i + 1] <= 0xD7:
                    return i + 2 if data[i + 1] == 0xD9 else i
                i += 1
            return n
    return n


def Image(data=None, size=None, from_bytes=False, copy_to_fb=False):
    """py_image: a function, not a class. Image(size=(w, h)) a blank RGB565 image;
    Image(jpeg_bytes, from_bytes=True) decodes (here: the test's decoded pixels for that
    JPEG). Bytes without the JPEG magic: ValueError; a JPEG that does not decode: the error is
    swallowed (imlib_load_image raises picojpeg's error only for files), a 0x0 image and
    "Failed loading source image!"."""
    if size is not None:
        return _new(size[0], size[1])
    if not from_bytes or not isinstance(data, bytes):
        raise TypeError("Image: bytes with from_bytes=True, or size=")
    if data[:2] != b"\xff\xd8":
        # imlib.c imlib_load_image: only BMP (files) and JPEG magic are known
        raise ValueError("format not supported")
    # the decoder reads the JPEG to the end of its scan; bytes after it are never read
    # (picojpeg.c: pjpeg_decode_mcu stops after the last MCU), so they do not change the image
    crc = ubinascii.crc32(memoryview(data)[:_jpeg_len(data)]) & 0xFFFFFFFF
    name = "%s/%08x.rgb565" % (standin.JPEG_DIR, crc)
    try:
        with open(name, "rb") as f:
            hdr = f.read(4)
            w = hdr[0] | (hdr[1] << 8)
            h = hdr[2] | (hdr[3] << 8)
            img = _new(w, h)
            f.readinto(img)
    except OSError:
        print("Failed loading source image!")
        return _new(0, 0)
    return img
