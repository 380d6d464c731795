"""Functional-network analysis of ME vs MaE vs NE: subject networks, graph metrics, statistics.

The analysis half of the network pipeline (Zhao et al. 2022, 2024; Chen et
al. 2025), composed of one function per step on top of the estimators of
:mod:`mmme_neuro.connectivity` and the graph metrics of
:mod:`mmme_neuro.network`:

1. :func:`epoch_networks` - within-epoch PLV of every epoch and band in the
   post-onset window (default 0-1.2 s), ``(epoch, band, node, node_other)``;
2. :func:`condition_networks` / :func:`subject_connectivity` - the mean over
   the (count-equalised) epochs of each condition,
   ``(condition, band, node, node_other)``; :func:`stack_subjects` -
   ``(subject, condition, band, node, node_other)``;
3. :func:`subject_graph_metrics` - binarised proportional thresholds over
   the configured densities (5-50 %), nodal efficiency, global efficiency,
   clustering, path length and their area under the density curve (AUC);
   :func:`trial_metric_table` - the same per epoch, for mixed models with
   EMG covariates;
4. statistics: :func:`nodal_contrasts` (per-node paired sign-flip
   permutation tests of nodal-efficiency AUC, max-stat and FDR),
   :func:`network_based_statistic` (NBS of Zalesky et al. 2010 on edges),
   :func:`global_contrasts` (paired tests of global metrics with effect sizes).

Wavelet cycles (why not the connectivity default)
-------------------------------------------------
:func:`mmme_neuro.connectivity.epoch_connectivity` defaults to ``n_cycles =
f / 2`` (sigma_f = 2 Hz). Its theta wavelet at 7.6 Hz then passes a 10 Hz
(alpha) coupling at exp(-(2.4/2)^2 / 2) = 49 % amplitude, so an alpha effect
shows up in theta too. This module uses :data:`N_CYCLES_PER_HZ` = 1 cycle per
Hz (``n_cycles = f``): sigma_f = 1 Hz and sigma_t = 1 / (2 pi) s = 159 ms at
every frequency; the 7.6 Hz wavelet passes 10 Hz at 5.6 % (and 9 Hz at 37 %,
so a coupling that reaches into the lower alpha edge still leaks a little).
The price is time resolution (a window of 1.2 s holds ~7.5 sigma_t) and
padding: the coefficients in the window are free of edge effects only with
5 sigma_t = 0.80 s of data on both sides (:func:`required_epoch_tmax`), so
the analysis cuts epochs to -1.0..2.0 s (:func:`network_config`).

Sample-count bias
-----------------
Within-epoch PLV (the field's default) averages the phase differences of
the N time samples of one epoch's window. N is the same for every epoch of
every condition (same window, same sampling rate), so the upward bias of
PLV (``~ sqrt(pi / 4N)`` for independent phases) is the same constant in ME,
MaE and NE epochs and cancels in their contrast: the epoch count of a
condition changes how precisely its mean is known, not its expectation.
Counts are nevertheless equalised across conditions (seeded random subsets,
:func:`mmme_neuro.epochs.equalize_counts`) so that every condition's network
is equally noisy, which matters for thresholded graphs (a noisier mean
matrix has a different rank order of edges). The alternative is across-epoch
PPC (``method="ppc_across"``, Vinck et al. 2010): phase consistency over the
epochs of a condition, unbiased whatever their number.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import mne
import numpy as np
import pandas as pd
import xarray as xr
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from . import connectivity as conn_mod
from . import epochs as ep_mod
from . import network as net_mod
from ._utils import atomic_path
from .config import Config
from .containers import provenance
from .stats import node_permutation_test, paired_test

__all__ = [
    "CONDITIONS",
    "GLOBAL_MEASURES",
    "NBSResult",
    "N_CYCLES_PER_HZ",
    "condition_networks",
    "epoch_graph_metrics",
    "epoch_metric_means",
    "epoch_networks",
    "first_level",
    "from_connectivity",
    "global_contrasts",
    "global_table",
    "nbs_core",
    "network_based_statistic",
    "network_config",
    "nodal_contrasts",
    "required_epoch_tmax",
    "stack_subjects",
    "subject_connectivity",
    "subject_graph_metrics",
    "to_connectivity",
    "trial_metric_table",
    "write_connectivity_derivatives",
]

logger = logging.getLogger(__name__)

#: Conditions of the network analysis.
CONDITIONS: tuple[str, ...] = ("ME", "MaE", "NE")
#: Post-onset analysis window (s) relative to the expression onset.
DEFAULT_WINDOW: tuple[float, float] = (0.0, 1.2)
#: Wavelet cycles per Hz of the analysis (n_cycles = f: sigma_f = 1 Hz, sigma_t = 159 ms).
N_CYCLES_PER_HZ: float = 1.0
#: Graph metrics of the subject networks.
SUBJECT_METRICS: tuple[str, ...] = (
    "nodal_efficiency", "global_efficiency", "characteristic_path_length", "clustering", "mean_clustering",
)  # fmt: skip
#: Global measures (AUC over densities) tested between conditions.
GLOBAL_MEASURES: tuple[str, ...] = ("global_efficiency_auc", "mean_clustering_auc", "characteristic_path_length_auc")

Method = Literal["plv", "ppc", "wpli", "coh", "ppc_across"]


# --------------------------------------------------------------------------- configuration helpers


def analysis_n_cycles(freqs: np.ndarray) -> np.ndarray:
    """Wavelet cycles of the analysis: :data:`N_CYCLES_PER_HZ` x f (f in Hz)."""
    return N_CYCLES_PER_HZ * np.asarray(freqs, dtype=float)


def required_epoch_tmax(config: Config, window: tuple[float, float] = DEFAULT_WINDOW) -> float:
    """Epoch end (s) that leaves the wavelets' full support (5 sigma_t) after ``window``.

    Parameters
    ----------
    config : Config
        Bands (Hz).
    window : (float, float)
        Analysis window (s) relative to the landmark.

    Returns
    -------
    tmax : float
        ``window[1]`` + the largest padding of :func:`mmme_neuro.connectivity.required_padding`
        with :func:`analysis_n_cycles`, rounded up to 0.1 s.
    """
    pad = max(conn_mod.required_padding(config.bands, n_cycles=analysis_n_cycles).values())
    return float(np.ceil((window[1] + pad) * 10 - 1e-9) / 10)


def network_config(config: Config, window: tuple[float, float] = DEFAULT_WINDOW) -> Config:
    """Return ``config`` with epochs long enough for the network analysis.

    ``epochs.tmax`` is raised to :func:`required_epoch_tmax` (2.0 s for the
    default bands and window) and ``epochs.tmin`` lowered, if needed, to
    ``window[0]`` minus the same padding; nothing else changes.

    Parameters
    ----------
    config : Config
        Effective configuration.
    window : (float, float)
        Analysis window (s).

    Returns
    -------
    config : Config
        A (possibly) modified copy.
    """
    _check_window(window)
    pad = max(conn_mod.required_padding(config.bands, n_cycles=analysis_n_cycles).values())
    tmax = max(config.epochs.tmax, required_epoch_tmax(config, window))
    tmin = min(config.epochs.tmin, float(np.floor((window[0] - pad) * 10 + 1e-9) / 10))
    if (tmin, tmax) == (config.epochs.tmin, config.epochs.tmax):
        return config
    logger.info("network analysis: epochs %.2f..%.2f s (wavelet padding %.3f s)", tmin, tmax, pad)
    return config.model_copy(update={"epochs": config.epochs.model_copy(update={"tmin": tmin, "tmax": tmax})})


def _check_window(window: Sequence[float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(f"window must be (start, stop) in s, got {window!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"window must satisfy start < stop (s), got {window!r}")
    return lo, hi


# --------------------------------------------------------------------------- subject networks


def epoch_networks(
    epochs: mne.BaseEpochs,
    config: Config,
    *,
    window: tuple[float, float] = DEFAULT_WINDOW,
    method: str | None = None,
    subject: str | None = None,
) -> xr.DataArray:
    """Within-epoch connectivity of every epoch and band (one network per epoch).

    Parameters
    ----------
    epochs : mne.BaseEpochs
        Kept epochs of one session with ``metadata`` (``epoch_id``,
        ``condition``), e.g. from :func:`mmme_neuro.epochs.epochs_from_session`
        with :func:`network_config`. EEG channels are the nodes.
    config : Config
        Bands (Hz), ``network.method`` (default estimator).
    window : (float, float)
        Analysis window (s) relative to the landmark; the rest of the epoch is
        wavelet padding.
    method : {'plv', 'ppc', 'wpli', 'coh'} | None
        Within-epoch estimator; None: ``config.network.method`` (PLV).
    subject : str | None
        Subject label (default: ``metadata["subject"]``).

    Returns
    -------
    conn : xarray.DataArray
        Dims ``(epoch, band, node, node_other)``, epoch = ``epoch_id``, with
        coordinates ``condition`` and ``subject`` along ``epoch``; wavelet
        cycles :func:`analysis_n_cycles` (see the module Notes).
    """
    lo, hi = _check_window(window)
    method = config.network.method if method is None else method
    md = epochs.metadata
    if md is None or not {"epoch_id", "condition"} <= set(md.columns):
        raise ValueError("epochs need metadata with 'epoch_id' and 'condition' (make_epochs)")
    if len(epochs) == 0:
        raise ValueError("no epochs")
    picks = mne.pick_types(epochs.info, eeg=True, exclude=[])
    data = epochs.get_data(picks=picks)
    channels = [epochs.ch_names[i] for i in picks]
    arr, info = conn_mod.epoch_connectivity(
        data, float(epochs.info["sfreq"]), config.bands, method=method, tmin=lo, tmax=hi,
        t0=float(epochs.times[0]), n_cycles=analysis_n_cycles, return_info=True,
    )  # fmt: skip
    subj = subject if subject is not None else [str(s) for s in md.get("subject", pd.Series(["?"] * len(md)))]
    return conn_mod.connectivity_dataarray(
        arr, channels=channels, bands=config.bands, method=method, epoch_ids=[str(e) for e in md["epoch_id"]],
        subject=subj, condition=[str(c) for c in md["condition"]], info=info, config=config,
        window_s=[lo, hi], n_cycles_rule=f"{N_CYCLES_PER_HZ:g} x f",
    )  # fmt: skip


def condition_networks(
    per_epoch: xr.DataArray,
    config: Config,
    *,
    conditions: Sequence[str] = CONDITIONS,
    equalize: bool = True,
    metadata: pd.DataFrame | None = None,
) -> xr.DataArray:
    """Average per-epoch networks over the epochs of each condition, counts equalised.

    Parameters
    ----------
    per_epoch : xarray.DataArray
        Output of :func:`epoch_networks` (one subject).
    config : Config
        ``seed`` of the equalisation draw.
    conditions : sequence of str
        Conditions kept; those without epochs are NaN.
    equalize : bool
        Average the same number of epochs (the smallest count among the
        present conditions; a seeded random subset of each,
        :func:`mmme_neuro.epochs.equalize_counts`).
    metadata : pandas.DataFrame | None
        Epoch metadata (``epoch_id``, ``subject``, ``condition``, ``kept``);
        epochs whose ``kept`` is False are left out. None: all epochs of
        ``per_epoch`` are kept.

    Returns
    -------
    conn : xarray.DataArray
        Dims ``(condition, band, node, node_other)``, coordinate ``n_epochs``
        along ``condition``.
    """
    ids = [str(e) for e in per_epoch["epoch"].values]
    cond = [str(c) for c in per_epoch["condition"].values]
    subj = [str(s) for s in per_epoch["subject"].values] if "subject" in per_epoch.coords else ["?"] * len(ids)
    md = pd.DataFrame({"epoch_id": ids, "subject": subj, "condition": cond, "kept": True})
    if metadata is not None:
        ok = set(metadata.loc[metadata["kept"].astype(bool), "epoch_id"].astype(str))
        md["kept"] = md["epoch_id"].isin(ok)
    present = tuple(c for c in conditions if ((md["condition"] == c) & md["kept"]).any())
    if equalize and len(present) >= 2:
        md, _ = ep_mod.equalize_counts(md, present, int(config.seed))
    out, counts = [], []
    for c in conditions:
        sel = ((md["condition"] == c) & md["kept"]).to_numpy()
        counts.append(int(sel.sum()))
        if sel.any():
            out.append(per_epoch.isel(epoch=np.flatnonzero(sel)).mean("epoch"))
        else:
            out.append(xr.full_like(per_epoch.isel(epoch=0, drop=True), np.nan))
    res = xr.concat([o.drop_vars([v for v in ("subject", "condition", "epoch") if v in o.coords]) for o in out],
                    dim=pd.Index(list(conditions), name="condition"))  # fmt: skip
    res = res.assign_coords(n_epochs=("condition", counts)).transpose("condition", "band", "node", "node_other")
    res.attrs = dict(per_epoch.attrs, estimator="within-epoch, mean over epochs", equalized=bool(equalize))
    res.name = per_epoch.name
    return res


def to_connectivity(conn: xr.DataArray, condition: str, bands: Mapping[str, tuple[float, float]]) -> Any:
    """One condition of a subject's networks as an mne-connectivity :class:`~mne_connectivity.SpectralConnectivity`.

    Parameters
    ----------
    conn : xarray.DataArray
        :func:`condition_networks` output, ``(condition, band, node, node_other)``.
    condition : str
        Condition.
    bands : mapping
        Band name -> (low, high) Hz (``Config.bands``): the object's
        frequencies are the band centres; names and edges are kept in its
        ``attrs`` (``band_names``, ``band_edges_hz``), with ``condition``.

    Returns
    -------
    conn : mne_connectivity.SpectralConnectivity
        All-to-all (``indices="all"``), ``method`` and ``n_epochs_used`` set;
        ``get_data(output="dense")`` is ``(node, node, band)``.
    """
    import mne_connectivity

    if condition not in [str(c) for c in conn["condition"].values]:
        raise ValueError(f"no condition {condition!r} in the networks (has {[str(c) for c in conn['condition'].values]})")
    da = conn.sel(condition=condition).transpose("band", "node", "node_other")
    names = [str(b) for b in da["band"].values]
    missing = [b for b in names if b not in bands]
    if missing:
        raise ValueError(f"no frequency range for band(s) {missing}")
    n = da.sizes["node"]
    edges = [[float(bands[b][0]), float(bands[b][1])] for b in names]
    n_used = int(conn["n_epochs"].sel(condition=condition)) if "n_epochs" in conn.coords else None
    return mne_connectivity.SpectralConnectivity(
        np.asarray(da.values, dtype=float).reshape(len(names), n * n).T, freqs=[(lo + hi) / 2 for lo, hi in edges],
        n_nodes=n, names=[str(c) for c in da["node"].values], indices="all", method=str(conn.attrs.get("method", "")),
        n_epochs_used=n_used, band_names=names, band_edges_hz=edges, condition=condition,
    )  # fmt: skip


def from_connectivity(obj: Any) -> xr.DataArray:
    """A :class:`~mne_connectivity.SpectralConnectivity` of :func:`to_connectivity` as ``(band, node, node_other)``."""
    dense = np.moveaxis(np.asarray(obj.get_data(output="dense"), dtype=float), -1, 0)
    bands = list(obj.attrs.get("band_names") or [str(f) for f in obj.freqs])
    names = list(obj.names)
    da = xr.DataArray(dense, dims=("band", "node", "node_other"),
                      coords={"band": bands, "node": names, "node_other": names},
                      name=f"connectivity_{obj.method}" if obj.method else "connectivity", attrs={"units": "1"})  # fmt: skip
    if obj.attrs.get("condition"):
        da = da.assign_coords(condition=str(obj.attrs["condition"]))
    return da


def write_connectivity_derivatives(conn: xr.DataArray, bands: Mapping[str, tuple[float, float]],
                                   path_for: Any) -> list[Path]:  # fmt: skip
    """Write each condition with epochs of a subject's networks as an mne-connectivity netCDF file.

    ``path_for(condition) -> path``; read back with
    :func:`mne_connectivity.read_connectivity`. Written to a temporary name
    and renamed.
    """
    out = []
    for c in [str(c) for c in conn["condition"].values]:
        if "n_epochs" in conn.coords and int(conn["n_epochs"].sel(condition=c)) == 0:
            continue
        path = Path(path_for(c))
        with atomic_path(path, keep_name=True) as tmp, warnings.catch_warnings():
            # h5netcdf: mne-connectivity's attributes are not plain netCDF-4
            warnings.filterwarnings("ignore", message=".*invalid netcdf features.*", category=UserWarning)
            to_connectivity(conn, c, bands).save(tmp)
        out.append(path)
    return out


def subject_connectivity(
    epochs: mne.BaseEpochs,
    metadata: pd.DataFrame,
    config: Config,
    *,
    window: tuple[float, float] = DEFAULT_WINDOW,
    method: Method | None = None,
    conditions: Sequence[str] = CONDITIONS,
    equalize: bool = True,
) -> xr.DataArray:
    """One network per condition and band for one subject.

    Parameters
    ----------
    epochs : mne.BaseEpochs
        Kept epochs of one session (metadata with ``epoch_id``, ``condition``,
        ``subject``), cut with :func:`network_config` so the wavelets have
        their padding.
    metadata : pandas.DataFrame
        Epoch metadata of the session (:func:`mmme_neuro.epochs.make_epochs`);
        only epochs with ``kept`` True are used.
    config : Config
        Bands (Hz), ``network.method``, ``seed``.
    window : (float, float)
        Analysis window (s) after the landmark; default 0-1.2 s.
    method : {'plv', 'ppc', 'wpli', 'coh', 'ppc_across'} | None
        None: ``config.network.method`` (PLV) computed within each epoch and
        averaged over the count-equalised epochs of a condition (the field's
        default). ``'ppc_across'``: across-epoch PPC of all kept epochs of
        each condition (:func:`mmme_neuro.connectivity.across_epoch_connectivity`),
        unbiased by the epoch count, so no equalisation is applied.
    conditions : sequence of str
        Conditions returned (NaN where a condition has no epoch, or fewer
        than 2 for ``'ppc_across'``).
    equalize : bool
        Equalise epoch counts across the present conditions (seeded by
        ``config.seed`` and the subject).

    Returns
    -------
    conn : xarray.DataArray
        Dims ``(condition, band, node, node_other)``; coordinate ``n_epochs``.

    Notes
    -----
    Within-epoch PLV has the same number of samples N in every epoch, hence
    the same bias in every condition; across-epoch PPC is the alternative
    whose expectation does not depend on the number of epochs (module Notes).
    """
    if method != "ppc_across":
        per_epoch = epoch_networks(epochs, config, window=window, method=method)
        return condition_networks(per_epoch, config, conditions=conditions, equalize=equalize, metadata=metadata)
    lo, hi = _check_window(window)
    md = epochs.metadata
    ok = set(metadata.loc[metadata["kept"].astype(bool), "epoch_id"].astype(str))
    picks = mne.pick_types(epochs.info, eeg=True, exclude=[])
    channels = [epochs.ch_names[i] for i in picks]
    mats, counts, info = [], [], {}
    for c in conditions:
        sel = np.flatnonzero((md["condition"].astype(str) == c).to_numpy() & md["epoch_id"].astype(str).isin(ok).to_numpy())
        counts.append(int(sel.size))
        if sel.size < 2:
            mats.append(np.full((len(config.bands), len(channels), len(channels)), np.nan))
            continue
        arr, info = conn_mod.across_epoch_connectivity(
            epochs.get_data(picks=picks)[sel], float(epochs.info["sfreq"]), config.bands, method="ppc",
            tmin=lo, tmax=hi, t0=float(epochs.times[0]), n_cycles=analysis_n_cycles, return_info=True,
        )  # fmt: skip
        mats.append(arr)
    res = xr.DataArray(
        np.stack(mats), dims=("condition", "band", "node", "node_other"),
        coords={"condition": list(conditions), "band": list(config.bands), "node": channels, "node_other": channels,
                "n_epochs": ("condition", counts)},
        name="connectivity_ppc", attrs=provenance(config, method="ppc", estimator="across-epoch", units="1",
                                                  definition=conn_mod.DEFINITIONS["ppc"], **info),
    )  # fmt: skip
    return res


def stack_subjects(subject_conns: Mapping[str, xr.DataArray] | Sequence[xr.DataArray], *, subjects: Sequence[str] | None = None) -> xr.DataArray:
    """Stack subject networks into ``(subject, condition, band, node, node_other)``.

    Parameters
    ----------
    subject_conns : mapping of str to DataArray | sequence of DataArray
        Outputs of :func:`subject_connectivity`, keyed by subject (or a
        sequence with ``subjects``).
    subjects : sequence of str | None
        Labels for a sequence input.

    Returns
    -------
    conn : xarray.DataArray
        Stacked networks; ``n_epochs`` becomes ``(subject, condition)``.
        Channels must agree across subjects.
    """
    if isinstance(subject_conns, Mapping):
        subjects, arrays = list(subject_conns.keys()), list(subject_conns.values())
    else:
        arrays = list(subject_conns)
        if subjects is None or len(subjects) != len(arrays):
            raise ValueError("give one subject label per array")
    if not arrays:
        raise ValueError("no subject networks to stack")
    nodes = list(arrays[0]["node"].values)
    for s, a in zip(subjects, arrays, strict=True):
        if list(a["node"].values) != nodes:
            raise ValueError(f"subject {s}: nodes differ from the first subject's")
    out = xr.concat(arrays, dim=pd.Index([str(s) for s in subjects], name="subject"), combine_attrs="drop_conflicts")
    return out.transpose("subject", "condition", "band", "node", "node_other")


def subject_graph_metrics(
    conn: xr.DataArray, config: Config, *, metrics: Sequence[str] = SUBJECT_METRICS, weighted: bool = False
) -> xr.Dataset:
    """Graph metrics of subject networks over the configured densities, with AUCs.

    Parameters
    ----------
    conn : xarray.DataArray
        ``(subject, condition, band, node, node_other)`` (:func:`stack_subjects`).
        NaN networks (missing conditions) give NaN metrics.
    config : Config
        Densities (``network``: 5-50 % in 5 % steps by default).
    metrics : sequence of str
        Names of :mod:`mmme_neuro.network` metrics.
    weighted : bool
        False (the field's default): binary graphs.

    Returns
    -------
    ds : xarray.Dataset
        Metrics over ``(subject, condition, band, density[, node])`` and
        ``<metric>_auc`` over ``(subject, condition, band[, node])``.
    """
    conn = conn.transpose(..., "node", "node_other")
    finite = np.isfinite(conn).all(("node", "node_other"))
    filled = conn.where(finite, 0.0).drop_vars([c for c in conn.coords if c not in conn.dims])
    ds = net_mod.graph_metrics(filled, config.network.densities(), weighted=weighted, metrics=metrics, config=config)
    ds = ds.where(finite)
    if "n_epochs" in conn.coords:
        ds = ds.assign_coords(n_epochs=conn["n_epochs"])
    ds.attrs.update(provenance(config, connectivity=conn.name, weighted=weighted,
                               densities=list(config.network.densities())))  # fmt: skip
    return ds


def epoch_graph_metrics(per_epoch: xr.DataArray, config: Config,
                        metrics: Sequence[str] = ("nodal_efficiency", "global_efficiency")) -> xr.Dataset:  # fmt: skip
    """AUC over the configured densities of each epoch's graph metrics (binary proportional thresholds).

    Parameters
    ----------
    per_epoch : xarray.DataArray
        :func:`epoch_networks` output (``(epoch, band, node, node_other)``).
    config : Config
        Densities (``network``).
    metrics : sequence of str
        Metrics of :mod:`mmme_neuro.network`.

    Returns
    -------
    ds : xarray.Dataset
        ``<metric>_auc`` over ``(epoch, band[, node])`` with the ``subject``
        and ``condition`` coordinates of ``per_epoch``: a few kB per epoch,
        where the networks take 160 kB, so the group level never needs the
        networks themselves (:func:`first_level`).
    """
    extra = [c for c in per_epoch.coords if c not in per_epoch.dims]
    ds = net_mod.graph_metrics(per_epoch.drop_vars(extra), config.network.densities(), metrics=tuple(metrics),
                               config=config)  # fmt: skip
    ds = ds[[f"{m}_auc" for m in metrics]]
    return ds.assign_coords({c: ("epoch", [str(v) for v in per_epoch[c].values]) for c in ("subject", "condition")
                             if c in per_epoch.coords})  # fmt: skip


def epoch_metric_means(
    per_epoch: Sequence[xr.DataArray | xr.Dataset],
    config: Config,
    *,
    metadata: pd.DataFrame | None = None,
    conditions: Sequence[str] = CONDITIONS,
    metrics: Sequence[str] = ("nodal_efficiency",),
) -> xr.Dataset:
    """Subject means of per-epoch graph metrics over every kept epoch of a condition.

    Each epoch's network (:func:`epoch_networks`) is thresholded at the
    configured densities and its metrics (and their AUC over density)
    computed; the mean over a condition's kept epochs is the subject's value.
    Unlike the metrics of the mean network (:func:`subject_graph_metrics` of
    :func:`condition_networks`), this estimate is not biased by the number of
    epochs (every epoch's PLV comes from the same window length), so no
    epochs are discarded to equalise counts: all MaE and NE epochs count.
    That is the node-wise analysis of the script (measured on the ``ci``
    study: median t of the planted alpha nodes 2.4 against 0.8 for the mean
    network; see the network analysis page).

    Parameters
    ----------
    per_epoch : sequence of xarray.DataArray or xarray.Dataset
        :func:`epoch_networks` of each subject (``(epoch, band, node,
        node_other)`` with ``subject`` and ``condition`` coordinates), or
        their :func:`epoch_graph_metrics` (what :func:`first_level` stores).
    config : Config
        Densities (``network``).
    metadata : pandas.DataFrame | None
        Epoch metadata (``epoch_id``, ``kept``); epochs not kept are left
        out. None: all epochs count.
    conditions : sequence of str
        Conditions in the output (NaN where a subject has no epoch of one).
    metrics : sequence of str
        Nodal or global metrics of :mod:`mmme_neuro.network` (present in
        the given metrics when those are given).

    Returns
    -------
    ds : xarray.Dataset
        ``<metric>_auc`` over ``(subject, condition, band[, node])``,
        coordinate ``n_epochs`` over ``(subject, condition)``.
    """
    if not per_epoch:
        raise ValueError("no per-epoch networks")
    ok = None if metadata is None else set(metadata.loc[metadata["kept"].astype(bool), "epoch_id"].astype(str))
    subjects, parts = [], []
    for pe in per_epoch:
        subj = {str(s) for s in pe["subject"].values}
        if len(subj) != 1:
            raise ValueError(f"per-epoch networks must hold one subject each, got {sorted(subj)}")
        keep = np.array([ok is None or str(e) in ok for e in pe["epoch"].values], dtype=bool)
        pe = pe.isel(epoch=np.flatnonzero(keep))
        ds = pe if isinstance(pe, xr.Dataset) else epoch_graph_metrics(pe, config, metrics)
        ds = ds[[f"{m}_auc" for m in metrics]].drop_vars("subject", errors="ignore")
        means, counts = [], []
        for c in conditions:
            sel = np.flatnonzero(ds["condition"].values == c)
            counts.append(sel.size)
            m = ds.isel(epoch=sel).mean("epoch") if sel.size else ds.isel(epoch=0).where(False)
            means.append(m.drop_vars([v for v in ("condition", "epoch") if v in m.coords]))
        out = xr.concat(means, dim=pd.Index(list(conditions), name="condition"))
        subjects.append(subj.pop())
        parts.append(out.assign_coords(n_epochs=("condition", counts)))
    res = xr.concat(parts, dim=pd.Index(subjects, name="subject"))
    res.attrs.update(provenance(config, estimator="mean of per-epoch graph metrics over all kept epochs",
                                densities=list(config.network.densities())))  # fmt: skip
    return res


def trial_metric_table(
    per_epoch: xr.DataArray | xr.Dataset,
    metadata: pd.DataFrame,
    config: Config,
    *,
    nodes: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """Per-epoch nodal- and global-efficiency AUC for trial-level mixed models.

    Parameters
    ----------
    per_epoch : xarray.DataArray | xarray.Dataset
        :func:`epoch_networks` output (one subject, or several concatenated),
        or its :func:`epoch_graph_metrics`.
    metadata : pandas.DataFrame
        Epoch metadata with the EMG covariates (``epoch_id`` and ``emg_*``).
    config : Config
        Densities.
    nodes : sequence of str | mapping of str to sequence of str | None
        Node sets whose mean nodal-efficiency AUC is tabulated: a sequence
        (one set ``"roi"``), a mapping band -> nodes (e.g. the significant
        nodes of each band), or None (no nodal column).

    Returns
    -------
    table : pandas.DataFrame
        One row per epoch and band: ``subject``, ``condition``, ``epoch_id``,
        ``band``, ``global_efficiency_auc``, ``nodal_efficiency_auc`` (mean
        over the band's node set, NaN without one), ``roi`` (the nodes,
        comma-joined) and the ``emg_*`` columns of ``metadata``.
    """
    ds = per_epoch if isinstance(per_epoch, xr.Dataset) else epoch_graph_metrics(per_epoch, config)
    rows = []
    ne = ds["nodal_efficiency_auc"]
    for band in [str(b) for b in per_epoch["band"].values]:
        roi = list(nodes.get(band, ())) if isinstance(nodes, Mapping) else list(nodes or ())
        df = pd.DataFrame({
            "subject": [str(s) for s in per_epoch["subject"].values],
            "condition": [str(c) for c in per_epoch["condition"].values],
            "epoch_id": [str(e) for e in per_epoch["epoch"].values],
            "band": band,
            "global_efficiency_auc": ds["global_efficiency_auc"].sel(band=band).values,
            "nodal_efficiency_auc": ne.sel(band=band, node=roi).mean("node").values if roi else np.nan,
            "roi": ",".join(roi),
        })  # fmt: skip
        rows.append(df)
    table = pd.concat(rows, ignore_index=True)
    emg = [c for c in metadata.columns if c.startswith("emg_")]
    if emg:
        m = metadata[["epoch_id", *emg]].assign(epoch_id=metadata["epoch_id"].astype(str)).drop_duplicates("epoch_id")
        table = table.merge(m, on="epoch_id", how="left")
    return table


# --------------------------------------------------------------------------- statistics


def nodal_contrasts(
    metrics: xr.Dataset,
    contrast: tuple[str, str],
    config: Config,
    *,
    measure: str = "nodal_efficiency_auc",
    n_permutations: int | None = None,
) -> pd.DataFrame:
    """Per-node, per-band paired permutation tests of a nodal measure.

    Parameters
    ----------
    metrics : xarray.Dataset
        :func:`subject_graph_metrics` output.
    contrast : (str, str)
        ``(a, b)``: test of ``a - b``, e.g. ``("ME", "MaE")``.
    config : Config
        ``stats`` (alpha, permutations, FDR method) and ``seed``.
    measure : str
        Nodal variable of ``metrics``.
    n_permutations : int | None
        None: ``config.stats.n_permutations`` (exact when 2^n is smaller).

    Returns
    -------
    table : pandas.DataFrame
        :func:`mmme_neuro.stats.node_permutation_test` rows (``node``,
        ``t``, ``p``, ``p_maxstat``, ``p_fdr``, ``significant`` by max-stat,
        ``cohen_dz`` ...) with ``band`` and ``measure`` first; max-stat and
        FDR run over the nodes of one band (each band is its own family).
    """
    tables = []
    for band in [str(b) for b in metrics["band"].values]:
        da = metrics[measure].sel(band=band, drop=True).transpose("subject", "condition", "node")
        t = node_permutation_test(da, contrast, n_permutations=n_permutations, correction="maxstat", config=config)
        t.insert(0, "band", band)
        t.insert(1, "measure", measure)
        t["significant_fdr"] = t["p_fdr"] < config.stats.alpha
        tables.append(t)
    return pd.concat(tables, ignore_index=True)


def global_table(metrics: xr.Dataset, measures: Sequence[str] = GLOBAL_MEASURES) -> pd.DataFrame:
    """Long table of global measures: one row per subject, condition and band."""
    df = metrics[list(measures)].to_dataframe().reset_index()
    keep = ["subject", "condition", "band", *measures]
    return df[[c for c in keep if c in df.columns]]


def global_contrasts(
    metrics: xr.Dataset, contrast: tuple[str, str], config: Config, *, measures: Sequence[str] = GLOBAL_MEASURES
) -> pd.DataFrame:
    """Paired t-tests of global measures (AUC over densities) per band, with effect sizes.

    Parameters
    ----------
    metrics : xarray.Dataset
        :func:`subject_graph_metrics` output.
    contrast : (str, str)
        ``(a, b)``.
    config : Config
        FDR method (across the measures of one band).
    measures : sequence of str
        Global variables of ``metrics``.

    Returns
    -------
    table : pandas.DataFrame
        :func:`mmme_neuro.stats.paired_test` rows (``measure``,
        ``statistic`` t, ``p``, ``p_fdr``, ``cohen_dz``, 95 % CI ...) with
        ``band`` first; FDR across all measures x bands of the contrast
        in ``p_fdr_all``.
    """
    long = global_table(metrics, measures)
    out = []
    for band, sub in long.groupby("band", sort=False):
        t = paired_test(sub, measure=list(measures), contrast=contrast, config=config)
        t.insert(0, "band", band)
        out.append(t)
    table = pd.concat(out, ignore_index=True)
    from .stats import fdr

    table["p_fdr_all"] = fdr(table["p"].to_numpy(), config.stats.fdr_method)
    return table


@dataclass
class NBSResult:
    """Result of :func:`network_based_statistic`.

    Attributes
    ----------
    components : pandas.DataFrame
        One row per supra-threshold component: ``component``, ``direction``
        (``+`` a > b, ``-`` a < b), ``n_edges`` (the component size tested),
        ``n_nodes``, ``nodes``, ``p`` (FWER over components, permutation),
        ``significant``, ``max_t``, ``mean_t``, ``mean_dz``.
    edges : pandas.DataFrame
        Supra-threshold edges: ``node``, ``node_other``, ``t``, ``cohen_dz``,
        ``mean_diff``, ``component``, ``significant``.
    threshold : float
        Primary (edge-forming) ``|t|`` threshold.
    null_max : ndarray
        Maximum component size (edges) of every permutation (observed first).
    n_subjects, n_permutations : int
    exact : bool
        All sign flips enumerated.
    contrast : (str, str)
    """

    components: pd.DataFrame
    edges: pd.DataFrame
    threshold: float
    null_max: np.ndarray
    n_subjects: int
    n_permutations: int
    exact: bool
    contrast: tuple[str, str] = ("a", "b")
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def n_significant(self) -> int:
        """Number of significant components."""
        return int(self.components["significant"].sum()) if len(self.components) else 0

    def significant_edges(self) -> pd.DataFrame:
        """Edges of the significant components."""
        return self.edges[self.edges["significant"]].reset_index(drop=True)


def _paired_t(D: np.ndarray) -> np.ndarray:
    n = D.shape[-2]
    m = D.mean(axis=-2)
    sd = D.std(axis=-2, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sd > 0, m / (sd / np.sqrt(n)), 0.0)


def _max_component(sup: np.ndarray, iu: np.ndarray, ju: np.ndarray, n: int) -> tuple[int, np.ndarray, int]:
    """Largest component (in edges) of the graph of supra-threshold edges ``sup`` (bool over pairs)."""
    if not sup.any():
        return 0, np.full(n, -1), 0
    g = csr_matrix((np.ones(int(sup.sum())), (iu[sup], ju[sup])), shape=(n, n))
    n_comp, labels = connected_components(g, directed=False)
    sizes = np.bincount(labels[iu[sup]], minlength=n_comp)
    return int(sizes.max()), labels, n_comp


def nbs_core(
    diff: np.ndarray,
    threshold: float = 3.0,
    *,
    n_permutations: int = 1000,
    seed: int = 0,
    tail: int = 0,
) -> dict[str, Any]:
    """Network-based statistic on paired differences (array level).

    Parameters
    ----------
    diff : ndarray, shape (n_subjects, n_nodes, n_nodes)
        Per-subject symmetric difference matrices (a - b).
    threshold : float
        Primary threshold on the edge-wise paired t (``|t|`` for ``tail=0``).
    n_permutations : int
        Random sign flips (observed included); all ``2^n`` flips when that is
        not more.
    seed : int
        Seed of the flips.
    tail : {0, 1, -1}
        1: components of edges with t > threshold; -1: t < -threshold;
        0: both, components formed separately per sign, the null maximum
        taken over both (FWER over both directions).

    Returns
    -------
    result : dict
        ``t`` (n_nodes, n_nodes), ``components`` (list of dicts: ``direction``,
        ``edges`` (pairs), ``nodes``, ``n_edges``, ``p``), ``null_max``,
        ``exact``, ``n_permutations``.

    Notes
    -----
    Zalesky, Fornito & Bullmore (2010) NeuroImage 53:1197-1207: edges whose
    statistic exceeds the primary threshold form a graph; the size (number
    of edges) of each of its connected components is compared with the
    distribution of the largest component size under random sign flips of
    the subjects' differences (the paired design's exchangeability), which
    controls the family-wise error rate over components. Components come
    from :func:`scipy.sparse.csgraph.connected_components`; p counts the
    observed flip (never 0).
    """
    D = np.asarray(diff, dtype=float)
    if D.ndim != 3 or D.shape[1] != D.shape[2]:
        raise ValueError(f"diff must be (n_subjects, n_nodes, n_nodes), got shape {D.shape}")
    if tail not in (0, 1, -1):
        raise ValueError(f"tail must be 0, 1 or -1, got {tail!r}")
    if not np.isfinite(D).all():
        raise ValueError("diff contains NaN or infinite values (drop incomplete subjects first)")
    n_sub, n = D.shape[0], D.shape[1]
    if n_sub < 2:
        raise ValueError(f"NBS needs at least 2 subjects, got {n_sub}")
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold!r}")
    iu, ju = np.triu_indices(n, k=1)
    E = D[:, iu, ju]  # (subjects, edges)
    exact = 2**n_sub <= n_permutations
    if exact:
        signs = 1 - 2 * ((np.arange(2**n_sub)[:, None] >> np.arange(n_sub)[None, :]) & 1)
    else:
        rng = np.random.default_rng(seed)
        signs = np.vstack([np.ones((1, n_sub), dtype=int), rng.choice([-1, 1], size=(n_permutations - 1, n_sub))])
    directions = (1, -1) if tail == 0 else (tail,)
    null = np.zeros(len(signs), dtype=int)
    for start in range(0, len(signs), 128):
        s = signs[start:start + 128].astype(float)
        T = _paired_t(s[:, :, None] * E[None])  # (perm, edges)
        for k in range(T.shape[0]):
            null[start + k] = max(_max_component(d * T[k] > threshold, iu, ju, n)[0] for d in directions)
    t_obs = _paired_t(E[None])[0]
    comps = []
    for d in directions:
        sup = d * t_obs > threshold
        if not sup.any():
            continue
        _, labels, _ = _max_component(sup, iu, ju, n)
        edge_lab = labels[iu[sup]]
        for lab in np.unique(edge_lab):
            sel = np.flatnonzero(sup)[edge_lab == lab]
            size = sel.size
            comps.append({
                "direction": "+" if d > 0 else "-",
                "edges": [(int(iu[e]), int(ju[e])) for e in sel],
                "edge_index": sel,
                "nodes": sorted({int(iu[e]) for e in sel} | {int(ju[e]) for e in sel}),
                "n_edges": int(size),
                "p": float((null >= size).sum() / len(signs)),
            })  # fmt: skip
    T = np.zeros((n, n))
    T[iu, ju] = T[ju, iu] = t_obs
    comps.sort(key=lambda c: (-c["n_edges"], c["direction"]))
    return {"t": T, "t_edges": t_obs, "components": comps, "null_max": null, "exact": bool(exact),
            "n_permutations": int(len(signs))}  # fmt: skip


def network_based_statistic(
    conn: xr.DataArray,
    contrast: tuple[str, str],
    config: Config,
    *,
    threshold: float = 3.0,
    tail: int = 0,
    n_permutations: int | None = None,
    seed: int | None = None,
) -> NBSResult:
    """Network-based statistic of a paired condition contrast of connectivity.

    Parameters
    ----------
    conn : xarray.DataArray
        ``(subject, condition, node, node_other)`` (one band selected).
        Subjects with NaN in either condition are dropped.
    contrast : (str, str)
        ``(a, b)``: edges tested on ``a - b``.
    config : Config
        ``stats`` (alpha, permutations), ``seed``.
    threshold : float
        Primary threshold on the edge-wise paired t (default 3.0, as
        commonly used with NBS; with 8 subjects, df = 7, ``|t| > 3.0`` is
        p < 0.02 two-sided).
    tail : {0, 1, -1}
        See :func:`nbs_core`.
    n_permutations : int | None
        None: ``config.stats.n_permutations``.
    seed : int | None
        None: ``config.seed``.

    Returns
    -------
    result : NBSResult
    """
    a, b = contrast
    conn = conn.transpose("subject", "condition", "node", "node_other")
    diff = conn.sel(condition=a) - conn.sel(condition=b)
    ok = np.isfinite(diff.values).all(axis=(1, 2))
    diff = diff.isel(subject=np.flatnonzero(ok))
    nodes = [str(x) for x in conn["node"].values]
    n_perm = config.stats.n_permutations if n_permutations is None else int(n_permutations)
    res = nbs_core(diff.values, threshold, n_permutations=n_perm, seed=config.seed if seed is None else seed, tail=tail)
    alpha = config.stats.alpha
    comp_rows, edge_rows = [], []
    E = diff.values
    for k, c in enumerate(res["components"], start=1):
        sig = c["p"] < alpha
        tvals = [res["t"][i, j] for i, j in c["edges"]]
        dz = []
        for i, j in c["edges"]:
            d = E[:, i, j]
            sd = d.std(ddof=1)
            dz.append(float(d.mean() / sd) if sd > 0 else np.nan)
            edge_rows.append({"node": nodes[i], "node_other": nodes[j], "t": float(res["t"][i, j]),
                              "cohen_dz": dz[-1], "mean_diff": float(d.mean()), "component": k,
                              "direction": c["direction"], "significant": bool(sig)})  # fmt: skip
        comp_rows.append({"component": k, "direction": c["direction"], "n_edges": c["n_edges"],
                          "n_nodes": len(c["nodes"]), "nodes": ",".join(nodes[i] for i in c["nodes"]),
                          "p": c["p"], "significant": bool(sig), "max_t": float(np.max(np.abs(tvals))),
                          "mean_t": float(np.mean(tvals)), "mean_dz": float(np.nanmean(dz))})  # fmt: skip
    comp_cols = ["component", "direction", "n_edges", "n_nodes", "nodes", "p", "significant", "max_t", "mean_t", "mean_dz"]
    edge_cols = ["node", "node_other", "t", "cohen_dz", "mean_diff", "component", "direction", "significant"]
    return NBSResult(
        components=pd.DataFrame(comp_rows, columns=comp_cols), edges=pd.DataFrame(edge_rows, columns=edge_cols),
        threshold=float(threshold), null_max=res["null_max"], n_subjects=int(diff.sizes["subject"]),
        n_permutations=res["n_permutations"], exact=res["exact"], contrast=(a, b),
        attrs={"tail": tail, "dropped_subjects": [str(s) for s, o in zip(conn["subject"].values, ok, strict=True) if not o]},
    )  # fmt: skip


# ----------------------------------------------------------------------------- pipeline step


def first_level(session: Any, config: Config, *, clean: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One session's network step for :func:`mmme_neuro.pipeline.run_subjects`.

    Parameters
    ----------
    session : Session
        One subject's BIDS session (:func:`mmme_neuro.dataset.iter_sessions`).
    config : Config
        Configuration; its epochs are padded for the wavelets here
        (:func:`network_config`, a no-op on a configuration that already is).
    clean : mapping | None
        Preprocessed epochs shared with the other analyses
        (:func:`mmme_neuro.epochs.first_level`, as :func:`mmme_neuro.steps.upstream`
        passes them); cropped to the window this step needs. None: epoch and
        preprocess the session here.

    Returns
    -------
    result : dict
        ``connectivity`` (:func:`condition_networks`: ``(condition, band, node,
        node_other)``), ``per_epoch`` (:func:`epoch_networks`), ``epoch_metrics``
        (:func:`epoch_graph_metrics` of ``per_epoch``: what the group level
        reads, so its memory does not grow with the networks of every epoch
        of every subject) and ``epochs`` (every planned epoch with its fate;
        without the AU lists).
    """
    config = network_config(config)
    if clean is None:
        epochs, md = ep_mod.epochs_from_session(session, config)
    else:
        epochs, md = ep_mod.from_clean(clean, config.epochs.tmin, config.epochs.tmax)
    per_epoch = epoch_networks(epochs, config)
    conn = condition_networks(per_epoch, config, metadata=md)
    table = ep_mod.bookkeeping_table(md)
    return {"connectivity": conn, "per_epoch": per_epoch, "epoch_metrics": epoch_graph_metrics(per_epoch, config),
            "epochs": table}  # fmt: skip
