"""Board vs host TensorFlow, per image and overall, and the pass/fail verdict.

Per image: output-tensor metrics (host.metrics: cos, l2r, rmse, mae, max-abs; board tensor
vs TF tensor in CHW order), detections (the host decodes TF's output with the board's own
decoder, device/decoders.py; board boxes are matched to host boxes one-to-one by IoU >= 0.5,
Hungarian), score and box-coordinate deltas of matched pairs, and the input CRCs (the board's
CRC of its KPU input bytes vs the host's CRC of its own pixels in the same planar layout: a
mismatch means the board saw other pixels, a preprocessing problem, not a model problem).
"""
import binascii

import numpy as np

from device import decoders
from device import protocol as P
from host import decode_eval, decoder_kinds, eval_summary, metrics

# An unmatched box scoring within this of the decoder threshold is a near-threshold flip
# (quantisation moved the score across the threshold on one side), reported as such.
NEAR_THRESHOLD = 0.05

CRC_SOURCES = {P.CRC_NONE: "none", P.CRC_PIX_AI: "pix_ai", P.CRC_LUT: "lut"}


def decoder_params(manifest):
    return decoder_kinds.board_params(manifest["decoder"])


def decode(params, flat_chw, shape):
    """Boxes from one flat CHW output with the board's decoder (fractions of the image)."""
    if params["type"] == "raw":
        return []
    return [tuple(float(v) for v in b[:5]) + (int(b[5]),) for b in
            decoders.decode(params["type"], [float(v) for v in flat_chw], tuple(shape), params)]


def _box(b):
    return [round(float(v), 5) for v in b[:5]] + [int(b[5])]


def compare_image(image, host_outputs, shapes, params, result, error, width, height, iou=0.5,
                  truth=None):
    """One image's record (JSON-ready). host_outputs: flat CHW arrays, one per output.
    classify/segment (host.decode_eval): the record has "classify" or "segment" in place of
    box matching (truth: the image's class id from --eval-labels); a segment record carries
    "masks" (board, host, h, w) for its overlay, which eval_report.overlay takes out."""
    host_boxes = decode(params, host_outputs[0], shapes[0])
    rec = {"name": image.name, "path": image.path, "resized": image.resized,
           "source_size": list(image.source_size), "payload_bytes": len(image.payload),
           "host_boxes": [_box(b) for b in host_boxes]}
    if error is not None or result is None:
        rec["status"] = "board_error"
        rec["error"] = error or {"name": "missing", "code": 0, "reason": "no reply"}
        return rec
    got = [list(o["shape"]) for o in result["outputs"]]
    if got != [list(s) for s in shapes] or \
            any(len(o["data"]) != int(np.prod(o["shape"])) for o in result["outputs"]):
        rec["status"] = "board_error"
        rec["error"] = {"name": "shape", "code": 0,
                        "reason": "board outputs %s, manifest %s" % (got, shapes)}
        return rec
    rec["status"] = "ok"
    board_boxes = [tuple(b) for b in result["boxes"]]
    rec["board_boxes"] = [_box(b) for b in board_boxes]
    tensors = [metrics.tensor_metrics(np.asarray(out["data"], np.float32), ref)
               for out, ref in zip(result["outputs"], host_outputs)]
    rec["tensors"] = tensors
    if params["type"] in decode_eval.KINDS:
        rec[params["type"]], masks = decode_eval.image_record(params, result, host_outputs[0],
                                                              shapes[0], truth)
        if masks is not None:
            rec["masks"] = masks
        det = metrics.match_detections([], [], iou)
    else:
        det = metrics.match_detections(board_boxes, host_boxes, iou)
    matches = []
    for bi, hi, v in det.pop("pairs"):
        b, h = board_boxes[bi], host_boxes[hi]
        scale = (width, height, width, height)
        matches.append({"board": bi, "host": hi, "iou": round(v, 5),
                        "score_delta": round(abs(float(b[4]) - float(h[4])), 6),
                        "box_delta_px": round(max(abs(float(b[i]) - float(h[i])) * scale[i]
                                                  for i in range(4)), 4)})
    det["host_boxes"] = len(host_boxes)
    det["board_boxes"] = len(board_boxes)
    matched_b = set(m["board"] for m in matches)
    matched_h = set(m["host"] for m in matches)
    unmatched = [] if params["type"] in decode_eval.KINDS else \
        [b[4] for i, b in enumerate(board_boxes) if i not in matched_b] + \
        [h[4] for i, h in enumerate(host_boxes) if i not in matched_h]
    det["unmatched"] = len(unmatched)
    # the board's float32 comparison (device/decoders.py), so a score the board kept at the
    # threshold is judged as the board judged it
    det["near_threshold"] = sum(1 for v in unmatched if decoders.near_threshold(
        float(v), params["threshold"], NEAR_THRESHOLD))
    rec["detections"] = det
    rec["matches"] = matches
    src = result["crc_source"]
    rec["crc"] = {
        "source": CRC_SOURCES.get(src, str(src)),
        "input_board": result["input_crc"], "input_host": image.input_crc,
        "input_equal": None if src == P.CRC_NONE else result["input_crc"] == image.input_crc,
        "pixel_board": result["pixel_crc"], "pixel_host": image.pixel_crc,
        "pixel_equal": result["pixel_crc"] == image.pixel_crc,
    }
    rec["board"] = {"kpu_ms": result["kpu_ms"], "prep_ms": result["prep_ms"],
                    "decode_ms": result["decode_ms"], "mem_free": result["mem_free"],
                    "flags": result["flags"],
                    # the exact float32 bytes the board sent, per output (run-to-run identity)
                    "outputs_crc32": [binascii.crc32(np.asarray(o["data"], "<f4").tobytes())
                                      & 0xFFFFFFFF for o in result["outputs"]]}
    return rec


def summarize(records, output_names):
    """The summary of a list of records (host.eval_summary accumulates it record by record,
    as serial_eval does)."""
    summary = eval_summary.Summary(output_names)
    for rec in records:
        summary.add(rec)
    return summary.result()


def sent_pixels_name(payload):
    """What the pixel CRC covers: the bytes a payload carries (docs/protocol.md, pixel_crc)."""
    return "gray8 bytes" if payload == "gray8" else "RGB565 bytes"


def verdict(summary, min_f1, min_cos, payload, min_top1=0.98, min_pixels=0.98):
    """(ok, reasons, warnings): reasons say why fidelity is below the thresholds."""
    reasons = decode_eval.verdict_reasons(summary, min_top1, min_pixels)
    warnings = []
    if summary["failed"]:
        first = summary["failures"][0]
        reasons.append("%d of %d image(s) failed on the board (first: %s: %s %s)"
                       % (summary["failed"], summary["images"], first["name"],
                          first["error"].get("name"), first["error"].get("reason", "")[:160]))
    if not summary["compared"]:
        reasons.append("no image was compared")
        return False, reasons, warnings
    f1 = summary["detections"]["f1"]
    if f1 < min_f1:
        text = "board-vs-host detection F1 %.4f < --min-f1 %g" % (f1, min_f1)
        det = summary["detections"]
        if det["unmatched"]:
            text += (" (%d of %d unmatched box(es) score within %.2f of the threshold: "
                     "quantisation moved them across it)"
                     % (det["near_threshold"], det["unmatched"], NEAR_THRESHOLD))
        reasons.append(text)
    if summary["mean_cos"] < min_cos:
        reasons.append("mean output cos %.5f < --min-cos %g" % (summary["mean_cos"], min_cos))
    crc = summary["input_crc"]
    if crc["differ"]:
        text = ("preprocessing, not the model: the board's KPU input differs from the host's "
                "pixels on %d of %d image(s) (input CRC; %s %s)"
                % (crc["differ"], summary["compared"], sent_pixels_name(payload),
                   "equal" if not summary["pixel_crc"]["differ"] else
                   "differ on %d" % summary["pixel_crc"]["differ"]))
        if payload == "jpeg":
            warnings.append(text + ": the board's JPEG decoder differs from Pillow's; "
                            "--payload rgb565 compares the model alone")
        elif payload == "gray8":
            reasons.append(text + ": the board's GRAYSCALE image did not get the gray8 bytes "
                           "sent (pix_to_ai copies them) or bytes were corrupted")
        else:
            reasons.append(text + ": the firmware expands RGB565 differently from "
                           "host.pixels (pix_to_ai rule) or bytes were corrupted")
    boxless = summary.get("classify") or summary.get("segment")
    if not boxless and not summary["detections"]["host_boxes"] and \
            not summary["detections"]["board_boxes"]:
        warnings.append("neither the host nor the board found a box on these images: the F1 "
                        "is vacuous, only the output tensors were compared")
    if crc["not_computed"]:
        warnings.append("the board computed no input CRC on %d image(s) (config input_crc "
                        "off?): pixel agreement is not proven there" % crc["not_computed"])
    return not reasons, reasons, warnings
