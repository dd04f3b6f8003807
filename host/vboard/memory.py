"""Virtual K210 RAM addresses for the buffers board code can reach through `uctypes`.

On the board an Image's pixels, its pix_to_ai() buffer and the Image object itself live at
addresses in 0x80000000-0x80800000 that `uctypes.addressof`, `id()` and
`uctypes.bytearray_at` expose (device/server.py writes received pixels straight into the
Image and reads the KPU input buffer that way). Here each such buffer gets an address in
that range, backed by the numpy array that really holds the data; objects synthesise their
header bytes on demand. Nothing else is mapped: other addresses raise, as a guarded probe
on a different firmware layout would fail.
"""
import bisect

ARENA_START = 0x80400000
ARENA_END = 0x80800000
_ALIGN = 8

_starts = []          # sorted start addresses
_regions = {}         # start -> (size, backing) ; backing: writable buffer or callable


def alloc(size, backing):
    """Map `backing` (a writable buffer, or a callable returning bytes for read-only
    synthesised memory) at a free address; returns the address."""
    size = max(size, 1)
    addr = ARENA_START
    for start in _starts:
        if addr + size <= start:
            break
        addr = max(addr, start + _round(_regions[start][0]))
    if addr + size > ARENA_END:
        raise MemoryError("memory allocation failed, allocating %d bytes" % size)
    bisect.insort(_starts, addr)
    _regions[addr] = (size, backing)
    return addr


def free(addr):
    if addr in _regions:
        del _regions[addr]
        _starts.remove(addr)


def view(addr, size):
    """uctypes.bytearray_at: a writable view of mapped memory (or synthesised bytes)."""
    i = bisect.bisect_right(_starts, addr) - 1
    if i >= 0:
        start = _starts[i]
        region_size, backing = _regions[start]
        off = addr - start
        if off + size <= region_size:
            if callable(backing):
                return bytearray(backing()[off:off + size])
            return memoryview(backing).cast("B")[off:off + size]
    raise ValueError("vboard: address 0x%x (+%d) is not mapped" % (addr, size))


def _round(n):
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN
