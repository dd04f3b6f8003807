"""The virtual line never beats physics (host/vboard/uart.py LinePacer): a chunk arrives no
sooner than its line time after its bytes were ready, and no window of >= 10 ms receives
more than baud/10 bytes per second."""
import random
import time

import pytest
import serial

from host.rawrepl import RawRepl
from host.vboard.launcher import start_board
from host.vboard.uart import HISTORY, WINDOW, LinePacer, bytes_per_second, chunk_size

pytestmark = pytest.mark.timeout(120)


def _send(pattern, baud, seed=0):
    """Chunks sent by `pattern` ('bursts': idle gaps of 0-3 ms between single chunks,
    'stream': back to back, 'late': back to back with 0-3 ms late wake-ups inside the
    waits); returns [(ready, delivered, nbytes)]."""
    rnd = random.Random(seed)
    pacer = LinePacer()
    step = chunk_size(baud)
    out = []

    def late_sleep(seconds):
        time.sleep(seconds + rnd.uniform(0, 0.003))

    for _ in range(120):
        if pattern == "bursts":
            time.sleep(rnd.uniform(0, 0.003))
        n = rnd.randint(step // 3, step)
        ready = time.monotonic()
        pacer.wait_sent(n, baud, ready, late_sleep if pattern == "late" else time.sleep)
        out.append((ready, time.monotonic(), n))
    return out


@pytest.mark.parametrize("pattern", ["bursts", "stream", "late"])
@pytest.mark.parametrize("baud", [115200, 1500000])
def test_no_chunk_beats_its_line_time_and_no_window_beats_the_line_rate(pattern, baud):
    rate = bytes_per_second(baud)
    sent = _send(pattern, baud)
    for ready, delivered, n in sent:
        assert delivered - ready >= n / rate - 1e-6
    # every window (t_j, t_k] of >= WINDOW up to HISTORY: the bytes delivered in it
    for j in range(len(sent)):
        total = 0
        for k in range(j + 1, len(sent)):
            total += sent[k][2]
            span = sent[k][1] - sent[j][1]
            if span > HISTORY:
                break
            assert total <= rate * max(WINDOW, span) + 1e-6, (pattern, j, k, total, span)


def test_a_busy_line_never_beats_its_rate_overall():
    """How close to the rate a busy line gets is the bench's link efficiency (make bench),
    not a test's: under load it is lower, never higher than 1."""
    baud = 1500000
    sent = _send("stream", baud)
    total = sum(n for _, _, n in sent)
    seconds = sent[-1][1] - sent[0][0]
    assert 0 < total / seconds / bytes_per_second(baud) <= 1.0


def test_host_to_board_bytes_arrive_at_the_line_rate_over_the_pty(tmp_path):
    """8 KB written at once by the host at 115200 baud reach the board's UART no faster than
    the line: the board's script sees them complete after >= their line time."""
    baud, n = 115200, 8000
    with start_board(str(tmp_path / "state"), log_rate=0) as handle:
        with serial.Serial(handle.port, baud, timeout=0.2) as ser:
            repl = RawRepl(ser)
            repl.enter()
            code = ("import machine, utime\nu = machine.UART.repl_uart()\n"
                    "u.init(115200, 8, None, 1, read_buf_len=16384)\nprint('ready')\n"
                    "while not u.any():\n    utime.sleep_ms(1)\n"
                    "t0 = utime.ticks_ms()\ngot = 0\n"
                    "while got < %d:\n    b = u.read(4096)\n    got += len(b) if b else 0\n"
                    "print(got, utime.ticks_diff(utime.ticks_ms(), t0))\n" % n)
            # the bytes go out once the script owns the UART (its "ready"), not after a sleep
            repl.exec_started(code)
            repl.read_until(b"ready\r\n", timeout=30)
            ser.write(b"x" * n)
            out, err = repl.exec_finish(timeout=30)
    assert not err, err
    got, ms = (int(v) for v in out.split())
    line_ms = (n - chunk_size(baud)) / bytes_per_second(baud) * 1000.0
    assert got == n and ms >= line_ms * 0.99


def test_a_baud_change_does_not_judge_old_bytes_at_the_new_rate():
    """After 0.1 s at 1.5 Mbaud, the first chunk at 115200 takes its own line time, not the
    old bytes' time at the new rate."""
    pacer = LinePacer()
    for _ in range(20):
        pacer.wait_sent(chunk_size(1500000), 1500000)
    t0 = time.monotonic()
    pacer.wait_sent(10, 115200)
    assert time.monotonic() - t0 < 0.05
