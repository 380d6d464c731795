"""Between-subject variation of the planted effects: drawn, recorded, realised in the signals, recovered.

Every planted effect has, per subject, its own ME - MaE difference (population
+ a drawn deviation, :func:`mmme_neuro.simulate.effects.subject_effects`),
recorded in ``ground_truth.json``. The recovery checks estimate each
subject's difference from the generated signals and compare the spread of
the estimates with the planted SD; each runs once more on a sabotaged
generator (signals without the drawn deviations, truth unchanged) and must fail there.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import scipy.io

from mmme_neuro.config import ConfigError, load_config
from mmme_neuro.constants import ALL_EEG_FILE_CHANNELS, BIOPAC_LABELS, EEG_CHANNELS
from mmme_neuro.simulate.cardiac import cardio_respiratory, response_kernel
from mmme_neuro.simulate.design import design_study
from mmme_neuro.simulate.eeg import simulate_eeg
from mmme_neuro.simulate.effects import (
    Effects,
    effects_for_scale,
    expression_effects,
    null_effects,
    population_summary,
    subject_deviations,
    subject_effect_values,
    subject_effects,
    varied_parameters,
)
from mmme_neuro.simulate.physio import simulate_physio
from mmme_neuro.simulate.scales import get_scale
from mmme_neuro.simulate.study import default_study_dir, load_ground_truth, simulate_study
from mmme_neuro.stats import covariate_collinearity

CH = {c: i for i, c in enumerate(ALL_EEG_FILE_CHANNELS)}
RATE = BIOPAC_LABELS.index("ECG rate (.5 - 35 Hz)")
pytestmark = pytest.mark.filterwarnings("ignore:Not setting positions:RuntimeWarning")

# generator-level recovery: 24 short ci-like subjects, twice the ci spread
SEED = 5
SCALE = dataclasses.replace(get_scale("ci"), n_subjects=24, n_clips=5)
PLANTED = dataclasses.replace(effects_for_scale("ci"), between_subject_sd=2.0)
SABOTAGED = dataclasses.replace(PLANTED, between_subject_sd=0.0)  # signals without the deviations
BLANK = dataclasses.replace(null_effects(PLANTED), between_subject_sd=0.0)  # nothing planted: background


# ----------------------------------------------------------------------------- drawing


def test_deviations_follow_the_planted_sd_and_the_null_keeps_them():
    effects = effects_for_scale("default")
    null = null_effects(effects)
    n = 400
    for prm, prm0 in zip(varied_parameters(effects), varied_parameters(null), strict=True):
        dev = np.array([subject_deviations(effects, j, 1)[prm.key] for j in range(n)])
        assert prm.sd > 0 and prm0.sd == prm.sd, prm.key
        assert abs(dev.std(ddof=1) / prm.sd - 1) < 0.12, prm.key  # 400 subjects: SE of an SD ~3.5 %
        assert abs(dev.mean()) < 4 * prm.sd / np.sqrt(n), prm.key
        # the null draws the same deviations (same streams) around a zero population difference
        assert [subject_deviations(null, j, 1)[prm.key] for j in range(5)] == list(dev[:5])
        assert prm0.difference(prm0.population) == 0.0, prm.key
        diffs = np.array([prm0.difference(prm0.realise(d)) for d in dev])
        assert abs(diffs.mean()) < 4 * prm.sd / np.sqrt(n) and diffs.std() > 0.5 * prm.sd, prm.key
        # some subjects show the reverse of the population effect (realistic spread)
        planted = np.array([prm.difference(prm.realise(d)) for d in dev])
        sign = np.sign(prm.difference(prm.population))
        assert 0.0 < np.mean(np.sign(planted) == -sign) < 0.5, prm.key


def test_subject_values_are_physical_and_keep_the_difference():
    effects = effects_for_scale("ci")
    for j in range(60):
        drawn = subject_effects(effects, j, 3)
        assert drawn.drawn_for_subject == j and subject_effects(drawn, j, 3) is drawn
        p = drawn.physio
        assert all(0.0 <= v <= 1.0 for v in p.scr_probability.values())
        assert all(v >= 0.0 for v in p.scr_amplitude_us.values())
        assert all(v > -1.0 for v in p.rsp_amplitude_change.values())
        assert all(v > -1.0 for o in drawn.oscillations for v in o.relative_change.values())
        assert all(v >= 0.0 for v in drawn.coupling.amplitude_uv.values())
        values = subject_effect_values(effects, j, 3)
        for key in ("erp.amplitude_uv", "physio.hr_change_bpm", "coupling.amplitude_uv",
                    "physio.rsp_amplitude_change", "physio.scr_amplitude_us"):  # fmt: skip
            prm = next(v for v in varied_parameters(effects) if v.key == key)
            # shifting into the physical range keeps the difference: population + deviation
            assert values[key]["difference"] == pytest.approx(prm.difference(prm.population) + values[key]["deviation"])
    with pytest.raises(ValueError, match="drawn for subject 0"):
        subject_effects(subject_effects(effects, 0, 3), 1, 3)
    same = dataclasses.replace(effects, between_subject_sd=0.0)
    assert all(v["deviation"] == 0.0 for k, v in subject_effect_values(same, 4, 3).items() if k != "emg.gain")
    assert subject_effects(same, 4, 3).erp.amplitude_uv == effects.erp.amplitude_uv
    with pytest.raises(ValueError, match="between_subject_sd"):
        Effects(between_subject_sd=-1.0)


def test_ground_truth_lists_every_subjects_drawn_effects(ci_study, ci_null_study):
    truth, null = load_ground_truth(ci_study.root), load_ground_truth(ci_null_study.root)
    keys = {p.key for p in varied_parameters(effects_for_scale("ci"))}
    for t in (truth, null):
        assert t["version"] == 2 and t["params"]["between_subject_sd"] == 1.0
        assert set(t["between_subject"]["parameters"]) == keys | {"emg.gain"}
        for subj in t["subjects"]:
            assert set(subj["effects"]) == keys | {"emg.gain"}
            for key in keys:
                assert {"ME", "MaE", "difference", "deviation"} <= set(subj["effects"][key]), key
            ex = pd.DataFrame(subj["expressions"])
            assert {"erp_amplitude_uv", "emg_rms_uv", "emg_w_frontal", "emg_w_left", "emg_w_right"} <= set(ex)
            assert (ex.loc[ex.recorded, "emg_rms_uv"] > 0).all()
    # population: planted differences vs zero in the null; the subjects' deviations are the same draws
    for key, prm in null["between_subject"]["parameters"].items():
        if key == "emg.gain":
            continue
        assert prm["population_difference"] == 0.0, key
        assert prm["sd"] == truth["between_subject"]["parameters"][key]["sd"] > 0, key
        dev = [s["effects"][key]["deviation"] for s in null["subjects"]]
        assert dev == [s["effects"][key]["deviation"] for s in truth["subjects"]], key
        assert np.std(dev) > 0, key
    for key in ("erp.amplitude_uv", "physio.hr_change_bpm"):  # unbounded: difference = deviation
        for s in null["subjects"]:
            assert s["effects"][key]["difference"] == pytest.approx(s["effects"][key]["deviation"])
    assert truth["between_subject"] == json.loads(json.dumps(population_summary(effects_for_scale("ci"))))


# ----------------------------------------------------------------------------- recovery from the generated signals


def _recovery_ok(est: np.ndarray, se2: np.ndarray, truth: np.ndarray, planted_sd: float, what: str) -> None:
    """Raise AssertionError unless the subjects' estimates recover their drawn differences and spread.

    The spread of the estimates minus their sampling variance (method of moments) must
    match the SD of the drawn differences within 20 %, which itself must be a plausible
    sample of the planted SD; each subject's estimate must follow its drawn value (r > 0.85).
    """
    sd_truth = float(np.std(truth, ddof=1))
    sd_est = float(np.sqrt(max(np.var(est, ddof=1) - np.mean(se2), 0.0)))
    r = float(np.corrcoef(est, truth)[0, 1]) if np.std(est) > 0 else float("nan")
    assert 0.55 * planted_sd < sd_truth < 1.5 * planted_sd, (what, sd_truth, planted_sd)
    assert abs(sd_est / sd_truth - 1) < 0.2, (what, sd_est, sd_truth)
    assert r > 0.85, (what, r)


def _erp_trials(x: np.ndarray, x0: np.ndarray, subject) -> pd.DataFrame:
    """Planted ERP of each recorded expression: (signal - background) at the planted channels and latency."""
    e, fs = PLANTED.erp, subject.eeg_sfreq
    d = (x[:, [CH[c] for c in e.channels]].astype(float) - x0[:, [CH[c] for c in e.channels]]).mean(axis=1)
    ex = subject.expressions[subject.expressions.recorded]
    rows = []
    for kind, on in zip(ex.kind, ex.eeg_onset_s, strict=True):
        s = int(round((on + e.latency_s) * fs))
        rows.append((kind, d[s - int(0.02 * fs) : s + int(0.02 * fs) + 1].mean()))
    return pd.DataFrame(rows, columns=["kind", "value"])


def _emg_trials(x: np.ndarray, subject) -> pd.DataFrame:
    """Log RMS of the EMG channel over each recorded expression not overlapping another burst."""
    fs, ex = subject.eeg_sfreq, subject.expressions
    rows = []
    for r in ex[ex.recorded].itertuples():
        others = ex[ex.expr_id != r.expr_id]
        if ((others.eeg_onset_s < r.eeg_offset_s + 0.5) & (others.eeg_offset_s + 0.5 > r.eeg_onset_s)).any():
            continue
        seg = x[int(np.ceil(r.eeg_onset_s * fs)) : int(np.floor(r.eeg_offset_s * fs)), CH["EMG"]].astype(float)
        rows.append((r.kind, np.log(np.sqrt(np.mean(seg**2)))))
    return pd.DataFrame(rows, columns=["kind", "value"])


def _hr_trials(hr: np.ndarray, grid: np.ndarray, subject, peak_s: float) -> pd.DataFrame:
    """Each recorded expression's heart-rate response (bpm) in a difference series: least squares
    with one response kernel per expression (deconvolution: overlapping responses add up)."""
    ex = subject.expressions[subject.expressions.recorded]
    cols = [response_kernel(grid - on, peak_s) * (grid <= on + 6 * peak_s) for on in ex.eeg_onset_s]
    coef, *_ = np.linalg.lstsq(np.stack(cols, axis=1), hr, rcond=None)
    return pd.DataFrame({"kind": ex.kind.to_numpy(), "value": coef})


def _difference(trials: pd.DataFrame) -> tuple[float, float]:
    """ME - MaE mean of per-trial values and its sampling variance."""
    me, mae = trials.value[trials.kind == "ME"], trials.value[trials.kind == "MaE"]
    if min(len(me), len(mae)) < 2:
        return float("nan"), float("nan")  # the subject is left out of that measure
    return float(me.mean() - mae.mean()), float(me.var(ddof=1) / len(me) + mae.var(ddof=1) / len(mae))


@pytest.fixture(scope="module")
def recovered():
    """Per subject and generator (planted / sabotaged): ERP, EMG and HR estimates, with the drawn truth."""
    design = design_study(SCALE, SEED)
    e = PLANTED.erp
    s2 = e.width_s**2 + e.latency_jitter_s**2  # mean of the jittered Gaussian over the +-20 ms window
    shape = float(np.mean(e.width_s / np.sqrt(s2) * np.exp(-np.linspace(-0.02, 0.02, 11) ** 2 / (2 * s2))))
    rows = []
    for subj in design.subjects:
        values = subject_effect_values(PLANTED, subj.index, SEED)
        x0 = simulate_eeg(subj, BLANK, SEED)
        hr0 = cardio_respiratory(subj, BLANK, SEED)
        for name, eff in (("planted", PLANTED), ("sabotaged", SABOTAGED)):
            x = simulate_eeg(subj, eff, SEED)
            erp, erp_se2 = _difference(_erp_trials(x, x0, subj))
            emg, emg_se2 = _difference(_emg_trials(x, subj))
            cr = cardio_respiratory(subj, eff, SEED)
            hr, hr_se2 = _difference(_hr_trials(cr.hr_bpm - hr0.hr_bpm, cr.grid_s, subj, eff.physio.hr_peak_s))
            rows.append(dict(
                subject=subj.index, generator=name, erp=erp / shape, erp_se2=erp_se2 / shape**2,
                emg=emg, emg_se2=emg_se2, hr=hr, hr_se2=hr_se2,
                erp_truth=values["erp.amplitude_uv"]["difference"],
                emg_truth=values["emg.rms_uv"]["difference"],
                hr_truth=values["physio.hr_change_bpm"]["difference"],
            ))  # fmt: skip
    return pd.DataFrame(rows)


_PLANTED_SD = {
    "erp": PLANTED.erp.subject_sd_uv * PLANTED.between_subject_sd,
    "emg": PLANTED.emg.subject_sd_log * PLANTED.between_subject_sd,
    "hr": PLANTED.physio.hr_subject_sd_bpm * PLANTED.between_subject_sd,
}


@pytest.mark.parametrize("measure", sorted(_PLANTED_SD))
def test_recovered_between_subject_sd_matches_planted(recovered, measure):
    t = recovered[recovered.generator == "planted"].dropna(subset=[measure])
    assert len(t) >= 20
    _recovery_ok(t[measure].to_numpy(), t[f"{measure}_se2"].to_numpy(), t[f"{measure}_truth"].to_numpy(),
                 _PLANTED_SD[measure], measure)  # fmt: skip


@pytest.mark.parametrize("measure", sorted(_PLANTED_SD))
def test_recovery_check_fails_when_the_generator_ignores_the_deviations(recovered, measure):
    t = recovered[recovered.generator == "sabotaged"].dropna(subset=[measure])
    with pytest.raises(AssertionError):
        _recovery_ok(t[measure].to_numpy(), t[f"{measure}_se2"].to_numpy(), t[f"{measure}_truth"].to_numpy(),
                     _PLANTED_SD[measure], measure)  # fmt: skip


# ----------------------------------------------------------------------------- end to end: files


def _hr_from_rate(data: np.ndarray, fs: float, ex: pd.DataFrame, peak_s: float) -> float:
    """ME - MaE heart-rate response (bpm) from the BIOPAC rate channel: deconvolution with a drift term."""
    rate = data[:, RATE]
    step = int(round(fs / 10))  # 10 Hz is plenty for a response of seconds
    t = np.arange(0, rate.size, step) / fs
    y = rate[::step]
    ok = y > 0
    ex = ex[ex.recorded]
    cols = [np.ones_like(t), t / t[-1]]
    for kind in ("ME", "MaE"):
        k = np.zeros_like(t)
        for on in ex.physio_onset_s[ex.kind == kind]:
            k += response_kernel(t - on, peak_s) * (t <= on + 6 * peak_s)
        cols.append(k)
    coef, *_ = np.linalg.lstsq(np.stack(cols, axis=1)[ok], y[ok], rcond=None)
    return float(coef[2] - coef[3])


def test_recovered_hr_spread_from_study_files(tmp_path):
    """A written study with 3x the ci spread: per-subject HR differences from the .mat files follow ground_truth.json.

    Physiological noise (respiratory sinus arrhythmia, slow fluctuations) stays in: the
    estimates' SD must match the drawn differences' SD within 30 %, r > 0.9. The same
    estimator on the physiology of a generator that ignores the deviations fails.
    """
    study = simulate_study(tmp_path / "s", scale="ci", seed=8, n_subjects=8, between_subject_sd=3.0, progress=False)
    truth = load_ground_truth(study.root)
    assert truth["params"]["between_subject_sd"] == 3.0 and truth["effects"]["between_subject_sd"] == 3.0
    sd = truth["between_subject"]["parameters"]["physio.hr_change_bpm"]["sd"]
    assert sd == pytest.approx(3.0 * effects_for_scale("ci").physio.hr_subject_sd_bpm)
    peak = truth["effects"]["physio"]["hr_peak_s"]
    design = design_study("ci", 8, n_subjects=8)
    est, sabotaged, drawn = [], [], []
    for subj, rec in zip(design.subjects, truth["subjects"], strict=True):
        mat = scipy.io.loadmat(study.raw_dir / rec["physio_file"])
        ex = pd.DataFrame(rec["expressions"])
        est.append(_hr_from_rate(mat["data"], rec["physio_sfreq"], ex, peak))
        drawn.append(rec["effects"]["physio.hr_change_bpm"]["difference"])
        data, _ = simulate_physio(subj, dataclasses.replace(effects_for_scale("ci"), between_subject_sd=0.0), 8)
        sabotaged.append(_hr_from_rate(data, rec["physio_sfreq"], ex, peak))

    def check(values):
        assert abs(np.std(values, ddof=1) / np.std(drawn, ddof=1) - 1) < 0.3
        assert np.corrcoef(values, drawn)[0, 1] > 0.9

    check(est)
    with pytest.raises(AssertionError):
        check(sabotaged)


# ----------------------------------------------------------------------------- facial EMG


def test_emg_overlaps_between_me_and_mae_in_the_default_design():
    """Default scale: some MaE bursts are weaker than some ME bursts of the same subject; the EMG
    covariate is far from a copy of the condition; subjects differ (dz of a few units at most)."""
    design = design_study("default", 42)
    effects = effects_for_scale("default")
    rows = []
    for subj in design.subjects:
        t = expression_effects(subj, effects, 42).merge(subj.expressions[["expr_id", "kind", "recorded"]], on="expr_id")
        rows.append(t[t.recorded].assign(subject=subj.index, condition=t.kind))
    trials = pd.concat(rows, ignore_index=True)
    overlap = []
    for _, t in trials.groupby("subject"):
        me, mae = t.emg_rms_uv[t.condition == "ME"], t.emg_rms_uv[t.condition == "MaE"]
        if len(me) and len(mae):
            overlap.append(mae.min() < me.max())
    assert np.mean(overlap) >= 0.75, overlap
    col = covariate_collinearity(trials, "emg_rms_uv")
    assert abs(col["r"]) < 0.6 and col["vif"] < 1.6, col
    logr = covariate_collinearity(trials.assign(log_rms=np.log(trials.emg_rms_uv)), "log_rms")
    assert 0.2 < abs(logr["r"]) < 0.7, logr  # MaE larger on average, not always
    means = trials.groupby(["subject", "condition"]).emg_rms_uv.mean().unstack()
    d = means["MaE"] - means["ME"]
    dz = d.mean() / d.std(ddof=1)
    assert 0.5 < dz < 3.0, dz
    assert (np.log(means["MaE"] / means["ME"]) < 0.3).any()  # a subject with about equal (or reversed) EMG


def test_emg_leaks_into_the_eeg_with_a_spatial_pattern():
    """The EMG of the expressions alone (study minus the same study without EMG): strongest at the temporal
    and frontopolar sites, decaying towards the vertex, correlated between neighbours, independent sides."""
    subject = design_study("ci", 3).subjects[0]
    eff = dataclasses.replace(effects_for_scale("ci"), between_subject_sd=0.0)
    no_emg = dataclasses.replace(eff, emg=dataclasses.replace(eff.emg, rms_uv={"ME": 0.0, "MaE": 0.0}))
    leak = simulate_eeg(subject, eff, 3).astype(float) - simulate_eeg(subject, no_emg, 3)
    fs = subject.eeg_sfreq
    busy = np.zeros(len(leak), dtype=bool)
    for r in subject.expressions.itertuples():
        busy[int(r.eeg_onset_s * fs) : int((r.eeg_offset_s + 0.1) * fs)] = True
    x = leak[busy]
    rms = {c: float(np.sqrt(np.mean(x[:, CH[c]] ** 2))) for c in EEG_CHANNELS}
    assert rms["T7"] > rms["C5"] > rms["C3"] > rms["C1"] > 5 * rms["CZ"]
    assert rms["FT8"] > rms["FC6"] > rms["FC4"] > rms["FC2"]
    assert rms["FP1"] > rms["AF3"] > rms["F1"]
    assert min(rms["T7"], rms["T8"], rms["FPZ"]) > 10 * rms["PZ"]
    corr = np.corrcoef(x[:, [CH["T7"], CH["FT7"], CH["TP7"], CH["T8"], CH["FPZ"]]].T)
    assert corr[0, 1] > 0.9 and corr[0, 2] > 0.8  # neighbours share the muscle source
    assert abs(corr[0, 3]) < 0.3 and abs(corr[0, 4]) < 0.3  # other sites: independent sources
    # broadband: from 20 Hz (beta) up to the gamma band
    f = np.fft.rfftfreq(leak.shape[0], 1 / fs)
    p = np.abs(np.fft.rfft(leak[:, CH["T7"]])) ** 2
    assert p[(f > 20) & (f < 30)].mean() > 0.3 * p[(f > 60) & (f < 90)].mean()
    assert p[(f > 2) & (f < 15)].mean() < 0.01 * p[(f > 20) & (f < 30)].mean()


# ----------------------------------------------------------------------------- the knob


def test_between_subject_sd_knob(tmp_path, monkeypatch):
    from mmme_neuro.cli import main
    from mmme_neuro.simulate import scales

    cfg = load_config(None, paths={"data_dir": str(tmp_path)}, simulation={"scale": "ci", "between_subject_sd": 0.5})
    assert cfg.simulation.between_subject_sd == 0.5
    assert default_study_dir(cfg).name == "ci-seed42-bsd0.5"
    assert default_study_dir(load_config(None, simulation={"null": True})).name == "default-seed42-null"
    assert default_study_dir(load_config(None, simulation={"between_subject_sd": 0})).name == "default-seed42-bsd0"
    assert cfg.hash() != load_config(None, paths={"data_dir": str(tmp_path)}, simulation={"scale": "ci"}).hash()
    with pytest.raises(ConfigError, match="between_subject_sd"):
        load_config(None, simulation={"between_subject_sd": -1})
    # ensure_study hands the knob to the generator and keeps studies of different spreads apart
    from mmme_neuro.simulate.study import ensure_study

    monkeypatch.setitem(scales.SCALES, "ci", dataclasses.replace(scales.SCALES["ci"], n_subjects=1, n_clips=2))
    paths = ensure_study(cfg, progress=False)
    truth = load_ground_truth(paths.root)
    assert truth["params"]["between_subject_sd"] == 0.5
    assert truth["between_subject"]["parameters"]["erp.amplitude_uv"]["sd"] == pytest.approx(0.5 * effects_for_scale("ci").erp.subject_sd_uv)
    assert json.loads((paths.root / "COMPLETE").read_text())["between_subject_sd"] == 0.5
    # the command line
    assert main(["simulate", str(tmp_path / "bad"), "--between-subject-sd", "-1"]) == 2
    assert main(["simulate", str(tmp_path / "zero"), "--scale", "ci", "--subjects", "1", "--null",
                 "--between-subject-sd", "0"]) == 0  # fmt: skip
    zero = load_ground_truth(tmp_path / "zero")
    assert zero["params"]["null"] and zero["params"]["between_subject_sd"] == 0.0
    assert all(v.get("deviation", 0.0) == 0.0 for v in zero["subjects"][0]["effects"].values())
