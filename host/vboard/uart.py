"""The board side of a K210 UART: line-rate pacing, the receive ring buffer, Ctrl-C.

Time is accounted per direction as "the line is busy until t" (a token bucket), so a chunk
is delivered when its last byte would have crossed the wire at 8N1 (baud/10 bytes/s). Chunks
are at most ~5 ms of line time, so arrival granularity stays fine without per-byte sleeps and
1.5 Mbaud is reachable from CPython. A sender that wakes up late may catch up by at most
CATCH_UP seconds of line time (a burst of <= 300 bytes at 1.5 Mbaud, far inside any UART
ring), as a wire that never stopped would; restarting the line at `now` after every late
wake-up instead lost the wake-up latency once per chunk (~5 % of the rate at 1.5 Mbaud).
"""
import threading
import time

REPL_BAUD = 115200
DEFAULT_BUF = 2048
MAX_BUF = 65534          # read_buf_len is a 16-bit field in the firmware
CHUNK_SECONDS = 0.005
CATCH_UP = 0.002         # s of line time a late sender may make up (bounded burst)


def bytes_per_second(baud):
    return baud / 10.0   # 8N1: start + 8 data + stop bits


def chunk_size(baud):
    return max(1, int(bytes_per_second(baud) * CHUNK_SECONDS))


class LinePacer:
    """One direction of the wire: returns when a chunk would have been fully sent."""

    def __init__(self):
        self._free_at = 0.0

    def wait_sent(self, nbytes, baud):
        now = time.monotonic()
        self._free_at = max(self._free_at, now - CATCH_UP) + nbytes / bytes_per_second(baud)
        delay = self._free_at - now
        if delay > 0:
            time.sleep(delay)


class UartPort:
    """Hardware state of one UART: baud, the RX ring buffer, the TX pacer.

    `feed` is called by the line's reader thread with bytes already paced at the line
    rate; bytes that find the buffer full are dropped silently, as the firmware does.
    `on_interrupt` (REPL UART only) decides whether a 0x03 becomes a KeyboardInterrupt:
    it returns True when the byte was consumed as an interrupt.
    """

    def __init__(self, name, line=None, on_interrupt=None):
        self.name = name
        self.line = line
        self.on_interrupt = on_interrupt
        self.cond = threading.Condition()
        self.tx = LinePacer()
        self.reset(REPL_BAUD, DEFAULT_BUF)

    def reset(self, baud, buf_len):
        with self.cond:
            self.baud = baud
            self.capacity = buf_len
            self.rx = bytearray()

    # -- receive side (reader thread) --
    def feed(self, data):
        with self.cond:
            if self.on_interrupt is not None and 3 in data:
                kept = bytearray()
                for b in data:
                    if b == 3 and self.on_interrupt():
                        continue
                    kept.append(b)
                data = bytes(kept)
            room = max(self.capacity - len(self.rx), 0)
            data = data[:room]
            if data:
                self.rx += data
                self.cond.notify_all()

    # -- board side (script thread) --
    def available(self):
        with self.cond:
            return len(self.rx)

    def take(self, n, first_timeout, gap_timeout, until=None):
        """Wait up to first_timeout s for the first byte, then keep collecting until n bytes,
        the `until` byte, or a gap longer than gap_timeout s. Returns bytes (maybe empty)."""
        out = bytearray()
        timeout = first_timeout
        with self.cond:
            while n is None or len(out) < n:
                if not self.rx:
                    deadline = time.monotonic() + timeout
                    while not self.rx:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            return bytes(out)
                        self.cond.wait(left)
                want = len(self.rx) if n is None else min(n - len(out), len(self.rx))
                if until is not None:
                    idx = self.rx.find(until, 0, want)
                    if idx >= 0:
                        want = idx + 1
                out += self.rx[:want]
                del self.rx[:want]
                if until is not None and out.endswith(until):
                    break
                timeout = gap_timeout
        return bytes(out)

    def read_byte(self):
        """Blocking read of one byte (the REPL's stdin)."""
        with self.cond:
            while not self.rx:
                self.cond.wait(0.5)
            b = self.rx[0]
            del self.rx[0]
            return b

    def write(self, data):
        """Send bytes at the line rate; returns once the last chunk is on the wire."""
        if not data:
            return
        step = chunk_size(self.baud)
        for i in range(0, len(data), step):
            chunk = data[i:i + step]
            self.tx.wait_sent(len(chunk), self.baud)
            if self.line is not None:
                self.line.send(bytes(chunk), self.baud)
