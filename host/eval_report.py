"""serial_eval's outputs: the terminal summary, report.json, per-image overlay PNGs and
report.html (plain HTML, no external assets). Everything is built in a staging directory
inside --out and moved in only when complete (host.atomic.staged_dir).
"""
import html
import json
import os

from PIL import Image, ImageDraw

from host import atomic
from host.report import tensor_table

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
_CSS = ("body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
        "td.l,th.l{text-align:left}.bad{background:#fdd}.ok{color:#070}.fail{color:#b00}"
        "pre{background:#f6f6f6;padding:8px}.h{color:rgb%s}.b{color:rgb%s}"
        % (HOST_COLOR, BOARD_COLOR))


def _e(text):
    return html.escape(str(text))


def html_page(report, overlay_names):
    v = report["verdict"]
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>serial_eval report</title>",
           "<style>%s</style></head><body>" % _CSS,
           "<h1>serial_eval: board vs host TensorFlow</h1>",
           "<p class='fail'><b>PARTIAL</b>: interrupted after %d of %d image(s)</p>"
           % (len(report["images"]), report["run"]["images_total"])
           if report["run"]["partial"] else "",
           "<p class='%s'><b>%s</b>%s</p>" % (
               "ok" if v["ok"] else "fail", "PASS" if v["ok"] else "FAIL",
               "" if v["ok"] else ": " + _e("; ".join(v["reasons"]))),
           "".join("<p class='fail'>WARNING: %s</p>" % _e(w) for w in v["warnings"]),
           "<pre>%s</pre>" % _e("\n".join(summary_lines(report))),
           "<p>Overlays: <span class='h'>&#9632; host TensorFlow boxes</span>, "
           "<span class='b'>&#9632; board boxes</span>, on the pixels the KPU received.</p>",
           "<table><tr><th class='l'>image</th><th>status</th><th>host boxes</th>"
           "<th>board boxes</th><th>F1</th><th>cos</th><th>max abs</th><th>input CRC</th>"
           "<th>KPU ms</th><th class='l'>board</th></tr>"]
    for rec, name in zip(report["images"], overlay_names):
        bad = rec["status"] != "ok" or rec["detections"]["f1"] < 1.0 or \
            rec["crc"]["input_equal"] is False
        link = "<a href='overlays/%s'>%s</a>" % (_e(name), _e(rec["name"]))
        if rec["status"] == "ok":
            cells = [str(len(rec["host_boxes"])), str(len(rec["board_boxes"])),
                     "%.3f" % rec["detections"]["f1"], "%.5f" % rec["tensors"][0]["cos"],
                     "%.4f" % rec["tensors"][0]["max_abs"],
                     {True: "equal", False: "DIFFERS", None: "-"}[rec["crc"]["input_equal"]],
                     "%.0f" % rec["board"]["kpu_ms"]]
            status = "ok"
        else:
            cells = [str(len(rec["host_boxes"])), "-", "-", "-", "-", "-", "-"]
            status = _e("%s: %s" % (rec["error"].get("name"), rec["error"].get("reason", "")))
        out.append("<tr%s><td class='l'>%s</td><td class='l'>%s</td>%s<td class='l'>%s</td></tr>"
                   % (" class='bad'" if bad else "", link, status,
                      "".join("<td>%s</td>" % c for c in cells), _e(rec.get("board_port", ""))))
    out.append("</table><p>Full record: <a href='report.json'>report.json</a></p></body></html>")
    return "\n".join(out) + "\n"


def write(out_dir, report, images):
    """Write report.json, overlays/*.png and report.html into out_dir atomically.
    `images`: the EvalImage list in report order (for the overlay pixels)."""
    with atomic.staged_dir(out_dir) as stage:
        odir = os.path.join(stage, "overlays")
        os.makedirs(odir)
        names = []
        for i, (rec, img) in enumerate(zip(report["images"], images)):
            name = overlay_name(i, rec)
            overlay(img.pixels, rec).save(os.path.join(odir, name), "PNG")
            rec["overlay"] = "overlays/" + name
            names.append(name)
        with open(os.path.join(stage, "report.json"), "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
        with open(os.path.join(stage, "report.html"), "w", encoding="utf-8") as f:
            f.write(html_page(report, names))
