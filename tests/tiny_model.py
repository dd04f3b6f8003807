"""A tiny real model for the reliability tests: the frozen graph of `bench/tiny_model.py
--small` (16x16 RGB -> 8x8x5, the seed user's `grid` layout; the bench's long evaluations use
the same), calibration images, and `host/convert.py` run on it, so the virtual board's KPU
time per image is negligible and thousands of frames cross the line in seconds. TensorFlow
runs in a subprocess (this pytest process may host nncase users)."""
import os
import subprocess
import sys

import numpy as np
from PIL import Image

H, W = 16, 16
OUTPUT = "small/output"   # bench/tiny_model.py SMALL_OUTPUT (not imported: it imports TF)


def images(directory, n, seed, size=(W, H), smooth=True):
    """n PNGs of random content (blobs of colour when smooth, else noise)."""
    os.makedirs(str(directory), exist_ok=True)
    rng = np.random.RandomState(seed)
    for i in range(n):
        if smooth:
            small = rng.randint(0, 256, (4, 4, 3)).astype(np.uint8)
            img = Image.fromarray(small).resize(size, Image.BILINEAR)
        else:
            img = Image.fromarray(rng.randint(0, 256, (size[1], size[0], 3)).astype(np.uint8))
        img.save(os.path.join(str(directory), "%05d.png" % i))
    return str(directory)


def build(directory, repo, env):
    """Frozen graph + calibration images + `host/convert.py`; returns the manifest path."""
    directory = str(directory)
    pb = os.path.join(directory, "tiny.pb")
    subprocess.run([sys.executable, os.path.join(repo, "bench", "tiny_model.py"), "--small",
                    pb], cwd=repo, env=env, check=True, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE, timeout=300)
    calib = images(os.path.join(directory, "calib"), 16, seed=11)
    out = os.path.join(directory, "build")
    proc = subprocess.run(
        [sys.executable, os.path.join(repo, "host", "convert.py"), "--frozen-pb", pb,
         "--input-size", "%dx%d" % (H, W), "--output-node", OUTPUT, "--decoder", "grid",
         "--threshold", "0.5", "--calib-dir", calib, "--out", out],
        cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError("tiny model conversion failed: %s" % proc.stderr[-2000:])
    return os.path.join(out, "manifest.json")
