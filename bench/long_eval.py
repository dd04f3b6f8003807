#!/usr/bin/env python
"""Long evaluations (issue 14): `host/serial_eval.py` as users run it, on N generated images,
for each N of the spec: peak resident memory of the serial_eval process and images/s.

  python bench/long_eval.py SPEC.json OUT.json

SPEC: {"manifest": a small model's manifest (bench/tiny_model.py --small: 16x16 input, so
10,000 images cross a 1.5 Mbaud line in minutes), "counts": [1000, 10000], "baud",
"state": the virtual board's directory, "images": where the images are generated}.
Peak RSS is the serial_eval process's VmHWM (/proc), read every 20 ms until it exits (its
virtual board and KPU worker are other processes, not counted), and report.json's
`host.peak_rss_mb` (the same before the report files are written). This process imports
neither TensorFlow nor nncase.
"""
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from host import manifest as manifest_mod  # noqa: E402
from host.devconfig import DEFAULT_READ_BUF_LEN  # noqa: E402
from link import provision  # noqa: E402


def generate(directory, n, width, height, seed=7):
    """n PNGs of random pixels at the model's input size (one file per image, as a test set)."""
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    rng = np.random.RandomState(seed)
    for i in range(n):
        Image.fromarray(rng.randint(0, 256, (height, width, 3)).astype(np.uint8)).save(
            os.path.join(directory, "%05d.png" % i))


def vm_hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run_measured(argv, log_path, env=None, timeout=None):
    """Run argv (stdout and stderr to log_path) -> (exit code, wall seconds, peak resident
    memory in MB: the child's VmHWM, sampled until it exits; VmHWM only grows, so the last
    sample is the peak but for its last instants). Shared with tests/test_eval_memory.py."""
    peak = 0
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            if timeout is not None and time.monotonic() - t0 > timeout:
                proc.kill()
                proc.wait()
                raise RuntimeError("%s did not end within %d s" % (argv[1], timeout))
            try:
                peak = max(peak, vm_hwm_kb(proc.pid))
            except OSError:        # it has just ended
                pass
            time.sleep(0.02)      # the sampling period, not a wait for a condition
    return proc.returncode, time.monotonic() - t0, peak / 1024.0


def run_eval(spec, images, out, log_path):
    """serial_eval on `images`; -> (wall seconds, peak RSS MB by VmHWM, report)."""
    argv = [sys.executable, os.path.join(REPO, "host", "serial_eval.py"),
            "--manifest", spec["manifest"], "--images", images, "--out", out,
            "--port", "virtual", "--vboard-state", spec["state"], "--baud", str(spec["baud"]),
            "--no-progress", "--min-f1", "0", "--min-cos", "0"]
    shutil.rmtree(out, ignore_errors=True)
    code, wall, peak = run_measured(argv, log_path)
    if code != 0:
        with open(log_path) as f:
            raise SystemExit("serial_eval failed (exit %d): %s" % (code, f.read()[-2000:]))
    with open(os.path.join(out, "report.json")) as f:
        report = json.load(f)
    return wall, peak, report


def main(argv):
    with open(argv[0]) as f:
        spec = json.load(f)
    manifest = manifest_mod.load(spec["manifest"])
    width, height = manifest["input"]["width"], manifest["input"]["height"]
    provision(spec["state"], manifest, spec["baud"], DEFAULT_READ_BUF_LEN)
    rows = []
    for n in spec["counts"]:
        images = os.path.join(spec["images"], "images-%d" % n)
        generate(images, n, width, height)
        out = os.path.join(spec["images"], "out-%d" % n)
        load = os.getloadavg()[0]
        wall, peak, report = run_eval(spec, images, out,
                                      os.path.join(spec["images"], "serial_eval-%d.log" % n))
        s, link = report["summary"], report["link"]
        rows.append({"images": n, "wall_seconds": round(wall, 1),
                     "images_per_second": n / wall,
                     "link_images_per_second": link["images_per_second"],
                     "link_efficiency": link["efficiency"],
                     "peak_rss_mb": round(peak, 1),
                     "peak_rss_mb_before_report": report["host"]["peak_rss_mb"],
                     "compared": s["compared"], "failed": s["failed"],
                     "input_crc_equal": s["input_crc"]["equal"],
                     "payload_bytes_per_image": link["payload_bytes"] / float(n),
                     "loadavg": round(load, 2)})
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(images, ignore_errors=True)
        print("long eval: %d images in %.0f s = %.1f images/s, peak RSS %.1f MB"
              % (n, wall, n / wall, peak))
        sys.stdout.flush()
    first, last = rows[0], rows[-1]
    result = {"model": {"input": [width, height], "kmodel_bytes": manifest["kmodel"]["size"]},
              "baud": spec["baud"], "runs": rows,
              "tf_batch": report["host"]["tf_batch"],
              "max_images_in_memory": report["host"]["max_images_in_memory"],
              "rss_growth": last["peak_rss_mb"] / first["peak_rss_mb"] - 1.0}
    with open(argv[1], "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
