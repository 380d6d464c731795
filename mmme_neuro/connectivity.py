"""Phase-based functional connectivity per frequency band: fast, batched, checked against mne-connectivity.

Two analyses, two estimators (see Notes of each function):

* :func:`epoch_connectivity` - **within-epoch** (time-resolved) connectivity:
  phase consistency over the time samples of *one* epoch, one network per
  epoch and band. This is what the ME/MaE/NE EEG network papers (Zhao et al.
  2022, 2024; Chen et al. 2025) feed into graph metrics and classifiers, and
  what :func:`mne_connectivity.spectral_connectivity_time` computes
  (``mode="cwt_morlet"``); with the same frequencies, cycles and window the
  values agree to float64 round-off (``tests/test_connectivity.py``).
* :func:`across_epoch_connectivity` - **across-epoch** (trial) connectivity:
  phase consistency over the epochs of one condition at every time point,
  averaged over a window: one network per condition and band, the classic
  event-related PLV of Lachaux et al. (1999). Default estimator PPC, which
  is free of the trial-count bias of PLV.

Both use the same transform: complex Morlet wavelet coefficients, exactly the
wavelets of :func:`mne.time_frequency.morlet` (5 standard deviations of
support, same normalisation), computed here by one batched FFT convolution per
epoch chunk and band instead of MNE's loop over channels x epochs x
frequencies. The connectivity itself is one batched Hermitian matrix product
per epoch chunk and band, ``Z @ Z^H`` over (n_channels, n_times) phasor
matrices, instead of mne-connectivity's Python loop over channel pairs.
``epoch_connectivity(n_jobs=...)`` also spreads the epochs over threads.
``benchmarks/bench_connectivity.py`` measures the speed-up.

Trial-count bias
----------------
The PLV of N phase differences is biased upwards: for independent uniform
phases ``E[PLV] ~= sqrt(pi / (4 N))``, so a condition with few epochs (ME: ~6
per subject in MMME) shows more "connectivity" than one with many (MaE: ~26)
by chance alone. Rules of this module:

* across-epoch comparisons of conditions with unequal epoch counts use PPC
  (the default of :func:`across_epoch_connectivity`; its expectation does
  not depend on N) or PLV on count-equalised random subsets (``subsample=``);
* within-epoch PLV (the default of :func:`epoch_connectivity`) is computed
  over the *time samples of one epoch*; with the same window and sampling
  rate, N is the same for every epoch of every condition, so the bias is the
  same constant in ME, MaE and NE epochs and cancels in their comparison. The
  number of epochs only changes how precisely the per-epoch mean is known
  (statistics handle that), not its expectation. Windows of different
  lengths are *not* comparable with PLV.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import scipy.fft
import scipy.linalg.blas
import xarray as xr
from numpy.typing import ArrayLike
from threadpoolctl import threadpool_limits

from ._utils import n_threads
from .config import Config
from .containers import provenance, validate

__all__ = [
    "DEFINITIONS",
    "METHODS",
    "across_epoch_connectivity",
    "band_frequencies",
    "connectivity_dataarray",
    "epoch_connectivity",
    "morlet_wavelets",
    "required_padding",
]

logger = logging.getLogger(__name__)

Method = Literal["plv", "ppc", "wpli", "coh"]
NCycles = float | Callable[[np.ndarray], ArrayLike] | Mapping[str, ArrayLike] | None

#: Connectivity estimators of this module.
METHODS: tuple[str, ...] = ("plv", "ppc", "wpli", "coh")

#: Definition of each estimator for one frequency f; ``E[.]`` is the mean over
#: the time samples of the window (within-epoch) or over epochs at each time
#: point (across-epoch, then averaged over the window); ``X`` are complex
#: Morlet coefficients, ``z = X / |X|``, ``S_xy = X_x conj(X_y)``, N the number
#: of samples averaged. Band values are the mean over the band's frequencies of
#: the per-frequency values.
DEFINITIONS: dict[str, str] = {
    "plv": "PLV = |E[z_x conj(z_y)]| (Lachaux et al. 1999)",
    "ppc": "PPC = (N PLV^2 - 1) / (N - 1) (Vinck et al. 2010), N samples averaged",
    "wpli": "wPLI = |E[Im S_xy]| / E[|Im S_xy|] (Vinck et al. 2011); 0 where E[|Im S_xy|] = 0",
    "coh": "COH = |E[S_xy]| / sqrt(E[|X_x|^2] E[|X_y|^2])",
}

#: Half-width of MNE's Morlet wavelets, in standard deviations of the Gaussian envelope.
_SUPPORT_SD = 5.0
#: Target size of one batch of complex coefficients (bytes); bounds peak memory.
_BATCH_BYTES = 64 * 2**20


# --------------------------------------------------------------------------- public helpers


def band_frequencies(
    bands: Mapping[str, tuple[float, float]],
    freqs_per_band: int | Mapping[str, ArrayLike] = 5,
) -> dict[str, np.ndarray]:
    """Return the wavelet frequencies (Hz) of each band.

    Parameters
    ----------
    bands : mapping of str to (float, float)
        Band name -> (low, high) edges in Hz, half-open [low, high) as in
        :attr:`mmme_neuro.config.Config.bands`.
    freqs_per_band : int | mapping of str to array-like
        An int n: the centres of n equal sub-bins of each band, e.g. alpha
        8-13 Hz with n=5 -> 8.5, 9.5, 10.5, 11.5, 12.5 Hz (centres never sit
        on a shared band edge). A mapping: explicit frequencies (Hz) per band.

    Returns
    -------
    freqs : dict of str to ndarray
        Increasing frequencies (Hz) per band, in the order of ``bands``.

    Raises
    ------
    ValueError
        On an empty or malformed band, n < 1, or explicit frequencies that are
        not positive, increasing, or missing for a band.
    """
    _check_bands(bands)
    out: dict[str, np.ndarray] = {}
    for name, (lo, hi) in bands.items():
        if isinstance(freqs_per_band, Mapping):
            if name not in freqs_per_band:
                raise ValueError(f"freqs_per_band has no frequencies for band {name!r}")
            f = np.atleast_1d(np.asarray(freqs_per_band[name], dtype=float))
            if f.ndim != 1 or f.size == 0 or np.any(~np.isfinite(f)) or np.any(f <= 0):
                raise ValueError(f"band {name!r}: frequencies must be a non-empty 1-D array of positive Hz, got {f}")
            if np.any(np.diff(f) <= 0):
                raise ValueError(f"band {name!r}: frequencies must be strictly increasing, got {f}")
        else:
            n = int(freqs_per_band)
            if n != freqs_per_band or n < 1:
                raise ValueError(f"freqs_per_band must be a positive int or a mapping, got {freqs_per_band!r}")
            f = lo + (np.arange(n) + 0.5) * (hi - lo) / n
        out[name] = f
    return out


def morlet_wavelets(sfreq: float, freqs: ArrayLike, n_cycles: ArrayLike, *, zero_mean: bool = False) -> list[np.ndarray]:
    """Return complex Morlet wavelets identical to :func:`mne.time_frequency.morlet`.

    Parameters
    ----------
    sfreq : float
        Sampling rate (Hz).
    freqs : array-like of float
        Centre frequencies (Hz).
    n_cycles : array-like of float
        Cycles per wavelet, one per frequency.
    zero_mean : bool
        Subtract the admissibility offset so that each wavelet has zero mean.

    Returns
    -------
    wavelets : list of ndarray
        One odd-length complex array per frequency, centred on its middle
        sample, spanning +-5 sigma_t with ``sigma_t = n_cycles / (2 pi f)``,
        scaled to norm sqrt(2).
    """
    ws = []
    for f, nc in zip(np.asarray(freqs, float), np.asarray(n_cycles, float), strict=True):
        sigma_t = nc / (2.0 * np.pi * f)
        t = np.arange(0.0, _SUPPORT_SD * sigma_t, 1.0 / sfreq)
        t = np.r_[-t[::-1], t[1:]]
        osc = np.exp(2.0j * np.pi * f * t)
        if zero_mean:
            osc -= np.exp(-2.0 * (np.pi * f * sigma_t) ** 2)
        w = osc * np.exp(-(t**2) / (2.0 * sigma_t**2))
        w /= np.sqrt(0.5) * np.linalg.norm(w)
        ws.append(w)
    return ws


def required_padding(
    bands: Mapping[str, tuple[float, float]],
    *,
    freqs_per_band: int | Mapping[str, ArrayLike] = 5,
    n_cycles: NCycles = None,
) -> dict[str, float]:
    """Return, per band, the padding (s) needed on each side of the analysis window.

    The Morlet wavelet at frequency f with ``n_cycles`` cycles has a Gaussian
    envelope of standard deviation ``sigma_t = n_cycles / (2 pi f)`` and is
    truncated (as in MNE) at +-5 sigma_t. A coefficient at time t depends only
    on data within t +- 5 sigma_t, so a window that keeps this distance from
    both epoch edges is free of edge effects *exactly*; the padding of a band
    is set by its lowest frequency. (At +-3 sigma_t the envelope is already
    1.1 % of its peak, so 0.6 x this value is a practical minimum.)

    With the default ``n_cycles = f / 2`` every wavelet has sigma_t =
    1 / (4 pi) s = 79.6 ms, so every band needs the same 0.398 s.

    Parameters
    ----------
    bands : mapping of str to (float, float)
        Band edges (Hz).
    freqs_per_band : int | mapping of str to array-like
        See :func:`band_frequencies`.
    n_cycles : float | callable | mapping | None
        See :func:`epoch_connectivity`.

    Returns
    -------
    padding : dict of str to float
        Seconds per band.
    """
    freqs = band_frequencies(bands, freqs_per_band)
    cycles = _band_cycles(freqs, n_cycles)
    return {b: float(np.max(_SUPPORT_SD * cycles[b] / (2.0 * np.pi * freqs[b]))) for b in freqs}


# --------------------------------------------------------------------------- estimators


def epoch_connectivity(
    data: ArrayLike,
    sfreq: float,
    bands: Mapping[str, tuple[float, float]],
    *,
    method: Method = "plv",
    tmin: float | None = None,
    tmax: float | None = None,
    t0: float = 0.0,
    freqs_per_band: int | Mapping[str, ArrayLike] = 5,
    n_cycles: NCycles = None,
    decim: int = 1,
    zero_mean: bool = True,
    precision: Literal["single", "double"] = "single",
    return_info: bool = False,
    n_jobs: int = 1,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """Within-epoch connectivity: one network per epoch and band.

    Parameters
    ----------
    data : array-like, shape (n_epochs, n_channels, n_times)
        Epoched EEG (any unit; phase measures are scale-free). Include the
        padding the wavelets need around the analysis window
        (:func:`required_padding`).
    sfreq : float
        Sampling rate (Hz).
    bands : mapping of str to (float, float)
        Band name -> (low, high) Hz, e.g. ``Config().bands``.
    method : {'plv', 'ppc', 'wpli', 'coh'}
        Estimator, see Notes.
    tmin, tmax : float | None
        Analysis window (s, on the time axis defined by ``t0``), inclusive.
        The transform is computed on the whole epoch first and cropped after,
        so the padding outside the window absorbs the wavelet edge effects.
        None: first / last sample.
    t0 : float
        Time (s) of the first sample, e.g. the epochs' ``tmin`` (-1.0 for
        MMME's default epochs), so that tmin/tmax can be given relative to
        the expression onset.
    freqs_per_band : int | mapping of str to array-like
        Wavelet frequencies per band, see :func:`band_frequencies`.
    n_cycles : float | callable | mapping | None
        Cycles per wavelet: a constant, a function of the frequency array,
        a mapping band -> per-frequency cycles, or None for ``freqs / 2``
        (sigma_t = 79.6 ms and 0.4 s padding at every frequency, so MMME's
        -1.0..1.5 s epochs keep a -0.6..1.1 s window; spectral sigma_f =
        2 Hz, so neighbouring bands leak: a pure 10 Hz coupling also raises
        theta PLV through the 7.6 Hz wavelet). More cycles sharpen the bands
        and need proportionally more padding (``freqs`` cycles: sigma_f =
        1 Hz, 0.8 s).
    decim : int
        Keep every ``decim``-th sample of the window (after the transform).
        N (the number of samples averaged) shrinks accordingly.
    zero_mean : bool
        Zero-mean (admissible) wavelets. True by default because the default
        delta wavelets have < 1 cycle and would otherwise leak DC offsets into
        the phase; mne-connectivity uses False (pass False to reproduce it).
    precision : {'single', 'double'}
        Floating-point precision of the inverse FFT, the phasors and the
        matrix products ('single': complex64, ~2x faster, absolute error
        of the estimates < 1e-5, see Notes). The signal FFT, the wavelet
        products and all averaging are float64 in both cases.
    return_info : bool
        Also return a dict of the estimator's parameters (freqs, n_cycles,
        window, n_samples ...) for :func:`connectivity_dataarray`.
    n_jobs : int
        Threads (-1: all cores), each computing a contiguous part of the
        epochs; every epoch's values are computed exactly as with one thread,
        so they do not depend on it. Default 1 (the FFTs still use all
        cores): the pipeline's parallelism is its dask workers.

    Returns
    -------
    conn : ndarray, shape (n_epochs, n_bands, n_channels, n_channels)
        Symmetric, zero diagonal (the graph convention: no self-loops), bands
        in the order of ``bands``. float64.
    info : dict
        Only if ``return_info``.

    Raises
    ------
    ValueError
        On a malformed array (not 3-D, non-finite values, a flat channel), an
        unknown method, an empty window, a frequency at or above Nyquist, or a
        wavelet longer than the epoch.

    Notes
    -----
    For each epoch, band and wavelet frequency f, let ``X_c(t)`` be the complex
    Morlet coefficient of channel c (FFT convolution, ``mode='same'``), ``z =
    X / |X|`` its unit phasor, and let the mean ``E_t`` run over the N
    window samples. Then, per frequency (Lachaux et al. 1999; Vinck et al.
    2010; Vinck et al. 2011)::

        PLV_xy  = |E_t[z_x conj(z_y)]|
        PPC_xy  = (N PLV_xy^2 - 1) / (N - 1)
        wPLI_xy = |E_t[Im S_xy]| / E_t[|Im S_xy|],  S_xy = X_x conj(X_y)
        COH_xy  = |E_t[S_xy]| / sqrt(E_t[|X_x|^2] E_t[|X_y|^2])

    and the band value is the mean over the band's frequencies of the
    per-frequency values (the absolute value is taken per frequency, then
    averaged). This is exactly ``spectral_connectivity_time(method=...,
    mode='cwt_morlet', faverage=True)`` of mne-connectivity 0.9 called with
    the band's frequencies only, ``padding`` equal to the crop and
    ``zero_mean=False`` (which it hard-codes). (Do not compare with a single
    multi-band call of mne-connectivity 0.9: its ``_foi_average`` averages
    ``freqs[i_lo:2 * i_hi]`` instead of ``freqs[i_lo:i_hi + 1]``, i.e. it
    mixes higher frequencies into every band but the last.)

    PLV and PPC matrices are ``Z Z^H / N`` of the (n_channels, N) phasor
    matrix Z (one batched BLAS product per epoch chunk and band); COH the same
    on X; wPLI needs ``|Im S_xy|`` per sample and is computed pair-wise over
    the upper triangle (O(n_channels^2 N), ~10x slower than PLV).

    PPC here treats the N time samples as independent, which they are not
    (a wavelet smooths over ~sigma_t): within-epoch PPC is therefore biased
    above 0 for independent signals, by the same amount in every epoch of the
    same length. For an unbiased PPC use :func:`across_epoch_connectivity`.
    wPLI is 0 (not NaN) where the imaginary cross-spectrum is exactly 0
    (e.g. identical channels).

    References
    ----------
    Lachaux J-P, Rodriguez E, Martinerie J, Varela FJ (1999). Measuring phase
    synchrony in brain signals. Hum Brain Mapp 8:194-208.
    Vinck M, van Wingerden M, Womelsdorf T, Fries P, Pennartz CMA (2010). The
    pairwise phase consistency. NeuroImage 51:112-122.
    Vinck M, Oostenveld R, van Wingerden M, Battaglia F, Pennartz CMA (2011).
    An improved index of phase-synchronization for electrophysiological data
    in the presence of volume-conduction, noise and sample-size bias.
    NeuroImage 55:1548-1565.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((2, 3, 500))
    >>> epoch_connectivity(x, 250.0, {"alpha": (8.0, 13.0)}, tmin=0.4, tmax=1.6).shape
    (2, 1, 3, 3)
    """
    x, freqs, cycles, sl, info = _prepare(data, sfreq, bands, method, tmin, tmax, t0, freqs_per_band, n_cycles, decim)
    ctype = _check_precision(precision)
    n_ep, n_ch, n_times = x.shape
    threads = n_threads(n_jobs, limit=n_ep)
    info.update(zero_mean=bool(zero_mean), precision=precision)
    out = np.zeros((n_ep, len(freqs), n_ch, n_ch))
    logger.info("within-epoch %s: %d epochs x %d channels x %d samples, %d bands, window %d samples, %d thread(s)",
                method, n_ep, n_ch, n_times, len(freqs), info["n_samples"], threads)  # fmt: skip
    spectra = [_wavelet_kernels(sfreq, freqs[band], cycles[band], zero_mean, n_times) for band in freqs]

    def part(lo: int, hi: int) -> None:  # epochs lo:hi, every band
        for ib, (kernels, nfft) in enumerate(spectra):
            step = max(1, _BATCH_BYTES // (threads * np.dtype(ctype).itemsize * n_ch * len(kernels) * nfft))
            for e0 in range(lo, hi, step):
                e1 = min(e0 + step, hi)
                coefs = _morlet(x[e0:e1], kernels, nfft, n_times, sl, ctype, method in ("plv", "ppc"),
                                workers=-1 if threads == 1 else 1)  # fmt: skip
                out[e0:e1, ib] = _within(coefs, method).mean(axis=1)

    bounds = np.linspace(0, n_ep, threads + 1).round().astype(int)
    with _one_blas_thread():  # process-wide: set once, not from the threads
        if threads == 1:
            part(0, n_ep)
        else:
            with ThreadPoolExecutor(threads) as pool:  # numpy, scipy.fft and BLAS release the GIL
                for _ in pool.map(part, bounds[:-1], bounds[1:]):
                    pass
    _finalise(out)
    return (out, info) if return_info else out


def across_epoch_connectivity(
    data: ArrayLike,
    sfreq: float,
    bands: Mapping[str, tuple[float, float]],
    *,
    method: Method = "ppc",
    tmin: float | None = None,
    tmax: float | None = None,
    t0: float = 0.0,
    freqs_per_band: int | Mapping[str, ArrayLike] = 5,
    n_cycles: NCycles = None,
    decim: int = 1,
    zero_mean: bool = True,
    precision: Literal["single", "double"] = "single",
    subsample: int | None = None,
    n_draws: int = 50,
    seed: int | np.random.Generator | None = 0,
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """Across-epoch (trial) connectivity of one condition: one network per band.

    Use it for event-related phase locking of a condition (e.g. all ME epochs
    of a subject): phase consistency *over epochs* at each time point,
    averaged over the window. Use :func:`epoch_connectivity` for one network
    per epoch (graph metrics per trial, classifiers).

    Parameters
    ----------
    data : array-like, shape (n_epochs, n_channels, n_times)
        The epochs of one condition (at least 2).
    sfreq, bands, tmin, tmax, t0, freqs_per_band, n_cycles, decim, zero_mean, precision
        As in :func:`epoch_connectivity`.
    method : {'ppc', 'plv', 'wpli', 'coh'}
        Estimator, see Notes. Default PPC: its expectation does not depend on
        the number of epochs, so conditions with few (ME) and many (MaE)
        epochs are comparable.
    subsample : int | None
        Count equalisation: average the estimator over ``n_draws`` random
        subsets of ``subsample`` epochs (drawn without replacement), e.g. the
        smallest condition's count, so that PLV of conditions with unequal
        counts share the same bias. None: all epochs once.
    n_draws : int
        Number of random subsets when ``subsample`` is set.
    seed : int | Generator | None
        Seed of the subset draws.
    return_info : bool
        Also return the estimator's parameters.

    Returns
    -------
    conn : ndarray, shape (n_bands, n_channels, n_channels)
        Symmetric, zero diagonal.
    info : dict
        Only if ``return_info``.

    Raises
    ------
    ValueError
        As :func:`epoch_connectivity`; also on fewer than 2 epochs or
        ``subsample`` outside [2, n_epochs].

    Notes
    -----
    With E epochs, ``E_e`` the mean over epochs at one time point t and the
    other symbols as in :func:`epoch_connectivity`, per frequency and time::

        PLV_xy(t)  = |E_e[z_x conj(z_y)]|
        PPC_xy(t)  = (E PLV_xy(t)^2 - 1) / (E - 1)
        wPLI_xy(t) = |E_e[Im S_xy]| / E_e[|Im S_xy|]
        COH_xy(t)  = |E_e[S_xy]| / sqrt(E_e[|X_x|^2] E_e[|X_y|^2])

    then averaged over the window's time points and the band's frequencies.
    Epochs are independent, so PPC is unbiased here: its expectation is 0 for
    independent signals and the squared population PLV otherwise (Vinck et
    al. 2010), while PLV of independent signals is ~ sqrt(pi / (4 E)).

    References
    ----------
    Lachaux et al. (1999) Hum Brain Mapp 8:194-208; Vinck et al. (2010)
    NeuroImage 51:112-122; Vinck et al. (2011) NeuroImage 55:1548-1565.
    """
    x, freqs, cycles, sl, info = _prepare(data, sfreq, bands, method, tmin, tmax, t0, freqs_per_band, n_cycles, decim)
    ctype = _check_precision(precision)
    n_ep, n_ch, n_times = x.shape
    if n_ep < 2:
        raise ValueError(f"across-epoch connectivity needs at least 2 epochs, got {n_ep}")
    subsets: list[np.ndarray | slice] = [slice(None)]
    if subsample is not None:
        if not (isinstance(subsample, int | np.integer) and 2 <= subsample <= n_ep):
            raise ValueError(f"subsample must be an int in [2, n_epochs={n_ep}], got {subsample!r}")
        if not (isinstance(n_draws, int | np.integer) and n_draws >= 1):
            raise ValueError(f"n_draws must be a positive int, got {n_draws!r}")
        rng = np.random.default_rng(seed)
        subsets = [np.sort(rng.choice(n_ep, size=subsample, replace=False)) for _ in range(n_draws)]
    info.update(estimator="across-epoch", zero_mean=bool(zero_mean), precision=precision, n_epochs=n_ep, subsample=subsample,
                n_draws=n_draws if subsample is not None else None)  # fmt: skip
    logger.info("across-epoch %s: %d epochs x %d channels, %d bands, %d draw(s)", method, n_ep, n_ch, len(freqs), len(subsets))
    out = np.zeros((len(freqs), n_ch, n_ch))
    for ib, band in enumerate(freqs):
        for f, nc in zip(freqs[band], cycles[band], strict=True):
            kernels, nfft = _wavelet_kernels(sfreq, np.array([f]), np.array([nc]), zero_mean, n_times)
            with _one_blas_thread():
                coefs = _morlet(x, kernels, nfft, n_times, sl, ctype, method in ("plv", "ppc"))[:, 0]  # (e, c, t)
                acc = np.zeros((n_ch, n_ch))
                for sub in subsets:
                    acc += _across(coefs[sub], method)
            out[ib] += acc / len(subsets)
        out[ib] /= len(freqs[band])
    _finalise(out)
    return (out, info) if return_info else out


# --------------------------------------------------------------------------- container


def connectivity_dataarray(
    conn: ArrayLike,
    *,
    channels: Sequence[str],
    bands: Sequence[str] | Mapping[str, Any],
    method: str,
    epoch_ids: Sequence[Any] | None = None,
    subject: str | Sequence[str] | None = None,
    condition: str | Sequence[str] | None = None,
    info: Mapping[str, Any] | None = None,
    config: Config | None = None,
    **extra: Any,
) -> xr.DataArray:
    """Wrap a connectivity array in the mmme-neuro data model.

    Parameters
    ----------
    conn : array-like, shape (n_epochs, n_bands, n_ch, n_ch) | (n_bands, n_ch, n_ch)
        Output of :func:`epoch_connectivity` (4-D) or
        :func:`across_epoch_connectivity` (3-D).
    channels : sequence of str
        Node names (EEG channels), in the order of the matrix rows.
    bands : sequence of str | mapping
        Band names (a mapping such as ``Config().bands`` gives its keys).
    method : str
        Estimator name, one of :data:`METHODS`.
    epoch_ids : sequence | None
        Epoch coordinate (4-D only); default 0..n_epochs-1.
    subject, condition : str | sequence of str | None
        4-D: a str or one value per epoch, stored as non-dimension
        coordinates along ``epoch`` (a subject's epochs of all conditions in
        one array). 3-D: a str each, added as leading length-1 dimensions
        ``subject`` / ``condition`` (ready for :func:`xarray.concat`).
    info : mapping | None
        The ``info`` returned with ``return_info=True`` (freqs, n_cycles,
        window ...), stored in the attributes.
    config : Config | None
        Effective configuration (hash and seed recorded).
    **extra
        Further provenance attributes.

    Returns
    -------
    da : DataArray
        Dims (epoch, band, node, node_other), or ([subject,] [condition,]
        band, node, node_other); symmetric, zero diagonal; attrs ``method``,
        ``definition``, ``units`` = "1" and provenance.

    Raises
    ------
    ValueError
        On a shape that does not match the labels, an unknown method, a
        non-square or non-symmetric matrix, or per-epoch labels in 3-D.
    """
    arr = np.array(conn, dtype=float)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    band_names = list(bands.keys()) if isinstance(bands, Mapping) else [str(b) for b in bands]
    channels = [str(c) for c in channels]
    if arr.ndim not in (3, 4):
        raise ValueError(f"conn must be 3-D (band, node, node) or 4-D (epoch, band, node, node), got shape {arr.shape}")
    if arr.shape[-3:] != (len(band_names), len(channels), len(channels)):
        raise ValueError(f"conn shape {arr.shape} does not match {len(band_names)} bands x {len(channels)} x {len(channels)} channels")
    if len(set(channels)) != len(channels):
        raise ValueError("channel names must be unique")
    if not np.allclose(arr, np.swapaxes(arr, -1, -2), rtol=0, atol=1e-10, equal_nan=True):
        raise ValueError("conn must be symmetric in its last two axes")
    arr = 0.5 * (arr + np.swapaxes(arr, -1, -2))
    idx = np.arange(len(channels))
    arr[..., idx, idx] = 0.0
    attrs = provenance(config, method=method, definition=DEFINITIONS[method], units="1", **dict(info or {}), **extra)
    coords: dict[str, Any] = {"band": band_names, "node": channels, "node_other": channels}
    if arr.ndim == 4:
        n_ep = arr.shape[0]
        ids = list(range(n_ep)) if epoch_ids is None else list(epoch_ids)
        if len(ids) != n_ep:
            raise ValueError(f"epoch_ids has {len(ids)} values for {n_ep} epochs")
        coords["epoch"] = ids
        for name, val in (("subject", subject), ("condition", condition)):
            if val is None:
                continue
            vals = [val] * n_ep if isinstance(val, str) else [str(v) for v in val]
            if len(vals) != n_ep:
                raise ValueError(f"{name} has {len(vals)} values for {n_ep} epochs")
            coords[name] = ("epoch", vals)
        da = xr.DataArray(arr, dims=("epoch", "band", "node", "node_other"), coords=coords, name=f"connectivity_{method}", attrs=attrs)
    else:
        dims = ["band", "node", "node_other"]
        for name, val in (("condition", condition), ("subject", subject)):
            if val is None:
                continue
            if not isinstance(val, str):
                raise ValueError(f"{name} must be a single str for a 3-D (one-condition) array")
            arr = arr[np.newaxis]
            dims.insert(0, name)
            coords[name] = [val]
        if epoch_ids is not None:
            raise ValueError("epoch_ids only applies to 4-D (per-epoch) arrays")
        da = xr.DataArray(arr, dims=tuple(dims), coords=coords, name=f"connectivity_{method}", attrs=attrs)
    return validate(da)


# --------------------------------------------------------------------------- private


def _check_bands(bands: Mapping[str, tuple[float, float]]) -> None:
    if not isinstance(bands, Mapping) or not bands:
        raise ValueError(f"bands must be a non-empty mapping name -> (low, high) Hz, got {bands!r}")
    for name, edges in bands.items():
        try:
            lo, hi = (float(v) for v in edges)
        except (TypeError, ValueError):
            raise ValueError(f"band {name!r}: expected (low, high) in Hz, got {edges!r}") from None
        if not (0 <= lo < hi) or not math.isfinite(hi):
            raise ValueError(f"band {name!r}: need 0 <= low < high, got ({lo}, {hi}) Hz")


def _check_precision(precision: str) -> type:
    if precision == "single":
        return np.complex64
    if precision == "double":
        return np.complex128
    raise ValueError(f"precision must be 'single' or 'double', got {precision!r}")


def _one_blas_thread() -> threadpool_limits:
    """Limit BLAS to one thread for the many small products (see :func:`_gram`)."""
    return threadpool_limits(limits=1, user_api="blas")


def _band_cycles(freqs: dict[str, np.ndarray], n_cycles: NCycles) -> dict[str, np.ndarray]:
    out = {}
    for band, f in freqs.items():
        if n_cycles is None:
            c = f / 2.0
        elif callable(n_cycles):
            c = np.broadcast_to(np.asarray(n_cycles(f), dtype=float), f.shape).copy()
        elif isinstance(n_cycles, Mapping):
            if band not in n_cycles:
                raise ValueError(f"n_cycles has no entry for band {band!r}")
            c = np.asarray(n_cycles[band], dtype=float)
            if c.ndim == 0:
                c = np.full(f.shape, float(c))
            if c.shape != f.shape:
                raise ValueError(f"band {band!r}: n_cycles has {c.size} values for {f.size} frequencies")
        else:
            c = np.full(f.shape, float(n_cycles))
        if np.any(~np.isfinite(c)) or np.any(c <= 0):
            raise ValueError(f"band {band!r}: n_cycles must be positive, got {c}")
        out[band] = c
    return out


def _prepare(
    data: ArrayLike,
    sfreq: float,
    bands: Mapping[str, tuple[float, float]],
    method: str,
    tmin: float | None,
    tmax: float | None,
    t0: float,
    freqs_per_band: int | Mapping[str, ArrayLike],
    n_cycles: NCycles,
    decim: int,
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray], slice, dict[str, Any]]:
    """Validate the public arguments; return data, freqs, cycles, window slice and info."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not (isinstance(sfreq, int | float | np.number) and math.isfinite(sfreq) and sfreq > 0):
        raise ValueError(f"sfreq must be a positive number (Hz), got {sfreq!r}")
    if not (isinstance(decim, int | np.integer) and decim >= 1):
        raise ValueError(f"decim must be a positive int, got {decim!r}")
    x = np.asarray(data)
    if x.ndim != 3:
        raise ValueError(f"data must be 3-D (n_epochs, n_channels, n_times), got shape {x.shape}")
    if np.iscomplexobj(x) or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"data must be real-valued, got dtype {x.dtype}")
    if min(x.shape) == 0:
        raise ValueError(f"data is empty: shape {x.shape}")
    x = np.ascontiguousarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("data contains NaN or infinite values")
    n_ep, n_ch, n_times = x.shape
    if n_ch < 2:
        raise ValueError(f"connectivity needs at least 2 channels, got {n_ch}")
    flat = np.ptp(x, axis=-1) == 0
    if flat.any():
        e, c = np.argwhere(flat)[0]
        raise ValueError(f"{int(flat.sum())} flat (constant) channel segment(s), e.g. epoch {e}, channel {c}: phase undefined")
    freqs = band_frequencies(bands, freqs_per_band)
    cycles = _band_cycles(freqs, n_cycles)
    nyq = sfreq / 2.0
    for band, f in freqs.items():
        if np.any(f >= nyq):
            raise ValueError(f"band {band!r}: frequencies {f[f >= nyq]} Hz are at or above Nyquist ({nyq} Hz)")
    # window: inclusive, with a tolerance of a thousandth of a sample
    times = t0 + np.arange(n_times) / sfreq
    eps = 1e-3 / sfreq
    lo = times[0] if tmin is None else float(tmin)
    hi = times[-1] if tmax is None else float(tmax)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"need finite tmin <= tmax, got tmin={tmin}, tmax={tmax}")
    i0 = int(np.searchsorted(times, lo - eps, side="left"))
    i1 = int(np.searchsorted(times, hi + eps, side="right"))
    sl = slice(i0, i1, int(decim))
    n_samples = len(range(*sl.indices(n_times)))
    if n_samples < 2:
        raise ValueError(
            f"window [{lo}, {hi}] s keeps {n_samples} sample(s) of the epoch [{times[0]:.4f}, {times[-1]:.4f}] s; need >= 2"
        )
    pads = {}
    for band in freqs:
        half = np.array([(len(w) - 1) // 2 for w in morlet_wavelets(sfreq, freqs[band], cycles[band])])
        if np.any(2 * half + 1 > n_times):
            bad = freqs[band][2 * half + 1 > n_times]
            raise ValueError(
                f"band {band!r}: the wavelets at {bad} Hz ({2 * half.max() + 1} samples) are longer than the "
                f"epoch ({n_times} samples); use fewer cycles, higher frequencies or longer epochs"
            )
        pads[band] = float(half.max() / sfreq)
        if i0 < half.max() or (n_times - i1) < half.max():
            logger.warning(
                "band %s: the window keeps %.3f s / %.3f s from the epoch edges, the wavelets need %.3f s: "
                "edge effects inside the window", band, i0 / sfreq, (n_times - i1) / sfreq, pads[band],
            )  # fmt: skip
    info = {
        "estimator": "within-epoch",
        "sfreq": float(sfreq),
        "freqs": {b: [float(v) for v in f] for b, f in freqs.items()},
        "n_cycles": {b: [float(v) for v in c] for b, c in cycles.items()},
        "wavelet": "complex Morlet (mne.time_frequency.morlet, +-5 sigma_t), FFT convolution",
        "window": [float(times[i0]), float(times[i1 - 1])],
        "decim": int(decim),
        "n_samples": int(n_samples),
        "required_padding_s": pads,
        "band_average": "mean over the band's frequencies of the per-frequency estimate",
    }
    return x, freqs, cycles, sl, info


def _wavelet_kernels(
    sfreq: float, freqs: np.ndarray, cycles: np.ndarray, zero_mean: bool, n_times: int
) -> tuple[np.ndarray, int]:
    """FFTs of the wavelets, each circularly shifted so its centre sits at sample 0.

    With the centre at sample 0, ``ifft(fft(x) * K)[:n_times]`` is directly
    MNE's ``mode='same'`` output; linear (not circular) convolution needs only
    ``nfft >= n_times + half_width`` (MNE pads to n_times + 2 half_width).
    """
    ws = morlet_wavelets(sfreq, freqs, cycles, zero_mean=zero_mean)
    half = max((len(w) - 1) // 2 for w in ws)
    nfft = scipy.fft.next_fast_len(n_times + half)
    return centred_spectra(ws, nfft), nfft


def centred_spectra(wavelets: Sequence[np.ndarray], nfft: int) -> np.ndarray:
    """FFTs (length ``nfft``) of odd-length wavelets circularly shifted so that each centre sits at sample 0.

    With the centre at sample 0, ``ifft(fft(x, nfft) * K)[:n_times]`` is the
    ``mode='same'`` convolution of MNE's transforms whenever
    ``nfft >= n_times + (len(w) - 1) // 2``. Shape ``(n_wavelets, nfft)``, complex128.
    """
    kern = np.zeros((len(wavelets), nfft), dtype=np.complex128)
    for i, w in enumerate(wavelets):
        h = (len(w) - 1) // 2
        kern[i, : h + 1] = w[h:]
        if h:
            kern[i, -h:] = w[:h]
    return scipy.fft.fft(kern, axis=-1)


def _morlet(
    x: np.ndarray, kernels: np.ndarray, nfft: int, n_times: int, sl: slice, dtype: type, phasors: bool, workers: int = -1
) -> np.ndarray:
    """Morlet coefficients (or their unit phasors) of x (e, c, t) -> contiguous (e, f, c, t_window).

    Own FFT convolution rather than ``mne.time_frequency.tfr_array_morlet``:
    MNE loops in Python over channels x epochs x frequencies (one small FFT
    each, 64 x 30 x 44 = 84,480 calls in the issue's setting) and pads to
    n_times + 2 half-widths; here all channels, the epochs of a chunk and the
    frequencies of a band are one batched scipy.fft call. Values equal MNE's
    to round-off (test). The signal FFT and its product with the wavelet
    spectra are formed in float64; only the band-limited product is cast to
    ``dtype`` before the inverse FFT, so single precision errors are relative
    to the band's own amplitude, not to the broadband (DC, delta) content.
    ``workers``: threads of the FFTs (scipy.fft; the values do not depend on it).
    """
    fx = scipy.fft.fft(x, n=nfft, axis=-1, workers=workers)  # (e, c, nfft) complex128
    buf = np.empty((x.shape[0], kernels.shape[0], x.shape[1], nfft), dtype=dtype)
    np.multiply(fx[:, np.newaxis], kernels[np.newaxis, :, np.newaxis], out=buf, casting="same_kind")
    out = scipy.fft.ifft(buf, axis=-1, overwrite_x=True, workers=workers)
    view = out[..., :n_times][..., sl]
    if not phasors:
        return np.ascontiguousarray(view)
    inv = np.abs(view)
    np.maximum(inv, np.finfo(inv.dtype).tiny, out=inv)
    np.reciprocal(inv, out=inv)
    return view * inv  # new C-contiguous array; complex * real is ~1.5x faster than complex / real


def _gram(a: np.ndarray) -> np.ndarray:
    """Batched Hermitian product ``a @ a^H`` over the last two axes.

    One BLAS ``?herk`` per (n_channels, n_times) matrix: half the flops of a
    general product and no conjugated copy (``herk(m.T, trans=2)`` reads the
    C-ordered matrix in place and returns conj(m m^H) in its upper triangle).
    Callers limit BLAS to one thread (:func:`_one_blas_thread`): the matrices
    are small, and OpenBLAS threads that busy-wait on an oversubscribed
    machine made a batched ``matmul`` 30-50x slower in our measurements.
    """
    herk = scipy.linalg.blas.cherk if a.dtype == np.complex64 else scipy.linalg.blas.zherk
    n_ch, n_t = a.shape[-2:]
    flat = np.ascontiguousarray(a).reshape(-1, n_ch, n_t)
    up = np.empty((flat.shape[0], n_ch, n_ch), dtype=a.dtype)
    for k in range(flat.shape[0]):
        up[k] = herk(1.0, flat[k].T, trans=2)
    up = np.triu(up)
    full = np.conj(up) + np.swapaxes(np.triu(up, 1), -1, -2)  # = m m^H
    return full.reshape(a.shape[:-2] + (n_ch, n_ch))


def _within(c: np.ndarray, method: str) -> np.ndarray:
    """Per-frequency within-epoch estimator: c (..., c, t) -> (..., c, c)."""
    n = c.shape[-1]
    if method in ("plv", "ppc"):
        plv = np.abs(_gram(c)).astype(np.float64) / n
        return plv if method == "plv" else (n * plv**2 - 1.0) / (n - 1.0)
    if method == "coh":
        s = np.abs(_gram(c)).astype(np.float64)
        p = np.sqrt(np.einsum("...ii->...i", s))  # sqrt of sum |X|^2 (diagonal)
        return s / (p[..., :, None] * p[..., None, :])
    return _wpli(c, axis=-1)


def _across(c: np.ndarray, method: str) -> np.ndarray:
    """Across-epoch estimator averaged over time: c (e, c, t) -> (c, c)."""
    n = c.shape[0]
    ct = np.ascontiguousarray(np.transpose(c, (2, 1, 0)))  # (t, c, e)
    if method in ("plv", "ppc"):
        plv = np.abs(_gram(ct)).astype(np.float64) / n  # (t, c, c)
        est = plv if method == "plv" else (n * plv**2 - 1.0) / (n - 1.0)
    elif method == "coh":
        s = np.abs(_gram(ct)).astype(np.float64)
        p = np.sqrt(np.einsum("...ii->...i", s))
        est = s / (p[..., :, None] * p[..., None, :])
    else:
        est = _wpli(ct, axis=-1)
    return est.mean(axis=0)


def _wpli(c: np.ndarray, axis: int) -> np.ndarray:
    """wPLI over the last axis: c (..., ch, n) -> (..., ch, ch); pairs of the upper triangle in chunks."""
    n_ch = c.shape[-2]
    num = np.abs(_gram(c).imag).astype(np.float64) / c.shape[-1]
    re, im = np.ascontiguousarray(c.real), np.ascontiguousarray(c.imag)
    iu, ju = np.triu_indices(n_ch, k=1)
    den = np.zeros(c.shape[:-2] + (iu.size,))
    step = max(1, (_BATCH_BYTES // 8) // max(1, int(np.prod(c.shape[:-2])) * c.shape[-1]))
    for p0 in range(0, iu.size, step):
        i, j = iu[p0:p0 + step], ju[p0:p0 + step]
        den[..., p0:p0 + step] = np.abs(im[..., i, :] * re[..., j, :] - re[..., i, :] * im[..., j, :]).mean(axis=-1)
    dfull = np.zeros(c.shape[:-2] + (n_ch, n_ch))
    dfull[..., iu, ju] = den
    dfull[..., ju, iu] = den
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(dfull > 0, num / np.where(dfull > 0, dfull, 1.0), 0.0)
    return w


def _finalise(out: np.ndarray) -> None:
    """Symmetrise (round-off only) and zero the diagonal in place."""
    out[...] = 0.5 * (out + np.swapaxes(out, -1, -2))
    idx = np.arange(out.shape[-1])
    out[..., idx, idx] = 0.0
