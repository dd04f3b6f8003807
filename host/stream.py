"""Streaming images to a board in serve mode, for host.session.Session.stream: credit
window, pipelining and recovery.

It survives a faulty line (docs/protocol.md, "Recovery"): image ids on the
wire carry the attempt, replies are accepted once per image and only for ids this host sent
(raw RGB565: only with the pixel CRC of the bytes sent), transfer errors and NACKs send the
image again, silence is probed with RESEND, a lost session (board reset, serve mode left) is
re-established, a vanished port is reopened; every image ends with a verified RESULT or an
explicit error after `max_attempts`.
"""
import collections
import queue
import time

import serial

from device import protocol as P
from device import protocol_host as PH
from host.errors import UserError, one_line
from host.session import ATTEMPT_SHIFT, NOT_YET, BoardError, PortError, restarted_between

# Recovery (docs/protocol.md, "Recovery"); the rest is in host/session.py
FIRST_PROBE = 2.0          # s of silence before a probe until board times are known (a big
                           # model's first image may take that long on a virtual board)
MIN_PROBE = 0.3            # s: the probe interval never goes below this
PROBES = 2                 # unanswered probes before the session counts as lost
MAX_IN_FLIGHT = 4          # images sent and not yet answered (the window also limits bytes):
                           # enough to hide the board's turnaround, few to send again after
                           # a lost session


# ---------------------------------------------------------------------- credit
class SeqCredit(object):
    """The credit window when the board's ACKs name the last host frame it parsed intact
    (INFO feature `seq_ack`): an ACK for frame s returns the credit of every byte sent up to
    the end of s, including frames lost before it, so lost or duplicated bytes never leak
    credit. Out-of-order ACKs (older frames) are ignored."""

    KEEP = 8192

    def __init__(self, window):
        self.window = window
        self.sent = 0
        self.acked = 0
        self.ends = collections.OrderedDict()   # seq -> bytes sent up to the frame's end

    def in_flight(self):
        return self.sent - self.acked

    def can_send(self, n):
        return self.sent - self.acked + n <= self.window

    def on_send(self, seq, n):
        self.sent += n
        self.ends.pop(seq, None)
        self.ends[seq] = self.sent
        while len(self.ends) > self.KEEP:
            self.ends.popitem(last=False)

    def on_ack(self, consumed, last_seq):
        end = self.ends.get(last_seq) if last_seq is not None else None
        if end is None or end <= self.acked:
            return
        self.acked = end
        while self.ends:
            seq, value = next(iter(self.ends.items()))
            if value > self.acked:
                break
            self.ends.popitem(last=False)


class ByteCredit(object):
    """The credit window of boards whose ACKs carry only the byte count (no seq_ack)."""

    def __init__(self, window):
        self.credit = PH.Credit(window)

    def in_flight(self):
        return self.credit.in_flight()

    def can_send(self, n):
        return self.credit.can_send(n)

    def on_send(self, seq, n):
        self.credit.sent += n

    def on_ack(self, consumed, last_seq):
        self.credit.on_ack(consumed)


def make_credit(info):
    if "seq_ack" in (info.get("features") or []):
        return SeqCredit(info["window"])
    return ByteCredit(info["window"])


# ---------------------------------------------------------------------- streaming
class _Job(object):
    """One image's sends: `attempts` so far, `wire` (id of the current attempt), `frames`
    still to write for it (None: not started), whether they are all written."""

    def __init__(self, job):
        self.job = job
        self.attempts = 0
        self.wire = None
        self.frames = None
        self.sent_all = False
        self.done = False
        self.last_error = None


class _Answered(object):
    """What `by_wire` keeps of an answered image: that it was answered (a late duplicate is
    counted as one), not its payload, so a long run holds no image it has finished."""
    done = True
    wire = None


ANSWERED = _Answered()


class _LostSession(Exception):
    """The session must be re-established (reason in args[0]; `restarted`: the board said
    it restarted)."""

    def __init__(self, why, restarted=False):
        Exception.__init__(self, why)
        self.restarted = restarted


class _PortGone(Exception):
    """The port failed (unplugged)."""


class Stream(object):
    def __init__(self, session, next_job, on_done, stop):
        self.s = session
        self.next_job = next_job
        self.on_done = on_done
        self.stop = stop
        self.queue = collections.deque()     # _Job to send, front first
        self.sent = collections.OrderedDict()  # wire id -> _Job: all frames written, no reply
        self.by_wire = {}                    # every wire id ever used -> _Job (ANSWERED)
        self.exhausted = False
        self.open = 0                        # jobs without their final answer
        self.credit = make_credit(session.info)
        self.chunk = session.info["chunk"]
        self.service = None                  # longest board time per image seen (s)
        self.last_valid = time.monotonic()
        self.probes = 0
        self.last_probe = 0.0
        self.suspect = False                 # undecodable bytes: maybe the board reset
        self.t_first = None
        self.t_last = None

    # -- the loop
    def run(self):
        s = self.s
        s._start_reader()
        try:
            while True:
                if self.stop is not None and self.stop.is_set():
                    return s.stats
                try:
                    self._send()
                    if self.exhausted and not self.open:
                        break
                    self._receive()
                    self._watch()
                except _PortGone:
                    self._reopen()
                    self._reestablish("the port came back", hello_first=True)
                except _LostSession as exc:
                    self._reestablish(exc.args[0], hello_first=not self.suspect,
                                      restarted=exc.restarted)
                except P.ProtocolError as exc:
                    s.recovery["transfer_errors"] += 1
                    s.logs.append("malformed frame: %s" % exc)
        finally:
            s._stop_reader()
            if self.t_first is not None and self.t_last is not None:
                s.stats["link_seconds"] += self.t_last - self.t_first
        return s.stats

    # -- sending
    def _write(self, frame, seq, force=False):
        try:
            self.s.ser.write(frame)
        except (serial.SerialException, OSError):
            raise _PortGone()
        self.credit.on_send(seq, len(frame))
        self.s.stats["wire_bytes"] += len(frame)

    def _send(self):
        while True:
            if not self.queue:
                if self.exhausted or len(self.sent) >= MAX_IN_FLIGHT:
                    return
                job = self.next_job()
                if job is NOT_YET:          # the caller is still preparing it: ask again
                    return
                if job is None:
                    self.exhausted = True
                    return
                self.queue.append(_Job(job))
                self.open += 1
                if self.t_first is None:
                    self.t_first = time.monotonic()
                    self.last_valid = self.t_first
            j = self.queue[0]
            if j.frames is None and len(self.sent) >= MAX_IN_FLIGHT:
                return
            if j.frames is None and not self._new_attempt(j):
                self.queue.popleft()
                continue
            if not j.frames:
                self.queue.popleft()
                j.sent_all = True
                j.job.t_sent = time.monotonic()
                self.sent[j.wire] = j
                continue
            seq, frame = j.frames[0]
            if not self.credit.can_send(len(frame)):
                return
            j.frames.pop(0)
            self._write(frame, seq)

    def _new_attempt(self, j):
        """Frames for the next attempt of j; False (and j answered) when none is left."""
        s = self.s
        if j.attempts >= s.max_attempts:
            reason = "no verified result after %d attempt(s)" % j.attempts
            if j.last_error:
                reason += " (last: %s)" % j.last_error
            self._answer(j, None, {"ref": j.wire or 0, "code": 0, "name": "retries",
                                   "reason": reason})
            s.recovery["failed_images"] += 1
            return False
        if j.attempts:
            s.recovery["resent_images"] += 1
        j.wire = (j.attempts << ATTEMPT_SHIFT) | j.job.image_id
        j.attempts += 1
        self.by_wire[j.wire] = j
        job = j.job
        if j.attempts == 1:
            job.t_begin = time.monotonic()
            s.stats["images"] += 1
        payload = job.frames(j.wire, self.chunk)
        if j.attempts == 1:
            s.stats["payload_bytes"] += sum(len(p) - 8 for t, p in payload
                                            if t == P.T_IMAGE_DATA)
        frames = []
        for t, p in payload:
            seq = s.seq
            frames.append((seq, s._frame(t, p)))
        j.frames = frames
        j.sent_all = False
        return True

    def _again(self, j, why):
        """Send j again (new attempt) as soon as possible."""
        self.sent.pop(j.wire, None)
        j.last_error = why
        if j in self.queue:
            self.queue.remove(j)
        j.frames = None
        j.sent_all = False
        if self.queue and self.queue[0].frames is not None:
            self.queue.insert(1, j)    # after the image being sent: never cut it short
        else:
            self.queue.appendleft(j)

    def _answer(self, j, result, error):
        j.done = True
        self.sent.pop(j.wire, None)
        if j in self.queue:
            self.queue.remove(j)
        self.open -= 1
        now = time.monotonic()
        j.job.t_done = now
        self.t_last = now
        if result is not None:
            self.s.stats["results"] += 1
        else:
            self.s.stats["errors"] += 1
        for attempt in range(j.attempts):
            self.by_wire[(attempt << ATTEMPT_SHIFT) | j.job.image_id] = ANSWERED
        self.on_done(j.job, result, error)

    # -- receiving
    def _receive(self):
        s = self.s
        try:
            ev = s._events.get(timeout=0.02)
        except queue.Empty:
            return
        while True:
            if ev is None:
                raise _PortGone()
            if ev == "garbage":
                s.recovery["garbage_bursts"] += 1
                self.suspect = True
                self.probes = max(self.probes, PROBES - 1)   # one quick probe, then resync
                self.last_probe = 0.0
            else:
                self._frame(*ev)
            try:
                ev = s._events.get_nowait()
            except queue.Empty:
                return

    def _frame(self, ftype, seq, payload):
        s = self.s
        self.last_valid = time.monotonic()
        self.probes = 0
        self.suspect = False
        if ftype == P.T_ACK:
            consumed, last_seq = PH.unpack_ack_seq(payload)
            self.credit.on_ack(consumed, last_seq)
        elif ftype == P.T_RESULT:
            self._result(PH.unpack_result(payload))
        elif ftype == P.T_ERROR:
            self._error(PH.unpack_error(payload))
        elif ftype == P.T_LOG:
            s.logs.append(bytes(payload).decode("utf-8", "replace"))
        elif ftype == P.T_INFO:
            # a reply to a HELLO the board saw late, or to the HELLO probe after undecodable
            # bytes: it dropped its partial image and its cache, and counts ACK bytes from
            # there: start over from this INFO (a board that rebooted shows a younger uptime)
            info = PH.unpack_json(payload)
            s.recovery["sessions_reestablished"] += 1
            if restarted_between(s.info, s.info_received_at, info, self.last_valid):
                s.recovery["board_restarts"] += 1
            s.info_received_at = self.last_valid
            self._after_info(info)

    def _result(self, r):
        s = self.s
        j = self.by_wire.get(r["image_id"])
        if j is None:
            s.recovery["stale_replies"] += 1
            return
        if j.done:
            s.recovery["duplicate_replies"] += 1
            return
        self._measure(r)
        want = j.job.pixel_crc
        if want is not None and r["pixel_crc"] != want:
            s.recovery["pixel_crc_mismatches"] += 1
            if j.attempts < s.max_attempts:
                self._again(j, "pixel CRC %08x, sent %08x" % (r["pixel_crc"], want))
                return
        self._answer(j, r, None)

    def _measure(self, r):
        t = (r["kpu_ms"] + r["prep_ms"] + r["decode_ms"]) / 1000.0
        if t >= 0 and (self.service is None or t > self.service):
            self.service = min(t, self.s.timeout)

    def _error(self, e):
        s = self.s
        if e["code"] == P.E_NO_SESSION:
            # the board has restarted serve mode since our HELLO (a reset between frames
            # whose reboot text went by unseen): a new session, every open image again
            raise _LostSession("the board answered without a session: it restarted",
                               restarted=True)
        j = self.by_wire.get(e["ref"]) if e["ref"] else None
        if e["code"] == P.E_CRC:
            s.recovery["nacks"] += 1
        if j is None:
            if not (e["ref"] == 0 and e["code"] in (P.E_CRC, P.E_NO_RESULT)):
                s.board_errors.append(e)
            return
        if j.done:
            s.recovery["duplicate_replies"] += 1
            return
        if e["ref"] != j.wire:
            s.recovery["stale_replies"] += 1
            return
        if e["code"] in P.TRANSPORT_ERRORS:
            s.recovery["transfer_errors"] += 1
            self._again(j, "%s: %s" % (e["name"], e["reason"][:120]))
            return
        self._answer(j, None, e)

    # -- silence
    def _probe_interval(self):
        if self.suspect:
            base = 0.15 if self.service is None else 2 * self.service
            return max(0.15, base)
        if self.service is None:
            return FIRST_PROBE
        return max(MIN_PROBE, 3 * self.service)

    def _watch(self):
        s = self.s
        if not self.open:
            return
        now = time.monotonic()
        if now - self.last_valid > s.timeout:
            raise BoardError(self._lost_message("no valid frame for %.0f s" % s.timeout))
        quiet = now - max(self.last_valid, self.last_probe)
        if quiet < self._probe_interval():
            return
        if self.probes >= PROBES:
            raise _LostSession("%d probe(s) unanswered" % self.probes)
        self.probes += 1
        self.last_probe = now
        seq = s.seq
        if self.suspect:
            # undecodable bytes, maybe a reboot banner: HELLO, whose INFO says (uptime) and
            # restarts the session on both sides; a RESEND would be answered by a rebooted
            # board as by the old one
            self._write(s.hello_frame(), seq)
            return
        target = next(iter(self.sent), 0)
        s.recovery["resend_requests"] += 1
        self._write(s._frame(P.T_RESEND, PH.pack_resend(target)), seq)

    # -- re-establishing
    def _reopen(self):
        s = self.s
        s._stop_reader()
        if self.stop is not None and self.stop.is_set():
            raise BoardError("stopped")
        s._reopen_port(time.monotonic() + s.timeout,
                       PortError("the port %s went away: %s"
                                 % (s.name, one_line(s._reader_error or "write failed"))))

    def _reestablish(self, why, hello_first=True, restarted=False):
        """HELLO at the serve baud; else listen for a (re)booting board's serve banner at
        115200; else start serve mode from the REPL; again until `timeout` s have passed (a
        board may reset again while it is being reached). Then every unanswered image
        again."""
        s = self.s
        s._stop_reader()
        s.recovery["sessions_reestablished"] += 1
        path = s.path           # how the run began, for the report
        old_info, old_at = s.info, s.info_received_at
        deadline = time.monotonic() + s.timeout
        hello_wait = FIRST_PROBE + 1.0 if self.service is None else max(1.0, 4 * self.service)
        info = None
        tries = 0
        while info is None and time.monotonic() < deadline:
            tries += 1
            s.parser = P.Parser()
            try:
                if hello_first and tries == 1:
                    info = s._hello(s.baud, min(deadline, time.monotonic() + hello_wait),
                                    on_frame=self._frame_during_hello)
                if info is None:
                    info, seen_restarting = s.find_board(deadline, hello_wait,
                                                         self._frame_during_hello)
                    restarted = restarted or seen_restarting
            except (serial.SerialException, OSError, PortError):
                self._reopen()
                hello_first = True
                tries = 0
            except UserError as exc:
                if time.monotonic() >= deadline:
                    raise BoardError(self._lost_message("%s; then: %s" % (why, exc)))
        if info is None:
            text = bytes(s.text[-80:]).decode("latin-1")
            text = " ".join("".join(c if 32 <= ord(c) < 127 else " " for c in text).split())
            raise BoardError(self._lost_message("%s; it did not answer HELLO again within "
                                                "%.0f s, %d attempt(s), last text %r"
                                                % (why, s.timeout, tries, text[-60:])))
        s.path = path
        if restarted or restarted_between(old_info, old_at, info, s.info_received_at):
            s.recovery["board_restarts"] += 1
        if info.get("model_sha256") != s.info.get("model_sha256"):
            raise BoardError("the board on %s runs another model after its restart (sha256 "
                             "%s...): flash it again" % (s.name, str(info.get("model_sha256"))[:16]))
        s._ready(info)
        s.parser = P.Parser()
        self._after_info(info)
        s._start_reader()

    def _frame_during_hello(self, ftype, seq, payload):
        if ftype == P.T_ERROR and PH.unpack_error(payload)["code"] == P.E_NO_SESSION:
            return      # answers to frames sent before this HELLO: the session is coming
        if ftype in (P.T_RESULT, P.T_ERROR, P.T_LOG):
            self._frame(ftype, seq, payload)

    def _after_info(self, info):
        """A fresh session on the board: credit from its INFO; every image without an answer
        is sent again."""
        s = self.s
        s.info = info
        self.credit = make_credit(info)
        self.chunk = info.get("chunk") or self.chunk
        self.last_valid = time.monotonic()
        self.probes = 0
        self.suspect = False
        redo = [j for j in list(self.sent.values()) + list(self.queue) if not j.done]
        self.sent.clear()
        self.queue.clear()
        for j in redo:
            if j.wire is not None:
                j.last_error = j.last_error or "session re-established"
            j.frames = None
            j.sent_all = False
            self.queue.append(j)

    def _lost_message(self, why):
        s = self.s
        ids = sorted(j.job.image_id for j in list(self.sent.values()) + list(self.queue)
                     if not j.done)
        return ("the board on %s stopped answering (%s) with %d image(s) outstanding (ids %s, "
                "%d bytes unacknowledged); reset the board and retry (or raise --timeout)"
                % (s.name, why, len(ids), ",".join(str(i) for i in ids[:5]),
                   self.credit.in_flight()))
