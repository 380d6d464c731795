"""Time-frequency power of micro- vs macro-expressions (and no-expression controls), with the facial-EMG confound.

``python -m analyses.tfr_me_vs_mae [--bids-root PATH] [--config FILE] [--out DIR] [--scale ...] [--null] [--method ...]``

Opens the configured study as BIDS (as :mod:`analyses.erp_me_vs_mae`) and
per subject (in parallel and cached, :func:`mmme_neuro.tfr.first_level` run by
:func:`mmme_neuro.pipeline.run_steps`): epochs ME, MaE and NE padded for the transform
(:func:`mmme_neuro.tfr.padded_config`, the edge rule) and decomposes them
(:func:`mmme_neuro.tfr.compute_tfr`: Morlet by default, 20 log-spaced
frequencies 4-45 Hz, output decimated to ~25 Hz, cropped to the configured
epoch window): total power, induced power, ITC (count-equalised) and the
band power of every epoch. Then, over subjects: the minimum-count rule,
ERSP = ``logratio`` (dB) against ``epochs.baseline`` (-1.0 to -0.5 s),
cluster-based permutation tests ME vs MaE and ME vs NE over channel x
frequency x time (``Config.stats``), and mixed models ``power_db ~ condition
(+ emg_rms_uv)`` (by-subject random slopes, t on n_subjects - 1 df) per band x
ROI, FDR across bands x ROIs.
Writes to ``--out`` (default ``figures/tfr_me_vs_mae/``):

* ``tfr.nc``: ``ersp`` (dB), ``power``/``induced`` (V²), ``itc``,
  ``(subject, condition, channel, freq, time)``, provenance in attributes;
* tables (CSV): ``clusters_me_vs_mae``, ``clusters_me_vs_ne``,
  ``band_power_trials`` (epoch x band x ROI with EMG columns),
  ``mixed_models``, ``emg_confound``, ``epochs``, ``min_count``;
* figures (PNG 300 dpi + PDF): ``tfr_rois_me_vs_mae``, ``tfr_rois_me_vs_ne``,
  ``band_topomaps_me_vs_mae``, ``band_timecourses``, ``emg_beta_gamma``;
* ``planned.csv``: the planned ROI x window x band contrasts (``planned.tfr``;
  :func:`mmme_neuro.stats.planned_contrasts` on the ERSP), reported beside the cluster tests
  (and shaded on ``band_timecourses``);
* with ``emg_matching.method`` not ``"off"`` (default ``"nearest"``), the EMG-matched
  sensitivity analysis: ``ersp_emg_matched`` in ``tfr.nc``, ``emg_matching.csv``,
  ``clusters_me_vs_mae_emg_matched.csv`` and ``survives_emg_matching`` on every significant
  ME - MaE cluster (``clusters_me_vs_mae.csv``, summary.json, summary.md);
* ``summary.json`` (every cluster: channels, frequency and time extent,
  mass, p, dz) and ``summary.md``.

And into the study's derivatives, per subject, ``sub-XX/eeg/sub-XX_task-mmme_tfr.h5``: its
power and ITC per condition as MNE ``AverageTFR`` objects (:func:`mne.time_frequency.read_tfrs`;
:func:`mmme_neuro.tfr.to_average_tfr` / :func:`~mmme_neuro.tfr.from_average_tfr` convert).
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
from mmme_neuro import matching, steps, tfr
from mmme_neuro.config import Config
from mmme_neuro.containers import save_netcdf
from mmme_neuro.dataset import analysis_exclusions, failed_exclusions, prepare_bids
from mmme_neuro.pipeline import Step, derivative_paths, derivatives_root, run_steps
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
    mixed_models_fdr,
    paired_test,
    planned_contrasts,
)
from mmme_neuro.viz import tfr as vtfr
from mmme_neuro.viz.style import save_figure

ANALYSIS = "tfr_me_vs_mae"
FIGURE_FORMATS: tuple[str, ...] = ("png", "pdf")
CONTRASTS: tuple[tuple[str, str], ...] = (("ME", "MaE"), ("ME", "NE"))
ROIS: dict[str, tuple[str, ...]] = dict(tfr.DEFAULT_ROIS)
EMG_MEASURES: tuple[str, ...] = ("emg_rms_uv", "emg_temporal_power")
EMG_COVARIATE = "emg_rms_uv"
TOPO_BANDS: tuple[str, ...] = ("theta", "alpha", "beta", "gamma")
TOPO_WINDOWS: tuple[tuple[float, float], ...] = ((0.0, 0.3), (0.3, 0.6), (0.6, 0.9), (0.9, 1.2))

logger = logging.getLogger(f"analyses.{ANALYSIS}")


def group_tfr(results: Sequence[tfr.TFRResult | xr.Dataset], md: pd.DataFrame, config: Config) -> tuple[xr.Dataset, pd.DataFrame]:
    """Group dataset with ``ersp`` (dB) and the minimum-count rule applied (NaN where excluded)."""
    if len(results) < 2:
        raise ValueError(f"at least 2 subjects with epochs are needed, got {len(results)}")
    _, report = ep_mod.apply_min_count(md, config, conditions=tfr.CONDITIONS)
    group = tfr.stack_subjects(results, config=config, analysis=ANALYSIS)
    for row in report[~report["included"]].itertuples():
        if row.subject in group["subject"].values and row.condition in group["condition"].values:
            for v in group.data_vars:
                group[v].loc[{"subject": row.subject, "condition": row.condition}] = np.nan
    group["ersp"] = tfr.baseline_normalize(group["power"], mode="logratio", config=config)
    group.attrs["min_count_excluded"] = [f"{r.subject}:{r.condition}" for r in report[~report["included"]].itertuples()]
    return group, report


def _cluster_label(row: Mapping[str, Any]) -> str:
    chans = str(row.get("channels", "")).split(",")
    return (
        f"cluster {row.get('cluster', '?')} ({'+' if row['sign'] > 0 else '-'}, "
        f"{row['freq_min_hz']:.3g}-"
        f"{row['freq_max_hz']:.3g} Hz, {row['time_min_s']:.2f}-{row['time_max_s']:.2f} s, "
        f"{len(chans)} channels, "
        f"peak {row.get('peak_channel')} {row.get('peak_freq_hz', float('nan')):.3g} Hz)"
    )


def emg_matched(
    group: xr.Dataset,
    md: pd.DataFrame,
    main: ClusterResult | None,
    config: Config,
    *,
    n_jobs: int = 1,
) -> dict[str, Any] | None:
    """The EMG-matched ME - MaE cluster test beside the main one (None when matching is off).

    ``group`` holds ``power_emg_matched`` (the first level's averages of the
    matched epochs, :func:`mmme_neuro.tfr.first_level`); the group level
    repeats the matching on the stored metadata (report, minimum-count rule
    on the matched epochs), checks the counts, adds ``ersp_emg_matched``
    (dB re the baseline of the matched epochs) to ``group`` and tests it.

    Returns
    -------
    matched : dict | None
        ``matching``, ``min_count``, ``result`` (ClusterResult or None) and
        ``block`` (``results.emg_matched``).
    """
    got = matching.matched_epochs(md, config, ("ME", "MaE"))
    if got is None:
        return None
    if "power_emg_matched" not in group:
        raise ValueError(
            "the first-level results hold no power_emg_matched (a stale cache? delete it to "
            "recompute)"
        )
    m, _, report = got
    matching.check_counts(m, group["n_epochs_emg_matched"])
    power = group["power_emg_matched"].sel(condition=["ME", "MaE"]).copy()
    for row in report[~report["included"]].itertuples():
        if row.subject in power["subject"].values:
            power.loc[{"subject": row.subject, "condition": row.condition}] = np.nan
    ersp = tfr.baseline_normalize(power, mode="logratio", config=config)
    group["ersp_emg_matched"] = ersp.reindex(condition=group["condition"].values)
    res = cluster_tests(ersp, [("ME", "MaE")], config=config, n_jobs=n_jobs)["ME-MaE"]
    n_ok = int(report[report["included"]].groupby("subject").size().eq(2).sum())
    info = matching.cluster_test_info(
        res,
        f"{n_ok} subject(s) with at least {config.epochs.min_epochs_per_condition} "
        "matched ME and MaE epochs; 2 are needed",
    )
    effects = matching.cluster_effects(main, res, matched_data=ersp, label=_cluster_label)
    return {
        "matching": m,
        "min_count": report,
        "result": res,
        "block": matching.summary_block(m, report, info, effects),
    }


def planned_table(group: xr.Dataset, config: Config) -> pd.DataFrame:
    """The planned ROI x window x band contrasts of ``planned.tfr`` on the ERSP (dB), corrected
    within the family."""
    specs = [{**c.model_dump(), "measure": "ersp_db"} for c in config.planned_contrasts("tfr")]
    if not specs:
        return pd.DataFrame(columns=list(PLANNED_COLUMNS))
    return planned_contrasts(
        group["ersp"],
        specs,
        bands=config.bands,
        correction=config.planned.correction,
        alpha=config.stats.alpha,
    )


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


def run_mixed_models(trials: pd.DataFrame, config: Config) -> pd.DataFrame:
    """``power_db ~ condition (+ EMG)`` (maximal random effects) per band x ROI, ME vs MaE, FDR across band x ROI."""
    t = trials[trials["condition"].isin(["ME", "MaE"])]
    wide = t.pivot_table(index="epoch_id", columns=["band", "roi"], values="power_db")
    measures = [f"{b}__{r}" for b, r in wide.columns]
    wide.columns = measures
    extra = t.drop_duplicates("epoch_id").set_index("epoch_id")[
        ["subject", "condition"] + [c for c in (EMG_COVARIATE,) if c in t.columns]]  # fmt: skip
    wide = wide.join(extra).reset_index()
    out = []
    for covs in ((), (EMG_COVARIATE,)):
        if covs and (EMG_COVARIATE not in wide.columns or wide[EMG_COVARIATE].notna().sum() < 3):
            continue
        try:
            m = mixed_models_fdr(wide, measures, config=config, covariates=covs, reference="MaE")
        except ValueError as err:
            logger.warning("mixed models not fitted: %s", err)
            continue
        m.insert(0, "model", "power_db ~ condition" + "".join(f" + {c}" for c in covs) + " + "
                 + m["random_effects"])
        m.insert(1, "band", m["measure"].str.split("__").str[0])
        m.insert(2, "roi", m["measure"].str.split("__").str[1])
        out.append(m)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def _f(x: Any, fmt: str = ".3g") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(float(x), fmt)


def build_summary(
    config: Config,
    inputs: dict[str, Path],
    group: xr.Dataset,
    md: pd.DataFrame,
    clusters: dict[str, ClusterResult | None],
    models: pd.DataFrame,
    emg: pd.DataFrame,
    report: pd.DataFrame,
    failed: list[dict[str, str]],
    planned: pd.DataFrame | None = None,
    matched: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The summary.json content (``docs/summary-json.md``); ``planned``: :func:`planned_table`;
    ``matched``: :func:`emg_matched`."""
    summary = base_summary(ANALYSIS, config, inputs=inputs)
    subjects = [str(s) for s in group["subject"].values]
    summary["subjects"] = subjects
    summary["n_subjects"] = len(subjects)
    kept = ep_mod.included_rows(md[md["kept"]], report)
    summary["epochs_per_condition"] = {c: int((kept["condition"] == c).sum()) for c in tfr.CONDITIONS}
    summary["exclusions_by_reason"] = ep_mod.exclusion_counts(md)
    contrasts: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    flags = {e["cluster"]: e for e in (matched["block"]["effects"] if matched else [])}
    for name, res in clusters.items():
        if res is None:
            info[name] = {"tested": False}
            continue
        recs = (
            res.to_contrast_records(significant_only=False)
            if res.n_significant
            else res.to_contrast_records()
        )
        for rec in recs:
            if name == "ME-MaE" and rec.get("significant") and rec.get("cluster") in flags:
                f = flags[rec["cluster"]]
                rec.update(
                    survives_emg_matching=f["survives_emg_matching"],
                    matched_mean_diff=f["matched_mean_diff"],
                )
        contrasts.extend(recs)
        info[name] = {"tested": True, "n_subjects": res.n_subjects, "n_clusters": int(len(res.clusters)),
                      "n_significant": res.n_significant, "n_permutations": res.n_permutations, "exact": res.exact,
                      "threshold_t": res.threshold}  # fmt: skip
    for row in (models.to_dict(orient="records") if len(models) else []):
        if row["term"] != "ME - MaE":
            continue
        contrasts.append(make_contrast(
            "ME-MaE", kind="mixed_model", location=list(ROIS[row["roi"]]), time_s=list(tfr.DEFAULT_WINDOW),
            freq_hz=list(config.bands[row["band"]]), p=row["p_fdr"], effect_size=row["effect_size"],
            **model_fields(row), effect_size_name=row["effect_size_name"], correction=row["correction"],
            n=row["n_subjects"], ci_low=row["ci_low"], ci_high=row["ci_high"], estimate_db=row["estimate"],
            p_uncorrected=row["p"], model=row["model"], band=row["band"], roi=row["roi"], n_trials=row["n_trials"],
        ))  # fmt: skip
    for row in (emg.to_dict(orient="records") if len(emg) else []):
        contrasts.append(make_contrast(
            "ME-MaE", kind="emg", location=row["measure"], statistic=row["statistic"], p=row["p"],
            effect_size=row["cohen_dz"], statistic_name="t", effect_size_name="cohen_dz", correction="none",
            n=row["n_subjects"], ci_low=row["ci_low"], ci_high=row["ci_high"], measure=row["measure"],
        ))  # fmt: skip
    if matched is not None and matched["result"] is not None:
        for rec in matched["result"].to_contrast_records():
            rec.update(kind="cluster_emg_matched", emg_matching=matched["matching"].options)
            contrasts.append(rec)
    if planned is not None and len(planned):
        contrasts.extend(planned_records(planned, units="dB"))
    summary["contrasts"] = contrasts
    summary["results"] = {
        "method": group.attrs.get("method"),
        "freqs_hz": [float(f) for f in group["freq"].values],
        "n_cycles": group.attrs.get("n_cycles"),
        "edge_half_width_s": group.attrs.get("edge_half_width_s"),
        "epoch_padded_s": group.attrs.get("epoch_s"),
        "window_s": group.attrs.get("window_s"),
        "baseline_s": list(config.epochs.baseline) if config.epochs.baseline else None,
        "baseline_mode": "logratio",
        "itc_equalized": group.attrs.get("itc_equalized"),
        "rois": {k: list(v) for k, v in ROIS.items()},
        "clusters": info,
        "min_count_excluded": list(group.attrs.get("min_count_excluded", [])),
        "failed_subjects": failed,
        "emg_matched": None if matched is None else matched["block"],
        "planned": {
            "correction": config.planned.correction,
            "alpha": config.stats.alpha,
            "family_size": int(planned["family_size"].iloc[0])
            if planned is not None and len(planned)
            else 0,
            "names": [] if planned is None else [str(n) for n in planned["name"]],
        },
    }
    return summary




def _matched_test_line(test: Mapping[str, Any]) -> str:
    """The matched ME - MaE cluster test in one line (summary.md)."""
    name = cluster_test_name(test)
    sig = test.get("significant_clusters") or []
    if not sig:
        return f"no significant cluster (n = {test['n_subjects']}; {name})."
    parts = [
        f"cluster {c['cluster']} ({'+' if c['sign'] > 0 else '-'}) "
        f"{_f(c['freq_hz'][0])}-{_f(c['freq_hz'][1])} Hz, "
        f"{_f(c['time_s'][0], '.2f')}-{_f(c['time_s'][1], '.2f')} s, {c['n_sites']} channels, "
        f"{p_text(c['p'], test['n_permutations'])}"
        for c in sig
    ]
    return f"n = {test['n_subjects']}; {name}: " + "; ".join(parts) + "."


def build_markdown(summary: dict[str, Any]) -> str:
    """Short prose summary (summary.md)."""
    res = summary["results"]
    epc = summary["epochs_per_condition"]
    lines = [
        "# Time-frequency power: micro- vs macro-expressions", "",
        f"Configuration hash `{summary['config_hash']}`, seed {summary['seed']}; {res['method']} wavelets, "
        f"{len(res['freqs_hz'])} frequencies {res['freqs_hz'][0]:g}-{res['freqs_hz'][-1]:g} Hz; epochs padded to "
        f"{res['epoch_padded_s']} s (edge half-width {_f(res['edge_half_width_s'])} s) and cropped to {res['window_s']} s; "
        f"ERSP in dB re {res['baseline_s']} s; ITC on count-equalised epochs: {res['itc_equalized']}.", "",
        f"- **{summary['n_subjects']} subjects**; epochs: ME {epc.get('ME', 0)}, MaE {epc.get('MaE', 0)}, NE {epc.get('NE', 0)}.",
        "", "## Cluster-based permutation tests (channel x frequency x time)", "",
    ]  # fmt: skip
    for name, inf in res["clusters"].items():
        recs = [c for c in summary["contrasts"] if c["contrast"] == name and c["kind"] == "cluster" and c.get("significant")]
        if not inf.get("tested"):
            lines.append(f"- {name}: not tested.")
            continue
        test = cluster_test_name(inf)
        if not recs:
            lines.append(f"- {name}: no significant cluster (n = {inf['n_subjects']}; {test}).")
        for c in recs:
            chans = c.get("location") or []
            n_perm = c.get("n_permutations") or inf["n_permutations"]
            lines.append(f"- {name}: cluster {c['cluster']}, {_f(c['freq_hz'][0])}-{_f(c['freq_hz'][1])} Hz, "
                         f"{_f(c['time_s'][0], '.2f')}-{_f(c['time_s'][1], '.2f')} s, {len(chans)} channels "
                         f"({', '.join(chans[:12])}{' ...' if len(chans) > 12 else ''}), mass {_f(c['statistic'], '.1f')}, "
                         f"{test}: {p_text(c['p'], n_perm)}, "
                         f"dz = {_f(c['effect_size'], '.2f')} (descriptive).")  # fmt: skip
    lines += planned_markdown(
        [c for c in summary["contrasts"] if c["kind"] == "planned"],
        title="Planned contrasts, beside the cluster test",
    )
    lines += matching.markdown_lines(res.get("emg_matched"), _matched_test_line, what="cluster")
    mm = [c for c in summary["contrasts"] if c["kind"] == "mixed_model" and "emg" not in c["model"]
          and c["p"] is not None and c["p"] < 0.05]  # fmt: skip
    lines += ["", "## Mixed models, ME - MaE band power (0-1 s), FDR across bands x ROIs", ""]
    lines += [f"- {c['band']} {c['roi']}: {_f(c['estimate_db'], '.2f')} dB, t({_f(c['df'], '.0f')}) = "
              f"{_f(c['statistic'], '.2f')}, {p_text(c['p'], name='p_FDR')} ({c['test']}); subject-level paired "
              f"t({_f(c['subject_level_test']['df'], '.0f')}) = {_f(c['subject_level_test']['t'], '.2f')}, "
              f"{p_text(c['subject_level_test']['p'])} (uncorrected)"
              for c in mm] or ["- none significant after FDR."]  # fmt: skip
    lines += ["", "Figures: `tfr_rois_me_vs_mae` (cluster contours), `tfr_rois_me_vs_ne`, `band_topomaps_me_vs_mae`, "
              "`band_timecourses` (95 % CI), `emg_beta_gamma` (EMG beside beta/gamma at temporal channels).", ""]  # fmt: skip
    return "\n".join(lines)


def make_figures(
    group: xr.Dataset,
    bands: xr.DataArray,
    clusters: dict[str, ClusterResult | None],
    trials: pd.DataFrame,
    emg: pd.DataFrame,
    config: Config,
    planned: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """All figures, by output name (not yet saved); ``planned`` windows are shaded on
    ``band_timecourses``."""
    figs: dict[str, Any] = {}
    for a, b in CONTRASTS:
        if b in group["condition"].values:
            ax = vtfr.plot_tfr_contrast_rois(group["ersp"], ROIS, (a, b), cluster=clusters.get(f"{a}-{b}"))
            figs[f"tfr_rois_{a.lower()}_vs_{b.lower()}"] = ax[0].figure
    figs["band_topomaps_me_vs_mae"] = vtfr.plot_band_topomaps(bands, TOPO_WINDOWS, cluster=clusters.get("ME-MaE"),
                                                              bands_hz=config.bands,
                                                              band_names=[b for b in TOPO_BANDS if b in bands["band"].values])[0][0].figure  # fmt: skip
    figs["band_timecourses"] = vtfr.plot_band_timecourses(bands, ROIS, planned=planned)[0][0].figure
    figs["emg_beta_gamma"] = vtfr.plot_emg_beside_bands(bands, trials, config.emg.temporal_channels, tests=emg)[0].figure
    return figs


def first_level_step(config: Config, method: str = "morlet") -> Step:
    """The per-subject step of this analysis (:func:`mmme_neuro.tfr.first_level`; stage ``tfr-<method>``).

    :func:`run` runs it; ``mmme-neuro run`` runs it with the other analyses'
    steps as one task graph first (:func:`mmme_neuro.pipeline.run_steps`).
    """
    params = {"method": method, "rois": ROIS}
    return Step(tfr.first_level, f"tfr-{method}", steps.step_config(config), params,
                steps.tfr_upstream(config, method))


def run(config: Config, out_dir: Path, *, method: str = "morlet", progress: bool = True) -> dict[str, Any]:
    """Run the analysis into ``out_dir``; return the summary written to summary.json."""
    bids_root = prepare_bids(config, progress=progress)
    step = run_steps([first_level_step(config, method)], bids_root, progress=progress)[f"tfr-{method}"]
    step.require(2)
    results, failed = list(step.results.values()), step.failed
    t_group = time.perf_counter()
    deriv = derivatives_root(bids_root, config)
    for s, r in sorted(step.results.items()):  # MNE objects for MNE users: power and ITC per condition
        tfr.write_tfr_derivative(r["tfr"], derivative_paths(deriv, s)["tfr"])
    md = pd.concat([r["epochs"] for r in results], ignore_index=True) if results else pd.DataFrame()
    group, report = group_tfr([r["tfr"] for r in results], md, config)
    clusters = cluster_tests(group["ersp"], CONTRASTS, config=config, n_jobs=group_jobs(config))
    matched = emg_matched(group, md, clusters.get("ME-MaE"), config, n_jobs=group_jobs(config))
    # the matched power is in the first level's results; the netCDF keeps its ERSP only (the file
    # stays ~1.2x)
    keep = group.drop_vars([v for v in ("power_emg_matched",) if v in group])
    save_netcdf(keep, out_dir / "tfr.nc")
    for a, b in CONTRASTS:
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
    trials = ep_mod.included_rows(pd.concat([r["trials"] for r in results], ignore_index=True), report)
    write_csv(trials, out_dir / "band_power_trials.csv")
    models = run_mixed_models(trials, config)
    write_csv(models, out_dir / "mixed_models.csv")
    kept = ep_mod.included_rows(md[md["kept"]], report)
    measures = [m for m in EMG_MEASURES if m in kept.columns and kept[m].notna().any()]
    emg = paired_test(kept, measure=measures, contrast=("ME", "MaE"), config=config) if measures else pd.DataFrame()
    write_csv(emg, out_dir / "emg_confound.csv")
    write_csv(md, out_dir / "epochs.csv")
    write_csv(report, out_dir / "min_count.csv")
    bands = tfr.band_average(group["ersp"], config=config)
    for name, fig in make_figures(group, bands, clusters, kept, emg, config, planned).items():
        save_figure(fig, out_dir / name, FIGURE_FORMATS)
    inputs = {"participants": Path(bids_root) / "participants.tsv"}
    inputs = {k: v for k, v in inputs.items() if v.is_file()}
    summary = build_summary(
        config, inputs, group, md, clusters, models, emg, report, failed, planned, matched
    )
    lost = failed_exclusions(bids_root, failed)
    if len(lost):  # the coded expressions of failed subjects, with why (written only then: clean outputs unchanged)
        write_csv(analysis_exclusions(bids_root, sorted(set(md["subject"].astype(str))), failed),
                  out_dir / "exclusions.csv")  # fmt: skip
        summary["exclusions_by_reason"] = ep_mod.exclusion_counts(md, lost)
    write_summary(out_dir, summary, build_markdown(summary))
    write_timing(out_dir, step, t_group)
    logger.info("%s: %d subjects -> %s", ANALYSIS, summary["n_subjects"], os.fspath(out_dir))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 success, 1 invalid input or configuration)."""
    parser = build_parser(__doc__.split("\n", 1)[0], analysis=ANALYSIS)
    parser.add_argument("--method", choices=tfr.METHODS, default="morlet", help="time-frequency decomposition")
    args = parser.parse_args(argv)
    return run_script(args, lambda config, out_dir: run(config, out_dir, method=args.method, progress=args.verbose > 0))


if __name__ == "__main__":
    sys.exit(main())
