"""`utime` / `time`: ticks since boot, sleeps, `clock()`.

sipeed/MaixPy-v1 components/micropython/port/src/standard_lib/utime/modutime.c (the same file
in kendryte/canmv): MicroPython's extmod/utime_mphal.c ticks and sleeps plus MaixPy's clock.
"""
import time as _time

from host.vboard.shims.base import new_module

# extmod/utime_mphal.h: MICROPY_PY_UTIME_TICKS_PERIOD = MP_SMALL_INT_POSITIVE_MASK + 1, and
# a small int has 63 bits on the K210's 64-bit RISC-V: ticks wrap at 2**62
TICKS_PERIOD = 1 << 62
_EPOCH_2000 = 946684800     # MicroPython's time() counts from 2000-01-01


class _Clock:
    """modutime.c: py_time_clock (tick / fps / avg / reset frame timing)."""

    def __init__(self):
        self._t0 = _time.monotonic()
        self._dt = 0.0

    def tick(self):
        self._t0 = _time.monotonic()

    def avg(self):
        self._dt = (_time.monotonic() - self._t0) * 1000.0
        return self._dt

    def fps(self):
        dt = _time.monotonic() - self._t0
        return 1.0 / dt if dt > 0 else 0.0


def build(board):
    def since_boot():
        return _time.monotonic() - board.boot_time

    # extmod/utime_mphal.c: time_ticks_ms / ticks_us / ticks_diff / ticks_add / sleep*
    def ticks_ms():
        return int(since_boot() * 1000) % TICKS_PERIOD

    def ticks_us():
        return int(since_boot() * 1000000) % TICKS_PERIOD

    def ticks_diff(end, start):
        d = (end - start) % TICKS_PERIOD
        return d - TICKS_PERIOD if d >= TICKS_PERIOD // 2 else d

    def ticks_add(t, delta):
        return (t + delta) % TICKS_PERIOD

    def sleep(seconds):
        _time.sleep(seconds)

    def sleep_ms(ms):
        _time.sleep(ms / 1000.0)

    def sleep_us(us):
        _time.sleep(us / 1000000.0)

    def now():
        # modutime.c: time_time (seconds since 2000-01-01; the board's RTC)
        return int(_time.time()) - _EPOCH_2000

    def localtime(secs=None):
        # modutime.c: time_localtime
        t = _time.gmtime((now() if secs is None else secs) + _EPOCH_2000)
        return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, t.tm_wday,
                t.tm_yday)

    return new_module("utime", ticks_ms=ticks_ms, ticks_us=ticks_us, ticks_cpu=ticks_us,
                      ticks_diff=ticks_diff, ticks_add=ticks_add, sleep=sleep,
                      sleep_ms=sleep_ms, sleep_us=sleep_us, time=now, localtime=localtime,
                      clock=_Clock)
