"""One tiny TF1 network per BatchNorm API that users' detectors use, trained the right way and
the usual wrong ways (tests/test_bn_matrix.py). 8x8 input, two conv+BN layers, a few steps.

APIs: tf.layers.batch_normalization; slim (tf.contrib.layers) batch_norm with its updates in
UPDATE_OPS or in place (`updates_collections=None`), fused or not; tf.keras.layers
.BatchNormalization called in a TF1 graph; tf.nn.batch_normalization with the statistics kept
by tf.train.ExponentialMovingAverage (its apply op run by the train op, or inside the tf.cond).
The training flag is a Python bool (separate training
and inference graphs), a `tf.placeholder` without default, or a placeholder defaulting to True.
"""
import os

import numpy as np

from host.tf_infer import session_config, tf

SIZE = (8, 8)
FLAG_NAMES = {"placeholder": "is_training", "default": "training_control"}


def _nn_ema(x, is_training, name, updates):
    """The moments + ExponentialMovingAverage BatchNorm of 2016-2018 TF1 code."""
    channels = x.shape[-1].value
    with tf.variable_scope(name):
        beta = tf.get_variable("beta", [channels], initializer=tf.zeros_initializer())
        gamma = tf.get_variable("gamma", [channels], initializer=tf.ones_initializer())
        mean, variance = tf.nn.moments(x, [0, 1, 2], name="moments")
        ema = tf.train.ExponentialMovingAverage(0.5)
        updates.append(ema.apply([mean, variance]))
        mean, variance = tf.contrib.framework.smart_cond(
            is_training, lambda: (mean, variance),
            lambda: (ema.average(mean), ema.average(variance)))
        return tf.nn.batch_normalization(x, mean, variance, beta, gamma, 1e-3)


def _nn_ema_in_cond(x, is_training, name):
    """The same with the EMA applied inside the tf.cond (the much-copied 2016 recipe): the
    statistics update in place whenever the layer runs in training mode. tf.cond needs a
    tensor, so a Python flag becomes a constant predicate (both branches in the graph)."""
    channels = x.shape[-1].value
    with tf.variable_scope(name):
        beta = tf.get_variable("beta", [channels], initializer=tf.zeros_initializer())
        gamma = tf.get_variable("gamma", [channels], initializer=tf.ones_initializer())
        batch_mean, batch_variance = tf.nn.moments(x, [0, 1, 2], name="moments")
        ema = tf.train.ExponentialMovingAverage(0.5)

        def mean_variance_with_update():
            with tf.control_dependencies([ema.apply([batch_mean, batch_variance])]):
                return tf.identity(batch_mean), tf.identity(batch_variance)
        mean, variance = tf.cond(tf.convert_to_tensor(is_training), mean_variance_with_update,
                                 lambda: (ema.average(batch_mean), ema.average(batch_variance)))
        return tf.nn.batch_normalization(x, mean, variance, beta, gamma, 1e-3)


def _batch_norm(api, x, is_training, name, updates):
    if api == "layers":
        return tf.layers.batch_normalization(x, training=is_training, momentum=0.5, name=name)
    if api.startswith("slim"):
        from tensorflow.contrib import slim
        return slim.batch_norm(x, decay=0.5, scale=True, is_training=is_training, scope=name,
                               fused="unfused" not in api,
                               updates_collections=None if "inplace" in api
                               else tf.GraphKeys.UPDATE_OPS)
    if api == "keras":
        layer = tf.keras.layers.BatchNormalization(momentum=0.5, name=name)
        y = layer(x, training=is_training)
        updates.extend(layer.updates)
        return y
    if api == "nn_ema":
        return _nn_ema(x, is_training, name, updates)
    if api == "nn_ema_inplace":
        return _nn_ema_in_cond(x, is_training, name)
    raise ValueError("unknown BatchNorm API %r" % api)


def net(images, is_training=False, api="layers", updates=None):
    """The --model-fn of every cell: `net(images, is_training=False, api=...)`. `updates`
    collects the update ops that are not in UPDATE_OPS (Keras layers, the EMA's apply)."""
    updates = [] if updates is None else updates
    x = images
    for i in range(2):
        x = tf.layers.conv2d(x, 4, 3, padding="same", use_bias=False, name="conv%d" % i)
        x = _batch_norm(api, x, is_training, "bn%d" % i, updates)
        x = tf.nn.relu(x)
    return tf.identity(tf.layers.conv2d(x, 5, 1, name="head"), name="output")


def data(n, seed=0):
    rng = np.random.RandomState(seed)
    return (0.2 + 0.6 * rng.rand(n, SIZE[0], SIZE[1], 3)).astype(np.float32)


def _training_flag(flag):
    if flag == "python":
        return True
    if flag == "placeholder":
        return tf.placeholder(tf.bool, [], name=FLAG_NAMES[flag])
    return tf.placeholder_with_default(True, [], name=FLAG_NAMES[flag])


def train(directory, api, flag, recipe, steps=4, weight_ema=False):
    """Train with `recipe`: "good" (the update ops the API needs run, every global variable
    saved), "no_updates" (the train op runs without them) or "trainable_only" (saved with
    Saver(tf.trainable_variables())). `weight_ema` also keeps and saves an
    ExponentialMovingAverage of the weights. Writes model.ckpt (+ .meta) in `directory` and,
    for "good", training.pb (the training graph frozen as is). Returns a dict of paths and
    `expected`: the trained model's outputs in inference mode on data(4, seed=7)."""
    os.makedirs(directory, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(1)
        images = tf.placeholder(tf.float32, [None, SIZE[0], SIZE[1], 3], name="Input_image")
        labels = tf.placeholder(tf.float32, [None, SIZE[0], SIZE[1], 5], name="labels")
        training = _training_flag(flag)
        updates = []
        out = net(images, training, api, updates)
        loss = tf.reduce_mean(tf.square(out - labels))
        dependencies = tf.get_collection(tf.GraphKeys.UPDATE_OPS) + updates
        with tf.control_dependencies(dependencies if recipe != "no_updates" else []):
            train_op = tf.train.AdamOptimizer(0.05).minimize(loss)
        if weight_ema:
            ema = tf.train.ExponentialMovingAverage(0.5)
            with tf.control_dependencies([train_op]):
                train_op = ema.apply(tf.trainable_variables())
        saved = tf.trainable_variables() if recipe == "trainable_only" else None
        saver = tf.train.Saver(saved)
        feed = {images: data(8), labels: data(8, seed=1)[..., :1].repeat(5, -1)}
        if flag != "python":
            feed[training] = True
        paths = {}
        with tf.Session(graph=graph, config=session_config()) as sess:
            sess.run(tf.global_variables_initializer())
            for _ in range(steps):
                sess.run(train_op, feed)
            paths["checkpoint"] = saver.save(sess, os.path.join(directory, "model.ckpt"))
            if recipe == "good":
                paths["training_pb"] = os.path.join(directory, "training.pb")
                _write_frozen(sess, graph, paths["training_pb"])
            if flag != "python" and not weight_ema:
                paths["expected"] = sess.run(out, {images: data(4, seed=7), training: False})
    if "expected" not in paths:
        paths["expected"] = run_inference(paths["checkpoint"], api, use_ema=weight_ema)
    return paths


def _write_frozen(sess, graph, path):
    graph_def = tf.graph_util.convert_variables_to_constants(
        sess, graph.as_graph_def(), ["output"])
    with open(path, "wb") as f:
        f.write(tf.graph_util.extract_sub_graph(graph_def, ["output"]).SerializeToString())


def run_inference(prefix, api, use_ema=False):
    """A separate inference graph (is_training=False) restored from the checkpoint, as a
    slim-style evaluation script does (with the weight averages when `use_ema`)."""
    graph = tf.Graph()
    with graph.as_default(), tf.Session(graph=graph, config=session_config()) as sess:
        images = tf.placeholder(tf.float32, [None, SIZE[0], SIZE[1], 3], name="Input_image")
        out = net(images, False, api)
        if use_ema:
            restore = tf.train.ExponentialMovingAverage(0.5).variables_to_restore()
        else:  # a trainable-only checkpoint leaves the moving statistics at 0/1
            saved = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
            restore = [v for v in tf.global_variables() if v.op.name in saved]
        sess.run(tf.global_variables_initializer())
        tf.train.Saver(restore).restore(sess, prefix)
        return sess.run(out, {images: data(4, seed=7)})


def train_keras_h5(directory, recipe, steps=4):
    """A tf.keras Model trained by a TF1 loop and saved as .h5: "good" runs `model.updates`
    with the train op, "no_updates" follows the UPDATE_OPS recipe (which holds none of
    them). Returns {"h5": path, "expected": inference-mode outputs on data(4, seed=7)}."""
    os.makedirs(directory, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default(), tf.Session(graph=graph, config=session_config()) as sess:
        tf.set_random_seed(1)
        tf.keras.backend.set_session(sess)
        images = tf.keras.Input((SIZE[0], SIZE[1], 3), name="Input_image")
        x = images
        for i in range(2):
            x = tf.keras.layers.Conv2D(4, 3, padding="same", use_bias=False,
                                       name="conv%d" % i)(x)
            x = tf.keras.layers.BatchNormalization(momentum=0.5, name="bn%d" % i)(x)
            x = tf.keras.layers.ReLU()(x)
        model = tf.keras.Model(images, tf.keras.layers.Conv2D(5, 1, name="head")(x))
        labels = tf.placeholder(tf.float32, [None, SIZE[0], SIZE[1], 5], name="labels")
        loss = tf.reduce_mean(tf.square(model.output - labels))
        dependencies = model.updates if recipe == "good" else \
            tf.get_collection(tf.GraphKeys.UPDATE_OPS)
        with tf.control_dependencies(dependencies):
            train_op = tf.train.AdamOptimizer(0.05).minimize(loss)
        sess.run(tf.global_variables_initializer())
        phase = tf.keras.backend.learning_phase()
        feed = {images: data(8), labels: data(8, seed=1)[..., :1].repeat(5, -1), phase: 1}
        for _ in range(steps):
            sess.run(train_op, feed)
        path = os.path.join(directory, "model.h5")
        model.save(path, include_optimizer=False)
        expected = sess.run(model.output, {images: data(4, seed=7), phase: 0})
    return {"h5": path, "expected": expected}
