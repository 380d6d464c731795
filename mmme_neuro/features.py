"""Per-epoch features of every modality in one tidy table, for decoding and brain-body analyses.

One row per epoch (ME, MaE, NE), identified by ``epoch_id`` and by
``event_key``, the key shared with the physiology events of the same moment
(``expression_id`` for expressions, ``"NE:" + matched_expression_id`` for the
no-expression controls, drawn at the same moments in both modalities, see
:func:`mmme_neuro.physio.session_events`). Feature columns are named
``<set>__<what>__<where>`` so that a feature set is a column prefix:

``eeg_psd``
    The MMME authors' band power: mean periodogram over each band's bins in
    ``decoding.feature_window`` (0-1 s after onset), per channel, as
    ``log10(µV²/Hz)`` (log: power is right-skewed, linear classifiers and
    ANOVA selection want roughly normal features).
``eeg_erp``
    Mean amplitude (µV, baseline-corrected epochs) in consecutive
    ``decoding.erp_window_step`` windows from 0.1 s to the end of the feature
    window, per channel.
``eeg_nodal``
    Nodal-efficiency AUC over the configured densities of each epoch's
    within-epoch PLV network, per band and node
    (:func:`mmme_neuro.netanalysis.epoch_networks`).
``physio``
    Event-related physiology (:func:`mmme_neuro.physio.event_features`):
    heart-rate change and peak, SCR occurrence/magnitude, phasic EDA change,
    respiration amplitude and rate change. NaN where the signal's window was
    of poor quality (the decoder imputes inside the training fold).
``emg``
    The facial-EMG measures of the epoch (EMG channel RMS, 30-100 Hz
    temporal power; :func:`mmme_neuro.epochs.emg_measures`). Never part of
    the ``eeg`` sets: decoded on its own it shows how much of an EEG result
    the muscle confound could explain.

:func:`session_features` computes all of them for one BIDS session from a
single epoching pass (the network analysis' long epochs, which contain every
window), plus the decimated epoch time series for time-resolved decoding.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mne
import numpy as np
import pandas as pd
import xarray as xr

from . import epochs as ep_mod
from . import netanalysis as na
from . import physio as ph
from .config import Config
from .tfr import periodogram_band_power

__all__ = [
    "FEATURE_SETS",
    "ID_COLUMNS",
    "PHYSIO_FEATURES",
    "SessionFeatures",
    "band_power_features",
    "emg_prone_columns",
    "epoch_index",
    "erp_window_features",
    "event_keys",
    "feature_columns",
    "first_level",
    "nodal_efficiency_features",
    "physio_features",
    "session_features",
    "time_series",
]

logger = logging.getLogger(__name__)

#: Bookkeeping columns of a feature table (not features).
ID_COLUMNS: tuple[str, ...] = ("epoch_id", "event_key", "subject", "condition", "expression_id",
                               "matched_expression_id", "clip_emotion", "emotion")  # fmt: skip
#: Feature sets (column prefixes) and composite sets.
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "eeg_psd": ("eeg_psd",),
    "eeg_erp": ("eeg_erp",),
    "eeg_nodal": ("eeg_nodal",),
    "eeg": ("eeg_psd", "eeg_erp", "eeg_nodal"),
    "physio": ("physio",),
    "emg": ("emg",),
    "eeg+physio": ("eeg_psd", "eeg_erp", "eeg_nodal", "physio"),
}
#: Event-related physiology columns used as features.
PHYSIO_FEATURES: tuple[str, ...] = ("hr_change_bpm", "hr_peak_change_bpm", "hr_peak_latency_s", "scr_occurred",
                                    "scr_magnitude_us", "eda_phasic_change_us", "rsp_amplitude_change",
                                    "rsp_rate_change_bpm")  # fmt: skip
#: EMG columns of the epoch metadata used as the ``emg`` set.
EMG_FEATURES: tuple[str, ...] = ("emg_rms_uv", "emg_temporal_power")


def event_keys(condition: Sequence[str], expression_id: Sequence[Any], matched_expression_id: Sequence[Any]) -> list[str]:
    """Key shared by an EEG epoch and the physiology event of the same moment.

    Expressions: their ``expression_id``; NE controls: ``"NE:"`` + the id of
    the expression they are matched to (one NE per expression).
    """
    out = []
    for c, e, m in zip(condition, expression_id, matched_expression_id, strict=True):
        out.append(f"NE:{m}" if c == "NE" else str(e))
    return out


def _kept_md(epochs: mne.BaseEpochs) -> pd.DataFrame:
    md = epochs.metadata
    if md is None or "epoch_id" not in md.columns:
        raise ValueError("epochs need metadata with 'epoch_id' (mmme_neuro.epochs.make_epochs)")
    return md.reset_index(drop=True)


def epoch_index(epochs: mne.BaseEpochs) -> pd.DataFrame:
    """Bookkeeping columns (:data:`ID_COLUMNS`) and EMG features (``emg__*``) of the epochs."""
    md = _kept_md(epochs)
    out = pd.DataFrame({c: md[c].to_numpy() if c in md.columns else None for c in ID_COLUMNS if c != "event_key"})
    out["epoch_id"] = out["epoch_id"].astype(str)
    out.insert(1, "event_key", event_keys(md["condition"], md.get("expression_id", [None] * len(md)),
                                          md.get("matched_expression_id", [None] * len(md))))  # fmt: skip
    for c in EMG_FEATURES:
        out[f"emg__{c}"] = md[c].to_numpy(float) if c in md.columns else np.nan
    return out


def _window(times: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Boolean mask of ``[lo, hi)`` on the epoch times; a clear error if the window leaves the epochs."""
    lo, hi = float(window[0]), float(window[1])
    if lo < times[0] - 1e-9 or hi > times[-1] + 1e-9:
        raise ValueError(f"window {lo:g}..{hi:g} s is outside the epochs ({times[0]:g}..{times[-1]:g} s)")
    return (times >= lo - 1e-9) & (times < hi - 1e-9)


def _eeg_uv(epochs: mne.BaseEpochs) -> np.ndarray:
    """EEG data of all epochs in µV, read once per feature function (``(epoch, channel, time)``)."""
    return epochs.get_data(picks=mne.pick_types(epochs.info, eeg=True, exclude=[])) * 1e6


def _eeg_names(epochs: mne.BaseEpochs) -> list[str]:
    return [epochs.ch_names[i] for i in mne.pick_types(epochs.info, eeg=True, exclude=[])]


def band_power_features(epochs: mne.BaseEpochs, bands: Mapping[str, tuple[float, float]],
                        window: tuple[float, float] = (0.0, 1.0)) -> pd.DataFrame:  # fmt: skip
    """Periodogram band power per epoch, band and EEG channel, ``log10(µV²/Hz)``.

    Parameters
    ----------
    epochs : mne.BaseEpochs
        Epochs with metadata (``epoch_id``), in V.
    bands : mapping
        Name -> (low, high) Hz.
    window : (float, float)
        Window (s) relative to the landmark; its length sets the frequency
        resolution (1 s -> 1 Hz, as the MMME authors).

    Returns
    -------
    table : pandas.DataFrame
        Index ``epoch_id``; columns ``eeg_psd__<band>__<channel>``.
    """
    x = _eeg_uv(epochs)[..., _window(epochs.times, window)]
    p = periodogram_band_power(x, float(epochs.info["sfreq"]), bands)  # (epoch, band, channel)
    with np.errstate(divide="ignore"):
        p = np.log10(p)
    names = _eeg_names(epochs)
    cols = [f"eeg_psd__{b}__{c}" for b in bands for c in names]
    return pd.DataFrame(p.reshape(len(p), -1), columns=cols, index=pd.Index(_kept_md(epochs)["epoch_id"].astype(str), name="epoch_id"))


def erp_window_features(epochs: mne.BaseEpochs, windows: Sequence[tuple[float, float]]) -> pd.DataFrame:
    """Mean amplitude (µV) per epoch, window and EEG channel.

    Returns
    -------
    table : pandas.DataFrame
        Index ``epoch_id``; columns ``eeg_erp__<lo>-<hi>ms__<channel>``.
    """
    names = _eeg_names(epochs)
    x = _eeg_uv(epochs)
    parts, cols = [], []
    for lo, hi in windows:
        parts.append(x[..., _window(epochs.times, (lo, hi))].mean(axis=-1))
        cols += [f"eeg_erp__{lo * 1000:.0f}-{hi * 1000:.0f}ms__{c}" for c in names]
    return pd.DataFrame(np.concatenate(parts, axis=1), columns=cols,
                        index=pd.Index(_kept_md(epochs)["epoch_id"].astype(str), name="epoch_id"))  # fmt: skip


def nodal_efficiency_features(per_epoch: xr.DataArray, config: Config) -> pd.DataFrame:
    """Nodal-efficiency AUC (over ``network`` densities) per epoch, band and node.

    Parameters
    ----------
    per_epoch : xarray.DataArray
        ``(epoch, band, node, node_other)`` from :func:`mmme_neuro.netanalysis.epoch_networks`.
    config : Config
        Densities.

    Returns
    -------
    table : pandas.DataFrame
        Index ``epoch_id``; columns ``eeg_nodal__<band>__<node>``.
    """
    ne = na.epoch_graph_metrics(per_epoch, config, ("nodal_efficiency",))["nodal_efficiency_auc"]
    ne = ne.transpose("epoch", "band", "node")
    cols = [f"eeg_nodal__{b}__{n}" for b in ne["band"].values for n in ne["node"].values]
    return pd.DataFrame(ne.values.reshape(ne.shape[0], -1), columns=cols,
                        index=pd.Index([str(e) for e in ne["epoch"].values], name="epoch_id"))  # fmt: skip


def physio_features(features: pd.DataFrame) -> pd.DataFrame:
    """Physiology features (``physio__*``) indexed by ``event_key``.

    Parameters
    ----------
    features : pandas.DataFrame
        :func:`mmme_neuro.physio.event_features` of ME, MaE and NE events.

    Returns
    -------
    table : pandas.DataFrame
        Index ``event_key``; one column per available :data:`PHYSIO_FEATURES`
        (float; booleans as 0/1). Events sharing a key (should not happen)
        keep the first, with a warning.
    """
    f = features[features["condition"].isin(["ME", "MaE", "NE"])]
    keys = pd.Index(event_keys(f["condition"], f["expression_id"], f["matched_expression_id"]), name="event_key")
    cols = [c for c in PHYSIO_FEATURES if c in f.columns]
    out = pd.DataFrame({f"physio__{c}": pd.to_numeric(f[c], errors="coerce").astype(float).to_numpy() for c in cols},
                       index=keys)  # fmt: skip
    if out.index.duplicated().any():
        logger.warning("physiology events with duplicated keys kept once: %s", sorted(set(out.index[out.index.duplicated()]))[:5])
        out = out[~out.index.duplicated()]
    return out


def feature_columns(table: pd.DataFrame, feature_set: str | Sequence[str]) -> list[str]:
    """Columns of ``table`` in a feature set (:data:`FEATURE_SETS` name or prefixes).

    Raises
    ------
    ValueError
        If the set is unknown or no column of the table belongs to it.
    """
    if isinstance(feature_set, str):
        if feature_set not in FEATURE_SETS:
            raise ValueError(f"unknown feature set {feature_set!r}; known: {sorted(FEATURE_SETS)}")
        prefixes = FEATURE_SETS[feature_set]
    else:
        prefixes = tuple(feature_set)
    cols = [c for c in table.columns if c.split("__", 1)[0] in prefixes and "__" in c]
    if not cols:
        raise ValueError(f"the feature table has no column of set {feature_set!r} (prefixes {list(prefixes)})")
    return cols


def emg_prone_columns(columns: Sequence[str], config: Config) -> list[str]:
    """EEG feature columns that facial EMG can produce on its own.

    Every EEG feature of the channels nearest the facial muscles
    (``emg.temporal_channels``) and the band power of every band reaching
    into the frequencies facial EMG contaminates (upper edge above
    ``emg.contamination_from_hz``, 20 Hz: beta and gamma). A
    decoder that still works without them does not owe its accuracy to the
    muscle artefact of the expression itself (MaE move more muscle than ME).

    Parameters
    ----------
    columns : sequence of str
        Feature-table columns.
    config : Config
        ``emg`` and ``bands``.

    Returns
    -------
    columns : list of str
        The EMG-prone subset, in input order.
    """
    chans = {c.upper() for c in config.emg.temporal_channels}
    bands = {b for b, (_, hi) in config.bands.items() if hi > config.emg.contamination_from_hz}
    out = []
    for c in columns:
        parts = c.split("__")
        if len(parts) != 3 or not parts[0].startswith("eeg_"):
            continue
        if parts[2].upper() in chans or (parts[0] == "eeg_psd" and parts[1] in bands):
            out.append(c)
    return out


def time_series(epochs: mne.BaseEpochs, window: tuple[float, float], sfreq: float) -> xr.DataArray:
    """Epoch time series for time-resolved decoding, bin-averaged to ``sfreq``.

    Consecutive samples are averaged in bins of ``round(epochs_sfreq / sfreq)``
    (a boxcar low-pass before the sampling, so nothing above the new Nyquist
    frequency aliases in at full strength as with plain decimation).

    Returns
    -------
    data : xarray.DataArray
        ``(epoch, channel, time)`` in µV, ``time`` = bin centres (s).
    """
    x = _eeg_uv(epochs)[..., _window(epochs.times, window)]
    sf = float(epochs.info["sfreq"])
    k = max(1, int(round(sf / float(sfreq))))
    n = x.shape[-1] // k
    x = x[..., : n * k].reshape(*x.shape[:-1], n, k).mean(axis=-1)
    t0 = epochs.times[np.flatnonzero(epochs.times >= window[0] - 1e-9)[0]]
    times = t0 + (np.arange(n) * k + (k - 1) / 2) / sf
    md = _kept_md(epochs)
    out = xr.DataArray(x.astype(np.float32), dims=("epoch", "channel", "time"),
                       coords={"epoch": md["epoch_id"].astype(str).to_numpy(), "channel": _eeg_names(epochs),
                               "time": np.round(times, 6)},
                       name="eeg", attrs={"units": "µV", "sfreq": sf / k})  # fmt: skip
    out["time"].attrs["units"] = "s"
    return out


@dataclass
class SessionFeatures:
    """Per-epoch features and time series of one session.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per kept epoch: :data:`ID_COLUMNS` then feature columns.
    series : xarray.DataArray | None
        ``(epoch, channel, time)`` (µV) for time-resolved decoding.
    epochs : pandas.DataFrame
        Metadata of every planned epoch (kept or rejected, with its reason).
    physio_status : str
        ``"ok"`` or why the physiology features are missing.
    """

    table: pd.DataFrame
    series: xr.DataArray | None
    epochs: pd.DataFrame
    physio_status: str


def _erp_windows(config: Config) -> list[tuple[float, float]]:
    step = config.decoding.erp_window_step
    end = config.decoding.feature_window[1]
    edges = np.round(np.arange(0.1, end + 1e-9, step), 6)
    return [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def session_features(session: Any, config: Config, *, physio: bool = True, series: bool = True,
                     clean: Mapping[str, Any] | None = None) -> SessionFeatures:  # fmt: skip
    """All per-epoch features of one BIDS session (one epoching pass).

    Parameters
    ----------
    session : BidsSession
        From :func:`mmme_neuro.dataset.iter_sessions` (EEG, expressions,
        clips; physiology when ``physio``).
    config : Config
        Bands, epochs, preprocessing, network densities and ``decoding``
        windows. Epochs are cut as for the network analysis
        (:func:`mmme_neuro.netanalysis.network_config`), which contains every
        feature window.
    physio : bool
        Add the ``physio`` features (if the session has physiology).
    series : bool
        Return the time series for time-resolved decoding.
    clean : mapping | None
        Preprocessed epochs shared with the other analyses
        (:func:`mmme_neuro.epochs.first_level`, as :func:`mmme_neuro.steps.upstream`
        passes them); cropped to the window this step needs. None: epoch and
        preprocess the session here.

    Returns
    -------
    SessionFeatures
    """
    cfg = na.network_config(config)
    if clean is None:
        epochs, md = ep_mod.epochs_from_session(session, cfg)
        planned = cfg
    else:
        epochs, md = ep_mod.from_clean(clean, cfg.epochs.tmin, cfg.epochs.tmax)
        planned = ep_mod.planned_config(clean, config)
    if len(epochs) == 0:
        raise ValueError(f"{session.subject}: no kept epochs")
    dec = config.decoding
    table = epoch_index(epochs).set_index("epoch_id")
    parts = [band_power_features(epochs, config.bands, dec.feature_window),
             erp_window_features(epochs, _erp_windows(config)),
             nodal_efficiency_features(na.epoch_networks(epochs, cfg), config)]  # fmt: skip
    table = table.join(parts, how="left")
    status = "not requested"
    if physio:
        if not session.has_physio:
            status = "no physiology"
        else:
            # NE controls drawn with the window the EEG epochs were planned with: the same moments
            processed, info, events = ph.process_session(session, planned, clips=False)
            pf = physio_features(ph.event_features(processed, info, events))
            table = table.join(pf, on="event_key", how="left")
            status = "ok"
    if physio and status != "ok":
        logger.warning("%s: physiology features missing (%s)", session.subject, status)
    ts = time_series(epochs, dec.time_window, dec.time_sfreq) if series else None
    keep = ep_mod.bookkeeping_table(md)
    return SessionFeatures(table.reset_index(), ts, keep, status)


def first_level(session: Any, config: Config, *, clean: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """:func:`session_features` as a first-level result for :func:`mmme_neuro.pipeline.run_subjects`.

    Parameters
    ----------
    session : BidsSession
        One subject's BIDS session.
    config : Config
        Configuration.
    clean : mapping | None
        Preprocessed epochs shared with the other analyses
        (:func:`mmme_neuro.epochs.first_level`, as :func:`mmme_neuro.steps.upstream`
        passes them); cropped to the window this step needs. None: epoch and
        preprocess the session here.

    Returns
    -------
    result : dict
        ``table`` (features), ``series`` (time series) and ``epochs`` (bookkeeping of every planned epoch).
    """
    f = session_features(session, config, clean=clean)
    return {"table": f.table, "series": f.series, "epochs": f.epochs}
