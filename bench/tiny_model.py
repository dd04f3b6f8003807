"""A tiny frozen TF1 graph with the example model's interface (input `Input_image` float32
[1, 224, 320, 3], output `tiny/output` [1, 7, 10, 30], the yolo2 layout of 5 anchors x 6), but
almost no compute: five 3x3 convolutions of 4 channels with 2x2 max-pools (KPU ops), one
1x1 convolution. On the virtual board its KPU
time (nncase's simulator) is a few ms instead of ~100 ms, so a serial eval with it measures
the link, not the simulator. Same input size => same payload per image as the example model.

`--small`: a 16x16 input (`Input_image` [1, 16, 16, 3] -> `small/output` [1, 8, 8, 5], the
`grid` layout: one 3x3 convolution of 8 channels, a 2x2 max-pool, a 1x1 convolution) for the
long-evaluation rows (bench/long_eval.py): 512-byte images, so thousands cross the line in
minutes and what is measured is serial_eval's own cost per image.

Run: python bench/tiny_model.py [--small] OUT.pb  (TensorFlow process; seeded, deterministic)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from host.tf_infer import tf  # noqa: E402

HEIGHT, WIDTH = 224, 320
OUTPUT = "tiny/output"


def graph_def(seed=0):
    rng = np.random.RandomState(seed)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, HEIGHT, WIDTH, 3], name="Input_image")
        with tf.compat.v1.variable_scope("tiny"):
            y = x
            channels = 3
            for pool in (4, 4, 2):                   # 224x320 -> 7x10, on the KPU
                w = tf.constant(rng.uniform(-0.5, 0.5, (3, 3, channels, 2)).astype(np.float32))
                y = tf.nn.relu(tf.nn.conv2d(y, w, 1, "SAME"))
                y = tf.nn.max_pool2d(y, pool, pool, "VALID")
                channels = 2
            w = tf.constant(rng.uniform(-1, 1, (1, 1, channels, 30)).astype(np.float32))
            b = tf.constant(rng.uniform(-1, 1, (30,)).astype(np.float32))
            y = tf.nn.conv2d(y, w, 1, "SAME") + b
        tf.identity(y, name=OUTPUT)
    return graph.as_graph_def()


SMALL = 16
SMALL_OUTPUT = "small/output"


def small_graph_def(seed=5):
    rng = np.random.RandomState(seed)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, SMALL, SMALL, 3], name="Input_image")
        with tf.compat.v1.variable_scope("small"):
            w = tf.constant(rng.uniform(-0.6, 0.6, (3, 3, 3, 8)).astype(np.float32))
            b = tf.constant(rng.uniform(-0.1, 0.1, (8,)).astype(np.float32))
            y = tf.nn.leaky_relu(tf.nn.conv2d(x, w, 1, "SAME") + b, alpha=0.1)
            y = tf.nn.max_pool2d(y, 2, 2, "VALID")
            w = tf.constant(rng.uniform(-0.8, 0.8, (1, 1, 8, 5)).astype(np.float32))
            b = tf.constant(np.array([0.0, 0.0, -1.0, -1.0, 0.2], np.float32))
            y = tf.nn.conv2d(y, w, 1, "SAME") + b
        tf.identity(y, name=SMALL_OUTPUT)
    return graph.as_graph_def()


def main(argv):
    small = argv[:1] == ["--small"]
    out = argv[-1]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "wb") as f:
        f.write((small_graph_def() if small else graph_def()).SerializeToString())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
