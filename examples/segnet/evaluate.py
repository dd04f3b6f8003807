"""Pixel accuracy and mean IoU of the example segmentation net on ``eval/`` (float TF,
batch 1, inference graph, the board's RGB565 pixels of ``host.pixels``), against the
16x16 masks of ``eval/masks/``. Writes ``eval_result.json``.

    .venv/bin/python examples/segnet/evaluate.py
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (HERE, os.path.dirname(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import numpy as np  # noqa: E402

import dataset  # noqa: E402
import kit  # noqa: E402
import model  # noqa: E402
from host import atomic, pixels  # noqa: E402

CHECKPOINT = os.path.join(HERE, "checkpoint", kit.CHECKPOINT_NAME)
EVAL_DIR = os.path.join(HERE, "eval")
MASKS = "masks"  # eval/masks/NAME.png: image NAME's uint8 class ids at the output resolution
RESULT_JSON = os.path.join(HERE, "eval_result.json")


def measure(eval_dir=EVAL_DIR, checkpoint=CHECKPOINT):
    """{"pixel_accuracy", "mean_iou", "iou": per class} of the float model on ``eval_dir``."""
    labels = dataset.LABELS
    names = sorted(n for n in os.listdir(eval_dir) if n.endswith(".png"))
    images = [pixels.through_rgb565(kit.read_png(os.path.join(eval_dir, n))) for n in names]
    masks = np.stack([kit.read_png(os.path.join(eval_dir, MASKS, n)) for n in names])
    predicted = np.argmax(kit.predict(model.segnet, checkpoint, images), axis=-1)
    ious = []
    for c in range(len(labels)):
        union = np.sum((predicted == c) | (masks == c))
        ious.append(float(np.sum((predicted == c) & (masks == c)) / union) if union else 1.0)
    return {"images": len(names), "pixel_accuracy": round(float(np.mean(predicted == masks)), 4),
            "mean_iou": round(float(np.mean(ious)), 4),
            "iou": {name: round(v, 4) for name, v in zip(labels, ious)}}


def main(argv=None):
    result = measure()
    atomic.write_json(RESULT_JSON, result)
    print("eval/: %d scenes, pixel accuracy %.3f, mean IoU %.3f (%s)"
          % (result["images"], result["pixel_accuracy"], result["mean_iou"],
             ", ".join("%s %.3f" % kv for kv in result["iou"].items())))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
