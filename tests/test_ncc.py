"""The older ncc binaries (v0.1 -> V3, v0.2 -> V4) and `make ncc` (host/ncc_install.py).
The binary tests use the real ncc v0.2 at .venv/bin/ncc (`make ncc`), or $NCC."""
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, assert_one_line_error, tool_env
from host import kmodel, ncc, ncc_install
from host.errors import UserError
from test_nncase_stage import ZERO_ONE, cosine, random_u8, tiny_models

NCC = os.environ.get("NCC") or (ncc.VENV_NCC if os.path.isfile(ncc.VENV_NCC) else None)
needs_ncc = pytest.mark.skipif(not NCC, reason="no ncc binary: run `make ncc` (or set NCC)")


def test_scale_args_v02():
    assert ncc.scale_args(ZERO_ONE, "0.2") == ["--input-mean", "0.0", "--input-std", "1.0"]
    assert ncc.scale_args({"scale": "-1-1"}, "0.2") == ["--input-mean", "0.5", "--input-std", "0.5"]
    mean, std = ncc.scale_args({"scale": "0-255"}, "0.2")[1::2]
    assert float(mean) == 0.0 and abs(1.0 / float(std) - 255.0) < 1e-9
    args = ncc.scale_args({"scale": "mean-std", "mean": [0.5] * 3, "std": [0.25] * 3}, "0.2")
    assert args == ["--input-mean", "0.5", "--input-std", "0.25"]
    with pytest.raises(UserError, match="one mean and std for all channels"):
        ncc.scale_args({"scale": "mean-std", "mean": [0.5, 0.4, 0.3], "std": [0.2] * 3}, "0.2")


def test_scale_args_v01():
    assert ncc.scale_args(ZERO_ONE, "0.1") == []
    assert ncc.scale_args({"scale": "-1-1"}, "0.1") == ["--postprocess", "n1to1"]
    with pytest.raises(UserError, match="ncc v0.1 supports input scales 0-1 and -1-1 only"):
        ncc.scale_args({"scale": "0-255"}, "0.1")


def test_missing_binary_says_the_three_ways(tmp_path, monkeypatch):
    monkeypatch.delenv("NCC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(ncc, "VENV_NCC", str(tmp_path / "venv-ncc"))
    with pytest.raises(UserError, match="no ncc binary.*make ncc.*NCC=.*NCC_SRC=.*release.*"
                                        "--ncc PATH"):
        ncc.find_ncc()
    with pytest.raises(UserError, match="not an executable file"):
        ncc.find_ncc(str(tmp_path / "ncc"))


def _fake_binary(tmp_path, text):
    """A program that answers --help/--version like another ncc: bad input, not a stand-in
    (no other ncc version exists on this machine)."""
    path = tmp_path / "other-ncc"
    path.write_text("#!/bin/sh\necho '%s'\n" % text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_an_ncc_of_another_version_is_refused_with_its_version(tmp_path):
    other = _fake_binary(tmp_path, "nncase 1.9.0 version 1.9.0")
    with pytest.raises(UserError, match="is not nncase v0.1 or v0.2 .*says nncase 1.9.0"):
        ncc.detect_version(other)
    proc = subprocess.run([sys.executable, os.path.join(REPO, "host", "ncc_install.py"),
                           "--dest", str(tmp_path / "bin" / "ncc"), "--ncc", other],
                          env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60)
    assert_one_line_error(proc, "not nncase v0.1 or v0.2", "nncase 1.9.0")
    assert not (tmp_path / "bin" / "ncc").exists()


def test_failed_download_is_one_line_naming_the_other_ways(tmp_path):
    with pytest.raises(UserError, match="cannot download http://127.0.0.1:9/ncc.tar.xz.*"
                                        "NCC=.*NCC_SRC="):
        ncc_install.download(str(tmp_path), url="http://127.0.0.1:9/ncc.tar.xz")


def test_ncc_error_line_prefers_fatal():
    log = "1. Import graph...\nFatal: Unsupported tflite opcode: ELU\n"
    assert ncc.error_line(log) == "Fatal: Unsupported tflite opcode: ELU"


@needs_ncc
def test_make_ncc_does_nothing_when_the_binary_is_there(tmp_path):
    dest = tmp_path / "ncc"
    run = [sys.executable, os.path.join(REPO, "host", "ncc_install.py"), "--dest", str(dest)]
    first = subprocess.run(run + ["--ncc", NCC], env=tool_env(), stdout=subprocess.PIPE,
                           universal_newlines=True, timeout=60, check=True)
    assert "installed" in first.stdout and ncc.detect_version(str(dest)) == "0.2"
    again = subprocess.run(run + ["--src", str(tmp_path / "never-built")], env=tool_env(),
                           stdout=subprocess.PIPE, universal_newlines=True, timeout=60,
                           check=True)
    assert "nothing to do" in again.stdout


@needs_ncc
def test_make_ncc_from_a_source_folder_runs_its_build_script(tmp_path):
    """NCC_SRC=DIR: DIR/build.sh OUT_DIR is the interface (CI's source bundle, see .ci/run,
    builds from source there; this folder's script hands over the binary built before)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "build.sh").write_text('#!/bin/sh\nmkdir -p "$1" && cp "%s" "$1/ncc"\n' % NCC)
    dest = tmp_path / "bin" / "ncc"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "host", "ncc_install.py"),
                           "--dest", str(dest), "--src", str(src)], env=tool_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "building ncc with" in proc.stdout and ncc.detect_version(str(dest)) == "0.2"
    (src / "build.sh").write_text("#!/bin/sh\necho 'cmake: no compiler'; exit 3\n")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "host", "ncc_install.py"),
                           "--dest", str(tmp_path / "other" / "ncc"), "--src", str(src)],
                          env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    assert_one_line_error(proc, "build.sh failed (exit 3): cmake: no compiler")


@needs_ncc
def test_compile_with_real_ncc(tmp_path):
    version = ncc.detect_version(NCC)
    path = str(tmp_path / "small.kmodel")
    result = ncc.compile_kmodel(tiny_models()["small"], path, random_u8(4, 32, 32), ZERO_ONE,
                                ncc=NCC)
    assert result["version"] == ncc.KMODEL_VERSION[version] == kmodel.version_of(path)
    assert result["ncc"] == ncc.identity(NCC) and len(result["ncc"]["sha256"]) == 64
    if version == "0.2":
        assert result["summary"]["outputs"][0]["shape"][-2:] == [16, 16]


@needs_ncc
def test_infer_with_real_ncc_v02_matches_tensorflow(tmp_path):
    if ncc.detect_version(NCC) != "0.2":
        pytest.skip("ncc infer exists in v0.2 only")
    models = tiny_models()
    path = str(tmp_path / "small.kmodel")
    ncc.compile_kmodel(models["small"], path, random_u8(8, 32, 32), ZERO_ONE, ncc=NCC)
    inputs = np.load(os.path.join(models["DIR"], "small_in.npy"))
    reference = np.load(os.path.join(models["DIR"], "small_ref.npy"))
    outputs = ncc.infer(path, inputs.transpose(0, 3, 1, 2), ncc=NCC)
    assert len(outputs) == len(inputs) and outputs[0][0].size == 4 * 16 * 16
    for out, ref in zip(outputs, reference):
        assert cosine(out[0], ref.transpose(2, 0, 1)) > 0.99


@needs_ncc
@pytest.mark.parametrize("model, hw, expected", [
    ("elu", (32, 32), "Fatal: Not supported tflite opcode: ELU (replace that op"),
    ("kpu_overflow", (128, 256), "KPU allocator cannot allocate more memory. (the model does "
                                 "not fit the K210's 2 MiB KPU RAM"),
])
def test_ncc_failing_on_a_model_is_one_line_saying_why(tmp_path, model, hw, expected):
    with pytest.raises(UserError) as info:
        ncc.compile_kmodel(tiny_models()[model], str(tmp_path / "m.kmodel"),
                           random_u8(2, *hw), ZERO_ONE, ncc=NCC)
    message = str(info.value)
    assert "ncc failed compiling" in message and "\n" not in message
    assert expected in message, message
