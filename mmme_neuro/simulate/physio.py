"""Synthetic BIOPAC MP160 physiology of one session (the 17 AcqKnowledge columns).

Every signal is generated on the *physiology* clock: EEG-clock times of the
design (expression onsets, markers) and of the shared heartbeat/breathing
timeline (:func:`~mmme_neuro.simulate.cardiac.cardio_respiratory`) are mapped
with :meth:`SubjectDesign.to_physio_time`, so the planted clock offset and drift
are what a synchronisation step has to recover.

What is planted (the ground truth, see :class:`PhysioTruth`):

- heart rate: the expression-locked decelerations are already in the R-peak
  times of the shared timeline; ECG, PPG and the rate channel follow them;
- respiration: the breathing amplitude is multiplied by the timeline's
  ``rsp_gain`` (expression-locked amplitude change);
- EDA: a skin-conductance response after each recorded expression with
  probability ``scr_probability[kind]``, onset latency uniform in
  ``scr_latency_s`` and amplitude ``scr_amplitude_us[kind]`` (times a
  log-normal factor of SD ``scr_amplitude_sd_log``, mean 1), on top of
  spontaneous non-specific SCRs;
- facial EMG: bursts from onset to offset (+ ``emg.tail_s``) with the
  expression's own RMS (:func:`~.effects.expression_effects`: log-normal
  around the subject's median for the condition, action-unit dependent)
  times ``emg.emg_channel_gain``; EMG A (corrugator) follows the expression's
  frontal-site weight (upper-face action units), EMG B (zygomaticus) the
  larger lateral weight (mid/lower-face units), so each channel has
  cross-talk of the other region;
- digital lines: each marker with ``in_physio`` as its 8-bit code held for
  20 ms from its physiology sample.

Every planted value is the subject's (:func:`~.effects.subject_effects`).
Random draws do not depend on the effect sizes, so a study and its null
control share the same noise; only the planted responses differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d
from scipy.signal import butter, sosfilt

from ..constants import BIOPAC_LABELS, DIGITAL_HIGH_V
from .cardiac import CardioRespiratory, cardio_respiratory
from .design import SubjectDesign, subject_rng
from .effects import Effects, expression_effects, subject_effects

__all__ = ["PhysioTruth", "simulate_physio"]

#: Duration (s) a marker code is held on the digital lines.
MARKER_PULSE_S: float = 0.020
#: Rise and decay time constants (s) of the Bateman-shaped SCR.
SCR_TAU_S: tuple[float, float] = (0.7, 3.0)
#: Spontaneous (non-specific) SCR rate range (responses per minute).
NS_SCR_PER_MIN: tuple[float, float] = (1.8, 3.2)

_COL = {label: i for i, label in enumerate(BIOPAC_LABELS)}
_PPG, _RSP, _EMG_A, _SKT_A, _EDA, _ECG, _EMG_B, _SKT_B = (
    _COL[k]
    for k in (
        "PPG, X, PPGED-R", "RSP, X, RSPEC-R", "EMG A, X, EMG2-R", "SKT A, X, SKT2-R",
        "EDA, X, PPGED-R", "ECG, X, RSPEC-R", "EMG B, X, EMG2-R", "SKT B, X, SKT2-R",
    )
)  # fmt: skip
_DIGITAL = tuple(_COL[f"Digital (STP Input {i})"] for i in range(8))
_RATE = _COL["ECG rate (.5 - 35 Hz)"]

#: A signal as a function of time (s).
Wave = Callable[[np.ndarray], np.ndarray]

# PQRST template: (amplitude mV, centre s relative to the R peak, SD s). The T-wave centre
# is replaced per beat by a Bazett-like 0.29 * sqrt(RR).
_ECG_WAVES = np.array(
    [
        [0.13, -0.165, 0.022],  # P
        [-0.12, -0.028, 0.008],  # Q
        [1.20, 0.000, 0.0095],  # R
        [-0.30, 0.030, 0.009],  # S
        [0.30, 0.290, 0.048],  # T
        [0.05, 0.345, 0.030],  # T, steeper descent
    ]
)
_ECG_WINDOW_S = (-0.30, 0.60)
# PPG pulse: (relative amplitude, centre s after the pulse foot, SD s): systolic, diastolic.
_PPG_WAVES = np.array([[1.0, 0.12, 0.050], [0.42, 0.34, 0.075]])
_PPG_WINDOW_S = (0.0, 1.05)  # relative to the R peak (covers transit delay + pulse)


@dataclass
class PhysioTruth:
    """What was realised in one subject's physiology (physiology clock).

    Per-expression attributes are arrays with one entry per row of
    ``subject.expressions`` (same order); :meth:`to_frame` returns them as a table.

    Attributes
    ----------
    expr_id, kind : ndarray of str
        Expression id and condition (``"ME"``/``"MaE"``).
    recorded : ndarray of bool
        False for expressions in clips missing from the recordings (no response planted).
    physio_onset_s : ndarray of float
        Expression onset on the physiology clock (s).
    physio_onset_sample, physio_offset_sample : ndarray of int
        Physiology sample of expression onset and offset.
    scr_occurred : ndarray of bool
        Whether a planted SCR followed the expression.
    scr_onset_latency_s : ndarray of float
        SCR onset minus expression onset (s); NaN without SCR.
    scr_onset_sample : ndarray of int
        Physiology sample of the SCR onset; -1 without SCR.
    scr_amplitude_us : ndarray of float
        Peak amplitude of the planted SCR alone (µS); 0 without SCR.
    hr_change_bpm : ndarray of float
        Planted peak heart-rate change (beats/min) at ``hr_peak_s`` after onset
        (the expression's own, :func:`~.effects.expression_effects`).
    rsp_amplitude_change : ndarray of float
        Planted relative change of breathing amplitude in ``rsp_window_s`` (the expression's own).
    emg_a_rms_mv, emg_b_rms_mv : ndarray of float
        RMS of the EMG burst added on EMG A / EMG B (mV), 0 if none.
    r_peaks_s : ndarray of float
        All R-peak times inside the recording (s, physiology clock).
    spontaneous_scr_onsets_s, spontaneous_scr_amplitudes_us : ndarray of float
        Non-specific SCRs (onset s, physiology clock; peak amplitude µS).
    baseline_hr_bpm, breathing_rate_hz : float
        Resting heart rate (beats/min) and breathing rate (Hz) of the subject.
    pulse_transit_s : float
        Mean delay from R peak to PPG pulse foot (s).
    scl_us : float
        Baseline skin-conductance level (µS).
    """

    expr_id: np.ndarray
    kind: np.ndarray
    recorded: np.ndarray
    physio_onset_s: np.ndarray
    physio_onset_sample: np.ndarray
    physio_offset_sample: np.ndarray
    scr_occurred: np.ndarray
    scr_onset_latency_s: np.ndarray
    scr_onset_sample: np.ndarray
    scr_amplitude_us: np.ndarray
    hr_change_bpm: np.ndarray
    rsp_amplitude_change: np.ndarray
    emg_a_rms_mv: np.ndarray
    emg_b_rms_mv: np.ndarray
    r_peaks_s: np.ndarray = field(repr=False)
    spontaneous_scr_onsets_s: np.ndarray = field(repr=False)
    spontaneous_scr_amplitudes_us: np.ndarray = field(repr=False)
    baseline_hr_bpm: float = np.nan
    breathing_rate_hz: float = np.nan
    pulse_transit_s: float = np.nan
    scl_us: float = np.nan

    _PER_EXPRESSION = (
        "expr_id", "kind", "recorded", "physio_onset_s", "physio_onset_sample",
        "physio_offset_sample", "scr_occurred", "scr_onset_latency_s", "scr_onset_sample",
        "scr_amplitude_us", "hr_change_bpm", "rsp_amplitude_change", "emg_a_rms_mv",
        "emg_b_rms_mv",
    )  # fmt: skip

    def to_frame(self) -> pd.DataFrame:
        """Return the per-expression responses, one row per expression.

        Returns
        -------
        frame : pandas.DataFrame
            Columns ``expr_id``, ``kind``, ``recorded``, ``physio_onset_s``,
            ``physio_onset_sample``, ``physio_offset_sample``, ``scr_occurred``,
            ``scr_onset_latency_s`` (s), ``scr_onset_sample``, ``scr_amplitude_us`` (µS),
            ``hr_change_bpm``, ``rsp_amplitude_change``, ``emg_a_rms_mv``, ``emg_b_rms_mv`` (mV).
        """
        return pd.DataFrame({name: getattr(self, name) for name in self._PER_EXPRESSION})


def simulate_physio(
    subject: SubjectDesign, effects: Effects, seed: int
) -> tuple[np.ndarray, PhysioTruth]:
    """Simulate the 17-column BIOPAC recording of one session.

    Parameters
    ----------
    subject : SubjectDesign
        The session's design (EEG clock); the signals are on its physiology clock.
    effects : Effects
        Planted effects, population (``effects.physio`` and ``effects.emg`` are used
        here, with the subject's drawn values; the heart-rate and breathing responses
        come from the shared cardio-respiratory timeline).
    seed : int
        Study seed. The output depends only on ``(seed, subject, effects)``.

    Returns
    -------
    data : ndarray, shape (physio_n_samples, 17), float64, Fortran order
        Columns in :data:`~mmme_neuro.constants.BIOPAC_LABELS` order, in
        :data:`~mmme_neuro.constants.BIOPAC_UNITS`: PPG (V), RSP (V), EMG A (mV),
        SKT A (°C), EDA (µS), ECG (mV), EMG B (mV), SKT B (°C), 8 digital lines
        (0 or 5 V), ECG rate (beats/min, 0 before the second beat).
    truth : PhysioTruth
        The realised responses.
    """
    fs = float(subject.physio_sfreq)
    n = subject.physio_n_samples
    per_expr = expression_effects(subject, effects, seed)
    effects = subject_effects(effects, subject.index, seed)
    rng = subject_rng(seed, subject.index, "physio")
    r_sub, r_ecg, r_ppg, r_rsp, r_eda, r_skt, r_emg = rng.spawn(7)
    cr = cardio_respiratory(subject, effects, seed)
    data = np.zeros((n, len(BIOPAC_LABELS)), order="F")
    duration = n / fs

    # EEG-clock time of every physiology sample (one full-length array, reused)
    t_eeg = np.arange(n, dtype=float)
    t_eeg /= fs
    t_eeg -= subject.physio_offset_s
    t_eeg /= 1.0 + subject.physio_drift_ppm * 1e-6
    span = (float(t_eeg[0]) if n else 0.0, float(t_eeg[-1]) if n else 0.0)

    resp_wave = _respiration_wave(r_sub, cr, span)
    beats_eeg = cr.r_peaks_s[(cr.r_peaks_s > span[0] - 2.0) & (cr.r_peaks_s < span[1] + 2.0)]
    beats = np.asarray(subject.to_physio_time(beats_eeg), dtype=float)
    rr = np.diff(beats, prepend=beats[0] - 60.0 / cr.baseline_hr_bpm)

    _ecg(data[:, _ECG], r_ecg, beats, rr, resp_wave(beats_eeg), resp_wave, t_eeg, fs)
    ptt = _ppg(data[:, _PPG], r_ppg, beats, resp_wave(beats_eeg), resp_wave, t_eeg, fs)
    _rsp(data[:, _RSP], r_rsp, cr, resp_wave, t_eeg)
    data[:, _RATE] = _rate_channel(beats, n, fs)
    _skin_temperature(data[:, _SKT_A], data[:, _SKT_B], r_skt, duration, fs)
    _digital_lines(data, subject, fs)

    ex = subject.expressions
    onset_ph = np.asarray(subject.to_physio_time(ex.eeg_onset_s.to_numpy(dtype=float)), dtype=float)
    offset_ph = np.asarray(
        subject.to_physio_time(ex.eeg_offset_s.to_numpy(dtype=float)), dtype=float
    )
    kinds = ex.kind.to_numpy(dtype=str)
    recorded = ex.recorded.to_numpy(dtype=bool)
    scr, scl, spont = _eda(data[:, _EDA], r_eda, effects, onset_ph, kinds, recorded, duration, fs)
    emg_rms = _emg(data[:, _EMG_A], data[:, _EMG_B], r_emg, effects, ex, per_expr, onset_ph, offset_ph, fs)
    del t_eeg

    inside = (beats >= 0.0) & (beats < duration)
    truth = PhysioTruth(
        expr_id=ex.expr_id.to_numpy(dtype=str),
        kind=kinds,
        recorded=recorded,
        physio_onset_s=onset_ph,
        physio_onset_sample=np.round(onset_ph * fs).astype(np.int64),
        physio_offset_sample=np.round(offset_ph * fs).astype(np.int64),
        scr_occurred=scr["occurred"],
        scr_onset_latency_s=np.where(scr["occurred"], scr["latency"], np.nan),
        scr_onset_sample=np.where(
            scr["occurred"], np.round((onset_ph + scr["latency"]) * fs), -1
        ).astype(np.int64),
        scr_amplitude_us=np.where(scr["occurred"], scr["amplitude"], 0.0),
        hr_change_bpm=per_expr.hr_change_bpm.to_numpy(dtype=float),
        rsp_amplitude_change=per_expr.rsp_amplitude_change.to_numpy(dtype=float),
        emg_a_rms_mv=emg_rms[:, 0],
        emg_b_rms_mv=emg_rms[:, 1],
        r_peaks_s=beats[inside],
        spontaneous_scr_onsets_s=spont[0],
        spontaneous_scr_amplitudes_us=spont[1],
        baseline_hr_bpm=cr.baseline_hr_bpm,
        breathing_rate_hz=cr.breathing_rate_hz,
        pulse_transit_s=ptt,
        scl_us=scl,
    )
    return data, truth


# --------------------------------------------------------------------------- helpers


def _slow_noise(
    rng: np.random.Generator, span: tuple[float, float], tau_s: float, sd: float
) -> Wave:
    """Smooth Gaussian noise of SD ``sd`` and correlation time ~``tau_s``, as a function of time.

    Drawn on a coarse grid (step ``tau_s / 4``) and linearly interpolated, so
    evaluating it at every sample costs one :func:`numpy.interp`.
    """
    step = tau_s / 4.0
    grid = np.arange(span[0] - 4 * tau_s, span[1] + 4 * tau_s + step, step)
    sigma = 4.0  # grid points = tau_s
    vals = gaussian_filter1d(rng.standard_normal(grid.size), sigma, mode="nearest")
    vals *= sd * np.sqrt(2.0 * np.sqrt(np.pi) * sigma)  # unit variance after the filter
    return lambda t: np.interp(t, grid, vals)


def _respiration_wave(
    rng: np.random.Generator, cr: CardioRespiratory, span: tuple[float, float]
) -> Wave:
    """Normalised breathing waveform (inspiration = rising) as a function of EEG-clock time.

    The phase is locked on average to the respiratory sinus arrhythmia of
    ``cr.hr_bpm`` (heart rate highest during inspiration) and wanders slowly
    (breath-to-breath rate variability of a few percent).
    """
    f = cr.breathing_rate_hz
    w = 2 * np.pi * f
    # RSA phase of hr = base + a*sin(w t + phi): least-squares projection on sin/cos
    s, c = np.sin(w * cr.grid_s), np.cos(w * cr.grid_s)
    phi = float(np.arctan2(np.mean(cr.hr_bpm * c), np.mean(cr.hr_bpm * s)))
    slow = _slow_noise(rng, span, 40.0, 0.9)
    fast = _slow_noise(rng, span, 6.0, 0.35)

    def wave(t: np.ndarray) -> np.ndarray:
        theta = w * t + phi + slow(t) + fast(t)
        # -cos: minimum (end of expiration) where HR is lowest; harmonic: short inspiration
        out = -np.cos(theta)
        out += 0.18 * np.sin(2 * theta)
        return out

    return wave


def _add_waves(
    col: np.ndarray,
    times_s: np.ndarray,
    fs: float,
    window_s: tuple[float, float],
    amp: np.ndarray,
    centre_s: np.ndarray,
    sd_s: np.ndarray,
    chunk: int = 2048,
) -> None:
    """Add a sum of Gaussians around each event time to ``col`` (in place), sub-sample exact.

    Parameters
    ----------
    col : ndarray, shape (n,)
        Signal to add to.
    times_s : ndarray, shape (n_events,)
        Event times (s, sample 0 at 0 s).
    fs : float
        Sampling rate (Hz).
    window_s : tuple of float
        Support of the template relative to the event (s).
    amp, centre_s : ndarray, shape (n_events, n_waves)
        Amplitude and centre (s, relative to the event) of each Gaussian.
    sd_s : ndarray, shape (n_waves,)
        Standard deviation (s) of each Gaussian.
    chunk : int
        Events processed at once (bounds memory).
    """
    n = col.size
    length = int(np.ceil((window_s[1] - window_s[0]) * fs)) + 1
    offs = np.arange(length)
    for a in range(0, times_s.size, chunk):
        t = times_s[a : a + chunk]
        first = np.floor((t + window_s[0]) * fs).astype(np.int64)
        idx = first[:, None] + offs
        lo, hi = max(int(idx[0, 0]), 0), min(int(idx[-1, -1]) + 1, n)
        if hi <= lo:
            continue
        dt = idx / fs - t[:, None]
        wave = np.zeros(idx.shape)
        for k in range(sd_s.size):
            z = (dt - centre_s[a : a + chunk, k, None]) / sd_s[k]
            wave += amp[a : a + chunk, k, None] * np.exp(-0.5 * z * z)
        ok = (idx >= lo) & (idx < hi)
        col[lo:hi] += np.bincount(idx[ok] - lo, weights=wave[ok], minlength=hi - lo)


def _ecg(
    col: np.ndarray,
    rng: np.random.Generator,
    beats: np.ndarray,
    rr: np.ndarray,
    resp_at_beats: np.ndarray,
    resp_wave: Wave,
    t_eeg: np.ndarray,
    fs: float,
) -> None:
    """ECG (mV): PQRST per beat, amplitude variation, respiratory wander, noise, 50 Hz."""
    gain = rng.uniform(0.7, 1.4)
    nb = beats.size
    qrs = gain * rng.normal(1.0, 0.03, nb) * (1.0 + 0.06 * resp_at_beats)
    tw = gain * rng.normal(1.0, 0.06, nb)
    amp = _ECG_WAVES[:, 0] * np.where(
        np.arange(_ECG_WAVES.shape[0]) >= 4, tw[:, None], qrs[:, None]
    )
    centre = np.broadcast_to(_ECG_WAVES[:, 1], amp.shape).copy()
    t_peak = 0.29 * np.sqrt(np.clip(rr, 0.4, 1.6))
    centre[:, 4] = t_peak
    centre[:, 5] = t_peak + (_ECG_WAVES[5, 1] - _ECG_WAVES[4, 1])
    _add_waves(col, beats, fs, _ECG_WINDOW_S, amp, centre, _ECG_WAVES[:, 2])
    _add_baseline_and_noise(col, rng, t_eeg, fs, resp_wave, resp_gain=0.04 * gain,
                            drift_sd=0.05, noise_sd=0.006, line_amp=0.004)  # fmt: skip


def _ppg(
    col: np.ndarray,
    rng: np.random.Generator,
    beats: np.ndarray,
    resp_at_beats: np.ndarray,
    resp_wave: Wave,
    t_eeg: np.ndarray,
    fs: float,
) -> float:
    """PPG (V): systolic + diastolic pulse after each R peak (transit delay), return mean delay (s)."""
    ptt = float(rng.uniform(0.20, 0.28))
    nb = beats.size
    scale = rng.uniform(0.15, 0.45) * rng.normal(1.0, 0.04, nb) * (1.0 + 0.08 * resp_at_beats)
    foot = ptt + rng.normal(0.0, 0.004, nb)
    amp = _PPG_WAVES[:, 0] * scale[:, None]
    centre = foot[:, None] + _PPG_WAVES[:, 1]
    _add_waves(col, beats, fs, _PPG_WINDOW_S, amp, centre, _PPG_WAVES[:, 2])
    _add_baseline_and_noise(col, rng, t_eeg, fs, resp_wave, resp_gain=-0.03,
                            drift_sd=0.03, noise_sd=0.002, line_amp=0.0)  # fmt: skip
    return ptt


def _add_baseline_and_noise(
    col: np.ndarray,
    rng: np.random.Generator,
    t_eeg: np.ndarray,
    fs: float,
    resp_wave: Wave,
    *,
    resp_gain: float,
    drift_sd: float,
    noise_sd: float,
    line_amp: float,
) -> None:
    """Add respiratory baseline wander, slow drift, white noise and 50-Hz mains (in place)."""
    span = (float(t_eeg[0]), float(t_eeg[-1])) if t_eeg.size else (0.0, 0.0)
    if resp_gain:
        col += resp_gain * resp_wave(t_eeg)
    col += _slow_noise(rng, span, 30.0, drift_sd)(t_eeg)
    col += rng.normal(0.0, noise_sd, col.size)
    if line_amp:
        col += line_amp * np.sin(
            2 * np.pi * 50.0 * (np.arange(col.size) / fs) + rng.uniform(0, 2 * np.pi)
        )


def _rsp(
    col: np.ndarray,
    rng: np.random.Generator,
    cr: CardioRespiratory,
    resp_wave: Wave,
    t_eeg: np.ndarray,
) -> None:
    """Respiration belt (V): breathing wave x amplitude gain (planted change) + drift + noise."""
    span = (float(t_eeg[0]), float(t_eeg[-1])) if t_eeg.size else (0.0, 0.0)
    col[:] = resp_wave(t_eeg)
    env = np.interp(t_eeg, cr.grid_s, cr.rsp_gain)
    env *= rng.uniform(0.3, 0.8)
    env *= 1.0 + _slow_noise(rng, span, 8.0, 0.08)(t_eeg)
    col *= env
    del env
    col += _slow_noise(rng, span, 60.0, 0.1)(t_eeg)
    col += rng.normal(0.0, 0.004, col.size)


def _rate_channel(beats: np.ndarray, n: int, fs: float) -> np.ndarray:
    """AcqKnowledge-like heart-rate channel (beats/min): 60 / RR held from each beat to the next."""
    out = np.zeros(n)
    b = beats[(beats >= 0.0) & (beats < n / fs)]
    if b.size < 2:
        return out
    idx = np.round(b * fs).astype(np.int64)
    rate = 60.0 / np.diff(b)
    ends = np.append(idx[2:], n)
    out[idx[1] :] = np.repeat(rate, ends - idx[1:])
    return out


def _skin_temperature(
    col_a: np.ndarray, col_b: np.ndarray, rng: np.random.Generator, duration: float, fs: float
) -> None:
    """Finger/face skin temperature A and B (°C): ~32 °C, slow drifts, 16-bit quantisation."""
    n = col_a.size
    t = np.arange(n) / fs
    span = (0.0, duration)
    base_a = rng.uniform(31.0, 33.5)
    base_b = base_a + rng.normal(0.0, 0.4)
    common = _slow_noise(rng, span, 300.0, 0.25)(t)
    for col, base in ((col_a, base_a), (col_b, base_b)):
        col[:] = common
        col += base
        col += _slow_noise(rng, span, 90.0, 0.06)(t)
        col += rng.normal(0.0, 0.002, n)
        _quantise(col, 40.0 / 65536)


def _quantise(col: np.ndarray, step: float) -> None:
    """Round to the ADC step (in place)."""
    col /= step
    np.round(col, out=col)
    col *= step


def _bateman(t: np.ndarray) -> np.ndarray:
    """SCR shape with peak 1, 0 before onset (``t`` s since onset)."""
    tr, td = SCR_TAU_S
    t_peak = np.log(td / tr) * tr * td / (td - tr)
    norm = np.exp(-t_peak / td) - np.exp(-t_peak / tr)
    t = np.clip(t, 0.0, None)
    return (np.exp(-t / td) - np.exp(-t / tr)) / norm


def _eda(
    col: np.ndarray,
    rng: np.random.Generator,
    effects: Effects,
    onset_ph: np.ndarray,
    kinds: np.ndarray,
    recorded: np.ndarray,
    duration: float,
    fs: float,
) -> tuple[dict[str, np.ndarray], float, tuple[np.ndarray, np.ndarray]]:
    """EDA (µS): tonic level with drift + spontaneous and expression-locked SCRs.

    Returns the planted SCR draws (dict of arrays per expression), the baseline
    SCL (µS) and the spontaneous SCRs (onsets s, amplitudes µS).
    """
    n = col.size
    p = effects.physio
    scl = float(rng.uniform(2.0, 10.0))
    # per-expression draws, made whatever the effect sizes (null and planted share noise)
    n_ex = onset_ph.size
    u = rng.random(n_ex)
    latency = rng.uniform(*p.scr_latency_s, size=n_ex)
    sd = p.scr_amplitude_sd_log
    amp_factor = np.exp(rng.standard_normal(n_ex) * sd - sd**2 / 2)
    prob = np.array([p.scr_probability.get(k, 0.0) for k in kinds])
    amplitude = np.array([p.scr_amplitude_us.get(k, 0.0) for k in kinds]) * amp_factor
    occurred = recorded & (u < prob) & (amplitude > 0)
    # spontaneous non-specific SCRs
    rate = rng.uniform(*NS_SCR_PER_MIN) / 60.0
    t0 = -30.0
    n_ns = int(rng.poisson(rate * (duration - t0)))
    ns_on = np.sort(rng.uniform(t0, duration, n_ns))
    ns_amp = np.exp(rng.normal(np.log(0.08), 0.6, n_ns))

    t = np.arange(n) / fs
    col[:] = _slow_noise(rng, (0.0, duration), 120.0, 0.12)(t)
    col += rng.uniform(-0.15, 0.0) * t / max(duration, 1.0)  # habituation: tonic decline
    np.exp(col, out=col)
    col *= scl
    del t
    on = np.concatenate([ns_on, (onset_ph + latency)[occurred]])
    amps = np.concatenate([ns_amp, amplitude[occurred]])
    length = int(np.ceil(8 * SCR_TAU_S[1] * fs))
    for t_on, a in zip(on, amps, strict=True):
        i0 = max(int(np.ceil(t_on * fs)), 0)
        i1 = min(int(np.ceil(t_on * fs)) + length, n)
        if i1 > i0:
            col[i0:i1] += a * _bateman(np.arange(i0, i1) / fs - t_on)
    col += rng.normal(0.0, 0.003, n)
    _quantise(col, 100.0 / 65536)
    keep = ns_on >= 0.0
    scr = {"occurred": occurred, "latency": latency, "amplitude": amplitude}
    return scr, scl, (ns_on[keep], ns_amp[keep])


def _emg(
    col_a: np.ndarray,
    col_b: np.ndarray,
    rng: np.random.Generator,
    effects: Effects,
    ex: pd.DataFrame,
    per_expr: pd.DataFrame,
    onset_ph: np.ndarray,
    offset_ph: np.ndarray,
    fs: float,
) -> np.ndarray:
    """Facial EMG A/B (mV): band-limited noise with expression bursts; return burst RMS (n_ex, 2).

    Burst RMS on EMG A = ``emg_rms_uv * emg_channel_gain * emg_w_frontal``, on EMG B
    the same with ``max(emg_w_left, emg_w_right)`` (per-expression values of
    :func:`~.effects.expression_effects`).
    """
    n = col_a.size
    e = effects.emg
    hi = min(450.0, 0.45 * fs)
    sos = butter(4, [20.0, hi], btype="bandpass", fs=fs, output="sos")
    ramp = max(int(round(0.02 * fs)), 1)
    rms = np.zeros((len(ex), 2))
    base = per_expr.emg_rms_uv.to_numpy(dtype=float) * e.emg_channel_gain * 1e-3
    weights = np.stack([per_expr.emg_w_frontal.to_numpy(dtype=float),
                        np.maximum(per_expr.emg_w_left.to_numpy(dtype=float),
                                   per_expr.emg_w_right.to_numpy(dtype=float))], axis=1)  # fmt: skip
    recorded = ex.recorded.to_numpy(dtype=bool)
    for j, col in enumerate((col_a, col_b)):
        env = np.full(n, rng.uniform(0.002, 0.004))  # resting tone (mV RMS)
        for i in range(len(ex)):
            level = base[i] * weights[i, j]
            if not recorded[i] or level <= 0:
                continue
            i0 = int(round(onset_ph[i] * fs))
            i1 = int(round((offset_ph[i] + e.tail_s) * fs))
            seg = np.ones(max(i1 - i0, 1))
            r = min(ramp, seg.size // 2)
            if r:
                taper = 0.5 - 0.5 * np.cos(np.pi * (np.arange(r) + 0.5) / r)
                seg[:r] *= taper
                seg[-r:] *= taper[::-1]
            a, b = max(i0, 0), min(i0 + seg.size, n)
            if b > a:
                env[a:b] = np.sqrt(env[a:b] ** 2 + (level * seg[a - i0 : b - i0]) ** 2)
                rms[i, j] = level
        carrier = sosfilt(sos, rng.standard_normal(n))
        sd = float(np.sqrt(np.mean(carrier**2))) if n else 1.0
        carrier *= env / sd
        col[:] = carrier
        col += 0.001 * np.sin(2 * np.pi * 50.0 * (np.arange(n) / fs) + rng.uniform(0, 2 * np.pi))
    return rms


def _digital_lines(data: np.ndarray, subject: SubjectDesign, fs: float) -> None:
    """Write each in-physio marker's 8-bit code on the digital columns for 20 ms (0/5 V)."""
    n = data.shape[0]
    codes = np.zeros(n, dtype=np.uint8)
    mk = subject.markers[subject.markers.in_physio.astype(bool)]
    width = max(int(round(MARKER_PULSE_S * fs)), 1)
    samples = subject.physio_sample(mk.eeg_time_s.to_numpy(dtype=float))
    for s, code in zip(samples, mk.code.to_numpy(dtype=np.int64), strict=True):
        if not 0 <= code <= 255:
            raise ValueError(f"marker code {code} does not fit the 8 digital lines")
        a, b = max(int(s), 0), min(int(s) + width, n)
        if b > a:
            codes[a:b] = code
    for bit, col in enumerate(_DIGITAL):
        data[:, col] = ((codes >> bit) & 1) * DIGITAL_HIGH_V
