"""Event-related potentials: per-subject evoked responses, group arrays, component measures.

One step per function (NeuroKit style); :mod:`analyses.erp_me_vs_mae` composes them.

- :func:`epochs_to_dataarray` - kept epochs of an :class:`mne.Epochs` as a
  trial-level ``(epoch, channel, time)`` array in µV, metadata as coordinates.
- :func:`compute_evoked` - one subject's average per condition,
  ``(condition, channel, time)`` in µV, epoch counts in the ``n_epochs``
  coordinate (NaN for a condition without epochs).
- :func:`stack_subjects` - the group array ``(subject, condition, channel,
  time)`` with provenance (preprocessing steps of every subject).
- :func:`to_evoked` / :func:`from_evoked` - interoperability with
  :class:`mne.Evoked` (V, Quik-Cap montage) both ways.
- :func:`measure_components` - mean amplitude or peak amplitude/latency in
  time windows over channels/ROIs, one tidy row per epoch (or subject x
  condition) x window x ROI, with the facial-EMG measures of each epoch
  carried along as covariates.
- :func:`contrast` - difference wave ``a - b``.

Conventions: amplitudes in µV, times in s relative to the epoch landmark
(``epochs.align``); the contrast ``("ME", "MaE")`` is ``ME - MaE``.

References
----------
Luck SJ (2014). An Introduction to the Event-Related Potential Technique,
2nd ed. MIT Press (mean vs peak amplitude measures, ch. 9).
Luck SJ, Gaspelin N (2017). How to get statistically significant effects in
any ERP experiment (and why you shouldn't). Psychophysiology 54:146-157.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import mne
import numpy as np
import pandas as pd
import xarray as xr

from .config import Config
from .containers import provenance, validate
from .epochs import bookkeeping_table, epochs_from_session, equalize_counts, from_clean
from .matching import match_emg, matching_options

__all__ = [
    "CONDITIONS",
    "DEFAULT_ROIS",
    "MATCHED_CONDITIONS",
    "DEFAULT_WINDOWS",
    "compute_evoked",
    "contrast",
    "epochs_to_dataarray",
    "first_level",
    "from_evoked",
    "measure_components",
    "stack_subjects",
    "to_evoked",
]

logger = logging.getLogger(__name__)

#: Conditions in their canonical order.
CONDITIONS: tuple[str, ...] = ("ME", "MaE", "NE")
#: Conditions of the EMG-matched averages (:func:`first_level`).
MATCHED_CONDITIONS: tuple[str, ...] = ("ME", "MaE")
#: Default component window (s): the P3 / late positive complex.
DEFAULT_WINDOWS: dict[str, tuple[float, float]] = {"P3": (0.3, 0.5)}
#: Default region of interest: the classic centro-parietal P3 sites.
DEFAULT_ROIS: dict[str, tuple[str, ...]] = {"centroparietal": ("CP1", "CPZ", "CP2", "P1", "PZ", "P2")}
#: Metadata columns carried into component tables (plus every ``emg_*`` column).
CARRY_COLUMNS: tuple[str, ...] = (
    "epoch_id", "subject", "condition", "expression_id", "emotion", "clip_emotion", "duration_s", "onset_to_apex_s",
)  # fmt: skip

_UV = 1e6
_TIME_DECIMALS = 9


# ----------------------------------------------------------------------------- helpers


def _time_coord(times: np.ndarray) -> xr.DataArray:
    t = np.round(np.asarray(times, dtype=float), _TIME_DECIMALS) + 0.0
    return xr.DataArray(t, dims="time", attrs={"units": "s", "long_name": "time from landmark"})


def _ordered_conditions(labels: Sequence[str]) -> list[str]:
    """Canonical order first (ME, MaE, NE), then others sorted."""
    uniq = list(dict.fromkeys(str(c) for c in labels))
    return [c for c in CONDITIONS if c in uniq] + sorted(c for c in uniq if c not in CONDITIONS)


def _check_conditions(conditions: Any) -> list[str]:
    if isinstance(conditions, str) or not isinstance(conditions, Sequence) or not conditions:
        raise ValueError(f"conditions must be a non-empty sequence of labels such as ('ME', 'MaE', 'NE'), got {conditions!r}")
    out = [str(c) for c in conditions]
    if len(set(out)) != len(out):
        raise ValueError(f"conditions must be unique, got {out}")
    return out


def _kept_metadata(epochs: mne.BaseEpochs, metadata: pd.DataFrame | None) -> pd.DataFrame:
    """Metadata rows of the epochs in ``epochs``, in their order, validated."""
    n = len(epochs)
    own = epochs.metadata
    if metadata is None:
        if own is None:
            raise ValueError("epochs have no metadata; pass the metadata DataFrame (one row per epoch)")
        md = own.reset_index(drop=True)
    else:
        if not isinstance(metadata, pd.DataFrame):
            raise TypeError(f"metadata must be a pandas DataFrame, got {type(metadata).__name__}")
        md = metadata
        if own is not None and "epoch_id" in md.columns and "epoch_id" in own.columns and len(md) != n:
            idx = pd.Index(md["epoch_id"])
            if not idx.is_unique:
                raise ValueError("metadata 'epoch_id' values must be unique")
            missing = set(own["epoch_id"]) - set(idx)
            if missing:
                raise ValueError(f"{len(missing)} epoch(s) of `epochs` are not in metadata (by epoch_id)")
            md = md.set_index("epoch_id", drop=False).loc[own["epoch_id"].to_numpy()]
        elif len(md) != n and "kept" in md.columns and int(md["kept"].astype(bool).sum()) == n:
            md = md[md["kept"].astype(bool)]
        elif len(md) != n:
            raise ValueError(
                f"metadata has {len(md)} rows but epochs has {n} epochs; give one row per epoch, "
                "or the full bookkeeping table with a 'kept' column (or 'epoch_id' in both)"
            )
        md = md.reset_index(drop=True)
    if "condition" not in md.columns:
        raise ValueError(f"metadata needs a 'condition' column; columns: {list(md.columns)}")
    return md


def _kept_mask(md: pd.DataFrame) -> np.ndarray:
    if "kept" in md.columns:
        return md["kept"].fillna(False).astype(bool).to_numpy()
    if "rejected" in md.columns:
        return ~md["rejected"].fillna(False).astype(bool).to_numpy()
    return np.ones(len(md), dtype=bool)


def _eeg_picks(info: mne.Info) -> np.ndarray:
    picks = mne.pick_types(info, eeg=True, exclude=())
    if picks.size == 0:
        raise ValueError("epochs have no EEG channel")
    return picks


def _subject_of(md: pd.DataFrame, subject: str | None) -> str | None:
    if subject is not None:
        return str(subject)
    if "subject" in md.columns:
        subs = md["subject"].dropna().astype(str).unique()
        if len(subs) > 1:
            raise ValueError(f"metadata holds several subjects {sorted(subs)}; compute one subject at a time")
        if len(subs) == 1:
            return str(subs[0])
    return None


def _steps_of(epochs: mne.BaseEpochs, metadata: pd.DataFrame | None) -> Any:
    """Preprocessing steps recorded with the epochs (``metadata.attrs`` of :func:`mmme_neuro.epochs.make_epochs`)."""
    for source in (getattr(metadata, "attrs", None), getattr(epochs.metadata, "attrs", None)):
        if not isinstance(source, Mapping):
            continue
        prep = source.get("preprocessing")
        if isinstance(prep, Mapping) and "steps" in prep:
            return {"steps": prep["steps"], **{k: prep[k] for k in ("bad_channels", "pad_s") if k in prep}}
        if prep is not None:
            return prep
        prov = source.get("provenance")
        if isinstance(prov, Mapping) and "preprocessing" in prov:
            return {"steps": prov["preprocessing"]}
    return None


# ----------------------------------------------------------------------------- trial level


def epochs_to_dataarray(
    epochs: mne.BaseEpochs,
    metadata: pd.DataFrame | None = None,
    *,
    kept_only: bool = True,
) -> xr.DataArray:
    """Return the epochs as a trial-level ``(epoch, channel, time)`` array in µV.

    Parameters
    ----------
    epochs : mne.BaseEpochs
        Preprocessed epochs (EEG in V). Only EEG channels are used.
    metadata : pandas.DataFrame | None
        One row per epoch of ``epochs``, or the full bookkeeping table of
        :func:`mmme_neuro.epochs.make_epochs` (rows of rejected epochs are
        matched away by ``epoch_id`` or the ``kept`` column). None: ``epochs.metadata``.
        Needs a ``condition`` column.
    kept_only : bool
        Drop rows whose ``kept`` is False (or ``rejected`` True).

    Returns
    -------
    data : xarray.DataArray
        Dims ``(epoch, channel, time)``, µV (``attrs["units"]``). Coordinates
        along ``epoch``: ``epoch`` (``epoch_id`` if present, else 0..n-1) and
        one non-index coordinate per scalar metadata column (``subject``,
        ``condition``, ``emg_rms_uv`` ...).
    """
    if not isinstance(epochs, mne.BaseEpochs):
        raise TypeError(f"epochs must be mne.Epochs, got {type(epochs).__name__}")
    md = _kept_metadata(epochs, metadata)
    keep = _kept_mask(md) if kept_only else np.ones(len(md), dtype=bool)
    picks = _eeg_picks(epochs.info)
    idx = np.flatnonzero(keep)
    if idx.size:
        data = epochs.get_data(picks=picks, item=idx if idx.size < len(epochs) else None) * _UV
    else:
        data = np.zeros((0, picks.size, len(epochs.times)))
    md = md.iloc[idx].reset_index(drop=True)
    md.attrs = {}  # a new frame; pandas deep-copies attrs (the preprocessing record) on every column read
    ids = md["epoch_id"].astype(str).to_numpy() if "epoch_id" in md.columns else np.arange(len(md))
    coords: dict[str, Any] = {
        "epoch": ids,
        "channel": [epochs.ch_names[i] for i in picks],
        "time": _time_coord(epochs.times),
    }
    for col in md.columns:
        if col == "epoch_id":
            continue
        values = md[col]
        if values.dtype == object:
            if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
                continue  # lists (AUs), mixed objects: not a coordinate
            values = values.fillna("").astype(str)
        coords[col] = ("epoch", values.to_numpy())
    return xr.DataArray(data, dims=("epoch", "channel", "time"), coords=coords, name="eeg",
                        attrs={"units": "µV"})  # fmt: skip


# ----------------------------------------------------------------------------- evoked


def compute_evoked(
    epochs: mne.BaseEpochs,
    metadata: pd.DataFrame | None = None,
    *,
    conditions: Sequence[str] = CONDITIONS,
    subject: str | None = None,
    preprocessing: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """Average one subject's kept epochs per condition.

    Parameters
    ----------
    epochs : mne.BaseEpochs
        One subject's preprocessed epochs (EEG in V).
    metadata : pandas.DataFrame | None
        Epoch metadata with ``condition`` (and ``kept``/``rejected``,
        ``subject``); see :func:`epochs_to_dataarray`. None: ``epochs.metadata``.
    conditions : sequence of str
        Conditions to average, in output order. A condition without any kept
        epoch is all-NaN with ``n_epochs`` 0.
    subject : str | None
        Pseudonym; None: the single value of ``metadata["subject"]``.
    preprocessing : mapping | None
        Preprocessing steps to record in ``attrs["preprocessing"]``; None:
        looked up in ``metadata.attrs["preprocessing"]`` or
        ``epochs.info["temp"]["preprocessing"]`` when present.

    Returns
    -------
    evoked : xarray.DataArray
        Dims ``(condition, channel, time)``, µV; coordinate ``n_epochs``
        (condition) = epochs averaged; ``attrs``: ``subject``, ``units``,
        ``sfreq`` (Hz), ``preprocessing``.

    Examples
    --------
    >>> import mne, numpy as np, pandas as pd
    >>> info = mne.create_info(["CZ", "PZ"], 100.0, "eeg")
    >>> md = pd.DataFrame({"condition": ["ME", "ME", "MaE"], "subject": "sub-01"})
    >>> ep = mne.EpochsArray(np.ones((3, 2, 5)) * 1e-6, info, metadata=md, verbose=False)
    >>> ev = compute_evoked(ep, conditions=("ME", "MaE", "NE"))
    >>> ev.sizes["condition"], ev["n_epochs"].values.tolist()
    (3, [2, 1, 0])
    """
    conditions = _check_conditions(conditions)
    trials = epochs_to_dataarray(epochs, metadata)
    md = _kept_metadata(epochs, metadata)
    subj = _subject_of(md, subject)
    cond = trials["condition"].astype(str).values if trials.sizes["epoch"] else np.array([], dtype=str)
    shape = (len(conditions), trials.sizes["channel"], trials.sizes["time"])
    out = np.full(shape, np.nan)
    counts = np.zeros(len(conditions), dtype=np.int64)
    for i, c in enumerate(conditions):
        sel = cond == c
        counts[i] = int(sel.sum())
        if counts[i]:
            out[i] = trials.values[sel].mean(axis=0)
    unknown = sorted(set(cond) - set(conditions))
    if unknown:
        logger.info("compute_evoked %s: epochs of condition(s) %s not averaged", subj, unknown)
    steps = preprocessing if preprocessing is not None else _steps_of(epochs, metadata)
    attrs = {"units": "µV", "sfreq": float(epochs.info["sfreq"]), "preprocessing": steps,
             "subject": subj if subj is not None else ""}  # fmt: skip
    da = xr.DataArray(
        out,
        dims=("condition", "channel", "time"),
        coords={"condition": conditions, "channel": trials["channel"].values, "time": trials["time"],
                "n_epochs": ("condition", counts)},  # fmt: skip
        name="erp",
        attrs=attrs,
    )
    return da


def stack_subjects(
    evokeds: Sequence[xr.DataArray],
    *,
    subjects: Sequence[str] | None = None,
    config: Config | None = None,
    **extra: Any,
) -> xr.DataArray:
    """Stack per-subject evoked arrays into the group array.

    Parameters
    ----------
    evokeds : sequence of xarray.DataArray
        Outputs of :func:`compute_evoked` (``(condition, channel, time)``),
        same channels and times.
    subjects : sequence of str | None
        Pseudonyms; None: ``attrs["subject"]`` of each array.
    config : Config | None
        Effective configuration (hash and seed go into provenance).
    **extra
        Further provenance attributes (e.g. ``analysis="erp_me_vs_mae"``).

    Returns
    -------
    group : xarray.DataArray
        Dims ``(subject, condition, channel, time)``, µV, subjects sorted;
        conditions are the union (canonical order ME, MaE, NE), NaN where a
        subject has no epoch of a condition; ``n_epochs`` (subject,
        condition) is 0 there. ``attrs``: provenance
        (:func:`mmme_neuro.containers.provenance`), ``units``, ``sfreq``,
        ``preprocessing`` (subject -> steps of that subject's epochs).

    Raises
    ------
    ValueError
        On an empty list, a missing or duplicate subject label, or arrays
        whose channels or times differ.
    """
    if isinstance(evokeds, xr.DataArray) or not isinstance(evokeds, Sequence) or not evokeds:
        raise ValueError("evokeds must be a non-empty sequence of DataArrays from compute_evoked")
    for i, ev in enumerate(evokeds):
        if not isinstance(ev, xr.DataArray) or set(ev.dims) != {"condition", "channel", "time"}:
            raise ValueError(f"evokeds[{i}] must be a DataArray with dims (condition, channel, time)")
    if subjects is None:
        subjects = [str(ev.attrs.get("subject") or "") for ev in evokeds]
        if any(not s for s in subjects):
            raise ValueError("an evoked array has no attrs['subject']; pass subjects=")
    subjects = [str(s) for s in subjects]
    if len(subjects) != len(evokeds):
        raise ValueError(f"{len(subjects)} subject labels for {len(evokeds)} arrays")
    if len(set(subjects)) != len(subjects):
        raise ValueError(f"duplicate subject labels: {subjects}")
    ref = evokeds[0]
    lists = [tuple(str(c) for c in ev["channel"].values) for ev in evokeds]
    if len(set(lists)) > 1:  # name the subjects that differ from the most common channel list, and how
        common = max(set(lists), key=lambda chs: (lists.count(chs), -lists.index(chs)))
        odd = []
        for s, chs in zip(subjects, lists, strict=True):
            if chs != common:
                lacks, extra = [c for c in common if c not in chs], [c for c in chs if c not in common]
                how = "; ".join(p for p in (f"no {', '.join(lacks)}" if lacks else "",
                                            f"extra {', '.join(extra)}" if extra else "") if p) or "another order"
                odd.append(f"{s} ({how})")
        raise ValueError(f"channels differ from those of the other subjects: {'; '.join(odd)}")
    for s, ev in zip(subjects, evokeds, strict=True):
        if ev.sizes["time"] != ref.sizes["time"] or not np.allclose(ev["time"].values, ref["time"].values, atol=1e-9):
            raise ValueError(f"{s}: time points differ from those of {subjects[0]}")
    conditions = _ordered_conditions([c for ev in evokeds for c in ev["condition"].values])
    order = np.argsort(subjects, kind="stable")
    arrays, counts = [], []
    for i in order:
        ev = evokeds[i].transpose("condition", "channel", "time")
        n = ev["n_epochs"] if "n_epochs" in ev.coords else xr.zeros_like(ev["condition"], dtype=np.int64)
        n = n.reindex(condition=conditions, fill_value=0)
        ev = ev.drop_vars("n_epochs", errors="ignore").reindex(condition=conditions)
        arrays.append(ev.values.astype(float))
        counts.append(n.values.astype(np.int64))
    subj_sorted = [subjects[i] for i in order]
    attrs = provenance(
        config,
        units="µV",
        sfreq=float(ref.attrs.get("sfreq", np.nan)),
        preprocessing={subjects[i]: evokeds[i].attrs.get("preprocessing") for i in order},
        **extra,
    )
    group = xr.DataArray(
        np.stack(arrays),
        dims=("subject", "condition", "channel", "time"),
        coords={"subject": subj_sorted, "condition": conditions, "channel": ref["channel"].values,
                "time": _time_coord(ref["time"].values), "n_epochs": (("subject", "condition"), np.stack(counts))},
        name="erp",
        attrs=attrs,
    )  # fmt: skip
    return validate(group)


# ----------------------------------------------------------------------------- MNE interop


def _sfreq_of(da: xr.DataArray) -> float:
    t = np.asarray(da["time"].values, dtype=float)
    if t.size < 2:
        sf = da.attrs.get("sfreq")
        if sf is None:
            raise ValueError("cannot infer the sampling rate from a single time point; set attrs['sfreq']")
        return float(sf)
    return float(1.0 / np.median(np.diff(t)))


def to_evoked(
    data: xr.DataArray,
    *,
    condition: str | None = None,
    subject: str | None = None,
    info: mne.Info | None = None,
) -> mne.EvokedArray:
    """Convert an evoked DataArray (µV) to an :class:`mne.Evoked` (V).

    Parameters
    ----------
    data : xarray.DataArray
        ``(channel, time)``, ``(condition, channel, time)`` or ``(subject,
        condition, channel, time)`` in µV.
    condition : str | None
        Condition to convert; required when ``data`` has several.
    subject : str | None
        Subject to convert; None with a ``subject`` dim gives the grand
        average over subjects (NaN-ignoring; ``nave`` = subjects averaged).
    info : mne.Info | None
        Measurement info whose channels match; None: EEG channels with the
        Quik-Cap 64 montage (:func:`mmme_neuro.montage.make_quikcap64_montage`).

    Returns
    -------
    evoked : mne.EvokedArray
        Data in V, ``comment`` = condition, ``nave`` from ``n_epochs``.
    """
    if not isinstance(data, xr.DataArray):
        raise TypeError(f"data must be an xarray.DataArray, got {type(data).__name__}")
    da = data
    nave = None
    if "subject" in da.dims:
        if subject is not None:
            da = da.sel(subject=subject)
        else:
            nave = int(da.sizes["subject"])
            da = da.mean("subject", skipna=True, keep_attrs=True)
    if "condition" in da.dims:
        labels = [str(c) for c in da["condition"].values]
        if condition is None:
            if len(labels) != 1:
                raise ValueError(f"data holds conditions {labels}; choose one with condition=")
            condition = labels[0]
        if condition not in labels:
            raise ValueError(f"condition {condition!r} not in {labels}")
        da = da.sel(condition=condition)
    elif condition is None and "condition" in da.coords:
        condition = str(da["condition"].values)
    extra = [d for d in da.dims if d not in ("channel", "time")]
    if extra or set(da.dims) != {"channel", "time"}:
        raise ValueError(f"cannot convert dims {data.dims} to one Evoked (left over: {extra or da.dims})")
    da = da.transpose("channel", "time")
    if nave is None:
        nave = int(da["n_epochs"].values) if "n_epochs" in da.coords and da["n_epochs"].ndim == 0 else 1
    channels = [str(c) for c in da["channel"].values]
    sfreq = _sfreq_of(da)
    if info is None:
        from .montage import make_quikcap64_montage

        info = mne.create_info(channels, sfreq, "eeg")
        montage = make_quikcap64_montage()
        known = set(montage.ch_names)
        if set(channels) <= known:
            info.set_montage(montage, verbose="error")
    elif list(info["ch_names"]) != channels:
        raise ValueError("info channels differ from the DataArray's channels")
    return mne.EvokedArray(
        da.values / _UV, info, tmin=float(da["time"].values[0]), comment=condition or "", nave=max(nave, 1),
        verbose="error",
    )


def from_evoked(
    evoked: mne.Evoked,
    *,
    condition: str | None = None,
    subject: str | None = None,
) -> xr.DataArray:
    """Convert an :class:`mne.Evoked` (V) to a ``(condition, channel, time)`` DataArray (µV).

    Parameters
    ----------
    evoked : mne.Evoked
        Evoked response; EEG channels are kept.
    condition : str | None
        Condition label; None: ``evoked.comment``.
    subject : str | None
        Pseudonym stored in ``attrs["subject"]``.

    Returns
    -------
    evoked_da : xarray.DataArray
        Same layout as :func:`compute_evoked`, ``n_epochs`` = ``evoked.nave``.
    """
    if not isinstance(evoked, mne.Evoked):
        raise TypeError(f"evoked must be mne.Evoked, got {type(evoked).__name__}")
    picks = _eeg_picks(evoked.info)
    label = str(condition if condition is not None else (evoked.comment or "unknown"))
    return xr.DataArray(
        evoked.data[picks][None] * _UV,
        dims=("condition", "channel", "time"),
        coords={"condition": [label], "channel": [evoked.ch_names[i] for i in picks],
                "time": _time_coord(evoked.times), "n_epochs": ("condition", [int(evoked.nave)])},
        name="erp",
        attrs={"units": "µV", "sfreq": float(evoked.info["sfreq"]), "subject": subject or "", "preprocessing": None},
    )  # fmt: skip


# ----------------------------------------------------------------------------- components


def _check_windows(windows: Any) -> dict[str, tuple[float, float]]:
    if not isinstance(windows, Mapping) or not windows:
        raise ValueError(f"windows must be a non-empty mapping name -> (tmin, tmax) in s, got {windows!r}")
    out = {}
    for name, win in windows.items():
        try:
            lo, hi = (float(v) for v in win)
        except (TypeError, ValueError) as err:
            raise ValueError(f"window {name!r} must be (tmin, tmax) in s, got {win!r}") from err
        if not lo < hi:
            raise ValueError(f"window {name!r}: tmin ({lo} s) must be below tmax ({hi} s)")
        out[str(name)] = (lo, hi)
    return out


def _check_rois(channels: Any, available: Sequence[str]) -> dict[str, list[str]]:
    if channels is None:
        rois: Mapping[str, Any] = DEFAULT_ROIS
    elif isinstance(channels, str):
        rois = {channels: [channels]}
    elif isinstance(channels, Mapping):
        rois = channels
    elif isinstance(channels, Sequence):
        rois = {"+".join(str(c) for c in channels): list(channels)}
    else:
        raise ValueError(f"channels must be a channel name, a list (one ROI) or a dict name -> list, got {channels!r}")
    out = {}
    avail = set(available)
    for name, chs in rois.items():
        chs = [chs] if isinstance(chs, str) else [str(c) for c in chs]
        if not chs:
            raise ValueError(f"ROI {name!r} has no channel")
        missing = [c for c in chs if c not in avail]
        if missing:
            raise ValueError(f"ROI {name!r}: channel(s) {missing} not in the data")
        out[str(name)] = chs
    return out


def measure_components(
    data: mne.BaseEpochs | xr.DataArray,
    windows: Mapping[str, tuple[float, float]] | None = None,
    channels: str | Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    *,
    kind: Literal["mean", "peak"] = "mean",
    polarity: Literal["positive", "negative", "absolute"] = "positive",
    metadata: pd.DataFrame | None = None,
    carry: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Measure ERP components: mean amplitude, or peak amplitude and latency, in windows.

    The waveform of an ROI is the mean over its channels; the measure is
    taken in the closed window ``[tmin, tmax]`` of each component.

    Parameters
    ----------
    data : mne.BaseEpochs | xarray.DataArray
        Trial level: :class:`mne.Epochs` (with ``metadata``) or an ``(epoch,
        channel, time)`` array from :func:`epochs_to_dataarray` (µV).
        Averages: an evoked array ``(condition, channel, time)`` or group array
        ``(subject, condition, channel, time)`` (µV).
    windows : mapping of str to (float, float) | None
        Component name -> window (s). None: :data:`DEFAULT_WINDOWS` (P3,
        0.3-0.5 s).
    channels : str | sequence of str | mapping | None
        One channel, one ROI (list, averaged), or ROI name -> channels.
        None: :data:`DEFAULT_ROIS` (CP1 CPZ CP2 P1 PZ P2).
    kind : {"mean", "peak"}
        ``"mean"``: mean amplitude over the window (robust to noise, Luck
        2014); ``"peak"``: extreme value and its latency.
    polarity : {"positive", "negative", "absolute"}
        Peak sought (``kind="peak"``): maximum, minimum or largest absolute value.
    metadata : pandas.DataFrame | None
        Epoch metadata for Epochs input (see :func:`epochs_to_dataarray`).
    carry : sequence of str | None
        Metadata columns copied to every row; None: :data:`CARRY_COLUMNS`
        present plus every ``emg_*`` column (facial-EMG covariates).

    Returns
    -------
    table : pandas.DataFrame
        One row per epoch (or subject x condition) x window x ROI: the carried
        columns (trial level) or ``subject``/``condition``, then
        ``component``, ``tmin_s``, ``tmax_s``, ``roi``, ``channels``
        (comma list), ``kind``, ``amplitude_uv`` (µV), ``latency_s`` (s; NaN
        for mean amplitude), ``n_samples`` (samples in the window).

    Raises
    ------
    ValueError
        On an empty or invalid window, a window with no sample, unknown
        channels, or an unsupported array layout.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.arange(6.0).reshape(1, 1, 6), dims=("condition", "channel", "time"),
    ...                   coords={"condition": ["ME"], "channel": ["PZ"], "time": np.arange(6) * 0.1})
    >>> measure_components(da, {"w": (0.1, 0.3)}, "PZ")["amplitude_uv"].tolist()
    [2.0]
    """
    windows = _check_windows(DEFAULT_WINDOWS if windows is None else windows)
    if kind not in ("mean", "peak"):
        raise ValueError(f"kind must be 'mean' or 'peak', got {kind!r}")
    if polarity not in ("positive", "negative", "absolute"):
        raise ValueError(f"polarity must be 'positive', 'negative' or 'absolute', got {polarity!r}")
    if isinstance(data, mne.BaseEpochs):
        da = epochs_to_dataarray(data, metadata)
    elif isinstance(data, xr.DataArray):
        da = data
    else:
        raise TypeError(f"data must be mne.Epochs or an xarray.DataArray, got {type(data).__name__}")
    if "channel" not in da.dims or "time" not in da.dims:
        raise ValueError(f"data must have 'channel' and 'time' dims, got {da.dims}")
    units = [d for d in da.dims if d not in ("channel", "time")]
    bad = [d for d in units if d not in ("epoch", "subject", "condition")]
    if bad or ("epoch" in units and len(units) > 1):
        raise ValueError(f"unsupported dims {da.dims}: use (epoch, channel, time) or ([subject,] [condition,] channel, time)")
    rois = _check_rois(channels, [str(c) for c in da["channel"].values])
    da = da.transpose(*units, "channel", "time")
    t = np.asarray(da["time"].values, dtype=float)
    values = np.asarray(da.values, dtype=float).reshape(-1, da.sizes["channel"], t.size)
    ch_index = {str(c): i for i, c in enumerate(da["channel"].values)}

    # identifying columns of each unit (row of `values`)
    if "epoch" in units:
        base = _trial_columns(da, metadata if isinstance(data, xr.DataArray) else None, carry)
    else:
        grids = np.meshgrid(*[np.asarray(da[d].values).astype(str) for d in units], indexing="ij") if units else []
        base = pd.DataFrame({d: g.ravel() for d, g in zip(units, grids, strict=True)}) if units else pd.DataFrame(index=[0])

    parts = []
    eps = 1e-9
    for comp, (lo, hi) in windows.items():
        sel = (t >= lo - eps) & (t <= hi + eps)
        if not sel.any():
            raise ValueError(f"window {comp!r} ({lo}-{hi} s) holds no sample of the data ({t[0]:.3f}-{t[-1]:.3f} s)")
        tw = t[sel]
        for roi, chs in rois.items():
            wave = values[:, [ch_index[c] for c in chs], :].mean(axis=1)[:, sel]
            if kind == "mean":
                amp = wave.mean(axis=1)
                lat = np.full(amp.shape, np.nan)
            else:
                score = wave if polarity == "positive" else -wave if polarity == "negative" else np.abs(wave)
                finite = np.isfinite(score).any(axis=1)
                k = np.argmax(np.where(np.isfinite(score), score, -np.inf), axis=1)
                amp = np.where(finite, wave[np.arange(wave.shape[0]), k], np.nan)
                lat = np.where(finite, tw[k], np.nan)
            part = base.copy()
            part["component"] = comp
            part["tmin_s"] = lo
            part["tmax_s"] = hi
            part["roi"] = roi
            part["channels"] = ",".join(chs)
            part["kind"] = kind if kind == "mean" else f"peak_{polarity}"
            part["amplitude_uv"] = amp
            part["latency_s"] = np.round(lat, _TIME_DECIMALS)
            part["n_samples"] = int(sel.sum())
            parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _trial_columns(
    da: xr.DataArray,
    md_arg: pd.DataFrame | None,
    carry: Sequence[str] | None,
) -> pd.DataFrame:
    """Per-epoch identifying and covariate columns of a trial-level array."""
    n = da.sizes["epoch"]
    if md_arg is not None:
        if len(md_arg) != n:
            raise ValueError(f"metadata has {len(md_arg)} rows for {n} epochs")
        md = md_arg.reset_index(drop=True)
    else:
        md = pd.DataFrame({name: np.asarray(c.values) for name, c in da.coords.items()
                           if c.dims == ("epoch",) and name != "epoch"})  # fmt: skip
        md.insert(0, "epoch_id", np.asarray(da["epoch"].values))
    if carry is None:
        cols = [c for c in CARRY_COLUMNS if c in md.columns] + sorted(c for c in md.columns if c.startswith("emg_"))
    else:
        cols = [str(c) for c in carry]
        missing = [c for c in cols if c not in md.columns]
        if missing:
            raise ValueError(f"carry column(s) {missing} not in the metadata; columns: {list(md.columns)}")
    return md[cols].reset_index(drop=True).copy()


# ----------------------------------------------------------------------------- contrasts


def contrast(evoked: xr.DataArray, a: str = "ME", b: str = "MaE") -> xr.DataArray:
    """Difference wave ``a - b`` of an evoked or group array.

    Parameters
    ----------
    evoked : xarray.DataArray
        Array with a ``condition`` dim (e.g. from :func:`stack_subjects`), µV.
    a, b : str
        Minuend and subtrahend conditions.

    Returns
    -------
    diff : xarray.DataArray
        ``evoked.sel(condition=a) - evoked.sel(condition=b)`` without the
        ``condition`` dim, named ``"a-b"``, ``attrs["contrast"] = "a-b"``;
        NaN where either condition is missing.
    """
    if not isinstance(evoked, xr.DataArray) or "condition" not in evoked.dims:
        raise ValueError("evoked must be a DataArray with a 'condition' dim")
    labels = [str(c) for c in evoked["condition"].values]
    a, b = str(a), str(b)
    missing = [c for c in (a, b) if c not in labels]
    if missing:
        raise ValueError(f"condition(s) {missing} not in {labels}")
    if a == b:
        raise ValueError(f"contrast compares {a!r} with itself")
    diff = evoked.sel(condition=a, drop=True) - evoked.sel(condition=b, drop=True)
    diff = diff.drop_vars([c for c in ("n_epochs",) if c in diff.coords])
    diff.name = f"{a}-{b}"
    diff.attrs = {**evoked.attrs, "contrast": f"{a}-{b}"}
    return diff


# ----------------------------------------------------------------------------- pipeline step


def first_level(session: Any, config: Config, *, windows: Mapping[str, tuple[float, float]] | None = None,
                rois: Mapping[str, Sequence[str]] | None = None, clean: Mapping[str, Any] | None = None,
                ) -> dict[str, Any]:  # fmt: skip
    """One session's ERP step for :func:`mmme_neuro.pipeline.run_subjects`.

    Epochs ME, MaE and NE with preprocessing and EMG measures
    (:func:`mmme_neuro.epochs.epochs_from_session`), equalises the counts
    when ``epochs.equalize_counts`` is set, averages per condition
    (:func:`compute_evoked`) and measures the components per epoch
    (:func:`measure_components`, mean and peak).

    Parameters
    ----------
    session : Session
        One subject's BIDS session (:func:`mmme_neuro.dataset.iter_sessions`).
    config : Config
        Configuration (epochs, preprocessing, seed).
    windows, rois : mapping | None
        Component windows (s) and regions of interest; None: :data:`DEFAULT_WINDOWS`, :data:`DEFAULT_ROIS`.
    clean : mapping | None
        Preprocessed epochs shared with the other analyses
        (:func:`mmme_neuro.epochs.first_level`, as :func:`mmme_neuro.steps.upstream`
        passes them); cropped to the window this step needs. None: epoch and
        preprocess the session here.

    Returns
    -------
    result : dict
        ``evoked`` (``(condition, channel, time)``, µV), ``epochs`` (every
        planned epoch, kept or rejected with its reason; without the AU lists)
        and ``components`` (one row per epoch x window x ROI x measure); with
        ``emg_matching.method`` not ``"off"`` also ``evoked_emg_matched``:
        the ME and MaE averages of the EMG-matched epochs only
        (:func:`mmme_neuro.matching.match_emg` on this subject's kept epochs;
        ``n_epochs`` counts them). Only averages are stored, so the matched
        ones are computed here, where the epochs are; the group level repeats
        the (deterministic) matching on the stored metadata for its report.
    """
    if clean is None:
        epochs, md = epochs_from_session(session, config)
    else:
        epochs, md = from_clean(clean, config.epochs.tmin, config.epochs.tmax)
    if config.epochs.equalize_counts:
        present = tuple(c for c in CONDITIONS if (md.loc[md["kept"], "condition"] == c).any())
        if len(present) >= 2:
            md, _ = equalize_counts(md, present, config.seed)
    evoked = compute_evoked(epochs, md, conditions=CONDITIONS, subject=session.subject)
    out: dict[str, Any] = {}
    options = matching_options(config)
    if options is not None:
        matched = match_emg(md, **options).apply(md)
        out["evoked_emg_matched"] = compute_evoked(
            epochs, matched, conditions=MATCHED_CONDITIONS, subject=session.subject
        )
    trials = epochs_to_dataarray(epochs, md)
    del epochs
    windows = dict(DEFAULT_WINDOWS if windows is None else windows)
    rois = dict(DEFAULT_ROIS if rois is None else rois)
    comps = [measure_components(trials, windows, rois, kind=k) for k in ("mean", "peak")]
    table = bookkeeping_table(md)
    components = pd.concat(comps, ignore_index=True)
    return {"evoked": evoked, "epochs": table, "components": components, **out}
