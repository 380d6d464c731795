"""Figures describing a coded expression dataset (MMME Fig. 2 and Table 1).

Every helper draws on the expressions table of
:func:`mmme_neuro.io.coding.read_coding` (or on its row report), takes
``ax=None`` (a new figure in the publication style is created when None) and
returns what it drew on: the :class:`~matplotlib.axes.Axes` for one-panel
helpers, an array of Axes for multi-panel ones and the
:class:`~matplotlib.figure.Figure` for :func:`plot_dataset_overview`. Save
with :func:`mmme_neuro.viz.style.save_figure`.

Panels (letters of :func:`plot_dataset_overview`):

a. :func:`plot_emotion_counts` - expressions per emotion, ME vs MaE.
b. :func:`plot_composite_pies` - negative / positive / surprise shares.
c. :func:`plot_durations` - onset->offset and onset->apex durations with the
   ME/MaE rule boundaries.
d. :func:`plot_au_counts` - action units by face region (Table 1).
e. :func:`plot_subject_counts` - expressions per subject.
f. :func:`plot_quality` - coding-file issues by row status.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter

from ..config import MeRule
from ..describe import (
    COMPOSITE_ORDER,
    KINDS,
    REGION_ORDER,
    au_table,
    composite_proportions,
    emotion_counts,
    format_mean_sd,
    quality_counts,
    subject_counts,
)
from .style import (
    COMPOSITE_COLORS,
    REGION_COLORS,
    STATUS_COLORS,
    condition_color,
    figure_size,
    publication_style,
)

__all__ = [
    "plot_au_counts",
    "plot_composite_pies",
    "plot_dataset_overview",
    "plot_durations",
    "plot_emotion_counts",
    "plot_quality",
    "plot_subject_counts",
]

_VALUE_FONTSIZE = 5.0
_MS_TICKS = (10, 30, 100, 300, 1000, 3000, 10000, 30000)


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _empty(ax: Axes, text: str = "no expressions") -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def plot_emotion_counts(expr: pd.DataFrame, ax: Axes | None = None, *, show_values: bool = True) -> Axes:
    """Bar chart of expressions per emotion, ME vs MaE (MMME Fig. 2a).

    Parameters
    ----------
    expr : DataFrame
        Expressions table (``emotion``, ``kind``).
    ax : Axes | None
        Where to draw; None makes a new one-column figure.
    show_values : bool
        Write the count above each bar.

    Returns
    -------
    ax : Axes
    """
    with publication_style():
        ax = _axes(ax, figure_size("single", 55))
        counts = emotion_counts(expr)
        labels = list(dict.fromkeys(counts["label"]))
        kinds = [k for k in dict.fromkeys(counts["kind"]) if k in KINDS or counts.loc[counts["kind"] == k, "count"].sum()]
        x = np.arange(len(labels))
        width = 0.8 / max(len(kinds), 1)
        ymax = 0
        for j, kind in enumerate(kinds):
            sub = counts[counts["kind"] == kind]
            n = int(sub["count"].sum())
            bars = ax.bar(
                x + (j - (len(kinds) - 1) / 2) * width,
                sub["count"].to_numpy(),
                width=width,
                color=condition_color(kind),
                label=f"{kind} (n = {n})",
            )
            ymax = max(ymax, int(sub["count"].max()) if len(sub) else 0)
            if show_values:
                ax.bar_label(bars, padding=1, fontsize=_VALUE_FONTSIZE)
        ax.set_xticks(x, labels)
        ax.set_xlabel("Expressed emotion")
        ax.set_ylabel("Expressions (count)")
        ax.set_ylim(0, max(ymax, 1) * 1.15)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        ax.legend(loc="upper right", handlelength=1.0)
    return ax


def plot_composite_pies(expr: pd.DataFrame, axes: Sequence[Axes] | None = None, *, legend: bool = True) -> np.ndarray:
    """Pie charts of the composite classes (negative / positive / surprise) per kind (MMME Fig. 2b).

    Parameters
    ----------
    expr : DataFrame
        Expressions table (``kind`` and ``composite_emotion`` or ``emotion``).
    axes : sequence of two Axes | None
        Axes of the ME and MaE pies; None makes a new figure.
    legend : bool
        Draw the class legend below the pies.

    Returns
    -------
    axes : ndarray of Axes
    """
    with publication_style():
        if axes is None:
            _, axes = plt.subplots(1, len(KINDS), figsize=figure_size("single", 50))
        axes = np.atleast_1d(np.asarray(axes, dtype=object))
        if axes.size != len(KINDS):
            raise ValueError(f"need {len(KINDS)} axes (one per kind), got {axes.size}")
        props = composite_proportions(expr)
        for ax, kind in zip(axes, KINDS, strict=True):
            sub = props[(props["kind"] == kind) & (props["count"] > 0)]
            ax.set_aspect("equal")
            ax.axis("off")
            total = int(sub["count"].sum())
            ax.set_title(f"{kind} (n = {total})", fontsize=7, fontweight="bold")
            if total == 0:
                _empty(ax)
                continue
            colors = [COMPOSITE_COLORS.get(c, "#999999") for c in sub["composite"]]
            wedges, _texts, autotexts = ax.pie(
                sub["count"].to_numpy(),
                colors=colors,
                startangle=90,
                counterclock=False,
                autopct=lambda pct: f"{pct:.1f}%" if pct >= 4 else "",
                pctdistance=0.68,
                wedgeprops={"linewidth": 0.6, "edgecolor": "white"},
                textprops={"fontsize": 5.5, "color": "white", "fontweight": "bold"},
            )
            for txt, cls in zip(autotexts, sub["composite"], strict=True):
                if cls in ("surprise", "positive"):
                    txt.set_color("black")
        if legend:
            handles = [Patch(color=COMPOSITE_COLORS[c], label=c.capitalize()) for c in COMPOSITE_ORDER]
            axes[0].figure.legend(
                handles=handles,
                loc="outside lower center" if axes[0].figure.get_layout_engine() else "lower center",
                ncols=len(handles),
                handlelength=1.0,
                columnspacing=1.0,
            )
    return axes


def _log_ms_axis(ax: Axes) -> None:
    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    ticks = [t for t in _MS_TICKS if lo <= t <= hi]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_durations(
    expr: pd.DataFrame,
    me_rule: MeRule | None = None,
    axes: Sequence[Axes] | None = None,
    *,
    n_bins: int = 30,
    legend: bool = True,
) -> np.ndarray:
    """Histograms of onset->offset and onset->apex durations per kind, with the ME rule boundaries.

    Durations are drawn on a log axis (ms): MaE last up to several seconds,
    ME a few hundred ms. The dashed lines are the boundaries of the ME/MaE
    rule (CASME II: 500 ms total, 250 ms onset to apex); bars are stacked,
    ME at the bottom.

    Parameters
    ----------
    expr : DataFrame
        Expressions table (``kind``, ``duration_s``, ``onset_to_apex_s``).
    me_rule : MeRule | None
        Rule whose boundaries are drawn (``config.coding.me_rule``); None
        uses the default rule.
    axes : sequence of two Axes | None
        Axes of the onset->offset and onset->apex panels; None makes a new figure.
    n_bins : int
        Log-spaced bins over the observed range.
    legend : bool
        Draw a legend (kind, n, mean ± SD of the total duration) in the first panel.

    Returns
    -------
    axes : ndarray of Axes
    """
    rule = me_rule if me_rule is not None else MeRule()
    panels = (
        ("duration_s", "Onset → offset (ms)", rule.max_duration_s),
        ("onset_to_apex_s", "Onset → apex (ms)", rule.max_onset_to_apex_s),
    )
    with publication_style():
        if axes is None:
            _, axes = plt.subplots(1, 2, figsize=figure_size("single", 50), sharey=False)
        axes = np.atleast_1d(np.asarray(axes, dtype=object))
        if axes.size != 2:
            raise ValueError(f"need 2 axes, got {axes.size}")
        kinds = list(KINDS)
        values_ms = {
            col: [pd.to_numeric(expr.loc[expr["kind"] == k, col], errors="coerce").dropna().to_numpy() * 1e3 for k in kinds]
            for col, _, _ in panels
        }
        for ax, (col, label, boundary_s) in zip(axes, panels, strict=True):
            data = values_ms[col]
            allv = np.concatenate(data) if data else np.array([])
            allv = allv[allv > 0]
            if allv.size == 0:
                _empty(ax)
                ax.set_xlabel(label)
                continue
            lo = min(allv.min(), boundary_s * 1e3) / 1.2
            hi = max(allv.max(), boundary_s * 1e3) * 1.2
            bins = np.geomspace(lo, hi, n_bins + 1)
            labels = []
            for k, v in zip(kinds, data, strict=True):
                d = values_ms["duration_s"][kinds.index(k)]
                sd = d.std(ddof=1) if d.size > 1 else np.nan
                labels.append(f"{k} (n = {v.size}): {format_mean_sd(d.mean() if d.size else np.nan, sd)} ms")
            ax.hist(
                [np.clip(v[v > 0], lo, hi) for v in data],
                bins=bins,
                stacked=True,
                color=[condition_color(k) for k in kinds],
                label=labels,
                edgecolor="white",
                linewidth=0.3,
            )
            ax.set_xlim(lo, hi)
            _log_ms_axis(ax)
            boundary_ms = boundary_s * 1e3
            ax.axvline(boundary_ms, color="black", linestyle="--", linewidth=0.7)
            ax.text(
                boundary_ms, 1.0, f"{boundary_ms:g} ms", transform=ax.get_xaxis_transform(),
                ha="center", va="bottom", fontsize=5.5,
            )
            ax.set_xlabel(label)
            ax.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
        axes[0].set_ylabel("Expressions (count)")
        if legend and axes[0].has_data():
            handles, labels = axes[0].get_legend_handles_labels()
            fig = axes[0].figure
            fig.legend(
                handles,
                labels,
                loc="outside lower center" if fig.get_layout_engine() else "lower center",
                ncols=2,
                handlelength=1.0,
                title="Onset → offset, mean ± SD",
            )
    return axes


def plot_au_counts(
    expr: pd.DataFrame,
    kind: str | None = "ME",
    ax: Axes | None = None,
    *,
    descriptions: bool = False,
    show_values: bool = True,
    legend: bool = True,
) -> Axes:
    """Horizontal bars of action-unit counts grouped by face region (MMME Table 1).

    Parameters
    ----------
    expr : DataFrame
        Expressions table (``aus``, ``kind``).
    kind : {"ME", "MaE"} | None
        Expressions counted; None: all.
    ax : Axes | None
        Where to draw; None makes a new figure.
    descriptions : bool
        Label each AU with its FACS name ("AU4 Brow Lowerer").
    show_values : bool
        Write the count at the end of each bar.
    legend : bool
        Draw the region legend.

    Returns
    -------
    ax : Axes
    """
    with publication_style():
        table = au_table(expr, kind=kind)
        ax = _axes(ax, figure_size("single", max(40.0, 12 + 3.2 * len(table))))
        title = f"{kind if kind else 'All'} action units"
        if table.empty:
            _empty(ax, "no action units")
            ax.set_title(title)
            return ax
        rank = {r: i for i, r in enumerate(REGION_ORDER)}
        table = table.assign(_r=table["region"].map(rank)).sort_values(["_r", "au_number"])
        y = np.arange(len(table))[::-1]
        labels = [
            f"{au} {desc}" if descriptions and desc else au
            for au, desc in zip(table["au"], table["description"], strict=True)
        ]
        bars = ax.barh(
            y, table["count"].to_numpy(), height=0.75,
            color=[REGION_COLORS.get(r, "#999999") for r in table["region"]],
        )
        if show_values:
            ax.bar_label(bars, padding=1, fontsize=_VALUE_FONTSIZE)
        ax.set_yticks(y, labels)
        ax.tick_params(axis="y", length=0)
        ax.set_ylim(-0.6, len(table) - 0.4)
        ax.set_xlim(0, table["count"].max() * 1.15)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
        n_expr = int((expr["kind"] == kind).sum()) if kind else len(expr)
        ax.set_xlabel(f"{kind + ' ' if kind else ''}expressions with the AU (of {n_expr})")
        ax.set_title(title)
        if legend:
            present = [r for r in REGION_ORDER if r in set(table["region"])]
            handles = [Patch(color=REGION_COLORS[r], label=r.capitalize()) for r in present]
            ax.legend(
                handles=handles, title="Face region", loc="upper left", bbox_to_anchor=(1.0, 1.0),
                handlelength=1.0,
            )
    return ax


def plot_subject_counts(expr: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Stacked bars of ME and MaE per subject (ME at the bottom).

    Parameters
    ----------
    expr : DataFrame
        Expressions table (``subject`` pseudonyms, ``kind``).
    ax : Axes | None
        Where to draw; None makes a new figure.

    Returns
    -------
    ax : Axes
    """
    with publication_style():
        counts = subject_counts(expr)
        subjects = list(dict.fromkeys(counts["subject"]))
        ax = _axes(ax, figure_size("single" if len(subjects) <= 30 else "double", 50))
        if not subjects:
            _empty(ax)
            return ax
        x = np.arange(len(subjects))
        bottom = np.zeros(len(subjects))
        for kind in dict.fromkeys(counts["kind"]):
            values = counts.loc[counts["kind"] == kind].set_index("subject")["count"].reindex(subjects).to_numpy()
            ax.bar(x, values, bottom=bottom, width=0.75, color=condition_color(kind), label=kind)
            bottom += values
        short = [s.removeprefix("sub-") for s in subjects]
        step = max(1, int(np.ceil(len(subjects) / 40)))
        ax.set_xticks(x[::step], short[::step], rotation=90 if len(subjects) > 20 else 0)
        ax.set_xlim(-0.6, len(subjects) - 0.4)
        ax.set_xlabel("Subject (sub-)")
        ax.set_ylabel("Expressions (count)")
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        ax.legend(loc="upper right", handlelength=1.0, ncols=2)
        ax.set_ylim(0, bottom.max() * 1.15 if bottom.max() > 0 else 1)
    return ax


def plot_quality(report: pd.DataFrame, ax: Axes | None = None, *, show_values: bool = True) -> Axes:
    """Horizontal stacked bars of coding-file rows per issue code and status.

    Parameters
    ----------
    report : DataFrame
        Row report of the coding reader (``status``, ``issues``).
    ax : Axes | None
        Where to draw; None makes a new figure.
    show_values : bool
        Write each issue's total at the end of its bar.

    Returns
    -------
    ax : Axes
    """
    with publication_style():
        counts = quality_counts(report)
        issues = list(dict.fromkeys(counts["issue"]))
        ax = _axes(ax, figure_size("single", max(35.0, 15 + 4 * len(issues))))
        if not issues:
            _empty(ax, "no rows")
            return ax
        y = np.arange(len(issues))[::-1]
        left = np.zeros(len(issues))
        for status in dict.fromkeys(counts["status"]):
            values = counts.loc[counts["status"] == status].set_index("issue")["count"].reindex(issues).to_numpy()
            ax.barh(y, values, left=left, height=0.7, color=STATUS_COLORS.get(status, "#999999"), label=status)
            left += values
        if show_values:
            for yi, total in zip(y, left, strict=True):
                ax.text(total, yi, f" {int(total)}", va="center", ha="left", fontsize=_VALUE_FONTSIZE)
        ax.set_yticks(y, ["(no issue)" if i == "none" else i.replace("_", " ") for i in issues])
        ax.tick_params(axis="y", length=0)
        ax.set_ylim(-0.6, len(issues) - 0.4)
        ax.set_xlim(0, left.max() * 1.15 if left.max() > 0 else 1)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
        ax.set_xlabel("Coding-file rows")
        ax.legend(title="Row status", loc="upper left", bbox_to_anchor=(1.0, 1.0), handlelength=1.0)
    return ax


def plot_dataset_overview(
    expr: pd.DataFrame,
    report: pd.DataFrame | None = None,
    me_rule: MeRule | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """Two-column overview figure of a coded dataset (an MMME Fig. 2 for any coding file).

    Panels: (a) emotions ME vs MaE, (b) composite classes, (c) durations with
    the ME rule boundaries, (d) ME action units by face region, (e)
    expressions per subject, (f) coding-file quality (only with ``report``).

    Parameters
    ----------
    expr : DataFrame
        Expressions table.
    report : DataFrame | None
        Row report of the coding reader; None leaves panel (f) out.
    me_rule : MeRule | None
        ME/MaE rule whose boundaries are drawn in (c).
    title : str | None
        Figure title (e.g. the pseudonymous data set name).

    Returns
    -------
    fig : Figure
        180 mm wide.
    """
    with publication_style():
        n_au = len(au_table(expr, kind="ME"))
        n_issues = quality_counts(report)["issue"].nunique() if report is not None else 0
        h_mid = 52 + 2.6 * max(0, n_au - 14)
        h_low = 48 + 2.6 * max(0, n_issues - 8)
        heights = [55.0, h_mid, h_low]
        fig = plt.figure(figsize=figure_size("double", sum(heights)))
        rows = fig.subfigures(3, 1, height_ratios=heights)
        sf_a, sf_b = rows[0].subfigures(1, 2, width_ratios=[1.1, 1])
        ax_a = sf_a.subplots()
        plot_emotion_counts(expr, ax=ax_a)
        axes_b = sf_b.subplots(1, 2)
        plot_composite_pies(expr, axes=axes_b)
        sf_c, sf_d = rows[1].subfigures(1, 2, width_ratios=[1.1, 1])
        axes_c = sf_c.subplots(1, 2, sharey=True)
        plot_durations(expr, me_rule, axes=axes_c)
        axes_c[1].tick_params(labelleft=False)
        ax_d = sf_d.subplots()
        plot_au_counts(expr, kind="ME", ax=ax_d)
        panels = [(ax_a, "a"), (axes_b[0], "b"), (axes_c[0], "c"), (ax_d, "d")]
        if report is not None:
            sf_e, sf_f = rows[2].subfigures(1, 2, width_ratios=[1.1, 1])
        else:
            sf_e, sf_f = rows[2], None
        ax_e = sf_e.subplots()
        plot_subject_counts(expr, ax=ax_e)
        panels.append((ax_e, "e"))
        if sf_f is not None:
            ax_f = sf_f.subplots()
            plot_quality(report, ax=ax_f)
            panels.append((ax_f, "f"))
        for ax, letter in panels:
            sub = ax.get_figure(root=False)
            sub.text(0.0, 1.0, letter, ha="left", va="top", fontsize=9, fontweight="bold")
        if title:
            fig.suptitle(title)
    return fig
