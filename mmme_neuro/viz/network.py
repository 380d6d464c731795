"""Figures of the functional-network analysis (shared publication style).

- :func:`plot_nodal_topomaps` - topomaps of the condition contrast of a nodal
  measure (e.g. nodal-efficiency AUC, ME - MaE) per band, significant nodes
  marked (``mne.viz.plot_topomap(mask=...)``, Quik-Cap 64 positions).
- :func:`plot_connectome` - the edges of significant NBS components on a
  glass brain per band (nilearn), coloured by t with a colour scale, at the
  template MNI positions of the Quik-Cap; :func:`view_connectome` the same
  as an interactive 3-D view.
- :func:`plot_density_curves` - a metric against edge density per condition,
  mean over subjects with its 95 % t confidence interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mne
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from scipy import stats

from .style import condition_color, new_figure, publication_style

__all__ = ["plot_connectome", "plot_density_curves", "plot_nodal_topomaps", "sensor_info", "view_connectome"]


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


def _mni_coords(channels: Sequence[str]) -> np.ndarray:
    """``(n, 3)`` template positions of ``channels`` in MNI coordinates, mm.

    The Quik-Cap positions (:func:`mmme_neuro.montage.quikcap64_positions`) are
    MNE's ``standard_1005`` template, which is in MNI coordinates of the
    Colin27 head (:data:`mmme_neuro.montage.TEMPLATE_SPACE`).
    """
    from ..montage import quikcap64_positions

    pos = quikcap64_positions()
    missing = [c for c in channels if str(c) not in pos]
    if missing:
        raise ValueError(f"no Quik-Cap 64 position for channel(s) {missing}")
    return 1000.0 * np.array([pos[str(c)] for c in channels])


def _adjacency(edges: pd.DataFrame, channels: Sequence[str]) -> np.ndarray:
    """Symmetric ``(n, n)`` matrix of the edges' t (0: no edge)."""
    idx = {str(c): i for i, c in enumerate(channels)}
    adj = np.zeros((len(channels), len(channels)))
    for row in edges.itertuples():
        i, j = idx[str(row.node)], idx[str(row.node_other)]
        adj[i, j] = adj[j, i] = float(row.t)
    return adj


def plot_connectome(
    edges: pd.DataFrame,
    channels: Sequence[str],
    *,
    title: str = "",
    bands: Sequence[str] | None = None,
) -> Figure:
    """Edges (e.g. significant NBS edges) on a glass brain, one panel per band, coloured by t.

    nilearn's :func:`~nilearn.plotting.plot_connectome` (axial view) at the
    template MNI positions of the Quik-Cap electrodes (:func:`_mni_coords`):
    scalp electrodes, so the nodes lie outside the brain outline. The colour
    scale is symmetric around 0 (up to the largest absolute t), one for all panels.

    Parameters
    ----------
    edges : pandas.DataFrame
        ``node``, ``node_other``, ``t`` (and ``band``: one panel per band).
    channels : sequence of str
        All nodes (drawn as small dots).
    title : str
        Figure title.
    bands : sequence of str | None
        Panels, in order (default: the bands of ``edges``; one panel if it
        has no ``band`` column or no edge).

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    from nilearn import plotting

    coords = _mni_coords(channels)
    if bands is None:
        bands = [str(b) for b in pd.unique(edges["band"])] if "band" in edges and len(edges) else [""]
    lim = float(np.max(np.abs(edges["t"]))) if len(edges) else 1.0
    # no constrained layout: nilearn places its own axes, the colour scale goes beside them
    fig, axes = new_figure("double", 55.0, 1, max(len(bands), 1), layout="none")
    axes = np.atleast_1d(axes)
    with publication_style():
        for ax, band in zip(axes, bands, strict=True):
            sub = edges[edges["band"].astype(str) == band] if band and "band" in edges else edges
            display = plotting.plot_connectome(
                _adjacency(sub, channels), coords, node_color="0.4", node_size=4, edge_cmap="RdBu_r",
                edge_vmin=-lim, edge_vmax=lim, display_mode="z", figure=fig, axes=ax, annotate=False,
                colorbar=False, alpha=0.8, edge_kwargs={"linewidth": 1.0},
            )  # fmt: skip
            n = f"{len(sub)} edge{'s' if len(sub) != 1 else ''}"
            display.title(f"{band}: {n}" if band else n, size=7, color="black", bgcolor="white", alpha=0.0)
        # one colour scale for every panel, beside them
        fig.subplots_adjust(left=0.01, right=0.9, bottom=0.02, top=0.85, wspace=0.05)
        cax = fig.add_axes((0.92, 0.2, 0.012, 0.6))
        fig.colorbar(ScalarMappable(norm=Normalize(-lim, lim), cmap="RdBu_r"), cax=cax, label="t")
        if title:
            fig.suptitle(title)
    return fig


def view_connectome(edges: pd.DataFrame, channels: Sequence[str], *, title: str = "") -> Any:
    """Interactive 3-D view of edges at the template MNI positions (nilearn :func:`~nilearn.plotting.view_connectome`).

    Returns the view (``.save_as_html(path)``; shown inline in Jupyter).
    Edges of all rows are drawn (select a band first).
    """
    from nilearn import plotting

    return plotting.view_connectome(_adjacency(edges, channels), _mni_coords(channels), node_size=4.0,
                                    title=title or None, node_labels=[str(c) for c in channels])  # fmt: skip


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

