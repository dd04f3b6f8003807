"""Firmware modules for board code, built fresh at every (soft) boot.

`make(name, board)` returns the module a board script gets for `import name`, or None
when the firmware has no such built-in (then the board's filesystem is searched). The
u-prefixed MicroPython names and their plain aliases give the same module object. `Maix`
(MaixPy-v1) and `maix` (CanMV) are different names on different firmwares: no alias.
"""
import importlib

from host.vboard.shims import (kpu_api, kpu_legacy, lcd, machine, misc, sensor, uos, usys,
                               utime, uzlib)

# firmware name -> canonical name
_ALIASES = {
    "time": "utime", "os": "uos", "binascii": "ubinascii", "struct": "ustruct",
    "json": "ujson", "hashlib": "uhashlib", "usys": "sys",
    "collections": "ucollections", "random": "urandom", "re": "ure", "errno": "uerrno",
    "io": "uio", "array": "uarray", "heapq": "uheapq", "zlib": "uzlib",
}

# MicroPython built-ins whose CPython counterparts behave alike for device code
_STDLIB = {"math": "math", "ucollections": "collections", "urandom": "random", "ure": "re",
           "uerrno": "errno", "uio": "io", "uarray": "array", "uheapq": "heapq"}

# The virtual board's floats are CPython doubles, so device/decoders.py imports float32 for
# the board's binary32 arithmetic (a real board, MICROPY_FLOAT_IMPL_FLOAT, never does). That
# emulation stands for the silicon, like the KPU: the host's module, whose expf is libm's
# as on the host. A copy loaded from /flash under board rules could not import ctypes and
# fell back to exp() in double rounded once, 1 ulp off expf now and then (a classifier's
# top-k differed from the host's decode of the same tensor).
_SILICON = {"float32": "device.float32"}

_BUILDERS = {
    "sys": usys.build, "machine": machine.build, "utime": utime.build, "uos": uos.build,
    "sensor": sensor.build,
    "lcd": lcd.build, "image": misc.build_image, "fpioa_manager": misc.build_fpioa_manager,
    "micropython": misc.build_micropython, "gc": misc.build_gc, "utils": misc.build_utils,
    "ubinascii": misc.build_ubinascii, "ustruct": misc.build_ustruct,
    "ujson": misc.build_ujson, "uhashlib": misc.build_uhashlib, "uctypes": misc.build_uctypes,
    "maix": kpu_api.build_maix, "Maix": kpu_api.build_Maix, "KPU": kpu_legacy.build_legacy,
    "uzlib": uzlib.build,
}


def make(name, board):
    canonical = _ALIASES.get(name, name)
    if canonical in board.session.modules:
        return board.session.modules[canonical]
    if canonical in _STDLIB:
        module = __import__(_STDLIB[canonical])
    elif canonical in _SILICON:
        module = importlib.import_module(_SILICON[canonical])
    elif canonical in _BUILDERS:
        module = _BUILDERS[canonical](board)
    else:
        return None
    if module is not None:
        board.session.modules[canonical] = module
    return module

