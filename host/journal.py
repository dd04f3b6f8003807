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
    """`Journal(out_dir, kmodel_sha256, payload, decoder, resume)`: with `resume`, the
    journalled results whose payload and decoder still match are found by `result_for`;
    `.append(image, board_port, result)` records one more. Only where each record is (its
    image's name, file hash, byte offset) stays in memory: a record is read back when its
    image's turn comes, so resuming a long run does not hold every board output."""

    def __init__(self, out_dir, kmodel_sha256, payload, decoder, resume):
        self.path = os.path.join(out_dir, NAME)
        self.kmodel_sha256 = kmodel_sha256
        self.payload = payload
        self.decoder = decoder
        self.torn = 0
        self.resume = resume
        self.resumable = self._load() if resume else {}   # name -> (sha256, offset, length)
        self._fd = None      # opened with the first result: a run that fails before writes nothing

    def _load(self):
        """{image name: (its file's sha256, offset, length)} of the whole lines of an
        existing journal written for this payload and decoder (a torn last line dropped and
        cut off)."""
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise UserError("--resume: cannot read %s: %s" % (self.path, exc.strerror))
        found, offset, number = {}, 0, 0
        with f:
            for line in f:
                number += 1
                if not line.endswith(b"\n"):     # no newline after it: written partly at most
                    self.torn = 1
                    break
                entry = _entry(line)
                if entry is None:
                    if not f.read(1):             # the last line, e.g. zero-filled after a crash
                        self.torn = 1
                        break
                    raise UserError("--resume: %s line %d is not a journal record: remove the "
                                    "journal to start over" % (self.path, number))
                if entry.get("kmodel_sha256") != self.kmodel_sha256:
                    raise UserError("--resume: %s was written for kmodel sha256 %s..., this "
                                    "manifest's is %s...: use another --out, or run without "
                                    "--resume to start over"
                                    % (self.path, str(entry.get("kmodel_sha256"))[:12],
                                       self.kmodel_sha256[:12]))
                if entry.get("payload") == self.payload and entry.get("decoder") == self.decoder:
                    found[entry["image"]] = (entry.get("image_sha256"), offset, len(line))
                else:
                    found.pop(entry["image"], None)
                offset += len(line)
        if self.torn:
            with open(self.path, "r+b") as f:
                f.truncate(offset)
        return found

    def matches(self, name, path):
        """Whether image file `path` (named `name` in the journal) has a record to reuse."""
        where = self.resumable.get(name)
        return where is not None and where[0] == sha256_file(path)

    def result_for(self, image):
        """(board port, result) journalled for `image` (host.eval_inputs.EvalImage) if it was
        made from the same file bytes, payload and decoder; else None."""
        where = self.resumable.get(image.name)
        if where is None or where[0] != image.sha256:
            return None
        with open(self.path, "rb") as f:
            f.seek(where[1])
            entry = json.loads(f.read(where[2]).decode("utf-8"))
        return entry["board_port"], _from_json(entry["result"])

    def append(self, image, board_port, result):
        line = json.dumps({"image": image.name, "image_sha256": image.sha256,
                           "kmodel_sha256": self.kmodel_sha256, "payload": self.payload,
                           "decoder": self.decoder, "board_port": board_port,
                           "result": _to_json(result)}, separators=(",", ":")) + "\n"
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


def _entry(line):
    """The record of one journal line, or None if it is not one."""
    try:
        entry = json.loads(line.decode("utf-8"))
    except ValueError:
        return None
    return entry if isinstance(entry, dict) and "image" in entry else None


def _to_json(result):
    """A result as JSON takes it: a segment mask's class ids as hex."""
    mask = result.get("mask")
    if mask is None:
        return result
    return dict(result, mask=dict(mask, ids=bytes(mask["ids"]).hex()))


def _from_json(result):
    """A result as host.session delivers it (shape and box tuples), from its JSON form."""
    result = dict(result)
    result["outputs"] = [{"shape": tuple(o["shape"]), "data": o["data"]}
                         for o in result["outputs"]]
    result["boxes"] = [tuple(b) for b in result["boxes"]]
    if result.get("mask") is not None:
        result["mask"] = dict(result["mask"], ids=bytes.fromhex(result["mask"]["ids"]))
    return result
