"""Compiled (numba) kernels of the binary graph metrics in :mod:`mmme_neuro.network`.

Why compiled code: nodal efficiency of the field's 64-node graphs is a
breadth-first search from every node; bctpy's ``distance_bin`` does it with
dense matrix products (~0.13 ms per graph) and our first vectorised numpy
bit-set BFS needed ~0.15 ms per graph, both dominated by array overhead. A
64-node graph fits in 64 machine words (one bit per neighbour), so a search
level of all sources at once is a boolean matrix product of bit rows;
compiled, a whole graph takes ~1.5 us. ``benchmarks/bench_network.py``
measures this against bctpy and networkx on the same graphs, in one run.

Layout: a stack of ``G`` graphs of ``n`` nodes is packed (``np.packbits``)
into ``P`` of shape ``(G, n, words)``
(``words = ceil(n / 64)``), bit ``j % 64`` of word ``j // 64`` of row ``i``
set when nodes ``i`` and ``j`` are adjacent; boolean stacks of <= 64 nodes
are packed one graph at a time by :func:`checked_path_sums_1w`. Kernels are
single-threaded (``nogil``): the pipeline's parallelism is its dask workers,
so kernels never oversubscribe the cores. :func:`checked_path_sums_1w_threads`
splits a stack into ``k`` contiguous chunks over numba threads, for
interactive use (``n_jobs`` of the public functions); each chunk runs the
single-threaded kernel, so the values do not depend on ``k``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from numba.cpython.unsafe.numbers import trailing_zeros

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)
_ONE = np.uint64(1)
_ZERO = np.uint64(0)
_BYTE_LSB = np.uint64(0x0101010101010101)  # bit 0 of each byte
_GATHER = np.uint64(0x0102040810204080)  # sum of 2 ** (7 k), k = 1..8
_56 = np.uint64(56)


@njit(cache=True, inline="always")
def _popcount(x):
    x = x - ((x >> _ONE) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return int((x * _H01) >> np.uint64(56))


@njit(cache=True, nogil=True)
def path_sums_1w(P, n):
    """:func:`path_sums` for ``n <= 64`` (one word per row): all sources of a graph advance together.

    Level ``d`` of the breadth-first searches from every source at once: node
    ``t`` joins the next frontier of source ``s`` if its row meets the
    frontier of ``s`` (the graph is undirected) and ``s`` has not reached it
    yet. For one source that is 64 AND-and-test operations against the 64
    rows, a fixed-length loop that compiles to SIMD instructions without a
    data-dependent branch; sources whose frontier is empty are skipped. The
    searches stop when every source has reached every node, or no frontier is
    left (disconnected graphs); dense functional networks need one level
    after the neighbours. 1.7x faster on the benchmark's 3000 graphs
    (densities 0.05-0.50) than the direction-optimising BFS per source
    (Beamer et al. 2012) it replaced, which 64 short searches' mispredicted
    branches held back; on random graphs of density 0.05-0.60 1.1-1.5x
    faster, 0.9x at 0.02.
    """
    G = P.shape[0]
    inv = np.empty((G, n))
    dsum = np.empty((G, n))
    reach = np.empty((G, n))
    A = np.zeros(64, dtype=np.uint64)  # one graph's rows (rows >= n stay empty)
    F = np.empty(64, dtype=np.uint64)
    R = np.empty(64, dtype=np.uint64)
    for g in range(G):
        for i in range(n):
            A[i] = P[g, i, 0]
        _search(A, n, F, R, inv[g], dsum[g], reach[g], True)
    return inv, dsum, reach


@njit(cache=True, nogil=True, inline="always")
def _search(A, n, F, R, inv, dsum, reach, all_sums):
    """The searches of :func:`path_sums_1w` on one graph's rows ``A`` (64 words, rows >= n empty).

    Writes per source: ``inv`` (sum of 1/d) and, if ``all_sums``, ``dsum``
    (sum of finite d) and ``reach`` (reachable others). ``F`` (frontier of
    each source) and ``R`` (reached by each source, itself included) are
    64-word scratch.
    """
    full = ~_ZERO if n == 64 else (_ONE << np.uint64(n)) - _ONE
    tot = 0
    left = _ZERO
    for s in range(n):
        f = A[s]
        F[s] = f
        R[s] = f | (_ONE << np.uint64(s))
        left |= full & ~R[s]
        c = _popcount(f)
        inv[s] = c
        if all_sums:
            dsum[s] = c
            reach[s] = c
        tot += c
    d = 2
    while tot > 0 and left != _ZERO:
        tot = 0
        left = _ZERO
        for s in range(n):
            f = F[s]
            if f == _ZERO:
                continue
            nxt = _ZERO
            for t in range(64):  # fixed trip count: vectorised
                nxt |= np.uint64((f & A[t]) != _ZERO) << np.uint64(t)
            x = nxt & ~R[s]
            R[s] |= x
            F[s] = x
            left |= full & ~R[s]
            c = _popcount(x)
            inv[s] += c / d
            if all_sums:
                dsum[s] += c * d
                reach[s] += c
            tot += c
        d += 1


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


@njit(cache=True, nogil=True, inline="always")
def _fault(A, n, a):
    """-1 if the graph of rows ``A`` (64 words, ``n <= 64`` used) is symmetric with an empty diagonal, else 0 (asymmetric) or 1 (self-loop).

    The symmetry test transposes the 64 x 64 bit matrix (in ``a``, 64 words of
    scratch) in six rounds of block swaps (Warren, Hacker's Delight, sec. 7-3)
    and compares it with the original: ~0.25 us per graph instead of the
    ~1.8 us of ``np.array_equal(A, A.swapaxes(-1, -2))`` on the booleans.
    (Eight graphs side by side in SIMD lanes measured no faster.)
    """
    for i in range(64):
        a[i] = A[i] if i < n else _ZERO
    for i in range(n):
        if (a[i] >> np.uint64(i)) & _ONE:
            return 1
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
        if a[i] != A[i]:
            return 0
    return -1


@njit(cache=True, nogil=True, inline="always")
def _pack_rows(X, g, n, A):
    """Pack graph ``g`` of ``X`` (see :func:`check_1w`) into the 64-word rows ``A`` (rows >= n untouched).

    A byte is an edge if it is not 0, as numpy reads booleans (a boolean
    array viewed from other bytes may hold 2 ... 255): three shift-ORs gather
    each byte's bits into its bit 0, without carrying between bytes. Then
    eight 0/1 bytes become eight bits in one multiplication: byte ``j`` (bit
    ``8 j``) times ``2 ** (7 (8 - j))`` lands on bit ``56 + j``, and no two
    products overlap.
    """
    for i in range(n):
        w = _ZERO
        for k in range(X.shape[2]):
            x = X[g, i, k]
            x |= x >> np.uint64(4)
            x |= x >> np.uint64(2)
            x |= x >> np.uint64(1)
            w |= (((x & _BYTE_LSB) * _GATHER) >> _56) << np.uint64(8 * k)
        A[i] = w


@njit(cache=True, nogil=True)
def check_1w(X, n):
    """First graph of boolean graphs that is not symmetric with an empty diagonal: ``(g, kind)`` or ``(-1, -1)``.

    ``X``: the booleans of shape ``(G, n, n8)``, ``n <= 64``, each row
    zero-padded to ``n8 = ceil(n / 8)`` groups of 8 bytes and read as one
    little-endian ``uint64`` per group (``network._bool_words``). kind 0:
    asymmetric, 1: a self-loop (the first graph with either; within a graph,
    a self-loop first). Each graph is packed (:func:`_pack_rows`) into 64
    words of scratch and checked there (:func:`_fault`).
    """
    e = np.empty((0, n))
    return _checked_sums_into(X, n, e, e, e, 0)


@njit(cache=True, nogil=True)
def checked_path_sums_1w(X, n, all_sums):
    """Pack, check and search boolean graphs (``X`` as in :func:`check_1w`), one graph at a time.

    Returns ``(inv, dsum, reach, g, kind)`` as :func:`path_sums_1w` and
    :func:`check_1w` (``dsum`` and ``reach`` empty unless
    ``all_sums``; the sums are not filled after a bad graph). Each graph is
    packed into 64 words of scratch, checked and searched while it is in the
    cache: no packed copy of the stack is written (for the benchmark's 3000
    graphs ~5 ms, against ~6.5 ms for packing, checking and searching one
    pass after the other).
    """
    G = X.shape[0]
    inv = np.empty((G, n))
    dsum = np.empty((G if all_sums else 0, n))
    reach = np.empty((G if all_sums else 0, n))
    g, kind = _checked_sums_into(X, n, inv, dsum, reach, 2 if all_sums else 1)
    return inv, dsum, reach, g, kind


@njit(cache=True, nogil=True)
def _checked_sums_into(X, n, inv, dsum, reach, sums):
    """Pack and check each graph, then search it: ``sums`` 0 = no search, 1 = ``inv`` only, 2 = all three; returns ``(g, kind)``."""
    A = np.zeros(64, dtype=np.uint64)
    a = np.empty(64, dtype=np.uint64)
    F = np.empty(64, dtype=np.uint64)
    R = np.empty(64, dtype=np.uint64)
    for g in range(X.shape[0]):
        _pack_rows(X, g, n, A)
        kind = _fault(A, n, a)
        if kind >= 0:
            return g, kind
        if sums == 2:
            _search(A, n, F, R, inv[g], dsum[g], reach[g], True)
        elif sums == 1:
            _search(A, n, F, R, inv[g], inv[g], inv[g], False)
    return -1, -1


@njit(cache=True, nogil=True, parallel=True)
def checked_path_sums_1w_threads(X, n, all_sums, k):
    """:func:`checked_path_sums_1w` on ``k`` contiguous chunks of the stack, one per thread (same result)."""
    G = X.shape[0]
    inv = np.empty((G, n))
    dsum = np.empty((G if all_sums else 0, n))
    reach = np.empty((G if all_sums else 0, n))
    bad = np.full(k, -1, dtype=np.int64)
    kinds = np.full(k, -1, dtype=np.int64)
    for c in prange(k):
        lo, hi = c * G // k, (c + 1) * G // k
        if all_sums:
            b, kind = _checked_sums_into(X[lo:hi], n, inv[lo:hi], dsum[lo:hi], reach[lo:hi], 2)
        else:
            b, kind = _checked_sums_into(X[lo:hi], n, inv[lo:hi], inv[lo:hi], inv[lo:hi], 1)
        if b >= 0:
            bad[c] = lo + b
            kinds[c] = kind
    for c in range(k):
        if bad[c] >= 0:
            return inv, dsum, reach, bad[c], kinds[c]
    return inv, dsum, reach, -1, -1
