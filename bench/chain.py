"""The bare conversion chain (issue 6, item 3): freeze + tflite + nncase compile of the same
model as `make kmodel`, with nothing else (no BatchNorm check, no float reference, no held-out
simulation, no nncase dumps for the K210 fit report, no manifest/report, no staging).

`python bench/chain.py RESULT.json [--extras] -- CONVERT ARGS...` (e.g. --config
examples/face/convert.json). Uses the toolkit's own functions (host.freeze, host.tflite,
host.quantize) with the same options, calibration images (the same 3-of-4 split) and
calibration method, so the difference to `make kmodel` is exactly what make kmodel adds.
Writes its stage times; the orchestrator times the whole process (start-up and imports
included, as for make kmodel).

--extras: afterwards (not part of the bare chain's time), time what make kmodel adds one by
one: the BatchNorm check, the float reference on the held-out images, the nncase compile with
the dumps the K210 fit report reads, the held-out simulation, the K210 fit report.
"""
import json
import os
import sys
import tempfile
import time

T_START = time.perf_counter()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main(argv):
    out_path = argv[0]
    extras = "--extras" in argv[1:argv.index("--")]
    convert_argv = argv[argv.index("--") + 1:]
    timings = {}
    t = time.perf_counter()
    from host import convert, freeze, pipeline, pixels, quantize, tflite  # TensorFlow
    timings["imports"] = time.perf_counter() - t
    opts = convert.options(convert_argv)
    opts.input_hw = freeze.parse_size(opts.input_size)
    h, w = opts.input_hw
    input_scale = {"scale": opts.input_scale, "mean": opts.mean, "std": opts.std}

    t = time.perf_counter()
    calib_paths, holdout_paths = pipeline.split_calibration(
        pixels.list_images(opts.calib_dir), opts.min_calib)
    calib = pixels.to_nchw(_stack([pixels.board_pixels(p, w, h) for p in calib_paths]))
    timings["calibration images"] = time.perf_counter() - t

    t = time.perf_counter()
    frozen = pipeline.freeze_model(opts)
    timings["freeze"] = time.perf_counter() - t

    t = time.perf_counter()
    tflite_bytes = tflite.convert(frozen.graph_def, frozen.input_node, frozen.output_nodes,
                                  opts.input_hw, frozen.channels)
    timings["tflite"] = time.perf_counter() - t

    with tempfile.TemporaryDirectory(prefix="k210-bench-chain-") as work:
        tflite_path = os.path.join(work, "model.tflite")
        kmodel_path = os.path.join(work, "model.kmodel")
        with open(tflite_path, "wb") as f:
            f.write(tflite_bytes)
        t = time.perf_counter()
        quantize.compile_kmodel(tflite_path, kmodel_path, calib, input_scale,
                                calibrate_method=opts.calibrate_method)
        timings["nncase compile"] = time.perf_counter() - t
        chain_seconds = time.perf_counter() - T_START
        result = {"timings": timings, "seconds_in_process": chain_seconds}
        if extras:
            result["extras"] = _extras(opts, frozen, calib, calib_paths, holdout_paths,
                                       input_scale, tflite_path, work)
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
    return 0


def _stack(arrays):
    import numpy as np
    return np.stack(arrays)


def _extras(opts, frozen, calib, calib_paths, holdout_paths, input_scale, tflite_path, work):
    """What make kmodel adds to the bare chain, each timed alone."""
    from host import firmware, k210fit, pipeline, pixels, quantize
    from host.tf_infer import FrozenRunner
    h, w = opts.input_hw
    extras = {}
    warn = []
    t = time.perf_counter()
    calib_u8 = _stack([pixels.board_pixels(p, w, h) for p in calib_paths])
    holdout_u8 = _stack([pixels.board_pixels(p, w, h) for p in holdout_paths])
    extras["load held-out images"] = time.perf_counter() - t
    t = time.perf_counter()
    pipeline.batchnorm_check(frozen, calib_u8, input_scale, opts, warn.append)
    extras["batchnorm check"] = time.perf_counter() - t
    t = time.perf_counter()
    runner = FrozenRunner(frozen.graph_def, frozen.input_node, frozen.output_nodes)
    runner.run(pixels.model_input(holdout_u8, input_scale))
    runner.close()
    extras["float reference"] = time.perf_counter() - t
    dump = os.path.join(work, "dump")
    kmodel_path = os.path.join(work, "dumped.kmodel")
    t = time.perf_counter()
    compiled = quantize.compile_kmodel(tflite_path, kmodel_path, calib, input_scale,
                                       calibrate_method=opts.calibrate_method, dump_dir=dump)
    extras["nncase compile with dumps"] = time.perf_counter() - t
    t = time.perf_counter()
    quantize.simulate(kmodel_path, pixels.to_nchw(holdout_u8))
    extras["held-out simulation"] = time.perf_counter() - t
    t = time.perf_counter()
    k210fit.fit_report(dump, compiled["memory"], compiled["inputs"][0]["shape"],
                       firmware.get_profile(opts.firmware), opts.flash_address)
    extras["K210 fit report"] = time.perf_counter() - t
    return extras


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
