"""EMG-matched condition contrasts: epochs of two conditions matched on facial EMG, within subject.

Facial muscle activity differs between micro- and macro-expressions (MaE move
more muscle), and its broadband EMG leaks into the scalp EEG. A ME - MaE
difference can therefore be muscle, reported like any other finding. The
sensitivity analysis of this module selects, within each subject, ME and MaE
epochs with the same EMG, so the analyses can repeat their ME - MaE test on
these epochs and flag every effect that disappears.

- :func:`match_emg` - the matching (pure: an epoch table in, the selected
  epoch ids and a per-subject balance report out). Two methods:
  ``"nearest"`` (1:1 nearest-neighbour matching without replacement within a
  caliper) and ``"strata"`` (EMG quantile bins on the common support, equal counts per bin).
- :class:`EmgMatching` - its result; :meth:`EmgMatching.apply` marks the
  matched epochs in an epoch metadata table (the others of the two conditions
  are no longer ``kept``), so the analyses re-average from the same table.
- :func:`cluster_survival` / :func:`node_survival` - which significant
  clusters (nodes) of the main test survive in the matched test.
- :func:`summary_block` / :func:`markdown_lines` - the ``results.emg_matched``
  block of ``summary.json`` and its ``summary.md`` section, shared by the ERP,
  time-frequency and network analyses.

Balance is measured by the standardised mean difference (SMD) of the EMG
measure, ``(mean_a - mean_b) / s``, with ``s = sqrt((var_a + var_b) / 2)``
the subject's pooled within-condition SD *before* matching (Austin 2009);
using the same ``s`` after matching makes the two SMDs comparable. With
nearest-neighbour matching every pair differs by at most ``caliper_sd * s``,
so the matched means differ by at most that: ``abs(SMD after) <= caliper_sd``.

References
----------
Austin PC (2009). Balance diagnostics for comparing the distribution of
baseline covariates between treatment groups in propensity-score matched
samples. Stat Med 28:3083-3107.
Austin PC (2011). Optimal caliper widths for propensity-score matching when
estimating differences in means and differences in proportions in
observational studies. Pharm Stat 10:150-161.
Cochran WG (1968). The effectiveness of adjustment by subclassification in
removing bias in observational studies. Biometrics 24:295-313.
Stuart EA (2010). Matching methods for causal inference: a review and a look
forward. Stat Sci 25:1-21.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .config import EMG_MEASURES, Config
from .epochs import apply_min_count

__all__ = [
    "METHODS",
    "EmgMatching",
    "cluster_effects",
    "cluster_survival",
    "check_counts",
    "cluster_test_info",
    "matched_epochs",
    "markdown_lines",
    "match_emg",
    "matching_options",
    "node_survival",
    "summary_block",
]

logger = logging.getLogger(__name__)

#: Matching methods of :func:`match_emg`.
METHODS: tuple[str, ...] = ("nearest", "strata")


# ----------------------------------------------------------------------------- matching


@dataclass(frozen=True)
class EmgMatching:
    """Result of :func:`match_emg`.

    Attributes
    ----------
    selected : pandas.DataFrame
        One row per matched epoch: ``epoch_id``, ``subject``, ``condition``,
        ``value`` (the EMG measure) and ``match_group`` (the pair, e.g.
        ``"sub-01:pair003"``, or the stratum, ``"sub-01:stratum2"``), sorted by
        subject, match group and condition.
    report : pandas.DataFrame
        One row per subject (sorted): ``subject``, ``n_before_<a>``,
        ``n_before_<b>`` (epochs with an EMG value), ``n_missing`` (kept epochs
        of the two conditions without one), ``mean_before_<a>``,
        ``mean_before_<b>``, ``pooled_sd``, ``smd_before``, ``caliper`` (in
        the measure's unit; NaN for strata), ``n_after_<a>``,
        ``n_after_<b>``, ``mean_after_<a>``, ``mean_after_<b>``,
        ``smd_after``, ``max_pair_diff`` (largest EMG difference of a pair,
        nearest only), ``status`` (``"matched"``, ``"no_overlap"``,
        ``"missing_condition"``, ``"no_spread"``) and ``reason``.
    measure, method : str
        The EMG column and the method.
    caliper_sd : float | None
        Caliper (SD units) of ``"nearest"``.
    n_strata : int | None
        Strata of ``"strata"``.
    conditions : tuple of str
        The two conditions matched, ``(a, b)``.
    """

    selected: pd.DataFrame
    report: pd.DataFrame
    measure: str
    method: str
    caliper_sd: float | None
    n_strata: int | None
    conditions: tuple[str, str]
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def epoch_ids(self) -> tuple[str, ...]:
        """Ids of the matched epochs, sorted."""
        return tuple(sorted(self.selected["epoch_id"].astype(str)))

    def counts(self) -> pd.DataFrame:
        """Matched epochs per subject and condition (``subject``, ``condition``, ``n_matched``; 0
        included)."""
        a, b = self.conditions
        rows = [
            {"subject": r["subject"], "condition": c, "n_matched": int(r[f"n_after_{c}"])}
            for r in self.report.to_dict(orient="records")
            for c in (a, b)
        ]
        return pd.DataFrame(rows, columns=["subject", "condition", "n_matched"])

    def apply(self, metadata: pd.DataFrame) -> pd.DataFrame:
        """Epoch metadata restricted to the matched epochs of the two conditions.

        Parameters
        ----------
        metadata : pandas.DataFrame
            Epoch metadata (``epoch_id``, ``condition``, ``kept``), e.g. the
            bookkeeping table the matching was computed from.

        Returns
        -------
        metadata : pandas.DataFrame
            A copy with ``emg_matched`` (bool: a matched epoch) and ``kept``
            set False for every epoch of the two conditions that is not
            matched. Rows of other conditions (NE) are unchanged: they are not
            part of the matched contrast. ``rejected`` and ``reason`` are
            unchanged (an unmatched epoch is clean, just not in this contrast).
        """
        _check_columns(metadata, ("epoch_id", "condition", "kept"), "metadata")
        md = metadata.copy()
        ids = set(self.selected["epoch_id"].astype(str))
        matched = md["epoch_id"].astype(str).isin(ids).to_numpy()
        in_pair = md["condition"].astype(str).isin(self.conditions).to_numpy()
        md["emg_matched"] = matched
        md["kept"] = md["kept"].astype(bool).to_numpy() & (matched | ~in_pair)
        md.attrs = {**metadata.attrs, "emg_matching": self.options}
        return md


def _check_columns(df: Any, need: Sequence[str], name: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}; columns: {list(df.columns)}")


def _pooled_sd(xa: np.ndarray, xb: np.ndarray) -> float:
    """sqrt of the mean of the two within-condition variances (ddof 1; a condition with < 2 values
    is left out)."""
    var = [float(np.var(x, ddof=1)) for x in (xa, xb) if x.size >= 2]
    return math.sqrt(sum(var) / len(var)) if var else math.nan


def _smd(xa: np.ndarray, xb: np.ndarray, sd: float) -> float:
    if not xa.size or not xb.size or not np.isfinite(sd) or sd <= 0:
        return math.nan
    return float((xa.mean() - xb.mean()) / sd)


def _nearest(
    ida: np.ndarray, xa: np.ndarray, idb: np.ndarray, xb: np.ndarray, caliper: float
) -> list[tuple[str, str, float]]:
    """1:1 pairs without replacement within ``caliper``, closest pairs first (ties: epoch ids)."""
    dist = np.abs(xa[:, None] - xb[None, :])
    ia, ib = np.nonzero(dist <= caliper)
    order = sorted(range(ia.size), key=lambda k: (dist[ia[k], ib[k]], ida[ia[k]], idb[ib[k]]))
    used_a: set[int] = set()
    used_b: set[int] = set()
    pairs = []
    for k in order:
        i, j = int(ia[k]), int(ib[k])
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        pairs.append((str(ida[i]), str(idb[j]), float(dist[i, j])))
    return pairs


def _strata(
    ida: np.ndarray, xa: np.ndarray, idb: np.ndarray, xb: np.ndarray, n_strata: int
) -> list[tuple[int, list[str], list[str]]]:
    """Quantile bins of the pooled values on the common support; min(n_a, n_b) of each per bin.

    Only values inside the common support ``[max(min a, min b), min(max a,
    max b)]`` are binned (no bin then spans a gap between the conditions).
    The larger group of a bin keeps the epochs nearest the smaller group's mean
    in that bin (ties: epoch id), which also balances the measure within the bin.
    """
    lo, hi = max(xa.min(), xb.min()), min(xa.max(), xb.max())
    if lo > hi:
        return []
    ina, inb = (xa >= lo) & (xa <= hi), (xb >= lo) & (xb <= hi)
    ida, xa, idb, xb = ida[ina], xa[ina], idb[inb], xb[inb]
    pooled = np.concatenate([xa, xb])
    edges = np.quantile(pooled, np.linspace(0.0, 1.0, n_strata + 1))
    inner = edges[1:-1]
    bin_a = np.searchsorted(inner, xa, side="right")
    bin_b = np.searchsorted(inner, xb, side="right")
    out = []
    for s in range(n_strata):
        sa, sb = np.flatnonzero(bin_a == s), np.flatnonzero(bin_b == s)
        k = min(sa.size, sb.size)
        if k == 0:
            continue
        if sa.size == k and sb.size == k:
            keep_a, keep_b = sa, sb
        elif sa.size > k:
            target = float(xb[sb].mean())
            keep_a = np.array(sorted(sa, key=lambda i: (abs(xa[i] - target), ida[i]))[:k])
            keep_b = sb
        else:
            target = float(xa[sa].mean())
            keep_b = np.array(sorted(sb, key=lambda j: (abs(xb[j] - target), idb[j]))[:k])
            keep_a = sa
        out.append((s, [str(ida[i]) for i in keep_a], [str(idb[j]) for j in keep_b]))
    return out


def match_emg(
    metadata: pd.DataFrame,
    *,
    measure: str = "emg_rms_uv",
    method: str = "nearest",
    caliper_sd: float = 0.2,
    n_strata: int = 5,
    conditions: Sequence[str] = ("ME", "MaE"),
) -> EmgMatching:
    """Match the epochs of two conditions on an EMG measure, within each subject.

    Parameters
    ----------
    metadata : pandas.DataFrame
        Epoch table of one or more subjects: ``epoch_id``, ``subject``,
        ``condition`` and the ``measure`` column (e.g. the bookkeeping table of
        :func:`mmme_neuro.epochs.make_epochs`). With a ``kept`` column only
        kept epochs are matched. Rows of other conditions are ignored.
    measure : str
        Column matched on (one of :data:`mmme_neuro.config.EMG_MEASURES`, or
        any numeric column). Epochs where it is missing are not matched
        (counted in ``n_missing``).
    method : {"nearest", "strata"}
        ``"nearest"``: 1:1 nearest-neighbour matching without replacement
        within a caliper. All pairs within the caliper are taken closest
        first (ties broken by the epoch ids), so the result does not depend
        on the order of the rows. ``"strata"``: the pooled values of the two
        conditions inside their common support (the range where both have
        epochs) are cut into ``n_strata`` quantile bins; each bin keeps
        ``min(n_a, n_b)`` epochs of each condition (the larger group's epochs
        nearest the smaller group's bin mean; ties: epoch id). Both are
        deterministic; no random draw is made.
    caliper_sd : float
        ``"nearest"``: largest within-pair difference, in units of the
        subject's pooled within-condition SD before matching (module notes).
        It bounds ``abs(smd_after) <= caliper_sd``.
    n_strata : int
        ``"strata"``: number of bins (>= 2).
    conditions : pair of str
        ``(a, b)``; SMDs are ``a - b``.

    Returns
    -------
    matching : EmgMatching
        The matched epochs and the per-subject report. Every subject with an
        epoch of either condition has a report row, including subjects where
        nothing could be matched (``status`` says why: ``"missing_condition"``
        if a condition has no epoch with a value, ``"no_spread"`` if the SD
        that scales the caliper cannot be computed (fewer than 2 epochs in
        each condition), ``"no_overlap"`` if no pair or stratum holds both
        conditions).

    Raises
    ------
    ValueError
        On a missing column, a non-numeric measure, an unknown method, a
        caliper or number of strata out of range, or bad conditions.

    Examples
    --------
    >>> import pandas as pd
    >>> md = pd.DataFrame({"epoch_id": ["a", "b", "c", "d"], "subject": "sub-01",
    ...                    "condition": ["ME", "ME", "MaE", "MaE"],
    ...                    "emg_rms_uv": [1.0, 5.0, 5.1, 9.0]})
    >>> m = match_emg(md, caliper_sd=0.2)
    >>> m.epoch_ids
    ('b', 'c')
    """
    _check_columns(metadata, ("epoch_id", "subject", "condition", measure), "metadata")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(conditions, str) or len(conditions) != 2 or conditions[0] == conditions[1]:
        raise ValueError(
            f"conditions must be two different labels such as ('ME', 'MaE'), got {conditions!r}"
        )
    a, b = (str(c) for c in conditions)
    if method == "nearest":
        if (
            isinstance(caliper_sd, bool)
            or not isinstance(caliper_sd, int | float)
            or not caliper_sd > 0
            or not math.isfinite(caliper_sd)
        ):
            raise ValueError(f"caliper_sd must be a positive number of SDs, got {caliper_sd!r}")
    elif isinstance(n_strata, bool) or not isinstance(n_strata, int | np.integer) or n_strata < 2:
        raise ValueError(f"n_strata must be an integer >= 2, got {n_strata!r}")
    if not pd.api.types.is_numeric_dtype(metadata[measure]):
        raise ValueError(
            f"measure {measure!r} must be numeric, got dtype {metadata[measure].dtype}"
        )
    if metadata["epoch_id"].duplicated().any():
        raise ValueError("metadata 'epoch_id' values must be unique")
    md = metadata
    if "kept" in md.columns:
        md = md[md["kept"].fillna(False).astype(bool)]
    md = md[md["condition"].astype(str).isin((a, b))]
    rows, selected = [], []
    for subject in sorted(md["subject"].astype(str).unique()):
        sub = md[md["subject"].astype(str) == subject]
        vals = pd.to_numeric(sub[measure], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(vals)
        cond = sub["condition"].astype(str).to_numpy()
        ids = sub["epoch_id"].astype(str).to_numpy()
        ma, mb = ok & (cond == a), ok & (cond == b)
        ida, xa, idb, xb = ids[ma], vals[ma], ids[mb], vals[mb]
        sd = _pooled_sd(xa, xb)
        row: dict[str, Any] = {
            "subject": subject,
            f"n_before_{a}": int(xa.size),
            f"n_before_{b}": int(xb.size),
            "n_missing": int((~ok).sum()),
            f"mean_before_{a}": float(xa.mean()) if xa.size else math.nan,
            f"mean_before_{b}": float(xb.mean()) if xb.size else math.nan,
            "pooled_sd": sd,
            "smd_before": _smd(xa, xb, sd),
            "caliper": caliper_sd * sd if method == "nearest" else math.nan,
        }
        keep_a: list[str] = []
        keep_b: list[str] = []
        max_diff = math.nan
        if not xa.size or not xb.size:
            status = "missing_condition"
            reason = f"no {a if not xa.size else b} epoch with a {measure} value"
        elif method == "nearest" and not np.isfinite(sd):
            status, reason = (
                "no_spread",
                "fewer than 2 epochs in each condition: no SD to scale the caliper",
            )
        else:
            if method == "nearest":
                pairs = _nearest(ida, xa, idb, xb, caliper_sd * sd)
                for k, (ea, eb, _) in enumerate(pairs):
                    keep_a.append(ea)
                    keep_b.append(eb)
                    group = f"{subject}:pair{k:03d}"
                    selected += [(ea, subject, a, group), (eb, subject, b, group)]
                max_diff = max((d for _, _, d in pairs), default=math.nan)
            else:
                for s, ka, kb in _strata(ida, xa, idb, xb, int(n_strata)):
                    keep_a += ka
                    keep_b += kb
                    group = f"{subject}:stratum{s}"
                    selected += [(e, subject, a, group) for e in ka] + [
                        (e, subject, b, group) for e in kb
                    ]
            status = "matched" if keep_a else "no_overlap"
            reason = (
                ""
                if keep_a
                else (
                    f"no {a}-{b} pair within the caliper "
                    f"({caliper_sd:g} SD = {caliper_sd * sd:.4g})"
                    if method == "nearest"
                    else f"no {measure} stratum holds both {a} and {b} epochs"
                )
            )
        va, vb = xa[np.isin(ida, keep_a)], xb[np.isin(idb, keep_b)]
        row.update(
            {
                f"n_after_{a}": int(va.size),
                f"n_after_{b}": int(vb.size),
                f"mean_after_{a}": float(va.mean()) if va.size else math.nan,
                f"mean_after_{b}": float(vb.mean()) if vb.size else math.nan,
                "smd_after": _smd(va, vb, sd),
                "max_pair_diff": max_diff,
                "status": status,
                "reason": reason,
            }
        )
        if status != "matched":
            logger.info("%s: no EMG-matched %s-%s epochs (%s)", subject, a, b, reason)
        rows.append(row)
    cols = [
        "subject",
        f"n_before_{a}",
        f"n_before_{b}",
        "n_missing",
        f"mean_before_{a}",
        f"mean_before_{b}",
        "pooled_sd",
        "smd_before",
        "caliper",
        f"n_after_{a}",
        f"n_after_{b}",
        f"mean_after_{a}",
        f"mean_after_{b}",
        "smd_after",
        "max_pair_diff",
        "status",
        "reason",
    ]
    report = pd.DataFrame(rows, columns=cols)
    report.insert(1, "measure", measure)
    report.insert(2, "method", method)
    values = dict(
        zip(md["epoch_id"].astype(str), pd.to_numeric(md[measure], errors="coerce"), strict=True)
    )
    sel = pd.DataFrame(selected, columns=["epoch_id", "subject", "condition", "match_group"])
    sel.insert(3, "value", [float(values[e]) for e in sel["epoch_id"]])
    sel = sel.sort_values(
        ["subject", "match_group", "condition", "epoch_id"], kind="stable"
    ).reset_index(drop=True)
    options = {
        "measure": measure,
        "method": method,
        "conditions": [a, b],
        "caliper_sd": float(caliper_sd) if method == "nearest" else None,
        "n_strata": int(n_strata) if method == "strata" else None,
    }
    return EmgMatching(
        selected=sel,
        report=report,
        measure=measure,
        method=method,
        caliper_sd=options["caliper_sd"],
        n_strata=options["n_strata"],
        conditions=(a, b),
        options=options,
    )


def matching_options(config: Config) -> dict[str, Any] | None:
    """Keyword arguments of :func:`match_emg` from ``config.emg_matching``; None when it is
    ``"off"``."""
    m = config.emg_matching
    if m.method == "off":
        return None
    if m.measure not in EMG_MEASURES:  # pragma: no cover - the configuration validates it
        raise ValueError(f"emg_matching.measure {m.measure!r} is not an EMG measure {EMG_MEASURES}")
    return {
        "measure": m.measure,
        "method": m.method,
        "caliper_sd": m.caliper_sd,
        "n_strata": m.n_strata,
    }


# ----------------------------------------------------------------------------- flags


def cluster_survival(
    main: Any,
    matched: Any | None,
    *,
    matched_data: xr.DataArray | None = None,
    dim: str = "condition",
) -> pd.DataFrame:
    """Which significant clusters of a cluster test survive in the test of the EMG-matched data.

    Rule: a significant cluster of ``main`` survives when ``matched`` has a
    significant cluster of the same sign that overlaps it (shares at least
    one channel x time (x frequency) point). It disappears when the matched
    test has none. When the matched test could not be run (``matched`` None:
    too few subjects with matched epochs), survival is unknown (None).

    Parameters
    ----------
    main, matched : ClusterResult | None
        :func:`mmme_neuro.stats.cluster_test` of the same contrast over the
        same features, on all kept epochs and on the matched epochs.
    matched_data : xarray.DataArray | None
        The matched subject-level data ``(subject, condition, <features>)``:
        when given, ``matched_mean_diff`` is the mean over subjects of the
        matched difference averaged over the main cluster's points (compare
        it with the main cluster's ``mean_diff``: an effect that shrinks,
        rather than one that only gets noisier, is muscle).
    dim : str
        Condition dim of ``matched_data``.

    Returns
    -------
    table : pandas.DataFrame
        One row per significant cluster of ``main``: ``cluster``, ``sign``,
        ``p``, ``mean_diff`` (main), ``survives_emg_matching`` (True, False or
        None), ``matched_clusters`` (comma list of the overlapping
        significant same-sign matched clusters), ``matched_p`` (smallest p
        among the overlapping same-sign matched clusters, significant or not;
        NaN without one), ``matched_mean_diff``.
    """
    cols = [
        "cluster",
        "sign",
        "p",
        "mean_diff",
        "survives_emg_matching",
        "matched_clusters",
        "matched_p",
        "matched_mean_diff",
    ]
    table = main.clusters
    if not len(table):
        return pd.DataFrame(columns=cols)
    sig = table[table["significant"].astype(bool)]
    masks = main.cluster_masks
    if matched is not None:
        mm = matched.cluster_masks
        features = [d for d in masks.dims if d != "cluster"]
        if [d for d in mm.dims if d != "cluster"] != features or any(
            not np.array_equal(np.asarray(masks[d].values), np.asarray(mm[d].values))
            for d in features
        ):
            raise ValueError(
                "the matched test must run over the same features (dims and coordinates) as the "
                "main one"
            )
    diff = None
    if matched_data is not None:
        a, b = main.contrast
        diff = (matched_data.sel({dim: a}) - matched_data.sel({dim: b})).transpose(
            "subject", *masks.dims[1:]
        )
    rows = []
    for r in sig.to_dict(orient="records"):
        m = masks.sel(cluster=r["cluster"]).values.astype(bool)
        hits, ps = [], []
        if matched is not None and len(matched.clusters):
            for q in matched.clusters.to_dict(orient="records"):
                if int(q["sign"]) != int(r["sign"]):
                    continue
                if not (mm.sel(cluster=q["cluster"]).values.astype(bool) & m).any():
                    continue
                ps.append(float(q["p"]))
                if bool(q["significant"]):
                    hits.append(int(q["cluster"]))
        mdiff = math.nan
        if diff is not None:
            per_subject = diff.values.reshape(diff.sizes["subject"], -1)[:, m.ravel()].mean(axis=1)
            per_subject = per_subject[np.isfinite(per_subject)]
            mdiff = float(per_subject.mean()) if per_subject.size else math.nan
        rows.append(
            {
                "cluster": int(r["cluster"]),
                "sign": int(r["sign"]),
                "p": float(r["p"]),
                "mean_diff": float(r.get("mean_diff", math.nan)),
                "survives_emg_matching": None if matched is None else bool(hits),
                "matched_clusters": ",".join(str(h) for h in hits),
                "matched_p": min(ps) if ps else math.nan,
                "matched_mean_diff": mdiff,
            }
        )
    return pd.DataFrame(rows, columns=cols)


def node_survival(
    main: pd.DataFrame,
    matched: pd.DataFrame | None,
    *,
    alpha: float = 0.05,
    keys: Sequence[str] = ("band", "node"),
) -> pd.DataFrame:
    """Which significant nodes of a node-wise test survive in the test of the EMG-matched data.

    Rule: a node significant in ``main`` (max-statistic FWER, or FDR when
    only that) survives when, in ``matched``, the same node (and band) is
    significant by the same criterion (``p_maxstat`` or ``p_fdr`` below
    ``alpha``) with a t of the same sign. ``matched`` None (the matched test
    could not be run): survival unknown (None).

    Parameters
    ----------
    main, matched : pandas.DataFrame | None
        :func:`mmme_neuro.netanalysis.nodal_contrasts` tables (``band``,
        ``node``, ``t``, ``p_maxstat``, ``p_fdr``, ``significant``,
        ``significant_fdr``) of the same contrast.
    alpha : float
        Significance level.
    keys : sequence of str
        Columns that identify a node.

    Returns
    -------
    table : pandas.DataFrame
        One row per significant node of ``main``: the ``keys``, ``t``,
        ``criterion`` (``"maxstat"`` or ``"fdr"``), ``survives_emg_matching``,
        ``matched_t``, ``matched_p_maxstat``, ``matched_p_fdr``.
    """
    need = (*keys, "t", "p_maxstat", "p_fdr", "significant")
    _check_columns(main, need, "main")
    if matched is not None:
        _check_columns(matched, need, "matched")
    fdr_sig = main["significant_fdr"].astype(bool) if "significant_fdr" in main.columns else False
    sig = main[main["significant"].astype(bool) | fdr_sig]
    other = None if matched is None else matched.set_index(list(keys))
    rows = []
    for r in sig.to_dict(orient="records"):
        crit = "maxstat" if bool(r["significant"]) else "fdr"
        row = {k: r[k] for k in keys}
        row.update(
            t=float(r["t"]),
            criterion=crit,
            survives_emg_matching=None,
            matched_t=math.nan,
            matched_p_maxstat=math.nan,
            matched_p_fdr=math.nan,
        )
        if other is not None:
            key = tuple(r[k] for k in keys)
            q = other.loc[key] if key in other.index else None
            if q is not None:
                p = float(q["p_maxstat"] if crit == "maxstat" else q["p_fdr"])
                row.update(
                    matched_t=float(q["t"]),
                    matched_p_maxstat=float(q["p_maxstat"]),
                    matched_p_fdr=float(q["p_fdr"]),
                )
                row["survives_emg_matching"] = bool(
                    p < alpha and np.sign(q["t"]) == np.sign(r["t"])
                )
            else:
                row["survives_emg_matching"] = False
        rows.append(row)
    return pd.DataFrame(
        rows,
        columns=[
            *keys,
            "t",
            "criterion",
            "survives_emg_matching",
            "matched_t",
            "matched_p_maxstat",
            "matched_p_fdr",
        ],
    )


def matched_epochs(
    metadata: pd.DataFrame,
    config: Config,
    conditions: Sequence[str] = ("ME", "MaE"),
) -> tuple[EmgMatching, pd.DataFrame, pd.DataFrame] | None:
    """The group level's matching: :func:`match_emg` (``config.emg_matching``), minimum-count rule.

    Parameters
    ----------
    metadata : pandas.DataFrame
        Epoch metadata of all subjects (the bookkeeping tables of the first level).
    config : Config
        ``emg_matching`` and ``epochs.min_epochs_per_condition``.
    conditions : pair of str
        Conditions matched.

    Returns
    -------
    (matching, metadata, min_count) | None
        The matching, the metadata restricted to the matched epochs
        (:meth:`EmgMatching.apply`) and its :func:`mmme_neuro.epochs.apply_min_count`
        report over the two conditions (subjects with fewer matched epochs than
        ``epochs.min_epochs_per_condition`` leave the matched contrast); None when
        ``emg_matching.method`` is ``"off"``.
    """
    options = matching_options(config)
    if options is None:
        return None
    m = match_emg(metadata, conditions=tuple(conditions), **options)
    md = m.apply(metadata)
    _, report = apply_min_count(md, config, conditions=tuple(conditions))
    return m, md, report


def check_counts(matching: EmgMatching, n_epochs: xr.DataArray) -> None:
    """Check that the first level's averages hold the epochs the group level's matching selects.

    Parameters
    ----------
    matching : EmgMatching
        The group level's matching.
    n_epochs : xarray.DataArray
        Epochs of the stored matched averages, ``(subject, condition)``.

    Raises
    ------
    ValueError
        Naming the first subject and condition whose counts differ (a cache
        written with other matching settings or another metadata table).
    """
    want = matching.counts().set_index(["subject", "condition"])["n_matched"]
    subjects = [str(v) for v in n_epochs["subject"].values]
    conds = [str(v) for v in n_epochs["condition"].values]
    values = np.asarray(n_epochs.transpose("subject", "condition").values)
    have = {(s, c): values[i, j] for i, s in enumerate(subjects) for j, c in enumerate(conds)}
    for key, n in want.items():
        got = int(np.nan_to_num(have.get(key, 0)))
        if got != int(n):
            raise ValueError(
                f"{key[0]} {key[1]}: the first level averaged {got} EMG-matched epochs but the "
                "matching "
                f"selects {int(n)} (a stale first-level cache? delete it to recompute)"
            )


def cluster_test_info(result: Any | None, reason: str = "") -> dict[str, Any]:
    """``results.emg_matched.test`` of a matched cluster test
    (:class:`mmme_neuro.stats.ClusterResult` or None)."""
    if result is None:
        return {
            "tested": False,
            "reason": reason or "fewer than 2 subjects with enough matched epochs",
        }
    tab = result.clusters
    sig = tab[tab["significant"].astype(bool)] if len(tab) else tab
    clusters = []
    for r in sig.to_dict(orient="records"):
        spatial = r.get("channels", r.get("nodes")) or ""
        clusters.append(
            {
                "cluster": int(r["cluster"]),
                "sign": int(r["sign"]),
                "p": float(r["p"]),
                "mass": float(r["mass"]),
                "n_sites": len(str(spatial).split(",")) if spatial else 0,
                "time_s": [r["time_min_s"], r["time_max_s"]] if "time_min_s" in r else None,
                "freq_hz": [r["freq_min_hz"], r["freq_max_hz"]] if "freq_min_hz" in r else None,
                "peak": r.get("peak_channel", r.get("peak_node")),
            }
        )
    return {
        "tested": True,
        "test": "cluster permutation test (paired t, sign flips)",
        "n_subjects": result.n_subjects,
        "n_clusters": int(len(tab)),
        "n_significant": result.n_significant,
        "n_permutations": result.n_permutations,
        "exact": result.exact,
        "threshold_t": result.threshold,
        "dropped_subjects": list(result.dropped_subjects),
        "significant_clusters": clusters,
    }


def cluster_effects(
    main: Any | None,
    matched: Any | None,
    *,
    matched_data: xr.DataArray | None = None,
    label: Callable[[Mapping[str, Any]], str] | None = None,
) -> list[dict[str, Any]]:
    """``results.emg_matched.effects`` of a cluster test: one record per significant cluster.

    Parameters
    ----------
    main, matched : ClusterResult | None
        The main and the matched test (:func:`cluster_survival`).
    matched_data : xarray.DataArray | None
        See :func:`cluster_survival`.
    label : callable | None
        Short text of a main cluster from its row of ``main.clusters``
        (extent, channels); None: ``"cluster <id>"``.

    Returns
    -------
    effects : list of dict
        ``contrast``, ``kind`` (``"cluster"``), ``cluster``, ``sign``, ``p``,
        ``mean_diff``, ``survives_emg_matching``, ``matched_clusters``,
        ``matched_p``, ``matched_mean_diff``, ``retained`` (matched over main
        mean difference on the cluster's points: near 1 when the effect is
        there but the matched test lacks power, near 0 when it was muscle),
        ``label``.
    """
    if main is None:
        return []
    surv = cluster_survival(main, matched, matched_data=matched_data)
    rows = main.clusters.set_index("cluster")
    name = f"{main.contrast[0]}-{main.contrast[1]}"
    out = []
    for r in surv.to_dict(orient="records"):
        r["survives_emg_matching"] = _flag(r["survives_emg_matching"])
        row = {**rows.loc[r["cluster"]].to_dict(), "cluster": r["cluster"]}
        text = label(row) if label is not None else f"cluster {r['cluster']}"
        md, d = r["matched_mean_diff"], r["mean_diff"]
        r["retained"] = float(md / d) if np.isfinite(md) and np.isfinite(d) and d != 0 else math.nan
        if r["survives_emg_matching"] is not None and np.isfinite(md):
            kept = 100 * r["retained"]
            text += f": mean difference {d:.3g}, matched {md:.3g} ({kept:.0f} % retained)"
        out.append({"contrast": name, "kind": "cluster", **r, "label": text})
    return out


# ----------------------------------------------------------------------------- reporting


def _stat(values: pd.Series) -> dict[str, float | None]:
    v = pd.to_numeric(values, errors="coerce").dropna()
    if not len(v):
        return {"median": None, "max_abs": None}
    return {"median": float(v.median()), "max_abs": float(v.abs().max())}


def _flag(value: Any) -> bool | None:
    """A survival flag as a Python bool, or None (unknown)."""
    return (
        None if value is None or (isinstance(value, float) and math.isnan(value)) else bool(value)
    )


def summary_block(
    matching: EmgMatching,
    min_count: pd.DataFrame,
    test: Mapping[str, Any],
    effects: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The ``results.emg_matched`` block of summary.json (``docs/summary-json.md``).

    Parameters
    ----------
    matching : EmgMatching
        The matching.
    min_count : pandas.DataFrame
        :func:`mmme_neuro.epochs.apply_min_count` report of the matched
        epochs (the two matched conditions).
    test : mapping
        The matched test: ``tested`` (bool) and its description (subjects,
        permutations ...), or ``reason`` when not tested.
    effects : sequence of mapping
        The significant effects of the main test, each with
        ``survives_emg_matching`` and a short ``label``.

    Returns
    -------
    block : dict
    """
    a, b = matching.conditions
    rep = matching.report
    excluded = min_count[~min_count["included"]]
    tested_subjects = sorted(
        set(min_count.loc[min_count["included"] & min_count["condition"].eq(a), "subject"])
        & set(min_count.loc[min_count["included"] & min_count["condition"].eq(b), "subject"])
    )
    return {
        "contrast": f"{a}-{b}",
        "method": matching.method,
        "measure": matching.measure,
        "caliper_sd": matching.caliper_sd,
        "n_strata": matching.n_strata,
        "n_subjects": int(len(rep)),
        "n_subjects_matched": int((rep["status"] == "matched").sum()),
        "subjects_tested": tested_subjects,
        "subjects_not_matched": {
            str(r["subject"]): f"{r['status']}: {r['reason']}"
            for r in rep[rep["status"] != "matched"].to_dict(orient="records")
        },
        "min_count_excluded": [
            f"{r.subject}:{r.condition} ({r.reason})" for r in excluded.itertuples()
        ],
        "epochs_before": {c: int(rep[f"n_before_{c}"].sum()) for c in (a, b)},
        "epochs_after": {c: int(rep[f"n_after_{c}"].sum()) for c in (a, b)},
        "smd_before": _stat(rep["smd_before"]),
        "smd_after": _stat(rep["smd_after"]),
        "test": dict(test),
        "effects": [dict(e) for e in effects],
        "n_disappear": int(sum(e.get("survives_emg_matching") is False for e in effects)),
    }


def markdown_lines(
    block: Mapping[str, Any] | None,
    test_line: Callable[[Mapping[str, Any]], str] | None = None,
    *,
    what: str = "effect",
) -> list[str]:
    """The summary.md section of the EMG-matched sensitivity analysis.

    Parameters
    ----------
    block : mapping | None
        ``results.emg_matched`` (:func:`summary_block`); None (matching off,
        or an older summary): no section.
    test_line : callable | None
        Text of the matched test's result from ``block["test"]`` (each
        analysis words its own test); None: not printed.
    what : str
        What an effect is (``"cluster"``, ``"node"``).

    Returns
    -------
    lines : list of str
    """
    if not block:
        return []
    contrast = block["contrast"]
    a, b = contrast.split("-", 1)
    how = (
        f"nearest neighbour 1:1 without replacement, caliper {block['caliper_sd']:g} SD"
        if block["method"] == "nearest"
        else f"{block['n_strata']} EMG quantile strata, equal counts per stratum"
    )
    bef, aft = block["smd_before"], block["smd_after"]

    def _g(x: Any) -> str:
        return "n/a" if x is None else f"{float(x):.2f}"

    lines = [
        "",
        f"## EMG-matched {a} - {b} (sensitivity analysis)",
        "",
        f"- {a} and {b} epochs matched on {block['measure']} within each subject ({how}): {a} "
        f"{block['epochs_after'][a]} of {block['epochs_before'][a]}, {b} "
        f"{block['epochs_after'][b]} of "
        f"{block['epochs_before'][b]} epochs kept in {block['n_subjects_matched']} of "
        f"{block['n_subjects']} subjects; "
        f"standardised mean difference of {block['measure']} ({a} - {b}) median "
        f"{_g(bef['median'])} before, "
        f"{_g(aft['median'])} after matching (largest absolute value after: {_g(aft['max_abs'])}).",
    ]
    if block["subjects_not_matched"]:
        lines.append(
            "- Not matched (no EMG overlap or too few epochs): "
            + "; ".join(f"{s} ({why})" for s, why in block["subjects_not_matched"].items())
            + "."
        )
    few = [
        e
        for e in block["min_count_excluded"]
        if e.split(":", 1)[0] not in block["subjects_not_matched"]
    ]
    if few:
        lines.append(
            f"- Left out of the matched contrast (too few matched epochs): {', '.join(few)}."
        )
    test = block["test"]
    if test.get("tested") and test_line is not None:
        lines.append(f"- Matched test: {test_line(test)}")
    effects = block["effects"]
    gone = [e for e in effects if e.get("survives_emg_matching") is False]
    kept = [e for e in effects if e.get("survives_emg_matching") is True]
    if not test.get("tested"):
        lines.append(
            f"- The matched test could not be run ({test.get('reason', 'too few subjects')}): "
            + (
                f"the {len(effects)} significant {contrast} {what}(s) of the main test cannot be "
                "told apart "
                f"from facial EMG (`survives_emg_matching: null`)."
                if effects
                else f"there is no significant {contrast} {what} to check."
            )
        )
    elif not effects:
        lines.append(f"- The main test has no significant {contrast} {what}: nothing to flag.")
    else:
        lines.append(
            f"- **{what.capitalize()}s that disappear under EMG matching** ({len(gone)} of "
            f"{len(effects)}): " + ("; ".join(e["label"] for e in gone) if gone else "none") + "."
        )
        if kept:
            lines.append(f"- Surviving: {'; '.join(e['label'] for e in kept)}.")
        if gone:
            lines.append(
                "- An effect also disappears when the matched test, with fewer epochs, lacks "
                "power: compare "
                "its size before and after matching (above; in summary.json `matched_mean_diff` "
                "of a cluster, "
                "`matched_t` of a node): one that keeps its size is not explained by EMG, one "
                "that shrinks "
                "towards 0 is."
            )
    return lines
