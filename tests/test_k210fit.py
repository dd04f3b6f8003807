"""k210fit on real nncase dump files: op placement, KPU peak, heap fit, flash placement."""
import os

import pytest

from host import firmware, k210fit, quantize
from host.errors import UserError
from test_nncase_stage import ZERO_ONE, random_u8, tiny_models


def compile_with_dump(name, hw, tmp_path):
    dump = str(tmp_path / ("dump_" + name))
    result = quantize.compile_kmodel(tiny_models()[name], str(tmp_path / (name + ".kmodel")),
                                     random_u8(2, hw[0], hw[1]), ZERO_ONE, dump_dir=dump)
    return dump, result


def test_small_model_runs_on_the_kpu_and_fits(tmp_path):
    dump, result = compile_with_dump("small", (32, 32), tmp_path)
    # the dump file names and formats the module relies on
    assert os.path.isfile(os.path.join(dump, "k210", "k210_0", "runtime_ops.txt"))
    assert os.path.isfile(os.path.join(dump, "stackvm", "main", "runtime_ops.txt"))
    assert os.path.isfile(os.path.join(dump, "codegen", "k210_0.sched"))
    report, warnings = k210fit.fit_report(dump, result["memory"], result["inputs"][0]["shape"])
    assert warnings == []
    assert [op.split()[0] for op in report["kpu_ops"]] == [
        "KPUUpload", "KPUConv2D", "KPUConv2D", "KPUDownload"]
    assert [op.split()[0] for op in report["cpu_ops"]] == ["Call", "Dequantize"]
    assert report["cpu_compute_ops"] == []
    # codegen/k210_0.sched: input @unknown[0, 4096] (KPU row padding), conv + fused pool
    # output [1,8,16,16] @unknown[4096, 6144], last conv back at [0, 1024]
    assert report["kpu_peak_bytes"] == 6144
    assert report["main_memory_bytes"] == result["memory"]["total"]
    assert report["fits_heap"] and report["firmware"] == "canmv-v5"
    assert report["flash"] == {"address": 0x300000, "end": 0x300000 + result["kmodel_size"],
                               "size": result["kmodel_size"], "ok": True}


def test_5x5_conv_runs_on_the_cpu_and_is_named(tmp_path):
    dump, result = compile_with_dump("conv5x5", (32, 32), tmp_path)
    report, warnings = k210fit.fit_report(dump, result["memory"], result["inputs"][0]["shape"])
    assert any(op.startswith("Conv2D ") for op in report["cpu_compute_ops"])
    cpu_warning = [w for w in warnings if "run on the K210 CPU" in w]
    assert len(cpu_warning) == 1 and "Conv2D" in cpu_warning[0]


def test_height_over_256_warns_with_the_swapped_size(tmp_path):
    dump, result = compile_with_dump("tall", (320, 240), tmp_path)
    report, warnings = k210fit.fit_report(dump, result["memory"], result["inputs"][0]["shape"])
    height = [w for w in warnings if "exceeds the KPU's limit" in w]
    assert len(height) == 1 and "give height=240 width=320" in height[0]
    assert report["cpu_compute_ops"]  # the silent float fallback shows in the placement


def test_heap_budget_of_the_profile(tmp_path):
    dump, result = compile_with_dump("small", (32, 32), tmp_path)
    tiny = dict(firmware.get_profile("maixpy-v4"), name="tiny", heap_budget=1000)
    report, warnings = k210fit.fit_report(dump, result["memory"], [1, 3, 32, 32], tiny)
    assert not report["fits_heap"] and report["heap_budget_bytes"] == 1000
    assert any("main RAM" in w and "tiny" in w for w in warnings)


def test_flash_placement():
    ok, problems = k210fit.flash_placement(0x300000, 126000)
    assert ok["ok"] and problems == [] and ok["end"] == 0x300000 + 126000
    _, problems = k210fit.flash_placement(0x300800, 1000)
    assert problems == ["flash address 0x300800 is not 4 KiB aligned: use 0x301000"]
    _, problems = k210fit.flash_placement(0x200000, 1000)
    assert len(problems) == 1 and "below 0x300000" in problems[0]
    placement, problems = k210fit.flash_placement(0x200000, 1000, allow_below_firmware=True)
    assert placement["ok"] and problems == []
    _, problems = k210fit.flash_placement(0xC00000, 2 * 1024 * 1024)
    assert len(problems) == 1 and "0xD00000" in problems[0]


def test_missing_dump_files(tmp_path):
    with pytest.raises(UserError, match="no op placement files"):
        k210fit.fit_report(str(tmp_path), {"total": 1, "model": 1}, [1, 3, 32, 32])


def test_serve_gc_peak_per_payload_and_the_rgb565z_warning():
    """The GC heap estimate (an upper bound of tests/test_mpy_memory.py's measurements): what
    the session keeps, plus the larger of the KPU's float list and the JPEG buffer (the
    largest JPEG in JPEG_STEP steps) or the inflater, which are dropped while the list lives;
    the largest JPEG reported fits exactly; a model whose rgb565z peak alone misses the budget
    fits with a warning naming --payload rgb565."""
    raw = k210fit.serve_gc_peak(320, 224, 2100)
    session = k210fit.serve_gc_session(320, 224, 2100)
    assert raw == session + 2100 * (32 + 8) and session > 320 * 224 * 5 + 2100 * 2 * 4
    # a JPEG buffer or the inflater smaller than the 84,000-byte list costs nothing more
    assert k210fit.serve_gc_peak(320, 224, 2100, "rgb565z") == raw
    assert k210fit.serve_gc_peak(320, 224, 2100, "jpeg", jpeg_bytes=1) == raw
    big = 100000
    assert k210fit.serve_gc_peak(320, 224, 2100, "jpeg", jpeg_bytes=big) == \
        session + (big + 2 + k210fit.JPEG_STEP - 1) // k210fit.JPEG_STEP * k210fit.JPEG_STEP
    budget = raw + 3 * k210fit.JPEG_STEP + 100
    top = k210fit.jpeg_max_bytes(budget, 320, 224, 2100)
    assert top > 2100 * 40
    assert k210fit.serve_gc_peak(320, 224, 2100, "jpeg", jpeg_bytes=top) <= budget
    assert k210fit.serve_gc_peak(320, 224, 2100, "jpeg", jpeg_bytes=top + 1) > budget
    assert k210fit.jpeg_max_bytes(raw - 1, 320, 224, 2100) == 0     # the list does not fit
    # 10 output values: the inflater is the larger, rgb565z needs more than rgb565
    small = k210fit.serve_gc_peak(320, 224, 10)
    small_z = k210fit.serve_gc_peak(320, 224, 10, "rgb565z")
    assert small_z == k210fit.serve_gc_session(320, 224, 10) + k210fit.GC_INFLATER > small
    profile = dict(firmware.get_profile("canmv-v5"),
                   gc_heap=(small + small_z) // 2 + k210fit.GC_FIRMWARE_KEEPS)
    report, warnings = k210fit.fit_report(None, {"total": 1000, "model": 500}, [1, 3, 224, 320],
                                          profile, output_values=10)
    assert report["fits_gc"] and report["serve_gc_rgb565z_bytes"] > report["gc_budget_bytes"]
    assert any("--payload rgb565" in w for w in warnings), warnings
    assert report["gc_left_bytes"] == 0


def test_segment_masks_and_label_decoders_count_in_the_gc_heap():
    """A segment model's board keeps RESULT_CACHE mask buffers of h*w bytes (bytearrays:
    device/board_mask.py) and, like classify, loads label_decoders.py: the fit counts both;
    what the serve loop leaves the user's scripts is the budget less the larger peak."""
    plain = k210fit.serve_gc_peak(224, 160, 1050)
    seg = k210fit.serve_gc_peak(224, 160, 1050, decoder="segment", mask_values=35 * 50)
    masks = k210fit.RESULT_CACHE * (32 + (35 * 50 + 31) // 32 * 32)
    assert seg == plain + masks + k210fit.GC_LABEL_DECODERS
    assert k210fit.serve_gc_peak(224, 160, 1050, decoder="classify") == \
        plain + k210fit.GC_LABEL_DECODERS
    assert k210fit.serve_gc_peak(224, 160, 1050, decoder="yolo2") == plain
    report, _ = k210fit.fit_report(None, {"total": 1000, "model": 500}, [1, 3, 160, 224],
                                   "maixpy-v4", output_values=1050, decoder="segment",
                                   mask_values=35 * 50)
    assert report["serve_gc_bytes"] == seg
    assert report["gc_left_bytes"] == report["gc_budget_bytes"] - max(
        seg, report["serve_gc_rgb565z_bytes"]) > 0


def test_the_fit_line_says_what_the_serve_loop_leaves_the_users_scripts():
    """make kmodel's summary (host/report.py) names the serve loop's GC heap peak, the
    scripts' budget and what is left of it for the user's own objects."""
    from host import report
    fit, _ = k210fit.fit_report(None, {"total": 1000, "model": 500}, [1, 3, 224, 320],
                                "canmv-v5", output_values=2100)
    lines = report.fit_lines(fit, {"firmware": "canmv-v5", "input": {"channels": 3}})
    gc_line = [line for line in lines if "GC heap" in line]
    assert len(gc_line) == 1, lines
    assert "serve loop ~%d KiB of %d KiB, ~%d KiB left for your scripts" % (
        round(fit["serve_gc_bytes"] / 1024.0), round(fit["gc_budget_bytes"] / 1024.0),
        round(fit["gc_left_bytes"] / 1024.0)) in gc_line[0]
    assert "fits" in gc_line[0] and "JPEG payloads up to" in gc_line[0]
