"""Exact KPU activation tables for ncc v0.2 kmodels (host/ncc_act.py): ncc rounds each
table's slopes to a shift <= 20, the toolkit rewrites them from the graph's activations and
keeps the rewrite only when `ncc infer` (the K210 runtime's kernels) measures it closer to
TensorFlow. Real ncc, real TensorFlow (in subprocesses: nncase users may share this process)."""
import json
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tiny_model
from conftest import REPO, run_tool, tool_env
from host import ncc, ncc_act, pixels

NCC = ncc.VENV_NCC if os.path.isfile(ncc.VENV_NCC) else None
needs_ncc = pytest.mark.skipif(NCC is None, reason="no .venv/bin/ncc: run `make ncc`")

# argv: none. Prints activation_specs of a graph holding every form the module reads.
_SPECS = textwrap.dedent("""
    import json
    import numpy as np
    import tensorflow as tf
    from host import ncc_act
    rng = np.random.RandomState(0)
    def conv(x, c):
        w = tf.constant(rng.uniform(-1, 1, (3, 3, int(x.shape[-1]), c)).astype(np.float32))
        return tf.nn.conv2d(x, w, [1, 1, 1, 1], "SAME")
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 8, 8, 3], name="x")
        y = tf.nn.leaky_relu(tf.nn.bias_add(conv(x, 4), tf.constant(np.ones(4, np.float32))),
                             alpha=0.1)
        z = conv(y, 4) * tf.constant(2.0)
        y = tf.maximum(0.2 * z, z)                       # TF1's leaky ReLU
        y = tf.nn.relu(conv(y, 4) + tf.constant(np.ones(4, np.float32)))
        y = tf.nn.max_pool2d(tf.nn.relu6(conv(y, 4)), 2, 2, "VALID")
        y = tf.nn.max_pool2d(conv(y, 4), 2, 2, "VALID")  # no activation
        y = tf.sigmoid(conv(y, 4))                       # not piecewise linear
        z = conv(y, 4)                                   # three readers: not followed
        y = tf.concat([tf.nn.relu(z), tf.nn.relu6(z), z], axis=-1)
        tf.identity(conv(y, 2), name="out")
        print(json.dumps(ncc_act.activation_specs(g.as_graph_def())))
""")


def test_activation_specs_read_each_supported_form_and_refuse_the_rest():
    proc = subprocess.run([sys.executable, "-c", _SPECS], env=tool_env(), cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300,
                          universal_newlines=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    specs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [s[0] for s in specs] == [[3, 3, 3, 4]] + [[3, 3, 4, 4]] * 6 + [[3, 3, 12, 2]]
    kinds = [s[1] for s in specs]
    assert kinds[0][0] == "leaky" and abs(kinds[0][1] - 0.1) < 1e-6
    assert kinds[1][0] == "leaky" and abs(kinds[1][1] - 0.2) < 1e-6
    assert kinds[2:] == [["relu"], ["relu6"], ["linear"], None, None, ["linear"]]


def test_fixed_mul_keeps_15_bits_where_ncc_kept_3():
    # the example's first layer: leaky's 0.1 at codes-per-x 5.404e-5; ncc v0.2 wrote mul 6
    # at shift 20 (its cap), 6% off
    slope = 0.1 * 5.404e-5
    assert abs(6 / 2.0 ** 20 / slope - 1) > 0.05
    mul, shift = ncc_act._fixed_mul(slope)
    assert 1 << 13 <= mul < 1 << 15 and shift == 31
    assert abs(mul / 2.0 ** shift / slope - 1) < 1e-4
    # a slope too small for 8 significant bits at shift 31 is refused, not rounded to 0
    assert ncc_act._fixed_mul(1e-9) == (None, None)


@needs_ncc
def test_tiny_model_v4_gets_exact_tables_closer_to_tf(tmp_path, tiny_build):
    out = tmp_path / "out"
    proc = run_tool("host/convert.py", "--frozen-pb",
                    os.path.join(tiny_build.directory, "model.pb"),
                    "--input-size", "%dx%d" % (tiny_model.H, tiny_model.W), "--output-node",
                    tiny_model.OUTPUT, "--calib-dir",
                    tiny_model.images(tmp_path / "calib", 16, seed=11),
                    "--firmware", "maixpy-v4", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "convert_report.json").read_text())["quantization"]
    tables = report["activation_tables"]
    assert tables["layers"] == 2 and tables["rewritten"] == [0, 1] and tables["kept"] == {}
    assert tables["used"] == "exact", tables
    assert tables["exact"]["mean_l2r"] < tables["ncc"]["mean_l2r"]
    assert report["mean_l2r"] == tables["exact"]["mean_l2r"]
    assert "activation tables: 2 of 2 KPU layers rewritten exactly" in proc.stdout
    # the kmodel written carries the exact tables: slopes at shifts past ncc's cap of 20
    data = (out / "model.kmodel").read_bytes()
    for layer in ncc_act.kpu_layers(data):
        shifts = [_table(data, layer)[i][2] for i in range(1, 3)]
        assert max(shifts) > 20, shifts


def _table(data, layer):
    offset = layer["act_offset"]
    registers = np.frombuffer(data, "<u8", 16, offset)
    return [(int(r) >> 24, (int(r) >> 8) & 0xFFFF, int(r) & 0xFF) for r in registers]


@needs_ncc
def test_a_rewrite_that_measures_worse_is_not_kept(tmp_path, tiny_build):
    """Wrong activations (ReLU where the graph has leaky ReLU): the rewritten kmodel is
    further from TF, so the pipeline keeps ncc's tables."""
    script = textwrap.dedent("""
        import json, sys
        import numpy as np
        from host import ncc, ncc_act, pipeline, pixels
        from host.tf_infer import FrozenRunner, load_graph_def
        directory, calib = sys.argv[1], sys.argv[2]
        graph = load_graph_def(directory + "/model.pb")
        tflite_path = directory + "/model.tflite"
        kmodel_path = sys.argv[3]
        holdout = np.stack([pixels.board_pixels(p, 16, 16)
                            for p in pixels.list_images(calib)[:4]])
        runner = FrozenRunner(graph, "Input_image", [sys.argv[5]])
        float_outputs = runner.run(pixels.model_input(holdout, {"scale": "0-1"}))
        float_chw = [[pipeline.to_chw(s) for s in out] for out in float_outputs]
        specs = [(shape, ("relu",)) for shape, _ in ncc_act.activation_specs(graph)]
        decoder = {"type": "raw"}
        ncc_binary = sys.argv[4]
        sim = ncc.infer(kmodel_path, pixels.to_nchw(holdout), ncc=ncc_binary)
        evaluation = pipeline._compare(float_chw, sim, float_outputs, decoder)
        result = pipeline._exact_activations(kmodel_path, tflite_path, specs, evaluation,
                                             holdout, ncc_binary, float_chw, float_outputs,
                                             decoder, lambda text: None)
        print(json.dumps(result["activation_tables"]))
        """)
    kmodel_path = tmp_path / "model.kmodel"
    calib = tiny_model.images(tmp_path / "calib", 16, seed=11)
    calib_u8 = np.stack([pixels.board_pixels(path, tiny_model.W, tiny_model.H)
                         for path in pixels.list_images(calib)])
    ncc.compile_kmodel(os.path.join(tiny_build.directory, "model.tflite"), str(kmodel_path),
                       pixels.to_nchw(calib_u8), {"scale": "0-1"}, ncc=NCC)
    original = kmodel_path.read_bytes()
    proc = subprocess.run([sys.executable, "-c", script, tiny_build.directory, calib,
                           str(kmodel_path), NCC, tiny_model.OUTPUT], env=tool_env(), cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600,
                          universal_newlines=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tables = json.loads(proc.stdout.strip().splitlines()[-1])
    assert tables["rewritten"] == [0, 1]
    assert tables["used"] == "ncc", tables
    assert tables["exact"]["mean_l2r"] > tables["ncc"]["mean_l2r"]
    assert kmodel_path.read_bytes() == original
    assert not os.path.exists(str(kmodel_path) + ".exact")


# argv: path. 32x32 -> conv + ReLU6, pool, conv + ReLU, 1x1 conv: the clamped activations.
_RELU_PB = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    rng = np.random.RandomState(5)
    def conv(x, k, c, spread=0.6):
        w = rng.uniform(-spread, spread, (k, k, int(x.shape[-1]), c)).astype(np.float32)
        b = rng.uniform(-0.1, 0.1, (c,)).astype(np.float32)
        return tf.nn.conv2d(x, tf.constant(w), [1, 1, 1, 1], "SAME") + tf.constant(b)
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 32, 32, 3], name="Input_image")
        # wide weights: many values past 6, so ReLU6's plateau matters
        y = tf.nn.max_pool2d(tf.nn.relu6(conv(x, 3, 8, spread=3.0)), 2, 2, "VALID")
        y = tf.nn.relu(conv(y, 3, 16))
        tf.identity(conv(y, 1, 5), name="out")
        with open(sys.argv[1], "wb") as f:
            f.write(g.as_graph_def().SerializeToString())
""")


@needs_ncc
def test_relu_and_relu6_tables_match_tf_as_closely_as_ncc_s(tmp_path):
    """ncc's slope of 1 loses less than leaky's 0.1, so here the exact tables only have to
    be right: a wrong clamp or plateau would be far from TF."""
    pb = tmp_path / "relu.pb"
    subprocess.run([sys.executable, "-c", _RELU_PB, str(pb)], env=tool_env(), check=True,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    out = tmp_path / "out"
    proc = run_tool("host/convert.py", "--frozen-pb", pb, "--input-size", "32x32",
                    "--output-node", "out", "--calib-dir",
                    tiny_model.images(tmp_path / "calib", 16, seed=11, size=(32, 32)),
                    "--firmware", "maixpy-v4", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tables = json.loads((out / "convert_report.json").read_text())["quantization"][
        "activation_tables"]
    assert tables["rewritten"] == [0, 1, 2] and tables["kept"] == {}
    assert tables["exact"]["mean_l2r"] <= 1.05 * tables["ncc"]["mean_l2r"], tables
    assert tables["exact"]["mean_cos"] > 0.9995


def test_an_unreadable_kpu_layer_leaves_the_kmodel_as_ncc_wrote_it():
    """A V4 header naming one KPU conv whose body ends before its layer registers: rewrite
    returns the bytes unchanged and says why; it does not raise."""
    data = bytearray(100)
    struct.pack_into("<4s9I", data, 0, b"LDMK", 4, 0, 1, 0, 0, 1, 0, 0, 0)
    struct.pack_into("<2I", data, 40, 0x2002, 16)
    rewritten, outcome = ncc_act.rewrite(bytes(data), [], [])
    assert rewritten == bytes(data) and outcome["rewritten"] == []
    assert outcome["kept"]["all"].startswith("kmodel layout not understood")
