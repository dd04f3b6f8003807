"""Human-readable summaries of the JSON reports (the JSON files are the full record)."""
from host import decode_agreement

TENSOR_COLUMNS = (("cos", "%.5f"), ("l2r", "%.4f"), ("rmse", "%.4f"), ("mae", "%.4f"),
                  ("max_abs", "%.4f"))


def activation_table_lines(tables):
    """V4 only: ncc v0.2's rounded activation tables vs the exact ones (host.ncc_act)."""
    if not tables or not tables["rewritten"]:
        return []
    kept = "; ".join("layer %s kept: %s" % item for item in sorted(tables["kept"].items()))
    return ["  activation tables: %d of %d KPU layers rewritten exactly (ncc v0.2 rounds their "
            "slopes to shift <= 20): mean cos %.5f with ncc's, %.5f exact; the kmodel has %s "
            "tables%s" % (len(tables["rewritten"]), tables["layers"], tables["ncc"]["mean_cos"],
                          tables["exact"]["mean_cos"],
                          "the exact" if tables["used"] == "exact" else "ncc's",
                          "; " + kept if kept else "")]


def tensor_table(rows, names):
    """rows: summarize_tensor_metrics dicts; names: one label per row."""
    width = max([len(n) for n in names] + [6])
    lines = ["  %-*s  %s" % (width, "output", "  ".join("%8s" % c for c, _ in TENSOR_COLUMNS))]
    for name, row in zip(names, rows):
        lines.append("  %-*s  %s" % (width, name, "  ".join(
            "%8s" % (fmt % row[c]) for c, fmt in TENSOR_COLUMNS)))
    return lines


def _kb(n):
    return "%.0f KB" % (n / 1024.0) if n < 1024 * 1024 else "%.2f MB" % (n / 1048576.0)


def _kib(n):
    return "%d KiB" % int(round(n / 1024.0))


def _prf(d):
    return "P %.3f R %.3f F1 %.3f" % (d["precision"], d["recall"], d["f1"])


def layer_lines(layer_report, count=3):
    """The `count` worst layers of the per-layer table (host.layer_error), worst first."""
    if not layer_report:
        return []
    rows = sorted(layer_report["layers"], key=lambda row: row["cos"])[:count]
    lines = ["Per-layer error (%s, %s; accumulated from the input, %d held-out images; all %d "
             "layers in convert_report.html), worst %d:"
             % (layer_report["compiler"], layer_report["how"], layer_report["holdout_images"],
                len(layer_report["layers"]), len(rows))]
    width = max(len(row["node"]) for row in rows)
    for row in rows:
        lines.append("  %-*s  %-14s cos %.5f  l2r %.4f  float range %.3g..%.3g"
                     % (width, row["node"], row["op"], row["cos"], row["l2r"],
                        row["float_min"], row["float_max"]))
    return lines


def fit_lines(fit, manifest):
    """The K210 fit lines of the summary: ops and the C heap, then the GC heap (the serve
    loop's peak, the scripts' budget and what it leaves the user's own scripts)."""
    lines = ["K210 fit (%s): %d KPU op(s), %d CPU compute op(s)%s; KPU RAM peak %s of %s; "
             "main RAM %s (model %s) of ~%s free: %s"
             % (manifest["firmware"], len(fit["kpu_ops"]), len(fit["cpu_compute_ops"]),
                " (%s)" % ", ".join(fit["cpu_compute_ops"]) if fit["cpu_compute_ops"] else "",
                _kb(fit["kpu_peak_bytes"]) if fit["kpu_peak_bytes"] is not None
                else "unknown (ncc plans it)", _kb(fit["kpu_ram_bytes"]),
                _kb(fit["main_memory_bytes"]), _kb(fit["model_bytes"]),
                _kb(fit["heap_budget_bytes"]), "fits" if fit["fits_heap"] else "DOES NOT FIT")]
    if "gc_heap_bytes" in fit:
        budget = fit.get("gc_budget_bytes", fit["gc_heap_bytes"])
        z = fit.get("serve_gc_rgb565z_bytes")
        gray = manifest["input"].get("channels") == 1
        lines.append("  GC heap: serve loop ~%s%s of %s, ~%s left for your scripts (%s heap, "
                     "%s kept by the firmware): %s (%s)"
                     % (_kib(fit["serve_gc_bytes"]),
                        " (rgb565z ~%s)" % _kib(z) if z and z > fit["serve_gc_bytes"] else "",
                        _kib(budget), _kib(fit.get("gc_left_bytes", 0)),
                        _kib(fit["gc_heap_bytes"]), _kib(fit["gc_heap_bytes"] - budget),
                        "fits" if fit["fits_gc"] else "DOES NOT FIT",
                        "gray8 payloads" if gray else
                        "JPEG payloads up to %s" % _kb(fit["jpeg_max_bytes"])))
    return lines


def convert_summary(result, manifest, out_dir):
    km = manifest["kmodel"]
    lines = ["", "kmodel V%d written to %s/%s (%d bytes, sha256 %s..., %s)"
             % (km["version"], out_dir, km["path"], km["size"], km["sha256"][:12],
                km.get("compiler", "")),
             "Report: %s/convert_report.html (convert_report.json: the full record)" % out_dir]
    bn = result["batchnorm"]
    s = bn["summary"]
    text = "BatchNorm: %s" % bn["verdict"].upper()
    if "bn_layers" in s:
        text += " - %d BN layer(s), moving statistics saved and updated" % s["bn_layers"] \
            if not bn["findings"] else " - %d BN layer(s)" % s["bn_layers"]
    if "frozen_vs_checkpoint_max_abs" in s:
        text += "; frozen graph reproduces the checkpoint (max abs diff %.2g)" \
            % s["frozen_vs_checkpoint_max_abs"]
    if "fused_batch_norm_inference" in s:
        text += "; %d FusedBatchNorm in inference mode" % s["fused_batch_norm_inference"]
    lines.append(text)
    for note in bn["notes"]:
        lines.append("  note: " + note)
    tvi = s.get("training_vs_inference")
    if tvi:
        lines.append("  information: training vs inference mode on %d calibration images: "
                     "max abs %.3g, cos %.4f, l2r %.3g (why validation must run with "
                     "training=False)" % (tvi["images"], tvi["max_abs"], tvi["cos"], tvi["l2r"]))
    q = result["quantization"]
    lines.append("Quantisation: %s, %s, %d calibration images, float TF vs kmodel on %d "
                 "held-out images (board pixel path):"
                 % (km.get("compiler", ""), q["calibrate_method"], q["calibration_images"],
                    q["holdout_images"]))
    lines += tensor_table(q["outputs"], [o["node"] for o in manifest["outputs"]])
    for c in q.get("candidates", []):
        lines.append("  auto: %-8s l2r %.4f cos %.5f (%.1f s)"
                     % (c["calibrate_method"], c["mean_l2r"], c["mean_cos"], c["compile_seconds"]))
    if q.get("detection"):
        d = q["detection"]
        lines.append("  detections kmodel vs float: %s (%d float boxes, %d kmodel boxes)"
                     % (_prf(d), d["float_boxes"], d["kmodel_boxes"]))
    lines += ["  " + text for text in decode_agreement.convert_lines(q)]
    lines += activation_table_lines(q.get("activation_tables"))
    lines += layer_lines(result.get("layer_error"))
    for text in result.get("suggestions", []):
        lines.append("Suggestion: " + text)
    lines += fit_lines(result["k210_fit"], manifest)
    flash = result["flash"]
    lines.append("Flash: model at 0x%06X-0x%06X %s" % (flash["address"], flash["end"],
                                                       "OK" if flash.get("ok", True) else "!"))
    for w in result["warnings"]:
        lines.append("WARNING: " + w)
    t = result["timings"]
    lines.append("Time: %.1f s (%s)" % (sum(t.values()), ", ".join(
        "%s %.1f" % (k, v) for k, v in t.items())))
    return "\n".join(lines)
