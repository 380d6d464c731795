"""Benchmark: binary nodal efficiency of 3000 64-node graphs, mmme_neuro vs bctpy vs networkx.

Run on demand: ``.venv/bin/python -m benchmarks.bench_network [--subset-bct 30] [--subset-nx 3] [--rounds 5]``.
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
and the faster is the reference. Our pipeline timing is a median of 3. The
metric is timed side by side in ``--rounds`` rounds: bct, then ours with one
and all threads (medians of 7 calls); the speed-up is the median of the
rounds' ratios, their range printed (this VM's speed drifts between runs and
even within one, so only timings taken moments apart are compared).
Results are checked to agree (1e-10). Prints a table and writes
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


def _span(values: list[float]) -> str:
    return f"{min(values):.0f}-{max(values):.0f}x"


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
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of 1 and all threads (7 calls each)")
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
    e1, e2 = nw.nodal_efficiency(A_bool), nw.nodal_efficiency(A_bool, n_jobs=-1)  # also starts numba's threads
    assert np.array_equal(e1, e2)
    t_ours_metric_f, _ = _median_time(lambda: nw.nodal_efficiency(A_all))

    # bct (pipeline) on a subset
    sub = args.subset_bct
    t0 = time.perf_counter()
    ref = np.stack([[_bct_nodal(bct.threshold_proportional(W[m], p), bct) for p in DENSITIES] for m in range(sub)])
    t_bct_pipe = (time.perf_counter() - t0) * n_mat / sub

    # The metric, side by side: every round times bct (its subset, extrapolated; with the default BLAS threads and
    # with one, since its matrix products may use BLAS threads: the faster is the round's reference), then ours with
    # 1 and with all threads (medians of 7 calls), then the searches alone on packed, validated graphs (1 thread). This VM's
    # speed drifts between runs and within one, so each round's ratio compares timings taken moments apart.
    from threadpoolctl import threadpool_limits

    from mmme_neuro import _graph_kernels as kernels

    def bct_metric() -> float:
        t0 = time.perf_counter()
        for m in range(sub):
            for k in range(len(DENSITIES)):
                _bct_nodal(A_all[m, k], bct)
        return (time.perf_counter() - t0) * n_mat / sub

    def bct_one_thread() -> float:
        with threadpool_limits(limits=1, user_api="blas"):
            return bct_metric()

    P = nw._pack(A_bool)
    kernels.path_sums_1w(P[:1], N_NODES)
    calls = {
        "one": lambda: nw.nodal_efficiency(A_bool),
        "all": lambda: nw.nodal_efficiency(A_bool, n_jobs=-1),
        "kernel_one": lambda: kernels.path_sums_1w(P, N_NODES),
    }
    rounds: dict[str, list[float]] = {k: [] for k in ("bct_default_blas", "bct_one_blas_thread", "bct", *calls)}
    for _ in range(args.rounds):
        rounds["bct_default_blas"].append(bct_metric())
        rounds["bct_one_blas_thread"].append(bct_one_thread())
        rounds["bct"].append(min(rounds["bct_default_blas"][-1], rounds["bct_one_blas_thread"][-1]))
        for key, fn in calls.items():
            rounds[key].append(_median_time(fn, 7)[0])
    med = {k: float(np.median(v)) for k, v in rounds.items()}
    t_ours_metric, t_ours_threads, t_bct_metric = med["one"], med["all"], med["bct"]

    def ratios(key: str) -> list[float]:
        return [b / t for b, t in zip(rounds["bct"], rounds[key], strict=True)]

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
        "bct_subset_graphs": sub * len(DENSITIES),
        "networkx_metric_s_extrapolated": t_nx_metric,
        "networkx_subset_graphs": subn * len(DENSITIES),
        "rounds_s": rounds,
        "kernel_only_1_thread_s": med["kernel_one"],
        "speedup_pipeline_vs_bct": t_bct_pipe / t_ours_pipe,
        "speedup_metric_vs_bct": float(np.median(ratios("one"))),
        "speedup_metric_all_threads_vs_bct": float(np.median(ratios("all"))),
        "speedup_metric_vs_bct_per_round": ratios("one"),
        "speedup_metric_all_threads_vs_bct_per_round": ratios("all"),
        "speedup_searches_alone_vs_bct": float(np.median(ratios("kernel_one"))),
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
        f"| {t_nx_metric:.1f}** | {res['speedup_metric_vs_bct']:.0f}x ({_span(res['speedup_metric_vs_bct_per_round'])}) "
        f"| {res['speedup_metric_vs_networkx']:.0f}x |\n"
        f"| same, `n_jobs=-1` ({threads} threads) | {t_ours_threads:.4f} | | | "
        f"{res['speedup_metric_all_threads_vs_bct']:.0f}x ({_span(res['speedup_metric_all_threads_vs_bct_per_round'])}) "
        f"| {t_nx_metric / t_ours_threads:.0f}x |\n"
        f"| same, float64 input (validation of 98 MB) | {t_ours_metric_f:.3f} | | | "
        f"{t_bct_metric / t_ours_metric_f:.0f}x | {t_nx_metric / t_ours_metric_f:.0f}x |\n"
        f"| the searches alone (packed, validated input), 1 thread | {med['kernel_one']:.4f} | | | "
        f"{res['speedup_searches_alone_vs_bct']:.0f}x | |\n\n"
        f"\\* timed on {sub * len(DENSITIES)} graphs, extrapolated; ** timed on {subn * len(DENSITIES)} graphs, "
        f"extrapolated. {args.rounds} rounds, each timing bct (the faster of the default BLAS threads, median "
        f"{med['bct_default_blas']:.3f} s, and one, {med['bct_one_blas_thread']:.3f} s) and then ours; speed-ups: "
        f"median of the rounds' ratios (their range in brackets). "
        f"Max |difference| vs bct: {res['max_abs_diff_vs_bct']:.1e}. First call (numba compile or "
        f"cache load, once per process): {t_first:.2f} s.\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
