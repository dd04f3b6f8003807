"""Train the example MNIST-style classifier (TF1, BN-safe recipe of examples/kit.py).

Writes the committed data (``calib/``: 40 images, ``eval/``: 100 images, 10 of each digit,
their classes in ``eval_labels.json``; PNG, grayscale), generates 20,000 training digits in memory (seed TRAIN_SEED),
trains 2,500 steps of 64 with Adam on 2 threads, writes ``checkpoint/`` atomically and
runs ``evaluate.py`` (eval_result.json).

    .venv/bin/python examples/mnist/train.py       # make train-example EXAMPLE=mnist
    .venv/bin/python examples/mnist/train.py --data-only
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (HERE, os.path.dirname(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import dataset  # noqa: E402
import evaluate  # noqa: E402
import kit  # noqa: E402
import model  # noqa: E402

CHECKPOINT_DIR = os.path.join(HERE, "checkpoint")
CALIB_DIR, EVAL_DIR = os.path.join(HERE, "calib"), os.path.join(HERE, "eval")
CALIB_PER_CLASS, EVAL_PER_CLASS = 4, 10
TRAIN_COUNT = 20000
MODEL_FN = model.mnist_net
LOSS = kit.classifier_loss


def eval_set():
    """[(uint8 image, class id)] of the committed eval/ folder (EVAL_PER_CLASS of each)."""
    return kit.classifier_eval_set(dataset, EVAL_PER_CLASS)


def training_data(count=TRAIN_COUNT):
    """(uint8 [N, H, W, C] images, int64 [N] class ids) of the training set."""
    images, classes = dataset.generate(count, dataset.TRAIN_SEED)
    return images[..., None], classes


def make_data():
    kit.write_classifier_data(dataset, CALIB_DIR, EVAL_DIR, evaluate.EVAL_LABELS,
                              CALIB_PER_CLASS, EVAL_PER_CLASS)


def main(argv=None):
    p = argparse.ArgumentParser(description="Train the example MNIST-style classifier.")
    p.add_argument("--steps", type=int, default=2500)
    p.add_argument("--data-only", action="store_true", help="only rewrite calib/ and eval/")
    args = p.parse_args(argv)
    make_data()
    if args.data_only:
        return
    t0 = time.time()
    images, classes = training_data()
    print("training data: %d images in %.0f s" % (len(images), time.time() - t0))
    sess, saver, seconds = kit.train(MODEL_FN, images, classes, LOSS, args.steps, batch=64)
    # The training meta graph goes with it: the converter freezes this 1-channel model from
    # it (input `batch_image`, `training_control` bound to False).
    size = kit.save_checkpoint(sess, saver, CHECKPOINT_DIR, meta_graph=True)
    sess.close()
    print("trained %d steps in %.0f s; checkpoint %d bytes" % (args.steps, seconds, size))
    evaluate.main([])
    print("done in %.0f s" % (time.time() - t0))


if __name__ == "__main__":
    main()
