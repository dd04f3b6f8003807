"""The small example models beside the face detector (examples/mnist, shapes, segnet): their
committed data, checkpoints and quoted accuracies, one training step, `make EXAMPLE=`, and
(slow) their conversion to a kmodel."""
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES_DIR = os.path.join(REPO, "examples")
for _p in (REPO, EXAMPLES_DIR):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import kit  # noqa: E402
from host import bncheck, freeze  # noqa: E402

EXAMPLES = ("mnist", "shapes", "segnet")
MODULES = ("dataset", "model", "evaluate", "train")
# Each example's headline metric in eval_result.json, and the README's words for it.
HEADLINE = {"mnist": ("top1_accuracy", "top-1 accuracy"),
            "shapes": ("top1_accuracy", "top-1 accuracy"),
            "segnet": ("pixel_accuracy", "pixel accuracy")}
TOLERANCE = 0.02  # float TF on another CPU may flip an image or a pixel


def load_example(name):
    """The example's modules (dataset, model, evaluate, train) as its own scripts import
    them (by plain name from its folder); other examples' and the face test's modules of the
    same names are put back afterwards."""
    directory = os.path.join(EXAMPLES_DIR, name)
    saved = {m: sys.modules.pop(m) for m in MODULES if m in sys.modules}
    sys.path.insert(0, directory)
    try:
        return {m: importlib.import_module(m) for m in MODULES}
    finally:
        sys.path.remove(directory)
        for m in MODULES:
            sys.modules.pop(m, None)
        sys.modules.update(saved)


@pytest.fixture(scope="module", params=EXAMPLES)
def example(request):
    name = request.param
    directory = os.path.join(EXAMPLES_DIR, name)
    with open(os.path.join(directory, "convert.json")) as f:
        config = json.load(f)
    with open(os.path.join(directory, "eval_result.json")) as f:
        result = json.load(f)
    return dict(load_example(name), name=name, dir=directory, config=config, result=result)


def _path(example, key):
    return os.path.join(example["dir"], example["config"][key])


def _checkpoint(example):
    """The checkpoint prefix: convert.json's, or beside its training meta graph."""
    config = example["config"]
    if "meta" in config:
        return _path(example, "meta")[:-len(".meta")]
    return _path(example, "checkpoint")


def test_checkpoint_freezes_in_inference_mode_with_trained_statistics(example):
    config = example["config"]
    hw = tuple(int(v) for v in config["input_size"].split("x"))
    if "meta" in config:    # the converter's --meta path, training placeholder bound False
        frozen = freeze.from_meta(_path(example, "meta"), config["training_placeholder"],
                                  config["input_node"], [config["output_node"]], hw)
    else:
        saved = list(sys.path)  # load_model_fn puts the model's folder first on sys.path:
        try:                    # keep other tests' `import model` theirs
            frozen = freeze.from_checkpoint(_checkpoint(example), _path(example, "model_fn"),
                                            {}, config["input_node"], [config["output_node"]],
                                            hw)
        finally:
            sys.path[:] = saved
    findings, _ = bncheck.check_graph_def(frozen.graph_def)
    assert findings == [] and frozen.findings == []
    fused = [n for n in frozen.graph_def.node if n.op.startswith("FusedBatchNorm")]
    stats = kit.bn_moving_statistics(_checkpoint(example))
    assert fused and len(stats) == 2 * len(fused)
    assert all(not n.attr["is_training"].b for n in fused)
    for name, value in stats.items():  # trained, not the initial 0 / 1
        initial = 0.0 if name.endswith("moving_mean") else 1.0
        assert np.max(np.abs(value - initial)) > 1e-3, name


def test_float_accuracy_is_what_the_readme_says(example):
    key, words = HEADLINE[example["name"]]
    measured = example["evaluate"].measure()[key]
    quoted = example["result"][key]
    assert measured == pytest.approx(quoted, abs=TOLERANCE)
    with open(os.path.join(example["dir"], "README.md")) as f:
        readme = f.read()
    assert "%s %.3f" % (words, quoted) in readme


def test_committed_eval_and_calib_images_come_from_the_generator(example):
    eval_dir = os.path.join(example["dir"], "eval")
    names = sorted(n for n in os.listdir(eval_dir) if n.endswith(".png"))
    generated = example["train"].eval_set()
    assert len(generated) == len(names) >= 40
    labels = example["config"]["labels"]
    if example["name"] == "segnet":
        truth = None
    else:   # serial_eval --eval-labels: image name -> class name
        truth = kit.read_eval_labels(example["evaluate"].EVAL_LABELS)
        assert sorted(truth) == names and set(truth.values()) == set(labels)
    for i in (0, len(names) - 1):
        image, target = generated[i]
        assert np.array_equal(kit.read_png(os.path.join(eval_dir, names[i])), image)
        if truth is None:
            mask = kit.read_png(os.path.join(eval_dir, example["evaluate"].MASKS, names[i]))
            assert np.array_equal(mask, target)
        else:
            assert truth[names[i]] == labels[target]
    calib = os.listdir(_path(example, "calib_dir"))
    assert len([n for n in calib if n.endswith(".png")]) >= 30


def test_one_training_step_updates_and_saves_the_batchnorm_statistics(example, tmp_path):
    images, targets = example["train"].training_data(4)
    sess, saver, _ = kit.train(example["train"].MODEL_FN, images, targets,
                               example["train"].LOSS, steps=1, batch=4, log_every=1)
    try:
        kit.save_checkpoint(sess, saver, str(tmp_path / "checkpoint"))
    finally:
        sess.close()
    stats = kit.bn_moving_statistics(str(tmp_path / "checkpoint" / kit.CHECKPOINT_NAME))
    means = [v for name, v in stats.items() if name.endswith("moving_mean")]
    # the UPDATE_OPS ran with the step (a mean left at its initial 0 was never updated)
    assert len(means) == len(stats) // 2 > 0 and all(np.any(m != 0) for m in means)


# ------------------------------------------------------------------ make EXAMPLE=

def _make_n(*args):
    return subprocess.run(["make", "-n", "--no-print-directory", "-o", ".venv/.installed"] +
                          list(args), cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)


@pytest.mark.parametrize("name", EXAMPLES)
def test_make_demo_example_uses_its_own_folders(name):
    out = _make_n("demo", "EXAMPLE=" + name)
    assert out.returncode == 0, out.stderr
    assert "--config examples/%s/convert.json --out build/%s " % (name, name) in out.stdout
    assert "--images examples/%s/eval --vboard-state build/%s/vboard" % (name, name) \
        in out.stdout
    assert "--manifest build/%s/manifest.json" % name in out.stdout
    # a classifier's image classes go to serial_eval (accuracy of board and host)
    assert ("--eval-labels examples/%s/eval_labels.json" % name in out.stdout) == \
        (name != "segnet")


def test_make_face_example_keeps_build():
    out = _make_n("demo")
    assert "--config examples/face/convert.json --out build " in out.stdout
    assert "--images examples/face/eval --vboard-state build/vboard" in out.stdout
    assert "--eval-labels" not in out.stdout


def test_make_unknown_example_is_one_line_naming_the_examples():
    out = _make_n("kmodel", "EXAMPLE=nosuch")
    assert out.returncode != 0 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "EXAMPLE=nosuch is not an example" in lines[0]
    for name in ("face",) + EXAMPLES:
        assert name in lines[0]


# ------------------------------------------------------------------ conversion (slow)

@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_converts_to_a_faithful_kmodel(name, tmp_path):
    env = dict(os.environ, PATH=os.path.join(REPO, ".venv", "bin") + os.pathsep
               + os.environ.get("PATH", ""))
    out = subprocess.run([sys.executable, "host/convert.py", "--config",
                          "examples/%s/convert.json" % name, "--out", str(tmp_path),
                          "--no-layer-error"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:]
    with open(os.path.join(str(tmp_path), "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["kmodel"]["version"] == 5
    with open(os.path.join(str(tmp_path), "convert_report.json")) as f:
        report = json.load(f)
    assert report["quantization"]["mean_cos"] >= 0.995


def test_a_grayscale_model_fn_freezes_with_a_one_channel_input():
    """--model-fn builds the input placeholder itself: --input-channels 1 makes it 1-channel,
    and mnist's checkpoint frozen that way computes what its meta graph computes."""
    d = os.path.join(REPO, "examples", "mnist")
    with open(os.path.join(d, "convert.json")) as f:
        config = json.load(f)
    hw = tuple(int(v) for v in config["input_size"].split("x"))
    prefix = os.path.join(d, "checkpoint", "model.ckpt")
    saved = list(sys.path)
    try:
        frozen = freeze.from_checkpoint(prefix, os.path.join(d, "model.py") + ":mnist_net", {},
                                        "Input_image", [config["output_node"]], hw, channels=1)
    finally:
        sys.path[:] = saved
    via_meta = freeze.from_meta(prefix + ".meta", config["training_placeholder"],
                                config["input_node"], [config["output_node"]], hw)
    image = np.random.RandomState(0).uniform(0, 1, (1,) + hw + (1,)).astype(np.float32)
    got, want = frozen.reference(image)[0], via_meta.reference(image)[0]
    assert np.asarray(got).shape == np.asarray(want).shape
    np.testing.assert_allclose(got, want, atol=1e-5)
