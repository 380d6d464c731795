"""Write a synthetic MMME coding file from a study design.

The rows reproduce the conventions of the real MMME coding file (see
:mod:`mmme_neuro.io.coding`): ``Filename`` is
``<emotion>_<clip order>_<marker>_<name>_<yyyymmdd>.avi``, clip-relative times
in seconds with 2 decimals, camera wall-clock frame stamps in the two formats
``HH-MM-SS-mmm-ccc`` (frame counter at 150 fps, modulo 1000) and
``HH-MM-SS-mmm``, ``dif`` computed the authors' way for each format, and the
annotation ``Date`` in Chinese format (2024). Conflicting second codings are
planted with an earlier annotation date, so a reader that keeps the latest
coding recovers the planted truth.
"""

from __future__ import annotations

import datetime
import datetime as dt
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .._utils import atomic_path
from ..constants import AU_REGION, CAMERA_FPS
from .design import SubjectDesign

__all__ = ["CODING_COLUMNS", "TRUTH_COLUMNS", "coding_rows", "write_coding_file"]

#: The 13 columns of the public MMME coding file, in its order.
CODING_COLUMNS: tuple[str, ...] = (
    "Subject", "Filename", "Marker", "OnsetTime", "ApexTime", "OffsetTime", "OnsetFrame",
    "ApexFrame", "OffsetFrame", "Action Units", "Estimated Emotion", "Date", "dif",
)  # fmt: skip

#: Ground-truth columns returned by :func:`coding_rows` but not written to the file.
TRUTH_COLUMNS: tuple[str, ...] = (
    "expr_id", "is_true_coding", "kind", "recorded", "stamp_format", "eeg_onset_s",
)  # fmt: skip

_COUNTER_MODULUS = 1000
#: Annotation dates of the synthetic codings (the real file: May to August 2024).
_ANNOTATION_START = dt.datetime(2024, 5, 1, 9, 0)
_ANNOTATION_DAYS = 120


def _frame_index(t_eeg: float, fps: float) -> int:
    """Camera frame index (frames since camera start) shown at EEG time ``t_eeg`` (s)."""
    return int(round(t_eeg * fps))


def _stamp(camera_start: dt.datetime, frame: int, fps: float, counter: bool) -> tuple[str, int]:
    """Frame stamp ``HH-MM-SS-mmm[-ccc]`` of a camera frame, and its milliseconds field."""
    t = camera_start + dt.timedelta(milliseconds=round(frame / fps * 1000.0))
    ms = t.microsecond // 1000
    text = f"{t:%H-%M-%S}-{ms:03d}"
    if counter:
        text += f"-{frame % _COUNTER_MODULUS:03d}"
    return text, ms


def _chinese_date(t: dt.datetime) -> str:
    """Annotation time in the coding file's format, e.g. ``2024年06月30日-14时31分``."""
    return f"{t.year:04d}年{t.month:02d}月{t.day:02d}日-{t.hour:02d}时{t.minute:02d}分"


def _annotation_time(rng: np.random.Generator, min_day: int = 0) -> dt.datetime:
    day = int(rng.integers(min_day, _ANNOTATION_DAYS))
    minute = int(rng.integers(0, 11 * 60))  # 09:00 to 20:00
    return _ANNOTATION_START + dt.timedelta(days=day, minutes=minute)


def _row(
    subject: SubjectDesign,
    clip_start_eeg: float,
    ex: pd.Series,
    onset: float,
    apex: float,
    offset: float,
    aus: str,
    annotated: dt.datetime,
    counter: bool,
    fps: float,
) -> dict:
    """One coding-file row (plus ground truth) of an expression coded with these times."""
    frames = [_frame_index(clip_start_eeg + t, fps) for t in (onset, apex, offset)]
    (on_txt, on_ms), (ap_txt, ap_ms), (off_txt, _) = (
        _stamp(subject.camera_start, f, fps, counter) for f in frames
    )
    if counter:
        dif = (frames[1] - frames[0]) % _COUNTER_MODULUS + 1
    else:  # the authors subtracted the last field: milliseconds
        dif = (ap_ms - on_ms) % 1000 + 1
    filename = (
        f"{ex.clip_emotion}_{int(ex.clip_order)}_{int(ex.marker)}_{subject.name}_"
        f"{subject.session_date:%Y%m%d}.avi"
    )
    return {
        "Subject": subject.name,
        "Filename": filename,
        "Marker": int(ex.marker),
        "OnsetTime": round(onset, 2),
        "ApexTime": round(apex, 2),
        "OffsetTime": round(offset, 2),
        "OnsetFrame": on_txt,
        "ApexFrame": ap_txt,
        "OffsetFrame": off_txt,
        "Action Units": aus,
        "Estimated Emotion": str(ex.emotion),
        "Date": _chinese_date(annotated),
        "dif": int(dif),
        "expr_id": str(ex.expr_id),
        "kind": str(ex.kind),
        "recorded": bool(ex.recorded),
        "stamp_format": "counter" if counter else "ms",
        "eeg_onset_s": float(ex.eeg_onset_s),
    }


def _conflicting_coding(
    rng: np.random.Generator, onset: float, apex: float, offset: float, aus: str
) -> tuple[float, float, str]:
    """Apex, offset and AUs of a second coding: same onset, different apex/offset/AUs."""
    new_offset = round(offset + float(rng.uniform(0.05, 0.3)), 2)
    for _ in range(20):
        new_apex = round(apex + float(rng.choice([-1, 1])) * float(rng.uniform(0.02, 0.12)), 2)
        if onset < new_apex <= new_offset and new_apex != apex:
            break
    else:
        new_apex = round(min(apex + 0.03, new_offset), 2)
    present = {int(a.strip()[2:]) for a in aus.split(",") if a.strip()}
    extra = [a for a in AU_REGION if a not in present]
    numbers = sorted(present | {int(rng.choice(extra))})
    return new_apex, new_offset, ", ".join(f"AU{a}" for a in numbers)


def coding_rows(
    subject: SubjectDesign,
    rng: np.random.Generator,
    *,
    n_double_codings: int = 1,
    counter_fraction: float = 0.7,
) -> pd.DataFrame:
    """Coding-file rows of a subject's planted expressions.

    Parameters
    ----------
    subject : SubjectDesign
        The subject; every planted expression gives one row, also those of
        clips with ``recorded == False`` (the coding file lists them).
    rng : numpy.random.Generator
        Random stream (stamp formats, annotation dates, double codings);
        the same stream gives the same rows.
    n_double_codings : int
        Number of expressions coded a second time with the same onset but a
        different apex, offset and AUs and an earlier annotation date
        (at most the number of expressions).
    counter_fraction : float
        Fraction of rows whose stamps carry the camera frame counter
        (``HH-MM-SS-mmm-ccc``); the others use ``HH-MM-SS-mmm``.

    Returns
    -------
    rows : pandas.DataFrame
        The 13 :data:`CODING_COLUMNS` plus the ground truth
        :data:`TRUTH_COLUMNS`: ``expr_id`` (planted expression),
        ``is_true_coding`` (False for the planted conflicting codings),
        ``kind``, ``recorded``, ``stamp_format``, ``eeg_onset_s`` (s).
        Ordered like the real file: by clip emotion, clip order, then onset.
    """
    if not 0.0 <= counter_fraction <= 1.0:
        raise ValueError(f"counter_fraction must be in [0, 1], got {counter_fraction}")
    if n_double_codings < 0:
        raise ValueError(f"n_double_codings must be >= 0, got {n_double_codings}")
    fps = CAMERA_FPS
    clip_start = dict(zip(subject.clips.marker, subject.clips.eeg_start_s, strict=True))
    ex_all = subject.expressions
    n = len(ex_all)
    counters = rng.random(n) < counter_fraction
    n_double = min(n_double_codings, n)
    doubled = set(rng.choice(n, size=n_double, replace=False).tolist()) if n_double else set()

    rows = []
    for i, ex in enumerate(ex_all.itertuples(index=False)):
        start = float(clip_start[int(ex.marker)])
        annotated = _annotation_time(rng, min_day=30 if i in doubled else 0)
        true_row = _row(subject, start, ex, ex.onset_s, ex.apex_s, ex.offset_s, ex.aus,
                        annotated, bool(counters[i]), fps)  # fmt: skip
        rows.append({**true_row, "is_true_coding": True})
        if i in doubled:
            apex, offset, aus = _conflicting_coding(rng, ex.onset_s, ex.apex_s, ex.offset_s, ex.aus)
            earlier = annotated - dt.timedelta(
                days=int(rng.integers(1, 30)), minutes=int(rng.integers(1, 600))
            )
            second = _row(subject, start, ex, ex.onset_s, apex, offset, aus, earlier,
                          bool(rng.random() < counter_fraction), fps)  # fmt: skip
            rows.append({**second, "is_true_coding": False})
    columns = [*CODING_COLUMNS, *TRUTH_COLUMNS]
    df = pd.DataFrame(rows, columns=columns)
    if len(df):
        df = df.sort_values(["Estimated Emotion", "Marker", "OnsetTime"], kind="stable")
        order = df.Filename.str.split("_").str[1].astype(int)
        df = (
            df.assign(_o=order)
            .sort_values(["Estimated Emotion", "_o"], kind="stable")
            .drop(columns="_o")
        )
    return df.reset_index(drop=True)


def write_coding_file(rows: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write coding rows as an MMME coding xlsx, atomically.

    Only the 13 :data:`CODING_COLUMNS` are written, in the real file's order,
    on one sheet ``Sheet1``; ground-truth columns are left out.

    Parameters
    ----------
    rows : pandas.DataFrame
        Rows from :func:`coding_rows` (concatenated over subjects).
    path : path-like
        Destination ``.xlsx``.

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    ValueError
        If a coding column is missing from ``rows``.
    """
    import openpyxl

    missing = [c for c in CODING_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"coding rows lack the columns {missing}")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(list(CODING_COLUMNS))
    for rec in rows[list(CODING_COLUMNS)].itertuples(index=False):
        ws.append([_cell(v) for v in rec])
    # fixed document dates and zip entry times: the same rows give the same bytes
    wb.properties.created = wb.properties.modified = _FIXED_TIME
    with atomic_path(path) as tmp:
        wb.save(tmp)
        _normalise_zip_times(tmp)
    return Path(path)


_FIXED_TIME = datetime.datetime(2024, 1, 1)


def _normalise_zip_times(path: Path) -> None:
    """Rewrite a zip (xlsx) in place with every entry dated 1980-01-01.

    openpyxl stamps the save time into ``docProps/core.xml`` (``modified``)
    and into the zip entries; both are replaced by fixed values.
    """
    import re
    import zipfile

    with zipfile.ZipFile(path) as zin:
        entries = [(info, zin.read(info)) for info in zin.infolist()]
    with zipfile.ZipFile(path, "w") as zout:
        for info, data in entries:
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>2024-01-01T00:00:00Z", data)
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = info.external_attr
            zout.writestr(fixed, data)


def _cell(value: object) -> object:
    """Plain Python value for openpyxl (numpy scalars unwrapped)."""
    if isinstance(value, np.generic):
        return value.item()
    return value
