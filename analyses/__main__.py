"""Run the analyses in data-flow order: ``python -m analyses`` (what ``make figures`` does) and ``mmme-neuro run``.

Each analysis writes to ``<out root>/<name>/`` (default ``figures/<name>/``).
``python -m analyses [script options]`` runs all of them with the same
options (e.g. ``--scale ci``); :func:`run_study` (``mmme-neuro run``) runs a
selection, lets a failing analysis not stop the others, and writes a run
summary (``run_summary.json`` / ``.md``: per analysis its status, wall time,
subjects, epochs per condition, exclusions by reason and failed subjects,
read from its ``summary.json``). Both first run the per-subject steps of all
the selected analyses as one task graph (:func:`first_level`), then each
script, which finds its first level cached. A given BIDS study
(``--bids-root`` or ``paths.bids_root``) is checked first
(:func:`mmme_neuro.manifest.check_study`): a study whose conversion did not
finish is refused before anything runs.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

#: Analysis scripts in data-flow order (module names under ``analyses``).
ANALYSES: tuple[str, ...] = (
    "dataset_summary",
    "erp_me_vs_mae",
    "tfr_me_vs_mae",
    "network_nodal_efficiency",
    "physio_concordance",  # after the ERP: its brain-body coupling reads the ERP trial table
    "decoding_multimodal",  # last: the per-epoch features of every first-level analysis
)
#: Analyses run only when asked for (``mmme-neuro run --analyses report``), after the others: the
#: per-subject preprocessing reports and MNE derivatives (~15 s a subject, outputs in the study's derivatives).
OPTIONAL_ANALYSES: tuple[str, ...] = ("preprocessing_report",)
#: Short names of ``mmme-neuro run --analyses``.
SHORT_NAMES: dict[str, str] = {"dataset": "dataset_summary", "erp": "erp_me_vs_mae", "tfr": "tfr_me_vs_mae",
                               "network": "network_nodal_efficiency", "physio": "physio_concordance",
                               "decoding": "decoding_multimodal", "report": "preprocessing_report"}  # fmt: skip

logger = logging.getLogger("analyses")


def resolve(names: Sequence[str]) -> list[str]:
    """Script module names, in data-flow order, of short or full names.

    Raises
    ------
    ValueError
        Naming the unknown analyses and the known ones.
    """
    full = []
    for n in names:
        n = n.strip()
        if n in SHORT_NAMES:
            full.append(SHORT_NAMES[n])
        elif n in ANALYSES + OPTIONAL_ANALYSES:
            full.append(n)
        else:
            raise ValueError(f"unknown analysis {n!r}; known: {sorted(SHORT_NAMES)} (or the script names "
                             f"{list(ANALYSES + OPTIONAL_ANALYSES)})")  # fmt: skip
    return [a for a in ANALYSES + OPTIONAL_ANALYSES if a in full]


def _stage_summary(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    s = json.loads(path.read_text(encoding="utf-8"))
    row = {"n_subjects": s.get("n_subjects"), "epochs_per_condition": s.get("epochs_per_condition", {}),
           "exclusions_by_reason": s.get("exclusions_by_reason", {}),
           "failed_subjects": s.get("results", {}).get("failed_subjects", [])}  # fmt: skip
    timing = path.with_name("timing.json")
    if timing.is_file():  # time per stage: the per-subject (first-level) step and the group level
        t = json.loads(timing.read_text(encoding="utf-8"))
        fl = t.get("first_level", {})
        row["stages"] = {"first_level_s": fl.get("wall_s"), "first_level_computed": fl.get("n_computed"),
                         "first_level_cached": fl.get("n_cached"), "group_s": t.get("group_s")}  # fmt: skip
    return row


def _stage_cell(r: dict[str, Any]) -> str:
    st = r.get("stages")
    if not st or st.get("first_level_s") is None:
        return "-"
    return (f"{st['first_level_s']:.1f} s ({st['first_level_computed']} computed, {st['first_level_cached']} cached)"
            f" + {st['group_s']:.1f} s")


def _first_level_line(first: dict[str, Any]) -> str:
    if first.get("status") == "ok":
        counts = "; ".join(f"{n}: {c['computed']} computed, {c['cached']} cached, {c['failed']} failed"
                           for n, c in first["stages"].items())  # fmt: skip
        return f"First level of the analyses as one task graph: {first['seconds']:.1f} s ({counts})."
    if first.get("status") in ("failed", "skipped"):
        return f"First level as one task graph not run ({first['error']}): each analysis ran its own."
    return "No analysis with a per-subject step."


def _markdown(rows: list[dict[str, Any]], total_s: float, first: dict[str, Any]) -> str:
    lines = ["# mmme-neuro run", "", f"Total {total_s:.1f} s. {_first_level_line(first)}", "",
             "| analysis | status | seconds | first level + group | subjects | epochs per condition | exclusions "
             "| failed subjects |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        failed = ", ".join(f"{f['subject']} ({f['reason']})" for f in r.get("failed_subjects", [])) or "-"
        lines.append(f"| {r['analysis']} | {r['status']} | {r['seconds']:.1f} | {_stage_cell(r)} | {r.get('n_subjects', '-')} | "
                     f"{r.get('epochs_per_condition', {})} | {r.get('exclusions_by_reason', {})} | {failed} |")  # fmt: skip
    return "\n".join(lines) + "\n"


class _ErrorLines(logging.Handler):
    """Collects the error messages logged while an analysis runs (its reason, if it fails)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(" ".join(record.getMessage().split()))


def study_root(script_args: Sequence[str]) -> Path | None:
    """The BIDS study given to the scripts (``--bids-root`` or the configuration's ``paths.bids_root``), or
    None: the configured raw directory or the synthetic study, converted by the scripts themselves (or
    options the scripts will reject with their own message)."""
    from analyses._common import build_parser, effective_config
    from mmme_neuro.config import ConfigError

    try:
        args, _ = build_parser("study check", analysis="first_level").parse_known_args(list(script_args))
        root = effective_config(args).paths.bids_root
    except (ConfigError, SystemExit):
        return None
    return None if root is None else Path(root)


def failed_subjects(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Pseudonyms of the subjects that failed in at least one analysis of a run (:func:`run_study`'s rows)."""
    return sorted({str(f["subject"]) for r in rows for f in r.get("failed_subjects", [])})


def failure_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One line per failure of a run: each failed analysis with its reason, each failed subject of an analysis."""
    out = []
    for r in rows:
        if r["status"] != "ok":
            out.append(f"failed: analysis {r['analysis']} (exit code {r['exit_code']}): "
                       f"{r.get('error') or 'see the messages above'}")  # fmt: skip
        for f in r.get("failed_subjects", []):
            out.append(f"failed: {f['subject']} in {r['analysis']}: {' '.join(str(f.get('reason', '')).split())}")
    return out


def first_level(analyses: Sequence[str], script_args: Sequence[str]) -> dict[str, Any]:
    """Run the per-subject steps of ``analyses`` as one task graph, before their group levels.

    Each analysis script exposing ``first_level_step(config)`` contributes its
    step; :func:`mmme_neuro.pipeline.run_steps` runs them all on one cluster
    (the shared preprocessing pass once per subject, the analyses of a
    preprocessed subject while the other worker preprocesses the next one, no
    wait between analyses, one cluster start). The scripts then find their
    first level in the cache: the results are the ones they would compute
    themselves (same steps, same keys).

    Parameters
    ----------
    analyses : sequence of str
        Short or script names.
    script_args : sequence of str
        The options given to every script (``--config``, ``--bids-root``,
        ``--scale``, ``--workers``...; others are ignored here).

    Returns
    -------
    row : dict
        ``status`` (``ok``, ``failed``, ``none``: no analysis with a
        per-subject step, or ``skipped``: ``run.cache = false``, so nothing
        computed here would reach the scripts, which compute their own), ``seconds``, ``error``, and per stage the numbers
        of subjects ``computed``, ``cached`` and ``failed``. A failure here
        (e.g. an invalid configuration) is logged as a warning: each script
        then runs its own step and reports the error itself.
    """
    from analyses._common import build_parser, configure_logging, effective_config
    from mmme_neuro.dataset import prepare_bids
    from mmme_neuro.pipeline import run_steps

    modules = [importlib.import_module(f"analyses.{n}") for n in resolve(analyses)]
    modules = [m for m in modules if hasattr(m, "first_level_step")]
    if not modules:
        return {"status": "none", "seconds": 0.0, "error": "", "stages": {}}
    t0 = time.perf_counter()
    try:
        args, _ = build_parser("first level of the analyses", analysis="first_level").parse_known_args(list(script_args))
        configure_logging(args.verbose)
        config = effective_config(args)
        if not config.run.cache:  # nothing would be kept for the scripts: each computes its own
            return {"status": "skipped", "seconds": 0.0, "error": "run.cache = false", "stages": {}}
        bids_root = prepare_bids(config, progress=True)
        # the results stay on disk here (load=()): each script reads what its group level needs
        reports = run_steps([replace(m.first_level_step(config), load=()) for m in modules], bids_root, progress=True)
    except Exception as err:  # noqa: BLE001 - the scripts report their own errors
        logger.warning("first level of %s not run as one task graph (%s: %s); each analysis runs its own",
                       ", ".join(m.__name__ for m in modules), type(err).__name__, err)  # fmt: skip
        return {"status": "failed", "seconds": round(time.perf_counter() - t0, 1), "error": f"{type(err).__name__}: {err}",
                "stages": {}}  # fmt: skip
    stages = {name: {k: int((rep.status["status"] == k).sum()) for k in ("computed", "cached", "failed")}
              for name, rep in reports.items()}  # fmt: skip
    dt = time.perf_counter() - t0
    sys.stderr.write(f"first level ({', '.join(reports)}): {dt:.1f} s\n")
    return {"status": "ok", "seconds": round(dt, 1), "error": "", "stages": stages}


def run_study(analyses: Sequence[str], script_args: Sequence[str], out_root: Path | None = None) -> tuple[int, list[dict[str, Any]]]:
    """Run analyses in data-flow order; a failing one is reported and the others go on.

    Parameters
    ----------
    analyses : sequence of str
        Short (``erp``...) or script names.
    script_args : sequence of str
        Options given to every script (``--config``, ``--bids-root``, ``--workers``...).
    out_root : pathlib.Path | None
        Each analysis writes to ``out_root/<name>`` and the run summary to
        ``out_root/run_summary.{json,md}``; None: the scripts' default
        (``<paths.figures_dir>/<name>``) and no run summary.

    Returns
    -------
    failures : int
        Number of analyses that failed.
    rows : list of dict
        Per analysis: ``analysis``, ``status``, ``exit_code``, ``seconds``,
        ``error`` (the last error it logged, if it failed) and the counts of
        its ``summary.json`` (``failed_subjects`` among them).

    Raises
    ------
    mmme_neuro.manifest.StudyStateError
        If the given BIDS study's conversion did not finish or the study no
        longer matches its manifest: nothing is run.
    """
    from mmme_neuro._utils import atomic_write_text
    from mmme_neuro.manifest import check_study
    from mmme_neuro.pipeline import remember_failures

    root = study_root(script_args)
    if root is not None:
        check_study(root)
    rows = []
    t_all = time.perf_counter()
    # the scripts run their steps again after the first level: they find its results in the cache, and
    # its failures in this block's memory (not computed a second time)
    with remember_failures():
        first = first_level(analyses, script_args)
        for name in resolve(analyses):
            module = importlib.import_module(f"analyses.{name}")
            argv = list(script_args) + (["--out", str(Path(out_root) / name)] if out_root is not None else [])
            t0 = time.perf_counter()
            errors = _ErrorLines()
            logging.getLogger("analyses").addHandler(errors)
            try:
                code = module.main(argv)
            except Exception as err:  # noqa: BLE001 - one analysis must not take the run down
                logger.error("analyses.%s crashed: %s: %s", name, type(err).__name__, err)
                code = 2
            finally:
                logging.getLogger("analyses").removeHandler(errors)
            dt = time.perf_counter() - t0
            sys.stderr.write(f"analyses.{name}: {'ok' if code == 0 else f'FAILED ({code})'} in {dt:.1f} s\n")
            row: dict[str, Any] = {"analysis": name, "status": "ok" if code == 0 else "failed", "exit_code": int(code),
                                   "seconds": round(dt, 1)}  # fmt: skip
            if code != 0:
                row["error"] = errors.lines[-1] if errors.lines else None
            if out_root is not None and code == 0:
                row.update(_stage_summary(Path(out_root) / name / "summary.json"))
            rows.append(row)
    if out_root is not None:
        total = time.perf_counter() - t_all
        Path(out_root).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(out_root) / "run_summary.json",
                          json.dumps({"total_seconds": round(total, 1), "first_level": first, "analyses": rows},
                                     indent=1, sort_keys=True) + "\n")  # fmt: skip
        atomic_write_text(Path(out_root) / "run_summary.md", _markdown(rows, total, first))
    return sum(r["status"] != "ok" for r in rows), rows


def main(argv: Sequence[str] | None = None) -> int:
    """Run all analyses with the same options; return the number of failures as exit code (1 if the study is refused)."""
    from mmme_neuro.manifest import StudyError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        failures, _ = run_study(ANALYSES, argv)
    except StudyError as err:
        sys.stderr.write(f"{err}\n")
        return 1
    return failures


if __name__ == "__main__":
    sys.exit(main())
