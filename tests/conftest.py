import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The original user's frozen face detector, shipped in the repo (examples/seed-face/README.md).
SEED_PB = os.path.join(REPO, "examples", "seed-face", "Freeze_save.pb")
# docs/convert.md's command for it
SEED_ARGS = ["--frozen-pb", SEED_PB, "--input-node", "Input_image", "--output-node",
             "Yolo/Final/conv2d/BiasAdd", "--input-size", "240x320", "--decoder", "grid",
             "--threshold", "0.7"]
VENV_BIN = os.path.dirname(sys.executable)
sys.path.insert(0, os.path.join(REPO, "tests"))


def tool_env():
    env = dict(os.environ)
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")  # toco_from_protos
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONPATH"] = REPO
    return env


def run_tool(script, *args, timeout=900, cwd=REPO):
    """Run one of the user scripts (host/convert.py, ...) as a user would."""
    return subprocess.run([sys.executable, os.path.join(REPO, script)] + [str(a) for a in args],
                          cwd=cwd, env=tool_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)


def assert_one_line_error(proc, *fragments, code=2):
    """Exit code, a single `error:` line on stderr naming the fragments, no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def assert_nothing_written(out_dir):
    leftovers = os.listdir(str(out_dir)) if os.path.isdir(str(out_dir)) else []
    assert leftovers == [], leftovers


@pytest.fixture(scope="session")
def repo():
    return REPO


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory):
    """host/convert.py on a tiny real model (tests/tiny_model.py, 16x16 -> 8x8x5, grid
    decoder): manifest, kmodel, frozen graph. Built once per session; ~10 s."""
    import tiny_model
    from host import manifest as manifest_mod
    path = tiny_model.build(tmp_path_factory.mktemp("tiny"), REPO, tool_env())
    return manifest_mod.load(path)


@pytest.fixture(scope="session")
def seed_build(tmp_path_factory):
    """The original user's model converted as in docs/convert.md (grid decoder, threshold
    0.7, per-layer error on): the build directory and convert.py's run. Built once per
    session for the tests that check the conversion, flash or evaluate it (read only: never
    modify its files)."""
    out = tmp_path_factory.mktemp("seed") / "build"
    proc = run_tool("host/convert.py", *(SEED_ARGS + ["--out", out]))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out, proc


@pytest.fixture(scope="session")
def seed_manifest(seed_build):
    """seed_build's manifest."""
    from host import manifest as manifest_mod
    return manifest_mod.load(str(seed_build[0] / "manifest.json"))


@pytest.fixture(scope="session")
def example_build(tmp_path_factory):
    """`make kmodel` as the README's first step runs it, on the shipped example: the build
    directory and make's stdout. Built once per session (read only)."""
    import subprocess
    build = tmp_path_factory.mktemp("example") / "build"
    # -o: the .venv running these tests is the one make would set up
    proc = subprocess.run(["make", "-s", "-o", ".venv/.installed", "kmodel",
                           "BUILD=%s" % build], cwd=REPO,
                          env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return build, proc.stdout


# fields of serial_eval's per-image records that differ between runs by nature: board
# timings, memory, which board ran it
VOLATILE = {"board_port", "kpu_ms", "prep_ms", "decode_ms", "mem_free"}


def strip_volatile(obj):
    """A report (or part of one) without the VOLATILE fields, for run-to-run comparison."""
    if isinstance(obj, dict):
        return {k: strip_volatile(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [strip_volatile(v) for v in obj]
    return obj


@pytest.fixture
def vboard_repl(tmp_path):
    """(handle, serial port, raw REPL): a canmv-v5 virtual board with an empty /flash, its
    raw REPL entered over its pty."""
    import serial
    from host.rawrepl import RawRepl
    from host.vboard.launcher import start_board
    with start_board(str(tmp_path / "state"), log_rate=0) as handle:
        with serial.Serial(handle.port, 115200, timeout=0.2) as ser:
            repl = RawRepl(ser)
            repl.enter()
            yield handle, ser, repl


def provision_flashed_boards(state, manifest, n, baud, by, **config):
    """n virtual boards (state dirs as serial_eval's virtual:n names them) flashed with this
    build, serving at `baud`, with a 100 ms boot grace period (a reset costs a reboot);
    `config`: more devconfig.device_config settings (e.g. read_buf_len)."""
    from host import devconfig, transport
    from host.vboard import launcher
    cfg = devconfig.device_config(manifest, baud=baud, grace_ms=100, **config)
    for k in range(n):
        d = transport.vboard_state_dir(state, k)
        transport.provision_virtual(d, manifest, baud)
        launcher.provision(d, files={"config.json": devconfig.to_json(cfg).encode()})
        launcher.mark_flashed(d, {"by": by})


def serve_mode_board(tmp_path, data, width, height, output_shapes, firmware, version=5):
    """A board state with the repo's device/ scripts in serve mode (300 ms grace) and the
    kmodel `data` (kmodel `version`) as a file: returns (state dir, the board's config, a raw
    RGB565 test image of width x height). `output_shapes`: the kmodel's outputs as [C, H, W]
    lists."""
    import hashlib
    import numpy as np
    from host import devconfig
    from host.vboard.launcher import provision
    manifest = {"kmodel": {"path": "m.kmodel", "size": len(data), "version": version,
                           "sha256": hashlib.sha256(data).hexdigest()},
                "flash": {"address": 0x300000},
                "input": {"width": width, "height": height, "channels": 3},
                "outputs": [{"node": "out%d" % k, "shape_chw": list(shape)}
                            for k, shape in enumerate(output_shapes)],
                "decoder": {"type": "raw"}, "firmware": firmware}
    cfg = devconfig.device_config(manifest, model_source="file", grace_ms=300)
    state = str(tmp_path / "state")
    provision(state, os.path.join(REPO, "device"),
              {"config.json": devconfig.to_json(cfg).encode(), "m.kmodel": data})
    pixels = ((np.arange(height * width, dtype=np.uint32) * 257) & 0xFFFF).astype(">u2")
    return state, cfg, pixels.tobytes()
