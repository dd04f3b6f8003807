"""host.firmware's profiles, in the shape the virtual board uses them.

The facts (kmodel versions, KPU API, heap budget, GC heap, error texts) come from
host.firmware only; this module adds what only a board shows: the exception an error
text is raised as, and what os.uname() / the banner report.
"""
import collections
import re

from host import firmware
from host.errors import UserError

Profile = collections.namedtuple("Profile", [
    "name", "kmodel_versions", "api", "heap_bytes", "gc_heap_bytes", "release", "machine",
    "platform", "log_tag", "version_error", "nomem_error", "format_error"])

API = {firmware.API_LEGACY: "legacy", firmware.API_CANMV_OLD: "old",
       firmware.API_CANMV_NEW: "new"}

# The firmware build version each profile stands for: sys.implementation.version and
# os.uname().release (mpconfigport.h: MICROPY_VERSION_* = BUILD_VERSION_*, the firmware's
# own version, not MicroPython's 1.11); unknown names: MaixPy's.
_RELEASES = {"maixpy-v3": (0, 6, 2), "maixpy-v4": (0, 6, 2), "canmv": (1, 0, 5),
             "canmv-v5": (1, 0, 5)}
# mpconfigport.h: MICROPY_PY_SYS_PLATFORM, MICROPY_HW_BOARD_NAME " with " MICROPY_HW_MCU_NAME,
# and the tag of the boot log (maixpy_main.c printk lines)
_FAMILY = {"maixpy": ("MaixPy", "Sipeed_M1 with kendryte-k210", "MAIXPY"),
           "canmv": ("CanMV", "CanMV_Board with kendryte-k210", "CANMV")}


def _as_exception(text, default_type):
    """'OSError: Failed ... (or ...)' -> ('OSError', 'Failed ...'). MaixPy's "[MAIXPY]kpu:
    load error:..." texts carry no type: the firmware raises them as ValueError."""
    text = re.sub(r"\s*\(or .*\)\s*$", "", text)
    m = re.match(r"^([A-Z][A-Za-z]*Error): (.*)$", text)
    if m:
        return m.group(1), m.group(2)
    return default_type, text


def get(name):
    """`name`: a host.firmware profile name, or a dict in host.firmware's profile format
    (with a "name"), e.g. a custom firmware build."""
    try:
        p = firmware.get_profile(name)
    except UserError as exc:
        raise SystemExit(str(exc))
    name = p.get("name", "custom")
    family = "canmv" if p["api"] != firmware.API_LEGACY else "maixpy"
    default = "ValueError" if family == "maixpy" else "OSError"
    version_error = _as_exception(p["errors"]["version"], default)
    platform, machine, log_tag = _FAMILY[family]
    return Profile(
        name=name, kmodel_versions=tuple(p["kmodel_versions"]), api=API[p["api"]],
        heap_bytes=p["heap_budget"], gc_heap_bytes=p["gc_heap"],
        release=_RELEASES.get(name, (0, 6, 2)), machine=machine, platform=platform,
        log_tag=log_tag, version_error=version_error,
        nomem_error=_as_exception(p["errors"]["memory"], default),
        # a file that is no kmodel at all fails in the same loader call
        format_error=version_error)


def names():
    return sorted(firmware.PROFILES)
