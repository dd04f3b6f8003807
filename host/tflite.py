"""Frozen GraphDef -> .tflite (float), the format nncase imports."""
import os
import re
import shutil
import tempfile

import numpy as np

from host.errors import UserError
from host.tf_infer import node_name, tf


def convert(graph_def, input_node, output_nodes, input_hw, channels):
    if not shutil.which("toco_from_protos"):
        raise UserError("toco_from_protos is not on PATH: run through `make` or put .venv/bin "
                        "on PATH (the tflite converter calls it)")
    workdir = tempfile.mkdtemp(prefix="k210-tflite-")
    try:
        pb = os.path.join(workdir, "model.pb")
        with open(pb, "wb") as f:
            f.write(graph_def.SerializeToString())
        converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
            pb, [node_name(input_node)], [node_name(n) for n in output_nodes],
            input_shapes={node_name(input_node): [1, input_hw[0], input_hw[1], channels]})
        try:
            return converter.convert()
        except Exception as exc:
            raise UserError("the tflite converter rejected the frozen graph: %s"
                            % _converter_reason(str(exc)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _converter_reason(message):
    """The converter's error is a long log: keep what names the problem (the unsupported
    operators, when it lists them)."""
    ops = re.search(r"list of operators for which you will need custom implementations: "
                    r"([^\n]*?)\.?\s*$", message, re.M)
    if ops:
        return ("operator(s) %s are not supported by TFLite's builtin ops, so neither by "
                "nncase: replace them in the model (or compute them on the host after the "
                "KPU)" % ops.group(1).strip()[:160])
    for pattern in (r"[^\n]*not supported[^\n]*", r"[^\n]*Unsupported[^\n]*",
                    r"[^\n]*Check failed[^\n]*", r"[^\n]*rror[^\n]*"):
        match = re.search(pattern, message)
        if match:
            return match.group(0).strip()[:240]
    return message.strip().splitlines()[-1][:240] if message.strip() else "unknown error"


def constant_tensors(tflite_path):
    """The float constant tensors (weights, biases) of a .tflite, as numpy arrays: what ncc
    compiled, BatchNorm already folded by the converter (host.ncc_act matches them to the
    kmodel's layers)."""
    interpreter = tf.lite.Interpreter(model_path=tflite_path)
    interpreter.allocate_tensors()
    arrays = []
    for detail in interpreter.get_tensor_details():
        if detail["dtype"] == np.float32 and len(detail["shape"]) in (1, 4):
            try:
                arrays.append(np.array(interpreter.get_tensor(detail["index"])))
            except ValueError:  # a tensor the interpreter holds no data for
                continue
    return arrays
