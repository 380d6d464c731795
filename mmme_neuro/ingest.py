"""Ingestion of one participant session: recordings + coded expressions -> samples.

Between the readers (:mod:`mmme_neuro.io`) and BIDS (:mod:`mmme_neuro.bids`):

1. :func:`find_sessions` pairs the EEG and physiology files of a raw study
   directory (``<name>_<yyyymmdd>.<ext>``, the MMME authors' naming, or a
   mapping CSV) with the pseudonyms of the coding file. Names stay inside
   this step: a :class:`SessionFiles` knows the pseudonym and the paths, and
   every message names the pseudonym and the file *extension* only.
2. :func:`ingest_session` reads both recordings (EEG lazily), decodes their
   markers, fits the EEG -> physiology clock (:mod:`mmme_neuro.sync`), and maps
   every coded expression of the session (clip-relative onset/apex/offset) to
   absolute EEG and physiology times and samples.

Exclusion rules (one row per expression in :attr:`SessionIngest.exclusions`;
``scope`` says whether the expression is lost for every modality or only for
the physiology):

``clip_not_in_eeg`` (all)
    The expression's clip marker is not in the EEG recording (e.g. the MMME
    participant who lacks clips 147 and 148).
``outside_eeg_recording`` (all)
    Onset or offset falls outside the EEG data.
``outside_physio_recording`` (physio)
    The mapped physiology onset or offset falls outside the physiology data.
``no_physio_recording`` (physio)
    The session has no physiology recording (the EEG is analysed).
``session_failed`` (all)
    The session could not be ingested (unreadable file, clocks that cannot
    be matched ...); the reason names the error.
``no_recording`` (all)
    The coding file lists a participant/session with no recording.

Flags (the expression is kept): ``beyond_clip_end`` (offset after the rest
marker that ends the clip), ``repeated_clip_marker`` (the clip marker occurs
more than once, beyond the duplicate window; the first occurrence is used).
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import mne
import numpy as np
import pandas as pd

from ._privacy import redact_names
from ._utils import time_to_sample
from .config import Config
from .constants import CLIP_MARKERS, REST_MARKER
from .io.coding import CodingResult
from .io.eeg import read_eeg
from .io.markers import read_eeg_markers
from .io.physio import read_physio
from .sync import ClockFit, SyncError, fit_clock, match_markers

__all__ = [
    "EEG_EXTENSIONS",
    "EXCLUSION_COLUMNS",
    "PHYSIO_EXTENSIONS",
    "IngestError",
    "SessionFiles",
    "SessionIngest",
    "find_sessions",
    "ingest_session",
    "no_recording_exclusions",
]

logger = logging.getLogger(__name__)

#: EEG file extensions recognised in a raw study directory (header file of each format).
EEG_EXTENSIONS: tuple[str, ...] = (".set", ".cdt", ".dat", ".vhdr", ".cnt", ".edf", ".bdf", ".fif")
#: Physiology file extensions recognised in a raw study directory.
PHYSIO_EXTENSIONS: tuple[str, ...] = (".mat", ".acq", ".csv", ".tsv")
#: Columns of the exclusion tables.
EXCLUSION_COLUMNS: tuple[str, ...] = (
    "expression_id", "subject", "source_row", "marker", "kind", "reason_code", "scope", "reason",
)  # fmt: skip

_STEM = re.compile(r"^(?P<name>.+)_(?P<date>\d{8})$")


class IngestError(RuntimeError):
    """A session cannot be ingested; the message names the pseudonym and the file type."""


@dataclass(frozen=True)
class SessionFiles:
    """The recordings of one participant session.

    ``subject`` is the pseudonym; the paths may contain the participant's
    name and must never be written to outputs (use :attr:`label`).
    """

    subject: str
    session_date: dt.date
    eeg: Path
    physio: Path | None

    @property
    def label(self) -> str:
        """Name-free description for messages: ``sub-03 2023-07-18 (.set + .mat)``."""
        phys = f" + {self.physio.suffix}" if self.physio else ", no physiology"
        return f"{self.subject} {self.session_date.isoformat()} ({self.eeg.suffix}{phys})"


@dataclass
class SessionIngest:
    """A session with every expression placed on the EEG and physiology clocks.

    Attributes
    ----------
    files : SessionFiles
    eeg_raw : mne.io.BaseRaw
        EEG, not preloaded, channel types and montage set.
    eeg_events, eeg_marker_report : pandas.DataFrame
        Clean EEG markers and the audit of dropped ones (:func:`read_eeg_markers`).
    physio_raw : mne.io.BaseRaw | None
        Physiology (SI units), markers as annotations.
    physio_events, physio_marker_report : pandas.DataFrame | None
    clock : ClockFit | None
        EEG -> physiology clock fit.
    clips : pandas.DataFrame
        One row per clip marker in the EEG: ``marker``, ``eeg_time_s``,
        ``eeg_sample``, ``end_time_s`` (next rest marker or NaN), ``physio_time_s``.
    expressions : pandas.DataFrame
        The session's coded expressions that are in the EEG, with
        ``eeg_onset_s``, ``eeg_apex_s``, ``eeg_offset_s`` (EEG clock, s),
        ``eeg_onset_sample``, ``eeg_apex_sample``, ``eeg_offset_sample``,
        ``physio_onset_s``, ``physio_onset_sample``, ``physio_offset_sample``,
        ``in_physio`` (bool) and ``ingest_flags``.
    exclusions : pandas.DataFrame
        :data:`EXCLUSION_COLUMNS`, one row per expression not analysable in a
        scope (``all``: removed from ``expressions``; ``physio``: kept with
        ``in_physio`` False).
    """

    files: SessionFiles
    eeg_raw: mne.io.BaseRaw
    eeg_events: pd.DataFrame
    eeg_marker_report: pd.DataFrame
    physio_raw: mne.io.BaseRaw | None
    physio_events: pd.DataFrame | None
    physio_marker_report: pd.DataFrame | None
    clock: ClockFit | None
    clips: pd.DataFrame
    expressions: pd.DataFrame
    exclusions: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=EXCLUSION_COLUMNS))

    @property
    def subject(self) -> str:
        """Pseudonym."""
        return self.files.subject

    @property
    def eeg_sfreq(self) -> float:
        """EEG sampling rate (Hz)."""
        return float(self.eeg_raw.info["sfreq"])

    @property
    def physio_sfreq(self) -> float | None:
        """Physiology sampling rate (Hz), None without physiology."""
        return None if self.physio_raw is None else float(self.physio_raw.info["sfreq"])


# ----------------------------------------------------------------------------- discovery


def _read_session_map(path: Path, raw_dir: Path) -> list[tuple[str, dt.date, Path, Path | None]]:
    """Mapping CSV: columns ``subject`` (name as in the coding file), ``session_date``
    (YYYY-MM-DD or YYYYMMDD), ``eeg_file``, ``physio_file`` (may be empty); paths
    relative to the raw directory."""
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        need = {"subject", "session_date", "eeg_file"}
        missing = need - set(reader.fieldnames or ())
        if missing:
            raise IngestError(f"{path.name}: session mapping lacks columns {sorted(missing)}")
        for i, r in enumerate(reader, start=2):
            try:
                date = dt.date.fromisoformat(r["session_date"].strip().replace("/", "-")) if "-" in r[
                    "session_date"] or "/" in r["session_date"] else dt.datetime.strptime(r["session_date"].strip(), "%Y%m%d").date()
            except ValueError as err:
                raise IngestError(f"{path.name} line {i}: bad session_date") from err
            eeg = raw_dir / r["eeg_file"].strip()
            phys = (raw_dir / r["physio_file"].strip()) if (r.get("physio_file") or "").strip() else None
            rows.append((r["subject"].strip(), date, eeg, phys))
    return rows


def _scan_raw_dir(raw_dir: Path) -> list[tuple[str, dt.date, Path, Path | None]]:
    found: dict[tuple[str, dt.date], dict[str, Path]] = {}
    for p in sorted(raw_dir.iterdir()):
        ext = p.suffix.lower()
        kind = "eeg" if ext in EEG_EXTENSIONS else "physio" if ext in PHYSIO_EXTENSIONS else None
        m = _STEM.match(p.stem)
        if kind is None or m is None or not p.is_file():
            continue
        try:
            date = dt.datetime.strptime(m["date"], "%Y%m%d").date()
        except ValueError:
            continue
        slot = found.setdefault((m["name"], date), {})
        if kind in slot:
            raise IngestError(
                f"two {kind} files for one session ({slot[kind].suffix} and {ext}, date {date}); "
                "keep one or give a session mapping CSV"
            )
        slot[kind] = p
    out = []
    for (name, date), slot in found.items():
        if "eeg" in slot:
            out.append((name, date, slot["eeg"], slot.get("physio")))
        else:
            logger.warning("physiology file without EEG (session %s, %s) is ignored", date, slot["physio"].suffix)
    return out


def find_sessions(
    raw_dir: str | Path,
    coding: CodingResult,
    *,
    session_map: str | Path | None = None,
) -> list[SessionFiles]:
    """Find the participant sessions of a raw study directory.

    Parameters
    ----------
    raw_dir : path-like
        Directory with one EEG and (optionally) one physiology file per
        session, named ``<name>_<yyyymmdd>.<ext>`` with ``<name>`` as in the
        coding file's ``Subject`` column.
    coding : CodingResult
        The coding file, read with :func:`mmme_neuro.io.coding.read_coding`;
        its ``mapping`` gives the pseudonyms. Recorded participants with no
        coded expression get the next free pseudonyms (sorted by name),
        added to ``coding.mapping``.
    session_map : path-like | None
        CSV for other naming schemes (columns ``subject``, ``session_date``,
        ``eeg_file``, ``physio_file``).

    Returns
    -------
    sessions : list of SessionFiles
        Sorted by pseudonym and date.
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise IngestError(f"raw study directory not found: {raw_dir}")
    entries = _read_session_map(Path(session_map), raw_dir) if session_map else _scan_raw_dir(raw_dir)
    mapping = coding.mapping
    width = max(2, len(str(len(mapping) + len(entries))))
    taken = {int(v.split("-")[1]) for v in mapping.values() if v.split("-")[1].isdigit()}
    for name in sorted({e[0] for e in entries} - set(mapping)):
        n = max(taken, default=0) + 1
        taken.add(n)
        mapping[name] = f"sub-{n:0{width}d}"
    sessions = [SessionFiles(mapping[name], date, eeg, phys) for name, date, eeg, phys in entries]
    for s in sessions:
        for p in (s.eeg, s.physio):
            if p is not None and not p.is_file():
                raise IngestError(f"{s.subject}: listed {p.suffix} file does not exist")
    return sorted(sessions, key=lambda s: (s.subject, s.session_date))


def no_recording_exclusions(expressions: pd.DataFrame, sessions: list[SessionFiles]) -> pd.DataFrame:
    """Exclusion rows for coded expressions whose session has no recording."""
    have = {(s.subject, s.session_date) for s in sessions}
    dates = pd.to_datetime(expressions["session_date"]).dt.date
    lost = expressions[[(sub, d) not in have for sub, d in zip(expressions["subject"], dates, strict=True)]]
    return _exclusion_rows(lost, "no_recording", "all", "no EEG recording of this session in the raw directory")


# ----------------------------------------------------------------------------- ingestion


def _exclusion_rows(ex: pd.DataFrame, code: str, scope: str, reason: str | list[str]) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "expression_id": ex["expression_id"].to_numpy(),
            "subject": ex["subject"].to_numpy(),
            "source_row": ex["source_row"].to_numpy(),
            "marker": ex["marker"].to_numpy(),
            "kind": ex["kind"].to_numpy(),
            "reason_code": code,
            "scope": scope,
            "reason": reason,
        },
        columns=list(EXCLUSION_COLUMNS),
    )
    return out


def _clip_table(events: pd.DataFrame, sfreq: float) -> tuple[pd.DataFrame, set[int]]:
    ev = events.sort_values("sample", kind="stable")
    clips = ev[ev["code"].isin(CLIP_MARKERS)]
    repeated = set(clips.loc[clips["code"].duplicated(), "code"].astype(int))
    clips = clips.drop_duplicates("code", keep="first")
    rest_t = np.sort(ev.loc[ev["code"] == REST_MARKER, "time_s"].to_numpy(dtype=float))
    t = clips["time_s"].to_numpy(dtype=float)
    nxt = np.searchsorted(rest_t, t, side="right")
    end = np.where(nxt < rest_t.size, rest_t[np.minimum(nxt, rest_t.size - 1)], np.nan)
    table = pd.DataFrame(
        {"marker": clips["code"].astype(int).to_numpy(), "eeg_time_s": t,
         "eeg_sample": clips["sample"].astype(np.int64).to_numpy(), "end_time_s": end}
    )  # fmt: skip
    return table.reset_index(drop=True), repeated


def ingest_session(files: SessionFiles, expressions: pd.DataFrame, config: Config | None = None) -> SessionIngest:
    """Read a session's recordings and place its coded expressions on both clocks.

    Parameters
    ----------
    files : SessionFiles
        The session (from :func:`find_sessions`).
    expressions : pandas.DataFrame
        Kept expressions of the coding file (:attr:`CodingResult.expressions`);
        rows of other subjects/sessions are ignored.
    config : Config | None
        ``sync`` tolerances (defaults if None).

    Returns
    -------
    session : SessionIngest

    Raises
    ------
    IngestError
        If a recording cannot be read or the clocks cannot be matched; the
        message names the pseudonym, date and file types, never a name.
    """
    config = config or Config()
    with redact_names(session_redactions(files)):
        return _ingest(files, expressions, config)


def session_redactions(files: SessionFiles) -> dict[str, str]:
    """What to hide in logs while a session is read: its file stems and the name in them."""
    out: dict[str, str] = {}
    for p in (files.eeg, files.physio):
        if p is None:
            continue
        m = _STEM.match(p.stem)
        out[p.stem] = f"{files.subject}_{m['date']}" if m else files.subject
        if m:
            out[m["name"]] = files.subject
    return out


def _ingest(files: SessionFiles, expressions: pd.DataFrame, config: Config) -> SessionIngest:
    label = files.label
    try:
        raw = read_eeg(files.eeg, preload=False, verbose=False)
        eeg_events, eeg_report = read_eeg_markers(raw)
    except (ValueError, OSError) as err:
        raise IngestError(f"{label}: EEG unreadable: {_anonymous(err, files)}") from err
    sf = float(raw.info["sfreq"])
    praw = pevents = preport = None
    clock = None
    if files.physio is not None:
        try:
            praw, pevents, preport = read_physio(files.physio)
        except (ValueError, OSError) as err:
            raise IngestError(f"{label}: physiology unreadable: {_anonymous(err, files)}") from err
        try:
            matched = match_markers(eeg_events, pevents)
            clock = fit_clock(matched, config.sync, sfreq_eeg=sf, sfreq_physio=float(praw.info["sfreq"]), label=label)
        except SyncError as err:
            raise IngestError(str(err)) from err

    clips, repeated = _clip_table(eeg_events, sf)
    if clock is not None:
        clips["physio_time_s"] = np.asarray(clock.to_physio_time(clips["eeg_time_s"].to_numpy()), dtype=float)

    dates = pd.to_datetime(expressions["session_date"]).dt.date
    ex = expressions[(expressions["subject"] == files.subject) & (dates == files.session_date)].copy()
    excl = []
    start = ex["marker"].map(dict(zip(clips["marker"], clips["eeg_time_s"], strict=True)))
    missing = start.isna()
    if missing.any():
        excl.append(_exclusion_rows(ex[missing], "clip_not_in_eeg", "all",
                                    [f"clip marker {m} is not in the EEG recording" for m in ex.loc[missing, "marker"]]))  # fmt: skip
    ex = ex[~missing].copy()
    start = start[~missing]
    for lm in ("onset", "apex", "offset"):
        ex[f"eeg_{lm}_s"] = start + ex[f"{lm}_s"]
        ex[f"eeg_{lm}_sample"] = time_to_sample(ex[f"eeg_{lm}_s"].to_numpy(dtype=float), sf)
    outside = (ex["eeg_onset_sample"] < 0) | (ex["eeg_offset_sample"] >= raw.n_times)
    if outside.any():
        excl.append(_exclusion_rows(ex[outside], "outside_eeg_recording", "all",
                                    "onset or offset outside the EEG data"))  # fmt: skip
    ex = ex[~outside].copy()

    if clock is not None:
        psf = float(praw.info["sfreq"])
        for lm in ("onset", "offset"):
            ex[f"physio_{lm}_s"] = np.asarray(clock.to_physio_time(ex[f"eeg_{lm}_s"].to_numpy(dtype=float)), dtype=float)
            ex[f"physio_{lm}_sample"] = time_to_sample(ex[f"physio_{lm}_s"].to_numpy(), psf)
        ex["in_physio"] = (ex["physio_onset_sample"] >= 0) & (ex["physio_offset_sample"] < praw.n_times)
        if (~ex["in_physio"]).any():
            excl.append(_exclusion_rows(ex[~ex["in_physio"]], "outside_physio_recording", "physio",
                                        "onset or offset outside the physiology data"))  # fmt: skip
    else:
        for col in ("physio_onset_s", "physio_offset_s"):
            ex[col] = np.nan
        for col in ("physio_onset_sample", "physio_offset_sample"):
            ex[col] = pd.array([pd.NA] * len(ex), dtype="Int64")
        ex["in_physio"] = False
        if praw is None and len(ex):
            excl.append(_exclusion_rows(ex, "no_physio_recording", "physio", "no physiology recording of this session"))

    end = ex["marker"].map(dict(zip(clips["marker"], clips["end_time_s"], strict=True)))
    flags = []
    for beyond, rep in zip((ex["eeg_offset_s"] > end).to_numpy(), ex["marker"].isin(repeated).to_numpy(), strict=True):
        flags.append(";".join(f for f, on in (("beyond_clip_end", beyond), ("repeated_clip_marker", rep)) if on))
    ex["ingest_flags"] = flags
    exclusions = pd.concat(excl, ignore_index=True) if excl else pd.DataFrame(columns=list(EXCLUSION_COLUMNS))
    logger.info("%s: %d expressions placed, %d exclusions", label, len(ex), len(exclusions))
    return SessionIngest(
        files=files, eeg_raw=raw, eeg_events=eeg_events, eeg_marker_report=eeg_report,
        physio_raw=praw, physio_events=pevents, physio_marker_report=preport, clock=clock,
        clips=clips, expressions=ex.reset_index(drop=True), exclusions=exclusions,
    )  # fmt: skip


def _anonymous(err: BaseException, files: SessionFiles) -> str:
    """Error text with the session's file stem (which holds the name) replaced by its pseudonym."""
    text = str(err)
    for p in (files.eeg, files.physio):
        if p is not None:
            text = text.replace(str(p.parent), "<raw>").replace(p.stem, files.subject)
    return text
