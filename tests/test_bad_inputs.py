"""The bad-input catalogue: every way a user can hand the three tools (and the Makefile's
variables) something wrong, and what must happen - exit code 2 (or the documented code), one
`error: ...` line on stderr naming the culprit and what to do, no traceback, nothing
half-written in the output directory.

Cheap by design: most cases fail before TensorFlow loads (host/precheck.py); one tiny real
build (conftest.tiny_build) serves every case that needs a manifest; the few that need
TensorFlow, or a virtual board, say so in their name."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import serial
from PIL import Image

import tiny_model
from conftest import REPO, SEED_PB, assert_nothing_written, assert_one_line_error, run_tool, tool_env
from host import manifest as manifest_mod, transport
from host.vboard.launcher import start_board

SEED_ARGS = ["--frozen-pb", SEED_PB, "--input-node", "Input_image", "--output-node",
             "Yolo/Final/conv2d/BiasAdd", "--input-size", "240x320", "--decoder", "grid",
             "--threshold", "0.7"]
CHECKPOINT = os.path.join(REPO, "examples", "face", "checkpoint")
MODEL_FN = os.path.join(REPO, "examples", "face", "model.py") + ":face_yolo"

pytestmark = pytest.mark.timeout(300)


# ------------------------------------------------------------------ helpers
def unprivileged():
    """Command prefix under which file permissions apply (root ignores them otherwise)."""
    if os.geteuid() != 0:
        return []
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", "--bounding-set=" + caps, "--inh-caps=" + caps]


def run_as_user(script, *args, timeout=120):
    cmd = unprivileged() + [sys.executable, os.path.join(REPO, script)] + [str(a) for a in args]
    return subprocess.run(cmd, cwd=REPO, env=tool_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)


def make(*args, timeout=120):
    """`make` as a user runs it (the venv stamp taken as up to date)."""
    return subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed"] +
                          list(args), cwd=REPO, env=tool_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)


def _images(directory, n, size=(320, 240)):
    os.makedirs(str(directory), exist_ok=True)
    for i in range(n):
        Image.new("RGB", size, (10 * i % 255, 80, 160)).save(str(directory / ("%02d.png" % i)))
    return directory


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    return _images(tmp_path_factory.mktemp("calib"), 16)


@pytest.fixture
def build(tiny_build, tmp_path):
    """A private copy of the tiny build (cases may break it)."""
    d = tmp_path / "build"
    shutil.copytree(tiny_build.directory, str(d))
    return d


def _manifest(d):
    return str(d / "manifest.json")


def _rewrite(d, **changes):
    with open(_manifest(d)) as f:
        data = json.load(f)
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data[section][field] = value
        else:
            data[section] = value
    with open(_manifest(d), "w") as f:
        json.dump(data, f)


@pytest.fixture
def pty_port():
    """A serial port nobody answers on (a pseudo-terminal)."""
    master, slave = os.openpty()
    yield os.ttyname(slave)
    os.close(master)
    os.close(slave)


def _files(d):
    return sorted(os.listdir(str(d)))


# ------------------------------------------------------------------ convert.py
def _convert(tmp_path, *args):
    out = tmp_path / "out"
    proc = run_tool("host/convert.py", *(list(args) + ["--out", out]), timeout=600)
    return proc, out


def _garbage(path, data=b"\x00\x01garbage" * 10):
    path.write_bytes(data)
    return path


CONVERT_FILE_CASES = {
    # id: (make the source args from tmp_path, error fragments)
    "pb-missing": (lambda t: ["--frozen-pb", t / "nope.pb"], ["--frozen-pb", "nope.pb",
                                                                "does not exist"]),
    "pb-corrupt": (lambda t: ["--frozen-pb", _garbage(t / "bad.pb")],
                   ["bad.pb", "not a TensorFlow frozen GraphDef", "corrupt"]),
    "pb-truncated": (lambda t: ["--frozen-pb", _garbage(
        t / "cut.pb", open(SEED_PB, "rb").read()[:5000])], ["cut.pb", "truncated"]),
    "pb-empty": (lambda t: ["--frozen-pb", _garbage(t / "empty.pb", b"")],
                 ["empty.pb", "is empty"]),
    "pb-is-a-tflite": (lambda t: ["--frozen-pb", _garbage(
        t / "m.tflite", b"\x1c\x00\x00\x00TFL3" + bytes(64))], ["m.tflite", "TFLite flatbuffer"]),
    "h5-missing": (lambda t: ["--keras-h5", t / "nope.h5"], ["--keras-h5", "nope.h5",
                                                             "does not exist"]),
    "h5-corrupt": (lambda t: ["--keras-h5", _garbage(t / "bad.h5")],
                   ["bad.h5", "not a Keras .h5"]),
    "h5-is-a-tflite": (lambda t: ["--keras-h5", _garbage(
        t / "m.tflite", b"\x1c\x00\x00\x00TFL3" + bytes(64))],
        ["m.tflite", "TFLite flatbuffer", ".h5 the .tflite was made from"]),
    "meta-missing": (lambda t: ["--meta", t / "nope.meta", "--training-placeholder", "t",
                                "--output-node", "o"], ["--meta", "nope.meta", "does not exist"]),
    "meta-corrupt": (lambda t: ["--meta", _garbage(t / "bad.meta"), "--training-placeholder",
                                "t", "--output-node", "o"],
                     ["bad.meta", "not a TensorFlow meta graph"]),
    "checkpoint-missing": (lambda t: ["--checkpoint", t / "model.ckpt", "--model-fn", MODEL_FN],
                           ["checkpoint", "model.ckpt", "not found"]),
    "checkpoint-index-corrupt": (lambda t: _broken_checkpoint(t, "index"),
                                 ["model.ckpt.index", "truncated or corrupt"]),
    "checkpoint-data-missing": (lambda t: _broken_checkpoint(t, "data"),
                                ["model.ckpt", "no .data-*"]),
    "model-fn-missing": (lambda t: ["--checkpoint", CHECKPOINT, "--model-fn",
                                    str(t / "net.py") + ":build"], ["--model-fn", "net.py",
                                                                    "does not exist"]),
}


def _broken_checkpoint(tmp_path, what):
    d = tmp_path / "ckpt"
    shutil.copytree(CHECKPOINT, str(d))
    if what == "index":
        with open(str(d / "model.ckpt.index"), "r+b") as f:
            f.truncate(200)
    else:
        os.remove(str(d / "model.ckpt.data-00000-of-00001"))
    return ["--checkpoint", d / "model.ckpt", "--model-fn", MODEL_FN]


@pytest.mark.parametrize("case", sorted(CONVERT_FILE_CASES))
def test_convert_model_files(tmp_path, calib, case):
    make_args, fragments = CONVERT_FILE_CASES[case]
    proc, out = _convert(tmp_path, *(make_args(tmp_path) + ["--input-size", "240x320",
                                                           "--calib-dir", calib]))
    assert_one_line_error(proc, *fragments)
    assert_nothing_written(out)


@pytest.mark.parametrize("which", ["pb", "checkpoint-index"])
def test_convert_unreadable_file(tmp_path, calib, which):
    if which == "pb":
        path = tmp_path / "model.pb"
        shutil.copy(SEED_PB, str(path))
        args = ["--frozen-pb", path]
    else:
        d = tmp_path / "ckpt"
        shutil.copytree(CHECKPOINT, str(d))
        path = d / "model.ckpt.index"
        args = ["--checkpoint", d / "model.ckpt", "--model-fn", MODEL_FN]
    os.chmod(str(path), 0)
    out = tmp_path / "out"
    proc = run_as_user("host/convert.py", *(args + ["--input-size", "240x320", "--calib-dir",
                                                   calib, "--out", out]))
    assert_one_line_error(proc, path.name, "cannot be read", "permissions")
    assert_nothing_written(out)


@pytest.mark.parametrize("case", ["missing", "empty", "unreadable", "too_few", "not_images"])
def test_convert_bad_calibration_dir(tmp_path, case):
    calib = tmp_path / "calib"
    expected = {"missing": "does not exist", "empty": "no .jpg", "unreadable": "broken.jpg",
                "too_few": "fewer than --min-calib 16", "not_images": "no .jpg"}[case]
    if case == "empty":
        calib.mkdir()
    elif case == "unreadable":
        _images(calib, 16)
        (calib / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    elif case == "too_few":
        _images(calib, 5)
    elif case == "not_images":
        calib.mkdir()
        (calib / "notes.txt").write_text("hello")
    proc, out = _convert(tmp_path, *(SEED_ARGS + ["--calib-dir", calib]))
    assert_one_line_error(proc, expected)
    assert_nothing_written(out)


@pytest.mark.parametrize("args, expected", [
    (["--input-size", "224by320"], "is not HxW"),
    (["--ema"], "--ema needs --checkpoint (with --model-fn) or --meta"),
    (["--threshold", "1.5"], "--threshold 1.5 is out of range"),
    (["--nms", "-0.1"], "--nms -0.1 is out of range"),
    (["--flash-address", "0x300100"], "not 4 KiB aligned"),
    (["--flash-address", "0x100000"], "below 0x"),
    (["--flash-address", "0xD00000"], "0xD00000 is inside the /flash file system"),
    (["--firmware", "maixpy-v4", "--ncc", "/nonexistent/ncc"],
     "--ncc /nonexistent/ncc does not exist"),
    (["--ncc-layer-error"], "--ncc-layer-error measures kmodels built with ncc"),
    (["--decoder", "ssd"], "argument --decoder: invalid choice: 'ssd'"),
    (["--min-calib", "many"], "argument --min-calib: invalid int value"),
])
def test_convert_bad_options(tmp_path, calib, args, expected):
    proc, out = _convert(tmp_path, *(SEED_ARGS + args + ["--calib-dir", calib]))
    assert_one_line_error(proc, expected)
    assert_nothing_written(out)


def test_convert_no_source_config_missing_or_not_json(tmp_path):
    proc, out = _convert(tmp_path, "--input-size", "16x16")
    assert_one_line_error(proc, "give exactly one source")
    proc, out = _convert(tmp_path, "--config", tmp_path / "nope.json")
    assert_one_line_error(proc, "--config", "nope.json", "cannot be read")
    (tmp_path / "c.json").write_text("{not json")
    proc, out = _convert(tmp_path, "--config", tmp_path / "c.json")
    assert_one_line_error(proc, "c.json", "cannot be read as JSON")
    assert_nothing_written(out)


@pytest.mark.parametrize("args, expected", [
    (["--output-node", "Yolo/Nope"], "'Yolo/Nope' is not in the graph"),
    (["--input-node", "Input_imag"], "'Input_imag' is not in the graph"),
    (["--input-size", "224x320"], "wrong input size"),
])
def test_convert_wrong_nodes_or_size_needs_tensorflow(tmp_path, calib, args, expected):
    proc, out = _convert(tmp_path, *(SEED_ARGS + args + ["--calib-dir", calib]))
    assert_one_line_error(proc, expected)
    assert_nothing_written(out)


_UNSUPPORTED = """
import sys
import tensorflow as tf
with tf.Graph().as_default() as g:
    x = tf.compat.v1.placeholder(tf.float32, [1, 16, 16, 3], name="Input_image")
    y = tf.linalg.svd(tf.reshape(x, [16, 48]), compute_uv=False)
    tf.identity(tf.reshape(y, [1, 16]), name="out")
    open(sys.argv[1], "wb").write(g.as_graph_def().SerializeToString())
"""


def test_convert_unsupported_op_needs_tensorflow(tmp_path):
    pb = tmp_path / "svd.pb"
    subprocess.run([sys.executable, "-c", _UNSUPPORTED, str(pb)], env=tool_env(), check=True,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    calib = tiny_model.images(tmp_path / "calib", 16, seed=1)
    proc, out = _convert(tmp_path, "--frozen-pb", pb, "--input-size", "16x16",
                         "--output-node", "out", "--calib-dir", calib)
    line = assert_one_line_error(proc, "Svd")
    assert "not supported" in line or "Unsupported" in line or "rejected" in line, line
    assert_nothing_written(out)


_AMBIGUOUS_META = """
import sys
import tensorflow as tf
with tf.Graph().as_default():
    left = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 3], name="left")
    right = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 3], name="right")
    flags = [tf.compat.v1.placeholder(tf.bool, [], name=n) for n in ("is_training", "use_dropout")]
    w = tf.compat.v1.get_variable("w", [3], initializer=tf.ones_initializer())
    tf.identity(tf.where(flags[0], left, right) * w, name="out")
    with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        tf.compat.v1.train.Saver().save(sess, sys.argv[1])
"""


@pytest.mark.parametrize("args, fragments", [
    ([], ["bool placeholders", "is_training bool []", "use_dropout bool []",
          "--training-placeholder NAME"]),
    (["--training-placeholder", "is_training"], ["input placeholder", "left float32 [?,8,8,3]",
                                                 "right float32 [?,8,8,3]", "--input-node NAME",
                                                 "--list-nodes"]),
])
def test_convert_meta_placeholders_that_cannot_be_guessed(tmp_path, args, fragments):
    """Issue 16: --meta without --input-node used to end in an AttributeError traceback."""
    prefix = tmp_path / "model.ckpt"
    subprocess.run([sys.executable, "-c", _AMBIGUOUS_META, str(prefix)], env=tool_env(),
                   check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    calib = tiny_model.images(tmp_path / "calib", 16, seed=1)
    proc, out = _convert(tmp_path, "--meta", str(prefix) + ".meta", "--output-node", "out",
                         "--input-size", "8x8", "--calib-dir", calib, *args)
    assert_one_line_error(proc, *fragments)
    assert_nothing_written(out)


_CRASHING_MODEL = """
import tensorflow as tf


def _fails(x):
    raise RuntimeError("the model's own py_func failed")


def net(images, is_training=False):
    w = tf.compat.v1.get_variable("w", [3], initializer=tf.ones_initializer())
    y = tf.compat.v1.py_func(_fails, [images * w], tf.float32)
    return tf.identity(tf.reshape(y, [-1, 8, 8, 3]), name="output")


if __name__ == "__main__":
    import sys
    with tf.Graph().as_default():
        net(tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 3]))
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().save(sess, sys.argv[1])
"""


def test_convert_unexpected_exception_is_one_line_and_a_log(tmp_path):
    """Nothing foreseen this failure: still one `error:` line (exit 2), the traceback in a
    log file in --out, named in the line."""
    model = tmp_path / "crashing.py"
    model.write_text(_CRASHING_MODEL)
    prefix = tmp_path / "model.ckpt"
    subprocess.run([sys.executable, str(model), str(prefix)], env=tool_env(), check=True,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    calib = tiny_model.images(tmp_path / "calib", 16, seed=1)
    proc, out = _convert(tmp_path, "--checkpoint", prefix, "--model-fn", str(model) + ":net",
                         "--input-size", "8x8", "--calib-dir", calib)
    log = out / "convert-error.log"
    assert_one_line_error(proc, "unexpected", "py_func failed", str(log))
    assert "Traceback" in log.read_text() and "RuntimeError" in log.read_text()
    assert _files(out) == ["convert-error.log"]  # and no half-written build


_CRASHING_MAIN = """
import sys
from host import cli


def main(argv):
    raise KeyError("unforeseen")


cli.run(main, crash_dir=lambda argv: cli.option_value(argv, "--out", "build"),
        crash_log="tool-error.log")
"""


def test_unexpected_exception_log_falls_back_to_the_temp_directory(tmp_path):
    """The three scripts share host/cli.run: an output directory that cannot be made (here a
    file) sends the log to the temp directory, still named in the one line."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    env = dict(tool_env(), TMPDIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", _CRASHING_MAIN, "--out", str(blocker / "x")],
                          env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60)
    log = tmp_path / "tool-error.log"
    assert_one_line_error(proc, "unexpected KeyError", str(log))
    assert "KeyError: 'unforeseen'" in log.read_text()


# ------------------------------------------------------------------ manifests (flash + eval)
def _flash(d, *args, timeout=120):
    return run_tool("host/flash.py", "--manifest", _manifest(d), "--no-progress", *args,
                    timeout=timeout)


def _eval(d, images, out, *args, timeout=300):
    return run_tool("host/serial_eval.py", "--manifest", _manifest(d), "--images", images,
                    "--out", out, "--no-progress", *args, timeout=timeout)


@pytest.fixture
def eval_images(tmp_path):
    return tiny_model.images(tmp_path / "images", 3, seed=2)


def _break(d, case):
    if case == "missing":
        os.remove(_manifest(d))
        return ["manifest", "not found", "make kmodel"]
    if case == "corrupt":
        with open(_manifest(d), "w") as f:
            f.write('{"schema": 1, "kmodel": ')
        return ["manifest", "not valid JSON", "make kmodel"]
    if case == "not-ours":
        with open(_manifest(d), "w") as f:
            json.dump({"hello": 1}, f)
        return ["not a k210-deploy manifest", "make kmodel"]
    if case == "kmodel-changed":
        with open(str(d / "model.kmodel"), "r+b") as f:
            f.seek(600)
            f.write(b"\x55\xaa\x55")
        return ["model.kmodel", "changed since `make kmodel`"]
    if case == "kmodel-truncated":
        with open(str(d / "model.kmodel"), "r+b") as f:
            f.truncate(700)
        return ["model.kmodel", "truncated or corrupt", "make kmodel"]
    if case == "kmodel-missing":
        os.remove(str(d / "model.kmodel"))
        return ["model.kmodel", "is missing", "make kmodel"]
    if case == "kmodel-not-a-kmodel":
        # a manifest rewritten around a file that is no kmodel (sha256 and all)
        (d / "model.kmodel").write_bytes(b"PK\x03\x04 not a model" * 20)
        _rewrite(d, kmodel__sha256=manifest_mod.sha256_file(str(d / "model.kmodel")))
        return ["model.kmodel", "not a valid kmodel"]
    raise AssertionError(case)


MANIFEST_CASES = ["missing", "corrupt", "not-ours", "kmodel-changed", "kmodel-truncated",
                  "kmodel-missing", "kmodel-not-a-kmodel"]


@pytest.mark.parametrize("case", MANIFEST_CASES)
def test_flash_bad_manifest(build, tmp_path, case):
    fragments = _break(build, case)
    before = _files(build)
    proc = _flash(build, "--port", "virtual", "--vboard-state", tmp_path / "vb")
    assert_one_line_error(proc, *fragments)
    assert _files(build) == before, "no flash_report.json"
    assert not os.path.exists(str(tmp_path / "vb")), "refused before any board was started"


@pytest.mark.parametrize("case", MANIFEST_CASES + ["frozen-pb-changed"])
def test_eval_bad_manifest(build, eval_images, tmp_path, case):
    if case == "frozen-pb-changed":
        with open(str(build / "model.pb"), "ab") as f:
            f.write(b"\x00")
        fragments = ["model.pb", "changed since", "make kmodel"]
    else:
        fragments = _break(build, case)
    proc = _eval(build, eval_images, tmp_path / "eval", "--vboard-state", tmp_path / "vb")
    assert_one_line_error(proc, *fragments)
    assert_nothing_written(tmp_path / "eval")
    assert not os.path.exists(str(tmp_path / "vb")), "refused before any board was started"


# ------------------------------------------------------------------ flash.py options
@pytest.mark.parametrize("args, fragments", [
    (["--address", "0x300800"], ["0x300800 is not 4 KiB aligned", "0x301000"]),
    (["--address", "0x10000"], ["below 0x", "firmware"]),
    (["--address", "0xD00000"], ["0xD00000 is inside the /flash file system"]),
    (["--address", "zero"], ["--address", "'zero' is not an address"]),
    (["--firmware", "/nope/maixpy.bin"], ["firmware /nope/maixpy.bin not found"]),
    (["--board", "maixcam"], ["argument --board: invalid choice: 'maixcam'"]),
    (["--method", "usb"], ["argument --method: invalid choice: 'usb'"]),
    (["--baud", "fast"], ["argument --baud: invalid int value: 'fast'"]),
    (["--port", "virtual,virtual"], ["names several ports"]),
])
def test_flash_bad_options(build, tmp_path, args, fragments):
    before = _files(build)
    proc = _flash(build, *(["--port", "virtual", "--vboard-state", tmp_path / "vb"] + args))
    assert_one_line_error(proc, *fragments)
    assert _files(build) == before
    assert not os.path.exists(str(tmp_path / "vb"))


# ------------------------------------------------------------------ ports
@pytest.mark.parametrize("tool", ["flash", "eval"])
@pytest.mark.parametrize("port, fragments", [
    ("/dev/ttyNOPE9", ["port /dev/ttyNOPE9 does not exist", "list_ports"]),
    ("/dev/null", ["/dev/null is not a serial port"]),
])
def test_port_that_cannot_be_opened(build, eval_images, tmp_path, tool, port, fragments):
    if tool == "flash":
        proc = _flash(build, "--port", port, "--timeout", "2")
    else:
        proc = _eval(build, eval_images, tmp_path / "eval", "--port", port, "--timeout", "2")
        assert_nothing_written(tmp_path / "eval")
    assert_one_line_error(proc, *fragments)
    assert "flash_report.json" not in _files(build)


@pytest.mark.parametrize("port, fragments", [
    ("socket://127.0.0.1:1", ["nothing listens on socket://127.0.0.1:1"]),
    ("bogus://x", ["port bogus://x:", "socket://host:port"]),
])
def test_eval_url_that_cannot_be_opened(build, eval_images, tmp_path, port, fragments):
    proc = _eval(build, eval_images, tmp_path / "eval", "--port", port, "--timeout", "2")
    assert_one_line_error(proc, *fragments)
    assert_nothing_written(tmp_path / "eval")


@pytest.mark.parametrize("tool", ["flash", "eval"])
def test_port_busy(build, eval_images, tmp_path, pty_port, tool):
    holder = serial.Serial(pty_port, 115200, exclusive=True)     # e.g. a serial monitor
    try:
        if tool == "flash":
            proc = _flash(build, "--port", pty_port, "--timeout", "2")
        else:
            proc = _eval(build, eval_images, tmp_path / "eval", "--port", pty_port,
                         "--timeout", "2")
    finally:
        holder.close()
    assert_one_line_error(proc, "port %s is busy" % pty_port, "close it")
    assert_nothing_written(tmp_path / "eval")
    assert "flash_report.json" not in _files(build)


@pytest.mark.parametrize("tool", ["flash", "eval"])
def test_port_permission_denied(build, eval_images, tmp_path, pty_port, tool):
    os.chmod(pty_port, 0)
    if tool == "flash":
        proc = run_as_user("host/flash.py", "--manifest", _manifest(build), "--port", pty_port,
                           "--timeout", "2", "--no-progress")
    else:
        proc = run_as_user("host/serial_eval.py", "--manifest", _manifest(build), "--images",
                           eval_images, "--out", tmp_path / "eval", "--port", pty_port,
                           "--timeout", "2", "--no-progress")
    assert_one_line_error(proc, "permission denied on %s" % pty_port, "dialout")
    assert_nothing_written(tmp_path / "eval")
    assert "flash_report.json" not in _files(build)


@pytest.mark.parametrize("tool", ["flash", "eval"])
def test_board_silent_is_a_bounded_error(build, eval_images, tmp_path, pty_port, tool):
    if tool == "flash":
        proc = _flash(build, "--port", pty_port, "--timeout", "2")
    else:
        proc = _eval(build, eval_images, tmp_path / "eval", "--port", pty_port,
                     "--timeout", "2")
    assert_one_line_error(proc, "no board answered on %s" % pty_port, "within 2 s")
    assert_nothing_written(tmp_path / "eval")
    assert "flash_report.json" not in _files(build)


# ------------------------------------------------------------------ serial_eval.py options
@pytest.mark.parametrize("args, fragments", [
    (["--min-f1", "1.5"], ["--min-f1 must be in 0..1"]),
    (["--min-cos", "2"], ["--min-cos in -1..1"]),
    (["--timeout", "0"], ["--timeout must be > 0"]),
    (["--retries", "0"], ["--retries must be 1..255"]),
    (["--limit", "0"], ["--limit must be >= 1"]),
    (["--payload", "png"], ["argument --payload: invalid choice: 'png'"]),
    (["--vboard-faults", "flip=2"], ["--vboard-faults", "must be a number in 0..1"]),
    (["--port", ""], ["--port is empty"]),
    (["--port", "virtual:99"], ["at most 8"]),
])
def test_eval_bad_options(build, eval_images, tmp_path, args, fragments):
    proc = _eval(build, eval_images, tmp_path / "eval", *(["--vboard-state", tmp_path / "vb"]
                                                          + args))
    assert_one_line_error(proc, *fragments)
    assert_nothing_written(tmp_path / "eval")
    assert not os.path.exists(str(tmp_path / "vb"))


@pytest.mark.parametrize("case", ["missing", "empty", "not-images", "unreadable"])
def test_eval_bad_image_folder(build, tmp_path, case):
    images = tmp_path / "imgs"
    fragments = {"missing": ["--images folder", "does not exist"],
                 "empty": ["holds no .jpg/.png/.bmp images"],
                 "not-images": ["holds no .jpg/.png/.bmp images"],
                 "unreadable": ["cannot read image", "x.jpg"]}[case]
    if case != "missing":
        images.mkdir()
    if case == "not-images":
        (images / "readme.txt").write_text("no images here")
    if case == "unreadable":
        (images / "x.jpg").write_bytes(b"not a jpeg")
    proc = _eval(build, images, tmp_path / "eval", "--timeout", "1")
    assert_one_line_error(proc, *fragments)
    assert_nothing_written(tmp_path / "eval")


# ------------------------------------------------------------------ with a virtual board
def test_eval_images_of_another_size_are_resized_and_said_so(tiny_build, tmp_path):
    """Documented behaviour, not an error: exit 0, one note naming how many were resized."""
    images = tiny_model.images(tmp_path / "imgs", 2, seed=3, size=(40, 24))
    out = tmp_path / "eval"
    proc = run_tool("host/serial_eval.py", "--manifest", tiny_build.path, "--images", images,
                    "--out", out, "--vboard-state", tmp_path / "vb", "--no-progress",
                    "--min-f1", "0", "--min-cos", "0", timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    notes = [l for l in proc.stdout.splitlines() if l.startswith("note:")]
    assert len(notes) == 1 and "2 of 2 image(s) are not 16x16: resized" in notes[0]
    with open(str(out / "report.json")) as f:
        report = json.load(f)
    assert [r["resized"] for r in report["images"]] == [True, True]
    assert [r["source_size"] for r in report["images"]] == [[40, 24], [40, 24]]


@pytest.mark.parametrize("tool", ["flash", "eval"])
def test_firmware_that_cannot_load_the_kmodel_version(tiny_build, eval_images, tmp_path, tool):
    """A stock MaixPy (KPU API of maixpy-v4: kmodel V3/V4) and the V5 kmodel of the pip
    nncase: refused with both fixes named, before anything is written."""
    state = str(tmp_path / "vb")
    transport.provision_virtual(state, tiny_build, 1500000)
    with start_board(state, profile="maixpy-v4", log_rate=0) as board:
        before = _files(tmp_path / "vb" / "flash")
        if tool == "flash":
            proc = run_tool("host/flash.py", "--manifest", tiny_build.path, "--port",
                            board.port, "--no-progress", timeout=120)
            line = assert_one_line_error(proc, "refused before writing anything", "maixpy-v4",
                                         "V5", "--ncc")
            assert "KPU API maixpy-kpu" in line
            assert not os.path.exists(os.path.join(tiny_build.directory, "flash_report.json"))
        else:
            proc = run_tool("host/serial_eval.py", "--manifest", tiny_build.path, "--images",
                            eval_images, "--out", tmp_path / "eval", "--port", board.port,
                            "--no-progress", timeout=120)
            line = assert_one_line_error(proc, "could not load the kmodel",
                                         "ERR_KMODEL_VERSION", "maixpy-kpu", "V5")
            assert "--ncc" in line and "feat/kpu" in line
            assert_nothing_written(tmp_path / "eval")
        assert _files(tmp_path / "vb" / "flash") == before
    assert not os.path.exists(os.path.join(state, "isp.json"))


def test_eval_board_running_another_model(tiny_build, build, eval_images, tmp_path):
    """The manifest is out of date with respect to the board: another kmodel is flashed."""
    state = str(tmp_path / "vb")
    transport.provision_virtual(state, tiny_build, 1500000)
    with open(str(build / "model.kmodel"), "ab") as f:
        f.write(b"\0" * 16)
    _rewrite(build, kmodel__sha256=manifest_mod.sha256_file(str(build / "model.kmodel")))
    with start_board(state, log_rate=0) as board:
        proc = _eval(build, eval_images, tmp_path / "eval", "--port", board.port)
    assert_one_line_error(proc, "runs another model than", tiny_build["kmodel"]["sha256"][:16])
    assert_nothing_written(tmp_path / "eval")


# ------------------------------------------------------------------ Makefile variables
@pytest.mark.parametrize("target, variables, fragments", [
    ("kmodel", ["FIRMWARE=maixpy-v9"], ["argument --firmware: invalid choice: 'maixpy-v9'"]),
    ("flash", ["PORT=/dev/ttyNOPE3"], ["port /dev/ttyNOPE3 does not exist"]),
    ("flash", ["BAUD=fast"], ["argument --baud: invalid int value: 'fast'"]),
    ("flash", ["BOARD=maixcam"], ["argument --board: invalid choice: 'maixcam'"]),
    ("flash", ["METHOD=usb"], ["argument --method: invalid choice: 'usb'"]),
    ("flash", ["ADDRESS=0x300800"], ["0x300800 is not 4 KiB aligned"]),
    ("flash", ["FIRMWARE=/nope/fw.bin"], ["firmware /nope/fw.bin not found"]),
    ("flash", ["PORT="], ["argument --port: expected one argument"]),
    ("eval", ["PORT=/dev/ttyNOPE3"], ["port /dev/ttyNOPE3 does not exist"]),
    ("eval", ["PORT=virtual:0"], ["the number of virtual boards must be >= 1"]),
    ("eval", ["BUILD=/nonexistent/build"], ["manifest /nonexistent/build/manifest.json not "
                                            "found", "make kmodel"]),
])
def test_makefile_variables(build, tmp_path, target, variables, fragments):
    if not any(v.startswith("BUILD=") for v in variables):
        variables = variables + ["BUILD=%s" % build]
    before = _files(build)
    proc = make(target, *variables)
    # make reports the failed recipe itself ("make: *** [...] Error 2") and exits 2
    assert_one_line_error(proc, *fragments)
    assert _files(build) == before
