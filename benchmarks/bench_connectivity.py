"""Benchmark: within-epoch PLV networks, mmme_neuro.connectivity vs mne-connectivity.

Run on demand: ``.venv/bin/python -m benchmarks.bench_connectivity [--ref-epochs 3] [--repeats 3]``.
Prints a table and writes ``benchmarks/results/connectivity.json``.

Settings
--------
* The issue's setting: 30 epochs x 64 channels x 3 s at 250 Hz, PLV, complex
  Morlet wavelets at 2, 3, ..., 45 Hz (44 frequencies, ``n_cycles = f / 2``),
  five bands (delta 2-4, theta 4-8, alpha 8-13, beta 13-30, gamma 30-45 Hz),
  whole epoch (no crop). mne-connectivity's
  ``spectral_connectivity_time(mode="cwt_morlet", method="plv")`` runs on
  the first ``--ref-epochs`` epochs only and is extrapolated linearly to 30
  (it processes epochs one by one, so its time is linear in the number of
  epochs); it is called with ``faverage=False`` and the band means are taken
  here, because its own ``faverage`` of mne-connectivity 0.9 averages wrong
  frequency ranges for all bands but the last (see the module's Notes). The
  table also reports the largest absolute difference of the two results.
* For scale only, the call the issue timed (~250 s for 30 epochs): the same
  function with ``mode="multitaper"`` (DPSS tapers, mne-connectivity's
  ``mt_bandwidth`` 4, i.e. 3 tapers per frequency), also on ``--ref-epochs``
  epochs and extrapolated. It is another estimator with other values, so
  the table gives the ratio but the speed-up column stays the Morlet one.
* The transform alone: ``mne.time_frequency.tfr_array_morlet`` vs our batched
  FFT convolution on the same data (the reason for our own transform).
* The floor: the Hermitian products alone and the inverse FFTs alone, with
  the shapes of the issue's setting, single precision, one core. Both are
  needed for every sample of every wavelet, so their sum bounds from below
  what any implementation of this estimator costs on this machine.
* One full-length MMME subject: ~6 ME + ~26 MaE expression epochs (634 and
  2,841 over 110 participants) + as many no-expression controls = 64 epochs x
  64 channels x 2.5 s (-1.0 to 1.5 s) at 250 Hz, ``Config().bands``, the
  module's defaults (5 wavelets per band, ``n_cycles = f / 2``), window
  -0.6 to 1.1 s (0.4 s padding each side).

Timings are the best of ``--repeats`` runs (the minimum is the least
disturbed by other processes; the load average is recorded).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"

ISSUE_BANDS = {"delta": (2.0, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0), "gamma": (30.0, 45.0)}
ISSUE_FREQS = np.arange(2.0, 46.0)


def _best(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _issue_freqs() -> dict[str, np.ndarray]:
    f = ISSUE_FREQS
    return {b: f[(f >= lo) & ((f < hi) if b != "gamma" else (f <= hi))] for b, (lo, hi) in ISSUE_BANDS.items()}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table; write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ref-epochs", type=int, default=3, help="epochs given to mne-connectivity (extrapolated to 30)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of our estimator; the best is reported")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # the uncropped issue setting warns about edge effects by design

    from mne.time_frequency import tfr_array_morlet
    from mne_connectivity import spectral_connectivity_time

    from mmme_neuro.config import Config
    from mmme_neuro.connectivity import _morlet, _wavelet_kernels, epoch_connectivity

    rng = np.random.default_rng(0)
    sfreq, n_ep, n_ch = 250.0, 30, 64
    x = rng.standard_normal((n_ep, n_ch, int(3 * sfreq)))
    fpb = _issue_freqs()
    rows: dict[str, dict] = {}

    # mne-connectivity on a subset, extrapolated
    n_ref = args.ref_epochs
    t0 = time.perf_counter()
    ref = spectral_connectivity_time(x[:n_ref], freqs=ISSUE_FREQS, method="plv", sfreq=sfreq, mode="cwt_morlet",
                                     n_cycles=ISSUE_FREQS / 2, faverage=False, verbose=False).get_data()  # fmt: skip
    t_ref = time.perf_counter() - t0
    ref = ref.reshape(n_ref, n_ch, n_ch, ISSUE_FREQS.size)
    ref = ref + np.swapaxes(ref, 1, 2)
    ref_bands = np.stack([ref[..., np.isin(ISSUE_FREQS, f)].mean(-1) for f in fpb.values()], axis=1)
    t_ref_30 = t_ref * n_ep / n_ref
    rows["mne_connectivity"] = {"epochs_run": n_ref, "wall_s": t_ref, "extrapolated_30_epochs_s": t_ref_30}
    # the call the issue timed (~250 s): the same PLV from DPSS multitaper coefficients (mne-connectivity's defaults,
    # time_bandwidth 4: 3 tapers per frequency) - another estimator, other numbers: a scale, not an equality
    t0 = time.perf_counter()
    spectral_connectivity_time(x[:n_ref], freqs=ISSUE_FREQS, method="plv", sfreq=sfreq, mode="multitaper",
                               n_cycles=ISSUE_FREQS / 2, faverage=False, verbose=False)  # fmt: skip
    t_mt = time.perf_counter() - t0
    rows["mne_connectivity_multitaper"] = {"epochs_run": n_ref, "wall_s": t_mt, "extrapolated_30_epochs_s": t_mt * n_ep / n_ref}

    for prec in ("single", "double"):
        t, ours = _best(lambda p=prec: epoch_connectivity(x, sfreq, ISSUE_BANDS, method="plv", freqs_per_band=fpb,
                                                          zero_mean=False, precision=p), args.repeats)  # fmt: skip
        diff = float(np.abs(ours[:n_ref] - ref_bands).max())
        rows[f"ours_{prec}"] = {"wall_s": t, "speedup": t_ref_30 / t, "max_abs_diff_vs_mne_connectivity": diff,
                                "ratio_multitaper_call": t_mt * n_ep / n_ref / t}  # fmt: skip

    # the transform alone (double precision, complex coefficients)
    t_mne, _ = _best(lambda: tfr_array_morlet(x, sfreq, ISSUE_FREQS, n_cycles=ISSUE_FREQS / 2, zero_mean=False,
                                              output="complex"), 1)  # fmt: skip
    kernels, nfft = _wavelet_kernels(sfreq, ISSUE_FREQS, ISSUE_FREQS / 2, False, x.shape[-1])

    def _ours_tfr() -> None:
        for e in range(n_ep):  # per epoch as in epoch_connectivity, 44 x 64 x 864 complex per call
            _morlet(x[e:e + 1], kernels, nfft, x.shape[-1], slice(None), np.complex128, False)

    t_tfr, _ = _best(_ours_tfr, args.repeats)
    rows["transform_mne_tfr_array_morlet"] = {"wall_s": t_mne}
    rows["transform_ours_fft"] = {"wall_s": t_tfr, "speedup": t_mne / t_tfr}

    # the arithmetic floor of the estimator (single precision, one core): the two operations every sample of
    # every wavelet needs, alone - one inverse FFT per channel and one Hermitian product per epoch and frequency
    import scipy.fft
    import scipy.linalg
    from threadpoolctl import threadpool_limits

    z = (rng.standard_normal((ISSUE_FREQS.size, n_ch, x.shape[-1]))
         + 1j * rng.standard_normal((ISSUE_FREQS.size, n_ch, x.shape[-1]))).astype(np.complex64)  # fmt: skip
    spec = np.zeros((ISSUE_FREQS.size, n_ch, nfft), dtype=np.complex64)

    def _herk_only() -> None:
        for _ in range(n_ep):
            for k in range(ISSUE_FREQS.size):
                scipy.linalg.blas.cherk(1.0, z[k].T, trans=2)

    with threadpool_limits(1):
        t_herk, _ = _best(_herk_only, args.repeats)
        t_ifft, _ = _best(lambda: [scipy.fft.ifft(spec, axis=-1, workers=1) for _ in range(n_ep)], args.repeats)
    rows["floor_herk_only"] = {"wall_s": t_herk}
    rows["floor_ifft_only"] = {"wall_s": t_ifft}

    # one full-length MMME subject
    cfg = Config()
    n_sub = 6 + 26 + 32
    xs = rng.standard_normal((n_sub, 64, int(2.5 * sfreq) + 1))
    t_sub, _ = _best(lambda: epoch_connectivity(xs, sfreq, cfg.bands, method="plv", t0=-1.0, tmin=-0.6, tmax=1.1),
                     args.repeats)  # fmt: skip
    rows["subject_64_epochs_default"] = {"wall_s": t_sub, "epochs": n_sub, "shape": list(xs.shape)}

    res = {
        "rows": rows,
        "setting": {"epochs": n_ep, "channels": n_ch, "seconds": 3.0, "sfreq": sfreq, "freqs": ISSUE_FREQS.tolist(),
                    "n_cycles": "f / 2", "bands": ISSUE_BANDS, "method": "plv", "mode": "cwt_morlet"},  # fmt: skip
        "machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "load_average_1min_at_end": os.getloadavg()[0],
    }  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "connectivity.json").write_text(json.dumps(res, indent=2, sort_keys=True))
    r = rows
    sys.stdout.write(
        "| what | wall (s) | speed-up | max abs diff vs mne-connectivity |\n| --- | ---: | ---: | ---: |\n"
        f"| mne-connectivity spectral_connectivity_time, {n_ref} epochs (run) | {t_ref:.1f} | | |\n"
        f"| mne-connectivity, 30 epochs (extrapolated x{n_ep / n_ref:g}) | {t_ref_30:.1f} | 1 | |\n"
        f"| mne-connectivity, mode='multitaper' (the call the issue timed; another estimator), 30 epochs "
        f"(extrapolated from {n_ref}) | {t_mt * n_ep / n_ref:.1f} | ours single: "
        f"{r['ours_single']['ratio_multitaper_call']:.0f}x (scale only) | |\n"
        f"| ours, single precision, 30 epochs | {r['ours_single']['wall_s']:.2f} | {r['ours_single']['speedup']:.0f}x "
        f"| {r['ours_single']['max_abs_diff_vs_mne_connectivity']:.1e} |\n"
        f"| ours, double precision, 30 epochs | {r['ours_double']['wall_s']:.2f} | {r['ours_double']['speedup']:.0f}x "
        f"| {r['ours_double']['max_abs_diff_vs_mne_connectivity']:.1e} |\n"
        f"| transform only: mne tfr_array_morlet | {t_mne:.2f} | 1 | |\n"
        f"| transform only: ours (batched FFT, float64) | {t_tfr:.2f} | {t_mne / t_tfr:.1f}x | |\n"
        f"| floor: the Hermitian products alone (30 x 44 of 64 x 750 complex64, 1 core) | {t_herk:.2f} | | |\n"
        f"| floor: the inverse FFTs alone (30 x 44 x 64 of {nfft} points, complex64, 1 core) | {t_ifft:.2f} | | |\n"
        f"| one subject: {n_sub} epochs x 64 ch x 2.5 s, 5 bands x 5 wavelets, PLV | {t_sub:.2f} | | |\n"
        f"\nload average (1 min) at the end: {res['load_average_1min_at_end']:.1f} on {os.cpu_count()} CPUs\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
