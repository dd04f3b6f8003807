# Output decoders, shared by the board (flat module `decoders`) and the host
# (`device.decoders`). MicroPython 1.11 dialect: no f-strings, no bytes.hex,
# floats may be 32-bit. Contract: docs/design.md, section "Decoders".
#
# decode(kind, data, shape, params) -> [(x0, y0, x1, y1, score, class_id), ...]
#   data   flat float sequence in CHW order (list, array('f'), tuple)
#   shape  (C, H, W)
#   params dict: anchors (flat w0,h0,w1,h1,... in grid units), classes,
#          threshold, nms (IoU threshold; None skips NMS)
# Boxes are fractions of the image (not clipped), sorted by score descending
# (ties: class id, then coordinates: a total order), after per-class NMS.
#
# Rules shared by every decoder (so host and board agree on edge cases):
# - a box is kept when score > threshold (strict, as the MaixPy region layer);
# - one box per (anchor, cell): the class with the highest probability
#   (ties: lowest class id);
# - exponent arguments are clamped to [-EXP_CLAMP, EXP_CLAMP] so that 32-bit
#   floats on the board and doubles on the host neither overflow nor raise.
import math

EXP_CLAMP = 60.0
KINDS = ("yolo2", "grid", "raw")


def _logit_floor(threshold):
    # Cells whose raw objectness logit is below this value cannot reach
    # the threshold: skip them before any exp(). Conservative margin so a
    # float32/float64 difference never drops a box the exact test keeps.
    if threshold <= 0.0:
        return None
    if threshold >= 1.0:
        return EXP_CLAMP + 1.0
    return math.log(threshold / (1.0 - threshold)) - 1e-3


def _sig(v):
    if v > EXP_CLAMP:
        v = EXP_CLAMP
    elif v < -EXP_CLAMP:
        v = -EXP_CLAMP
    return 1.0 / (1.0 + math.exp(-v))


def _exp(v):
    if v > EXP_CLAMP:
        v = EXP_CLAMP
    elif v < -EXP_CLAMP:
        v = -EXP_CLAMP
    return math.exp(v)


def _check_shape(data, shape):
    if len(shape) != 3:
        raise ValueError("shape must be (C, H, W), got %r" % (shape,))
    c, h, w = int(shape[0]), int(shape[1]), int(shape[2])
    if len(data) != c * h * w:
        raise ValueError("data has %d values, shape %r needs %d"
                         % (len(data), tuple(shape), c * h * w))
    return c, h, w


def decode_yolo2(data, shape, params):
    c, h, w = _check_shape(data, shape)
    anchors = params.get("anchors") or []
    ncls = int(params.get("classes", 1))
    thr = float(params.get("threshold", 0.5))
    na = len(anchors) // 2
    per = 5 + ncls
    if na < 1 or len(anchors) != 2 * na:
        raise ValueError("yolo2: anchors must be a flat list of w,h pairs")
    if c != na * per:
        raise ValueError("yolo2: %d channels but %d anchors x (5 + %d classes) = %d"
                         % (c, na, ncls, na * per))
    hw = h * w
    floor = _logit_floor(thr)
    # The hot loops of both decoders inline the clamped sigmoid of _sig(): on the board a
    # Python function call per cell costs more than the arithmetic itself.
    exp = math.exp
    lo = -EXP_CLAMP
    hi = EXP_CLAMP
    out = []
    for a in range(na):
        aw = anchors[2 * a] / w
        ah = anchors[2 * a + 1] / h
        base = a * per * hw
        obj_off = base + 4 * hw
        cls_off = base + 5 * hw
        for i in range(hw):
            t = data[obj_off + i]
            if floor is not None and t < floor:
                continue
            if t > hi:
                t = hi
            elif t < lo:
                t = lo
            obj = 1.0 / (1.0 + exp(-t))
            if obj <= thr:
                continue
            if ncls == 1:
                best = 0
                prob = 1.0
            else:
                # softmax over the classes, max-subtracted
                k = cls_off + i
                m = data[k]
                best = 0
                for j in range(1, ncls):
                    v = data[k + j * hw]
                    if v > m:
                        m = v
                        best = j
                s = 0.0
                for j in range(ncls):
                    d = data[k + j * hw] - m
                    if d < lo:
                        d = lo
                    s += exp(d)
                prob = 1.0 / s
            score = obj * prob
            if score <= thr:
                continue
            row = i // w
            col = i - row * w
            k = base + i
            bx = (col + _sig(data[k])) / w
            by = (row + _sig(data[k + hw])) / h
            bw = _exp(data[k + 2 * hw]) * aw
            bh = _exp(data[k + 3 * hw]) * ah
            out.append((bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2,
                        score, best))
    return out


def decode_grid(data, shape, params):
    c, h, w = _check_shape(data, shape)
    if c != 5:
        raise ValueError("grid: expects 5 channels, got %d" % c)
    thr = float(params.get("threshold", 0.5))
    hw = h * w
    floor = _logit_floor(thr)
    exp = math.exp
    lo = -EXP_CLAMP
    hi = EXP_CLAMP
    s_off = 4 * hw
    out = []
    for i in range(hw):
        t = data[s_off + i]
        if floor is not None and t < floor:
            continue
        if t > hi:
            t = hi
        elif t < lo:
            t = lo
        score = 1.0 / (1.0 + exp(-t))
        if score <= thr:
            continue
        row = i // w
        col = i - row * w
        bx = (col + _sig(data[i])) / w
        by = (row + _sig(data[hw + i])) / h
        bw = _sig(data[2 * hw + i])
        bh = _sig(data[3 * hw + i])
        out.append((bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2,
                    score, 0))
    return out


def iou(a, b):
    """Intersection over union of two boxes (x0, y0, x1, y1, ...)."""
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    if union <= 0:
        return 0.0
    return inter / union


def _sort_key(b):
    return (-b[4], b[5], b[0], b[1], b[2], b[3])


def nms(boxes, iou_threshold):
    """Greedy per-class NMS: a box is dropped when its IoU with a kept box of
    the same class is > iou_threshold. Returns the kept boxes sorted by score
    descending (a total order, so MicroPython's unstable sort agrees with
    CPython). iou_threshold None: sort only."""
    order = sorted(boxes, key=_sort_key)
    if iou_threshold is None:
        return order
    kept = []
    for b in order:
        ok = True
        for k in kept:
            if k[5] == b[5] and iou(k, b) > iou_threshold:
                ok = False
                break
        if ok:
            kept.append(b)
    return kept


def decode(kind, data, shape, params):
    """Decode one output tensor (flat CHW floats) into boxes; see module doc."""
    if kind == "raw":
        return []
    if kind == "yolo2":
        boxes = decode_yolo2(data, shape, params)
    elif kind == "grid":
        boxes = decode_grid(data, shape, params)
    else:
        raise ValueError("unknown decoder %r (known: yolo2, grid, raw)" % (kind,))
    thr = params.get("nms")
    if thr is not None:
        thr = float(thr)
    return nms(boxes, thr)
