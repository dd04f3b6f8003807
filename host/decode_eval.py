"""serial_eval for the classify and segment decoders (docs/model-kinds.md): each image's
board-vs-host agreement (host.decode_agreement), its accumulation over the run, the verdict's
thresholds and the report's lines. host.compare, host.eval_summary and host.eval_report call
these for a model whose decoder is classify or segment.

Besides board vs host, each record says whether the board's own result (top-k records or
mask) equals the host's decode of the board's own tensor: the device-side decoder conformance
(the board's float32 arithmetic is the contract, docs/design.md "Decoders").
"""
import json
import os

from host import decode_agreement as A
from host.errors import UserError

KINDS = ("classify", "segment")
MAX_NONCONFORMING = 20      # image names kept for the report


def load_truth(path, params):
    """--eval-labels FILE: JSON {image file name: class name or index} -> {name: class id}."""
    if not path:
        return {}
    if params["type"] != "classify":
        raise UserError("--eval-labels %s: the manifest's decoder is %s; true labels of eval "
                        "images are for --decoder classify" % (path, params["type"]))
    labels = params["labels"]
    classes = int(params["classes"])
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, ValueError) as exc:
        raise UserError("--eval-labels %s cannot be read as JSON (%s): give {\"image.jpg\": "
                        "\"class name\" or index, ...}" % (path, str(exc)[:80]))
    if not isinstance(raw, dict):
        raise UserError("--eval-labels %s must be a JSON object {image file name: class name "
                        "or index}" % path)
    truth = {}
    for name, value in raw.items():
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < classes:
            truth[os.path.basename(name)] = value
        elif isinstance(value, str) and value in labels:
            truth[os.path.basename(name)] = labels.index(value)
        else:
            raise UserError("--eval-labels %s: %r for %s is neither a class index nor one of "
                            "the manifest's labels (%s)" % (path, value, name,
                                                            ", ".join(labels[:10]) or "none"))
    return truth


def image_record(params, result, host_out, shape, truth=None):
    """The decoder part of one compared image's record (JSON-ready), and, for segment, the
    two masks for the overlay (None for classify)."""
    board_out = result["outputs"][0]["data"]
    if params["type"] == "classify":
        host = A.classify(params, host_out, shape)
        board = [(float(b[4]), int(b[5])) for b in result["boxes"]]
        rec = A.classify_pair(board, host)
        rec["host"] = [[round(s, 6), c] for s, c in host]
        rec["board"] = [[round(s, 6), c] for s, c in board]
        rec["conforms"] = board == A.classify(params, board_out, shape)
        if truth is not None:
            rec["truth"] = truth
        return rec, None
    host = A.mask(params, host_out, shape)
    mask = result.get("mask")
    board = bytes(mask["ids"]) if mask is not None else None
    if board is None or len(board) != len(host):
        return {"mask_missing": True, "conforms": False, "pixel_agreement": 0.0,
                "mean_iou": None}, None
    rec = A.mask_pair(board, host, int(params["classes"]))
    one = A.iou_summary(rec["inter"], rec["union"], rec["pixels"], rec["equal"])
    rec.update(pixel_agreement=one["pixel_agreement"], mean_iou=one["mean_iou"],
               conforms=board == A.mask(params, board_out, shape))
    return rec, (board, host, shape[1], shape[2], params.get("colors") or [])


class Totals(object):
    """The run's classify or segment numbers, one record at a time (any order)."""

    def __init__(self):
        self.kind = None
        self.images = 0
        self.nonconforming = 0
        self.nonconforming_names = []
        self.top1_equal = 0
        self.topk_overlap = 0.0
        self.delta_sum = 0.0
        self.delta_max = None
        self.deltas = 0
        self.confusion = {}             # (host top-1, board top-1) -> images
        self.labelled = self.board_correct = self.host_correct = 0
        self.pixels = self.equal = 0
        self.inter = []
        self.union = []
        self.missing = 0

    def add(self, rec):
        kind = next((k for k in KINDS if k in rec), None)
        if kind is None or rec["status"] != "ok":
            return
        self.kind = kind
        d = rec[kind]
        self.images += 1
        if not d["conforms"]:
            self.nonconforming += 1
            if len(self.nonconforming_names) < MAX_NONCONFORMING:
                self.nonconforming_names.append(rec["name"])
        if kind == "classify":
            self.top1_equal += d["top1_equal"]
            self.topk_overlap += d["topk_overlap"]
            if d["score_delta"] is not None:
                self.deltas += 1
                self.delta_sum += d["score_delta"]
                self.delta_max = max(self.delta_max or 0.0, d["score_delta"])
            key = (d["ref_top1"], d["top1"])
            self.confusion[key] = self.confusion.get(key, 0) + 1
            if "truth" in d:
                self.labelled += 1
                self.board_correct += d["top1"] == d["truth"]
                self.host_correct += d["ref_top1"] == d["truth"]
        elif d.get("mask_missing"):
            self.missing += 1
        else:
            if not self.inter:
                self.inter = [0] * len(d["inter"])
                self.union = [0] * len(d["union"])
            self.pixels += d["pixels"]
            self.equal += d["equal"]
            self.inter = [a + b for a, b in zip(self.inter, d["inter"])]
            self.union = [a + b for a, b in zip(self.union, d["union"])]

    def result(self):
        """{"classify": {...}} or {"segment": {...}} for the summary, {} for other decoders."""
        if self.kind is None:
            return {}
        n = self.images
        out = {"images": n, "decoder_nonconforming": self.nonconforming,
               "nonconforming_images": self.nonconforming_names}
        if self.kind == "classify":
            out.update(top1_agreement=self.top1_equal / float(n),
                       topk_overlap=self.topk_overlap / n,
                       score_delta={"mean": self.delta_sum / self.deltas if self.deltas
                                    else None, "max": self.delta_max},
                       confusion=[[h, b, c] for (h, b), c in sorted(
                           self.confusion.items(), key=lambda kv: (-kv[1], str(kv[0])))],
                       labelled=self.labelled,
                       board_accuracy=self.board_correct / float(self.labelled)
                       if self.labelled else None,
                       host_accuracy=self.host_correct / float(self.labelled)
                       if self.labelled else None)
        else:
            out.update(A.iou_summary(self.inter, self.union, self.pixels, self.equal),
                       masks_missing=self.missing)
        return {self.kind: out}


def verdict_reasons(summary, min_top1, min_pixels):
    """Reasons the run is below the classify/segment thresholds (or the board's decoder
    departs from the host's on its own tensor)."""
    reasons = []
    c = summary.get("classify")
    if c and c["top1_agreement"] < min_top1:
        reasons.append("board-vs-host top-1 agreement %.4f < --min-top1-agreement %g"
                       % (c["top1_agreement"], min_top1))
    s = summary.get("segment")
    if s:
        if s["masks_missing"]:
            reasons.append("%d image(s) came without the board's mask (R_MASK)"
                           % s["masks_missing"])
        if s["pixel_agreement"] is not None and s["pixel_agreement"] < min_pixels:
            reasons.append("board-vs-host pixel agreement %.4f < --min-pixel-agreement %g"
                           % (s["pixel_agreement"], min_pixels))
    d = c or s
    if d and d["decoder_nonconforming"]:
        reasons.append("the board's decoder result differs from the host's decode of the "
                       "board's own tensor on %d image(s) (first: %s): device/decoders.py "
                       "on the board departs from the contract"
                       % (d["decoder_nonconforming"], d["nonconforming_images"][0]))
    return reasons


def _name(labels, cid):
    if cid is None:
        return "-"
    return labels[cid] if 0 <= cid < len(labels) else str(cid)


def summary_lines(summary, labels):
    c = summary.get("classify")
    if c:
        lines = ["Classes board vs host: top-1 agreement %.4f, top-k overlap %.4f (%d "
                 "image(s)); top-1 score delta mean %s max %s"
                 % (c["top1_agreement"], c["topk_overlap"], c["images"],
                    "-" if c["score_delta"]["mean"] is None else "%.5f" % c["score_delta"]["mean"],
                    "-" if c["score_delta"]["max"] is None else "%.5f" % c["score_delta"]["max"])]
        off = [(h, b, n) for h, b, n in c["confusion"] if h != b]
        if off:
            lines.append("  host -> board top-1 disagreements: " + ", ".join(
                "%s -> %s x%d" % (_name(labels, h), _name(labels, b), n) for h, b, n in off[:8]))
        if c["labelled"]:
            lines.append("  accuracy on %d labelled image(s): board %.4f, host %.4f"
                         % (c["labelled"], c["board_accuracy"], c["host_accuracy"]))
        return lines + _conformance(c)
    s = summary.get("segment")
    if s:
        ious = ", ".join("%s %s" % (_name(labels, i), "-" if v is None else "%.3f" % v)
                         for i, v in enumerate(s["iou"]))
        return ["Masks board vs host: pixel agreement %s, mean IoU %s (%d image(s)); IoU per "
                "class: %s" % ("-" if s["pixel_agreement"] is None else "%.5f"
                               % s["pixel_agreement"],
                               "-" if s["mean_iou"] is None else "%.4f" % s["mean_iou"],
                               s["images"], ious)] + _conformance(s)
    return []


def _conformance(d):
    if not d["decoder_nonconforming"]:
        return ["  board decoder: equal to the host's decode of the board's tensor on every "
                "image"]
    return ["  board decoder: DIFFERS from the host's decode of the board's tensor on %d "
            "image(s): %s" % (d["decoder_nonconforming"], ", ".join(d["nonconforming_images"]))]


def key_numbers(summary):
    """(name, value) rows for the top of report.html."""
    c = summary.get("classify")
    if c:
        rows = [("top-1 agreement", "%.4f" % c["top1_agreement"]),
                ("top-k overlap", "%.4f" % c["topk_overlap"])]
        if c["labelled"]:
            rows.append(("accuracy board / host", "%.4f / %.4f"
                         % (c["board_accuracy"], c["host_accuracy"])))
        return rows
    s = summary.get("segment")
    if s:
        return [("pixel agreement", "-" if s["pixel_agreement"] is None
                 else "%.5f" % s["pixel_agreement"]),
                ("mean IoU", "-" if s["mean_iou"] is None else "%.4f" % s["mean_iou"])]
    return []


def confusion_html(summary, labels, escape):
    """The board-vs-host label confusion (classify) as an HTML table of its non-empty cells."""
    c = summary.get("classify")
    if not c or not c["confusion"]:
        return ""
    rows = "".join("<tr><td class='l'>%s</td><td class='l'>%s</td><td>%d</td></tr>"
                   % (escape(_name(labels, h)), escape(_name(labels, b)), n)
                   for h, b, n in c["confusion"])
    return ("<h2>Top-1 labels, host vs board</h2><table><tr><th>host</th><th>board</th>"
            "<th>images</th></tr>%s</table>" % rows)


def disagreements(rec):
    """How much a compared classify/segment record disagrees (0: agrees): a top-1 that
    differs, pixels that differ, a board decoder that departs from the host's."""
    d = rec.get("classify") or rec.get("segment")
    if d is None:
        return 0
    bad = 0 if d["conforms"] else 1
    if "top1_equal" in d:
        return bad + (not d["top1_equal"])
    if d.get("mask_missing"):
        return bad + 1
    return bad + d["pixels"] - d["equal"]


def why(rec):
    """A short text of the disagreement for the report's thumbnails."""
    d = rec.get("classify") or rec.get("segment")
    if d is None:
        return None
    if "top1_equal" in d:
        text = "top-1 host %s board %s" % (d["ref_top1"], d["top1"])
    elif d.get("mask_missing"):
        text = "no board mask"
    else:
        text = "pixel agreement %.4f" % d["pixel_agreement"]
    return text if d["conforms"] else text + ", board decoder differs"


def mask_overlay(pixels_u8, masks, scale):
    """Two panels side by side: the pixels the KPU saw under the host's mask (left) and under
    the board's (right), class colours at half opacity; class 0 (background) left clear."""
    from PIL import Image
    import numpy as np
    board, host, mh, mw, colors = masks
    base = Image.fromarray(pixels_u8, "RGB")
    w, h = base.width * scale, base.height * scale
    frame = np.asarray(base.resize((w, h), Image.NEAREST), np.float32)
    palette = np.array([list(c) for c in colors] + [[255, 255, 255]] * (256 - len(colors)),
                       np.float32)
    panels = []
    for ids in (host, board):
        m = np.frombuffer(ids, np.uint8).reshape(mh, mw)
        m = np.asarray(Image.fromarray(m, "L").resize((w, h), Image.NEAREST))
        tint = palette[m]
        keep = (m == 0)[..., None]
        panels.append(np.where(keep, frame, 0.5 * frame + 0.5 * tint).astype(np.uint8))
    return Image.fromarray(np.concatenate(panels, axis=1), "RGB")
