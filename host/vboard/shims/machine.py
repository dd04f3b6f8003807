"""`machine`: UART (the REPL's UARTHS is the vboard's line), reset, soft_reset, freq."""
from host.vboard import board as board_mod
from host.vboard.shims.base import new_module
from host.vboard.uart import DEFAULT_BUF, UartPort

UART1, UART2, UART3, UARTHS = 0, 1, 2, 3


class UART:
    UART1, UART2, UART3, UARTHS = UART1, UART2, UART3, UARTHS

    def __init__(self, uart_id, baudrate=115200, bits=8, parity=None, stop=1, **kw):
        board = board_mod.current()
        if uart_id not in (UART1, UART2, UART3, UARTHS):
            raise ValueError("UART(%s) does not exist" % uart_id)
        self._id = uart_id
        if uart_id == UARTHS:
            self._port = board.port
        else:
            # UART1..3 are wired to nothing: writes vanish, reads time out
            self._port = board.session.uarts.setdefault(uart_id, UartPort("UART%d" % (uart_id + 1)))
        self.init(baudrate, bits, parity, stop, **kw)

    @staticmethod
    def repl_uart():
        board = board_mod.current()
        uart = board.session.uarts.get("repl")
        if uart is None:
            uart = UART.__new__(UART)
            uart._id = UARTHS
            uart._port = board.port
            uart._timeout, uart._timeout_char = 1000, 10
            board.session.uarts["repl"] = uart
        return uart

    def init(self, baudrate=115200, bits=8, parity=None, stop=1, timeout=1000, timeout_char=10,
             read_buf_len=DEFAULT_BUF):
        if bits != 8 or parity is not None or stop != 1:
            # the vboard's line is 8N1 only; the pacing model assumes 10 bits per byte
            raise ValueError("vboard: only 8N1 is emulated")
        if baudrate <= 0:
            raise ValueError("invalid baudrate")
        self._timeout = timeout
        self._timeout_char = timeout_char
        # read_buf_len is a 16-bit field in the firmware: larger values wrap
        self._port.reset(int(baudrate), int(read_buf_len) & 0xFFFF)

    def deinit(self):
        pass

    def any(self):
        return self._port.available()

    def _take(self, n, until=None):
        wait = self._timeout_char / 1000.0
        return self._port.take(n, wait, wait, until)

    def read(self, nbytes=None):
        data = self._take(nbytes)
        return data if data else None

    def readline(self):
        data = self._take(None, until=b"\n")
        return data if data else None

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
        return "[UART]%d: baudrate=%d, read_buf_len=%d" % (
            self._id, self._port.baud, self._port.capacity)


def build(board):
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
