"""The shipped example model (examples/face): data generator, data, checkpoint, results."""
import hashlib
import json
import os
import sys

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FACE = os.path.join(REPO, "examples", "face")
CALIB = os.path.join(REPO, "calib_images")
EVAL = os.path.join(FACE, "eval")
CKPT = os.path.join(FACE, "checkpoint")
if FACE not in sys.path:
    sys.path.insert(0, FACE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import dataset  # noqa: E402


def _jpegs(directory):
    return sorted(n for n in os.listdir(directory) if n.endswith(".jpg"))


def _load(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# ------------------------------------------------------------------ generator

def test_generator_is_deterministic():
    a_img, a_lab = dataset.generate(3, 12345)
    b_img, b_lab = dataset.generate(3, 12345)
    assert np.array_equal(a_img, b_img)
    assert a_lab == b_lab
    # Image i does not depend on how many images are drawn.
    c_img, c_lab = dataset.generate(2, 12345)
    assert np.array_equal(a_img[:2], c_img) and a_lab[:2] == c_lab


def test_generator_seeds_differ():
    a_img, _ = dataset.generate(2, 1)
    b_img, _ = dataset.generate(2, 2)
    assert not np.array_equal(a_img, b_img)


def test_generated_images_and_labels_are_valid():
    images, labels = dataset.generate(30, 777)
    assert images.shape == (30, 224, 320, 3) and images.dtype == np.uint8
    counts = [len(b) for b in labels]
    assert min(counts) >= 0 and max(counts) <= 4 and sum(counts) > 0
    for boxes in labels:
        for x0, y0, x1, y1 in boxes:
            assert 0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0
            h = (y1 - y0) * dataset.HEIGHT
            assert dataset.MIN_FACE - 1 <= h <= dataset.MAX_FACE + 1


def test_training_validation_eval_calib_seeds_are_distinct():
    seeds = {dataset.TRAIN_SEED, dataset.VAL_SEED, dataset.EVAL_SEED, dataset.CALIB_SEED}
    assert len(seeds) == 4


# ------------------------------------------------------------------ shipped data

def test_eval_folder_matches_generator():
    names = _jpegs(EVAL)
    assert len(names) == 80
    with open(os.path.join(EVAL, "labels.json")) as f:
        doc = json.load(f)
    assert doc["labels"] == ["face"]
    assert sorted(doc["images"]) == names
    for i in (0, 41, 79):
        pixels, boxes, jpeg = dataset.make_image(dataset.EVAL_SEED, i)
        with open(os.path.join(EVAL, names[i]), "rb") as f:
            assert f.read() == jpeg, "eval/ is stale: run examples/face/make_data.py"
        assert doc["images"][names[i]] == boxes
    for boxes in doc["images"].values():
        for x0, y0, x1, y1 in boxes:
            assert 0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0


def test_calib_images_look_like_the_data():
    names = _jpegs(CALIB)
    assert len(names) == 40
    for n in names[:5]:
        assert _load(os.path.join(CALIB, n)).shape == (224, 320, 3)
    _, _, jpeg = dataset.make_image(dataset.CALIB_SEED, 0)
    with open(os.path.join(CALIB, names[0]), "rb") as f:
        assert f.read() == jpeg


def test_calib_and_eval_are_disjoint():
    def digests(directory):
        out = {}
        for n in _jpegs(directory):
            with open(os.path.join(directory, n), "rb") as f:
                out[hashlib.sha256(f.read()).hexdigest()] = n
        return out
    assert not set(digests(CALIB)) & set(digests(EVAL))
    # Not merely re-encoded copies: every calib image differs in content from every eval one.
    calib = np.stack([_load(os.path.join(CALIB, n)) for n in _jpegs(CALIB)]).astype(np.int16)
    small_c = calib[:, ::8, ::8].reshape(len(calib), -1)
    evals = np.stack([_load(os.path.join(EVAL, n)) for n in _jpegs(EVAL)]).astype(np.int16)
    small_e = evals[:, ::8, ::8].reshape(len(evals), -1)
    diff = np.abs(small_c[:, None, :] - small_e[None, :, :]).mean(axis=2)
    assert diff.min() > 10.0


# ------------------------------------------------------------------ trained artifacts

def test_checkpoint_small_and_batchnorm_statistics_trained():
    import tensorflow as tf
    files = os.listdir(CKPT)
    assert "checkpoint" in files
    assert all(n == "checkpoint" or n.startswith("model.ckpt.") for n in files), files
    size = sum(os.path.getsize(os.path.join(CKPT, n)) for n in files)
    assert size <= 3 * 1024 * 1024
    assert tf.train.latest_checkpoint(CKPT) == os.path.join(CKPT, "model.ckpt")
    reader = tf.train.load_checkpoint(os.path.join(CKPT, "model.ckpt"))
    shapes = reader.get_variable_to_shape_map()
    means = [n for n in shapes if n.endswith("moving_mean")]
    variances = [n for n in shapes if n.endswith("moving_variance")]
    assert len(means) == len(variances) == 6
    for n in means:
        assert not np.allclose(reader.get_tensor(n), 0.0), n + " never updated (UPDATE_OPS?)"
    for n in variances:
        assert not np.allclose(reader.get_tensor(n), 1.0), n + " never updated (UPDATE_OPS?)"


def test_inference_graph_restores_and_is_k210_friendly():
    import tensorflow as tf
    import model
    graph = tf.Graph()
    with graph.as_default():
        images, output = model.build_inference_graph()
        assert images.name == "Input_image:0" and output.name == "yolo/output:0"
        assert output.shape.as_list() == [1, 7, 10, 30]
        for node in graph.as_graph_def().node:
            if node.op == "Conv2D":
                assert list(node.attr["strides"].list.i) == [1, 1, 1, 1], node.name
                assert node.attr["padding"].s == b"SAME"
            elif node.op == "MaxPool":
                assert list(node.attr["ksize"].list.i) == [1, 2, 2, 1]
                assert list(node.attr["strides"].list.i) == [1, 2, 2, 1]
            assert node.op not in ("MatMul", "DepthwiseConv2dNative"), node.name
        params = sum(int(np.prod(v.shape.as_list())) for v in tf.trainable_variables())
        assert params < 700000
        saver = tf.train.Saver(tf.global_variables())
        with tf.Session(graph=graph) as sess:
            saver.restore(sess, os.path.join(CKPT, "model.ckpt"))
            x = _load(os.path.join(EVAL, "000.jpg"))[None].astype(np.float32) / 255.0
            out = sess.run(output, {images: x})
    assert np.all(np.isfinite(out))


def test_eval_result_is_a_real_detector():
    with open(os.path.join(FACE, "eval_result.json")) as f:
        result = json.load(f)
    assert result["images"] == 80 and result["iou"] == 0.5
    assert result["f1"] >= 0.9
    assert result["file_pixels"]["f1"] >= 0.9


def test_convert_json():
    with open(os.path.join(FACE, "convert.json")) as f:
        cfg = json.load(f)
    anchors = cfg["anchors"]
    assert len(anchors) == 10 and all(isinstance(a, float) and a > 0 for a in anchors)
    assert all(round(a, 3) == a for a in anchors)
    assert cfg["output_node"] == "yolo/output" and cfg["input_node"] == "Input_image"
    assert cfg["model_fn"] == "model.py:face_yolo" and cfg["decoder"] == "yolo2"
    assert cfg["input_size"] == "224x320" and cfg["input_scale"] == "0-1"
    assert cfg["labels"] == ["face"] and 0.0 < cfg["threshold"] < 1.0 and cfg["nms"] == 0.3
    assert os.path.exists(os.path.join(FACE, cfg["checkpoint"] + ".index"))
    with open(os.path.join(FACE, "eval_result.json")) as f:
        assert json.load(f)["threshold"] == cfg["threshold"]
