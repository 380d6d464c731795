"""Preprocessing on padded segments: lazy reading, filter equivalence, reference, bad channels, ICA."""

from __future__ import annotations

import logging

import mne
import numpy as np
import pytest

from mmme_neuro.config import Config
from mmme_neuro.constants import SCALP_CHANNELS
from mmme_neuro.ingest import find_sessions, ingest_session
from mmme_neuro.io.coding import read_coding
from mmme_neuro.preprocessing import (
    PreprocessOptions,
    detect_bad_channels,
    filter_pad_s,
    filter_spans,
    fir_decimate,
    fir_kernel,
    fir_zero_phase,
    get_segment_map,
    ica_stability_table,
    notch_kernel,
    preprocess_segments,
    read_segments,
)

FAST = dict(ica_max_iter=200, ica_n_components=15)


def _no_ica(cfg: Config) -> Config:
    return cfg.model_copy(update={"preprocessing": cfg.preprocessing.model_copy(update={"ica": False})})


@pytest.fixture(scope="module")
def session(ci7_study):
    paths = ci7_study
    coding = read_coding(paths.coding_file)
    files = find_sessions(paths.raw_dir, coding)
    return ingest_session(files[0], coding.expressions)


@pytest.fixture(scope="module")
def segments(session):
    raw = session.eeg_raw
    pad = filter_pad_s(raw.info["sfreq"], Config())
    return read_segments(raw, session.expressions.eeg_onset_s.to_numpy(), -1.0, 1.5, pad)


def test_segment_reader_is_lazy_and_reads_only_spans(session):
    raw = session.eeg_raw
    sf = raw.info["sfreq"]
    centers = session.expressions.eeg_onset_s.to_numpy()[::4][:4]
    pad = 2.0
    seg = read_segments(raw, centers, -1.0, 1.5, pad)
    smap = get_segment_map(seg)
    assert raw.preload is False
    per_epoch = (2.5 + 2 * pad) * sf
    assert seg.n_times == smap.n_orig_samples <= len(centers) * (per_epoch + 2)
    assert seg.n_times >= 0.9 * len(centers) * per_epoch  # spans far apart: hardly merged
    assert seg.n_times < raw.n_times / 4
    assert "Trigger" not in seg.ch_names
    # the segment sample of a centre holds the recording's sample
    x = int(round(centers[2] * sf))
    pos = int(smap.to_segment(np.array([x]))[0])
    np.testing.assert_allclose(seg.get_data(picks=["CZ"], start=pos, stop=pos + 5),
                               raw.get_data(picks=["CZ"], start=x, stop=x + 5))  # fmt: skip
    # joins are marked so filters do not run across them
    descr = set(seg.annotations.description)
    assert {"BAD boundary", "EDGE boundary"} <= descr


def test_pad_follows_filter_length():
    cfg = Config()
    # 1000 Hz: 45-Hz low-pass with a 5-Hz transition (661 taps) at the native rate, then decimation to
    # 250 Hz and MNE's default 0.1-Hz high-pass there (transition 0.1 Hz -> 33 s = 8251 samples)
    assert filter_pad_s(1000.0, cfg) == pytest.approx(661 / 2 / 1000 + 8251 / 2 / 250 + 0.1)
    # 250 Hz recording: no decimation, both filters at 250 Hz
    assert filter_pad_s(250.0, cfg) == pytest.approx(165 / 2 / 250 + 8251 / 2 / 250 + 0.1)
    no_hp = cfg.preprocessing.model_copy(update={"l_freq": None})
    assert filter_pad_s(1000.0, no_hp, extra_hz=None) < 1.0


def test_segment_filter_equals_whole_recording_filter(session, segments):
    cfg = _no_ica(Config())
    opts = PreprocessOptions(detect_bads=False, interpolate_bads=False, resample=False)
    clean, report = preprocess_segments(segments, cfg, options=opts)
    assert report["steps"]["bandpass"]["l_freq_hz"] == 0.1
    assert report["steps"]["notch"]["method"].startswith("subsumed")
    # the same filters on the whole recording: 45-Hz low-pass (5-Hz transition: 50 Hz in the stop band,
    # so no notch), then the 0.1-Hz high-pass; equal away from the edges within 0.01 µV
    whole = session.eeg_raw.copy().load_data().pick(clean.ch_names)
    whole.filter(None, 45.0, h_trans_bandwidth=5.0, picks=["eeg", "eog", "ecg", "emg"], verbose=False)
    whole.filter(0.1, None, picks=["eeg", "eog", "ecg", "emg"], verbose=False)
    whole.set_eeg_reference(ref_channels=list(SCALP_CHANNELS), verbose=False)
    smap = get_segment_map(clean)
    sf = clean.info["sfreq"]
    worst = 0.0
    for x in (session.expressions.eeg_onset_s.to_numpy() * sf).astype(int):
        a, b = x - int(sf), x + int(1.5 * sf)
        if smap.span_of(np.array([a]), np.array([b]))[0] < 0:
            continue
        pos = int(smap.to_segment(np.array([a]))[0])
        seg_data = clean.get_data(picks="eeg", start=pos, stop=pos + b - a)
        worst = max(worst, float(np.abs(seg_data - whole.get_data(picks="eeg", start=a, stop=b)).max()))
    assert worst * 1e6 < 0.01  # µV, on signals of tens of µV


def test_fir_helpers_equal_mne_filters(segments):
    """The kernels designed once and applied span by span equal raw.filter / notch_filter (round-off)."""
    x = np.random.default_rng(3).standard_normal((4, 3000))
    for sf, lo, hi, n in ((250.0, 0.1, None, 3000), (1000.0, 30.0, 100.0, 3000), (250.0, 1.0, None, 200)):
        ref = mne.filter.filter_data(x[:, :n], sf, lo, hi, verbose=False)
        assert np.abs(fir_zero_phase(x[:, :n], fir_kernel(sf, lo, hi)) - ref).max() < 1e-12
    harmonics = np.arange(50.0, 500.0, 50.0)
    ref = mne.filter.notch_filter(x, 1000.0, harmonics, verbose=False)
    assert np.abs(fir_zero_phase(x, notch_kernel(1000.0, harmonics)) - ref).max() < 1e-12
    assert fir_kernel(250.0, 0.1, None) is fir_kernel(250.0, 0.1, None)  # designed once
    # a segmented Raw: every span filtered on its own, as skip_by_annotation="edge" does
    ours, theirs = segments.copy(), segments.copy()
    sf = ours.info["sfreq"]
    picks = mne.pick_types(ours.info, eeg=True, eog=True, ecg=True, emg=True)
    assert filter_spans(ours, fir_kernel(sf, 1.0, None), picks)
    theirs.filter(1.0, None, picks=picks, verbose=False)
    assert len(get_segment_map(ours).seg_start) > 1
    assert np.abs(ours.get_data() - theirs.get_data()).max() < 1e-15  # volts
    plain = mne.io.RawArray(segments.get_data(), mne.create_info(segments.ch_names, sf), verbose=False)
    assert not filter_spans(plain, fir_kernel(sf, 1.0, None), picks)  # no segment map: the caller uses raw.filter
    with pytest.raises(ValueError, match="odd number of taps"):
        fir_zero_phase(x, np.ones(4))


def test_fir_decimate_equals_filtering_then_decimating():
    """Only the kept samples computed (folded spectra) = the zero-phase convolution, then every k-th sample."""
    import scipy.signal

    rng = np.random.default_rng(5)
    h = fir_kernel(1000.0, None, 45.0, h_trans_bandwidth=5.0)  # the MMME low-pass: 661 taps
    for n in (1, 7, 330, 661, 662, 5003, 40000):
        for k in (1, 2, 4, 5):
            x = rng.standard_normal((3, n)) + np.linspace(0, 30, n)  # offset and drift: edges matter
            ref = scipy.signal.oaconvolve(x, h[None], mode="same", axes=-1)[:, ::k]
            got = fir_decimate(x, h, k)
            assert got.shape == ref.shape
            assert np.abs(got - ref).max() <= 1e-12 * np.abs(ref).max(), (n, k)
    short = fir_kernel(250.0, None, 20.0)
    x = rng.standard_normal((2, 999))
    with pytest.raises(ValueError, match="odd number of taps"):
        fir_decimate(x, np.ones(4), 2)
    with pytest.raises(ValueError, match="positive integer"):
        fir_decimate(x, short, 0)


def test_fused_reader_equals_whole_recording_low_passed_and_decimated(session):
    """Spans read, low-passed and decimated one at a time (make_epochs' reader) = the whole recording
    low-passed by MNE and decimated on each span's grid, away from the span edges."""
    from mmme_neuro.preprocessing import _read_decimated

    raw = session.eeg_raw
    sf = raw.info["sfreq"]
    k = 2
    cfg = Config().preprocessing.model_copy(update={"resample_sfreq": sf / k})
    seg, _ = _read_decimated(raw, session.expressions.eeg_onset_s.to_numpy(), -1.0, 1.5, 5.0, cfg)
    smap = get_segment_map(seg)
    assert seg.info["sfreq"] == sf / k and smap.n_spans > 1
    whole = raw.copy().load_data().pick(seg.ch_names)
    picks = mne.pick_types(whole.info, eeg=True, eog=True, ecg=True, emg=True)
    whole.filter(None, 45.0, h_trans_bandwidth=5.0, picks=picks, verbose=False)
    half = (len(fir_kernel(sf, None, 45.0, h_trans_bandwidth=5.0)) - 1) // 2
    ref, got = whole.get_data(), seg.get_data()
    for a, b, s0, s1 in zip(smap.orig_start, smap.orig_stop, smap.seg_start, smap.seg_stop, strict=True):
        inner = slice((half + k - 1) // k, (b - a - half) // k)  # no span edge within half a filter
        assert np.abs(got[:, s0:s1][:, inner] - ref[:, a:b:k][:, inner]).max() < 1e-12


def test_decimated_segments_equal_decimated_whole_recording(session, segments):
    """Low-pass, per-span decimation, then high-pass: equals the same chain on the whole recording."""
    sf = session.eeg_raw.info["sfreq"]
    k = 2  # the ci study is at 250 Hz: decimate to 125 Hz (1000 -> 250 Hz on MMME)
    new_sf = sf / k
    cfg = _no_ica(Config()).model_copy(update={"preprocessing": Config().preprocessing.model_copy(
        update={"ica": False, "resample_sfreq": new_sf})})  # fmt: skip
    opts = PreprocessOptions(detect_bads=False, interpolate_bads=False)
    clean, report = preprocess_segments(segments, cfg, options=opts)
    assert report["resample"]["decim"] == k and clean.info["sfreq"] == new_sf
    smap = get_segment_map(clean)
    whole = session.eeg_raw.copy().load_data().pick(clean.ch_names)
    whole.filter(None, 45.0, h_trans_bandwidth=5.0, picks=["eeg", "eog", "ecg", "emg"], verbose=False)
    lp = whole.get_data(picks="eeg")
    scalp = [i for i, c in enumerate(whole.copy().pick("eeg").ch_names) if c in SCALP_CHANNELS]
    filtered: dict[int, np.ndarray] = {}
    worst, n = 0.0, 0
    for x in (session.expressions.eeg_onset_s.to_numpy() * sf).astype(int):
        a, b = x - int(sf), x + int(1.5 * sf)
        i = int(smap.span_of(np.array([a]), np.array([b]))[0])
        if i < 0:
            continue
        phase = int(smap.orig_start[i] % k)
        if phase not in filtered:  # whole recording decimated on the grid of this span, then high-passed
            filtered[phase] = mne.filter.filter_data(lp[:, phase::k], new_sf, 0.1, None, verbose=False)
        a = a + (phase - a) % k  # first sample of the window on the span's grid
        pos = int(round(smap.to_segment(np.array([a]))[0]))
        m = (b - a) // k
        seg = clean.get_data(picks="eeg", start=pos, stop=pos + m)
        ref = filtered[phase][:, (a - phase) // k : (a - phase) // k + m]
        ref = ref - ref[scalp].mean(0)
        worst = max(worst, float(np.abs(seg - ref).max()))
        n += 1
    assert n > 5
    assert worst * 1e6 < 0.01, worst * 1e6  # µV, same filters on both sides


def test_average_reference_makes_scalp_mean_zero(segments):
    opts = PreprocessOptions(detect_bads=False, resample=False)
    clean, report = preprocess_segments(segments, _no_ica(Config()), options=opts)
    assert "M1" not in clean.ch_names and "M2" not in clean.ch_names
    scalp = clean.get_data(picks=list(SCALP_CHANNELS))
    assert np.abs(scalp.mean(axis=0)).max() < 1e-12  # V
    mast = _no_ica(Config()).model_copy(update={"preprocessing": Config().preprocessing.model_copy(
        update={"reference": "mastoids", "ica": False})})  # fmt: skip
    clean_m, report_m = preprocess_segments(segments, mast, options=opts)
    assert report_m["steps"]["reference"]["dropped"] == ["M1", "M2"]
    assert np.abs(clean_m.get_data(picks=list(SCALP_CHANNELS)).mean(axis=0)).max() > 1e-7


def test_bad_channels_found_and_interpolated(segments):
    raw = segments.copy().filter(0.1, 45.0, verbose=False)
    bads, scores = detect_bad_channels(raw)
    assert bads == []  # blinks on FP* do not make them "bad" (robust amplitude)
    data = raw._data
    rng = np.random.default_rng(0)
    data[raw.ch_names.index("C3")] += rng.normal(0, 200e-6, raw.n_times)
    data[raw.ch_names.index("PO4")] *= 1e-4
    bads, scores = detect_bad_channels(raw)
    assert bads == ["C3", "PO4"]
    assert scores.set_index("channel").loc["PO4", "flat"]
    seg = segments.copy()
    seg._data[seg.ch_names.index("C3")] += rng.normal(0, 200e-6, seg.n_times)
    clean, report = preprocess_segments(seg, _no_ica(Config()), options=PreprocessOptions(resample=False))
    assert report["bad_channels"] == ["C3"]
    assert report["steps"]["interpolate"]["channels"] == ["C3"]
    assert clean.info["bads"] == []
    c3 = clean.get_data(picks=["C3"])[0] * 1e6
    assert np.std(c3) < 30  # interpolated from neighbours, no longer 200 µV noise


def _veo_r2(raw, ch: str) -> float:
    y = raw.get_data(picks=[ch])[0]
    v = raw.get_data(picks=["VEO"])[0]
    return float(np.corrcoef(y, v)[0, 1] ** 2)


@pytest.mark.filterwarnings("ignore:FastICA did not converge")
def test_ica_removes_planted_blinks(segments):
    opts = PreprocessOptions(detect_bads=False, resample=False, **FAST)
    cfg = Config(seed=3)
    before, _ = preprocess_segments(segments, _no_ica(cfg), options=opts)
    after, report = preprocess_segments(segments, cfg, options=opts)
    assert report["ica"]["eog_components"], "no ocular component found"
    assert report["ica"]["fit_on"] == "all segments together"
    assert report["ica"]["muscle"] == "flag"
    assert set(report["ica"]["excluded_components"]) == set(report["ica"]["eog_components"])
    for ch in ("FP1", "FPZ", "FP2"):
        r2_before, r2_after = _veo_r2(before, ch), _veo_r2(after, ch)
        assert r2_before > 0.3
        assert r2_after < 0.2 * r2_before, (ch, r2_before, r2_after)
    # ICA is seeded: the same seed gives the same components
    again, report2 = preprocess_segments(segments, cfg, options=opts)
    assert report2["ica"]["eog_components"] == report["ica"]["eog_components"]
    np.testing.assert_allclose(again.get_data(picks=["FP1"]), after.get_data(picks=["FP1"]))


def _refits(cfg: Config, n: int) -> Config:
    return cfg.model_copy(update={"preprocessing": cfg.preprocessing.model_copy(update={"ica_stability_refits": n})})


@pytest.mark.filterwarnings("ignore:FastICA did not converge")
def test_ica_stability_check_refinds_the_planted_blinks_and_changes_nothing(segments):
    opts = PreprocessOptions(detect_bads=False, resample=False, **FAST)
    cfg = Config(seed=3)
    plain, plain_report = preprocess_segments(segments, cfg, options=opts)
    checked, report = preprocess_segments(segments, _refits(cfg, 2), options=opts)
    assert "stability" not in plain_report["ica"]
    # a side computation: the cleaned data are those of the main fit
    np.testing.assert_array_equal(checked.get_data(), plain.get_data())
    stab = report["ica"]["stability"]
    assert report["steps"]["ica"]["stability"] == stab
    assert stab["n_refits"] == 2 and [f["seed"] for f in stab["refits"]] == [4, 5]
    assert report["ica"]["excluded_components"], "no ocular component removed"
    assert stab["stable"]
    assert all(f["same_removal"] for f in stab["refits"])
    assert stab["smallest_removed_r"] > 0.95
    for f in stab["refits"]:
        assert len(f["removed_match_r"]) == len(report["ica"]["excluded_components"])
        assert 0 < f["rms_diff_uv"] <= f["max_abs_diff_uv"] == pytest.approx(f["max_abs_diff_uv"])
    table = ica_stability_table({"sub-01": report, "sub-02": plain_report})  # sub-02: no check, left out
    assert table["subject"].tolist() == ["sub-01", "sub-01"]
    assert table["same_removal"].all() and table["subject_stable"].all()
    assert (table["removed_components"] == ";".join(map(str, report["ica"]["excluded_components"]))).all()
    assert table["max_abs_diff_uv"].max() == stab["max_abs_diff_uv"]


@pytest.mark.filterwarnings("ignore:FastICA did not converge")
@pytest.mark.filterwarnings("ignore:.*converge")
def test_ica_stability_check_flags_an_unconverged_ica(segments, caplog):
    """One iteration from each seed's random start: the blink spreads over other components in every refit."""
    opts = PreprocessOptions(detect_bads=False, resample=False, ica_max_iter=1, ica_n_components=40)
    with caplog.at_level(logging.WARNING, logger="mmme_neuro.preprocessing"):
        _, report = preprocess_segments(segments, _refits(Config(seed=3), 3), options=opts)
    stab = report["ica"]["stability"]
    assert not stab["stable"]
    assert "ICA not stable across 3 refits" in caplog.text
    table = ica_stability_table({"sub-01": report})
    assert not table["subject_stable"].any()
    assert (~table["same_removal"] | (table["smallest_removed_r"] < 0.95)).any()


def test_ica_refit_comparison_matches_permuted_components(segments):
    from mmme_neuro.preprocessing import _ica_refit_comparison

    picks = [c for c in SCALP_CHANNELS if c in segments.ch_names][:20]
    ica = mne.preprocessing.ICA(n_components=6, method="picard", max_iter=50, random_state=0, verbose=False)
    ica.fit(segments.copy().pick(picks).crop(0, 60).load_data().filter(1.0, None, verbose=False), verbose=False)
    other = ica.copy()
    perm = np.array([3, 0, 5, 1, 4, 2])  # other's component perm[i] is ica's component i
    other.mixing_matrix_ = ica.mixing_matrix_.copy()
    other.mixing_matrix_[:, perm] = ica.mixing_matrix_
    other.unmixing_matrix_ = np.linalg.pinv(other.mixing_matrix_)
    r, same = _ica_refit_comparison(ica, other, [0, 2], sorted(perm[[0, 2]].tolist()))
    assert same and r == pytest.approx([1.0, 1.0])
    r, same = _ica_refit_comparison(ica, other, [0, 2], [0, 2])  # the same indices are other components
    assert not same


def test_ica_stability_needs_the_ica():
    with pytest.raises(ValueError, match="ica_stability_refits = 2 needs ica = true"):
        Config(preprocessing={"ica": False, "ica_stability_refits": 2})


def test_resample_by_decimation_is_recorded(segments):
    cfg = _no_ica(Config()).model_copy(update={"preprocessing": Config().preprocessing.model_copy(
        update={"ica": False, "resample_sfreq": 125.0})})  # fmt: skip
    _, report = preprocess_segments(segments, cfg, options=PreprocessOptions(detect_bads=False))
    assert report["resample"]["decim"] == 2
    assert report["steps"]["resample"]["to_hz"] == 125.0


def test_validation(session):
    with pytest.raises(ValueError, match="empty"):
        read_segments(session.eeg_raw, np.array([]), -1.0, 1.5, 1.0)
    with pytest.raises(ValueError, match="tmin"):
        read_segments(session.eeg_raw, np.array([10.0]), 1.0, 0.5, 1.0)
    with pytest.raises(ValueError, match="segment map"):
        get_segment_map(session.eeg_raw)


def test_fir_zero_phase_range_equals_the_whole_span_filter():
    """Outputs computed only where kept equal those of filtering the whole span, edges (reflection) included."""
    from mmme_neuro.preprocessing import _fir_zero_phase_range

    rng = np.random.default_rng(11)
    kernels = (fir_kernel(250.0, 0.1, None), fir_kernel(1000.0, None, 45.0, h_trans_bandwidth=5.0), np.hanning(11) / 5)
    for h in kernels:
        for n in (20000, 5000, 300, 3, 1):
            x = rng.standard_normal((3, n)) + 50.0  # an offset: the reflection's 2 x[0] term matters
            full = fir_zero_phase(x, h)
            for a, b in ((0, n), (0, max(1, n // 3)), (n // 2, n), (n // 4, n // 4 + 1), (n - 1, n)):
                got = _fir_zero_phase_range(x, h, a, b)
                assert got.shape == (3, b - a)
                assert np.abs(got - full[:, a:b]).max() < 1e-9, (len(h), n, a, b)
    with pytest.raises(ValueError, match="output range"):
        _fir_zero_phase_range(x, kernels[2], 0, 2)
    with pytest.raises(ValueError, match="odd number of taps"):
        _fir_zero_phase_range(np.zeros((1, 10)), np.ones(4), 0, 5)


def test_assembled_pieces_equal_mne_concatenation():
    from mmme_neuro.preprocessing import _assemble

    info = mne.create_info(["a", "b"], 250.0, "eeg")
    rng = np.random.default_rng(2)
    pieces = [rng.standard_normal((2, n)) for n in (100, 57, 75)]
    ours = _assemble(pieces, info.copy())
    mne_raw = mne.concatenate_raws([mne.io.RawArray(p, info.copy(), verbose=False) for p in pieces], verbose=False)
    np.testing.assert_array_equal(ours.get_data(), mne_raw.get_data())
    for field in ("onset", "duration", "description"):
        np.testing.assert_array_equal(getattr(ours.annotations, field), getattr(mne_raw.annotations, field))
    assert len(_assemble(pieces, info.copy(), boundaries=False).annotations) == 0
    assert len(_assemble(pieces[:1], info.copy()).annotations) == 0


def _without_windows(segments: mne.io.BaseRaw) -> mne.io.BaseRaw:
    """The same segments without their epoch-window record: preprocessing then keeps (and filters) whole spans."""
    from mmme_neuro.preprocessing import _WIN_KEY

    out = segments.copy()
    with out.info._unlock():
        out.info["temp"] = {k: v for k, v in out.info["temp"].items() if k != _WIN_KEY}
    return out


def _windows_of(clean, centers, sf, tmin=-1.0, tmax=1.5):
    smap = get_segment_map(clean)
    for x in (np.asarray(centers) * sf).astype(int):
        a, b = x + int(tmin * sf), x + int(tmax * sf)
        if smap.span_of(np.array([a]), np.array([b]))[0] < 0:
            yield None
            continue
        pos = int(smap.to_segment(np.array([a]))[0])
        yield clean.get_data(start=pos, stop=pos + b - a)


def test_cleaning_only_the_epoch_windows_equals_cleaning_whole_spans(session, segments):
    """After the high-pass, only the epoch windows (+- the ICA's margin) are kept and cleaned: every epoch
    sample equals cleaning the whole padded spans (round-off), on a fraction of the samples."""
    cfg = _no_ica(Config())
    opts = PreprocessOptions(detect_bads=False, interpolate_bads=False, resample=False)
    cropped, report = preprocess_segments(segments, cfg, options=opts)
    whole, report_whole = preprocess_segments(_without_windows(segments), cfg, options=opts)
    assert report_whole["cleaned"] is None and whole.n_times == segments.n_times
    kept = report["cleaned"]
    assert kept["n_samples"] == cropped.n_times < segments.n_times / 2
    assert kept["of_samples"] == segments.n_times
    assert report["segments"] == report_whole["segments"]  # the spans read, recorded as before
    assert cropped.info["highpass"] == whole.info["highpass"] == 0.1
    sf = segments.info["sfreq"]
    centers = session.expressions.eeg_onset_s.to_numpy()
    pairs = [(c, w) for c, w in zip(_windows_of(cropped, centers, sf), _windows_of(whole, centers, sf), strict=True)]
    assert sum(w is not None for _, w in pairs) > 5
    for c, w in pairs:
        assert (c is None) == (w is None)  # the same epochs fit
        if c is not None:
            assert np.abs(c - w).max() < 1e-15  # V
    # the windows include the ICA's margin: the fit copy of ICA sees the same samples either way
    margin = kept["margin_s"]
    assert margin == pytest.approx((len(fir_kernel(sf, 1.0, None)) // 2 + 1) / sf)


def test_fused_reader_crops_as_preprocessing_does_and_copies_the_emg_spans(session):
    """make_epochs' reader (low-pass, decimation, high-pass and crop span by span, threads) equals reading
    the spans then preprocessing them; its EMG spans equal read_segments' ones."""
    from mmme_neuro.preprocessing import _read_decimated

    raw = session.eeg_raw
    sf = raw.info["sfreq"]
    cfg = _no_ica(Config()).model_copy(update={"preprocessing": Config().preprocessing.model_copy(
        update={"ica": False, "resample_sfreq": sf / 2})})  # fmt: skip
    opts = PreprocessOptions(detect_bads=False, interpolate_bads=False)
    centers = session.expressions.eeg_onset_s.to_numpy()
    pad = filter_pad_s(sf, cfg)
    emg = {"picks": ["EMG", "T7", "T8"], "tmin": -1.0, "tmax": 1.5, "pad_s": 1.0}
    ref_seg, _ = _read_decimated(raw, centers, -1.0, 1.5, pad, cfg.preprocessing)
    ref, _ = preprocess_segments(ref_seg, cfg, options=opts)
    for threads in (1, 3):
        seg, emg_seg = _read_decimated(raw, centers, -1.0, 1.5, pad, cfg.preprocessing, crop=opts, emg=emg,
                                       n_jobs=threads)  # fmt: skip
        got, report = preprocess_segments(seg, cfg, options=opts)
        assert report["cleaned"]["n_samples"] == got.n_times < ref_seg.n_times / 2
        assert report["segments"] == get_segment_map(ref_seg).to_dict()
        for f in ("orig_start", "orig_stop", "seg_start", "seg_stop"):
            np.testing.assert_array_equal(getattr(get_segment_map(got), f), getattr(get_segment_map(ref), f))
        np.testing.assert_array_equal(got.get_data(), ref.get_data())
        emg_ref = read_segments(raw, centers, -1.0, 1.5, 1.0, picks=emg["picks"])
        assert emg_seg.ch_names == emg_ref.ch_names
        np.testing.assert_array_equal(emg_seg.get_data(), emg_ref.get_data())
        for f in ("orig_start", "orig_stop", "seg_start", "seg_stop"):
            np.testing.assert_array_equal(getattr(get_segment_map(emg_seg), f), getattr(get_segment_map(emg_ref), f))
    # EMG spans that do not lie inside the spans read are read apart by the caller
    _, none = _read_decimated(raw, centers, -1.0, 1.5, 0.5, cfg.preprocessing, crop=opts, emg={**emg, "pad_s": 2.0})
    assert none is None


def test_filter_settings_the_recording_cannot_honour_are_refused():
    """h_freq above a recording's Nyquist frequency was silently ignored (no low-pass); now an error with the numbers."""
    from mmme_neuro.preprocessing import check_rates

    ok = Config().preprocessing
    check_rates(500.0, ok)
    no_resample = ok.model_copy(update={"resample_sfreq": None, "h_freq": 300.0})
    with pytest.raises(ValueError, match=r"h_freq = 300.0 Hz is at or above the Nyquist frequency \(250 Hz\)"):
        check_rates(500.0, no_resample)
    check_rates(1000.0, no_resample)
    with pytest.raises(ValueError, match=r"resample_sfreq = 250.0 Hz is above the recording's rate \(200 Hz\)"):
        check_rates(200.0, ok.model_copy(update={"h_freq": 40.0}))
