"""Read, validate and pseudonymise the MMME coding file.

The MMME coding file (xlsx, or a csv export of it) lists one coded facial
expression per row in 13 columns: ``Subject``, ``Filename``, ``Marker``,
``OnsetTime``, ``ApexTime``, ``OffsetTime``, ``OnsetFrame``, ``ApexFrame``,
``OffsetFrame``, ``Action Units``, ``Estimated Emotion``, ``Date``, ``dif``;
the authors' combined file may add ``Macro/Micro``. :func:`read_coding` turns
it into one typed table of expressions plus a validation report with one row
per input row, and replaces participant names by pseudonyms.

Conventions of the file (established on the public MMME file)
-------------------------------------------------------------
- ``Filename`` is ``<clip emotion>_<clip order>_<marker>_<name>_<yyyymmdd>.avi``;
  the session date and the clip order are taken from it.
- ``OnsetTime``/``ApexTime``/``OffsetTime`` are seconds from clip start
  (2 decimals, i.e. 10-ms resolution).
- The frame stamps are camera wall-clock times in two formats:
  ``HH-MM-SS-mmm-ccc`` (``ccc`` is a camera frame counter that wraps modulo
  1000 and is occasionally printed as ``1000``, read as 0) and
  ``HH-MM-SS-mmm`` (no counter).
- ``dif`` is "apex minus onset in camera frames": ``((apex_ccc - onset_ccc)
  mod 1000) + 1`` for counter stamps; for stamps without a counter the authors
  subtracted the last field, the milliseconds, so ``dif`` is then
  ``((apex_mmm - onset_mmm) mod 1000) + 1``, a millisecond quantity (kept,
  flagged ``dif_in_milliseconds``).
- ``Date`` is the annotation time in Chinese format, e.g.
  ``2024年06月30日-14时31分``; a recoding of an expression has a later date.

Expressions table
-----------------
``CodingResult.expressions`` has one row per kept expression, columns:

==================== ========== ==============================================
column               dtype      meaning
==================== ========== ==============================================
expression_id        str        ``<pseudonym>_m<marker>_t<onset ms, 6 digits>``
                                (e.g. ``sub-03_m146_t024330``); ``_b``, ``_c``
                                ... appended if not unique (``keep_all``).
source_row           int        Excel row number (header = row 1, first data
                                row = 2); for csv the line number.
subject              str        pseudonym ``sub-01`` ...
session_date         datetime64 recording date, from ``Filename``.
marker               int        clip marker (101-148).
clip_order           int        order of the clip within its emotion, from
                                ``Filename``.
clip_emotion         str        emotion category of the clip (marker table
                                :data:`mmme_neuro.constants.CLIP_EMOTION`).
onset_s, apex_s,     float      clip-relative times (s).
offset_s
duration_s           float      ``offset_s - onset_s`` (s).
onset_to_apex_s      float      ``apex_s - onset_s`` (s).
onset_wallclock_s,   float      camera wall-clock of the stamps, seconds since
apex_wallclock_s,               midnight (ms resolution).
offset_wallclock_s
onset_frame,         Int64      camera frame counters (0-999); <NA> for stamps
apex_frame,                     without a counter.
offset_frame
stamp_format         str        ``'counter'`` (all three stamps have a counter)
                                or ``'ms'``.
aus                  str        normalised action units, e.g. ``"AU4, AU7"``
                                (deduplicated, numerically sorted).
n_aus                int        number of action units.
au_regions           str        facial regions of the AUs in the order upper,
                                mid, lower (e.g. ``"upper, mid"``).
emotion              str        estimated emotion, lower case.
composite_emotion    str        negative / positive / surprise (<NA> if the
                                emotion is unknown).
kind                 str        ``'ME'`` or ``'MaE'``.
kind_source          str        ``'column'`` (``Macro/Micro``) or ``'rule'``.
annotated_at         datetime64 annotation time, from ``Date`` (NaT if
                                unparseable).
dif                  Int64      ``dif`` as in the file.
fps_effective        float      effective camera frame rate of the subject
                                (Hz): median over its counter rows of counter
                                frames / wall-clock seconds from onset to
                                offset; NaN without counter rows.
issues               str        ``;``-joined flag codes ('' if none).
==================== ========== ==============================================

Participant names and the original ``Filename`` (which contains the name)
never appear in the expressions, the report, log records or error messages.

Issue codes
-----------
Each input row ends ``ok``, ``flagged`` (kept, with flag codes) or
``excluded`` (with exclusion codes and a reason naming its Excel row). The
codes are in :data:`ISSUE_CODES`:

Exclusions (the row is not an analysable expression):

- ``missing_value``: an essential cell is empty (Subject, Filename, Marker,
  the three times, the three stamps, Estimated Emotion).
- ``unparseable_time``: a time is not a finite number.
- ``negative_time``: a time is below 0 s.
- ``unparseable_stamp``: a stamp is not ``HH-MM-SS-mmm[-ccc]`` (valid clock
  fields, counter 0-1000).
- ``unknown_marker``: the marker is not an integer clip marker 101-148.
- ``unparseable_filename``: ``Filename`` does not follow the naming scheme.
- ``filename_mismatch``: the marker, subject or clip emotion in ``Filename``
  disagrees with the ``Marker``/``Subject`` columns.
- ``onset_after_offset``: onset is not before offset (duration <= 0).
- ``apex_outside_onset_offset``: apex before onset or after offset.
- ``exact_duplicate``: the row repeats an earlier row in every column (the
  first is kept).
- ``duplicate_superseded``: another coding of the same expression is kept
  under the ``latest`` or ``first`` policy. Codings are of the same
  expression when subject and clip agree, their [onset, offset] intervals
  overlap and their onsets differ by at most
  ``CodingConfig.duplicate_onset_tolerance_s`` (default 0.3 s; 0 means
  identical onsets to 10 ms); the relation is made transitive.
- ``duplicate_dropped``: all codings of a conflicting group are dropped
  (``drop`` policy).

Flags (the row is kept):

- ``apex_equals_offset``: apex time equals offset time.
- ``duplicate_kept``: the row belongs to a group of conflicting codings and
  was kept (the winner under ``latest``/``first``, every member under
  ``keep_all``).
- ``overlaps_other_coding``: among kept rows, the row's [onset, offset]
  interval overlaps that of another coding of the same subject and clip (a
  likely double coding with a different onset, or co-occurring expressions).
- ``dif_in_milliseconds``: a stamp without counter whose ``dif`` follows the
  millisecond rule.
- ``dif_inconsistent``: ``dif`` is missing, not an integer, or matches
  neither rule of its stamp format.
- ``fps_deviates``: the subject's effective frame rate deviates from
  ``nominal_fps`` by more than ``fps_tolerance`` (relative).
- ``stamp_time_mismatch``: the wall-clock span onset->apex or onset->offset
  differs from the clip-time span by more than
  :data:`STAMP_TIME_TOLERANCE_FRAMES` frames at the nominal rate plus the
  10-ms rounding of the times (2/150 + 0.010 = 23.3 ms by default).
- ``stamp_format_mixed``: the row mixes stamps with and without counter.
- ``time_beyond_clip``: a time exceeds ``max_clip_time_s``.
- ``emotion_differs_from_clip``: the estimated emotion is not the clip's.
- ``unknown_emotion``: the estimated emotion is not one of
  :data:`mmme_neuro.constants.EXPRESSION_EMOTIONS`.
- ``unknown_au``: an action unit is not in
  :data:`mmme_neuro.constants.AU_REGION` or a token is not an AU.
- ``missing_aus``: ``Action Units`` is empty.
- ``unparseable_date``: ``Date`` is empty or not a recognised date.
- ``clip_order_differs``: the clip order in ``Filename`` differs from
  :data:`mmme_neuro.constants.CLIP_ORDER`.
- ``unknown_kind_label``: a ``Macro/Micro`` value is neither macro nor micro
  (the rule labels the row).
- ``kind_differs_from_rule``: the ``Macro/Micro`` label differs from the rule.

Flags are evaluated for every row that passed the row-level checks, also for
rows later excluded as duplicates, so a flag count such as
``apex_equals_offset`` does not depend on the duplicate policy.

Pseudonyms
----------
Names are mapped to ``sub-01``, ``sub-02`` ... (at least two digits, wider
from 100 participants on) in order of the participant's first session date
(from ``Filename``), then name; names without a parseable date come last.
A given mapping is reused and new names receive the next free numbers.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import math
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._utils import atomic_path, sha256_file
from ..config import CodingConfig
from ..constants import AU_REGION, CLIP_EMOTION, CLIP_ORDER, COMPOSITE_EMOTION, EXPRESSION_EMOTIONS

__all__ = [
    "EXPRESSION_COLUMNS",
    "ISSUE_CODES",
    "REQUIRED_COLUMNS",
    "CodingFileError",
    "CodingResult",
    "read_coding",
    "read_pseudonym_mapping",
    "read_stored_coding",
    "write_coding_report",
    "write_expressions_table",
    "write_pseudonym_mapping",
]

logger = logging.getLogger(__name__)

#: The 13 columns of the MMME coding file, all required.
REQUIRED_COLUMNS: tuple[str, ...] = (
    "Subject", "Filename", "Marker", "OnsetTime", "ApexTime", "OffsetTime", "OnsetFrame",
    "ApexFrame", "OffsetFrame", "Action Units", "Estimated Emotion", "Date", "dif",
)  # fmt: skip
#: Optional column of the authors' combined file with the ME/MaE label.
KIND_COLUMN = "Macro/Micro"

#: Columns of :attr:`CodingResult.expressions`, in order.
EXPRESSION_COLUMNS: tuple[str, ...] = (
    "expression_id", "source_row", "subject", "session_date", "marker", "clip_order",
    "clip_emotion", "onset_s", "apex_s", "offset_s", "duration_s", "onset_to_apex_s",
    "onset_wallclock_s", "apex_wallclock_s", "offset_wallclock_s", "onset_frame",
    "apex_frame", "offset_frame", "stamp_format", "aus", "n_aus", "au_regions", "emotion",
    "composite_emotion", "kind", "kind_source", "annotated_at", "dif", "fps_effective", "issues",
)  # fmt: skip
#: Columns of :attr:`CodingResult.report`, in order.
REPORT_COLUMNS: tuple[str, ...] = (
    "source_row", "subject", "marker", "status", "issues", "reason", "expression_id",
)  # fmt: skip

#: Issue code -> (severity, description). Severity ``'exclude'`` drops the row, ``'flag'`` keeps it.
ISSUE_CODES: dict[str, tuple[str, str]] = {
    "missing_value": ("exclude", "an essential cell is empty"),
    "unparseable_time": ("exclude", "a clip time is not a finite number"),
    "negative_time": ("exclude", "a clip time is negative"),
    "unparseable_stamp": ("exclude", "a frame stamp is not HH-MM-SS-mmm[-ccc]"),
    "unknown_marker": ("exclude", "the marker is not a clip marker 101-148"),
    "unparseable_filename": (
        "exclude",
        "Filename does not follow <emotion>_<order>_<marker>_<name>_<yyyymmdd>.avi",
    ),
    "filename_mismatch": (
        "exclude",
        "Filename disagrees with the Marker/Subject columns or the clip emotion",
    ),
    "onset_after_offset": ("exclude", "onset is not before offset"),
    "apex_outside_onset_offset": ("exclude", "apex lies outside [onset, offset]"),
    "exact_duplicate": ("exclude", "the row repeats an earlier row in every column"),
    "duplicate_superseded": ("exclude", "another coding of the same expression is kept"),
    "duplicate_dropped": ("exclude", "conflicting codings of one expression, all dropped"),
    "apex_equals_offset": ("flag", "apex time equals offset time"),
    "duplicate_kept": ("flag", "kept member of a group of conflicting codings"),
    "overlaps_other_coding": ("flag", "interval overlaps another kept coding of the same clip"),
    "dif_in_milliseconds": ("flag", "dif follows the millisecond rule (stamp without counter)"),
    "dif_inconsistent": ("flag", "dif missing or matching neither rule"),
    "fps_deviates": ("flag", "the subject's effective frame rate deviates from nominal"),
    "stamp_time_mismatch": ("flag", "wall-clock span disagrees with clip-time span"),
    "stamp_format_mixed": ("flag", "stamps with and without counter in one row"),
    "time_beyond_clip": ("flag", "a clip time exceeds max_clip_time_s"),
    "emotion_differs_from_clip": ("flag", "estimated emotion differs from the clip emotion"),
    "unknown_emotion": ("flag", "estimated emotion is not a known MMME emotion"),
    "unknown_au": ("flag", "an action unit is unknown or not an AU"),
    "missing_aus": ("flag", "Action Units is empty"),
    "unparseable_date": ("flag", "Date is empty or not a recognised date"),
    "clip_order_differs": ("flag", "clip order in Filename differs from the marker table"),
    "unknown_kind_label": ("flag", "Macro/Micro value not recognised; the rule labels the row"),
    "kind_differs_from_rule": ("flag", "Macro/Micro label differs from the ME rule"),
}

#: Tolerance of ``stamp_time_mismatch`` in camera frames at the nominal rate (plus 10 ms rounding).
STAMP_TIME_TOLERANCE_FRAMES: float = 2.0
#: Resolution (s) of the clip times: their rounding adds up to this much to a span.
TIME_RESOLUTION_S: float = 0.010
#: Tolerance of float comparisons of times (s).
EPS: float = 1e-9
#: Camera frame counter modulus.
COUNTER_MODULUS: int = 1000

_STAMP_RE = re.compile(r"^(\d{1,2})-(\d{1,2})-(\d{1,2})-(\d{1,3})(?:-(\d{1,4}))?$")
_FILENAME_RE = re.compile(r"^([A-Za-z]+)_(\d+)_(\d+)_(.+)_(\d{8})\.avi$", re.IGNORECASE)
_CN_DATE_RE = re.compile(
    r"^(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日\s*(?:[-\s]\s*(\d{1,2})\s*[时:]\s*(\d{1,2})\s*分?)?$"
)
_DATE_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y-%m-%d",
)
_AU_TOKEN_RE = re.compile(r"^[LR]?(?:AU)?(\d{1,3})[A-E]?$")
_AU_SPLIT_RE = re.compile(r"[,;、/+&\s]+")
_PSEUDONYM_RE = re.compile(r"^sub-(\d+)$")
_SAFE_VALUE_RE = re.compile(r"^[\d\s.:+\-eE]{0,40}$")
_REGION_ORDER = ("upper", "mid", "lower")


class CodingFileError(ValueError):
    """A structural problem of a coding file (missing, unreadable, wrong columns, empty)."""


@dataclass
class CodingResult:
    """The expressions of a coding file with their validation report.

    Attributes
    ----------
    expressions : pandas.DataFrame
        Kept expressions, one row each (columns :data:`EXPRESSION_COLUMNS`).
    report : pandas.DataFrame
        One row per input row: ``source_row``, ``subject`` (pseudonym),
        ``marker``, ``status`` (``ok``/``flagged``/``excluded``), ``issues``
        (``;``-joined codes), ``reason`` (text for excluded rows),
        ``expression_id`` (kept rows).
    mapping : dict of str to str
        Real name -> pseudonym (including those of a given mapping). Written
        only by :func:`write_pseudonym_mapping`.
    source : str
        File name of the coding file (not its path).
    sha256 : str
        SHA-256 of the coding file.
    """

    expressions: pd.DataFrame
    report: pd.DataFrame
    mapping: dict[str, str] = field(repr=False)
    source: str
    sha256: str

    def counts(self) -> dict[str, Any]:
        """Summary counts of the validation.

        Returns
        -------
        counts : dict
            ``rows_in``, ``kept``, ``excluded``, ``flagged`` (kept rows with a
            flag), ``by_issue`` (code -> number of input rows with it), ``me``,
            ``mae`` (kept rows by kind). ``rows_in == kept + excluded``.
        """
        status = self.report["status"]
        by_issue: dict[str, int] = {}
        for issues in self.report["issues"]:
            for code in filter(None, str(issues).split(";")):
                by_issue[code] = by_issue.get(code, 0) + 1
        kinds = self.expressions["kind"]
        return {
            "rows_in": int(len(self.report)),
            "kept": int((status != "excluded").sum()),
            "excluded": int((status == "excluded").sum()),
            "flagged": int((status == "flagged").sum()),
            "by_issue": dict(sorted(by_issue.items())),
            "me": int((kinds == "ME").sum()),
            "mae": int((kinds == "MaE").sum()),
        }


# --------------------------------------------------------------------------- reading cells


def _norm_header(name: Any) -> str:
    return re.sub(r"[^0-9a-z]", "", unicodedata.normalize("NFKC", str(name)).lower())


def _read_xlsx(path: Path) -> tuple[list[Any], list[tuple[int, list[Any]]]]:
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=False, data_only=True)
    except Exception as err:  # openpyxl raises many types for a corrupt file
        raise CodingFileError(
            f"{path}: cannot be read as an xlsx workbook ({type(err).__name__})"
        ) from err
    try:
        if not wb.worksheets:
            raise CodingFileError(f"{path}: the workbook has no worksheet")
        ws = wb.worksheets[0]
        header: list[Any] | None = None
        rows: list[tuple[int, list[Any]]] = []
        for excel_row, values in enumerate(ws.iter_rows(values_only=True), start=1):
            values = list(values)
            if all(_is_blank(v) for v in values):
                continue
            if header is None:
                header = values
            else:
                rows.append((excel_row, values))
    finally:
        wb.close()
    return header or [], rows


def _read_csv(path: Path) -> tuple[list[Any], list[tuple[int, list[Any]]]]:
    raw = path.read_bytes()
    text = None
    for enc in ("utf-8-sig", "gb18030"):
        try:
            text = raw.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    if text is None:
        raise CodingFileError(f"{path}: cannot be decoded as UTF-8 or GB18030 text")
    first = text.split("\n", 1)[0]
    delimiter = ","
    if "," not in first:
        delimiter = next((d for d in ("\t", ";") if d in first), ",")
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        header: list[Any] | None = None
        rows: list[tuple[int, list[Any]]] = []
        last_line = 0
        for values in reader:
            start_line = last_line + 1
            last_line = reader.line_num
            if all(_is_blank(v) for v in values):
                continue
            if header is None:
                header = list(values)
            else:
                rows.append((start_line, list(values)))
    except csv.Error as err:
        raise CodingFileError(f"{path}: not a valid csv file ({err})") from err
    return header or [], rows


def _is_blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def _text(value: Any) -> str:
    """NFKC-normalised, stripped text of a cell ('' for blank)."""
    if _is_blank(value):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return unicodedata.normalize("NFKC", str(value)).strip()


def _show(value: Any) -> str:
    """A cell value safe to show in a message: only digits and punctuation, never names."""
    text = _text(value)
    return repr(text) if _SAFE_VALUE_RE.match(text) else "(text)"


def _to_float(value: Any) -> float | None:
    """Finite float of a cell, or None if it is not a finite number."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float | np.integer | np.floating):
            x = float(value)
        else:
            x = float(_text(value))
    except (TypeError, ValueError, OverflowError):
        return None
    return x if math.isfinite(x) else None


def _to_int(value: Any) -> int | None:
    x = _to_float(value)
    if x is None or not x.is_integer() or abs(x) > 2**53:
        return None
    return int(x)


def _parse_stamp(value: Any) -> tuple[float, int, int | None] | None:
    """Parse a camera stamp: (seconds since midnight, milliseconds field, counter or None)."""
    m = _STAMP_RE.match(_text(value))
    if m is None:
        return None
    h, mi, s, ms = (int(g) for g in m.groups()[:4])
    counter = None if m.group(5) is None else int(m.group(5))
    if h > 23 or mi > 59 or s > 59 or (counter is not None and counter > COUNTER_MODULUS):
        return None
    if counter is not None:
        counter %= COUNTER_MODULUS  # the counter is occasionally printed as 1000 (== 0)
    return h * 3600 + mi * 60 + s + ms / 1000.0, ms, counter


def _parse_date(value: Any) -> pd.Timestamp | None:
    if isinstance(value, dt.datetime | dt.date | pd.Timestamp):
        try:
            return pd.Timestamp(value)
        except (ValueError, OverflowError):
            return None
    text = _text(value)
    m = _CN_DATE_RE.match(text)
    try:
        if m:
            y, mo, d, h, mi = (int(g) if g else 0 for g in m.groups())
            return pd.Timestamp(dt.datetime(y, mo, d, h, mi))
        for fmt in _DATE_FORMATS:
            try:
                return pd.Timestamp(dt.datetime.strptime(text, fmt))
            except ValueError:
                continue
    except (ValueError, OverflowError):
        return None
    return None


def _parse_aus(value: Any) -> tuple[list[int], bool]:
    """Action-unit numbers (sorted, unique) and whether an unknown token or AU was seen."""
    text = re.sub(r"AU\s+(?=\d)", "AU", _text(value).upper())
    numbers: set[int] = set()
    unknown = False
    for token in filter(None, _AU_SPLIT_RE.split(text)):
        m = _AU_TOKEN_RE.match(token)
        if m is None:
            unknown = True
            continue
        n = int(m.group(1))
        numbers.add(n)
        unknown |= n not in AU_REGION
    return sorted(numbers), unknown


def _parse_kind(value: Any) -> str | None:
    text = _text(value).lower()
    if text in ("me", "micro", "micro-expression", "microexpression") or text.startswith("micro"):
        return "ME"
    if text in ("mae", "macro", "macro-expression", "macroexpression") or text.startswith("macro"):
        return "MaE"
    return None


def _parse_filename(value: Any) -> dict[str, Any] | None:
    m = _FILENAME_RE.match(_text(value))
    if m is None:
        return None
    try:
        date = dt.datetime.strptime(m.group(5), "%Y%m%d").date()
    except ValueError:
        return None
    return dict(emotion=m.group(1).lower(), clip_order=int(m.group(2)), marker=int(m.group(3)),
                name=m.group(4), date=date)  # fmt: skip


# --------------------------------------------------------------------------- pseudonyms


def _pseudonymise(
    first_dates: dict[str, dt.date | None], given: Mapping[str, str]
) -> dict[str, str]:
    """Map every name to a pseudonym, reusing ``given`` and numbering new names after it."""
    mapping = {str(k): str(v) for k, v in given.items()}
    if len(set(mapping.values())) != len(mapping):
        raise ValueError("the given pseudonym mapping assigns one pseudonym to several names")
    new = [n for n in first_dates if n not in mapping]
    new.sort(key=lambda n: (first_dates[n] is None, first_dates[n] or dt.date.min, n))
    used = set(mapping.values())
    numbers = [int(m.group(1)) for p in used if (m := _PSEUDONYM_RE.match(p))]
    nxt = max(numbers, default=0) + 1
    width = max(2, len(str(len(mapping) + len(new))), len(str(nxt + len(new) - 1)) if new else 2)
    for name in new:
        while (pseudo := f"sub-{nxt:0{width}d}") in used:
            nxt += 1
        mapping[name] = pseudo
        used.add(pseudo)
        nxt += 1
    return mapping


def read_pseudonym_mapping(path: str | os.PathLike) -> dict[str, str]:
    """Read a ``name,pseudonym`` CSV written by :func:`write_pseudonym_mapping`.

    Parameters
    ----------
    path : path-like
        CSV file with the header ``name,pseudonym``.

    Returns
    -------
    mapping : dict of str to str
        Real name -> pseudonym.

    Raises
    ------
    CodingFileError
        If the file is missing, lacks a column, or maps two names to one pseudonym.
    """
    path = Path(path)
    if not path.is_file():
        raise CodingFileError(f"Pseudonym mapping not found: {path}")
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            for col in ("name", "pseudonym"):
                if col not in fields:
                    raise CodingFileError(f"{path}: pseudonym mapping lacks the column {col!r}")
            mapping: dict[str, str] = {}
            for row in reader:
                name, pseudo = (row.get("name") or "").strip(), (row.get("pseudonym") or "").strip()
                if name and pseudo:
                    mapping[name] = pseudo
    except (UnicodeDecodeError, csv.Error) as err:
        raise CodingFileError(f"{path}: not a readable csv file ({type(err).__name__})") from err
    if len(set(mapping.values())) != len(mapping):
        raise CodingFileError(f"{path}: a pseudonym is assigned to several names")
    return mapping


def write_pseudonym_mapping(result: CodingResult, path: str | os.PathLike) -> Path:
    """Write the name -> pseudonym mapping as CSV (``name,pseudonym``), atomically.

    This is the only function that writes participant names. Keep the file
    apart from shared data.

    Parameters
    ----------
    result : CodingResult
        Result of :func:`read_coding`.
    path : path-like
        Destination CSV.

    Returns
    -------
    path : pathlib.Path
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["name", "pseudonym"])
    for name, pseudo in sorted(result.mapping.items(), key=lambda kv: (kv[1], kv[0])):
        writer.writerow([name, pseudo])
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    return Path(path)


def write_coding_report(result: CodingResult, path: str | os.PathLike) -> Path:
    """Write the validation report (one row per input row) as CSV, atomically.

    Parameters
    ----------
    result : CodingResult
        Result of :func:`read_coding`.
    path : path-like
        Destination CSV.

    Returns
    -------
    path : pathlib.Path
    """
    with atomic_path(path) as tmp:
        result.report.to_csv(tmp, index=False, encoding="utf-8")
    return Path(path)


#: How the columns of :data:`EXPRESSION_COLUMNS` are typed when a stored table is read back
#: (:func:`read_stored_coding`); the others are text.
_STORED_KINDS: dict[str, str] = {
    **dict.fromkeys(("source_row", "marker", "clip_order", "n_aus"), "int"),
    **dict.fromkeys(("onset_frame", "apex_frame", "offset_frame", "dif"), "Int64"),
    **dict.fromkeys(("session_date", "annotated_at"), "datetime"),
    **dict.fromkeys(("onset_s", "apex_s", "offset_s", "duration_s", "onset_to_apex_s", "onset_wallclock_s",
                     "apex_wallclock_s", "offset_wallclock_s", "fps_effective"), "float"),
}  # fmt: skip


def write_expressions_table(result: CodingResult, path: str | os.PathLike) -> Path:
    """Store the kept expressions (pseudonyms only) as a TSV with a JSON sidecar, atomically.

    The table (:data:`EXPRESSION_COLUMNS`, ``n/a`` for missing values) holds no
    name: ``subject`` is the pseudonym, and neither ``Filename`` nor ``Subject``
    is among its columns. The sidecar (same stem, ``.json``) records the coding
    file's name and SHA-256. With the coding report
    (:func:`write_coding_report`) it describes the coding file without it:
    :func:`read_stored_coding`. BIDS conversion stores both in
    ``derivatives/mmme-neuro/``.

    Parameters
    ----------
    result : CodingResult
        Result of :func:`read_coding`.
    path : path-like
        Destination ``.tsv``.

    Returns
    -------
    path : pathlib.Path
    """
    path = Path(path)
    expr = result.expressions.reindex(columns=list(EXPRESSION_COLUMNS))
    with atomic_path(path) as tmp:
        expr.to_csv(tmp, sep="\t", index=False, encoding="utf-8", lineterminator="\n", na_rep="n/a")
    sidecar = {"coding_file": result.source, "coding_sha256": result.sha256,
               "description": "Kept expressions of the coding file (mmme_neuro.io.coding.read_coding), pseudonyms "
                              "only; the per-row validation report is coding_report.csv."}  # fmt: skip
    with atomic_path(path.with_suffix(".json")) as tmp:
        Path(tmp).write_text(json.dumps(sidecar, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_stored_coding(expressions: str | os.PathLike, report: str | os.PathLike) -> CodingResult:
    """The :class:`CodingResult` of a coding file from its stored tables, without the file (and without names).

    Parameters
    ----------
    expressions : path-like
        Table written by :func:`write_expressions_table` (its ``.json`` sidecar,
        if present, gives :attr:`CodingResult.source` and ``sha256``).
    report : path-like
        Report written by :func:`write_coding_report`.

    Returns
    -------
    result : CodingResult
        ``expressions`` and ``report`` typed as :func:`read_coding` types them;
        ``mapping`` is empty (the names were never stored).

    Raises
    ------
    CodingFileError
        A table is missing, unreadable or lacks a column (the message names it).
    """
    expressions, report = Path(expressions), Path(report)
    tables = []
    for path, columns in ((expressions, EXPRESSION_COLUMNS), (report, REPORT_COLUMNS)):
        if not path.is_file():
            raise CodingFileError(f"stored coding table not found: {path}")
        try:
            df = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", dtype=str, keep_default_na=False,
                             na_values=["n/a"] if path.suffix == ".tsv" else [], encoding="utf-8")  # fmt: skip
        except (ValueError, UnicodeDecodeError) as err:
            raise CodingFileError(f"{path}: not a readable table ({type(err).__name__}: {err})") from err
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise CodingFileError(f"{path}: lacks the column(s) {missing}")
        tables.append(df.reindex(columns=list(columns)))
    expr, rep = tables
    try:
        for col in expr.columns:
            kind = _STORED_KINDS.get(col, "str")
            if kind == "int":
                expr[col] = expr[col].astype(np.int64)
            elif kind == "Int64":
                expr[col] = pd.array([None if pd.isna(v) else int(v) for v in expr[col]], dtype="Int64")
            elif kind == "float":
                expr[col] = expr[col].astype(float)
            elif kind == "datetime":
                expr[col] = pd.to_datetime(expr[col])
            else:
                expr[col] = expr[col].astype(object).where(expr[col].notna(), None)
        rep["source_row"] = rep["source_row"].astype(np.int64)
        rep["marker"] = pd.array([None if v == "" else int(float(v)) for v in rep["marker"]], dtype="Int64")
    except (ValueError, TypeError) as err:
        raise CodingFileError(f"{expressions} / {report}: a value does not have its column's type ({err})") from err
    source, sha = expressions.name, sha256_file(expressions)
    sidecar = expressions.with_suffix(".json")
    if sidecar.is_file():
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        source, sha = str(meta.get("coding_file", source)), str(meta.get("coding_sha256", sha))
    return CodingResult(expressions=expr, report=rep, mapping={}, source=source, sha256=sha)


# --------------------------------------------------------------------------- row checks


@dataclass
class _Row:
    """One input row being validated."""

    source_row: int
    cells: dict[str, Any]
    name: str = ""
    marker: int | None = None
    excl: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    parsed: dict[str, Any] = field(default_factory=dict)
    raw_key: tuple = ()

    def exclude(self, code: str, reason: str) -> None:
        if code not in self.excl:
            self.excl.append(code)
            self.reasons.append(reason)

    def flag(self, code: str) -> None:
        if code not in self.flags:
            self.flags.append(code)


_TIME_COLS = (("OnsetTime", "onset_s"), ("ApexTime", "apex_s"), ("OffsetTime", "offset_s"))
_STAMP_COLS = (("OnsetFrame", "onset"), ("ApexFrame", "apex"), ("OffsetFrame", "offset"))
_ESSENTIAL = ("Subject", "Filename", "Marker", "OnsetTime", "ApexTime", "OffsetTime",
              "OnsetFrame", "ApexFrame", "OffsetFrame", "Estimated Emotion")  # fmt: skip


def _check_row(row: _Row, cfg: CodingConfig, has_kind: bool) -> None:
    """Parse and check one row in place (everything that needs only the row itself)."""
    c = row.cells
    row.name = _text(c["Subject"])
    missing = [col for col in _ESSENTIAL if _is_blank(c[col])]
    if missing:
        row.exclude("missing_value", f"empty {', '.join(missing)}")

    # marker
    if not _is_blank(c["Marker"]):
        marker = _to_int(c["Marker"])
        if marker is None or marker not in CLIP_EMOTION:
            row.exclude(
                "unknown_marker", f"Marker {_show(c['Marker'])} is not a clip marker 101-148"
            )
        else:
            row.marker = marker

    # times
    p = row.parsed
    for col, key in _TIME_COLS:
        if _is_blank(c[col]):
            continue
        x = _to_float(c[col])
        if x is None:
            row.exclude("unparseable_time", f"{col} {_show(c[col])} is not a number")
        elif x < 0:
            row.exclude("negative_time", f"{col} {x:g} s is negative")
        else:
            p[key] = x
    if all(k in p for _, k in _TIME_COLS):
        on, ap, off = p["onset_s"], p["apex_s"], p["offset_s"]
        if on >= off - EPS:
            row.exclude("onset_after_offset", f"onset {on:g} s is not before offset {off:g} s")
        elif ap < on - EPS or ap > off + EPS:
            row.exclude("apex_outside_onset_offset", f"apex {ap:g} s outside [{on:g}, {off:g}] s")
        if max(on, ap, off) > cfg.max_clip_time_s + EPS:
            row.flag("time_beyond_clip")
        if abs(ap - off) <= EPS:
            row.flag("apex_equals_offset")

    # stamps
    for col, key in _STAMP_COLS:
        if _is_blank(c[col]):
            continue
        stamp = _parse_stamp(c[col])
        if stamp is None:
            row.exclude("unparseable_stamp", f"{col} {_show(c[col])} is not HH-MM-SS-mmm[-ccc]")
        else:
            p[key + "_stamp"] = stamp

    # filename
    if not _is_blank(c["Filename"]):
        fn = _parse_filename(c["Filename"])
        if fn is None:
            row.exclude(
                "unparseable_filename",
                "Filename does not follow <emotion>_<order>_<marker>_<name>_<yyyymmdd>.avi",
            )
        else:
            p["filename"] = fn
            bad = []
            if row.marker is not None and fn["marker"] != row.marker:
                bad.append(f"marker {fn['marker']} (column: {row.marker})")
            if row.name and fn["name"].casefold() != row.name.casefold():
                bad.append("subject name")
            if row.marker is not None and fn["emotion"] != CLIP_EMOTION[row.marker]:
                bad.append(
                    f"clip emotion {fn['emotion']!r} (marker {row.marker}: {CLIP_EMOTION[row.marker]!r})"
                )
            if bad:
                row.exclude(
                    "filename_mismatch", "Filename disagrees with the columns: " + "; ".join(bad)
                )
            elif row.marker is not None and fn["clip_order"] != CLIP_ORDER[row.marker]:
                row.flag("clip_order_differs")

    # labels (never exclude)
    emotion = _text(c["Estimated Emotion"]).lower()
    p["emotion"] = emotion
    if emotion:
        if emotion not in EXPRESSION_EMOTIONS:
            row.flag("unknown_emotion")
        if row.marker is not None and emotion != CLIP_EMOTION[row.marker]:
            row.flag("emotion_differs_from_clip")
    if _is_blank(c["Action Units"]):
        row.flag("missing_aus")
        p["aus"] = []
    else:
        aus, unknown = _parse_aus(c["Action Units"])
        p["aus"] = aus
        if unknown:
            row.flag("unknown_au")
    p["annotated_at"] = _parse_date(c["Date"]) if not _is_blank(c["Date"]) else None
    if p["annotated_at"] is None:
        row.flag("unparseable_date")
    p["dif"] = _to_int(c["dif"]) if not _is_blank(c["dif"]) else None
    p["kind_label"] = None
    if has_kind and not _is_blank(c[KIND_COLUMN]):
        p["kind_label"] = _parse_kind(c[KIND_COLUMN])
        if p["kind_label"] is None and cfg.me_rule.use_column:
            row.flag("unknown_kind_label")
    if not row.excl:
        _check_stamps(row, cfg)


def _wall_span(a: float, b: float) -> float:
    """Wall-clock seconds from ``a`` to ``b`` (seconds since midnight), across midnight."""
    return (b - a) % 86400.0


def _check_stamps(row: _Row, cfg: CodingConfig) -> None:
    """Stamp format, dif rule and stamp/clip-time agreement of a row that passed all checks."""
    p = row.parsed
    (on_wc, on_ms, on_c), (ap_wc, ap_ms, ap_c), (off_wc, _, off_c) = (
        p["onset_stamp"],
        p["apex_stamp"],
        p["offset_stamp"],
    )
    counters = [on_c, ap_c, off_c]
    if all(x is not None for x in counters):
        p["stamp_format"] = "counter"
    else:
        p["stamp_format"] = "ms"
        if any(x is not None for x in counters):
            row.flag("stamp_format_mixed")
    dif = p["dif"]
    if p["stamp_format"] == "counter":
        if dif is None or dif != (ap_c - on_c) % COUNTER_MODULUS + 1:
            row.flag("dif_inconsistent")
    elif dif is not None and dif == (ap_ms - on_ms) % 1000 + 1:
        row.flag("dif_in_milliseconds")
    else:
        row.flag("dif_inconsistent")
    tol = STAMP_TIME_TOLERANCE_FRAMES / cfg.nominal_fps + TIME_RESOLUTION_S + EPS
    clip_apex = p["apex_s"] - p["onset_s"]
    clip_off = p["offset_s"] - p["onset_s"]
    if (
        abs(_wall_span(on_wc, ap_wc) - clip_apex) > tol
        or abs(_wall_span(on_wc, off_wc) - clip_off) > tol
    ):
        row.flag("stamp_time_mismatch")


def _row_rate(row: _Row, cfg: CodingConfig) -> float | None:
    """Frames per wall-clock second from onset to offset of a counter row, or None."""
    p = row.parsed
    if p.get("stamp_format") != "counter":
        return None
    (on_wc, _, on_c), (off_wc, _, off_c) = p["onset_stamp"], p["offset_stamp"]
    span = _wall_span(on_wc, off_wc)
    frames = (off_c - on_c) % COUNTER_MODULUS
    # beyond one counter period (1000 frames) the modulo count would be ambiguous
    if span <= 0 or frames == 0 or span >= COUNTER_MODULUS / cfg.nominal_fps:
        return None
    return frames / span


# --------------------------------------------------------------------------- duplicates


def _same_expression_groups(rows: list[_Row], tolerance_s: float) -> dict[int, list[_Row]]:
    """Group codings of one expression: same subject and clip, overlapping intervals,
    onsets at most ``tolerance_s`` apart (identical onsets to 10 ms when 0); transitive."""
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_clip: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        by_clip.setdefault((r.name, r.marker), []).append(i)
    for idx in by_clip.values():
        idx = sorted(idx, key=lambda i: (rows[i].parsed["onset_s"], rows[i].source_row))
        for a_pos, a in enumerate(idx):
            pa = rows[a].parsed
            for b in idx[a_pos + 1 :]:
                pb = rows[b].parsed
                if pb["onset_s"] - pa["onset_s"] > tolerance_s + 0.005:
                    break
                if pb["onset_s"] <= pa["offset_s"] + EPS:
                    parent[find(b)] = find(a)
    groups: dict[int, list[_Row]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(find(i), []).append(r)
    for members in groups.values():
        members.sort(key=lambda r: r.source_row)
    return groups


def _resolve_duplicates(rows: list[_Row], policy: str, label: str, tolerance_s: float = 0.0) -> None:
    """Mark exact duplicates and resolve conflicting codings among rows still valid."""
    valid = [r for r in rows if not r.excl]
    seen: dict[tuple, _Row] = {}
    for r in valid:
        if r.raw_key in seen:
            r.exclude(
                "exact_duplicate", f"repeats {label} {seen[r.raw_key].source_row} in every column"
            )
        else:
            seen[r.raw_key] = r
    groups = _same_expression_groups([r for r in valid if not r.excl], tolerance_s)
    for members in groups.values():
        if len(members) < 2:
            continue
        rows_txt = ", ".join(str(m.source_row) for m in members)
        if policy == "keep_all":
            for m in members:
                m.flag("duplicate_kept")
            continue
        if policy == "drop":
            for m in members:
                m.exclude(
                    "duplicate_dropped",
                    f"conflicting codings of one expression (rows {rows_txt}), all dropped",
                )
            continue
        if policy == "first":
            winner = members[0]
            why = "an earlier row in file order"
        else:  # latest annotation date; ties and missing dates: the later row in the file
            winner = max(
                members,
                key=lambda m: (m.parsed["annotated_at"] is not None,
                               m.parsed["annotated_at"] or pd.Timestamp.min, m.source_row),
            )  # fmt: skip
            why = "a coding with a later annotation date"
        winner.flag("duplicate_kept")
        for m in members:
            if m is not winner:
                m.exclude(
                    "duplicate_superseded", f"superseded by {label} {winner.source_row} ({why})"
                )


def _flag_overlaps(kept: list[_Row]) -> None:
    by_clip: dict[tuple, list[_Row]] = {}
    for r in kept:
        by_clip.setdefault((r.name, r.marker), []).append(r)
    for members in by_clip.values():
        members = sorted(members, key=lambda r: r.parsed["onset_s"])
        end, end_row = -math.inf, None
        for r in members:
            if r.parsed["onset_s"] < end - EPS and end_row is not None:
                r.flag("overlaps_other_coding")
                end_row.flag("overlaps_other_coding")
            if r.parsed["offset_s"] > end:
                end, end_row = r.parsed["offset_s"], r


# --------------------------------------------------------------------------- main entry


def _load_table(path: Path) -> tuple[list[str], list[tuple[int, list[Any]]]]:
    if not path.exists():
        raise CodingFileError(f"Coding file not found: {path}")
    if not path.is_file():
        raise CodingFileError(f"Coding file is not a file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        header, rows = _read_xlsx(path)
    elif suffix in (".csv", ".txt", ".tsv"):
        header, rows = _read_csv(path)
    else:
        raise CodingFileError(
            f"{path}: unsupported coding file type {suffix!r} (expected .xlsx or .csv)"
        )
    if not header:
        raise CodingFileError(f"{path}: the file is empty (no header row)")
    if not rows:
        raise CodingFileError(f"{path}: the file has a header but no data rows")
    return header, rows


def _column_index(path: Path, header: list[Any]) -> tuple[dict[str, int], bool]:
    """Map canonical column names to positions; raise if a required one is missing."""
    positions: dict[str, int] = {}
    for i, h in enumerate(header):
        if _is_blank(h):
            continue
        key = _norm_header(h)
        if key in positions:
            raise CodingFileError(f"{path}: column {_text(h)!r} appears more than once")
        positions[key] = i
    index: dict[str, int] = {}
    for col in (*REQUIRED_COLUMNS, KIND_COLUMN):
        key = _norm_header(col)
        if key in positions:
            index[col] = positions[key]
        elif col != KIND_COLUMN:
            raise CodingFileError(f"{path}: required column {col!r} is missing")
    return index, KIND_COLUMN in index


def read_coding(
    path: str | os.PathLike,
    config: CodingConfig | None = None,
    *,
    mapping: Mapping[str, str] | str | os.PathLike | None = None,
) -> CodingResult:
    """Read and validate an MMME coding file (xlsx or csv).

    Parameters
    ----------
    path : path-like
        The coding file (``.xlsx``/``.xlsm`` read with openpyxl, first sheet;
        ``.csv``/``.tsv``/``.txt`` in UTF-8 or GB18030). Never modified.
    config : CodingConfig | None
        Duplicate policy, ME/MaE rule, nominal frame rate and tolerances.
        None: the defaults.
    mapping : mapping | path-like | None
        Existing name -> pseudonym mapping (a dict or a CSV written by
        :func:`write_pseudonym_mapping`) to reuse; new names get the next
        free numbers.

    Returns
    -------
    result : CodingResult
        Kept expressions, the per-row report, the mapping, file name and hash.

    Raises
    ------
    CodingFileError
        If the file is missing, of an unsupported type, unreadable, empty, or
        lacks a required column (the message names the file and column).
        Problems of single rows never raise: they exclude or flag the row.
    """
    path = Path(path)
    cfg = config or CodingConfig()
    header, table = _load_table(path)
    index, has_kind = _column_index(path, header)
    given = (
        read_pseudonym_mapping(mapping)
        if isinstance(mapping, str | os.PathLike)
        else dict(mapping or {})
    )

    rows: list[_Row] = []
    for source_row, values in table:
        values = values + [None] * (len(header) - len(values))
        cells = {col: values[i] for col, i in index.items()}
        row = _Row(source_row=source_row, cells=cells)
        row.raw_key = tuple(_text(v) for v in values)
        _check_row(row, cfg, has_kind)
        rows.append(row)

    # pseudonyms: every non-empty name, ordered by first session date then name
    first_dates: dict[str, dt.date | None] = {}
    for r in rows:
        if r.name:
            fn = r.parsed.get("filename")
            d = fn["date"] if fn else None
            old = first_dates.get(r.name)
            first_dates[r.name] = d if old is None else (old if d is None else min(old, d))
    try:
        pseudo = _pseudonymise(first_dates, given)
    except ValueError as err:
        raise CodingFileError(f"{path}: {err}") from err

    # effective frame rate per subject, from every row that passed the row checks
    rates: dict[str, list[float]] = {}
    for r in rows:
        if not r.excl and (rate := _row_rate(r, cfg)) is not None:
            rates.setdefault(r.name, []).append(rate)
    fps = {name: float(np.median(v)) for name, v in rates.items()}
    for r in rows:
        f = fps.get(r.name)
        if not r.excl and f is not None and abs(f / cfg.nominal_fps - 1.0) > cfg.fps_tolerance:
            r.flag("fps_deviates")

    label = "Excel row" if path.suffix.lower() in (".xlsx", ".xlsm") else "csv line"
    _resolve_duplicates(rows, cfg.duplicate_policy, label, cfg.duplicate_onset_tolerance_s)
    kept = [r for r in rows if not r.excl]
    _flag_overlaps(kept)

    expressions = _expressions_frame(kept, pseudo, fps, cfg)
    ids = dict(zip(expressions["source_row"], expressions["expression_id"], strict=True))
    report = _report_frame(rows, pseudo, ids, label)
    result = CodingResult(
        expressions=expressions,
        report=report,
        mapping=pseudo,
        source=path.name,
        sha256=sha256_file(path),
    )
    n = result.counts()
    logger.info(
        "%s: %d rows, %d kept (%d flagged), %d excluded; %d ME, %d MaE; %d subjects",
        path.name, n["rows_in"], n["kept"], n["flagged"], n["excluded"], n["me"], n["mae"],
        expressions["subject"].nunique(),
    )  # fmt: skip
    if n["excluded"]:
        logger.info("%s: %d rows excluded (see the coding report)", path.name, n["excluded"])
    return result


def _kind(p: dict[str, Any], cfg: CodingConfig, row: _Row) -> tuple[str, str]:
    rule = cfg.me_rule
    short = p["offset_s"] - p["onset_s"] <= rule.max_duration_s + EPS
    fast = p["apex_s"] - p["onset_s"] <= rule.max_onset_to_apex_s + EPS
    by_rule = "ME" if ((short or fast) if rule.combine == "or" else (short and fast)) else "MaE"
    label = p.get("kind_label")
    if rule.use_column and label is not None:
        if label != by_rule:
            row.flag("kind_differs_from_rule")
        return label, "column"
    return by_rule, "rule"


def _expressions_frame(
    kept: list[_Row], pseudo: dict[str, str], fps: dict[str, float], cfg: CodingConfig
) -> pd.DataFrame:
    records = []
    used_ids: set[str] = set()
    for r in kept:
        p = r.parsed
        kind, kind_source = _kind(p, cfg, r)
        subject = pseudo[r.name]
        base = f"{subject}_m{r.marker}_t{int(round(p['onset_s'] * 1000)):06d}"
        eid, k = base, 0
        while eid in used_ids:
            k += 1
            eid = f"{base}_{_suffix(k)}"
        used_ids.add(eid)
        aus = p["aus"]
        regions = {AU_REGION[a] for a in aus if a in AU_REGION}
        on, ap, off = p["onset_stamp"], p["apex_stamp"], p["offset_stamp"]
        records.append(
            dict(
                expression_id=eid, source_row=r.source_row, subject=subject,
                session_date=pd.Timestamp(p["filename"]["date"]), marker=r.marker,
                clip_order=p["filename"]["clip_order"], clip_emotion=CLIP_EMOTION[r.marker],
                onset_s=p["onset_s"], apex_s=p["apex_s"], offset_s=p["offset_s"],
                duration_s=round(p["offset_s"] - p["onset_s"], 9),
                onset_to_apex_s=round(p["apex_s"] - p["onset_s"], 9),
                onset_wallclock_s=on[0], apex_wallclock_s=ap[0], offset_wallclock_s=off[0],
                onset_frame=on[2], apex_frame=ap[2], offset_frame=off[2],
                stamp_format=p["stamp_format"], aus=", ".join(f"AU{a}" for a in aus),
                n_aus=len(aus), au_regions=", ".join(x for x in _REGION_ORDER if x in regions),
                emotion=p["emotion"], composite_emotion=COMPOSITE_EMOTION.get(p["emotion"]),
                kind=kind, kind_source=kind_source, annotated_at=p["annotated_at"], dif=p["dif"],
                fps_effective=fps.get(r.name, np.nan), issues=";".join(r.flags),
            )
        )  # fmt: skip
    df = pd.DataFrame.from_records(records, columns=list(EXPRESSION_COLUMNS))
    df = df.astype(
        {"source_row": "int64", "marker": "int64", "clip_order": "int64", "n_aus": "int64",
         "onset_frame": "Int64", "apex_frame": "Int64", "offset_frame": "Int64", "dif": "Int64",
         "fps_effective": "float64", "onset_s": "float64", "apex_s": "float64", "offset_s": "float64",
         "duration_s": "float64", "onset_to_apex_s": "float64", "onset_wallclock_s": "float64",
         "apex_wallclock_s": "float64", "offset_wallclock_s": "float64"}
    )  # fmt: skip
    df["session_date"] = pd.to_datetime(df["session_date"])
    df["annotated_at"] = pd.to_datetime(df["annotated_at"])
    df["composite_emotion"] = (
        df["composite_emotion"].astype(object).where(df["composite_emotion"].notna(), None)
    )
    return df.sort_values("source_row", kind="stable").reset_index(drop=True)


def _suffix(k: int) -> str:
    """1 -> 'b', 2 -> 'c', ... 25 -> 'z', 26 -> 'z1' ..."""
    return chr(ord("a") + k) if k < 26 else f"z{k - 25}"


def _report_frame(
    rows: Iterable[_Row], pseudo: dict[str, str], ids: dict[int, str], label: str
) -> pd.DataFrame:
    records = []
    for r in rows:
        subject = pseudo.get(r.name, "") if r.name else ""
        if r.excl:
            status = "excluded"
            who = f" ({subject}, marker {r.marker})" if subject and r.marker else ""
            reason = f"{label} {r.source_row}{who}: " + "; ".join(r.reasons)
            issues = ";".join(r.excl + r.flags)
        else:
            status = "flagged" if r.flags else "ok"
            reason = ""
            issues = ";".join(r.flags)
        records.append(
            dict(source_row=r.source_row, subject=subject, marker=r.marker, status=status,
                 issues=issues, reason=reason, expression_id=ids.get(r.source_row, ""))
        )  # fmt: skip
    df = pd.DataFrame.from_records(records, columns=list(REPORT_COLUMNS))
    df["source_row"] = df["source_row"].astype("int64")
    df["marker"] = df["marker"].astype("Int64")
    return df
