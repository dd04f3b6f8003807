"""Tiny real models of the other kinds (docs/model-kinds.md), 16x16 RGB inputs, seeded:
- `classifier`: conv 3x3 (8) -> max-pool -> flatten -> dense to N=6 class logits, output
  `cls/output` [1, 6] (`--softmax-output`: a Softmax op behind it, so the output is scores);
- `segmenter`: conv 3x3 (8) -> max-pool -> conv 1x1 to 3 classes, output `seg/output`
  [1, 8, 8, 3] (H x W x C class scores).
`build()` writes the frozen graph (TensorFlow in a subprocess: this pytest process may host
nncase users) and runs `host/convert.py` on it.

Run: python tests/tiny_kinds.py classifier|segmenter [--softmax-output] OUT.pb
"""
import os
import subprocess
import sys

SIZE = 16
CLASSES = 6
LABELS = ["cat", "dog", "fox", "owl", "yak", "elk"]
SEG_CLASSES = 3
OUTPUTS = {"classifier": "cls/output", "segmenter": "seg/output"}


def _conv_pool(tf, x, rng):
    import numpy as np
    w = tf.constant(rng.uniform(-0.6, 0.6, (3, 3, 3, 8)).astype(np.float32))
    b = tf.constant(rng.uniform(-0.1, 0.1, (8,)).astype(np.float32))
    y = tf.nn.relu(tf.nn.conv2d(x, w, 1, "SAME") + b)
    return tf.nn.max_pool2d(y, 2, 2, "VALID")


def graph_def(kind, softmax_output=False, seed=7):
    import numpy as np
    from host.tf_infer import tf
    rng = np.random.RandomState(seed)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, SIZE, SIZE, 3], name="Input_image")
        with tf.compat.v1.variable_scope(OUTPUTS[kind].split("/")[0]):
            y = _conv_pool(tf, x, rng)
            if kind == "classifier":
                flat = tf.reshape(y, [1, 8 * 8 * 8])
                w = tf.constant(rng.uniform(-0.3, 0.3, (8 * 8 * 8, CLASSES)).astype(np.float32))
                b = tf.constant(rng.uniform(-0.5, 0.5, (CLASSES,)).astype(np.float32))
                y = tf.matmul(flat, w) + b
                if softmax_output:
                    y = tf.nn.softmax(y)
            else:
                w = tf.constant(rng.uniform(-1, 1, (1, 1, 8, SEG_CLASSES)).astype(np.float32))
                b = tf.constant(np.array([0.3, 0.0, -0.2], np.float32))
                y = tf.nn.conv2d(y, w, 1, "SAME") + b
        tf.identity(y, name=OUTPUTS[kind])
    return graph.as_graph_def()


def write_pb(directory, kind, repo, env, softmax_output=False):
    pb = os.path.join(str(directory), "%s%s.pb" % (kind, "-softmax" if softmax_output else ""))
    subprocess.run([sys.executable, os.path.join(repo, "tests", "tiny_kinds.py"), kind]
                   + (["--softmax-output"] if softmax_output else []) + [pb],
                   cwd=repo, env=env, check=True, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE, timeout=300)
    return pb


def convert_args(pb, kind, calib, out):
    return ["host/convert.py", "--frozen-pb", pb, "--input-size", "%dx%d" % (SIZE, SIZE),
            "--output-node", OUTPUTS[kind], "--calib-dir", calib, "--out", out]


def main(argv):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    kind = argv[0]
    with open(argv[-1], "wb") as f:
        f.write(graph_def(kind, "--softmax-output" in argv).SerializeToString())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
