# k210-deploy boot.py - safe start (MicroPython 1.11 dialect).
# Runs on every boot and every soft reset (including the Ctrl-D of upload
# tools), so it never loops and never starts a mode: it only checks
# config.json and says what main.py will do. main.py starts the configured
# mode after a grace period that Ctrl-C / any key / a `noautostart` file
# cancels (docs/protocol.md, "Boot and interruption").
import gc

try:
    import detect as _detect
    try:
        _cfg = _detect.load_config()
        _bad = _detect.check_config(_cfg)
        if _bad:
            print("k210-deploy boot: config.json: " + "; ".join(_bad))
        else:
            print("k210-deploy boot: %s mode, model from %s, %d baud"
                  % (_cfg["mode"], _cfg["model"]["source"], _cfg["baud"]))
        del _cfg, _bad
    except Exception as _e:
        print("k210-deploy boot: %s" % _e)
    del _detect
except Exception as _e:
    print("k210-deploy boot: detect.py not usable: %s" % _e)
gc.collect()
