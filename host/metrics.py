"""Agreement metrics between a reference (TensorFlow float) and a prediction (kmodel, board).

Tensor columns follow STM32 X-CUBE-AI's "X-cross" validation: cos, l2r (=||p-r||/||r||),
rmse, mae, max-abs. Detections are matched one-to-one by IoU with the Hungarian method.
"""
import numpy as np
from scipy.optimize import linear_sum_assignment

TENSOR_KEYS = ("cos", "l2r", "rmse", "mae", "max_abs")


def tensor_metrics(pred, ref):
    p = np.asarray(pred, dtype=np.float64).ravel()
    r = np.asarray(ref, dtype=np.float64).ravel()
    if p.shape != r.shape:
        raise ValueError("shape mismatch: %s vs %s" % (p.shape, r.shape))
    diff = p - r
    norm_p, norm_r = np.linalg.norm(p), np.linalg.norm(r)
    if norm_p == 0 and norm_r == 0:
        cos = 1.0
    elif norm_p == 0 or norm_r == 0:
        cos = 0.0
    else:
        cos = float(np.dot(p, r) / (norm_p * norm_r))
    return {
        "cos": cos,
        "l2r": float(np.linalg.norm(diff) / norm_r) if norm_r else float(np.linalg.norm(diff) > 0),
        "rmse": float(np.sqrt(np.mean(diff ** 2))),
        "mae": float(np.mean(np.abs(diff))),
        "max_abs": float(np.max(np.abs(diff))) if diff.size else 0.0,
    }


def summarize_tensor_metrics(per_sample):
    """Mean of each column over samples, plus the worst cos and the worst max-abs."""
    if not per_sample:
        return {}
    out = {k: float(np.mean([m[k] for m in per_sample])) for k in TENSOR_KEYS}
    out["min_cos"] = float(min(m["cos"] for m in per_sample))
    out["worst_max_abs"] = float(max(m["max_abs"] for m in per_sample))
    out["samples"] = len(per_sample)
    return out


def iou_matrix(a, b):
    """Pairwise IoU of boxes given as rows starting with x0, y0, x1, y1."""
    a = np.asarray([box[:4] for box in a], dtype=np.float64).reshape(-1, 4)
    b = np.asarray([box[:4] for box in b], dtype=np.float64).reshape(-1, 4)
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _class_of(box):
    return int(box[5]) if len(box) > 5 else 0


def match_detections(pred, true, iou=0.5):
    """One-to-one matching (Hungarian on IoU) of predicted to true boxes of the same class.

    Boxes are sequences (x0, y0, x1, y1[, score[, class_id]]); true boxes without a class
    are class 0. Returns tp/fp/fn, precision/recall/f1 and the matched pairs
    (pred index, true index, iou)."""
    pairs = []
    if len(pred) and len(true):
        ious = iou_matrix(pred, true)
        same_class = np.array([[_class_of(p) == _class_of(t) for t in true] for p in pred])
        cost = np.where(same_class & (ious >= iou), -ious, 0.0)
        rows, cols = linear_sum_assignment(cost)
        pairs = [(int(r), int(c), float(ious[r, c])) for r, c in zip(rows, cols)
                 if cost[r, c] < 0]
    return counts_to_prf(len(pairs), len(pred) - len(pairs), len(true) - len(pairs), pairs)


def counts_to_prf(tp, fp, fn, pairs=None):
    # Nothing predicted and nothing expected is perfect agreement, not 0/0.
    precision = tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0)
    recall = tp / (tp + fn) if tp + fn else (1.0 if fp == 0 else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    out = {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}
    if pairs is not None:
        out["pairs"] = pairs
    return out


def pool_matches(matches):
    """Micro-averaged P/R/F1 over many images' match_detections results."""
    return counts_to_prf(sum(m["tp"] for m in matches), sum(m["fp"] for m in matches),
                         sum(m["fn"] for m in matches))
