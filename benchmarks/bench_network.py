"""Benchmark: binary nodal efficiency of 3000 64-node graphs, mmme_neuro vs bctpy vs networkx.

Run on demand: ``.venv/bin/python -m benchmarks.bench_network [--subset-bct 30] [--subset-nx 3]``.
The workload is the field's: 300 PLV-like matrices (20 subjects x 3 conditions x
5 bands, 64 nodes) thresholded at 10 densities (0.05 ... 0.50) = 3000 graphs.
Two timings each:

- *pipeline*: from the weighted matrices to nodal efficiency at all densities
  (mmme_neuro: ``graph_metrics``; bct: ``threshold_proportional`` +
  ``distance_bin`` + ``1/d`` row means, what a bct user writes; networkx:
  ``all_pairs_shortest_path_length`` on bct-thresholded graphs);
- *metric only*: nodal efficiency of the 3000 already thresholded graphs,
  ours with one thread (the default, as in a dask worker) and with
  ``n_jobs=-1`` (all cores).

bctpy and networkx run on a subset of the matrices (all 10 densities) and are
extrapolated linearly to 3000 graphs (stated in the table); bctpy's matrix
products may use BLAS threads, so it is timed with the default and with one,
and the faster is the reference. Our timings are medians of 3 (pipeline) or
7 runs. Results are checked to agree (1e-10). Prints a table and writes
``benchmarks/results/network.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr

RESULTS = Path(__file__).parent / "results"
N_NODES = 64
SHAPE = (20, 3, 5)  # subjects x conditions x bands
DENSITIES = tuple(round(0.05 * k, 9) for k in range(1, 11))


def _plv_like(n_matrices: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pos = rng.normal(size=(n, 3))
    base = np.exp(-np.linalg.norm(pos[:, None] - pos[None], axis=-1) / 2)
    noise = rng.random((n_matrices, n, n))
    W = np.clip(0.6 * base + 0.4 * (noise + noise.swapaxes(-1, -2)) / 2, 0, 1)
    W[:, np.arange(n), np.arange(n)] = 0
    return W


def _median_time(fn, repeats: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def _kernel_only(P: np.ndarray, threads: int) -> tuple[float, float]:
    """Median time of the compiled path-sum kernel alone on packed, validated graphs: 1 thread and ``threads``."""
    from mmme_neuro import _graph_kernels as kernels

    n = P.shape[1]
    kernels.path_sums_1w_threads(P[:4], n, threads)
    one, ref = _median_time(lambda: kernels.path_sums_1w(P, n), 7)
    both, out = _median_time(lambda: kernels.path_sums_1w_threads(P, n, threads), 7)
    assert all(np.array_equal(x, y) for x, y in zip(out, ref, strict=True))
    return one, both


def _bct_nodal(A: np.ndarray, bct) -> np.ndarray:
    D = bct.distance_bin(A)
    with np.errstate(divide="ignore"):
        inv = 1.0 / D
    np.fill_diagonal(inv, 0)
    return inv.sum(axis=1) / (len(A) - 1)


def _nx_nodal(A: np.ndarray, nx) -> np.ndarray:
    g = nx.from_numpy_array(A)
    n = len(A)
    out = np.zeros(n)
    for i, lengths in nx.all_pairs_shortest_path_length(g):
        out[i] = sum(1.0 / d for d in lengths.values() if d > 0) / (n - 1)
    return out


def _numba_version() -> str:
    import numba

    return numba.__version__


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table; write JSON."""
    import bct
    import networkx as nx

    from mmme_neuro import network as nw

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subset-bct", type=int, default=30, help="matrices timed with bctpy (x10 densities)")
    parser.add_argument("--subset-nx", type=int, default=3, help="matrices timed with networkx (x10 densities)")
    args = parser.parse_args(argv)

    n_mat = int(np.prod(SHAPE))
    n_graphs = n_mat * len(DENSITIES)
    W = _plv_like(n_mat, N_NODES, seed=0)
    conn = xr.DataArray(W.reshape(*SHAPE, N_NODES, N_NODES), dims=("subject", "condition", "band", "node", "node_other"))

    # ours: first call (numba compiles the kernels, or loads them from its on-disk cache), then medians
    t0 = time.perf_counter()
    nw.nodal_efficiency(np.zeros((1, N_NODES, N_NODES), dtype=bool))
    t_first = time.perf_counter() - t0
    t_ours_pipe, ds = _median_time(lambda: nw.graph_metrics(conn, DENSITIES, metrics=("nodal_efficiency",)))
    ours = ds["nodal_efficiency"].transpose("subject", "condition", "band", "density", "node").values
    ours = ours.reshape(n_mat, len(DENSITIES), N_NODES)
    A_all = np.stack([nw.threshold_proportional(W, p) for p in DENSITIES], axis=1)  # (mat, dens, n, n)
    A_bool = A_all.astype(bool)
    threads = nw._threads(-1)
    nw.nodal_efficiency(A_bool[:8], n_jobs=-1)  # start numba's thread pool
    t_ours_metric, e1 = _median_time(lambda: nw.nodal_efficiency(A_bool), 7)
    t_ours_threads, e2 = _median_time(lambda: nw.nodal_efficiency(A_bool, n_jobs=-1), 7)
    assert np.array_equal(e1, e2)
    t_ours_metric_f, _ = _median_time(lambda: nw.nodal_efficiency(A_all))

    # the BFS kernel alone on already packed and validated graphs
    t_bfs_one, t_bfs_both = _kernel_only(nw._pack(A_bool), threads)

    # bct on a subset
    sub = args.subset_bct
    t0 = time.perf_counter()
    ref = np.stack([[_bct_nodal(bct.threshold_proportional(W[m], p), bct) for p in DENSITIES] for m in range(sub)])
    t_bct_pipe = (time.perf_counter() - t0) * n_mat / sub
    # bct's matrix products may use BLAS threads: timed with the default and with one, the faster is the reference
    from threadpoolctl import threadpool_limits

    def bct_metric() -> float:
        t0 = time.perf_counter()
        for m in range(sub):
            for k in range(len(DENSITIES)):
                _bct_nodal(A_all[m, k], bct)
        return (time.perf_counter() - t0) * n_mat / sub

    t_bct_default = [bct_metric() for _ in range(2)]
    with threadpool_limits(limits=1, user_api="blas"):
        t_bct_one = [bct_metric() for _ in range(2)]
    t_bct_metric = min(min(t_bct_default), min(t_bct_one))
    np.testing.assert_allclose(ours[:sub], ref, rtol=0, atol=1e-10)

    # networkx on a smaller subset (graphs thresholded beforehand: metric only)
    subn = args.subset_nx
    t0 = time.perf_counter()
    ref_nx = np.stack([[_nx_nodal(A_all[m, k], nx) for k in range(len(DENSITIES))] for m in range(subn)])
    t_nx_metric = (time.perf_counter() - t0) * n_mat / subn
    np.testing.assert_allclose(ours[:subn], ref_nx, rtol=0, atol=1e-10)

    res = {
        "graphs": n_graphs,
        "nodes": N_NODES,
        "densities": list(DENSITIES),
        "ours_first_call_s": t_first,
        "ours_pipeline_s": t_ours_pipe,
        "ours_metric_bool_s": t_ours_metric,
        "ours_metric_bool_all_threads_s": t_ours_threads,
        "threads": threads,
        "ours_metric_float_s": t_ours_metric_f,
        "bct_pipeline_s_extrapolated": t_bct_pipe,
        "bct_metric_s_extrapolated": t_bct_metric,
        "bct_metric_s_default_blas_threads": t_bct_default,
        "bct_metric_s_one_blas_thread": t_bct_one,
        "bct_subset_graphs": sub * len(DENSITIES),
        "networkx_metric_s_extrapolated": t_nx_metric,
        "networkx_subset_graphs": subn * len(DENSITIES),
        "kernel_only_1_thread_s": t_bfs_one,
        "kernel_only_all_threads_s": t_bfs_both,
        "speedup_pipeline_vs_bct": t_bct_pipe / t_ours_pipe,
        "speedup_metric_vs_bct": t_bct_metric / t_ours_metric,
        "speedup_metric_all_threads_vs_bct": t_bct_metric / t_ours_threads,
        "speedup_metric_vs_networkx": t_nx_metric / t_ours_metric,
        "max_abs_diff_vs_bct": float(np.max(np.abs(ours[:sub] - ref))),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": _numba_version(),
        "bctpy": getattr(bct, "__version__", "unknown"),
        "networkx": nx.__version__,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "network.json").write_text(json.dumps(res, indent=2, sort_keys=True))
    sys.stdout.write(
        f"Nodal efficiency (binary), {n_graphs} graphs of {N_NODES} nodes "
        f"({n_mat} matrices x {len(DENSITIES)} densities)\n\n"
        "| what | mmme_neuro (s) | bctpy (s) | networkx (s) | speed-up vs bct | vs networkx |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: |\n"
        f"| threshold + nodal efficiency | {t_ours_pipe:.3f} | {t_bct_pipe:.2f}* | - "
        f"| {res['speedup_pipeline_vs_bct']:.0f}x | - |\n"
        f"| nodal efficiency of thresholded graphs (bool input), 1 thread | {t_ours_metric:.4f} | {t_bct_metric:.3f}* "
        f"| {t_nx_metric:.1f}** | {res['speedup_metric_vs_bct']:.0f}x | {res['speedup_metric_vs_networkx']:.0f}x |\n"
        f"| same, `n_jobs=-1` ({threads} threads) | {t_ours_threads:.4f} | | | "
        f"{res['speedup_metric_all_threads_vs_bct']:.0f}x | {t_nx_metric / t_ours_threads:.0f}x |\n"
        f"| same, float64 input (validation of 98 MB) | {t_ours_metric_f:.3f} | | | "
        f"{t_bct_metric / t_ours_metric_f:.0f}x | {t_nx_metric / t_ours_metric_f:.0f}x |\n"
        f"| the path-sum kernel alone (packed, validated input), 1 thread | {t_bfs_one:.4f} | | | "
        f"{t_bct_metric / t_bfs_one:.0f}x | |\n"
        f"| same, {threads} threads | {t_bfs_both:.4f} | | | {t_bct_metric / t_bfs_both:.0f}x | |\n\n"
        f"\\* timed on {sub * len(DENSITIES)} graphs, extrapolated; ** timed on {subn * len(DENSITIES)} graphs, "
        f"extrapolated; bct: the faster of 2 runs with the default BLAS threads "
        f"({min(t_bct_default):.3f} s) and 2 with one ({min(t_bct_one):.3f} s). "
        f"Max |difference| vs bct: {res['max_abs_diff_vs_bct']:.1e}. First call (numba compile or "
        f"cache load, once per process): {t_first:.2f} s.\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
