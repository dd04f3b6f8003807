"""serial_eval's per-image records, kept as they complete so that memory stays flat with the
number of images: each record's overlay PNG is written at once, the record itself goes to a
scratch file in the report's staging directory (only its offset stays in memory), and what
the report needs from all of them is accumulated: the summary (host.eval_summary), the few
numbers per image the charts plot, and the worst MAX_THUMBNAILS disagreements.
Records may arrive in any order (sharded boards, resumed images); they are read back in
--images order.
"""
import array
import json
import os

import numpy as np

from host import decode_eval, eval_summary

MAX_THUMBNAILS = 30             # inline overlays of the worst images in report.html
SCRATCH = "records.jsonl"       # removed before the staging directory is moved in


def disagreement_key(rec, min_cos):
    """Sort key of an image where board and host disagree (smaller is worse: failed, then
    input CRC differences, then most unmatched boxes, then lowest output cos); None when
    they agree."""
    if rec["status"] != "ok":
        return (0, 0, 0.0)
    crc_differs = rec["crc"]["input_equal"] is False
    unmatched = rec["detections"]["unmatched"] + decode_eval.disagreements(rec)
    cos = min(t["cos"] for t in rec["tensors"])
    if crc_differs or unmatched or cos < min_cos:
        return (1 if crc_differs else 2, -unmatched, cos)
    return None


class RecordStore(object):
    """`add(record, overlay)` as images complete (record: host.compare's, with its `index`;
    overlay: a PIL image, saved as overlays/NNNN_name.png), then `records()` in index order,
    `record(index)`, `summary`, `worst`, `chart_values()`."""

    def __init__(self, stage, output_names, n_images, min_cos, overlay_name):
        self.stage = stage
        self.min_cos = min_cos
        self.overlay_name = overlay_name
        os.makedirs(os.path.join(stage, "overlays"))
        self._file = open(os.path.join(stage, SCRATCH), "w+b")
        self._offset = array.array("q", [-1]) * n_images
        self._length = array.array("q", [0]) * n_images
        self.summary = eval_summary.Summary(output_names)
        self.disagreeing = 0
        self._worst = []                                   # (key, index), bounded
        nan = float("nan")
        self._cos = array.array("d", [nan]) * n_images     # per image, for the charts
        self._kpu_ms = array.array("d", [nan]) * n_images
        self.score_deltas = array.array("d")               # per matched box
        self.box_deltas = array.array("d")
        self.count = 0

    def add(self, rec, overlay):
        index = rec["index"]
        name = self.overlay_name(index, rec)
        overlay.save(os.path.join(self.stage, "overlays", name), "PNG")
        rec["overlay"] = "overlays/" + name
        data = json.dumps(rec, indent=1).encode("utf-8")
        self._file.seek(0, os.SEEK_END)
        self._offset[index] = self._file.tell()
        self._length[index] = len(data)
        self._file.write(data)
        self.count += 1
        self.summary.add(rec)
        key = disagreement_key(rec, self.min_cos)
        if key is not None:
            self.disagreeing += 1
            self._worst.append((key, index))
            if len(self._worst) >= 2 * MAX_THUMBNAILS:
                self._worst = sorted(self._worst)[:MAX_THUMBNAILS]
        if rec["status"] == "ok":
            self._cos[index] = min(t["cos"] for t in rec["tensors"])
            self._kpu_ms[index] = rec["board"]["kpu_ms"]
            for m in rec["matches"]:
                self.score_deltas.append(m["score_delta"])
                self.box_deltas.append(m["box_delta_px"])

    @property
    def worst(self):
        """Indexes of the worst disagreeing images (at most MAX_THUMBNAILS), worst first."""
        return [i for _, i in sorted(self._worst)[:MAX_THUMBNAILS]]

    def record(self, index):
        self._file.seek(self._offset[index])
        return json.loads(self._file.read(self._length[index]).decode("utf-8"))

    def indices(self):
        return [i for i, off in enumerate(self._offset) if off >= 0]

    def records(self):
        """(index, JSON text of the record) in index order, one at a time."""
        for i in self.indices():
            self._file.seek(self._offset[i])
            yield i, self._file.read(self._length[i]).decode("utf-8")

    def chart_values(self):
        """(min output cos per compared image, KPU ms per compared image: numpy arrays in
        index order, score deltas, box deltas: numpy arrays over the matched boxes)."""
        cos = np.frombuffer(self._cos, dtype=np.float64)
        kpu = np.frombuffer(self._kpu_ms, dtype=np.float64)
        return (cos[~np.isnan(cos)], kpu[~np.isnan(kpu)],
                np.frombuffer(self.score_deltas, dtype=np.float64),
                np.frombuffer(self.box_deltas, dtype=np.float64))

    def close(self):
        """Close and remove the scratch file (before the staging directory is moved in)."""
        if not self._file.closed:
            self._file.close()
            os.remove(os.path.join(self.stage, SCRATCH))
