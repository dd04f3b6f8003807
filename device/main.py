# k210-deploy main.py - starts the mode config.json asks for (serve or live)
# after a grace period at the REPL speed. Staying in the REPL instead:
#   - press Ctrl-C or any key during the grace period (upload tools do), or
#   - create a file `noautostart` beside this one (or in /sd, /flash).
# Serve mode leaves on the protocol's EXIT message; live mode on Ctrl-C.
# MicroPython 1.11 dialect.


def _start():
    import utime
    try:
        import detect
    except Exception as e:
        print("k210-deploy: detect.py not usable: %s" % e)
        return
    try:
        cfg = detect.load_config()
    except Exception as e:
        print("k210-deploy: %s" % e)
        return
    bad = detect.check_config(cfg)
    if bad:
        print("k210-deploy: config.json: " + "; ".join(bad))
        return
    skip = detect.skip_autostart()
    if skip:
        print("k210-deploy: %s exists: staying in the REPL" % skip)
        return
    grace = cfg.get("grace_ms", 1500)
    uart = None
    try:
        import machine
        uart = machine.UART.repl_uart()
    except Exception:
        pass
    print("k210-deploy: %s mode in %d ms (Ctrl-C or any key: stay in the REPL)"
          % (cfg["mode"], grace))
    t0 = utime.ticks_ms()
    while utime.ticks_diff(utime.ticks_ms(), t0) < grace:
        if uart is not None and uart.any():
            print("k210-deploy: key pressed: staying in the REPL")
            return
        utime.sleep_ms(20)
    detect.main(cfg)


try:
    _start()
except KeyboardInterrupt:
    print("k210-deploy: interrupted: REPL")
