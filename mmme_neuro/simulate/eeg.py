"""Synthetic Neuroscan-like EEG of one MMME session (69 columns), generated in chunks.

The output has the columns of :data:`~mmme_neuro.constants.ALL_EEG_FILE_CHANNELS`
(64 Quik-Cap EEG channels, HEO, VEO, EKG, EMG, Trigger), in µV (the Trigger
column holds marker codes), float32, sample-major (one row per sample).

What is in the signal
---------------------
Background (identical in a planted and a null study with the same seed, except that
the heartbeats follow the planted heart-rate responses of :func:`~.cardiac.cardio_respiratory`):

- 1/f ("pink") noise, one independent source per electrode, mixed by a
  Gaussian distance kernel between neighbouring electrodes (volume conduction;
  rows of the kernel have unit L2 norm so the mixing keeps the per-channel
  RMS); power spectral density :data:`PINK_PSD_10HZ` at 10 Hz;
- posterior alpha (~10 Hz, subject-specific peak frequency), strongest at
  O1/OZ/O2/PO*;
- one ongoing narrow-band rhythm per :class:`~.effects.OscillationEffect`
  (default: frontal theta, central beta) whose amplitude on the effect's
  channels is exactly ``baseline_amplitude_uv`` (RMS = amplitude / sqrt(2)),
  decaying with distance on the other channels;
- blinks (~15/min, VEO and the frontopolar channels), horizontal saccades
  (HEO, small leakage to F7/F8), a cardiac artefact (QRS-like spikes at the
  shared R-peak times of :func:`~.cardiac.cardio_respiratory`, larger on low
  posterior sites), the full ECG waveform on EKG, tonic EMG on the EMG channel,
  50-Hz line noise (< 1 µV on EEG).

Planted effects (sensor level, exactly on the listed channels, only for
expressions with ``recorded == True``; times relative to ``eeg_onset_s``).
Every value is the subject's own (:func:`~.effects.subject_effects`: the
population value plus the subject's drawn deviation), and the single-trial
ERP amplitude and EMG burst are the expression's
(:func:`~.effects.expression_effects`):

- ERP: ``a * exp(-(t - latency - jitter)**2 / (2 * width**2))`` with the
  trial's amplitude ``a`` (subject's ``amplitude_uv[kind]`` x
  ``1 + trial_cv * N(0, 1)``) and ``jitter ~ N(0, latency_jitter_s)`` per expression;
- oscillations: with ``rc = relative_change[kind]`` and ``w(t)`` the window
  with 100-ms cosine ramps *inside* ``window_s``: ``rc < 0`` multiplies the
  ongoing rhythm on the channels by ``1 + rc * w(t)``; ``rc > 0`` adds a
  sinusoid at ``freq_hz`` with a random phase per expression and amplitude
  ``B * sqrt((1 + rc)**2 - 1) * w(t)`` (``B = baseline_amplitude_uv``). The
  burst is independent of the ongoing rhythm, so the expected power of the
  rhythm becomes ``(1 + rc)**2 * B**2 / 2``, i.e. its amplitude (RMS x sqrt 2)
  becomes ``(1 + rc) * B``;
- coupling: per expression one sinusoid of amplitude ``amplitude_uv[kind]``,
  random phase and random frequency in ``freq_hz +- bandwidth_hz / 2``, added
  to every node ``j`` (of ``n`` nodes) with the fixed lag
  ``phase_lag_rad * j / (n - 1)``, windowed like the oscillations
  (100-ms ramps inside ``window_s``);
- EMG: from onset to offset + ``tail_s``, one band-limited noise source in
  ``band_hz`` per muscle site (``EmgEffect.channels``: frontal, left, right;
  FFT band-pass of white noise, 10-ms ramps), weighted by the expression's
  site weights ``w``. The EMG channel gets ``emg_channel_gain * r * sum(w_k
  s_k)`` scaled to RMS exactly ``emg_channel_gain * r`` (``r`` = the
  expression's ``emg_rms_uv``); EEG channel ``c`` gets ``r * sum(w_k g_k(c) s_k)``
  (same scaling) with ``g_k(c) = exp(-d_k(c)**2 / (2 * spread_mm**2))``, ``d_k``
  the distance to the nearest channel of site ``k``: full strength at the
  temporal and frontopolar sites, decaying towards the vertex, correlated
  across neighbouring channels.

Determinism and chunking
------------------------
Everything is drawn from :func:`~.design.subject_rng` streams of
``(seed, subject.index)``: ``"eeg"`` (noise), ``"eeg/params"`` (subject
constants), ``"eeg/artefacts"`` (blinks, saccades), ``"eeg/events"``
(per-expression jitter and phases) and ``"eeg/emg/<expr_id>"`` (EMG bursts);
the subject's effects and single-trial amplitudes come from the
``"effects/..."`` streams of :mod:`~.effects`.
Noise is generated in internal blocks of a *fixed* size
(:data:`_BLOCK_SAMPLES`) through IIR filters whose state is carried from
block to block, and every event-locked addition is a function of absolute
sample indices; the requested ``chunk_s`` only re-slices that stream, so the
concatenated output never depends on it. White noise is uniform (4x faster
to draw than Gaussian); after the 1/f and resonator filters it is Gaussian to
a very good approximation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy import signal

from ..constants import ALL_EEG_FILE_CHANNELS, EEG_CHANNELS
from ..montage import quikcap64_positions
from .cardiac import cardio_respiratory
from .design import SubjectDesign, subject_rng
from .effects import Effects, expression_effects, subject_effects

__all__ = [
    "N_COLUMNS",
    "PINK_PSD_10HZ",
    "TRIGGER_PULSE_S",
    "simulate_eeg",
    "simulate_eeg_chunks",
]

#: Number of output columns: all of ALL_EEG_FILE_CHANNELS, Trigger included.
N_COLUMNS: int = len(ALL_EEG_FILE_CHANNELS)
#: Length (s) of the trigger pulse written in the Trigger column at each marker.
TRIGGER_PULSE_S: float = 0.020
#: One-sided PSD (µV²/Hz) of the 1/f background at 10 Hz, per EEG channel.
PINK_PSD_10HZ: float = 1.5

_BLOCK_SAMPLES = 1 << 15  # internal generation block (samples), independent of chunk_s
_BURN_IN_S = 5.0  # filters run this long before sample 0 (stationary start)
_N_EEG = len(EEG_CHANNELS)
_COL = {name: i for i, name in enumerate(ALL_EEG_FILE_CHANNELS)}
_HEO, _VEO, _EKG, _EMG, _TRIG = (_COL[c] for c in ("HEO", "VEO", "EKG", "EMG", "Trigger"))
_N_PINK = _N_EEG + 4  # one 1/f source per EEG channel + HEO, VEO, EKG, EMG

# 1/f approximation (3 zeros, 3 poles; valid from ~1e-3 fs to fs/2), J.O. Smith, CCRMA.
_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])
_AUX_PINK_GAIN = np.array([1.0, 1.0, 0.3, 0.2])  # HEO, VEO, EKG, EMG relative to EEG

_MIXING_SIGMA_MM = 25.0  # volume-conduction kernel width
_ALPHA_SIGMA_MM = 45.0  # spatial spread of the posterior alpha sources
_RHYTHM_SIGMA_MM = 30.0  # spread of the ongoing rhythms beyond their channels
_OSC_RAMP_S = 0.1  # cosine ramps of oscillation and coupling windows
_EMG_RAMP_S = 0.01  # cosine ramps of EMG bursts
_TONIC_EMG_RMS_UV = 2.0
_LINE_HZ = 50.0
_BLINK_PEAK_S = 0.1
_BLINK_SHAPE = 3.0
_BLINK_SUPPORT_S = 0.7
_SACCADE_RAMP_S = 0.04
_ECG_R_UV = 1000.0
# ECG template (relative to the R peak): (centre s, width s, amplitude in R units)
_ECG_WAVES = (
    (-0.20, 0.025, 0.12),  # P
    (-0.03, 0.008, -0.12),  # Q
    (0.00, 0.010, 1.00),  # R
    (0.03, 0.008, -0.25),  # S
    (0.25, 0.040, 0.30),  # T
)
_ECG_SUPPORT_S = (-0.30, 0.42)
_QRS_SUPPORT_S = (-0.06, 0.06)


# --------------------------------------------------------------------------- public API


def simulate_eeg_chunks(
    subject: SubjectDesign, effects: Effects, seed: int, *, chunk_s: float = 60.0
) -> Iterator[np.ndarray]:
    """Generate a subject's EEG recording chunk by chunk.

    Parameters
    ----------
    subject : SubjectDesign
        The subject's design (markers and expressions on the EEG clock).
    effects : Effects
        Planted effects, population (:func:`~.effects.null_effects` for the null
        study); the subject's values are drawn from them.
    seed : int
        Study seed. The output is a deterministic function of
        ``(seed, subject.index, effects)``.
    chunk_s : float
        Length (s) of each yielded chunk; the last one is shorter. The
        concatenation of the chunks does not depend on it.

    Yields
    ------
    chunk : ndarray of float32, shape (n_samples_chunk, 69)
        Columns in the order of ``ALL_EEG_FILE_CHANNELS`` (64 EEG, HEO, VEO,
        EKG, EMG, Trigger). Signal columns are in µV; the Trigger column holds
        the marker code during a :data:`TRIGGER_PULSE_S` pulse starting at the
        sample of every marker with ``in_eeg`` True, and 0 elsewhere. The
        chunks concatenate to exactly ``subject.eeg_n_samples`` rows.

    Notes
    -----
    Memory is O(block + chunk), a few tens of MB at 1000 Hz, whatever the
    session length. See the module docstring for what is planted and how.
    """
    if not chunk_s > 0:
        raise ValueError(f"chunk_s must be > 0, got {chunk_s}")
    n_chunk = max(1, int(round(chunk_s * subject.eeg_sfreq)))
    gen = _Generator(subject, effects, seed)
    n_total = subject.eeg_n_samples
    pending: list[np.ndarray] = []
    n_pending = 0
    for block in gen.blocks():
        pending.append(block)
        n_pending += block.shape[0]
        while n_pending >= n_chunk:
            out, pending, n_pending = _take(pending, n_chunk)
            yield out
    if n_pending:
        out, pending, n_pending = _take(pending, n_pending)
        yield out
    if gen.n_done != n_total:  # pragma: no cover - internal consistency
        raise RuntimeError(f"generated {gen.n_done} samples, expected {n_total}")


def simulate_eeg(subject: SubjectDesign, effects: Effects, seed: int) -> np.ndarray:
    """Generate a subject's whole EEG recording in memory.

    Parameters
    ----------
    subject, effects, seed
        See :func:`simulate_eeg_chunks`.

    Returns
    -------
    data : ndarray of float32, shape (subject.eeg_n_samples, 69)
        The concatenated chunks of :func:`simulate_eeg_chunks` (µV; Trigger
        column in marker codes). About 280 bytes per sample: use the chunked
        generator for full-scale sessions.
    """
    data = np.empty((subject.eeg_n_samples, N_COLUMNS), dtype=np.float32)
    i = 0
    for chunk in simulate_eeg_chunks(subject, effects, seed):
        data[i : i + chunk.shape[0]] = chunk
        i += chunk.shape[0]
    return data


# --------------------------------------------------------------------------- helpers


def _take(pending: list[np.ndarray], n: int) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Cut the first ``n`` rows off a list of blocks."""
    parts, got = [], 0
    while got < n:
        b = pending[0]
        need = n - got
        if b.shape[0] <= need:
            parts.append(b)
            got += b.shape[0]
            pending = pending[1:]
        else:
            parts.append(b[:need])
            pending = [b[need:], *pending[1:]]
            got = n
    out = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
    return out, pending, sum(p.shape[0] for p in pending)


def _channel_index(names: tuple[str, ...] | list[str]) -> np.ndarray:
    """Column indices of channel names (ValueError for unknown names)."""
    bad = [n for n in names if n not in _COL]
    if bad:
        raise ValueError(f"Unknown channel(s) in effect definition: {bad}")
    return np.array([_COL[n] for n in names], dtype=np.intp)


def _positions_mm() -> np.ndarray:
    pos = quikcap64_positions()
    return np.array([pos[c] for c in EEG_CHANNELS]) * 1000.0


def _mixing_matrix(pos_mm: np.ndarray) -> np.ndarray:
    """Gaussian distance kernel between electrodes, rows of unit L2 norm."""
    d2 = ((pos_mm[:, None, :] - pos_mm[None, :, :]) ** 2).sum(-1)
    g = np.exp(-d2 / (2 * _MIXING_SIGMA_MM**2))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def _distance_to(pos_mm: np.ndarray, names: tuple[str, ...] | list[str]) -> np.ndarray:
    """Distance (mm) of every EEG electrode to the nearest of ``names``."""
    idx = [EEG_CHANNELS.index(n) for n in names]
    return np.linalg.norm(pos_mm[:, None, :] - pos_mm[None, idx, :], axis=-1).min(axis=1)


def _resonator(freq_hz: float, bw_hz: float, sfreq: float) -> tuple[np.ndarray, np.ndarray]:
    """AR(2) band-pass of unit output variance for unit-variance white input."""
    r = np.exp(-np.pi * bw_hz / sfreq)
    a1, a2 = -2 * r * np.cos(2 * np.pi * freq_hz / sfreq), r * r
    var = (1 + a2) / ((1 - a2) * ((1 + a2) ** 2 - a1**2))
    return np.array([1.0 / np.sqrt(var)]), np.array([1.0, a1, a2])


def _pink_gain(sfreq: float) -> float:
    """Gain making the 1/f filter's PSD equal PINK_PSD_10HZ at 10 Hz (unit white input)."""
    _, h = signal.freqz(_PINK_B, _PINK_A, worN=[min(10.0, sfreq / 4)], fs=sfreq)
    psd_unit = 2.0 * np.abs(h[0]) ** 2 / sfreq
    return float(np.sqrt(PINK_PSD_10HZ / psd_unit))


def _cos_window(t: np.ndarray, start: float, stop: float, ramp: float) -> np.ndarray:
    """1 inside [start, stop] with raised-cosine ramps of ``ramp`` s inside it, 0 outside."""
    ramp = max(min(ramp, (stop - start) / 2), 1e-9)
    up = np.clip((t - start) / ramp, 0.0, 1.0)
    down = np.clip((stop - t) / ramp, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * np.minimum(up, down))


def _ecg_template(t: np.ndarray, waves: tuple = _ECG_WAVES) -> np.ndarray:
    out = np.zeros_like(t)
    for c, w, a in waves:
        out += a * np.exp(-0.5 * ((t - c) / w) ** 2)
    return out


def _blink_shape(t: np.ndarray) -> np.ndarray:
    """Gamma-shaped blink, peak 1 at _BLINK_PEAK_S, 0 before 0."""
    x = np.clip(t / _BLINK_PEAK_S, 0.0, None)
    return x**_BLINK_SHAPE * np.exp(_BLINK_SHAPE * (1.0 - x))


def _event_times(
    rng: np.random.Generator, duration: float, refractory: float, mean_gap: float
) -> np.ndarray:
    """Renewal process on [0, duration]: gaps = refractory + exponential(mean_gap)."""
    n = int(duration / (refractory + mean_gap) * 1.5) + 10
    t = np.cumsum(refractory + rng.exponential(mean_gap, size=n))
    while t[-1] < duration:
        t = np.concatenate([t, t[-1] + np.cumsum(refractory + rng.exponential(mean_gap, size=n))])
    return t[t < duration]


def _band_noise(
    rng: np.random.Generator, n: int, band: tuple[float, float], sfreq: float
) -> np.ndarray:
    """Unit-RMS band-limited noise of ``n`` samples (FFT band-pass of white noise)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sfreq)
    hi = min(band[1], 0.95 * sfreq / 2)
    spec[(f < band[0]) | (f > hi)] = 0.0
    x = np.fft.irfft(spec, n)
    rms = np.sqrt(np.mean(x**2))
    return x / rms if rms > 0 else x


def _span(t0: float, t1: float, s0: int, n: int, sfreq: float) -> tuple[int, int]:
    """Local sample range of a block [s0, s0 + n) covered by the time interval [t0, t1]."""
    i0 = max(int(np.ceil(t0 * sfreq)) - s0, 0)
    i1 = min(int(np.floor(t1 * sfreq)) + 1 - s0, n)
    return i0, max(i0, i1)


# --------------------------------------------------------------------------- generator


@dataclass
class _Rhythm:
    """An ongoing narrow-band source: filter, topography (µV per unit source) and state."""

    b: np.ndarray
    a: np.ndarray
    topo: np.ndarray  # shape (69,)
    zi: np.ndarray


class _Generator:
    """Generate the recording in fixed blocks of _BLOCK_SAMPLES samples."""

    def __init__(self, subject: SubjectDesign, effects: Effects, seed: int) -> None:
        self.subject = subject
        self.per_expr = expression_effects(subject, effects, seed)
        effects = subject_effects(effects, subject.index, seed)
        self.effects = effects
        self.seed = seed
        self.sfreq = fs = float(subject.eeg_sfreq)
        self.n_total = subject.eeg_n_samples
        self.n_done = 0
        self.rng = subject_rng(seed, subject.index, "eeg")
        prm = subject_rng(seed, subject.index, "eeg/params")
        pos = _positions_mm()

        # 1/f background: per-source gains folded into the mixing matrix
        gain = _pink_gain(fs) * np.sqrt(12.0)  # sqrt(12): unit variance of uniform noise
        src_gain = prm.uniform(0.8, 1.2, size=_N_EEG)
        mix_t = (_mixing_matrix(pos) * src_gain[None, :]).T  # (source, channel)
        aux_gain = _AUX_PINK_GAIN * prm.uniform(0.8, 1.2, size=4)
        self.pink_b = (_PINK_B * gain).astype(np.float32)
        self.pink_a = _PINK_A.astype(np.float32)
        self.pink_zi = np.zeros((_N_PINK, 3), dtype=np.float32)

        # ongoing rhythms: two posterior alpha sources, then one per OscillationEffect
        self.rhythms: list[_Rhythm] = []
        iaf = float(prm.uniform(9.2, 10.8))
        for centre in (("O1", "PO3", "PO5"), ("O2", "PO4", "PO6")):
            amp = 8.0 * float(prm.uniform(0.7, 1.3))
            topo = np.zeros(N_COLUMNS)
            topo[:_N_EEG] = (
                amp
                / np.sqrt(2)
                * np.exp(-(_distance_to(pos, centre) ** 2) / (2 * _ALPHA_SIGMA_MM**2))
            )
            self._add_rhythm(iaf, 1.5, topo)
        self.osc_rhythm: list[int] = []
        for osc in effects.oscillations:
            ch = [c for c in osc.channels if c in EEG_CHANNELS]
            topo = np.zeros(N_COLUMNS)
            if ch:
                d = _distance_to(pos, ch)
                topo[:_N_EEG] = np.exp(-(d**2) / (2 * _RHYTHM_SIGMA_MM**2))
            topo[_channel_index(osc.channels)] = 1.0  # exactly B on the effect's channels
            topo *= osc.baseline_amplitude_uv / np.sqrt(2)
            self.osc_rhythm.append(len(self.rhythms))
            self._add_rhythm(osc.freq_hz, max(osc.freq_hz / 8, 1.0), topo)

        # tonic EMG on the EMG channel
        band = effects.emg.band_hz
        hi = min(band[1], 0.95 * fs / 2)
        self.emg_sos = signal.butter(4, [band[0], hi], btype="bandpass", fs=fs, output="sos")
        emg_gain = _TONIC_EMG_RMS_UV / np.sqrt(2 * (hi - band[0]) / fs) * np.sqrt(12.0)
        self.emg_zi = np.zeros((self.emg_sos.shape[0], 2))

        # low-rank components: topographies (rows) for line cos/sin, blink, HEO, QRS, ECG
        topo = np.zeros((6, N_COLUMNS))
        self.line_on = _LINE_HZ < fs / 2
        if self.line_on:
            amp = np.zeros(N_COLUMNS)
            amp[:_N_EEG] = prm.uniform(0.2, 0.8, size=_N_EEG)
            amp[[_HEO, _VEO, _EKG, _EMG]] = prm.uniform(0.5, 2.0, size=4)
            ph = prm.uniform(0, 2 * np.pi, size=N_COLUMNS)
            topo[0], topo[1] = amp * np.cos(ph), -amp * np.sin(ph)
        # blinks: VEO 1, frontopolar sites decaying with distance, small HEO leak
        w = 0.55 * np.exp(-_distance_to(pos, ("FP1", "FPZ", "FP2")) / 30.0)
        topo[2, :_N_EEG] = np.where(w >= 0.02, w, 0.0)
        topo[2, _VEO], topo[2, _HEO] = 1.0, 0.05
        # horizontal eye movements: HEO 1 (positive = rightward gaze), leak to lateral frontal
        leak = {"F7": -0.15, "F8": 0.15, "FT7": -0.07, "FT8": 0.07, "AF3": -0.04, "AF4": 0.04,
                "FP1": -0.05, "FP2": 0.05, "F5": -0.06, "F6": 0.06}  # fmt: skip
        for c, v in leak.items():
            topo[3, _COL[c]] = v
        topo[3, _HEO] = 1.0
        # cardiac field: 1.5-4.5 µV QRS, larger on low (mastoid, cerebellar, temporal) sites
        z = pos[:, 2]
        lowness = (z.max() - z) / (z.max() - z.min())
        topo[4, :_N_EEG] = (1.5 + 3.0 * lowness) * float(prm.uniform(0.7, 1.3))
        topo[5, _EKG] = _ECG_R_UV * float(prm.uniform(0.7, 1.3))

        # feature -> channel weights: 1/f sources (mixed), aux 1/f, rhythms, tonic EMG, artefacts
        k = len(self.rhythms)
        w = np.zeros((_N_PINK + k + 1 + 6, N_COLUMNS))
        w[:_N_EEG, :_N_EEG] = mix_t
        w[_N_EEG + np.arange(4), [_HEO, _VEO, _EKG, _EMG]] = aux_gain
        w[_N_PINK : _N_PINK + k] = np.stack([r.topo for r in self.rhythms])
        w[_N_PINK + k, _EMG] = emg_gain
        w[-6:] = topo
        self.weights = w.astype(np.float32)

        # artefact events
        art = subject_rng(seed, subject.index, "eeg/artefacts")
        dur = subject.eeg_duration_s
        self.blink_t = _event_times(art, dur, 0.5, 3.5)  # ~15/min
        self.blink_a = np.clip(art.normal(150.0, 35.0, size=self.blink_t.size), 50.0, None)
        self.sacc_t = _event_times(art, dur, 0.3, 2.0)
        self.sacc_x = art.normal(0.0, 25.0, size=self.sacc_t.size)  # HEO level after each saccade
        self.sacc_x0 = 0.0
        self.r_peaks = np.asarray(cardio_respiratory(subject, effects, seed).r_peaks_s)

        # markers (Trigger column)
        mk = subject.markers
        mk = mk[mk.in_eeg.astype(bool)]
        trig_s = subject.eeg_sample(mk.eeg_time_s.to_numpy(dtype=float))
        order = np.argsort(trig_s, kind="stable")  # later markers overwrite earlier pulses
        self.trig_s = trig_s[order]
        self.trig_code = mk.code.to_numpy(dtype=np.float32)[order]
        self.trig_len = max(1, int(round(TRIGGER_PULSE_S * fs)))

        self._plan_expressions(seed)
        self._burn_in()

    # ------------------------------------------------------------------ set-up helpers

    def _add_rhythm(self, freq: float, bw: float, topo: np.ndarray) -> None:
        b, a = _resonator(min(freq, 0.45 * self.sfreq), bw, self.sfreq)
        self.rhythms.append(_Rhythm(b * np.sqrt(12.0), a, topo.astype(np.float32), np.zeros(2)))

    def _plan_expressions(self, seed: int) -> None:
        """Draw per-expression parameters (for all expressions, so draws never shift)."""
        ex = self.subject.expressions
        eff = self.effects
        n = len(ex)
        rng = subject_rng(seed, self.subject.index, "eeg/events")
        self.erp_jitter = rng.normal(0.0, 1.0, size=n) * eff.erp.latency_jitter_s
        self.osc_phase = rng.uniform(0, 2 * np.pi, size=(n, len(eff.oscillations)))
        self.cpl_phase = rng.uniform(0, 2 * np.pi, size=n)
        self.cpl_freq = (
            eff.coupling.freq_hz + rng.uniform(-0.5, 0.5, size=n) * eff.coupling.bandwidth_hz
        )
        self.ex = ex.reset_index(drop=True)
        self.ex_rows = np.flatnonzero(self.ex.recorded.to_numpy(dtype=bool))
        self.onset = self.ex.eeg_onset_s.to_numpy(dtype=float)
        offset = self.ex.eeg_offset_s.to_numpy(dtype=float)
        self.emg_stop = offset + eff.emg.tail_s
        # time extent (relative to onset) of everything locked to an expression
        e = eff.erp
        erp_half = 5 * e.width_s + 5 * e.latency_jitter_s
        starts = [0.0, e.latency_s - erp_half, eff.coupling.window_s[0]]
        stops = [e.latency_s + erp_half, eff.coupling.window_s[1]]
        for o in eff.oscillations:
            starts.append(o.window_s[0])
            stops.append(o.window_s[1])
        self.ext_lo = self.onset + min(starts)
        self.ext_hi = np.maximum(self.onset + max(stops), self.emg_stop)
        self.erp_idx = _channel_index(e.channels)
        self.erp_amp = self.per_expr.erp_amplitude_uv.to_numpy(dtype=float)
        self.osc_idx = [_channel_index(o.channels) for o in eff.oscillations]
        self.cpl_idx = _channel_index(eff.coupling.nodes)
        # facial EMG: one source per muscle site, leaking into the EEG with distance
        pos = _positions_mm()
        sites = eff.emg.channels
        self.emg_topo = np.zeros((len(sites), _N_EEG), dtype=np.float32)
        for k, chans in enumerate(sites.values()):
            _channel_index(chans)
            d = _distance_to(pos, chans)
            self.emg_topo[k] = np.exp(-(d**2) / (2 * eff.emg.spread_mm**2))
        site_w = {"frontal": "emg_w_frontal", "left": "emg_w_left", "right": "emg_w_right"}
        self.emg_w = np.stack([self.per_expr[site_w[k]].to_numpy(dtype=float) if k in site_w
                               else np.ones(n) for k in sites], axis=1) if n else np.zeros((0, len(sites)))  # fmt: skip
        self.emg_rms = self.per_expr.emg_rms_uv.to_numpy(dtype=float)
        n_nodes = len(eff.coupling.nodes)
        self.cpl_lag = eff.coupling.phase_lag_rad * np.arange(n_nodes) / max(n_nodes - 1, 1)

    def _burn_in(self) -> None:
        """Run the IIR filters on noise before sample 0 so the recording starts stationary."""
        n = int(round(_BURN_IN_S * self.sfreq))
        self._noise_and_filter(n)

    # ------------------------------------------------------------------ block generation

    def _noise_and_filter(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw one block of white noise and pass it through the stateful filters.

        Returns the feature matrix (float32, shape (n_features, n): 1/f sources,
        ongoing rhythms, tonic EMG, then zeros for the artefact components) and
        the unit-variance rhythm sources (float64, shape (n_rhythms, n)).
        """
        k = len(self.rhythms)
        u = self.rng.random((_N_PINK + k + 1, n), dtype=np.float32)
        u -= np.float32(0.5)
        feats = np.empty((self.weights.shape[0], n), dtype=np.float32)
        feats[:_N_PINK], self.pink_zi = signal.lfilter(
            self.pink_b, self.pink_a, u[:_N_PINK], axis=-1, zi=self.pink_zi
        )
        rhy = np.empty((k, n), dtype=np.float64)
        for j, r in enumerate(self.rhythms):
            rhy[j], r.zi = signal.lfilter(r.b, r.a, u[_N_PINK + j], zi=r.zi)
        feats[_N_PINK : _N_PINK + k] = rhy
        feats[_N_PINK + k], self.emg_zi = signal.sosfilt(self.emg_sos, u[-1], zi=self.emg_zi)
        return feats, rhy

    def blocks(self) -> Iterator[np.ndarray]:
        """Yield consecutive blocks (float32, shape (n, 69)) until the end of the session."""
        while self.n_done < self.n_total:
            n = min(_BLOCK_SAMPLES, self.n_total - self.n_done)
            yield self._block(self.n_done, n)
            self.n_done += n

    def _block(self, s0: int, n: int) -> np.ndarray:
        fs = self.sfreq
        feats, rhy = self._noise_and_filter(n)
        # artefact components: line cos/sin, blinks, gaze, QRS, ECG
        comp = np.zeros((6, n), dtype=np.float64)
        samples = np.arange(s0, s0 + n, dtype=np.float64)
        if self.line_on:
            ph = 2 * np.pi * ((samples * _LINE_HZ) % fs) / fs  # exact phase for huge indices
            comp[0], comp[1] = np.cos(ph), np.sin(ph)
        t0, t1 = s0 / fs, (s0 + n - 1) / fs
        self._blinks(comp[2], s0, n, t0, t1)
        comp[3] = self._heo(samples / fs)
        self._beats(comp[4], _QRS_SUPPORT_S, s0, n, _ECG_WAVES[1:4])
        self._beats(comp[5], _ECG_SUPPORT_S, s0, n, _ECG_WAVES)
        feats[-6:] = comp
        # one product mixes everything: volume conduction, topographies, aux gains
        out = np.matmul(feats.T, self.weights)
        # expression-locked effects
        sel = self.ex_rows[(self.ext_hi[self.ex_rows] >= t0) & (self.ext_lo[self.ex_rows] <= t1)]
        for row in sel:
            self._expression(out, rhy, int(row), s0, n)
        self._triggers(out, s0, n)
        return out

    def _blinks(self, col: np.ndarray, s0: int, n: int, t0: float, t1: float) -> None:
        lo, hi = np.searchsorted(self.blink_t, [t0 - _BLINK_SUPPORT_S, t1])
        for tb, amp in zip(self.blink_t[lo:hi], self.blink_a[lo:hi], strict=True):
            i0, i1 = _span(tb, tb + _BLINK_SUPPORT_S, s0, n, self.sfreq)
            if i1 > i0:
                col[i0:i1] += amp * _blink_shape((s0 + np.arange(i0, i1)) / self.sfreq - tb)

    def _heo(self, t: np.ndarray) -> np.ndarray:
        """Gaze (µV on HEO): piecewise constant with raised-cosine saccades."""
        k = np.searchsorted(self.sacc_t, t, side="right") - 1  # last saccade started (-1: none)
        if self.sacc_t.size == 0:
            return np.full_like(t, self.sacc_x0)
        kk = np.maximum(k, 0)
        before = np.where(kk > 0, self.sacc_x[np.maximum(kk - 1, 0)], self.sacc_x0)
        frac = np.clip((t - self.sacc_t[kk]) / _SACCADE_RAMP_S, 0.0, 1.0)
        level = before + (self.sacc_x[kk] - before) * (0.5 - 0.5 * np.cos(np.pi * frac))
        return np.where(k >= 0, level, self.sacc_x0)

    def _beats(self, col: np.ndarray, support: tuple[float, float], s0: int, n: int,
               waves: tuple) -> None:  # fmt: skip
        """Add the heartbeat template (``waves``) at every R peak overlapping the block."""
        fs = self.sfreq
        first = np.ceil((self.r_peaks + support[0]) * fs).astype(np.int64)  # first sample
        length = int(np.ceil((support[1] - support[0]) * fs)) + 1
        lo, hi = np.searchsorted(first, [s0 - length, s0 + n])
        if hi <= lo:
            return
        idx = first[lo:hi, None] + np.arange(length)[None, :]  # absolute samples
        wave = _ecg_template(idx / fs - self.r_peaks[lo:hi, None], waves)
        for j in range(hi - lo):
            i0, i1 = max(idx[j, 0] - s0, 0), min(idx[j, 0] + length - s0, n)
            if i1 > i0:
                col[i0:i1] += wave[j, i0 + s0 - idx[j, 0] : i1 + s0 - idx[j, 0]]

    def _expression(self, out: np.ndarray, rhy: np.ndarray, row: int, s0: int, n: int) -> None:
        """Add every planted effect of one expression to the block."""
        fs, eff = self.sfreq, self.effects
        onset = self.onset[row]
        kind = str(self.ex.kind.iat[row])

        def local(a: float, b: float) -> tuple[int, int, np.ndarray]:
            i0, i1 = _span(onset + a, onset + b, s0, n, fs)
            return i0, i1, (s0 + np.arange(i0, i1)) / fs - onset

        # ERP
        e = eff.erp
        amp = self.erp_amp[row]
        if amp:
            lat = e.latency_s + self.erp_jitter[row]
            i0, i1, tt = local(lat - 5 * e.width_s, lat + 5 * e.width_s)
            if i1 > i0:
                wave = amp * np.exp(-0.5 * ((tt - lat) / e.width_s) ** 2)
                out[i0:i1, self.erp_idx] += wave.astype(np.float32)[:, None]
        # oscillations
        for j, o in enumerate(eff.oscillations):
            rc = o.relative_change.get(kind, 0.0)
            if not rc:
                continue
            i0, i1, tt = local(*o.window_s)
            if i1 <= i0:
                continue
            w = _cos_window(tt, *o.window_s, _OSC_RAMP_S)
            if rc > 0:
                a = o.baseline_amplitude_uv * np.sqrt((1 + rc) ** 2 - 1)
                wave = a * w * np.cos(2 * np.pi * o.freq_hz * tt + self.osc_phase[row, j])
            else:  # attenuate the ongoing rhythm (amplitude B / sqrt(2) per unit source)
                ongoing = rhy[self.osc_rhythm[j], i0:i1] * o.baseline_amplitude_uv / np.sqrt(2)
                wave = max(rc, -1.0) * w * ongoing
            out[i0:i1, self.osc_idx[j]] += wave.astype(np.float32)[:, None]
        # coupling
        c = eff.coupling
        amp = c.amplitude_uv.get(kind, 0.0)
        if amp:
            i0, i1, tt = local(*c.window_s)
            if i1 > i0:
                w = amp * _cos_window(tt, *c.window_s, _OSC_RAMP_S)
                ph = 2 * np.pi * self.cpl_freq[row] * tt + self.cpl_phase[row]
                wave = w[:, None] * np.cos(ph[:, None] + self.cpl_lag[None, :])
                out[i0:i1, self.cpl_idx] += wave.astype(np.float32)
        # EMG burst
        m = eff.emg
        rms = self.emg_rms[row]
        if rms:
            b0 = int(np.ceil(onset * fs))
            b1 = int(np.floor(self.emg_stop[row] * fs)) + 1
            i0, i1 = max(b0 - s0, 0), min(b1 - s0, n)
            if i1 > i0 and b1 > b0:
                src = self._emg_burst(row, b1 - b0, rms)[:, s0 + i0 - b0 : s0 + i1 - b0]
                out[i0:i1, _EMG] += (m.emg_channel_gain * src.sum(axis=0)).astype(np.float32)
                out[i0:i1, :_N_EEG] += (src.T @ self.emg_topo).astype(np.float32)

    def _emg_burst(self, row: int, n: int, rms: float) -> np.ndarray:
        """Weighted site sources of one expression's burst, shape (n_sites, n).

        Their sum has RMS exactly ``rms`` before the 10-ms edge ramps.
        """
        expr_id = str(self.ex.expr_id.iat[row])
        rng = subject_rng(self.seed, self.subject.index, f"eeg/emg/{expr_id}")
        band = self.effects.emg.band_hz
        src = np.stack([_band_noise(rng, n, band, self.sfreq) for _ in range(self.emg_w.shape[1])])
        src *= self.emg_w[row][:, None]
        total = np.sqrt(np.mean(src.sum(axis=0) ** 2))
        if total > 0:
            src *= rms / total
        return src * _cos_window(np.arange(n) / self.sfreq, 0.0, (n - 1) / self.sfreq, _EMG_RAMP_S)

    def _triggers(self, out: np.ndarray, s0: int, n: int) -> None:
        lo = np.searchsorted(self.trig_s, s0 - self.trig_len, side="right")
        hi = np.searchsorted(self.trig_s, s0 + n, side="left")
        for s, code in zip(self.trig_s[lo:hi], self.trig_code[lo:hi], strict=True):
            i0, i1 = max(s - s0, 0), min(s + self.trig_len - s0, n)
            if i1 > i0:
                out[i0:i1, _TRIG] = code
