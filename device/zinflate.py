# k210-deploy rgb565z receive path (docs/protocol.md, "rgb565z"): the deflate segments of
# one image inflated straight into its pixel buffer with the firmware's uzlib.DecompIO
# (MICROPY_PY_UZLIB, extmod/moduzlib.c). MicroPython 1.11 dialect; the host imports it as
# device.zinflate (the virtual board's uzlib is host/vboard/shims/uzlib.py).
try:
    import uzlib
except ImportError:
    uzlib = None
try:
    import uio as io
except ImportError:
    import io

# The host's segments are at most this much longer than their raw bytes (stored blocks and
# the sync-flush marker); the source buffer is preallocated with it.
SLACK = 64


def available():
    """Whether this firmware can inflate rgb565z (INFO `formats`)."""
    return uzlib is not None and hasattr(uzlib, "DecompIO")


class InflateError(Exception):
    pass


class Inflater:
    """The raw deflate stream of one image. Every IMAGE_DATA frame carries one segment that
    ends in a sync flush and inflates to exactly `seg` raw bytes (the last one: the rest), so
    a segment never needs bytes of the next frame. DecompIO pulls its input from `src`, a
    BytesIO refilled per segment with the unread tail of the previous one (the flush marker)
    followed by the new bytes: bounded memory, no copy of the whole stream."""

    def __init__(self, raw_total, seg, wbits):
        self.raw_total = raw_total
        self.seg = seg
        self.done = 0          # raw bytes inflated so far
        self.src = io.BytesIO(bytearray(seg + SLACK))
        self.zend = 0          # end of the valid bytes in src (beyond: an older segment's)
        self.dec = uzlib.DecompIO(self.src, -wbits)

    def next_len(self):
        n = self.raw_total - self.done
        return n if n < self.seg else self.seg

    def segment(self, data, dest):
        """Inflate one segment (`data`) into `dest`, a writable buffer of next_len() bytes.
        InflateError when the segment does not give exactly those bytes from its own data."""
        src = self.src
        rest = self.zend - src.seek(0, 1)   # MicroPython 1.11's BytesIO has no tell()
        tail = src.read(rest) if rest > 0 else b""
        src.seek(0)
        src.write(tail)
        src.write(data)
        self.zend = src.seek(0, 1)
        src.seek(0)
        want = len(dest)
        try:
            got = self.dec.readinto(dest)
        except EOFError:
            raise InflateError("segment at %d: the deflate stream is cut short" % self.done)
        except OSError as e:
            raise InflateError("segment at %d: corrupt deflate stream (%s)" % (self.done, e))
        if src.seek(0, 1) > self.zend:
            # read past this frame's bytes into stale ones: the segment was incomplete
            raise InflateError("segment at %d needs more than its %d bytes"
                               % (self.done, len(data)))
        if got != want:
            raise InflateError("segment at %d gave %d of %d bytes" % (self.done, got, want))
        self.done += want

    def complete(self):
        return self.done == self.raw_total
