"""Statistics layer shared by every analysis (ERP, time-frequency, networks, physiology).

Functions first; one small result object (:class:`ClusterResult`) because
users keep working with a cluster test's masks and tables.

- :func:`channel_adjacency` - Quik-Cap 64 channel neighbours (Delaunay, as
  :func:`mne.channels.find_ch_adjacency`, or a distance criterion).
- :func:`cluster_test` - within-subject cluster-based permutation test of a
  condition contrast over channel x time (ERP), channel x freq x time (TFR),
  node x band ... (Maris & Oostenveld 2007), via
  :func:`mne.stats.permutation_cluster_1samp_test`.
- :func:`node_permutation_test` - paired sign-flip test per feature (node,
  channel, band ...) with max-statistic (FWER) and FDR correction.
- :func:`paired_test` - paired t-test (or Wilcoxon) of one subject-level
  measure with pingouin.
- :func:`planned_contrasts` - planned (preregistered) ROI x window (x band)
  contrasts: subject-level data averaged over each region, paired t-tests,
  Holm (or another) correction within the planned family.
- :func:`mixed_model` / :func:`mixed_models_fdr` - trial-level linear mixed
  models with statsmodels: by-subject random condition slopes (the maximal
  structure that converges), t tests on n_subjects - 1 df, the subject-level
  paired test beside them, optional covariates such as facial EMG, FDR across
  measures.
- :func:`fdr` - false-discovery-rate correction (statsmodels).

Every table is tidy (one row per test) and carries the number of subjects
(and of trials per condition for trial-level data), the test, the statistic,
the p-value (and the corrected one), an effect size and a 95 % confidence
interval, so it can be copied into a paper.

Conventions: the contrast ``("ME", "MaE")`` is ``ME - MaE`` (minuend first,
as in ``summary.json``). Public functions validate their arguments and raise
:class:`ValueError` with a message that says what was expected; private
``_helpers`` trust their input. Seeds default to :attr:`Config.seed
<mmme_neuro.config.Config.seed>`, so results are reproducible by default.

References
----------
Maris E, Oostenveld R (2007). Nonparametric statistical testing of EEG- and
MEG-data. J Neurosci Methods 164:177-190.
Nichols TE, Holmes AP (2002). Nonparametric permutation tests for functional
neuroimaging: a primer with examples. Hum Brain Mapp 15:1-25.
Benjamini Y, Hochberg Y (1995). Controlling the false discovery rate. J R Stat
Soc B 57:289-300.
Lakens D (2013). Calculating and reporting effect sizes to facilitate
cumulative science. Front Psychol 4:863.
Barr DJ, Levy R, Scheepers C, Tily HJ (2013). Random effects structure for
confirmatory hypothesis testing: keep it maximal. J Mem Lang 68:255-278.
Westfall J, Kenny DA, Judd CM (2014). Statistical power and optimal design in
experiments in which samples of participants respond to samples of stimuli.
J Exp Psychol Gen 143:2020-2045.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import mne
import numpy as np
import pandas as pd
import xarray as xr
from scipy import sparse
from scipy import stats as sstats

from .config import Config, StatsConfig
from .containers import provenance
from .reporting import make_contrast

__all__ = [
    "FEATURE_DIMS",
    "ClusterResult",
    "channel_adjacency",
    "cluster_test",
    "fdr",
    "mixed_model",
    "mixed_models_fdr",
    "node_permutation_test",
    "paired_test",
    "planned_contrasts",
]

logger = logging.getLogger(__name__)

#: Dimensions a test may run over (everything except subject and the contrast dim).
FEATURE_DIMS: tuple[str, ...] = ("channel", "node", "band", "freq", "time")
#: Feature dims whose adjacency is spatial (channel neighbours from the montage).
_SPATIAL_DIMS = ("channel", "node")
#: Feature dims with a numeric axis (extent reported as min/max, with unit suffix).
_NUMERIC_DIMS = {"time": "s", "freq": "hz"}
#: Column name of the list of a categorical dim's labels in a cluster.
_PLURAL = {"channel": "channels", "node": "nodes", "band": "bands"}
_FDR_METHODS = ("fdr_bh", "fdr_by", "fdr_tsbh", "fdr_tsbky")
_DEFAULT_OPTIMIZERS: tuple[str, ...] = ("lbfgs", "powell")


# --------------------------------------------------------------------------------------
# Validation helpers (public edge)
# --------------------------------------------------------------------------------------
def _resolve_config(config: Config | StatsConfig | None) -> tuple[StatsConfig, int, Config | None]:
    """Return (stats section, default seed, full config or None)."""
    if config is None:
        cfg = Config()
        return cfg.stats, cfg.seed, None
    if isinstance(config, Config):
        return config.stats, config.seed, config
    if isinstance(config, StatsConfig):
        return config, Config().seed, None
    raise TypeError(f"config must be a Config, a StatsConfig or None, got {type(config).__name__}")


def _check_contrast(contrast: Any) -> tuple[str, str]:
    if isinstance(contrast, str) or not isinstance(contrast, Sequence) or len(contrast) != 2:
        raise ValueError(f"contrast must be a pair of condition labels such as ('ME', 'MaE'), got {contrast!r}")
    a, b = (str(c) for c in contrast)
    if a == b:
        raise ValueError(f"contrast compares a condition with itself: {contrast!r}")
    return a, b


def _check_tail(tail: int) -> int:
    if tail not in (-1, 0, 1):
        raise ValueError(f"tail must be -1, 0 or 1, got {tail!r}")
    return int(tail)


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_prob(value: Any, name: str) -> float:
    if not isinstance(value, int | float | np.floating) or not 0 < float(value) < 1:
        raise ValueError(f"{name} must be a probability in (0, 1), got {value!r}")
    return float(value)


def _check_seed(seed: Any, default: int) -> int:
    if seed is None:
        return default
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    return int(seed)


def _paired_difference(
    data: xr.DataArray, contrast: tuple[str, str], dim: str
) -> tuple[xr.DataArray, list[str], list[str]]:
    """Validate ``data`` and return (difference a - b over (subject, *features), features, dropped)."""
    if not isinstance(data, xr.DataArray):
        raise TypeError(f"data must be an xarray.DataArray, got {type(data).__name__}")
    if not isinstance(dim, str):
        raise ValueError(f"dim must be a dimension name, got {dim!r}")
    missing = [d for d in ("subject", dim) if d not in data.dims]
    if missing:
        raise ValueError(
            f"data must have dims ('subject', {dim!r}, <feature dims>); missing {missing}, got {data.dims}"
        )
    features = [d for d in data.dims if d not in ("subject", dim)]
    bad = [d for d in features if d not in FEATURE_DIMS]
    if bad:
        hint = " (average epochs per subject and condition first)" if "epoch" in bad else ""
        raise ValueError(f"unsupported feature dims {bad}{hint}; feature dims must be among {FEATURE_DIMS}")
    if not features:
        raise ValueError(f"data has no feature dims besides 'subject' and {dim!r}; use paired_test for a scalar measure")
    for d in features:
        if data.sizes[d] == 0:
            raise ValueError(f"feature dim {d!r} is empty")
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise ValueError(f"data must be real-valued, got dtype {data.dtype}")
    labels = [str(v) for v in data[dim].values]
    absent = [c for c in contrast if c not in labels]
    if absent:
        raise ValueError(f"condition label(s) {absent} not found along {dim!r}; available: {labels}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate labels along {dim!r}: {labels}")
    subjects = [str(s) for s in data["subject"].values]
    if len(set(subjects)) != len(subjects):
        raise ValueError("duplicate subject labels; average within subject first")
    sel = data.assign_coords({dim: labels})
    diff = (sel.sel({dim: contrast[0]}) - sel.sel({dim: contrast[1]})).transpose("subject", *features)
    diff = diff.astype(float)
    finite = np.isfinite(diff.values.reshape(diff.sizes["subject"], -1)).all(axis=1)
    dropped = [s for s, ok in zip(subjects, finite, strict=True) if not ok]
    if dropped:
        logger.info(
            "%d subject(s) dropped from %s-%s (missing/NaN values): %s",
            len(dropped), contrast[0], contrast[1], ", ".join(dropped),
        )
        diff = diff.isel(subject=np.flatnonzero(finite))
    if diff.sizes["subject"] < 2:
        raise ValueError(
            f"at least 2 subjects with both conditions {contrast} are needed, got {diff.sizes['subject']}"
            + (f" ({len(dropped)} dropped for missing values)" if dropped else "")
        )
    return diff, features, dropped


def _mean_ci(d: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float, float]:
    """Return (mean, sd, dz, ci_low, ci_high) of paired differences ``d`` (1-D, t-based CI)."""
    n = d.size
    mean = float(np.mean(d))
    sd = float(np.std(d, ddof=1)) if n > 1 else math.nan
    dz = mean / sd if sd > 0 else math.nan
    half = sstats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n) if n > 1 else math.nan
    return mean, sd, dz, mean - half, mean + half


# --------------------------------------------------------------------------------------
# Adjacency
# --------------------------------------------------------------------------------------
def channel_adjacency(
    channels: Sequence[str],
    montage: mne.channels.DigMontage | None = None,
    *,
    distance_m: float | None = None,
) -> sparse.csr_array:
    """Return the channel adjacency (neighbour) matrix of EEG channels.

    Parameters
    ----------
    channels : sequence of str
        Channel names in the order of the data (Quik-Cap spelling, e.g.
        ``"FZ"``, ``"CB1"``).
    montage : mne.channels.DigMontage | None
        Electrode positions; None uses :func:`mmme_neuro.montage.make_quikcap64_montage`
        (CB1/CB2 at the positions of I1/I2).
    distance_m : float | None
        If None (default), neighbours are the edges of a Delaunay
        triangulation of the 2-D projected positions, computed by
        :func:`mne.channels.find_ch_adjacency` (what MNE does when no template
        adjacency exists, as for the Quik-Cap). If a distance (m), channels
        whose 3-D head positions are at most this far apart are neighbours
        (FieldTrip's ``'distance'`` method); about 0.04-0.05 m joins the
        nearest 10-10 sites.

    Returns
    -------
    adjacency : scipy.sparse.csr_array of bool, shape (n_channels, n_channels)
        Symmetric; the diagonal is True (MNE's convention). Row order follows
        ``channels``.

    Notes
    -----
    A Delaunay triangulation connects channels on the border of the cap
    across the gap between them when no channel lies in between: CB1-CB2 are
    neighbours (there is no Iz), as are FP1-FPZ-FP2. Use ``distance_m`` for a
    stricter criterion.
    """
    if isinstance(channels, str) or not isinstance(channels, Sequence) or len(channels) == 0:
        raise ValueError(f"channels must be a non-empty sequence of channel names, got {channels!r}")
    channels = [str(c) for c in channels]
    if len(set(channels)) != len(channels):
        raise ValueError("channel names must be unique")
    if montage is None:
        from .montage import make_quikcap64_montage

        montage = make_quikcap64_montage()
    if not isinstance(montage, mne.channels.DigMontage):
        raise TypeError(f"montage must be an mne.channels.DigMontage or None, got {type(montage).__name__}")
    pos = montage.get_positions()["ch_pos"]
    missing = [c for c in channels if c not in pos]
    if missing:
        raise ValueError(
            f"channel(s) {missing} have no position in the montage; pass a montage that has them "
            "or an explicit adjacency"
        )
    n = len(channels)
    if distance_m is not None:
        if not isinstance(distance_m, int | float) or distance_m <= 0:
            raise ValueError(f"distance_m must be a positive distance in metres, got {distance_m!r}")
        xyz = np.array([pos[c] for c in channels], dtype=float)
        dist = np.linalg.norm(xyz[:, None, :] - xyz[None, :, :], axis=-1)
        return sparse.csr_array(dist <= distance_m)
    if n <= 2:  # a triangulation needs 3 points; 1-2 channels are trivially adjacent
        return sparse.csr_array(np.ones((n, n), dtype=bool))
    info = mne.create_info(channels, 1000.0, "eeg")
    info.set_montage(montage, on_missing="raise", verbose="error")
    with mne.utils.use_log_level("error"):
        adj, names = mne.channels.find_ch_adjacency(info, ch_type="eeg")
    if list(names) != channels:  # pragma: no cover - MNE keeps info order
        order = [list(names).index(c) for c in channels]
        adj = sparse.csr_array(adj)[order][:, order]
    return sparse.csr_array(adj, dtype=bool)


def _feature_adjacency(
    diff: xr.DataArray, features: list[str], adjacency: Any
) -> tuple[sparse.coo_array, dict[str, str]]:
    """Combine per-dim adjacencies into one over the flattened features (C order)."""
    per_dim: Mapping[str, Any]
    if adjacency is None or (isinstance(adjacency, str) and adjacency == "auto"):
        per_dim = {}
    elif isinstance(adjacency, Mapping):
        unknown = [d for d in adjacency if d not in features]
        if unknown:
            raise ValueError(f"adjacency given for dims {unknown} that are not feature dims {features}")
        per_dim = adjacency
    elif sparse.issparse(adjacency) or isinstance(adjacency, np.ndarray):
        spatial = [d for d in features if d in _SPATIAL_DIMS]
        if len(spatial) != 1:
            raise ValueError(
                "a single adjacency matrix is the adjacency of the spatial dim ('channel' or 'node'); "
                f"data has {spatial or 'none'}; pass a dict {{dim: matrix}} instead"
            )
        per_dim = {spatial[0]: adjacency}
    else:
        raise ValueError(f"adjacency must be 'auto', None, a matrix or a dict {{dim: ...}}, got {adjacency!r}")
    structure: list[Any] = []
    described: dict[str, str] = {}
    for d in features:
        size = diff.sizes[d]
        spec = per_dim.get(d, "auto")
        if isinstance(spec, str) and spec == "auto":
            if d in _SPATIAL_DIMS:
                spec = channel_adjacency([str(c) for c in diff[d].values])
                described[d] = "Delaunay (Quik-Cap montage)"
            elif d in _NUMERIC_DIMS:
                spec = "lattice"
            else:
                spec = "none"
        if isinstance(spec, str) and spec == "lattice":
            structure.append(size)
            described[d] = "lattice"
        elif spec is None or (isinstance(spec, str) and spec == "none"):
            structure.append(np.zeros((size, size)))
            described[d] = "none"
        elif sparse.issparse(spec) or isinstance(spec, np.ndarray):
            if spec.shape != (size, size):
                raise ValueError(f"adjacency of {d!r} must have shape {(size, size)}, got {spec.shape}")
            structure.append(sparse.coo_array(spec))
            described.setdefault(d, "given")
        else:
            raise ValueError(f"adjacency of {d!r} must be 'auto', 'lattice', 'none'/None or a matrix, got {spec!r}")
    return mne.stats.combine_adjacency(*structure), described


# --------------------------------------------------------------------------------------
# Cluster-based permutation test
# --------------------------------------------------------------------------------------
@dataclass
class ClusterResult:
    """Result of :func:`cluster_test`.

    Attributes
    ----------
    t_obs : xarray.DataArray
        Observed paired t over the feature dims (``a - b``).
    clusters : pandas.DataFrame
        One row per cluster, sorted by p then by absolute mass, with
        ``cluster`` (id, 1 = best), ``p``, ``significant``, ``mass`` (sum of
        t), ``sign``, ``n_points``, the labels of categorical dims
        (``channels``, ``nodes``, ``bands``: comma lists in data order), the
        extent of numeric dims (``time_min_s``, ``time_max_s``,
        ``freq_min_hz``, ``freq_max_hz``), the peak (``peak_channel``,
        ``peak_time_s``, ``peak_freq_hz`` ..., ``peak_t``), the cluster-mean
        difference (``mean_diff``, ``ci_low``, ``ci_high``, ``cohen_dz``:
        descriptive, see Notes of :func:`cluster_test`) and the test
        description (``contrast``, ``test``, ``n_subjects``,
        ``n_permutations``, ``threshold``, ``correction``).
    mask : xarray.DataArray of bool
        Points in clusters with ``p < alpha``.
    cluster_masks : xarray.DataArray of bool
        Dims ``(cluster, *feature dims)``: the points of each cluster.
    n_subjects : int
        Subjects in the test (after dropping those with missing values).
    n_permutations : int
        Sign-flip permutations used (all of them when the test is exact).
    threshold : float
        Cluster-forming t threshold.
    contrast : tuple of str
        ``(a, b)``; the tested difference is ``a - b``.
    alpha : float
        Significance level of ``mask`` and ``significant``.
    tail : int
        0 two-sided, 1 ``a > b``, -1 ``a < b``.
    exact : bool
        True when all sign flips were enumerated.
    dropped_subjects : list of str
        Subjects dropped for missing (NaN) values.
    h0 : numpy.ndarray
        Permutation distribution of the maximum cluster mass.
    seed : int
        Seed of the permutations.
    """

    t_obs: xr.DataArray
    clusters: pd.DataFrame
    mask: xr.DataArray
    cluster_masks: xr.DataArray
    n_subjects: int
    n_permutations: int
    threshold: float
    contrast: tuple[str, str]
    alpha: float
    tail: int
    exact: bool
    dropped_subjects: list[str] = field(default_factory=list)
    h0: np.ndarray = field(default_factory=lambda: np.array([]))
    seed: int = 0

    @property
    def n_significant(self) -> int:
        """Number of clusters with ``p < alpha``."""
        return int(self.clusters["significant"].sum()) if len(self.clusters) else 0

    def to_contrast_records(self, *, significant_only: bool = True) -> list[dict[str, Any]]:
        """Return ``summary.json`` contrast records (:func:`mmme_neuro.reporting.make_contrast`).

        Parameters
        ----------
        significant_only : bool
            Only clusters with ``p < alpha``. When there is none, one record
            still reports the test: the best cluster (``significant`` False),
            or, without any cluster, a record with ``p`` None.

        Returns
        -------
        records : list of dict
            ``kind="cluster"``, ``location`` (channels or nodes), ``time_s``
            and ``freq_hz`` extents, ``statistic`` (cluster mass), ``p``
            (cluster-corrected), ``effect_size`` (Cohen's dz of the
            cluster-mean difference) and the keys ``statistic_name``,
            ``effect_size_name``, ``correction``, ``n``, ``ci_low``,
            ``ci_high``, ``cluster``, ``n_points``, ``peak_t``, ``threshold``,
            ``n_permutations``, ``significant`` (plus ``band`` and peak
            coordinates when present).
        """
        name = f"{self.contrast[0]}-{self.contrast[1]}"
        table = self.clusters
        if significant_only and len(table):
            sig = table[table["significant"]]
            table = sig if len(sig) else table.iloc[:1]
        if not len(table):
            return [
                make_contrast(
                    name, kind="cluster", statistic_name="cluster_mass", correction="cluster",
                    effect_size_name="cohen_dz", n=self.n_subjects, threshold=self.threshold,
                    n_permutations=self.n_permutations, significant=False, n_clusters=0,
                )
            ]
        records = []
        for row in table.to_dict(orient="records"):
            spatial = row.get("channels", row.get("nodes"))
            extra: dict[str, Any] = {}
            if "bands" in row:
                extra["band"] = row["bands"].split(",")
            for key in ("peak_channel", "peak_node", "peak_band", "peak_time_s", "peak_freq_hz"):
                if key in row:
                    extra[key] = row[key]
            records.append(
                make_contrast(
                    name,
                    kind="cluster",
                    location=spatial.split(",") if isinstance(spatial, str) else None,
                    time_s=[row["time_min_s"], row["time_max_s"]] if "time_min_s" in row else None,
                    freq_hz=[row["freq_min_hz"], row["freq_max_hz"]] if "freq_min_hz" in row else None,
                    statistic=row["mass"],
                    p=row["p"],
                    effect_size=row["cohen_dz"],
                    statistic_name="cluster_mass",
                    effect_size_name="cohen_dz",
                    correction="cluster",
                    n=self.n_subjects,
                    ci_low=row["ci_low"],
                    ci_high=row["ci_high"],
                    cluster=row["cluster"],
                    n_points=row["n_points"],
                    peak_t=row["peak_t"],
                    threshold=self.threshold,
                    n_permutations=self.n_permutations,
                    significant=bool(row["significant"]),
                    **extra,
                )
            )
        return records


def cluster_test(
    data: xr.DataArray,
    *,
    contrast: Sequence[str] = ("ME", "MaE"),
    dim: str = "condition",
    adjacency: Any = "auto",
    n_permutations: int | None = None,
    cluster_forming_p: float | None = None,
    tail: int = 0,
    seed: int | None = None,
    config: Config | StatsConfig | None = None,
    n_jobs: int | None = None,
) -> ClusterResult:
    """Within-subject cluster-based permutation test of a condition contrast.

    Parameters
    ----------
    data : xarray.DataArray
        Subject-level data with dims ``("subject", dim, *features)`` in any
        order, features among ``channel``, ``node``, ``band``, ``freq``,
        ``time`` (e.g. ``(channel, time)`` ERPs in V, ``(channel, freq,
        time)`` power). Subjects with any NaN in either condition (e.g. a
        condition without epochs) are dropped, logged and counted.
    contrast : pair of str
        Conditions ``(a, b)``; the test is on ``a - b`` per subject.
    dim : str
        Dimension that holds the conditions.
    adjacency : 'auto' | None | array | sparse matrix | dict
        ``'auto'`` (or None): channel/node neighbours from
        :func:`channel_adjacency` (Quik-Cap Delaunay), lattice along time and
        freq (neighbouring samples/bins), no adjacency across bands. A matrix
        replaces the spatial adjacency. A dict ``{dim: spec}`` sets single
        dims, ``spec`` being a matrix, ``'lattice'``, ``'none'``/None or
        ``'auto'``. Dims are combined with :func:`mne.stats.combine_adjacency`.
    n_permutations : int | None
        Sign-flip permutations; None: ``config.stats.n_permutations`` (1000).
        If it is at least the number of distinct sign flips
        (``2 ** (n - (tail == 0))``), all are enumerated (exact test).
    cluster_forming_p : float | None
        p of the cluster-forming threshold; None:
        ``config.stats.cluster_forming_p`` (0.05). Two-sided for ``tail=0``:
        ``threshold = t_{1 - p/2}(n - 1)``; one-sided otherwise.
    tail : {0, 1, -1}
        0 two-sided, 1 ``a > b``, -1 ``a < b``.
    seed : int | None
        Seed of the permutations; None: ``config.seed``.
    config : Config | StatsConfig | None
        Source of defaults (alpha, permutations, threshold p, seed) and of
        provenance; None: defaults.
    n_jobs : int | None
        Processes of the permutations (joblib; None: one). The sign flips are
        drawn before they are split, so the result does not depend on it.

    Returns
    -------
    result : ClusterResult
        t map, cluster table, significance masks and test description.

    Raises
    ------
    ValueError
        If a dim is missing or unsupported, a contrast label is absent, fewer
        than 2 subjects have both conditions, or an argument is out of range.

    Notes
    -----
    The paired t (one-sample t of the differences) is thresholded at the
    cluster-forming threshold; supra-threshold points that are adjacent
    (in space, time, frequency) and of the same sign form clusters whose
    mass (sum of t) is compared with the distribution of the maximum cluster
    mass under random sign flips of the subjects' differences
    (:func:`mne.stats.permutation_cluster_1samp_test`; Maris & Oostenveld
    2007). This controls the family-wise error rate of the statement "the
    conditions differ"; the extent of a cluster is descriptive, not a
    localisation with error control (Sassenhagen & Draschkow 2019).
    ``mean_diff``, ``ci_low``/``ci_high`` and ``cohen_dz`` of a cluster are
    computed on the cluster-averaged difference and are biased upwards by
    the selection (circular); report them as descriptive.

    References
    ----------
    Maris E, Oostenveld R (2007). J Neurosci Methods 164:177-190.
    Sassenhagen J, Draschkow D (2019). Psychophysiology 56:e13335.
    """
    stats_cfg, default_seed, full_cfg = _resolve_config(config)
    contrast = _check_contrast(contrast)
    tail = _check_tail(tail)
    n_perm = _check_int(stats_cfg.n_permutations if n_permutations is None else n_permutations, "n_permutations", 1)
    p_form = _check_prob(stats_cfg.cluster_forming_p if cluster_forming_p is None else cluster_forming_p, "cluster_forming_p")
    seed = _check_seed(seed, default_seed)
    alpha = stats_cfg.alpha
    diff, features, dropped = _paired_difference(data, contrast, dim)
    adj, adj_desc = _feature_adjacency(diff, features, adjacency)
    n = diff.sizes["subject"]

    df = n - 1
    if tail == 0:
        threshold = float(sstats.t.ppf(1 - p_form / 2, df))
    else:
        threshold = float(tail * sstats.t.ppf(1 - p_form, df))
    max_flips = 2 ** (n - (tail == 0))
    exact = n_perm >= max_flips
    n_used = max_flips if exact else n_perm
    if 1.0 / max_flips > alpha:
        logger.warning(
            "with %d subjects the smallest attainable p is %.3g > alpha = %g: nothing can be significant",
            n, 1.0 / max_flips, alpha,
        )
    logger.info(
        "cluster test %s-%s over %s: n=%d, threshold t=%.3f, %d permutations%s",
        contrast[0], contrast[1], features, n, threshold, n_used, " (exact)" if exact else "",
    )
    X = diff.values
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No clusters found")
        t_obs, clusters, cluster_pv, h0 = mne.stats.permutation_cluster_1samp_test(
            X,
            threshold=threshold,
            n_permutations=n_perm,
            tail=tail,
            adjacency=adj,
            out_type="mask",
            n_jobs=n_jobs,
            verbose="error",
            rng=np.random.default_rng(seed),
        )
    shape = X.shape[1:]
    t_obs = np.asarray(t_obs).reshape(shape)
    masks = [np.asarray(c).reshape(shape) for c in clusters]
    pvals = np.asarray(cluster_pv, dtype=float)

    coords = {d: diff[d] for d in features}
    attrs = provenance(
        full_cfg,
        test="cluster-based permutation test (paired, sign flips)",
        contrast=f"{contrast[0]}-{contrast[1]}",
        n_subjects=n,
        n_permutations=n_used,
        threshold=threshold,
        tail=tail,
        alpha=alpha,
        stats_seed=seed,
        adjacency=adj_desc,
        dropped_subjects=list(dropped),
    )
    t_da = xr.DataArray(t_obs, dims=features, coords=coords, name="t", attrs=attrs)
    table, order = _cluster_table(diff, features, t_obs, masks, pvals, alpha)
    if len(table):
        table.insert(0, "contrast", f"{contrast[0]}-{contrast[1]}")
        table["test"] = "cluster permutation (paired t, sign flips)"
        table["n_subjects"] = n
        table["n_dropped"] = len(dropped)
        table["n_permutations"] = n_used
        table["threshold"] = threshold
        table["correction"] = "cluster"
    stack = np.stack([masks[i] for i in order]) if masks else np.zeros((0, *shape), dtype=bool)
    cm = xr.DataArray(
        stack, dims=("cluster", *features),
        coords={"cluster": np.arange(1, len(order) + 1), **coords}, name="cluster_mask",
    )
    sig = np.zeros(shape, dtype=bool)
    for i in order:
        if pvals[i] < alpha:
            sig |= masks[i]
    mask = xr.DataArray(sig, dims=features, coords=coords, name="significant", attrs=attrs)
    return ClusterResult(
        t_obs=t_da, clusters=table, mask=mask, cluster_masks=cm, n_subjects=n,
        n_permutations=n_used, threshold=threshold, contrast=contrast, alpha=alpha, tail=tail,
        exact=exact, dropped_subjects=list(dropped), h0=np.asarray(h0), seed=seed,
    )


def _cluster_table(
    diff: xr.DataArray,
    features: list[str],
    t_obs: np.ndarray,
    masks: list[np.ndarray],
    pvals: np.ndarray,
    alpha: float,
) -> tuple[pd.DataFrame, list[int]]:
    """Describe clusters; return the table and the sort order of ``masks``."""
    masses = [float(t_obs[m].sum()) for m in masks]
    order = sorted(range(len(masks)), key=lambda i: (pvals[i], -abs(masses[i])))
    X = diff.values
    rows = []
    for rank, i in enumerate(order, start=1):
        m = masks[i]
        row: dict[str, Any] = {
            "cluster": rank,
            "p": float(pvals[i]),
            "significant": bool(pvals[i] < alpha),
            "mass": masses[i],
            "sign": int(np.sign(masses[i])),
            "n_points": int(m.sum()),
        }
        for ax, d in enumerate(features):
            other = tuple(a for a in range(m.ndim) if a != ax)
            present = np.any(m, axis=other) if other else m
            values = diff[d].values[present]
            if d in _NUMERIC_DIMS:
                u = _NUMERIC_DIMS[d]
                row[f"{d}_min_{u}"] = round(float(np.min(values)), 9)
                row[f"{d}_max_{u}"] = round(float(np.max(values)), 9)
            else:
                row[_PLURAL.get(d, d)] = ",".join(str(v) for v in values)
        tm = np.where(m, np.abs(t_obs), -np.inf)
        peak = np.unravel_index(int(np.argmax(tm)), m.shape)
        for ax, d in enumerate(features):
            value = diff[d].values[peak[ax]]
            key = f"peak_{d}_{_NUMERIC_DIMS[d]}" if d in _NUMERIC_DIMS else f"peak_{d}"
            row[key] = round(float(value), 9) if d in _NUMERIC_DIMS else str(value)
        row["peak_t"] = float(t_obs[peak])
        mean, _, dz, lo, hi = _mean_ci(X[:, m].mean(axis=1))
        row.update(mean_diff=mean, ci_low=lo, ci_high=hi, cohen_dz=dz)
        rows.append(row)
    return pd.DataFrame(rows), order


# --------------------------------------------------------------------------------------
# Multiple comparisons
# --------------------------------------------------------------------------------------
def fdr(pvals: Any, method: str | None = None, *, config: Config | StatsConfig | None = None) -> Any:
    """Adjust p-values for the false discovery rate.

    Parameters
    ----------
    pvals : array-like | pandas.Series
        p-values in [0, 1], any shape; NaNs are passed through and not counted.
    method : str | None
        ``'fdr_bh'`` (Benjamini-Hochberg), ``'fdr_by'`` (Benjamini-Yekutieli,
        any dependence), ``'fdr_tsbh'`` or ``'fdr_tsbky'`` (two-stage); None:
        ``config.stats.fdr_method``.
    config : Config | StatsConfig | None
        Source of the default method.

    Returns
    -------
    p_adjusted : numpy.ndarray | pandas.Series
        Adjusted p-values, same shape (and index, for a Series) as ``pvals``.

    Notes
    -----
    Computed with :func:`statsmodels.stats.multitest.multipletests`
    (Benjamini & Hochberg 1995; Benjamini & Yekutieli 2001).
    """
    from statsmodels.stats.multitest import multipletests

    stats_cfg, _, _ = _resolve_config(config)
    method = stats_cfg.fdr_method if method is None else method
    if method not in _FDR_METHODS:
        raise ValueError(f"method must be one of {_FDR_METHODS}, got {method!r}")
    index = pvals.index if isinstance(pvals, pd.Series) else None
    p = np.asarray(pvals, dtype=float)
    finite = ~np.isnan(p)
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    out = np.full(p.shape, np.nan)
    if finite.any():
        out[finite] = multipletests(p[finite], method=method)[1]
    return pd.Series(out, index=index, name="p_fdr") if index is not None else out


# --------------------------------------------------------------------------------------
# Per-feature sign-flip test
# --------------------------------------------------------------------------------------
def node_permutation_test(
    data: xr.DataArray,
    contrast: Sequence[str] = ("ME", "MaE"),
    dim: str = "condition",
    n_permutations: int | None = None,
    seed: int | None = None,
    *,
    correction: str = "maxstat",
    tail: int = 0,
    config: Config | StatsConfig | None = None,
) -> pd.DataFrame:
    """Paired sign-flip permutation test per feature (node, channel, band ...).

    Parameters
    ----------
    data : xarray.DataArray
        Dims ``("subject", dim, *features)``, features among
        :data:`FEATURE_DIMS` (e.g. ``(node,)`` nodal efficiency, ``(node,
        band)``). Subjects with NaN are dropped (counted in ``n_dropped``).
    contrast : pair of str
        ``(a, b)``; the test is on ``a - b``.
    dim : str
        Dimension of the conditions.
    n_permutations : int | None
        Random sign flips (the observed one included); None:
        ``config.stats.n_permutations``. At least ``10 * n_features / alpha``
        are used, so that the uncorrected p can reach the smallest
        Benjamini-Hochberg threshold ``alpha / n_features`` (with 1000 flips
        and 64 nodes it cannot: 1/1000 > 0.05/64, and FDR could never reject a
        lone node). If ``2 ** n_subjects`` is not larger, all flips are
        enumerated (exact test).
    seed : int | None
        Seed; None: ``config.seed``.
    correction : {'maxstat', 'fdr'}
        Which corrected p goes to ``p_corrected`` and decides
        ``significant``; both ``p_maxstat`` and ``p_fdr`` are always given.
    tail : {0, 1, -1}
        0 two-sided, 1 ``a > b``, -1 ``a < b``.
    config : Config | StatsConfig | None
        Defaults (alpha, permutations, FDR method, seed).

    Returns
    -------
    table : pandas.DataFrame
        One row per feature: the feature coordinates, ``contrast``,
        ``test``, ``n_subjects``, ``n_dropped``, ``mean_<a>``, ``mean_<b>``,
        ``mean_diff``, ``sd_diff``, ``t``, ``df``, ``p`` (permutation,
        uncorrected), ``p_maxstat`` (FWER), ``p_fdr``, ``p_corrected``,
        ``correction``, ``significant``, ``cohen_dz``, ``ci_low``,
        ``ci_high`` (95 % t interval of the mean difference),
        ``n_permutations``, ``exact``.

    Notes
    -----
    The statistic is the paired t. Under the null hypothesis of exchangeable
    conditions, the sign of each subject's difference is arbitrary; the null
    distribution is built from random sign flips applied to all features at
    once, which keeps their dependence. ``p_maxstat`` compares each t with
    the distribution of the maximum ``|t|`` over features (single-step maxT,
    Nichols & Holmes 2002), controlling the family-wise error rate;
    ``p_fdr`` applies Benjamini-Hochberg to the uncorrected permutation p.
    p-values count the observed flip, so they are never 0 (Phipson & Smyth 2010).
    """
    stats_cfg, default_seed, _ = _resolve_config(config)
    contrast = _check_contrast(contrast)
    tail = _check_tail(tail)
    n_perm = _check_int(stats_cfg.n_permutations if n_permutations is None else n_permutations, "n_permutations", 1)
    seed = _check_seed(seed, default_seed)
    if correction not in ("maxstat", "fdr"):
        raise ValueError(f"correction must be 'maxstat' or 'fdr', got {correction!r}")
    diff, features, dropped = _paired_difference(data, contrast, dim)
    n = diff.sizes["subject"]
    D = diff.values.reshape(n, -1)
    # BH compares the smallest uncorrected p with alpha / m: with fewer than m / alpha flips
    # the permutation p cannot get there and FDR never rejects a lone feature
    n_fdr = math.ceil(10 * D.shape[1] / stats_cfg.alpha)
    if n_fdr > n_perm:
        logger.info("node permutation test: %d flips instead of %d, so that the uncorrected p resolves "
                    "alpha / %d for FDR", n_fdr, n_perm, D.shape[1])
        n_perm = n_fdr
    exact = 2**n <= n_perm
    if exact:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1)
    else:
        rng = np.random.default_rng(seed)
        signs = np.vstack([np.ones((1, n), dtype=int), rng.choice([-1, 1], size=(n_perm - 1, n))])
    t_obs = _flip_t(D, np.ones((1, n)))[0]
    count = np.zeros(D.shape[1])
    count_max = np.zeros(D.shape[1])
    obs = _tail_stat(t_obs, tail)
    for start in range(0, len(signs), 256):
        stat = _tail_stat(_flip_t(D, signs[start:start + 256]), tail)
        count += (stat >= obs - 1e-12).sum(axis=0)
        count_max += (stat.max(axis=1)[:, None] >= obs[None, :] - 1e-12).sum(axis=0)
    p = count / len(signs)
    p_max = count_max / len(signs)
    p[np.isnan(t_obs)] = p_max[np.isnan(t_obs)] = 1.0
    p_fdr = fdr(p, stats_cfg.fdr_method)

    a, b = contrast
    labels = [str(v) for v in data[dim].values]
    sel = data.assign_coords({dim: labels}).sel(subject=diff["subject"]).astype(float)
    mean_a = sel.sel({dim: a}).mean("subject").transpose(*features).values.ravel()
    mean_b = sel.sel({dim: b}).mean("subject").transpose(*features).values.ravel()
    grid = pd.MultiIndex.from_product([diff[d].values for d in features], names=features).to_frame(index=False)
    rows = []
    for j in range(D.shape[1]):
        mean, sd, dz, lo, hi = _mean_ci(D[:, j])
        rows.append(dict(mean_diff=mean, sd_diff=sd, cohen_dz=dz, ci_low=lo, ci_high=hi))
    table = pd.concat([grid, pd.DataFrame(rows)], axis=1)
    table.insert(len(features), "contrast", f"{a}-{b}")
    table.insert(len(features) + 1, "test", "paired sign-flip permutation t-test")
    table["n_subjects"] = n
    table["n_dropped"] = len(dropped)
    table[f"mean_{a}"] = mean_a
    table[f"mean_{b}"] = mean_b
    table["t"] = t_obs
    table["df"] = n - 1
    table["p"] = p
    table["p_maxstat"] = p_max
    table["p_fdr"] = p_fdr
    table["p_corrected"] = p_max if correction == "maxstat" else p_fdr
    table["correction"] = "maxT (FWER)" if correction == "maxstat" else stats_cfg.fdr_method
    table["significant"] = table["p_corrected"] < stats_cfg.alpha
    table["n_permutations"] = len(signs)
    table["exact"] = exact
    table["tail"] = tail
    logger.info("node permutation test %s-%s: %d features, n=%d, %d flips", a, b, D.shape[1], n, len(signs))
    return table


def _flip_t(D: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """Paired t for each sign-flip row of ``signs`` (n_flips, n) and feature of ``D`` (n, F)."""
    n = D.shape[0]
    mean = signs @ D / n
    sumsq = np.sum(D**2, axis=0)
    var = np.maximum(sumsq[None, :] - n * mean**2, 0.0) / (n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return mean / np.sqrt(var / n)


def _tail_stat(t: np.ndarray, tail: int) -> np.ndarray:
    """Statistic oriented so that larger is more extreme (NaN -> -inf)."""
    out = np.abs(t) if tail == 0 else tail * t
    return np.where(np.isnan(out), -np.inf, out)


# --------------------------------------------------------------------------------------
# Subject-level paired test
# --------------------------------------------------------------------------------------
def paired_test(
    values: pd.DataFrame,
    *,
    measure: str | Sequence[str],
    within: str = "condition",
    subject: str = "subject",
    contrast: Sequence[str] = ("ME", "MaE"),
    test: str = "t",
    alternative: str = "two-sided",
    config: Config | StatsConfig | None = None,
) -> pd.DataFrame:
    """Paired comparison of one (or several) measures between two conditions.

    Parameters
    ----------
    values : pandas.DataFrame
        Long format: one row per subject and condition (or per trial: rows
        are then averaged per subject and condition first, and counted in
        ``n_trials_<condition>``).
    measure : str | sequence of str
        Column(s) to test. With several, ``p_fdr`` is added (FDR across
        measures, ``config.stats.fdr_method``).
    within : str
        Column of the condition labels.
    subject : str
        Column of the subject labels.
    contrast : pair of str
        ``(a, b)``; the difference is ``a - b``.
    test : {'t', 'wilcoxon'}
        Paired t-test (:func:`pingouin.ttest`, ``paired=True``) or Wilcoxon
        signed-rank test (:func:`pingouin.wilcoxon`).
    alternative : {'two-sided', 'greater', 'less'}
        Alternative hypothesis about ``a - b``.
    config : Config | StatsConfig | None
        Defaults (FDR method).

    Returns
    -------
    table : pandas.DataFrame
        One row per measure: ``measure``, ``contrast``, ``test``,
        ``n_subjects``, ``n_dropped`` (subjects lacking a condition or with
        NaN), ``n_trials_<a>``, ``n_trials_<b>``, ``mean_<a>``, ``mean_<b>``,
        ``mean_diff``, ``sd_diff``, ``statistic``, ``statistic_name``
        (``t`` or ``W``), ``df``, ``p``, ``effect_size`` and
        ``effect_size_name`` (``cohen_dz`` for the t-test, matched-pairs
        rank-biserial ``rbc`` for Wilcoxon), ``cohen_dz``, ``cohen_d_av``
        (pingouin's paired Cohen's d, mean difference over the average SD,
        signed), ``ci_low``, ``ci_high`` (95 % t interval of the mean
        difference), ``bf10`` (JZS Bayes factor, t-test only), ``alternative``.

    Notes
    -----
    ``cohen_dz = mean(a - b) / sd(a - b)`` (Lakens 2013); ``cohen_d_av``
    divides by the average of the two conditions' SDs and is comparable with
    between-subject d.
    """
    import pingouin as pg

    if not isinstance(values, pd.DataFrame):
        raise TypeError(f"values must be a pandas DataFrame, got {type(values).__name__}")
    measures = [measure] if isinstance(measure, str) else list(measure)
    if not measures:
        raise ValueError("measure must name at least one column")
    missing = [c for c in (*measures, within, subject) if c not in values.columns]
    if missing:
        raise ValueError(f"column(s) {missing} not in values; columns: {list(values.columns)}")
    a, b = _check_contrast(contrast)
    labels = set(values[within].astype(str))
    absent = [c for c in (a, b) if c not in labels]
    if absent:
        raise ValueError(f"condition label(s) {absent} not found in column {within!r}; available: {sorted(labels)}")
    if test not in ("t", "wilcoxon"):
        raise ValueError(f"test must be 't' or 'wilcoxon', got {test!r}")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}")
    stats_cfg, _, _ = _resolve_config(config)
    df0 = values.assign(**{within: values[within].astype(str)})
    df0 = df0[df0[within].isin([a, b])]
    rows = []
    for m in measures:
        if not pd.api.types.is_numeric_dtype(df0[m]):
            raise ValueError(f"measure {m!r} must be numeric, got dtype {df0[m].dtype}")
        sub = df0[[subject, within, m]].dropna()
        wide = sub.groupby([subject, within])[m].mean().unstack(within)
        wide = wide.reindex(columns=[a, b])
        n_all = df0[subject].nunique()
        wide = wide.dropna()
        counts = sub[sub[subject].isin(wide.index)].groupby(within)[m].size()
        n = len(wide)
        if n < 2:
            raise ValueError(f"measure {m!r}: at least 2 subjects with both {a} and {b} are needed, got {n}")
        if n_all > n:
            logger.info("paired_test %s: %d subject(s) dropped (a condition missing or NaN)", m, n_all - n)
        x, y = wide[a].to_numpy(float), wide[b].to_numpy(float)
        mean, sd, dz, lo, hi = _mean_ci(x - y)
        row: dict[str, Any] = {
            "measure": m, "contrast": f"{a}-{b}", "n_subjects": n, "n_dropped": n_all - n,
            f"n_trials_{a}": int(counts.get(a, 0)), f"n_trials_{b}": int(counts.get(b, 0)),
            f"mean_{a}": float(x.mean()), f"mean_{b}": float(y.mean()), "mean_diff": mean, "sd_diff": sd,
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            tt = pg.ttest(x, y, paired=True, alternative=alternative).iloc[0]
        d_av = float(tt["cohen_d"]) * (1.0 if mean >= 0 else -1.0)
        if test == "t":
            bf = tt.get("BF10", np.nan)
            row.update(
                test="paired t-test", statistic=float(tt["T"]), statistic_name="t", df=float(tt["dof"]),
                p=float(tt["p_val"]), effect_size=dz, effect_size_name="cohen_dz",
                bf10=float(bf) if bf is not None and str(bf) not in ("", "nan") else np.nan,
            )
        else:
            wx = pg.wilcoxon(x, y, alternative=alternative).iloc[0]
            row.update(
                test="Wilcoxon signed-rank", statistic=float(wx["W_val"]), statistic_name="W", df=np.nan,
                p=float(wx["p_val"]), effect_size=float(wx["RBC"]), effect_size_name="rbc", bf10=np.nan,
            )
        row.update(cohen_dz=dz, cohen_d_av=d_av, ci_low=lo, ci_high=hi, alternative=alternative)
        rows.append(row)
    table = pd.DataFrame(rows)
    if len(measures) > 1:
        table["p_fdr"] = fdr(table["p"].to_numpy(), stats_cfg.fdr_method)
        table["correction"] = stats_cfg.fdr_method
    return table


# --------------------------------------------------------------------------------------
# Planned ROI x window (x band) contrasts
# --------------------------------------------------------------------------------------
#: Corrections of :func:`planned_contrasts` (statsmodels ``multipletests`` methods, and ``"none"``).
PLANNED_CORRECTIONS: tuple[str, ...] = (
    "holm",
    "bonferroni",
    "sidak",
    "holm-sidak",
    "hommel",
    "fdr_bh",
    "fdr_by",
    "none",
)
#: Columns of the :func:`planned_contrasts` table.
PLANNED_COLUMNS: tuple[str, ...] = (
    "name",
    "contrast",
    "roi",
    "n_sites",
    "tmin_s",
    "tmax_s",
    "band",
    "fmin_hz",
    "fmax_hz",
    "measure",
    "test",
    "n_subjects",
    "n_dropped",
    "mean_a",
    "mean_b",
    "mean_diff",
    "sd_diff",
    "t",
    "df",
    "p",
    "p_corrected",
    "correction",
    "family_size",
    "significant",
    "cohen_dz",
    "ci_low",
    "ci_high",
)


def _spec(spec: Any, key: str, default: Any = None) -> Any:
    if isinstance(spec, Mapping):
        return spec.get(key, default)
    return getattr(spec, key, default)


def _planned_values(
    data: xr.DataArray | xr.Dataset,
    spec: Any,
    bands: Mapping[str, Sequence[float]] | None,
    dim: str,
    where: str,
) -> tuple[xr.DataArray, dict[str, Any]]:
    """(subject, condition) averages of one planned contrast, and its description."""
    if isinstance(data, xr.Dataset):
        measure = _spec(spec, "measure")
        if measure is None or measure not in data.data_vars:
            raise ValueError(
                f"{where}: measure {measure!r} is not a variable of the data "
                f"({sorted(data.data_vars)})"
            )
        da = data[measure]
    else:
        da, measure = data, _spec(spec, "measure", data.name)
    spatial = [d for d in _SPATIAL_DIMS if d in da.dims]
    if len(spatial) != 1:
        raise ValueError(
            f"{where}: data need one spatial dim ('channel' or 'node'), got dims {da.dims}"
        )
    sdim = spatial[0]
    sites = _spec(spec, "channels") if sdim == "channel" else _spec(spec, "nodes")
    sites = _spec(spec, "nodes") if sites is None else sites
    sites = _spec(spec, "channels") if sites is None else sites
    if sites is None or isinstance(sites, str) or not len(sites):
        raise ValueError(f"{where}: give the ROI as a list of {_PLURAL[sdim]}, got {sites!r}")
    sites = [str(c) for c in sites]
    have = [str(c) for c in da[sdim].values]
    unknown = [c for c in sites if c not in have]
    if unknown:
        raise ValueError(f"{where}: {_PLURAL[sdim]} {unknown} not in the data")
    x = da.sel({sdim: sites}).mean(sdim, skipna=False)
    info: dict[str, Any] = {
        "roi": ",".join(sites),
        "n_sites": len(sites),
        "tmin_s": math.nan,
        "tmax_s": math.nan,
        "band": None,
        "fmin_hz": math.nan,
        "fmax_hz": math.nan,
        "measure": measure,
    }
    window = _spec(spec, "window_s")
    if "time" in x.dims:
        if window is None:
            raise ValueError(f"{where}: the data have a time dim: give window_s (start, end) in s")
        lo, hi = (float(v) for v in window)
        t = np.asarray(x["time"].values, dtype=float)
        if not lo < hi:
            raise ValueError(f"{where}: window_s {list(window)}: start must be before end")
        if lo < t[0] - 1e-9 or hi > t[-1] + 1e-9:
            raise ValueError(
                f"{where}: window_s {list(window)} s is outside the data ({t[0]:.3f} to "
                f"{t[-1]:.3f} s)"
            )
        sel = (t >= lo - 1e-9) & (t <= hi + 1e-9)
        if not sel.any():
            raise ValueError(f"{where}: window_s {list(window)} s holds no sample of the data")
        x = x.isel(time=np.flatnonzero(sel)).mean("time", skipna=False)
        info.update(tmin_s=lo, tmax_s=hi)
    elif window is not None:
        raise ValueError(f"{where}: window_s given but the data have no time dim")
    band = _spec(spec, "band")
    if "freq" in x.dims or "band" in x.dims:
        if band is None:
            raise ValueError(f"{where}: the data have a frequency dim: give band")
        if "band" in x.dims:
            labels = [str(b) for b in x["band"].values]
            if str(band) not in labels:
                raise ValueError(f"{where}: band {band!r} not in the data (bands {labels})")
            x = x.sel(band=str(band))
            if bands is not None and str(band) in bands:
                info.update(fmin_hz=float(bands[str(band)][0]), fmax_hz=float(bands[str(band)][1]))
        else:
            if bands is None or str(band) not in bands:
                raise ValueError(
                    f"{where}: unknown band {band!r}; give bands (name -> (low, high) Hz), "
                    f"known: {sorted(bands or {})}"
                )
            flo, fhi = (float(v) for v in bands[str(band)])
            f = np.asarray(x["freq"].values, dtype=float)
            fsel = (f >= flo) & (f < fhi)
            if not fsel.any():
                raise ValueError(
                    f"{where}: band {band!r} ({flo}-{fhi} Hz) holds no frequency of the data"
                )
            x = x.isel(freq=np.flatnonzero(fsel)).mean("freq", skipna=False)
            info.update(fmin_hz=flo, fmax_hz=fhi)
        info["band"] = str(band)
    elif band is not None:
        raise ValueError(f"{where}: band given but the data have no 'freq' or 'band' dim")
    rest = [d for d in x.dims if d not in ("subject", dim)]
    if rest:
        raise ValueError(
            f"{where}: dims {rest} are left after averaging; the data must be (subject, {dim}, "
            f"{sdim}[, time][, freq or band])"
        )
    return x.transpose("subject", dim), info


def planned_contrasts(
    data: xr.DataArray | xr.Dataset,
    contrasts: Sequence[Mapping[str, Any] | Any],
    *,
    bands: Mapping[str, Sequence[float]] | None = None,
    correction: str = "holm",
    alpha: float = 0.05,
    dim: str = "condition",
) -> pd.DataFrame:
    """Planned ROI x window (x band) contrasts at the subject level, corrected within their family.

    Each contrast averages the subject-level data over its region of interest
    (channels or nodes), its time window and its band, then compares two
    conditions with a paired t-test on these subject means (:func:`paired_test`).
    The p-values of all contrasts given are one family, corrected together
    with ``correction`` (Holm by default; :func:`statsmodels.stats.multitest.multipletests`).

    Parameters
    ----------
    data : xarray.DataArray | xarray.Dataset
        Subject-level data ``(subject, condition, channel or node[, time][,
        freq or band])``: an ERP group array (µV), an ERSP array (dB) with a
        ``freq`` dim, or subject means of a nodal measure with a ``band`` dim.
        Subjects with NaN in a condition (minimum-count rule) are dropped from
        contrasts with that condition. A Dataset: each contrast names its
        variable as ``measure``.
    contrasts : sequence of mapping (or objects with these attributes)
        ``name``, ``contrast`` (``(a, b)``: ``a - b``), ``channels`` (or
        ``nodes``); ``window_s`` (start, end in s; closed) when the data have
        a ``time`` dim; ``band`` when they have a ``freq`` or ``band`` dim;
        ``measure`` for a Dataset.
    bands : mapping | None
        Band name -> (low, high) Hz, ``[low, high)``: needed for a ``freq`` dim.
    correction : str
        ``multipletests`` method (``"holm"``, ``"bonferroni"``, ``"fdr_bh"`` ...)
        or ``"none"``.
    alpha : float
        Significance level of ``significant`` (corrected p).
    dim : str
        Dimension of the conditions.

    Returns
    -------
    table : pandas.DataFrame
        One row per contrast, in the given order: :data:`PLANNED_COLUMNS`
        (``name``, ``contrast``, ``roi`` (comma list), ``n_sites``,
        ``tmin_s``, ``tmax_s``, ``band``, ``fmin_hz``, ``fmax_hz``,
        ``measure``, ``test``, ``n_subjects``, ``n_dropped``, ``mean_a``,
        ``mean_b``, ``mean_diff`` (a - b, unit of the data), ``sd_diff``,
        ``t``, ``df``, ``p``, ``p_corrected``, ``correction``,
        ``family_size``, ``significant``, ``cohen_dz``, ``ci_low``,
        ``ci_high`` (95 % t interval of the mean difference)). A contrast
        that cannot be tested (fewer than 2 subjects with both conditions)
        has NaN statistics and is left out of the family.

    Raises
    ------
    ValueError
        On an empty or malformed contrast (unknown channel, band or
        condition, a window outside the data, duplicate names), an unknown
        correction or alpha outside (0, 1); the message names the contrast
        and the value.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(8, 2, 2, 5)); x[:, 0, :, 2:] += 2.0
    >>> da = xr.DataArray(x, dims=("subject", "condition", "channel", "time"),
    ...                   coords={"subject": [f"s{i}" for i in range(8)],
    ...                           "condition": ["ME", "MaE"],
    ...                           "channel": ["CZ", "PZ"], "time": np.arange(5) * 0.1})
    >>> t = planned_contrasts(da, [{"name": "late", "contrast": ("ME", "MaE"), "channels": ["PZ"],
    ...                             "window_s": (0.2, 0.4)}])
    >>> bool(t.loc[0, "p"] < 0.05), int(t.loc[0, "df"])
    (True, 7)
    """
    from statsmodels.stats.multitest import multipletests

    if not isinstance(data, xr.DataArray | xr.Dataset):
        raise TypeError(f"data must be an xarray DataArray or Dataset, got {type(data).__name__}")
    if correction not in PLANNED_CORRECTIONS:
        raise ValueError(f"correction must be one of {PLANNED_CORRECTIONS}, got {correction!r}")
    alpha = _check_prob(alpha, "alpha")
    if isinstance(contrasts, Mapping | str) or not isinstance(contrasts, Sequence):
        raise ValueError(
            "contrasts must be a sequence of planned contrasts (mappings with name, contrast, ...)"
        )
    missing = [d for d in ("subject", dim) if d not in data.dims]
    if missing:
        raise ValueError(f"data must have dims ('subject', {dim!r}, ...); missing {missing}")
    names = [str(_spec(c, "name", "")) for c in contrasts]
    if any(not n for n in names):
        raise ValueError("every planned contrast needs a name")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"duplicate planned contrast name(s) {dup}")
    labels = [str(v) for v in data[dim].values]
    rows = []
    for name, spec in zip(names, contrasts, strict=True):
        where = f"planned contrast {name!r}"
        pair = _spec(spec, "contrast", ("ME", "MaE"))
        try:
            a, b = _check_contrast(pair)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from err
        absent = [c for c in (a, b) if c not in labels]
        if absent:
            raise ValueError(f"{where}: condition(s) {absent} not in the data ({labels})")
        x, info = _planned_values(data, spec, bands, dim, where)
        long = (
            x.sel({dim: [a, b]}).to_dataframe(name="value").reset_index()[["subject", dim, "value"]]
        )
        row: dict[str, Any] = {
            "name": name,
            "contrast": f"{a}-{b}",
            **info,
            "test": "paired t-test on subject means",
        }
        n_all = int(x.sizes["subject"])
        try:
            tt = paired_test(long, measure="value", within=dim, contrast=(a, b)).iloc[0]
        except ValueError as err:
            logger.warning("%s not tested: %s", where, err)
            row.update(
                n_subjects=0,
                n_dropped=n_all,
                mean_a=math.nan,
                mean_b=math.nan,
                mean_diff=math.nan,
                sd_diff=math.nan,
                t=math.nan,
                df=math.nan,
                p=math.nan,
                cohen_dz=math.nan,
                ci_low=math.nan,
                ci_high=math.nan,
            )
        else:
            row.update(
                n_subjects=int(tt["n_subjects"]),
                n_dropped=int(tt["n_dropped"]),
                mean_a=float(tt[f"mean_{a}"]),
                mean_b=float(tt[f"mean_{b}"]),
                mean_diff=float(tt["mean_diff"]),
                sd_diff=float(tt["sd_diff"]),
                t=float(tt["statistic"]),
                df=float(tt["df"]),
                p=float(tt["p"]),
                cohen_dz=float(tt["cohen_dz"]),
                ci_low=float(tt["ci_low"]),
                ci_high=float(tt["ci_high"]),
            )
        rows.append(row)
    table = pd.DataFrame(
        rows,
        columns=[
            c
            for c in PLANNED_COLUMNS
            if c not in ("p_corrected", "correction", "family_size", "significant")
        ],
    )
    p = table["p"].to_numpy(dtype=float)
    finite = np.isfinite(p)
    adj = np.full(p.shape, np.nan)
    if finite.any():
        adj[finite] = (
            p[finite]
            if correction == "none"
            else multipletests(p[finite], alpha=alpha, method=correction)[1]
        )
    table["p_corrected"] = adj
    table["correction"] = correction
    table["family_size"] = int(finite.sum())
    table["significant"] = np.where(finite, adj < alpha, False).astype(bool)
    return table[list(PLANNED_COLUMNS)]


# --------------------------------------------------------------------------------------
# Linear mixed models
# --------------------------------------------------------------------------------------
#: ``random_effects`` argument -> structures tried in order (the first that converges is kept):
#: ``slope``, correlated by-subject intercept and condition slope(s); ``subject_condition``, a
#: subject intercept plus an independent subject-by-condition intercept (compound symmetry: the
#: slope without its correlation parameter, the classic repeated-measures error term);
#: ``intercept``, the subject intercept alone.
RANDOM_EFFECTS: dict[str, tuple[str, ...]] = {
    "maximal": ("slope", "subject_condition", "intercept"),
    # with covariate_slopes: the covariates keep their random slopes in every fallback (dropping the
    # random slope of the term under test is what makes a model anti-conservative: the coupling
    # calibration measured 0.50 false positives among the fits that had fallen back to (1 | subject))
    "maximal_covariate_slopes": ("slope", "subject_condition", "covariate_slope", "covariate_vc"),
    "slope": ("slope",),
    "subject_condition": ("subject_condition",),
    "intercept": ("intercept",),
}


def _re_structure(name: str, conditions: bool, slopes: list[str]) -> tuple[str, dict[str, Any]] | None:
    """(formula shown in tables, MixedLM keywords) of a structure; None where it has nothing to add.

    ``conditions``: the model has a condition term; ``slopes``: covariates (``x<i>`` and their
    names) with by-subject random slopes.
    """
    if name == "intercept":
        return "(1 | subject)", {}
    if name in ("covariate_slope", "covariate_vc"):  # the covariates' slopes only, no condition slope
        if not slopes or not conditions:  # without a condition term these are "slope"/"subject_condition"
            return None
        if name == "covariate_slope":
            return (f"(1 + {' + '.join(n for _, n in slopes)} | subject)",
                    {"re_formula": "~" + " + ".join(x for x, _ in slopes)})  # fmt: skip
        return ("(1 | subject)" + "".join(f" + (0 + {n} | subject)" for _, n in slopes),
                {"re_formula": "1", "vc_formula": {x: f"0 + {x}" for x, _ in slopes}})  # fmt: skip
    terms = (["C(cond)"] if conditions else []) + [x for x, _ in slopes]
    if not terms:
        return None
    shown = (["condition"] if conditions else []) + [n for _, n in slopes]
    if name == "slope":
        return f"(1 + {' + '.join(shown)} | subject)", {"re_formula": "~" + " + ".join(terms)}
    vc = ({"cond": "0 + C(cond)"} if conditions else {}) | {x: f"0 + {x}" for x, _ in slopes}
    label = "(1 | subject)" + (" + (1 | subject:condition)" if conditions else "")
    label += "".join(f" + (0 + {n} | subject)" for _, n in slopes)
    return label, {"re_formula": "1", "vc_formula": vc}


INFERENCE: tuple[str, ...] = ("t", "wald")


def mixed_model(
    trials: pd.DataFrame,
    *,
    measure: str,
    condition: str = "condition",
    subject: str = "subject",
    covariates: Sequence[str] = (),
    reference: str = "MaE",
    conditions: Sequence[str] | None = None,
    random_effects: str = "maximal",
    covariate_slopes: bool = False,
    inference: str = "t",
    reml: bool = True,
    optimizers: Sequence[str] = _DEFAULT_OPTIMIZERS,
) -> pd.DataFrame:
    """Trial-level linear mixed model with by-subject random condition slopes.

    Fits ``measure ~ C(condition, Treatment(reference)) [+ covariates]`` with
    :class:`statsmodels.regression.mixed_linear_model.MixedLM` and the
    maximal random-effects structure that converges (Barr et al. 2013):
    ``(1 + condition | subject)``, else ``(1 | subject) + (1 |
    subject:condition)``, else ``(1 | subject)``. With ``covariate_slopes``
    the covariates keep their random slopes in every fallback:
    ``(1 + condition + cov | subject)``, ``(1 | subject) + (1 |
    subject:condition) + (0 + cov | subject)``, ``(1 + cov | subject)``,
    ``(1 | subject) + (0 + cov | subject)``; when none converges cleanly the
    best of them is reported with ``converged`` False. Fixed effects are
    tested with a t reference on ``n_subjects - 1`` degrees of freedom.

    Parameters
    ----------
    trials : pandas.DataFrame
        One row per trial (epoch).
    measure : str
        Column of the dependent variable (e.g. ERP amplitude in µV, HR in bpm).
    condition : str
        Column of the condition labels.
    subject : str
        Column of the subject labels (random effects).
    covariates : sequence of str
        Numeric trial-level covariates, e.g. ``("emg_rms",)`` to adjust for
        facial-muscle contamination (fixed effects; the condition keeps its
        random slope).
    reference : str
        Reference condition of the treatment coding: each other condition gets
        a term ``<condition> - <reference>``.
    conditions : sequence of str | None
        Keep only these conditions (e.g. ``("ME", "MaE")`` when the table also
        holds NE trials); None keeps all.
    random_effects : {'maximal', 'slope', 'subject_condition', 'intercept'}
        ``'maximal'`` (default): the fallback order above, the first
        structure that converges cleanly is kept. The others fit one
        structure only (``'intercept'`` is the random-intercept model, which
        is anti-conservative when subjects differ in their condition effect;
        kept for comparison).
    covariate_slopes : bool
        Give the covariates by-subject random slopes too (in ``slope``:
        correlated with the rest; in ``subject_condition``: independent
        ``(0 + covariate | subject)`` terms). Use it when the covariate's
        effect is the question (e.g. trial-to-trial brain-body coupling,
        which differs between subjects); with a covariate and this option a
        single condition is allowed (the model has no condition term).
    inference : {'t', 'wald'}
        ``'t'`` (default): t reference with ``n_subjects - 1`` df, p and 95 %
        CI from it. ``'wald'``: normal reference (Wald z), liberal with few
        subjects; kept for comparison.
    reml : bool
        Restricted maximum likelihood (default) or maximum likelihood.
    optimizers : sequence of str
        Optimizers tried in order for each structure (``statsmodels``
        ``method``) until one converges with a positive-definite Hessian;
        every warning is kept.

    Returns
    -------
    table : pandas.DataFrame
        One row per fixed effect: ``measure``, ``term`` (``"ME - MaE"``,
        covariate name or ``"Intercept"``), ``kind`` (``intercept``,
        ``condition``, ``covariate``), ``estimate``, ``se``, ``t``
        (estimate / se), ``df`` (``n_subjects - 1``; infinite for Wald),
        ``p``, ``ci_low``, ``ci_high`` (95 %, same reference distribution),
        ``effect_size`` and ``effect_size_name`` (condition terms: ``d_lmm`` =
        estimate / sqrt(subject variance + residual variance), Westfall et
        al. 2014; covariates: ``beta_std`` = estimate x SD(covariate) /
        SD(measure)); for condition terms the subject-level paired t-test of
        the same contrast on subject means (``paired_t``, ``paired_df``,
        ``paired_p``, ``paired_n_subjects``, ``paired_mean_diff``; NaN
        elsewhere); and the model: ``test``, ``random_effects`` (the
        structure fitted), ``random_effects_tried`` (" > "-joined),
        ``inference``, ``n_subjects``, ``n_trials``, ``n_trials_<condition>``
        per condition, ``n_dropped_trials`` (NaN), ``subject_var``,
        ``slope_var`` (between-subject variance of the condition effect, 0
        without a slope), ``residual_var``, ``converged``, ``method`` (the
        optimizer that gave the result), ``reml``, ``warnings``
        ("; "-joined).

    Raises
    ------
    ValueError
        On missing columns, a reference absent from the data, fewer than 2
        conditions or subjects, non-numeric covariates or an unknown
        ``random_effects`` / ``inference``.
    RuntimeError
        If every optimizer of every structure fails with an error.

    Notes
    -----
    Why: with a random intercept only, subjects whose ME - MaE difference
    differs (as real participants do) make the condition's standard error
    too small, and the Wald z test rejected a true null in 39-44 % of data
    sets at a between-subject SD equal to the trial noise (12 subjects). The
    random slope puts that variance into the standard error; the t reference
    on ``n_subjects - 1`` df (the error stratum of a within-subject factor,
    as in a repeated-measures ANOVA, and the df of the paired test on
    subject means) corrects the normal approximation at 10-20 subjects. The
    null-calibration benchmark (``benchmarks/bench_calibration.py``, see
    ``docs/statistics.md``) measured the choice.

    The measure and covariates are divided by their SDs before fitting (for
    numerical stability with data in V) and the estimates scaled back
    exactly; t and p are unaffected. If no structure converges cleanly, the
    best ``(1 | subject)`` fit (highest log-likelihood) is returned with
    ``converged`` False and a logged warning. A singular fit (a variance on
    the boundary) is reported in ``warnings`` but kept.

    References
    ----------
    Barr DJ, Levy R, Scheepers C, Tily HJ (2013). Random effects structure
    for confirmatory hypothesis testing: keep it maximal. J Mem Lang
    68:255-278.
    """
    from statsmodels.regression.mixed_linear_model import MixedLM

    if not isinstance(trials, pd.DataFrame):
        raise TypeError(f"trials must be a pandas DataFrame, got {type(trials).__name__}")
    covariates = [covariates] if isinstance(covariates, str) else list(covariates)
    missing = [c for c in (measure, condition, subject, *covariates) if c not in trials.columns]
    if missing:
        raise ValueError(f"column(s) {missing} not in trials; columns: {list(trials.columns)}")
    for c in (measure, *covariates):
        if not pd.api.types.is_numeric_dtype(trials[c]):
            raise ValueError(f"column {c!r} must be numeric, got dtype {trials[c].dtype}")
    if not optimizers:
        raise ValueError("optimizers must name at least one statsmodels method")
    if random_effects not in RANDOM_EFFECTS:
        raise ValueError(f"random_effects must be one of {list(RANDOM_EFFECTS)}, got {random_effects!r}")
    if inference not in INFERENCE:
        raise ValueError(f"inference must be one of {list(INFERENCE)}, got {inference!r}")
    df = pd.DataFrame({
        "y": trials[measure].astype(float),
        "cond": trials[condition].astype(str),
        "subj": trials[subject].astype(str),
        **{f"x{i}": trials[c].astype(float) for i, c in enumerate(covariates)},
    })
    if conditions is not None:
        conditions = [str(c) for c in conditions]
        df = df[df["cond"].isin(conditions)]
    n_before = len(df)
    df = df.dropna().reset_index(drop=True)
    n_dropped = n_before - len(df)
    if n_dropped:
        logger.info("mixed_model %s: %d trial(s) with NaN dropped", measure, n_dropped)
    levels = sorted(df["cond"].unique())
    if reference not in levels:
        raise ValueError(f"reference condition {reference!r} not found in {condition!r}; available: {levels}")
    if len(levels) < 2 and not (covariates and covariate_slopes):
        raise ValueError(f"at least 2 conditions are needed, got {levels}")
    n_subj = df["subj"].nunique()
    if n_subj < 2:
        raise ValueError(f"at least 2 subjects are needed for a random intercept, got {n_subj}")
    sd_y = float(df["y"].std(ddof=1))
    if not sd_y > 0:
        raise ValueError(f"measure {measure!r} is constant")
    scales = {"y": sd_y}
    for i in range(len(covariates)):
        s = float(df[f"x{i}"].std(ddof=1))
        if not s > 0:
            raise ValueError(f"covariate {covariates[i]!r} is constant")
        scales[f"x{i}"] = s
    dfs = df.assign(**{k: df[k] / s for k, s in scales.items()})
    others = [lv for lv in levels if lv != reference]
    dfs["cond"] = pd.Categorical(dfs["cond"], categories=[reference, *others])
    multi = len(levels) > 1
    formula = "y ~ " + ("C(cond)" if multi else "1") + "".join(f" + x{i}" for i in range(len(covariates)))
    slopes = [(f"x{i}", c) for i, c in enumerate(covariates)] if covariate_slopes else []
    ladder = "maximal_covariate_slopes" if random_effects == "maximal" and slopes else random_effects
    structures = {n: st for n in RANDOM_EFFECTS[ladder] if (st := _re_structure(n, multi, slopes))}
    if not structures:
        raise ValueError(f"random_effects={random_effects!r} has no random slope to fit in this model")
    tried = list(structures)

    def build(name: str) -> Any:
        return MixedLM.from_formula(formula, groups="subj", data=dfs, **structures[name][1])

    fit, structure, method, notes, converged = _fit_ladder(build, tried, structures, reml, list(optimizers),
                                                           measure)

    fe = fit.fe_params
    bse = fit.bse_fe
    df_t = math.inf if inference == "wald" else float(n_subj - 1)
    crit = float(sstats.norm.ppf(0.975) if inference == "wald" else sstats.t.ppf(0.975, df_t))
    subj_var = float(fit.cov_re.iloc[0, 0]) * sd_y**2
    resid_var = float(fit.scale) * sd_y**2
    slope_var = _slope_variance(fit, structure) * sd_y**2
    paired = _paired_by_level(df, others, reference)
    rows = []
    for name in fe.index:
        row_paired: dict[str, float] = dict.fromkeys(_PAIRED_KEYS, math.nan)
        if name == "Intercept":
            term, kind, factor, es, es_name = "Intercept", "intercept", sd_y, math.nan, None
        elif name.startswith("C(cond)[T."):
            level = name[len("C(cond)[T."):-1]
            term, kind, factor, es_name = f"{level} - {reference}", "condition", sd_y, "d_lmm"
            es = float(fe[name]) * sd_y / math.sqrt(subj_var + resid_var)
            row_paired = paired[level]
        else:
            i = int(name[1:])
            term, kind, factor, es_name = covariates[i], "covariate", sd_y / scales[name], "beta_std"
            es = float(fe[name])
        est, se = float(fe[name]) * factor, float(bse[name]) * factor
        t = est / se if se > 0 else math.nan
        p = float(2 * (sstats.norm.sf(abs(t)) if inference == "wald" else sstats.t.sf(abs(t), df_t)))
        rows.append({
            "measure": measure, "term": term, "kind": kind, "estimate": est, "se": se, "t": t, "df": df_t,
            "p": p, "ci_low": est - crit * se, "ci_high": est + crit * se,
            "effect_size": es, "effect_size_name": es_name, **row_paired,
        })
    table = pd.DataFrame(rows)
    counts = df.groupby("cond").size()
    formula_re = structures[structure][0]
    reference_dist = "Wald z" if inference == "wald" else f"t({n_subj - 1})"
    table["test"] = f"MixedLM ({'REML' if reml else 'ML'}), {formula_re}, {reference_dist}"
    table["random_effects"] = formula_re
    table["random_effects_tried"] = " > ".join(structures[n][0] for n in tried[: tried.index(structure) + 1])
    table["inference"] = inference
    table["n_subjects"] = n_subj
    table["n_trials"] = len(df)
    for lv in levels:
        table[f"n_trials_{lv}"] = int(counts.get(lv, 0))
    table["n_dropped_trials"] = n_dropped
    table["subject_var"] = subj_var
    table["slope_var"] = slope_var
    table["residual_var"] = resid_var
    table["converged"] = converged
    table["method"] = method
    table["reml"] = reml
    table["warnings"] = "; ".join(notes)
    return table


_PAIRED_KEYS = ("paired_t", "paired_df", "paired_p", "paired_n_subjects", "paired_mean_diff")


def _paired_by_level(df: pd.DataFrame, levels: list[str], reference: str) -> dict[str, dict[str, float]]:
    """Paired t-test of each level against the reference on subject means of ``df['y']``."""
    means = df.groupby(["subj", "cond"])["y"].mean().unstack("cond")
    out = {}
    for lv in levels:
        pair = means[[lv, reference]].dropna()
        d = (pair[lv] - pair[reference]).to_numpy(float)
        if d.size < 2 or not np.std(d) > 0:
            out[lv] = dict.fromkeys(_PAIRED_KEYS, math.nan) | {"paired_n_subjects": float(d.size)}
            continue
        res = sstats.ttest_1samp(d, 0.0)
        out[lv] = {"paired_t": float(res.statistic), "paired_df": float(d.size - 1), "paired_p": float(res.pvalue),
                   "paired_n_subjects": float(d.size), "paired_mean_diff": float(d.mean())}
    return out


def _slope_variance(fit: Any, structure: str) -> float:
    """Between-subject variance of a condition effect (mean over condition terms), scaled units."""
    if structure == "slope":
        cov = fit.cov_re
        terms = [n for n in cov.index if str(n).startswith("C(cond)")]
        return float(np.mean([cov.loc[n, n] for n in terms])) if terms else 0.0
    if structure == "subject_condition" and "cond" in fit.model.exog_vc.names:
        # var(u_a - u_b) of two independent subject:condition intercepts
        return float(2 * fit.vcomp[fit.model.exog_vc.names.index("cond")])
    return 0.0


def _fit_ladder(build: Any, structures: Sequence[str], labels: Mapping[str, tuple[str, Any]], reml: bool,
                optimizers: list[str], measure: str) -> tuple[Any, str, str, list[str], bool]:
    """Fit each structure in turn (``build(name)`` makes its model); return (result, structure, method, notes, clean)."""
    notes: list[str] = []
    last: tuple[str, list[tuple[float, Any, str]]] | None = None
    for structure in structures:
        fit, method, tried_notes, candidates = _fit_mixed(build(structure), reml, optimizers)
        notes.extend(f"{structure}/{n}" for n in tried_notes)
        if fit is not None:
            if structure != structures[0]:
                logger.info("mixed_model %s: fell back to %s", measure, labels[structure][0])
            return fit, structure, method, notes, True
        if candidates:
            last = (structure, candidates)
    if last is None:
        raise RuntimeError(f"mixed_model {measure!r}: every optimizer failed: " + "; ".join(notes))
    structure, candidates = last
    _, fit, method = max(candidates, key=lambda c: c[0])
    logger.warning(
        "mixed_model %s: no structure converged cleanly (%s); reporting the best fit of %s (%s), "
        "flagged converged=False", measure, ", ".join(optimizers), structure, method,
    )
    return fit, structure, method, notes, False


def _fit_mixed(model: Any, reml: bool, optimizers: list[str]) -> tuple[Any, str, list[str], list]:
    """Fit with each optimizer in turn; return (clean result or None, method, notes, unclean candidates)."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    notes: list[str] = []
    candidates: list[tuple[float, Any, str]] = []
    for method in optimizers:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                fit = model.fit(reml=reml, method=method)
            except Exception as err:  # noqa: BLE001 - any optimizer failure moves to the next one
                notes.append(f"{method}: failed ({type(err).__name__}: {err})")
                continue
        msgs = sorted({str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning | RuntimeWarning)})
        serious = [m for m in msgs if "boundary" not in m]
        notes.extend(f"{method}: {m}" for m in msgs)
        if bool(fit.converged) and not serious and np.all(np.isfinite(fit.bse_fe)):
            return fit, method, notes, candidates
        candidates.append((float(fit.llf) if np.isfinite(fit.llf) else -np.inf, fit, method))
    return None, "", notes, candidates


def mixed_models_fdr(
    trials: pd.DataFrame,
    measures: Sequence[str],
    *,
    method: str | None = None,
    config: Config | StatsConfig | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Fit :func:`mixed_model` for several measures and FDR-correct across them.

    Parameters
    ----------
    trials : pandas.DataFrame
        Trial table holding every measure.
    measures : sequence of str
        Dependent variables, one model each.
    method : str | None
        FDR method (see :func:`fdr`); None: ``config.stats.fdr_method``.
    config : Config | StatsConfig | None
        Defaults.
    **kwargs
        Passed to :func:`mixed_model` (``condition``, ``subject``,
        ``covariates``, ``reference``, ``conditions`` ...).

    Returns
    -------
    table : pandas.DataFrame
        The concatenated tables plus ``p_fdr`` (FDR across measures,
        separately for each term; NaN for the intercept) and ``correction``.

    Notes
    -----
    Each fixed-effect term (e.g. ``ME - MaE``, ``emg_rms``) forms its own
    family across the measures (Benjamini & Hochberg 1995).
    """
    if isinstance(measures, str) or not isinstance(measures, Sequence) or not measures:
        raise ValueError(f"measures must be a non-empty sequence of column names, got {measures!r}")
    if len(set(measures)) != len(measures):
        raise ValueError("measures must be unique")
    stats_cfg, _, _ = _resolve_config(config)
    method = stats_cfg.fdr_method if method is None else method
    table = pd.concat([mixed_model(trials, measure=m, **kwargs) for m in measures], ignore_index=True)
    table["p_fdr"] = np.nan
    for term, idx in table.groupby("term").groups.items():
        if term != "Intercept":
            table.loc[idx, "p_fdr"] = fdr(table.loc[idx, "p"].to_numpy(), method)
    table["correction"] = np.where(table["term"] == "Intercept", "none", method)
    return table


def covariate_collinearity(
    trials: pd.DataFrame,
    covariate: str,
    *,
    condition: str = "condition",
    subject: str = "subject",
    contrast: tuple[str, str] = ("ME", "MaE"),
) -> dict[str, float]:
    """How much a trial-level covariate duplicates the condition contrast.

    The covariate and the condition indicator (1 for ``contrast[0]``) are
    centred within subject (the mixed model's random intercept absorbs
    between-subject offsets); their correlation ``r`` gives the variance
    inflation factor ``VIF = 1 / (1 - r^2)`` of the condition term in
    ``measure ~ condition + covariate``. With VIF above ~5 the adjusted
    condition estimate is uninformative (wide CI), not evidence against the
    condition effect.

    Parameters
    ----------
    trials : pandas.DataFrame
        One row per trial with ``condition``, ``subject`` and ``covariate`` columns.
    covariate : str
        Column of the covariate (e.g. ``"emg_rms_uv"``).
    condition, subject : str
        Column names.
    contrast : tuple of str
        The two conditions compared.

    Returns
    -------
    result : dict
        ``r``, ``r2``, ``vif`` and ``n_trials``.
    """
    for col in (covariate, condition, subject):
        if col not in trials.columns:
            raise ValueError(f"trials has no column {col!r}")
    sub = trials[trials[condition].isin(contrast)].dropna(subset=[covariate])
    if len(sub) < 3 or sub[condition].nunique() < 2:
        return {"r": float("nan"), "r2": float("nan"), "vif": float("nan"), "n_trials": int(len(sub))}
    x = (sub[condition] == contrast[0]).astype(float)
    y = sub[covariate].astype(float)
    xc = x - x.groupby(sub[subject]).transform("mean")
    yc = y - y.groupby(sub[subject]).transform("mean")
    denom = float(np.sqrt((xc**2).sum() * (yc**2).sum()))
    r = float((xc * yc).sum() / denom) if denom > 0 else float("nan")
    r2 = r * r
    return {"r": r, "r2": r2, "vif": float(1.0 / (1.0 - r2)) if r2 < 1 else float("inf"), "n_trials": int(len(sub))}


def cluster_tests(
    data: xr.DataArray,
    contrasts: Sequence[tuple[str, str]] = (("ME", "MaE"), ("ME", "NE")),
    *,
    config: Config | None = None,
    **kwargs: Any,
) -> dict[str, ClusterResult | None]:
    """Run :func:`cluster_test` for several contrasts; an untestable contrast gives None.

    Parameters
    ----------
    data : xarray.DataArray
        ``(subject, condition, <feature dims>)``.
    contrasts : sequence of (str, str)
        Condition pairs, e.g. ``(("ME", "MaE"), ("ME", "NE"))``.
    config : Config | None
        Statistics settings.
    **kwargs
        Passed to :func:`cluster_test`.

    Returns
    -------
    results : dict
        ``"A-B"`` -> :class:`ClusterResult`, or None when the contrast could not
        be tested (e.g. fewer than 2 subjects with both conditions; logged).
    """
    out: dict[str, ClusterResult | None] = {}
    for a, b in contrasts:
        try:
            out[f"{a}-{b}"] = cluster_test(data, contrast=(a, b), config=config, **kwargs)
        except ValueError as err:
            logger.warning("cluster test %s-%s not run: %s", a, b, err)
            out[f"{a}-{b}"] = None
    return out
