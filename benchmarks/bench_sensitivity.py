"""Benchmark: sensitivity of the whole-scalp ERP cluster test vs the planned P3 ROI test.

Run on demand (NOT a test): ``.venv/bin/python -m benchmarks.bench_sensitivity
[--erp PATH] [--n 400] [--n-null 4000] [--n-check 20] [--seed 0]``.

What is the smallest planted ME - MaE effect the ERP analysis' cluster test
finds with 80 % power on a study shaped like the default synthetic study, and
what does the planned ROI x window test (``planned.erp``, the P3 ROI and
window) need for the same power?

Data sets are subject-level ME - MaE difference waves (12 subjects x the 62
Quik-Cap channels x -1.0..1.5 s at 250 Hz, the shape of the ERP analysis'
cluster test):

* **noise** from the default study: the subjects' ME - MaE differences minus
  their mean (the planted effect and anything common removed; scaled by
  sqrt(n / (n - 1))), read from the ERP first level
  (``derivatives/mmme-neuro/first-level/erp/sub-*/evoked.nc``) or a group
  ``erp.nc`` (``--erp``); subjects with fewer than
  ``epochs.min_epochs_per_condition`` ME or MaE epochs are left out, as the
  analysis does. A synthetic subject is one of these residuals (drawn with
  replacement), its phases randomised (the same random phase shift for every
  channel at each frequency: spectrum and cross-spectra of the residual kept,
  so its smoothness and spatial correlation are those of real noise), a random
  sign, and baseline-corrected again (-1.0 to -0.5 s) as the ERPs are;
* **effect**: a P3-like wave, a Gaussian in time (peak 0.40 s, SD 0.07 s: the
  synthetic study's ERP) on the P3 ROI channels (CP1 CPZ CP2 P1 PZ P2) under
  the average reference (minus its mean over the 62 channels), of amplitude
  ``A_s ~ N(A, (0.5 A)^2)`` per subject (between-subject SD 0.5 x the mean).
  ``A`` is reported as the effect's mean over the ROI and the 0.3-0.5 s
  window (what the planned test estimates) and as its peak.

Tests at alpha = .05, each as the analysis runs it:

* **cluster test**: paired t per channel x time point, cluster-forming
  threshold t(0.975, n - 1), clusters of adjacent supra-threshold points
  (Delaunay channel neighbours, ``mmme_neuro.stats.channel_adjacency``, x
  neighbouring samples), cluster mass = sum of t, max |mass| over the data set.
  Its critical value is the 95th percentile of the max |mass| of ``--n-null``
  null data sets (a Monte-Carlo version of the sign-flip test: same size, no
  1000 permutations per data set). A data set counts as *found* when a
  positive cluster above the critical value overlaps the planted channels x
  0.3-0.5 s. ``--n-check`` data sets at the amplitude nearest the cluster
  test's 80 % point (and as many null ones) are also tested with the
  permutation test itself (1000 sign flips, the same statistic: checked equal
  to :func:`mne.stats.permutation_cluster_1samp_test` on one data set) to
  show the two decisions agree;
* **planned test**: the ROI x window mean per subject, paired (one-sample) t
  test on n - 1 df; one contrast in the default family, so Holm changes nothing.

Prints a Markdown table and writes ``benchmarks/results/sensitivity.json``.
"""

from __future__ import annotations

import argparse
import glob
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
ROI = ("CP1", "CPZ", "CP2", "P1", "PZ", "P2")
WINDOW = (0.3, 0.5)
BASELINE = (-1.0, -0.5)
LATENCY, WIDTH = 0.40, 0.07
N_SUBJECTS = 12
ALPHA = 0.05
#: Where the ERP first level of the default study is cached (relative to the working directory).
DEFAULT_SOURCES = (
    "figures/erp_me_vs_mae/erp.nc",
    "data/synthetic/default-seed42/bids/derivatives/mmme-neuro/first-level/erp",
)


# ----------------------------------------------------------------------------- noise of the
# default study


def load_differences(
    source: Path, min_epochs: int = 3
) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """ME - MaE subject differences (µV) of the default study: (subjects, channels, times),
    channels, times, subjects."""
    from mmme_neuro.containers import load_netcdf

    if source.is_dir():
        files = sorted(glob.glob(str(source / "sub-*" / "evoked.nc")))
        if not files:
            raise FileNotFoundError(
                f"{source}: no sub-*/evoked.nc (the ERP first level of a study)"
            )
        evs = [load_netcdf(f) for f in files]
        names = [str(e.attrs.get("subject")) for e in evs]
        counts = np.array(
            [[int(e["n_epochs"].sel(condition=c)) for c in ("ME", "MaE")] for e in evs]
        )
        data = np.stack(
            [
                (e.sel(condition="ME") - e.sel(condition="MaE")).transpose("channel", "time").values
                for e in evs
            ]
        )
        ref = evs[0]
    else:
        g = load_netcdf(source)
        names = [str(s) for s in g["subject"].values]
        counts = g["n_epochs"].sel(condition=["ME", "MaE"]).transpose("subject", "condition").values
        data = (
            (g.sel(condition="ME") - g.sel(condition="MaE"))
            .transpose("subject", "channel", "time")
            .values
        )
        ref = g
    ok = (counts >= min_epochs).all(axis=1) & np.isfinite(data).all(axis=(1, 2))
    channels = [str(c) for c in ref["channel"].values]
    return (
        data[ok],
        channels,
        np.asarray(ref["time"].values, dtype=float),
        [n for n, k in zip(names, ok, strict=True) if k],
    )


class NoiseModel:
    """Surrogate subject-level noise: phase-randomised residuals of the default study's subjects."""

    def __init__(self, diffs: np.ndarray, times: np.ndarray):
        n = diffs.shape[0]
        resid = (diffs - diffs.mean(axis=0)) * np.sqrt(n / (n - 1))
        self.spectra = np.fft.rfft(resid, axis=-1)
        self.n_times = times.size
        self.base = (times >= BASELINE[0] - 1e-9) & (times <= BASELINE[1] + 1e-9)

    def draw(self, rng: np.random.Generator, n_subjects: int) -> np.ndarray:
        """(n_subjects, channels, times) noise."""
        idx = rng.integers(self.spectra.shape[0], size=n_subjects)
        n_f = self.spectra.shape[-1]
        phase = np.exp(2j * np.pi * rng.random((n_subjects, 1, n_f)))
        phase[..., 0] = 1.0  # keep the DC term real
        if self.n_times % 2 == 0:
            phase[..., -1] = 1.0  # and the Nyquist term
        x = np.fft.irfft(self.spectra[idx] * phase, n=self.n_times, axis=-1)
        x *= rng.choice([-1.0, 1.0], size=(n_subjects, 1, 1))
        return x - x[..., self.base].mean(axis=-1, keepdims=True)


def effect_pattern(channels: list[str], times: np.ndarray) -> tuple[np.ndarray, float]:
    """Unit P3-like pattern (channels, times) scaled to a mean of 1 over ROI x window; its peak
    value."""
    space = np.array([1.0 if c in ROI else 0.0 for c in channels])
    space -= space.mean()  # average reference
    wave = np.exp(-((times - LATENCY) ** 2) / (2 * WIDTH**2))
    pat = space[:, None] * wave[None, :]
    roi = np.array([c in ROI for c in channels])
    win = (times >= WINDOW[0] - 1e-9) & (times <= WINDOW[1] + 1e-9)
    scale = pat[np.ix_(roi, win)].mean()
    return pat / scale, float(pat.max() / scale)


# ----------------------------------------------------------------------------- the two tests


class ClusterStat:
    """Cluster masses of a paired t map over channel x time (as mne's
    permutation_cluster_1samp_test forms them)."""

    def __init__(self, channels: list[str], n_times: int, n_subjects: int):
        import mne
        from scipy import stats

        from mmme_neuro.stats import channel_adjacency

        self.adjacency = mne.stats.combine_adjacency(channel_adjacency(channels), n_times).tocsr()
        self.threshold = float(stats.t.ppf(1 - 0.05 / 2, n_subjects - 1))
        self.n = n_subjects

    def t_map(self, x: np.ndarray) -> np.ndarray:
        m = x.mean(axis=0)
        s = x.std(axis=0, ddof=1)
        return (m / (s / np.sqrt(self.n))).ravel()

    def clusters(self, t: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """(mass, flat indices) of every cluster, both signs."""
        from scipy.sparse.csgraph import connected_components

        out = []
        for sign in (1, -1):
            sup = np.flatnonzero(sign * t > self.threshold)
            if not sup.size:
                continue
            k, lab = connected_components(self.adjacency[sup][:, sup], directed=False)
            mass = np.bincount(lab, weights=t[sup], minlength=k)
            out += [(float(mass[i]), sup[lab == i]) for i in range(k)]
        return out

    def max_mass(self, x: np.ndarray) -> float:
        return max((abs(m) for m, _ in self.clusters(self.t_map(x))), default=0.0)

    def permutation_p(
        self, x: np.ndarray, target: np.ndarray, rng: np.random.Generator, n_perm: int = 1000
    ) -> float:
        """Smallest sign-flip p of a positive cluster overlapping ``target`` (flat mask); 1 without
        one."""
        cl = [(m, idx) for m, idx in self.clusters(self.t_map(x)) if m > 0 and target[idx].any()]
        if not cl:
            return 1.0
        best = max(m for m, _ in cl)
        flips = np.vstack([np.ones(self.n), rng.choice([-1.0, 1.0], size=(n_perm - 1, self.n))])
        null = np.array([self.max_mass(x * f[:, None, None]) for f in flips])
        return float((null >= best - 1e-9).mean())


def planned_p(x: np.ndarray, roi: np.ndarray, win: np.ndarray) -> tuple[float, float]:
    """(t, two-sided p) of the ROI x window mean, one-sample t on n - 1 df."""
    from scipy import stats

    v = x[:, roi][:, :, win].mean(axis=(1, 2))
    res = stats.ttest_1samp(v, 0.0)
    return float(res.statistic), float(res.pvalue)


def _ci(k: int, n: int) -> tuple[float, float]:
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(0.95, method="exact")
    return float(ci.low), float(ci.high)


def amplitude_at(power: list[float], amps: list[float], target: float = 0.8) -> float | None:
    """Smallest amplitude with power >= target, linearly interpolated on the grid (None if never
    reached)."""
    for i, p in enumerate(power):
        if p >= target:
            if i == 0:
                return float(amps[0])
            a0, a1, p0, p1 = amps[i - 1], amps[i], power[i - 1], power[i]
            return float(a0 + (target - p0) * (a1 - a0) / (p1 - p0)) if p1 > p0 else float(a1)
    return None


# ----------------------------------------------------------------------------- run


def run(source: Path, amps: list[float], n: int, n_null: int, n_check: int, seed: int) -> dict:
    t_start = time.perf_counter()
    diffs, channels, times, subjects = load_differences(source)
    noise = NoiseModel(diffs, times)
    pattern, peak_per_mean = effect_pattern(channels, times)
    stat = ClusterStat(channels, times.size, N_SUBJECTS)
    roi = np.array([c in ROI for c in channels])
    win = (times >= WINDOW[0] - 1e-9) & (times <= WINDOW[1] + 1e-9)
    target = (roi[:, None] & win[None, :]).ravel()
    rng = np.random.default_rng(seed)

    # the statistic is mne's: check once on real-shaped null data
    import mne

    x0 = noise.draw(np.random.default_rng(seed + 99), N_SUBJECTS)
    _, cl_mne, _, _ = mne.stats.permutation_cluster_1samp_test(
        x0,
        threshold=stat.threshold,
        n_permutations=2,
        tail=0,
        adjacency=stat.adjacency,
        out_type="mask",
        verbose="error",
        rng=np.random.default_rng(0),
    )
    t0 = stat.t_map(x0).reshape(len(channels), times.size)
    mne_masses = sorted(abs(float(t0[c].sum())) for c in cl_mne)
    ours = sorted(abs(m) for m, _ in stat.clusters(t0.ravel()))
    assert len(mne_masses) == len(ours) and np.allclose(mne_masses, ours), (
        "cluster statistic differs from MNE's"
    )

    t1 = time.perf_counter()
    null_max = np.array([stat.max_mass(noise.draw(rng, N_SUBJECTS)) for _ in range(n_null)])
    crit = float(np.quantile(null_max, 1 - ALPHA))
    null_planned = np.array(
        [planned_p(noise.draw(rng, N_SUBJECTS), roi, win)[1] for _ in range(n_null)]
    )
    t_null = time.perf_counter() - t1
    rows = []
    for a in amps:
        found = hit_any = found_planned = 0
        for _ in range(n):
            x = (
                noise.draw(rng, N_SUBJECTS)
                + (a * (1 + 0.5 * rng.standard_normal(N_SUBJECTS)))[:, None, None] * pattern
            )
            cl = stat.clusters(stat.t_map(x))
            big = [(m, idx) for m, idx in cl if abs(m) > crit]
            hit_any += bool(big)
            found += any(m > 0 and target[idx].any() for m, idx in big)
            found_planned += planned_p(x, roi, win)[1] < ALPHA
        rows.append(
            {
                "mean_uv": a,
                "peak_uv": a * peak_per_mean,
                "n": n,
                "power_cluster": found / n,
                "power_cluster_ci": _ci(found, n),
                "any_cluster": hit_any / n,
                "power_planned": found_planned / n,
                "power_planned_ci": _ci(found_planned, n),
            }
        )
        print(
            f"A = {a:.2f} µV: cluster {found / n:.3f}, planned {found_planned / n:.3f}",
            file=sys.stderr,
            flush=True,
        )
    p_cl = [r["power_cluster"] for r in rows]
    p_pl = [r["power_planned"] for r in rows]
    a80_cl, a80_pl = amplitude_at(p_cl, amps), amplitude_at(p_pl, amps)

    # the Monte-Carlo critical value against the permutation test itself, on a few data sets
    check = {}
    if n_check:
        a_chk = amps[int(np.argmin([abs(p - 0.8) for p in p_cl]))]
        t2 = time.perf_counter()
        agree, perm_found, mc_found, null_perm = 0, 0, 0, 0
        for _ in range(n_check):
            x = (
                noise.draw(rng, N_SUBJECTS)
                + (a_chk * (1 + 0.5 * rng.standard_normal(N_SUBJECTS)))[:, None, None] * pattern
            )
            p = stat.permutation_p(x, target, rng)
            mc = any(m > crit and target[idx].any() for m, idx in stat.clusters(stat.t_map(x)))
            perm_found += p < ALPHA
            mc_found += mc
            agree += (p < ALPHA) == mc
        for _ in range(n_check):
            x = noise.draw(rng, N_SUBJECTS)
            # any cluster at all (either sign, anywhere) under the null: the family-wise error of
            # the sign-flip test
            flips = np.vstack(
                [np.ones(N_SUBJECTS), rng.choice([-1.0, 1.0], size=(999, N_SUBJECTS))]
            )
            null = np.array([stat.max_mass(x * f[:, None, None]) for f in flips])
            null_perm += (null >= null[0] - 1e-9).mean() < ALPHA
        check = {
            "amplitude_uv": a_chk,
            "n": n_check,
            "permutation_found": perm_found / n_check,
            "monte_carlo_found": mc_found / n_check,
            "agreement": agree / n_check,
            "null_permutation_false_positive": null_perm / n_check,
            "seconds": time.perf_counter() - t2,
        }
    return {
        "source": str(source),
        "subjects_used_for_noise": subjects,
        "n_subjects_simulated": N_SUBJECTS,
        "channels": len(channels),
        "times": [float(times[0]), float(times[-1]), int(times.size)],
        "roi": list(ROI),
        "window_s": list(WINDOW),
        "latency_s": LATENCY,
        "width_s": WIDTH,
        "between_subject_sd": "0.5 x mean",
        "alpha": ALPHA,
        "cluster_forming_t": stat.threshold,
        "n_null": n_null,
        "critical_mass": crit,
        "null_planned_false_positive": float((null_planned < ALPHA).mean()),
        "peak_per_window_mean": peak_per_mean,
        "rows": rows,
        "amplitude_80_cluster_mean_uv": a80_cl,
        "amplitude_80_planned_mean_uv": a80_pl,
        "amplitude_80_cluster_peak_uv": None if a80_cl is None else a80_cl * peak_per_mean,
        "amplitude_80_planned_peak_uv": None if a80_pl is None else a80_pl * peak_per_mean,
        "permutation_check": check,
        "seed": seed,
        "seconds": {"null": t_null, "total": time.perf_counter() - t_start},
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
    }


def markdown(res: dict) -> str:
    lines = [
        f"Power at alpha = .05 over {res['rows'][0]['n']} data sets per amplitude (12 subjects, "
        "noise of the "
        "default study; exact 95 % CI). Amplitude = planted ME - MaE mean over "
        f"{', '.join(res['roi'])} x "
        f"{res['window_s'][0]}-{res['window_s'][1]} s (peak = {res['peak_per_window_mean']:.2f} x "
        "that).",
        "",
        "| mean (µV) | peak (µV) | cluster test | planned ROI test | any cluster |",
        "|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['mean_uv']:.2f} | {r['peak_uv']:.2f} | {r['power_cluster']:.3f} "
            f"[{r['power_cluster_ci'][0]:.2f}, {r['power_cluster_ci'][1]:.2f}] | "
            f"{r['power_planned']:.3f} "
            f"[{r['power_planned_ci'][0]:.2f}, {r['power_planned_ci'][1]:.2f}] | "
            f"{r['any_cluster']:.3f} |"
        )

    def a80(key: str) -> str:
        v = res[f"amplitude_80_{key}_mean_uv"]
        return (
            "not reached"
            if v is None
            else f"{v:.2f} µV mean ({res[f'amplitude_80_{key}_peak_uv']:.2f} µV peak)"
        )

    lines += [
        "",
        f"80 % power: cluster test {a80('cluster')}; planned ROI test {a80('planned')}.",
        f"Size under the null: planned test {res['null_planned_false_positive']:.3f} "
        f"({res['n_null']} null data sets); cluster test 0.05 by construction (critical mass "
        f"{res['critical_mass']:.0f} = 95th percentile of the null max |mass|).",
    ]
    c = res.get("permutation_check") or {}
    if c:
        lines.append(
            f"Check against the sign-flip permutation test (1000 flips) on {c['n']} data sets at "
            f"{c['amplitude_uv']:.2f} µV: found {c['permutation_found']:.2f} (permutation) vs "
            f"{c['monte_carlo_found']:.2f} (critical value), same decision in "
            f"{c['agreement']:.2f}; "
            f"{c['n']} null data sets: permutation test significant in "
            f"{c['null_permutation_false_positive']:.2f}."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument(
        "--erp",
        type=Path,
        default=None,
        help="erp.nc of the ERP analysis or its first-level directory (first-level/erp); "
        f"default: the first of {DEFAULT_SOURCES} that exists",
    )
    ap.add_argument(
        "--amplitudes",
        default="0.5,1,1.5,2,2.5,3,4,5,6",
        help="planted ME - MaE means over the ROI x window (µV), comma-separated",
    )
    ap.add_argument("--n", type=int, default=400, help="data sets per amplitude")
    ap.add_argument(
        "--n-null",
        type=int,
        default=4000,
        help="null data sets (critical value, planned test's size)",
    )
    ap.add_argument(
        "--n-check", type=int, default=20, help="data sets of the permutation-test check (0: none)"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    source = args.erp or next((Path(s) for s in DEFAULT_SOURCES if Path(s).exists()), None)
    if source is None:
        ap.error(
            f"no ERP results found at {DEFAULT_SOURCES}: run the ERP analysis on the default "
            "study or pass --erp"
        )
    amps = [float(a) for a in args.amplitudes.split(",")]
    res = run(Path(source), amps, args.n, args.n_null, args.n_check, args.seed)
    text = markdown(res)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sensitivity.json").write_text(
        json.dumps({**res, "markdown": text}, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
