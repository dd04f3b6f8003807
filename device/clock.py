# Millisecond ticks of the board's clock (utime). MicroPython 1.11 dialect.
try:
    import utime as time
except ImportError:  # pragma: no cover - the board always has utime
    import time


def ticks():
    return time.ticks_ms()


def since(t0):
    return time.ticks_diff(time.ticks_ms(), t0)
