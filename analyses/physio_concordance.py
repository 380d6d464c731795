"""Expression-physiology concordance: event-related HR, EDA and respiration, Zou et al. windows, brain-body coupling.

``python -m analyses.physio_concordance [--bids-root PATH] [--config FILE] [--out DIR] [--scale ...] [--null] [--eeg-trials CSV]``

Per subject (in parallel and cached, :func:`mmme_neuro.concordance.first_level`
run by :func:`mmme_neuro.pipeline.run_steps`): physiology processed (:func:`mmme_neuro.physio.process_physio`,
poor segments flagged and excluded), events ME, MaE, NE (drawn like the EEG
NE epochs) and clip onsets (:func:`mmme_neuro.physio.session_events`),
baseline-corrected time courses and per-epoch features, and the features of
the 2-10 s post-onset windows (:func:`mmme_neuro.concordance.window_features`).
Over subjects: mixed models and repeated-measures correlations with FDR over
windows x features, SCR/HR timing vs the NE chance rate, and, when per-epoch
EEG measures are given (``--eeg-trials``; by default the ERP analysis'
``components.csv`` in the same output root, ``<out>/../erp_me_vs_mae/``), the
brain-body coupling model. The group time courses (heart rate, EDA,
respiration) and the heart-rate and respiration averages use clean-baseline
epochs (no expression onset in the 8 s before): responses of expressions 2.5 s
apart overlap otherwise (EDA over all events hid the MaE skin-conductance
response: the previous response decays through the baseline).

Writes to ``--out`` (default ``figures/physio_concordance/``):
``physio_timecourses.nc`` ``(subject, condition, signal, time)``; CSV
``epoch_features``, ``window_features``, ``concordance``, ``scr_rates``,
``quality`` (per subject x signal x reason), ``brain_body`` (if EEG),
``exclusions`` (only when a subject failed, e.g. it has no physiology
recording: every coded expression of the study's subjects that is not
analysed, the failed subject's with the failure); figures
``timecourses``, ``concordance_me_vs_mae``, ``concordance_me_vs_ne``,
``latencies``, ``brain_body``; ``summary.json`` and ``summary.md``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analyses._common import build_parser, run_script, write_csv, write_timing
from mmme_neuro import concordance as co
from mmme_neuro import physio as ph
from mmme_neuro.config import Config
from mmme_neuro.containers import save_netcdf
from mmme_neuro.dataset import analysis_exclusions, failed_exclusions, prepare_bids
from mmme_neuro.pipeline import Step, run_steps
from mmme_neuro.reporting import base_summary, format_p, make_contrast, model_fields, write_summary
from mmme_neuro.stats import mixed_model
from mmme_neuro.viz import physio as vph
from mmme_neuro.viz.style import save_figure

ANALYSIS = "physio_concordance"
FIGURE_FORMATS: tuple[str, ...] = ("png", "pdf")
CLEAN_BASELINE_S = 8.0
#: Per-epoch features tested ME vs MaE (and ME vs NE) with mixed models.
EPOCH_MEASURES: tuple[str, ...] = ("hr_change_bpm", "hr_peak_change_bpm", "scr_magnitude_us", "scr_occurred",
                                   "rsp_amplitude_change")  # fmt: skip
#: Measures that need a clean baseline (overlapping cardiac/respiratory responses).
CLEAN_MEASURES: frozenset[str] = frozenset({"hr_change_bpm", "hr_peak_change_bpm", "rsp_amplitude_change"})

logger = logging.getLogger(f"analyses.{ANALYSIS}")


def epoch_models(features: pd.DataFrame) -> pd.DataFrame:
    """Mixed models ``measure ~ condition`` (maximal random effects) ME vs MaE and ME vs NE per epoch measure."""
    rows = []
    for m in EPOCH_MEASURES:
        d = features[features["condition"].isin(["ME", "MaE", "NE"])]
        if m in CLEAN_MEASURES:
            d = d[d["clean_baseline"].astype(bool)]
        d = d.dropna(subset=[m])
        for ref in ("MaE", "NE"):
            try:
                t = mixed_model(d, measure=m, reference=ref, conditions=("ME", ref))
            except ValueError as err:
                logger.warning("mixed model %s ME-%s not fitted: %s", m, ref, err)
                continue
            t = t[t["kind"] == "condition"].copy()
            t.insert(0, "clean_baseline_only", m in CLEAN_MEASURES)
            rows.append(t)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def _coupling(eeg_path: Path | None, features: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    if eeg_path is None or not Path(eeg_path).is_file():
        return pd.DataFrame(), None, "no per-epoch EEG table given (--eeg-trials)"
    eeg = pd.read_csv(eeg_path)
    if "amplitude_uv" in eeg.columns and "component" in eeg.columns:  # the ERP analysis' components.csv
        sel = eeg[eeg["component"].astype(str).str.upper().eq("P3")] if "P3" in set(eeg["component"].astype(str).str.upper()) else eeg
        if "kind" in sel.columns:
            sel = sel[sel["kind"].eq("mean")]
        eeg = sel.drop_duplicates("expression_id")
        measure = "amplitude_uv"
    else:
        measure = next(c for c in eeg.columns if c not in ("expression_id", "subject", "condition"))
    try:
        table, joined = co.brain_body_coupling(eeg, features, measure, "hr_change_bpm")
    except ValueError as err:
        return pd.DataFrame(), None, f"not fitted: {err}"
    return table, joined, "ok"


def build_markdown(summary: dict[str, Any]) -> str:
    r = summary["results"]
    lines = [f"# {ANALYSIS}", "", f"Subjects: {summary['n_subjects']}; epochs: {summary['epochs_per_condition']}", "",
             "## Per-epoch responses (mean over epochs; HR/RSP: clean-baseline epochs)", "",
             "| condition | HR change (bpm) | HR peak (bpm) | SCR rate | SCR latency (s, median) | RSP amplitude change |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for c, v in r["responses"].items():
        lines.append(f"| {c} | {v['hr_change_bpm']:.2f} | {v['hr_peak_change_bpm']:.2f} | {v['scr_rate']:.2f} | "
                     f"{v['scr_latency_s_median']:.2f} | {v['rsp_amplitude_change']:.3f} |")  # fmt: skip
    lines += ["", "## Mixed models (epoch measures)", "",
              "Trial-level MixedLM with the maximal random-effects structure that converged, t test on "
              "n_subjects - 1 df; beside it the subject-level paired t-test of the same contrast on subject means.",
              "", "| measure | term | estimate | t (df) | p | random effects | paired t (df) | paired p | d_lmm | converged |",
              "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for m in r["epoch_models"]:
        conv = "yes" if m.get("converged", True) else "**no** (best of several optimizers; read with care)"
        re_cell = str(m["random_effects"]).replace("|", r"\|")  # "(1 | subject)": its pipes stay in the cell
        lines.append(f"| {m['measure']} | {m['term']} | {m['estimate']:.3g} | {m['t']:.2f} ({m['df']:.0f}) | "
                     f"{format_p(m['p'])} | {re_cell} | "
                     f"{m['paired_t']:.2f} ({m['paired_df']:.0f}) | "
                     f"{format_p(m['paired_p'])} | {m['effect_size']:.3g} | {conv} |")
    c = r["concordance"]
    lines += ["", f"Concordance: {c['n_significant']} of {c['n_tests']} window x feature tests significant after FDR"
              + (f"; {c['n_not_converged']} mixed-model fits did not converge cleanly (flagged in `concordance.csv`)."
                 if c.get("n_not_converged") else "."), "",
              f"SCR chance rate (NE): {r['timing']['chance_scr_rate']:.2f}", "",
              f"Brain-body coupling: {r['brain_body']['status']}", "",
              "Note: expressions can be 2.5 s apart while the HR response lasts ~9 s; HR and respiration "
              f"effects use epochs with no expression onset in the preceding {CLEAN_BASELINE_S:g} s.", ""]  # fmt: skip
    return "\n".join(lines)


def first_level_step(config: Config) -> Step:
    """The per-subject step of this analysis (:func:`mmme_neuro.concordance.first_level`).

    :func:`run` runs it; ``mmme-neuro run`` runs it with the other analyses'
    steps as one task graph first (:func:`mmme_neuro.pipeline.run_steps`).
    """
    return Step(co.first_level, "physio", config, {"clean_baseline_s": CLEAN_BASELINE_S})


def run(config: Config, out_dir: Path, *, eeg_trials: Path | None = None, progress: bool = False) -> dict[str, Any]:
    """Run the analysis (see the module docstring) and write every output; return the summary."""
    bids_root = prepare_bids(config, progress=progress)
    step = run_steps([first_level_step(config)], bids_root, progress=progress)["physio"]
    step.require(2)
    results, failed = list(step.results.values()), step.failed
    t_group = time.perf_counter()
    feats = pd.concat([r["features"] for r in results], ignore_index=True)
    wins = pd.concat([r["windows"] for r in results], ignore_index=True)
    quality = pd.concat([r["quality"] for r in results], ignore_index=True)
    group = ph.group_timecourses([r["timecourses"] for r in results], clean_only=True)
    group.attrs.update(analysis=ANALYSIS, clean_baseline_s=CLEAN_BASELINE_S, seed=int(config.seed))
    conc = co.concordance_tests(wins, alpha=config.stats.alpha, fdr_method=config.stats.fdr_method)
    rates, timing = co.response_timing(feats, config=config)
    models = epoch_models(feats)
    bb_table, joined, bb_status = _coupling(eeg_trials, feats)

    save_netcdf(group, out_dir / "physio_timecourses.nc")
    for name, df in (("epoch_features", feats), ("window_features", wins), ("concordance", conc),
                     ("scr_rates", rates), ("quality", quality), ("epoch_models", models), ("brain_body", bb_table)):  # fmt: skip
        write_csv(df, out_dir / f"{name}.csv")
    save_figure(vph.plot_timecourses(group), out_dir / "timecourses", FIGURE_FORMATS)
    for con in ("ME-MaE", "ME-NE"):
        save_figure(vph.plot_concordance_heatmap(conc, contrast=con, alpha=config.stats.alpha),
                    out_dir / f"concordance_{con.lower().replace('-', '_vs_')}", FIGURE_FORMATS)  # fmt: skip
    save_figure(vph.plot_latencies(feats), out_dir / "latencies", FIGURE_FORMATS)
    if joined is not None:
        save_figure(vph.plot_brain_body(joined, bb_table["eeg_measure"].iloc[0], "hr_change_bpm"),
                    out_dir / "brain_body", FIGURE_FORMATS)  # fmt: skip

    summary = base_summary(ANALYSIS, config, inputs={"bids_root": bids_root})
    summary["subjects"] = list(step.results)
    summary["n_subjects"] = len(results)
    main_conds = feats[feats["condition"].isin(["ME", "MaE", "NE"])]
    summary["epochs_per_condition"] = {c: int((feats["condition"] == c).sum()) for c in ("ME", "MaE", "NE", "clip")}
    excl: dict[str, int] = {}
    for reason in feats["excluded_reason"]:
        for code in filter(None, str(reason).split(";")):
            excl[code] = excl.get(code, 0) + 1
    excl["not_clean_baseline_hr_rsp"] = int((~main_conds["clean_baseline"].astype(bool)).sum())
    lost = failed_exclusions(bids_root, failed)
    if len(lost):  # subjects without a usable physiology (no recording ...): every coded expression, with why
        write_csv(analysis_exclusions(bids_root, list(step.results), failed, scopes=("all", "physio")),
                  out_dir / "exclusions.csv")  # fmt: skip
        excl["subject_failed"] = len(lost)
    summary["exclusions_by_reason"] = dict(sorted(excl.items()))
    responses = {}
    for c in ("ME", "MaE", "NE"):
        f = feats[feats["condition"] == c]
        fc = f[f["clean_baseline"].astype(bool)]
        responses[c] = {"n": len(f), "n_clean_baseline": len(fc),
                        "hr_change_bpm": float(fc["hr_change_bpm"].mean()),
                        "hr_peak_change_bpm": float(fc["hr_peak_change_bpm"].mean()),
                        "scr_rate": float(f["scr_occurred"].mean()),
                        "scr_latency_s_median": float(f["scr_latency_s"].median()),
                        "scr_amplitude_us_mean": float(f["scr_amplitude_us"].mean()),
                        "rsp_amplitude_change": float(fc["rsp_amplitude_change"].mean())}  # fmt: skip
    hr = group.sel(signal="hr").mean("subject")
    peak = {c: {"min_bpm": float(hr.sel(condition=c).min()),
                "latency_s": float(hr["time"].values[int(np.nanargmin(hr.sel(condition=c).values))])}
            for c in group["condition"].values if np.isfinite(hr.sel(condition=c).values).any()}  # fmt: skip
    contrasts = []
    for row in models.to_dict(orient="records"):
        contrasts.append(make_contrast(row["term"].replace(" ", ""), kind="mixed_model", location=row["measure"],
                                       p=row["p"], effect_size=row["effect_size"], **model_fields(row),
                                       effect_size_name=row["effect_size_name"],
                                       correction="none", n=row["n_subjects"], estimate=row["estimate"],
                                       ci_low=row["ci_low"], ci_high=row["ci_high"], n_trials=row["n_trials"]))  # fmt: skip
    for row in conc[conc["test"] == "lmm"].dropna(subset=["p"]).to_dict(orient="records"):
        contrasts.append(make_contrast(row["contrast"], kind="feature", location=row["feature"],
                                       time_s=[0.0, row["window_s"]], statistic=row["statistic"], p=row["p_fdr"],
                                       effect_size=row["effect_size"], statistic_name="t", df=row["df"],
                                       p_uncorrected=row["p"], random_effects=row["random_effects"],
                                       subject_level_test={"test": "paired t-test on subject means",
                                                           "t": row["paired_t"], "df": row["paired_df"],
                                                           "p": row["paired_p"]},
                                       effect_size_name=row["effect_size_name"], correction=row["correction"],
                                       n=row["n_subjects"], estimate=row["estimate"]))  # fmt: skip
    summary["contrasts"] = contrasts
    summary["results"] = {
        "clean_baseline_s": CLEAN_BASELINE_S,
        "responses": responses,
        "hr_group_peak": peak,
        "epoch_models": models[["measure", "term", "estimate", "ci_low", "ci_high", "t", "df", "p", "effect_size",
                                "n_subjects", "n_trials", "converged", "test", "random_effects", "paired_t",
                                "paired_df", "paired_p"]].to_dict(orient="records") if len(models) else [],  # fmt: skip
        "concordance": {"n_tests": int(conc["p"].notna().sum()), "n_significant": int(conc["significant"].sum()),
                        "n_not_converged": int((conc["p"].notna() & ~conc["converged"].astype(bool)).sum()),
                        "windows_s": list(co.WINDOWS_S), "features": list(co.CONCORDANCE_FEATURES)},  # fmt: skip
        "timing": timing,
        "brain_body": {"status": bb_status, **(bb_table.iloc[0].to_dict() if len(bb_table) else {})},
        "signal_quality_excluded_s": quality[quality["reason"] != "ok"].groupby("signal")["seconds"].sum().to_dict(),
        "failed_subjects": failed,
    }
    write_summary(out_dir, summary, build_markdown(summary))
    write_timing(out_dir, step, t_group)
    logger.info("%s: %d subjects -> %s", ANALYSIS, len(results), os.fspath(out_dir))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 success, 1 invalid input or configuration)."""
    parser = build_parser(__doc__.split("\n", 1)[0], analysis=ANALYSIS)
    parser.add_argument("--eeg-trials", metavar="CSV", type=Path, default=None,
                        help="per-epoch EEG measures (expression_id, subject, condition, measure) for brain-body coupling")  # fmt: skip
    args = parser.parse_args(argv)

    def body(config: Config, out_dir: Path) -> None:
        eeg = args.eeg_trials
        if eeg is None:  # the ERP analysis written next to this one (same output root), if any
            cand = out_dir.parent / "erp_me_vs_mae" / "components.csv"
            eeg = cand if cand.is_file() else None
        run(config, out_dir, eeg_trials=eeg, progress=args.verbose > 0)

    return run_script(args, body)


if __name__ == "__main__":
    sys.exit(main())
