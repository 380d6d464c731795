"""Synthetic BIOPAC physiology: format, markers on the physiology clock, neurokit2 checks, planted effects."""

from __future__ import annotations

import warnings

import neurokit2 as nk
import numpy as np
import pandas as pd
import pytest
import scipy.io

from mmme_neuro.constants import BIOPAC_LABELS, BIOPAC_UNITS, DIGITAL_HIGH_V
from mmme_neuro.simulate.cardiac import cardio_respiratory
from mmme_neuro.simulate.design import design_study
from mmme_neuro.simulate.effects import effects_for_scale, null_effects, subject_effects
from mmme_neuro.simulate.physio import PhysioTruth, simulate_physio
from mmme_neuro.simulate.writers_physio import write_acqknowledge_mat, write_physio_csv

SEED = 42
N_SUBJECTS = 6  # ci subjects used for the neurokit2 and planted-effect checks
COL = {label: i for i, label in enumerate(BIOPAC_LABELS)}
EFFECTS = effects_for_scale("ci")  # the ci study's strong effects


# ----------------------------------------------------------------------------- helpers


def _decode_digital(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Marker samples and codes from the 8 digital lines: every change to a non-zero code."""
    bits = data[:, [COL[f"Digital (STP Input {i})"] for i in range(8)]] > DIGITAL_HIGH_V / 2
    code = bits.astype(np.int64) @ (1 << np.arange(8))
    onset = np.flatnonzero((code != np.concatenate([[0], code[:-1]])) & (code > 0))
    return onset, code[onset]


def _window_mean(x: np.ndarray, i0: int, a_s: float, b_s: float, fs: float) -> float:
    return float(np.mean(x[i0 + int(round(a_s * fs)) : i0 + int(round(b_s * fs))]))


def _isolated(onsets_s: np.ndarray, gap_s: float = 8.0) -> np.ndarray:
    """True for expressions with no other expression in the ``gap_s`` before (clean baseline)."""
    prev = np.concatenate([[-np.inf], onsets_s[:-1]])
    return (onsets_s - prev) > gap_s


def _analyse(subject, effects) -> dict:
    """Simulate one ci subject and run the neurokit2 pipelines on it."""
    data, truth = simulate_physio(subject, effects, SEED)
    fs = subject.physio_sfreq
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # ecg_process/ppg_process minus delineation and quality indices (seconds per call)
        ecg_clean = nk.ecg_clean(data[:, COL["ECG, X, RSPEC-R"]], sampling_rate=fs)
        _, ecg_info = nk.ecg_peaks(ecg_clean, sampling_rate=fs)
        ecg_rate = nk.ecg_rate(ecg_info, sampling_rate=fs, desired_length=len(data))
        ppg_clean = nk.ppg_clean(data[:, COL["PPG, X, PPGED-R"]], sampling_rate=fs)
        _, ppg_info = nk.ppg_peaks(ppg_clean, sampling_rate=fs)
        ppg_rate = nk.ppg_rate(ppg_info, sampling_rate=fs, desired_length=len(data))
        eda, eda_info = nk.eda_process(data[:, COL["EDA, X, PPGED-R"]], sampling_rate=fs)
        rsp, _ = nk.rsp_process(data[:, COL["RSP, X, RSPEC-R"]], sampling_rate=fs)
    cr = cardio_respiratory(subject, effects, SEED)
    ex = subject.expressions
    rows = []
    onsets = ex.eeg_onset_s.to_numpy(dtype=float)
    iso = _isolated(onsets)
    hr_rate = np.asarray(ecg_rate)
    phasic = eda.EDA_Phasic.to_numpy()
    rsp_amp = rsp.RSP_Amplitude.to_numpy()
    for k, (kind, on_eeg, i0) in enumerate(
        zip(ex.kind, onsets, truth.physio_onset_sample, strict=True)
    ):
        i0 = int(i0)
        if not truth.recorded[k] or i0 < 3 * fs or i0 + 6 * fs > data.shape[0]:
            continue
        g = cr.grid_s
        expected = (
            cr.hr_bpm[(g >= on_eeg + 2) & (g < on_eeg + 4)].mean()
            - cr.hr_bpm[(g >= on_eeg - 2) & (g < on_eeg)].mean()
        )
        rows.append(
            dict(
                kind=kind,
                isolated=bool(iso[k]),
                d_hr=_window_mean(hr_rate, i0, 2, 4, fs) - _window_mean(hr_rate, i0, -2, 0, fs),
                d_hr_expected=expected,
                hr_planted=float(truth.hr_change_bpm[k]),  # this expression's planted peak response
                d_eda=_window_mean(phasic, i0, 3, 5, fs) - _window_mean(phasic, i0, -1, 1, fs),
                d_rsp=_window_mean(rsp_amp, i0, 2, 5, fs) / _window_mean(rsp_amp, i0, -3, 0, fs)
                - 1,
            )
        )
    return dict(
        subject=subject, data=data, truth=truth, cardio=cr, ecg_info=ecg_info, eda_info=eda_info,
        rsp=rsp, ppg_rate=np.asarray(ppg_rate), events=pd.DataFrame(rows),
    )  # fmt: skip


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def design():
    return design_study("ci", SEED)


@pytest.fixture(scope="module")
def subject(design):
    return design.subjects[0]


@pytest.fixture(scope="module")
def simulated(subject):
    return simulate_physio(subject, EFFECTS, SEED)


@pytest.fixture(scope="module")
def planted(design):
    return [_analyse(s, EFFECTS) for s in design.subjects[:N_SUBJECTS]]


@pytest.fixture(scope="module")
def null(design):
    return [_analyse(s, null_effects(EFFECTS)) for s in design.subjects[:N_SUBJECTS]]


def _events(results: list[dict]) -> pd.DataFrame:
    return pd.concat([r["events"] for r in results], ignore_index=True)


# ----------------------------------------------------------------------------- array and truth


def test_shape_units_and_ranges(subject, simulated):
    data, truth = simulated
    assert data.shape == (subject.physio_n_samples, 17)
    assert data.dtype == np.float64
    assert np.isfinite(data).all()
    digital = data[:, [COL[f"Digital (STP Input {i})"] for i in range(8)]]
    assert set(np.unique(digital)) <= {0.0, DIGITAL_HIGH_V}
    skt = data[:, [COL["SKT A, X, SKT2-R"], COL["SKT B, X, SKT2-R"]]]
    assert 29.0 < skt.min() and skt.max() < 35.0
    eda = data[:, COL["EDA, X, PPGED-R"]]
    assert 0.5 < eda.min() and eda.max() < 20.0
    assert isinstance(truth, PhysioTruth)
    frame = truth.to_frame()
    assert len(frame) == len(subject.expressions)
    assert list(frame.expr_id) == list(subject.expressions.expr_id)
    for col in ("scr_occurred", "scr_onset_latency_s", "scr_amplitude_us", "physio_onset_sample"):
        assert col in frame
    occ = frame[frame.scr_occurred]
    lo, hi = EFFECTS.physio.scr_latency_s
    assert occ.scr_onset_latency_s.between(lo, hi).all()
    assert (occ.scr_amplitude_us > 0).all()
    assert frame[~frame.scr_occurred].scr_onset_latency_s.isna().all()


def test_deterministic_and_seeded(subject, simulated):
    data, truth = simulate_physio(subject, EFFECTS, SEED)
    np.testing.assert_array_equal(data, simulated[0])
    pd.testing.assert_frame_equal(truth.to_frame(), simulated[1].to_frame())
    other, _ = simulate_physio(subject, EFFECTS, SEED + 1)
    assert not np.allclose(other[:, COL["ECG, X, RSPEC-R"]], data[:, COL["ECG, X, RSPEC-R"]])


def test_null_shares_noise(subject, simulated):
    """The null study differs from the planted one only by the planted responses."""
    null_data, null_truth = simulate_physio(subject, null_effects(EFFECTS), SEED)
    skt = COL["SKT A, X, SKT2-R"]
    np.testing.assert_array_equal(null_data[:, skt], simulated[0][:, skt])
    _assert_scrs_follow_subject_values(subject, null_truth, null_effects(EFFECTS))
    assert null_truth.scr_occurred.sum() < simulated[1].scr_occurred.sum()


def test_r_peaks_on_physio_clock(subject, simulated):
    _, truth = simulated
    cr = cardio_respiratory(subject, EFFECTS, SEED)
    mapped = np.asarray(subject.to_physio_time(cr.r_peaks_s))
    mapped = mapped[(mapped >= 0) & (mapped < subject.physio_n_samples / subject.physio_sfreq)]
    np.testing.assert_allclose(truth.r_peaks_s, mapped)


def test_rate_channel_steps(subject, simulated):
    data, truth = simulated
    fs = subject.physio_sfreq
    rate = data[:, COL["ECG rate (.5 - 35 Hz)"]]
    beats = truth.r_peaks_s
    idx = np.round(beats * fs).astype(int)
    assert (rate[: idx[1]] == 0).all()
    np.testing.assert_allclose(rate[idx[1:]], 60.0 / np.diff(beats))
    np.testing.assert_allclose(rate[idx[1:-1] + 1], rate[idx[1:-1]])  # held until the next beat


# ----------------------------------------------------------------------------- writers


def test_mat_roundtrip(tmp_path, subject, simulated):
    data, _ = simulated
    path = write_acqknowledge_mat(subject, data, tmp_path / "Untitled1 (001).mat")
    assert path.exists()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    mat = scipy.io.loadmat(path)
    assert mat["data"].shape == (subject.physio_n_samples, 17)
    np.testing.assert_array_equal(mat["data"], data)
    assert [str(s).rstrip() for s in mat["labels"]] == list(BIOPAC_LABELS)
    assert [str(s).rstrip() for s in mat["units"]] == list(BIOPAC_UNITS)
    assert str(mat["isi_units"][0]).strip() == "ms"
    assert 1000.0 / float(mat["isi"].squeeze()) == pytest.approx(subject.physio_sfreq)
    assert float(mat["start_sample"].squeeze()) == 0.0


def test_mat_bytes_deterministic(tmp_path, subject, simulated):
    a = write_acqknowledge_mat(subject, simulated[0], tmp_path / "a.mat")
    data_again, _ = simulate_physio(subject, EFFECTS, SEED)
    b = write_acqknowledge_mat(subject, data_again, tmp_path / "b.mat")
    assert a.read_bytes() == b.read_bytes()


def test_writer_checks_shape(tmp_path, subject, simulated):
    with pytest.raises(ValueError, match="shape"):
        write_acqknowledge_mat(subject, simulated[0][:, :16], tmp_path / "x.mat")
    with pytest.raises(ValueError, match="samples"):
        write_acqknowledge_mat(subject, simulated[0][:-1], tmp_path / "x.mat")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name, sep", [("physio.csv", ","), ("physio.tsv", "\t")])
def test_csv_roundtrip(tmp_path, subject, simulated, name, sep):
    data, _ = simulated
    path = write_physio_csv(subject, data, tmp_path / name)
    frame = pd.read_csv(path, sep=sep)
    assert list(frame.columns) == list(BIOPAC_LABELS)
    assert frame.shape == data.shape
    np.testing.assert_allclose(frame.to_numpy(), data, rtol=1e-7, atol=1e-9)


def test_markers_at_planted_physio_samples(tmp_path, design):
    """Every in-physio marker is on the digital lines at round(to_physio_time(t) * fs), with its code."""
    for subj in design.subjects[:3]:
        data, _ = simulate_physio(subj, EFFECTS, SEED)
        mat = scipy.io.loadmat(
            write_acqknowledge_mat(subj, data, tmp_path / f"{subj.session_id}.mat")
        )
        fs = 1000.0 / float(mat["isi"].squeeze())
        onset, code = _decode_digital(mat["data"])
        mk = subj.markers[subj.markers.in_physio]
        expected = np.round(np.asarray(subj.to_physio_time(mk.eeg_time_s.to_numpy())) * fs).astype(
            int
        )
        np.testing.assert_array_equal(onset, expected)
        np.testing.assert_array_equal(code, mk.code.to_numpy())
        assert {"clip", "rest", "spurious"} <= set(mk.kind)


# ----------------------------------------------------------------------------- neurokit2


def test_neurokit_finds_r_peaks(planted):
    for r in planted:
        fs = r["subject"].physio_sfreq
        truth = r["truth"].r_peaks_s
        found = np.asarray(r["ecg_info"]["ECG_R_Peaks"]) / fs
        j = np.clip(np.searchsorted(found, truth), 1, len(found) - 1)
        err = np.minimum(np.abs(found[j] - truth), np.abs(found[j - 1] - truth))
        assert np.mean(err < 0.006) > 0.98  # within 1.5 samples at 250 Hz
        assert np.median(err) < 0.003
        assert abs(len(found) - len(truth)) <= 0.02 * len(truth)


def test_neurokit_rates(planted):
    for r in planted:
        truth = r["truth"]
        hr = 60.0 / np.mean(np.diff(truth.r_peaks_s))
        assert r["ppg_rate"].mean() == pytest.approx(hr, abs=1.5)
        assert r["rsp"].RSP_Rate.median() == pytest.approx(truth.breathing_rate_hz * 60, abs=1.0)


def test_neurokit_finds_planted_scrs(planted):
    found, total = 0, 0
    for r in planted:
        fs = r["subject"].physio_sfreq
        onsets = np.asarray(r["eda_info"]["SCR_Onsets"], dtype=float)
        onsets = onsets[np.isfinite(onsets)] / fs
        t = r["truth"]
        planted_on = (t.physio_onset_s + t.scr_onset_latency_s)[t.scr_occurred]
        total += planted_on.size
        found += sum(np.min(np.abs(onsets - p)) < 1.0 for p in planted_on)
    assert total > 50
    assert found / total > 0.75


# ----------------------------------------------------------------------------- planted effects


def test_hr_deceleration(planted):
    ev = _events(planted)
    me, mae = ev[ev.kind == "ME"], ev[ev.kind == "MaE"]
    # what neurokit2 measures on the ECG is what the shared timeline planted
    assert me.d_hr.mean() == pytest.approx(me.d_hr_expected.mean(), abs=1.0)
    assert mae.d_hr.mean() == pytest.approx(mae.d_hr_expected.mean(), abs=1.0)
    # clean baselines (no expression in the 8 s before): about the planted size, ME > MaE
    me_iso, mae_iso = me[me.isolated].d_hr.mean(), mae[mae.isolated].d_hr.mean()
    planted_me = me[me.isolated].hr_planted.mean()  # subjects' values, single-trial variability included
    assert planted_me < me_iso < 0.5 * planted_me
    assert me_iso < mae_iso - 1.5
    assert mae_iso < -0.5


def test_eda_rises_after_me(planted):
    ev = _events(planted)
    me_iso = ev[(ev.kind == "ME") & ev.isolated].d_eda.mean()
    mae_iso = ev[(ev.kind == "MaE") & ev.isolated].d_eda.mean()
    assert me_iso > 0.15
    assert me_iso > mae_iso


def test_rsp_amplitude_drop(planted):
    ev = _events(planted)
    me = ev[ev.kind == "ME"].d_rsp.mean()
    mae = ev[ev.kind == "MaE"].d_rsp.mean()
    assert me < -0.15
    assert me < mae - 0.1


def test_emg_bursts(subject, simulated):
    data, truth = simulated
    fs = subject.physio_sfreq
    emg = np.maximum(data[:, COL["EMG A, X, EMG2-R"]] ** 2, data[:, COL["EMG B, X, EMG2-R"]] ** 2)
    rms = {}
    for kind in ("ME", "MaE"):
        sel = (truth.kind == kind) & truth.recorded
        vals = [
            np.sqrt(emg[a : max(b, a + int(0.1 * fs))].mean())
            for a, b in zip(
                truth.physio_onset_sample[sel], truth.physio_offset_sample[sel], strict=True
            )
        ]
        rms[kind] = np.mean(vals)
    rest = np.sqrt(emg[: int(2 * fs)].mean())
    assert rest < rms["ME"] < rms["MaE"]


def test_null_has_no_condition_difference(null):
    ev = _events(null)
    for col, tol in (("d_hr", 1.5), ("d_eda", 0.03), ("d_rsp", 0.05)):
        me, mae = ev[ev.kind == "ME"][col].mean(), ev[ev.kind == "MaE"][col].mean()
        assert abs(me - mae) < tol, col
        assert abs(me) < tol, col
    for r in null:
        _assert_scrs_follow_subject_values(r["subject"], r["truth"], null_effects(EFFECTS))


def _assert_scrs_follow_subject_values(subject, truth, effects):
    """SCRs occur only in a condition whose subject values (drawn deviation) give them a chance and a size.

    The null has no SCR in the population; a subject's drawn ME - MaE deviation, shifted into
    [0, 1] and >= 0 µS, gives one condition of some subjects SCRs (and the other none).
    """
    p = subject_effects(effects, subject.index, SEED).physio
    for kind in ("ME", "MaE"):
        occurred = truth.scr_occurred[truth.kind == kind]
        if p.scr_probability[kind] == 0 or p.scr_amplitude_us[kind] == 0:
            assert not occurred.any(), kind
    assert min(p.scr_probability.values()) == 0 and min(p.scr_amplitude_us.values()) == 0
