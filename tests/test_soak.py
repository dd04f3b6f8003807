"""Soak: `serial_eval` over virtual boards whose line injects every fault kind
(host/vboard/faults.py: bit flips, dropped bytes, duplicated and reordered frames, truncated
frames, delay spikes, board resets mid-frame, port disconnects) at >= 1 % of frames each,
against a fault-free run of the same images on the same tiny real model (nncase simulator
as the KPU, TensorFlow on the host). No silent corruption: every image is accounted for and
its record (output tensors bit for bit, CRCs, boxes, metrics) equals the fault-free run's.
The faulty run sends rgb565z (deflated segments inflated on the board; a 2 KiB UART ring, so
chunks of 472 bytes and each 16x16 image's 512 bytes in two segments), the fault-free run plain
rgb565: the same pixels, so the same records.

CI runs >= 2,000 frames (SOAK_FRAMES, default 2000); `make soak` runs 20,000."""
import json
import os
import shutil

import pytest

import tiny_model
from conftest import provision_flashed_boards, run_tool, strip_volatile
from host.vboard import faults as faults_mod

FRAMES = int(os.environ.get("SOAK_FRAMES", "2000"))
BOARDS = 2
BAUD = 3000000
# per kind; resets and disconnects (each costs a reboot or a reopen) a little rarer.
# period 400: every 400 frames exactly 8 of each cheap kind and 5 resets and disconnects, so
# each kind stays >= 1 % of the frames of every board (once it has seen 400).
SPEC = ("flip=0.02,drop=0.02,dup=0.02,reorder=0.02,truncate=0.02,delay=0.02,"
        "reset=0.0125,disconnect=0.0125,period=400,delay_ms=100,disconnect_ms=100")
ZRING = 2048      # the faulty run's read_buf_len
# every image costs at least 4 frames (IMAGE_BEGIN, IMAGE_DATA, ACK, RESULT)
IMAGES = FRAMES // 4 + 10

# a guard against a hang, not a speed check (the CI soak takes ~1-2 min on an idle 2-core
# machine, several times that on a loaded one); make soak in proportion
pytestmark = [pytest.mark.slow,
              pytest.mark.timeout(max(600, FRAMES // 10), func_only=True)]


def _eval(manifest, images, out, state, *extra):
    proc = run_tool("host/serial_eval.py", "--manifest", manifest.path, "--images", images,
                    "--out", out, "--port", "virtual:%d" % BOARDS, "--vboard-state", state,
                    "--baud", BAUD, "--no-progress", "--timeout", "20", *extra, timeout=900)
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(os.path.join(str(out), "report.json")) as f:
        return json.load(f), proc


def test_soak_every_fault_kind_nothing_lost_nothing_wrong(tiny_build, tmp_path):
    images = tiny_model.images(tmp_path / "images", IMAGES, seed=17, smooth=False)
    clean_state = str(tmp_path / "clean")
    provision_flashed_boards(clean_state, tiny_build, BOARDS, BAUD, "tests/test_soak.py")
    clean, _ = _eval(tiny_build, images, tmp_path / "clean-out", clean_state,
                     "--payload", "rgb565")
    assert clean["summary"]["failed"] == 0

    state = str(tmp_path / "faulty")
    provision_flashed_boards(state, tiny_build, BOARDS, BAUD, "tests/test_soak.py",
                             read_buf_len=ZRING)
    faulty, proc = _eval(tiny_build, images, tmp_path / "faulty-out", state,
                         "--vboard-faults", SPEC, "--vboard-seed", "7", "--retries", "20",
                         "--payload", "rgb565z")
    assert [b["payload"] for b in clean["boards"]] == ["rgb565"] * BOARDS
    assert [b["payload"] for b in faulty["boards"]] == ["rgb565z"] * BOARDS
    assert all(b["info"]["chunk"] < 2 * 16 * 16 for b in faulty["boards"])   # 2 segments

    # the faults happened, at >= 1 % of all frames for every kind
    counts = [b["faults"] for b in faulty["boards"]]
    frames = sum(c["frames"] for c in counts)
    per_kind = {k: sum(c["faults"][k] for c in counts) for k in faults_mod.KINDS}
    assert frames >= FRAMES, (frames, per_kind)
    for kind, n in per_kind.items():
        assert n >= 0.01 * frames, "%s hit %d of %d frames" % (kind, n, frames)
    recovery = {k: sum(b["recovery"][k] for b in faulty["boards"])
                for k in faulty["boards"][0]["recovery"]}
    assert recovery["resent_images"] > 0 and recovery["board_restarts"] > 0
    assert recovery["port_reopens"] > 0 and recovery["nacks"] > 0

    # every image accounted for, none failed (20 attempts each at most), and each record -
    # output tensors (crc32 of the exact float32 bytes), input and pixel CRCs, boxes,
    # metrics, matches - equals the fault-free run's
    assert faulty["summary"]["images"] == IMAGES
    assert [r["name"] for r in faulty["images"]] == [r["name"] for r in clean["images"]]
    assert faulty["summary"]["failed"] == 0, faulty["summary"]["failures"][:3]
    differ = [c["name"] for c, f in zip(clean["images"], faulty["images"])
              if strip_volatile(c) != strip_volatile(f)]
    assert differ == [], "records differ from the fault-free run: %s" % differ[:5]
    for rec in faulty["images"]:
        assert rec["crc"]["pixel_equal"] and rec["crc"]["input_equal"]
    assert strip_volatile(faulty["summary"]) == strip_volatile(clean["summary"])
    assert faulty["verdict"] == clean["verdict"]

    # the figures, for docs/reliability.md ("What happens when things go wrong")
    figures = {"frames": frames, "faults": per_kind, "images": IMAGES, "boards": BOARDS,
               "recovery": recovery, "spec": SPEC,
               "wall_seconds": faulty["link"]["wall_seconds"],
               "clean_wall_seconds": clean["link"]["wall_seconds"]}
    print("SOAK " + json.dumps(figures, sort_keys=True))
    out = os.environ.get("SOAK_FIGURES")
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            json.dump(figures, f, indent=1, sort_keys=True)
    shutil.rmtree(str(tmp_path / "images"), ignore_errors=True)


@pytest.mark.parametrize("fault", ["disconnect@1", "reset@2", "disconnect@2,reset@4"])
def test_faults_during_bring_up(tiny_build, tmp_path, fault):
    """The port vanishes under the first HELLO, or the board resets under its first INFO
    (then both): serial_eval still reaches serve mode and verifies every image."""
    images = tiny_model.images(tmp_path / "images", 6, seed=5, smooth=False)
    state = str(tmp_path / "vb")
    provision_flashed_boards(state, tiny_build, 1, BAUD, "tests/test_soak.py")
    proc = run_tool("host/serial_eval.py", "--manifest", tiny_build.path, "--images", images,
                    "--out", tmp_path / "out", "--vboard-state", state, "--baud", BAUD,
                    "--no-progress", "--min-f1", "0", "--min-cos", "0",
                    "--vboard-faults", fault, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(str(tmp_path / "out" / "report.json")) as f:
        report = json.load(f)
    assert report["summary"]["images"] == 6 and report["summary"]["failed"] == 0
    board = report["boards"][0]
    kinds = [e[2] for e in board["faults"]["events"]]
    assert sorted(kinds) == sorted(k.split("@")[0] for k in fault.split(","))
    if "disconnect" in fault:
        assert board["recovery"]["port_reopens"] >= 1
