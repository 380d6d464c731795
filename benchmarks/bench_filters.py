"""Benchmark: the native-rate low-pass + decimation of the shared pass, ours vs the general-purpose ways.

Run on demand (NOT a test): ``.venv/bin/python -m benchmarks.bench_filters [--seconds 600]``.

The workload of one span of the shared preprocessing pass: 69 channels at
1000 Hz (default 600 s of signal, ~1/4 of a full session's padded spans),
low-passed with the default FIR (45 Hz, 5-Hz transition: 661 taps, MNE's
design) and decimated to 250 Hz. Timed, median of 3 runs, one thread:

* ``fir_decimate`` - :func:`mmme_neuro.preprocessing.fir_decimate` (overlap-save
  blocks folded before a 4x shorter inverse FFT: only the kept samples);
* ``oaconvolve`` - :func:`scipy.signal.oaconvolve` (``mode="same"``), then ``[:, ::4]``
  (what the pass did before stop 16);
* ``mne_filter_data`` - :func:`mne.filter.filter_data` with the same kernel
  parameters, then ``[:, ::4]`` (MNE's own edge padding, so edges differ).

Second workload, the high-pass after the decimation: 64 channels x 600 s at
250 Hz, the default 0.1-Hz high-pass (8251 taps), zero phase with MNE's
``reflect_limited`` edges: :func:`mmme_neuro.preprocessing.fir_zero_phase`
(one :func:`scipy.signal.oaconvolve` on the padded signal) vs
:func:`mne.filter.filter_data`, and the overlap-save of ``fir_decimate`` with
``k = 1`` on the same padded signal.

The largest differences (to ``oaconvolve``, to MNE) are reported. Prints a
table and writes ``benchmarks/results/filters.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

from benchmarks.bench_network import _median_time

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table; write JSON."""
    import mne
    import scipy.signal
    from threadpoolctl import threadpool_limits

    from mmme_neuro.preprocessing import fir_decimate, fir_kernel, fir_zero_phase

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="length of the span (s)")
    args = parser.parse_args(argv)
    sf, k = 1000.0, 4
    x = np.random.default_rng(0).standard_normal((69, int(args.seconds * sf))) * 1e-5
    h = fir_kernel(sf, None, 45.0, h_trans_bandwidth=5.0)
    with threadpool_limits(1):
        t_ours, ours = _median_time(lambda: fir_decimate(x, h, k))
        t_oa, ref = _median_time(lambda: scipy.signal.oaconvolve(x, h[None], mode="same", axes=-1)[:, ::k].copy())
        t_mne, _ = _median_time(lambda: mne.filter.filter_data(x, sf, None, 45.0, h_trans_bandwidth=5.0,
                                                               verbose=False)[:, ::k].copy())  # fmt: skip
        # the high-pass at 250 Hz
        y = np.random.default_rng(1).standard_normal((64, int(args.seconds * 250))) * 1e-5
        hp = fir_kernel(250.0, 0.1, None)
        n_edge = len(hp) - 1

        def padded_overlap_save() -> np.ndarray:
            ext = np.concatenate([2 * y[:, :1] - y[:, n_edge:0:-1], y, 2 * y[:, -1:] - y[:, -2:-n_edge - 2:-1]], axis=-1)
            return fir_decimate(ext, hp, 1)[:, n_edge:n_edge + y.shape[1]]

        t_hp, hp_ours = _median_time(lambda: fir_zero_phase(y, hp))
        t_hp_mne, hp_mne = _median_time(lambda: mne.filter.filter_data(y, 250.0, 0.1, None, verbose=False))
        t_hp_os, _ = _median_time(padded_overlap_save)
    diff = float(np.abs(ours - ref).max() / np.abs(ref).max())
    hp_diff = float(np.abs(hp_ours - hp_mne).max() / np.abs(hp_mne).max())
    res = {"channels": x.shape[0], "seconds": args.seconds, "sfreq": sf, "decim": k, "taps": len(h),
           "fir_decimate_s": t_ours, "oaconvolve_s": t_oa, "mne_filter_data_s": t_mne,
           "max_rel_diff_vs_oaconvolve": diff, "highpass_taps": len(hp), "highpass_fir_zero_phase_s": t_hp,
           "highpass_mne_filter_data_s": t_hp_mne, "highpass_fir_decimate_k1_s": t_hp_os,
           "highpass_max_rel_diff_vs_mne": hp_diff, "machine": platform.machine(), "python": platform.python_version()}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "filters.json").write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    rows = [f"{x.shape[0]} channels x {args.seconds:g} s at {sf:g} Hz, {len(h)}-tap low-pass, decimation by {k} "
            "(one thread, median of 3)", "", "| method | wall (s) | ours faster by |", "| --- | ---: | ---: |"]  # fmt: skip
    for name, t in (("fir_decimate (ours)", t_ours), ("oaconvolve + [:, ::4]", t_oa), ("mne.filter.filter_data + [:, ::4]", t_mne)):
        rows.append(f"| {name} | {t:.2f} | {t / t_ours:.1f}x |")
    rows.append(f"\nLargest difference to oaconvolve: {diff:.1e} of the largest output.")
    rows += ["", f"64 channels x {args.seconds:g} s at 250 Hz, {len(hp)}-tap high-pass (0.1 Hz), reflect-limited edges",
             "", "| method | wall (s) | ours faster by |", "| --- | ---: | ---: |"]  # fmt: skip
    for name, t in (("fir_zero_phase (ours: oaconvolve)", t_hp), ("mne.filter.filter_data", t_hp_mne),
                    ("fir_decimate, k = 1, on the padded signal", t_hp_os)):  # fmt: skip
        rows.append(f"| {name} | {t:.2f} | {t / t_hp:.1f}x |")
    rows.append(f"\nLargest difference to MNE: {hp_diff:.1e} of the largest output.")
    sys.stdout.write("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
