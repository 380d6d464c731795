"""Result summaries written by every analysis (``summary.json`` + ``summary.md``).

Every analysis script ends with :func:`write_summary`: a machine-readable
``summary.json`` whose schema is documented in ``docs/summary-json.md``
(versioned by :data:`SCHEMA_VERSION`) and a short human-readable
``summary.md``. The JSON starts from :func:`base_summary` (analysis, package
version, configuration hash, input hashes, seed) and is deterministic: no
timestamps, sorted keys, so the same inputs + configuration + seed give a
byte-identical file.

Examples
--------
>>> from mmme_neuro.config import Config
>>> s = base_summary("demo", Config(), inputs={})
>>> s["contrasts"].append(make_contrast("ME-MaE", kind="cluster", statistic=2.5, p=0.01))
>>> sorted(s)[:3]
['analysis', 'config_hash', 'contrasts']
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from ._utils import atomic_write_text, sha256_file
from .config import Config

__all__ = [
    "BASE_KEYS",
    "CONTRAST_KEYS",
    "SCHEMA_VERSION",
    "base_summary",
    "dataset_hash",
    "dumps_summary",
    "cluster_test_name",
    "format_p",
    "hash_inputs",
    "make_contrast",
    "model_fields",
    "p_text",
    "planned_markdown",
    "planned_records",
    "to_jsonable",
    "validate_summary",
    "write_summary",
]

logger = logging.getLogger(__name__)

#: Version of the summary.json schema (``docs/summary-json.md``). Bump the major
#: number when a key is removed or changes meaning, the minor one when a key is added.
SCHEMA_VERSION: str = "1.1"

#: Keys present in every summary.json.
BASE_KEYS: tuple[str, ...] = (
    "schema_version",
    "analysis",
    "package",
    "package_version",
    "config_hash",
    "dataset_hash",
    "inputs",
    "seed",
    "subjects",
    "n_subjects",
    "epochs_per_condition",
    "exclusions_by_reason",
    "contrasts",
    "results",
)

#: Keys of every record in ``contrasts`` (None when not applicable).
CONTRAST_KEYS: tuple[str, ...] = (
    "contrast",
    "kind",
    "location",
    "time_s",
    "freq_hz",
    "statistic",
    "p",
    "effect_size",
)

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` recursively to plain JSON types.

    numpy scalars and arrays, pandas objects, paths, tuples and sets are
    converted; NaN, infinities, ``pd.NA`` and ``NaT`` become None; mapping keys
    become strings.

    Parameters
    ----------
    obj : object
        Object to convert.

    Returns
    -------
    out : object
        Made of dict, list, str, int, float, bool and None only.
    """
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, Mapping):
        return {str(to_jsonable(k)) if not isinstance(k, str) else k: to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, pd.DataFrame):
        return [to_jsonable(rec) for rec in obj.to_dict(orient="records")]
    if isinstance(obj, pd.Series):
        return to_jsonable(obj.to_dict())
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, set | frozenset):
        return sorted((to_jsonable(v) for v in obj), key=lambda v: (str(type(v)), str(v)))
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, pd.Timestamp | dt.datetime | dt.date):
        return None if pd.isna(obj) else obj.isoformat()
    if isinstance(obj, pd.Timedelta | dt.timedelta):
        return None if pd.isna(obj) else obj.total_seconds()
    if obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, complex | np.complexfloating):
        raise TypeError(f"complex values are not JSON-serialisable: {obj!r}")
    raise TypeError(f"Cannot convert {type(obj).__name__} to JSON: {obj!r}")


def dumps_summary(summary: Mapping[str, Any]) -> str:
    """Serialise a summary deterministically (sorted keys, indent 2, NaN -> null, final newline)."""
    return json.dumps(to_jsonable(summary), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_summary(out_dir: str | os.PathLike, summary: Mapping[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``summary.json`` and ``summary.md`` into ``out_dir``, atomically.

    Parameters
    ----------
    out_dir : path-like
        Output directory (created if needed).
    summary : mapping
        The summary; usually :func:`base_summary` plus the analysis' results.
        Converted with :func:`to_jsonable`.
    markdown : str
        Human-readable summary (a final newline is added if missing).

    Returns
    -------
    json_path, md_path : pathlib.Path
        The written files.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = atomic_write_text(out_dir / "summary.json", dumps_summary(summary))
    md_path = atomic_write_text(out_dir / "summary.md", markdown if markdown.endswith("\n") else markdown + "\n")
    logger.info("wrote %s and %s", json_path, md_path)
    return json_path, md_path


#: Sub-trees and files left out of a directory's input hash: our own records, caches and reports,
#: not data. first-level: results cached by the analyses (mmme_neuro.pipeline); hashing
#: them would make an analysis' dataset_hash depend on which other analyses ran before.
#: conversion (per-subject records) and physio-binary (a fast copy of the physiology
#: tables) hold the files' modification times, and qa the reports' rendering: hashing
#: them made the dataset_hash differ between two conversions of the same data.
#: conversion_summary.json records the configuration hash of the conversion: hashing it
#: made the dataset_hash change with any new configuration key, the data unchanged.
_NOT_INPUT_PATHS: tuple[str, ...] = (
    ".mmme-neuro.lock",  # a conversion's lock (mmme_neuro.manifest)
    "derivatives/mmme-neuro/study_manifest.json",  # hashes of the records above (which hold modification times)
    "derivatives/mmme-neuro/conversion_summary.json",
    "derivatives/mmme-neuro/first-level",
    "derivatives/mmme-neuro/conversion",
    "derivatives/mmme-neuro/physio-binary",
    "derivatives/mmme-neuro/qa",
    # the coding file's table kept for the dataset summary (which hashes it as its own input); the analyses of
    # the recordings do not read it (their events are in events.tsv, exclusions.tsv), and it would have changed
    # the dataset_hash of every study
    "derivatives/mmme-neuro/coded_expressions.json",
    "derivatives/mmme-neuro/coded_expressions.tsv",
)


def _hash_directory(path: Path) -> str:
    """Hash of a directory tree: relative paths and contents of all its files (our records and caches excluded)."""
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        if any(rel == d or rel.startswith(d + "/") for d in _NOT_INPUT_PATHS):
            continue
        h.update(f"{rel}\0{sha256_file(file)}\n".encode())
    return h.hexdigest()


def hash_inputs(inputs: Mapping[str, str | os.PathLike]) -> dict[str, str]:
    """Return {name: sha256} of the analysis inputs.

    Parameters
    ----------
    inputs : mapping of str to path-like or str
        Name -> file or directory path. A directory is hashed over the
        relative paths and contents of all its files, except mmme-neuro's own
        records, caches and reports in a BIDS tree (``derivatives/mmme-neuro/``
        ``first-level``, ``conversion``, ``physio-binary``, ``qa``,
        ``conversion_summary.json``, ``study_manifest.json``; the conversion
        lock ``.mmme-neuro.lock``). A value that is already
        a SHA-256 hex digest (64 lower-case hex characters, not an existing
        path) is taken as is.

    Returns
    -------
    hashes : dict
        Name -> SHA-256 hex digest, sorted by name.

    Raises
    ------
    FileNotFoundError
        If a path does not exist.
    """
    out: dict[str, str] = {}
    for name in sorted(inputs):
        value = inputs[name]
        path = Path(value)
        if path.is_file():
            out[name] = sha256_file(path)
        elif path.is_dir():
            out[name] = _hash_directory(path)
        elif isinstance(value, str) and _SHA256_RE.match(value):
            out[name] = value
        else:
            raise FileNotFoundError(f"Input {name!r} not found: {value}")
    return out


def dataset_hash(input_hashes: Mapping[str, str]) -> str:
    """SHA-256 of the sorted input hashes: identifies the data independently of input names."""
    joined = "\n".join(sorted(input_hashes.values()))
    return hashlib.sha256(joined.encode()).hexdigest()


def base_summary(analysis: str, config: Config, inputs: Mapping[str, str | os.PathLike]) -> dict[str, Any]:
    """Build the common header of a summary.json.

    Parameters
    ----------
    analysis : str
        Name of the analysis (e.g. ``"dataset_summary"``).
    config : Config
        Effective configuration.
    inputs : mapping of str to path-like
        Name -> input file or directory (see :func:`hash_inputs`).

    Returns
    -------
    summary : dict
        All :data:`BASE_KEYS`; ``subjects`` (list of pseudonyms),
        ``epochs_per_condition``, ``exclusions_by_reason``, ``contrasts`` and
        ``results`` are empty, to be filled by the analysis.
    """
    hashes = hash_inputs(inputs)
    return {
        "schema_version": SCHEMA_VERSION,
        "analysis": str(analysis),
        "package": "mmme-neuro",
        "package_version": __version__,
        "config_hash": config.hash(),
        "dataset_hash": dataset_hash(hashes),
        "inputs": hashes,
        "seed": int(config.seed),
        "subjects": [],
        "n_subjects": 0,
        "epochs_per_condition": {},
        "exclusions_by_reason": {},
        "contrasts": [],
        "results": {},
    }


def make_contrast(
    contrast: str,
    *,
    kind: str,
    location: str | list[str] | None = None,
    time_s: float | list[float] | None = None,
    freq_hz: float | list[float] | None = None,
    statistic: float | None = None,
    p: float | None = None,
    effect_size: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build one record of ``contrasts`` with all :data:`CONTRAST_KEYS`.

    Parameters
    ----------
    contrast : str
        Conditions compared, e.g. ``"ME-MaE"``.
    kind : str
        What was tested: ``"cluster"``, ``"node"``, ``"feature"``, ``"global"``...
    location : str | list of str | None
        Channel(s), node(s), region(s) or feature name.
    time_s : float | list of float | None
        Time (s) or ``[start, stop]`` window relative to the epoch landmark.
    freq_hz : float | list of float | None
        Frequency (Hz) or ``[low, high]`` band.
    statistic : float | None
        Test statistic (t, F, cluster mass...); name it in ``extra`` as
        ``statistic_name``.
    p : float | None
        p-value (corrected as stated in ``extra["correction"]``).
    effect_size : float | None
        Effect size; name it in ``extra`` as ``effect_size_name``.
    **extra
        Further keys (``statistic_name``, ``effect_size_name``, ``correction``,
        ``n``, ``ci_low``, ``ci_high``...).

    Returns
    -------
    record : dict
    """
    record = {
        "contrast": contrast,
        "kind": kind,
        "location": location,
        "time_s": time_s,
        "freq_hz": freq_hz,
        "statistic": statistic,
        "p": p,
        "effect_size": effect_size,
    }
    record.update(extra)
    return record


def model_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`make_contrast` keys of one trial-level model term.

    Parameters
    ----------
    row : mapping
        One condition-term row of :func:`mmme_neuro.stats.mixed_model`.

    Returns
    -------
    fields : dict
        ``statistic`` (t), ``statistic_name``, ``df``, ``test``,
        ``random_effects`` (the structure fitted), ``converged`` and
        ``subject_level_test``: the paired t-test of the same contrast on
        subject means (``test``, ``t``, ``df``, ``p``, ``n``, ``mean_diff``),
        which a reader should see beside every trial-level p-value.
    """
    return {
        "statistic": row["t"], "statistic_name": "t", "df": row["df"], "test": row["test"],
        "random_effects": row["random_effects"], "converged": bool(row["converged"]),
        "subject_level_test": {
            "test": "paired t-test on subject means", "t": row.get("paired_t"), "df": row.get("paired_df"),
            "p": row.get("paired_p"), "n": row.get("paired_n_subjects"), "mean_diff": row.get("paired_mean_diff"),
        },
    }


def _num(x: Any) -> float | None:
    """A finite float, or None (NaN, None)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def planned_records(table: pd.DataFrame, *, units: str) -> list[dict[str, Any]]:
    """``summary.json`` records (``kind: "planned"``) of a planned-contrast table.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`mmme_neuro.stats.planned_contrasts` output.
    units : str
        Unit of ``mean_diff`` (``"µV"``, ``"dB"``, ``"1"``).

    Returns
    -------
    records : list of dict
        :func:`make_contrast` records: ``location`` (the ROI), ``time_s``,
        ``freq_hz``, ``statistic`` (t), ``p`` (corrected within the planned
        family) and ``p_uncorrected``, ``effect_size`` (Cohen's dz), with
        ``statistic_name``, ``df``, ``test``, ``correction``,
        ``family_size``, ``name``, ``band``, ``mean_diff``, ``units``,
        ``n``, ``ci_low``, ``ci_high``, ``significant``.
    """
    out = []
    for r in table.to_dict(orient="records"):
        tmin, tmax, fmin, fmax = (
            _num(r.get(k)) for k in ("tmin_s", "tmax_s", "fmin_hz", "fmax_hz")
        )
        out.append(
            make_contrast(
                r["contrast"],
                kind="planned",
                location=str(r["roi"]).split(","),
                time_s=[tmin, tmax] if tmin is not None else None,
                freq_hz=[fmin, fmax] if fmin is not None else None,
                statistic=_num(r["t"]),
                p=_num(r["p_corrected"]),
                effect_size=_num(r["cohen_dz"]),
                statistic_name="t",
                df=_num(r["df"]),
                test=r["test"],
                correction=r["correction"],
                family_size=int(r["family_size"]),
                p_uncorrected=_num(r["p"]),
                effect_size_name="cohen_dz",
                name=r["name"],
                band=r.get("band"),
                measure=r.get("measure"),
                mean_diff=_num(r["mean_diff"]),
                units=units,
                n=int(r["n_subjects"]),
                ci_low=_num(r["ci_low"]),
                ci_high=_num(r["ci_high"]),
                significant=bool(r["significant"]),
            )
        )
    return out


def planned_markdown(
    records: list[Mapping[str, Any]], *, title: str = "Planned contrasts"
) -> list[str]:
    """The summary.md section of the planned contrasts (every p with its test and df).

    Parameters
    ----------
    records : list of mapping
        ``contrasts`` records of ``kind: "planned"`` (:func:`planned_records`).
    title : str
        Section title.

    Returns
    -------
    lines : list of str
        Empty when there is no record.
    """
    if not records:
        return []
    corr = records[0].get("correction", "none")
    k = records[0].get("family_size", len(records))
    how = (
        "uncorrected"
        if corr == "none"
        else f"{corr.capitalize()}-corrected over the {k} planned contrast(s)"
    )
    lines = ["", f"## {title} (ROI x window, paired t-tests on subject means; {how})", ""]
    for c in records:
        where = [", ".join(c["location"] or [])]
        if c.get("time_s"):
            where.append(f"{c['time_s'][0]:g}-{c['time_s'][1]:g} s")
        if c.get("band"):
            hz = f" {c['freq_hz'][0]:g}-{c['freq_hz'][1]:g} Hz" if c.get("freq_hz") else ""
            where.append(f"{c['band']}{hz}")
        if c.get("measure") and c.get("kind") == "planned" and c.get("units") == "1":
            where.append(str(c["measure"]))
        head = f"- {c['name']} ({c['contrast']}; {'; '.join(where)})"
        if c.get("statistic") is None or c.get("df") is None:
            lines.append(f"{head}: not tested (fewer than 2 subjects with both conditions).")
            continue
        u = "" if c.get("units") in (None, "1") else f" {c['units']}"
        ci = (
            f" [{c['ci_low']:.3g}, {c['ci_high']:.3g}]"
            if c.get("ci_low") is not None and c.get("ci_high") is not None
            else ""
        )
        p_corr = (
            p_text(c["p_uncorrected"]) + " (uncorrected)"
            if corr == "none"
            else f"{p_text(c['p'])} ({corr}; uncorrected {p_text(c['p_uncorrected'])})"
        )
        dz = "n/a" if c.get("effect_size") is None else f"{c['effect_size']:.2f}"
        lines.append(
            f"{head}: mean difference {c['mean_diff']:.3g}{u}{ci}, paired t({c['df']:.0f}) = "
            f"{c['statistic']:.2f}, {p_corr}, dz = {dz}, n = {c['n']}"
            + (" **(significant)**." if c.get("significant") else ".")
        )
    return lines


def format_p(p: float | None, *, n_permutations: int | None = None) -> str:
    """A p-value as a summary prints it: never 0, never below a permutation test's resolution.

    Parameters
    ----------
    p : float | None
        The p-value (None or NaN: ``"n/a"``).
    n_permutations : int | None
        Number of permutations (the observed arrangement included) of a
        permutation p-value; its smallest possible value is ``1 /
        n_permutations``, printed as ``"<= <that>"``.

    Returns
    -------
    text : str
        ``"0.0123"``-style (3 significant digits), scientific below 1e-3
        (``"3.9e-18"``), ``"< 1e-300"`` where a p underflows.

    Examples
    --------
    >>> format_p(0.0)
    '< 1e-300'
    >>> format_p(0.001, n_permutations=1000)
    '<= 0.001'
    """
    if p is None or not math.isfinite(float(p)):
        return "n/a"
    p = float(p)
    if n_permutations:
        floor = 1.0 / n_permutations
        if p <= floor * (1 + 1e-9):
            # the floor rounded *up* to 2 significant digits: the text never claims a smaller p
            step = 10.0 ** (math.floor(math.log10(floor)) - 1)
            return f"<= {math.ceil(floor / step - 1e-9) * step:.2g}"
        return f"{p:.2g}"
    if p < 1e-300:
        return "< 1e-300"
    return f"{p:.3g}" if p >= 1e-3 else f"{p:.2g}"


def p_text(p: float | None, n_permutations: int | None = None, *, name: str = "p") -> str:
    """A p-value with its relation sign: ``p = 0.0123``, ``p <= 0.002``, ``p < 1e-300``.

    Parameters
    ----------
    p : float | None
        The p-value.
    n_permutations : int | None
        See :func:`format_p`.
    name : str
        What is printed before the relation (``"p"``, ``"p_FDR"`` ...).

    Returns
    -------
    text : str
    """
    text = format_p(p, n_permutations=n_permutations)
    return f"{name} {text}" if text.startswith("<") else f"{name} = {text}"


def cluster_test_name(info: Mapping[str, Any]) -> str:
    """The test behind a cluster p, with its number of sign flips (the observed one included).

    Parameters
    ----------
    info : mapping
        ``n_permutations`` and ``exact`` of a cluster test.

    Returns
    -------
    text : str
        E.g. ``"cluster permutation test, 512 sign flips (exact)"``.
    """
    exact = " (exact)" if info.get("exact") else ""
    return f"cluster permutation test, {info['n_permutations']} sign flips{exact}"


def validate_summary(summary: Mapping[str, Any]) -> None:
    """Check that ``summary`` follows the documented schema.

    Raises
    ------
    ValueError
        Naming every missing key or malformed value.
    """
    problems = [f"missing key {key!r}" for key in BASE_KEYS if key not in summary]
    if summary.get("schema_version") not in (None, SCHEMA_VERSION):
        problems.append(f"schema_version {summary.get('schema_version')!r} != {SCHEMA_VERSION!r}")
    for name in ("epochs_per_condition", "exclusions_by_reason", "inputs", "results"):
        if name in summary and not isinstance(summary[name], Mapping):
            problems.append(f"{name!r} must be a mapping")
    if "subjects" in summary and not isinstance(summary["subjects"], list | tuple):
        problems.append("'subjects' must be a list")
    for i, rec in enumerate(summary.get("contrasts", [])):
        missing = [k for k in CONTRAST_KEYS if k not in rec]
        if missing:
            problems.append(f"contrasts[{i}] lacks {missing}")
    if problems:
        raise ValueError("Invalid summary:\n  " + "\n  ".join(problems))
