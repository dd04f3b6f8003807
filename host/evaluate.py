"""serial_eval's run: boards up, images streamed (sharded over several boards), host
TensorFlow on the same pixels, comparison, report, verdict. The CLI (host/serial_eval.py)
only parses options.

TensorFlow is imported only after the boards are done (host.eval_tf), so a board problem
fails fast; the virtual boards run in their own processes (nncase never enters this one).
"""
import collections
import os
import sys
import threading
import time

from device import protocol as P
from host import (compare, eval_inputs, eval_report, journal, manifest as manifest_mod, session,
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
    for b in boards:
        if b.session is not None:
            b.session.close()
        if b.link is not None:
            b.link.close()


def stream_all(boards, images, indices, replies, on_result=None, progress=True):
    """Shard images[i] for i in `indices` over the boards (each takes the next image when its
    window allows); fills `replies` {index: (board port, result, error)} as they arrive,
    also when interrupted; on_result(image, port, result) for each verified result, under
    the lock. Returns the wall seconds."""
    lock = threading.Lock()
    order = iter(indices)
    stop = threading.Event()
    errors = []
    bar = _progress(len(indices), progress)

    def worker(board):
        def next_job():
            with lock:
                i = next(order, None)
            if i is None:
                return None
            img = images[i]
            fmt = board.fmt if img.fmt == P.FMT_RGB565 else img.fmt
            # RGB565 (raw or deflated): the board must report the CRC of exactly these bytes
            want = img.pixel_crc if img.fmt == P.FMT_RGB565 else None
            return session.ImageJob(i + 1, fmt, P.F_INPUT_CRC, _w(img), _h(img),
                                    img.payload, key=i, pixel_crc=want)

        def done(job, result, error):
            with lock:
                replies[job.key] = (board.link.name, result, error)
                if result is not None and on_result is not None:
                    on_result(images[job.key], board.link.name, result)
                if bar is not None:
                    bar.update(1)
        try:
            board.session.stream(next_job, done, stop)
        except UserError as exc:
            errors.append(exc)
            stop.set()
        except Exception as exc:
            errors.append(UserError("%s: %s: %s" % (board.link.name, exc.__class__.__name__,
                                                    exc)))
            stop.set()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(b,), daemon=True) for b in boards]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except BaseException:
        stop.set()            # e.g. Ctrl-C: let the sessions stop writing before EXIT
        for t in threads:
            t.join(1.0)
        raise
    finally:
        if bar is not None:
            bar.close()
    wall = time.monotonic() - t0
    if errors:
        raise errors[0]
    return wall


def _w(img):
    return img.pixels.shape[1]


def _h(img):
    return img.pixels.shape[0]


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
    "vboard_log_rate", "progress", "resume"])


def run(options):
    manifest = manifest_mod.load(options.manifest)
    manifest_mod.check_frozen_pb(manifest)      # the host reference, checked before any board
    specs = transport.parse_ports(options.port)
    width, height = manifest["input"]["width"], manifest["input"]["height"]
    paths = eval_inputs.list_images(options.images, options.limit)
    pixel_payload = eval_inputs.pixel_payload(options.payload)
    images = eval_inputs.prepare_all(paths, width, height, pixel_payload)
    resized = sum(1 for i in images if i.resized)
    if resized:
        _say("note: %d of %d image(s) are not %dx%d: resized (bilinear, aspect ratio not kept) "
             "before the board and the host see them" % (resized, len(images), width, height))

    params = compare.decoder_params(manifest)
    log = journal.Journal(options.out, manifest["kmodel"]["sha256"], pixel_payload, params,
                          options.resume)
    try:
        replies, todo = _resumed(log, images, options.resume)
        board_rows, link, interrupted = _run_boards(specs, manifest, options, images, todo,
                                                    replies, log)
    finally:
        log.close()

    from host import eval_tf  # TensorFlow, after the boards are done
    done = sorted(replies)
    host_outputs = eval_tf.reference_outputs(manifest, [images[i] for i in done])

    shapes = [o["shape_chw"] for o in manifest["outputs"]]
    names = [o["node"] for o in manifest["outputs"]]
    records = []
    for i, host in zip(done, host_outputs):
        port, result, error = replies[i]
        rec = compare.compare_image(images[i], host, shapes, params, result, error,
                                    width, height)
        rec["board_port"] = port
        rec["index"] = i            # its place in --images: overlays keep it in partial runs
        records.append(rec)
    summary = compare.summarize(records, names)
    ok, reasons, warnings = compare.verdict(summary, options.min_f1, options.min_cos,
                                            pixel_payload)
    report = {
        "tool": "serial_eval", "schema": 1,
        "manifest": os.path.relpath(manifest.path) if not os.path.isabs(options.manifest)
        else manifest.path,
        "kmodel": {k: manifest["kmodel"][k] for k in ("sha256", "size", "version")},
        "run": {"payload": options.payload, "baud": options.baud, "images_dir": options.images,
                "limit": options.limit, "width": width, "height": height,
                "port": options.port, "timeout": options.timeout,
                "images_total": len(images), "resumed": len(images) - len(todo),
                "partial": interrupted},
        "thresholds": {"min_f1": options.min_f1, "min_cos": options.min_cos, "iou": 0.5},
        "boards": board_rows,
        "link": link,
        "summary": summary,
        "verdict": {"ok": ok, "reasons": reasons, "warnings": warnings},
        "images": records,
    }
    for line in eval_report.summary_lines(report):
        _say(line)
    eval_report.write(options.out, report, [images[i] for i in done])
    if interrupted:
        raise Interrupted("partial report of %d of %d image(s) in %s (journal %s): continue "
                          "with --resume" % (len(done), len(images), options.out, log.path))
    for line in eval_report.verdict_lines(report, options.out):
        _say(line)
    if not ok:
        raise FidelityError("fidelity below thresholds: " + "; ".join(reasons))
    return 0


def _resumed(log, images, resume):
    """({index: (port, result, None)} journalled results still valid, indices to send)."""
    replies = {}
    for i, img in enumerate(images):
        found = log.result_for(img) if resume else None
        if found is not None:
            replies[i] = found + (None,)
    todo = [i for i in range(len(images)) if i not in replies]
    if resume:
        _say("resume: %d of %d image(s) from %s%s; %d to send"
             % (len(replies), len(images), log.path,
                " (a torn last line was dropped)" if log.torn else "", len(todo)))
    return replies, todo


def _run_boards(specs, manifest, options, images, todo, replies, log):
    """Boards up, images[todo] streamed into `replies` (each verified result journalled),
    boards closed. -> (board rows, link summary, interrupted). Ctrl-C or SIGTERM while
    streaming stops the sessions, closes the boards and reports what arrived."""
    if not todo:
        return [], None, False
    boards = connect_all(specs, manifest, options)
    interrupted = False
    try:
        for b in boards:
            if b.link.note:
                _say("virtual board %s: provisioned /flash with %s"
                     % (b.link.virtual.state_dir, b.link.note))
            info = b.session.info
            b.fmt, note = eval_inputs.choose_format(options.payload, info)
            _say("board %s: %s, KPU API %s, kmodel V%s loaded, %d baud, window %d, chunk %d, "
                 "payload %s" % (b.link.name, info.get("firmware"), info.get("api"),
                                 info.get("kmodel_version"), info.get("baud"),
                                 info.get("window"), info.get("chunk"),
                                 P.FORMAT_NAMES[b.fmt]))
            if note:
                _say("board %s: %s" % (b.link.name, note))
        t0 = time.monotonic()
        try:
            wall = stream_all(boards, images, todo, replies, log.append, options.progress)
        except KeyboardInterrupt:
            interrupted = True
            wall = time.monotonic() - t0
        sent = sum(1 for i in todo if i in replies)
        per_board, link = link_summary(boards, sent, wall)
        board_rows = [{"port": b.link.name, "virtual": b.link.virtual is not None,
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
    finally:
        close_all(boards)
    for row, handle in zip(board_rows, handles):
        faults = handle.faults() if handle is not None else None   # stopped: final counts
        if faults is not None:
            row["faults"] = faults
    return board_rows, link, interrupted
