# Runs on MicroPython 1.11 (float32) with the K210 stand-ins (tests/mpy_standins): device/
# detect.py, boot.py and main.py as the firmware runs them. One case from stdin (JSON); out:
# one JSON line (tests/mpy_harness.py).
import gc
import sys
import ujson
import standin


def run(case):
    op = case["op"]
    if op == "check_config":
        import detect
        return [detect.check_config(c) for c in case["configs"]]
    standin.LINE_IN = case.get("line_in")
    standin.LINE_OUT = case.get("line_out")
    standin.JPEG_DIR = case.get("jpeg_dir")
    standin.SENSOR_SEED = case.get("seed", 1)
    standin.GRAY_TABLE = case.get("gray_table")
    import maix
    maix.SHAPES = [tuple(o["shape"]) for o in case["cfg"]["outputs"]] if "cfg" in case else []
    maix.CHANNELS = case["cfg"]["input"].get("channels", 3) if "cfg" in case else 3
    if op == "serve":
        import detect
        # other heap layouts: `pad` objects of 1..4 GC blocks kept for the session, made
        # before serve() (the firmware build, paths and boot state move the layout on a board)
        pad = [bytearray(16 + 48 * (i % 4)) for i in range(case.get("pad", 0))]
        server = detect.serve(case["cfg"])
        pad = None
        return {"images": server.images}
    if op == "live":
        import live
        import image
        import lcd
        n = live.live(case["cfg"], frames=case["frames"])
        return {"frames": n, "shown": lcd.shown, "drawn": image.drawn}
    if op == "start":
        # the firmware's start-up (maixpy_main.c): boot.py, then main.py, from the cwd
        for name in ("boot.py", "main.py"):
            with open(case["device"] + "/" + name) as f:
                code = f.read()
            exec(code, {"__name__": "__main__"})
        return {}
    raise ValueError("unknown op " + op)


case = ujson.loads(sys.stdin.read())
if case.get("gc_threshold"):
    gc.threshold(case["gc_threshold"])
result = run(case)
gc.collect()
print(ujson.dumps({"result": result, "peak": standin.peak, "heap": gc.mem_alloc() + gc.mem_free()}))
