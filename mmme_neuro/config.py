"""The one configuration model that drives every analysis.

A configuration is a TOML file validated by :class:`Config`. Every field has
a documented default, so an empty file (or no file) is a valid configuration;
unknown keys are errors, so a typo never silently falls back to a default.

Examples
--------
>>> from mmme_neuro.config import Config
>>> cfg = Config()
>>> cfg.bands["theta"]
(4.0, 8.0)
>>> len(cfg.hash())
16
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .constants import SCALP_CHANNELS

__all__ = [
    "CodingConfig",
    "Config",
    "DecodingConfig",
    "ConfigError",
    "EmgConfig",
    "EmgMatchingConfig",
    "EpochConfig",
    "MeRule",
    "NetworkConfig",
    "PathsConfig",
    "PlannedConfig",
    "PlannedErp",
    "PlannedNetwork",
    "PlannedTfr",
    "PreprocessingConfig",
    "RejectionConfig",
    "RunConfig",
    "SimulationConfig",
    "StatsConfig",
    "SyncConfig",
    "load_config",
]

DEFAULT_BANDS: dict[str, tuple[float, float]] = {
    "delta": (1.0, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 13.0),
    "beta": (13.0, 30.0),
    "gamma": (30.0, 47.0),
}


class ConfigError(ValueError):
    """A configuration file or value is invalid."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class PathsConfig(_Section):
    """Where inputs are read and outputs written. Relative paths are relative to the working directory."""

    data_dir: Path = Field(
        Path("data"),
        description="Root for generated data: synthetic studies go to data_dir/synthetic/<scale>-seed<seed>/.",
    )
    figures_dir: Path = Field(Path("figures"), description="Root of the figures and result tables of analyses.")
    raw_root: Path | None = Field(
        None, description="Raw study directory (coding file + <subject>_<yyyymmdd>.<ext> recordings). None: the synthetic default study."
    )
    bids_root: Path | None = Field(None, description="BIDS root of a converted study. None: derived from raw_root.")
    coding_file: Path | None = Field(None, description="MMME coding file (xlsx/csv). None: the one found in raw_root.")
    derivatives_dir: Path | None = Field(
        None,
        description=(
            "Where the analyses write into a study: the first-level cache and its index of input-file hashes "
            "(<derivatives_dir>/first-level/). None: <bids_root>/derivatives/mmme-neuro, beside the conversion's "
            "records. Set it (one directory per study) to analyse a read-only BIDS study: nothing is then written "
            "under bids_root. The conversion's records (exclusions.tsv, coding report, ...) are read where the "
            "conversion wrote them. Where results are written never changes them (not part of the configuration hash)."
        ),
    )


class MeRule(_Section):
    """How an expression is labelled micro (ME) or macro (MaE) when the coding file has no ``Macro/Micro`` column.

    Default: the CASME II convention, ME if total duration <= 500 ms or onset-to-apex <= 250 ms.
    """

    max_duration_s: float = Field(0.5, gt=0, description="ME if offset - onset <= this (s).")
    max_onset_to_apex_s: float = Field(0.25, gt=0, description="ME if apex - onset <= this (s).")
    combine: Literal["or", "and"] = Field("or", description="How the two criteria combine (CASME II: 'or').")
    use_column: bool = Field(True, description="Use the 'Macro/Micro' column when the file has one; the rule fills only missing labels.")


class CodingConfig(_Section):
    """Reading and validating the MMME coding file."""

    duplicate_policy: Literal["latest", "first", "drop", "keep_all"] = Field(
        "latest",
        description=(
            "Which of several codings of the same expression (same subject, clip and onset) is kept: "
            "'latest' annotation date (a recoding supersedes), 'first' in file order, 'drop' all of them, "
            "'keep_all' (then they are flagged but analysed). Dropped codings go to the exclusion report."
        ),
    )
    duplicate_onset_tolerance_s: float = Field(
        0.3,
        ge=0,
        description=(
            "Codings of the same subject and clip whose [onset, offset] intervals overlap and whose onsets "
            "differ by at most this (s) are codings of one expression, resolved by duplicate_policy. "
            "MMME's public file merges two annotation rounds (238 of its 249 overlapping pairs were "
            "annotated on different days, onsets a median 0.11 s apart). 0 merges only identical onsets."
        ),
    )
    me_rule: MeRule = Field(default_factory=MeRule)
    nominal_fps: float = Field(150.0, gt=0, description="Nominal camera frame rate (Hz) of the face video.")
    fps_tolerance: float = Field(
        0.1, gt=0, lt=1, description="Relative deviation of the effective frame rate from nominal that is reported."
    )
    max_clip_time_s: float = Field(
        90.0, gt=0, description="Clip-relative times beyond this (s) are flagged as outside the clip."
    )


class SimulationConfig(_Section):
    """The embedded synthetic MMME-like study."""

    scale: Literal["ci", "default", "full"] = Field("default", description="Study size: 'ci' (seconds), 'default' (minutes), 'full' (MMME scale).")
    null: bool = Field(
        False,
        description=(
            "Null control study: every population difference between ME and MaE is zero, while each subject keeps "
            "its drawn deviation (between_subject_sd), so single subjects show effects in either direction."
        ),
    )
    between_subject_sd: float = Field(
        1.0, ge=0, le=10,
        description=(
            "Multiplier of the between-subject SDs of every planted ME - MaE difference (ERP, theta, beta, alpha "
            "coupling, facial EMG, heart rate, SCR, respiration; mmme_neuro.simulate.effects): 0 = every subject "
            "has the population effect, 1 = the calibrated spread, 2 = twice it. Studies of different values are "
            "stored apart (data_dir/synthetic/<scale>-seed<seed>[-null]-bsd<value>)."
        ),
    )  # fmt: skip
    eeg_format: Literal["eeglab", "brainvision"] = Field("eeglab", description="Raw EEG format written.")
    seed: int | None = Field(None, description="Seed of the generator; None uses the top-level seed.")


class SyncConfig(_Section):
    """Cross-modal synchronisation of EEG and physiology clocks."""

    min_matched_markers: int = Field(5, ge=2, description="Fewest clip markers shared by both recordings.")
    max_residual_ms: float = Field(2.0, gt=0, description="Largest tolerated marker residual after the offset+drift fit (ms).")


class BidsConfig(_Section):
    """Metadata the conversion writes into the BIDS sidecars (``*_eeg.json``, ``participants.tsv``).

    The defaults describe the MMME recordings: a Neuroscan amplifier (the
    published specifications, 64 unipolar channels, 20 kHz per channel,
    10 GOhm input impedance, CMRR 110 dB, are those of the SynAmps RT) with a
    64-channel Quik-Cap. MMME does not state the online reference: the
    defaults are the Quik-Cap's own REF and GND electrodes; set them if your
    recordings differ. The power-line frequency is ``preprocessing.notch_freq``.
    """

    manufacturer: str = Field("Compumedics Neuroscan", min_length=1, description="EEG amplifier manufacturer (eeg.json Manufacturer).")
    manufacturers_model_name: str = Field("SynAmps RT", min_length=1, description="Amplifier model (eeg.json ManufacturersModelName).")
    cap_manufacturer: str = Field("Compumedics Neuroscan", min_length=1, description="EEG cap manufacturer (eeg.json CapManufacturer).")
    cap_model: str = Field("Quik-Cap 64", min_length=1, description="EEG cap model (eeg.json CapManufacturersModelName).")
    placement_scheme: str = Field(
        "10-10 (extended 10-20; Quik-Cap 64 with the cerebellar sites CB1/CB2)", min_length=1,
        description="Electrode placement scheme (eeg.json EEGPlacementScheme).",
    )
    eeg_reference: str = Field(
        "Quik-Cap REF electrode between CZ and CPZ (the cap's default online reference; not stated by MMME)",
        min_length=1, description="Online reference (eeg.json EEGReference).",
    )
    eeg_ground: str = Field(
        "Quik-Cap GND electrode at AFZ (the cap's default; not stated by MMME)", min_length=1,
        description="Ground electrode (eeg.json EEGGround).",
    )
    participants_file: Path | None = Field(
        None,
        description="Optional participants table (CSV, TSV or XLSX) with a 'participant_id' column (pseudonym: sub-01) or "
        "a 'subject' column (the name as in the coding file: mapped to its pseudonym and never written), and any of "
        "'age' (years), 'sex' (M/F/O), 'handedness' or 'hand' (R/L/A); written to participants.tsv. A relative path is relative "
        "to the working directory.",
    )


class PreprocessingConfig(_Section):
    """EEG preprocessing applied to padded segments around epochs."""

    l_freq: float | None = Field(0.1, gt=0, description="High-pass edge (Hz), > 0; None: no high-pass.")
    h_freq: float | None = Field(45.0, gt=0, description="Low-pass edge (Hz), > 0 and below half of resample_sfreq and of the recording's rate (checked when a recording is preprocessed); None: no low-pass.")
    notch_freq: float | None = Field(50.0, gt=0, description="Mains frequency (Hz), 50 in China; None: no notch.")
    reference: Literal["average", "mastoids"] = Field("average", description="Re-reference: common average or linked mastoids M1/M2.")
    resample_sfreq: float | None = Field(250.0, gt=0, description="Sampling rate (Hz) after preprocessing, > 0; None keeps the original.")
    ica: bool = Field(True, description="Remove ocular (VEO/HEO) ICA components.")
    bad_channels: Literal["interpolate", "exclude"] = Field(
        "interpolate",
        description=(
            "Scalp channels the recording brings bad (marked bad in channels.tsv by the conversion: non-finite "
            "values, flat; non-finite samples found when read; montage channels missing from the recording): "
            "'interpolate' (zero-filled before any filter, then spherical-spline interpolation; at most a quarter "
            "of the scalp channels) or 'exclude' (the subject is excluded from the EEG analyses, the reason naming "
            "the channels)."
        ),
    )  # fmt: skip
    ica_stability_refits: int = Field(
        0, ge=0, le=50,
        description=(
            "Reliability check of the ICA (ICASSO-like): refit it this many times with the seeds seed+1, seed+2, ... "
            "and record in the provenance (and the ERP summary) whether each refit removes the same components "
            "(matched by the correlation of their scalp maps, absolute r >= 0.95) and how much the cleaned EEG differs (µV). "
            "0: off. Each refit costs one more ICA fit (~0.6 s per full-length subject)."
        ),
    )  # fmt: skip

    @model_validator(mode="after")
    def _check_band(self) -> PreprocessingConfig:
        if self.l_freq is not None and self.h_freq is not None and self.l_freq >= self.h_freq:
            raise ValueError(f"l_freq ({self.l_freq} Hz) must be below h_freq ({self.h_freq} Hz)")
        if self.h_freq is not None and self.resample_sfreq is not None and self.h_freq >= self.resample_sfreq / 2:
            raise ValueError(f"h_freq ({self.h_freq} Hz) must be below the Nyquist frequency of resample_sfreq "
                             f"({self.resample_sfreq} Hz / 2 = {self.resample_sfreq / 2} Hz): above it the "
                             "resampled data alias")  # fmt: skip
        if self.ica_stability_refits and not self.ica:
            raise ValueError(f"ica_stability_refits = {self.ica_stability_refits} needs ica = true (there is no ICA "
                             "to check); set ica_stability_refits = 0 or turn the ICA on")  # fmt: skip
        return self


class EpochConfig(_Section):
    """Epochs aligned to expressions.

    The default baseline (-1.0 to -0.5 s) ends well before the coded onset so
    that pre-movement (readiness) activity, which precedes visible facial
    movement by several hundred ms, is not removed as "baseline".
    """

    align: Literal["onset", "apex", "offset"] = Field("onset", description="Expression landmark at t = 0.")
    tmin: float = Field(-1.0, description="Epoch start relative to the landmark (s).")
    tmax: float = Field(1.5, description="Epoch end relative to the landmark (s).")
    baseline: tuple[float, float] | None = Field((-1.0, -0.5), description="Baseline window (s); None: no baseline correction.")
    ne_min_distance_s: float = Field(3.0, ge=0, description="No-expression epochs start at least this far (s) from any coded expression.")
    min_epochs_per_condition: int = Field(3, ge=1, description="Subjects with fewer epochs in a condition are excluded from that contrast (reported).")
    equalize_counts: bool = Field(False, description="Equalise epoch counts across conditions within subject for count-biased estimates.")

    @model_validator(mode="after")
    def _check_window(self) -> EpochConfig:
        if self.tmin >= self.tmax:
            raise ValueError(f"tmin ({self.tmin} s) must be below tmax ({self.tmax} s)")
        if self.baseline is not None:
            b0, b1 = self.baseline
            if not (self.tmin <= b0 < b1 <= self.tmax):
                raise ValueError(f"baseline {self.baseline} must lie inside [tmin, tmax] = [{self.tmin}, {self.tmax}] s with start < end")
        return self


class RejectionConfig(_Section):
    """Per-epoch rejection thresholds (EEG channels, µV)."""

    peak_to_peak_uv: float | None = Field(150.0, gt=0, description="Reject an epoch whose peak-to-peak amplitude exceeds this (µV).")
    flat_uv: float | None = Field(0.5, gt=0, description="Reject an epoch whose peak-to-peak amplitude is below this on any channel (µV).")
    autoreject: Literal["off", "global", "local"] = Field(
        "off",
        description=(
            "Data-driven rejection with autoreject (Jas et al. 2017), learnt per subject on all its epochs and "
            "applied after the fixed thresholds: 'global' rejects epochs above one cross-validated EEG peak-to-peak "
            "threshold; 'local' learns a threshold per channel, interpolates an epoch's bad channels and rejects "
            "epochs with too many (both chosen by cross-validation). Set peak_to_peak_uv = None to use autoreject "
            "alone. Needs at least 5 epochs per subject (else skipped, recorded)."
        ),
    )  # fmt: skip
    autoreject_n_interpolate: tuple[int, ...] = Field(
        (1, 4, 32), min_length=1,
        description=(
            "'local' autoreject: the candidate numbers of bad channels interpolated per epoch, one chosen by "
            "cross-validation (autoreject's default grid; smaller values repair less, e.g. (1, 2, 4))."
        ),
    )  # fmt: skip

    @field_validator("autoreject_n_interpolate")
    @classmethod
    def _positive_counts(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(n < 1 for n in v):
            raise ValueError(f"autoreject_n_interpolate must hold positive channel counts, got {list(v)}")
        return tuple(sorted(set(v)))


class EmgConfig(_Section):
    """Facial-EMG contamination measures stored per epoch."""

    band: tuple[float, float] = Field((30.0, 100.0), description="Band (Hz) of the EMG power measured over temporal channels.")
    temporal_channels: tuple[str, ...] = Field(("FT7", "FT8", "T7", "T8", "TP7", "TP8"), description="EEG channels nearest the facial muscles.")
    contamination_from_hz: float = Field(
        20.0,
        gt=0,
        description=(
            "Lowest frequency (Hz) facial EMG reaches in scalp EEG: every band whose upper edge is above it "
            "(beta, gamma) is EMG-prone at every channel (Goncharova et al. 2003: EMG from ~20 Hz, strongest "
            "at frontal and temporal sites)."
        ),
    )


#: Per-epoch EMG measures of the epoch metadata (:data:`mmme_neuro.epochs.METADATA_COLUMNS`) that
#: ``emg_matching.measure`` may name.
EMG_MEASURES: tuple[str, ...] = (
    "emg_rms_uv",
    "emg_rms_baseline_uv",
    "emg_rms_log_ratio",
    "emg_temporal_power",
    "emg_temporal_power_baseline",
    "emg_temporal_power_log_ratio",
)


class EmgMatchingConfig(_Section):
    """EMG-matched ME vs MaE contrasts: a sensitivity analysis run beside the main one.

    Within each subject, the kept ME and MaE epochs are matched on one per-epoch EMG
    measure (:func:`mmme_neuro.matching.match_emg`); the ERP, time-frequency and network
    analyses then repeat their ME - MaE test on the matched epochs only (re-averaged per
    subject, minimum-count rule applied again) and flag every main-analysis cluster or
    node whose effect disappears (``survives_emg_matching`` in summary.json).
    """

    method: Literal["off", "nearest", "strata"] = Field(
        "nearest",
        description=(
            "'nearest': 1:1 nearest-neighbour matching without replacement within a caliper "
            "(pairs taken "
            "closest first, ties broken by epoch id); 'strata': the subject's ME and MaE epochs "
            "are binned "
            "into n_strata EMG quantile bins and each bin keeps as many ME as MaE epochs (those "
            "nearest the "
            "other condition's bin mean); 'off': no matched analysis."
        ),
    )
    measure: Literal[EMG_MEASURES] = Field(  # type: ignore[valid-type]
        "emg_rms_uv",
        description=(
            "Per-epoch EMG measure matched on (a column of the epoch metadata): the RMS of the "
            "EMG channel "
            "(the covariate of the mixed models) by default; emg_temporal_power is the EMG-band "
            "power "
            "of the temporal scalp channels."
        ),
    )
    caliper_sd: float = Field(
        0.2,
        gt=0,
        description=(
            "'nearest': largest EMG difference of a pair, in units of the subject's pooled "
            "within-condition "
            "SD of the measure (sqrt of the mean of the ME and MaE variances before matching). "
            "It bounds the standardised mean difference after matching: abs(SMD) <= caliper_sd "
            "(Austin 2011: 0.2)."
        ),
    )
    n_strata: int = Field(
        5,
        ge=2,
        le=50,
        description=(
            "'strata': EMG quantile bins per subject (Cochran 1968: five remove ~90 % of the bias)."
        ),
    )


#: Conditions a planned contrast may compare.
_PLANNED_CONDITIONS = ("ME", "MaE", "NE")


def _check_contrast_pair(v: tuple[str, str]) -> tuple[str, str]:
    bad = [c for c in v if c not in _PLANNED_CONDITIONS]
    if bad:
        raise ValueError(
            f"contrast {list(v)}: unknown condition(s) {bad}; use {list(_PLANNED_CONDITIONS)}"
        )
    if v[0] == v[1]:
        raise ValueError(f"contrast {list(v)} compares a condition with itself")
    return v


def _check_sites(v: tuple[str, ...], what: str) -> tuple[str, ...]:
    if not v:
        raise ValueError(f"{what}: at least one is needed")
    unknown = [c for c in v if c not in SCALP_CHANNELS]
    if unknown:
        raise ValueError(
            f"{what}: unknown channel(s) {unknown} (the 62 Quik-Cap scalp channels, e.g. 'CPZ', "
            "'PZ')"
        )
    if len(set(v)) != len(v):
        raise ValueError(f"{what}: duplicate channel(s) in {list(v)}")
    return v


class PlannedErp(_Section):
    """One planned ERP contrast: the mean amplitude over an ROI and a window, tested at the subject
    level."""

    name: str = Field(
        ..., min_length=1, description="Name of the contrast (unique within its list)."
    )
    channels: tuple[str, ...] = Field(..., description="ROI: channels averaged (Quik-Cap names).")
    window_s: tuple[float, float] = Field(
        ..., description="Window (s from the landmark) averaged; inside the epoch."
    )
    contrast: tuple[str, str] = Field(
        ("ME", "MaE"), description="Conditions compared, minuend first."
    )

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _check_sites(v, "channels")

    @field_validator("contrast")
    @classmethod
    def _known_conditions(cls, v: tuple[str, str]) -> tuple[str, str]:
        return _check_contrast_pair(v)

    @field_validator("window_s")
    @classmethod
    def _ordered_window(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] < v[1]:
            raise ValueError(f"window_s {list(v)}: start must be before end")
        return v


class PlannedTfr(PlannedErp):
    """One planned time-frequency contrast: ERSP (dB) averaged over an ROI, a window and a band."""

    band: str = Field(..., description="Band averaged (a key of `bands`, [low, high) Hz).")


class PlannedNetwork(_Section):
    """One planned network contrast: a nodal measure averaged over nodes in one band (0-1.2 s after
    onset)."""

    name: str = Field(
        ..., min_length=1, description="Name of the contrast (unique within its list)."
    )
    nodes: tuple[str, ...] = Field(..., description="Nodes (channels) averaged.")
    band: str = Field(..., description="Band (a key of `bands`).")
    measure: Literal["nodal_efficiency_auc"] = Field(
        "nodal_efficiency_auc",
        description=(
            "Nodal measure: the subject mean of per-epoch nodal-efficiency AUC "
            "(the measure of the node tests)."
        ),
    )
    contrast: tuple[str, str] = Field(
        ("ME", "MaE"), description="Conditions compared, minuend first."
    )

    @field_validator("nodes")
    @classmethod
    def _known_nodes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _check_sites(v, "nodes")

    @field_validator("contrast")
    @classmethod
    def _known_conditions(cls, v: tuple[str, str]) -> tuple[str, str]:
        return _check_contrast_pair(v)


_P3_ROI = ("CP1", "CPZ", "CP2", "P1", "PZ", "P2")


def _default_planned_erp() -> tuple[PlannedErp, ...]:
    return (PlannedErp(name="P3", channels=_P3_ROI, window_s=(0.3, 0.5)),)


def _default_planned_tfr() -> tuple[PlannedTfr, ...]:
    return (
        PlannedTfr(
            name="frontal_theta",
            channels=("F1", "FZ", "F2", "FC1", "FCZ", "FC2"),
            window_s=(0.0, 1.0),
            band="theta",
        ),
        PlannedTfr(
            name="central_beta",
            channels=("C3", "C1", "CZ", "C2", "C4"),
            window_s=(0.0, 1.0),
            band="beta",
        ),
    )


def _default_planned_network() -> tuple[PlannedNetwork, ...]:
    return (
        PlannedNetwork(
            name="alpha_lateral",
            band="alpha",
            nodes=("F3", "FC3", "C3", "CP3", "P3", "F4", "FC4", "C4", "CP4", "P4"),
        ),
    )


class PlannedConfig(_Section):
    """Planned (preregistered) ROI x window (x band) contrasts, tested beside the cluster tests.

    Each analysis averages its subject-level data over every contrast's ROI, window
    (and band), tests the conditions with a paired t-test on subject means
    (:func:`mmme_neuro.stats.planned_contrasts`) and corrects the p-values within its own
    planned family (the contrasts of that analysis). Results: ``planned.csv``, records of
    ``kind: "planned"`` in summary.json, a section of summary.md and the ROI window shaded
    in a figure. Each list is an array of tables in TOML, e.g.
    ``[[planned.erp]]`` / ``name = "N2"`` / ``channels = ["FZ", "FCZ"]`` /
    ``window_s = [0.2, 0.3]``;
    a list given replaces the default list. Defaults: the P3 ROI and window of the ERP
    analysis; frontal theta and central beta (the ROIs of the time-frequency analysis, 0-1 s);
    alpha nodal efficiency of the lateral fronto-centro-parietal nodes.
    """

    correction: Literal[
        "holm", "bonferroni", "sidak", "holm-sidak", "hommel", "fdr_bh", "fdr_by", "none"
    ] = Field(
        "holm",
        description=(
            "Correction within each analysis' planned family (statsmodels multipletests method; "
            "'none': uncorrected)."
        ),
    )
    erp: tuple[PlannedErp, ...] = Field(
        default_factory=_default_planned_erp,
        description="ERP contrasts (name, channels, window_s, contrast): mean amplitude (µV).",
    )
    tfr: tuple[PlannedTfr, ...] = Field(
        default_factory=_default_planned_tfr,
        description=(
            "Time-frequency contrasts (name, channels, window_s, band, contrast): mean ERSP (dB)."
        ),
    )
    network: tuple[PlannedNetwork, ...] = Field(
        default_factory=_default_planned_network,
        description=(
            "Network contrasts (name, nodes, band, measure, contrast): mean nodal efficiency AUC."
        ),
    )

    @model_validator(mode="after")
    def _unique_names(self) -> PlannedConfig:
        for family in ("erp", "tfr", "network"):
            names = [c.name for c in getattr(self, family)]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"planned.{family}: duplicate contrast name(s) {dup}")
        return self


class NetworkConfig(_Section):
    """Functional networks."""

    method: Literal["plv", "ppc", "wpli", "coh"] = Field("plv", description="Connectivity estimator.")
    density_start: float = Field(0.05, gt=0, le=1, description="Lowest edge density of the proportional thresholds.")
    density_stop: float = Field(0.50, gt=0, le=1, description="Highest edge density.")
    density_step: float = Field(0.05, gt=0, le=1, description="Density step.")

    @model_validator(mode="after")
    def _check_densities(self) -> NetworkConfig:
        if self.density_start > self.density_stop:
            raise ValueError("density_start must not exceed density_stop")
        return self

    def densities(self) -> tuple[float, ...]:
        """Return the density grid, rounded to 1e-9."""
        n = int(round((self.density_stop - self.density_start) / self.density_step)) + 1
        return tuple(round(self.density_start + i * self.density_step, 9) for i in range(n))


class StatsConfig(_Section):
    """Statistical testing."""

    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level.")
    n_permutations: int = Field(1000, ge=100, description="Permutations of cluster and permutation tests.")
    cluster_forming_p: float = Field(0.05, gt=0, lt=1, description="Two-sided p of the cluster-forming threshold.")
    fdr_method: Literal["fdr_bh", "fdr_by"] = Field("fdr_bh", description="False-discovery-rate procedure.")


class DecodingConfig(_Section):
    """Decoding (classification) of expression type and emotion from per-epoch features."""

    cv: Literal["loso", "within_subject"] = Field(
        "loso",
        description="Cross-validation: leave-one-subject-out (honest, the default) or stratified k-fold within "
        "each subject (optimistic: labelled so in every output).",
    )
    n_folds: int = Field(10, ge=2, description="Folds of the within-subject cross-validation (fewer when a subject has fewer epochs of a class).")
    classifier: Literal["logreg", "svm", "rf", "gboost"] = Field(
        "logreg", description="Classifier: L2 logistic regression, linear SVM, random forest or gradient boosting (balanced class weights where available)."
    )
    feature_selection: Literal["none", "anova", "rf_importance"] = Field(
        "anova", description="Feature selection fitted inside each training fold: ANOVA F (fast) or random-forest importance (as in the ME literature)."
    )
    n_features: int = Field(40, ge=1, description="Features kept by the selection (all if fewer).")
    n_permutations: int = Field(100, ge=10, description="Label arrangements of the chance-level test (see null); each re-runs the whole cross-validation.")
    null: Literal["relabel_subjects", "shuffle_within_subject"] = Field(
        "relabel_subjects",
        description="Null of the chance-level test: rename each subject's classes by its own random permutation (ME <-> MaE "
        "for a random half of the subjects; keeps every subject's own difference between its classes, so the p holds when "
        "subjects differ) or shuffle labels within subject (kept for comparison: liberal when subjects differ).",
    )
    feature_window: tuple[float, float] = Field((0.0, 1.0), description="Window (s after the landmark) of the band-power (periodogram) features.")
    erp_window_step: float = Field(0.1, gt=0, description="Width (s) of the consecutive ERP mean-amplitude windows from 0.1 s to feature_window end.")
    time_sfreq: float = Field(50.0, gt=0, description="Sampling rate (Hz) of the time-resolved decoding (epochs decimated/averaged to it).")
    time_window: tuple[float, float] = Field((-0.2, 1.0), description="Time span (s) of the time-resolved decoding.")
    n_jobs: int = Field(1, description="Parallel jobs of the permutation test (joblib; -1: all cores). Results do not depend on it.")

    @model_validator(mode="after")
    def _check_windows(self) -> DecodingConfig:
        for name in ("feature_window", "time_window"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise ValueError(f"{name}: start must be before end, got ({lo}, {hi}) s")
        if self.feature_window[1] <= 0.1 + self.erp_window_step - 1e-9:
            raise ValueError("feature_window must end at least one erp_window_step after 0.1 s")
        return self


class RunConfig(_Section):
    """Study-scale runs: parallel per-subject first-level steps with a cache (``mmme_neuro.pipeline``)."""

    workers: int = Field(1, ge=1, description="Local worker processes: dask workers of the per-subject steps (1: in-process, no cluster), "
                         "and at least as many parallel permutations of the decoding test (results do not depend on it).")
    scheduler: str | None = Field(None, description="Address of an existing dask scheduler (e.g. tcp://host:8786); overrides workers.")
    cache: bool = Field(True, description="Reuse per-subject results cached under <paths.derivatives_dir>/first-level when inputs, configuration and version are unchanged. "
                        "false: every subject is computed and no cache is written (intermediate results go to a temporary directory, removed at the end of the run).")
    threads: int = Field(1, description="Threads of one subject's EEG preprocessing (spans read and low-passed, high-pass) (-1: all cores); "
                         "with several workers, workers x threads should not exceed the cores. Results do not depend on it.")

    @field_validator("threads")
    @classmethod
    def _check_threads(cls, v: int) -> int:
        if v == 0 or v < -1:
            raise ValueError(f"threads must be a positive integer or -1 (all cores), got {v}")
        return v


class Config(_Section):
    """Effective configuration of mmme-neuro. All sections have documented defaults."""

    seed: int = Field(42, ge=0, description="Master random seed: same inputs + config + seed give identical results.")
    paths: PathsConfig = Field(default_factory=PathsConfig)
    coding: CodingConfig = Field(default_factory=CodingConfig)
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    bids: BidsConfig = Field(default_factory=BidsConfig)
    bands: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: dict(DEFAULT_BANDS),
        description="Frequency bands (Hz), [low, high). MMME defaults: delta 1-4, theta 4-8, alpha 8-13, beta 13-30, gamma 30-47.",
    )
    preprocessing: PreprocessingConfig = Field(default_factory=PreprocessingConfig)
    epochs: EpochConfig = Field(default_factory=EpochConfig)
    rejection: RejectionConfig = Field(default_factory=RejectionConfig)
    emg: EmgConfig = Field(default_factory=EmgConfig)
    emg_matching: EmgMatchingConfig = Field(default_factory=EmgMatchingConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    stats: StatsConfig = Field(default_factory=StatsConfig)
    planned: PlannedConfig = Field(default_factory=PlannedConfig)
    decoding: DecodingConfig = Field(default_factory=DecodingConfig)
    run: RunConfig = Field(default_factory=RunConfig)

    @field_validator("bands")
    @classmethod
    def _check_bands(cls, bands: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        if not bands:
            raise ValueError("at least one frequency band is needed")
        for name, (lo, hi) in bands.items():
            if not 0 <= lo < hi:
                raise ValueError(f"band {name!r}: need 0 <= low < high, got ({lo}, {hi}) Hz")
        return bands

    def _planned_problem(self, c: Any) -> str | None:
        """Why a planned contrast does not fit this configuration (window outside the epoch,
        unknown band)."""
        ep = self.epochs
        win = getattr(c, "window_s", None)
        if win is not None and not (ep.tmin - 1e-9 <= win[0] and win[1] <= ep.tmax + 1e-9):
            return (
                f"window_s {list(win)} s is not inside the epoch [{ep.tmin}, {ep.tmax}] s "
                "(epochs.tmin, epochs.tmax)"
            )
        band = getattr(c, "band", None)
        if band is not None and band not in self.bands:
            return f"unknown band {band!r}; bands are {sorted(self.bands)}"
        return None

    @model_validator(mode="after")
    def _check_planned(self) -> Config:
        """Planned contrasts given in the configuration: windows inside the epoch, known bands.

        The default lists are not checked here: :meth:`planned_contrasts` leaves out a default
        contrast that a custom epoch window or band set does not hold.
        """
        for family in ("erp", "tfr", "network"):
            if family not in self.planned.model_fields_set:
                continue
            for i, c in enumerate(getattr(self.planned, family)):
                why = self._planned_problem(c)
                if why:
                    raise ValueError(f"planned.{family}[{i}] ({c.name!r}): {why}")
        return self

    def planned_contrasts(self, family: str) -> tuple[Any, ...]:
        """The planned contrasts of one family (``"erp"``, ``"tfr"``, ``"network"``) to run.

        Contrasts given in the configuration are all returned (they were validated); of the
        default list, those whose window or band this configuration does not hold (a shorter
        epoch, other bands) are left out: a custom epoch window never makes the defaults an error.
        """
        if family not in ("erp", "tfr", "network"):
            raise ValueError(f"family must be 'erp', 'tfr' or 'network', got {family!r}")
        items = getattr(self.planned, family)
        if family in self.planned.model_fields_set:
            return tuple(items)
        return tuple(c for c in items if self._planned_problem(c) is None)

    @property
    def simulation_seed(self) -> int:
        """Seed of the synthetic generator (``simulation.seed`` or the master seed)."""
        return self.seed if self.simulation.seed is None else self.simulation.seed

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain JSON/TOML-compatible types (None values dropped)."""
        return _drop_none(self.model_dump(mode="json"))

    def to_toml(self) -> str:
        """Return the configuration as TOML text (loadable by :func:`load_config`)."""
        return tomli_w.dumps(self.to_dict())

    def hash(self) -> str:
        """Return a short, stable hash of the effective configuration (16 hex digits).

        The ``run`` section (workers, scheduler, cache) and ``paths.derivatives_dir``
        are left out: how a run is executed and where its cache goes never
        change its results, so result files written with 1 or 2 workers, or
        with the cache elsewhere, carry the same hash and are identical.
        """
        dump = self.model_dump(mode="json", exclude={"run": True, "paths": {"derivatives_dir"}})
        canonical = json.dumps(dump, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _drop_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_none(v) for v in obj]
    return obj


def load_config(path: str | os.PathLike | None = None, **overrides: Any) -> Config:
    """Load and validate a configuration.

    Parameters
    ----------
    path : path-like | None
        TOML file. None gives the defaults.
    **overrides
        Top-level sections or values that replace those of the file, e.g.
        ``simulation={"scale": "ci"}`` (merged into the section) or ``seed=1``.

    Returns
    -------
    config : Config
        The validated, immutable configuration.

    Raises
    ------
    ConfigError
        If the file is missing, unreadable, not UTF-8, is not valid TOML, or a
        value is invalid; the message names the file and the offending key.
    """
    data: dict[str, Any] = {}
    where = "defaults"
    if path is not None:
        path = Path(path)
        where = str(path)
        if not path.is_file():
            raise ConfigError(f"Configuration file not found: {path}")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
                              "TOML files are UTF-8: save it as UTF-8") from err  # fmt: skip
        except OSError as err:
            raise ConfigError(f"{path}: cannot read the configuration: {err.strerror or err}") from err
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: not valid TOML: {err}") from err
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"])
            lines.append(f"  {loc}: {e['msg']}" if loc else f"  {e['msg']}")
        raise ConfigError(f"Invalid configuration ({where}):\n" + "\n".join(lines)) from err


def _item_model(annotation: Any) -> type[BaseModel] | None:
    """The model of a ``tuple[Model, ...]`` field (a TOML array of tables), else None."""
    args = getattr(annotation, "__args__", ())
    if (
        getattr(annotation, "__origin__", None) is tuple
        and args
        and isinstance(args[0], type)
        and issubclass(args[0], BaseModel)
    ):
        return args[0]
    return None


def config_reference_markdown() -> str:
    """Return the configuration reference (every key, default, description) as Markdown.

    ``docs/configuration.md`` is this text; a test keeps them identical.
    """
    lines = [
        "# Configuration reference",
        "",
        "Generated from `mmme_neuro.config.Config` by `mmme-neuro config doc`; do not edit by hand.",
        "Every key is optional: a missing key takes the default below. Unknown keys are errors.",
        "`mmme-neuro config show` prints the effective configuration as TOML.",
        "",
    ]

    def fmt(value: Any) -> str:
        if isinstance(value, BaseModel):
            return "(section)"
        return "`" + json.dumps(value, default=str) + "`"

    def section(model: type[BaseModel], instance: BaseModel, prefix: str) -> None:
        title = prefix.rstrip(".") or "top level"
        doc = (model.__doc__ or "").strip().split("\n\n")
        lines.extend([f"## `{title}`", "", " ".join(doc[0].split()), ""])
        if len(doc) > 1:
            lines.extend([" ".join(p.split()) for p in doc[1:]] + [""])
        lines.extend(["| key | default | description |", "| --- | --- | --- |"])
        subs, items = [], []
        for name, field in model.model_fields.items():
            value = getattr(instance, name)
            if isinstance(value, BaseModel):
                subs.append((type(value), value, f"{prefix}{name}."))
                continue
            item = _item_model(field.annotation)
            if item is not None:
                items.append((item, f"{prefix}{name}"))
            dumped = instance.model_dump(mode="json")[name]
            lines.append(f"| `{prefix}{name}` | {fmt(dumped)} | {field.description or ''} |")
        lines.append("")
        for item, key in items:
            doc = " ".join((item.__doc__ or "").split())
            lines.extend(
                [
                    f"### Items of `{key}`",
                    "",
                    doc,
                    "",
                    "| key | default | description |",
                    "| --- | --- | --- |",
                ]
            )
            for name, field in item.model_fields.items():
                default = (
                    "required"
                    if field.is_required()
                    else fmt(field.get_default(call_default_factory=True))
                )
                lines.append(f"| `{name}` | {default} | {field.description or ''} |")
            lines.append("")
        for sub in subs:
            section(*sub)

    section(Config, Config(), "")
    return "\n".join(lines)
