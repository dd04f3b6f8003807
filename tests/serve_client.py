"""A bare serve-mode client for tests that drive the virtual board's serve loop frame by frame
over its pty (host/session.py is the real client; these tests check what it relies on)."""
import time

from device import protocol as P
from device import protocol_host as PH
from host.rawrepl import RawRepl


class ServeClient:
    """Waits for the board's serve banner at 115200, then speaks frames at the config's baud.
    `passing`: the frame types allowed between the answers waited for (None: any)."""

    def __init__(self, ser, baud, banner_timeout=60, passing=None):
        RawRepl(ser).read_until(b"k210-deploy serve: proto", timeout=banner_timeout)
        line = RawRepl(ser).read_until(b"\r\n")
        assert b"model ok" in line, line
        ser.baudrate = baud
        self.ser = ser
        self.parser = P.Parser()
        self.seq = 0
        self.passing = passing

    def send(self, ftype, payload=b""):
        self.ser.write(P.encode(ftype, self.seq, payload))
        self.seq += 1

    def wait_for(self, types, ask_again=None, timeout=20.0, quiet=1.0):
        """(type, payload) of the next frame whose type is in `types`; ask_again() after each
        `quiet` seconds of silence (a firmware print between a frame's writes corrupts that
        frame on a real board too, and the protocol's answer is to ask again). Frames of other
        types are skipped, or asserted to be in self.passing when it is given."""
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            self.parser.feed(self.ser.read(4096))
            frame = self.parser.next()
            while frame is not None:
                if frame[0] in types:
                    return frame[0], bytes(frame[2])
                assert self.passing is None or frame[0] in self.passing, frame
                frame = self.parser.next()
            if ask_again is not None and time.monotonic() - quiet_since > quiet:
                ask_again()
                quiet_since = time.monotonic()
        raise AssertionError("no frame of types %s" % (types,))

    def hello(self, timeout=20.0, quiet=1.0):
        """HELLO until INFO; -> the INFO dict."""
        def ask():
            self.send(P.T_HELLO, P.pack_json({"proto": 1}))
        ask()
        return PH.unpack_json(self.wait_for((P.T_INFO,), ask, timeout, quiet)[1])

    def image(self, image_id, fmt, flags, w, h, payload, chunk, timeout=20.0, quiet=1.0):
        """Send one image; -> (T_RESULT or T_ERROR, its unpacked dict), RESEND on silence."""
        for ftype, part in PH.image_frames(image_id, fmt, flags, w, h, payload, chunk=chunk):
            self.send(ftype, part)
        ftype, answer = self.wait_for(
            (P.T_RESULT, P.T_ERROR), lambda: self.send(P.T_RESEND, PH.pack_resend(image_id)),
            timeout, quiet)
        return ftype, (PH.unpack_result(answer) if ftype == P.T_RESULT
                       else PH.unpack_error(answer))

    def exit(self, timeout=20.0):
        self.send(P.T_EXIT)
        self.wait_for((P.T_BYE,), timeout=timeout)
