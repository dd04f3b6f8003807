"""Firmware profiles as data: which kmodel versions a K210 firmware loads, its KPU API, how much
memory is left for a model, and what it prints when loading fails.

Two budgets, each computed below from named parts with where each comes from:
- the GC heap (Python objects: images, their KPU buffers, bytes, lists): the firmware's
  config (CONFIG_MAIXPY_GC_HEAP_SIZE), exact;
- the C heap left for a model (`heap_budget`: the whole kmodel is copied into it on load, plus
  the runtime's working memory; for V5, nncase's printed TOTAL covers both). The C heap is the
  6 MiB general RAM (projects/*/compile/kendryte.ld: ram LENGTH 6 MiB; sipeed_mem.c: from
  _heap_start, the end of the image, to _heap_end) minus the firmware image, a build output
  that no source states: so the start is `utils.heap_free()` measured on a booted board of
  that build family (the GC heap is already malloc'ed then: maixpy_main.c), cited per
  profile; from it go the camera's frame buffers (sensor.c, below), which a live-mode script
  mallocs before it loads the model. Where a family has no measurement, the step from a
  measured family is stated (GC heap difference, runtime code added to the image).
`make kmodel` warns against these budgets; `make flash` judges the heap the board reports.
"""
from host.errors import UserError

MIB = 1024 * 1024
GENERAL_RAM = 6 * MIB  # plus 2 MiB KPU RAM, which only the KPU uses
KPU_RAM = 2 * MIB

# Flash layout shared by MaixPy and CanMV: firmware from 0, models usually at 0x300000,
# the /flash SPIFFS file system at 0xD00000 (3 MiB, to the end of the 16 MiB flash).
FLASH_SIZE = 16 * MIB
FLASH_MODEL_ADDRESS = 0x300000
FLASH_FIRMWARE_END = 0x300000  # firmware images are < 3 MiB; models go above
FLASH_SPIFFS_START = 0xD00000
FLASH_SECTOR = 4096

# The MicroPython GC heap, malloc'ed from the C heap at boot (maixpy_main.c: mp_task):
# CONFIG_MAIXPY_GC_HEAP_SIZE in every projects/*/config_defaults.mk, MaixPy-v1 0x80000,
# kendryte/canmv (main and feat/kpu) 0xBB9B0. Python objects (images and their KPU buffers,
# bytes, lists) live there; kmodels and runtime memory are malloc'ed from the C heap
# (Maix_kpu.c / maix_kpu.c), whose free size is the board's utils.heap_free().
MAIXPY_GC_HEAP = 0x80000
CANMV_GC_HEAP = 0xBB9B0

# sipeed/MaixPy-v1 (and kendryte/canmv) omv/sensor.c: sensor_set_framesize mallocs, per frame
# buffer, w*h*OMV_INIT_BPP (2, RGB565) rounded up to 128 bytes plus w*h*3 (pix_ai, planar
# RGB888) rounded up to 64; one buffer unless sensor.reset(dual_buff=True); sized for RGB565
# whatever the pixformat (a GRAYSCALE frame uses part of it). QVGA, one buffer (both sizes are
# multiples of 128 already):
CAMERA_QVGA_BYTES = 320 * 240 * 2 + 320 * 240 * 3
# utils.heap_free() on a booted MaixPy-v1 v0.6.x full build (MaixBit), GC heap 524288:
# sipeed/MaixPy-v1#490 (the same figure family as #422: v0.5.0 Dock, 2052 KB free).
MAIXPY_FULL_HEAP_FREE = 1921024
# kpu.memtest() "free sys heap memory: 3460 KB" on an early v0.4.0 build (sipeed/MaixPy-v1#180),
# the size the minimum builds (no OMV algorithms, V3 only) still have.
MAIXPY_MINIMUM_HEAP_FREE = 3460 * 1024
# CanMV main is MaixPy-v1 0.6 with the maix modules: its image is taken as MaixPy's full
# build's; its larger GC heap (0xBB9B0) comes out of the same C heap.
CANMV_HEAP_FREE = MAIXPY_FULL_HEAP_FREE + MAIXPY_GC_HEAP - CANMV_GC_HEAP
# feat/kpu links nncase's v1.1.0 runtime into the image (kendryte/canmv dd1a143 "Add nncase
# v1.1.0 runtime": libnncase.runtime.a and .rt_modules.k210.a, Release builds of nncase tag
# v1.1.0 = 642cded, the version.h beside them; blobs absent from the public mirror). What V5
# adds to the image, measured by building that source (docs/flash.md, "V5 runtime code"): the
# lib/nncase wrapper with V4 only and with V4+V5, each linked --gc-sections as the firmware is,
# the difference split by input file (GCC 12 bytes), the two nncase archives scaled to the
# kendryte toolchain by the same build of v1.0.0-beta2 against its published archives
# (kendryte-standalone-sdk cd966ff: runtime 559,933 / 580,985, k210 module 27,183 / 28,608).
# kendryte/canmv#34: a V5 model ran out of memory on a full V5 build, the maintainers' advice
# is a minimum-size build (or a smaller GC heap).
NNCASE_V1_RUNTIME_KEPT = 501424       # 520,276 kept by the link, scaled
NNCASE_V1_K210_MODULE_KEPT = 16970    # 17,860 kept, scaled
NNCASE_V1_GLUE = 4108                 # lib/nncase/v1/nncase_v1.cpp
NNCASE_V1_LIBSTDCXX_ADDED = 11575     # iostream is in every image already: v0's interpreter.cpp
NNCASE_V1_LIBC_ADDED = 5818           # libm's float functions, start-up tables
NNCASE_V1_RUNTIME_BYTES = (NNCASE_V1_RUNTIME_KEPT + NNCASE_V1_K210_MODULE_KEPT + NNCASE_V1_GLUE
                           + NNCASE_V1_LIBSTDCXX_ADDED + NNCASE_V1_LIBC_ADDED)

API_LEGACY = "maixpy-kpu"   # `import KPU as kpu`: kpu.load / kpu.forward / kpu.set_outputs
API_CANMV_OLD = "canmv-old"  # `from maix import KPU`: load_kmodel / run_with_output
API_CANMV_NEW = "canmv-new"  # `from maix import KPU`: load(path, size=) / run / get_outputs

# sipeed/MaixPy-v1 Maix/Maix_kpu.c py_kpu_class_load / get_kpu_err_str: builds with
# CONFIG_MICROPYTHON_KMODEL_V4_SUPPORT say "V3/V4", the others "V3".
_MAIXPY_ERRORS = {
    "version": "[MAIXPY]kpu: load error:2002, ERR_KMODEL_VERSION: only support kmodel V3/V4 now",
    "memory": "[MAIXPY]kpu: load error:2006, ERR_NO_MEM: memory not enough "
              "(or 'SYSCALL: Out of memory')",
}
_MAIXPY_V3_ERRORS = dict(
    _MAIXPY_ERRORS,
    version="[MAIXPY]kpu: load error:2002, ERR_KMODEL_VERSION: only support kmodel V3")
# kendryte/canmv@feat/kpu Maix/maix_kpu/maix_kpu.c: k210_kpu_load_kmodel
_CANMV_V5_ERRORS = {
    "version": "OSError: Failed to load model",
    "memory": "MemoryError: Model buffer memory allocation failed "
              "(or 'SYSCALL: Out of memory' then 'OSError: Failed to load model')",
}
# kendryte/canmv@main Maix/maix_kpu/Maix_kpu.c: py_kpu_load_kmodel
_CANMV_ERRORS = {
    "version": "OSError: Failed to init model",
    "memory": "MemoryError: model buffer memory allocation failed "
              "(or 'SYSCALL: Out of memory' then 'OSError: Failed to init model')",
}

PROFILES = {
    "canmv-v5": {
        "description": "CanMV built from branch feat/kpu with CANMV_ENABLE_KMODEL_V5",
        "kmodel_versions": (3, 4, 5),
        "api": API_CANMV_NEW,
        "heap_budget": CANMV_HEAP_FREE - NNCASE_V1_RUNTIME_BYTES - CAMERA_QVGA_BYTES,
        "gc_heap": CANMV_GC_HEAP,
        "errors": _CANMV_V5_ERRORS,
    },
    "canmv": {
        "description": "CanMV main (releases up to v1.0.5), no V5 runtime",
        "kmodel_versions": (3, 4),
        "api": API_CANMV_OLD,
        # kendryte/canmv#39: a ~1 MB model already fails on v1.0.5 (model + working memory)
        "heap_budget": CANMV_HEAP_FREE - CAMERA_QVGA_BYTES,
        "gc_heap": CANMV_GC_HEAP,
        "errors": _CANMV_ERRORS,
        # Maix_kpu.c: py_kpu_run_with_output reads kpu_get_output(ctx, 0, ...) only
        "max_outputs": 1,
    },
    "maixpy-v4": {
        "description": "MaixPy-v1 full builds (maixpy_*.bin) and *kmodel_v4* builds",
        "kmodel_versions": (3, 4),
        "api": API_LEGACY,
        # 2-3 MB models fail with 2006 on full builds (MaixPy-v1#426: 2.9 MB; #317: 1.9 MB)
        "heap_budget": MAIXPY_FULL_HEAP_FREE - CAMERA_QVGA_BYTES,
        "gc_heap": MAIXPY_GC_HEAP,
        "errors": _MAIXPY_ERRORS,
    },
    "maixpy-v3": {
        "description": "MaixPy-v1 minimum builds (V3 only)",
        "kmodel_versions": (3,),
        "api": API_LEGACY,
        # k210-device.md: practical model limit about 3.5 MB on minimum builds
        "heap_budget": MAIXPY_MINIMUM_HEAP_FREE - CAMERA_QVGA_BYTES,
        "gc_heap": MAIXPY_GC_HEAP,
        "errors": _MAIXPY_V3_ERRORS,
    },
}

DEFAULT_PROFILE = "canmv-v5"

# What to do when a firmware cannot load a kmodel version.
_VERSION_ADVICE = {
    5: ("nncase 1.x (the pip package) only makes V5; for this firmware make a V4 kmodel with "
        "`make kmodel FIRMWARE=%(name)s` (host/convert.py --firmware %(name)s: ncc v0.2 from "
        "`make ncc`, or --ncc PATH), or flash CanMV built from branch feat/kpu with "
        "CANMV_ENABLE_KMODEL_V5 (firmware canmv-v5)"),
    4: ("compile a V3 kmodel with the ncc v0.1 binary (--ncc PATH --firmware %(name)s), or "
        "flash a MaixPy full or *kmodel_v4* build (firmware maixpy-v4)"),
    3: "no known firmware refuses V3; check the firmware profile name",
}
# a V3-only firmware cannot take ncc v0.2's V4 either
_V3_ONLY_ADVICE = ("nncase 1.x (the pip package) only makes V5 and ncc v0.2 V4; compile a V3 "
                   "kmodel with the ncc v0.1 binary (--ncc PATH --firmware %(name)s), or flash "
                   "a MaixPy full or *kmodel_v4* build (firmware maixpy-v4)")


def get_profile(name):
    """The profile dict for `name` (a copy, so callers can override heap_budget)."""
    if isinstance(name, dict):
        return name
    try:
        profile = dict(PROFILES[name])
    except KeyError:
        raise UserError("unknown firmware %r: use one of %s" % (name, ", ".join(sorted(PROFILES))))
    profile["name"] = name
    return profile


def version_advice(profile, version):
    """What to do when firmware `profile` cannot load a kmodel of `version`."""
    advice = _VERSION_ADVICE[version]
    if version == 5 and 4 not in profile["kmodel_versions"]:
        advice = _V3_ONLY_ADVICE
    return advice % {"name": profile.get("name", "custom")}


def check_loadable(profile, version, model_size, working_memory=0):
    """Raise UserError (with what to do) unless the firmware can load a kmodel of `version`
    needing `model_size` + `working_memory` bytes of system heap."""
    profile = get_profile(profile)
    name = profile.get("name", "custom")
    if version not in profile["kmodel_versions"]:
        raise UserError("firmware %s loads kmodel V%s only, this kmodel is V%d (on the board: "
                        "%s): %s"
                        % (name, "/V".join(str(v) for v in profile["kmodel_versions"]), version,
                           profile["errors"]["version"], version_advice(profile, version)))
    needed = model_size + working_memory
    if profile["heap_budget"] is not None and needed > profile["heap_budget"]:
        raise UserError("the model needs %d bytes of heap (model %d + working memory %d) but "
                        "firmware %s has about %d free (on the board: %s): make the model "
                        "smaller (fewer channels, smaller input), use a smaller firmware build, "
                        "or reduce the MicroPython GC heap (%d KiB)"
                        % (needed, model_size, working_memory, name, profile["heap_budget"],
                           profile["errors"]["memory"], profile["gc_heap"] // 1024))


def check_outputs(profile, count):
    """Raise UserError unless the firmware's KPU API can read `count` outputs."""
    profile = get_profile(profile)
    limit = profile.get("max_outputs")
    if limit is not None and count > limit:
        raise UserError("firmware %s reads output 0 only (CanMV's run_with_output, "
                        "kendryte/canmv Maix_kpu.c: py_kpu_run_with_output), this model has %d "
                        "outputs: export a one-output model (concatenate the heads), or use "
                        "firmware canmv-v5 or maixpy-v4" % (profile.get("name", "custom"), count))
