"""Benchmark: physiology processing + concordance features of one full-length subject.

Run on demand (NOT a test): ``.venv/bin/python -m benchmarks.bench_physio [--seed N]``.

One full-scale synthetic subject (``design_study("full", seed, n_subjects=1)``:
73 min at 1000 Hz) is simulated in memory with
:func:`mmme_neuro.simulate.physio.simulate_physio` (no files). Timed steps:

* ``process_physio`` - :func:`mmme_neuro.physio.process_physio` on ECG, PPG,
  RSP, EDA and SKT (per-signal times reported);
* ``event_features`` / ``event_timecourses`` / ``window_features`` - the
  epoch measures of every expression (ME/MaE) on the physiology clock;
* ``nk_ecg_process_reference`` - ``nk.ecg_process`` on the same ECG (the
  cost the fast path avoids), skipped with ``--no-reference``.

Prints a Markdown table and writes ``benchmarks/results/physio.json`` (wall
times in s, peak RSS in MB). Target: the whole physiology step < 5 s.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).parent / "results"
logger = logging.getLogger("benchmarks.bench_physio")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-reference", action="store_true", help="skip nk.ecg_process")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from mmme_neuro import concordance as co
    from mmme_neuro import physio as ph
    from mmme_neuro.simulate.design import design_study
    from mmme_neuro.simulate.effects import Effects
    from mmme_neuro.simulate.physio import simulate_physio

    subj = design_study("full", args.seed, n_subjects=1).subjects[0]
    t0 = time.perf_counter()
    data, truth = simulate_physio(subj, Effects(), args.seed)
    t_sim = time.perf_counter() - t0
    fs = float(subj.physio_sfreq)
    sig = pd.DataFrame({"ECG": data[:, 5], "PPG": data[:, 0], "RSP": data[:, 1], "EDA": data[:, 4], "SKT": data[:, 3]})
    del data
    rss_before = _rss_mb()
    rows: dict[str, float] = {}
    t0 = time.perf_counter()
    proc, info = ph.process_physio(sig, fs, eda_unit="uS")
    rows["process_physio"] = time.perf_counter() - t0
    tf = truth.to_frame()
    tf = tf[tf["recorded"]].sort_values("physio_onset_s")
    on = tf["physio_onset_s"].to_numpy()
    ev = pd.DataFrame({"event_id": tf["expr_id"].to_numpy(), "subject": "sub-01", "condition": tf["kind"].to_numpy(),
                       "onset_s": on, "clean_baseline": np.diff(on, prepend=-np.inf) >= 8.0})  # fmt: skip
    t0 = time.perf_counter()
    ph.event_features(proc, info, ev)
    rows["event_features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ph.event_timecourses(proc, info, ev)
    rows["event_timecourses"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    co.window_features(proc, info, ev)
    rows["window_features"] = time.perf_counter() - t0
    rss_ours = _rss_mb()
    if not args.no_reference:
        import neurokit2 as nk

        t0 = time.perf_counter()
        nk.ecg_process(sig["ECG"].to_numpy(), sampling_rate=int(fs))
        rows["nk_ecg_process_reference"] = time.perf_counter() - t0
    total = sum(v for k, v in rows.items() if not k.startswith("nk_"))
    per_signal = {k: round(v, 3) for k, v in info["timing_s"].items()}
    dominant = max(per_signal, key=per_signal.get)
    result = {
        "subject": {"duration_min": round(len(sig) / fs / 60, 1), "sfreq_hz": fs, "n_signals": sig.shape[1],
                    "n_expressions": len(ev)},  # fmt: skip
        "simulate_s": round(t_sim, 2),
        "wall_s": {k: round(v, 3) for k, v in rows.items()},
        "physio_step_total_s": round(total, 3),
        "process_physio_per_signal_s": per_signal,
        "dominant_signal": dominant,
        "peak_rss_mb": {"before_processing": round(rss_before, 1), "after_ours": round(rss_ours, 1), "final": round(_rss_mb(), 1)},
        "target_s": 5.0,
        "meets_target": bool(total < 5.0),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "physio.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = ["| step | wall (s) |", "|---|---|"] + [f"| {k} | {v:.3f} |" for k, v in rows.items()]
    lines += [f"| **physiology step total** | **{total:.3f}** |", "",
              f"per signal: {per_signal} (dominant: {dominant}); peak RSS {result['peak_rss_mb']} MB"]  # fmt: skip
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
