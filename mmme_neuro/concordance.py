"""Expression-physiology concordance (the design of Zou et al. 2022) and brain-body coupling.

* :func:`window_features`: for a family of post-onset windows (default 2, 4,
  6, 8, 10 s) each epoch's HRV time-domain features (mean RR, SDNN, RMSSD,
  pNN50 where the window holds enough beats), HR change, EDA (SCR occurrence,
  phasic change) and respiration features (amplitude and rate change);
* :func:`concordance_tests`: per window x feature, mixed models
  ``feature ~ condition`` with by-subject random slopes (ME vs MaE, ME vs NE by default)
  and repeated-measures correlations (:func:`pingouin.rm_corr`) of the
  feature with expression occurrence; FDR across windows x features within
  each test family;
* :func:`response_timing`: latency distributions of the SCR and the HR
  deceleration after onset, and the proportion of expressions followed by an
  SCR compared with the chance rate of the NE controls;
* :func:`brain_body_coupling`: mixed model of a per-epoch physiological
  measure on a per-epoch EEG measure, joined by ``expression_id``.

References
----------
Zou, ... (2022). Physiological concordance of facial micro-expressions
(HRV, EDA and respiration in several post-onset windows); Bakdash, J. Z. &
Marusich, L. R. (2017). Repeated measures correlation. Frontiers in
Psychology, 8, 456.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import physio as ph
from .config import Config
from .physio import hrv_time
from .stats import fdr, mixed_model, paired_test

__all__ = [
    "CONCORDANCE_FEATURES",
    "WINDOWS_S",
    "brain_body_coupling",
    "concordance_tests",
    "first_level",
    "quality_summary",
    "response_timing",
    "window_features",
]

logger = logging.getLogger(__name__)

#: Post-onset window lengths (s).
WINDOWS_S: tuple[float, ...] = (2.0, 4.0, 6.0, 8.0, 10.0)
#: Window features (name -> unit).
CONCORDANCE_FEATURES: dict[str, str] = {
    "hr_change_bpm": "bpm", "mean_rr_change_ms": "ms", "sdnn_ms": "ms", "rmssd_ms": "ms",
    "pnn50": "%", "scr_occurred": "probability", "eda_phasic_change_us": "uS", "rsp_amplitude_change": "relative",
    "rsp_rate_change_bpm": "breaths/min",
}  # fmt: skip
#: Mixed-model contrasts: (minuend, reference).
CONTRASTS: tuple[tuple[str, str], ...] = (("ME", "MaE"), ("ME", "NE"))


def window_features(processed: pd.DataFrame, info: Mapping[str, Any], events: pd.DataFrame, *,
                    windows: Sequence[float] = WINDOWS_S, baseline: tuple[float, float] = (-3.0, 0.0),
                    scr_min_latency_s: float = 1.0) -> pd.DataFrame:  # fmt: skip
    """Physiological features of each epoch in post-onset windows ``[0, w]``.

    Parameters
    ----------
    processed, info : pandas.DataFrame, dict
        Output of :func:`mmme_neuro.physio.process_physio`.
    events : pandas.DataFrame
        ``event_id``, ``condition``, ``onset_s`` (+ bookkeeping columns, kept).
    windows : sequence of float
        Window lengths (s) after onset.
    baseline : tuple of float
        Pre-onset baseline (s) of the change features.
    scr_min_latency_s : float
        An SCR counts if its onset lies in ``[scr_min_latency_s, w]`` s.

    Returns
    -------
    features : pandas.DataFrame
        One row per event x window: the event columns, ``window_s`` and
        :data:`CONCORDANCE_FEATURES`. HRV uses the RR intervals whose both
        beats lie in the window (rejected intervals dropped): SDNN/RMSSD need
        >= 3 intervals, pNN50 >= 6 (NaN otherwise, typically in the 2-4 s
        windows). ``mean_rr_change_ms`` is relative to the baseline beats.
        Signals in poor-quality segments give NaN.
    """
    fs = float(info["sampling_rate"])
    on = events["onset_s"].to_numpy(float)
    peaks = np.asarray(info.get("ECG_R_Peaks_s", []), dtype=float)
    rr_ms = np.asarray(info.get("ECG_RR_ms", []), dtype=float)
    scr = info.get("SCR")
    s_on = scr["onset_s"].to_numpy(float) if scr is not None and len(scr) else np.array([])

    def col(name: str) -> np.ndarray | None:
        return processed[name].to_numpy(float) if name in processed.columns else None

    hr, eda, ra, rr_rate = col("ECG_Rate"), col("EDA_Phasic"), col("RSP_Amplitude"), col("RSP_Rate")

    def mean_seg(x: np.ndarray | None, t0: float, a: float, b: float, full: bool = True) -> float:
        if x is None:
            return np.nan
        i0, i1 = int(round((t0 + a) * fs)), int(round((t0 + b) * fs)) + 1
        if i0 < 0 or i1 > x.size:
            return np.nan
        seg = x[i0:i1]
        return float(seg.mean()) if np.isfinite(seg).all() else np.nan

    def max_seg(x: np.ndarray | None, t0: float, a: float, b: float) -> float:
        if x is None:
            return np.nan
        i0, i1 = int(round((t0 + a) * fs)), int(round((t0 + b) * fs)) + 1
        if i0 < 0 or i1 > x.size or not np.isfinite(x[i0:i1]).all():
            return np.nan
        return float(x[i0:i1].max())

    rows = []
    for i, t0 in enumerate(on):
        b_hr, b_eda = mean_seg(hr, t0, *baseline), mean_seg(eda, t0, *baseline)
        b_ra, b_rate = mean_seg(ra, t0, *baseline), mean_seg(rr_rate, t0, *baseline)
        if peaks.size > 1:
            inb = (peaks[:-1] >= t0 + baseline[0]) & (peaks[1:] <= t0)
            base_rr = float(np.nanmean(rr_ms[inb])) if np.isfinite(rr_ms[inb]).any() else np.nan
        else:
            base_rr = np.nan
        for w in windows:
            r: dict[str, Any] = {"row": i, "window_s": float(w)}
            r["hr_change_bpm"] = mean_seg(hr, t0, 0.0, w) - b_hr
            if peaks.size > 1 and np.isfinite(b_hr):
                inw = (peaks[:-1] >= t0) & (peaks[1:] <= t0 + w)
                h = hrv_time(rr_ms[inw])
                r.update({k: h[k] for k in ("mean_rr_ms", "sdnn_ms", "rmssd_ms", "pnn50")})
                r["mean_rr_change_ms"] = h["mean_rr_ms"] - base_rr
            else:
                r.update(dict.fromkeys(("mean_rr_ms", "sdnn_ms", "rmssd_ms", "pnn50", "mean_rr_change_ms"), np.nan))
            mx = max_seg(eda, t0, 0.0, w)
            r["eda_phasic_change_us"] = mx - b_eda
            r["scr_occurred"] = (float(((s_on >= t0 + scr_min_latency_s) & (s_on <= t0 + w)).any())
                                 if np.isfinite(mx) else np.nan)  # fmt: skip
            r["rsp_amplitude_change"] = mean_seg(ra, t0, 0.0, w) / b_ra - 1.0 if b_ra and b_ra > 0 else np.nan
            r["rsp_rate_change_bpm"] = mean_seg(rr_rate, t0, 0.0, w) - b_rate
            rows.append(r)
    feats = pd.DataFrame(rows)
    if not len(feats):
        return feats
    out = events.reset_index(drop=True).iloc[feats["row"].to_numpy()].reset_index(drop=True)
    return pd.concat([out, feats.drop(columns="row")], axis=1)


def _rm_corr(df: pd.DataFrame, feature: str) -> dict[str, float]:
    import pingouin as pg

    d = df[["subject", feature, "expression"]].dropna()
    d = d[d.groupby("subject")["expression"].transform("nunique") > 1]
    d = d[d.groupby("subject")[feature].transform("nunique") > 1]
    if d["subject"].nunique() < 3 or len(d) < 10:
        return {"r": np.nan, "p": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n_subjects": int(d["subject"].nunique()),
                "n_trials": len(d)}  # fmt: skip
    res = pg.rm_corr(data=d, x=feature, y="expression", subject="subject")
    ci = np.asarray(res[[c for c in res.columns if c.startswith("CI95")][0]].iloc[0], dtype=float)
    return {"r": float(res["r"].iloc[0]), "p": float(res["pval"].iloc[0]), "ci_low": float(ci[0]),
            "ci_high": float(ci[1]), "n_subjects": int(d["subject"].nunique()), "n_trials": len(d)}  # fmt: skip


def concordance_tests(features: pd.DataFrame, *, feature_names: Sequence[str] | None = None,
                      contrasts: Sequence[tuple[str, str]] = CONTRASTS, alpha: float = 0.05,
                      fdr_method: str = "fdr_bh", clean_only: bool = False) -> pd.DataFrame:  # fmt: skip
    """Relate window features to expression occurrence and type.

    Parameters
    ----------
    features : pandas.DataFrame
        :func:`window_features` rows of all subjects (``subject``,
        ``condition``, ``window_s``, features).
    feature_names : sequence of str | None
        Features tested; None: the :data:`CONCORDANCE_FEATURES` present.
    contrasts : sequence of (str, str)
        Mixed-model contrasts ``(condition, reference)``.
    alpha : float
        Significance level (``significant`` column).
    fdr_method : str
        FDR method (:func:`mmme_neuro.stats.fdr`).
    clean_only : bool
        Use only clean-baseline epochs (column ``clean_baseline``).

    Returns
    -------
    table : pandas.DataFrame
        One row per test x window x feature: ``test`` (``lmm`` or
        ``rm_corr``), ``contrast`` (``ME-MaE``...; rm_corr: ``expression-NE``),
        ``window_s``, ``feature``, ``estimate`` (lmm: condition difference in
        the feature's unit; rm_corr: r), ``statistic`` (lmm: t on ``df`` =
        n_subjects - 1, see :func:`mmme_neuro.stats.mixed_model`; rm_corr:
        r), ``df``, ``p``, lmm only: ``random_effects`` (the structure
        fitted) and the subject-level paired test of the same contrast
        (``paired_t``, ``paired_df``, ``paired_p``),
        ``p_fdr`` (across windows x features, per test and contrast),
        ``significant``, ``effect_size`` (``d_lmm`` or r), ``effect_size_name``,
        ``ci_low``, ``ci_high``, ``n_subjects``, ``n_trials``, ``converged``.
    """
    feats = features[features["condition"].isin(["ME", "MaE", "NE"])].copy()
    if clean_only and "clean_baseline" in feats.columns:
        feats = feats[feats["clean_baseline"].astype(bool)]
    names = [f for f in (feature_names or CONCORDANCE_FEATURES) if f in feats.columns]
    feats["expression"] = feats["condition"].isin(["ME", "MaE"]).astype(float)
    rows = []
    pairs = [(w, f) for w in sorted(feats["window_s"].unique()) for f in names]
    for w, f in pairs:
        sub = feats[feats["window_s"] == w]
        for a, b in contrasts:
            base = {"test": "lmm", "contrast": f"{a}-{b}", "window_s": w, "feature": f}
            d = sub[sub["condition"].isin([a, b])].dropna(subset=[f])
            if d["subject"].nunique() < 3 or d.groupby("condition").size().reindex([a, b]).fillna(0).min() < 3 \
                    or d[f].nunique() < 2:  # fmt: skip
                rows.append({**base, "p": np.nan, "n_subjects": int(d["subject"].nunique()), "n_trials": len(d)})
                continue
            try:
                t = mixed_model(d, measure=f, reference=b, conditions=(a, b))
            except (ValueError, np.linalg.LinAlgError) as err:
                logger.warning("mixed model %s %s %s s not fitted: %s", f, base["contrast"], w, err)
                rows.append({**base, "p": np.nan})
                continue
            r = t[t["kind"] == "condition"].iloc[0]
            rows.append({**base, "estimate": r["estimate"], "statistic": r["t"], "df": r["df"], "p": r["p"],
                         "paired_t": r["paired_t"], "paired_df": r["paired_df"], "paired_p": r["paired_p"],
                         "random_effects": r["random_effects"],
                         "effect_size": r["effect_size"], "effect_size_name": r["effect_size_name"],
                         "ci_low": r["ci_low"], "ci_high": r["ci_high"], "n_subjects": r["n_subjects"],
                         "n_trials": r["n_trials"], "converged": bool(r["converged"])})  # fmt: skip
        rc = _rm_corr(sub, f)
        rows.append({"test": "rm_corr", "contrast": "expression-NE", "window_s": w, "feature": f,
                     "estimate": rc["r"], "statistic": rc["r"], "p": rc["p"], "effect_size": rc["r"],
                     "effect_size_name": "r_rm", "ci_low": rc["ci_low"], "ci_high": rc["ci_high"],
                     "n_subjects": rc["n_subjects"], "n_trials": rc["n_trials"], "converged": True})  # fmt: skip
    table = pd.DataFrame(rows)
    table["p_fdr"] = np.nan
    for _, idx in table.groupby(["test", "contrast"]).groups.items():
        table.loc[idx, "p_fdr"] = fdr(table.loc[idx, "p"].to_numpy(float), fdr_method)
    table["significant"] = table["p_fdr"] < alpha
    table["correction"] = fdr_method + " over windows x features"
    return table.sort_values(["test", "contrast", "feature", "window_s"], kind="stable").reset_index(drop=True)


def response_timing(epoch_features: pd.DataFrame, *, conditions: Sequence[str] = ("ME", "MaE"),
                    reference: str = "NE", config: Any = None) -> tuple[pd.DataFrame, dict[str, Any]]:  # fmt: skip
    """Facial-physiological timing: response latencies and SCR rate vs the NE chance rate.

    Parameters
    ----------
    epoch_features : pandas.DataFrame
        :func:`mmme_neuro.physio.event_features` rows of all subjects.
    conditions : sequence of str
        Expression conditions compared with ``reference``.
    reference : str
        Chance-rate condition (NE controls: same clips, no expression).
    config : Config | None
        Statistics defaults (paired tests).

    Returns
    -------
    rates : pandas.DataFrame
        Per subject x condition: ``n``, ``scr_rate`` (proportion of epochs
        followed by an SCR onset in the SCR window).
    result : dict
        Per condition: ``scr_rate`` (pooled), ``scr_latency_s`` (median, IQR,
        n), ``hr_peak_latency_s`` (median, IQR over clean-baseline epochs),
        ``vs_chance`` (pooled binomial test of the condition's SCR count
        against the pooled NE rate, and a paired t-test over subjects of the
        per-subject rates).
    """
    from scipy.stats import binomtest

    ef = epoch_features.dropna(subset=["scr_occurred"])
    rates = (ef.groupby(["subject", "condition"])["scr_occurred"].agg(n="size", scr_rate="mean").reset_index())
    chance = float(ef.loc[ef["condition"] == reference, "scr_occurred"].mean()) if (ef["condition"] == reference).any() else np.nan
    out: dict[str, Any] = {"chance_condition": reference, "chance_scr_rate": chance}

    def q(x: pd.Series) -> dict[str, float]:
        x = x.dropna()
        if not len(x):
            return {"median": np.nan, "q25": np.nan, "q75": np.nan, "n": 0}
        return {"median": float(x.median()), "q25": float(x.quantile(0.25)), "q75": float(x.quantile(0.75)), "n": len(x)}

    for c in [*conditions, reference]:
        e = ef[ef["condition"] == c]
        clean = epoch_features[(epoch_features["condition"] == c)]
        if "clean_baseline" in clean.columns:
            clean = clean[clean["clean_baseline"].astype(bool)]
        res: dict[str, Any] = {"n": len(e), "scr_rate": float(e["scr_occurred"].mean()) if len(e) else np.nan,
                               "scr_latency_s": q(e["scr_latency_s"]),
                               "hr_peak_latency_s": q(clean.get("hr_peak_latency_s", pd.Series(dtype=float)))}  # fmt: skip
        if c != reference and len(e) and np.isfinite(chance):
            k = int(e["scr_occurred"].sum())
            bt = binomtest(k, len(e), min(max(chance, 1e-9), 1 - 1e-9))
            res["vs_chance"] = {"test": "binomial (pooled)", "k": k, "n": len(e), "p": float(bt.pvalue)}
            try:
                pt = paired_test(rates.rename(columns={"scr_rate": "scr_rate_"}), measure="scr_rate_",
                                 contrast=(c, reference), config=config)  # fmt: skip
                res["vs_chance"].update({"paired_t": float(pt["statistic"].iloc[0]), "paired_p": float(pt["p"].iloc[0]),
                                         "cohen_dz": float(pt["cohen_dz"].iloc[0]),
                                         "n_subjects": int(pt["n_subjects"].iloc[0])})  # fmt: skip
            except ValueError as err:
                logger.warning("paired SCR-rate test %s vs %s not run: %s", c, reference, err)
        out[c] = res
    return rates, out


def brain_body_coupling(eeg_trials: pd.DataFrame, physio_trials: pd.DataFrame, eeg_measure: str,
                        physio_measure: str, *, on: str = "expression_id",
                        conditions: Sequence[str] = ("ME", "MaE")) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Mixed model of a per-epoch physiological measure on a per-epoch EEG measure.

    Parameters
    ----------
    eeg_trials : pandas.DataFrame
        One row per EEG epoch: ``on``, ``subject``, ``condition`` and ``eeg_measure``.
    physio_trials : pandas.DataFrame
        One row per physiology epoch: ``on`` and ``physio_measure``.
    eeg_measure, physio_measure : str
        Columns related (e.g. P3 amplitude in µV, HR change in bpm).
    on : str
        Join key (expressions only; NE epochs have none).
    conditions : sequence of str
        Conditions kept; with two or more, condition is a fixed effect too.

    Returns
    -------
    table : pandas.DataFrame
        One row: ``eeg_measure``, ``physio_measure``, ``estimate`` (physio
        units per EEG unit, within-subject), ``se``, ``t``, ``df``
        (n_subjects - 1), ``p``, ``ci_low``,
        ``ci_high``, ``beta_std``, ``n_subjects``, ``n_trials``, ``converged``,
        ``random_effects``, ``test``.
    joined : pandas.DataFrame
        The joined trials with ``<eeg_measure>_within`` (subject-mean-centred).

    Notes
    -----
    Model: ``physio ~ condition + eeg_within`` with by-subject random
    slopes of the condition and of ``eeg_within`` (the maximal structure that
    converges, :func:`mmme_neuro.stats.mixed_model` with
    ``covariate_slopes=True``), tested with t on n_subjects - 1 df.
    ``eeg_within`` is the EEG measure centred on each subject's mean, so the
    slope is the within-subject (trial-to-trial) coupling, not a difference
    between subjects; its random slope lets that coupling differ between
    subjects without making the test anti-conservative.
    """
    for df, cols, name in ((eeg_trials, (on, "subject", "condition", eeg_measure), "eeg_trials"),
                           (physio_trials, (on, physio_measure), "physio_trials")):  # fmt: skip
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ValueError(f"{name} lacks columns {missing}")
    p = physio_trials[[on, physio_measure]].dropna(subset=[on])
    e = eeg_trials[[on, "subject", "condition", eeg_measure]].dropna(subset=[on])
    j = e.merge(p, on=on, how="inner", validate="one_to_one")
    j = j[j["condition"].isin(conditions)].dropna(subset=[eeg_measure, physio_measure]).reset_index(drop=True)
    cov = f"{eeg_measure}_within"
    j[cov] = j[eeg_measure] - j.groupby("subject")[eeg_measure].transform("mean")
    present = [c for c in conditions if (j["condition"] == c).any()]
    if j["subject"].nunique() < 2 or len(j) < 5:
        raise ValueError(f"too few joined epochs for coupling ({len(j)} from {j['subject'].nunique()} subjects)")
    t = mixed_model(j, measure=physio_measure, covariates=(cov,), covariate_slopes=True, reference=present[-1],
                    conditions=present)
    r = t[t["term"] == cov].iloc[0]
    row = {"eeg_measure": eeg_measure, "physio_measure": physio_measure, "estimate": r["estimate"], "se": r["se"],
           "t": r["t"], "df": r["df"], "p": r["p"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
           "beta_std": r["effect_size"],
           "n_subjects": int(r["n_subjects"]), "n_trials": int(r["n_trials"]), "converged": bool(r["converged"]),
           "random_effects": r["random_effects"], "test": r["test"],
           "conditions": ",".join(present)}  # fmt: skip
    return pd.DataFrame([row]), j


# ----------------------------------------------------------------------------- pipeline step


def quality_summary(quality: pd.DataFrame, subject: str) -> pd.DataFrame:
    """Signal-quality segments summed per signal and reason (``ok`` for clean).

    Parameters
    ----------
    quality : pandas.DataFrame
        Per-segment flags of :func:`mmme_neuro.physio.process_session`
        (``signal``, ``segment``, ``start_s``, ``end_s``, ``reason``).
    subject : str
        Subject label of the rows.

    Returns
    -------
    table : pandas.DataFrame
        ``subject``, ``signal``, ``reason``, ``n_segments``, ``seconds``.
    """
    q = quality.assign(reason=quality["reason"].replace("", "ok"), seconds=quality["end_s"] - quality["start_s"])
    out = q.groupby(["signal", "reason"]).agg(n_segments=("segment", "size"), seconds=("seconds", "sum")).reset_index()
    out.insert(0, "subject", subject)
    return out


def first_level(session: Any, config: Config, *, clean_baseline_s: float = 8.0) -> dict[str, Any]:
    """One session's physiology step for :func:`mmme_neuro.pipeline.run_subjects`.

    Parameters
    ----------
    session : Session
        One subject's BIDS session (:func:`mmme_neuro.dataset.iter_sessions`).
    config : Config
        Configuration.
    clean_baseline_s : float
        Seconds without another expression before an onset for its epoch to
        count as having a clean baseline (:func:`mmme_neuro.physio.process_session`).

    Returns
    -------
    result : dict
        ``timecourses`` (:func:`mmme_neuro.physio.event_timecourses`),
        ``features`` (:func:`mmme_neuro.physio.event_features`), ``windows``
        (:func:`window_features`) and ``quality`` (:func:`quality_summary`).
    """
    processed, info, events = ph.process_session(session, config, clean_baseline_s=clean_baseline_s)
    return {"timecourses": ph.event_timecourses(processed, info, events),
            "features": ph.event_features(processed, info, events),
            "windows": window_features(processed, info, events),
            "quality": quality_summary(info["quality"], session.subject)}  # fmt: skip
