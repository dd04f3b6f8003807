"""serial_eval's outputs: the terminal summary, report.json, per-image overlay PNGs and
report.html (verdict and key numbers on top, the disagreeing images as inline overlays worst
first, charts, the sortable per-image table; one file with no external assets). Everything is
built in a staging directory inside --out and moved in only when complete
(host.atomic.staged_dir).
"""
import base64
import html
import json
import os

from PIL import Image, ImageDraw

from host import atomic, charts
from host.report import tensor_table
from host.report_html import CSS, SORT_SCRIPT, table

HOST_COLOR = (0, 200, 0)        # host TensorFlow boxes
BOARD_COLOR = (255, 0, 200)     # board boxes
SCALE = 2                       # overlays are drawn at twice the model input size
LEGEND_H = 34


def _f(v, fmt):
    return "-" if v is None else fmt % v


def summary_lines(report):
    s = report["summary"]
    run = report["run"]
    lines = []
    boards = ", ".join("%s [%s, %s]" % (b["port"], b["info"].get("api"), b["path"])
                       for b in report["boards"])
    lines.append("serial_eval: %d image(s) (%s payload%s) on %d board(s): %s"
                 % (s["images"], run["payload"],
                    ", %d resized to %dx%d" % (s["resized"], run["width"], run["height"])
                    if s["resized"] else "", len(report["boards"]), boards))
    lines.append("kmodel V%d sha256 %s... (%s), firmware API %s"
                 % (report["kmodel"]["version"], report["kmodel"]["sha256"][:12],
                    report["manifest"],
                    report["boards"][0]["info"].get("api") if report["boards"] else "-"))
    if s["compared"]:
        lines.append("Output tensors, board vs host TensorFlow (%d image(s)):" % s["compared"])
        lines += tensor_table(s["tensors"], [t["node"] for t in s["tensors"]])
        d = s["detections"]
        lines.append("Detections board vs host (IoU >= 0.5): P %.3f R %.3f F1 %.3f (host %d "
                     "box(es), board %d, matched %d, unmatched near the threshold %d of %d); "
                     "score delta mean %s max %s; box delta mean %s max %s px"
                     % (d["precision"], d["recall"], d["f1"], d["host_boxes"], d["board_boxes"],
                        d["tp"], d["near_threshold"], d["unmatched"],
                        _f(s["score_delta"]["mean"], "%.4f"),
                        _f(s["score_delta"]["max"], "%.4f"), _f(s["box_delta_px"]["mean"], "%.2f"),
                        _f(s["box_delta_px"]["max"], "%.2f")))
        c = s["input_crc"]
        lines.append("Input CRC (KPU input bytes): %d equal, %d differ, %d not computed (board "
                     "source: %s); RGB565 bytes: %d equal, %d differ"
                     % (c["equal"], c["differ"], c["not_computed"], ", ".join(c["sources"]),
                        s["pixel_crc"]["equal"], s["pixel_crc"]["differ"]))
        lines.append("Board time per image: KPU %s ms (max %s), prep %s ms, decode %s ms%s"
                     % (_f(s["kpu_ms"]["mean"], "%.1f"), _f(s["kpu_ms"]["max"], "%.0f"),
                        _f(s["prep_ms"]["mean"], "%.1f"), _f(s["decode_ms"]["mean"], "%.1f"),
                        " (virtual board: nncase simulator time, not K210 time)"
                        if any(b["virtual"] for b in report["boards"]) else ""))
    for f in s["failures"][:5]:
        lines.append("FAILED %s: %s %s" % (f["name"], f["error"].get("name"),
                                            f["error"].get("reason", "")[:200]))
    if len(s["failures"]) > 5:
        lines.append("... %d more failed image(s) in report.json" % (len(s["failures"]) - 5))
    rec = {}
    for b in report["boards"]:
        for k, v in (b.get("recovery") or {}).items():
            rec[k] = rec.get(k, 0) + v
    if any(rec.get(k) for k in ("resent_images", "sessions_reestablished", "port_reopens",
                                "failed_images", "resend_requests")):
        lines.append("Link recovery: %d image(s) sent again (%d NACK(s), %d transfer "
                     "error(s)), %d RESEND probe(s), %d session(s) re-established (%d board "
                     "restart(s) seen), %d port reopen(s), %d image(s) failed after all "
                     "retries; no result was accepted without its CRC checks"
                     % (rec.get("resent_images", 0), rec.get("nacks", 0),
                        rec.get("transfer_errors", 0), rec.get("resend_requests", 0),
                        rec.get("sessions_reestablished", 0), rec.get("board_restarts", 0),
                        rec.get("port_reopens", 0), rec.get("failed_images", 0)))
    link = report["link"]
    if link is not None:
        lines.append("Link: %d image(s) in %.1f s = %.2f images/s; payload %.0f KB at %.1f KB/s "
                     "per board = %.1f %% of %d baud (8N1, baud/10 bytes/s)"
                     % (s["images"] - run["resumed"], link["wall_seconds"],
                        link["images_per_second"], link["payload_bytes"] / 1024.0,
                        link["payload_bytes_per_second"] / 1024.0, 100 * link["efficiency"],
                        run["baud"]))
    if run["resumed"]:
        lines.append("Resumed: %d image(s) from the journal of an earlier run"
                     % run["resumed"])
    if run["partial"]:
        lines.append("PARTIAL: interrupted after %d of %d image(s); the verdict covers only "
                     "those" % (s["images"], run["images_total"]))
    return lines


def verdict_lines(report, out_dir):
    v = report["verdict"]
    lines = ["Report: %s (report.json, overlays/)" % os.path.join(out_dir, "report.html")]
    for w in v["warnings"]:
        lines.append("WARNING: " + w)
    s = report["summary"]
    t = report["thresholds"]
    if v["ok"]:
        lines.append("PASS: F1 %.4f >= %g, mean cos %.5f >= %g, input CRCs equal"
                     % (s["detections"]["f1"], t["min_f1"], s["mean_cos"], t["min_cos"]))
    else:
        lines.append("FAIL: " + "; ".join(v["reasons"]))
    return lines


# ------------------------------------------------------------------ overlays
def _draw_boxes(draw, boxes, color, w, h, width, label_below):
    """Host scores are written above the box, board scores below it."""
    for b in boxes:
        x0, y0, x1, y1 = (max(0.0, min(1.0, v)) for v in b[:4])
        draw.rectangle([x0 * w, y0 * h, x1 * w, y1 * h], outline=color, width=width)
        y = min(h - 11, y1 * h + 2) if label_below else max(0, y0 * h - 12)
        draw.text((x0 * w + 3, y), "%.3f" % b[4], fill=color)


def overlay(pixels_u8, record):
    """PNG image: the pixels the KPU saw, host boxes and board boxes, and a legend."""
    base = Image.fromarray(pixels_u8, "RGB")
    w, h = base.width * SCALE, base.height * SCALE
    canvas = Image.new("RGB", (w, h + LEGEND_H), (255, 255, 255))
    canvas.paste(base.resize((w, h), Image.NEAREST), (0, 0))
    d = ImageDraw.Draw(canvas)
    _draw_boxes(d, record["host_boxes"], HOST_COLOR, w, h, 3, False)
    _draw_boxes(d, record.get("board_boxes", []), BOARD_COLOR, w, h, 1, True)
    y = h + 4
    d.rectangle([6, y + 2, 18, y + 12], fill=HOST_COLOR)
    d.text((24, y + 1), "host TensorFlow (%d, score above)" % len(record["host_boxes"]),
           fill=(0, 0, 0))
    d.rectangle([250, y + 2, 262, y + 12], fill=BOARD_COLOR)
    if record["status"] == "ok":
        d.text((268, y + 1), "board (%d, score below)" % len(record["board_boxes"]),
               fill=(0, 0, 0))
        line = "%s  F1 %.3f  cos %.5f  CRC %s" % (
            record["name"], record["detections"]["f1"], record["tensors"][0]["cos"],
            {True: "equal", False: "DIFFERS", None: "-"}[record["crc"]["input_equal"]])
    else:
        d.text((268, y + 1), "board: FAILED", fill=(200, 0, 0))
        line = "%s  %s: %s" % (record["name"], record["error"].get("name"),
                               record["error"].get("reason", "")[:60])
    d.text((6, y + 17), line, fill=(0, 0, 0))
    return canvas


def overlay_name(index, record):
    stem = os.path.splitext(record["name"])[0]
    return "%04d_%s.png" % (index, "".join(c if c.isalnum() or c in "-_." else "_" for c in stem))


# ------------------------------------------------------------------ html
MAX_THUMBNAILS = 30             # inline overlays of the worst images (the rest: overlays/)
_CRC = {True: "equal", False: "DIFFERS", None: "-"}


def _e(text):
    return html.escape(str(text))


def disagreement_order(report):
    """Indexes of the images where board and host disagree, worst first: failed images, then
    input CRC differences, then most unmatched boxes, then lowest output cos."""
    min_cos = report["thresholds"]["min_cos"]
    keyed = []
    for i, rec in enumerate(report["images"]):
        if rec["status"] != "ok":
            keyed.append(((0, 0, 0.0), i))
            continue
        crc_differs = rec["crc"]["input_equal"] is False
        unmatched = rec["detections"]["unmatched"]
        cos = min(t["cos"] for t in rec["tensors"])
        if crc_differs or unmatched or cos < min_cos:
            keyed.append(((1 if crc_differs else 2, -unmatched, cos), i))
    return [i for _, i in sorted(keyed)]


def _why(rec):
    if rec["status"] != "ok":
        return "FAILED %s: %s" % (rec["error"].get("name"), rec["error"].get("reason", "")[:80])
    parts = ["cos %.5f" % min(t["cos"] for t in rec["tensors"])]
    if rec["detections"]["unmatched"]:
        parts.insert(0, "%d unmatched box(es)" % rec["detections"]["unmatched"])
    if rec["crc"]["input_equal"] is False:
        parts.insert(0, "input CRC DIFFERS")
    return ", ".join(parts)


def _key_numbers(report):
    s = report["summary"]
    items = [("images", "%d%s" % (s["images"], " of %d" % report["run"]["images_total"]
                                  if report["run"]["partial"] else ""))]
    if s["compared"]:
        items += [("detection F1", "%.4f" % s["detections"]["f1"]),
                  ("mean cos", "%.5f" % s["mean_cos"]),
                  ("input CRC equal", "%d / %d" % (s["input_crc"]["equal"], s["compared"])),
                  ("KPU ms / image", _f(s["kpu_ms"]["mean"], "%.1f"))]
    items.append(("failed", str(len(s["failures"]))))
    return "<table>%s</table>" % "".join(
        "<tr><th class='l'>%s</th><td>%s</td></tr>" % (_e(k), _e(v)) for k, v in items)


def _charts(report):
    ok = [r for r in report["images"] if r["status"] == "ok"]
    if not ok:
        return ""
    matches = [m for r in ok for m in r.get("matches", [])]
    return "<h2>Charts</h2><div class='charts'>%s</div>" % "".join([
        charts.series([min(t["cos"] for t in r["tensors"]) for r in ok],
                      "output cos per image, board vs host", "cos"),
        charts.histogram([m["score_delta"] for m in matches],
                         "score delta of matched boxes", "|board - host| score"),
        charts.histogram([m["box_delta_px"] for m in matches],
                         "box delta of matched boxes", "max corner delta (px)"),
        charts.series([r["board"]["kpu_ms"] for r in ok], "KPU time per image", "ms")])


def _thumbnails(report, thumbnails):
    order = disagreement_order(report)
    if not order:
        return "<h2>Disagreements</h2><p class='ok'>None: every image agrees.</p>"
    shown = order[:MAX_THUMBNAILS]
    out = ["<h2>Disagreements (%d image(s), worst first%s)</h2>"
           % (len(order), ", first %d shown" % len(shown) if len(shown) < len(order) else ""),
           "<p>Overlays: <span class='h'>&#9632; host TensorFlow boxes</span>, "
           "<span class='b'>&#9632; board boxes</span>, on the pixels the KPU received.</p>",
           "<div class='thumbs'>"]
    for i in shown:
        rec = report["images"][i]
        out.append("<figure><a href='%s'><img alt='%s' src='data:image/png;base64,%s'></a>"
                   "<figcaption>%s: %s</figcaption></figure>"
                   % (_e(rec["overlay"]), _e(rec["name"]),
                      base64.b64encode(thumbnails[i]).decode("ascii"), _e(rec["name"]),
                      _e(_why(rec))))
    out.append("</div>")
    return "\n".join(out)


def _image_table(report):
    rows, classes = [], []
    for rec in report["images"]:
        link = "<a href='%s'>%s</a>" % (_e(rec["overlay"]), _e(rec["name"]))
        if rec["status"] == "ok":
            cells = ["ok", len(rec["host_boxes"]), len(rec["board_boxes"]),
                     rec["detections"]["unmatched"], "%.3f" % rec["detections"]["f1"],
                     "%.5f" % rec["tensors"][0]["cos"], "%.4f" % rec["tensors"][0]["max_abs"],
                     _CRC[rec["crc"]["input_equal"]], "%.0f" % rec["board"]["kpu_ms"]]
            bad = rec["detections"]["unmatched"] or rec["crc"]["input_equal"] is False
        else:
            cells = ["%s: %s" % (rec["error"].get("name"), rec["error"].get("reason", "")),
                     len(rec["host_boxes"])] + ["-"] * 7
            bad = True
        rows.append([link] + [_e(c) for c in cells] + [_e(rec.get("board_port", ""))])
        classes.append("bad" if bad else "")
    return ("<h2>All images</h2><p>Click a column header to sort.</p>"
            + table(["image", "status", "host boxes", "board boxes", "unmatched", "F1", "cos",
                     "max abs", "input CRC", "KPU ms", "board"], rows, sortable=True,
                    left_columns=2, row_classes=classes, escaped=True))


def html_page(report, thumbnails):
    """thumbnails: {image index: overlay PNG bytes} for the disagreeing images."""
    v = report["verdict"]
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>serial_eval report</title>",
           "<style>%s.h{color:rgb%s}.b{color:rgb%s}</style></head><body>"
           % (CSS, HOST_COLOR, BOARD_COLOR),
           "<h1>serial_eval: board vs host TensorFlow</h1>",
           "<p class='verdict fail'><b>PARTIAL</b>: interrupted after %d of %d image(s); the "
           "verdict covers only those</p>" % (len(report["images"]),
                                             report["run"]["images_total"])
           if report["run"]["partial"] else "",
           "<p class='verdict %s'><b>%s</b>%s</p>" % (
               "ok" if v["ok"] else "fail", "PASS" if v["ok"] else "FAIL",
               "" if v["ok"] else ": " + _e("; ".join(v["reasons"]))),
           "".join("<p class='fail'>WARNING: %s</p>" % _e(w) for w in v["warnings"]),
           _key_numbers(report),
           _thumbnails(report, thumbnails),
           _charts(report),
           "<h2>Summary</h2><pre>%s</pre>" % _e("\n".join(summary_lines(report))),
           _image_table(report),
           "<p>Full record: <a href='report.json'>report.json</a></p>",
           "<script>%s</script></body></html>" % SORT_SCRIPT]
    return "\n".join(out) + "\n"


def write(out_dir, report, images):
    """Write report.json, overlays/*.png and report.html into out_dir atomically.
    `images`: the EvalImage list in report order (for the overlay pixels)."""
    with atomic.staged_dir(out_dir) as stage:
        odir = os.path.join(stage, "overlays")
        os.makedirs(odir)
        for rec, img in zip(report["images"], images):
            name = overlay_name(rec["index"], rec)
            overlay(img.pixels, rec).save(os.path.join(odir, name), "PNG")
            rec["overlay"] = "overlays/" + name
        thumbnails = {}
        for i in disagreement_order(report)[:MAX_THUMBNAILS]:
            with open(os.path.join(stage, report["images"][i]["overlay"]), "rb") as f:
                thumbnails[i] = f.read()
        with open(os.path.join(stage, "report.json"), "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
        with open(os.path.join(stage, "report.html"), "w", encoding="utf-8") as f:
            f.write(html_page(report, thumbnails))
