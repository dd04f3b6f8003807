"""How far two sides agree after a classify or segment decoder (docs/model-kinds.md): the
converter's float TF vs kmodel, serial_eval's board vs host. Both sides are decoded with the
board's own decoder (device/decoders.py).

classify: top-1 agreement, top-k overlap (|A & B| / k of the two top-k class sets), the
top-1 score delta where both top-1 classes are equal, and the label confusion (a-side top-1
vs b-side top-1). segment: pixel agreement and IoU per class (the two masks as each other's
reference: intersection over union of the pixels each assigns to the class) and their mean
over the classes either mask uses.
"""
import numpy as np

from device import decoders


def classify(params, flat_chw, shape):
    """[(score, class id)], best first."""
    return [(float(r[4]), int(r[5])) for r in
            decoders.decode("classify", [float(v) for v in flat_chw], tuple(shape), params)]


def mask(params, flat_chw, shape):
    return bytes(decoders.segment_mask([float(v) for v in flat_chw], tuple(shape), params))


def classify_pair(a, b):
    """One image's agreement of two top-k lists [(score, class)] (a: board or kmodel, b: the
    reference)."""
    top1 = a[0][1] if a else None
    ref1 = b[0][1] if b else None
    k = max(len(a), len(b))
    overlap = len(set(c for _, c in a) & set(c for _, c in b)) / float(k) if k else 1.0
    return {"top1": top1, "ref_top1": ref1, "top1_equal": top1 == ref1,
            "topk_overlap": overlap,
            "score_delta": abs(a[0][0] - b[0][0]) if top1 is not None and top1 == ref1
            else None}


def mask_pair(a, b, classes):
    """One image's agreement of two masks (bytes of class ids): pixels, equal pixels,
    per-class intersection and union counts (classes + 1 slots: the last is MASK_NONE)."""
    x = np.frombuffer(a, np.uint8).astype(np.int64)
    y = np.frombuffer(b, np.uint8).astype(np.int64)
    x = np.minimum(x, classes)
    y = np.minimum(y, classes)
    n = classes + 1
    inter = np.bincount(x[x == y], minlength=n)
    union = np.bincount(x, minlength=n) + np.bincount(y, minlength=n) - inter
    return {"pixels": int(x.size), "equal": int((x == y).sum()),
            "inter": [int(v) for v in inter[:classes]],
            "union": [int(v) for v in union[:classes]]}


def iou_summary(inter, union, pixels, equal):
    """Pixel agreement, IoU per class (None for a class neither side used) and their mean."""
    ious = [i / float(u) if u else None for i, u in zip(inter, union)]
    used = [v for v in ious if v is not None]
    return {"pixels": pixels, "pixel_agreement": equal / float(pixels) if pixels else None,
            "iou": ious, "mean_iou": sum(used) / len(used) if used else None}


def convert_measure(decoder, float_chw, sim_chw, shape):
    """The converter's kmodel-vs-float measure for a classify or segment decoder (float_chw,
    sim_chw: output 0 per held-out image)."""
    if decoder["type"] == "classify":
        pairs = [classify_pair(classify(decoder, s, shape), classify(decoder, f, shape))
                 for f, s in zip(float_chw, sim_chw)]
        n = len(pairs)
        return {"images": n,
                "top1_agreement": sum(p["top1_equal"] for p in pairs) / float(n) if n else None,
                "topk_overlap": sum(p["topk_overlap"] for p in pairs) / float(n) if n else None}
    classes = int(decoder["classes"])
    inter = [0] * classes
    union = [0] * classes
    pixels = equal = 0
    for f, s in zip(float_chw, sim_chw):
        m = mask_pair(mask(decoder, s, shape), mask(decoder, f, shape), classes)
        pixels += m["pixels"]
        equal += m["equal"]
        inter = [a + b for a, b in zip(inter, m["inter"])]
        union = [a + b for a, b in zip(union, m["union"])]
    return dict(iou_summary(inter, union, pixels, equal), images=len(float_chw))


def convert_lines(quant):
    """The convert report's line for a classify or segment measure ([] for other decoders)."""
    c = quant.get("classify")
    if c:
        return ["classes kmodel vs float: top-1 agreement %.3f, top-k overlap %.3f (%d "
                "held-out images)" % (c["top1_agreement"], c["topk_overlap"], c["images"])]
    s = quant.get("segment")
    if s:
        return ["masks kmodel vs float: pixel agreement %.4f, mean IoU %s (%d held-out "
                "images, %d pixels)" % (s["pixel_agreement"], "n/a" if s["mean_iou"] is None
                                        else "%.4f" % s["mean_iou"], s["images"], s["pixels"])]
    return []
