"""bench/table.py: the docs/bench.md performance section generated from bench/results.json (the
generator only: no timing is measured here)."""
import copy
import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))

import table  # noqa: E402


def _link(model, baud, payload, eff, steady, kpu, rbl=table.DEFAULT_READ_BUF_LEN, images=8,
          extra=None):
    per_image = 143360.0 if payload == "rgb565" else 17000.0
    interval = per_image / (baud / 10.0) / steady * 1000.0
    run = {"name": "%s-%s-%s" % (model, baud, payload), "model": model, "baud": baud,
           "payload": payload, "read_buf_len": rbl, "images": images, "repeats": 3,
           "median": {"efficiency": eff, "steady_efficiency": steady,
                      "images_per_second": 1000.0 / interval * 0.98,
                      "payload_bytes_per_image": per_image, "interval_ms": interval,
                      "line_ms_per_image": per_image * 1.006 / (baud / 10.0) * 1000.0,
                      "kpu_ms": kpu, "prep_ms": 1.0, "decode_ms": 0.5, "result_tx_ms": 56.4}}
    if extra:
        run.update(extra)
    return run


def results(quick=False):
    host = {"host_cost": {"images": 8, "prepare_ms": 3.1, "tf_ms": 24.0, "compare_ms": 1.9,
                          "total_ms": 29.0, "tf_setup_ms": 30.0, "tf_first_run_ms": 80.0},
            "jpeg_quality": [{"quality": 95, "bytes_per_image": 17730.0,
                              "ratio_to_rgb565": 8.1, "pixels_changed": 0.25,
                              "max_level_diff": 41, "tf_cos_vs_exact": 0.99976,
                              "tf_f1_vs_exact": 1.0}]}
    link = [_link("example", 1500000, "rgb565", 0.84, 0.85, 113.0, extra=host),
            _link("tiny", 1500000, "rgb565", 0.91, 0.93, 9.0),
            _link("example", 1500000, "jpeg", 0.37, 0.41, 150.0, images=16),
            _link("example", 115200, "rgb565", 0.93, 0.95, 120.0, images=3),
            _link("example", 1500000, "rgb565", 0.83, 0.85, 120.0, rbl=65534),
            _link("example", 1500000, "rgb565", 0.80, 0.81, 120.0, rbl=16384)]
    return {
        "schema": 1, "quick": quick, "duration_seconds": 600.0, "errors": [], "notes": [],
        "machine": {"cpu": "Test CPU 9000", "cores": 2, "loadavg_start": [0.5, 0.6, 0.7],
                    "loadavg_end": [1.25, 1.0, 0.9], "date": "2030-01-02 03:04 UTC",
                    "git_commit": "abc1234", "git_dirty": False},
        "link": link,
        "kmodel": {"repeats": 3, "make_seconds": 13.2, "chain_seconds": 9.4, "ratio": 1.40,
                   "make_cpu_seconds": 14.0, "chain_cpu_seconds": 10.0, "cpu_ratio": 1.38,
                   "pairs": [{"ratio": 1.38}, {"ratio": 1.40}, {"ratio": 1.52}],
                   "setup_check_seconds": 0.004, "startup_other_seconds": 2.5,
                   "stages": {"load images": 0.15, "freeze": 0.9, "batchnorm check": 0.7,
                              "tflite": 2.1, "float reference": 0.2, "nncase compile": 6.6,
                              "report": 0.002},
                   "chain_stages": {"imports": 1.5, "calibration images": 0.1, "freeze": 0.8,
                                    "tflite": 1.9, "nncase compile": 5.2},
                   "extras": {"held-out simulation": 1.4}},
        "fidelity": [{"name": "example", "chosen": "kld_m2", "methods": [
            {"method": "no_clip", "cos": 0.99984, "l2r": 0.0259, "max_abs": 0.48, "f1": 1.0,
             "compile_seconds": 4.6},
            {"method": "kld_m2", "cos": 0.99979, "l2r": 0.0215, "max_abs": 0.55, "f1": 1.0,
             "compile_seconds": 10.4}]},
            {"name": "seed", "chosen": "no_clip", "methods": [
                {"method": "no_clip", "cos": 0.99988, "l2r": 0.0234, "max_abs": 0.43,
                 "f1": None, "compile_seconds": 20.1}]}],
        "flash": {"repeats": 2, "median": {
            "kflash_baud": 1500000, "kflash_bytes": 143232, "kflash_write_rate": 127500.0,
            "kflash_write_efficiency": 0.85, "kflash_overall_rate": 44000.0,
            "kflash_overall_efficiency": 0.29, "repl_baud": 115200, "repl_bytes": 60371,
            "repl_rate": 7500.0, "repl_efficiency": 0.65},
            "retried": ["error: kflash could not flash the board"]},
    }


def test_render_has_machine_date_and_every_section():
    text = table.render(results())
    assert "Test CPU 9000, 2 cores, load average 0.50 at the start (1.25 at the end)" in text
    assert "2030-01-02 03:04 UTC" in text and "commit abc1234" in text
    assert "took 10.0 min" in text and "full run" in text
    for title in ("1. Serial eval link", "Where the time goes", "2. Host cost per image",
                  "JPEG quality", "3. `make kmodel` overhead", "4. Fidelity", "5. Flashing",
                  "Findings"):
        assert title in text, title
    assert table.START not in text and table.END not in text


def test_link_rows_targets_and_same_run_ratios():
    text = table.render(results())
    rows = [l for l in text.splitlines()
            if l.startswith("| example model, RGB565 | 1,500,000 |")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1] == "1,500,000" and cells[2] == "8 x 3" and cells[3] == "143,360"
    assert cells[5] == "0.840" and cells[6] == "0.850" and cells[7] == "113"
    assert cells[8] == "**not met**"                      # steady state 0.85 < 0.90
    tiny = [l for l in text.splitlines() if l.startswith("| tiny kmodel (link only), RGB565 |")]
    assert tiny[0].rstrip().endswith("| met |")
    jpeg = [l for l in text.splitlines() if l.startswith("| example model, JPEG |")][0]
    assert jpeg.rstrip().endswith("| - |")                # the link target is for RGB565
    assert "read_buf_len 65534" in text and "read_buf_len 16384" in text
    assert "what-if" not in text
    assert "UART ring read_buf_len 16384 (window 109 ms at 1.5 Mbaud): 0.810 vs 0.850 at the " \
           "default %d" % table.DEFAULT_READ_BUF_LEN in text
    assert "JPEG" in text and "fewer bytes)" in text      # JPEG vs RGB565 images/s, same run
    assert "| 95 | 17,730 | 8.1x | 25% | 41 |" in text


def test_host_kmodel_fidelity_and_flash_figures():
    r = results()
    text = table.render(r)
    interval = r["link"][0]["median"]["interval_ms"]
    assert "| 3.1 ms | 24.0 ms | 1.9 ms | 29.0 ms | %.0f ms | %.3f | met |" % (
        interval, 29.0 / interval) in text
    assert "Ratio make kmodel / bare chain (wall): **1.40x** (met)" in text
    assert "| **total (wall)** | **13.2** | **9.4** |" in text
    assert "| CPU time, all processes (user + sys) | 14.0 | 10.0 |" in text
    assert "in CPU time, which other processes on the machine disturb less: 1.38x (per " \
           "pair, wall: 1.38, 1.40, 1.52)" in text
    assert "retried on a fresh board: error: kflash could not flash the board" in text
    assert "| batchnorm check | 0.70 | - |" in text
    assert "| kld_m2 (auto's pick) | 0.99979 | 0.0215 | 0.550 | 1.000 | 10.4 |" in text
    assert "| no_clip | 0.99988 | 0.0234 | 0.430 | n/a | 20.1 |" in text    # no F1: n/a
    assert "| kflash writes to the virtual ISP (kmodel) | 1,500,000 | 143,232 | 127,500 | " \
           "0.85 |" in text
    assert "| REPL upload (scripts + config, base64, verified) | 115,200 | 60,371 | 7,500 " \
           "| 0.65 |" in text
    r["kmodel"]["ratio"] = 1.6
    assert "**1.60x** (**not met**)" in table.render(r)


def test_partial_and_quick_results_render():
    r = results(quick=True)
    del r["kmodel"], r["flash"]
    r["fidelity"] = []
    r["link"] = r["link"][:1]
    r["errors"] = [{"section": "flashing", "error": "flash 0 failed (exit 2)\n  detail"}]
    r["notes"] = ["the original user's model x.pb is missing"]
    text = table.render(r)
    assert "quick run (`make bench QUICK=1`)" in text
    assert "3. `make kmodel`" not in text and "5. Flashing" not in text
    assert "Not measured: flashing: flash 0 failed (exit 2); the original user's model" in text
    table.render({"machine": {}})                            # nothing measured: no crash


def test_update_readme_replaces_only_the_marked_section(tmp_path):
    path = str(tmp_path / "README.md")
    before = "# Title\n\nintro\n\n%s\nold table\n%s\n\n## After\ntext\n" % (table.START,
                                                                         table.END)
    with open(path, "w") as f:
        f.write(before)
    text = table.render(results())
    table.update_readme(path, text)
    with open(path) as f:
        after = f.read()
    assert after.startswith("# Title\n\nintro\n\n" + table.START + "\n")
    assert after.endswith(table.END + "\n\n## After\ntext\n")
    assert "old table" not in after and text.strip() in after
    table.update_readme(path, text)                          # idempotent
    with open(path) as f:
        assert f.read() == after


@pytest.mark.parametrize("content", ["no markers\n", "%s\n" % table.START,
                                     "%s\n%s\n%s\n%s\n" % (table.START, table.END, table.START,
                                                           table.END),
                                     "%s\n%s\n" % (table.END, table.START)])
def test_update_readme_refuses_bad_markers(tmp_path, content):
    path = str(tmp_path / "README.md")
    with open(path, "w") as f:
        f.write(content)
    with pytest.raises(ValueError):
        table.update_readme(path, "x")
    with open(path) as f:
        assert f.read() == content                            # untouched


def test_cli_regenerates_from_a_results_file(tmp_path):
    res = str(tmp_path / "results.json")
    readme = str(tmp_path / "README.md")
    with open(res, "w") as f:
        json.dump(results(), f)
    with open(readme, "w") as f:
        f.write("a\n%s\n%s\nb\n" % (table.START, table.END))
    assert table.main([res, readme]) == 0
    with open(readme) as f:
        assert "Test CPU 9000" in f.read()


def test_render_does_not_modify_results():
    r = results()
    copied = copy.deepcopy(r)
    table.render(r)
    assert r == copied


def _photo(payload, baud, per_image, rate, crcs="6/6", extra=None):
    run = _link("tiny", baud, payload, 0.9, 0.9, 9.0, images=6)
    run.update({"image_set": "photos", "pixel_crc_equal": crcs, "input_crc_equal": crcs})
    run["median"].update({"payload_bytes_per_image": per_image, "images_per_second": rate})
    run.update(extra or {})
    return run


def test_rgb565z_table_ratios_target_and_labels():
    r = results()
    z = {"inflate_ms_host": 13.2, "compression_ratio": 1.83}
    r["link"] += [_photo("rgb565", 1500000, 143360.0, 0.95),
                  _photo("rgb565z", 1500000, 78300.0, 1.80, extra=z),
                  _photo("jpeg", 1500000, 19000.0, 3.1)]
    text = table.render(r)
    assert "**Exact pixels compressed: rgb565z**" in text
    row = [l for l in text.splitlines() if l.startswith("| RGB565z (deflate) | 1,500,000 |")]
    assert row and "| 1.83x |" in row[0] and "| 1.89x |" in row[0] and "| 13.2 |" in row[0]
    assert "1.89x (deflate ratio 1.83x), CRCs all equal: met." in text
    # the photo rows stay out of the example-set link table and its same-run ratios
    assert "tiny kmodel (link only), RGB565, photos" not in text
    r["link"][-2] = _photo("rgb565z", 1500000, 78300.0, 1.60, crcs="5/6", extra=z)
    text = table.render(r)
    assert "CRCs **not all equal**: **not met**." in text


def _long_eval(peaks):
    runs = [{"images": n, "wall_seconds": n / 30.0 + 8, "images_per_second": 30.0,
             "link_images_per_second": 38.0, "peak_rss_mb": p, "compared": n, "failed": 0,
             "input_crc_equal": n} for n, p in zip((1000, 10000), peaks)]
    return {"model": {"input": [16, 16], "kmodel_bytes": 2000}, "baud": 1500000,
            "runs": runs, "tf_batch": 32, "max_images_in_memory": 96,
            "rss_growth": peaks[1] / peaks[0] - 1.0}


def test_long_eval_rows_and_the_flat_memory_target():
    r = results()
    r["long_eval"] = _long_eval((260.0, 265.2))
    text = table.render(r)
    assert "**6. Long evaluations**" in text and "batches of 32, at most 96 images" in text
    assert "| 10,000 | 341.3 | 30.0 | 38.0 | 265.2 | 10,000 | 10,000 |" in text
    assert "Peak RSS from 1,000 to 10,000 images: +2.0 % (target: flat within 10 %: met)" in text
    r["long_eval"] = _long_eval((260.0, 300.0))
    assert "+15.4 % (target: flat within 10 %: **not met**)" in table.render(r)
