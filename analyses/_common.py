"""Shared scaffolding of the analysis scripts (``python -m analyses.<name>``).

Every script is thin: it builds its parser with :func:`build_parser`, adds its
own options, calls :func:`setup` and then the library, and saves with
:func:`mmme_neuro.viz.style.save_figure` and
:func:`mmme_neuro.reporting.write_summary`. Common options:

``--config FILE``
    TOML configuration (``docs/configuration.md``); default: the defaults.
``--out DIR``
    Output directory; default ``<paths.figures_dir>/<analysis name>``.
``--scale {ci,default,full}``, ``--null``, ``--seed N``
    Override ``simulation.scale``, ``simulation.null`` and the master seed
    (they choose the synthetic study analysed when no real data are given).
``--workers N``, ``--scheduler ADDRESS``
    Override ``run.workers`` / ``run.scheduler`` (per-subject steps on dask,
    :mod:`mmme_neuro.pipeline`; results do not depend on them).
``-v/--verbose``
    Logging: quiet by default (warnings only), ``-v`` info, ``-vv`` debug.

Examples
--------
>>> parser = build_parser("Demo analysis.", analysis="demo")
>>> args = parser.parse_args(["--scale", "ci", "--seed", "3"])
>>> (args.analysis, args.scale, args.seed)
('demo', 'ci', 3)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from mmme_neuro import __version__
from mmme_neuro._utils import atomic_path
from mmme_neuro.config import Config, ConfigError, load_config

__all__ = ["SCALES", "build_parser", "configure_logging", "effective_config", "run_script", "setup", "write_csv",
           "write_timing"]

logger = logging.getLogger("analyses")

#: Sizes of the synthetic study (``mmme_neuro.simulate.scales``).
SCALES: tuple[str, ...] = ("ci", "default", "full")

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _caller_analysis_name(depth: int = 2) -> str:
    """Module name (last component) of the script that called :func:`build_parser`."""
    frame = sys._getframe(depth)
    spec = frame.f_globals.get("__spec__")
    name = spec.name if spec is not None else frame.f_globals.get("__name__", "analysis")
    return name.rsplit(".", 1)[-1]


def build_parser(description: str, analysis: str | None = None) -> argparse.ArgumentParser:
    """Return an argument parser with the options common to all analysis scripts.

    Parameters
    ----------
    description : str
        Help text of the script (usually the first line of its docstring).
    analysis : str | None
        Analysis name, used for the default output directory and the
        summary; None: the calling module's name (``analyses.dataset_summary``
        gives ``dataset_summary``, also under ``python -m``).

    Returns
    -------
    parser : argparse.ArgumentParser
        Scripts add their own options before parsing.
    """
    name = analysis or _caller_analysis_name()
    parser = argparse.ArgumentParser(
        prog=f"python -m analyses.{name}",
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.set_defaults(analysis=name)
    parser.add_argument("--config", metavar="FILE", type=Path, default=None, help="TOML configuration file (default: built-in defaults)")
    parser.add_argument("--bids-root", metavar="PATH", type=Path, default=None, help="BIDS study to analyse (overrides paths.bids_root; default: the synthetic study)")
    parser.add_argument("--out", metavar="DIR", type=Path, default=None, help=f"output directory (default: <paths.figures_dir>/{name})")
    parser.add_argument("--scale", choices=SCALES, default=None, help="size of the synthetic study (overrides simulation.scale)")
    parser.add_argument("--null", action="store_true", default=None, help="analyse the null synthetic study, with no planted effect (overrides simulation.null)")
    parser.add_argument("--between-subject-sd", type=float, default=None, metavar="X", help="multiplier of the between-subject SDs of the synthetic study's planted effects, 0-10 (overrides simulation.between_subject_sd)")
    parser.add_argument("--seed", type=int, default=None, help="master random seed (overrides seed)")
    parser.add_argument("--workers", type=int, default=None, metavar="N", help="local worker processes for per-subject steps (overrides run.workers)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS", help="existing dask scheduler for per-subject steps (overrides run.scheduler)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging: -v info, -vv debug (default: warnings only)")
    parser.add_argument("--version", action="version", version=f"mmme-neuro {__version__}")
    return parser


def configure_logging(verbose: int = 0) -> None:
    """Log warnings (``verbose=0``), info (1) or debug (>= 2) of mmme_neuro and the scripts to stderr."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format=_LOG_FORMAT)
    for name in ("mmme_neuro", "analyses"):
        logging.getLogger(name).setLevel(level)


def _use_agg_if_headless() -> None:
    """Scripts write files and never show figures: use the Agg backend unless pyplot is already set up."""
    if "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        matplotlib.use("Agg")


def setup(args: argparse.Namespace) -> tuple[Config, Path]:
    """Configure logging, load the configuration with the overrides, create the output directory.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments of a parser from :func:`build_parser`.

    Returns
    -------
    config : Config
        Effective configuration (file + ``--scale``/``--null``/``--seed``).
    out_dir : pathlib.Path
        Output directory (created).

    Raises
    ------
    mmme_neuro.config.ConfigError
        If the configuration file is missing or invalid.
    """
    configure_logging(getattr(args, "verbose", 0))
    _use_agg_if_headless()
    config = effective_config(args)
    out = getattr(args, "out", None)
    out_dir = Path(out) if out is not None else Path(config.paths.figures_dir) / args.analysis
    out_dir.mkdir(parents=True, exist_ok=True)
    logger.info(
        "%s: config hash %s, seed %d, output %s", args.analysis, config.hash(), config.seed, os.fspath(out_dir)
    )
    return config, out_dir


def effective_config(args: argparse.Namespace) -> Config:
    """The configuration of ``--config`` with the overrides of ``--scale``, ``--null``,
    ``--between-subject-sd``, ``--seed``, ``--workers``, ``--scheduler`` and ``--bids-root``.

    Raises
    ------
    mmme_neuro.config.ConfigError
        If the configuration file is missing or invalid.
    """
    overrides: dict[str, Any] = {}
    simulation: dict[str, Any] = {}
    if getattr(args, "scale", None) is not None:
        simulation["scale"] = args.scale
    if getattr(args, "null", None):
        simulation["null"] = True
    if getattr(args, "between_subject_sd", None) is not None:
        simulation["between_subject_sd"] = args.between_subject_sd
    if simulation:
        overrides["simulation"] = simulation
    if getattr(args, "seed", None) is not None:
        overrides["seed"] = args.seed
    run = {k: getattr(args, k) for k in ("workers", "scheduler") if getattr(args, k, None) is not None}
    if run:
        overrides["run"] = run
    if getattr(args, "bids_root", None) is not None:
        overrides["paths"] = {"bids_root": str(args.bids_root)}
    return load_config(getattr(args, "config", None), **overrides)


def group_jobs(config: Config, n_jobs: int = 1) -> int:
    """Processes of a group level's parallel parts (permutations): ``n_jobs``, or the local workers of the first level.

    With a local cluster (``run.workers``) those processes are idle once the
    first level is done; with a remote scheduler the group level runs here,
    on ``n_jobs``. The results do not depend on it.
    """
    return n_jobs if config.run.scheduler else max(n_jobs, config.run.workers)


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """Write a table atomically as UTF-8 CSV with LF line ends and 10 significant digits (deterministic)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, lineterminator="\n", encoding="utf-8", float_format="%.10g")
    return path


def write_timing(out_dir: Path, step: Any, group_start: float) -> Path:
    """Write ``timing.json``: the per-subject step (``step.timing()`` of its
    :class:`mmme_neuro.pipeline.RunReport`) and the group level (seconds since
    ``group_start``, a :func:`time.perf_counter` value).

    A run log, not a result file (it changes from run to run): read by
    ``mmme-neuro run`` for its run summary, kept out of ``summary.json``.
    """
    stages = {"first_level": step.timing(), "group_s": time.perf_counter() - group_start}
    path = out_dir / "timing.json"
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(stages, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def run_script(args: argparse.Namespace, body: Callable[[Config, Path], Any],
               errors: tuple[type[BaseException], ...] = (ConfigError, FileNotFoundError, ValueError)) -> int:  # fmt: skip
    """:func:`setup`, then ``body(config, out_dir)``; the exit code of a script's ``main``.

    Invalid input or configuration (``errors``) is logged as one clear line
    by the script's logger and gives exit code 1; success gives 0.
    """
    try:
        config, out_dir = setup(args)
        body(config, out_dir)
    except errors as err:
        logging.getLogger(f"analyses.{args.analysis}").error("%s", err)
        return 1
    return 0
