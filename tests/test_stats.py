"""Tests of mmme_neuro.stats: planted-effect recovery, null error rates, validation, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats as sstats
from statsmodels.stats.multitest import multipletests

from mmme_neuro import stats
from mmme_neuro.constants import EEG_CHANNELS, SCALP_CHANNELS
from mmme_neuro.reporting import CONTRAST_KEYS

PLANTED = ["CP1", "CPZ", "CP2", "P1", "PZ", "P2"]
FAR = ["FP1", "FPZ", "FP2", "AF3", "F7", "F8", "O1", "O2", "OZ", "T7", "T8", "CB1", "CB2"]
WINDOW = slice(40, 61)  # samples of the planted effect (0.20 to 0.40 s)


def _erp(seed: int, *, n_subjects: int = 12, effect: float = 1.5, channels=SCALP_CHANNELS, n_times: int = 100):
    """(subject, condition, channel, time) with Gaussian noise and ME - MaE = effect on PLANTED x WINDOW."""
    rng = np.random.default_rng(seed)
    chs = list(channels)
    X = rng.normal(size=(n_subjects, 2, len(chs), n_times))
    if effect:
        rows = [chs.index(c) for c in PLANTED if c in chs]
        X[:, 0, rows, WINDOW] += effect
    return xr.DataArray(
        X,
        dims=("subject", "condition", "channel", "time"),
        coords={
            "subject": [f"sub-{i + 1:02d}" for i in range(n_subjects)],
            "condition": ["ME", "MaE"],
            "channel": chs,
            "time": xr.DataArray(np.round(np.arange(n_times) / 100 - 0.2, 6), dims="time", attrs={"units": "s"}),
        },
    )


@pytest.fixture(scope="module")
def adjacency62():
    return stats.channel_adjacency(SCALP_CHANNELS)


@pytest.fixture(scope="module")
def planted_result():
    return stats.cluster_test(_erp(7), n_permutations=500, seed=3)


# ---------------------------------------------------------------------------- adjacency
def _neighbours(adj, names, ch):
    i = names.index(ch)
    row = adj.toarray()[i]
    return {names[j] for j in np.flatnonzero(row) if j != i}


def test_adjacency_quikcap(adjacency62):
    names = list(SCALP_CHANNELS)
    a = adjacency62.toarray()
    assert a.shape == (62, 62)
    assert (a == a.T).all()
    assert a.diagonal().all()
    for cb in ("CB1", "CB2"):
        assert _neighbours(adjacency62, names, cb), f"{cb} has no neighbours"
    fz = _neighbours(adjacency62, names, "FZ")
    assert {"FCZ", "F1", "F2"} <= fz
    assert "OZ" not in fz and "CZ" not in fz
    # every channel has between 3 and 10 neighbours on a 62-channel cap
    deg = a.sum(axis=1) - 1
    assert deg.min() >= 3 and deg.max() <= 10


def test_adjacency_all64_and_distance():
    adj = stats.channel_adjacency(EEG_CHANNELS)
    assert adj.shape == (64, 64)
    near = stats.channel_adjacency(EEG_CHANNELS, distance_m=0.045)
    n = near.toarray()
    assert (n == n.T).all()
    names = list(EEG_CHANNELS)
    assert "FCZ" in _neighbours(near, names, "FZ") and "OZ" not in _neighbours(near, names, "FZ")


def test_adjacency_bad_input():
    with pytest.raises(ValueError, match="no position"):
        stats.channel_adjacency(["FZ", "XYZ"])
    with pytest.raises(ValueError, match="unique"):
        stats.channel_adjacency(["FZ", "FZ"])
    with pytest.raises(ValueError, match="distance_m"):
        stats.channel_adjacency(["FZ", "CZ", "PZ"], distance_m=-1)


# ---------------------------------------------------------------------------- cluster test
def test_cluster_recovers_planted_effect(planted_result):
    r = planted_result
    assert r.n_significant == 1
    best = r.clusters.iloc[0]
    assert best["significant"] and best["sign"] == 1 and best["p"] < 0.01
    chans = set(best["channels"].split(","))
    assert set(PLANTED) <= chans
    assert not chans & set(FAR), chans & set(FAR)
    assert 0.20 - 0.03 <= best["time_min_s"] <= 0.20 + 1e-9
    assert 0.40 - 1e-9 <= best["time_max_s"] <= 0.40 + 0.03
    assert best["peak_channel"] in PLANTED
    assert 0.2 <= best["peak_time_s"] <= 0.4
    assert best["ci_low"] < 1.5 < best["ci_high"] + 0.5  # descriptive, biased upwards by selection
    # mask covers the planted block, nothing far away or outside the window
    m = r.mask
    assert m.sel(channel=PLANTED).isel(time=WINDOW).mean() > 0.9
    assert not m.sel(channel=FAR).any()
    assert not m.isel(time=slice(0, 35)).any() and not m.isel(time=slice(66, None)).any()
    assert r.t_obs.dims == ("channel", "time")
    assert r.cluster_masks.dims == ("cluster", "channel", "time")
    assert int(r.cluster_masks.isel(cluster=0).sum()) == best["n_points"]
    assert r.n_subjects == 12 and r.n_permutations == 500 and not r.exact
    assert r.threshold == pytest.approx(sstats.t.ppf(0.975, 11))
    for col in ("n_subjects", "test", "mass", "p", "cohen_dz", "ci_low", "ci_high", "threshold"):
        assert col in r.clusters.columns


def test_cluster_contrast_records(planted_result):
    recs = planted_result.to_contrast_records()
    assert len(recs) == 1
    rec = recs[0]
    assert set(CONTRAST_KEYS) <= set(rec)
    assert rec["contrast"] == "ME-MaE" and rec["kind"] == "cluster"
    assert set(PLANTED) <= set(rec["location"])
    assert rec["p"] < 0.05 and rec["statistic_name"] == "cluster_mass" and rec["n"] == 12
    assert len(planted_result.to_contrast_records(significant_only=False)) == len(planted_result.clusters)


def test_cluster_null_false_positive_rate():
    """Family-wise false-positive rate over 40 null datasets lies in the binomial 99 % interval of 0.05."""
    chs = list(SCALP_CHANNELS[20:40])
    adj = stats.channel_adjacency(chs)
    n_seeds = 40
    hits = 0
    for s in range(n_seeds):
        da = _erp(1000 + s, effect=0, channels=chs, n_times=30)
        hits += stats.cluster_test(da, n_permutations=200, seed=s, adjacency={"channel": adj}).n_significant > 0
    lo, hi = sstats.binom.interval(0.99, n_seeds, 0.05)
    assert lo <= hits <= hi, f"null FWER {hits}/{n_seeds}"


def test_cluster_uncorrected_would_fail():
    """Sanity of the null test: point-wise thresholding alone flags most null datasets."""
    hits = 0
    for s in range(10):
        da = _erp(2000 + s, effect=0, channels=SCALP_CHANNELS[20:40], n_times=30)
        d = (da.sel(condition="ME") - da.sel(condition="MaE")).values
        t = sstats.ttest_1samp(d, 0, axis=0).statistic
        hits += np.any(np.abs(t) > sstats.t.ppf(0.975, 11))
    assert hits >= 8


def test_cluster_3d_channel_freq_time():
    rng = np.random.default_rng(11)
    chs = ["FZ", "FCZ", "CZ", "CPZ", "PZ", "POZ", "OZ", "C3", "C4"]
    freqs = np.arange(4.0, 16.0, 2.0)
    times = np.round(np.arange(20) * 0.05, 6)
    X = rng.normal(size=(10, 2, len(chs), len(freqs), len(times)))
    X[:, 0, 2:5, 1:4, 5:12] += 2.0  # CZ, CPZ, PZ x 6-10 Hz x 0.25-0.55 s
    da = xr.DataArray(
        X, dims=("subject", "condition", "channel", "freq", "time"),
        coords={"condition": ["ME", "MaE"], "channel": chs, "freq": freqs, "time": times},
    )
    r = stats.cluster_test(da, n_permutations=300, seed=0)
    assert r.t_obs.dims == ("channel", "freq", "time")
    assert r.n_significant == 1
    best = r.clusters.iloc[0]
    assert {"CZ", "CPZ", "PZ"} <= set(best["channels"].split(","))
    assert best["freq_min_hz"] <= 6.0 and best["freq_max_hz"] >= 10.0
    assert best["time_min_s"] <= 0.25 and best["time_max_s"] >= 0.55
    assert r.mask.sel(channel="OZ").sum() == 0 or "OZ" in best["channels"]
    rec = r.to_contrast_records()[0]
    assert rec["freq_hz"][0] <= 6.0 and rec["time_s"][1] >= 0.55


def test_cluster_deterministic():
    da = _erp(5, effect=0.8, channels=SCALP_CHANNELS[20:40], n_times=60)
    r1 = stats.cluster_test(da, n_permutations=200, seed=9)
    r2 = stats.cluster_test(da, n_permutations=200, seed=9, n_jobs=2)  # permutations in two processes: the same test
    pd.testing.assert_frame_equal(r1.clusters, r2.clusters)
    np.testing.assert_array_equal(r1.h0, r2.h0)
    r3 = stats.cluster_test(da, n_permutations=200, seed=10)
    assert not np.array_equal(r1.h0, r3.h0)


def test_cluster_drops_nan_subjects_and_exact():
    da = _erp(3, n_subjects=8, channels=SCALP_CHANNELS[30:45], n_times=40).copy()
    da[0, 1] = np.nan  # sub-01 lacks MaE
    r = stats.cluster_test(da, n_permutations=1000, seed=0)
    assert r.n_subjects == 7 and r.dropped_subjects == ["sub-01"]
    assert r.exact and r.n_permutations == 2**6


def test_cluster_bad_inputs():
    da = _erp(1, channels=SCALP_CHANNELS[:10], n_times=20)
    with pytest.raises(ValueError, match="not found along 'condition'"):
        stats.cluster_test(da, contrast=("ME", "NE"))
    with pytest.raises(ValueError, match="missing"):
        stats.cluster_test(da.rename(subject="participant"))
    with pytest.raises(ValueError, match="unsupported feature dims"):
        stats.cluster_test(da.rename(time="epoch"))
    with pytest.raises(ValueError, match="at least 2 subjects"):
        stats.cluster_test(da.isel(subject=[0]))
    with pytest.raises(ValueError, match="tail"):
        stats.cluster_test(da, tail=2)
    with pytest.raises(ValueError, match="cluster_forming_p"):
        stats.cluster_test(da, cluster_forming_p=1.5)
    with pytest.raises(ValueError, match="pair of condition labels"):
        stats.cluster_test(da, contrast="ME")
    with pytest.raises(TypeError):
        stats.cluster_test(da.values)


# ---------------------------------------------------------------------------- fdr & node test
def test_fdr_equals_statsmodels():
    p = np.random.default_rng(0).uniform(size=30) ** 2
    for method in ("fdr_bh", "fdr_by"):
        np.testing.assert_allclose(stats.fdr(p, method), multipletests(p, method=method)[1])
    withnan = p.copy()
    withnan[3] = np.nan
    out = stats.fdr(withnan)
    assert np.isnan(out[3])
    np.testing.assert_allclose(np.delete(out, 3), multipletests(np.delete(p, 3), method="fdr_bh")[1])
    with pytest.raises(ValueError, match="method"):
        stats.fdr(p, "holm_typo")


def _nodes(seed: int, n_subjects: int = 14, effect: float = 2.0):
    rng = np.random.default_rng(seed)
    nodes = list(SCALP_CHANNELS[:16])
    X = rng.normal(size=(n_subjects, 2, len(nodes), 2))
    X[:, 0, :3, 0] += effect
    return xr.DataArray(
        X, dims=("subject", "condition", "node", "band"),
        coords={"condition": ["ME", "MaE"], "node": nodes, "band": ["theta", "alpha"]},
    )


def test_node_permutation_test_recovers_and_is_deterministic():
    da = _nodes(1)
    tab = stats.node_permutation_test(da, n_permutations=2000, seed=4)
    assert len(tab) == 32 and {"node", "band", "t", "p", "p_fdr", "p_maxstat", "cohen_dz", "ci_low"} <= set(tab.columns)
    sig = tab[tab["significant"]]
    assert set(zip(sig["node"], sig["band"], strict=True)) <= {(n, "theta") for n in SCALP_CHANNELS[:3]}
    assert len(sig) >= 2
    # t equals scipy's paired t
    d = (da.sel(condition="ME") - da.sel(condition="MaE")).values.reshape(14, -1)
    np.testing.assert_allclose(tab["t"], sstats.ttest_1samp(d, 0).statistic)
    assert (tab["p_maxstat"] >= tab["p"] - 1e-12).all()
    tab2 = stats.node_permutation_test(da, n_permutations=2000, seed=4)
    pd.testing.assert_frame_equal(tab, tab2)


def test_node_permutation_exact_small_n():
    tab = stats.node_permutation_test(_nodes(2, n_subjects=6), n_permutations=1000, seed=0, correction="fdr")
    assert tab["exact"].all() and (tab["n_permutations"] == 64).all()
    assert (tab["p"] >= 1 / 64).all()
    assert (tab["correction"] == "fdr_bh").all()


def test_node_fdr_can_reject_a_lone_node():
    """64 nodes, 12 subjects, one strongly different node: BH needs p <= 0.05 / 64 = 0.00078."""
    rng = np.random.default_rng(8)
    nodes = list(EEG_CHANNELS[:64])
    X = rng.normal(size=(12, 2, 64))
    X[:, 0, 5] += 3.0
    da = xr.DataArray(X, dims=("subject", "condition", "node"), coords={"condition": ["ME", "MaE"], "node": nodes})
    tab = stats.node_permutation_test(da, n_permutations=1000, seed=0, correction="fdr")
    assert tab["exact"].all() and tab["n_permutations"].iloc[0] == 2**12 and tab["p"].min() < 0.05 / 64
    assert tab.loc[tab["significant"], "node"].tolist() == [nodes[5]]


# ---------------------------------------------------------------------------- paired test
def _subject_table(seed: int, n: int = 15, shift: float = 0.8):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=n)
    me = base + shift + rng.normal(scale=0.7, size=n)
    mae = base + rng.normal(scale=0.7, size=n)
    subs = [f"sub-{i + 1:02d}" for i in range(n)]
    return pd.DataFrame({
        "subject": subs * 2,
        "condition": ["ME"] * n + ["MaE"] * n,
        "amp": np.r_[me, mae],
        "lat": rng.normal(size=2 * n),
    }), me, mae


def test_paired_test_matches_scipy():
    df, me, mae = _subject_table(0)
    out = stats.paired_test(df, measure="amp")
    row = out.iloc[0]
    ref = sstats.ttest_rel(me, mae)
    assert row["statistic"] == pytest.approx(ref.statistic)
    assert row["p"] == pytest.approx(ref.pvalue)
    assert row["df"] == 14 and row["n_subjects"] == 15
    d = me - mae
    assert row["cohen_dz"] == pytest.approx(d.mean() / d.std(ddof=1))
    half = sstats.t.ppf(0.975, 14) * d.std(ddof=1) / np.sqrt(15)
    assert row["ci_low"] == pytest.approx(d.mean() - half) and row["ci_high"] == pytest.approx(d.mean() + half)
    assert row["bf10"] > 1 and row["mean_ME"] == pytest.approx(me.mean())
    w = stats.paired_test(df, measure="amp", test="wilcoxon").iloc[0]
    assert w["p"] == pytest.approx(sstats.wilcoxon(me, mae).pvalue)
    many = stats.paired_test(df, measure=["amp", "lat"])
    assert "p_fdr" in many and len(many) == 2


def test_paired_test_drops_incomplete_and_bad_inputs():
    df, _, _ = _subject_table(1)
    df = df[~((df["subject"] == "sub-01") & (df["condition"] == "MaE"))]
    row = stats.paired_test(df, measure="amp").iloc[0]
    assert row["n_subjects"] == 14 and row["n_dropped"] == 1
    with pytest.raises(ValueError, match="not found in column"):
        stats.paired_test(df, measure="amp", contrast=("ME", "NE"))
    with pytest.raises(ValueError, match="not in values"):
        stats.paired_test(df, measure="nope")
    with pytest.raises(ValueError, match="at least 2 subjects"):
        stats.paired_test(df[df["subject"] == "sub-02"], measure="amp")


# ---------------------------------------------------------------------------- mixed models
def _trials(seed: int, *, cond_effect: float = 0.5, emg_effect: float = 0.0, n_subjects: int = 15):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_subjects):
        u = rng.normal(scale=0.8)
        for cond, n_tr in (("ME", 6), ("MaE", 25), ("NE", 10)):
            emg = rng.gamma(2.0, 1.0, size=n_tr)
            y = u + (cond_effect if cond == "ME" else 0.0) + emg_effect * emg + rng.normal(size=n_tr)
            rows.append(pd.DataFrame({"subject": f"sub-{s + 1:02d}", "condition": cond, "amp": y * 1e-6, "emg_rms": emg}))
    return pd.concat(rows, ignore_index=True)


def test_mixed_model_recovers_condition_and_covariate():
    tr = _trials(0, cond_effect=0.6, emg_effect=0.4)
    tab = stats.mixed_model(tr, measure="amp", covariates=("emg_rms",), conditions=("ME", "MaE"))
    me = tab.set_index("term").loc["ME - MaE"]
    assert me["p"] < 0.05 and me["ci_low"] < 0.6e-6 < me["ci_high"]
    emg = tab.set_index("term").loc["emg_rms"]
    assert emg["p"] < 0.05 and emg["ci_low"] < 0.4e-6 < emg["ci_high"]
    assert me["converged"] and me["n_subjects"] == 15 and me["n_trials_ME"] == 90 and me["n_trials_MaE"] == 375
    assert me["effect_size_name"] == "d_lmm" and me["effect_size"] > 0
    assert {"estimate", "se", "t", "df", "p", "ci_low", "ci_high", "method", "warnings", "test",
            "random_effects", "paired_t", "paired_p"} <= set(tab.columns)
    assert (tab["df"] == 14).all()


def _hetero_trials(seed: int, slope_sd: float, *, effect: float = 0.0, n_subjects: int = 12) -> pd.DataFrame:
    """ME 3-9 / MaE 15-34 trials; each subject's ME - MaE effect ~ N(effect, slope_sd)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_subjects):
        u, b = rng.normal(), effect + rng.normal(0.0, slope_sd)
        for cond, n_tr in (("ME", rng.integers(3, 10)), ("MaE", rng.integers(15, 35))):
            y = u + (b if cond == "ME" else 0.0) + rng.normal(size=n_tr)
            rows.append(pd.DataFrame({"subject": f"sub-{s + 1:02d}", "condition": cond, "amp": y}))
    return pd.concat(rows, ignore_index=True)


def test_mixed_model_random_slope_t_inference():
    tr = _hetero_trials(5, slope_sd=1.0, effect=0.3, n_subjects=20)
    me = stats.mixed_model(tr, measure="amp").set_index("term").loc["ME - MaE"]
    assert me["random_effects"] == "(1 + condition | subject)" and me["converged"]
    assert me["inference"] == "t" and me["df"] == 19 and "t(19)" in me["test"]
    # the p and the CI come from t(19), not from the normal distribution
    assert me["p"] == pytest.approx(2 * sstats.t.sf(abs(me["t"]), 19))
    half = sstats.t.ppf(0.975, 19) * me["se"]
    assert me["ci_low"] == pytest.approx(me["estimate"] - half) and me["ci_high"] == pytest.approx(me["estimate"] + half)
    # the slope variance is estimated (planted 1.0), not absorbed by the residual
    assert 0.3 < me["slope_var"] < 3.0
    # the subject-level paired test of the same contrast on subject means
    means = tr.groupby(["subject", "condition"])["amp"].mean().unstack()
    ref = sstats.ttest_rel(means["ME"], means["MaE"])
    assert me["paired_t"] == pytest.approx(ref.statistic) and me["paired_p"] == pytest.approx(ref.pvalue)
    assert me["paired_df"] == 19 and me["paired_n_subjects"] == 20
    # the old model (random intercept, Wald z) is still available for comparison; its SE is too small here
    old = stats.mixed_model(tr, measure="amp", random_effects="intercept", inference="wald")
    old = old.set_index("term").loc["ME - MaE"]
    assert old["random_effects"] == "(1 | subject)" and np.isinf(old["df"]) and "Wald z" in old["test"]
    assert old["se"] < 0.8 * me["se"]


def test_covariate_slopes_are_kept_in_every_fallback(monkeypatch):
    """With covariate_slopes, a fit whose condition slopes fail keeps the covariate's random slope: the
    coupling calibration measured 0.50 false positives among the fits that fell back to (1 | subject)."""
    from statsmodels.regression.mixed_linear_model import MixedLM

    orig = MixedLM.fit

    def no_condition_slopes(self, *args, **kwargs):
        names = list(self.data.exog_re_names) + list(getattr(self.exog_vc, "names", []) or [])
        if any("cond" in str(n) for n in names):
            raise np.linalg.LinAlgError("condition slopes fail (simulated)")
        return orig(self, *args, **kwargs)

    monkeypatch.setattr(MixedLM, "fit", no_condition_slopes)
    tr = _hetero_trials(6, slope_sd=0.8)
    tr["eeg"] = np.random.default_rng(3).normal(size=len(tr))
    row = stats.mixed_model(tr, measure="amp", covariates=("eeg",), covariate_slopes=True).set_index("term").loc["eeg"]
    assert row["random_effects"] == "(1 + eeg | subject)" and row["converged"], row["random_effects"]
    assert row["random_effects_tried"].startswith("(1 + condition + eeg | subject) > ")

    def only_intercepts(self, *args, **kwargs):
        if self.k_re > 1 or self.k_vc > 0:
            raise np.linalg.LinAlgError("every slope fails (simulated)")
        return orig(self, *args, **kwargs)

    monkeypatch.setattr(MixedLM, "fit", only_intercepts)
    with pytest.raises(RuntimeError, match="every optimizer failed"):  # never a silent (1 | subject)
        stats.mixed_model(tr, measure="amp", covariates=("eeg",), covariate_slopes=True)


def test_mixed_model_fallback_ladder(monkeypatch):
    """The maximal structure that converges: slope -> subject:condition -> intercept, recorded."""
    from statsmodels.regression.mixed_linear_model import MixedLM

    orig = MixedLM.fit
    failing: set[str] = set()

    def flaky(self, *args, **kwargs):
        kind = "slope" if self.k_re > 1 else ("vc" if self.k_vc > 0 else "intercept")
        if kind in failing:
            raise np.linalg.LinAlgError(f"{kind} fails (simulated)")
        return orig(self, *args, **kwargs)

    monkeypatch.setattr(MixedLM, "fit", flaky)
    tr = _hetero_trials(6, slope_sd=0.8)
    failing.add("slope")
    row = stats.mixed_model(tr, measure="amp").set_index("term").loc["ME - MaE"]
    assert row["random_effects"] == "(1 | subject) + (1 | subject:condition)" and row["converged"]
    assert row["random_effects_tried"] == "(1 + condition | subject) > (1 | subject) + (1 | subject:condition)"
    assert "slope/lbfgs: failed" in row["warnings"] and row["slope_var"] > 0
    failing.add("vc")
    row = stats.mixed_model(tr, measure="amp").set_index("term").loc["ME - MaE"]
    assert row["random_effects"] == "(1 | subject)" and row["slope_var"] == 0 and row["df"] == 11
    with pytest.raises(ValueError, match="random_effects must be one of"):
        stats.mixed_model(tr, measure="amp", random_effects="crossed")
    with pytest.raises(ValueError, match="inference must be one of"):
        stats.mixed_model(tr, measure="amp", inference="satterthwaite")


def test_mixed_model_three_conditions_and_null():
    tab = stats.mixed_model(_trials(1, cond_effect=0.0), measure="amp", reference="MaE")
    assert set(tab["term"]) == {"Intercept", "ME - MaE", "NE - MaE"}
    n_null_ns = sum(
        stats.mixed_model(_trials(100 + s, cond_effect=0.0), measure="amp", conditions=("ME", "MaE"))
        .set_index("term").loc["ME - MaE", "p"] > 0.05
        for s in range(15)
    )
    assert n_null_ns >= 12


def test_mixed_model_optimizer_fallback(monkeypatch):
    from statsmodels.regression.mixed_linear_model import MixedLM

    orig = MixedLM.fit

    def flaky(self, *args, method=None, **kwargs):
        if method == "lbfgs":
            raise np.linalg.LinAlgError("Singular matrix (simulated)")
        return orig(self, *args, method=method, **kwargs)

    monkeypatch.setattr(MixedLM, "fit", flaky)
    tab = stats.mixed_model(_trials(2), measure="amp", conditions=("ME", "MaE"))
    assert (tab["method"] == "powell").all() and tab["converged"].all()
    assert "slope/lbfgs: failed" in tab["warnings"].iloc[0]
    assert (tab["random_effects"] == "(1 + condition | subject)").all()
    with pytest.raises(RuntimeError, match="every optimizer failed"):
        stats.mixed_model(_trials(2), measure="amp", optimizers=("lbfgs",))


def test_mixed_model_bad_inputs():
    tr = _trials(3)
    with pytest.raises(ValueError, match="reference condition"):
        stats.mixed_model(tr, measure="amp", reference="macro")
    with pytest.raises(ValueError, match="not in trials"):
        stats.mixed_model(tr, measure="amp", covariates=("emg",))
    with pytest.raises(ValueError, match="at least 2 subjects"):
        stats.mixed_model(tr[tr["subject"] == "sub-01"], measure="amp")


def test_mixed_models_fdr():
    tr = _trials(4, cond_effect=0.6)
    tr["noise"] = np.random.default_rng(0).normal(size=len(tr))
    tab = stats.mixed_models_fdr(tr, ["amp", "noise"], conditions=("ME", "MaE"))
    rows = tab[tab["term"] == "ME - MaE"]
    np.testing.assert_allclose(rows["p_fdr"], multipletests(rows["p"], method="fdr_bh")[1])
    assert tab.loc[tab["term"] == "Intercept", "p_fdr"].isna().all()


def test_covariate_collinearity():
    from mmme_neuro.stats import covariate_collinearity

    rng = np.random.default_rng(0)
    rows = []
    for s in range(6):
        for c in ("ME", "MaE"):
            for _ in range(10):
                rows.append({"subject": f"s{s}", "condition": c, "x": (c == "ME") * 2.0 + rng.normal(0, 0.1) + s,
                             "z": rng.normal()})  # fmt: skip
    df = pd.DataFrame(rows)
    dup = covariate_collinearity(df, "x")
    assert dup["r"] > 0.99 and dup["vif"] > 50  # the covariate duplicates the condition
    free = covariate_collinearity(df, "z")
    assert abs(free["r"]) < 0.3 and free["vif"] < 1.2
    with pytest.raises(ValueError, match="no column"):
        covariate_collinearity(df, "missing")
