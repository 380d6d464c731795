"""Time-frequency analysis of expression-locked epochs: ERSP, ITC, induced power, band power.

Steps (one function each; :func:`compute_tfr` composes the transform steps for one subject):

1. **padding** (:func:`edge_half_width_s`, :func:`padded_config`): the
   epochs are cut wider than the analysis window by at least half the
   longest wavelet, so no edge transient reaches the analysis window.
2. **transform** (:func:`compute_tfr`): Morlet wavelets (default: MNE's
   :func:`~mne.time_frequency.tfr_array_morlet` values, computed by
   :func:`morlet_decimated` only at the kept samples) or multitapers via
   :func:`~mne.time_frequency.tfr_array_multitaper`, in chunks of epochs,
   decimated to ~25 Hz (bounded memory), cropped to the analysis window. Per
   condition: total power, induced power (the condition's evoked response
   subtracted from every epoch before the transform) and inter-trial
   coherence (ITC, on count-equalised epochs by default), plus the band
   power of every epoch (trial table).
3. **baseline normalisation** (:func:`baseline_normalize`): ``logratio``
   (dB), ``percent``, ``zscore`` against a pre-movement window.
4. **group** (:func:`stack_subjects`, :func:`band_average`): subject stack
   ``(subject, condition, channel, freq, time)`` and band time courses
   ``(subject, condition, band, channel, time)``.
5. **authors' features** (:func:`authors_band_psd`): the MMME authors'
   periodogram band power per 1-s window, for their benchmark.

Power scaling
-------------
MNE's Morlet wavelets have an L2 norm of sqrt(2); with them a sinusoid of
amplitude ``A`` has power ``A**2 * sfreq * sigma_t * sqrt(pi)`` (``sigma_t =
n_cycles / (2 pi f)``), which depends on the sampling rate and the number
of cycles. Every power returned here is divided, per frequency, by the
power MNE gives a unit-amplitude cosine (calibrated numerically for either
method), times 1/2: **a sinusoid of amplitude A (V) has power A**2 / 2 (V**2)**,
its mean square, at any sampling rate, ``n_cycles`` and method. The factor
cancels in every baseline-normalised measure.

Edge rule
---------
The transform at time ``t`` and frequency ``f`` uses the data within
``h(f)`` of ``t``: ``h = 5 sigma_t = 5 n_cycles / (2 pi f)`` for MNE's
Morlet wavelets (their support is +-5 sigma_t) and ``h = n_cycles / (2 f)``
for multitapers (window of ``n_cycles / f``). Epochs are cut with a padding
``pad >= max_f h(f)`` (rounded up to 0.1 s) on both sides of the analysis
window ``[epochs.tmin, epochs.tmax]`` of the configuration, transformed on
the padded data and cropped back, so the analysis window never sees the
zero-padded epoch edges: anything beyond the padding (or a burst in it
farther than ``h(f)`` from the window) cannot change it.

Trial-count bias
----------------
ITC is biased upwards by small counts (its expected value for random phases
is about ``sqrt(pi / (4 n))``): by default (``itc_equalize=True``) ITC is
computed on epochs randomly subsampled (seeded by ``config.seed`` and the
subject, :func:`mmme_neuro.epochs.equalize_counts`) to the smallest count
among the conditions of the subject, so ME (few epochs) and MaE (many) are
compared at the same ``n``. Power averages are unbiased by count (only
their variance differs) and use every kept epoch; ``n_epochs`` and
``n_epochs_itc`` are stored as coordinates.

References
----------
Tallon-Baudry C, Bertrand O (1999). Oscillatory gamma activity in humans and
its role in object representation. Trends Cogn Sci 3:151-162.
Grandchamp R, Delorme A (2011). Single-trial normalization for event-related
spectral decomposition reduces sensitivity to noisy trials. Front Psychol 2:236.
Cohen MX (2014). Analyzing Neural Time Series Data. MIT Press (ch. 12-19).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import mne
import numpy as np
import pandas as pd
import xarray as xr
from scipy.signal import periodogram

from ._utils import atomic_path
from .config import Config
from .connectivity import centred_spectra
from .containers import provenance, validate
from .epochs import bookkeeping_table, epochs_from_session, equalize_counts, from_clean
from .matching import match_emg, matching_options

__all__ = [
    "BASELINE_MODES",
    "CONDITIONS",
    "DEFAULT_FREQS",
    "DEFAULT_ROIS",
    "DEFAULT_WINDOW",
    "METHODS",
    "TFRResult",
    "TFR_KINDS",
    "authors_band_psd",
    "band_average",
    "baseline_normalize",
    "clip_tail_centers",
    "compute_tfr",
    "default_decim",
    "default_n_cycles",
    "edge_half_width_s",
    "first_level",
    "padded_config",
    "periodogram_band_power",
    "from_average_tfr",
    "stack_subjects",
    "to_average_tfr",
    "write_tfr_derivative",
]

logger = logging.getLogger(__name__)

CONDITIONS: tuple[str, ...] = ("ME", "MaE", "NE")
METHODS: tuple[str, ...] = ("morlet", "multitaper")
BASELINE_MODES: tuple[str, ...] = ("logratio", "percent", "zscore")
#: Default frequency grid (Hz): 20 log-spaced frequencies, 4-45 Hz (bounded cost for CI and ``make figures``).
DEFAULT_FREQS: np.ndarray = np.round(np.geomspace(4.0, 45.0, 20), 4)
#: Regions of interest (Quik-Cap 64).
DEFAULT_ROIS: dict[str, tuple[str, ...]] = {
    "frontal": ("F1", "FZ", "F2", "FC1", "FCZ", "FC2"),
    "central": ("C3", "C1", "CZ", "C2", "C4"),
    "parietal": ("CP1", "CPZ", "CP2", "P1", "PZ", "P2"),
    "temporal": ("FT7", "FT8", "T7", "T8", "TP7", "TP8"),
}
#: Default post-onset window (s) of the trial-level band power.
DEFAULT_WINDOW: tuple[float, float] = (0.0, 1.0)
#: Default sampling rate (Hz) of the decimated time-frequency output.
_TARGET_SFREQ = 25.0
_PAD_STEP_S = 0.1
_TIME_DECIMALS = 9
_CHUNK_BYTES = 256e6


@dataclass
class TFRResult:
    """One subject's time-frequency results.

    Attributes
    ----------
    tfr : xarray.Dataset
        ``power`` and ``induced`` (V**2, not baseline-normalised) and ``itc``
        (0-1), dims ``(condition, channel, freq, time)``; coordinates
        ``n_epochs`` and ``n_epochs_itc`` (condition); provenance in ``attrs``.
    trials : pandas.DataFrame
        Band power of every kept epoch: ``subject``, ``condition``,
        ``epoch_id``, ``band``, ``roi``, ``power_db`` (dB re the subject's
        baseline), ``power`` (V**2) and every ``emg_*`` column of the metadata.
    """

    tfr: xr.Dataset
    trials: pd.DataFrame


# ----------------------------------------------------------------------------- parameters


def _check_freqs(freqs: Any) -> np.ndarray:
    f = np.atleast_1d(np.asarray(freqs, dtype=float))
    if f.ndim != 1 or f.size == 0 or not np.all(np.isfinite(f)) or np.any(f <= 0):
        raise ValueError(f"freqs must be a non-empty 1-D sequence of positive frequencies (Hz), got {freqs!r}")
    if np.any(np.diff(f) <= 0):
        raise ValueError("freqs must be strictly increasing")
    return f


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def default_n_cycles(freqs: Any) -> np.ndarray:
    """Default number of cycles per frequency: ``max(3, f / 2)`` (a 0.5-s window above 6 Hz).

    Parameters
    ----------
    freqs : array-like
        Frequencies (Hz).

    Returns
    -------
    n_cycles : numpy.ndarray
    """
    f = _check_freqs(freqs)
    return np.maximum(3.0, f / 2.0)


def _n_cycles(freqs: np.ndarray, n_cycles: Any) -> np.ndarray:
    if n_cycles is None:
        return default_n_cycles(freqs)
    n = np.broadcast_to(np.asarray(n_cycles, dtype=float), freqs.shape).copy()
    if np.any(n <= 0) or not np.all(np.isfinite(n)):
        raise ValueError(f"n_cycles must be positive, got {n_cycles!r}")
    return n


def edge_half_width_s(freqs: Any, n_cycles: Any = None, method: str = "morlet") -> float:
    """Half-width (s) of the longest kernel: the padding the edge rule needs.

    Parameters
    ----------
    freqs : array-like
        Frequencies (Hz).
    n_cycles : float | array-like | None
        Cycles per frequency; None: :func:`default_n_cycles`.
    method : {"morlet", "multitaper"}
        Decomposition.

    Returns
    -------
    half_width : float
        ``max_f 5 n_cycles / (2 pi f)`` (Morlet, MNE's +-5 sigma_t support) or
        ``max_f n_cycles / (2 f)`` (multitaper), s.
    """
    f = _check_freqs(freqs)
    n = _n_cycles(f, n_cycles)
    if _check_method(method) == "morlet":
        return float(np.max(5.0 * n / (2.0 * np.pi * f)))
    return float(np.max(n / (2.0 * f)))


def padded_config(config: Config, freqs: Any = DEFAULT_FREQS, n_cycles: Any = None,
                  method: str = "morlet") -> tuple[Config, float]:  # fmt: skip
    """Configuration whose epochs are padded for the transform (the edge rule).

    Parameters
    ----------
    config : Config
        Analysis configuration; ``epochs.tmin``/``tmax`` is the analysis window.
    freqs, n_cycles, method
        See :func:`edge_half_width_s`.

    Returns
    -------
    padded : Config
        Same configuration with ``epochs.tmin - pad`` and ``epochs.tmax + pad``
        (baseline unchanged): pass it to :func:`mmme_neuro.epochs.epochs_from_session`.
    pad_s : float
        The padding (s): :func:`edge_half_width_s` rounded up to 0.1 s.
    """
    if not isinstance(config, Config):
        raise TypeError(f"config must be a mmme_neuro.config.Config, got {type(config).__name__}")
    h = edge_half_width_s(freqs, n_cycles, method)
    pad = round(math.ceil(round(h / _PAD_STEP_S, 6)) * _PAD_STEP_S, 9)
    ep = config.epochs.model_copy(update={"tmin": round(config.epochs.tmin - pad, 9),
                                          "tmax": round(config.epochs.tmax + pad, 9)})  # fmt: skip
    return config.model_copy(update={"epochs": ep}), pad


def default_decim(sfreq: float, target_sfreq: float = _TARGET_SFREQ) -> int:
    """Decimation factor giving an output rate near ``target_sfreq`` (Hz), at least 1."""
    if not sfreq > 0 or not target_sfreq > 0:
        raise ValueError(f"sampling rates must be positive, got {sfreq}, {target_sfreq}")
    return max(1, int(round(sfreq / target_sfreq)))


# ----------------------------------------------------------------------------- transform


def _calibration(freqs: np.ndarray, n_cycles: np.ndarray, sfreq: float, method: str, tb: float) -> np.ndarray:
    """Per-frequency factor turning MNE's power into mean-square units (unit cosine -> 0.5)."""
    h = edge_half_width_s(freqs, n_cycles, method)
    n = int(np.ceil(2.5 * h * sfreq)) * 2 + 1
    t = (np.arange(n) - n // 2) / sfreq
    x = np.cos(2 * np.pi * freqs[:, None] * t[None, :])[:, None, :]  # (freq as "epochs", 1, time)
    out = np.empty(freqs.size)
    for i, f in enumerate(freqs):
        p, _ = _complex_power_phase(x[i : i + 1], sfreq, np.array([f]), n_cycles[i : i + 1], method, tb,
                                    slice(None), np.ones(1))  # fmt: skip
        out[i] = 0.5 / float(p[0, 0, 0, n // 2])
    return out


def _complex_tfr(data: np.ndarray, sfreq: float, freqs: np.ndarray, n_cycles: np.ndarray, method: str,
                 tb: float, decim: int | slice) -> np.ndarray:  # fmt: skip
    """Complex coefficients ``(epoch, channel, [taper,] freq, time)`` as MNE's ``tfr_array_*`` gives them.

    Morlet: :func:`morlet_decimated` (same values, ~10x faster); multitaper:
    :func:`mne.time_frequency.tfr_array_multitaper`.
    """
    if method == "morlet":
        return morlet_decimated(data, sfreq, freqs, n_cycles, decim)
    return mne.time_frequency.tfr_array_multitaper(data, sfreq, freqs, n_cycles=n_cycles, time_bandwidth=tb,
                                                   output="complex", decim=decim, verbose=False)  # fmt: skip


def morlet_decimated(data: np.ndarray, sfreq: float, freqs: np.ndarray, n_cycles: np.ndarray,
                     decim: int | slice = 1) -> np.ndarray:  # fmt: skip
    """Morlet coefficients of MNE's :func:`~mne.time_frequency.tfr_array_morlet`, computed only where kept.

    Same wavelets (:func:`mne.time_frequency.morlet`, ``zero_mean=True``),
    same ``mode='same'`` convolution and the same samples ``[..., decim]``;
    equal to MNE's output to round-off (test, 1e-12 relative). MNE computes
    the full-rate convolution of every channel of every epoch with every
    wavelet (one inverse FFT each, in a Python loop: ~70,000 calls for a
    subject) and then keeps one sample in ``decim``. Here the signals are
    transformed in one batched FFT and the decimation is folded into the
    spectrum: with an FFT length ``N = M * D`` (``D`` the decimation step,
    ``s`` the first kept sample), the kept outputs are exactly

        ``y[s + n D] = ifft_M(Z)[n] / D``,  ``Z[m] = sum_j Y[m + j M] exp(2 pi i (m + j M) s / N)``,

    so each (signal, wavelet) pair costs one length-``M`` inverse FFT, and the
    fold over ``j`` is one batched matrix product per spectral bin.
    A full subject's TFR step (ours after the shared pass): 2.3 s -> 0.4 s;
    ``benchmarks/bench_tfr`` times the transform alone next to MNE's.

    Parameters
    ----------
    data : ndarray, shape (n_epochs, n_channels, n_times)
        Signals.
    sfreq : float
        Sampling rate (Hz).
    freqs, n_cycles : ndarray, shape (n_freqs,)
        Wavelet frequencies (Hz) and cycles.
    decim : int | slice
        Kept samples (as MNE's ``decim``: an int step from 0, or a slice with a step).

    Returns
    -------
    coefs : ndarray, shape (n_epochs, n_channels, n_freqs, n_kept), complex128
    """
    import scipy.fft

    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"data must be (n_epochs, n_channels, n_times), got shape {x.shape}")
    n_e, n_c, n_t = x.shape
    sl = decim if isinstance(decim, slice) else slice(0, None, int(decim))
    start, _, step = sl.indices(n_t)
    if step < 1:
        raise ValueError(f"decim must keep samples forward, got {decim}")
    n_out = len(range(start, n_t, step))
    ws = mne.time_frequency.morlet(sfreq, np.asarray(freqs, float), n_cycles=np.asarray(n_cycles, float),
                                   zero_mean=True)  # fmt: skip
    if max(len(w) for w in ws) > n_t:
        raise ValueError(f"At least one of the wavelets is longer than the signal ({max(len(w) for w in ws)} > "
                         f"{n_t} samples). Use a longer signal or shorter wavelets.")  # fmt: skip
    half = max((len(w) - 1) // 2 for w in ws)  # odd lengths: centre at (len - 1) / 2
    m = scipy.fft.next_fast_len(-(-(n_t + half) // step))
    nfft = m * step  # circular convolution of this length equals the linear one on the n_t outputs
    k_spec = centred_spectra(ws, nfft)
    k_spec *= np.exp(2j * np.pi * np.arange(nfft) * start / nfft)  # output sample s -> index 0
    k_fold = np.ascontiguousarray(k_spec.reshape(len(ws), step, m).transpose(2, 1, 0))  # (m, j, freq)
    out = np.empty((n_e, n_c, len(ws), n_out), dtype=np.complex128)
    # a few signals at a time: temporaries of ~8 MB stay in the allocator's heap (larger ones are
    # mapped afresh and page-faulted on every call, which cost more than the arithmetic)
    sig = x.reshape(n_e * n_c, n_t)
    flat = out.reshape(n_e * n_c, len(ws), n_out)
    chunk = max(1, int(2**19 // (nfft * max(1, len(ws)) // step + nfft)))
    for a in range(0, n_e * n_c, chunk):
        b = min(n_e * n_c, a + chunk)
        spec = scipy.fft.rfft(sig[a:b], n=nfft, axis=-1)  # real input: the negative half is the conjugate
        full = np.empty((b - a, nfft), dtype=np.complex128)
        full[:, : spec.shape[-1]] = spec
        np.conjugate(spec[:, 1 : nfft - spec.shape[-1] + 1][:, ::-1], out=full[:, spec.shape[-1]:])
        z = np.matmul(full.reshape(b - a, step, m).transpose(2, 0, 1), k_fold)  # (m, signal, freq)
        y = scipy.fft.ifft(z, axis=0, overwrite_x=True)  # (m, signal, freq)
        flat[a:b] = y[:n_out].transpose(1, 2, 0)
    flat /= step
    return out


def _complex_power_phase(data: np.ndarray, sfreq: float, freqs: np.ndarray, n_cycles: np.ndarray, method: str,
                         tb: float, decim: slice, calib: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Calibrated power ``(epoch, ch, freq, time)`` (mean over tapers of ``|c|**2``) and unit phasors
    ``(epoch, ch, taper, freq, time)`` (one taper for Morlet)."""
    c = _complex_tfr(data, sfreq, freqs, n_cycles, method, tb, decim)
    if c.ndim == 4:
        c = c[:, :, None]
    mag = np.abs(c)
    power = (mag**2).mean(axis=2) * calib[None, None, :, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        phasor = np.where(mag > 0, c / np.where(mag > 0, mag, 1), 0)
    return power, phasor


def _time_coord(times: np.ndarray) -> xr.DataArray:
    return xr.DataArray(np.round(np.asarray(times, float), _TIME_DECIMALS), dims="time", attrs={"units": "s"})


def _freq_coord(freqs: np.ndarray) -> xr.DataArray:
    return xr.DataArray(np.asarray(freqs, float), dims="freq", attrs={"units": "Hz"})


def _decim_slice(times: np.ndarray, sfreq: float, decim: int) -> slice:
    """Decimation starting at the first sample whose time is a multiple of the output step."""
    k = np.round(times * sfreq).astype(np.int64)
    start = int(np.flatnonzero(k % decim == 0)[0]) if np.any(k % decim == 0) else 0
    return slice(start, None, decim)


def _kept_md(epochs: mne.BaseEpochs, metadata: pd.DataFrame | None) -> pd.DataFrame:
    md = epochs.metadata if metadata is None else metadata
    if md is None:
        raise ValueError("epochs have no metadata; pass metadata (needs 'condition')")
    if not isinstance(md, pd.DataFrame):
        raise TypeError(f"metadata must be a pandas DataFrame, got {type(md).__name__}")
    if len(md) != len(epochs):
        if "kept" in md.columns and int(md["kept"].astype(bool).sum()) == len(epochs):
            md = md[md["kept"].astype(bool)]
        else:
            raise ValueError(f"metadata has {len(md)} rows for {len(epochs)} epochs (give one row per epoch or a 'kept' column)")
    md = md.reset_index(drop=True)
    md.attrs = {}  # rows only (a local frame): pandas deep-copies attrs in every operation
    if "condition" not in md.columns:
        raise ValueError(f"metadata needs a 'condition' column; columns: {list(md.columns)}")
    if "epoch_id" not in md.columns:
        md = md.assign(epoch_id=[f"ep{i:04d}" for i in range(len(md))])
    return md


def _check_window(window: tuple[float, float], times: np.ndarray, name: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in window)
    if not lo < hi:
        raise ValueError(f"{name} {window} must have start < end (s)")
    if lo < times[0] - 1e-9 or hi > times[-1] + 1e-9:
        raise ValueError(f"{name} {window} s lies outside the data [{times[0]:.3f}, {times[-1]:.3f}] s")
    return lo, hi


def _roi_index(rois: Mapping[str, Sequence[str]] | None, channels: list[str]) -> dict[str, np.ndarray]:
    rois = DEFAULT_ROIS if rois is None else rois
    out = {}
    for name, chs in rois.items():
        chs = [chs] if isinstance(chs, str) else list(chs)
        idx = [channels.index(c) for c in chs if c in channels]
        if not idx:
            raise ValueError(f"ROI {name!r}: none of {chs} is in the data")
        out[str(name)] = np.asarray(idx)
    return out


def compute_tfr(
    epochs: mne.BaseEpochs,
    metadata: pd.DataFrame | None = None,
    *,
    config: Config | None = None,
    freqs: Any = DEFAULT_FREQS,
    n_cycles: Any = None,
    method: Literal["morlet", "multitaper"] = "morlet",
    time_bandwidth: float = 4.0,
    decim: int | None = None,
    window: tuple[float, float] | None = None,
    induced: bool = True,
    itc_equalize: bool = True,
    bands: Mapping[str, tuple[float, float]] | None = None,
    rois: Mapping[str, Sequence[str]] | None = None,
    trial_window: tuple[float, float] = DEFAULT_WINDOW,
    subject: str | None = None,
    conditions: Sequence[str] = CONDITIONS,
    subsets: Mapping[str, Collection[str]] | None = None,
) -> TFRResult:
    """Time-frequency decomposition of one subject's expression-locked epochs.

    Parameters
    ----------
    epochs : mne.BaseEpochs
        Kept epochs (EEG in V), padded by :func:`padded_config` (the edge rule).
    metadata : pandas.DataFrame | None
        One row per epoch (or the full table with ``kept``): ``condition``,
        ``epoch_id``, ``subject``, ``emg_*``. None: ``epochs.metadata``.
    config : Config | None
        Bands, baseline (for the trial table), seed (ITC equalisation) and
        provenance; None: defaults.
    freqs : array-like
        Frequencies (Hz); default 20 log-spaced, 4-45 Hz.
    n_cycles : float | array-like | None
        Cycles per frequency; None: ``max(3, f / 2)``.
    method : {"morlet", "multitaper"}
        Decomposition (MNE).
    time_bandwidth : float
        Multitaper time-bandwidth product.
    decim : int | None
        Decimation of the output; None: to about 25 Hz (40-ms steps; the shortest
        kernel, 0.5 s at 45 Hz, smooths power far more than that).
    window : (float, float) | None
        Analysis window (s) the result is cropped to; None:
        ``config.epochs.tmin``/``tmax``. Must leave at least
        :func:`edge_half_width_s` to the epoch edges (ValueError otherwise).
    induced : bool
        Also compute induced power: the condition-average evoked response
        subtracted from each epoch before the transform (computed as
        ``c(epoch) - c(evoked)``, exact since the transform is linear: one
        extra transform per condition).
    itc_equalize : bool
        ITC on count-equalised epochs (default; see the module notes).
    bands : mapping | None
        Bands (Hz) of the trial table; None: ``config.bands``.
    rois : mapping | None
        ROI -> channels of the trial table; None: :data:`DEFAULT_ROIS`.
    trial_window : (float, float)
        Window (s) of the trial-level band power.
    subject : str | None
        Pseudonym; None: from the metadata.
    conditions : sequence of str
        Conditions kept (absent ones are skipped).
    subsets : mapping of str to collection of str | None
        Name -> epoch ids: the total power of each condition is also averaged
        over these epochs only, as variable ``power_<name>`` with coordinate
        ``n_epochs_<name>`` (NaN, 0, for a condition without one), from the
        same transforms (no extra cost but the sums). E.g. the EMG-matched
        epochs (:func:`mmme_neuro.matching.match_emg`).

    Returns
    -------
    result : TFRResult

    Notes
    -----
    Epochs are transformed in chunks of at most ~256 MB of complex
    coefficients, and only decimated, cropped, condition-summed arrays are
    kept, so memory does not grow with the number of epochs. The trial
    table's ``power_db`` is ``10 log10(P_trial / B)``: ``P_trial`` the
    epoch's power averaged over the band's frequencies, the ROI's channels
    and ``trial_window``; ``B`` the same average over the baseline window
    and over *all* kept epochs of the subject (every condition): a common,
    low-noise reference, so a trial's value is not divided by its own noisy
    baseline (Grandchamp & Delorme 2011) and conditions share the reference.
    """
    config = config or Config()
    if not isinstance(epochs, mne.BaseEpochs):
        raise TypeError(f"epochs must be mne.Epochs, got {type(epochs).__name__}")
    method = _check_method(method)
    f = _check_freqs(freqs)
    n_cyc = _n_cycles(f, n_cycles)
    md = _kept_md(epochs, metadata)
    sfreq = float(epochs.info["sfreq"])
    if f.max() >= sfreq / 2:
        raise ValueError(f"highest frequency {f.max()} Hz is not below Nyquist ({sfreq / 2} Hz)")
    decim = default_decim(sfreq) if decim is None else int(decim)
    if decim < 1:
        raise ValueError(f"decim must be >= 1, got {decim}")
    times = epochs.times
    win = (config.epochs.tmin, config.epochs.tmax) if window is None else window
    lo, hi = _check_window(win, times, "window")
    h = edge_half_width_s(f, n_cyc, method)
    if lo - times[0] < h - 1.5 / sfreq or times[-1] - hi < h - 1.5 / sfreq:
        raise ValueError(
            f"edge rule: the analysis window [{lo}, {hi}] s must be >= {h:.3f} s (half the longest kernel) "
            f"inside the epoch [{times[0]:.3f}, {times[-1]:.3f}] s; pad the epochs (padded_config)"
        )
    bands = dict(config.bands if bands is None else bands)
    picks = mne.pick_types(epochs.info, eeg=True, exclude=())
    channels = [epochs.ch_names[i] for i in picks]
    roi_idx = _roi_index(rois, channels)
    if subject is None:
        subject = str(md["subject"].iloc[0]) if "subject" in md.columns and len(md) else "sub-unknown"
    dsl = _decim_slice(times, sfreq, decim)
    t_out = times[dsl]
    keep_t = (t_out >= lo - 1e-9) & (t_out <= hi + 1e-9)
    t_an = t_out[keep_t]
    calib = _calibration(f, n_cyc, sfreq, method, time_bandwidth)
    base = config.epochs.baseline
    if base is not None:
        _check_window(base, t_an, "baseline")
    tw = _check_window(trial_window, t_an, "trial_window")
    band_idx = {b: (f >= blo) & (f < bhi) for b, (blo, bhi) in bands.items()}
    band_idx = {b: m for b, m in band_idx.items() if m.any()}
    if not band_idx:
        raise ValueError(f"no band of {list(bands)} holds a frequency of the grid {f.min()}-{f.max()} Hz")

    conds = [c for c in conditions if (md["condition"] == c).any()]
    if not conds:
        raise ValueError(f"no epoch of conditions {list(conditions)}")
    itc_ids = set(md["epoch_id"])
    if itc_equalize and len(conds) >= 2:
        eq, _ = equalize_counts(md.assign(kept=True), tuple(conds), config.seed)
        itc_ids = set(eq.loc[eq["kept"], "epoch_id"])
    data_all = epochs.get_data(picks=picks)
    n_ch, n_f, n_t = len(channels), f.size, t_an.size
    per_epoch = n_ch * n_f * t_out.size * 16 * (2 if method == "multitaper" else 1)
    chunk = max(1, int(_CHUNK_BYTES // max(per_epoch, 1)))
    shape = (len(conds), n_ch, n_f, n_t)
    power = np.full(shape, np.nan)
    ind = np.full(shape, np.nan)
    itc = np.full(shape, np.nan)
    n_ep = np.zeros(len(conds), dtype=np.int64)
    n_itc = np.zeros(len(conds), dtype=np.int64)
    tmask = (t_an >= tw[0] - 1e-9) & (t_an <= tw[1] + 1e-9)
    bmask = None if base is None else (t_an >= base[0] - 1e-9) & (t_an <= base[1] + 1e-9)
    base_sum = np.zeros((n_ch, n_f))
    trial_rows: list[tuple[int, str, np.ndarray]] = []
    subsets = {str(k): set(map(str, v)) for k, v in (subsets or {}).items()}
    bad = [k for k in subsets if not k.isidentifier()]
    if bad:
        raise ValueError(f"subset names must be identifiers, got {bad}")
    sub_power = {k: np.full(shape, np.nan) for k in subsets}
    sub_n = {k: np.zeros(len(conds), dtype=np.int64) for k in subsets}
    for ci, cond in enumerate(conds):
        idx = np.flatnonzero((md["condition"] == cond).to_numpy())
        x = data_all[idx]
        ids = md["epoch_id"].to_numpy()[idx]
        in_itc = np.isin(ids, list(itc_ids))
        in_sub = {k: np.isin(ids.astype(str), list(v)) for k, v in subsets.items()}
        sub_sum = {k: np.zeros((n_ch, n_f, n_t)) for k in subsets}
        psum = np.zeros((n_ch, n_f, n_t))
        isum = np.zeros((n_ch, n_f, n_t))
        phsum: Any = 0
        # induced: the transform is linear, so the coefficients of (epoch - evoked) are
        # c(epoch) - c(evoked): one extra transform of the evoked response per condition
        c_ev = _complex_tfr(x.mean(axis=0, keepdims=True), sfreq, f, n_cyc, method, time_bandwidth, dsl)
        c_ev = (c_ev if c_ev.ndim == 5 else c_ev[:, :, None])[..., keep_t]
        for s in range(0, len(idx), chunk):
            c = _complex_tfr(x[s : s + chunk], sfreq, f, n_cyc, method, time_bandwidth, dsl)
            c = (c if c.ndim == 5 else c[:, :, None])[..., keep_t]
            mag = np.abs(c)
            p = (mag**2).mean(axis=2) * calib[None, None, :, None]
            ph = np.where(mag > 0, c / np.where(mag > 0, mag, 1), 0)
            psum += p.sum(axis=0)
            for k, m in in_sub.items():
                sub_sum[k] += p[m[s : s + chunk]].sum(axis=0)
            phsum += ph[in_itc[s : s + chunk]].sum(axis=0)
            if induced:
                isum += ((np.abs(c - c_ev) ** 2).mean(axis=2) * calib[None, None, :, None]).sum(axis=0)
            if bmask is not None:
                base_sum += p[..., bmask].mean(axis=-1).sum(axis=0)
            # per-epoch band x ROI power in the trial window: (epoch, band, roi)
            pw = p[..., tmask].mean(axis=-1)  # (epoch, ch, freq)
            vals = np.stack([np.stack([pw[:, ri][:, :, bm].mean(axis=(1, 2)) for ri in roi_idx.values()], -1)
                             for bm in band_idx.values()], 1)  # fmt: skip
            for k in range(vals.shape[0]):
                trial_rows.append((int(idx[s + k]), cond, vals[k]))
            del c, mag, p, ph
        n_ep[ci] = len(idx)
        n_itc[ci] = int(in_itc.sum())
        power[ci] = psum / len(idx)
        for k, m in in_sub.items():
            sub_n[k][ci] = int(m.sum())
            if sub_n[k][ci]:
                sub_power[k][ci] = sub_sum[k] / sub_n[k][ci]
        if n_itc[ci]:
            itc[ci] = (np.abs(phsum) / n_itc[ci]).mean(axis=1)  # ITC per taper, averaged over tapers
        if induced:
            ind[ci] = isum / len(idx)
    del data_all

    # trial table (dB re the subject's pooled baseline)
    rows = []
    if bmask is not None:
        bmean = base_sum / len(md)
        bref = np.stack([np.array([bmean[ri][:, bm].mean() for ri in roi_idx.values()]) for bm in band_idx.values()])
    else:
        bref = None
    emg_cols = [c for c in md.columns if c.startswith("emg_")]
    for i, cond, vals in trial_rows:
        r = md.iloc[i]
        for bi, b in enumerate(band_idx):
            for ri, roi in enumerate(roi_idx):
                row = {"subject": subject, "condition": cond, "epoch_id": r["epoch_id"], "band": b, "roi": roi,
                       "power": float(vals[bi, ri]),
                       "power_db": float(10 * np.log10(vals[bi, ri] / bref[bi, ri])) if bref is not None else np.nan}  # fmt: skip
                row.update({c: r[c] for c in emg_cols})
                rows.append(row)
    trials = pd.DataFrame(rows)

    coords = {"condition": conds, "channel": channels, "freq": _freq_coord(f), "time": _time_coord(t_an),
              "n_epochs": ("condition", n_ep), "n_epochs_itc": ("condition", n_itc)}  # fmt: skip
    dims = ("condition", "channel", "freq", "time")
    attrs = provenance(
        config, analysis="tfr", subject=subject, method=method, n_cycles=n_cyc.tolist(), decim=decim,
        sfreq=sfreq / decim, time_bandwidth=time_bandwidth if method == "multitaper" else None,
        edge_half_width_s=h, epoch_s=[float(times[0]), float(times[-1])], window_s=[lo, hi],
        power_scaling="sinusoid amplitude A -> power A**2/2 (V**2)", itc_equalized=bool(itc_equalize),
        trial_window_s=list(tw), trial_baseline="pooled over the subject's kept epochs",
    )  # fmt: skip
    attrs = {k: v for k, v in attrs.items() if v is not None}
    ds = xr.Dataset(
        {"power": (dims, power, {"units": "V**2"}), "itc": (dims, itc, {"units": "1"})}, coords=coords, attrs=attrs
    )
    if induced:
        ds["induced"] = xr.DataArray(ind, dims=dims, coords=ds["power"].coords, attrs={"units": "V**2"})
    for k in subsets:
        ds = ds.assign_coords({f"n_epochs_{k}": ("condition", sub_n[k])})
        ds[f"power_{k}"] = xr.DataArray(
            sub_power[k],
            dims=dims,
            coords=ds["power"].coords,
            attrs={"units": "V**2", "epochs": f"subset {k!r}"},
        )
    logger.info("%s: TFR (%s, %d freqs, %d times) of %s epochs", subject, method, n_f, n_t,
                dict(zip(conds, n_ep.tolist(), strict=True)))  # fmt: skip
    return TFRResult(validate(ds), trials)


# ----------------------------------------------------------------------------- normalisation and group


def baseline_normalize(
    power: xr.DataArray,
    baseline: tuple[float, float] | None = None,
    mode: Literal["logratio", "percent", "zscore"] = "logratio",
    *,
    config: Config | None = None,
) -> xr.DataArray:
    """Normalise power by its mean over a baseline window (per channel, frequency, condition ...).

    Parameters
    ----------
    power : xarray.DataArray
        Power (V**2) with a ``time`` dim (s).
    baseline : (float, float) | None
        Window (s); None: ``config.epochs.baseline`` (-1.0 to -0.5 s, which
        ends before the pre-movement period).
    mode : {"logratio", "percent", "zscore"}
        ``logratio``: ``10 log10(P / mean_b)`` (dB); ``percent``:
        ``100 (P - mean_b) / mean_b`` (%); ``zscore``: ``(P - mean_b) / sd_b``
        (``sd_b`` the SD over baseline times, ddof=0, as :func:`mne.baseline.rescale`).
    config : Config | None
        Source of the default baseline.

    Returns
    -------
    normalised : xarray.DataArray
        Same dims; ``attrs`` gain ``baseline_s``, ``baseline_mode`` and ``units``.
    """
    if not isinstance(power, xr.DataArray) or "time" not in power.dims:
        raise ValueError("power must be a DataArray with a 'time' dim")
    if mode not in BASELINE_MODES:
        raise ValueError(f"mode must be one of {BASELINE_MODES}, got {mode!r}")
    if baseline is None:
        baseline = (config or Config()).epochs.baseline
        if baseline is None:
            raise ValueError("no baseline given and config.epochs.baseline is None")
    t = np.asarray(power["time"].values, float)
    lo, hi = _check_window(baseline, t, "baseline")
    b = power.isel(time=np.flatnonzero((t >= lo - 1e-9) & (t <= hi + 1e-9)))
    mean = b.mean("time")
    if mode == "logratio":
        out, units = 10 * np.log10(power / mean), "dB"
    elif mode == "percent":
        out, units = 100 * (power - mean) / mean, "%"
    else:
        out, units = (power - mean) / b.std("time"), "z"
    out = out.transpose(*power.dims)
    out.attrs = {**power.attrs, "baseline_s": [lo, hi], "baseline_mode": mode, "units": units}
    out.name = power.name
    return out


def stack_subjects(results: Sequence[TFRResult | xr.Dataset], *, config: Config | None = None,
                   **extra: Any) -> xr.Dataset:  # fmt: skip
    """Stack subjects' TFR datasets into ``(subject, condition, channel, freq, time)``.

    Parameters
    ----------
    results : sequence of TFRResult or xarray.Dataset
        Outputs of :func:`compute_tfr` (same channels, freqs, times).
    config : Config | None
        Provenance.
    **extra
        Further provenance attributes.

    Returns
    -------
    group : xarray.Dataset
        Variables of the inputs; NaN where a subject lacks a condition
        (``n_epochs`` 0); subjects sorted.
    """
    if not results:
        raise ValueError("results must hold at least one subject")
    dss = [r.tfr if isinstance(r, TFRResult) else r for r in results]
    subjects = [str(d.attrs.get("subject")) for d in dss]
    if len(set(subjects)) != len(subjects):
        raise ValueError(f"duplicate subjects: {subjects}")
    ref = dss[0]
    for s, d in zip(subjects, dss, strict=True):
        if list(d["channel"].values) != list(ref["channel"].values) or not np.array_equal(d["freq"], ref["freq"]) \
                or d.sizes["time"] != ref.sizes["time"] or not np.allclose(d["time"], ref["time"], atol=1e-9):  # fmt: skip
            raise ValueError(f"{s}: channels, freqs or times differ from those of {subjects[0]}")
    conds = [c for c in CONDITIONS if any(c in d["condition"].values for d in dss)]
    order = np.argsort(subjects, kind="stable")
    parts = []
    for i in order:
        d = dss[i].reindex(condition=conds)
        counts = [c for c in d.coords if str(c).startswith("n_epochs")]
        d = d.assign_coords({c: d[c].fillna(0).astype(np.int64) for c in counts})
        d.attrs = {}
        parts.append(d.expand_dims(subject=[subjects[i]]))
    group = xr.concat(parts, dim="subject", coords="different", compat="equals")
    # epoch counts equal in every subject are kept 1-D by concat: give them the subject dim back
    for c in [
        c for c in group.coords if str(c).startswith("n_epochs") and "subject" not in group[c].dims
    ]:
        per_subject = group[c].expand_dims(subject=group["subject"].values)
        group = group.assign_coords({c: per_subject.transpose("subject", ...)})
    group["time"].attrs["units"] = "s"
    group["freq"].attrs["units"] = "Hz"
    keep = {k: v for k, v in ref.attrs.items() if k not in ("subject", "config_hash", "seed", "mmme_neuro_version")}
    group.attrs = {**keep, **provenance(config, **extra)}
    return validate(group)


def band_average(tfr: xr.DataArray, bands: Mapping[str, tuple[float, float]] | None = None, *,
                 config: Config | None = None) -> xr.DataArray:  # fmt: skip
    """Average a ``freq`` dim within bands ``[low, high)`` (Hz) into a ``band`` dim.

    Parameters
    ----------
    tfr : xarray.DataArray
        Any array with a ``freq`` dim (e.g. ERSP in dB).
    bands : mapping | None
        Name -> (low, high) Hz; None: ``config.bands``. Bands without a
        frequency of the grid are dropped (logged).
    config : Config | None
        Source of the default bands.

    Returns
    -------
    banded : xarray.DataArray
        ``freq`` replaced by ``band``, placed before ``channel`` (else where
        ``freq`` was): ``(subject, condition, band, channel, time)``.
    """
    if not isinstance(tfr, xr.DataArray) or "freq" not in tfr.dims:
        raise ValueError("tfr must be a DataArray with a 'freq' dim")
    bands = dict((config or Config()).bands if bands is None else bands)
    f = np.asarray(tfr["freq"].values, float)
    parts, names = [], []
    for b, (lo, hi) in bands.items():
        m = (f >= lo) & (f < hi)
        if not m.any():
            logger.info("band %s (%g-%g Hz) holds no frequency of the grid; skipped", b, lo, hi)
            continue
        parts.append(tfr.isel(freq=np.flatnonzero(m)).mean("freq"))
        names.append(b)
    if not parts:
        raise ValueError("no band holds a frequency of the grid")
    out = xr.concat(parts, dim=pd.Index(names, name="band"))
    dims = [d for d in tfr.dims if d != "freq"]
    dims.insert(dims.index("channel") if "channel" in dims else list(tfr.dims).index("freq"), "band")
    out = out.transpose(*dims)
    out.attrs = {**tfr.attrs, "bands_hz": {b: list(bands[b]) for b in names}}
    return out


# ----------------------------------------------------------------------------- authors' features


#: Variables of a subject's TFR dataset written as MNE objects, and their units.
TFR_KINDS: dict[str, str] = {"power": "V**2", "induced": "V**2", "itc": "1"}


def to_average_tfr(tfr: xr.Dataset, condition: str, kind: str = "power") -> mne.time_frequency.AverageTFRArray:
    """One condition of a subject's TFR dataset as an :class:`mne.time_frequency.AverageTFR`.

    Parameters
    ----------
    tfr : xarray.Dataset
        :attr:`TFRResult.tfr` (``(condition, channel, freq, time)``).
    condition : str
        Condition.
    kind : {'power', 'induced', 'itc'}
        Variable: total or induced power (V**2, not baseline-normalised) or
        inter-trial coherence (0-1).

    Returns
    -------
    tfr : mne.time_frequency.AverageTFRArray
        EEG channels with the Quik-Cap 64 positions; ``comment``
        ``"<kind>/<condition>"``, ``nave`` the epochs averaged.
    """
    from .montage import make_quikcap64_montage

    if kind not in TFR_KINDS:
        raise ValueError(f"kind must be one of {sorted(TFR_KINDS)}, got {kind!r}")
    if condition not in [str(c) for c in tfr["condition"].values]:
        raise ValueError(f"no condition {condition!r} in the TFR (has {[str(c) for c in tfr['condition'].values]})")
    da = tfr[kind].sel(condition=condition).transpose("channel", "freq", "time")
    channels = [str(c) for c in da["channel"].values]
    times = da["time"].values.astype(float)
    sfreq = 1.0 / float(np.median(np.diff(times))) if times.size > 1 else 1.0
    info = mne.create_info(channels, sfreq, "eeg")
    info.set_montage(make_quikcap64_montage(), on_missing="ignore", verbose="error")
    count = "n_epochs_itc" if kind == "itc" and "n_epochs_itc" in tfr.coords else "n_epochs"
    nave = int(tfr[count].sel(condition=condition)) if count in tfr.coords else None
    return mne.time_frequency.AverageTFRArray(info=info, data=np.asarray(da.values, dtype=float), times=times,
                                              freqs=da["freq"].values.astype(float), nave=nave,
                                              comment=f"{kind}/{condition}", method="morlet")  # fmt: skip


def from_average_tfr(avg: mne.time_frequency.AverageTFR) -> xr.DataArray:
    """An :class:`~mne.time_frequency.AverageTFR` as a ``(channel, freq, time)`` DataArray (the inverse of :func:`to_average_tfr`).

    ``comment`` ``"<kind>/<condition>"`` gives the name and a ``condition``
    coordinate; units from :data:`TFR_KINDS`.
    """
    kind, _, condition = str(avg.comment or "").partition("/")
    da = xr.DataArray(avg.data, dims=("channel", "freq", "time"),
                      coords={"channel": list(avg.ch_names), "freq": _freq_coord(avg.freqs), "time": _time_coord(avg.times)},
                      name=kind or "tfr", attrs={"units": TFR_KINDS.get(kind, "")})  # fmt: skip
    if condition:
        da = da.assign_coords(condition=condition)
    return da


def write_tfr_derivative(tfr: xr.Dataset, path: str | os.PathLike, *, kinds: Sequence[str] = ("power", "itc")) -> Path:
    """Write a subject's TFR as MNE ``AverageTFR`` objects in one HDF5 file (:func:`mne.time_frequency.read_tfrs`).

    One object per kind and condition with epochs (``comment``
    ``"<kind>/<condition>"``), written to a temporary name and renamed.
    """
    path = Path(path)
    objs = [to_average_tfr(tfr, str(c), k) for k in kinds for c in tfr["condition"].values
            if ("n_epochs" not in tfr.coords or int(tfr["n_epochs"].sel(condition=c)) > 0)]  # fmt: skip
    with atomic_path(path, keep_name=True) as tmp, mne.utils.use_log_level("WARNING"):
        mne.time_frequency.write_tfrs(tmp, objs, overwrite=True)
    return path


def clip_tail_centers(clip_end_s: Sequence[float], duration_s: float = 40.0, window_s: float = 1.0) -> np.ndarray:
    """Centres (s) of consecutive ``window_s`` windows covering the last ``duration_s`` of each clip."""
    ends = np.asarray(clip_end_s, float)
    n = int(round(duration_s / window_s))
    offs = (np.arange(n) + 0.5) * window_s - duration_s
    return (ends[:, None] + offs[None, :]).ravel()


def periodogram_band_power(x: np.ndarray, sfreq: float, bands: Mapping[str, tuple[float, float]]) -> np.ndarray:
    """Mean periodogram over each band's bins, the MMME authors' definition.

    Parameters
    ----------
    x : numpy.ndarray
        ``(..., n_times)`` signal (e.g. µV).
    sfreq : float
        Sampling rate (Hz).
    bands : mapping
        Name -> (low, high) Hz, ``[low, high)``.

    Returns
    -------
    power : numpy.ndarray
        Shape ``x.shape[:-2] + (n_bands, x.shape[-2])``, e.g. ``(epoch, band,
        channel)`` for ``(epoch, channel, time)`` input, in units² / Hz
        (:func:`scipy.signal.periodogram`, boxcar window, density scaling,
        constant detrend). Bands with no bin are NaN.
    """
    freqs, pxx = periodogram(np.asarray(x, float), fs=float(sfreq), axis=-1)
    out = []
    for lo, hi in bands.values():
        m = (freqs >= lo) & (freqs < hi)
        out.append(pxx[..., m].mean(axis=-1) if m.any() else np.full(pxx.shape[:-1], np.nan))
    return np.stack(out, axis=-2)


def authors_band_psd(
    raw: mne.io.BaseRaw,
    centers_s: Sequence[float],
    bands: Mapping[str, tuple[float, float]] | None = None,
    window_s: float = 1.0,
    *,
    picks: Any = "eeg",
) -> xr.DataArray:
    """The MMME authors' EEG features: periodogram band power per window around each centre.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        Continuous EEG (V); only the windows are read.
    centers_s : sequence of float
        Window centres (s, raw time): expression apexes, or
        :func:`clip_tail_centers` for the last 40 s of each clip.
    bands : mapping | None
        Name -> (low, high) Hz, ``[low, high)``; None: the MMME bands of :class:`Config`.
    window_s : float
        Window length (s), 1 s as the authors.
    picks : str | list
        Channels (MNE picks).

    Returns
    -------
    psd : xarray.DataArray
        ``(epoch, band, channel)``, mean periodogram (:func:`scipy.signal.periodogram`,
        boxcar window, density scaling, constant detrend) of the µV signal over
        the band's bins, µV²/Hz; ``epoch`` coordinate = centre (s). Windows
        leaving the recording are NaN.
    """
    if not isinstance(raw, mne.io.BaseRaw):
        raise TypeError(f"raw must be an mne Raw, got {type(raw).__name__}")
    if not window_s > 0:
        raise ValueError(f"window_s must be positive, got {window_s}")
    bands = dict(Config().bands if bands is None else bands)
    sf = float(raw.info["sfreq"])
    idx = mne.pick_types(raw.info, eeg=True, exclude=()) if picks == "eeg" else mne.io.pick._picks_to_idx(raw.info, picks)
    names = [raw.ch_names[i] for i in idx]
    n = int(round(window_s * sf))
    c = np.asarray(centers_s, float)
    out = np.full((c.size, len(bands), len(names)), np.nan)
    for k, t in enumerate(c):
        start = int(round(t * sf)) - n // 2
        if start < 0 or start + n > raw.n_times:
            continue
        out[k] = periodogram_band_power(raw.get_data(picks=idx, start=start, stop=start + n) * 1e6, sf, bands)
    return xr.DataArray(out, dims=("epoch", "band", "channel"),
                        coords={"epoch": c, "band": list(bands), "channel": names},
                        name="band_psd", attrs={"units": "µV**2/Hz", "window_s": window_s})  # fmt: skip


# ----------------------------------------------------------------------------- pipeline step


def first_level(session: Any, config: Config, *, method: Literal["morlet", "multitaper"] = "morlet",
                rois: Mapping[str, Sequence[str]] | None = None, clean: Mapping[str, Any] | None = None,
                ) -> dict[str, Any]:  # fmt: skip
    """One session's time-frequency step for :func:`mmme_neuro.pipeline.run_subjects`.

    Epochs with the padding the wavelets need (:func:`padded_config`), then
    :func:`compute_tfr`.

    Parameters
    ----------
    session : Session
        One subject's BIDS session (:func:`mmme_neuro.dataset.iter_sessions`).
    config : Config
        Configuration.
    method : {'morlet', 'multitaper'}
        Transform.
    rois : mapping | None
        Regions of interest of the per-epoch band power; None: :data:`DEFAULT_ROIS`.
    clean : mapping | None
        Preprocessed epochs shared with the other analyses
        (:func:`mmme_neuro.epochs.first_level`, as :func:`mmme_neuro.steps.upstream`
        passes them); cropped to the window this step needs. None: epoch and
        preprocess the session here.

    Returns
    -------
    result : dict
        ``tfr`` (:attr:`TFRResult.tfr`), ``trials`` (:attr:`TFRResult.trials`)
        and ``epochs`` (every planned epoch with its fate; without the AU lists).
        With ``emg_matching.method`` not ``"off"``, ``tfr`` also holds
        ``power_emg_matched``: the power averaged over the EMG-matched ME and
        MaE epochs only (:func:`mmme_neuro.matching.match_emg` on this
        subject's kept epochs), computed from the same transforms; only
        averages are stored, so it is computed here.
    """
    padded, _ = padded_config(config, DEFAULT_FREQS, method=method)
    if clean is None:
        epochs, md = epochs_from_session(session, padded)
    else:
        epochs, md = from_clean(clean, padded.epochs.tmin, padded.epochs.tmax)
    options = matching_options(config)
    subsets = None if options is None else {"emg_matched": match_emg(md, **options).epoch_ids}
    res = compute_tfr(epochs, md, config=config, method=method, subject=session.subject,
                      rois=dict(DEFAULT_ROIS if rois is None else rois), subsets=subsets)
    table = bookkeeping_table(md)
    return {"tfr": res.tfr, "trials": res.trials, "epochs": table}
