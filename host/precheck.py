"""Checks of `host/convert.py`'s inputs that need no TensorFlow: run first, so a missing,
unreadable or wrong file, a bad calibration folder or a refused flash placement is a one-line
error within a second, before TensorFlow loads, and nothing is written.

Model files are sniffed, not parsed: a frozen graph and a meta graph must be a protocol
buffer whose top-level fields are those of a GraphDef / MetaGraphDef (a truncated or foreign
file fails this walk), a Keras model must carry the HDF5 signature, a checkpoint must have
its .index (whose table footer magic is checked) and its .data shards. TensorFlow still parses
everything afterwards; its failures are one-line errors too (host/freeze.py, tf_infer.py).
"""
import glob
import os
import re

from host import firmware, k210fit, ncc, pixels
from host.errors import UserError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
TFLITE_IDENT = b"TFL3"
# tensorflow/core/lib/io/format.h: kTableMagicNumber, the last 8 bytes of a checkpoint index
TABLE_MAGIC = (0xdb4775248b80fb57).to_bytes(8, "little")
GRAPHDEF_FIELDS = {1: 2, 2: 2, 3: 0, 4: 2}           # node, library, version, versions
METAGRAPH_FIELDS = {1: 2, 2: 2, 3: 2, 4: 2, 5: 2, 6: 2, 7: 2}


def read_head(path, option, what, n=None):
    """The file's bytes (all, or the first n); one-line errors for missing/unreadable."""
    if not os.path.exists(path):
        raise UserError("%s %s does not exist: pass the path of your %s" % (option, path, what))
    if os.path.isdir(path):
        raise UserError("%s %s is a directory, not a %s file" % (option, path, what))
    try:
        with open(path, "rb") as f:
            return f.read() if n is None else f.read(n)
    except OSError as exc:
        raise UserError("%s %s cannot be read (%s): check its permissions"
                        % (option, path, exc.strerror or exc))


def _foreign(data):
    """What a file that is not the expected kind looks like, or None."""
    if data[4:8] == TFLITE_IDENT:
        return "a TFLite flatbuffer"
    if data.startswith(HDF5_SIGNATURE):
        return "a Keras/HDF5 file (use --keras-h5)"
    if data.startswith(b"PK\x03\x04"):
        return "a zip archive"
    return None


def _varint(data, i):
    shift = value = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def proto_fields_ok(data, fields):
    """Whether `data` walks as a protocol buffer whose top-level fields are `fields`
    {number: wire type} and whose lengths end exactly at the end of the data."""
    i, n = 0, len(data)
    if not n:
        return False
    try:
        while i < n:
            key, i = _varint(data, i)
            number, wire = key >> 3, key & 7
            if fields.get(number) != wire:
                return False
            if wire == 0:
                _, i = _varint(data, i)
            elif wire == 2:
                length, i = _varint(data, i)
                i += length
            if i > n:
                return False
    except ValueError:
        return False
    return True


def check_graph_file(path, option, fields, what):
    data = read_head(path, option, what)
    if not data:
        raise UserError("%s %s is empty: re-run the step that wrote it" % (option, path))
    foreign = _foreign(data)
    if foreign:
        raise UserError("%s %s is %s, not a %s: pass the %s (or the option for that kind)"
                        % (option, path, foreign, what, what))
    if not proto_fields_ok(data, fields):
        raise UserError("%s %s is not a TensorFlow %s: the file is truncated or corrupt (copy "
                        "it again), or of another kind" % (option, path, what))


def check_keras(path):
    data = read_head(path, "--keras-h5", "Keras .h5 model", 16)
    if data[4:8] == TFLITE_IDENT:
        raise UserError("--keras-h5 %s is a TFLite flatbuffer, not a Keras .h5 model: pass the "
                        ".h5 the .tflite was made from" % path)
    if not data.startswith(HDF5_SIGNATURE):
        raise UserError("--keras-h5 %s is not a Keras .h5 (HDF5) file: the file is truncated "
                        "or corrupt, or of another kind (a SavedModel directory is not "
                        "supported)" % path)


def checkpoint_prefix(path, option="--checkpoint"):
    """A checkpoint prefix, one of its files, or a directory with a `checkpoint` file -> the
    prefix; checks the .index (table footer) and that every .data shard is there."""
    if os.path.isdir(path):
        state = os.path.join(path, "checkpoint")
        text = read_head(state, option, "checkpoint state file (`checkpoint`)").decode(
            "utf-8", "replace")
        m = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', text, re.M)
        if not m:
            raise UserError("%s %s: its `checkpoint` file names no model_checkpoint_path: "
                            "pass the checkpoint prefix itself" % (option, path))
        named = m.group(1)
        prefix = named if os.path.isabs(named) else os.path.join(path, named)
        if not os.path.exists(prefix + ".index"):
            # written on the training machine (any OS): the files now sit in this directory
            prefix = os.path.join(path, re.split(r"[\\/]", named)[-1])
    else:
        prefix = re.sub(r"\.(index|meta|data-\d+-of-\d+)$", "", path)
    index = prefix + ".index"
    if not os.path.exists(index):
        raise UserError("checkpoint %s not found (no %s): pass the prefix (e.g. model.ckpt, "
                        "with model.ckpt.index and model.ckpt.data-* beside it) or its "
                        "directory" % (path, os.path.basename(index)))
    data = read_head(index, option, "checkpoint index")
    if len(data) < 48 or data[-8:] != TABLE_MAGIC:
        raise UserError("checkpoint index %s is truncated or corrupt: copy the checkpoint "
                        "files again" % index)
    shards = glob.glob(glob.escape(prefix) + ".data-*-of-*")
    if not shards:
        raise UserError("checkpoint %s has no .data-* file beside its .index: copy all the "
                        "checkpoint files" % prefix)
    m = re.search(r"\.data-\d+-of-(\d+)$", shards[0])
    total = int(m.group(1)) if m else len(shards)
    for k in range(total):
        shard = "%s.data-%05d-of-%05d" % (prefix, k, total)
        if not os.path.isfile(shard):
            raise UserError("checkpoint %s lacks %s: copy all the checkpoint files"
                            % (prefix, os.path.basename(shard)))
        read_head(shard, option, "checkpoint data", 1)
    return prefix


def check_images(directory, option, minimum=1):
    paths = pixels.list_images(directory, option)
    if len(paths) < minimum:
        raise UserError("calibration folder has %d image(s), fewer than --min-calib %d: add "
                        "representative images (nncase calibrates uint8 ranges on them)"
                        % (len(paths), minimum))
    for p in paths:
        pixels.load_rgb(p)
    return paths


def parse_size(text):
    try:
        h, w = [int(v) for v in text.lower().split("x")]
        if h <= 0 or w <= 0:
            raise ValueError
    except (ValueError, AttributeError):
        raise UserError("--input-size %r is not HxW (e.g. 224x320)" % (text,))
    return h, w


def check(opts):
    """All TensorFlow-free checks of convert.py's options (opts from convert.options)."""
    if opts.input_size:
        parse_size(opts.input_size)
    if opts.frozen_pb:
        check_graph_file(opts.frozen_pb, "--frozen-pb", GRAPHDEF_FIELDS,
                         "frozen GraphDef (.pb)")
    if opts.meta:
        check_graph_file(opts.meta, "--meta", METAGRAPH_FIELDS, "meta graph (.meta)")
        default = opts.meta[:-len(".meta")] if opts.meta.endswith(".meta") else opts.meta
        checkpoint_prefix(opts.checkpoint or default)
    elif opts.checkpoint:
        checkpoint_prefix(opts.checkpoint)
    if opts.keras_h5:
        check_keras(opts.keras_h5)
    if opts.model_fn:
        module = opts.model_fn.rpartition(":")[0]
        if module.endswith(".py"):
            read_head(module, "--model-fn", "model code (FILE.py:FUNC)", 1)
    if opts.ncc:
        read_head(opts.ncc, "--ncc", "ncc binary", 1)
    check_images(opts.calib_dir, "calibration folder --calib-dir", opts.min_calib)
    if opts.holdout_dir:
        check_images(opts.holdout_dir, "--holdout-dir")
    problems = k210fit.flash_placement(opts.flash_address, 0)[1]
    if problems:
        raise UserError("--flash-address: " + problems[0])
    ncc.for_firmware(firmware.get_profile(opts.firmware), opts.ncc, opts.calibrate_method,
                     {"scale": opts.input_scale, "mean": opts.mean, "std": opts.std})
