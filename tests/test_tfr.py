"""Time-frequency layer (mmme_neuro.tfr), its figures and the script analyses.tfr_me_vs_mae.

The planted-effect tests run the script once on the `ci` study (BIDS, ocular
ICA off as in test_erp: the planted oscillations do not depend on it). The
null test uses the library directly on a channel subset (a cluster test over
fewer channels is still a valid test of the null) to bound its time.
"""

from __future__ import annotations

import json
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from mmme_neuro import tfr
from mmme_neuro.config import Config, load_config
from mmme_neuro.containers import load_netcdf
from mmme_neuro.reporting import validate_summary
from mmme_neuro.simulate.study import load_ground_truth

pytestmark = pytest.mark.filterwarnings("ignore:FastICA did not converge")
NO_ICA = "[preprocessing]\nica = false\n"


def _epochs(x: np.ndarray, sfreq: float, tmin: float, conds: list[str], names=("FZ", "CZ")) -> mne.EpochsArray:
    md = pd.DataFrame({"condition": conds, "epoch_id": [f"e{i}" for i in range(len(conds))], "subject": "sub-01"})
    info = mne.create_info(list(names), sfreq, "eeg")
    return mne.EpochsArray(x, info, tmin=tmin, metadata=md, verbose=False)


def _grid(sfreq: float, pad: float, cfg: Config | None = None) -> np.ndarray:
    cfg = cfg or Config()
    return np.arange(round((cfg.epochs.tmin - pad) * sfreq), round((cfg.epochs.tmax + pad) * sfreq) + 1) / sfreq


# ----------------------------------------------------------------------------- units


@pytest.mark.parametrize("method", ["morlet", "multitaper"])
@pytest.mark.parametrize("sfreq", [250.0, 1000.0])
def test_sinusoid_power_is_a_squared_over_two(method, sfreq):
    """Amplitude A (V) -> power A**2/2 (V**2) at its frequency, whatever sfreq and method (documented scaling)."""
    _, pad = tfr.padded_config(Config(), [6.0, 10.0, 20.0], method=method)
    t = _grid(sfreq, pad)
    amp = 4e-6
    x = np.stack([amp * np.cos(2 * np.pi * 10.0 * t + 0.3), 0.5 * amp * np.cos(2 * np.pi * 20.0 * t)])
    ep = _epochs(np.repeat(x[None], 2, 0), sfreq, t[0], ["ME", "MaE"])
    res = tfr.compute_tfr(ep, freqs=[6.0, 10.0, 20.0], method=method, rois={"a": ["FZ"]}, induced=False)
    p = res.tfr["power"].sel(condition="ME")
    # Morlet: flat to 0.2 %; multitaper: the DPSS sidelobes pick up the cosine's negative-frequency
    # image, a ~1 % ripple at 2 f whose time average is exact
    rtol = 2e-3 if method == "morlet" else 2e-2
    for ch, f, a in (("FZ", 10.0, amp), ("CZ", 20.0, 0.5 * amp)):
        pf = p.sel(channel=ch, freq=f).values
        np.testing.assert_allclose(pf, a**2 / 2, rtol=rtol)
        assert pf.mean() == pytest.approx(a**2 / 2, rel=3e-3)
    assert float(p.sel(channel="FZ", freq=20.0).max()) < 1e-3 * amp**2  # no leakage one octave away
    np.testing.assert_allclose(res.tfr["itc"].sel(freq=10.0, channel="FZ").values, 1.0, atol=1e-9)


@pytest.mark.parametrize(("shape", "sfreq", "decim"), [((3, 5, 700), 250.0, slice(3, None, 10)),
                                                     ((2, 4, 613), 250.0, 1), ((4, 70, 640), 500.0, 7),
                                                     ((1, 2, 1400), 1000.0, slice(0, None, 40))])  # fmt: skip
def test_morlet_decimated_equals_mne(shape, sfreq, decim):
    """The batched, spectrum-folded Morlet transform gives MNE's coefficients at MNE's kept samples
    (several chunks of signals in the 70-channel case)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape) + np.linspace(0, 2, shape[-1])  # a drift: low frequencies matter too
    f = np.geomspace(4, 45, 9)
    nc = np.maximum(3, f / 2)
    ref = mne.time_frequency.tfr_array_morlet(x, sfreq, f, n_cycles=nc, decim=decim, output="complex", verbose=False)
    got = tfr.morlet_decimated(x, sfreq, f, nc, decim)
    assert got.shape == ref.shape and got.dtype == np.complex128
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    with pytest.raises(ValueError, match="wavelets is longer than the signal"):
        tfr.morlet_decimated(x[..., :50], sfreq, f, nc, decim)


def test_baseline_normalisation_against_hand_values():
    t = np.round(np.arange(-1.0, 0.51, 0.25), 9)  # -1, -0.75, -0.5, -0.25, 0, 0.25, 0.5
    vals = np.array([1.0, 2.0, 3.0, 4.0, 8.0, 2.0, 6.0])
    da = xr.DataArray(vals, dims="time", coords={"time": xr.DataArray(t, dims="time", attrs={"units": "s"})})
    mean_b, sd_b = 2.0, np.std([1.0, 2.0, 3.0])  # baseline -1.0..-0.5 s (default), ddof 0
    np.testing.assert_allclose(tfr.baseline_normalize(da, mode="logratio").values, 10 * np.log10(vals / mean_b))
    np.testing.assert_allclose(tfr.baseline_normalize(da, mode="percent").values, 100 * (vals - mean_b) / mean_b)
    np.testing.assert_allclose(tfr.baseline_normalize(da, mode="zscore").values, (vals - mean_b) / sd_b)
    out = tfr.baseline_normalize(da, (-0.25, 0.0), mode="percent")
    np.testing.assert_allclose(out.values, 100 * (vals - 6.0) / 6.0)
    assert out.attrs["units"] == "%" and out.attrs["baseline_s"] == [-0.25, 0.0]
    with pytest.raises(ValueError, match="mode"):
        tfr.baseline_normalize(da, mode="ratio")
    with pytest.raises(ValueError, match="outside"):
        tfr.baseline_normalize(da, (-2.0, -1.5))


def test_edge_rule_burst_in_padding_does_not_reach_analysis_window():
    """The analysis window is unchanged by data beyond the padding (the rule), and changed by data inside it."""
    sf, freqs = 250.0, np.array([4.0, 8.0, 20.0])
    cfg = Config()
    h = tfr.edge_half_width_s(freqs)  # 5 * 3 / (2 pi 4) = 0.597 s
    assert h == pytest.approx(5 * 3 / (2 * np.pi * 4))
    _, pad = tfr.padded_config(cfg, freqs)
    assert pad == pytest.approx(0.6) and pad >= h
    rng = np.random.default_rng(1)
    long_pad = pad + 1.0
    t_long = _grid(sf, long_pad)
    x = rng.normal(size=(2, 2, t_long.size)) * 1e-6
    burst = np.where(t_long < cfg.epochs.tmin - pad, 50e-6 * np.sin(2 * np.pi * 4 * t_long), 0.0)  # only beyond the padding
    cut = (t_long >= cfg.epochs.tmin - pad - 1e-9) & (t_long <= cfg.epochs.tmax + pad + 1e-9)

    def run(data, tmin):
        ep = _epochs(data, sf, tmin, ["ME", "MaE"])
        return tfr.compute_tfr(ep, freqs=freqs, rois={"a": ["FZ"]}, itc_equalize=False).tfr

    short = run(x[..., cut], t_long[cut][0])
    long_burst = run(x + burst, t_long[0])  # same data + a 50 µV burst outside the padded epoch
    for v in ("power", "itc", "induced"):
        np.testing.assert_allclose(long_burst[v].values, short[v].values, rtol=1e-6, atol=1e-20)
    # the same burst moved into the padding, next to the window, does change it: the test can fail
    near = np.where((t_long >= cfg.epochs.tmin - 0.3) & (t_long < cfg.epochs.tmin), 50e-6 * np.sin(2 * np.pi * 4 * t_long), 0.0)
    changed = run(x + near, t_long[0])
    assert not np.allclose(changed["power"].values, short["power"].values, rtol=1e-3, atol=0)
    # an unpadded epoch violates the rule
    t0 = _grid(sf, 0.0)
    with pytest.raises(ValueError, match="edge rule"):
        tfr.compute_tfr(_epochs(x[..., : t0.size], sf, t0[0], ["ME", "MaE"]), freqs=freqs, rois={"a": ["FZ"]})


def test_itc_uses_equalised_counts_and_trial_table():
    sf = 250.0
    _, pad = tfr.padded_config(Config(), [6.0, 10.0])
    t = _grid(sf, pad)
    rng = np.random.default_rng(3)
    conds = ["ME"] * 3 + ["MaE"] * 9
    x = rng.normal(size=(12, 2, t.size)) * 1e-6
    ep = _epochs(x, sf, t[0], conds)
    md = ep.metadata.assign(emg_rms_uv=np.arange(12.0))
    res = tfr.compute_tfr(ep, md, freqs=[6.0, 10.0], rois={"front": ["FZ"], "cent": ["CZ"]}, bands={"theta": (4, 8), "alpha": (8, 13)})
    ds = res.tfr
    assert ds["n_epochs"].values.tolist() == [3, 9] and ds["n_epochs_itc"].values.tolist() == [3, 3]
    res2 = tfr.compute_tfr(ep, md, freqs=[6.0, 10.0], rois={"front": ["FZ"]}, itc_equalize=False)
    assert res2.tfr["n_epochs_itc"].values.tolist() == [3, 9]
    tr = res.trials
    assert len(tr) == 12 * 2 * 2 and {"subject", "condition", "epoch_id", "band", "roi", "power_db", "emg_rms_uv"} <= set(tr.columns)
    assert tr.loc[tr.epoch_id == "e5", "emg_rms_uv"].unique().tolist() == [5.0]
    # induced of identical epochs is zero; total is not
    same = _epochs(np.repeat(x[:1], 4, 0), sf, t[0], ["ME", "ME", "MaE", "MaE"])
    r3 = tfr.compute_tfr(same, freqs=[10.0], rois={"a": ["FZ"]}, bands={"alpha": (8, 13)})
    assert float(r3.tfr["induced"].max()) < 1e-12 * float(r3.tfr["power"].max())
    banded = tfr.band_average(tfr.baseline_normalize(ds["power"]), {"theta": (4, 8), "alpha": (8, 13), "none": (50, 60)})
    assert banded.dims == ("condition", "band", "channel", "time") and list(banded["band"].values) == ["theta", "alpha"]


def test_subset_power_equals_the_power_of_those_epochs():
    """compute_tfr(subsets=...) (the EMG-matched averages) equals a transform of the subset's
    epochs alone."""
    sf = 250.0
    _, pad = tfr.padded_config(Config(), [6.0, 10.0])
    t = _grid(sf, pad)
    rng = np.random.default_rng(5)
    conds = ["ME"] * 4 + ["MaE"] * 6 + ["NE"] * 2
    x = rng.normal(size=(12, 2, t.size)) * 1e-6
    ep = _epochs(x, sf, t[0], conds)
    subset = ["e1", "e2", "e5", "e7", "e9"]
    kw = dict(freqs=[6.0, 10.0], rois={"a": ["FZ"]}, bands={"theta": (4, 8)}, induced=False)
    res = tfr.compute_tfr(ep, subsets={"emg_matched": subset}, **kw).tfr
    assert res["n_epochs_emg_matched"].values.tolist() == [2, 3, 0]
    assert np.isnan(res["power_emg_matched"].sel(condition="NE")).all()
    idx = [int(e[1:]) for e in subset]
    alone = tfr.compute_tfr(_epochs(x[idx], sf, t[0], [conds[i] for i in idx]), **kw).tfr
    for c in ("ME", "MaE"):
        np.testing.assert_allclose(
            res["power_emg_matched"].sel(condition=c), alone["power"].sel(condition=c), rtol=1e-10
        )
    np.testing.assert_allclose(
        res["power"], tfr.compute_tfr(ep, **kw).tfr["power"], rtol=0, atol=0
    )  # main unchanged
    group = tfr.stack_subjects(
        [res.assign_attrs(subject="sub-01"), res.assign_attrs(subject="sub-02")]
    )
    assert group["n_epochs_emg_matched"].dims == (
        "subject",
        "condition",
    )  # equal counts keep their subject dim
    with pytest.raises(ValueError, match="identifiers"):
        tfr.compute_tfr(ep, subsets={"emg matched": subset}, **kw)


def test_authors_band_psd_matches_periodogram():
    from scipy.signal import periodogram

    sf = 200.0
    rng = np.random.default_rng(0)
    data = rng.normal(size=(2, 2000)) * 1e-6
    raw = mne.io.RawArray(data, mne.create_info(["FZ", "CZ"], sf, "eeg"), verbose=False)
    out = tfr.authors_band_psd(raw, [2.0, 5.5, 9.99], {"theta": (4, 8), "beta": (13, 30)})
    f, p = periodogram(data[:, 300:500] * 1e6, fs=sf, axis=-1)
    np.testing.assert_allclose(out.sel(band="theta").values[0], p[:, (f >= 4) & (f < 8)].mean(-1))
    assert out.dims == ("epoch", "band", "channel") and np.isnan(out.values[2]).all()  # leaves the recording
    assert tfr.clip_tail_centers([100.0], 40.0).tolist()[:2] == [60.5, 61.5]


# ----------------------------------------------------------------------------- script on the ci study


@pytest.fixture(scope="module")
def script_out(ci_bids, tmp_path_factory) -> Path:
    from analyses.tfr_me_vs_mae import main

    base = tmp_path_factory.mktemp("tfr")
    cfg = base / "noica.toml"
    cfg.write_text(NO_ICA, encoding="utf-8")
    out = base / "out"
    assert main(["--bids-root", str(ci_bids), "--config", str(cfg), "--scale", "ci", "--out", str(out)]) == 0
    return out


def _covered(out: Path, channels, fband, twin, sign: int) -> pd.Series:
    """Significant clusters of ME-MaE of the given sign that cover the planted channel x band x window."""
    ds = load_netcdf(out / "tfr.nc")
    tab = pd.read_csv(out / "clusters_me_vs_mae.csv")
    tab = tab[tab["significant"] & (tab["sign"] == sign)]
    hit = (tab["freq_min_hz"] <= fband[1]) & (tab["freq_max_hz"] >= fband[0]) & (tab["time_min_s"] <= twin[0] + 0.1) \
        & (tab["time_max_s"] >= twin[1] - 0.1) & tab["channels"].apply(lambda s: len(set(s.split(",")) & set(channels)) >= len(channels) - 1)  # fmt: skip
    # and the ERSP difference itself, averaged over the planted region, has that sign in every subject
    e = ds["ersp"].sel(channel=list(channels))
    e = e.isel(freq=np.flatnonzero((e.freq.values >= fband[0]) & (e.freq.values < fband[1])))
    e = e.isel(time=np.flatnonzero((e.time.values >= twin[0]) & (e.time.values <= twin[1])))
    d = (e.sel(condition="ME") - e.sel(condition="MaE")).mean(("channel", "freq", "time")).values
    assert (np.sign(d) == sign).mean() >= 0.85, d
    return tab[hit]


def test_planted_theta_increase_recovered(script_out, ci_study):
    eff = next(o for o in load_ground_truth(ci_study.root)["effects"]["oscillations"] if o["band"] == "theta")
    hit = _covered(script_out, eff["channels"], (4.0, 8.0), tuple(eff["window_s"]), +1)
    assert len(hit) >= 1 and float(hit["p"].min()) < 0.05


def test_planted_beta_decrease_for_mae_recovered(script_out, ci_study):
    eff = next(o for o in load_ground_truth(ci_study.root)["effects"]["oscillations"] if o["band"] == "beta")
    hit = _covered(script_out, eff["channels"], (13.0, 30.0), (0.1, 0.9), +1)  # ME - MaE > 0 since MaE decreases
    assert len(hit) >= 1 and float(hit["p"].min()) < 0.05


def test_script_outputs_valid(script_out):
    summary = json.loads((script_out / "summary.json").read_text())
    validate_summary(summary)
    assert summary["analysis"] == "tfr_me_vs_mae" and summary["n_subjects"] == 8
    clus = [c for c in summary["contrasts"] if c["kind"] == "cluster" and c.get("significant")]
    assert clus and all(c["freq_hz"] and c["time_s"] and c["location"] and c["p"] < 0.05 for c in clus)
    ds = load_netcdf(script_out / "tfr.nc")
    assert set(ds.data_vars) >= {"ersp", "power", "itc", "induced"}
    assert ds["ersp"].dims == ("subject", "condition", "channel", "freq", "time")
    step = float(np.diff(ds.time.values)[0])
    assert float(ds.time.min()) == pytest.approx(-1.0) and 1.5 - step < float(ds.time.max()) <= 1.5 + 1e-9
    trials = pd.read_csv(script_out / "band_power_trials.csv")
    assert {"power_db", "band", "roi", "emg_rms_uv", "epoch_id"} <= set(trials.columns)
    mm = pd.read_csv(script_out / "mixed_models.csv")
    cond = mm[mm.term == "ME - MaE"]
    assert cond["p_fdr"].notna().all() and cond["model"].str.contains("emg_rms_uv").any()
    th = cond[(cond.band == "theta") & (cond.roi == "frontal") & ~cond.model.str.contains("emg")].iloc[0]
    assert th["estimate"] > 0 and th["p_fdr"] < 0.05
    for name in ("tfr_rois_me_vs_mae", "band_topomaps_me_vs_mae", "band_timecourses", "emg_beta_gamma"):
        assert (script_out / f"{name}.png").stat().st_size > 10_000
    assert (script_out / "summary.md").read_text().startswith("# Time-frequency")


def test_planned_contrasts_and_emg_matching_reported(script_out):
    planned = pd.read_csv(script_out / "planned.csv").set_index("name")
    assert (
        list(planned.index) == ["frontal_theta", "central_beta"]
        and (planned["family_size"] == 2).all()
    )
    # the planted frontal theta increase in ME, and the central beta decrease in MaE (ME - MaE > 0)
    assert (
        planned.loc["frontal_theta", "mean_diff"] > 0
        and planned.loc["frontal_theta", "p_corrected"] < 0.05
    )
    assert planned.loc["central_beta", "mean_diff"] > 0
    assert (
        planned.loc["frontal_theta", "fmin_hz"] == 4.0
        and planned.loc["central_beta", "band"] == "beta"
    )
    summary = json.loads((script_out / "summary.json").read_text())
    recs = [c for c in summary["contrasts"] if c["kind"] == "planned"]
    assert len(recs) == 2 and all(
        r["statistic_name"] == "t" and r["df"] == 7 and r["correction"] == "holm" for r in recs
    )
    block = summary["results"]["emg_matched"]
    # the ci study's EMG overlaps between ME and MaE in some subjects only (realistic bursts): the
    # matched test runs when enough subjects can be matched, and the flags say so either way
    tested = bool(block["test"]["tested"])
    assert block["n_subjects"] == 8 and (not tested or block["n_subjects_matched"] >= 2)
    sig = [
        c
        for c in summary["contrasts"]
        if c["kind"] == "cluster" and c["contrast"] == "ME-MaE" and c["significant"]
    ]
    assert sig and all(
        isinstance(c["survives_emg_matching"], bool) if tested else c["survives_emg_matching"] is None
        for c in sig
    )
    ds = load_netcdf(script_out / "tfr.nc")
    assert "ersp_emg_matched" in ds and "power_emg_matched" not in ds
    assert ds["n_epochs_emg_matched"].dims == ("subject", "condition")
    assert (int(ds["n_epochs_emg_matched"].sum()) > 0) == (block["n_subjects_matched"] > 0)
    assert "## EMG-matched ME - MaE" in (script_out / "summary.md").read_text()


# ----------------------------------------------------------------------------- null


_NULL_CHANNELS = ("F1", "FZ", "F2", "FC1", "FCZ", "FC2", "C3", "C1", "CZ", "C2", "C4", "CP1", "CPZ", "CP2", "P1", "PZ", "P2")


def _null_clusters(study, seed: int = 42):
    from mmme_neuro.epochs import epochs_from_session
    from mmme_neuro.ingest import find_sessions, ingest_session
    from mmme_neuro.io.coding import read_coding
    from mmme_neuro.stats import cluster_test

    config = load_config(None, preprocessing={"ica": False}, seed=seed)
    freqs = tfr.DEFAULT_FREQS[::2]
    padded, _ = tfr.padded_config(config, freqs)
    coding = read_coding(study.coding_file, config.coding)
    results = []
    for files in find_sessions(study.raw_dir, coding):
        s = ingest_session(files, coding.expressions, config)
        ep, md = epochs_from_session(s, padded)
        ep.pick(list(_NULL_CHANNELS))
        results.append(tfr.compute_tfr(ep, md, config=config, freqs=freqs, subject=s.subject, induced=False,
                                       rois={"frontal": ["FZ"]}))  # fmt: skip
    group = tfr.stack_subjects(results, config=config)
    ersp = tfr.baseline_normalize(group["power"], config=config)
    return cluster_test(ersp, contrast=("ME", "MaE"), config=config)


def test_null_study_no_cluster(ci_null_study):
    res = _null_clusters(ci_null_study)
    assert res.n_subjects == 8
    assert res.n_significant == 0, res.clusters.head()


@pytest.mark.slow
def test_null_false_positive_rate(tmp_path):
    from mmme_neuro.simulate.study import simulate_study

    seeds = (1, 2, 3, 4, 5)
    hits = 0
    for seed in seeds:
        study = simulate_study(tmp_path / f"null{seed}", scale="ci", seed=seed, null=True, progress=False)
        hits += int(_null_clusters(study, seed).n_significant > 0)
    assert hits <= 1  # P(>= 2 of 5 | alpha = .05) = 0.023


def test_tfr_derivatives_open_in_mne_and_equal_the_netcdf(script_out, ci_bids):
    """The script's per-subject AverageTFR files (mne.time_frequency.read_tfrs) hold the power and ITC of tfr.nc."""
    import mne

    from mmme_neuro.pipeline import derivative_paths, derivatives_root

    ds = load_netcdf(script_out / "tfr.nc")
    path = derivative_paths(derivatives_root(ci_bids), "sub-01")["tfr"]
    objs = mne.time_frequency.read_tfrs(path, verbose=False)
    objs = objs if isinstance(objs, list) else [objs]
    got = {o.comment: o for o in objs}
    assert {f"{k}/{c}" for k in ("power", "itc") for c in ("ME", "MaE", "NE")} <= set(got)
    for kind in ("power", "itc"):
        for cond in ("ME", "MaE", "NE"):
            back = tfr.from_average_tfr(got[f"{kind}/{cond}"])
            want = ds[kind].sel(subject="sub-01", condition=cond, channel=back["channel"]).transpose("channel", "freq", "time")
            np.testing.assert_allclose(back.values, want.values, rtol=1e-12, atol=0)
            np.testing.assert_allclose(back["freq"].values, want["freq"].values)
            assert back.name == kind and str(back["condition"].values) == cond
    assert got["power/ME"].nave == int(ds["n_epochs"].sel(subject="sub-01", condition="ME"))
    with pytest.raises(ValueError, match="kind must be one of"):
        tfr.to_average_tfr(ds.sel(subject="sub-01"), "ME", "ersp")
