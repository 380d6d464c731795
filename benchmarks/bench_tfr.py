"""Benchmark: time-frequency decomposition of all expression epochs of one full-length subject.

Run on demand (NOT a test): ``.venv/bin/python -m benchmarks.bench_tfr [--study DIR]``.

One full-scale synthetic subject (``simulate_study(dir, scale="full",
n_subjects=1)``: 73 min, 64 EEG channels at 1000 Hz) is generated (or reused
with ``--study``). Its ME, MaE and NE epochs are cut once (no ICA, padded
for the transform, kept at 1000 Hz: ``resample_sfreq = None``) and saved;
then each measurement runs in a fresh subprocess (own wall time and peak
RSS): :func:`mmme_neuro.tfr.compute_tfr` with 40 log-spaced frequencies
2-45 Hz (Morlet, and multitaper), total + induced power, ITC and the
trial table, output decimated to ~25 Hz.

Prints a Markdown table and writes ``benchmarks/results/tfr.json``.
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

_EPOCH = """
import sys, time, json, warnings, logging
warnings.simplefilter("ignore")
from pathlib import Path
import numpy as np
from mmme_neuro.config import load_config
from mmme_neuro.io.coding import read_coding
from mmme_neuro.ingest import find_sessions, ingest_session
from mmme_neuro import tfr, epochs
study, out = Path(sys.argv[1]), Path(sys.argv[2])
cfg = load_config(None, preprocessing={"ica": False, "resample_sfreq": None})
freqs = np.geomspace(2.0, 45.0, 40)
padded, pad = tfr.padded_config(cfg, freqs)
coding = read_coding(study / "raw" / "coding_file.xlsx", cfg.coding)
s = ingest_session(find_sessions(study / "raw", coding)[0], coding.expressions, cfg)
t0 = time.perf_counter()
ep, md = epochs.epochs_from_session(s, padded)
ep.save(out / "epo.fif", overwrite=True, verbose=False)  # the kept rows of md go along as its metadata
print(json.dumps({"epoch_wall_s": time.perf_counter() - t0, "pad_s": pad, "n_epochs": len(ep),
                  "sfreq": ep.info["sfreq"], "n_channels": len(ep.ch_names), "n_times": len(ep.times)}))
"""

_TFR = """
import sys, time, json, resource, warnings
warnings.simplefilter("ignore")
from pathlib import Path
import mne, numpy as np, pandas as pd
from mmme_neuro.config import Config
from mmme_neuro import tfr
out, method = Path(sys.argv[1]), sys.argv[2]
ep = mne.read_epochs(out / "epo.fif", verbose=False)
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
res = tfr.compute_tfr(ep, None, config=Config(), freqs=np.geomspace(2.0, 45.0, 40), method=method)
wall = time.perf_counter() - t0
out = {"wall_s": wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
       "rss_before_mb": rss0, "n_epochs": {c: int(n) for c, n in zip(res.tfr.condition.values, res.tfr.n_epochs.values)},
       "output_mb": res.tfr.nbytes / 1e6, "n_trial_rows": len(res.trials)}
if method == "morlet":  # the transform alone, all epochs at once: MNE's tfr_array_morlet vs ours, same samples
    f = np.geomspace(2.0, 45.0, 40)
    nc = tfr._n_cycles(f, None)
    x = ep.get_data(picks="eeg")
    dsl = tfr._decim_slice(ep.times, ep.info["sfreq"], tfr.default_decim(ep.info["sfreq"]))
    t0 = time.perf_counter()
    ref = mne.time_frequency.tfr_array_morlet(x, ep.info["sfreq"], f, n_cycles=nc, decim=dsl, output="complex",
                                              verbose=False)
    out["transform_mne_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = tfr.morlet_decimated(x, ep.info["sfreq"], f, nc, dsl)
    out["transform_ours_s"] = time.perf_counter() - t0
    out["transform_max_rel_diff"] = float(np.abs(got - ref).max() / np.abs(ref).max())
print(json.dumps(out))
"""


def _run(code: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table; write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", type=Path, default=None, help="existing full-scale 1-subject study (default: generate one)")
    parser.add_argument("--methods", nargs="+", default=["morlet", "multitaper"])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        study = args.study
        if study is None:
            from mmme_neuro.simulate.study import simulate_study

            study = Path(tmp) / "study"
            simulate_study(study, scale="full", seed=1, n_subjects=1, progress=False)
        info = _run(_EPOCH, str(study), tmp)
        res = {m: _run(_TFR, tmp, m) for m in args.methods}
    summary = {"epochs": info, "tfr": res, "freqs": "40 log-spaced, 2-45 Hz", "machine": platform.machine(),
               "python": platform.python_version()}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tfr.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    lines = [f"{info['n_epochs']} epochs x {info['n_channels']} channels x {info['n_times']} samples "
             f"({info['sfreq']:g} Hz, padded by {info['pad_s']} s); epoching {info['epoch_wall_s']:.1f} s", "",
             "| method | wall (s) | peak RSS (MB) | output (MB) |", "| --- | ---: | ---: | ---: |"]  # fmt: skip
    for m, r in res.items():
        lines.append(f"| {m} | {r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['output_mb']:.1f} |")
    if "transform_mne_s" in res.get("morlet", {}):
        r = res["morlet"]
        lines += ["", f"Morlet transform alone, all epochs: MNE `tfr_array_morlet` {r['transform_mne_s']:.1f} s, "
                      f"ours (`tfr.morlet_decimated`) {r['transform_ours_s']:.2f} s: "
                      f"{r['transform_mne_s'] / r['transform_ours_s']:.1f}x; largest difference "
                      f"{r['transform_max_rel_diff']:.1e} of the largest coefficient"]  # fmt: skip
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
