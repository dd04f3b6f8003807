"""The older `ncc` command-line compilers, for firmware that cannot load V5 kmodels:
ncc v0.1.x -> kmodel V3 (all MaixPy builds), ncc v0.2.0 -> kmodel V4 (MaixPy full / kmodel_v4
builds, CanMV main).

These binaries are on no package registry: the user downloads a kendryte/nncase release and
points the toolkit at it (--ncc PATH or the NCC environment variable). The command lines are
the documented ones (docs/nncase.md); they were not run here, as no binary exists on this
machine. Calibration images are written as PNGs at the model's exact size, so ncc's own resize
is a no-op and it calibrates on the same board pixels as the nncase 1.9 path.
"""
import os
import re
import shutil
import subprocess
import tempfile
import time

import numpy as np
from PIL import Image

from host import kmodel
from host.errors import UserError

KMODEL_VERSION = {"0.1": 3, "0.2": 4}
TIMEOUT = 1800  # ncc v0.2's layout solver alone may take 60 s per allocator


def find_ncc(path=None):
    """The ncc binary: `path`, else $NCC, else `ncc` on PATH."""
    candidate = path or os.environ.get("NCC") or shutil.which("ncc")
    if not candidate:
        raise UserError("no ncc binary: download nncase v0.2.0 (kmodel V4) or v0.1.x (V3) from "
                        "the kendryte/nncase releases and pass --ncc PATH or set NCC=PATH")
    if not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
        raise UserError("ncc %s is not an executable file" % candidate)
    return candidate


def detect_version(ncc):
    """'0.1' or '0.2', from the help text (v0.2 has `compile` and `infer` subcommands; v0.1 has
    the `k210model` output format) or else the version number ncc prints."""
    help_text = _run_text([ncc, "--help"])
    if "infer" in help_text and "compile" in help_text:
        return "0.2"
    if "k210model" in help_text or "postprocess" in help_text:
        return "0.1"
    match = re.search(r"\b0\.([12])\.\d+", _run_text([ncc, "--version"]))
    if match:
        return "0." + match.group(1)
    raise UserError("cannot tell which ncc %s is (neither its --help nor --version looks like "
                    "nncase v0.1 or v0.2)" % ncc)


def scale_args(input_scale, ncc_version):
    """design.md input scales -> ncc options. ncc reads dataset images as RGB in [0, 1]; v0.2
    then applies (x - mean) / std with one mean and std for all channels; v0.1 only knows
    0..1 and -1..1 (`--postprocess`)."""
    scale = input_scale["scale"]
    if ncc_version == "0.1":
        if scale == "0-1":
            return []
        if scale == "-1-1":
            return ["--postprocess", "n1to1"]
        raise UserError("ncc v0.1 supports input scales 0-1 and -1-1 only, not %r; use ncc v0.2 "
                        "(kmodel V4)" % scale)
    if scale == "0-1":
        mean, std = 0.0, 1.0
    elif scale == "-1-1":
        mean, std = 0.5, 0.5
    elif scale == "0-255":
        mean, std = 0.0, 1.0 / 255.0
    elif scale == "mean-std":
        means, stds = set(input_scale["mean"]), set(input_scale["std"])
        if len(means) != 1 or len(stds) != 1:
            raise UserError("ncc takes one mean and std for all channels, got mean %s std %s; use "
                            "the nncase 1.9 (V5) path for per-channel values"
                            % (input_scale["mean"], input_scale["std"]))
        mean, std = float(means.pop()), float(stds.pop())
    else:
        raise UserError("unknown input scale %r" % scale)
    return ["--input-mean", repr(mean), "--input-std", repr(std)]


def compile_kmodel(tflite_path, kmodel_path, dataset, input_scale, ncc=None,
                   calibrate_method=None, timeout=TIMEOUT):
    """Compile with ncc v0.1 (-> V3) or v0.2 (-> V4). `dataset`: a directory of calibration
    images, or uint8 [N, 3, H, W] board pixels (written as PNGs). Returns {kmodel, kmodel_size,
    version, compiler, compile_seconds, log}."""
    ncc = find_ncc(ncc)
    ncc_version = detect_version(ncc)
    with tempfile.TemporaryDirectory(prefix="k210-ncc-") as work:
        dataset_dir = dataset if isinstance(dataset, str) else _write_images(dataset, work)
        if ncc_version == "0.1":
            argv = [ncc, "-i", "tflite", "-o", "k210model", "--dataset", dataset_dir]
            argv += scale_args(input_scale, ncc_version) + [tflite_path, kmodel_path]
        else:
            argv = [ncc, "compile", tflite_path, kmodel_path, "-i", "tflite", "-t", "k210",
                    "--dataset", dataset_dir, "--inference-type", "uint8"]
            argv += scale_args(input_scale, ncc_version)
            if calibrate_method:
                argv += ["--calibrate-method", calibrate_method]
        started = time.time()
        log = _run_checked(argv, timeout, "compiling %s" % tflite_path)
    info = kmodel.read(kmodel_path)
    if info["version"] != KMODEL_VERSION[ncc_version]:
        raise UserError("ncc %s made a V%d kmodel, expected V%d: is it really nncase v%s?"
                        % (ncc, info["version"], KMODEL_VERSION[ncc_version], ncc_version))
    return {"kmodel": kmodel_path, "kmodel_size": info["size"], "version": info["version"],
            "compiler": "ncc v%s (%s)" % (ncc_version, ncc),
            "compile_seconds": round(time.time() - started, 3), "log": log}


def infer(kmodel_path, inputs_u8_nchw, ncc=None, timeout=TIMEOUT):
    """Run a V4 kmodel on the host with `ncc infer` (v0.2 only). Returns outputs[i][j]: a flat
    array (V4 stores no output shapes: reshape to the CHW shape TF gives) of output j for
    input i, in the kmodel's dtype."""
    ncc = find_ncc(ncc)
    if detect_version(ncc) != "0.2":
        raise UserError("ncc v0.1 cannot run kmodels on the host; use ncc v0.2 (kmodel V4)")
    info = kmodel.read(kmodel_path)
    if info["version"] != 4:
        raise UserError("ncc infer runs V4 kmodels; %s is V%d" % (kmodel_path, info["version"]))
    inputs = np.asarray(inputs_u8_nchw)
    with tempfile.TemporaryDirectory(prefix="k210-ncc-") as work:
        dataset_dir = _write_images(inputs, work)
        out_dir = os.path.join(work, "out")
        _run_checked([ncc, "infer", kmodel_path, out_dir, "--dataset", dataset_dir], timeout,
                     "running %s" % kmodel_path)
        results = []
        for i in range(len(inputs)):
            # ncc writes OUT_DIR/<image stem>.bin: all outputs back to back
            with open(os.path.join(out_dir, "%05d.bin" % i), "rb") as f:
                raw = f.read()
            results.append(_split_outputs(raw, info["outputs"], kmodel_path))
    return results


def _split_outputs(raw, outputs, kmodel_path):
    expected = sum(o["size"] for o in outputs)
    if len(raw) != expected:
        raise UserError("ncc infer wrote %d bytes for %s, the kmodel declares %d"
                        % (len(raw), kmodel_path, expected))
    arrays, offset = [], 0
    for output in outputs:
        chunk = raw[offset:offset + output["size"]]
        arrays.append(np.frombuffer(chunk, dtype=output["dtype"]).copy())
        offset += output["size"]
    return arrays


def _write_images(images_u8_nchw, work):
    images = np.asarray(images_u8_nchw)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3 or not len(images):
        raise UserError("ncc images must be uint8 [N, 3, H, W]; got %s %s"
                        % (images.dtype, list(images.shape)))
    directory = os.path.join(work, "images")
    os.makedirs(directory)
    for i, image in enumerate(images):
        # PNG: lossless, and ncc v0.2 reads it with OpenCV at the model size (no resize)
        Image.fromarray(image.transpose(1, 2, 0)).save(os.path.join(directory, "%05d.png" % i))
    return directory


def _run_text(argv):
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError("cannot run %s: %s" % (argv[0], exc))
    return proc.stdout.decode("utf-8", "replace")


def _run_checked(argv, timeout, what):
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UserError("ncc did not finish %s within %d s" % (what, timeout))
    except OSError as exc:
        raise UserError("cannot run %s: %s" % (argv[0], exc))
    log = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        lines = [l.strip() for l in log.splitlines() if l.strip()]
        raise UserError("ncc failed %s (exit %d): %s" % (what, proc.returncode,
                                                        lines[-1] if lines else "no output"))
    return log
