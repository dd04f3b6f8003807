"""`make kmodel`, the README's first step, on the shipped example."""
import json
import os

import numpy as np
import pytest

from conftest import REPO, run_tool
from host import manifest as manifest_mod
from host.tf_infer import FrozenRunner, load_graph_def


@pytest.mark.slow
def test_make_kmodel_builds_the_example(example_build, tmp_path):
    build, stdout = example_build
    assert sorted(os.listdir(str(build))) == ["convert_report.html", "convert_report.json",
                                              "manifest.json",
                                              "model.kmodel", "model.pb", "model.tflite"]
    m = manifest_mod.load(str(build / "manifest.json"))
    assert m["kmodel"]["version"] == 5
    assert m["kmodel"]["sha256"] == manifest_mod.sha256_file(str(build / "model.kmodel"))
    with open(os.path.join(REPO, "examples", "face", "convert.json")) as f:
        example = json.load(f)
    assert m["decoder"]["anchors"] == example["anchors"]  # no number typed twice
    assert m["decoder"]["threshold"] == example["threshold"]
    report = json.load(open(str(build / "convert_report.json")))
    assert report["batchnorm"]["verdict"] == "ok"
    assert report["batchnorm"]["summary"]["bn_layers"] == 6
    assert report["quantization"]["mean_cos"] >= 0.999
    assert report["quantization"]["detection"]["f1"] >= 0.95
    assert report["k210_fit"]["fits_heap"] and report["k210_fit"]["cpu_compute_ops"] == []
    for text in ("BatchNorm: OK", "yolo/output", "K210 fit (canmv-v5)", "kmodel V5 written",
                 "Per-layer error"):
        assert text in stdout
    layers = report["layer_error"]["layers"]
    assert len(layers) == 7 and layers[-1]["node"] == "yolo/output" and layers[-1]["output"]
    assert all(r["cos"] > 0.99 for r in layers)

    # The same training run frozen from its meta graph (training_control bound to False)
    # must compute the same inference graph (nncase itself is not bit-deterministic, so the
    # frozen graphs are compared, not the kmodels).
    meta = tmp_path / "meta"
    proc = run_tool("host/convert.py", "--config", os.path.join(REPO, "examples", "face",
                                                                "convert.json"),
                    "--checkpoint", "", "--model-fn", "",
                    "--meta", os.path.join(REPO, "examples", "face", "checkpoint",
                                           "model.ckpt.meta"),
                    "--training-placeholder", "training_control", "--input-node", "batch_image",
                    "--no-layer-error", "--out", meta)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "training placeholder training_control bound to False" in proc.stdout
    x = np.random.RandomState(0).rand(2, 224, 320, 3).astype(np.float32)
    from_meta = FrozenRunner(load_graph_def(str(meta / "model.pb")), "batch_image",
                             ["yolo/output"]).run(x)[0]
    from_ckpt = FrozenRunner(load_graph_def(str(build / "model.pb")), "Input_image",
                             ["yolo/output"]).run(x)[0]
    assert np.max(np.abs(from_meta - from_ckpt)) <= 1e-5
