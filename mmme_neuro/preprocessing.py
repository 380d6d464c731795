"""EEG preprocessing on padded segments around epochs, never on whole sessions.

A full MMME session is 69 channels x 4.4 M samples (2.4 GB as float64), but an
expression-locked analysis needs only a few seconds around each epoch. This
module reads only those spans (plus the padding the filters need), cleans them
and hands an :class:`mne.io.Raw` of concatenated segments to
:mod:`mmme_neuro.epochs`.

Pipeline (:func:`preprocess_segments`; every step can be switched off and is
recorded in ``report["steps"]``, which goes into provenance attributes):

1. **read** (:func:`read_segments`): spans ``[c + tmin - pad, c + tmax + pad]``
   around every epoch centre ``c``, overlapping spans merged, each span read
   lazily from the recording (``raw.preload`` stays False). Spans are separate
   pieces of one concatenated Raw: MNE marks each join with ``BAD boundary`` and
   ``EDGE boundary`` annotations, and a :class:`SegmentMap` maps original samples
   to segment samples.
2. **notch + band-pass**: zero-phase FIR, MNE defaults, ``skip_by_annotation``
   ``("edge", "bad_acq_skip")`` so every span is filtered on its own (MNE's
   annotation-aware filtering: no smearing across joins). The padding is half the
   longest filter (:func:`filter_pad_s`): samples of the epoch then see exactly the
   input the whole-recording filter would see, so the result equals the
   whole-recording filter (tested). With MNE's default 0.1-Hz high-pass the
   filter is 33 s long, hence ~17 s of padding per side.
3. **bad channels** (:func:`detect_bad_channels`): robust z-scores of channel
   amplitude and of correlation with the nearest neighbours; flagged channels
   are interpolated by spherical splines (montage positions, Quik-Cap).
4. **re-reference**: common average of the 62 scalp channels, or linked
   mastoids (M1 + M2) / 2; M1/M2 are then dropped from analysis.
5. **ICA** (ocular): the one step *fitted on all segments together*:
   :class:`mne.preprocessing.ICA` (picard if installed, else fastica; seeded from
   ``Config.seed``) on a 1-Hz high-passed copy of the concatenated segments;
   components correlated with VEO/HEO (:meth:`~mne.preprocessing.ICA.find_bads_eog`)
   are removed from the 0.1-Hz data.
6. **muscle components** (:meth:`~mne.preprocessing.ICA.find_bads_muscle`):
   flagged and reported, *not removed* by default: facial EMG is the main
   confound of expression-locked EEG and is measured per epoch
   (:mod:`mmme_neuro.epochs`); removing muscle ICs would remove part of the
   very contamination that must be measured, and would do so unequally for ME
   and MaE. Set ``PreprocessOptions(muscle="remove")`` to remove them.
7. **resampling** to ``resample_sfreq`` AFTER filtering: for an integer factor
   the epochs are decimated at extraction (exact landmark samples; the 45-Hz
   low-pass is the anti-alias filter); otherwise each span is resampled on its
   own (:meth:`mne.io.Raw.resample` works per concatenated piece) and landmarks
   are rounded to the nearest new sample (<= half a sample).

Per-epoch rejection (peak-to-peak / flat, µV) is in :mod:`mmme_neuro.epochs`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from dataclasses import dataclass
from typing import Any, Literal

import mne
import numpy as np
import pandas as pd

from .config import Config, PreprocessingConfig
from .constants import MASTOID_CHANNELS, SCALP_CHANNELS

__all__ = [
    "PreprocessOptions",
    "SegmentMap",
    "decimation_factor",
    "detect_bad_channels",
    "filter_pad_s",
    "get_segment_map",
    "preprocess",
    "preprocess_segments",
    "read_segments",
]

logger = logging.getLogger(__name__)

_TEMP_KEY = "mmme_segment_map"
_PAD_MARGIN_S = 0.1
_FILTER_TYPES = ["eeg", "eog", "ecg", "emg"]


@dataclass(frozen=True)
class PreprocessOptions:
    """Choices of the preprocessing pipeline that are not in :class:`PreprocessingConfig`.

    Attributes
    ----------
    filter : bool
        Apply the band-pass and notch of the configuration.
    detect_bads : bool
        Detect bad channels (:func:`detect_bad_channels`).
    interpolate_bads : bool
        Interpolate detected bad channels (spherical splines).
    bad_z_threshold : float
        Robust z-score (median/MAD) beyond which a channel is bad.
    bad_min_neighbor_corr : float
        A channel is bad if its mean correlation with its nearest neighbours is
        below this *and* its correlation z-score is below ``-bad_z_threshold``.
    bad_n_neighbors : int
        Neighbours used for the correlation criterion.
    ica_method : {"auto", "picard", "fastica", "infomax"}
        ``"auto"``: picard if installed, else fastica.
    ica_n_components : int | float
        Components (int) or explained variance (float < 1) of the ICA.
    ica_highpass_hz : float
        High-pass (Hz) of the copy the ICA is fitted on.
    ica_max_iter : int | "auto"
        Iteration cap of the ICA (MNE's "auto": 1000 for fastica). ICA of
        near-Gaussian data (the synthetic background) does not converge; the
        ocular component is found within ~200 iterations.
    eog_channels : tuple of str
        EOG channels used to find ocular components.
    eog_threshold : float
        z-score threshold of :meth:`~mne.preprocessing.ICA.find_bads_eog`.
    muscle : {"off", "flag", "remove"}
        Muscle ICs: not looked for, flagged only (default), or removed.
    muscle_threshold : float
        Threshold of :meth:`~mne.preprocessing.ICA.find_bads_muscle`.
    resample : bool
        Resample (or decimate) to ``resample_sfreq``.
    """

    filter: bool = True
    detect_bads: bool = True
    interpolate_bads: bool = True
    bad_z_threshold: float = 5.0
    bad_min_neighbor_corr: float = 0.4
    bad_n_neighbors: int = 4
    ica_method: Literal["auto", "picard", "fastica", "infomax"] = "auto"
    ica_n_components: int | float = 20
    ica_highpass_hz: float = 1.0
    ica_max_iter: int | Literal["auto"] = "auto"
    eog_channels: tuple[str, ...] = ("VEO", "HEO")
    eog_threshold: float = 3.0
    muscle: Literal["off", "flag", "remove"] = "flag"
    muscle_threshold: float = 0.5
    resample: bool = True


@dataclass(frozen=True)
class SegmentMap:
    """Map from samples of the original recording to samples of the concatenated segments.

    Attributes
    ----------
    orig_start, orig_stop : ndarray of int64
        Span ``i`` covers original samples ``[orig_start[i], orig_stop[i])``
        (at ``orig_sfreq``).
    seg_start, seg_stop : ndarray of int64
        Where span ``i`` lies in the segments Raw (at ``sfreq``).
    orig_sfreq, sfreq : float
        Sampling rates (Hz) of the recording and of the segments.
    """

    orig_start: np.ndarray
    orig_stop: np.ndarray
    seg_start: np.ndarray
    seg_stop: np.ndarray
    orig_sfreq: float
    sfreq: float

    @property
    def n_spans(self) -> int:
        """Number of spans."""
        return int(self.orig_start.size)

    @property
    def n_orig_samples(self) -> int:
        """Original samples covered (= samples read from the recording)."""
        return int((self.orig_stop - self.orig_start).sum())

    def span_of(self, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Index of the span that holds original samples ``first..last`` (inclusive); -1 if none.

        Parameters
        ----------
        first, last : array of int
            First and last original sample of each window.
        """
        first = np.asarray(first, dtype=np.int64)
        last = np.asarray(last, dtype=np.int64)
        i = np.searchsorted(self.orig_start, first, side="right") - 1
        ok = (i >= 0) & (last < self.orig_stop[np.maximum(i, 0)])
        return np.where(ok, i, -1)

    def to_segment(self, orig_samples: np.ndarray) -> np.ndarray:
        """Segment sample (float, at ``sfreq``) of original samples; NaN outside every span."""
        x = np.asarray(orig_samples, dtype=np.int64)
        i = self.span_of(x, x)
        j = np.maximum(i, 0)
        ratio = self.sfreq / self.orig_sfreq
        out = self.seg_start[j] + (x - self.orig_start[j]) * ratio
        return np.where(i >= 0, out, np.nan)

    def resampled(self, sfreq: float, seg_lengths: np.ndarray) -> SegmentMap:
        """The map after every span was resampled to ``sfreq`` (new span lengths given)."""
        stop = np.cumsum(np.asarray(seg_lengths, dtype=np.int64))
        return dataclasses.replace(self, seg_start=stop - seg_lengths, seg_stop=stop, sfreq=float(sfreq))

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible summary (span counts and lengths)."""
        return {
            "n_spans": self.n_spans,
            "n_orig_samples": self.n_orig_samples,
            "orig_sfreq": self.orig_sfreq,
            "sfreq": self.sfreq,
            "orig_start": self.orig_start.tolist(),
            "orig_stop": self.orig_stop.tolist(),
        }


# ----------------------------------------------------------------------------- helpers


def _filter_lengths(sfreq: float, cfg: PreprocessingConfig) -> dict[str, int]:
    """Lengths (samples) of MNE's default FIR filters of the configuration."""
    out: dict[str, int] = {}
    nyq = sfreq / 2.0
    h = cfg.h_freq if cfg.h_freq is not None and cfg.h_freq < nyq else None
    if cfg.l_freq is not None or h is not None:
        filt = mne.filter.create_filter(None, sfreq, cfg.l_freq, h, verbose=False)
        out["bandpass"] = int(len(filt))
    if cfg.notch_freq is not None and cfg.notch_freq < nyq:
        # MNE's default notch: width freq / 200, transition 1 Hz -> band-stop with 0.5-Hz transitions
        f, half = cfg.notch_freq, cfg.notch_freq / 400 + 0.5
        filt = mne.filter.create_filter(None, sfreq, f + half, f - half, l_trans_bandwidth=0.5,
                                        h_trans_bandwidth=0.5, verbose=False)
        out["notch"] = int(len(filt))
    return out


def filter_pad_s(sfreq: float, config: PreprocessingConfig | Config, *, extra_hz: float | None = 1.0) -> float:
    """Padding (s) each side of an epoch so that filtering a segment equals filtering the recording.

    Half the length of the longest zero-phase FIR filter of the configuration
    (band-pass, notch and, if ``extra_hz`` is given, the high-pass at
    ``extra_hz`` Hz of the ICA copy), plus 0.1 s.

    Parameters
    ----------
    sfreq : float
        Sampling rate (Hz) of the recording.
    config : PreprocessingConfig | Config
        The preprocessing configuration (or a whole :class:`Config`).
    extra_hz : float | None
        Another high-pass edge (Hz) applied to the segments (the ICA copy).

    Returns
    -------
    pad_s : float
        Padding (s). MNE's default 0.1-Hz high-pass (33 s long) gives ~16.6 s.
    """
    cfg = config.preprocessing if isinstance(config, Config) else config
    lengths = list(_filter_lengths(sfreq, cfg).values())
    if extra_hz is not None:
        lengths.append(len(mne.filter.create_filter(None, sfreq, extra_hz, None, verbose=False)))
    half = max(lengths, default=0) / 2.0 / sfreq
    return float(half + _PAD_MARGIN_S)


def _merge_spans(starts: np.ndarray, stops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge overlapping or touching half-open spans ``[start, stop)``; sorted output."""
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], stops[order]
    out_s, out_e = [int(s[0])], [int(e[0])]
    for a, b in zip(s[1:], e[1:], strict=True):
        if a <= out_e[-1]:
            out_e[-1] = max(out_e[-1], int(b))
        else:
            out_s.append(int(a))
            out_e.append(int(b))
    return np.array(out_s, dtype=np.int64), np.array(out_e, dtype=np.int64)


def get_segment_map(raw: mne.io.BaseRaw) -> SegmentMap:
    """Return the :class:`SegmentMap` of a Raw made by :func:`read_segments`.

    Raises
    ------
    ValueError
        If ``raw`` was not made by :func:`read_segments`.
    """
    temp = raw.info.get("temp")
    if not isinstance(temp, dict) or _TEMP_KEY not in temp:
        raise ValueError("raw has no segment map: make it with mmme_neuro.preprocessing.read_segments")
    return temp[_TEMP_KEY]


def _set_segment_map(raw: mne.io.BaseRaw, smap: SegmentMap) -> None:
    temp = raw.info.get("temp")
    temp = dict(temp) if isinstance(temp, dict) else {}
    temp[_TEMP_KEY] = smap
    raw.info["temp"] = temp


def _eeg_present(raw: mne.io.BaseRaw, names: tuple[str, ...]) -> list[str]:
    return [c for c in names if c in raw.ch_names]


def _robust_z(x: np.ndarray) -> np.ndarray:
    med = np.median(x)
    mad = 1.4826 * np.median(np.abs(x - med))
    return (x - med) / mad if mad > 0 else np.zeros_like(x)


def _ica_method(requested: str) -> str:
    if requested != "auto":
        return requested
    return "picard" if importlib.util.find_spec("picard") is not None else "fastica"


# ----------------------------------------------------------------------------- public API


def read_segments(
    raw: mne.io.BaseRaw,
    centers_s: np.ndarray,
    tmin: float,
    tmax: float,
    pad_s: float,
    *,
    picks: str | list[str] | None = None,
) -> mne.io.Raw:
    """Read only the padded spans around epoch centres, as one concatenated Raw.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        The session recording; not preloaded (it stays so: each span is read
        with :meth:`~mne.io.Raw.get_data`).
    centers_s : array of float
        Epoch landmarks (s from the first sample of ``raw``).
    tmin, tmax : float
        Epoch window relative to each centre (s).
    pad_s : float
        Padding (s) on both sides (see :func:`filter_pad_s`); spans are clipped
        to the recording.
    picks : str | list of str | None
        Channels to read (default: every channel but the stimulus/Trigger channel).

    Returns
    -------
    segments : mne.io.Raw
        Preloaded, the spans in time order. Joins carry ``BAD boundary`` and
        ``EDGE boundary`` annotations; :func:`get_segment_map` returns the map
        from original to segment samples (stored in ``info["temp"]``).

    Raises
    ------
    ValueError
        On an empty ``centers_s``, non-finite centres, ``tmin >= tmax`` or a
        negative ``pad_s``.
    """
    centers = np.asarray(centers_s, dtype=float).ravel()
    if centers.size == 0:
        raise ValueError("centers_s is empty: there is no epoch to read")
    if not np.all(np.isfinite(centers)):
        raise ValueError("centers_s must be finite (s)")
    if not tmin < tmax:
        raise ValueError(f"tmin ({tmin} s) must be below tmax ({tmax} s)")
    if pad_s < 0:
        raise ValueError(f"pad_s must be >= 0, got {pad_s} s")
    sf = float(raw.info["sfreq"])
    c = np.round(centers * sf).astype(np.int64)
    starts = np.clip(c + int(np.floor((tmin - pad_s) * sf)), 0, raw.n_times)
    stops = np.clip(c + int(np.ceil((tmax + pad_s) * sf)) + 1, 0, raw.n_times)
    keep = stops > starts
    if not keep.any():
        raise ValueError("no epoch window overlaps the recording")
    starts, stops = _merge_spans(starts[keep], stops[keep])
    if picks is None:
        picks = [c for c, t in zip(raw.ch_names, raw.get_channel_types(), strict=True) if t != "stim"]
    ch_names = [raw.ch_names[i] for i in mne.pick_channels(raw.ch_names, list(picks), ordered=True)] \
        if not isinstance(picks, str) else raw.copy().pick(picks).ch_names
    info = mne.pick_info(raw.info, [raw.ch_names.index(c) for c in ch_names])
    pieces = []
    with info._unlock():
        info["temp"] = None
    for a, b in zip(starts, stops, strict=True):
        data = raw.get_data(picks=ch_names, start=int(a), stop=int(b))
        pieces.append(mne.io.RawArray(data, info.copy(), verbose=False))
    segments = mne.concatenate_raws(pieces, verbose=False) if len(pieces) > 1 else pieces[0]
    lengths = stops - starts
    seg_stop = np.cumsum(lengths)
    smap = SegmentMap(starts, stops, seg_stop - lengths, seg_stop, sf, sf)
    _set_segment_map(segments, smap)
    logger.info(
        "read %d spans (%d samples = %.1f s, %.1f %% of the recording) around %d centres",
        smap.n_spans, smap.n_orig_samples, smap.n_orig_samples / sf,
        100.0 * smap.n_orig_samples / raw.n_times, centers.size,
    )  # fmt: skip
    return segments


def detect_bad_channels(
    raw: mne.io.BaseRaw,
    *,
    picks: list[str] | None = None,
    z_threshold: float = 5.0,
    min_neighbor_corr: float = 0.4,
    n_neighbors: int = 4,
    max_sfreq: float = 125.0,
) -> tuple[list[str], pd.DataFrame]:
    """Find bad EEG channels by robust amplitude and neighbour-correlation criteria.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        Preloaded, filtered EEG (e.g. the segments); channel positions needed
        for the correlation criterion.
    picks : list of str | None
        Channels to test (default: the scalp channels present).
    z_threshold : float
        Robust z-score (median / 1.4826 MAD across channels) beyond which the
        log amplitude flags a channel (noisy if > +z, low if < -z).
    min_neighbor_corr : float
        A channel whose mean correlation with its ``n_neighbors`` nearest
        channels is below this *and* whose correlation z-score is below
        ``-z_threshold`` is flagged (uncorrelated: bridging-free but broken).
    n_neighbors : int
        Nearest neighbours (3-D electrode distance).
    max_sfreq : float
        The data are strided down to about this rate (Hz) for speed.

    Returns
    -------
    bads : list of str
        Flagged channels, in channel order.
    scores : pandas.DataFrame
        One row per tested channel: ``channel``, ``amplitude_uv`` (robust
        amplitude, 1.4826 x MAD of the signal), ``amplitude_z``,
        ``neighbor_corr``, ``corr_z``, ``flat``, ``bad``, ``reason``.

    Notes
    -----
    The amplitude is a robust (MAD) estimate, so sparse large artefacts such
    as blinks on FP1/FPZ/FP2 do not make those channels "bad" (they are ICA's
    job). Flat channels (amplitude < 0.1 µV) are always bad.
    """
    picks = picks or _eeg_present(raw, SCALP_CHANNELS)
    if len(picks) < n_neighbors + 2:
        raise ValueError(f"need at least {n_neighbors + 2} channels to detect bad channels, got {len(picks)}")
    step = max(1, int(raw.info["sfreq"] // max_sfreq))
    x = raw.get_data(picks=picks)[:, ::step] * 1e6
    x = x - np.median(x, axis=1, keepdims=True)
    amp = 1.4826 * np.median(np.abs(x), axis=1)
    flat = amp < 0.1
    amp_z = _robust_z(np.log(np.maximum(amp, 1e-6)))
    pos = np.array([raw.info["chs"][raw.ch_names.index(c)]["loc"][:3] for c in picks])
    have_pos = np.all(np.isfinite(pos)) and np.any(pos != 0)
    corr = np.full(len(picks), np.nan)
    corr_z = np.zeros(len(picks))
    if have_pos:
        r = np.corrcoef(x)
        d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
        np.fill_diagonal(d, np.inf)
        nn = np.argsort(d, axis=1)[:, :n_neighbors]
        corr = np.nanmean(np.take_along_axis(r, nn, axis=1), axis=1)
        corr_z = _robust_z(np.nan_to_num(corr))
    reasons = []
    for i in range(len(picks)):
        why = []
        if flat[i]:
            why.append("flat")
        elif abs(amp_z[i]) > z_threshold:
            why.append(f"amplitude z={amp_z[i]:.1f}")
        if have_pos and corr[i] < min_neighbor_corr and corr_z[i] < -z_threshold:
            why.append(f"neighbour r={corr[i]:.2f}")
        reasons.append("; ".join(why))
    scores = pd.DataFrame({
        "channel": picks, "amplitude_uv": amp, "amplitude_z": amp_z, "neighbor_corr": corr,
        "corr_z": corr_z, "flat": flat, "bad": [bool(w) for w in reasons], "reason": reasons,
    })  # fmt: skip
    bads = scores.loc[scores.bad, "channel"].tolist()
    if bads:
        logger.info("bad channels: %s", ", ".join(f"{c} ({w})" for c, w in zip(bads, scores.reason[scores.bad], strict=True)))
    return bads, scores


def decimation_factor(sfreq: float, target: float | None) -> int | None:
    """Integer factor ``sfreq / target`` if it is one (1 if no resampling), else None."""
    if target is None or np.isclose(sfreq, target):
        return 1
    k = sfreq / target
    return int(round(k)) if np.isclose(k, round(k)) and k >= 1 else None


def _bandpass_notch(raw: mne.io.BaseRaw, cfg: PreprocessingConfig) -> dict[str, Any]:
    sf = float(raw.info["sfreq"])
    nyq = sf / 2
    out: dict[str, Any] = {}
    if cfg.notch_freq is not None and cfg.notch_freq < nyq:
        freqs = np.arange(cfg.notch_freq, nyq, cfg.notch_freq)
        raw.notch_filter(freqs, picks=_FILTER_TYPES, skip_by_annotation=("edge", "bad_acq_skip"), verbose=False)
        out["notch"] = {"freqs_hz": freqs.tolist(), "method": "fir", "phase": "zero"}
    h = cfg.h_freq if cfg.h_freq is not None and cfg.h_freq < nyq else None
    if cfg.l_freq is not None or h is not None:
        raw.filter(cfg.l_freq, h, picks=_FILTER_TYPES, skip_by_annotation=("edge", "bad_acq_skip"), verbose=False)
        out["bandpass"] = {"l_freq_hz": cfg.l_freq, "h_freq_hz": h, "method": "fir", "phase": "zero",
                           "filter_lengths_samples": _filter_lengths(sf, cfg)}  # fmt: skip
    return out


def _reference(raw: mne.io.BaseRaw, how: str) -> dict[str, Any]:
    scalp = _eeg_present(raw, SCALP_CHANNELS)
    if how == "mastoids":
        mast = _eeg_present(raw, MASTOID_CHANNELS)
        if len(mast) != 2:
            raise ValueError(f"linked-mastoid reference needs M1 and M2, found {mast}")
        bad_mast = [c for c in mast if c in raw.info["bads"]]
        if bad_mast:
            raise ValueError(f"linked-mastoid reference impossible: {bad_mast} marked bad")
        raw.set_eeg_reference(ref_channels=mast, projection=False, verbose=False)
        ref = "linked mastoids (M1 + M2) / 2"
    else:
        good = [c for c in scalp if c not in raw.info["bads"]]
        raw.set_eeg_reference(ref_channels=good, projection=False, verbose=False)
        ref = f"average of {len(good)} scalp channels"
    drop = _eeg_present(raw, MASTOID_CHANNELS)
    raw.drop_channels(drop)
    raw.info["bads"] = [c for c in raw.info["bads"] if c not in drop]
    return {"reference": how, "description": ref, "dropped": drop}


def _run_ica(raw: mne.io.BaseRaw, opts: PreprocessOptions, seed: int) -> dict[str, Any]:
    method = _ica_method(opts.ica_method)
    eog = _eeg_present(raw, opts.eog_channels)
    picks_eeg = [c for c in _eeg_present(raw, SCALP_CHANNELS) if c not in raw.info["bads"]]
    fit_raw = raw.copy().pick(picks_eeg + eog)
    fit_raw.filter(opts.ica_highpass_hz, None, picks=_FILTER_TYPES, skip_by_annotation=("edge", "bad_acq_skip"),
                   verbose=False)  # fmt: skip
    n_comp = opts.ica_n_components
    if isinstance(n_comp, int):
        n_comp = min(n_comp, len(picks_eeg) - 1)
    fit_params = {"extended": True} if method == "infomax" else None
    ica = mne.preprocessing.ICA(n_components=n_comp, method=method, random_state=seed,
                                max_iter=opts.ica_max_iter, fit_params=fit_params, verbose=False)  # fmt: skip
    decim = max(1, int(raw.info["sfreq"] // 250))
    ica.fit(fit_raw, picks=picks_eeg, decim=decim, reject_by_annotation=True, verbose=False)
    eog_idx: list[int] = []
    eog_scores: dict[str, list[float]] = {}
    if eog:
        idx, scores = ica.find_bads_eog(fit_raw, ch_name=eog, threshold=opts.eog_threshold, verbose=False)
        eog_idx = sorted(int(i) for i in idx)
        sc = np.atleast_2d(np.asarray(scores))
        eog_scores = {ch: np.round(s, 4).tolist() for ch, s in zip(eog, sc, strict=True)}
    else:
        logger.warning("no EOG channel (%s): ICA finds no ocular component", ", ".join(opts.eog_channels))
    muscle_idx: list[int] = []
    if opts.muscle != "off":
        idx, _ = ica.find_bads_muscle(fit_raw, threshold=opts.muscle_threshold, verbose=False)
        muscle_idx = sorted(int(i) for i in idx if int(i) not in eog_idx)
    exclude = sorted(set(eog_idx) | (set(muscle_idx) if opts.muscle == "remove" else set()))
    del fit_raw
    ica.apply(raw, exclude=exclude, verbose=False)
    logger.info("ICA (%s, %d comps): removed ocular %s, muscle %s %s", method, ica.n_components_, eog_idx,
                muscle_idx, "removed" if opts.muscle == "remove" else "flagged only")  # fmt: skip
    return {
        "method": method, "n_components": int(ica.n_components_), "random_state": seed,
        "fit_highpass_hz": opts.ica_highpass_hz, "fit_decim": decim, "fit_on": "all segments together",
        "eog_channels": eog, "eog_threshold": opts.eog_threshold, "eog_components": eog_idx,
        "eog_scores": eog_scores, "muscle": opts.muscle, "muscle_components": muscle_idx,
        "excluded_components": exclude,
    }  # fmt: skip


def preprocess_segments(
    segments: mne.io.Raw,
    config: Config,
    *,
    options: PreprocessOptions | None = None,
    copy: bool = True,
) -> tuple[mne.io.Raw, dict[str, Any]]:
    """Clean a Raw of segments (from :func:`read_segments`).

    Parameters
    ----------
    segments : mne.io.Raw
        Output of :func:`read_segments` (native rate, unfiltered).
    config : Config
        ``preprocessing`` (filters, reference, resampling, ICA switch) and
        ``seed`` (ICA).
    options : PreprocessOptions | None
        Further choices (defaults: :class:`PreprocessOptions`).
    copy : bool
        Work on a copy (False modifies ``segments`` in place and saves memory).

    Returns
    -------
    clean : mne.io.Raw
        Filtered, bad channels interpolated, re-referenced (M1/M2 dropped),
        ocular ICs removed; resampled only if ``resample_sfreq`` is not an
        integer divisor of the rate (else decimation happens at epoching:
        ``report["resample"]["decim"]``). Its :func:`get_segment_map` is valid.
    report : dict
        ``steps`` (what ran, with parameters: goes into provenance attrs),
        ``bad_channels``, ``bad_channel_scores`` (records), ``ica``,
        ``resample``, ``segments`` (:meth:`SegmentMap.to_dict`).

    Notes
    -----
    ICA is the one step fitted on all segments together; everything else is
    sample-local or span-local.
    """
    if not isinstance(config, Config):
        raise TypeError(f"config must be a mmme_neuro.config.Config, got {type(config).__name__}")
    opts = options or PreprocessOptions()
    cfg = config.preprocessing
    smap = get_segment_map(segments)
    raw = segments.copy() if copy else segments
    steps: dict[str, Any] = {}
    report: dict[str, Any] = {"bad_channels": [], "bad_channel_scores": [], "ica": None}

    if opts.filter:
        steps.update(_bandpass_notch(raw, cfg))
    if opts.detect_bads:
        bads, scores = detect_bad_channels(raw, z_threshold=opts.bad_z_threshold,
                                           min_neighbor_corr=opts.bad_min_neighbor_corr,
                                           n_neighbors=opts.bad_n_neighbors)  # fmt: skip
        raw.info["bads"] = sorted(set(raw.info["bads"]) | set(bads), key=raw.ch_names.index)
        report["bad_channels"] = bads
        report["bad_channel_scores"] = scores.to_dict(orient="records")
        steps["bad_channels"] = {"method": "robust amplitude z + neighbour correlation",
                                 "z_threshold": opts.bad_z_threshold, "found": bads}  # fmt: skip
    if opts.interpolate_bads and raw.info["bads"]:
        interp = [c for c in raw.info["bads"] if c in SCALP_CHANNELS]
        raw.interpolate_bads(reset_bads=True, method={"eeg": "spline"}, verbose=False)
        steps["interpolate"] = {"method": "spherical spline", "channels": interp}
    steps["reference"] = _reference(raw, cfg.reference)
    if cfg.ica:
        report["ica"] = _run_ica(raw, opts, config.seed)
        steps["ica"] = {k: report["ica"][k] for k in ("method", "n_components", "random_state", "fit_highpass_hz",
                                                      "fit_on", "eog_components", "muscle", "muscle_components",
                                                      "excluded_components")}  # fmt: skip
    sf = float(raw.info["sfreq"])
    resample: dict[str, Any] = {"from_hz": sf, "to_hz": sf, "decim": 1, "method": "none"}
    if opts.resample and cfg.resample_sfreq is not None and not np.isclose(sf, cfg.resample_sfreq):
        k = decimation_factor(sf, cfg.resample_sfreq)
        if cfg.h_freq is None or cfg.h_freq > cfg.resample_sfreq / 2:
            logger.warning("low-pass %s Hz is not below the new Nyquist %.1f Hz: aliasing possible",
                           cfg.h_freq, cfg.resample_sfreq / 2)  # fmt: skip
        if k is not None:
            resample = {"from_hz": sf, "to_hz": sf / k, "decim": k, "method": "decimate at epoching"}
        else:
            lengths_before = smap.seg_stop - smap.seg_start
            raw.resample(cfg.resample_sfreq, verbose=False)
            lengths = np.array(raw._raw_lengths, dtype=np.int64)
            if lengths.size != lengths_before.size:  # pragma: no cover - MNE keeps pieces
                raise RuntimeError("resampling merged segment pieces")
            smap = smap.resampled(cfg.resample_sfreq, lengths)
            _set_segment_map(raw, smap)
            resample = {"from_hz": sf, "to_hz": float(cfg.resample_sfreq), "decim": 1,
                        "method": "per-span resample (FFT), landmarks rounded"}  # fmt: skip
        steps["resample"] = resample
    report["resample"] = resample
    report["segments"] = smap.to_dict()
    report["steps"] = steps
    report["options"] = dataclasses.asdict(opts)
    return raw, report


def preprocess(
    raw: mne.io.BaseRaw,
    centers_s: np.ndarray,
    config: Config,
    *,
    tmin: float | None = None,
    tmax: float | None = None,
    pad_s: float | None = None,
    options: PreprocessOptions | None = None,
) -> tuple[mne.io.Raw, dict[str, Any]]:
    """Read padded segments around ``centers_s`` and clean them.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        Session recording (lazy).
    centers_s : array of float
        Epoch landmarks (s).
    config : Config
        Configuration (``epochs.tmin``/``tmax`` are the defaults of the window).
    tmin, tmax : float | None
        Epoch window (s) relative to the centres.
    pad_s : float | None
        Padding (s); None: :func:`filter_pad_s`.
    options : PreprocessOptions | None
        See :func:`preprocess_segments`.

    Returns
    -------
    clean, report
        See :func:`preprocess_segments`; ``report["pad_s"]`` is the padding.
    """
    tmin = config.epochs.tmin if tmin is None else tmin
    tmax = config.epochs.tmax if tmax is None else tmax
    sf = float(raw.info["sfreq"])
    pad = filter_pad_s(sf, config, extra_hz=(options or PreprocessOptions()).ica_highpass_hz) if pad_s is None else pad_s
    segments = read_segments(raw, centers_s, tmin, tmax, pad)
    clean, report = preprocess_segments(segments, config, options=options, copy=False)
    report["pad_s"] = pad
    return clean, report
