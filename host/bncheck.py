"""The BatchNorm check: refuse models that will not compute on the K210 what training showed.

The KPU runs batch 1 with BatchNorm folded into the convolution using the *moving*
statistics. Those are only right if training ran the update ops (UPDATE_OPS control
dependency) and saved them (Saver(tf.global_variables())), and only used if the frozen
graph is in inference mode. Each finding names the layers, the cause and the fix.
"""
import numpy as np

from host.errors import UserError

MOVING_SUFFIXES = ("moving_mean", "moving_variance")

FIX_UPDATE_OPS = ("fix: in training wrap the train op in `with tf.control_dependencies("
                  "tf.get_collection(tf.GraphKeys.UPDATE_OPS)):` and retrain")
FIX_SAVER = ("fix: save with `tf.train.Saver(tf.global_variables())` (the moving statistics "
             "are not trainable variables) and re-save or retrain")
FIX_FREEZE = ("fix: freeze from the checkpoint with is_training=False (`--checkpoint "
              "--model-fn`) or bind the training placeholder (`--meta --training-placeholder`)")


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
    """Map BN layer name -> {suffix: variable name} for variables ending in moving stats."""
    layers = {}
    for name in variable_names:
        base = name.split(":")[0]
        for suffix in MOVING_SUFFIXES:
            if base.endswith("/" + suffix):
                layers.setdefault(base[:-len(suffix) - 1], {})[suffix] = base
    return layers


def check_checkpoint(graph_variable_names, reader, checkpoint):
    """Compare the graph's BN moving statistics with what the checkpoint holds.

    `reader` is a tf.train.load_checkpoint reader. Returns (findings, summary dict)."""
    saved = reader.get_variable_to_shape_map()
    layers = bn_layers(graph_variable_names)
    findings = []
    missing = sorted(layer for layer, vs in layers.items()
                     if any(v not in saved for v in vs.values()))
    if missing:
        findings.append(Finding("moving_stats_not_saved", missing,
                                "checkpoint %s lacks the BatchNorm moving statistics of %d "
                                "layer(s) (%s): it was saved with trainable variables only; %s"
                                % (checkpoint, len(missing), _layer_list(missing), FIX_SAVER)))
    untouched = []
    for layer, vs in sorted(layers.items()):
        if layer in missing or set(vs) != set(MOVING_SUFFIXES):
            continue
        mean = reader.get_tensor(vs["moving_mean"])
        var = reader.get_tensor(vs["moving_variance"])
        if np.all(mean == 0) and np.all(var == 1):
            untouched.append(layer)
    if untouched:
        findings.append(Finding("moving_stats_never_updated", untouched,
                                "BatchNorm moving_mean/moving_variance of %d layer(s) (%s) are "
                                "still at their initial 0/1: the update ops never ran during "
                                "training; %s" % (len(untouched), _layer_list(untouched),
                                                  FIX_UPDATE_OPS)))
    summary = {"bn_layers": len(layers), "moving_stats_missing": len(missing),
               "moving_stats_untouched": len(untouched)}
    return findings, summary


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
    if switches and not training_defaults:
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
