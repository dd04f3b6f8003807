"""TensorFlow 1.15 import and frozen-graph inference (TensorFlow side: never import nncase here)."""
import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)

from host.errors import UserError  # noqa: E402


def session_config():
    return tf.compat.v1.ConfigProto(intra_op_parallelism_threads=2,
                                    inter_op_parallelism_threads=2)


def tensor_name(node):
    return node if ":" in node else node + ":0"


def node_name(tensor):
    return tensor.split(":")[0].lstrip("^")


def load_graph_def(path):
    if not os.path.isfile(path):
        raise UserError("frozen graph %s does not exist: pass the .pb written by your freeze "
                        "step (or use --checkpoint/--meta)" % path)
    graph_def = tf.compat.v1.GraphDef()
    try:
        with open(path, "rb") as f:
            graph_def.ParseFromString(f.read())
    except Exception:
        raise UserError("%s is not a TensorFlow GraphDef (.pb): check the file (truncated "
                        "or a SavedModel/text proto?)" % path)
    if not graph_def.node:
        raise UserError("%s is an empty GraphDef: re-run your freeze step" % path)
    return graph_def


class FrozenRunner(object):
    """Runs a frozen GraphDef: `run(batch)` -> list of output arrays (one per output node)."""

    def __init__(self, graph_def, input_node, output_nodes):
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.import_graph_def(graph_def, name="")
        names = {n.name for n in graph_def.node}
        for node in [input_node] + list(output_nodes):
            if node_name(node) not in names:
                raise UserError("node %r is not in the graph: check --input-node/--output-node "
                                "(e.g. with `python host/convert.py --list-nodes`)" % node)
        self.input = self.graph.get_tensor_by_name(tensor_name(input_node))
        self.outputs = [self.graph.get_tensor_by_name(tensor_name(n)) for n in output_nodes]
        self.session = tf.compat.v1.Session(graph=self.graph, config=session_config())

    def run(self, batch):
        """Feed images one at a time (frozen K210 graphs have batch 1)."""
        results = [self.session.run(self.outputs, {self.input: sample[None]})
                   for sample in np.asarray(batch, dtype=np.float32)]
        return [np.concatenate([r[i] for r in results]) for i in range(len(self.outputs))]

    def close(self):
        self.session.close()
