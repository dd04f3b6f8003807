"""serial_eval's run: boards up, images streamed (sharded over several boards), host
TensorFlow on the same pixels, comparison, report, verdict. The CLI (host/serial_eval.py)
only parses options.

TensorFlow is imported only after the boards are done (host.eval_tf), so a board problem
fails fast; the virtual boards run in their own processes (nncase never enters this one).
"""
import os
import sys
import threading
import time

from device import protocol as P
from host import compare, eval_inputs, eval_report, manifest as manifest_mod, session, transport
from host.errors import FidelityError, UserError


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


def _bring_up(board, manifest, opts):
    try:
        board.link = transport.open_link(board.spec, manifest, opts.baud,
                                         vboard_state=opts.vboard_state,
                                         vboard_profile=getattr(opts, "vboard_profile", None),
                                         vboard_faults=getattr(opts, "vboard_faults", ""),
                                         vboard_seed=getattr(opts, "vboard_seed", 0),
                                         vboard_log_rate=getattr(opts, "vboard_log_rate",
                                                                 0.05))
        board.session = session.Session(board.link.ser, board.link.name, opts.baud,
                                        timeout=opts.timeout,
                                        booting=board.link.virtual is not None,
                                        boot_time=VIRTUAL_BOOT_TIME,
                                        reopen=board.link.reopen,
                                        max_attempts=getattr(opts, "retries",
                                                             session.MAX_ATTEMPTS))
        board.session.connect()
        board.session.check_model(manifest, opts.manifest)
    except UserError as exc:
        board.error = exc
    except Exception as exc:  # a bug or an unexpected OS error: still one line
        board.error = UserError("%s: %s: %s" % (board.spec.name, exc.__class__.__name__, exc))


def connect_all(specs, manifest, opts):
    boards = [Board(s) for s in specs]
    threads = [threading.Thread(target=_bring_up, args=(b, manifest, opts), daemon=True)
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


def stream_all(boards, images, progress=True):
    """Shard the images over the boards (each takes the next image when its window allows);
    returns ({index: (board, result, error)}, wall seconds)."""
    lock = threading.Lock()
    order = iter(range(len(images)))
    replies = {}
    stop = threading.Event()
    errors = []
    bar = _progress(len(images), progress)

    def worker(board):
        def next_job():
            with lock:
                i = next(order, None)
            if i is None:
                return None
            img = images[i]
            # raw RGB565: the board must report the CRC of exactly these bytes
            want = img.pixel_crc if img.fmt == P.FMT_RGB565 else None
            return session.ImageJob(i + 1, img.fmt, P.F_INPUT_CRC, _w(img), _h(img),
                                    img.payload, key=i, pixel_crc=want)

        def done(job, result, error):
            with lock:
                replies[job.key] = (board, result, error)
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
    return replies, wall


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


def run(opts):
    manifest = manifest_mod.load(opts.manifest)
    manifest_mod.check_frozen_pb(manifest)      # the host reference, checked before any board
    specs = transport.parse_ports(opts.port)
    width, height = manifest["input"]["width"], manifest["input"]["height"]
    paths = eval_inputs.list_images(opts.images, opts.limit)
    images = eval_inputs.prepare_all(paths, width, height, opts.payload)
    resized = sum(1 for i in images if i.resized)
    if resized:
        _say("note: %d of %d image(s) are not %dx%d: resized (bilinear, aspect ratio not kept) "
             "before the board and the host see them" % (resized, len(images), width, height))

    boards = connect_all(specs, manifest, opts)
    try:
        for b in boards:
            if b.link.note:
                _say("virtual board %s: provisioned /flash with %s"
                     % (b.link.virtual.state_dir, b.link.note))
            info = b.session.info
            _say("board %s: %s, KPU API %s, kmodel V%s loaded, %d baud, window %d, chunk %d"
                 % (b.link.name, info.get("firmware"), info.get("api"),
                    info.get("kmodel_version"), info.get("baud"), info.get("window"),
                    info.get("chunk")))
        replies, wall = stream_all(boards, images, progress=not opts.no_progress)
        per_board, link = link_summary(boards, len(images), wall)
        board_rows = [{"port": b.link.name, "virtual": b.link.virtual is not None,
                       "path": b.session.path, "serve_line": b.session.serve_line,
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

    from host import eval_tf  # TensorFlow, after the boards are done
    host_outputs = eval_tf.reference_outputs(manifest, images)

    shapes = [o["shape_chw"] for o in manifest["outputs"]]
    names = [o["node"] for o in manifest["outputs"]]
    params = compare.decoder_params(manifest)
    records = []
    for i, img in enumerate(images):
        board, result, error = replies.get(i, (None, None, None))
        rec = compare.compare_image(img, host_outputs[i], shapes, params, result, error,
                                    width, height)
        rec["board_port"] = board.link.name if board is not None else None
        records.append(rec)
    summary = compare.summarize(records, names)
    ok, reasons, warnings = compare.verdict(summary, opts.min_f1, opts.min_cos, opts.payload)
    report = {
        "tool": "serial_eval", "schema": 1,
        "manifest": os.path.relpath(manifest.path) if not os.path.isabs(opts.manifest)
        else manifest.path,
        "kmodel": {k: manifest["kmodel"][k] for k in ("sha256", "size", "version")},
        "run": {"payload": opts.payload, "baud": opts.baud, "images_dir": opts.images,
                "limit": opts.limit, "width": width, "height": height,
                "port": opts.port, "timeout": opts.timeout},
        "thresholds": {"min_f1": opts.min_f1, "min_cos": opts.min_cos, "iou": 0.5},
        "boards": board_rows,
        "link": link,
        "summary": summary,
        "verdict": {"ok": ok, "reasons": reasons, "warnings": warnings},
        "images": records,
    }
    for line in eval_report.summary_lines(report):
        _say(line)
    eval_report.write(opts.out, report, images)
    for line in eval_report.verdict_lines(report, opts.out):
        _say(line)
    if not ok:
        raise FidelityError("fidelity below thresholds: " + "; ".join(reasons))
    return 0
