"""ERP figures: waveforms with confidence bands, contrast topomaps, the facial-EMG confound.

Every helper takes ``ax``/``axes=None`` (a new figure in the publication style
is created when None) and returns what it drew on; save with
:func:`mmme_neuro.viz.style.save_figure`.

- :func:`plot_erp_waveforms` - grand-average waveform per condition over a
  channel or ROI with a 95 % confidence band across subjects; the time extent
  of significant clusters (of any contrast given) touching the ROI is shaded
  and marked by a bar.
- :func:`plot_contrast_topomaps` - topographies of the ``a - b`` difference
  averaged over time windows (Quik-Cap positions), channels of a significant
  cluster within the window marked (``mne.viz.plot_topomap(mask=...)``).
- :func:`plot_emg_confound` - per-subject facial-EMG measures ME vs MaE
  (paired dots, mean ± 95 % CI) with the paired test in the title.
- :func:`plot_erp_overview` - the three side by side: the EMG confound is
  shown next to the ERP result, never in a separate supplement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import mne
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy import stats as sstats

from ..stats import ClusterResult
from .style import CONDITION_COLORS, condition_color, figure_size, panel_label, publication_style

__all__ = [
    "EMG_LABELS",
    "plot_contrast_topomaps",
    "plot_emg_confound",
    "plot_erp_overview",
    "plot_erp_waveforms",
    "topomap_info",
]

#: Axis labels of the per-epoch facial-EMG measures of :mod:`mmme_neuro.epochs`.
EMG_LABELS: dict[str, str] = {
    "emg_rms_uv": "EMG channel RMS (µV)",
    "emg_temporal_power": "temporal 30-100 Hz power (µV²)",
    "emg_log_ratio": "EMG log ratio to baseline",
}
_EMG_WIDTH_MM = 120.0


def _as_rois(channels: Any, available: Sequence[str]) -> dict[str, list[str]]:
    if isinstance(channels, str):
        rois: Mapping[str, Any] = {channels: [channels]}
    elif isinstance(channels, Mapping):
        rois = channels
    elif isinstance(channels, Sequence) and channels:
        rois = {"+".join(channels) if len(channels) <= 3 else f"{len(channels)}-channel ROI": list(channels)}
    else:
        raise ValueError(f"channels must be a name, a list (one ROI) or a dict name -> list, got {channels!r}")
    out = {}
    for name, chs in rois.items():
        chs = [chs] if isinstance(chs, str) else list(chs)
        missing = [c for c in chs if c not in available]
        if missing:
            raise ValueError(f"ROI {name!r}: channel(s) {missing} not in the data")
        out[str(name)] = chs
    return out


def _as_cluster_list(clusters: ClusterResult | Sequence[ClusterResult] | None) -> list[ClusterResult]:
    if clusters is None:
        return []
    if isinstance(clusters, ClusterResult):
        return [clusters]
    out = list(clusters)
    if not all(isinstance(c, ClusterResult) for c in out):
        raise TypeError("clusters must be ClusterResult objects from mmme_neuro.stats.cluster_test")
    return out


def _mean_ci(x: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean and t-based CI half-width over axis 0, subjects with NaN dropped."""
    ok = np.isfinite(x).all(axis=tuple(range(1, x.ndim)))
    x = x[ok]
    n = x.shape[0]
    mean = x.mean(axis=0) if n else np.full(x.shape[1:], np.nan)
    if n > 1:
        half = sstats.t.ppf(0.5 + level / 2, n - 1) * x.std(axis=0, ddof=1) / np.sqrt(n)
    else:
        half = np.full(mean.shape, np.nan)
    return mean, half, n


def _new_axes(n: int, height_mm: float, width: str | float = "double") -> tuple[Figure, list[Axes]]:
    with publication_style():
        fig, axes = plt.subplots(1, n, figsize=figure_size(width, height_mm), squeeze=False)
    return fig, list(axes[0])


def _shade_planned(
    ax: Axes, planned: pd.DataFrame | None, channels: Sequence[str], y: float
) -> None:
    """Shade the windows of the planned contrasts whose ROI is ``channels``; label them at height
    ``y``."""
    if planned is None or not len(planned):
        return
    for r in planned.to_dict(orient="records"):
        if set(str(r["roi"]).split(",")) != set(channels) or not np.isfinite(
            r.get("tmin_s", np.nan)
        ):
            continue
        t0, t1 = float(r["tmin_s"]), float(r["tmax_s"])
        ax.axvspan(t0, t1, color="#888888", alpha=0.12, linewidth=0, hatch="////", fill=False)
        if np.isfinite(r.get("t", np.nan)):
            corr = "" if r["correction"] == "none" else f" ({r['correction']})"
            stat = f"t({r['df']:.0f})={r['t']:.2f}, p={r['p_corrected']:.2g}{corr}"
            text = f"planned {r['name']} {r['contrast']}: {stat}"
        else:
            text = f"planned {r['name']} {r['contrast']}: not tested"
        ax.plot([t0, t1], [y, y], color="#555555", linewidth=2.0, solid_capstyle="butt")
        ax.text(t1, y, " " + text, va="center", ha="left", fontsize=5.5, color="#555555")


def plot_erp_waveforms(
    group: xr.DataArray,
    channels: str | Sequence[str] | Mapping[str, Sequence[str]],
    *,
    conditions: Sequence[str] = ("ME", "MaE", "NE"),
    clusters: ClusterResult | Sequence[ClusterResult] | None = None,
    ci: float = 0.95,
    axes: Axes | Sequence[Axes] | None = None,
    planned: pd.DataFrame | None = None,
) -> list[Axes]:
    """Grand-average waveforms with confidence bands across subjects.

    Parameters
    ----------
    group : xarray.DataArray
        ``(subject, condition, channel, time)`` in µV (:func:`mmme_neuro.erp.stack_subjects`).
    channels : str | sequence of str | mapping
        One channel, one ROI (averaged) or ROI name -> channels; one panel per ROI.
    conditions : sequence of str
        Conditions drawn (those absent from ``group`` are skipped).
    clusters : ClusterResult | sequence of ClusterResult | None
        Cluster tests (:func:`mmme_neuro.stats.cluster_test` over channel x
        time); the time extent of each significant cluster that includes a
        channel of the ROI is shaded and marked by a bar labelled with its
        contrast and p.
    ci : float
        Confidence level of the band (t-based, across subjects).
    axes : Axes | sequence of Axes | None
        One axes per ROI; None: a new figure.
    planned : pandas.DataFrame | None
        Planned contrasts (:func:`mmme_neuro.stats.planned_contrasts`): the
        window of each one whose ROI is the panel's channels is shaded grey
        and labelled with its name, t(df) and corrected p.

    Returns
    -------
    axes : list of Axes
    """
    if not isinstance(group, xr.DataArray) or not {"subject", "condition", "channel", "time"} <= set(group.dims):
        raise ValueError("group must be a DataArray with dims (subject, condition, channel, time)")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci!r}")
    rois = _as_rois(channels, [str(c) for c in group["channel"].values])
    tests = _as_cluster_list(clusters)
    if axes is None:
        _, axes = _new_axes(len(rois), 55)
    axes = [axes] if isinstance(axes, Axes) else list(axes)
    if len(axes) != len(rois):
        raise ValueError(f"{len(rois)} ROI(s) need as many axes, got {len(axes)}")
    t = np.asarray(group["time"].values, dtype=float)
    labels = [str(c) for c in group["condition"].values]
    with publication_style():
        for ax, (roi, chs) in zip(axes, rois.items(), strict=True):
            wave = group.sel(channel=chs).mean("channel", skipna=False).transpose("subject", "condition", "time")
            lo_all = []
            for cond in conditions:
                if cond not in labels:
                    continue
                mean, half, n = _mean_ci(wave.sel(condition=cond).values, ci)
                if n == 0:
                    continue
                color = condition_color(cond)
                ax.fill_between(t, mean - half, mean + half, color=color, alpha=0.2, linewidth=0)
                ax.plot(t, mean, color=color, label=f"{cond} (n={n})")
                lo_all.append(np.nanmin(mean - half))
            ax.axvline(0, color="#666666", linewidth=0.5)
            ax.axhline(0, color="#666666", linewidth=0.5)
            ymin = min(lo_all) if lo_all else 0.0
            step = 0
            for res in tests:
                name = f"{res.contrast[0]}-{res.contrast[1]}"
                table = res.clusters
                if not len(table):
                    continue
                for row in table[table["significant"]].to_dict(orient="records"):
                    if not set(str(row.get("channels", "")).split(",")) & set(chs):
                        continue
                    t0, t1 = float(row["time_min_s"]), float(row["time_max_s"])
                    color = CONDITION_COLORS.get(name, "#999999")
                    ax.axvspan(t0, t1, color=color, alpha=0.08, linewidth=0)
                    y = ymin - (0.6 + 0.6 * step)
                    ax.plot([t0, t1], [y, y], color=color, linewidth=2.0, solid_capstyle="butt")
                    ax.text(t1, y, f" {name} p={row['p']:.3g}", va="center", ha="left", fontsize=5.5, color=color)
                    step += 1
            _shade_planned(ax, planned, chs, ymin - (0.6 + 0.6 * step))
            ax.set_xlim(t[0], t[-1])
            ax.set_xlabel("time from onset (s)")
            ax.set_ylabel("amplitude (µV)")
            ax.set_title(f"{roi}: {', '.join(chs)}" if len(chs) <= 8 else roi, fontweight="normal", fontsize=7)
            ax.legend(loc="upper left")
    return axes


def topomap_info(channels: Sequence[str], sfreq: float = 250.0) -> mne.Info:
    """Info of EEG ``channels`` with the Quik-Cap 64 positions (CB1/CB2 at I1/I2).

    Parameters
    ----------
    channels : sequence of str
        Channel names (Quik-Cap spelling).
    sfreq : float
        Sampling rate (Hz); irrelevant to topographies.

    Returns
    -------
    info : mne.Info
    """
    from ..montage import make_quikcap64_montage

    info = mne.create_info([str(c) for c in channels], float(sfreq), "eeg")
    info.set_montage(make_quikcap64_montage(), on_missing="raise", verbose="error")
    return info


def plot_contrast_topomaps(
    group: xr.DataArray,
    contrast: Sequence[str] = ("ME", "MaE"),
    windows: Sequence[tuple[float, float]] = ((0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5), (0.5, 0.6)),
    *,
    cluster: ClusterResult | None = None,
    vlim: float | None = None,
    axes: Sequence[Axes] | None = None,
    colorbar: bool = True,
) -> list[Axes]:
    """Topographies of the contrast ``a - b`` (subject mean) over time windows.

    Parameters
    ----------
    group : xarray.DataArray
        ``(subject, condition, channel, time)`` in µV.
    contrast : pair of str
        ``(a, b)``; subjects missing either are left out.
    windows : sequence of (float, float)
        Time windows (s); one map each, the difference averaged over the window.
    cluster : ClusterResult | None
        Cluster test of the same contrast; channels that belong to a
        significant cluster at any time in a window are marked (white dots).
    vlim : float | None
        Symmetric colour limit (µV); None: the largest absolute value.
    axes : sequence of Axes | None
        One per window (+ one for the colour bar if ``colorbar``); None: new figure.
    colorbar : bool
        Draw a colour bar on the right.

    Returns
    -------
    axes : list of Axes
        The map axes.
    """
    a, b = (str(c) for c in contrast)
    if not windows:
        raise ValueError("windows must hold at least one (tmin, tmax) window (s)")
    diff = (group.sel(condition=a) - group.sel(condition=b)).transpose("subject", "channel", "time")
    ok = np.isfinite(diff.values).all(axis=(1, 2))
    diff = diff.isel(subject=np.flatnonzero(ok))
    channels = [str(c) for c in diff["channel"].values]
    info = topomap_info(channels)
    t = np.asarray(diff["time"].values, dtype=float)
    maps, masks = [], []
    for lo, hi in windows:
        sel = (t >= lo - 1e-9) & (t <= hi + 1e-9)
        if not sel.any():
            raise ValueError(f"window ({lo}, {hi}) s holds no sample")
        maps.append(diff.values[:, :, sel].mean(axis=(0, 2)))
        if cluster is not None and {"channel", "time"} <= set(cluster.mask.dims):
            m = cluster.mask.transpose("channel", "time").sel(channel=channels)
            tm = np.asarray(m["time"].values, dtype=float)
            msel = (tm >= lo - 1e-9) & (tm <= hi + 1e-9)
            masks.append(m.values[:, msel].any(axis=1))
        else:
            masks.append(np.zeros(len(channels), dtype=bool))
    lim = float(vlim) if vlim is not None else float(np.nanmax(np.abs(maps))) or 1.0
    n = len(windows)
    if axes is None:
        with publication_style():
            fig, ax_arr = plt.subplots(1, n + int(colorbar), figsize=figure_size("double", 38), squeeze=False,
                                       width_ratios=[1] * n + ([0.08] if colorbar else []))  # fmt: skip
        axes = list(ax_arr[0])
    axes = list(axes)
    if len(axes) < n:
        raise ValueError(f"{n} windows need at least {n} axes")
    mask_params = {"marker": "o", "markerfacecolor": "white", "markeredgecolor": "black", "linewidth": 0,
                   "markersize": 3.0}  # fmt: skip
    im = None
    with publication_style():
        for ax, data, mask, (lo, hi) in zip(axes[:n], maps, masks, windows, strict=True):
            im, _ = mne.viz.plot_topomap(
                data, info, axes=ax, show=False, vlim=(-lim, lim), cmap="RdBu_r", mask=mask,
                mask_params=mask_params, contours=0, sensors=True, sphere="auto",
            )  # fmt: skip
            ax.set_title(f"{lo * 1e3:.0f}-{hi * 1e3:.0f} ms", fontweight="normal")
        if colorbar and len(axes) > n and im is not None:
            cb = axes[n].figure.colorbar(im, cax=axes[n])
            cb.set_label(f"{a} - {b} (µV)")
    return axes[:n]


def plot_emg_confound(
    values: pd.DataFrame,
    measures: Sequence[str] = ("emg_rms_uv", "emg_temporal_power"),
    *,
    tests: pd.DataFrame | None = None,
    contrast: Sequence[str] = ("ME", "MaE"),
    subject: str = "subject",
    condition: str = "condition",
    axes: Sequence[Axes] | None = None,
) -> list[Axes]:
    """Per-subject facial-EMG measures of two conditions, paired, with the test in the title.

    Parameters
    ----------
    values : pandas.DataFrame
        Trial-level (or subject-level) table with ``subject``, ``condition``
        and the measures (e.g. epoch metadata of :mod:`mmme_neuro.epochs`);
        averaged within subject and condition.
    measures : sequence of str
        Columns drawn, one panel each (missing columns are skipped).
    tests : pandas.DataFrame | None
        :func:`mmme_neuro.stats.paired_test` table (``measure``, ``statistic``,
        ``df``, ``p``, ``cohen_dz``); its row of each measure goes in the title.
    contrast : pair of str
        The two conditions ``(a, b)``.
    subject, condition : str
        Column names.
    axes : sequence of Axes | None
        One per measure; None: a new figure.

    Returns
    -------
    axes : list of Axes
    """
    a, b = (str(c) for c in contrast)
    for col in (subject, condition):
        if col not in values.columns:
            raise ValueError(f"values needs a {col!r} column; columns: {list(values.columns)}")
    measures = [m for m in measures if m in values.columns]
    if not measures:
        raise ValueError("none of the EMG measures is a column of values")
    if axes is None:
        _, axes = _new_axes(len(measures), 55, "single" if len(measures) == 1 else _EMG_WIDTH_MM)
    axes = list(axes)
    df = values[values[condition].astype(str).isin([a, b])]
    with publication_style():
        for ax, m in zip(axes, measures, strict=False):
            wide = df.groupby([subject, condition])[m].mean().unstack(condition).reindex(columns=[a, b]).dropna()
            x = wide.to_numpy(float)
            for row in x:
                ax.plot([0, 1], row, color="#BBBBBB", linewidth=0.5, zorder=1)
            for j, cond in enumerate((a, b)):
                ax.scatter(np.full(len(x), j), x[:, j], s=8, color=condition_color(cond), zorder=2, linewidth=0)
                if len(x):
                    mean, half, _ = _mean_ci(x[:, j], 0.95)
                    ax.errorbar(j + 0.18, mean, yerr=half, fmt="o", color="black", markersize=3, capsize=2,
                                linewidth=0.8, zorder=3)  # fmt: skip
            ax.set_xticks([0, 1], [a, b])
            ax.set_xlim(-0.4, 1.5)
            ax.set_ylabel(EMG_LABELS.get(m, m))
            title = f"{EMG_LABELS.get(m, m).split(' (')[0]} (n={len(x)})"
            if tests is not None and "measure" in tests.columns and (tests["measure"] == m).any():
                r = tests[tests["measure"] == m].iloc[0]
                title += (f"\n{a}-{b}: t({r['df']:.0f}) = {r['statistic']:.1f}\n"
                          f"p = {r['p']:.2g}, dz = {r['cohen_dz']:.1f}")  # fmt: skip
            ax.set_title(title, fontweight="normal", fontsize=6)
    return axes



def plot_erp_overview(
    group: xr.DataArray,
    channels: str | Sequence[str] | Mapping[str, Sequence[str]],
    *,
    clusters: Sequence[ClusterResult] = (),
    emg_values: pd.DataFrame | None = None,
    emg_tests: pd.DataFrame | None = None,
    emg_measures: Sequence[str] = ("emg_rms_uv", "emg_temporal_power"),
    windows: Sequence[tuple[float, float]] = ((0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5), (0.5, 0.6)),
    conditions: Sequence[str] = ("ME", "MaE", "NE"),
    planned: pd.DataFrame | None = None,
) -> Figure:
    """ERP result and its facial-EMG confound in one figure.

    Row 1: waveforms (a) at the ROI with cluster extents, EMG ME vs MaE
    (b, c) with paired tests. Row 2: topomaps (d) of the first cluster
    test's contrast with its significant channels marked.

    Parameters
    ----------
    group : xarray.DataArray
        ``(subject, condition, channel, time)`` in µV.
    channels : str | sequence of str | mapping
        ROI of panel a (one ROI).
    clusters : sequence of ClusterResult
        Cluster tests shaded in panel a; the first gives the topomap contrast and mask.
    emg_values, emg_tests : pandas.DataFrame | None
        See :func:`plot_emg_confound`; None leaves the EMG panels out.
    emg_measures : sequence of str
        EMG columns drawn.
    windows : sequence of (float, float)
        Topomap windows (s).
    conditions : sequence of str
        Conditions of the waveforms.
    planned : pandas.DataFrame | None
        Planned contrasts shaded in panel a (:func:`plot_erp_waveforms`).

    Returns
    -------
    fig : Figure
    """
    rois = _as_rois(channels, [str(c) for c in group["channel"].values])
    if len(rois) != 1:
        raise ValueError("plot_erp_overview draws one ROI")
    emg_measures = [m for m in emg_measures if emg_values is not None and m in emg_values.columns]
    with publication_style():
        fig = plt.figure(figsize=figure_size("double", 115))
        top, bottom = fig.subfigures(2, 1, height_ratios=[1.5, 1])
        ncols = 1 + len(emg_measures)
        ax_top = top.subplots(1, ncols, width_ratios=[2.2] + [1] * len(emg_measures), squeeze=False)[0]
        plot_erp_waveforms(
            group,
            rois,
            conditions=conditions,
            clusters=list(clusters),
            axes=[ax_top[0]],
            planned=planned,
        )
        panel_label(ax_top[0], "a", x=-0.08)
        if emg_measures:
            plot_emg_confound(emg_values, emg_measures, tests=emg_tests, axes=list(ax_top[1:]))
            for k, ax in enumerate(ax_top[1:]):
                panel_label(ax, "bcdefg"[k], x=-0.15)
        first = clusters[0] if clusters else None
        pair = first.contrast if first is not None else ("ME", "MaE")
        n = len(windows)
        ax_bot = bottom.subplots(1, n + 1, width_ratios=[1] * n + [0.08], squeeze=False)[0]
        plot_contrast_topomaps(group, pair, windows, cluster=first, axes=list(ax_bot))
        panel_label(ax_bot[0], "bcdefgh"[len(emg_measures)], x=-0.05)
        bottom.suptitle(f"{pair[0]} - {pair[1]} difference; white dots: channels of a significant cluster",
                        fontsize=7, fontweight="normal")  # fmt: skip
    return fig
