"""kflash 1.1.6 as a library: write a .kfpkg through the K210's ISP with progress bars.

`KFlash().process(terminal=False, ...)` (terminal=False: it would parse sys.argv); its log goes
through the class attribute `KFlash.print_callback` (the constructor's argument is ignored);
progress through `callback(name, done, total, speed)` into one tqdm bar per binary; its bare
`Exception`s become one-line UserErrors with what to do.

kflash 1.1.6 bug worked around here: when the stub answers a flash write (D4) with a checksum
error (E2), kflash logs "Data checksum error, retrying..." but then *skips* that chunk (its
retry loop falls through to `break`; up to 64 KiB) and goes on; it never reads back what it
wrote. The warning comes right before the progress report of the skipped chunk, so `flash()`
knows which bytes were lost and writes exactly those again in another kflash pass (a
.kfpkg of raw pieces at their flash addresses), up to `attempts` passes. The caller still
verifies the flash contents on the board.
"""
import os
import re
import time

from host import kfpkg
from host.errors import UserError

CHECKSUM_WARNING = "Data checksum error"
BOARDS = ("dan", "bit", "bit_mic", "kd233", "goE", "goD", "maixduino", "trainer")


class KflashRun(object):
    """What one kflash pass reported: log lines, checksum errors, and per binary
    (`files[name] = [bytes, seconds]`, "ISP" being the stub) the time from kflash's
    "Writing"/first progress to its last progress report."""

    def __init__(self):
        self.log = []
        self.checksum_errors = 0
        self.seconds = 0.0
        self.files = {}
        self.lost = []              # (binary name, start, end) skipped after a checksum error
        self._start = {}
        self._done = {}
        self._bad = False

    def rate(self, name):
        nbytes, seconds = self.files.get(name, (0, 0.0))
        return nbytes / seconds if seconds > 0 else 0.0


def _clean(text):
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    text = text.replace("[ERROR]", "").replace("[WARN]", "").replace("[INFO]", "")
    return " ".join(text.split())


def _advice(text, port, board, baud):
    low = text.lower()
    if "no valid kendryte k210" in low or "greeting" in low and "timeout" in low:
        return ("the board did not enter its ISP mode: check --board (how DTR/RTS reset it: "
                "dan, bit, kd233, goE, ...; now %s), close programs using %s, or hold BOOT "
                "while pressing RESET and retry" % (board, port))
    if "inappropriate ioctl" in low:
        return ("%s has no DTR/RTS lines (a pseudo-terminal?): kflash cannot reset the board "
                "into ISP mode through it" % port)
    if "stub" in low or "flashmode" in low or "write to k210" in low:
        return ("the flash stub stopped answering at %d baud: retry with --baud 115200 "
                "(a slower USB-serial bridge)" % baud)
    if "permission denied" in low:
        return "add your user to the port's group (e.g. `sudo usermod -aG dialout $USER`)"
    if "could not open port" in low or "no such file" in low:
        return "pass the board's serial device (python -m serial.tools.list_ports)"
    return "reset the board and retry (or --baud 115200)"


def _one_pass(port, kfpkg_path, board, baud, progress, slow):
    import kflash
    run = KflashRun()
    bars = {}

    def on_log(*args, **kwargs):
        text = _clean(" ".join(str(a) for a in args))
        if text and not text.startswith(("Downloading ISP:", "Programming BIN:")) \
                and set(text) - set(".-_*#="):
            run.log.append(text)
        if CHECKSUM_WARNING in text:
            run.checksum_errors += 1
            run._bad = True
        m = re.match(r"Writing (.+) into 0x[0-9a-fA-F]+$", text)
        if m:
            run._start[m.group(1)] = time.monotonic()
        elif text.startswith("Trying to Enter the ISP Mode") or \
                text.startswith("Greeting Message Detected"):
            run._start["ISP"] = time.monotonic()

    def on_progress(name, done, total, speed):
        start = run._start.setdefault(name, time.monotonic())
        run.files[name] = [done, time.monotonic() - start]
        before = run._done.get(name, 0)
        run._done[name] = done
        if run._bad and name != "ISP":
            run.lost.append((name, before, done))   # the chunk kflash skipped
        run._bad = False
        if not progress:
            return
        bar = bars.get(name)
        if bar is None:
            from tqdm import tqdm
            for other in bars.values():
                other.close()
            label = "kflash stub" if name == "ISP" else name
            bar = bars[name] = tqdm(total=total, desc="%-14s" % label[:14], unit="B",
                                    unit_scale=True, unit_divisor=1024, leave=True,
                                    dynamic_ncols=True)
        bar.update(max(0, done - bar.n))

    old = kflash.KFlash.print_callback
    kflash.KFlash.print_callback = staticmethod(on_log)
    t0 = time.monotonic()
    try:
        kflash.KFlash().process(terminal=False, dev=port, baudrate=baud, board=board,
                                file=kfpkg_path, callback=on_progress, noansi=True,
                                slow_mode=slow, io_mode="dio")
    except Exception as exc:     # kflash raises bare Exceptions (and pyserial's)
        text = _clean(str(exc)) or exc.__class__.__name__
        raise UserError("kflash could not flash the board on %s (board %s, %d baud): %s: %s"
                        % (port, board, baud, text[:200], _advice(text, port, board, baud)))
    finally:
        kflash.KFlash.print_callback = old
        for bar in bars.values():
            bar.close()
    run.seconds = time.monotonic() - t0
    return run


def flash(port, entries, workdir, board="dan", baud=1500000, progress=True, slow=False,
          attempts=5, say=None):
    """Write kfpkg.Entry list `entries`; returns the KflashRun passes (the last one clean).
    Pass 1 writes everything; later passes only the chunks kflash skipped."""
    if board not in BOARDS:
        raise UserError("unknown board %r: use one of %s" % (board, ", ".join(BOARDS)))
    runs = []
    todo = list(entries)
    for attempt in range(1, attempts + 1):
        path = os.path.join(workdir, "k210-deploy-%d.kfpkg" % attempt)
        kfpkg.build(path, todo)
        run = _one_pass(port, path, board, baud, progress, slow)
        runs.append(run)
        if not run.checksum_errors:
            return runs
        by_name = dict((e.name, e) for e in todo)
        lost = [r for r in run.lost if r[0] in by_name]
        if len(lost) != run.checksum_errors:
            todo = list(entries) if attempt == 1 else todo   # cannot place them: all again
        else:
            todo = []
            for name, start, end in lost:
                e = by_name[name]
                image = e.image()
                todo.append(kfpkg.Entry("%s@%X" % (name.split("@")[0], e.address + start),
                                        e.address + start, image[start:end]))
        if say is not None and attempt < attempts:
            say("kflash: the ISP stub reported %d checksum error(s) and kflash 1.1.6 skips "
                "such chunks: writing %s again (pass %d of at most %d)"
                % (run.checksum_errors, ", ".join("0x%X+%d" % (e.address, len(e.data))
                                                  for e in todo), attempt + 1, attempts))
    raise UserError("kflash met checksum errors in each of %d passes on %s (%d baud): the "
                    "line is unreliable; retry with --baud 115200 or another cable"
                    % (attempts, port, baud))
