import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The original user's frozen face detector, shipped in the repo (examples/seed-face/README.md).
SEED_PB = os.path.join(REPO, "examples", "seed-face", "Freeze_save.pb")
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
