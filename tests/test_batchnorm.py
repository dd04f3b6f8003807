"""The BatchNorm traps of the background story, each made for real with a small network."""
import os

import numpy as np
import pytest

import bn_models
from conftest import assert_nothing_written, assert_one_line_error, run_tool
from host import bncheck, freeze
from host.tf_infer import FrozenRunner

SIZE = "%dx%d" % bn_models.SIZE
MODEL_FN = os.path.join(os.path.dirname(os.path.abspath(bn_models.__file__)), "bn_models.py") \
    + ":tiny_net"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Checkpoints trained the right way and the two wrong ways, plus frozen training graphs."""
    base = tmp_path_factory.mktemp("bn")
    runs = {name: bn_models.train(str(base / name), **kwargs) for name, kwargs in (
        ("good", {}), ("no_update_ops", {"update_ops": False}),
        ("trainable_only", {"saver": "trainable"}))}
    runs["training_pb"] = str(base / "training_mode.pb")
    bn_models.freeze_training_graph_as_is(runs["good"], runs["training_pb"])
    runs["placeholder_pb"] = str(base / "training_save.pb")
    bn_models.freeze_with_training_placeholder(runs["good"], runs["placeholder_pb"])
    return runs


def test_right_recipe_freezes_in_inference_mode(trained):
    frozen = freeze.from_checkpoint(trained["good"], MODEL_FN, {}, "Input_image", [],
                                    bn_models.SIZE)
    assert frozen.findings == []
    assert frozen.bn_summary["bn_layers"] == 2
    findings, summary = bncheck.check_graph_def(frozen.graph_def)
    assert findings == [] and summary["fused_batch_norm_inference"] == 2
    x = bn_models.data(4, seed=3)
    out = FrozenRunner(frozen.graph_def, "Input_image", ["output"]).run(x)[0]
    assert np.max(np.abs(out - bn_models.run_checkpoint(trained["good"], x, False))) <= 1e-5
    # Training mode really differs: this is what the check protects against.
    assert np.max(np.abs(out - bn_models.run_checkpoint(trained["good"], x, True))) > 1e-2


def test_meta_graph_with_training_control_true_is_frozen_in_inference_mode(trained):
    frozen = freeze.from_meta(trained["good"] + ".meta", "training_control", "Input_image",
                              ["output"], bn_models.SIZE)
    freeze.set_input_shape(frozen.graph_def, "Input_image", bn_models.SIZE)
    ops = {n.op for n in frozen.graph_def.node}
    assert not ops & {"Switch", "Merge", "PlaceholderWithDefault"}, ops
    assert bncheck.check_graph_def(frozen.graph_def)[0] == []
    x = bn_models.data(4, seed=4)
    out = FrozenRunner(frozen.graph_def, "Input_image", ["output"]).run(x)[0]
    assert np.max(np.abs(out - bn_models.run_checkpoint(trained["good"], x, False))) <= 1e-5


def _calib(tmp_path, n=16):
    from PIL import Image
    d = tmp_path / "calib"
    d.mkdir()
    for i, img in enumerate(bn_models.data(n, seed=9)):
        Image.fromarray((img * 255).astype(np.uint8)).save(str(d / ("%02d.png" % i)))
    return d


def test_no_update_ops_is_refused_naming_layers_and_fix(trained, tmp_path):
    out = tmp_path / "out"
    proc = run_tool("host/convert.py", "--checkpoint", trained["no_update_ops"], "--model-fn",
                    MODEL_FN, "--input-size", SIZE, "--calib-dir", _calib(tmp_path), "--out", out)
    assert_one_line_error(proc, "bn0", "bn1", "initial 0/1", "UPDATE_OPS", "--allow-bn-risk")
    assert_nothing_written(out)


def test_trainable_only_saver_is_refused(trained, tmp_path):
    out = tmp_path / "out"
    proc = run_tool("host/convert.py", "--checkpoint", trained["trainable_only"], "--model-fn",
                    MODEL_FN, "--input-size", SIZE, "--calib-dir", _calib(tmp_path), "--out", out)
    assert_one_line_error(proc, "bn0", "trainable variables only",
                          "tf.train.Saver(tf.global_variables())")
    assert_nothing_written(out)


@pytest.mark.parametrize("which, fragments", [
    ("training_pb", ("bn0/FusedBatchNormV3", "batch statistics", "is_training=False")),
    ("placeholder_pb", ("training_control", "defaulting to True", "--training-placeholder")),
])
def test_training_graph_frozen_as_is_is_refused(trained, tmp_path, which, fragments):
    out = tmp_path / "out"
    proc = run_tool("host/convert.py", "--frozen-pb", trained[which], "--input-size", SIZE,
                    "--calib-dir", _calib(tmp_path), "--out", out)
    assert_one_line_error(proc, *fragments)
    assert_nothing_written(out)


def test_frozen_graph_that_differs_from_checkpoint_is_refused():
    a = np.zeros((1, 2, 2, 3), np.float32)
    findings, summary = bncheck.check_reproduction([a + 2e-5], [a])
    assert findings and "max abs diff" in findings[0].message
    assert bncheck.check_reproduction([a + 5e-6], [a])[0] == []


@pytest.mark.slow
def test_meta_graph_converts_to_kmodel_and_allow_bn_risk_warns(trained, tmp_path):
    calib = _calib(tmp_path)
    out = tmp_path / "meta"
    proc = run_tool("host/convert.py", "--meta", trained["good"] + ".meta",
                    "--training-placeholder", "training_control", "--input-node", "Input_image",
                    "--output-node", "output", "--input-size", SIZE, "--calib-dir", calib,
                    "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "BatchNorm: OK" in proc.stdout
    assert {"model.pb", "model.tflite", "model.kmodel", "manifest.json",
            "convert_report.json"} <= set(os.listdir(str(out)))
    risky = tmp_path / "risky"
    proc = run_tool("host/convert.py", "--checkpoint", trained["no_update_ops"], "--model-fn",
                    MODEL_FN, "--input-size", SIZE, "--calib-dir", calib, "--allow-bn-risk",
                    "--out", risky)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WARNING: BatchNorm risk accepted" in proc.stdout and "initial 0/1" in proc.stdout
    assert os.path.isfile(str(risky / "model.kmodel"))
