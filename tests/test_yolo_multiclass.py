"""A 20-class YOLOv2 in MaixPy's layout (5 anchors x (5 + 20) channels, tests/yolo20_model.py)
through convert -> virtual board -> serial_eval: the board's yolo2 decoder (device/decoders.py
as the board script runs it) against the host's, per class. The same layout on MicroPython
1.11 itself: tests/test_mpy_decoders.py voc_cases."""
import json
import os

import pytest

import yolo20_model
from conftest import REPO, run_tool, tool_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    directory = tmp_path_factory.mktemp("yolo20")
    manifest, images = yolo20_model.build(directory, REPO, tool_env())
    out = directory / "eval"
    # Random weights put some boxes at the threshold, where quantisation flips them (the
    # summary counts those near-threshold flips), so the F1 gate is lowered for this model.
    proc = run_tool("host/serial_eval.py", "--manifest", manifest, "--images", images,
                    "--out", out, "--vboard-state", directory / "vb", "--no-progress",
                    "--min-f1", "0.9", timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(manifest) as f:
        manifest_doc = json.load(f)
    with open(str(out / "report.json")) as f:
        return manifest_doc, json.load(f), proc.stdout, str(out)


def test_manifest_describes_the_20_class_layout(evaluated):
    manifest, _, _, _ = evaluated
    decoder = manifest["decoder"]
    assert decoder["type"] == "yolo2" and decoder["classes"] == 20
    assert decoder["labels"] == yolo20_model.LABELS
    assert decoder["anchors"] == yolo20_model.ANCHORS
    assert manifest["outputs"][0]["shape_chw"] == [125, 3, 4]


def test_board_and_host_agree_on_boxes_of_many_classes(evaluated):
    _, report, _, _ = evaluated
    s = report["summary"]
    det = s["detections"]
    assert s["failed"] == 0 and s["input_crc"]["differ"] == 0
    assert det["host_boxes"] >= 40
    assert det["f1"] >= 0.9
    # every disagreement is a score quantisation moved across the threshold, not a class or
    # box the board decoded differently
    assert det["unmatched"] == det["near_threshold"]
    rows = s["detections_per_class"]
    assert len({r["class_id"] for r in rows}) >= 8
    assert all(r["label"] == yolo20_model.LABELS[r["class_id"]] for r in rows)
    for key in ("tp", "fp", "fn", "host_boxes", "board_boxes"):
        assert sum(r[key] for r in rows) == det[key]
    for image in report["images"]:          # the class ids the board sent are the host's
        for m in image["matches"]:
            assert image["board_boxes"][m["board"]][5] == image["host_boxes"][m["host"]][5]
    assert max(b[5] for image in report["images"] for b in image["board_boxes"]) >= 10


def test_per_class_table_in_the_terminal_and_the_html(evaluated):
    _, report, stdout, out = evaluated
    assert "Detections per class, board vs host" in stdout
    rows = report["summary"]["detections_per_class"]
    with open(os.path.join(out, "report.html")) as f:
        page = f.read()
    assert "Detections per class (board vs host)" in page
    assert all("<td>%s</td>" % r["label"] in page for r in rows)
