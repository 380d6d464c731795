"""Compiled (numba) kernels of the binary graph metrics in :mod:`mmme_neuro.network`.

Why compiled code: nodal efficiency of the field's 64-node graphs is a
breadth-first search from every node; bctpy's ``distance_bin`` does it with
dense matrix products (~0.6 ms per graph) and our previous vectorised numpy
bit-set BFS needed ~0.15 ms per graph, both dominated by array overhead. A
64-node graph fits in 64 machine words (one bit per neighbour), so a BFS
level is a few OR instructions per frontier node; compiled, a whole graph
takes a few microseconds. ``benchmarks/bench_network.py`` measures this
against bctpy and networkx on the same graphs, in one run.

Layout: a stack of ``G`` graphs of ``n`` nodes is packed (``np.packbits``, by
the caller) into ``P`` of shape ``(G, n, words)`` (``words = ceil(n / 64)``), bit ``j % 64`` of word
``j // 64`` of row ``i`` set when nodes ``i`` and ``j`` are adjacent. Every
kernel is single-threaded (``nogil``): parallelism is the caller's (dask
workers), so kernels never oversubscribe the cores.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)
_ONE = np.uint64(1)
_ZERO = np.uint64(0)


@njit(cache=True, inline="always")
def _popcount(x):
    x = x - ((x >> _ONE) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return int((x * _H01) >> np.uint64(56))


@njit(cache=True, nogil=True)
def path_sums_1w(P, n):
    """:func:`path_sums` for ``n <= 64`` (one word per row): direction-optimising BFS.

    Each level expands the frontier top-down (OR of the frontier's rows) or,
    when fewer nodes are left unreached than are in the frontier, bottom-up
    (an unreached node joins if its row meets the frontier; Beamer et al.
    2012) - dense functional networks reach most nodes in two levels.
    """
    G = P.shape[0]
    inv = np.zeros((G, n))
    dsum = np.zeros((G, n))
    reach = np.zeros((G, n))
    full = ~_ZERO if n == 64 else (_ONE << np.uint64(n)) - _ONE
    for g in range(G):
        for s in range(n):
            fr = P[g, s, 0]
            reached = fr | (_ONE << np.uint64(s))
            c = _popcount(fr)
            d = 1
            s_inv = 0.0
            s_d = 0.0
            s_r = 0.0
            while c > 0:
                s_inv += c / d
                s_d += c * d
                s_r += c
                unreached = full & ~reached
                if unreached == _ZERO:
                    break
                nxt = _ZERO
                if c <= _popcount(unreached):
                    f = fr
                    while f:
                        nxt |= P[g, trailing_zeros(f), 0]
                        f &= f - _ONE
                    nxt &= unreached
                else:
                    u = unreached
                    while u:
                        v = trailing_zeros(u)
                        u &= u - _ONE
                        if P[g, v, 0] & fr:
                            nxt |= _ONE << np.uint64(v)
                fr = nxt
                reached |= fr
                c = _popcount(fr)
                d += 1
            inv[g, s] = s_inv
            dsum[g, s] = s_d
            reach[g, s] = s_r
    return inv, dsum, reach


@njit(cache=True, nogil=True)
def _bfs(P, g, s, mask, use_mask, reached, frontier, nxt, out, mode, D):
    """BFS from source ``s`` of graph ``g``; ``frontier`` holds the distance-1 set on entry.

    mode 0: returns (sum 1/d, sum d, n reached); mode 1: also writes distances to D[g, s].
    """
    words = P.shape[2]
    c = 0
    for w in range(words):
        c += _popcount(frontier[w])
    d = 1
    s_inv = 0.0
    s_d = 0.0
    s_r = 0.0
    while c > 0:
        s_inv += c / d
        s_d += c * d
        s_r += c
        if mode == 1:
            for w in range(words):
                f = frontier[w]
                while f:
                    D[g, s, w * 64 + trailing_zeros(f)] = d
                    f &= f - _ONE
        for w in range(words):
            nxt[w] = _ZERO
        for w in range(words):
            f = frontier[w]
            while f:
                j = w * 64 + trailing_zeros(f)
                f &= f - _ONE
                for v in range(words):
                    nxt[v] |= P[g, j, v]
        c = 0
        for w in range(words):
            x = nxt[w] & ~reached[w]
            if use_mask:
                x &= mask[w]
            frontier[w] = x
            reached[w] |= x
            c += _popcount(x)
        d += 1
    out[0] = s_inv
    out[1] = s_d
    out[2] = s_r


@njit(cache=True, nogil=True)
def _every_source(P, n, mode):
    """BFS from every node of every graph: (sum 1/d, sum d, n reached) per source, and distances if mode == 1."""
    G, _, words = P.shape
    inv = np.zeros((G, n))
    dsum = np.zeros((G, n))
    reach = np.zeros((G, n))
    D = np.full((G, n, n), np.inf) if mode == 1 else np.empty((0, 0, 0))
    reached = np.empty(words, dtype=np.uint64)
    frontier = np.empty(words, dtype=np.uint64)
    nxt = np.empty(words, dtype=np.uint64)
    mask = np.empty(words, dtype=np.uint64)
    out = np.empty(3)
    for g in range(G):
        for s in range(n):
            if mode == 1:
                D[g, s, s] = 0.0
            for w in range(words):
                frontier[w] = P[g, s, w]
                reached[w] = P[g, s, w]
            reached[s // 64] |= _ONE << np.uint64(s % 64)
            _bfs(P, g, s, mask, False, reached, frontier, nxt, out, mode, D)
            inv[g, s] = out[0]
            dsum[g, s] = out[1]
            reach[g, s] = out[2]
    return inv, dsum, reach, D


@njit(cache=True, nogil=True)
def path_sums(P, n):
    """Per source node of every graph: sum of 1/d, sum of finite d, number of reachable others."""
    if P.shape[2] == 1:
        return path_sums_1w(P, n)
    inv, dsum, reach, _ = _every_source(P, n, 0)
    return inv, dsum, reach


@njit(cache=True, nogil=True)
def distances(P, n):
    """All-pairs shortest path lengths (edges), 0 on the diagonal, inf between disconnected nodes."""
    return _every_source(P, n, 1)[3]


@njit(cache=True, nogil=True)
def local_efficiency_sums(P, n):
    """Per node u: sum over neighbours i of u of sum 1/d(i, .) inside the subgraph of u's neighbours."""
    G, _, words = P.shape
    num = np.zeros((G, n))
    reached = np.empty(words, dtype=np.uint64)
    frontier = np.empty(words, dtype=np.uint64)
    nxt = np.empty(words, dtype=np.uint64)
    mask = np.empty(words, dtype=np.uint64)
    out = np.empty(3)
    D = np.empty((0, 0, 0))
    for g in range(G):
        for u in range(n):
            for w in range(words):
                mask[w] = P[g, u, w]
            total = 0.0
            for wu in range(words):
                m = mask[wu]
                while m:
                    i = wu * 64 + trailing_zeros(m)
                    m &= m - _ONE
                    for w in range(words):
                        frontier[w] = P[g, i, w] & mask[w]
                        reached[w] = frontier[w]
                    reached[i // 64] |= _ONE << np.uint64(i % 64)
                    _bfs(P, g, i, mask, True, reached, frontier, nxt, out, 0, D)
                    total += out[0]
            num[g, u] = total
    return num


@njit(cache=True, nogil=True)
def symmetric_loopless_1w(P, n):
    """Whether every packed graph (``n <= 64``, one word per row) is symmetric with an empty diagonal.

    Returns ``(-1, -1)`` if all are, else the first offending ``(graph, kind)``
    with kind 0 = asymmetric, 1 = self-loop. The symmetry test transposes each
    64 x 64 bit matrix in six rounds of block swaps (Warren, Hacker's Delight,
    sec. 7-3) and compares it with the original: ~0.3 us per graph instead of
    the ~1.8 us of ``np.array_equal(A, A.swapaxes(-1, -2))`` on the booleans.
    """
    G = P.shape[0]
    a = np.zeros(64, dtype=np.uint64)
    for g in range(G):
        for i in range(64):
            a[i] = P[g, i, 0] if i < n else _ZERO
        for i in range(n):
            if (a[i] >> np.uint64(i)) & _ONE:
                return g, 1
        # transpose in place: bit c of row r <-> bit r of row c (bit j = column j, least significant first)
        j = 32
        m = np.uint64(0x00000000FFFFFFFF)
        while j != 0:
            k = 0
            while k < 64:
                t = ((a[k] >> np.uint64(j)) ^ a[k + j]) & m
                a[k + j] ^= t
                a[k] ^= t << np.uint64(j)
                k = (k + j + 1) & ~j
            j >>= 1
            m ^= m << np.uint64(j)
        for i in range(n):
            if a[i] != P[g, i, 0]:
                return g, 0
    return -1, -1
