"""Graph metrics of functional networks, vectorised over stacks of graphs.

Every function takes a stack of undirected graphs ``(..., n, n)`` (e.g.
subject x condition x band x density x 64 x 64) and computes the metric for
all of them at once. Results equal those of the Brain Connectivity Toolbox
(bctpy, the reference implementation of the field) to floating-point
rounding; ``tests/test_network.py`` checks this to 1e-10 for every metric.

Conventions (the same as bctpy):

- An edge is a non-zero off-diagonal entry. Binary metrics (``weighted=False``)
  use only the edge pattern; weighted metrics use the weights, which must be
  non-negative (PLV is in [0, 1]).
- Weighted path metrics (distances, efficiencies, path length, betweenness)
  use connection *lengths* ``L_ij = 1 / W_ij`` (bct's
  ``weight_conversion(W, 'lengths')``): a strong coupling is a short path.
- Disconnected node pairs have distance ``inf`` and inverse distance 0.

The pipeline function :func:`graph_metrics` thresholds a connectivity
:class:`xarray.DataArray` ``(..., node, node_other)`` over a range of
densities (proportional thresholds, as in GRETNA and Zhao et al. 2022, 2024)
and returns a Dataset of metrics over ``(..., density[, node])`` plus their
area under the density curve (``<metric>_auc``).

Binary shortest paths run breadth-first searches on bit sets (one 64-bit
word per 64 nodes; for graphs of <= 64 nodes a level of the searches from
every node is one boolean product of bit rows), compiled with numba in
:mod:`mmme_neuro._graph_kernels`: nodal efficiency of 64-node graphs is
~70-80x faster than bctpy's ``distance_bin`` on one thread and 105-157x with
``n_jobs=-1`` on two cores (``benchmarks/bench_network.py``). Weighted
shortest paths use a Floyd-Warshall recursion vectorised over the stack.

Examples
--------
>>> import numpy as np
>>> from mmme_neuro import network
>>> rng = np.random.default_rng(0)
>>> W = rng.random((3, 8, 8)); W = (W + W.swapaxes(-1, -2)) / 2
>>> A = network.threshold_proportional(W, 0.3)
>>> network.global_efficiency(A).shape
(3,)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numba
import numpy as np
import xarray as xr

from . import _graph_kernels as _kernels
from ._utils import n_threads
from .config import Config, NetworkConfig
from .containers import provenance, validate

__all__ = [
    "GLOBAL_METRICS",
    "NODAL_METRICS",
    "betweenness",
    "characteristic_path_length",
    "clustering_coefficient",
    "degree",
    "density_auc",
    "global_efficiency",
    "graph_metrics",
    "hubs",
    "local_efficiency",
    "nodal_efficiency",
    "randomize_degree_preserving",
    "shortest_path_lengths",
    "small_world_metrics",
    "strength",
    "threshold_absolute",
    "threshold_proportional",
    "weight_to_length",
]

logger = logging.getLogger(__name__)

#: Metrics with one value per node, and what they are.
NODAL_METRICS: dict[str, str] = {
    "degree": "number of edges of the node",
    "strength": "sum of the edge weights of the node",
    "nodal_efficiency": "mean inverse shortest path length from the node to all others",
    "local_efficiency": "global efficiency of the subgraph of the node's neighbours",
    "clustering": "clustering coefficient (binary: Watts-Strogatz; weighted: Onnela)",
    "betweenness": "number of shortest paths between other nodes through the node",
}
#: Metrics with one value per graph, and what they are.
GLOBAL_METRICS: dict[str, str] = {
    "global_efficiency": "mean inverse shortest path length (Latora & Marchiori 2001)",
    "characteristic_path_length": "mean finite shortest path length (bct charpath)",
    "mean_clustering": "mean clustering coefficient over nodes (Cp)",
    "mean_local_efficiency": "mean local efficiency over nodes (Eloc)",
}
_DEFAULT_METRICS = (
    "degree",
    "nodal_efficiency",
    "local_efficiency",
    "clustering",
    "global_efficiency",
    "characteristic_path_length",
    "mean_clustering",
    "mean_local_efficiency",
)
#: Elements of a working array per chunk (bounds memory and keeps tables in cache).
_CHUNK_ELEMENTS = 1 << 21
#: Relative tolerance under which two weighted path lengths are equal (betweenness).
_TIE_RTOL = 1e-12


# --------------------------------------------------------------------------- thresholds


def threshold_proportional(
    W: np.ndarray, density: float, *, binarize: bool = True
) -> np.ndarray:
    """Keep the strongest edges of each graph so that it has a given density.

    Parameters
    ----------
    W : ndarray, shape (..., n, n)
        Symmetric weighted connectivity matrices (e.g. PLV), finite. The
        diagonal is ignored. Symmetry is tested as in bct
        (``np.allclose(W, W.T)``) and the upper triangle is used.
    density : float
        Proportion of the ``n (n - 1) / 2`` possible edges to keep, in (0, 1].
    binarize : bool
        Return 0/1 adjacency matrices (default) instead of the kept weights.

    Returns
    -------
    out : ndarray, shape (..., n, n)
        Thresholded matrices, exactly symmetric, zero diagonal, float64.

    Raises
    ------
    ValueError
        If ``W`` is not a finite, symmetric stack of square matrices or
        ``density`` is outside (0, 1].

    Notes
    -----
    Same result as ``bct.threshold_proportional(W, density)`` (bctpy 0.6):
    the number of kept edges is ``round((n**2 - n) * density / 2)`` with
    halves rounded up (MATLAB rounding), so the achieved density is the
    requested one up to rounding (64 nodes, 0.05: 101 of 2016 edges). Only
    non-zero entries are candidates, so a matrix with fewer non-zero entries
    keeps them all. Negative weights are candidates ranked below all positive
    ones, as in bct.

    Ties: among equal weights, the edge that comes *later* in row-major
    order of the upper triangle is kept first. This is what bct does when its
    (non-stable) ``np.argsort`` happens to keep equal elements in order;
    because numpy's quicksort does not promise that, bct's choice among
    exactly tied weights at the cut is implementation-defined, ours is
    fixed. Tie-free matrices (continuous PLV values) give identical results.
    """
    W = _check_stack(W, "W", exact_symmetry=False)
    _check_density(density)
    rank = _edge_ranks(W)
    return _apply_threshold(W, rank, _n_kept(W.shape[-1], density), binarize)


def threshold_absolute(W: np.ndarray, thr: float, *, binarize: bool = True) -> np.ndarray:
    """Keep the edges whose weight is at least ``thr``.

    Parameters
    ----------
    W : ndarray, shape (..., n, n)
        Symmetric weighted connectivity matrices, finite.
    thr : float
        Absolute weight threshold (in the unit of ``W``; PLV: 1). Weights
        below it are set to 0.
    binarize : bool
        Return 0/1 adjacency matrices (default) instead of the kept weights.

    Returns
    -------
    out : ndarray, shape (..., n, n)
        Thresholded matrices with zero diagonal, float64.

    Notes
    -----
    Same as ``bct.threshold_absolute(W, thr)`` (``W[W < thr] = 0``, diagonal
    cleared), followed by ``W != 0`` if ``binarize``.
    """
    W = _check_stack(W, "W", exact_symmetry=False)
    if not np.isfinite(thr):
        raise ValueError(f"thr must be a finite number, got {thr!r}")
    out = W.copy()
    _zero_diagonal(out)
    out[out < thr] = 0.0
    return (out != 0).astype(float) if binarize else out


def weight_to_length(W: np.ndarray) -> np.ndarray:
    """Convert connection weights to connection lengths, ``L = 1 / W``.

    Parameters
    ----------
    W : ndarray, shape (..., n, n)
        Non-negative weights; 0 means no edge.

    Returns
    -------
    L : ndarray, shape (..., n, n)
        ``1 / W`` on edges, 0 elsewhere (bct's ``weight_conversion(W, 'lengths')``).
    """
    W = np.asarray(W, dtype=float)
    L = np.zeros_like(W)
    np.divide(1.0, W, out=L, where=W != 0)
    return L


# --------------------------------------------------------------------------- metrics


def degree(W: np.ndarray) -> np.ndarray:
    """Node degree: number of edges of each node.

    Parameters
    ----------
    W : ndarray, shape (..., n, n)
        Symmetric, non-negative matrices with zero diagonal (binary or weighted).

    Returns
    -------
    k : ndarray, shape (..., n)
        Degrees (float64), ``bct.degrees_und``.
    """
    W = _check_graphs(W)
    return (W != 0).sum(axis=-1).astype(float)


def strength(W: np.ndarray) -> np.ndarray:
    """Node strength: sum of the edge weights of each node.

    Parameters
    ----------
    W : ndarray, shape (..., n, n)
        Symmetric, non-negative weighted matrices with zero diagonal.

    Returns
    -------
    s : ndarray, shape (..., n)
        Strengths, ``bct.strengths_und``.
    """
    W = _check_graphs(W)
    return W.sum(axis=-2, dtype=float)


def shortest_path_lengths(W: np.ndarray, *, weighted: bool = False) -> np.ndarray:
    """All-pairs shortest path lengths of every graph of a stack.

    Parameters
    ----------
    W : ndarray, shape (..., n, n)
        Symmetric, non-negative matrices with zero diagonal.
    weighted : bool
        False: number of edges (``bct.distance_bin``). True: sum of lengths
        ``1 / w`` (``bct.distance_wei(weight_conversion(W, 'lengths'))[0]``).

    Returns
    -------
    D : ndarray, shape (..., n, n)
        Distances; 0 on the diagonal, ``inf`` between disconnected nodes.
    """
    W = _check_graphs(W)
    if weighted:
        return _weighted_distances(W)
    return _binary_distances(W != 0)


def global_efficiency(W: np.ndarray, *, weighted: bool = False, n_jobs: int = 1) -> np.ndarray:
    """Global efficiency of each graph (Latora & Marchiori 2001).

    Parameters
    ----------
    W : ndarray, shape (..., n, n)
        Symmetric, non-negative matrices with zero diagonal.
    weighted : bool
        Use lengths ``1 / w`` instead of edge counts.
    n_jobs : int
        Threads of the binary kernel (see :func:`nodal_efficiency`).

    Returns
    -------
    E : ndarray, shape (...)
        Global efficiency.

    Notes
    -----
    .. math:: E = \\frac{1}{n (n - 1)} \\sum_{i \\ne j} \\frac{1}{d_{ij}}

    with :math:`1/d_{ij} = 0` for disconnected pairs; the mean of
    :func:`nodal_efficiency`. Equals ``bct.efficiency_bin(A)`` and
    ``bct.efficiency_wei(W)``.

    References
    ----------
    Latora V, Marchiori M (2001) Efficient behavior of small-world networks.
    Phys Rev Lett 87:198701.
    """
    return nodal_efficiency(W, weighted=weighted, n_jobs=n_jobs).mean(axis=-1)


def nodal_efficiency(W: np.ndarray, *, weighted: bool = False, n_jobs: int = 1) -> np.ndarray:
    """Nodal efficiency: mean inverse shortest path length from each node.

    Parameters
    ----------
    W : ndarray, shape (..., n, n)
        Symmetric, non-negative matrices with zero diagonal.
    weighted : bool
        Use lengths ``1 / w`` instead of edge counts.
    n_jobs : int
        Threads for binary graphs of <= 64 nodes (-1: all cores): the stack
        is split into that many contiguous parts, so the values do not depend
        on it. Default 1: the pipeline's parallelism is its dask workers, and
        threads inside them would compete for the same cores.

    Returns
    -------
    E : ndarray, shape (..., n)
        Nodal efficiency.

    Notes
    -----
    .. math:: E_i = \\frac{1}{n - 1} \\sum_{j \\ne i} \\frac{1}{d_{ij}}

    (Achard & Bullmore 2007); its mean over nodes is the global efficiency.
    bct has no function for it; the reference is ``1 / bct.distance_bin(A)``
    (or ``distance_wei``) with the diagonal set to 0, summed over rows and
    divided by ``n - 1``.

    References
    ----------
    Achard S, Bullmore E (2007) Efficiency and cost of economical brain
    functional networks. PLoS Comput Biol 3:e17.
    """
    W, (inv, _, _) = _checked_path_sums(W, weighted, _threads(n_jobs), all_sums=False)
    return inv / (W.shape[-1] - 1)


def characteristic_path_length(W: np.ndarray, *, weighted: bool = False, n_jobs: int = 1) -> np.ndarray:
    """Characteristic path length: mean shortest path length over connected pairs.

    Parameters
    ----------
    W : ndarray, shape (..., n, n)
        Symmetric, non-negative matrices with zero diagonal.
    weighted : bool
        Use lengths ``1 / w`` instead of edge counts.
    n_jobs : int
        Threads of the binary kernel (see :func:`nodal_efficiency`).

    Returns
    -------
    L : ndarray, shape (...)
        Characteristic path length; NaN for a graph without any edge.

    Notes
    -----
    .. math:: L = \\operatorname{mean}\\{d_{ij} : i \\ne j, d_{ij} < \\infty\\}

    i.e. ``bct.charpath(D, include_diagonal=False, include_infinite=False)[0]``
    (Rubinov & Sporns 2010): disconnected pairs are *left out*, so a graph
    that falls apart into components keeps a finite path length (the mean
    within components) rather than becoming infinite (bct's default
    ``include_infinite=True``). A graph without edges has no finite distance
    and gives NaN (bct: the mean of an empty array). Use
    :func:`global_efficiency` when disconnection should count.
    """
    _, (_, dsum, reach) = _checked_path_sums(W, weighted, _threads(n_jobs))
    total = reach.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, dsum.sum(axis=-1) / total, np.nan)


def clustering_coefficient(W: np.ndarray, *, weighted: bool = False) -> np.ndarray:
    """Clustering coefficient of each node.

    Parameters
    ----------
    W : ndarray, shape (..., n, n)
        Symmetric, non-negative matrices with zero diagonal. For the weighted
        coefficient the weights should lie in [0, 1] (PLV does).
    weighted : bool
        Onnela's weighted coefficient instead of the binary one.

    Returns
    -------
    C : ndarray, shape (..., n)
        Clustering coefficients; 0 for nodes with fewer than two neighbours.

    Notes
    -----
    Binary (Watts & Strogatz 1998; ``bct.clustering_coef_bu``):
    :math:`C_i = (A^3)_{ii} / (k_i (k_i - 1))`. Weighted (Onnela et al. 2005;
    ``bct.clustering_coef_wu``):
    :math:`C_i = (\\hat W^3)_{ii} / (k_i (k_i - 1))` with
    :math:`\\hat W = W^{1/3}` element-wise; weights are not rescaled (bct
    does not either), so weights above 1 give coefficients above 1.

    References
    ----------
    Onnela JP, Saramaki J, Kertesz J, Kaski K (2005) Intensity and coherence
    of motifs in weighted complex networks. Phys Rev E 71:065103.
    Rubinov M, Sporns O (2010) Complex network measures of brain connectivity:
    uses and interpretations. NeuroImage 52:1059-1069.
    """
    W = _check_graphs(W)
    return _clustering(W, weighted)


def local_efficiency(W: np.ndarray, *, weighted: bool = False) -> np.ndarray:
    """Local efficiency of each node: efficiency of its neighbourhood.

    Parameters
    ----------
    W : ndarray, shape (..., n, n)
        Symmetric, non-negative matrices with zero diagonal.
    weighted : bool
        Weighted variant of Wang et al. (2017), as in bct.

    Returns
    -------
    E : ndarray, shape (..., n)
        Local efficiency; 0 for nodes with fewer than two neighbours.

    Notes
    -----
    Binary (Latora & Marchiori 2001; ``bct.efficiency_bin(A, local=True)``):

    .. math:: E^{loc}_i = \\frac{1}{k_i (k_i - 1)}
              \\sum_{j \\ne h \\in N_i} \\frac{1}{d_{jh}(N_i)}

    where :math:`d_{jh}(N_i)` is the distance within the subgraph induced by
    the neighbours :math:`N_i` of node i.

    Weighted (``bct.efficiency_wei(W, local=True)`` of bctpy 0.6, the
    correction of Wang et al. 2017 of Rubinov & Sporns 2010):

    .. math:: E^{loc}_i = \\frac{1}{k_i (k_i - 1)} \\sum_{j \\ne h \\in N_i}
              (w_{ij} w_{ih})^{1/3} \\, \\frac{1}{d^{w}_{jh}(N_i)}

    where :math:`d^{w}_{jh}(N_i)` is the shortest path within the
    neighbourhood with *cube-rooted* lengths :math:`(1/w)^{1/3}`. (bct's
    older ``local='original'`` variant is not provided.)

    References
    ----------
    Latora V, Marchiori M (2001) Phys Rev Lett 87:198701.
    Wang Y, Ghumare E, Vandenberghe R, Dupont P (2017) Comparison of different
    generalizations of clustering coefficient and local efficiency for
    weighted undirected graphs. Neural Comput 29:313-331.
    """
    W = _check_graphs(W)
    if weighted:
        return _local_efficiency_wei(W)
    return _local_efficiency_bin(W != 0)


def betweenness(W: np.ndarray, *, weighted: bool = False) -> np.ndarray:
    """Node betweenness centrality.

    Parameters
    ----------
    W : ndarray, shape (..., n, n)
        Symmetric, non-negative matrices with zero diagonal.
    weighted : bool
        Shortest paths by lengths ``1 / w`` instead of edge counts.

    Returns
    -------
    BC : ndarray, shape (..., n)
        Betweenness, not normalised, counting ordered pairs (s, t) as bct does
        (twice networkx's undirected value); divide by ``(n - 1) (n - 2)`` to
        normalise to [0, 1].

    Notes
    -----
    .. math:: BC_v = \\sum_{s \\ne v \\ne t} \\frac{\\sigma_{st}(v)}{\\sigma_{st}}

    Binary: ``bct.betweenness_bin(A)`` (algebraic path counting, vectorised
    over the stack). Weighted: ``bct.betweenness_wei(L)`` with
    ``L = weight_conversion(W, 'lengths')`` (Brandes 2001). In the weighted
    case two paths count as equally short when their lengths agree to a
    relative 1e-12 (the distances come from a different summation order than
    bct's Dijkstra); bct compares floats exactly, so on weights with exactly
    tied alternative paths the two may differ. Tie-free weights agree.

    References
    ----------
    Brandes U (2001) A faster algorithm for betweenness centrality.
    J Math Sociol 25:163-177.
    """
    W = _check_graphs(W)
    if weighted:
        return _betweenness_wei(weight_to_length(W))
    return _betweenness_bin(W != 0)


def hubs(
    metric: xr.DataArray | np.ndarray, k_sd: float = 1.0, *, dim: str = "node", ddof: int = 1
) -> xr.DataArray | np.ndarray:
    """Flag hub nodes: nodes whose metric exceeds the mean by ``k_sd`` SD.

    Parameters
    ----------
    metric : DataArray or ndarray
        Nodal metric (e.g. degree, betweenness, nodal efficiency). A DataArray
        is reduced over ``dim``; an ndarray over its last axis.
    k_sd : float
        Number of standard deviations above the mean.
    dim : str
        Node dimension of a DataArray.
    ddof : int
        Delta degrees of freedom of the SD (1: sample SD, MATLAB's ``std`` and
        GRETNA's).

    Returns
    -------
    is_hub : DataArray or ndarray of bool
        Same shape as ``metric``; True where ``metric > mean + k_sd * SD``.
    """
    if not np.isfinite(k_sd):
        raise ValueError(f"k_sd must be finite, got {k_sd!r}")
    if isinstance(metric, xr.DataArray):
        if dim not in metric.dims:
            raise ValueError(f"metric has no dimension {dim!r} (dims: {metric.dims})")
        return metric > metric.mean(dim) + k_sd * metric.std(dim, ddof=ddof)
    x = np.asarray(metric, dtype=float)
    if x.ndim < 1:
        raise ValueError("metric must have a node axis")
    mean = x.mean(axis=-1, keepdims=True)
    return x > mean + k_sd * x.std(axis=-1, ddof=ddof, keepdims=True)


def density_auc(
    metric_values: xr.DataArray | np.ndarray,
    densities: Sequence[float] | np.ndarray | None = None,
    dim: str | int = "density",
) -> xr.DataArray | np.ndarray:
    """Area under a metric's curve over the density range (trapezoid rule).

    Parameters
    ----------
    metric_values : DataArray or ndarray
        Metric at each density.
    densities : sequence of float | None
        Densities (unit 1). None: the ``dim`` coordinate of a DataArray.
    dim : str or int
        Density dimension of a DataArray, or axis of an ndarray (a string
        means the last axis for an ndarray).

    Returns
    -------
    auc : DataArray or ndarray
        Integral over density; NaN where a value along the density is NaN.

    Notes
    -----
    .. math:: \\mathrm{AUC} = \\sum_{k} \\frac{(x_k + x_{k+1})}{2} (d_{k+1} - d_k)

    the summary of GRETNA (Wang et al. 2015), which integrates over the
    density range instead of choosing one threshold.
    """
    if isinstance(metric_values, xr.DataArray):
        if not isinstance(dim, str) or dim not in metric_values.dims:
            raise ValueError(f"metric_values has no dimension {dim!r} (dims: {metric_values.dims})")
        if densities is None:
            if dim not in metric_values.coords:
                raise ValueError(f"give densities: metric_values has no {dim!r} coordinate")
            x = np.asarray(metric_values[dim], dtype=float)
        else:
            x = _check_density_grid(densities, metric_values.sizes[dim])
        axis = metric_values.get_axis_num(dim)
        auc = np.trapezoid(metric_values.values, x=x, axis=axis)
        out = xr.DataArray(
            auc,
            dims=[d for d in metric_values.dims if d != dim],
            coords={k: v for k, v in metric_values.coords.items() if dim not in v.dims},
            attrs=dict(metric_values.attrs),
        )
        return out
    values = np.asarray(metric_values, dtype=float)
    axis = dim if isinstance(dim, int) else -1
    if densities is None:
        raise ValueError("densities are required for an ndarray")
    x = _check_density_grid(densities, values.shape[axis])
    return np.trapezoid(values, x=x, axis=axis)


# --------------------------------------------------------------------------- random networks


def randomize_degree_preserving(
    A: np.ndarray, n_swaps: int = 10, seed: int | np.random.RandomState | None = 0
) -> np.ndarray:
    """Randomise graphs while preserving every node's degree (Maslov-Sneppen).

    Parameters
    ----------
    A : ndarray, shape (..., n, n)
        Symmetric, non-negative matrices with zero diagonal (binary or weighted;
        weights travel with their edges, strengths are not preserved).
    n_swaps : int
        Rewiring iterations per edge: ``n_swaps * n_edges`` rewirings are
        attempted per graph (bct's ``itr``).
    seed : int or RandomState
        Seed of the legacy ``np.random.RandomState`` shared, in C order, by all
        graphs of the stack; the same seed gives the same result.

    Returns
    -------
    R : ndarray, shape (..., n, n)
        Randomised graphs with the same degree sequences.

    Notes
    -----
    The algorithm and random stream are those of ``bct.randmio_und``:
    graph 0 equals ``bct.randmio_und(A[0], n_swaps, seed=rs)[0]`` with
    ``rs = np.random.RandomState(seed)``, graph 1 the next call with the same
    ``rs``, and so on. Graphs in which no two edges are disjoint (fewer than
    two edges, a star, a triangle) cannot be rewired: bct loops forever on
    them, this function returns them unchanged (and logs it).

    References
    ----------
    Maslov S, Sneppen K (2002) Specificity and stability in topology of
    protein networks. Science 296:910-913.
    """
    A = _check_graphs(A)
    if not isinstance(n_swaps, (int, np.integer)) or n_swaps < 0:
        raise ValueError(f"n_swaps must be a non-negative integer, got {n_swaps!r}")
    rng = seed if isinstance(seed, np.random.RandomState) else np.random.RandomState(seed)
    flat = A.reshape(-1, *A.shape[-2:])
    out = np.empty_like(flat)
    for g in range(flat.shape[0]):
        out[g] = _randmio_und(flat[g], int(n_swaps), rng)
    return out.reshape(A.shape)


def small_world_metrics(
    A: np.ndarray, *, n_random: int = 10, n_swaps: int = 10, seed: int = 0
) -> dict[str, np.ndarray]:
    """Clustering and path length normalised by degree-preserving random graphs.

    Parameters
    ----------
    A : ndarray, shape (..., n, n)
        Binary (or binarised) symmetric matrices with zero diagonal.
    n_random : int
        Random graphs per input graph.
    n_swaps : int
        Rewiring iterations per edge (see :func:`randomize_degree_preserving`).
    seed : int
        Seed; all random graphs come from one stream, so results are
        deterministic.

    Returns
    -------
    metrics : dict of str to ndarray, each shape (...)
        ``clustering`` (Cp, mean binary clustering), ``path_length``
        (:func:`characteristic_path_length`), ``clustering_random`` and
        ``path_length_random`` (means over the random graphs), ``gamma`` =
        Cp / Cp_rand, ``lambda`` = L / L_rand, ``sigma`` = gamma / lambda.

    Notes
    -----
    Small-world network: gamma > 1 and lambda ~ 1, i.e. sigma > 1
    (Humphries & Gurney 2008; Rubinov & Sporns 2010).
    """
    A = _check_graphs(A) != 0
    if n_random < 1:
        raise ValueError(f"n_random must be >= 1, got {n_random}")
    rng = np.random.RandomState(seed)
    R = np.stack([randomize_degree_preserving(A, n_swaps, rng) for _ in range(n_random)])
    c = _clustering(A, False).mean(axis=-1)
    c_r = _clustering(R, False).mean(axis=-1).mean(axis=0)
    length = characteristic_path_length(A)
    length_r = characteristic_path_length(R).mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        gamma = c / c_r
        lam = length / length_r
        return {
            "clustering": c,
            "path_length": length,
            "clustering_random": c_r,
            "path_length_random": length_r,
            "gamma": gamma,
            "lambda": lam,
            "sigma": gamma / lam,
        }


# --------------------------------------------------------------------------- pipeline


def graph_metrics(
    conn: xr.DataArray,
    densities: Sequence[float] | None = None,
    *,
    weighted: bool = False,
    metrics: Sequence[str] = _DEFAULT_METRICS,
    config: Config | None = None,
    n_jobs: int = 1,
) -> xr.Dataset:
    """Threshold connectivity over densities and compute graph metrics.

    Parameters
    ----------
    conn : DataArray, dims (..., node, node_other)
        Symmetric connectivity (e.g. PLV per subject, condition, band).
    densities : sequence of float | None
        Proportional-threshold densities in (0, 1], increasing. None: those of
        ``config.network`` (default 0.05, 0.10, ..., 0.50).
    weighted : bool
        False: binarise the thresholded graphs (the field's default). True:
        keep the weights of the kept edges and use weighted metrics.
    metrics : sequence of str
        Names from :data:`NODAL_METRICS` and :data:`GLOBAL_METRICS`.
    config : Config | None
        Configuration recorded in the provenance (and source of default densities).
    n_jobs : int
        Threads of the binary path-length kernel (nodal and global
        efficiency, characteristic path length; see :func:`nodal_efficiency`);
        the values do not depend on it.

    Returns
    -------
    ds : Dataset
        One variable per metric, over ``(..., density, node)`` (nodal) or
        ``(..., density)`` (global), and ``<metric>_auc`` over ``(...[, node])``
        (trapezoid over density, needs two or more densities). ``density``
        has ``units`` "1"; attrs carry provenance.

    Notes
    -----
    Thresholds are :func:`threshold_proportional` (bct semantics; edges
    ranked once per matrix, reused for every density).
    """
    if not isinstance(conn, xr.DataArray):
        raise ValueError(f"conn must be an xarray.DataArray, got {type(conn).__name__}")
    for d in ("node", "node_other"):
        if d not in conn.dims:
            raise ValueError(f"conn needs dimensions 'node' and 'node_other', got {conn.dims}")
    unknown = [m for m in metrics if m not in NODAL_METRICS and m not in GLOBAL_METRICS]
    if unknown or not metrics:
        raise ValueError(f"unknown metrics {unknown}; choose from {sorted({**NODAL_METRICS, **GLOBAL_METRICS})}")
    if densities is None:
        densities = (config.network if config is not None else NetworkConfig()).densities()
    dens = np.asarray(densities, dtype=float)
    if dens.ndim != 1 or dens.size == 0:
        raise ValueError("densities must be a non-empty 1-D sequence")
    for p in dens:
        _check_density(float(p))
    if dens.size > 1 and np.any(np.diff(dens) <= 0):
        raise ValueError(f"densities must be strictly increasing, got {dens.tolist()}")
    threads = _threads(n_jobs)

    conn = conn.transpose(..., "node", "node_other")
    lead = list(conn.dims[:-2])
    W = _check_stack(conn.values, "conn", exact_symmetry=False)
    n = W.shape[-1]
    rank = _edge_ranks(W)
    results: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    for p in dens:
        keep = rank < _n_kept(n, float(p))
        G = np.where(keep, W, 0.0) if weighted else keep
        logger.debug("graph_metrics: density %.3f, %d graphs of %d nodes", p, G[..., 0, 0].size, n)
        for name, value in _compute_metrics(G, metrics, weighted, threads).items():
            results[name].append(value)

    density = xr.DataArray(dens, dims="density", attrs={"units": "1", "long_name": "edge density"})
    coords: dict[str, Any] = {
        k: v for k, v in conn.coords.items() if "node_other" not in v.dims
    }
    coords["density"] = density
    data_vars: dict[str, xr.DataArray] = {}
    for name in metrics:
        stacked = np.stack(results[name], axis=len(lead))
        nodal = name in NODAL_METRICS
        dims = [*lead, "density", "node"] if nodal else [*lead, "density"]
        use = {k: v for k, v in coords.items() if set(v.dims) <= set(dims)}
        desc = NODAL_METRICS.get(name) or GLOBAL_METRICS[name]
        data_vars[name] = xr.DataArray(
            stacked, dims=dims, coords=use,
            attrs={"long_name": desc, "weighted": weighted},
        )  # fmt: skip
    ds = xr.Dataset(data_vars)
    if dens.size > 1:
        for name in metrics:
            ds[f"{name}_auc"] = density_auc(ds[name], dim="density")
            ds[f"{name}_auc"].attrs["long_name"] = f"area under the density curve of {name}"
    else:
        logger.info("graph_metrics: one density only, no _auc variables")
    ds.attrs = provenance(
        config,
        analysis="graph_metrics",
        threshold="proportional (bct.threshold_proportional semantics)",
        densities=dens.tolist(),
        weighted=weighted,
        weight_to_length="1/w" if weighted else "none",
        metrics=list(metrics),
        source_attrs=dict(conn.attrs),
    )
    return validate(ds)


# --------------------------------------------------------------------------- validation helpers


def _check_stack(W: Any, name: str, *, exact_symmetry: bool) -> np.ndarray:
    try:
        W = np.asarray(W)
        if W.dtype != bool:  # boolean adjacency stays boolean (8x less memory)
            W = W.astype(float, copy=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array: {err}") from err
    if W.ndim < 2 or W.shape[-1] != W.shape[-2]:
        raise ValueError(f"{name} must be a stack of square matrices (..., n, n), got shape {W.shape}")
    if W.shape[-1] < 2:
        raise ValueError(f"{name} needs at least 2 nodes, got shape {W.shape}")
    if W.dtype != bool and not np.all(np.isfinite(W)):
        raise ValueError(f"{name} contains NaN or infinite values")
    Wt = W.swapaxes(-1, -2)
    symmetric = np.array_equal(W, Wt) if exact_symmetry else np.allclose(W, Wt)
    if not symmetric:
        hint = " exactly (use (W + W.swapaxes(-1, -2)) / 2)" if exact_symmetry else ""
        raise ValueError(f"{name} must be symmetric (undirected graphs){hint}")
    return W


def _check_graphs(W: Any) -> np.ndarray:
    """Validated stack: boolean graphs of <= 64 nodes checked on their bits (:func:`_bit_path_sums`)."""
    if _small_bool(W):
        g, kind = _kernels.check_1w(_bool_words(W), W.shape[-1])
        if g >= 0:
            _raise_bad_graph(W, g, kind)
        return W
    return _check_graphs_slow(W)


def _threads(n_jobs: Any) -> int:
    """Threads for the compiled kernels from an ``n_jobs`` argument (-1: all; at most numba's thread count)."""
    return n_threads(n_jobs, limit=int(numba.config.NUMBA_NUM_THREADS))


def _small_bool(W: Any) -> bool:
    """Whether W is a boolean ndarray stack of square graphs of 2-64 nodes (the bit kernels' input)."""
    return (
        isinstance(W, np.ndarray) and W.dtype == bool and W.ndim >= 2
        and W.shape[-1] == W.shape[-2] and 2 <= W.shape[-1] <= 64
    )  # fmt: skip


def _bool_words(A: np.ndarray) -> np.ndarray:
    """Boolean stack (..., n, n) as (G, n, ceil(n / 8)) little-endian uint64 of 8 bytes each (rows zero-padded)."""
    n = A.shape[-1]
    B = np.ascontiguousarray(A.reshape(-1, n, n)).view(np.uint8)
    if n % 8:  # rows as whole 8-byte groups (64-channel graphs need no copy)
        B = np.concatenate([B, np.zeros(B.shape[:-1] + (8 - n % 8,), np.uint8)], axis=-1)
    return B.view("<u8")


def _raise_bad_graph(A: np.ndarray, g: int, kind: int) -> None:
    """Raise the generic check's error for a stack the bit check rejected (graph g, kind)."""
    _check_graphs_slow(A)  # raises the error of the generic check (same messages)
    raise AssertionError(f"graph {g}: bit check (kind {kind}) and array check disagree")  # pragma: no cover


def _checked_path_sums(
    W: Any, weighted: bool, threads: int, all_sums: bool = True
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Validated stack and its per-source path sums (:func:`_path_sums`).

    Boolean graphs of <= 64 nodes are validated on their bits by the same
    compiled pass that searches them (:func:`_bit_path_sums`); anything else
    by :func:`_check_graphs` first.
    """
    if weighted or not _small_bool(W):
        W = _check_graphs(W)
    return W, _path_sums(W, weighted, threads, all_sums)


def _bit_path_sums(A: np.ndarray, threads: int, all_sums: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_path_sums` of a boolean stack of <= 64 nodes, which it also validates.

    Each graph is packed into bit rows, checked (symmetric, empty diagonal:
    64 x 64 bit transpose, ~6x faster than comparing the boolean array with
    its transpose) and searched, in one compiled pass per thread; without
    ``all_sums`` only the first sum (1/d) is computed, the other two are
    returned empty.
    """
    lead, n = A.shape[:-2], A.shape[-1]
    X = _bool_words(A)
    if _parallel(threads, X.shape[0]):
        inv, dsum, reach, g, kind = _kernels.checked_path_sums_1w_threads(X, n, all_sums, threads)
    else:
        inv, dsum, reach, g, kind = _kernels.checked_path_sums_1w(X, n, all_sums)
    if g >= 0:
        _raise_bad_graph(A, g, kind)
    shape = lead + (n,)
    if not all_sums:
        return inv.reshape(shape), dsum, reach
    return inv.reshape(shape), dsum.reshape(shape), reach.reshape(shape)


def _check_graphs_slow(W: Any) -> np.ndarray:
    W = _check_stack(W, "W", exact_symmetry=True)
    if W.dtype != bool and np.any(W < 0):
        raise ValueError("W has negative weights; graph metrics need weights >= 0")
    if np.any(np.diagonal(W, axis1=-2, axis2=-1) != 0):
        raise ValueError(
            "W has non-zero diagonal entries (self-loops); set the diagonal to 0 "
            "(threshold_proportional / threshold_absolute do)"
        )
    return W


def _check_density(p: float) -> None:
    if not (isinstance(p, (float, int, np.floating, np.integer)) and 0 < p <= 1):
        raise ValueError(f"density must be in (0, 1], got {p!r}")


def _check_density_grid(densities: Any, size: int) -> np.ndarray:
    x = np.asarray(densities, dtype=float)
    if x.ndim != 1 or x.size != size:
        raise ValueError(f"densities must be 1-D with {size} values, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("densities contain NaN or infinite values")
    return x


def _zero_diagonal(W: np.ndarray) -> None:
    n = W.shape[-1]
    W[..., np.arange(n), np.arange(n)] = 0.0


# --------------------------------------------------------------------------- threshold helpers


def _n_kept(n: int, p: float) -> int:
    """Edges kept by bct's threshold_proportional: MATLAB-rounded (n^2 - n) p / 2."""
    x = (n * n - n) * p / 2
    return int(math.floor(x) + (1 if x % 1 >= 0.5 else 0))


def _edge_ranks(W: np.ndarray) -> np.ndarray:
    """Rank matrix (..., n, n): 0 = strongest edge in bct's order; zeros and diagonal never kept."""
    n = W.shape[-1]
    iu, ju = np.triu_indices(n, 1)
    vals = W[..., iu, ju]
    m = vals.shape[-1]
    key = np.where(vals != 0, vals, -np.inf)
    order = np.argsort(key, axis=-1)  # quicksort; equals the stable order when there are no ties
    ranked = np.take_along_axis(key, order, axis=-1)
    if np.any((ranked[..., 1:] == ranked[..., :-1]) & np.isfinite(ranked[..., 1:])):
        order = np.argsort(key, axis=-1, kind="stable")
    order = order[..., ::-1]  # descending, later index first on ties
    rank = np.empty(order.shape, dtype=np.int32)
    np.put_along_axis(rank, order, np.arange(m, dtype=np.int32), axis=-1)
    rank[vals == 0] = m  # not an edge: never kept
    out = np.full(W.shape, m, dtype=np.int32)
    out[..., iu, ju] = rank
    out[..., ju, iu] = rank
    return out


def _apply_threshold(W: np.ndarray, rank: np.ndarray, n_keep: int, binarize: bool) -> np.ndarray:
    keep = rank < n_keep
    return keep.astype(float) if binarize else np.where(keep, W, 0.0)



# --------------------------------------------------------------------------- metric helpers


def _compute_metrics(G: np.ndarray, metrics: Sequence[str], weighted: bool, threads: int = 1) -> dict[str, np.ndarray]:
    """Metrics of a validated stack of thresholded graphs; shared work done once (``threads``: :func:`_threads`)."""
    n = G.shape[-1]
    out: dict[str, np.ndarray] = {}
    wanted = set(metrics)
    if wanted & {"nodal_efficiency", "global_efficiency", "characteristic_path_length"}:
        inv, dsum, reach = _path_sums(G, weighted, threads)
        nodal = inv / (n - 1)
        out["nodal_efficiency"] = nodal
        out["global_efficiency"] = nodal.mean(axis=-1)
        total = reach.sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["characteristic_path_length"] = np.where(total > 0, dsum.sum(axis=-1) / total, np.nan)
    if wanted & {"clustering", "mean_clustering"}:
        out["clustering"] = _clustering(G, weighted)
        out["mean_clustering"] = out["clustering"].mean(axis=-1)
    if wanted & {"local_efficiency", "mean_local_efficiency"}:
        loc = _local_efficiency_wei(G) if weighted else _local_efficiency_bin(G != 0)
        out["local_efficiency"] = loc
        out["mean_local_efficiency"] = loc.mean(axis=-1)
    if "degree" in wanted:
        out["degree"] = (G != 0).sum(axis=-1).astype(float)
    if "strength" in wanted:
        out["strength"] = G.sum(axis=-2, dtype=float)
    if "betweenness" in wanted:
        out["betweenness"] = (
            _betweenness_wei(weight_to_length(G)) if weighted else _betweenness_bin(G != 0)
        )
    return {m: out[m] for m in metrics}


def _path_sums(
    W: np.ndarray, weighted: bool, threads: int = 1, all_sums: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per source node of a validated stack: sum of 1/d, sum of finite d, number of reachable others.

    Binary graphs of <= 64 nodes: :func:`_bit_path_sums` (``threads``:
    :func:`_threads`; ``all_sums=False`` leaves the last two empty); larger
    ones are searched on one thread.
    """
    if not weighted and W.shape[-1] <= 64:
        return _bit_path_sums(W if W.dtype == bool else W != 0, threads, all_sums)
    if weighted:
        D = _weighted_distances(W)
        n = D.shape[-1]
        off = ~np.eye(n, dtype=bool)
        finite = np.isfinite(D) & off
        with np.errstate(divide="ignore"):
            inv = np.where(finite, 1.0 / np.where(finite, D, 1.0), 0.0)
        return inv.sum(-1), np.where(finite, D, 0.0).sum(-1), finite.sum(-1).astype(float)
    lead, n = W.shape[:-2], W.shape[-1]
    sums = _kernels.path_sums(_pack(W), n)
    return tuple(x.reshape(lead + (n,)) for x in sums)  # type: ignore[return-value]


def _parallel(threads: int, n_graphs: int) -> bool:
    """Whether a stack is worth splitting over threads (starting them costs ~tens of us; a graph ~1 us)."""
    return threads > 1 and n_graphs >= 64 * threads


def _binary_distances(A: np.ndarray) -> np.ndarray:
    lead, n = A.shape[:-2], A.shape[-1]
    return _kernels.distances(_pack(A), n).reshape(lead + (n, n))


def _pack(A: np.ndarray) -> np.ndarray:
    """Edge pattern of a stack (..., n, n) as bit rows (G, n, ceil(n / 64)) of uint64 (little-endian)."""
    n = A.shape[-1]
    flat = A.reshape(-1, n, n)
    words = -(-n // 64)
    B = np.packbits(flat if flat.dtype == bool else flat != 0, axis=-1, bitorder="little")
    if B.shape[-1] != words * 8:
        B = np.concatenate([B, np.zeros(B.shape[:-1] + (words * 8 - B.shape[-1],), np.uint8)], axis=-1)
    return np.ascontiguousarray(B).view("<u8")


def _local_efficiency_bin(A: np.ndarray) -> np.ndarray:
    lead, n = A.shape[:-2], A.shape[-1]
    k = A.reshape(-1, n, n).sum(axis=-1).astype(float)  # (G, n)
    num = _kernels.local_efficiency_sums(_pack(A), n)
    denom = k * (k - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        E = np.where((num > 0) & (denom > 0), num / np.where(denom > 0, denom, 1), 0.0)
    return E.reshape(lead + (n,))


def _floyd_warshall(L: np.ndarray) -> np.ndarray:
    """All-pairs shortest paths of a stack of length matrices (inf = no edge)."""
    D = L.copy()
    n = D.shape[-1]
    D[..., np.arange(n), np.arange(n)] = 0.0
    flat = D.reshape(-1, n, n)
    chunk = max(1, (1 << 16) // (n * n))  # keep a chunk in cache
    tmp = np.empty((chunk, n, n))
    for start in range(0, flat.shape[0], chunk):
        block = flat[start:start + chunk]
        t = tmp[: block.shape[0]]
        for k in range(n):
            np.add(block[:, :, k, None], block[:, None, k, :], out=t)
            np.minimum(block, t, out=block)
    return D


def _lengths_inf(W: np.ndarray) -> np.ndarray:
    L = np.full(W.shape, np.inf)
    np.divide(1.0, W, out=L, where=W != 0)
    return L


def _weighted_distances(W: np.ndarray) -> np.ndarray:
    return _floyd_warshall(_lengths_inf(W))


def _clustering(W: np.ndarray, weighted: bool) -> np.ndarray:
    A = W != 0
    k = A.sum(axis=-1).astype(float)
    # binary: float32 products of 0/1 are exact integers (< 2**24)
    M = np.cbrt(W.astype(float, copy=False)) if weighted else A.astype(np.float32)
    cyc3 = np.einsum("...ij,...ij->...i", M @ M, M).astype(float)  # diag(M^3), M symmetric
    denom = k * (k - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((cyc3 != 0) & (denom > 0), cyc3 / np.where(denom > 0, denom, 1), 0.0)


def _local_efficiency_wei(W: np.ndarray) -> np.ndarray:
    lead, n = W.shape[:-2], W.shape[-1]
    flat = W.reshape(-1, n, n).astype(float, copy=False)
    A = flat != 0
    k = A.sum(axis=-1)
    c = np.cbrt(flat)  # cube-rooted weights
    Lc = np.full(flat.shape, np.inf)
    np.divide(1.0, c, out=Lc, where=A)  # cube-rooted lengths (1/w)^(1/3)
    num = np.zeros(flat.shape[:2])
    offdiag = {}
    for kk in np.unique(k[k >= 2]):
        kk = int(kk)
        gg, uu = np.nonzero(k == kk)
        offd = offdiag.setdefault(kk, ~np.eye(kk, dtype=bool))
        budget = max(1, _CHUNK_ELEMENTS // (kk * kk))
        for s in range(0, gg.size, budget):
            g, u = gg[s:s + budget], uu[s:s + budget]
            nbr = np.nonzero(A[g, u])[1].reshape(g.size, kk)  # neighbours of u, ascending
            D = _floyd_warshall(Lc[g[:, None, None], nbr[:, :, None], nbr[:, None, :]])
            with np.errstate(divide="ignore"):
                inv = np.where(offd & np.isfinite(D), 1.0 / np.where(offd, D, 1.0), 0.0)
            cw = c[g[:, None], u[:, None], nbr]
            num[g, u] = np.einsum("si,sij,sj->s", cw, inv, cw)
    denom = k * (k - 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        E = np.where((num != 0) & (denom > 0), num / np.where(denom > 0, denom, 1), 0.0)
    return E.reshape(lead + (n,))


def _betweenness_bin(A: np.ndarray) -> np.ndarray:
    """bct.betweenness_bin vectorised over the stack (algebraic path counting)."""
    A = A.astype(float)
    n = A.shape[-1]
    eye = np.eye(n, dtype=bool)
    nsp = A.copy()
    nsp[..., eye] = 1.0
    L = A.copy()
    L[..., eye] = 1.0
    paths_d = A.copy()  # shortest paths of exactly the current length
    d = 1
    while np.any(paths_d):
        d += 1
        paths_d = (paths_d @ A) * (L == 0)
        nsp += paths_d
        L += d * (paths_d != 0)
    diam = d - 1
    L[L == 0] = np.inf
    L[..., eye] = 0.0
    nsp[nsp == 0] = 1.0
    dp = np.zeros_like(A)
    At = A.swapaxes(-1, -2)
    for dd in range(diam, 1, -1):
        dp += (((L == dd) * (1 + dp) / nsp) @ At) * ((L == dd - 1) * nsp)
    return dp.sum(axis=-2)


def _betweenness_wei(Lw: np.ndarray) -> np.ndarray:
    """Brandes' betweenness on length matrices (0 = no edge), vectorised over graphs and sources."""
    lead, n = Lw.shape[:-2], Lw.shape[-1]
    L = np.where(Lw != 0, Lw, np.inf).reshape(-1, n, n)
    out = np.zeros(L.shape[:2])
    chunk = max(1, _CHUNK_ELEMENTS // (n * n))
    for start in range(0, L.shape[0], chunk):
        out[start:start + chunk] = _brandes_chunk(L[start:start + chunk])
    return out.reshape(lead + (n,))


def _brandes_chunk(L: np.ndarray) -> np.ndarray:
    g, n = L.shape[0], L.shape[-1]
    D = _floyd_warshall(L)  # (g, source, node)
    order = np.argsort(D, axis=-1, kind="stable")  # source first, unreachable last
    gi = np.arange(g)[:, None]
    si = np.arange(n)[None, :]
    sigma = np.zeros((g, n, n))
    sigma[:, np.arange(n), np.arange(n)] = 1.0

    def preds(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dw = D[gi, si, w]  # (g, s)
        lw = L[gi, w]  # (g, s, v) = length v -> w (symmetric)
        with np.errstate(invalid="ignore"):
            p = np.abs(D + lw - dw[..., None]) <= _TIE_RTOL * dw[..., None]
        return p & np.isfinite(dw)[..., None], dw

    for t in range(1, n):
        w = order[:, :, t]
        p, _ = preds(w)
        sigma[gi, si, w] = (sigma * p).sum(axis=-1)
    delta = np.zeros((g, n, n))
    for t in range(n - 1, 0, -1):
        w = order[:, :, t]
        p, _ = preds(w)
        sw = sigma[gi, si, w]
        with np.errstate(invalid="ignore", divide="ignore"):
            coef = np.where(sw > 0, (1.0 + delta[gi, si, w]) / np.where(sw > 0, sw, 1.0), 0.0)
        delta += p * sigma * coef[..., None]
    delta[:, np.arange(n), np.arange(n)] = 0.0
    return delta.sum(axis=1)


def _randmio_und(R: np.ndarray, itr: int, rng: np.random.RandomState) -> np.ndarray:
    """bct.randmio_und (bctpy 0.6) on one graph, same random stream; unrewirable graphs returned."""
    R = R.copy()
    n = len(R)
    i, j = np.where(np.tril(R))
    k = len(i)
    if k < 2 or not _has_disjoint_edges(i, j, R):
        logger.info("randomize_degree_preserving: graph with %d edges cannot be rewired; unchanged", k)
        return R
    max_attempts = np.round(n * k / (n * (n - 1)))
    eff = 0
    for _ in range(int(itr * k)):
        att = 0
        while att <= max_attempts:
            while True:
                e1, e2 = rng.randint(k, size=(2,))
                while e1 == e2:
                    e2 = rng.randint(k)
                a, b, c, d = i[e1], j[e1], i[e2], j[e2]
                if a != c and a != d and b != c and b != d:
                    break
            if rng.random_sample() > 0.5:
                i[e2], j[e2] = d, c
                c, d = i[e2], j[e2]
            if not (R[a, d] or R[c, b]):
                R[a, d], R[a, b] = R[a, b], 0
                R[d, a], R[b, a] = R[b, a], 0
                R[c, b], R[c, d] = R[c, d], 0
                R[b, c], R[d, c] = R[d, c], 0
                j[e1], j[e2] = d, b
                eff += 1
                break
            att += 1
    logger.debug("randomize_degree_preserving: %d rewirings", eff)
    return R


def _has_disjoint_edges(i: np.ndarray, j: np.ndarray, R: np.ndarray) -> bool:
    deg = (R != 0).sum(axis=-1)
    # edges sharing no endpoint with edge (a, b): k - deg(a) - deg(b) + 1
    return bool(np.any(len(i) - deg[i] - deg[j] + 1 > 0))
