"""Runs device code on the board's own interpreter (MicroPython 1.11, 32-bit floats, built by
`make micropython`) in batches: one interpreter process per batch, the cases as JSON on
stdin, one JSON line of results on stdout. The conformance tests (tests/test_mpy_*.py) compare
each result with the host's CPython import of the same device/ files.

On the interpreter's path: device/ (flat, as on the board's /flash) and tests/mpy_standins/
(the K210 firmware modules, written for MicroPython; tests/mpy_standins/README.md)."""
import json
import os
import struct
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICROPYTHON = os.path.join(REPO, ".venv", "bin", "micropython")
MPY_DIR = os.path.join(REPO, "tests", "mpy")
STANDINS = os.path.join(REPO, "tests", "mpy_standins")
DEVICE = os.path.join(REPO, "device")

# MaixPy-v1's MicroPython GC heap: CONFIG_MAIXPY_GC_HEAP_SIZE = 0x80000 in every
# projects/*/config_*.mk, malloc'ed and handed to gc_init() by maixpy_main.c.
MAIXPY_GC_HEAP = 0x80000

needs_micropython = pytest.mark.skipif(
    not os.access(MICROPYTHON, os.X_OK),
    reason="no .venv/bin/micropython (MicroPython 1.11 float32): run `make micropython`")


# A batch's JSON (in and out) lives in the interpreter's heap: room for it, except in the
# memory tests, which pass the board's heap.
BATCH_HEAP = 64 << 20


def run(script, cases, heapsize=BATCH_HEAP, timeout=120, cwd=REPO, output=False):
    """Run tests/mpy/SCRIPT on the float32 interpreter with `cases` (JSON-able) on stdin;
    returns the decoded JSON of the last stdout line (output=True: and the lines before it).
    Fails the test with the interpreter's output when it exits non-zero or prints no JSON."""
    cmd = [MICROPYTHON, "-X", "heapsize=%d" % heapsize]
    cmd.append(os.path.join(MPY_DIR, script))
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join([DEVICE, STANDINS, MPY_DIR])
    proc = subprocess.run(cmd, input=json.dumps(cases).encode(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, timeout=timeout, cwd=str(cwd))
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0 or not out.strip():
        pytest.fail("micropython %s exited %d:\n%s\n%s" % (script, proc.returncode, out[-3000:],
                                                        proc.stderr.decode()[-3000:]))
    lines = out.strip().splitlines()
    result = json.loads(lines[-1])
    return (result, lines[:-1]) if output else result


def f32_hex(values):
    """float32 little-endian bytes of `values` as hex: how tensors cross to the interpreter
    without going through its (float32, not correctly rounded) decimal parser."""
    return struct.pack("<%df" % len(values), *values).hex()


def f32_values(values):
    """The float32 values of `values`, as Python floats (what the board's tensors hold)."""
    return list(struct.unpack("<%df" % len(values), struct.pack("<%df" % len(values), *values)))
