"""The example face detector: a small YOLOv2-style network in TF1 ``tf.layers``.

Written in the style of the original user's ``pureconv`` model: conv 3x3 + batch norm +
leaky ReLU blocks with 2x2 max pools, then a 1x1 conv to the MaixPy YOLOv2 layout.
Only K210-friendly ops: conv 3x3/1x1 stride 1 'same', BN (folded by the converter),
leaky ReLU (alpha 0.1), 2x2/2 max pool. No strided convs, no dense layers.

Input: float32 [N, 224, 320, 3] RGB in [0, 1]. Output: ``yolo/output`` [N, 7, 10, 30]
(5 anchors x (tx, ty, tw, th, obj, class)), NHWC as TensorFlow produces it.
"""
import tensorflow as tf

INPUT_HEIGHT, INPUT_WIDTH = 224, 320
GRID_HEIGHT, GRID_WIDTH = 7, 10
INPUT_NODE = "Input_image"
OUTPUT_NODE = "yolo/output"
# Output channels of the conv blocks; a 2x2 max pool follows each of the first five.
CHANNELS = (8, 16, 32, 64, 96, 64)


def _block(net, filters, is_training, name):
    with tf.variable_scope(name):
        net = tf.layers.conv2d(net, filters, 3, strides=1, padding="same", use_bias=False,
                               name="conv2d")
        net = tf.layers.batch_normalization(net, training=is_training, momentum=0.9,
                                            name="bn")
        return tf.nn.leaky_relu(net, alpha=0.1, name="leaky")


def face_yolo(images, is_training=False, num_anchors=5, num_classes=1):
    """Build the detector on ``images``; returns the ``yolo/output`` tensor [N, 7, 10, A*(5+C)].

    ``is_training`` may be a Python bool or a bool tensor (e.g. the training script's
    ``training_control`` placeholder_with_default): it selects batch statistics (training)
    or the moving statistics (inference, what the K210 runs).
    """
    net = images
    with tf.variable_scope("yolo"):
        for i, filters in enumerate(CHANNELS):
            net = _block(net, filters, is_training, "block%d" % (i + 1))
            if i < 5:
                net = tf.layers.max_pooling2d(net, 2, 2, padding="valid",
                                              name="pool%d" % (i + 1))
        # Objectness biases start at -4 (p ~ 0.02): almost every cell holds no face.
        per = 5 + num_classes
        bias = [-4.0 if c % per == 4 else 0.0 for c in range(num_anchors * per)]
        net = tf.layers.conv2d(net, num_anchors * per, 1, strides=1, padding="same",
                               use_bias=True, bias_initializer=tf.constant_initializer(bias),
                               name="final")
    # Outside the variable scope so the node is named exactly "yolo/output".
    return tf.identity(net, name=OUTPUT_NODE)


def input_placeholder(batch=1):
    """The inference graph input: float32 ``Input_image`` [batch, 224, 320, 3] in [0, 1]."""
    return tf.placeholder(tf.float32, [batch, INPUT_HEIGHT, INPUT_WIDTH, 3], name=INPUT_NODE)


def build_inference_graph():
    """Input placeholder + network with is_training=False; returns (input, output)."""
    images = input_placeholder(1)
    return images, face_yolo(images, is_training=False)
