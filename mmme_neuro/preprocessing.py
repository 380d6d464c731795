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
   to segment samples. :func:`mmme_neuro.epochs.make_epochs` uses the fused
   reader ``_read_decimated``, which low-passes, decimates, high-passes and
   crops each span as soon as it is read (steps 2-3), so neither a native-rate
   nor a decimated copy of the whole spans is ever held; it also copies the
   native-rate EMG spans (:mod:`mmme_neuro.epochs`) out of the spans read
   instead of reading them again, and runs span by span on
   ``Config.run.threads`` threads (numpy, scipy.fft and MNE's reads release the
   GIL; every span is computed as on one thread, so results do not depend on it).
2. **low-pass + decimate** (native rate, per span): zero-phase FIR low-pass at
   ``h_freq`` (45 Hz) whose transition band ends at the mains frequency
   (``h_trans_bandwidth = notch_freq - h_freq`` = 5 Hz, 661 taps at 1000 Hz):
   the 50-Hz line and its harmonics are in the stop band (-52 dB at 50 Hz), so
   the FIR notch (6.6 s long) is *subsumed* and not run; if the mains
   frequency lies below the low-pass edge the notch is applied as before.
   Then each span is decimated by the integer factor ``sfreq / resample_sfreq``
   (1000 -> 250 Hz; the low-pass is the anti-alias filter, stop band 50 Hz <
   new Nyquist 125 Hz), the decimation phase chosen so that the first epoch
   landmark of the span is a kept sample (other landmarks of a merged span are
   rounded to the nearest new sample, <= half a sample). Everything after this
   runs at 250 Hz. A non-integer ratio falls back to per-span FFT resampling
   after filtering.
3. **high-pass** (0.1 Hz, MNE default zero-phase FIR, 33 s long) at the
   decimated rate: linear filters commute, so this equals the whole-recording
   filter at 1/16 of the cost (4x fewer samples, 4x fewer taps). Padding is half
   the high-pass plus half the low-pass (:func:`filter_pad_s`): samples of an
   epoch see exactly the input the whole-recording filter sees, so the result
   equals the whole-recording filter (tested, < 0.01 µV). Reading the ~17-s
   pads costs little (Curry/EEGLAB reads of a span are ~0.5 ms/s); filtering
   them at 1000 Hz with a 33001-tap FIR was the cost. *Why not an IIR
   high-pass with short pads*: measured on a full synthetic session (0.1-Hz
   Butterworth, zero-phase, epochs -1..1.5 s), the error against the
   whole-recording IIR filter was, max over 23 epochs, order 2: 5.8 µV
   (pad 5 s), 2.8 µV (8 s), 0.33 µV (12 s); order 4: 10.4 / 7.2 / 2.0 µV --
   not a usable bound at pads that save anything.
   **Crop** (:func:`_crop_highpass`): the high-pass is evaluated only on the
   epoch windows +- the ICA's margin (half its 1-Hz FIR, 1.65 s), with the
   values filtering the whole span would give (:func:`_fir_zero_phase_range`,
   round-off), and only those windows are kept: the padding serves the filters
   alone, and every later step is sample-local or works on the windows. On a
   full MMME session this is ~1/4 of the samples (bad channels, interpolation,
   reference and ICA application 4x cheaper; the 0.1-Hz high-pass ~1.5x). The
   margin is kept when ICA is off too, so bad channels are found on the same
   data either way.
4. **bad channels**: first those the recording brings (:mod:`mmme_neuro.channels`): channels
   marked bad in ``channels.tsv`` (the conversion marks NaN/Inf and flat ones) and rows
   with NaN/Inf found while reading are zero-filled as each span is read, before any
   filter (an FFT convolution spreads one NaN over its whole block; ICA refuses it), and
   scalp channels missing from the recording are added (zeros, template position mapped
   into the recording's frame); ``preprocessing.bad_channels = "exclude"`` refuses the
   recording instead (:class:`BadChannelsError`, as more than
   :data:`MAX_INTERPOLATED_FRACTION` of the scalp channels do). Then
   :func:`detect_bad_channels` (on the kept windows, the channels above left out):
   robust z-scores of channel amplitude and of correlation with the nearest neighbours.
   All are interpolated by spherical splines (montage positions, Quik-Cap). A bad EOG
   channel is left out of the ocular ICA search, bad EMG or temporal channels out of the
   EMG measures (:mod:`mmme_neuro.epochs`).
5. **re-reference**: common average of the 62 scalp channels, or linked
   mastoids (M1 + M2) / 2; M1/M2 are then dropped from analysis.
6. **ICA** (ocular): the one step *fitted on all segments together*:
   :class:`mne.preprocessing.ICA` (picard with ``ortho=False, extended=True``
   if python-picard is installed, else fastica; seeded from ``Config.seed``),
   fitted on a bounded amount of data: the epoch windows (+-1.7 s) of all
   segments, at most ``ica_max_fit_s`` (120 s), high-passed at 1 Hz and fitted
   at ~``ica_fit_sfreq`` (125 Hz). Components correlated with VEO/HEO
   (:meth:`~mne.preprocessing.ICA.find_bads_eog`) are removed from the 0.1-Hz
   data at 250 Hz (the unmixing learnt at 125 Hz applies at any rate).
   *Reliability* (opt-in, ``preprocessing.ica_stability_refits = N``): the
   ICA is refitted with N other seeds, each refit's components are matched to
   the main fit's by the absolute correlation of their scalp maps (Hungarian
   assignment, as ICASSO clusters components across runs), and the provenance
   records, per refit, the absolute r of the removed components' matches, whether
   the refit removes exactly those, and how far its cleaned EEG is from the
   main fit's (max and RMS, µV); ``stable`` needs the same removal and
   absolute r >= ``ICA_STABLE_MIN_R`` everywhere (a warning otherwise). Extended
   infomax-type ICA can stop at different optima from different starts; the
   check says whether that touches what is removed.
7. **muscle components** (:meth:`~mne.preprocessing.ICA.find_bads_muscle`):
   flagged and reported, *not removed* by default: facial EMG is the main
   confound of expression-locked EEG and is measured per epoch
   (:mod:`mmme_neuro.epochs`, from short native-rate spans); removing muscle
   ICs would remove part of the very contamination that must be measured, and
   would do so unequally for ME and MaE. Set ``PreprocessOptions(muscle="remove")``
   to remove them.

Per-epoch rejection (peak-to-peak / flat, µV) is in :mod:`mmme_neuro.epochs`, autoreject in
:mod:`mmme_neuro.rejection`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import mne
import numpy as np
import pandas as pd
import scipy.fft
import scipy.signal
from numpy.typing import ArrayLike

from ._utils import n_threads
from .channels import add_missing_channels, as_records, describe_bad, marked_bad, scalp_problems
from .config import Config, PreprocessingConfig
from .constants import MASTOID_CHANNELS, SCALP_CHANNELS

__all__ = [
    "BadChannelsError",
    "check_recording_bads",
    "PreprocessOptions",
    "SegmentMap",
    "decimation_factor",
    "detect_bad_channels",
    "filter_pad_s",
    "filter_spans",
    "fir_kernel",
    "fitted_ica",
    "fir_zero_phase",
    "get_segment_map",
    "ica_stability_table",
    "notch_kernel",
    "preprocess",
    "preprocess_segments",
    "read_segments",
    "recording_bads",
]

logger = logging.getLogger(__name__)

_TEMP_KEY = "mmme_segment_map"
_WIN_KEY = "mmme_epoch_windows"  # (orig first sample, orig stop) of every epoch window
_LP_KEY = "mmme_lowpassed"  # set when the segments were low-passed (+ decimated) while read
_BAD_KEY = "mmme_recording_bads"  # channels the recording brings bad: {"marked": {ch: why}, "non_finite": [ch]}
#: At most this fraction of the scalp channels can be bad in the recording and still be interpolated.
MAX_INTERPOLATED_FRACTION = 0.25
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
        Iteration cap of the ICA ("auto": 500 for picard, 1000 for fastica).
        FastICA of near-Gaussian data (the synthetic background) does not
        converge; the ocular component is found within ~200 iterations.
    ica_max_fit_s : float
        At most this much data (s) is used to fit the ICA: the epoch windows
        (+- the 1-Hz filter half-length), evenly subsampled if longer.
    ica_fit_sfreq : float
        The ICA is fitted at about this rate (Hz; integer decimation of the
        segments); the unmixing applies to the full-rate data.
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
    ica_max_fit_s: float = 120.0
    ica_fit_sfreq: float = 125.0
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


def _lowpass_trans(cfg: PreprocessingConfig) -> float | str:
    """Low-pass transition (Hz): ends at the mains frequency when it is above ``h_freq`` (notch subsumed)."""
    if cfg.h_freq is not None and cfg.notch_freq is not None and cfg.notch_freq > cfg.h_freq:
        return float(min(max(0.25 * cfg.h_freq, 2.0), cfg.notch_freq - cfg.h_freq))
    return "auto"


def _notch_subsumed(sfreq: float, cfg: PreprocessingConfig) -> bool:
    """True if the low-pass stop band starts at or below the mains frequency (the notch is not needed)."""
    h = cfg.h_freq if cfg.h_freq is not None and cfg.h_freq < sfreq / 2 else None
    return h is not None and cfg.notch_freq is not None and _lowpass_trans(cfg) != "auto"


def _target_sfreq(sfreq: float, cfg: PreprocessingConfig) -> float:
    """Rate (Hz) of the high-pass: the decimated rate for an integer factor, else ``sfreq``."""
    k = decimation_factor(sfreq, cfg.resample_sfreq)
    return sfreq / k if k else sfreq


def _filter_lengths(sfreq: float, cfg: PreprocessingConfig) -> dict[str, int]:
    """Lengths (samples) of the FIR filters of the configuration.

    ``lowpass`` and ``notch`` at ``sfreq``; ``highpass`` at the decimated rate
    (:func:`_target_sfreq`), where it is applied.
    """
    out: dict[str, int] = {}
    nyq = sfreq / 2.0
    h = cfg.h_freq if cfg.h_freq is not None and cfg.h_freq < nyq else None
    if h is not None:
        out["lowpass"] = int(len(fir_kernel(sfreq, None, h, h_trans_bandwidth=_lowpass_trans(cfg))))
    if cfg.notch_freq is not None and cfg.notch_freq < nyq and not _notch_subsumed(sfreq, cfg):
        out["notch"] = int(len(notch_kernel(sfreq, [cfg.notch_freq])))  # the length does not depend on the harmonics
    if cfg.l_freq is not None:
        out["highpass"] = int(len(fir_kernel(_target_sfreq(sfreq, cfg), cfg.l_freq, None)))
    return out


def filter_pad_s(sfreq: float, config: PreprocessingConfig | Config, *, extra_hz: float | None = 1.0) -> float:
    """Padding (s) each side of an epoch so that filtering a segment equals filtering the recording.

    The native-rate filters (low-pass, notch) run first and the high-pass runs
    on their (decimated) output, so the padding is half the high-pass plus half
    the longest native-rate filter (each zero-phase FIR), plus 0.1 s. If
    ``extra_hz`` is given, the padding also covers the high-pass at
    ``extra_hz`` Hz of the ICA copy (never the longest in practice).

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
        Padding (s). MNE's default 0.1-Hz high-pass (33 s long) gives ~16.9 s.
    """
    cfg = config.preprocessing if isinstance(config, Config) else config
    lengths = _filter_lengths(sfreq, cfg)
    native = max((lengths.get(k, 0) for k in ("lowpass", "notch")), default=0) / 2.0 / sfreq
    sf_hp = _target_sfreq(sfreq, cfg)
    hp = lengths.get("highpass", 0) / 2.0 / sf_hp
    if extra_hz is not None:
        hp = max(hp, len(fir_kernel(sf_hp, extra_hz, None)) / 2.0 / sf_hp)
    return float(native + hp + _PAD_MARGIN_S)


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


#: ``info["temp"]`` key of the fitted :class:`mne.preprocessing.ICA` on the cleaned Raw (:func:`fitted_ica`).
ICA_KEY = "mmme_neuro_ica"


def fitted_ica(clean: mne.io.BaseRaw) -> mne.preprocessing.ICA | None:
    """The ICA :func:`preprocess_segments` fitted and applied to ``clean`` (``exclude``: the removed components).

    None when ICA was off. It lives in ``clean.info["temp"]``, which MNE does
    not write to FIF: save it with :meth:`mne.preprocessing.ICA.save`.
    """
    return _get_temp(clean, ICA_KEY)


def _set_temp(raw: mne.io.BaseRaw, key: str, value: Any) -> None:
    temp = raw.info.get("temp")
    temp = dict(temp) if isinstance(temp, dict) else {}
    temp[key] = value
    raw.info["temp"] = temp


def _get_temp(raw: mne.io.BaseRaw, key: str) -> Any:
    temp = raw.info.get("temp")
    return temp.get(key) if isinstance(temp, dict) else None


def _read_map(raw: mne.io.BaseRaw) -> SegmentMap:
    """The spans read from the recording: the segment map, or the one recorded before a crop while reading."""
    done = _get_temp(raw, _LP_KEY)
    return done["read_map"] if done and "read_map" in done else get_segment_map(raw)


def _set_segment_map(raw: mne.io.BaseRaw, smap: SegmentMap) -> None:
    _set_temp(raw, _TEMP_KEY, smap)


def _spans(raw: mne.io.BaseRaw, centers_s: np.ndarray, tmin: float, tmax: float, pad_s: float,
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:  # fmt: skip
    """Validated, merged spans (orig samples), centres (samples) and the epoch-window record."""
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
    wins = {"centers": np.sort(c[keep]), "i0": int(np.floor(tmin * sf)), "i1": int(np.ceil(tmax * sf)) + 1}
    return starts, stops, c, wins


def _read_picks(raw: mne.io.BaseRaw, picks: str | list[str] | None) -> tuple[list[str], mne.Info]:
    if picks is None:
        picks = [c for c, t in zip(raw.ch_names, raw.get_channel_types(), strict=True) if t != "stim"]
    ch_names = [raw.ch_names[i] for i in mne.pick_channels(raw.ch_names, list(picks), ordered=True)] \
        if not isinstance(picks, str) else raw.copy().pick(picks).ch_names
    info = mne.pick_info(raw.info, [raw.ch_names.index(c) for c in ch_names])
    with info._unlock():
        info["temp"] = None
    return ch_names, info


def _thread_map(fn: Callable[[Any], Any], items: list[Any], n_jobs: int) -> list[Any]:
    """``[fn(x) for x in items]``, on ``n_jobs`` threads (numpy, scipy.fft and MNE's file reads release the GIL).

    Each item is computed exactly as on one thread, so results do not depend
    on ``n_jobs``.
    """
    threads = n_threads(n_jobs, limit=len(items))
    if threads <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(threads, thread_name_prefix="mmme-prep") as pool:
        return list(pool.map(fn, items))


def _zero_bad_rows(x: np.ndarray, marked_rows: Sequence[int]) -> list[int]:
    """Zero-fill (in place) the rows of channels marked bad and the rows holding non-finite values.

    No NaN or Inf may reach a filter: an FFT convolution spreads one over the
    whole block, and ICA refuses it. Returns the rows with non-finite values
    that were not marked (found here).
    """
    if len(marked_rows):
        x[list(marked_rows)] = 0.0
    if np.isfinite(x).all():
        return []
    rows = np.flatnonzero(~np.isfinite(x).all(axis=1)).tolist()
    x[rows] = 0.0
    return [r for r in rows if r not in set(marked_rows)]


def _record_bads(segments: mne.io.BaseRaw, marked: Mapping[str, str], found: set[str]) -> None:
    """Keep what :func:`_zero_bad_rows` zero-filled on ``segments`` (bads and the segments' temp record)."""
    if not marked and not found:
        return
    names = sorted(found, key=segments.ch_names.index)
    if names:  # make_epochs warns, naming the subject
        logger.info("channel(s) %s hold non-finite values (NaN/Inf) the recording does not mark bad: zero-filled "
                    "before filtering and treated as bad", ", ".join(names))  # fmt: skip
    segments.info["bads"] = sorted(set(segments.info["bads"]) | set(marked) | found, key=segments.ch_names.index)
    _set_temp(segments, _BAD_KEY, {"marked": dict(marked), "non_finite": names})


def recording_bads(segments: mne.io.BaseRaw) -> dict[str, Any]:
    """What the reader of ``segments`` zero-filled: ``marked`` (channel -> reason, from the recording's
    ``channels.tsv``) and ``non_finite`` (channels with NaN/Inf found while reading); empty if nothing."""
    return dict(_get_temp(segments, _BAD_KEY) or {})


def _concat(pieces: list[mne.io.BaseRaw]) -> mne.io.BaseRaw:
    return mne.concatenate_raws(pieces, verbose=False) if len(pieces) > 1 else pieces[0]


def _assemble(pieces: list[np.ndarray], info: mne.Info, *, boundaries: bool = True) -> mne.io.RawArray:
    """One RawArray of pieces (channels x times) with the boundary annotations ``concatenate_raws`` adds.

    The same data and annotations as :func:`mne.concatenate_raws` of one
    RawArray per piece (test), without building those Raws and copying the
    data twice (0.15 s per call on a full session's spans); the result is
    one piece for MNE (``_raw_lengths``), which only the per-span FFT
    resampling needs, and that never sees these Raws.
    """
    out = mne.io.RawArray(np.concatenate(pieces, axis=1) if len(pieces) > 1 else pieces[0], info, verbose=False)
    joins = np.cumsum([p.shape[1] for p in pieces[:-1]]) / float(info["sfreq"])
    if joins.size and boundaries:
        onsets = np.repeat(joins, 2)
        out.set_annotations(mne.Annotations(onsets, np.zeros(onsets.size),
                                            ["BAD boundary", "EDGE boundary"] * joins.size))  # fmt: skip
    return out


def _filter_idx(info: mne.Info) -> list[int]:
    types = info.get_channel_types()
    return [i for i, t in enumerate(types) if t in _FILTER_TYPES]


def _lowpass_notch_decimate(x: np.ndarray, sf: float, cfg: PreprocessingConfig, idx: list[int], k: int) -> np.ndarray:
    """Native-rate filters of one span (channels x times), then every ``k``-th sample: low-pass (+ notch).

    The low-pass is MNE's FIR for ``raw.filter(None, h_freq, h_trans_bandwidth=...)``, designed
    once, applied zero-phase (``mode='same'``) and evaluated only at the kept samples
    (:func:`fir_decimate`). Span edges differ from MNE's padding, but only within half the filter
    of the edge, which the high-pass padding (``filter_pad_s``) keeps out of reach of the epochs.
    """
    nyq = sf / 2
    if cfg.notch_freq is not None and cfg.notch_freq < nyq and not _notch_subsumed(sf, cfg):
        x = mne.filter.notch_filter(x, sf, np.arange(cfg.notch_freq, nyq, cfg.notch_freq), picks=idx,
                                    verbose=False)  # fmt: skip
    if cfg.h_freq is None or cfg.h_freq >= nyq or not idx:
        return np.ascontiguousarray(x[:, ::k])
    h = fir_kernel(sf, None, float(cfg.h_freq), h_trans_bandwidth=_lowpass_trans(cfg))
    if list(idx) == list(range(x.shape[0])):
        return fir_decimate(x, h, k)
    out = np.ascontiguousarray(x[:, ::k])
    out[idx] = fir_decimate(x[idx], h, k)
    return out


def fir_decimate(x: np.ndarray, h: np.ndarray, k: int) -> np.ndarray:
    """Zero-phase FIR filtering followed by keeping every ``k``-th sample, computed only where kept.

    Equals ``scipy.signal.oaconvolve(x, h[None], mode="same", axes=-1)[..., ::k]``
    to round-off (test), i.e. zeros beyond the edges. Overlap-save FFT
    convolution in blocks of ``N = k M`` samples whose spectra are folded
    before the inverse transform: the kept outputs ``z[s + p k]`` of a block
    are ``irfft_M(Z)[p] / k`` with ``Z[m] = sum_j Y[m + j M] exp(2 pi i (m + j M) s / N)``
    (``Y`` the product spectrum), so the inverse FFTs are ``k`` times shorter
    and nothing is computed for the samples the decimation drops. The
    native-rate low-pass of a full session's padded spans (1000 -> 250 Hz,
    661 taps; subject 1 of the benchmark study) took 0.8 s instead of 2.0 s
    with :func:`scipy.signal.oaconvolve` followed by ``[:, ::4]``.

    Parameters
    ----------
    x : ndarray, shape (n_rows, n_times)
        Signals (float64).
    h : ndarray, shape (n_taps,)
        Odd-length FIR, centred (zero phase).
    k : int
        Decimation factor (>= 1).

    Returns
    -------
    y : ndarray, shape (n_rows, ceil(n_times / k))
    """
    x = np.asarray(x, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x must be (n_rows, n_times), got shape {x.shape}")
    if h.ndim != 1 or len(h) % 2 != 1:
        raise ValueError(f"a zero-phase FIR needs an odd number of taps, got shape {h.shape}")
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    k = int(k)
    n_rows, n = x.shape
    n_out = -(-n // k)
    out = np.empty((n_rows, n_out))
    if n == 0 or n_rows == 0:
        return out
    taps = len(h)
    c = (taps - 1) // 2
    m = scipy.fft.next_fast_len(max(-(-8 * taps // k), -(-(taps - 1 + k) // k)), real=True)
    nfft = k * m
    hop = ((nfft - (taps - 1)) // k) * k  # kept outputs per block: hop / k
    per = hop // k
    n_blocks = -(-n_out // per)
    spec_h = scipy.fft.rfft(h, nfft)
    half = nfft // 2 + 1
    mh = m // 2 + 1
    # Z[0..M/2] folds bins q = j M + m; bins q >= nfft/2 + 1 of the real signal's spectrum are the
    # conjugates of bins nfft - q. Per j, the direct bins and the mirrored ones are contiguous slices.
    q = np.arange(k)[:, None] * m + np.arange(mh)[None, :]
    gain = np.conj(spec_h[np.minimum(q, nfft - q)])
    gain = np.where(q < half, np.conj(gain), gain) * np.exp(2j * np.pi * q * (2 * c) / nfft) / k
    n_direct = [min(mh, max(0, half - j * m)) for j in range(k)]  # first kept output of a block: index 2c
    # the padded signal xp = [c zeros, x, zeros]; block b reads xp[b hop : b hop + nfft]
    chunk = max(1, int(2**20 // (n_rows * nfft)))  # ~16 MB of spectra per pass
    for b0 in range(0, n_blocks, chunk):
        b1 = min(n_blocks, b0 + chunk)
        lo = b0 * hop - c  # x index of the first sample read
        hi = (b1 - 1) * hop + nfft - c
        seg = np.zeros((n_rows, hi - lo))
        a, z = max(lo, 0), min(hi, n)
        if z > a:
            seg[:, a - lo : z - lo] = x[:, a:z]
        blocks = np.lib.stride_tricks.sliding_window_view(seg, nfft, axis=-1)[:, ::hop]  # (rows, blocks, nfft)
        spec = scipy.fft.rfft(blocks, axis=-1)
        zf = np.zeros(spec.shape[:-1] + (mh,), dtype=np.complex128)
        zc = np.zeros_like(zf)  # sum of X[nfft - q] conj(gain): its conjugate is the mirrored part
        for j, nd in enumerate(n_direct):
            if nd:
                zf[..., :nd] += spec[..., j * m : j * m + nd] * gain[j, :nd]
            if nd < mh:
                top = nfft - j * m - nd  # bins nfft - q for m = nd .. mh - 1, descending
                zc[..., nd:] += spec[..., top - (mh - nd) + 1 : top + 1][..., ::-1] * np.conj(gain[j, nd:])
        zf += np.conj(zc)
        y = scipy.fft.irfft(zf, n=m, axis=-1)[..., :per]  # (rows, blocks, per)
        p0 = b0 * per
        take = min(n_out - p0, (b1 - b0) * per)
        out[:, p0 : p0 + take] = y.reshape(n_rows, -1)[:, :take]
    return out


@functools.lru_cache(maxsize=32)
def _fir_kernel_cached(sf: float, l_freq: Any, h_freq: Any, l_trans: Any, h_trans: Any) -> np.ndarray:
    def arg(v: Any) -> Any:
        return list(v) if isinstance(v, tuple) else v

    h = mne.filter.create_filter(None, sf, arg(l_freq), arg(h_freq), l_trans_bandwidth=l_trans,
                                 h_trans_bandwidth=h_trans, verbose=False)  # fmt: skip
    h.flags.writeable = False
    return h


def fir_kernel(sfreq: float, l_freq: float | Sequence[float] | None, h_freq: float | Sequence[float] | None, *,
               l_trans_bandwidth: float | str = "auto", h_trans_bandwidth: float | str = "auto") -> np.ndarray:  # fmt: skip
    """MNE's default FIR (:func:`mne.filter.create_filter`: firwin, Hamming, zero phase), designed once.

    Designing the 0.1-Hz high-pass costs ~10 ms (MNE also evaluates its
    attenuation), and MNE designs it again for every span of a segmented Raw;
    here the kernel is cached per (rate, edges, transitions) and reused for
    every span and subject of a worker. Read-only array.

    Parameters
    ----------
    sfreq : float
        Sampling rate (Hz).
    l_freq, h_freq : float | sequence of float | None
        Edges (Hz), as :func:`mne.filter.create_filter` (a band-stop when
        ``l_freq > h_freq``; sequences for several stop bands, as
        :func:`mne.filter.notch_filter` builds them).
    l_trans_bandwidth, h_trans_bandwidth : float | 'auto'
        Transition bandwidths (Hz).

    Returns
    -------
    h : ndarray, shape (n_taps,)
    """
    def key(v: Any) -> Any:
        if v is None or isinstance(v, str):
            return v
        arr = np.atleast_1d(np.asarray(v, dtype=float))
        return float(arr[0]) if np.ndim(v) == 0 else tuple(float(a) for a in arr)

    return _fir_kernel_cached(float(sfreq), key(l_freq), key(h_freq), key(l_trans_bandwidth), key(h_trans_bandwidth))


def notch_kernel(sfreq: float, freqs: ArrayLike) -> np.ndarray:
    """The FIR :func:`mne.filter.notch_filter` builds for ``freqs`` with its defaults (width f/200, 1-Hz transition)."""
    f = np.atleast_1d(np.asarray(freqs, dtype=float))
    half = f / 400.0 + 0.5  # notch width / 2 + transition / 2
    return fir_kernel(sfreq, tuple(f + half), tuple(f - half), l_trans_bandwidth=0.5, h_trans_bandwidth=0.5)


def fir_zero_phase(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Zero-phase FIR filtering of the last axis, as MNE's FIR ``filter_data`` does it.

    Same edge handling as MNE (``pad='reflect_limited'``: each edge
    point-reflected over ``len(h) - 1`` samples), same kernel; the convolution
    is one :func:`scipy.signal.oaconvolve` over all rows instead of MNE's
    per-channel, per-block Python loop (``_overlap_add_filter``), which is
    what made MNE's filters dominate the per-span work (benchmarks/bench_erp).
    Equal to :func:`mne.filter.filter_data` with the same kernel to round-off
    (test).

    Parameters
    ----------
    x : ndarray, shape (..., n_times)
        Signals (float64).
    h : ndarray, shape (n_taps,)
        Odd-length linear-phase FIR (e.g. :func:`fir_kernel`).

    Returns
    -------
    y : ndarray, same shape as ``x``
    """
    n = x.shape[-1]
    if len(h) % 2 != 1:
        raise ValueError(f"a zero-phase FIR needs an odd number of taps, got {len(h)}")
    if n == 0 or len(h) == 1:
        return x * (h[0] if len(h) else 1.0)
    n_edge = min(len(h), n) - 1
    ext = np.concatenate([2 * x[..., :1] - x[..., n_edge:0:-1], x, 2 * x[..., -1:] - x[..., -2:-n_edge - 2:-1]],
                         axis=-1)  # fmt: skip
    y = scipy.signal.oaconvolve(ext, h.reshape((1,) * (x.ndim - 1) + (-1,)), mode="full", axes=-1)
    shift = (len(h) - 1) // 2 + n_edge
    return y[..., shift:shift + n]


def _fir_zero_phase_range(x: np.ndarray, h: np.ndarray, start: int, stop: int) -> np.ndarray:
    """``fir_zero_phase(x, h)[..., start:stop]``, computing only those outputs.

    The same point-reflected edges as :func:`fir_zero_phase`, built only
    where the outputs reach them; one ``valid``-mode FFT convolution of the
    ``stop - start + len(h) - 1`` input samples the outputs depend on (an
    FFT of that length: overlap-save). Equal to :func:`fir_zero_phase` to
    round-off (test). For the 0.1-Hz high-pass (8251 taps at 250 Hz) of
    64 channels, an epoch window of 1200-2500 samples took 15-17 ms, 2.3-2.9x
    less than with :func:`scipy.signal.fftconvolve`'s ``valid`` mode, whose
    FFT covers the full convolution (measured 2026-11-28).
    """
    n = x.shape[-1]
    if not 0 <= start < stop <= n:
        raise ValueError(f"output range [{start}, {stop}) is not inside [0, {n})")
    if len(h) % 2 != 1:
        raise ValueError(f"a zero-phase FIR needs an odd number of taps, got {len(h)}")
    half = (len(h) - 1) // 2
    n_edge = min(len(h), n) - 1
    lo, hi = start - half, stop + half  # input samples needed (in x's indices; outside [0, n) = reflected)
    zeros = np.zeros(x.shape[:-1] + (0,))
    parts = []
    if lo < 0:  # x[-n_edge..-1] reflected, zeros beyond (as the full convolution of fir_zero_phase)
        left = np.concatenate([np.zeros(x.shape[:-1] + (max(0, -lo - n_edge),)),
                               2 * x[..., :1] - x[..., n_edge:0:-1] if n_edge else zeros], axis=-1)  # fmt: skip
        parts.append(left[..., left.shape[-1] + lo:])
    parts.append(x[..., max(lo, 0):min(hi, n)])
    if hi > n:  # x[n..n + n_edge - 1] reflected, zeros beyond
        right = np.concatenate([2 * x[..., -1:] - x[..., -2:-n_edge - 2:-1] if n_edge else zeros,
                                np.zeros(x.shape[:-1] + (max(0, hi - n - n_edge),))], axis=-1)  # fmt: skip
        parts.append(right[..., :hi - n])
    seg = np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
    # overlap-save: the valid outputs of a circular convolution of length >= len(seg) do not wrap, so the
    # FFT need not cover the full convolution (len(seg) + len(h) - 1) as fftconvolve's "valid" mode does:
    # ~half the FFT length for the 0.1-Hz high-pass of an epoch window (9.5k instead of 18k points)
    nfft = scipy.fft.next_fast_len(seg.shape[-1], real=True)
    spec = scipy.fft.rfft(seg, nfft, axis=-1)
    spec *= scipy.fft.rfft(h, nfft)
    return scipy.fft.irfft(spec, nfft, axis=-1)[..., len(h) - 1 : seg.shape[-1]]


def filter_spans(raw: mne.io.BaseRaw, h: np.ndarray, picks: Sequence[int]) -> bool:
    """Filter each span of a segmented Raw in place with :func:`fir_zero_phase` (as ``raw.filter`` would).

    ``raw.filter(..., skip_by_annotation='edge')`` filters every span apart;
    so does this, with one kernel for all. Returns False (nothing done) if
    ``raw`` is not a preloaded segmented Raw (:func:`read_segments`) or has
    ``bad_acq_skip`` annotations: the caller then uses ``raw.filter``.
    """
    if not raw.preload or any(str(d).lower().startswith("bad_acq_skip") for d in raw.annotations.description):
        return False
    try:
        smap = get_segment_map(raw)
    except ValueError:
        return False
    idx = np.asarray(list(picks), dtype=int)
    if idx.size == 0:
        return True
    for a, b in zip(smap.seg_start, smap.seg_stop, strict=True):
        raw._data[idx, int(a):int(b)] = fir_zero_phase(raw._data[idx, int(a):int(b)], h)
    return True


def _aligned(orig_start: int, orig_stop: int, centers: np.ndarray, k: int) -> tuple[int, int]:
    """Trim a span so that its first epoch centre is a kept sample of the decimation by ``k``."""
    inside = centers[(centers >= orig_start) & (centers < orig_stop)]
    phase = int((inside[0] - orig_start) % k) if inside.size else 0
    a = orig_start + phase
    return a, a + ((orig_stop - a) // k) * k


def _read_decimated(
    raw: mne.io.BaseRaw,
    centers_s: np.ndarray,
    tmin: float,
    tmax: float,
    pad_s: float,
    config: PreprocessingConfig,
    *,
    picks: str | list[str] | None = None,
    n_jobs: int = 1,
    crop: PreprocessOptions | None = None,
    emg: dict[str, Any] | None = None,
) -> tuple[mne.io.Raw, mne.io.Raw | None]:
    """:func:`read_segments` fused with the native-rate filters and the decimation (and more, on request).

    Each span is read, low-passed (+ notched if not subsumed) and decimated by
    ``sfreq / resample_sfreq`` (integer factor required) on its own, so only
    one native-rate span per thread (``n_jobs``) is ever in memory; the
    low-pass is evaluated only at the kept samples (:func:`fir_decimate`).
    The result is a Raw at the decimated rate with a valid
    :func:`get_segment_map`; :func:`preprocess_segments` skips the steps
    already done.

    With ``crop`` (the :class:`PreprocessOptions`), each decimated span is
    also high-passed at ``config.l_freq`` and cut to its epoch windows +-
    the ICA's margin, as :func:`_crop_highpass` does on a whole Raw of spans,
    so no Raw of whole decimated spans is built. With ``emg`` (``picks``,
    ``tmin``, ``tmax``, ``pad_s``: the arguments :func:`read_segments` would
    get), the native-rate EMG spans are copied from the spans read, when each
    lies inside one (else the second value is None and the caller reads them).
    """
    sf = float(raw.info["sfreq"])
    k = decimation_factor(sf, config.resample_sfreq)
    if k is None:
        raise ValueError(f"{sf} Hz -> {config.resample_sfreq} Hz is not an integer decimation")
    starts, stops, c, wins = _spans(raw, centers_s, tmin, tmax, pad_s)
    ch_names, info = _read_picks(raw, picks)
    marked = {ch: why for ch, why in marked_bad(raw).items() if ch in ch_names}
    marked_rows = [ch_names.index(ch) for ch in marked]
    idx = _filter_idx(info)
    new_sf = sf / k
    with info._unlock():
        info["sfreq"] = new_sf
        if config.h_freq is not None and config.h_freq < sf / 2:
            info["lowpass"] = float(config.h_freq)
    a_s, b_s = [], []
    for a0, b0 in zip(starts, stops, strict=True):
        a, b = _aligned(int(a0), int(b0), wins["centers"], k)
        if b > a:
            a_s.append(a)
            b_s.append(b)
    a_arr, b_arr = np.array(a_s, dtype=np.int64), np.array(b_s, dtype=np.int64)
    lengths = (b_arr - a_arr) // k
    seg_stop = np.cumsum(lengths)
    smap = SegmentMap(a_arr, b_arr, seg_stop - lengths, seg_stop, sf, new_sf)
    by_span: dict[int, list[tuple[int, int]]] = {}
    h = None
    if crop is not None:
        windows, margin = _crop_windows(smap, wins, crop)
        crop = crop if windows else None  # no epoch window inside a span: keep the spans
    if crop is not None:
        for i, a, b in windows:
            by_span.setdefault(i, []).append((a, b))
        h = fir_kernel(new_sf, config.l_freq, None) if config.l_freq is not None else None
    emg_plan = _emg_plan(raw, centers_s, emg, a_arr, b_arr) if emg is not None else None

    def one(i: int) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
        x = raw.get_data(picks=ch_names, start=int(a_arr[i]), stop=int(b_arr[i]))
        found = _zero_bad_rows(x, marked_rows)
        emg_pieces = [] if emg_plan is None else \
            [x[emg_plan["rows"], ea - int(a_arr[i]):eb - int(a_arr[i])] for ea, eb in emg_plan["by_span"].get(i, [])]
        y = _lowpass_notch_decimate(x, sf, config, idx, k)
        del x
        if crop is None:
            return [y], emg_pieces, found
        s0 = int(smap.seg_start[i])
        return _highpassed_windows(y, [(a - s0, b - s0) for a, b in by_span.get(i, [])], h, idx), emg_pieces, found

    done = _thread_map(one, list(range(smap.n_spans)), n_jobs)
    pieces = [p for ps, _, _ in done for p in ps]
    found = {ch_names[r] for _, _, rows in done for r in rows}
    lp = {"steps": _lowpass_steps(sf, config), "resample": _decim_report(sf, k), "read_map": smap}
    if crop is None:
        segments = _assemble(pieces, info)
        _set_segment_map(segments, smap)
    else:
        segments, lp["cropped"] = _cropped_raw(pieces, windows, smap, info, config.l_freq if h is not None else None,
                                               margin)  # fmt: skip
    _set_temp(segments, _WIN_KEY, wins)
    _set_temp(segments, _LP_KEY, lp)
    _record_bads(segments, marked, found)
    logger.info("read + low-passed + decimated (%d -> %g Hz) %d spans (%d samples = %.1f s) around %d centres",
                sf, new_sf, smap.n_spans, smap.n_orig_samples, smap.n_orig_samples / sf, c.size)  # fmt: skip
    emg_raw = None
    if emg_plan is not None:
        emg_raw = _assemble([p for _, ps, _ in done for p in ps], emg_plan["info"])
        _set_segment_map(emg_raw, emg_plan["map"])
        _set_temp(emg_raw, _WIN_KEY, emg_plan["wins"])
        _record_bads(emg_raw, {ch: why for ch, why in marked.items() if ch in emg_raw.ch_names},
                     {ch for ch in found if ch in emg_raw.ch_names})  # fmt: skip
    return segments, emg_raw


def _emg_plan(raw: mne.io.BaseRaw, centers_s: np.ndarray, emg: dict[str, Any], a_arr: np.ndarray,
              b_arr: np.ndarray) -> dict[str, Any] | None:  # fmt: skip
    """Where the spans :func:`read_segments` would read for ``emg`` lie in the spans read (None if one does not)."""
    starts, stops, _, wins = _spans(raw, centers_s, emg["tmin"], emg["tmax"], emg["pad_s"])
    span = np.searchsorted(a_arr, starts, side="right") - 1
    if np.any(span < 0) or np.any(stops > b_arr[np.maximum(span, 0)]):
        return None
    names, info = _read_picks(raw, emg["picks"])
    all_names, _ = _read_picks(raw, None)
    if not set(names) <= set(all_names):
        return None
    by_span: dict[int, list[tuple[int, int]]] = {}
    for i, a, b in zip(span.tolist(), starts.tolist(), stops.tolist(), strict=True):
        by_span.setdefault(i, []).append((a, b))
    lengths = stops - starts
    stop = np.cumsum(lengths)
    sf = float(raw.info["sfreq"])
    return {"rows": [all_names.index(n) for n in names], "by_span": by_span, "info": info, "wins": wins,
            "map": SegmentMap(starts, stops, stop - lengths, stop, sf, sf)}  # fmt: skip


def _decim_report(sf: float, k: int) -> dict[str, Any]:
    return {"from_hz": sf, "to_hz": sf / k, "decim": k, "decim_at_epoching": 1,
            "method": "per-span decimation after the low-pass, before high-pass/ICA; first landmark of "
                      "each span on the new grid, others rounded (<= half a sample)"}  # fmt: skip


def _lowpass_steps(sf: float, cfg: PreprocessingConfig) -> dict[str, Any]:
    """Report of the native-rate filters (low-pass, notch)."""
    out: dict[str, Any] = {}
    nyq = sf / 2
    if cfg.notch_freq is not None and cfg.notch_freq < nyq:
        freqs = np.arange(cfg.notch_freq, nyq, cfg.notch_freq).tolist()
        if _notch_subsumed(sf, cfg):
            out["notch"] = {"freqs_hz": freqs, "method": "subsumed: in the stop band of the FIR low-pass",
                            "stopband_from_hz": cfg.notch_freq}  # fmt: skip
        else:
            out["notch"] = {"freqs_hz": freqs, "method": "fir", "phase": "zero"}
    return out


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
        Channels marked bad in the recording (:func:`mmme_neuro.channels.marked_bad`)
        and channels holding NaN/Inf are zero-filled and in ``info["bads"]``
        (:func:`recording_bads` says which and why).

    Raises
    ------
    ValueError
        On an empty ``centers_s``, non-finite centres, ``tmin >= tmax`` or a
        negative ``pad_s``.
    """
    starts, stops, c, wins = _spans(raw, centers_s, tmin, tmax, pad_s)
    sf = float(raw.info["sfreq"])
    ch_names, info = _read_picks(raw, picks)
    marked = {ch: why for ch, why in marked_bad(raw).items() if ch in ch_names}
    marked_rows = [ch_names.index(ch) for ch in marked]
    found: set[str] = set()

    def read(a: int, b: int) -> np.ndarray:
        x = raw.get_data(picks=ch_names, start=int(a), stop=int(b))
        found.update(ch_names[r] for r in _zero_bad_rows(x, marked_rows))
        return x

    pieces = [mne.io.RawArray(read(a, b), info.copy(), verbose=False) for a, b in zip(starts, stops, strict=True)]
    segments = _concat(pieces)
    lengths = stops - starts
    seg_stop = np.cumsum(lengths)
    smap = SegmentMap(starts, stops, seg_stop - lengths, seg_stop, sf, sf)
    _set_segment_map(segments, smap)
    _set_temp(segments, _WIN_KEY, wins)
    _record_bads(segments, marked, found)
    logger.info(
        "read %d spans (%d samples = %.1f s, %.1f %% of the recording) around %d centres",
        smap.n_spans, smap.n_orig_samples, smap.n_orig_samples / sf,
        100.0 * smap.n_orig_samples / raw.n_times, c.size,
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
    if raw.preload:  # strided first: only the samples used are copied (the same values as get_data()[:, ::step])
        x = raw._data[:, ::step][[raw.ch_names.index(c) for c in picks]] * 1e6
    else:
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


def check_rates(sfreq: float, cfg: PreprocessingConfig) -> None:
    """Refuse filter settings a recording sampled at ``sfreq`` (Hz) cannot honour.

    Raises
    ------
    ValueError
        If ``h_freq`` or ``l_freq`` is at or above the recording's Nyquist
        frequency (the filter could not be applied: the data would silently
        stay unfiltered), or ``resample_sfreq`` is above ``sfreq`` (upsampling
        adds no information).
    """
    nyq = sfreq / 2.0
    for key in ("h_freq", "l_freq"):
        f = getattr(cfg, key)
        if f is not None and f >= nyq:
            raise ValueError(f"preprocessing.{key} = {f} Hz is at or above the Nyquist frequency ({nyq:g} Hz) of a "
                             f"recording sampled at {sfreq:g} Hz: the filter cannot be applied; set it below {nyq:g} Hz"
                             + (" or null (no low-pass)" if key == "h_freq" else ""))  # fmt: skip
    if cfg.resample_sfreq is not None and cfg.resample_sfreq > sfreq and not np.isclose(cfg.resample_sfreq, sfreq):
        raise ValueError(f"preprocessing.resample_sfreq = {cfg.resample_sfreq} Hz is above the recording's rate "
                         f"({sfreq:g} Hz): set it to {sfreq:g} Hz or less, or null to keep the rate")  # fmt: skip


class BadChannelsError(ValueError):
    """The recording's bad scalp channels cannot be interpolated, or ``preprocessing.bad_channels`` excludes them."""


def check_recording_bads(problems: Mapping[str, str], cfg: PreprocessingConfig) -> None:
    """Refuse a recording whose bad scalp channels (channel -> reason) the configuration does not interpolate.

    Raises
    ------
    BadChannelsError
        With ``bad_channels = "exclude"`` if there is any, or if more than
        :data:`MAX_INTERPOLATED_FRACTION` of the scalp channels are bad; the
        message names each channel and its reason.
    """
    if not problems:
        return
    what = f"bad channel{'s' if len(problems) > 1 else ''} in the recording: {describe_bad(problems)}"
    if cfg.bad_channels == "exclude":
        raise BadChannelsError(f"{what}; excluded (preprocessing.bad_channels = 'exclude')")
    limit = int(MAX_INTERPOLATED_FRACTION * len(SCALP_CHANNELS))
    if len(problems) > limit:
        raise BadChannelsError(f"{what}; {len(problems)} of {len(SCALP_CHANNELS)} scalp channels, more than can be "
                               f"interpolated ({limit})")  # fmt: skip


def decimation_factor(sfreq: float, target: float | None) -> int | None:
    """Integer factor ``sfreq / target`` if it is one (1 if no resampling), else None."""
    if target is None or np.isclose(sfreq, target):
        return 1
    k = sfreq / target
    return int(round(k)) if np.isclose(k, round(k)) and k >= 1 else None


def _lowpass_notch(raw: mne.io.BaseRaw, cfg: PreprocessingConfig) -> dict[str, Any]:
    """Native-rate filters on a Raw of segments (each span on its own)."""
    sf = float(raw.info["sfreq"])
    nyq = sf / 2
    skip = ("edge", "bad_acq_skip")
    if cfg.notch_freq is not None and cfg.notch_freq < nyq and not _notch_subsumed(sf, cfg):
        raw.notch_filter(np.arange(cfg.notch_freq, nyq, cfg.notch_freq), picks=_FILTER_TYPES,
                         skip_by_annotation=skip, verbose=False)  # fmt: skip
    if cfg.h_freq is not None and cfg.h_freq < nyq:
        raw.filter(None, cfg.h_freq, picks=_FILTER_TYPES, h_trans_bandwidth=_lowpass_trans(cfg),
                   skip_by_annotation=skip, verbose=False)  # fmt: skip
    return _lowpass_steps(sf, cfg)


def _highpass(raw: mne.io.BaseRaw, cfg: PreprocessingConfig, native_sf: float, *, done: bool = False,
              ) -> dict[str, Any]:  # fmt: skip
    """High-pass at the current (decimated) rate (unless ``done``); returns the ``bandpass`` step record."""
    sf = float(raw.info["sfreq"])
    if cfg.l_freq is not None and not done:
        picks = _filter_idx(raw.info)
        if filter_spans(raw, fir_kernel(sf, cfg.l_freq, None), picks):
            with raw.info._unlock():
                raw.info["highpass"] = max(float(raw.info["highpass"]), float(cfg.l_freq))
        else:
            raw.filter(cfg.l_freq, None, picks=_FILTER_TYPES, skip_by_annotation=("edge", "bad_acq_skip"),
                       verbose=False)  # fmt: skip
    h = cfg.h_freq if cfg.h_freq is not None and cfg.h_freq < native_sf / 2 else None
    return {"l_freq_hz": cfg.l_freq, "h_freq_hz": h, "method": "fir", "phase": "zero",
            "h_trans_bandwidth_hz": _lowpass_trans(cfg), "lowpass_sfreq_hz": native_sf, "highpass_sfreq_hz": sf,
            "order": "low-pass at the native rate, decimation, then high-pass",
            "filter_lengths_samples": _filter_lengths(native_sf, cfg)}  # fmt: skip


def _decimate_segments(raw: mne.io.BaseRaw, k: int) -> mne.io.BaseRaw:
    """Decimate every span of a segments Raw by ``k`` (first epoch centre of a span kept exactly)."""
    smap = get_segment_map(raw)
    wins = _get_temp(raw, _WIN_KEY)
    centers = wins["centers"] if wins else np.array([], dtype=np.int64)
    info = raw.info.copy()
    with info._unlock():
        info["sfreq"] = smap.sfreq / k
        info["temp"] = None
    pieces, a_s, b_s = [], [], []
    for i in range(smap.n_spans):
        a, b = _aligned(int(smap.orig_start[i]), int(smap.orig_stop[i]), centers, k)
        if b <= a:
            continue
        off = int(smap.seg_start[i] + (a - smap.orig_start[i]))
        x = raw._data[:, off : off + (b - a) : k]
        pieces.append(mne.io.RawArray(np.ascontiguousarray(x), info.copy(), verbose=False))
        a_s.append(a)
        b_s.append(b)
    out = _concat(pieces)
    a_arr, b_arr = np.array(a_s, dtype=np.int64), np.array(b_s, dtype=np.int64)
    lengths = (b_arr - a_arr) // k
    stop = np.cumsum(lengths)
    _set_segment_map(out, SegmentMap(a_arr, b_arr, stop - lengths, stop, smap.orig_sfreq, smap.sfreq / k))
    if wins:
        _set_temp(out, _WIN_KEY, wins)
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


def _ica_fit_raw(raw: mne.io.BaseRaw, picks: list[str], opts: PreprocessOptions) -> mne.io.BaseRaw:
    """Bounded copy the ICA is fitted on: epoch windows (+- half the 1-Hz filter), high-passed at 1 Hz.

    At most ``opts.ica_max_fit_s`` of data (windows evenly subsampled), each
    window padded by half the 1-Hz FIR inside its span and filtered on its own.
    """
    smap = get_segment_map(raw)
    sf = float(raw.info["sfreq"])
    wins = _get_temp(raw, _WIN_KEY)
    h = fir_kernel(sf, opts.ica_highpass_hz, None)
    iv = [(a, b) for _, a, b in _epoch_windows(smap, wins, len(h) // 2 + 1)] if wins else []
    if not iv:
        iv = list(zip(smap.seg_start.tolist(), smap.seg_stop.tolist(), strict=True))
    lengths = np.array([b - a for a, b in iv])
    cap = int(opts.ica_max_fit_s * sf)
    if lengths.sum() > cap:
        m = max(1, int(len(iv) * cap / lengths.sum()))
        iv = [iv[j] for j in np.unique(np.linspace(0, len(iv) - 1, m).round().astype(int))]
    idx = [raw.ch_names.index(ch) for ch in picks]
    info = mne.pick_info(raw.info, idx)
    with info._unlock():
        info["temp"] = None
    filt = _filter_idx(info)  # each window high-passed on its own, as raw.filter(skip_by_annotation="edge") would
    pieces = []
    for a, b in iv:
        x = raw._data[idx, a:b]
        x[filt] = fir_zero_phase(x[filt], h)
        pieces.append(x)
    fit_raw = _assemble(pieces, info, boundaries=False)
    with fit_raw.info._unlock():
        fit_raw.info["highpass"] = max(float(fit_raw.info["highpass"]), float(opts.ica_highpass_hz))
    return fit_raw


def _epoch_windows(smap: SegmentMap, wins: dict[str, Any], half: int) -> list[tuple[int, int, int]]:
    """``(span, first, stop)`` segment samples of every epoch window +- ``half`` samples.

    Clipped to the window's span; overlapping or touching windows of one span
    are merged. The windows everything after the high-pass works on (the
    ICA's fit copy included).
    """
    out: list[tuple[int, int, int]] = []
    ratio = smap.sfreq / smap.orig_sfreq
    c = np.asarray(wins["centers"], dtype=np.int64)
    span = smap.span_of(c, c)
    for x, i in zip(c[span >= 0], span[span >= 0], strict=True):
        pos = smap.seg_start[i] + (x - smap.orig_start[i]) * ratio
        a = max(int(smap.seg_start[i]), int(np.floor(pos + wins["i0"] * ratio)) - half)
        b = min(int(smap.seg_stop[i]), int(np.ceil(pos + wins["i1"] * ratio)) + half)
        if out and out[-1][0] == i and a <= out[-1][2]:
            out[-1] = (int(i), out[-1][1], max(out[-1][2], b))  # same span, overlapping: merge
        else:
            out.append((int(i), a, b))
    return out


def _crop_windows(smap: SegmentMap, wins: dict[str, Any], opts: PreprocessOptions) -> tuple[list[tuple[int, int, int]], int]:
    """The windows :func:`_crop_highpass` keeps, and their margin (samples): half the ICA's 1-Hz FIR."""
    margin = len(fir_kernel(smap.sfreq, opts.ica_highpass_hz, None)) // 2 + 1
    return _epoch_windows(smap, wins, margin), margin


def _highpassed_windows(y: np.ndarray, windows: list[tuple[int, int]], h: np.ndarray | None,
                        filt: list[int]) -> list[np.ndarray]:  # fmt: skip
    """Copies of ``y[:, a:b]`` of one span, the ``filt`` rows high-passed by ``h`` as the whole span would be."""
    rows = y[filt] if h is not None and filt else None
    out = []
    for a, b in windows:
        x = y[:, a:b].copy()
        if rows is not None:
            x[filt] = _fir_zero_phase_range(rows, h, a, b)
        out.append(x)
    return out


def _cropped_raw(pieces: list[np.ndarray], windows: list[tuple[int, int, int]], smap: SegmentMap, info: mne.Info,
                 l_freq: float | None, margin: int) -> tuple[mne.io.Raw, dict[str, Any]]:  # fmt: skip
    """The Raw of the kept windows (``pieces``) of the spans of ``smap``, with its segment map; and its record."""
    k = int(round(smap.orig_sfreq / smap.sfreq))
    info = info.copy()
    with info._unlock():
        info["temp"] = None
        if l_freq is not None:
            info["highpass"] = max(float(info["highpass"]), float(l_freq))
    out = _assemble(pieces, info)
    lengths = np.array([p.shape[1] for p in pieces], dtype=np.int64)
    stop = np.cumsum(lengths)
    o_start = np.array([int(smap.orig_start[i]) + (a - int(smap.seg_start[i])) * k for i, a, _ in windows], dtype=np.int64)
    _set_segment_map(out, SegmentMap(o_start, o_start + lengths * k, stop - lengths, stop, smap.orig_sfreq, smap.sfreq))
    kept = {"n_windows": len(windows), "n_samples": int(lengths.sum()), "of_samples": int(smap.seg_stop[-1]),
            "margin_s": round(margin / smap.sfreq, 6)}  # fmt: skip
    logger.info("high-passed and kept %d epoch windows: %d of %d samples", kept["n_windows"], kept["n_samples"],
                kept["of_samples"])  # fmt: skip
    return out, kept


def _crop_highpass(raw: mne.io.BaseRaw, cfg: PreprocessingConfig, opts: PreprocessOptions, n_jobs: int = 1,
                   ) -> tuple[mne.io.BaseRaw, dict[str, Any] | None]:  # fmt: skip
    """High-pass only the samples used later, and keep only those: the epoch windows +- half the ICA's 1-Hz FIR.

    The padding of the spans serves the filters alone. Once the high-pass
    has been evaluated on the epoch windows (with the ICA's margin, also kept
    when ICA is off so that bad-channel detection sees the same data either
    way), every later step (bad channels, interpolation, reference, ICA fit
    and application, cutting) is sample-local or works on these windows, so
    the pads are dropped: ~1/4 of the samples for MMME's default windows.
    The high-pass values are those of :func:`fir_zero_phase` on the whole
    span, computed only where kept (:func:`_fir_zero_phase_range`).

    Returns ``(raw, None)`` (nothing done; the caller filters whole spans) if
    ``raw`` has no epoch-window record, is not preloaded, or its rate is not
    an integer fraction of the recording's.
    """
    wins = _get_temp(raw, _WIN_KEY)
    smap = get_segment_map(raw)
    k = smap.orig_sfreq / smap.sfreq
    if not wins or not raw.preload or not np.isclose(k, round(k)):
        return raw, None
    windows, margin = _crop_windows(smap, wins, opts)
    if not windows:
        return raw, None
    h = fir_kernel(smap.sfreq, cfg.l_freq, None) if opts.filter and cfg.l_freq is not None else None
    filt = _filter_idx(raw.info)
    by_span: dict[int, list[tuple[int, int]]] = {}
    for i, a, b in windows:
        s0 = int(smap.seg_start[i])
        by_span.setdefault(i, []).append((a - s0, b - s0))

    def one(i: int) -> list[np.ndarray]:
        return _highpassed_windows(raw._data[:, int(smap.seg_start[i]):int(smap.seg_stop[i])], by_span[i], h, filt)

    pieces = [x for xs in _thread_map(one, list(by_span), n_jobs) for x in xs]
    out, kept = _cropped_raw(pieces, windows, smap, raw.info, cfg.l_freq if h is not None else None, margin)
    _set_temp(out, _WIN_KEY, wins)
    return out, kept


def _ica_fit_params(method: str) -> dict[str, Any] | None:
    if method == "infomax":
        return {"extended": True}
    if method == "picard":
        return {"ortho": False, "extended": True}  # MNE's recommendation (extended-infomax-like)
    return None


def _fit_ica(fit_raw: mne.io.BaseRaw, picks: list[str], opts: PreprocessOptions, seed: int,
             decim: int) -> mne.preprocessing.ICA:
    """One ICA of the bounded fit copy (:func:`_ica_fit_raw`) with ``seed`` as its random state."""
    method = _ica_method(opts.ica_method)
    n_comp = opts.ica_n_components
    if isinstance(n_comp, int):
        n_comp = min(n_comp, len(picks) - 1)
    ica = mne.preprocessing.ICA(n_components=n_comp, method=method, random_state=seed, max_iter=opts.ica_max_iter,
                                fit_params=_ica_fit_params(method), verbose=False)  # fmt: skip
    ica.fit(fit_raw, picks=picks, decim=decim, reject_by_annotation=True, verbose=False)
    return ica


def _ica_components_to_remove(ica: mne.preprocessing.ICA, fit_raw: mne.io.BaseRaw, eog: list[str],
                              opts: PreprocessOptions) -> dict[str, Any]:
    """Ocular components (EOG correlation), muscle components (flagged or removed) and what is excluded."""
    eog_idx: list[int] = []
    eog_scores: dict[str, list[float]] = {}
    if eog:
        idx, scores = ica.find_bads_eog(fit_raw, ch_name=eog, threshold=opts.eog_threshold, verbose=False)
        eog_idx = sorted(int(i) for i in idx)
        sc = np.atleast_2d(np.asarray(scores))
        eog_scores = {ch: np.round(s, 4).tolist() for ch, s in zip(eog, sc, strict=True)}
    muscle_idx: list[int] = []
    if opts.muscle != "off":
        idx, _ = ica.find_bads_muscle(fit_raw, threshold=opts.muscle_threshold, verbose=False)
        muscle_idx = sorted(int(i) for i in idx if int(i) not in eog_idx)
    exclude = sorted(set(eog_idx) | (set(muscle_idx) if opts.muscle == "remove" else set()))
    return {"eog_components": eog_idx, "eog_scores": eog_scores, "muscle_components": muscle_idx,
            "excluded_components": exclude}  # fmt: skip


#: Smallest absolute correlation between the spatial maps of a removed component and its match in a refit for the
#: removal to count as stable (ICASSO-style reliability; a blink map refound with another seed correlates > 0.99).
ICA_STABLE_MIN_R = 0.95


def _ica_refit_comparison(main: mne.preprocessing.ICA, other: mne.preprocessing.ICA, exclude: list[int],
                          other_exclude: list[int]) -> tuple[list[float], bool]:
    """Match ``other``'s components to ``main``'s (Hungarian assignment on the absolute spatial-map correlation).

    Returns the absolute r of the match of each of ``main``'s removed components, and
    whether ``other`` removes exactly the matches of those.
    """
    from scipy.optimize import linear_sum_assignment

    a, b = main.get_components(), other.get_components()  # (channels, components)
    a = (a - a.mean(0)) / np.linalg.norm(a - a.mean(0), axis=0)
    b = (b - b.mean(0)) / np.linalg.norm(b - b.mean(0), axis=0)
    r = np.abs(a.T @ b)
    rows, cols = linear_sum_assignment(-r)
    match = dict(zip(rows.tolist(), cols.tolist(), strict=True))
    return ([round(float(r[i, match[i]]), 6) for i in exclude],
            sorted(match[i] for i in exclude) == sorted(other_exclude))  # fmt: skip


def _ica_stability(before: mne.io.BaseRaw, cleaned: mne.io.BaseRaw, main: mne.preprocessing.ICA,
                   removal: dict[str, Any], fit_raw: mne.io.BaseRaw, picks: list[str], eog: list[str],
                   opts: PreprocessOptions, seeds: list[int], decim: int) -> dict[str, Any]:  # fmt: skip
    """Refit the ICA with other seeds; are the removed components refound, and how much does the cleaning move?

    ``before`` is the data before the ICA (each refit's own ocular/muscle
    choice is applied to a copy of it), ``cleaned`` after the main fit's; the
    two cleanings are compared on the EEG channels ``picks`` (µV).
    """
    exclude = removal["excluded_components"]
    eeg = [before.ch_names.index(c) for c in picks]
    main_clean = cleaned._data[eeg]
    refits: list[dict[str, Any]] = []
    for seed in seeds:
        other = _fit_ica(fit_raw, picks, opts, seed, decim)
        oth = _ica_components_to_remove(other, fit_raw, eog, opts)
        r, same = _ica_refit_comparison(main, other, exclude, oth["excluded_components"])
        diff = other.apply(before.copy(), exclude=oth["excluded_components"], verbose=False)._data[eeg] - main_clean
        refits.append({"seed": seed, "n_iter": int(other.n_iter_), "excluded_components": oth["excluded_components"],
                       "removed_match_r": r, "same_removal": same,
                       "max_abs_diff_uv": round(float(np.abs(diff).max()) * 1e6, 6),
                       "rms_diff_uv": round(float(np.sqrt(np.mean(diff**2))) * 1e6, 6)})  # fmt: skip
    rs = [x for f in refits for x in f["removed_match_r"]]
    min_r = min(rs) if rs else None
    stable = all(f["same_removal"] for f in refits) and (min_r is None or min_r >= ICA_STABLE_MIN_R)
    if not stable:
        logger.warning("ICA not stable across %d refits: removed components %s; refits remove %s "
                       "(smallest |r| of a removed component's match %s); cleaned data change up to %.2f µV",
                       len(refits), exclude, [f["excluded_components"] for f in refits], min_r,
                       max(f["max_abs_diff_uv"] for f in refits))  # fmt: skip
    return {"n_refits": len(refits), "min_match_r": ICA_STABLE_MIN_R, "stable": stable, "smallest_removed_r": min_r,
            "max_abs_diff_uv": max(f["max_abs_diff_uv"] for f in refits), "refits": refits}  # fmt: skip


ICA_STABILITY_COLUMNS = ("subject", "seed", "n_iter", "removed_components", "refit_removed_components",
                         "smallest_removed_r", "same_removal", "max_abs_diff_uv", "rms_diff_uv", "subject_stable")


def ica_stability_table(preprocessing: Mapping[str, Any]) -> pd.DataFrame:
    """Tidy table of the ICA reliability check (``preprocessing.ica_stability_refits``), one row per subject and refit.

    Parameters
    ----------
    preprocessing : mapping of str to dict
        Subject -> its preprocessing record: the ``attrs["preprocessing"]`` of
        a group ERP array (:func:`mmme_neuro.erp.stack_subjects`), or the
        reports of :func:`preprocess_segments`. Subjects whose record holds no
        check (ICA off, or no refits) are left out.

    Returns
    -------
    table : pandas.DataFrame
        Columns ``subject``, ``seed`` of the refit, its ``n_iter``, the
        ``removed_components`` of the main fit and the refit's own
        (``refit_removed_components``; ";"-joined indices), the smallest
        absolute correlation of a removed component's scalp map with its match
        (``smallest_removed_r``; NaN when nothing is removed),
        ``same_removal``, how far the refit's cleaned EEG is from the main
        fit's (``max_abs_diff_uv``, ``rms_diff_uv``, µV), and the subject's
        verdict (``subject_stable``).
    """
    rows = []
    for subject, rec in sorted(preprocessing.items()):
        ica = (rec or {}).get("ica") or ((rec or {}).get("steps") or {}).get("ica") or {}
        stab = ica.get("stability")
        if not stab:
            continue
        for f in stab["refits"]:
            rows.append({"subject": subject, "seed": f["seed"], "n_iter": f["n_iter"],
                         "removed_components": ";".join(map(str, ica["excluded_components"])),
                         "refit_removed_components": ";".join(map(str, f["excluded_components"])),
                         "smallest_removed_r": min(f["removed_match_r"], default=np.nan),
                         "same_removal": f["same_removal"], "max_abs_diff_uv": f["max_abs_diff_uv"],
                         "rms_diff_uv": f["rms_diff_uv"], "subject_stable": stab["stable"]})  # fmt: skip
    return pd.DataFrame(rows, columns=list(ICA_STABILITY_COLUMNS))


def _run_ica(raw: mne.io.BaseRaw, opts: PreprocessOptions, seed: int, *, refits: int = 0) -> dict[str, Any]:
    eog = [c for c in _eeg_present(raw, opts.eog_channels) if c not in raw.info["bads"]]  # a bad EOG was zero-filled
    picks_eeg = [c for c in _eeg_present(raw, SCALP_CHANNELS) if c not in raw.info["bads"]]
    fit_raw = _ica_fit_raw(raw, picks_eeg + eog, opts)
    sf = float(raw.info["sfreq"])
    decim = max(1, int(round(sf / opts.ica_fit_sfreq)))
    ica = _fit_ica(fit_raw, picks_eeg, opts, seed, decim)
    removal = _ica_components_to_remove(ica, fit_raw, eog, opts)
    if not eog:
        logger.warning("no EOG channel (%s): ICA finds no ocular component", ", ".join(opts.eog_channels))
    exclude = removal["excluded_components"]
    before = raw.copy() if refits else None
    ica.apply(raw, exclude=exclude, verbose=False)
    ica.exclude = list(exclude)  # the fitted ICA, kept with the cleaned data (ICA_KEY): reports and derivatives
    _set_temp(raw, ICA_KEY, ica)
    stability = None
    if before is not None:
        stability = _ica_stability(before, raw, ica, removal, fit_raw, picks_eeg, eog, opts,
                                   [seed + k for k in range(1, refits + 1)], decim)  # fmt: skip
        del before
    fit_s = fit_raw.n_times / sf
    del fit_raw
    method = _ica_method(opts.ica_method)
    logger.info("ICA (%s, %d comps, %d iterations, fitted on %.0f s at %g Hz): removed ocular %s, muscle %s %s",
                method, ica.n_components_, ica.n_iter_, fit_s, sf / decim, removal["eog_components"],
                removal["muscle_components"], "removed" if opts.muscle == "remove" else "flagged only")  # fmt: skip
    out = {
        "method": method, "n_components": int(ica.n_components_), "random_state": seed,
        "fit_params": _ica_fit_params(method), "max_iter": opts.ica_max_iter, "n_iter": int(ica.n_iter_),
        "fit_highpass_hz": opts.ica_highpass_hz, "fit_decim": decim, "fit_sfreq_hz": sf / decim,
        "fit_duration_s": round(fit_s, 3), "fit_on": "all segments together",
        "eog_channels": eog, "eog_threshold": opts.eog_threshold, "eog_components": removal["eog_components"],
        "eog_scores": removal["eog_scores"], "muscle": opts.muscle, "muscle_components": removal["muscle_components"],
        "excluded_components": exclude,
    }  # fmt: skip
    if stability is not None:
        out["stability"] = stability
    return out


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
        The epoch windows (+- the ICA's margin) of the segments, filtered,
        resampled to ``resample_sfreq`` (per-span decimation by
        ``report["resample"]["decim"]`` after the low-pass, or per-span FFT
        resampling for a non-integer ratio), bad channels interpolated,
        re-referenced (M1/M2 dropped), ocular ICs removed. Its
        :func:`get_segment_map` is valid (``sfreq`` = new rate; one span per
        kept window); ``report["resample"]["decim_at_epoching"]`` is 1.
        Segments from the fused reader of :func:`mmme_neuro.epochs.make_epochs`
        arrive low-passed, decimated, high-passed and cropped already; those
        steps are then only recorded.
    report : dict
        ``steps`` (what ran, with parameters: goes into provenance attrs),
        ``bad_channels``, ``bad_channel_scores`` (records), ``ica``,
        ``recording_bad_channels`` (only when the recording brings bad scalp
        channels: ``[{"channel", "reason"}]``, also in ``steps``),
        ``resample``, ``segments`` (:meth:`SegmentMap.to_dict` of the spans
        read), ``cleaned`` (the windows kept after the high-pass:
        ``n_windows``, ``n_samples`` of ``of_samples``, ``margin_s``; None
        if whole spans were kept, for segments without an epoch-window
        record or with a non-integer resampling ratio).

    Raises
    ------
    BadChannelsError
        If the recording's bad scalp channels (:func:`recording_bads`, and
        scalp channels missing from ``segments``) are not to be interpolated
        (:func:`check_recording_bads`).

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
    done = _get_temp(segments, _LP_KEY)  # low-passed + decimated while read (_read_decimated)
    bad_rec = recording_bads(segments)
    problems = scalp_problems(bad_rec.get("marked", {}), segments.ch_names, bad_rec.get("non_finite", []))
    check_recording_bads(problems, cfg)
    raw = segments.copy() if copy else segments
    steps: dict[str, Any] = {}
    report: dict[str, Any] = {"bad_channels": [], "bad_channel_scores": [], "ica": None}

    native_sf = smap.orig_sfreq
    check_rates(native_sf, cfg)
    sf = float(raw.info["sfreq"])
    resample: dict[str, Any] = {"from_hz": sf, "to_hz": sf, "decim": 1, "decim_at_epoching": 1, "method": "none"}
    if done:
        steps.update(done["steps"])
        resample = dict(done["resample"])
        steps["resample"] = resample
    else:
        if opts.filter:
            steps.update(_lowpass_notch(raw, cfg))
        if opts.resample and cfg.resample_sfreq is not None and not np.isclose(sf, cfg.resample_sfreq):
            k = decimation_factor(sf, cfg.resample_sfreq)
            if cfg.h_freq is None or cfg.h_freq > cfg.resample_sfreq / 2 or not opts.filter:
                logger.warning("low-pass %s Hz is not below the new Nyquist %.1f Hz: aliasing possible",
                               cfg.h_freq if opts.filter else None, cfg.resample_sfreq / 2)  # fmt: skip
            if k is not None:
                raw = _decimate_segments(raw, k)
                resample = _decim_report(sf, k)
            else:
                lengths_before = smap.seg_stop - smap.seg_start
                raw.resample(cfg.resample_sfreq, verbose=False)
                lengths = np.array(raw._raw_lengths, dtype=np.int64)
                if lengths.size != lengths_before.size:  # pragma: no cover - MNE keeps pieces
                    raise RuntimeError("resampling merged segment pieces")
                _set_segment_map(raw, smap.resampled(cfg.resample_sfreq, lengths))
                resample = {"from_hz": sf, "to_hz": float(cfg.resample_sfreq), "decim": 1, "decim_at_epoching": 1,
                            "method": "per-span resample (FFT) after the low-pass, landmarks rounded"}  # fmt: skip
            steps["resample"] = resample
        smap = get_segment_map(raw)
    smap_read = _read_map(segments) if done else smap  # the spans read (before a crop while reading)
    kept = done.get("cropped") if done else None
    if kept is None:
        raw, kept = _crop_highpass(raw, cfg, opts, config.run.threads)
    if opts.filter:
        steps["bandpass"] = _highpass(raw, cfg, native_sf, done=kept is not None)
    report["cleaned"] = kept
    if problems:  # the recording's own bad scalp channels: zero-filled while read, missing ones added here
        added = add_missing_channels(raw, [c for c in problems if c not in raw.ch_names])
        report["recording_bad_channels"] = as_records(problems)
        steps["recording_bad_channels"] = {"policy": cfg.bad_channels, "channels": as_records(problems),
                                           "added": added}  # fmt: skip
    if opts.detect_bads:
        picks = [c for c in _eeg_present(raw, SCALP_CHANNELS) if c not in raw.info["bads"]] if raw.info["bads"] else None
        bads, scores = detect_bad_channels(raw, picks=picks, z_threshold=opts.bad_z_threshold,
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
        report["ica"] = _run_ica(raw, opts, config.seed, refits=cfg.ica_stability_refits)
        steps["ica"] = {k: report["ica"][k] for k in ("method", "n_components", "random_state", "fit_highpass_hz",
                                                      "fit_sfreq_hz", "fit_duration_s", "n_iter", "fit_on",
                                                      "eog_components", "muscle", "muscle_components",
                                                      "excluded_components", "stability") if k in report["ica"]}  # fmt: skip
    report["resample"] = resample
    report["segments"] = smap_read.to_dict()
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
