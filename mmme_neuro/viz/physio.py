"""Figures of the physiology analyses (shared publication style).

* :func:`plot_timecourses` - event-related HR / EDA / respiration per condition, 95 % CI over subjects;
* :func:`plot_concordance_heatmap` - feature x window effect sizes, FDR-significant cells marked;
* :func:`plot_latencies` - SCR onset and HR-deceleration peak latencies per condition;
* :func:`plot_brain_body` - per-epoch EEG vs physiology with subject-wise fits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from scipy import stats

from .style import condition_color, new_figure, panel_label, publication_style

__all__ = ["plot_brain_body", "plot_concordance_heatmap", "plot_latencies", "plot_timecourses"]

_LABELS = {"hr": "HR change (bpm)", "eda": "Phasic EDA change (µS)", "rsp": "Resp. amplitude change (rel.)"}


def plot_timecourses(group: xr.DataArray, *, conditions: Sequence[str] = ("ME", "MaE", "NE")) -> Figure:
    """Event-related time courses per signal and condition with 95 % t-CIs over subjects.

    Parameters
    ----------
    group : xarray.DataArray
        ``(subject, condition, signal, time)`` from
        :func:`mmme_neuro.physio.group_timecourses` (time in s).
    conditions : sequence of str
        Conditions drawn.

    Returns
    -------
    fig : Figure
    """
    sigs = list(group["signal"].values)
    fig, axes = new_figure("double", 60, 1, len(sigs), squeeze=False)
    with publication_style():
        for k, (ax, s) in enumerate(zip(axes[0], sigs, strict=True)):
            t = group["time"].values
            for c in conditions:
                if c not in group["condition"].values:
                    continue
                x = group.sel(signal=s, condition=c).values
                x = x[np.isfinite(x).all(axis=1)]
                if not len(x):
                    continue
                m = x.mean(axis=0)
                ax.plot(t, m, color=condition_color(c), label=f"{c} (n={len(x)})", lw=1)
                if len(x) > 1:
                    h = stats.t.ppf(0.975, len(x) - 1) * x.std(axis=0, ddof=1) / np.sqrt(len(x))
                    ax.fill_between(t, m - h, m + h, color=condition_color(c), alpha=0.2, lw=0)
            ax.axvline(0, color="k", lw=0.5)
            ax.axhline(0, color="0.5", lw=0.5, ls=":")
            ax.set_xlabel("Time from onset (s)")
            ax.set_ylabel(_LABELS.get(s, s))
            panel_label(ax, "abcdef"[k])
        axes[0, 0].legend(frameon=False, fontsize=6)
    return fig


def plot_concordance_heatmap(table: pd.DataFrame, *, test: str = "lmm", contrast: str = "ME-NE",
                             alpha: float = 0.05) -> Figure:  # fmt: skip
    """Heatmap feature x window of the effect size, FDR-significant cells marked with ``*``.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`mmme_neuro.concordance.concordance_tests` output.
    test, contrast : str
        Which rows to draw.
    alpha : float
        Threshold of ``p_fdr`` for the marks.

    Returns
    -------
    fig : Figure
    """
    sub = table[(table["test"] == test) & (table["contrast"] == contrast)]
    eff = sub.pivot(index="feature", columns="window_s", values="effect_size").astype(float)
    pf = sub.pivot(index="feature", columns="window_s", values="p_fdr").astype(float)
    fig, ax = new_figure("single", 70)
    with publication_style():
        lim = np.nanmax(np.abs(eff.values)) if np.isfinite(eff.values).any() else 1.0
        im = ax.imshow(eff.values, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xticks(range(eff.shape[1]), [f"{w:g}" for w in eff.columns])
        ax.set_yticks(range(eff.shape[0]), list(eff.index))
        ax.set_xlabel("Window after onset (s)")
        for i in range(eff.shape[0]):
            for j in range(eff.shape[1]):
                if pf.values[i, j] < alpha:
                    ax.text(j, i, "*", ha="center", va="center", fontsize=8)
                elif not np.isfinite(eff.values[i, j]):
                    ax.text(j, i, "n/a", ha="center", va="center", fontsize=5, color="0.5")
        name = sub["effect_size_name"].dropna().iloc[0] if sub["effect_size_name"].notna().any() else "effect"
        fig.colorbar(im, ax=ax, label=f"{contrast} ({name}); * p_FDR < {alpha:g}")
        ax.set_title(f"{test}: {contrast}", fontsize=7)
    return fig


def plot_latencies(features: pd.DataFrame, *, conditions: Sequence[str] = ("ME", "MaE", "NE")) -> Figure:
    """Histograms of SCR onset latency and HR-deceleration peak latency (clean baseline) per condition.

    Parameters
    ----------
    features : pandas.DataFrame
        :func:`mmme_neuro.physio.event_features` rows.
    conditions : sequence of str
        Conditions drawn.

    Returns
    -------
    fig : Figure
    """
    fig, axes = new_figure("double", 55, 1, 2)
    with publication_style():
        for ax, col, clean, label in ((axes[0], "scr_latency_s", False, "SCR onset latency (s)"),
                                      (axes[1], "hr_peak_latency_s", True, "HR deceleration peak latency (s)")):  # fmt: skip
            if col not in features.columns:
                continue
            bins = np.linspace(0, 6.5, 27)
            for c in conditions:
                f = features[features["condition"] == c]
                if clean and "clean_baseline" in f.columns:
                    f = f[f["clean_baseline"].astype(bool)]
                x = f[col].dropna().to_numpy(float)
                if x.size:
                    ax.hist(x, bins=bins, histtype="step", color=condition_color(c), label=f"{c} (n={x.size})",
                            density=True)  # fmt: skip
            ax.set_xlabel(label)
            ax.set_ylabel("Density")
            ax.legend(frameon=False, fontsize=6)
        panel_label(axes[0], "a")
        panel_label(axes[1], "b")
    return fig


def plot_brain_body(joined: pd.DataFrame, eeg_measure: str, physio_measure: str) -> Figure:
    """Scatter of a per-epoch EEG measure vs a physiological measure with subject-wise fits.

    Parameters
    ----------
    joined : pandas.DataFrame
        Second output of :func:`mmme_neuro.concordance.brain_body_coupling`.
    eeg_measure : str
        Column on the x axis (EEG measure, e.g. P3 amplitude in µV).
    physio_measure : str
        Column on the y axis (e.g. HR change in bpm).

    Returns
    -------
    fig : Figure
    """
    fig, ax = new_figure("single", 70)
    with publication_style():
        for c in sorted(joined["condition"].unique()):
            d = joined[joined["condition"] == c]
            ax.scatter(d[eeg_measure], d[physio_measure], s=4, color=condition_color(c), alpha=0.6, label=c)
        for _, d in joined.groupby("subject"):
            if len(d) >= 3 and d[eeg_measure].nunique() > 1:
                b = np.polyfit(d[eeg_measure], d[physio_measure], 1)
                xs = np.linspace(d[eeg_measure].min(), d[eeg_measure].max(), 2)
                ax.plot(xs, np.polyval(b, xs), color="0.4", lw=0.6)
        ax.set_xlabel(eeg_measure)
        ax.set_ylabel(physio_measure)
        ax.legend(frameon=False, fontsize=6)
    return fig
