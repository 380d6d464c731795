"""Benchmark: write one full-scale synthetic subject (73-min session, 1000 Hz).

Run on demand: ``.venv/bin/python -m benchmarks.bench_simulate [--subjects N]``.
Prints a table and writes ``benchmarks/results/simulate.json``. Each
measurement runs in a fresh subprocess so its peak resident memory is its own.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

_CHILD = """
import sys, time, resource, json
from mmme_neuro.simulate.study import simulate_study
t0 = time.perf_counter()
simulate_study(sys.argv[1], scale="full", seed=1, n_subjects=int(sys.argv[2]), progress=False)
wall = time.perf_counter() - t0
print(json.dumps({"wall_s": wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table; write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", _CHILD, str(Path(tmp) / "study"), str(args.subjects)],
                             check=True, capture_output=True, text=True)  # fmt: skip
        res = json.loads(out.stdout.strip().splitlines()[-1])
        size = sum(p.stat().st_size for p in (Path(tmp) / "study").rglob("*") if p.is_file())
    res.update(subjects=args.subjects, per_subject_s=res["wall_s"] / args.subjects,
               disk_gb=size / 1e9, machine=platform.machine(), python=platform.python_version())  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "simulate.json").write_text(json.dumps(res, indent=2, sort_keys=True))
    sys.stdout.write(
        "| what | subjects | wall (s) | per subject (s) | peak RSS (MB) | disk (GB) |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: |\n"
        f"| simulate full-scale study | {args.subjects} | {res['wall_s']:.1f} | {res['per_subject_s']:.1f} "
        f"| {res['peak_rss_mb']:.0f} | {res['disk_gb']:.2f} |\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
