"""serial_eval's run as a bounded pipeline, so that memory and time per image stay flat with
the number of images:

- a producer thread prepares each image (host.eval_inputs.prepare) when there is room: at
  most MAX_LIVE images (payload and pixels) exist between preparation and comparison;
  images with a journalled result (--resume) go straight to the comparison, the others to
  the boards;
- one thread per board streams (host.session): it takes the next prepared image when its
  window allows (never waiting for one: session.NOT_YET), journals each verified result and
  hands every answer on;
- a consumer thread runs the host TensorFlow reference on the answered images in batches of
  up to BATCH (or what arrived within IDLE_FLUSH s), compares (host.compare), stores the
  record and its overlay (host.eval_records) and drops the image.

The calling (main) thread only waits, so Ctrl-C / SIGTERM reach it at once: the boards and
the producer stop, what the boards answered is compared, the resumed images not compared yet
are, and the run ends as interrupted with everything done in the store.
"""
import queue
import threading
import time

from device import protocol as P
from host import compare, eval_inputs, eval_report, session
from host.errors import UserError

BATCH = 32              # images per host TensorFlow batch
MAX_LIVE = 3 * BATCH    # images prepared and not yet compared: the memory bound
IDLE_FLUSH = 0.2        # s without a new answer: compare what is pending anyway
_END = object()


class Pipeline(object):
    """One run: `paths` (all of --images), `resumed` (indices whose journalled result is
    reused), `journal` (host.journal.Journal), the model input size and the EvalImage
    payload; `run(boards, reference, store, params, shapes)`."""

    def __init__(self, paths, resumed, journal, width, height, payload):
        self.paths = paths
        self.resumed = set(resumed)
        self.journal = journal
        self.width, self.height, self.payload = width, height, payload
        self.slots = threading.Semaphore(MAX_LIVE)
        self.stop = threading.Event()          # interrupt or error: everyone stops
        self.interrupted = False
        self.to_boards = queue.Queue()         # (index, EvalImage), then _END
        self.answered = queue.Queue()          # (index, EvalImage, port, result, error)
        self.errors = []
        self.lock = threading.Lock()
        self.streams_end = 0.0                 # when the last board stream ended
        self.sent = 0                          # images the boards answered

    # ---------------------------------------------------------------- producer
    def _produce(self):
        try:
            for i, path in enumerate(self.paths):
                while not self.slots.acquire(timeout=0.1):
                    if self.stop.is_set():
                        return
                if self.stop.is_set():
                    return
                img = eval_inputs.prepare(path, self.width, self.height, self.payload)
                found = self.journal.result_for(img) if i in self.resumed else None
                if found is not None:
                    self.answered.put((i, img, found[0], found[1], None))
                    continue
                if i in self.resumed and not self.boards:
                    raise UserError("%s changed since its journal record was checked (no board "
                                    "is connected to send it): run again" % path)
                self.resumed.discard(i)        # changed since the journal was read: sent
                self.to_boards.put((i, img))
        except BaseException as exc:           # e.g. an image that cannot be decoded
            self._fail(exc)
        finally:
            self.to_boards.put(_END)

    def _fail(self, exc):
        with self.lock:
            self.errors.append(exc)
        self.stop.set()

    # ---------------------------------------------------------------- boards
    def _stream(self, board, bar):
        def next_job():
            with self.lock:
                try:
                    item = self.to_boards.get_nowait()
                except queue.Empty:
                    return session.NOT_YET
                if item is _END:
                    self.to_boards.put(_END)   # for the other boards
                    return None
            i, img = item
            fmt = board.fmt if img.fmt == P.FMT_RGB565 else img.fmt
            # RGB565 (raw or deflated), gray8: the board must report the CRC of these bytes
            want = img.pixel_crc if img.fmt in (P.FMT_RGB565, P.FMT_GRAY8) else None
            h, w = img.pixels.shape[:2]
            return session.ImageJob(i + 1, fmt, P.F_INPUT_CRC, w, h, img.payload,
                                    key=(i, img), pixel_crc=want)

        def done(job, result, error):
            i, img = job.key
            with self.lock:
                if result is not None:
                    self.journal.append(img, board.link.name, result)
                self.sent += 1
                if bar is not None:
                    bar.update(1)
            self.answered.put((i, img, board.link.name, result, error))

        try:
            board.session.stream(next_job, done, self.stop)
        except UserError as exc:
            self._fail(exc)
        except Exception as exc:
            self._fail(UserError("%s: %s: %s" % (board.link.name, exc.__class__.__name__, exc)))
        finally:
            with self.lock:
                self.streams_end = max(self.streams_end, time.monotonic())

    # ---------------------------------------------------------------- consumer
    def _compare(self, items):
        hosts = self.reference.outputs([img for _, img, _, _, _ in items])
        for (i, img, port, result, error), host in zip(items, hosts):
            rec = compare.compare_image(img, host, self.shapes, self.params, result, error,
                                        self.width, self.height)
            rec["board_port"] = port
            rec["index"] = i            # its place in --images: overlays keep it in partial runs
            self.store.add(rec, eval_report.overlay(img.pixels, rec))
            self.slots.release()

    def _consume(self, producer, boards):
        try:
            pending = []
            while True:
                try:
                    pending.append(self.answered.get(timeout=IDLE_FLUSH))
                    idle = False
                except queue.Empty:
                    idle = True
                fed = not producer.is_alive() and not any(t.is_alive() for t in boards)
                if self.stop.is_set():
                    break
                if pending and (idle or fed or len(pending) >= BATCH):
                    self._compare(pending)
                    pending = []
                if fed and not pending and self.answered.empty():
                    return
            for t in boards + [producer]:      # stopped: what they answered until then
                t.join()
            while not self.answered.empty():
                pending.append(self.answered.get())
            for k in range(0, len(pending), BATCH):
                self._compare(pending[k:k + BATCH])
            if self.interrupted and not self.errors:
                self._finish_resumed()
        except BaseException as exc:
            self._fail(exc)

    def _finish_resumed(self):
        """Interrupted: the resumed images not compared yet (their results are journalled)."""
        left = sorted(self.resumed - set(self.store.indices()))
        for k in range(0, len(left), BATCH):
            items = []
            for i in left[k:k + BATCH]:
                img = eval_inputs.prepare(self.paths[i], self.width, self.height, self.payload)
                port, result = self.journal.result_for(img)
                items.append((i, img, port, result, None))
            self._compare(items)

    # ---------------------------------------------------------------- the run
    def run(self, boards, reference, store, params, shapes, bar=None):
        """Every image prepared, streamed or taken from the journal, compared and stored.
        -> (wall seconds of the board streams, interrupted). Raises the first board or
        preparation error (after everything stopped)."""
        self.reference, self.store, self.params, self.shapes = reference, store, params, shapes
        self.boards = boards
        producer = threading.Thread(target=self._produce, name="prepare", daemon=True)
        streams = [threading.Thread(target=self._stream, args=(b, bar), daemon=True,
                                    name="board-%s" % b.link.name) for b in boards]
        consumer = threading.Thread(target=self._consume, args=(producer, streams),
                                    name="compare", daemon=True)
        t0 = time.monotonic()
        for t in [producer] + streams + [consumer]:
            t.start()
        try:
            while consumer.is_alive():
                consumer.join(0.2)
        except KeyboardInterrupt:           # Ctrl-C or SIGTERM: stop, then keep what was done
            self.interrupted = True
            self.stop.set()
            while consumer.is_alive():      # a second Ctrl-C ends without a report
                consumer.join(0.2)
        if self.errors:
            raise self.errors[0]
        return max(0.0, self.streams_end - t0), self.interrupted
