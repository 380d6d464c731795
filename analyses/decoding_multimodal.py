"""Multimodal decoding: ME vs MaE, ME vs NE and ME emotion from EEG, physiology and their fusion.

``python -m analyses.decoding_multimodal [--bids-root PATH] [--config FILE] [--out DIR] [--scale ...] [--null] [--tasks ...] [--permutations N]``

Per subject (:func:`mmme_neuro.features.session_features`, one epoching
pass, run in parallel and cached by :func:`mmme_neuro.pipeline.run_steps`): per-epoch EEG band power (the authors' periodogram features), ERP
window means, nodal efficiency, event-related physiology and the facial-EMG
measures. Over subjects, per task (``decoding`` section of the
configuration): leave-one-subject-out cross-validation of EEG-only,
physiology-only, early and late EEG+physiology fusion and EMG-only (the
confound baseline) feature sets, with a label test for chance whose null
renames the classes of random subjects (``decoding.null``). The ``eeg`` sets leave out the EMG-prone features (temporal
channels, gamma band; :func:`mmme_neuro.features.emg_prone_columns`);
``eeg_all`` keeps them, to show how much the muscle artefact adds. A leakage
check of the fusion pipeline (:func:`mmme_neuro.decoding.pipeline_leakage_check`)
and time-resolved decoding with temporal generalisation and a cluster test
(ME vs MaE, ME vs NE, when among ``--tasks``) complete it. Writes to ``--out`` (default
``figures/decoding_multimodal/``):

* tables (CSV): ``decoding_scores`` (one row per task x feature set: accuracy,
  UF1, UAR, their permutation chance and p), ``per_subject``, ``predictions``,
  ``null_distributions``, ``confusion``, ``leakage_check``, ``time_clusters``,
  ``epochs`` (every planned epoch, kept or rejected with its reason),
  ``exclusions`` (coded expressions that never became epochs, with reasons);
* ``features.nc`` ``(epoch, feature)`` and ``time_decoding_<task>.nc`` (ROC
  AUC of each test subject over ``(subject, time)`` and ``(subject,
  train_time, test_time)``);
* figures (PNG 300 dpi + PDF): ``decoding_scores``, ``confusion``,
  ``time_decoding_me_vs_mae``, ``time_decoding_me_vs_ne``;
* ``summary.json`` and ``summary.md``.
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
import xarray as xr
from tqdm.auto import tqdm

from analyses._common import build_parser, group_jobs, run_script, write_csv, write_timing
from mmme_neuro import decoding as dec
from mmme_neuro import epochs as ep_mod
from mmme_neuro import features as ft
from mmme_neuro import steps
from mmme_neuro.config import Config
from mmme_neuro.containers import provenance, save_netcdf
from mmme_neuro.dataset import analysis_exclusions, prepare_bids
from mmme_neuro.pipeline import RunReport, Step, run_steps
from mmme_neuro.reporting import base_summary, format_p, make_contrast, p_text, write_summary
from mmme_neuro.viz import decoding as vdec
from mmme_neuro.viz.style import save_figure

ANALYSIS = "decoding_multimodal"
FIGURE_FORMATS: tuple[str, ...] = ("png", "pdf")
TASKS: tuple[str, ...] = ("me_vs_mae", "me_vs_ne", "emotion3", "emotion7")
#: (feature set, fusion, label, drop EMG-prone columns) decoded per binary task.
SETS: tuple[tuple[str, str, str, bool], ...] = (
    ("eeg", "early", "eeg", True),
    ("physio", "early", "physio", False),
    ("eeg+physio", "early", "eeg+physio", True),
    ("eeg+physio", "late", "eeg+physio", True),
    ("emg", "early", "emg", False),
    ("eeg", "early", "eeg_all", False),
)
#: Sets of the emotion tasks (few epochs: the main comparison only).
EMOTION_SETS: tuple[tuple[str, str, str, bool], ...] = SETS[:3]
TIME_TASKS: tuple[str, ...] = ("me_vs_mae", "me_vs_ne")

logger = logging.getLogger(f"analyses.{ANALYSIS}")


def first_level_step(config: Config) -> Step:
    """The per-subject step of this analysis (:func:`mmme_neuro.features.first_level` on the shared preprocessing pass).

    :func:`collect` runs it; ``mmme-neuro run`` runs it with the other
    analyses' steps as one task graph first (:func:`mmme_neuro.pipeline.run_steps`).
    """
    return Step(ft.first_level, "decoding-features", config, upstream=steps.upstream(config))


def collect(bids_root: Path, config: Config, *, progress: bool = False
            ) -> tuple[pd.DataFrame, xr.DataArray, pd.DataFrame, RunReport]:  # fmt: skip
    """Features of every subject (:func:`mmme_neuro.features.first_level`), in parallel and cached.

    Per-subject results are cached under ``<paths.derivatives_dir>/first-level/decoding-features``
    (default: ``derivatives/mmme-neuro`` of the BIDS study; :func:`mmme_neuro.pipeline.run_steps`,
    ``run`` section of the configuration); failed subjects are logged and listed (``report.failed``).
    """
    report = run_steps([first_level_step(config)], bids_root, progress=progress)["decoding-features"]
    report.require(2)
    res = report.results
    return (pd.concat([r["table"] for r in res.values()], ignore_index=True),
            xr.concat([r["series"] for r in res.values()], dim="epoch"),
            pd.concat([r["epochs"] for r in res.values()], ignore_index=True), report)  # fmt: skip


def run_decoding(table: pd.DataFrame, config: Config, tasks: Sequence[str], *, n_permutations: int | None = None,
                 progress: bool = False) -> tuple[list[dec.DecodingResult], list[dict[str, str]]]:  # fmt: skip
    """Decode every task x feature set; tasks or sets that cannot run are listed with the reason."""
    prone = ft.emg_prone_columns(table.columns, config)
    n_jobs = group_jobs(config, config.decoding.n_jobs)
    results, skipped = [], []
    jobs = [(t, s) for t in tasks for s in (EMOTION_SETS if t.startswith("emotion") else SETS)]
    for task, (fset, fusion, label, drop) in tqdm(jobs, desc="decoding", unit="model", disable=not progress):
        try:
            results.append(dec.decode(table, task, fset, config=config, fusion=fusion, n_permutations=n_permutations,
                                      exclude_columns=prone if drop else (), label=label, n_jobs=n_jobs))  # fmt: skip
        except ValueError as err:
            logger.warning("%s / %s (%s) not decoded: %s", task, label, fusion, err)
            skipped.append({"task": task, "feature_set": label, "fusion": fusion, "reason": str(err)})
    return results, skipped


def _long(results: Sequence[dec.DecodingResult], attr: str) -> pd.DataFrame:
    parts = []
    for r in results:
        d = getattr(r, attr).copy()
        d.insert(0, "task", r.task)
        d.insert(1, "feature_set", r.feature_set)
        d.insert(2, "fusion", r.fusion)
        parts.append(d)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _confusion_long(results: Sequence[dec.DecodingResult]) -> pd.DataFrame:
    parts = [r.confusion.to_series().rename("n").reset_index().assign(task=r.task, feature_set=r.feature_set,
                                                                      fusion=r.fusion) for r in results]  # fmt: skip
    cols = ["task", "feature_set", "fusion", "true", "predicted", "n"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def feature_array(table: pd.DataFrame) -> xr.DataArray:
    """The feature table as ``(epoch, feature)`` with the bookkeeping columns as epoch coordinates."""
    cols = [c for c in table.columns if "__" in c]
    coords: dict[str, Any] = {"epoch": table["epoch_id"].astype(str).to_numpy(), "feature": cols}
    for c in ("subject", "condition", "event_key", "emotion", "clip_emotion"):
        if c in table.columns:
            coords[c] = ("epoch", table[c].astype(str).to_numpy())
    return xr.DataArray(table[cols].to_numpy(float), dims=("epoch", "feature"), coords=coords, name="features",
                        attrs={"units": "see docs: mmme_neuro.features", "analysis": ANALYSIS})  # fmt: skip


#: How the summary names the null of :func:`mmme_neuro.decoding.decode` (``decoding.null``).
NULL_TEXT = {
    "relabel_subjects": "the classes of random subjects renamed, ME <-> MaE",
    "shuffle_within_subject": "labels shuffled within subject",
}


def _fmt(x: Any, f: str = ".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, f)



def build_markdown(summary: dict[str, Any]) -> str:
    """Human-readable summary."""
    r = summary["results"]
    opt = " **(OPTIMISTIC: within-subject folds)**" if r["optimistic"] else ""
    n_null = r["n_permutations"]
    null = NULL_TEXT.get(r.get("null", "shuffle_within_subject"), "label permutations")
    p_test = (f"p: label permutation test ({null}, the cross-validation re-run), {n_null} permutations plus the "
              f"observed labels, uncorrected; `<=` marks the smallest possible p, 1/{n_null + 1}." if n_null
              else "p: n/a (no label permutations run).")  # fmt: skip
    lines = [f"# {ANALYSIS}", "", f"Subjects: {summary['n_subjects']}; epochs: {summary['epochs_per_condition']}", "",
             f"Cross-validation: {r['cv']}{opt}; classifier {r['classifier']}, selection {r['feature_selection']} "
             f"(k = {r['n_features']}), {n_null} label permutations ({null}).", "",
             "`eeg` leaves out the EMG-prone features (temporal channels, gamma); `eeg_all` keeps them; `emg` is the "
             "muscle confound alone.", "", p_test, "",
             "| task | feature set | fusion | n | UF1 | chance | p (label permutation) | UAR | chance "
             "| p (label permutation) |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for s in r["scores"]:
        n_perm = s.get("n_permutations", n_null)
        n_perm = n_perm + 1 if n_perm else None  # the observed labels count: smallest p 1 / (1 + n)
        uf1_p = format_p(s["uf1_p"], n_permutations=n_perm)
        uar_p = format_p(s["uar_p"], n_permutations=n_perm)
        lines.append(f"| {s['task']} | {s['feature_set']} | {s['fusion']} | {s['n_epochs']} | "
                     f"{_fmt(s['uf1'])} | {_fmt(s['uf1_chance'])} | {uf1_p} | "
                     f"{_fmt(s['uar'])} | {_fmt(s['uar_chance'])} | {uar_p} |")  # fmt: skip
    lines += ["", f"Leakage check (test subject's other epochs replaced): {r['leakage']['verdict']} "
              f"(max change {r['leakage']['max_abs_change']:.3g}).", ""]  # fmt: skip
    for t, v in r["time_resolved"].items():
        if "error" in v:
            lines.append(f"Time-resolved {t}: not run ({v['error']}).")
            continue
        n_perm = v.get("n_permutations")
        sig = v["significant_clusters"]
        null = f"null: {v['null']}" if v.get("null") else "sign flips"
        if not n_perm:
            perms = ""
        elif v.get("exact"):
            perms = f", all {n_perm} arrangements (exact)"
        elif v.get("null"):  # the count includes the observed labelling
            perms = f", {n_perm - 1} random label-swap permutations plus the observed"
        else:
            perms = f", {n_perm} permutations"
        first = v["first_significant_s"]
        first = "no significant time" if first is None or np.isnan(first) else f"first significant time {first:.3f} s"
        clusters = ""
        if n_perm and sig:
            clusters = ": " + "; ".join(f"{c['start_s']:.3f}-{c['stop_s']:.3f} s, {p_text(c['p'], n_perm)}"
                                        for c in sig)  # fmt: skip
        lines.append(f"Time-resolved {t}: peak AUC {v['peak_auc']:.3f} at {v['peak_time_s']:.3f} s; "
                     f"{first}; {len(sig)} significant "
                     f"cluster(s) in a cluster permutation test over time (AUC > 0.5, one-sided; "
                     f"{null}{perms}){clusters}.")  # fmt: skip
    if r["skipped"]:
        lines += ["", "Not decoded:"] + [f"- {s['task']} / {s['feature_set']}: {s['reason']}" for s in r["skipped"]]
    lines.append("")
    return "\n".join(lines)


def run(config: Config, out_dir: Path, *, tasks: Sequence[str] = TASKS, n_permutations: int | None = None,
        progress: bool = False) -> dict[str, Any]:  # fmt: skip
    """Run the analysis (see the module docstring) and write every output; return the summary."""
    bids_root = prepare_bids(config, progress=progress)
    table, series, md, step = collect(bids_root, config, progress=progress)
    failed = step.failed
    t_group = time.perf_counter()
    results, skipped = run_decoding(table, config, tasks, n_permutations=n_permutations, progress=progress)
    scores = dec.summary_table(results)
    # every coded expression of the analysed subjects: analysed, an epoch rejected with its reason, or excluded upstream
    exclusions = analysis_exclusions(bids_root, sorted(set(md["subject"].astype(str))), failed)
    # the fusion model of the main table, exactly as decoded (EMG-prone columns out, early fusion)
    leak = dec.pipeline_leakage_check(table, "me_vs_mae", "eeg+physio", config=config,
                                      exclude_columns=ft.emg_prone_columns(table.columns, config))  # fmt: skip
    timed: dict[str, Any] = {}
    tr_results: dict[str, dec.TimeDecodingResult] = {}
    for t in (t for t in TIME_TASKS if t in tasks):  # the binary tasks asked for
        try:
            tr_results[t] = dec.time_resolved(series, table, t, config=config, n_jobs=group_jobs(config, config.decoding.n_jobs))
        except ValueError as err:
            logger.warning("time-resolved %s not run: %s", t, err)
            timed[t] = {"error": str(err)}

    save_netcdf(feature_array(table), out_dir / "features.nc")
    for t, r in tr_results.items():
        ds = xr.Dataset({"auc": r.scores} | ({"generalization": r.generalization} if r.generalization is not None else {}))
        ds.attrs.update(provenance(config, analysis=ANALYSIS, task=t, units="ROC AUC"))
        save_netcdf(ds, out_dir / f"time_decoding_{t}.nc")
    clusters = pd.concat([r.clusters.assign(task=t) for t, r in tr_results.items()], ignore_index=True) \
        if tr_results else pd.DataFrame()  # fmt: skip
    for name, df in (("decoding_scores", scores), ("per_subject", _long(results, "per_subject")),
                     ("predictions", _long(results, "predictions")), ("null_distributions", _long(results, "null")),
                     ("confusion", _confusion_long(results)), ("leakage_check", leak), ("time_clusters", clusters),
                     ("epochs", md), ("exclusions", exclusions)):  # fmt: skip
        write_csv(df, out_dir / f"{name}.csv")
    if len(scores):
        save_figure(vdec.plot_scores(scores, alpha=config.stats.alpha), out_dir / "decoding_scores", FIGURE_FORMATS)
        conf = [(f"{r.task}: {r.feature_set} ({r.fusion})", r.confusion) for r in results
                if r.feature_set == "eeg+physio" and r.fusion == "early"]  # fmt: skip
        if conf:
            save_figure(vdec.plot_confusion(conf), out_dir / "confusion", FIGURE_FORMATS)
    for t, r in tr_results.items():
        save_figure(vdec.plot_time_decoding(r.scores, r.significant, r.generalization, r.gen_significant,
                                            title=dec.TASKS[t].description),
                    out_dir / f"time_decoding_{t}", FIGURE_FORMATS)  # fmt: skip

    summary = base_summary(ANALYSIS, config, inputs={"bids_root": bids_root})
    summary["subjects"] = sorted(table["subject"].astype(str).unique())
    summary["n_subjects"] = len(summary["subjects"])
    summary["epochs_per_condition"] = {c: int((table["condition"] == c).sum()) for c in ("ME", "MaE", "NE")}
    summary["exclusions_by_reason"] = ep_mod.exclusion_counts(md, exclusions)
    contrasts = []
    for s in scores.to_dict(orient="records"):
        contrasts.append(make_contrast(s["task"], kind="decoding", location=f"{s['feature_set']} ({s['fusion']})",
                                       statistic=s["uf1"], p=s["uf1_p"], effect_size=s["uf1"] - s["uf1_chance"],
                                       statistic_name="UF1", effect_size_name="UF1 - permutation chance",
                                       correction="none", n=s["n_subjects"], n_trials=s["n_epochs"], uar=s["uar"],
                                       uar_p=s["uar_p"]))  # fmt: skip
    # the time-resolved cluster tests' null: label flips of whole subjects, each re-running the LOSO
    # (TimeDecodingResult.test: n_permutations counts the arrangements, the observed one included)
    for t, r in tr_results.items():
        for c in r.clusters[r.clusters["significant"]].to_dict(orient="records"):
            contrasts.append(make_contrast(t, kind="time_decoding_cluster", time_s=[c["start_s"], c["stop_s"]],
                                           statistic=c["mass"], p=c["p"], statistic_name="cluster mass (t)",
                                           correction="cluster permutation", n=int(r.scores.sizes["subject"]),
                                           n_permutations=r.test["n_permutations"],
                                           null=r.test["null"]))  # fmt: skip
    summary["contrasts"] = contrasts
    for t, r in tr_results.items():
        m = r.scores.mean("subject")
        timed[t] = {"n_test_subjects": int(r.scores.sizes["subject"]), "peak_auc": float(m.max()),
                    "peak_time_s": float(m["time"].values[int(np.argmax(m.values))]),
                    "first_significant_s": r.first_significant_s,
                    "significant_clusters": r.clusters[r.clusters["significant"]].to_dict(orient="records"),
                    "skipped_subjects": r.skipped_subjects,
                    "n_permutations": r.test["n_permutations"], "exact": r.test["exact"],
                    "null": r.test["null"], "classifier": r.test["classifier"]}  # fmt: skip
    dcfg = config.decoding
    summary["results"] = {
        "cv": dcfg.cv, "optimistic": dcfg.cv != "loso", "classifier": dcfg.classifier,
        "feature_selection": dcfg.feature_selection, "n_features": dcfg.n_features,
        "n_permutations": int(dcfg.n_permutations if n_permutations is None else n_permutations),
        "null": dcfg.null,
        "emg_prone_features_removed": len(ft.emg_prone_columns(table.columns, config)),
        "scores": scores.to_dict(orient="records"),
        "leakage": {"verdict": "leak detected" if leak["leak"].any() else "passed",
                    "max_abs_change": float(leak["max_abs_change"].max()), "subjects": list(leak["subject"])},
        "time_resolved": timed,
        "skipped": skipped,
        "failed_subjects": failed,
    }  # fmt: skip
    write_summary(out_dir, summary, build_markdown(summary))
    write_timing(out_dir, step, t_group)
    logger.info("%s: %d subjects, %d models -> %s", ANALYSIS, summary["n_subjects"], len(results), os.fspath(out_dir))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 success, 1 invalid input or configuration)."""
    parser = build_parser(__doc__.split("\n", 1)[0], analysis=ANALYSIS)
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated tasks of {list(dec.TASKS)}")
    parser.add_argument("--permutations", type=int, default=None, metavar="N",
                        help="label permutations per model (default: decoding.n_permutations; 0: none)")  # fmt: skip
    args = parser.parse_args(argv)

    def body(config: Config, out_dir: Path) -> None:
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        unknown = sorted(set(tasks) - set(dec.TASKS))
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; known: {sorted(dec.TASKS)}")
        run(config, out_dir, tasks=tasks, n_permutations=args.permutations, progress=args.verbose > 0)

    return run_script(args, body)


if __name__ == "__main__":
    sys.exit(main())
