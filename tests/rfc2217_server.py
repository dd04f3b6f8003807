"""An RFC 2217 server for one serial port on 127.0.0.1, for tests: a board on "another host".

pyserial ships the protocol (`serial.rfc2217.PortManager`) but its server loop only as an
example script, which is not installed; this is that loop (pyserial's
examples/rfc2217_server.py: Redirector), cut to what a test needs: one client at a time,
started and stopped from Python, the port closed with the server.

DTR/RTS from the client are not applied to the port, and CTS/DSR/RI/CD read inactive: a
virtual board's pty has no modem lines (as a real board behind ser2net in raw mode whose adapter's lines are not wired to
reset). Baud changes are applied: the virtual board reads them from the pty's termios.
"""
import socket
import threading

import serial
import serial.rfc2217


class _PortWithoutLines(serial.Serial):
    """The pty as the server's serial port: no modem lines (a pty has none): requests to set
    DTR/RTS are accepted and ignored, CTS/DSR/RI/CD read as inactive."""

    def _update_dtr_state(self):
        pass

    def _update_rts_state(self):
        pass

    cts = dsr = ri = cd = property(lambda self: False)


class _Connection(object):
    """What PortManager writes its replies to: the client's socket, one writer at a time."""

    def __init__(self, sock):
        self.sock = sock
        self.lock = threading.Lock()

    def write(self, data):
        with self.lock:
            self.sock.sendall(data)


class Rfc2217Server(object):
    """`with Rfc2217Server(pty_path) as server:` -> `server.url` (rfc2217://127.0.0.1:N)."""

    def __init__(self, port_path):
        self.port = _PortWithoutLines(port_path, 115200, timeout=0.05)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(0.2)
        self.url = "rfc2217://127.0.0.1:%d" % self.listener.getsockname()[1]
        self.clients = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        self.listener.close()
        self.port.close()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            self.clients += 1
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._redirect(conn)

    def _redirect(self, conn):
        link = _Connection(conn)
        write = link.write
        manager = serial.rfc2217.PortManager(self.port, link)
        done = threading.Event()

        def port_to_net():
            while not done.is_set() and not self._stop.is_set():
                try:
                    data = self.port.read(self.port.in_waiting or 1)
                    if data:
                        write(b"".join(manager.escape(data)))
                    manager.check_modem_lines()
                except (OSError, serial.SerialException):
                    break

        reader = threading.Thread(target=port_to_net, daemon=True)
        reader.start()
        conn.settimeout(0.2)
        try:
            while not self._stop.is_set():
                try:
                    data = conn.recv(4096)
                except socket.timeout:
                    continue
                if not data:
                    break
                self.port.write(b"".join(manager.filter(data)))
        except OSError:
            pass
        finally:
            done.set()
            reader.join(5)
            conn.close()
