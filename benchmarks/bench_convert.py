"""Benchmark: BIDS conversion of one full-scale (MMME-sized) synthetic subject.

Generates one ``full`` subject (~73 min, 1000 Hz, ~1.9 GB of raw files) unless
it exists, then times :func:`mmme_neuro.bids.convert_study` in a fresh
subprocess (wall time, peak RSS of the child), twice: the first conversion and
a re-run that must skip the unchanged subject. Prints a table and writes
``benchmarks/results/convert.json``. Targets: first conversion < 30 s and
< 2 GB peak RSS.

Run on demand::

    python benchmarks/bench_convert.py [--work DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 30.0
TARGET_RSS_GB = 2.0
RESULTS = Path(__file__).resolve().parent / "results" / "convert.json"

_CHILD = """
import json, logging, sys, time
from mmme_neuro.bids import convert_study
logging.basicConfig(level=logging.WARNING)
t = time.perf_counter()
s = convert_study(sys.argv[1], sys.argv[2], progress=False)
print(json.dumps({"elapsed_s": time.perf_counter() - t, "converted": s.converted, "skipped": s.skipped,
                  "failed": s.failed, "accounting_ok": s.accounting_ok, "counts": s.counts}))
"""


def _run_child(raw_dir: Path, bids_root: Path) -> dict:
    """Convert in a fresh interpreter; return its report, wall time and peak RSS (GB)."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    before = ru0.ru_maxrss
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _CHILD, str(raw_dir), str(bids_root)], check=True,
                         capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_kb = ru1.ru_maxrss  # max over children so far
    report = json.loads(out.stdout.strip().splitlines()[-1])
    report["wall_s"] = wall
    report["cpu_s"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    report["peak_rss_gb"] = peak_kb / 1e6 if peak_kb > before else None
    return report


def _dir_size_gb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e9


def main() -> int:
    """Run the benchmark; return 0 if the targets are met."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default=None, help="work directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the generated study and BIDS root")
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="mmme-bench-convert-"))
    work.mkdir(parents=True, exist_ok=True)
    study_dir = work / "study"
    bids_root = work / "bids"
    from mmme_neuro.simulate.study import simulate_study

    t0 = time.perf_counter()
    if not (study_dir / "COMPLETE").is_file():
        simulate_study(study_dir, scale="full", n_subjects=1, overwrite=True, progress=False)
    sim_s = time.perf_counter() - t0
    raw_dir = study_dir / "raw"
    if bids_root.exists():
        shutil.rmtree(bids_root)
    first = _run_child(raw_dir, bids_root)
    rerun = _run_child(raw_dir, bids_root)
    result = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_avg_1min": os.getloadavg()[0]},
        "raw_gb": round(_dir_size_gb(raw_dir), 3),
        "bids_gb": round(_dir_size_gb(bids_root), 3),
        "simulate_s": round(sim_s, 1),
        "first_conversion": {"wall_s": round(first["wall_s"], 2), "convert_s": round(first["elapsed_s"], 2),
                             "cpu_s": round(first["cpu_s"], 2),
                             "peak_rss_gb": first["peak_rss_gb"] and round(first["peak_rss_gb"], 3),
                             "converted": first["converted"], "accounting_ok": first["accounting_ok"]},
        "rerun": {"wall_s": round(rerun["wall_s"], 2), "convert_s": round(rerun["elapsed_s"], 2),
                  "skipped": rerun["skipped"]},
        "targets": {"wall_s": TARGET_S, "peak_rss_gb": TARGET_RSS_GB},
    }  # fmt: skip
    ok = first["wall_s"] < TARGET_S and (first["peak_rss_gb"] or 0) < TARGET_RSS_GB
    result["targets_met"] = ok
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    rows = [
        ("raw input (GB)", f"{result['raw_gb']:.2f}", ""),
        ("BIDS output (GB)", f"{result['bids_gb']:.2f}", ""),
        ("first conversion, wall (s)", f"{first['wall_s']:.1f}", f"< {TARGET_S:g}"),
        ("first conversion, peak RSS (GB)", f"{first['peak_rss_gb'] or float('nan'):.2f}", f"< {TARGET_RSS_GB:g}"),
        ("first conversion, CPU user+sys (s)", f"{first['cpu_s']:.1f}", ""),
        ("re-run (skip), wall (s)", f"{rerun['wall_s']:.1f}", ""),
    ]
    width = max(len(r[0]) for r in rows)
    sys.stdout.write(f"{'measure':<{width}}  {'value':>8}  target\n")
    for name, value, target in rows:
        sys.stdout.write(f"{name:<{width}}  {value:>8}  {target}\n")
    sys.stdout.write(f"load average (1 min): {result['machine']['load_avg_1min']:.1f} on "
                     f"{result['machine']['cpus']} CPUs; results in {RESULTS}\n")  # fmt: skip
    if not args.keep and not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
