"""A multi-class YOLOv2 in MaixPy's layout for the decoder and per-class evaluation tests:
20 classes (the Pascal VOC names), 5 anchors, so 5 x (5 + 20) = 125 output channels.

Random but seeded weights: input `Input_image` [1, 96, 128, 3] -> three conv 3x3 + ReLU with
max pools (KPU ops) -> 3x4 grid -> 1x1 conv to `yolo20/output` [1, 3, 4, 125]. The class
logits are centred (each class's bias cancels its mean logit over blob images, so no class
wins everywhere) and scaled up (CLASS_GAIN) so a cell's best class usually wins by a margin
quantisation does not close; the objectness biases vary per anchor so some cells pass the
threshold and others do not. Which classes appear depends on the image colours.

Run as a script (a TensorFlow process): python tests/yolo20_model.py OUT.pb
`build()` makes the frozen graph, calibration and eval images and runs host/convert.py.
"""
import os
import subprocess
import sys

import numpy as np

H, W = 96, 128
OUTPUT = "yolo20/output"
LABELS = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
          "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep",
          "sofa", "train", "tvmonitor"]
ANCHORS = [1.08, 1.19, 3.42, 4.41, 6.63, 11.38, 9.42, 5.11, 16.62, 10.52]  # MaixPy's VOC set
NUM_ANCHORS, NUM_CLASSES = 5, 20
PER_ANCHOR = 5 + NUM_CLASSES
CLASS_GAIN = 8.0
THRESHOLD = 0.3


def graph_def(seed=20):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from host.tf_infer import tf

    rng = np.random.RandomState(seed)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, H, W, 3], name="Input_image")
        with tf.compat.v1.variable_scope("yolo20"):
            y, channels = x, 3
            for width, pool in ((8, 4), (12, 4), (16, 2)):   # 96x128 -> 3x4
                w = rng.normal(0, 1.0 / np.sqrt(9 * channels), (3, 3, channels, width))
                b = rng.uniform(-0.1, 0.1, width)
                y = tf.nn.relu(tf.nn.conv2d(y, w.astype(np.float32), 1, "SAME") + b)
                y = tf.nn.max_pool2d(y, pool, pool, "VALID")
                channels = width
            with tf.compat.v1.Session(graph=graph) as sess:
                mean_features = np.mean([sess.run(y, {x: blob[None] / 255.0})
                                         for blob in _blobs(32, seed + 1)], axis=(0, 1, 2, 3))
            w = rng.normal(0, 1.0 / np.sqrt(channels), (channels, NUM_ANCHORS * PER_ANCHOR))
            b = np.zeros(NUM_ANCHORS * PER_ANCHOR)
            for a in range(NUM_ANCHORS):
                classes = slice(a * PER_ANCHOR + 5, (a + 1) * PER_ANCHOR)
                w[:, classes] *= CLASS_GAIN
                b[classes] = -mean_features @ w[:, classes]
                b[a * PER_ANCHOR + 4] = -0.5 + 0.6 * a     # objectness: anchors differ
            y = tf.nn.conv2d(y, w[None, None].astype(np.float32), 1, "SAME") + \
                b.astype(np.float32)
        tf.identity(y, name=OUTPUT)
    return graph.as_graph_def()


def _blobs(n, seed):
    """n uint8 [H, W, 3] images of colour blobs: cells differ in colour, hence in class."""
    from PIL import Image
    rng = np.random.RandomState(seed)
    return [np.asarray(Image.fromarray(rng.randint(0, 256, (3, 4, 3)).astype(np.uint8))
                       .resize((W, H), Image.BILINEAR)) for _ in range(n)]


def images(directory, n, seed):
    """n PNGs of colour blobs in ``directory``."""
    from PIL import Image
    os.makedirs(str(directory), exist_ok=True)
    for i, blob in enumerate(_blobs(n, seed)):
        Image.fromarray(blob).save(os.path.join(str(directory), "%03d.png" % i))
    return str(directory)


def build(directory, repo, env):
    """Frozen graph + calibration images + `host/convert.py --decoder yolo2` with the 20
    labels; returns (manifest path, eval image folder)."""
    directory = str(directory)
    pb = os.path.join(directory, "yolo20.pb")
    subprocess.run([sys.executable, os.path.abspath(__file__), pb], cwd=repo, env=env,
                   check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    calib = images(os.path.join(directory, "calib"), 24, seed=21)
    evaluation = images(os.path.join(directory, "eval"), 24, seed=22)
    out = os.path.join(directory, "build")
    proc = subprocess.run(
        [sys.executable, os.path.join(repo, "host", "convert.py"), "--frozen-pb", pb,
         "--input-size", "%dx%d" % (H, W), "--output-node", OUTPUT, "--decoder", "yolo2",
         "--anchors", ",".join(str(v) for v in ANCHORS), "--labels", ",".join(LABELS),
         "--threshold", str(THRESHOLD), "--nms", "0.3", "--calib-dir", calib,
         "--no-layer-error", "--out", out],
        cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError("yolo20 model conversion failed: %s" % proc.stderr[-2000:])
    return os.path.join(out, "manifest.json"), evaluation


if __name__ == "__main__":
    with open(sys.argv[1], "wb") as f:
        f.write(graph_def().SerializeToString())
