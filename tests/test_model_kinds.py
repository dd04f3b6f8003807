"""The classify and segment decoders end to end (docs/model-kinds.md): the RESULT mask on the
wire, the agreement measures, the board's live drawing on MicroPython 1.11, the convert-time
refusals, and tiny real models (tests/tiny_kinds.py) through convert -> virtual board ->
serial_eval."""
import json
import os
import numpy as np
import pytest

import mpy_board as B
import mpy_harness as H
import tiny_kinds
import tiny_model
from conftest import assert_nothing_written, assert_one_line_error, run_tool, tool_env
from device import decoders
from device import protocol as P
from device import protocol_host as PH
from host import decode_agreement, decode_eval, decoder_kinds, devconfig, journal
from host.errors import UserError


# ------------------------------------------------------------------ wire
def test_result_mask_round_trip_and_truncation():
    mask = bytes([0, 1, 2, 1, 0, 255])
    parts = P.pack_result_parts(7, [((3, 2, 3), [0.5] * 18)], [], mask=(2, 3, mask))
    payload = b"".join(bytes(p) for p in parts)
    r = PH.unpack_result(payload)
    assert r["flags"] & P.R_MASK and r["mask"] == {"h": 2, "w": 3, "ids": mask}
    assert PH.unpack_result(b"".join(bytes(p) for p in P.pack_result_parts(
        7, [((3, 2, 3), [0.5] * 18)], [])))["mask"] is None
    for cut in (1, 4, 7):
        with pytest.raises(P.ProtocolError):
            PH.unpack_result(payload[:-cut])
    assert "mask" in P.FEATURES


def test_journal_keeps_the_mask(tmp_path):
    class Img(object):          # what the journal reads of host.eval_inputs.EvalImage
        name, sha256 = "a.png", "0" * 64
    log = journal.Journal(str(tmp_path), "k" * 64, "rgb565", {"type": "segment"}, False)
    result = {"outputs": [{"shape": (3, 1, 2), "data": [0.0] * 6}], "boxes": [],
              "mask": {"h": 1, "w": 2, "ids": b"\x01\x02"}}
    log.append(Img(), "virtual", result)
    log.close()
    with open(log.path) as f:
        entry = json.loads(f.readline())
    back = journal._from_json(entry["result"])
    assert back["mask"]["ids"] == b"\x01\x02" and back["outputs"][0]["shape"] == (3, 1, 2)


# ------------------------------------------------------------------ measures
def test_mask_agreement_and_iou():
    a = bytes([0, 0, 1, 1, 2, 2, 255, 1])
    b = bytes([0, 1, 1, 1, 2, 0, 0, 1])
    m = decode_agreement.mask_pair(a, b, 3)
    assert (m["pixels"], m["equal"]) == (8, 5)
    # class 0: a at pixels {0, 1}, b at {0, 5, 6}: intersection 1, union 4 (a's 255, "no
    # class", counts for no class)
    assert m["inter"] == [1, 3, 1] and m["union"] == [4, 4, 2]
    s = decode_agreement.iou_summary(m["inter"], m["union"], m["pixels"], m["equal"])
    assert s["iou"] == [0.25, 0.75, 0.5] and abs(s["mean_iou"] - 0.5) < 1e-12
    assert s["pixel_agreement"] == 5 / 8.0
    unused = decode_agreement.iou_summary([0, 2], [0, 2], 2, 2)
    assert unused["iou"] == [None, 1.0] and unused["mean_iou"] == 1.0


def test_classify_agreement():
    same = decode_agreement.classify_pair([(0.7, 2), (0.2, 0)], [(0.6, 2), (0.3, 1)])
    assert same["top1_equal"] and same["topk_overlap"] == 0.5
    assert abs(same["score_delta"] - 0.1) < 1e-12
    other = decode_agreement.classify_pair([(0.5, 1)], [(0.9, 3)])
    assert not other["top1_equal"] and other["score_delta"] is None
    assert decode_agreement.classify_pair([], [])["topk_overlap"] == 1.0


def _classify_rec(name, board_top, host_top, truth=None, conforms=True):
    d = decode_agreement.classify_pair([(0.9, board_top)], [(0.8, host_top)])
    d.update(conforms=conforms, host=[[0.8, host_top]], board=[[0.9, board_top]])
    if truth is not None:
        d["truth"] = truth
    return {"name": name, "status": "ok", "classify": d}


def test_classify_totals_confusion_accuracy_and_verdict():
    totals = decode_eval.Totals()
    for rec in [_classify_rec("a", 1, 1, truth=1), _classify_rec("b", 2, 1, truth=2),
                _classify_rec("c", 1, 1), _classify_rec("d", 0, 0, conforms=False)]:
        totals.add(rec)
    c = totals.result()["classify"]
    assert c["top1_agreement"] == 0.75 and c["labelled"] == 2
    assert c["board_accuracy"] == 1.0 and c["host_accuracy"] == 0.5
    assert c["confusion"][0] == [1, 1, 2] and [1, 2, 1] in c["confusion"]
    assert c["decoder_nonconforming"] == 1 and c["nonconforming_images"] == ["d"]
    reasons = decode_eval.verdict_reasons({"classify": c}, 0.98, 0.98)
    assert any("top-1 agreement 0.7500 < --min-top1-agreement 0.98" in r for r in reasons)
    assert any("decoder result differs" in r and "(first: d)" in r for r in reasons)
    lines = decode_eval.summary_lines({"classify": c}, ["bg", "cat", "dog"])
    assert "cat -> dog x1" in lines[1] and "board 1.0000, host 0.5000" in lines[2]


def test_eval_labels_file(tmp_path):
    params = {"type": "classify", "labels": ["cat", "dog"], "classes": 2}
    good = tmp_path / "labels.json"
    good.write_text(json.dumps({"x/a.png": "dog", "b.png": 0}))
    assert decode_eval.load_truth(str(good), params) == {"a.png": 1, "b.png": 0}
    for body, fragment in [("[1, 2]", "must be a JSON object"), ("{", "cannot be read"),
                           ('{"a.png": "cow"}', "'cow' for a.png"),
                           ('{"a.png": 2}', "neither a class index")]:
        bad = tmp_path / "bad.json"
        bad.write_text(body)
        with pytest.raises(UserError) as e:
            decode_eval.load_truth(str(bad), params)
        assert fragment in str(e.value) and str(bad) in str(e.value)
    with pytest.raises(UserError, match="decoder is yolo2"):
        decode_eval.load_truth(str(good), dict(params, type="yolo2"))


# ------------------------------------------------------------------ convert side
def _out(node, tf_shape):
    """host.pipeline's output info (its _chw_shape; not imported: it imports TensorFlow)."""
    rest = tf_shape[1:]
    chw = [rest[2], rest[0], rest[1]] if len(rest) == 3 else [int(np.prod(rest)), 1, 1]
    return {"node": node, "tf_shape": tf_shape, "shape_chw": chw}


def test_decoder_shape_refusals_name_the_shape():
    assert decoder_kinds.check_fit("classify", _out("logits", [1, 10])) == 10
    assert decoder_kinds.check_fit("classify", _out("pool", [1, 1, 1, 10])) == 10
    assert decoder_kinds.check_fit("segment", _out("seg", [1, 8, 8, 3])) == 3
    cases = [("classify", _out("yolo/output", [1, 7, 10, 30]), "yolo/output is 7x10x30"),
             ("segment", _out("logits", [1, 10]), "logits is 10"),
             ("segment", _out("one", [1, 8, 8, 1]), "one has 1"),
             ("segment", _out("many", [1, 2, 2, 300]), "many has 300"),
             ("classify", _out("single", [1, 1]), "single has 1")]
    for kind, out, fragment in cases:
        with pytest.raises(UserError) as e:
            decoder_kinds.check_fit(kind, out)
        assert fragment in str(e.value) and "\n" not in str(e.value)


def test_labels_file_and_colors(tmp_path):
    lines = tmp_path / "labels.txt"
    lines.write_text("cat\n dog \n\nfox\n")
    assert decoder_kinds.read_labels(str(lines)) == ["cat", "dog", "fox"]
    as_json = tmp_path / "labels.json"
    as_json.write_text('["a", "b"]')
    assert decoder_kinds.read_labels(str(as_json)) == ["a", "b"]
    assert decoder_kinds.read_labels("x,y") == ["x", "y"]
    assert decoder_kinds.read_colors(None, 3) == [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    assert decoder_kinds.read_colors("[[1,2,3],[4,5,6]]", 2) == [[1, 2, 3], [4, 5, 6]]
    with pytest.raises(UserError, match="needs 3"):
        decoder_kinds.read_colors("[[1,2,3]]", 3)


def test_device_config_carries_the_decoder_settings():
    manifest = {"kmodel": {"size": 10, "sha256": "0" * 64, "version": 5},
                "flash": {"address": 0x300000}, "firmware": "canmv-v5",
                "input": {"width": 16, "height": 16, "channels": 3},
                "outputs": [{"node": "cls/output", "shape_chw": [6, 1, 1]}],
                "decoder": {"type": "classify", "anchors": [], "classes": 6,
                            "labels": tiny_kinds.LABELS, "threshold": None, "nms": None,
                            "softmax": True, "top_k": 3}}
    d = devconfig.device_config(manifest)["decoder"]
    assert d == dict(manifest["decoder"])
    from device import detect
    assert detect.check_config(devconfig.device_config(manifest)) == []
    seg = dict(manifest, outputs=[{"node": "s", "shape_chw": [3, 8, 8]}],
               decoder={"type": "segment", "classes": 3, "colors": [[0, 0, 0]] * 3})
    assert devconfig.device_config(seg)["decoder"]["colors"] == [[0, 0, 0]] * 3
    assert "softmax" not in devconfig.device_config(seg)["decoder"]


# ------------------------------------------------------------------ board (MicroPython)
@H.needs_micropython
def test_live_mode_draws_top1_and_the_mask():
    cls = B.config(32, 24, "classify", (6, 1, 1), mode="live")
    cls["decoder"].update(classes=6, labels=tiny_kinds.LABELS, softmax=True, top_k=3,
                          threshold=None)
    seg = B.config(32, 24, "segment", (4, 3, 4), mode="live")
    colors = [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]
    seg["decoder"].update(classes=4, colors=colors, threshold=None)
    for cfg in (cls, seg):
        out = H.run("detect_cases.py", {"op": "live", "cfg": cfg, "frames": 2, "seed": 5})
        drawn = [d for d in out["result"]["drawn"]
                 if not (d[0] == "text" and d[1][2].endswith(" fps"))]
        want = []
        shape = tuple(cfg["outputs"][0]["shape"])
        for f in range(2):
            outs = B.kpu_outputs(B.planar_ai(B.frame_pixels(5, f, 2 * 32 * 24)), shape)
            if cfg is cls:
                top = decoders.decode("classify", outs, shape, cfg["decoder"])[0]
                want.append(["text", [2, 14, "%s %.2f" % (tiny_kinds.LABELS[top[5]],
                                                           top[4])]])
            else:
                want += _mask_rects(decoders.segment_mask(outs, shape), 3, 4, 32, 24, colors)
        assert drawn == want and len(want) >= 2


def _mask_rects(mask, mh, mw, w, h, colors):
    """What live_draw draws for a mask: a filled rectangle per run of a non-zero class."""
    out = []
    for r in range(mh):
        col = 0
        while col < mw:
            c = mask[r * mw + col]
            end = col
            while end < mw and mask[r * mw + end] == c:
                end += 1
            if c:
                out.append(["fill", [col * w // mw, r * h // mh, end * w // mw - col * w // mw,
                                     (r + 1) * h // mh - r * h // mh, colors[c]]])
            col = end
    return out


# ------------------------------------------------------------------ end to end (slow)
@pytest.fixture(scope="module")
def kinds_dir(tmp_path_factory, repo):
    d = tmp_path_factory.mktemp("kinds")
    tiny_model.images(str(d / "calib"), 16, seed=11)
    tiny_model.images(str(d / "eval"), 8, seed=12)
    return d


def _convert(kinds_dir, kind, *args, softmax_output=False, out="build"):
    from conftest import REPO
    pb = tiny_kinds.write_pb(str(kinds_dir), kind, REPO, tool_env(), softmax_output)
    out = str(kinds_dir / out)
    proc = run_tool(*(tiny_kinds.convert_args(pb, kind, str(kinds_dir / "calib"), out)
                      + ["--no-layer-error"] + list(args)), timeout=600)
    return proc, out


@pytest.mark.slow
def test_convert_refuses_a_decoder_that_does_not_fit(kinds_dir):
    proc, out = _convert(kinds_dir, "segmenter", "--decoder", "classify", out="refused1")
    assert_one_line_error(proc, "--decoder classify", "seg/output is 8x8x3")
    assert_nothing_written(out)
    proc, out = _convert(kinds_dir, "classifier", "--decoder", "segment", out="refused2")
    assert_one_line_error(proc, "--decoder segment", "cls/output is 6")
    assert_nothing_written(out)
    proc, out = _convert(kinds_dir, "classifier", "--decoder", "classify", "--labels", "a,b",
                         out="refused3")
    assert_one_line_error(proc, "--labels names 2 classes but cls/output has 6")
    assert_nothing_written(out)
    proc, out = _convert(kinds_dir, "classifier", "--decoder", "classify", "--top-k", "7",
                         out="refused4")
    assert_one_line_error(proc, "--top-k 7: use 1..6")
    assert_nothing_written(out)


def test_serial_eval_refuses_bad_agreement_thresholds(tmp_path):
    for option in ("--min-top1-agreement", "--min-pixel-agreement"):
        proc = run_tool("host/serial_eval.py", option, "1.5", "--out", str(tmp_path / "out"))
        assert_one_line_error(proc, option, "0..1")
        assert_nothing_written(tmp_path / "out")


def _eval(manifest_path, kinds_dir, out, *args):
    return run_tool("host/serial_eval.py", "--manifest", manifest_path, "--images",
                    str(kinds_dir / "eval"), "--out", out, "--no-progress", "--vboard-state",
                    str(kinds_dir / ("vb-" + os.path.basename(out))), *args, timeout=600)


@pytest.mark.slow
def test_classifier_convert_flash_eval_on_the_virtual_board(kinds_dir):
    labels = kinds_dir / "labels.txt"
    labels.write_text("\n".join(tiny_kinds.LABELS) + "\n")
    proc, out = _convert(kinds_dir, "classifier", "--decoder", "classify", "--labels",
                         str(labels), "--top-k", "3", out="build-cls")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "classes kmodel vs float: top-1 agreement" in proc.stdout
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["outputs"][0]["shape_chw"] == [6, 1, 1]
    dec = manifest["decoder"]
    assert (dec["type"], dec["classes"], dec["labels"], dec["softmax"], dec["top_k"]) == \
        ("classify", 6, tiny_kinds.LABELS, True, 3)
    with open(os.path.join(out, "convert_report.json")) as f:
        assert json.load(f)["quantization"]["classify"]["images"] == 4
    truth = kinds_dir / "truth.json"
    truth.write_text(json.dumps({"00000.png": "cat", "00001.png": 4}))
    ev = str(kinds_dir / "eval-cls")
    proc = _eval(os.path.join(out, "manifest.json"), kinds_dir, ev, "--eval-labels", str(truth))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "PASS: top-1 agreement" in proc.stdout
    with open(os.path.join(ev, "report.json")) as f:
        report = json.load(f)
    c = report["summary"]["classify"]
    assert c["images"] == 8 and c["decoder_nonconforming"] == 0 and c["labelled"] == 2
    recs = report["images"]
    assert c["top1_agreement"] == sum(r["classify"]["top1_equal"] for r in recs) / 8.0
    for r in recs:
        # the board's records: top-3, scores descending, softmax scores in 0..1
        top = r["classify"]["board"]
        assert len(top) == 3 and all(0 <= s <= 1 for s, _ in top)
        assert [s for s, _ in top] == sorted((s for s, _ in top), reverse=True)
    assert sum(n for _h, _b, n in c["confusion"]) == 8
    assert c["board_accuracy"] == sum(r["classify"]["top1"] == r["classify"]["truth"]
                                      for r in recs if "truth" in r["classify"]) / 2.0
    with open(os.path.join(ev, "report.html")) as f:
        assert "Top-1 labels, host vs board" in f.read()
    # labels of eval images that name no class: one line, nothing written
    bad = kinds_dir / "bad-truth.json"
    bad.write_text(json.dumps({"00000.png": "cow"}))
    proc = _eval(os.path.join(out, "manifest.json"), kinds_dir, ev + "-bad", "--eval-labels",
                 str(bad))
    assert_one_line_error(proc, "--eval-labels %s" % bad, "'cow' for 00000.png")
    assert_nothing_written(ev + "-bad")
    # a threshold above what was reached exits 1 with the reason
    proc = _eval(os.path.join(out, "manifest.json"), kinds_dir, ev + "-strict",
                 "--min-cos", "1.0")
    assert proc.returncode == 1 and "mean output cos" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_softmax_output_is_taken_as_scores(kinds_dir):
    proc, out = _convert(kinds_dir, "classifier", "--decoder", "classify",
                         softmax_output=True, out="build-softmax")
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(os.path.join(out, "manifest.json")) as f:
        dec = json.load(f)["decoder"]
    assert dec["softmax"] is False and dec["top_k"] == 5 and dec["threshold"] is None


@pytest.mark.slow
def test_segmenter_convert_flash_eval_on_the_virtual_board(kinds_dir):
    proc, out = _convert(kinds_dir, "segmenter", "--decoder", "segment", "--labels",
                         "sky,road,car", out="build-seg")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "masks kmodel vs float: pixel agreement" in proc.stdout
    ev = str(kinds_dir / "eval-seg")
    proc = _eval(os.path.join(out, "manifest.json"), kinds_dir, ev,
                 "--min-pixel-agreement", "0.9")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "Masks board vs host: pixel agreement" in proc.stdout
    with open(os.path.join(ev, "report.json")) as f:
        report = json.load(f)
    s = report["summary"]["segment"]
    assert s["images"] == 8 and s["pixels"] == 8 * 64 and s["decoder_nonconforming"] == 0
    assert s["masks_missing"] == 0 and 0.9 <= s["pixel_agreement"] <= 1.0
    assert s["pixel_agreement"] == sum(r["segment"]["equal"] for r in report["images"]) / 512.0
    assert all("masks" not in r for r in report["images"])
    from PIL import Image
    overlay = Image.open(os.path.join(ev, report["images"][0]["overlay"]))
    assert overlay.width >= 2 * 16 * 2          # host and board masks side by side
    # the board's mask for image 0 is the argmax of the board's own tensor
    assert report["images"][0]["segment"]["conforms"] is True


# ------------------------------------------------------------------ board serve loop
class SegmentModel(object):
    """A (3, 1, 2) class-score output: the i-th run's mask is [i % 3, (i + 1) % 3]."""
    api = "fake"
    error = None
    shapes = [(3, 1, 2)]
    runs = 0

    def loaded(self):
        return True

    def run(self, img):
        self.runs += 1
        i = self.runs
        out = [0.0] * 6
        out[2 * (i % 3)] = 1.0
        out[2 * ((i + 1) % 3) + 1] = 1.0
        return [out]

    def close(self):
        pass


def test_board_sends_masks_from_session_buffers_and_resends_them(monkeypatch):
    from test_protocol import board_factory, serve_cfg
    cfg = serve_cfg()
    cfg["outputs"] = [{"node": "seg", "shape": [3, 1, 2]}]
    cfg["decoder"] = {"type": "segment", "anchors": [], "classes": 3, "labels": [],
                      "threshold": None, "nms": None, "colors": [[0, 0, 0]] * 3}
    host, server, _uart = board_factory(monkeypatch)(cfg, SegmentModel())
    assert "mask" in host.hello()["features"]
    for i in (1, 2, 3, 4):
        host.image(i, 2, 2, bytes([i]) * 8)
        host.pump(3)
        if i == 1:
            buffers = [id(b) for b in server.masks.bufs]
    results = {r["image_id"]: r for r in (PH.unpack_result(p) for t, _, p in host.got
                                          if t == P.T_RESULT)}
    for i in (1, 2, 3, 4):
        assert results[i]["flags"] & P.R_MASK
        assert results[i]["mask"] == {"h": 1, "w": 2, "ids": bytes([i % 3, (i + 1) % 3])}
    # one mask buffer per set of RESULT buffers (RESULT_CACHE), reused image after image
    assert [id(b) for b in server.masks.bufs] == buffers and len(buffers) == 2
    host.got.clear()
    host.send(P.T_RESEND, PH.pack_resend(3))
    host.pump(2)
    assert PH.unpack_result(host.got[0][2])["mask"]["ids"] == bytes([0, 1])


@pytest.mark.slow
def test_segment_live_mode_on_the_virtual_board(kinds_dir):
    """Live mode with the segmenter: the camera plays the eval images, the mask is drawn in
    the class colours (pure red / blue: exact in RGB565) as filled 2x2 cells (16x16 input,
    8x8 mask), class 0 left clear; the LCD shows the 16x16 frame."""
    import time
    from PIL import Image
    from host import manifest as manifest_mod, transport
    from host.vboard.launcher import start_board
    proc, out = _convert(kinds_dir, "segmenter", "--decoder", "segment", "--colors",
                         "[[0, 0, 0], [255, 0, 0], [0, 0, 255]]", out="build-seg-live")
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = manifest_mod.load(os.path.join(out, "manifest.json"))
    state = str(kinds_dir / "vb-live")
    transport.provision_virtual(state, manifest, 1500000)
    cfg = devconfig.device_config(manifest, mode="live", grace_ms=300)
    with open(os.path.join(state, "flash", "config.json"), "w") as f:
        f.write(devconfig.to_json(cfg))
    lcd = os.path.join(state, "lcd")
    with start_board(state, sensor_dir=str(kinds_dir / "eval"), log_rate=0):
        deadline = time.monotonic() + 90
        frames = []
        while time.monotonic() < deadline and len(frames) < 4:
            frames = sorted(n for n in os.listdir(lcd) if n.endswith(".png")) \
                if os.path.isdir(lcd) else []
            time.sleep(0.2)
    frames = sorted(n for n in os.listdir(lcd) if n.endswith(".png"))   # the board stopped
    assert len(frames) >= 4, "live mode showed %d frame(s)" % len(frames)
    painted = 0
    for name in frames[-4:]:
        shot = np.asarray(Image.open(os.path.join(lcd, name)).convert("RGB"))
        text = (shot == (0, 255, 0)).all(axis=-1)       # the FPS string drawn over it
        for color in ((255, 0, 0), (0, 0, 255)):
            hit = (shot == color).all(axis=-1)
            painted += hit.sum()
            # whole 2x2 cells of the 8x8 mask (where the FPS text left them)
            cells = (hit | text).reshape(8, 2, 8, 2).transpose(0, 2, 1, 3).reshape(64, 4)
            some = hit.reshape(8, 2, 8, 2).transpose(0, 2, 1, 3).reshape(64, 4).any(axis=1)
            assert cells[some].all()
    assert painted > 0


def test_image_record_checks_the_board_decoder_against_its_own_tensor():
    params = {"type": "classify", "classes": 4, "labels": [], "softmax": False, "top_k": 2,
              "threshold": None}
    board_out = [0.1, 0.7, 0.2, 0.0]
    honest = [(0.0, 0.0, 1.0, 1.0, r[4], r[5]) for r in
              decoders.decode("classify", board_out, (4, 1, 1), params)]
    result = {"outputs": [{"shape": (4, 1, 1), "data": board_out}], "boxes": honest}
    rec, masks = decode_eval.image_record(params, result, [0.1, 0.2, 0.7, 0.0], (4, 1, 1), 2)
    assert rec["conforms"] and masks is None and not rec["top1_equal"]
    assert (rec["top1"], rec["ref_top1"], rec["truth"]) == (1, 2, 2)
    result["boxes"] = honest[::-1]                       # the board ranked them wrong
    assert not decode_eval.image_record(params, result, board_out, (4, 1, 1))[0]["conforms"]
    seg = {"type": "segment", "classes": 2, "colors": [[0, 0, 0], [9, 9, 9]]}
    out = [0.0, 1.0, 1.0, 0.0]                           # (2, 1, 2): mask [1, 0]
    result = {"outputs": [{"shape": (2, 1, 2), "data": out}], "boxes": [],
              "mask": {"h": 1, "w": 2, "ids": b"\x01\x00"}}
    rec, masks = decode_eval.image_record(seg, result, out, (2, 1, 2))
    assert rec["conforms"] and rec["pixel_agreement"] == 1.0 and masks[:2] == (b"\x01\x00",) * 2
    result["mask"] = {"h": 1, "w": 2, "ids": b"\x00\x00"}
    rec, _ = decode_eval.image_record(seg, result, out, (2, 1, 2))
    assert not rec["conforms"] and rec["pixel_agreement"] == 0.5
    result["mask"] = None
    rec, masks = decode_eval.image_record(seg, result, out, (2, 1, 2))
    assert rec["mask_missing"] and masks is None
    totals = decode_eval.Totals()
    totals.add({"name": "x", "status": "ok", "segment": rec})
    s = totals.result()["segment"]
    assert s["masks_missing"] == 1
    assert any("without the board's mask" in r
               for r in decode_eval.verdict_reasons({"segment": s}, 0.98, 0.98))
