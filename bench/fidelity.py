"""Fidelity per calibration method (issue 6, item 4): float TF vs the kmodel (nncase's
simulator; for `--firmware maixpy-v4` the V4 kmodel from ncc v0.2 in `ncc infer`) on the
held-out calibration images, for each `--calibrate-method`.

Runs as its own process (TensorFlow; nncase in host.quantize's subprocesses, as always):
`python bench/fidelity.py RESULT.json METHODS -- CONVERT ARGS...`, METHODS comma-separated.

It runs `host/convert.py`'s own pipeline (host.pipeline.build) with `--calibrate-method auto`
over METHODS (pipeline.AUTO_METHODS set to them) into a scratch directory, and records what
the pipeline computes for every candidate (host.pipeline._compare is wrapped, not replaced):
per output cos, l2r, max-abs, the detection P/R/F1 of kmodel boxes vs float boxes, and the
time of the compile (host.quantize.compile_kmodel, host.ncc.compile_kmodel) and of the
held-out simulation (host.quantize.simulate, host.ncc.infer).
"""
import json
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main(argv):
    out_path, methods = argv[0], [m for m in argv[1].split(",") if m]
    convert_argv = argv[argv.index("--") + 1:]
    from host import convert, freeze, ncc, pipeline, quantize
    opts = convert.options(convert_argv + ["--calibrate-method", "auto"])
    opts.input_hw = freeze.parse_size(opts.input_size)
    pipeline.AUTO_METHODS = pipeline.AUTO_METHODS_NCC = tuple(methods)

    rows = {}
    current = [None]
    compare = pipeline._compare

    def timed_compile(compile_kmodel):
        def timed(*args, **kwargs):
            method = kwargs.get("calibrate_method")
            current[0] = method
            t = time.perf_counter()
            result = compile_kmodel(*args, **kwargs)
            rows[method] = {"method": method, "compile_seconds": time.perf_counter() - t,
                            "kmodel_bytes": result.get("kmodel_size"),
                            "kmodel_version": result.get("version")}
            return result
        return timed

    def timed_simulate(simulate):
        def timed(*args, **kwargs):
            t = time.perf_counter()
            result = simulate(*args, **kwargs)
            row = rows[current[0]]
            # a V4 kmodel runs twice: ncc's activation tables and the exact ones
            row["simulate_seconds"] = row.get("simulate_seconds", 0.0) + time.perf_counter() - t
            return result
        return timed

    evaluations = {}

    def recorded_compare(*args, **kwargs):
        evaluation = compare(*args, **kwargs)
        evaluations.setdefault(current[0], []).append(evaluation)
        return evaluation

    def record(row, evaluation):
        out = evaluation["outputs"][0]
        row.update({"cos": evaluation["mean_cos"], "l2r": evaluation["mean_l2r"],
                    "max_abs": out["max_abs"], "worst_max_abs": out.get("worst_max_abs"),
                    "min_cos": out.get("min_cos"), "samples": out.get("samples")})
        det = evaluation.get("detection")
        if det:
            row.update({"f1": det["f1"], "precision": det["precision"],
                        "recall": det["recall"], "float_boxes": det.get("float_boxes"),
                        "kmodel_boxes": det.get("kmodel_boxes")})

    quantize.compile_kmodel = timed_compile(quantize.compile_kmodel)
    quantize.simulate = timed_simulate(quantize.simulate)
    ncc.compile_kmodel = timed_compile(ncc.compile_kmodel)
    ncc.infer = timed_simulate(ncc.infer)
    pipeline._compare = recorded_compare
    scratch = tempfile.mkdtemp(prefix="k210-bench-fidelity-")
    opts.out = os.path.join(scratch, "out")
    t = time.perf_counter()
    try:
        report = pipeline.build(opts, lambda text: None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for method, candidates in evaluations.items():
        # the pipeline keeps the lower l2r of ncc's and the exact activation tables (V4)
        record(rows[method], min(candidates, key=lambda e: e["mean_l2r"]))
    tables = report["quantization"].get("activation_tables")
    if tables:
        rows[report["quantization"]["calibrate_method"]]["activation_tables"] = tables["used"]
    result = {"methods": [rows[m] for m in methods if m in rows],
              "chosen": report["quantization"]["calibrate_method"],
              "input": [opts.input_hw[0], opts.input_hw[1]],
              "calibration_images": report["quantization"]["calibration_images"],
              "holdout_images": report["quantization"]["holdout_images"],
              "seconds": time.perf_counter() - t}
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
