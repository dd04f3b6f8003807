"""Both HTML reports in a real browser (headless Chromium over the DevTools pipe,
tests/browser.py): opened from disk with no network, no console errors, every image and chart
rendered, the tables sort, screenshots kept in the test's tmp dir. The reports come from the
real tools: host/convert.py on the tiny model (tiny_build) and host/serial_eval.py against a
virtual board."""
import json
import os

import pytest

import tiny_model
from browser import Browser, find_chromium
from conftest import run_tool

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get "
                                                         "install chromium)")
IMAGES = 4


@pytest.fixture
def browser():
    b = Browser(CHROMIUM)
    yield b
    b.close()


def _rendered(browser, url, screenshot):
    browser.open(url)
    browser.screenshot(screenshot)
    assert os.path.getsize(screenshot) > 20000, "a blank page"
    assert browser.errors() == []
    fetched = browser.requested_urls()
    assert fetched and all(u.startswith(("file:", "data:")) for u in fetched), fetched
    images = browser.evaluate("Array.from(document.images).map(function (i) {"
                              " return [i.alt, i.complete && i.naturalWidth > 0]; })")
    assert all(ok for _, ok in images), images
    charts = browser.evaluate("Array.from(document.querySelectorAll('svg')).map(function (s) {"
                              " var r = s.getBoundingClientRect(); return r.width * r.height; })")
    assert charts and all(area > 10000 for area in charts), charts
    return images, charts


def _column(browser, table, col):
    return browser.evaluate(
        "Array.from(document.querySelectorAll('table.sortable')[%d].rows).slice(1)"
        ".map(function (r) { return parseFloat(r.cells[%d].textContent); })" % (table, col))


def test_eval_report_in_chromium(browser, tiny_build, tmp_path):
    images = tiny_model.images(tmp_path / "images", IMAGES, seed=21)
    out = tmp_path / "eval"
    # --min-cos 1: every image counts as a disagreement, so every overlay is inlined
    proc = run_tool("host/serial_eval.py", "--manifest", tiny_build.path, "--images", images,
                    "--out", out, "--port", "virtual", "--vboard-state", tmp_path / "vboard",
                    "--no-progress", "--min-f1", "0", "--min-cos", "1", timeout=300)
    assert proc.returncode != 0 and "FAIL" in proc.stdout, proc.stderr[-2000:]
    shown, charts = _rendered(browser, (out / "report.html").as_uri(),
                              str(tmp_path / "report.png"))
    assert len(shown) == IMAGES and len(charts) == 4
    assert browser.evaluate("document.querySelector('.verdict').textContent").startswith("FAIL")
    # worst first, as the JSON says: CRC differences, then most unmatched boxes, then lowest cos
    with open(str(out / "report.json")) as f:
        report = json.load(f)
    worst_first = sorted(report["images"], key=lambda r: (
        r["crc"]["input_equal"] is not False, -r["detections"]["unmatched"],
        r["tensors"][0]["cos"]))
    assert [a for a, _ in shown] == [r["name"] for r in worst_first]
    cos_col = 6
    browser.evaluate("document.querySelectorAll('table.sortable th')[%d].click()" % cos_col)
    assert _column(browser, 0, cos_col) == sorted(_column(browser, 0, cos_col))
    browser.evaluate("document.querySelectorAll('table.sortable th')[%d].click()" % cos_col)
    values = _column(browser, 0, cos_col)
    assert values == sorted(values, reverse=True) and len(values) == IMAGES


def test_convert_report_in_chromium(browser, tiny_build, tmp_path):
    page = os.path.join(tiny_build.directory, "convert_report.html")
    _, charts = _rendered(browser, "file://" + page, str(tmp_path / "convert_report.png"))
    assert len(charts) == 2  # per-layer error, memory against the budget
    with open(os.path.join(tiny_build.directory, "convert_report.json")) as f:
        layers = json.load(f)["layer_error"]["layers"]
    text = browser.evaluate("document.body.textContent")
    for row in layers:
        assert row["node"] in text and "%.5f" % row["cos"] in text
    assert len(_column(browser, 0, 0)) == len(layers)
