"""Figures of the decoding analyses (shared publication style).

* :func:`plot_scores` - UF1 / UAR per task and feature set with the permutation chance level;
* :func:`plot_confusion` - row-normalised confusion matrices;
* :func:`plot_time_decoding` - AUC over time (95 % CI over test subjects, significant clusters) and
  the temporal-generalisation matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from scipy import stats

from .style import new_figure, panel_label, publication_style

__all__ = ["plot_confusion", "plot_scores", "plot_time_decoding"]

_SET_COLORS = {"eeg": "#4477AA", "physio": "#EE6677", "emg": "#BBBBBB", "fusion": "#228833"}


def _set_color(name: str) -> str:
    if "+" in name:
        return _SET_COLORS["fusion"]
    for k, c in _SET_COLORS.items():
        if name.startswith(k):
            return c
    return "#66CCEE"


def plot_scores(table: pd.DataFrame, *, metrics: Sequence[str] = ("uf1", "uar"), alpha: float = 0.05) -> Figure:
    """Bars of UF1 / UAR per task (rows of panels) and feature set, chance level as a tick.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`mmme_neuro.decoding.summary_table` rows (``task``,
        ``feature_set``, ``fusion``, ``<metric>``, ``<metric>_chance``, ``<metric>_p``).
    metrics : sequence of str
        Columns drawn, one panel column each.
    alpha : float
        Bars with permutation p < alpha get ``*``.

    Returns
    -------
    fig : Figure
    """
    tasks = list(dict.fromkeys(table["task"]))
    fig, axes = new_figure("double", 45 * len(tasks), len(tasks), len(metrics), squeeze=False)
    with publication_style():
        for i, task in enumerate(tasks):
            d = table[table["task"] == task].reset_index(drop=True)
            names = [f"{s}" + (f" ({f})" if f not in ("none", "") else "") for s, f in zip(d["feature_set"], d["fusion"], strict=True)]
            x = np.arange(len(d))
            for j, m in enumerate(metrics):
                ax = axes[i, j]
                ax.bar(x, d[m], color=[_set_color(s) for s in d["feature_set"]], width=0.7)
                ch = d.get(f"{m}_chance")
                if ch is not None:
                    ax.hlines(ch, x - 0.4, x + 0.4, color="k", lw=1, label="chance (permutations)")
                for k, p in enumerate(d.get(f"{m}_p", pd.Series([np.nan] * len(d)))):
                    if np.isfinite(p) and p < alpha:
                        ax.text(k, d[m].iat[k] + 0.01, "*", ha="center", va="bottom")
                ax.set_ylim(0, 1.08)
                ax.set_xticks(x, names, rotation=40, ha="right", fontsize=6)
                ax.set_ylabel(m.upper())
                ax.set_title(f"{task}", fontsize=7)
                panel_label(ax, "abcdefghijklmnop"[i * len(metrics) + j])
        axes[0, 0].legend(frameon=False, fontsize=6, loc="lower left")
    return fig


def plot_confusion(confusions: Sequence[tuple[str, xr.DataArray]]) -> Figure:
    """Row-normalised confusion matrices (true x predicted), one panel each.

    Parameters
    ----------
    confusions : sequence of (title, DataArray)
        ``(true, predicted)`` counts (:attr:`mmme_neuro.decoding.DecodingResult.confusion`).

    Returns
    -------
    fig : Figure
    """
    n = len(confusions)
    fig, axes = new_figure("double", 50, 1, max(n, 1), squeeze=False)
    with publication_style():
        for k, (ax, (title, cm)) in enumerate(zip(axes[0], confusions, strict=True)):
            c = cm.values.astype(float)
            rows = c.sum(axis=1, keepdims=True)
            r = np.divide(c, rows, out=np.zeros_like(c), where=rows > 0)
            ax.imshow(r, vmin=0, vmax=1, cmap="Blues")
            labels = [str(v) for v in cm["true"].values]
            ax.set_xticks(range(len(labels)), labels, rotation=40, ha="right", fontsize=6)
            ax.set_yticks(range(len(labels)), labels, fontsize=6)
            for i in range(r.shape[0]):
                for j in range(r.shape[1]):
                    ax.text(j, i, f"{r[i, j]:.2f}\n({int(c[i, j])})", ha="center", va="center", fontsize=5,
                            color="white" if r[i, j] > 0.6 else "black")  # fmt: skip
            ax.set_xlabel("Predicted")
            ax.set_ylabel("True")
            ax.set_title(title, fontsize=7)
            panel_label(ax, "abcdefgh"[k])
    return fig


def plot_time_decoding(scores: xr.DataArray, significant: xr.DataArray, generalization: xr.DataArray | None = None,
                       gen_significant: xr.DataArray | None = None, *, title: str = "ME vs MaE") -> Figure:  # fmt: skip
    """AUC over time with 95 % t-CI over test subjects and significant clusters; temporal generalisation.

    Parameters
    ----------
    scores : xarray.DataArray
        ``(subject, time)`` AUC.
    significant : xarray.DataArray
        ``(time,)`` bool.
    generalization, gen_significant : xarray.DataArray | None
        ``(subject, train_time, test_time)`` AUC and its ``(train_time, test_time)`` mask.
    title : str
        Panel title.

    Returns
    -------
    fig : Figure
    """
    ncol = 2 if generalization is not None else 1
    fig, axes = new_figure("double", 60, 1, ncol, squeeze=False)
    with publication_style():
        ax = axes[0, 0]
        t = scores["time"].values
        x = scores.values
        m = x.mean(axis=0)
        ax.plot(t, m, color="k", lw=1, label=f"mean over {len(x)} test subjects")
        if len(x) > 1:
            h = stats.t.ppf(0.975, len(x) - 1) * x.std(axis=0, ddof=1) / np.sqrt(len(x))
            ax.fill_between(t, m - h, m + h, color="0.6", alpha=0.3, lw=0)
        sig = np.asarray(significant.values, bool)
        if sig.any():
            ax.fill_between(t, 0.5, m, where=sig, color="#228833", alpha=0.5, lw=0, label="cluster p < .05")
        ax.axhline(0.5, color="0.4", lw=0.5, ls=":")
        ax.axvline(0, color="k", lw=0.5)
        ax.set_xlabel("Time from onset (s)")
        ax.set_ylabel("ROC AUC")
        ax.set_title(title, fontsize=7)
        ax.legend(frameon=False, fontsize=6)
        panel_label(ax, "a")
        if generalization is not None:
            ax = axes[0, 1]
            g = generalization.mean("subject")
            tt = g["train_time"].values
            im = ax.imshow(g.values, origin="lower", extent=(tt[0], tt[-1], tt[0], tt[-1]), vmin=0.3, vmax=0.7,
                           cmap="RdBu_r", aspect="auto")  # fmt: skip
            if gen_significant is not None and np.asarray(gen_significant.values).any():
                ax.contour(tt, tt, np.asarray(gen_significant.values, float), levels=[0.5], colors="k", linewidths=0.6)
            ax.set_xlabel("Test time (s)")
            ax.set_ylabel("Train time (s)")
            fig.colorbar(im, ax=ax, label="AUC", shrink=0.8)
            panel_label(ax, "b")
    return fig
