# The classify and segment decoders (docs/model-kinds.md), reached through decoders.decode
# and decoders.segment_mask, which load this module only for the models that use them.
# MicroPython 1.11 dialect; the board's float32 arithmetic through decoders' _f/_expf/_num,
# as the box decoders (docs/design.md "Decoders"). NaN is never ranked, never a mask's
# class.
try:
    import decoders as D
except ImportError:
    from device import decoders as D

_f = D._f
_expf = D._expf
_num = D._num
_clamp = D._clamp
_check_shape = D._check_shape
EXP_CLAMP = D.EXP_CLAMP
MASK_NONE = D.MASK_NONE
LOGIT_CLAMP = 2.0 ** 126   # classify logits (+-inf) clamped here: exact in float32, and
#                              the max-subtracted logits stay finite


def classify_count(shape):
    """N of a classifier output: the one side of (C, H, W) that is not 1 (TF [1, N] and
    [1, 1, 1, N] are (N, 1, 1) in the manifest), or None when two sides are above 1."""
    big = [int(v) for v in shape if int(v) != 1]
    if len(big) > 1:
        return None
    return big[0] if big else 1


def decode_classify(data, shape, params):
    """Top-k classes as records (0, 0, 1, 1, score, class_id), score descending, equal
    scores by lower class id. softmax true: the values are logits (max-subtracted softmax in
    float32, summed in class order); false: they are the scores. NaN values are never
    ranked; with a threshold only scores > threshold are kept."""
    if len(shape) != 3:
        raise ValueError("shape must be (C, H, W), got %r" % (shape,))
    n = classify_count(shape)
    if n is None:
        raise ValueError("classify: output %r has more than one side above 1"
                         % (tuple(shape),))
    if len(data) != n:
        raise ValueError("data has %d values, shape %r needs %d" % (len(data), tuple(shape), n))
    if int(params.get("classes", n)) != n:
        raise ValueError("classify: %d classes but the output has %d values"
                         % (int(params.get("classes")), n))
    top_k = params.get("top_k")
    k = (n if n < 5 else 5) if top_k is None else int(top_k)
    if k < 1:
        raise ValueError("classify: top_k must be at least 1, got %d" % k)
    thr = params.get("threshold")
    thr = None if thr is None else _num(thr)
    soft = params.get("softmax", True)
    m = None
    s = 0.0
    if soft:
        for v in data:
            if v == v and (m is None or v > m):
                m = v
        if m is None:
            return []
        m = _clamp(m, LOGIT_CLAMP)
        for v in data:
            if v == v:
                s = _f(s + _expf(_softmax_arg(v, m)))
    top = []            # (score, class id), best first: an insertion list of at most k
    for i in range(n):
        v = data[i]
        if v != v:
            continue
        p = _f(_expf(_softmax_arg(v, m)) / s) if soft else _f(v)
        if thr is not None and not p > thr:
            continue
        if len(top) == k and not p > top[-1][0]:
            continue        # ties keep the lower class id, seen first
        j = len(top)
        while j > 0 and p > top[j - 1][0]:
            j -= 1
        top.insert(j, (p, i))
        if len(top) > k:
            top.pop()
    return [(0.0, 0.0, 1.0, 1.0, p, i) for p, i in top]


def _softmax_arg(v, m):
    d = _f(_clamp(v, LOGIT_CLAMP) - m)
    if d < -EXP_CLAMP:
        return -EXP_CLAMP
    return d


def segment_mask(data, shape, params=None, out=None):
    """The argmax mask of an H x W x C class-score output (flat CHW): h*w class ids in a
    bytearray (out, reused when given: the board's session buffer), row-major. Equal scores:
    the lowest class id; NaN never wins; a pixel whose values are all NaN gets MASK_NONE."""
    c, h, w = _check_shape(data, shape)
    if c > MASK_NONE:
        raise ValueError("segment: %d classes, at most %d fit a uint8 mask" % (c, MASK_NONE))
    hw = h * w
    if out is None:
        out = bytearray(hw)
    elif len(out) != hw:
        raise ValueError("segment: mask buffer of %d bytes for %dx%d" % (len(out), h, w))
    for i in range(hw):
        m = data[i]
        best = 0
        k = i
        for j in range(1, c):
            k += hw
            v = data[k]
            if v > m or (m != m and v == v):
                m = v
                best = j
        out[i] = best if m == m else MASK_NONE
    return out
