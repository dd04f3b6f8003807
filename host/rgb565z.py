"""The rgb565z payload (docs/protocol.md, "rgb565z"): RGB565 bytes as raw deflate, cut into
segments of the board's `chunk` raw bytes, each ended by a sync flush, one segment per
IMAGE_DATA frame. The board (device/zinflate.py) inflates each frame as it arrives straight
into the Image, without waiting for the next one.

Level 9 and a 2**Z_WBITS = 16 KiB window, chosen by measurement (docs/protocol.md, "rgb565z"):
on natural photographs 1.83x at 4 KiB, 1.90x at 16 KiB, 1.93x at 32 KiB, but a 32 KiB window
is a block the board's fragmented GC heap no longer has after a few images.
Incompressible data (noise) comes out as stored blocks: at most a few bytes per segment more
than rgb565, still exact.
"""
import zlib

from device import protocol as P
from device import protocol_host as PH
from device import zinflate

LEVEL = 9
MEM_LEVEL = 9


def segments(raw, seg, level=LEVEL):
    """Deflate segments of `raw`, one per `seg` raw bytes (the last: the rest)."""
    if seg <= 0:
        raise ValueError("segment size must be > 0, not %d" % seg)
    c = zlib.compressobj(level, zlib.DEFLATED, -P.Z_WBITS, MEM_LEVEL)
    out = [c.compress(raw[i:i + seg]) + c.flush(zlib.Z_SYNC_FLUSH)
           for i in range(0, len(raw), seg)]
    longest = max(len(s) - seg for s in out) if out else 0
    if longest > zinflate.SLACK:   # zlib's stored-block bound makes this unreachable
        raise ValueError("a deflate segment is %d bytes over its raw size" % longest)
    return out


def image_frames(image_id, flags, width, height, segs):
    """(type, payload) of one rgb565z image: IMAGE_BEGIN with the compressed total, then one
    IMAGE_DATA per segment at its compressed offset."""
    yield P.T_IMAGE_BEGIN, PH.pack_image_begin(image_id, P.FMT_RGB565Z, flags, width, height,
                                              sum(len(s) for s in segs))
    off = 0
    for s in segs:
        yield P.T_IMAGE_DATA, PH.pack_image_data_prefix(image_id, off) + s
        off += len(s)
