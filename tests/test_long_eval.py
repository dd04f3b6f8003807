"""Long evaluations: the journal (OUT/journal.jsonl), interruption by SIGINT / SIGTERM /
SIGKILL at random points, `--resume`, and no child process outliving serial_eval.

Real components throughout: serial_eval as users run it, virtual boards in their own
processes (their KPU workers running nncase's simulator), TensorFlow on the host; the tiny
model of conftest's `tiny_build`."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

import tiny_model
from conftest import (REPO, assert_one_line_error, provision_flashed_boards, run_tool,
                      strip_volatile, tool_env)
from host import eval_inputs, journal
from host.errors import UserError

N_IMAGES = 40
BAUD = 1500000


# ------------------------------------------------------------------ the journal itself
def _image(tmp_path):
    path = tiny_model.images(tmp_path / "one", 1, seed=1)
    return eval_inputs.prepare(os.path.join(path, "00000.png"), 16, 16, "rgb565")


RESULT = {"image_id": 1, "outputs": [{"shape": (5, 8, 8), "data": [0.5] * 320}],
          "boxes": [(0.1, 0.2, 0.3, 0.4, 0.9, 0)], "kpu_ms": 1, "decode_ms": 0, "prep_ms": 0,
          "input_crc": 7, "pixel_crc": 8, "crc_source": 1, "flags": 0, "mem_free": 0}


def test_journal_drops_a_torn_last_line_and_refuses_another_kmodel(tmp_path):
    img = _image(tmp_path)
    out = str(tmp_path / "out")
    j = journal.Journal(out, "aa" * 32, "rgb565", {"threshold": 0.5}, resume=False)
    j.append(img, "virtual", RESULT)
    j.close()
    with open(j.path, "ab") as f:
        f.write(b'{"image": "b.png", "kmodel_sha2')          # power lost mid-line
    j = journal.Journal(out, "aa" * 32, "rgb565", {"threshold": 0.5}, resume=True)
    assert j.torn == 1
    port, result = j.result_for(img)
    assert port == "virtual" and result == RESULT            # tuples as the session gives them
    j.close()
    with open(j.path, "rb") as f:
        data = f.read()
    assert data.count(b"\n") == 1 and data.endswith(b"}\n")   # cut back to the whole line
    # the same image under another payload or decoder is not reused
    j = journal.Journal(out, "aa" * 32, "jpeg", {"threshold": 0.5}, resume=True)
    assert j.result_for(img) is None
    j.close()
    # a journal of another kmodel is refused, naming both hashes
    with pytest.raises(UserError, match=r"kmodel sha256 aaaaaaaaaaaa\.\.\., this manifest's is "
                                        r"bbbbbbbbbbbb"):
        journal.Journal(out, "bb" * 32, "rgb565", {"threshold": 0.5}, resume=True)
    # without --resume a run starts a new journal with its first result
    j = journal.Journal(out, "bb" * 32, "rgb565", {"threshold": 0.5}, resume=False)
    assert os.path.getsize(j.path) > 0
    j.append(img, "virtual", RESULT)
    j.close()
    with open(j.path, "rb") as f:
        lines = f.read().splitlines()
    assert len(lines) == 1 and json.loads(lines[0].decode())["kmodel_sha256"] == "bb" * 32


# ------------------------------------------------------------------ serial_eval, interrupted
def _argv(manifest, images, out, state, n_boards, *extra):
    return [sys.executable, os.path.join(REPO, "host", "serial_eval.py"),
            "--manifest", manifest.path, "--images", images, "--out", str(out),
            "--port", "virtual:%d" % n_boards, "--vboard-state", state, "--baud", str(BAUD),
            "--no-progress", "--min-f1", "0", "--min-cos", "0"] + list(extra)


def _report(out):
    with open(os.path.join(str(out), "report.json")) as f:
        return json.load(f)


def _journal_lines(out):
    try:
        with open(os.path.join(str(out), journal.NAME), "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return 0


def _children(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry))
    return kids


def _alive(pid):
    """Running (a zombie, which an orphan's reaper has not collected yet, has ended)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _descendants(pid):
    found, todo = [], [pid]
    while todo:
        for kid in _children(todo.pop()):
            found.append(kid)
            todo.append(kid)
    return found


def _interrupt(argv, out, how, after):
    """Start serial_eval, send `how` once `after` results are journalled; -> (returncode,
    stderr, pids of every process it had started)."""
    # as from a terminal: a job started in the background (e.g. `make test &`) inherits
    # SIGINT ignored, and Python then leaves it ignored
    proc = subprocess.Popen(argv, cwd=REPO, env=tool_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    kids = []
    while _journal_lines(out) < after:
        assert proc.poll() is None, "serial_eval ended early: %s" % (proc.communicate(),)
        assert time.monotonic() < deadline, "no %d results within 240 s" % after
        kids = _descendants(proc.pid) or kids
        time.sleep(0.05)
    kids = _descendants(proc.pid) or kids
    proc.send_signal(how)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err, kids


def _assert_no_survivors(pids):
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in pids):
        assert time.monotonic() < deadline, "still running: %s" % [
            open("/proc/%d/cmdline" % p).read().replace("\0", " ") for p in pids if _alive(p)]
        time.sleep(0.05)


@pytest.fixture(scope="module")
def eval_images(tmp_path_factory):
    return tiny_model.images(tmp_path_factory.mktemp("images"), N_IMAGES, seed=23, smooth=False)


@pytest.fixture(scope="module")
def reference(tiny_build, eval_images, tmp_path_factory):
    """The same images, uninterrupted, on one board."""
    d = tmp_path_factory.mktemp("reference")
    provision_flashed_boards(str(d / "vb"), tiny_build, 1, BAUD, "tests/test_long_eval.py")
    proc = subprocess.run(_argv(tiny_build, eval_images, d / "out", str(d / "vb"), 1),
                          cwd=REPO, env=tool_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = _report(d / "out")
    assert report["summary"]["images"] == N_IMAGES and report["summary"]["failed"] == 0
    assert _journal_lines(d / "out") == N_IMAGES
    return report


@pytest.mark.slow
@pytest.mark.parametrize("how, n_boards, seed", [
    (signal.SIGINT, 1, 1), (signal.SIGTERM, 2, 2), (signal.SIGKILL, 1, 3),
    (signal.SIGKILL, 2, 4)])
def test_interrupted_then_resumed_equals_an_uninterrupted_run(tiny_build, eval_images,
                                                              reference, tmp_path, how,
                                                              n_boards, seed):
    after = random.Random(seed).randint(2, N_IMAGES - 10)
    state, out = str(tmp_path / "vb"), tmp_path / "out"
    provision_flashed_boards(state, tiny_build, n_boards, BAUD, "tests/test_long_eval.py")
    argv = _argv(tiny_build, eval_images, out, state, n_boards)
    code, err, started = _interrupt(argv, out, how, after)

    # every process serial_eval started (boards, their KPU workers) ends with it
    assert len(started) >= 2 * n_boards, started
    _assert_no_survivors(started)
    done = _journal_lines(out)
    assert done >= after
    if how == signal.SIGKILL:
        assert code == -signal.SIGKILL
        with open(os.path.join(str(out), journal.NAME), "ab") as f:
            f.write(b'{"image": "torn')                    # as if killed mid-write
    else:
        assert code == 130, err
        assert "Traceback" not in err
        lines = err.strip().splitlines()
        assert lines[-1].startswith("interrupted: partial report of ") and "--resume" in \
            lines[-1], err
        partial = _report(out)
        assert partial["run"]["partial"] and partial["run"]["images_total"] == N_IMAGES
        with open(os.path.join(str(out), "report.html")) as f:
            assert "PARTIAL</b>: interrupted after %d of %d" % (done, N_IMAGES) in f.read()
        n = partial["summary"]["images"]
        assert n == done and partial["summary"]["failed"] == 0
        by_name = {r["name"]: r for r in reference["images"]}
        assert all(strip_volatile(r) == strip_volatile(by_name[r["name"]])
                   for r in partial["images"])

    proc = run_tool("host/serial_eval.py", *argv[2:] + ["--resume"], timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "resume: %d of %d image(s)" % (done, N_IMAGES) in proc.stdout
    if how == signal.SIGKILL:
        assert "a torn last line was dropped" in proc.stdout
    final = _report(out)
    assert final["run"]["resumed"] == done and not final["run"]["partial"]
    with open(os.path.join(str(out), "report.html")) as f:
        page = f.read()
    assert "Resumed: %d image(s)" % done in page and "PARTIAL" not in page
    assert _journal_lines(out) == N_IMAGES
    assert strip_volatile(final["images"]) == strip_volatile(reference["images"])
    assert strip_volatile(final["summary"]) == strip_volatile(reference["summary"])


@pytest.mark.slow
def test_resume_refuses_a_journal_of_another_manifest(tiny_build, eval_images, reference,
                                                      tmp_path):
    out = tmp_path / "out"
    os.makedirs(str(out))
    entry = {"image": "000.png", "image_sha256": "0" * 64, "kmodel_sha256": "f" * 64,
             "payload": "rgb565", "decoder": {}, "board_port": "virtual", "result": {}}
    with open(str(out / journal.NAME), "w") as f:
        f.write(json.dumps(entry) + "\n")
    proc = run_tool("host/serial_eval.py", *_argv(tiny_build, eval_images, out,
                                                  str(tmp_path / "vb"), 1)[2:] + ["--resume"])
    assert_one_line_error(proc, "journal.jsonl was written for kmodel sha256 ffffffffffff",
                          "--resume")
    assert not os.path.exists(str(out / "report.json"))


@pytest.mark.slow
def test_an_image_unreadable_when_its_turn_comes_ends_the_run_in_one_line(tiny_build, tmp_path):
    """Images are prepared as the boards ask for them (flat memory): a PNG whose header reads
    but whose pixels are cut short passes the up-front check and fails when its turn comes:
    one line naming it, exit 2, no report; --resume once it is removed finishes the rest."""
    images = tiny_model.images(tmp_path / "images", 6, seed=4)
    bad = os.path.join(images, "00003.png")
    with open(bad, "rb") as f:
        data = f.read()
    with open(bad, "wb") as f:
        f.write(data[:len(data) // 2])
    state, out = str(tmp_path / "vb"), tmp_path / "out"
    provision_flashed_boards(state, tiny_build, 1, BAUD, "tests/test_long_eval.py")
    argv = _argv(tiny_build, images, out, state, 1)
    proc = run_tool("host/serial_eval.py", *argv[2:], timeout=300)
    assert_one_line_error(proc, "cannot read image", "00003.png")
    assert "board virtual" in proc.stdout          # found during the run, not up front
    assert not os.path.exists(str(out / "report.json"))
    os.remove(bad)
    proc = run_tool("host/serial_eval.py", *argv[2:] + ["--resume"], timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert _report(out)["summary"]["images"] == 5
