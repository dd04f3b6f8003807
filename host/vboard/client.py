"""A minimal raw-REPL client (MicroPython 1.11 semantics) for tests and quick scripts.

Works with any pyserial port (the virtual board's pty or socket:// URL, or a real board).
"""
import time


class ReplError(Exception):
    pass


class RawRepl:
    def __init__(self, serial):
        self.serial = serial

    def read_until(self, ending, timeout=10.0):
        data = bytearray()
        deadline = time.monotonic() + timeout
        while not data.endswith(ending):
            if time.monotonic() > deadline:
                raise ReplError("timeout waiting for %r; got %r" % (ending, bytes(data[-400:])))
            chunk = self.serial.read(1)
            data += chunk
        return bytes(data)

    def enter(self, timeout=10.0):
        """Interrupt whatever runs, then switch to the raw REPL."""
        self.serial.write(b"\r\x03\x03")
        time.sleep(0.1)
        self.serial.reset_input_buffer()
        self.serial.write(b"\x01")
        self.read_until(b"raw REPL; CTRL-B to exit\r\n>", timeout)

    def exec_raw(self, code, timeout=10.0):
        """Run code; returns (stdout, stderr) as bytes, stderr holding any traceback."""
        if isinstance(code, str):
            code = code.encode("utf-8")
        for i in range(0, len(code), 256):
            self.serial.write(code[i:i + 256])
        self.serial.write(b"\x04")
        self.read_until(b"OK", timeout)
        out = self.read_until(b"\x04", timeout)[:-1]
        err = self.read_until(b"\x04", timeout)[:-1]
        self.read_until(b">", timeout)
        return out, err

    def exec(self, code, timeout=10.0):
        out, err = self.exec_raw(code, timeout)
        if err:
            raise ReplError(err.decode("utf-8", "replace"))
        return out.decode("utf-8", "replace")

    def exit(self):
        self.serial.write(b"\x02")
