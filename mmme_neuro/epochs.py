"""Expression-locked epochs (ME, MaE) and no-expression controls (NE), with EMG measures.

Pipeline of :func:`make_epochs` (one session):

1. **plan** (:func:`plan_epochs`): one epoch per coded expression, aligned to
   its onset (default), apex or offset; NE control epochs drawn from the same
   clips (:func:`draw_ne_centers`).
2. **preprocess** only the padded segments around these epochs
   (:mod:`mmme_neuro.preprocessing`).
3. **EMG measures** (:func:`emg_measures`) at the native rate: the analysis
   low-pass (45 Hz) would remove the EMG band, so the EMG and temporal channels
   are read again, on their own, in *short* spans around each epoch (padding =
   half the EMG notch/band-pass FIR, ~3.4 s, not the ~17 s of the EEG
   high-pass), notch-filtered and band-passed to ``config.emg.band``.
4. **epoch + reject**: epochs cut from the cleaned segments (already at
   ``resample_sfreq``: the EEG spans are low-passed and decimated as they are
   read, see :mod:`mmme_neuro.preprocessing`), baseline-corrected, rejected by
   peak-to-peak / flat amplitude on EEG channels (µV) with the reason named.

Every expression of the input appears exactly once in the metadata, kept or
rejected with a reason (the bookkeeping invariant); expressions excluded
upstream (ingestion exclusions) are the caller's to list.
"""

from __future__ import annotations

import logging
import re
import zlib
from typing import Any

import mne
import numpy as np
import pandas as pd

from ._utils import time_to_sample
from .channels import marked_bad, scalp_problems
from .config import Config, EmgConfig, EpochConfig, RejectionConfig
from .constants import CLIP_EMOTION, SCALP_CHANNELS
from .containers import provenance
from .preprocessing import (
    BadChannelsError,
    PreprocessOptions,
    _read_decimated,
    _read_map,
    check_recording_bads,
    decimation_factor,
    filter_pad_s,
    filter_spans,
    fir_kernel,
    fitted_ica,
    get_segment_map,
    notch_kernel,
    preprocess_segments,
    read_segments,
    recording_bads,
)
from .rejection import _too_few_epochs, autoreject_epochs

__all__ = [
    "CONDITIONS",
    "METADATA_COLUMNS",
    "apply_min_count",
    "bookkeeping_table",
    "draw_ne_centers",
    "emg_measures",
    "emg_summary",
    "epochs_from_session",
    "equalize_counts",
    "exclusion_counts",
    "first_level",
    "from_clean",
    "planned_config",
    "make_epochs",
    "plan_epochs",
    "subjects_for_contrast",
]

logger = logging.getLogger(__name__)

#: Epoch conditions and their MNE event codes.
CONDITIONS: dict[str, int] = {"ME": 1, "MaE": 2, "NE": 3}

#: Columns of the epoch metadata, in order.
METADATA_COLUMNS: tuple[str, ...] = (
    "epoch_id", "subject", "condition", "expression_id", "matched_expression_id", "marker",
    "clip_emotion", "emotion", "aus", "duration_s", "onset_to_apex_s", "eeg_onset_sample",
    "align", "landmark_sample", "landmark_s", "emg_window_s", "emg_rms_uv", "emg_rms_baseline_uv",
    "emg_rms_log_ratio", "emg_temporal_power", "emg_temporal_power_baseline",
    "emg_temporal_power_log_ratio", "ptp_max_uv", "rejected", "reason", "kept",
)  # fmt: skip

_EXPR_COLUMNS = ("expression_id", "kind", "marker", "eeg_onset_s", "eeg_offset_s")
_CLIP_COLUMNS = ("marker", "eeg_time_s", "end_time_s")
_MIN_EMG_WINDOW_S = 0.5


# ----------------------------------------------------------------------------- helpers


def _rng(seed: int, subject: str, what: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(subject.encode()), zlib.crc32(what.encode())])


def _check_columns(df: pd.DataFrame, need: tuple[str, ...], name: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}")


def _subtract(free: list[tuple[int, int]], a: int, b: int) -> list[tuple[int, int]]:
    """Remove the integer interval [a, b] from inclusive integer intervals ``free``."""
    out = []
    for lo, hi in free:
        if b < lo or a > hi:
            out.append((lo, hi))
            continue
        if lo < a:
            out.append((lo, a - 1))
        if hi > b:
            out.append((b + 1, hi))
    return out


def _draw(free: list[tuple[int, int]], rng: np.random.Generator) -> int | None:
    """One integer uniformly from the union of inclusive intervals (None if empty)."""
    sizes = np.array([hi - lo + 1 for lo, hi in free], dtype=np.int64)
    total = int(sizes.sum())
    if total <= 0:
        return None
    u = int(rng.integers(total))
    k = int(np.searchsorted(np.cumsum(sizes), u, side="right"))
    return int(free[k][0] + u - (np.cumsum(sizes)[k - 1] if k else 0))


def _clip_bounds(clips: pd.DataFrame, recording_end_s: float) -> pd.DataFrame:
    """Clip start and end (s); a missing end is the next clip start or the recording end."""
    c = clips.sort_values("eeg_time_s").reset_index(drop=True).copy()
    nxt = c["eeg_time_s"].shift(-1).fillna(recording_end_s)
    c["end_s"] = c["end_time_s"].astype(float).fillna(nxt)
    c["clip_emotion"] = c["marker"].map(CLIP_EMOTION)
    return c


def _samples(ex: pd.DataFrame, landmark: str, sfreq: float) -> np.ndarray:
    """EEG sample (float, NaN if missing) of a landmark: ``eeg_<lm>_sample`` if given, else from seconds."""
    col = f"eeg_{landmark}_sample"
    if col in ex.columns:
        return pd.to_numeric(ex[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    t = pd.to_numeric(ex.get(f"eeg_{landmark}_s", pd.Series(np.nan, index=ex.index)), errors="coerce")
    t = t.to_numpy(dtype=float, na_value=np.nan)
    out = np.full(t.shape, np.nan)
    ok = np.isfinite(t)
    out[ok] = time_to_sample(t[ok], sfreq)
    return out


# ----------------------------------------------------------------------------- NE sampling


def draw_ne_centers(
    expressions: pd.DataFrame,
    clips: pd.DataFrame,
    config: Config,
    *,
    subject: str,
    sfreq: float,
    recording_end_s: float,
    avoid: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Draw no-expression (NE) epoch centres matched to the expressions in number and clip emotion.

    Parameters
    ----------
    expressions : pandas.DataFrame
        The subject's expressions (``expression_id``, ``marker``,
        ``eeg_onset_s``, ``eeg_offset_s``): one NE is drawn per expression.
    clips : pandas.DataFrame
        Clips on the EEG clock (``marker``, ``eeg_time_s``, ``end_time_s``).
    config : Config
        ``epochs`` (``tmin``, ``tmax``, ``ne_min_distance_s``) and ``seed``.
    subject : str
        Pseudonym (seeds the draw with ``config.seed``).
    sfreq : float
        EEG sampling rate (Hz): centres are whole samples.
    recording_end_s : float
        Duration of the recording (s); the end of a clip without rest marker.
    avoid : pandas.DataFrame | None
        Further coded intervals to keep away from (``eeg_onset_s``,
        ``eeg_offset_s``), e.g. codings dropped upstream.

    Returns
    -------
    ne : pandas.DataFrame
        ``matched_expression_id``, ``marker``, ``clip_emotion``,
        ``center_sample``, ``center_s``, ``from_other_clip`` (bool).
    report : dict
        ``n_requested``, ``n_drawn``, ``shortfall`` (per clip emotion) and
        ``from_other_clip`` counts.

    Notes
    -----
    Rules: a centre lies inside its clip, in ``[start - tmin, end - tmax]``
    (so the whole epoch is inside the clip); it is at least
    ``ne_min_distance_s`` from every coded interval ``[onset, offset]`` of the
    subject (all expressions given, plus ``avoid``); NE epochs do not overlap
    each other. Expressions are visited in time order; each one's NE is
    drawn uniformly from the free time of its own clip, or, if that clip has
    no room left, from the other clips of the same clip emotion; if none has
    room, the shortfall is reported. Deterministic for a given seed and subject.
    """
    ep = config.epochs
    d = ep.ne_min_distance_s
    clip_tab = _clip_bounds(clips, recording_end_s)
    win = int(np.ceil((ep.tmax - ep.tmin) * sfreq))
    forbid = [expressions[["eeg_onset_s", "eeg_offset_s"]]]
    if avoid is not None and len(avoid):
        _check_columns(avoid, ("eeg_onset_s", "eeg_offset_s"), "avoid")
        forbid.append(avoid[["eeg_onset_s", "eeg_offset_s"]])
    iv = pd.concat(forbid, ignore_index=True).dropna()
    on = iv["eeg_onset_s"].to_numpy(float)
    off = np.maximum(iv["eeg_offset_s"].to_numpy(float), on)
    f_lo = np.floor((on - d) * sfreq).astype(np.int64) + 1
    f_hi = np.ceil((off + d) * sfreq).astype(np.int64) - 1
    free: dict[int, list[tuple[int, int]]] = {}
    for r in clip_tab.itertuples():
        lo = int(np.ceil((r.eeg_time_s - ep.tmin) * sfreq - 1e-9))
        hi = int(np.floor((r.end_s - ep.tmax) * sfreq + 1e-9))
        fr = [(lo, hi)] if hi >= lo else []
        for a, b in zip(f_lo, f_hi, strict=True):
            fr = _subtract(fr, int(a), int(b))
        free[int(r.marker)] = fr
    emotion_of = dict(zip(clip_tab["marker"].astype(int), clip_tab["clip_emotion"], strict=True))
    rng = _rng(config.seed, subject, "ne")
    order = expressions.sort_values(["eeg_onset_s", "expression_id"], kind="stable")
    rows, short = [], {}
    for ex in order.itertuples():
        marker = int(ex.marker)
        emo = emotion_of.get(marker, CLIP_EMOTION.get(marker))
        own = free.get(marker, [])
        chosen, other = _draw(own, rng), False
        if chosen is None:
            pool = [(m, iv_) for m in sorted(free) if m != marker and emotion_of[m] == emo for iv_ in free[m]]
            pick = _draw([p[1] for p in pool], rng)
            if pick is not None:
                marker = next(m for m, (lo, hi) in pool if lo <= pick <= hi)
                chosen, other = pick, True
        if chosen is None:
            short[emo] = short.get(emo, 0) + 1
            continue
        for m in free:
            free[m] = _subtract(free[m], chosen - win + 1, chosen + win - 1)
        rows.append({"matched_expression_id": ex.expression_id, "marker": marker, "clip_emotion": emo,
                     "center_sample": chosen, "center_s": chosen / sfreq, "from_other_clip": other})  # fmt: skip
    ne = pd.DataFrame(rows, columns=["matched_expression_id", "marker", "clip_emotion", "center_sample",
                                     "center_s", "from_other_clip"])  # fmt: skip
    report = {
        "n_requested": len(expressions), "n_drawn": len(ne), "shortfall": short,
        "from_other_clip": int(ne["from_other_clip"].sum()) if len(ne) else 0,
        "min_distance_s": d, "seed": [config.seed, subject],
    }  # fmt: skip
    if short:
        logger.info("%s: NE shortfall (no room left in clips of that emotion): %s", subject, short)
    return ne, report


def plan_epochs(
    expressions: pd.DataFrame,
    clips: pd.DataFrame,
    config: Config,
    *,
    subject: str,
    sfreq: float,
    recording_end_s: float,
    avoid: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per planned epoch: every expression, then the NE controls.

    Parameters
    ----------
    expressions, clips, config, subject, sfreq, recording_end_s, avoid
        See :func:`draw_ne_centers`; ``expressions`` also needs
        ``eeg_<align>_s`` for the configured landmark.

    Returns
    -------
    plan : pandas.DataFrame
        The identity columns of :data:`METADATA_COLUMNS`, in time order
        (``landmark_sample`` is on the original EEG clock; a missing landmark
        sorts last and has ``reason`` set).
    ne_report : dict
        See :func:`draw_ne_centers`.
    """
    align = config.epochs.align
    ex = expressions.reset_index(drop=True)
    lm = _samples(ex, align, sfreq)
    plan = pd.DataFrame({
        "subject": subject,
        "condition": ex["kind"].astype(str).to_numpy(),
        "expression_id": ex["expression_id"].astype(str).to_numpy(),
        "matched_expression_id": None,
        "marker": ex["marker"].astype(int).to_numpy(),
        "clip_emotion": ex["marker"].map(CLIP_EMOTION).to_numpy(),
        "emotion": ex.get("emotion", pd.Series(None, index=ex.index, dtype=object)).to_numpy(),
        "aus": ex.get("aus", pd.Series(None, index=ex.index, dtype=object)).to_numpy(),
        "duration_s": ex.get("duration_s", ex["eeg_offset_s"] - ex["eeg_onset_s"]).astype(float).to_numpy(),
        "onset_to_apex_s": ex.get("onset_to_apex_s", pd.Series(np.nan, index=ex.index)).astype(float).to_numpy(),
        "eeg_onset_sample": _samples(ex, "onset", sfreq),
        "landmark_sample": lm,
        "reason": np.where(np.isfinite(lm), "", f"missing_{align}"),
    })  # fmt: skip
    bad_kind = ~plan["condition"].isin(["ME", "MaE"])
    plan.loc[bad_kind & (plan["reason"] == ""), "reason"] = "unknown_kind"
    ne, ne_report = draw_ne_centers(expressions, clips, config, subject=subject, sfreq=sfreq,
                                    recording_end_s=recording_end_s, avoid=avoid)  # fmt: skip
    ne_plan = pd.DataFrame({
        "subject": subject, "condition": "NE", "expression_id": None,
        "matched_expression_id": ne["matched_expression_id"].to_numpy(),
        "marker": ne["marker"].astype(int).to_numpy(), "clip_emotion": ne["clip_emotion"].to_numpy(),
        "emotion": None, "aus": None, "duration_s": np.nan, "onset_to_apex_s": np.nan,
        "eeg_onset_sample": ne["center_sample"].astype(float).to_numpy(),
        "landmark_sample": ne["center_sample"].astype(float).to_numpy(), "reason": "",
    })  # fmt: skip
    plan = pd.concat([plan, ne_plan], ignore_index=True) if len(ne_plan) else plan
    plan["align"] = align
    plan["landmark_s"] = plan["landmark_sample"] / sfreq
    plan["eeg_onset_sample"] = plan["eeg_onset_sample"].astype("Int64")
    plan["landmark_sample"] = plan["landmark_sample"].astype("Int64")
    plan = plan.sort_values("landmark_sample", kind="stable", na_position="last").reset_index(drop=True)
    plan.insert(0, "epoch_id", [f"{subject}_ep{i:04d}" for i in range(len(plan))])
    return plan, ne_report


# ----------------------------------------------------------------------------- EMG


def _emg_window_s(duration_s: np.ndarray, tmax: float) -> np.ndarray:
    """Post-landmark EMG window length (s): max(0.5 s, duration), at most ``tmax``."""
    dur = np.nan_to_num(np.asarray(duration_s, dtype=float), nan=0.0)
    return np.minimum(np.maximum(_MIN_EMG_WINDOW_S, dur), tmax)


def _emg_kernels(sfreq: float, emg: EmgConfig, notch_freq: float | None) -> list[np.ndarray]:
    """The FIRs of :func:`_emg_copy`, in order: MNE's notch (mains harmonics below Nyquist), the EMG band-pass."""
    nyq = sfreq / 2
    lo, hi = emg.band
    kernels = [notch_kernel(sfreq, np.arange(notch_freq, nyq, notch_freq))] if notch_freq is not None and notch_freq < nyq else []
    kernels.append(fir_kernel(sfreq, lo, hi if hi < nyq - 1.0 else None))
    return kernels


def _emg_pad_s(sfreq: float, emg: EmgConfig, notch_freq: float | None) -> float:
    """Padding (s) of the EMG spans: the reach of the edge effects of :func:`_emg_copy`'s filters
    applied one after the other (the sum of their half lengths), plus 0.1 s."""
    return sum((len(h) - 1) / 2.0 for h in _emg_kernels(sfreq, emg, notch_freq)) / sfreq + 0.1


def _emg_copy(segments: mne.io.Raw, emg: EmgConfig, notch_freq: float | None) -> mne.io.Raw:
    """EMG channel(s) + temporal EEG channels, notch-filtered and band-passed to the EMG band.

    MNE's FIRs (as ``notch_filter`` + ``filter`` design them), designed once
    and applied span by span with :func:`~mmme_neuro.preprocessing.filter_spans`.
    """
    types = segments.get_channel_types()
    picks = [c for c, t in zip(segments.ch_names, types, strict=True) if t == "emg"]
    picks += [c for c in emg.temporal_channels if c in segments.ch_names]
    out = segments.copy().pick(picks)
    sf = float(out.info["sfreq"])
    for h in _emg_kernels(sf, emg, notch_freq):
        if not filter_spans(out, h, range(len(out.ch_names))):
            raise ValueError("EMG segments must be a preloaded segmented Raw (mmme_neuro.preprocessing.read_segments)")
    lo, hi = emg.band
    with out.info._unlock():
        out.info["highpass"], out.info["lowpass"] = float(lo), float(min(hi, sf / 2))
    return out


def emg_measures(
    emg_segments: mne.io.Raw,
    landmark_samples: np.ndarray,
    durations_s: np.ndarray,
    epoch_config: EpochConfig,
    emg_config: EmgConfig,
) -> pd.DataFrame:
    """EMG contamination of each epoch: EMG-channel RMS and temporal 30-100 Hz power.

    Parameters
    ----------
    emg_segments : mne.io.Raw
        Segments (from :func:`~mmme_neuro.preprocessing.read_segments`)
        holding the EMG channel and the temporal channels, band-passed to the
        EMG band but *not* low-passed at 45 Hz, at the native rate.
    landmark_samples : array of int
        Landmark of each epoch (original EEG samples); NaN/NA gives NaN measures.
    durations_s : array of float
        Expression durations (s); NaN for NE epochs.
    epoch_config : EpochConfig
        ``tmax`` (cap of the window) and ``baseline`` (baseline window; None:
        ``[tmin, 0]``).
    emg_config : EmgConfig
        ``band`` (Hz) and ``temporal_channels``.

    Returns
    -------
    measures : pandas.DataFrame
        ``emg_window_s`` (s), ``emg_rms_uv`` (µV, EMG channel, window
        ``[0, max(0.5 s, duration)]`` after the landmark, capped at ``tmax``),
        ``emg_rms_baseline_uv`` (µV, baseline window), ``emg_rms_log_ratio``
        (natural log of their ratio), ``emg_temporal_power`` and
        ``emg_temporal_power_baseline`` (µV²/Hz, multitaper PSD averaged over
        ``band`` and the temporal channels), ``emg_temporal_power_log_ratio``.

    Notes
    -----
    NE epochs have no duration: their window is 0.5 s. The temporal
    channels are measured against the recording reference (before
    re-referencing), so the measure does not depend on the reference choice.
    """
    sf = float(emg_segments.info["sfreq"])
    smap = get_segment_map(emg_segments)
    types = emg_segments.get_channel_types()
    emg_ch = [i for i, t in enumerate(types) if t == "emg"][:1]
    temp_ch = [emg_segments.ch_names.index(c) for c in emg_config.temporal_channels if c in emg_segments.ch_names]
    data = emg_segments.get_data() * 1e6
    base = epoch_config.baseline or (epoch_config.tmin, 0.0)
    win = _emg_window_s(durations_s, epoch_config.tmax)
    lo, hi = emg_config.band
    lm = pd.array(landmark_samples, dtype="Float64").to_numpy(dtype=float, na_value=np.nan)
    out = np.full((lm.size, 4), np.nan)
    by_length: dict[int, list[tuple[int, int, int]]] = {}  # window length -> (epoch, window, first segment sample)
    for k, x in enumerate(lm):
        if not np.isfinite(x):
            continue
        windows = [(int(x), int(x) + int(round(win[k] * sf))),
                   (int(x) + int(round(base[0] * sf)), int(x) + int(round(base[1] * sf)))]  # fmt: skip
        for j, (a, b) in enumerate(windows):
            if b - a < 8 or smap.span_of(np.array([a]), np.array([b - 1]))[0] < 0:
                continue
            pa = int(smap.to_segment(np.array([a]))[0])
            if emg_ch:
                out[k, j] = float(np.sqrt(np.mean(data[emg_ch[0], pa : pa + (b - a)] ** 2)))
            if temp_ch:
                by_length.setdefault(b - a, []).append((k, j, pa))
    # one multitaper call per window length (the baseline windows share one; the tapers are computed once
    # per call): the same values as one call per window, bit for bit (test), ~40 ms a call saved
    for n, items in by_length.items():
        segs = np.stack([data[temp_ch, pa : pa + n] for _, _, pa in items])
        psd, _ = mne.time_frequency.psd_array_multitaper(
            segs - segs.mean(axis=-1, keepdims=True), sf, fmin=lo, fmax=hi,
            adaptive=False, low_bias=True, normalization="full", verbose=False,
        )  # fmt: skip
        for (k, j, _), p in zip(items, psd, strict=True):
            out[k, 2 + j] = float(p.mean()) if p.size else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        return pd.DataFrame({
            "emg_window_s": win,
            "emg_rms_uv": out[:, 0], "emg_rms_baseline_uv": out[:, 1],
            "emg_rms_log_ratio": np.log(out[:, 0] / out[:, 1]),
            "emg_temporal_power": out[:, 2], "emg_temporal_power_baseline": out[:, 3],
            "emg_temporal_power_log_ratio": np.log(out[:, 2] / out[:, 3]),
        })  # fmt: skip


def _no_emg(durations_s: np.ndarray, epoch_config: EpochConfig) -> pd.DataFrame:
    """The columns of :func:`emg_measures`, NaN: every EMG channel is bad in the recording."""
    nan = np.full(len(durations_s), np.nan)
    return pd.DataFrame({"emg_window_s": _emg_window_s(durations_s, epoch_config.tmax), "emg_rms_uv": nan,
                         "emg_rms_baseline_uv": nan, "emg_rms_log_ratio": nan, "emg_temporal_power": nan,
                         "emg_temporal_power_baseline": nan, "emg_temporal_power_log_ratio": nan})  # fmt: skip


# ----------------------------------------------------------------------------- epoching


def _rejection_reason(x_uv: np.ndarray, names: list[str], rej: RejectionConfig) -> tuple[str, float]:
    """Reason ('' if clean) and largest peak-to-peak (µV) of one epoch (channels x times)."""
    ptp = np.ptp(x_uv, axis=1)
    worst = int(np.argmax(ptp))
    if rej.peak_to_peak_uv is not None and ptp[worst] > rej.peak_to_peak_uv:
        return f"peak_to_peak>{rej.peak_to_peak_uv:g}uV on {names[worst]}", float(ptp[worst])
    flat = int(np.argmin(ptp))
    if rej.flat_uv is not None and ptp[flat] < rej.flat_uv:
        return f"flat<{rej.flat_uv:g}uV on {names[flat]}", float(ptp[worst])
    return "", float(ptp[worst])


def _autoreject(data: np.ndarray, candidates: np.ndarray, reason: np.ndarray, info: mne.Info, eeg_idx: list[int],
                tmin: float, window: tuple[float, float], config: Config, subject: str = "") -> dict[str, Any]:
    """autoreject on the epochs not yet rejected: their reasons set, bad channels repaired in ``data`` (in place).

    ``info`` is that of the epochs (their rate); ``eeg_idx`` the scalp channels autoreject sees.
    """
    cand = np.flatnonzero(candidates)
    mode = config.rejection.autoreject
    skipped = _too_few_epochs(mode, cand.size)  # MNE cannot hold 0 epochs: decided before building them
    if skipped is not None:
        logger.warning("%s: autoreject (%s) skipped after the fixed thresholds: %s", subject, mode, skipped["skipped"])
        return skipped
    epochs = mne.EpochsArray(data[cand][:, eeg_idx], mne.pick_info(info, eeg_idx), tmin=tmin, baseline=None,
                             verbose=False)  # fmt: skip
    why, repaired, report = autoreject_epochs(epochs, mode, seed=config.seed, window=window,
                                              n_interpolate=config.rejection.autoreject_n_interpolate)  # fmt: skip
    for k, w in zip(cand, why, strict=True):
        if w:
            reason[k] = w
    if repaired is not None:
        data[np.ix_(cand, eeg_idx)] = repaired.get_data()
    report["interpolated"] = {str(int(cand[int(k)])): v for k, v in report.get("interpolated", {}).items()}
    return report


def _unique_events(samples: np.ndarray) -> np.ndarray:
    """Make event samples unique (MNE needs it) by nudging repeats forward one sample."""
    s = samples.astype(np.int64).copy()
    order = np.argsort(s, kind="stable")
    for a, b in zip(order[:-1], order[1:], strict=True):
        if s[b] <= s[a]:
            s[b] = s[a] + 1
    return s


def _cut_epochs(clean: mne.io.Raw, plan: pd.DataFrame, config: Config, decim: int, n_times: int,
                ) -> tuple[np.ndarray, np.ndarray, float]:  # fmt: skip
    """Cut every plannable epoch; returns data (epochs x channels x times, V), ok mask, first time (s)."""
    smap = get_segment_map(clean)
    sf_new = smap.sfreq / decim
    ep = config.epochs
    j0 = int(np.ceil(ep.tmin * sf_new - 1e-9))
    j1 = int(np.floor(ep.tmax * sf_new + 1e-9))
    n = j1 - j0 + 1
    data_all = clean._data  # no copy (preloaded)
    out = np.zeros((len(plan), data_all.shape[0], n))
    ok = np.zeros(len(plan), dtype=bool)
    lm = plan["landmark_sample"].to_numpy(dtype=float, na_value=np.nan)
    for k, x in enumerate(lm):
        if not np.isfinite(x) or plan["reason"].iat[k]:
            continue
        i = int(smap.span_of(np.array([int(x)]), np.array([int(x)]))[0])
        if i < 0:
            continue
        pos = int(np.floor(smap.to_segment(np.array([int(x)]))[0] + 0.5))  # half up: independent of the span's offset
        a, b = pos + decim * j0, pos + decim * j1
        if a < smap.seg_start[i] or b >= smap.seg_stop[i]:
            continue
        out[k] = data_all[:, a : b + 1 : decim]
        ok[k] = True
    return out, ok, j0 / sf_new


def make_epochs(
    raw: mne.io.BaseRaw,
    expressions: pd.DataFrame,
    clips: pd.DataFrame,
    config: Config,
    *,
    subject: str,
    emg_raw: mne.io.BaseRaw | None = None,
    avoid: pd.DataFrame | None = None,
    options: PreprocessOptions | None = None,
    pad_s: float | None = None,
    extend_s: tuple[float, float] = (0.0, 0.0),
    return_ica: bool = False,
) -> tuple[mne.Epochs, pd.DataFrame] | tuple[mne.Epochs, pd.DataFrame, mne.preprocessing.ICA | None]:
    """Cut clean ME, MaE and NE epochs of one session, with EMG measures and a rejection log.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        The session EEG (lazy; only padded segments are read). Channel types
        set (eeg, eog HEO/VEO, ecg, emg, stim), montage set.
    expressions : pandas.DataFrame
        The session's expressions (:attr:`SessionIngest.expressions`):
        ``expression_id``, ``kind`` (ME/MaE), ``marker``, ``eeg_onset_s``,
        ``eeg_apex_s``, ``eeg_offset_s``; optional ``emotion``, ``aus``,
        ``duration_s``, ``onset_to_apex_s``.
    clips : pandas.DataFrame
        Clips on the EEG clock: ``marker``, ``eeg_time_s``, ``end_time_s`` (s).
    config : Config
        ``epochs``, ``preprocessing``, ``rejection``, ``emg``, ``seed``.
    subject : str
        Pseudonym.
    emg_raw : mne.io.BaseRaw | None
        Another recording on the same clock to read the EMG measures from
        (default: ``raw`` itself, before the low-pass).
    avoid : pandas.DataFrame | None
        Further coded intervals NE epochs must keep away from
        (``eeg_onset_s``, ``eeg_offset_s``), e.g. codings excluded upstream.
    options : PreprocessOptions | None
        Preprocessing choices (:class:`~mmme_neuro.preprocessing.PreprocessOptions`).
    pad_s : float | None
        Segment padding (s); None: :func:`~mmme_neuro.preprocessing.filter_pad_s`.
    extend_s : (float, float)
        Seconds cut before ``epochs.tmin`` and after ``epochs.tmax`` on top of
        the analysis window (the edge padding of wavelet transforms; one cut
        that several analyses crop, :func:`from_clean`). Epochs are planned
        and cut with the extended window, but the amplitude rejection and
        the EMG measures use the analysis window ``tmin..tmax`` only.
    return_ica : bool
        Also return the fitted ICA (:func:`~mmme_neuro.preprocessing.fitted_ica`;
        None when ICA is off).

    Returns
    -------
    epochs : mne.EpochsArray
        The kept epochs (EEG in V), decimated to ``resample_sfreq``,
        baseline-corrected, ``metadata`` = kept rows of ``metadata``; epochs
        rejected by amplitude are in ``drop_log`` with their reason;
        ``events[:, 0]`` is the landmark sample on the original EEG clock
        (repeats nudged by one sample), event ids :data:`CONDITIONS`.
    metadata : pandas.DataFrame
        Every planned epoch (:data:`METADATA_COLUMNS`), kept or not;
        ``attrs`` hold ``preprocessing`` (report), ``ne`` (NE report) and
        ``provenance``.
    ica : mne.preprocessing.ICA | None
        With ``return_ica``: the ICA fitted on the session and applied
        (``ica.exclude``: the removed components).

    Raises
    ------
    ValueError
        On missing columns, an empty session or a non-string subject.
    mmme_neuro.preprocessing.BadChannelsError
        ``"sub-01: bad channel in the recording: CZ (missing from the recording); ..."``
        when the recording's bad scalp channels are not interpolated
        (``preprocessing.bad_channels = "exclude"``, or too many); checked
        before reading for those marked in ``channels.tsv`` or missing.

    Notes
    -----
    Rejection reasons: ``missing_<align>``, ``unknown_kind``,
    ``overlaps_segment_boundary`` (the epoch window leaves the recording, so
    no clean segment holds it), ``peak_to_peak>150uV on T7``, ``flat<0.5uV on X``.
    """
    if not isinstance(config, Config):
        raise TypeError(f"config must be a mmme_neuro.config.Config, got {type(config).__name__}")
    if not isinstance(subject, str) or not subject:
        raise ValueError("subject must be a non-empty pseudonym string")
    _check_columns(expressions, _EXPR_COLUMNS + (f"eeg_{config.epochs.align}_s",), "expressions")
    _check_columns(clips, _CLIP_COLUMNS, "clips")
    if len(clips) == 0:
        raise ValueError(f"{subject}: no clip in the recording")
    opts = options or PreprocessOptions()
    try:  # before reading anything: channels marked bad in channels.tsv, montage channels missing
        check_recording_bads(scalp_problems(marked_bad(raw), raw.ch_names), config.preprocessing)
    except BadChannelsError as err:
        raise BadChannelsError(f"{subject}: {err}") from None
    analysis = config.epochs
    ext = tuple(float(x) for x in extend_s)
    if len(ext) != 2 or min(ext) < 0 or not all(np.isfinite(ext)):
        raise ValueError(f"extend_s must be two non-negative finite seconds, got {extend_s!r}")
    if ext != (0.0, 0.0):  # plan and cut with the extended window
        config = config.model_copy(update={"epochs": analysis.model_copy(
            update={"tmin": round(analysis.tmin - ext[0], 9), "tmax": round(analysis.tmax + ext[1], 9)})})  # fmt: skip
    ep = config.epochs
    sf = float(raw.info["sfreq"])
    plan, ne_report = plan_epochs(expressions, clips, config, subject=subject, sfreq=sf,
                                  recording_end_s=raw.n_times / sf, avoid=avoid)  # fmt: skip
    lm = plan["landmark_sample"].to_numpy(dtype=float, na_value=np.nan)
    usable = np.isfinite(lm) & (plan["reason"] == "").to_numpy()
    if not usable.any():
        raise ValueError(f"{subject}: no epoch can be planned")
    pad = filter_pad_s(sf, config, extra_hz=opts.ica_highpass_hz) if pad_s is None else pad_s
    centers = lm[usable] / sf
    # EMG: native rate, EMG + temporal channels only, short spans around the epoch windows
    src = raw if emg_raw is None else emg_raw
    emg_sf = float(src.info["sfreq"])
    emg_pad = _emg_pad_s(emg_sf, config.emg, config.preprocessing.notch_freq)
    picks = [c for c, t in zip(src.ch_names, src.get_channel_types(), strict=True)
             if t == "emg" or c in config.emg.temporal_channels]  # fmt: skip
    # EEG: each span low-passed, decimated, high-passed and cut to the epoch windows as it is read (integer
    # factor), the EMG spans copied from it; else read at the native rate, and the EMG spans read apart
    pcfg = config.preprocessing
    fused = (opts.filter and opts.resample and pcfg.resample_sfreq is not None
             and (decimation_factor(sf, pcfg.resample_sfreq) or 1) > 1)  # fmt: skip
    emg_seg = None
    if fused:
        emg_spec = {"picks": picks, "tmin": analysis.tmin, "tmax": analysis.tmax, "pad_s": emg_pad} if emg_raw is None else None
        segments, emg_seg = _read_decimated(raw, centers, ep.tmin, ep.tmax, pad, pcfg, n_jobs=config.run.threads,
                                            crop=opts, emg=emg_spec)  # fmt: skip
        n_loaded = _read_map(segments).n_orig_samples
    else:
        segments = read_segments(raw, centers, ep.tmin, ep.tmax, pad)
        n_loaded = get_segment_map(segments).n_orig_samples
    unmarked = recording_bads(segments).get("non_finite", [])
    if unmarked:
        logger.warning("%s: channel(s) %s hold non-finite values (NaN/Inf) but are not marked bad in the recording: "
                       "zero-filled before filtering and treated as bad", subject, ", ".join(unmarked))  # fmt: skip
    emg_from = "the EEG spans read" if emg_seg is not None else "read apart"
    if emg_seg is None:
        emg_seg = read_segments(src, centers, analysis.tmin, analysis.tmax, emg_pad, picks=picks)
    n_emg = get_segment_map(emg_seg).n_orig_samples
    emg_bad = [c for c in emg_seg.info["bads"] if c in emg_seg.ch_names]  # zero-filled while read: not measured
    if len(emg_bad) < len(emg_seg.ch_names):
        emg_seg = _emg_copy(emg_seg.drop_channels(emg_bad) if emg_bad else emg_seg, config.emg,
                            config.preprocessing.notch_freq)  # fmt: skip
        emg = emg_measures(emg_seg, plan["landmark_sample"].to_numpy(), plan["duration_s"].to_numpy(), analysis,
                           config.emg)  # fmt: skip
    else:
        emg = _no_emg(plan["duration_s"].to_numpy(), analysis)
    del emg_seg
    try:
        clean, prep = preprocess_segments(segments, config, options=opts, copy=False)
    except BadChannelsError as err:
        raise BadChannelsError(f"{subject}: {err}") from None
    if emg_bad:
        prep["emg_bad_channels"] = emg_bad
    del segments
    prep["pad_s"] = pad
    prep["emg_pad_s"] = emg_pad
    prep["n_samples_read"] = n_loaded
    prep["n_emg_samples_read"] = n_emg
    prep["emg_samples_from"] = emg_from
    decim = int(prep["resample"].get("decim_at_epoching", 1))
    data, ok, t0 = _cut_epochs(clean, plan, config, decim, raw.n_times)
    reason = plan["reason"].to_numpy(dtype=object).copy()
    reason[~ok & (reason == "")] = "overlaps_segment_boundary"
    eeg_idx = [clean.ch_names.index(c) for c in SCALP_CHANNELS if c in clean.ch_names]
    eeg_names = [clean.ch_names[i] for i in eeg_idx]
    sf_new = get_segment_map(clean).sfreq / decim
    times = t0 + np.arange(data.shape[2]) / sf_new
    if ep.baseline is not None:
        bmask = (times >= ep.baseline[0] - 1e-9) & (times <= ep.baseline[1] + 1e-9)
        data -= data[:, :, bmask].mean(axis=2, keepdims=True)
    ptp = np.full(len(plan), np.nan)
    rwin = np.flatnonzero((times >= analysis.tmin - 1e-9) & (times <= analysis.tmax + 1e-9))
    r0, r1 = (int(rwin[0]), int(rwin[-1]) + 1) if rwin.size else (0, times.size)
    for k in np.flatnonzero(ok):
        why, ptp[k] = _rejection_reason(data[k, eeg_idx, r0:r1] * 1e6, eeg_names, config.rejection)
        if why:
            reason[k] = why
    info = clean.info.copy()  # of the epochs
    with info._unlock():
        info["sfreq"] = sf_new
        info["temp"] = None
    if config.rejection.autoreject != "off":
        prep["steps"]["autoreject"] = _autoreject(data, ok & (reason == ""), reason, info, eeg_idx, t0,
                                                  (analysis.tmin, analysis.tmax), config, subject)  # fmt: skip
    md = plan.copy()
    for col in emg.columns:
        md[col] = emg[col].to_numpy()
    md["ptp_max_uv"] = ptp
    md["reason"] = reason
    md["rejected"] = reason != ""
    md["kept"] = ~md["rejected"]
    md = md[list(METADATA_COLUMNS)]
    kept = md["kept"].to_numpy()
    built = ok & np.isfinite(ptp)
    if not built.any():
        raise ValueError(f"{subject}: no epoch could be cut from the segments")
    events = np.column_stack([
        _unique_events(md.loc[built, "landmark_sample"].to_numpy(dtype=np.int64)),
        np.zeros(built.sum(), dtype=np.int64),
        md.loc[built, "condition"].map(CONDITIONS).to_numpy(dtype=np.int64),
    ])  # fmt: skip
    present = {c: v for c, v in CONDITIONS.items() if (md.loc[built, "condition"] == c).any()}
    epochs = mne.EpochsArray(data[built], info, events=events, tmin=t0, event_id=present,
                             baseline=ep.baseline, metadata=md[built].reset_index(drop=True),
                             verbose=False)  # fmt: skip
    drop = np.flatnonzero(~kept[built])
    if drop.size:
        epochs.drop(drop, reason=[str(r) for r in reason[built][drop]], verbose=False)
    md.attrs["preprocessing"] = prep
    md.attrs["ne"] = ne_report
    prep["extend_s"] = list(ext)
    md.attrs["provenance"] = provenance(config, preprocessing=prep["steps"], align=ep.align, subject=subject)
    counts = md.groupby("condition")["kept"].agg(["size", "sum"]).to_dict(orient="index")
    logger.info("%s: epochs (planned, kept) per condition: %s", subject, counts)
    if return_ica:
        return epochs, md, fitted_ica(clean)
    return epochs, md


def epochs_from_session(session: Any, config: Config, **kwargs: Any) -> tuple[mne.Epochs, pd.DataFrame]:
    """:func:`make_epochs` for a :class:`~mmme_neuro.ingest.SessionIngest` (or any object with
    ``eeg_raw``, ``expressions``, ``clips``, ``subject``).

    Parameters
    ----------
    session : SessionIngest
        An ingested session.
    config : Config
        Configuration.
    **kwargs
        Passed to :func:`make_epochs` (``avoid``, ``options``, ``pad_s``, ``emg_raw``).

    Returns
    -------
    epochs, metadata
        See :func:`make_epochs`.
    """
    for attr in ("eeg_raw", "expressions", "clips", "subject"):
        if not hasattr(session, attr):
            raise TypeError(f"session must have .{attr} (a SessionIngest)")
    return make_epochs(session.eeg_raw, session.expressions, session.clips, config,
                       subject=session.subject, **kwargs)  # fmt: skip


def first_level(session: Any, config: Config, *, extend_s: tuple[float, float] = (0.0, 0.0)) -> dict[str, Any]:
    """Preprocessed epochs of one session as a first-level result (one pass that several analyses crop).

    Parameters
    ----------
    session : SessionIngest
        An ingested session (see :func:`epochs_from_session`).
    config : Config
        Configuration.
    extend_s : (float, float)
        Extra seconds before ``epochs.tmin`` and after ``epochs.tmax``
        (see :func:`make_epochs`).

    Returns
    -------
    result : dict
        ``epochs`` (the kept epochs, :func:`make_epochs`, without metadata),
        ``metadata`` (every planned epoch with its fate), ``report``
        (the metadata ``attrs``: preprocessing report, NE report,
        provenance) and, when ICA ran, ``ica`` (the fitted ICA, ``exclude``
        = the removed components). :func:`from_clean` turns it back into
        epochs + metadata.
    """
    epochs, md, ica = epochs_from_session(session, config, extend_s=tuple(extend_s), return_ica=True)
    report = dict(md.attrs)
    md = md.copy()
    md.attrs = {}
    with mne.utils.use_log_level("WARNING"):
        epochs.metadata = None  # the full table is stored on its own (FIF metadata would not round-trip every dtype)
    out = {"epochs": epochs, "metadata": md, "report": report}
    if ica is not None:
        out["ica"] = ica
    return out


def planned_config(clean: Any, config: Config) -> Config:
    """``config`` with the epoch window a :func:`first_level` result was planned with (analysis window + ``extend_s``).

    NE controls drawn with it (:func:`draw_ne_centers`, e.g. for the
    physiology of the same moments) are the NE epochs of ``clean``.
    """
    ext = clean["report"].get("preprocessing", {}).get("extend_s", [0.0, 0.0])
    ep = config.epochs
    return config.model_copy(update={"epochs": ep.model_copy(
        update={"tmin": round(ep.tmin - float(ext[0]), 9), "tmax": round(ep.tmax + float(ext[1]), 9)})})  # fmt: skip


def from_clean(clean: Any, tmin: float, tmax: float) -> tuple[mne.Epochs, pd.DataFrame]:
    """Epochs and metadata for an analysis window, cropped from a :func:`first_level` result.

    Parameters
    ----------
    clean : mapping
        ``{"epochs", "metadata", "report"}`` of :func:`first_level` (as cached).
    tmin, tmax : float
        Window the analysis needs (s); it must lie within the stored epochs.

    Returns
    -------
    epochs : mne.Epochs
        A cropped copy, ``metadata`` = the kept rows.
    metadata : pandas.DataFrame
        Every planned epoch (a copy), ``attrs`` restored.

    Raises
    ------
    ValueError
        If the window is not inside the stored epochs.
    """
    stored = clean["epochs"]
    half = 0.5 / float(stored.info["sfreq"])
    if tmin < stored.tmin - half or tmax > stored.tmax + half:
        raise ValueError(f"window {tmin:g}..{tmax:g} s is not inside the preprocessed epochs "
                         f"({stored.tmin:g}..{stored.tmax:g} s)")  # fmt: skip
    md = clean["metadata"].copy()
    md.attrs = dict(clean["report"])
    epochs = stored.copy().crop(max(tmin, stored.tmin), min(tmax, stored.tmax), verbose=False)
    kept = md[md["kept"].astype(bool)].reset_index(drop=True)
    # the report stays on ``md`` only: pandas deep-copies ``attrs`` in every operation on a frame
    # (every row read, filter, copy), and the report's ~9000 entries made that 0.2 s per step
    kept.attrs = {}
    if len(kept) != len(epochs):
        raise ValueError(f"{len(epochs)} stored epochs but {len(kept)} kept rows in the metadata (a damaged cache?)")
    with mne.utils.use_log_level("WARNING"):
        epochs.metadata = kept
    return epochs, md


# ----------------------------------------------------------------------------- summaries and counts


def emg_summary(metadata: pd.DataFrame, *, kept_only: bool = True) -> pd.DataFrame:
    """Mean EMG measures per subject and condition (the "EMG confound" table).

    Parameters
    ----------
    metadata : pandas.DataFrame
        Epoch metadata of one or more sessions (:func:`make_epochs`).
    kept_only : bool
        Summarise only kept epochs (those analysed).

    Returns
    -------
    summary : pandas.DataFrame
        ``subject``, ``condition``, ``n_epochs`` and the mean of every
        ``emg_*`` column (µV, µV²/Hz, log ratios).
    """
    _check_columns(metadata, ("subject", "condition", "kept", "emg_rms_uv"), "metadata")
    md = metadata[metadata["kept"]] if kept_only else metadata
    cols = [c for c in metadata.columns if c.startswith("emg_")]
    g = md.groupby(["subject", "condition"], observed=True)
    out = g[cols].mean()
    out.insert(0, "n_epochs", g.size())
    return out.reset_index()


def apply_min_count(
    metadata: pd.DataFrame,
    config: Config,
    *,
    conditions: tuple[str, ...] = ("ME", "MaE", "NE"),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply the minimum-count rule: subjects with too few clean epochs in a condition leave it.

    Parameters
    ----------
    metadata : pandas.DataFrame
        Epoch metadata (``subject``, ``condition``, ``kept``).
    config : Config
        ``epochs.min_epochs_per_condition``.
    conditions : tuple of str
        Conditions counted (a subject without any epoch of one counts 0).

    Returns
    -------
    kept : pandas.DataFrame
        ``subject``, ``condition``, ``n_clean`` of the subject-condition pairs
        that may enter contrasts.
    report : pandas.DataFrame
        Every subject x condition: ``n_epochs``, ``n_clean``, ``min_required``,
        ``included`` and ``reason`` (e.g. ``"2 clean epochs < 3"``).

    Notes
    -----
    A subject excluded from a condition is excluded from every contrast
    involving it (:func:`subjects_for_contrast`).
    """
    _check_columns(metadata, ("subject", "condition", "kept"), "metadata")
    need = config.epochs.min_epochs_per_condition
    subjects = sorted(metadata["subject"].unique())
    idx = pd.MultiIndex.from_product([subjects, list(conditions)], names=["subject", "condition"])
    g = metadata.groupby(["subject", "condition"])
    rep = pd.DataFrame({"n_epochs": g.size(), "n_clean": g["kept"].sum()}).reindex(idx, fill_value=0)
    rep = rep.astype(int).reset_index()
    rep["min_required"] = need
    rep["included"] = rep["n_clean"] >= need
    rep["reason"] = np.where(rep["included"], "", rep["n_clean"].astype(str) + f" clean epochs < {need}")
    for r in rep[~rep["included"]].itertuples():
        logger.info("%s excluded from contrasts with %s: %s", r.subject, r.condition, r.reason)
    kept = rep.loc[rep["included"], ["subject", "condition", "n_clean"]].reset_index(drop=True)
    return kept, rep


def bookkeeping_table(metadata: pd.DataFrame) -> pd.DataFrame:
    """Epoch metadata as a plain result table: every planned epoch with its fate.

    The per-expression AU lists (``aus``) are left out (lists do not fit a
    flat table; the coding file and the BIDS events keep them) and so are the
    preprocessing ``attrs`` (provenance lives in the result arrays).
    """
    table = metadata.drop(columns=[c for c in ("aus",) if c in metadata.columns]).copy()
    table.attrs = {}
    return table


def included_rows(table: pd.DataFrame, report: pd.DataFrame) -> pd.DataFrame:
    """Rows of a trial-level ``table`` whose subject x condition passed :func:`apply_min_count`.

    Parameters
    ----------
    table : pandas.DataFrame
        Any table with ``subject`` and ``condition`` columns (epoch metadata,
        component measures, band-power trials ...).
    report : pandas.DataFrame
        The ``report`` of :func:`apply_min_count`.
    """
    _check_columns(table, ("subject", "condition"), "table")
    ok = set(zip(report.loc[report["included"], "subject"], report.loc[report["included"], "condition"], strict=True))
    mask = [(s, c) in ok for s, c in zip(table["subject"], table["condition"], strict=True)]
    return table[mask].reset_index(drop=True)


def reason_code(reason: Any) -> str:
    """Short code of a rejection reason: ``'peak_to_peak>150uV on T7'`` -> ``'peak_to_peak'``."""
    return re.split(r"[<>= ]", str(reason), maxsplit=1)[0] or "unknown"


def exclusion_counts(metadata: pd.DataFrame, exclusions: pd.DataFrame | None = None) -> dict[str, int]:
    """Reason code -> count of what did not become an analysed epoch.

    Parameters
    ----------
    metadata : pandas.DataFrame
        Epoch metadata (``rejected``, ``reason``): each rejected epoch counts
        as ``epoch_<code>`` (:func:`reason_code`).
    exclusions : pandas.DataFrame | None
        Coded expressions that never became epochs (``reason_code``,
        :func:`mmme_neuro.dataset.coded_exclusions`), counted by their code.

    Returns
    -------
    counts : dict
        Sorted by code.
    """
    counts: dict[str, int] = {}
    codes = [] if exclusions is None else [str(c) for c in exclusions["reason_code"].dropna()]
    codes += [f"epoch_{reason_code(r)}" for r in metadata.loc[metadata["rejected"].astype(bool), "reason"]]
    for code in codes:
        counts[code] = counts.get(code, 0) + 1
    return dict(sorted(counts.items()))


def subjects_for_contrast(kept: pd.DataFrame, conditions: tuple[str, ...]) -> list[str]:
    """Subjects that passed :func:`apply_min_count` in every one of ``conditions``."""
    ok = kept[kept["condition"].isin(conditions)].groupby("subject")["condition"].nunique()
    return sorted(ok[ok == len(set(conditions))].index)


def equalize_counts(
    metadata: pd.DataFrame,
    conditions: tuple[str, ...],
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Randomly subsample kept epochs to the smallest count among ``conditions``, per subject.

    Parameters
    ----------
    metadata : pandas.DataFrame
        Epoch metadata (``epoch_id``, ``subject``, ``condition``, ``kept``).
    conditions : tuple of str
        Conditions to equalise (e.g. ``("ME", "MaE")``).
    seed : int
        Seed; the draw of each subject is seeded by ``(seed, subject)``, so it
        does not depend on the other subjects.

    Returns
    -------
    metadata : pandas.DataFrame
        A copy with ``equalized_out`` (bool: dropped by equalisation) and
        ``kept`` set False for those epochs (``rejected`` unchanged).
    report : pandas.DataFrame
        Per subject x condition: ``n_before``, ``n_after``.
    """
    _check_columns(metadata, ("epoch_id", "subject", "condition", "kept"), "metadata")
    if len(set(conditions)) < 2:
        raise ValueError(f"need at least two conditions to equalise, got {conditions}")
    md = metadata.copy()
    md["equalized_out"] = False
    rows = []
    for subject, sub in md.groupby("subject", sort=True):
        clean = sub[sub["kept"] & sub["condition"].isin(conditions)]
        counts = {c: int((clean["condition"] == c).sum()) for c in conditions}
        n_min = min(counts.values())
        rng = _rng(seed, str(subject), "equalize")
        for c in conditions:
            ids = np.sort(clean.loc[clean["condition"] == c, "epoch_id"].to_numpy(dtype=str))
            keep = set(rng.choice(ids, size=n_min, replace=False)) if n_min else set()
            out = md.index[(md["subject"] == subject) & md["epoch_id"].isin(set(ids) - keep)]
            md.loc[out, "equalized_out"] = True
            md.loc[out, "kept"] = False
            rows.append({"subject": subject, "condition": c, "n_before": counts[c], "n_after": n_min})
    report = pd.DataFrame(rows, columns=["subject", "condition", "n_before", "n_after"])
    md.attrs = {**metadata.attrs, "equalize": {"conditions": list(conditions), "seed": seed}}
    return md, report
