# Output decoders, shared by the board (flat module `decoders`) and the host
# (`device.decoders`). MicroPython 1.11 dialect: no f-strings, no bytes.hex,
# floats may be 32-bit. Contract: docs/design.md, section "Decoders".
#
# decode(kind, data, shape, params) -> [(x0, y0, x1, y1, score, class_id), ...]
# segment_mask(data, shape, params, out) -> bytearray of h*w class ids (segment)
#   data   flat float sequence in CHW order (list, array('f'), tuple)
#   shape  (C, H, W)
#   params dict: anchors (flat w0,h0,w1,h1,... in grid units), classes,
#          threshold, nms (IoU threshold; None skips NMS)
# Boxes are fractions of the image (not clipped), sorted by score descending
# (ties: the order the decoder made them in, anchor then cell: a total order),
# after per-class NMS.
#
# Rules shared by every decoder (so host and board agree on edge cases; the
# why: docs/design.md, "Decoders"):
# - arithmetic is the board's: 32-bit floats. Where floats are doubles (host,
#   virtual board) every result is rounded to float32 as the board rounds it
#   (module float32), and config numbers take the value the board's JSON
#   parser gives them, so both sides produce the same boxes bit for bit;
# - a box is kept when score > threshold (strict, as the MaixPy region layer);
#   a NaN anywhere in a cell's values drops that cell;
# - one box per (anchor, cell): the class with the highest probability
#   (ties: lowest class id);
# - exponent arguments are clamped to [-EXP_CLAMP, EXP_CLAMP] (box sizes to
#   SIZE_CLAMP) so that float32 neither overflows nor raises, and no box area
#   overflows to inf.
# classify and segment (label_decoders.py): docs/model-kinds.md.
import math

EXP_CLAMP = 60.0
SIZE_CLAMP = 20.0
MASK_NONE = 255     # segment: the id of a pixel whose class values are all NaN
KINDS = ("yolo2", "grid", "classify", "segment", "raw")

if 1.0 + 2.0 ** -30 == 1.0:
    # 32-bit floats: the board, whose arithmetic is the reference
    def _f(x):
        return x

    _expf = math.exp

    def _num(v):
        return float(v)
else:
    try:
        import float32 as _f32
    except ImportError:
        from device import float32 as _f32
    _f = _f32.round32
    _expf = _f32.expf
    _num = _f32.board_float


def _logit_floor(threshold):
    # Cells whose raw objectness logit is below this value cannot reach the
    # threshold: skipped before any exp(). The margin covers float32 rounding
    # of the sigmoid (steep in the logit near 0 and 1), so the floor never
    # drops a cell that the exact test keeps, on either side.
    if threshold <= 0.0:
        return None
    if threshold >= 1.0:
        return EXP_CLAMP + 1.0
    return math.log(threshold / (1.0 - threshold)) - 1e-3 - 1e-5 / (threshold * (1.0 - threshold))


def _clamp(v, lim):
    if v > lim:
        return lim
    if v < -lim:
        return -lim
    return v


def _sig(v):
    return _f(1.0 / _f(1.0 + _expf(-_clamp(v, EXP_CLAMP))))


def _nan(*vals):
    for v in vals:
        if v != v:
            return True
    return False


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
    anchors = [_num(v) for v in (params.get("anchors") or [])]
    ncls = int(params.get("classes", 1))
    thr = _num(params.get("threshold", 0.5))
    na = len(anchors) // 2
    per = 5 + ncls
    if na < 1 or len(anchors) != 2 * na:
        raise ValueError("yolo2: anchors must be a flat list of w,h pairs")
    if c != na * per:
        raise ValueError("yolo2: %d channels but %d anchors x (5 + %d classes) = %d"
                         % (c, na, ncls, na * per))
    hw = h * w
    floor = _logit_floor(thr)
    out = []
    for a in range(na):
        aw = _f(anchors[2 * a] / w)
        ah = _f(anchors[2 * a + 1] / h)
        base = a * per * hw
        obj_off = base + 4 * hw
        cls_off = base + 5 * hw
        for i in range(hw):
            # the hot loop: one comparison per cell; only candidates reach a call
            t = data[obj_off + i]
            if floor is not None and t < floor:
                continue
            obj = _sig(t)
            if not obj > thr:           # NaN: dropped
                continue
            best = 0
            prob = 1.0
            if ncls > 1:
                # softmax over the classes, max-subtracted
                k = cls_off + i
                m = data[k]
                for j in range(1, ncls):
                    v = data[k + j * hw]
                    if v > m:
                        m = v
                        best = j
                s = 0.0
                for j in range(ncls):
                    d = _f(data[k + j * hw] - m)
                    if d < -EXP_CLAMP:
                        d = -EXP_CLAMP
                    s = _f(s + _expf(d))
                prob = _f(1.0 / s)
            score = _f(obj * prob)
            if not score > thr:
                continue
            row = i // w
            col = i - row * w
            k = base + i
            bx = _f(_f(col + _sig(data[k])) / w)
            by = _f(_f(row + _sig(data[k + hw])) / h)
            bw = _f(_expf(_clamp(data[k + 2 * hw], SIZE_CLAMP)) * aw)
            bh = _f(_expf(_clamp(data[k + 3 * hw], SIZE_CLAMP)) * ah)
            if _nan(bx, by, bw, bh):
                continue
            half_w = _f(bw / 2)
            half_h = _f(bh / 2)
            out.append((_f(bx - half_w), _f(by - half_h), _f(bx + half_w), _f(by + half_h),
                        score, best))
    return out


def decode_grid(data, shape, params):
    c, h, w = _check_shape(data, shape)
    if c != 5:
        raise ValueError("grid: expects 5 channels, got %d" % c)
    thr = _num(params.get("threshold", 0.5))
    hw = h * w
    floor = _logit_floor(thr)
    s_off = 4 * hw
    out = []
    for i in range(hw):
        t = data[s_off + i]
        if floor is not None and t < floor:
            continue
        score = _sig(t)
        if not score > thr:             # NaN: dropped
            continue
        row = i // w
        col = i - row * w
        bx = _f(_f(col + _sig(data[i])) / w)
        by = _f(_f(row + _sig(data[hw + i])) / h)
        bw = _sig(data[2 * hw + i])
        bh = _sig(data[3 * hw + i])
        if _nan(bx, by, bw, bh):
            continue
        half_w = _f(bw / 2)
        half_h = _f(bh / 2)
        out.append((_f(bx - half_w), _f(by - half_h), _f(bx + half_w), _f(by + half_h),
                    score, 0))
    return out


def _label_decoders():
    # classify and segment live in label_decoders.py, loaded by the models that use them:
    # a detector's serve loop keeps its bytecode out of the GC heap ("Board memory")
    try:
        import label_decoders
    except ImportError:
        from device import label_decoders
    return label_decoders


def prepare(kind):
    """Load the code decoder `kind` needs now: at a session's start, before its big buffers,
    not at the first decode into a heap the images have already cut up."""
    if kind in ("classify", "segment"):
        _label_decoders()


def classify_count(shape):
    return _label_decoders().classify_count(shape)


def segment_mask(data, shape, params=None, out=None):
    return _label_decoders().segment_mask(data, shape, params, out)


def iou(a, b):
    """Intersection over union of two boxes (x0, y0, x1, y1, ...), in the board's float32.
    Boxes whose areas overflow float32 (inf / inf) count as the same box (IoU 1)."""
    ix = _f(min(a[2], b[2]) - max(a[0], b[0]))
    iy = _f(min(a[3], b[3]) - max(a[1], b[1]))
    if not (ix > 0 and iy > 0):
        return 0.0
    inter = _f(ix * iy)
    area_a = _f(_f(a[2] - a[0]) * _f(a[3] - a[1]))
    area_b = _f(_f(b[2] - b[0]) * _f(b[3] - b[1]))
    union = _f(_f(area_a + area_b) - inter)
    if not union > 0:
        return 0.0
    v = _f(inter / union)
    if v != v:
        return 1.0
    return v


def nms(boxes, iou_threshold):
    """Greedy per-class NMS: a box is dropped when its IoU with a kept box of
    the same class is > iou_threshold. Returns the kept boxes sorted by score
    descending, equal scores in the order given (a total order, so
    MicroPython's unstable sort agrees with CPython's). iou_threshold None:
    sort only."""
    order = [boxes[i] for i in sorted(range(len(boxes)), key=lambda i: (-boxes[i][4], i))]
    if iou_threshold is None:
        return order
    thr = _num(iou_threshold)
    kept = []
    for b in order:
        ok = True
        for k in kept:
            if k[5] == b[5] and iou(k, b) > thr:
                ok = False
                break
        if ok:
            kept.append(b)
    return kept


def near_threshold(score, threshold, margin):
    """Whether |score - threshold| < margin in the board's float32 (host's comparison of
    unmatched boxes: the same test the board would make)."""
    return abs(_f(score - _num(threshold))) < _num(margin)


def decode(kind, data, shape, params):
    """Decode one output tensor (flat CHW floats) into boxes; see module doc. segment: no
    boxes (its result is segment_mask's)."""
    if kind == "raw" or kind == "segment":
        return []
    if kind == "classify":
        return _label_decoders().decode_classify(data, shape, params)
    if kind == "yolo2":
        boxes = decode_yolo2(data, shape, params)
    elif kind == "grid":
        boxes = decode_grid(data, shape, params)
    else:
        raise ValueError("unknown decoder %r (known: %s)" % (kind, ", ".join(KINDS)))
    return nms(boxes, params.get("nms"))
