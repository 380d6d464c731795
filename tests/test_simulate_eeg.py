"""Tests of the synthetic EEG generator and the EEGLAB/BrainVision writers."""

from __future__ import annotations

import dataclasses

import mne
import numpy as np
import pytest
import scipy.io
from scipy import signal

from mmme_neuro.constants import ALL_EEG_FILE_CHANNELS, EEG_CHANNELS
from mmme_neuro.simulate.design import design_study
from mmme_neuro.simulate.eeg import N_COLUMNS, simulate_eeg, simulate_eeg_chunks
from mmme_neuro.simulate.effects import effects_for_scale, expression_effects, null_effects
from mmme_neuro.simulate.writers_eeg import write_brainvision, write_eeglab

SEED = 11
CH = {c: i for i, c in enumerate(ALL_EEG_FILE_CHANNELS)}
EFFECTS = effects_for_scale("ci")  # the ci study's strong effects
NULL = null_effects(EFFECTS)
# MNE warns that the aux channels of the EEGLAB chanlocs have no position: expected.
pytestmark = pytest.mark.filterwarnings("ignore:Not setting positions:RuntimeWarning")


@pytest.fixture(scope="module")
def design():
    return design_study("ci", seed=SEED)


@pytest.fixture(scope="module")
def subject(design):
    return design.subjects[2]  # has the duplicated-marker quirk


@pytest.fixture(scope="module")
def data(subject):
    return simulate_eeg(subject, EFFECTS, SEED)


# --------------------------------------------------------------------------- analysis helpers


def _bandpass(x: np.ndarray, lo: float, hi: float, fs: float) -> np.ndarray:
    sos = signal.butter(4, [lo, hi], btype="bandpass", fs=fs, output="sos")
    return signal.sosfiltfilt(sos, x, axis=0)


def _epochs(x: np.ndarray, onsets_s: np.ndarray, fs: float, tmin: float, tmax: float) -> np.ndarray:
    """Epochs (n_epochs, n_times, ...) of ``x`` (time on axis 0) around onsets."""
    s = np.round(onsets_s * fs).astype(int)
    idx = s[:, None] + np.arange(int(round(tmin * fs)), int(round(tmax * fs)) + 1)[None, :]
    ok = (idx[:, 0] >= 0) & (idx[:, -1] < x.shape[0])
    return x[idx[ok]]


def _features(subject, effects) -> dict[str, dict[str, np.ndarray]]:
    """Per-condition trial-level measures of one simulated subject."""
    x = simulate_eeg(subject, effects, SEED).astype(np.float64)
    per_expr = expression_effects(subject, effects, SEED).set_index("expr_id")
    fs = subject.eeg_sfreq
    # EMG channel between expressions (tonic EMG, 1/f, line noise): adds to every burst's power
    t = np.arange(x.shape[0]) / fs
    busy = np.zeros(x.shape[0], dtype=bool)
    for a, b in zip(subject.expressions.eeg_onset_s, subject.expressions.eeg_offset_s, strict=True):
        busy |= (t > a - 1.0) & (t < b + 1.0)
    emg_rest_sq = float(np.mean(x[~busy, CH["EMG"]] ** 2))
    # single-trial ERP amplitudes (ground truth) placed at the onset samples, epoched like the EEG
    amp_series = np.zeros(x.shape[0])
    rec = subject.expressions[subject.expressions.recorded]
    amp_series[np.round(rec.eeg_onset_s.to_numpy() * fs).astype(int)] = per_expr.loc[rec.expr_id, "erp_amplitude_uv"]
    ex = subject.expressions[subject.expressions.recorded]
    erp_ch = [CH[c] for c in EFFECTS.erp.channels]
    theta = np.abs(signal.hilbert(_bandpass(x[:, CH["FZ"]], 4.0, 8.0, fs))) ** 2
    beta = (
        np.abs(signal.hilbert(_bandpass(x[:, [CH["C3"], CH["CZ"], CH["C4"]]], 18, 22, fs), axis=0))
        ** 2
    )
    nodes = [CH[c] for c in EFFECTS.coupling.nodes]
    phase = np.angle(signal.hilbert(_bandpass(x[:, nodes], 8.0, 12.0, fs), axis=0))
    lat = EFFECTS.erp.latency_s
    out: dict[str, dict[str, np.ndarray]] = {}
    for kind in ("ME", "MaE"):
        rows = ex[ex.kind == kind]
        on = rows.eeg_onset_s.to_numpy()
        t = np.arange(int(round(-1.2 * fs)), int(round(1.5 * fs)) + 1) / fs

        def win(a, b, t=t):
            return (t >= a) & (t <= b)

        def erp_at(cols, t=t, on=on):
            ep = _epochs(x[:, cols].mean(axis=1), on, fs, -1.2, 1.5)
            ep = ep - ep[:, win(-0.2, 0.0)].mean(axis=1, keepdims=True)
            return ep[:, win(lat - 0.02, lat + 0.02)].mean(axis=1)

        th = _epochs(theta, on, fs, -1.2, 1.5)
        be = _epochs(beta, on, fs, -1.2, 1.5).mean(axis=2)
        emg_sq, emg_planted_sq = [], []
        rms = per_expr.loc[rows.expr_id, "emg_rms_uv"].to_numpy() * effects.emg.emg_channel_gain
        for a, b, r in zip(rows.eeg_onset_s, rows.eeg_offset_s, rms, strict=True):
            others = ex[ex.eeg_onset_s != a]
            if ((others.eeg_onset_s < b) & (others.eeg_offset_s + effects.emg.tail_s > a)).any():
                continue  # inside another expression's burst (a long MaE reaches the next onset)
            emg_sq.append(x[int(np.ceil(a * fs)) : int(np.floor(b * fs)), CH["EMG"]] ** 2)
            emg_planted_sq.append(np.full(emg_sq[-1].size, r**2 + emg_rest_sq))
        out[kind] = dict(
            erp=erp_at(erp_ch),
            erp_amp=_epochs(amp_series, on, fs, 0.0, 0.0)[:, 0],  # each kept trial's planted amplitude
            erp_o1=erp_at([CH["O1"]]),
            theta_post=th[:, win(0.2, 0.9)].mean(axis=1),
            theta_pre=th[:, win(-1.0, -0.3)].mean(axis=1),
            beta_post=be[:, win(0.1, 0.9)].mean(axis=1),
            beta_pre=be[:, win(-1.0, -0.2)].mean(axis=1),
            emg_sq=np.concatenate(emg_sq) if emg_sq else np.zeros(0),
            emg_planted_sq=np.concatenate(emg_planted_sq) if emg_planted_sq else np.zeros(0),
            phase=_epochs(phase, on, fs, 0.2, 1.0),
        )
    return out


def _pooled(design, effects) -> dict[str, dict[str, np.ndarray]]:
    feats = [_features(s, effects) for s in design.subjects]
    return {
        k: {m: np.concatenate([f[k][m] for f in feats]) for m in feats[0][k]} for k in ("ME", "MaE")
    }


def _mean_plv(phase: np.ndarray) -> float:
    """Across-trial PLV averaged over time and over all node pairs."""
    z = np.exp(1j * phase)  # (n_trials, n_times, n_nodes)
    n = phase.shape[2]
    vals = [
        np.abs((z[:, :, i] * np.conj(z[:, :, j])).mean(axis=0)).mean()
        for i in range(n)
        for j in range(i + 1, n)
    ]
    return float(np.mean(vals))


def _diff_and_se(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    diff = a.mean() - b.mean()
    se = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    return float(diff), float(se)


@pytest.fixture(scope="module")
def planted(design):
    return _pooled(design, EFFECTS)


@pytest.fixture(scope="module")
def null(design):
    return _pooled(design, NULL)


# --------------------------------------------------------------------------- generator


def test_shape_dtype_and_amplitudes(subject, data):
    assert data.shape == (subject.eeg_n_samples, N_COLUMNS) == (subject.eeg_n_samples, 69)
    assert data.dtype == np.float32
    assert np.isfinite(data).all()
    rms = data[:, : len(EEG_CHANNELS)].std(axis=0)
    assert rms.min() > 5 and rms.max() < 40  # tens of µV
    assert np.abs(data[:, CH["VEO"]]).max() > 100  # blinks
    assert 500 < data[:, CH["EKG"]].max() < 2000  # R peaks ~1 mV
    # posterior alpha: more 8-12 Hz power at OZ than at FZ
    f, p = signal.welch(data[:, [CH["OZ"], CH["FZ"]]], fs=subject.eeg_sfreq, nperseg=1024, axis=0)
    band = (f >= 8) & (f <= 12)
    assert p[band, 0].mean() > 2 * p[band, 1].mean()
    # 1/f background: power falls with frequency at CZ
    pc = signal.welch(data[:, CH["CZ"]], fs=subject.eeg_sfreq, nperseg=1024)[1]
    assert pc[(f > 2) & (f < 4)].mean() > 5 * pc[(f > 60) & (f < 90)].mean()


def test_trigger_column(subject, data):
    trig = data[:, CH["Trigger"]]
    mk = subject.markers[subject.markers.in_eeg]
    samples = subject.eeg_sample(mk.eeg_time_s.to_numpy())
    assert np.array_equal(trig[samples], mk.code.to_numpy(dtype=np.float32))
    assert {77.0, 88.0} <= set(np.unique(trig))
    pulse = int(round(0.02 * subject.eeg_sfreq))
    assert (trig != 0).sum() == pulse * len(mk)


def test_chunk_size_independence(subject, data):
    for chunk_s in (3.3, 131.0, 1000.0):
        chunks = list(simulate_eeg_chunks(subject, EFFECTS, SEED, chunk_s=chunk_s))
        n = int(round(chunk_s * subject.eeg_sfreq))
        assert all(c.shape[0] == n for c in chunks[:-1]) and 0 < chunks[-1].shape[0] <= n
        assert np.array_equal(np.concatenate(chunks), data)


def test_determinism(subject, data):
    assert np.array_equal(simulate_eeg(subject, EFFECTS, SEED), data)
    assert not np.array_equal(simulate_eeg(subject, EFFECTS, SEED + 1), data)


def test_unrecorded_expressions_are_absent(subject):
    ex = subject.expressions.assign(recorded=False)
    hidden = dataclasses.replace(subject, expressions=ex)
    assert np.array_equal(simulate_eeg(hidden, EFFECTS, SEED), simulate_eeg(hidden, NULL, SEED))


# --------------------------------------------------------------------------- planted effects


def _expected_erp_diff() -> float:
    """ME - MaE difference expected in the ±20-ms window, latency jitter included."""
    e = EFFECTS.erp
    s2 = e.width_s**2 + e.latency_jitter_s**2
    dt = np.linspace(-0.02, 0.02, 41)
    shape = e.width_s / np.sqrt(s2) * np.exp(-(dt**2) / (2 * s2))
    return float((e.amplitude_uv["ME"] - e.amplitude_uv["MaE"]) * shape.mean())


def test_erp_effect(planted, null):
    # statistical check, tolerance 4 standard errors of the trial-level difference
    # (1/f background, alpha and artefacts make single trials noisy; jitter is in the expectation)
    diff, se = _diff_and_se(planted["ME"]["erp"], planted["MaE"]["erp"])
    assert se < 1.5
    assert abs(diff - _expected_erp_diff()) < 4 * se
    diff_o1, se_o1 = _diff_and_se(planted["ME"]["erp_o1"], planted["MaE"]["erp_o1"])
    assert abs(diff_o1) < 4 * se_o1
    diff0, se0 = _diff_and_se(null["ME"]["erp"], null["MaE"]["erp"])
    assert abs(diff0) < 4 * se0


def test_erp_ground_truth_is_exact(planted, null):
    # planted and null studies share the background (same seed), so their trial-by-trial
    # difference is the planted ERP itself: only the latency jitter of the trials varies
    # and the single-trial amplitudes (subject value x (1 + trial_cv N(0, 1)), expression_effects):
    # planted - null = population amplitude x the trial's factor, since both draw the same deviations
    e = EFFECTS.erp
    scale = _expected_erp_diff() / (e.amplitude_uv["ME"] - e.amplitude_uv["MaE"])
    for kind in ("ME", "MaE"):
        d = planted[kind]["erp"] - null[kind]["erp"]
        want = (planted[kind]["erp_amp"] - null[kind]["erp_amp"]) * scale
        assert abs(d.mean() - want.mean()) < 0.02 * e.amplitude_uv["ME"]
        assert abs(want.mean() - e.amplitude_uv[kind] * scale) < 0.1 * e.amplitude_uv["ME"]
        # O1 is not an ERP channel: nothing but the shifted heartbeats (HR response) differs
        assert abs((planted[kind]["erp_o1"] - null[kind]["erp_o1"]).mean()) < 0.3


def _emg_ratio(feats, key):
    return float(np.sqrt(feats["MaE"][key].mean() / feats["ME"][key].mean()))


def test_emg_effect(planted, null):
    # the EMG channel carries the planted bursts: each expression's own RMS (log-normal around its
    # subject's median for the condition, ground truth of expression_effects) x emg_channel_gain,
    # on top of the channel's resting power
    for feats in (planted, null):
        expected = _emg_ratio(feats, "emg_planted_sq")
        assert abs(_emg_ratio(feats, "emg_sq") - expected) < 0.1 * expected
    # planted: MaE bursts ~3x ME (population 18 / 6 µV); null: equal populations, the subjects'
    # drawn deviations and the expression spread remain
    assert 2.0 < _emg_ratio(planted, "emg_planted_sq") < 4.5
    assert 0.6 < _emg_ratio(null, "emg_planted_sq") < 1.6


def test_theta_increase(planted, null):
    me = planted["ME"]
    assert me["theta_post"].mean() > 1.8 * me["theta_pre"].mean()
    mae = planted["MaE"]  # no theta change planted for MaE
    assert 0.75 < mae["theta_post"].mean() / mae["theta_pre"].mean() < 1.33
    me0 = null["ME"]
    assert 0.75 < me0["theta_post"].mean() / me0["theta_pre"].mean() < 1.33


def test_beta_decrease(planted, null):
    mae = planted["MaE"]
    assert mae["beta_post"].mean() < 0.75 * mae["beta_pre"].mean()
    mae0 = null["MaE"]
    assert 0.8 < mae0["beta_post"].mean() / mae0["beta_pre"].mean() < 1.25


def test_coupling_plv(planted, null):
    def plv(feats):
        n = min(len(feats["ME"]["phase"]), len(feats["MaE"]["phase"]))  # same bias
        return _mean_plv(feats["ME"]["phase"][:n]), _mean_plv(feats["MaE"]["phase"][:n])

    me, mae = plv(planted)
    assert me > mae + 0.25
    me0, mae0 = plv(null)
    assert abs(me0 - mae0) < 0.1


# --------------------------------------------------------------------------- writers


def test_eeglab_roundtrip(subject, data, tmp_path):
    path = write_eeglab(subject, simulate_eeg_chunks(subject, EFFECTS, SEED, chunk_s=17.0),
                        tmp_path / "sub.set")  # fmt: skip
    assert path == tmp_path / "sub.set" and (tmp_path / "sub.fdt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub.fdt", "sub.set"]  # no temp left
    raw = mne.io.read_raw_eeglab(path, preload=True)
    assert raw.ch_names == list(ALL_EEG_FILE_CHANNELS)
    assert raw.info["sfreq"] == subject.eeg_sfreq
    assert raw.n_times == subject.eeg_n_samples
    types = raw.get_channel_types()
    assert types[:64] == ["eeg"] * 64 and types[64:] == ["eog", "eog", "ecg", "emg", "stim"]
    np.testing.assert_allclose(raw.get_data().T * 1e6, data, rtol=1e-6, atol=1e-4)
    mk = subject.markers[subject.markers.in_eeg]
    ann = raw.annotations
    assert list(ann.description) == [str(c) for c in mk.code]
    assert np.array_equal(
        np.round(ann.onset * subject.eeg_sfreq).astype(int), subject.eeg_sample(mk.eeg_time_s)
    )
    assert {"77", "88"} <= set(ann.description)
    assert (mk.kind == "duplicate").any()
    pos = raw.get_montage().get_positions()["ch_pos"]
    assert pos["CZ"][2] > 0.08 and pos["FPZ"][1] > 0.08 and pos["T7"][0] < -0.06  # head frame, m
    # header fields as eeglabio writes them
    m = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False, appendmat=False)
    assert m["data"] == "sub.fdt" and m["nbchan"] == 69 and m["trials"] == 1
    assert m["pnts"] == subject.eeg_n_samples and m["srate"] == subject.eeg_sfreq
    assert m["event"][0].latency == subject.eeg_sample(mk.eeg_time_s.iloc[0]) + 1


def test_eeglab_reproducible_bytes(subject, tmp_path):
    def fdt(seed, name):
        write_eeglab(subject, simulate_eeg_chunks(subject, EFFECTS, seed), tmp_path / f"{name}.set")
        return (tmp_path / f"{name}.fdt").read_bytes()

    a, b, c = fdt(SEED, "a"), fdt(SEED, "b"), fdt(SEED + 1, "c")
    assert a == b and a != c
    assert len(a) == subject.eeg_n_samples * 69 * 4


def test_eeglab_rejects_wrong_length(subject, data, tmp_path):
    with pytest.raises(ValueError, match="samples"):
        write_eeglab(subject, [data[:100]], tmp_path / "bad.set")
    assert not any(tmp_path.iterdir())


def test_brainvision_roundtrip(subject, data, tmp_path):
    path = write_brainvision(subject, data, tmp_path / "sub.vhdr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub.eeg", "sub.vhdr", "sub.vmrk"]
    raw = mne.io.read_raw_brainvision(path, preload=True)
    assert raw.ch_names == list(ALL_EEG_FILE_CHANNELS)
    assert raw.n_times == subject.eeg_n_samples and raw.info["sfreq"] == subject.eeg_sfreq
    np.testing.assert_allclose(raw.get_data().T * 1e6, data, rtol=1e-6, atol=1e-3)
    mk = subject.markers[subject.markers.in_eeg]
    stim = raw.annotations[[d.startswith("Stimulus/") for d in raw.annotations.description]]
    assert [d.split("/S")[-1].strip() for d in stim.description] == [str(c) for c in mk.code]
    assert np.array_equal(
        np.round(stim.onset * subject.eeg_sfreq).astype(int), subject.eeg_sample(mk.eeg_time_s)
    )
