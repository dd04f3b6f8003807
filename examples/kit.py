"""What the small example models (mnist, shapes, segnet) share: BN-safe training, the
checkpoint swap, PNG folders, batch-1 float inference on the inference graph.

The training graph follows the recipe of docs/background.md:
- ``training_control = tf.placeholder_with_default(True, [], name='training_control')`` is the
  network's ``is_training``; evaluation runs the separate inference graph (is_training=False);
- the optimizer's ``minimize`` runs under a control dependency on ``tf.GraphKeys.UPDATE_OPS``,
  so the BN moving statistics are trained;
- the saver holds every global variable of the network (weights and BN moving statistics);
  the Adam slots are left out to keep the committed checkpoint small (converting rebuilds the
  network from model.py, so the optimizer state is never needed).
"""
import json
import os
import shutil
import sys
import tempfile
import time

EXAMPLES = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(EXAMPLES)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from host import atomic  # noqa: E402
from host.tf_infer import tf  # noqa: E402  (quiet TF 1.15 import, shared with host/)

INPUT_NODE = "Input_image"
CHECKPOINT_NAME = "model.ckpt"
THREADS = 2


def session_config():
    return tf.ConfigProto(intra_op_parallelism_threads=THREADS,
                          inter_op_parallelism_threads=THREADS)


# ---------------------------------------------------------------- data files

def image_name(index):
    return "%03d.png" % index


def write_pngs(out_dir, arrays, extra_files=None):
    """Write uint8 HxW (grayscale) or HxWx3 arrays as 000.png ... into ``out_dir`` atomically,
    with ``extra_files`` {name: text}; returns the file names."""
    names = [image_name(i) for i in range(len(arrays))]
    with atomic.staged_dir(out_dir) as stage:
        for name, array in zip(names, arrays):
            Image.fromarray(np.asarray(array, np.uint8)).save(os.path.join(stage, name),
                                                              optimize=True)
        for name, text in (extra_files or {}).items():
            with open(os.path.join(stage, name), "w") as f:
                f.write(text)
    return names


def read_png(path):
    """A committed image as the uint8 array it was written from (HxW or HxWx3)."""
    with Image.open(path) as im:
        return np.asarray(im)


def eval_labels_text(classes):
    """The eval labels file of a classifier, as `serial_eval --eval-labels` reads it:
    {image name: class name}, one image a line (readable diffs)."""
    lines = ['  %s: %s' % (json.dumps(n), json.dumps(classes[n])) for n in sorted(classes)]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def classifier_eval_set(dataset, per_class):
    """[(uint8 image, class id)] of a classifier example's committed eval/ folder:
    ``per_class`` images of each class of its ``dataset`` module."""
    images, classes = dataset.generate_balanced(per_class, dataset.EVAL_SEED)
    return [(image, int(c)) for image, c in zip(images, classes)]


def write_classifier_data(dataset, calib_dir, eval_dir, labels_path, calib_per_class,
                          eval_per_class):
    """A classifier example's committed data: calib/ and eval/ PNGs (balanced over the
    classes) and the eval images' classes in its eval labels file."""
    calib, _ = dataset.generate_balanced(calib_per_class, dataset.CALIB_SEED)
    write_pngs(calib_dir, calib)
    pairs = classifier_eval_set(dataset, eval_per_class)
    write_pngs(eval_dir, [image for image, _ in pairs])
    atomic.write_text(labels_path, eval_labels_text(
        {image_name(i): dataset.LABELS[c] for i, (_, c) in enumerate(pairs)}))
    print("calib/: %d images, eval/: %d images" % (len(calib), len(pairs)))


def read_eval_labels(path):
    with open(path) as f:
        return json.load(f)


# ---------------------------------------------------------------- training

def train(model_fn, images, targets, loss_fn, steps, batch=32, learning_rate=2e-3,
          augment=None, seed=0, log_every=200):
    """Train ``model_fn`` on uint8 ``images`` [N, H, W, C] (fed as x/255) and ``targets``
    [N, ...] with Adam (learning rate halved at 60% and 85% of ``steps``); returns
    (session, graph, saver of the network's variables, seconds). ``augment(rng, batch)``
    may transform each uint8 batch."""
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(seed)
        x = tf.placeholder(tf.float32, [None] + list(images.shape[1:]), name="batch_image")
        y = tf.placeholder(tf.as_dtype(targets.dtype), [None] + list(targets.shape[1:]),
                           name="batch_target")
        training_control = tf.placeholder_with_default(True, shape=[], name="training_control")
        output = model_fn(x, is_training=training_control)
        network_vars = tf.global_variables()
        loss = loss_fn(output, y)
        lr = tf.placeholder(tf.float32, [], name="learning_rate")
        with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
            train_op = tf.train.AdamOptimizer(lr).minimize(loss)
        saver = tf.train.Saver(network_vars)
        sess = tf.Session(graph=graph, config=session_config())
        sess.run(tf.global_variables_initializer())
    rng = np.random.RandomState(seed)
    t0 = time.time()
    running = None
    for step in range(1, steps + 1):
        idx = rng.randint(0, len(images), batch)
        xb = images[idx]
        if augment is not None:
            xb = augment(rng, xb)
        rate = learning_rate * (0.5 ** ((step > 0.6 * steps) + (step > 0.85 * steps)))
        value, _ = sess.run([loss, train_op], {x: xb.astype(np.float32) / 255.0,
                                                y: targets[idx], lr: rate})
        running = value if running is None else 0.95 * running + 0.05 * value
        if step % log_every == 0 or step == steps:
            print("step %d/%d  %.0f s  loss %.4f" % (step, steps, time.time() - t0, running))
            sys.stdout.flush()
    return sess, saver, time.time() - t0


def save_checkpoint(sess, saver, directory, meta_graph=False):
    """Write the final checkpoint (a `checkpoint` index with a relative path; with
    ``meta_graph`` the training graph's ``.meta`` too, for the converter's --meta path) into a
    staging directory, then swap it in for ``directory``; returns its size in bytes."""
    parent = os.path.dirname(os.path.abspath(directory))
    stage = tempfile.mkdtemp(prefix=".checkpoint-", dir=parent)
    os.chmod(stage, 0o755)
    old = None
    try:
        saver.save(sess, os.path.join(stage, CHECKPOINT_NAME), write_meta_graph=meta_graph,
                   write_state=False)
        with open(os.path.join(stage, "checkpoint"), "w") as f:
            f.write('model_checkpoint_path: "%s"\nall_model_checkpoint_paths: "%s"\n'
                    % (CHECKPOINT_NAME, CHECKPOINT_NAME))
        if os.path.exists(directory):
            old = tempfile.mkdtemp(prefix=".checkpoint-old-", dir=parent)
            os.rmdir(old)
            os.replace(directory, old)
        os.replace(stage, directory)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    return sum(os.path.getsize(os.path.join(directory, n)) for n in os.listdir(directory))


# ---------------------------------------------------------------- inference

def predict(model_fn, checkpoint, arrays):
    """Float TF on the inference graph (``Input_image`` [1, H, W, C], is_training=False,
    batch 1, as the converter freezes it) for uint8 HxW(xC) ``arrays``; returns the outputs
    stacked [N, ...]."""
    arrays = [a[..., None] if a.ndim == 2 else a for a in arrays]
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [1] + list(arrays[0].shape), name=INPUT_NODE)
        output = model_fn(x, is_training=False)
        saver = tf.train.Saver(tf.global_variables())
        with tf.Session(graph=graph, config=session_config()) as sess:
            saver.restore(sess, checkpoint)
            return np.stack([sess.run(output, {x: a[None].astype(np.float32) / 255.0})[0]
                             for a in arrays])


def bn_moving_statistics(checkpoint):
    """{variable name: array} of the BN moving means/variances stored in ``checkpoint``."""
    reader = tf.train.load_checkpoint(checkpoint)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if "moving_" in name}


# ---------------------------------------------------------------- classifiers

def classifier_loss(logits, labels):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                        logits=logits))


def accuracy(model_fn, checkpoint, eval_dir, labels_path, class_names, pixel_path=None):
    """Top-1 accuracy of the float model on the images of ``labels_path`` (an eval labels
    file: image name in ``eval_dir`` -> class name), each image through ``pixel_path`` (the
    board's pixel path) when given; returns (accuracy, {name: predicted class name})."""
    truth = read_eval_labels(labels_path)
    names = sorted(truth)
    arrays = [read_png(os.path.join(eval_dir, n)) for n in names]
    if pixel_path is not None:
        arrays = [pixel_path(a) for a in arrays]
    predicted = np.argmax(predict(model_fn, checkpoint, arrays).reshape(len(names), -1), axis=1)
    hits = sum(class_names[p] == truth[n] for p, n in zip(predicted, names))
    return hits / float(len(names)), {n: class_names[p] for n, p in zip(names, predicted)}
