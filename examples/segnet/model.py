"""The example segmentation net: a small encoder-decoder (TF1 ``tf.layers``),
64x64x3 in [0, 1] -> class scores [N, 16, 16, 4] (1/4 of the input resolution).

Encoder: conv 3x3 + BatchNorm + ReLU blocks (16-24-32-48-48 channels) with 2x2 max pools,
down to 8x8. Decoder: nearest-neighbour 2x upsampling to 16x16, concatenated with the 16x16
encoder features (skip), one more conv block and a 1x1 conv to the classes, named
``segnet/scores`` (logits; the board's argmax needs no softmax). About 60k parameters;
K210-friendly ops only (resize nearest and concat run on the CPU).
"""
import tensorflow as tf

INPUT_HEIGHT, INPUT_WIDTH, INPUT_CHANNELS = 64, 64, 3
OUTPUT_NODE = "segnet/scores"
NUM_CLASSES = 4


def _block(net, filters, is_training, name):
    with tf.variable_scope(name):
        net = tf.layers.conv2d(net, filters, 3, padding="same", use_bias=False, name="conv2d")
        net = tf.layers.batch_normalization(net, training=is_training, momentum=0.9, name="bn")
        return tf.nn.relu(net, name="relu")


def segnet(images, is_training=False):
    """Class scores [N, 16, 16, 4] for ``images`` [N, 64, 64, 3]; ``is_training`` a bool or
    bool tensor (batch statistics when training, moving statistics for inference)."""
    with tf.variable_scope("segnet"):
        net = _block(images, 16, is_training, "enc1")
        net = tf.layers.max_pooling2d(net, 2, 2, name="pool1")                  # 32x32
        net = _block(net, 24, is_training, "enc2")
        net = tf.layers.max_pooling2d(net, 2, 2, name="pool2")                  # 16x16
        skip = _block(net, 32, is_training, "enc3")
        net = tf.layers.max_pooling2d(skip, 2, 2, name="pool3")                 # 8x8
        net = _block(net, 48, is_training, "enc4")
        net = _block(net, 48, is_training, "enc5")
        size = [int(skip.shape[1]), int(skip.shape[2])]
        net = tf.image.resize_nearest_neighbor(net, size, name="up")          # 16x16
        net = tf.concat([net, skip], axis=-1, name="merge")
        net = _block(net, 24, is_training, "dec1")
        net = tf.layers.conv2d(net, NUM_CLASSES, 1, name="classes")
    return tf.identity(net, name=OUTPUT_NODE)
