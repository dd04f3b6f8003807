"""The wire between the board's REPL UART and the host: a pseudo-terminal, optionally TCP.

The vboard keeps its own descriptor of the pty slave open, so the master never sees a
hang-up while hosts close and reopen the port (e.g. to change baud). Output that no host
reads stays in the kernel's pty buffer until it is full, then is dropped, like a USB-serial
bridge nobody drains.

A pty carries no baud rate, but the slave's termios holds the speed the host configured;
when it differs from the board's baud, bytes are garbled like on a real wire: host->board
bytes are lost (framing errors) and board->host bytes arrive as noise. So a host that
forgets to follow a baud change (or a soft reset back to 115200) fails as it would on a
board. A TCP client (pyserial `socket://`) has no baud and is never garbled.

Bytes that cross a host baud change are judged by the baud on either side for BAUD_GRACE
(a host that writes and then switches at once, as kflash does after its ROM baud change and
its boot command, had those bytes on the wire before the switch; the pty cannot tell the
order). The host's baud is sampled at least every 10 ms, so the grace never covers a host
that switched long ago: a persistent mismatch is always garbled.

With a fault spec (host/vboard/faults.py) both directions pass through a fault injector
after pacing; its reset and disconnect events act here: `on_reset` (the board's RESET pin)
and `disconnect(seconds)` (the pty is closed, so the host's open port fails as an unplugged
USB-serial bridge does, and a new pty is made after `seconds`; `on_path(path or None)` lets
the board process move its stable names along).
"""
import errno
import fcntl
import os
import random
import select
import socket
import struct
import threading
import time
import tty

from host.vboard import faults as faults_mod
from host.vboard.uart import LinePacer, chunk_size

TCGETS2 = 0x802C542A      # struct termios2, whose c_ispeed/c_ospeed hold the numeric baud
TERMIOS2 = struct.Struct("4I B 19s 2I")
BAUD_GRACE = 0.02         # s after an observed host baud change (see above)
BAUD_SAMPLE = 0.01        # s between samples of the host's baud


class Line:
    def __init__(self, tcp_port=None, noise_seed=0, fault_spec=None, fault_seed=0,
                 fault_log=None):
        self._pty_lock = threading.RLock()
        self._open_pty()
        self.server = None
        self.client = None
        if tcp_port is not None:
            self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.server.bind(("127.0.0.1", tcp_port))
            self.server.listen(1)
            self.tcp_port = self.server.getsockname()[1]
        self._noise = random.Random(noise_seed)
        self._send_lock = threading.Lock()
        self._baud_lock = threading.Lock()
        self._host_baud = None
        self._prev_host_baud = None
        self._host_changed = 0.0
        self._closed = False
        self._ahead = b""           # host -> board bytes read ahead (see _from_pty)
        self._ahead_at = 0.0
        self.port = None            # the UartPort fed by this line (set by attach)
        self.on_reset = None        # callable: the board's RESET pin (fault `reset`)
        self.on_path = None         # callable(path or None): the pty moved (fault `disconnect`)
        self._reopen_at = None      # disconnected until then
        self._pending_disconnect = None
        self.faults = None
        self._to_board = self._to_host = None
        if fault_spec is not None and fault_spec.active():
            self.faults = faults_mod.Counter(fault_spec, fault_seed, fault_log)
            self._to_board = faults_mod.Injector(fault_spec, self.faults, "to_board", fault_seed)
            self._to_host = faults_mod.Injector(fault_spec, self.faults, "to_host", fault_seed)

    def _open_pty(self):
        master, slave = os.openpty()
        tty.setraw(slave)
        flags = fcntl.fcntl(master, fcntl.F_GETFL)
        fcntl.fcntl(master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        with self._pty_lock:
            self.master, self.slave = master, slave
            self.path = os.ttyname(slave)

    def attach(self, port):
        self.port = port
        t = threading.Thread(target=self._reader, name="vboard-line", daemon=True)
        t.start()

    def host_baud(self):
        buf = bytearray(TERMIOS2.size)
        with self._pty_lock:
            if self.slave is None:
                return None             # unplugged: no host at all
            fcntl.ioctl(self.slave, TCGETS2, buf)
        baud = TERMIOS2.unpack(bytes(buf))[-1]
        with self._baud_lock:
            if baud != self._host_baud:
                self._prev_host_baud, self._host_baud = self._host_baud, baud
                self._host_changed = time.monotonic()
        return baud

    def baud_ok(self, board_baud):
        """Whether bytes crossing the wire now are read correctly at `board_baud`."""
        if self.host_baud() == board_baud:
            return True
        with self._baud_lock:
            return self._prev_host_baud == board_baud and \
                time.monotonic() - self._host_changed < BAUD_GRACE

    # -- board -> host --
    def send(self, data, board_baud):
        events = []
        with self._send_lock:
            if self._to_host is None:
                self._deliver(data, board_baud)
            else:
                self._to_host.push(data)
                events = self._deliver_items(self._to_host.pop())
        self._events(events, "to_host")

    def _deliver_items(self, items):
        events = []
        for item in items:
            if isinstance(item, bytes):
                self._deliver(item, self.port.baud if self.port is not None else None)
            else:
                events.append(item)
        return events

    def _deliver(self, data, board_baud):
        if self._reopen_at is not None:
            return                      # unplugged: the bytes go nowhere
        if not self.baud_ok(board_baud):
            garbled = bytes(self._noise.getrandbits(8) for _ in data)
            self._write_pty(garbled)
        else:
            self._write_pty(data)
        client = self.client        # the reader thread may drop it meanwhile
        if client is not None:
            try:
                client.sendall(data)
            except OSError:
                self._drop_client()

    def _write_pty(self, data):
        with self._pty_lock:
            if self.master is None:
                return
            try:
                os.write(self.master, data)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EIO):
                    raise

    # -- faults: reset and disconnect --
    def _events(self, events, direction):
        for event in events:
            if event == faults_mod.RESET and self.on_reset is not None:
                self.on_reset()
            elif event == faults_mod.DISCONNECT:
                seconds = self.faults.spec.disconnect_ms / 1000.0
                if direction == "to_board":
                    self.disconnect(seconds)
                else:                   # board thread: let the line's thread do it
                    self._pending_disconnect = seconds

    def disconnect(self, seconds):
        """Unplug the port for `seconds`: the pty goes away (the host's reads and writes
        fail), TCP clients are dropped and refused; then a new pty appears."""
        with self._send_lock, self._pty_lock:
            for fd in (self.master, self.slave):
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self.master = self.slave = None
            self._ahead = b""           # bytes in an unplugged bridge are lost
            self._reopen_at = time.monotonic() + seconds
            self._drop_client()
        if self.on_path is not None:
            self.on_path(None)

    def _replug(self):
        self._open_pty()
        with self._send_lock:
            self._reopen_at = None
            with self._baud_lock:
                self._host_baud = self._prev_host_baud = None
        if self.on_path is not None:
            self.on_path(self.path)

    def _tick(self):
        """The line's thread, every <= 10 ms: due delayed/held frames, replug, fault log."""
        if self._pending_disconnect is not None:
            seconds, self._pending_disconnect = self._pending_disconnect, None
            self.disconnect(seconds)
        if self._reopen_at is not None and time.monotonic() >= self._reopen_at:
            self._replug()
        if self._to_board is not None:
            self._feed_items(self._to_board.pop())
            with self._send_lock:
                events = self._deliver_items(self._to_host.pop())
            self._events(events, "to_host")
            self.faults.save()

    def _feed_items(self, items):
        events = []
        for item in items:
            if isinstance(item, bytes):
                self.port.feed(item)
            else:
                events.append(item)
        self._events(events, "to_board")

    def save_faults(self):
        if self.faults is not None:
            self.faults.save(force=True)

    # -- host -> board --
    def _reader(self):
        try:
            self._read_loop()
        except (OSError, ValueError):
            if not self._closed:        # closing the fds on shutdown ends the loop quietly
                raise

    def _read_loop(self):
        pacer = LinePacer()
        while True:
            with self._pty_lock:
                master = self.master
            fds = [master] if master is not None else []
            if self.server is not None:
                fds.append(self.server)
            if self.client is not None:
                fds.append(self.client)
            try:
                ready, _, _ = select.select(fds, [], [], 0 if self._ahead else BAUD_SAMPLE)
            except (OSError, ValueError):
                if self._closed:
                    raise
                ready = []              # the pty was unplugged under us
            self.host_baud()            # keeps the observed baud (and its change time) fresh
            for fd in ready:
                if fd is self.server:
                    self._accept()
                elif fd is self.client:
                    self._from_tcp(pacer)
                elif fd == master:
                    self._from_pty(pacer, master)
            if self._ahead and master is not None and master not in ready:
                self._from_pty(pacer, master)
            self._tick()

    def _accept(self):
        conn, _ = self.server.accept()
        if self._reopen_at is not None:
            conn.close()                # unplugged: nobody answers
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._drop_client()
        self.client = conn

    def _drop_client(self):
        client, self.client = self.client, None
        if client is not None:
            client.close()

    def _read_master(self, master, n):
        try:
            return os.read(master, n)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EIO, errno.EBADF):
                return b""
            raise

    def _from_pty(self, pacer, master):
        """One chunk host -> board. While it crosses the line the next chunk is read ahead
        with the time it was there, so the wire stays busy when the host keeps writing."""
        baud = self.port.baud
        step = chunk_size(baud)
        if self._ahead:
            data, ready = self._ahead, self._ahead_at
            self._ahead = b""
        else:
            data, ready = self._read_master(master, step), time.monotonic()
            if not data:
                return

        def read_ahead(seconds):
            if self._ahead:
                time.sleep(seconds)
                return
            try:
                readable = select.select([master], [], [], seconds)[0]
            except (OSError, ValueError):
                time.sleep(seconds)
                return
            if readable:
                self._ahead, self._ahead_at = self._read_master(master, step), time.monotonic()

        pacer.wait_sent(len(data), baud, ready, read_ahead)
        if self.baud_ok(baud):           # else: framing errors, the bytes are lost
            self._to_port(data)

    def _to_port(self, data):
        if self._to_board is None:
            self.port.feed(data)
        else:
            self._to_board.push(data)
            self._feed_items(self._to_board.pop())

    def _from_tcp(self, pacer):
        baud = self.port.baud
        client = self.client
        if client is None:
            return
        try:
            data = client.recv(chunk_size(baud))
        except OSError:
            data = b""
        if not data:
            self._drop_client()
            return
        pacer.wait_sent(len(data), baud)
        self._to_port(data)

    def close(self):
        self._closed = True
        self.save_faults()
        for fd in (self.master, self.slave):
            try:
                if fd is not None:
                    os.close(fd)
            except OSError:
                pass
        self._drop_client()
        if self.server is not None:
            self.server.close()
