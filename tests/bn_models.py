"""Small TF1 networks trained for a few steps, reproducing the BatchNorm traps of the
project's background: no update ops, a trainable-only saver, a graph frozen in training mode,
and the right recipe (training_control placeholder, UPDATE_OPS, Saver(global_variables))."""
import os

import numpy as np

from host.tf_infer import session_config, tf

SIZE = (32, 48)  # H, W: two max-pools -> 8x12 grid


def tiny_net(images, is_training=False, width=8):
    x = images
    for i in range(2):
        x = tf.layers.conv2d(x, width, 3, padding="same", use_bias=False, name="conv%d" % i)
        x = tf.layers.batch_normalization(x, training=is_training, momentum=0.5, name="bn%d" % i)
        x = tf.nn.leaky_relu(x, 0.1)
        x = tf.layers.max_pooling2d(x, 2, 2)
    return tf.identity(tf.layers.conv2d(x, 5, 1, name="head"), name="output")


def data(n, seed=0):
    rng = np.random.RandomState(seed)
    return (0.3 + 0.4 * rng.rand(n, SIZE[0], SIZE[1], 3)).astype(np.float32)


def train(directory, update_ops=True, saver="global", steps=12):
    """Train tiny_net with the training_control recipe; returns the checkpoint prefix."""
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(1)
        control = tf.placeholder_with_default(True, shape=[], name="training_control")
        images = tf.placeholder(tf.float32, [None, SIZE[0], SIZE[1], 3], name="Input_image")
        out = tiny_net(images, is_training=control)
        loss = tf.reduce_mean(tf.square(out - 1.0))
        opt = tf.train.AdamOptimizer(0.01)
        if update_ops:
            with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
                train_op = opt.minimize(loss)
        else:
            train_op = opt.minimize(loss)
        variables = tf.global_variables() if saver == "global" else tf.trainable_variables()
        save = tf.train.Saver(variables)
        with tf.Session(graph=graph, config=session_config()) as sess:
            sess.run(tf.global_variables_initializer())
            batch = data(8)
            for _ in range(steps):
                sess.run(train_op, {images: batch})
            prefix = save.save(sess, os.path.join(directory, "model.ckpt"))
    return prefix


def freeze_training_graph_as_is(prefix, path):
    """The user's first mistake: freeze the training graph (BN on batch statistics)."""
    graph = tf.Graph()
    with graph.as_default():
        images = tf.placeholder(tf.float32, [1, SIZE[0], SIZE[1], 3], name="Input_image")
        tiny_net(images, is_training=True)
        with tf.Session(graph=graph, config=session_config()) as sess:
            tf.train.Saver().restore(sess, prefix)
            graph_def = tf.graph_util.convert_variables_to_constants(
                sess, graph.as_graph_def(), ["output"])
    with open(path, "wb") as f:
        f.write(graph_def.SerializeToString())


def run_checkpoint(prefix, batch, training):
    """Reference: the trained model restored from its meta graph, training_control fed."""
    graph = tf.Graph()
    with graph.as_default(), tf.Session(graph=graph, config=session_config()) as sess:
        tf.train.import_meta_graph(prefix + ".meta").restore(sess, prefix)
        return sess.run("output:0", {"Input_image:0": batch, "training_control:0": training})


def freeze_with_training_placeholder(prefix, path):
    """Training_save.pb of the background story: the training graph frozen right after
    training, training_control still a placeholder defaulting to True."""
    graph = tf.Graph()
    with graph.as_default(), tf.Session(graph=graph, config=session_config()) as sess:
        tf.train.import_meta_graph(prefix + ".meta").restore(sess, prefix)
        graph_def = tf.graph_util.convert_variables_to_constants(
            sess, graph.as_graph_def(), ["output"])
    with open(path, "wb") as f:
        f.write(tf.graph_util.extract_sub_graph(graph_def, ["output"]).SerializeToString())
