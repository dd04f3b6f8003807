"""serial_eval's summary and records as they complete (host.eval_summary, host.eval_records):
any arrival order gives the same summary and the same report order; what is kept for the
report (failures listed, inline thumbnails) is bounded."""
import json
import random

import numpy as np
from PIL import Image

from host import compare, eval_records, eval_summary


def _record(index, rng, status="ok"):
    rec = {"index": index, "name": "%05d.png" % index, "resized": False, "status": status,
           "host_boxes": []}
    if status != "ok":
        rec["error"] = {"name": "retries", "code": 0, "reason": "no verified result"}
        return rec
    cos = 1.0 - 10 ** rng.uniform(-7, -2)
    rec.update({
        "tensors": [{"cos": cos, "l2r": rng.uniform(0, 0.1), "rmse": rng.uniform(0, 0.1),
                     "mae": rng.uniform(0, 0.1), "max_abs": rng.uniform(0, 1)}],
        "board_boxes": [],
        "matches": [{"score_delta": rng.uniform(0, 0.01), "box_delta_px": rng.uniform(0, 1)}
                    for _ in range(rng.randint(0, 3))],
        "detections": {"tp": 1, "fp": rng.randint(0, 1), "fn": 0, "f1": 1.0, "host_boxes": 1,
                       "board_boxes": 1, "unmatched": rng.randint(0, 1), "near_threshold": 0},
        "crc": {"input_equal": True, "pixel_equal": True, "source": "pix_ai"},
        "board": {"kpu_ms": rng.uniform(1, 9), "prep_ms": 1.0, "decode_ms": 0.5}})
    return rec


def _records(n, failed=()):
    rng = random.Random(3)
    return [_record(i, rng, "board_error" if i in failed else "ok") for i in range(n)]


def test_the_summary_does_not_depend_on_the_order_records_arrive_in():
    records = _records(500, failed={7, 300})
    shuffled = list(records)
    random.Random(1).shuffle(shuffled)
    assert compare.summarize(shuffled, ["out"]) == compare.summarize(records, ["out"])
    s = compare.summarize(records, ["out"])
    cos = [r["tensors"][0]["cos"] for r in records if r["status"] == "ok"]
    assert abs(s["tensors"][0]["cos"] - np.mean(cos)) < 1e-15
    assert s["failed"] == 2 and [f["name"] for f in s["failures"]] == ["00007.png", "00300.png"]


def test_failures_listed_are_bounded_all_are_counted():
    n = eval_summary.MAX_FAILURES + 50
    records = _records(n, failed=set(range(n)))
    random.Random(2).shuffle(records)
    s = compare.summarize(records, ["out"])
    assert s["failed"] == n and s["compared"] == 0
    assert [f["name"] for f in s["failures"]] == ["%05d.png" % i
                                                  for i in range(eval_summary.MAX_FAILURES)]


def test_record_store_gives_index_order_and_the_worst_few(tmp_path):
    n = 200
    records = _records(n, failed={50})
    arrival = list(records)
    random.Random(4).shuffle(arrival)
    store = eval_records.RecordStore(str(tmp_path), ["out"], n, 0.999,
                                     lambda i, rec: "%04d.png" % i)
    tile = Image.new("RGB", (4, 4))
    for rec in arrival:
        store.add(dict(rec), tile)
    assert [i for i, _ in store.records()] == list(range(n))
    assert json.loads(next(store.records())[1])["name"] == "00000.png"
    worst = store.worst
    assert len(worst) == eval_records.MAX_THUMBNAILS and worst[0] == 50    # failed first
    keys = [eval_records.disagreement_key(records[i], 0.999) for i in worst]
    assert keys == sorted(keys)
    everyone = sorted(k for k in (eval_records.disagreement_key(r, 0.999) for r in records)
                      if k is not None)
    assert keys == everyone[:eval_records.MAX_THUMBNAILS]
    assert store.disagreeing == len(everyone)
    cos, kpu, score_deltas, _ = store.chart_values()
    assert list(cos) == [r["tensors"][0]["cos"] for r in records if r["status"] == "ok"]
    assert sorted(score_deltas) == sorted(m["score_delta"] for r in records
                                          if r["status"] == "ok" for m in r["matches"])
    assert store.summary.result() == compare.summarize(records, ["out"])
    store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["overlays"]   # scratch removed
