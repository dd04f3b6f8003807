"""device/decoders.py: hand-computed cases + a numpy reference under hypothesis."""
import math
import os
import sys
from array import array

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from device import decoders  # noqa: E402
from device.decoders import decode, iou, nms  # noqa: E402

NEG = -20.0  # logit far below any threshold


def chw(c, h, w, fill=NEG):
    return np.full((c, h, w), fill, dtype=np.float64)


def approx_box(got, want, tol=1e-6, rel=None):
    assert len(got) == 6
    for g, x in zip(got[:5], want[:5]):
        assert g == pytest.approx(x, abs=tol, rel=rel)
    assert got[5] == want[5]


# ---------------------------------------------------------------- yolo2
def test_yolo2_single_anchor_single_class():
    # shape (6, 2, 3): one anchor (w=1, h=2 grid cells), one class
    t = chw(6, 2, 3)
    r, c = 1, 2
    t[0, r, c] = 0.0             # tx -> 0.5
    t[1, r, c] = 0.0             # ty -> 0.5
    t[2, r, c] = math.log(2.0)   # tw -> exp = 2 -> w = 2 * 1 / 3
    t[3, r, c] = 0.0             # th -> exp = 1 -> h = 1 * 2 / 2 = 1
    t[4, r, c] = math.log(4.0)   # obj -> 0.8
    t[5, r, c] = 3.0             # class logit, 1 class -> prob 1
    params = {"anchors": [1.0, 2.0], "classes": 1, "threshold": 0.5, "nms": 0.3}
    boxes = decode("yolo2", list(t.ravel()), (6, 2, 3), params)
    # x = (2 + .5) / 3 = 5/6, w = 2/3 ; y = (1 + .5) / 2 = .75, h = 1
    assert len(boxes) == 1
    approx_box(boxes[0], (5 / 6 - 1 / 3, 0.25, 5 / 6 + 1 / 3, 1.25, 0.8, 0))


def test_yolo2_softmax_classes_and_anchor_layout():
    # two anchors, three classes: channel = a*(5+3)+e ; shape (16, 1, 2)
    anchors = [1.0, 1.0, 2.0, 0.5]          # anchor 1: w=2, h=0.5 grid cells
    t = chw(16, 1, 2)
    a, col = 1, 1
    b = a * 8
    t[b + 0, 0, col] = 0.0
    t[b + 1, 0, col] = 0.0
    t[b + 2, 0, col] = 0.0
    t[b + 3, 0, col] = 0.0
    t[b + 4, 0, col] = math.log(9.0)         # obj 0.9
    t[b + 5, 0, col] = 0.0                   # softmax of (0, ln2, ln5) = (1, 2, 5)/8
    t[b + 6, 0, col] = math.log(2.0)
    t[b + 7, 0, col] = math.log(5.0)
    params = {"anchors": anchors, "classes": 3, "threshold": 0.5, "nms": 0.3}
    boxes = decode("yolo2", t.ravel().tolist(), (16, 1, 2), params)
    assert len(boxes) == 1
    # x = (1 + .5)/2 = .75, w = 2/2 = 1 ; y = .5, h = .5/1 = .5 ; score .9 * 5/8
    approx_box(boxes[0], (0.25, 0.25, 1.25, 0.75, 0.9 * 0.625, 2))
    # obj 0.9 passes 0.6 but obj * class prob = 0.5625 does not
    params["threshold"] = 0.6
    assert decode("yolo2", t.ravel().tolist(), (16, 1, 2), params) == []


def test_yolo2_threshold_is_strict_and_applies_to_obj():
    t = chw(6, 1, 1)
    t[4, 0, 0] = 0.0  # obj exactly 0.5
    params = {"anchors": [1, 1], "classes": 1, "threshold": 0.5, "nms": None}
    assert decode("yolo2", t.ravel().tolist(), (6, 1, 1), params) == []
    params["threshold"] = 0.49
    assert len(decode("yolo2", t.ravel().tolist(), (6, 1, 1), params)) == 1


def test_yolo2_nms_per_class_and_sorted():
    # one anchor, two classes, 1x3 grid: cells 0 and 1 overlap strongly
    t = chw(7, 1, 3)
    anchors = [3.0, 1.0]  # w = 3/3 = 1 (whole image), h = 1
    for col, obj, cls in ((0, 2.0, 0), (1, 3.0, 0), (2, 1.0, 1)):
        t[0:4, 0, col] = 0.0
        t[4, 0, col] = obj
        t[5 + cls, 0, col] = 5.0
        t[5 + (1 - cls), 0, col] = -5.0
    params = {"anchors": anchors, "classes": 2, "threshold": 0.1, "nms": 0.3}
    boxes = decode("yolo2", t.ravel().tolist(), (7, 1, 3), params)
    # cells 0 and 1 (class 0) overlap heavily -> keep the higher score (cell 1);
    # cell 2 is class 1 -> never suppressed by class 0
    assert [b[5] for b in boxes] == [0, 1]
    assert boxes[0][0] == pytest.approx((1.5 / 3) - 0.5)
    assert boxes[0][4] > boxes[1][4]
    params["nms"] = None
    assert len(decode("yolo2", t.ravel().tolist(), (7, 1, 3), params)) == 3


def test_yolo2_bad_shape():
    with pytest.raises(ValueError):
        decode("yolo2", [0.0] * 30, (30, 1, 1), {"anchors": [1, 1], "classes": 1})
    with pytest.raises(ValueError):
        decode("yolo2", [0.0] * 5, (6, 1, 1), {"anchors": [1, 1], "classes": 1})


def test_yolo2_extreme_values_do_not_overflow():
    t = chw(6, 1, 1)
    t[:, 0, 0] = 1e6
    boxes = decode("yolo2", t.ravel().tolist(), (6, 1, 1),
                   {"anchors": [1, 1], "classes": 1, "threshold": 0.5, "nms": 0.3})
    assert len(boxes) == 1 and all(math.isfinite(v) for v in boxes[0][:5])


# ---------------------------------------------------------------- grid
def test_grid_hand_case():
    t = chw(5, 2, 2)
    r, c = 0, 1
    t[0, r, c] = 0.0               # .5
    t[1, r, c] = math.log(3.0)     # .75
    t[2, r, c] = 0.0               # w = .5
    t[3, r, c] = -math.log(3.0)    # h = .25
    t[4, r, c] = math.log(3.0)     # score .75
    boxes = decode("grid", t.ravel().tolist(), (5, 2, 2), {"threshold": 0.5, "nms": 0.3})
    # x = (1 + .5)/2 = .75 ; y = (0 + .75)/2 = .375
    assert len(boxes) == 1
    approx_box(boxes[0], (0.5, 0.25, 1.0, 0.5, 0.75, 0))
    # strict: a score exactly at the threshold is dropped (sigmoid(0) = 0.5 in float32 too)
    t[4, r, c] = 0.0
    assert decode("grid", t.ravel().tolist(), (5, 2, 2), {"threshold": 0.5, "nms": 0.3}) == []


def test_grid_wrong_channels():
    with pytest.raises(ValueError):
        decode("grid", [0.0] * 6, (6, 1, 1), {"threshold": 0.5})


def test_raw_and_unknown():
    assert decode("raw", [1.0, 2.0], (2, 1, 1), {}) == []
    with pytest.raises(ValueError):
        decode("ssd", [1.0], (1, 1, 1), {})


def test_accepts_array_f():
    t = chw(5, 1, 1)
    t[4, 0, 0] = 2.0
    boxes = decode("grid", array("f", t.ravel().tolist()), (5, 1, 1), {"threshold": 0.5, "nms": 0.3})
    assert len(boxes) == 1


# ---------------------------------------------------------------- iou / nms
def test_iou_hand():
    a = (0.0, 0.0, 2.0, 2.0, 1.0, 0)
    b = (1.0, 1.0, 3.0, 3.0, 1.0, 0)
    assert iou(a, b) == pytest.approx(1.0 / 7.0)
    assert iou(a, a) == pytest.approx(1.0)
    assert iou(a, (2.0, 0.0, 3.0, 1.0, 1, 0)) == 0.0   # touching edge
    assert iou((0, 0, 0, 0, 1, 0), (0, 0, 0, 0, 1, 0)) == 0.0


def test_nms_hand():
    boxes = [
        (0.0, 0.0, 1.0, 1.0, 0.6, 0),
        (0.0, 0.0, 1.0, 0.9, 0.9, 0),   # IoU .9 with the first -> first suppressed
        (0.0, 0.0, 1.0, 1.0, 0.7, 1),   # other class: kept
        (2.0, 2.0, 3.0, 3.0, 0.8, 0),   # far away: kept
    ]
    kept = nms(boxes, 0.5)
    assert [b[4] for b in kept] == [0.9, 0.8, 0.7]
    assert len(nms(boxes, 0.95)) == 4
    assert [b[4] for b in nms(boxes, None)] == [0.9, 0.8, 0.7, 0.6]


# ---------------------------------------------------------------- reference
def ref_yolo2(t, anchors, ncls, thr):
    c, h, w = t.shape
    na = len(anchors) // 2
    t = t.reshape(na, 5 + ncls, h, w)
    sig = lambda x: 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))  # noqa: E731
    out = []
    for a in range(na):
        for r in range(h):
            for col in range(w):
                v = t[a, :, r, col]
                cl = v[5:] - v[5:].max()
                p = np.exp(cl) / np.exp(cl).sum()
                k = int(np.argmax(p))
                s = sig(v[4]) * p[k]
                if s > thr:
                    x = (col + sig(v[0])) / w
                    y = (r + sig(v[1])) / h
                    bw = np.exp(np.clip(v[2], -decoders.SIZE_CLAMP, decoders.SIZE_CLAMP)) * anchors[2 * a] / w
                    bh = np.exp(np.clip(v[3], -decoders.SIZE_CLAMP, decoders.SIZE_CLAMP)) * anchors[2 * a + 1] / h
                    out.append((x - bw / 2, y - bh / 2, x + bw / 2, y + bh / 2, s, k))
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4),
       st.floats(0.05, 0.95), st.integers(0, 2 ** 31))
def test_yolo2_matches_reference(na, ncls, h, w, thr, seed):
    rng = np.random.RandomState(seed % (2 ** 31))
    # float32 tensors (as the KPU gives them); the decoder computes in float32 like the board,
    # the reference in float64: equal within float32 rounding, scores away from the threshold
    t = rng.normal(0, 2, size=(na * (5 + ncls), h, w)).astype(np.float32).astype(np.float64)
    anchors = list(rng.uniform(0.5, 4, size=2 * na))
    params = {"anchors": anchors, "classes": ncls, "threshold": thr, "nms": None}
    got = decode("yolo2", t.ravel().tolist(), t.shape, params)
    want = sorted(ref_yolo2(t, anchors, ncls, thr), key=lambda b: -b[4])   # stable: ties in order
    near = [b for b in ref_yolo2(t, anchors, ncls, 0.0) if abs(b[4] - thr) < 1e-5]
    scores = sorted(b[4] for b in want)
    assume(not near and all(b - a > 1e-5 for a, b in zip(scores, scores[1:])))
    assert len(got) == len(want)
    for g, x in zip(got, want):
        approx_box(g, x, tol=1e-5, rel=1e-5)


def test_face_size_speed():
    # the example model: 30x7x10; must be cheap (board runs this each frame)
    import time
    rng = np.random.RandomState(0)
    t = rng.normal(-3, 2, size=(30, 7, 10)).ravel().tolist()
    params = {"anchors": [1.0, 1.2, 2, 2.4, 3, 3.6, 4, 4.8, 5, 6], "classes": 1,
              "threshold": 0.5, "nms": 0.3}
    t0 = time.perf_counter()
    for _ in range(50):
        decode("yolo2", t, (30, 7, 10), params)
    assert (time.perf_counter() - t0) / 50 < 0.01
