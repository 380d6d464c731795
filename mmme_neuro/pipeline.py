"""Study-scale first-level runs: per-subject results in parallel, cached as BIDS derivatives, resumable.

A *first-level function* takes one BIDS session and the configuration and
returns a mapping name -> :class:`xarray.DataArray`, :class:`xarray.Dataset`,
:class:`pandas.DataFrame` (small per-subject arrays and tables),
:class:`mne.Epochs` or a JSON-serialisable ``dict``.
:func:`run_subjects` applies it to every subject of a BIDS study:

* **cache** - each subject's result is written (atomically: temporary
  directory + rename) to
  ``<derivatives>/first-level/<stage>/<subject>/``, where ``<derivatives>``
  is ``paths.derivatives_dir`` of the configuration, by default
  ``<bids_root>/derivatives/mmme-neuro`` (:func:`derivatives_root`; set it
  elsewhere and nothing is written under a read-only BIDS root), with a ``manifest.json`` holding its key: SHA-256 over the subject's input
  files (``sub-XX/`` of the BIDS study and the study's exclusion report),
  the settings, the stage name and the package version. The manifest also
  records each file's size, modification time and hash: an unchanged file is
  not read again to check the cache. A study-wide index
  (``first-level/.file-hashes/<subject>.json``) shares these hashes between
  stages, so a subject's 1.2 GB of input is hashed once, not once per stage.
  A re-run loads every subject whose key still matches and recomputes only
  the others; a run interrupted half-way resumes where it stopped. With
  ``run.cache = false`` nothing is cached: every subject is computed, the
  results pass through a temporary directory removed at the end of the run,
  and the hash index is not written.
* **parallel** - subjects run on a dask.distributed cluster: a
  ``LocalCluster`` of ``workers`` single-threaded processes, or an existing
  scheduler (``scheduler="tcp://host:8786"``, e.g. started on an HPC cluster
  with dask-jobqueue). Workers write their result to the cache and return
  only a status, so the client's memory stays flat as subjects grow; the
  group level reads the small per-subject files. ``workers=1`` without a
  scheduler runs in-process (no cluster).
* **determinism** - the step runs with one BLAS/OpenMP thread wherever it
  runs, so a subject's result does not depend on the number of workers or
  on where it was computed.
* **failures** - a subject whose function raises is reported (subject,
  error type and message) and the others go on. Failures are not cached: a
  re-run tries the subject again (the code or the environment may have been
  fixed since). Inside :func:`remember_failures`, runs that follow one
  another (``mmme-neuro run``: the first level of all analyses, then each
  analysis script's own run) reuse a failure of the same key instead of
  computing the subject again.
* **shared upstream steps** - ``upstream={"clean": Upstream(func, stage)}``
  gives the function the cached result of another step as a keyword
  argument, computing (and caching) it first where it is missing. Several
  analyses then share one expensive pass per subject (the preprocessed
  epochs of :mod:`mmme_neuro.steps`) instead of repeating it.
* **one task graph** - :func:`run_steps` runs several steps (:class:`Step`)
  at once: every (step, subject) is a task that waits only for its own
  subject's upstream task. No worker waits for a step to end on every
  subject before the next begins, and each upstream step runs once per
  subject however many steps read it. ``mmme-neuro run`` runs the first
  level of all its analyses this way; :func:`run_subjects` is the one-step case.

Tables are stored as CSV with a dtype manifest (``float`` with 17 significant
digits, ``bool``, ``int``, strings with ``None`` kept apart from ``""``), so a
cached table reads back equal to the computed one; arrays as netCDF
(:func:`mmme_neuro.containers.save_netcdf`); epochs as FIF in double
precision (MNE's default, single, would round the data); dicts as JSON.
Nothing is pickled to disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mne
import numpy as np
import pandas as pd
import xarray as xr
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from . import __version__
from ._utils import atomic_write_text, sha256_file, stat_key
from .bids import recorded_file_hashes
from .config import Config
from .containers import load_netcdf, save_netcdf

__all__ = ["CacheNotWritableError", "RunReport", "Step", "Upstream", "cache_dir", "derivative_paths", "derivatives_root",
           "load_result", "local_cluster", "remember_failures", "run_steps",
           "run_subjects", "save_result", "subject_key"]

logger = logging.getLogger(__name__)

FirstLevel = Callable[[Any, Config], Mapping[str, Any]]
#: Part of every cache key: raised when cached results of the same inputs and settings would change
#: (2: steps pinned to one BLAS thread, so results no longer depend on where they were computed;
#: 3: decoding features draw the physiology NE controls with the window of the shared EEG pass;
#: 4: the network step also stores per-epoch graph metrics;
#: 5: FIRs applied by mmme_neuro.preprocessing.fir_zero_phase (round-off), EMG spans padded for both filters;
#: 6: Morlet TFR by mmme_neuro.tfr.morlet_decimated, native-rate low-pass by preprocessing.fir_decimate (round-off;
#: ICA then converges elsewhere within its tolerance);
#: 7: only the epoch windows are cleaned after the high-pass (bad channels found on them; round-off elsewhere),
#: landmarks on half samples round up);
#: 8: the high-pass of the epoch windows by overlap-save FFTs (round-off; ICA then converges elsewhere), EMG power
#: batched by window length (bit-identical); 9: the shared clean step keeps its fitted ICA (``ica-ica.fif``)).
CACHE_VERSION = 9
_NA = "\\N"  # CSV marker of a missing value (keeps "" apart from None/NaN)
#: Failures remembered inside :func:`remember_failures`: (study, stage, subject, key) -> error.
_FAILURES: ContextVar[dict[tuple[str, str, str, str], str] | None] = ContextVar("_FAILURES", default=None)


class CacheNotWritableError(PermissionError, ValueError):
    """The first-level cache cannot be written where the configuration puts it (a read-only study ...).

    A :class:`PermissionError` and, as a configuration problem, a :class:`ValueError`: the
    analysis scripts report it as one line with exit code 1.
    """


# ----------------------------------------------------------------------------- storage


def _table_kinds(df: pd.DataFrame) -> dict[str, str]:
    kinds = {}
    for c in df.columns:
        s = df[c]
        if pd.api.types.is_bool_dtype(s):
            kinds[c] = "bool"
        elif pd.api.types.is_integer_dtype(s):
            kinds[c] = "Int64" if pd.api.types.is_extension_array_dtype(s) else "int"  # nullable: may hold <NA>
        elif pd.api.types.is_float_dtype(s):
            kinds[c] = "float"
        else:
            vals = [v for v in s if v is not None and not (isinstance(v, float) and np.isnan(v))]
            if vals and all(isinstance(v, bool | np.bool_) for v in vals):
                kinds[c] = "object_bool"
            elif vals and all(isinstance(v, float | int | np.floating | np.integer) and not isinstance(v, bool) for v in vals):
                kinds[c] = "object_float"
            else:
                kinds[c] = "str"
    return kinds


def _write_table(df: pd.DataFrame, path: Path) -> dict[str, str]:
    if not all(isinstance(c, str) for c in df.columns) or df.columns.duplicated().any():
        raise ValueError(f"{path.name}: table columns must be unique strings")
    kinds = _table_kinds(df)
    df.to_csv(path, index=False, lineterminator="\n", encoding="utf-8", na_rep=_NA, float_format="%.17g")
    return kinds


def _read_table(path: Path, kinds: Mapping[str, str]) -> pd.DataFrame:
    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[], encoding="utf-8")
    missing = [c for c in kinds if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: column {missing[0]!r} of the manifest is missing (a damaged cache; delete it to recompute)")
    out: dict[str, Any] = {}
    floats = [c for c, kind in kinds.items() if kind == "float"]
    if floats:
        # all float columns in one conversion (a feature table has ~1200): Python's float() of each text, as
        # Series.astype(float) does column by column, 10x faster
        block = df[floats].to_numpy(dtype=object)
        block[block == _NA] = "nan"
        out.update(pd.DataFrame(block.astype(float), columns=floats, index=df.index).items())
    for c, kind in kinds.items():
        if kind == "float":
            continue
        raw = df[c]
        na = raw.eq(_NA).to_numpy()
        if kind == "object_float":
            v = raw.mask(na).astype(float)
            out[c] = pd.Series([None if m else x for x, m in zip(v, na, strict=True)], dtype=object)
        elif kind == "int":
            out[c] = raw.astype(np.int64)
        elif kind == "Int64":
            out[c] = pd.array([None if m else int(x) for x, m in zip(raw, na, strict=True)], dtype="Int64")
        elif kind in ("bool", "object_bool"):
            b = [None if m else x == "True" for x, m in zip(raw, na, strict=True)]
            out[c] = pd.Series(b, dtype=bool if kind == "bool" else object)
        else:
            out[c] = pd.Series([None if m else x for x, m in zip(raw, na, strict=True)], dtype=object)
    return pd.DataFrame(out, columns=list(kinds))


def save_result(result: Mapping[str, Any], directory: str | os.PathLike, manifest: Mapping[str, Any] | None = None) -> Path:
    """Write a first-level result atomically (temporary directory, then rename).

    Parameters
    ----------
    result : mapping
        Name -> DataArray / Dataset (netCDF), DataFrame (CSV + dtypes),
        Epochs or ICA (FIF) or dict (JSON).
    directory : path-like
        Target directory; replaced if it exists.
    manifest : mapping | None
        Extra entries of ``manifest.json`` (e.g. the cache key).

    Returns
    -------
    directory : pathlib.Path
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        entries: dict[str, Any] = {}
        for name, obj in result.items():
            if not name.isidentifier():
                raise ValueError(f"result name {name!r} must be an identifier")
            if isinstance(obj, xr.DataArray | xr.Dataset):
                save_netcdf(obj, tmp / f"{name}.nc")
                entries[name] = {"type": "dataarray" if isinstance(obj, xr.DataArray) else "dataset"}
            elif isinstance(obj, pd.DataFrame):
                kinds = _write_table(obj, tmp / f"{name}.csv")
                entries[name] = {"type": "table", "columns": [[c, k] for c, k in kinds.items()]}  # ordered
            elif isinstance(obj, mne.BaseEpochs):
                # double precision: MNE's default (single) would round the data, and a cached
                # result must equal the computed one
                obj.save(tmp / f"{name}-epo.fif", fmt="double", overwrite=True, verbose=False)
                entries[name] = {"type": "epochs"}
            elif isinstance(obj, mne.preprocessing.ICA):
                obj.save(tmp / f"{name}-ica.fif", overwrite=True, verbose=False)
                entries[name] = {"type": "ica"}
            elif isinstance(obj, dict):
                (tmp / f"{name}.json").write_text(json.dumps(obj, indent=1, sort_keys=True, default=_jsonable),
                                                  encoding="utf-8")  # fmt: skip
                entries[name] = {"type": "json"}
            else:
                raise TypeError(f"result {name!r}: cannot store {type(obj).__name__} "
                                "(DataArray, Dataset, DataFrame, Epochs, ICA or dict)")  # fmt: skip
        doc = {**(manifest or {}), "entries": entries}
        (tmp / "manifest.json").write_text(json.dumps(doc, indent=1, sort_keys=True), encoding="utf-8")
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load_result(directory: str | os.PathLike, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Read a result written by :func:`save_result` (name -> DataArray / Dataset / DataFrame / Epochs / ICA / dict).

    ``names`` reads only those entries (e.g. leaving large per-epoch arrays on disk).
    """
    directory = Path(directory)
    doc = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    missing = sorted(set(names or ()) - set(doc["entries"]))
    if missing:
        raise KeyError(f"{directory}: no entries {missing} (has {sorted(doc['entries'])})")
    out: dict[str, Any] = {}
    for name, e in doc["entries"].items():
        if names is not None and name not in names:
            continue
        if e["type"] == "table":
            out[name] = _read_table(directory / f"{name}.csv", dict(e["columns"]))
        elif e["type"] == "epochs":
            out[name] = mne.read_epochs(directory / f"{name}-epo.fif", preload=True, verbose=False)
        elif e["type"] == "ica":
            out[name] = mne.preprocessing.read_ica(directory / f"{name}-ica.fif", verbose=False)
        elif e["type"] == "json":
            out[name] = json.loads((directory / f"{name}.json").read_text(encoding="utf-8"))
        else:
            out[name] = load_netcdf(directory / f"{name}.nc")
    return out


# ----------------------------------------------------------------------------- keys


def _subject_files(bids_root: Path, subject: str) -> list[Path]:
    base = bids_root / subject
    if not base.is_dir():
        raise FileNotFoundError(f"{bids_root}: no {subject}/ directory")
    files = sorted(p for p in base.rglob("*") if p.is_file())
    ex = bids_root / "derivatives" / "mmme-neuro" / "exclusions.tsv"
    return files + ([ex] if ex.is_file() else [])


def _input_files(root: Path, subject: str, known: Mapping[str, Sequence[Any]] | None = None) -> list[list[Any]]:
    """``[relpath, size, mtime_ns, sha256]`` of every input file of ``subject``.

    A file whose size and modification time match ``known`` (a previous
    manifest, the hash index) keeps its recorded SHA-256 instead of being read
    again: at MMME scale a subject's EEG is 1.2 GB, ~6 s of hashing otherwise.
    """
    files = []
    for f in _subject_files(root, subject):
        rel = f.relative_to(root).as_posix()
        size, mtime = stat_key(f)
        prev = (known or {}).get(rel)
        sha = str(prev[2]) if prev is not None and list(prev[:2]) == [size, mtime] else sha256_file(f)
        files.append([rel, size, mtime, sha])
    return files


def _key(config: Config, stage: str, params: Mapping[str, Any] | None, files: Sequence[Sequence[Any]]) -> str:
    """Cache key of one stage of a subject whose input files are ``files`` (see :func:`subject_key`)."""
    h = hashlib.sha256()
    # how the run is executed (workers, scheduler, cache) and where outputs go never change a result
    settings = json.dumps(config.model_dump(mode="json", exclude={"run", "paths"}), sort_keys=True)
    extra = json.dumps(dict(params or {}), sort_keys=True, default=_jsonable)
    for part in (stage, __version__, str(CACHE_VERSION), settings, extra):
        h.update(part.encode() + b"\0")
    for rel, _, _, sha in files:
        h.update(str(rel).encode() + b"\0" + str(sha).encode() + b"\0")
    return h.hexdigest()


def _work_estimate(files: Sequence[Sequence[Any]]) -> int:
    """Bytes of a subject's ``*_events.tsv``: a proxy of its work (epochs scale with the coded events)."""
    return sum(int(f[1]) for f in files if str(f[0]).endswith("_events.tsv"))


def _jsonable(value: Any) -> Any:
    """``json.dumps`` fallback for first-level parameters and results: sets as sorted lists, numpy scalars as numbers."""
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"value of type {type(value).__name__} is not JSON-serialisable: {value!r}")


def subject_key(bids_root: str | os.PathLike, subject: str, config: Config, stage: str,
                params: Mapping[str, Any] | None = None) -> str:
    """Cache key of one subject's first-level result (SHA-256 hex).

    Covers the contents and relative paths of the subject's BIDS files and of
    the study's exclusion report, every configuration setting except the
    ``run`` and ``paths`` sections (which do not change results), the
    first-level function's extra parameters, the stage, the package version
    and :data:`CACHE_VERSION`: any change recomputes the subject.
    """
    root = Path(bids_root)
    known = _known_files(root, subject, [stage], derivatives_root(root, config))
    return _key(config, stage, params, _input_files(root, subject, known))


def derivative_paths(deriv_root: str | os.PathLike, subject: str, task: str = "mmme") -> dict[str, Path]:
    """BIDS-derivative file names of a subject's MNE objects and report.

    Parameters
    ----------
    deriv_root : path-like
        The derivatives folder (:func:`mmme_neuro.pipeline.derivatives_root`).
    subject : str
        Pseudonym (``sub-01``).
    task : str
        BIDS task label.

    Returns
    -------
    paths : dict
        ``epochs`` (cleaned epochs), ``ica``, ``evoked`` (per condition),
        ``tfr`` (time-frequency power and ITC per condition), ``report``
        (:mod:`mmme_neuro.cleaning_report`), ``connectivity_<condition>``
        (the networks of ME, MaE, NE; mne-connectivity netCDF).
    """
    if not subject.startswith("sub-"):
        raise ValueError(f"subject must be a BIDS pseudonym like 'sub-01', got {subject!r}")
    d = Path(deriv_root) / subject / "eeg"
    stem = f"{subject}_task-{task}"
    out = {"epochs": d / f"{stem}_proc-clean_epo.fif", "ica": d / f"{stem}_ica.fif", "evoked": d / f"{stem}_ave.fif",
           "tfr": d / f"{stem}_tfr.h5", "report": d / f"{stem}_report.html"}  # fmt: skip
    for c in ("ME", "MaE", "NE"):
        out[f"connectivity_{c}"] = d / f"{stem}_desc-{c}_conn.nc"
    return out


def derivatives_root(bids_root: str | os.PathLike, config: Config | None = None) -> Path:
    """Where the analyses write for a study: ``paths.derivatives_dir``, or ``<bids_root>/derivatives/mmme-neuro``.

    Parameters
    ----------
    bids_root : path-like
        The BIDS study.
    config : Config | None
        Its ``paths.derivatives_dir`` (None, or a configuration without it:
        the default inside the BIDS root, where the conversion's records are).

    Returns
    -------
    directory : pathlib.Path
        Holds ``first-level/`` (the cache and its hash index).
    """
    chosen = None if config is None else config.paths.derivatives_dir
    return Path(chosen) if chosen is not None else Path(bids_root) / "derivatives" / "mmme-neuro"


def cache_dir(bids_root: str | os.PathLike, stage: str, subject: str,
              derivatives_dir: str | os.PathLike | None = None) -> Path:  # fmt: skip
    """``<derivatives>/first-level/<stage>/<subject>``; ``<derivatives>`` is ``derivatives_dir``,
    by default ``<bids_root>/derivatives/mmme-neuro`` (:func:`derivatives_root`)."""
    base = Path(derivatives_dir) if derivatives_dir is not None else derivatives_root(bids_root)
    return base / "first-level" / stage / subject


def _manifest(directory: Path) -> dict[str, Any]:
    """The cache manifest, or {} if absent or unreadable (then the subject is recomputed)."""
    try:
        return json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _hash_index(deriv: Path, subject: str) -> Path:
    """Study-wide record of a subject's input-file hashes, shared by every stage (``deriv``: :func:`derivatives_root`)."""
    return deriv / "first-level" / ".file-hashes" / f"{subject}.json"


def _known_files(root: Path, subject: str, stages: Sequence[str], deriv: Path) -> dict[str, list[Any]]:
    """``relpath -> [size, mtime_ns, sha256]`` known for a subject: the manifests of its ``stages``, its
    study-wide hash index (so the first run of a new stage does not hash 1.2 GB again) and the hashes
    the BIDS conversion recorded of the files it wrote (so neither does the first run of all). An entry
    is used only while the file's size and modification time still match it."""
    known: dict[str, list[Any]] = {}
    known.update(recorded_file_hashes(root, subject))
    try:
        known.update(json.loads(_hash_index(deriv, subject).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        pass
    for stage in stages:
        known.update({f[0]: f[1:] for f in _manifest(cache_dir(root, stage, subject, deriv)).get("files", [])})
    return known


def _remember_files(deriv: Path, subject: str, files: list[list[Any]]) -> None:
    """Record the hashes of ``files`` in the subject's hash index (atomic; a stale index only costs a re-hash)."""
    index = _hash_index(deriv, subject)
    entries = {f[0]: list(f[1:]) for f in files}
    try:
        old = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = {}
    if {k: old.get(k) for k in entries} == entries:
        return
    index.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(index, json.dumps({**old, **entries}, sort_keys=True))


# ----------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Upstream:
    """A first-level step whose cached result another step receives as a keyword argument.

    Parameters
    ----------
    func : callable
        ``func(session, config, **params) -> result`` (module-level: it is sent to the workers).
    stage : str
        Its cache sub-directory, shared by every step that names it.
    params : mapping
        Its extra keyword arguments (JSON-serialisable: part of its cache key).
    config : Config | None
        Configuration it runs with (and is keyed on); None: the one of the
        step that names it. A configuration reduced to what the upstream step
        reads lets steps with different analysis settings share its cache.
    """

    func: FirstLevel
    stage: str
    params: Mapping[str, Any] = field(default_factory=dict)
    config: Config | None = None


def _upstream_result(up: Upstream, session: Any, store: str, config: Config, key: str,
                     files: list[list[Any]]) -> tuple[dict[str, Any], float]:  # fmt: skip
    """Cached result of an upstream step for ``session`` (computed and cached first if missing); its seconds.

    ``key`` is the upstream step's cache key for this subject (computed by
    :func:`run_steps` from the input ``files``). :func:`run_steps` computes a
    missing or stale upstream result in a task of its own before the steps
    that read it, so this normally only reads it. ``store`` holds ``first-level/``
    (the derivatives directory, or a run's temporary one).
    """
    directory = cache_dir("", up.stage, session.subject, store)
    t0 = time.perf_counter()
    if _manifest(directory).get("key") != key:
        result = up.func(session, up.config or config, **up.params)
        save_result(result, directory, {"key": key, "stage": up.stage, "subject": session.subject,
                                        "mmme_neuro_version": __version__, "files": files})  # fmt: skip
        del result  # the step gets what the cache holds: computed and cached runs see the same input
    loaded = load_result(directory)
    return loaded, time.perf_counter() - t0


def _compute(func: FirstLevel, bids_root: str, subject: str, config: Config, stage: str,
             params: Mapping[str, Any], key: str, files: list[list[Any]],
             upstream: Mapping[str, Upstream] | None = None, upstream_keys: Mapping[str, str] | None = None,
             after: Sequence[Mapping[str, Any]] = (), store: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Worker task: open the session, get the upstream results, run ``func``, write the cache; return a small status record.

    ``store`` is the directory holding ``first-level/`` (default: the
    derivatives of ``bids_root``; a temporary directory when nothing is cached).
    ``upstream_keys`` maps each upstream stage to its cache key for this
    subject (same input ``files``). ``after`` holds the status records of the upstream tasks this one waited
    for (dask passes them in place of their futures): if one failed, this
    task fails with its reason instead of computing it again.
    """
    from .dataset import iter_sessions

    t0 = time.perf_counter()
    up_s = 0.0
    store = os.fspath(derivatives_root(bids_root)) if store is None else store
    broken = [a for a in after if a["status"] == "failed"]
    if broken:
        why = "; ".join(f"upstream step {a['stage']} failed: {a['error']}" for a in broken)
        return {"subject": subject, "stage": stage, "status": "failed", "error": why, "seconds": 0.0,
                "upstream_s": 0.0, "peak_rss_mb": _peak_rss_mb()}  # fmt: skip
    try:
        session = next(iter_sessions(bids_root, [subject]))
        # one BLAS/OpenMP thread wherever the step runs (in-process, LocalCluster worker, HPC worker):
        # multi-threaded BLAS sums in another order, and iterative fits (ICA) then end elsewhere, so a
        # subject's result would depend on where it was computed (measured: ICA-cleaned epochs differed)
        with threadpool_limits(limits=1):
            inputs = {}
            for name, up in (upstream or {}).items():
                inputs[name], sec = _upstream_result(up, session, store, config, (upstream_keys or {})[up.stage], files)
                up_s += sec
            result = func(session, config, **params, **inputs)
            del inputs
        save_result(result, cache_dir(bids_root, stage, subject, store), {"key": key, "stage": stage, "subject": subject,
                                                                    "mmme_neuro_version": __version__, "files": files})  # fmt: skip
    except Exception as err:  # noqa: BLE001 - one failing subject must not take the study down
        return {"subject": subject, "stage": stage, "status": "failed", "error": f"{type(err).__name__}: {err}",
                "seconds": time.perf_counter() - t0, "upstream_s": up_s, "peak_rss_mb": _peak_rss_mb()}  # fmt: skip
    return {"subject": subject, "stage": stage, "status": "computed", "error": "", "seconds": time.perf_counter() - t0,
            "upstream_s": up_s, "peak_rss_mb": _peak_rss_mb()}  # fmt: skip


def local_cluster(n_workers: int) -> Any:
    """A dask ``LocalCluster`` of ``n_workers`` single-threaded worker processes, without dask's malloc trimming.

    dask starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``
    (``distributed.nanny.pre-spawn-environ``) so that idle workers hand
    memory back to the OS. Setting it also switches off glibc's dynamic mmap
    threshold: every large NumPy temporary is then mapped and unmapped afresh,
    page faults included. In our steps this made element-wise work 3-6x slower
    (ICA's picard densities: 1.3 s instead of 0.4 s per subject) and the shared
    preprocessing pass ~2x slower on a worker than in-process (measured in
    ``benchmarks/bench_study``). Workers started here keep dask's other
    settings (one OpenMP/MKL/OpenBLAS thread) and import the analysis steps
    when they start (dask preload :mod:`mmme_neuro.worker`: ~2 s per worker,
    paid once instead of by each worker's first subject). Peak memory is
    unchanged; a worker may keep freed memory between subjects. Workers of an
    external scheduler (``--scheduler``) are started by whoever starts them:
    leave ``MALLOC_TRIM_THRESHOLD_`` unset there too (and add
    ``--preload mmme_neuro.worker``).
    """
    import dask
    from distributed import LocalCluster

    environ = {k: v for k, v in dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {}).items()
               if k != "MALLOC_TRIM_THRESHOLD_"}  # fmt: skip
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        return LocalCluster(n_workers=int(n_workers), threads_per_worker=1, processes=True, dashboard_address=None,
                            silence_logs=logging.ERROR, preload=["mmme_neuro.worker"])  # fmt: skip


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB): the worker's peak when run on a worker."""
    try:
        import resource
    except ImportError:  # not on Windows
        return float("nan")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def _quiet_dask() -> Iterator[None]:
    """dask.distributed logs every worker start and connection at INFO: keep it at WARNING (logs quiet by default).

    The scheduler side is this process' ``distributed`` logger; worker processes
    configure their logging from dask's configuration when they import
    ``distributed``, so the level is also passed in the environment they inherit.
    Nothing changes when this module logs at DEBUG.
    """
    env = "DASK_LOGGING__DISTRIBUTED"
    dist = logging.getLogger("distributed")
    level, before = dist.level, os.environ.get(env)
    if not logger.isEnabledFor(logging.DEBUG):
        dist.setLevel(max(level, logging.WARNING))
        os.environ.setdefault(env, "warning")
    try:
        yield
    finally:
        dist.setLevel(level)
        if before is None:
            os.environ.pop(env, None)


@dataclass
class RunReport:
    """What :func:`run_subjects` did.

    Attributes
    ----------
    results : dict
        Subject -> first-level result (loaded from the cache), successful subjects only, sorted.
    status : pandas.DataFrame
        One row per subject: ``subject``, ``status`` (``cached``, ``computed``,
        ``failed``), ``error``, ``seconds`` (compute time; 0 when cached),
        ``upstream_s`` (part of ``seconds`` spent getting the upstream
        results: computing them, or reading them when cached),
        ``peak_rss_mb`` (peak resident memory of the process that computed
        the subject, up to the end of that subject - a dask worker's peak;
        NaN when cached).
    wall_seconds : float
        Wall time of the whole run (keys, computing, loading the results).
    stage : str
        Name of the first-level step.
    """

    results: dict[str, dict[str, Any]]
    status: pd.DataFrame
    wall_seconds: float = 0.0
    stage: str = ""

    def require(self, minimum: int = 2) -> None:
        """Raise ValueError if fewer than ``minimum`` subjects have a result; the message names the failed ones and why."""
        if len(self.results) < minimum:
            why = "; ".join(f"{f['subject']}: {f['reason']}" for f in self.failed) or "no subject in the study"
            raise ValueError(f"{self.stage}: at least {minimum} subjects with results are needed, "
                             f"got {len(self.results)} (failed: {why})")  # fmt: skip

    def timing(self) -> dict[str, Any]:
        """Time of the step: wall time, computed/cached/failed counts, compute seconds per subject."""
        st = self.status
        return {"wall_s": round(self.wall_seconds, 3),
                "n_computed": int((st["status"] == "computed").sum()), "n_cached": int((st["status"] == "cached").sum()),
                "n_failed": int((st["status"] == "failed").sum()),
                "subject_s": {s: round(float(x), 3) for s, x in zip(st["subject"], st["seconds"], strict=True)},
                "upstream_s": {s: round(float(x), 3) for s, x in zip(st["subject"], st["upstream_s"], strict=True)},
                "peak_rss_mb": None if st["peak_rss_mb"].isna().all() else round(float(st["peak_rss_mb"].max()), 1)}  # fmt: skip

    @property
    def failed(self) -> list[dict[str, str]]:
        """``[{"subject", "reason"}]`` of the failed subjects."""
        f = self.status[self.status["status"] == "failed"]
        return [{"subject": s, "reason": e} for s, e in zip(f["subject"], f["error"], strict=True)]


@dataclass(frozen=True)
class Step:
    """A first-level step as :func:`run_steps` runs it: one function applied to every subject, cached.

    Parameters
    ----------
    func : callable
        ``func(session, config, **params, **upstream) -> {name: result}``; a
        module-level function (it is sent to the workers).
    stage : str
        Name of the step: its cache sub-directory and its key in the reports,
        e.g. ``"erp"``.
    config : Config
        Configuration it runs with (its hash is part of the cache key).
    params : mapping
        Extra keyword arguments of ``func`` (JSON-serialisable: part of the
        cache key), e.g. ``{"method": "multitaper"}``.
    upstream : mapping of str to Upstream
        Cached results of other steps passed to ``func`` as keyword arguments
        (name -> :class:`Upstream`), e.g. :func:`mmme_neuro.steps.upstream`.
        Their stages and parameters are part of this step's cache key.
    load : sequence of str | None
        Entries of each subject's result read into :attr:`RunReport.results`
        (None: all; the others stay on disk).
    """

    func: FirstLevel
    stage: str
    config: Config
    params: Mapping[str, Any] = field(default_factory=dict)
    upstream: Mapping[str, Upstream] = field(default_factory=dict)
    load: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if not callable(self.func):
            raise TypeError(f"step {self.stage!r}: func must be callable, got {type(self.func).__name__}")
        if not isinstance(self.stage, str) or not self.stage or "/" in self.stage or self.stage.startswith("."):
            raise ValueError(f"stage must be a non-empty directory name, got {self.stage!r}")
        if not isinstance(self.config, Config):
            raise TypeError(f"step {self.stage!r}: config must be a mmme_neuro.config.Config, got {type(self.config).__name__}")
        bad = {n: type(u).__name__ for n, u in self.upstream.items() if not isinstance(u, Upstream)}
        if bad:
            raise TypeError(f"step {self.stage!r}: upstream values must be mmme_neuro.pipeline.Upstream, got {bad}")
        if set(self.upstream) & set(self.params):
            raise ValueError(f"step {self.stage!r}: upstream names {sorted(set(self.upstream) & set(self.params))} "
                             "are also parameters")  # fmt: skip

    def key_params(self) -> dict[str, Any]:
        """The parameters in this step's cache key: ``params`` and, if any, the upstream steps' identities
        (their inputs are the subject's files, in the key already)."""
        if not self.upstream:
            return dict(self.params)
        return {**self.params, "__upstream__": {n: [u.stage, dict(u.params), u.config.hash() if u.config else None]
                                                for n, u in sorted(self.upstream.items())}}  # fmt: skip


@dataclass(frozen=True)
class _Task:
    """One (step or upstream step, subject) of a run; ``after``: the stages it waits for."""

    func: FirstLevel
    stage: str
    config: Config
    params: Mapping[str, Any]
    key_params: Mapping[str, Any]
    upstream: Mapping[str, Upstream]
    after: tuple[str, ...]


def _tasks(steps: Sequence[Step]) -> tuple[dict[str, _Task], list[str]]:
    """Every stage of a run (the steps and the upstream steps they name, upstream first), and the steps' stages.

    An upstream step named by several steps (or also listed as a step) runs
    once per subject; naming one stage with two different definitions is an
    error, as their results would overwrite each other's cache.
    """
    if not steps:
        raise ValueError("no step to run")
    tasks: dict[str, _Task] = {}
    ident: dict[str, tuple[tuple[Any, ...], str]] = {}  # stage -> (what defines its results, who defined it)

    def add(task: _Task, who: str) -> None:
        me = (task.func, task.config.hash(), json.dumps(dict(task.params), sort_keys=True, default=_jsonable))
        if task.stage not in ident:
            ident[task.stage] = (me, who)
            tasks[task.stage] = task
        elif ident[task.stage][0] != me:
            raise ValueError(f"stage {task.stage!r} is defined twice with different functions, parameters or "
                             f"configurations (by {ident[task.stage][1]} and {who}): they would share one cache")  # fmt: skip

    stages = []
    for step in steps:
        if not isinstance(step, Step):
            raise TypeError(f"steps must be mmme_neuro.pipeline.Step objects, got {type(step).__name__}")
        if step.stage in stages:
            raise ValueError(f"step {step.stage!r} is listed twice")
        stages.append(step.stage)
        for up in step.upstream.values():
            cfg = up.config or step.config
            add(_Task(up.func, up.stage, cfg, dict(up.params), dict(up.params), {}, ()), f"the upstream of {step.stage!r}")
    for step in steps:
        add(_Task(step.func, step.stage, step.config, dict(step.params), step.key_params(), dict(step.upstream),
                  tuple(sorted({u.stage for u in step.upstream.values()}))), f"step {step.stage!r}")  # fmt: skip
    for name, task in tasks.items():  # an upstream step that names upstream steps itself is not supported
        if task.after and any(tasks[a].after for a in task.after):
            raise ValueError(f"step {name!r}: upstream steps cannot have upstream steps themselves")
    order = sorted(tasks, key=lambda n: bool(tasks[n].after))  # upstream steps first (stable)
    return {n: tasks[n] for n in order}, stages


@contextmanager
def remember_failures() -> Iterator[None]:
    """Within this block, a (step, subject) that failed is not computed again by a later run of the same key.

    Failures are never cached on disk: outside this block a re-run tries a
    failed subject again (the code, the environment or a resource may have
    changed since, none of which is in the key). ``mmme-neuro run`` runs the
    first level of all its analyses as one task graph, then each analysis
    script, which runs its own step again and finds the results cached; in
    this block it also finds the failures, and reports them with the same
    reason (``seconds`` 0) instead of computing the failing subjects twice.
    A step whose upstream step is remembered as failed fails with that
    reason, as in the run that computed it. ``cache=False`` retries them.
    Blocks nest; an inner block shares the outer one's memory.

    Examples
    --------
    >>> with remember_failures():  # doctest: +SKIP
    ...     run_steps(steps, bids_root)       # a subject fails
    ...     run_steps(steps[:1], bids_root)   # the same failure, not computed again
    """
    if _FAILURES.get() is not None:
        yield
        return
    token = _FAILURES.set({})
    try:
        yield
    finally:
        _FAILURES.reset(token)


def run_steps(
    steps: Sequence[Step],
    bids_root: str | os.PathLike,
    *,
    subjects: Sequence[str] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    cache: bool | None = None,
    progress: bool = True,
) -> dict[str, RunReport]:
    """Run several first-level steps on every subject as one task graph, in parallel, with a cache.

    Every (step, subject) is a task; a step that reads an upstream step's
    result (:attr:`Step.upstream`, e.g. the preprocessing pass the EEG
    analyses share) waits for that subject's upstream task only, which runs
    once however many steps name it. The workers thus never wait for a stage
    to end on every subject: while one worker preprocesses a large subject,
    the other runs the analyses of a finished one, or the physiology. Tasks
    are dispatched largest subject first (longest-processing-time first),
    the analyses of a preprocessed subject before new preprocessing, and the
    steps without upstream (e.g. the physiology: a similar time per
    subject) last, to fill the end. ``mmme-neuro run`` runs the first level
    of all its analyses this way before their group levels.

    Parameters
    ----------
    steps : sequence of Step
        The steps (each with its stage, configuration, parameters, upstream
        steps and the entries to load).
    bids_root : path-like
        BIDS study (:func:`mmme_neuro.dataset.prepare_bids`).
    subjects : sequence of str | None
        Subjects (default: all of the study).
    workers : int | None
        Local worker processes (1: in-process, no cluster; default:
        ``run.workers`` of the first step's configuration).
    scheduler : str | None
        Address of an existing dask scheduler (overrides ``workers``;
        default ``run.scheduler``).
    cache : bool | None
        False: compute every subject, upstream steps included, write no
        cache (results pass through a temporary directory, removed before
        returning: the system's temporary directory, or with ``scheduler``,
        which may run on other machines, one under the derivatives
        directory), and retry the failures :func:`remember_failures` holds.
        Default ``run.cache``. The cache (and the input-hash index) go to
        :func:`derivatives_root` of the first step's configuration.
    progress : bool
        Progress bar over (step, subject) tasks.

    Returns
    -------
    reports : dict of str to RunReport
        Stage -> report of each step (in the order of ``steps``). A subject's
        ``seconds`` and ``upstream_s`` in the first step naming an upstream
        step include computing it (unless that upstream step is listed in
        ``steps``: it then has its own report); other steps only read it.
        ``wall_seconds`` is the wall time of the whole run (keys, computing,
        loading the results), the same for every step.

    Raises
    ------
    ValueError
        No step, a step listed twice, one stage defined twice with different
        settings, or ``workers < 1``.
    CacheNotWritableError
        The cache is on but its directory cannot be written (a read-only
        study): the message names it and the two ways out
        (``paths.derivatives_dir``, ``run.cache = false``).
    """
    from .dataset import list_subjects

    t_start = time.perf_counter()
    root = Path(bids_root)
    tasks, stages = _tasks(list(steps))
    run_cfg = steps[0].config.run
    workers = run_cfg.workers if workers is None else int(workers)
    scheduler = run_cfg.scheduler if scheduler is None else scheduler
    cache = run_cfg.cache if cache is None else bool(cache)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    subjects = list(list_subjects(root) if subjects is None else subjects)
    deriv = derivatives_root(root, steps[0].config)
    if cache:
        _check_writable(deriv / "first-level")

    def input_files(s: str) -> list[list[Any]]:  # the same for every stage: listed and checked once per subject
        found = _input_files(root, s, _known_files(root, s, list(tasks), deriv))
        if cache:
            _remember_files(deriv, s, found)
        return found

    # input hashes of a first run (~1 s per GB): as many threads as workers (hashlib releases the GIL)
    with ThreadPoolExecutor(max_workers=max(1, min(len(subjects), workers, os.cpu_count() or 1))) as pool:
        files = dict(zip(subjects, pool.map(input_files, subjects), strict=True))
    keys = {s: {n: _key(t.config, n, t.key_params, files[s]) for n, t in tasks.items()} for s in subjects}
    cached = {(n, s) for n in tasks for s in subjects
              if cache and _manifest(cache_dir(root, n, s, deriv)).get("key") == keys[s][n]}  # fmt: skip
    memo = _FAILURES.get()
    study = os.fspath(root.resolve())
    known = {} if memo is None or not cache else {
        (n, s): memo[(study, n, s, keys[s][n])] for n in tasks for s in subjects if (study, n, s, keys[s][n]) in memo}  # fmt: skip
    skip = cached | set(known)
    todo = [(n, s) for s in subjects for n in stages if (n, s) not in skip]
    # an upstream step runs where a step that reads it runs (a listed upstream step runs anyway)
    needed = set(todo) | {(a, s) for n, s in todo for a in tasks[n].after}
    todo = [(n, s) for s in subjects for n in tasks if (n, s) in needed and (n, s) not in skip]
    n_steps = sum(n in stages for n, _ in todo)
    n_known = sum(n in stages for n, _ in known)
    logger.info("%s: %d of %d results cached, %d failures of this run remembered, %d tasks to run (%d with upstream steps)",
                ", ".join(stages), len(stages) * len(subjects) - n_steps - n_known, len(stages) * len(subjects), n_known,
                n_steps, len(todo))  # fmt: skip
    rows: dict[tuple[str, str], dict[str, Any]] = {
        (n, s): {"subject": s, "stage": n, "status": "cached", "error": "", "seconds": 0.0, "upstream_s": 0.0,
                 "peak_rss_mb": float("nan")} for n in tasks for s in subjects if (n, s) in cached}  # fmt: skip
    for (n, s), error in known.items():  # the same failure, not computed again
        rows[(n, s)] = {"subject": s, "stage": n, "status": "failed", "error": error, "seconds": 0.0, "upstream_s": 0.0,
                        "peak_rss_mb": float("nan")}  # fmt: skip
    # without a cache the results pass through a temporary directory (shared storage for a remote scheduler)
    scratch = None if cache else Path(tempfile.mkdtemp(prefix="mmme-neuro-run-", dir=_scratch_parent(deriv, scheduler)))
    store = os.fspath(deriv if scratch is None else scratch)
    try:
        reports = _run_tasks(tasks, stages, list(steps), root, subjects, files, keys, rows, todo, n_steps, store,
                             workers, scheduler, progress, memo, study)  # fmt: skip
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    wall = time.perf_counter() - t_start
    for rep in reports.values():
        rep.wall_seconds = wall
    return reports


def _check_writable(directory: Path) -> None:
    """Raise :class:`CacheNotWritableError` (naming ``directory`` and the settings that avoid it) if the cache cannot
    be written there."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        raise CacheNotWritableError(f"cannot write the first-level cache in {directory} ({type(err).__name__}: "
                              f"{err.strerror or err}): a read-only study? Set paths.derivatives_dir to a writable "
                              "directory, or run.cache = false to write no cache") from err  # fmt: skip


def _scratch_parent(deriv: Path, scheduler: str | None) -> str | None:
    """Parent of a run's temporary directory when nothing is cached: the system's (None), or with a remote
    scheduler, whose workers may be on other machines, the derivatives directory (shared storage)."""
    if scheduler is None:
        return None
    deriv.mkdir(parents=True, exist_ok=True)
    return os.fspath(deriv)


def _run_tasks(tasks: Mapping[str, _Task], stages: list[str], steps: list[Step], root: Path, subjects: list[str],
               files: Mapping[str, list[list[Any]]], keys: Mapping[str, Mapping[str, str]],
               rows: dict[tuple[str, str], dict[str, Any]], todo: list[tuple[str, str]], n_steps: int, store: str,
               workers: int, scheduler: str | None, progress: bool, memo: dict[tuple[str, str, str, str], str] | None,
               study: str) -> dict[str, RunReport]:  # fmt: skip
    """The computing part of :func:`run_steps`: run ``todo`` (in-process or on dask) with the results in ``store``,
    then read them back into one :class:`RunReport` per step."""
    bar = tqdm(total=n_steps, desc=stages[0] if len(stages) == 1 else "first level",
               unit="subject" if len(stages) == 1 else "task", disable=not progress or not n_steps)  # fmt: skip
    t_start, n_done = time.perf_counter(), [0]

    def done(r: dict[str, Any]) -> None:
        rows[(r["stage"], r["subject"])] = r
        if r["stage"] in stages:
            bar.update()
            n_done[0] += 1
        # progress in the log too (-v): a bar is drawn on a terminal only, and a batch job's log would be silent
        logger.info("%s %s: %s in %.1f s (%d/%d done, %.0f s elapsed)", r["stage"], r["subject"], r["status"],
                    float(r.get("seconds") or 0.0), n_done[0], n_steps, time.perf_counter() - t_start)  # fmt: skip

    def submit_args(n: str, s: str) -> tuple[Any, ...]:
        t = tasks[n]
        return (t.func, os.fspath(root), s, t.config, n, dict(t.params), keys[s][n], files[s], t.upstream,
                {a: keys[s][a] for a in t.after})  # fmt: skip

    def compute_here(n: str, s: str) -> dict[str, Any]:
        return _compute(*submit_args(n, s), after=[rows[(a, s)] for a in tasks[n].after if (a, s) in rows], store=store)

    try:
        if todo and scheduler is None and workers == 1:
            for n, s in todo:  # subject by subject, upstream first: its files are still in the page cache when read
                done(compute_here(n, s))
        elif todo:
            from distributed import Client, as_completed

            # largest subjects first (longest-processing-time first): fewer idle workers at the end
            rank = {s: i for i, s in enumerate(sorted(subjects, key=lambda s: -_work_estimate(files[s])))}
            big = len(subjects) + 1
            with _quiet_dask():
                cluster = None if scheduler else local_cluster(workers)
                try:
                    with Client(scheduler or cluster) as client:
                        futures: dict[tuple[str, str], Any] = {}
                        for n, s in sorted(todo, key=lambda ns: (rank[ns[1]], bool(tasks[ns[0]].after))):
                            t = tasks[n]
                            # readers of an upstream result first, then upstream steps, then the steps without upstream
                            tier = 2 if t.after else 1 if any(n in u.after for u in tasks.values()) else 0
                            # upstream futures, or the records of upstream results not computed here (cached, failed)
                            after = [futures[(a, s)] if (a, s) in futures else rows[(a, s)]
                                     for a in t.after if (a, s) in futures or (a, s) in rows]  # fmt: skip
                            futures[(n, s)] = client.submit(_compute, *submit_args(n, s), after=after, store=store,
                                                            key=f"{n}-{s}-{keys[s][n][:12]}",
                                                            priority=tier * big + big - 1 - rank[s], pure=False)  # fmt: skip
                        for fut in as_completed(list(futures.values())):
                            done(fut.result())
                finally:
                    if cluster is not None:
                        cluster.close()
    finally:
        bar.close()
    if memo is not None:
        memo.update({(study, n, s, keys[s][n]): r["error"] for (n, s), r in rows.items() if r["status"] == "failed"})
    reports = {}
    for n in stages:
        table = []
        for s in subjects:
            r = dict(rows[(n, s)])
            for a in tasks[n].after:  # the first step reading an upstream result is charged with computing it
                ur = rows.get((a, s))
                if ur is not None and ur["status"] == "computed" and n == _first_reader(a, stages, tasks):
                    r["seconds"] += ur["seconds"]
                    r["upstream_s"] += ur["seconds"]
                    r["peak_rss_mb"] = float(np.fmax(r["peak_rss_mb"], ur["peak_rss_mb"]))
            table.append(r)
        status = pd.DataFrame(table, columns=["subject", "status", "error", "seconds", "upstream_s", "peak_rss_mb"])
        for r in status[status["status"] == "failed"].itertuples():
            logger.warning("%s: %s failed: %s", n, r.subject, r.error)
        load = next(st.load for st in steps if st.stage == n)
        results = {s: load_result(cache_dir(root, n, s, store), load) for s in subjects
                   if rows[(n, s)]["status"] != "failed"}  # fmt: skip
        reports[n] = RunReport(results, status, 0.0, n)
    return reports


def _first_reader(upstream_stage: str, stages: Sequence[str], tasks: Mapping[str, _Task]) -> str | None:
    """The first of ``stages`` that reads ``upstream_stage``; None if that is a listed step (it has its own report)."""
    if upstream_stage in stages:
        return None
    return next((n for n in stages if upstream_stage in tasks[n].after), None)


def run_subjects(
    func: FirstLevel,
    bids_root: str | os.PathLike,
    config: Config,
    *,
    stage: str,
    subjects: Sequence[str] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    cache: bool | None = None,
    progress: bool = True,
    params: Mapping[str, Any] | None = None,
    upstream: Mapping[str, Upstream] | None = None,
    load: Sequence[str] | None = None,
) -> RunReport:
    """Run a first-level function on every subject, in parallel, with a cache.

    Parameters
    ----------
    func : callable
        ``func(session, config) -> {name: DataArray | Dataset | DataFrame}``;
        a module-level function (it is sent to the workers).
    bids_root : path-like
        BIDS study (:func:`mmme_neuro.dataset.prepare_bids`).
    config : Config
        Configuration (its hash is part of the cache key); ``run`` gives the
        defaults of ``workers``, ``scheduler`` and ``cache``.
    stage : str
        Name of the first-level step (cache sub-directory), e.g. ``"decoding-features"``.
    subjects : sequence of str | None
        Subjects (default: all of the study).
    workers : int | None
        Local worker processes (1: in-process, no cluster).
    scheduler : str | None
        Address of an existing dask scheduler (overrides ``workers``).
    cache : bool | None
        False: compute every subject, upstream steps included, and write no cache (see :func:`run_steps`).
    progress : bool
        Progress bar over subjects.
    params : mapping | None
        Extra keyword arguments of ``func`` (JSON-serialisable: they are part
        of the cache key), e.g. ``{"method": "multitaper"}``.
    upstream : mapping of str to Upstream | None
        Cached results of other steps passed to ``func`` as keyword
        arguments (name -> :class:`Upstream`), computed and cached first
        where missing, in a task of its own (e.g. :func:`mmme_neuro.steps.upstream`:
        the preprocessed epochs shared by the EEG analyses). Their stages and
        parameters are part of this step's cache key.
    load : sequence of str | None
        Entries of each subject's result to read into :attr:`RunReport.results`
        (None: all). The others stay on disk: the group level's memory then
        grows only with what it needs (e.g. not the per-epoch networks).

    Returns
    -------
    RunReport
        ``upstream_s`` of a subject includes computing its upstream results
        where they were missing.

    See Also
    --------
    run_steps : several steps as one task graph (no wait between steps).
    """
    return run_steps([Step(func, stage, config, dict(params or {}), dict(upstream or {}), load)], bids_root,
                     subjects=subjects, workers=workers, scheduler=scheduler, cache=cache, progress=progress)[stage]
