"""Start-up of a dask worker: the analysis steps and their libraries imported, compiled code loaded, once.

:func:`mmme_neuro.pipeline.local_cluster` starts its workers with this module
as a dask preload, so what a process pays once (~2 s of imports: MNE,
mne-bids, picard, neurokit2, the steps of every analysis; ~0.4 s for numba to
compile MNE's ``Raw.times``; ~0.3 s to load our compiled graph kernels from
numba's cache) is paid when the worker starts, not by the first subject it
computes. Workers of an external scheduler can do the same::

    dask worker tcp://scheduler:8786 --nthreads 1 --preload mmme_neuro.worker
"""

from __future__ import annotations

import importlib

import numpy as np

#: Modules imported when a worker starts (the first-level steps and what they import on first use).
MODULES = (
    "mmme_neuro.dataset", "mmme_neuro.pipeline", "mmme_neuro.steps", "mmme_neuro.epochs", "mmme_neuro.erp",
    "mmme_neuro.tfr", "mmme_neuro.netanalysis", "mmme_neuro.concordance", "mmme_neuro.features",
    "mne.preprocessing", "mne_bids", "picard", "neurokit2",
)  # fmt: skip


def warm_up() -> None:
    """Import :data:`MODULES` and run the numba-compiled functions once on tiny inputs."""
    for name in MODULES:
        importlib.import_module(name)
    import mne

    from . import network

    raw = mne.io.RawArray(np.zeros((1, 8)), mne.create_info(1, 100.0), verbose=False)
    _ = raw.times  # MNE compiles its time axis with numba on first use
    graph = ~np.eye(4, dtype=bool)
    for weighted, g in ((False, graph), (True, graph * 0.5)):
        for metric in (network.nodal_efficiency, network.global_efficiency, network.characteristic_path_length,
                       network.clustering_coefficient, network.local_efficiency):  # fmt: skip
            metric(g, weighted=weighted)


warm_up()
