"""Null-calibration families of the decoding tests: label-permutation p and time clusters.

Both families consume what :mod:`mmme_neuro.decoding` consumes, per-epoch
data of every subject, and run it as ``analyses/decoding_multimodal.py``
does: task ``me_vs_mae``, leave-one-subject-out (LOSO) cross-validation,
the default pipeline of :func:`~mmme_neuro.decoding.decode` (L2 logistic
regression, balanced class weights; the ANOVA selection keeps every column
when there are fewer than 40) and the ridge classifier of
:func:`~mmme_neuro.decoding.time_resolved`.

Data generation
---------------
Each data set has :data:`N_SUBJECTS` = 12 subjects with ``n_ME`` ~ U{3..9}
and ``n_MaE`` ~ U{15..34} epochs (the MMME range). An epoch of subject
``i`` is::

    x = offset_i + (+delta_i / 2 if ME else -delta_i / 2) + sigma_i * noise

* ``offset_i``: the subject's own level of every feature, shared by both
  conditions (SD :data:`OFFSET_SD` trial-noise SDs: band power and ERP
  amplitudes differ more between people than between trials);
* ``noise``: unit-variance trial noise, correlated across features as EEG
  features are (neighbouring channels, neighbouring bands, neighbouring
  time samples);
* ``sigma_i`` ~ logNormal(0, 0.25): some subjects are noisier;
* ``delta_i``: the subject's own ME - MaE shift, drawn from N(0, s) per
  feature (``null(rng, s)``; independent across the features of the table,
  a smooth channel x time field for the time series): the population shift
  is exactly zero, while each subject has a real, idiosyncratic difference
  between its ME and MaE epochs (its own muscle pattern, its own strategy),
  which is what "subjects differ" means.

Trial noise of the band-power table is correlated 0.5^|i-j| between bands
and 0.6 between the channels; that of the time series is Gaussian over the
Quik-Cap positions (4.5 cm: neighbouring sites ~0.7) and over time (0.9
between neighbouring 20-ms samples), the subjects' offsets and effects
smoother (6 cm, 4 samples).

``decoding_permutation`` decodes a 12-column feature table named as
:mod:`mmme_neuro.features` names it (``eeg_psd__<band>__<channel>``:
theta/alpha/beta/gamma band power at FZ, CZ, PZ; the set ``eeg_psd``) and
reports the p of UF1 (:attr:`mmme_neuro.decoding.DecodingResult.p_values`)
the analysis reports, whose null renames the classes of random subjects
(``decoding.null = "relabel_subjects"``); ``decoding_permutation_within``
the p of the null before, labels shuffled within subject. ``decoding_time_cluster`` runs
:func:`mmme_neuro.decoding.time_resolved` (no generalisation) on
``(epoch, channel, time)`` series of 8 channels x 25 samples (0-0.48 s at
the default 50 Hz) and rejects when a cluster of AUC > 0.5 has p < .05.

Power functions plant a population shift ``mu`` (with the same
between-subject SD ``s`` around it) and report whether the family rejects
and whether a one-sample t-test across subjects (one-sided, as the decoding
tests are) of the per-subject score minus chance rejects: per-subject UAR
- 0.5 (``DecodingResult.per_subject``) and per-subject AUC - 0.5 averaged
over the planted window (``TimeDecodingResult.scores``).

Costs are kept low (100 label permutations, the analysis default; the time
clusters' 1000 label-flip arrangements, the analysis default, cost ~0.2 s a
data set) and stated in each ``title``; everything
runs in one process (``n_jobs=1``) with seeds drawn from the data set's
generator.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats as sstats

from benchmarks.calibration import ALPHA, Family

#: Subjects per data set (the default study's size).
N_SUBJECTS = 12
#: Epochs per subject (inclusive ranges): ME 3-9, MaE 15-34.
ME_EPOCHS = (3, 9)
MAE_EPOCHS = (15, 34)
#: SD of the subject offsets shared by both conditions, in trial-noise SDs.
OFFSET_SD = 1.0
#: SD of log(sigma_i), the subject's trial-noise scale.
NOISE_SCALE_SD = 0.25
#: Label permutations of ``decode`` and label-flip arrangements of the time clusters (the
#: analysis defaults).
N_PERM_DECODE = 100
N_PERM_TIME = 1000

#: Feature table: band power of 4 bands at 3 midline channels.
PSD_BANDS = ("theta", "alpha", "beta", "gamma")
PSD_CHANNELS = ("FZ", "CZ", "PZ")
#: Planted features of the power function (alpha and beta at CZ and PZ).
PSD_PLANTED = ("eeg_psd__alpha__CZ", "eeg_psd__alpha__PZ", "eeg_psd__beta__CZ", "eeg_psd__beta__PZ")
#: Time-resolved grid: 8 channels x 0-0.48 s at 50 Hz.
TIME_CHANNELS = ("F3", "FZ", "F4", "C3", "CZ", "C4", "P3", "PZ")
TIMES = np.round(np.arange(25) * 0.02, 3)
#: Planted window of the time-resolved power function.
TIME_WINDOW = (0.2, 0.36)


def _sqrt_psd(r: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(r)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


@functools.cache
def _psd_root() -> np.ndarray:
    """Root of the feature correlation: bands 0.5^|i-j| (x) channels 0.6 off the diagonal."""
    k = np.arange(len(PSD_BANDS))
    bands = 0.5 ** np.abs(k[:, None] - k[None, :])
    chans = np.full((len(PSD_CHANNELS),) * 2, 0.6) + 0.4 * np.eye(len(PSD_CHANNELS))
    return _sqrt_psd(np.kron(bands, chans))


@functools.cache
def _space_time_roots(width_m: float, width_t: float) -> tuple[np.ndarray, np.ndarray]:
    """Roots of the Gaussian correlation over the Quik-Cap positions and over time (samples)."""
    from mmme_neuro.montage import quikcap64_positions

    pos = quikcap64_positions()
    xyz = np.array([pos[c] for c in TIME_CHANNELS])
    d2 = ((xyz[:, None, :] - xyz[None, :, :]) ** 2).sum(-1)
    k = np.arange(TIMES.size)
    return (
        _sqrt_psd(np.exp(-d2 / (2 * width_m**2))),
        _sqrt_psd(np.exp(-((k[:, None] - k[None, :]) ** 2) / (2 * width_t**2))),
    )


@functools.cache
def _config(null: str = "relabel_subjects"):
    from mmme_neuro.config import Config

    return Config(
        decoding={"n_permutations": N_PERM_DECODE, "n_jobs": 1, "null": null},
        stats={"n_permutations": N_PERM_TIME},
    )


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31))


def _field(rng: np.random.Generator, roots: tuple[np.ndarray, ...], n: int) -> np.ndarray:
    """``n`` unit-variance fields ``(n, *grid)`` with the separable correlation of ``roots``."""
    z = rng.standard_normal((n, *(r.shape[0] for r in roots)))
    for ax, r in enumerate(roots, start=1):
        z = np.moveaxis(np.tensordot(r, z, axes=(1, ax)), 0, ax)
    return z


def _epochs(
    rng: np.random.Generator,
    s: float,
    noise: tuple[np.ndarray, ...],
    offset: tuple[np.ndarray, ...],
    effect: tuple[np.ndarray, ...],
    mu: np.ndarray | float = 0.0,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Bookkeeping table and epoch data ``(epoch, *grid)``, correlated as the roots say."""
    rows, blocks = [], []
    for i in range(N_SUBJECTS):
        subject = f"sub-{i + 1:02d}"
        n_me = int(rng.integers(ME_EPOCHS[0], ME_EPOCHS[1] + 1))
        n_mae = int(rng.integers(MAE_EPOCHS[0], MAE_EPOCHS[1] + 1))
        sigma = math.exp(NOISE_SCALE_SD * rng.standard_normal())
        level = OFFSET_SD * _field(rng, offset, 1)[0]
        delta = mu + s * _field(rng, effect, 1)[0]
        # epochs in recording order: conditions interleaved
        cond = rng.permutation(np.array(["ME"] * n_me + ["MaE"] * n_mae))
        sign = np.where(cond == "ME", 0.5, -0.5).reshape(-1, *([1] * level.ndim))
        blocks.append(level + sign * delta + sigma * _field(rng, noise, cond.size))
        rows += [
            {"epoch_id": f"{subject}_ep{k:04d}", "subject": subject, "condition": c}
            for k, c in enumerate(cond)
        ]
    return pd.DataFrame(rows), np.concatenate(blocks)


# ----------------------------------------------------------------------------- decode()


def _psd_columns() -> list[str]:
    return [f"eeg_psd__{b}__{c}" for b in PSD_BANDS for c in PSD_CHANNELS]


def _feature_table(
    rng: np.random.Generator, s: float, mu: np.ndarray | float = 0.0
) -> pd.DataFrame:
    """Feature table as :mod:`mmme_neuro.features` writes it (log10 band power, µV²/Hz)."""
    root = _psd_root()
    table, x = _epochs(rng, s, (root,), (root,), (np.eye(root.shape[0]),), mu)
    feats = pd.DataFrame(0.5 + 0.3 * x, columns=_psd_columns())  # trial SD 0.3 log10 units
    return pd.concat([table, feats], axis=1)


def _decode(table: pd.DataFrame, rng: np.random.Generator, null: str = "relabel_subjects"):
    from mmme_neuro.decoding import decode

    return decode(
        table,
        "me_vs_mae",
        "eeg_psd",
        config=_config(null),
        n_permutations=N_PERM_DECODE,
        seed=_seed(rng),
        n_jobs=1,
    )


def decoding_null(rng: np.random.Generator, s: float) -> bool:
    """LOSO decoding of ME vs MaE; the UF1 p (null: subjects' classes relabelled) of null features."""
    return bool(_decode(_feature_table(rng, s), rng).p_values["uf1"] < ALPHA)


def decoding_null_within(rng: np.random.Generator, s: float) -> bool:
    """As :func:`decoding_null` with labels shuffled within subject (the null before)."""
    return bool(_decode(_feature_table(rng, s), rng, "shuffle_within_subject").p_values["uf1"] < ALPHA)


def decoding_power(rng: np.random.Generator, s: float) -> dict[str, bool]:
    """ME - MaE shift of 0.4 trial SDs on 4 of 12 features (alpha, beta at CZ, PZ)."""
    mu = 0.4 * np.isin(_psd_columns(), PSD_PLANTED).astype(float)
    res = _decode(_feature_table(rng, s, mu), rng)
    uar = res.per_subject["uar"].to_numpy(float)
    t = sstats.ttest_1samp(uar - 0.5, 0.0, alternative="greater")
    return {"family": bool(res.p_values["uf1"] < ALPHA), "subject_level": bool(t.pvalue < ALPHA)}


# ----------------------------------------------------------------------------- time_resolved()


def _series(
    rng: np.random.Generator, s: float, mu: np.ndarray | float = 0.0
) -> tuple[xr.DataArray, pd.DataFrame]:
    """``(epoch, channel, time)`` µV series (trial noise 10 µV) and the bookkeeping table.

    Trial noise: Gaussian correlation of 4.5 cm over the Quik-Cap positions
    and of 2.2 samples over time (0.9 between neighbouring 20-ms samples);
    subject offsets and effects are smoother (6 cm, 4 samples).
    """
    noise, smooth = _space_time_roots(0.045, 2.2), _space_time_roots(0.06, 4.0)
    table, x = _epochs(rng, s, noise, smooth, smooth, mu)
    da = xr.DataArray(
        10.0 * x.astype(np.float32),
        dims=("epoch", "channel", "time"),
        coords={
            "epoch": table["epoch_id"].to_numpy(),
            "channel": list(TIME_CHANNELS),
            "time": TIMES,
        },
        name="eeg",
        attrs={"units": "µV"},
    )
    return da, table


def _time_result(da: xr.DataArray, table: pd.DataFrame, rng: np.random.Generator):
    from mmme_neuro.decoding import time_resolved

    return time_resolved(
        da, table, "me_vs_mae", config=_config(), generalization=False, seed=_seed(rng), n_jobs=1
    )


def time_cluster_null(rng: np.random.Generator, s: float) -> bool:
    """Time-resolved LOSO AUC, one-sided cluster test over time, null series."""
    res = _time_result(*_series(rng, s), rng)
    return bool(len(res.clusters) and (res.clusters["p"] < ALPHA).any())


def time_cluster_power(rng: np.random.Generator, s: float) -> dict[str, bool]:
    """ME - MaE of 0.3 trial SDs (3 µV) at 0.2-0.36 s on every channel (20 ms Gaussian flanks)."""
    d = np.maximum(np.maximum(TIME_WINDOW[0] - TIMES, TIMES - TIME_WINDOW[1]), 0.0)
    mu = 0.3 * np.outer(np.ones(len(TIME_CHANNELS)), np.exp(-(d**2) / (2 * 0.02**2)))
    res = _time_result(*_series(rng, s, mu), rng)
    auc = res.scores.sel(time=slice(*TIME_WINDOW)).mean("time").to_numpy()
    t = sstats.ttest_1samp(auc - 0.5, 0.0, alternative="greater")
    return {
        "family": bool(len(res.clusters) and (res.clusters["p"] < ALPHA).any()),
        "subject_level": bool(t.pvalue < ALPHA),
    }


FAMILIES: list[Family] = [
    Family(
        name="decoding_permutation",
        title=f"decode(me_vs_mae, eeg_psd, LOSO, logreg): UF1 p, 12 features, null: {N_PERM_DECODE} "
        f"relabellings of random subjects (ME <-> MaE), LOSO re-run",
        level="epoch",
        error_rate="per test",
        null=decoding_null,
        power=decoding_power,
        effect="ME - MaE shift of 0.4 trial SDs on alpha/beta power at CZ, PZ (4 of 12 features); "
        "subject-level: one-sided t of per-subject UAR - 0.5",
        cost=20.0,
    ),
    Family(
        name="decoding_permutation_within",
        title=f"decode(me_vs_mae, eeg_psd, LOSO, logreg): UF1 p, null: {N_PERM_DECODE} label shuffles "
        f"within subject, LOSO re-run (before)",
        level="epoch",
        error_rate="per test",
        null=decoding_null_within,
        effect="(null only)",
        cost=20.0,
    ),
    Family(
        name="decoding_time_cluster",
        title=f"time_resolved(me_vs_mae, LOSO, AUC), 8 channels x 25 times (50 Hz), "
        f"one-sided cluster test, null: {N_PERM_TIME} subject label flips, LOSO re-run",
        level="epoch",
        error_rate="FWER",
        null=time_cluster_null,
        power=time_cluster_power,
        effect="ME - MaE of 0.3 trial SDs (3 µV) on all 8 channels at 0.2-0.36 s; "
        "subject-level: one-sided t of per-subject AUC - 0.5 in that window",
        cost=1.0,
    ),
]
