"""Design of the synthetic study: MMME's shape, determinism, consistent clocks."""

import numpy as np
import pytest

from mmme_neuro.constants import CLIP_EMOTION, CLIP_ORDER, MMME_N_MAE, MMME_N_ME, REST_MARKER
from mmme_neuro.simulate.design import design_study
from mmme_neuro.simulate.scales import SCALES


def test_deterministic_and_seed_dependent():
    a, b, c = design_study("ci", 3), design_study("ci", 3), design_study("ci", 4)
    for s, t in zip(a.subjects, b.subjects, strict=True):
        assert s.name == t.name
        assert s.expressions.equals(t.expressions)
        assert s.markers.equals(t.markers)
    assert not a.subjects[0].expressions.equals(c.subjects[0].expressions)


def test_subset_of_subjects_is_the_same_subjects():
    full = design_study("ci", 5)
    sub = design_study("ci", 5, n_subjects=3)
    for s, t in zip(sub.subjects, full.subjects[:3], strict=False):
        assert s.name == t.name and s.expressions.equals(t.expressions)


def test_full_scale_matches_mmme_shape():
    d = design_study("full", 42)
    assert len(d.subjects) == 110
    n_me = sum(int((s.expressions.kind == "ME").sum()) for s in d.subjects)
    n_mae = sum(int((s.expressions.kind == "MaE").sum()) for s in d.subjects)
    # Poisson counts around MMME's 634 ME and 2,841 MaE (±5 SD of the mixture)
    assert abs(n_me - MMME_N_ME) < 0.2 * MMME_N_ME
    assert abs(n_mae - MMME_N_MAE) < 0.1 * MMME_N_MAE
    minutes = np.mean([s.eeg_duration_s for s in d.subjects]) / 60
    assert 70 < minutes < 76  # ~73-min sessions
    me_dur = np.concatenate([(s.expressions.offset_s - s.expressions.onset_s)[s.expressions.kind == "ME"] for s in d.subjects])
    assert abs(me_dur.mean() - 0.3817) < 0.03  # MMME mean ME duration 381.7 ms (truncated at 480 ms)
    assert me_dur.max() <= 0.5  # all ME satisfy the CASME II rule
    assert len({s.name for s in d.subjects}) == 110


@pytest.mark.parametrize("scale", sorted(SCALES))
def test_timeline_is_consistent(scale):
    for s in design_study(scale, 1, n_subjects=3).subjects:
        clips = s.clips[s.clips.recorded]
        for c in clips.itertuples():
            assert CLIP_EMOTION[c.marker] == c.clip_emotion and CLIP_ORDER[c.marker] == c.clip_order
        mk = s.markers
        assert set(mk[mk.kind == "clip"].code) == set(clips.marker)
        assert (mk[mk.kind == "rest"].code == REST_MARKER).all()
        assert mk.eeg_time_s.between(0, s.eeg_duration_s).all()
        ex = s.expressions
        assert (ex.onset_s < ex.apex_s).all() and (ex.apex_s <= ex.offset_s).all()
        for e in ex.itertuples():
            clip = s.clips.set_index("marker").loc[e.marker]
            assert 0 < e.onset_s and e.offset_s < clip.duration_s
            assert e.eeg_onset_s == pytest.approx(clip.eeg_start_s + e.onset_s)
        assert (ex.clip_emotion != "calm").all()  # calm clips yield no coded expression, as in MMME
        # physiology clock: started earlier, drifts by < 50 ppm, covers the EEG
        assert s.physio_offset_s > 0 and abs(s.physio_drift_ppm) < 50
        assert s.to_physio_time(s.eeg_duration_s) < s.physio_duration_s


def test_quirks_planted():
    d = design_study("default", 42)
    s1 = d.subjects[1]
    assert len(s1.quirks["missing_clips"]) == 2
    assert not s1.clips.recorded.iloc[-2:].any()
    assert set(s1.markers.code) & set(s1.quirks["missing_clips"]) == set()
    s2 = d.subjects[2]
    dup = s2.markers[s2.markers.kind == "duplicate"]
    assert len(dup) == 1 and dup.code.iloc[0] == s2.quirks["duplicated_marker"]
    for s in d.subjects:
        assert {77, 88} <= set(s.markers.code)
