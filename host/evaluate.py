"""serial_eval's run: boards up, images streamed (sharded over several boards), host
TensorFlow on the same pixels, comparison, report, verdict. The CLI (host/serial_eval.py)
only parses options; the streaming, comparing pipeline is host.eval_pipeline.

TensorFlow is imported only once the boards answered (host.eval_tf), so a board problem
fails fast; the virtual boards run in their own processes (nncase never enters this one).
"""
import collections
import os
import resource
import sys
import threading

from device import protocol as P
from host import (atomic, compare, decode_eval, eval_classes, eval_inputs, eval_pipeline,
                  eval_records, eval_report, journal, manifest as manifest_mod, session,
                  transport)
from host.errors import FidelityError, Interrupted, UserError


# A virtual board just started still has to boot (grace period, nncase model load), possibly
# on a busy machine: it gets this much time on top of --timeout to reach serve mode.
VIRTUAL_BOOT_TIME = 30.0


def _say(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


class Board(object):
    def __init__(self, spec):
        self.spec = spec
        self.link = None
        self.session = None
        self.error = None
        self.fmt = None          # the P.FMT_* this board's images go as (choose_format)


def _bring_up(board, manifest, options):
    try:
        board.link = transport.open_link(board.spec, manifest, options.baud,
                                         vboard_state=options.vboard_state,
                                         vboard_profile=options.vboard_profile,
                                         vboard_faults=options.vboard_faults,
                                         vboard_seed=options.vboard_seed,
                                         vboard_log_rate=options.vboard_log_rate)
        board.session = session.Session(board.link.ser, board.link.name, options.baud,
                                        timeout=options.timeout,
                                        booting=board.link.virtual is not None,
                                        boot_time=VIRTUAL_BOOT_TIME,
                                        reopen=board.link.reopen,
                                        max_attempts=options.retries)
        board.session.connect()
        board.session.check_model(manifest, options.manifest)
    except UserError as exc:
        board.error = exc
    except Exception as exc:  # a bug or an unexpected OS error: still one line
        board.error = UserError("%s: %s: %s" % (board.spec.name, exc.__class__.__name__, exc))


def connect_all(specs, manifest, options):
    boards = [Board(s) for s in specs]
    threads = [threading.Thread(target=_bring_up, args=(b, manifest, options), daemon=True)
               for b in boards]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failed = [b for b in boards if b.error is not None]
    if failed:
        close_all(boards)
        raise failed[0].error
    return boards


def close_all(boards):
    """EXIT to each board and its port closed (again: nothing happens)."""
    for b in boards:
        if b.session is not None:
            b.session.close()
            b.session = None
        if b.link is not None:
            b.link.close()
            b.link = None


def _progress(total, enabled):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a pinned dependency
        return None
    return tqdm(total=total, unit="img", desc="board", dynamic_ncols=True, disable=None)


def link_summary(boards, n_images, wall):
    per = []
    for b in boards:
        st = b.session.stats
        baud = b.session.info.get("baud") or b.session.baud
        rate = st["payload_bytes"] / st["link_seconds"] if st["link_seconds"] > 0 else 0.0
        per.append({"images": st["images"], "payload_bytes": st["payload_bytes"],
                    "wire_bytes": st["wire_bytes"], "link_seconds": round(st["link_seconds"], 3),
                    "payload_bytes_per_second": rate, "baud": baud,
                    "efficiency": rate / (baud / 10.0)})
    used = [p for p in per if p["images"]]
    return per, {
        "wall_seconds": wall,
        "images_per_second": n_images / wall if wall > 0 else 0.0,
        "payload_bytes": sum(p["payload_bytes"] for p in per),
        "payload_bytes_per_second": (sum(p["payload_bytes_per_second"] for p in used) / len(used)
                                     if used else 0.0),
        "efficiency": sum(p["efficiency"] for p in used) / len(used) if used else 0.0,
    }


# What serial_eval.py parsed, built once (see its --help for each).
Options = collections.namedtuple("Options", [
    "manifest", "port", "baud", "images", "out", "min_f1", "min_cos", "payload", "limit",
    "timeout", "retries", "vboard_state", "vboard_profile", "vboard_faults", "vboard_seed",
    "vboard_log_rate", "progress", "resume", "min_top1_agreement", "min_pixel_agreement",
    "eval_labels"], defaults=(0.98, 0.98, None))


def run(options):
    manifest = manifest_mod.load(options.manifest)
    manifest_mod.check_frozen_pb(manifest)      # the host reference, checked before any board
    specs = transport.parse_ports(options.port)
    width, height = manifest["input"]["width"], manifest["input"]["height"]
    paths = eval_inputs.list_images(options.images, options.limit)
    pixel_payload = eval_inputs.pixel_payload(options.payload,
                                              manifest["input"].get("channels", 3))
    resized = eval_inputs.count_resized(paths, width, height)
    if resized:
        _say("note: %d of %d image(s) are not %dx%d: resized (bilinear, aspect ratio not kept) "
             "before the board and the host see them" % (resized, len(paths), width, height))

    params = compare.decoder_params(manifest)
    truth = decode_eval.load_truth(options.eval_labels, params)
    log = journal.Journal(options.out, manifest["kmodel"]["sha256"], pixel_payload, params,
                          options.resume)
    try:
        resumed = _resumed(log, paths, options.resume)
        report, store_done = _run(specs, manifest, options, paths, resumed, log, params,
                                  pixel_payload, truth)
    finally:
        log.close()
    if report["run"]["partial"]:
        raise Interrupted("partial report of %d of %d image(s) in %s (journal %s): continue "
                          "with --resume" % (store_done, len(paths), options.out, log.path))
    for line in eval_report.verdict_lines(report, options.out):
        _say(line)
    if not report["verdict"]["ok"]:
        raise FidelityError("fidelity below thresholds: " + "; ".join(report["verdict"]["reasons"]))
    return 0


def _resumed(log, paths, resume):
    """Indices of the images whose journalled result is reused."""
    if not resume:
        return []
    found = [i for i, p in enumerate(paths) if log.matches(eval_inputs.image_name(p), p)]
    _say("resume: %d of %d image(s) from %s%s; %d to send"
         % (len(found), len(paths), log.path,
            " (a torn last line was dropped)" if log.torn else "", len(paths) - len(found)))
    return found


def _run(specs, manifest, options, paths, resumed, log, params, pixel_payload, truth):
    """Boards up (if any image is to be sent), then the pipeline (host.eval_pipeline) into a
    staged report, boards closed. -> (report, images in it). Ctrl-C or SIGTERM while
    streaming stops the sessions, closes the boards and reports what was done (partial)."""
    width, height = manifest["input"]["width"], manifest["input"]["height"]
    todo = len(paths) - len(resumed)
    boards = connect_all(specs, manifest, options) if todo else []
    reference = None
    try:
        _describe(boards, options.payload)
        from host import eval_tf   # TensorFlow once the boards answered: board problems fail fast
        reference = eval_tf.Reference(manifest)
        names = [o["node"] for o in manifest["outputs"]]
        shapes = [o["shape_chw"] for o in manifest["outputs"]]
        with atomic.staged_dir(options.out) as stage:
            store = eval_records.RecordStore(stage, names, len(paths), options.min_cos,
                                             eval_report.overlay_name)
            pipe = eval_pipeline.Pipeline(paths, resumed, log, width, height, pixel_payload,
                                          truth)
            bar = _progress(todo, options.progress) if boards else None
            try:
                wall, interrupted = pipe.run(boards, reference, store, params, shapes, bar)
            finally:
                if bar is not None:
                    bar.close()
            board_rows, link = _board_rows(boards, pipe.sent, wall)
            summary = store.summary.result(
                params["labels"] if params["type"] in eval_classes.DETECTORS else None)
            ok, reasons, warnings = compare.verdict(summary, options.min_f1, options.min_cos,
                                                    pixel_payload, options.min_top1_agreement,
                                                    options.min_pixel_agreement)
            report = {
                "tool": "serial_eval", "schema": 1,
                "manifest": os.path.relpath(manifest.path)
                if not os.path.isabs(options.manifest) else manifest.path,
                "kmodel": {k: manifest["kmodel"][k] for k in ("sha256", "size", "version")},
                "run": {"payload": options.payload, "baud": options.baud,
                        "images_dir": options.images, "limit": options.limit,
                        "width": width, "height": height, "port": options.port,
                        "timeout": options.timeout, "images_total": len(paths),
                        "resumed": len(resumed), "partial": interrupted},
                "thresholds": {"min_f1": options.min_f1, "min_cos": options.min_cos,
                               "iou": 0.5, "min_top1_agreement": options.min_top1_agreement,
                               "min_pixel_agreement": options.min_pixel_agreement},
                "decoder": {"type": params["type"], "labels": params["labels"],
                            "eval_labels": options.eval_labels},
                "boards": board_rows,
                "link": link,
                "host": {"peak_rss_mb": _peak_rss_mb(), "tf_batch": eval_pipeline.BATCH,
                         "max_images_in_memory": eval_pipeline.MAX_LIVE},
                "summary": summary,
                "verdict": {"ok": ok, "reasons": reasons, "warnings": warnings},
            }
            for line in eval_report.summary_lines(report):
                _say(line)
            eval_report.write(report, store)
        return report, store.count
    finally:
        close_all(boards)
        if reference is not None:
            reference.close()


def _peak_rss_mb():
    """This process's peak resident memory so far (Linux: ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def _describe(boards, payload):
    """Each board's line (firmware, API, baud, window, payload), its payload format chosen."""
    for b in boards:
        if b.link.note:
            _say("virtual board %s: provisioned /flash with %s"
                 % (b.link.virtual.state_dir, b.link.note))
        info = b.session.info
        b.fmt, note = eval_inputs.choose_format(payload, info)
        _say("board %s: %s, KPU API %s, kmodel V%s loaded, %d baud, window %d, chunk %d, "
             "payload %s" % (b.link.name, info.get("firmware"), info.get("api"),
                             info.get("kmodel_version"), info.get("baud"),
                             info.get("window"), info.get("chunk"), P.FORMAT_NAMES[b.fmt]))
        if note:
            _say("board %s: %s" % (b.link.name, note))


def _board_rows(boards, sent, wall):
    """(one report row per board, the link summary); the boards are closed first (a virtual
    board's fault counts are final then)."""
    if not boards:
        return [], None
    per_board, link = link_summary(boards, sent, wall)
    rows = [{"port": b.link.name, "virtual": b.link.virtual is not None,
             "path": b.session.path, "serve_line": b.session.serve_line,
             "payload": P.FORMAT_NAMES.get(b.fmt),
             "info": b.session.info, "link": per_board[k],
             "board_errors": b.session.board_errors[-20:],
             "logs": b.session.logs[-20:],
             "garbage_bytes": b.session.parser.garbage,
             "recovery": dict(b.session.recovery),
             "provisioned": b.link.note}
            for k, b in enumerate(boards)]
    handles = [b.link.virtual for b in boards]
    close_all(boards)
    for row, handle in zip(rows, handles):
        faults = handle.faults() if handle is not None else None   # stopped: final counts
        if faults is not None:
            row["faults"] = faults
    return rows, link
