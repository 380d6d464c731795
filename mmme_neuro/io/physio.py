"""Readers of BIOPAC MP160 / AcqKnowledge physiology (MATLAB export, ``.acq``, CSV/TSV).

Every reader returns the same three things: an :class:`mne.io.RawArray` with
the analogue signals, a table of the stimulus markers decoded from the eight
digital lines, and an audit report of the markers that were dropped or flagged.

Channels
--------
Columns are recognised by their AcqKnowledge label, compared case- and
whitespace-insensitively with :data:`~mmme_neuro.constants.BIOPAC_LABELS`;
any subset and order of those columns is accepted. Known columns are renamed
to their short names (:data:`~mmme_neuro.constants.BIOPAC_SIGNALS`) and typed
with the most specific MNE (>= 1.6) channel type; data are stored in SI units
as MNE expects:

============  ===============  ===================  ===========================
short name    MNE type         unit in the file     stored as
============  ===============  ===================  ===========================
PPG           ``bio``          Volts                V
RSP           ``resp``         Volts                V
EMG_A/EMG_B   ``emg``          mV                   V   (x 1e-3)
SKT_A/SKT_B   ``temperature``  Deg C                °C
EDA           ``gsr``          microsiemens         S   (x 1e-6)
ECG           ``ecg``          mV                   V   (x 1e-3)
ECG_RATE      ``misc``         BPM                  beats/min (MNE unit: none)
============  ===============  ===================  ===========================

The conversion follows the unit text of the file (``units`` variable of the
MATLAB export, channel units of ``.acq``), falling back to
:data:`~mmme_neuro.constants.BIOPAC_UNITS`. Unrecognised columns are kept as
``misc`` channels named by their label, in the file's units. The unit of
every channel (``units``), the file's unit text (``source_units``) and the
scale applied (``scale``) are recorded in
``raw.info["temp"]["mmme_neuro"]["physio"]`` and, as text, in
``raw.info["description"]``.

The eight ``Digital (STP Input i)`` lines (0 or 5 V) are not kept as channels:
they are decoded into 8-bit marker codes (bit *i* = line *i*) by
:func:`decode_digital_lines`, see there for the settling rule.

Marker rules
------------
Applied in this order to every decoded code event. Every event that does
not end up in ``events`` gets one ``marker_report`` row with
``action == "dropped"``, so that ``n_decoded == len(events) + n_dropped``:

``glitch``
    The lines were non-zero for fewer than ``min_duration_samples`` samples.
``high_at_start``
    A code is already high at sample 0: the marker was sent before the
    recording started, its onset time is unknown, so it is dropped.
``spurious``
    Code 77 or 88 (:data:`~mmme_neuro.constants.SPURIOUS_MARKERS`).
``duplicate``
    Same code as a kept marker no more than ``dedup_window_s`` (0.1 s)
    earlier: collapsed to the first one.
``unknown_code`` (flag only)
    Code outside {100, 101..148}: kept (``action == "kept"``) and flagged.

Markers cannot lie outside the data here (they are read from the data).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mne
import numpy as np
import pandas as pd
from mne.io.constants import FIFF

from ..constants import (
    BIOPAC_LABELS,
    BIOPAC_SIGNALS,
    BIOPAC_UNITS,
    CLIP_MARKERS,
    DIGITAL_HIGH_V,
    REST_MARKER,
    SPURIOUS_MARKERS,
)

__all__ = [
    "EVENT_COLUMNS",
    "REPORT_COLUMNS",
    "PhysioReadError",
    "decode_digital_lines",
    "read_physio",
]

logger = logging.getLogger(__name__)

#: Key under ``raw.info["temp"]`` (shared with :mod:`mmme_neuro.io.markers`).
TEMP_KEY = "mmme_neuro"

#: Columns of the ``events`` table of :func:`read_physio`.
EVENT_COLUMNS: tuple[str, ...] = ("sample", "time_s", "code")
#: Columns of the ``marker_report`` table of :func:`read_physio`.
REPORT_COLUMNS: tuple[str, ...] = ("code", "sample", "time_s", "rule", "action", "detail")

#: Codes the MMME paradigm sends (rest + 48 clips); others are flagged ``unknown_code``.
KNOWN_CODES: frozenset[int] = frozenset({REST_MARKER, *CLIP_MARKERS})

#: Number of digital lines of the MP160 STP input (one 8-bit code).
N_DIGITAL_LINES = 8

#: Relative tolerance between a given ``sfreq`` and the file's sampling interval.
_SFREQ_RTOL = 1e-6

#: MAT-file variables read by :func:`read_physio` (nothing else is loaded).
_MAT_VARIABLES = ("data", "labels", "units", "isi", "isi_units", "start_sample")


class PhysioReadError(ValueError):
    """A physiology file cannot be read; the message names the file and the problem."""


# --------------------------------------------------------------------------- units and types

#: Normalised unit text -> (SI unit stored, scale factor, offset): si = raw * scale + offset.
_UNIT_CONVERSIONS: dict[str, tuple[str, float, float]] = {
    "v": ("V", 1.0, 0.0),
    "volt": ("V", 1.0, 0.0),
    "volts": ("V", 1.0, 0.0),
    "mv": ("V", 1e-3, 0.0),
    "millivolts": ("V", 1e-3, 0.0),
    "uv": ("V", 1e-6, 0.0),
    "µv": ("V", 1e-6, 0.0),
    "microvolts": ("V", 1e-6, 0.0),
    "microsiemens": ("S", 1e-6, 0.0),
    "µs": ("S", 1e-6, 0.0),
    "us": ("S", 1e-6, 0.0),
    "µmho": ("S", 1e-6, 0.0),
    "umho": ("S", 1e-6, 0.0),
    "micromho": ("S", 1e-6, 0.0),
    "siemens": ("S", 1.0, 0.0),
    "degc": ("°C", 1.0, 0.0),
    "°c": ("°C", 1.0, 0.0),
    "celsius": ("°C", 1.0, 0.0),
    "degf": ("°C", 5.0 / 9.0, -32.0 * 5.0 / 9.0),
    "°f": ("°C", 5.0 / 9.0, -32.0 * 5.0 / 9.0),
    "bpm": ("BPM", 1.0, 0.0),
}

#: SI unit MNE expects for each channel type used here.
_MNE_TYPE_UNIT = {"bio": "V", "resp": "V", "emg": "V", "ecg": "V", "gsr": "S", "temperature": "°C"}

#: Short name -> MNE channel type.
_SIGNAL_TYPES: dict[str, str] = {
    "PPG": "bio",
    "RSP": "resp",
    "EMG_A": "emg",
    "EMG_B": "emg",
    "SKT_A": "temperature",
    "SKT_B": "temperature",
    "EDA": "gsr",
    "ECG": "ecg",
    "ECG_RATE": "misc",
}

_DIGITAL_RE = re.compile(r"^digital.*?(\d+)\)?$")


def _norm(text: str) -> str:
    """Label/unit comparison key: lower case, no whitespace."""
    return re.sub(r"\s+", "", str(text)).lower()


_KNOWN_LABELS = {_norm(label): label for label in BIOPAC_LABELS}
_DEFAULT_UNITS = dict(zip(BIOPAC_LABELS, BIOPAC_UNITS, strict=True))


# --------------------------------------------------------------------------- digital lines


def _code_from_columns(columns: Sequence[np.ndarray], threshold_v: float) -> np.ndarray:
    """Combine up to 8 line columns (V) into one uint8 code per sample (bit i = line i)."""
    n = len(columns[0])
    code = np.zeros(n, dtype=np.uint8)
    high = np.empty(n, dtype=bool)
    for bit, col in enumerate(columns):
        np.greater(col, threshold_v, out=high)
        np.bitwise_or(code, np.uint8(1 << bit), out=code, where=high)
    return code


def _events_from_code(
    code: np.ndarray, min_duration_samples: int, settle_samples: int
) -> pd.DataFrame:
    """Events of a per-sample code vector; see :func:`decode_digital_lines`."""
    n = code.size
    rows: list[tuple[int, int, int, str]] = []
    if n:
        change = np.flatnonzero(code[1:] != code[:-1]) + 1
        starts = np.concatenate([[0], change]).astype(np.int64)
        ends = np.concatenate([change, [n]]).astype(np.int64)
        vals = code[starts].astype(np.int64)
        lens = ends - starts
        nonzero = vals != 0
        r = 0
        n_runs = len(vals)
        while r < n_runs:
            if not nonzero[r]:
                r += 1
                continue
            first = r
            while r + 1 < n_runs and nonzero[r + 1]:
                r += 1
            last = r
            r += 1
            p_start, p_end = int(starts[first]), int(ends[last])
            status = "high_at_start" if p_start == 0 else "ok"
            if p_end - p_start < min_duration_samples:
                code_or = int(np.bitwise_or.reduce(vals[first : last + 1]))
                rows.append((p_start, code_or, p_end - p_start, "glitch"))
                continue
            stable = [k for k in range(first, last + 1) if lens[k] > settle_samples]
            if not stable:
                code_or = int(np.bitwise_or.reduce(vals[first : last + 1]))
                rows.append((p_start, code_or, p_end - p_start, status))
                continue
            pulse_events: list[list[Any]] = []
            prev = None
            for k in stable:
                if prev is None:
                    pulse_events.append([p_start, int(vals[k]), 0, status])
                elif vals[k] != vals[prev]:
                    pulse_events.append([int(ends[prev]), int(vals[k]), 0, "ok"])
                prev = k
            for i, ev in enumerate(pulse_events):
                stop = pulse_events[i + 1][0] if i + 1 < len(pulse_events) else p_end
                ev[2] = stop - ev[0]
                rows.append(tuple(ev))
    out = pd.DataFrame(rows, columns=["sample", "code", "n_samples", "status"])
    return out.astype(
        {"sample": np.int64, "code": np.int64, "n_samples": np.int64, "status": object}
    )


def decode_digital_lines(
    lines: np.ndarray,
    *,
    threshold_v: float = DIGITAL_HIGH_V / 2,
    min_duration_samples: int = 1,
    settle_samples: int = 2,
) -> pd.DataFrame:
    """Decode the 8 digital lines of a BIOPAC STP input into marker code events.

    Parameters
    ----------
    lines : ndarray, shape (n_samples, 8)
        Line voltages (V); column *i* is ``Digital (STP Input i)`` = bit *i*
        of the code. Fewer than 8 columns are read as the low bits.
    threshold_v : float
        A line is high when its voltage is strictly above this (V); default
        half of the 5-V high level.
    min_duration_samples : int
        Pulses (runs of non-zero code) shorter than this many samples are
        returned with ``status == "glitch"`` instead of as markers.
    settle_samples : int
        Longest transitional state (samples): a code held for more than
        this many samples is *stable*.

    Returns
    -------
    events : pandas.DataFrame
        One row per code event, sorted by sample: ``sample`` (int, first
        sample of the event), ``code`` (int, 1-255), ``n_samples`` (int,
        samples until the lines return to 0 or the next event), ``status``
        (``"ok"``; ``"high_at_start"`` if the code is already high at sample
        0; ``"glitch"`` for a pulse shorter than ``min_duration_samples``).

    Notes
    -----
    Settling rule. The code of a sample is ``sum(2**i * (line_i > threshold_v))``.
    A *pulse* is a maximal run of samples with a non-zero code; it starts
    an event at its first sample (the rising transition). The 8 lines do
    not switch at exactly the same instant, so a pulse may pass through
    transitional codes (e.g. 4 -> 36 -> 32 -> 0 for code 36):

    - a pulse in which no code is held for more than ``settle_samples``
      samples yields one event whose code is the bitwise OR of its codes
      (every line of the code rose at some point of the pulse);
    - otherwise the first stable code is the event's code (transitional
      codes before it are the rising edge, those after the last stable code
      the falling edge), and each later *change* of stable code within the
      same pulse (a new code written without returning to 0) is a new event
      at the first sample after the previous stable code.
    """
    lines = np.asarray(lines)
    if lines.ndim != 2 or not 1 <= lines.shape[1] <= N_DIGITAL_LINES:
        raise ValueError(f"lines must have shape (n_samples, 1..8), got {lines.shape}")
    if not np.isfinite(threshold_v):
        raise ValueError(f"threshold_v must be finite (V), got {threshold_v!r}")
    if int(min_duration_samples) < 1 or int(settle_samples) < 0:
        raise ValueError(
            f"min_duration_samples must be >= 1 and settle_samples >= 0, got "
            f"{min_duration_samples!r} and {settle_samples!r}"
        )
    if lines.size and np.isnan(lines).any():
        raise ValueError("lines contain NaN: the marker code is undefined there")
    code = _code_from_columns([lines[:, i] for i in range(lines.shape[1])], float(threshold_v))
    return _events_from_code(code, int(min_duration_samples), int(settle_samples))


def _apply_marker_rules(
    decoded: pd.DataFrame, sfreq: float, dedup_window_s: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply the module's marker rules to decoded events -> (events, report)."""
    kept: list[tuple[int, int]] = []
    report: list[dict[str, Any]] = []
    last_kept: dict[int, int] = {}

    def _rep(code: int, sample: int, rule: str, action: str, detail: str) -> None:
        report.append(dict(code=code, sample=sample, time_s=sample / sfreq, rule=rule,
                           action=action, detail=detail))  # fmt: skip

    for sample, code, n_samples, status in decoded.itertuples(index=False, name=None):
        sample, code = int(sample), int(code)
        if status == "glitch":
            _rep(code, sample, "glitch", "dropped", f"lines high for only {n_samples} sample(s)")
            continue
        if status == "high_at_start":
            _rep(code, sample, "high_at_start", "dropped",
                 "code already high at the first sample: onset before the recording")  # fmt: skip
            continue
        if code in SPURIOUS_MARKERS:
            _rep(code, sample, "spurious", "dropped", "known spurious marker")
            continue
        if code in last_kept:
            gap_s = (sample - last_kept[code]) / sfreq
            if gap_s <= dedup_window_s + 0.5 / sfreq:
                _rep(code, sample, "duplicate", "dropped",
                     f"{gap_s * 1e3:.1f} ms after the kept marker at sample {last_kept[code]}")  # fmt: skip
                continue
        last_kept[code] = sample
        kept.append((sample, code))
        if code not in KNOWN_CODES:
            _rep(code, sample, "unknown_code", "kept", "not 100 or 101-148")
    events = pd.DataFrame(
        {
            "sample": np.array([s for s, _ in kept], dtype=np.int64),
            "time_s": np.array([s / sfreq for s, _ in kept], dtype=float),
            "code": np.array([c for _, c in kept], dtype=np.int64),
        },
        columns=list(EVENT_COLUMNS),
    )
    rep = pd.DataFrame(report, columns=list(REPORT_COLUMNS))
    rep = rep.astype({"code": np.int64, "sample": np.int64, "time_s": float})
    n_dropped = int((rep["action"] == "dropped").sum())
    assert len(decoded) == len(events) + n_dropped, "marker bookkeeping is inconsistent"
    return events, rep


# --------------------------------------------------------------------------- file formats


def _mat_strings(value: Any) -> list[str]:
    """Strings of a MATLAB char matrix or cell array as loaded by scipy."""
    arr = np.asarray(value)
    if arr.dtype.kind == "U":
        if arr.ndim == 0:
            return [str(arr).rstrip()]
        return [str(s).rstrip() for s in arr.reshape(-1)]
    if arr.dtype == object:
        return [
            str(np.asarray(v).reshape(-1)[0]).rstrip() if np.asarray(v).size else ""
            for v in arr.reshape(-1)
        ]
    raise TypeError(f"not a char matrix or cell array of strings (dtype {arr.dtype})")


def _mat_scalar(value: Any) -> float:
    arr = np.asarray(value, dtype=float).reshape(-1)
    if arr.size != 1:
        raise TypeError(f"expected a scalar, got {arr.size} values")
    return float(arr[0])


def _read_mat(path: Path) -> dict[str, Any]:
    """Load the AcqKnowledge export variables (MAT v5; v7.3 via h5py)."""
    import scipy.io

    try:
        with open(path, "rb") as fh:
            head = fh.read(128)
    except OSError as err:
        raise PhysioReadError(f"{path}: cannot open the file ({err})") from err
    if len(head) < 128:
        raise PhysioReadError(f"{path}: not a MATLAB .mat file (only {len(head)} bytes)")
    if head[:19] == b"MATLAB 7.3 MAT-file" or head[:8] == b"\x89HDF\r\n\x1a\n":
        return _read_mat_v73(path)
    try:
        mat = scipy.io.loadmat(
            path, variable_names=_MAT_VARIABLES, squeeze_me=False, chars_as_strings=True
        )
    except Exception as err:  # scipy raises many types on corrupt/truncated files
        raise PhysioReadError(
            f"{path}: cannot read the MATLAB file, truncated or corrupt? "
            f"({type(err).__name__}: {err})"
        ) from err
    return mat


def _read_mat_v73(path: Path) -> dict[str, Any]:
    """MATLAB v7.3 (HDF5) export: arrays are stored transposed, chars as uint16."""
    try:
        import h5py
    except ImportError as err:  # pragma: no cover - h5py is a dependency
        raise PhysioReadError(f"{path}: MATLAB v7.3 (HDF5) file and h5py is not installed") from err
    out: dict[str, Any] = {}
    try:
        with h5py.File(path, "r") as f:
            for name in _MAT_VARIABLES:
                if name not in f:
                    continue
                ds = f[name]
                if not isinstance(ds, h5py.Dataset):
                    raise TypeError(f"variable {name!r} is not a plain array")
                value = ds[()]
                if ds.attrs.get("MATLAB_class", b"") in (b"char", "char"):
                    value = np.array(["".join(map(chr, row)) for row in np.atleast_2d(value).T])
                else:
                    value = np.asarray(value).T
                out[name] = value
    except PhysioReadError:
        raise
    except Exception as err:
        raise PhysioReadError(
            f"{path}: cannot read the MATLAB v7.3 (HDF5) file ({type(err).__name__}: {err})"
        ) from err
    return out


def _load_mat(path: Path) -> tuple[np.ndarray, list[str] | None, list[str] | None, float, dict]:
    mat = _read_mat(path)
    if "data" not in mat:
        raise PhysioReadError(f"{path}: no 'data' variable (not an AcqKnowledge MATLAB export?)")
    data = mat["data"]
    if not isinstance(data, np.ndarray) or data.dtype.kind not in "fiub":
        raise PhysioReadError(f"{path}: 'data' is not a numeric matrix")
    if data.ndim != 2 or data.shape[0] == 0 or data.shape[1] == 0:
        raise PhysioReadError(f"{path}: 'data' must be a non-empty n_samples x n_channels matrix, "
                              f"got shape {data.shape}")  # fmt: skip
    labels = units = None
    try:
        if "labels" in mat:
            labels = _mat_strings(mat["labels"])
        if "units" in mat:
            units = _mat_strings(mat["units"])
    except TypeError as err:
        raise PhysioReadError(f"{path}: unreadable 'labels'/'units' ({err})") from err
    if "isi" not in mat:
        raise PhysioReadError(f"{path}: no 'isi' (sample interval) variable; cannot know the rate")
    try:
        isi = _mat_scalar(mat["isi"])
        isi_units = (
            _mat_strings(mat["isi_units"])[0].strip().lower() if "isi_units" in mat else "ms"
        )
        start_sample = int(_mat_scalar(mat["start_sample"])) if "start_sample" in mat else 0
    except (TypeError, ValueError, IndexError) as err:
        raise PhysioReadError(
            f"{path}: unreadable 'isi'/'isi_units'/'start_sample' ({err})"
        ) from err
    factor = {
        "ms": 1e-3,
        "msec": 1e-3,
        "s": 1.0,
        "sec": 1.0,
        "seconds": 1.0,
        "us": 1e-6,
        "µs": 1e-6,
    }
    if isi_units not in factor:
        raise PhysioReadError(f"{path}: unknown isi_units {isi_units!r} (expected 'ms' or 's')")
    if not np.isfinite(isi) or isi <= 0:
        raise PhysioReadError(f"{path}: invalid sample interval isi={isi!r} {isi_units}")
    sfreq = 1.0 / (isi * factor[isi_units])
    meta = {"isi": isi, "isi_units": isi_units, "start_sample": start_sample}
    if data.dtype != np.float64:
        data = data.astype(np.float64)
    return data, labels, units, sfreq, meta


def _load_acq(path: Path) -> tuple[list[np.ndarray], list[str], list[str], float, dict]:
    import bioread

    try:
        datafile = bioread.read_file(str(path))
    except Exception as err:
        raise PhysioReadError(
            f"{path}: cannot read the AcqKnowledge file ({type(err).__name__}: {err})"
        ) from err
    sfreq = float(datafile.samples_per_second)
    columns, labels, units = [], [], []
    for ch in datafile.channels:
        divider = int(getattr(ch, "frequency_divider", 1) or 1)
        data = ch.upsampled_data if divider > 1 else ch.data
        if divider > 1:
            logger.info("%s: channel %r upsampled from %.6g Hz (nearest neighbour)",
                        path, ch.name, sfreq / divider)  # fmt: skip
        columns.append(np.asarray(data, dtype=np.float64))
        labels.append(str(ch.name))
        units.append(str(ch.units))
    if not columns:
        raise PhysioReadError(f"{path}: the AcqKnowledge file has no channels")
    lengths = {len(c) for c in columns}
    if len(lengths) > 1:
        n = min(lengths)
        logger.warning("%s: channels have different lengths %s; truncated to %d samples",
                       path, sorted(lengths), n)  # fmt: skip
        columns = [c[:n] for c in columns]
    return columns, labels, units, sfreq, {"format_detail": "acq"}


def _load_text(path: Path, sfreq: float | None) -> tuple[np.ndarray, list[str], float, dict]:
    if sfreq is None:
        raise PhysioReadError(
            f"{path}: CSV/TSV files carry no sampling rate; pass sfreq= (Hz), e.g. sfreq=1000.0"
        )
    sep = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
    try:
        frame = pd.read_csv(path, sep=sep, header=0)
    except Exception as err:
        raise PhysioReadError(f"{path}: cannot parse the {sep!r}-separated file ({err})") from err
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise PhysioReadError(f"{path}: no data rows/columns below the header row")
    try:
        data = frame.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise PhysioReadError(f"{path}: non-numeric values in the data rows ({err})") from err
    return data, [str(c) for c in frame.columns], float(sfreq), {"separator": sep}


# --------------------------------------------------------------------------- assembly


def _classify(label: str) -> tuple[str, str, int | None]:
    """Label -> (channel name, MNE type or 'digital', digital line index)."""
    canonical = _KNOWN_LABELS.get(_norm(label))
    if canonical is not None:
        if canonical in BIOPAC_SIGNALS:
            name = BIOPAC_SIGNALS[canonical]
            return name, _SIGNAL_TYPES[name], None
        match = _DIGITAL_RE.match(_norm(canonical))
        return canonical, "digital", int(match.group(1))  # type: ignore[union-attr]
    match = _DIGITAL_RE.match(_norm(label))
    if match and int(match.group(1)) < N_DIGITAL_LINES:
        return label.strip(), "digital", int(match.group(1))
    return label.strip(), "misc", None


def _unit_conversion(
    path: Path, name: str, ch_type: str, unit_text: str
) -> tuple[str, float, float]:
    conv = _UNIT_CONVERSIONS.get(_norm(unit_text).replace(".", ""))
    if conv is None:
        if unit_text.strip():
            logger.warning("%s: unknown unit %r of channel %s; data kept unscaled",
                           path, unit_text, name)  # fmt: skip
        return unit_text.strip(), 1.0, 0.0
    return conv


def _assemble(
    path: Path,
    columns: Sequence[np.ndarray],
    labels: Sequence[str],
    units: Sequence[str] | None,
    sfreq: float,
    meta: dict,
    *,
    threshold_v: float,
    min_duration_samples: int,
    settle_samples: int,
    dedup_window_s: float,
) -> tuple[mne.io.RawArray, pd.DataFrame, pd.DataFrame]:
    if units is not None and len(units) != len(columns):
        raise PhysioReadError(f"{path}: {len(units)} units for {len(columns)} data columns")
    n = len(columns[0])
    if n == 0:
        raise PhysioReadError(f"{path}: no samples")
    if any(len(c) != n for c in columns):
        raise PhysioReadError(f"{path}: columns have different lengths")
    if not np.isfinite(sfreq) or sfreq <= 0:
        raise PhysioReadError(f"{path}: invalid sampling rate {sfreq!r} Hz")
    norm_labels = [_norm(label) for label in labels]
    dupes = sorted(
        {label for label, k in zip(labels, norm_labels, strict=True) if norm_labels.count(k) > 1}
    )
    if dupes:
        raise PhysioReadError(f"{path}: duplicated column labels {dupes}")

    analog: list[tuple[int, str, str, str, tuple[str, float, float]]] = []
    digital: dict[int, int] = {}
    for j, label in enumerate(labels):
        name, ch_type, line = _classify(label)
        col = columns[j]
        n_nan = int(np.count_nonzero(np.isnan(col)))
        if n_nan == n:
            raise PhysioReadError(f"{path}: column {label!r} is entirely NaN")
        if ch_type == "digital":
            if n_nan:
                raise PhysioReadError(f"{path}: digital line {label!r} has {n_nan} NaN samples: "
                                      "the marker codes are undefined there")  # fmt: skip
            digital[line] = j  # type: ignore[index]
            continue
        if n_nan:
            logger.warning("%s: column %r has %d NaN samples (kept)", path, label, n_nan)
        canonical = _KNOWN_LABELS.get(_norm(label))
        unit_text = units[j] if units is not None else _DEFAULT_UNITS.get(canonical or "", "")
        analog.append(
            (j, name, ch_type, unit_text, _unit_conversion(path, name, ch_type, unit_text))
        )
    if not analog:
        raise PhysioReadError(f"{path}: no signal columns (only digital lines?) in {list(labels)}")
    if digital and len(digital) != N_DIGITAL_LINES:
        missing = sorted(set(range(N_DIGITAL_LINES)) - set(digital))
        raise PhysioReadError(
            f"{path}: digital lines {missing} are missing; the 8-bit marker codes cannot be decoded"
        )

    # markers
    if digital:
        line_cols = [columns[digital[i]] for i in range(N_DIGITAL_LINES)]
        for i, col in enumerate(line_cols):
            top = float(np.max(col))
            if 0.5 < top <= threshold_v:
                logger.warning("%s: digital line %d peaks at %.3g V, never above the %.3g-V "
                               "threshold: is it scaled differently?", path, i, top, threshold_v)  # fmt: skip
        code = _code_from_columns(line_cols, threshold_v)
        decoded = _events_from_code(code, min_duration_samples, settle_samples)
        del code, line_cols
    else:
        logger.warning("%s: no digital lines: no markers", path)
        decoded = _events_from_code(np.zeros(0, np.uint8), 1, 2)
    events, report = _apply_marker_rules(decoded, sfreq, dedup_window_s)

    # signals, in SI units: one (n_channels, n_samples) array
    data = np.empty((len(analog), n), dtype=np.float64)
    names, types, units_si, source_units, scales = [], [], {}, {}, {}
    for k, (j, name, ch_type, unit_text, (si, scale, offset)) in enumerate(analog):
        data[k] = columns[j]
        if scale != 1.0:
            data[k] *= scale
        if offset != 0.0:
            data[k] += offset
        names.append(name)
        types.append(ch_type)
        units_si[name] = si
        source_units[name] = unit_text
        scales[name] = [scale, offset]
    if len(set(names)) != len(names):
        raise PhysioReadError(f"{path}: several columns map to the same channel name: {names}")
    info = mne.create_info(names, sfreq, types, verbose=False)
    for ch, ch_type in zip(info["chs"], types, strict=True):
        if _MNE_TYPE_UNIT.get(ch_type) != units_si[ch["ch_name"]]:
            ch["unit"] = FIFF.FIFF_UNIT_NONE  # unit not what MNE assumes: see the units note
    store = {
        "source_file": str(path),
        "units": units_si,
        "source_units": source_units,
        "scale": scales,
        "labels": list(labels),
        "marker_counts": {
            "decoded": len(decoded),
            "kept": len(events),
            "dropped": int((report["action"] == "dropped").sum()),
        },
        **meta,
    }
    info["description"] = "mmme_neuro physiology; " + json.dumps(
        {"units": units_si, "source_units": source_units},
        ensure_ascii=False,
    )
    info["temp"] = {TEMP_KEY: {"physio": store}}
    raw = mne.io.RawArray(data, info, copy="auto", verbose=False)
    del data
    if len(events):
        raw.set_annotations(
            mne.Annotations(
                onset=events["sample"].to_numpy() / sfreq,
                duration=np.zeros(len(events)),
                description=[str(c) for c in events["code"]],
            )
        )
    logger.info(
        "%s: %d channels x %d samples at %g Hz; markers: %d decoded, %d kept, %d dropped %s",
        path, len(names), n, sfreq, len(decoded), len(events), store["marker_counts"]["dropped"],
        report.loc[report["action"] == "dropped", "rule"].value_counts().to_dict(),
    )  # fmt: skip
    return raw, events, report


def read_physio(
    path: str | os.PathLike,
    *,
    sfreq: float | None = None,
    labels: Sequence[str] | None = None,
    preload: bool = True,
    threshold_v: float = DIGITAL_HIGH_V / 2,
    min_duration_samples: int = 1,
    settle_samples: int = 2,
    dedup_window_s: float = 0.1,
) -> tuple[mne.io.RawArray, pd.DataFrame, pd.DataFrame]:
    """Read a BIOPAC physiology recording and decode its stimulus markers.

    Parameters
    ----------
    path : path-like
        ``.mat`` (AcqKnowledge "Save as MATLAB" export: ``data``,
        ``labels``, ``units``, ``isi``, ``isi_units``, ``start_sample``;
        MAT v5, or v7.3/HDF5 read with h5py; only these variables are loaded),
        ``.acq`` (native AcqKnowledge, read with :mod:`bioread`) or
        ``.csv``/``.tsv``/``.txt`` (one header row of labels; comma for
        ``.csv``, tab otherwise).
    sfreq : float | None
        Sampling rate (Hz). Required for CSV/TSV. For ``.mat``/``.acq`` it
        is checked against the file (relative tolerance 1e-6).
    labels : sequence of str | None
        Column labels to use instead of the file's (one per data column),
        e.g. for a ``.mat`` export without ``labels``. Without either, a
        17-column ``.mat`` is assumed to be in
        :data:`~mmme_neuro.constants.BIOPAC_LABELS` order.
    preload : bool
        Must be True: the data are always loaded (:class:`mne.io.RawArray`).
    threshold_v : float
        Voltage above which a digital line is high (V).
    min_duration_samples : int
        Shortest marker pulse (samples); shorter ones are reported as ``glitch``.
    settle_samples : int
        Longest transitional code while the lines settle (samples); see
        :func:`decode_digital_lines`.
    dedup_window_s : float
        Same-code markers within this many seconds (s) of a kept one are duplicates.

    Returns
    -------
    raw : mne.io.RawArray
        Analogue channels in SI units (see the module docstring), digital
        lines removed; kept markers as annotations (``description`` = the code
        as a string, onset in s from the first sample, duration 0). Units and
        provenance in ``raw.info["temp"]["mmme_neuro"]["physio"]``.
    events : pandas.DataFrame
        Kept markers: ``sample`` (int, from the first sample of the file),
        ``time_s`` (float, ``sample / sfreq``, s, physiology clock), ``code`` (int).
        The export's ``start_sample`` (index of the first exported sample in
        the AcqKnowledge recording) is kept in the metadata, not added.
    marker_report : pandas.DataFrame
        One row per dropped or flagged marker: ``code``, ``sample``,
        ``time_s``, ``rule`` (``glitch``, ``high_at_start``, ``spurious``,
        ``duplicate``, ``unknown_code``), ``action`` (``dropped``/``kept``),
        ``detail``.

    Raises
    ------
    PhysioReadError
        Naming the file: unreadable/truncated file, wrong shapes, label and
        column count mismatch, all-NaN columns, NaN on digital lines,
        incomplete digital lines, ``sfreq`` missing (CSV) or different from
        the file's sample interval.
    """
    path = Path(path)
    if not preload:
        raise ValueError("read_physio(preload=False) is not supported: the data are always loaded")
    if sfreq is not None and (not np.isfinite(sfreq) or sfreq <= 0):
        raise PhysioReadError(f"{path}: sfreq must be a positive number of Hz, got {sfreq!r}")
    if not path.is_file():
        raise PhysioReadError(f"{path}: no such file")
    suffix = path.suffix.lower()
    kwargs = dict(threshold_v=float(threshold_v), min_duration_samples=int(min_duration_samples),
                  settle_samples=int(settle_samples), dedup_window_s=float(dedup_window_s))  # fmt: skip
    if suffix == ".mat":
        data, file_labels, units, file_sfreq, meta = _load_mat(path)
        meta["format"] = "acqknowledge_mat"
        columns: Sequence[np.ndarray] = [data[:, j] for j in range(data.shape[1])]
    elif suffix == ".acq":
        columns, file_labels, units, file_sfreq, meta = _load_acq(path)
        meta["format"] = "acqknowledge_acq"
        data = None
    elif suffix in (".csv", ".tsv", ".txt"):
        data, file_labels, file_sfreq, meta = _load_text(path, sfreq)
        units = None
        meta["format"] = "text"
        columns = [data[:, j] for j in range(data.shape[1])]
    else:
        raise PhysioReadError(f"{path}: unsupported file type {suffix!r} (.mat, .acq, .csv, .tsv)")

    n_cols = len(columns)
    if labels is not None:
        labels = [str(label) for label in labels]
        if len(labels) != n_cols:
            raise PhysioReadError(f"{path}: {len(labels)} labels given for {n_cols} data columns")
    elif file_labels is not None:
        labels = file_labels
        if len(labels) != n_cols:
            raise PhysioReadError(
                f"{path}: {len(labels)} labels but {n_cols} data columns "
                "(transposed 'data' or a truncated export?)"
            )
    elif n_cols == len(BIOPAC_LABELS):
        labels = list(BIOPAC_LABELS)
        logger.warning(
            "%s: no labels in the file; assuming the 17 MMME BIOPAC columns in order", path
        )
    else:
        raise PhysioReadError(
            f"{path}: no labels and {n_cols} columns (not the 17 MMME columns); pass labels="
        )
    if sfreq is not None and abs(float(sfreq) - file_sfreq) > _SFREQ_RTOL * file_sfreq:
        raise PhysioReadError(
            f"{path}: sfreq={sfreq} Hz given but the file's sample interval means {file_sfreq:.9g} Hz"
        )
    try:
        return _assemble(path, columns, labels, units, file_sfreq, meta, **kwargs)
    finally:
        del columns, data
