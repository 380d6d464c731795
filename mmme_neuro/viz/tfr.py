"""Time-frequency figures: contrast maps with cluster contours, band topomaps, band time courses, EMG.

Every helper takes ``axes=None`` (a new figure in the publication style is
created) and returns the axes it drew on; save with
:func:`mmme_neuro.viz.style.save_figure`.

- :func:`plot_tfr_contrast_rois` - time x frequency map of the ``a - b``
  ERSP difference (dB, subject mean) averaged over each ROI, with the
  outline of significant clusters (any channel of the ROI) as contours.
- :func:`plot_band_topomaps` - band x time-window grid of ``a - b``
  topographies, channels of a significant cluster marked.
- :func:`plot_band_timecourses` - band power (dB) per condition over time
  with 95 % confidence bands across subjects, per band x ROI.
- :func:`plot_emg_beside_bands` - beta/gamma time courses at the temporal
  channels next to the facial-EMG measures: the confound is shown where the
  effect is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import mne
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.axes import Axes

from ..stats import ClusterResult
from .erp import plot_emg_confound, topomap_info
from .style import condition_color, figure_size, publication_style

__all__ = ["plot_band_timecourses", "plot_band_topomaps", "plot_emg_beside_bands", "plot_tfr_contrast_rois"]


def _mean_ci(x: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, int]:
    from scipy import stats as sstats

    ok = np.isfinite(x).all(axis=tuple(range(1, x.ndim)))
    x = x[ok]
    n = x.shape[0]
    mean = x.mean(axis=0) if n else np.full(x.shape[1:], np.nan)
    half = sstats.t.ppf(0.5 + level / 2, n - 1) * x.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full(mean.shape, np.nan)
    return mean, half, n


def _rois(rois: Mapping[str, Sequence[str]], channels: Sequence[str]) -> dict[str, list[str]]:
    out = {}
    for name, chs in rois.items():
        present = [c for c in ([chs] if isinstance(chs, str) else chs) if c in channels]
        if not present:
            raise ValueError(f"ROI {name!r}: none of its channels is in the data")
        out[str(name)] = present
    return out


def _grid(n_rows: int, n_cols: int, height_mm: float) -> list[list[Axes]]:
    with publication_style():
        fig, axes = plt.subplots(n_rows, n_cols, figsize=figure_size("double", height_mm), squeeze=False)
    return [list(r) for r in axes]


def plot_tfr_contrast_rois(
    ersp: xr.DataArray,
    rois: Mapping[str, Sequence[str]],
    contrast: Sequence[str] = ("ME", "MaE"),
    *,
    cluster: ClusterResult | None = None,
    vlim: float | None = None,
    axes: Sequence[Axes] | None = None,
) -> list[Axes]:
    """Time x frequency maps of ``a - b`` (dB) per ROI with significant-cluster contours.

    Parameters
    ----------
    ersp : xarray.DataArray
        ``(subject, condition, channel, freq, time)``, baseline-normalised (dB).
    rois : mapping
        ROI name -> channels; one panel each.
    contrast : pair of str
        ``(a, b)``.
    cluster : ClusterResult | None
        Cluster test of the same contrast over ``(channel, freq, time)``;
        the points where a significant cluster covers any ROI channel are outlined.
    vlim : float | None
        Symmetric colour limit (dB); None: largest absolute value.
    axes : sequence of Axes | None
        One per ROI; None: a new figure.

    Returns
    -------
    axes : list of Axes
    """
    a, b = (str(c) for c in contrast)
    diff = (ersp.sel(condition=a) - ersp.sel(condition=b)).transpose("subject", "channel", "freq", "time")
    chans = [str(c) for c in diff["channel"].values]
    rois = _rois(rois, chans)
    f = np.asarray(diff["freq"].values, float)
    t = np.asarray(diff["time"].values, float)
    maps = {n: np.nanmean(diff.sel(channel=c).values, axis=(0, 1)) for n, c in rois.items()}
    lim = float(vlim) if vlim is not None else float(max(np.nanmax(np.abs(m)) for m in maps.values())) or 1.0
    if axes is None:
        axes = _grid(1, len(rois), 48)[0]
    axes = list(axes)
    sig = None
    if cluster is not None and {"channel", "freq", "time"} <= set(cluster.mask.dims):
        sig = cluster.mask.transpose("channel", "freq", "time")
    with publication_style():
        im = None
        for ax, (name, chs) in zip(axes, rois.items(), strict=False):
            im = ax.pcolormesh(t, f, maps[name], cmap="RdBu_r", vmin=-lim, vmax=lim, shading="nearest")
            ax.set_yscale("log")
            ticks = [v for v in (4, 8, 13, 20, 30, 45) if f.min() <= v <= f.max()]
            ax.set_yticks(ticks, [str(v) for v in ticks])
            ax.minorticks_off()
            if sig is not None:
                m = sig.sel(channel=chs).values.any(axis=0)
                if m.any() and not m.all():
                    ax.contour(t, f, m.astype(float), levels=[0.5], colors="black", linewidths=0.8)
            ax.axvline(0, color="black", linewidth=0.5, linestyle=":")
            ax.set_title(f"{name} ({len(chs)} ch)", fontweight="normal")
            ax.set_xlabel("time (s)")
        axes[0].set_ylabel("frequency (Hz)")
        if im is not None:
            cb = axes[0].figure.colorbar(im, ax=axes[: len(rois)], shrink=0.8)
            cb.set_label(f"{a} - {b} (dB)")
    return axes[: len(rois)]


def plot_band_topomaps(
    bands: xr.DataArray,
    windows: Sequence[tuple[float, float]],
    contrast: Sequence[str] = ("ME", "MaE"),
    *,
    cluster: ClusterResult | None = None,
    band_names: Sequence[str] | None = None,
    bands_hz: Mapping[str, tuple[float, float]] | None = None,
) -> list[list[Axes]]:
    """Band x window grid of ``a - b`` topographies (dB), cluster channels marked.

    Parameters
    ----------
    bands : xarray.DataArray
        ``(subject, condition, band, channel, time)`` in dB.
    windows : sequence of (float, float)
        Time windows (s), one column each.
    contrast : pair of str
        ``(a, b)``.
    cluster : ClusterResult | None
        Test over ``(channel, freq, time)``: a channel is marked when a
        significant cluster covers it at a frequency of the band
        (``bands_hz``) within the window.
    band_names : sequence of str | None
        Rows; None: every band.
    bands_hz : mapping | None
        Band limits (Hz) for the cluster marks; None: ``bands.attrs["bands_hz"]``.

    Returns
    -------
    axes : list of list of Axes
        Rows = bands, columns = windows.
    """
    a, b = (str(c) for c in contrast)
    if not windows:
        raise ValueError("windows must hold at least one (tmin, tmax) window (s)")
    names = list(bands["band"].values) if band_names is None else list(band_names)
    limits = dict(bands.attrs.get("bands_hz", {}) if bands_hz is None else bands_hz)
    diff = (bands.sel(condition=a) - bands.sel(condition=b)).transpose("subject", "band", "channel", "time")
    chans = [str(c) for c in diff["channel"].values]
    info = topomap_info(chans)
    t = np.asarray(diff["time"].values, float)
    grid = _grid(len(names), len(windows), 24 * len(names) + 8)
    mp = {"marker": "o", "markerfacecolor": "white", "markeredgecolor": "black", "linewidth": 0, "markersize": 2.5}
    with publication_style():
        for r, band in enumerate(names):
            d = np.nanmean(diff.sel(band=band).values, axis=0)  # channel x time
            maps = []
            for lo, hi in windows:
                sel = (t >= lo - 1e-9) & (t <= hi + 1e-9)
                maps.append(d[:, sel].mean(axis=1))
            lim = float(np.nanmax(np.abs(maps))) or 1.0
            for c, ((lo, hi), m) in enumerate(zip(windows, maps, strict=True)):
                mask = np.zeros(len(chans), dtype=bool)
                if cluster is not None and band in limits and {"channel", "freq", "time"} <= set(cluster.mask.dims):
                    cm = cluster.mask.transpose("channel", "freq", "time").sel(channel=chans)
                    fq = np.asarray(cm["freq"].values, float)
                    tm = np.asarray(cm["time"].values, float)
                    fs = (fq >= limits[band][0]) & (fq < limits[band][1])
                    ts = (tm >= lo - 1e-9) & (tm <= hi + 1e-9)
                    mask = cm.values[:, fs][:, :, ts].any(axis=(1, 2))
                ax = grid[r][c]
                im, _ = mne.viz.plot_topomap(m, info, axes=ax, show=False, vlim=(-lim, lim), cmap="RdBu_r", mask=mask,
                                             mask_params=mp, contours=0, sensors=True, sphere="auto", res=32)  # fmt: skip
                if r == 0:
                    ax.set_title(f"{lo * 1e3:.0f}-{hi * 1e3:.0f} ms", fontweight="normal")
                if c == 0:
                    ax.text(-0.25, 0.5, band, transform=ax.transAxes, rotation=90, va="center", ha="center")
            cb = grid[r][-1].figure.colorbar(im, ax=grid[r], shrink=0.7)
            cb.set_label(f"{a}-{b} (dB)")
    return grid


def plot_band_timecourses(
    bands: xr.DataArray,
    rois: Mapping[str, Sequence[str]],
    *,
    band_names: Sequence[str] | None = None,
    conditions: Sequence[str] | None = None,
    axes: Sequence[Sequence[Axes]] | None = None,
    planned: pd.DataFrame | None = None,
) -> list[list[Axes]]:
    """Band power (dB) per condition over time, mean ± 95 % CI across subjects, band x ROI grid.

    Parameters
    ----------
    bands : xarray.DataArray
        ``(subject, condition, band, channel, time)`` in dB.
    rois : mapping
        ROI -> channels (columns).
    band_names : sequence of str | None
        Rows; None: every band.
    conditions : sequence of str | None
        Lines; None: every condition.
    axes : grid of Axes | None
        None: a new figure.
    planned : pandas.DataFrame | None
        Planned contrasts (:func:`mmme_neuro.stats.planned_contrasts`): the
        window of each is shaded on the panel of its band and ROI (same
        channels) and labelled with t(df) and the corrected p.

    Returns
    -------
    axes : list of list of Axes
    """
    names = list(bands["band"].values) if band_names is None else list(band_names)
    conds = list(bands["condition"].values) if conditions is None else list(conditions)
    rois = _rois(rois, [str(c) for c in bands["channel"].values])
    grid = [list(r) for r in axes] if axes is not None else _grid(len(names), len(rois), 30 * len(names) + 10)
    t = np.asarray(bands["time"].values, float)
    with publication_style():
        for r, band in enumerate(names):
            for c, (roi, chs) in enumerate(rois.items()):
                ax = grid[r][c]
                for cond in conds:
                    x = bands.sel(band=band, condition=cond, channel=chs).mean("channel").transpose("subject", "time").values
                    mean, half, n = _mean_ci(x)
                    col = condition_color(cond)
                    ax.plot(t, mean, color=col, linewidth=0.9, label=f"{cond} (n={n})")
                    ax.fill_between(t, mean - half, mean + half, color=col, alpha=0.2, linewidth=0)
                ax.axhline(0, color="black", linewidth=0.4)
                ax.axvline(0, color="black", linewidth=0.4, linestyle=":")
                for pr in [] if planned is None else planned.to_dict(orient="records"):
                    if pr.get("band") != band or set(str(pr["roi"]).split(",")) != set(chs):
                        continue
                    ax.axvspan(pr["tmin_s"], pr["tmax_s"], color="#888888", alpha=0.15, linewidth=0)
                    txt = (
                        "not tested"
                        if not np.isfinite(pr["t"])
                        else f"t({pr['df']:.0f})={pr['t']:.1f}, p={pr['p_corrected']:.2g}"
                    )
                    ax.text(
                        0.02,
                        0.04,
                        f"planned {pr['name']}: {txt}",
                        transform=ax.transAxes,
                        fontsize=4.5,
                        color="#444444",
                        va="bottom",
                    )
                if r == 0:
                    ax.set_title(roi, fontweight="normal")
                if c == 0:
                    ax.set_ylabel(f"{band} (dB)")
                if r == len(names) - 1:
                    ax.set_xlabel("time (s)")
        grid[0][-1].legend(frameon=False, fontsize=5)
    return grid


def plot_emg_beside_bands(
    bands: xr.DataArray,
    trials: pd.DataFrame,
    channels: Sequence[str],
    *,
    band_names: Sequence[str] = ("beta", "gamma"),
    measures: Sequence[str] = ("emg_rms_uv", "emg_temporal_power"),
    tests: pd.DataFrame | None = None,
    contrast: Sequence[str] = ("ME", "MaE"),
) -> list[Axes]:
    """Beta/gamma time courses at the temporal channels next to the facial-EMG measures.

    Parameters
    ----------
    bands : xarray.DataArray
        ``(subject, condition, band, channel, time)`` in dB.
    trials : pandas.DataFrame
        Epoch metadata with ``subject``, ``condition`` and the EMG measures.
    channels : sequence of str
        Temporal channels (``config.emg.temporal_channels``).
    band_names : sequence of str
        Bands drawn (those present).
    measures : sequence of str
        EMG columns drawn (those present).
    tests : pandas.DataFrame | None
        :func:`mmme_neuro.stats.paired_test` of the measures (titles).
    contrast : pair of str
        Conditions.

    Returns
    -------
    axes : list of Axes
        Band panels, then EMG panels.
    """
    names = [b for b in band_names if b in bands["band"].values]
    meas = [m for m in measures if m in trials.columns]
    n = len(names) + len(meas)
    if n == 0:
        raise ValueError("neither the bands nor the EMG measures are present")
    axes = _grid(1, n, 55)[0]
    sub = bands.sel(condition=[c for c in contrast if c in bands["condition"].values])
    roi = {"temporal": [c for c in channels if c in bands["channel"].values]}
    for i, band in enumerate(names):
        plot_band_timecourses(sub, roi, band_names=[band], axes=[[axes[i]]])
        axes[i].set_title(f"{band}, temporal", fontweight="normal")
    if meas:
        plot_emg_confound(trials, meas, tests=tests, contrast=contrast, axes=axes[len(names):])
    return axes

