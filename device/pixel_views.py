# The received image's pixels in the firmware's Image: writable views of its RGB565
# buffer and pix_ai planes (uctypes), and the slow path without uctypes. MicroPython 1.11
# dialect.
try:
    import protocol
except ImportError:
    from device import protocol


def rgb565_view(img, nbytes):
    """Writable bytearray over the Image's pixel buffer (uctypes), or None.
    Image buffers are read-only to Python; uctypes.addressof() takes the
    buffer address through the read-only buffer protocol and bytearray_at()
    maps it writable: the received RGB565 bytes are copied straight in."""
    try:
        import uctypes
        return uctypes.bytearray_at(uctypes.addressof(img), nbytes)
    except Exception:
        return None


def _u(b, k, n):
    return int.from_bytes(bytes(b[k:k + n]), "little")


def pix_ai_view(img, w, h, planes=3):
    """The firmware's own KPU input buffer (planar R, G, B uint8, or one gray
    plane: planes=1) of an Image after pix_to_ai(), or None. The image object is read through uctypes at
    id(img): layout check (width, height, pixel pointer = addressof(img)) and
    an address range check must all pass, else None (the caller falls back to
    recomputing the expansion)."""
    try:
        import uctypes
        data = uctypes.addressof(img)
        obj = uctypes.bytearray_at(id(img), 64)
        if _u(obj, 8, 4) != w or _u(obj, 12, 4) != h:
            return None
        n = planes * w * h
        for off in (16, 24, 32, 40):
            if _u(obj, off, 8) == data:
                p = _u(obj, off + 8, 8)
                if p == 0 or p == data:
                    return None
                if (0x80000000 <= p and p + n <= 0x80800000) or \
                        (0x40000000 <= p and p + n <= 0x40800000):
                    return uctypes.bytearray_at(p, n)
                return None
    except Exception:
        return None
    return None


_TABLES = None


def expansion_tables():
    global _TABLES
    if _TABLES is None:
        _TABLES = protocol.expansion_tables()
    return _TABLES


def fill_rows(img, w, off, data):
    """Slow path without uctypes: RGB565 bytes -> (r, g, b) tuples -> slice
    store (the firmware converts back to the same RGB565 exactly)."""
    rb, g6 = expansion_tables()
    cnt = len(data) // 2
    lst = [None] * cnt
    j = 0
    for i in range(cnt):
        hi = data[j]
        lo = data[j + 1]
        lst[i] = (rb[hi >> 3], g6[((hi & 7) << 3) | (lo >> 5)], rb[lo & 31])
        j += 2
    p0 = off // 2
    img[p0:p0 + cnt] = lst
