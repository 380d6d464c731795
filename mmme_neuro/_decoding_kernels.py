"""Compiled (numba) kernel of the time-resolved decoding null in :mod:`mmme_neuro.decoding`.

Why compiled code: the null of :func:`mmme_neuro.decoding.time_resolved`
scores every test subject at every (train time, test time) cell under every
label-flip arrangement, ~43 million ROC AUCs of ~30 epochs for the default
study (12 subjects, 60 x 60 cells, 1000 arrangements). Each AUC is a product
of a cell's ``(n_test, n_sources)`` shares with the arrangements' signs and a
count over the (positive, negative) pairs. In numpy the pair counts need
temporary boolean arrays and reductions over a strided axis (~3.5 ms per
60 cells x 100 arrangements); here the product is one small BLAS call per
cell and the count runs over the arrangements in the innermost, contiguous
loop, which the compiler vectorises (~0.36 ms, same values). The kernel is
single-threaded (``nogil``): parallelism is the caller's (joblib over blocks
of arrangements), so the values do not depend on the number of processes.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def flip_auc(shares: np.ndarray, signs: np.ndarray, pos: np.ndarray, neg: np.ndarray,
             out: np.ndarray) -> None:  # pragma: no cover (compiled)  # fmt: skip
    """ROC AUC of the decisions ``shares[r] @ signs`` for every cell ``r`` and arrangement.

    Parameters
    ----------
    shares : numpy.ndarray
        ``(n_cells, n_test, n_sources)`` float64, C-contiguous: each training
        subject's share of each test epoch's decision.
    signs : numpy.ndarray
        ``(n_sources, n_arrangements)`` float64, C-contiguous, +-1.
    pos, neg : numpy.ndarray
        Test epochs (int64 positions) of the positive and the negative class.
    out : numpy.ndarray
        ``(n_cells, n_arrangements)`` float64, written: the AUC (ties count 1/2).
    """
    n_cells = shares.shape[0]
    n_arr = signs.shape[1]
    n_pos, n_neg = pos.size, neg.size
    acc = np.empty(n_arr, np.int64)
    scale = 1.0 / (2.0 * n_pos * n_neg)
    for r in range(n_cells):
        d = np.dot(shares[r], signs)  # (n_test, n_arrangements)
        acc[:] = 0
        for a in range(n_pos):
            i = pos[a]
            for c in range(n_neg):
                k = neg[c]
                for b in range(n_arr):
                    x = d[i, b]
                    y = d[k, b]
                    acc[b] += (x > y) + (x >= y)
        for b in range(n_arr):
            out[r, b] = acc[b] * scale
