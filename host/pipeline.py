"""`make kmodel`: freeze -> BatchNorm check -> tflite -> nncase kmodel -> per-layer error ->
report -> manifest.

This process runs TensorFlow; nncase runs in its own process (host.quantize spawns it).
All artifacts are staged and moved into --out only when every step succeeded.
"""
import os
import shutil
import time

import numpy as np

from host import advice, atomic, bncheck, convert_report, firmware, freeze, k210fit, kmodel
from host import decoder_kinds, decode_agreement
from host import layer_error, manifest, metrics, ncc, ncc_act, pixels, quantize, report, tflite
from host.errors import UserError
from host.tf_infer import FrozenRunner

REPRODUCTION_SAMPLES = 8
AUTO_METHODS = ("no_clip", "l2", "kld_m2", "cdf")
AUTO_METHODS_NCC = ncc.V02_CALIBRATE_METHODS  # what ncc v0.2 knows


class Timer(object):
    def __init__(self):
        self.stages = {}

    def stage(self, name):
        timer = self

        class _Stage(object):
            def __enter__(self):
                self.start = time.time()

            def __exit__(self, *exc):
                timer.stages[name] = timer.stages.get(name, 0.0) + time.time() - self.start
        return _Stage()


def split_calibration(paths, min_calib, holdout_paths=None):
    """Every 4th calibration image is held out for the float-vs-kmodel report, unless a
    separate held-out folder is given."""
    if len(paths) < min_calib:
        raise UserError("calibration folder has %d image(s), fewer than --min-calib %d: add "
                        "representative images (nncase calibrates uint8 ranges on them)"
                        % (len(paths), min_calib))
    if holdout_paths:
        return list(paths), list(holdout_paths)
    return [p for i, p in enumerate(paths) if i % 4 != 3], paths[3::4]


def build(opts, log):
    """Run the whole conversion; returns the report dict. `log(text)` prints progress."""
    timer = Timer()
    warnings = []

    def warn(text):
        warnings.append(text)
        log("WARNING: " + text)

    h, w = opts.input_hw
    input_scale = {"scale": opts.input_scale, "mean": opts.mean, "std": opts.std}
    # Input checks first: nothing is written and no minute is spent before they pass.
    calib_paths, holdout_paths = split_calibration(
        pixels.list_images(opts.calib_dir, "calibration folder --calib-dir"), opts.min_calib,
        pixels.list_images(opts.holdout_dir, "--holdout-dir") if opts.holdout_dir else None)
    with timer.stage("load images"):
        calib_u8 = np.stack([pixels.board_pixels(p, w, h) for p in calib_paths])
        holdout_u8 = np.stack([pixels.board_pixels(p, w, h) for p in holdout_paths])
    _refuse_flash_problems(opts.flash_address, 0)
    profile = firmware.get_profile(opts.firmware)
    # nncase 1.9 writes V5; a firmware without V5 needs ncc: refused before compiling if absent
    ncc_binary = ncc.for_firmware(profile, opts.ncc, opts.calibrate_method, input_scale)
    if opts.ncc_layer_error and not ncc_binary:
        raise UserError("--ncc-layer-error measures kmodels built with ncc (--ncc, or a "
                        "--firmware that cannot load V5); for nncase's V5 the per-layer error "
                        "is on by default (--no-layer-error turns it off)")

    with timer.stage("freeze"):
        frozen = freeze_model(opts)
    log("frozen: %s -> %s (%s)" % (frozen.input_node, ", ".join(frozen.output_nodes),
                                   frozen.source))
    firmware.check_outputs(profile, len(frozen.output_nodes))
    if frozen.channels == 1:
        # a grayscale model: the KPU gets the GRAYSCALE Image's luminance (pixels.luminance)
        calib_u8, holdout_u8 = pixels.luminance(calib_u8), pixels.luminance(holdout_u8)
        input_scale = pixels.gray_input_scale(input_scale)
    with timer.stage("batchnorm check"):
        bn = batchnorm_check(frozen, calib_u8, input_scale, opts, warn)
    with timer.stage("tflite"):
        tflite_bytes = tflite.convert(frozen.graph_def, frozen.input_node, frozen.output_nodes,
                                      opts.input_hw, frozen.channels)
    runner = FrozenRunner(frozen.graph_def, frozen.input_node, frozen.output_nodes)
    with timer.stage("float reference"):
        float_outputs = runner.run(pixels.model_input(holdout_u8, input_scale))
    runner.close()
    output_info = [{"node": node, "tf_shape": [1] + list(out.shape[1:]),
                    "shape_chw": _chw_shape(out.shape)}
                   for node, out in zip(frozen.output_nodes, float_outputs)]
    decoder = _decoder_params(opts, output_info,
                              _output_op(frozen.graph_def, frozen.output_nodes[0]))

    with atomic.staged_dir(opts.out) as stage:
        pb_path = os.path.join(stage, "model.pb")
        tflite_path = os.path.join(stage, "model.tflite")
        kmodel_path = os.path.join(stage, "model.kmodel")
        atomic.write_bytes(pb_path, frozen.graph_def.SerializeToString())
        atomic.write_bytes(tflite_path, tflite_bytes)
        with timer.stage("nncase compile"):
            quant = _quantize(opts.calibrate_method, ncc_binary, tflite_path, kmodel_path,
                              calib_u8, holdout_u8, input_scale, float_outputs, decoder, stage,
                              log, ncc_act.activation_specs(frozen.graph_def) if ncc_binary
                              else None)
        layers = None
        if opts.layer_error and (opts.ncc_layer_error or not ncc_binary) \
                and quant["report"]["holdout_images"]:
            with timer.stage("per-layer error"):
                layers = _layer_error(opts, ncc_binary, frozen, input_scale, calib_u8,
                                      holdout_u8, quant, warn)
        with timer.stage("report"):
            info = kmodel.read(kmodel_path)
            size = info["size"]
            placement = _refuse_flash_problems(opts.flash_address, size)
            firmware.check_loadable(profile, info["version"], 0)
            fit, fit_warnings = k210fit.fit_report(
                quant["dump_dir"], quant["compile"]["memory"],
                quant["compile"]["inputs"][0]["shape"], profile, opts.flash_address,
                v4_ops=info.get("ops"),
                output_values=sum(c * h * w for c, h, w in
                                  (o["shape_chw"] for o in output_info)),
                decoder=decoder["type"], mask_values=_mask_values(decoder, output_info))
            for text in fit_warnings:
                if text not in placement["problems"]:
                    warn(text)
        result = {
            "source": frozen.source, "input": {"node": frozen.input_node, "height": h,
                                               "width": w, **input_scale},
            "batchnorm": bn, "quantization": quant["report"], "k210_fit": fit,
            "flash": placement, "warnings": warnings, "layer_error": layers,
            "suggestions": advice.suggestions(layers, quant["report"]["calibrate_method"],
                                              len(calib_u8)),
        }
        manifest_data = _manifest(opts, frozen, output_info, decoder, kmodel_path, size, info,
                                  pb_path, tflite_path, input_scale, quant)
        result["timings"] = dict(timer.stages)
        atomic.write_json(os.path.join(stage, "convert_report.json"), result)
        manifest.write(os.path.join(stage, "manifest.json"), manifest_data)
        convert_report.write(os.path.join(stage, "convert_report.html"), result, manifest_data)
        shutil.rmtree(quant["dump_root"], ignore_errors=True)
    log(report.convert_summary(result, manifest_data, opts.out))
    return result


def _layer_error(opts, ncc_binary, frozen, input_scale, calib_u8, holdout_u8, quant, warn):
    """Per-layer table (host.layer_error), or None with a warning: it is a diagnosis, so its
    failure does not cost the user the kmodel."""
    try:
        return layer_error.measure(
            frozen.graph_def, frozen.input_node, frozen.output_nodes, opts.input_hw, input_scale,
            calib_u8, holdout_u8, quant["report"]["calibrate_method"],
            os.path.join(quant["dump_root"], "layers"), ncc_binary,
            exact_activations=quant["report"].get("activation_tables", {}).get("used") == "exact")
    except UserError as exc:
        warn("per-layer error not measured (the kmodel is fine): %s" % exc)
        return None


def _mask_values(decoder, output_info):
    """A segment model's mask size on the board (h*w of output 0), else 0."""
    if decoder["type"] != "segment":
        return 0
    _c, h, w = output_info[0]["shape_chw"]
    return h * w


def _refuse_flash_problems(address, size):
    placement, problems = k210fit.flash_placement(address, size)
    if problems:
        raise UserError("--flash-address: " + problems[0])
    placement["problems"] = problems
    return placement


def freeze_model(opts):
    if opts.checkpoint and opts.model_fn:
        frozen = freeze.from_checkpoint(opts.checkpoint, opts.model_fn, opts.model_kwargs,
                                        opts.input_node or "Input_image", opts.output_nodes,
                                        opts.input_hw, use_ema=opts.ema,
                                        channels=opts.input_channels)
    elif opts.meta:
        frozen = freeze.from_meta(opts.meta, opts.training_placeholder, opts.input_node,
                                  opts.output_nodes, opts.input_hw, opts.checkpoint,
                                  use_ema=opts.ema)
    elif opts.frozen_pb:
        frozen = freeze.from_frozen_pb(opts.frozen_pb, opts.input_node, opts.output_nodes)
    else:
        frozen = freeze.from_keras_h5(opts.keras_h5, opts.input_hw)
    frozen.channels = freeze.set_input_shape(frozen.graph_def, frozen.input_node, opts.input_hw)
    return frozen


def batchnorm_check(frozen, calib_u8, input_scale, opts, warn):
    graph_findings, graph_summary = bncheck.check_graph_def(frozen.graph_def)
    findings = frozen.findings + graph_findings
    summary = dict(frozen.bn_summary, **graph_summary)
    sample = pixels.model_input(calib_u8[:REPRODUCTION_SAMPLES], input_scale)
    if frozen.reference is not None and not findings:
        runner = FrozenRunner(frozen.graph_def, frozen.input_node, frozen.output_nodes)
        repro_findings, repro = bncheck.check_reproduction(runner.run(sample),
                                                           frozen.reference(sample))
        runner.close()
        findings += repro_findings
        summary.update(repro)
    if frozen.training_reference is not None and frozen.reference is not None:
        # Information only: how much batch statistics would change the outputs.
        train = frozen.training_reference(sample)
        infer = frozen.reference(sample)
        per_output = [metrics.tensor_metrics(t, i) for t, i in zip(train, infer)]
        summary["training_vs_inference"] = {
            "images": len(sample), "max_abs": max(m["max_abs"] for m in per_output),
            "cos": min(m["cos"] for m in per_output),
            "l2r": max(m["l2r"] for m in per_output)}
    bncheck.enforce(findings, opts.allow_bn_risk, warn)
    verdict = "ok" if not findings else "risk accepted (--allow-bn-risk)"
    return {"verdict": verdict, "findings": [f.as_dict() for f in findings],
            "summary": summary, "notes": frozen.notes}


def _chw_shape(nhwc_batch_shape):
    shape = list(nhwc_batch_shape[1:])
    if len(shape) == 3:
        return [shape[2], shape[0], shape[1]]
    return [int(np.prod(shape)) if shape else 1, 1, 1]


def to_chw(array):
    """One sample's TF output (NHWC without batch, or flat) -> flat CHW floats."""
    a = np.asarray(array, dtype=np.float32)
    return a.transpose(2, 0, 1).ravel() if a.ndim == 3 else a.ravel()


def _output_op(graph_def, name):
    """The op behind an output node, through Identity nodes (a Softmax named "output")."""
    nodes = {n.name: n for n in graph_def.node}
    node = nodes.get(name.split(":")[0])
    while node is not None and node.op == "Identity" and node.input:
        node = nodes.get(node.input[0].split(":")[0].lstrip("^"))
    return node.op if node is not None else None


def _decoder_params(opts, output_info, output_op=None):
    if opts.decoder in ("classify", "segment"):
        return decoder_kinds.params_for(opts, output_info[0], output_op)
    decoder = {"type": opts.decoder, "anchors": list(opts.anchors or []),
               "classes": opts.classes, "labels": list(opts.labels or []),
               "threshold": opts.threshold, "nms": opts.nms}
    if opts.decoder == "yolo2":
        c = output_info[0]["shape_chw"][0]
        anchors = len(decoder["anchors"]) // 2
        if not anchors or len(decoder["anchors"]) % 2:
            raise UserError("--decoder yolo2 needs --anchors w0,h0,w1,h1,... (grid units)")
        if c != anchors * (5 + opts.classes):
            raise UserError("--anchors/--classes do not match the output: %d anchors x (5 + %d "
                            "classes) = %d channels, but %s has %d"
                            % (anchors, opts.classes, anchors * (5 + opts.classes),
                               output_info[0]["node"], c))
    if opts.decoder == "grid" and output_info[0]["shape_chw"][0] != 5:
        raise UserError("--decoder grid needs an output with 5 channels (x, y, w, h, conf); "
                        "%s has %d" % (output_info[0]["node"], output_info[0]["shape_chw"][0]))
    return decoder


def _decode_all(outputs_chw, shape_chw, decoder):
    from device import decoders
    return [decoders.decode(decoder["type"], list(sample), shape_chw, decoder)
            for sample in outputs_chw]


def _quantize(calibrate_method, ncc_binary, tflite_path, kmodel_path, calib_u8, holdout_u8,
              input_scale, float_outputs, decoder, stage, log, activation_specs):
    """Compile with nncase (or the ncc binary `ncc_binary`), run the held-out images on the
    host (nncase's simulator, `ncc infer`), compare. A V4 kmodel also gets exact activation
    tables (host.ncc_act) when `ncc infer` measures them closer to TensorFlow."""
    auto = AUTO_METHODS_NCC if ncc_binary else AUTO_METHODS
    methods = auto if calibrate_method == "auto" else (calibrate_method,)
    if ncc_binary and calibrate_method == "auto" and ncc.detect_version(ncc_binary) != "0.2":
        raise UserError("--calibrate-method auto needs a host runtime; ncc v0.1 has none: pick "
                        "one method")
    # nncase's dumps (op placement, schedules; ~16 MB each) are read by the K210 fit report,
    # then discarded.
    dump_root = os.path.join(stage, ".nncase-dump")
    float_chw = [[to_chw(s) for s in out] for out in float_outputs]
    candidates = []
    best = None
    for method in methods:
        candidate_path = kmodel_path if len(methods) == 1 else kmodel_path + "." + method
        start = time.time()
        dump_dir = os.path.join(dump_root, method)
        if ncc_binary:
            dump_dir = None
            compiled = ncc.compile_kmodel(
                tflite_path, candidate_path, pixels.to_nchw(calib_u8), input_scale,
                ncc=ncc_binary, calibrate_method=method)
            # the firmware loads the whole kmodel into RAM, plus the runtime's working memory
            # (the V4 header's main_mem, what ncc prints as working memory)
            info = compiled["info"]
            compiled["memory"] = {"model": compiled["kmodel_size"],
                                  "total": compiled["kmodel_size"] + info.get("main_mem", 0)}
            compiled["inputs"] = [{"shape": info["inputs"][0]["shape"] if info["inputs"]
                                   else [1, calib_u8.shape[3]] + list(calib_u8.shape[1:3])}]
        else:
            compiled = quantize.compile_kmodel(
                tflite_path, candidate_path, pixels.to_nchw(calib_u8), input_scale,
                calibrate_method=method, dump_dir=dump_dir)
        sim = _simulate(ncc_binary, compiled, candidate_path, holdout_u8)
        compile_seconds = time.time() - start
        if sim is None:
            log("no host runtime for kmodel V%d: float-vs-kmodel metrics unavailable (the "
                "board comparison in serial_eval still works)" % compiled["version"])
            return {"report": {"calibrate_method": method, "outputs": [], "mean_cos": None,
                               "mean_l2r": None, "detection": None,
                               "calibration_images": len(calib_u8),
                               "holdout_images": 0, "compile_seconds": compile_seconds},
                    "compile": compiled, "dump_dir": None, "dump_root": dump_root}
        evaluation = _compare(float_chw, sim, float_outputs, decoder)
        if compiled.get("version") == 4:
            evaluation = _exact_activations(candidate_path, tflite_path, activation_specs,
                                            evaluation, holdout_u8, ncc_binary, float_chw,
                                            float_outputs, decoder, log)
            compile_seconds = time.time() - start
        evaluation.update({"calibrate_method": method, "compile_seconds": compile_seconds})
        candidates.append(evaluation)
        log("%s %-8s mean cos %.5f  l2r %.4f  %s  (%.1f s)"
            % (compiled.get("compiler", "nncase"), method, evaluation["mean_cos"],
               evaluation["mean_l2r"], _decoded_headline(evaluation), compile_seconds))
        if best is None or evaluation["mean_l2r"] < best[0]["mean_l2r"]:
            best = (evaluation, candidate_path, compiled, dump_dir)
    evaluation, chosen_path, compiled, dump_dir = best
    if chosen_path != kmodel_path:
        os.replace(chosen_path, kmodel_path)
        for c in candidates:
            path = kmodel_path + "." + c["calibrate_method"]
            if os.path.exists(path):
                os.remove(path)
    quant_report = dict(evaluation, calibration_images=len(calib_u8),
                        holdout_images=len(holdout_u8))
    if len(candidates) > 1:
        quant_report["candidates"] = [{k: c[k] for k in ("calibrate_method", "mean_cos",
                                                         "mean_l2r", "compile_seconds")}
                                      for c in candidates]
    return {"report": quant_report, "compile": compiled, "dump_dir": dump_dir,
            "dump_root": dump_root}


def _exact_activations(kmodel_path, tflite_path, activation_specs, evaluation, holdout_u8,
                       ncc_binary, float_chw, float_outputs, decoder, log):
    """Rewrite ncc v0.2's rounded activation tables exactly (host.ncc_act) and keep the kmodel
    that `ncc infer` puts closer to float TF on the held-out images (lower l2r). Returns the
    kept kmodel's evaluation with "activation_tables": {used, rewritten, kept, ncc, exact}."""
    with open(kmodel_path, "rb") as f:
        original = f.read()
    rewritten, outcome = ncc_act.rewrite(original, tflite.constant_tensors(tflite_path),
                                         activation_specs)
    tables = {"used": "ncc", "layers": outcome["layers"], "rewritten": outcome["rewritten"],
              "kept": {str(k): v for k, v in outcome["kept"].items()},
              "ncc": _headline(evaluation)}
    if outcome["rewritten"]:
        exact_path = kmodel_path + ".exact"
        atomic.write_bytes(exact_path, rewritten)
        exact = _compare(float_chw, ncc.infer(exact_path, pixels.to_nchw(holdout_u8),
                                              ncc=ncc_binary), float_outputs, decoder)
        tables["exact"] = _headline(exact)
        if exact["mean_l2r"] < evaluation["mean_l2r"]:
            os.replace(exact_path, kmodel_path)
            tables["used"], evaluation = "exact", exact
        else:
            os.remove(exact_path)
        log("ncc v0.2 activation tables: %d of %d KPU layers rewritten exactly: mean cos "
            "%.5f -> %.5f, l2r %.4f -> %.4f; the kmodel keeps %s"
            % (len(outcome["rewritten"]), outcome["layers"], tables["ncc"]["mean_cos"],
               tables["exact"]["mean_cos"], tables["ncc"]["mean_l2r"],
               tables["exact"]["mean_l2r"],
               "the exact tables" if tables["used"] == "exact" else "ncc's (closer to TF)"))
    return dict(evaluation, activation_tables=tables)


def _headline(evaluation):
    detection = evaluation["detection"]
    return {"mean_cos": evaluation["mean_cos"], "mean_l2r": evaluation["mean_l2r"],
            "f1": detection["f1"] if detection else None}


def _decoded_headline(evaluation):
    if evaluation.get("classify"):
        return "top-1 agreement %.3f" % evaluation["classify"]["top1_agreement"]
    if evaluation.get("segment"):
        seg = evaluation["segment"]
        return "pixel agreement %.4f mean IoU %s" % (
            seg["pixel_agreement"], "n/a" if seg["mean_iou"] is None else "%.4f" % seg["mean_iou"])
    detection = evaluation["detection"]
    return "detection F1 %s" % ("%.3f" % detection["f1"] if detection else "n/a")


def _simulate(ncc_binary, compiled, kmodel_path, holdout_u8):
    """Held-out outputs from the kmodel on the host: nncase's simulator for V5, `ncc infer`
    for V4; ncc v0.1 (V3) has no host runtime (None)."""
    if not ncc_binary:
        return quantize.simulate(kmodel_path, pixels.to_nchw(holdout_u8))
    if compiled["version"] == 4:
        return ncc.infer(kmodel_path, pixels.to_nchw(holdout_u8), ncc=ncc_binary)
    return None


def _compare(float_chw, sim_outputs, float_outputs, decoder):
    """sim_outputs[i][k]: output k of held-out image i from the simulator (CHW)."""
    per_output = []
    for k, ref in enumerate(float_chw):
        samples = [metrics.tensor_metrics(np.ravel(sim_outputs[i][k]), ref[i])
                   for i in range(len(ref))]
        per_output.append(metrics.summarize_tensor_metrics(samples))
    result = {"outputs": per_output,
              "mean_cos": float(np.mean([o["cos"] for o in per_output])),
              "mean_l2r": float(np.mean([o["l2r"] for o in per_output])),
              "detection": None}
    if decoder["type"] in ("classify", "segment"):
        result[decoder["type"]] = decode_agreement.convert_measure(
            decoder, float_chw[0], [np.ravel(s[0]) for s in sim_outputs],
            _chw_shape(float_outputs[0].shape))
    elif decoder["type"] != "raw":
        shape = _chw_shape(float_outputs[0].shape)
        float_boxes = _decode_all(float_chw[0], shape, decoder)
        sim_boxes = _decode_all([np.ravel(s[0]) for s in sim_outputs], shape, decoder)
        matches = [metrics.match_detections(k, f) for k, f in zip(sim_boxes, float_boxes)]
        pooled = metrics.pool_matches(matches)
        pooled["float_boxes"] = sum(len(b) for b in float_boxes)
        pooled["kmodel_boxes"] = sum(len(b) for b in sim_boxes)
        result["detection"] = pooled
    return result


def _manifest(opts, frozen, output_info, decoder, kmodel_path, size, info, pb_path,
              tflite_path, input_scale, quant):
    h, w = opts.input_hw
    return {
        "schema": manifest.SCHEMA,
        "kmodel": dict({"path": "model.kmodel", "sha256": manifest.sha256_file(kmodel_path),
                        "size": size, "version": info["version"],
                        "compiler": quant["compile"].get("compiler", "nncase")},
                       **({"ncc": quant["compile"]["ncc"]} if "ncc" in quant["compile"] else {}),
                       **({"activation_tables": quant["report"]["activation_tables"]["used"]}
                          if "activation_tables" in quant["report"] else {})),
        "input": {"node": frozen.input_node, "height": h, "width": w,
                  "channels": frozen.channels, "format": pixels.INPUT_FORMATS[frozen.channels],
                  "kmodel_layout": "NCHW", "kmodel_dtype": "uint8",
                  "scale": input_scale["scale"], "mean": input_scale["mean"],
                  "std": input_scale["std"]},
        "outputs": output_info,
        "decoder": decoder,
        "flash": {"address": opts.flash_address, "end": opts.flash_address + size},
        "firmware": opts.firmware,
        "frozen_pb": {"path": "model.pb", "sha256": manifest.sha256_file(pb_path),
                      "input_node": frozen.input_node, "output_nodes": frozen.output_nodes},
        "tflite": {"path": "model.tflite", "sha256": manifest.sha256_file(tflite_path)},
        "calibrate_method": quant["report"]["calibrate_method"],
    }
