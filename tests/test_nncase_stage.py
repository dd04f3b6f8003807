"""The nncase 1.9 stage (host.nncase_stage via host.quantize), with the real nncase and TF.

TensorFlow builds the tiny test models in a subprocess: nncase never shares a process with TF,
and other test modules may load either one into the pytest process. tiny_models() is shared
with test_kmodel.py and test_k210fit.py (conftest puts tests/ on sys.path).
"""
import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from conftest import REPO, SEED_PB
from host import kmodel, pixels, quantize
from host.errors import UserError

EVAL_DIR = os.path.join(REPO, "examples", "face", "eval")

# Runs in a TF-only subprocess: argv out_dir seed_pixels.npy seed.pb. Writes NAME.tflite for each
# model, and for "small" and the seed model the TF reference outputs of fixed inputs.
_BUILD_SCRIPT = r'''
import os, sys
import numpy as np
import tensorflow as tf

out = sys.argv[1]
rng = np.random.RandomState(0)

def conv(x, k, cout, act=True):
    w = tf.constant(rng.randn(k, k, int(x.shape[-1]), cout).astype(np.float32) * 0.2)
    b = tf.constant(rng.randn(cout).astype(np.float32) * 0.1)
    y = tf.nn.bias_add(tf.nn.conv2d(x, w, [1, 1, 1, 1], "SAME"), b)
    return tf.nn.leaky_relu(y, 0.1) if act else y

def pool(x):
    return tf.nn.max_pool(x, [1, 2, 2, 1], [1, 2, 2, 1], "SAME")

MODELS = {
    "small": (32, 32, lambda x: conv(pool(conv(x, 3, 8)), 1, 4, act=False)),
    "conv5x5": (32, 32, lambda x: conv(conv(x, 5, 8), 1, 4, act=False)),
    "tall": (320, 240, lambda x: conv(pool(conv(x, 3, 4)), 1, 4, act=False)),
    "kpu_overflow": (128, 256, lambda x: conv(conv(x, 3, 64), 1, 4, act=False)),
    "elu": (32, 32, lambda x: tf.nn.elu(conv(x, 3, 8, act=False))),
}

def finish(name, graph_def, input_name, output_name, hw, inputs_u8=None):
    pb = os.path.join(out, name + ".pb")
    with open(pb, "wb") as f:
        f.write(graph_def.SerializeToString())
    converter = tf.lite.TFLiteConverter.from_frozen_graph(
        pb, [input_name], [output_name], {input_name: [1, hw[0], hw[1], 3]})
    with open(os.path.join(out, name + ".tflite"), "wb") as f:
        f.write(converter.convert())
    if inputs_u8 is not None:
        graph = tf.Graph()
        with graph.as_default():
            tf.import_graph_def(graph_def, name="")
        with tf.Session(graph=graph) as sess:
            ref = [sess.run(output_name + ":0", {input_name + ":0": x[None] / np.float32(255)})[0]
                   for x in inputs_u8]
        np.save(os.path.join(out, name + "_ref.npy"), np.stack(ref))

for name, (h, w, body) in sorted(MODELS.items()):
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [1, h, w, 3], name="input")
        tf.identity(body(x), name="output")
    inputs = None
    if name == "small":
        inputs = np.random.RandomState(1).randint(0, 256, (4, h, w, 3)).astype(np.uint8)
        np.save(os.path.join(out, "small_in.npy"), inputs)
    finish(name, graph.as_graph_def(), "input", "output", (h, w), inputs)

seed_graph = tf.GraphDef()
with open(sys.argv[3], "rb") as f:
    seed_graph.ParseFromString(f.read())
finish("seed", seed_graph, "Input_image", "Yolo/Final/conv2d/BiasAdd", (240, 320),
       np.load(sys.argv[2]))
'''

_MODELS = {}


def seed_pixels():
    """Board pixels (RGB565 path), 320x240, of four example eval photos (faces in two)."""
    names = ["006.jpg", "007.jpg", "008.jpg", "009.jpg"]
    return np.stack([pixels.board_pixels(os.path.join(EVAL_DIR, name), 320, 240)
                     for name in names])


def tiny_models():
    """{name: path} of the test models, built once per session; `DIR` is their directory."""
    if not _MODELS:
        out = tempfile.mkdtemp(prefix="k210-test-models-")
        atexit.register(shutil.rmtree, out, True)
        argv = [sys.executable, "-c", _BUILD_SCRIPT, out]
        np.save(os.path.join(out, "seed_in.npy"), seed_pixels())
        argv += [os.path.join(out, "seed_in.npy"), SEED_PB]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                   PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
        proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr.decode()[-3000:]
        _MODELS["DIR"] = out
        for name in os.listdir(out):
            if name.endswith(".tflite"):
                _MODELS[name[:-len(".tflite")]] = os.path.join(out, name)
    return _MODELS


def random_u8(n, h, w, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (n, 3, h, w)).astype(np.uint8)


def cosine(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


ZERO_ONE = {"scale": "0-1"}


def test_compile_and_simulate_small_conv_model(tmp_path):
    models = tiny_models()
    inputs = pixels.to_nchw(np.load(os.path.join(models["DIR"], "small_in.npy")))
    kmodel_path = str(tmp_path / "small.kmodel")
    result = quantize.compile_kmodel(models["small"], kmodel_path, random_u8(8, 32, 32),
                                     ZERO_ONE, dump_dir=str(tmp_path / "dump"))
    assert result["version"] == 5 and result["compiler"] == "nncase 1.9.0.20230322"
    assert result["inputs"] == [{"name": "new_input", "shape": [1, 3, 32, 32], "dtype": "uint8"}]
    assert result["outputs"][0]["shape"] == [1, 4, 16, 16]  # NCHW
    assert result["outputs"][0]["dtype"] == "float32"
    assert result["tflite_inputs"][0]["shape"] == [1, 32, 32, 3]
    memory = result["memory"]
    assert set(memory) == {"input", "output", "data", "model", "total"}
    assert memory["input"] == 3 * 32 * 32 and memory["output"] == 4 * 16 * 16 * 4
    assert memory["model"] == os.path.getsize(kmodel_path) == result["kmodel_size"]
    assert memory["total"] == memory["input"] + memory["output"] + memory["data"] + memory["model"]
    assert "4.2. Run calibration" in result["log"] and result["samples"] == 8

    outputs, stats = quantize.simulate_with_stats(kmodel_path, inputs)
    assert len(outputs) == 4 and len(stats["run_ms"]) == 4
    assert all(o[0].shape == (1, 4, 16, 16) and o[0].dtype == np.float32 for o in outputs)
    reference = np.load(os.path.join(models["DIR"], "small_ref.npy")).transpose(0, 3, 1, 2)
    for got, want in zip(outputs, reference):
        assert cosine(got[0][0], want) > 0.99


def test_seed_face_model_compiles_and_matches_tf(tmp_path):
    models = tiny_models()
    photos = seed_pixels()
    kmodel_path = str(tmp_path / "seed.kmodel")
    result = quantize.compile_kmodel(models["seed"], kmodel_path, pixels.to_nchw(photos),
                                     ZERO_ONE)
    assert result["inputs"][0]["shape"] == [1, 3, 240, 320]
    assert result["outputs"][0]["shape"] == [1, 5, 7, 10]
    assert 100000 < result["kmodel_size"] < 160000  # ~126 KB, as the seed README says
    info = kmodel.read(kmodel_path)
    assert info["version"] == 5 and info["outputs"][0]["shape"] == [1, 5, 7, 10]
    outputs = quantize.simulate(kmodel_path, pixels.to_nchw(photos[:2]))
    reference = np.load(os.path.join(models["DIR"], "seed_ref.npy")).transpose(0, 3, 1, 2)
    for got, want in zip(outputs, reference):
        assert cosine(got[0][0], want) > 0.999


def test_garbage_tflite_is_a_user_error(tmp_path):
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(np.random.RandomState(3).bytes(5000))  # would segfault nncase
    with pytest.raises(UserError, match="not a TensorFlow Lite model"):
        quantize.compile_kmodel(str(garbage), str(tmp_path / "g.kmodel"), random_u8(1, 32, 32),
                                ZERO_ONE)
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(open(tiny_models()["small"], "rb").read()[:600])
    with pytest.raises(UserError, match="truncated or corrupt"):
        quantize.compile_kmodel(str(truncated), str(tmp_path / "t.kmodel"),
                                random_u8(1, 32, 32), ZERO_ONE)
    assert not os.path.exists(str(tmp_path / "g.kmodel"))


def test_calibration_data_of_wrong_size_is_refused_before_nncase_runs(tmp_path):
    small = tiny_models()["small"]
    kmodel_path = str(tmp_path / "x.kmodel")
    started = time.time()
    with pytest.raises(UserError, match=r"needs uint8 \[N, 3, 32, 32\]"):
        quantize.compile_kmodel(small, kmodel_path, random_u8(2, 33, 32), ZERO_ONE)
    assert time.time() - started < 20  # refused up front: no calibration ran (or hung)
    with pytest.raises(UserError, match="must be uint8"):  # float data: refused in this process
        quantize.compile_kmodel(small, kmodel_path, random_u8(2, 32, 32).astype(np.float32),
                                ZERO_ONE)
    with pytest.raises(UserError, match="must be uint8"):  # NHWC instead of NCHW
        quantize.compile_kmodel(small, kmodel_path, random_u8(2, 32, 32).transpose(0, 2, 3, 1),
                                ZERO_ONE)
    assert not os.path.exists(kmodel_path)


def test_unsupported_op_names_the_op(tmp_path):
    with pytest.raises(UserError, match="TensorFlow Lite op ELU.*not support"):
        quantize.compile_kmodel(tiny_models()["elu"], str(tmp_path / "e.kmodel"),
                                random_u8(1, 32, 32), ZERO_ONE)


def test_model_too_large_for_kpu_ram(tmp_path):
    with pytest.raises(UserError, match="2 MiB KPU RAM.*reduce the input size"):
        quantize.compile_kmodel(tiny_models()["kpu_overflow"], str(tmp_path / "big.kmodel"),
                                random_u8(1, 128, 256), ZERO_ONE)


def test_unknown_calibrate_method_and_input_scale(tmp_path):
    small = tiny_models()["small"]
    with pytest.raises(UserError, match="unknown calibrate method"):
        quantize.compile_kmodel(small, str(tmp_path / "x.kmodel"), random_u8(1, 32, 32),
                                ZERO_ONE, calibrate_method="kld")
    with pytest.raises(UserError, match="ignores mean/std"):
        quantize.compile_kmodel(small, str(tmp_path / "x.kmodel"), random_u8(1, 32, 32),
                                {"scale": "0-1", "mean": [0.5] * 3, "std": [0.5] * 3})


def test_input_scales_map_to_nncase_parameters():
    assert quantize.nncase_scale_params({"scale": "0-1"}) == {
        "input_range": [0.0, 1.0], "mean": [0.0] * 3, "std": [1.0] * 3}
    assert quantize.nncase_scale_params({"scale": "-1-1"})["input_range"] == [-1.0, 1.0]
    assert quantize.nncase_scale_params({"scale": "0-255"})["input_range"] == [0.0, 255.0]
    ms = quantize.nncase_scale_params({"scale": "mean-std", "mean": [0.5, 0.4, 0.3],
                                       "std": [0.2, 0.2, 0.25]})
    assert ms == {"input_range": [0.0, 1.0], "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.25]}
    with pytest.raises(UserError, match="unknown input scale"):
        quantize.nncase_scale_params({"scale": "0-2"})


def test_timeout_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="did not finish compiling .* within 0.01 s"):
        quantize.compile_kmodel(tiny_models()["small"], str(tmp_path / "x.kmodel"),
                                random_u8(1, 32, 32), ZERO_ONE, timeout=0.01)


def test_crash_becomes_a_one_line_message():
    # A real segfaulting process, as the compiler does on some malformed models.
    proc = subprocess.run([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), %d)"
                           % signal.SIGSEGV], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    message = quantize._crash_message(proc, "compiling m.tflite",
                                      {"tflite": "m.tflite", "log": "/nonexistent.log"})
    assert "segmentation fault" in message and "not a valid TensorFlow Lite model" in message
    assert "\n" not in message


def test_simulate_refuses_wrong_input_and_non_kmodel(tmp_path, monkeypatch):
    monkeypatch.chdir(str(tmp_path))
    kmodel_path = str(tmp_path / "small.kmodel")
    quantize.compile_kmodel(tiny_models()["small"], kmodel_path, random_u8(2, 32, 32), ZERO_ONE)
    # without dump_dir nncase writes kmodel_info.txt into its cwd: not the caller's
    assert os.listdir(str(tmp_path)) == ["small.kmodel"]
    with pytest.raises(UserError, match=r"needs uint8 \[N, 3, 32, 32\]"):
        quantize.simulate(kmodel_path, random_u8(1, 16, 16))
    not_kmodel = tmp_path / "x.kmodel"
    not_kmodel.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(UserError, match="not a kmodel"):
        quantize.simulate(str(not_kmodel), random_u8(1, 32, 32))
