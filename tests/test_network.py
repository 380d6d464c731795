"""Graph metrics (mmme_neuro.network) against the Brain Connectivity Toolbox (bctpy)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmme_neuro import network as nw
from mmme_neuro.containers import validate

bct = pytest.importorskip("bct")

ATOL = 1e-10


def _close(actual, expected) -> None:
    np.testing.assert_allclose(np.asarray(actual, float), np.asarray(expected, float), rtol=0, atol=ATOL)


def _sym(n: int, rng: np.random.Generator) -> np.ndarray:
    W = rng.random((n, n))
    W = (W + W.T) / 2
    np.fill_diagonal(W, 0)
    return W


def _plv_like(n: int, rng: np.random.Generator) -> np.ndarray:
    """PLV-like: values in [0, 1], zero diagonal, spatially smooth structure."""
    pos = rng.normal(size=(n, 3))
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    W = np.clip(np.exp(-dist / 2) * 0.7 + 0.3 * _sym(n, rng), 0, 1)
    W = (W + W.T) / 2
    np.fill_diagonal(W, 0)
    return W


def _bct_nodal_efficiency(D: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        inv = 1.0 / D
    np.fill_diagonal(inv, 0)
    return inv.sum(axis=1) / (len(D) - 1)


def _bct_charpath(D: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # empty graph: mean of nothing
        return bct.charpath(D, include_diagonal=False, include_infinite=False)[0]


def _check_all_metrics_binary(A: np.ndarray) -> None:
    D = bct.distance_bin(A)
    _close(nw.shortest_path_lengths(A), D)
    _close(nw.global_efficiency(A), bct.efficiency_bin(A))
    _close(nw.nodal_efficiency(A), _bct_nodal_efficiency(D))
    _close(nw.local_efficiency(A), bct.efficiency_bin(A, local=True))
    _close(nw.clustering_coefficient(A), bct.clustering_coef_bu(A))
    _close(nw.characteristic_path_length(A), _bct_charpath(D))
    _close(nw.degree(A), bct.degrees_und(A))
    _close(nw.betweenness(A), bct.betweenness_bin(A))


def _check_all_metrics_weighted(W: np.ndarray) -> None:
    L = bct.weight_conversion(W, "lengths")
    D = bct.distance_wei(L)[0]
    _close(nw.weight_to_length(W), L)
    _close(nw.shortest_path_lengths(W, weighted=True), D)
    _close(nw.global_efficiency(W, weighted=True), bct.efficiency_wei(W))
    _close(nw.nodal_efficiency(W, weighted=True), _bct_nodal_efficiency(D))
    _close(nw.local_efficiency(W, weighted=True), bct.efficiency_wei(W, local=True))
    _close(nw.clustering_coefficient(W, weighted=True), bct.clustering_coef_wu(W))
    _close(nw.characteristic_path_length(W, weighted=True), _bct_charpath(D))
    _close(nw.strength(W), bct.strengths_und(W))
    _close(nw.degree(W), bct.degrees_und(W))
    _close(nw.betweenness(W, weighted=True), bct.betweenness_wei(L))


# ----------------------------------------------------------------------------- exactness


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(5, 30), density=st.floats(0.02, 1.0), seed=st.integers(0, 2**32 - 1))
def test_random_graphs_equal_bct(n, density, seed):
    W = _sym(n, np.random.default_rng(seed))
    A = nw.threshold_proportional(W, density)
    Wt = nw.threshold_proportional(W, density, binarize=False)
    _close(Wt, bct.threshold_proportional(W, density))
    _close(A, bct.threshold_proportional(W, density) != 0)
    _check_all_metrics_binary(A)
    _check_all_metrics_weighted(Wt)


@pytest.mark.parametrize("density", [0.05, 0.15, 0.5])
def test_plv_like_64_nodes_equal_bct(density):
    W = _plv_like(64, np.random.default_rng(7))
    A = nw.threshold_proportional(W, density)
    assert A.sum() / 2 == bct.threshold_proportional(W, density).astype(bool).sum() / 2
    _check_all_metrics_binary(A)
    _check_all_metrics_weighted(nw.threshold_proportional(W, density, binarize=False))


def _two_components(n: int = 12) -> np.ndarray:
    rng = np.random.default_rng(3)
    W = np.zeros((n, n))
    h = n // 2
    W[:h, :h] = _sym(h, rng)
    W[h:, h:] = _sym(n - h, rng)
    return W


def _isolated_nodes(n: int = 10) -> np.ndarray:
    W = _sym(n, np.random.default_rng(4))
    W[[2, 7], :] = 0
    W[:, [2, 7]] = 0
    return W


def _complete(n: int = 9) -> np.ndarray:
    return _sym(n, np.random.default_rng(5)) + 0.01 * (1 - np.eye(n))


@pytest.mark.parametrize(
    "W",
    [_two_components(), _isolated_nodes(), _complete(), np.zeros((8, 8)),
     (1 - np.eye(7)), np.eye(6, k=1) + np.eye(6, k=-1)],
    ids=["two_components", "isolated_nodes", "complete", "empty", "complete_unit", "path"],
)  # fmt: skip
def test_special_graphs_equal_bct(W):
    _check_all_metrics_binary((W != 0).astype(float))
    _check_all_metrics_weighted(W)


def test_empty_and_disconnected_conventions():
    # no edge: efficiency 0, path length NaN (bct: mean of nothing)
    assert nw.global_efficiency(np.zeros((5, 5))) == 0
    assert np.isnan(nw.characteristic_path_length(np.zeros((5, 5))))
    # disconnected pairs are left out of the path length, counted as 0 in efficiency
    A = np.zeros((4, 4))
    A[0, 1] = A[1, 0] = A[2, 3] = A[3, 2] = 1
    assert nw.characteristic_path_length(A) == 1.0
    assert nw.global_efficiency(A) == pytest.approx(4 / 12)


# ----------------------------------------------------------------------------- thresholds


def test_threshold_stack_equals_bct_per_graph():
    rng = np.random.default_rng(11)
    W = np.stack([_plv_like(20, rng) for _ in range(6)]).reshape(2, 3, 20, 20)
    for p in (0.05, 0.1, 0.33, 0.5, 1.0):
        out = nw.threshold_proportional(W, p, binarize=False)
        ref = np.stack([bct.threshold_proportional(w, p) for w in W.reshape(-1, 20, 20)])
        _close(out, ref.reshape(W.shape))
        assert np.array_equal(out, out.swapaxes(-1, -2))


def test_threshold_count_uses_matlab_rounding():
    W = _sym(64, np.random.default_rng(0))
    # (64**2 - 64) * 0.05 / 2 = 100.8 -> 101 edges; 0.25 of 10 nodes: 11.25 -> 11; 0.5 of 6: 7.5 -> 8
    assert nw.threshold_proportional(W, 0.05).sum() / 2 == 101
    assert nw.threshold_proportional(_sym(10, np.random.default_rng(1)), 0.25).sum() / 2 == 11
    assert nw.threshold_proportional(_sym(6, np.random.default_rng(1)), 0.5).sum() / 2 == 8


def test_threshold_ties_are_deterministic_later_edge_first():
    W = np.ones((4, 4)) - np.eye(4)  # six tied edges; keep round(12 * 0.25 / 2) = 2
    A = nw.threshold_proportional(W, 0.25)
    # upper-triangle row-major order: (0,1) (0,2) (0,3) (1,2) (1,3) (2,3); the last two are kept
    expected = np.zeros((4, 4))
    expected[[1, 2], [3, 3]] = expected[[3, 3], [1, 2]] = 1
    np.testing.assert_array_equal(A, expected)


def test_threshold_keeps_only_nonzero_entries():
    W = np.zeros((5, 5))
    W[0, 1] = W[1, 0] = 0.3
    out = nw.threshold_proportional(W, 1.0)
    assert out.sum() == 2
    _close(out, bct.threshold_proportional(W, 1.0) != 0)


def test_threshold_absolute_equals_bct():
    W = _plv_like(15, np.random.default_rng(2))
    np.fill_diagonal(W, 1.0)
    for thr in (0.2, 0.5, 0.9):
        _close(nw.threshold_absolute(W, thr, binarize=False), bct.threshold_absolute(W, thr))
        _close(nw.threshold_absolute(W, thr), bct.threshold_absolute(W, thr) != 0)


# ----------------------------------------------------------------------------- stacks


def test_stack_equals_loop():
    rng = np.random.default_rng(21)
    W = np.stack([_plv_like(16, rng) for _ in range(12)])
    G = np.stack([nw.threshold_proportional(w, p, binarize=False)
                  for w, p in zip(W, np.linspace(0.05, 0.6, 12), strict=True)]).reshape(3, 4, 16, 16)  # fmt: skip
    funcs = [nw.global_efficiency, nw.nodal_efficiency, nw.local_efficiency, nw.clustering_coefficient,
             nw.characteristic_path_length, nw.betweenness, nw.shortest_path_lengths]  # fmt: skip
    for f in funcs:
        for weighted in (False, True):
            Gw = G if weighted else (G != 0).astype(float)
            stacked = f(Gw, weighted=weighted)
            loop = np.stack([f(g, weighted=weighted) for g in Gw.reshape(-1, 16, 16)])
            _close(stacked.reshape(loop.shape), loop)
    assert nw.degree(G).shape == (3, 4, 16)
    assert nw.global_efficiency(G).shape == (3, 4)


def test_boolean_input_equals_float_input():
    A = nw.threshold_proportional(_plv_like(20, np.random.default_rng(8)), 0.2)
    for f in (nw.nodal_efficiency, nw.local_efficiency, nw.clustering_coefficient, nw.betweenness):
        _close(f(A.astype(bool)), f(A))


def test_more_than_64_nodes():
    """Bit sets span several 64-bit words."""
    A = nw.threshold_proportional(_plv_like(70, np.random.default_rng(9)), 0.08)
    _close(nw.nodal_efficiency(A), _bct_nodal_efficiency(bct.distance_bin(A)))
    _close(nw.local_efficiency(A), bct.efficiency_bin(A, local=True))


# ----------------------------------------------------------------------------- AUC, hubs


def test_density_auc_by_hand():
    d = np.array([0.05, 0.1, 0.2])
    y = np.array([[1.0, 2.0, 4.0], [0.0, 1.0, 1.0]])
    hand = np.array([(1 + 2) / 2 * 0.05 + (2 + 4) / 2 * 0.1, (0 + 1) / 2 * 0.05 + (1 + 1) / 2 * 0.1])
    _close(nw.density_auc(y, d), hand)
    da = xr.DataArray(y, dims=("subject", "density"), coords={"density": d})
    out = nw.density_auc(da)
    assert out.dims == ("subject",)
    _close(out.values, hand)
    with pytest.raises(ValueError, match="densities"):
        nw.density_auc(y, [0.1, 0.2])


def test_hubs():
    x = np.array([1.0, 1.0, 1.0, 1.0, 10.0])
    assert nw.hubs(x).tolist() == [False, False, False, False, True]
    da = xr.DataArray(np.stack([x, x[::-1]]), dims=("subject", "node"))
    assert nw.hubs(da).sum("node").values.tolist() == [1, 1]


# ----------------------------------------------------------------------------- randomisation


def test_randomisation_preserves_degrees_and_is_deterministic():
    A = np.stack([nw.threshold_proportional(_plv_like(20, np.random.default_rng(s)), 0.2) for s in range(3)])
    R1 = nw.randomize_degree_preserving(A, 5, seed=3)
    R2 = nw.randomize_degree_preserving(A, 5, seed=3)
    R3 = nw.randomize_degree_preserving(A, 5, seed=4)
    np.testing.assert_array_equal(R1, R2)
    assert not np.array_equal(R1, R3)
    assert not np.array_equal(R1, A)
    np.testing.assert_array_equal(R1.sum(axis=-1), A.sum(axis=-1))
    assert np.array_equal(R1, R1.swapaxes(-1, -2)) and not np.any(np.diagonal(R1, axis1=-2, axis2=-1))


def test_randomisation_equals_bct_randmio_und():
    A = np.stack([nw.threshold_proportional(_plv_like(16, np.random.default_rng(s)), 0.3) for s in range(2)])
    ours = nw.randomize_degree_preserving(A, 3, seed=12)
    rs = np.random.RandomState(12)
    ref = np.stack([bct.randmio_und(a, 3, seed=rs)[0] for a in A])
    np.testing.assert_array_equal(ours, ref)


def test_unrewirable_graph_returned_unchanged():
    star = np.zeros((5, 5))
    star[0, 1:] = star[1:, 0] = 1
    np.testing.assert_array_equal(nw.randomize_degree_preserving(star, 5, seed=0), star)


def test_small_world_metrics_deterministic():
    A = nw.threshold_proportional(_plv_like(20, np.random.default_rng(1)), 0.25)
    m1 = nw.small_world_metrics(A, n_random=3, n_swaps=3, seed=1)
    m2 = nw.small_world_metrics(A, n_random=3, n_swaps=3, seed=1)
    for key in ("gamma", "lambda", "sigma"):
        assert m1[key] == m2[key]
    _close(m1["clustering"], bct.clustering_coef_bu(A).mean())
    assert m1["gamma"] > 1  # spatially clustered graph vs random rewiring


# ----------------------------------------------------------------------------- pipeline


def test_graph_metrics_dataset():
    rng = np.random.default_rng(5)
    W = np.stack([_plv_like(12, rng) for _ in range(6)]).reshape(2, 3, 12, 12)
    nodes = [f"ch{i}" for i in range(12)]
    conn = xr.DataArray(W, dims=("subject", "condition", "node", "node_other"),
                        coords={"subject": ["sub-01", "sub-02"], "condition": ["ME", "MaE", "NE"],
                                "node": nodes, "node_other": nodes})  # fmt: skip
    dens = (0.1, 0.2, 0.3)
    ds = nw.graph_metrics(conn, dens, metrics=("nodal_efficiency", "global_efficiency", "clustering",
                                                 "characteristic_path_length", "betweenness"))  # fmt: skip
    validate(ds)
    assert ds["nodal_efficiency"].dims == ("subject", "condition", "density", "node")
    assert ds["global_efficiency"].dims == ("subject", "condition", "density")
    assert ds["global_efficiency_auc"].dims == ("subject", "condition")
    assert ds["nodal_efficiency_auc"].dims == ("subject", "condition", "node")
    assert ds["density"].attrs["units"] == "1"
    assert list(ds["node"].values) == nodes
    assert ds.attrs["analysis"] == "graph_metrics" and "mmme_neuro_version" in ds.attrs
    for i, p in enumerate(dens):
        A = nw.threshold_proportional(W, p)
        _close(ds["nodal_efficiency"].isel(density=i).values, nw.nodal_efficiency(A))
        _close(ds["betweenness"].isel(density=i).values, nw.betweenness(A))
    _close(ds["global_efficiency_auc"].values, nw.density_auc(ds["global_efficiency"].values, dens))
    dsw = nw.graph_metrics(conn, dens, weighted=True, metrics=("clustering", "strength"))
    _close(dsw["clustering"].isel(density=1).values,
           nw.clustering_coefficient(nw.threshold_proportional(W, 0.2, binarize=False), weighted=True))  # fmt: skip


def test_graph_metrics_default_densities_from_config():
    conn = xr.DataArray(_plv_like(10, np.random.default_rng(0)), dims=("node", "node_other"))
    ds = nw.graph_metrics(conn, metrics=("global_efficiency",))
    np.testing.assert_allclose(ds["density"].values, np.arange(1, 11) * 0.05)
    assert ds["global_efficiency"].dims == ("density",)


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("W", "match"),
    [(np.zeros((3, 4)), "square"), (np.zeros(5), "square"), (np.array([[0, 1], [0, 0]]), "symmetric"),
     (np.full((3, 3), np.nan), "NaN"), (np.zeros((1, 1)), "2 nodes")],
)  # fmt: skip
def test_bad_matrices_raise(W, match):
    with pytest.raises(ValueError, match=match):
        nw.threshold_proportional(W, 0.5)
    with pytest.raises(ValueError, match=match):
        nw.global_efficiency(W)


@pytest.mark.parametrize("density", [0.0, -0.1, 1.5, float("nan")])
def test_bad_density_raises(density):
    with pytest.raises(ValueError, match="density"):
        nw.threshold_proportional(_sym(5, np.random.default_rng(0)), density)


def test_metric_input_checks():
    W = _sym(5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="diagonal"):
        nw.nodal_efficiency(W + np.eye(5))
    with pytest.raises(ValueError, match="negative"):
        nw.clustering_coefficient(-W)
    with pytest.raises(ValueError, match="symmetric"):
        W2 = W.copy()
        W2[0, 1] += 1e-12
        nw.betweenness(W2)
    conn = xr.DataArray(W, dims=("channel", "node_other"))
    with pytest.raises(ValueError, match="node"):
        nw.graph_metrics(conn, (0.1, 0.2))
    with pytest.raises(ValueError, match="unknown metrics"):
        nw.graph_metrics(xr.DataArray(W, dims=("node", "node_other")), (0.1,), metrics=("modularity",))
    with pytest.raises(ValueError, match="increasing"):
        nw.graph_metrics(xr.DataArray(W, dims=("node", "node_other")), (0.2, 0.1))


@pytest.mark.parametrize("n", [2, 17, 63, 64])
def test_boolean_graphs_checked_on_their_bits(n):
    """Boolean graphs of <= 64 nodes are validated by the compiled bit check: same verdicts, same errors."""
    from mmme_neuro import _graph_kernels

    rng = np.random.default_rng(n)
    A = rng.random((40, n, n)) < 0.3
    A = A | A.swapaxes(-1, -2)
    A[:, np.arange(n), np.arange(n)] = False
    assert _graph_kernels.check_1w(nw._bool_words(A), n) == (-1, -1)
    np.testing.assert_array_equal(nw.nodal_efficiency(A), nw.nodal_efficiency(A.astype(float)))
    for g in (0, 17, 39):  # one flipped edge end or one self-loop, in several graphs: found in that graph
        i, j = rng.choice(n, 2, replace=False)
        bad = A.copy()
        bad[g, i, j] = ~bad[g, i, j]
        assert _graph_kernels.check_1w(nw._bool_words(bad), n) == (g, 0)
        with pytest.raises(ValueError, match="symmetric"):
            nw.nodal_efficiency(bad)
        bad = A.copy()
        bad[g, i, i] = True
        assert _graph_kernels.check_1w(nw._bool_words(bad), n) == (g, 1)
        with pytest.raises(ValueError, match="diagonal"):
            nw.characteristic_path_length(bad)


@pytest.mark.parametrize("n", [9, 64])
def test_threads_give_the_same_values_and_find_the_same_bad_graph(n):
    """n_jobs splits a stack over threads: values identical to one thread and to bct; a bad graph in any chunk is found."""
    from mmme_neuro import _graph_kernels

    rng = np.random.default_rng(n)
    A = rng.random((300, n, n)) < rng.uniform(0.02, 0.6, (300, 1, 1))  # sparse ones fall apart: disconnected graphs
    A = np.triu(A, 1)
    A = (A | A.swapaxes(-1, -2)).reshape(15, 20, n, n)
    one = nw.nodal_efficiency(A)
    for g in rng.choice(300, 30, replace=False):
        _close(one.reshape(300, n)[g], _bct_nodal_efficiency(bct.distance_bin(A.reshape(300, n, n)[g])))
    np.testing.assert_array_equal(nw.nodal_efficiency(A, n_jobs=2), one)
    np.testing.assert_array_equal(nw.global_efficiency(A, n_jobs=-1), nw.global_efficiency(A))
    np.testing.assert_array_equal(nw.characteristic_path_length(A, n_jobs=2), nw.characteristic_path_length(A))
    conn = xr.DataArray(np.stack([_sym(n, rng) for _ in range(150)]), dims=("epoch", "node", "node_other"))
    metrics = ("nodal_efficiency", "characteristic_path_length")
    xr.testing.assert_identical(nw.graph_metrics(conn, (0.1, 0.3), metrics=metrics, n_jobs=2),
                                nw.graph_metrics(conn, (0.1, 0.3), metrics=metrics))  # fmt: skip

    # the threaded kernels themselves, in 3 chunks whatever the machine's thread count
    X = nw._bool_words(A)
    serial = _graph_kernels.checked_path_sums_1w(X, n, True)
    threaded = _graph_kernels.checked_path_sums_1w_threads(X, n, True, 3)
    assert serial[3:] == threaded[3:] == (-1, -1)
    for s, t in zip(serial[:3], threaded[:3], strict=True):
        np.testing.assert_array_equal(s.reshape(15, 20, n), t.reshape(15, 20, n))
    for inv_only in (_graph_kernels.checked_path_sums_1w(X, n, False), _graph_kernels.checked_path_sums_1w_threads(X, n, False, 3)):
        np.testing.assert_array_equal(inv_only[0], serial[0])
        assert inv_only[1].size == inv_only[2].size == 0
    for s, t in zip(_graph_kernels.path_sums_1w(nw._pack(A), n), serial[:3], strict=True):  # packed input: the same
        np.testing.assert_array_equal(s, t)
    for g, (i, j), kind, match in ((250, (0, 1), 0, "symmetric"), (150, (2, 2), 1, "diagonal")):  # 3rd and 2nd chunk
        bad = A.reshape(300, n, n).copy()
        bad[g, i, j] = ~bad[g, i, j]
        assert _graph_kernels.checked_path_sums_1w_threads(nw._bool_words(bad), n, True, 3)[3:] == (g, kind)
        assert _graph_kernels.checked_path_sums_1w(nw._bool_words(bad), n, False)[3:] == (g, kind)
        assert _graph_kernels.check_1w(nw._bool_words(bad), n) == (g, kind)
        with pytest.raises(ValueError, match=match):
            nw.nodal_efficiency(bad, n_jobs=2)


def test_boolean_bytes_other_than_one_are_edges():
    """A boolean array viewed from other bytes (2 ... 255) holds True where numpy says so: same metrics, same checks."""
    rng = np.random.default_rng(3)
    A = rng.random((5, 21, 21)) < 0.3
    A = np.triu(A, 1)
    A = A | A.swapaxes(-1, -2)
    raw = A.astype(np.uint8) * rng.integers(1, 256, A.shape, dtype=np.uint8)  # non-zero bytes of every value
    raw = np.maximum(raw, raw.swapaxes(-1, -2))  # symmetric as booleans and as bytes
    B = raw.view(bool)
    assert np.array_equal(B, A) and set(np.unique(raw)) - {0, 1}
    np.testing.assert_array_equal(nw.nodal_efficiency(B), nw.nodal_efficiency(A))
    np.testing.assert_array_equal(nw.characteristic_path_length(B), nw.characteristic_path_length(A))
    bad = raw.copy()
    bad[2, 4, 4] = 128  # a self-loop written as byte 128
    with pytest.raises(ValueError, match="diagonal"):
        nw.nodal_efficiency(bad.view(bool))


@pytest.mark.parametrize("n_jobs", [0, -2, 1.5, True, "2", None])
def test_bad_n_jobs_raises(n_jobs):
    A = np.zeros((2, 5, 5), dtype=bool)
    with pytest.raises(ValueError, match="n_jobs"):
        nw.nodal_efficiency(A, n_jobs=n_jobs)
    with pytest.raises(ValueError, match="n_jobs"):
        nw.graph_metrics(xr.DataArray(_sym(5, np.random.default_rng(0)), dims=("node", "node_other")), (0.5,),
                         n_jobs=n_jobs)  # fmt: skip
