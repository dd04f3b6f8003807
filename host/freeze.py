"""Freeze a TF1 model for the K210: inference mode, batch 1, all global variables.

Four sources, one result (`Frozen`): a checkpoint plus the model function rebuilt with
is_training=False; a training meta graph with its training placeholder bound to False; a
frozen .pb; a tf.keras .h5. Each source also offers, where it can, the unfrozen model as a
reference (inference mode, and training mode for information) for the BatchNorm check.
"""
import importlib
import importlib.util
import os
import sys

import numpy as np

from host import bncheck
from host.errors import UserError
from host.graph_rewrite import fold_constant_branches, strip_variable_updates
from host.tf_infer import node_name, session_config, tensor_name, tf


class Frozen(object):
    """A frozen inference graph plus what the BatchNorm check needs to judge it."""

    def __init__(self, graph_def, input_node, output_nodes, source):
        self.graph_def = graph_def
        self.input_node = input_node
        self.output_nodes = list(output_nodes)
        self.source = source
        self.channels = 3           # the input's, once set_input_shape pinned it (3 or 1)
        self.findings = []          # bncheck.Finding found while freezing
        self.bn_summary = {}
        self.notes = []             # information for the report
        self.reference = None       # batch -> outputs of the unfrozen model, inference mode
        self.training_reference = None  # batch -> outputs in training mode (batch statistics)


# ---------------------------------------------------------------- helpers

from host.precheck import parse_size  # noqa: E402,F401  (re-exported: one parser)


def resolve_checkpoint(path):
    """A checkpoint prefix, or a directory holding a `checkpoint` index file -> (prefix,
    reader). The resolution is precheck's, so both name the same files."""
    from host.precheck import checkpoint_prefix
    prefix = checkpoint_prefix(path)
    try:
        return prefix, tf.train.load_checkpoint(prefix)
    except Exception as exc:
        raise UserError("cannot read checkpoint %s (%s): the files are corrupt or "
                        "incomplete; copy them again" % (prefix, str(exc).splitlines()[0][:120]))


def load_model_fn(spec):
    """`path/to/file.py:FUNC` or `package.module:FUNC` -> the function."""
    module_ref, sep, func_name = spec.rpartition(":")
    if not sep or not module_ref or not func_name:
        raise UserError("--model-fn %r must be FILE.py:FUNC or module:FUNC" % spec)
    try:
        if module_ref.endswith(".py"):
            if not os.path.isfile(module_ref):
                raise UserError("--model-fn file %s does not exist" % module_ref)
            directory = os.path.dirname(os.path.abspath(module_ref))
            if directory not in sys.path:
                sys.path.insert(0, directory)  # so the model file can import its siblings
            name = "k210_model_fn_" + os.path.splitext(os.path.basename(module_ref))[0]
            module_spec = importlib.util.spec_from_file_location(name, module_ref)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_ref)
    except UserError:
        raise
    except Exception as exc:
        raise UserError("cannot import --model-fn %s: %s: %s"
                        % (module_ref, exc.__class__.__name__, str(exc).splitlines()[0][:160]))
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise UserError("--model-fn: %s has no function %r" % (module_ref, func_name))
    return fn


def _first_tensor(result):
    """Model functions return a tensor or (nets, endpoints)."""
    while isinstance(result, (tuple, list)):
        if not result:
            break
        result = result[0]
    if not isinstance(result, tf.Tensor):
        raise UserError("--model-fn returned %s; it must return the output tensor or "
                        "(output, endpoints)" % type(result).__name__)
    return result


def _check_nodes(graph_def, nodes, what):
    names = {n.name for n in graph_def.node}
    for node in nodes:
        if node_name(node) not in names:
            raise UserError("%s %r is not in the graph: check the name (`python "
                            "host/convert.py --list-nodes ...` lists candidates)" % (what, node))


INPUT_CHANNELS = (1, 3)   # GRAYSCALE and RGB565 images: the two pix_to_ai() layouts


def set_input_shape(graph_def, input_node, input_hw):
    """Pin the input placeholder to [1, H, W, C] (C 1 or 3, 3 when the graph leaves it open);
    refuse a graph made for another size. Returns C."""
    node = next(n for n in graph_def.node if n.name == node_name(input_node))
    if node.op not in ("Placeholder", "PlaceholderWithDefault"):
        raise UserError("--input-node %s is a %s, not a Placeholder" % (node.name, node.op))
    dims = [d.size for d in node.attr["shape"].shape.dim] if "shape" in node.attr else []
    if len(dims) == 4 and dims[1] > 0 and dims[2] > 0 and tuple(dims[1:3]) != tuple(input_hw):
        raise UserError("wrong input size: %s is %dx%d (HxW) in the graph but --input-size "
                        "says %dx%d" % (node.name, dims[1], dims[2], input_hw[0], input_hw[1]))
    if len(dims) == 4 and dims[3] not in (-1,) + INPUT_CHANNELS:
        raise UserError("input %s has shape %s: %d channels, but the K210 feeds the KPU from an "
                        "image.Image, RGB (3 channels) or GRAYSCALE (1); change the model's "
                        "input to 3 or 1 channels" % (node.name, dims, dims[3]))
    if len(dims) not in (0, 4):
        raise UserError("input %s has rank %d; expected an NHWC image [N, H, W, 3 or 1]"
                        % (node.name, len(dims)))
    channels = dims[3] if len(dims) == 4 and dims[3] > 0 else 3
    shape = tf.TensorShape([1, input_hw[0], input_hw[1], channels]).as_proto()
    node.attr["shape"].shape.CopyFrom(shape)
    return channels


def graph_input_hw(graph_def, input_node):
    node = next((n for n in graph_def.node if n.name == node_name(input_node)), None)
    if node is None or "shape" not in node.attr:
        return None
    dims = [d.size for d in node.attr["shape"].shape.dim]
    return (dims[1], dims[2]) if len(dims) == 4 and dims[1] > 0 and dims[2] > 0 else None


def _prune(graph_def, output_nodes):
    return tf.compat.v1.graph_util.extract_sub_graph(graph_def, [node_name(n) for n in output_nodes])


def _freeze_session(session, graph, output_nodes):
    return tf.compat.v1.graph_util.convert_variables_to_constants(
        session, graph.as_graph_def(), [node_name(n) for n in output_nodes])


def _feed(inputs, batch, extra_feed):
    feed = {inputs: batch}
    feed.update(extra_feed or {})  # tensor keys: no dict(**...) here
    return feed


def _sample_runner(session, inputs, outputs, extra_feed=None):
    def run(batch):
        rows = [session.run(outputs, _feed(inputs, x[None], extra_feed))
                for x in np.asarray(batch, np.float32)]
        return [np.concatenate([r[i] for r in rows]) for i in range(len(outputs))]
    return run


def _batch_runner(session, inputs, outputs, extra_feed=None):
    def run(batch):
        return session.run(outputs, _feed(inputs, np.asarray(batch, np.float32), extra_feed))
    return run


def _inference_graph_def(session, graph, output_nodes):
    """Freeze with the variable updates cut and constant tf.cond branches folded away."""
    graph_def = graph.as_graph_def()
    strip_variable_updates(graph_def)
    graph_def = _prune(tf.compat.v1.graph_util.convert_variables_to_constants(
        session, graph_def, [node_name(n) for n in output_nodes]), output_nodes)
    if any(n.op in ("Switch", "Merge") for n in graph_def.node):
        graph_def = _prune(fold_constant_branches(graph_def, output_nodes), output_nodes)
    return graph_def


def _restore_checked(graph, session, reader, checkpoint, frozen, routes, use_ema):
    """Restore all global variables, after checking that the checkpoint has those the
    outputs need (a training graph's optimizer slots may be missing) and the BatchNorm
    statistics."""
    graph_def = graph.as_graph_def()
    needed = bncheck.ancestors({n.name: n for n in graph_def.node}, frozen.output_nodes)
    with graph.as_default():
        variables = [v for v in tf.compat.v1.global_variables() if v.op.name in needed]
    names = [v.op.name for v in variables]
    findings, summary = bncheck.check_checkpoint(names, reader, checkpoint, routes)
    frozen.findings.extend(findings)
    frozen.bn_summary.update(summary)
    saved = reader.get_variable_to_shape_map()
    moving = {v for layer in bncheck.bn_layers(names).values() for v in layer.values()}
    missing = [n for n in names if n not in saved and n not in moving]
    if missing:
        raise UserError("checkpoint %s lacks %d variable(s) of the rebuilt model (%s): does "
                        "the model code/--model-kwargs build the model that was trained?"
                        % (checkpoint, len(missing), ", ".join(missing[:3])))
    for v in variables:
        if v.op.name in saved and list(saved[v.op.name]) != v.shape.as_list():
            raise UserError("variable %s has shape %s in the checkpoint but %s in the rebuilt "
                            "model: check --model-kwargs / --input-size"
                            % (v.op.name, saved[v.op.name], v.shape.as_list()))
    note = _restore_available(graph, session, saved, checkpoint, use_ema)
    if note:
        frozen.notes.append(note)


EMA_SUFFIX = "/ExponentialMovingAverage"


def _restore_available(graph, session, saved, checkpoint, use_ema):
    """Initialise, then restore every variable the checkpoint has (with `use_ema`, from its
    ExponentialMovingAverage shadow where it saved one). Statistics that were never saved
    keep their 0/1 initial values: exactly what the board would get (only reachable with
    --allow-bn-risk). Returns a note saying which weights were used when the checkpoint
    holds averages, else None."""
    with graph.as_default():
        variables = tf.compat.v1.global_variables()
        session.run(tf.compat.v1.global_variables_initializer())
        averaged = sorted(v.op.name for v in variables if v.op.name + EMA_SUFFIX in saved)
        if use_ema and not averaged:
            raise UserError("--ema: checkpoint %s holds no ExponentialMovingAverage shadow of "
                            "the model's variables (names ending %s): drop --ema"
                            % (checkpoint, EMA_SUFFIX))
        restore = {}
        for v in variables:
            if use_ema and v.op.name in averaged:
                restore[v.op.name + EMA_SUFFIX] = v  # over the shadow variable itself
            elif v.op.name in saved and v.op.name not in restore:
                restore[v.op.name] = v
        tf.compat.v1.train.Saver(restore).restore(session, checkpoint)
    if use_ema:
        return ("--ema: the ExponentialMovingAverage shadows of %d variable(s) were used "
                "(%s); every other variable (e.g. the BatchNorm moving statistics) as saved"
                % (len(averaged), _some(averaged)))
    if averaged:
        return ("checkpoint also holds ExponentialMovingAverage shadows of %d variable(s) "
                "(%s): the raw weights were used; pass --ema to use the averages"
                % (len(averaged), _some(averaged)))
    return None


def _some(names, limit=3):
    return ", ".join(names[:limit]) + (" ..." if len(names) > limit else "")


def _restored_session(graph, reader, checkpoint, use_ema):
    session = tf.compat.v1.Session(graph=graph, config=session_config())
    _restore_available(graph, session, reader.get_variable_to_shape_map(), checkpoint, use_ema)
    return session


def _update_collection(graph):
    return [getattr(item, "name", str(item))
            for item in graph.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)]


# ---------------------------------------------------------------- sources

def from_checkpoint(checkpoint, model_fn_spec, model_kwargs, input_node, output_nodes, input_hw,
                    use_ema=False, channels=3):
    prefix, reader = resolve_checkpoint(checkpoint)
    model_fn = load_model_fn(model_fn_spec)

    def build(batch, is_training):
        graph = tf.Graph()
        with graph.as_default():
            images = tf.compat.v1.placeholder(tf.float32,
                                              [batch, input_hw[0], input_hw[1], channels],
                                              name=input_node)
            try:
                result = _first_tensor(model_fn(images, is_training=is_training, **model_kwargs))
            except UserError:
                raise
            except Exception as exc:
                raise UserError("--model-fn %s failed to build the graph: %s: %s"
                                % (model_fn_spec, exc.__class__.__name__,
                                   str(exc).splitlines()[0][:160]))
            if output_nodes:
                _check_nodes(graph.as_graph_def(), output_nodes, "--output-node")
                outputs = [graph.get_tensor_by_name(tensor_name(n)) for n in output_nodes]
            else:
                outputs = [result]
        return graph, images, outputs

    graph, images, outputs = build(1, False)
    names = [t.op.name for t in outputs]
    # The training-mode graph says how training updates the statistics (for the fix).
    train_graph, train_images, train_outputs = build(None, True)
    routes = bncheck.update_routes(
        train_graph.as_graph_def(), [v.op.name for v in _global_variables(train_graph)],
        _update_collection(train_graph), [t.op.name for t in train_outputs])
    frozen = Frozen(None, images.op.name, names, "checkpoint %s + %s" % (prefix, model_fn_spec))
    session = tf.compat.v1.Session(graph=graph, config=session_config())
    _restore_checked(graph, session, reader, prefix, frozen, routes, use_ema)
    frozen.graph_def = _inference_graph_def(session, graph, names)
    frozen.reference = _sample_runner(session, images, outputs)

    train_session = _restored_session(train_graph, reader, prefix, use_ema)
    frozen.training_reference = _batch_runner(train_session, train_images, train_outputs)
    return frozen


def _global_variables(graph):
    with graph.as_default():
        return tf.compat.v1.global_variables()


def _read_meta_graph(meta_path):
    try:
        meta_graph_def = tf.compat.v1.MetaGraphDef()
        with open(meta_path, "rb") as f:
            meta_graph_def.ParseFromString(f.read())
    except Exception:
        raise UserError("%s is not a TensorFlow meta graph (.meta): check the file" % meta_path)
    return meta_graph_def


def _meta_collection(meta_graph_def, key):
    collections = meta_graph_def.collection_def  # indexing a missing key would add it
    return list(collections[key].node_list.value) if key in collections else []


def _describe_placeholder(node):
    dims = [d.size for d in node.attr["shape"].shape.dim] if "shape" in node.attr else None
    shape = "[%s]" % ",".join("?" if d < 0 else str(d) for d in dims) if dims is not None \
        else "[unknown]"
    return "%s %s %s" % (node.name, tf.as_dtype(node.attr["dtype"].type).name, shape)


def _placeholder_nodes(graph_def, kind):
    """The placeholders of `kind` "bool" (training flags) or "numeric" (not the Saver's
    string filename)."""
    wanted = {tf.bool.as_datatype_enum} if kind == "bool" else None
    other = {tf.bool.as_datatype_enum, tf.string.as_datatype_enum}
    return [n for n in graph_def.node if n.op in ("Placeholder", "PlaceholderWithDefault")
            and (n.attr["dtype"].type in wanted if wanted else n.attr["dtype"].type not in other)]


def _guess_training_placeholder(graph_def, meta_path):
    """The meta graph's one bool placeholder, or None when it has none (BatchNorm's mode is
    then fixed in the graph and the check judges it)."""
    flags = _placeholder_nodes(graph_def, "bool")
    if len(flags) > 1:
        raise UserError("cannot guess the training placeholder of %s among its bool "
                        "placeholders %s: pass --training-placeholder NAME"
                        % (meta_path, "; ".join(_describe_placeholder(n) for n in flags)))
    return flags[0].name if flags else None


def _guess_input(graph_def, meta_path):
    """The meta graph's one image placeholder: rank 4 with 3 or 1 channels, else the only
    one."""
    candidates = _placeholder_nodes(graph_def, "numeric")

    def image_like(node):
        dims = [d.size for d in node.attr["shape"].shape.dim] if "shape" in node.attr else []
        return len(dims) == 4 and dims[3] in (-1,) + INPUT_CHANNELS
    images = [n for n in candidates if image_like(n)]
    for choice in (images, candidates):
        if len(choice) == 1:
            return choice[0].name
    raise UserError("cannot guess the input placeholder of %s among %s: pass --input-node NAME "
                    "(`--list-nodes` lists the graph's placeholders and ends)"
                    % (meta_path, "; ".join(_describe_placeholder(n) for n in candidates)
                       or "none"))


def from_meta(meta_path, training_placeholder, input_node, output_nodes, input_hw,
              checkpoint=None, use_ema=False):
    if not os.path.isfile(meta_path):
        raise UserError("meta graph %s does not exist" % meta_path)
    meta_graph_def = _read_meta_graph(meta_path)
    graph_def = meta_graph_def.graph_def
    if not output_nodes:
        raise UserError("--meta needs --output-node (the training graph has many ends; "
                        "`--list-nodes` lists them)")
    default_checkpoint = meta_path[:-len(".meta")] if meta_path.endswith(".meta") else meta_path
    prefix, reader = resolve_checkpoint(checkpoint or default_checkpoint)
    guessed = ""
    if not training_placeholder:
        training_placeholder = _guess_training_placeholder(graph_def, meta_path)
        guessed = " (guessed: the graph's only bool placeholder)"
    if not input_node:
        input_node = _guess_input(graph_def, meta_path)
    _check_nodes(graph_def, [training_placeholder] if training_placeholder else [],
                 "--training-placeholder")
    _check_nodes(graph_def, [input_node], "--input-node")
    _check_nodes(graph_def, output_nodes, "--output-node")
    routes = bncheck.update_routes(
        graph_def, [n.name for n in graph_def.node if n.op in bncheck.VARIABLE_OPS],
        _meta_collection(meta_graph_def, tf.compat.v1.GraphKeys.UPDATE_OPS), output_nodes)
    # No update may run while the reference runs in training mode, nor reach the freeze.
    strip_variable_updates(graph_def)

    # One graph holds the training model with its placeholder free: it is the reference in
    # both modes. Another, with the placeholder bound to the constant False, is frozen.
    ref_graph = tf.Graph()
    with ref_graph.as_default():
        tf.compat.v1.train.import_meta_graph(meta_graph_def, clear_devices=True)
    ref_session = tf.compat.v1.Session(graph=ref_graph, config=session_config())
    frozen = Frozen(None, node_name(input_node), output_nodes, "meta graph %s + checkpoint %s"
                    % (meta_path, prefix))
    _restore_checked(ref_graph, ref_session, reader, prefix, frozen, routes, use_ema)
    ref_in = ref_graph.get_tensor_by_name(tensor_name(input_node))
    ref_out = [ref_graph.get_tensor_by_name(tensor_name(n)) for n in output_nodes]
    if training_placeholder:
        control = ref_graph.get_tensor_by_name(tensor_name(training_placeholder))
        frozen.reference = _sample_runner(ref_session, ref_in, ref_out, {control: False})
        frozen.training_reference = _batch_runner(ref_session, ref_in, ref_out, {control: True})
    else:
        frozen.reference = _sample_runner(ref_session, ref_in, ref_out)

    graph = tf.Graph()
    with graph.as_default():
        bind = {tensor_name(training_placeholder): tf.constant(False)} \
            if training_placeholder else None
        tf.compat.v1.train.import_meta_graph(meta_graph_def, clear_devices=True, input_map=bind)
    session = _restored_session(graph, reader, prefix, use_ema)
    frozen.graph_def = _inference_graph_def(session, graph, output_nodes)
    session.close()
    frozen.notes.append("training placeholder %s%s bound to False; conditional BatchNorm "
                        "branches folded away" % (training_placeholder, guessed)
                        if training_placeholder else "the meta graph has no bool training "
                        "placeholder: frozen as it is (BatchNorm in the mode it was built in)")
    return frozen


def from_frozen_pb(path, input_node, output_nodes):
    from host.tf_infer import load_graph_def
    graph_def = load_graph_def(path)
    images = [n.name for n in _placeholder_nodes(graph_def, "numeric") if n.op == "Placeholder"]
    input_node = input_node or _single(graph_def, images, "--input-node", "placeholder")
    output_nodes = output_nodes or [_single(graph_def, _graph_ends(graph_def), "--output-node",
                                            "output")]
    _check_nodes(graph_def, [input_node], "--input-node")
    _check_nodes(graph_def, output_nodes, "--output-node")
    frozen = Frozen(_prune(graph_def, output_nodes), node_name(input_node), output_nodes,
                    "frozen graph %s" % path)
    frozen.notes.append("frozen graph given: no checkpoint to compare it with")
    return frozen


def from_keras_h5(path, input_hw):
    if not os.path.isfile(path):
        raise UserError("Keras model %s does not exist" % path)
    graph = tf.Graph()
    with graph.as_default():
        session = tf.compat.v1.Session(graph=graph, config=session_config())
        tf.compat.v1.keras.backend.set_session(session)
        tf.keras.backend.set_learning_phase(0)  # before loading, so BN builds in inference mode
        try:
            model = tf.keras.models.load_model(path, compile=False)
        except Exception as exc:
            raise UserError("cannot load Keras model %s (%s: %s): is it a tf.keras .h5 file?"
                            % (path, exc.__class__.__name__, str(exc).splitlines()[0][:120]))
        input_node = model.inputs[0].op.name
        output_nodes = [t.op.name for t in model.outputs]
        variables = tf.compat.v1.global_variables()
        values = dict(zip([v.op.name for v in variables], session.run(variables)))
    frozen = Frozen(None, input_node, output_nodes, "Keras model %s" % path)
    # Keras layers are updated through their `updates` (model.fit runs them).
    routes = {layer: "layer_updates" for layer in bncheck.bn_layers(values)}
    findings, summary = bncheck.check_checkpoint(list(values), _ValuesReader(values), path,
                                                 routes)
    frozen.findings.extend(findings)
    frozen.bn_summary.update(summary)
    frozen.graph_def = _prune(_freeze_session(session, graph, output_nodes), output_nodes)
    frozen.reference = _sample_runner(session, model.inputs[0], model.outputs)
    return frozen


class _ValuesReader(object):
    """Checkpoint-reader interface over a dict of variable values (for Keras models)."""

    def __init__(self, values):
        self.values = values

    def get_variable_to_shape_map(self):
        return {k: list(np.shape(v)) for k, v in self.values.items()}

    def get_tensor(self, name):
        return self.values[name]


def _placeholders(graph_def):
    return [n.name for n in graph_def.node if n.op == "Placeholder"]


def _graph_ends(graph_def):
    consumed = {node_name(i) for n in graph_def.node for i in n.input}
    skip = ("Const", "NoOp", "Assert", "Placeholder", "PlaceholderWithDefault", "SaveV2",
            "RestoreV2")
    return [n.name for n in graph_def.node if n.name not in consumed and n.op not in skip]


def _single(graph_def, candidates, option, what):
    if len(candidates) != 1:
        raise UserError("cannot guess the %s node (candidates: %s): pass %s"
                        % (what, ", ".join(candidates[:6]) or "none", option))
    return candidates[0]


def list_nodes(graph_def):
    """Placeholders and graph ends: what --input-node/--output-node usually are."""
    return _placeholders(graph_def), _graph_ends(graph_def)
