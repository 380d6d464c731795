"""Peripheral physiology: fast processing, signal quality, expression-locked epochs and features.

Pipeline (one recording, any synchronised container, any sampling rate):

1. :func:`process_physio` cleans each signal with the fast NeuroKit2 pieces
   and returns one table on a common output grid (default 50 Hz) plus an
   ``info`` dict (R-peaks, SCRs, per-segment quality...):

   * ECG at the native rate: ``nk.ecg_clean`` + ``nk.ecg_peaks`` (no
     delineation, which is what makes ``nk.ecg_process`` slow), RR artefact
     rejection, instantaneous heart rate (bpm) placed at RR-interval midpoints
     and interpolated (monotone cubic);
   * PPG at <= 100 Hz: ``nk.ppg_clean`` + ``nk.ppg_findpeaks``, pulse rate;
   * RSP, EDA, SKT downsampled to the output rate first: ``nk.rsp_clean`` +
     ``nk.rsp_peaks`` (amplitude, rate, phase); ``nk.eda_clean`` +
     ``nk.eda_phasic(method="highpass")`` (tonic/phasic) and a vectorised SCR
     detector (:func:`detect_scr`); SKT level and slope;
   * signal quality per 10-s segment (:func:`segment_quality`): dropouts
     (NaN), flat lines, clipping, implausible beat/breath rates, low QRS
     template correlation. Poor segments are *set to NaN* in the output with
     the reason listed in ``info["quality"]``; they are never averaged.

2. :func:`session_events` lists the events of a session (ME, MaE, NE controls
   drawn like the EEG NE epochs, clip onsets) with their physiology sample and
   whether the preceding ``clean_baseline_s`` is free of other expressions.
3. :func:`event_timecourses` cuts baseline-corrected time courses (HR change
   in bpm, phasic EDA in µS, relative respiration amplitude change) and
   :func:`event_features` measures each epoch (tidy table);
   :func:`group_timecourses` averages them into
   ``(subject, condition, signal, time)``.

Notes
-----
Expressions can follow each other by 2.5 s while the cardiac response lasts
about 9 s, so responses overlap: a pre/post window over *all* expressions
mixes the previous expression's response into the baseline and gives nearly
no change. Epoch tables therefore carry ``prev_gap_s`` and ``clean_baseline``
(no other expression onset in the preceding ``clean_baseline_s``, default
8 s); cardiac and respiratory averages use clean-baseline epochs by default.

References
----------
Makowski, D. et al. (2021). NeuroKit2: A Python toolbox for neurophysiological
signal processing. Behavior Research Methods, 53, 1689-1696.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

__all__ = [
    "PHYSIO_CONDITIONS",
    "SIGNAL_TYPES",
    "TIMECOURSE_SIGNALS",
    "detect_scr",
    "event_features",
    "event_timecourses",
    "group_timecourses",
    "hrv_time",
    "process_physio",
    "process_session",
    "segment_quality",
    "session_events",
    "session_sampling_rate",
]

logger = logging.getLogger(__name__)

#: Signal types handled by :func:`process_physio`.
SIGNAL_TYPES: tuple[str, ...] = ("ECG", "PPG", "RSP", "EDA", "SKT")
#: Event conditions of the physiology epochs.
PHYSIO_CONDITIONS: tuple[str, ...] = ("ME", "MaE", "NE", "clip")
#: Processed columns cut into event time courses -> (name in the result, baseline mode, unit).
TIMECOURSE_SIGNALS: dict[str, tuple[str, str, str]] = {
    "ECG_Rate": ("hr", "subtract", "bpm"),
    "EDA_Phasic": ("eda", "subtract", "uS"),
    "RSP_Amplitude": ("rsp", "ratio", "relative"),
}
#: Column name (upper case) -> signal type, for BIDS/BIOPAC tables.
_ALIASES: dict[str, str] = {
    "ECG": "ECG", "EKG": "ECG", "PPG": "PPG", "RSP": "RSP", "RESP": "RSP", "EDA": "EDA", "GSR": "EDA",
    "SKT": "SKT", "SKT_A": "SKT", "TEMP": "SKT",
}  # fmt: skip
_RR_RANGE_S = (0.3, 2.0)  # plausible RR intervals (s): 30-200 bpm
_BR_RANGE_BPM = (4.0, 40.0)  # plausible breathing rates (breaths/min)


# ----------------------------------------------------------------------------- helpers


def _resample(x: np.ndarray, sfreq: float, target: float) -> tuple[np.ndarray, float]:
    """Polyphase resampling of ``x`` from ``sfreq`` to about ``target`` Hz; returns (y, actual rate)."""
    if target >= sfreq:
        return x, sfreq
    from scipy.signal import resample_poly

    frac = Fraction(target / sfreq).limit_denominator(1000)
    y = resample_poly(x, frac.numerator, frac.denominator, padtype="line")
    return y, sfreq * frac.numerator / frac.denominator


def _fill_nan(x: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaNs (edges held); all-NaN gives zeros."""
    bad = ~np.isfinite(x)
    if not bad.any():
        return x
    if bad.all():
        return np.zeros_like(x)
    idx = np.arange(x.size)
    out = x.copy()
    out[bad] = np.interp(idx[bad], idx[~bad], x[~bad])
    return out


def _map_columns(columns: Sequence[str], mapping: Mapping[str, str] | None) -> dict[str, str]:
    """Signal type -> column name (first match per type)."""
    out: dict[str, str] = {}
    if mapping:
        for sig, col in mapping.items():
            if sig not in SIGNAL_TYPES:
                raise ValueError(f"unknown signal type {sig!r}; expected one of {SIGNAL_TYPES}")
            if col not in columns:
                raise ValueError(f"column {col!r} (for {sig}) not in the signals: {list(columns)}")
            out[sig] = col
        return out
    for col in columns:
        sig = _ALIASES.get(str(col).upper())
        if sig is not None and sig not in out:
            out[sig] = col
    return out


def _segments(n: int, sfreq: float, segment_s: float) -> np.ndarray:
    """Segment index of each sample."""
    return (np.arange(n) / (sfreq * segment_s)).astype(np.int64)


def _interp_rate(times_s: np.ndarray, rate: np.ndarray, grid_s: np.ndarray) -> np.ndarray:
    """Monotone cubic interpolation of a rate to ``grid_s``; NaN outside the rate's support."""
    out = np.full(grid_s.size, np.nan)
    ok = np.isfinite(rate)
    if ok.sum() < 2:
        return out
    from scipy.interpolate import PchipInterpolator

    t, r = times_s[ok], rate[ok]
    inside = (grid_s >= t[0]) & (grid_s <= t[-1])
    out[inside] = PchipInterpolator(t, r)(grid_s[inside])
    return out


def _clean_rr(peaks_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RR intervals (s), their midpoints (s) and an ok mask (plausible, < 30 % from the running median)."""
    rr = np.diff(peaks_s)
    mid = peaks_s[:-1] + rr / 2
    ok = (rr >= _RR_RANGE_S[0]) & (rr <= _RR_RANGE_S[1])
    if rr.size >= 5:
        med = pd.Series(rr).rolling(11, center=True, min_periods=3).median().to_numpy()
        ok &= np.abs(rr - med) <= 0.3 * med
    return rr, mid, ok


# ----------------------------------------------------------------------------- building blocks


def hrv_time(rr_ms: np.ndarray, *, min_rr: int = 3, min_rr_pnn50: int = 6) -> dict[str, float]:
    """Time-domain HRV of a series of RR intervals.

    Parameters
    ----------
    rr_ms : ndarray
        Successive RR intervals (ms); NaNs (rejected intervals) are dropped,
        and successive differences are taken only between valid neighbours.
    min_rr : int
        Fewest intervals for SDNN and RMSSD (NaN below).
    min_rr_pnn50 : int
        Fewest intervals for pNN50 (NaN below).

    Returns
    -------
    features : dict
        ``mean_rr_ms``, ``sdnn_ms`` (sample SD, ddof=1), ``rmssd_ms``,
        ``pnn50`` (successive differences > 50 ms, % of the intervals), ``n_rr``; the same
        definitions as ``nk.hrv_time`` (HRV_MeanNN, HRV_SDNN, HRV_RMSSD, HRV_pNN50).
    """
    rr = np.asarray(rr_ms, dtype=float)
    d = np.diff(rr)
    d = d[np.isfinite(d)]
    rr = rr[np.isfinite(rr)]
    n = rr.size
    out = {"mean_rr_ms": float(rr.mean()) if n else np.nan, "sdnn_ms": np.nan, "rmssd_ms": np.nan,
           "pnn50": np.nan, "n_rr": int(n)}  # fmt: skip
    if n >= min_rr and d.size:
        out["sdnn_ms"] = float(rr.std(ddof=1))
        out["rmssd_ms"] = float(np.sqrt(np.mean(d**2)))
    if n >= min_rr_pnn50 and d.size:
        out["pnn50"] = float(100.0 * np.sum(np.abs(d) > 50.0) / n)  # NeuroKit2's denominator: n intervals
    return out


def detect_scr(phasic_us: np.ndarray, sfreq: float, *, min_amplitude_us: float = 0.02,
               smooth_s: float = 0.25) -> pd.DataFrame:  # fmt: skip
    """Skin-conductance responses in a phasic EDA signal (vectorised trough-to-peak detector).

    Parameters
    ----------
    phasic_us : ndarray
        Phasic EDA (µS), e.g. ``nk.eda_phasic(..., method="highpass")``.
    sfreq : float
        Sampling rate (Hz).
    min_amplitude_us : float
        Smallest trough-to-peak amplitude kept (µS), an absolute threshold
        (NeuroKit's ``amplitude_min`` is relative to the largest SCR of the
        recording, which makes long recordings lose small responses).
    smooth_s : float
        Width (s) of the boxcar smoothing before the search.

    Returns
    -------
    scr : pandas.DataFrame
        One row per SCR: ``onset_s``, ``peak_s``, ``amplitude_us`` (peak minus
        onset value), ``rise_time_s``, ``onset_sample``, ``peak_sample``.

    Notes
    -----
    Peaks are local maxima with a prominence >= ``min_amplitude_us``
    (:func:`scipy.signal.find_peaks`); the onset is the minimum of the signal
    between the previous peak and the peak, as in NeuroKit2's ``neurokit``
    method. Agrees with ``nk.eda_process`` within the tolerance stated in
    ``tests/test_physio.py``.
    """
    from scipy.signal import find_peaks

    x = np.asarray(phasic_us, dtype=float)
    cols = ["onset_s", "peak_s", "amplitude_us", "rise_time_s", "onset_sample", "peak_sample"]
    if x.size < 3 or not np.isfinite(x).any():
        return pd.DataFrame(columns=cols)
    x = _fill_nan(x)
    w = max(int(round(smooth_s * sfreq)), 1)
    if w > 1:
        x = np.convolve(x, np.ones(w) / w, mode="same")
    peaks, _ = find_peaks(x, prominence=min_amplitude_us)
    if not peaks.size:
        return pd.DataFrame(columns=cols)
    starts = np.concatenate([[0], peaks[:-1]])
    onsets = np.array([a + int(np.argmin(x[a : b + 1])) for a, b in zip(starts, peaks, strict=True)])
    amp = x[peaks] - x[onsets]
    keep = (amp >= min_amplitude_us) & (peaks > onsets)
    onsets, peaks, amp = onsets[keep], peaks[keep], amp[keep]
    return pd.DataFrame({"onset_s": onsets / sfreq, "peak_s": peaks / sfreq, "amplitude_us": amp,
                         "rise_time_s": (peaks - onsets) / sfreq, "onset_sample": onsets,
                         "peak_sample": peaks})  # fmt: skip


def segment_quality(x: np.ndarray, sfreq: float, signal: str, *, segment_s: float = 10.0,
                    beats_s: np.ndarray | None = None, breaths_s: np.ndarray | None = None,
                    ecg_clean: np.ndarray | None = None) -> pd.DataFrame:  # fmt: skip
    """Quality of a raw signal per segment: dropout, flat line, clipping, implausible rates.

    Parameters
    ----------
    x : ndarray
        Raw signal (any unit; NaN = dropout).
    sfreq : float
        Sampling rate of ``x`` (Hz).
    signal : str
        Signal type (:data:`SIGNAL_TYPES`).
    segment_s : float
        Segment length (s).
    beats_s : ndarray | None
        Detected beats (s), ECG R-peaks or PPG peaks: rate plausibility.
    breaths_s : ndarray | None
        Detected breaths (s): breathing-rate plausibility.
    ecg_clean : ndarray | None
        Cleaned ECG at ``sfreq``: QRS template correlation (with ``beats_s``).

    Returns
    -------
    quality : pandas.DataFrame
        One row per segment: ``signal``, ``segment``, ``start_s``, ``end_s``,
        ``ok`` (bool), ``reason`` (``;``-joined: ``dropout``, ``flatline``,
        ``clipping``, ``implausible_rate``, ``irregular_rr``,
        ``low_template_corr``; empty if ok), ``nan_fraction``,
        ``flat_fraction``, ``clip_fraction``, ``rate`` (beats or breaths/min),
        ``template_corr``.

    Notes
    -----
    Thresholds: dropout if > 5 % NaN; flat line if > 80 % of successive
    differences are exactly 0 or the segment is constant; clipping if > 2 %
    of samples sit at the recording's minimum or maximum (the ADC rails);
    rate outside 30-200 beats/min or 4-40 breaths/min; irregular if > 20 % of
    RR intervals deviate > 30 % from the running median; QRS template
    correlation (median correlation of each beat +-0.1 s with the segment's
    mean beat) < 0.5. The last partial segment is checked if >= 2 s long.
    """
    x = np.asarray(x, dtype=float)
    n = x.size
    seg_len = int(round(segment_s * sfreq))
    n_seg = max(int(np.ceil(n / seg_len)), 1) if n else 0
    if n_seg and n - (n_seg - 1) * seg_len < 2 * sfreq and n_seg > 1:
        n_seg -= 1  # merge a short tail into the previous segment
    finite = np.isfinite(x)
    lo, hi = (np.nanmin(x), np.nanmax(x)) if finite.any() else (np.nan, np.nan)
    rng_ = hi - lo if finite.any() else 0.0
    rail = finite & ((x >= hi - 1e-9 * max(rng_, 1e-30)) | (x <= lo + 1e-9 * max(rng_, 1e-30)))
    dx0 = np.concatenate([[False], np.diff(x) == 0])
    rows = []
    for k in range(n_seg):
        a = k * seg_len
        b = n if k == n_seg - 1 else min(n, a + seg_len)
        seg = x[a:b]
        reasons = []
        nan_frac = float(1 - finite[a:b].mean())
        flat_frac = float(dx0[a + 1 : b].mean()) if b - a > 1 else 1.0
        clip_frac = float(rail[a:b].mean()) if rng_ > 0 else 0.0
        fs_ = seg[np.isfinite(seg)]
        if nan_frac > 0.05:
            reasons.append("dropout")
        if flat_frac > 0.8 or fs_.size < 2 or np.ptp(fs_) == 0:
            reasons.append("flatline")
        if clip_frac > 0.02:
            reasons.append("clipping")
        rate = corr = np.nan
        t0, t1 = a / sfreq, b / sfreq
        events = beats_s if beats_s is not None else breaths_s
        if events is not None and "flatline" not in reasons:
            ev = events[(events >= t0) & (events < t1)]
            dur = t1 - t0
            rate = 60.0 * ev.size / dur if dur > 0 else np.nan
            lims = (30.0, 200.0) if beats_s is not None else _BR_RANGE_BPM
            if not lims[0] <= rate <= lims[1]:
                reasons.append("implausible_rate")
            elif beats_s is not None and ev.size >= 4:
                _, _, ok = _clean_rr(events[(events >= t0 - 5) & (events < t1 + 5)])
                if ok.size and np.mean(~ok) > 0.2:
                    reasons.append("irregular_rr")
        if ecg_clean is not None and beats_s is not None and "flatline" not in reasons:
            ev = np.round(beats_s[(beats_s >= t0 + 0.1) & (beats_s < t1 - 0.1)] * sfreq).astype(np.int64)
            half = max(int(round(0.1 * sfreq)), 2)
            ev = ev[(ev >= half) & (ev + half < ecg_clean.size)]
            if ev.size >= 3:
                w = ecg_clean[ev[:, None] + np.arange(-half, half + 1)]
                w = w - w.mean(axis=1, keepdims=True)
                tmpl = w.mean(axis=0)
                den = np.linalg.norm(w, axis=1) * np.linalg.norm(tmpl)
                corr = float(np.median(w @ tmpl / np.where(den > 0, den, np.inf)))
                if corr < 0.5:
                    reasons.append("low_template_corr")
        rows.append({"signal": signal, "segment": k, "start_s": t0, "end_s": t1, "ok": not reasons,
                     "reason": ";".join(reasons), "nan_fraction": nan_frac, "flat_fraction": flat_frac,
                     "clip_fraction": clip_frac, "rate": rate, "template_corr": corr})  # fmt: skip
    return pd.DataFrame(rows, columns=["signal", "segment", "start_s", "end_s", "ok", "reason", "nan_fraction",
                                       "flat_fraction", "clip_fraction", "rate", "template_corr"])  # fmt: skip


def _bad_mask(quality: pd.DataFrame, grid_s: np.ndarray) -> np.ndarray:
    """True on output-grid samples that fall in a poor segment."""
    bad = np.zeros(grid_s.size, dtype=bool)
    for r in quality[~quality["ok"]].itertuples():
        bad[(grid_s >= r.start_s) & (grid_s < r.end_s)] = True
    return bad


# ----------------------------------------------------------------------------- per signal


def _process_ecg(x: np.ndarray, sfreq: float, grid: np.ndarray, segment_s: float) -> dict[str, Any]:
    import neurokit2 as nk

    clean = nk.ecg_clean(_fill_nan(x), sampling_rate=sfreq, method="neurokit")
    _, pk = nk.ecg_peaks(clean, sampling_rate=sfreq, method="neurokit")
    peaks = np.asarray(pk["ECG_R_Peaks"], dtype=np.int64)
    peaks_s = peaks / sfreq
    q = segment_quality(x, sfreq, "ECG", segment_s=segment_s, beats_s=peaks_s, ecg_clean=clean)
    rr, mid, ok = _clean_rr(peaks_s)
    rate = np.where(ok, 60.0 / np.where(rr > 0, rr, np.nan), np.nan)
    hr = _interp_rate(mid, rate, grid)
    hr[_bad_mask(q, grid)] = np.nan
    # RR intervals inside poor segments are not used by HRV either
    bad_rr = _bad_mask(q, mid)
    rr_ms = np.where(ok & ~bad_rr, rr * 1000.0, np.nan)
    return {"columns": {"ECG_Rate": hr}, "quality": q, "info": {
        "ECG_R_Peaks": peaks, "ECG_R_Peaks_s": peaks_s, "ECG_RR_ms": rr_ms, "ECG_RR_mid_s": mid,
        "ECG_Rate_beats": 60.0 / np.where(rr > 0, rr, np.nan), "HRV": hrv_time(rr_ms)}}  # fmt: skip


def _process_ppg(x: np.ndarray, sfreq: float, grid: np.ndarray, segment_s: float) -> dict[str, Any]:
    import neurokit2 as nk

    y, fs = _resample(_fill_nan(x), sfreq, 100.0)
    clean = nk.ppg_clean(y, sampling_rate=fs)
    peaks_s = np.asarray(nk.ppg_findpeaks(clean, sampling_rate=fs)["PPG_Peaks"], dtype=float) / fs
    q = segment_quality(x, sfreq, "PPG", segment_s=segment_s, beats_s=peaks_s)
    rr, mid, ok = _clean_rr(peaks_s)
    rate = _interp_rate(mid, np.where(ok, 60.0 / np.where(rr > 0, rr, np.nan), np.nan), grid)
    rate[_bad_mask(q, grid)] = np.nan
    return {"columns": {"PPG_Rate": rate}, "quality": q, "info": {"PPG_Peaks_s": peaks_s}}


def _on_grid(y: np.ndarray, fs: float, grid: np.ndarray) -> np.ndarray:
    """Values of ``y`` (sampled at ``fs`` from 0 s) at ``grid`` times (linear)."""
    return np.interp(grid, np.arange(y.size) / fs, y, left=np.nan, right=np.nan)


def _process_rsp(x: np.ndarray, sfreq: float, grid: np.ndarray, segment_s: float, out_sfreq: float) -> dict[str, Any]:
    import neurokit2 as nk

    y, fs = _resample(_fill_nan(x), sfreq, out_sfreq)
    clean = np.asarray(nk.rsp_clean(y, sampling_rate=fs, method="khodadad2018"))
    _, pk = nk.rsp_peaks(clean, sampling_rate=fs, method="khodadad2018")
    amp = np.asarray(nk.rsp_amplitude(clean, pk), dtype=float)
    phase = np.asarray(nk.rsp_phase(pk, desired_length=clean.size)["RSP_Phase"], dtype=float)
    troughs = np.asarray(pk["RSP_Troughs"], dtype=np.int64)
    rate = nk.signal_rate(troughs, sampling_rate=fs, desired_length=clean.size) if troughs.size > 2 \
        else np.full(clean.size, np.nan)  # fmt: skip
    q = segment_quality(x, sfreq, "RSP", segment_s=segment_s, breaths_s=troughs / fs)
    cols = {"RSP_Clean": _on_grid(clean, fs, grid), "RSP_Amplitude": _on_grid(amp, fs, grid),
            "RSP_Rate": _on_grid(np.asarray(rate, dtype=float), fs, grid), "RSP_Phase": _on_grid(phase, fs, grid)}  # fmt: skip
    bad = _bad_mask(q, grid)
    for v in cols.values():
        v[bad] = np.nan
    return {"columns": cols, "quality": q, "info": {
        "RSP_Peaks_s": np.asarray(pk["RSP_Peaks"], dtype=float) / fs, "RSP_Troughs_s": troughs / fs}}  # fmt: skip


def _process_eda(x: np.ndarray, sfreq: float, grid: np.ndarray, segment_s: float, out_sfreq: float,
                 scale: float, min_amplitude_us: float) -> dict[str, Any]:  # fmt: skip
    import neurokit2 as nk

    y, fs = _resample(_fill_nan(x) * scale, sfreq, out_sfreq)
    clean = np.asarray(nk.eda_clean(y, sampling_rate=fs, method="neurokit"))
    dec = nk.eda_phasic(clean, sampling_rate=fs, method="highpass")
    phasic = dec["EDA_Phasic"].to_numpy(dtype=float)
    scr = detect_scr(phasic, fs, min_amplitude_us=min_amplitude_us)
    q = segment_quality(x, sfreq, "EDA", segment_s=segment_s)
    bad_q = q[~q["ok"]]
    if len(scr) and len(bad_q):
        in_bad = np.zeros(len(scr), dtype=bool)
        for r in bad_q.itertuples():
            in_bad |= (scr["peak_s"].to_numpy() >= r.start_s) & (scr["onset_s"].to_numpy() < r.end_s)
        scr = scr[~in_bad].reset_index(drop=True)
    cols = {"EDA_Clean": _on_grid(clean, fs, grid), "EDA_Tonic": _on_grid(dec["EDA_Tonic"].to_numpy(float), fs, grid),
            "EDA_Phasic": _on_grid(phasic, fs, grid)}  # fmt: skip
    bad = _bad_mask(q, grid)
    for v in cols.values():
        v[bad] = np.nan
    return {"columns": cols, "quality": q, "info": {"SCR": scr, "EDA_scale_to_uS": scale}}


def _process_skt(x: np.ndarray, sfreq: float, grid: np.ndarray, segment_s: float, out_sfreq: float) -> dict[str, Any]:
    from scipy.signal import butter, sosfiltfilt

    y, fs = _resample(_fill_nan(x), sfreq, out_sfreq)
    sos = butter(2, min(0.5, 0.4 * fs), btype="low", fs=fs, output="sos")
    level = sosfiltfilt(sos, y) if y.size > 30 else y
    slope = np.gradient(level, 1.0 / fs) if level.size > 1 else np.zeros_like(level)
    q = segment_quality(x, sfreq, "SKT", segment_s=segment_s)
    cols = {"SKT": _on_grid(level, fs, grid), "SKT_Slope": _on_grid(slope, fs, grid)}
    bad = _bad_mask(q, grid)
    for v in cols.values():
        v[bad] = np.nan
    return {"columns": cols, "quality": q, "info": {}}


# ----------------------------------------------------------------------------- public: processing


def process_physio(
    signals: pd.DataFrame | np.ndarray,
    sfreq: float,
    events: pd.DataFrame | None = None,
    *,
    columns: Mapping[str, str] | Sequence[str] | None = None,
    out_sfreq: float = 50.0,
    segment_s: float = 10.0,
    eda_unit: str = "auto",
    scr_min_amplitude_us: float = 0.02,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Process a synchronised physiology recording (ECG, PPG, RSP, EDA, SKT) quickly.

    Parameters
    ----------
    signals : pandas.DataFrame | ndarray, shape (n_samples, n_columns)
        Raw signals, one column each (ECG in V or mV, EDA in S or µS, SKT in
        °C; other units are relative). Extra columns are ignored. NaN marks
        dropouts.
    sfreq : float
        Sampling rate (Hz) of the rows (the physiology clock: row ``k`` is at
        ``k / sfreq`` s).
    events : pandas.DataFrame | None
        Optional events with ``onset_sample`` (row) or ``onset_s`` (s); they
        are returned in ``info["events"]`` with ``onset_s`` added.
    columns : mapping | sequence of str | None
        Signal type -> column name (DataFrame), or the signal type of every
        column (array, e.g. ``["ECG", "EDA"]``; None entries are skipped);
        None: DataFrame columns named ``ECG``, ``PPG``, ``RSP``, ``EDA``,
        ``SKT``/``SKT_A`` (BIDS/BIOPAC names) are recognised.
    out_sfreq : float
        Rate (Hz) of the returned table and of the slow signals' processing
        (RSP, EDA and SKT are downsampled to it first).
    segment_s : float
        Quality segment length (s).
    eda_unit : {"auto", "S", "uS"}
        Unit of the EDA column; ``"auto"``: siemens if its median is < 1e-3.
    scr_min_amplitude_us : float
        Smallest SCR kept (µS).

    Returns
    -------
    processed : pandas.DataFrame
        One row per output sample (``out_sfreq``): ``time_s``, and per
        available signal ``ECG_Rate`` (bpm), ``PPG_Rate`` (bpm), ``RSP_Clean``,
        ``RSP_Amplitude`` (trough-to-peak, input unit), ``RSP_Rate``
        (breaths/min), ``RSP_Phase`` (1 inspiration, 0 expiration),
        ``EDA_Clean``, ``EDA_Tonic``, ``EDA_Phasic`` (µS), ``SKT`` (°C),
        ``SKT_Slope`` (°C/s). NaN inside poor-quality segments.
    info : dict
        ``sampling_rate`` (Hz, output), ``input_sampling_rate``, ``signals``
        (type -> column), ``quality`` (:func:`segment_quality` rows of all
        signals), ``excluded_fraction`` (per signal), ``ECG_R_Peaks``
        (native samples), ``ECG_R_Peaks_s``, ``ECG_RR_ms`` (NaN = rejected
        interval), ``ECG_Rate_beats`` (bpm per RR interval), ``HRV``
        (:func:`hrv_time` over the good segments), ``PPG_Peaks_s``,
        ``RSP_Peaks_s``, ``RSP_Troughs_s``, ``SCR`` (:func:`detect_scr` table,
        good segments only), ``errors`` (signal -> message when a signal could
        not be processed at all), ``timing_s`` (per step), ``events``.

    Raises
    ------
    ValueError
        Unknown column/type, non-positive rates, or no recognised signal.

    Notes
    -----
    Uses only the fast NeuroKit2 steps (``ecg_clean``, ``ecg_peaks``,
    ``ppg_clean``, ``ppg_findpeaks``, ``rsp_clean``, ``rsp_peaks``,
    ``rsp_amplitude``, ``eda_clean``, ``eda_phasic(method="highpass")``)
    and skips ECG delineation. The instantaneous heart rate of an RR interval
    is placed at its midpoint (NeuroKit places it at the interval's end beat,
    about half an interval later). A signal that cannot be processed (e.g.
    entirely flat) is all-NaN with ``processing_failed`` quality, never an
    exception.

    Examples
    --------
    >>> import neurokit2 as nk
    >>> ecg = nk.ecg_simulate(duration=30, sampling_rate=250, heart_rate=70, random_state=0)
    >>> out, info = process_physio(pd.DataFrame({"ECG": ecg}), 250.0)
    >>> bool(abs(np.nanmedian(out["ECG_Rate"]) - 70) < 3)
    True
    """
    if not np.isfinite(sfreq) or sfreq <= 0 or out_sfreq <= 0 or segment_s <= 0:
        raise ValueError(f"sfreq ({sfreq}), out_sfreq ({out_sfreq}) and segment_s ({segment_s}) must be > 0")
    if eda_unit not in ("auto", "S", "uS"):
        raise ValueError(f"eda_unit must be 'auto', 'S' or 'uS', got {eda_unit!r}")
    if isinstance(signals, pd.DataFrame):
        frame = signals
        mapping = _map_columns(list(frame.columns), columns if isinstance(columns, Mapping) else None)
    else:
        arr = np.asarray(signals, dtype=float)
        arr = arr[:, None] if arr.ndim == 1 else arr
        if columns is None or isinstance(columns, Mapping) or len(columns) != arr.shape[1]:
            raise ValueError("an array needs `columns`: the signal type of each of its columns")
        names = [f"col{i}" for i in range(arr.shape[1])]
        frame = pd.DataFrame(arr, columns=names)
        mapping = {t: c for t, c in zip(columns, names, strict=True) if t is not None}
        _map_columns(names, mapping)
    if not mapping:
        raise ValueError(f"no physiological signal recognised among {list(frame.columns)}")
    n = len(frame)
    fs_out = min(float(out_sfreq), float(sfreq))
    grid = np.arange(int(np.floor(n / sfreq * fs_out))) / fs_out
    out: dict[str, np.ndarray] = {"time_s": grid}
    info: dict[str, Any] = {"sampling_rate": fs_out, "input_sampling_rate": float(sfreq), "signals": dict(mapping),
                            "errors": {}, "timing_s": {}}  # fmt: skip
    qualities = []
    for sig in SIGNAL_TYPES:
        if sig not in mapping:
            continue
        x = frame[mapping[sig]].to_numpy(dtype=float)
        t0 = time.perf_counter()
        try:
            if not np.isfinite(x).any() or np.nanmax(x) == np.nanmin(x):
                raise ValueError("signal is entirely missing or flat")
            if sig == "ECG":
                res = _process_ecg(x, sfreq, grid, segment_s)
            elif sig == "PPG":
                res = _process_ppg(x, sfreq, grid, segment_s)
            elif sig == "RSP":
                res = _process_rsp(x, sfreq, grid, segment_s, fs_out)
            elif sig == "EDA":
                scale = 1e6 if eda_unit == "S" or (eda_unit == "auto" and np.nanmedian(np.abs(x)) < 1e-3) else 1.0
                res = _process_eda(x, sfreq, grid, segment_s, fs_out, scale, scr_min_amplitude_us)
            else:
                res = _process_skt(x, sfreq, grid, segment_s, fs_out)
        except Exception as err:  # noqa: BLE001 - a broken signal is flagged, never fatal
            logger.warning("%s could not be processed (%s: %s); flagged and set to NaN", sig, type(err).__name__, err)
            info["errors"][sig] = f"{type(err).__name__}: {err}"
            q = segment_quality(x, sfreq, sig, segment_s=segment_s)
            q["ok"] = False
            q["reason"] = [";".join(filter(None, [r, "processing_failed"])) for r in q["reason"]]
            names = {"ECG": ["ECG_Rate"], "PPG": ["PPG_Rate"], "RSP": ["RSP_Clean", "RSP_Amplitude", "RSP_Rate", "RSP_Phase"],
                     "EDA": ["EDA_Clean", "EDA_Tonic", "EDA_Phasic"], "SKT": ["SKT", "SKT_Slope"]}[sig]  # fmt: skip
            res = {"columns": {c: np.full(grid.size, np.nan) for c in names}, "quality": q, "info": {}}
            if sig == "EDA":
                res["info"]["SCR"] = detect_scr(np.array([]), fs_out)
        info["timing_s"][sig] = time.perf_counter() - t0
        out.update(res["columns"])
        info.update(res["info"])
        qualities.append(res["quality"])
        bad = res["quality"][~res["quality"]["ok"]]
        if len(bad):
            logger.info("%s: %d of %d segments flagged (%s)", sig, len(bad), len(res["quality"]),
                        ", ".join(sorted(set(";".join(bad["reason"]).split(";")))))  # fmt: skip
    quality = pd.concat(qualities, ignore_index=True)
    info["quality"] = quality
    info["excluded_fraction"] = {
        s: float(1 - np.average(g["ok"], weights=g["end_s"] - g["start_s"])) for s, g in quality.groupby("signal")
    }
    if events is not None:
        ev = events.copy()
        if "onset_s" not in ev.columns:
            if "onset_sample" not in ev.columns:
                raise ValueError("events need an `onset_s` or `onset_sample` column")
            ev["onset_s"] = ev["onset_sample"].astype(float) / sfreq
        info["events"] = ev
    return pd.DataFrame(out), info


# ----------------------------------------------------------------------------- events


def session_sampling_rate(session: Any) -> float:
    """Sampling rate (Hz) of a BIDS session's physiology (the BIOPAC nominal rate, rows are not resampled).

    Raises
    ------
    ValueError
        If the session has no physiology.
    """
    if not session.has_physio:
        raise ValueError(f"{session.subject}: no physiology")
    sc = session.physio_sidecar
    return float(sc.get("MMMENominalSamplingFrequency", sc["SamplingFrequency"]))


def process_session(session: Any, config: Any, *, clean_baseline_s: float = 8.0,
                    clips: bool = True) -> tuple[pd.DataFrame, dict[str, Any], pd.DataFrame]:  # fmt: skip
    """Process a BIDS session's physiology and place its events on it.

    :func:`process_physio` at :func:`session_sampling_rate`, then
    :func:`session_events` restricted to events inside the recording.

    Returns
    -------
    processed, info : pandas.DataFrame, dict
        As :func:`process_physio`.
    events : pandas.DataFrame
        As :func:`session_events`, ``in_recording`` rows only.

    Raises
    ------
    ValueError
        ``"sub-XX: no physiology recording"`` if the session has none (the
        physiology analysis then excludes the subject with that reason).
    """
    if not session.has_physio:
        raise ValueError(f"{session.subject}: no physiology recording")
    processed, info = process_physio(_signal_table(session), session_sampling_rate(session))
    events = session_events(session, config, clean_baseline_s=clean_baseline_s, clips=clips)
    return processed, info, events[events["in_recording"]].reset_index(drop=True)


def _signal_table(session: Any) -> pd.DataFrame:
    """The session's physiology columns :func:`process_physio` recognises (only those are parsed)."""
    return session.read_physio(list(_map_columns(list(session.physio_sidecar["Columns"]), None).values()))


def session_events(session: Any, config: Any, *, clean_baseline_s: float = 8.0, clips: bool = True) -> pd.DataFrame:
    """Events of one session on the physiology clock: ME, MaE, NE controls and clip onsets.

    Parameters
    ----------
    session : BidsSession
        Read with physiology (``physio``, ``physio_sidecar``, ``expressions``, ``clips``).
    config : Config
        ``epochs`` (NE window and ``ne_min_distance_s``) and ``seed``: the NE
        centres are drawn exactly as for the EEG NE epochs
        (:func:`mmme_neuro.epochs.draw_ne_centers`), so they are the same
        moments of the same clips.
    clean_baseline_s : float
        An event has a clean baseline if no expression onset lies in the
        preceding ``clean_baseline_s`` seconds (and none at the same time).
    clips : bool
        Also return clip onsets (condition ``"clip"``).

    Returns
    -------
    events : pandas.DataFrame
        ``event_id``, ``subject``, ``condition``, ``expression_id`` (NE: None),
        ``matched_expression_id``, ``marker``, ``eeg_onset_s``,
        ``onset_sample`` (physiology row), ``onset_s`` (= row / rate, s),
        ``prev_gap_s`` (s since the previous expression onset, inf if none),
        ``next_gap_s``, ``clean_baseline`` (bool), ``in_recording`` (bool).
    """
    from .epochs import draw_ne_centers

    fs = session_sampling_rate(session)
    n = session.n_physio_rows
    ex = session.expressions
    rows = []
    for r in ex.itertuples():
        rows.append({"condition": r.kind, "expression_id": r.expression_id, "matched_expression_id": r.expression_id,
                     "marker": r.marker, "eeg_onset_s": float(r.eeg_onset_s)})  # fmt: skip
    sfreq_eeg = float(session.raw.info["sfreq"])
    rec_end = session.raw.n_times / sfreq_eeg
    if len(ex):
        ne, _ = draw_ne_centers(ex, session.clips, config, subject=session.subject, sfreq=sfreq_eeg,
                                recording_end_s=rec_end)  # fmt: skip
        for r in ne.itertuples():
            rows.append({"condition": "NE", "expression_id": None, "matched_expression_id": r.matched_expression_id,
                         "marker": r.marker, "eeg_onset_s": float(r.center_s)})  # fmt: skip
    if clips:
        for r in session.clips.itertuples():
            rows.append({"condition": "clip", "expression_id": None, "matched_expression_id": None,
                         "marker": r.marker, "eeg_onset_s": float(r.eeg_time_s)})  # fmt: skip
    ev = pd.DataFrame(rows, columns=["condition", "expression_id", "matched_expression_id", "marker", "eeg_onset_s"])
    ev["onset_sample"] = np.asarray(session.eeg_time_to_physio_sample(ev["eeg_onset_s"].to_numpy(float)), dtype=np.int64)
    ev["onset_s"] = ev["onset_sample"] / fs
    ex_on = np.sort(ev.loc[ev["condition"].isin(["ME", "MaE"]), "eeg_onset_s"].to_numpy(float))
    prev, nxt = [], []
    for t, cond in zip(ev["eeg_onset_s"], ev["condition"], strict=True):
        before = ex_on[ex_on < t - 1e-9] if cond in ("ME", "MaE") else ex_on[ex_on <= t]
        after = ex_on[ex_on > t + 1e-9]
        prev.append(t - before[-1] if before.size else np.inf)
        nxt.append(after[0] - t if after.size else np.inf)
    ev["prev_gap_s"], ev["next_gap_s"] = prev, nxt
    same = ev["condition"].isin(["ME", "MaE"]) & ev.duplicated("eeg_onset_s", keep=False)
    ev["clean_baseline"] = (ev["prev_gap_s"] >= clean_baseline_s) & ~same
    ev["in_recording"] = (ev["onset_sample"] >= 0) & (ev["onset_sample"] < n)
    ev = ev.sort_values(["onset_s", "condition"], kind="stable").reset_index(drop=True)
    ev.insert(0, "subject", session.subject)
    ev.insert(0, "event_id", [f"{session.subject}_ph{i:04d}" for i in range(len(ev))])
    return ev


# ----------------------------------------------------------------------------- epochs


def _cut(values: np.ndarray, fs: float, onsets_s: np.ndarray, tmin: float, tmax: float) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``values`` (n_events, n_times) around onsets (nearest sample; NaN outside)."""
    offs = np.arange(int(round(tmin * fs)), int(round(tmax * fs)) + 1)
    idx = np.round(onsets_s * fs).astype(np.int64)[:, None] + offs
    ok = (idx >= 0) & (idx < values.size)
    out = np.full(idx.shape, np.nan)
    out[ok] = values[idx[ok]]
    return out, offs / fs


def event_timecourses(processed: pd.DataFrame, info: Mapping[str, Any], events: pd.DataFrame, *,
                      tmin: float = -3.0, tmax: float = 12.0, baseline: tuple[float, float] = (-2.0, 0.0),
                      signals: Mapping[str, tuple[str, str, str]] | None = None) -> xr.DataArray:  # fmt: skip
    """Baseline-corrected event-locked time courses ``(epoch, signal, time)``.

    Parameters
    ----------
    processed, info : pandas.DataFrame, dict
        Output of :func:`process_physio`.
    events : pandas.DataFrame
        ``event_id``, ``condition``, ``onset_s`` (physiology clock, s); other
        columns (``subject``, ``clean_baseline``...) become epoch coordinates.
    tmin, tmax : float
        Window (s) around onset.
    baseline : tuple of float
        Baseline window (s).
    signals : mapping | None
        Processed column -> (name, mode, unit); mode ``"subtract"`` (minus the
        baseline mean) or ``"ratio"`` (value / baseline mean - 1). Default
        :data:`TIMECOURSE_SIGNALS`: ``hr`` (HR change, bpm), ``eda`` (phasic
        EDA change, µS), ``rsp`` (relative respiration amplitude change).

    Returns
    -------
    epochs : xarray.DataArray
        Dims ``(epoch, signal, time)``; an epoch touching a poor-quality
        segment (NaN) of a signal is all-NaN for that signal.
    """
    signals = dict(TIMECOURSE_SIGNALS if signals is None else signals)
    fs = float(info["sampling_rate"])
    onsets = events["onset_s"].to_numpy(float)
    data, names, units = [], [], []
    times = None
    for col, (name, mode, unit) in signals.items():
        if col not in processed.columns:
            continue
        w, times = _cut(processed[col].to_numpy(float), fs, onsets, tmin, tmax)
        bmask = (times >= baseline[0]) & (times <= baseline[1])
        base = w[:, bmask].mean(axis=1, keepdims=True)
        w = w - base if mode == "subtract" else w / np.where(base > 0, base, np.nan) - 1.0
        w[~np.isfinite(w).all(axis=1)] = np.nan
        data.append(w)
        names.append(name)
        units.append(unit)
    if not data:
        raise ValueError(f"none of {list(signals)} in the processed table")
    arr = np.stack(data, axis=1)
    coords: dict[str, Any] = {"epoch": events["event_id"].astype(str).to_numpy(), "signal": names,
                              "time": np.round(times, 6), "unit": ("signal", units)}  # fmt: skip
    for c in ("subject", "condition", "expression_id", "clean_baseline"):
        if c in events.columns:
            coords[c] = ("epoch", events[c].astype(object if c == "expression_id" else events[c].dtype).to_numpy())
    da = xr.DataArray(arr, dims=("epoch", "signal", "time"), coords=coords, name="physio_epochs")
    da["time"].attrs["units"] = "s"
    da.attrs.update(baseline_s=list(baseline), sampling_rate_hz=fs)
    return da


def event_features(processed: pd.DataFrame, info: Mapping[str, Any], events: pd.DataFrame, *,
                   baseline: tuple[float, float] = (-2.0, 0.0), hr_window: tuple[float, float] = (0.5, 6.0),
                   scr_window: tuple[float, float] = (1.0, 4.0), rsp_window: tuple[float, float] = (0.5, 6.0)
                   ) -> pd.DataFrame:  # fmt: skip
    """Per-epoch physiological response features (tidy: one row per event).

    Parameters
    ----------
    processed, info : pandas.DataFrame, dict
        Output of :func:`process_physio`.
    events : pandas.DataFrame
        ``event_id``, ``condition``, ``onset_s`` and any bookkeeping columns (kept).
    baseline : tuple of float
        Baseline window (s) before onset.
    hr_window : tuple of float
        Window (s) of the heart-rate response.
    scr_window : tuple of float
        Window (s) in which an SCR *onset* counts as a response (1-4 s
        classically; 0.5 s is a common lower bound too).
    rsp_window : tuple of float
        Window (s) of the respiration amplitude change.

    Returns
    -------
    features : pandas.DataFrame
        The event columns plus ``hr_change_bpm`` (mean HR in ``hr_window``
        minus baseline), ``hr_peak_change_bpm`` (most negative baseline-corrected
        HR in the window: the deceleration peak), ``hr_peak_latency_s``,
        ``scr_occurred`` (bool), ``scr_latency_s`` (first qualifying SCR onset,
        s), ``scr_amplitude_us`` (its amplitude; NaN without SCR),
        ``scr_magnitude_us`` (amplitude, 0 without SCR), ``eda_phasic_change_us``
        (max phasic EDA 1-5 s minus baseline), ``rsp_amplitude_change``
        (relative, e.g. -0.4 = 40 % smaller), ``rsp_rate_change_bpm``, and
        ``hr_ok``, ``eda_ok``, ``rsp_ok`` with ``excluded_reason`` (signals
        whose window touches a poor segment or the recording edge; their
        features are NaN).
    """
    fs = float(info["sampling_rate"])
    on = events["onset_s"].to_numpy(float)
    out = events.copy().reset_index(drop=True)
    lo = min(baseline[0], 0.0)
    hi = max(hr_window[1], scr_window[1] + 1.0, rsp_window[1], 5.0)
    reasons = [[] for _ in range(len(out))]

    def win(col: str) -> tuple[np.ndarray, np.ndarray] | None:
        if col not in processed.columns:
            return None
        return _cut(processed[col].to_numpy(float), fs, on, lo, hi)

    def mean_in(w: np.ndarray, t: np.ndarray, a: float, b: float) -> np.ndarray:
        return w[:, (t >= a) & (t <= b)].mean(axis=1)

    hr = win("ECG_Rate")
    if hr is not None:
        w, t = hr
        ok = np.isfinite(w).all(axis=1)
        d = w - mean_in(w, t, *baseline)[:, None]
        m = (t >= hr_window[0]) & (t <= hr_window[1])
        out["hr_change_bpm"] = np.where(ok, mean_in(d, t, *hr_window), np.nan)
        imin = np.argmin(np.where(np.isfinite(d[:, m]), d[:, m], np.inf), axis=1)
        out["hr_peak_change_bpm"] = np.where(ok, d[:, m][np.arange(len(d)), imin], np.nan)
        out["hr_peak_latency_s"] = np.where(ok, t[m][imin], np.nan)
        out["hr_ok"] = ok
        for i in np.flatnonzero(~ok):
            reasons[i].append("hr_poor_quality")
    eda = win("EDA_Phasic")
    if eda is not None:
        w, t = eda
        ok = np.isfinite(w).all(axis=1)
        base = mean_in(w, t, *baseline)
        out["eda_phasic_change_us"] = np.where(ok, w[:, (t >= 1.0) & (t <= 5.0)].max(axis=1) - base, np.nan)
        scr = info.get("SCR")
        lat, amp = np.full(len(out), np.nan), np.full(len(out), np.nan)
        if scr is not None and len(scr):
            s_on, s_amp = scr["onset_s"].to_numpy(float), scr["amplitude_us"].to_numpy(float)
            for i, t0 in enumerate(on):
                k = np.flatnonzero((s_on >= t0 + scr_window[0]) & (s_on <= t0 + scr_window[1]))
                if k.size:
                    lat[i], amp[i] = s_on[k[0]] - t0, s_amp[k[0]]
        out["scr_occurred"] = np.where(ok, np.isfinite(lat), np.nan)
        out["scr_latency_s"] = np.where(ok, lat, np.nan)
        out["scr_amplitude_us"] = np.where(ok, amp, np.nan)
        out["scr_magnitude_us"] = np.where(ok, np.nan_to_num(amp, nan=0.0), np.nan)
        out["eda_ok"] = ok
        for i in np.flatnonzero(~ok):
            reasons[i].append("eda_poor_quality")
    rsp = win("RSP_Amplitude")
    if rsp is not None:
        w, t = rsp
        ok = np.isfinite(w).all(axis=1)
        base = mean_in(w, t, *baseline)
        out["rsp_amplitude_change"] = np.where(ok & (base > 0), mean_in(w, t, *rsp_window) / base - 1.0, np.nan)
        rr = win("RSP_Rate")
        if rr is not None:
            wr, _ = rr
            out["rsp_rate_change_bpm"] = np.where(ok, mean_in(wr, t, *rsp_window) - mean_in(wr, t, *baseline), np.nan)
        out["rsp_ok"] = ok
        for i in np.flatnonzero(~ok):
            reasons[i].append("rsp_poor_quality")
    out["excluded_reason"] = [";".join(r) for r in reasons]
    return out


def group_timecourses(epochs: Sequence[xr.DataArray], *, conditions: Sequence[str] = ("ME", "MaE", "NE"),
                      clean_only: bool | Mapping[str, bool] = True) -> xr.DataArray:  # fmt: skip
    """Average event time courses per subject and condition.

    Parameters
    ----------
    epochs : sequence of xarray.DataArray
        :func:`event_timecourses` outputs (one per subject, ``subject`` coordinate).
    conditions : sequence of str
        Conditions kept, in order.
    clean_only : bool | mapping of str to bool
        Average only clean-baseline epochs (all signals, or per signal name:
        e.g. ``{"hr": True, "eda": False, "rsp": True}``).

    Returns
    -------
    group : xarray.DataArray
        Dims ``(subject, condition, signal, time)`` (NaN where a subject has no
        epoch), coordinate ``n_epochs`` ``(subject, condition, signal)``.
    """
    if not epochs:
        raise ValueError("no epochs to average")
    subjects = [str(np.unique(e["subject"].values)[0]) for e in epochs]
    sig = list(epochs[0]["signal"].values)
    times = epochs[0]["time"].values
    arr = np.full((len(subjects), len(conditions), len(sig), times.size), np.nan)
    counts = np.zeros((len(subjects), len(conditions), len(sig)), dtype=np.int64)
    for i, e in enumerate(epochs):
        for k, s in enumerate(sig):
            clean = clean_only.get(s, True) if isinstance(clean_only, Mapping) else clean_only
            x = e.sel(signal=s)
            for j, c in enumerate(conditions):
                m = e["condition"].values == c
                if clean and "clean_baseline" in e.coords:
                    m &= e["clean_baseline"].values.astype(bool)
                v = x.values[m]
                v = v[np.isfinite(v).all(axis=1)]
                counts[i, j, k] = len(v)
                if len(v):
                    arr[i, j, k] = v.mean(axis=0)
    units = epochs[0]["unit"].values if "unit" in epochs[0].coords else [""] * len(sig)
    da = xr.DataArray(arr, dims=("subject", "condition", "signal", "time"),
                      coords={"subject": subjects, "condition": list(conditions), "signal": sig, "time": times,
                              "unit": ("signal", list(units)),
                              "n_epochs": (("subject", "condition", "signal"), counts)},
                      name="physio_timecourses")  # fmt: skip
    da["time"].attrs["units"] = "s"
    da.attrs.update(epochs[0].attrs)
    da.attrs["clean_only"] = dict(clean_only) if isinstance(clean_only, Mapping) else bool(clean_only)
    return da
