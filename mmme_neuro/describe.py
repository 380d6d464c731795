"""Dataset description tables (MMME Fig. 2 and Table 1) from a coding file.

Pure functions on the expressions table of
:func:`mmme_neuro.io.coding.read_coding` (``result.expressions``) or on its
row report (``result.report``); every function returns a tidy
:class:`pandas.DataFrame` (one observation per row) in a fixed, documented
order, so tables and figures are reproducible.

Examples
--------
>>> import pandas as pd
>>> expr = pd.DataFrame({"subject": ["sub-01", "sub-01"], "kind": ["ME", "MaE"],
...                      "emotion": ["disgust", "happy"], "duration_s": [0.4, 1.2],
...                      "onset_to_apex_s": [0.2, 0.5], "aus": ["AU4, AU7", "AU12"]})
>>> emotion_counts(expr).query("count > 0")[["emotion", "kind", "count"]].to_numpy().tolist()
[['disgust', 'ME', 1], ['happy', 'MaE', 1]]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from .constants import AU_DESCRIPTION, AU_REGION, COMPOSITE_EMOTION, EXPRESSION_EMOTIONS

__all__ = [
    "COMPOSITE_ORDER",
    "EMOTION_LABELS",
    "EMOTION_ORDER",
    "KINDS",
    "REGION_ORDER",
    "au_region_counts",
    "au_table",
    "composite_proportions",
    "duration_stats",
    "emotion_counts",
    "exclusion_reasons",
    "format_mean_sd",
    "parse_aus",
    "quality_counts",
    "subject_counts",
]

#: Expression kinds, in plotting order.
KINDS: tuple[str, ...] = ("ME", "MaE")

#: Emotion order of MMME Fig. 2a (Dis, Fea, Sur, Hap, Ang, Sad, Con).
EMOTION_ORDER: tuple[str, ...] = tuple(EXPRESSION_EMOTIONS)

#: Short labels of MMME Fig. 2a; ``tense`` is MMME's contempt/tension class ("Con").
EMOTION_LABELS: dict[str, str] = {
    "disgust": "Dis",
    "fear": "Fea",
    "surprise": "Sur",
    "happy": "Hap",
    "angry": "Ang",
    "sad": "Sad",
    "tense": "Con",
}

#: Composite classes of MMME Fig. 2b.
COMPOSITE_ORDER: tuple[str, ...] = ("negative", "positive", "surprise")

#: Face regions of MMME Table 1 (``unknown`` for AUs outside it).
REGION_ORDER: tuple[str, ...] = ("upper", "mid", "lower", "unknown")

#: Quality statuses of the coding-file rows.
STATUS_ORDER: tuple[str, ...] = ("ok", "flagged", "excluded")

_AU_RE = re.compile(r"AU\s*0*(\d+)", re.IGNORECASE)


def _require(df: pd.DataFrame, columns: Iterable[str], what: str = "expressions table") -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"The {what} lacks column(s) {missing}; have {list(df.columns)}")


def _ordered(values: Iterable[str], order: Sequence[str]) -> list[str]:
    """``order`` followed by the other observed values (sorted), for stable tables."""
    seen = {str(v) for v in values if pd.notna(v)}
    return list(order) + sorted(seen - set(order))


def parse_aus(aus: object) -> list[int]:
    """Return the distinct action-unit numbers of a coding cell, sorted.

    Parameters
    ----------
    aus : str | float
        E.g. ``"AU4, AU7"``; NaN or empty gives ``[]``. An AU listed twice
        (or with a side prefix, ``"L AU12"``) counts once.

    Returns
    -------
    numbers : list of int

    Examples
    --------
    >>> parse_aus("AU4, AU7, AU4")
    [4, 7]
    """
    if aus is None or (isinstance(aus, float) and np.isnan(aus)):
        return []
    return sorted({int(m) for m in _AU_RE.findall(str(aus))})


def format_mean_sd(mean: float, sd: float, decimals: int = 1) -> str:
    """Format ``mean ± sd`` as in MMME (``"381.7 ± 100.5"``); ``"n/a"`` if mean is NaN."""
    if mean is None or not np.isfinite(mean):
        return "n/a"
    if sd is None or not np.isfinite(sd):
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {sd:.{decimals}f}"


def emotion_counts(expr: pd.DataFrame) -> pd.DataFrame:
    """Count expressions per emotion and kind (MMME Fig. 2a).

    Parameters
    ----------
    expr : DataFrame
        Expressions table with columns ``emotion`` and ``kind``.

    Returns
    -------
    counts : DataFrame
        Columns ``emotion``, ``label`` (Dis, Fea, ...), ``kind``, ``count``,
        ``proportion`` (of the kind's expressions; NaN if the kind is empty).
        One row per emotion x kind, every MMME emotion and kind present (zero
        counts included), in MMME order then ME before MaE; unexpected
        emotions (e.g. missing, ``"unknown"``) follow, sorted.
    """
    _require(expr, ["emotion", "kind"])
    emotion = expr["emotion"].fillna("unknown").astype(str)
    emotions = _ordered(emotion, EMOTION_ORDER)
    kinds = _ordered(expr["kind"], KINDS)
    table = pd.crosstab(emotion, expr["kind"].astype(str)).reindex(index=emotions, columns=kinds, fill_value=0)
    rows = []
    totals = table.sum(axis=0)
    for emo in emotions:
        for kind in kinds:
            n = int(table.loc[emo, kind])
            total = int(totals[kind])
            rows.append(
                {
                    "emotion": emo,
                    "label": EMOTION_LABELS.get(emo, emo.title()),
                    "kind": kind,
                    "count": n,
                    "proportion": n / total if total else np.nan,
                }
            )
    return pd.DataFrame(rows, columns=["emotion", "label", "kind", "count", "proportion"])


def composite_proportions(expr: pd.DataFrame) -> pd.DataFrame:
    """Proportion of negative / positive / surprise expressions per kind (MMME Fig. 2b).

    Parameters
    ----------
    expr : DataFrame
        Expressions table with ``kind`` and ``composite_emotion`` (or
        ``emotion``, mapped with :data:`mmme_neuro.constants.COMPOSITE_EMOTION`).

    Returns
    -------
    table : DataFrame
        Columns ``kind``, ``composite``, ``count``, ``proportion`` (of the
        kind; NaN if the kind is empty), ``percent``; ordered ME, MaE x
        negative, positive, surprise.
    """
    if "composite_emotion" in expr.columns:
        composite = expr["composite_emotion"]
    else:
        _require(expr, ["emotion"])
        composite = expr["emotion"].map(COMPOSITE_EMOTION)
    _require(expr, ["kind"])
    composite = composite.fillna("unknown").astype(str)
    classes = _ordered(composite, COMPOSITE_ORDER)
    kinds = _ordered(expr["kind"], KINDS)
    table = pd.crosstab(expr["kind"].astype(str), composite).reindex(index=kinds, columns=classes, fill_value=0)
    rows = []
    for kind in kinds:
        total = int(table.loc[kind].sum())
        for cls in classes:
            n = int(table.loc[kind, cls])
            prop = n / total if total else np.nan
            rows.append({"kind": kind, "composite": cls, "count": n, "proportion": prop, "percent": 100 * prop})
    return pd.DataFrame(rows, columns=["kind", "composite", "count", "proportion", "percent"])


def duration_stats(expr: pd.DataFrame) -> pd.DataFrame:
    """Mean ± SD (ms) of expression durations per kind, as MMME reports them.

    Parameters
    ----------
    expr : DataFrame
        Expressions table with ``kind``, ``duration_s`` (onset to offset) and
        ``onset_to_apex_s``.

    Returns
    -------
    stats : DataFrame
        One row per kind (ME, MaE, then ``all``) x measure (``duration``:
        onset -> offset, ``onset_to_apex``), columns ``kind``, ``measure``,
        ``n`` (non-missing values), ``mean_ms``, ``sd_ms`` (sample SD,
        ddof=1), ``median_ms``, ``min_ms``, ``max_ms`` and ``text``
        (``"381.7 ± 100.5"``).
    """
    _require(expr, ["kind", "duration_s", "onset_to_apex_s"])
    kinds = _ordered(expr["kind"], KINDS)
    groups = [(k, expr[expr["kind"].astype(str) == k]) for k in kinds] + [("all", expr)]
    rows = []
    for kind, sub in groups:
        for measure, column in (("duration", "duration_s"), ("onset_to_apex", "onset_to_apex_s")):
            ms = pd.to_numeric(sub[column], errors="coerce").dropna().to_numpy(dtype=float) * 1000.0
            n = ms.size
            mean = float(ms.mean()) if n else np.nan
            sd = float(ms.std(ddof=1)) if n > 1 else np.nan
            rows.append(
                {
                    "kind": kind,
                    "measure": measure,
                    "n": int(n),
                    "mean_ms": mean,
                    "sd_ms": sd,
                    "median_ms": float(np.median(ms)) if n else np.nan,
                    "min_ms": float(ms.min()) if n else np.nan,
                    "max_ms": float(ms.max()) if n else np.nan,
                    "text": format_mean_sd(mean, sd),
                }
            )
    return pd.DataFrame(rows)


def _kind_subset(expr: pd.DataFrame, kind: str | None) -> pd.DataFrame:
    if kind is None:
        return expr
    _require(expr, ["kind"])
    return expr[expr["kind"].astype(str) == kind]


def _au_long(expr: pd.DataFrame) -> pd.DataFrame:
    """One row per (expression, distinct AU): columns ``row``, ``kind``, ``au_number``, ``region``."""
    _require(expr, ["aus"])
    kinds = expr["kind"].astype(str).to_numpy() if "kind" in expr.columns else np.full(len(expr), "")
    records = [
        (i, kinds[i], au, AU_REGION.get(au, "unknown"))
        for i, cell in enumerate(expr["aus"].to_numpy())
        for au in parse_aus(cell)
    ]
    return pd.DataFrame(records, columns=["row", "kind", "au_number", "region"])


def au_table(expr: pd.DataFrame, kind: str | None = "ME") -> pd.DataFrame:
    """Action units of the expressions with description, region and count (MMME Table 1).

    Parameters
    ----------
    expr : DataFrame
        Expressions table with ``aus`` (``"AU4, AU7"``) and ``kind``.
    kind : {"ME", "MaE"} | None
        Expressions counted; None counts all.

    Returns
    -------
    table : DataFrame
        One row per AU seen, ordered by AU number; columns ``au``
        (``"AU4"``), ``au_number``, ``description`` (FACS name), ``region``
        (upper/mid/lower, ``unknown`` outside Table 1), ``count`` (expressions
        involving the AU: each AU counts once per expression) and
        ``proportion`` (of the counted expressions).
    """
    sub = _kind_subset(expr, kind)
    long = _au_long(sub)
    counts = long.groupby("au_number").size() if len(long) else pd.Series(dtype=int)
    n_expr = len(sub)
    rows = [
        {
            "au": f"AU{au}",
            "au_number": int(au),
            "description": AU_DESCRIPTION.get(int(au), ""),
            "region": AU_REGION.get(int(au), "unknown"),
            "count": int(n),
            "proportion": n / n_expr if n_expr else np.nan,
        }
        for au, n in sorted(counts.items())
    ]
    return pd.DataFrame(rows, columns=["au", "au_number", "description", "region", "count", "proportion"])


def au_region_counts(expr: pd.DataFrame) -> pd.DataFrame:
    """Action-unit occurrences per face region and kind.

    Parameters
    ----------
    expr : DataFrame
        Expressions table with ``aus`` and ``kind``.

    Returns
    -------
    table : DataFrame
        One row per kind (ME, MaE) x region (upper, mid, lower; ``unknown``
        only if present); columns ``kind``, ``region``, ``n_au`` (AU
        occurrences, each AU once per expression), ``n_expressions``
        (expressions with at least one AU in the region) and
        ``proportion_expressions`` (of the kind's expressions).
    """
    _require(expr, ["kind", "aus"])
    long = _au_long(expr)
    regions = [r for r in REGION_ORDER if r != "unknown" or (long["region"] == "unknown").any()]
    kinds = _ordered(expr["kind"], KINDS)
    n_kind = expr["kind"].astype(str).value_counts()
    rows = []
    for kind in kinds:
        for region in regions:
            sel = long[(long["kind"] == kind) & (long["region"] == region)]
            n_total = int(n_kind.get(kind, 0))
            n_expr = int(sel["row"].nunique())
            rows.append(
                {
                    "kind": kind,
                    "region": region,
                    "n_au": len(sel),
                    "n_expressions": n_expr,
                    "proportion_expressions": n_expr / n_total if n_total else np.nan,
                }
            )
    return pd.DataFrame(rows, columns=["kind", "region", "n_au", "n_expressions", "proportion_expressions"])


def subject_counts(expr: pd.DataFrame) -> pd.DataFrame:
    """Expressions per subject and kind.

    Parameters
    ----------
    expr : DataFrame
        Expressions table with ``subject`` (pseudonym) and ``kind``.

    Returns
    -------
    counts : DataFrame
        One row per subject x kind (zeros included), subjects sorted,
        ME before MaE; columns ``subject``, ``kind``, ``count``.
    """
    _require(expr, ["subject", "kind"])
    subjects = sorted(expr["subject"].dropna().astype(str).unique())
    kinds = _ordered(expr["kind"], KINDS)
    table = pd.crosstab(expr["subject"].astype(str), expr["kind"].astype(str)).reindex(
        index=subjects, columns=kinds, fill_value=0
    )
    long = table.stack().rename("count").reset_index()
    long.columns = ["subject", "kind", "count"]
    long["count"] = long["count"].astype(int)
    return long


def _split_issues(issues: pd.Series) -> pd.Series:
    return issues.fillna("").astype(str).map(lambda s: sorted({c.strip() for c in s.split(";") if c.strip()}))


def quality_counts(report: pd.DataFrame) -> pd.DataFrame:
    """Count coding-file rows per issue code and status.

    Parameters
    ----------
    report : DataFrame
        Row report of the coding reader, with ``status`` (ok / flagged /
        excluded) and ``issues`` (``';'``-joined codes, ``''`` if none).

    Returns
    -------
    counts : DataFrame
        Columns ``issue``, ``status``, ``count``: rows carrying each issue code
        (a row with several codes counts once under each; rows without code
        under ``"none"``), all statuses listed (zeros included). Issues are
        ordered by decreasing total count then name, ``"none"`` last;
        statuses ok, flagged, excluded.
    """
    _require(report, ["status", "issues"], what="coding report")
    codes = _split_issues(report["issues"]).map(lambda c: c or ["none"])
    long = pd.DataFrame({"status": report["status"].astype(str).to_numpy(), "issue": codes.to_numpy()})
    long = long.explode("issue")
    statuses = _ordered(long["status"], STATUS_ORDER)
    if long.empty:
        return pd.DataFrame(columns=["issue", "status", "count"])
    table = pd.crosstab(long["issue"], long["status"]).reindex(columns=statuses, fill_value=0)
    totals = table.sum(axis=1)
    issues = sorted((i for i in table.index if i != "none"), key=lambda i: (-int(totals[i]), i))
    if "none" in table.index:
        issues.append("none")
    rows = [
        {"issue": issue, "status": status, "count": int(table.loc[issue, status])}
        for issue in issues
        for status in statuses
    ]
    return pd.DataFrame(rows, columns=["issue", "status", "count"])


def exclusion_reasons(report: pd.DataFrame, exclusion_codes: Iterable[str] | None = None) -> dict[str, int]:
    """Number of excluded coding-file rows per (primary) exclusion code.

    Parameters
    ----------
    report : DataFrame
        Row report with ``status`` and ``issues`` (``';'``-joined codes, the
        exclusion codes first, as written by the coding reader).
    exclusion_codes : iterable of str | None
        Codes that exclude a row; None: those of severity ``"exclude"`` in
        :data:`mmme_neuro.io.coding.ISSUE_CODES`.

    Returns
    -------
    counts : dict
        Code -> excluded rows, sorted by code. Each excluded row counts once,
        under its first exclusion code (``"unspecified"`` if it has none), so
        the counts sum to the number of excluded rows.
    """
    _require(report, ["status", "issues"], what="coding report")
    if exclusion_codes is None:
        from .io.coding import ISSUE_CODES

        exclusion_codes = [code for code, (severity, _) in ISSUE_CODES.items() if severity == "exclude"]
    codes = set(exclusion_codes)
    excluded = report[report["status"].astype(str) == "excluded"]
    primary = [
        next((c.strip() for c in str(issues).split(";") if c.strip() in codes), "unspecified")
        for issues in excluded["issues"].fillna("")
    ]
    return {str(k): int(v) for k, v in sorted(pd.Series(primary, dtype=object).value_counts().items())}
