"""The matrix of TF1 BatchNorm APIs x training recipes x model sources (docs/convert.md "BatchNorm").

Every cell is a real network (tests/bn_apis.py: 8x8 input, two conv+BN layers) trained for a
few steps in this process, then frozen and judged by the code `host/convert.py` runs before
quantising (pipeline.freeze_model + pipeline.batchnorm_check, options parsed by convert's own
parser). Right recipes must freeze to a graph that reproduces the trained model in inference
mode; broken ones must be refused with the cause and the fix for their API.
"""
import os
import shutil

import numpy as np
import pytest

import bn_apis
from conftest import assert_one_line_error, run_tool
from host import bncheck, convert, pipeline
from host.errors import UserError
from host.tf_infer import FrozenRunner

MODEL_FN = os.path.join(os.path.dirname(os.path.abspath(bn_apis.__file__)), "bn_apis.py") + ":net"
SIZE = "%dx%d" % bn_apis.SIZE
# (API, how training passes is_training): every API, each slim option and every flag kind.
VARIANTS = (("layers", "default"), ("slim", "python"), ("slim", "placeholder"),
            ("slim_unfused", "placeholder"), ("slim_inplace", "placeholder"),
            ("slim_inplace_unfused", "python"), ("keras", "default"), ("keras", "python"),
            ("nn_ema", "placeholder"), ("nn_ema_inplace", "python"))
# What the refusal of statistics that never moved must tell users of each API to do.
UPDATE_OPS_FIX = "tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS))"
NEVER_UPDATED_FIX = {"layers": UPDATE_OPS_FIX, "slim": UPDATE_OPS_FIX,
                     "slim_unfused": UPDATE_OPS_FIX, "keras": "model.updates",
                     "nn_ema": "ema.apply([mean, variance])"}
SAVER_FIX = ("trainable variables only", "tf.train.Saver(tf.global_variables())")


def _recipes(api):
    # In-place updates (updates_collections=None) run whenever training runs: no recipe
    # can skip them.
    return ("good", "trainable_only") if "inplace" in api else \
        ("good", "no_updates", "trainable_only")


def _batch_stats_fragments(api, flag):
    """The refusal of a graph that computes BatchNorm from batch statistics."""
    if flag == "default":
        return ("training_control", "defaulting to True", "--training-placeholder")
    if flag == "placeholder":
        return ("bool placeholder is_training", "--training-placeholder")
    if "unfused" in api or api.startswith("nn_ema"):
        return ("tf.nn.moments", "--checkpoint --model-fn")
    return ("FusedBatchNorm is_training=true", "--checkpoint --model-fn")


def _cells():
    """(api, flag, recipe, source, expected): expected is "ok" or the refusal's fragments."""
    cells = []
    for api, flag in VARIANTS:
        for recipe in _recipes(api):
            expected = {"good": "ok", "no_updates": ("initial", NEVER_UPDATED_FIX.get(api)),
                        "trainable_only": SAVER_FIX}[recipe]
            cells.append((api, flag, recipe, "checkpoint", expected))
            if flag != "python":
                cells.append((api, flag, recipe, "meta", expected))
            elif recipe == "good":  # the meta graph of a training graph built with True
                cells.append((api, flag, recipe, "meta", _batch_stats_fragments(api, flag)))
        # the training graph frozen as is
        cells.append((api, flag, "good", "frozen_pb", _batch_stats_fragments(api, flag)))
    return cells


CELLS = _cells()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("bn_matrix")
    return {(api, flag, recipe): bn_apis.train(str(base / ("%s-%s-%s" % (api, flag, recipe))),
                                               api, flag, recipe)
            for api, flag in VARIANTS for recipe in _recipes(api)}


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    from PIL import Image
    d = tmp_path_factory.mktemp("bn_calib")
    for i, img in enumerate(bn_apis.data(16, seed=9)):
        Image.fromarray((img * 255).astype(np.uint8)).save(str(d / ("%02d.png" % i)))
    return str(d)


def source_args(run, api, source):
    if source == "checkpoint":
        return ["--checkpoint", run["checkpoint"], "--model-fn", MODEL_FN,
                "--model-kwargs", '{"api": "%s"}' % api]
    if source == "meta":  # input node and training placeholder guessed
        return ["--meta", run["checkpoint"] + ".meta", "--output-node", "output"]
    return ["--frozen-pb", run["training_pb"], "--input-node", "Input_image"]


def judge(args, calib):
    """What `host/convert.py ARGS` decides before quantising: (frozen, batchnorm) or the
    refusal's text."""
    opts = convert.options(args + ["--input-size", SIZE, "--calib-dir", calib, "--out", "-"])
    opts.input_hw = bn_apis.SIZE
    sample = (bn_apis.data(8, seed=5) * 255).astype(np.uint8)
    scale = {"scale": "0-1", "mean": opts.mean, "std": opts.std}
    try:
        frozen = pipeline.freeze_model(opts)
        return frozen, pipeline.batchnorm_check(frozen, sample, scale, opts, print)
    except UserError as exc:
        return None, str(exc)


def assert_reproduces(frozen, expected):
    ops = {n.op for n in frozen.graph_def.node}
    assert not ops & {"Switch", "Merge", "PlaceholderWithDefault"}, ops
    assert not any(op.startswith(("Assign", "Variable")) for op in ops), ops
    out = FrozenRunner(frozen.graph_def, frozen.input_node, frozen.output_nodes).run(
        bn_apis.data(4, seed=7))[0]
    assert np.max(np.abs(out - expected)) <= 1e-5


@pytest.mark.parametrize("api, flag, recipe, source, expected", CELLS,
                         ids=["-".join(c[:4]) for c in CELLS])
def test_cell(trained, calib, api, flag, recipe, source, expected):
    run = trained[api, flag, recipe]
    frozen, verdict = judge(source_args(run, api, source), calib)
    if expected == "ok":
        assert frozen is not None, verdict
        assert verdict["verdict"] == "ok", verdict
        assert verdict["summary"]["frozen_vs_checkpoint_max_abs"] <= 1e-5
        assert verdict["summary"]["bn_layers"] == 2
        assert_reproduces(frozen, run["expected"])
    else:
        assert frozen is None and verdict.startswith("BatchNorm check failed"), verdict
        for fragment in expected:
            assert fragment in verdict, (fragment, verdict)
        assert "bn0" in verdict or "is_training" in verdict or "training_control" in verdict
        if recipe == "no_updates":  # that API's fix, and no other API's
            fixes = [fix for fix in bncheck.FIX_NEVER_UPDATED.values() if fix in verdict]
            assert len(fixes) == 1, verdict


@pytest.mark.parametrize("recipe", ["good", "no_updates"])
def test_keras_model_saved_as_h5(tmp_path, calib, recipe):
    """The Keras API's own source: a tf.keras Model trained by a TF1 loop, saved as .h5."""
    run = bn_apis.train_keras_h5(str(tmp_path), recipe)
    frozen, verdict = judge(["--keras-h5", run["h5"]], calib)
    if recipe == "good":
        assert frozen is not None and verdict["verdict"] == "ok", verdict
        assert_reproduces(frozen, run["expected"])
    else:
        assert frozen is None and "initial 0/1" in verdict and "model.updates" in verdict, verdict


# ---------------------------------------------------------------- training-graph patterns

@pytest.fixture(scope="module")
def weight_ema(tmp_path_factory):
    """tf.layers BN trained with an ExponentialMovingAverage of the weights, saved with it."""
    run = bn_apis.train(str(tmp_path_factory.mktemp("ema")), "layers", "default", "good",
                        weight_ema=True)
    run["raw"] = bn_apis.run_inference(run["checkpoint"], "layers")
    assert np.max(np.abs(run["raw"] - run["expected"])) > 1e-3  # the averages do differ
    return run


@pytest.mark.parametrize("source", ["checkpoint", "meta"])
def test_ema_restores_the_shadow_weights_and_says_so(weight_ema, calib, source):
    args = source_args(weight_ema, "layers", source)
    frozen, verdict = judge(args + ["--ema"], calib)
    assert frozen is not None, verdict
    assert_reproduces(frozen, weight_ema["expected"])
    assert any("ExponentialMovingAverage shadows of 8 variable(s) were used" in n
               for n in verdict["notes"]), verdict["notes"]
    frozen, verdict = judge(args, calib)  # without --ema: the raw weights, and a hint
    assert_reproduces(frozen, weight_ema["raw"])
    assert any("pass --ema" in n for n in verdict["notes"]), verdict["notes"]


def test_ema_without_shadows_is_refused(trained, calib):
    frozen, verdict = judge(source_args(trained["layers", "default", "good"], "layers",
                                        "checkpoint") + ["--ema"], calib)
    assert frozen is None and "--ema" in verdict and "drop --ema" in verdict


def test_checkpoint_directory_written_on_another_machine(trained, calib, tmp_path):
    """A `checkpoint` file naming absolute paths of the training machine, as TF writes it."""
    run = trained["slim", "placeholder", "good"]
    moved = tmp_path / "ckpt"
    shutil.copytree(os.path.dirname(run["checkpoint"]), str(moved))
    for named in ("/home/trainer/run7/model.ckpt", "D:\\\\train\\\\run7\\\\model.ckpt"):
        (moved / "checkpoint").write_text('model_checkpoint_path: "%s"\n'
                                          'all_model_checkpoint_paths: "%s"\n' % (named, named))
        _assert_directory_converts(moved, run["expected"], calib)


def _assert_directory_converts(moved, expected, calib):
    for args in (["--checkpoint", str(moved), "--model-fn", MODEL_FN,
                  "--model-kwargs", '{"api": "slim"}'],
                 ["--meta", str(moved / "model.ckpt.meta"), "--checkpoint", str(moved),
                  "--output-node", "output"]):
        frozen, verdict = judge(args, calib)
        assert frozen is not None, verdict
        assert_reproduces(frozen, expected)


def test_training_placeholders_guessed_and_said(trained, calib):
    frozen, verdict = judge(source_args(trained["slim", "placeholder", "good"], "slim", "meta"),
                            calib)
    assert frozen.input_node == "Input_image"
    assert any("training placeholder is_training (guessed" in n for n in verdict["notes"])


# ---------------------------------------------------------------- as a user runs it

def test_keras_refusal_through_convert_names_model_updates(trained, calib, tmp_path):
    out = tmp_path / "out"
    proc = run_tool("host/convert.py", *source_args(trained["keras", "default", "no_updates"],
                                                   "keras", "meta"),
                    "--input-size", SIZE, "--calib-dir", calib, "--out", out)
    line = assert_one_line_error(proc, "bn0", "initial 0/1", "model.updates")
    assert "UPDATE_OPS)" not in line  # not the recipe the user already follows
    assert not os.path.exists(str(out))


@pytest.mark.slow
def test_slim_in_place_updates_convert_to_a_kmodel(trained, calib, tmp_path):
    """The issue's crash: slim.batch_norm(updates_collections=None) through --meta."""
    out = tmp_path / "out"
    proc = run_tool("host/convert.py", *source_args(
        trained["slim_inplace", "placeholder", "good"], "slim_inplace", "meta"),
        "--input-size", SIZE, "--calib-dir", calib, "--min-calib", 8, "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "BatchNorm: OK" in proc.stdout and "placeholder is_training (guessed" in proc.stdout
    assert os.path.isfile(str(out / "model.kmodel"))
