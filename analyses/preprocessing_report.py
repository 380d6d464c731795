"""Preprocessing reports: what the cleaning did to every subject, and its MNE objects as BIDS derivatives.

``python -m analyses.preprocessing_report [--bids-root PATH] [--config FILE] [--out DIR] [--scale ...] [--subjects ...]``

Runs (or reads from the cache) the shared preprocessing pass of the EEG
analyses (:func:`mmme_neuro.steps.upstream`: the very epochs, ICA and
rejections the ERP, TFR, network and decoding analyses use), then for every
subject writes into the study's derivatives
(``<bids_root>/derivatives/mmme-neuro`` or ``paths.derivatives_dir``)::

    sub-XX/eeg/sub-XX_task-mmme_proc-clean_epo.fif   cleaned epochs + metadata (mne.read_epochs)
    sub-XX/eeg/sub-XX_task-mmme_ica.fif              the fitted ICA, exclude = removed (mne.preprocessing.read_ica)
    sub-XX/eeg/sub-XX_task-mmme_ave.fif              evoked response per condition (mne.read_evokeds)
    sub-XX/eeg/sub-XX_task-mmme_report.html          mne.Report (mmme_neuro.cleaning_report.SECTIONS)
    report.html                                      the study: one row per subject, links, exclusions

and into ``--out`` (default ``figures/preprocessing_report/``) ``cleaning.csv``
(per subject: bad channels, ICA components removed, epochs planned and kept
per condition), ``summary.json`` and ``summary.md``. Not part of
``mmme-neuro run``'s default analyses (a report takes ~15 s a subject):
``mmme-neuro run --analyses preprocessing_report`` or this script.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from analyses._common import build_parser, run_script, write_csv
from mmme_neuro import cleaning_report as cr
from mmme_neuro import steps
from mmme_neuro._utils import atomic_write_text
from mmme_neuro.bids import read_bids_session
from mmme_neuro.config import Config
from mmme_neuro.dataset import analysis_exclusions, prepare_bids
from mmme_neuro.pipeline import derivative_paths, derivatives_root, run_subjects
from mmme_neuro.reporting import base_summary, write_summary

ANALYSIS = "preprocessing_report"
logger = logging.getLogger(f"analyses.{ANALYSIS}")


def _derivatives_description(deriv: Path, config: Config) -> None:
    """The derivatives' ``dataset_description.json`` names this step, its version and the configuration hash."""
    from mmme_neuro import __version__

    path = deriv / "dataset_description.json"
    desc = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {
        "Name": "mmme-neuro derivatives", "BIDSVersion": "1.9.0", "DatasetType": "derivative"}  # fmt: skip
    entry = {"Name": "mmme-neuro", "Version": __version__,
             "Description": f"analyses.preprocessing_report: cleaned epochs, ICA, evoked responses and reports "
                            f"(configuration {config.hash()})"}  # fmt: skip
    others = [g for g in desc.get("GeneratedBy", []) if "preprocessing_report" not in str(g.get("Description", ""))]
    desc["GeneratedBy"] = [*others, entry]
    atomic_write_text(path, json.dumps(desc, indent=2, sort_keys=True) + "\n")


def run(config: Config, out_dir: Path, *, subjects: Sequence[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Write the derivatives and reports of every subject (or ``subjects``); return the summary."""
    bids_root = prepare_bids(config, progress=progress)
    up = steps.upstream(config)["clean"]
    # the shared pass of every subject, computed or read from the cache; nothing held in memory
    step = run_subjects(up.func, bids_root, up.config, stage=up.stage, params=up.params, subjects=subjects,
                        progress=progress, load=[])  # fmt: skip
    deriv = derivatives_root(bids_root, config)
    rows, links, written = [], {}, {}
    for s in tqdm(sorted(step.results), desc="reports", unit="subject", disable=not progress):
        clean = run_subjects(up.func, bids_root, up.config, stage=up.stage, params=up.params, subjects=[s],
                             progress=False).results[s]  # fmt: skip
        files = cr.write_subject_derivatives(clean, deriv, s, config)
        raw = read_bids_session(bids_root, s).raw
        path = derivative_paths(deriv, s)["report"]
        cr.save_report(cr.subject_report(clean, config, subject=s, raw=raw), path)
        files["report"] = path
        written[s] = {k: Path(v).relative_to(deriv).as_posix() for k, v in files.items()}
        links[s] = written[s]["report"]
        rows.append(cr.cleaning_table(clean, s))
        del clean, raw
    excl = analysis_exclusions(bids_root, sorted(step.results), step.failed)
    cr.save_report(cr.study_report(rows, links, excl), deriv / "report.html")
    _derivatives_description(deriv, config)
    table = pd.DataFrame(rows)
    write_csv(table, out_dir / "cleaning.csv")
    inputs = {"participants": Path(bids_root) / "participants.tsv"}
    summary = base_summary(ANALYSIS, config, inputs={k: v for k, v in inputs.items() if v.is_file()})
    summary["n_subjects"] = len(rows)
    summary["subjects"] = sorted(written)
    summary["derivatives"] = {"root": os.fspath(deriv), "study_report": "report.html", "files": written}
    summary["failed_subjects"] = list(step.failed)
    summary["results"] = {"cleaning": table.to_dict(orient="records")}
    lines = [f"# {ANALYSIS}", "", f"Subjects: {len(rows)}; derivatives in `{deriv}` (study report `report.html`).", ""]
    if len(table):
        cols = list(table.columns)
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in table.itertuples(index=False)]
        lines.append("")
    for f in step.failed:
        lines.append(f"- {f['subject']} failed: {f['reason']}")
    write_summary(out_dir, summary, "\n".join(lines) + "\n")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 success, 1 invalid input or configuration)."""
    parser = build_parser(__doc__.split("\n", 1)[0], analysis=ANALYSIS)
    parser.add_argument("--subjects", nargs="+", default=None, help="pseudonyms (default: all)")
    args = parser.parse_args(argv)
    return run_script(args, lambda config, out_dir: run(config, out_dir, subjects=args.subjects,
                                                        progress=args.verbose > 0))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
