"""Epochs: bookkeeping, NE sampling, planted ERP and EMG recovery, rejection, min-count rule."""

from __future__ import annotations

import mne
import numpy as np
import pandas as pd
import pytest

from mmme_neuro.config import Config
from mmme_neuro.epochs import (
    METADATA_COLUMNS,
    _rejection_reason,
    apply_min_count,
    draw_ne_centers,
    emg_summary,
    epochs_from_session,
    equalize_counts,
    first_level,
    from_clean,
    make_epochs,
    subjects_for_contrast,
)
from mmme_neuro.ingest import find_sessions, ingest_session
from mmme_neuro.io.coding import read_coding
from mmme_neuro.preprocessing import PreprocessOptions
from mmme_neuro.simulate.study import StudyPaths, load_ground_truth, simulate_study

pytestmark = pytest.mark.filterwarnings("ignore:FastICA did not converge")
FAST = PreprocessOptions(ica_max_iter=200, ica_n_components=15)


def _no_ica(cfg: Config) -> Config:
    return cfg.model_copy(update={"preprocessing": cfg.preprocessing.model_copy(update={"ica": False})})


def _sessions(tmp_path_factory, name: str, null: bool):
    root = tmp_path_factory.getbasetemp() / name
    paths = StudyPaths.at(root) if (root / "COMPLETE").is_file() else simulate_study(
        root, scale="ci", seed=7, n_subjects=2, null=null, progress=False)  # fmt: skip
    coding = read_coding(paths.coding_file)
    return paths, [ingest_session(f, coding.expressions) for f in find_sessions(paths.raw_dir, coding)]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    paths, sessions = _sessions(tmp_path_factory, "epochs-ci-seed7", null=False)
    out = [epochs_from_session(s, Config(), options=FAST) for s in sessions]
    return paths, sessions, out


@pytest.fixture(scope="module")
def null(tmp_path_factory):
    paths, sessions = _sessions(tmp_path_factory, "epochs-ci-seed7-null", null=True)
    return [epochs_from_session(s, _no_ica(Config()), options=FAST) for s in sessions]


def test_bookkeeping_every_expression_once(planted):
    _, sessions, out = planted
    for s, (epochs, md) in zip(sessions, out, strict=True):
        assert list(md.columns) == list(METADATA_COLUMNS)
        ex_rows = md[md.condition != "NE"]
        assert sorted(ex_rows.expression_id) == sorted(s.expressions.expression_id)
        assert ex_rows.expression_id.is_unique and md.epoch_id.is_unique
        assert (md.kept == ~md.rejected).all()
        assert (md.reason[md.rejected] != "").all() and (md.reason[md.kept] == "").all()
        assert len(epochs) == md.kept.sum()
        assert list(epochs.metadata.epoch_id) == list(md.epoch_id[md.kept])
        assert md.attrs["provenance"]["preprocessing"]["ica"]["eog_components"]
        assert epochs.info["sfreq"] == 250.0 and "M1" not in epochs.ch_names
        # onset alignment: landmark = coded onset sample
        m = ex_rows.merge(s.expressions, on="expression_id")
        assert (m.landmark_sample == m.eeg_onset_sample_y).all()
        # baseline corrected
        base = epochs.copy().crop(-1.0, -0.5).get_data(picks="eeg").mean(axis=-1)
        assert np.abs(base).max() < 1e-12


def test_planted_erp_in_me_minus_mae(planted):
    paths, _, out = planted
    erp = load_ground_truth(paths.root)["effects"]["erp"]
    ev = {c: mne.combine_evoked([e[c].average() for e, _ in out], "equal") for c in ("ME", "MaE")}
    diff = mne.combine_evoked([ev["ME"], ev["MaE"]], [1, -1])
    lat = erp["latency_s"]
    win = (diff.times > lat - 0.05) & (diff.times < lat + 0.05)
    planted_diff = erp["amplitude_uv"]["ME"] - erp["amplitude_uv"]["MaE"]  # 4.5 µV
    at = diff.copy().pick(erp["channels"]).data[:, win].mean() * 1e6
    o1 = diff.copy().pick(["O1"]).data[:, win].mean() * 1e6
    assert 0.5 * planted_diff < at < 1.5 * planted_diff, at
    assert abs(o1) < 1.5 and at - o1 > 2.0, (at, o1)


def _rms_ratio(mds: list[pd.DataFrame]) -> float:
    s = emg_summary(pd.concat(mds)).groupby("condition").emg_rms_uv.mean()
    return float(s["MaE"] / s["ME"])


def test_emg_larger_for_mae_as_planted(planted):
    paths, _, out = planted
    rms = load_ground_truth(paths.root)["effects"]["emg"]["rms_uv"]
    want = rms["MaE"] / rms["ME"]  # 3.0
    got = _rms_ratio([md for _, md in out])
    assert 0.8 * want < got < 1.3 * want, got
    md = pd.concat([md for _, md in out])
    by = md[md.kept].groupby("condition")
    assert by.emg_temporal_power.mean()["MaE"] > 2 * by.emg_temporal_power.mean()["ME"]
    assert abs(by.emg_rms_log_ratio.mean()["NE"]) < 0.3  # no burst in NE epochs
    summary = emg_summary(md)
    assert {"subject", "condition", "n_epochs", "emg_rms_uv", "emg_temporal_power_log_ratio"} <= set(summary)


def test_emg_equal_in_null_study(null):
    got = _rms_ratio([md for _, md in null])
    assert 0.8 < got < 1.25, got


def test_ne_epochs_respect_rules_and_are_deterministic(planted):
    _, sessions, out = planted
    cfg = Config()
    d, tmin, tmax = cfg.epochs.ne_min_distance_s, cfg.epochs.tmin, cfg.epochs.tmax
    for s, (_, md) in zip(sessions, out, strict=True):
        sf = s.eeg_sfreq
        ne = md[md.condition == "NE"]
        assert len(ne) > 0 and ne.expression_id.isna().all()
        c = ne.landmark_sample.to_numpy(float) / sf
        on, off = s.expressions.eeg_onset_s.to_numpy(), s.expressions.eeg_offset_s.to_numpy()
        dist = np.maximum(on[None] - c[:, None], c[:, None] - off[None])  # distance to [onset, offset]
        assert dist.min() >= d - 1e-9
        clips = s.clips.set_index("marker")
        start = clips.loc[ne.marker, "eeg_time_s"].to_numpy()
        end = clips.loc[ne.marker, "end_time_s"].to_numpy()
        assert (c >= start - tmin - 1e-9).all() and (c <= end - tmax + 1e-9).all()
        assert np.diff(np.sort(c)).min() >= tmax - tmin - 1 / sf  # no overlap
        # matched in clip emotion: per emotion, drawn + shortfall = expressions of that emotion
        rep = md.attrs["ne"]
        n_ex = s.expressions.clip_emotion.value_counts()
        n_ne = ne.clip_emotion.value_counts().reindex(n_ex.index, fill_value=0)
        short = pd.Series(rep["shortfall"], dtype=int).reindex(n_ex.index, fill_value=0)
        assert (n_ne + short == n_ex).all()
        assert set(ne.matched_expression_id) <= set(s.expressions.expression_id)
        kw = dict(subject=s.subject, sfreq=sf, recording_end_s=s.eeg_raw.n_times / sf)
        a, _ = draw_ne_centers(s.expressions, s.clips, cfg, **kw)
        b, _ = draw_ne_centers(s.expressions, s.clips, cfg, **kw)
        other, _ = draw_ne_centers(s.expressions, s.clips, Config(seed=1), **kw)
        pd.testing.assert_frame_equal(a, b)
        assert sorted(a.center_sample) == sorted(ne.landmark_sample)
        assert list(other.center_sample) != list(a.center_sample)


def test_rejection_reasons_and_boundary(planted):
    _, sessions, _ = planted
    s = sessions[0]
    x = np.zeros((3, 100))
    x[1, 50] = 200.0
    rej = Config().rejection
    assert _rejection_reason(x + np.arange(100) * 0.01, ["A", "T7", "C"], rej)[0] == "peak_to_peak>150uV on T7"
    y = np.random.default_rng(0).normal(0, 5, (3, 100))
    y[0] = 0.1
    assert _rejection_reason(y, ["A", "T7", "C"], rej)[0] == "flat<0.5uV on A"
    # an expression too close to the end of the recording cannot get a clean segment
    ex = s.expressions.head(3).copy()
    end_s = s.eeg_raw.n_times / s.eeg_sfreq
    late = ex.iloc[[0]].copy()
    late["expression_id"] = "late"
    for lm, dt in (("onset", 0.5), ("apex", 0.4), ("offset", 0.3)):
        late[f"eeg_{lm}_s"] = end_s - dt
        late[f"eeg_{lm}_sample"] = int((end_s - dt) * s.eeg_sfreq)
    ex = pd.concat([ex, late], ignore_index=True)
    cfg = _no_ica(Config()).model_copy(update={"rejection": Config().rejection.model_copy(update={"peak_to_peak_uv": 1.0})})
    epochs, md = make_epochs(s.eeg_raw, ex, s.clips, cfg, subject=s.subject,
                             options=PreprocessOptions(detect_bads=False))  # fmt: skip
    assert md.set_index("expression_id").loc["late", "reason"] == "overlaps_segment_boundary"
    others = md[(md.expression_id != "late")]
    assert others.reason.str.startswith("peak_to_peak>1uV on ").all()
    assert len(epochs) == 0 and md.rejected.all()
    assert sorted(md.expression_id.dropna()) == sorted(ex.expression_id)


def test_extended_epochs_reject_and_measure_on_the_analysis_window(planted):
    """One preprocessing pass for several analyses: epochs cut wider, rejection and EMG on the analysis window."""
    _, sessions, _ = planted
    s = sessions[0]
    cfg = _no_ica(Config())
    ep = cfg.epochs
    narrow = epochs_from_session(s, cfg, options=FAST)
    clean = first_level(s, cfg, extend_s=(0.5, 0.7))
    wide, md = clean["epochs"], clean["metadata"]
    assert np.isclose(wide.tmin, ep.tmin - 0.5) and np.isclose(wide.tmax, ep.tmax + 0.7)
    assert wide.metadata is None and clean["report"]["preprocessing"]["extend_s"] == [0.5, 0.7]
    # peak-to-peak of the kept epochs is measured on the analysis window, not on the padding
    eeg = mne.pick_types(wide.info, eeg=True)
    x = wide.get_data()[:, eeg] * 1e6
    inside = (wide.times >= ep.tmin - 1e-9) & (wide.times <= ep.tmax + 1e-9)
    ptp_in = np.ptp(x[:, :, inside], axis=2).max(axis=1)
    ptp_all = np.ptp(x, axis=2).max(axis=1)
    np.testing.assert_allclose(md.loc[md["kept"], "ptp_max_uv"].to_numpy(float), ptp_in, rtol=1e-9)
    assert (ptp_all > ptp_in + 1e-6).any()  # the padding would have changed some values
    # EMG measures of the expressions do not depend on the extension (same analysis window)
    a = narrow[1].set_index("expression_id").loc[lambda d: d["condition"] != "NE"]
    b = md.set_index("expression_id").loc[a.index]
    emg_cols = [c for c in md.columns if c.startswith("emg_")]
    assert emg_cols
    np.testing.assert_allclose(b[emg_cols].to_numpy(float), a[emg_cols].to_numpy(float), rtol=1e-6, atol=1e-12)
    # cropping gives the analysis window with the kept rows as metadata, and the full table with its attrs
    cropped, md2 = from_clean(clean, ep.tmin, ep.tmax)
    np.testing.assert_allclose(cropped.times, narrow[0].times, atol=1e-9)
    assert len(cropped) == int(md["kept"].sum()) and cropped.metadata["epoch_id"].tolist() == md.loc[md["kept"], "epoch_id"].tolist()
    assert "preprocessing" in md2.attrs and len(md2) == len(md)
    np.testing.assert_array_equal(cropped.get_data(), wide.get_data()[:, :, inside])
    with pytest.raises(ValueError, match="not inside"):
        from_clean(clean, ep.tmin - 1.0, ep.tmax)
    with pytest.raises(ValueError, match="extend_s"):
        make_epochs(s.eeg_raw, s.expressions, s.clips, cfg, subject=s.subject, extend_s=(-0.1, 0.0))


def _toy_metadata() -> pd.DataFrame:
    rows = []
    for subject, counts in (("sub-01", {"ME": 5, "MaE": 9, "NE": 8}), ("sub-02", {"ME": 2, "MaE": 7, "NE": 6})):
        for cond, n in counts.items():
            for i in range(n + 1):  # one rejected epoch per condition
                rows.append({"epoch_id": f"{subject}_{cond}{i}", "subject": subject, "condition": cond,
                             "kept": i < n})  # fmt: skip
    return pd.DataFrame(rows)


def test_min_count_rule_and_equalization():
    md = _toy_metadata()
    kept, report = apply_min_count(md, Config())
    r = report.set_index(["subject", "condition"])
    assert r.loc[("sub-02", "ME"), "n_clean"] == 2 and not r.loc[("sub-02", "ME"), "included"]
    assert r.loc[("sub-02", "ME"), "reason"] == "2 clean epochs < 3"
    assert r.included.sum() == 5
    assert subjects_for_contrast(kept, ("ME", "MaE")) == ["sub-01"]
    assert subjects_for_contrast(kept, ("MaE", "NE")) == ["sub-01", "sub-02"]
    eq, rep = equalize_counts(md, ("ME", "MaE"), seed=5)
    after = eq[eq.kept].groupby(["subject", "condition"]).size()
    assert after[("sub-01", "ME")] == after[("sub-01", "MaE")] == 5
    assert after[("sub-02", "ME")] == after[("sub-02", "MaE")] == 2
    assert after[("sub-01", "NE")] == 8  # other conditions untouched
    assert eq.equalized_out.sum() == (9 - 5) + (7 - 2)
    assert set(rep.columns) == {"subject", "condition", "n_before", "n_after"}
    eq2, _ = equalize_counts(md, ("ME", "MaE"), seed=5)
    eq3, _ = equalize_counts(md, ("ME", "MaE"), seed=6)
    pd.testing.assert_frame_equal(eq, eq2)
    assert not eq.kept.equals(eq3.kept)


def test_min_count_on_real_metadata(planted):
    _, _, out = planted
    md = pd.concat([md for _, md in out], ignore_index=True)
    kept, report = apply_min_count(md, Config())
    assert len(report) == 2 * 3
    assert (report.n_clean == report.merge(
        md.groupby(["subject", "condition"]).kept.sum().rename("k").reset_index()).k).all()  # fmt: skip


def test_validation(planted):
    _, sessions, _ = planted
    s = sessions[0]
    with pytest.raises(ValueError, match="lacks columns"):
        make_epochs(s.eeg_raw, s.expressions.drop(columns=["kind"]), s.clips, Config(), subject=s.subject)
    with pytest.raises(ValueError, match="subject"):
        make_epochs(s.eeg_raw, s.expressions, s.clips, Config(), subject="")
    with pytest.raises(TypeError, match="Config"):
        make_epochs(s.eeg_raw, s.expressions, s.clips, {}, subject=s.subject)


def test_emg_filters_on_spans_equal_the_whole_recording(planted):
    """EMG spans are padded for the notch and the band-pass in series: inside the epoch windows the
    filtered spans equal the whole recording filtered by MNE (notch_filter + filter)."""
    from mmme_neuro.epochs import _emg_copy, _emg_pad_s
    from mmme_neuro.preprocessing import get_segment_map, read_segments

    _, sessions, _ = planted
    raw, cfg = sessions[0].eeg_raw, Config()
    sf = raw.info["sfreq"]
    picks = [c for c, t in zip(raw.ch_names, raw.get_channel_types(), strict=True)
             if t == "emg" or c in cfg.emg.temporal_channels]  # fmt: skip
    centers = sessions[0].expressions["eeg_onset_s"].to_numpy()
    tmin, tmax = cfg.epochs.tmin, cfg.epochs.tmax
    seg = _emg_copy(read_segments(raw, centers, tmin, tmax, _emg_pad_s(sf, cfg.emg, cfg.preprocessing.notch_freq),
                                  picks=picks), cfg.emg, cfg.preprocessing.notch_freq)  # fmt: skip
    whole = raw.copy().pick(seg.ch_names).load_data()
    whole.notch_filter(np.arange(cfg.preprocessing.notch_freq, sf / 2, cfg.preprocessing.notch_freq), picks="all",
                       verbose=False)  # fmt: skip
    whole.filter(*cfg.emg.band, picks="all", verbose=False)
    smap = get_segment_map(seg)
    worst, scale = 0.0, float(np.abs(whole.get_data()).max())
    for c in np.round(centers * sf).astype(int):
        a, b = c + int(round(tmin * sf)), c + int(round(tmax * sf))
        pos = int(smap.to_segment(np.array([a]))[0])
        worst = max(worst, float(np.abs(seg.get_data(start=pos, stop=pos + b - a)
                                        - whole.get_data(start=a, stop=b)).max()))  # fmt: skip
    assert worst <= 1e-9 * scale, worst / scale  # the longer filter alone as padding: ~5e-8


def test_emg_power_batched_by_window_length_equals_one_window_at_a_time(planted):
    """emg_measures computes the multitaper PSD of all windows of one length in one call: bit for bit the
    values of one call per window (the tapers depend on the length only)."""
    from mmme_neuro.epochs import _emg_copy, _emg_pad_s, _emg_window_s, emg_measures
    from mmme_neuro.preprocessing import get_segment_map, read_segments

    _, sessions, _ = planted
    raw, cfg = sessions[0].eeg_raw, Config()
    sf = raw.info["sfreq"]
    ex = sessions[0].expressions
    picks = [c for c, t in zip(raw.ch_names, raw.get_channel_types(), strict=True)
             if t == "emg" or c in cfg.emg.temporal_channels]  # fmt: skip
    tmin, tmax = cfg.epochs.tmin, cfg.epochs.tmax
    seg = _emg_copy(read_segments(raw, ex["eeg_onset_s"].to_numpy(), tmin, tmax,
                                  _emg_pad_s(sf, cfg.emg, cfg.preprocessing.notch_freq), picks=picks),
                    cfg.emg, cfg.preprocessing.notch_freq)  # fmt: skip
    landmarks = np.round(ex["eeg_onset_s"].to_numpy() * sf)
    durations = ex["duration_s"].to_numpy(float)
    got = emg_measures(seg, landmarks, durations, cfg.epochs, cfg.emg)
    smap, data = get_segment_map(seg), seg.get_data() * 1e6
    temp = [seg.ch_names.index(c) for c in cfg.emg.temporal_channels if c in seg.ch_names]
    win = _emg_window_s(durations, tmax)
    assert len(set(np.round(win * sf))) > 3  # several lengths, hence several batches
    for k, x in enumerate(landmarks.astype(int)):
        base = [x + int(round(t * sf)) for t in cfg.epochs.baseline]
        for j, (a, b) in enumerate([(x, x + int(round(win[k] * sf))), base]):
            pa = int(smap.to_segment(np.array([a]))[0])
            w = data[temp, pa : pa + b - a]
            psd, _ = mne.time_frequency.psd_array_multitaper(w - w.mean(axis=1, keepdims=True), sf, fmin=cfg.emg.band[0],
                                                             fmax=cfg.emg.band[1], adaptive=False, low_bias=True,
                                                             normalization="full", verbose=False)  # fmt: skip
            col = "emg_temporal_power" + ("_baseline" if j else "")
            assert got[col].iloc[k] == float(psd.mean()), (k, j)


def test_threads_and_the_fused_reader_give_the_same_epochs(planted):
    """Threads (run.threads) change nothing; the fused reader (integer decimation: spans low-passed, decimated,
    high-passed and cut as read, EMG spans copied from them) measures the same EMG as reading it apart."""
    _, sessions, out = planted
    cfg = Config()
    one = cfg.model_copy(update={"preprocessing": cfg.preprocessing.model_copy(update={"resample_sfreq": 125.0})})
    two = one.model_copy(update={"run": one.run.model_copy(update={"threads": 2})})
    ep1, md1 = epochs_from_session(sessions[0], one, options=FAST)
    ep2, md2 = epochs_from_session(sessions[0], two, options=FAST)
    assert ep1.info["sfreq"] == 125.0
    np.testing.assert_array_equal(ep1.get_data(), ep2.get_data())
    pd.testing.assert_frame_equal(md1, md2)
    prep = md1.attrs["preprocessing"]
    assert prep["emg_samples_from"] == "the EEG spans read"
    assert out[0][1].attrs["preprocessing"]["emg_samples_from"] == "read apart"  # 250 Hz: nothing to decimate
    assert prep["cleaned"]["n_samples"] < prep["cleaned"]["of_samples"]
    emg_cols = [c for c in md1.columns if c.startswith("emg_")]
    pd.testing.assert_frame_equal(md1[emg_cols], out[0][1][emg_cols])


def test_landmarks_on_half_samples_round_up_wherever_the_span_lies():
    """A landmark half-way between two kept samples starts its epoch on the later one, whatever the span's
    position in the segments (round half to even made it depend on that)."""
    from mmme_neuro.epochs import _cut_epochs
    from mmme_neuro.preprocessing import SegmentMap, _set_segment_map

    cfg = Config()
    cfg = cfg.model_copy(update={"epochs": cfg.epochs.model_copy(update={"tmin": -0.1, "tmax": 0.1, "baseline": None})})
    starts = []
    for offset in (0, 1, 2, 3):  # the span of interest after spans of `offset` samples
        lengths = np.array([offset + 1, 200])  # at 250 Hz: spans of 4 native samples per kept sample
        stop = np.cumsum(lengths)
        orig_start = np.array([0, 10_000])
        smap = SegmentMap(orig_start, orig_start + 4 * lengths, stop - lengths, stop, 1000.0, 250.0)
        data = np.zeros((1, int(stop[-1])))
        data[0, int(stop[0]):] = np.arange(200)  # value = kept sample index within the span
        clean = mne.io.RawArray(data, mne.create_info(["CZ"], 250.0, "eeg"), verbose=False)
        _set_segment_map(clean, smap)
        plan = pd.DataFrame({"landmark_sample": [10_000 + 4 * 100 + 2], "reason": [""]})  # half-way: 100.5
        cut, ok, t0 = _cut_epochs(clean, plan, cfg, 1, 20_000)
        assert ok[0] and t0 == pytest.approx(-0.1)
        starts.append(cut[0, 0, 0] + 25)  # the landmark's sample (tmin = -25 samples)
    assert starts == [101.0] * 4
