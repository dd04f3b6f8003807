"""The host end of the serial protocol (docs/protocol.md): bring a board into serve mode,
HELLO/INFO, check that it runs the manifest's model, stream images under the credit window
with pipelining, collect one RESULT or ERROR per image.

Bring-up (`connect`), all within one bounded wait (`timeout` seconds):
1. listen at 115200: a board that is booting prints `k210-deploy: serve mode in N ms`, then
   `k210-deploy serve: proto 1, B baud, ...` and switches to B;
2. otherwise probe with HELLO at the expected baud (a board already in serve mode);
3. otherwise interrupt the REPL at 115200 (Ctrl-C) and start serve mode from it
   (`import detect`; config.json's mode forced to serve);
then HELLO every 300 ms until INFO. A board that never answers is a UserError naming the
port and what was (not) received.
"""
import re
import threading
import time

try:
    import queue
except ImportError:  # pragma: no cover
    import Queue as queue

import serial

from device import protocol as P
from host import firmware
from host.errors import UserError

REPL_BAUD = 115200
HELLO_RETRY = 0.3
LISTEN_FIRST = 0.6
PROBE_TIME = 1.0
BYE_WAIT = 2.0
TEXT_KEEP = 8192
SERVE_SWITCH_WAIT = 0.25

SERVE_LINE = re.compile(rb"k210-deploy serve: proto (\d+), (\d+) baud, api (\S+), "
                        rb"model ([^\r\n]*)\r?\n")
GRACE_LINE = re.compile(rb"k210-deploy: (serve|live) mode in (\d+) ms")
START_SERVE = (b"import detect; _c = detect.load_config(); _c['mode'] = 'serve'; "
               b"detect.main(_c)\r")

# KPU API generation (INFO "api") -> the firmware profile that offers it
API_PROFILE = {firmware.API_CANMV_NEW: "canmv-v5", firmware.API_CANMV_OLD: "canmv",
               firmware.API_LEGACY: "maixpy-v4"}


class BoardError(UserError):
    """The board stopped answering or broke the protocol during a run (exit 2)."""


class ImageJob(object):
    """One image to send: `image_id` (>= 1), `fmt` (P.FMT_*), `flags`, `width`, `height`,
    `data` (payload bytes), `key` (the caller's handle)."""

    def __init__(self, image_id, fmt, flags, width, height, data, key=None):
        self.image_id = image_id
        self.fmt = fmt
        self.flags = flags
        self.width = width
        self.height = height
        self.data = data
        self.key = key
        self.t_begin = None
        self.t_sent = None
        self.t_done = None


class Session(object):
    """One board on one open pyserial port."""

    def __init__(self, ser, name, baud, timeout=10.0, booting=False, boot_time=0.0):
        """timeout: the bounded wait for a silent board (bring-up, and between frames during a
        run); booting: the board was just started (listen for its serve banner), allowing
        boot_time more seconds for that."""
        self.ser = ser
        self.name = name
        self.baud = baud
        self.timeout = timeout
        self.booting = booting
        self.boot_time = boot_time
        self.parser = P.Parser()
        self.seq = 0
        self.info = None
        self.text = bytearray()
        self.received = 0
        self.serve_line = None
        self.path = None
        self.logs = []
        self.board_errors = []
        self.stats = {"images": 0, "payload_bytes": 0, "wire_bytes": 0, "link_seconds": 0.0,
                      "results": 0, "errors": 0}
        self._events = queue.Queue()
        self._stop = threading.Event()
        self._reader = None
        self._reader_error = None

    # ------------------------------------------------------------------ bytes
    def _set_baud(self, baud):
        if self.ser.baudrate != baud:
            self.ser.baudrate = baud

    def _write(self, data):
        try:
            self.ser.write(data)
        except (serial.SerialException, OSError) as exc:
            raise BoardError("writing to %s failed: %s" % (self.name, _one_line(exc)))

    def _read(self, wait):
        """Bytes that arrive within `wait` s (maybe none)."""
        end = time.monotonic() + wait
        out = bytearray()
        while True:
            try:
                n = self.ser.in_waiting
                chunk = self.ser.read(n if n else 1)
            except (serial.SerialException, OSError) as exc:
                raise BoardError("reading from %s failed: %s" % (self.name, _one_line(exc)))
            if chunk:
                out += chunk
                if not self.ser.in_waiting:
                    break
            elif time.monotonic() >= end:
                break
        if out:
            self.received += len(out)
            self.text += out
            del self.text[:-TEXT_KEEP]
        return bytes(out)

    def _frame(self, ftype, payload=b""):
        frame = P.encode(ftype, self.seq, payload)
        self.seq = (self.seq + 1) & 0xFFFF
        return frame

    # ------------------------------------------------------------------ bring-up
    def connect(self):
        """Serve mode + INFO; returns the INFO dict."""
        t0 = time.monotonic()
        deadline = t0 + self.timeout + (self.boot_time if self.booting else 0.0)
        self._set_baud(REPL_BAUD)
        self.ser.reset_input_buffer()
        baud = self._listen(deadline if self.booting else min(deadline, t0 + LISTEN_FIRST),
                            deadline)
        if baud is None and not self.booting:
            self.path = "probe"
            info = self._hello(self.baud, min(deadline, time.monotonic() + PROBE_TIME))
            if info is not None:
                return self._ready(info)
            baud = self._start_from_repl(deadline)
        if baud is None:
            raise UserError(self._silent_message(time.monotonic() - t0))
        info = self._hello(baud, deadline)
        if info is None:
            raise UserError("the board on %s started serve mode at %d baud but sent no INFO "
                            "within %.0f s: check that the USB-serial bridge supports %d baud "
                            "(try --baud 115200)" % (self.name, baud, deadline - t0, baud))
        return self._ready(info)

    def _listen(self, until, deadline):
        """Passive: wait for the serve line (a booting board); returns its baud or None."""
        self.path = self.path or "boot"
        while True:
            self._read(0.05)
            m = SERVE_LINE.search(self.text)
            if m:
                return self._serve_started(m)
            now = time.monotonic()
            g = GRACE_LINE.search(self.text)
            if g and g.group(1) == b"serve":
                until = max(until, min(deadline, now + int(g.group(2)) / 1000.0 + 3.0))
            if now >= until:
                return None

    def _serve_started(self, m):
        self.serve_line = m.group(0).decode("latin-1").strip()
        baud = int(m.group(2))
        del self.text[:]
        # The board waits 100 ms after this line, then switches its UART and disables
        # Ctrl-C: a HELLO before that could arrive as a 0x03 and stop serve mode.
        time.sleep(SERVE_SWITCH_WAIT)
        self._set_baud(baud)
        self._read(0.01)
        return baud

    def _start_from_repl(self, deadline):
        """A board at its REPL (or in live mode, or in the boot grace period): Ctrl-C, then
        start serve mode from the REPL. Returns the serve baud or None."""
        self.path = "repl"
        self._set_baud(REPL_BAUD)
        self._read(0.05)
        # Ctrl-C twice: stop a script (live mode) and clear the line; Ctrl-B: leave the raw
        # REPL (earlier probe bytes may have typed Ctrl-A) - in the friendly REPL it only
        # prints the banner. Then wait for the friendly prompt (a probe byte may also have
        # been a Ctrl-D soft reset: main.py's grace period then sees our bytes as a key).
        del self.text[:]
        self._write(b"\r\x03\x03\x02")
        prompt_by = min(deadline, time.monotonic() + 3.0)
        quiet = 0.0
        while time.monotonic() < prompt_by:
            got = self._read(0.05)
            quiet = 0.0 if got else quiet + 0.05
            if self.text.endswith(b"Ctrl-C or any key: stay in the REPL)\r\n"):
                self._write(b"\r")
            if quiet >= 0.3 and self.text.endswith(b">>> "):
                break
        del self.text[:]
        self._write(START_SERVE)
        while time.monotonic() < deadline:
            self._read(0.05)
            m = SERVE_LINE.search(self.text)
            if m:
                return self._serve_started(m)
            parts = self.text.split(b"detect.main(_c)", 1)
            if len(parts) == 2 and b">>> " in parts[1]:
                tail = parts[1]
                raise UserError(self._repl_message(tail))
        return None

    def _repl_message(self, tail):
        lines = [l.strip() for l in tail.decode("utf-8", "replace").splitlines()]
        lines = [l for l in lines if l and not l.startswith(">>>")]
        why = lines[-1] if lines else "no output"
        return ("the board on %s answers at its REPL but cannot start k210-deploy serve mode "
                "(%s): put device/*.py and config.json on its /flash (the flash step), then "
                "retry" % (self.name, why[:200]))

    def _silent_message(self, waited):
        if not self.received:
            return ("no board answered on %s within %.0f s: nothing was received (check the "
                    "port and cable, that the board is powered and runs MaixPy/CanMV; press "
                    "its reset button and retry, or raise --timeout)" % (self.name, waited))
        text = bytes(self.text[-200:]).decode("latin-1")
        text = " ".join("".join(c if 32 <= ord(c) < 127 else " " for c in text).split())
        return ("no board answered on %s within %.0f s: %d bytes arrived but no k210-deploy "
                "serve mode (last text: %r); check --baud, reset the board and retry"
                % (self.name, waited, self.received, text[-120:]))

    def _hello(self, baud, until):
        """HELLO every HELLO_RETRY s at `baud` until INFO or `until`; then wait until no
        further INFO can answer an earlier HELLO. Returns INFO or None."""
        self._set_baud(baud)
        info = None
        last_hello = 0.0
        while True:
            now = time.monotonic()
            if info is None and now >= until:
                return None
            if info is None and now - last_hello >= HELLO_RETRY:
                self._write(self._frame(P.T_HELLO, P.pack_json({"proto": P.VERSION,
                                                                "host": "serial_eval"})))
                last_hello = now
            if info is not None and now - last_hello >= HELLO_RETRY + 0.1:
                return info
            data = self._read(0.03)
            for ftype, _seq, payload in self.parser.feed_all(data):
                if ftype == P.T_INFO:
                    try:
                        info = P.unpack_json(payload)
                    except ValueError:
                        continue
                    last_hello = max(last_hello, time.monotonic() - HELLO_RETRY)

    def _ready(self, info):
        if not isinstance(info, dict) or info.get("proto") != P.VERSION:
            raise UserError("the board on %s speaks protocol %r, this host %d: put this repo's "
                            "device/*.py on the board" % (self.name, info.get("proto")
                                                          if isinstance(info, dict) else None,
                                                          P.VERSION))
        self.info = info
        self.baud = info.get("baud") or self.baud
        return info

    # ------------------------------------------------------------------ checks
    def check_model(self, manifest, manifest_path):
        """UserError unless the board runs (and could load) the manifest's kmodel."""
        info = self.info
        km = manifest["kmodel"]
        want = km["sha256"]
        have = info.get("model_sha256")
        if have != want:
            raise UserError(
                "the board on %s runs another model than %s: board kmodel sha256 %s, manifest "
                "%s...: flash this build's kmodel and config.json to the board, or pass the "
                "--manifest it was built with" % (self.name, manifest_path,
                                                  (have or "unknown")[:16] + "...", want[:16]))
        if not info.get("model_loaded"):
            raise UserError(self._load_message(info, km))
        w, h = manifest["input"]["width"], manifest["input"]["height"]
        if list(info.get("input") or []) != [w, h]:
            raise UserError("the board on %s expects %r input, the manifest %dx%d: its "
                            "config.json is not this build's; flash it again"
                            % (self.name, info.get("input"), w, h))
        shapes = [list(o["shape_chw"]) for o in manifest["outputs"]]
        if [list(s) for s in info.get("outputs") or []] != shapes:
            raise UserError("the board on %s lists outputs %r, the manifest %r: its config.json "
                            "is not this build's; flash it again"
                            % (self.name, info.get("outputs"), shapes))
        for key in ("window", "chunk"):
            if not isinstance(info.get(key), int) or info[key] <= P.OVERHEAD:
                raise UserError("the board on %s sent an INFO without a usable %s: put this "
                                "repo's device/*.py on the board" % (self.name, key))

    def _load_message(self, info, km):
        api = info.get("api")
        error = info.get("load_error") or "unknown error"
        profile = API_PROFILE.get(api)
        if profile is not None:
            try:
                firmware.check_loadable(profile, km["version"], 0)
            except UserError as exc:
                return ("the board on %s (KPU API %s) could not load the kmodel: %s; %s"
                        % (self.name, api, error, exc))
        text = ("the board on %s could not load the kmodel V%d (%d bytes): %s" %
                (self.name, km["version"], km["size"], error))
        if "memory" in error.lower() or "ERR_NO_MEM" in error:
            text += ("; the model and its working memory do not fit the firmware's heap "
                     "(see the K210 fit line of `make kmodel`): make the model smaller (fewer "
                     "channels, smaller input), use a smaller firmware build, or shrink the "
                     "MicroPython GC heap")
        return text

    # ------------------------------------------------------------------ streaming
    def _reader_loop(self):
        try:
            while not self._stop.is_set():
                n = self.ser.in_waiting
                data = self.ser.read(n if n else 1)
                if data:
                    self.received += len(data)
                    for f in self.parser.feed_all(data):
                        self._events.put(f)
        except Exception as exc:  # the port went away: the writer side reports it
            self._reader_error = exc
            self._events.put(None)

    def stream(self, next_job, on_done, stop=None):
        """Send jobs from next_job() (None: no more) under the credit window, several in
        flight; on_done(job, result_or_None, error_or_None) for each. Returns the stats."""
        info = self.info
        credit = P.Credit(info["window"])
        chunk = info["chunk"]
        self._stop.clear()
        self._reader = threading.Thread(target=self._reader_loop, name="rx-" + self.name,
                                        daemon=True)
        self._reader.start()
        pending = {}
        frames = None
        job = None
        exhausted = False
        last_rx = time.monotonic()
        t_first = None
        t_last = None
        try:
            while True:
                if stop is not None and stop.is_set():
                    return self.stats
                # send what the window allows
                while True:
                    if frames is None and not exhausted:
                        job = next_job()
                        if job is None:
                            exhausted = True
                        else:
                            frames = self._image_frames(job, chunk)
                            pending[job.image_id] = job
                            job.t_begin = time.monotonic()
                            if t_first is None:
                                t_first = job.t_begin
                                last_rx = t_first
                    if frames is None:
                        break
                    if not frames:
                        job.t_sent = time.monotonic()
                        frames = None
                        continue
                    if not credit.can_send(len(frames[0])):
                        break
                    frame = frames.pop(0)
                    self._write(frame)
                    credit.on_send(len(frame))
                    self.stats["wire_bytes"] += len(frame)
                if exhausted and not pending:
                    break
                # receive
                try:
                    ev = self._events.get(timeout=0.05)
                except queue.Empty:
                    ev = False
                now = time.monotonic()
                if ev is None:
                    raise BoardError("the port %s went away: %s"
                                     % (self.name, _one_line(self._reader_error)))
                if ev is False:
                    if now - last_rx > self.timeout:
                        raise BoardError(self._stalled_message(pending, credit))
                    continue
                last_rx = now
                ftype, _seq, payload = ev
                if ftype == P.T_ACK:
                    credit.on_ack(P.unpack_ack(payload))
                elif ftype == P.T_RESULT:
                    result = P.unpack_result(payload)
                    done = pending.pop(result["image_id"], None)
                    if done is not None:
                        done.t_done = now
                        t_last = now
                        self.stats["results"] += 1
                        on_done(done, result, None)
                elif ftype == P.T_ERROR:
                    err = P.unpack_error(payload)
                    done = pending.pop(err["ref"], None) if err["ref"] else None
                    if done is not None:
                        done.t_done = now
                        t_last = now
                        self.stats["errors"] += 1
                        on_done(done, None, err)
                    else:
                        self.board_errors.append(err)
                elif ftype == P.T_LOG:
                    self.logs.append(bytes(payload).decode("utf-8", "replace"))
                elif ftype == P.T_INFO:
                    raise BoardError("the board on %s restarted its session during the run "
                                     "(an unexpected INFO): retry" % self.name)
        except P.ProtocolError as exc:
            raise BoardError("the board on %s sent a malformed frame: %s" % (self.name, exc))
        finally:
            self._stop.set()
            self._reader.join(1.0)
            if t_first is not None and t_last is not None:
                self.stats["link_seconds"] += t_last - t_first
        return self.stats

    def _image_frames(self, job, chunk):
        self.stats["images"] += 1
        self.stats["payload_bytes"] += len(job.data)
        return [self._frame(t, p) for t, p in
                P.image_frames(job.image_id, job.fmt, job.flags, job.width, job.height,
                               job.data, chunk=chunk)]

    def _stalled_message(self, pending, credit):
        ids = sorted(pending)
        return ("the board on %s stopped answering: no frame for %.0f s with %d image(s) "
                "outstanding (ids %s, %d bytes unacknowledged); reset the board and retry "
                "(or raise --timeout)" % (self.name, self.timeout, len(ids),
                                          ",".join(str(i) for i in ids[:5]),
                                          credit.in_flight()))

    # ------------------------------------------------------------------ end
    def close(self):
        """EXIT (the board answers BYE and returns to its REPL at 115200); never raises."""
        try:
            if self.info is not None:
                self._write(self._frame(P.T_EXIT))
                end = time.monotonic() + BYE_WAIT
                parser = P.Parser()
                while time.monotonic() < end:
                    if any(f[0] == P.T_BYE for f in parser.feed_all(self._read(0.05))):
                        break
                time.sleep(0.1)
            self._set_baud(REPL_BAUD)
        except Exception:
            pass


def _one_line(exc):
    return " ".join(str(exc).split()) or exc.__class__.__name__
