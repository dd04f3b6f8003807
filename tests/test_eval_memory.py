"""serial_eval's memory stays flat with the number of images (issue 14, item 3): the same run
on 100 and on 400 generated images peaks at the same resident memory, within a bound far
below what keeping the images, the board outputs or the records would add.

Real components: serial_eval as users run it, a virtual board in its own process (nncase's
simulator as its KPU), TensorFlow on the host; the tiny model of conftest's `tiny_build`
(16x16 input, 8x8x5 output: thousands of images cross the line in seconds).

Why the bound: before the streaming pipeline, serial_eval kept every image, every board
reply's output tensors (Python floats) and every record until the end; on this model that
grew its peak by 11.8 MB from 100 to 400 images (measured: 265.3 -> 277.1 MB, ~40 KB per
image). What it keeps now per image is a few numbers (record offset, chart values: < 100
bytes), so 300 more images may add at most a few hundred KB, plus allocator noise (the same
run varies by ~1-2 MB). 4 MB separates the two by a factor of three either way."""
import os
import sys

import pytest

import tiny_model
from conftest import REPO, provision_flashed_boards, tool_env

sys.path.insert(0, os.path.join(REPO, "bench"))
import long_eval  # noqa: E402  (bench/long_eval.py: the bench's peak-memory runner)

BAUD = 1500000
SIZES = (100, 400)
GROWTH_BOUND_MB = 4.0


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isfile("/proc/self/status"), reason="needs Linux /proc")
def test_peak_memory_does_not_grow_with_the_number_of_images(tiny_build, tmp_path):
    state = str(tmp_path / "vb")
    provision_flashed_boards(state, tiny_build, 1, BAUD, "tests/test_eval_memory.py")
    peaks = {}
    for n in SIZES:
        images = tiny_model.images(tmp_path / ("images-%d" % n), n, seed=n, smooth=False)
        out = tmp_path / ("out-%d" % n)
        log = str(tmp_path / ("serial_eval-%d.log" % n))
        code, _wall, peaks[n] = long_eval.run_measured(
            [sys.executable, os.path.join(REPO, "host", "serial_eval.py"), "--manifest",
             tiny_build.path, "--images", images, "--out", str(out), "--port", "virtual",
             "--vboard-state", state, "--baud", str(BAUD), "--no-progress", "--min-f1", "0",
             "--min-cos", "0"], log, env=tool_env(), timeout=600)
        with open(log) as f:
            text = f.read()
        if code != 0:       # the board's side too: vboard.log has its threads' stacks on stop
            vboard_log = os.path.join(state, "vboard.log")
            board = ""
            if os.path.isfile(vboard_log):
                with open(vboard_log) as f:
                    board = f.read()[-6000:]
            raise AssertionError("exit %d: %s\n--- vboard.log:\n%s" % (code, text[-3000:], board))
        assert len(os.listdir(str(out / "overlays"))) == n    # every image went all the way
        assert "serial_eval: %d image(s)" % n in text
    growth = peaks[SIZES[1]] - peaks[SIZES[0]]
    assert growth < GROWTH_BOUND_MB, "peak RSS %s MB: grows by %.1f MB from %d to %d images" % (
        peaks, growth, SIZES[0], SIZES[1])
