"""Stimulus markers of EEG recordings: extraction, cleaning and an audit report.

The rules below are applied, in this order, to every marker found in a
recording. Each marker that does not end up in the ``events`` table gets one
row in the ``report`` table (``action == "dropped"``), so that::

    n_input_markers == len(events) + (report["action"] == "dropped").sum()

Rules
-----
``omitted_by_reader``
    The file's reader (e.g. MNE's EEGLAB reader) left the marker out because
    it lies outside the data range ("Omitted N annotation(s) that were
    outside data range", typically EEGLAB latency 0 -> sample index -1).
    :func:`mmme_neuro.io.eeg.read_eeg` records these at load time in
    ``raw.info["temp"]["mmme_neuro"]["omitted_annotations"]``; they are
    reported, never lost.
``non_numeric``
    The annotation description is not a marker code (``"boundary"``,
    ``"square"``, ``"rt"``, ``"Response/R  1"`` ...). Accepted numeric forms:
    ``"101"``, ``"S101"``, ``"S 101"``, ``"Stimulus/S101"``,
    ``"Stimulus/S 101"``, ``"Comment/101"`` (what ``mne.export`` writes to
    BrainVision), case-insensitive.
``out_of_range``
    Sample index negative or after the last sample of the data.
``invalid_code``
    Code outside ``valid_codes`` (default 1-255: the 8-bit parallel-port
    trigger range of Neuroscan amplifiers). Drops e.g. Curry's ``50000``
    trigger-off events and the code-0 end-of-file event of Neuroscan CNT.
``spurious``
    Code in ``spurious`` (default MMME's 77 and 88).
``duplicate``
    Same code as an already kept marker no more than ``dedup_window_s``
    seconds earlier (default 0.1 s): collapsed to the first one.
``unexpected_code`` (flag only)
    Code not in ``expected_codes`` when that is given; the marker is kept
    (``action == "kept"``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, Literal

import mne
import numpy as np
import pandas as pd

from ..constants import SPURIOUS_MARKERS

logger = logging.getLogger(__name__)

#: Key under ``raw.info["temp"]`` where :func:`mmme_neuro.io.eeg.read_eeg`
#: keeps what it learnt while reading (omitted markers, reader warnings, notes).
TEMP_KEY = "mmme_neuro"

#: Columns of the ``events`` table returned by :func:`read_eeg_markers`.
EVENT_COLUMNS: tuple[str, ...] = ("sample", "time_s", "code", "source")
#: Columns of the ``report`` table returned by :func:`read_eeg_markers`.
REPORT_COLUMNS: tuple[str, ...] = (
    "code", "sample", "time_s", "description", "source", "rule", "action", "detail",
)  # fmt: skip

#: Marker codes of Neuroscan parallel-port triggers (8 bit, 0 = no event).
DEFAULT_VALID_CODES = range(1, 256)

_CODE_RE = re.compile(r"^\s*(?:(?:stimulus|comment)\s*/\s*)?(?:s\s*)?(\d+)\s*$", re.IGNORECASE)

#: Samples of the stim channel read at a time (bounded memory on long files).
_STIM_CHUNK_SAMPLES = 1_000_000


def parse_marker_code(description: str) -> int | None:
    """Return the integer marker code in an annotation description, or None.

    Parameters
    ----------
    description : str
        Annotation description, e.g. ``"101"``, ``"S 101"``,
        ``"Stimulus/S101"``, ``"Comment/101"``.

    Returns
    -------
    code : int | None
        The code, or ``None`` if the description is not a marker code
        (``"boundary"``, ``"rt"``, ``"Response/R  1"`` ...).
    """
    match = _CODE_RE.match(str(description))
    return int(match.group(1)) if match else None


def _temp_store(raw: mne.io.BaseRaw) -> dict[str, Any]:
    temp = raw.info.get("temp")
    if isinstance(temp, dict) and isinstance(temp.get(TEMP_KEY), dict):
        return temp[TEMP_KEY]
    return {}


def _time_as_index(raw: mne.io.BaseRaw, times: np.ndarray, origin: Any) -> np.ndarray:
    """``raw.time_as_index(times, use_rounding=True, origin=origin)`` without building ``raw.times``.

    MNE subtracts ``raw.times[0]`` (always 0), which materialises the whole
    time vector on every call (35 MB for a full session; the first call in a
    process also loads MNE's numba helper: 0.35 s in all); the arithmetic is
    otherwise the same (test).
    """
    delta = 0.0
    if origin is not None:
        if raw.info["meas_date"] is None:
            raise ValueError(f'origin must be None when info["meas_date"] is None, got {origin}')
        delta = (origin - (raw.info["meas_date"] + timedelta(0, raw._first_time))).total_seconds()
    return np.round((np.atleast_1d(times) + delta) * raw.info["sfreq"]).astype(np.int64)


def _annotation_markers(raw: mne.io.BaseRaw) -> pd.DataFrame:
    annot = raw.annotations
    if len(annot) == 0:
        return pd.DataFrame(columns=["sample", "description"])
    # same convention as mne.events_from_annotations, then made relative to
    # the first sample of the data
    inds = _time_as_index(raw, annot.onset, annot.orig_time)
    if annot.orig_time is not None:
        inds = inds + raw.first_samp
    return pd.DataFrame(
        {"sample": inds - raw.first_samp, "description": [str(d) for d in annot.description]}
    )


def _pick_stim_channel(raw: mne.io.BaseRaw, stim_channel: str | None) -> str | None:
    if stim_channel is not None:
        if stim_channel not in raw.ch_names:
            raise ValueError(
                f"stim_channel={stim_channel!r} is not a channel of this recording; "
                f"channels typed 'stim': {_stim_names(raw)}"
            )
        return stim_channel
    names = _stim_names(raw)
    if not names:
        return None
    if len(names) > 1:
        preferred = [n for n in names if n.upper() in ("TRIGGER", "STI 014", "STATUS")]
        if len(preferred) != 1:
            raise ValueError(f"Several stim channels {names}: pass stim_channel= to choose one.")
        return preferred[0]
    return names[0]


def _stim_names(raw: mne.io.BaseRaw) -> list[str]:
    return [raw.ch_names[i] for i in mne.pick_types(raw.info, stim=True, exclude=[])]


def stim_channel_markers(raw: mne.io.BaseRaw, stim_channel: str) -> pd.DataFrame:
    """Find the transitions to a non-zero value of a stim channel.

    The channel is read in chunks of 10**6 samples, so long recordings are
    never loaded whole. A non-zero value at the first sample counts as a
    transition (from an implicit 0).

    Parameters
    ----------
    raw : mne.io.BaseRaw
        Recording (preloaded or not).
    stim_channel : str
        Name of the stim channel. Its values are rounded to integers.

    Returns
    -------
    markers : pandas.DataFrame
        Columns ``sample`` (int, relative to the first sample) and ``code``
        (int), one row per transition ``v[i-1] != v[i] != 0``.
    """
    idx = raw.ch_names.index(stim_channel)
    samples: list[np.ndarray] = []
    codes: list[np.ndarray] = []
    previous = 0
    for start in range(0, raw.n_times, _STIM_CHUNK_SAMPLES):
        stop = min(start + _STIM_CHUNK_SAMPLES, raw.n_times)
        values = np.rint(raw.get_data(picks=[idx], start=start, stop=stop)[0]).astype(np.int64)
        prev = np.concatenate([[previous], values[:-1]])
        onsets = np.flatnonzero((values != prev) & (values != 0))
        samples.append(onsets + start)
        codes.append(values[onsets])
        previous = int(values[-1])
    sample = np.concatenate(samples) if samples else np.zeros(0, np.int64)
    code = np.concatenate(codes) if codes else np.zeros(0, np.int64)
    return pd.DataFrame({"sample": sample.astype(np.int64), "code": code.astype(np.int64)})


def read_eeg_markers(
    raw: mne.io.BaseRaw,
    *,
    source: Literal["auto", "annotations", "stim_channel"] = "auto",
    stim_channel: str | None = None,
    dedup_window_s: float | None = 0.1,
    spurious: Iterable[int] = SPURIOUS_MARKERS,
    valid_codes: Iterable[int] | None = DEFAULT_VALID_CODES,
    expected_codes: Iterable[int] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Extract clean stimulus markers from a recording, with an audit report.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        Recording, e.g. from :func:`mmme_neuro.io.eeg.read_eeg`. Not modified.
    source : {"auto", "annotations", "stim_channel"}
        Where markers come from. ``"auto"`` uses the annotations if the
        recording has any (or had markers omitted by the reader), otherwise
        the stim channel; never both, which would count every marker twice.
    stim_channel : str | None
        Stim channel to read; by default the only channel of type ``stim``
        (or the one named Trigger/STI 014/Status among several).
    dedup_window_s : float | None
        Markers with the same code as a kept marker at most this many
        seconds (s) later are duplicates. ``None`` disables the rule.
    spurious : iterable of int
        Codes dropped as spurious (MMME: 77, 88).
    valid_codes : iterable of int | None
        Codes accepted as markers (default 1-255). ``None`` accepts all.
    expected_codes : iterable of int | None
        If given, kept markers with another code are flagged in the report
        (``rule="unexpected_code"``, ``action="kept"``).

    Returns
    -------
    events : pandas.DataFrame
        One row per kept marker, sorted by sample: ``sample`` (int, samples
        from the first sample of the data), ``time_s`` (float, s, from the
        first sample), ``code`` (int), ``source`` (``"annotation"`` or
        ``"stim_channel"``).
    report : pandas.DataFrame
        One row per dropped or flagged marker: ``code`` (nullable int),
        ``sample`` (nullable int), ``time_s``, ``description`` (original
        text), ``source``, ``rule``, ``action`` (``"dropped"`` or ``"kept"``),
        ``detail``. See the module docstring for the rules.

    Raises
    ------
    ValueError
        On invalid arguments, or if ``source="stim_channel"`` and the
        recording has no stim channel.
    """
    if not isinstance(raw, mne.io.BaseRaw):
        raise TypeError(f"raw must be an mne.io.BaseRaw, got {type(raw).__name__}")
    if source not in ("auto", "annotations", "stim_channel"):
        raise ValueError(
            f"Invalid source={source!r}; expected 'auto', 'annotations' or 'stim_channel'."
        )
    if dedup_window_s is not None and (
        not np.isfinite(dedup_window_s) or float(dedup_window_s) < 0
    ):
        raise ValueError(f"dedup_window_s must be >= 0 seconds or None, got {dedup_window_s!r}")
    spurious_set = {int(c) for c in spurious}
    valid_set = None if valid_codes is None else {int(c) for c in valid_codes}
    expected_set = None if expected_codes is None else {int(c) for c in expected_codes}
    sfreq = float(raw.info["sfreq"])
    last = raw.n_times - 1
    omitted = list(_temp_store(raw).get("omitted_annotations", []))

    if source == "auto":
        source = "annotations" if (len(raw.annotations) or omitted) else "stim_channel"
        if source == "stim_channel" and _pick_stim_channel(raw, stim_channel) is None:
            source = "annotations"  # nothing anywhere: empty result
    report_rows: list[dict[str, Any]] = []

    def _report(code, sample, description, src, rule, action, detail):
        report_rows.append(
            {
                "code": code,
                "sample": sample,
                "time_s": np.nan if sample is None else sample / sfreq,
                "description": description,
                "source": src,
                "rule": rule,
                "action": action,
                "detail": detail,
            }
        )

    if source == "annotations":
        src = "annotation"
        for item in omitted:
            desc = item.get("description")
            sample = item.get("sample")
            code = None if desc is None else parse_marker_code(desc)
            _report(
                code, sample, desc, src, "omitted_by_reader", "dropped",
                item.get("detail", "left out by the file reader (outside the data range)"),
            )  # fmt: skip
        table = _annotation_markers(raw)
        table["code"] = [parse_marker_code(d) for d in table["description"]]
    else:
        src = "stim_channel"
        name = _pick_stim_channel(raw, stim_channel)
        if name is None:
            raise ValueError("source='stim_channel' but the recording has no stim channel.")
        table = stim_channel_markers(raw, name)
        table["description"] = [str(c) for c in table["code"]]
        logger.info("Read %d transitions from stim channel %s", len(table), name)

    kept: list[tuple[int, int]] = []
    last_kept: dict[int, int] = {}
    for sample, desc, code in zip(
        table["sample"], table["description"], table["code"], strict=True
    ):
        sample = int(sample)
        if code is None or (isinstance(code, float) and np.isnan(code)):
            _report(None, sample, desc, src, "non_numeric", "dropped", "not a marker code")
            continue
        code = int(code)
        if sample < 0 or sample > last:
            _report(code, sample, desc, src, "out_of_range", "dropped",
                    f"sample outside [0, {last}]")  # fmt: skip
            continue
        if valid_set is not None and code not in valid_set:
            _report(code, sample, desc, src, "invalid_code", "dropped",
                    "code outside the accepted trigger codes")  # fmt: skip
            continue
        if code in spurious_set:
            _report(code, sample, desc, src, "spurious", "dropped", "known spurious marker")
            continue
        if dedup_window_s is not None and code in last_kept:
            gap_s = (sample - last_kept[code]) / sfreq
            if gap_s <= dedup_window_s + 0.5 / sfreq:
                _report(code, sample, desc, src, "duplicate", "dropped",
                        f"{gap_s * 1e3:.1f} ms after the kept marker at sample "
                        f"{last_kept[code]}")  # fmt: skip
                continue
        last_kept[code] = sample
        kept.append((sample, code))
        if expected_set is not None and code not in expected_set:
            _report(code, sample, desc, src, "unexpected_code", "kept", "not an expected code")

    events = pd.DataFrame(
        {
            "sample": np.array([s for s, _ in kept], dtype=np.int64),
            "time_s": np.array([s / sfreq for s, _ in kept], dtype=float),
            "code": np.array([c for _, c in kept], dtype=np.int64),
            "source": pd.Series([src] * len(kept), dtype=object),
        },
        columns=list(EVENT_COLUMNS),
    )
    events = events.sort_values("sample", kind="stable").reset_index(drop=True)
    report = pd.DataFrame(report_rows, columns=list(REPORT_COLUMNS))
    report["code"] = pd.array(report["code"].tolist(), dtype="Int64")
    report["sample"] = pd.array(report["sample"].tolist(), dtype="Int64")
    report["time_s"] = report["time_s"].astype(float)
    n_dropped = int((report["action"] == "dropped").sum())
    n_input = len(table) + (len(omitted) if source == "annotations" else 0)
    if n_input != len(events) + n_dropped:  # pragma: no cover - internal invariant
        raise RuntimeError(
            f"Marker bookkeeping is inconsistent: {n_input} in, {len(events)} kept, "
            f"{n_dropped} dropped."
        )
    logger.info(
        "Markers: %d in input, %d kept, %d dropped (%s)",
        n_input,
        len(events),
        n_dropped,
        report.loc[report["action"] == "dropped", "rule"].value_counts().to_dict(),
    )
    return events, report
