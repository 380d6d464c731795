"""ERPs of micro- vs macro-expressions (and no-expression controls), with the facial-EMG confound.

``python -m analyses.erp_me_vs_mae [--bids-root PATH] [--config FILE] [--out DIR] [--scale ...] [--null]``

Opens the configured study as BIDS (``--bids-root``, ``paths.bids_root``,
``paths.raw_root`` converted, or the synthetic default study of
``simulation.scale/null`` and the seed), and per subject (in parallel and
cached, :func:`mmme_neuro.erp.first_level` run by
:func:`mmme_neuro.pipeline.run_steps`): epochs ME, MaE and NE with preprocessing and EMG measures (:func:`mmme_neuro.epochs.epochs_from_session`),
averages them (:func:`mmme_neuro.erp.compute_evoked`) and measures the P3
(:func:`mmme_neuro.erp.measure_components`). Then, over subjects: the
minimum-count rule, cluster-based permutation tests ME vs MaE and ME vs NE
over channel x time (``Config.stats``, seed from the configuration), mixed
models ``amplitude ~ condition`` (by-subject random slopes, t on n_subjects -
1 df, the subject-level paired test beside them) with and without the EMG
covariate, and the paired ME vs MaE test of the EMG measures. Writes to
``--out`` (default ``figures/erp_me_vs_mae/``):

* ``erp.nc``: group ERPs ``(subject, condition, channel, time)`` in µV
  (:func:`mmme_neuro.containers.save_netcdf`), provenance in the attributes;
* tables (CSV): ``clusters_me_vs_mae``, ``clusters_me_vs_ne`` (one row per
  cluster), ``components`` (one row per epoch x window x ROI x measure, with
  the EMG covariates), ``mixed_models`` (with and without ``emg_rms_uv``),
  ``emg_confound`` (paired tests), ``emg_per_subject``, ``epochs`` (every
  planned epoch, kept or rejected with its reason), ``exclusions`` (coded
  expressions that never became epochs, those of subjects the analysis failed
  on included, with the failure), ``min_count``;
* figures (PNG 300 dpi + PDF): ``erp_overview`` (waveforms, EMG confound,
  topomaps), ``erp_waveforms``, ``topomaps_me_vs_mae``, ``topomaps_me_vs_ne``,
  ``emg_confound``;
* ``summary.json`` (``docs/summary-json.md``) and ``summary.md``;
* ``ica_stability.csv`` (with ``preprocessing.ica_stability_refits`` > 0): the ICA reliability check, one row per subject and refit.
* ``planned.csv``: the planned ROI x window contrasts (``planned.erp``;
  :func:`mmme_neuro.stats.planned_contrasts`), reported beside the cluster tests;
* with ``emg_matching.method`` not ``"off"`` (default ``"nearest"``), the EMG-matched
  sensitivity analysis: ``emg_matching.csv`` (per-subject matching report),
  ``clusters_me_vs_mae_emg_matched.csv`` (the ME - MaE cluster test on the matched
  epochs) and ``survives_emg_matching`` on every significant ME - MaE cluster
  (``clusters_me_vs_mae.csv``, summary.json, summary.md);
* ``timing.json``: time of the per-subject step and of the group level (not a result: it changes from run to run).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from analyses._common import build_parser, group_jobs, run_script, write_csv, write_timing
from mmme_neuro import epochs as ep_mod
from mmme_neuro import erp, matching, steps
from mmme_neuro.config import Config
from mmme_neuro.containers import save_netcdf
from mmme_neuro.dataset import analysis_exclusions, prepare_bids
from mmme_neuro.pipeline import Step, run_steps
from mmme_neuro.preprocessing import ica_stability_table
from mmme_neuro.reporting import (
    base_summary,
    cluster_test_name,
    make_contrast,
    model_fields,
    p_text,
    planned_markdown,
    planned_records,
    write_summary,
)
from mmme_neuro.stats import (
    PLANNED_COLUMNS,
    ClusterResult,
    cluster_tests,
    covariate_collinearity,
    mixed_model,
    paired_test,
    planned_contrasts,
)
from mmme_neuro.viz import erp as verp
from mmme_neuro.viz.style import save_figure

ANALYSIS = "erp_me_vs_mae"
FIGURE_FORMATS: tuple[str, ...] = ("png", "pdf")
#: Cluster-tested contrasts (minuend first).
CONTRASTS: tuple[tuple[str, str], ...] = (("ME", "MaE"), ("ME", "NE"))
#: Component windows (s) and ROI.
WINDOWS: dict[str, tuple[float, float]] = dict(erp.DEFAULT_WINDOWS)
ROIS: dict[str, tuple[str, ...]] = dict(erp.DEFAULT_ROIS)
#: EMG measures tested ME vs MaE (first: covariate of the mixed models).
EMG_MEASURES: tuple[str, ...] = ("emg_rms_uv", "emg_temporal_power")
EMG_COVARIATE = "emg_rms_uv"
TOPO_WINDOWS: tuple[tuple[float, float], ...] = ((0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5), (0.5, 0.6))

logger = logging.getLogger(f"analyses.{ANALYSIS}")


def group_erp(results: Sequence[Mapping[str, Any]], config: Config) -> tuple[xr.DataArray, pd.DataFrame, pd.DataFrame]:
    """Group array with the minimum-count rule applied (NaN where a subject lacks enough epochs).

    ``results`` are per-subject :func:`mmme_neuro.erp.first_level` results.
    Returns the group array, all epoch metadata and the min-count report.
    """
    if len(results) < 2:
        raise ValueError(f"at least 2 subjects with epochs are needed, got {len(results)}")
    md = pd.concat([r["epochs"] for r in results], ignore_index=True)
    _, report = ep_mod.apply_min_count(md, config, conditions=erp.CONDITIONS)
    group = erp.stack_subjects([r["evoked"] for r in results], config=config, analysis=ANALYSIS,
                               align=config.epochs.align, baseline_s=config.epochs.baseline)  # fmt: skip
    out = group.copy()
    for row in report[~report["included"]].itertuples():
        if row.subject in out["subject"].values and row.condition in out["condition"].values:
            out.loc[{"subject": row.subject, "condition": row.condition}] = np.nan
    out.attrs["min_count_excluded"] = [f"{r.subject}:{r.condition}" for r in report[~report["included"]].itertuples()]
    return out, md, report


def _cluster_label(row: Mapping[str, Any]) -> str:
    chans = str(row.get("channels", "")).split(",")
    return (
        f"cluster {row.get('cluster', '?')} ({'+' if row['sign'] > 0 else '-'}, "
        f"{row['time_min_s']:.3f}-"
        f"{row['time_max_s']:.3f} s, {len(chans)} channels, peak {row.get('peak_channel')})"
    )


def emg_matched(
    results: Sequence[Mapping[str, Any]],
    md: pd.DataFrame,
    main: ClusterResult | None,
    config: Config,
    *,
    n_jobs: int = 1,
) -> dict[str, Any] | None:
    """The EMG-matched ME - MaE cluster test beside the main one (None when matching is off).

    The group level repeats the matching of the first level on the stored
    metadata (:func:`mmme_neuro.matching.matched_epochs`: the report, and
    the minimum-count rule on the matched epochs) and checks it against the
    counts of the matched averages (``evoked_emg_matched``) the first level stored.

    Returns
    -------
    matched : dict | None
        ``matching`` (:class:`~mmme_neuro.matching.EmgMatching`), ``min_count``,
        ``group`` (matched ME/MaE averages, NaN where the rule excludes), ``result``
        (:class:`~mmme_neuro.stats.ClusterResult` or None when untestable) and ``block``
        (``results.emg_matched`` of summary.json).
    """
    got = matching.matched_epochs(md, config, erp.MATCHED_CONDITIONS)
    if got is None:
        return None
    m, _, report = got
    evs = [r["evoked_emg_matched"] for r in results]
    group = erp.stack_subjects(
        evs, config=config, analysis=ANALYSIS, epochs="EMG-matched ME and MaE epochs"
    )
    matching.check_counts(m, group["n_epochs"])
    for row in report[~report["included"]].itertuples():
        if row.subject in group["subject"].values:
            group.loc[{"subject": row.subject, "condition": row.condition}] = np.nan
    res = cluster_tests(group, [tuple(erp.MATCHED_CONDITIONS)], config=config, n_jobs=n_jobs)[
        "ME-MaE"
    ]
    n_ok = int(report[report["included"]].groupby("subject").size().eq(2).sum())
    info = matching.cluster_test_info(
        res,
        f"{n_ok} subject(s) with at least {config.epochs.min_epochs_per_condition} "
        "matched ME and MaE epochs; 2 are needed",
    )
    effects = matching.cluster_effects(main, res, matched_data=group, label=_cluster_label)
    return {
        "matching": m,
        "min_count": report,
        "group": group,
        "result": res,
        "block": matching.summary_block(m, report, info, effects),
    }


def planned_table(group: xr.DataArray, config: Config) -> pd.DataFrame:
    """The planned ROI x window contrasts of ``planned.erp`` on the group ERPs (µV), corrected
    within the family."""
    specs = [{**c.model_dump(), "measure": "amplitude_uv"} for c in config.planned_contrasts("erp")]
    if not specs:
        return pd.DataFrame(columns=list(PLANNED_COLUMNS))
    return planned_contrasts(
        group, specs, correction=config.planned.correction, alpha=config.stats.alpha
    )


def run_mixed_models(components: pd.DataFrame) -> pd.DataFrame:
    """``amplitude ~ condition`` (maximal random effects) with and without the EMG covariate, ME vs MaE."""
    rows = []
    for (comp, roi, kind), sub in components.groupby(["component", "roi", "kind"], sort=True):
        for covs in ((), (EMG_COVARIATE,)):
            if covs and (EMG_COVARIATE not in sub.columns or sub[EMG_COVARIATE].notna().sum() < 3):
                continue
            try:
                t = mixed_model(sub, measure="amplitude_uv", covariates=covs, reference="MaE", conditions=("ME", "MaE"))
            except ValueError as err:
                logger.warning("mixed model %s/%s/%s not fitted: %s", comp, roi, kind, err)
                continue
            t.insert(0, "model", "amplitude ~ condition" + "".join(f" + {c}" for c in covs) + " + "
                     + t["random_effects"].iloc[0])
            t.insert(1, "component", comp)
            t.insert(2, "roi", roi)
            t.insert(3, "amplitude_measure", kind)
            rows.append(t)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def emg_tests(trials: pd.DataFrame, config: Config) -> pd.DataFrame:
    """Paired ME vs MaE tests of the EMG measures (subject means of kept epochs)."""
    measures = [m for m in EMG_MEASURES if m in trials.columns and trials[m].notna().any()]
    if not measures:
        return pd.DataFrame()
    return paired_test(trials, measure=measures, contrast=("ME", "MaE"), config=config)


def _f(x: Any, fmt: str = ".3g") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(float(x), fmt)


def build_summary(
    config: Config,
    inputs: dict[str, Path],
    group: xr.DataArray,
    md: pd.DataFrame,
    clusters: dict[str, ClusterResult | None],
    models: pd.DataFrame,
    emg: pd.DataFrame,
    exclusions: dict[str, int],
    report: pd.DataFrame,
    failed: list[dict[str, str]],
    ica_stability: pd.DataFrame | None = None,
    planned: pd.DataFrame | None = None,
    matched: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The summary.json content (``docs/summary-json.md``).

    ``ica_stability``: :func:`~mmme_neuro.preprocessing.ica_stability_table`; ``planned``:
    :func:`planned_table`; ``matched``: :func:`emg_matched`.
    """
    summary = base_summary(ANALYSIS, config, inputs=inputs)
    subjects = [str(s) for s in group["subject"].values]
    summary["subjects"] = subjects
    summary["n_subjects"] = len(subjects)
    kept = ep_mod.included_rows(md[md["kept"]], report)
    summary["epochs_per_condition"] = {c: int((kept["condition"] == c).sum()) for c in erp.CONDITIONS}
    summary["exclusions_by_reason"] = exclusions
    contrasts: list[dict[str, Any]] = []
    cluster_info: dict[str, Any] = {}
    flags = {e["cluster"]: e for e in (matched["block"]["effects"] if matched else [])}
    for name, res in clusters.items():
        if res is None:
            cluster_info[name] = {"tested": False}
            continue
        recs = res.to_contrast_records()
        for rec in recs:
            if name == "ME-MaE" and rec.get("significant") and rec.get("cluster") in flags:
                f = flags[rec["cluster"]]
                rec.update(
                    survives_emg_matching=f["survives_emg_matching"],
                    matched_mean_diff=f["matched_mean_diff"],
                )
        contrasts.extend(recs)
        cluster_info[name] = {"tested": True, "n_subjects": res.n_subjects, "n_clusters": int(len(res.clusters)),
                              "n_significant": res.n_significant, "n_permutations": res.n_permutations,
                              "exact": res.exact, "threshold_t": res.threshold, "dropped_subjects": res.dropped_subjects}  # fmt: skip
    mm: dict[str, Any] = {}
    if len(models):
        cond = models[models["amplitude_measure"].eq("mean") & models["term"].eq("ME - MaE")]
        for row in models[models["term"].eq("ME - MaE")].to_dict(orient="records"):
            win = WINDOWS[row["component"]]
            contrasts.append(make_contrast(
                "ME-MaE", kind="mixed_model", location=list(ROIS[row["roi"]]), time_s=list(win),
                p=row["p"], effect_size=row["effect_size"], **model_fields(row),
                effect_size_name=row["effect_size_name"], correction="none", n=row["n_subjects"],
                ci_low=row["ci_low"], ci_high=row["ci_high"], estimate_uv=row["estimate"], model=row["model"],
                component=row["component"], measure=row["amplitude_measure"], n_trials=row["n_trials"],
            ))  # fmt: skip
        for row in cond.to_dict(orient="records"):
            key = "with_emg_covariate" if EMG_COVARIATE in row["model"] else "without_covariate"
            mm[key] = {"estimate_uv": row["estimate"], "ci_low": row["ci_low"], "ci_high": row["ci_high"],
                       "t": row["t"], "df": row["df"], "p": row["p"], "d_lmm": row["effect_size"],
                       "n_trials": row["n_trials"], "converged": bool(row["converged"]), "test": row["test"],
                       "random_effects": row["random_effects"],
                       "subject_level_test": model_fields(row)["subject_level_test"]}
    emg_res: dict[str, Any] = {}
    for row in emg.to_dict(orient="records") if len(emg) else []:
        contrasts.append(make_contrast(
            "ME-MaE", kind="emg", location=row["measure"], statistic=row["statistic"], p=row["p"],
            effect_size=row["cohen_dz"], statistic_name="t", effect_size_name="cohen_dz", correction="none",
            n=row["n_subjects"], ci_low=row["ci_low"], ci_high=row["ci_high"], mean_ME=row["mean_ME"],
            mean_MaE=row["mean_MaE"], measure=row["measure"],
        ))  # fmt: skip
        emg_res[row["measure"]] = {"mean_ME": row["mean_ME"], "mean_MaE": row["mean_MaE"], "t": row["statistic"],
                                   "df": row["df"], "p": row["p"], "cohen_dz": row["cohen_dz"],
                                   "larger": "MaE" if row["mean_diff"] < 0 else "ME"}  # fmt: skip
    if matched is not None and matched["result"] is not None:
        for rec in matched["result"].to_contrast_records():
            rec.update(kind="cluster_emg_matched", emg_matching=matched["matching"].options)
            contrasts.append(rec)
    if planned is not None and len(planned):
        contrasts.extend(planned_records(planned, units="µV"))
    summary["contrasts"] = contrasts
    alpha = config.stats.alpha
    with_cov, without_cov = mm.get("with_emg_covariate"), mm.get("without_covariate")
    # an effect can only survive the covariate if there is one without it
    plain_sig = without_cov is not None and bool(without_cov["p"] < alpha)
    summary["results"] = {
        "roi": {k: list(v) for k, v in ROIS.items()},
        "windows_s": {k: list(v) for k, v in WINDOWS.items()},
        "align": config.epochs.align,
        "baseline_s": list(config.epochs.baseline) if config.epochs.baseline else None,
        "ica": config.preprocessing.ica,
        "alpha": alpha,
        "clusters": cluster_info,
        "mixed_models_p3_mean": mm,
        "erp_effect_survives_emg_covariate": None
        if with_cov is None or not plain_sig
        else bool(with_cov["p"] < alpha),
        "emg_condition_collinearity": covariate_collinearity(kept, EMG_COVARIATE)
        if EMG_COVARIATE in kept.columns
        else None,
        "emg_me_vs_mae": emg_res,
        "epochs_per_subject": {
            s: {c: int(n) for c, n in zip(group["condition"].values, counts, strict=True)}
            for s, counts in zip(subjects, group["n_epochs"].values, strict=True)
        },  # fmt: skip
        "min_count_excluded": [
            f"{r.subject}:{r.condition} ({r.reason})"
            for r in report[~report["included"]].itertuples()
        ],
        "failed_subjects": failed,
        "ica_stability": _ica_stability_summary(ica_stability),
        "emg_matched": None if matched is None else matched["block"],
        "planned": {
            "correction": config.planned.correction,
            "alpha": alpha,
            "family_size": int(planned["family_size"].iloc[0])
            if planned is not None and len(planned)
            else 0,
            "names": [] if planned is None else [str(n) for n in planned["name"]],
        },
    }
    return summary


def _with_flags(table: pd.DataFrame, effects: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """A cluster table with ``survives_emg_matching`` and ``matched_mean_diff`` (significant
    clusters; else empty)."""
    flags = {e["cluster"]: e for e in effects}
    out = table.copy()
    out["survives_emg_matching"] = [
        flags[c]["survives_emg_matching"] if c in flags else None for c in out["cluster"]
    ]
    out["matched_mean_diff"] = [
        flags[c]["matched_mean_diff"] if c in flags else np.nan for c in out["cluster"]
    ]
    return out


def _ica_stability_summary(table: pd.DataFrame | None) -> dict[str, Any] | None:
    """Study-level verdict of the ICA reliability check (None when it was not run)."""
    if table is None:
        return None
    if table.empty:  # ICA on, but no subject with a check (none had epochs)
        return {"n_refits": 0, "n_subjects": 0, "unstable_subjects": [], "smallest_removed_r": None,
                "max_abs_diff_uv": None, "median_rms_diff_uv": None}  # fmt: skip
    by_subject = table.groupby("subject")["subject_stable"].first()
    r = table["smallest_removed_r"].dropna()
    return {
        "n_refits": int(table.groupby("subject").size().max()),
        "n_subjects": int(len(by_subject)),
        "unstable_subjects": sorted(str(s) for s, ok in by_subject.items() if not ok),
        "smallest_removed_r": float(r.min()) if len(r) else None,
        "max_abs_diff_uv": float(table["max_abs_diff_uv"].max()),
        "median_rms_diff_uv": float(table["rms_diff_uv"].median()),
    }




def _matched_test_line(test: Mapping[str, Any]) -> str:
    """The matched ME - MaE cluster test in one line (summary.md)."""
    name = cluster_test_name(test)
    sig = test.get("significant_clusters") or []
    if not sig:
        return f"no significant cluster (n = {test['n_subjects']}; {name})."
    parts = [
        f"cluster {c['cluster']} ({'+' if c['sign'] > 0 else '-'}) {_f(c['time_s'][0], '.3f')}-"
        f"{_f(c['time_s'][1], '.3f')} s over {c['n_sites']} channels, "
        f"{p_text(c['p'], test['n_permutations'])}"
        for c in sig
    ]
    return f"n = {test['n_subjects']}; {name}: " + "; ".join(parts) + "."


def build_markdown(summary: dict[str, Any]) -> str:
    """Short prose summary (summary.md)."""
    res = summary["results"]
    epc = summary["epochs_per_condition"]
    excl = ", ".join(f"{k} {v}" for k, v in summary["exclusions_by_reason"].items()) or "none"
    lines = [
        "# ERPs: micro- vs macro-expressions",
        "",
        f"Configuration hash `{summary['config_hash']}`, seed {summary['seed']}, mmme-neuro {summary['package_version']}; "
        f"epochs aligned to expression {res['align']}, baseline {res['baseline_s']} s, ocular ICA {'on' if res['ica'] else 'off'}.",
        "",
        f"- **{summary['n_subjects']} subjects**; epochs analysed: ME {epc.get('ME', 0)}, MaE {epc.get('MaE', 0)}, "
        f"NE {epc.get('NE', 0)}.",
        f"- Exclusions by reason (coded expressions lost before epoching, and `epoch_*` rejected epochs): {excl}.",
    ]
    if res["min_count_excluded"]:
        lines.append(f"- Left out of contrasts (too few clean epochs): {', '.join(res['min_count_excluded'])}.")
    if res["failed_subjects"]:
        lines.append(f"- Subjects without epochs: {', '.join(f['subject'] for f in res['failed_subjects'])}.")
    stab = res.get("ica_stability")
    if stab and stab["n_subjects"]:
        unstable = ", ".join(stab["unstable_subjects"]) or "none"
        r = "n/a (nothing removed)" if stab["smallest_removed_r"] is None else f"{stab['smallest_removed_r']:.4f}"
        lines.append(f"- ICA reliability ({stab['n_refits']} refits with other seeds, {stab['n_subjects']} subjects; "
                     f"`ica_stability.csv`): subjects whose removed components change: {unstable}; smallest |r| of a "
                     f"removed component's refound scalp map {r}; the cleaned EEG moves by up to "
                     f"{stab['max_abs_diff_uv']:.2f} µV (median RMS {stab['median_rms_diff_uv']:.3f} µV).")  # fmt: skip
    lines += ["", "## Cluster-based permutation tests (channel x time)", ""]
    for name, info in res["clusters"].items():
        if not info.get("tested"):
            lines.append(f"- {name}: not tested (fewer than 2 subjects with both conditions).")
            continue
        recs = [c for c in summary["contrasts"] if c["contrast"] == name and c["kind"] == "cluster" and c.get("significant")]
        test = cluster_test_name(info)
        if not recs:
            lines.append(f"- {name}: no significant cluster (n = {info['n_subjects']}; {test}).")
        for c in recs:
            chans = c["location"] or []
            n_perm = c.get("n_permutations") or info["n_permutations"]
            lines.append(
                f"- {name}: cluster {c['cluster']} at {_f(c['time_s'][0], '.3f')}-{_f(c['time_s'][1], '.3f')} s over "
                f"{len(chans)} channels ({', '.join(chans)}), mass {_f(c['statistic'], '.1f')}, "
                f"{test}: {p_text(c['p'], n_perm)}, "
                f"dz = {_f(c['effect_size'], '.2f')} (descriptive), peak at {c.get('peak_channel')} "
                f"{_f(c.get('peak_time_s'), '.3f')} s; n = {c['n']}."
            )  # fmt: skip
    lines += planned_markdown(
        [c for c in summary["contrasts"] if c["kind"] == "planned"],
        title="Planned contrasts, beside the cluster test",
    )
    lines += matching.markdown_lines(res.get("emg_matched"), _matched_test_line, what="cluster")
    lines += ["", "## Facial EMG (the confound)", ""]
    for m, r in res["emg_me_vs_mae"].items():
        lines.append(f"- {m}: ME {_f(r['mean_ME'])} vs MaE {_f(r['mean_MaE'])}, "
                     f"paired t({_f(r['df'], '.0f')}) = {_f(r['t'], '.2f')}, {p_text(r['p'])}, "
                     f"dz = {_f(r['cohen_dz'], '.2f')}: larger for {r['larger']}.")  # fmt: skip
    mm = res["mixed_models_p3_mean"]
    roi = ", ".join(next(iter(res["roi"].values())))
    win = next(iter(res["windows_s"].values()))
    lines += ["", f"## P3 mean amplitude ({win[0]}-{win[1]} s, {roi}): mixed models, ME - MaE", ""]
    for key, label in (("without_covariate", "without covariate"), ("with_emg_covariate", f"with {EMG_COVARIATE}")):
        if key in mm:
            r = mm[key]
            pt = r["subject_level_test"]
            lines.append(f"- {label}: {_f(r['estimate_uv'], '.2f')} µV [{_f(r['ci_low'], '.2f')}, {_f(r['ci_high'], '.2f')}], "
                         f"t({_f(r['df'], '.0f')}) = {_f(r['t'], '.2f')}, {p_text(r['p'])}, d = {_f(r['d_lmm'], '.2f')} "
                         f"({r['n_trials']} trials; {r['test']}); subject-level paired t({_f(pt['df'], '.0f')}) = "
                         f"{_f(pt['t'], '.2f')}, {p_text(pt['p'])}.")  # fmt: skip
    surv = res["erp_effect_survives_emg_covariate"]
    plain = mm.get("without_covariate")
    if "with_emg_covariate" not in mm:
        verdict = "The model with the EMG covariate could not be fitted."
    elif surv is None:
        verdict = (f"Without the EMG covariate the ME - MaE P3 effect is not significant (t({_f(plain['df'], '.0f')}) = "
                   f"{_f(plain['t'], '.2f')}, {p_text(plain['p'])}), so "
                   "there is no effect for the covariate to explain; the adjusted model is reported for completeness.")
    else:
        verdict = ("The ME - MaE P3 effect " + ("**survives**" if surv else "does **not** survive")
                   + f" the EMG covariate ({EMG_COVARIATE}, alpha = {res['alpha']}).")  # fmt: skip
        col = res.get("emg_condition_collinearity") or {}
        if col.get("vif", 0) > 5:
            verdict += (f" Caution: within subjects the EMG covariate nearly duplicates the condition "
                        f"(r = {_f(col['r'], '.2f')}, VIF = {_f(col['vif'], '.1f')}), so the adjusted estimate is "
                        "uninformative (see its CI), not evidence for or against the ERP effect; read "
                        "the EMG-matched test (above) or epochs before EMG onset instead.")  # fmt: skip
    lines += ["", verdict]
    lines += ["", "Figures: `erp_overview` (a waveforms with cluster extents, EMG panels, topomaps of ME - MaE with "
              "significant channels), `erp_waveforms`, `topomaps_me_vs_mae`, `topomaps_me_vs_ne`, `emg_confound`. "
              "Cluster extents are descriptive (Sassenhagen & Draschkow 2019).", ""]
    return "\n".join(lines)


def make_figures(
    group: xr.DataArray,
    clusters: dict[str, ClusterResult | None],
    trials: pd.DataFrame,
    emg: pd.DataFrame,
    planned: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """All figures, by output name (not yet saved); ``planned`` windows are shaded on the waveforms
    of their ROI."""
    tested = [c for c in clusters.values() if c is not None]
    figs: dict[str, Any] = {}
    figs["erp_overview"] = verp.plot_erp_overview(
        group,
        ROIS,
        clusters=tested,
        emg_values=trials,
        emg_tests=emg,
        emg_measures=EMG_MEASURES,
        windows=TOPO_WINDOWS,
        planned=planned,
    )
    waves = verp.plot_erp_waveforms(group, ROIS, clusters=tested, planned=planned)
    figs["erp_waveforms"] = waves[0].figure
    for (a, b) in CONTRASTS:
        res = clusters.get(f"{a}-{b}")
        figs[f"topomaps_{a.lower()}_vs_{b.lower()}"] = verp.plot_contrast_topomaps(
            group, (a, b), TOPO_WINDOWS, cluster=res)[0].figure
    measures = [m for m in EMG_MEASURES if m in trials.columns]
    if measures:
        figs["emg_confound"] = verp.plot_emg_confound(trials, measures, tests=emg)[0].figure
    return figs


def first_level_step(config: Config) -> Step:
    """The per-subject step of this analysis (:func:`mmme_neuro.erp.first_level` on the shared preprocessing pass).

    :func:`run` runs it; ``mmme-neuro run`` runs it with the other analyses'
    steps as one task graph first (:func:`mmme_neuro.pipeline.run_steps`).
    """
    return Step(
        erp.first_level,
        "erp",
        steps.step_config(config),
        {"windows": WINDOWS, "rois": ROIS},
        steps.upstream(config),
    )


def run(config: Config, out_dir: Path, *, progress: bool = True, figures: bool = True) -> dict[str, Any]:
    """Run the analysis into ``out_dir``; return the summary written to summary.json.

    ``figures=False`` writes the tables, ``erp.nc`` and the summaries only.
    """
    bids_root = prepare_bids(config, progress=progress)
    step = run_steps([first_level_step(config)], bids_root, progress=progress)["erp"]
    step.require(2)
    results, failed = list(step.results.values()), step.failed
    t_group = time.perf_counter()
    group, md, report = group_erp(results, config)
    save_netcdf(group, out_dir / "erp.nc")

    clusters = cluster_tests(group, CONTRASTS, config=config, n_jobs=group_jobs(config))
    matched = emg_matched(results, md, clusters.get("ME-MaE"), config, n_jobs=group_jobs(config))
    for (a, b) in CONTRASTS:
        res = clusters[f"{a}-{b}"]
        table = res.clusters if res is not None else pd.DataFrame()
        if matched is not None and (a, b) == ("ME", "MaE") and len(table):
            table = _with_flags(table, matched["block"]["effects"])
        write_csv(table, out_dir / f"clusters_{a.lower()}_vs_{b.lower()}.csv")
    if matched is not None:
        write_csv(matched["matching"].report, out_dir / "emg_matching.csv")
        res_m = matched["result"]
        write_csv(
            res_m.clusters if res_m is not None else pd.DataFrame(),
            out_dir / "clusters_me_vs_mae_emg_matched.csv",
        )
    planned = planned_table(group, config)
    write_csv(planned, out_dir / "planned.csv")
    components = ep_mod.included_rows(pd.concat([r["components"] for r in results], ignore_index=True), report)
    write_csv(components, out_dir / "components.csv")
    models = run_mixed_models(components)
    write_csv(models, out_dir / "mixed_models.csv")
    trials = ep_mod.included_rows(md[md["kept"]], report)
    emg = emg_tests(trials, config)
    write_csv(emg, out_dir / "emg_confound.csv")
    write_csv(ep_mod.emg_summary(md), out_dir / "emg_per_subject.csv")
    write_csv(md, out_dir / "epochs.csv")
    write_csv(report, out_dir / "min_count.csv")
    # every coded expression of every subject: an epoch (epochs.csv), or here with its reason (failed subjects too)
    excl = analysis_exclusions(bids_root, sorted(set(step.results) | set(md["subject"])), failed)
    write_csv(excl, out_dir / "exclusions.csv")
    ica_stab = None
    if config.preprocessing.ica_stability_refits:
        ica_stab = ica_stability_table(group.attrs.get("preprocessing") or {})
        write_csv(ica_stab, out_dir / "ica_stability.csv")

    if figures:
        for name, fig in make_figures(group, clusters, trials, emg, planned).items():
            save_figure(fig, out_dir / name, FIGURE_FORMATS)
    inputs = {"participants": Path(bids_root) / "participants.tsv"}
    for s in sorted(md["subject"].unique()):
        inputs[f"events_{s}"] = Path(bids_root) / s / "eeg" / f"{s}_task-mmme_events.tsv"
    inputs = {k: v for k, v in inputs.items() if v.is_file()}
    summary = build_summary(config, inputs, group, md, clusters, models, emg, ep_mod.exclusion_counts(md, excl), report, failed,
                            ica_stab, planned, matched)
    write_summary(out_dir, summary, build_markdown(summary))
    write_timing(out_dir, step, t_group)
    logger.info("%s: %d subjects -> %s", ANALYSIS, summary["n_subjects"], os.fspath(out_dir))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 success, 1 invalid input or configuration)."""
    parser = build_parser(__doc__.split("\n", 1)[0], analysis=ANALYSIS)
    parser.add_argument("--no-figures", action="store_true", help="write tables, erp.nc and summaries only")
    args = parser.parse_args(argv)
    return run_script(args, lambda config, out_dir: run(config, out_dir, progress=args.verbose > 0,
                                                        figures=not args.no_figures))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
