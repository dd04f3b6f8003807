# k210-deploy live mode: camera -> KPU -> decoder -> boxes (labels, masks) on the LCD.
# MicroPython 1.11 dialect. Imported by detect.main() only in live mode, so a serving board's
# GC heap never holds this bytecode.
try:
    import utime as time
except ImportError:  # pragma: no cover - the board always has utime
    import time
try:
    import decoders
except ImportError:
    from device import decoders
try:
    from kpu_model import Model, decode_boxes
except ImportError:
    from device.kpu_model import Model, decode_boxes
try:
    from clock import since, ticks
except ImportError:
    from device.clock import since, ticks


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
