"""The board side of a K210 UART: line-rate pacing, the receive ring buffer, Ctrl-C.

Each direction of the wire is a LinePacer: bytes cross it at 8N1 (baud/10 bytes/s) in
chunks of at most ~5 ms of line time (fine arrival granularity without per-byte sleeps, and
1.5 Mbaud reachable from CPython). A chunk's line time starts when the previous chunk's
ended or when its bytes were ready, whichever is later, and it is delivered at the end of
that line time (or later, if the thread wakes late): line times never overlap and never
start before the bytes existed. A sender that wakes late loses no line time when its next
bytes were already waiting (it says when they were ready). On top of that, no window of
WINDOW seconds or more (up to HISTORY) ever receives more than baud/10 bytes per second: a
delivery that would make a late one's window too full waits. The old rule (a late sender
could claim up to 2 ms of line time in the past, even after an idle line) gave ~2 % more
than the line rate in the bench.
"""
import collections
import threading
import time

REPL_BAUD = 115200
DEFAULT_BUF = 2048
CHUNK_SECONDS = 0.005
WINDOW = 0.010           # s: the shortest window the line-rate bound holds for
HISTORY = 0.2            # s of deliveries the window rule looks back over


def bytes_per_second(baud):
    return baud / 10.0   # 8N1: start + 8 data + stop bits


def chunk_size(baud):
    return max(1, int(bytes_per_second(baud) * CHUNK_SECONDS))


class LinePacer:
    """One direction of the wire: `wait_sent` returns when a chunk has crossed it."""

    def __init__(self):
        self._wire_end = 0.0
        self._baud = None
        self._delivered = collections.deque()     # (monotonic time, bytes), oldest first

    def _due(self, nbytes, baud, ready_at):
        if baud != self._baud:
            # a new line rate: bytes carried at the old one are not judged at the new one
            self._baud = baud
            self._delivered.clear()
        rate = bytes_per_second(baud)
        start = max(self._wire_end, ready_at)
        self._wire_end = start + nbytes / rate
        due = self._wire_end
        # window rule: the bytes delivered after an earlier delivery t_j, this chunk
        # included, need at least their line time since t_j once they exceed WINDOW's worth
        total = nbytes
        for t_j, n_j in reversed(self._delivered):
            if total > rate * WINDOW:
                due = max(due, t_j + total / rate)
            total += n_j
        return due

    def wait_sent(self, nbytes, baud, ready_at=None, wait=time.sleep):
        """Block until `nbytes` have crossed the line. ready_at: when the bytes were there
        (default now; never later than now); wait(seconds): how to pass the time (a reader
        may fetch its next bytes meanwhile)."""
        now = time.monotonic()
        due = self._due(nbytes, baud, now if ready_at is None else min(ready_at, now))
        while True:
            left = due - time.monotonic()
            if left <= 0:
                break
            wait(left)
        now = time.monotonic()
        self._delivered.append((now, nbytes))
        while self._delivered and self._delivered[0][0] < now - HISTORY:
            self._delivered.popleft()


class UartPort:
    """Hardware state of one UART: baud, the RX ring buffer, the TX pacer.

    `feed` is called by the line's reader thread with bytes already paced at the line
    rate; bytes that find the buffer full are dropped silently, as the firmware does.
    `on_interrupt(n)` (REPL UART only) is told of the n 0x03 bytes that got into it: the
    firmware's RX interrupt stores the byte first, then signals the interrupt (MaixPy-v1 and
    CanMV machine_uart.c: uart_rx_irq), so the 0x03 stays in the buffer for the REPL or a
    script to read; a 0x03 that finds the buffer full is lost with its interrupt.
    """

    def __init__(self, name, line=None, on_interrupt=None):
        self.name = name
        self.line = line
        self.on_interrupt = on_interrupt
        self.cond = threading.Condition()
        self.tx = LinePacer()
        self._tx_lock = threading.Lock()     # firmware timers may print too (one wire)
        self.reset(REPL_BAUD, DEFAULT_BUF)

    def reset(self, baud, buf_len):
        with self.cond:
            self.baud = baud
            self.capacity = buf_len
            self.rx = bytearray()

    # -- receive side (reader thread) --
    def feed(self, data):
        with self.cond:
            room = max(self.capacity - len(self.rx), 0)
            data = data[:room]
            if data:
                self.rx += data
                self.cond.notify_all()
            if self.on_interrupt is not None and 3 in data:
                self.on_interrupt(data.count(3))

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
        ready = time.monotonic()         # every chunk of this write is waiting from now
        step = chunk_size(self.baud)
        for i in range(0, len(data), step):
            chunk = data[i:i + step]
            with self._tx_lock:
                self.tx.wait_sent(len(chunk), self.baud, ready)
                if self.line is not None:
                    self.line.send(bytes(chunk), self.baud)
