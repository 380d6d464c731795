"""PLV functional networks of micro- vs macro-expressions (and no-expression controls): nodal efficiency, NBS, global metrics.

``python -m analyses.network_nodal_efficiency [--bids-root PATH] [--config FILE] [--out DIR] [--scale ...] [--null]``

Per subject (in parallel and cached, :func:`mmme_neuro.netanalysis.first_level`
run by :func:`mmme_neuro.pipeline.run_steps`): epochs ME, MaE and NE cut long enough for the wavelets
(:func:`mmme_neuro.netanalysis.network_config`), within-epoch PLV per band in
0-1.2 s after onset (n_cycles = f), averaged over count-equalised epochs
(:func:`mmme_neuro.netanalysis.subject_connectivity`); binary graphs over
densities 5-50 % (:func:`mmme_neuro.netanalysis.subject_graph_metrics`).
Over subjects (minimum-count rule applied): per-node sign-flip permutation
tests of nodal-efficiency AUC per band (max-stat and FDR) on the subject means
of per-epoch nodal efficiency over every kept epoch
(:func:`mmme_neuro.netanalysis.epoch_metric_means`: not biased by the epoch
count, so no epoch is discarded; more sensitive than the metrics of the
equalised mean network, which are kept for the global tests), NBS on edges,
paired tests of global efficiency, clustering and path length AUC, and
trial-level mixed models of nodal efficiency with the EMG covariate. Writes
to ``--out`` (default ``figures/network_nodal_efficiency/``):
``connectivity.nc``, ``graph_metrics.nc``, ``nodal_efficiency_epochs.nc``, CSV tables (``nodal_<a>_vs_<b>``,
``nbs_components_*``, ``nbs_edges_*``, ``global_tests``, ``global_metrics``,
``trial_efficiency``, ``mixed_models``, ``epochs``, ``min_count``), figures
(``topomaps_<a>_vs_<b>``, ``nbs_<a>_vs_<b>``: the significant NBS edges on a glass brain per
band, ``density_curves``), interactive 3-D views ``nbs_<a>_vs_<b>_<band>_3d.html`` (nilearn;
~3 MB each, not committed) and ``summary.json`` / ``summary.md``. Into the study's derivatives,
per subject, ``sub-XX/eeg/sub-XX_task-mmme_desc-<condition>_conn.nc``: its networks as
mne-connectivity objects (:func:`mne_connectivity.read_connectivity`). Beside the node tests: the planned contrasts of
``planned.network`` (nodal efficiency averaged over their nodes, paired t-tests,
``planned.csv``) and, with ``emg_matching.method`` not ``"off"`` (default
``"nearest"``), the node tests repeated on the EMG-matched ME and MaE epochs
(``nodal_me_vs_mae_emg_matched.csv``, ``emg_matching.csv``) with
``survives_emg_matching`` on every significant ME - MaE node.
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

from analyses._common import build_parser, run_script, write_csv, write_timing
from mmme_neuro import epochs as ep_mod
from mmme_neuro import matching, steps
from mmme_neuro import netanalysis as na
from mmme_neuro._utils import atomic_write_text
from mmme_neuro.config import Config
from mmme_neuro.containers import save_netcdf
from mmme_neuro.dataset import analysis_exclusions, failed_exclusions, prepare_bids
from mmme_neuro.pipeline import Step, derivative_paths, derivatives_root, run_steps
from mmme_neuro.reporting import (
    base_summary,
    make_contrast,
    p_text,
    planned_markdown,
    planned_records,
    write_summary,
)
from mmme_neuro.stats import PLANNED_COLUMNS, mixed_model, planned_contrasts
from mmme_neuro.viz import network as vnet
from mmme_neuro.viz.style import save_figure

ANALYSIS = "network_nodal_efficiency"
FIGURE_FORMATS: tuple[str, ...] = ("png", "pdf")
CONTRASTS: tuple[tuple[str, str], ...] = (("ME", "MaE"), ("ME", "NE"))
#: Primary ``|t|`` threshold of the NBS.
NBS_THRESHOLD = 3.0
EMG_COVARIATE = "emg_rms_uv"

logger = logging.getLogger(f"analyses.{ANALYSIS}")


def apply_min_count(conn: xr.DataArray, md: pd.DataFrame, config: Config) -> tuple[xr.DataArray, pd.DataFrame]:
    """NaN where a subject has fewer clean epochs of a condition than ``epochs.min_epochs_per_condition``."""
    _, report = ep_mod.apply_min_count(md, config, conditions=na.CONDITIONS)
    out = conn.copy()
    for row in report[~report["included"]].itertuples():
        if row.subject in out["subject"].values and row.condition in out["condition"].values:
            out.loc[{"subject": row.subject, "condition": row.condition}] = np.nan
    return out, report


def emg_matched(
    per_epoch: Sequence[xr.Dataset],
    md: pd.DataFrame,
    main: pd.DataFrame,
    config: Config,
) -> dict[str, Any] | None:
    """The node tests of ME - MaE repeated on the EMG-matched epochs (None when matching is off).

    The per-epoch nodal efficiency is stored by the first level, so the matched
    subject means are computed here from the matched epochs
    (:func:`mmme_neuro.matching.matched_epochs`, minimum-count rule on them).

    Returns
    -------
    matched : dict | None
        ``matching``, ``min_count``, ``metrics`` (matched subject means), ``table``
        (:func:`mmme_neuro.netanalysis.nodal_contrasts` or None when untestable) and
        ``block`` (``results.emg_matched``).
    """
    got = matching.matched_epochs(md, config, ("ME", "MaE"))
    if got is None:
        return None
    m, md_m, report = got
    metrics = na.epoch_metric_means(per_epoch, config, metadata=md_m, conditions=("ME", "MaE"))
    ok = xr.DataArray(
        np.zeros((metrics.sizes["subject"], 2), dtype=bool),
        dims=("subject", "condition"),
        coords={"subject": metrics["subject"], "condition": metrics["condition"]},
    )
    for row in report[report["included"]].itertuples():
        if row.subject in ok["subject"].values:
            ok.loc[{"subject": row.subject, "condition": row.condition}] = True
    metrics = metrics.where(ok)
    try:
        table = na.nodal_contrasts(metrics, ("ME", "MaE"), config)
    except ValueError as err:
        logger.warning("EMG-matched node tests not run: %s", err)
        table = None
    n_ok = int(ok.all("condition").sum())
    if table is None:
        info: dict[str, Any] = {
            "tested": False,
            "reason": f"{n_ok} subject(s) with at least "
            f"{config.epochs.min_epochs_per_condition} matched ME and MaE epochs; 2 are needed",
        }
    else:
        first = table.iloc[0]
        info = {
            "tested": True,
            "test": "paired sign-flip permutation t-test per node, max-statistic FWER per band",
            "n_subjects": int(first["n_subjects"]),
            "n_permutations": int(first["n_permutations"]),
            "exact": bool(first["exact"]),
            "significant_nodes": {
                str(b): sub.loc[sub["significant"], "node"].tolist()
                for b, sub in table.groupby("band", sort=False)
            },
            "p_maxstat": {
                f"{r['band']}:{r['node']}": float(r["p_maxstat"])
                for r in table[table["significant"]].to_dict(orient="records")
            },
        }
    surv = matching.node_survival(main, table, alpha=config.stats.alpha)
    effects = []
    for r in surv.to_dict(orient="records"):
        flag = r["survives_emg_matching"]
        flag = None if flag is None or (isinstance(flag, float) and np.isnan(flag)) else bool(flag)
        label = f"{r['band']} {r['node']} (t = {r['t']:.2f}, {r['criterion']})"
        if flag is not None and np.isfinite(r["matched_t"]):
            label += f": matched t = {r['matched_t']:.2f}"
        effects.append(
            {
                "contrast": "ME-MaE",
                "kind": "node",
                **r,
                "survives_emg_matching": flag,
                "label": label,
            }
        )
    return {
        "matching": m,
        "min_count": report,
        "metrics": metrics,
        "table": table,
        "block": matching.summary_block(m, report, info, effects),
    }


def planned_table(node_metrics: xr.Dataset, config: Config) -> pd.DataFrame:
    """The planned contrasts of ``planned.network`` on the subject means of nodal efficiency,
    corrected within the family."""
    specs = [c.model_dump() for c in config.planned_contrasts("network")]
    if not specs:
        return pd.DataFrame(columns=list(PLANNED_COLUMNS))
    return planned_contrasts(
        node_metrics,
        specs,
        bands=config.bands,
        correction=config.planned.correction,
        alpha=config.stats.alpha,
    )


def _matched_test_line(test: Mapping[str, Any]) -> str:
    """The matched node tests in one line (summary.md)."""
    exact = " (exact)" if test.get("exact") else ""
    n_perm = test["n_permutations"]
    head = f"n = {test['n_subjects']}; max-statistic sign-flip test, {n_perm} permutations{exact}"
    ps = test.get("p_maxstat") or {}
    if not ps:
        return f"{head}: no significant node."
    return (
        f"{head}: "
        + ", ".join(f"{k} {p_text(p, test['n_permutations'])}" for k, p in ps.items())
        + "."
    )


#: Columns of a condition term in ``results.mixed_models``: the trial-level model and, beside it,
#: the subject-level paired t-test of the same contrast.
MODEL_COLUMNS = ("model", "band", "roi", "estimate", "t", "df", "p", "effect_size", "test", "random_effects",
                 "converged", "paired_t", "paired_df", "paired_p", "paired_n_subjects")


def run_mixed_models(trials: pd.DataFrame) -> pd.DataFrame:
    """``efficiency ~ condition [+ emg_rms_uv]`` (maximal random effects), ME vs MaE, per band and measure."""
    rows = []
    for (band, measure), sub in trials.melt(
        id_vars=[c for c in trials.columns if c not in ("global_efficiency_auc", "nodal_efficiency_auc")],
        var_name="measure", value_name="value",
    ).groupby(["band", "measure"], sort=False):  # fmt: skip
        if sub["value"].notna().sum() < 10:
            continue
        for covs in ((), (EMG_COVARIATE,)):
            if covs and (EMG_COVARIATE not in sub.columns or sub[EMG_COVARIATE].notna().sum() < 3):
                continue
            try:
                t = mixed_model(sub, measure="value", covariates=covs, reference="MaE", conditions=("ME", "MaE"))
            except ValueError as err:
                logger.warning("mixed model %s/%s not fitted: %s", band, measure, err)
                continue
            t.insert(0, "model", f"{measure} ~ condition" + "".join(f" + {c}" for c in covs) + " + "
                     + t["random_effects"].iloc[0])
            t.insert(1, "band", band)
            t.insert(2, "efficiency", measure)
            t.insert(3, "roi", sub["roi"].iloc[0])
            rows.append(t)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def build_summary(
    config: Config,
    inputs: dict[str, Path],
    conn: xr.DataArray,
    md: pd.DataFrame,
    report: pd.DataFrame,
    nodal: dict[str, pd.DataFrame],
    nbs: dict[str, dict[str, na.NBSResult]],
    glob: pd.DataFrame,
    models: pd.DataFrame,
    failed: list[dict[str, str]],
    planned: pd.DataFrame | None = None,
    matched: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The summary.json content (``docs/summary-json.md``); ``planned``: :func:`planned_table`;
    ``matched``: :func:`emg_matched`."""
    summary = base_summary(ANALYSIS, config, inputs=inputs)
    subjects = [str(s) for s in conn["subject"].values]
    summary["subjects"] = subjects
    summary["n_subjects"] = len(subjects)
    kept = md[md["kept"]]
    summary["epochs_per_condition"] = {c: int((kept["condition"] == c).sum()) for c in na.CONDITIONS}
    summary["exclusions_by_reason"] = ep_mod.exclusion_counts(md)
    bands = {b: list(v) for b, v in config.bands.items()}
    window = list(na.DEFAULT_WINDOW)
    contrasts: list[dict[str, Any]] = []
    sig_nodes: dict[str, dict[str, list[str]]] = {}
    flags = {(e["band"], e["node"]): e for e in (matched["block"]["effects"] if matched else [])}
    for name, tab in nodal.items():
        sig_nodes[name] = {}
        for row in tab[tab["significant"] | tab["significant_fdr"]].to_dict(orient="records"):
            extra = {}
            if name == "ME-MaE" and (row["band"], row["node"]) in flags:
                f = flags[(row["band"], row["node"])]
                extra = {
                    "survives_emg_matching": f["survives_emg_matching"],
                    "matched_t": f["matched_t"],
                }
            contrasts.append(make_contrast(
                name, kind="node", location=row["node"], time_s=window, freq_hz=bands[row["band"]],
                statistic=row["t"], p=row["p_maxstat"], effect_size=row["cohen_dz"], statistic_name="t",
                effect_size_name="cohen_dz", correction="maxstat", p_fdr=row["p_fdr"], p_uncorrected=row["p"],
                significant=bool(row["significant"]), significant_fdr=bool(row["significant_fdr"]),
                band=row["band"], measure=row["measure"], n=row["n_subjects"], ci_low=row["ci_low"], ci_high=row["ci_high"],
                df=row["df"], n_permutations=row["n_permutations"], exact=bool(row["exact"]),
                **extra,
            ))  # fmt: skip
        for band, sub in tab.groupby("band", sort=False):
            sig_nodes[name][str(band)] = sub.loc[sub["significant"], "node"].tolist()
    nbs_info: dict[str, Any] = {}
    for name, per_band in nbs.items():
        nbs_info[name] = {}
        for band, res in per_band.items():
            nbs_info[name][band] = {"n_components": int(len(res.components)), "n_significant": res.n_significant,
                                    "threshold_t": res.threshold, "n_permutations": res.n_permutations,
                                    "exact": res.exact, "n_subjects": res.n_subjects}  # fmt: skip
            for row in res.components[res.components["significant"]].to_dict(orient="records"):
                edges = res.edges[res.edges["component"] == row["component"]]
                contrasts.append(make_contrast(
                    name, kind="nbs_component", location=row["nodes"].split(","), time_s=window, freq_hz=bands[band],
                    statistic=row["n_edges"], p=row["p"], effect_size=row["mean_dz"], statistic_name="component_size_edges",
                    effect_size_name="mean_cohen_dz", correction="nbs_fwer", band=band, direction=row["direction"],
                    n=res.n_subjects, edges=[f"{a}-{b}" for a, b in zip(edges["node"], edges["node_other"], strict=True)],
                    max_t=row["max_t"], significant=True,
                ))  # fmt: skip
    for row in glob.to_dict(orient="records"):
        contrasts.append(make_contrast(
            row["contrast"], kind="global", location=row["measure"], time_s=window, freq_hz=bands[row["band"]],
            statistic=row["statistic"], p=row["p"], effect_size=row["cohen_dz"], statistic_name="t",
            effect_size_name="cohen_dz", correction="none", p_fdr=row["p_fdr_all"], band=row["band"],
            n=row["n_subjects"], ci_low=row["ci_low"], ci_high=row["ci_high"],
            df=row["df"], test=row["test"],
        ))  # fmt: skip
    mtab = None if matched is None else matched["table"]
    for row in [] if mtab is None else mtab[mtab["significant"]].to_dict(orient="records"):
        contrasts.append(
            make_contrast(
                "ME-MaE",
                kind="node_emg_matched",
                location=row["node"],
                time_s=window,
                freq_hz=bands[row["band"]],
                statistic=row["t"],
                p=row["p_maxstat"],
                effect_size=row["cohen_dz"],
                statistic_name="t",
                effect_size_name="cohen_dz",
                correction="maxstat",
                p_fdr=row["p_fdr"],
                p_uncorrected=row["p"],
                significant=True,
                band=row["band"],
                measure=row["measure"],
                n=row["n_subjects"],
                df=row["df"],
                ci_low=row["ci_low"],
                ci_high=row["ci_high"],
                n_permutations=row["n_permutations"],
                exact=bool(row["exact"]),
                emg_matching=matched["matching"].options,
            )
        )
    if planned is not None and len(planned):
        contrasts.extend(planned_records(planned, units="1"))
    summary["contrasts"] = contrasts
    summary["results"] = {
        "window_s": window,
        "estimator": "within-epoch PLV, mean over count-equalised epochs",
        "n_cycles": f"{na.N_CYCLES_PER_HZ:g} x f (sigma_f = 1 Hz; avoids alpha leaking into theta)",
        "epochs_s": [config.epochs.tmin, config.epochs.tmax],
        "densities": list(config.network.densities()),
        "alpha": config.stats.alpha,
        "significant_nodes_maxstat": sig_nodes,
        "nbs": nbs_info,
        "mixed_models": models[models["term"].eq("ME - MaE")][list(MODEL_COLUMNS)].to_dict(
            orient="records"
        )
        if len(models)
        else [],
        "min_count_excluded": [
            f"{r.subject}:{r.condition} ({r.reason})"
            for r in report[~report["included"]].itertuples()
        ],
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


def _f(x: Any, fmt: str = ".3g") -> str:
    missing = x is None or (isinstance(x, float) and not np.isfinite(x))
    return "n/a" if missing else format(float(x), fmt)



def build_markdown(summary: dict[str, Any]) -> str:
    """Short prose summary (summary.md)."""
    res = summary["results"]
    epc = summary["epochs_per_condition"]
    lines = [
        "# Functional networks (PLV): micro- vs macro-expressions",
        "",
        f"Configuration hash `{summary['config_hash']}`, seed {summary['seed']}; within-epoch PLV in "
        f"{res['window_s'][0]}-{res['window_s'][1]} s after onset, wavelets {res['n_cycles']}, binary graphs at "
        f"densities {res['densities'][0]:.2f}-{res['densities'][-1]:.2f}.",
        "",
        f"- **{summary['n_subjects']} subjects**; epochs: ME {epc.get('ME', 0)}, MaE {epc.get('MaE', 0)}, NE {epc.get('NE', 0)}.",
        "",
        "## Nodal efficiency AUC, mean over all kept epochs (per-node sign-flip permutation tests, max-stat FWER per band)",
        "",
    ]
    for name, per_band in res["significant_nodes_maxstat"].items():
        for band, nodes in per_band.items():
            recs = {c["location"]: c for c in summary["contrasts"]
                    if c["kind"] == "node" and c["contrast"] == name and c["band"] == band
                    and c.get("significant")}  # fmt: skip
            if not nodes:
                lines.append(f"- {name}, {band}: no significant node.")
            elif all(n in recs and recs[n].get("n_permutations") for n in nodes):
                n_perm = recs[nodes[0]]["n_permutations"]
                exact = " (exact)" if recs[nodes[0]].get("exact") else ""
                ps = ", ".join(f"{n} {p_text(recs[n]['p'], recs[n]['n_permutations'])}" for n in nodes)
                lines.append(f"- {name}, {band} (max-statistic sign-flip test, {n_perm} "
                             f"permutations{exact}): {ps}.")  # fmt: skip
            else:  # a summary without the permutation counts: the nodes only
                lines.append(f"- {name}, {band}: {', '.join(nodes)}.")
    lines += planned_markdown(
        [c for c in summary["contrasts"] if c["kind"] == "planned"],
        title="Planned contrasts, beside the node tests",
    )
    lines += matching.markdown_lines(res.get("emg_matched"), _matched_test_line, what="node")
    lines += ["", "## Network-based statistic (edges, |t| > threshold; component size FWER-corrected)",
              ""]  # fmt: skip
    for name, per_band in res["nbs"].items():
        for band, info in per_band.items():
            n_perm = info["n_permutations"]
            exact = " (exact)" if info.get("exact") else ""
            pvals = [p_text(c["p"], n_perm) for c in summary["contrasts"]
                     if c["kind"] == "nbs_component" and c["contrast"] == name
                     and c["band"] == band]  # fmt: skip
            sig = f"; significant components: {', '.join(pvals)}" if pvals else ""
            lines.append(f"- {name}, {band}: {info['n_significant']} significant of "
                         f"{info['n_components']} components (NBS, {n_perm} sign-flip "
                         f"permutations{exact}{sig}).")  # fmt: skip
    lines += ["", "## Global metrics (AUC), paired t-tests (uncorrected p)", ""]
    for c in summary["contrasts"]:
        if c["kind"] == "global":
            df = c.get("df")
            df = c["n"] - 1 if df is None and c.get("n") else df
            lines.append(f"- {c['contrast']} {c['band']} {c['location']}: paired t({_f(df, '.0f')}) = "
                         f"{_f(c['statistic'], '.2f')}, {p_text(c['p'])}, "
                         f"dz = {_f(c['effect_size'], '.2f')}.")  # fmt: skip
    lines.append("")
    return "\n".join(lines)


def first_level_step(config: Config) -> Step:
    """The per-subject step of this analysis (:func:`mmme_neuro.netanalysis.first_level` on the shared preprocessing pass).

    It pads the epochs for its wavelets itself, cropping the shared pass. The
    per-epoch networks stay on disk: the group level reads their graph
    metrics (memory flat in subjects). :func:`run` runs it; ``mmme-neuro
    run`` runs it with the other analyses' steps as one task graph first.
    """
    return Step(
        na.first_level,
        "network",
        steps.step_config(config, (*steps.GROUP_ONLY_SECTIONS, "emg_matching")),
        upstream=steps.upstream(config),
        load=("connectivity", "epoch_metrics", "epochs"),
    )


def run(config: Config, out_dir: Path, *, progress: bool = True) -> dict[str, Any]:
    """Run the analysis into ``out_dir``; return the summary written to summary.json."""
    bids_root = prepare_bids(config, progress=progress)
    step = run_steps([first_level_step(config)], bids_root, progress=progress)["network"]
    config = na.network_config(config)
    step.require(2)
    failed = step.failed
    t_group = time.perf_counter()
    conns = {s: r["connectivity"] for s, r in step.results.items()}
    deriv = derivatives_root(bids_root, config)
    for s, c in sorted(conns.items()):  # mne-connectivity objects for MNE users, per condition
        paths = derivative_paths(deriv, s)
        na.write_connectivity_derivatives(c, config.bands, lambda cond, p=paths: p[f"connectivity_{cond}"])
    per_epoch = [r["epoch_metrics"] for r in step.results.values()]
    md = pd.concat([r["epochs"] for r in step.results.values()], ignore_index=True)
    conn, report = apply_min_count(na.stack_subjects(conns), md, config)
    save_netcdf(conn, out_dir / "connectivity.nc")
    metrics = na.subject_graph_metrics(conn, config)
    save_netcdf(metrics, out_dir / "graph_metrics.nc")
    write_csv(na.global_table(metrics), out_dir / "global_metrics.csv")
    # node-wise tests: mean of per-epoch nodal efficiency over every kept epoch (not biased by the count,
    # so no epoch is discarded), with the same subjects x conditions as the networks (minimum-count rule)
    included = conn.notnull().any(("band", "node", "node_other"))
    node_metrics = na.epoch_metric_means(per_epoch, config, metadata=md).where(included)
    save_netcdf(node_metrics, out_dir / "nodal_efficiency_epochs.nc")

    nodal, nbs, glob = {}, {}, []
    for a, b in CONTRASTS:
        name = f"{a}-{b}"
        nodal[name] = na.nodal_contrasts(node_metrics, (a, b), config)
        write_csv(nodal[name], out_dir / f"nodal_{a.lower()}_vs_{b.lower()}.csv")
        nbs[name] = {str(band): na.network_based_statistic(conn.sel(band=band), (a, b), config, threshold=NBS_THRESHOLD)
                     for band in conn["band"].values}  # fmt: skip
        write_csv(pd.concat([r.components.assign(band=k) for k, r in nbs[name].items()], ignore_index=True),
                   out_dir / f"nbs_components_{a.lower()}_vs_{b.lower()}.csv")  # fmt: skip
        write_csv(pd.concat([r.edges.assign(band=k) for k, r in nbs[name].items()], ignore_index=True),
                   out_dir / f"nbs_edges_{a.lower()}_vs_{b.lower()}.csv")  # fmt: skip
        glob.append(na.global_contrasts(metrics, (a, b), config))
    glob_df = pd.concat(glob, ignore_index=True)
    write_csv(glob_df, out_dir / "global_tests.csv")

    matched = emg_matched(per_epoch, md, nodal["ME-MaE"], config)
    if matched is not None:
        write_csv(matched["matching"].report, out_dir / "emg_matching.csv")
        mt = matched["table"]
        if mt is not None:
            surv = {
                (e["band"], e["node"]): e["survives_emg_matching"]
                for e in matched["block"]["effects"]
            }
            nodal["ME-MaE"] = nodal["ME-MaE"].assign(
                survives_emg_matching=[
                    surv.get((b, n))
                    for b, n in zip(nodal["ME-MaE"]["band"], nodal["ME-MaE"]["node"], strict=True)
                ]
            )
            write_csv(nodal["ME-MaE"], out_dir / "nodal_me_vs_mae.csv")
        write_csv(
            mt if mt is not None else pd.DataFrame(), out_dir / "nodal_me_vs_mae_emg_matched.csv"
        )
    planned = planned_table(node_metrics, config)
    write_csv(planned, out_dir / "planned.csv")

    roi = {band: sub.loc[sub["significant"], "node"].tolist() for band, sub in nodal["ME-MaE"].groupby("band")}
    trials = pd.concat([na.trial_metric_table(pe, md, config, nodes=roi) for pe in per_epoch], ignore_index=True)
    write_csv(trials, out_dir / "trial_efficiency.csv")
    models = run_mixed_models(trials)
    write_csv(models, out_dir / "mixed_models.csv")
    write_csv(md, out_dir / "epochs.csv")
    write_csv(report, out_dir / "min_count.csv")

    nodes = [str(n) for n in conn["node"].values]
    for a, b in CONTRASTS:
        name = f"{a}-{b}"
        save_figure(
            vnet.plot_nodal_topomaps(node_metrics, (a, b), nodal[name], planned=planned),
            out_dir / f"topomaps_{a.lower()}_vs_{b.lower()}",
            FIGURE_FORMATS,
        )
        edges = pd.concat([r.significant_edges().assign(band=k) for k, r in nbs[name].items()], ignore_index=True)
        title = f"NBS {name}: " + (", ".join(f"{k} {int((edges['band'] == k).sum())}" for k in edges["band"].unique()) or "no significant edge")
        save_figure(vnet.plot_connectome(edges, nodes, title=title, bands=list(nbs[name])),
                    out_dir / f"nbs_{a.lower()}_vs_{b.lower()}", FIGURE_FORMATS)  # fmt: skip
        for band, sub in edges.groupby("band", sort=True):  # interactive 3-D views (~3 MB each: not committed)
            view = vnet.view_connectome(sub, nodes, title=f"NBS {name}, {band}: {len(sub)} edges (t)")
            atomic_write_text(out_dir / f"nbs_{a.lower()}_vs_{b.lower()}_{band}_3d.html", view.get_standalone())
    save_figure(vnet.plot_density_curves(metrics, "global_efficiency"), out_dir / "density_curves", FIGURE_FORMATS)

    inputs = {"participants": Path(bids_root) / "participants.tsv"}
    inputs = {k: v for k, v in inputs.items() if v.is_file()}
    summary = build_summary(
        config, inputs, conn, md, report, nodal, nbs, glob_df, models, failed, planned, matched
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
    args = parser.parse_args(argv)
    return run_script(args, lambda config, out_dir: run(config, out_dir, progress=args.verbose > 0))


if __name__ == "__main__":
    sys.exit(main())
