"""What-if patches for the virtual board, used only by `make bench` to show what limits the
virtual link (never by the toolkit). bench/link.py puts this folder on the PYTHONPATH of the
virtual board's process and names the patches in K210_BENCH_WHATIF (comma-separated):

- `pacer`: host/vboard/uart.py LinePacer.wait_sent restarts the line at `now` after every
  late wake-up (`max(free_at, now)`), so each ~5 ms chunk loses the thread's wake-up latency:
  the virtual line carries ~0.95 of its nominal rate even with a host that never pauses.
  Patched: the line may catch up by at most PACER_SLACK s (a burst of <= 300 bytes at
  1.5 Mbaud, far inside any UART ring), as a real wire that never stopped would.
- `kpu`: host/vboard/kpu.py runs nncase's Simulator in the board process, and Simulator.run
  holds the GIL (~100 ms for the example model): the virtual UART's receive thread stops,
  so the link idles for the whole KPU time whatever the credit window. On a K210 the UART
  interrupt keeps filling the ring while the KPU runs. Patched: the simulator runs in a
  worker process; the board thread waits on a pipe (GIL released).

Nothing happens unless K210_BENCH_WHATIF is set.
"""
import os

_WHAT = [w for w in os.environ.get("K210_BENCH_WHATIF", "").split(",") if w]
PACER_SLACK = 0.002

_WORKER = r"""
import os, struct, sys
import numpy as np
import nncase
rfd, wfd = int(sys.argv[1]), int(sys.argv[2])
def read(n):
    b = bytearray()
    while len(b) < n:
        c = os.read(rfd, n - len(b))
        if not c:
            sys.exit(0)
        b += c
    return bytes(b)
def write(b):
    mv = memoryview(b)
    while len(mv):
        mv = mv[os.write(wfd, mv):]
(n,) = struct.unpack("<I", read(4))
sim = nncase.Simulator()
sim.load_model(read(n))
shape = struct.unpack("<4I", read(16))
size = shape[0] * shape[1] * shape[2] * shape[3]
while True:
    x = np.frombuffer(read(size), np.uint8).reshape(shape).copy()
    sim.set_input_tensor(0, nncase.RuntimeTensor.from_numpy(x))
    sim.run()
    outs = [sim.get_output_tensor(i).to_numpy().astype(np.float32).ravel()
            for i in range(sim.outputs_size)]
    parts = [struct.pack("<I", len(outs))]
    for o in outs:
        parts += [struct.pack("<I", o.size), o.tobytes()]
    write(b"".join(parts))
"""


def _patch_pacer():
    import time
    from host.vboard import uart

    def wait_sent(self, nbytes, baud):
        now = time.monotonic()
        self._free_at = max(self._free_at, now - PACER_SLACK) + \
            nbytes / uart.bytes_per_second(baud)
        delay = self._free_at - now
        if delay > 0:
            time.sleep(delay)

    uart.LinePacer.wait_sent = wait_sent


class _Worker(object):
    def __init__(self, data, shape):
        import subprocess
        import struct
        import sys
        self.struct = struct
        to_r, self.to_w = os.pipe()
        self.from_r, from_w = os.pipe()
        env = dict(os.environ)
        env.pop("K210_BENCH_WHATIF", None)
        self.proc = subprocess.Popen([sys.executable, "-c", _WORKER, str(to_r), str(from_w)],
                                     pass_fds=(to_r, from_w), env=env,
                                     stdout=subprocess.DEVNULL)
        os.close(to_r)
        os.close(from_w)
        self._write(struct.pack("<I", len(data)) + bytes(data) + struct.pack("<4I", *shape))

    def _write(self, b):
        mv = memoryview(b)
        while len(mv):
            mv = mv[os.write(self.to_w, mv):]

    def _read(self, n):
        b = bytearray()
        while len(b) < n:
            c = os.read(self.from_r, n - len(b))
            if not c:
                raise OSError("vboard what-if: the KPU worker exited")
            b += c
        return bytes(b)

    def run(self, planar):
        import numpy as np
        self._write(bytes(planar))
        (count,) = self.struct.unpack("<I", self._read(4))
        outs = []
        for _ in range(count):
            (n,) = self.struct.unpack("<I", self._read(4))
            outs.append(np.frombuffer(self._read(4 * n), np.float32).copy())
        return outs

    def close(self):
        for fd in (self.to_w, self.from_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self.proc.kill()
        self.proc.wait()


def _patch_kpu():
    from host.vboard import kpu
    original_init, original_free = kpu.Model.__init__, kpu.Model.free

    def __init__(self, board, data):
        original_init(self, board, data)
        self.worker = _Worker(data, self.input_shape) if self.sim is not None else None

    def run(self, planar):
        if self.worker is None:
            raise OSError("vboard: kmodel V%d cannot be simulated (nncase 1.9 runs V5 only)"
                          % self.info["version"])
        return self.worker.run(planar)

    def free(self):
        if getattr(self, "worker", None) is not None:
            self.worker.close()
            self.worker = None
        original_free(self)

    kpu.Model.__init__, kpu.Model.run, kpu.Model.free = __init__, run, free


if "pacer" in _WHAT:
    _patch_pacer()
if "kpu" in _WHAT:
    _patch_kpu()
