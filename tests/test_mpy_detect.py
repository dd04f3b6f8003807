"""device/detect.py, boot.py and main.py on the board's interpreter (MicroPython 1.11, float32)
with K210 stand-ins written for MicroPython (tests/mpy_standins, after the firmware's C
source): config checking against the host's import, the serve loop over a stand-in UART for
several images in every payload mode (each RESULT checked against the host's computation from
the same pixels: outputs, boxes bit for bit, CRCs), protocol trouble in the stream, the
live-mode drawing path, and the firmware's start-up (boot.py then main.py)."""
import binascii
import copy
import os
import struct

import numpy as np
import pytest

from device import decoders
from device import detect, kpu_model
from device import float32
from device import protocol as P
from device import protocol_host as PH
from host import rgb565z
import mpy_board as B
import mpy_harness as H

pytestmark = H.needs_micropython


def config_cases():
    good = B.config(32, 24, "yolo2", (12, 3, 4))
    cases = [good, B.config(32, 24, "grid", (5, 3, 4), mode="live"), [], "text", None]
    edits = [("mode", "batch"), ("baud", 0), ("baud", True), ("baud", 1.5e6),
             ("read_buf_len", 1023), ("read_buf_len", 65535), ("read_buf_len", 65534),
             ("read_buf_len", 1024), ("model", None), ("input", {"width": 32}),
             ("input", {"width": 32, "height": 24, "channels": 2}),
             ("input", {"width": 32, "height": 24, "channels": 1}),
             ("outputs", []), ("outputs", [{"shape": [5, 3]}]), ("outputs", [{"shape": [5, 0, 3]}]),
             ("outputs", [{"shape": [5, 3.0, 3]}]), ("outputs", ["x"]), ("decoder", {"type": "ssd"}),
             ("decoder", None)]
    for key, value in edits:
        c = copy.deepcopy(good)
        if value is None:
            del c[key]
        else:
            c[key] = value
        cases.append(c)
    for model in ({"source": "file", "path": ""}, {"source": "file", "path": "/sd/m.kmodel"},
                  {"source": "flash", "address": 0, "size": 10}, {"source": "usb"},
                  {"source": "flash", "address": 4096, "size": -1}):
        c = copy.deepcopy(good)
        c["model"] = model
        cases.append(c)
    return cases


def test_config_checking_agrees():
    cases = config_cases()
    board = H.run("detect_cases.py", {"op": "check_config", "configs": cases})["result"]
    host = [detect.check_config(c) for c in cases]
    assert board == host
    assert sum(1 for b in host if b) >= 20 and host[0] == []


def serve_run(tmp_path, cfg, build):
    """Build the host's stream with build(stream), run serve mode on the board, check."""
    stream = B.Stream(cfg)
    stream.frame(P.T_HELLO, P.pack_json({"proto": 1}))
    build(stream)
    stream.frame(P.T_EXIT)
    line_in, line_out = tmp_path / "line_in", tmp_path / "line_out"
    stream.write(line_in)
    case = {"op": "serve", "cfg": cfg, "line_in": str(line_in), "line_out": str(line_out),
            "jpeg_dir": str(tmp_path)}
    if cfg["input"]["channels"] == 1:
        case["gray_table"] = B.gray_table(tmp_path / "gray_table")
    out, lines = H.run("detect_cases.py", case, output=True)
    frames = B.board_frames(line_out)
    n, diffs, results, errors = B.check_results(cfg, stream, frames)
    return n, diffs, results, errors, frames, out, lines


def test_serve_loop_every_payload_mode(tmp_path):
    rng = np.random.RandomState(5)
    total = 0
    for decoder, shape in (("yolo2", (12, 3, 4)), ("grid", (5, 3, 4)), ("yolo2", (6, 6, 8))):
        cfg = B.config(32, 24, decoder, shape, threshold=0.3)

        def build(stream):
            for k in range(6):
                rgb = B.rgb565_image(rng, 32, 24)
                if k % 2:
                    data, px = B.jpeg_of(rgb, tmp_path)
                    stream.image(10 + k, P.FMT_JPEG, data, px)
                else:
                    px = B.to_rgb565(rgb)
                    flags = [P.F_INPUT_CRC, 0, P.F_INPUT_CRC | P.F_NO_BOXES][k // 2]
                    stream.image(10 + k, P.FMT_RGB565, px, px, flags=flags)

        n, diffs, results, errors, frames, out, lines = serve_run(tmp_path, cfg, build)
        assert not diffs, (decoder, diffs[:3])
        assert not errors, errors
        assert out["result"]["images"] == n == 6
        info = [PH.unpack_json(p) for t, _s, p in frames if t == P.T_INFO]
        assert info and info[0]["model_loaded"] and info[0]["api"] == kpu_model.API_NEW
        assert frames[-1][0] == P.T_BYE
        assert any("exit after 6 images" in l for l in lines), lines
        total += n
        boxes = sum(len(r[0][1]["boxes"]) for r in results.values())
        assert boxes > 0, "the outputs must give boxes to compare"
    print("serve loop: %d images cross-checked, 0 differences" % total)


def test_serve_loop_answers_trouble_and_resends(tmp_path):
    rng = np.random.RandomState(6)
    cfg = B.config(32, 24, "grid", (5, 3, 4), threshold=0.3)

    def build(stream):
        px = B.to_rgb565(B.rgb565_image(rng, 32, 24))
        stream.image(1, P.FMT_RGB565, px, px)
        stream.data += b"\x00garbage\xa5\x5a\x01"             # noise on the line
        stream.frame(P.T_RESEND, PH.pack_resend(1))             # RESULT 1 again
        stream.frame(P.T_RESEND, PH.pack_resend(99))            # never sent: no_result
        stream.image(2, P.FMT_RGB565, px[:100], None, width=10, height=5)   # wrong size
        bad = bytearray(P.encode(P.T_IMAGE_BEGIN, 50, PH.pack_image_begin(3, 0, 1, 32, 24, 1536)))
        bad[-1] ^= 0xFF                                        # CRC broken: NACK
        stream.data += bad
        stream.image(4, P.FMT_JPEG, b"\xff\xd8 not a jpeg", None)   # decodes to 0x0
        stream.image(6, P.FMT_JPEG, b"GIF89a not a jpeg", None)    # ValueError: E_JPEG
        jpeg, jpx = B.jpeg_of(B.rgb565_image(rng, 32, 24), tmp_path)
        stream.image(5, P.FMT_JPEG, jpeg, jpx)

    n, diffs, results, errors, frames, out, lines = serve_run(tmp_path, cfg, build)
    assert not diffs, diffs[:3]
    assert len(results[1]) == 2 and results[1][0][0] == results[1][1][0]   # the same bytes
    names = [(e["name"], e["ref"]) for e in errors]
    assert ("no_result", 99) in names
    assert ("size", 2) in names
    assert ("jpeg", 4) in names and ("jpeg", 6) in names     # a 0x0 decode is E_JPEG too
    assert any(e["name"] == "crc" for e in errors), errors
    assert any("Failed loading source image!" in l for l in lines)   # the firmware's print


def test_serve_loop_resends_both_kept_results_from_two_sets_of_buffers(tmp_path):
    """The board keeps its last RESULT_CACHE (2) RESULTs in as many sets of result buffers
    (uctypes views of array('f'), real here): each new RESULT takes the oldest kept one's set,
    so RESENDs of the two newest give their own bytes again, image after image, and the one
    before them is no_result."""
    rng = np.random.RandomState(8)
    cfg = B.config(32, 24, "grid", (5, 3, 4), threshold=0.3)
    resends = {3: (2, 3, 1), 4: (3, 4, 2), 5: (5, 4, 3)}

    def build(stream):
        for k in range(1, 6):
            px = B.to_rgb565(B.rgb565_image(rng, 32, 24))
            stream.image(k, P.FMT_RGB565, px, px)
            for i in resends.get(k, ()):
                stream.frame(P.T_RESEND, PH.pack_resend(i))

    n, diffs, results, errors, frames, out, lines = serve_run(tmp_path, cfg, build)
    assert n == 5 and not diffs, diffs[:3]
    assert [len(results[k]) for k in range(1, 6)] == [1, 2, 3, 3, 2]
    assert all(len(set(p for p, _r in results[k])) == 1 for k in results), "same bytes"
    assert len(set(results[k][0][0] for k in results)) == 5, "each image its own RESULT"
    assert [(e["name"], e["ref"]) for e in errors] == [("no_result", 1), ("no_result", 2),
                                                        ("no_result", 3)]


def test_serve_loop_jpeg_buffer_ends_where_each_jpeg_ends(tmp_path):
    """The board receives every JPEG into one buffer for the session (docs/design.md "Board
    memory"), JPEG at its start. Past a JPEG the decoder must read what picojpeg reads past the
    end of its input, FF D9 (picojpeg.c: getChar), not the tail of a longer JPEG before it: a
    JPEG cut inside its scan decodes from its own bytes then FF D9 (the stand-in looks the
    pixels up by exactly the bytes the decoder reads), and the images after it are right."""
    rng = np.random.RandomState(9)
    cfg = B.config(32, 24, "grid", (5, 3, 4), threshold=0.3)

    def build(stream):
        noisy = rng.randint(0, 256, (24, 32, 3)).astype(np.uint8)
        big, bpx = B.jpeg_of(noisy, tmp_path)               # a long JPEG first
        stream.image(1, P.FMT_JPEG, big, bpx)
        small, spx = B.jpeg_of(B.rgb565_image(rng, 32, 24), tmp_path)
        cut = small[:len(small) - 40]                       # no EOI: ends inside the scan
        assert len(cut) + 2 < len(big)
        seen = cut + b"\xff\xd9"
        with open(os.path.join(str(tmp_path), "%08x.rgb565" % (binascii.crc32(seen))), "wb") as f:
            f.write(struct.pack("<HH", 32, 24) + spx)
        stream.image(2, P.FMT_JPEG, cut, spx)
        stream.image(3, P.FMT_JPEG, small, spx)
        stream.image(4, P.FMT_JPEG, big, bpx)

    n, diffs, results, errors, frames, out, lines = serve_run(tmp_path, cfg, build)
    assert not errors, errors
    assert n == 4 and not diffs and sorted(results) == [1, 2, 3, 4], diffs[:3]


def test_serve_loop_rgb565z_inflates_into_the_image(tmp_path):
    """rgb565z on the firmware's uzlib: photos-like and noise images (several segments each at
    read_buf_len 4096) give the RESULT of their pixels; a corrupt or mis-cut deflate stream is
    ERROR inflate for that image (the host sends it again), never a RESULT, and the images
    after it are still right. INFO lists rgb565z (the unix port has uzlib)."""
    rng = np.random.RandomState(8)
    cfg = B.config(64, 48, "grid", (5, 3, 4), read_buf_len=4096, threshold=0.3)

    def build(stream):
        px = B.to_rgb565(B.rgb565_image(rng, 64, 48))
        noise = rng.randint(0, 256, 2 * 64 * 48, dtype=np.uint8).tobytes()
        stream.image(1, P.FMT_RGB565Z, px, px)
        stream.image(2, P.FMT_RGB565Z, noise, noise, flags=0)
        segs = rgb565z.segments(px, stream.chunk)
        bad = [bytes([segs[0][0] ^ 0xFF]) + segs[0][1:]] + segs[1:]
        stream.image(3, P.FMT_RGB565Z, bad, None)
        cut = [segs[0][:-20], segs[0][-20:] + segs[1]] + segs[2:]
        stream.image(4, P.FMT_RGB565Z, cut, None)
        stream.image(5, P.FMT_RGB565Z, px[:100], None, width=10, height=5)    # wrong size
        stream.image(6, P.FMT_RGB565Z, px, px)                  # the Image after failures

    n, diffs, results, errors, frames, out, lines = serve_run(tmp_path, cfg, build)
    assert n == 3 and not diffs, diffs[:3]
    assert sorted(results) == [1, 2, 6]
    names = sorted((e["name"], e["ref"]) for e in errors)
    assert names == [("inflate", 3), ("inflate", 4), ("size", 5)], errors
    info = [PH.unpack_json(p) for t, _s, p in frames if t == P.T_INFO][0]
    assert "rgb565z" in info["formats"]


def test_serve_loop_gray8_into_the_grayscale_image(tmp_path):
    """A grayscale model's board (config input.channels 1): gray8 images go into its
    GRAYSCALE Image (made once: Image(size=).to_grayscale()), the KPU runs on the w*h bytes
    pix_to_ai copies, the CRCs are of those bytes. Any other payload is ERROR format, a
    wrong size ERROR size, and the images after them are right; INFO offers gray8 only. An RGB
    model's board refuses a gray8 image (ERROR format) and still runs RGB565 after it."""
    rng = np.random.RandomState(12)
    cfg = B.config(32, 24, "grid", (5, 3, 4), threshold=0.3, channels=1)

    def build(stream):
        for k in range(3):
            gray = rng.randint(0, 256, 32 * 24, dtype=np.uint8).tobytes()
            stream.image(1 + k, P.FMT_GRAY8, gray, gray,
                         flags=[P.F_INPUT_CRC, 0, P.F_INPUT_CRC | P.F_NO_BOXES][k])
        px = B.to_rgb565(B.rgb565_image(rng, 32, 24))
        stream.image(4, P.FMT_RGB565, px, None)
        stream.image(5, P.FMT_GRAY8, gray[:50], None, width=10, height=5)
        stream.image(6, P.FMT_GRAY8, gray[::-1], gray[::-1])

    n, diffs, results, errors, frames, out, lines = serve_run(tmp_path, cfg, build)
    assert n == 4 and not diffs, diffs[:3]
    assert sorted(results) == [1, 2, 3, 6]
    assert sorted((e["name"], e["ref"]) for e in errors) == [("format", 4), ("size", 5)]
    assert "grayscale" in [e for e in errors if e["ref"] == 4][0]["reason"]
    info = [PH.unpack_json(p) for t, _s, p in frames if t == P.T_INFO][0]
    assert info["formats"] == ["gray8"] and "gray8" in info["features"]

    rgb_cfg = B.config(32, 24, "grid", (5, 3, 4), threshold=0.3)

    def build_rgb(stream):
        stream.image(1, P.FMT_GRAY8, bytes(32 * 24), None)
        px = B.to_rgb565(B.rgb565_image(rng, 32, 24))
        stream.image(2, P.FMT_RGB565, px, px)

    n, diffs, results, errors, frames, out, lines = serve_run(tmp_path, rgb_cfg, build_rgb)
    assert n == 1 and not diffs and sorted(results) == [2], diffs[:3]
    assert [(e["name"], e["ref"]) for e in errors] == [("format", 1)]
    assert "RGB" in errors[0]["reason"]


def expected_drawing(cfg, seed, frames):
    """What live mode draws, computed on the host: detect.live's box -> pixel arithmetic in
    the board's float32 (int() of clip(v) * w), labels with '%.2f'."""
    w, h = cfg["input"]["width"], cfg["input"]["height"]
    shape = tuple(cfg["outputs"][0]["shape"])
    labels = cfg["decoder"]["labels"]
    out = []
    bytes_per_pixel = 2 if cfg["input"]["channels"] == 3 else 1
    for f in range(frames):
        px = B.frame_pixels(seed, f, bytes_per_pixel * w * h)
        outs = B.kpu_outputs(B.kpu_input(cfg, px), shape)
        for b in decoders.decode(cfg["decoder"]["type"], outs, shape, cfg["decoder"]):
            c = [int(float32.round32(min(max(v, 0.0), 1.0) * s))
                 for v, s in zip(b[:4], (w, h, w, h))]
            out.append(["rect", [c[0], c[1], max(1, c[2] - c[0]), max(1, c[3] - c[1])]])
            out.append(["text", [c[0] + 2, c[1] + 2, "%s %.2f" % (labels[b[5]], b[4])]])
    return out


@pytest.mark.parametrize("channels", [3, 1])
def test_live_mode_draws_what_the_host_decodes(channels):
    """A grayscale model's live mode takes GRAYSCALE camera frames (set_pixformat): its KPU
    input is the frame's w*h bytes."""
    cfg = B.config(32, 24, "yolo2", (12, 3, 4), mode="live", threshold=0.3, channels=channels)
    out = H.run("detect_cases.py", {"op": "live", "cfg": cfg, "frames": 4, "seed": 3})
    r = out["result"]
    assert r["frames"] == 4 and r["shown"] == 4
    drawn = [d for d in r["drawn"] if not (d[0] == "text" and d[1][2].endswith(" fps"))]
    want = expected_drawing(cfg, 3, 4)
    assert len(want) > 4
    assert drawn == want


def test_start_up_boot_then_main(tmp_path):
    cfg = B.config(32, 24, "grid", (5, 3, 4))
    device = os.path.join(H.REPO, "device")

    def start(files, stream_frames=()):
        d = tmp_path / ("run%d" % len(os.listdir(str(tmp_path))))
        d.mkdir()
        for name, text in files.items():
            (d / name).write_text(text)
        line = b"".join(P.encode(t, k, p) for k, (t, p) in enumerate(stream_frames))
        (d / "line_in").write_bytes(line)
        case = {"op": "start", "device": device, "cfg": cfg, "line_in": str(d / "line_in"),
                "line_out": str(d / "line_out")}
        return H.run("detect_cases.py", case, cwd=d, output=True)[1]

    from host import devconfig
    text = devconfig.to_json(cfg)
    lines = start({"config.json": text}, [(P.T_HELLO, b"{}"), (P.T_EXIT, b"")])
    assert "k210-deploy boot: serve mode, model from flash, 1500000 baud" in lines
    assert any(l.startswith("k210-deploy serve: proto 1") for l in lines)
    assert "k210-deploy serve: exit after 0 images" in lines
    lines = start({"config.json": text, "noautostart": ""})
    assert "k210-deploy: noautostart exists: staying in the REPL" in lines
    broken = dict(cfg, read_buf_len=10)
    lines = start({"config.json": devconfig.to_json(broken)})
    assert any(l.startswith("k210-deploy boot: config.json: read_buf_len") for l in lines)
    assert any(l.startswith("k210-deploy: config.json: read_buf_len") for l in lines)
    lines = start({})
    assert any(l.startswith("k210-deploy boot: config.json not found") for l in lines)
