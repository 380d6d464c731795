"""Planted effects of the synthetic study: the ground truth analyses must recover.

Every effect is a function of the expression *condition* (``"ME"``, ``"MaE"``;
no-expression periods get nothing). :func:`null_effects` returns the same
structure with every condition difference removed: the null control study.

Amplitudes are in the units of the signal they are added to (EEG: µV).
Times are relative to expression onset (s).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ErpEffect:
    """An expression-locked ERP component (Gaussian-shaped, same sign on all its channels)."""

    channels: tuple[str, ...] = ("CP1", "CPZ", "CP2", "P1", "PZ", "P2")
    latency_s: float = 0.40
    width_s: float = 0.07  # standard deviation of the Gaussian (s)
    amplitude_uv: dict[str, float] = field(default_factory=lambda: {"ME": 6.0, "MaE": 1.5})
    latency_jitter_s: float = 0.02  # trial-to-trial SD of the latency (s)


@dataclass(frozen=True)
class OscillationEffect:
    """A change of oscillatory power over channels in a time window after onset.

    ``relative_change`` multiplies the amplitude of a narrow-band oscillation at
    ``freq_hz`` on ``channels``: +1.0 doubles it (power x4), -0.6 leaves 40 %.
    For increases, an expression-locked burst with random phase is added; for
    decreases, the ongoing background rhythm at that frequency is attenuated.
    The window has 100-ms cosine ramps.
    """

    name: str
    band: str
    freq_hz: float
    channels: tuple[str, ...]
    window_s: tuple[float, float]
    relative_change: dict[str, float]
    baseline_amplitude_uv: float  # amplitude of the ongoing rhythm on these channels (µV)


def _default_oscillations() -> tuple[OscillationEffect, ...]:
    return (
        OscillationEffect(
            name="frontal_theta_increase_ME",
            band="theta",
            freq_hz=6.0,
            channels=("F1", "FZ", "F2", "FC1", "FCZ", "FC2"),
            window_s=(0.2, 0.9),
            relative_change={"ME": 1.5, "MaE": 0.0},
            baseline_amplitude_uv=3.0,
        ),
        OscillationEffect(
            name="central_beta_decrease_MaE",
            band="beta",
            freq_hz=20.0,
            channels=("C3", "C1", "CZ", "C2", "C4"),
            window_s=(0.0, 1.0),
            relative_change={"ME": 0.0, "MaE": -0.7},
            baseline_amplitude_uv=3.0,
        ),
    )


@dataclass(frozen=True)
class CouplingEffect:
    """Phase coupling among ``nodes`` in one band after ME onset.

    A common narrow-band signal (random phase per epoch, identical on every
    node up to ``phase_lag_rad``) of amplitude ``amplitude_uv[condition]`` is
    added to each node in ``window_s``. Nodes outside the set get nothing, so
    their phase-locking values and nodal efficiency are unchanged.
    """

    band: str = "alpha"
    freq_hz: float = 10.0
    bandwidth_hz: float = 2.0
    nodes: tuple[str, ...] = ("F3", "FC3", "C3", "CP3", "P3", "F4", "FC4", "C4", "CP4", "P4")
    window_s: tuple[float, float] = (0.0, 1.2)
    amplitude_uv: dict[str, float] = field(default_factory=lambda: {"ME": 6.0, "MaE": 0.0})
    phase_lag_rad: float = 0.3  # max lag between nodes (volume conduction gives 0 lag)


@dataclass(frozen=True)
class EmgEffect:
    """Facial-muscle (EMG) bursts from expression onset to offset (+ ``tail_s``).

    Broadband (``band_hz``) noise with RMS ``rms_uv[condition]`` on the EMG
    channel, scaled by ``scalp_gain`` on the temporal scalp channels.
    """

    channels: tuple[str, ...] = ("FT7", "FT8", "T7", "T8", "TP7", "TP8")
    band_hz: tuple[float, float] = (30.0, 120.0)
    rms_uv: dict[str, float] = field(default_factory=lambda: {"ME": 4.0, "MaE": 12.0})
    emg_channel_gain: float = 5.0
    scalp_gain: float = 1.0
    tail_s: float = 0.1


@dataclass(frozen=True)
class PhysioEffect:
    """Physiological responses after expression onset (physiology clock).

    Heart rate: a smooth deceleration of ``hr_change_bpm`` peaking at
    ``hr_peak_s`` (gamma-shaped, back to baseline by ~3x the peak time).
    EDA: a skin-conductance response with probability ``scr_probability``,
    latency uniform in ``scr_latency_s`` and amplitude ``scr_amplitude_us``.
    Respiration: the breathing amplitude is multiplied by
    ``1 + rsp_amplitude_change`` during ``rsp_window_s``.
    """

    hr_change_bpm: dict[str, float] = field(default_factory=lambda: {"ME": -8.0, "MaE": -3.0})
    hr_peak_s: float = 2.5
    scr_probability: dict[str, float] = field(default_factory=lambda: {"ME": 0.9, "MaE": 0.5})
    scr_amplitude_us: dict[str, float] = field(default_factory=lambda: {"ME": 0.6, "MaE": 0.25})
    scr_latency_s: tuple[float, float] = (1.0, 3.0)
    rsp_amplitude_change: dict[str, float] = field(default_factory=lambda: {"ME": -0.4, "MaE": -0.1})
    rsp_window_s: tuple[float, float] = (0.5, 6.0)


@dataclass(frozen=True)
class Effects:
    """All planted effects of a synthetic study."""

    erp: ErpEffect = field(default_factory=ErpEffect)
    oscillations: tuple[OscillationEffect, ...] = field(default_factory=_default_oscillations)
    coupling: CouplingEffect = field(default_factory=CouplingEffect)
    emg: EmgEffect = field(default_factory=EmgEffect)
    physio: PhysioEffect = field(default_factory=PhysioEffect)
    null: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the effects as JSON-compatible types."""
        return dataclasses.asdict(self)


def _zero(d: dict[str, float]) -> dict[str, float]:
    return {k: 0.0 for k in d}


def null_effects(base: Effects | None = None) -> Effects:
    """Return ``base`` (default: :class:`Effects`) with no condition difference planted.

    ERP, oscillation, coupling and physiological responses are zero; facial
    EMG bursts stay (they are part of any expression) but have the same RMS
    for ME and MaE, the mean of the two.
    """
    base = base or Effects()
    emg_rms = sum(base.emg.rms_uv.values()) / len(base.emg.rms_uv)
    p = base.physio
    return Effects(
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
