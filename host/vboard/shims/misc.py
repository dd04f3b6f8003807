"""Small firmware modules: image, fpioa_manager, micropython, gc, utils, ubinascii,
ustruct, ujson, uhashlib."""
import binascii as _binascii
import hashlib as _hashlib
import json as _json
import struct as _struct

from host.vboard import fs
from host.vboard import image as _image
from host.vboard import kpu as _kpu
from host.vboard import memory as _memory
from host.vboard.shims.base import new_module

# FPIOA function names a script registers pins to (subset of the K210's 256 functions).
_FPIOA_FUNCS = (["JTAG_TCLK", "JTAG_TDI", "JTAG_TMS", "JTAG_TDO"]
                + ["SPI0_D%d" % i for i in range(8)] + ["SPI0_SS%d" % i for i in range(4)]
                + ["SPI0_ARB", "SPI0_SCLK", "UARTHS_RX", "UARTHS_TX", "RESV6", "RESV7",
                   "CLK_SPI1", "CLK_I2C1"]
                + ["GPIOHS%d" % i for i in range(32)] + ["GPIO%d" % i for i in range(8)]
                + ["UART1_CTS", "UART1_DSR", "UART1_DCD", "UART1_RI", "UART1_SIR_IN",
                   "UART1_DTR", "UART1_RTS", "UART1_OUT2", "UART1_OUT1", "UART1_SIR_OUT",
                   "UART1_BAUD", "UART1_RE", "UART1_DE", "UART1_RS485_EN",
                   "UART1_RX", "UART1_TX", "UART2_RX", "UART2_TX", "UART3_RX", "UART3_TX"])


def build_image(board):
    """sipeed/MaixPy-v1 omv/py/py_image.c: globals_dict_table: `Image` is a function
    (py_image_load_image) returning an image object; no pixel format constants (those are
    sensor's)."""
    def Image(*args, **kwargs):
        # py_image_load_image: pixels by xalloc, then the object (py_image: m_new_obj)
        return _image.Image(*args, **kwargs).count_in(board.heap)

    return new_module("image", Image=Image)


class _Fpioa:
    def __init__(self):
        for i, name in enumerate(_FPIOA_FUNCS):
            setattr(self, name, i)


class _FpioaManager:
    """sipeed/MaixPy-v1 components/micropython/port/builtin_py/fpioa_manager.py: `fm`
    (register / unregister / get_pin_by_function over Maix.FPIOA)."""

    def __init__(self):
        self.fpioa = _Fpioa()
        self._pins = {}

    def register(self, pin, function, force=False):
        owner = [p for p, f in self._pins.items() if f == function and p != pin]
        if owner and not force:
            raise ValueError("function %d already registered to pin %d" % (function, owner[0]))
        for p in owner:
            del self._pins[p]
        self._pins[pin] = function

    def unregister(self, pin):
        self._pins.pop(pin, None)

    def get_pin_by_function(self, function):
        for p, f in self._pins.items():
            if f == function:
                return p
        return None


def build_fpioa_manager(board):
    return new_module("fpioa_manager", fm=_FpioaManager())


def build_micropython(board):
    """py/modmicropython.c: mp_module_micropython_globals_table."""
    def kbd_intr(chr):
        # only lasts for the running program: every execution starts with Ctrl-C enabled
        board.interrupt_char = chr

    def mem_info(*args):
        # py/gc.c: gc_dump_info (the block counts of its second line are not modelled)
        heap = board.heap
        board.print("stack: 2048 out of 16384\nGC: total: %u, used: %u, free: %u"
                    % (heap.total, heap.used(), heap.free()))

    return new_module("micropython", const=lambda x: x, kbd_intr=kbd_intr, mem_info=mem_info,
                      opt_level=lambda *a: 0, alloc_emergency_exception_buf=lambda n: None,
                      heap_lock=lambda: None, heap_unlock=lambda: None,
                      schedule=lambda fn, arg: fn(arg))


def build_gc(board):
    """py/modgc.c: gc_module_globals_table; the heap is the board's count (host/vboard/gcheap.py:
    sizes as MicroPython 1.11 allocates them, no fragmentation)."""
    heap = board.heap
    return new_module("gc", collect=heap.collect, mem_free=heap.free, mem_alloc=heap.used,
                      enable=lambda: None,
                      disable=lambda: None, isenabled=lambda: True, threshold=lambda *a: -1)


def build_utils(board):
    """`Maix.utils` / `maix.utils` (sipeed/MaixPy-v1 and kendryte/canmv@main, feat/kpu
    Maix/Maix_utils.c: locals_dict_table): gc_heap_size, heap_free, flash_read."""
    def flash_read(address, size):
        # Maix_utils.c: py_flash_read: bytes of the SPI flash
        return fs.read_flash(address, size)

    def gc_heap_size(*size):
        # Maix_utils.c: py_gc_heap_size: the configured size; with one argument it stores
        # the size for the next boot and returns None (the running heap keeps its size)
        if len(size) > 1:
            raise OSError(22)                        # MP_EINVAL
        return None if size else board.profile.gc_heap_bytes

    # Maix_utils.c: py_heap_free: the C heap's free bytes (get_free_heap_size2)
    return new_module("utils", heap_free=lambda: _kpu.heap_free(board),
                      gc_heap_size=gc_heap_size, flash_read=flash_read)


def build_ubinascii(board):
    """extmod/modubinascii.c: mp_module_binascii_globals_table (crc32 over any buffer)."""
    def hexlify(data, sep=None):
        if not sep:
            return _binascii.hexlify(bytes(data))
        sep = sep.encode() if isinstance(sep, str) else bytes(sep)
        return sep.join(_binascii.hexlify(bytes([b])) for b in bytes(data))

    def crc32(data, value=0):
        # an Image is a read-only buffer of its RGB565 bytes on the board
        if isinstance(data, _image.Image):
            data = data.to_bytes()
        return _binascii.crc32(data, value)

    return new_module("ubinascii", hexlify=hexlify, unhexlify=_binascii.unhexlify,
                      a2b_base64=_binascii.a2b_base64, b2a_base64=_binascii.b2a_base64,
                      crc32=crc32)


def build_ustruct(board):
    """py/modstruct.c: mp_module_struct_globals_table (CPython's struct: same formats)."""
    return new_module("ustruct", pack=_struct.pack, unpack=_struct.unpack,
                      calcsize=_struct.calcsize, pack_into=_struct.pack_into,
                      unpack_from=_struct.unpack_from)


def build_ujson(board):
    """extmod/modujson.c: mp_module_ujson_globals_table (CPython's json)."""
    return new_module("ujson", dumps=_json.dumps, loads=_json.loads, dump=_json.dump,
                      load=_json.load)


def build_uctypes(board):
    """uctypes.addressof / bytearray_at over the virtual RAM map (host.vboard.memory)."""
    def addressof(obj):
        if isinstance(obj, _image.Image):
            return obj.addr
        raise TypeError("object with buffer protocol required")

    return new_module("uctypes", addressof=addressof, bytearray_at=_memory.view,
                      UINT8=0, INT8=1, UINT16=2, INT16=3, UINT32=4, INT32=5,
                      LITTLE_ENDIAN=0, BIG_ENDIAN=1, NATIVE=2)


def build_uhashlib(board):
    """sipeed/MaixPy-v1 components/micropython/port/src/moduhashlib_maixpy.c (hardware
    SHA256)."""
    # the hardware SHA's one-call-only limit (k210-device.md) is not emulated
    return new_module("uhashlib", sha256=lambda data=b"": _hashlib.sha256(bytes(data)))
