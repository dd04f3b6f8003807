"""A tiny grayscale (1-channel) model, MNIST-sized: 32x32xC (MNIST's 28 padded to 32, as the
camera window takes multiples of 8) -> two 3x3 convolutions with 2x2 max-pools (KPU ops), a
global average pool and a 1x1 convolution to 10 class scores [1, 1, 1, 10]. Seeded and
deterministic; C is 1 for the real thing, other counts (2, 4) make the graphs the converter
must refuse. Also the images it is calibrated and evaluated on: smooth coloured blobs saved
as RGB PNGs, so the board's path (RGB565, then the firmware's luminance) is what they go
through.

Run: python tests/gray_model.py OUT.pb [CHANNELS]  (TensorFlow process)
"""
import os
import sys

import numpy as np
from PIL import Image

H = W = 32
INPUT = "image"
OUTPUT = "gray/scores"


def graph_def(channels=1, seed=3):
    from host.tf_infer import tf
    rng = np.random.RandomState(seed)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, H, W, channels], name=INPUT)
        with tf.compat.v1.variable_scope("gray"):
            y, c = x, channels
            for width in (8, 16):
                w = tf.constant(rng.uniform(-0.7, 0.7, (3, 3, c, width)).astype(np.float32))
                b = tf.constant(rng.uniform(-0.1, 0.1, (width,)).astype(np.float32))
                y = tf.nn.relu(tf.nn.conv2d(y, w, 1, "SAME") + b)
                y = tf.nn.max_pool2d(y, 2, 2, "VALID")
                c = width
            y = tf.reduce_mean(y, axis=[1, 2], keepdims=True)
            w = tf.constant(rng.uniform(-1, 1, (1, 1, c, 10)).astype(np.float32))
            y = tf.nn.conv2d(y, w, 1, "SAME")
        tf.identity(y, name=OUTPUT)
    return graph.as_graph_def()


def images(directory, n, seed, size=(W, H)):
    """n RGB PNGs of smooth coloured blobs (their luminance is the model's input)."""
    os.makedirs(str(directory), exist_ok=True)
    rng = np.random.RandomState(seed)
    for i in range(n):
        small = rng.randint(0, 256, (4, 4, 3)).astype(np.uint8)
        Image.fromarray(small).resize(size, Image.BILINEAR).save(
            os.path.join(str(directory), "%05d.png" % i))
    return str(directory)


def main(argv):
    out = argv[0]
    channels = int(argv[1]) if len(argv) > 1 else 1
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "wb") as f:
        f.write(graph_def(channels).SerializeToString())
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main(sys.argv[1:]))
