"""The virtual board's MicroPython GC heap: the scripts' big allocations, counted at the
sizes MicroPython 1.11 (ced340d, the core of MaixPy-v1 and CanMV) gives them on the K210.

Board code runs under CPython, whose object sizes mean nothing for the board. So the
allocations that decide whether a script fits are counted here at the firmware's sizes:
`bytearray`/`bytes` made by board code, bytes read from a UART or a DecompIO, Image pixels,
Image objects and their pix_ai planes, the float lists of KPU outputs, a DecompIO's state and
window, the board scripts' own bytecode. What `gc.mem_free()` / `micropython.mem_info()`
report comes from this count; an allocation that does not fit raises MemoryError as the
firmware does, after one collection (py/gc.c: gc_alloc collects once when no free block
is found, then fails).

Sizes (RV64: mp_uint_t is 8 bytes, mpconfigport.h): the GC block is
MICROPY_BYTES_PER_GC_BLOCK = 4 * BYTES_PER_WORD = 32 bytes (py/mpconfig.h, not overridden
by either port); each m_malloc takes whole blocks. bytearray(n): mp_obj_array_t (32 B) then
n bytes of items (py/objarray.c: array_new). bytes of n: n + 1 bytes (vstr, null byte) then
mp_obj_str_t (32 B) (py/objstr.c: mp_obj_new_str_from_vstr). A list of n floats from the
firmware: mp_obj_list_t (32 B), n item pointers, and n boxed floats (mp_obj_float_t, 16 B:
one block each; MICROPY_OBJ_REPR_A boxes every float). The pool is what py/gc.c: gc_init
leaves of the heap after its allocation and finaliser tables.

Freeing: as on the board, nothing comes back before a collection. `gc.collect()` (or a
failed allocation) runs CPython's collector, then every counted object that only this
heap still references is freed (its CPython reference count says so).

Not modelled (say it where it matters): fragmentation - the count is the sum of block
rounded sizes, so an allocation can fit here and fail on the board for want of a
contiguous run (tests/test_mpy_memory.py runs device/ in the real interpreter's heap for
that); small objects (ints, short strings, tuples, dicts, the scripts' own lists) are not
counted one by one: the firmware's own use after boot is a fixed FIRMWARE_KEEPS and the
scripts' bytecode an estimate from their source size.
"""
import gc as _gc
import sys
import threading

BYTES_PER_WORD = 8
BLOCK = 4 * BYTES_PER_WORD        # py/mpconfig.h: MICROPY_BYTES_PER_GC_BLOCK
_BLOCKS_PER_ATB = 4               # py/gc.c
_BLOCKS_PER_FTB = 8               # py/gc.c (MICROPY_ENABLE_FINALISER is 1 in both ports)

OBJ_ARRAY = 32       # mp_obj_array_t: base, typecode:8|free, len, items
OBJ_STR = 32         # mp_obj_str_t: base, hash, len, data
OBJ_LIST = 32        # mp_obj_list_t: base, alloc, len, items
OBJ_TUPLE_HEAD = 16  # mp_obj_tuple_t: base, len, then the items inline
OBJ_FLOAT = 16       # mp_obj_float_t: base, float
# What the firmware itself keeps in the GC heap when main.py starts (the REPL UART object,
# sys.path/argv, _boot.py's modules, VFS mounts, stdio, readline): tests/test_mpy_memory.py
# reserves the same 32 KiB (an upper bound with margin, not a measurement).
FIRMWARE_KEEPS = 32 * 1024
# A board script's bytecode, qstrs and function objects per byte of source: measured with
# MicroPython 1.11 (unix, 64-bit) importing device/: protocol.py + decoders.py 0.90,
# detect.py with kpu_model.py, server.py, pixel_views.py, clock.py 0.66, all that
# `import detect` brings 0.76 (61 KB from 81 KB of source; gc.mem_alloc() after gc.collect(),
# before and after the import).
BYTECODE_PER_SOURCE_BYTE = 0.8

M_MALLOC = "memory allocation failed, allocating %u bytes"      # py/runtime.c: m_malloc_fail
# sipeed/MaixPy-v1 and kendryte/canmv omv/xalloc.c: xalloc_fail (image buffers)
XALLOC = ("Out of normal MicroPython Heap Memory! Please reduce the resolution of the image "
          "you are running this algorithm on to bypass this issue!")


def pool_bytes(heap_bytes):
    """py/gc.c: gc_init: the allocatable pool of a `heap_bytes` GC heap (start taken as
    block aligned; the end is aligned down to a block)."""
    total = heap_bytes // BLOCK * BLOCK
    atb = total * 8 // (8 + 8 * _BLOCKS_PER_ATB // _BLOCKS_PER_FTB + 8 * _BLOCKS_PER_ATB * BLOCK)
    return atb * _BLOCKS_PER_ATB * BLOCK


def blocks(nbytes):
    """Bytes the GC heap gives an m_malloc of `nbytes` (0 for 0: gc_alloc returns NULL)."""
    return (nbytes + BLOCK - 1) // BLOCK * BLOCK


def bytearray_parts(n):
    return [OBJ_ARRAY, n]


def bytes_parts(n):
    return [n + 1, OBJ_STR]


def float_list_parts(n):
    """mp_obj_new_list(n, NULL) then a mp_obj_new_float per item (CanMV maix_kpu.c:
    k210_kpu_get_outputs, Maix_kpu.c: py_kpu_run_with_output)."""
    return [OBJ_LIST, BYTES_PER_WORD * n] + [OBJ_FLOAT] * n


def float_tuple_parts(n):
    """mp_obj_new_tuple(n, items) of n new floats (MaixPy-v1 Maix_kpu.c: fmap slices)."""
    return [OBJ_FLOAT] * n + [OBJ_TUPLE_HEAD + BYTES_PER_WORD * n]


def _refs(entry):
    return sys.getrefcount(entry[0])


# The reference count of an object only a heap entry holds (the entry and the call's argument)
_FREE_REFS = _refs([bytearray(1), 0])


class GcHeap:
    """One boot's GC heap. `extra()`: bytes taken by firmware state outside the counted
    objects (the REPL UART's ring), asked at every use."""

    def __init__(self, heap_bytes, extra=lambda: 0):
        self.total = pool_bytes(heap_bytes)
        self._extra = extra
        self._fixed = blocks(FIRMWARE_KEEPS)
        self._live = {}                 # id(obj) -> [obj, bytes]: held until a collection
        self._live_bytes = 0
        self._lock = threading.RLock()

    # -- what gc / micropython report
    def used(self):
        return self._fixed + self._extra() + self._live_bytes

    def free(self):
        return self.total - self.used()

    # -- allocation
    def alloc(self, obj, parts, fail=M_MALLOC):
        """Count `obj` as the m_mallocs `parts` (request sizes, in order) and return it; the
        first request that does not fit after a collection raises MemoryError with `fail`
        (formatted with the request's size when it has a %u). An object counted already
        only grows by `parts` (e.g. an Image's pix_ai planes)."""
        with self._lock:
            need = 0
            for n in parts:
                need += self._fit(n, need, fail)
            entry = self._live.get(id(obj))
            if entry is not None and entry[0] is obj:
                entry[1] += need
            else:
                self._live[id(obj)] = [obj, need]
            self._live_bytes += need
        return obj

    def keep(self, nbytes, fail=M_MALLOC):
        """Count `nbytes` that stay taken until the next boot (a module's bytecode)."""
        with self._lock:
            self._fixed += self._fit(nbytes, 0, fail)

    def make_room(self, nbytes, freed):
        """MemoryError unless an m_malloc of `nbytes` fits once `freed` bytes of what
        `extra()` reports are freed (m_del then m_new: the caller then changes `extra()`)."""
        with self._lock:
            self._fit(nbytes, -blocks(freed), M_MALLOC)

    def _fit(self, n, pending, fail):
        size = blocks(n)
        if size and self.used() + pending + size > self.total:
            self.collect()
            if self.used() + pending + size > self.total:
                self._log_failure(n)
                raise MemoryError(fail % n if "%u" in fail else fail)
        return size

    def collect(self):
        """gc.collect(): CPython's collector breaks dead cycles, then each counted object no
        one else references is freed."""
        _gc.collect()
        with self._lock:
            # until nothing more goes: a freed object may have held the last other reference
            # to another counted one (a list of bytes)
            while True:
                garbage = [k for k, e in self._live.items() if _refs(e) <= _FREE_REFS]
                if not garbage:
                    break
                for key in garbage:
                    self._live_bytes -= self._live.pop(key)[1]

    def _log_failure(self, n):
        # to the board's log (stderr): what held the heap when it ran out
        sizes = sorted(((e[1], type(e[0]).__name__) for e in self._live.values()), reverse=True)
        sys.stderr.write("vboard: GC heap full allocating %d bytes: %d of %d used (fixed %d, "
                         "UART ring %d, largest objects %s)\n"
                         % (n, self.used(), self.total, self._fixed, self._extra(),
                            ", ".join("%s %d" % (t, b) for b, t in sizes[:6])))

    def reset(self):
        """A (soft) reboot: gc_init on an empty heap."""
        with self._lock:
            self._live.clear()
            self._live_bytes = 0
            self._fixed = blocks(FIRMWARE_KEEPS)


def counting_type(real, heap, parts):
    """A stand-in for the builtin `real` (bytes or bytearray) in board code: calls make a
    real object counted in `heap` as `parts(len)`; isinstance/issubclass see the real type."""
    def __call__(cls, *args, **kwargs):
        obj = real(*args, **kwargs)
        if obj is (args[0] if args else None):
            obj = real(memoryview(obj))     # CPython's bytes(b) is b; MicroPython copies
        # CPython shares b"" and one-byte bytes objects: not worth counting, never freed
        if real is bytes and len(obj) <= 1:
            return obj
        return heap.alloc(obj, parts(len(obj)))

    meta = type("counting_" + real.__name__, (type,), {
        "__call__": __call__,
        "__instancecheck__": lambda cls, obj: isinstance(obj, real),
        "__subclasscheck__": lambda cls, sub: issubclass(sub, real),
        "__getattr__": lambda cls, name: getattr(real, name),
        "__repr__": lambda cls: "<class '%s'>" % real.__name__,
    })
    return meta(real.__name__, (), {"real_type": real})
