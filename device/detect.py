# k210-deploy device program: serve mode (serial evaluation server on the REPL
# UART, docs/protocol.md) and live mode (camera -> KPU -> boxes on the LCD).
# MicroPython 1.11 dialect (MaixPy-v1 / CanMV). The entry point: config, serve(), main();
# the KPU wrapper is kpu_model.py, the serve loop server.py, live mode live.py. The host imports this
# file as device.detect for check_config() only: board modules are imported lazily.
try:
    import ujson as json
except ImportError:
    import json
try:
    import utime as time
except ImportError:  # pragma: no cover - the board always has utime
    import time
try:
    import protocol
except ImportError:
    from device import protocol
try:
    import decoders
except ImportError:
    from device import decoders
try:
    from kpu_model import Model, forget_kept_model
except ImportError:
    from device.kpu_model import Model, forget_kept_model
try:
    from server import Server
except ImportError:
    from device.server import Server

P = protocol
CONFIG_PATHS = ("config.json", "/sd/config.json", "/flash/config.json")
SKIP_FILES = ("noautostart", "/sd/noautostart", "/flash/noautostart")


# ------------------------------------------------------------------ config
def load_config(path=None):
    paths = (path,) if path else CONFIG_PATHS
    last = None
    for p in paths:
        try:
            with open(p) as f:
                return json.load(f)
        except OSError as e:
            last = e
    raise OSError("config.json not found (%s): %s" % (", ".join(paths), last))


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_config(cfg):
    """List of problems (empty when the config is usable)."""
    bad = []
    if not isinstance(cfg, dict):
        return ["config is not a JSON object"]
    if cfg.get("mode") not in ("serve", "live"):
        bad.append("mode must be serve or live")
    if not _is_int(cfg.get("baud")) or cfg.get("baud") <= 0:
        bad.append("baud must be a positive integer")
    rbl = cfg.get("read_buf_len")
    if not _is_int(rbl) or not 1024 <= rbl <= 65534:
        bad.append("read_buf_len must be 1024..65534")
    m = cfg.get("model")
    if not isinstance(m, dict):
        bad.append("model missing")
    else:
        if m.get("source") == "flash":
            if not _is_int(m.get("address")) or m.get("address") <= 0:
                bad.append("model.address must be a positive integer")
            if not _is_int(m.get("size")) or m.get("size") <= 0:
                bad.append("model.size must be a positive integer")
        elif m.get("source") == "file":
            if not isinstance(m.get("path"), str) or not m.get("path"):
                bad.append("model.path missing")
        else:
            bad.append("model.source must be flash or file")
    i = cfg.get("input")
    if not isinstance(i, dict) or not _is_int(i.get("width")) or not _is_int(i.get("height")):
        bad.append("input.width/height missing")
    elif i.get("channels", 3) not in (1, 3):
        bad.append("input.channels must be 3 (RGB) or 1 (grayscale)")
    outs = cfg.get("outputs")
    if not isinstance(outs, list) or not outs:
        bad.append("outputs missing")
    else:
        for k, o in enumerate(outs):
            s = o.get("shape") if isinstance(o, dict) else None
            if not isinstance(s, list) or len(s) != 3 or not all(_is_int(v) and v > 0 for v in s):
                bad.append("outputs[%d].shape must be [C, H, W]" % k)
    d = cfg.get("decoder")
    if not isinstance(d, dict) or d.get("type") not in decoders.KINDS:
        bad.append("decoder.type must be one of " + ", ".join(decoders.KINDS))
    return bad


def skip_autostart():
    import uos
    for p in SKIP_FILES:
        try:
            uos.stat(p)
            return p
        except OSError:
            pass
    return None


def serve(cfg, uart=None):
    """Serve mode on the REPL UART: switch to cfg['baud'], disable Ctrl-C,
    run the protocol until EXIT, then restore the REPL (repl_baud, Ctrl-C)."""
    import machine
    import micropython
    # Ctrl-C off before the model loads: a host that takes the board for one at its REPL
    # sends Ctrl-C, and one that interrupted the load makes CanMV free the KPU objects 400 ms
    # later (maixpy_main.c: deinit_kpu_timer_cb), leaking feat/kpu's runtime context.
    micropython.kbd_intr(-1)
    model = None
    try:
        print("k210-deploy serve: loading the model")
        decoders.prepare(cfg["decoder"]["type"])
        model = Model(cfg)
        if uart is None:
            uart = machine.UART.repl_uart()
        print("k210-deploy serve: proto %d, %d baud, api %s, model %s"
              % (P.VERSION, cfg["baud"], model.api, "ok" if model.loaded() else model.error))
        time.sleep_ms(100)  # let the banner leave at the old speed
        uart.init(cfg["baud"], 8, None, 1, read_buf_len=cfg["read_buf_len"])
        server = Server(cfg, uart, model)
        try:
            server.loop()
            time.sleep_ms(50)  # BYE on the wire before the speed changes
        finally:
            uart.init(cfg.get("repl_baud", 115200), 8, None, 1)
    finally:
        micropython.kbd_intr(3)
        if model is not None:
            model.close()
    print("k210-deploy serve: exit after %d images" % server.images)
    return server


def main(cfg=None):
    if cfg is None:
        cfg = load_config()
    bad = check_config(cfg)
    if bad:
        print("k210-deploy: config.json: " + "; ".join(bad))
        return None
    try:
        if cfg["mode"] == "serve":
            return serve(cfg)
        try:        # live mode's code stays out of a serving board's GC heap
            from live import live
        except ImportError:
            from device.live import live
        return live(cfg)
    except KeyboardInterrupt:
        forget_kept_model()
        raise
