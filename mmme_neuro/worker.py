"""Start-up of a dask worker: the analysis steps and the libraries they load lazily, imported once.

:func:`mmme_neuro.pipeline.local_cluster` starts its workers with this module
as a dask preload, so the ~2 s of imports (MNE, mne-bids, picard, neurokit2,
the steps of every analysis) are paid when the worker starts, not by the
first subject it computes. Workers of an external scheduler can do the same::

    dask worker tcp://scheduler:8786 --nthreads 1 --preload mmme_neuro.worker
"""

from __future__ import annotations

import importlib

#: Modules imported when a worker starts (the first-level steps and what they import on first use).
MODULES = (
    "mmme_neuro.dataset", "mmme_neuro.pipeline", "mmme_neuro.steps", "mmme_neuro.epochs", "mmme_neuro.erp",
    "mmme_neuro.tfr", "mmme_neuro.netanalysis", "mmme_neuro.concordance", "mmme_neuro.features",
    "mne.preprocessing", "mne_bids", "picard", "neurokit2",
)  # fmt: skip

for _name in MODULES:
    importlib.import_module(_name)
