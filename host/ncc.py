"""The older `ncc` command-line compilers, for firmware that cannot load V5 kmodels:
ncc v0.1.x -> kmodel V3 (all MaixPy builds), ncc v0.2.0 -> kmodel V4 (MaixPy full / kmodel_v4
builds, CanMV main).

These binaries are on no package registry. `make ncc` puts nncase v0.2.0-beta4's ncc at
.venv/bin/ncc (host/ncc_install.py), which `--firmware maixpy-v4`/`canmv` then use without
--ncc. Command lines and behaviour follow nncase v0.2.0-beta4's src/cli (compile.cpp,
inference.cpp) and src/data/dataset.cpp: an image dataset is read by OpenCV, resized to the
model input (a no-op here: calibration images are written at the model's exact size, so ncc
calibrates on the same board pixels as the nncase 1.9 path), scaled to [0, 1], then
(x - mean) / std; a uint8 kmodel input takes the image's bytes unscaled (`ncc infer`).
"""
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time

import numpy as np
from PIL import Image

from host import kmodel
from host.cli import REPO_ROOT
from host.errors import UserError

KMODEL_VERSION = {"0.1": 3, "0.2": 4}
# ncc v0.2's compile.cpp knows these two; kld_m*/cdf are nncase 1.x only
V02_CALIBRATE_METHODS = ("no_clip", "l2")
TIMEOUT = 1800  # ncc v0.2's layout solver alone may take 60 s per allocator
VENV_NCC = os.path.join(REPO_ROOT, ".venv", "bin", "ncc")
HOW_TO_GET = ("run `make ncc` (NCC=/path/to/ncc to check and install a binary you have, "
              "NCC_SRC=DIR to build it with DIR/build.sh, or nothing to download the official "
              "v0.2.0-beta4 release), or pass --ncc PATH")


def find_ncc(path=None):
    """The ncc binary: `path`, else $NCC, else .venv/bin/ncc (`make ncc`), else `ncc` on PATH."""
    candidate = path or os.environ.get("NCC") or (
        VENV_NCC if os.path.exists(VENV_NCC) else shutil.which("ncc"))
    if not candidate:
        raise UserError("no ncc binary (nncase v0.2.0 makes kmodel V4, v0.1.x V3): " + HOW_TO_GET)
    if not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
        raise UserError("ncc %s is not an executable file: %s" % (candidate, HOW_TO_GET))
    return os.path.abspath(candidate)


def detect_version(ncc):
    """'0.1' or '0.2', from the help text (v0.2 has `compile` and `infer` subcommands; v0.1 has
    the `k210model` output format) or else the version number ncc prints. v0.2's cli.cpp
    prints "version 0.2" for every v0.2.0 beta: the betas cannot be told apart."""
    help_text = _run_text([ncc, "--help"])
    if "infer" in help_text and "compile" in help_text:
        return "0.2"
    if "k210model" in help_text or "postprocess" in help_text:
        return "0.1"
    version_text = _run_text([ncc, "--version"])
    match = re.search(r"\b0\.([12])\b", version_text)
    if match:
        return "0." + match.group(1)
    shown = " ".join(version_text.split())[:80] or "nothing"
    raise UserError("ncc %s is not nncase v0.1 or v0.2 (its --version says %s): %s"
                    % (ncc, shown, HOW_TO_GET))


def require_v02(ncc):
    """The ncc binary, refused unless it is v0.2 (the one that writes V4 and runs `infer`)."""
    version = detect_version(ncc)
    if version != "0.2":
        raise UserError("ncc %s is nncase v%s (kmodel V%d); kmodel V4 needs ncc v0.2.0: %s"
                        % (ncc, version, KMODEL_VERSION[version], HOW_TO_GET))
    return ncc


def identity(ncc):
    """{"version", "sha256"} of the binary, for the manifest."""
    digest = hashlib.sha256()
    with open(ncc, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"version": detect_version(ncc), "sha256": digest.hexdigest()}


def for_firmware(profile, path=None, calibrate_method=None, input_scale=None):
    """The ncc binary `make kmodel` needs for firmware `profile` (host.firmware), or None when
    the firmware loads the pip nncase's V5 and no `path` was given. Refuses, before anything
    is compiled, a missing binary, one whose kmodel version the firmware cannot load, a
    calibrate method or an input scale (design.md) that ncc cannot take."""
    from host import firmware
    if path is None and 5 in profile["kmodel_versions"]:
        return None
    try:
        binary = find_ncc(path)
    except UserError as exc:
        raise UserError("firmware %s loads kmodel V%s only, made by ncc: %s"
                        % (profile.get("name", "custom"),
                           "/V".join(str(v) for v in profile["kmodel_versions"]), exc))
    version = detect_version(binary)
    firmware.check_loadable(profile, KMODEL_VERSION[version], 0)
    if version == "0.2" and calibrate_method not in V02_CALIBRATE_METHODS + ("auto", None):
        raise UserError("--calibrate-method %s: ncc v0.2 knows %s only (auto tries both)"
                        % (calibrate_method, " and ".join(V02_CALIBRATE_METHODS)))
    if version == "0.1" and calibrate_method not in ("no_clip", None):
        raise UserError("--calibrate-method %s: ncc v0.1 has no calibrate method option; use "
                        "no_clip" % calibrate_method)
    if input_scale is not None:
        scale_args(input_scale, version)
    return binary


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
    images, or uint8 [N, 3 or 1, H, W] board pixels (written as PNGs). The kmodel is checked before
    it is accepted (kmodel.parse: identifier, version, target, sizes). Returns {kmodel,
    kmodel_size, version, compiler, ncc {version, sha256}, compile_seconds, summary, log}."""
    ncc = find_ncc(ncc)
    ncc_version = detect_version(ncc)
    if ncc_version == "0.2" and calibrate_method and calibrate_method not in V02_CALIBRATE_METHODS:
        raise UserError("--calibrate-method %s: ncc v0.2 knows %s only"
                        % (calibrate_method, " and ".join(V02_CALIBRATE_METHODS)))
    with tempfile.TemporaryDirectory(prefix="k210-ncc-") as work:
        dataset_dir = dataset if isinstance(dataset, str) else _write_images(dataset, work)
        # ncc runs in `work` (its stray dumps land there): every path absolute
        tflite_abs, kmodel_abs = os.path.abspath(tflite_path), os.path.abspath(kmodel_path)
        dataset_dir = os.path.abspath(dataset_dir)
        if ncc_version == "0.1":
            argv = [ncc, "-i", "tflite", "-o", "k210model", "--dataset", dataset_dir]
            argv += scale_args(input_scale, ncc_version) + [tflite_abs, kmodel_abs]
        else:
            # --input-mean/--input-std always: without them ncc takes the input range from
            # the dataset, and a uint8 pixel would no longer mean what the TF graph expects
            argv = [ncc, "compile", tflite_abs, kmodel_abs, "-i", "tflite", "-o", "kmodel",
                    "-t", "k210", "--dataset", dataset_dir, "--dataset-format", "image",
                    "--inference-type", "uint8", "--input-type", "uint8"]
            argv += scale_args(input_scale, ncc_version)
            if calibrate_method:
                argv += ["--calibrate-method", calibrate_method]
        started = time.time()
        log = _run_checked(argv, timeout, "compiling %s" % tflite_path, cwd=work)
    info = check_kmodel(kmodel_path, KMODEL_VERSION[ncc_version], ncc)
    return {"kmodel": kmodel_path, "kmodel_size": info["size"], "version": info["version"],
            "compiler": "ncc v%s" % ncc_version, "ncc": identity(ncc),
            "compile_seconds": round(time.time() - started, 3), "summary": parse_summary(log),
            "info": info, "log": log}


def check_kmodel(kmodel_path, expected_version, ncc):
    """The kmodel ncc wrote, parsed and checked: its version and (V4) a K210 target whose
    nodes end where the file ends."""
    info = kmodel.read(kmodel_path)
    if info["version"] != expected_version:
        raise UserError("ncc %s made a V%d kmodel, expected V%d" % (ncc, info["version"],
                                                                  expected_version))
    if expected_version == 4:
        if info["target"] != "k210":
            raise UserError("ncc %s made a V4 kmodel for the %s target, not the K210"
                            % (ncc, info["target"]))
        if info["model_size"] != info["size"]:
            raise UserError("ncc %s wrote %d bytes, but the V4 kmodel's nodes end at byte %d"
                            % (ncc, info["size"], info["model_size"]))
    return info


def parse_summary(log):
    """ncc v0.2's printed "Working memory usage: N B" and SUMMARY ("0\toutput\t1x4x16x16")
    -> {"inputs": [{name, shape}], "outputs": [...], "working_memory": bytes or None}."""
    summary = {"inputs": [], "outputs": [], "working_memory": None}
    section = None
    for line in log.splitlines():
        text = line.strip()
        if text in ("INPUTS", "OUTPUTS"):
            section = text.lower()
            continue
        match = re.match(r"^\d+\t(\S+)\t(\d+(?:x\d+)*)$", line.strip("\r"))
        if section and match:
            summary[section].append({"name": match.group(1),
                                     "shape": [int(v) for v in match.group(2).split("x")]})
        memory = re.search(r"Working memory usage:\s*(\d+)", text)
        if memory:
            summary["working_memory"] = int(memory.group(1))
    return summary


def infer(kmodel_path, inputs_u8_nchw, ncc=None, timeout=TIMEOUT):
    """Run a V4 kmodel on the host with `ncc infer` (v0.2 only), the K210 runtime's kernels.
    Returns outputs[i][j]: a flat float32 array of output j for input i (V4 stores no output
    shapes: reshape to the CHW shape TF gives)."""
    ncc = require_v02(find_ncc(ncc))
    info = kmodel.read(kmodel_path)
    if info["version"] != 4:
        raise UserError("ncc infer runs V4 kmodels; %s is V%d" % (kmodel_path, info["version"]))
    return infer_checked(ncc, kmodel_path, info["outputs"], inputs_u8_nchw, timeout)


def infer_checked(ncc, kmodel_path, outputs, inputs_u8_nchw, timeout=TIMEOUT):
    """infer() with the binary and the kmodel already checked (`outputs`: the kmodel's output
    ranges, host.kmodel): one ncc process per call, nothing else (the virtual board's KPU)."""
    inputs = np.asarray(inputs_u8_nchw)
    if inputs.dtype != np.uint8 or inputs.ndim != 4 or not len(inputs):
        raise UserError("ncc infer inputs must be uint8 [N, C, H, W]; got %s %s"
                        % (inputs.dtype, list(inputs.shape)))
    with tempfile.TemporaryDirectory(prefix="k210-ncc-") as work:
        dataset_dir = os.path.join(work, "inputs")
        out_dir = os.path.join(work, "out")
        os.makedirs(dataset_dir)
        for i, image in enumerate(inputs):
            # raw: the planar uint8 bytes as the KPU takes them (dataset.cpp raw_dataset)
            with open(os.path.join(dataset_dir, "%05d.bin" % i), "wb") as f:
                f.write(np.ascontiguousarray(image).tobytes())
        _run_checked([ncc, "infer", os.path.abspath(kmodel_path), out_dir, "--dataset",
                      dataset_dir, "--dataset-format", "raw"], timeout,
                     "running %s" % kmodel_path, cwd=work)
        results = []
        for i in range(len(inputs)):
            # inference.cpp: OUT_DIR/<input stem>.bin, all outputs back to back
            with open(os.path.join(out_dir, "%05d.bin" % i), "rb") as f:
                raw = f.read()
            results.append(split_outputs(raw, outputs, kmodel_path))
    return results


def split_outputs(raw, outputs, kmodel_path):
    """ncc infer's output file -> one flat float32 array per output."""
    expected = sum(o["size"] for o in outputs)
    if len(raw) != expected:
        raise UserError("ncc infer wrote %d bytes for %s, the kmodel declares %d"
                        % (len(raw), kmodel_path, expected))
    arrays, offset = [], 0
    for output in outputs:
        chunk = raw[offset:offset + output["size"]]
        arrays.append(np.frombuffer(chunk, dtype=output["dtype"]).astype(np.float32))
        offset += output["size"]
    return arrays


def _write_images(images_u8_nchw, work):
    images = np.asarray(images_u8_nchw)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3) \
            or not len(images):
        raise UserError("ncc images must be uint8 [N, 3 or 1, H, W]; got %s %s"
                        % (images.dtype, list(images.shape)))
    directory = os.path.join(work, "images")
    os.makedirs(directory)
    for i, image in enumerate(images):
        # PNG: lossless, and ncc v0.2 reads it with OpenCV at the model size (no resize); a
        # gray PNG, which IMREAD_COLOR copies to B, G and R, and ncc's 1-channel input takes B
        # (src/data/dataset.cpp: image_dataset::process)
        hwc = image.transpose(1, 2, 0)
        Image.fromarray(hwc[..., 0] if hwc.shape[2] == 1 else hwc).save(
            os.path.join(directory, "%05d.png" % i))
    return directory


def _run_text(argv):
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError("cannot run %s: %s" % (argv[0], exc))
    return proc.stdout.decode("utf-8", "replace")


def _run_checked(argv, timeout, what, cwd=None):
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise UserError("ncc did not finish %s within %d s" % (what, timeout))
    except OSError as exc:
        raise UserError("cannot run %s: %s" % (argv[0], exc))
    log = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        line = error_line(log)
        raise UserError("ncc failed %s (exit %d): %s%s" % (what, proc.returncode, line,
                                                           _advice(line)))
    return log


def _advice(line):
    """What to do about the errors ncc v0.2 users meet most."""
    if "KPU allocator cannot allocate" in line:
        return (" (the model does not fit the K210's 2 MiB KPU RAM: reduce the input size, "
                "the feature map sizes or the channel counts)")
    if "Not supported tflite opcode" in line:
        return " (replace that op in the TF graph, e.g. ELU -> leaky ReLU)"
    return ""


def error_line(log):
    """The line of ncc's output that says what went wrong: cli.cpp prints an exception as
    "Fatal: ..." (e.g. "Fatal: Unsupported tflite opcode: ELU" names the op); else the last."""
    lines = [l.strip() for l in log.splitlines() if l.strip()]
    fatal = [l for l in lines if l.startswith("Fatal:") or l.startswith("error:")]
    return (fatal or lines or ["no output"])[-1]
