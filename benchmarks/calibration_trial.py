"""Null-calibration families of the trial-level models (:func:`mmme_neuro.stats.mixed_model`).

Every trial-level model the analyses report, generated as the trial table it
consumes (one row per epoch), with the shapes of the default study and of
MMME: 12 subjects, 3-9 ME and 15-34 MaE epochs per subject (NE 20-40 where the
analysis uses it), a subject intercept of SD 1 and trial noise of SD 1 (the
unit of ``s``). Each subject has its own condition effect drawn from N(0, s):
real participants differ in how much ME and MaE differ for them, and the
population effect is exactly zero.

- ``erp_model``: the ERP P3 model, ``amplitude ~ condition``, ME - MaE.
- ``erp_model_emg``: the same with the facial-EMG covariate. EMG is larger for
  MaE but overlaps (log-normal, subject-specific level), and it changes the
  amplitude (a fixed covariate slope); the null is on the condition term given
  the covariate.
- ``tfr_band_models``: six band x ROI power measures that share noise
  (correlation 0.5 between measures of one epoch), one model each, FDR across
  the six (the TFR analysis' family); a family-wise error is any p_FDR < .05.
- ``physio_model``: an epoch physiology measure (heart-rate change) with
  heavy-tailed trial noise (t with 5 df), ME - NE, NE the reference with many
  epochs.
- ``coupling_model``: the brain-body coupling (``physio ~ condition +
  eeg_within``), the null on the coupling slope, which differs between
  subjects with SD ``s`` (noise SD per EEG SD).
- ``concordance_features``: three features x two windows (correlated,
  heavy-tailed), ME - NE, one model each, FDR across them (the concordance
  family of one contrast).

Each family is run with the analyses' default model (the maximal random-effects
structure that converges, t on n_subjects - 1 df) and, for the record, with the
model this project used before (``(1 | subject)``, Wald z): ``*_ri_wald``.
Power: a population ME - MaE effect of 0.5 trial-noise SD (subjects' effects
spread with SD ``s``), beside the paired t-test on subject means.
"""

from __future__ import annotations

import warnings
from functools import partial

import numpy as np
import pandas as pd
from scipy import stats as sstats

from benchmarks.calibration import ALPHA, Family

N_SUBJECTS = 12
POWER_EFFECT = 0.5  # population ME - MaE effect, in trial-noise SDs


def _counts(rng: np.random.Generator, conditions: tuple[str, ...]) -> dict[str, int]:
    span = {"ME": (3, 10), "MaE": (15, 35), "NE": (20, 41)}
    return {c: int(rng.integers(*span[c])) for c in conditions}


def trial_table(rng: np.random.Generator, s: float, *, effect: float = 0.0, n_measures: int = 1,
                conditions: tuple[str, ...] = ("ME", "MaE"), tested: str = "ME", emg_slope: float = 0.0,
                noise_df: float | None = None, measure_corr: float = 0.5,
                n_subjects: int = N_SUBJECTS) -> pd.DataFrame:
    """One trial table: ``subject``, ``condition``, ``y0`` ... ``y<n_measures-1>`` and ``emg``.

    ``tested`` gets ``effect`` + a subject effect N(0, s) (per measure) against
    every other condition; ``noise_df`` makes the trial noise t-distributed
    (scaled to SD 1); measures of one epoch share noise with correlation
    ``measure_corr``.
    """
    rows = []
    for j in range(n_subjects):
        intercept = rng.normal(size=n_measures)
        slope = effect + rng.normal(0.0, s, size=n_measures) if s > 0 else np.full(n_measures, effect)
        emg_level = rng.normal(0.0, 0.3)
        for cond, n in _counts(rng, conditions).items():
            if noise_df is None:
                noise = rng.normal(size=(n, n_measures))
                shared = rng.normal(size=(n, 1))
            else:
                scale = np.sqrt((noise_df - 2) / noise_df)
                noise = rng.standard_t(noise_df, size=(n, n_measures)) * scale
                shared = rng.standard_t(noise_df, size=(n, 1)) * scale
            noise = np.sqrt(1 - measure_corr) * noise + np.sqrt(measure_corr) * shared
            # facial EMG: larger for MaE, overlapping (log-normal, subject level)
            emg = np.exp(emg_level + (0.5 if cond == "MaE" else 0.0) + rng.normal(0.0, 0.5, size=n))
            y = intercept + (slope if cond == tested else 0.0) + noise + emg_slope * emg[:, None]
            table = pd.DataFrame(y, columns=[f"y{k}" for k in range(n_measures)])
            table["subject"], table["condition"], table["emg"] = f"sub-{j + 1:02d}", cond, emg
            rows.append(table)
    return pd.concat(rows, ignore_index=True)


def _condition_p(table: pd.DataFrame, measure: str, reference: str, covariates: tuple[str, ...] = (),
                 **model: str) -> tuple[float, float]:
    """(model p, paired-test p) of the tested condition's term."""
    from mmme_neuro.stats import mixed_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tab = mixed_model(table, measure=measure, reference=reference, covariates=covariates, **model)
    row = tab[tab["kind"] == "condition"].iloc[0]
    return float(row["p"]), float(row["paired_p"])


def _family_min_p(table: pd.DataFrame, n_measures: int, reference: str, **model: str) -> tuple[float, float]:
    """(smallest FDR-corrected model p, smallest FDR-corrected paired p) over the measures."""
    from mmme_neuro.stats import fdr

    ps = np.array([_condition_p(table, f"y{k}", reference, **model) for k in range(n_measures)])
    return float(np.nanmin(fdr(ps[:, 0]))), float(np.nanmin(fdr(ps[:, 1])))


# --------------------------------------------------------------------------- families
_SHAPES = {
    "erp_model": dict(kwargs={}, reference="MaE", n_measures=1, covariates=()),
    "erp_model_emg": dict(kwargs={"emg_slope": 0.5}, reference="MaE", n_measures=1, covariates=("emg",)),
    "tfr_band_models": dict(kwargs={"n_measures": 6}, reference="MaE", n_measures=6, covariates=()),
    "physio_model": dict(kwargs={"conditions": ("ME", "NE"), "noise_df": 5.0}, reference="NE", n_measures=1,
                         covariates=()),
    "concordance_features": dict(kwargs={"n_measures": 6, "conditions": ("ME", "NE"), "noise_df": 5.0},
                                 reference="NE", n_measures=6, covariates=()),
}
_MODELS = {"": {}, "_ri_wald": {"random_effects": "intercept", "inference": "wald"}}


def _p(shape: str, model: str, rng: np.random.Generator, s: float, effect: float) -> tuple[float, float]:
    spec = _SHAPES[shape]
    table = trial_table(rng, s, effect=effect, **spec["kwargs"])
    if spec["n_measures"] > 1:
        return _family_min_p(table, spec["n_measures"], spec["reference"], **_MODELS[model])
    return _condition_p(table, "y0", spec["reference"], spec["covariates"], **_MODELS[model])


def _null(shape: str, model: str, rng: np.random.Generator, s: float) -> bool:
    return _p(shape, model, rng, s, 0.0)[0] < ALPHA


def _power(shape: str, model: str, rng: np.random.Generator, s: float) -> dict[str, bool]:
    p_model, p_paired = _p(shape, model, rng, s, POWER_EFFECT)
    return {"family": p_model < ALPHA, "subject_level": p_paired < ALPHA}


def _coupling_p(model: str, rng: np.random.Generator, s: float, effect: float) -> tuple[float, float]:
    """(model p, subject-level p) of the within-subject EEG -> physiology coupling slope."""
    from mmme_neuro.stats import mixed_model

    table = trial_table(rng, 0.0, conditions=("ME", "MaE"))
    eeg = rng.normal(size=len(table))
    slopes = effect + rng.normal(0.0, s, size=N_SUBJECTS) if s > 0 else np.full(N_SUBJECTS, effect)
    idx = table["subject"].str[4:].astype(int).to_numpy() - 1
    table["eeg_within"] = eeg - pd.Series(eeg).groupby(table["subject"]).transform("mean").to_numpy()
    table["y0"] = table["y0"] + slopes[idx] * table["eeg_within"]
    kwargs = {"covariate_slopes": True} if model == "" else _MODELS[model]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tab = mixed_model(table, measure="y0", covariates=("eeg_within",), reference="MaE", **kwargs)
    p_model = float(tab.loc[tab["term"] == "eeg_within", "p"].iloc[0])
    # subject level: one-sample t of the per-subject least-squares coupling slopes
    per = [np.polyfit(g["eeg_within"], g["y0"], 1)[0] for _, g in table.groupby("subject")]
    return p_model, float(sstats.ttest_1samp(per, 0.0).pvalue)


def _coupling_null(model: str, rng: np.random.Generator, s: float) -> bool:
    return _coupling_p(model, rng, s, 0.0)[0] < ALPHA


def _coupling_power(model: str, rng: np.random.Generator, s: float) -> dict[str, bool]:
    p_model, p_subject = _coupling_p(model, rng, s, 0.3)
    return {"family": p_model < ALPHA, "subject_level": p_subject < ALPHA}


_TITLES = {
    "erp_model": "ERP P3 mixed model, ME - MaE",
    "erp_model_emg": "ERP P3 mixed model + EMG covariate, ME - MaE",
    "tfr_band_models": "TFR band x ROI mixed models (6), FDR, ME - MaE",
    "physio_model": "physiology epoch mixed model (t5 noise), ME - NE",
    "concordance_features": "concordance features x windows (6, t5 noise), FDR, ME - NE",
}
_MODEL_TITLES = {"": "maximal random effects, t(n-1)", "_ri_wald": "random intercept, Wald z (before)"}


def _family(shape: str, model: str) -> Family:
    multi = _SHAPES[shape]["n_measures"] > 1
    return Family(
        name=shape + model, title=f"{_TITLES[shape]}: {_MODEL_TITLES[model]}", level="trial",
        error_rate="FWER" if multi else "per test", null=partial(_null, shape, model),
        power=partial(_power, shape, model),
        effect=f"ME effect {POWER_EFFECT} trial-noise SD" + (" on every measure" if multi else ""),
        cost=float(_SHAPES[shape]["n_measures"]),
    )


FAMILIES: list[Family] = [_family(shape, model) for shape in _SHAPES for model in _MODELS] + [
    Family(name="coupling_model" + model, level="trial", error_rate="per test",
           title="brain-body coupling slope (physio ~ condition + EEG within subject): " + (
               "maximal random effects incl. the EEG slope, t(n-1)" if model == "" else _MODEL_TITLES[model]),
           null=partial(_coupling_null, model), power=partial(_coupling_power, model),
           effect="coupling slope 0.3 (noise SD per EEG SD)")
    for model in _MODELS
]

