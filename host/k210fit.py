"""Does a compiled kmodel fit the K210: where its ops run (KPU or CPU), KPU and main memory,
the firmware's heap budget, and where it goes in flash.

Reads the files nncase 1.9 writes into the compile's dump_dir (dump_asm + dump_ir):
- `k210/k210_N/runtime_ops.txt`: ops run by the KPU module function N, one `[Op] name` a line
  (KPUUpload, KPUConv2D, KPUDownload).
- `stackvm/main/runtime_ops.txt`: ops run by the CPU (stackvm), same format: `Call k210_N`
  hands over to the KPU; Dequantize/Quantize move between uint8 and float.
- `codegen/k210_N.sched`: the KPU schedule, a line per buffer with `@unknown[start, end]`
  for KPU RAM buffers; the max `end` is the KPU RAM peak.
Memory numbers come from the compile's printed summary (host.quantize.compile_kmodel "memory").
A V4 kmodel (ncc v0.2) lists its ops itself: each node header names its opcode (host.kmodel),
KPU ops (KPUUpload, KPUConv2D) apart from the CPU's; ncc writes no KPU schedule, so the KPU
RAM peak of a V4 model is not known (ncc fails the compile when KPU RAM runs out).
"""
import glob
import os
import re

from device.payloads import JPEG_STEP, MAX_JPEG
from device.server import RESULT_CACHE
from host import devconfig, firmware
from host.errors import UserError

KPU_MAX_HEIGHT = 256  # nncase's K210 feature map limits: H 4-256, W 4-512, C <= 1024
KPU_MAX_WIDTH = 512

# CPU ops that only glue KPU work together; anything else on the CPU is real compute.
_GLUE_OPS = {"Call", "Dequantize", "Quantize", "Copy", "Ret", "MemoryCopy"}
_V4_KPU_OPS = {"KPUUpload", "KPUConv2D"}

_OP_LINE = re.compile(r"^\[(\w+)\]\s*(.*)$")
_KPU_BUFFER = re.compile(r"@unknown\[(\d+),\s*(\d+)\]")


def read_ops(path):
    """[(op, name)] from a runtime_ops.txt."""
    ops = []
    with open(path) as f:
        for line in f:
            match = _OP_LINE.match(line.strip())
            if match:
                ops.append((match.group(1), match.group(2)))
    return ops


def op_placement(dump_dir):
    """{"kpu": [(op, name)], "cpu": [(op, name)], "cpu_compute": [(op, name)]}."""
    kpu_files = sorted(glob.glob(os.path.join(dump_dir, "k210", "k210_*", "runtime_ops.txt")),
                       key=_module_index)
    cpu_files = sorted(glob.glob(os.path.join(dump_dir, "stackvm", "*", "runtime_ops.txt")))
    if not cpu_files:
        raise UserError("no op placement files in %s: compile with dump_dir set (nncase writes "
                        "stackvm/main/runtime_ops.txt with dump_asm)" % dump_dir)
    kpu = [op for path in kpu_files for op in read_ops(path)]
    cpu = [op for path in cpu_files for op in read_ops(path)]
    return {"kpu": kpu, "cpu": cpu, "cpu_compute": [op for op in cpu if op[0] not in _GLUE_OPS]}


def kpu_peak(dump_dir):
    """Peak KPU RAM in bytes: max end of the KPU buffers over all k210 schedules (0 if none)."""
    peak = 0
    for path in glob.glob(os.path.join(dump_dir, "codegen", "k210_*.sched")):
        with open(path) as f:
            for match in _KPU_BUFFER.finditer(f.read()):
                peak = max(peak, int(match.group(2)))
    return peak


def flash_placement(address, size, allow_below_firmware=False):
    """Checks for a model of `size` bytes written to flash at `address`.
    Returns ({address, end, size, ok}, problems: one-line strings)."""
    end = address + size
    problems = []
    if address % firmware.FLASH_SECTOR:
        problems.append("flash address 0x%X is not 4 KiB aligned: use 0x%X"
                        % (address, _align_up(address)))
    if address < firmware.FLASH_FIRMWARE_END and not allow_below_firmware:
        problems.append("flash address 0x%X is below 0x%X, where the firmware image can reach: "
                        "use 0x%X (or say the firmware is smaller)"
                        % (address, firmware.FLASH_FIRMWARE_END, firmware.FLASH_MODEL_ADDRESS))
    if address >= firmware.FLASH_SPIFFS_START:
        problems.append("flash address 0x%X is inside the /flash file system (0x%X and up): "
                        "put the model lower (default 0x%X) or load it from /sd"
                        % (address, firmware.FLASH_SPIFFS_START, firmware.FLASH_MODEL_ADDRESS))
    elif end > firmware.FLASH_SPIFFS_START:
        problems.append("the model (0x%X-0x%X) runs into the /flash file system at 0x%X: put it "
                        "lower or load it from /sd" % (address, end, firmware.FLASH_SPIFFS_START))
    return {"address": address, "end": end, "size": size, "ok": not problems}, problems


def v4_placement(ops):
    """op_placement() for a V4 kmodel's op list (host.kmodel's "ops")."""
    kpu = [(op, "") for op in ops if op in _V4_KPU_OPS]
    cpu = [(op, "") for op in ops if op not in _V4_KPU_OPS]
    return {"kpu": kpu, "cpu": cpu, "cpu_compute": [op for op in cpu if op[0] not in _GLUE_OPS]}


# The serve loop's peak in the MicroPython GC heap (device/server.py, device/payloads.py,
# docs/design.md "Board memory"), an upper bound of what tests/test_mpy_memory.py measures on
# MicroPython 1.11 (64-bit as the K210's RV64: 32-byte GC blocks). Kept for the session: the
# image place (RGB565 pixels w*h*2 and pix_ai planes with rows padded to 64 pixels, both
# xalloc'ed from the GC heap, MaixPy-v1 omv/py/py_image.c; for a grayscale model Image(size=)
# turned GRAYSCALE in place, which keeps its w*h*2 pixel buffer, and its pix_ai w*h, unpadded:
# py_image_pix_to_ai), the UART ring (read_buf_len + 1, m_new in machine_uart.c), RESULT_CACHE
# sets of RESULT buffers (4 bytes a value; a segment model's h*w mask, device/board_mask.py).
# On top, one of: the KPU's outputs as a list of float objects (a boxed mp_obj_float_t takes
# one 32-byte block, its list slot 8 bytes), or the JPEG buffer (the largest JPEG rounded up
# to JPEG_STEP) or the inflater (16 KiB window, DecompIO state, source buffer): those two are
# dropped before the KPU runs and made again after its list is collected (payloads.remake).
# GC_INTERPRETER: the device modules' bytecode (57 KB imported from source), the parser's
# buffer (8,208 B), the Server and frame handling, the decoder's boxes, and in the test the
# firmware stand-ins' bytecode (~17 KB that a board has in C). Measured (the peak less the
# other terms) with tests/test_mpy_memory.py's default layout: MaixPy 224x160 93,239 B (RGB)
# and 92,919 (gray8), CanMV 320x224 94,703 and 94,287; 96 KiB leaves 3.6-5.4 KB of margin.
GC_INTERPRETER = 96 * 1024
GC_OUTPUT_LIST_VALUE = 32 + 8
GC_RESULT_VALUE = 4 * RESULT_CACHE
# the KPU's own output buffers: C heap (the nncase runtime's) on a board, GC heap in the
# test's stand-in (tests/mpy_standins/maix.py): counted, an over-estimate for a board
GC_KPU_VALUE = 4
GC_INFLATER = 16384 + 2048 + 4096 + 64
# classify and segment models load label_decoders.py (and segment board_mask.py): 3,072 and
# 1,056 B measured on MicroPython 1.11, imported from source
GC_LABEL_DECODERS = 4 * 1024
LABEL_DECODERS = ("classify", "segment")
# What the firmware keeps in the GC heap before main.py runs (REPL UART and its ring, _boot.py,
# VFS mounts: a few KiB; an upper bound with margin, tests/test_mpy_memory.py)
GC_FIRMWARE_KEEPS = 32 * 1024
GC_BLOCK = 32


def _blocks(nbytes):
    return (nbytes + GC_BLOCK - 1) // GC_BLOCK * GC_BLOCK


def _jpeg_buffer(jpeg_bytes):
    return (jpeg_bytes + 2 + JPEG_STEP - 1) // JPEG_STEP * JPEG_STEP


def image_place_bytes(width, height, channels):
    """The session's image place: pixels plus pix_ai (py_image.c: py_image_pix_to_ai)."""
    if channels == 1:
        return width * height * 2 + width * height
    return width * height * 2 + ((width + 63) & ~63) * height * 3


def mask_bytes(mask_values):
    """A segment model's mask buffers (h*w class ids each, a bytearray per set of RESULT
    buffers: device/board_mask.py); 0 for other models (mask_values 0)."""
    return RESULT_CACHE * (GC_BLOCK + _blocks(mask_values)) if mask_values else 0


def serve_gc_session(width, height, output_values, channels=3,
                     read_buf_len=devconfig.DEFAULT_READ_BUF_LEN, decoder=None, mask_values=0):
    """Bytes of GC heap the serve loop keeps for the whole session (serve_gc_peak adds what
    comes and goes with each image)."""
    return (GC_INTERPRETER + read_buf_len + 1 + image_place_bytes(width, height, channels)
            + output_values * (GC_RESULT_VALUE + GC_KPU_VALUE) + mask_bytes(mask_values)
            + (GC_LABEL_DECODERS if decoder in LABEL_DECODERS else 0))


def serve_gc_peak(width, height, output_values, payload="rgb565",
                  read_buf_len=devconfig.DEFAULT_READ_BUF_LEN, jpeg_bytes=0, decoder=None,
                  mask_values=0):
    """Bytes of GC heap the serve loop needs at its peak for `payload` (rgb565, rgb565z, jpeg
    with JPEGs of up to jpeg_bytes, or gray8: a grayscale model's place); `decoder` the
    decoder kind, `mask_values` a segment model's mask size (h*w of output 0)."""
    channels = 1 if payload == "gray8" else 3
    arriving = 0
    if payload == "jpeg":
        arriving = _jpeg_buffer(jpeg_bytes)
    elif payload == "rgb565z":
        arriving = GC_INFLATER
    return (serve_gc_session(width, height, output_values, channels, read_buf_len, decoder,
                             mask_values)
            + max(output_values * GC_OUTPUT_LIST_VALUE, arriving))


def jpeg_max_bytes(budget, width, height, output_values, decoder=None, mask_values=0):
    """The largest JPEG the serve loop takes in `budget` bytes of GC heap (0: none, also
    when the KPU's output list does not fit)."""
    room = budget - serve_gc_session(width, height, output_values, decoder=decoder,
                                     mask_values=mask_values)
    if room < output_values * GC_OUTPUT_LIST_VALUE:
        return 0
    return max(0, min(MAX_JPEG, room // JPEG_STEP * JPEG_STEP - 2))


def fit_report(dump_dir, memory, input_shape, profile=firmware.DEFAULT_PROFILE,
               flash_address=firmware.FLASH_MODEL_ADDRESS, allow_below_firmware=False,
               v4_ops=None, output_values=0, decoder=None, mask_values=0):
    """Everything about whether the compiled model fits. `memory` is compile_kmodel()'s
    "memory" dict, `input_shape` the kmodel input [1, C, H, W] (C 3 or 1).

    Returns (report, warnings): report is JSON-able with keys kpu_ops, cpu_ops,
    cpu_compute_ops (lists of "Op name"), kpu_peak_bytes, kpu_ram_bytes, main_memory_bytes,
    model_bytes, heap_budget_bytes, fits_heap (the C heap: model + runtime), gc_heap_bytes,
    gc_budget_bytes (what the firmware leaves scripts), serve_gc_bytes (RGB565 payloads),
    serve_gc_rgb565z_bytes, fits_gc, jpeg_max_bytes (the GC heap: the serve loop's objects; a
    JPEG larger than jpeg_max_bytes does not fit), gc_left_bytes (what the larger of the two
    serve peaks leaves the user's own scripts of gc_budget_bytes, 0 when it does not fit),
    firmware, flash {address, end, size, ok}; kpu_peak_bytes is None when unknown (V4).
    `v4_ops`: a V4 kmodel's ops, used without dump_dir; `output_values` the model's output
    values, `decoder` its decoder kind and `mask_values` a segment model's mask size (h*w of
    output 0). warnings is a list of one-line strings.
    """
    profile = firmware.get_profile(profile)
    warnings = []
    if dump_dir is None and v4_ops is not None:
        placement = v4_placement(v4_ops)
        peak = None
    elif dump_dir is None:
        # ncc v0.1 builds leave no placement dump: only memory and flash can be judged.
        placement = {"kpu": [], "cpu": [], "cpu_compute": []}
        peak = 0
        warnings.append("op placement and KPU RAM are unknown for kmodels from an ncc binary")
    else:
        placement = op_placement(dump_dir)
        peak = kpu_peak(dump_dir)
    height, width = input_shape[2], input_shape[3]
    if height > KPU_MAX_HEIGHT or width > KPU_MAX_WIDTH:
        swapped_fits = width <= KPU_MAX_HEIGHT and height <= KPU_MAX_WIDTH
        warnings.append(
            "input %dx%d (HxW) exceeds the KPU's limit of H <= %d, W <= %d: nncase silently runs "
            "those layers on the CPU in float (slow, large); %s"
            % (height, width, KPU_MAX_HEIGHT, KPU_MAX_WIDTH,
               "if the image is %d wide and %d high, give height=%d width=%d"
               % (height, width, width, height) if swapped_fits else "reduce the input size"))
    if placement["cpu_compute"]:
        warnings.append("%d op(s) run on the K210 CPU, not the KPU (slow): %s"
                        % (len(placement["cpu_compute"]),
                           ", ".join(("%s %s" % op).strip() for op in placement["cpu_compute"])))
    needed = memory["total"]
    fits = needed <= profile["heap_budget"]
    if not fits:
        warnings.append("the model needs %d bytes of main RAM (model %d + working memory %d) but "
                        "firmware %s leaves about %d: make it smaller, use a smaller firmware "
                        "build or shrink the MicroPython GC heap (%d KiB)"
                        % (needed, memory["model"], needed - memory["model"],
                           profile.get("name", "custom"), profile["heap_budget"],
                           profile["gc_heap"] // 1024))
    # the second budget: the scripts' objects live in the GC heap, not beside the model
    gc_heap = profile["gc_heap"]
    gc_budget = gc_heap - GC_FIRMWARE_KEEPS
    if input_shape[1] == 1:
        # grayscale models take gray8 payloads only (docs/protocol.md "gray8")
        gc_need = serve_gc_peak(width, height, output_values, "gray8", decoder=decoder,
                                mask_values=mask_values)
        gc_need_z, jpeg_max = None, 0
    else:
        gc_need = serve_gc_peak(width, height, output_values, decoder=decoder,
                                mask_values=mask_values)
        gc_need_z = serve_gc_peak(width, height, output_values, "rgb565z", decoder=decoder,
                                  mask_values=mask_values)
        jpeg_max = jpeg_max_bytes(gc_budget, width, height, output_values, decoder,
                                  mask_values)
    if gc_need > gc_budget:
        warnings.append("serving needs about %d bytes of the MicroPython GC heap (image %dx%d, "
                        "its KPU buffer, %d output values) but firmware %s leaves scripts %d of "
                        "its %d: use a smaller input or fewer outputs, or raise the GC heap "
                        "(Maix.utils.gc_heap_size, then reboot)"
                        % (gc_need, width, height, output_values,
                           profile.get("name", "custom"), gc_budget, gc_heap))
    elif gc_need_z and gc_need_z > gc_budget:
        warnings.append("rgb565z payloads need about %d bytes of the GC heap, %d more than "
                        "firmware %s leaves scripts: serial_eval --payload rgb565"
                        % (gc_need_z, gc_need_z - gc_budget, profile.get("name", "custom")))
    flash, problems = flash_placement(flash_address, memory["model"], allow_below_firmware)
    warnings.extend(problems)
    report = {
        "kpu_ops": [("%s %s" % op).strip() for op in placement["kpu"]],
        "cpu_ops": [("%s %s" % op).strip() for op in placement["cpu"]],
        "cpu_compute_ops": [("%s %s" % op).strip() for op in placement["cpu_compute"]],
        "kpu_peak_bytes": peak,
        "kpu_ram_bytes": firmware.KPU_RAM,
        "main_memory_bytes": needed,
        "model_bytes": memory["model"],
        "heap_budget_bytes": profile["heap_budget"],
        "fits_heap": fits,
        "gc_heap_bytes": gc_heap,
        "gc_budget_bytes": gc_budget,
        "serve_gc_bytes": gc_need,
        "serve_gc_rgb565z_bytes": gc_need_z,
        "fits_gc": gc_need <= gc_budget,
        "gc_left_bytes": max(0, gc_budget - max(gc_need, gc_need_z or 0)),
        "jpeg_max_bytes": jpeg_max,
        "firmware": profile.get("name", "custom"),
        "flash": flash,
    }
    return report, warnings


def _module_index(path):
    name = os.path.basename(os.path.dirname(path))
    return int(name.split("_")[-1]) if name.split("_")[-1].isdigit() else 0


def _align_up(address):
    return (address + firmware.FLASH_SECTOR - 1) // firmware.FLASH_SECTOR * firmware.FLASH_SECTOR
