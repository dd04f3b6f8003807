"""device/decoders.py on the board's interpreter (MicroPython 1.11, float32) against the host's
CPython import of the same file: random and crafted tensors (yolo2 with anchors, grid, raw;
extreme logits, NaN/inf, exact score ties, scores at the threshold, box areas that overflow
float32, thresholds and anchors with long decimals), compared bit for bit: the same boxes,
float32 bytes equal, in the same order. Contract: docs/design.md, "Decoders"."""
import math
import struct

import numpy as np

from device import decoders
import mpy_harness as H

EXTREMES = [1e30, -1e30, 1e10, -1e10, 100.0, -100.0, 60.5, -60.5, 20.0001, -20.0001,
            0.0, -0.0, 1e-40, -1e-40, 3.4e38, -3.4e38]


def _case(kind, t, params):
    flat = H.f32_values([float(v) for v in np.asarray(t, np.float64).ravel()])
    return {"op": "decode", "kind": kind, "data": H.f32_hex(flat), "shape": list(t.shape),
            "params": params, "_flat": flat}


def _yolo2_params(rng, na, ncls, thr=None, nms=0.3):
    anchors = [float(repr(float(v))) for v in rng.uniform(0.3, 6.0, size=2 * na)]
    return {"anchors": anchors, "classes": ncls,
            "threshold": float(rng.uniform(0.05, 0.95)) if thr is None else thr, "nms": nms}


def random_cases(rng):
    cases = []
    for _ in range(60):
        na, ncls = int(rng.randint(1, 6)), int(rng.randint(1, 5))
        h, w = int(rng.randint(1, 8)), int(rng.randint(1, 8))
        t = rng.normal(rng.uniform(-3, 1), rng.uniform(0.5, 4), size=(na * (5 + ncls), h, w))
        nms = [None, 0.3, 0.0, 1.0, float(rng.uniform(0, 1))][int(rng.randint(0, 5))]
        cases.append(_case("yolo2", t, _yolo2_params(rng, na, ncls, nms=nms)))
    for _ in range(40):
        h, w = int(rng.randint(1, 12)), int(rng.randint(1, 12))
        t = rng.normal(rng.uniform(-3, 1), rng.uniform(0.5, 4), size=(5, h, w))
        cases.append(_case("grid", t, {"threshold": float(rng.uniform(0.05, 0.95)),
                                       "nms": [None, 0.3, 0.5][int(rng.randint(0, 3))]}))
    cases.append(_case("raw", rng.normal(size=(3, 2, 2)), {}))
    return cases


def voc_cases(rng):
    """MaixPy's 20-class YOLOv2 layout: 5 anchors x (5 + 20) = 125 channels on a 7x10 grid,
    class logits spread wide so many classes win somewhere."""
    cases = []
    for _ in range(6):
        t = rng.normal(0, 1.5, size=(125, 7, 10))
        for a in range(5):
            t[a * 25 + 4] += 1.5                            # objectness: many candidates
            t[a * 25 + 5:(a + 1) * 25] *= 4.0               # confident classes
        cases.append(_case("yolo2", t, _yolo2_params(rng, 5, 20, thr=0.3)))
    return cases


def extreme_cases(rng):
    cases = []
    for k in range(30):
        kind = "yolo2" if k % 2 else "grid"
        na, ncls = int(rng.randint(1, 4)), int(rng.randint(1, 4))
        shape = (na * (5 + ncls), 3, 4) if kind == "yolo2" else (5, 4, 5)
        t = rng.choice(EXTREMES, size=shape)
        # keep some ordinary cells so boxes survive beside the extremes
        mask = rng.uniform(size=shape) < 0.5
        t[mask] = rng.normal(0, 3, size=int(mask.sum()))
        params = _yolo2_params(rng, na, ncls) if kind == "yolo2" else {"threshold": 0.3,
                                                                        "nms": 0.4}
        cases.append(_case(kind, t, params))
    return cases


def nan_inf_cases(rng):
    cases = []
    for k in range(30):
        kind = "yolo2" if k % 2 else "grid"
        na, ncls = 2, int(rng.randint(1, 4))
        shape = (na * (5 + ncls), 3, 3) if kind == "yolo2" else (5, 3, 3)
        t = rng.normal(1.0, 2.0, size=shape)
        flat = t.reshape(-1)
        for i in rng.choice(flat.size, size=int(rng.randint(1, 6)), replace=False):
            flat[i] = [float("nan"), float("inf"), float("-inf")][int(rng.randint(0, 3))]
        params = _yolo2_params(rng, na, ncls, thr=0.2) if kind == "yolo2" else \
            {"threshold": 0.2, "nms": 0.3}
        cases.append(_case(kind, t, params))
    return cases


def tie_cases(rng):
    """Equal scores everywhere: cells repeat one cell's values, or one score with different
    boxes: the order must be the decoder's (anchor, cell) order on both sides."""
    cases = []
    for k in range(24):
        if k % 2:
            na, ncls = int(rng.randint(1, 4)), int(rng.randint(1, 3))
            c = na * (5 + ncls)
            cell = rng.normal(0.5, 1.0, size=(c, 1, 1))
            t = np.tile(cell, (1, 3, 4))
            t[:c, :, :] += rng.choice([0.0, 0.0, 0.25], size=(c, 3, 4)) * (k % 4 == 1)
            for a in range(na):                     # one objectness, one class ranking
                t[a * (5 + ncls) + 4] = 2.0
            nms = [None, 0.3, 0.0][k % 3]
            cases.append(_case("yolo2", t, _yolo2_params(rng, na, ncls, thr=0.5, nms=nms)))
        else:
            t = rng.normal(0, 1, size=(5, 4, 4))
            t[4] = 1.5
            cases.append(_case("grid", t, {"threshold": 0.5, "nms": [None, 0.3][k % 4 // 2]}))
    return cases


def threshold_cases(rng):
    """Scores on and next to the threshold: logits stepped by float32 ulps around
    logit(threshold), thresholds with long decimals (the board's parser rounds them)."""
    cases = []
    for k in range(24):
        thr = [0.5, 0.7, 0.25, 0.9, 0.123456789, 0.999, 0.01][k % 7]
        if k >= 7:
            thr = float(rng.uniform(0.01, 0.99))
        centre = math.log(thr / (1.0 - thr))
        steps = [np.nextafter(np.float32(centre), np.float32(math.copysign(1e9, j)),
                              dtype=np.float32) for j in (-1, 1)]
        grid = np.array([centre + j * 1e-7 for j in range(-30, 30)] + [float(s) for s in steps]
                        + [0.0], np.float64)
        n = grid.size
        if k % 2:
            t = rng.normal(0, 1, size=(6, 1, n))
            t[4, 0, :] = grid
            cases.append(_case("yolo2", t, {"anchors": [1.5, 2.5], "classes": 1,
                                            "threshold": thr, "nms": None}))
        else:
            t = rng.normal(0, 1, size=(5, 1, n))
            t[4, 0, :] = grid
            cases.append(_case("grid", t, {"threshold": thr, "nms": None}))
    return cases


def overflow_cases(rng):
    """Anchors so large that box areas overflow float32 (inf / inf IoU) and tiny ones."""
    cases = []
    for k in range(12):
        big = [1e30, 3e38, 1e19, 1e-30][k % 4]
        t = rng.normal(1.0, 1.0, size=(12, 2, 3))
        t[2], t[3], t[8], t[9] = 20.0, 20.0, 19.0, 19.0
        cases.append(_case("yolo2", t, {"anchors": [big, big, 2.0, 3.0], "classes": 1,
                                        "threshold": 0.3, "nms": 0.3}))
    return cases


def classify_cases(rng):
    """Classifier outputs: logits (softmax) and scores, random and crafted: exact ties, NaN
    and +-inf, extreme logits, thresholds, top_k beyond N, both TF shapes' CHW forms."""
    cases = []
    for k in range(40):
        n = int(rng.randint(1, 40))
        t = rng.normal(0, [0.5, 3.0, 30.0][k % 3], size=n)
        if k % 4 == 1:
            t = rng.choice([-2.0, 0.5, 1.25], size=n)           # exact ties
        if k % 5 == 2:
            t[rng.choice(n, size=min(n, 3), replace=False)] = rng.choice(EXTREMES, size=min(n, 3))
        if k % 6 == 3:
            for i in rng.choice(n, size=min(n, 2), replace=False):
                t[i] = [float("nan"), float("inf"), float("-inf")][int(rng.randint(0, 3))]
        shape = (n, 1, 1) if k % 2 else (1, 1, n)
        params = {"softmax": bool(k % 3 != 2), "classes": n}
        if k % 4 == 0:
            params["top_k"] = int(rng.randint(1, n + 3))
        if k % 7 == 0:
            params["threshold"] = float(rng.uniform(0.0, 0.5))
        cases.append(_case("classify", t.reshape(shape), params))
    everything = [float("nan"), float("inf"), float("-inf"), 88.0, -88.0, 1e38, -1e38, 0.0]
    for k in range(8):
        t = np.array(everything[k:] + everything[:k])
        cases.append(_case("classify", t.reshape(-1, 1, 1), {"softmax": bool(k % 2),
                                                             "top_k": 8}))
    cases.append(_case("classify", np.array([np.nan] * 4).reshape(4, 1, 1), {"softmax": True}))
    cases.append(_case("classify", np.array([np.inf, 1.0, np.inf]).reshape(3, 1, 1),
                       {"softmax": True}))
    cases.append(_case("classify", np.zeros((2, 3, 4)), {"softmax": True}))      # refused
    cases.append(_case("classify", np.zeros((4, 1, 1)), {"top_k": 0}))          # refused
    return cases


def segment_cases(rng):
    """Argmax masks: random scores, exact ties (the lowest class wins), NaN pixels (all NaN:
    MASK_NONE), +-inf."""
    cases = []
    for k in range(24):
        c, h, w = int(rng.randint(1, 8)), int(rng.randint(1, 9)), int(rng.randint(1, 9))
        t = rng.normal(0, 2, size=(c, h, w))
        if k % 3 == 1:
            t = rng.choice([0.0, -0.0, 1.0, 1.0], size=(c, h, w))
        if k % 4 == 2:
            flat = t.reshape(-1)
            for i in rng.choice(flat.size, size=min(flat.size, 6), replace=False):
                flat[i] = [float("nan"), float("inf"), float("-inf")][int(rng.randint(0, 3))]
        if k % 5 == 3:
            t[:, 0, 0] = float("nan")
        case = _case("segment", t, {"classes": c})
        case["op"] = "mask"
        cases.append(case)
    bad = _case("segment", np.zeros((256, 1, 2)), {})
    bad["op"] = "mask"
    cases.append(bad)
    return cases


def error_cases():
    bad = []
    t = np.zeros((6, 2, 2))
    bad.append(_case("yolo2", t, {"anchors": [1.0], "classes": 1, "threshold": 0.5}))
    bad.append(_case("yolo2", t, {"anchors": [1.0, 1.0, 2.0, 2.0], "classes": 1}))
    bad.append(_case("grid", t, {"threshold": 0.5}))
    bad.append(_case("ssd", t, {}))
    case = _case("grid", np.zeros((5, 2, 2)), {"threshold": 0.5})
    case["shape"] = [5, 2, 3]
    bad.append(case)
    return bad


def near_cases(rng):
    cases = []
    for k in range(40):
        thr = [0.5, 0.7, float(rng.uniform(0.05, 0.95))][k % 3]
        margin = [0.05, 0.1, float(rng.uniform(0.001, 0.2))][k % 3]
        score = thr + margin * [-1.0, 1.0, 0.0, -0.999999, 1.000001][k % 5] \
            + float(rng.normal(0, 1e-7))
        score = H.f32_values([score])[0]
        cases.append({"op": "near", "score": H.f32_hex([score]), "threshold": thr,
                      "margin": margin, "_score": score})
    return cases


def host_result(case):
    try:
        if case["op"] == "near":
            return {"near": decoders.near_threshold(case["_score"], case["threshold"],
                                                    case["margin"])}
        if case["op"] == "mask":
            return {"mask": bytes(decoders.segment_mask(case["_flat"], tuple(case["shape"]),
                                                        case["params"])).hex()}
        boxes = decoders.decode(case["kind"], case["_flat"], tuple(case["shape"]),
                                case["params"])
        return {"boxes": b"".join(struct.pack("<5fH", *b) for b in boxes).hex()}
    except ValueError as e:
        return {"error": type(e).__name__}


def all_cases():
    rng = np.random.RandomState(11)
    return (random_cases(rng) + extreme_cases(rng) + nan_inf_cases(rng) + tie_cases(rng)
            + threshold_cases(rng) + overflow_cases(rng) + error_cases() + near_cases(rng)
            + classify_cases(rng) + segment_cases(rng)
            + voc_cases(np.random.RandomState(20)))


@H.needs_micropython
def test_board_and_host_decode_identically():
    cases = all_cases()
    board = H.run("decode_cases.py", [{k: v for k, v in c.items() if not k.startswith("_")}
                                      for c in cases])
    host = [host_result(c) for c in cases]
    diffs = [(i, c.get("kind", c["op"]), b, h) for i, (c, b, h) in
             enumerate(zip(cases, board, host)) if b != h]
    n_boxes = sum(len(r.get("boxes", "")) // 44 for r in host)
    print("decoders: %d cases, %d boxes, %d differences" % (len(cases), n_boxes, len(diffs)))
    assert len(cases) >= 200
    assert n_boxes > 500, "the cases must produce boxes to compare"
    assert not diffs, diffs[:3]


def test_cases_reach_the_edge_paths():
    """The crafted cases do what they are for: boxes with equal scores survive, NaN cells
    are dropped, an overflowing anchor gives an infinite box, errors are raised."""
    host = {i: host_result(c) for i, c in enumerate(all_cases())}
    results = list(host.values())
    assert any(r.get("error") == "ValueError" for r in results)
    scores = []
    for r in results:
        raw = bytes.fromhex(r.get("boxes", ""))
        s = [struct.unpack_from("<5fH", raw, k)[4] for k in range(0, len(raw), 22)]
        scores.append(s)
        assert all(v == v for v in s), "a NaN score escaped"
    assert any(len(s) != len(set(s)) for s in scores), "no exact ties among the cases"
    coords = [struct.unpack_from("<5fH", bytes.fromhex(r["boxes"]), k)[:4]
              for r in results if r.get("boxes") for k in range(0, len(r["boxes"]) // 2, 22)]
    assert any(math.isinf(v) for c in coords for v in c), "no overflowing box among the cases"


def test_classify_and_segment_cases_reach_their_edges():
    """Classify: tied scores come out by class id, NaN is never ranked, all-NaN gives no
    record, +inf logits share the probability; segment: a tie picks the lowest class, an
    all-NaN pixel is MASK_NONE; both refuse what does not fit."""
    rng = np.random.RandomState(11)
    for f in (random_cases, extreme_cases, nan_inf_cases, tie_cases, threshold_cases,
              overflow_cases):
        f(rng)
    near_cases(rng)
    cls = classify_cases(rng)
    seg = segment_cases(rng)
    results = [host_result(c) for c in cls]
    tied = 0
    for r in results:
        raw = bytes.fromhex(r.get("boxes", ""))
        recs = [struct.unpack_from("<5fH", raw, k) for k in range(0, len(raw), 22)]
        assert all(v[4] == v[4] for v in recs)
        for a, b in zip(recs, recs[1:]):
            assert a[4] > b[4] or (a[4] == b[4] and a[5] < b[5]), recs
            tied += a[4] == b[4]
    assert tied > 10
    assert {"boxes": ""} in results                        # all NaN: nothing ranked
    both_inf = results[len(cls) - 3]["boxes"]
    assert struct.unpack_from("<5fH", bytes.fromhex(both_inf), 0)[4:] == (0.5, 0)
    assert [r.get("error") for r in results[-2:]] == ["ValueError", "ValueError"]
    masks = [host_result(c) for c in seg]
    assert masks[-1] == {"error": "ValueError"}
    assert any("ff" in m["mask"][i:i + 2] for m in masks[:-1] for i in range(0, len(m["mask"]), 2))
    ties = np.zeros((3, 2, 2))
    ties[1:, 0, 0] = 1.0
    assert list(decoders.segment_mask(list(ties.ravel()), (3, 2, 2))) == [1, 0, 0, 0]


def test_voc_cases_give_boxes_of_many_classes():
    """The 20-class cases reach class ids across the whole range (the softmax over 20 and
    the class index of the channel layout are exercised, not just class 0)."""
    classes = set()
    for case in voc_cases(np.random.RandomState(20)):
        raw = bytes.fromhex(host_result(case)["boxes"])
        classes.update(struct.unpack_from("<5fH", raw, k)[5] for k in range(0, len(raw), 22))
    assert len(classes) >= 15 and max(classes) == 19
