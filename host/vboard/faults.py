"""Fault injection on the virtual board's line: what a noisy USB-serial link, a flaky cable
and a board that browns out do to the k210-deploy protocol.

The layer sits in the line (host/vboard/line.py), between the host's pty/TCP and the board's
UART, and acts on both directions. It finds protocol frames in each byte stream by their sync
and header check (device/protocol.py) and counts them over both directions; bytes outside
frames (banners, REPL text, ISP traffic) pass unchanged. Which frames are hit is stratified,
so the rates hold in every stretch of a run: in each block of `period` frames (default 200)
each kind hits floor(rate x period) frames, plus one more with the probability of the
remainder, at positions drawn from the seeded RNG (one fault per frame at most). Kinds:

- `flip`       one random bit of the frame inverted (header or payload)
- `drop`       a run of 1-16 bytes of the frame lost
- `dup`        the frame delivered twice
- `reorder`    the frame held back and delivered after the next frame (or after 50 ms)
- `truncate`   only a prefix of the frame delivered
- `delay`      the frame, and everything behind it, delivered `delay_ms` (x0.5..1.5) late
- `reset`      part of the frame delivered, then the board resets (RESET pin): the banner at
               115200, boot.py, main.py, its serve mode starts again
- `disconnect` part of the frame delivered, then the port vanishes for `disconnect_ms`
               (the pty is closed and a new one made; DIR/tty, port.json and --link follow
               it, as udev's /dev/serial/by-id links do); bytes sent meanwhile are lost

Spec (`python -m host.vboard --faults SPEC --fault-seed N`), comma-separated:
`KIND=RATE` (fraction of frames, e.g. `flip=0.02`; the rates add up to at most 1: one fault
per frame at most), `KIND@N` (hit exactly the N-th frame counted over both directions,
e.g. `reset@200`), `delay_ms=MS` (default 150), `disconnect_ms=MS` (default 300),
`period=N` (default 200), `dir=both|to_board|to_host` (default both; a fault drawn for a
frame of the other direction moves to the next frame that qualifies), `after=N` (no fault
before the N-th frame: the session is set up cleanly). Counts go to DIR/faults.json
(`frames`, `faults` per kind, per direction), written at least once a second and on exit.
"""
import collections
import json
import os
import random
import struct
import threading
import time

from device import protocol as P

KINDS = ("flip", "drop", "dup", "reorder", "truncate", "delay", "reset", "disconnect")
DIRECTIONS = ("to_board", "to_host")
RESET = "reset"
DISCONNECT = "disconnect"
REORDER_HOLD = 0.05        # s a reordered frame waits for a successor
PARTIAL_STALE = 0.2        # s a partial frame may wait for its rest before passing as text
MAX_FRAME = P.MAX_PAYLOAD + P.OVERHEAD


class FaultSpec(object):
    def __init__(self, rates=None, at=None, delay_ms=150, disconnect_ms=300, directions=None,
                 after=0, period=200):
        self.rates = dict(rates or {})
        self.at = dict(at or {})            # frame number -> kind
        self.delay_ms = delay_ms
        self.disconnect_ms = disconnect_ms
        self.directions = tuple(directions or DIRECTIONS)
        self.after = after
        self.period = period

    def active(self):
        return bool(self.rates or self.at)

    def as_dict(self):
        return {"rates": self.rates, "at": {str(k): v for k, v in self.at.items()},
                "delay_ms": self.delay_ms, "disconnect_ms": self.disconnect_ms,
                "directions": list(self.directions), "after": self.after,
                "period": self.period}


def parse_spec(text):
    """'flip=0.02,reset@200,delay_ms=100' -> FaultSpec; ValueError naming the bad item."""
    spec = FaultSpec()
    for item in [t.strip() for t in (text or "").split(",") if t.strip()]:
        if "@" in item:
            kind, _, n = item.partition("@")
            if kind not in KINDS or not n.isdigit() or int(n) < 1:
                raise ValueError("fault %r: use KIND@N with KIND one of %s and N >= 1"
                                 % (item, ", ".join(KINDS)))
            spec.at[int(n)] = kind
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError("fault %r: use KIND=RATE, KIND@N or OPTION=VALUE" % item)
        if key in KINDS:
            try:
                rate = float(value)
            except ValueError:
                rate = -1.0
            if not 0.0 <= rate <= 1.0:
                raise ValueError("fault rate %r must be a number in 0..1" % item)
            spec.rates[key] = rate
        elif key in ("delay_ms", "disconnect_ms", "after", "period"):
            if not value.isdigit():
                raise ValueError("%r: %s must be a whole number" % (item, key))
            setattr(spec, key, int(value))
        elif key == "dir":
            if value not in ("both",) + DIRECTIONS:
                raise ValueError("%r: dir must be both, to_board or to_host" % item)
            spec.directions = DIRECTIONS if value == "both" else (value,)
        else:
            raise ValueError("unknown fault option %r (kinds: %s; options delay_ms, "
                             "disconnect_ms, period, dir, after)" % (key, ", ".join(KINDS)))
    if spec.period < 1:
        raise ValueError("period must be >= 1")
    if sum(spec.rates.values()) > 1.0:
        raise ValueError("fault rates add up to %.3f: at most 1 (one fault per frame)"
                         % sum(spec.rates.values()))
    return spec


class Counter(object):
    """Frames counted over both directions, the fault schedule, and the faults per
    direction; saved as faults.json."""

    def __init__(self, spec, seed, path=None):
        self.spec = spec
        self.seed = seed
        self.path = path
        self.rng = random.Random("schedule/%s" % seed)
        self.block = []             # kinds (or None) of the frames of the current period
        self.carry = []             # kinds drawn for a frame whose direction is excluded
        self.lock = threading.Lock()
        self.total = 0
        self.frames = {d: 0 for d in DIRECTIONS}
        self.faults = {d: {k: 0 for k in KINDS} for d in DIRECTIONS}
        self.events = []            # (frame number, direction, kind) of resets/disconnects
        self._saved = 0.0

    def _new_block(self):
        period = self.spec.period
        kinds = []
        for k in KINDS:
            share = self.spec.rates.get(k, 0.0) * period
            count = int(share) + (1 if self.rng.random() < share - int(share) else 0)
            kinds += [k] * count
        kinds = kinds[:period]
        self.block = kinds + [None] * (period - len(kinds))
        self.rng.shuffle(self.block)

    def next_frame(self, direction):
        """-> (frame number, fault kind or None) for the next frame going `direction`."""
        spec = self.spec
        with self.lock:
            self.total += 1
            self.frames[direction] += 1
            number = self.total
            kind = spec.at.get(number)
            if kind is None and spec.rates and number > spec.after:
                if not self.block:
                    self._new_block()
                kind = self.block.pop()
                if direction not in spec.directions:
                    if kind is not None:
                        self.carry.append(kind)
                    kind = None
                elif kind is None and self.carry:
                    kind = self.carry.pop(0)
            return number, kind

    def hit(self, direction, kind, number):
        with self.lock:
            self.faults[direction][kind] += 1
            if kind in (RESET, DISCONNECT):
                self.events.append([number, direction, kind])

    def as_dict(self):
        with self.lock:
            per_kind = {k: sum(self.faults[d][k] for d in DIRECTIONS) for k in KINDS}
            return {"seed": self.seed, "spec": self.spec.as_dict(), "frames": self.total,
                    "frames_by_direction": dict(self.frames), "faults": per_kind,
                    "faults_by_direction": {d: dict(v) for d, v in self.faults.items()},
                    "events": list(self.events)}

    def save(self, force=False):
        if self.path is None:
            return
        now = time.monotonic()
        if not force and now - self._saved < 1.0:
            return
        self._saved = now
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.as_dict(), f, indent=1)
        os.replace(tmp, self.path)


class Injector(object):
    """One direction of the line. push(bytes) what the sender put on the wire; pop(now) ->
    [bytes or event name] what reaches the other end by now, in order."""

    def __init__(self, spec, counter, direction, seed):
        self.spec = spec
        self.counter = counter
        self.direction = direction
        self.rng = random.Random("%s/%s" % (seed, direction))
        self.buf = bytearray()
        self.queue = collections.deque()    # [release time, bytes or event]
        self.held = None                    # (frame, held since) for reorder
        self.partial_since = None
        self.lock = threading.Lock()

    # -- input
    def push(self, data, now=None):
        now = time.monotonic() if now is None else now
        with self.lock:
            self.buf += data
            self._scan(now)

    def _emit(self, item, now):
        self.queue.append([now, item])

    def _scan(self, now):
        buf = self.buf
        while buf:
            i = buf.find(P.SYNC)
            if i < 0:
                keep = 1 if buf[-1] == P.SYNC0 else 0
                if len(buf) > keep:
                    self._emit(bytes(buf[:len(buf) - keep]), now)
                    del buf[:len(buf) - keep]
                self.partial_since = now if keep else None
                return
            if i:
                self._emit(bytes(buf[:i]), now)
                del buf[:i]
            if len(buf) < P.HDR_LEN:
                self.partial_since = self.partial_since or now
                return
            n = struct.unpack_from("<I", buf, 6)[0]
            hc = struct.unpack_from("<H", buf, 10)[0]
            if (P.crc32(bytes(buf[:10])) & 0xFFFF) != hc or buf[2] == 0 or n > P.MAX_PAYLOAD:
                self._emit(bytes(buf[:1]), now)        # not a frame: pass the byte on
                del buf[:1]
                continue
            total = P.OVERHEAD + n
            if len(buf) < total:
                self.partial_since = self.partial_since or now
                return
            frame = bytes(buf[:total])
            del buf[:total]
            self.partial_since = None
            self._frame(frame, now)

    def _frame(self, frame, now):
        number, kind = self.counter.next_frame(self.direction)
        if kind is not None:
            self.counter.hit(self.direction, kind, number)
        rng = self.rng
        if kind != "reorder" and self.held is not None:
            self._out(frame, kind, now, rng, number)
            self._emit(self.held[0], now)
            self.held = None
            return
        if kind == "reorder":
            if self.held is not None:
                self._emit(self.held[0], now)
            self.held = (frame, now)
            return
        self._out(frame, kind, now, rng, number)

    def _out(self, frame, kind, now, rng, number):
        if kind is None:
            self._emit(frame, now)
        elif kind == "flip":
            b = bytearray(frame)
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            self._emit(bytes(b), now)
        elif kind == "drop":
            k = rng.randrange(len(frame))
            n = rng.randint(1, 16)
            self._emit(frame[:k] + frame[k + n:], now)
        elif kind == "dup":
            self._emit(frame, now)
            self._emit(frame, now)
        elif kind == "truncate":
            self._emit(frame[:rng.randint(1, len(frame) - 1)], now)
        elif kind == "delay":
            spike = self.spec.delay_ms / 1000.0 * rng.uniform(0.5, 1.5)
            self.queue.append([now + spike, frame])
        elif kind in (RESET, DISCONNECT):
            self._emit(frame[:rng.randint(1, len(frame) - 1)], now)
            self._emit(kind, now)

    # -- output
    def pop(self, now=None):
        now = time.monotonic() if now is None else now
        out = []
        with self.lock:
            if self.held is not None and now - self.held[1] >= REORDER_HOLD:
                self._emit(self.held[0], now)
                self.held = None
            if self.buf and self.partial_since is not None and \
                    now - self.partial_since >= PARTIAL_STALE:
                self._emit(bytes(self.buf), now)       # a false sync or a cut frame: as is
                del self.buf[:]
                self.partial_since = None
            q = self.queue
            while q and q[0][0] <= now:
                item = q.popleft()[1]
                if out and isinstance(item, bytes) and isinstance(out[-1], bytes):
                    out[-1] += item
                else:
                    out.append(item)
        return out

    def pending(self):
        with self.lock:
            return bool(self.queue or self.held or self.buf)

    def clear(self):
        with self.lock:
            self.buf = bytearray()
            self.queue.clear()
            self.held = None
            self.partial_since = None
