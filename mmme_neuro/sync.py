"""Synchronisation of the EEG and physiology clocks from their shared markers.

The Neuroscan amplifier and the BIOPAC MP160 run on independent clocks but
receive the same trigger codes from the stimulus PC. The physiology clock is
modelled as a straight line of the EEG clock::

    physio_time_s = offset_s + slope * eeg_time_s,   drift_ppm = (slope - 1) * 1e6

1. :func:`match_markers` pairs occurrences of the same marker in both
   recordings.
2. :func:`fit_clock` fits the line robustly (maximum consensus, then least squares on
   the inliers), rejects mis-timed markers and refuses recordings that do not
   share one clock (:class:`SyncError`).
3. :func:`map_times` maps EEG times to physiology times and samples.

Matching rule
-------------
Clip markers (101-148) occur once per session, so a code that occurs exactly
once in *both* recordings is matched by code (``how == "unique"``). Codes
that repeat (rest marker 100, or a duplicate left in one recording) are
matched afterwards: a preliminary Theil-Sen line through the unique pairs
predicts the physiology time of every EEG occurrence, and an EEG and a
physiology occurrence are paired when each is the other's nearest within
``tolerance_s`` (``how == "nearest"``). Matching by order is not used: it
breaks as soon as one rest marker is missing from one recording. With fewer
than two unique pairs, repeated codes are not matched.

Tolerance
---------
Marker times are quantised to the sampling grids, so the residuals of a
correct fit reach up to about half a sample of each recording. The residual
tolerance of :func:`fit_clock` is therefore ``max(config.max_residual_ms,
1000 / sfreq_eeg + 1000 / sfreq_physio)`` when the sampling rates are given
(2 ms at 1000 Hz, i.e. the configured default; 8 ms at 250 Hz).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .config import SyncConfig

__all__ = ["ClockFit", "SyncError", "fit_clock", "map_times", "match_markers"]

logger = logging.getLogger(__name__)

#: Columns of the table returned by :func:`match_markers`.
MATCH_COLUMNS: tuple[str, ...] = ("code", "eeg_time_s", "physio_time_s", "how")
#: Columns of :attr:`ClockFit.matched`.
FIT_COLUMNS: tuple[str, ...] = ("code", "eeg_time_s", "physio_time_s", "residual_ms", "used")


class SyncError(RuntimeError):
    """The EEG and physiology recordings cannot be put on one clock."""


@dataclass(frozen=True, eq=False)
class ClockFit:
    """Linear map from the EEG clock to the physiology clock.

    Attributes
    ----------
    offset_s : float
        Physiology time at EEG time 0 (s).
    drift_ppm : float
        ``(slope - 1) * 1e6``: how much faster the physiology clock runs (ppm).
    slope : float
        Physiology seconds per EEG second.
    n_matched : int
        Marker pairs given to the fit (inliers and outliers).
    residuals_ms : ndarray
        ``physio_time - (offset + slope * eeg_time)`` of every pair (ms), in
        the order of ``matched``.
    max_abs_residual_ms, rms_residual_ms : float
        Largest absolute and RMS residual of the pairs used in the fit (ms).
    matched : pandas.DataFrame
        ``code``, ``eeg_time_s``, ``physio_time_s``, ``residual_ms`` and
        ``used`` (False: rejected as an outlier), sorted by EEG time.
    n_used : int
        Pairs used in the final least-squares fit.
    tolerance_ms : float
        Residual above which a pair was rejected (ms).
    label : str | None
        Caller's name of the recording pair (used in messages).
    """

    offset_s: float
    drift_ppm: float
    slope: float
    n_matched: int
    residuals_ms: np.ndarray = field(repr=False)
    max_abs_residual_ms: float
    rms_residual_ms: float
    matched: pd.DataFrame = field(repr=False)
    n_used: int = 0
    tolerance_ms: float = float("nan")
    label: str | None = None

    def to_physio_time(self, t_eeg: np.ndarray | float) -> np.ndarray | float:
        """Map EEG-clock times (s) to physiology-clock times (s)."""
        out = self.offset_s + self.slope * np.asarray(t_eeg, dtype=float)
        return float(out) if out.ndim == 0 else out

    def to_eeg_time(self, t_physio: np.ndarray | float) -> np.ndarray | float:
        """Map physiology-clock times (s) to EEG-clock times (s)."""
        out = (np.asarray(t_physio, dtype=float) - self.offset_s) / self.slope
        return float(out) if out.ndim == 0 else out

    @property
    def outliers(self) -> pd.DataFrame:
        """Pairs rejected by the robust fit."""
        return self.matched[~self.matched["used"]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (no per-marker table, but the outlier codes)."""
        out = self.outliers
        return {
            "label": self.label,
            "offset_s": float(self.offset_s),
            "drift_ppm": float(self.drift_ppm),
            "slope": float(self.slope),
            "n_matched": int(self.n_matched),
            "n_used": int(self.n_used),
            "max_abs_residual_ms": float(self.max_abs_residual_ms),
            "rms_residual_ms": float(self.rms_residual_ms),
            "tolerance_ms": float(self.tolerance_ms),
            "outliers": [
                {"code": int(c), "eeg_time_s": float(t), "residual_ms": float(r)}
                for c, t, r in zip(out["code"], out["eeg_time_s"], out["residual_ms"], strict=True)
            ],
        }


def _check_events(events: pd.DataFrame, name: str) -> pd.DataFrame:
    if not isinstance(events, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(events).__name__}")
    missing = {"code", "time_s"} - set(events.columns)
    if missing:
        raise ValueError(f"{name} lacks columns {sorted(missing)} (needs code, time_s)")
    out = pd.DataFrame(
        {
            "code": events["code"].to_numpy(dtype=np.int64),
            "time_s": events["time_s"].to_numpy(dtype=float),
        }
    )
    if not np.isfinite(out["time_s"]).all():
        raise ValueError(f"{name} has non-finite time_s values")
    return out


def _prelim_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Theil-Sen fit of ``y - x`` on centred ``x`` -> (offset, slope) of y = offset + slope * x."""
    x0 = float(np.median(x))
    d = y - x
    res = stats.theilslopes(d, x - x0)
    m, b = float(res[0]), float(res[1])
    return b - m * x0, 1.0 + m


def _consensus(xc: np.ndarray, d: np.ndarray, tol_s: float, max_pairs: int = 4000) -> np.ndarray:
    """Largest set of points within ``tol_s`` of a line through two of them.

    Every line through two points (a deterministic random subset of
    ``max_pairs`` pairs when there are more) is scored by its number of
    inliers, ties broken by the smallest sum of squared inlier residuals.
    The line through the two extreme markers of a clean recording keeps
    every marker within the tolerance, so clean data lose no marker; an
    outlier cannot pull this estimate, unlike a least-squares or (with few
    markers) a Theil-Sen line.
    """
    n = xc.size
    i, j = np.triu_indices(n, k=1)
    if i.size > max_pairs:
        pick = np.random.default_rng(0).choice(i.size, size=max_pairs, replace=False)
        i, j = i[pick], j[pick]
    ok = xc[j] != xc[i]
    i, j = i[ok], j[ok]
    slope = (d[j] - d[i]) / (xc[j] - xc[i])
    icpt = d[i] - slope * xc[i]
    resid = np.abs(d[None, :] - (icpt[:, None] + slope[:, None] * xc[None, :]))
    inside = resid <= tol_s
    count = inside.sum(axis=1)
    sse = np.where(inside, resid**2, 0.0).sum(axis=1)
    best = np.lexsort((sse, -count))[0]
    return inside[best]


def match_markers(
    eeg_events: pd.DataFrame,
    physio_events: pd.DataFrame,
    *,
    codes: Any = None,
    tolerance_s: float = 0.5,
) -> pd.DataFrame:
    """Pair the occurrences of the same markers in the EEG and the physiology.

    Parameters
    ----------
    eeg_events, physio_events : pandas.DataFrame
        Cleaned markers with columns ``code`` (int) and ``time_s`` (s, each
        recording's own clock), e.g. from
        :func:`mmme_neuro.io.markers.read_eeg_markers` and
        :func:`mmme_neuro.io.physio.read_physio`.
    codes : iterable of int | None
        Only these codes are matched (default: all codes).
    tolerance_s : float
        Largest distance (s) between the predicted and the observed
        physiology time of a repeated code for its occurrences to be paired.

    Returns
    -------
    matched : pandas.DataFrame
        ``code``, ``eeg_time_s``, ``physio_time_s``, ``how`` (``"unique"``
        or ``"nearest"``), sorted by EEG time. See the module docstring for
        the matching rule.
    """
    eeg = _check_events(eeg_events, "eeg_events")
    phy = _check_events(physio_events, "physio_events")
    if not np.isfinite(tolerance_s) or tolerance_s <= 0:
        raise ValueError(f"tolerance_s must be a positive number of seconds, got {tolerance_s!r}")
    if codes is not None:
        keep = {int(c) for c in codes}
        eeg = eeg[eeg["code"].isin(keep)]
        phy = phy[phy["code"].isin(keep)]
    n_eeg = eeg["code"].value_counts()
    n_phy = phy["code"].value_counts()
    shared = sorted(set(n_eeg.index) & set(n_phy.index))
    unique = [c for c in shared if n_eeg[c] == 1 and n_phy[c] == 1]
    repeated = [c for c in shared if c not in set(unique)]

    e_first = eeg.drop_duplicates("code").set_index("code")["time_s"]
    p_first = phy.drop_duplicates("code").set_index("code")["time_s"]
    rows = [(c, float(e_first[c]), float(p_first[c]), "unique") for c in unique]

    if repeated and len(rows) >= 2:
        x = np.array([r[1] for r in rows])
        y = np.array([r[2] for r in rows])
        offset, slope = _prelim_line(x, y)
        for c in repeated:
            te = eeg.loc[eeg["code"] == c, "time_s"].to_numpy()
            tp = phy.loc[phy["code"] == c, "time_s"].to_numpy()
            dist = np.abs((offset + slope * te)[:, None] - tp[None, :])
            best_p = dist.argmin(axis=1)
            best_e = dist.argmin(axis=0)
            for i, j in enumerate(best_p):
                if best_e[j] == i and dist[i, j] <= tolerance_s:
                    rows.append((c, float(te[i]), float(tp[j]), "nearest"))
    elif repeated:
        logger.info(
            "Repeated codes %s not matched: fewer than 2 unique codes to align on", repeated
        )
    out = pd.DataFrame(rows, columns=list(MATCH_COLUMNS))
    out = out.astype({"code": np.int64, "eeg_time_s": float, "physio_time_s": float, "how": object})
    out = out.sort_values("eeg_time_s", kind="stable").reset_index(drop=True)
    logger.info(
        "Matched %d markers (%d unique codes, %d repeated-code pairs); %d EEG and %d physiology "
        "markers unmatched",
        len(out), int((out["how"] == "unique").sum()), int((out["how"] == "nearest").sum()),
        len(eeg) - len(out), len(phy) - len(out),
    )  # fmt: skip
    return out


def fit_clock(
    matched: pd.DataFrame,
    config: SyncConfig | None = None,
    *,
    sfreq_eeg: float | None = None,
    sfreq_physio: float | None = None,
    label: str | None = None,
    max_outlier_fraction: float = 0.2,
    max_abs_drift_ppm: float = 1000.0,
) -> ClockFit:
    """Fit ``physio_time = offset + slope * eeg_time`` robustly to matched markers.

    Parameters
    ----------
    matched : pandas.DataFrame
        Columns ``code``, ``eeg_time_s``, ``physio_time_s`` (s), e.g. from
        :func:`match_markers`.
    config : SyncConfig | None
        ``min_matched_markers`` and ``max_residual_ms`` (defaults: 5, 2 ms).
    sfreq_eeg, sfreq_physio : float | None
        Sampling rates (Hz) of the recordings. When both are given, the
        residual tolerance is widened to one sample of each recording if
        that is more than ``config.max_residual_ms`` (marker times are
        quantised to the sampling grids).
    label : str | None
        Name of the recordings (subject, files) used in error messages.
    max_outlier_fraction : float
        Largest fraction of pairs that may be rejected as outliers; more
        means the recordings do not share one clock.
    max_abs_drift_ppm : float
        Largest plausible clock drift (ppm); quartz clocks drift by tens of
        ppm, a larger value means a wrong sampling rate or mismatched markers.

    Returns
    -------
    fit : ClockFit
        The clock map, residuals (ms) and the per-marker table.

    Raises
    ------
    SyncError
        Fewer than ``config.min_matched_markers`` pairs (or inliers), too
        many outliers, an implausible drift, or a residual above the
        tolerance: the recordings are probably not from the same session.

    Notes
    -----
    Robust step: of all lines through two marker pairs, the one with the
    most pairs within the tolerance defines the inliers (maximum consensus;
    Theil-Sen was not robust enough with 5 markers: its slope error made
    clean markers look mis-timed). Least squares on the inliers gives the
    final line; pairs that this line brings within the tolerance are added
    (repeated while the inlier set grows). Pairs left out are outliers.
    The fit is done on ``physio - eeg`` against centred EEG time, which keeps
    the numbers small (ms over hours) and well conditioned.
    """
    config = config if config is not None else SyncConfig()
    where = f"{label}: " if label else ""
    if not isinstance(matched, pd.DataFrame):
        raise TypeError(f"matched must be a pandas DataFrame, got {type(matched).__name__}")
    missing = {"code", "eeg_time_s", "physio_time_s"} - set(matched.columns)
    if missing:
        raise ValueError(f"{where}matched lacks columns {sorted(missing)}")
    if not 0 <= max_outlier_fraction < 1:
        raise ValueError(f"max_outlier_fraction must be in [0, 1), got {max_outlier_fraction!r}")
    table = (
        pd.DataFrame(
            {
                "code": matched["code"].to_numpy(dtype=np.int64),
                "eeg_time_s": matched["eeg_time_s"].to_numpy(dtype=float),
                "physio_time_s": matched["physio_time_s"].to_numpy(dtype=float),
            }
        )
        .sort_values("eeg_time_s", kind="stable")
        .reset_index(drop=True)
    )
    x = table["eeg_time_s"].to_numpy()
    y = table["physio_time_s"].to_numpy()
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError(f"{where}matched has non-finite times")
    n = len(table)
    need = int(config.min_matched_markers)
    if n < need:
        raise SyncError(
            f"{where}only {n} marker(s) shared by the EEG and physiology recordings "
            f"(need >= {need}): are they from the same session?"
        )
    if np.unique(x).size < 2:
        raise SyncError(f"{where}all matched markers are at the same EEG time; cannot fit a drift")
    tol_ms = float(config.max_residual_ms)
    if sfreq_eeg is not None and sfreq_physio is not None:
        if sfreq_eeg <= 0 or sfreq_physio <= 0:
            raise ValueError(
                f"sampling rates must be positive, got {sfreq_eeg!r}, {sfreq_physio!r}"
            )
        tol_ms = max(tol_ms, 1e3 / float(sfreq_eeg) + 1e3 / float(sfreq_physio))

    x0 = float(np.median(x))
    xc = x - x0
    d = y - x
    used = _consensus(xc, d, tol_ms * 1e-3)
    for _ in range(10):  # least squares on the inliers; grow the inlier set while it can
        m, b = (float(v) for v in np.polyfit(xc[used], d[used], 1))
        new_used = np.abs(d - (b + m * xc)) <= tol_ms * 1e-3
        if new_used.sum() <= used.sum() or not np.all(new_used[used]):
            break
        used = new_used
    m, b = (float(v) for v in np.polyfit(xc[used], d[used], 1))
    slope = 1.0 + m
    offset = b - m * x0
    resid_ms = (d - (b + m * xc)) * 1e3
    table["residual_ms"] = resid_ms
    table["used"] = used
    n_used = int(used.sum())
    n_out = n - n_used
    if n_out:
        logger.warning(
            "%s%d of %d markers rejected as mis-timed (|residual| > %.3g ms): %s",
            where, n_out, n, tol_ms,
            ", ".join(f"{c} at {t:.3f} s ({r:+.1f} ms)" for c, t, r in
                      table.loc[~used, ["code", "eeg_time_s", "residual_ms"]].itertuples(index=False)),
        )  # fmt: skip
    if n_used < need or n_out > max_outlier_fraction * n:
        raise SyncError(
            f"{where}only {n_used} of {n} shared markers agree on one clock (residual tolerance "
            f"{tol_ms:.3g} ms, need >= {need} and at most {max_outlier_fraction:.0%} outliers): "
            "the markers are inconsistent, the recordings are probably not from the same session"
        )
    drift_ppm = m * 1e6
    if abs(drift_ppm) > max_abs_drift_ppm:
        raise SyncError(
            f"{where}implausible clock drift {drift_ppm:.1f} ppm (limit {max_abs_drift_ppm:g}): "
            "wrong sampling rate or markers from another session?"
        )
    max_abs = float(np.max(np.abs(resid_ms[used])))
    if max_abs > tol_ms:
        raise SyncError(
            f"{where}largest residual of the markers used {max_abs:.3g} ms exceeds the "
            f"tolerance {tol_ms:.3g} ms: the clocks are not related by offset + drift"
        )
    rms = float(np.sqrt(np.mean(resid_ms[used] ** 2)))
    fit = ClockFit(
        offset_s=float(offset), drift_ppm=float(drift_ppm), slope=float(slope), n_matched=n,
        residuals_ms=resid_ms.copy(), max_abs_residual_ms=max_abs, rms_residual_ms=rms,
        matched=table[list(FIT_COLUMNS)], n_used=n_used, tolerance_ms=tol_ms, label=label,
    )  # fmt: skip
    logger.info(
        "%sclock fit: offset %.6f s, drift %+.3f ppm, %d/%d markers, max |residual| %.3f ms, "
        "RMS %.3f ms", where, offset, drift_ppm, n_used, n, max_abs, rms,
    )  # fmt: skip
    return fit


def map_times(
    times_eeg_s: np.ndarray | float | list[float],
    fit: ClockFit,
    sfreq_eeg: float,
    sfreq_physio: float,
) -> pd.DataFrame:
    """Map EEG-clock times to physiology times and samples.

    Parameters
    ----------
    times_eeg_s : array-like of float
        Times on the EEG clock (s from the first EEG sample).
    fit : ClockFit
        From :func:`fit_clock`.
    sfreq_eeg, sfreq_physio : float
        Sampling rates (Hz).

    Returns
    -------
    mapped : pandas.DataFrame
        ``eeg_time_s``, ``eeg_sample`` (int, ``round(t * sfreq_eeg)``),
        ``physio_time_s`` (s, physiology clock), ``physio_sample`` (int,
        ``round(physio_time_s * sfreq_physio)``; may be negative or beyond
        the recording if the time is outside it).
    """
    if not isinstance(fit, ClockFit):
        raise TypeError(f"fit must be a ClockFit, got {type(fit).__name__}")
    for name, value in (("sfreq_eeg", sfreq_eeg), ("sfreq_physio", sfreq_physio)):
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number of Hz, got {value!r}")
    t = np.atleast_1d(np.asarray(times_eeg_s, dtype=float))
    if t.ndim != 1:
        raise ValueError(f"times_eeg_s must be 1-D, got shape {t.shape}")
    tp = np.asarray(fit.to_physio_time(t), dtype=float).reshape(-1)
    return pd.DataFrame(
        {
            "eeg_time_s": t,
            "eeg_sample": np.round(t * sfreq_eeg).astype(np.int64),
            "physio_time_s": tp,
            "physio_sample": np.round(tp * sfreq_physio).astype(np.int64),
        }
    )
