"""Heartbeat and breathing timeline of a synthetic subject (shared by EEG and physiology).

The heart beats once, whichever device records it: the EKG channel and the
cardiac-field artefact of the EEG and the ECG/PPG of the BIOPAC are all built
from the same R-peak times, given here on the EEG clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .design import SubjectDesign, subject_rng
from .effects import Effects, expression_effects, subject_effects

_GRID_HZ = 100.0  # resolution of the heart-rate integration (Hz); beat-time error < 1 ms


@dataclass(frozen=True)
class CardioRespiratory:
    """Cardiac and respiratory timeline of one subject, EEG clock.

    Attributes
    ----------
    r_peaks_s : ndarray, shape (n_beats,)
        R-peak times (s).
    grid_s : ndarray, shape (n_grid,)
        Time grid (s) of ``hr_bpm`` and ``rsp_gain``, at 100 Hz.
    hr_bpm : ndarray, shape (n_grid,)
        Instantaneous heart rate (beats/min), planted responses included.
    baseline_hr_bpm : float
        Subject's resting heart rate (beats/min).
    breathing_rate_hz : float
        Subject's breathing rate (Hz).
    rsp_gain : ndarray, shape (n_grid,)
        Multiplicative breathing-amplitude modulation (1 = baseline), planted responses included.
    """

    r_peaks_s: np.ndarray
    grid_s: np.ndarray
    hr_bpm: np.ndarray
    baseline_hr_bpm: float
    breathing_rate_hz: float
    rsp_gain: np.ndarray


def response_kernel(t: np.ndarray, peak_s: float, shape: float = 2.0) -> np.ndarray:
    """Gamma-shaped response, 0 before 0 s, peak value 1 at ``peak_s``.

    Parameters
    ----------
    t : ndarray
        Time since expression onset (s).
    peak_s : float
        Time of the peak (s).
    shape : float
        Gamma shape: the response is back under 5 % of its peak by about
        ``3.5 * peak_s`` for the default 2.
    """
    x = np.clip(np.asarray(t, dtype=float) / peak_s, 0.0, None)
    return x**shape * np.exp(shape * (1.0 - x))


def _window_gain(t: np.ndarray, window: tuple[float, float], ramp: float = 0.5) -> np.ndarray:
    a, b = window
    up = np.clip((t - a) / ramp, 0.0, 1.0)
    down = np.clip((b - t) / ramp, 0.0, 1.0)
    return np.minimum(up, down)


def cardio_respiratory(subject: SubjectDesign, effects: Effects, seed: int) -> CardioRespiratory:
    """Draw a subject's heartbeat and breathing timeline with the planted responses.

    Heart rate = resting rate + respiratory sinus arrhythmia + a slow (~0.1 Hz)
    fluctuation + for each recorded expression
    ``hr_change_bpm * response_kernel(t - onset, hr_peak_s)``. Breathing
    amplitude gain = 1 + ``rsp_amplitude_change`` inside ``rsp_window_s``
    after each onset (0.5-s ramps). Both values are the expression's own
    (:func:`~.effects.expression_effects`: the subject's value for the
    condition, :func:`~.effects.subject_effects`, with single-trial variability).

    Parameters
    ----------
    subject : SubjectDesign
        The subject's design (expressions on the EEG clock).
    effects : Effects
        Planted effects (population; the subject's values are drawn here).
    seed : int
        Study seed.

    Returns
    -------
    timeline : CardioRespiratory
    """
    rng = subject_rng(seed, subject.index, "cardiac")
    duration = subject.eeg_duration_s + 30.0  # covers the physiology recording's extra tail
    grid = np.arange(-30.0, duration, 1.0 / _GRID_HZ)
    base_hr = float(rng.uniform(62.0, 82.0))
    f_rsp = float(rng.uniform(0.22, 0.30))
    hr = base_hr + 2.5 * np.sin(2 * np.pi * f_rsp * grid + rng.uniform(0, 2 * np.pi))
    # slow Mayer-wave-like fluctuation: sum of a few random-phase sinusoids near 0.1 Hz
    for f in rng.uniform(0.05, 0.15, size=3):
        hr += 1.2 * np.sin(2 * np.pi * f * grid + rng.uniform(0, 2 * np.pi))
    gain = np.ones_like(grid)
    p = subject_effects(effects, subject.index, seed).physio
    per_expr = expression_effects(subject, effects, seed)
    ex = subject.expressions.assign(dhr=per_expr.hr_change_bpm.to_numpy(), dg=per_expr.rsp_amplitude_change.to_numpy())
    if len(ex):
        ex = ex[ex.recorded]
    for onset, dhr, dg in zip(ex.eeg_onset_s.to_numpy(), ex.dhr.to_numpy(), ex.dg.to_numpy(), strict=True):
        if dhr:
            sl = slice(*np.searchsorted(grid, [onset, onset + 6 * p.hr_peak_s]))
            hr[sl] += dhr * response_kernel(grid[sl] - onset, p.hr_peak_s)
        if dg:
            sl = slice(*np.searchsorted(grid, [onset, onset + p.rsp_window_s[1] + 1.0]))
            gain[sl] += dg * _window_gain(grid[sl] - onset, p.rsp_window_s)
    # beats where the integrated phase crosses an integer; small beat-to-beat jitter
    phase = np.cumsum(hr / 60.0) / _GRID_HZ
    k = np.arange(np.ceil(phase[0]), np.floor(phase[-1]) + 1)
    r_peaks = np.interp(k, phase, grid) + rng.normal(0.0, 0.004, size=k.size)
    r_peaks = np.sort(r_peaks[(r_peaks > grid[0]) & (r_peaks < grid[-1])])
    return CardioRespiratory(
        r_peaks_s=r_peaks, grid_s=grid, hr_bpm=hr, baseline_hr_bpm=base_hr,
        breathing_rate_hz=f_rsp, rsp_gain=gain,
    )  # fmt: skip
