"""Bad EEG channels a recording brings with it: non-finite values, flat channels, missing montage channels.

A recording can hold a channel that no filter may see (NaN or Inf samples: a
zero-phase FIR applied by FFT turns one NaN into a whole span of NaN, and ICA
refuses non-finite input), a channel that records nothing (constant: a
disconnected electrode) or lack a montage channel altogether. The BIDS
conversion finds them (:func:`scan_recording`, reading the recording in
chunks, so a 64-channel x 4.4 M-sample session never sits in memory as a
whole), marks them in ``channels.tsv`` (``status`` ``bad`` with the reason in
``status_description``: :func:`mark_channels_tsv`) and logs a warning naming
the file and the channel. Preprocessing (:mod:`mmme_neuro.preprocessing`)
reads the marks back (:func:`marked_bad`), zero-fills those channels before
any filter, finds non-finite samples the conversion did not mark, adds
missing scalp channels (:func:`add_missing_channels`) and interpolates them
all by spherical splines, or excludes the subject with the reason
(``preprocessing.bad_channels``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mne
import numpy as np
import pandas as pd

from .constants import EEG_CHANNELS, SCALP_CHANNELS

__all__ = [
    "FLAT_PTP_V",
    "MISSING",
    "SCAN_CHUNK_BYTES",
    "add_missing_channels",
    "as_records",
    "check_converted",
    "describe_bad",
    "mark_channels_tsv",
    "marked_bad",
    "missing_channels",
    "scalp_problems",
    "scan_recording",
]

logger = logging.getLogger(__name__)

#: Channel types scanned for non-finite and flat data (the stimulus channel is constant by design).
SCANNED_TYPES: tuple[str, ...] = ("eeg", "eog", "ecg", "emg")
#: A channel whose finite values span less than this (V, 1 nV) over the recording is flat.
FLAT_PTP_V = 1e-9
#: Bytes of float64 data read at a time by :func:`scan_recording` (64 MiB: 131072 samples of 64 channels).
SCAN_CHUNK_BYTES = 64 * 2**20
#: Description of a channel that is absent from the recording.
MISSING = "missing from the recording"


def _fmt_s(x: float) -> str:
    return f"{x:.1f}"


def scan_recording(raw: mne.io.BaseRaw, *, picks: Sequence[str] | None = None,
                   chunk_bytes: int = SCAN_CHUNK_BYTES) -> dict[str, str]:  # fmt: skip
    """Channels with non-finite values or constant data, and why, reading ``raw`` in chunks.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        The recording (preloaded or not: it is read with
        :meth:`~mne.io.Raw.get_data` ``chunk_bytes`` at a time and stays as it was).
    picks : sequence of str | None
        Channels to scan; default: every channel of type ``eeg``, ``eog``,
        ``ecg`` or ``emg`` (:data:`SCANNED_TYPES`).
    chunk_bytes : int
        Float64 bytes read per chunk (bounds the memory used).

    Returns
    -------
    bad : dict of str to str
        Channel -> description, in channel order, e.g. ``"non-finite values
        in 8.0 s (from 12.0 s)"`` (total duration of the non-finite samples,
        time of the first), ``"flat: constant over the recording"``; both
        joined by ``"; "`` when they meet. Empty for a clean recording.
    """
    if picks is None:
        picks = [c for c, t in zip(raw.ch_names, raw.get_channel_types(), strict=True) if t in SCANNED_TYPES]
    picks = list(picks)
    out: dict[str, str] = {}
    if not picks or raw.n_times == 0:
        return out
    n_ch = len(picks)
    step = max(1, int(chunk_bytes // (8 * n_ch)))
    n_bad = np.zeros(n_ch, dtype=np.int64)
    first = np.full(n_ch, -1, dtype=np.int64)
    lo = np.full(n_ch, np.inf)
    hi = np.full(n_ch, -np.inf)
    for start in range(0, raw.n_times, step):
        stop = min(raw.n_times, start + step)
        x = raw.get_data(picks=picks, start=start, stop=stop)
        finite = np.isfinite(x)
        if finite.all():
            np.minimum(lo, x.min(axis=1), out=lo)
            np.maximum(hi, x.max(axis=1), out=hi)
            continue
        rows = ~finite.all(axis=1)
        count = (~finite).sum(axis=1)
        new = rows & (first < 0)
        first[new] = start + np.argmax(~finite[new], axis=1)
        n_bad += count
        for i in np.flatnonzero(~rows):
            lo[i] = min(lo[i], x[i].min())
            hi[i] = max(hi[i], x[i].max())
        for i in np.flatnonzero(rows):
            v = x[i, finite[i]]
            if v.size:
                lo[i] = min(lo[i], v.min())
                hi[i] = max(hi[i], v.max())
        del x, finite
    sf = float(raw.info["sfreq"])
    for i, ch in enumerate(picks):
        why = []
        if n_bad[i]:
            if n_bad[i] == raw.n_times:
                why.append("non-finite values throughout the recording")
            else:
                why.append(f"non-finite values in {_fmt_s(n_bad[i] / sf)} s (from {_fmt_s(first[i] / sf)} s)")
        if n_bad[i] < raw.n_times and hi[i] - lo[i] < FLAT_PTP_V:
            why.append("flat: constant over the recording" if not n_bad[i] else "flat: constant elsewhere")
        if why:
            out[ch] = "; ".join(why)
    return out


def missing_channels(ch_names: Sequence[str], expected: Sequence[str] = EEG_CHANNELS) -> list[str]:
    """Montage channels (``expected``, default the Quik-Cap 64) absent from ``ch_names``, in montage order."""
    have = set(ch_names)
    return [c for c in expected if c not in have]


def describe_bad(channels: Mapping[str, str]) -> str:
    """``"PZ (non-finite values in 8.0 s (from 12.0 s)), CZ (missing from the recording)"``."""
    return ", ".join(f"{c} ({why})" for c, why in channels.items())


def mark_channels_tsv(path: str | os.PathLike, bad: Mapping[str, str]) -> list[str]:
    """Mark channels ``bad`` in a BIDS ``channels.tsv``: ``status`` ``bad``, ``status_description`` the reason.

    Not :func:`mne_bids.mark_channels`: in mne-bids 0.20 a list of
    descriptions raises ``UnboundLocalError`` (``write_descriptions`` is set
    only for a single string), and its rewrite of the whole table is not
    atomic. The file is edited as text (only the two fields of the named rows change;
    a ``status``/``status_description`` column is added if missing) and
    replaced atomically; nothing is written if ``bad`` is empty.

    Parameters
    ----------
    path : path-like
        The ``*_channels.tsv``.
    bad : mapping of str to str
        Channel -> description (tabs and newlines become spaces).

    Returns
    -------
    marked : list of str
        The channels of ``bad`` found in the file (others are not in the recording).
    """
    from ._utils import atomic_write_text

    if not bad:
        return []
    path = Path(path)
    lines = path.read_text(encoding="utf-8").split("\n")
    end = len(lines) if lines[-1] else len(lines) - 1
    header = lines[0].split("\t")
    for col in ("status", "status_description"):
        if col not in header:
            header.append(col)
            for k in range(1, end):
                lines[k] += "\t" + ("good" if col == "status" else "n/a")
    lines[0] = "\t".join(header)
    i_name, i_status, i_desc = header.index("name"), header.index("status"), header.index("status_description")
    marked = []
    for k in range(1, end):
        fields = lines[k].split("\t")
        if fields[i_name] in bad:
            fields[i_status] = "bad"
            fields[i_desc] = " ".join(str(bad[fields[i_name]]).split()) or "n/a"
            lines[k] = "\t".join(fields)
            marked.append(fields[i_name])
    atomic_write_text(path, "\n".join(lines))
    return marked


def _read_channels_tsv(path: Path) -> pd.DataFrame:
    """A ``channels.tsv`` as strings ("n/a" kept as text)."""
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def _channels_tsv_of(raw: mne.io.BaseRaw) -> Path | None:
    """The BIDS ``*_channels.tsv`` beside the recording's data file, if it is a BIDS file with one."""
    names = [f for f in (getattr(raw, "filenames", None) or ()) if f]
    if not names:
        return None
    data = Path(names[0])
    stem = data.name.split(".")[0]
    if "_" not in stem:
        return None
    cand = data.with_name(stem.rsplit("_", 1)[0] + "_channels.tsv")
    return cand if cand.is_file() else None


def marked_bad(raw: mne.io.BaseRaw) -> dict[str, str]:
    """Channels the recording marks bad (``raw.info["bads"]``), each with its ``status_description``.

    The description comes from the BIDS ``channels.tsv`` beside the data file
    (what the conversion wrote: :func:`mark_channels_tsv`); ``"marked bad in
    channels.tsv"`` when it has none.
    """
    bads = [c for c in raw.info["bads"] if c in raw.ch_names]
    if not bads:
        return {}
    desc: dict[str, str] = {}
    tsv = _channels_tsv_of(raw)
    if tsv is not None:
        try:
            table = _read_channels_tsv(tsv)
            if "status_description" in table:
                desc = dict(zip(table["name"], table["status_description"], strict=True))
        except (OSError, ValueError, KeyError):
            desc = {}
    return {c: desc[c] if desc.get(c) not in (None, "", "n/a") else "marked bad in channels.tsv" for c in bads}


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Scale, rotation and translation mapping the points ``src`` onto ``dst`` (least squares, Umeyama)."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_s, dst - mu_d
    u, s, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    e = np.diag([1.0, 1.0, d])
    rot = u @ e @ vt
    var = (a**2).sum()
    scale = float((s * np.diag(e)).sum() / var) if var > 0 else 1.0
    return scale, rot, mu_d - scale * rot @ mu_s


def add_missing_channels(raw: mne.io.BaseRaw, names: Sequence[str]) -> list[str]:
    """Add montage channels absent from ``raw`` as zero EEG channels marked bad, in montage order (in place).

    Their positions are the Quik-Cap 64 template's
    (:func:`mmme_neuro.montage.quikcap64_positions`) mapped into the
    recording's frame by the similarity transform that best maps the
    template onto the channels present (so digitised or template positions
    alike); interpolation (:meth:`mne.io.Raw.interpolate_bads`) then fills
    them. Each is inserted after the nearest present channel that precedes it
    in :data:`~mmme_neuro.constants.EEG_CHANNELS`, so every subject ends with
    the same channel order.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        Preloaded.
    names : sequence of str
        Channels of :data:`~mmme_neuro.constants.EEG_CHANNELS` to add (those
        already present are ignored).

    Returns
    -------
    added : list of str

    Raises
    ------
    ValueError
        If fewer than 4 present montage channels have positions to place them by.
    """
    from .montage import quikcap64_positions

    names = [c for c in names if c not in raw.ch_names]
    if not names:
        return []
    unknown = [c for c in names if c not in EEG_CHANNELS]
    if unknown:
        raise ValueError(f"cannot add {unknown}: not channels of the Quik-Cap 64 montage")
    template = quikcap64_positions()
    have = [c for c in EEG_CHANNELS if c in raw.ch_names]
    pos = {c: raw.info["chs"][raw.ch_names.index(c)]["loc"][:3] for c in have}
    ref = [c for c in have if np.all(np.isfinite(pos[c])) and np.any(pos[c] != 0)]
    if len(ref) < 4:
        raise ValueError(f"cannot place the missing channel(s) {', '.join(names)}: only {len(ref)} channels of the "
                         "recording have electrode positions")  # fmt: skip
    scale, rot, shift = _similarity(np.array([template[c] for c in ref]), np.array([pos[c] for c in ref]))
    info = mne.create_info(list(names), float(raw.info["sfreq"]), "eeg")
    for ch in info["chs"]:
        ch["loc"][:3] = scale * rot @ template[ch["ch_name"]] + shift
        ch["coord_frame"] = raw.info["chs"][raw.ch_names.index(ref[0])]["coord_frame"]
    with info._unlock():
        info["highpass"], info["lowpass"] = raw.info["highpass"], raw.info["lowpass"]
    extra = mne.io.RawArray(np.zeros((len(names), raw.n_times)), info, first_samp=raw.first_samp, verbose=False)
    extra.set_meas_date(raw.info["meas_date"])
    temp = raw.info.get("temp")
    raw.add_channels([extra], force_update_info=True)
    with raw.info._unlock():
        raw.info["temp"] = temp
    order = [c for c in raw.ch_names if c not in names]
    for c in names:  # after the nearest present predecessor in montage order
        k = EEG_CHANNELS.index(c)
        prev = next((p for p in reversed(EEG_CHANNELS[:k]) if p in order), None)
        order.insert(order.index(prev) + 1 if prev is not None else 0, c)
    raw.reorder_channels(order)
    raw.info["bads"] = sorted(set(raw.info["bads"]) | set(names), key=raw.ch_names.index)
    return list(names)


def scalp_problems(marked: Mapping[str, str], ch_names: Sequence[str], non_finite: Sequence[str] = ()) -> dict[str, str]:
    """Scalp channels that are bad in the recording: marked (with their reason), with non-finite values, missing."""
    out = {c: why for c, why in marked.items() if c in SCALP_CHANNELS}
    for c in non_finite:
        if c in SCALP_CHANNELS and c not in out:
            out[c] = "non-finite values"
    for c in missing_channels(ch_names, SCALP_CHANNELS):
        out[c] = MISSING
    return out


def as_records(bad: Mapping[str, str]) -> list[dict[str, Any]]:
    """``[{"channel", "reason"}]`` of a channel -> reason mapping."""
    return [{"channel": c, "reason": why} for c, why in bad.items()]


def check_converted(raw: mne.io.BaseRaw, channels_tsv: str | os.PathLike, label: str) -> dict[str, Any]:
    """What the BIDS conversion does about a recording's bad channels (:func:`mmme_neuro.bids.convert_session`).

    Scans ``raw`` (:func:`scan_recording`), marks what it finds in
    ``channels_tsv`` (:func:`mark_channels_tsv`) and logs one warning per bad
    or missing montage channel, naming ``label`` (the BIDS data file) and the
    channel.

    Returns
    -------
    issues : dict
        ``{"bad": [{"channel", "reason"}], "missing": [channel]}`` with only
        the non-empty entries ({} for a clean recording).
    """
    bad = scan_recording(raw)
    marked = mark_channels_tsv(channels_tsv, bad)
    for ch in marked:
        logger.warning("%s: channel %s marked bad in channels.tsv: %s", label, ch, bad[ch])
    missing = missing_channels(raw.ch_names)
    for ch in missing:
        logger.warning("%s: montage channel %s is %s (no row in channels.tsv; interpolated or the subject "
                       "excluded by the analyses, preprocessing.bad_channels)", label, ch, MISSING)  # fmt: skip
    out: dict[str, Any] = {}
    if bad:
        out["bad"] = as_records(bad)
    if missing:
        out["missing"] = missing
    return out
