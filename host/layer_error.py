"""Per-layer quantisation error: where along the graph the kmodel drifts from float TF.

nncase 1.9's dump_quant_error reports only the final output's accumulated cosine, and
dump_import_op_range refuses tensor-data calibration (docs/nncase.md "Per-layer comparison
that works"). So the error is measured: one diagnostic compile of the graph whose outputs are
the layer boundaries ("taps") plus the model's outputs, with the same calibration images and
method as the real kmodel; the simulator (V5) or `ncc infer` (V4) runs it on the held-out
images and every tap is compared with float TF at the same node. The kmodel runs from the
uint8 input, so each number is the error accumulated from the input up to that layer.
Caveat: each tap is an extra kmodel output (a KPU -> RAM copy with its own dequantisation),
so the diagnostic kmodel is close to, not identical with, the one written.
TensorFlow side: the compiler runs in its own process (host.quantize / host.ncc).
"""
import os
import time

import numpy as np

from host import metrics, ncc, ncc_act, pixels, quantize, tflite
from host.errors import UserError
from host.tf_infer import FrozenRunner, node_name, tf

# A tap is a node whose value feeds the start of the next layer. Taps in front of a pool are
# skipped: the KPU pools in the same instruction as the conv, and a tap there would split it.
# A bias written as `conv + b` (Add) is not a start: tapping in front of it would split the conv.
_LAYER_STARTS = {"Conv2D", "DepthwiseConv2dNative", "MatMul", "ConcatV2", "Mean", "Pad",
                 "ResizeBilinear", "ResizeNearestNeighbor", "Reshape"}
_NOT_TAPPED = {"Const", "Identity", "Placeholder", "Shape", "NoOp"}
RANGE_SAMPLES_PER_IMAGE = 20000


def tap_nodes(graph_def, input_node, output_nodes):
    """[(node name, op)] in graph order: the layer boundaries, then the model's outputs."""
    feeds_a_layer = set()
    ops = {}
    for node in graph_def.node:
        ops[node.name] = node.op
        if node.op in _LAYER_STARTS:
            # the data inputs only: not a Reshape's shape, a Pad's paddings, a concat's axis
            data = node.input[:-1] if node.op == "ConcatV2" else node.input[:1]
            feeds_a_layer.update(node_name(name) for name in data)
    outputs = [node_name(n) for n in output_nodes]
    taps = [node.name for node in graph_def.node
            if node.name in feeds_a_layer and node.op not in _NOT_TAPPED
            and node.name != node_name(input_node) and node.name not in outputs]
    return [(n, ops[n]) for n in taps + outputs]


def measure(graph_def, input_node, output_nodes, input_hw, input_scale, calib_u8, holdout_u8,
            calibrate_method, work_dir, ncc_path=None, exact_activations=False):
    """The per-layer table: {layers: [{node, op, shape, cos, min_cos, l2r, float_min,
    float_max, p001, p999, outlier_ratio, output}], compiler, how, calibrate_method,
    holdout_images, seconds}; `output` marks the model's own outputs (the last rows).
    ncc_path: compile V4 with that ncc binary instead of nncase 1.9 (V5); this costs one ncc
    compile per layer (--ncc-layer-error); exact_activations: the kmodel written got exact
    activation tables (host.ncc_act), so every cut gets them too."""
    started = time.time()
    taps = tap_nodes(graph_def, input_node, output_nodes)
    names = [n for n, _ in taps]
    os.makedirs(work_dir, exist_ok=True)
    runner = FrozenRunner(graph_def, input_node, names)
    float_holdout = runner.run(pixels.model_input(holdout_u8, input_scale))
    ranges = _float_ranges(runner, calib_u8, input_scale, len(names))
    runner.close()
    calib_nchw, holdout_nchw = pixels.to_nchw(calib_u8), pixels.to_nchw(holdout_u8)
    if ncc_path:
        simulated = _ncc_cuts(graph_def, input_node, names, input_hw, input_scale, calib_nchw,
                              holdout_nchw, calibrate_method, work_dir, ncc_path,
                              exact_activations)
        compiler = "ncc (V4)"
        how = "one ncc compile per layer boundary, cut there"
    else:
        tflite_path = os.path.join(work_dir, "layers.tflite")
        kmodel_path = os.path.join(work_dir, "layers.kmodel")
        with open(tflite_path, "wb") as f:
            f.write(tflite.convert(graph_def, input_node, names, input_hw, calib_u8.shape[-1]))
        quantize.compile_kmodel(tflite_path, kmodel_path, calib_nchw, input_scale,
                                calibrate_method=calibrate_method)
        simulated = quantize.simulate(kmodel_path, holdout_nchw)
        compiler = "nncase (V5)"
        how = "one diagnostic compile with every layer boundary as an output"
    layers = [dict(_layer_row(node, op, k, float_holdout[k], simulated), **ranges[k])
              for k, (node, op) in enumerate(taps)]
    for row in layers:
        row["output"] = row["node"] in [node_name(n) for n in output_nodes]
    return {"layers": layers, "compiler": compiler, "how": how,
            "calibrate_method": calibrate_method,
            "holdout_images": len(holdout_u8), "seconds": round(time.time() - started, 1)}


def _ncc_cuts(graph_def, input_node, names, input_hw, input_scale, calib_nchw, holdout_nchw,
              calibrate_method, work_dir, ncc_path, exact_activations):
    """ncc v0.2 segfaults ("Optimize Pass 1") on a tflite with several outputs, so V4 gets one
    compile of the graph cut at each tap: outputs[i][k] as from a single diagnostic kmodel."""
    per_tap = []
    for k, name in enumerate(names):
        tflite_path = os.path.join(work_dir, "cut%d.tflite" % k)
        kmodel_path = os.path.join(work_dir, "cut%d.kmodel" % k)
        with open(tflite_path, "wb") as f:
            f.write(tflite.convert(graph_def, input_node, [name], input_hw,
                                   calib_nchw.shape[1]))
        ncc.compile_kmodel(tflite_path, kmodel_path, calib_nchw, input_scale, ncc=ncc_path,
                           calibrate_method=calibrate_method)
        if exact_activations:
            _rewrite_activations(kmodel_path, tflite_path,
                                 tf.compat.v1.graph_util.extract_sub_graph(graph_def, [name]))
        per_tap.append([outputs[0] for outputs in ncc.infer(kmodel_path, holdout_nchw,
                                                             ncc=ncc_path)])
    return [[tap[i] for tap in per_tap] for i in range(len(holdout_nchw))]


def _rewrite_activations(kmodel_path, tflite_path, graph_def):
    with open(kmodel_path, "rb") as f:
        rewritten, _ = ncc_act.rewrite(f.read(), tflite.constant_tensors(tflite_path),
                                       ncc_act.activation_specs(graph_def))
    with open(kmodel_path, "wb") as f:
        f.write(rewritten)


def _float_ranges(runner, calib_u8, input_scale, count):
    """Each tap's float range on the calibration images (what calibration saw): min, max and
    the 0.1 / 99.9 percentiles, from a random sample of each image's values so that memory
    stays bounded with many images and large feature maps (random, not strided: a stride
    sharing a factor with the channel count would sample only some channels)."""
    lows, highs, samples = [np.inf] * count, [-np.inf] * count, [[] for _ in range(count)]
    rng = np.random.RandomState(0)
    for image in calib_u8:
        for k, value in enumerate(runner.run(pixels.model_input(image[None], input_scale))):
            flat = value.ravel()
            lows[k], highs[k] = min(lows[k], float(flat.min())), max(highs[k], float(flat.max()))
            samples[k].append(flat if flat.size <= RANGE_SAMPLES_PER_IMAGE else
                              flat[rng.randint(0, flat.size, RANGE_SAMPLES_PER_IMAGE)])
    out = []
    for lo, hi, parts in zip(lows, highs, samples):
        p001, p999 = (float(v) for v in np.percentile(np.concatenate(parts), [0.1, 99.9]))
        inner = p999 - p001
        out.append({"float_min": lo, "float_max": hi, "p001": p001, "p999": p999,
                    "outlier_ratio": (hi - lo) / inner if inner > 0 else 1.0})
    return out


def _layer_row(node, op, k, float_holdout, simulated):
    per_image = []
    for i, ref in enumerate(float_holdout):
        ref_chw = ref.transpose(2, 0, 1) if ref.ndim == 3 else ref
        got = np.ravel(simulated[i][k])
        if got.size != ref_chw.size:
            raise UserError("per-layer error: kmodel output %d has %d values, TF node %s has %d; "
                            "the compiler reordered the diagnostic outputs"
                            % (k, got.size, node, ref_chw.size))
        per_image.append(metrics.tensor_metrics(got, ref_chw))
    summary = metrics.summarize_tensor_metrics(per_image)
    return {"node": node, "op": op, "shape": list(float_holdout.shape[1:]),
            "cos": summary["cos"], "min_cos": summary["min_cos"], "l2r": summary["l2r"]}
