"""Data-driven per-epoch rejection with autoreject (Jas et al. 2017), next to the fixed thresholds.

The fixed peak-to-peak and flat thresholds (``rejection.peak_to_peak_uv``,
``rejection.flat_uv``) are applied in :func:`mmme_neuro.epochs.make_epochs`.
``rejection.autoreject`` adds one of autoreject's two data-driven rules,
learnt per subject on that subject's epochs (all conditions together, so the
rule cannot favour one condition):

``"global"``
    :func:`autoreject.get_rejection_threshold`: one peak-to-peak threshold for
    the EEG channels, chosen by cross-validation (the threshold whose kept
    epochs' mean best predicts held-out epochs' median). Epochs above it are
    rejected.
``"local"``
    :class:`autoreject.AutoReject`: a threshold per channel; in every epoch the
    channels above their threshold are interpolated (spherical splines, at
    most ``n_interpolate`` of them) and the epoch is rejected when more than a
    ``consensus`` fraction of channels is bad; ``n_interpolate`` and
    ``consensus`` are chosen by cross-validation.

The thresholds are learnt, and the bad channels found, on the analysis window
(``epochs.tmin``-``epochs.tmax``, as the fixed thresholds); the repair
(interpolation) applies to the whole epoch, padding included. Both rules are
seeded (``Config.seed``), so results are reproducible.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import mne
import numpy as np

__all__ = ["MIN_EPOCHS", "autoreject_epochs"]

logger = logging.getLogger(__name__)

#: Fewest epochs autoreject's cross-validation can work with (5 folds of 1 epoch).
MIN_EPOCHS = 5


def _too_few_epochs(mode: str, n: int) -> dict[str, Any] | None:
    """The provenance record of a skipped rule when ``n`` epochs are too few for its cross-validation, else None."""
    return {"mode": mode, "skipped": f"{n} epochs, at least {MIN_EPOCHS} needed"} if n < MIN_EPOCHS else None


def autoreject_epochs(epochs: mne.BaseEpochs, mode: Literal["global", "local"], *, seed: int,
                      window: tuple[float, float] | None = None, n_interpolate: Sequence[int] = (1, 4, 32),
                      n_jobs: int = 1) -> tuple[list[str], mne.BaseEpochs | None, dict[str, Any]]:  # fmt: skip
    """Apply autoreject's global or local rule to one subject's epochs.

    Parameters
    ----------
    epochs : mne.BaseEpochs
        Preloaded EEG epochs (baseline-corrected, V) with electrode positions
        (needed by ``"local"`` to interpolate). Not modified.
    mode : {"global", "local"}
        Rule (module docstring).
    seed : int
        Random state of the cross-validation.
    window : (float, float) | None
        Times (s) on which thresholds are learnt and bad channels found (the
        analysis window); None: the whole epoch.
    n_interpolate : sequence of int
        ``"local"``: candidate numbers of channels interpolated per epoch
        (cross-validated; autoreject's default grid). Counts above the
        number of channels are left out.
    n_jobs : int
        Processes of :class:`autoreject.AutoReject` (``"local"``).

    Returns
    -------
    reasons : list of str
        Per epoch: ``""`` (kept) or why it is rejected, naming the threshold
        and channel(s).
    repaired : mne.BaseEpochs | None
        ``"local"``: a copy of ``epochs`` with the bad channels of every epoch
        interpolated (rejected epochs are repaired too but should be dropped);
        ``"global"``: None (nothing is repaired).
    report : dict
        What was learnt, for the provenance: the threshold(s) in µV, the
        chosen ``n_interpolate``/``consensus`` and the interpolated channels
        per epoch index (``"local"``), the number of epochs rejected; or
        ``skipped`` with its reason when fewer than :data:`MIN_EPOCHS` epochs
        are given.

    Raises
    ------
    ValueError
        On an unknown ``mode``, or a ``window`` outside the epochs.
    """
    if mode not in ("global", "local"):
        raise ValueError(f"autoreject mode must be 'global' or 'local', got {mode!r}")
    n = len(epochs)
    skipped = _too_few_epochs(mode, n)
    if skipped is not None:
        logger.info("autoreject (%s) skipped: %s", mode, skipped["skipped"])
        return [""] * n, None, skipped
    fit_on = epochs
    if window is not None:
        if window[0] < epochs.tmin - 1e-9 or window[1] > epochs.tmax + 1e-9 or window[0] >= window[1]:
            raise ValueError(f"window {window} s is not inside the epochs ({epochs.tmin:g} to {epochs.tmax:g} s)")
        fit_on = epochs.copy().crop(*window)
    from autoreject import AutoReject, RejectLog, get_rejection_threshold

    names = fit_on.ch_names
    if mode == "global":
        cv = min(5, n)
        thr = float(get_rejection_threshold(fit_on, ch_types="eeg", random_state=seed, cv=cv, verbose=False)["eeg"])
        ptp = np.ptp(fit_on.get_data(picks="eeg"), axis=2)  # epochs x channels
        eeg = [names[i] for i in mne.pick_types(fit_on.info, eeg=True)]
        reasons = []
        for row in ptp:
            worst = int(np.argmax(row))
            reasons.append(f"autoreject_global>{thr * 1e6:.1f}uV on {eeg[worst]}" if row[worst] > thr else "")
        report = {"mode": mode, "threshold_uv": round(thr * 1e6, 3), "cv": cv,
                  "n_rejected": sum(bool(r) for r in reasons)}  # fmt: skip
        return reasons, None, report
    cv = min(10, n)
    grid = np.array(sorted({int(k) for k in n_interpolate if 1 <= int(k) < len(names)}) or [1])
    ar = AutoReject(n_interpolate=grid, cv=cv, picks="eeg", random_state=seed, n_jobs=n_jobs, verbose=False)
    ar.fit(fit_on)
    log = ar.get_reject_log(fit_on)
    consensus = round(float(ar.consensus_["eeg"]), 6)
    n_interp = int(ar.n_interpolate_["eeg"])
    reasons = []
    interpolated: dict[str, list[str]] = {}
    for k, (bad, labels) in enumerate(zip(log.bad_epochs, log.labels, strict=True)):
        n_bad = int(np.sum(labels > 0))  # 1: bad, not interpolated; 2: bad, interpolated
        reasons.append(f"autoreject_local>{consensus:g} of channels bad ({n_bad} of {len(names)})" if bad else "")
        chans = [names[j] for j in np.flatnonzero(labels == 2)]
        if chans and not bad:
            interpolated[str(k)] = chans
    keep_all = RejectLog(np.zeros(n, dtype=bool), log.labels, log.ch_names)  # repair every epoch, drop none here
    repaired = ar.transform(epochs, reject_log=keep_all)
    report = {
        "mode": mode, "cv": cv, "n_interpolate_grid": grid.tolist(), "n_interpolate": n_interp, "consensus": consensus,
        "thresholds_uv": {ch: round(float(v) * 1e6, 3) for ch, v in sorted(ar.threshes_.items())},
        "n_rejected": sum(bool(r) for r in reasons), "interpolated": interpolated,
    }  # fmt: skip
    return reasons, repaired, report
