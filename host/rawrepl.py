"""A small raw-REPL client for MicroPython 1.11 (MaixPy / CanMV) over any pyserial port.

Why not a library: mpremote (the maintained MicroPython tool) 1.29 depends on
platformdirs>=4.3.7, which needs Python >= 3.9, so it does not install on this toolkit's
Python 3.7. Its SerialTransport alone does talk to the virtual board's MicroPython 1.11 over
the pty (tried: the raw-paste probe falls back to the plain raw REPL), but it opens the port
with pyserial's default DTR/RTS asserted (on a Maix Dock that holds RESET), soft-resets by
default on entering the raw REPL (re-running boot.py), and copies files without a checksum or
a temp-and-rename, so the verified upload (host/upload.py) would still be ours. ampy and
rshell have failed on MaixPy's banner timing (k210-device.md). What is left is this file.

Rules followed (flashing.md): the caller opens the port with DTR and RTS low
(host.transport.open_serial); Ctrl-C twice, then Ctrl-A, and wait for
`raw REPL; CTRL-B to exit\\r\\n>` while tolerating banners and firmware log lines; never an
empty Ctrl-D (a soft reset re-runs boot.py); code goes in slices of <= 256 bytes with short
pauses, then Ctrl-D; the reply is `OK`, stdout, 0x04, stderr, 0x04, `>`. MicroPython 1.11
has no raw-paste mode, so none is attempted.
"""
import time

from host.errors import one_line

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
SLICE = 256
SLICE_PAUSE = 0.002     # s between slices (on top of the line time the kernel paces)


class ReplError(Exception):
    """The board did not answer as a raw REPL does (timeout, unexpected bytes, disconnect)."""


class ExecError(ReplError):
    """Code ran on the board and raised: `.stderr` holds the board's traceback."""

    def __init__(self, stderr, stdout=""):
        ReplError.__init__(self, stderr.strip().splitlines()[-1] if stderr.strip() else stderr)
        self.stderr = stderr
        self.stdout = stdout


class RawRepl(object):
    def __init__(self, serial, name=None):
        self.serial = serial
        self.name = name or getattr(serial, "port", None) or "the board"
        self.received = bytearray()      # the last bytes seen (for error messages)
        self.sent = 0

    # ------------------------------------------------------------------ bytes
    def _write(self, data):
        try:
            self.serial.write(data)
        except Exception as exc:         # pyserial raises SerialException/OSError
            raise ReplError("writing to %s failed: %s" % (self.name, one_line(exc)))
        self.sent += len(data)

    def _read(self, n=1):
        try:
            data = self.serial.read(n)
        except Exception as exc:
            raise ReplError("reading from %s failed: %s" % (self.name, one_line(exc)))
        if data:
            self.received += data
            del self.received[:-2048]
        return data

    def read_until(self, ending, timeout=10.0):
        """Bytes up to and including `ending` (read byte by byte: nothing after it is
        consumed); ReplError after `timeout` s."""
        data = bytearray()
        deadline = time.monotonic() + timeout
        while not data.endswith(ending):
            if time.monotonic() > deadline:
                raise ReplError("timeout waiting for %r from %s; got %r"
                                % (ending, self.name, bytes(data[-200:])))
            data += self._read(1)
        return bytes(data)

    def drain(self, quiet=0.05, limit=1.0):
        """Read and drop until the line is quiet for `quiet` s (at most `limit` s)."""
        end = time.monotonic() + limit
        last = time.monotonic()
        while time.monotonic() < end:
            try:
                n = self.serial.in_waiting
            except Exception as exc:
                raise ReplError("reading from %s failed: %s" % (self.name, one_line(exc)))
            if n and self._read(n):
                last = time.monotonic()
            elif time.monotonic() - last >= quiet:
                break
            else:
                time.sleep(0.01)

    # ------------------------------------------------------------------ modes
    def enter(self, timeout=10.0):
        """Interrupt whatever runs and switch to the raw REPL (raises ReplError when the
        board never shows the raw banner). Retries Ctrl-C / Ctrl-A until `timeout`."""
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            attempt += 1
            # one Ctrl-C per attempt (attempts >= 1 s apart): a second one before the
            # script has seen the first cancels it (machine_uart.c, docs/firmware-source.md)
            self._write(b"\r\x03")
            time.sleep(0.1)
            self.drain(quiet=0.05, limit=0.5)
            self._write(b"\x01")
            wait = min(max(0.2, deadline - time.monotonic()), 1.0 + 0.5 * attempt)
            try:
                self.read_until(RAW_BANNER, wait)
                return
            except ReplError:
                if time.monotonic() >= deadline:
                    raise ReplError("no raw REPL on %s within %.0f s (got %r)"
                                    % (self.name, timeout, bytes(self.received[-120:])))

    def exit(self):
        """Back to the friendly REPL (Ctrl-B)."""
        self._write(b"\x02")

    def reset_board(self, timeout=3.0):
        """machine.reset(): the board reboots as after power-on (firmware, boot.py, main.py).
        Nothing after "OK" belongs to the REPL any more."""
        self._send_code(b"import machine\nmachine.reset()")
        self.read_until(b"OK", timeout)

    # ------------------------------------------------------------------ running code
    def _send_code(self, code):
        for i in range(0, len(code), SLICE):
            self._write(code[i:i + SLICE])
            time.sleep(SLICE_PAUSE)
        self._write(b"\x04")

    def exec_raw(self, code, timeout=10.0):
        """Run code; returns (stdout, stderr) as bytes, stderr holding any traceback.
        `timeout` is for the board's answer after the code is sent."""
        self.exec_started(code, timeout)
        return self.exec_finish(timeout)

    def exec_started(self, code, timeout=10.0):
        """Send code and wait for the raw REPL's OK: the code runs now; its output is read
        by exec_finish (or read_until in between, e.g. a line the code prints when ready)."""
        if isinstance(code, str):
            code = code.encode("utf-8")
        if not code.strip():
            raise ValueError("empty code would soft-reset the board")
        self._send_code(code)
        line_time = len(code) * 10.0 / max(getattr(self.serial, "baudrate", 115200) or 115200,
                                           1200)
        self._expect_ok(timeout + line_time)

    def exec_finish(self, timeout=10.0):
        """The rest of a started exec's output: (stdout, stderr) as bytes."""
        out = self._until_eot(timeout)
        err = self._until_eot(timeout)
        self.read_until(b">", timeout)
        return out, err

    def _expect_ok(self, timeout):
        head = self.read_until(b"OK", timeout)
        junk = head[:-2]
        if junk.strip(b">\r\n"):
            # the prompt or a firmware log line may precede OK; a traceback-less "raw REPL"
            # banner means the board restarted under us
            if b"raw REPL; CTRL-B" in junk or b"soft reboot" in junk:
                raise ReplError("the board on %s restarted while receiving code" % self.name)

    def _until_eot(self, timeout):
        return self.read_until(b"\x04", timeout)[:-1]

    def exec(self, code, timeout=10.0):
        """Run code; returns its stdout (str); ExecError with the board's traceback."""
        out, err = self.exec_raw(code, timeout)
        if err:
            raise ExecError(err.decode("utf-8", "replace"), out.decode("utf-8", "replace"))
        return out.decode("utf-8", "replace")

