"""Top-1 accuracy of the example RGB shapes classifier (MobileNet-style) on ``eval/`` (float TF, batch 1,
inference graph, the pixels the board feeds the KPU: the RGB565 round trip of
``host.pixels``).
Writes ``eval_result.json``.

    .venv/bin/python examples/shapes/evaluate.py
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (HERE, os.path.dirname(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import dataset  # noqa: E402
import kit  # noqa: E402
import model  # noqa: E402
from host import atomic, pixels  # noqa: E402

CHECKPOINT = os.path.join(HERE, "checkpoint", kit.CHECKPOINT_NAME)
EVAL_DIR = os.path.join(HERE, "eval")
EVAL_LABELS = os.path.join(HERE, "eval_labels.json")  # image name -> class name
RESULT_JSON = os.path.join(HERE, "eval_result.json")


def measure():
    """{"images", "top1_accuracy"} of the committed checkpoint on eval/."""
    acc, predicted = kit.accuracy(model.shapes_net, CHECKPOINT, EVAL_DIR, EVAL_LABELS,
                                  dataset.LABELS, pixels.through_rgb565)
    return {"images": len(predicted), "top1_accuracy": round(acc, 4)}


def main(argv=None):
    result = measure()
    atomic.write_json(RESULT_JSON, result)
    print("eval/: %d images, top-1 accuracy %.3f"
          % (result["images"], result["top1_accuracy"]))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
