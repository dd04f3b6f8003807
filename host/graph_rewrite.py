"""GraphDef rewrites that turn a TF1 training graph into an inference graph before it is
frozen: variable updates cut off the outputs, tf.cond branches on a constant folded away."""
from host import bncheck
from host.tf_infer import node_name, tensor_name, tf


def fold_constant_branches(graph_def, output_nodes):
    """Grappler pass that removes Switch/Merge branches whose predicate is now constant.

    constfold + loop (the one that drops dead branches) + dependency + pruning, as measured
    in background.md; the tflite converter rejects graphs that still hold them."""
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflow.python.grappler import tf_optimizer
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
        meta = tf.compat.v1.train.export_meta_graph(graph_def=graph_def, graph=graph)
    fetch = meta_graph_pb2.CollectionDef()
    fetch.node_list.value.extend([tensor_name(n) for n in output_nodes])
    meta.collection_def["train_op"].CopyFrom(fetch)  # grappler keeps what train_op needs
    config = tf.compat.v1.ConfigProto()
    rewrite = config.graph_options.rewrite_options
    rewrite.optimizers.extend(["constfold", "loop", "dependency", "pruning", "constfold"])
    rewrite.meta_optimizer_iterations = rewrite.ONE
    return _bypass_constant_switches(tf_optimizer.OptimizeGraph(config, meta))


def _bypass_constant_switches(graph_def):
    """Grappler leaves a Switch with a constant predicate in front of the live branch:
    turn it into an Identity when only the live port is consumed."""
    nodes = {n.name: n for n in graph_def.node}
    used_ports = {}
    for n in graph_def.node:
        for ref in n.input:
            name, _, port = ref.lstrip("^").partition(":")
            used_ports.setdefault(name, set()).add(int(port or 0))
    for n in graph_def.node:
        if n.op != "Switch":
            continue
        pred = nodes.get(node_name(n.input[1]))
        if pred is None or pred.op != "Const" \
                or pred.attr["dtype"].type != tf.bool.as_datatype_enum:
            continue
        live_port = 1 if tf.make_ndarray(pred.attr["value"].tensor).item() else 0
        if used_ports.get(n.name, set()) <= {live_port}:
            for consumer in graph_def.node:
                consumer.input[:] = [n.name if ref == "%s:%d" % (n.name, live_port) else ref
                                     for ref in consumer.input]
            n.op = "Identity"
            del n.input[1:]
    return graph_def


def strip_variable_updates(graph_def):
    """Cut every control edge to a variable update (BatchNorm's AssignMovingAvg, an EMA's
    apply, their groups), in place: nothing the outputs need writes a variable any more.
    In-place updates inside tf.cond branches (slim `updates_collections=None`, an EMA
    applied in the cond) would otherwise follow the outputs into the freeze, where their
    variables become constants the update ops cannot take. Returns the edges cut."""
    nodes = {n.name: n for n in graph_def.node}
    updates = {}

    def is_update(name):
        if name not in updates:
            updates[name] = False  # a cycle (while loop) is no update
            node = nodes.get(name)
            updates[name] = node is not None and (
                bncheck.is_variable_write(node) or node.op == "NoOp" and any(
                    is_update(node_name(ref)) for ref in node.input))
        return updates[name]

    cut = 0
    for n in graph_def.node:
        keep = [ref for ref in n.input if not (ref.startswith("^") and is_update(ref[1:]))]
        if len(keep) != len(n.input):
            cut += len(n.input) - len(keep)
            del n.input[:]
            n.input.extend(keep)
    return cut
