"""Benchmark: epoching + preprocessing + ERP of one full-length subject, against the authors' way.

Run on demand (NOT a test): ``.venv/bin/python -m benchmarks.bench_erp [--study DIR]``.

One full-scale synthetic subject (``simulate_study(dir, scale="full",
n_subjects=1)``: 73 min, 69 channels at 1000 Hz) is generated (or reused with
``--study``), then each pipeline runs in a fresh subprocess so that its wall
time and peak resident memory (RSS) are its own:

* ``ours_erp`` - :func:`mmme_neuro.epochs.epochs_from_session` (padded
  segments, filters, bad channels, re-reference, ocular ICA, EMG measures,
  rejection) + :func:`mmme_neuro.erp.compute_evoked`, default configuration;
* ``ours_erp_no_ica`` - the same with ``preprocessing.ica = false``;
* ``ours_band_psd`` - the authors' features (band power of a 1-s periodogram
  around each apex) computed our way: only the windows are read, vectorised;
* ``authors`` - :mod:`benchmarks.authors_way` (whole recording to a DataFrame,
  per-sample labelling loop, periodogram per channel and window).

Prints a Markdown table and writes ``benchmarks/results/erp.json``.
Targets: ``ours_erp`` >= 50x faster than ``authors`` and < 1.5 GB peak RSS.
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

_SETUP = """
import sys, time, resource, json, warnings, logging
warnings.simplefilter("ignore")
import numpy as np, pandas as pd
from pathlib import Path
from mmme_neuro.config import load_config
from mmme_neuro.io.coding import read_coding
from mmme_neuro.ingest import find_sessions, ingest_session, SessionFiles
study = Path(sys.argv[1]); what = sys.argv[2]
cfg = load_config(None, preprocessing={"ica": what != "ours_erp_no_ica"})
coding = read_coding(study / "raw" / "coding_file.xlsx", cfg.coding)
files = find_sessions(study / "raw", coding)[0]
files = SessionFiles(files.subject, files.session_date, files.eeg, None)  # EEG only, as the authors' EEG features
exprs = coding.expressions[coding.expressions["subject"] == files.subject].reset_index(drop=True)
t0 = time.perf_counter()
out = {}
if what.startswith("ours_erp"):
    from mmme_neuro import epochs, erp
    session = ingest_session(files, coding.expressions, cfg)
    ep, md = epochs.epochs_from_session(session, cfg)
    ev = erp.compute_evoked(ep, md)
    out["n_epochs"] = {c: int(n) for c, n in zip(ev["condition"].values, ev["n_epochs"].values)}
    out["n_samples_read"] = int(md.attrs["preprocessing"]["n_samples_read"])
elif what == "ours_band_psd":
    import mne
    from scipy.signal import periodogram
    from benchmarks.authors_way import BANDS
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
    from benchmarks import authors_way
    feats = authors_way.run(files.eeg, exprs.rename(columns={"apex_s": "apex_s"}))
    out["features"] = feats.drop(columns="expression_id").to_numpy().tolist()
    out["ids"] = feats["expression_id"].tolist()
    out["n_expressions"] = len(feats)
out["wall_s"] = time.perf_counter() - t0
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""

PIPELINES = ("ours_erp", "ours_erp_no_ica", "ours_band_psd", "authors")


def _run(study: Path, what: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", _SETUP, str(study), what], check=True, capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table; write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", type=Path, default=None, help="existing full-scale 1-subject study (default: generate one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        study = args.study
        if study is None:
            from mmme_neuro.simulate.study import simulate_study

            study = Path(tmp) / "study"
            simulate_study(study, scale="full", seed=1, n_subjects=1, progress=False)
        res = {what: _run(study, what) for what in PIPELINES}
    a = res["authors"]
    b = res["ours_band_psd"]
    common = sorted(set(a["ids"]) & set(b["ids"]))
    fa = {i: v for i, v in zip(a["ids"], a["features"], strict=True)}
    fb = {i: v for i, v in zip(b["ids"], b["features"], strict=True)}
    import numpy as np

    diff = max((float(np.max(np.abs(np.subtract(fa[i], fb[i])) / (np.abs(fa[i]) + 1e-12))) for i in common), default=float("nan"))
    for r in res.values():
        r.pop("features", None)
        r.pop("ids", None)
    summary = {
        "pipelines": res,
        "speedup_erp_vs_authors": a["wall_s"] / res["ours_erp"]["wall_s"],
        "speedup_erp_no_ica_vs_authors": a["wall_s"] / res["ours_erp_no_ica"]["wall_s"],
        "speedup_band_psd_vs_authors": a["wall_s"] / b["wall_s"],
        "band_psd_max_rel_diff": diff,
        "band_psd_n_compared": len(common),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "erp.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    lines = ["| pipeline | wall (s) | peak RSS (MB) | authors / this |", "| --- | ---: | ---: | ---: |"]
    for what in PIPELINES:
        r = res[what]
        lines.append(f"| {what} | {r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} | {a['wall_s'] / r['wall_s']:.1f}x |")
    lines.append(f"\nband-PSD features: ours vs authors, max relative difference {diff:.2e} over {len(common)} expressions")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
