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

from host.vboard.uart import LinePacer, chunk_size

TCGETS2 = 0x802C542A      # struct termios2, whose c_ispeed/c_ospeed hold the numeric baud
TERMIOS2 = struct.Struct("4I B 19s 2I")
BAUD_GRACE = 0.02         # s after an observed host baud change (see above)
BAUD_SAMPLE = 0.01        # s between samples of the host's baud


class Line:
    def __init__(self, tcp_port=None, noise_seed=0):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        flags = fcntl.fcntl(self.master, fcntl.F_GETFL)
        fcntl.fcntl(self.master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
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
        self.port = None            # the UartPort fed by this line (set by attach)

    def attach(self, port):
        self.port = port
        t = threading.Thread(target=self._reader, name="vboard-line", daemon=True)
        t.start()

    def host_baud(self):
        buf = bytearray(TERMIOS2.size)
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
        with self._send_lock:
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
        try:
            os.write(self.master, data)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EIO):
                raise

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
            fds = [self.master]
            if self.server is not None:
                fds.append(self.server)
            if self.client is not None:
                fds.append(self.client)
            ready, _, _ = select.select(fds, [], [], BAUD_SAMPLE)
            self.host_baud()            # keeps the observed baud (and its change time) fresh
            for fd in ready:
                if fd is self.server:
                    self._accept()
                elif fd is self.client:
                    self._from_tcp(pacer)
                else:
                    self._from_pty(pacer)

    def _accept(self):
        conn, _ = self.server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._drop_client()
        self.client = conn

    def _drop_client(self):
        client, self.client = self.client, None
        if client is not None:
            client.close()

    def _from_pty(self, pacer):
        baud = self.port.baud
        try:
            data = os.read(self.master, chunk_size(baud))
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EIO):
                return
            raise
        pacer.wait_sent(len(data), baud)
        if self.baud_ok(baud):           # else: framing errors, the bytes are lost
            self.port.feed(data)

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
        self.port.feed(data)

    def close(self):
        self._closed = True
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self._drop_client()
        if self.server is not None:
            self.server.close()
