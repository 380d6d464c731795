"""Physiology layer (mmme_neuro.physio, mmme_neuro.concordance), its figures and analyses.physio_concordance.

The planted-effect tests run the script once on the `ci` study (converted to
BIDS) and compare its outputs with the ground truth of
``mmme_neuro.simulate.effects.PhysioEffect`` (HR -8/-3 bpm peaking 2.5 s
after onset; SCR probability 0.9/0.5, latency 1-3 s; respiration amplitude
x0.6/x0.9). The null tests simulate the physiology directly (no files).

Tolerances against NeuroKit2's reference processing (``nk.ecg_process``,
``nk.eda_process`` at the native rate, same signal):
R-peaks identical; beat-to-beat heart rate within 0.5 bpm; every reference
SCR >= 0.05 µS matched by one of ours with peak within 0.5 s and amplitude
within 20 % (ours run on the signal downsampled to 50 Hz).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmme_neuro import concordance as co
from mmme_neuro import physio as ph
from mmme_neuro.containers import load_netcdf
from mmme_neuro.reporting import validate_summary
from mmme_neuro.stats import fdr, mixed_model

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def script_out(ci_bids, tmp_path_factory) -> Path:
    from analyses.physio_concordance import main

    out = tmp_path_factory.mktemp("physio_out")
    assert main(["--bids-root", str(ci_bids), "--out", str(out)]) == 0
    return out


def _simulated_features(seed: int, null: bool) -> pd.DataFrame:
    """Epoch features of the ci design simulated directly (physiology clock, no files, no NE)."""
    from mmme_neuro.simulate.design import design_study
    from mmme_neuro.simulate.effects import Effects, null_effects
    from mmme_neuro.simulate.physio import simulate_physio

    effects = null_effects() if null else Effects()
    rows = []
    for subj in design_study("ci", seed).subjects:
        data, truth = simulate_physio(subj, effects, seed)
        sig = pd.DataFrame({"ECG": data[:, 5], "RSP": data[:, 1], "EDA": data[:, 4]})
        proc, info = ph.process_physio(sig, subj.physio_sfreq, eda_unit="uS")
        tf = truth.to_frame()
        tf = tf[tf["recorded"]].sort_values("physio_onset_s")
        on = tf["physio_onset_s"].to_numpy()
        prev = np.diff(on, prepend=-np.inf)
        ev = pd.DataFrame({"event_id": tf["expr_id"].to_numpy(), "subject": subj.name, "condition": tf["kind"].to_numpy(),
                           "onset_s": on, "clean_baseline": prev >= 8.0})  # fmt: skip
        rows.append(ph.event_features(proc, info, ev))
    return pd.concat(rows, ignore_index=True)


def _null_pvalues(feats: pd.DataFrame) -> dict[str, float]:
    out = {}
    for m, clean in (("hr_change_bpm", True), ("scr_magnitude_us", False), ("rsp_amplitude_change", True)):
        d = feats[feats["clean_baseline"]] if clean else feats
        t = mixed_model(d.dropna(subset=[m]), measure=m, reference="MaE", conditions=("ME", "MaE"))
        out[m] = float(t.loc[t["kind"] == "condition", "p"].iloc[0])
    return dict(zip(out, fdr(np.array(list(out.values())), "fdr_bh"), strict=True))


# ----------------------------------------------------------------------------- planted effects (script)


def test_script_outputs(script_out):
    for name in ("physio_timecourses.nc", "epoch_features.csv", "window_features.csv", "concordance.csv",
                 "scr_rates.csv", "quality.csv", "summary.json", "summary.md", "timecourses.png",
                 "concordance_me_vs_mae.pdf", "concordance_me_vs_ne.png", "latencies.png"):  # fmt: skip
        assert (script_out / name).is_file(), name
    summary = json.loads((script_out / "summary.json").read_text())
    validate_summary(summary)
    group = load_netcdf(script_out / "physio_timecourses.nc")
    assert group.dims == ("subject", "condition", "signal", "time")
    assert list(group["signal"].values) == ["hr", "eda", "rsp"] and group.sizes["subject"] == 8
    conc = pd.read_csv(script_out / "concordance.csv")
    assert set(conc["window_s"]) == set(co.WINDOWS_S) and {"lmm", "rm_corr"} <= set(conc["test"])
    # fits that did not converge cleanly are flagged in the summary, not only logged
    res = summary["results"]
    assert all(isinstance(m["converged"], bool) for m in res["epoch_models"])
    n_bad = int((conc["p"].notna() & ~conc["converged"].astype(bool)).sum())
    assert res["concordance"]["n_not_converged"] == n_bad
    assert ("did not converge cleanly" in (script_out / "summary.md").read_text(encoding="utf-8")) == (n_bad > 0)
    # pNN50 needs >= 6 RR intervals: not computed in the 2-s window
    assert conc.loc[(conc["feature"] == "pnn50") & (conc["window_s"] == 2.0), "p"].isna().all()


def test_planted_hr_deceleration(script_out):
    s = json.loads((script_out / "summary.json").read_text())["results"]
    me, mae = s["responses"]["ME"], s["responses"]["MaE"]
    assert me["hr_change_bpm"] < mae["hr_change_bpm"] < 0  # clean-baseline epochs
    assert -10.0 < s["hr_group_peak"]["ME"]["min_bpm"] < -4.0
    assert abs(s["hr_group_peak"]["ME"]["latency_s"] - 2.5) <= 0.75
    models = pd.DataFrame(s["epoch_models"])
    row = models[(models["measure"] == "hr_change_bpm") & (models["term"] == "ME - MaE")].iloc[0]
    assert row["estimate"] < 0 and row["p"] < 0.05


def test_group_eda_shows_both_planted_scrs(script_out):
    """Group EDA time courses on clean-baseline events: the planted SCRs of ME (0.6 µS, p .9) and MaE (0.25 µS, p .5).

    0-4 s: SCR latencies are 1-3 s, and an expression following an NE moment (>= 3 s later) answers after 4 s.
    Over all events (the old average) the MaE peak was ~0.004 µS: the previous response decays through the baseline.
    """
    group = load_netcdf(script_out / "physio_timecourses.nc").sel(signal="eda", time=slice(0.0, 4.0)).mean("subject")
    peak = {c: float(group.sel(condition=c).max()) for c in ("ME", "MaE", "NE")}
    assert peak["ME"] > peak["MaE"] > 0.02 and peak["MaE"] > peak["NE"], peak


def test_planted_scr_and_respiration(script_out):
    s = json.loads((script_out / "summary.json").read_text())["results"]
    me, mae = s["responses"]["ME"], s["responses"]["MaE"]
    assert 1.0 <= me["scr_latency_s_median"] <= 3.0 and 1.0 <= mae["scr_latency_s_median"] <= 3.0
    assert me["scr_rate"] > mae["scr_rate"] > s["timing"]["chance_scr_rate"]
    assert abs(me["scr_rate"] - 0.9) < 0.15 and abs(mae["scr_rate"] - 0.5) < 0.2
    assert s["timing"]["ME"]["vs_chance"]["p"] < 0.05
    assert me["rsp_amplitude_change"] < -0.1 and me["rsp_amplitude_change"] < mae["rsp_amplitude_change"]
    models = pd.DataFrame(s["epoch_models"])
    row = models[(models["measure"] == "rsp_amplitude_change") & (models["term"] == "ME - MaE")].iloc[0]
    assert row["estimate"] < 0 and row["p"] < 0.05


# ----------------------------------------------------------------------------- null


def test_null_no_condition_effect():
    feats = _simulated_features(42, null=True)
    assert (feats["condition"] == "ME").sum() >= 30
    p = _null_pvalues(feats)
    assert all(v >= 0.05 for v in p.values()), p


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_null_no_condition_effect_seeds(seed):
    p = _null_pvalues(_simulated_features(seed, null=True))
    assert all(v >= 0.01 for v in p.values()), p


# ----------------------------------------------------------------------------- reference processing


def test_hr_matches_neurokit_reference():
    import neurokit2 as nk

    fs = 250
    ecg = nk.ecg_simulate(duration=60, sampling_rate=fs, heart_rate=72, heart_rate_std=4, random_state=1)
    ref, rinfo = nk.ecg_process(ecg, sampling_rate=fs)
    _, info = ph.process_physio(pd.DataFrame({"ECG": ecg}), fs)
    rp = np.asarray(rinfo["ECG_R_Peaks"])
    np.testing.assert_array_equal(info["ECG_R_Peaks"], rp)
    np.testing.assert_allclose(info["ECG_Rate_beats"], ref["ECG_Rate"].to_numpy()[rp[1:]], atol=0.5)
    hrv = nk.hrv_time(rp, sampling_rate=fs)
    ours = ph.hrv_time(np.diff(rp) / fs * 1000)
    assert ours["rmssd_ms"] == pytest.approx(float(hrv["HRV_RMSSD"].iloc[0]), rel=1e-6)
    assert ours["sdnn_ms"] == pytest.approx(float(hrv["HRV_SDNN"].iloc[0]), rel=1e-6)
    assert ours["pnn50"] == pytest.approx(float(hrv["HRV_pNN50"].iloc[0]), abs=1e-6)


def test_scr_matches_neurokit_reference():
    import neurokit2 as nk

    fs = 250
    eda = nk.eda_simulate(duration=120, sampling_rate=fs, scr_number=8, noise=0.005, random_state=3)
    ref, rinfo = nk.eda_process(eda, sampling_rate=fs)
    _, info = ph.process_physio(pd.DataFrame({"EDA": eda}), fs, eda_unit="uS")
    scr = info["SCR"]
    peaks = np.asarray(rinfo["SCR_Peaks"]) / fs
    amps = np.asarray(rinfo["SCR_Amplitude"])
    big = amps >= 0.05
    assert big.sum() >= 4
    for t, a in zip(peaks[big], amps[big], strict=True):
        k = np.argmin(np.abs(scr["peak_s"].to_numpy() - t))
        assert abs(scr["peak_s"].iloc[k] - t) <= 0.5, (t, scr)
        assert scr["amplitude_us"].iloc[k] == pytest.approx(a, rel=0.2)


# ----------------------------------------------------------------------------- quality


def test_bad_segments_flagged_not_crashing():
    import neurokit2 as nk

    fs = 250
    n = 60 * fs
    ecg = nk.ecg_simulate(duration=60, sampling_rate=fs, heart_rate=70, random_state=0)
    ecg[10 * fs : 20 * fs] = np.nan  # dropout
    ecg[30 * fs : 40 * fs] = 0.2  # flat line
    rsp = nk.rsp_simulate(duration=60, sampling_rate=fs, respiratory_rate=15, random_state=0)
    rsp = np.clip(rsp, -np.inf, np.quantile(rsp, 0.7))  # clipped at the rail
    sig = pd.DataFrame({"ECG": ecg, "RSP": rsp, "EDA": np.full(n, 5e-6), "SKT": 32 + 0.01 * np.random.default_rng(0).standard_normal(n)})
    out, info = ph.process_physio(sig, fs)
    q = info["quality"].set_index(["signal", "segment"])
    assert "dropout" in q.loc[("ECG", 1), "reason"] and not q.loc[("ECG", 1), "ok"]
    assert "flatline" in q.loc[("ECG", 3), "reason"]
    assert q.loc[("ECG", 0), "ok"] and q.loc[("ECG", 5), "ok"]
    assert (~q.loc["RSP", "ok"]).all() and q.loc["RSP", "reason"].str.contains("clipping").all()
    assert "EDA" in info["errors"] and q.loc["EDA", "reason"].str.contains("processing_failed").all()
    t = out["time_s"].to_numpy()
    assert np.isnan(out.loc[(t >= 10) & (t < 20), "ECG_Rate"]).all()
    assert np.isnan(out.loc[(t >= 30) & (t < 40), "ECG_Rate"]).all()
    assert np.isfinite(out.loc[(t >= 2) & (t < 8), "ECG_Rate"]).all()
    assert out["EDA_Phasic"].isna().all() and len(info["SCR"]) == 0
    # epochs touching a bad segment are excluded with a reason, not averaged
    ev = pd.DataFrame({"event_id": ["a", "b"], "condition": ["ME", "MaE"], "onset_s": [15.0, 50.0]})
    f = ph.event_features(out, info, ev)
    assert np.isnan(f.loc[0, "hr_change_bpm"]) and "hr_poor_quality" in f.loc[0, "excluded_reason"]
    assert np.isfinite(f.loc[1, "hr_change_bpm"])


# ----------------------------------------------------------------------------- brain-body coupling


def test_brain_body_coupling_recovers_slope():
    rng = np.random.default_rng(0)
    rows = []
    for s in range(8):
        for i in range(20):
            eeg = rng.normal(5 + s, 2)
            rows.append({"expression_id": f"{s}-{i}", "subject": f"sub-{s:02d}", "condition": "ME" if i % 3 else "MaE",
                         "p3": eeg, "hr": -0.5 * (eeg - 5 - s) + rng.normal(0, 1) + s})  # fmt: skip
    df = pd.DataFrame(rows)
    table, joined = co.brain_body_coupling(df[["expression_id", "subject", "condition", "p3"]],
                                           df[["expression_id", "hr"]], "p3", "hr")  # fmt: skip
    # t on n_subjects - 1 = 7 df, with a by-subject random slope of the coupling
    assert table["estimate"].iloc[0] == pytest.approx(-0.5, abs=0.15) and table["p"].iloc[0] < 1e-3
    assert table["df"].iloc[0] == 7 and table["random_effects"].iloc[0].endswith("| subject)")
    df["hr"] = rng.normal(0, 1, len(df))
    table, _ = co.brain_body_coupling(df, df[["expression_id", "hr"]].copy(), "p3", "hr")
    assert table["p"].iloc[0] > 0.01
