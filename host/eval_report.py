"""serial_eval's outputs: the terminal summary, report.json, per-image overlay PNGs and
report.html (verdict and key numbers on top, the worst disagreeing images as inline overlays
(at most host.eval_records.MAX_THUMBNAILS), charts, the sortable per-image table; one file
with no external assets). Overlays are drawn as records complete; report.json and the table
are written one record at a time from host.eval_records.RecordStore. Everything is built in a
staging directory inside --out and moved in only when complete (host.atomic.staged_dir).
"""
import base64
import html
import json
import os

from PIL import Image, ImageDraw

from host import charts, compare, decode_eval, eval_classes
from host.report import tensor_table
from host.report_html import CSS, SORT_SCRIPT, table_head, table_row

HOST_COLOR = (0, 200, 0)        # host TensorFlow boxes
BOARD_COLOR = (255, 0, 200)     # board boxes
SCALE = 2                       # overlays are drawn at twice the model input size
LEGEND_H = 34


def _f(v, fmt):
    return "-" if v is None else fmt % v


def _sent_payload(report):
    """The payload the boards were sent (--payload auto resolves per board)."""
    payloads = {b.get("payload") for b in report["boards"]}
    return payloads.pop() if len(payloads) == 1 else report["run"]["payload"]


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
        decoded = decode_eval.summary_lines(s, report.get("decoder", {}).get("labels") or [])
        lines += decoded
        if not decoded:
            lines.append(
                "Detections board vs host (IoU >= 0.5): P %.3f R %.3f F1 %.3f (host %d "
                "box(es), board %d, matched %d, unmatched near the threshold %d of %d); "
                "score delta mean %s max %s; box delta mean %s max %s px"
                % (d["precision"], d["recall"], d["f1"], d["host_boxes"], d["board_boxes"],
                   d["tp"], d["near_threshold"], d["unmatched"],
                   _f(s["score_delta"]["mean"], "%.4f"),
                   _f(s["score_delta"]["max"], "%.4f"), _f(s["box_delta_px"]["mean"], "%.2f"),
                   _f(s["box_delta_px"]["max"], "%.2f")))
            lines += eval_classes.summary_lines(s.get("detections_per_class") or [])
        c = s["input_crc"]
        lines.append("Input CRC (KPU input bytes): %d equal, %d differ, %d not computed (board "
                     "source: %s); %s: %d equal, %d differ"
                     % (c["equal"], c["differ"], c["not_computed"], ", ".join(c["sources"]),
                        compare.sent_pixels_name(_sent_payload(report)),
                        s["pixel_crc"]["equal"], s["pixel_crc"]["differ"]))
        lines.append("Board time per image: KPU %s ms (max %s), prep %s ms, decode %s ms%s"
                     % (_f(s["kpu_ms"]["mean"], "%.1f"), _f(s["kpu_ms"]["max"], "%.0f"),
                        _f(s["prep_ms"]["mean"], "%.1f"), _f(s["decode_ms"]["mean"], "%.1f"),
                        " (virtual board: nncase simulator time, not K210 time)"
                        if any(b["virtual"] for b in report["boards"]) else ""))
    for f in s["failures"][:5]:
        lines.append("FAILED %s: %s %s" % (f["name"], f["error"].get("name"),
                                            f["error"].get("reason", "")[:200]))
    if s["failed"] > 5:
        lines.append("... %d more failed image(s) in report.json" % (s["failed"] - 5))
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
        lines.append("PASS: %s, mean cos %.5f >= %g, input CRCs equal"
                     % (_decoded_pass(s, t), s["mean_cos"], t["min_cos"]))
    else:
        lines.append("FAIL: " + "; ".join(v["reasons"]))
    return lines


def _decoded_pass(s, t):
    """The PASS line's decoder measure: F1, or top-1 / pixel agreement."""
    if s.get("classify"):
        return "top-1 agreement %.4f >= %g" % (s["classify"]["top1_agreement"],
                                               t["min_top1_agreement"])
    if s.get("segment"):
        return "pixel agreement %.5f >= %g" % (s["segment"]["pixel_agreement"],
                                               t["min_pixel_agreement"])
    return "F1 %.4f >= %g" % (s["detections"]["f1"], t["min_f1"])


# ------------------------------------------------------------------ overlays
def _draw_boxes(draw, boxes, color, w, h, width, label_below):
    """Host scores are written above the box, board scores below it."""
    for b in boxes:
        x0, y0, x1, y1 = (max(0.0, min(1.0, v)) for v in b[:4])
        draw.rectangle([x0 * w, y0 * h, x1 * w, y1 * h], outline=color, width=width)
        y = min(h - 11, y1 * h + 2) if label_below else max(0, y0 * h - 12)
        draw.text((x0 * w + 3, y), "%.3f" % b[4], fill=color)


def overlay(pixels_u8, record):
    """PNG image: the pixels the KPU saw, host boxes and board boxes, and a legend; segment:
    the host's mask and the board's side by side (the record's "masks", taken out here);
    classify: the top-1 of each side in the legend."""
    masks = record.pop("masks", None)
    base = (Image.fromarray(pixels_u8[..., 0], "L").convert("RGB") if pixels_u8.shape[-1] == 1
            else Image.fromarray(pixels_u8, "RGB"))
    w, h = base.width * SCALE, base.height * SCALE
    top = decode_eval.mask_overlay(pixels_u8, masks, SCALE) if masks else \
        base.resize((w, h), Image.NEAREST)
    canvas = Image.new("RGB", (max(top.width, 520), h + LEGEND_H), (255, 255, 255))
    canvas.paste(top, (0, 0))
    d = ImageDraw.Draw(canvas)
    if "classify" not in record and "segment" not in record:
        _draw_boxes(d, record["host_boxes"], HOST_COLOR, w, h, 3, False)
        _draw_boxes(d, record.get("board_boxes", []), BOARD_COLOR, w, h, 1, True)
    else:
        _draw_decoded_legend(d, record, w, h)
    y = h + 4
    decoded = decode_eval.why(record) if record["status"] == "ok" else None
    d.rectangle([6, y + 2, 18, y + 12], fill=HOST_COLOR)
    d.text((24, y + 1), "host TensorFlow (%s)" % ("left" if masks else "top-1" if decoded else
                                                  "%d, score above" % len(record["host_boxes"])),
           fill=(0, 0, 0))
    d.rectangle([250, y + 2, 262, y + 12], fill=BOARD_COLOR)
    if record["status"] == "ok":
        d.text((268, y + 1), "board (%s)" % ("right" if masks else "top-1" if decoded else
                                             "%d, score below" % len(record["board_boxes"])),
               fill=(0, 0, 0))
        line = "%s  %s  cos %.5f  CRC %s" % (
            record["name"], decoded or "F1 %.3f" % record["detections"]["f1"],
            record["tensors"][0]["cos"],
            {True: "equal", False: "DIFFERS", None: "-"}[record["crc"]["input_equal"]])
    else:
        d.text((268, y + 1), "board: FAILED", fill=(200, 0, 0))
        line = "%s  %s: %s" % (record["name"], record["error"].get("name"),
                               record["error"].get("reason", "")[:60])
    d.text((6, y + 17), line, fill=(0, 0, 0))
    return canvas


def _draw_decoded_legend(d, record, w, h):
    """Classify: each side's top-1 over the image; segment: which panel is which."""
    c = record.get("classify")
    if c is not None:
        host = c["host"][0] if c["host"] else None
        board = c["board"][0] if c["board"] else None
        d.text((4, 2), "host %s" % ("-" if host is None else "%d %.3f" % (host[1], host[0])),
               fill=HOST_COLOR)
        d.text((4, 14), "board %s" % ("-" if board is None else "%d %.3f" % (board[1], board[0])),
               fill=BOARD_COLOR)
    elif "segment" in record:
        d.text((4, 2), "host mask", fill=HOST_COLOR)
        d.text((w + 4, 2), "board mask", fill=BOARD_COLOR)


def overlay_name(index, record):
    stem = os.path.splitext(record["name"])[0]
    return "%04d_%s.png" % (index, "".join(c if c.isalnum() or c in "-_." else "_" for c in stem))


# ------------------------------------------------------------------ html
_CRC = {True: "equal", False: "DIFFERS", None: "-"}


def _e(text):
    return html.escape(str(text))


def _why(rec):
    if rec["status"] != "ok":
        return "FAILED %s: %s" % (rec["error"].get("name"), rec["error"].get("reason", "")[:80])
    parts = ["cos %.5f" % min(t["cos"] for t in rec["tensors"])]
    if decode_eval.why(rec):
        parts.insert(0, decode_eval.why(rec))
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
        items += decode_eval.key_numbers(s) or [("detection F1", "%.4f" % s["detections"]["f1"])]
        items += [("mean cos", "%.5f" % s["mean_cos"]),
                  ("input CRC equal", "%d / %d" % (s["input_crc"]["equal"], s["compared"])),
                  ("KPU ms / image", _f(s["kpu_ms"]["mean"], "%.1f"))]
    items.append(("failed", str(s["failed"])))
    return "<table>%s</table>" % "".join(
        "<tr><th class='l'>%s</th><td>%s</td></tr>" % (_e(k), _e(v)) for k, v in items)


def _charts(store):
    cos, kpu_ms, score_deltas, box_deltas = store.chart_values()
    if not len(cos):
        return ""
    return "<h2>Charts</h2><div class='charts'>%s</div>" % "".join([
        charts.series(cos, "output cos per image, board vs host", "cos"),
        charts.histogram(score_deltas, "score delta of matched boxes", "|board - host| score"),
        charts.histogram(box_deltas, "box delta of matched boxes", "max corner delta (px)"),
        charts.series(kpu_ms, "KPU time per image", "ms")])


def _thumbnails(store):
    shown = store.worst
    if not shown:
        return "<h2>Disagreements</h2><p class='ok'>None: every image agrees.</p>"
    out = ["<h2>Disagreements (%d image(s), worst first%s)</h2>"
           % (store.disagreeing, ", the first %d inline, every one in the table below"
              % len(shown) if len(shown) < store.disagreeing else ""),
           "<p>Overlays: <span class='h'>&#9632; host TensorFlow boxes</span>, "
           "<span class='b'>&#9632; board boxes</span>, on the pixels the KPU received.</p>",
           "<div class='thumbs'>"]
    for i in shown:
        rec = store.record(i)
        with open(os.path.join(store.stage, rec["overlay"]), "rb") as f:
            png = f.read()
        out.append("<figure><a href='%s'><img alt='%s' src='data:image/png;base64,%s'></a>"
                   "<figcaption>%s: %s</figcaption></figure>"
                   % (_e(rec["overlay"]), _e(rec["name"]),
                      base64.b64encode(png).decode("ascii"), _e(rec["name"]), _e(_why(rec))))
    out.append("</div>")
    return "\n".join(out)


TABLE_HEADERS = ["image", "status", "host boxes", "board boxes", "unmatched", "F1", "cos",
                 "max abs", "input CRC", "KPU ms", "board"]


def _image_row(rec):
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
    return table_row([link] + [_e(c) for c in cells] + [_e(rec.get("board_port", ""))],
                     "bad" if bad else "", escaped=True, left_columns=2)


def _write_html(f, report, store):
    v = report["verdict"]
    f.write("\n".join([
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>serial_eval report</title>",
        "<style>%s.h{color:rgb%s}.b{color:rgb%s}</style></head><body>"
        % (CSS, HOST_COLOR, BOARD_COLOR),
        "<h1>serial_eval: board vs host TensorFlow</h1>",
        "<p class='verdict fail'><b>PARTIAL</b>: interrupted after %d of %d image(s); the "
        "verdict covers only those</p>" % (report["summary"]["images"],
                                          report["run"]["images_total"])
        if report["run"]["partial"] else "",
        "<p class='verdict %s'><b>%s</b>%s</p>" % (
            "ok" if v["ok"] else "fail", "PASS" if v["ok"] else "FAIL",
            "" if v["ok"] else ": " + _e("; ".join(v["reasons"]))),
        "".join("<p class='fail'>WARNING: %s</p>" % _e(w) for w in v["warnings"]),
        _key_numbers(report),
        decode_eval.confusion_html(report["summary"],
                                   report.get("decoder", {}).get("labels") or [], _e),
        _thumbnails(store),
        _charts(store),
        eval_classes.html_section(report["summary"].get("detections_per_class") or [], _e),
        "<h2>Summary</h2><pre>%s</pre>" % _e("\n".join(summary_lines(report))),
        "<h2>All images</h2><p>Click a column header to sort.</p>",
        table_head(TABLE_HEADERS, sortable=True, left_columns=2)]) + "\n")
    for _, text in store.records():         # one row at a time: any number of images
        f.write(_image_row(json.loads(text)))
    f.write("</table>\n<p>Full record: <a href='report.json'>report.json</a></p>\n"
            "<script>%s</script></body></html>\n" % SORT_SCRIPT)


def _write_json(f, report, store):
    """report.json: `report` with the records of `store` as its "images", written one record
    at a time."""
    head = json.dumps({k: v for k, v in report.items() if k != "images"}, indent=1)
    f.write(head[:-len("\n}")] + ',\n "images": [')
    for k, (_, text) in enumerate(store.records()):
        f.write(("," if k else "") + "\n  " + text.replace("\n", "\n  "))
    f.write("\n ]\n}\n")


def write(report, store):
    """report.json and report.html into the staging directory of `store`
    (host.eval_records.RecordStore, whose records are the report's images), which the caller
    moves into --out (host.atomic.staged_dir); the store's scratch file is removed."""
    try:
        with open(os.path.join(store.stage, "report.json"), "w") as f:
            _write_json(f, report, store)
        with open(os.path.join(store.stage, "report.html"), "w", encoding="utf-8") as f:
            _write_html(f, report, store)
    finally:
        store.close()
