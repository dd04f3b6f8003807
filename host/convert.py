#!/usr/bin/env python
"""Convert a TF1 model to a K210 kmodel, checking BatchNorm and quantisation on the way.

Examples:
  python host/convert.py --config examples/face/convert.json
  python host/convert.py --checkpoint ckpt/model.ckpt --model-fn net.py:network \\
      --input-size 224x320 --decoder yolo2 --anchors anchors.json
  python host/convert.py --frozen-pb Freeze_save.pb --input-size 240x320 --decoder grid
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from host import cli, decoder_kinds  # noqa: E402
from host.cli import run  # noqa: E402
from host.errors import UserError  # noqa: E402

SOURCES = ("checkpoint", "meta", "frozen_pb", "keras_h5")
# Options holding paths: in a --config file they are relative to the file's directory.
PATH_OPTIONS = ("checkpoint", "meta", "frozen_pb", "keras_h5", "model_fn", "calib_dir",
                "holdout_dir", "anchors", "ncc")
FIRMWARE_CHOICES = ("canmv-v5", "canmv", "maixpy-v4", "maixpy-v3")


def parser():
    p = cli.ArgumentParser(prog="host/convert.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="JSON file of option values (keys as below, with _); "
                   "command-line options override it")
    src = p.add_argument_group("source (exactly one)")
    src.add_argument("--checkpoint", help="checkpoint prefix, one of its files, or its "
                     "directory (with --model-fn; "
                     "with --meta: the checkpoint if not beside the .meta)")
    src.add_argument("--model-fn", help="FILE.py:FUNC or module:FUNC building the network, "
                     "called as FUNC(images, is_training=False, **model_kwargs)")
    src.add_argument("--model-kwargs", default="{}", help="JSON dict of extra keyword arguments")
    src.add_argument("--meta", help="training meta graph (.meta)")
    src.add_argument("--training-placeholder", help="with --meta: the bool placeholder that "
                     "switches BatchNorm to training mode (bound to False; default: the "
                     "graph's only bool placeholder)")
    src.add_argument("--ema", action="store_true", help="with --checkpoint/--meta: restore "
                     "the weights' ExponentialMovingAverage shadows (saved by "
                     "tf.train.ExponentialMovingAverage) instead of the raw weights")
    src.add_argument("--frozen-pb", help="an already frozen GraphDef (.pb), verified")
    src.add_argument("--keras-h5", help="a tf.keras .h5 model (learning phase 0)")
    p.add_argument("--list-nodes", action="store_true",
                   help="print the placeholders and graph ends of --frozen-pb/--meta and exit")
    io = p.add_argument_group("model interface")
    io.add_argument("--input-node", help="input placeholder (default Input_image with "
                    "--model-fn; guessed when the graph has one)")
    io.add_argument("--output-node", help="output node(s), comma-separated")
    io.add_argument("--input-size", help="HxW of the model input, e.g. 224x320")
    io.add_argument("--input-channels", type=int, default=3, choices=(1, 3),
                    help="with --model-fn: channels of the input placeholder built for FUNC "
                    "(1: a grayscale model; other sources take them from the graph)")
    io.add_argument("--input-scale", default="0-1", choices=("0-1", "-1-1", "0-255", "mean-std"),
                    help="how the graph expects RGB: x/255 (0-1), x/127.5-1 (-1-1), raw "
                    "(0-255), (x/255-mean)/std (mean-std)")
    io.add_argument("--mean", default="0,0,0", help="per-channel mean for mean-std (R,G,B, or "
                    "one value: all channels, a grayscale model's)")
    io.add_argument("--std", default="1,1,1", help="per-channel std for mean-std (as --mean)")
    q = p.add_argument_group("quantisation")
    q.add_argument("--calib-dir", default="calib_images", help="calibration images "
                   "(default calib_images/); every 4th is held out for the report")
    q.add_argument("--holdout-dir", help="separate held-out images for the report")
    q.add_argument("--min-calib", type=int, default=16, help="refuse fewer calibration images")
    q.add_argument("--calibrate-method", default="no_clip",
                   choices=("no_clip", "l2", "kld_m0", "kld_m1", "kld_m2", "cdf", "auto"),
                   help="nncase calibration; auto keeps the lowest l2r on held-out images "
                   "(ncc v0.2: no_clip, l2, auto)")
    q.add_argument("--ncc", help="path to an ncc v0.1 (kmodel V3) or v0.2 (V4) binary instead "
                   "of the pip nncase (V5); a --firmware that cannot load V5 uses "
                   ".venv/bin/ncc (`make ncc`) without it")
    q.add_argument("--no-layer-error", dest="layer_error", action="store_false",
                   help="skip the per-layer quantisation error (a second, diagnostic compile "
                        "and simulation: about the time of the first)")
    q.add_argument("--ncc-layer-error", action="store_true",
                   help="with an ncc build (V4): measure the per-layer error too (ncc v0.2 "
                        "crashes on a model with several outputs, so this is one ncc compile "
                        "per layer)")
    d = p.add_argument_group("decoding")
    d.add_argument("--decoder", default="raw",
                   choices=("yolo2", "grid", "classify", "segment", "raw"),
                   help="what the board makes of output 0 (docs/model-kinds.md)")
    d.add_argument("--anchors", help="yolo2 anchors w0,h0,w1,h1,... in grid cells, or a JSON "
                   "file holding that list")
    d.add_argument("--classes", type=int, help="number of classes (default: len(--labels) or 1)")
    d.add_argument("--labels", help="class names: a file (one a line, or a JSON list) or "
                   "comma-separated")
    d.add_argument("--threshold", type=float, default=None,
                   help="score threshold (0..1; default 0.5 for yolo2/grid, none for classify)")
    d.add_argument("--softmax", default="auto", choices=("auto", "on", "off"),
                   help="classify: on: the output is logits (the board applies softmax); off: "
                   "scores as they are; auto (default): off when the output op is Softmax")
    d.add_argument("--top-k", type=int, default=None,
                   help="classify: records per image (default min(5, classes))")
    d.add_argument("--colors", help="segment: class colours, a JSON list of [r, g, b] (text or "
                   "file; default the PASCAL VOC palette)")
    d.add_argument("--nms", type=float, default=0.3, help="NMS IoU threshold (0..1)")
    t = p.add_argument_group("target")
    t.add_argument("--firmware", default="canmv-v5", choices=FIRMWARE_CHOICES,
                   help="firmware profile the kmodel must load on")
    t.add_argument("--flash-address", default="0x300000", help="where flash.py writes the model")
    p.add_argument("--allow-bn-risk", action="store_true",
                   help="expert: proceed despite BatchNorm findings (printed as warnings)")
    p.add_argument("--out", default="build", help="output directory (default build/)")
    return p


def _read_config(path):
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError) as exc:
        raise UserError("--config %s cannot be read as JSON (%s)" % (path, str(exc)[:80]))
    base = os.path.dirname(os.path.abspath(path))
    for key in PATH_OPTIONS:
        value = config.get(key)
        if isinstance(value, str) and not os.path.isabs(value):
            config[key] = os.path.normpath(os.path.join(base, value))
    for key in ("labels", "colors"):
        value = config.get(key)
        if isinstance(value, str) and os.path.isfile(os.path.join(base, value)):
            config[key] = os.path.normpath(os.path.join(base, value))
    if isinstance(config.get("colors"), list):
        config["colors"] = json.dumps(config["colors"])
    for key in ("anchors", "labels", "mean", "std", "output_node"):
        if isinstance(config.get(key), list):
            config[key] = ",".join(str(v) for v in config[key])
    return config


def _floats(text, option, count=None):
    try:
        values = [float(v) for v in str(text).replace(" ", "").strip(",").split(",") if v]
    except ValueError:
        raise UserError("%s %r must be comma-separated numbers" % (option, text))
    if count is not None and len(values) != count:
        raise UserError("%s needs %d values, got %d" % (option, count, len(values)))
    return values


def _channel_floats(text, option):
    """--mean/--std: 3 values (R, G, B) or one for every channel (a grayscale model's one)."""
    values = _floats(text, option)
    if len(values) not in (1, 3):
        raise UserError("%s needs 3 values (R,G,B) or 1, got %d" % (option, len(values)))
    return values * 3 if len(values) == 1 else values


def _anchors(text):
    if text and os.path.isfile(text):
        try:
            with open(text) as f:
                data = json.load(f)
        except ValueError:
            raise UserError("--anchors file %s is not JSON" % text)
        data = data.get("anchors", data) if isinstance(data, dict) else data
        return _floats(",".join(str(v) for v in data), "--anchors")
    return _floats(text, "--anchors") if text else []


def options(argv):
    p = parser()
    first = p.parse_args(argv)
    if first.config:
        config = _read_config(first.config)
        unknown = sorted(set(config) - {a.dest for a in p._actions})
        if unknown:
            raise UserError("--config %s has unknown key(s) %s" % (first.config,
                                                                  ", ".join(unknown)))
        p.set_defaults(**config)
    opts = p.parse_args(argv)
    given = [s for s in SOURCES if getattr(opts, s)]
    if opts.meta and opts.checkpoint:
        given.remove("checkpoint")
    if len(given) != 1 and not opts.list_nodes:
        raise UserError("give exactly one source: --checkpoint with --model-fn, --meta, "
                        "--frozen-pb or --keras-h5 (got %s)" % (", ".join(given) or "none"))
    if opts.ema and not (opts.checkpoint or opts.meta):
        raise UserError("--ema needs --checkpoint (with --model-fn) or --meta: a frozen graph "
                        "or Keras model has no shadow weights to choose")
    if opts.checkpoint and not opts.meta and not opts.model_fn:
        raise UserError("--checkpoint needs --model-fn FILE.py:FUNC (the function that "
                        "builds the network) or use --meta")
    try:
        opts.model_kwargs = json.loads(opts.model_kwargs) if isinstance(
            opts.model_kwargs, str) else dict(opts.model_kwargs)
        assert isinstance(opts.model_kwargs, dict)
    except (ValueError, AssertionError, TypeError):
        raise UserError("--model-kwargs must be a JSON object, e.g. '{\"depth_multiplier\": 1}'")
    opts.output_nodes = [n for n in (opts.output_node or "").split(",") if n]
    opts.mean = _channel_floats(opts.mean, "--mean")
    opts.std = _channel_floats(opts.std, "--std")
    if any(s == 0 for s in opts.std):
        raise UserError("--std must not contain 0")
    opts.anchors = _anchors(opts.anchors)
    opts.labels = decoder_kinds.read_labels(opts.labels)
    opts.classes = opts.classes or len(opts.labels) or 1
    if opts.labels and len(opts.labels) != opts.classes:
        raise UserError("--labels names %d classes but --classes is %d"
                        % (len(opts.labels), opts.classes))
    if opts.threshold is None and opts.decoder in decoder_kinds.BOX_KINDS + ("raw",):
        opts.threshold = 0.5
    for name in ("threshold", "nms"):
        if getattr(opts, name) is not None and not 0.0 <= getattr(opts, name) <= 1.0:
            raise UserError("--%s %s is out of range: use a value between 0 and 1"
                            % (name, getattr(opts, name)))
    if opts.min_calib < 1:
        raise UserError("--min-calib must be at least 1")
    try:
        opts.flash_address = int(str(opts.flash_address), 0)
    except ValueError:
        raise UserError("--flash-address %r is not a number (e.g. 0x300000)"
                        % opts.flash_address)
    return opts


def _input_hw(opts, frozen_hw=None):
    from host.freeze import parse_size
    if opts.input_size:
        return parse_size(opts.input_size)
    if frozen_hw:
        return frozen_hw
    raise UserError("--input-size HxW is required (e.g. 224x320)")


def main(argv):
    opts = options(argv)
    from host import precheck         # no TensorFlow: bad inputs fail within a second
    if opts.list_nodes:
        if opts.frozen_pb:
            precheck.check_graph_file(opts.frozen_pb, "--frozen-pb", precheck.GRAPHDEF_FIELDS,
                                      "frozen GraphDef (.pb)")
        return _list_nodes(opts)
    precheck.check(opts)
    from host import pipeline
    from host.freeze import graph_input_hw
    from host.tf_infer import load_graph_def
    graph_hw = None
    if opts.frozen_pb and not opts.input_size:
        graph_def = load_graph_def(opts.frozen_pb)
        graph_hw = graph_input_hw(graph_def, opts.input_node or _only_placeholder(graph_def))
    opts.input_hw = _input_hw(opts, graph_hw)
    pipeline.build(opts, print)
    return 0


def _only_placeholder(graph_def):
    names = [n.name for n in graph_def.node if n.op == "Placeholder"]
    return names[0] if len(names) == 1 else None


def _list_nodes(opts):
    from host.freeze import list_nodes
    from host.tf_infer import load_graph_def, tf
    if opts.frozen_pb:
        graph_def = load_graph_def(opts.frozen_pb)
    elif opts.meta:
        meta = tf.compat.v1.MetaGraphDef()
        try:
            with open(opts.meta, "rb") as f:
                meta.ParseFromString(f.read())
        except Exception:
            raise UserError("cannot read meta graph %s: pass an existing .meta file" % opts.meta)
        graph_def = meta.graph_def
    else:
        raise UserError("--list-nodes needs --frozen-pb or --meta")
    placeholders, ends = list_nodes(graph_def)
    print("placeholders: " + ", ".join(placeholders))
    print("graph ends:   " + ", ".join(ends))
    return 0


if __name__ == "__main__":
    run(main, crash_dir=lambda argv: options(argv).out, crash_log="convert-error.log")
