"""What runs on the board, read through the raw REPL before anything is written, and whether
it can load this build's kmodel (host.firmware.check_loadable).

The probe reports sys.implementation, os.uname(), sys.platform, the KPU API generation
(detected like device/kpu_model.py: `maix.KPU` with load_kmodel/run_with_output, or a KPU
object with load/run/get_outputs, else `import KPU` with load/forward), `utils.heap_free()`
of `maix` (CanMV) or `Maix` (MaixPy-v1), `gc.mem_free()`, whether `utils.flash_read` exists, the mounted filesystems and the
free space of /flash. The KPU API names the firmware profile (the kmodel versions it loads).
"""
import json

from host import firmware, kmodel
from host.errors import UserError
from host.rawrepl import ExecError, ReplError

# KPU API generation -> the firmware profile that offers it (as host/session.py reads INFO)
API_PROFILE = {firmware.API_CANMV_NEW: "canmv-v5", firmware.API_CANMV_OLD: "canmv",
               firmware.API_LEGACY: "maixpy-v4"}

PROBE = """\
import sys, gc, ujson
_r = {'impl': sys.implementation.name, 'impl_version': list(sys.implementation.version),
      'platform': sys.platform}
try:
    import uos
    _u = uos.uname()
    _r['uname'] = {'sysname': _u.sysname, 'release': _u.release, 'version': _u.version,
                   'machine': _u.machine}
    _r['mounts'] = uos.listdir('/')
    try:
        _s = uos.statvfs('/flash')
        _r['flash_free'] = _s[0] * _s[3]
    except Exception:
        _r['flash_free'] = None
except Exception as _e:
    _r['uname'] = None
_r['api'] = None
try:
    from maix import KPU as _K
    _d = dir(_K)
    if 'load_kmodel' in _d and 'run_with_output' in _d:
        _r['api'] = 'canmv-old'
    else:
        _d = dir(_K())
        if 'load' in _d and 'run' in _d and 'get_outputs' in _d:
            _r['api'] = 'canmv-new'
    del _d, _K
except ImportError:
    pass
if _r['api'] is None:
    try:
        import KPU as _K
        _d = dir(_K)
        if 'load' in _d and 'forward' in _d:
            _r['api'] = 'maixpy-kpu'
        del _d, _K
    except ImportError:
        pass
_r['heap_free'] = None
_r['flash_read'] = False
for _m in ('maix', 'Maix'):
    try:
        _ut = __import__(_m).utils
        _r['heap_free'] = _ut.heap_free()
        _r['flash_read'] = 'flash_read' in dir(_ut)
        break
    except Exception:
        pass
gc.collect()
_r['gc_free'] = gc.mem_free()
print(ujson.dumps(_r))
del _r
"""


def probe(repl, name):
    """The board's facts as a dict (see PROBE); UserError when the REPL does not answer."""
    try:
        out = repl.exec(PROBE, timeout=15.0)
    except ExecError as exc:
        raise UserError("the board on %s runs MicroPython but the probe failed: %s"
                        % (name, exc))
    except ReplError as exc:
        raise UserError("the board on %s stopped answering while being probed: %s"
                        % (name, exc))
    lines = [l for l in out.splitlines() if l.startswith("{")]
    try:
        info = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise UserError("the board on %s answered the probe with %r: is it MaixPy/CanMV?"
                        % (name, out[-120:]))
    info["profile"] = API_PROFILE.get(info.get("api"))
    return info


def describe(info):
    """One line: 'MicroPython 1.11.0 (MaixPy 1.0.5-feat_kpu), KPU API canmv-new -> firmware
    profile canmv-v5, heap 400000 B free'."""
    u = info.get("uname") or {}
    text = "%s %s" % (info.get("impl", "?"),
                      ".".join(str(v) for v in info.get("impl_version") or []))
    if u:
        text += " (%s %s)" % (u.get("sysname", "?"), u.get("release", "?"))
    text += ", KPU API %s" % (info.get("api") or "none")
    if info.get("profile"):
        text += " -> firmware profile %s" % info["profile"]
    if info.get("heap_free") is not None:
        text += ", heap %d B free" % info["heap_free"]
    return text


def model_needs(kmodel_bytes):
    """(version, model size, working memory) of a kmodel."""
    info = kmodel.parse(kmodel_bytes)
    return info["version"], len(kmodel_bytes), kmodel.working_memory(info)


def problem(info, kmodel_bytes):
    """Why the board's firmware cannot load the kmodel (or it does not fit the heap the board
    reports; without that report the heap is not judged: the profiles' budgets are
    estimates); None when it can."""
    if info.get("impl") != "micropython":
        return "the board is not running MicroPython (%s)" % info.get("impl")
    if info.get("api") is None:
        return ("the firmware has no KPU module (no maix.KPU, no KPU): flash a MaixPy or CanMV "
                "build with KPU support (FIRMWARE=...)")
    version, size, work = model_needs(kmodel_bytes)
    profile = firmware.get_profile(info["profile"])
    if info.get("heap_free") is not None:
        profile["heap_budget"] = int(info["heap_free"])
    else:
        # the profiles' budgets are estimates: only what the board reports refuses a model
        profile["heap_budget"] = None
    try:
        firmware.check_loadable(profile, version, size, work)
        firmware.check_outputs(profile, len(kmodel.parse(kmodel_bytes)["outputs"]))
    except UserError as exc:
        return str(exc)
    return None


def check(info, kmodel_bytes, name):
    """UserError unless the board's firmware can load the kmodel and it fits."""
    why = problem(info, kmodel_bytes)
    if why:
        raise UserError("refused before writing anything to %s (%s): %s (--force flashes "
                        "anyway)" % (name, describe(info), why))
