"""host/convert.py as users run it: the original user's real model, and bad input."""
import json
import os

import pytest
from PIL import Image

from conftest import SEED_ARGS, assert_nothing_written, assert_one_line_error, run_tool
from host import manifest as manifest_mod


def test_seed_model_converts_with_high_fidelity(seed_build):
    out, proc = seed_build
    report = json.load(open(str(out / "convert_report.json")))
    assert report["quantization"]["mean_cos"] >= 0.999
    assert report["quantization"]["outputs"][0]["cos"] >= 0.999
    assert report["batchnorm"]["verdict"] == "ok"
    assert report["batchnorm"]["summary"]["fused_batch_norm_inference"] == 6
    assert report["k210_fit"]["cpu_compute_ops"] == []
    for text in ("BatchNorm: OK", "cos", "K210 fit", "kmodel V5", "Per-layer error"):
        assert text in proc.stdout
    # per-layer error: one row per conv block (the pooled output, the last block's activation)
    # and the output, whose diagnostic value matches the real kmodel's
    layers = report["layer_error"]["layers"]
    assert [r["op"] for r in layers] == ["MaxPool"] * 5 + ["Maximum", "BiasAdd"]
    assert [r["output"] for r in layers] == [False] * 6 + [True]
    assert abs(layers[-1]["cos"] - report["quantization"]["outputs"][0]["cos"]) < 0.001
    assert all(0.99 < r["cos"] <= 1.0 and r["float_min"] < r["p001"] < r["p999"]
               < r["float_max"] for r in layers)
    assert (out / "convert_report.html").is_file()


def test_seed_manifest_is_complete_and_verified(seed_build):
    out, _ = seed_build
    m = manifest_mod.load(str(out / "manifest.json"))
    assert m["kmodel"]["version"] == 5
    assert m["kmodel"]["sha256"] == manifest_mod.sha256_file(str(out / "model.kmodel"))
    assert m["input"]["height"] == 240 and m["input"]["width"] == 320
    assert m["outputs"][0]["shape_chw"] == [5, 7, 10]
    assert m["decoder"]["type"] == "grid" and m["decoder"]["threshold"] == 0.7
    assert m["flash"]["address"] == 0x300000
    assert m["flash"]["end"] == 0x300000 + m["kmodel"]["size"]
    assert not [n for n in os.listdir(str(out)) if n.startswith(".")]


def _images(directory, n, size=(320, 240)):
    os.makedirs(str(directory), exist_ok=True)
    for i in range(n):
        Image.new("RGB", size, (10 * i % 255, 80, 160)).save(str(directory / ("%02d.png" % i)))
    return directory


# Bad input (missing, corrupt, wrong options, calibration folders): tests/test_bad_inputs.py


def test_keras_h5_converts_in_inference_mode(tmp_path):
    import numpy as np
    from host.tf_infer import tf
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph).as_default():
        inp = tf.keras.Input((32, 48, 3))
        x = tf.keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inp)
        x = tf.keras.layers.BatchNormalization()(x)
        x = tf.keras.layers.LeakyReLU(0.1)(x)
        x = tf.keras.layers.Conv2D(5, 1)(tf.keras.layers.MaxPool2D()(x))
        model = tf.keras.Model(inp, x)
        model.compile("adam", "mse")
        rng = np.random.RandomState(0)
        model.fit(rng.rand(16, 32, 48, 3), rng.rand(16, 16, 24, 5), epochs=2, verbose=0)
        model.save(str(tmp_path / "tiny.h5"))
    out = tmp_path / "out"
    proc = run_tool("host/convert.py", "--keras-h5", tmp_path / "tiny.h5", "--input-size",
                    "32x48", "--calib-dir", _images(tmp_path / "calib", 16), "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.load(open(str(out / "convert_report.json")))
    assert report["batchnorm"]["summary"]["bn_layers"] == 1
    assert report["batchnorm"]["summary"]["fused_batch_norm_training"] == 0
    assert report["quantization"]["mean_cos"] > 0.99


@pytest.mark.skipif(not os.environ.get("NCC"), reason="no ncc binary here: set NCC=/path/to/ncc "
                    "(a kendryte/nncase v0.1 or v0.2 release binary) to run")
def test_ncc_builds_a_kmodel_stock_maixpy_loads(tmp_path):
    out = tmp_path / "out"
    proc = run_tool("host/convert.py", *(SEED_ARGS + ["--ncc", os.environ["NCC"],
                                                     "--firmware", "maixpy-v4", "--out", out]))
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = manifest_mod.load(str(out / "manifest.json"))
    assert m["kmodel"]["version"] in (3, 4) and m["firmware"] == "maixpy-v4"


def _keras_model(path, height, width, layers):
    from host.tf_infer import tf
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph).as_default():
        inp = tf.keras.Input((height, width, 3))
        x = inp
        for filters, kernel in layers:
            x = tf.keras.layers.Conv2D(filters, kernel, padding="same")(x)
        tf.keras.Model(inp, x).save(str(path))
    return path


@pytest.mark.parametrize("size, layers, expected", [
    ("32x48", [(8, 5), (4, 1)], "run on the K210 CPU, not the KPU"),
    ("320x240", [(4, 3)], "silently runs"),
])
def test_k210_fit_warnings_in_the_summary(tmp_path, size, layers, expected):
    h, w = [int(v) for v in size.split("x")]
    model = _keras_model(tmp_path / "m.h5", h, w, layers)
    proc = run_tool("host/convert.py", "--keras-h5", model, "--input-size", size,
                    "--calib-dir", _images(tmp_path / "calib", 16), "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-2000:]
    warnings = [l for l in proc.stdout.splitlines() if l.startswith("WARNING:")]
    assert any(expected in l for l in warnings), proc.stdout[-2000:]
    report = json.load(open(str(tmp_path / "out" / "convert_report.json")))
    assert any(expected in w for w in report["warnings"])


def test_model_too_large_for_kpu_ram_is_a_clear_error(tmp_path):
    # 64 channels of 128x256 need 2 MiB of KPU RAM for one feature map alone.
    model = _keras_model(tmp_path / "big.h5", 128, 256, [(64, 3), (4, 1)])
    out = tmp_path / "out"
    proc = run_tool("host/convert.py", "--keras-h5", model, "--input-size", "128x256",
                    "--calib-dir", _images(tmp_path / "calib", 16), "--out", out)
    assert_one_line_error(proc, "KPU")
    assert_nothing_written(out)


def test_calibrate_method_auto_keeps_the_lowest_l2r(tmp_path):
    model = _keras_model(tmp_path / "m.h5", 32, 48, [(8, 3), (5, 1)])
    out = tmp_path / "out"
    proc = run_tool("host/convert.py", "--keras-h5", model, "--input-size", "32x48",
                    "--calibrate-method", "auto", "--calib-dir",
                    _images(tmp_path / "calib", 16), "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    q = json.load(open(str(out / "convert_report.json")))["quantization"]
    methods = {c["calibrate_method"]: c["mean_l2r"] for c in q["candidates"]}
    assert set(methods) == {"no_clip", "l2", "kld_m2", "cdf"}
    assert q["calibrate_method"] == min(methods, key=methods.get)
    assert sorted(os.listdir(str(out))) == ["convert_report.html", "convert_report.json",
                                            "manifest.json",
                                            "model.kmodel", "model.pb", "model.tflite"]
