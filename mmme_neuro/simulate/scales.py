"""Sizes of the synthetic MMME-like study."""

from __future__ import annotations

from dataclasses import dataclass

from .._utils import check_option


@dataclass(frozen=True)
class Scale:
    """Size and timing of a synthetic study.

    Attributes
    ----------
    name : str
        ``"ci"``, ``"default"`` or ``"full"``.
    n_subjects : int
        Participants (one session each).
    n_clips : int
        Clips shown per session (MMME: 48, markers 101-148).
    clip_duration_s : tuple of float
        Range (s) of clip durations, drawn uniformly.
    rest_duration_s : float
        Rest between clips (s), flagged by marker 100.
    lead_in_s : float
        Recording before the first clip (s).
    eeg_sfreq, physio_sfreq : float
        Sampling rates (Hz) of EEG and physiology.
    me_per_clip, mae_per_clip : float
        Mean ME and MaE counts per clip (Poisson, with subject rates drawn from
        a gamma distribution of shape ``rate_shape`` so some subjects have few ME).
    rate_shape : float
        Shape of the gamma distribution of subject expression rates
        (large = all subjects alike).
    min_gap_s : float
        Smallest distance (s) between expression onsets within a clip.
    effects : str
        Preset of the planted effects (:data:`mmme_neuro.simulate.effects.PRESETS`):
        ``"realistic"`` (effect sizes of real recordings) or ``"strong"``
        (several times larger, for fast tests; the ``ci`` scale).
    """

    name: str
    n_subjects: int
    n_clips: int
    clip_duration_s: tuple[float, float]
    rest_duration_s: float
    lead_in_s: float
    eeg_sfreq: float
    physio_sfreq: float
    me_per_clip: float
    mae_per_clip: float
    rate_shape: float
    min_gap_s: float = 2.5
    effects: str = "realistic"

    @property
    def mean_session_s(self) -> float:
        """Mean session length (s)."""
        lo, hi = self.clip_duration_s
        return self.lead_in_s + self.n_clips * ((lo + hi) / 2 + self.rest_duration_s)


#: MMME ratio of ME to MaE: 634 / 2841 = 0.223.
SCALES: dict[str, Scale] = {
    # seconds: enough ME per subject for planted-effect tests, small files. Strong effects (an
    # explicit choice: 8 short subjects could not show realistic ones decisively; see
    # mmme_neuro.simulate.effects.strong_effects).
    "ci": Scale("ci", n_subjects=8, n_clips=8, clip_duration_s=(28.0, 32.0), rest_duration_s=5.0,
                lead_in_s=8.0, eeg_sfreq=250.0, physio_sfreq=250.0, me_per_clip=1.5,
                mae_per_clip=2.5, rate_shape=50.0, effects="strong"),
    # minutes: what `make figures` analyses. MMME's per-subject counts (~6 ME and ~26 MaE,
    # 634/110 and 2841/110) packed into 16 clips, a few low-ME subjects (gamma rate shape 4).
    "default": Scale("default", n_subjects=12, n_clips=16, clip_duration_s=(30.0, 40.0),
                     rest_duration_s=8.0, lead_in_s=10.0, eeg_sfreq=500.0, physio_sfreq=500.0,
                     me_per_clip=634 / 110 / 16, mae_per_clip=2841 / 110 / 16, rate_shape=4.0),
    # MMME scale: 110 subjects, 48 clips of ~1 min, ~73-min sessions at 1000 Hz,
    # 634 ME and 2,841 MaE expected overall.
    "full": Scale("full", n_subjects=110, n_clips=48, clip_duration_s=(55.0, 65.0),
                  rest_duration_s=30.0, lead_in_s=60.0, eeg_sfreq=1000.0, physio_sfreq=1000.0,
                  me_per_clip=634 / 110 / 48, mae_per_clip=2841 / 110 / 48, rate_shape=2.0),
}  # fmt: skip


def get_scale(name: str | Scale) -> Scale:
    """Return the :class:`Scale` called ``name`` (``"ci"``, ``"default"``, ``"full"``)."""
    if isinstance(name, Scale):
        return name
    check_option("scale", name, SCALES)
    return SCALES[name]
