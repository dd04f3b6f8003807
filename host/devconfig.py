"""The device config: the JSON dict that goes to `/flash/config.json` beside boot.py/main.py.

Every number comes from the manifest (docs/design.md) or from a device setting given here once;
device/detect.py reads it on the board (`detect.check_config` validates it on both sides).
Format: docs/protocol.md, section "Device config".
"""
import json
import posixpath

from host.errors import UserError

SCHEMA = 1
MODES = ("serve", "live")
MODEL_SOURCES = ("flash", "file")
DEFAULT_BAUD = 1500000
REPL_BAUD = 115200            # the REPL's speed after a (soft) reset
DEFAULT_READ_BUF_LEN = 32768  # UART receive ring on the board (GC heap); window = this - 64
MAX_READ_BUF_LEN = 65534      # the firmware keeps read_buf_len in 16 bits
DEFAULT_GRACE_MS = 1500       # main.py waits this long at 115200 before starting a mode
BAUD_RANGE = (9600, 8000000)
FILE_ROOTS = ("/flash/", "/sd/")


def _get(manifest, *keys):
    node = manifest
    for k in keys:
        if not isinstance(node, dict) or k not in node:
            raise UserError("manifest has no %s: run `make kmodel` again" % ".".join(keys))
        node = node[k]
    return node


def _int(value, what):
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError("manifest %s must be an integer, got %r" % (what, value))
    return value


def device_config(manifest, mode="serve", baud=DEFAULT_BAUD, model_source="flash",
                  model_path=None, read_buf_len=DEFAULT_READ_BUF_LEN,
                  grace_ms=DEFAULT_GRACE_MS, input_crc="auto"):
    """The dict for /flash/config.json.

    model_source 'flash': the kmodel is read from its flash address (manifest flash.address)
    with its size (manifest kmodel.size); 'file': from model_path on the board (default
    /flash/<kmodel file name>)."""
    if mode not in MODES:
        raise UserError("mode must be one of %s, not %r" % (", ".join(MODES), mode))
    if model_source not in MODEL_SOURCES:
        raise UserError("model source must be one of %s, not %r"
                        % (", ".join(MODEL_SOURCES), model_source))
    if isinstance(baud, bool) or not isinstance(baud, int) or \
            not BAUD_RANGE[0] <= baud <= BAUD_RANGE[1]:
        raise UserError("baud must be an integer in %d..%d, not %r" % (BAUD_RANGE + (baud,)))
    if isinstance(read_buf_len, bool) or not isinstance(read_buf_len, int) or \
            not 1024 <= read_buf_len <= MAX_READ_BUF_LEN:
        raise UserError("read_buf_len must be 1024..%d (the firmware stores it in 16 bits), "
                        "not %r" % (MAX_READ_BUF_LEN, read_buf_len))
    if input_crc not in ("auto", "lut", "off"):
        raise UserError("input_crc must be auto, lut or off, not %r" % (input_crc,))

    kmodel = _get(manifest, "kmodel")
    size = _int(_get(manifest, "kmodel", "size"), "kmodel.size")
    if size <= 0:
        raise UserError("manifest kmodel.size is %d: run `make kmodel` again" % size)
    model = {"source": model_source, "size": size,
             "sha256": _get(manifest, "kmodel", "sha256"),
             "version": _int(_get(manifest, "kmodel", "version"), "kmodel.version")}
    if model_source == "flash":
        address = _int(_get(manifest, "flash", "address"), "flash.address")
        if address <= 0:
            raise UserError("manifest flash.address is %d: a kmodel cannot live at 0 "
                            "(the firmware is there)" % address)
        model["address"] = address
    else:
        path = model_path or "/flash/" + posixpath.basename(kmodel.get("path", "model.kmodel"))
        if not path.startswith(FILE_ROOTS) or path.endswith("/"):
            raise UserError("model path on the board must be a file under /flash/ or /sd/, "
                            "not %r" % (path,))
        model["path"] = path

    inp = _get(manifest, "input")
    width = _int(_get(manifest, "input", "width"), "input.width")
    height = _int(_get(manifest, "input", "height"), "input.height")
    channels = _int(inp.get("channels", 3), "input.channels")
    if channels not in (1, 3):
        raise UserError("manifest input.channels is %d: the K210 feeds the KPU 3 (RGB) or 1 "
                        "(grayscale) channels; run `make kmodel` again" % channels)

    outputs = []
    for i, out in enumerate(_get(manifest, "outputs")):
        shape = out.get("shape_chw") if isinstance(out, dict) else None
        if not isinstance(shape, list) or len(shape) != 3 or \
                not all(isinstance(v, int) and v > 0 for v in shape):
            raise UserError("manifest outputs[%d].shape_chw must be [C, H, W]: run "
                            "`make kmodel` again" % i)
        outputs.append({"node": out.get("node", "output%d" % i), "shape": list(shape)})
    if not outputs:
        raise UserError("manifest lists no outputs: run `make kmodel` again")

    dec = _get(manifest, "decoder")
    dtype = dec.get("type", "raw")
    if dtype not in ("yolo2", "grid", "raw"):
        raise UserError("manifest decoder.type %r is not one of yolo2, grid, raw" % (dtype,))
    decoder = {"type": dtype,
               "anchors": list(dec.get("anchors") or []),
               "classes": dec.get("classes", 1),
               "labels": list(dec.get("labels") or []),
               "threshold": dec.get("threshold", 0.5),
               "nms": dec.get("nms", 0.3)}

    return {
        "schema": SCHEMA,
        "mode": mode,
        "baud": baud,
        "repl_baud": REPL_BAUD,
        "read_buf_len": read_buf_len,
        "grace_ms": grace_ms,
        "input_crc": input_crc,
        "firmware": _get(manifest, "firmware"),
        "model": model,
        "input": {"width": width, "height": height, "channels": channels},
        "outputs": outputs,
        "decoder": decoder,
    }


def to_json(config):
    """Compact, stable JSON text for the board (ujson reads it)."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"))
