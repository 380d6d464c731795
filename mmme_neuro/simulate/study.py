"""Write a whole synthetic MMME-like study in the raw formats, with its ground truth.

Layout of a study directory (the naming of the MMME authors' exports)::

    <root>/
        raw/
            coding_file.xlsx            # MMME's 13 columns, synthetic names
            <name>_<yyyymmdd>.set/.fdt  # EEG (EEGLAB; .vhdr/.eeg/.vmrk for BrainVision)
            <name>_<yyyymmdd>.mat       # BIOPAC AcqKnowledge MATLAB export (17 columns)
        ground_truth.json               # everything planted (effects, clocks, expressions)
        COMPLETE                        # written last: the study is whole

Subjects are written one at a time (never the whole study in memory); a
study whose ``COMPLETE`` marker matches the requested parameters is reused.

``ground_truth.json``
---------------------
``version``, ``generator``, ``params`` (what identifies the study: scale and
its parameters, seed, ``null``, ``between_subject_sd``, format, number of
subjects, generator version), ``scale``;

``effects``
    The population effects (:class:`~mmme_neuro.simulate.effects.Effects` as a
    dict: values per condition, the between-subject SD fields, the
    ``between_subject_sd`` multiplier, ``null``).
``between_subject``
    ``sd_multiplier`` and, per varied parameter key (``erp.amplitude_uv``,
    ``oscillations.<name>.relative_change``, ``coupling.amplitude_uv``,
    ``emg.rms_uv``, ``physio.hr_change_bpm``, ``physio.scr_probability``,
    ``physio.scr_amplitude_us``, ``physio.rsp_amplitude_change``):
    ``population`` (per condition), ``population_difference`` (ME - MaE;
    natural-log ratio for ``emg.rms_uv``), ``sd`` (between-subject SD of
    that difference, multiplier applied), ``unit``, ``log``, ``lower``,
    ``upper`` (physical range); ``emg.gain``: ``sd`` of the subjects' log EMG gain.
``subjects``
    One record per subject: clocks, files, ``quirks``, counts, ``clips``,
    ``markers``, ``coding_rows`` and

    - ``effects``: the subject's drawn values, per varied parameter key
      ``ME``, ``MaE``, ``difference`` (ME - MaE; log ratio for EMG) and
      ``deviation`` (the drawn deviation of the difference before any shift
      into the physical range); ``emg.gain``: ``value``
      (:func:`~mmme_neuro.simulate.effects.subject_effect_values`);
    - ``expressions``: one record per planted expression: the design
      columns, onset samples on both clocks, the single-trial
      ``erp_amplitude_uv``, ``emg_rms_uv`` and site weights ``emg_w_frontal``,
      ``emg_w_left``, ``emg_w_right``
      (:func:`~mmme_neuro.simulate.effects.expression_effects`) and the
      realised physiology (:class:`~mmme_neuro.simulate.physio.PhysioTruth`:
      SCR occurrence, latency and amplitude, ``hr_change_bpm``,
      ``rsp_amplitude_change``, EMG A/B burst RMS).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .. import __version__
from .._utils import atomic_write_text, check_option
from ..config import Config
from .cardiac import cardio_respiratory
from .coding_writer import coding_rows, write_coding_file
from .design import StudyDesign, SubjectDesign, design_study, subject_rng
from .eeg import simulate_eeg, simulate_eeg_chunks
from .effects import (
    Effects,
    effects_for_scale,
    expression_effects,
    null_effects,
    population_summary,
    subject_effect_values,
)
from .physio import simulate_physio
from .scales import get_scale
from .writers_eeg import write_brainvision, write_eeglab
from .writers_physio import write_acqknowledge_mat

__all__ = ["StudyPaths", "default_study_dir", "ensure_study", "load_ground_truth", "simulate_study"]

logger = logging.getLogger(__name__)

GROUND_TRUTH_VERSION = 2  # 2: between-subject variation (between_subject, subjects[i].effects)
CODING_FILE_NAME = "coding_file.xlsx"


@dataclass(frozen=True)
class StudyPaths:
    """Where a synthetic study lives.

    Attributes
    ----------
    root : Path
        Study directory.
    raw_dir : Path
        Raw recordings and the coding file (what a user receives from MMME).
    coding_file : Path
        The coding xlsx.
    ground_truth : Path
        JSON of everything planted.
    """

    root: Path
    raw_dir: Path
    coding_file: Path
    ground_truth: Path

    @classmethod
    def at(cls, root: str | Path) -> StudyPaths:
        """Paths of a study rooted at ``root``."""
        root = Path(root)
        raw = root / "raw"
        return cls(root=root, raw_dir=raw, coding_file=raw / CODING_FILE_NAME,
                   ground_truth=root / "ground_truth.json")  # fmt: skip


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(df.to_json(orient="records", double_precision=10))


def _subject_truth(subj: SubjectDesign, eeg_file: str, physio_file: str, coding: pd.DataFrame,
                   physio_truth: pd.DataFrame, cardio, effects: Effects, seed: int) -> dict[str, Any]:  # fmt: skip
    ex = subj.expressions.copy()
    ex = ex.merge(expression_effects(subj, effects, seed), on="expr_id", how="left")
    ex["eeg_onset_sample"] = subj.eeg_sample(ex.eeg_onset_s)
    ex["physio_onset_s"] = np.asarray(subj.to_physio_time(ex.eeg_onset_s.to_numpy()), dtype=float)
    ex["physio_onset_sample"] = subj.physio_sample(ex.eeg_onset_s.to_numpy())
    if len(physio_truth):
        keep = [c for c in physio_truth.columns if c not in ex.columns or c == "expr_id"]
        ex = ex.merge(physio_truth[keep], on="expr_id", how="left")
    mk = subj.markers.copy()
    mk["eeg_sample"] = subj.eeg_sample(mk.eeg_time_s)
    mk["physio_sample"] = subj.physio_sample(mk.eeg_time_s.to_numpy())
    clips = subj.clips.copy()
    clips["eeg_start_sample"] = subj.eeg_sample(clips.eeg_start_s)
    return {
        "index": subj.index,
        "name": subj.name,
        "session_id": subj.session_id,
        "session_date": subj.session_date.isoformat(),
        "eeg_file": eeg_file,
        "physio_file": physio_file,
        "eeg_sfreq": subj.eeg_sfreq,
        "physio_sfreq": subj.physio_sfreq,
        "eeg_n_samples": subj.eeg_n_samples,
        "physio_n_samples": subj.physio_n_samples,
        "physio_offset_s": subj.physio_offset_s,
        "physio_drift_ppm": subj.physio_drift_ppm,
        "camera_start": subj.camera_start.isoformat(timespec="milliseconds"),
        "baseline_hr_bpm": cardio.baseline_hr_bpm,
        "breathing_rate_hz": cardio.breathing_rate_hz,
        "quirks": subj.quirks,
        "n_me": int((subj.expressions.kind == "ME").sum()),
        "n_mae": int((subj.expressions.kind == "MaE").sum()),
        "effects": subject_effect_values(effects, subj.index, seed),
        "clips": _records(clips),
        "markers": _records(mk),
        "expressions": _records(ex),
        "coding_rows": _records(coding.drop(columns=["Subject", "Filename"], errors="ignore")),
    }


def _write_subject(subj: SubjectDesign, raw_dir: Path, effects: Effects, seed: int,
                   eeg_format: str) -> tuple[dict[str, Any], pd.DataFrame]:  # fmt: skip
    stem = subj.session_id
    if eeg_format == "eeglab":
        eeg_path = write_eeglab(subj, simulate_eeg_chunks(subj, effects, seed), raw_dir / f"{stem}.set")
    else:
        eeg_path = write_brainvision(subj, simulate_eeg(subj, effects, seed), raw_dir / f"{stem}.vhdr")
    physio, ptruth = simulate_physio(subj, effects, seed)
    physio_path = write_acqknowledge_mat(subj, physio, raw_dir / f"{stem}.mat")
    del physio
    rows = coding_rows(subj, subject_rng(seed, subj.index, "coding"))
    cardio = cardio_respiratory(subj, effects, seed)
    truth = _subject_truth(subj, eeg_path.name, physio_path.name, rows, ptruth.to_frame(), cardio, effects, seed)
    return truth, rows


def simulate_study(
    out_dir: str | Path,
    *,
    scale: str = "ci",
    seed: int = 42,
    null: bool = False,
    eeg_format: str = "eeglab",
    n_subjects: int | None = None,
    effects: Effects | None = None,
    between_subject_sd: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> StudyPaths:
    """Generate a synthetic MMME-like study in the raw formats.

    Parameters
    ----------
    out_dir : path-like
        Study directory (created). Must not exist unless ``overwrite``.
    scale : {"ci", "default", "full"}
        Study size (:data:`mmme_neuro.simulate.scales.SCALES`).
    seed : int
        Seed: the same seed and parameters give byte-identical files.
    null : bool
        Plant no population difference (:func:`~mmme_neuro.simulate.effects.null_effects`):
        the subjects keep their drawn deviations.
    eeg_format : {"eeglab", "brainvision"}
        EEG file format.
    n_subjects : int | None
        Generate only the first ``n_subjects`` (e.g. a subset of ``full``).
    effects : Effects | None
        Custom planted effects (default: the scale's preset,
        :func:`~mmme_neuro.simulate.effects.effects_for_scale`; ``null`` applies to them).
    between_subject_sd : float | None
        Multiplier of every between-subject SD (``Effects.between_subject_sd``:
        0 = every subject is the population, 1 = the calibrated spread).
        None keeps the one of ``effects`` (1 for the presets).
    overwrite : bool
        Replace an existing directory.
    progress : bool
        Show a progress bar over subjects.

    Returns
    -------
    paths : StudyPaths
    """
    check_option("eeg_format", eeg_format, ("eeglab", "brainvision"))
    scale_obj = get_scale(scale)
    effects = effects or effects_for_scale(scale_obj)
    if between_subject_sd is not None:
        effects = dataclasses.replace(effects, between_subject_sd=float(between_subject_sd))
    if null:
        effects = null_effects(effects)
    paths = StudyPaths.at(out_dir)
    if paths.root.exists():
        if not overwrite:
            raise FileExistsError(f"{paths.root} exists; pass overwrite=True to replace it")
        shutil.rmtree(paths.root)
    paths.raw_dir.mkdir(parents=True)
    design: StudyDesign = design_study(scale_obj, seed, n_subjects=n_subjects)
    subjects_truth = []
    coding = []
    for subj in tqdm(design.subjects, desc=f"simulate {scale_obj.name}", unit="subject",
                     disable=not progress):  # fmt: skip
        truth, rows = _write_subject(subj, paths.raw_dir, effects, seed, eeg_format)
        subjects_truth.append(truth)
        coding.append(rows)
    write_coding_file(pd.concat(coding, ignore_index=True), paths.coding_file)
    params = _params(scale_obj, seed, null, eeg_format, len(design.subjects), effects.between_subject_sd)
    truth = {
        "version": GROUND_TRUTH_VERSION,
        "generator": f"mmme-neuro {__version__}",
        "params": params,
        "scale": dataclasses.asdict(design.scale),
        "effects": effects.to_dict(),
        "between_subject": population_summary(effects),
        "subjects": subjects_truth,
    }
    atomic_write_text(paths.ground_truth, json.dumps(truth, indent=1, default=_json_default))
    atomic_write_text(paths.root / "COMPLETE", json.dumps(params, sort_keys=True))
    logger.info("synthetic study written to %s", paths.root)
    return paths


def _params(scale, seed: int, null: bool, eeg_format: str, n_subjects: int,
            between_subject_sd: float = 1.0) -> dict[str, Any]:  # fmt: skip
    # the scale's parameters are part of the identity: a changed scale definition regenerates
    return {"scale": scale.name, "scale_params": dataclasses.asdict(scale), "seed": seed, "null": null,
            "between_subject_sd": float(between_subject_sd), "eeg_format": eeg_format,
            "n_subjects": n_subjects, "generator_version": __version__}  # fmt: skip


def default_study_dir(config: Config) -> Path:
    """Directory of the synthetic study that ``config`` asks for.

    ``<paths.data_dir>/synthetic/<scale>-seed<seed>[-null][-bsd<x>][-brainvision]``;
    ``-bsd<x>`` names a ``simulation.between_subject_sd`` other than 1 (e.g.
    ``-bsd0`` or ``-bsd0.5``), so studies of different spreads never share a directory.
    """
    sim = config.simulation
    name = f"{sim.scale}-seed{config.simulation_seed}"
    if sim.null:
        name += "-null"
    if sim.between_subject_sd != 1.0:
        name += f"-bsd{sim.between_subject_sd:g}"
    if sim.eeg_format != "eeglab":
        name += f"-{sim.eeg_format}"
    return Path(config.paths.data_dir) / "synthetic" / name


def ensure_study(config: Config, *, progress: bool = True) -> StudyPaths:
    """Return the synthetic study ``config`` asks for, generating it if needed.

    A study is reused only if its ``COMPLETE`` marker records the same
    parameters and generator version; otherwise it is regenerated.
    """
    root = default_study_dir(config)
    sim = config.simulation
    scale = get_scale(sim.scale)
    want = _params(scale, config.simulation_seed, sim.null, sim.eeg_format, scale.n_subjects, sim.between_subject_sd)
    marker = root / "COMPLETE"
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == json.loads(json.dumps(want)):
                return StudyPaths.at(root)
        except json.JSONDecodeError:
            pass
        logger.info("regenerating %s: parameters or generator version changed", root)
    return simulate_study(root, scale=sim.scale, seed=config.simulation_seed, null=sim.null,
                          eeg_format=sim.eeg_format, between_subject_sd=sim.between_subject_sd,
                          overwrite=True, progress=progress)  # fmt: skip


def load_ground_truth(path: str | Path) -> dict[str, Any]:
    """Load a study's ``ground_truth.json`` (a path to the file or the study root)."""
    path = Path(path)
    if path.is_dir():
        path = StudyPaths.at(path).ground_truth
    return json.loads(path.read_text(encoding="utf-8"))
