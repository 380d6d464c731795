"""Conversion of a raw MMME study (coding file + EEG + BIOPAC physiology) to BIDS.

:func:`convert_study` pairs the recordings with the coding file
(:func:`mmme_neuro.ingest.find_sessions`), ingests every session
(:func:`mmme_neuro.ingest.ingest_session`) and writes one BIDS subject per
participant with :func:`convert_session`. :func:`read_bids_session` reads a
converted subject back.

Layout (``sub-01`` etc. are the coding file's pseudonyms; names never appear)::

    BIDS_ROOT/
        dataset_description.json   README   participants.tsv   participants.json
        sub-01/
            sub-01_scans.tsv
            eeg/
                sub-01_task-mmme_eeg.set (+ .fdt)     copied EEGLAB data, or BrainVision
                sub-01_task-mmme_eeg.json  _channels.tsv  _electrodes.tsv  _coordsystem.json
                sub-01_task-mmme_events.tsv  _events.json
                sub-01_task-mmme_recording-biopac_physio.tsv.gz  _physio.json
        derivatives/mmme-neuro/
            dataset_description.json
            coding_report.csv      one row per coding-file row (pseudonyms only)
            coded_expressions.tsv  the coding file's kept expressions (+ .json; pseudonyms only)
            exclusions.tsv         every coded expression that is not analysed
            sync.tsv               EEG -> physiology clock fit per subject
            markers.tsv            dropped / flagged markers per subject and modality
            conversion_summary.json
            study_manifest.json    the study's manifest: written last by a finished conversion
            conversion/sub-01.json input fingerprint of the subject (written last)
            physio-binary/sub-01_task-mmme_recording-biopac_physio.npy (+ .json)
                                   the physiology text's fixed-point integers, read
                                   instead of parsing it (same values)

EEG
---
EEGLAB ``.set``/``.fdt`` and BrainVision are valid BIDS EEG formats: mne-bids
copies them without loading the data (a full MMME session is 1.2 GB), and the
copied header is then scrubbed of the participant's name (EEGLAB ``setname``,
``filename``, ``datfile``, ``subject``, ``comments`` ...). A header whose
channel or sample count disagrees with its data file fails the session
(:func:`mmme_neuro.io.eeg.check_data_file`) instead of being copied. Every other format (Curry ``.cdt``, Neuroscan
CNT, EDF/BDF whose header holds a patient name, FIF) is converted to
BrainVision, which **loads the whole recording into memory**. Channel types
come from the reader (EOG, ECG, EMG, TRIG in ``channels.tsv``).

Bad channels (:func:`mmme_neuro.channels.check_converted`): the recording is
scanned in 64-MiB chunks; a channel with NaN/Inf samples or constant data is
marked ``bad`` in ``channels.tsv`` with the reason in ``status_description``
(``non-finite values in 8.0 s (from 12.0 s)``, ``flat: constant over the
recording``), and a montage channel absent from the recording is reported
(it has no row); each is logged as a warning naming the BIDS file and the
channel, and recorded in ``conversion_summary.json`` (``channel_issues`` of
the subject). The data are not altered: the EEGLAB copy keeps the NaN/Inf
bytes, and the BrainVision conversion (IEEE float32) writes them as NaN/Inf,
which read back unchanged; the analyses never filter them
(:mod:`mmme_neuro.preprocessing`).

Events
------
``events.tsv`` is written by this module (not from the recording's
annotations), one row per

- kept expression: ``trial_type`` ``ME`` or ``MaE``, ``value`` 1 (ME) or 2
  (MaE), ``onset`` the EEG-clock onset (s, rounded to 1 µs), ``duration``
  offset minus onset (s), ``sample`` exactly the ingested ``eeg_onset_sample``;
- kept EEG marker: clip start ``trial_type`` ``clip/<emotion>`` (the clip's
  emotion category, e.g. ``clip/sad``), ``value`` the marker (101-148),
  ``duration`` until the rest marker that ends the clip (n/a if none); rest
  ``trial_type`` ``rest`` (``value`` 100, duration 0); any other code
  ``marker/<code>``.

Extra columns (described in ``events.json``): ``expression_id``, ``marker``
(the clip marker), ``clip_emotion``, ``kind``, ``emotion``,
``composite_emotion``, ``aus``, ``kind_source``, ``clip_onset_s`` (coded onset,
s from clip start), ``apex_s`` (EEG clock, s), ``apex_sample``,
``offset_sample``, ``physio_onset_sample``, ``physio_offset_sample`` (rows of
the physiology file), ``in_physio``, ``ingest_flags``, ``coding_issues``,
``source_row`` (row of the coding file).

Physiology and the clock
------------------------
The BIOPAC signals are written as BIDS continuous recordings
(``recording-biopac_physio.tsv.gz``: no header, tab-separated, ``n/a`` for
missing values; column names and units in the JSON) **without resampling**.
The physiology clock runs independently of the EEG clock; ingestion fits
``t_physio = offset + slope * t_eeg`` on the shared markers
(:class:`mmme_neuro.sync.ClockFit`). Physiology sample ``k`` is therefore at
EEG time ``(k / fs - offset) / slope``, which BIDS expresses exactly with

- ``StartTime = -offset / slope`` (s, relative to the first EEG sample), and
- ``SamplingFrequency = fs * slope`` (the physiology rate measured on the EEG clock);

the nominal rate and the raw fit are kept for provenance
(``MMMENominalSamplingFrequency``, ``MMMEClockFit``). Values are in the SI units
of :func:`mmme_neuro.io.physio.read_physio` (V, S, °C, beats/min), written in
fixed point with ``MMMEDecimals`` decimals per column: an absolute resolution
of at most 1e-6 of the column's largest absolute value (finer than the
MP160's 16-bit converter). The ``trigger`` column holds the code of each kept
physiology marker at its onset sample (0 elsewhere). For speed the text is
built with vectorised numpy and gzip-compressed at level 1 in a second
thread. The conversion also keeps the text's integers (value times
``10 ** MMMEDecimals``) as a binary copy in
``derivatives/mmme-neuro/physio-binary/``: reading 5 columns of a full
session from it takes ~0.1 s instead of ~2.5 s of parsing, with the same
values (the parser's own arithmetic). The copy records the size and
modification time of the ``.tsv.gz``; a table changed since is parsed again.

Exclusions and accounting
-------------------------
``exclusions.tsv`` has one row per coded expression that is not analysed
(``scope`` ``all``) or not analysable in the physiology (``scope``
``physio``; the expression stays in ``events.tsv`` with ``in_physio``
false). Stages: ``coding`` (rows the coding report excluded, ``reason_code``
its first issue code), ``ingest`` (``clip_not_in_eeg``,
``outside_eeg_recording``, ``outside_physio_recording``), ``conversion``
(``no_recording``, ``session_failed``: ingestion or writing raised, the
study conversion continues with the other subjects). The invariant, checked
and recorded in ``conversion_summary.json``::

    coding rows == expressions in all events.tsv + exclusions with scope 'all'

Resumability and atomicity
--------------------------
A subject is written into ``BIDS_ROOT/.staging/`` and its ``sub-XX/`` folder
is then renamed into place; the dataset-level files are replaced atomically;
``conversion/sub-XX.json`` (sha256 of the EEG files, companions and
physiology, the coding file's sha256, the hash of the conversion settings
(``coding`` and ``sync`` sections only: :func:`conversion_settings_hash`),
the package version) is written last. A re-run skips a subject whose fingerprint is
unchanged (files whose size and modification time match the record are not
re-hashed unless ``rehash=True``) and removes what a killed run left in
``.staging/``. Re-runs produce byte-identical files.

Study level (:mod:`mmme_neuro.manifest`): a conversion holds the lock
``BIDS_ROOT/.mmme-neuro.lock`` (a second conversion of the same root fails at
once, naming the pid and start time of the first; the lock of a conversion
that died is taken over with a warning), marks
``derivatives/mmme-neuro/study_manifest.json`` ``in_progress`` before it
changes anything and writes it ``complete`` at its very end (the coding
file's and the records' hashes, the conversion summary's hash and counts).
The analyses open a study only if its manifest is complete and matches it
(:func:`mmme_neuro.manifest.check_study`), so a conversion killed half-way,
e.g. between two subjects of a re-conversion after the coding file changed,
is refused until it is re-run. A file-system error while writing (no space,
read-only root ...) stops the conversion with a :class:`ConversionError`
naming the path; the study stays marked unfinished.

Privacy
-------
Everything that reads a session runs inside
:func:`mmme_neuro._privacy.redact_names`, warnings of the readers and mne-bids
are turned into (redacted) log records, and no output holds a file name of
the raw directory. The redactor (:func:`mmme_neuro.ingest.session_redactor`)
hides every name of the coding file, the session's file stems, the names its
EEG header holds (renamed files keep their old names inside) as whole tokens,
and the raw directory as ``<raw>`` (whole path prefixes only); failure
reasons, marker details and every text file of a converted subject are
scrubbed with it before the subject is moved into place.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import queue
import shutil
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mne
import numpy as np
import pandas as pd
from isal import igzip
from tqdm.auto import tqdm

from . import __version__
from ._privacy import Redactor, as_redactor, redact_names
from ._utils import atomic_path, atomic_write_text, sha256_file, stat_key, time_to_sample
from .channels import check_converted
from .config import Config
from .constants import CLIP_EMOTION, CLIP_MARKERS, REST_MARKER
from .ingest import (
    EXCLUSION_COLUMNS,
    IngestError,
    SessionFiles,
    SessionIngest,
    find_sessions,
    ingest_session,
    near_matches,
    no_recording_exclusions,
    session_redactor,
)
from .io.coding import CodingResult, read_coding, write_coding_report, write_expressions_table
from .io.eeg import check_data_file
from .io.markers import TEMP_KEY
from .manifest import DERIVATIVES, mark_in_progress, study_lock, write_manifest
from .montage import TEMPLATE_SPACE, make_quikcap64_montage

__all__ = [
    "BidsSession",
    "ConversionError",
    "ConversionSummary",
    "EVENT_COLUMNS",
    "conversion_settings_hash",
    "convert_session",
    "convert_study",
    "read_bids_session",
    "read_participants_table",
]

logger = logging.getLogger(__name__)

#: Columns of ``events.tsv``, in order.
EVENT_COLUMNS: tuple[str, ...] = (
    "onset", "duration", "trial_type", "value", "sample", "expression_id", "marker",
    "clip_emotion", "kind", "emotion", "composite_emotion", "aus", "kind_source", "clip_onset_s",
    "apex_s", "apex_sample", "offset_sample", "physio_onset_sample", "physio_offset_sample",
    "in_physio", "ingest_flags", "coding_issues", "source_row",
)  # fmt: skip
#: Descriptions of the ``events.tsv`` columns (written to ``events.json``).
EVENT_DESCRIPTIONS: dict[str, str] = {
    "onset": "EEG-clock onset (s from the first EEG sample), rounded to 1 us.",
    "duration": "Expressions: offset minus onset (s). Clips: until the rest marker that ends the clip (n/a if none). Markers: 0.",
    "trial_type": "ME / MaE (coded expression), clip/<emotion> (clip start marker 101-148), rest (marker 100), marker/<code> (other kept marker).",
    "value": "Expressions: 1 = ME, 2 = MaE. Markers: the marker code.",
    "sample": "EEG sample of the onset (0 = first sample).",
    "expression_id": "Expression id from the coding file, <pseudonym>_m<marker>_t<onset ms>.",
    "marker": "Clip marker (101-148) of the expression or the marker row.",
    "clip_emotion": "Emotion category of the clip.",
    "kind": "ME (micro) or MaE (macro) expression.",
    "emotion": "Estimated emotion of the expression (coding file).",
    "composite_emotion": "negative / positive / surprise.",
    "aus": "Action units, e.g. 'AU4, AU7'.",
    "kind_source": "'column' (Macro/Micro column) or 'rule' (ME rule of the configuration).",
    "clip_onset_s": "Coded onset, s from clip start.",
    "apex_s": "EEG-clock apex time (s).",
    "apex_sample": "EEG sample of the apex.",
    "offset_sample": "EEG sample of the offset.",
    "physio_onset_sample": "Row (0-based) of the physiology file at the onset (markers: at the marker).",
    "physio_offset_sample": "Row (0-based) of the physiology file at the offset.",
    "in_physio": "true if onset and offset lie within the physiology recording.",
    "ingest_flags": "';'-joined ingestion flags: beyond_clip_end, repeated_clip_marker.",
    "coding_issues": "';'-joined flags of the coding-file row.",
    "source_row": "Row of the coding file (header = 1).",
}
#: Columns of ``derivatives/mmme-neuro/exclusions.tsv``.
EXCLUSION_TSV_COLUMNS: tuple[str, ...] = (*EXCLUSION_COLUMNS, "stage")
#: Columns of ``sync.tsv``.
SYNC_COLUMNS: tuple[str, ...] = (
    "participant_id", "offset_s", "slope", "drift_ppm", "n_matched", "n_used",
    "max_abs_residual_ms", "rms_residual_ms", "tolerance_ms", "n_outliers",
)  # fmt: skip
#: Columns of ``markers.tsv``.
MARKER_COLUMNS: tuple[str, ...] = (
    "participant_id", "modality", "code", "sample", "time_s", "rule", "action", "detail",
)  # fmt: skip

#: Folder (under :data:`DERIVATIVES`) of the binary copies of the physiology tables (:func:`physio_binary_path`).
PHYSIO_BINARY_DIR = "physio-binary"
STAGING = ".staging"
PHYSIO_RECORDING = "biopac"
#: Significant digits of the physiology text, relative to each column's largest absolute value.
PHYSIO_SIGNIFICANT_DIGITS = 7
#: Rows formatted at a time when writing the physiology.
PHYSIO_CHUNK_ROWS = 1 << 16
#: BIDS-style unit strings of the SI units used by :func:`mmme_neuro.io.physio.read_physio`.
_BIDS_UNITS = {"°C": "oC", "BPM": "bpm"}
_COPY_EXTENSIONS = (".set", ".vhdr")  # BIDS-valid EEG formats copied without loading
_RECORD_VERSION = 1
_EXPR_VALUE = {"ME": 1, "MaE": 2}
#: Warnings that are expected here (events.tsv is written by this module, not by mne-bids).
#: Warnings of the libraries that the conversion expects (logged at DEBUG): the events go to
#: events.tsv, written by the conversion itself, not by mne-bids; MMME's auxiliary channels
#: (HEO, VEO, EKG, EMG, trigger) have no scalp position.
_EXPECTED_WARNINGS = ("No events found or provided", "Not setting positions of")


class ConversionError(ValueError):
    """The raw study cannot be converted (missing raw directory or coding file ...), or the BIDS root
    cannot be created or written (the message names the path)."""


# ----------------------------------------------------------------------------- results


@dataclass
class ConversionSummary:
    """Outcome of :func:`convert_study`.

    Attributes
    ----------
    bids_root : pathlib.Path
    counts : dict
        ``coding_rows``, ``coding_excluded``, ``expressions_in_events``,
        ``me``, ``mae``, ``exclusions_all``, ``exclusions_physio``,
        ``by_reason_code``, ``subjects_in_bids``, ``subjects_failed``.
    subjects : list of dict
        Per subject: ``participant_id``, ``status`` (``converted``,
        ``skipped`` (unchanged inputs) or ``failed``), ``n_expressions``,
        ``n_excluded_all``, ``n_excluded_physio``, ``reason``; ``channel_issues``
        (``bad``: channels marked bad in ``channels.tsv`` with the reason,
        ``missing``: montage channels absent) only when there is one.
    accounting_ok : bool
        ``coding_rows == expressions_in_events + exclusions_all``.
    elapsed_s : float
        Wall time of the conversion (s).
    stale : list of str
        Subjects in the BIDS root that are not among the sessions of the raw
        directory (left by an earlier conversion): the study's manifest does
        not list them, so the study is refused for analysis until they are
        removed or their recordings restored (:func:`mmme_neuro.manifest.check_study`).
    """

    bids_root: Path
    counts: dict[str, Any]
    subjects: list[dict[str, Any]]
    accounting_ok: bool
    elapsed_s: float
    stale: list[str] = field(default_factory=list)

    def by_status(self, status: str) -> list[str]:
        """Pseudonyms of the subjects with ``status``."""
        return [s["participant_id"] for s in self.subjects if s["status"] == status]

    @property
    def converted(self) -> list[str]:
        """Subjects (re)converted in this run."""
        return self.by_status("converted")

    @property
    def skipped(self) -> list[str]:
        """Subjects skipped because their inputs are unchanged."""
        return self.by_status("skipped")

    @property
    def failed(self) -> list[str]:
        """Subjects whose session could not be converted."""
        return self.by_status("failed")

    @property
    def problems(self) -> list[str]:
        """One line per thing that went wrong: failed subjects (with their reasons), stale subjects, a
        broken accounting; empty if the conversion is complete and clean."""
        out = [f"failed: {' '.join(str(s['reason']).split())}" if str(s["reason"]).startswith(s["participant_id"])
               else f"failed: {s['participant_id']}: {' '.join(str(s['reason']).split())}"
               for s in self.subjects if s["status"] == "failed"]  # fmt: skip
        out += [f"stale: {s} is in {self.bids_root} but its recording is not in the raw directory; remove "
                f"{self.bids_root / s} or restore the recording, then re-run mmme-neuro convert" for s in self.stale]
        if not self.accounting_ok:
            c = self.counts
            out.append(f"accounting: {c['coding_rows']} coding rows != {c['expressions_in_events']} expressions "
                       f"+ {c['exclusions_all']} exclusions (a bug: please report it)")  # fmt: skip
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"bids_root": str(self.bids_root), "counts": self.counts, "subjects": self.subjects,
                "accounting_ok": self.accounting_ok, "elapsed_s": round(self.elapsed_s, 3),
                "stale": self.stale}  # fmt: skip


@dataclass
class BidsSession:
    """One converted subject, read back by :func:`read_bids_session`.

    Attributes
    ----------
    subject : str
        Pseudonym (``sub-01``).
    raw : mne.io.BaseRaw
        EEG (not preloaded) read by :func:`mne_bids.read_raw_bids`.
    events : pandas.DataFrame
        ``events.tsv`` (:data:`EVENT_COLUMNS`), ``n/a`` as missing values,
        ``in_physio`` as a nullable boolean.
    physio : pandas.DataFrame | None
        Physiology (one column per ``Columns`` entry of the sidecar, SI units);
        None without physiology or if not requested. Read from
        ``physio_file`` on first access (a full session is ~4.7 M rows, ~5 s
        to parse), so EEG-only steps never pay for it.
    physio_sidecar : dict | None
        ``_physio.json`` (``SamplingFrequency`` and ``StartTime`` on the EEG clock).
    physio_file : pathlib.Path | None
        The ``_physio.tsv.gz`` :attr:`physio` is read from.
    physio_binary : pathlib.Path | None
        The conversion's binary copy of that table (:func:`physio_binary_path`),
        read instead of parsing the text while its record matches the
        ``.tsv.gz`` (same values either way).
    """

    subject: str
    raw: mne.io.BaseRaw
    events: pd.DataFrame
    physio_sidecar: dict[str, Any] | None = None
    physio_file: Path | None = None
    physio_binary: Path | None = None
    _physio: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def has_physio(self) -> bool:
        """Whether the session has physiology (answered from its files, without parsing the table)."""
        return self.physio_file is not None and self.physio_sidecar is not None

    @property
    def physio(self) -> pd.DataFrame | None:
        """The physiology table, every column (read on first access; None without physiology)."""
        return self.read_physio()

    def read_physio(self, columns: Sequence[str] | None = None) -> pd.DataFrame | None:
        """The physiology table, or only some of its columns (parsed once, then kept).

        A table converted by this package is read from its binary copy
        (:attr:`physio_binary`: the fixed-point integers of the text, ~0.1 s
        for a full session) while the copy's record matches the size and
        modification time of the ``.tsv.gz``; the values are those of
        parsing the text (test). Otherwise the text is parsed, the cost of
        a full session (~4.7 M rows, ~2.5 s): only the columns asked for are
        converted, and the gzip stream is inflated with ISA-L
        (:mod:`isal.igzip`, ~1.8x faster than :mod:`gzip`; same bytes).

        Parameters
        ----------
        columns : sequence of str | None
            Column names of the sidecar's ``Columns``; None: all of them.

        Returns
        -------
        pandas.DataFrame | None
            The columns in the order asked (None without physiology).

        Raises
        ------
        ValueError
            Naming the file, if a column is not in the sidecar's ``Columns`` or
            the file cannot be parsed (truncated gzip, malformed rows).
        """
        if not self.has_physio:
            return None
        names = list(self.physio_sidecar["Columns"])
        wanted = names if columns is None else list(columns)
        unknown = [c for c in wanted if c not in names]
        if unknown:
            raise ValueError(f"{self.physio_file}: no column(s) {unknown}; the sidecar lists {names}")
        have = {} if self._physio is None else {c: self._physio[c] for c in self._physio.columns}
        missing = [c for c in names if c in wanted and c not in have]
        if missing:
            have.update(self._read_physio_binary(names, missing) or self._parse_physio(names, missing))
            self._physio = pd.DataFrame({c: have[c] for c in names if c in have})
        return self._physio[wanted] if columns is not None else self._physio

    def _parse_physio(self, names: list[str], columns: list[str]) -> dict[str, pd.Series]:
        """``columns`` parsed from the ``.tsv.gz`` text (an error naming the file if it cannot be)."""
        try:
            with igzip.open(self.physio_file, "rb") as fh:
                parsed = pd.read_csv(fh, sep="\t", header=None, names=names, usecols=columns, na_values=["n/a"],
                                     keep_default_na=False, engine="c")  # fmt: skip
        except (OSError, EOFError, ValueError) as err:  # pandas' ParserError is a ValueError
            raise ValueError(f"{self.physio_file}: cannot read the physiology table: {err}") from err
        return {c: parsed[c] for c in columns}

    def _read_physio_binary(self, names: list[str], columns: list[str]) -> dict[str, pd.Series] | None:
        """``columns`` from :attr:`physio_binary`, or None if there is none that matches the table."""
        path = self.physio_binary
        if path is None or self.physio_file is None or not path.is_file() or not path.with_suffix(".json").is_file():
            return None
        try:
            meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            current = stat_key(self.physio_file)
            if meta.get("Columns") != names or [meta.get("SourceSize"), meta.get("SourceMtimeNs")] != current \
                    or meta.get("Source") != self.physio_file.name:  # fmt: skip
                logger.info("%s: %s does not match the table (changed since the conversion); parsing the text",
                            self.subject, path.name)  # fmt: skip
                return None
            ints = np.load(path, mmap_mode="r", allow_pickle=False)
            if ints.shape != (len(names), int(meta["Rows"])) or ints.dtype.kind != "i":
                raise ValueError(f"shape {ints.shape} / dtype {ints.dtype} do not match its record")
            out = {}
            for c in columns:
                j = names.index(c)
                out[c] = pd.Series(_physio_from_ints(ints[j], int(meta["Decimals"][j]), str(meta["Dtypes"][j]),
                                                     bool(meta["HasMissing"][j])), name=c)  # fmt: skip
            return out
        except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
            logger.warning("%s: cannot use %s (%s); parsing the text", self.subject, path, err)
            return None

    @property
    def n_physio_rows(self) -> int:
        """Number of physiology rows (parses the table only if no column was read yet; 0 without physiology)."""
        if not self.has_physio:
            return 0
        if self._physio is None:
            self.read_physio(list(self.physio_sidecar["Columns"])[:1])
        return len(self._physio)

    @property
    def eeg_raw(self) -> mne.io.BaseRaw:
        """The EEG (same as :attr:`raw`; the name :class:`~mmme_neuro.ingest.SessionIngest` uses)."""
        return self.raw

    @property
    def expressions(self) -> pd.DataFrame:
        """Coded expressions (ME/MaE rows of :attr:`events`) with the columns of
        :attr:`mmme_neuro.ingest.SessionIngest.expressions` (``eeg_onset_s``,
        ``eeg_onset_sample``, ``eeg_apex_*``, ``eeg_offset_*``, ``duration_s``,
        ``onset_to_apex_s``, ``subject`` ...), so downstream steps accept either."""
        ev = self.events[self.events["trial_type"].isin(["ME", "MaE"])].reset_index(drop=True).copy()
        ev["subject"] = self.subject
        ev["kind"] = ev["trial_type"]
        ev["eeg_onset_s"] = ev["onset"].astype(float)
        ev["eeg_onset_sample"] = ev["sample"].astype("int64")
        ev["eeg_apex_s"] = ev["apex_s"].astype(float)
        ev["eeg_apex_sample"] = ev["apex_sample"].astype("int64")
        ev["eeg_offset_s"] = ev["onset"].astype(float) + ev["duration"].astype(float)
        ev["eeg_offset_sample"] = ev["offset_sample"].astype("int64")
        ev["duration_s"] = ev["duration"].astype(float)
        ev["onset_to_apex_s"] = ev["eeg_apex_s"] - ev["eeg_onset_s"]
        return ev

    @property
    def clips(self) -> pd.DataFrame:
        """Clip markers on the EEG clock, as :attr:`mmme_neuro.ingest.SessionIngest.clips`:
        ``marker``, ``eeg_time_s``, ``eeg_sample``, ``end_time_s`` (NaN if no rest marker)."""
        ev = self.events[self.events["trial_type"].astype(str).str.startswith("clip/")]
        dur = pd.to_numeric(ev["duration"], errors="coerce")
        return pd.DataFrame(
            {
                "marker": ev["marker"].astype("int64").to_numpy(),
                "eeg_time_s": ev["onset"].astype(float).to_numpy(),
                "eeg_sample": ev["sample"].astype("int64").to_numpy(),
                "end_time_s": (ev["onset"].astype(float) + dur).to_numpy(),
            }
        )

    def physio_times(self) -> np.ndarray:
        """EEG-clock time (s) of every physiology row: ``StartTime + k / SamplingFrequency``."""
        if not self.has_physio:
            raise ValueError(f"{self.subject}: no physiology")
        sc = self.physio_sidecar
        return sc["StartTime"] + np.arange(self.n_physio_rows) / sc["SamplingFrequency"]

    def eeg_time_to_physio_sample(self, t_eeg_s: np.ndarray | float) -> np.ndarray | int:
        """Physiology row nearest to EEG-clock time(s) ``t_eeg_s`` (s)."""
        if self.physio_sidecar is None:
            raise ValueError(f"{self.subject}: no physiology")
        sc = self.physio_sidecar
        k = (np.asarray(t_eeg_s, dtype=float) - sc["StartTime"]) * sc["SamplingFrequency"]
        return time_to_sample(k, 1.0)


# ----------------------------------------------------------------------------- small helpers


def _json_text(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return obj.as_posix()
    if obj is pd.NA or obj is pd.NaT:
        return None
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _tsv_text(df: pd.DataFrame) -> str:
    """BIDS TSV text: tab-separated, header, ``n/a`` for missing values, LF line ends."""
    return df.to_csv(sep="\t", index=False, na_rep="n/a", lineterminator="\n")


def _write_tsv(path: Path, df: pd.DataFrame) -> Path:
    return atomic_write_text(path, _tsv_text(df))


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = df.astype(object).where(df.notna(), None)
    return [dict(zip(out.columns, row, strict=True)) for row in out.itertuples(index=False, name=None)]


def _scrub(text: str, redactions: Redactor | Mapping[str, str]) -> str:
    """``text`` with names hidden as whole tokens and raw folders as ``<raw>`` (:class:`~mmme_neuro._privacy.Redactor`)."""
    return as_redactor(redactions)(text)


#: Suffixes of the text files a conversion writes (scrubbed of names after writing).
_TEXT_SUFFIXES = (".tsv", ".json", ".csv", ".txt", ".md", ".vhdr", ".vmrk")


def _scrub_outputs(paths: Sequence[Path], redactor: Redactor) -> None:
    """Scrub the text files among ``paths`` of every name ``redactor`` hides (rewritten atomically if changed).

    The last line of defence: whatever text came from inside an input (a
    channel label, a physiology column label, a marker description) and
    holds a known name reaches no output file.
    """
    for path in paths:
        if path.is_file() and path.suffix.lower() in _TEXT_SUFFIXES:
            _scrub_text_file(path, redactor)


@contextlib.contextmanager
def _warnings_to_log(level: int = logging.INFO) -> Iterator[None]:
    """Turn Python warnings raised inside the block into log records (which are redacted)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                expected = str(w.message).startswith(_EXPECTED_WARNINGS)
                logger.log(logging.DEBUG if expected else level, "%s: %s", w.category.__name__, w.message)


def _input_files(files: SessionFiles) -> list[tuple[str, Path]]:
    """``(role, path)`` of every raw file of a session: the EEG entry file, its companions
    (same stem: ``.fdt``, ``.eeg``/``.vmrk``, ``.dpa`` ...), and the physiology file."""
    out: list[tuple[str, Path]] = [("eeg", files.eeg)]
    physio = files.physio.resolve() if files.physio else None
    for p in sorted(files.eeg.parent.iterdir()):
        if p == files.eeg or not p.is_file() or (physio is not None and p.resolve() == physio):
            continue
        if p.name.startswith(files.eeg.stem + ".") or p.name.startswith(files.eeg.name + "."):
            out.append(("eeg_companion", p))
    if files.physio is not None:
        out.append(("physio", files.physio))
    return out


# ----------------------------------------------------------------------------- events


def _round_s(x: Any) -> np.ndarray:
    return np.round(np.asarray(x, dtype=float), 6)


def _events_table(session: SessionIngest) -> pd.DataFrame:
    """The rows of ``events.tsv`` (see the module docstring)."""
    sf = session.eeg_sfreq
    clock = session.clock
    psf = session.physio_sfreq
    ex = session.expressions
    n = len(ex)
    na_int = pd.array([pd.NA] * n, dtype="Int64")
    expr = pd.DataFrame(
        {
            "onset": _round_s(ex["eeg_onset_s"]),
            "duration": _round_s(ex["eeg_offset_s"].to_numpy(dtype=float) - ex["eeg_onset_s"].to_numpy(dtype=float)),
            "trial_type": ex["kind"].astype(str).to_numpy(),
            "value": [_EXPR_VALUE.get(k, 0) for k in ex["kind"]],
            "sample": ex["eeg_onset_sample"].astype(np.int64).to_numpy(),
            "expression_id": ex["expression_id"].to_numpy(),
            "marker": ex["marker"].astype(np.int64).to_numpy(),
            "clip_emotion": ex["clip_emotion"].to_numpy(),
            "kind": ex["kind"].to_numpy(),
            "emotion": ex["emotion"].to_numpy(),
            "composite_emotion": ex["composite_emotion"].to_numpy(),
            "aus": ex["aus"].to_numpy(),
            "kind_source": ex["kind_source"].to_numpy(),
            "clip_onset_s": _round_s(ex["onset_s"]),
            "apex_s": _round_s(ex["eeg_apex_s"]),
            "apex_sample": ex["eeg_apex_sample"].astype(np.int64).to_numpy(),
            "offset_sample": ex["eeg_offset_sample"].astype(np.int64).to_numpy(),
            "physio_onset_sample": pd.array(ex["physio_onset_sample"], dtype="Int64") if n else na_int,
            "physio_offset_sample": pd.array(ex["physio_offset_sample"], dtype="Int64") if n else na_int,
            "in_physio": np.where(ex["in_physio"].astype(bool), "true", "false"),
            "ingest_flags": ex["ingest_flags"].to_numpy(),
            "coding_issues": ex["issues"].to_numpy(),
            "source_row": ex["source_row"].astype(np.int64).to_numpy(),
            "_order": 1,
        }
    )
    ev = session.eeg_events.sort_values("sample", kind="stable")
    codes = ev["code"].astype(np.int64).to_numpy()
    samples = ev["sample"].astype(np.int64).to_numpy()
    clips = session.clips.set_index("marker")
    first = dict(zip(clips["eeg_sample"], clips.index, strict=True))
    trial, dur, flags = [], [], []
    seen: set[int] = set()
    for s, c in zip(samples, codes, strict=True):
        if c in CLIP_MARKERS:
            trial.append(f"clip/{CLIP_EMOTION[c]}")
            if first.get(s) == c and c not in seen:
                end = clips.at[c, "end_time_s"]
                dur.append(np.nan if pd.isna(end) else end - s / sf)
                flags.append("")
            else:
                dur.append(np.nan)
                flags.append("repeated_clip_marker")
            seen.add(c)
        elif c == REST_MARKER:
            trial.append("rest")
            dur.append(0.0)
            flags.append("")
        else:
            trial.append(f"marker/{c}")
            dur.append(0.0)
            flags.append("")
    t = samples / sf
    psample = (
        pd.array(time_to_sample(np.asarray(clock.to_physio_time(t), dtype=float), psf), dtype="Int64")
        if clock is not None and len(t)
        else pd.array([pd.NA] * len(t), dtype="Int64")
    )
    marks = pd.DataFrame(
        {
            "onset": _round_s(t),
            "duration": _round_s(dur),
            "trial_type": trial,
            "value": codes,
            "sample": samples,
            "marker": codes,
            "clip_emotion": [CLIP_EMOTION.get(int(c)) for c in codes],
            "physio_onset_sample": psample,
            "ingest_flags": flags,
            "_order": 0,
        }
    )
    out = pd.concat([marks, expr], ignore_index=True) if len(marks) else expr
    out = out.sort_values(["sample", "_order"], kind="stable").drop(columns="_order")
    out = out.reindex(columns=list(EVENT_COLUMNS))
    for col in ("value", "sample", "marker", "apex_sample", "offset_sample", "physio_onset_sample",
                "physio_offset_sample", "source_row"):  # fmt: skip
        out[col] = pd.array(out[col], dtype="Int64")
    for col in ("ingest_flags", "coding_issues"):
        out[col] = out[col].where(out[col].notna() & (out[col] != ""), None)
    return out.reset_index(drop=True)


def _events_json(session: SessionIngest) -> dict[str, Any]:
    levels = {"ME": "Micro-expression (coded in the MMME coding file).",
              "MaE": "Macro-expression (coded in the MMME coding file).",
              "rest": "Rest between clips (marker 100)."}  # fmt: skip
    for emo in sorted(set(CLIP_EMOTION.values())):
        levels[f"clip/{emo}"] = f"Start of a {emo} video clip (markers {', '.join(str(m) for m, e in CLIP_EMOTION.items() if e == emo)})."
    out: dict[str, Any] = {col: {"Description": EVENT_DESCRIPTIONS[col]} for col in EVENT_COLUMNS}
    out["onset"]["Units"] = "s"
    out["duration"]["Units"] = "s"
    out["clip_onset_s"]["Units"] = "s"
    out["apex_s"]["Units"] = "s"
    out["trial_type"]["Levels"] = levels
    out["value"]["Levels"] = {"1": "ME", "2": "MaE", "100": "rest", **{str(m): f"clip {m} ({e})" for m, e in sorted(CLIP_EMOTION.items())}}
    return out


# ----------------------------------------------------------------------------- physiology text

_POW10 = 10 ** np.arange(19, dtype=np.int64)
#: ASCII digit j (0 = most significant) of the 4-digit zero-padded numbers 0-9999.
_DIGIT_LUT = [
    np.frombuffer(b"".join(f"{i:04d}".encode()[j : j + 1] for i in range(10000)), dtype=np.uint8)
    for j in range(4)
]


def _column_decimals(x: np.ndarray, significant: int = PHYSIO_SIGNIFICANT_DIGITS) -> int:
    """Decimals giving an absolute resolution of at most ``10 ** (1 - significant)`` times the
    column's largest absolute value (0 for integer or all-zero columns)."""
    if x.dtype.kind in "iub":
        return 0
    finite = np.abs(x[np.isfinite(x)])
    top = float(finite.max()) if finite.size else 0.0
    if top == 0.0:
        return 0
    return int(np.clip(significant - 1 - np.floor(np.log10(top)), 0, 15))


def _field_rows(x: np.ndarray, decimals: int) -> list[np.ndarray]:
    """Fixed-point text of one column as character positions (left to right), each an
    ``(n,)`` uint8 array; 0 means no character at that position for that row."""
    n = x.shape[0]
    d = int(decimals)
    bad = None
    if x.dtype.kind in "iub":
        a = x.astype(np.int64)
        neg = a < 0
        a = np.abs(a)
    else:
        finite = np.isfinite(x)
        if not finite.all():
            bad = ~finite
            x = np.where(finite, x, 0.0)
        a = np.rint(np.abs(x) * (10.0**d)).astype(np.int64)
        neg = (x < 0) & (a > 0)
    amax = int(a.max()) if n else 0
    ndig = max(len(str(amax)), d + 1)
    if amax < 2**31:
        a = a.astype(np.int32)  # 32-bit division is several times faster
    rows: list[np.ndarray] = []  # least significant first
    q = a
    k = 0
    while k < ndig:
        q_next = q // 10000
        rem = q - q_next * 10000
        q = q_next
        for j in (3, 2, 1, 0):
            if k >= ndig:
                break
            digit = _DIGIT_LUT[j][rem]
            if k > d:  # leading zeros of the integer part are no characters
                digit = digit * (a >= _POW10[k])
            rows.append(digit)
            if d and k == d - 1:
                rows.append(np.full(n, 46, dtype=np.uint8))  # '.'
            k += 1
    if neg.any():
        idx = np.flatnonzero(neg)
        nd = np.maximum(np.searchsorted(_POW10, a[idx], side="right"), d + 1)
        pos = nd + (1 if d else 0)  # position (from the right) just left of the first digit
        rows.append(np.zeros(n, dtype=np.uint8))
        for p in np.unique(pos):
            rows[int(p)][idx[pos == p]] = 45  # '-'
    rows.reverse()
    if bad is not None:
        idx = np.flatnonzero(bad)
        while len(rows) < 3:
            rows.insert(0, np.zeros(n, dtype=np.uint8))
        for r in rows:
            r[idx] = 0
        for r, ch in zip(rows[-3:], b"n/a", strict=True):
            r[idx] = ch
    return rows


def _format_rows(columns: Sequence[np.ndarray], decimals: Sequence[int]) -> bytes:
    """Tab-separated, newline-terminated text of rows given column-wise."""
    n = columns[0].shape[0]
    positions: list[np.ndarray] = []
    tab = np.full(n, 9, dtype=np.uint8)
    for j, (x, d) in enumerate(zip(columns, decimals, strict=True)):
        positions.extend(_field_rows(x, d))
        positions.append(tab if j < len(columns) - 1 else np.full(n, 10, dtype=np.uint8))
    # (positions, rows) -> (rows, positions): contiguous writes, then one transposing copy
    flat = np.ascontiguousarray(np.stack(positions).T).reshape(-1)
    return flat[flat != 0].tobytes()


def _write_physio_tsv_gz(path: Path, data: np.ndarray, trigger: np.ndarray | None,
                         decimals: Sequence[int]) -> None:  # fmt: skip
    """Write ``data`` (channels x samples) (+ ``trigger``) as headerless gzipped TSV, atomically.

    Formatting (numpy, this thread) and compression (zlib releases the GIL,
    a writer thread) overlap; the gzip header holds no file name and mtime 0,
    so the bytes depend on the data only.
    """
    n = data.shape[1]
    pending: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
    errors: list[BaseException] = []
    with atomic_path(path) as tmp:

        def writer() -> None:
            try:
                with open(tmp, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh,
                                                          compresslevel=1, mtime=0) as gz:  # fmt: skip
                    while (block := pending.get()) is not None:
                        gz.write(block)
            except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(err)
                while pending.get() is not None:
                    pass

        thread = threading.Thread(target=writer, name="physio-gzip", daemon=True)
        thread.start()
        try:
            for start in range(0, n, PHYSIO_CHUNK_ROWS):
                stop = min(n, start + PHYSIO_CHUNK_ROWS)
                cols = [data[i, start:stop] for i in range(data.shape[0])]
                if trigger is not None:
                    cols.append(trigger[start:stop])
                pending.put(_format_rows(cols, decimals))
                if errors:
                    break
        finally:
            pending.put(None)
            thread.join()
        if errors:
            raise errors[0]


def _physio_sidecar(session: SessionIngest, decimals: Sequence[int], columns: list[str]) -> dict[str, Any]:
    raw = session.physio_raw
    fs = float(raw.info["sfreq"])
    store = raw.info.get("temp", {}).get("mmme_neuro", {}).get("physio", {})
    units = store.get("units", {})
    clock = session.clock
    col_info: dict[str, Any] = {}
    for name, ch_type in zip(raw.ch_names, raw.get_channel_types(), strict=True):
        unit = units.get(name, "n/a")
        col_info[name] = {"Description": f"BIOPAC {name} ({ch_type})", "Units": _BIDS_UNITS.get(unit, unit)}
    col_info["trigger"] = {"Description": "Code of each kept physiology marker at its onset sample, 0 elsewhere (decoded from the 8 digital lines).",
                           "Units": "n/a"}  # fmt: skip
    return {
        "SamplingFrequency": fs * clock.slope,
        "StartTime": -clock.offset_s / clock.slope,
        "Columns": columns,
        **col_info,
        "Manufacturer": "BIOPAC Systems",
        "ManufacturersModelName": "MP160 (AcqKnowledge 5)",
        "MMMENominalSamplingFrequency": fs,
        "MMMEClockNote": (
            "Not resampled. Row k (0-based) is at physiology time k / MMMENominalSamplingFrequency "
            "and at EEG time StartTime + k / SamplingFrequency = (k / fs - offset_s) / slope, where "
            "t_physio = offset_s + slope * t_eeg is the clock fit on the shared markers (MMMEClockFit)."
        ),
        "MMMEClockFit": clock.to_dict(),
        "MMMEDecimals": dict(zip(columns, (int(d) for d in decimals), strict=True)),
        "MMMESourceFormat": store.get("format", "n/a"),
        "MMMEMarkerCounts": store.get("marker_counts", {}),
    }


def _write_physio(session: SessionIngest, tsv_path: Path, json_path: Path, binary_path: Path | None = None) -> None:
    raw = session.physio_raw
    data = raw._data  # RawArray: the loaded array itself, not a 300-MB copy of it
    trigger = np.zeros(raw.n_times, dtype=np.int64)
    pev = session.physio_events
    if pev is not None and len(pev):
        trigger[pev["sample"].astype(np.int64).to_numpy()] = pev["code"].astype(np.int64).to_numpy()
    decimals = [_column_decimals(data[i]) for i in range(data.shape[0])] + [0]
    columns = [*raw.ch_names, "trigger"]
    _write_physio_tsv_gz(tsv_path, data, trigger, decimals)
    atomic_write_text(json_path, _json_text(_physio_sidecar(session, decimals, columns)))
    if binary_path is not None:
        _write_physio_binary(binary_path, [*data, trigger], decimals, columns, tsv_path)


def _write_physio_binary(path: Path, columns: Sequence[np.ndarray], decimals: Sequence[int], names: list[str],
                         tsv_path: Path) -> None:  # fmt: skip
    """The physiology text's exact content as fixed-point integers (``.npy``, columns x rows) + a JSON.

    Row ``k`` of column ``j`` in the text is ``ints[j, k] / 10 ** decimals[j]``
    written in fixed point (:func:`_field_rows` prints ``rint(|x| 10^d)``
    with the sign), ``n/a`` where ``ints`` holds the smallest integer of its
    dtype. Reading it back (:meth:`BidsSession.read_physio`) gives what
    parsing the text gives, value for value, without parsing 4.7 M rows of
    text: pandas' parser divides the digits (exact below 2^53) by the exact
    power of ten, as :func:`_physio_from_ints` does. The JSON records the
    size and modification time of the ``.tsv.gz``: a table changed since is
    parsed again (the copy is ignored, never trusted).
    """
    def fixed(x: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray | None]:
        if x.dtype.kind in "iub":
            return np.asarray(x, dtype=np.int64), None
        k = np.rint(x * (10.0**d))
        bad = ~np.isfinite(k)
        if not bad.any():
            return k, None
        k[bad] = 0.0
        return k, bad

    def absmax(x: np.ndarray) -> float:
        finite = np.abs(x[np.isfinite(x)]) if x.dtype.kind == "f" else np.abs(x)
        return float(finite.max()) if finite.size else 0.0

    top = max((absmax(x) * 10.0 ** int(d) for x, d in zip(columns, decimals, strict=True)), default=0.0)
    dtype = np.dtype(np.int32 if top < np.iinfo(np.int32).max - 1 else np.int64)
    out = np.empty((len(columns), len(columns[0]) if columns else 0), dtype=dtype)
    has_missing = []
    for j, (x, d) in enumerate(zip(columns, decimals, strict=True)):
        k, bad = fixed(x, int(d))
        out[j] = k  # integral values, cast
        if bad is not None:
            out[j, bad] = np.iinfo(dtype).min
        has_missing.append(bad is not None)
    # what pandas infers from the text: integers where no decimal point and no n/a, else floats
    kinds = ["int64" if int(d) == 0 and not m else "float64" for d, m in zip(decimals, has_missing, strict=True)]
    size, mtime = stat_key(tsv_path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, out, allow_pickle=False)
    atomic_write_text(path.with_suffix(".json"), _json_text({
        "Description": "The integers of the physiology table's fixed-point text (value = int / 10**decimals; "
                       "the dtype's smallest integer = n/a), columns x rows. A copy for fast reading; "
                       "the .tsv.gz is the data.",
        "Source": tsv_path.name, "SourceSize": size, "SourceMtimeNs": mtime,
        "Columns": names, "Decimals": [int(d) for d in decimals], "Dtypes": kinds,
        "HasMissing": has_missing, "Rows": int(out.shape[1]),
    }))  # fmt: skip


def physio_binary_path(bids_root: str | os.PathLike, physio_file: str | os.PathLike) -> Path:
    """Where the conversion puts the binary copy of a physiology table (:func:`_write_physio_binary`)."""
    return Path(bids_root) / DERIVATIVES / PHYSIO_BINARY_DIR / Path(physio_file).name.replace(".tsv.gz", ".npy")


def _physio_from_ints(k: np.ndarray, decimals: int, dtype: str, has_missing: bool) -> np.ndarray:
    """Column values from the fixed-point integers (:func:`_write_physio_binary`), as the text parses."""
    if dtype == "int64":
        return np.asarray(k, dtype=np.int64)
    v = np.asarray(k, dtype=np.float64)
    if decimals:
        v /= 10.0 ** int(decimals)  # the parser's division: correctly rounded, as the exact decimal
    if has_missing:
        v[k == np.iinfo(k.dtype).min] = np.nan
    return v


# ----------------------------------------------------------------------------- EEG headers


def _scrub_value(value: Any, redactions: Redactor | Mapping[str, str]) -> Any:
    """Copy of a loadmat value with every string scrubbed."""
    if isinstance(value, str):
        return _scrub(value, redactions)
    if isinstance(value, dict):
        return {k: _scrub_value(v, redactions) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "U":
            return np.array([_scrub(str(s), redactions) for s in value.ravel()]).reshape(value.shape) if value.size else value
        if value.dtype.names:
            out = value.copy()
            for name in value.dtype.names:
                for idx in np.ndindex(value.shape):
                    out[name][idx] = _scrub_value(value[name][idx], redactions)
            return out
        if value.dtype == object:
            out = value.copy()
            for idx in np.ndindex(value.shape):
                out[idx] = _scrub_value(value[idx], redactions)
            return out
    return value


def _mat_text(value: Any) -> str | None:
    """The string held by a loadmat value (``array(['x'])``, ``array([[array(['x'])]])`` ...)."""
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.ravel()[0]
    if isinstance(value, np.ndarray) and value.dtype.kind == "U" and value.size == 1:
        return str(value.ravel()[0])
    return value if isinstance(value, str) else None


def _finish_eeglab_set(path: Path, source: Path, redactions: Redactor | Mapping[str, str],
                       data_source: Path | None = None, subject: str | None = None) -> None:  # fmt: skip
    """Complete and anonymise a copied EEGLAB header.

    mne-bids' ``copyfile_eeglab`` copies the ``.fdt`` only for headers with
    an ``EEG`` struct; for headers with top-level fields (as EEGLAB's
    ``pop_saveset`` may write, and the synthetic studies do) the ``.fdt`` is
    copied here, from ``data_source``: the file the reader read, which is not
    the one ``EEG.data`` names when the files were renamed. Every string is
    scrubbed of the participant's name; the identity fields are replaced:
    ``setname``/``filename`` become the BIDS name, ``datfile`` and ``data``
    the BIDS ``.fdt``, ``filepath`` is emptied and ``subject`` becomes the
    pseudonym (``subject``; emptied if None). The MAT header's creation time is
    replaced by fixed text so that the bytes are reproducible. Loads and
    saves the header the way ``copyfile_eeglab`` does; the ``.fdt`` data are
    never loaded.
    """
    from scipy.io import loadmat, savemat

    mat = loadmat(path, simplify_cells=False, appendmat=False, uint16_codec=None, mat_dtype=True)
    oldstyle = "EEG" in mat
    eeg = mat["EEG"] if oldstyle else {k: v for k, v in mat.items() if not k.startswith("__")}

    def get(key: str) -> Any:
        if oldstyle:
            return eeg[key][0, 0] if eeg.dtype.names and key in eeg.dtype.names else None
        return eeg.get(key)

    def put(key: str, text: str) -> None:
        value = np.array([text]) if text else np.array([], dtype="<U1")
        if oldstyle:
            if eeg.dtype.names and key in eeg.dtype.names:
                eeg[key][0, 0] = value
        elif key in eeg:
            eeg[key] = value

    data_ref = _mat_text(get("data"))
    has_fdt = data_ref is not None and data_ref.lower().endswith(".fdt")
    if has_fdt:
        fdt = path.with_suffix(".fdt")
        if not fdt.exists():
            src = data_source if data_source is not None and data_source.suffix.lower() == ".fdt" \
                else source.parent / data_ref  # fmt: skip
            shutil.copyfile(src, fdt)
        put("data", fdt.name)
    eeg = _scrub_value(eeg, redactions)
    fields = {"setname": path.stem, "filename": path.name, "filepath": "", "subject": subject or "",
              "datfile": path.with_suffix(".fdt").name if has_fdt else ""}  # fmt: skip
    for key, text in fields.items():
        put(key, text)
    if has_fdt:
        put("data", path.with_suffix(".fdt").name)
    with atomic_path(path) as tmp:
        savemat(tmp, {"EEG": eeg} if oldstyle else eeg, appendmat=False)
        with open(tmp, "r+b") as fh:
            fh.write(b"MATLAB 5.0 MAT-file, written by mmme-neuro".ljust(116, b" "))


def _scrub_eeglab_set(path: Path, redactions: Redactor | Mapping[str, str]) -> None:
    """Scrub every string of a converted EEGLAB header (rewritten atomically only if one changed)."""
    from scipy.io import loadmat, savemat

    mat = loadmat(path, simplify_cells=False, appendmat=False, uint16_codec=None, mat_dtype=True)
    content = {k: v for k, v in mat.items() if not k.startswith("__")}
    scrubbed = _scrub_value(content, redactions)
    if _mat_strings(scrubbed) == _mat_strings(content):
        return
    with atomic_path(path) as tmp:
        savemat(tmp, scrubbed, appendmat=False)
        with open(tmp, "r+b") as fh:
            fh.write(b"MATLAB 5.0 MAT-file, written by mmme-neuro".ljust(116, b" "))


def _mat_strings(value: Any) -> list[str]:
    """Every string of a loadmat value, in order (to see whether scrubbing changed one)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k in sorted(value) for s in _mat_strings(value[k])]
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "U":
            return [str(s) for s in value.ravel()]
        if value.dtype.names:
            return [s for idx in np.ndindex(value.shape) for name in value.dtype.names
                    for s in _mat_strings(value[name][idx])]  # fmt: skip
        if value.dtype == object:
            return [s for idx in np.ndindex(value.shape) for s in _mat_strings(value[idx])]
    return []


def _scrub_staged(stage_root: Path, redactions: Redactor) -> None:
    """Scrub a staged subject (text files and EEGLAB headers) before it is moved into place."""
    paths = sorted(p for p in stage_root.rglob("*") if p.is_file())
    _scrub_outputs(paths, redactions)
    for path in paths:
        if path.suffix.lower() == ".set":
            _scrub_eeglab_set(path, redactions)


def _scrub_text_file(path: Path, redactions: Redactor | Mapping[str, str]) -> None:
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    new = _scrub(text, redactions)
    if new != text:
        with atomic_path(path) as tmp:
            tmp.write_bytes(new.encode("utf-8", errors="surrogateescape"))


# ----------------------------------------------------------------------------- one subject


def _bids_label(subject: str) -> str:
    return subject[4:] if subject.startswith("sub-") else subject


def convert_session(session: SessionIngest, bids_root: str | os.PathLike, *, task: str = "mmme",
                    redactor: Redactor | None = None, config: Config | None = None) -> dict[str, Any]:  # fmt: skip
    """Write one ingested session as a BIDS subject under ``bids_root``.

    Writes directly into ``bids_root`` (:func:`convert_study` passes a
    staging directory and moves the subject into place). mne-bids also
    writes dataset-level files (``participants.tsv`` ...) into ``bids_root``;
    :func:`convert_study` rewrites those of the real root.

    Parameters
    ----------
    session : SessionIngest
        From :func:`mmme_neuro.ingest.ingest_session`.
    bids_root : path-like
        BIDS root (created).
    task : str
        BIDS task label.
    redactor : Redactor | None
        What to hide in log records and in the written files (default:
        :func:`mmme_neuro.ingest.session_redactor` of the session: the names
        in its file stems and headers, its raw folder, and in log records
        its file stems); every text file written is scrubbed with it
        (:func:`_scrub_outputs`).
    config : Config | None
        ``bids`` (amplifier, cap, reference and ground written to
        ``*_eeg.json``) and ``preprocessing.notch_freq`` (its
        ``PowerLineFrequency``); default :class:`~mmme_neuro.config.Config`.

    Returns
    -------
    result : dict
        ``participant_id``, ``files`` (paths relative to ``bids_root``),
        ``n_expressions``, ``n_me``, ``n_mae``, ``eeg_copied`` (True: the
        EEG file was copied without loading the data), ``channel_issues``
        (:func:`mmme_neuro.channels.check_converted`).
    """
    import mne_bids

    bids_root = Path(bids_root)
    config = config or Config()
    files = session.files
    label = _bids_label(session.subject)
    redactions = redactor if redactor is not None else session_redactor(files)
    in_files = redactor if redactor is not None else session_redactor(files, stems=False)
    t_start = time.perf_counter()
    # mne-bids' warnings reach the user (as redacted log records), but for the expected ones
    with redact_names(redactions), _warnings_to_log(logging.WARNING):
        bp = mne_bids.BIDSPath(subject=label, task=task, datatype="eeg", root=bids_root)
        raw = session.eeg_raw.copy()
        raw.set_annotations(None)  # markers and expressions go to events.tsv, written below
        raw.info["line_freq"] = config.preprocessing.notch_freq  # eeg.json PowerLineFrequency
        ext = files.eeg.suffix.lower()
        copied = ext in _COPY_EXTENSIONS and not raw.preload
        if copied:
            written = mne_bids.write_raw_bids(raw, bp, overwrite=True, verbose=False)
        else:
            # Not a BIDS EEG format (Curry .cdt, CNT, EDF/BDF with a name in the header, FIF):
            # convert to BrainVision. This LOADS THE WHOLE RECORDING into memory.
            raw.load_data(verbose=False)
            written = mne_bids.write_raw_bids(raw, bp, format="BrainVision", allow_preload=True,
                                              overwrite=True, verbose=False)  # fmt: skip
        del raw
        t_eeg = time.perf_counter()
        data_file = written.fpath
        mne_bids.update_sidecar_json(bp.copy().update(suffix="eeg", extension=".json"), _eeg_json_entries(config),
                                     verbose=False)  # fmt: skip
        if _has_template_positions(session.eeg_raw):
            _declare_template_positions(bp, session.eeg_raw)
        if data_file.suffix == ".set":
            _finish_eeglab_set(data_file, files.eeg, in_files, data_source=Path(session.eeg_raw.filenames[0]),
                               subject=session.subject)  # fmt: skip
        elif data_file.suffix == ".vhdr":
            for companion in (data_file, data_file.with_suffix(".vmrk")):
                if companion.is_file():
                    _scrub_text_file(companion, in_files)
        # non-finite / flat channels marked bad in channels.tsv (the data are copied as they are), missing ones logged
        channel_issues = check_converted(session.eeg_raw, bp.copy().update(suffix="channels", extension=".tsv").fpath,
                                         data_file.name)  # fmt: skip

        events = _events_table(session)
        ev_path = bp.copy().update(suffix="events", extension=".tsv").fpath
        _write_tsv(ev_path, events)
        atomic_write_text(ev_path.with_suffix(".json"), _json_text(_events_json(session)))

        if session.physio_raw is not None and session.clock is not None:
            pbp = bp.copy().update(recording=PHYSIO_RECORDING, suffix="physio", extension=".tsv.gz")
            binary = physio_binary_path(bids_root, pbp.fpath)
            _write_physio(session, pbp.fpath, pbp.copy().update(extension=".json").fpath, binary)
            _scrub_outputs([binary.with_suffix(".json")], in_files)
        _scrub_outputs(sorted((bids_root / session.subject).rglob("*")), in_files)
        logger.info("%s: EEG written in %.1f s, events and physiology in %.1f s", session.subject,
                    t_eeg - t_start, time.perf_counter() - t_eeg)  # fmt: skip

    sub_dir = bids_root / session.subject
    kinds = session.expressions["kind"]
    return {
        "participant_id": session.subject,
        "files": sorted(p.relative_to(bids_root).as_posix() for p in sub_dir.rglob("*") if p.is_file()),
        "n_expressions": int(len(session.expressions)),
        "n_me": int((kinds == "ME").sum()),
        "n_mae": int((kinds == "MaE").sum()),
        "eeg_copied": bool(copied),
        "channel_issues": channel_issues,
    }


def _eeg_json_entries(config: Config) -> dict[str, Any]:
    """``*_eeg.json`` fields of the recording setup (``bids`` section of the configuration)."""
    b = config.bids
    return {"Manufacturer": b.manufacturer, "ManufacturersModelName": b.manufacturers_model_name,
            "CapManufacturer": b.cap_manufacturer, "CapManufacturersModelName": b.cap_model,
            "EEGPlacementScheme": b.placement_scheme, "EEGReference": b.eeg_reference, "EEGGround": b.eeg_ground}  # fmt: skip


def _has_template_positions(raw: mne.io.BaseRaw) -> bool:
    """Whether the reader gave the EEG channels the Quik-Cap template positions (:func:`mmme_neuro.io.eeg.read_eeg`)."""
    store = (raw.info.get("temp") or {}).get(TEMP_KEY) or {}
    return str((store.get("channels") or {}).get("montage", "")).startswith("Quik-Cap 64 template")


def _declare_template_positions(bp: Any, raw: mne.io.BaseRaw) -> None:
    """Declare the electrode positions mne-bids wrote as what they are: a template, not a digitisation.

    mne-bids writes positions in MNE's head frame as ``space-CapTrak``, the
    frame of digitised positions. The Quik-Cap positions are MNE's
    ``standard_1005`` template, in MNI coordinates of the Colin27 head
    (:data:`mmme_neuro.montage.TEMPLATE_SPACE`), so their files are
    rewritten as ``space-MNIColin27`` with the same values and a description
    (mne-bids would put a template ``space`` into the EEG data file names
    too, which BIDS does not allow there).
    """
    eeg_dir = bp.copy().update(suffix="eeg").fpath.parent
    sub = f"sub-{bp.subject}"
    old = {k: eeg_dir / f"{sub}_space-CapTrak_{k}" for k in ("electrodes.tsv", "electrodes.json", "coordsystem.json")}
    if not old["electrodes.tsv"].is_file():
        return
    space = TEMPLATE_SPACE
    new = {k: eeg_dir / f"{sub}_space-{space}_{k}" for k in old}
    atomic_write_text(new["electrodes.tsv"], old["electrodes.tsv"].read_text(encoding="utf-8"))
    atomic_write_text(new["electrodes.json"], _json_text({"SpatialReference": space}))
    fid = raw.get_montage().get_positions()
    coords = {"EEGCoordinateSystem": space, "EEGCoordinateUnits": "m",
              "EEGCoordinateSystemDescription": (
                  "Template positions, not digitised: the Neuroscan Quik-Cap 64 sites at the 10-05 positions of "
                  "MNE-Python's standard_1005 template (FieldTrip's standard_1005.elc, fitted on the Colin27 head in "
                  "MNI coordinates); CB1/CB2 at I1/I2. The same for every participant.")}  # fmt: skip
    landmarks = {k: fid[m] for k, m in (("NAS", "nasion"), ("LPA", "lpa"), ("RPA", "rpa")) if fid.get(m) is not None}
    if landmarks:
        coords |= {"AnatomicalLandmarkCoordinates": {k: [float(x) for x in v] for k, v in landmarks.items()},
                   "AnatomicalLandmarkCoordinateSystem": space, "AnatomicalLandmarkCoordinateUnits": "m",
                   "AnatomicalLandmarkCoordinateSystemDescription": "The template's fiducials, in its coordinates."}  # fmt: skip
    atomic_write_text(new["coordsystem.json"], _json_text(coords))
    for path in old.values():
        path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- study


def _find_coding_file(raw_dir: Path, coding_file: str | os.PathLike | None, config: Config) -> Path:
    if coding_file is not None:
        path = Path(coding_file)
    elif config.paths.coding_file is not None:
        path = Path(config.paths.coding_file)
    else:
        candidates = sorted(p for p in raw_dir.iterdir() if p.is_file() and p.suffix.lower() in (".xlsx", ".xlsm")
                            and not p.name.startswith(("~$", ".")))  # fmt: skip
        if len(candidates) != 1:
            raise ConversionError(
                f"{raw_dir}: {'no' if not candidates else 'several'} coding file (.xlsx) in the raw "
                "directory; pass the coding file explicitly"
            )
        path = candidates[0]
    if not path.is_file():
        raise ConversionError(f"coding file not found: {path}")
    return path


def _coding_exclusions(coding: CodingResult) -> pd.DataFrame:
    rep = coding.report[coding.report["status"] == "excluded"]
    return pd.DataFrame(
        {
            "expression_id": rep["expression_id"].replace("", None).to_numpy(),
            "subject": rep["subject"].replace("", None).to_numpy(),
            "source_row": rep["source_row"].to_numpy(),
            "marker": rep["marker"].to_numpy(),
            "kind": None,
            "reason_code": [str(i).split(";")[0] for i in rep["issues"]],
            "scope": "all",
            "reason": rep["reason"].to_numpy(),
            "stage": "coding",
        },
        columns=list(EXCLUSION_TSV_COLUMNS),
    )


def _session_failed(coding: CodingResult, files: SessionFiles, reason: str) -> pd.DataFrame:
    ex = coding.expressions
    dates = pd.to_datetime(ex["session_date"]).dt.date
    lost = ex[(ex["subject"] == files.subject) & (dates == files.session_date)]
    return pd.DataFrame(
        {"expression_id": lost["expression_id"].to_numpy(), "subject": lost["subject"].to_numpy(),
         "source_row": lost["source_row"].to_numpy(), "marker": lost["marker"].to_numpy(),
         "kind": lost["kind"].to_numpy(), "reason_code": "session_failed", "scope": "all",
         "reason": reason, "stage": "conversion"},
        columns=list(EXCLUSION_TSV_COLUMNS),
    )  # fmt: skip


def _sync_row(session: SessionIngest) -> dict[str, Any]:
    c = session.clock
    if c is None:
        return {"participant_id": session.subject}
    d = c.to_dict()
    return {"participant_id": session.subject, **{k: d[k] for k in SYNC_COLUMNS[1:-1]}, "n_outliers": len(d["outliers"])}


def _marker_rows(session: SessionIngest) -> list[dict[str, Any]]:
    rows = []
    for modality, rep in (("eeg", session.eeg_marker_report), ("physio", session.physio_marker_report)):
        if rep is None or not len(rep):
            continue
        df = rep.reindex(columns=list(MARKER_COLUMNS[2:])).copy()
        df.insert(0, "modality", modality)
        df.insert(0, "participant_id", session.subject)
        rows.extend(_records(df))
    return rows


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("record_version") == _RECORD_VERSION else None


def _hash_inputs(inputs: list[tuple[str, Path]]) -> list[dict[str, Any]]:
    return [{"role": role, "ext": p.suffix.lower(), "size": stat_key(p)[0], "mtime_ns": stat_key(p)[1],
             "sha256": sha256_file(p)} for role, p in inputs]  # fmt: skip


def _bids_file_hashes(bids_root: Path, subject: str, inputs: list[dict[str, Any]]) -> list[list[Any]]:
    """``[relpath, size, mtime_ns, sha256]`` of a converted subject's BIDS files, for the first-level cache keys.

    :mod:`mmme_neuro.pipeline` keys every per-subject result on the SHA-256 of
    these files; recorded here, a study's first analysis run does not read
    them all again (1.2 GB per MMME subject). The EEGLAB ``.fdt`` is a byte
    copy of the input ``.fdt`` (:func:`_finish_eeglab_set`), whose hash the
    conversion has already computed; the other files are small and hashed
    here. A file changed later has another size or mtime and is hashed again.
    """
    fdt = {int(i["size"]): str(i["sha256"]) for i in inputs if i["ext"] == ".fdt"}
    out = []
    for p in sorted(q for q in (bids_root / subject).rglob("*") if q.is_file()):
        size, mtime = stat_key(p)
        sha = fdt.get(size) if p.suffix.lower() == ".fdt" else None
        out.append([p.relative_to(bids_root).as_posix(), size, mtime, sha or sha256_file(p)])
    return out


def conversion_record(bids_root: str | os.PathLike, subject: str) -> Path:
    """``<bids_root>/derivatives/mmme-neuro/conversion/<subject>.json``: what the conversion of a subject recorded."""
    return Path(bids_root) / DERIVATIVES / "conversion" / f"{subject}.json"


def recorded_file_hashes(bids_root: str | os.PathLike, subject: str) -> dict[str, list[Any]]:
    """``relpath -> [size, mtime_ns, sha256]`` of the BIDS files the conversion wrote for ``subject``
    (:func:`_bids_file_hashes`); {} if it recorded none (an older or foreign conversion)."""
    record = _read_record(conversion_record(bids_root, subject)) or {}
    try:
        return {str(f[0]): list(f[1:4]) for f in record.get("bids_files", []) if len(f) == 4}
    except TypeError:  # a record not written by this package
        return {}


def _same_inputs(recorded: list[dict[str, Any]], current: list[dict[str, Any]]) -> bool:
    def key(items: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
        return [(i["role"], i["ext"], i["sha256"]) for i in items]

    return key(recorded) == key(current)


def _swap_into_place(staged: Path, final: Path, trash: Path) -> None:
    """Replace directory ``final`` by ``staged`` (renames on one file system)."""
    if final.exists():
        os.replace(final, trash)
    os.replace(staged, final)
    if trash.exists():
        shutil.rmtree(trash)


def _remove_physio_binary(bids_root: Path, subject: str) -> None:
    folder = bids_root / DERIVATIVES / PHYSIO_BINARY_DIR
    for f in sorted(folder.glob(f"{subject}_*")) if folder.is_dir() else []:
        f.unlink(missing_ok=True)


def _remove_subject(bids_root: Path, subject: str, record_path: Path) -> None:
    record_path.unlink(missing_ok=True)
    _remove_physio_binary(bids_root, subject)
    sub_dir = bids_root / subject
    if sub_dir.exists():
        trash = bids_root / STAGING / f"trash-{subject}"
        os.replace(sub_dir, trash)
        shutil.rmtree(trash)


#: Accepted spellings of the participants table's sex and handedness values -> BIDS level.
_SEX = {"m": "M", "male": "M", "f": "F", "female": "F", "o": "O", "other": "O"}
_HAND = {"r": "R", "right": "R", "l": "L", "left": "L", "a": "A", "ambidextrous": "A", "both": "A"}


def read_participants_table(path: str | os.PathLike, mapping: Mapping[str, str]) -> pd.DataFrame:
    """Read an optional participants table into BIDS ``participants.tsv`` columns, keyed by pseudonym.

    Parameters
    ----------
    path : path-like
        CSV, TSV or XLSX with a ``participant_id`` column (pseudonym:
        ``sub-01`` or ``01``) or a ``subject`` column (the participant's name
        as in the coding file), and any of ``age`` (years), ``sex``
        (M/F/O, or male/female/other) and ``handedness`` or ``hand``
        (R/L/A, or right/left/ambidextrous). Other columns are ignored.
    mapping : mapping of str to str
        Name -> pseudonym (:attr:`mmme_neuro.io.coding.CodingResult.mapping`).
        Names are used to look pseudonyms up and are never written.

    Returns
    -------
    table : pandas.DataFrame
        ``participant_id``, ``age``, ``sex``, ``hand`` (missing: None).

    Raises
    ------
    ValueError
        Naming the file, the row (1-based, as a spreadsheet numbers data
        rows) and the column of a value that is not understood, of a name not
        in the coding file, or of a participant listed twice. Names are not
        repeated in the message.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        df = pd.read_excel(path, dtype=object)
    else:
        df = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=object, keep_default_na=False,
                         na_values=["", "n/a", "NA", "nan"])  # fmt: skip
    df.columns = [str(c).strip().lower() for c in df.columns]
    if "participant_id" not in df and "subject" not in df:
        raise ValueError(f"{path.name}: needs a 'participant_id' (pseudonym) or 'subject' (name) column, "
                         f"has {list(df.columns)}")  # fmt: skip
    rows = []
    lower = {str(k).strip().casefold(): v for k, v in mapping.items()}
    for i, r in enumerate(df.to_dict(orient="records"), start=2):  # row 1 is the header
        where = f"{path.name}, row {i}"
        if "participant_id" in df and pd.notna(r["participant_id"]):
            pid = str(r["participant_id"]).strip()
            pid = pid if pid.startswith("sub-") else f"sub-{pid}"
        else:
            name = r.get("subject")
            if pd.isna(name) or str(name).strip().casefold() not in lower:
                raise ValueError(f"{where}: the subject is not a participant of the coding file")
            pid = lower[str(name).strip().casefold()]
        out: dict[str, Any] = {"participant_id": pid, "age": None, "sex": None, "hand": None}
        if "age" in df and pd.notna(r["age"]):
            try:
                out["age"] = float(r["age"])
            except ValueError:
                raise ValueError(f"{where}, column 'age': {r['age']!r} is not a number of years") from None
            if not 0 < out["age"] < 130:
                raise ValueError(f"{where}, column 'age': {out['age']} years is not an age")
        for col, levels, key in (("sex", _SEX, "sex"), ("handedness", _HAND, "hand"), ("hand", _HAND, "hand")):
            if col in df and pd.notna(r[col]):
                value = levels.get(str(r[col]).strip().casefold())
                if value is None:
                    raise ValueError(f"{where}, column {col!r}: {r[col]!r} is not one of {sorted(set(levels.values()))}")
                out[key] = value
        rows.append(out)
    table = pd.DataFrame(rows, columns=["participant_id", "age", "sex", "hand"])
    twice = table["participant_id"][table["participant_id"].duplicated()]
    if len(twice):
        raise ValueError(f"{path.name}: {sorted(set(twice))[0]} is listed more than once")
    return table


def _participants(participants: list[str], config: Config, mapping: Mapping[str, str]) -> pd.DataFrame:
    """``participants.tsv``: every converted participant, with ``bids.participants_file``'s values if given."""
    df = pd.DataFrame({"participant_id": participants, "age": None, "sex": None, "hand": None})
    path = config.bids.participants_file
    if path is None:
        return df
    known = read_participants_table(path, mapping).set_index("participant_id")
    absent = sorted(set(participants) - set(known.index))
    if absent:
        logger.warning("participants file %s: no row for %s (n/a written)", Path(path).name, ", ".join(absent))
    return df[["participant_id"]].join(known, on="participant_id")


def _write_dataset_files(bids_root: Path, participants: pd.DataFrame, task: str) -> None:
    import mne_bids

    stage = bids_root / STAGING / "dataset"
    stage.mkdir(parents=True, exist_ok=True)
    with _warnings_to_log(logging.DEBUG):
        mne_bids.make_dataset_description(
            path=stage, name="MMME (converted by mmme-neuro)", dataset_type="raw",
            authors=["n/a"],
            generated_by=[{"Name": "mmme-neuro", "Version": __version__,
                           "Description": "mmme_neuro.bids.convert_study"}],
            overwrite=True, verbose=False,
        )  # fmt: skip
    desc = json.loads((stage / "dataset_description.json").read_text(encoding="utf-8"))
    atomic_write_text(bids_root / "dataset_description.json", _json_text(desc))
    _write_tsv(bids_root / "participants.tsv", participants)
    atomic_write_text(bids_root / "participants.json", _json_text({
        "participant_id": {"Description": "Pseudonym from the MMME coding file (names are never stored)."},
        "age": {"Description": "Age of the participant", "Units": "year"},
        "sex": {"Description": "Sex of the participant", "Levels": {"M": "male", "F": "female", "O": "other"}},
        "hand": {"Description": "Handedness of the participant", "Levels": {"R": "right", "L": "left", "A": "ambidextrous"}},
    }))  # fmt: skip
    readme = (
        "MMME study converted to BIDS by mmme-neuro\n"
        "=========================================\n\n"
        f"Task `{task}`: participants watch 48 emotional video clips (markers 101-148, rest 100) while\n"
        "EEG (64 channels + HEO, VEO, EKG, EMG, trigger) and BIOPAC physiology are recorded and the face\n"
        "is filmed; facial micro- (ME) and macro-expressions (MaE) were coded from the video.\n\n"
        "- `*_events.tsv`: coded expressions (trial_type ME/MaE) and the stimulus markers, on the EEG clock;\n"
        "  the column meanings are in `*_events.json`.\n"
        "- `*_recording-biopac_physio.tsv.gz`: physiology at its own sampling times, not resampled;\n"
        "  `StartTime` and `SamplingFrequency` of the sidecar place it on the EEG clock\n"
        "  (clock fit on the shared markers in `MMMEClockFit`).\n"
        "- `derivatives/mmme-neuro/`: coding report, exclusions (every coded expression not analysed),\n"
        "  clock fits (`sync.tsv`), marker audit (`markers.tsv`), conversion summary.\n\n"
        "Participants are identified by pseudonyms only.\n"
    )
    atomic_write_text(bids_root / "README", readme)
    deriv = bids_root / DERIVATIVES
    atomic_write_text(deriv / "dataset_description.json", _json_text({
        "Name": "mmme-neuro conversion records", "BIDSVersion": desc.get("BIDSVersion", "1.9.0"),
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "mmme-neuro", "Version": __version__}],
    }))  # fmt: skip


def conversion_settings_hash(config: Config) -> str:
    """Hash (16 hex digits) of the settings the conversion uses: ``coding``, ``sync``, ``bids`` and the line frequency.

    Part of each subject's fingerprint: a change of an analysis setting
    (epochs, bands, decoding...) must not re-convert the study.
    """
    # participants_file only feeds participants.tsv, rewritten by every run: no subject is re-converted for it
    settings = config.model_dump(mode="json", include={"coding", "sync", "bids"}, exclude={"bids": {"participants_file"}})
    settings["line_freq"] = config.preprocessing.notch_freq  # eeg.json PowerLineFrequency
    dump = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(dump.encode()).hexdigest()[:16]


def convert_study(
    raw_dir: str | os.PathLike,
    bids_root: str | os.PathLike,
    config: Config | None = None,
    *,
    coding_file: str | os.PathLike | None = None,
    session_map: str | os.PathLike | None = None,
    task: str = "mmme",
    overwrite: bool = False,
    rehash: bool = False,
    progress: bool = True,
    qa: bool = True,
    lock_timeout_s: float | None = 0.0,
) -> ConversionSummary:
    """Convert a raw MMME study to BIDS, resumably and atomically.

    Parameters
    ----------
    raw_dir : path-like
        Raw study directory: ``<name>_<yyyymmdd>.<ext>`` recordings (or a
        ``session_map``) and, unless ``coding_file`` is given, the coding file
        (the only ``.xlsx`` in it).
    bids_root : path-like
        BIDS root (created). Subjects already converted from unchanged inputs
        are kept.
    config : Config | None
        Coding rules and sync tolerances (defaults if None); its hash is part
        of every subject's fingerprint.
    coding_file : path-like | None
        The MMME coding file (default: ``config.paths.coding_file``, else the
        ``.xlsx`` of ``raw_dir``).
    session_map : path-like | None
        CSV pairing names, dates and files (:func:`mmme_neuro.ingest.find_sessions`).
    task : str
        BIDS task label.
    overwrite : bool
        Reconvert every subject even if its inputs are unchanged.
    rehash : bool
        Re-hash input files even when size and modification time match the record.
    progress : bool
        Show a progress bar over subjects (pseudonyms only).

    qa : bool
        Write a QA report per converted subject
        (``derivatives/mmme-neuro/qa/sub-XX.html``, :mod:`mmme_neuro.qa`) and
        the study table of counts (``qa/study_table.tsv``).
    lock_timeout_s : float | None
        How long to wait for another conversion of ``bids_root`` to finish
        (s): 0 fails at once, None waits as long as it takes
        (:func:`mmme_neuro.manifest.study_lock`).

    Returns
    -------
    summary : ConversionSummary

    Raises
    ------
    ConversionError
        If the raw directory or the coding file is missing or unusable, or
        the BIDS root cannot be created or written (no space, read-only,
        a file in its place ...); the message names the path. A conversion
        stopped this way leaves the study marked unfinished.
    mmme_neuro.manifest.StudyLockError
        If another conversion of ``bids_root`` is running (its pid and start
        time in the message).
    """
    t0 = time.perf_counter()
    config = config or Config()
    raw_dir = Path(raw_dir)
    bids_root = Path(bids_root)
    if not raw_dir.is_dir():
        raise ConversionError(f"raw study directory not found: {raw_dir}")
    coding_path = _find_coding_file(raw_dir, coding_file, config)
    from .io.coding import CodingFileError

    try:
        coding = read_coding(coding_path, config.coding)
    except CodingFileError as err:
        raise ConversionError(f"coding file unusable: {err}") from err
    try:
        sessions = find_sessions(raw_dir, coding, session_map=session_map)
    except IngestError as err:
        raise ConversionError(str(err)) from err
    if bids_root.resolve() == raw_dir.resolve() or raw_dir.resolve() in bids_root.resolve().parents:
        raise ConversionError("the BIDS root must not be inside the raw directory")

    _make_root(bids_root)
    started = False
    try:
        with study_lock(bids_root, timeout_s=lock_timeout_s) as holder:
            mark_in_progress(bids_root, holder)  # first: until the end, the study is not a finished one
            started = True
            return _convert_locked(bids_root, config, coding, sessions, t0, task=task, overwrite=overwrite,
                                   rehash=rehash, progress=progress, qa=qa)  # fmt: skip
    except OSError as err:
        raise ConversionError(_write_failure(bids_root, err, started)) from err


def _make_root(bids_root: Path) -> None:
    """Create the BIDS root; a :class:`ConversionError` naming the path if it cannot be."""
    try:
        bids_root.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:
        raise ConversionError(f"the BIDS root {bids_root} exists and is not a directory") from err
    except NotADirectoryError as err:
        raise ConversionError(f"cannot create the BIDS root {bids_root}: a parent of it is a file") from err
    except OSError as err:
        raise ConversionError(f"cannot create the BIDS root {bids_root}: {err.strerror or err}"
                              + (f" ({err.filename})" if err.filename else "")) from err  # fmt: skip


def _write_failure(bids_root: Path, err: OSError, started: bool) -> str:
    """One line for a conversion stopped by a file-system error (no space, permissions ...).

    ``started``: whether the study was already marked unfinished (else nothing was changed).
    """
    what = f"{err.filename}: {err.strerror}" if err.filename and err.strerror else f"{type(err).__name__}: {err}"
    what = " ".join(what.split())
    if not started:
        return f"cannot write to the BIDS root {bids_root}: {what}; nothing was changed"
    return (f"the conversion of {bids_root} stopped: {what}; the study is marked unfinished: "
            "fix the cause (space, permissions) and re-run mmme-neuro convert")  # fmt: skip


def _convert_locked(bids_root: Path, config: Config, coding: CodingResult, sessions: list[SessionFiles], t0: float,
                    *, task: str, overwrite: bool, rehash: bool, progress: bool, qa: bool) -> ConversionSummary:  # fmt: skip
    """The body of :func:`convert_study`, run while holding the study's lock."""
    staging = bids_root / STAGING
    if staging.exists():
        logger.info("removing the staging directory left by an interrupted run")
        shutil.rmtree(staging)
    staging.mkdir()
    deriv = bids_root / DERIVATIVES
    records_dir = deriv / "conversion"
    records_dir.mkdir(parents=True, exist_ok=True)

    base_fp = {"package_version": __version__, "conversion_settings": conversion_settings_hash(config),
               "coding_sha256": coding.sha256, "task": task}  # fmt: skip
    excl_parts = [_coding_exclusions(coding)]
    nrec = no_recording_exclusions(coding.expressions, sessions, near_matches(coding, sessions))
    if len(nrec):
        nrec = nrec.assign(stage="conversion")
        excl_parts.append(nrec)
    sync_rows: list[dict[str, Any]] = []
    marker_rows: list[dict[str, Any]] = []
    subjects: list[dict[str, Any]] = []
    qa_rows: list[dict[str, Any]] = []
    seen_subjects: set[str] = set()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmme-hash")
    try:
        for files in tqdm(sessions, desc="convert", unit="subject", disable=not progress):
            subject = files.subject
            if subject in seen_subjects:
                reason = f"{files.label}: a second session of {subject}; one session per participant is supported"
                logger.error("%s", reason)
                excl_parts.append(_session_failed(coding, files, reason))
                subjects.append({"participant_id": subject, "status": "failed", "reason": reason, "n_expressions": 0,
                                 "n_excluded_all": len(excl_parts[-1]), "n_excluded_physio": 0})  # fmt: skip
                continue
            seen_subjects.add(subject)
            record_path = conversion_record(bids_root, subject)
            inputs = _input_files(files)
            prev = _read_record(record_path)
            hashed: Future | list[dict[str, Any]] | None = None
            if not overwrite and prev is not None and prev.get("status") == "converted" \
                    and (bids_root / subject).is_dir() and prev.get("fingerprint") == base_fp \
                    and (not qa or (prev.get("qa") and (deriv / "qa" / f"{subject}.html").is_file())):  # fmt: skip
                same_stat = (not rehash and [(i["role"], i["ext"], i["size"], i["mtime_ns"]) for i in prev["inputs"]]
                             == [(r, p.suffix.lower(), *stat_key(p)) for r, p in inputs])  # fmt: skip
                if not same_stat:
                    hashed = _hash_inputs(inputs)
                if same_stat or _same_inputs(prev["inputs"], hashed):
                    if not same_stat:  # same content, new stat: refresh the record
                        atomic_write_text(record_path, _json_text({**prev, "inputs": hashed}))
                    logger.info("%s: inputs unchanged, skipped", subject)
                    excl_parts.append(pd.DataFrame(prev["exclusions"], columns=list(EXCLUSION_TSV_COLUMNS)))
                    if prev.get("sync"):
                        sync_rows.append(prev["sync"])
                    marker_rows.extend(prev.get("markers", []))
                    subjects.append({**prev["summary"], "status": "skipped"})
                    if prev.get("qa"):
                        qa_rows.append(prev["qa"])
                    continue
            if hashed is None:
                hashed = pool.submit(_hash_inputs, inputs)  # overlaps with the conversion
            result = _convert_one(files, coding, config, bids_root, task, record_path,
                                  qa_dir=(deriv / "qa") if qa else None)  # fmt: skip
            if result["status"] == "failed":
                excl_parts.append(_session_failed(coding, files, result["reason"]))
                subjects.append({"participant_id": subject, "status": "failed", "reason": result["reason"],
                                 "n_expressions": 0, "n_excluded_all": len(excl_parts[-1]),
                                 "n_excluded_physio": 0})  # fmt: skip
                if isinstance(hashed, Future):
                    hashed.cancel()
                continue
            inputs_rec = hashed.result() if isinstance(hashed, Future) else hashed
            excl = result["exclusions"]
            excl_parts.append(excl)
            if result["sync"]:
                sync_rows.append(result["sync"])
            marker_rows.extend(result["markers"])
            summary = {"participant_id": subject, "status": "converted", "reason": None,
                       "n_expressions": result["n_expressions"], "n_me": result["n_me"], "n_mae": result["n_mae"],
                       "n_excluded_all": int((excl["scope"] == "all").sum()),
                       "n_excluded_physio": int((excl["scope"] == "physio").sum())}  # fmt: skip
            if result.get("channel_issues"):  # bad channels marked in channels.tsv, missing montage channels
                summary["channel_issues"] = result["channel_issues"]
            record = {"record_version": _RECORD_VERSION, "subject": subject, "status": "converted",
                      "fingerprint": base_fp, "inputs": inputs_rec, "files": result["files"],
                      "bids_files": _bids_file_hashes(bids_root, subject, inputs_rec),
                      "summary": summary, "exclusions": _records(excl), "sync": result["sync"],
                      "markers": result["markers"], "qa": result.get("qa")}  # fmt: skip
            if result.get("qa"):
                qa_rows.append(result["qa"])
            atomic_write_text(record_path, _json_text(record))  # last: the subject is complete
            subjects.append(summary)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

    participants = sorted(p.name for p in bids_root.glob("sub-*") if p.is_dir())
    stale = sorted(set(participants) - {s["participant_id"] for s in subjects if s["status"] != "failed"})
    for s in stale:
        logger.warning("%s is in the BIDS root but not among the sessions of the raw directory", s)
    _write_dataset_files(bids_root, _participants(participants, config, coding.mapping), task)

    exclusions = pd.concat([e for e in excl_parts if len(e)], ignore_index=True) if any(len(e) for e in excl_parts) \
        else pd.DataFrame(columns=list(EXCLUSION_TSV_COLUMNS))  # fmt: skip
    exclusions = exclusions.reindex(columns=list(EXCLUSION_TSV_COLUMNS))
    exclusions["source_row"] = pd.array(exclusions["source_row"], dtype="Int64")
    exclusions["marker"] = pd.array(exclusions["marker"], dtype="Int64")
    exclusions = exclusions.sort_values(["source_row", "scope"], kind="stable").reset_index(drop=True)
    _write_tsv(deriv / "exclusions.tsv", exclusions)
    write_coding_report(coding, deriv / "coding_report.csv")
    write_expressions_table(coding, deriv / "coded_expressions.tsv")  # the dataset summary of the study reads it
    sync = pd.DataFrame(sync_rows, columns=list(SYNC_COLUMNS)).sort_values("participant_id", kind="stable")
    _write_tsv(deriv / "sync.tsv", sync)
    markers = pd.DataFrame(marker_rows, columns=list(MARKER_COLUMNS))
    for col in ("code", "sample"):
        markers[col] = pd.array(markers[col], dtype="Int64")
    _write_tsv(deriv / "markers.tsv", markers.sort_values(["participant_id", "modality"], kind="stable"))

    if qa:
        from .qa import coded_counts, study_table

        failures = {s["participant_id"]: s["reason"] for s in subjects if s["status"] == "failed"}
        table = study_table(qa_rows, failures=failures, coding_counts=coded_counts(coding.expressions))
        _write_tsv(deriv / "qa" / "study_table.tsv", table)

    subjects.sort(key=lambda s: s["participant_id"])
    n_expr = int(sum(s.get("n_expressions", 0) for s in subjects if s["status"] != "failed"))
    n_all = int((exclusions["scope"] == "all").sum())
    counts = {
        "coding_rows": int(len(coding.report)),
        "coding_excluded": int((coding.report["status"] == "excluded").sum()),
        "expressions_in_events": n_expr,
        "me": int(sum(s.get("n_me", 0) for s in subjects if s["status"] != "failed")),
        "mae": int(sum(s.get("n_mae", 0) for s in subjects if s["status"] != "failed")),
        "exclusions_all": n_all,
        "exclusions_physio": int((exclusions["scope"] == "physio").sum()),
        "by_reason_code": {str(k): int(v) for k, v in sorted(exclusions["reason_code"].value_counts().items())},
        "subjects_in_bids": len(participants),
        "subjects_failed": sum(s["status"] == "failed" for s in subjects),
    }
    ok = counts["coding_rows"] == n_expr + n_all
    if not ok:
        logger.error("accounting mismatch: %d coding rows != %d expressions + %d exclusions",
                     counts["coding_rows"], n_expr, n_all)  # fmt: skip
    file_subjects = [{**s, "status": "failed" if s["status"] == "failed" else "converted"} for s in subjects]
    atomic_write_text(deriv / "conversion_summary.json", _json_text({
        "generated_by": {"name": "mmme-neuro", "version": __version__},
        "task": task, "config_hash": config.hash(), "coding_sha256": coding.sha256,
        "counts": counts,
        "accounting": {"coding_rows": counts["coding_rows"], "expressions_in_events": n_expr,
                       "exclusions_all": n_all, "ok": ok,
                       "rule": "coding_rows == expressions_in_events + exclusions_all"},
        "subjects": file_subjects,
    }))  # fmt: skip
    shutil.rmtree(staging, ignore_errors=True)
    write_manifest(bids_root, task=task, coding_sha256=coding.sha256, settings_hash=base_fp["conversion_settings"],
                   counts=counts, accounting_ok=ok, subjects=subjects, stale=stale)  # last: the study is complete
    summary = ConversionSummary(bids_root=bids_root, counts=counts, subjects=subjects, accounting_ok=ok,
                                elapsed_s=time.perf_counter() - t0, stale=stale)  # fmt: skip
    logger.info("BIDS conversion: %d converted, %d skipped, %d failed in %.1f s", len(summary.converted),
                len(summary.skipped), len(summary.failed), summary.elapsed_s)  # fmt: skip
    _report_no_recording(nrec)
    return summary


def _report_no_recording(nrec: pd.DataFrame) -> None:
    """One warning per coded participant with a session that has no recording (pseudonyms only), at the end of a
    conversion: they are in the counts and exclusions.tsv, and are said where the conversion's problems are."""
    for subject, rows in nrec.groupby("subject", sort=True) if len(nrec) else ():
        logger.warning("no recording: %s: %d coded expression(s) not converted (%s)", subject, len(rows),
                       rows["reason"].iloc[0])  # fmt: skip


def _convert_one(files: SessionFiles, coding: CodingResult, config: Config, bids_root: Path, task: str,
                 record_path: Path, qa_dir: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Ingest and write one subject through the staging directory; never raises for a bad session.

    Every name of the coding file, the session's file stems, the names its
    headers hold and its raw folder are hidden in the log records, the
    failure reason, the marker rows and the written files
    (:func:`mmme_neuro.ingest.session_redactor`).
    """
    subject = files.subject
    redactions = session_redactor(files, coding.mapping)  # messages: names, file stems, raw folder
    in_files = session_redactor(files, coding.mapping, stems=False)  # written contents: names only
    stage_root = bids_root / STAGING / subject
    with redact_names(redactions):
        try:
            t0 = time.perf_counter()
            with _warnings_to_log():
                session = ingest_session(files, coding.expressions, config, names=coding.mapping)
            logger.info("%s: ingested in %.1f s", subject, time.perf_counter() - t0)
        except IngestError as err:
            reason = _scrub(str(err), redactions)
            logger.error("%s: session failed: %s", subject, reason)
            _remove_subject(bids_root, subject, record_path)
            return {"status": "failed", "reason": reason}
        try:
            result = convert_session(session, stage_root, task=task, config=config)
            _scrub_staged(stage_root, in_files)  # the names of the whole coding file too
        except (OSError, ValueError, RuntimeError) as err:
            reason = _scrub(f"{files.label}: writing BIDS failed: {type(err).__name__}: {err}", redactions)
            logger.error("%s", reason)
            shutil.rmtree(stage_root, ignore_errors=True)
            _remove_subject(bids_root, subject, record_path)
            return {"status": "failed", "reason": reason}
        record_path.unlink(missing_ok=True)  # from here on the old subject is no longer complete
        _remove_physio_binary(bids_root, subject)
        _swap_into_place(stage_root / subject, bids_root / subject, bids_root / STAGING / f"trash-{subject}")
        staged_bin = stage_root / DERIVATIVES / PHYSIO_BINARY_DIR
        for f in sorted(staged_bin.glob("*.npy")) if staged_bin.is_dir() else []:
            dest = bids_root / DERIVATIVES / PHYSIO_BINARY_DIR
            dest.mkdir(parents=True, exist_ok=True)
            os.replace(f, dest / f.name)  # the array first: its JSON makes it usable
            if f.with_suffix(".json").is_file():
                os.replace(f.with_suffix(".json"), dest / f.with_suffix(".json").name)
        shutil.rmtree(stage_root, ignore_errors=True)
        excl = session.exclusions.assign(stage="ingest").reindex(columns=list(EXCLUSION_TSV_COLUMNS))
        qa_summary = None
        if qa_dir is not None:
            from .qa import save_session_report, session_summary

            save_session_report(session, qa_dir / f"{subject}.html")
            qa_summary = session_summary(session)
        excl["reason"] = [_scrub(r, redactions) if isinstance(r, str) else r for r in excl["reason"]]
        markers = [{k: _scrub(v, in_files) if isinstance(v, str) else v for k, v in row.items()}
                   for row in _marker_rows(session)]  # fmt: skip
        return {"status": "converted", **result, "exclusions": excl, "sync": _sync_row(session),
                "markers": markers, "qa": qa_summary}  # fmt: skip


# ----------------------------------------------------------------------------- reading back


def read_bids_session(bids_root: str | os.PathLike, subject: str, *, task: str = "mmme",
                      physio: bool = True) -> BidsSession:  # fmt: skip
    """Read a subject converted by :func:`convert_study`.

    Parameters
    ----------
    bids_root : path-like
        BIDS root.
    subject : str
        Pseudonym, with or without ``sub-``.
    task : str
        BIDS task label.
    physio : bool
        Make the physiology table available (read on first access of
        :attr:`BidsSession.physio`; a full session is ~4.7 M rows).

    Returns
    -------
    session : BidsSession

    Raises
    ------
    FileNotFoundError
        If the subject's EEG or events file is missing (names the pseudonym).
    mmme_neuro.io.eeg.EEGReadError
        If the EEG data file is truncated (names the file; :func:`mmme_neuro.io.eeg.check_data_file`).
    """
    import mne_bids

    bids_root = Path(bids_root)
    label = _bids_label(subject)
    subject = f"sub-{label}"
    bp = mne_bids.BIDSPath(subject=label, task=task, datatype="eeg", suffix="eeg", root=bids_root)
    ev_path = bp.copy().update(suffix="events", extension=".tsv").fpath
    if not ev_path.is_file():
        raise FileNotFoundError(f"{subject}: no events.tsv in {bids_root} (not converted?)")
    with _warnings_to_log(logging.DEBUG):
        raw = mne_bids.read_raw_bids(bp, verbose=False)
    if any(bp.fpath.parent.glob(f"sub-{label}_space-{TEMPLATE_SPACE}_electrodes.tsv")):
        # template positions (written by _declare_template_positions): MNE's head frame, as the reader set them
        with _warnings_to_log(logging.DEBUG):
            raw.set_montage(make_quikcap64_montage(), on_missing="ignore", verbose="error")
    check_data_file(raw, bp.fpath)  # a truncated data file: an error naming it now, not MNE's at read time
    events = pd.read_csv(ev_path, sep="\t", na_values=["n/a"], keep_default_na=False,
                         dtype={"trial_type": str, "expression_id": str, "ingest_flags": str, "coding_issues": str,
                                "in_physio": str})  # fmt: skip
    for col in ("value", "sample", "marker", "apex_sample", "offset_sample", "physio_onset_sample",
                "physio_offset_sample", "source_row"):  # fmt: skip
        if col in events:
            events[col] = pd.array(events[col], dtype="Int64")
    if "in_physio" in events:
        events["in_physio"] = pd.array(events["in_physio"].map({"true": True, "false": False}), dtype="boolean")
    pbp = bp.copy().update(recording=PHYSIO_RECORDING, suffix="physio", extension=".tsv.gz")
    sidecar = None
    if pbp.fpath.is_file():
        sidecar = json.loads(pbp.copy().update(extension=".json").fpath.read_text(encoding="utf-8"))
    has = physio and sidecar is not None
    binary = physio_binary_path(bids_root, pbp.fpath) if has else None
    return BidsSession(subject=subject, raw=raw, events=events, physio_sidecar=sidecar,
                       physio_file=pbp.fpath if has else None,
                       physio_binary=binary if binary is not None and binary.is_file() else None)  # fmt: skip
