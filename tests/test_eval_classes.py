"""Per-class detection agreement, board vs host (host.eval_classes), as host.compare's records
carry it: boxes (x0, y0, x1, y1, score, class_id) and one-to-one matches of the same class."""
import html

import pytest

from host import compare, eval_classes, eval_report

LABELS = ["cat", "dog", "bird"]


def _box(x, cls, score=0.9):
    return [x, 0.1, x + 0.1, 0.3, score, cls]


def _record(board, host, pairs):
    return {"status": "ok", "resized": False, "name": "x.png",
            "tensors": [{"cos": 1.0, "l2r": 0.0, "rmse": 0.0, "mae": 0.0, "max_abs": 0.0}],
            "board_boxes": board, "host_boxes": host,
            "matches": [{"board": b, "host": h, "iou": 1.0, "score_delta": 0.0,
                         "box_delta_px": 0.0} for b, h in pairs],
            "detections": {"tp": len(pairs), "fp": len(board) - len(pairs),
                           "fn": len(host) - len(pairs), "host_boxes": len(host),
                           "board_boxes": len(board),
                           "unmatched": len(board) + len(host) - 2 * len(pairs),
                           "near_threshold": 0},
            "crc": {"input_equal": True, "pixel_equal": True, "source": "pix_ai"},
            "board": {"kpu_ms": 1.0, "prep_ms": 1.0, "decode_ms": 1.0}}


RECORDS = [
    # both sides agree on a cat and a dog
    _record([_box(0.0, 0), _box(0.5, 1)], [_box(0.0, 0), _box(0.5, 1)], [(0, 0), (1, 1)]),
    # the board calls the host's dog a bird: an fp of bird and an fn of dog
    _record([_box(0.2, 2)], [_box(0.2, 1)], []),
    # a cat only the host found
    _record([], [_box(0.7, 0)], []),
    # nothing on either side
    _record([], [], []),
]


def _rows():
    stats = eval_classes.ClassStats()
    for rec in RECORDS:
        stats.add(rec)
    return {r["label"]: r for r in stats.result(LABELS)}


def test_per_class_counts_put_a_class_swap_on_both_classes():
    rows = _rows()
    assert sorted(rows) == ["bird", "cat", "dog"]
    assert (rows["cat"]["tp"], rows["cat"]["fp"], rows["cat"]["fn"]) == (1, 0, 1)
    assert (rows["dog"]["tp"], rows["dog"]["fp"], rows["dog"]["fn"]) == (1, 0, 1)
    assert (rows["bird"]["tp"], rows["bird"]["fp"], rows["bird"]["fn"]) == (0, 1, 0)
    assert rows["cat"]["recall"] == pytest.approx(0.5) and rows["cat"]["precision"] == 1.0
    assert rows["bird"]["f1"] == 0.0
    assert (rows["dog"]["host_boxes"], rows["dog"]["board_boxes"]) == (2, 1)


def test_per_class_counts_add_up_to_the_overall_detections():
    summary = compare.summarize(RECORDS, ["out"])
    assert "detections_per_class" not in summary          # not asked for: not a detector
    stats = eval_classes.ClassStats()
    for rec in RECORDS:
        stats.add(rec)
    rows = stats.result(LABELS)
    for key in ("tp", "fp", "fn", "host_boxes", "board_boxes"):
        assert sum(r[key] for r in rows) == summary["detections"][key]


def test_summary_carries_the_rows_for_a_detector_and_unnamed_classes_get_their_id():
    from host import eval_summary
    summary = eval_summary.Summary(["out"])
    for rec in RECORDS:
        summary.add(rec)
    rows = summary.result(["cat"])["detections_per_class"]
    assert [r["label"] for r in rows] == ["cat", "1", "2"]


def test_text_and_html_sections_only_for_several_classes():
    rows = list(_rows().values())
    lines = eval_classes.summary_lines(rows)
    assert lines[0].startswith("Detections per class")
    assert any(l.split()[0] == "bird" and "F1 0.000" in l for l in lines[1:])
    page = eval_classes.html_section(rows, html.escape)
    assert page.count("<tr>") == 1 + len(rows) and "<td>bird</td>" in page
    one = [r for r in rows if r["label"] == "cat"]
    assert eval_classes.summary_lines(one) == [] and eval_classes.html_section(one, str) == ""


def test_the_terminal_summary_shows_the_per_class_table():
    summary = compare.summarize(RECORDS, ["out"])
    stats = eval_classes.ClassStats()
    for rec in RECORDS:
        stats.add(rec)
    summary["detections_per_class"] = stats.result(LABELS)
    summary.update({"kpu_ms": {"mean": 1.0, "max": 1.0}})
    report = {"summary": summary, "boards": [], "link": None,
              "run": {"payload": "rgb565", "resized": 0, "width": 8, "height": 8,
                      "resumed": 0, "partial": False, "baud": 1500000},
              "kmodel": {"version": 5, "sha256": "0" * 64}, "manifest": "m.json"}
    lines = eval_report.summary_lines(report)
    start = lines.index(eval_classes.summary_lines(summary["detections_per_class"])[0])
    assert [l.split()[0] for l in lines[start + 1:start + 4]] == ["cat", "dog", "bird"]
