"""Board vs host detections per class (multi-class detectors such as a 20-class YOLOv2).

host.compare matches board boxes to host boxes one-to-one by IoU, and only boxes of the same
class can match (host.metrics.match_detections). So per class c: tp = matched pairs of class
c, fp = the board's unmatched boxes of class c, fn = the host's unmatched boxes of class c.
A box the board puts in another class than the host counts as an fp of the board's class and
an fn of the host's. The per-class counts add up to the overall tp/fp/fn.
"""
from host import metrics

DETECTORS = ("yolo2", "grid")  # the decoders whose results are boxes of classes


class ClassStats(object):
    """`add(record)` per compared image (host.compare records), `result(labels)`: one row
    per class that either side found, by class id."""

    def __init__(self):
        self.counts = {}

    def _row(self, class_id):
        return self.counts.setdefault(class_id, {"tp": 0, "fp": 0, "fn": 0, "host_boxes": 0,
                                                 "board_boxes": 0})

    def add(self, rec):
        board, host = rec.get("board_boxes") or [], rec.get("host_boxes") or []
        if not board and not host:
            return
        matched_board = set(m["board"] for m in rec["matches"])
        matched_host = set(m["host"] for m in rec["matches"])
        for i, box in enumerate(board):
            row = self._row(int(box[5]))
            row["board_boxes"] += 1
            row["tp" if i in matched_board else "fp"] += 1
        for i, box in enumerate(host):
            row = self._row(int(box[5]))
            row["host_boxes"] += 1
            if i not in matched_host:
                row["fn"] += 1

    def result(self, labels=()):
        rows = []
        for class_id in sorted(self.counts):
            c = self.counts[class_id]
            row = {"class_id": class_id,
                   "label": labels[class_id] if class_id < len(labels) else str(class_id)}
            row.update(metrics.counts_to_prf(c["tp"], c["fp"], c["fn"]))
            row["host_boxes"], row["board_boxes"] = c["host_boxes"], c["board_boxes"]
            rows.append(row)
        return rows


def summary_lines(rows):
    """The text table of serial_eval's summary (nothing for a single-class detector)."""
    if len(rows) < 2:
        return []
    out = ["Detections per class, board vs host (host boxes / board boxes; P R F1):"]
    for r in rows:
        out.append("  %-16s %4d / %-4d  P %.3f R %.3f F1 %.3f"
                   % (r["label"][:16], r["host_boxes"], r["board_boxes"], r["precision"],
                      r["recall"], r["f1"]))
    return out


def html_section(rows, escape):
    """The report.html table (nothing for a single-class detector); ``escape`` HTML-escapes."""
    if len(rows) < 2:
        return ""
    cells = "".join(
        "<tr><td>%s</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td>"
        "<td>%.3f</td><td>%.3f</td><td>%.3f</td></tr>"
        % (escape(r["label"]), r["host_boxes"], r["board_boxes"], r["tp"], r["fp"], r["fn"],
           r["precision"], r["recall"], r["f1"]) for r in rows)
    return ("<h2>Detections per class (board vs host)</h2>\n<table><tr><th>class</th>"
            "<th>host boxes</th><th>board boxes</th><th>tp</th><th>fp</th><th>fn</th>"
            "<th>P</th><th>R</th><th>F1</th></tr>%s</table>\n" % cells)
