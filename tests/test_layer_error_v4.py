"""Per-layer error for kmodel V4 (`--ncc` + `--ncc-layer-error`): one ncc v0.2 compile per
layer boundary (ncc crashes on a tflite with several outputs), compared with float TF."""
import json
import os

import pytest

import tiny_model
from conftest import REPO, run_tool

NCC = os.path.join(REPO, ".venv", "bin", "ncc")


@pytest.mark.skipif(not os.path.isfile(NCC), reason="no .venv/bin/ncc (make ncc builds it)")
def test_v4_per_layer_error_on_the_tiny_model(tiny_build, tmp_path):
    out = tmp_path / "out"
    proc = run_tool("host/convert.py", "--frozen-pb", os.path.join(tiny_build.directory,
                                                                   "model.pb"),
                    "--input-size", "%dx%d" % (tiny_model.H, tiny_model.W), "--output-node",
                    tiny_model.OUTPUT, "--calib-dir",
                    tiny_model.images(tmp_path / "calib", 16, seed=11),
                    "--firmware", "maixpy-v4", "--ncc", NCC, "--ncc-layer-error", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(str(out / "convert_report.json")) as f:
        report = json.load(f)
    layers = report["layer_error"]
    assert layers["compiler"] == "ncc (V4)"
    assert [(r["op"], r["output"]) for r in layers["layers"]] == [("MaxPool", False),
                                                                  ("Identity", True)]
    assert all(r["cos"] > 0.99 for r in layers["layers"])
    assert "Per-layer error (ncc (V4), one ncc compile per layer boundary" in proc.stdout
