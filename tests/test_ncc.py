"""The older ncc binaries (v0.1 -> V3, v0.2 -> V4). The binary tests need a real ncc: they run
only when the environment variable NCC points to one (none is available on this machine)."""
import os

import numpy as np
import pytest

from host import kmodel, ncc
from host.errors import UserError
from test_nncase_stage import ZERO_ONE, random_u8, tiny_models

NCC = os.environ.get("NCC")
needs_ncc = pytest.mark.skipif(not NCC, reason="set NCC=/path/to/ncc (nncase v0.1.x or v0.2.0 "
                                               "release binary) to run the ncc tests")


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


def test_missing_binary_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("NCC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="no ncc binary.*--ncc PATH or set NCC"):
        ncc.find_ncc()
    with pytest.raises(UserError, match="not an executable file"):
        ncc.find_ncc(str(tmp_path / "ncc"))


@needs_ncc
def test_compile_with_real_ncc(tmp_path):
    version = ncc.detect_version(NCC)
    path = str(tmp_path / "small.kmodel")
    result = ncc.compile_kmodel(tiny_models()["small"], path, random_u8(4, 32, 32), ZERO_ONE,
                                ncc=NCC)
    assert result["version"] == ncc.KMODEL_VERSION[version] == kmodel.version_of(path)


@needs_ncc
def test_infer_with_real_ncc_v02(tmp_path):
    if ncc.detect_version(NCC) != "0.2":
        pytest.skip("ncc infer exists in v0.2 only")
    path = str(tmp_path / "small.kmodel")
    ncc.compile_kmodel(tiny_models()["small"], path, random_u8(4, 32, 32), ZERO_ONE, ncc=NCC)
    outputs = ncc.infer(path, random_u8(2, 32, 32, seed=5), ncc=NCC)
    assert len(outputs) == 2 and outputs[0][0].size == 4 * 16 * 16
    assert np.isfinite(outputs[0][0]).all()
