"""Train the example segmentation net (TF1, BN-safe recipe of examples/kit.py).

Writes the committed data (``calib/``: 40 scenes; ``eval/``: 40 scenes, their 16x16 masks
as PNGs of the same names in ``eval/masks/``), generates 10,000 training scenes in memory
(seed TRAIN_SEED), trains 2,000 steps of 32 with Adam on 2 threads (per-cell softmax cross
entropy; the training set holds mirrored copies), writes ``checkpoint/`` atomically and runs
``evaluate.py`` (eval_result.json).

    .venv/bin/python examples/segnet/train.py       # make train-example EXAMPLE=segnet
    .venv/bin/python examples/segnet/train.py --data-only
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (HERE, os.path.dirname(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import numpy as np  # noqa: E402

import dataset  # noqa: E402
import evaluate  # noqa: E402
import kit  # noqa: E402
import model  # noqa: E402
from host.tf_infer import tf  # noqa: E402

CHECKPOINT_DIR = os.path.join(HERE, "checkpoint")
CALIB_DIR, EVAL_DIR = os.path.join(HERE, "calib"), os.path.join(HERE, "eval")
CALIB_COUNT, EVAL_COUNT = 40, 40
TRAIN_COUNT = 10000


def segment_loss(scores, masks):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(masks, tf.int32), logits=scores))


MODEL_FN = model.segnet
LOSS = segment_loss


def eval_set():
    """[(uint8 64x64x3 scene, uint8 16x16 mask)] of the committed eval/ folder."""
    images, masks = dataset.generate(EVAL_COUNT, dataset.EVAL_SEED)
    return list(zip(images, masks))


def training_data(count=TRAIN_COUNT):
    """(uint8 scenes, uint8 masks) of the training set with a mirrored copy of each (image
    and mask must flip together, so the flips are made here rather than per batch)."""
    images, masks = dataset.generate(count, dataset.TRAIN_SEED)
    return (np.concatenate([images, images[:, :, ::-1]]),
            np.concatenate([masks, masks[:, :, ::-1]]))


def make_data():
    calib, _ = dataset.generate(CALIB_COUNT, dataset.CALIB_SEED)
    kit.write_pngs(CALIB_DIR, calib)
    pairs = eval_set()
    kit.write_pngs(EVAL_DIR, [image for image, _ in pairs])
    kit.write_pngs(os.path.join(EVAL_DIR, evaluate.MASKS), [mask for _, mask in pairs])
    print("calib/: %d scenes, eval/: %d scenes + masks" % (len(calib), len(pairs)))


def main(argv=None):
    p = argparse.ArgumentParser(description="Train the example segmentation net.")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--data-only", action="store_true", help="only rewrite calib/ and eval/")
    args = p.parse_args(argv)
    make_data()
    if args.data_only:
        return
    t0 = time.time()
    images, masks = training_data()
    print("training data: %d scenes (half of them mirrored) in %.0f s"
          % (len(images), time.time() - t0))
    sess, saver, seconds = kit.train(MODEL_FN, images, masks, LOSS, args.steps, batch=32)
    size = kit.save_checkpoint(sess, saver, CHECKPOINT_DIR)
    sess.close()
    print("trained %d steps in %.0f s; checkpoint %d bytes" % (args.steps, seconds, size))
    evaluate.main([])
    print("done in %.0f s" % (time.time() - t0))


if __name__ == "__main__":
    main()
