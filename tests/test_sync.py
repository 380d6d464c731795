"""EEG <-> physiology clock synchronisation: recovery within one sample, outliers, refusals."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmme_neuro.config import SyncConfig
from mmme_neuro.constants import CLIP_MARKERS, REST_MARKER
from mmme_neuro.sync import ClockFit, SyncError, fit_clock, map_times, match_markers

OFFSET_S = 7.3456
DRIFT_PPM = 23.4


def _session(n_clips: int, offset_s: float, drift_ppm: float, fs_eeg: float, fs_physio: float,
             seed: int = 0, rest: bool = True):  # fmt: skip
    """Clip (+ rest) markers on a 1-ms grid, as both recordings sample them.

    Returns EEG events, physiology events and the planted physiology sample of
    every EEG event (``round(true physio time * fs_physio)``).
    """
    rng = np.random.default_rng(seed)
    starts_ms = np.cumsum(rng.integers(20_000, 90_000, size=n_clips)) + 5_000
    codes = rng.permutation(CLIP_MARKERS)[:n_clips]
    t, c = [], []
    for start, code in zip(starts_ms, codes, strict=True):
        t.append(start / 1e3)
        c.append(int(code))
        if rest:
            t.append((start + int(rng.integers(10_000, 19_000))) / 1e3)
            c.append(REST_MARKER)
    t = np.asarray(t)
    true_physio = offset_s + (1 + drift_ppm * 1e-6) * t
    eeg_sample = np.round(t * fs_eeg).astype(np.int64)
    physio_sample = np.round(true_physio * fs_physio).astype(np.int64)
    eeg = pd.DataFrame({"sample": eeg_sample, "time_s": eeg_sample / fs_eeg, "code": c})
    phy = pd.DataFrame({"sample": physio_sample, "time_s": physio_sample / fs_physio, "code": c})
    return eeg, phy, physio_sample


def _assert_within_one_sample(fit: ClockFit, eeg: pd.DataFrame, planted: np.ndarray,
                              fs_eeg: float, fs_physio: float) -> None:  # fmt: skip
    mapped = map_times(eeg["time_s"].to_numpy(), fit, fs_eeg, fs_physio)
    np.testing.assert_array_equal(mapped["eeg_sample"], eeg["sample"])
    worst = int(np.max(np.abs(mapped["physio_sample"].to_numpy() - planted)))
    assert worst <= 1, f"a mapped marker is {worst} samples from its planted physio sample"


# ----------------------------------------------------------------------------- recovery


@pytest.mark.parametrize("fs_eeg, fs_physio", [(1000.0, 1000.0), (250.0, 250.0), (1000.0, 250.0)])
def test_planted_offset_and_drift_recovered(fs_eeg, fs_physio):
    eeg, phy, planted = _session(48, OFFSET_S, DRIFT_PPM, fs_eeg, fs_physio)
    matched = match_markers(eeg, phy)
    assert len(matched) == 96
    assert set(matched["how"]) == {"unique", "nearest"}
    fit = fit_clock(matched, sfreq_eeg=fs_eeg, sfreq_physio=fs_physio, label="sub-01")
    assert fit.n_matched == fit.n_used == 96
    assert abs(fit.offset_s - OFFSET_S) < 0.5 / fs_physio
    assert abs(fit.drift_ppm - DRIFT_PPM) < 1.0
    assert fit.slope == pytest.approx(1 + fit.drift_ppm * 1e-6, abs=1e-15)
    assert fit.max_abs_residual_ms <= 1e3 / fs_eeg + 1e3 / fs_physio
    assert fit.outliers.empty
    _assert_within_one_sample(fit, eeg, planted, fs_eeg, fs_physio)
    # inverse map and serialisable summary
    t = np.array([0.0, 100.0, 4000.0])
    np.testing.assert_allclose(fit.to_eeg_time(fit.to_physio_time(t)), t, atol=1e-9)
    assert isinstance(fit.to_physio_time(1.0), float)
    summary = json.loads(json.dumps(fit.to_dict()))
    assert summary["label"] == "sub-01" and summary["n_used"] == 96 and summary["outliers"] == []


@settings(max_examples=60, deadline=None)
@given(
    offset_s=st.floats(0.0, 30.0),
    drift_ppm=st.floats(-100.0, 100.0),
    n_clips=st.integers(5, 48),
    fs=st.sampled_from([250.0, 1000.0]),
    rest=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_mapping_within_one_sample(offset_s, drift_ppm, n_clips, fs, rest, seed):
    eeg, phy, planted = _session(n_clips, offset_s, drift_ppm, fs, fs, seed=seed, rest=rest)
    fit = fit_clock(match_markers(eeg, phy), sfreq_eeg=fs, sfreq_physio=fs)
    assert fit.n_used == len(eeg)
    _assert_within_one_sample(fit, eeg, planted, fs, fs)


def test_outlier_rejected_and_reported(caplog):
    eeg, phy, planted = _session(48, OFFSET_S, DRIFT_PPM, 1000.0, 1000.0)
    bad = 30
    phy.loc[bad, "time_s"] += 0.050  # one marker mis-timed by 50 ms in the physiology
    with caplog.at_level(logging.WARNING, logger="mmme_neuro.sync"):
        fit = fit_clock(match_markers(eeg, phy), sfreq_eeg=1000.0, sfreq_physio=1000.0)
    assert fit.n_used == fit.n_matched - 1
    out = fit.outliers
    assert out["code"].tolist() == [int(phy.loc[bad, "code"])]
    assert out["residual_ms"].iloc[0] == pytest.approx(50.0, abs=1.0)
    assert fit.to_dict()["outliers"][0]["code"] == int(phy.loc[bad, "code"])
    assert "rejected as mis-timed" in caplog.text
    assert fit.max_abs_residual_ms <= 2.0
    _assert_within_one_sample(fit, eeg, planted, 1000.0, 1000.0)


def test_missing_rest_marker_matched_by_nearest_not_order():
    eeg, phy, _ = _session(10, OFFSET_S, DRIFT_PPM, 1000.0, 1000.0)
    first_rest = int(np.flatnonzero(phy["code"] == REST_MARKER)[0])
    phy = phy.drop(index=first_rest).reset_index(drop=True)
    matched = match_markers(eeg, phy)
    assert len(matched) == len(eeg) - 1
    pred = OFFSET_S + (1 + DRIFT_PPM * 1e-6) * matched["eeg_time_s"]
    assert np.all(
        np.abs(matched["physio_time_s"] - pred) < 0.002
    )  # every pair is the same occurrence
    fit_clock(matched)


def test_codes_argument_restricts_matching():
    eeg, phy, _ = _session(8, OFFSET_S, DRIFT_PPM, 1000.0, 1000.0)
    matched = match_markers(eeg, phy, codes=CLIP_MARKERS)
    assert len(matched) == 8 and (matched["how"] == "unique").all()
    assert matched["eeg_time_s"].is_monotonic_increasing


# ----------------------------------------------------------------------------- refusals


def test_too_few_markers():
    eeg, phy, _ = _session(4, OFFSET_S, DRIFT_PPM, 1000.0, 1000.0, rest=False)
    with pytest.raises(SyncError, match=r"sub-07.*only 4 marker.*need >= 5.*same session"):
        fit_clock(match_markers(eeg, phy), label="sub-07")
    fit = fit_clock(match_markers(eeg, phy), SyncConfig(min_matched_markers=4))
    assert fit.n_used == 4


def test_no_shared_codes():
    eeg, _, _ = _session(10, OFFSET_S, DRIFT_PPM, 1000.0, 1000.0, rest=False)
    phy = eeg.assign(code=eeg["code"] + 1000)
    matched = match_markers(eeg, phy)
    assert matched.empty
    with pytest.raises(SyncError, match="only 0 marker"):
        fit_clock(matched, label="a.cdt / b.mat")


def test_different_sessions_inconsistent_timing():
    """Same clip codes (every session uses 101-148) but another session's timing."""
    eeg, _, _ = _session(48, OFFSET_S, DRIFT_PPM, 1000.0, 1000.0, seed=1)
    _, phy_other, _ = _session(48, 3.0, -12.0, 1000.0, 1000.0, seed=2)
    matched = match_markers(eeg, phy_other)
    assert len(matched) >= 48
    with pytest.raises(SyncError, match=r"sub-03.*agree on one clock.*not from the same session"):
        fit_clock(matched, sfreq_eeg=1000.0, sfreq_physio=1000.0, label="sub-03")


def test_residual_tolerance_and_implausible_drift():
    # 250-Hz quantisation exceeds the configured 2 ms unless the rates are given
    eeg, phy, _ = _session(48, OFFSET_S, DRIFT_PPM, 250.0, 250.0)
    with pytest.raises(SyncError, match="agree on one clock"):
        fit_clock(match_markers(eeg, phy))
    assert (
        fit_clock(match_markers(eeg, phy), sfreq_eeg=250.0, sfreq_physio=250.0).tolerance_ms == 8.0
    )
    # 2.4 % "drift" = physiology at 1024 Hz read as 1000 Hz: refused
    eeg, phy, _ = _session(20, OFFSET_S, 24_000.0, 1000.0, 1000.0)
    with pytest.raises(SyncError, match="implausible clock drift"):
        fit_clock(match_markers(eeg, phy))


def test_bad_arguments():
    with pytest.raises(ValueError, match="lacks columns"):
        match_markers(pd.DataFrame({"code": [1]}), pd.DataFrame({"code": [1], "time_s": [0.0]}))
    with pytest.raises(ValueError, match="lacks columns"):
        fit_clock(pd.DataFrame({"code": [1], "eeg_time_s": [0.0]}))
    eeg, phy, _ = _session(6, OFFSET_S, DRIFT_PPM, 1000.0, 1000.0)
    fit = fit_clock(match_markers(eeg, phy))
    with pytest.raises(ValueError, match="sfreq_physio"):
        map_times([1.0], fit, 1000.0, 0.0)


# ----------------------------------------------------------------------------- synthetic subject


def test_synthetic_subject_end_to_end(tmp_path):
    """Physiology .mat from the simulator + EEG markers of the design -> the planted clock."""
    from mmme_neuro.io.physio import read_physio
    from mmme_neuro.simulate.design import design_study
    from mmme_neuro.simulate.effects import Effects
    from mmme_neuro.simulate.physio import simulate_physio
    from mmme_neuro.simulate.writers_physio import write_acqknowledge_mat

    subject = design_study("ci", seed=1).subjects[2]
    data, _ = simulate_physio(subject, Effects(), 1)
    path = write_acqknowledge_mat(subject, data, tmp_path / f"{subject.session_id}.mat")
    _, phy, _ = read_physio(path)
    mk = subject.markers
    keep = ~mk.kind.isin(["spurious", "duplicate"])
    fs_e, fs_p = subject.eeg_sfreq, subject.physio_sfreq
    eeg_sample = subject.eeg_sample(mk.loc[keep, "eeg_time_s"].to_numpy(dtype=float))
    eeg = pd.DataFrame({"sample": eeg_sample, "time_s": eeg_sample / fs_e,
                        "code": mk.loc[keep, "code"].to_numpy()})  # fmt: skip
    fit = fit_clock(
        match_markers(eeg, phy), sfreq_eeg=fs_e, sfreq_physio=fs_p, label=subject.session_id
    )
    assert fit.n_used == len(eeg)
    assert abs(fit.offset_s - subject.physio_offset_s) < 1 / fs_p
    assert abs(fit.drift_ppm - subject.physio_drift_ppm) < 20.0
    planted = subject.physio_sample(mk.loc[keep, "eeg_time_s"].to_numpy(dtype=float))
    _assert_within_one_sample(fit, eeg, planted, fs_e, fs_p)
