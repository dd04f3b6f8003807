"""The example MNIST-style classifier: 28x28x1 in [0, 1] -> 10 logits (TF1 ``tf.layers``).

Three conv 3x3 + BatchNorm + ReLU blocks (8-16-32 channels) with 2x2 max pools after the
first two, a global average pool and a 1x1 conv to the 10 classes, reshaped to ``[N, 10]``
and named ``mnist/logits``. Only K210-friendly ops (the KPU runs the convs; the mean and the
reshape are cheap CPU ops). About 6k parameters.
"""
import tensorflow as tf

INPUT_HEIGHT, INPUT_WIDTH, INPUT_CHANNELS = 28, 28, 1
OUTPUT_NODE = "mnist/logits"
NUM_CLASSES = 10
CHANNELS = (8, 16, 32)


def _block(net, filters, is_training, name):
    with tf.variable_scope(name):
        net = tf.layers.conv2d(net, filters, 3, padding="same", use_bias=False, name="conv2d")
        net = tf.layers.batch_normalization(net, training=is_training, momentum=0.9, name="bn")
        return tf.nn.relu(net, name="relu")


def mnist_net(images, is_training=False):
    """Logits [N, 10] for ``images`` [N, 28, 28, 1]; ``is_training`` a bool or bool tensor
    (batch statistics when training, moving statistics for inference: what the K210 runs)."""
    net = images
    with tf.variable_scope("mnist"):
        for i, filters in enumerate(CHANNELS):
            net = _block(net, filters, is_training, "block%d" % (i + 1))
            if i < 2:
                net = tf.layers.max_pooling2d(net, 2, 2, name="pool%d" % (i + 1))
        net = tf.reduce_mean(net, axis=[1, 2], keepdims=True, name="global_pool")
        net = tf.layers.conv2d(net, NUM_CLASSES, 1, name="classes")
    return tf.reshape(net, [-1, NUM_CLASSES], name=OUTPUT_NODE)
