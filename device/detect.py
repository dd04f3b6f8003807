# k210-deploy device program: serve mode (serial evaluation server on the REPL
# UART, docs/protocol.md) and live mode (camera -> KPU -> boxes on the LCD).
# MicroPython 1.11 dialect (MaixPy-v1 / CanMV). The entry point: config, serve(), live(),
# main(); the KPU wrapper is kpu_model.py, the serve loop server.py. The host imports this
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
    from kpu_model import Model, decode_boxes, forget_kept_model
except ImportError:
    from device.kpu_model import Model, decode_boxes, forget_kept_model
try:
    from server import Server
except ImportError:
    from device.server import Server
try:
    from clock import since, ticks
except ImportError:
    from device.clock import since, ticks

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


# ------------------------------------------------------------------ live
def _clip(v, lo, hi):
    return lo if v < lo else (hi if v > hi else v)


def _own_ctrl_c():
    """The REPL UART with the firmware's Ctrl-C turned off, or None. A Ctrl-C the firmware
    sees while code runs makes CanMV free every KPU buffer 400 ms later (the kept model's
    included, its runtime context lost): live mode watches for the byte itself."""
    try:
        import machine
        import micropython
        uart = machine.UART.repl_uart()
        micropython.kbd_intr(-1)
        return uart
    except Exception:
        return None


def _ctrl_c_seen(uart):
    if uart is None or not uart.any():
        return False
    data = uart.read()
    if not data or 3 not in data:
        return False
    time.sleep_ms(100)          # a host sends Ctrl-C twice: take the second one here too
    if uart.any():
        uart.read()
    return True


def live(cfg, frames=0):
    """Live mode: sensor -> KPU -> decoder -> boxes + FPS on the LCD.
    Ctrl-C stops it (seen by this loop between frames, not by the firmware: _own_ctrl_c);
    frames > 0 stops after that many."""
    import sensor
    import lcd
    w = cfg["input"]["width"]
    h = cfg["input"]["height"]
    lcd.init()
    decoders.prepare(cfg["decoder"]["type"])
    model = Model(cfg)
    if not model.loaded():
        print("k210-deploy live: " + model.error)
        try:
            lcd.draw_string(4, 4, model.error[:38], lcd.RED, lcd.BLACK)
        except Exception:
            pass
        return None
    sensor.reset()
    # a grayscale model gets GRAYSCALE frames: the DVP fills pix_ai with w*h luminance bytes
    sensor.set_pixformat(sensor.GRAYSCALE if cfg["input"].get("channels", 3) == 1
                         else sensor.RGB565)
    sensor.set_framesize(sensor.QVGA)
    if w > 320 or h > 240:
        print("k210-deploy live: model input %dx%d is larger than QVGA" % (w, h))
        return None
    if w % 8 or h % 8:
        # py_sensor.c: py_sensor_set_windowing takes multiples of 8 only
        print("k210-deploy live: model input %dx%d: the camera window needs multiples of 8"
              % (w, h))
        return None
    if w != 320 or h != 240:
        sensor.set_windowing((w, h))
    sensor.skip_frames(time=500)
    labels = cfg["decoder"].get("labels") or []
    decoded = None
    if cfg["decoder"]["type"] in ("classify", "segment"):
        try:     # serve mode never loads it
            from live_draw import LiveDraw
        except ImportError:
            from device.live_draw import LiveDraw
        decoded = LiveDraw(cfg)
    n = 0
    fps = 0.0
    t_last = ticks()
    uart = _own_ctrl_c()
    try:
        while frames <= 0 or n < frames:
            if _ctrl_c_seen(uart):
                print("k210-deploy live: Ctrl-C: REPL")
                break
            img = sensor.snapshot()
            outs = model.run(img)
            boxes = decode_boxes(cfg, outs)
            if decoded is not None:
                decoded.draw(img, outs, boxes)
                boxes = ()
            for b in boxes:
                x0 = int(_clip(b[0], 0.0, 1.0) * w)
                y0 = int(_clip(b[1], 0.0, 1.0) * h)
                x1 = int(_clip(b[2], 0.0, 1.0) * w)
                y1 = int(_clip(b[3], 0.0, 1.0) * h)
                img.draw_rectangle(x0, y0, max(1, x1 - x0), max(1, y1 - y0), color=(255, 0, 0))
                c = int(b[5])
                name = labels[c] if c < len(labels) else str(c)
                img.draw_string(x0 + 2, y0 + 2, "%s %.2f" % (name, b[4]), color=(255, 255, 0))
            dt = since(t_last)
            t_last = ticks()
            if dt > 0:
                fps = 0.9 * fps + 100.0 / dt if fps else 1000.0 / dt
            img.draw_string(2, 2, "%.1f fps" % fps, color=(0, 255, 0))
            lcd.display(img)
            n += 1
            outs = None
    finally:
        if uart is not None:
            import micropython
            micropython.kbd_intr(3)
        model.close()
    return n


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
        return live(cfg)
    except KeyboardInterrupt:
        forget_kept_model()
        raise
