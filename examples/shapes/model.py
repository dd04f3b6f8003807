"""The example RGB classifier: a MobileNet-v1-style network (TF1), 64x64x3 in [0, 1] -> 6 logits.

A conv 3x3/2 stem, then depthwise-separable blocks as in MobileNet v1: depthwise 3x3 + BN +
ReLU, pointwise 1x1 + BN + ReLU (each BatchNorm after its own conv), some with stride 2;
a global average pool and a 1x1 conv to the classes, reshaped to ``[N, 6]`` and named
``shapes/logits``. Strided layers pad explicitly (1 on each side, then 'valid') so the
padding is the symmetric one the K210 KPU applies, not TF's bottom-right 'same' padding of
even sizes. Channels >= 16 (the KPU wants >= 4). About 30k parameters.
"""
import tensorflow as tf

INPUT_HEIGHT, INPUT_WIDTH, INPUT_CHANNELS = 64, 64, 3
OUTPUT_NODE = "shapes/logits"
NUM_CLASSES = 6
STEM = 16
# (pointwise channels, depthwise stride) of the separable blocks: 32x32 -> 4x4.
BLOCKS = ((32, 1), (48, 2), (48, 1), (64, 2), (64, 1), (96, 2), (96, 1))


def _bn_relu(net, is_training):
    net = tf.layers.batch_normalization(net, training=is_training, momentum=0.9, name="bn")
    return tf.nn.relu(net, name="relu")


def _pad_for(net, stride):
    if stride == 1:
        return net, "SAME"
    return tf.pad(net, [[0, 0], [1, 1], [1, 1], [0, 0]]), "VALID"


def _separable(net, filters, stride, is_training, name):
    with tf.variable_scope(name):
        with tf.variable_scope("depthwise"):
            channels = int(net.shape[-1])
            kernel = tf.get_variable("depthwise_kernel", [3, 3, channels, 1],
                                     initializer=tf.glorot_uniform_initializer())
            net, padding = _pad_for(net, stride)
            net = tf.nn.depthwise_conv2d(net, kernel, [1, stride, stride, 1], padding)
            net = _bn_relu(net, is_training)
        with tf.variable_scope("pointwise"):
            net = tf.layers.conv2d(net, filters, 1, use_bias=False, name="conv2d")
            return _bn_relu(net, is_training)


def shapes_net(images, is_training=False):
    """Logits [N, 6] for ``images`` [N, 64, 64, 3]; ``is_training`` a bool or bool tensor."""
    with tf.variable_scope("shapes"):
        with tf.variable_scope("stem"):
            net, padding = _pad_for(images, 2)
            net = tf.layers.conv2d(net, STEM, 3, strides=2, padding=padding, use_bias=False,
                                   name="conv2d")
            net = _bn_relu(net, is_training)
        for i, (filters, stride) in enumerate(BLOCKS):
            net = _separable(net, filters, stride, is_training, "block%d" % (i + 1))
        net = tf.reduce_mean(net, axis=[1, 2], keepdims=True, name="global_pool")
        net = tf.layers.conv2d(net, NUM_CLASSES, 1, name="classes")
    return tf.reshape(net, [-1, NUM_CLASSES], name=OUTPUT_NODE)
