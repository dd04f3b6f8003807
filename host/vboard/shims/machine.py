"""`machine`: UART (the REPL's UARTHS is the vboard's line), reset, soft_reset, freq.

UART follows sipeed/MaixPy-v1 (and kendryte/canmv@main, the same file with "[CANMV]" texts)
components/micropython/port/src/standard_lib/machine/machine_uart.c.
"""
from host.vboard import board as board_mod
from host.vboard import gcheap
from host.vboard.shims.base import new_module
from host.vboard.uart import DEFAULT_BUF, UartPort

# machine_uart.c: machine_uart_locals_dict_table: UART_DEVICE_1..3 and
# MICROPY_UARTHS_DEVICE (mpconfigboard.h: 4); id 3 (UART_DEVICE_MAX) does not exist
UART1, UART2, UART3, UARTHS = 0, 1, 2, 4
MAX_BAUD = 0x500000
_PARITY_NAME = ("None", "odd", "even")
_STOP_NAME = {1: "1", 1.5: "1.5", 2: "2"}


def _tag():
    """The texts' prefix: "[MAIXPY]" on MaixPy-v1, "[CANMV]" on CanMV."""
    return "[%s]" % board_mod.current().profile.log_tag


def ring_capacity(read_buf_len):
    """Bytes the receive ring holds: machine_uart_init_helper stores read_buf_len + 1 in a
    uint16_t (65535 wraps to 0: no ring at all) and a ring of N slots holds N - 1 bytes."""
    if read_buf_len <= 0:
        return 0
    return max(((read_buf_len + 1) & 0xFFFF) - 1, 0)


def _counted(data):
    """py/stream.c: stream_read / stream_unbuffered_readline return a new bytes object
    (its vstr): counted in the board's GC heap."""
    if len(data) <= 1:        # CPython shares one-byte bytes objects
        return data
    return board_mod.current().heap.alloc(data, gcheap.bytes_parts(len(data)))


class UART:
    UART1, UART2, UART3, UARTHS = UART1, UART2, UART3, UARTHS

    def __init__(self, uart_id, *args, **kw):
        # machine_uart.c: machine_uart_make_new ("%b" prints the id as a C bool)
        board = board_mod.current()
        if uart_id not in (UART1, UART2, UART3, UARTHS):
            raise ValueError("%sUART%s:does not exist" % (_tag(), "true" if uart_id else "false"))
        self._id = uart_id
        if uart_id == UARTHS:
            self._port = board.port
        else:
            # UART1..3 are wired to nothing: writes vanish, reads time out
            self._port = board.session.uarts.setdefault(uart_id, UartPort("UART%d" % (uart_id + 1)))
        self._init(*args, **kw)

    @staticmethod
    def repl_uart():
        # machine_uart.c: machine_uart_repl_uart: the UART object the REPL uses
        board = board_mod.current()
        uart = board.session.uarts.get("repl")
        if uart is None:
            uart = UART.__new__(UART)
            uart._id = UARTHS
            uart._port = board.port
            uart._timeout, uart._timeout_char = 1000, 10
            uart._bits, uart._parity, uart._stop = 8, 0, 1
            board.session.uarts["repl"] = uart
        return uart

    def init(self, baudrate=115200, bits=8, parity=None, stop=None, *, timeout=1000,
             timeout_char=10, read_buf_len=DEFAULT_BUF, ide=False, from_ide=True):
        # machine_uart.c: machine_uart_init -> None; timeout, timeout_char and
        # read_buf_len are keyword-only (MP_ARG_KW_ONLY)
        self._init(baudrate, bits, parity, stop, timeout=timeout, timeout_char=timeout_char,
                   read_buf_len=read_buf_len)

    def _init(self, baudrate=115200, bits=8, parity=None, stop=None, *, timeout=1000,
              timeout_char=10, read_buf_len=DEFAULT_BUF, ide=False, from_ide=True):
        # machine_uart.c: machine_uart_init_helper
        if baudrate < 0 or baudrate > MAX_BAUD:
            raise ValueError("%sUART:invalid baudrate" % _tag())
        if not 5 <= bits <= 8:
            raise ValueError("%sUART:invalid data bits" % _tag())
        parity = 0 if parity is None else int(parity)
        if not 0 <= parity <= 2:
            raise ValueError("%sUART:invalid parity" % _tag())
        stop = 1 if stop is None or stop == 0 else stop
        if stop not in _STOP_NAME:
            raise ValueError("%sUART:invalid stop bits" % _tag())
        if self._id == UARTHS and (bits != 8 or parity != 0):
            raise ValueError("%sUART:invalid param" % _tag())
        if bits != 8 or parity != 0 or stop != 1 or baudrate == 0:
            # the vboard's line is 8N1 only; the pacing model assumes 10 bits per byte
            raise ValueError("vboard: only 8N1 at a positive baud rate is emulated")
        if timeout >= 0:
            self._timeout = timeout
        if timeout_char >= 0:
            self._timeout_char = timeout_char
        self._bits, self._parity, self._stop = bits, parity, stop
        # the old ring is freed, then the new one allocated (its bytes are lost): m_del, then
        # m_new(byte, read_buf_len + 1) in the GC heap (the REPL UART's ring is counted there)
        capacity = ring_capacity(int(read_buf_len))
        board = board_mod.current()
        if self._port is board.port:
            board.heap.make_room(capacity + 1, self._port.capacity + 1)
        self._port.reset(int(baudrate), capacity)

    def deinit(self):
        # machine_uart.c: machine_uart_deinit; the vboard's REPL UART keeps working
        pass

    def any(self):
        # machine_uart.c: machine_uart_any (bytes in the ring)
        return self._port.available()

    def _take(self, n, until=None):
        wait = self._timeout_char / 1000.0
        return self._port.take(n, wait, wait, until)

    # read/readline/readinto/write: MicroPython's py/stream.c over machine_uart.c:
    # machine_uart_read (waits `timeout_char` for the first byte here) / machine_uart_write
    def read(self, nbytes=None):
        data = self._take(nbytes)
        return _counted(data) if data else None

    def readline(self):
        data = self._take(None, until=b"\n")
        return _counted(data) if data else None

    def readinto(self, buf, nbytes=None):
        try:
            view = memoryview(buf).cast("B")
        except TypeError:
            raise TypeError("object with buffer protocol required")
        if view.readonly:
            raise TypeError("object with buffer protocol required")
        n = len(view) if nbytes is None else min(nbytes, len(view))
        data = self._take(n)
        if not data:
            return None
        view[:len(data)] = data
        return len(data)

    def write(self, buf):
        data = buf.encode("utf-8") if isinstance(buf, str) else bytes(buf)
        if self._id == UARTHS:
            board_mod.current().write(data)
        else:
            self._port.write(data)
        return len(data)

    def __repr__(self):
        # machine_uart.c: machine_uart_print
        return "%sUART%d:( baudrate=%u, bits=%u, parity=%s, stop=%s)" % (
            _tag(), self._id + 1, self._port.baud, self._bits, _PARITY_NAME[self._parity],
            _STOP_NAME[self._stop])


def build(board):
    """standard_lib/machine/modmachine.c: machine_module_globals_table."""
    def reset():
        raise board_mod.ResetRequest(hard=True)

    def soft_reset():
        raise board_mod.ResetRequest(hard=False)

    def freq(*args):
        return 400000000

    def unique_id():
        return b"vboard-k210-0001" + bytes(16)

    return new_module("machine", UART=UART, reset=reset, soft_reset=soft_reset, freq=freq,
                      unique_id=unique_id)
