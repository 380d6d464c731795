"""What the cleaning did, as an EEG researcher checks it: per-subject MNE reports and MNE derivatives.

The shared preprocessing pass (:func:`mmme_neuro.epochs.first_level`, one per
subject, cached) keeps the cleaned epochs, every planned epoch with its fate,
the preprocessing report and the fitted ICA. This module turns one such
result into

* MNE objects under BIDS-derivative names in
  ``<derivatives>/sub-XX/eeg/`` (:func:`write_subject_derivatives`):
  ``sub-XX_task-<task>_proc-clean_epo.fif`` (the kept epochs of the analysis
  window with their metadata), ``sub-XX_task-<task>_ica.fif`` (the fitted
  ICA, ``exclude`` = the removed components) and
  ``sub-XX_task-<task>_ave.fif`` (the evoked response of each condition:
  the ERP analysis' averages; MNE writes evoked data in single precision),
  readable by :func:`mne.read_epochs`, :func:`mne.preprocessing.read_ica`
  and :func:`mne.read_evokeds`;
* a per-subject :class:`mne.Report` (:func:`subject_report`), in the sections
  of :data:`SECTIONS`: the EEG spectrum before and after cleaning, the bad
  channels with their reason, the ICA components (properties, the removed
  ones and why), the drop log and the rejection reasons, the facial EMG of
  every epoch by condition and the evoked response of each condition;
* a study report (:func:`study_report`) that links the subjects' reports
  and tabulates what each subject lost, as MNE-BIDS-Pipeline's does.

Reports are HTML with embedded figures, written atomically; they are
derivatives of a study, not figures of the analyses.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import mne
import numpy as np
import pandas as pd

from . import erp
from ._utils import atomic_path
from .config import Config
from .constants import SCALP_CHANNELS
from .epochs import CONDITIONS, from_clean, reason_code
from .pipeline import derivative_paths

__all__ = [
    "SECTIONS",
    "cleaning_table",
    "save_report",
    "study_report",
    "subject_report",
    "write_subject_derivatives",
]

logger = logging.getLogger(__name__)

#: Section titles of a subject's report, in order.
SECTIONS: tuple[str, ...] = (
    "EEG spectrum before and after cleaning",
    "Bad channels",
    "ICA components",
    "Drop log and rejection reasons",
    "Facial EMG per epoch",
    "Evoked responses",
)


def _analysis_epochs(clean: Mapping[str, Any], config: Config) -> tuple[mne.BaseEpochs, pd.DataFrame]:
    """The kept epochs of the analysis window, with their metadata (``aus`` lists as text, for FIF)."""
    epochs, md = from_clean(clean, config.epochs.tmin, config.epochs.tmax)
    meta = epochs.metadata.copy() if epochs.metadata is not None else None
    if meta is not None and "aus" in meta:
        meta["aus"] = meta["aus"].map(lambda v: ", ".join(map(str, v)) if isinstance(v, list | tuple) else v)
        with mne.utils.use_log_level("WARNING"):
            epochs.metadata = meta
    return epochs, md


def _evokeds(epochs: mne.BaseEpochs, md: pd.DataFrame, subject: str) -> list[mne.Evoked]:
    """The evoked response of each condition: :func:`mmme_neuro.erp.compute_evoked` (the ERP analysis'
    averages, the same numbers) as MNE objects (:func:`mmme_neuro.erp.to_evoked`)."""
    da = erp.compute_evoked(epochs, md, subject=subject)
    out = []
    for cond in [str(c) for c in da["condition"].values]:
        if int(da["n_epochs"].sel(condition=cond)) == 0:  # no kept epoch: no average
            continue
        ev = erp.to_evoked(da, condition=cond)
        ev.comment = cond
        out.append(ev)
    return out


def write_subject_derivatives(clean: Mapping[str, Any], deriv_root: str | os.PathLike, subject: str, config: Config,
                              *, task: str = "mmme") -> dict[str, Path]:  # fmt: skip
    """Write a subject's cleaned epochs, ICA and evoked responses as MNE files (BIDS-derivative names).

    Parameters
    ----------
    clean : mapping
        The shared preprocessing result (:func:`mmme_neuro.epochs.first_level`).
    deriv_root : path-like
        The derivatives folder.
    subject : str
        Pseudonym.
    config : Config
        The analysis window ``epochs.tmin``/``tmax``.
    task : str
        BIDS task label.

    Returns
    -------
    written : dict
        ``epochs``, ``evoked`` and (when ICA ran) ``ica`` paths. Each file
        is written to a temporary name and renamed into place.
    """
    paths = derivative_paths(deriv_root, subject, task)
    paths["epochs"].parent.mkdir(parents=True, exist_ok=True)
    with mne.utils.use_log_level("WARNING"):
        epochs, md = _analysis_epochs(clean, config)
        evokeds = _evokeds(epochs, md, subject)
    written: dict[str, Path] = {}
    with atomic_path(paths["epochs"], keep_name=True) as tmp:
        epochs.save(tmp, fmt="double", overwrite=True, verbose=False)
    written["epochs"] = paths["epochs"]
    with atomic_path(paths["evoked"], keep_name=True) as tmp:
        mne.write_evokeds(tmp, evokeds, overwrite=True, verbose=False)
    written["evoked"] = paths["evoked"]
    if clean.get("ica") is not None:
        with atomic_path(paths["ica"], keep_name=True) as tmp:
            clean["ica"].save(tmp, overwrite=True, verbose=False)
        written["ica"] = paths["ica"]
    return written


# ----------------------------------------------------------------------------- report sections


def _table_html(df: pd.DataFrame, empty: str) -> str:
    if df.empty:
        return f"<p>{html.escape(empty)}</p>"
    return df.to_html(index=False, border=0, classes="table table-sm", na_rep="", float_format=lambda x: f"{x:.3g}")


def _bad_channel_table(prep: Mapping[str, Any]) -> pd.DataFrame:
    """Every bad channel of the session with its reason and what was done about it."""
    steps = prep.get("steps", {})
    rows = []
    rec = steps.get("recording_bad_channels") or {}
    for r in rec.get("channels", []):
        rows.append({"channel": r["channel"], "found by": "the recording (channels.tsv, missing or non-finite)",
                     "reason": r["reason"]})  # fmt: skip
    scores = pd.DataFrame(prep.get("bad_channel_scores", []))
    for ch in prep.get("bad_channels", []):
        why = ""
        if not scores.empty and "channel" in scores:
            s = scores[scores["channel"] == ch]
            if len(s):
                r = s.iloc[0]
                why = str(r.get("reason") or "") or (
                    f"amplitude z = {r['amplitude_z']:.1f}, neighbour correlation = {r['neighbor_corr']:.2f}")
        rows.append({"channel": ch, "found by": "detection (robust amplitude z + neighbour correlation)", "reason": why})
    table = pd.DataFrame(rows, columns=["channel", "found by", "reason"])
    interp = set((steps.get("interpolate") or {}).get("channels", []))
    table["interpolated"] = table["channel"].isin(interp).map({True: "yes (spherical spline)", False: "no"})
    return table


def _ica_table(prep: Mapping[str, Any]) -> pd.DataFrame:
    """The removed (or flagged) ICA components and why."""
    ica = prep.get("ica") or {}
    rows = []
    scores = ica.get("eog_scores") or {}
    for k in ica.get("eog_components", []):
        detail = ", ".join(f"{ch} r = {float(np.ravel(v)[k]):.2f}" for ch, v in scores.items()
                           if np.ravel(v).size > k)  # fmt: skip
        rows.append({"component": f"ICA{k:03d}", "why": "ocular: correlates with the EOG", "detail": detail,
                     "removed": k in ica.get("excluded_components", [])})  # fmt: skip
    for k in ica.get("muscle_components", []):
        rows.append({"component": f"ICA{k:03d}", "why": "muscle (MNE find_bads_muscle: spectral slope, peripheral map, low smoothness)",
                     "detail": "", "removed": k in ica.get("excluded_components", [])})  # fmt: skip
    return pd.DataFrame(rows, columns=["component", "why", "detail", "removed"])


def _rejection_table(md: pd.DataFrame) -> pd.DataFrame:
    """Planned, kept and rejected epochs per condition, rejections by reason code."""
    md = md.copy()
    md["code"] = np.where(md["rejected"].astype(bool), md["reason"].map(reason_code), "kept")
    table = md.pivot_table(index="condition", columns="code", values="epoch_id", aggfunc="count", fill_value=0)
    table.insert(0, "planned", table.sum(axis=1))
    return table.reset_index()


def _psd_figure(raw: mne.io.BaseRaw | None, epochs: mne.BaseEpochs, seconds: float) -> plt.Figure:
    """Scalp EEG spectra: the recording as read (its first ``seconds``) and the cleaned epochs."""
    fmax = float(epochs.info["sfreq"]) / 2
    fig, axes = plt.subplots(1, 2 if raw is not None else 1, figsize=(9, 3.2), sharey=True, squeeze=False)
    panels = []
    if raw is not None:
        picks = [c for c in SCALP_CHANNELS if c in raw.ch_names and c not in raw.info["bads"]]
        stop = min(float(seconds), raw.times[-1])
        before = raw.compute_psd(fmin=1.0, fmax=min(fmax, 100.0), tmax=stop, picks=picks, verbose=False)
        panels.append((before, f"before: the recording as read (first {stop:.0f} s)"))
    picks = [c for c in SCALP_CHANNELS if c in epochs.ch_names]
    # Welch for both panels (one window per epoch): the same density scale as the recording's. MNE 1.13's
    # default multitaper spectrum of these epochs integrated to ~190x their variance (checked with scipy).
    after = epochs.compute_psd(method="welch", fmin=1.0, fmax=min(fmax, 100.0), picks=picks,
                               n_fft=len(epochs.times), verbose=False)  # fmt: skip
    panels.append((after, f"after: the {len(epochs)} cleaned epochs"))
    for ax, (spec, title) in zip(axes[0], panels, strict=True):
        spec.plot(axes=ax, show=False, average=False, amplitude=False, dB=True)
        ax.set_title(title, fontsize=9)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.9, wspace=0.12)
    return fig


def _emg_figure(md: pd.DataFrame) -> plt.Figure:
    """Facial EMG RMS (µV) of every planned epoch by condition, kept and rejected."""
    from .viz.style import condition_color

    fig, ax = plt.subplots(figsize=(6, 3.2))
    conds = [c for c in CONDITIONS if (md["condition"] == c).any()]
    rng = np.random.default_rng(0)  # jitter only
    for i, c in enumerate(conds):
        sub = md[md["condition"] == c]
        for kept, marker in ((True, "o"), (False, "x")):
            y = sub.loc[sub["kept"].astype(bool) == kept, "emg_rms_uv"].to_numpy(float)
            x = i + rng.uniform(-0.15, 0.15, y.size)
            ax.scatter(x, y, s=12, marker=marker, alpha=0.8, color=condition_color(c))
    for kept, marker in ((True, "o"), (False, "x")):
        ax.scatter([], [], marker=marker, color="0.3", label="kept" if kept else "rejected")
    ax.set_xticks(range(len(conds)), conds)
    ax.set_ylabel("EMG RMS (µV)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def subject_report(clean: Mapping[str, Any], config: Config, *, subject: str, raw: mne.io.BaseRaw | None = None,
                   raw_psd_s: float = 60.0) -> mne.Report:  # fmt: skip
    """The cleaning of one subject as an :class:`mne.Report` (sections :data:`SECTIONS`).

    Parameters
    ----------
    clean : mapping
        The shared preprocessing result (:func:`mmme_neuro.epochs.first_level`).
    config : Config
        The analysis window (``epochs``).
    subject : str
        Pseudonym (the report's title).
    raw : mne.io.BaseRaw | None
        The recording (e.g. ``read_bids_session(...).raw``): its first
        ``raw_psd_s`` seconds give the spectrum before cleaning (only those
        are read). None: the spectrum after cleaning only.
    raw_psd_s : float
        Seconds of the recording in the spectrum before cleaning.

    Returns
    -------
    report : mne.Report
    """
    if not (np.isfinite(raw_psd_s) and raw_psd_s > 0):
        raise ValueError(f"raw_psd_s must be a positive number of seconds, got {raw_psd_s!r}")
    with mne.utils.use_log_level("WARNING"):
        return _subject_report(clean, config, subject, raw, raw_psd_s)


def _subject_report(clean: Mapping[str, Any], config: Config, subject: str, raw: mne.io.BaseRaw | None,
                    raw_psd_s: float) -> mne.Report:  # fmt: skip
    prep = clean["report"].get("preprocessing", {})
    epochs, md = _analysis_epochs(clean, config)
    report = mne.Report(title=f"{subject}: cleaning", verbose=False)
    s_psd, s_bad, s_ica, s_drop, s_emg, s_evoked = SECTIONS
    fig = _psd_figure(raw, epochs, raw_psd_s)
    report.add_figure(fig, title=s_psd, section=s_psd, caption=(
        "Scalp channels. Before: unfiltered, as recorded; after: filtered, bad channels interpolated, re-referenced, "
        "ocular ICA components removed, epochs rejected by amplitude left out."))  # fmt: skip
    plt.close(fig)
    report.add_html(_table_html(_bad_channel_table(prep), "No bad channel."), title=s_bad, section=s_bad)
    ica = clean.get("ica")
    if ica is None:
        report.add_html("<p>ICA was off (<code>preprocessing.ica = false</code>).</p>", title=s_ica, section=s_ica)
    else:
        report.add_html(_table_html(_ica_table(prep), "No component was flagged."),
                        title=f"{s_ica}: removed and why", section=s_ica)  # fmt: skip
        # maps of every component (removed ones marked) and the EOG correlation scores; no source
        # properties: only cleaned epochs are kept, in which the removed sources are zero by construction
        scores = [np.asarray(v, float) for v in ((prep.get("ica") or {}).get("eog_scores") or {}).values()]
        scores = [v for v in scores if v.size == ica.n_components_]
        report.add_ica(ica, title=s_ica, inst=None, eog_scores=scores or None, n_jobs=1)
    report.add_html(_table_html(_rejection_table(md), "No epoch planned."), title=f"{s_drop}: counts", section=s_drop)
    fig = epochs.plot_drop_log(show=False, subject=subject)
    report.add_figure(fig, title=s_drop, section=s_drop)
    plt.close(fig)
    fig = _emg_figure(md)
    report.add_figure(fig, title=s_emg, section=s_emg,
                      caption="Facial EMG RMS in each epoch's window, by condition (log scale); x: rejected epochs.")
    plt.close(fig)
    evokeds = _evokeds(epochs, md, subject)
    if evokeds:
        report.add_evokeds(evokeds, titles=[f"{s_evoked}: {e.comment} (n = {e.nave})" for e in evokeds], n_jobs=1)
    else:
        report.add_html("<p>No kept epoch.</p>", title=s_evoked, section=s_evoked)
    return report


def cleaning_table(clean: Mapping[str, Any], subject: str) -> dict[str, Any]:
    """One row of the study report: what a subject's cleaning found and removed."""
    prep = clean["report"].get("preprocessing", {})
    md = clean["metadata"]
    ica = prep.get("ica") or {}
    row: dict[str, Any] = {"subject": subject,
                           "bad_channels": ", ".join(_bad_channel_table(prep)["channel"]) or "none",
                           "ica_removed": len(ica.get("excluded_components", [])),
                           "ica_components": ica.get("n_components")}  # fmt: skip
    for c in CONDITIONS:
        sub = md[md["condition"] == c]
        row[f"{c}_planned"] = len(sub)
        row[f"{c}_kept"] = int(sub["kept"].astype(bool).sum())
    return row


def study_report(rows: Sequence[Mapping[str, Any]], links: Mapping[str, str], exclusions: pd.DataFrame | None = None,
                 *, title: str = "mmme-neuro: cleaning of the study") -> mne.Report:  # fmt: skip
    """The study's cleaning at a glance: one row per subject, links to the subjects' reports, exclusions.

    Parameters
    ----------
    rows : sequence of mapping
        :func:`cleaning_table` rows.
    links : mapping
        Subject -> relative link to its report.
    exclusions : pandas.DataFrame | None
        Coded expressions that never became epochs, with ``reason_code``
        (:func:`mmme_neuro.dataset.coded_exclusions`): counted by reason.
    title : str
        Report title.
    """
    report = mne.Report(title=title, verbose=False)
    table = pd.DataFrame(list(rows))
    if len(table):
        table.insert(1, "report", [f'<a href="{html.escape(links[s])}">{html.escape(s)}</a>' if s in links else ""
                                   for s in table["subject"]])  # fmt: skip
    report.add_html(table.to_html(index=False, border=0, escape=False, classes="table table-sm") if len(table)
                    else "<p>No subject.</p>", title="Subjects", section="Subjects")  # fmt: skip
    if exclusions is not None and len(exclusions):
        counts = exclusions.groupby("reason_code").size().rename("expressions").reset_index()
        report.add_html(_table_html(counts, ""), title="Coded expressions not analysed", section="Exclusions")
    return report


def save_report(report: mne.Report, path: str | os.PathLike) -> Path:
    """Write ``report`` as HTML atomically (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, keep_name=True) as tmp:
        report.save(tmp, open_browser=False, overwrite=True, verbose=False)
    return path
