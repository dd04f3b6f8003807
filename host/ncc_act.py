"""Exact KPU activation tables for kmodels compiled by ncc v0.2 (kmodel V4).

The KPU applies a layer's activation as a 16-segment table, y = ((x - start) * mul >> shift)
+ add, on the batch-norm output x. ncc v0.2 fits that table by piecewise regression and
rounds each slope with get_fixed_mul(slope / zq_scale, 16, 20) (nncase v0.2.0-beta4,
src/transforms/hlir/k210/kpu_conv2d.cpp quantize_act): the shift is capped at 20 after
quantize_bn moved up to 2^15 of scale into x, so a slope of 1 keeps about 6 significant bits
and a leaky ReLU's 0.1 about 3 (the example's tables: mul 57 and 6 at shift 20). The slope
error grows along each segment: on the example every leaky layer's negative half came out a
whole uint8 step high. nncase 1.x fixed the cap on the same KPU register (shift up to 43).

This module rewrites each table with the layer's exact piecewise-linear activation (identity,
ReLU, ReLU6, leaky ReLU, read from the TF graph), slopes with 15-bit multipliers (shift <= 31:
the V4 runtime's rounding shifts a 32-bit 1). What it needs and ncc does not store, it derives
from the kmodel and the float weights it was compiled from: the scale of x (s_act_in) from
bn.add = round(bias * s_act_in), the output scale from the consumer (the next KPU layer's
input scale, s_act_in' / (weight scale * bn multiplier), or the Dequantize node's parameters).
A layer it cannot derive keeps ncc's table. The caller keeps the rewrite only when `ncc infer`
measures it closer to TensorFlow (host/pipeline.py).
"""
import struct

import numpy as np

from host import kmodel

_KPU_CONV2D, _DEQUANTIZE = 0x2002, 0x0003
_LAYER_OFFSET = 24            # kpu_conv2d_options: main_mem_output (16 B), batches, reserved0
_LAYER_BYTES = 96             # kpu_layer_argument_t: 12 registers
_MAX_SHIFT, _MUL_LIMIT = 31, 1 << 15
_START_MIN, _START_MAX = -(1 << 35), (1 << 35) - 1
_PASS_THROUGH = {"BiasAdd", "FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3", "Identity"}
_LAYER_OPS = {"Conv2D", "DepthwiseConv2dNative"}
_FOLLOWERS = _LAYER_OPS | {"MaxPool", "AvgPool"}


def _bits(value, low, count):
    return (value >> low) & ((1 << count) - 1)


def _signed(value, count):
    return value - (1 << count) if value >> (count - 1) else value


def _align(offset, alignment=256):
    return offset + (-offset) % alignment


def kpu_layers(data):
    """The V4 kmodel's KPU conv layers in compute order: {act_offset, weights (uint8 OIHW),
    weight_zero (ncc's wq zero point), pad (the input's zero point), bn [[mul, shift, add]],
    src, dst (KPU addresses), main_out (main-memory output start or None), consumer}, where
    consumer is ("kpu", layer index) or ("dequantize", zero point, scale) or None."""
    info = kmodel.parse(data)
    if info["version"] != 4 or info["target"] != "k210":
        return []
    base = 40 + 32 * len(info["inputs"]) + 16 * len(info["outputs"]) + info["constants"]
    heads = [struct.unpack_from("<2I", data, base + 8 * i) for i in range(info["nodes"])]
    position = base + 8 * len(heads)
    nodes = []
    for opcode, size in heads:
        if opcode == _KPU_CONV2D:
            nodes.append(("kpu", _kpu_layer(data, position)))
        elif opcode == _DEQUANTIZE:
            # dequantize_options: input, output memory_range, quant_param {i32 zp, f32 scale}
            _type, _dtype, start, _size = struct.unpack_from("<4I", data, position)
            zero, scale = struct.unpack_from("<if", data, position + 32)
            nodes.append(("dequantize", {"start": start, "zero": zero, "scale": scale}))
        else:
            nodes.append(("other", None))
        position += size
    layers = [body for kind, body in nodes if kind == "kpu"]
    for index, (kind, body) in enumerate(nodes):
        if kind == "kpu":
            body["consumer"] = _consumer(body, nodes[index + 1:], layers)
    return layers


def _kpu_layer(data, body):
    regs = struct.unpack_from("<12Q", data, body + _LAYER_OFFSET)
    _type, _dtype, main_start, main_size = struct.unpack_from("<4I", data, body)
    in_ch, out_ch = _bits(regs[2], 0, 10) + 1, _bits(regs[2], 32, 10) + 1
    depthwise = _bits(regs[0], 3, 1)
    size = 3 if _bits(regs[4], 0, 3) == 1 else 1
    offset = _align(body + _LAYER_OFFSET + _LAYER_BYTES)
    bn = [[_signed(_bits(r, 0, 24), 24), _bits(r, 56, 4), _signed(_bits(r, 24, 32), 32)]
          for r in struct.unpack_from("<%dQ" % out_ch, data, offset)]
    act_offset = _align(offset + 8 * out_ch)
    weights_offset = _align(act_offset + 144)
    count = out_ch * size * size * (1 if depthwise else in_ch)
    weights = np.frombuffer(data, np.uint8, count, weights_offset).reshape(
        out_ch, 1 if depthwise else in_ch, size, size)
    return {"act_offset": act_offset, "weights": weights, "depthwise": bool(depthwise),
            "weight_zero": -_signed(_bits(regs[9], 32, 24), 24), "pad": _bits(regs[4], 24, 8),
            "bn": np.array(bn, np.float64), "src": _bits(regs[1], 0, 15),
            "dst": _bits(regs[1], 32, 15), "main_out": main_start if main_size else None}


def _consumer(layer, later, layers):
    """Who reads the layer's output first: a KPU layer (its KPU address) or a Dequantize
    (its main-memory address)."""
    for kind, body in later:
        if kind == "kpu" and layer["main_out"] is None and body["src"] == layer["dst"]:
            return ("kpu", next(i for i, other in enumerate(layers) if other is body))
        if kind == "dequantize" and body["start"] == layer["main_out"]:
            return ("dequantize", body["zero"], body["scale"])
    return None


def activation_specs(graph_def):
    """Per Conv2D/DepthwiseConv2dNative in graph order: (weight shape HWIO, activation) with
    activation ("linear",), ("relu",), ("relu6",), ("leaky", alpha) or None (not one of
    these: its table is left as ncc made it)."""
    nodes = {n.name: n for n in graph_def.node}
    consumers = {}
    for node in graph_def.node:
        for name in node.input:
            consumers.setdefault(_name(name), []).append(node)
    specs = []
    for node in graph_def.node:
        if node.op in _LAYER_OPS:
            weights = _const(node.input[1], nodes)
            shape = [d.size for d in weights.attr["value"].tensor.tensor_shape.dim] \
                if weights is not None else None
            specs.append((shape, _activation(node, consumers, nodes)))
    return specs


def _activation(conv, consumers, nodes):
    current = conv
    while True:
        after = consumers.get(current.name, [])
        if len(after) == 2:
            return _max_leaky(current, after, nodes)
        if len(after) > 2:
            return None
        if not after:
            return ("linear",)
        (following,) = after
        # BatchNorm and biases, also written as Mul/Add with a constant, fold into the conv
        if following.op in _PASS_THROUGH or (following.op in ("Add", "AddV2", "Mul") and any(
                _const(n, nodes) is not None for n in following.input)):
            current = following
            continue
        if following.op == "LeakyRelu":
            return ("leaky", float(following.attr["alpha"].f))
        if following.op == "Relu":
            return ("relu",)
        if following.op == "Relu6":
            return ("relu6",)
        return ("linear",) if following.op in _FOLLOWERS else None


def _max_leaky(x, after, nodes):
    """TF1's leaky ReLU written as maximum(alpha * x, x)."""
    by_op = {n.op: n for n in after}
    mul, maximum = by_op.get("Mul"), by_op.get("Maximum")
    if mul is None or maximum is None or mul.name not in [_name(n) for n in maximum.input]:
        return None
    alpha = [_scalar(_const(n, nodes)) for n in mul.input if _name(n) != x.name]
    return ("leaky", alpha[0]) if len(alpha) == 1 and alpha[0] is not None \
        and 0 < alpha[0] < 1 else None


def _name(tensor):
    return tensor.split(":")[0].lstrip("^")


def _const(tensor, nodes):
    """The Const node behind `tensor` (through Identity reads), or None."""
    node = nodes.get(_name(tensor))
    while node is not None and node.op == "Identity":
        node = nodes.get(_name(node.input[0]))
    return node if node is not None and node.op == "Const" else None


def _scalar(const):
    if const is None:
        return None
    tensor = const.attr["value"].tensor
    values = list(tensor.float_val) or list(np.frombuffer(tensor.tensor_content, np.float32))
    return float(values[0]) if len(values) == 1 else None


def rewrite(data, float_tensors, specs):
    """kmodel bytes -> (new bytes, {"rewritten": [layer indices], "kept": {index: reason}}).
    float_tensors: the tflite's constant arrays (host.tflite.constant_tensors); specs:
    activation_specs of the graph the tflite came from."""
    try:
        layers = kpu_layers(data)
    except (struct.error, ValueError, IndexError) as exc:
        # a node layout this reader does not know: the kmodel stays as ncc wrote it
        return data, {"rewritten": [], "layers": 0,
                      "kept": {"all": "kmodel layout not understood (%s)" % exc}}
    kept = {}
    if not layers:
        return data, {"rewritten": [], "kept": {}, "layers": 0}
    if len(specs) != len(layers):
        return data, {"rewritten": [], "layers": len(layers),
                      "kept": {"all": "%d KPU layers, %d convolutions in the graph"
                               % (len(layers), len(specs))}}
    scales = [_scales(layer, float_tensors) for layer in layers]
    out = bytearray(data)
    rewritten = []
    for index, (shape, activation) in enumerate(specs):
        if not _same_shape(shape, layers[index]):
            kept[index] = "the graph's convolution %d has weights %s, not this layer's" % (
                index, shape)
            continue
        reason = _rewrite_layer(out, layers, scales, activation, index)
        if reason:
            kept[index] = reason
        else:
            rewritten.append(index)
    return bytes(out), {"rewritten": rewritten, "kept": kept, "layers": len(layers)}


def _same_shape(hwio, layer):
    """TF's weight shape (HWIO; depthwise HW, in, multiplier) against the KPU layer's."""
    out_ch, in_ch, kh, kw = layer["weights"].shape
    if hwio is None or len(hwio) != 4 or hwio[:2] != [kh, kw]:
        return False
    if layer["depthwise"]:
        return hwio[2] * hwio[3] == out_ch
    return hwio[2:] == [in_ch, out_ch]


def _scales(layer, float_tensors):
    """(s_act_in, input scale) of a KPU layer from its float weights and bias, or None."""
    q = layer["weights"].astype(np.float64) - layer["weight_zero"]
    out_ch = q.shape[0]
    weights = _match_weights(q, layer["depthwise"], float_tensors)
    bn = layer["bn"]
    bias = _best(bn[:, 2], [t for t in float_tensors if t.shape == (out_ch,)])
    if weights is None or bias is None or not np.any(bias):
        return None
    s_act_in = float(np.dot(bn[:, 2], bias) / np.dot(bias, bias))
    per_channel = []
    for c in range(out_ch):
        w = weights[c].ravel()
        if np.dot(w, w) > 0 and bn[c, 0]:
            scale = np.dot(q[c].ravel(), w) / np.dot(w, w)
            per_channel.append(s_act_in / (scale * bn[c, 0] / 2.0 ** bn[c, 1]))
    return (s_act_in, float(np.median(per_channel))) if per_channel else None


def _match_weights(q, depthwise, float_tensors):
    """The float weights (OIHW) that `q` quantises: same shape, every output channel
    correlated >= 0.99 (ncc scales each channel to the full uint8 range on its own)."""
    out_ch, in_ch, kh, kw = q.shape
    for t in float_tensors:
        if depthwise and t.shape == (1, kh, kw, out_ch):
            candidate = t[0].transpose(2, 0, 1)[:, None]
        elif not depthwise and t.shape == (out_ch, kh, kw, in_ch):
            candidate = t.transpose(0, 3, 1, 2)
        else:
            continue
        if all(_correlation(q[c], candidate[c]) >= 0.99 for c in range(out_ch)
               if np.any(candidate[c])):
            return np.asarray(candidate, np.float64)
    return None


def _correlation(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    return np.dot(a, b) / denominator if denominator else 0.0


def _best(target, candidates, minimum=0.999):
    """The candidate best correlated with `target`, if at least `minimum`."""
    best, best_corr = None, minimum
    for candidate in candidates:
        corr = _correlation(target, candidate)
        if corr >= best_corr:
            best, best_corr = np.asarray(candidate, np.float64), corr
    return best


def _rewrite_layer(out, layers, scales, activation, index):
    """Write layer `index`'s exact table into `out`; returns why not, or None."""
    if activation is None:
        return "activation not identity, ReLU, ReLU6 or leaky ReLU"
    if scales[index] is None:
        return "float weights or bias not found for this layer"
    consumer = layers[index]["consumer"]
    if consumer is None:
        return "its output's consumer is not a KPU layer or a Dequantize"
    if consumer[0] == "kpu":
        if scales[consumer[1]] is None:
            return "the next layer's scales are unknown"
        out_scale, out_zero = scales[consumer[1]][1], layers[consumer[1]]["pad"]
    else:
        out_zero, out_scale = consumer[1], consumer[2]
    table = _table(activation, out_scale / scales[index][0], out_zero, scales[index][0])
    if table is None:
        return "slope too small for a 15-bit multiplier at shift <= 31"
    offset = layers[index]["act_offset"]
    for i, (start, mul, shift, add) in enumerate(table):
        register = shift | (mul & 0xFFFF) << 8 | (start & ((1 << 36) - 1)) << 24
        struct.pack_into("<Q", out, offset + 8 * i, register)
        out[offset + 128 + i] = add
    return None


def _table(activation, k, zero, s_act_in):
    """16 segments (start, mul, shift, add), ascending, giving codes = zero + k * f(x) for x
    in s_act_in units; None when a slope does not fit."""
    kind = activation[0]
    if kind in ("relu", "relu6"):
        segments = [(_START_MIN, 0, 0, zero), _segment(0, k, zero)]
        if kind == "relu6":
            segments.append((int(round(6 * s_act_in)), 0, 0, _code(zero + 6 * k * s_act_in)))
    else:
        # linear or leaky: anchored where the line leaves code 0, then (leaky) at x = 0
        slope = activation[1] if kind == "leaky" else 1.0
        start = int(np.floor(-zero / (slope * k)))
        segments = [(_START_MIN, 0, 0, 0), _segment(start, slope * k, zero + slope * k * start)]
        if kind == "leaky":
            segments.append(_segment(0, k, zero))
    if any(s[1] is None for s in segments):
        return None
    top = 255 if segments[-1][1] else segments[-1][3]
    while len(segments) < 16:
        segments.append((_START_MAX - 16 + len(segments), 0, 0, top))
    return segments


def _segment(start, slope, add):
    mul, shift = _fixed_mul(slope)
    return (start, mul, shift, _code(add))


def _code(value):
    return int(min(255, max(0, round(value))))


def _fixed_mul(value):
    """value ~= mul / 2^shift, mul < 2^15 (the table's y_mul is 16-bit signed), shift <= 31;
    mul None when that leaves fewer than 8 significant bits."""
    _mantissa, exponent = np.frexp(value)
    shift = min(_MAX_SHIFT, 15 - int(exponent))
    mul = int(round(value * 2.0 ** shift))
    if mul >= _MUL_LIMIT:
        shift -= 1
        mul = int(round(value * 2.0 ** shift))
    return (mul, shift) if mul >= 256 else (None, None)
