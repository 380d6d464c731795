"""Quality control of ingested sessions: a per-session HTML report and a study table.

After :func:`mmme_neuro.ingest.ingest_session`, every session gets a
self-contained HTML report (:func:`session_report`, :func:`save_session_report`)
that a human reads before any analysis, and a few numbers
(:func:`session_summary`) that a study pipeline keeps without the raw data and
collects in one table (:func:`study_table`).

Sections of the report (titles in :data:`SECTION_TITLES`):

1. *Recording summary* - EEG channels by type, sampling rate, duration and
   samples; physiology channels with units; markers kept and dropped by rule
   in both recordings; the clock fit; expressions placed and excluded.
2. *EEG power spectrum* - Welch PSD of a few EEG segments spread over the
   session, together ``psd_segment_s`` long (only those samples are read from
   disk), every EEG channel, log power, 1-100 Hz, with the 50 Hz mains line.
3. *Clock synchronisation* - residual (ms) of every matched marker against
   EEG time, outliers marked, offset / drift / largest residual in the caption.
4. *Marker timeline* - clips (coloured by clip emotion), rest and dropped
   markers over the session, expression onsets as ME/MaE ticks, excluded
   expressions marked with their reason.
5. *Physiology around an ME* - every physiology signal in its own row, in a
   20-s window around the first ME onset that lies in the physiology, the EEG
   onset mapped to the physiology clock by the clock fit.
6. *Excluded expressions* - one row per exclusion with its reason (and the
   kept expressions carrying an ingestion flag).

Privacy: the report names the session by its pseudonym label
(:attr:`~mmme_neuro.ingest.SessionFiles.label`), never by a file name; nothing
is taken from ``raw.info`` or ``raw.filenames`` (which hold the raw file
names), and every log record written while a report is built is redacted
(:func:`mmme_neuro._privacy.redact_names`).
"""

from __future__ import annotations

import contextlib
import html
import logging
import math
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import mne
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ._privacy import redact_names
from .constants import CLIP_EMOTION, CLIP_MARKERS_BY_EMOTION, REST_MARKER
from .ingest import SessionIngest, session_redactions
from .viz.style import CONDITION_COLORS, KIND_ORDER, OKABE_ITO, figure_size, publication_style

__all__ = [
    "EXCLUSION_REASONS",
    "SECTION_TITLES",
    "coded_counts",
    "save_session_report",
    "session_report",
    "session_summary",
    "study_table",
]

logger = logging.getLogger(__name__)
#: The time of saving in the footer of an MNE report ("Created on 2026-11-28 02:12:12 via MNE-Python").
_MNE_TIMESTAMP = re.compile(r"Created on \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")

#: Titles of the report sections, in order.
SECTION_TITLES: tuple[str, ...] = (
    "Recording summary",
    "EEG power spectrum",
    "Clock synchronisation",
    "Marker timeline",
    "Physiology around an ME",
    "Excluded expressions",
)

#: Exclusion reason codes of :mod:`mmme_neuro.ingest`; :func:`study_table` always
#: has one ``excluded_<code>`` column for each (others found are appended).
EXCLUSION_REASONS: tuple[str, ...] = (
    "clip_not_in_eeg",
    "outside_eeg_recording",
    "outside_physio_recording",
    "session_failed",
    "no_recording",
)

#: Colour of each clip emotion in the timeline (ColorBrewer Set2 + grey: distinct
#: from the saturated Okabe-Ito colours of ME/MaE drawn on the same figure).
CLIP_EMOTION_COLORS: dict[str, str] = {
    "sad": "#8DA0CB",
    "disgust": "#A6D854",
    "happy": "#FFD92F",
    "fear": "#E78AC3",
    "tense": "#FC8D62",
    "calm": "#CCCCCC",
    "angry": "#E5C494",
    "surprise": "#66C2A5",
}

#: Colour of each exclusion reason in the timeline.
_REASON_COLORS: dict[str, str] = {
    "clip_not_in_eeg": OKABE_ITO["black"],
    "outside_eeg_recording": OKABE_ITO["reddish_purple"],
    "outside_physio_recording": OKABE_ITO["orange"],
}

#: Figures of the report are shown ~850 px wide: slightly larger text than in print.
_SCREEN_RC: dict[str, Any] = {
    "font.size": 8.0,
    "axes.titlesize": 9.0,
    "axes.labelsize": 8.0,
    "xtick.labelsize": 7.0,
    "ytick.labelsize": 7.0,
    "legend.fontsize": 7.0,
    "legend.title_fontsize": 7.0,
}
_FIG_WIDTH_MM = 215.0  # 8.5 in: the report's largest image width at 100 dpi
_PSD_FMIN_HZ, _PSD_FMAX_HZ = 1.0, 100.0
_PSD_MAX_SEGMENTS = 6
_PSD_MIN_SEGMENT_S = 4.0
_LINE_HZ = 50.0
_PHYSIO_WINDOW_S = 20.0
_PHYSIO_PRE_S = 5.0
_TABLE_CLASSES = "table table-sm table-striped table-hover"


# ============================================================================ public API


def session_report(session: SessionIngest, *, psd_segment_s: float = 60.0) -> mne.Report:
    """Build the quality-control report of one ingested session.

    Parameters
    ----------
    session : SessionIngest
        Output of :func:`mmme_neuro.ingest.ingest_session`. The EEG stays on
        disk: only the PSD segments are read.
    psd_segment_s : float
        Total EEG duration (s) read for the power spectrum, split into up to
        six segments spread evenly over the session (the whole recording if
        it is shorter).

    Returns
    -------
    report : mne.Report
        Titled with the session's pseudonym label; sections
        :data:`SECTION_TITLES`. Save with :func:`save_session_report` or
        ``report.save``.
    """
    if not (np.isfinite(psd_segment_s) and psd_segment_s > 0):
        raise ValueError(
            f"psd_segment_s must be a positive number of seconds, got {psd_segment_s!r}"
        )
    label = session.files.label
    with redact_names(session_redactions(session.files)), _quiet_figures():
        report = mne.Report(title=f"MMME session QA: {label}", verbose="error")
        report.add_html(_summary_html(session), title=SECTION_TITLES[0], tags=("summary",))
        _add_figure(report, *_psd_figure(session, psd_segment_s), SECTION_TITLES[1], "eeg")
        if session.clock is not None:
            _add_figure(report, *_sync_figure(session), SECTION_TITLES[2], "sync")
        else:
            report.add_html(
                _note("No physiology recording: no clock fit."),
                title=SECTION_TITLES[2],
                tags=("sync",),
            )
        _add_figure(report, *_timeline_figure(session), SECTION_TITLES[3], "markers")
        physio = _physio_figure(session)
        if physio is not None:
            _add_figure(report, *physio, SECTION_TITLES[4], "physiology")
        else:
            report.add_html(_note("No micro-expression lies in the physiology recording."),
                            title=SECTION_TITLES[4], tags=("physiology",))  # fmt: skip
        report.add_html(_exclusions_html(session), title=SECTION_TITLES[5], tags=("exclusions",))
    logger.info("%s: QA report built (%d sections)", label, len(SECTION_TITLES))
    return report


def save_session_report(session: SessionIngest, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Build the report of a session and write it as one HTML file, atomically.

    The report is written to a temporary file in the destination directory
    and renamed onto ``path``: readers never see a half-written report. The
    time of saving that MNE writes in the footer is removed, so the same
    session and code give the same file.

    Parameters
    ----------
    session : SessionIngest
        The ingested session.
    path : path-like
        Destination ``.html`` file (overwritten). Choose a name-free path,
        e.g. ``<out>/sub-03_qa.html``.
    **kwargs
        Passed to :func:`session_report` (``psd_segment_s``).

    Returns
    -------
    path : pathlib.Path
        The written file.
    """
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"report path must end with .html, got {path.name!r}")
    report = session_report(session, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".html", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        report.save(tmp, overwrite=True, open_browser=False, verbose="error")
        # MNE stamps the footer with the time of saving: without it, the same session gives the same file
        text = tmp.read_text(encoding="utf-8")
        tmp.write_text(_MNE_TIMESTAMP.sub("Created", text, count=1), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    logger.info("%s: QA report written to %s", session.files.label, path)
    return path


def session_summary(session: SessionIngest) -> dict[str, Any]:
    """The per-session numbers of :func:`study_table`, JSON-serialisable.

    Parameters
    ----------
    session : SessionIngest
        The ingested session.

    Returns
    -------
    summary : dict
        Flat mapping of plain Python values (None where a number does not
        exist, e.g. the clock of a session without physiology):

        ``subject``, ``session_date`` (ISO), ``label``;
        ``n_ME``, ``n_MaE`` (expressions placed on the EEG clock),
        ``n_ME_physio``, ``n_MaE_physio`` (of which inside the physiology),
        ``n_flagged`` (kept expressions with an ingestion flag);
        ``excluded_<reason_code>`` (exclusion rows per reason, every code of
        :data:`EXCLUSION_REASONS` and any other found), ``n_excluded``;
        ``sync_offset_s`` (s), ``sync_drift_ppm`` (ppm),
        ``sync_max_abs_residual_ms``, ``sync_rms_residual_ms`` (ms),
        ``sync_n_matched``, ``sync_n_outliers``;
        ``eeg_markers_kept``, ``eeg_markers_dropped``,
        ``physio_markers_kept``, ``physio_markers_dropped``;
        ``eeg_sfreq_hz``, ``eeg_duration_s``, ``eeg_n_channels``,
        ``physio_sfreq_hz``, ``physio_duration_s``, ``physio_n_channels``;
        ``failed`` (None).
    """
    ex = session.expressions
    kinds = ex["kind"] if "kind" in ex else pd.Series(dtype=object)
    in_physio = (
        ex["in_physio"].astype(bool) if "in_physio" in ex else pd.Series(False, index=ex.index)
    )
    flags = (
        ex["ingest_flags"].fillna("").astype(str)
        if "ingest_flags" in ex
        else pd.Series("", index=ex.index)
    )
    raw, praw, clock = session.eeg_raw, session.physio_raw, session.clock
    out: dict[str, Any] = {
        "subject": session.subject,
        "session_date": session.files.session_date.isoformat(),
        "label": session.files.label,
        "n_ME": int((kinds == "ME").sum()),
        "n_MaE": int((kinds == "MaE").sum()),
        "n_ME_physio": int(((kinds == "ME") & in_physio).sum()),
        "n_MaE_physio": int(((kinds == "MaE") & in_physio).sum()),
        "n_flagged": int((flags != "").sum()),
    }
    out.update(_exclusion_counts(session.exclusions))
    out["n_excluded"] = int(len(session.exclusions))
    out.update(
        sync_offset_s=None if clock is None else float(clock.offset_s),
        sync_drift_ppm=None if clock is None else float(clock.drift_ppm),
        sync_max_abs_residual_ms=None if clock is None else float(clock.max_abs_residual_ms),
        sync_rms_residual_ms=None if clock is None else float(clock.rms_residual_ms),
        sync_n_matched=None if clock is None else int(clock.n_matched),
        sync_n_outliers=None if clock is None else int(clock.n_matched - clock.n_used),
        eeg_markers_kept=int(len(session.eeg_events)),
        eeg_markers_dropped=_n_dropped(session.eeg_marker_report),
        physio_markers_kept=None if session.physio_events is None else int(len(session.physio_events)),
        physio_markers_dropped=None if session.physio_marker_report is None else _n_dropped(session.physio_marker_report),
        eeg_sfreq_hz=float(raw.info["sfreq"]),
        eeg_duration_s=float(raw.n_times / raw.info["sfreq"]),
        eeg_n_channels=int(len(raw.ch_names)),
        physio_sfreq_hz=None if praw is None else float(praw.info["sfreq"]),
        physio_duration_s=None if praw is None else float(praw.n_times / praw.info["sfreq"]),
        physio_n_channels=None if praw is None else int(len(praw.ch_names)),
        failed=None,
    )  # fmt: skip
    return out


def coded_counts(expressions: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Coded expressions per subject and kind, for ``study_table(coding_counts=...)``.

    Parameters
    ----------
    expressions : pandas.DataFrame
        Kept expressions of the coding file
        (:attr:`mmme_neuro.io.coding.CodingResult.expressions`): ``subject``
        (pseudonym) and ``kind``.

    Returns
    -------
    counts : dict
        ``{subject: {"ME": n, "MaE": n}}``, subjects sorted.
    """
    out: dict[str, dict[str, int]] = {}
    for subject, kinds in expressions.groupby("subject", sort=True)["kind"]:
        out[str(subject)] = {k: int((kinds == k).sum()) for k in KIND_ORDER}
    return out


def study_table(
    sessions: Iterable[SessionIngest] | Iterable[Mapping[str, Any]],
    failures: Mapping[str, str] | None = None,
    coding_counts: Mapping[str, Mapping[str, int]] | None = None,
) -> pd.DataFrame:
    """One row per session (one per subject in MMME) with the QA numbers.

    Parameters
    ----------
    sessions : iterable of SessionIngest or of dict
        Ingested sessions, or their :func:`session_summary` dicts (e.g. kept
        as JSON by a study pipeline).
    failures : mapping of str to str | None
        Pseudonym -> why the session could not be ingested (e.g. the
        :class:`~mmme_neuro.ingest.IngestError` message). Each gets a row
        with ``failed`` set and no recording numbers.
    coding_counts : mapping | None
        Coded expressions per subject, ``{subject: {"ME": n, "MaE": n}}``
        (:func:`coded_counts`). Adds ``coded_ME`` and ``coded_MaE``; all the
        coded expressions of a failed session count as ``session_failed``
        exclusions, and coded subjects with neither a session nor a failure
        get a row failed with ``no_recording``.

    Returns
    -------
    table : pandas.DataFrame
        Columns of :func:`session_summary` (minus ``label``), ``coded_ME``
        and ``coded_MaE`` when ``coding_counts`` is given, sorted by subject
        and date; counts are nullable integers (``<NA>`` for failed sessions),
        ``failed`` is None for ingested sessions.
    """
    failures = dict(failures or {})
    records = [dict(s) if isinstance(s, Mapping) else session_summary(s) for s in sessions]
    seen = {r["subject"] for r in records}
    both = sorted(seen & set(failures))
    if both:
        raise ValueError(f"subjects listed both as ingested and as failed: {both}")
    for subject, reason in sorted(failures.items()):
        records.append({"subject": subject, "failed": str(reason), "excluded_session_failed": None})
    if coding_counts is not None:
        for subject in sorted(set(coding_counts) - seen - set(failures)):
            records.append(
                {
                    "subject": subject,
                    "failed": "no_recording: no EEG recording in the raw directory",
                }
            )
    table = pd.DataFrame.from_records(records)
    if table.empty:
        table = pd.DataFrame(columns=["subject", "failed"])
    table = table.drop(columns=["label"], errors="ignore")
    for code in EXCLUSION_REASONS:
        if f"excluded_{code}" not in table:
            table[f"excluded_{code}"] = np.nan
    table["failed"] = table["failed"].astype(object).where(table["failed"].notna(), None)
    if coding_counts is not None:
        table.insert(1, "coded_ME", [_coded(coding_counts, s, "ME") for s in table["subject"]])
        table.insert(2, "coded_MaE", [_coded(coding_counts, s, "MaE") for s in table["subject"]])
        failed = table["failed"].notna()
        total = table["coded_ME"].astype(float) + table["coded_MaE"].astype(float)
        lost_all = failed & table["failed"].astype(str).str.startswith("no_recording")
        table.loc[failed & ~lost_all, "excluded_session_failed"] = total[failed & ~lost_all]
        table.loc[lost_all, "excluded_no_recording"] = total[lost_all]
        table.loc[failed, "n_excluded"] = total[failed]
    ordered = _study_columns(table.columns)
    table = table[ordered].sort_values(["subject", "session_date"] if "session_date" in table else ["subject"],
                                       kind="stable", na_position="last").reset_index(drop=True)  # fmt: skip
    for col in table.columns:
        if _is_count_column(col):
            table[col] = pd.array(pd.to_numeric(table[col]).round(), dtype="Int64")
    for col in ("excluded_" + c for c in EXCLUSION_REASONS):
        table.loc[table["failed"].isna(), col] = table.loc[table["failed"].isna(), col].fillna(0)
    return table


# ============================================================================ summary tables


def _n_dropped(report: pd.DataFrame | None) -> int:
    if report is None or report.empty:
        return 0
    return int((report["action"] == "dropped").sum())


def _exclusion_counts(exclusions: pd.DataFrame) -> dict[str, int]:
    counts = exclusions["reason_code"].value_counts() if len(exclusions) else pd.Series(dtype=int)
    codes = list(EXCLUSION_REASONS) + sorted(set(counts.index) - set(EXCLUSION_REASONS))
    return {f"excluded_{c}": int(counts.get(c, 0)) for c in codes}


def _coded(counts: Mapping[str, Mapping[str, int]], subject: str, kind: str) -> int | None:
    entry = counts.get(subject)
    return None if entry is None else int(entry.get(kind, 0))


def _is_count_column(col: str) -> bool:
    return col.startswith(("n_", "coded_", "excluded_", "sync_n_")) or col.endswith(
        ("_kept", "_dropped", "_n_channels")
    )


def _study_columns(columns: Iterable[str]) -> list[str]:
    """Stable column order: identity, counts, exclusions, sync, markers, recordings, failed."""
    columns = list(columns)
    first = ["subject", "session_date", "coded_ME", "coded_MaE", "n_ME", "n_MaE", "n_ME_physio",
             "n_MaE_physio", "n_flagged"]  # fmt: skip
    excl = [f"excluded_{c}" for c in EXCLUSION_REASONS]
    excl += sorted(c for c in columns if c.startswith("excluded_") and c not in excl)
    rest = ["n_excluded", "sync_offset_s", "sync_drift_ppm", "sync_max_abs_residual_ms", "sync_rms_residual_ms",
            "sync_n_matched", "sync_n_outliers", "eeg_markers_kept", "eeg_markers_dropped",
            "physio_markers_kept", "physio_markers_dropped", "eeg_sfreq_hz", "eeg_duration_s",
            "eeg_n_channels", "physio_sfreq_hz", "physio_duration_s", "physio_n_channels"]  # fmt: skip
    order = [c for c in first + excl + rest if c in columns]
    order += [c for c in columns if c not in order and c != "failed"]
    return order + ["failed"]


def _table_html(df: pd.DataFrame, *, index: bool = False, caption: str | None = None) -> str:
    body = df.to_html(index=index, border=0, classes=_TABLE_CLASSES, na_rep="–", escape=True,
                      float_format=lambda v: f"{v:.6g}")  # fmt: skip
    head = f"<h5>{html.escape(caption)}</h5>\n" if caption else ""
    return head + body


def _note(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def _channel_table(raw: mne.io.BaseRaw) -> pd.DataFrame:
    types = raw.get_channel_types()
    rows = []
    for ch_type in dict.fromkeys(types):
        names = [n for n, t in zip(raw.ch_names, types, strict=True) if t == ch_type]
        shown = (
            ", ".join(names)
            if len(names) <= 8
            else f"{', '.join(names[:4])} ... {', '.join(names[-2:])}"
        )
        rows.append({"type": ch_type, "n": len(names), "channels": shown})
    return pd.DataFrame(rows)


def _physio_units(praw: mne.io.BaseRaw) -> dict[str, str]:
    """SI unit of each physiology channel (recorded by the reader in ``info['temp']``)."""
    temp = praw.info.get("temp") or {}
    store = temp.get("mmme_neuro", {}).get("physio", {}) if isinstance(temp, dict) else {}
    units = store.get("units", {}) if isinstance(store, dict) else {}
    return {ch: str(units.get(ch, "?")) for ch in praw.ch_names}


def _marker_table(session: SessionIngest) -> pd.DataFrame:
    rows = []
    for name, events, report in (("EEG", session.eeg_events, session.eeg_marker_report),
                                 ("physiology", session.physio_events, session.physio_marker_report)):  # fmt: skip
        if events is None:
            continue
        row: dict[str, Any] = {
            "recording": name,
            "kept": int(len(events)),
            "dropped": _n_dropped(report),
        }
        if report is not None and len(report):
            for rule, n in (
                report.loc[report["action"] == "dropped", "rule"]
                .value_counts()
                .sort_index()
                .items()
            ):
                row[f"dropped: {rule}"] = int(n)
            for rule, n in (
                report.loc[report["action"] != "dropped", "rule"]
                .value_counts()
                .sort_index()
                .items()
            ):
                row[f"flagged: {rule}"] = int(n)
        rows.append(row)
    table = pd.DataFrame(rows)
    extra = [c for c in table.columns if c.startswith(("dropped:", "flagged:"))]
    table[extra] = table[extra].fillna(0).astype(int)
    return table


def _summary_html(session: SessionIngest) -> str:
    raw, praw = session.eeg_raw, session.physio_raw
    sf = float(raw.info["sfreq"])
    has_pos = sum(
        1 for ch, t in zip(raw.info["chs"], raw.get_channel_types(), strict=True)
        if t == "eeg" and np.all(np.isfinite(ch["loc"][:3])) and np.any(ch["loc"][:3] != 0)
    )  # fmt: skip
    n_eeg = int(sum(t == "eeg" for t in raw.get_channel_types()))
    rec = [{"recording": "EEG", "format": session.files.eeg.suffix, "sfreq (Hz)": sf,
            "duration (s)": raw.n_times / sf, "duration (min)": raw.n_times / sf / 60,
            "samples": int(raw.n_times), "channels": len(raw.ch_names)}]  # fmt: skip
    if praw is not None:
        psf = float(praw.info["sfreq"])
        rec.append({"recording": "physiology", "format": session.files.physio.suffix, "sfreq (Hz)": psf,
                    "duration (s)": praw.n_times / psf, "duration (min)": praw.n_times / psf / 60,
                    "samples": int(praw.n_times), "channels": len(praw.ch_names)})  # fmt: skip
    parts = [
        f"<p>Session <b>{html.escape(session.files.label)}</b>.</p>",
        _table_html(pd.DataFrame(rec), caption="Recordings"),
        _table_html(
            _channel_table(raw),
            caption=f"EEG channels by type ({has_pos} of {n_eeg} EEG channels with a position)",
        ),
    ]
    if praw is not None:
        units = _physio_units(praw)
        phys = pd.DataFrame({"channel": praw.ch_names, "type": praw.get_channel_types(),
                             "unit (SI)": [units[c] for c in praw.ch_names]})  # fmt: skip
        parts.append(_table_html(phys, caption="Physiology channels"))
    else:
        parts.append(_note("No physiology recording."))
    parts.append(_table_html(_marker_table(session), caption="Markers kept and dropped by rule"))
    if session.clock is not None:
        c = session.clock
        clock = pd.DataFrame([{"offset (s)": c.offset_s, "drift (ppm)": c.drift_ppm, "matched": c.n_matched,
                               "used": c.n_used, "max |residual| (ms)": c.max_abs_residual_ms,
                               "RMS residual (ms)": c.rms_residual_ms, "tolerance (ms)": c.tolerance_ms}])  # fmt: skip
        parts.append(
            _table_html(
                clock, caption="Clock fit, physiology time = offset + (1 + drift) x EEG time"
            )
        )
    s = session_summary(session)
    expr = pd.DataFrame([{"kind": k, "placed on EEG": s[f"n_{k}"], "inside physiology": s[f"n_{k}_physio"],
                          "excluded (all scopes)": int((session.exclusions["kind"] == k).sum())
                          if len(session.exclusions) else 0} for k in KIND_ORDER])  # fmt: skip
    parts.append(_table_html(expr, caption="Expressions"))
    return "\n".join(parts)


def _exclusions_html(session: SessionIngest) -> str:
    ex = session.exclusions
    cols = ["expression_id", "source_row", "marker", "kind", "reason_code", "scope", "reason"]
    parts = []
    if len(ex):
        counts = ex.groupby(["reason_code", "scope"]).size().rename("n").reset_index()
        parts.append(_table_html(counts, caption=f"{len(ex)} exclusion(s) by reason"))
        table = ex[[c for c in cols if c in ex.columns]].sort_values(["reason_code", "marker", "expression_id"],
                                                                     kind="stable")  # fmt: skip
        parts.append(_table_html(table, caption="Excluded expressions"))
    else:
        parts.append(_note("No expression excluded."))
    expr = session.expressions
    if "ingest_flags" in expr and (expr["ingest_flags"].fillna("") != "").any():
        flagged = expr.loc[expr["ingest_flags"].fillna("") != "",
                           ["expression_id", "source_row", "marker", "kind", "eeg_onset_s", "ingest_flags"]]  # fmt: skip
        parts.append(_table_html(flagged, caption="Kept expressions with an ingestion flag"))
    return "\n".join(parts)


# ============================================================================ figures


@contextlib.contextmanager
def _quiet_figures() -> Iterator[None]:
    """Publication style with screen-sized text; figures made inside are closed on exit."""
    before = set(plt.get_fignums())
    try:
        with publication_style(**_SCREEN_RC):
            yield
    finally:
        for num in set(plt.get_fignums()) - before:
            plt.close(num)


def _add_figure(report: mne.Report, fig: Figure, caption: str, title: str, tag: str) -> None:
    try:
        report.add_figure(fig, title=title, caption=caption, image_format="png", tags=(tag,))
    finally:
        plt.close(fig)


def _psd_segments(n_times: int, sfreq: float, total_s: float) -> list[tuple[int, int]]:
    """(start, stop) samples of up to six equal segments, spread evenly, ``total_s`` in all."""
    total = min(int(round(total_s * sfreq)), n_times)
    n_seg = int(np.clip(math.floor(total / (_PSD_MIN_SEGMENT_S * sfreq)), 1, _PSD_MAX_SEGMENTS))
    seg = total // n_seg
    out = []
    for k in range(n_seg):
        centre = (k + 0.5) / n_seg * n_times
        start = int(np.clip(round(centre - seg / 2), 0, n_times - seg))
        out.append((start, start + seg))
    return out


def _eeg_psd(
    session: SessionIngest, psd_segment_s: float
) -> tuple[np.ndarray, np.ndarray, list[str], list[tuple[int, int]]]:
    """Welch PSD (V^2/Hz) of the EEG channels, averaged over segments weighted by length."""
    raw = session.eeg_raw
    sf = float(raw.info["sfreq"])
    picks = mne.pick_types(raw.info, eeg=True, exclude=())
    names = [raw.ch_names[i] for i in picks]
    segments = _psd_segments(raw.n_times, sf, psd_segment_s)
    fmax = min(_PSD_FMAX_HZ, sf / 2)
    acc, weight, freqs = None, 0, None
    for start, stop in segments:
        data = raw.get_data(picks=picks, start=start, stop=stop)
        n_fft = int(min(2 * sf, stop - start))  # 0.5-Hz bins at most
        psd, freqs = mne.time_frequency.psd_array_welch(
            data,
            sf,
            fmin=_PSD_FMIN_HZ,
            fmax=fmax,
            n_fft=n_fft,
            n_overlap=n_fft // 2,
            verbose="error",
        )
        acc = psd * (stop - start) if acc is None else acc + psd * (stop - start)
        weight += stop - start
    return freqs, acc / weight, names, segments


def _psd_figure(session: SessionIngest, psd_segment_s: float) -> tuple[Figure, str]:
    freqs, psd, names, segments = _eeg_psd(session, psd_segment_s)
    sf = session.eeg_sfreq
    psd_uv = psd * 1e12  # V^2/Hz -> uV^2/Hz
    broadband = np.median(psd_uv[:, (freqs >= 1) & (freqs <= 45)], axis=1)
    med = np.median(broadband)
    odd = [n for n, b in zip(names, broadband, strict=True) if not (med / 10 <= b <= med * 10)]
    fig, ax = plt.subplots(figsize=figure_size(_FIG_WIDTH_MM, 90))
    floor = np.finfo(float).tiny
    for row, name in zip(psd_uv, names, strict=True):
        is_odd = name in odd
        ax.plot(freqs, np.maximum(row, floor), lw=0.9 if is_odd else 0.4, alpha=1.0 if is_odd else 0.5,
                color=OKABE_ITO["vermillion"] if is_odd else "#777777", zorder=3 if is_odd else 1)  # fmt: skip
    ax.plot(
        freqs,
        np.maximum(np.median(psd_uv, axis=0), floor),
        color="black",
        lw=1.4,
        label="median channel",
        zorder=4,
    )
    ax.set_yscale("log")
    ax.set_xlim(freqs[0], freqs[-1])
    ax.set_xlabel("Frequency (Hz)")
    ax.set_ylabel("Power spectral density (µV²/Hz)")
    handles = [Line2D([], [], color="#777777", lw=0.6, label=f"{len(names)} EEG channels"),
               Line2D([], [], color="black", lw=1.4, label="median channel")]  # fmt: skip
    line_text = ""
    if freqs[-1] >= _LINE_HZ + 2:
        ax.axvline(_LINE_HZ, color=OKABE_ITO["blue"], lw=0.7, ls="--", alpha=0.6, zorder=0)
        ax.text(_LINE_HZ, 1.0, " 50 Hz mains", transform=ax.get_xaxis_transform(), color=OKABE_ITO["blue"],
                ha="left", va="top")  # fmt: skip
        med_psd = np.median(psd_uv, axis=0)
        at = med_psd[np.argmin(np.abs(freqs - _LINE_HZ))]
        side = med_psd[((freqs >= 45) & (freqs <= 48)) | ((freqs >= 52) & (freqs <= 55))]
        if side.size and np.median(side) > 0 and at > 0:
            line_text = f" The 50 Hz line is {10 * np.log10(at / np.median(side)):.1f} dB above 45-55 Hz (median channel)."
    if odd:
        handles.append(Line2D([], [], color=OKABE_ITO["vermillion"], lw=0.9,
                              label="broadband power >10x from median"))  # fmt: skip
    ax.legend(handles=handles, loc="upper right")
    ax.grid(True, which="major", axis="both")
    ax.set_title("EEG power spectrum (Welch)", loc="left")
    seg_s = (segments[0][1] - segments[0][0]) / sf
    starts = ", ".join(f"{a / sf / 60:.1f}" for a, _ in segments)
    caption = (
        f"Welch PSD of {len(names)} EEG channels (including mastoids), {len(segments)} segment(s) of "
        f"{seg_s:.1f} s ({len(segments) * seg_s:.0f} s in all, starting at {starts} min), "
        f"{freqs[1] - freqs[0]:.2g}-Hz bins, {freqs[0]:g}-{freqs[-1]:g} Hz, log power.{line_text} "
        + (f"Channels with broadband (1-45 Hz) power more than 10x away from the median channel: {', '.join(odd)}."
           if odd else "No channel's broadband (1-45 Hz) power is more than 10x away from the median channel.")
    )  # fmt: skip
    return fig, caption


def _sync_figure(session: SessionIngest) -> tuple[Figure, str]:
    clock = session.clock
    m = clock.matched
    used = m["used"].to_numpy(dtype=bool)
    t_min = m["eeg_time_s"].to_numpy(dtype=float) / 60
    res = m["residual_ms"].to_numpy(dtype=float)
    is_rest = m["code"].to_numpy() == REST_MARKER
    tol = (
        float(clock.tolerance_ms)
        if np.isfinite(clock.tolerance_ms)
        else float(np.nanmax(np.abs(res)) or 1.0)
    )
    fig, ax = plt.subplots(figsize=figure_size(_FIG_WIDTH_MM, 70))
    ax.axhspan(-tol, tol, color="#EEEEEE", zorder=0, label=f"tolerance ±{tol:.3g} ms")
    ax.axhline(0, color="#999999", lw=0.6, zorder=1)
    ax.scatter(
        t_min[used & ~is_rest],
        res[used & ~is_rest],
        s=14,
        color="black",
        zorder=3,
        label="clip marker",
    )
    ax.scatter(t_min[used & is_rest], res[used & is_rest], s=14, facecolor="white", edgecolor="black",
               zorder=3, label=f"rest marker ({REST_MARKER})")  # fmt: skip
    if (~used).any():
        ax.scatter(t_min[~used], res[~used], s=30, marker="x", color=OKABE_ITO["vermillion"], zorder=4,
                   label="outlier (not used)")  # fmt: skip
        for x, y, code in zip(t_min[~used], res[~used], m["code"].to_numpy()[~used], strict=True):
            ax.annotate(
                str(code),
                (x, y),
                xytext=(3, 3),
                textcoords="offset points",
                color=OKABE_ITO["vermillion"],
            )
    span = max(1.3 * tol, 1.15 * float(np.nanmax(np.abs(res))) if res.size else 0)
    ax.set_ylim(-span, span)
    ax.set_xlim(0, session.eeg_raw.n_times / session.eeg_sfreq / 60)
    ax.set_xlabel("EEG time (min)")
    ax.set_ylabel("Residual (ms)")
    ax.set_title("Physiology - EEG clock fit residuals", loc="left")
    fig.legend(loc="outside lower center", ncols=4)
    n_out = int((~used).sum())
    outl = "" if not n_out else " Outliers: " + ", ".join(
        f"{c} at {t:.1f} s ({r:+.1f} ms)" for c, t, r in
        zip(m["code"][~used], m["eeg_time_s"][~used], m["residual_ms"][~used], strict=True)) + "."  # fmt: skip
    caption = (
        f"Residual of each of the {clock.n_matched} markers matched between EEG and physiology "
        f"({clock.n_used} used, {n_out} outlier(s)) against the fit physiology time = offset + "
        f"EEG time x (1 + drift): offset {clock.offset_s:.4f} s, drift {clock.drift_ppm:.2f} ppm, "
        f"max |residual| {clock.max_abs_residual_ms:.2f} ms, RMS {clock.rms_residual_ms:.2f} ms "
        f"(tolerance {tol:.3g} ms).{outl}"
    )
    return fig, caption


def _placeable_exclusions(session: SessionIngest) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Exclusions with an EEG time to draw (s) and those without (clip not in the EEG)."""
    ex = session.exclusions
    if not len(ex):
        return ex.assign(time_s=[]), ex
    onset = dict(
        zip(session.expressions["expression_id"], session.expressions["eeg_onset_s"], strict=True)
    )
    clip_t = dict(zip(session.clips["marker"], session.clips["eeg_time_s"], strict=True))
    t = [
        onset.get(e, clip_t.get(int(m), np.nan))
        for e, m in zip(ex["expression_id"], ex["marker"], strict=True)
    ]
    ex = ex.assign(time_s=np.asarray(t, dtype=float))
    return ex[np.isfinite(ex["time_s"])], ex[~np.isfinite(ex["time_s"])]


def _timeline_figure(session: SessionIngest) -> tuple[Figure, str]:
    dur_min = session.eeg_raw.n_times / session.eeg_sfreq / 60
    rows = ["clips", f"rest ({REST_MARKER})", "dropped markers", "ME", "MaE", "excluded"]
    y = {r: len(rows) - 1 - i for i, r in enumerate(rows)}
    fig, ax = plt.subplots(figsize=figure_size(_FIG_WIDTH_MM, 85))
    clips = session.clips.sort_values("eeg_time_s")
    starts = clips["eeg_time_s"].to_numpy(dtype=float)
    ends = clips["end_time_s"].to_numpy(dtype=float)
    nxt = np.append(starts[1:], session.eeg_raw.n_times / session.eeg_sfreq)
    ends = np.where(np.isfinite(ends), ends, nxt)
    width_per_min = (_FIG_WIDTH_MM / 25.4 * 72) / max(dur_min, 1e-9)  # points per minute, roughly
    for marker, a, b in zip(clips["marker"], starts, ends, strict=True):
        emo = CLIP_EMOTION.get(int(marker), "calm")
        ax.broken_barh([(a / 60, (b - a) / 60)], (y["clips"] - 0.4, 0.8), facecolor=CLIP_EMOTION_COLORS[emo],
                       edgecolor="white", linewidth=0.3)  # fmt: skip
        if (b - a) / 60 * width_per_min > 9:
            ax.text(
                (a + b) / 120,
                y["clips"],
                str(int(marker)),
                ha="center",
                va="center",
                rotation=90,
                fontsize=5.5,
            )
    ev = session.eeg_events
    rest_t = ev.loc[ev["code"] == REST_MARKER, "time_s"].to_numpy(dtype=float) / 60
    ax.vlines(rest_t, y[rows[1]] - 0.35, y[rows[1]] + 0.35, color="#555555", lw=0.8)
    rep = session.eeg_marker_report
    dropped = (
        rep[(rep["action"] == "dropped")]
        if rep is not None and len(rep)
        else pd.DataFrame(columns=["time_s", "rule", "code"])
    )
    rule_markers = ["v", "s", "D", "^", "P", "*", "o"]
    rules = sorted(dropped["rule"].unique()) if len(dropped) else []
    drop_handles = []
    for i, rule in enumerate(rules):
        sel = dropped[dropped["rule"] == rule]
        t = pd.to_numeric(sel["time_s"], errors="coerce").to_numpy(dtype=float) / 60
        t = t[np.isfinite(t)]
        ax.scatter(t, np.full(t.size, y["dropped markers"]), marker=rule_markers[i % len(rule_markers)],
                   s=16, facecolor="none", edgecolor="#333333", linewidth=0.7)  # fmt: skip
        drop_handles.append(Line2D([], [], ls="", marker=rule_markers[i % len(rule_markers)], mfc="none",
                                   mec="#333333", label=f"dropped: {rule} ({len(sel)})"))  # fmt: skip
    ex = session.expressions
    for kind in KIND_ORDER:
        t = (
            ex.loc[ex["kind"] == kind, "eeg_onset_s"].to_numpy(dtype=float) / 60
            if len(ex)
            else np.array([])
        )
        ax.vlines(t, y[kind] - 0.4, y[kind] + 0.4, color=CONDITION_COLORS[kind], lw=0.8)
    placed, unplaced = _placeable_exclusions(session)
    reason_handles = []
    for reason in sorted(set(placed["reason_code"]) | set(unplaced["reason_code"])):
        color = _REASON_COLORS.get(reason, CONDITION_COLORS["other"])
        sel = placed[placed["reason_code"] == reason]
        ax.scatter(sel["time_s"].to_numpy(dtype=float) / 60, np.full(len(sel), y["excluded"]), marker="x",
                   s=22, color=color, linewidth=0.9, zorder=3)  # fmt: skip
        n = int((placed["reason_code"] == reason).sum() + (unplaced["reason_code"] == reason).sum())
        reason_handles.append(
            Line2D([], [], ls="", marker="x", color=color, label=f"{reason} ({n})")
        )
    if len(unplaced):
        clips_missing = ", ".join(str(int(m)) for m in sorted(unplaced["marker"].unique()))
        ax.text(0.995, y["excluded"] - 0.42,
                f"not on the time axis: {len(unplaced)} expression(s) of clip(s) {clips_missing} "
                "(clip marker not in the EEG)",
                transform=ax.get_yaxis_transform(), ha="right", va="top", fontsize=6.5)  # fmt: skip
    ax.set_yticks([y[r] for r in rows], rows)
    ax.set_ylim(-0.8, len(rows) - 0.4)
    ax.set_xlim(0, dur_min)
    ax.set_xlabel("EEG time (min)")
    ax.tick_params(axis="y", length=0)
    ax.spines["left"].set_visible(False)
    ax.grid(True, axis="x")
    ax.set_title("Markers and expressions over the session", loc="left")
    present = [
        e
        for e in CLIP_MARKERS_BY_EMOTION
        if e in {CLIP_EMOTION.get(int(m)) for m in clips["marker"]}
    ]
    emo_handles = [Patch(facecolor=CLIP_EMOTION_COLORS[e], label=e) for e in present]
    kind_handles = [Line2D([], [], color=CONDITION_COLORS[k], lw=1.2, marker="|", ls="", ms=8, mew=1.2,
                           label=f"{k} onset ({int((ex['kind'] == k).sum()) if len(ex) else 0})") for k in KIND_ORDER]  # fmt: skip
    fig.legend(handles=emo_handles + kind_handles + drop_handles + reason_handles, loc="outside lower center",
               ncols=min(6, len(emo_handles + kind_handles + drop_handles + reason_handles)))  # fmt: skip
    caption = (
        f"{len(clips)} clip(s) (coloured by clip emotion, marker number inside), {rest_t.size} rest marker(s), "
        f"{len(dropped)} dropped EEG marker(s), and the onsets of the {len(ex)} placed expression(s) on the EEG "
        f"clock. Excluded expressions ({len(session.exclusions)}) are crossed at their onset (physiology-only "
        "exclusions) or at their clip start; those whose clip is missing from the EEG are listed, not drawn."
    )
    return fig, caption


def _display_scale(unit: str, values: np.ndarray) -> tuple[float, str]:
    """Factor and unit label to show SI ``values`` with an SI prefix (V -> mV/uV, S -> uS)."""
    if unit not in ("V", "S"):
        return 1.0, unit
    peak = float(np.nanmax(np.abs(values))) if values.size else 0.0
    for factor, prefix in ((1.0, ""), (1e3, "m"), (1e6, "µ"), (1e9, "n")):
        if peak * factor >= 1.0:
            return factor, prefix + unit
    return 1e9, "n" + unit


def _physio_figure(session: SessionIngest) -> tuple[Figure, str] | None:
    praw, clock = session.physio_raw, session.clock
    ex = session.expressions
    if praw is None or clock is None or not len(ex):
        return None
    me = ex[(ex["kind"] == "ME") & ex["in_physio"].astype(bool)].sort_values("eeg_onset_s")
    if not len(me):
        return None
    row = me.iloc[0]
    psf = float(praw.info["sfreq"])
    t_eeg = float(row["eeg_onset_s"])
    t_phys = float(clock.to_physio_time(t_eeg))
    start = max(0, int(round((t_phys - _PHYSIO_PRE_S) * psf)))
    stop = min(praw.n_times, start + int(round(_PHYSIO_WINDOW_S * psf)))
    data = praw.get_data(start=start, stop=stop)
    t = np.arange(start, stop) / psf - t_phys
    units = _physio_units(praw)
    n = len(praw.ch_names)
    fig, axes = plt.subplots(
        n, 1, sharex=True, figsize=figure_size(_FIG_WIDTH_MM, 20 + 17 * n), squeeze=False
    )
    off_rel = float(clock.to_physio_time(float(row["eeg_offset_s"]))) - t_phys
    others = ex[
        (ex["eeg_onset_s"] > t_eeg - _PHYSIO_PRE_S - 1)
        & (ex["eeg_onset_s"] < t_eeg + _PHYSIO_WINDOW_S)
    ]
    others = others[others["expression_id"] != row["expression_id"]]
    pev = (
        session.physio_events
        if session.physio_events is not None
        else pd.DataFrame(columns=["time_s", "code"])
    )
    pev = pev[(pev["time_s"] >= start / psf) & (pev["time_s"] < stop / psf)]
    for ax, name, trace in zip(axes[:, 0], praw.ch_names, data, strict=True):
        factor, unit = _display_scale(units[name], trace)
        ax.axvspan(0, max(off_rel, 1 / psf), color=CONDITION_COLORS["ME"], alpha=0.18, lw=0)
        ax.axvline(0, color=CONDITION_COLORS["ME"], lw=1.0)
        for o_t, kind in zip(others["eeg_onset_s"], others["kind"], strict=True):
            ax.axvline(float(clock.to_physio_time(float(o_t))) - t_phys, color=CONDITION_COLORS.get(kind, "grey"),
                       lw=0.7, ls=":")  # fmt: skip
        for m_t in pev["time_s"]:
            ax.axvline(float(m_t) - t_phys, color="#999999", lw=0.7, ls="--")
        ax.plot(t, trace * factor, color="black", lw=0.5)
        ax.set_ylabel(f"{name}\n({unit})", rotation=0, ha="right", va="center")
        ax.margins(x=0)
        ax.yaxis.set_major_locator(plt.MaxNLocator(3))
    top = axes[0, 0]
    for m_t, code in zip(pev["time_s"], pev["code"], strict=True):
        top.text(float(m_t) - t_phys, 1.02, f" {int(code)}", transform=top.get_xaxis_transform(), fontsize=6.5,
                 color="#555555", ha="left", va="bottom")  # fmt: skip
    axes[-1, 0].set_xlabel("Time from ME onset (s, physiology clock)")
    legend = [Patch(facecolor=CONDITION_COLORS["ME"], alpha=0.35, label="this ME (onset-offset)"),
              Line2D([], [], color=CONDITION_COLORS["ME"], ls=":", label="other ME onset"),
              Line2D([], [], color=CONDITION_COLORS["MaE"], ls=":", label="MaE onset"),
              Line2D([], [], color="#999999", ls="--", label="marker")]  # fmt: skip
    fig.legend(handles=legend, loc="outside upper right", ncols=4)
    fig.suptitle(
        f"Physiology around ME {row['expression_id']}", x=0.01, ha="left", fontweight="bold"
    )
    caption = (
        f"The first ME inside the physiology ({row['expression_id']}, clip {int(row['marker'])}, "
        f"{row.get('emotion', '')}, {float(row['offset_s'] - row['onset_s']) * 1e3:.0f} ms): EEG onset "
        f"{t_eeg:.3f} s mapped by the clock fit to physiology time {t_phys:.3f} s (offset {clock.offset_s:.4f} s, "
        f"drift {clock.drift_ppm:.2f} ppm). Window {t[0]:.1f} to {t[-1]:.1f} s around the onset; each signal "
        "in its own row, in its recorded unit (SI prefix for volts and siemens)."
    )
    return fig, caption
