"""tflite -> K210 kmodel (nncase 1.9, uint8 post-training quantisation) and the nncase simulator,
called from the TensorFlow side of the pipeline.

nncase never runs in this process: TensorFlow and nncase break each other in one process, and
the compiler segfaults on a bad tflite. Each call starts `python -m host.nncase_stage`, passes
arrays through .npy/.npz files in a temporary directory, and turns a crash, a hang or an
nncase error into a one-line UserError that says what to do.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile

import numpy as np

from host import lifeline
from host.cli import REPO_ROOT
from host.errors import UserError
from host.pixels import INPUT_SCALES

CALIBRATE_METHODS = ("no_clip", "l2", "kld_m0", "kld_m1", "kld_m2", "cdf")

# Measured here: 10 samples at 224x320 take 1-36 s depending on the method (kld_m1 slowest),
# and time grows linearly with samples; 15 min covers a few hundred images with any method.
COMPILE_TIMEOUT = 900
# ~0.1-0.6 s per 224x320 run here, plus ~2 s start-up; generous for a loaded 2-core machine.
SIMULATE_TIMEOUT_BASE = 60
SIMULATE_TIMEOUT_PER_INPUT = 10


def nncase_scale_params(input_scale):
    """design.md "Input scales" -> nncase's input_range, mean, std (nncase maps the raw 0..255
    uint8 input to input_range, then applies (x - mean) / std)."""
    scale = input_scale.get("scale")
    mean = [float(v) for v in input_scale.get("mean", [0.0, 0.0, 0.0])]
    std = [float(v) for v in input_scale.get("std", [1.0, 1.0, 1.0])]
    if scale not in INPUT_SCALES:
        raise UserError("unknown input scale %r: use one of %s" % (scale, ", ".join(INPUT_SCALES)))
    if len(mean) not in (1, 3) or len(std) != len(mean) or min(std) <= 0:
        raise UserError("input scale needs 3 (RGB) or 1 (gray) mean and std values (std > 0); "
                        "got mean %s std %s" % (mean, std))
    if scale != "mean-std" and (set(mean) != {0.0} or set(std) != {1.0}):
        raise UserError("input scale %r ignores mean/std, but mean %s std %s were given: use scale "
                        "'mean-std' for (x/255 - mean) / std" % (scale, mean, std))
    input_range = {"0-1": [0.0, 1.0], "-1-1": [-1.0, 1.0], "0-255": [0.0, 255.0],
                   "mean-std": [0.0, 1.0]}[scale]
    return {"input_range": input_range, "mean": mean, "std": std}


def compile_kmodel(tflite_path, kmodel_path, calib_u8_nchw, input_scale,
                   calibrate_method="no_clip", dump_dir=None, timeout=COMPILE_TIMEOUT):
    """Compile `tflite_path` to a V5 kmodel at `kmodel_path` for the K210: input uint8
    [1, 3, H, W] raw RGB (nncase scales it per `input_scale`), outputs float32 NCHW.

    calib_u8_nchw: uint8 [N, 3, H, W], the calibration images as the board sees them.
    dump_dir: if given, nncase's op placement and schedule files go there (host.k210fit).
    Returns the stage's result: kmodel, kmodel_size, version, compiler, memory {input, output,
    data, model, total} in bytes, inputs/outputs [{name, dtype, shape}] of the kmodel,
    tflite_inputs/tflite_outputs, calibrate_method, samples, input_range, mean, std,
    compile_seconds, dump_dir, log (the compiler's printed output).
    """
    calib = _check_u8_nchw(calib_u8_nchw, "calibration data")
    if calibrate_method not in CALIBRATE_METHODS:
        raise UserError("unknown calibrate method %r: use one of %s"
                        % (calibrate_method, ", ".join(CALIBRATE_METHODS)))
    if not os.path.isfile(tflite_path):
        raise UserError("tflite model not found: %s" % tflite_path)
    params = nncase_scale_params(input_scale)
    with tempfile.TemporaryDirectory(prefix="k210-nncase-") as work:
        calib_path = os.path.join(work, "calib.npy")
        np.save(calib_path, calib)
        request = dict(params, tflite=os.path.abspath(tflite_path),
                       kmodel=os.path.abspath(kmodel_path), calib=calib_path,
                       calibrate_method=calibrate_method,
                       dump_dir=os.path.abspath(dump_dir) if dump_dir else None)
        what = "compiling %s" % tflite_path
        return _run_stage("compile", request, work, timeout, what)


def simulate(kmodel_path, inputs_u8_nchw, timeout=None):
    """Run the kmodel in nncase's simulator on each uint8 [3, H, W] image of `inputs_u8_nchw`
    ([N, 3, H, W]). Returns outputs[i][j]: float32 array of output j for input i, in the
    kmodel's own shape and layout (NCHW, e.g. [1, C, H, W])."""
    return simulate_with_stats(kmodel_path, inputs_u8_nchw, timeout)[0]


def simulate_with_stats(kmodel_path, inputs_u8_nchw, timeout=None):
    """simulate() plus the stage's stats: {run_ms: [per input], load_ms, outputs: [{dtype,
    shape}]}."""
    inputs = _check_u8_nchw(inputs_u8_nchw, "simulator input")
    if not os.path.isfile(kmodel_path):
        raise UserError("kmodel not found: %s" % kmodel_path)
    if timeout is None:
        timeout = SIMULATE_TIMEOUT_BASE + SIMULATE_TIMEOUT_PER_INPUT * len(inputs)
    with tempfile.TemporaryDirectory(prefix="k210-nncase-") as work:
        inputs_path = os.path.join(work, "inputs.npy")
        outputs_path = os.path.join(work, "outputs.npz")
        np.save(inputs_path, inputs)
        request = {"kmodel": os.path.abspath(kmodel_path), "inputs": inputs_path,
                   "outputs": outputs_path}
        stats = _run_stage("simulate", request, work, timeout, "simulating %s" % kmodel_path)
        with np.load(outputs_path, allow_pickle=False) as npz:
            stacked = [npz["output_%d" % j] for j in range(len(stats["outputs"]))]
    outputs = [[o[i] for o in stacked] for i in range(len(inputs))]
    return outputs, stats


def _check_u8_nchw(array, what):
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[0] < 1 \
            or array.shape[1] not in (1, 3):
        raise UserError("%s must be uint8 [N, 3 or 1, H, W] (raw RGB or gray 0..255, NCHW, "
                        "N >= 1); got %s %s"
                        % (what, array.dtype, list(array.shape)))
    return np.ascontiguousarray(array)


def _run_stage(command, request, work, timeout, what):
    request_path = os.path.join(work, "request.json")
    result_path = os.path.join(work, "result.json")
    request["log"] = os.path.join(work, "nncase.log")
    with open(request_path, "w") as f:
        json.dump(request, f)
    argv = [sys.executable, "-m", "host.nncase_stage", command, request_path, result_path]
    # cwd = the temporary directory: without dump_dir nncase still writes kmodel_info.txt there
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p))
    try:
        proc = subprocess.run(argv, cwd=work, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                              preexec_fn=lifeline.die_with_parent)
    except subprocess.TimeoutExpired:
        raise UserError("nncase did not finish %s within %g s (last step: %s); use fewer "
                        "calibration images or calibrate method no_clip, or raise the timeout"
                        % (what, timeout, _last_step(request["log"])))
    if os.path.exists(result_path):
        with open(result_path) as f:
            result = json.load(f)
        if result["ok"]:
            return result
        if result["nncase"]:
            raise UserError(translate_nncase_error(result["error"], what, request))
        raise UserError(result["error"])
    raise UserError(_crash_message(proc, what, request))


def _crash_message(proc, what, request):
    code = proc.returncode
    # a negative code is the signal; 128 + signal when a shell sat in between
    signum = -code if code < 0 else code - 128 if code > 128 else None
    if signum == signal.SIGSEGV and "tflite" in request:
        return ("nncase crashed (segmentation fault) %s at step %s: the file is probably not a "
                "valid TensorFlow Lite model; regenerate it from the frozen graph"
                % (what, _last_step(request["log"])))
    if signum == signal.SIGKILL:
        return "nncase was killed (SIGKILL) %s: probably out of host memory" % what
    if signum:
        return "nncase crashed (signal %d) %s at step %s" % (signum, what,
                                                            _last_step(request["log"]))
    stderr = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    return "the nncase stage failed %s (exit %d): %s" % (what, code,
                                                         stderr[-1] if stderr else "no message")


def _last_step(log_path):
    """The last progress line the compiler printed ("4.3. Quantize graph..."), for crash and
    timeout messages."""
    try:
        with open(log_path, "rb") as f:
            lines = [l.strip() for l in f.read().decode("utf-8", "replace").splitlines()]
    except OSError:
        return "unknown"
    steps = [l for l in lines if l[:1].isdigit() and l.endswith("...")]
    return repr(steps[-1]) if steps else "before the first step"


# nncase RuntimeError text -> what the user should do
def translate_nncase_error(message, what, request):
    message = " ".join(message.split())  # nncase messages span lines; ours are one line
    if "Unsupported tflite opcode" in message:
        op = message.split("Unsupported tflite opcode:", 1)[-1].strip() or message
        return ("the model uses the TensorFlow Lite op %s, which nncase 1.9 does not support for "
                "the K210; replace it in the TF graph (e.g. ELU -> leaky ReLU)" % op)
    if "Shapes must be same" in message:
        return ("nncase rejected a tensor shape %s (%s): the input size given does not match "
                "the model (check --height/--width; height comes first), or the graph uses an op "
                "nncase cannot shape for the K210, such as a transposed convolution"
                % (what, message))
    if "Allocator has ran out of memory" in message:
        return ("the model does not fit the K210's 2 MiB KPU RAM (%s): reduce the input size, "
                "the feature map sizes (downsample earlier) or the channel counts" % what)
    if "Invalid tflite model" in message:
        return ("%s is not a valid TensorFlow Lite model (nncase's verifier rejected it); "
                "regenerate it from the frozen graph" % request.get("tflite"))
    if "Invalid model indentifier" in message:
        return "not a kmodel: %s: nncase does not recognise the file" % request.get("kmodel")
    return "nncase failed %s: %s" % (what, message)
