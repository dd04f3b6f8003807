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

Streaming (`stream`) is host/stream.py: it survives a faulty line.
"""
import re
import threading
import time

import queue

import serial

from device import protocol as P
from device import protocol_host as PH
from host import firmware, rgb565z
from host.errors import UserError, one_line

REPL_BAUD = 115200
HELLO_RETRY = 0.3
CTRL_C_RETRY = 1.2          # s between single Ctrl-Cs: longer than a script's C calls
LISTEN_FIRST = 0.6
PROBE_TIME = 1.0
BYE_WAIT = 2.0
TEXT_KEEP = 8192
SERVE_SWITCH_WAIT = 0.25
BRINGUP_HELLO = 3.0        # s of HELLO after the serve banner before looking again
UPTIME_SLACK_MS = 1000     # INFO uptimes: what latency may take off a running board's
REPL_SERVE_WAIT = 10.0     # s from `detect.main()` typed at the REPL to the serve banner
MODEL_LOAD_WAIT = 20.0     # s from the board's "loading the model" line to its serve banner

# Recovery (docs/protocol.md, "Recovery")
MAX_ATTEMPTS = 10          # sends of one image before it ends as an explicit failure
ATTEMPT_SHIFT = 24         # wire id = attempt << 24 | image number
MAX_IMAGE_NUMBER = (1 << ATTEMPT_SHIFT) - 1
GARBAGE_BURST = 128        # undecodable bytes with no frame among them: maybe a reset banner
# boot text of MaixPy-v1 and CanMV (maixpy_main.c printk lines: "[MAIXPY] Pll0...",
# "[CANMV] Pll0...", "[MaixPy] gc heap=..."/"[CanMV] gc heap=...")
REBOOT_TEXT = re.compile(rb"MAIXPY|CANMV|CanMV|MicroPython|k210-deploy|>>> |init end|vboard")

SERVE_LINE = re.compile(rb"k210-deploy serve: proto (\d+), (\d+) baud, api (\S+), "
                        rb"model ([^\r\n]*)\r?\n")
GRACE_LINE = re.compile(rb"k210-deploy: (serve|live) mode in (\d+) ms")
# serve mode starting (Ctrl-C already off): wait for its serve line, never interrupt it
LOAD_LINE = re.compile(rb"k210-deploy serve: loading the model")
START_SERVE = (b"import detect; _c = detect.load_config(); _c['mode'] = 'serve'; "
               b"detect.main(_c)\r")

# KPU API generation (INFO "api") -> the firmware profile that offers it
API_PROFILE = {firmware.API_CANMV_NEW: "canmv-v5", firmware.API_CANMV_OLD: "canmv",
               firmware.API_LEGACY: "maixpy-v4"}


# what a stream's next_job() returns when its next image is not ready yet: asked again soon
NOT_YET = object()


class BoardError(UserError):
    """The board stopped answering or broke the protocol during a run (exit 2)."""


class PortError(BoardError):
    """Reading or writing the port failed (e.g. the USB-serial bridge was unplugged)."""


class ImageJob(object):
    """One image to send: `image_id` (1 .. 2^24-1), `fmt` (P.FMT_*), `flags`, `width`,
    `height`, `data` (payload bytes), `key` (the caller's handle), `pixel_crc` (the CRC32 the
    board must report for its RGB565 pixels, or None: not checked, e.g. JPEG)."""

    def __init__(self, image_id, fmt, flags, width, height, data, key=None, pixel_crc=None):
        if not 1 <= image_id <= MAX_IMAGE_NUMBER:
            raise ValueError("image_id %d out of 1..%d" % (image_id, MAX_IMAGE_NUMBER))
        self.pixel_crc = pixel_crc
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
        self._segments = None       # rgb565z: (chunk, deflate segments of data)

    def frames(self, wire, chunk):
        """(type, payload) of this image under wire id `wire`. rgb565z: `data` is the RGB565
        bytes, deflated once per chunk size (host.rgb565z)."""
        if self.fmt != P.FMT_RGB565Z:
            return list(PH.image_frames(wire, self.fmt, self.flags, self.width, self.height,
                                       self.data, chunk=chunk))
        if self._segments is None or self._segments[0] != chunk:
            self._segments = (chunk, rgb565z.segments(self.data, chunk))
        return list(rgb565z.image_frames(wire, self.flags, self.width, self.height,
                                         self._segments[1]))


class Session(object):
    """One board on one open pyserial port."""

    def __init__(self, ser, name, baud, timeout=10.0, booting=False, boot_time=0.0,
                 reopen=None, max_attempts=MAX_ATTEMPTS):
        """timeout: the bounded wait for a silent board (bring-up, and between frames during a
        run); booting: the board was just started (listen for its serve banner), allowing
        boot_time more seconds for that; reopen: callable returning the port opened again
        (after it vanished), or None; max_attempts: sends of one image at most."""
        self.reopen = reopen
        self.max_attempts = max_attempts
        self.recovery = {"resent_images": 0, "resend_requests": 0, "nacks": 0,
                         "transfer_errors": 0, "duplicate_replies": 0, "stale_replies": 0,
                         "pixel_crc_mismatches": 0, "sessions_reestablished": 0,
                         "board_restarts": 0, "port_reopens": 0, "failed_images": 0,
                         "truncated_frames": 0, "garbage_bursts": 0}
        self.ser = ser
        self.name = name
        self.baud = baud
        self.timeout = timeout
        self.booting = booting
        self.boot_time = boot_time
        self.parser = P.Parser()
        self.seq = 0
        self.info = None
        self.info_received_at = None
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
            raise PortError("writing to %s failed: %s" % (self.name, one_line(exc)))

    def _read(self, wait):
        """Bytes that arrive within `wait` s (maybe none)."""
        end = time.monotonic() + wait
        out = bytearray()
        while True:
            try:
                n = self.ser.in_waiting
                chunk = self.ser.read(n if n else 1)
            except (serial.SerialException, OSError) as exc:
                raise PortError("reading from %s failed: %s" % (self.name, one_line(exc)))
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
        """Serve mode + INFO; returns the INFO dict. Within the one bounded wait, a port that
        vanishes is reopened (with `reopen`) and a board that resets is looked for again."""
        t0 = time.monotonic()
        deadline = t0 + self.timeout + (self.boot_time if self.booting else 0.0)
        info = None
        try:
            info = self._first_contact(t0, deadline)
        except PortError as exc:
            self._reopen_port(deadline, exc)
        while info is None and time.monotonic() < deadline:
            try:
                info = self.find_board(deadline, 2.0)[0]
            except PortError as exc:
                self._reopen_port(deadline, exc)
        if info is None:
            if self.serve_line is not None:
                baud = self.serve_baud
                raise UserError("the board on %s started serve mode at %d baud but sent no "
                                "INFO within %.0f s: check that the USB-serial bridge supports "
                                "%d baud (try --baud 115200)"
                                % (self.name, baud, deadline - t0, baud))
            raise UserError(self._silent_message(time.monotonic() - t0))
        return self._ready(info)

    def _first_contact(self, t0, deadline):
        """The board booting, serving or at its REPL: INFO, or None."""
        self._set_baud(REPL_BAUD)
        self.ser.reset_input_buffer()
        baud = self._listen(deadline if self.booting else min(deadline, t0 + LISTEN_FIRST),
                            deadline)
        if baud is None and not self.booting:
            self.path = "probe"
            info = self._hello(self.baud, min(deadline, time.monotonic() + PROBE_TIME))
            if info is not None:
                return info
            baud = self._start_from_repl(deadline)
        if baud is None:
            return None
        # a board that resets now (its serve banner seen, its INFO not) is looked for again
        return self._hello(baud, min(deadline, time.monotonic() + BRINGUP_HELLO))

    def find_board(self, deadline, hello_wait, on_frame=None):
        """A board that may have rebooted or left serve mode: listen at 115200 for its boot
        text and serve banner (its grace line extends the wait); at its REPL (bytes hit its
        grace period: it stays there), start serve mode from the REPL; if it shows nothing,
        HELLO at the serve baud, then the REPL. Returns (INFO or None, whether it was seen
        (re)starting serve mode)."""
        self._set_baud(REPL_BAUD)
        del self.text[:]
        t0 = last_rx = time.monotonic()
        listen_until = t0 + LISTEN_FIRST
        baud = None
        while time.monotonic() < min(deadline, listen_until):
            if self._read(0.05):
                last_rx = time.monotonic()
            m = SERVE_LINE.search(self.text)
            if m:
                baud = self._serve_started(m)
                break
            g = GRACE_LINE.search(self.text)
            if LOAD_LINE.search(self.text):
                listen_until = max(listen_until, last_rx + MODEL_LOAD_WAIT)
            elif g and g.group(1) == b"serve":
                listen_until = max(listen_until, last_rx + int(g.group(2)) / 1000.0 + 3.0)
            elif REBOOT_TEXT.search(self.text):
                # boot text: wait while it keeps coming, act once it stops
                listen_until = max(listen_until, last_rx + 0.3)
        if baud is not None:
            return self._hello(baud, min(deadline, time.monotonic() + max(hello_wait, 2.0)),
                               on_frame=on_frame), True
        if not REBOOT_TEXT.search(self.text):
            info = self._hello(self.baud, min(deadline, time.monotonic() + hello_wait),
                               on_frame=on_frame)
            if info is not None:
                return info, False
        baud = self._start_from_repl(deadline)
        if baud is None:
            return None, False
        return self._hello(baud, deadline, on_frame=on_frame), True

    def _reopen_port(self, deadline, exc):
        """The port failed (unplugged): open it again by name until `deadline`."""
        if self.reopen is None:
            raise exc
        try:
            self.ser.close()
        except Exception:
            pass
        last = exc
        while True:
            try:
                self.ser = self.reopen()
                self.recovery["port_reopens"] += 1
                return
            except UserError as e:
                last = e
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        raise BoardError("the port %s went away and did not come back within %.0f s (%s): "
                         "reconnect the board and retry" % (self.name, self.timeout,
                                                           one_line(last)))

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
            if LOAD_LINE.search(self.text):
                until = max(until, min(deadline, now + MODEL_LOAD_WAIT))
            elif g and g.group(1) == b"serve":
                until = max(until, min(deadline, now + int(g.group(2)) / 1000.0 + 3.0))
            if now >= until:
                return None

    def _serve_started(self, m):
        self.serve_line = m.group(0).decode("latin-1").strip()
        baud = int(m.group(2))
        self.serve_baud = baud
        del self.text[:]
        # The board waits 100 ms after this line, then switches its UART: a HELLO before
        # that would reach it at the wrong speed.
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
        # ONE Ctrl-C: stop a script (a second one before the script has seen the first
        # cancels it: machine_uart.c, docs/firmware-source.md) and clear the line; Ctrl-B:
        # leave the raw REPL (earlier probe bytes may have typed Ctrl-A) - in the friendly
        # REPL it only prints the banner. Then wait for the friendly prompt (a probe byte may
        # also have been a Ctrl-D soft reset: main.py's grace period then sees our bytes as
        # a key); another single Ctrl-C after CTRL_C_RETRY s of no prompt (a lost byte).
        del self.text[:]
        self._write(b"\r\x03\x02")
        prompt_by = min(deadline, time.monotonic() + 3.0)
        last_ctrl_c = time.monotonic()
        quiet = 0.0
        while time.monotonic() < prompt_by:
            got = self._read(0.05)
            quiet = 0.0 if got else quiet + 0.05
            if not self.text.endswith(b">>> ") and \
                    time.monotonic() - last_ctrl_c >= CTRL_C_RETRY:
                self._write(b"\x03")
                last_ctrl_c = time.monotonic()
            if self.text.endswith(b"Ctrl-C or any key: stay in the REPL)\r\n"):
                self._write(b"\r")
            if quiet >= 0.3 and self.text.endswith(b">>> "):
                break
            if LOAD_LINE.search(self.text) or SERVE_LINE.search(self.text):
                # its grace period ended first: serve mode is starting and ignores Ctrl-C
                return self._await_serve_line(time.monotonic(), deadline)
        if not self.text.endswith(b">>> "):
            self.logs.append("no REPL prompt on %s (last text %r)"
                             % (self.name, bytes(self.text[-60:])))
            return None         # not at a REPL (e.g. serving at its baud): look again
        del self.text[:]
        self._write(START_SERVE)
        return self._await_serve_line(min(deadline, time.monotonic() + REPL_SERVE_WAIT),
                                      deadline)

    def _await_serve_line(self, until, deadline):
        """Serve mode starting: its serve line's baud; None by `until`, or MODEL_LOAD_WAIT
        after its "loading the model" line (within `deadline`); a UserError when the REPL
        shows an error instead."""
        loading = False
        while True:
            m = SERVE_LINE.search(self.text)
            if m:
                return self._serve_started(m)
            if not loading and LOAD_LINE.search(self.text):
                loading = True
                until = max(until, min(deadline, time.monotonic() + MODEL_LOAD_WAIT))
            parts = self.text.split(b"detect.main(_c)", 1)
            if len(parts) == 2 and b">>> " in parts[1]:
                raise UserError(self._repl_message(parts[1]))
            if time.monotonic() >= until:
                return None
            self._read(0.05)

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

    def hello_frame(self):
        return self._frame(P.T_HELLO, P.pack_json({"proto": P.VERSION, "host": "serial_eval"}))

    def _hello(self, baud, until, on_frame=None):
        """HELLO every HELLO_RETRY s at `baud` until INFO or `until`; then wait until no
        further INFO can answer an earlier HELLO. Returns INFO or None. Other frames go to
        on_frame(ftype, seq, payload) (results that were on their way)."""
        self._set_baud(baud)
        info = None
        t_info = 0.0
        last_hello = 0.0
        hellos = 0
        while True:
            now = time.monotonic()
            if info is None and now >= until:
                return None
            if info is None and now - last_hello >= HELLO_RETRY:
                self._write(self.hello_frame())
                last_hello = now
                hellos += 1
            # after INFO, wait until no earlier HELLO can still be answered: with several
            # HELLOs out, HELLO_RETRY + 0.1 s after the last; with one, only a duplicate of
            # its INFO could follow, right behind
            if info is not None and now - t_info >= 0.05 and \
                    (hellos == 1 or now - last_hello >= HELLO_RETRY + 0.1):
                return info
            data = self._read(0.03)
            for ftype, _seq, payload in self.parser.feed_all(data):
                if ftype == P.T_INFO:
                    try:
                        info = PH.unpack_json(payload)
                    except ValueError:
                        continue
                    t_info = time.monotonic()
                    self.info_received_at = t_info
                elif on_frame is not None:
                    on_frame(ftype, _seq, payload)

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
    def _start_reader(self):
        self._stop.clear()
        self._reader_error = None
        self._events = queue.Queue()
        self._reader = threading.Thread(target=self._reader_loop, name="rx-" + self.name,
                                        daemon=True)
        self._reader.start()

    def _stop_reader(self):
        self._stop.set()
        if self._reader is not None:
            self._reader.join(2.0)
            self._reader = None

    def _reader_loop(self):
        """Frames -> self._events; 'garbage' when many bytes decode to nothing (a board that
        reset prints its banner at another baud); a partial frame that stops growing for
        longer than its line time is dropped (truncated); None when the port fails."""
        parser = self.parser
        idle_t0 = None
        mark = parser.garbage
        ser = self.ser
        try:
            while not self._stop.is_set():
                n = ser.in_waiting
                data = ser.read(n if n else 1)
                if data:
                    idle_t0 = None
                    self.received += len(data)
                    frames = parser.feed_all(data)
                elif parser.want:
                    now = time.monotonic()
                    if idle_t0 is None:
                        idle_t0 = now
                    elif parser.stale((now - idle_t0) * 1000.0, ser.baudrate or REPL_BAUD):
                        parser.rescan()
                        self.recovery["truncated_frames"] += 1
                        idle_t0 = None
                    frames = parser.feed_all(b"")
                else:
                    continue
                for f in frames:
                    self._events.put(f)
                if frames:
                    mark = parser.garbage
                elif parser.garbage - mark >= GARBAGE_BURST:
                    mark = parser.garbage
                    self._events.put("garbage")
        except Exception as exc:  # the port went away: the stream reopens it
            self._reader_error = exc
            self._events.put(None)

    def stream(self, next_job, on_done, stop=None):
        """Send jobs from next_job() (None: no more; NOT_YET: ask again soon) under the
        credit window, several in flight; on_done(job, result_or_None, error_or_None) once
        for each. Returns the stats. Recovers from a faulty line (see the module doc);
        BoardError when the board gives nothing valid for `timeout` s in spite of it."""
        from host.stream import Stream   # the streaming half; it imports this module
        return Stream(self, next_job, on_done, stop).run()

    # ------------------------------------------------------------------ end
    def close(self):
        """EXIT (the board answers BYE and returns to its REPL at 115200); never raises."""
        try:
            if self.info is not None:
                end = time.monotonic() + BYE_WAIT
                parser = P.Parser()
                last = 0.0
                while time.monotonic() < end:
                    if time.monotonic() - last >= HELLO_RETRY:   # EXIT may be lost: again
                        self._write(self._frame(P.T_EXIT))
                        last = time.monotonic()
                    if any(f[0] == P.T_BYE for f in parser.feed_all(self._read(0.05))):
                        break
                time.sleep(0.1)
            self._set_baud(REPL_BAUD)
        except Exception:
            pass


def restarted_between(old_info, old_at, new_info, new_at):
    """The board restarted between two INFOs (received at host times old_at, new_at): its
    uptime went back. A board that keeps running shows at least the old uptime plus the time
    passed (less the frames' latency, well under UPTIME_SLACK_MS); one that rebooted after the
    old INFO shows at most the time passed. A restart is seen this way also when its boot
    text went by unseen (the host at the serve speed)."""
    old_up, new_up = old_info.get("uptime_ms"), new_info.get("uptime_ms")
    if not isinstance(old_up, int) or not isinstance(new_up, int) or old_at is None:
        return False
    return new_up < old_up + (new_at - old_at) * 1000.0 - UPTIME_SLACK_MS


def exit_serve_mode(ser, bauds):
    """A board in k210-deploy serve mode ignores Ctrl-C: send EXIT at its baud(s), then
    leave the port at the REPL's baud (for host/deploy.py, which needs the REPL)."""
    for baud in bauds:
        ser.baudrate = baud
        for seq in range(2):
            ser.write(P.encode(P.T_EXIT, seq, b""))
            time.sleep(0.15)
        ser.read(4096)
    ser.baudrate = REPL_BAUD
    time.sleep(0.2)

