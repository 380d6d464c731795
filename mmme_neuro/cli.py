"""The ``mmme-neuro`` command line.

Subcommands
-----------
``config show [--config FILE]``
    Print the effective configuration (defaults + file) as TOML.
``config doc``
    Print the configuration reference (every key, default, description).
``config check FILE``
    Validate a configuration file; exit 1 with the reason if invalid.
``simulate OUT_DIR [--scale ci|default|full] [--seed N] [--null] [--between-subject-sd X] [--format eeglab|brainvision] [--subjects N]``
    Write a synthetic MMME-like study in the raw formats (``--between-subject-sd``:
    multiplier of the between-subject SDs of the planted effects, 0 = none, 1 = calibrated).
``coding FILE [--report CSV] [--mapping CSV]``
    Validate an MMME coding file; print the counts; write the row report
    (pseudonyms only) and, only if asked, the name -> pseudonym mapping.
``convert RAW_DIR BIDS_ROOT [--config FILE] [--coding FILE] [--session-map CSV] [--overwrite]``
    Convert a raw study to BIDS (resumable: unchanged subjects are skipped);
    print the counts, then one line per problem on stderr. Holds the lock of
    BIDS_ROOT (a second conversion of it fails at once) and writes the study
    manifest last (:mod:`mmme_neuro.manifest`). Exit code: 0 every subject
    converted or skipped; 1 nothing (or not everything) was converted: the
    configuration, raw directory or coding file is unusable, BIDS_ROOT cannot
    be created or written (the line names the path; a conversion stopped
    this way leaves the study marked unfinished), or another conversion of it
    is running; 2 the conversion finished but a subject failed, a subject of
    BIDS_ROOT is no longer in the raw directory, or the accounting does not hold.
``run [--bids-root PATH] [--config FILE] [--analyses erp,tfr,network,physio,decoding] [--scale S] [--null] [--between-subject-sd X] [--seed N] [--scheduler ADDRESS|--workers N] [--out DIR]``
    Run analyses in data-flow order on a BIDS study (default: the configured
    or synthetic study); per-subject steps in parallel and cached where the
    analysis uses :mod:`mmme_neuro.pipeline`; a failing analysis is reported
    and the others go on; writes ``run_summary.json``/``.md`` (status, time,
    subjects, epochs, exclusions per analysis) and ends with one line per
    failure on stderr. A given BIDS study whose conversion did not finish (no
    valid manifest: :func:`mmme_neuro.manifest.check_study`) is refused
    before anything runs (exit code 1). Exit code: failed analyses + subjects
    that failed in any analysis (each counted once), at most 125.

Errors end in one line naming the file and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .config import ConfigError, config_reference_markdown, load_config

logger = logging.getLogger("mmme_neuro")

#: Largest exit code of ``run`` (shells reserve 126 and above; 256 would read as 0).
MAX_EXIT_CODE = 125


def _cmd_config(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.file if args.action == "check" else getattr(args, "config", None))
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 1
    if args.action == "doc":
        sys.stdout.write(config_reference_markdown())
    elif args.action == "show":
        sys.stdout.write(f"# mmme-neuro {__version__} effective configuration (hash {cfg.hash()})\n")
        sys.stdout.write(cfg.to_toml())
    else:
        sys.stdout.write(f"{args.file}: valid (hash {cfg.hash()})\n")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .simulate.study import simulate_study

    if args.between_subject_sd is not None and not 0 <= args.between_subject_sd <= 10:
        print(f"--between-subject-sd must be in [0, 10], got {args.between_subject_sd}", file=sys.stderr)
        return 2
    paths = simulate_study(args.out_dir, scale=args.scale, seed=args.seed, null=args.null,
                           eeg_format=args.format, n_subjects=args.subjects,
                           between_subject_sd=args.between_subject_sd, overwrite=args.overwrite)  # fmt: skip
    sys.stdout.write(f"study written to {paths.root}\n")
    return 0


def _cmd_coding(args: argparse.Namespace) -> int:
    from .io.coding import (
        CodingFileError,
        read_coding,
        write_coding_report,
        write_pseudonym_mapping,
    )

    try:
        cfg = load_config(args.config)
        result = read_coding(args.file, cfg.coding)
    except (ConfigError, CodingFileError) as err:
        print(err, file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(result.counts(), indent=2, sort_keys=True) + "\n")
    if args.report:
        write_coding_report(result, args.report)
    if args.mapping:
        write_pseudonym_mapping(result, args.mapping)
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .bids import ConversionError, convert_study
    from .manifest import StudyLockError

    try:
        cfg = load_config(args.config)
        summary = convert_study(args.raw_dir, args.bids_root, cfg, coding_file=args.coding,
                                session_map=args.session_map, overwrite=args.overwrite,
                                progress=sys.stderr.isatty())  # fmt: skip
    except (ConfigError, ConversionError, StudyLockError) as err:
        print(err, file=sys.stderr)
        return 1
    sys.stdout.write(
        f"BIDS root {summary.bids_root}: converted {len(summary.converted)}, skipped {len(summary.skipped)}, "
        f"failed {len(summary.failed)} ({summary.elapsed_s:.1f} s); accounting "
        f"{'ok' if summary.accounting_ok else 'MISMATCH'}\n"
    )
    sys.stdout.write(json.dumps(summary.counts, indent=2, sort_keys=True) + "\n")
    problems = summary.problems
    for line in problems:
        print(line, file=sys.stderr)
    return 2 if problems else 0


def _cmd_run(args: argparse.Namespace) -> int:
    # the analysis scripts ship with the package
    from analyses.__main__ import failed_subjects, failure_lines, resolve, run_study

    from .manifest import StudyError

    try:
        names = resolve(args.analyses.split(","))
        sim = {"between_subject_sd": args.between_subject_sd} if args.between_subject_sd is not None else {}
        cfg = load_config(args.config, **({"simulation": sim} if sim else {}))  # validates the overrides too
    except (ValueError, ConfigError) as err:
        print(err, file=sys.stderr)
        return 1
    script_args: list[str] = []
    for flag, value in (("--config", args.config), ("--bids-root", args.bids_root), ("--scale", args.scale),
                        ("--seed", args.seed), ("--between-subject-sd", args.between_subject_sd),
                        ("--workers", args.workers), ("--scheduler", args.scheduler)):  # fmt: skip
        if value is not None:
            script_args += [flag, str(value)]
    if args.null:
        script_args.append("--null")
    script_args += ["-v"] * int(args.verbose)
    out = Path(args.out) if args.out is not None else Path(cfg.paths.figures_dir)
    if args.bids_root is None and cfg.paths.bids_root is None and cfg.paths.raw_root is None:
        # say so: a user who forgot --bids-root must not mistake the synthetic study's results for theirs
        scale = args.scale or "default"
        kind = "null synthetic study" if args.null else "synthetic study"
        print(f"no --bids-root and no paths.bids_root or paths.raw_root in the configuration: analysing the {kind} "
              f"(scale {scale}, seed {args.seed if args.seed is not None else cfg.seed}), generated under "
              f"{cfg.paths.data_dir}", file=sys.stderr)  # fmt: skip
    try:
        failures, rows = run_study(names, script_args, out_root=out)
    except StudyError as err:
        print(err, file=sys.stderr)
        return 1
    for r in rows:
        sys.stdout.write(f"{r['analysis']}: {r['status']} in {r['seconds']:.1f} s\n")
    sys.stdout.write(f"run summary: {out / 'run_summary.md'}\n")
    for line in failure_lines(rows):
        print(line, file=sys.stderr)
    return min(failures + len(failed_subjects(rows)), MAX_EXIT_CODE)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``mmme-neuro``."""
    parser = argparse.ArgumentParser(prog="mmme-neuro", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"mmme-neuro {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", required=True)

    p_cfg = sub.add_parser("config", help="show or check the configuration")
    cfg_sub = p_cfg.add_subparsers(dest="action", required=True)
    p_show = cfg_sub.add_parser("show", help="print the effective configuration as TOML")
    p_show.add_argument("--config", default=None, help="TOML file (default: built-in defaults)")
    p_check = cfg_sub.add_parser("check", help="validate a configuration file")
    p_check.add_argument("file")
    cfg_sub.add_parser("doc", help="print the configuration reference (Markdown)")
    p_cfg.set_defaults(func=_cmd_config)

    p_sim = sub.add_parser("simulate", help="write a synthetic MMME-like study")
    p_sim.add_argument("out_dir")
    p_sim.add_argument("--scale", choices=("ci", "default", "full"), default="ci")
    p_sim.add_argument("--seed", type=int, default=42)
    p_sim.add_argument("--null", action="store_true",
                       help="null study: no population ME - MaE difference (subjects keep their drawn deviations)")
    p_sim.add_argument("--between-subject-sd", type=float, default=None, metavar="X",
                       help="multiplier of the between-subject SDs of the planted effects "
                            "(0: every subject has the population effect; default 1: the calibrated spread)")  # fmt: skip
    p_sim.add_argument("--format", choices=("eeglab", "brainvision"), default="eeglab")
    p_sim.add_argument("--subjects", type=int, default=None, help="only the first N subjects")
    p_sim.add_argument("--overwrite", action="store_true")
    p_sim.set_defaults(func=_cmd_simulate)

    p_cod = sub.add_parser("coding", help="validate an MMME coding file")
    p_cod.add_argument("file")
    p_cod.add_argument("--config", default=None)
    p_cod.add_argument("--report", default=None, help="write the per-row report (CSV, pseudonyms only)")
    p_cod.add_argument("--mapping", default=None, help="write the name -> pseudonym mapping (keep it apart)")
    p_cod.set_defaults(func=_cmd_coding)

    p_conv = sub.add_parser("convert", help="convert a raw study (recordings + coding file) to BIDS")
    p_conv.add_argument("raw_dir")
    p_conv.add_argument("bids_root")
    p_conv.add_argument("--config", default=None, help="TOML configuration (default: built-in defaults)")
    p_conv.add_argument("--coding", default=None, help="coding file (default: the .xlsx in RAW_DIR)")
    p_conv.add_argument("--session-map", default=None, help="CSV: subject, session_date, eeg_file, physio_file")
    p_conv.add_argument("--overwrite", action="store_true", help="reconvert subjects whose inputs are unchanged")
    p_conv.set_defaults(func=_cmd_convert)

    p_run = sub.add_parser("run", help="run analyses in data-flow order on a study, with a run summary")
    p_run.add_argument("--analyses", default="dataset,erp,tfr,network,physio,decoding",
                       help="comma-separated: dataset, erp, tfr, network, physio, decoding; report (the per-subject "
                       "preprocessing reports and MNE derivatives) runs only when named")  # fmt: skip
    p_run.add_argument("--bids-root", default=None, help="BIDS study (default: configured or synthetic study)")
    p_run.add_argument("--config", default=None, help="TOML configuration (default: built-in defaults)")
    p_run.add_argument("--out", default=None, help="output root (default: paths.figures_dir)")
    p_run.add_argument("--scale", choices=("ci", "default", "full"), default=None, help="synthetic study size")
    p_run.add_argument("--null", action="store_true", help="the null synthetic study")
    p_run.add_argument("--between-subject-sd", type=float, default=None, metavar="X",
                       help="multiplier of the between-subject SDs of the synthetic study's planted effects (0-10)")
    p_run.add_argument("--seed", type=int, default=None)
    par = p_run.add_mutually_exclusive_group()
    par.add_argument("--workers", type=int, default=None, help="local dask worker processes for per-subject steps")
    par.add_argument("--scheduler", default=None, help="address of an existing dask scheduler")
    p_run.set_defaults(func=_cmd_run)

    p_cmp = sub.add_parser("compare-figures", help="compare regenerated figures with the committed ones (exit 1 on a difference)")
    p_cmp.add_argument("reference", help="committed figures root, e.g. figures/")
    p_cmp.add_argument("regenerated", help="regenerated outputs root (same <analysis>/<figure>.png layout)")
    p_cmp.add_argument("--tol", type=float, default=None, help="RMS tolerance on the 0-255 grey scale (default 2.0)")
    p_cmp.add_argument("--analyses", default=None, help="comma-separated analysis folders (default: all)")
    p_cmp.set_defaults(func=_cmd_compare_figures)
    return parser


def _cmd_compare_figures(args: argparse.Namespace) -> int:
    from .viz.compare import DEFAULT_TOLERANCE, compare_figure_dirs, format_report

    tol = DEFAULT_TOLERANCE if args.tol is None else args.tol
    names = [a for a in args.analyses.split(",") if a] if args.analyses else None
    try:
        table = compare_figure_dirs(args.reference, args.regenerated, tol=tol, analyses=names)
    except (FileNotFoundError, ValueError) as err:
        logger.error("%s", err)
        return 2
    sys.stdout.write(format_report(table, tol))
    return 0 if table["ok"].all() else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = build_parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
