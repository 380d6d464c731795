"""One preprocessing pass per subject, shared by the EEG analyses.

The ERP, time-frequency, network and decoding-feature steps all need the
same session epoched and cleaned the same way (filters, bad channels, ICA,
rejection); they differ only in the edge padding their transforms need.
Preprocessing is most of each step's time (about 18 s of a full-length
subject, ``benchmarks/README.md``), so it runs once per subject:
:func:`upstream` names a cached step (:func:`mmme_neuro.epochs.first_level`)
whose epochs span the union of the windows (:func:`shared_window`), and each
analysis crops its own window (:func:`mmme_neuro.epochs.from_clean`)::

    report = run_subjects(erp.first_level, bids_root, config, stage="erp",
                          upstream=steps.upstream(config))

What sharing implies (and is documented in the analysis pages):

* one set of NE control epochs per subject, planned with the union window,
  so every analysis compares the same epochs;
* the amplitude rejection and the EMG measures use the analysis window
  ``epochs.tmin..tmax`` (the configured one), not the transforms' padding;
* the cache key of the shared step depends only on the settings that change
  it (``seed``, ``epochs``, ``preprocessing``, ``rejection``, ``emg`` and the
  window), so every script reuses it.

A step that needs a window outside the shared one (the multitaper transform)
epochs on its own (:func:`covers`).
"""

from __future__ import annotations

from . import epochs as ep_mod
from . import netanalysis as na
from . import tfr as tfr_mod
from .config import Config
from .pipeline import Upstream

__all__ = [
    "CLEAN_STAGE",
    "GROUP_ONLY_SECTIONS",
    "covers",
    "shared_config",
    "shared_window",
    "step_config",
    "tfr_upstream",
    "upstream",
]

#: Cache stage of the shared preprocessed epochs.
CLEAN_STAGE = "clean-epochs"
_SHARED_SECTIONS = ("seed", "epochs", "preprocessing", "rejection", "emg")


def shared_window(config: Config) -> tuple[float, float]:
    """Epoch window (s) holding every analysis' window: ERP, Morlet TFR and network (with their padding).

    Parameters
    ----------
    config : Config
        Analysis configuration (``epochs``, ``bands``).

    Returns
    -------
    tmin, tmax : float
    """
    if not isinstance(config, Config):
        raise TypeError(f"config must be a mmme_neuro.config.Config, got {type(config).__name__}")
    tfr_cfg, _ = tfr_mod.padded_config(config, tfr_mod.DEFAULT_FREQS, method="morlet")
    net_cfg = na.network_config(config)
    wins = [(c.epochs.tmin, c.epochs.tmax) for c in (config, tfr_cfg, net_cfg)]
    return round(min(w[0] for w in wins), 9), round(max(w[1] for w in wins), 9)


def covers(config: Config, tmin: float, tmax: float) -> bool:
    """Whether the shared epochs of ``config`` hold the window ``tmin..tmax`` (s)."""
    lo, hi = shared_window(config)
    return lo <= tmin + 1e-9 and tmax <= hi + 1e-9


def shared_config(config: Config) -> Config:
    """``config`` with every section that cannot change the preprocessed epochs at its default.

    The shared step's cache key then does not change with, say, the
    statistics or decoding settings of one script.
    """
    return Config(**{name: getattr(config, name) for name in _SHARED_SECTIONS})


#: Configuration sections only the group level reads (planned contrasts): at their defaults in the
#: configuration of a per-subject step (:func:`step_config`), so changing them reuses the cached
#: steps.
GROUP_ONLY_SECTIONS: tuple[str, ...] = ("planned",)


def step_config(config: Config, drop: tuple[str, ...] = GROUP_ONLY_SECTIONS) -> Config:
    """``config`` with the sections ``drop`` (read by the group level only) at their defaults.

    A per-subject step's cache key covers its whole configuration; a step
    run with this one is not recomputed when, say, a planned contrast changes.
    """
    if not isinstance(config, Config):
        raise TypeError(f"config must be a mmme_neuro.config.Config, got {type(config).__name__}")
    return config.model_copy(update={name: type(getattr(config, name))() for name in drop})


def upstream(config: Config) -> dict[str, Upstream]:
    """The shared preprocessing pass as the ``upstream`` of :func:`mmme_neuro.pipeline.run_subjects`.

    Parameters
    ----------
    config : Config
        Analysis configuration (unpadded ``epochs`` window).

    Returns
    -------
    upstream : dict
        ``{"clean": Upstream(mmme_neuro.epochs.first_level, CLEAN_STAGE, ...)}``:
        the step receives ``clean=`` (see e.g. :func:`mmme_neuro.erp.first_level`).
    """
    tmin, tmax = shared_window(config)
    extend = [round(config.epochs.tmin - tmin, 9), round(tmax - config.epochs.tmax, 9)]
    return {"clean": Upstream(ep_mod.first_level, CLEAN_STAGE, {"extend_s": extend}, shared_config(config))}


def _padded_window(config: Config, method: str) -> tuple[float, float]:
    cfg, _ = tfr_mod.padded_config(config, tfr_mod.DEFAULT_FREQS, method=method)
    return cfg.epochs.tmin, cfg.epochs.tmax


def tfr_upstream(config: Config, method: str) -> dict[str, Upstream]:
    """:func:`upstream` if the shared epochs hold the ``method`` transform's padded window, else ``{}``."""
    return upstream(config) if covers(config, *_padded_window(config, method)) else {}
