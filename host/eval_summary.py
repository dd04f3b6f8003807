"""serial_eval's summary, accumulated one per-image record at a time (host.compare makes the
records), so a run of any length keeps a few numbers per output, not its records.

Means are exact sums (Shewchuk's partials, as math.fsum) divided at the end: the result does
not depend on the order records arrive in, so a sharded or resumed run summarises exactly as
an uninterrupted one. The failures listed are the first MAX_FAILURES by image index (every
failure is in its record; `failed` counts them all).
"""
import heapq
import math

import numpy as np

from host import decode_eval, eval_classes, metrics

MAX_FAILURES = 100


class ExactSum(object):
    """A running float sum without rounding error until `value()` (math.fsum's partials)."""

    def __init__(self):
        self.partials = []
        self.count = 0

    def add(self, x):
        x = float(x)
        self.count += 1
        kept = 0
        for y in self.partials:
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo:
                self.partials[kept] = lo
                kept += 1
            x = hi
        self.partials[kept:] = [x]

    def mean(self):
        return math.fsum(self.partials) / self.count if self.count else None


class Stats(object):
    """Mean and max of a stream of numbers."""

    def __init__(self):
        self.sum = ExactSum()
        self.max = None

    def add(self, x):
        self.sum.add(x)
        self.max = float(x) if self.max is None else max(self.max, float(x))

    def result(self):
        if not self.sum.count:
            return {"mean": None, "max": None}
        return {"mean": self.sum.mean(), "max": self.max}


class TensorStats(object):
    """metrics.summarize_tensor_metrics, one image at a time."""

    def __init__(self):
        self.sums = {k: ExactSum() for k in metrics.TENSOR_KEYS}
        self.min_cos = None
        self.worst_max_abs = None

    def add(self, m):
        for k in metrics.TENSOR_KEYS:
            self.sums[k].add(m[k])
        self.min_cos = m["cos"] if self.min_cos is None else min(self.min_cos, m["cos"])
        self.worst_max_abs = m["max_abs"] if self.worst_max_abs is None else \
            max(self.worst_max_abs, m["max_abs"])

    def result(self):
        samples = self.sums["cos"].count
        if not samples:
            return {}
        out = {k: self.sums[k].mean() for k in metrics.TENSOR_KEYS}
        out["min_cos"] = float(self.min_cos)
        out["worst_max_abs"] = float(self.worst_max_abs)
        out["samples"] = samples
        return out


class Summary(object):
    """`add(record)` per image in any order, `result()`: the summary dict of report.json."""

    COUNTS = ("tp", "fp", "fn", "host_boxes", "board_boxes", "unmatched", "near_threshold")

    def __init__(self, output_names):
        self.names = list(output_names)
        self.images = self.compared = self.resized = 0
        self.tensors = [TensorStats() for _ in self.names]
        self.det = dict.fromkeys(self.COUNTS, 0)
        self.deltas = {"score_delta": Stats(), "box_delta_px": Stats()}
        self.board = {"kpu_ms": Stats(), "prep_ms": Stats(), "decode_ms": Stats()}
        self.input_crc = {True: 0, False: 0, None: 0}
        self.pixel_equal = 0
        self.sources = set()
        self.failed = 0
        self._failures = []          # heap of (-index, entry): the first MAX_FAILURES kept
        self.decoded = decode_eval.Totals()   # classify / segment agreement
        self.per_class = eval_classes.ClassStats()

    def add(self, rec):
        position = rec.get("index", self.images)
        self.images += 1
        self.resized += bool(rec["resized"])
        if rec["status"] != "ok":
            self.failed += 1
            heapq.heappush(self._failures, (-position, {"name": rec["name"],
                                                        "error": rec["error"]}))
            if len(self._failures) > MAX_FAILURES:
                heapq.heappop(self._failures)
            return
        self.compared += 1
        self.decoded.add(rec)
        for stats, m in zip(self.tensors, rec["tensors"]):
            stats.add(m)
        d = rec["detections"]
        for k in self.COUNTS:
            self.det[k] += d.get(k, 0)
        for m in rec["matches"]:
            for k, stats in self.deltas.items():
                stats.add(m[k])
        if not any(kind in rec for kind in decode_eval.KINDS):    # detector records only
            self.per_class.add(rec)
        self.input_crc[rec["crc"]["input_equal"]] += 1
        self.pixel_equal += bool(rec["crc"]["pixel_equal"])
        self.sources.add(rec["crc"]["source"])
        for k, stats in self.board.items():
            stats.add(rec["board"][k])

    def result(self, class_labels=None):
        """``class_labels``: the detector's class names, for `detections_per_class`
        (host.eval_classes); None (not a detector) leaves that key out."""
        tensors = []
        for stats, name in zip(self.tensors, self.names):
            row = stats.result()
            row["node"] = name
            tensors.append(row)
        ok = self.compared > 0
        det = metrics.counts_to_prf(self.det["tp"], self.det["fp"], self.det["fn"])
        for k in ("host_boxes", "board_boxes", "unmatched", "near_threshold"):
            det[k] = self.det[k]
        out = dict({
            "images": self.images, "compared": self.compared, "failed": self.failed,
            "resized": self.resized,
            "tensors": tensors,
            "mean_cos": float(np.mean([t["cos"] for t in tensors])) if ok else None,
            "min_cos": float(min(t["min_cos"] for t in tensors)) if ok else None,
            "detections": det,
            "score_delta": self.deltas["score_delta"].result(),
            "box_delta_px": self.deltas["box_delta_px"].result(),
            "input_crc": {"equal": self.input_crc[True], "differ": self.input_crc[False],
                          "not_computed": self.input_crc[None],
                          "sources": sorted(self.sources)},
            "pixel_crc": {"equal": self.pixel_equal, "differ": self.compared - self.pixel_equal},
            "kpu_ms": self.board["kpu_ms"].result(),
            "prep_ms": self.board["prep_ms"].result(),
            "decode_ms": self.board["decode_ms"].result(),
            "failures": [entry for _, entry in sorted(self._failures, key=lambda e: -e[0])],
        }, **self.decoded.result())
        if class_labels is not None:
            out["detections_per_class"] = self.per_class.result(class_labels)
        return out
