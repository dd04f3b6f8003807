# machine.UART stand-in over a byte-stream file: the host's bytes arrive as fast as the board
# reads them (at most the ring's size per any()), the board's writes go to LINE_OUT.
# Source: MaixPy-v1 components/micropython/port/src/standard_lib/machine/machine_uart.c.
import standin

UARTHS = 4          # machine_uart.c: UART.UARTHS is 4 (UART_DEVICE_MAX)
MAIX_UART_BUF = 2048  # mpconfigboard.h: the default read_buf_len
ARRIVAL = 512


class UART:
    _repl = None

    def __init__(self, uart=UARTHS, baudrate=115200, bits=8, parity=None, stop=1,
                 timeout=0, read_buf_len=MAIX_UART_BUF):
        self._in = None
        self._out = None
        self.read_buf = None
        self.read_buf_len = 0
        self.init(baudrate, bits, parity, stop, timeout=timeout, read_buf_len=read_buf_len)

    def init(self, baudrate=115200, bits=8, parity=None, stop=1, timeout=0,
             read_buf_len=MAIX_UART_BUF):
        # machine_uart_init_helper: baud <= 0x500000; the old ring is freed (m_del) before
        # the new one, read_buf_len + 1 bytes, is allocated with m_new (GC heap).
        if baudrate <= 0 or baudrate > 0x500000:
            raise ValueError("baudrate out of range")
        self.baudrate = baudrate
        self.read_buf = None
        self.read_buf_len = (read_buf_len + 1) & 0xFFFF   # stored as uint16 (65535 wraps)
        self.read_buf = bytearray(self.read_buf_len) if self.read_buf_len else None
        standin.sample()
        if self._in is None and standin.LINE_IN:
            self._in = open(standin.LINE_IN, "rb")
            self._out = open(standin.LINE_OUT, "wb")
            self._left = _size(standin.LINE_IN)

    def any(self):
        # the ring holds at most read_buf_len - 1 bytes (uart_rx_irq: head + 1 == tail is full);
        # bytes arrive over time: at most ARRIVAL per call (~3 ms of line at 1.5 Mbaud)
        if self._in is None:
            return 0
        room = self.read_buf_len - 1 if self.read_buf_len else 0
        return min(self._left, room, ARRIVAL)

    def readinto(self, buf):
        if self._in is None:
            return None
        n = self._in.readinto(buf)
        if n:
            self._left -= n
        return n or None

    def read(self, n=-1):
        if self._in is None:
            return None
        data = self._in.read(self.any() if n < 0 else n)
        self._left -= len(data)
        return data or None

    def write(self, buf):
        self._out.write(buf)
        if len(buf) > 1024:          # a RESULT's outputs: everything of this image is alive
            standin.sample()
        return len(buf)

    def deinit(self):
        self.read_buf = None

    @staticmethod
    def repl_uart():
        if UART._repl is None:
            UART._repl = UART(UARTHS, 115200)
        return UART._repl


def _size(path):
    import uos
    return uos.stat(path)[6]


def reset():
    raise SystemExit("machine.reset()")
