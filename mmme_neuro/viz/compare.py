"""Compare regenerated figures with the committed ones (image comparison with a tolerance).

``figures/<analysis>/*.png`` are committed; ``make figures-check`` regenerates
every analysis into a scratch folder and calls :func:`compare_figure_dirs`
(``mmme-neuro compare-figures``). A figure that changed beyond the tolerance,
a committed figure that is no longer produced, and a new figure that is not
committed all fail: a changed figure must be committed on purpose.

The comparison is matplotlib's own (:func:`matplotlib.testing.compare.compare_images`:
root-mean-square difference of the grey-level images, 0-255 scale), the
tool matplotlib and its ecosystem use for their image tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

__all__ = ["DEFAULT_TOLERANCE", "compare_figure_dirs", "format_report"]

#: RMS tolerance (0-255 grey levels): absorbs anti-aliasing and font-hinting
#: differences between machines, not a moved line, bar or colour.
DEFAULT_TOLERANCE = 2.0


def _pngs(root: Path, analyses: list[str] | None) -> dict[str, Path]:
    out = {}
    for path in sorted(root.glob("*/*.png")):
        if path.name.endswith("-failed-diff.png"):  # matplotlib's difference images (kept: they show the change)
            continue
        if analyses is None or path.parent.name in analyses:
            out[f"{path.parent.name}/{path.name}"] = path
    return out


def compare_figure_dirs(reference: str | os.PathLike, regenerated: str | os.PathLike, *,
                        tol: float = DEFAULT_TOLERANCE, analyses: list[str] | None = None) -> pd.DataFrame:  # fmt: skip
    """Compare every ``<analysis>/<figure>.png`` of two output roots.

    Parameters
    ----------
    reference : path-like
        Committed figures, e.g. ``figures/``.
    regenerated : path-like
        Freshly regenerated outputs with the same layout.
    tol : float
        RMS tolerance on the 0-255 grey scale (:data:`DEFAULT_TOLERANCE`).
    analyses : list of str | None
        Only these analysis folders (default: every folder of either root).

    Returns
    -------
    table : pandas.DataFrame
        One row per figure: ``figure`` (``analysis/name.png``), ``status``
        (``same``, ``changed``, ``missing`` - committed but not regenerated,
        ``new`` - regenerated but not committed, ``size_changed``), ``rms``
        (NaN unless compared) and ``ok``.

    Raises
    ------
    FileNotFoundError
        If either root is not a directory.
    """
    from matplotlib.testing.compare import compare_images
    from matplotlib.testing.exceptions import ImageComparisonFailure

    ref, new = Path(reference), Path(regenerated)
    for p in (ref, new):
        if not p.is_dir():
            raise FileNotFoundError(f"{p}: not a directory of figures")
    if not (tol >= 0):
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    a, b = _pngs(ref, analyses), _pngs(new, analyses)
    rows = []
    for name in sorted(set(a) | set(b)):
        if name not in b:
            rows.append({"figure": name, "status": "missing", "rms": float("nan")})
            continue
        if name not in a:
            rows.append({"figure": name, "status": "new", "rms": float("nan")})
            continue
        if a[name].read_bytes() == b[name].read_bytes():
            rows.append({"figure": name, "status": "same", "rms": 0.0})
            continue
        try:
            res = compare_images(str(a[name]), str(b[name]), tol, in_decorator=True)
        except ImageComparisonFailure:  # raised (only) when the image sizes differ
            rows.append({"figure": name, "status": "size_changed", "rms": float("nan")})
            continue
        rms = 0.0 if res is None else float(res["rms"])
        rows.append({"figure": name, "status": "same" if res is None else "changed", "rms": rms})
    table = pd.DataFrame(rows, columns=["figure", "status", "rms"])
    table["ok"] = table["status"].eq("same")
    return table


def format_report(table: pd.DataFrame, tol: float = DEFAULT_TOLERANCE) -> str:
    """Markdown report of :func:`compare_figure_dirs`: the failing figures first, then a count."""
    bad = table[~table["ok"]]
    lines = [f"# Figure check: {len(table) - len(bad)} of {len(table)} figures unchanged (RMS tolerance {tol})", ""]
    hints = {"changed": "differs from the committed figure: commit it on purpose if the change is intended",
             "missing": "committed but no longer produced by its script",
             "new": "produced but not committed",
             "size_changed": "image size changed"}  # fmt: skip
    for r in bad.itertuples():
        rms = f" (RMS {r.rms:.2f})" if r.status == "changed" else ""
        lines.append(f"- `{r.figure}`: {hints[r.status]}{rms}")
    return "\n".join(lines) + "\n"
