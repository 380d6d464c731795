"""Benchmark: epoching + preprocessing + ERP of one full-length subject, against the authors' way.

Run on demand (NOT a test): ``.venv/bin/python -m benchmarks.bench_erp [--study DIR] [--repeat 3]``.

One full-scale synthetic subject (``simulate_study(dir, scale="full",
n_subjects=1)``: 73 min, 69 channels at 1000 Hz) is generated (or reused with
``--study``), then each pipeline runs in a fresh subprocess so that its wall
time and peak resident memory (RSS) are its own:

* ``ours_erp`` - :func:`mmme_neuro.epochs.epochs_from_session` (padded
  segments, filters, bad channels, re-reference, ocular ICA, EMG measures,
  rejection) + :func:`mmme_neuro.erp.compute_evoked`, default configuration;
* ``ours_erp_threads`` - the same with ``run.threads = -1`` (both cores;
  identical results);
* ``ours_erp_no_ica`` - the same with ``preprocessing.ica = false``;
* ``ours_erp_autoreject_global`` / ``_local`` - the same with
  ``rejection.autoreject = "global"`` / ``"local"`` (the cost of the option);
* ``ours_band_psd`` - the authors' features (band power of a 1-s periodogram
  around each apex) computed our way: only the windows are read, vectorised;
* ``authors`` - :mod:`benchmarks.authors_way` (whole recording to a DataFrame,
  per-sample labelling loop, periodogram per channel and window).

Every process runs its pipeline twice on the subject: ``wall_s`` is the
second run, the steady state of a study run or a Jupyter session (imports
done, numba functions loaded, filter kernels designed: what every subject
but a worker's first sees); ``cold_s`` is the first run plus the imports of
the pipeline's modules (``imports_s``), what a fresh process pays once. Both
runs must give the same result (``same_as_first``). The target is judged on
the first run (``first_s``: one subject, as the issue states it); the
second-run ratio is printed too (the authors' way is much faster the second
time in a process on this VM: reading the whole recording 4.5 -> 1.1 s and
building its DataFrame 16 -> 7 s, measured apart; the file is in the page
cache both times, so it is the allocation of its 6.8 GB that costs less). With ``--repeat N`` the pipelines run N times in alternating
rounds (this VM's speed drifts within a run) and the speed-ups are the
medians of the per-round ratios, printed with their range.

In ``ours_erp`` and ``ours_erp_no_ica`` the main steps are timed inside the
run (wrappers around the step functions, see ``STEPS``; no profiler), and
the benchmark prints what reading the padded spans plus fitting the ocular
ICA took against the time the 50x target allows (the authors' first run /
50): a floor for any pipeline doing what the issue asks.

Prints Markdown tables and writes ``benchmarks/results/erp.json``.
Targets: ``ours_erp`` >= 50x faster than ``authors`` and < 1.5 GB peak RSS.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

_SETUP = """
import sys, time, resource, json, warnings, logging, gc
t_imp = time.perf_counter()
warnings.simplefilter("ignore")
import numpy as np, pandas as pd
from pathlib import Path
from mmme_neuro.config import load_config
from mmme_neuro.io.coding import read_coding
from mmme_neuro.ingest import find_sessions, ingest_session, SessionFiles
study = Path(sys.argv[1]); what = sys.argv[2]
import mne.io.eeglab
if what.startswith("ours_erp"):  # and what they import on first use
    import dask.array, jinja2, mne_bids, numba, picard, sklearn.decomposition, mne.preprocessing
    if "autoreject" in what:
        import autoreject
    from mmme_neuro import epochs, erp
elif what == "ours_band_psd":
    import mne_bids
    from scipy.signal import periodogram
    from benchmarks.authors_way import BANDS
else:
    from benchmarks import authors_way
imports_s = time.perf_counter() - t_imp
STEPS = {}  # step -> seconds, summed over calls (one thread: exclusive of each other but "ICA, all")
if what in ("ours_erp", "ours_erp_no_ica"):
    import mne.io
    from mmme_neuro import preprocessing
    def _timed(owner, name, label):
        f = getattr(owner, name)
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                STEPS[label] = STEPS.get(label, 0.0) + time.perf_counter() - t
        for mod in (owner, preprocessing, epochs):  # also where the name was imported
            if getattr(mod, name, None) is f:
                setattr(mod, name, wrapper)
    for owner, name, label in json.loads(sys.argv[3]):
        _timed(eval(owner), name, label)
cfg = load_config(None, preprocessing={"ica": what != "ours_erp_no_ica"},
                  rejection={"autoreject": what.rsplit("_", 1)[1] if what.startswith("ours_erp_autoreject") else "off"},
                  **({"run": {"threads": -1}} if what == "ours_erp_threads" else {}))
coding = read_coding(study / "raw" / "coding_file.xlsx", cfg.coding)
files = find_sessions(study / "raw", coding)[0]
files = SessionFiles(files.subject, files.session_date, files.eeg, None)  # EEG only, as the authors' EEG features
exprs = coding.expressions[coding.expressions["subject"] == files.subject].reset_index(drop=True)


def run():
    out = {}
    if what.startswith("ours_erp"):
        session = ingest_session(files, coding.expressions, cfg)
        ep, md = epochs.epochs_from_session(session, cfg)
        ev = erp.compute_evoked(ep, md)
        out["n_epochs"] = {c: int(n) for c, n in zip(ev["condition"].values, ev["n_epochs"].values)}
        out["n_samples_read"] = int(md.attrs["preprocessing"]["n_samples_read"])
        out["n_samples_cleaned"] = int((md.attrs["preprocessing"]["cleaned"] or {}).get("n_samples", -1))
        out["evoked_sum"] = float(np.nansum(np.abs(ev.values)))
    elif what == "ours_band_psd":
        session = ingest_session(files, coding.expressions, cfg)
        raw = session.eeg_raw
        sf = raw.info["sfreq"]
        eeg = [c for c, t in zip(raw.ch_names, raw.get_channel_types()) if t == "eeg"]
        ex = session.expressions
        apex = (ex["eeg_apex_sample"].to_numpy())
        half = int(sf // 2)
        x = np.stack([raw.get_data(picks=eeg, start=int(a) - half, stop=int(a) + half) for a in apex]) * 1e6
        freqs, pxx = periodogram(x, fs=sf, axis=-1)
        feats = np.stack([pxx[..., (freqs >= lo) & (freqs < hi)].mean(-1) for lo, hi in BANDS.values()], -1)
        out["features"] = feats.reshape(len(ex), -1).tolist()
        out["ids"] = ex["expression_id"].tolist()
        out["n_expressions"] = len(ex)
    else:
        feats = authors_way.run(files.eeg, exprs.rename(columns={"apex_s": "apex_s"}))
        out["features"] = feats.drop(columns="expression_id").to_numpy().tolist()
        out["ids"] = feats["expression_id"].tolist()
        out["n_expressions"] = len(feats)
    return out


t0 = time.perf_counter()
first = run()
t1 = time.perf_counter()
steps_first = dict(STEPS)
STEPS.clear()
gc.collect()
out = run()
out["wall_s"] = time.perf_counter() - t1
out["first_s"] = t1 - t0
out["steps_first_s"] = steps_first
out["steps_second_s"] = dict(STEPS)
out["imports_s"] = imports_s
out["cold_s"] = out["first_s"] + imports_s
out["same_as_first"] = {k: v for k, v in first.items()} == {k: v for k, v in out.items() if k in first}
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""

# Steps timed inside ``ours_erp`` / ``ours_erp_no_ica`` (wrappers around these functions, no profiler):
# (object, attribute, label). Reading and fitting the ICA are what any pipeline doing what the issue asks
# (padded segments for the 0.1-Hz high-pass, ocular ICA) must pay: their sum bounds the speed-up.
STEPS = (
    ("mne.io.BaseRaw", "_read_segment", "read (MNE, padded spans + EMG)"),
    ("preprocessing", "_lowpass_notch_decimate", "low-pass + decimate 1000 -> 250 Hz"),
    ("preprocessing", "_highpassed_windows", "0.1-Hz high-pass of the kept windows"),
    ("preprocessing", "detect_bad_channels", "bad channels"),
    ("mne.preprocessing.ICA", "fit", "ICA fit (picard)"),
    ("preprocessing", "_run_ica", "ICA, all (fit, EOG/muscle scores, apply)"),
    ("epochs", "emg_measures", "EMG measures"),
    ("erp", "compute_evoked", "ERP (evoked + provenance)"),
)
FLOOR = ("read (MNE, padded spans + EMG)", "ICA fit (picard)")

PIPELINES = ("ours_erp", "ours_erp_threads", "ours_erp_no_ica", "ours_erp_autoreject_global",
             "ours_erp_autoreject_local", "ours_band_psd", "authors")


def _run(study: Path, what: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", _SETUP, str(study), what, json.dumps(STEPS)], check=True, capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table; write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", type=Path, default=None, help="existing full-scale 1-subject study (default: generate one)")
    parser.add_argument("--repeat", type=int, default=1, help="alternating rounds of all pipelines (default 1)")
    args = parser.parse_args(argv)
    rounds: list[dict[str, dict]] = []
    with tempfile.TemporaryDirectory() as tmp:
        study = args.study
        if study is None:
            from mmme_neuro.simulate.study import simulate_study

            study = Path(tmp) / "study"
            simulate_study(study, scale="full", seed=1, n_subjects=1, progress=False)
        for _ in range(max(1, args.repeat)):
            rounds.append({what: _run(study, what) for what in PIPELINES})
    import numpy as np

    a, b = rounds[0]["authors"], rounds[0]["ours_band_psd"]
    common = sorted(set(a["ids"]) & set(b["ids"]))
    fa = {i: v for i, v in zip(a["ids"], a["features"], strict=True)}
    fb = {i: v for i, v in zip(b["ids"], b["features"], strict=True)}
    diff = max((float(np.max(np.abs(np.subtract(fa[i], fb[i])) / (np.abs(fa[i]) + 1e-12))) for i in common), default=float("nan"))
    same_threads = all(r["ours_erp"]["evoked_sum"] == r["ours_erp_threads"]["evoked_sum"] for r in rounds)
    for r in rounds:
        for p in r.values():
            p.pop("features", None)
            p.pop("ids", None)
    res: dict[str, dict] = {}
    for what in PIPELINES:
        runs = [r[what] for r in rounds]
        res[what] = {**runs[0], "first_s": statistics.median(p["first_s"] for p in runs),
                     "wall_s": statistics.median(p["wall_s"] for p in runs),
                     "cold_s": statistics.median(p["cold_s"] for p in runs),
                     "imports_s": statistics.median(p["imports_s"] for p in runs),
                     "same_as_first": all(p["same_as_first"] for p in runs),
                     "peak_rss_mb": max(p["peak_rss_mb"] for p in runs),
                     "first_s_rounds": [p["first_s"] for p in runs],
                     "wall_s_rounds": [p["wall_s"] for p in runs]}  # fmt: skip
        for key in ("steps_first_s", "steps_second_s"):
            if key in runs[0]:
                res[what][key] = {k: statistics.median(p[key].get(k, 0.0) for p in runs) for k in runs[0][key]}
    # The floor: what reading the padded spans and fitting the ocular ICA alone took inside our first run,
    # against the time the target allows (authors' first run / 50), round by round.
    budget = [r["authors"]["first_s"] / 50 for r in rounds]
    floor = [sum(r["ours_erp"]["steps_first_s"].get(k, 0.0) for k in FLOOR) for r in rounds]
    first = {what: [r["authors"]["first_s"] / r[what]["first_s"] for r in rounds] for what in PIPELINES}
    second = {what: [r["authors"]["wall_s"] / r[what]["wall_s"] for r in rounds] for what in PIPELINES}
    summary = {
        "pipelines": res,
        "rounds": len(rounds),
        "speedup_erp_vs_authors": statistics.median(first["ours_erp"]),
        "speedup_erp_threads_vs_authors": statistics.median(first["ours_erp_threads"]),
        "speedup_erp_no_ica_vs_authors": statistics.median(first["ours_erp_no_ica"]),
        "speedup_band_psd_vs_authors": statistics.median(first["ours_band_psd"]),
        "speedup_rounds_first_run": first,
        "speedup_rounds_second_run": second,
        "threads_identical_evoked": same_threads,
        "target_budget_first_s": statistics.median(budget),
        "floor_read_ica_fit_first_s": statistics.median(floor),
        "floor_over_budget_rounds": [f / b for f, b in zip(floor, budget, strict=True)],
        "band_psd_max_rel_diff": diff,
        "band_psd_n_compared": len(common),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "erp.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    lines = [f"{len(rounds)} round(s), medians; first = a fresh process's first subject (imports before the clock), "
             "second = the same subject again in that process (steady state)", "",
             "| pipeline | first (s) | second (s) | imports (s) | peak RSS (MB) | authors / this, first run (rounds) "
             "| second run (rounds) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip

    def fmt(q: list[float]) -> str:
        return f"{statistics.median(q):.1f}x" + (f" ({min(q):.1f}-{max(q):.1f})" if len(q) > 1 else "")

    for what in PIPELINES:
        r = res[what]
        lines.append(f"| {what} | {r['first_s']:.2f} | {r['wall_s']:.2f} | {r['imports_s']:.2f} | {r['peak_rss_mb']:.0f} "
                     f"| {fmt(first[what])} | {fmt(second[what])} |")  # fmt: skip
    lines.append(f"\nband-PSD features: ours vs authors, max relative difference {diff:.2e} over {len(common)} expressions")
    lines.append(f"threads: evoked responses identical to one thread: {same_threads}; second runs equal to "
                 f"first runs: {all(r['same_as_first'] for r in res.values())}")
    lines += ["", "Steps inside our pipelines (s, medians; summed over calls; the ICA fit is part of 'ICA, all'):", "",
              "| step | ours_erp first | ours_erp second | ours_erp_no_ica first |", "| --- | ---: | ---: | ---: |"]
    for _, _, label in STEPS:
        v = [res[w][k].get(label) for w, k in (("ours_erp", "steps_first_s"), ("ours_erp", "steps_second_s"),
                                               ("ours_erp_no_ica", "steps_first_s"))]  # fmt: skip
        lines.append(f"| {label} | " + " | ".join("-" if x is None else f"{x:.3f}" for x in v) + " |")
    lines.append(f"\n50x target: {statistics.median(budget):.3f} s for our first run (authors' first run / 50); "
                 f"reading the spans + fitting the ICA alone took {statistics.median(floor):.3f} s "
                 f"({fmt([f / b for f, b in zip(floor, budget, strict=True)])} the budget)")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
