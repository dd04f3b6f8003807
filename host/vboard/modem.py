"""DTR/RTS between a host program and the virtual board: both ends of the channel.

A pseudo-terminal has no modem lines: pyserial's TIOCMBIS/TIOCMBIC on a pty fail with ENOTTY
(ignored at open, raised by later `setDTR`/`setRTS`), so kflash cannot reset a virtual board
into ISP mode. The virtual board therefore listens on an abstract unix socket named after its
pty, `\\0k210-vboard-lines:/dev/pts/N`, and a host process that wants to drive the lines
installs a patch of pyserial (`install()`): `Serial._update_dtr_state/_update_rts_state` call
pyserial's own ioctl first and only when that fails with ENOTTY/EINVAL *and* a virtual board
listens for that pty, send the line state there instead. A real serial port never reaches the
fallback (its ioctl succeeds), nor does a pty without a virtual board (the original error is
raised). `Serial.close` also closes the channel: the board then sees both lines drop, as a
real port's HUPCL drops DTR and RTS on close.

Who installs it: the virtual board's own tooling only - `host/flash.py --port virtual`, the
tests, and `PYTHONPATH=host/vboard/site` (a `sitecustomize` that calls `install()`) for an
unmodified program such as the kflash CLI. The shipped path for real ports never imports it.

Wire format: one line per change, b"<dtr><rts>\\n" with '0'/'1' (True = asserted, pyserial's
sense). The board keeps the state of the connection that wrote last; when no connection is
left, both lines are released.
"""
import errno
import os
import select
import socket
import threading

PREFIX = "k210-vboard-lines:"

# How a board's USB-serial bridge drives the K210: (line on RESET, line on BOOT/IO16), each
# active (pin pulled low) while asserted. Read from kflash 1.1.6's reset_to_isp_* sequences:
# dan/bit/trainer pull RESET with RTS and IO16 with DTR; kd233/bit_mic/goE the other way.
# goD's sequence (inverted levels on an old CMSIS-DAP) is not modelled.
WIRING = {"dan": ("rts", "dtr"), "bit": ("rts", "dtr"), "trainer": ("rts", "dtr"),
          "kd233": ("dtr", "rts"), "bit_mic": ("dtr", "rts"), "goE": ("dtr", "rts"),
          "maixduino": ("dtr", "rts")}


def socket_name(port):
    """The abstract socket name for a pty path (symlinks resolved)."""
    return "\0" + PREFIX + os.path.realpath(port)


# ------------------------------------------------------------------ board side
class LineServer(object):
    """Listens for host line states; calls `on_change(dtr, rts)` from its own thread."""

    def __init__(self, port_path, on_change):
        self.on_change = on_change
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(socket_name(port_path))
        self.sock.listen(8)
        self.conns = {}             # socket -> [buffer, (dtr, rts) or None]
        self.last = None            # the connection that set the lines last
        self.closed = False
        t = threading.Thread(target=self._loop, name="vboard-lines", daemon=True)
        t.start()

    def _loop(self):
        while not self.closed:
            try:
                ready, _, _ = select.select([self.sock] + list(self.conns), [], [], 1.0)
                if self.closed:
                    return
                self._serve(ready)
            except (OSError, ValueError):
                if self.closed:
                    return          # close() under a select/accept: done
                raise

    def _serve(self, ready):
        for s in ready:
            if s is self.sock:
                conn, _ = self.sock.accept()
                self.conns[conn] = [b"", None]
            else:
                self._read(s)

    def _read(self, conn):
        try:
            data = conn.recv(256)
        except OSError:
            data = b""
        if not data:
            del self.conns[conn]
            conn.close()
            if conn is self.last or not self.conns:
                self.last = None
                self.on_change(False, False)    # HUPCL: the port closed, lines released
            return
        entry = self.conns[conn]
        entry[0] += data
        while b"\n" in entry[0]:
            line, entry[0] = entry[0].split(b"\n", 1)
            if len(line) == 2 and set(line) <= set(b"01"):
                self.last = conn
                self.on_change(line[0:1] == b"1", line[1:2] == b"1")

    def close(self):
        """Stop serving; the socket name is free for another pty once this returns."""
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)    # wakes a select() that holds the socket
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


# ------------------------------------------------------------------ host side (patch)
_installed = {}


def board_listening(port):
    """Whether a virtual board serves DTR/RTS for this port path (never true for a real
    serial device)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(socket_name(port))
        return True
    except OSError:
        return False
    finally:
        conn.close()


def _send(serial_obj):
    """Send this port's (dtr, rts) to its virtual board; False when none listens."""
    conn = getattr(serial_obj, "_vboard_lines", None)
    if conn is None:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(socket_name(serial_obj.portstr))
        except OSError:
            conn.close()
            return False
        serial_obj._vboard_lines = conn
    msg = b"%d%d\n" % (bool(serial_obj._dtr_state), bool(serial_obj._rts_state))
    try:
        conn.sendall(msg)
    except OSError:
        _drop(serial_obj)
        return False
    return True


def _drop(serial_obj):
    conn = getattr(serial_obj, "_vboard_lines", None)
    serial_obj._vboard_lines = None
    if conn is not None:
        conn.close()


def _wrap_update(original):
    def update(self):
        try:
            return original(self)
        except (IOError, OSError) as exc:
            if exc.errno not in (errno.ENOTTY, errno.EINVAL) or not _send(self):
                raise
    update.__name__ = original.__name__
    update.vboard_patch = True
    return update


def _wrap_close(original):
    def close(self):
        _drop(self)
        return original(self)
    close.vboard_patch = True
    return close


def install():
    """Patch pyserial's POSIX Serial in this process (idempotent). Test/virtual use only."""
    from serial import serialposix
    cls = serialposix.Serial
    if getattr(cls._update_dtr_state, "vboard_patch", False):
        return
    _installed.update(dtr=cls._update_dtr_state, rts=cls._update_rts_state, close=cls.close)
    cls._update_dtr_state = _wrap_update(cls._update_dtr_state)
    cls._update_rts_state = _wrap_update(cls._update_rts_state)
    cls.close = _wrap_close(cls.close)


def uninstall():
    from serial import serialposix
    if not _installed:
        return
    cls = serialposix.Serial
    cls._update_dtr_state = _installed.pop("dtr")
    cls._update_rts_state = _installed.pop("rts")
    cls.close = _installed.pop("close")
