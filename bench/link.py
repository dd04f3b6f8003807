"""Serial-eval link benchmark on the virtual K210 (issue 6, items 1 and 2).

Runs as its own process (the orchestrator, bench/run.py, imports neither TensorFlow nor
nncase): `python bench/link.py SPEC.json RESULT.json`. SPEC keys:
  manifest, images (folder), count, repeats, baud, payload (rgb565|rgb565z|jpeg), read_buf_len,
  state (virtual board state dir, recreated), host_cost (bool), jpeg_qualities (list, or []).

The board is provisioned here the way `make flash` leaves it (device/*.py, a config.json from
host.devconfig with this `baud` and `read_buf_len`, the kmodel in its flash chip, flashed.json),
so serial_eval's own code path (host.transport.open_link + host.session.Session) runs exactly
what it runs for `make eval`, at the chosen serve baud and UART ring size.

One board process per spec; each repeat is a fresh HELLO (Session.connect() again: the board
resets its ACK counter) and a fresh stream of `count` images, pipelined under the credit window
exactly as serial_eval streams them. Per repeat:
  - efficiency as serial_eval reports it: payload bytes / (last RESULT - first IMAGE_BEGIN)
    over the line rate baud/10 (includes the first image's fill and the last image's tail);
  - steady state (what a long run converges to): the image bytes the host wrote after the
    first RESULT arrived, over the time from that RESULT to the last one. Every byte counted
    crossed the line inside that span, so it can never read above the line rate (the median
    interval between RESULTs could: results bunch when the ring held the next image already);
  - per image on the board (RESULT): kpu_ms (the nncase simulator on the virtual board),
    prep_ms (JPEG decode + pix_to_ai), decode_ms (the board's box decoder);
  - wire bytes per image each way (IMAGE frames host->board, RESULT frame board->host).
rgb565z: payload bytes are the deflated bytes sent; also the compression ratio (RGB565 bytes
over them) and the inflate time per image of the virtual board's receive path
(device/zinflate.py on host/vboard/shims/uzlib.py, timed here on the host: host CPU time, not
K210 time).
host_cost: after the board is done (as serial_eval does), per image: preparing the payload
(host.eval_inputs.prepare), TensorFlow on the KPU's pixels (host.eval_tf's runner), and the
comparison with the board's RESULT (host.compare.compare_image: box decoding, tensor metrics,
matching).
"""
import json
import os
import shutil
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from device import protocol as P  # noqa: E402
from host import devconfig, eval_inputs, manifest as manifest_mod, session, transport  # noqa
from host.vboard import launcher  # noqa: E402

DEVICE_DIR = os.path.join(REPO, "device")


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def provision(state, manifest, baud, read_buf_len):
    """A fresh virtual board holding what `make flash` writes, with our serve settings."""
    shutil.rmtree(state, ignore_errors=True)
    config = devconfig.device_config(manifest, baud=baud, read_buf_len=read_buf_len)
    launcher.provision(state, device_dir=DEVICE_DIR,
                       files={"config.json": devconfig.to_json(config).encode("utf-8")})
    launcher.write_flash(state, config["model"]["address"], manifest.kmodel_bytes())
    launcher.mark_flashed(state, {"by": "bench/link.py", "complete": True,
                                  "kmodel_sha256": manifest["kmodel"]["sha256"]})
    return config


def result_frame_bytes(manifest):
    """Bytes of one RESULT frame without boxes (board -> host per image)."""
    values = sum(c * h * w for c, h, w in (o["shape_chw"] for o in manifest["outputs"]))
    return P.OVERHEAD + P.RESULT_LEN + 10 * len(manifest["outputs"]) + 4 * values


def stream_once(sess, images, first_id, width, height, fmt_override=None):
    """Stream the images once (pipelined, as host.evaluate.stream_all does for one board);
    returns (jobs in order, {key: (result, error)}, wire bytes)."""
    order = iter(range(len(images)))
    jobs = []
    replies = {}

    def next_job():
        i = next(order, None)
        if i is None:
            return None
        img = images[i]
        job = session.ImageJob(first_id + i, fmt_override or img.fmt, P.F_INPUT_CRC, width,
                               height, img.payload, key=i)
        jobs.append(job)
        return job

    wire_at_first_result = None

    def done(job, result, error):
        nonlocal wire_at_first_result
        replies[job.key] = (result, error)
        if wire_at_first_result is None:
            wire_at_first_result = sess.stats["wire_bytes"] - wire0

    wire0, payload0 = sess.stats["wire_bytes"], sess.stats["payload_bytes"]
    sess.stream(next_job, done)
    return (jobs, replies, sess.stats["wire_bytes"] - wire0,
            sess.stats["payload_bytes"] - payload0, wire_at_first_result)


def inflate_study(images, chunk):
    """rgb565z on the virtual board's receive path, timed on the host: (median ms per image,
    RGB565 bytes over deflated bytes)."""
    from device import zinflate
    from host import rgb565z
    from host.vboard.shims import uzlib
    zinflate.uzlib = uzlib.build(None)
    times, raw_bytes, z_bytes = [], 0, 0
    for img in images:
        segs = rgb565z.segments(img.payload, chunk)
        out = bytearray(len(img.payload))
        mv = memoryview(out)
        t = time.perf_counter()
        inf = zinflate.Inflater(len(out), chunk, P.Z_WBITS)
        for seg in segs:
            n = inf.next_len()
            inf.segment(seg, mv[inf.done:inf.done + n])
        times.append((time.perf_counter() - t) * 1000.0)
        assert bytes(out) == img.payload
        raw_bytes += len(img.payload)
        z_bytes += sum(len(s) for s in segs)
    return median(times), raw_bytes / float(z_bytes)


def repeat_metrics(jobs, replies, wire, payload, wire_at_first_result, images, baud,
                   result_bytes):
    line_rate = baud / 10.0
    t0 = min(j.t_begin for j in jobs)
    t1 = max(j.t_done for j in jobs if j.t_done is not None)
    link_seconds = t1 - t0
    done = sorted(j.t_done for j in jobs if j.t_done is not None)
    per_image_payload = payload / float(len(images))
    per_image_wire = wire / float(len(images))
    steady_images = (wire - wire_at_first_result) / per_image_wire
    interval = (done[-1] - done[0]) / steady_images if steady_images > 0 else None
    results = [replies[k][0] for k in sorted(replies) if replies[k][0] is not None]
    errors = [replies[k][1] for k in sorted(replies) if replies[k][1] is not None]
    out = {
        "images": len(images), "errors": len(errors),
        "payload_bytes": payload, "wire_bytes": wire,
        "link_seconds": link_seconds,
        "images_per_second": len(images) / link_seconds,
        "efficiency": payload / link_seconds / line_rate,
        "interval_ms": interval * 1000.0 if interval is not None else None,
        "steady_images_per_second": 1.0 / interval if interval else None,
        "steady_efficiency": per_image_payload / interval / line_rate if interval else None,
        "line_ms_per_image": per_image_wire / line_rate * 1000.0,
        "payload_bytes_per_image": per_image_payload,
        "kpu_ms": median([r["kpu_ms"] for r in results]),
        "prep_ms": median([r["prep_ms"] for r in results]),
        "decode_ms": median([r["decode_ms"] for r in results]),
        "result_tx_ms": result_bytes / line_rate * 1000.0,
        "first_result_ms": (min(done) - t0) * 1000.0 if done else None,
    }
    return out


def host_cost(manifest, paths, payload, images, replies):
    """Per image host work of serial_eval (after the board is done), in ms."""
    from host import compare, pixels
    from host.pipeline import to_chw
    from host.tf_infer import FrozenRunner, load_graph_def
    width, height = manifest["input"]["width"], manifest["input"]["height"]
    prep = []
    for path in paths:
        t = time.perf_counter()
        eval_inputs.prepare(path, width, height, payload)
        prep.append((time.perf_counter() - t) * 1000.0)
    fp = manifest["frozen_pb"]
    t = time.perf_counter()
    runner = FrozenRunner(load_graph_def(manifest.path_of("frozen_pb")), fp["input_node"],
                          fp["output_nodes"])
    setup_ms = (time.perf_counter() - t) * 1000.0
    shapes = [o["shape_chw"] for o in manifest["outputs"]]
    params = compare.decoder_params(manifest)
    tf_ms, cmp_ms, first_tf = [], [], None
    try:
        for i, img in enumerate(images):
            t = time.perf_counter()
            x = pixels.model_input(img.pixels, manifest["input"])
            host_out = [to_chw(r[0]) for r in runner.run(x[None])]
            dt = (time.perf_counter() - t) * 1000.0
            if first_tf is None:
                first_tf = dt          # the first session.run builds the TF graph's kernels
            else:
                tf_ms.append(dt)
            result, error = replies.get(i, (None, None))
            t = time.perf_counter()
            compare.compare_image(img, host_out, shapes, params, result, error, width, height)
            cmp_ms.append((time.perf_counter() - t) * 1000.0)
    finally:
        runner.close()
    prep_med, tf_med, cmp_med = median(prep), median(tf_ms), median(cmp_ms)
    return {"images": len(images), "prepare_ms": prep_med, "tf_ms": tf_med,
            "compare_ms": cmp_med, "total_ms": prep_med + tf_med + cmp_med,
            "tf_setup_ms": setup_ms, "tf_first_run_ms": first_tf}


def jpeg_quality_study(manifest, paths, qualities):
    """For each JPEG quality: bytes per image, how far the KPU input (Pillow decode -> RGB565
    -> pix_to_ai) is from the exact RGB565 path, and whether TensorFlow still finds the same
    boxes on it (host only: no board involved)."""
    import io
    import numpy as np
    from PIL import Image
    from host import compare, metrics, pixels
    from host.pipeline import to_chw
    from host.tf_infer import FrozenRunner, load_graph_def
    width, height = manifest["input"]["width"], manifest["input"]["height"]
    fp = manifest["frozen_pb"]
    runner = FrozenRunner(load_graph_def(manifest.path_of("frozen_pb")), fp["input_node"],
                          fp["output_nodes"])
    params = compare.decoder_params(manifest)
    shape = manifest["outputs"][0]["shape_chw"]

    def run(px):
        x = pixels.model_input(px, manifest["input"])
        return to_chw(runner.run(x[None])[0][0])

    rows = []
    try:
        exact = []
        sources = []
        for path in paths:
            rgb = pixels.resize(pixels.load_rgb(path), width, height)
            sources.append(rgb)
            px = pixels.through_rgb565(np.asarray(rgb))
            out = run(px)
            exact.append((px, out, compare.decode(params, out, shape)))
        for q in qualities:
            sizes, changed, maxdiff, cos, matches = [], [], [], [], []
            for rgb, (px0, out0, boxes0) in zip(sources, exact):
                buf = io.BytesIO()
                rgb.save(buf, "JPEG", quality=q)
                data = buf.getvalue()
                sizes.append(len(data))
                with Image.open(io.BytesIO(data)) as im:
                    px = pixels.through_rgb565(np.asarray(im.convert("RGB")))
                diff = np.abs(px.astype(np.int16) - px0.astype(np.int16))
                changed.append(float(np.mean(diff.max(axis=2) > 0)))
                maxdiff.append(int(diff.max()))
                out = run(px)
                cos.append(metrics.tensor_metrics(out, out0)["cos"])
                matches.append(metrics.match_detections(compare.decode(params, out, shape),
                                                        boxes0))
            pooled = metrics.pool_matches(matches)
            rows.append({"quality": q, "bytes_per_image": statistics.mean(sizes),
                         "ratio_to_rgb565": 2.0 * width * height / statistics.mean(sizes),
                         "pixels_changed": statistics.mean(changed),
                         "max_level_diff": max(maxdiff),
                         "tf_cos_vs_exact": min(cos),
                         "tf_f1_vs_exact": pooled["f1"]})
    finally:
        runner.close()
    return rows


def main(argv):
    with open(argv[0]) as f:
        spec = json.load(f)
    manifest = manifest_mod.load(spec["manifest"])
    width, height = manifest["input"]["width"], manifest["input"]["height"]
    paths = eval_inputs.list_images(spec["images"], spec["count"])
    images = eval_inputs.prepare_all(paths, width, height,
                                     eval_inputs.pixel_payload(spec["payload"]))
    fmt = P.FMT_RGB565Z if spec["payload"] == "rgb565z" else None
    baud = spec["baud"]
    config = provision(spec["state"], manifest, baud, spec["read_buf_len"])
    out = {"spec": spec, "kmodel_bytes": manifest["kmodel"]["size"],
           "loadavg_start": os.getloadavg()}
    t_boot = time.monotonic()
    link = transport.open_link(transport.PortSpec(transport.VIRTUAL, transport.VIRTUAL, 0),
                               manifest, baud, vboard_state=spec["state"])
    repeats = []
    last_replies = {}
    try:
        sess = session.Session(link.ser, link.name, baud, timeout=30.0, booting=True,
                               boot_time=60.0)
        for r in range(spec["repeats"]):
            sess.connect()             # HELLO: the board restarts its ACK count
            sess.booting = False       # later repeats: the board is serving; HELLO at once
            if r == 0:
                sess.check_model(manifest, manifest.path)
                out["boot_seconds"] = time.monotonic() - t_boot
                out["info"] = {k: sess.info.get(k) for k in ("window", "chunk", "rx_buf",
                                                             "baud", "api", "formats")}
                if fmt is not None and "rgb565z" not in sess.info.get("formats", []):
                    raise SystemExit("the virtual board does not announce rgb565z")
            jobs, replies, wire, payload, wire_first = stream_once(
                sess, images, 1 + r * len(images), width, height, fmt)
            repeats.append(repeat_metrics(jobs, replies, wire, payload, wire_first, images,
                                          baud, result_frame_bytes(manifest)))
            last_replies = replies
        crc = [res["input_crc"] == images[k].input_crc
               for k, (res, err) in last_replies.items() if res is not None]
        out["input_crc_equal"] = "%d/%d" % (sum(crc), len(images))
        pix = [res["pixel_crc"] == images[k].pixel_crc
               for k, (res, err) in last_replies.items() if res is not None]
        out["pixel_crc_equal"] = "%d/%d" % (sum(pix), len(images))
        if fmt is not None:
            out["inflate_ms_host"], out["compression_ratio"] = inflate_study(
                images, sess.info["chunk"])
        sess.close()
    finally:
        link.close()
    out["repeats"] = repeats
    keys = [k for k in repeats[0] if isinstance(repeats[0][k], (int, float))]
    out["median"] = {k: median([r[k] for r in repeats]) for k in keys}
    out["config"] = {"read_buf_len": config["read_buf_len"], "baud": config["baud"]}
    if spec.get("host_cost"):
        out["host_cost"] = host_cost(manifest, paths, eval_inputs.pixel_payload(spec["payload"]),
                                     images, last_replies)
    if spec.get("jpeg_qualities"):
        out["jpeg_quality"] = jpeg_quality_study(manifest, paths, spec["jpeg_qualities"])
    out["loadavg_end"] = os.getloadavg()
    with open(argv[1], "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
