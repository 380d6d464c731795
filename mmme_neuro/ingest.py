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
``physio_unusable`` (physio)
    The physiology file has no trigger markers (no digital lines, or nothing
    coded on them), so it cannot be placed on the EEG clock: the session is
    kept with its EEG, as a session without a physiology file is, and the
    physiology is not used (:attr:`SessionIngest.physio_problem`).
``no_physio_recording`` (physio)
    The session has no physiology recording (the EEG is analysed).
``session_failed`` (all)
    The session could not be ingested (unreadable file, clocks that cannot
    be matched ...); the reason names the error.
``no_recording`` (all)
    The coding file lists a participant/session with no recording. When a
    recorded participant's file name differs from the coded name only in
    letter case (``WangTao`` coded, ``wangtao_<date>.set`` recorded), the two
    are not paired (names must match exactly, or be paired by a session map),
    but :func:`find_sessions` warns and the reason names the near match by its
    pseudonym (:func:`near_matches`).

Flags (the expression is kept): ``beyond_clip_end`` (offset after the rest
marker that ends the clip), ``repeated_clip_marker`` (the clip marker occurs
more than once, beyond the duplicate window; the first occurrence is used).
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mne
import numpy as np
import pandas as pd

from ._privacy import Redactor, redact_names
from ._utils import time_to_sample
from .config import Config
from .constants import ALL_EEG_FILE_CHANNELS, BIOPAC_SIGNALS, CLIP_MARKERS, REST_MARKER
from .io.coding import CodingResult
from .io.eeg import header_identity, read_eeg
from .io.markers import TEMP_KEY, read_eeg_markers
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
    "near_matches",
    "no_recording_exclusions",
    "session_redactions",
    "session_redactor",
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
#: Channel names (EEG, auxiliary, physiology), case-folded: never taken for a name to hide.
_NOT_NAMES: frozenset[str] = frozenset(
    c.casefold() for c in (*ALL_EEG_FILE_CHANNELS, *BIOPAC_SIGNALS.values(), "Trigger", "HEOG", "VEOG", "ECG")
)


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
    physio_problem : str | None
        Why the session's physiology file is not used (no trigger markers to
        place it on the EEG clock); None if it is used or there is none.
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
    physio_problem: str | None = None

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
    sessions = sorted(sessions, key=lambda s: (s.subject, s.session_date))
    for coded, recorded in near_matches(coding, sessions).items():  # pseudonyms only: a log record may be kept
        logger.warning("%s is coded but has no recording; the recording of %s is named like it up to letter case. "
                       "They are not paired (names must match exactly): if they are one participant, rename the "
                       "files to the coded name or pair them with a session map (--session-map); otherwise the "
                       "coded expressions of %s are excluded as no_recording", coded, " and ".join(recorded), coded)  # fmt: skip
    return sessions


def _fold(name: str) -> str:
    """A name compared up to letter case and Unicode width (NFKC + case folding)."""
    import unicodedata

    return unicodedata.normalize("NFKC", str(name)).casefold().strip()


def near_matches(coding: CodingResult, sessions: list[SessionFiles]) -> dict[str, list[str]]:
    """Coded participants without any recording whose name matches a recorded participant's up to letter case.

    Names are compared after NFKC normalisation and case folding (``WangTao``
    and ``wangtao``, full-width letters). They are never paired automatically:
    the coding file and the file names disagree, and only the user can say
    which is right (rename, or a session map).

    Parameters
    ----------
    coding : CodingResult
        The coding file, after :func:`find_sessions` (its ``mapping`` then
        also holds the recorded participants that have no coded expression).
    sessions : list of SessionFiles
        The sessions found.

    Returns
    -------
    near : dict of str to list of str
        Pseudonym of a coded participant with no session -> pseudonyms of
        the recorded participants (with no coded row) whose names match up to
        case. Names never leave this function.
    """
    recorded = {s.subject for s in sessions}
    coded = set(coding.expressions["subject"].dropna().astype(str))
    coded |= {str(p) for p in coding.report["subject"].dropna() if str(p)}
    names = {p: n for n, p in coding.mapping.items()}
    recorded_only = {_fold(names[p]): [] for p in recorded - coded if p in names}
    for p in sorted(recorded - coded):
        if p in names:
            recorded_only[_fold(names[p])].append(p)
    return {p: recorded_only[_fold(names[p])] for p in sorted(coded - recorded)
            if p in names and _fold(names[p]) in recorded_only}  # fmt: skip


def no_recording_exclusions(expressions: pd.DataFrame, sessions: list[SessionFiles],
                            near: dict[str, list[str]] | None = None) -> pd.DataFrame:  # fmt: skip
    """Exclusion rows for coded expressions whose session has no recording.

    ``near`` (:func:`near_matches`): coded pseudonym -> pseudonyms of
    recordings named like it up to letter case, named in the reason.
    """
    have = {(s.subject, s.session_date) for s in sessions}
    dates = pd.to_datetime(expressions["session_date"]).dt.date
    lost = expressions[[(sub, d) not in have for sub, d in zip(expressions["subject"], dates, strict=True)]]
    base = "no EEG recording of this session in the raw directory"
    reasons = [base if not (near or {}).get(sub) else
               f"{base}; near match: the recording of {' and '.join(near[sub])} is named like this participant up to "
               "letter case (not paired: rename its files to the coded name or use a session map)"
               for sub in lost["subject"]]  # fmt: skip
    return _exclusion_rows(lost, "no_recording", "all", reasons)


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


def ingest_session(files: SessionFiles, expressions: pd.DataFrame, config: Config | None = None, *,
                   names: Mapping[str, str] | None = None) -> SessionIngest:  # fmt: skip
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
    names : mapping of str to str | None
        More names to hide -> pseudonyms (e.g. every name of the coding file,
        ``CodingResult.mapping``), besides the session's file stems and the
        names in its EEG header (:func:`session_redactions`).

    Returns
    -------
    session : SessionIngest
        Channel labels that hold a name (a physiology column labelled with a
        participant's name ...) are renamed to the pseudonym, and the readers'
        notes in ``raw.info["temp"]`` are scrubbed alike, so no name read from
        inside a file reaches a report or an output.

    Raises
    ------
    IngestError
        If a recording cannot be read or the clocks cannot be matched; the
        message names the pseudonym, date and file types, never a name.
    """
    config = config or Config()
    redactor = session_redactor(files, names)
    with redact_names(redactor):
        return _ingest(files, expressions, config, redactor, Redactor(session_redactions(files, names, stems=False)))


def session_redactions(files: SessionFiles, names: Mapping[str, str] | None = None, *,
                       stems: bool = True) -> dict[str, str]:  # fmt: skip
    """What to hide while a session is read: the names in its file stems and headers, and its stems.

    Renamed files keep their old names inside: the EEG header's file names,
    set name and subject (:func:`mmme_neuro.io.eeg.header_identity`) are
    hidden as well, so a message built from them (MNE's "Data file name in
    EEG.data (<old name>.fdt) is incorrect", a missing-file error) shows the
    pseudonym. A stem ``<name>_<yyyymmdd>`` hides the stem and the name; the
    ``subject`` field is a name. A stem of another form (``P07``, chosen with
    a session mapping) may or may not hold a name: it is hidden only when
    ``stems`` is true (messages), never when it is a channel name (a file
    renamed ``P1`` must not hide channel P1).

    Parameters
    ----------
    files : SessionFiles
        The session.
    names : mapping of str to str | None
        More names to hide -> pseudonyms, e.g. every name of the coding file
        (``CodingResult.mapping``), as :func:`mmme_neuro.bids.convert_study`
        passes them.
    stems : bool
        Also hide the file stems that show no ``<name>_<yyyymmdd>`` (True for
        messages; False for the contents of outputs and channel labels).

    Returns
    -------
    replacements : dict of str to str
        Text to hide -> pseudonym (``<pseudonym>_<date>`` for a dated stem),
        for :class:`mmme_neuro._privacy.Redactor` (whole tokens).
    """
    out: dict[str, str] = {k: v for k, v in (names or {}).items() if str(k).casefold() not in _NOT_NAMES}

    def hide(text: str, *, file: bool = True) -> None:
        stem = _file_stem(text) if file else text.strip()
        if len(stem) < 2 or stem.isdigit() or stem.casefold() in (files.subject.casefold(), *_NOT_NAMES):
            return
        m = _STEM.match(stem)
        if m:
            out[stem] = f"{files.subject}_{m['date']}"
            if m["name"].casefold() not in _NOT_NAMES:
                out[m["name"]] = files.subject
        elif stems or not file:
            out[stem] = files.subject

    for p in (files.eeg, files.physio):
        if p is not None:
            hide(p.name)
    identity = header_identity(files.eeg)
    file_stems = {_file_stem(v) for k, v in identity.items() if k not in ("setname", "subject", "filepath")}
    for key, value in identity.items():
        if key == "filepath":
            continue  # a folder of the recording computer: never shown, never copied
        if key == "setname":
            if _STEM.match(value) or value in file_stems:
                hide(value)  # a file stem
            continue  # otherwise a description ("Continuous EEG Data"), not a name
        hide(value, file=key != "subject")
    return out


def session_redactor(files: SessionFiles, names: Mapping[str, str] | None = None, *,
                     stems: bool = True) -> Redactor:  # fmt: skip
    """The :class:`~mmme_neuro._privacy.Redactor` of a session's messages and outputs.

    Hides :func:`session_redactions` (``names``, ``stems``) as whole tokens and
    the folders of the session's files as ``<raw>`` (whole path prefixes only).
    """
    folders = {p.parent: "<raw>" for p in (files.eeg, files.physio) if p is not None}
    return Redactor(session_redactions(files, names, stems=stems), folders)


def _file_stem(text: str) -> str:
    """``wang_20230718`` of ``C:\\raw\\wang_20230718.fdt`` (folders and one extension removed)."""
    name = re.split(r"[/\\]", text.strip())[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def _scrub_obj(obj: Any, redactor: Redactor) -> Any:
    """Copy of nested dicts/lists/tuples with every string (keys included) passed through ``redactor``."""
    if isinstance(obj, str):
        return redactor(obj)
    if isinstance(obj, dict):
        return {_scrub_obj(k, redactor): _scrub_obj(v, redactor) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_scrub_obj(v, redactor) for v in obj)
    return obj


def _redact_channels(raw: mne.io.BaseRaw, redactor: Redactor, what: str, label: str) -> None:
    """Rename the channels whose label holds a hidden name; scrub the reader's notes alike (in place)."""
    new = {c: redactor(c) for c in raw.ch_names}
    changed = {old: nm for old, nm in new.items() if old != nm}
    if changed:
        if len(set(new.values())) != len(new):
            raise IngestError(f"{label}: {len(changed)} {what} channel label(s) hold a participant name, and "
                              "renamed to the pseudonym they would not be unique")  # fmt: skip
        raw.rename_channels(changed, verbose="error")
        logger.warning("%s: %d %s channel label(s) held a participant name; renamed to the pseudonym",
                       label, len(changed), what)  # fmt: skip
    if isinstance(raw.info.get("description"), str):
        raw.info["description"] = redactor(raw.info["description"])
    temp = raw.info.get("temp")
    store = temp.get(TEMP_KEY) if isinstance(temp, dict) else None
    if isinstance(store, dict):  # the path read ("source_file", never written) stays true
        temp[TEMP_KEY] = {k: v if k == "source_file" else _scrub_obj(v, redactor) for k, v in store.items()}
        if isinstance(store.get("physio"), dict):
            temp[TEMP_KEY]["physio"] = {k: v if k == "source_file" else _scrub_obj(v, redactor)
                                        for k, v in store["physio"].items()}  # fmt: skip


def _ingest(files: SessionFiles, expressions: pd.DataFrame, config: Config, redactor: Redactor,
            names_only: Redactor) -> SessionIngest:  # fmt: skip
    """Read and place (:func:`ingest_session`); ``redactor`` hides names in error texts, ``names_only``
    (no file stems, no folders) in channel labels and the readers' notes."""
    label = files.label
    try:
        raw = read_eeg(files.eeg, preload=False, verbose=False)
        _redact_channels(raw, names_only, "EEG", label)
        eeg_events, eeg_report = read_eeg_markers(raw)
    except (ValueError, OSError) as err:
        raise IngestError(f"{label}: EEG unreadable: {redactor(str(err))}") from err
    sf = float(raw.info["sfreq"])
    praw = pevents = preport = None
    clock = None
    physio_problem = None
    if files.physio is not None:
        try:
            praw, pevents, preport = read_physio(files.physio)
        except (ValueError, OSError) as err:
            raise IngestError(f"{label}: physiology unreadable: {redactor(str(err))}") from err
        _redact_channels(praw, names_only, "physiology", label)
        try:
            # no trigger markers (no digital lines): nothing to place the physiology on the EEG clock with
            matched = match_markers(eeg_events, pevents) if len(pevents) else None
            clock = None if matched is None else fit_clock(matched, config.sync, sfreq_eeg=sf,
                                                           sfreq_physio=float(praw.info["sfreq"]), label=label)  # fmt: skip
        except SyncError as err:
            raise IngestError(str(err)) from err
        if clock is None:  # kept as a session without a physiology file is: the EEG, not the physiology
            physio_problem = (f"the physiology file ({files.physio.suffix}) has no trigger markers (no digital lines, "
                              "or nothing coded on them): it cannot be placed on the EEG clock and is not used")  # fmt: skip
            logger.warning("%s: %s; the EEG is kept", label, physio_problem)
            praw = pevents = preport = None

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
        if physio_problem is not None and len(ex):
            excl.append(_exclusion_rows(ex, "physio_unusable", "physio", physio_problem))
        elif praw is None and len(ex):
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
        clips=clips, expressions=ex.reset_index(drop=True), exclusions=exclusions, physio_problem=physio_problem,
    )  # fmt: skip


def _anonymous(err: BaseException, files: SessionFiles) -> str:
    """Error text with the session's names (file stems, header names) and folders hidden."""
    return session_redactor(files)(str(err))
