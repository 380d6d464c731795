"""Shared publication style of every mmme-neuro figure.

One palette, one set of rcParams and one deterministic writer, reused by all
figures (dataset description, ERP, TFR, networks, physiology, decoding).

* :data:`CONDITION_COLORS` - colour-blind-safe (Okabe-Ito) colours of the
  conditions ME, MaE and NE and of their differences.
* :func:`publication_style` / :func:`apply_style` - rcParams for a
  180-mm two-column figure (7-pt sans-serif text, no top/right spines,
  300 dpi on save, editable fonts in PDF/SVG).
* :func:`save_figure` - atomic, byte-deterministic PNG/PDF/SVG output.

Examples
--------
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> import matplotlib.pyplot as plt
>>> from mmme_neuro.viz.style import CONDITION_COLORS, figure_size, publication_style
>>> with publication_style():
...     fig, ax = plt.subplots(figsize=figure_size("single", 60))
...     _ = ax.bar(["ME", "MaE"], [634, 2841], color=[CONDITION_COLORS["ME"], CONDITION_COLORS["MaE"]])
>>> plt.close(fig)
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import matplotlib as mpl
import matplotlib.font_manager as font_manager
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.layout_engine import LayoutEngine, PlaceHolderLayoutEngine

from .._utils import atomic_path, check_option

__all__ = [
    "COMPOSITE_COLORS",
    "CONDITION_COLORS",
    "DOUBLE_COLUMN_MM",
    "KIND_ORDER",
    "OKABE_ITO",
    "REGION_COLORS",
    "SINGLE_COLUMN_MM",
    "STATUS_COLORS",
    "STYLE_RC",
    "apply_style",
    "condition_color",
    "figure_size",
    "new_figure",
    "panel_label",
    "publication_style",
    "save_figure",
]

logger = logging.getLogger(__name__)

#: The eight Okabe-Ito colours (Okabe & Ito 2008), safe for all common colour-vision deficiencies.
OKABE_ITO: MappingProxyType[str, str] = MappingProxyType(
    {
        "black": "#000000",
        "orange": "#E69F00",
        "sky_blue": "#56B4E9",
        "bluish_green": "#009E73",
        "yellow": "#F0E442",
        "blue": "#0072B2",
        "vermillion": "#D55E00",
        "reddish_purple": "#CC79A7",
    }
)

#: Colour of each condition (and of the usual contrasts between conditions).
#: ME blue, MaE vermillion, NE (no expression) bluish green; differences in black,
#: reddish purple and sky blue; ``"other"`` grey for anything unlabelled.
CONDITION_COLORS: MappingProxyType[str, str] = MappingProxyType(
    {
        "ME": OKABE_ITO["blue"],
        "MaE": OKABE_ITO["vermillion"],
        "NE": OKABE_ITO["bluish_green"],
        "ME-MaE": OKABE_ITO["black"],
        "ME-NE": OKABE_ITO["reddish_purple"],
        "MaE-NE": OKABE_ITO["sky_blue"],
        "other": "#999999",
    }
)

#: Plotting order of the expression kinds.
KIND_ORDER: tuple[str, ...] = ("ME", "MaE")

#: MMME composite emotion classes.
COMPOSITE_COLORS: MappingProxyType[str, str] = MappingProxyType(
    {
        "negative": OKABE_ITO["vermillion"],
        "positive": OKABE_ITO["bluish_green"],
        "surprise": OKABE_ITO["orange"],
    }
)

#: Face regions of the action units (MMME Table 1).
REGION_COLORS: MappingProxyType[str, str] = MappingProxyType(
    {
        "upper": OKABE_ITO["sky_blue"],
        "mid": OKABE_ITO["orange"],
        "lower": OKABE_ITO["reddish_purple"],
        "unknown": "#999999",
    }
)

#: Status of a coding-file row in the quality report.
STATUS_COLORS: MappingProxyType[str, str] = MappingProxyType(
    {
        "ok": OKABE_ITO["bluish_green"],
        "flagged": OKABE_ITO["orange"],
        "excluded": OKABE_ITO["vermillion"],
    }
)

#: Widths (mm) of journal figures.
SINGLE_COLUMN_MM: float = 88.0
DOUBLE_COLUMN_MM: float = 180.0
_MM_PER_INCH = 25.4

_PREFERRED_SANS = ("Arial", "Helvetica", "Liberation Sans", "Nimbus Sans", "DejaVu Sans")


def _available_sans() -> list[str]:
    """Preferred sans-serif families that are installed (DejaVu Sans always is)."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    fonts = [name for name in _PREFERRED_SANS if name in installed]
    return fonts or ["DejaVu Sans"]


def _style_rc() -> dict[str, Any]:
    return {
        # text: 7 pt body, 6 pt ticks, 8 pt titles (legible at 180 mm)
        "font.family": "sans-serif",
        "font.sans-serif": _available_sans(),
        "font.size": 7.0,
        "axes.titlesize": 8.0,
        "axes.titleweight": "bold",
        "axes.labelsize": 7.0,
        "xtick.labelsize": 6.0,
        "ytick.labelsize": 6.0,
        "legend.fontsize": 6.0,
        "legend.title_fontsize": 7.0,
        "legend.frameon": False,
        "figure.titlesize": 9.0,
        "mathtext.default": "regular",
        # lines and axes
        "axes.linewidth": 0.6,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.prop_cycle": mpl.cycler(color=list(OKABE_ITO.values())[1:] + ["#000000"]),
        "axes.axisbelow": True,
        "lines.linewidth": 1.0,
        "lines.markersize": 3.0,
        "patch.linewidth": 0.5,
        "xtick.major.width": 0.6,
        "ytick.major.width": 0.6,
        "xtick.major.size": 2.5,
        "ytick.major.size": 2.5,
        "xtick.minor.size": 1.5,
        "ytick.minor.size": 1.5,
        "grid.linewidth": 0.4,
        "grid.color": "#DDDDDD",
        # figure and output
        "figure.figsize": (DOUBLE_COLUMN_MM / _MM_PER_INCH, 100 / _MM_PER_INCH),
        "figure.dpi": 100,
        "figure.constrained_layout.use": True,
        "figure.facecolor": "white",
        "savefig.dpi": 300,
        "savefig.facecolor": "white",
        "savefig.pad_inches": 0.02,
        "pdf.fonttype": 42,  # TrueType: text stays editable in vector editors
        "ps.fonttype": 42,
        "svg.fonttype": "none",  # text stays text in SVG
        "svg.hashsalt": "mmme-neuro",  # deterministic SVG element ids
        "image.cmap": "viridis",
    }


#: The rcParams of the publication style (font list resolved to installed fonts at import).
STYLE_RC: MappingProxyType[str, Any] = MappingProxyType(_style_rc())


def apply_style() -> None:
    """Apply the publication style globally (``matplotlib.rcParams``).

    Prefer :func:`publication_style` in library code: it restores the
    previous rcParams on exit.
    """
    mpl.rcParams.update(STYLE_RC)


@contextlib.contextmanager
def publication_style(**overrides: Any) -> Iterator[None]:
    """Context manager applying the publication style, restoring rcParams on exit.

    Parameters
    ----------
    **overrides
        rcParams replacing those of :data:`STYLE_RC`; dots written as
        double underscores (``font__size=8``) or passed via ``**{"font.size": 8}``.

    Examples
    --------
    >>> with publication_style(**{"font.size": 8}):
    ...     pass
    """
    rc = dict(STYLE_RC)
    rc.update({key.replace("__", "."): value for key, value in overrides.items()})
    with mpl.rc_context(rc):
        yield


def figure_size(width: str | float = "double", height_mm: float = 100.0) -> tuple[float, float]:
    """Return a matplotlib ``figsize`` (inches) for a journal figure.

    Parameters
    ----------
    width : {"double", "single"} | float
        Two-column (180 mm), one-column (88 mm) or a width in mm.
    height_mm : float
        Height in mm.

    Returns
    -------
    figsize : tuple of float
        (width, height) in inches.
    """
    if isinstance(width, str):
        check_option("width", width, ("double", "single"))
        width_mm = DOUBLE_COLUMN_MM if width == "double" else SINGLE_COLUMN_MM
    else:
        width_mm = float(width)
    return width_mm / _MM_PER_INCH, float(height_mm) / _MM_PER_INCH


def new_figure(
    width: str | float = "double",
    height_mm: float = 100.0,
    nrows: int = 1,
    ncols: int = 1,
    **subplots_kw: Any,
) -> tuple[Figure, Any]:
    """Create a figure and axes in the publication style (constrained layout).

    Parameters
    ----------
    width : {"double", "single"} | float
        Figure width, see :func:`figure_size`.
    height_mm : float
        Height in mm.
    nrows, ncols : int
        Grid of axes.
    **subplots_kw
        Passed to :func:`matplotlib.pyplot.subplots` (``sharey``, ``width_ratios``...).

    Returns
    -------
    fig : Figure
    axes : Axes | ndarray of Axes
        As returned by :func:`matplotlib.pyplot.subplots`.
    """
    with publication_style():
        return plt.subplots(nrows, ncols, figsize=figure_size(width, height_mm), **subplots_kw)


def condition_color(condition: str) -> str:
    """Colour of a condition (``"ME"``, ``"MaE"``, ``"NE"``...), grey if unknown."""
    return CONDITION_COLORS.get(condition, CONDITION_COLORS["other"])


def panel_label(ax: Axes, label: str, *, x: float = -0.02, y: float = 1.0, **kwargs: Any) -> None:
    """Write a bold panel letter (``"a"``, ``"b"``...) at the top left of ``ax``.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Panel.
    label : str
        Text, e.g. ``"a"``.
    x, y : float
        Anchor of the label in axes coordinates (label right- and bottom-aligned on it).
    **kwargs
        Passed to :meth:`matplotlib.axes.Axes.text`.
    """
    kw = {"fontsize": 9, "fontweight": "bold", "ha": "right", "va": "bottom"}
    kw.update(kwargs)
    ax.text(x, y, label, transform=ax.transAxes, **kw)


#: rcParams read when a figure is written (not when it is drawn): applied by :func:`save_figure`.
_OUTPUT_RC: tuple[str, ...] = (
    "pdf.fonttype", "ps.fonttype", "svg.fonttype", "svg.hashsalt", "savefig.facecolor", "savefig.pad_inches",
)  # fmt: skip


def _metadata(fmt: str) -> dict[str, Any] | None:
    """Metadata that make the output byte-identical across runs."""
    if fmt == "png":
        return {"Software": None}
    if fmt == "pdf":
        return {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None}
    if fmt == "svg":
        return {"Date": None, "Creator": None}
    if fmt in ("ps", "eps"):
        return {"Creator": None}
    return None


def _snap(values: Any, decimals: int = 9) -> np.ndarray:
    """Round to ``decimals`` and turn -0.0 into 0.0 (PDF writes "-0" for tiny negatives)."""
    return np.round(np.asarray(values, dtype=float), decimals) + 0.0


def _freeze_layout(fig: Figure) -> LayoutEngine | None:
    """Run the layout engine once, then fix every subfigure and axes position, rounded.

    Constrained layout can leave floating-point noise (~1e-15) in positions that
    differs between runs; PDF and SVG print it (``-0`` vs ``0``), so the bytes would
    differ. Returns the previous layout engine (to restore it) or None.
    """
    engine = fig.get_layout_engine()
    if engine is None or isinstance(engine, PlaceHolderLayoutEngine):
        return None
    fig.draw_without_rendering()
    fig.set_layout_engine("none")

    def snap_subfigures(parent: Figure | SubFigure) -> None:
        for sub in parent.subfigs:
            sub.bbox_relative.set_points(_snap(sub.bbox_relative.get_points()))
            snap_subfigures(sub)

    snap_subfigures(fig)
    for ax in fig.get_axes():
        ax.set_position(_snap(ax.get_position().bounds), which="both")
    return engine


def save_figure(
    fig: Figure,
    path_stem: str | os.PathLike,
    formats: Iterable[str] = ("png", "pdf"),
    *,
    dpi: float | None = None,
    close: bool = True,
    inputs: Iterable[str | os.PathLike] = (),
    **savefig_kwargs: Any,
) -> list[Path]:
    """Save ``fig`` in several formats, atomically and deterministically.

    Each file is written to a temporary file next to its destination and
    moved into place (readers never see half-written figures). Dates and
    software versions are stripped from the metadata, SVG ids are salted
    with a constant, and the layout (constrained layout) is run once and its
    positions rounded to 1e-9 before writing, so the same figure gives
    identical bytes every run.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        Figure to save.
    path_stem : path-like
        Destination without extension (``figures/x/emotions`` gives
        ``emotions.png`` and ``emotions.pdf``). Dots in the stem are kept.
    formats : iterable of str
        File formats (``"png"``, ``"pdf"``, ``"svg"``...).
    dpi : float | None
        Resolution of raster formats; None uses ``savefig.dpi`` of the
        publication style (300).
    close : bool
        Close the figure after saving (default; frees its memory). If False,
        the figure's layout engine is restored after saving.
    inputs : iterable of path-like
        Input files of the analysis, which are never overwritten.
    **savefig_kwargs
        Passed to :meth:`matplotlib.figure.Figure.savefig`.

    Returns
    -------
    paths : list of pathlib.Path
        The written files, in the order of ``formats``.
    """
    stem = os.fspath(path_stem)
    formats = tuple(formats)
    if not formats:
        raise ValueError("formats must name at least one file format")
    if dpi is None:
        dpi = STYLE_RC["savefig.dpi"]
    paths: list[Path] = []
    engine = _freeze_layout(fig)
    try:
        with mpl.rc_context({key: STYLE_RC[key] for key in _OUTPUT_RC}):
            for fmt in formats:
                fmt = fmt.lower().lstrip(".")
                path = Path(f"{stem}.{fmt}")
                with atomic_path(path, inputs=inputs) as tmp:
                    fig.savefig(tmp, format=fmt, dpi=dpi, metadata=_metadata(fmt), **savefig_kwargs)
                logger.info("wrote %s", path)
                paths.append(path)
    finally:
        if close:
            plt.close(fig)
        elif engine is not None:
            fig.set_layout_engine(engine)
    return paths

