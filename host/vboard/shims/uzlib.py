"""uzlib as MicroPython 1.11 builds it (extmod/moduzlib.c with extmod/uzlib/, MaixPy-v1 and
CanMV: MICROPY_PY_UZLIB), on CPython's zlib.

What is imitated (read in moduzlib.c, tinflate.c, tinfzlib.c, tinfgzip.c of v1.11):

- `DecompIO(stream, dict_opt=0)`: `dict_opt < 0` raw deflate with a window of
  `1 << -dict_opt` bytes; `0 <= dict_opt < 16` a zlib header, parsed when the object is made
  (bad header: ValueError "compression header"), window `1 << CINFO` - the header's CINFO
  itself, not CINFO + 8 (so a usual zlib stream gets 128 bytes of window in 1.11); `>= 16` a
  gzip header, window `1 << (dict_opt - 16)`.
- Input is pulled from `stream.read(1)` one byte at a time, only when a bit is needed; an empty
  read raises EOFError (read_src_stream). Unread bytes stay in the stream.
- A distance beyond the window is an error, a distance into the part of the window not yet
  written reads zeros (the window is a zeroed GC block): zlib with a window of the same size
  and a preset dictionary of zeros does both - except that zlib also accepts a distance
  reaching back into the bytes it wrote in the same read, so a read of n bytes may accept up
  to n bytes further back than the firmware, i.e. fail later (never for a stream deflated
  with the same window, as the host's is).
- Corrupt data, a bad window distance or a checksum mismatch (adler32 for zlib, crc32 for gzip,
  checked when the final block ends): OSError EINVAL. `read`/`readinto` return fewer bytes
  only at the end of the stream.

Not imitated: windows under 256 bytes (zlib's smallest), i.e. the zlib-header form: it raises
NotImplementedError here; on the firmware it fails with EINVAL at the first back-reference
beyond 1 << CINFO bytes. `decompress()` is zlib's (same results for valid input).

GC heap (host/vboard/gcheap.py): a DecompIO counts its C state (mp_obj_decompio_t on RV64,
TINF_DATA with its two Huffman trees: m_new_obj) and then its window (m_new(byte, dict_sz)),
as decompio_make_new allocates them; bytes that `read` returns count as bytes objects.
"""
import errno
import zlib

from host.vboard import gcheap
from host.vboard.shims.base import new_module

# sizeof(mp_obj_decompio_t) on the K210 (RV64): object header and stream pointer, then
# struct uzlib_uncomp (uzlib.h: 104 bytes of fields + 2 x TINF_TREE of 608 bytes), padded
STATE_BYTES = 1344
_BLOCK = 4096       # bytes read ahead from a seekable source (the unused ones go back)


class DecompIO(object):
    _heap = None        # the board's GC heap (build), None off the board

    def __init__(self, stream, dict_opt=0):
        if not hasattr(stream, "read"):
            raise OSError("stream operation not supported")
        self._src = stream
        self._eof = False
        self._tail = b""          # input already pulled that zlib has not taken yet
        self._check = None
        if dict_opt >= 16:
            self._gzip_header()
            window = 1 << (dict_opt - 16)
            self._check, self._sum = "crc", 0
        elif dict_opt >= 0:
            window = 1 << self._zlib_header()
            self._check, self._sum = "adler", 1
        else:
            window = 1 << -dict_opt
        bits = window.bit_length() - 1
        if not 8 <= bits <= 15:
            raise NotImplementedError(
                "vboard uzlib: a %d-byte window is not emulated (zlib takes 256..32768); on "
                "MicroPython 1.11 use DecompIO(stream, -wbits) with the window's bits" % window)
        if self._heap is not None:
            self._heap.alloc(self, [STATE_BYTES, window])
        self._z = zlib.decompressobj(-bits, zdict=bytes(window))

    # -- headers (tinfzlib.c, tinfgzip.c)
    def _byte(self):
        b = self._src.read(1)
        if not b:
            raise EOFError()
        return b[0]

    def _zlib_header(self):
        cmf, flg = self._byte(), self._byte()
        if (256 * cmf + flg) % 31 or (cmf & 0x0F) != 8 or (cmf >> 4) > 7 or flg & 0x20:
            raise ValueError("compression header")
        return cmf >> 4

    def _gzip_header(self):
        if self._byte() != 0x1F or self._byte() != 0x8B or self._byte() != 8:
            raise ValueError("compression header")
        flg = self._byte()
        if flg & 0xE0:
            raise ValueError("compression header")
        for _ in range(6):
            self._byte()
        if flg & 4:
            xlen = self._byte() | self._byte() << 8
            for _ in range(xlen):
                self._byte()
        for bit in (8, 16):
            if flg & bit:
                while self._byte():
                    pass
        if flg & 2:
            self._byte()
            self._byte()

    # -- stream
    def read(self, n=-1):
        if n is None or n < 0:
            parts = []
            while True:
                part = self._inflate(4096)
                if not part:
                    return self._counted(b"".join(parts))
                parts.append(part)
        return self._counted(self._inflate(n))

    def _counted(self, data):
        # py/stream.c: stream_read builds a bytes object (vstr) of what it read
        if self._heap is None or len(data) <= 1:
            return data
        return self._heap.alloc(data, gcheap.bytes_parts(len(data)))

    def readinto(self, buf, n=None):
        mv = memoryview(buf).cast("B")
        want = len(mv) if n is None else min(n, len(mv))
        data = self._inflate(want)
        mv[:len(data)] = data
        return len(data)

    def readline(self):
        out = bytearray()
        while True:
            b = self._inflate(1)
            out += b
            if not b or b == b"\n":
                return bytes(out)

    def _inflate(self, n):
        if self._eof or n <= 0:
            return b""
        out = []
        have = 0
        while have < n and not self._z.eof:
            data = self._pull(n - have)
            try:
                piece = self._z.decompress(data, n - have)
            except zlib.error as exc:
                raise OSError(errno.EINVAL, "EINVAL (vboard: %s)" % exc)
            self._tail = self._z.unconsumed_tail
            out.append(piece)
            have += len(piece)
        data = b"".join(out)
        self._sum_update(data)
        if self._z.eof:
            self._eof = True
            self._verify_trailer()
        return data

    def _pull(self, need):
        """The input uzlib would read next to give `need` more bytes: exactly the bytes up to
        the last one it needs (it reads a byte only for a bit it lacks), never beyond; what
        is read past it goes back to the stream. Seekable streams are read in blocks and the
        cut is found on copies of the decompressor (bisection: output and errors only grow
        with the input); others one byte at a time. EOFError when the stream is empty."""
        if self._tail:
            return self._tail
        seekable = getattr(self._src, "seekable", lambda: False)()
        block = self._src.read(_BLOCK if seekable else 1)
        if not block:
            raise EOFError()
        if len(block) == 1:
            return block
        if not self._enough(block, need):
            return block               # all of it is needed (and more)
        lo, hi = 1, len(block)         # the shortest prefix that is enough
        while lo < hi:
            mid = (lo + hi) // 2
            if self._enough(block[:mid], need):
                hi = mid
            else:
                lo = mid + 1
        self._src.seek(lo - len(block), 1)
        return block[:lo]

    def _enough(self, data, need):
        """Whether `data` lets the decompressor give `need` bytes, end or fail."""
        trial = self._z.copy()
        try:
            return len(trial.decompress(data, need)) >= need or trial.eof
        except zlib.error:
            return True

    def _sum_update(self, data):
        if self._check == "adler":
            self._sum = zlib.adler32(data, self._sum)
        elif self._check == "crc":
            self._sum = zlib.crc32(data, self._sum)

    def _verify_trailer(self):
        # unused bits of the last byte are dropped; the trailer starts at the next byte
        rest = self._z.unused_data
        if self._check == "adler":
            raw = bytes(rest[:4]) + bytes(self._byte() for _ in range(4 - len(rest[:4])))
            ok = int.from_bytes(raw, "big") == self._sum
        elif self._check == "crc":
            raw = bytes(rest[:8]) + bytes(self._byte() for _ in range(8 - len(rest[:8])))
            ok = int.from_bytes(raw[:4], "little") == self._sum
        else:
            return
        if not ok:
            raise OSError(errno.EINVAL, "EINVAL (vboard: checksum)")


def build(board):
    def decompress(data, wbits=0, bufsize=0):
        # moduzlib.c: wbits < 0 raw deflate, else zlib framing; ValueError on bad data
        try:
            return bytearray(zlib.decompress(bytes(data), -15 if wbits < 0 else 15))
        except zlib.error as exc:
            raise ValueError(str(exc))

    heap = board.heap if board is not None else None
    counted = type("DecompIO", (DecompIO,), {"_heap": heap})
    return new_module("uzlib", DecompIO=counted, decompress=decompress)
