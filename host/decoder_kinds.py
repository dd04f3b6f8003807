"""The classify and segment decoders on the host side of the contract (docs/model-kinds.md):
their settings from the convert options into the manifest, the manifest's decoder as the
board and the evaluator take it (one place for every key), and the convert-time refusal of
a decoder that does not fit the output shape.
"""
import json
import os

from device import decoders
from host.errors import UserError

# The board's decoder settings: every kind has these; classify and segment add theirs.
COMMON_KEYS = ("type", "anchors", "classes", "labels", "threshold", "nms")
EXTRA_KEYS = {"classify": ("softmax", "top_k"), "segment": ("colors",)}
DEFAULTS = {"anchors": [], "classes": 1, "labels": [], "threshold": 0.5, "nms": 0.3}
BOX_KINDS = ("yolo2", "grid")
DEFAULT_TOP_K = 5


def board_params(dec):
    """The manifest's decoder as the device config and host.compare carry it."""
    kind = dec.get("type", "raw")
    params = {"type": kind}
    for key in COMMON_KEYS[1:]:
        value = dec.get(key, DEFAULTS[key])
        params[key] = list(value or []) if key in ("anchors", "labels") else value
    for key in EXTRA_KEYS.get(kind, ()):
        params[key] = dec.get(key)
    return params


def read_labels(text, option="--labels"):
    """Class names: a file (one name a line, or a JSON list) or a comma-separated list."""
    if not text:
        return []
    if os.path.isfile(text):
        try:
            with open(text, encoding="utf-8") as f:
                body = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError("%s file %s cannot be read (%s)" % (option, text, exc))
        if body.lstrip().startswith("["):
            try:
                names = json.loads(body)
            except ValueError:
                raise UserError("%s file %s starts like JSON but is not: give a JSON list "
                                "of names or one name a line" % (option, text))
            if not all(isinstance(n, str) for n in names):
                raise UserError("%s file %s: the JSON list must hold names (strings)"
                                % (option, text))
            return [n.strip() for n in names]
        return [line.strip() for line in body.splitlines() if line.strip()]
    return [name for name in str(text).split(",") if name]


def read_colors(text, classes):
    """Segment colours: a JSON list (text or file) of [r, g, b], one per class; default the
    PASCAL VOC palette (class 0 black: background)."""
    if not text:
        return [_voc_color(i) for i in range(classes)]
    body = text
    if os.path.isfile(text):
        with open(text) as f:
            body = f.read()
    try:
        colors = json.loads(body)
    except ValueError:
        raise UserError("--colors %s is not a JSON list of [r, g, b] (a file or the text)"
                        % (text[:60],))
    if not isinstance(colors, list) or len(colors) != classes or not all(
            isinstance(c, list) and len(c) == 3 and all(
                isinstance(v, int) and 0 <= v <= 255 for v in c) for c in colors):
        raise UserError("--colors needs %d [r, g, b] triples of 0..255 (one per class of "
                        "the output)" % classes)
    return colors


def _voc_color(i):
    r = g = b = 0
    for shift in range(7, -1, -1):
        r |= ((i >> 0) & 1) << shift
        g |= ((i >> 1) & 1) << shift
        b |= ((i >> 2) & 1) << shift
        i >>= 3
    return [r, g, b]


def _tf_shape(out):
    return "x".join(str(v) for v in out["tf_shape"][1:]) or "1"


def check_fit(kind, out):
    """The number of classes of output `out` (host.pipeline's output info) for a classify or
    segment decoder; UserError naming the shape when the decoder does not fit it."""
    c, h, w = out["shape_chw"]
    node = out["node"]
    if kind == "classify":
        n = decoders.classify_count((c, h, w))
        if n is None:
            raise UserError("--decoder classify needs an output of N class values (TF [1, N] "
                            "or [1, 1, 1, N]); %s is %s (HxWxC): use --decoder segment for "
                            "per-pixel classes or yolo2/grid for a detection grid"
                            % (node, _tf_shape(out)))
        if n < 2:
            raise UserError("--decoder classify needs at least 2 class values; %s has %d"
                            % (node, n))
        return n
    if h * w == 1 or len(out["tf_shape"]) != 4:
        raise UserError("--decoder segment needs an HxWxC output (class scores per pixel); "
                        "%s is %s: use --decoder classify for one label per image"
                        % (node, _tf_shape(out)))
    if c < 2 or c > decoders.MASK_NONE:
        raise UserError("--decoder segment needs 2..%d class channels (argmax mask in uint8); "
                        "%s has %d" % (decoders.MASK_NONE, node, c))
    return c


def params_for(opts, out, output_op):
    """The manifest decoder of a classify or segment model; out: output 0's info, output_op:
    its graph op (a Softmax output already holds scores)."""
    classes = check_fit(opts.decoder, out)
    if opts.labels and len(opts.labels) != classes:
        raise UserError("--labels names %d classes but %s has %d"
                        % (len(opts.labels), out["node"], classes))
    dec = {"type": opts.decoder, "anchors": [], "classes": classes,
           "labels": list(opts.labels), "threshold": opts.threshold, "nms": None}
    if opts.decoder == "classify":
        if opts.softmax == "auto":
            dec["softmax"] = output_op != "Softmax"
        else:
            dec["softmax"] = opts.softmax == "on"
        top_k = opts.top_k if opts.top_k is not None else min(DEFAULT_TOP_K, classes)
        if not 1 <= top_k <= classes:
            raise UserError("--top-k %d: use 1..%d (the classes of %s)"
                            % (top_k, classes, out["node"]))
        dec["top_k"] = top_k
    else:
        dec["threshold"] = None
        dec["colors"] = read_colors(opts.colors, classes)
    return dec
