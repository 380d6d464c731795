"""Open the study a configuration points at, as BIDS, one session at a time.

Every analysis starts here:

- ``paths.bids_root`` set: that BIDS study is used as it is.
- ``paths.raw_root`` set: the raw MMME-style directory is converted to BIDS
  under ``<paths.data_dir>/bids/<raw_root name>`` (resumable: unchanged
  subjects are skipped), then used.
- neither: the embedded synthetic study of ``simulation`` (scale, null,
  seed) is generated if needed and converted to ``<study>/bids``.

Before a study is used, :func:`prepare_bids` checks that its conversion
finished and that it still matches its manifest
(:func:`mmme_neuro.manifest.check_study`): a study whose conversion was
killed half-way, or is running, is refused with the reason.

Sessions are read lazily (:func:`iter_sessions`), so memory stays flat as
the number of subjects grows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .bids import BidsSession, convert_study, read_bids_session
from .config import Config
from .manifest import check_study

__all__ = ["analysis_exclusions", "bids_root_for", "coded_exclusions", "failed_exclusions", "iter_sessions",
           "list_subjects", "prepare_bids", "stored_coding"]

logger = logging.getLogger(__name__)


def bids_root_for(config: Config) -> Path:
    """The BIDS root ``config`` designates (see the module docstring); nothing is written."""
    paths = config.paths
    if paths.bids_root is not None:
        return Path(paths.bids_root)
    if paths.raw_root is not None:
        return Path(paths.data_dir) / "bids" / Path(paths.raw_root).name
    from .simulate.study import default_study_dir

    return default_study_dir(config) / "bids"


def prepare_bids(config: Config, *, progress: bool = True) -> Path:
    """Make sure the configured study exists as BIDS; return its root.

    Parameters
    ----------
    config : Config
        Effective configuration.
    progress : bool
        Progress bars while generating/converting.

    Returns
    -------
    bids_root : Path

    Raises
    ------
    FileNotFoundError
        If ``paths.bids_root`` is not a BIDS study.
    mmme_neuro.manifest.StudyStateError
        If the study's conversion did not finish, is running, or the study
        no longer matches its manifest (the message says why and what to do).
    """
    paths = config.paths
    root = bids_root_for(config)
    if paths.bids_root is not None:
        if not (root / "dataset_description.json").is_file():
            raise FileNotFoundError(f"{root} is not a BIDS study (no dataset_description.json)")
        check_study(root)
        return root
    if paths.raw_root is not None:
        raw_dir, coding = Path(paths.raw_root), paths.coding_file
    else:
        from .simulate.study import ensure_study

        study = ensure_study(config, progress=progress)
        raw_dir, coding = study.raw_dir, study.coding_file
    # another process converting the same study (two scripts started together): wait for it
    summary = convert_study(raw_dir, root, config, coding_file=coding, progress=progress, lock_timeout_s=None)
    logger.info("BIDS study at %s: %s", root, summary.counts)
    check_study(root)
    return root


def list_subjects(bids_root: str | Path) -> list[str]:
    """Pseudonyms of the converted subjects (``sub-*`` folders with EEG), sorted."""
    root = Path(bids_root)
    return sorted(p.name for p in root.glob("sub-*") if (p / "eeg").is_dir())


def iter_sessions(bids_root: str | Path, subjects: list[str] | None = None, *,
                  physio: bool = True) -> Iterator[BidsSession]:  # fmt: skip
    """Yield the BIDS sessions one at a time (EEG not preloaded).

    Parameters
    ----------
    bids_root : path-like
        A converted study.
    subjects : list of str | None
        Pseudonyms to read (default: all).
    physio : bool
        Also load the physiology table.
    """
    for sub in subjects or list_subjects(bids_root):
        yield read_bids_session(bids_root, sub, physio=physio)


def coded_exclusions(bids_root: str | Path, subjects: Sequence[str], *,
                     scopes: Sequence[str] = ("all",)) -> pd.DataFrame:  # fmt: skip
    """Coded expressions of ``subjects`` that never became BIDS events, with their reasons.

    Reads ``derivatives/mmme-neuro/exclusions.tsv`` (rows of scope ``all``:
    excluded from every modality; ``scopes=("all", "physio")`` adds those
    not analysable in the physiology); an empty table if the study has none.

    Returns
    -------
    exclusions : pandas.DataFrame
        ``expression_id``, ``subject``, ``marker``, ``kind``, ``reason_code``,
        ``stage``, ``reason``, sorted by subject, code and id.
    """
    path = Path(bids_root) / "derivatives" / "mmme-neuro" / "exclusions.tsv"
    cols = ["expression_id", "subject", "marker", "kind", "reason_code", "stage", "reason"]
    if not path.is_file():
        return pd.DataFrame(columns=cols)
    ex = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False, dtype=str)
    scope = ex["scope"] if "scope" in ex else pd.Series("all", index=ex.index)
    ex = ex[scope.isin(list(scopes)) & ex["subject"].isin(set(subjects))]
    return ex.reindex(columns=cols).sort_values(["subject", "reason_code", "expression_id"], kind="stable",
                                                na_position="last").reset_index(drop=True)  # fmt: skip


if TYPE_CHECKING:
    from .io.coding import CodingResult


def stored_coding(bids_root: str | Path) -> tuple[CodingResult, dict[str, Path]]:
    """The coding file of a converted study, from the pseudonymised copy the conversion stored.

    Reads ``derivatives/mmme-neuro/coded_expressions.tsv`` (kept expressions)
    and ``coding_report.csv`` (one row per coding-file row) with
    :func:`mmme_neuro.io.coding.read_stored_coding`: the study is described
    without its coding file, and without names.

    Returns
    -------
    coding : CodingResult
        As :func:`mmme_neuro.io.coding.read_coding` returns it, without the
        name -> pseudonym mapping.
    inputs : dict of str to Path
        The two files read (input name -> path), for the provenance.

    Raises
    ------
    FileNotFoundError
        The study holds no stored copy (converted by an earlier version): the
        message says how to add it.
    mmme_neuro.io.coding.CodingFileError
        A stored table is unreadable.
    """
    from .io.coding import read_stored_coding

    deriv = Path(bids_root) / "derivatives" / "mmme-neuro"
    inputs = {"coded_expressions": deriv / "coded_expressions.tsv", "coding_report": deriv / "coding_report.csv"}
    for path in inputs.values():
        if not path.is_file():
            raise FileNotFoundError(
                f"{bids_root}: no stored copy of the coding ({path.relative_to(bids_root).as_posix()} is missing; "
                "mmme-neuro convert writes it): convert the study again (unchanged subjects are skipped) or give "
                "the coding file (--coding / paths.coding_file)"
            )
    return read_stored_coding(inputs["coded_expressions"], inputs["coding_report"]), inputs
def failed_exclusions(bids_root: str | Path, failed: Sequence[Mapping[str, str]]) -> pd.DataFrame:
    """Every coded expression (ME/MaE row of ``events.tsv``) of the subjects an analysis failed on, with why.

    Parameters
    ----------
    bids_root : path-like
        The converted study.
    failed : sequence of dict
        ``[{"subject", "reason"}]``, e.g. :attr:`mmme_neuro.pipeline.RunReport.failed`.

    Returns
    -------
    exclusions : pandas.DataFrame
        The columns of :func:`coded_exclusions`; ``reason_code``
        ``subject_failed``, ``stage`` ``analysis``, ``reason`` the failure
        (``"upstream step clean-epochs failed: BadChannelsError: sub-01: bad channel ..."``).
    """
    cols = ["expression_id", "subject", "marker", "kind", "reason_code", "stage", "reason"]
    parts = []
    for f in failed:
        sub = str(f["subject"])
        path = Path(bids_root) / sub / "eeg" / f"{sub}_task-mmme_events.tsv"
        if not path.is_file():
            continue
        ev = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False, dtype=str)
        ev = ev[ev["trial_type"].isin(["ME", "MaE"])]
        parts.append(pd.DataFrame({"expression_id": ev["expression_id"].to_numpy(), "subject": sub,
                                   "marker": ev["marker"].to_numpy(), "kind": ev["trial_type"].to_numpy(),
                                   "reason_code": "subject_failed", "stage": "analysis",
                                   "reason": str(f["reason"])}, columns=cols))  # fmt: skip
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def analysis_exclusions(bids_root: str | Path, subjects: Sequence[str], failed: Sequence[Mapping[str, str]] = (),
                        *, scopes: Sequence[str] = ("all",)) -> pd.DataFrame:  # fmt: skip
    """An analysis' exclusion table: the study's exclusions of its subjects, and every coded expression
    of the subjects it failed on.

    With the analysed epochs it accounts for every coded expression of every
    subject of the study: ``rows_in == analysed + excluded``. Without
    failures it is :func:`coded_exclusions` of ``subjects``.

    Parameters
    ----------
    bids_root : path-like
        The converted study.
    subjects : sequence of str
        Subjects analysed.
    failed : sequence of dict
        ``[{"subject", "reason"}]`` of the subjects the analysis failed on
        (:attr:`mmme_neuro.pipeline.RunReport.failed`): their rows of
        ``exclusions.tsv`` and their coded expressions (:func:`failed_exclusions`).
    scopes : sequence of str
        Scopes of ``exclusions.tsv`` that count (:func:`coded_exclusions`).

    Returns
    -------
    exclusions : pandas.DataFrame
        The columns of :func:`coded_exclusions`, sorted by subject, code and id.
    """
    names = sorted({str(f["subject"]) for f in failed})
    if not names:
        return coded_exclusions(bids_root, subjects, scopes=scopes)
    lost = failed_exclusions(bids_root, failed)
    coded = coded_exclusions(bids_root, sorted(set(subjects) | set(names)), scopes=scopes)
    coded = coded[~coded["expression_id"].isin(set(lost["expression_id"].dropna()))]  # listed once, as failed
    out = pd.concat([coded, lost], ignore_index=True) if len(coded) else lost
    return out.sort_values(["subject", "reason_code", "expression_id"], kind="stable",
                           na_position="last").reset_index(drop=True)  # fmt: skip
