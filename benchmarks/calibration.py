"""Null-calibration harness: inferential families, rates over null data sets, binomial CIs.

A *family* is one inferential procedure as an analysis reports it (an ERP
cluster test, a trial-level mixed model, a decoding permutation p-value ...).
It is given two functions:

- ``null(rng, s)``: draw one null data set *at the level the test consumes*
  (subject-level arrays, trial tables, epoch features) in which every subject
  has its own effect, drawn from N(0, s) in units of the trial-noise SD, so
  that the population effect is exactly zero; run the test; return True when
  it rejects at alpha = .05 (for a corrected family: when *any* test of the
  family rejects, i.e. a family-wise error).
- ``power(rng, s)`` (optional): the same with a realistic population effect;
  return ``{"family": bool, "subject_level": bool}``: whether the family and
  the plain subject-level test of the same contrast (a paired t on subject
  means, or a one-sample t of per-subject scores) reject.

:func:`false_positive_rate` and :func:`power` run a family over many data sets
(each from its own seeded generator, so results do not depend on the order or
the number of processes) and return the rate with its exact (Clopper-Pearson)
binomial 95 % CI. ``benchmarks/bench_calibration.py`` runs every family;
``tests/test_calibration.py`` runs a few with fewer data sets.

The families themselves live in ``calibration_trial.py`` (trial-level models),
``calibration_subject.py`` (cluster, max-stat, FDR, NBS) and
``calibration_decoding.py`` (decoding permutation p-values and time clusters).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
#: Target band of every family's false-positive rate at alpha = .05 (issue 23).
TARGET = (0.03, 0.07)
#: Between-subject SDs of the condition effect, in trial-noise SDs.
HETEROGENEITY = (0.0, 0.5, 1.0)


@dataclass(frozen=True)
class Family:
    """One inferential family.

    Attributes
    ----------
    name : str
        Short unique key (``"erp_cluster"``).
    title : str
        What a reader sees in the table (``"ERP cluster test (channel x time)"``).
    level : str
        What the null data are: ``"subject"`` (subject x condition arrays),
        ``"trial"`` (trial tables) or ``"epoch"`` (epoch features).
    error_rate : str
        ``"FWER"`` (any test of the family rejects) or ``"per test"``.
    null : callable
        ``null(rng, s) -> bool``: one null data set at heterogeneity ``s``;
        True when the family rejects.
    power : callable | None
        ``power(rng, s) -> {"family": bool, "subject_level": bool}`` on data
        with a realistic planted effect.
    effect : str
        The planted effect of ``power`` in words (printed with the table).
    cost : float
        Relative cost of one data set (1 = a fraction of a second); the
        benchmark may run fewer power data sets for costly families.
    """

    name: str
    title: str
    level: str
    error_rate: str
    null: Callable[[np.random.Generator, float], bool]
    power: Callable[[np.random.Generator, float], dict[str, bool]] | None = None
    effect: str = ""
    cost: float = 1.0


def rng_for(family: str, what: str, s: float, i: int, seed: int = 0) -> np.random.Generator:
    """The generator of data set ``i``: independent of run order and process count."""
    key = zlib.crc32(f"{family}/{what}".encode())
    return np.random.default_rng([seed, key, int(round(s * 1000)), i])


def binomial_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a proportion ``k / n``."""
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(k, n, alpha=1 - level, method="beta")
    return float(lo), float(hi)


def _run(fn: Callable[[int], object], n: int, n_jobs: int) -> list:
    if n_jobs == 1:
        return [fn(i) for i in range(n)]
    from joblib import Parallel, delayed

    return Parallel(n_jobs=n_jobs)(delayed(fn)(i) for i in range(n))


class _NullCall:
    """Picklable ``i -> family.null(rng_i, s)`` (joblib needs no closures)."""

    def __init__(self, family: Family, s: float, seed: int):
        self.family, self.s, self.seed = family, s, seed

    def __call__(self, i: int) -> bool:
        return bool(self.family.null(rng_for(self.family.name, "null", self.s, i, self.seed), self.s))


class _PowerCall(_NullCall):
    def __call__(self, i: int) -> dict[str, bool]:  # type: ignore[override]
        out = self.family.power(rng_for(self.family.name, "power", self.s, i, self.seed), self.s)
        return {k: bool(v) for k, v in out.items()}


def false_positive_rate(family: Family, s: float, n: int, *, seed: int = 0, n_jobs: int = 1) -> dict:
    """Share of ``n`` null data sets (heterogeneity ``s``) in which ``family`` rejects.

    Returns
    -------
    result : dict
        ``family``, ``s``, ``n``, ``k`` (rejections), ``rate``, ``ci_low``,
        ``ci_high`` (exact 95 %) and ``in_target`` (the rate inside
        :data:`TARGET`) and ``ci_covers_alpha``.
    """
    hits = _run(_NullCall(family, s, seed), n, n_jobs)
    k = int(sum(hits))
    lo, hi = binomial_ci(k, n)
    rate = k / n
    return {"family": family.name, "s": s, "n": n, "k": k, "rate": rate, "ci_low": lo, "ci_high": hi,
            "in_target": TARGET[0] <= rate <= TARGET[1],
            "ci_covers_alpha": lo <= ALPHA <= hi}


def power(family: Family, n: int, *, s: float = 0.5, seed: int = 0, n_jobs: int = 1) -> dict | None:
    """Share of ``n`` data sets with a planted effect in which the family / the subject-level test reject."""
    if family.power is None:
        return None
    out = _run(_PowerCall(family, s, seed), n, n_jobs)
    res: dict = {"family": family.name, "s": s, "n": n, "effect": family.effect}
    for key in ("family", "subject_level"):
        k = int(sum(o[key] for o in out))
        lo, hi = binomial_ci(k, n)
        res[key] = {"k": k, "rate": k / n, "ci_low": lo, "ci_high": hi}
    return res


def select(families: Sequence[Family], names: Sequence[str] | None) -> list[Family]:
    """The families named (all when ``names`` is None); unknown names are an error."""
    if not names:
        return list(families)
    known = {f.name: f for f in families}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown families {unknown}; known: {sorted(known)}")
    return [known[n] for n in names]
