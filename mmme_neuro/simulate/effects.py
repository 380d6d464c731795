"""Planted effects of the synthetic study: the ground truth analyses must recover.

Every effect is a function of the expression *condition* (``"ME"``, ``"MaE"``;
no-expression periods get nothing). Amplitudes are in the units of the signal
they are added to (EEG: µV). Times are relative to expression onset (s).

Three levels
------------
**Population.** The dataclass fields hold the population value of each effect
per condition (e.g. :attr:`ErpEffect.amplitude_uv`) and the between-subject SD
of its ME - MaE difference, in the effect's own unit (the ``subject_sd*``
fields), multiplied by :attr:`Effects.between_subject_sd` (the knob:
``0`` = every subject is the population, ``1`` = the calibrated spread).

**Subjects** (:func:`subject_effects`). Subject *j* draws, for every varied
parameter (:func:`varied_parameters`), ``z ~ N(0, 1)`` from its own stream
``subject_rng(seed, j, "effects/<key>")`` and gets the deviation
``delta = z * sd * between_subject_sd`` of its ME - MaE difference, split
symmetrically: ``ME + delta / 2``, ``MaE - delta / 2``. Where a value must stay
physical (RMS and SCR amplitude >= 0, probabilities in [0, 1], relative
changes > -1) both values are shifted by the same amount, which keeps the
difference, and only then clipped (a probability pair cannot always be
shifted). Facial-EMG RMS varies on the log scale (``delta`` is a log ratio).
Because ``z`` does not depend on any effect size, a study and its null
control (:func:`null_effects`) draw the same deviations: the null keeps the
between-subject variation and has population differences of zero, so some
subjects show an effect in one direction and some in the other.

**Expressions** (:func:`expression_effects`). Per expression, drawn from
``subject_rng(seed, j, "effects/expr/<expr_id>")``: the single-trial ERP
amplitude (subject value x ``1 + trial_cv * N(0, 1)``), heart-rate and
breathing responses (likewise, ``hr_trial_cv``, ``rsp_trial_cv``) and the facial-EMG
burst: RMS log-normal around the subject's median for the condition times an
action-unit factor, split over three muscle sites (frontal, left and right
lateral) by the action units' face region. ME and MaE EMG therefore overlap:
some MaE are weaker than some ME.

Calibration
-----------
:func:`realistic_effects` (the dataclass defaults; scales ``default`` and
``full``) sits in the range real recordings show; the sources are named next
to the numbers below. :func:`strong_effects` (scale ``ci``) keeps the old,
much stronger effects with a smaller between-subject spread, so the
planted-effect recovery tests stay decisive on 8 short subjects; see
:func:`effects_for_scale`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..constants import AU_REGION
from .design import subject_rng

if TYPE_CHECKING:  # pragma: no cover
    from .design import SubjectDesign

__all__ = [
    "CouplingEffect",
    "Effects",
    "EmgEffect",
    "ErpEffect",
    "OscillationEffect",
    "PhysioEffect",
    "VariedParameter",
    "effects_for_scale",
    "expression_effects",
    "null_effects",
    "realistic_effects",
    "strong_effects",
    "subject_deviations",
    "subject_effect_values",
    "subject_effects",
    "varied_parameters",
]

CONDITIONS = ("ME", "MaE")

# Sources of the calibration (realistic defaults)
# - Zhao et al. 2022, Front. Neurosci. 16:903448 (ME vs MaE, scalp and source EEG) and
#   Zhao et al. 2022, Front. Psychol. 13:996905 (ME vs NE networks; random-forest selection +
#   SVM 0.81 accuracy): ME and MaE differ in frontal/central activity, no effect sizes given.
#   Chen et al. 2025: 92.6 % ME-vs-MaE accuracy, only after random-forest selection of 15
#   channels (optimistic: selection on the data). Honest leave-one-subject-out decoding
#   from such weak, distributed effects is expected far below that.
# - Condition differences of late positive ERP components are 1-5 µV at the group level,
#   with a between-subject SD of the same size (subject-level dz ~ 0.5-1; Polich 2007,
#   Clin. Neurophysiol. 118:2128 for P3; Hajcak et al. 2010, Dev. Neuropsychol. 35:129 for
#   the LPP), single-trial amplitude variability of ~50 % (trial CV).
# - Event-related frontal-midline theta increases of 1-3 dB (Cavanagh & Frank 2014, Trends
#   Cogn. Sci. 18:414); movement-related central beta desynchronisation of 20-50 % power
#   (Pfurtscheller & Lopes da Silva 1999, Clin. Neurophysiol. 110:1842).
# - Heart-rate deceleration after emotional events: 1-4 bpm (Bradley et al. 2001, Emotion
#   1:276); a public real recording (26 min of ECG, 36 disgust and 36 neutral image onsets)
#   shows a ~2 bpm difference at t = 2-3 over 72 trials.
# - Skin-conductance responses 0.05-0.5 µS, occurring after 30-70 % of emotional events
#   (Boucsein 2012, Electrodermal Activity; Dawson, Schell & Filion 2007).
# - Respiration amplitude changes of 5-20 % during emotional / suppression episodes
#   (Kreibig 2010, Biol. Psychol. 84:394).
# - Facial surface EMG: a few µV above a ~2 µV resting level for subtle expressions, tens
#   of µV for overt ones (zygomaticus, corrugator; Tassinary & Cacioppo 2000, Handbook of
#   Psychophysiology); at scalp sites muscle artefact is broadband (~20-300 Hz), largest at
#   temporal and frontal edge electrodes and decaying towards the vertex (Goncharova et al.
#   2003, Clin. Neurophysiol. 114:1580). No study reports the per-subject ME vs MaE EMG
#   difference; the spread below is an assumption (see EmgEffect).


@dataclass(frozen=True)
class ErpEffect:
    """An expression-locked ERP component (Gaussian-shaped, same sign on all its channels).

    ``amplitude_uv`` is the population amplitude per condition, ``subject_sd_uv``
    the between-subject SD of the ME - MaE difference, ``trial_cv`` the
    single-trial amplitude SD relative to the subject's amplitude.
    """

    channels: tuple[str, ...] = ("CP1", "CPZ", "CP2", "P1", "PZ", "P2")
    latency_s: float = 0.40
    width_s: float = 0.07  # standard deviation of the Gaussian (s)
    # P3/LPP-like: 2.5 µV ME - MaE at the group level (Polich 2007; Hajcak et al. 2010)
    amplitude_uv: dict[str, float] = field(default_factory=lambda: {"ME": 4.0, "MaE": 1.5})
    latency_jitter_s: float = 0.04  # trial-to-trial SD of the latency (s); P3 jitter is tens of ms
    subject_sd_uv: float = 1.5  # between-subject SD of the ME - MaE difference (µV): dz ~ 1
    trial_cv: float = 0.5  # single-trial amplitude SD / subject amplitude


@dataclass(frozen=True)
class OscillationEffect:
    """A change of oscillatory power over channels in a time window after onset.

    ``relative_change`` multiplies the amplitude of a narrow-band oscillation at
    ``freq_hz`` on ``channels``: +1.0 doubles it (power x4), -0.6 leaves 40 %.
    For increases, an expression-locked burst with random phase is added; for
    decreases, the ongoing background rhythm at that frequency is attenuated.
    The window has 100-ms cosine ramps. ``subject_sd`` is the between-subject SD
    of the ME - MaE difference of ``relative_change``.
    """

    name: str
    band: str
    freq_hz: float
    channels: tuple[str, ...]
    window_s: tuple[float, float]
    relative_change: dict[str, float]
    baseline_amplitude_uv: float  # amplitude of the ongoing rhythm on these channels (µV)
    subject_sd: float = 0.0


def _default_oscillations() -> tuple[OscillationEffect, ...]:
    return (
        OscillationEffect(
            name="frontal_theta_increase_ME",
            band="theta",
            freq_hz=6.0,
            channels=("F1", "FZ", "F2", "FC1", "FCZ", "FC2"),
            window_s=(0.2, 0.9),
            # +0.3 / +0.1 amplitude = +2.3 / +0.8 dB on the rhythm (Cavanagh & Frank 2014: 1-3 dB)
            relative_change={"ME": 0.3, "MaE": 0.1},
            baseline_amplitude_uv=3.0,
            subject_sd=0.2,
        ),
        OscillationEffect(
            name="central_beta_decrease_MaE",
            band="beta",
            freq_hz=20.0,
            channels=("C3", "C1", "CZ", "C2", "C4"),
            window_s=(0.0, 1.0),
            # power x0.72 (ME) and x0.49 (MaE, overt movement): Pfurtscheller & Lopes da Silva 1999
            relative_change={"ME": -0.15, "MaE": -0.3},
            baseline_amplitude_uv=3.0,
            subject_sd=0.15,
        ),
    )


@dataclass(frozen=True)
class CouplingEffect:
    """Phase coupling among ``nodes`` in one band after expression onset.

    A common narrow-band signal (random phase per epoch, identical on every
    node up to ``phase_lag_rad``) of amplitude ``amplitude_uv[condition]`` is
    added to each node in ``window_s``. Nodes outside the set get nothing, so
    their phase-locking values and nodal efficiency are unchanged.
    ``subject_sd_uv`` is the between-subject SD of the ME - MaE amplitude difference.
    """

    band: str = "alpha"
    freq_hz: float = 10.0
    bandwidth_hz: float = 2.0
    nodes: tuple[str, ...] = ("F3", "FC3", "C3", "CP3", "P3", "F4", "FC4", "C4", "CP4", "P4")
    window_s: tuple[float, float] = (0.0, 1.2)
    # a common 10-Hz component of 1-2 µV: within-epoch PLV changes of a few hundredths (Zhao et al. 2022)
    amplitude_uv: dict[str, float] = field(default_factory=lambda: {"ME": 2.0, "MaE": 1.0})
    phase_lag_rad: float = 0.3  # max lag between nodes (volume conduction gives 0 lag)
    subject_sd_uv: float = 1.0


def _default_emg_sites() -> dict[str, tuple[str, ...]]:
    return {"frontal": ("FP1", "FPZ", "FP2"), "left": ("FT7", "T7"), "right": ("FT8", "T8")}


@dataclass(frozen=True)
class EmgEffect:
    """Facial-muscle (EMG) bursts from expression onset to offset (+ ``tail_s``).

    Each expression activates three muscle sites (``channels``: site name ->
    EEG channels at the site): ``frontal`` (frontalis, corrugator: upper-face
    action units) and ``left``/``right`` (zygomaticus, risorius, masseter:
    mid/lower-face units, each side with its own weight). Each site is an
    independent broadband (``band_hz``) noise source whose leakage into the
    EEG decays with the distance ``d`` from the site's channels as
    ``exp(-d**2 / (2 * spread_mm**2))`` (1 on the site's channels, so
    neighbouring channels share a source and are correlated). The EMG channel
    records all sites (``emg_channel_gain`` x the burst RMS). Physiology:
    EMG A (corrugator) follows the frontal site, EMG B (zygomaticus) the lateral ones.

    Burst RMS ``r`` of one expression (µV; all sites together: the EMG channel
    gets ``emg_channel_gain * r``, site ``k`` the share ``w_k / sqrt(sum(w**2))``
    of it on its channels): ``rms_uv[condition]`` (population median of a
    typical two-AU expression) x subject gain ``exp(N(0, subject_gain_sd_log))``
    x subject deviation ``exp(+-delta / 2)``, ``delta ~ N(0, subject_sd_log)``
    (log ME/MaE ratio) x action-unit factor x ``exp(N(0, expression_sd_log))``.

    With the defaults the median MaE burst is 2.7 x the median ME burst, but
    a random ME burst is stronger than a random MaE burst of the same subject
    about one time in six (expression SD 0.7 on the log scale: facial-EMG
    amplitude varies several-fold between repetitions of the same expression,
    Tassinary & Cacioppo 2000); the subjects' median ratios vary (SD 0.5 on the
    log scale), so with MMME's ~6 ME per subject the observed subject means are
    about equal or reversed in some subjects, and the subject-level dz of the
    MaE - ME EMG difference is ~1-2 (the default study: 1.7 on the EMG channel,
    1.3 for temporal 30-100 Hz power), not the near-perfect separation of a
    fixed RMS per condition (dz ~ 50-70). The spread is an assumption: no study
    reports per-subject ME vs MaE facial EMG; a dz of 1-2 means a large,
    consistent but not universal difference, the range of within-subject facial-EMG
    condition effects (e.g. corrugator to negative vs neutral pictures).
    """

    channels: dict[str, tuple[str, ...]] = field(default_factory=_default_emg_sites)
    spread_mm: float = 28.0
    band_hz: tuple[float, float] = (20.0, 150.0)  # broadband from 20 Hz (Goncharova et al. 2003)
    rms_uv: dict[str, float] = field(default_factory=lambda: {"ME": 3.0, "MaE": 8.0})
    emg_channel_gain: float = 5.0  # facial EMG electrode: 15 / 40 µV median bursts
    tail_s: float = 0.1
    subject_sd_log: float = 0.5  # between-subject SD of the log ME/MaE RMS ratio
    subject_gain_sd_log: float = 0.4  # between-subject SD of the log EMG gain (both conditions)
    expression_sd_log: float = 0.7  # expression-to-expression SD of the log RMS


@dataclass(frozen=True)
class PhysioEffect:
    """Physiological responses after expression onset (physiology clock).

    Heart rate: a smooth deceleration of ``hr_change_bpm`` peaking at
    ``hr_peak_s`` (gamma-shaped, back to baseline by ~3x the peak time).
    EDA: a skin-conductance response with probability ``scr_probability``,
    latency uniform in ``scr_latency_s`` and amplitude ``scr_amplitude_us``.
    Respiration: the breathing amplitude is multiplied by
    ``1 + rsp_amplitude_change`` during ``rsp_window_s``. The ``*_subject_sd``
    fields are the between-subject SDs of the ME - MaE differences.
    """

    # deceleration difference of 2 bpm (Bradley et al. 2001; the real recording: ~2 bpm
    # at t = 2-3 over 72 trials, i.e. a single-trial d of ~0.6, which hr_trial_cv reproduces)
    hr_change_bpm: dict[str, float] = field(default_factory=lambda: {"ME": -4.0, "MaE": -2.0})
    hr_peak_s: float = 2.5
    # SCR after 50 % / 45 % of expressions, 0.2 / 0.15 µS (Boucsein 2012; Dawson et al. 2007)
    scr_probability: dict[str, float] = field(default_factory=lambda: {"ME": 0.5, "MaE": 0.45})
    scr_amplitude_us: dict[str, float] = field(default_factory=lambda: {"ME": 0.2, "MaE": 0.15})
    scr_latency_s: tuple[float, float] = (1.0, 3.0)
    # breathing amplitude -10 % / -6 % (Kreibig 2010)
    rsp_amplitude_change: dict[str, float] = field(default_factory=lambda: {"ME": -0.10, "MaE": -0.06})
    rsp_window_s: tuple[float, float] = (0.5, 6.0)
    hr_subject_sd_bpm: float = 1.5
    scr_probability_subject_sd: float = 0.15
    scr_amplitude_subject_sd_us: float = 0.1
    rsp_subject_sd: float = 0.08
    # single-trial variability: response x (1 + cv N(0, 1)); SCR amplitude x log-normal (mean 1)
    hr_trial_cv: float = 1.0
    rsp_trial_cv: float = 1.0
    scr_amplitude_sd_log: float = 0.7  # SCR amplitudes vary several-fold between trials (Boucsein 2012)


@dataclass(frozen=True)
class Effects:
    """All planted effects of a synthetic study.

    Attributes
    ----------
    between_subject_sd : float
        Multiplier of every between-subject SD (``0``: all subjects equal the
        population; ``1``: the calibrated spread; ``2``: twice it).
    null : bool
        True for a null control (:func:`null_effects`).
    drawn_for_subject : int | None
        None for population effects; the subject index for the values
        :func:`subject_effects` drew (then they are not drawn again).
    """

    erp: ErpEffect = field(default_factory=ErpEffect)
    oscillations: tuple[OscillationEffect, ...] = field(default_factory=_default_oscillations)
    coupling: CouplingEffect = field(default_factory=CouplingEffect)
    emg: EmgEffect = field(default_factory=EmgEffect)
    physio: PhysioEffect = field(default_factory=PhysioEffect)
    between_subject_sd: float = 1.0
    null: bool = False
    drawn_for_subject: int | None = None

    def __post_init__(self) -> None:
        if not (np.isfinite(self.between_subject_sd) and self.between_subject_sd >= 0):
            raise ValueError(f"between_subject_sd must be a finite number >= 0, got {self.between_subject_sd}")

    def to_dict(self) -> dict[str, Any]:
        """Return the effects as JSON-compatible types."""
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- presets


def realistic_effects() -> Effects:
    """Effects of the size real recordings show (the dataclass defaults; scales ``default``, ``full``)."""
    return Effects()


def strong_effects() -> Effects:
    """The strong effects of the ``ci`` scale (fast tests on 8 short subjects).

    Population effects several times the realistic ones (ERP 6 vs 1.5 µV,
    frontal theta +150 % for ME, central beta -70 % for MaE, alpha coupling
    8 µV (nodal efficiency of 8 subjects must survive a max-statistic
    correction over 62 nodes despite the spread), EMG 6 vs 18 µV (MaE EMG
    power twice ME's over the temporal channels even in two subjects), HR -8
    vs -3 bpm, SCR 0.9 / 0.5 at 0.6 / 0.25 µS, respiration -40 % / -10 %)
    with between-subject SDs of a fifth to a quarter of each difference and
    smaller single-trial variability, so nearly every subject shows the
    planted direction and the recovery tests are decisive. Not a realistic
    study: see :func:`realistic_effects`.
    """
    base = Effects()
    theta, beta = _default_oscillations()
    return Effects(
        erp=dataclasses.replace(base.erp, amplitude_uv={"ME": 6.0, "MaE": 1.5}, latency_jitter_s=0.02,
                                subject_sd_uv=1.0, trial_cv=0.3),
        oscillations=(
            dataclasses.replace(theta, relative_change={"ME": 1.5, "MaE": 0.0}, subject_sd=0.3),
            dataclasses.replace(beta, relative_change={"ME": 0.0, "MaE": -0.7}, subject_sd=0.1),
        ),
        coupling=dataclasses.replace(base.coupling, amplitude_uv={"ME": 8.0, "MaE": 0.0}, subject_sd_uv=1.5),
        emg=dataclasses.replace(base.emg, rms_uv={"ME": 6.0, "MaE": 18.0}, subject_sd_log=0.25,
                                subject_gain_sd_log=0.3, expression_sd_log=0.4),
        physio=dataclasses.replace(
            base.physio, hr_change_bpm={"ME": -8.0, "MaE": -3.0}, scr_probability={"ME": 0.9, "MaE": 0.5},
            scr_amplitude_us={"ME": 0.6, "MaE": 0.25}, rsp_amplitude_change={"ME": -0.4, "MaE": -0.1},
            hr_subject_sd_bpm=1.0, scr_probability_subject_sd=0.1, scr_amplitude_subject_sd_us=0.08,
            rsp_subject_sd=0.06, hr_trial_cv=0.3, rsp_trial_cv=0.3, scr_amplitude_sd_log=0.25,
        ),
    )  # fmt: skip


#: Effect preset of each scale preset name (:attr:`mmme_neuro.simulate.scales.Scale.effects`).
PRESETS = {"realistic": realistic_effects, "strong": strong_effects}


def effects_for_scale(scale: Any) -> Effects:
    """The planted effects of a scale: ``strong`` for ``ci``, ``realistic`` for ``default`` and ``full``.

    Parameters
    ----------
    scale : str | Scale
        A scale name or :class:`~mmme_neuro.simulate.scales.Scale`.
    """
    from .scales import get_scale

    return PRESETS[get_scale(scale).effects]()


def _zero(d: dict[str, float]) -> dict[str, float]:
    return {k: 0.0 for k in d}


def null_effects(base: Effects | None = None) -> Effects:
    """Return ``base`` (default: :class:`Effects`) with every population difference set to zero.

    ERP, oscillation, coupling and physiological responses are zero in the
    population; facial EMG bursts stay (they are part of any expression) with
    the same population RMS for ME and MaE (the geometric mean of the two).
    Every between-subject SD and the per-expression variability are kept: each
    subject still draws its own ME - MaE deviation (the same as in ``base``
    with the same seed), so individual subjects show effects in either
    direction while the population has none.
    """
    base = base or Effects()
    if base.drawn_for_subject is not None:
        raise ValueError("null_effects needs population effects, not a subject's drawn effects")
    emg_rms = float(np.exp(np.mean(np.log(list(base.emg.rms_uv.values())))))
    p = base.physio
    return dataclasses.replace(
        base,
        erp=dataclasses.replace(base.erp, amplitude_uv=_zero(base.erp.amplitude_uv)),
        oscillations=tuple(
            dataclasses.replace(o, relative_change=_zero(o.relative_change)) for o in base.oscillations
        ),
        coupling=dataclasses.replace(base.coupling, amplitude_uv=_zero(base.coupling.amplitude_uv)),
        emg=dataclasses.replace(base.emg, rms_uv={k: emg_rms for k in base.emg.rms_uv}),
        physio=dataclasses.replace(
            p,
            hr_change_bpm=_zero(p.hr_change_bpm),
            scr_probability=_zero(p.scr_probability),
            scr_amplitude_us=_zero(p.scr_amplitude_us),
            rsp_amplitude_change=_zero(p.rsp_amplitude_change),
        ),
        null=True,
    )


# --------------------------------------------------------------------------- between-subject variation


@dataclass(frozen=True)
class VariedParameter:
    """One parameter that varies between subjects.

    Attributes
    ----------
    key : str
        Dotted name: ``erp.amplitude_uv``, ``oscillations.<name>.relative_change``,
        ``coupling.amplitude_uv``, ``emg.rms_uv``, ``physio.<field>``.
    population : dict
        Population value per condition.
    sd : float
        Between-subject SD of the ME - MaE difference, multiplier applied (own
        unit; natural-log units when ``log``).
    unit : str
        Unit of the values.
    lower, upper : float | None
        Physical range of the values (None: unbounded).
    log : bool
        The deviation applies to the log of the values (EMG RMS).
    """

    key: str
    population: dict[str, float]
    sd: float
    unit: str
    lower: float | None = None
    upper: float | None = None
    log: bool = False

    def difference(self, values: dict[str, float]) -> float:
        """ME - MaE difference of ``values`` (natural-log ratio when ``log``)."""
        me, mae = float(values["ME"]), float(values["MaE"])
        if self.log:
            return float(np.log(me / mae)) if me > 0 and mae > 0 else float("nan")
        return me - mae

    def realise(self, delta: float) -> dict[str, float]:
        """The values of a subject with deviation ``delta`` of the ME - MaE difference."""
        vals = {k: float(v) for k, v in self.population.items()}
        if not all(c in vals for c in CONDITIONS):
            return vals
        me, mae = vals["ME"], vals["MaE"]
        if self.log:
            if me <= 0 or mae <= 0:
                return vals
            vals["ME"], vals["MaE"] = me * float(np.exp(delta / 2)), mae * float(np.exp(-delta / 2))
            return vals
        me, mae = me + delta / 2, mae - delta / 2
        if self.lower is not None and min(me, mae) < self.lower:  # shift up: the difference stays
            up = self.lower - min(me, mae)
            me, mae = me + up, mae + up
        if self.upper is not None and max(me, mae) > self.upper:  # shift down
            down = max(me, mae) - self.upper
            if self.lower is not None:
                down = min(down, min(me, mae) - self.lower)
            me, mae = me - down, mae - down
        lo = -np.inf if self.lower is None else self.lower
        hi = np.inf if self.upper is None else self.upper
        vals["ME"], vals["MaE"] = float(np.clip(me, lo, hi)), float(np.clip(mae, lo, hi))
        return vals


_REL_FLOOR = -0.95  # relative changes stay above -1 (a rhythm or breathing never vanishes)


def varied_parameters(effects: Effects) -> list[VariedParameter]:
    """Every parameter that varies between subjects, with its SD (multiplier applied)."""
    m = effects.between_subject_sd
    e, c, g, p = effects.erp, effects.coupling, effects.emg, effects.physio
    out = [VariedParameter("erp.amplitude_uv", dict(e.amplitude_uv), m * e.subject_sd_uv, "µV")]
    for o in effects.oscillations:
        out.append(VariedParameter(f"oscillations.{o.name}.relative_change", dict(o.relative_change),
                                   m * o.subject_sd, "relative amplitude change", lower=_REL_FLOOR))  # fmt: skip
    out += [
        VariedParameter("coupling.amplitude_uv", dict(c.amplitude_uv), m * c.subject_sd_uv, "µV", lower=0.0),
        VariedParameter("emg.rms_uv", dict(g.rms_uv), m * g.subject_sd_log, "µV", log=True),
        VariedParameter("physio.hr_change_bpm", dict(p.hr_change_bpm), m * p.hr_subject_sd_bpm, "beats/min"),
        VariedParameter("physio.scr_probability", dict(p.scr_probability), m * p.scr_probability_subject_sd,
                        "probability", lower=0.0, upper=1.0),
        VariedParameter("physio.scr_amplitude_us", dict(p.scr_amplitude_us), m * p.scr_amplitude_subject_sd_us,
                        "µS", lower=0.0),
        VariedParameter("physio.rsp_amplitude_change", dict(p.rsp_amplitude_change), m * p.rsp_subject_sd,
                        "relative amplitude change", lower=_REL_FLOOR),
    ]  # fmt: skip
    return out


def subject_deviations(effects: Effects, subject_index: int, seed: int) -> dict[str, float]:
    """Subject ``subject_index``'s deviation of every ME - MaE difference (own units; log for EMG).

    Each parameter has its own stream ``"effects/<key>"``: adding an effect
    never shifts the draws of the others, and the draws do not depend on the
    effect sizes (a study and its null control share them).
    """
    if effects.drawn_for_subject is not None:
        raise ValueError("subject_deviations needs population effects, not a subject's drawn effects")
    out = {}
    for prm in varied_parameters(effects):
        z = float(subject_rng(seed, subject_index, f"effects/{prm.key}").standard_normal())
        out[prm.key] = z * prm.sd
    return out


def _emg_gain(effects: Effects, subject_index: int, seed: int) -> float:
    """Subject's EMG gain (both conditions: muscle mass, electrode distance), log-normal, median 1."""
    z = float(subject_rng(seed, subject_index, "effects/emg.gain").standard_normal())
    return float(np.exp(z * effects.emg.subject_gain_sd_log * effects.between_subject_sd))


def _with_values(effects: Effects, key: str, values: dict[str, float]) -> Effects:
    parts = key.split(".")
    if parts[0] == "oscillations":
        osc = tuple(dataclasses.replace(o, relative_change=values) if o.name == parts[1] else o
                    for o in effects.oscillations)  # fmt: skip
        return dataclasses.replace(effects, oscillations=osc)
    sub = getattr(effects, parts[0])
    return dataclasses.replace(effects, **{parts[0]: dataclasses.replace(sub, **{parts[1]: values})})


def _values(effects: Effects, key: str) -> dict[str, float]:
    parts = key.split(".")
    if parts[0] == "oscillations":
        return dict(next(o for o in effects.oscillations if o.name == parts[1]).relative_change)
    return dict(getattr(getattr(effects, parts[0]), parts[1]))


def subject_effects(effects: Effects, subject_index: int, seed: int) -> Effects:
    """The effects of one subject: population values plus the subject's drawn deviations.

    Used by every generator (EEG, physiology, heartbeat timeline) so the
    modalities of one subject share one set of values. Pure and
    deterministic in ``(effects, subject_index, seed)``. The subject's EMG
    gain multiplies both EMG RMS values.

    Parameters
    ----------
    effects : Effects
        Population effects (returned unchanged if already drawn for this subject).
    subject_index : int
        0-based subject index.
    seed : int
        Study seed.

    Returns
    -------
    effects : Effects
        With ``drawn_for_subject = subject_index``.
    """
    if effects.drawn_for_subject is not None:
        if effects.drawn_for_subject != subject_index:
            raise ValueError(f"effects were drawn for subject {effects.drawn_for_subject}, not {subject_index}")
        return effects
    dev = subject_deviations(effects, subject_index, seed)
    out = effects
    for prm in varied_parameters(effects):
        vals = prm.realise(dev[prm.key])
        if prm.key == "emg.rms_uv":
            gain = _emg_gain(effects, subject_index, seed)
            vals = {k: v * gain for k, v in vals.items()}
        out = _with_values(out, prm.key, vals)
    return dataclasses.replace(out, drawn_for_subject=subject_index)


def subject_effect_values(effects: Effects, subject_index: int, seed: int) -> dict[str, dict[str, float]]:
    """A subject's drawn effects as JSON-ready values (``ground_truth.json``, ``subjects[i]["effects"]``).

    Returns
    -------
    values : dict
        Per varied parameter key: ``ME`` and ``MaE`` (the subject's values),
        ``difference`` (ME - MaE; natural-log ratio for ``emg.rms_uv``) and
        ``deviation`` (the drawn deviation of the difference from the population
        one, before any shift into the physical range). ``emg.gain`` holds the
        subject's EMG gain (already in its ``emg.rms_uv``).
    """
    dev = subject_deviations(effects, subject_index, seed)
    drawn = subject_effects(effects, subject_index, seed)
    out: dict[str, dict[str, float]] = {}
    for prm in varied_parameters(effects):
        vals = _values(drawn, prm.key)
        out[prm.key] = {"ME": vals.get("ME", float("nan")), "MaE": vals.get("MaE", float("nan")),
                        "difference": prm.difference(vals), "deviation": dev[prm.key]}  # fmt: skip
    out["emg.gain"] = {"value": _emg_gain(effects, subject_index, seed)}
    return out


def population_summary(effects: Effects) -> dict[str, Any]:
    """The varied parameters of the population (``ground_truth.json``, ``between_subject``)."""
    params = {}
    for prm in varied_parameters(effects):
        params[prm.key] = {"population": prm.population, "population_difference": prm.difference(prm.population),
                           "sd": prm.sd, "unit": prm.unit, "log": prm.log, "lower": prm.lower, "upper": prm.upper}  # fmt: skip
    params["emg.gain"] = {"sd": effects.emg.subject_gain_sd_log * effects.between_subject_sd, "log": True,
                          "unit": "factor"}  # fmt: skip
    return {"sd_multiplier": effects.between_subject_sd, "parameters": params}


# --------------------------------------------------------------------------- per expression

#: Relative EMG of each action unit's muscles (1 = corrugator, AU4). Larger muscles / wider
#: movements give larger surface EMG (zygomaticus major, jaw); small or mostly passive movements
#: (upper lid raiser, lip corner depressor) less. Illustrative values (an assumption, like the
#: spread in :class:`EmgEffect`); they make the EMG depend on the action units coded.
AU_EMG_GAIN: dict[int, float] = {
    1: 0.8, 2: 0.8, 4: 1.0, 5: 0.6, 6: 1.1, 7: 0.9, 9: 1.1, 10: 1.0, 12: 1.4, 14: 0.8,
    15: 0.8, 17: 1.0, 20: 0.9, 23: 1.0, 24: 1.0, 25: 1.2, 26: 1.3,
}  # fmt: skip


def _aus(aus: str) -> list[int]:
    return [int(a.strip()[2:]) for a in str(aus).split(",") if a.strip().upper().startswith("AU") and a.strip()[2:].isdigit()]


def au_emg_factor(aus: str) -> float:
    """EMG factor of an expression's action units: ``sqrt(sum(gain**2) / 2)`` (1 for two AU4-like units)."""
    nums = _aus(aus)
    if not nums:
        return 1.0
    return float(np.sqrt(sum(AU_EMG_GAIN.get(a, 1.0) ** 2 for a in nums) / 2.0))


def face_weights(aus: str) -> tuple[float, float]:
    """Upper-face (frontal site, EMG A) and mid/lower-face (lateral sites, EMG B) weights of an AU list."""
    regions = {AU_REGION.get(a, "") for a in _aus(aus)}
    upper = "upper" in regions
    lower = bool(regions & {"mid", "lower"})
    return (1.0 if upper else 0.3), (1.0 if lower else 0.3)


#: Columns of :func:`expression_effects`.
EXPRESSION_COLUMNS = ("expr_id", "erp_amplitude_uv", "emg_rms_uv", "emg_w_frontal", "emg_w_left", "emg_w_right",
                      "hr_change_bpm", "rsp_amplitude_change")  # fmt: skip


def expression_effects(subject: SubjectDesign, effects: Effects, seed: int) -> pd.DataFrame:
    """Single-trial values of every expression of a subject (one row per expression, design order).

    Parameters
    ----------
    subject : SubjectDesign
        The subject (expressions with ``kind``, ``aus``, ``recorded``).
    effects : Effects
        Population effects (the subject's values are drawn here) or the subject's drawn effects.
    seed : int
        Study seed.

    Returns
    -------
    table : pandas.DataFrame
        ``expr_id``; ``erp_amplitude_uv`` (peak of this trial's ERP component,
        µV); ``emg_rms_uv`` (RMS of the burst, all sites together, µV; the EMG
        channel gets ``emg_channel_gain`` times it);
        ``emg_w_frontal``, ``emg_w_left``, ``emg_w_right`` (site weights, the
        largest is 1); ``hr_change_bpm`` (peak heart-rate response, bpm) and
        ``rsp_amplitude_change`` (relative breathing-amplitude change, > -1).
        Zero for expressions that are not recorded (nothing is planted for
        them). The draws (stream ``"effects/expr/<expr_id>"``) do not depend
        on the effect sizes.
    """
    drawn = subject_effects(effects, subject.index, seed)
    ex = subject.expressions
    n = len(ex)
    out = {c: np.zeros(n) for c in EXPRESSION_COLUMNS[1:]}
    e, g, p = drawn.erp, drawn.emg, drawn.physio
    for i, (eid, kind, aus, rec) in enumerate(zip(ex.expr_id, ex.kind, ex.aus, ex.recorded, strict=True)):
        rng = subject_rng(seed, subject.index, f"effects/expr/{eid}")
        z_erp, z_emg = rng.standard_normal(2)
        asym = rng.uniform(0.6, 1.0, size=2)
        z_hr, z_rsp = rng.standard_normal(2)
        if not rec:
            continue
        out["hr_change_bpm"][i] = p.hr_change_bpm.get(kind, 0.0) * (1.0 + p.hr_trial_cv * z_hr)
        out["rsp_amplitude_change"][i] = max(p.rsp_amplitude_change.get(kind, 0.0) * (1.0 + p.rsp_trial_cv * z_rsp),
                                             _REL_FLOOR)  # fmt: skip
        out["erp_amplitude_uv"][i] = e.amplitude_uv.get(kind, 0.0) * (1.0 + e.trial_cv * z_erp)
        out["emg_rms_uv"][i] = (g.rms_uv.get(kind, 0.0) * au_emg_factor(aus)
                                * np.exp(g.expression_sd_log * z_emg))  # fmt: skip
        upper, lower = face_weights(aus)
        w = np.array([upper, lower * asym[0], lower * asym[1]])
        w /= w.max()
        out["emg_w_frontal"][i], out["emg_w_left"][i], out["emg_w_right"][i] = w
    table = pd.DataFrame({"expr_id": ex.expr_id.to_numpy(dtype=str), **out})
    return table
