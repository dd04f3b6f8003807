#!/usr/bin/env python
"""Run images through the K210 over serial and compare with TensorFlow on the host.

The board (a real one, or the virtual K210) runs the kmodel of build/manifest.json on the
images; the host runs the frozen TensorFlow graph on exactly the pixels the board's KPU
received; the output tensors, detections and input CRCs are compared.

Examples:
  python host/serial_eval.py                             # virtual board, example eval set
  python host/serial_eval.py --port /dev/ttyUSB0
  python host/serial_eval.py --port socket://192.168.1.7:3333 --payload jpeg
  python host/serial_eval.py --port /dev/ttyUSB0,/dev/ttyUSB1   # shard over two boards
  python host/serial_eval.py --port virtual:2                   # two virtual boards

Every verified board result is appended to OUT/journal.jsonl as it arrives: Ctrl-C or SIGTERM
writes a partial report of what was done (exit 130) and `--resume` continues from there.

Exit codes: 0 fidelity within the thresholds, 1 below them, 2 usage or I/O error,
130 interrupted (partial report written).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from host import cli, eval_inputs  # noqa: E402
from host.cli import run  # noqa: E402
from host.errors import UserError  # noqa: E402


def parser():
    p = cli.ArgumentParser(prog="host/serial_eval.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", default="virtual",
                   help="device path, pyserial URL (socket://host:port, rfc2217://host:port), "
                   "virtual (start the virtual K210), virtual:N, or several comma-separated "
                   "ports to shard the images (default virtual)")
    p.add_argument("--baud", type=int, default=1500000,
                   help="serve-mode baud rate (default 1500000; the board's config.json decides "
                   "and its serve banner is followed)")
    p.add_argument("--manifest", default=os.path.join("build", "manifest.json"),
                   help="manifest written by make kmodel (default build/manifest.json)")
    p.add_argument("--images", default=os.path.join("examples", "face", "eval"),
                   help="folder of .jpg/.png/.bmp images (default examples/face/eval); other "
                   "sizes than the model input are resized")
    p.add_argument("--out", default=os.path.join("build", "eval"),
                   help="report directory (default build/eval/)")
    p.add_argument("--min-f1", type=float, default=0.98,
                   help="minimum board-vs-host detection F1 (default 0.98)")
    p.add_argument("--min-cos", type=float, default=0.999,
                   help="minimum mean output cosine similarity (default 0.999)")
    p.add_argument("--payload", default="auto", choices=eval_inputs.CHOICES,
                   help="auto (default): rgb565z where the board announces it, else rgb565 "
                   "(grayscale models: gray8); rgb565z: exact pixels deflated (~1.5-3x fewer "
                   "bytes, inflated on the board; boards without uzlib get rgb565); rgb565: "
                   "exact pixels; jpeg: ~10x fewer bytes, decoded on the board (not exact); "
                   "gray8: a grayscale model's w*h luminance bytes (exact)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="first N images only")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for a silent board (connect, and between frames "
                   "during the run; default 10)")
    p.add_argument("--retries", type=int, default=10, metavar="N",
                   help="sends of one image at most when the line corrupts or loses it "
                   "(default 10); then the image is reported as failed")
    p.add_argument("--vboard-state", default=os.path.join("build", "vboard"),
                   help="state directory of the virtual board (default build/vboard; board k "
                   "of virtual:N uses DIR-k)")
    p.add_argument("--vboard-profile", default=None, metavar="FIRMWARE",
                   help="--port virtual: firmware profile the virtual board runs (default: the "
                   "manifest's firmware)")
    p.add_argument("--vboard-faults", default="", metavar="SPEC",
                   help="virtual boards only: inject faults on the line, e.g. "
                   "flip=0.01,drop=0.01,reset@500 (host/vboard/README.md)")
    p.add_argument("--vboard-seed", type=int, default=0, metavar="N",
                   help="virtual boards only: seed of the fault injection and log lines")
    p.add_argument("--vboard-log-rate", type=float, default=0.05, help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run: images whose verified result is in "
                   "OUT/journal.jsonl (same kmodel, image file, payload and decoder) are not "
                   "sent again; without it a run starts a new journal")
    return p


def main(argv):
    opts = parser().parse_args(argv)
    if opts.timeout <= 0:
        raise UserError("--timeout must be > 0 seconds")
    if not 0.0 <= opts.min_f1 <= 1.0 or not -1.0 <= opts.min_cos <= 1.0:
        raise UserError("--min-f1 must be in 0..1 and --min-cos in -1..1")
    if opts.baud <= 0:
        raise UserError("--baud must be a positive integer")
    if not 1 <= opts.retries <= 255:
        raise UserError("--retries must be 1..255")
    if opts.vboard_faults:
        from host.vboard import faults
        try:
            faults.parse_spec(opts.vboard_faults)
        except ValueError as exc:
            raise UserError("--vboard-faults: %s" % exc)
    from host import evaluate
    return evaluate.run(evaluate.Options(
        manifest=opts.manifest, port=opts.port, baud=opts.baud, images=opts.images,
        out=opts.out, min_f1=opts.min_f1, min_cos=opts.min_cos, payload=opts.payload,
        limit=opts.limit, timeout=opts.timeout, retries=opts.retries,
        vboard_state=opts.vboard_state, vboard_profile=opts.vboard_profile,
        vboard_faults=opts.vboard_faults,
        vboard_seed=opts.vboard_seed, vboard_log_rate=opts.vboard_log_rate,
        progress=not opts.no_progress, resume=opts.resume))


if __name__ == "__main__":
    run(main, crash_log="eval-error.log",
        crash_dir=lambda argv: cli.option_value(argv, "--out", parser().get_default("out")))
