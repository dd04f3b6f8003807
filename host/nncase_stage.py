"""The nncase 1.9 side of the toolkit: tflite -> K210 kmodel (V5), and nncase's simulator.

Runs only as its own process, `python -m host.nncase_stage COMMAND REQUEST.json RESULT.json`,
started by host.quantize. Reasons: nncase and TensorFlow ship different C++ runtimes and break
each other in one process; a bad tflite segfaults the compiler; the compiler prints with C++
std::cout on fd 1, which only a separate process (or fd redirection) can capture.
Never import TensorFlow here.

Commands (paths absolute, all JSON):
- compile: {tflite, kmodel, calib (.npy uint8 [N,3,H,W]), input_range [lo, hi], mean [3], std [3],
  calibrate_method, dump_dir (or null), log} -> {ok, kmodel_size, memory, inputs, outputs, ...}
- simulate: {kmodel, inputs (.npy uint8 [N,3,H,W]), outputs (.npz to write), log}
  -> {ok, outputs: [{dtype, shape}], run_ms: [...], load_ms}; the .npz holds `output_J`
  float32 [N, *kmodel output shape] for each output J.
A failure writes {ok: false, error, nncase (true if nncase itself raised)} and exits 3.
"""
import ctypes
import json
import os
import re
import shutil
import struct
import sys
import time

import nncase
import numpy as np

from host import atomic, kmodel
from host.errors import UserError

CALIBRATE_METHODS = ("no_clip", "l2", "kld_m0", "kld_m1", "kld_m2", "cdf")
EXIT_REPORTED = 3

# Files and directories nncase writes into dump_dir; cleared before a compile so that k210fit
# never reads a stale k210_N module or schedule left by a previous model.
_DUMP_ENTRIES = ("after_calibration", "codegen", "k210", "kmodel_info.txt", "passes", "stackvm")


class StageError(Exception):
    """A failure to report to the caller; from_nncase when nncase itself raised it."""

    def __init__(self, message, from_nncase=False):
        Exception.__init__(self, message)
        self.from_nncase = from_nncase


def main(argv):
    if len(argv) != 3 or argv[0] not in COMMANDS:
        sys.stderr.write("usage: python -m host.nncase_stage {%s} REQUEST.json RESULT.json\n"
                         % "|".join(sorted(COMMANDS)))
        return 2
    command, request_path, result_path = argv
    with open(request_path) as f:
        request = json.load(f)
    _send_stdout_to(request["log"])
    try:
        result = COMMANDS[command](request)
        result["ok"] = True
        code = 0
    except (StageError, UserError) as exc:
        result = {"ok": False, "error": str(exc),
                  "nncase": bool(getattr(exc, "from_nncase", False))}
        code = EXIT_REPORTED
    atomic.write_json(result_path, result)
    return code


def _send_stdout_to(log_path):
    """Point fd 1 (nncase's std::cout) at the log file, line-buffered, so that the caller can
    read the compiler's progress even after a crash or a timeout kill."""
    libc = ctypes.CDLL(None)
    libc.setvbuf(ctypes.c_void_p.in_dll(libc, "stdout"), None, 1, 0)  # 1 = _IOLBF
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.close(fd)


def _flush_c_stdout():
    ctypes.CDLL(None).fflush(None)


# ---------------------------------------------------------------- compile

def compile_model(request):
    tflite_bytes = _read(request["tflite"], "tflite model")
    model_io = tflite_io(tflite_bytes, request["tflite"])
    height, width, channels = _model_input_hwc(model_io, request["tflite"])
    calib = _load_u8_nchw(request["calib"], "calibration data", channels, height, width)
    method = request.get("calibrate_method", "no_clip")
    if method not in CALIBRATE_METHODS:
        # nncase silently treats an unknown method as no_clip
        raise StageError("unknown calibrate method %r: use one of %s"
                         % (method, ", ".join(CALIBRATE_METHODS)))
    input_range, mean, std = _scale_params(request, channels)

    dump_dir = request.get("dump_dir")
    options = nncase.CompileOptions()
    options.target = "k210"
    options.preprocess = True
    options.input_type = "uint8"
    # NCHW input of the real size: no CPU transpose, no letterbox resize in front of the KPU
    options.input_layout = "NCHW"
    options.input_shape = [1, channels, height, width]
    options.input_range = input_range
    options.mean = mean
    options.std = std
    options.output_layout = "NCHW"
    if dump_dir:
        _clear_dump_dir(dump_dir)
        options.dump_dir = dump_dir
        options.dump_asm = True  # runtime_ops.txt (op placement)
        options.dump_ir = True   # codegen/*.sched (KPU memory)

    samples = calib.shape[0]
    # exactly samples * C*H*W bytes: _load_u8_nchw checked dtype and shape, which nncase does
    # not (too little data compiles garbage, the wrong dtype hangs in "Quantize graph")
    data = np.ascontiguousarray(calib).tobytes()

    started = time.time()
    try:
        compiler = nncase.Compiler(options)
        compiler.import_tflite(tflite_bytes, nncase.ImportOptions())
        ptq = nncase.PTQTensorOptions()
        ptq.calibrate_method = method
        ptq.samples_count = samples
        ptq.set_tensor_data(data)
        compiler.use_ptq(ptq)
        compiler.compile()
        kmodel_bytes = compiler.gencode_tobytes()  # KPU RAM overflow is raised here
    except RuntimeError as exc:
        raise StageError(str(exc), from_nncase=True)
    finally:
        _flush_c_stdout()
    seconds = time.time() - started
    atomic.write_bytes(request["kmodel"], kmodel_bytes)

    log = _read_text(request["log"])
    summary = parse_summary(log)
    return {
        "kmodel": request["kmodel"],
        "kmodel_size": len(kmodel_bytes),
        "version": kmodel.parse(kmodel_bytes, request["kmodel"])["version"],
        "compiler": "nncase " + _nncase_version(),
        "memory": summary["memory"],
        "inputs": summary["inputs"],
        "outputs": summary["outputs"],
        "tflite_inputs": model_io["inputs"],
        "tflite_outputs": model_io["outputs"],
        "calibrate_method": method,
        "samples": samples,
        "input_range": input_range,
        "mean": mean,
        "std": std,
        "compile_seconds": round(seconds, 3),
        "dump_dir": dump_dir,
        "log": log,
    }


def _model_input_hwc(model_io, path):
    if len(model_io["inputs"]) != 1:
        raise StageError("%s has %d inputs; the K210 toolkit handles models with one image input"
                         % (path, len(model_io["inputs"])))
    tensor = model_io["inputs"][0]
    shape = tensor["shape"]
    if len(shape) != 4 or shape[0] != 1 or shape[3] not in (1, 3) or min(shape) < 1 \
            or tensor["dtype"] != "float32":
        raise StageError("%s: input %r is %s %s; expected float32 [1, H, W, 3 or 1] (an RGB or "
                         "grayscale image, NHWC)" % (path, tensor["name"], tensor["dtype"], shape))
    return shape[1], shape[2], shape[3]


def _scale_params(request, channels):
    input_range = [float(v) for v in request.get("input_range", [0.0, 1.0])]
    mean = [float(v) for v in request.get("mean", [0.0, 0.0, 0.0])]
    std = [float(v) for v in request.get("std", [1.0, 1.0, 1.0])]
    if len(input_range) != 2 or not input_range[0] < input_range[1]:
        raise StageError("input_range must be [low, high] with low < high, got %s" % input_range)
    if len(mean) != channels or len(std) != channels or min(std) <= 0:
        raise StageError("mean and std need %d values each (one per input channel), std > 0; "
                         "got mean %s std %s" % (channels, mean, std))
    return input_range, mean, std


def _clear_dump_dir(dump_dir):
    os.makedirs(dump_dir, exist_ok=True)
    for name in os.listdir(dump_dir):
        if name in _DUMP_ENTRIES or name.startswith("ir_"):
            path = os.path.join(dump_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)


_SUMMARY_TENSOR = re.compile(r"^(\d+)\t(\S+)\t([a-z]+\d*)\[([\d,]*)\]\s*$")
_SUMMARY_MEMORY = re.compile(r"^(\.input|\.output|\.data|MODEL|TOTAL)\s.*\((\d+) B\)\s*$")
_DTYPES = {"u8": "uint8", "i8": "int8", "f32": "float32", "f16": "float16", "bf16": "bfloat16",
           "i32": "int32", "i64": "int64", "u16": "uint16", "i16": "int16", "u32": "uint32"}


def parse_summary(log):
    """The SUMMARY that gencode prints: kmodel inputs/outputs and MEMORY USAGES in bytes
    (input, output, data = working memory; model = the kmodel; total = main RAM needed)."""
    result = {"inputs": [], "outputs": [], "memory": {}}
    section = None
    for line in log.splitlines():
        stripped = line.strip()
        if stripped in ("INPUTS", "OUTPUTS"):
            section = stripped.lower()
            continue
        match = _SUMMARY_TENSOR.match(line)
        if match and section:
            dims = [int(d) for d in match.group(4).split(",") if d]
            result[section].append({"name": match.group(2), "shape": dims,
                                    "dtype": _DTYPES.get(match.group(3), match.group(3))})
            continue
        match = _SUMMARY_MEMORY.match(stripped)
        if match:
            result["memory"][match.group(1).lstrip(".").lower()] = int(match.group(2))
    missing = {"input", "output", "data", "model", "total"} - set(result["memory"])
    if missing:
        raise StageError("nncase printed no complete memory summary (missing %s); was TensorFlow "
                         "imported into this process?" % ", ".join(sorted(missing)))
    return result


def _nncase_version():
    import importlib_metadata  # only for the version string; nncase has no __version__
    return importlib_metadata.version("nncase")


# ---------------------------------------------------------------- simulate

def simulate(request):
    data = _read(request["kmodel"], "kmodel")
    info = kmodel.parse(data, request["kmodel"])
    if info["version"] != 5:
        raise StageError("%s is a V%d kmodel; the nncase 1.9 simulator runs V5 only"
                         % (request["kmodel"], info["version"]))
    if len(info["inputs"]) != 1:
        raise StageError("%s has %d inputs; simulate handles one image input"
                         % (request["kmodel"], len(info["inputs"])))
    want = info["inputs"][0]
    if want["dtype"] != "uint8" or len(want["shape"]) != 4 or want["shape"][0] != 1 \
            or want["shape"][1] not in (1, 3):
        raise StageError("%s: input is %s %s; expected uint8 [1, 3 or 1, H, W] (compiled with "
                         "preprocess, NCHW)" % (request["kmodel"], want["dtype"], want["shape"]))
    inputs = _load_u8_nchw(request["inputs"], "simulator input", *want["shape"][1:])

    started = time.time()
    sim = nncase.Simulator()
    try:
        sim.load_model(data)
    except RuntimeError as exc:
        raise StageError(str(exc), from_nncase=True)
    load_ms = (time.time() - started) * 1000.0
    outputs = [[] for _ in range(sim.outputs_size)]
    run_ms = []
    try:
        for sample in inputs:
            sim.set_input_tensor(0, nncase.RuntimeTensor.from_numpy(sample[None].copy()))
            started = time.time()
            sim.run()
            run_ms.append(round((time.time() - started) * 1000.0, 3))
            for j, collected in enumerate(outputs):
                collected.append(np.array(sim.get_output_tensor(j).to_numpy(), copy=True))
    except RuntimeError as exc:
        raise StageError(str(exc), from_nncase=True)
    finally:
        _flush_c_stdout()
    stacked = {"output_%d" % j: np.stack(o) for j, o in enumerate(outputs)}
    _save_npz(request["outputs"], stacked)
    return {"outputs": [{"dtype": str(a.dtype), "shape": list(a.shape[1:])}
                        for a in (stacked["output_%d" % j] for j in range(len(outputs)))],
            "run_ms": run_ms, "load_ms": round(load_ms, 3)}


def _save_npz(path, arrays):
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


# ---------------------------------------------------------------- helpers

def _read(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise StageError("cannot read %s %s: %s" % (what, path, exc.strerror))


def _read_text(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def _load_u8_nchw(path, what, channels, height, width):
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise StageError("cannot read %s %s: %s" % (what, path, exc))
    expected = "uint8 [N, %d, %d, %d]" % (channels, height, width)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[0] < 1 \
            or tuple(array.shape[1:]) != (channels, height, width):
        raise StageError("%s is %s %s; the model needs %s (N >= 1 images, NCHW, 0..255)"
                         % (what, array.dtype, list(array.shape), expected))
    return array


# ---------------------------------------------------------------- tflite input/output shapes

_TFLITE_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string",
                 6: "bool", 7: "int16", 8: "complex64", 9: "int8"}


def tflite_io(data, path="<tflite>"):
    """Input and output tensors (name, shape, dtype) of a .tflite flatbuffer, read without
    TensorFlow. nncase needs the real input H, W: given another size it silently letterboxes
    on the CPU, and given garbage it segfaults, so both are checked here first."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise StageError("%s is not a TensorFlow Lite model (no TFL3 identifier); regenerate "
                         "it from the frozen graph" % path)
    try:
        model = _fb_root(data)
        subgraphs = _fb_vector_tables(data, model, 2)
        if not subgraphs:
            raise ValueError("no subgraph")
        graph = subgraphs[0]
        tensors = _fb_vector_tables(data, graph, 0)

        def describe(index):
            tensor = tensors[index]
            return {"name": _fb_string(data, tensor, 3), "shape": _fb_vector_i32(data, tensor, 0),
                    "dtype": _TFLITE_TYPES.get(_fb_scalar(data, tensor, 1, "<b", 0), "unknown")}

        return {"inputs": [describe(i) for i in _fb_vector_i32(data, graph, 1)],
                "outputs": [describe(i) for i in _fb_vector_i32(data, graph, 2)]}
    except (struct.error, IndexError, ValueError, UnicodeDecodeError) as exc:
        raise StageError("%s is a truncated or corrupt TensorFlow Lite model (%s); regenerate "
                         "it from the frozen graph" % (path, exc))


def _fb_root(data):
    return struct.unpack_from("<I", data, 0)[0]


def _fb_field(data, table, index):
    """Absolute position of field `index` of the table at `table`, or None when absent."""
    vtable = table - struct.unpack_from("<i", data, table)[0]
    vtable_size = struct.unpack_from("<H", data, vtable)[0]
    if 4 + 2 * index >= vtable_size:
        return None
    offset = struct.unpack_from("<H", data, vtable + 4 + 2 * index)[0]
    return table + offset if offset else None


def _fb_deref(data, position):
    return position + struct.unpack_from("<I", data, position)[0]


def _fb_scalar(data, table, index, fmt, default):
    position = _fb_field(data, table, index)
    return default if position is None else struct.unpack_from(fmt, data, position)[0]


def _fb_vector(data, table, index):
    position = _fb_field(data, table, index)
    if position is None:
        return 0, 0
    vector = _fb_deref(data, position)
    length = struct.unpack_from("<I", data, vector)[0]
    if vector + 4 + 4 * length > len(data):
        raise ValueError("vector runs past the end of the file")
    return vector + 4, length


def _fb_vector_i32(data, table, index):
    start, length = _fb_vector(data, table, index)
    return list(struct.unpack_from("<%di" % length, data, start)) if length else []


def _fb_vector_tables(data, table, index):
    start, length = _fb_vector(data, table, index)
    return [_fb_deref(data, start + 4 * i) for i in range(length)]


def _fb_string(data, table, index):
    position = _fb_field(data, table, index)
    if position is None:
        return ""
    string = _fb_deref(data, position)
    length = struct.unpack_from("<I", data, string)[0]
    if string + 4 + length > len(data):
        raise ValueError("string runs past the end of the file")
    return data[string + 4:string + 4 + length].decode("utf-8")


COMMANDS = {"compile": compile_model, "simulate": simulate}

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
