"""Design of a synthetic MMME-like study: who, when, which clips, which expressions.

The design is pure bookkeeping (no signals): the EEG and physiology generators
and the coding-file writer all read the same :class:`SubjectDesign`, so every
planted event has one ground truth. Time is measured on the EEG clock (s from
the first EEG sample); the physiology clock is ``physio_offset_s + (1 +
drift_ppm * 1e-6) * t_eeg``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._utils import time_to_sample
from ..constants import (
    CLIP_EMOTION,
    CLIP_MARKERS_BY_EMOTION,
    CLIP_ORDER,
    MMME_ME_DURATION_MEAN_S,
    MMME_ME_DURATION_SD_S,
    REST_MARKER,
)
from .scales import Scale, get_scale

__all__ = ["StudyDesign", "SubjectDesign", "design_study", "subject_rng"]

_SURNAMES = (
    "wang", "li", "zhang", "liu", "chen", "yang", "zhao", "huang", "zhou", "wu", "xu", "sun",
    "hu", "zhu", "gao", "lin", "he", "guo", "ma", "luo", "liang", "song", "zheng", "xie",
)  # fmt: skip
_GIVEN = (
    "xiao", "ming", "hua", "jun", "wei", "fang", "na", "jie", "tao", "hao", "yu", "xin", "yan",
    "lei", "bo", "chen", "yi", "zi", "han", "shan", "heng", "qi", "rui", "kai", "min", "ling",
)  # fmt: skip

#: Action units typical of each expressed emotion (FACS; MMME's most frequent: AU4, AU14).
_EMOTION_AUS: dict[str, tuple[int, ...]] = {
    "disgust": (4, 9, 10, 14, 17),
    "happy": (6, 12, 14, 25),
    "angry": (4, 7, 14, 17, 23),
    "fear": (1, 2, 4, 5, 20),
    "sad": (1, 4, 15, 17),
    "surprise": (1, 2, 5, 26),
    "tense": (4, 7, 14, 17, 24),
}
#: Relative expression rate per clip emotion. Calm clips yield no coded expression (as in MMME).
_EMOTION_RATE = {emo: (0.0 if emo == "calm" else 8 / 7) for emo in CLIP_MARKERS_BY_EMOTION}

SPURIOUS_PER_SESSION = (77, 88)


def subject_rng(seed: int, subject_index: int, stream: str) -> np.random.Generator:
    """Independent, reproducible random stream for one subject and one purpose.

    Parameters
    ----------
    seed : int
        Study seed.
    subject_index : int
        0-based subject index.
    stream : str
        Purpose (e.g. ``"design"``, ``"eeg"``, ``"physio"``); streams never share draws.
    """
    key = zlib.crc32(stream.encode())
    return np.random.default_rng(np.random.SeedSequence([seed, subject_index, key]))


@dataclass
class SubjectDesign:
    """Everything planted for one participant session (EEG clock, seconds).

    Attributes
    ----------
    index : int
        0-based subject index in the study.
    name : str
        Synthetic participant name (looks like the real ones; pseudonymised by the readers).
    session_date : datetime.date
        Recording date (part of the file names ``<name>_<yyyymmdd>``).
    eeg_sfreq, physio_sfreq : float
        Sampling rates (Hz).
    eeg_duration_s : float
        Length of the EEG recording (s).
    physio_offset_s : float
        Physiology clock time at EEG time 0 (s): the BIOPAC started this much earlier.
    physio_drift_ppm : float
        Clock drift of the BIOPAC relative to the EEG amplifier (parts per million).
    physio_duration_s : float
        Length of the physiology recording on its own clock (s).
    camera_start : datetime.datetime
        Wall-clock time of the stimulus PC / camera at EEG time 0.
    clips : pandas.DataFrame
        One row per presented clip: ``position`` (1-based), ``marker``, ``clip_emotion``,
        ``clip_order`` (order within emotion, as in the coding file names), ``eeg_start_s``,
        ``duration_s``, ``recorded`` (False: the clip is missing from the recordings).
    markers : pandas.DataFrame
        Every marker written to the recordings: ``code``, ``eeg_time_s``, ``kind``
        (``clip``, ``rest``, ``spurious``, ``duplicate``), ``in_eeg``, ``in_physio``.
    expressions : pandas.DataFrame
        One row per planted expression: ``expr_id``, ``marker``, ``clip_order``,
        ``clip_emotion``, ``kind`` (``ME``/``MaE``), ``emotion``, ``aus`` (e.g. ``"AU4, AU7"``),
        clip-relative ``onset_s``/``apex_s``/``offset_s`` (rounded to 10 ms as coded),
        absolute ``eeg_onset_s``/``eeg_apex_s``/``eeg_offset_s``, ``recorded``.
    quirks : dict
        Quirks planted in this session (missing clips, duplicated marker ...).
    """

    index: int
    name: str
    session_date: dt.date
    eeg_sfreq: float
    physio_sfreq: float
    eeg_duration_s: float
    physio_offset_s: float
    physio_drift_ppm: float
    physio_duration_s: float
    camera_start: dt.datetime
    clips: pd.DataFrame
    markers: pd.DataFrame
    expressions: pd.DataFrame
    quirks: dict

    @property
    def session_id(self) -> str:
        """File stem of the session's recordings: ``<name>_<yyyymmdd>``."""
        return f"{self.name}_{self.session_date:%Y%m%d}"

    @property
    def eeg_n_samples(self) -> int:
        """Number of EEG samples."""
        return int(round(self.eeg_duration_s * self.eeg_sfreq))

    @property
    def physio_n_samples(self) -> int:
        """Number of physiology samples."""
        return int(round(self.physio_duration_s * self.physio_sfreq))

    def to_physio_time(self, t_eeg: np.ndarray | float) -> np.ndarray | float:
        """Map EEG-clock times (s) to physiology-clock times (s)."""
        return self.physio_offset_s + (1.0 + self.physio_drift_ppm * 1e-6) * np.asarray(t_eeg)

    def eeg_sample(self, t_eeg: np.ndarray | float) -> np.ndarray:
        """EEG sample index (int) of EEG-clock times (s) (:func:`~mmme_neuro._utils.time_to_sample`)."""
        return time_to_sample(t_eeg, self.eeg_sfreq)

    def physio_sample(self, t_eeg: np.ndarray | float) -> np.ndarray:
        """Physiology sample index (int) of EEG-clock times (s)."""
        return time_to_sample(self.to_physio_time(t_eeg), self.physio_sfreq)


@dataclass
class StudyDesign:
    """The design of a whole synthetic study."""

    scale: Scale
    seed: int
    subjects: list[SubjectDesign]


def _names(rng: np.random.Generator, n: int) -> list[str]:
    names: list[str] = []
    while len(names) < n:
        given = "".join(rng.choice(_GIVEN, size=int(rng.integers(1, 3))))
        name = str(rng.choice(_SURNAMES)) + given
        if name not in names:
            names.append(name)
    return names


def _clip_sequence(rng: np.random.Generator, n_clips: int) -> list[int]:
    """Markers in presentation order: blocks of one clip per emotion, shuffled within block."""
    emotions = list(CLIP_MARKERS_BY_EMOTION)
    by_order = {(CLIP_EMOTION[m], CLIP_ORDER[m]): m for m in CLIP_ORDER}
    seq: list[int] = []
    block = 1
    while len(seq) < n_clips:
        for emo in rng.permutation(emotions):
            seq.append(by_order[(str(emo), block)])
        block += 1
    return seq[:n_clips]


def _expression_times(
    rng: np.random.Generator, kinds: list[str], clip_dur: float, min_gap: float
) -> list[tuple[str, float, float, float]]:
    """Place expressions in a clip: (kind, onset, apex, offset), clip-relative, 10-ms grid."""
    placed: list[tuple[str, float, float, float]] = []
    onsets: list[float] = []
    for kind in kinds:
        for _ in range(50):  # rejection sampling; an expression that does not fit is not planted
            onset = float(rng.uniform(2.0, clip_dur - 5.0))
            if all(abs(onset - o) >= min_gap for o in onsets):
                break
        else:
            continue
        if kind == "ME":
            dur = float(np.clip(rng.normal(MMME_ME_DURATION_MEAN_S, MMME_ME_DURATION_SD_S), 0.2, 0.48))
            to_apex = dur * float(rng.uniform(0.3, 0.6))
        else:
            dur = float(np.clip(rng.lognormal(np.log(1.4), 0.45), 0.6, 4.0))
            to_apex = max(0.3, dur * float(rng.uniform(0.3, 0.6)))
        onset = round(onset, 2)
        apex = round(onset + to_apex, 2)
        offset = round(onset + dur, 2)
        placed.append((kind, onset, apex, offset))
        onsets.append(onset)
    return sorted(placed, key=lambda x: x[1])


def _on_grid(t: float, scale: Scale) -> float:
    """Time (s) of the EEG sample nearest ``t``: markers are sampled events."""
    return time_to_sample(t, scale.eeg_sfreq) / scale.eeg_sfreq


def _design_subject(scale: Scale, seed: int, index: int, name: str, n_subjects: int) -> SubjectDesign:
    rng = subject_rng(seed, index, "design")
    date = dt.date(2023, 7, 10) + dt.timedelta(days=int(rng.integers(0, 40)))
    camera_start = dt.datetime.combine(date, dt.time(9)) + dt.timedelta(
        seconds=float(rng.uniform(0, 10 * 3600)), microseconds=0
    )
    camera_start = camera_start.replace(microsecond=(camera_start.microsecond // 1000) * 1000)
    quirks: dict = {}

    # clip timeline
    sequence = _clip_sequence(rng, scale.n_clips)
    missing = 2 if (index == 1 and n_subjects > 2) else 0  # MMME: one participant lacks the last clips
    if missing:
        quirks["missing_clips"] = sequence[-missing:]
    rows = []
    t = scale.lead_in_s
    for pos, marker in enumerate(sequence, start=1):
        dur = round(float(rng.uniform(*scale.clip_duration_s)), 3)
        # the trigger is sampled: a clip starts on the EEG sample grid
        start = time_to_sample(t, scale.eeg_sfreq) / scale.eeg_sfreq
        rows.append(
            dict(position=pos, marker=marker, clip_emotion=CLIP_EMOTION[marker],
                 clip_order=CLIP_ORDER[marker], eeg_start_s=start, duration_s=dur,
                 recorded=pos <= len(sequence) - missing)
        )  # fmt: skip
        t += dur + scale.rest_duration_s
    clips = pd.DataFrame(rows)
    recorded = clips[clips.recorded]
    last = recorded.iloc[-1]
    eeg_duration = float(last.eeg_start_s + last.duration_s + scale.rest_duration_s)

    # markers: clip start, rest start after each clip, spurious 77/88
    mk = []
    for c in recorded.itertuples():
        mk.append(dict(code=int(c.marker), eeg_time_s=c.eeg_start_s, kind="clip"))
        mk.append(dict(code=REST_MARKER, eeg_time_s=_on_grid(c.eeg_start_s + c.duration_s, scale), kind="rest"))
    for code in SPURIOUS_PER_SESSION:
        mk.append(dict(code=code, eeg_time_s=_on_grid(float(rng.uniform(1.0, eeg_duration - 1.0)), scale), kind="spurious"))
    if index == 2 % max(n_subjects, 1):
        # a clip marker sent twice, 40 ms apart (duplicated marker quirk)
        c = recorded.iloc[len(recorded) // 2]
        mk.append(dict(code=int(c.marker), eeg_time_s=_on_grid(c.eeg_start_s + 0.04, scale), kind="duplicate"))
        quirks["duplicated_marker"] = int(c.marker)
    markers = pd.DataFrame(mk).sort_values("eeg_time_s", kind="stable").reset_index(drop=True)
    markers["in_eeg"] = True
    markers["in_physio"] = True

    # expressions
    g_me = rng.gamma(scale.rate_shape, 1.0 / scale.rate_shape)
    g_mae = rng.gamma(scale.rate_shape, 1.0 / scale.rate_shape)
    ex = []
    for c in clips.itertuples():
        w = _EMOTION_RATE[c.clip_emotion]
        n_me = int(rng.poisson(scale.me_per_clip * g_me * w))
        n_mae = int(rng.poisson(scale.mae_per_clip * g_mae * w))
        kinds = list(rng.permutation(["ME"] * n_me + ["MaE"] * n_mae))
        for kind, on, ap, off in _expression_times(rng, [str(k) for k in kinds], c.duration_s, scale.min_gap_s):
            aus_pool = _EMOTION_AUS[c.clip_emotion]
            n_au = int(rng.choice([1, 1, 2, 2, 3]))
            aus = sorted({int(a) for a in rng.choice(aus_pool, size=n_au)})
            ex.append(
                dict(marker=int(c.marker), clip_order=int(c.clip_order), clip_emotion=c.clip_emotion,
                     kind=kind, emotion=c.clip_emotion, aus=", ".join(f"AU{a}" for a in aus),
                     onset_s=on, apex_s=ap, offset_s=off,
                     eeg_onset_s=round(c.eeg_start_s + on, 6), eeg_apex_s=round(c.eeg_start_s + ap, 6),
                     eeg_offset_s=round(c.eeg_start_s + off, 6), recorded=bool(c.recorded))
            )  # fmt: skip
    expressions = pd.DataFrame(
        ex,
        columns=["marker", "clip_order", "clip_emotion", "kind", "emotion", "aus", "onset_s",
                 "apex_s", "offset_s", "eeg_onset_s", "eeg_apex_s", "eeg_offset_s", "recorded"],
    )  # fmt: skip
    expressions.insert(0, "expr_id", [f"s{index:03d}e{i:04d}" for i in range(len(expressions))])

    physio_offset = round(float(rng.uniform(2.0, 15.0)), 4)
    drift_ppm = round(float(rng.uniform(-40.0, 40.0)), 2)
    physio_duration = physio_offset + (1 + drift_ppm * 1e-6) * eeg_duration + float(rng.uniform(2.0, 8.0))
    return SubjectDesign(
        index=index, name=name, session_date=date, eeg_sfreq=scale.eeg_sfreq,
        physio_sfreq=scale.physio_sfreq, eeg_duration_s=eeg_duration,
        physio_offset_s=physio_offset, physio_drift_ppm=drift_ppm,
        physio_duration_s=round(physio_duration, 3), camera_start=camera_start, clips=clips,
        markers=markers, expressions=expressions, quirks=quirks,
    )  # fmt: skip


def design_study(scale: str | Scale = "ci", seed: int = 42, n_subjects: int | None = None) -> StudyDesign:
    """Draw the design of a synthetic study.

    Parameters
    ----------
    scale : str | Scale
        ``"ci"``, ``"default"``, ``"full"`` or a custom :class:`Scale`.
    seed : int
        Study seed; the same seed gives the same design.
    n_subjects : int | None
        Override the scale's number of subjects (e.g. a subset of ``full``);
        subject *i* is the same whatever the total.

    Returns
    -------
    design : StudyDesign
    """
    scale = get_scale(scale)
    if n_subjects is not None:
        if n_subjects < 1:
            raise ValueError(f"n_subjects must be >= 1, got {n_subjects}")
        scale = dataclasses.replace(scale, n_subjects=n_subjects)
    names = _names(np.random.default_rng(np.random.SeedSequence([seed, 0xA11CE])), scale.n_subjects)
    subjects = [_design_subject(scale, seed, i, names[i], scale.n_subjects) for i in range(scale.n_subjects)]
    return StudyDesign(scale=scale, seed=seed, subjects=subjects)
