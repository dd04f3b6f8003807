"""convert_report.html: `make kmodel`'s report for people (convert_report.json is the record).
Verdicts first, then the quantisation table, the per-layer error, the K210 fit and the
suggestions; charts inline (host.charts), one self-contained file that works offline."""
import html

from host import atomic, charts
from host.report import TENSOR_COLUMNS
from host.report_html import CSS, SORT_SCRIPT, table

# Shown green at or above this cos: uint8 kmodels of K210-sized models land at 0.998-0.9999
# here (docs/nncase.md); below 0.99 detections start to move.
GOOD_COS = 0.99


def _e(text):
    return html.escape(str(text))


def page(result, manifest):
    km = manifest["kmodel"]
    q = result["quantization"]
    fit = result["k210_fit"]
    bn = result["batchnorm"]
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>convert report</title>",
           "<style>%s</style></head><body>" % CSS,
           "<h1>make kmodel: %s</h1>" % _e(result["source"]),
           "<p class='key'>kmodel V%d, %d bytes, %s, sha256 %s&hellip;</p>"
           % (km["version"], km["size"], _e(km.get("compiler", "")), _e(km["sha256"][:12])),
           _verdicts(bn, q, fit, result),
           "".join("<p class='fail'>WARNING: %s</p>" % _e(w) for w in result["warnings"])]
    if result.get("suggestions"):
        out.append("<h2>Suggestions</h2><ul>%s</ul>"
                   % "".join("<li>%s</li>" % _e(s) for s in result["suggestions"]))
    out.append(_quantisation(q, manifest))
    out.append(_layers(result.get("layer_error")))
    out.append(_fit(fit, manifest))
    out.append(_batchnorm(bn))
    out.append("<p>Full record: <a href='convert_report.json'>convert_report.json</a>, "
               "<a href='manifest.json'>manifest.json</a></p>")
    out.append("<script>%s</script></body></html>" % SORT_SCRIPT)
    return "\n".join(out) + "\n"


def _verdicts(bn, q, fit, result):
    items = [("BatchNorm", bn["verdict"] == "ok", bn["verdict"])]
    if q.get("mean_cos") is not None:
        items.append(("Quantisation", q["mean_cos"] >= GOOD_COS,
                      "mean cos %.5f, l2r %.4f on %d held-out images"
                      % (q["mean_cos"], q["mean_l2r"], q["holdout_images"])))
    fits_gc = fit.get("fits_gc", True)
    items.append(("K210 fit", fit["fits_heap"] and fits_gc and not fit["cpu_compute_ops"],
                  "%d KPU op(s), %d CPU compute op(s), main RAM %s%s"
                  % (len(fit["kpu_ops"]), len(fit["cpu_compute_ops"]),
                     "fits" if fit["fits_heap"] else "DOES NOT FIT",
                     "" if "fits_gc" not in fit else ", GC heap " +
                     ("fits" if fits_gc else "DOES NOT FIT"))))
    layers = result.get("layer_error")
    if layers:
        w = min(layers["layers"], key=lambda row: row["cos"])
        items.append(("Worst layer", w["cos"] >= GOOD_COS, "%s (%s) cos %.5f"
                      % (w["node"], w["op"], w["cos"])))
    return "<table class='verdicts'>%s</table>" % "".join(
        "<tr><th class='l'>%s</th><td class='l %s'>%s</td></tr>"
        % (_e(name), "ok" if good else "fail", _e(text)) for name, good, text in items)


def _quantisation(q, manifest):
    out = ["<h2>Quantisation: float TF vs kmodel</h2>",
           "<p>%s, %d calibration images, %d held-out images (board pixel path).</p>"
           % (_e(q["calibrate_method"]), q["calibration_images"], q["holdout_images"])]
    if q["outputs"]:
        rows = [[o["node"]] + [fmt % r[c] for c, fmt in TENSOR_COLUMNS]
                for o, r in zip(manifest["outputs"], q["outputs"])]
        out.append(table(["output"] + [c for c, _ in TENSOR_COLUMNS], rows))
    if q.get("candidates"):
        out.append(table(["method", "mean l2r", "mean cos", "seconds"],
                         [[c["calibrate_method"], "%.4f" % c["mean_l2r"], "%.5f" % c["mean_cos"],
                           "%.1f" % c["compile_seconds"]] for c in q["candidates"]]))
    tables = q.get("activation_tables")
    if tables and tables["rewritten"]:
        out.append("<p>ncc v0.2 activation tables: %d of %d KPU layers rewritten exactly: mean "
                   "cos %.5f with ncc's tables, %.5f exact; the kmodel has %s tables.</p>"
                   % (len(tables["rewritten"]), tables["layers"], tables["ncc"]["mean_cos"],
                      tables["exact"]["mean_cos"],
                      "the exact" if tables["used"] == "exact" else "ncc's"))
    if q.get("detection"):
        d = q["detection"]
        out.append("<p>Detections kmodel vs float: P %.3f R %.3f F1 %.3f (%d float boxes, %d "
                   "kmodel boxes)</p>" % (d["precision"], d["recall"], d["f1"],
                                          d["float_boxes"], d["kmodel_boxes"]))
    return "\n".join(out)


def _layers(report):
    if not report:
        return ("<h2>Per-layer error</h2><p>Not measured (--no-layer-error, an ncc build "
                "without --ncc-layer-error, or no host runtime for this kmodel).</p>")
    rows = report["layers"]
    out = ["<h2>Per-layer error</h2>",
           "<p>Each layer's value in the kmodel (%s: %s; same calibration images, %s) against "
           "float TF at the same node, on %d held-out images: the error accumulated from the "
           "input up to that layer. Measured in %.0f s.</p>"
           % (_e(report["compiler"]), _e(report["how"]), _e(report["calibrate_method"]),
              report["holdout_images"], report["seconds"]),
           charts.layer_bars([r["node"] for r in rows], [1.0 - r["cos"] for r in rows],
                             "1 - cos per layer (lower is better)", "1 - mean cos"),
           table(["#", "layer / tensor", "op", "shape", "cos", "min cos", "l2r", "float min",
                  "float max", "0.1 % .. 99.9 %", "range / inner range"],
                 [[str(i), r["node"] + (" (output)" if r["output"] else ""), r["op"],
                   "x".join(str(d) for d in r["shape"]), "%.5f" % r["cos"],
                   "%.5f" % r["min_cos"], "%.4f" % r["l2r"], "%.4g" % r["float_min"],
                   "%.4g" % r["float_max"], "%.4g .. %.4g" % (r["p001"], r["p999"]),
                   "%.2f" % r["outlier_ratio"]] for i, r in enumerate(rows)],
                 sortable=True, left_columns=3)]
    return "\n".join(out)


def _fit(fit, manifest):
    bars = [("main RAM (model + working memory)", fit["main_memory_bytes"],
             fit["heap_budget_bytes"])]
    if fit["kpu_peak_bytes"]:
        bars.insert(0, ("KPU RAM peak", fit["kpu_peak_bytes"], fit["kpu_ram_bytes"]))
    if "gc_heap_bytes" in fit:
        bars.append(("MicroPython GC heap (serve loop peak, %s)"
                     % ("gray8" if manifest["input"].get("channels") == 1 else "RGB565"),
                     fit["serve_gc_bytes"],
                     fit.get("gc_budget_bytes", fit["gc_heap_bytes"])))
    ops = [[op, "KPU"] for op in fit["kpu_ops"]] + \
        [[op, "CPU (compute)" if op in fit["cpu_compute_ops"] else "CPU (glue)"]
         for op in fit["cpu_ops"]]
    return "\n".join([
        "<h2>K210 fit (%s)</h2>" % _e(manifest["firmware"]),
        charts.budget_bars(bars, "memory against the firmware budget"),
        "<p>Flash: model at 0x%06X-0x%06X</p>" % (fit["flash"]["address"], fit["flash"]["end"]),
        table(["op", "runs on"], ops) if ops else
        "<p>Op placement unknown (ncc builds leave no placement dump).</p>"])


def _batchnorm(bn):
    out = ["<h2>BatchNorm</h2><p class='%s'>%s</p>"
           % ("ok" if bn["verdict"] == "ok" else "fail", _e(bn["verdict"]))]
    out += ["<p class='fail'>%s</p>" % _e(f.get("message", f)) for f in bn["findings"]]
    out += ["<p>note: %s</p>" % _e(n) for n in bn["notes"]]
    summary = {k: v for k, v in bn["summary"].items() if not isinstance(v, dict)}
    if summary:
        out.append(table(["check", "value"], [[k, str(v)] for k, v in sorted(summary.items())]))
    return "\n".join(out)


def write(path, result, manifest):
    atomic.write_bytes(path, page(result, manifest).encode("utf-8"))
