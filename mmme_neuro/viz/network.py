"""Figures of the functional-network analysis (shared publication style).

- :func:`plot_nodal_topomaps` - topomaps of the condition contrast of a nodal
  measure (e.g. nodal-efficiency AUC, ME - MaE) per band, significant nodes
  marked (``mne.viz.plot_topomap(mask=...)``, Quik-Cap 64 positions).
- :func:`plot_connectome` - 2-D head plot (the same projected positions)
  with the edges of significant NBS components as lines coloured by t.
- :func:`plot_density_curves` - a metric against edge density per condition,
  mean over subjects with its 95 % t confidence interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import mne
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy import stats

from .style import condition_color, new_figure, publication_style

__all__ = ["plot_connectome", "plot_density_curves", "plot_nodal_topomaps", "sensor_info"]


def sensor_info(channels: Sequence[str]) -> mne.Info:
    """Info of EEG ``channels`` with the Quik-Cap 64 positions (CB1/CB2 at I1/I2)."""
    from ..montage import make_quikcap64_montage

    info = mne.create_info([str(c) for c in channels], 250.0, "eeg")
    info.set_montage(make_quikcap64_montage(), on_missing="raise", verbose="error")
    return info


def plot_nodal_topomaps(
    metrics: xr.Dataset,
    contrast: tuple[str, str],
    tests: pd.DataFrame | None = None,
    *,
    measure: str = "nodal_efficiency_auc",
    planned: pd.DataFrame | None = None,
) -> Figure:
    """Topomaps of the mean contrast of a nodal measure per band, significant nodes marked.

    Parameters
    ----------
    metrics : xarray.Dataset
        :func:`mmme_neuro.netanalysis.subject_graph_metrics` output.
    contrast : (str, str)
        ``(a, b)``; maps show the subject mean of ``a - b`` (unit of the measure; AUC: 1).
    tests : pandas.DataFrame | None
        :func:`mmme_neuro.netanalysis.nodal_contrasts` rows (``band``,
        ``node``, ``significant``); significant nodes are drawn as white dots.
    measure : str
        Nodal variable.
    planned : pandas.DataFrame | None
        Planned contrasts (:func:`mmme_neuro.stats.planned_contrasts`) of
        this contrast: their corrected p is added to the title of their band.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    a, b = contrast
    da = metrics[measure]
    diff = (da.sel(condition=a) - da.sel(condition=b)).mean("subject", skipna=True)
    bands = [str(x) for x in da["band"].values]
    nodes = [str(x) for x in da["node"].values]
    info = sensor_info(nodes)
    lim = float(np.nanmax(np.abs(diff.values))) or 1.0
    fig, axes = new_figure("double", 45.0, 1, len(bands) + 1, width_ratios=[1] * len(bands) + [0.08])
    with publication_style():
        im = None
        for ax, band in zip(axes[:-1], bands, strict=True):
            mask = np.zeros(len(nodes), dtype=bool)
            if tests is not None and len(tests):
                sig = tests[(tests["band"] == band) & tests["significant"].astype(bool)]["node"]
                mask = np.isin(nodes, list(sig))
            im, _ = mne.viz.plot_topomap(
                np.nan_to_num(diff.sel(band=band).values), info, axes=ax, show=False, vlim=(-lim, lim), cmap="RdBu_r",
                mask=mask, mask_params={"marker": "o", "markerfacecolor": "w", "markeredgecolor": "k", "markersize": 4},
                contours=0, sensors=True, sphere="auto",
            )  # fmt: skip
            title = f"{band} ({int(mask.sum())} sig.)"
            for pr in [] if planned is None else planned.to_dict(orient="records"):
                if (
                    pr.get("band") == band
                    and pr["contrast"] == f"{a}-{b}"
                    and np.isfinite(pr["p_corrected"])
                ):
                    title += f"\nplanned p={pr['p_corrected']:.2g}"
            ax.set_title(title, fontweight="normal")
        if im is not None:
            cb = fig.colorbar(im, cax=axes[-1])
            cb.set_label(f"{a} - {b}")
    fig.suptitle(f"{measure.replace('_', ' ')}: {a} - {b}")
    return fig


def plot_connectome(
    edges: pd.DataFrame,
    channels: Sequence[str],
    *,
    title: str = "",
    ax: Axes | None = None,
) -> Figure:
    """2-D head plot of edges (e.g. significant NBS edges) coloured by their t.

    Parameters
    ----------
    edges : pandas.DataFrame
        ``node``, ``node_other``, ``t`` (and optionally ``band``).
    channels : sequence of str
        All nodes (drawn as small dots at their projected Quik-Cap positions).
    title : str
        Axes title.
    ax : Axes | None
        Target axes; None: a new single-column figure.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    from mne.channels.layout import _find_topomap_coords

    info = sensor_info(channels)
    pos = _find_topomap_coords(info, picks=list(range(len(channels))), sphere=None)
    idx = {c: i for i, c in enumerate(channels)}
    if ax is None:
        fig, ax = new_figure("single", 85.0)
    else:
        fig = ax.figure
    with publication_style():
        r = float(np.max(np.linalg.norm(pos, axis=1))) * 1.1
        ax.add_patch(plt.Circle((0, 0), r, fill=False, lw=0.8, color="k"))
        ax.plot([-0.1 * r, 0, 0.1 * r], [r, 1.1 * r, r], color="k", lw=0.8)
        ax.scatter(pos[:, 0], pos[:, 1], s=4, color="0.5", zorder=2)
        lim = float(np.max(np.abs(edges["t"]))) if len(edges) else 1.0
        cmap = plt.get_cmap("RdBu_r")
        for row in edges.itertuples():
            i, j = idx[str(row.node)], idx[str(row.node_other)]
            ax.plot(pos[[i, j], 0], pos[[i, j], 1], color=cmap(0.5 + 0.5 * float(row.t) / lim), lw=1.0, alpha=0.8, zorder=1)
        used = sorted({str(n) for n in edges.get("node", [])} | {str(n) for n in edges.get("node_other", [])})
        for c in used:
            ax.annotate(c, pos[idx[c]], fontsize=5, ha="center", va="bottom", xytext=(0, 2), textcoords="offset points")
        ax.set_xlim(-1.2 * r, 1.2 * r)
        ax.set_ylim(-1.2 * r, 1.25 * r)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(title or f"{len(edges)} edges", fontweight="normal")
    return fig


def plot_density_curves(
    metrics: xr.Dataset,
    measure: str = "global_efficiency",
    *,
    conditions: Sequence[str] = ("ME", "MaE", "NE"),
    level: float = 0.95,
) -> Figure:
    """A global metric against edge density per band and condition, mean and 95 % CI over subjects.

    Parameters
    ----------
    metrics : xarray.Dataset
        :func:`mmme_neuro.netanalysis.subject_graph_metrics` output with
        ``measure`` over ``(subject, condition, band, density)``.
    measure : str
        Global metric.
    conditions : sequence of str
        Conditions drawn (those present).
    level : float
        Confidence level of the t interval of the mean.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    da = metrics[measure]
    bands = [str(x) for x in da["band"].values]
    dens = da["density"].values * 100
    fig, axes = new_figure("double", 50.0, 1, len(bands), sharey=True)
    axes = np.atleast_1d(axes)
    with publication_style():
        for ax, band in zip(axes, bands, strict=True):
            for c in conditions:
                if c not in da["condition"].values:
                    continue
                x = da.sel(band=band, condition=c).transpose("subject", "density").values
                x = x[np.isfinite(x).all(axis=1)]
                if not len(x):
                    continue
                m = x.mean(axis=0)
                half = stats.t.ppf(0.5 + level / 2, max(len(x) - 1, 1)) * x.std(axis=0, ddof=1) / np.sqrt(len(x)) if len(x) > 1 else 0 * m
                ax.plot(dens, m, color=condition_color(c), lw=1.0, label=f"{c} (n={len(x)})")
                ax.fill_between(dens, m - half, m + half, color=condition_color(c), alpha=0.2, lw=0)
            ax.set_title(band, fontweight="normal")
            ax.set_xlabel("density (%)")
        axes[0].set_ylabel(measure.replace("_", " "))
        axes[-1].legend(frameon=False, fontsize=6)
    return fig

