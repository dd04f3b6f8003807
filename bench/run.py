#!/usr/bin/env python
"""`make bench`: link efficiency, conversion overhead, fidelity and flashing, measured side by
side on this machine (issue 6). Writes bench/results.json and regenerates the performance
table in docs/bench.md (between `<!-- bench:start -->` and `<!-- bench:end -->`).

  python bench/run.py            # full: ~23 min on 2 cores (long evaluations: ~6)
  python bench/run.py --quick    # fewer repeats, methods and images: <= 3 min; writes
                                 # bench/tmp/results-quick.json and leaves docs/bench.md alone

This process imports neither TensorFlow nor nncase: every measurement runs in its own
process (bench/link.py, bench/chain.py, bench/fidelity.py, `make kmodel`, host/flash.py), as
the toolkit runs them. Scratch files go to bench/tmp/ (ignored by git). Timings on a shared
machine are noisy: each figure is the median of repeated runs, and every ratio (make kmodel vs
the bare chain, JPEG vs RGB565, ...) is measured within the same run.
"""
import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, REPO)
sys.path.insert(0, BENCH)

import table  # noqa: E402
from host.devconfig import DEFAULT_READ_BUF_LEN  # noqa: E402

TMP = os.path.join(BENCH, "tmp")
PY = sys.executable
EXAMPLE_CONFIG = os.path.join("examples", "face", "convert.json")
EVAL_IMAGES = os.path.join("examples", "face", "eval")
PHOTOS = os.path.join(TMP, "photos")      # bench/photos.py writes them
SEED_PB = os.path.join(REPO, "examples", "seed-face", "Freeze_save.pb")
SEED_ARGS = ["--input-size", "240x320", "--decoder", "grid", "--threshold", "0.7"]
EXAMPLE_ANCHORS = "0.496,0.624,0.767,0.958,1.148,1.437,1.705,2.129,2.503,3.123"
ALL_METHODS = ["no_clip", "l2", "kld_m2", "cdf"]

# (name, model, baud, payload, read_buf_len, images, repeats, extra); quick subset.
# extra "photos": the natural photographs of bench/photos.py instead of the example eval set
# (rgb565z vs rgb565 vs jpeg, issue 13; the tiny kmodel so that the link is the limit)
RBL = DEFAULT_READ_BUF_LEN
LINK_FULL = [
    ("example-1.5M-rgb565", "example", 1500000, "rgb565", RBL, 8, 3, "host"),
    ("tiny-1.5M-rgb565", "tiny", 1500000, "rgb565", RBL, 8, 3, None),
    ("example-1.5M-jpeg", "example", 1500000, "jpeg", RBL, 16, 3, None),
    ("tiny-1.5M-jpeg", "tiny", 1500000, "jpeg", RBL, 16, 3, None),
    ("example-115k-rgb565", "example", 115200, "rgb565", RBL, 3, 1, None),
    ("example-115k-jpeg", "example", 115200, "jpeg", RBL, 8, 1, None),
    ("example-1.5M-rgb565-ring16k", "example", 1500000, "rgb565", 16384, 8, 1, None),
    ("example-1.5M-rgb565-ring64k", "example", 1500000, "rgb565", 65534, 8, 1, None),
    ("example-v4-1.5M-rgb565", "example-v4", 1500000, "rgb565", RBL, 8, 3, None),
    ("photos-tiny-1.5M-rgb565", "tiny", 1500000, "rgb565", RBL, 6, 3, "photos"),
    ("photos-tiny-1.5M-rgb565z", "tiny", 1500000, "rgb565z", RBL, 6, 3, "photos"),
    ("photos-tiny-1.5M-jpeg", "tiny", 1500000, "jpeg", RBL, 6, 3, "photos"),
    ("photos-tiny-115k-rgb565", "tiny", 115200, "rgb565", RBL, 6, 1, "photos"),
    ("photos-tiny-115k-rgb565z", "tiny", 115200, "rgb565z", RBL, 6, 1, "photos"),
    ("photos-tiny-115k-jpeg", "tiny", 115200, "jpeg", RBL, 6, 1, "photos"),
]
LINK_QUICK = [
    ("example-1.5M-rgb565", "example", 1500000, "rgb565", RBL, 4, 1, "host"),
    ("tiny-1.5M-rgb565", "tiny", 1500000, "rgb565", RBL, 4, 1, None),
    ("example-1.5M-jpeg", "example", 1500000, "jpeg", RBL, 8, 1, None),
    ("example-115k-jpeg", "example", 115200, "jpeg", RBL, 4, 1, None),
    ("example-v4-1.5M-rgb565", "example-v4", 1500000, "rgb565", RBL, 4, 1, None),
    ("photos-tiny-1.5M-rgb565", "tiny", 1500000, "rgb565", RBL, 6, 1, "photos"),
    ("photos-tiny-1.5M-rgb565z", "tiny", 1500000, "rgb565z", RBL, 6, 1, "photos"),
]
# kmodel V4 (ncc v0.2, `make ncc`) for stock MaixPy-v1: its rows run when ncc is there
NCC = os.path.join(REPO, ".venv", "bin", "ncc")
V4_ARGS = ["--firmware", "maixpy-v4"]
V4_METHODS = ["no_clip"]
JPEG_QUALITIES = [95, 90, 75, 50]
# long evaluations (issue 14): serial_eval on this many generated images of the small model
LONG_EVAL_FULL = [1000, 10000]
LONG_EVAL_QUICK = [200]


def say(text):
    sys.stdout.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), text))
    sys.stdout.flush()


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def tool_env():
    env = dict(os.environ)
    env["PATH"] = os.path.join(os.path.dirname(PY)) + os.pathsep + env.get("PATH", "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONPATH"] = REPO
    for key in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):   # a clean make for `make kmodel`
        env.pop(key, None)
    return env


LAST_CPU = [0.0]


def _children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(cmd, what, timeout=900):
    """Run a command from the repository root; returns wall seconds (LAST_CPU[0]: the CPU
    seconds of the process and its descendants). Output kept in bench/tmp/logs/, shown on
    failure."""
    os.makedirs(os.path.join(TMP, "logs"), exist_ok=True)
    log_path = os.path.join(TMP, "logs", what.replace(" ", "_").replace("/", "_") + ".log")
    cpu = _children_cpu()
    t = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.run(cmd, cwd=REPO, env=tool_env(), stdin=subprocess.DEVNULL,
                              stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
    seconds = time.perf_counter() - t
    LAST_CPU[0] = _children_cpu() - cpu
    if proc.returncode != 0:
        with open(log_path, "rb") as f:
            tail = f.read().decode("utf-8", "replace").strip().splitlines()[-15:]
        raise RuntimeError("%s failed (exit %d): %s\n  %s" % (what, proc.returncode,
                                                             " ".join(cmd), "\n  ".join(tail)))
    return seconds


def read_json(path):
    with open(path) as f:
        return json.load(f)


# ------------------------------------------------------------------ machine
def machine():
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    versions = {}
    try:
        import importlib_metadata as md
    except ImportError:  # pragma: no cover
        md = None
    for pkg in ("tensorflow", "nncase", "pyserial", "kflash"):
        try:
            versions[pkg] = md.version(pkg) if md else None
        except Exception:
            versions[pkg] = None
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_bytes": mem,
            "loadavg_start": [round(v, 2) for v in os.getloadavg()],
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "python": platform.python_version(), "platform": platform.platform(),
            "versions": versions, "git_commit": commit, "git_dirty": dirty}


def _git(*args):
    try:
        return subprocess.run(("git",) + args, cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL).stdout.decode().strip()
    except OSError:
        return ""


# ------------------------------------------------------------------ 3. make kmodel overhead
def bench_kmodel(repeats, extras):
    """`make kmodel` (the real target, into a scratch BUILD) against the bare chain, in pairs
    whose order alternates; ratio = median of the per-pair ratios."""
    pairs = []
    build = None
    for r in range(repeats):
        out = os.path.join(TMP, "kmodel-%d" % r)
        shutil.rmtree(out, ignore_errors=True)
        chain_json = os.path.join(TMP, "chain-%d.json" % r)
        order = ("make", "chain") if r % 2 == 0 else ("chain", "make")
        row = {"loadavg": round(os.getloadavg()[0], 2)}
        for which in order:
            if which == "make":
                row["make_seconds"] = run(["make", "--no-print-directory", "-s", "kmodel",
                                           "BUILD=" + os.path.relpath(out, REPO)],
                                          "make kmodel %d" % r)
                row["make_cpu_seconds"] = LAST_CPU[0]
                row["stages"] = read_json(os.path.join(out, "convert_report.json"))["timings"]
            else:
                row["chain_seconds"] = run([PY, "bench/chain.py", chain_json, "--",
                                            "--config", EXAMPLE_CONFIG], "bare chain %d" % r)
                row["chain_cpu_seconds"] = LAST_CPU[0]
                row["chain_stages"] = read_json(chain_json)["timings"]
        row["ratio"] = row["make_seconds"] / row["chain_seconds"]
        row["cpu_ratio"] = row["make_cpu_seconds"] / row["chain_cpu_seconds"]
        say("make kmodel %.1f s, bare chain %.1f s: %.2fx (CPU time %.2fx; load %.2f)"
            % (row["make_seconds"], row["chain_seconds"], row["ratio"], row["cpu_ratio"],
               row["loadavg"]))
        pairs.append(row)
        build = out
    t = time.perf_counter()
    run(["make", "--no-print-directory", "-s", "setup"], "make setup")
    setup_check = time.perf_counter() - t
    result = {
        "repeats": repeats, "pairs": pairs,
        "make_seconds": median([p["make_seconds"] for p in pairs]),
        "chain_seconds": median([p["chain_seconds"] for p in pairs]),
        "ratio": median([p["ratio"] for p in pairs]),
        "make_cpu_seconds": median([p["make_cpu_seconds"] for p in pairs]),
        "chain_cpu_seconds": median([p["chain_cpu_seconds"] for p in pairs]),
        "cpu_ratio": median([p["cpu_ratio"] for p in pairs]),
        "setup_check_seconds": setup_check,
        "stages": {k: median([p["stages"].get(k) for p in pairs]) for k in pairs[0]["stages"]},
        "chain_stages": {k: median([p["chain_stages"].get(k) for p in pairs])
                         for k in pairs[0]["chain_stages"]},
        "build": os.path.relpath(build, REPO),
    }
    result["startup_other_seconds"] = result["make_seconds"] - sum(result["stages"].values())
    if extras:
        extras_json = os.path.join(TMP, "chain-extras.json")
        run([PY, "bench/chain.py", extras_json, "--extras", "--", "--config", EXAMPLE_CONFIG],
            "chain extras")
        result["extras"] = read_json(extras_json)["extras"]
    return result, build


# ------------------------------------------------------------------ 1, 2. serial eval link
def build_tiny():
    out = os.path.join(TMP, "tiny")
    shutil.rmtree(out, ignore_errors=True)
    pb = os.path.join(TMP, "tiny.pb")
    run([PY, "bench/tiny_model.py", pb], "tiny model")
    run([PY, "host/convert.py", "--frozen-pb", pb, "--input-size", "224x320",
         "--output-node", "tiny/output", "--decoder", "yolo2", "--anchors", EXAMPLE_ANCHORS,
         "--out", out], "tiny kmodel")
    return os.path.join(out, "manifest.json")


def build_small():
    """The 16x16 model of the long-evaluation rows (bench/tiny_model.py --small)."""
    out = os.path.join(TMP, "small")
    shutil.rmtree(out, ignore_errors=True)
    pb = os.path.join(TMP, "small.pb")
    run([PY, "bench/tiny_model.py", "--small", pb], "small model")
    run([PY, "host/convert.py", "--frozen-pb", pb, "--input-size", "16x16",
         "--output-node", "small/output", "--decoder", "grid", "--threshold", "0.5",
         "--no-layer-error", "--out", out], "small kmodel")
    return os.path.join(out, "manifest.json")


def bench_long_eval(counts):
    """serial_eval on 1,000 and 10,000 generated images (QUICK: 200) of the small model:
    peak RSS and images/s (bench/long_eval.py)."""
    spec = {"manifest": build_small(), "counts": counts, "baud": 1500000,
            "state": os.path.join(TMP, "vboard-long"), "images": os.path.join(TMP, "long")}
    spec_path = os.path.join(TMP, "long-eval.spec.json")
    out_path = os.path.join(TMP, "long-eval.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    run([PY, "bench/long_eval.py", spec_path, out_path], "long eval", timeout=3600)
    data = read_json(out_path)
    for r in data["runs"]:
        say("long eval %6d images: %.1f images/s, peak RSS %.1f MB"
            % (r["images"], r["images_per_second"], r["peak_rss_mb"]))
    return data


def build_v4_example():
    """The example as kmodel V4 for a MaixPy-v1 board, as `make kmodel FIRMWARE=maixpy-v4`
    builds it (224x160: its 320x224 serve loop does not fit MaixPy-v1's GC heap); the link
    run's virtual board takes the manifest's firmware, maixpy-v4."""
    out = os.path.join(TMP, "example-v4")
    shutil.rmtree(out, ignore_errors=True)
    run(["make", "-s", "-o", ".venv/.installed", "kmodel", "FIRMWARE=maixpy-v4",
         "BUILD=%s" % out], "example kmodel V4")
    return os.path.join(out, "manifest.json")


def bench_link(configs, manifests):
    runs = []
    if any(c[7] == "photos" for c in configs):
        run([PY, "bench/photos.py", PHOTOS], "photos")
    for name, model, baud, payload, rbl, count, repeats, extra in configs:
        images = PHOTOS if extra == "photos" else EVAL_IMAGES
        spec = {"manifest": manifests[model], "images": images, "count": count,
                "repeats": repeats, "baud": baud, "payload": payload, "read_buf_len": rbl,
                "state": os.path.join(TMP, "vboard-link"),
                "host_cost": extra == "host",
                "jpeg_qualities": JPEG_QUALITIES if extra == "host" else []}
        spec_path = os.path.join(TMP, "link-%s.spec.json" % name)
        out_path = os.path.join(TMP, "link-%s.json" % name)
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        seconds = run([PY, "bench/link.py", spec_path, out_path], "link " + name)
        data = read_json(out_path)
        m = data["median"]
        row = {"name": name, "model": model, "baud": baud, "payload": payload,
               "read_buf_len": rbl, "images": count, "repeats": repeats,
               "image_set": "photos" if extra == "photos" else "example eval",
               "median": m, "per_repeat": data["repeats"], "info": data.get("info"),
               "input_crc_equal": data.get("input_crc_equal"),
               "pixel_crc_equal": data.get("pixel_crc_equal"),
               "inflate_ms_host": data.get("inflate_ms_host"),
               "compression_ratio": data.get("compression_ratio"),
               "boot_seconds": data.get("boot_seconds"), "seconds": seconds,
               "loadavg": [data["loadavg_start"][0], data["loadavg_end"][0]]}
        for key in ("host_cost", "jpeg_quality"):
            if key in data:
                row[key] = data[key]
        say("link %-44s %.2f img/s, efficiency %.3f (steady %.3f), KPU %.0f ms"
            % (name, m["images_per_second"], m["efficiency"], m["steady_efficiency"] or 0,
               m["kpu_ms"] or 0))
        runs.append(row)
    return runs


# ------------------------------------------------------------------ 4. fidelity
def bench_fidelity(models):
    rows = []
    for name, args, methods in models:
        out = os.path.join(TMP, "fidelity-%s.json" % name)
        seconds = run([PY, "bench/fidelity.py", out, ",".join(methods), "--"] + args,
                      "fidelity " + name, timeout=1800)
        data = read_json(out)
        data.update({"name": name, "seconds": seconds})
        for m in data["methods"]:
            say("fidelity %-8s %-8s cos %.5f l2r %.4f max-abs %.3f F1 %s compile %.1f s"
                % (name, m["method"], m["cos"], m["l2r"], m["max_abs"],
                   "%.3f" % m["f1"] if m.get("f1") is not None else "n/a",
                   m["compile_seconds"]))
        rows.append(data)
    return rows


# ------------------------------------------------------------------ 5. flashing
def bench_flash(manifest_path, repeats):
    rows = []
    report_path = os.path.join(os.path.dirname(manifest_path), "flash_report.json")
    for r in range(repeats):
        state = os.path.join(TMP, "vboard-flash")
        shutil.rmtree(state, ignore_errors=True)       # a blank board: everything is written
        cmd = [PY, "host/flash.py", "--port", "virtual", "--manifest", manifest_path,
               "--vboard-state", state, "--baud", "1500000", "--no-progress"]
        failed = None
        try:
            seconds = run(cmd, "flash %d" % r)
        except RuntimeError as exc:
            # once more on a fresh board, the failure kept (log + the board's own log)
            failed = str(exc).splitlines()[-1].strip()[:300]
            say("flash %d failed, retried once: %s" % (r, failed))
            try:
                shutil.copy(os.path.join(state, "vboard.log"),
                            os.path.join(TMP, "logs", "flash_%d_failed_vboard.log" % r))
            except OSError:
                pass
            shutil.rmtree(state, ignore_errors=True)
            seconds = run(cmd, "flash %d retry" % r)
        rep = read_json(report_path)
        k, up = rep["kflash"], rep["repl_upload"]
        row = {"seconds": seconds, "flash_seconds": rep["seconds"],
               "kflash_baud": k["baud"], "kflash_bytes": k["bytes"],
               "kflash_seconds": k["seconds"], "kflash_write_rate": k["write_rate"],
               "kflash_write_efficiency": k["write_rate"] / (k["baud"] / 10.0),
               "kflash_overall_rate": k["bytes"] / k["seconds"],
               "kflash_overall_efficiency": k["bytes"] / k["seconds"] / (k["baud"] / 10.0),
               "stub_bytes": k["stub_bytes"], "stub_seconds": k["stub_seconds"],
               "stub_efficiency": k["stub_bytes"] / k["stub_seconds"] / 11520.0
               if k["stub_seconds"] else None,
               "repl_baud": up["baud"], "repl_bytes": up["bytes"],
               "repl_seconds": up["seconds"], "repl_rate": up["bytes"] / up["seconds"],
               "repl_efficiency": up["bytes"] / up["seconds"] / (up["baud"] / 10.0),
               "failed_first": failed}
        say("flash: kflash writes %.1f KB/s = %.2f of line rate; REPL upload %.1f KB/s = %.2f"
            % (row["kflash_write_rate"] / 1e3, row["kflash_write_efficiency"],
               row["repl_rate"] / 1e3, row["repl_efficiency"]))
        rows.append(row)
    keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float))]
    return {"repeats": repeats, "runs": rows,
            "median": {k: median([r[k] for r in rows]) for k in keys},
            "retried": [r["failed_first"] for r in rows if r["failed_first"]]}


# ------------------------------------------------------------------ main
def main(argv):
    ap = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="fewer repeats, methods and images (<= 3 min)")
    ap.add_argument("--out", default=None,
                    help="results file (default bench/results.json; quick: "
                    "bench/tmp/results-quick.json)")
    ap.add_argument("--readme", default=None,
                    help="page to update (default docs/bench.md; quick: none)")
    ap.add_argument("--seed-pb", default=SEED_PB,
                    help="the original user's frozen model (skipped when missing)")
    ap.add_argument("--only", choices=sorted(ONLY), default=None,
                    help="measure this section alone and update it in the existing results "
                    "file (and the table)")
    opts = ap.parse_args(argv)
    quick = opts.quick
    out = opts.out or os.path.join(BENCH, "tmp" if quick else "", "results-quick.json"
                                   if quick else "results.json")
    readme = opts.readme if opts.readme is not None else \
        ("" if quick else os.path.join(REPO, "docs", "bench.md"))
    os.makedirs(TMP, exist_ok=True)
    t0 = time.perf_counter()
    results = {"schema": 1, "quick": quick, "machine": machine(), "sections": {},
               "errors": [], "notes": []}
    say("%s: %s, %d cores, load average %s" % ("quick" if quick else "full",
                                               results["machine"]["cpu"],
                                               results["machine"]["cores"],
                                               results["machine"]["loadavg_start"]))

    def section(name, fn, *args):
        t = time.perf_counter()
        say("== %s" % name)
        try:
            value = fn(*args)
        except Exception as exc:  # record it, measure the rest, fail at the end
            say("FAILED: %s" % exc)
            results["errors"].append({"section": name, "error": str(exc)[:2000]})
            value = None
        results["sections"][name] = round(time.perf_counter() - t, 1)
        return value

    if opts.only:
        return only_section(opts, quick, out, readme, results, section)
    kmodel = section("make kmodel overhead", bench_kmodel, 1 if quick else 4, not quick)
    if kmodel is not None:
        results["kmodel"], build = kmodel
        example_manifest = os.path.join(build, "manifest.json")
    else:
        example_manifest = None
    tiny = section("tiny kmodel", build_tiny)
    has_ncc = os.path.isfile(NCC)
    if not has_ncc:
        results["notes"].append("no .venv/bin/ncc (`make ncc`): the kmodel V4 rows are skipped")
    v4 = section("example kmodel V4", build_v4_example) if has_ncc else None
    if example_manifest:
        manifests = {"example": example_manifest, "tiny": tiny, "example-v4": v4}
        configs = [c for c in (LINK_QUICK if quick else LINK_FULL)
                   if manifests[c[1]] is not None]
        results["link"] = section("serial eval link", bench_link, configs, manifests)
        results["flash"] = section("flashing", bench_flash, example_manifest, 1 if quick else 2)
    methods = ["no_clip"] if quick else ALL_METHODS
    sources = [("example", ["--config", EXAMPLE_CONFIG])]
    if os.path.isfile(opts.seed_pb):
        sources.append(("seed", ["--frozen-pb", opts.seed_pb] + SEED_ARGS))
    else:
        results["notes"].append("the original user's model %s is missing: its fidelity rows "
                                "are skipped" % opts.seed_pb)
    models = [(name, args, methods) for name, args in sources]
    if has_ncc:
        models += [(name + "-v4", args + V4_ARGS, V4_METHODS) for name, args in sources]
    results["fidelity"] = section("fidelity", bench_fidelity, models)
    results["long_eval"] = section("long evaluations", bench_long_eval,
                                   LONG_EVAL_QUICK if quick else LONG_EVAL_FULL)
    results["machine"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    results["duration_seconds"] = round(time.perf_counter() - t0, 1)
    return finish(results, out, readme)


def measure_link_alone(quick):
    """The link section with the builds it needs (the example as `make kmodel` makes it, the
    tiny kmodel, the V4 example when ncc is there)."""
    example = os.path.join(TMP, "example-link")
    shutil.rmtree(example, ignore_errors=True)
    run(["make", "-s", "-o", ".venv/.installed", "kmodel", "BUILD=%s" % example],
        "example kmodel")
    manifests = {"example": os.path.join(example, "manifest.json"), "tiny": build_tiny(),
                 "example-v4": build_v4_example() if os.path.isfile(NCC) else None}
    configs = [c for c in (LINK_QUICK if quick else LINK_FULL) if manifests[c[1]] is not None]
    return bench_link(configs, manifests)


# --only NAME: (section name, results key, measure(quick))
ONLY = {
    "long-eval": ("long evaluations", "long_eval",
                  lambda quick: bench_long_eval(LONG_EVAL_QUICK if quick else LONG_EVAL_FULL)),
    "link": ("serial eval link", "link", measure_link_alone),
}


def only_section(opts, quick, out, readme, fresh, section):
    """--only NAME: that section measured now, the rest of `out` kept as it was (the machine
    record of this run goes with the section)."""
    name, key, measure = ONLY[opts.only]
    try:
        results = read_json(out)
    except (OSError, ValueError):
        results = {"schema": 1, "quick": quick, "sections": {}, "errors": [], "notes": [],
                   "machine": fresh["machine"]}
    t0 = time.perf_counter()
    results["errors"] = [e for e in results.get("errors", []) if e["section"] != name]
    results[key] = section(name, measure, quick)
    results.setdefault("sections", {})[name] = fresh["sections"][name]
    results["errors"] += fresh["errors"]
    if isinstance(results[key], dict):
        machine = dict(fresh["machine"])
        machine["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
        results[key]["machine"] = machine
    say("%s alone in %.1f min" % (name, (time.perf_counter() - t0) / 60.0))
    return finish(results, out, readme, only=True)


def finish(results, out, readme, only=False):
    """results -> `out` (atomically) and the table -> `readme` (or stdout); 1 on errors.
    `only`: one section was measured (the stored duration is the full run's)."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp_out = out + ".tmp"
    with open(tmp_out, "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    os.replace(tmp_out, out)
    text = table.render(results)
    if readme:
        table.update_readme(readme, text)
        say("bench table updated: %s" % os.path.relpath(readme, REPO))
    else:
        sys.stdout.write(text + "\n")
    if results.get("duration_seconds") and not only:
        say("done in %.1f min: %s" % (results["duration_seconds"] / 60.0,
                                      os.path.relpath(out, REPO)))
    if results["errors"]:
        for e in results["errors"]:
            say("error in %s: %s" % (e["section"], e["error"].splitlines()[0]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
