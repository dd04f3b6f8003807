"""The BatchNorm check: refuse models that will not compute on the K210 what training showed.

The KPU runs batch 1 with BatchNorm folded into the convolution using the *moving*
statistics. Those are only right if training ran the ops that update them and saved them
(Saver(tf.global_variables())), and only used if the frozen graph is in inference mode. Each
finding names the layers, the cause and the fix for the API the layers were built with:
which op updates the statistics, and how it is reached, is read from the training graph
(`update_routes`).
"""
import re

import numpy as np

from host.errors import UserError

MOVING_SUFFIXES = ("moving_mean", "moving_variance")
# tf.nn.batch_normalization with tf.train.ExponentialMovingAverage: the shadows of the
# tf.nn.moments outputs (mean = .../moments/Squeeze, variance = .../moments/Squeeze_1).
EMA_SHADOW = re.compile(r"^(.+)/moments/Squeeze(_1)?/ExponentialMovingAverage$")
# Ops that write a variable: BatchNorm's AssignMovingAvg, an EMA's apply, optimizers.
WRITE_OP_PREFIXES = ("Assign", "Scatter", "ResourceScatter", "Apply", "ResourceApply")
VARIABLE_OPS = ("VariableV2", "Variable", "VarHandleOp")
PASS_THROUGH_OPS = ("Switch", "RefSwitch", "Identity", "RefIdentity", "Enter", "RefEnter")

FIX_UPDATE_OPS = ("fix: in training wrap the train op in `with tf.control_dependencies("
                  "tf.get_collection(tf.GraphKeys.UPDATE_OPS)):` and retrain")
FIX_SAVER = ("fix: save with `tf.train.Saver(tf.global_variables())` (the moving statistics "
             "are not trainable variables) and re-save or retrain")
FIX_FREEZE = ("fix: freeze from the checkpoint with is_training=False (`--checkpoint "
              "--model-fn`) or bind the training placeholder (`--meta --training-placeholder`)")
# How a layer's statistics are updated in the training graph -> the fix when they never were.
FIX_NEVER_UPDATED = {
    "update_ops": FIX_UPDATE_OPS,
    "layer_updates": "fix: tf.keras layers called in a TF1 graph do not put their updates in "
                     "UPDATE_OPS: wrap the train op in `with tf.control_dependencies("
                     "model.updates):` (or each BatchNormalization layer's `.updates`) and "
                     "retrain",
    "ema": "fix: run the ExponentialMovingAverage's apply op at every training step (`with "
           "tf.control_dependencies([ema.apply([mean, variance])]):` around the train op) and "
           "retrain",
    "in_place": "fix: these layers update their statistics in place whenever they run in "
                "training mode (slim `updates_collections=None`, an EMA applied inside the "
                "tf.cond): feed is_training=True in the training steps and retrain",
}


class Finding(object):
    """One BatchNorm problem: `refuse` ones stop the build unless --allow-bn-risk."""

    def __init__(self, kind, layers, message):
        self.kind, self.layers, self.message = kind, list(layers), message

    def as_dict(self):
        return {"kind": self.kind, "layers": self.layers, "message": self.message}


def _layer_list(layers, limit=4):
    layers = sorted(layers)
    text = ", ".join(layers[:limit])
    return text + (" and %d more" % (len(layers) - limit) if len(layers) > limit else "")


def bn_layers(variable_names):
    """Map BN layer name -> {suffix: variable name}: the moving statistics of tf.layers,
    slim and Keras BatchNorm, and the EMA shadows of a tf.nn.moments BatchNorm."""
    layers = {}
    for name in variable_names:
        base = name.split(":")[0]
        for suffix in MOVING_SUFFIXES:
            if base.endswith("/" + suffix):
                layers.setdefault(base[:-len(suffix) - 1], {})[suffix] = base
        shadow = EMA_SHADOW.match(base)
        if shadow:
            suffix = "moving_variance" if shadow.group(2) else "moving_mean"
            layers.setdefault(shadow.group(1), {})[suffix] = base
    return layers


def _at_initial_values(stats, reader):
    """Moving statistics start at 0/1; EMA shadows of the moments at 0/0."""
    mean = reader.get_tensor(stats["moving_mean"])
    var = reader.get_tensor(stats["moving_variance"])
    ema = EMA_SHADOW.match(stats["moving_variance"]) is not None
    return bool(np.all(mean == 0) and np.all(var == (0 if ema else 1)))


def check_checkpoint(graph_variable_names, reader, checkpoint, routes=None):
    """Compare the graph's BN moving statistics with what the checkpoint holds.

    `reader` is a tf.train.load_checkpoint reader; `routes` ({layer: route}, from
    update_routes on the training graph) picks the fix. Returns (findings, summary dict)."""
    saved = reader.get_variable_to_shape_map()
    layers = bn_layers(graph_variable_names)
    routes = routes or {}
    findings = []
    missing = sorted(layer for layer, vs in layers.items()
                     if any(v not in saved for v in vs.values()))
    if missing:
        findings.append(Finding("moving_stats_not_saved", missing,
                                "checkpoint %s lacks the BatchNorm moving statistics of %d "
                                "layer(s) (%s): it was saved with trainable variables only; %s"
                                % (checkpoint, len(missing), _layer_list(missing), FIX_SAVER)))
    untouched = [layer for layer, vs in sorted(layers.items())
                 if layer not in missing and set(vs) == set(MOVING_SUFFIXES)
                 and _at_initial_values(vs, reader)]
    by_fix = {}
    for layer in untouched:
        by_fix.setdefault(FIX_NEVER_UPDATED[routes.get(layer, "update_ops")], []).append(layer)
    for fix, group in sorted(by_fix.items()):
        ema = all(EMA_SHADOW.match(layers[l]["moving_mean"]) for l in group)
        what = ("ExponentialMovingAverage shadows of the batch mean/variance" if ema
                else "BatchNorm moving_mean/moving_variance")
        initial = "0" if ema else "0/1"
        findings.append(Finding("moving_stats_never_updated", group,
                                "%s of %d layer(s) (%s) are still at their initial %s: the "
                                "update ops never ran during training; %s"
                                % (what, len(group), _layer_list(group), initial, fix)))
    summary = {"bn_layers": len(layers), "moving_stats_missing": len(missing),
               "moving_stats_untouched": len(untouched)}
    return findings, summary


def _node_name(ref):
    return ref.lstrip("^").split(":")[0]


def is_variable_write(node):
    return node.op.startswith(WRITE_OP_PREFIXES)


def ancestors(nodes, starts):
    """Every node `starts` depend on, through data and control inputs."""
    seen, todo = set(), [_node_name(s) for s in starts]
    while todo:
        name = todo.pop()
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        todo.extend(_node_name(i) for i in nodes[name].input)
    return seen


def _written_variable(nodes, ref):
    """The variable a write op's first input reaches through switches and identities."""
    node = nodes.get(_node_name(ref))
    while node is not None and node.op in PASS_THROUGH_OPS and node.input:
        node = nodes.get(_node_name(node.input[0]))
    return node.name if node is not None and node.op in VARIABLE_OPS else None


def update_routes(graph_def, variable_names, update_collection, output_nodes):
    """How the training graph updates each BN layer's statistics: {layer: route}, route one
    of FIX_NEVER_UPDATED's keys. "update_ops": the writes are in (or under) the UPDATE_OPS
    collection (tf.layers, slim); "in_place": the outputs depend on them (slim
    `updates_collections=None`, an EMA applied inside the tf.cond); "ema": an
    ExponentialMovingAverage's apply op the train op must run; "layer_updates": a Keras
    layer's `updates`, outside UPDATE_OPS. Layers whose graph holds no write are left out."""
    nodes = {n.name: n for n in graph_def.node}
    written = {}
    for n in graph_def.node:
        if is_variable_write(n) and n.input:
            written.setdefault(_written_variable(nodes, n.input[0]), []).append(n.name)
    under_collection = ancestors(nodes, update_collection)
    under_outputs = ancestors(nodes, output_nodes)
    routes = {}
    for layer, stats in bn_layers(variable_names).items():
        writes = [w for v in stats.values() for w in written.get(v, [])]
        if not writes:
            continue
        if any(w in under_collection for w in writes):
            routes[layer] = "update_ops"
        elif any(w in under_outputs for w in writes):
            routes[layer] = "in_place"
        elif EMA_SHADOW.match(stats.get("moving_mean", "")):
            routes[layer] = "ema"
        else:
            routes[layer] = "layer_updates"
    return routes


def _const_bool(node):
    """A bool Const's value (stored in bool_val or tensor_content)."""
    from tensorflow import make_ndarray
    value = make_ndarray(node.attr["value"].tensor)
    return bool(value.item()) if value.size == 1 else None


def check_graph_def(graph_def):
    """Inference-mode check of a frozen GraphDef. Returns (findings, summary dict)."""
    nodes = {n.name: n for n in graph_def.node}
    findings = []
    # The root cause first: a training placeholder explains the batch-statistics branch.
    training_defaults = []
    for n in graph_def.node:
        if n.op == "PlaceholderWithDefault" and n.attr["dtype"].type == 10:  # DT_BOOL
            default = nodes.get(n.input[0].lstrip("^").split(":")[0])
            if default is not None and default.op == "Const" and _const_bool(default):
                training_defaults.append(n.name)
    if training_defaults:
        findings.append(Finding("training_placeholder_true", training_defaults,
                                "frozen graph still contains the training placeholder %s "
                                "defaulting to True: the converted model runs BatchNorm in "
                                "training mode; %s" % (_layer_list(training_defaults), FIX_FREEZE)))
    unbound = [n.name for n in graph_def.node
               if n.op == "Placeholder" and n.attr["dtype"].type == 10]  # DT_BOOL
    if unbound:
        findings.append(Finding("training_placeholder_unbound", unbound,
                                "frozen graph still contains the bool placeholder %s (a "
                                "training flag): the board cannot feed it and the graph keeps "
                                "BatchNorm's training branch; %s"
                                % (_layer_list(unbound), FIX_FREEZE)))
    fused = [n for n in graph_def.node if n.op.startswith("FusedBatchNorm")]
    # is_training defaults to true when the attr is absent from the NodeDef.
    batch_stats = [n.name for n in fused
                   if "is_training" not in n.attr or n.attr["is_training"].b]
    if batch_stats:
        findings.append(Finding("batch_statistics", batch_stats,
                                "frozen graph computes BatchNorm from batch statistics "
                                "(FusedBatchNorm is_training=true) in %d layer(s) (%s): it was "
                                "frozen in training mode and the K210 will not compute what "
                                "validation showed; %s" % (len(batch_stats),
                                                           _layer_list(batch_stats), FIX_FREEZE)))
    moments = sorted({n.name.split("/moments/")[0] for n in graph_def.node
                      if "/moments/" in n.name and n.op in ("Mean", "SquaredDifference")})
    if moments:
        findings.append(Finding("moments_batch_norm", moments,
                                "frozen graph computes BatchNorm from tf.nn.moments (batch "
                                "statistics) in %d layer(s) (%s); %s"
                                % (len(moments), _layer_list(moments), FIX_FREEZE)))
    switches = [n.name for n in graph_def.node if n.op in ("Switch", "Merge")]
    if switches and not training_defaults and not unbound:
        findings.append(Finding("conditional_branches", switches,
                                "frozen graph still contains %d Switch/Merge conditional node(s) "
                                "(%s), typically BatchNorm's training/inference branches: the "
                                "tflite converter rejects them; %s"
                                % (len(switches), _layer_list(switches), FIX_FREEZE)))
    summary = {"fused_batch_norm_inference": len(fused) - len(batch_stats),
               "fused_batch_norm_training": len(batch_stats), "moments_layers": len(moments)}
    return findings, summary


def check_reproduction(frozen_outputs, reference_outputs, tolerance=1e-5):
    """The frozen graph must reproduce the checkpoint in inference mode."""
    max_abs = max(float(np.max(np.abs(np.asarray(f) - np.asarray(r))))
                  for f, r in zip(frozen_outputs, reference_outputs))
    findings = []
    if max_abs > tolerance:
        findings.append(Finding("frozen_differs", [],
                                "frozen graph does not reproduce the checkpoint in inference "
                                "mode on the calibration images (max abs diff %.3g > %g): the "
                                "freeze used other weights or another mode; %s"
                                % (max_abs, tolerance, FIX_FREEZE)))
    return findings, {"frozen_vs_checkpoint_max_abs": max_abs, "tolerance": tolerance}


def enforce(findings, allow_risk, warn):
    """Raise on the first finding unless the expert passed --allow-bn-risk (then warn)."""
    for finding in findings:
        if not allow_risk:
            raise UserError("BatchNorm check failed: %s (or pass --allow-bn-risk to proceed "
                            "at your own risk)" % finding.message)
        warn("BatchNorm risk accepted (--allow-bn-risk): " + finding.message)
