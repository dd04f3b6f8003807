"""Regenerate the shipped data of the example face model (deterministic).

- ``calib_images/`` (repository root): 40 JPEGs for nncase calibration (seed CALIB_SEED).
- ``examples/face/eval/``: 80 held-out JPEGs + ``labels.json`` (seed EVAL_SEED).

Training (TRAIN_SEED) and threshold validation (VAL_SEED) data are generated in memory by
``train.py``; all four seeds are different, so the sets are disjoint.

    .venv/bin/python examples/face/make_data.py
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import dataset  # noqa: E402

CALIB_DIR = os.path.join(REPO, "calib_images")
EVAL_DIR = os.path.join(HERE, "eval")
CALIB_COUNT, EVAL_COUNT = 40, 80


def main():
    dataset.write_folder(CALIB_DIR, CALIB_COUNT, dataset.CALIB_SEED, with_labels=False)
    print("calib_images: %d images (seed %d)" % (CALIB_COUNT, dataset.CALIB_SEED))
    labels = dataset.write_folder(EVAL_DIR, EVAL_COUNT, dataset.EVAL_SEED, with_labels=True)
    faces = sum(len(b) for b in labels.values())
    print("examples/face/eval: %d images, %d faces (seed %d)" % (EVAL_COUNT, faces,
                                                                  dataset.EVAL_SEED))


if __name__ == "__main__":
    main()
