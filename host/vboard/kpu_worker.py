"""The virtual KPU's engine: nncase's Simulator (kmodel V5) and ncc v0.2's `ncc infer`
(kmodel V4, the K210 runtime's kernels: host/ncc.py) in a process of its own.

`Simulator.run` is a pybind11 call that never releases the GIL; run in the board process it
would stop the virtual UART's receive thread for the whole simulated KPU time, where a real
K210's UART interrupt keeps filling the ring while the KPU runs. So host/vboard/kpu.py starts
this worker (lazily, on the first model load) and waits on a pipe while it runs.

Runs as `python -m host.vboard.kpu_worker RFD WFD`: imports nncase (on the first V5 model)
and numpy only (never TensorFlow, never the board). It exits when its request pipe closes
(the board went away). A V4 model is kept as a file and each RUN is one `ncc infer` of the
input bytes (raw dataset: exactly the planar uint8 the KPU takes).

Messages (little-endian), requests on RFD, one reply each on WFD:
  request  <BII op, model id, payload length> + payload
    LOAD  payload <I n> + n x <I id of a model still alive> + the kmodel bytes
          (models not in the list are dropped first: what a soft reset threw away)
    RUN   payload <4I input shape> + uint8 input bytes
    FREE  no payload
  reply    <BI status, payload length> + payload
    OK    RUN: <I count> + count x (<I n> + n float32); otherwise empty
    ERROR exception type name, NUL, message (UTF-8)
"""
import os
import shutil
import struct
import sys
import tempfile

LOAD, RUN, FREE = 1, 2, 3
OK, ERROR = 0, 1
REQUEST = struct.Struct("<BII")
REPLY = struct.Struct("<BI")


def read_exact(fd, n):
    """n bytes from fd, or None at end of file."""
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def write_all(fd, data):
    view = memoryview(data)
    while len(view):
        view = view[os.write(fd, view):]


def encode_error(exc):
    return ("%s\0%s" % (type(exc).__name__, exc)).encode("utf-8", "replace")


class V4Model:
    """A V4 kmodel run by `ncc infer`, one process per RUN (ncc v0.2 has no library API)."""

    def __init__(self, data, work):
        from host import kmodel, ncc
        self.info = kmodel.parse(data)
        self.ncc = ncc.require_v02(ncc.find_ncc())
        self.dir = tempfile.mkdtemp(prefix="model-", dir=work)
        self.path = os.path.join(self.dir, "model.kmodel")
        with open(self.path, "wb") as f:
            f.write(data)

    def run(self, shape, planar):
        import numpy as np
        from host import ncc
        image = np.frombuffer(planar, np.uint8).reshape(shape[1:])
        return ncc.infer_checked(self.ncc, self.path, self.info["outputs"], image[None])[0]

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def is_v4(data):
    return data[:4] == b"LDMK" and struct.unpack_from("<I", data, 4)[0] == 4


def serve(rfd, wfd):
    import numpy as np

    sims = {}
    work = tempfile.mkdtemp(prefix="k210-vboard-kpu-")

    def drop(model_id):
        sim = sims.pop(model_id, None)
        if isinstance(sim, V4Model):
            sim.close()

    def handle(op, model_id, payload):
        if op == LOAD:
            (n,) = struct.unpack_from("<I", payload)
            alive = set(struct.unpack_from("<%dI" % n, payload, 4))
            for stale in [k for k in sims if k not in alive]:
                drop(stale)
            data = payload[4 + 4 * n:]
            if is_v4(data):
                sims[model_id] = V4Model(data, work)
                return b""
            import nncase
            sim = nncase.Simulator()
            sim.load_model(data)
            sims[model_id] = sim
            return b""
        if op == FREE:
            drop(model_id)
            return b""
        if op == RUN:
            sim = sims.get(model_id)
            if sim is None:
                raise RuntimeError("vboard: KPU worker has no model %d" % model_id)
            shape = struct.unpack_from("<4I", payload)
            if isinstance(sim, V4Model):
                outs = sim.run(shape, payload[16:])
            else:
                import nncase
                x = np.frombuffer(payload, np.uint8, offset=16).reshape(shape).copy()
                sim.set_input_tensor(0, nncase.RuntimeTensor.from_numpy(x))
                sim.run()
                outs = [sim.get_output_tensor(i).to_numpy() for i in range(sim.outputs_size)]
            parts = [struct.pack("<I", len(outs))]
            for out in outs:
                out = np.ascontiguousarray(np.asarray(out).astype(np.float32).ravel())
                parts += [struct.pack("<I", out.size), out.tobytes()]
            return b"".join(parts)
        raise ValueError("vboard: KPU worker: unknown request %d" % op)

    try:
        _loop(rfd, wfd, handle)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _loop(rfd, wfd, handle):
    while True:
        head = read_exact(rfd, REQUEST.size)
        if head is None:
            return
        op, model_id, length = REQUEST.unpack(head)
        payload = read_exact(rfd, length)
        if payload is None:
            return
        try:
            status, body = OK, handle(op, model_id, payload)
        except Exception as exc:    # nncase's errors go back to the board as they are
            status, body = ERROR, encode_error(exc)
        write_all(wfd, REPLY.pack(status, len(body)) + body)


def main(argv):
    serve(int(argv[0]), int(argv[1]))


if __name__ == "__main__":
    main(sys.argv[1:])
