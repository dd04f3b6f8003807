"""Evaluate the trained example face detector on the held-out set (host, float TF).

Builds the inference graph (``Input_image`` [1,224,320,3], is_training=False, batch 1),
restores the checkpoint (all global variables of that graph: weights and BN moving
statistics), runs every image of ``eval/``, transposes the NHWC output to CHW, decodes it
with the shared ``device/decoders.py`` (yolo2, anchors/threshold/nms from convert.json),
matches with ``host.metrics.match_detections`` at IoU 0.5 and prints precision, recall, F1.

Pixels: by default what the board sees (``host.pixels.board_pixels``: RGB565 round trip),
as every evaluation in the toolkit does; the plain-file result is reported too.
Writes ``eval_result.json`` next to this file.

    .venv/bin/python examples/face/evaluate.py [--threshold T] [--out PATH]
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
for _p in (HERE, REPO):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import numpy as np  # noqa: E402

import model  # noqa: E402
from device import decoders  # noqa: E402
from host import atomic, metrics, pixels  # noqa: E402
from host.tf_infer import tf  # noqa: E402  (quiet TF 1.15 import, shared with host/)

CONVERT_JSON = os.path.join(HERE, "convert.json")
EVAL_DIR = os.path.join(HERE, "eval")
RESULT_JSON = os.path.join(HERE, "eval_result.json")


def run_model(checkpoint, arrays):
    """Float TF inference, batch 1, inference graph; returns NHWC outputs [N, 7, 10, 30]."""
    graph = tf.Graph()
    with graph.as_default():
        images, output = model.build_inference_graph()
        saver = tf.train.Saver(tf.global_variables())
        config = tf.ConfigProto(intra_op_parallelism_threads=2, inter_op_parallelism_threads=2)
        with tf.Session(graph=graph, config=config) as sess:
            saver.restore(sess, checkpoint)
            return np.stack([sess.run(output, {images: a[None].astype(np.float32) / 255.0})[0]
                             for a in arrays])


def decode(out_hwc, params):
    chw = np.transpose(out_hwc, (2, 0, 1))
    return decoders.decode("yolo2", chw.reshape(-1).tolist(), chw.shape, params)


def score(outputs, truths, params):
    matches = [metrics.match_detections(decode(o, params), t, iou=0.5)
               for o, t in zip(outputs, truths)]
    return metrics.pool_matches(matches)


def main(argv=None, extra=None):
    p = argparse.ArgumentParser(description="Host F1 of the example face detector.")
    p.add_argument("--config", default=CONVERT_JSON)
    p.add_argument("--images", default=EVAL_DIR)
    p.add_argument("--threshold", type=float, default=None,
                   help="decoder threshold (default: convert.json's)")
    p.add_argument("--out", default=RESULT_JSON)
    args = p.parse_args(argv)

    with open(args.config) as f:
        config = json.load(f)
    base = os.path.dirname(os.path.abspath(args.config))
    checkpoint = os.path.join(base, config["checkpoint"])
    with open(os.path.join(args.images, "labels.json")) as f:
        truth = json.load(f)["images"]
    names = sorted(truth)
    params = {"anchors": config["anchors"], "classes": len(config["labels"]),
              "threshold": config["threshold"] if args.threshold is None else args.threshold,
              "nms": config["nms"]}
    w, h = model.INPUT_WIDTH, model.INPUT_HEIGHT
    board = [pixels.board_pixels(os.path.join(args.images, n), w, h) for n in names]
    plain = [np.asarray(pixels.resize(pixels.load_rgb(os.path.join(args.images, n)), w, h))
             for n in names]
    outputs = run_model(checkpoint, board + plain)
    truths = [truth[n] for n in names]
    res_board = score(outputs[:len(names)], truths, params)
    res_plain = score(outputs[len(names):], truths, params)

    result = {
        "images": len(names),
        "faces": sum(len(t) for t in truths),
        "iou": 0.5,
        "threshold": params["threshold"],
        "nms": params["nms"],
        "pixels": "board (RGB565 round trip, host.pixels.board_pixels)",
        "precision": round(res_board["precision"], 4),
        "recall": round(res_board["recall"], 4),
        "f1": round(res_board["f1"], 4),
        "tp": res_board["tp"], "fp": res_board["fp"], "fn": res_board["fn"],
        "file_pixels": {k: (round(v, 4) if isinstance(v, float) else v)
                        for k, v in res_plain.items()},
    }
    # Keep the training facts train.py recorded, when re-evaluating on its own.
    previous = {}
    if os.path.exists(args.out):
        try:
            with open(args.out) as f:
                previous = json.load(f).get("training", {})
        except (OSError, ValueError):
            previous = {}
    training = dict(extra) if extra is not None else previous
    if training:
        result["training"] = training
    atomic.write_json(args.out, result)
    print("eval %d images, %d faces, threshold %.2f, IoU 0.5 (board pixels): "
          "P %.3f R %.3f F1 %.3f (tp %d fp %d fn %d)"
          % (result["images"], result["faces"], params["threshold"], res_board["precision"],
             res_board["recall"], res_board["f1"], res_board["tp"], res_board["fp"],
             res_board["fn"]))
    print("  file pixels: P %.3f R %.3f F1 %.3f" % (res_plain["precision"],
                                                   res_plain["recall"], res_plain["f1"]))
    return result


if __name__ == "__main__":
    main()
