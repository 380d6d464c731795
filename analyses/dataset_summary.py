"""Describe a coded expression dataset: MMME Fig. 2 and Table 1 for any coding file.

``python -m analyses.dataset_summary [--coding PATH] [--bids-root PATH] [--config FILE] [--out DIR] ...``

Reads the coding file (``--coding``, else ``paths.coding_file`` of the
configuration), validates and pseudonymises it with
:func:`mmme_neuro.io.coding.read_coding`. Without a coding file it describes
the study analysed: a BIDS study (``--bids-root`` / ``paths.bids_root``) from
the pseudonymised copy of its coding that the conversion stored
(:func:`mmme_neuro.dataset.stored_coding`), a raw study (``paths.raw_root``)
from its coding file, else the synthetic default study of
``simulation.scale/null`` and the seed. It writes to ``--out`` (default
``figures/dataset_summary/``):

* figures (PNG 300 dpi + PDF): ``overview`` (panels a-f), ``emotion_counts``,
  ``composite_pies``, ``durations``, ``au_counts``, ``subject_counts``,
  ``annotation_quality``;
* tables (CSV): ``emotion_counts``, ``composite_proportions``, ``durations``,
  ``au_table_me``, ``au_table_mae``, ``au_region_counts``, ``subject_counts``,
  ``quality_counts`` and ``coding_report`` (one row per input row);
* ``summary.json`` (``docs/summary-json.md``) and ``summary.md``.

Only pseudonyms (``sub-01`` ...) reach the outputs: the ``Filename`` and
``Subject`` columns, which hold participant names, are never written.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analyses._common import build_parser, run_script
from mmme_neuro import describe
from mmme_neuro._utils import atomic_path
from mmme_neuro.config import Config, ConfigError
from mmme_neuro.constants import (
    MMME_ME_DURATION_MEAN_S,
    MMME_ME_DURATION_SD_S,
    MMME_N_MAE,
    MMME_N_ME,
)
from mmme_neuro.io.coding import CodingFileError, CodingResult, read_coding, write_coding_report
from mmme_neuro.reporting import base_summary, write_summary
from mmme_neuro.viz import dataset as vd
from mmme_neuro.viz.style import new_figure, save_figure

ANALYSIS = "dataset_summary"
FIGURE_FORMATS: tuple[str, ...] = ("png", "pdf")

logger = logging.getLogger(f"analyses.{ANALYSIS}")


def resolve_coding_file(coding: Path | None, config: Config) -> Path:
    """What to describe: ``--coding``, ``paths.coding_file``, the BIDS study of ``paths.bids_root`` (a directory:
    its stored coding), the coding file of ``paths.raw_root``, or the synthetic default study's coding file."""
    if coding is not None:
        return Path(coding)
    if config.paths.coding_file is not None:
        return Path(config.paths.coding_file)
    if config.paths.bids_root is not None:
        return Path(config.paths.bids_root)
    if config.paths.raw_root is not None:
        from mmme_neuro.bids import ConversionError, _find_coding_file

        try:
            return _find_coding_file(Path(config.paths.raw_root), None, config)
        except ConversionError as err:
            raise FileNotFoundError(str(err)) from err
    from mmme_neuro.simulate.study import ensure_study

    study = ensure_study(config)
    logger.info("no coding file given: using the synthetic study %s", study.root)
    return Path(study.coding_file)


def _write_csv(df: pd.DataFrame, path: Path, inputs: Sequence[os.PathLike]) -> Path:
    with atomic_path(path, inputs=inputs) as tmp:
        df.to_csv(tmp, index=False, lineterminator="\n", encoding="utf-8")
    return path


def make_tables(result: CodingResult) -> dict[str, pd.DataFrame]:
    """All description tables of a coding result, by output name."""
    expr, report = result.expressions, result.report
    return {
        "emotion_counts": describe.emotion_counts(expr),
        "composite_proportions": describe.composite_proportions(expr),
        "durations": describe.duration_stats(expr),
        "au_table_me": describe.au_table(expr, kind="ME"),
        "au_table_mae": describe.au_table(expr, kind="MaE"),
        "au_region_counts": describe.au_region_counts(expr),
        "subject_counts": describe.subject_counts(expr),
        "quality_counts": describe.quality_counts(report),
    }


def make_figures(result: CodingResult, config: Config) -> dict[str, Any]:
    """All figures of the dataset summary, by output name (not yet saved)."""
    expr, report = result.expressions, result.report
    rule = config.coding.me_rule
    figures: dict[str, Any] = {"overview": vd.plot_dataset_overview(expr, report, rule)}
    figures["emotion_counts"] = vd.plot_emotion_counts(expr).figure
    figures["composite_pies"] = vd.plot_composite_pies(expr)[0].figure
    figures["durations"] = vd.plot_durations(expr, rule)[0].figure
    n_au = max(len(describe.au_table(expr, "ME")), len(describe.au_table(expr, "MaE")), 1)
    fig, axes = new_figure("double", 22 + 3.4 * n_au, 1, 2)
    vd.plot_au_counts(expr, "ME", ax=axes[0], descriptions=True, legend=False)
    vd.plot_au_counts(expr, "MaE", ax=axes[1], descriptions=True, legend=True)
    figures["au_counts"] = fig
    figures["subject_counts"] = vd.plot_subject_counts(expr).figure
    figures["annotation_quality"] = vd.plot_quality(report).figure
    return figures


def _round(x: Any, ndigits: int = 3) -> Any:
    return None if x is None or not np.isfinite(x) else round(float(x), ndigits)


def build_summary(result: CodingResult, config: Config, coding_file: Path | dict[str, Path],
                  tables: dict[str, pd.DataFrame]) -> dict[str, Any]:  # fmt: skip
    """The summary.json content (``docs/summary-json.md``) of the dataset description.

    ``coding_file``: the coding file, or the input files read (name -> path, e.g. a BIDS study's stored coding).
    """
    expr, report = result.expressions, result.report
    inputs = dict(coding_file) if isinstance(coding_file, dict) else {"coding_file": coding_file}
    summary = base_summary(ANALYSIS, config, inputs=inputs)
    subjects = sorted(expr["subject"].astype(str).unique())
    summary["subjects"] = subjects
    summary["n_subjects"] = len(subjects)
    summary["exclusions_by_reason"] = describe.exclusion_reasons(report)
    counts = result.counts()
    emo = tables["emotion_counts"]
    comp = tables["composite_proportions"]
    dur = tables["durations"]
    subj = tables["subject_counts"]
    summary["results"] = {
        "source": result.source,
        "coding_counts": counts,
        "expressions": {"ME": counts["me"], "MaE": counts["mae"]},
        "kind_sources": sorted(expr["kind_source"].dropna().astype(str).unique()) if "kind_source" in expr else [],
        "emotion_counts": {
            e: {k: int(n) for k, n in zip(g["kind"], g["count"], strict=True)} for e, g in emo.groupby("emotion", sort=False)
        },
        "composite_percent": {
            k: {c: _round(p, 2) for c, p in zip(g["composite"], g["percent"], strict=True)} for k, g in comp.groupby("kind", sort=False)
        },
        "duration_ms": {
            k: {
                m: {"n": int(r["n"]), "mean": _round(r["mean_ms"]), "sd": _round(r["sd_ms"]), "median": _round(r["median_ms"])}
                for m, r in g.set_index("measure").iterrows()
            }
            for k, g in dur.groupby("kind", sort=False)
        },
        "au_counts": {
            "ME": dict(zip(tables["au_table_me"]["au"], tables["au_table_me"]["count"].astype(int), strict=True)),
            "MaE": dict(zip(tables["au_table_mae"]["au"], tables["au_table_mae"]["count"].astype(int), strict=True)),
        },
        "expressions_per_subject": {
            s: {k: int(n) for k, n in zip(g["kind"], g["count"], strict=True)} for s, g in subj.groupby("subject", sort=True)
        },
        "me_rule": config.coding.me_rule.model_dump(mode="json"),
        **({} if "coding_file" in inputs else {"coding_sha256": result.sha256}),  # described from a stored copy
        "duplicate_policy": config.coding.duplicate_policy,
        "reference_mmme": {
            "n_me": MMME_N_ME,
            "n_mae": MMME_N_MAE,
            "me_duration_ms": {"mean": MMME_ME_DURATION_MEAN_S * 1e3, "sd": MMME_ME_DURATION_SD_S * 1e3},
        },
    }
    return summary


def build_markdown(summary: dict[str, Any], tables: dict[str, pd.DataFrame]) -> str:
    """Short prose summary (summary.md)."""
    res = summary["results"]
    counts = res["coding_counts"]
    dur = tables["durations"].set_index(["kind", "measure"])["text"]
    excl = summary["exclusions_by_reason"]
    excl_text = ", ".join(f"{code} {n}" for code, n in excl.items()) or "none"
    quality = tables["quality_counts"]
    flagged = quality[(quality["status"] == "flagged") & (quality["count"] > 0)]
    flags = dict(zip(flagged["issue"], flagged["count"].astype(int), strict=True))
    flag_text = ", ".join(f"{c} {n}" for c, n in sorted(flags.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"

    def get(kind: str, measure: str) -> str:
        return dur.get((kind, measure), "n/a")

    emo = tables["emotion_counts"].pivot_table(index=["emotion", "label"], columns="kind", values="count", sort=False)
    if "coding_file" in summary["inputs"]:
        origin = f"Coding file `{res['source']}` (sha256 `{summary['inputs']['coding_file'][:12]}`)"
    else:  # a BIDS study's stored copy of its coding
        origin = f"Coding file `{res['source']}` (sha256 `{res['coding_sha256'][:12]}`; the copy its BIDS study stored)"
    lines = [
        "# Dataset summary",
        "",
        f"{origin}, "
        f"configuration hash `{summary['config_hash']}`, mmme-neuro {summary['package_version']}.",
        "",
        f"- **{summary['n_subjects']} subjects**, {counts['rows_in']} coded rows: {counts['kept']} kept "
        f"({counts['flagged']} with flags), {counts['excluded']} excluded.",
        f"- **{counts['me']} ME and {counts['mae']} MaE** "
        f"(ME/MaE {'from the Macro/Micro column' if 'column' in set(res.get('kind_sources', [])) else 'by the rule'}: "
        f"ME if duration <= {res['me_rule']['max_duration_s'] * 1e3:g} ms {res['me_rule']['combine']} "
        f"onset-to-apex <= {res['me_rule']['max_onset_to_apex_s'] * 1e3:g} ms).",
        f"- ME duration (onset to offset) **{get('ME', 'duration')} ms** (mean ± SD; MMME: "
        f"{MMME_ME_DURATION_MEAN_S * 1e3:.1f} ± {MMME_ME_DURATION_SD_S * 1e3:.1f} ms); "
        f"onset to apex {get('ME', 'onset_to_apex')} ms. MaE duration {get('MaE', 'duration')} ms.",
        f"- Exclusions by reason: {excl_text}.",
        f"- Flags on kept rows: {flag_text}.",
        "",
        "| emotion | label | ME | MaE |",
        "| --- | --- | ---: | ---: |",
    ]
    for (emotion, label), row in emo.iterrows():
        lines.append(f"| {emotion} | {label} | {int(row.get('ME', 0))} | {int(row.get('MaE', 0))} |")
    lines += ["", "Figures: `overview` (a emotions, b composite classes, c durations with the ME rule, "
              "d ME action units by face region, e expressions per subject, f coding-file quality).", ""]
    return "\n".join(lines)


def load_coding(source: Path, config: Config) -> tuple[CodingResult, dict[str, Path]]:
    """The coding result of ``source`` and the input files read (name -> path).

    ``source`` is a coding file (read with :func:`mmme_neuro.io.coding.read_coding`)
    or a BIDS study directory (its stored coding: :func:`mmme_neuro.dataset.stored_coding`).
    """
    if Path(source).is_dir():
        from mmme_neuro.dataset import stored_coding

        logger.info("describing the BIDS study %s from the coding it stored", source)
        return stored_coding(source)
    return read_coding(source, config.coding), {"coding_file": Path(source)}


def run(coding_file: Path, config: Config, out_dir: Path) -> dict[str, Any]:
    """Describe ``coding_file`` (or a BIDS study directory: its stored coding) into ``out_dir``;
    return the summary written to summary.json."""
    result, sources = load_coding(coding_file, config)
    inputs = list(sources.values())
    tables = make_tables(result)
    for name, table in tables.items():
        _write_csv(table, out_dir / f"{name}.csv", inputs)
    write_coding_report(result, out_dir / "coding_report.csv")
    for name, fig in make_figures(result, config).items():
        save_figure(fig, out_dir / name, FIGURE_FORMATS, inputs=inputs)
    summary = build_summary(result, config, sources, tables)
    write_summary(out_dir, summary, build_markdown(summary, tables))
    logger.info("%s: %d ME, %d MaE, %d subjects -> %s", result.source, summary["results"]["expressions"]["ME"],
                summary["results"]["expressions"]["MaE"], summary["n_subjects"], out_dir)  # fmt: skip
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 success, 1 invalid input or configuration)."""
    parser = build_parser(__doc__.split("\n", 1)[0], analysis=ANALYSIS)
    parser.add_argument("--coding", metavar="PATH", type=Path, default=None,
                        help="coding file (xlsx/csv); default: paths.coding_file, else the coding the BIDS study "
                             "(--bids-root) stored, else the synthetic default study")  # fmt: skip
    args = parser.parse_args(argv)
    return run_script(args, lambda config, out_dir: run(resolve_coding_file(args.coding, config), config, out_dir),
                      errors=(ConfigError, CodingFileError, FileExistsError, FileNotFoundError))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
