"""serial_eval's journal: every verified board result, appended to OUT/journal.jsonl as it
arrives (one JSON line, written with one write() and fsync'd), so an interrupted run loses
nothing and `--resume` sends only what is missing.

A line: {"image": name, "image_sha256": of the file's bytes, "kmodel_sha256", "payload",
"decoder": the board-side decoder parameters, "board_port", "result": the board's RESULT as
host.session delivers it}. The host's TensorFlow reference is not journalled: it is
recomputed (deterministic) when the report is made.

A SIGKILL or power loss can tear at most the last line (it is written last, in one call):
on resume that line is dropped and the file cut back to the last whole line.
"""
import json
import os

from host.errors import UserError
from host.manifest import sha256_file

NAME = "journal.jsonl"


class Journal(object):
    """`Journal(out_dir, kmodel_sha256, payload, decoder, resume)`: `.done` maps an image
    name to its journalled result when the image file, payload and decoder still match;
    `.append(image, board_port, result)` records one more."""

    def __init__(self, out_dir, kmodel_sha256, payload, decoder, resume):
        self.path = os.path.join(out_dir, NAME)
        self.kmodel_sha256 = kmodel_sha256
        self.payload = payload
        self.decoder = decoder
        self.torn = 0
        self.resume = resume
        entries = self._load() if resume else []
        self.resumable = {e["image"]: e for e in entries}
        self._fd = None      # opened with the first result: a run that fails before writes nothing

    def _load(self):
        """The whole lines of an existing journal (a torn last line dropped and cut off)."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise UserError("--resume: cannot read %s: %s" % (self.path, exc.strerror))
        *lines, tail = data.split(b"\n")
        self.torn = 1 if tail else 0          # no newline after it: written partly at most
        entries, good_end = [], 0
        for k, line in enumerate(lines):
            try:
                entry = json.loads(line.decode("utf-8"))
            except ValueError:
                entry = None
            if not isinstance(entry, dict) or "image" not in entry:
                if k == len(lines) - 1:       # the last line, e.g. zero-filled after a crash
                    self.torn = 1
                    break
                raise UserError("--resume: %s line %d is not a journal record: remove the "
                                "journal to start over" % (self.path, k + 1))
            if entry.get("kmodel_sha256") != self.kmodel_sha256:
                raise UserError("--resume: %s was written for kmodel sha256 %s..., this "
                                "manifest's is %s...: use another --out, or run without "
                                "--resume to start over"
                                % (self.path, str(entry.get("kmodel_sha256"))[:12],
                                   self.kmodel_sha256[:12]))
            entries.append(entry)
            good_end += len(line) + 1
        if self.torn:
            with open(self.path, "r+b") as f:
                f.truncate(good_end)
        return entries

    def result_for(self, image):
        """The journalled board result of `image` (host.eval_inputs.EvalImage) if it was
        made from the same file bytes, payload and decoder; else None."""
        entry = self.resumable.get(image.name)
        if entry is None or entry.get("payload") != self.payload or \
                entry.get("decoder") != self.decoder or \
                entry.get("image_sha256") != sha256_file(image.path):
            return None
        return entry["board_port"], _from_json(entry["result"])

    def append(self, image, board_port, result):
        line = json.dumps({"image": image.name, "image_sha256": sha256_file(image.path),
                           "kmodel_sha256": self.kmodel_sha256, "payload": self.payload,
                           "decoder": self.decoder, "board_port": board_port,
                           "result": result}, separators=(",", ":")) + "\n"
        if self._fd is None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (0 if self.resume else os.O_TRUNC)
            self._fd = os.open(self.path, flags, 0o666)
        os.write(self._fd, line.encode("utf-8"))
        os.fsync(self._fd)

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _from_json(result):
    """A result as host.session delivers it (shape and box tuples), from its JSON form."""
    result = dict(result)
    result["outputs"] = [{"shape": tuple(o["shape"]), "data": o["data"]}
                         for o in result["outputs"]]
    result["boxes"] = [tuple(b) for b in result["boxes"]]
    return result
