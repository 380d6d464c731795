"""ERP layer (mmme_neuro.erp), its figures and the analysis script analyses.erp_me_vs_mae.

The planted-effect tests run the script once on the `ci` study (converted to
BIDS) with ocular ICA off (fastica dominates the run time; the planted ERP
does not depend on it) and check its outputs against the ground truth.
"""

from __future__ import annotations

import json
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from mmme_neuro import erp
from mmme_neuro.config import load_config
from mmme_neuro.containers import load_netcdf
from mmme_neuro.reporting import validate_summary
from mmme_neuro.simulate.study import load_ground_truth

FAR_CHANNELS = ("FP1", "FPZ", "FP2", "AF3", "AF4", "O1", "OZ", "O2", "CB1", "CB2", "PO7", "PO8")
NO_ICA = "[preprocessing]\nica = false\n"


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def noica_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("erp_cfg") / "noica.toml"
    path.write_text(NO_ICA, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def script_out(ci_bids, noica_config, tmp_path_factory) -> Path:
    from analyses.erp_me_vs_mae import main

    out = tmp_path_factory.mktemp("erp_out1")
    assert main(["--bids-root", str(ci_bids), "--config", str(noica_config), "--out", str(out)]) == 0
    return out


def _significant(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["significant"].astype(bool)] if len(table) else table


# ----------------------------------------------------------------------------- planted effects


def test_planted_erp_recovered(script_out, ci_study):
    truth = load_ground_truth(ci_study.root)["effects"]["erp"]
    planted, latency = set(truth["channels"]), truth["latency_s"]
    table = pd.read_csv(script_out / "clusters_me_vs_mae.csv")
    sig = _significant(table)
    assert len(sig) >= 1, table
    best = sig.iloc[0]
    assert best["p"] < 0.05 and best["mass"] > 0  # ME > MaE
    chans = set(best["channels"].split(","))
    assert len(chans & planted) >= 5, chans
    assert not chans & set(FAR_CHANNELS), chans & set(FAR_CHANNELS)
    assert best["time_min_s"] <= latency + 0.15 and best["time_max_s"] >= latency - 0.15
    assert latency - 0.15 <= best["peak_time_s"] <= latency + 0.15
    # the same cluster reaches summary.json
    summary = json.loads((script_out / "summary.json").read_text())
    recs = [c for c in summary["contrasts"] if c["contrast"] == "ME-MaE" and c["kind"] == "cluster"]
    assert recs and recs[0]["p"] < 0.05 and set(recs[0]["location"]) == chans
    me_ne = _significant(pd.read_csv(script_out / "clusters_me_vs_ne.csv"))
    assert len(me_ne) >= 1 and len(set(me_ne.iloc[0]["channels"].split(",")) & planted) >= 4


def test_emg_confound_larger_for_mae(script_out):
    emg = pd.read_csv(script_out / "emg_confound.csv").set_index("measure")
    for m in ("emg_rms_uv", "emg_temporal_power"):
        assert emg.loc[m, "mean_MaE"] > emg.loc[m, "mean_ME"], m
        assert emg.loc[m, "p"] < 0.05, m
    models = pd.read_csv(script_out / "mixed_models.csv")
    cond = models[(models["term"] == "ME - MaE") & (models["amplitude_measure"] == "mean")]
    assert {m.split(" + (")[0] for m in cond["model"]} == {"amplitude ~ condition", "amplitude ~ condition + emg_rms_uv"}
    assert (cond["model"].str.split(" + ", n=1, regex=False).str[1].str.contains(r"\| subject\)")).all()
    assert set(cond["df"]) == {cond["n_subjects"].iloc[0] - 1} and cond["paired_p"].notna().all()
    plain = cond[~cond["model"].str.contains("emg")].iloc[0]
    assert plain["estimate"] > 0 and plain["p"] < 0.05
    summary = json.loads((script_out / "summary.json").read_text())
    assert summary["results"]["emg_me_vs_mae"]["emg_rms_uv"]["larger"] == "MaE"
    assert isinstance(summary["results"]["erp_effect_survives_emg_covariate"], bool)


def test_epoch_bookkeeping(script_out, ci_bids, ci_study):
    from mmme_neuro.io.coding import read_coding

    epochs = pd.read_csv(script_out / "epochs.csv", dtype={"expression_id": str})
    excl = pd.read_csv(script_out / "exclusions.csv", dtype=str)
    n_events = 0
    for sub_dir in sorted(ci_bids.glob("sub-*")):
        sub = sub_dir.name
        ev = pd.read_csv(sub_dir / "eeg" / f"{sub}_task-mmme_events.tsv", sep="\t", dtype=str)
        ids = set(ev.loc[ev["trial_type"].isin(["ME", "MaE"]), "expression_id"])
        n_events += len(ids)
        mine = epochs[(epochs["subject"] == sub) & epochs["condition"].isin(["ME", "MaE"])]
        assert set(mine["expression_id"]) == ids, sub  # every expression is an epoch, kept or rejected
        assert len(mine) == len(ids)
    rejected = epochs[~epochs["kept"]]
    assert (rejected["reason"].fillna("") != "").all()
    assert (epochs.loc[epochs["kept"], "reason"].fillna("") == "").all()
    # coded rows = expressions in the events + upstream exclusions (each with a reason)
    coding = read_coding(ci_study.coding_file)
    assert coding.counts()["rows_in"] == n_events + len(excl)
    assert excl["reason_code"].notna().all() and excl["reason"].notna().all()
    summary = json.loads((script_out / "summary.json").read_text())
    assert sum(summary["exclusions_by_reason"].values()) == len(excl) + len(rejected)
    kept = epochs[epochs["kept"]]
    mc = pd.read_csv(script_out / "min_count.csv")
    ok = set(zip(mc.loc[mc["included"], "subject"], mc.loc[mc["included"], "condition"], strict=True))
    n_ok = kept[[(s, c) in ok for s, c in zip(kept["subject"], kept["condition"], strict=True)]]
    assert summary["epochs_per_condition"] == {c: int((n_ok["condition"] == c).sum()) for c in ("ME", "MaE", "NE")}


def test_script_outputs_deterministic(script_out, ci_bids, noica_config, tmp_path):
    from analyses.erp_me_vs_mae import main

    group = load_netcdf(script_out / "erp.nc")
    assert group.dims == ("subject", "condition", "channel", "time")
    assert list(group["condition"].values) == ["ME", "MaE", "NE"]
    assert group.sizes["channel"] == 62 and group["time"].attrs["units"] == "s"
    assert "preprocessing" in group.attrs and group.attrs["units"] == "µV"
    assert (group["n_epochs"].values > 0).all()
    summary = json.loads((script_out / "summary.json").read_text())
    validate_summary(summary)
    assert summary["n_subjects"] == 8 and summary["analysis"] == "erp_me_vs_mae"
    for stem in ("erp_overview", "erp_waveforms", "topomaps_me_vs_mae", "topomaps_me_vs_ne", "emg_confound"):
        for ext in ("png", "pdf"):
            assert (script_out / f"{stem}.{ext}").stat().st_size > 0
    assert (script_out / "summary.md").read_text().startswith("# ERPs")
    out2 = tmp_path / "again"
    assert main(["--bids-root", str(ci_bids), "--config", str(noica_config), "--out", str(out2), "--no-figures"]) == 0
    names = sorted(p.name for p in script_out.glob("*.csv")) + ["summary.json", "summary.md"]
    assert len(names) >= 11
    for name in names:
        assert (script_out / name).read_bytes() == (out2 / name).read_bytes(), name


def test_planned_contrast_and_emg_matching_reported(script_out):
    planned = pd.read_csv(script_out / "planned.csv")
    p3 = planned.iloc[0]
    assert (
        p3["name"] == "P3"
        and p3["roi"] == "CP1,CPZ,CP2,P1,PZ,P2"
        and (p3["tmin_s"], p3["tmax_s"]) == (0.3, 0.5)
    )
    assert (
        p3["mean_diff"] > 0 and p3["p_corrected"] < 0.05 and p3["df"] == 7
    )  # the planted P3, ME > MaE
    summary = json.loads((script_out / "summary.json").read_text())
    rec = next(c for c in summary["contrasts"] if c["kind"] == "planned")
    assert (rec["statistic_name"], rec["df"], rec["correction"], rec["test"]) == (
        "t",
        7,
        "holm",
        "paired t-test on subject means",
    )
    assert summary["results"]["planned"]["family_size"] == 1
    # the ci study's EMG is 3x larger in MaE and overlaps in some subjects only: every subject is
    # either matched or listed as not matched, and the flags follow whether the matched test ran
    block = summary["results"]["emg_matched"]
    tested = bool(block["test"]["tested"])
    assert block["n_subjects"] == 8 and (not tested or block["n_subjects_matched"] >= 2)
    assert block["n_subjects_matched"] + len(block["subjects_not_matched"]) == 8
    sig = [
        c
        for c in summary["contrasts"]
        if c["kind"] == "cluster" and c["contrast"] == "ME-MaE" and c["significant"]
    ]
    assert sig and all(
        "survives_emg_matching" in c
        and (isinstance(c["survives_emg_matching"], bool) if tested else c["survives_emg_matching"] is None)
        for c in sig
    )
    assert len(block["effects"]) == len(sig)
    text = (script_out / "summary.md").read_text()
    assert "## Planned contrasts" in text and "## EMG-matched ME - MaE" in text
    status = pd.read_csv(script_out / "emg_matching.csv")["status"]
    assert int((status == "matched").sum()) == block["n_subjects_matched"]
    if not tested:  # the summary says the effects cannot be separated from the muscle activity
        assert "cannot be told apart" in text


def test_emg_matched_contrast_where_emg_overlaps(ci_bids, tmp_path):
    """Matched on a measure whose ME and MaE values overlap (EMG RMS log ratio, wide caliper).

    The first level's matched averages agree with the group level's matching,
    and every significant cluster is flagged.
    """
    from analyses.erp_me_vs_mae import main

    cfg = tmp_path / "matched.toml"
    cfg.write_text(
        NO_ICA + '[emg_matching]\nmeasure = "emg_rms_log_ratio"\ncaliper_sd = 3.0\n',
        encoding="utf-8",
    )
    out = tmp_path / "out"
    assert (
        main(["--bids-root", str(ci_bids), "--config", str(cfg), "--out", str(out), "--no-figures"])
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    block = summary["results"]["emg_matched"]
    assert (
        block["measure"] == "emg_rms_log_ratio"
        and block["n_subjects_matched"] >= 6
        and block["test"]["tested"]
    )
    rep = pd.read_csv(out / "emg_matching.csv")
    assert (rep["n_after_ME"] == rep["n_after_MaE"]).all()
    assert (rep["smd_after"].dropna().abs() <= 3.0 + 1e-9).all()
    assert block["epochs_after"]["ME"] == rep["n_after_ME"].sum()
    matched = pd.read_csv(out / "clusters_me_vs_mae_emg_matched.csv")
    assert len(matched) and (matched["contrast"] == "ME-MaE").all()
    flags = pd.read_csv(out / "clusters_me_vs_mae.csv")
    sig = flags[flags["significant"]]
    assert len(sig) and sig["survives_emg_matching"].isin([True, False]).all()
    for e in block[
        "effects"
    ]:  # the rule: survives iff a significant same-sign matched cluster overlaps it
        assert e["survives_emg_matching"] == bool(e["matched_clusters"])
        assert np.isfinite(e["matched_mean_diff"])


# ----------------------------------------------------------------------------- null study


def _null_clusters(study, seed: int = 42):
    from analyses.erp_me_vs_mae import CONTRASTS, group_erp
    from mmme_neuro.erp import first_level
    from mmme_neuro.ingest import find_sessions, ingest_session
    from mmme_neuro.io.coding import read_coding
    from mmme_neuro.stats import cluster_tests

    config = load_config(None, preprocessing={"ica": False}, seed=seed)
    coding = read_coding(study.coding_file, config.coding)
    sessions = (ingest_session(f, coding.expressions, config) for f in find_sessions(study.raw_dir, coding))
    group, _, _ = group_erp([first_level(s, config) for s in sessions], config)
    return cluster_tests(group, CONTRASTS, config=config)


def test_null_study_no_cluster(ci_null_study):
    clusters = _null_clusters(ci_null_study)
    res = clusters["ME-MaE"]
    assert res is not None and res.n_subjects == 8
    assert res.n_significant == 0, res.clusters.head()


@pytest.mark.slow
def test_null_false_positive_rate(tmp_path):
    from mmme_neuro.simulate.study import simulate_study

    hits = 0
    seeds = (1, 2, 3, 4, 5)
    for seed in seeds:
        study = simulate_study(tmp_path / f"null{seed}", scale="ci", seed=seed, null=True, progress=False)
        hits += int(_null_clusters(study, seed)["ME-MaE"].n_significant > 0)
    assert hits <= 1  # P(>= 2 of 5 | alpha = .05) = 0.023


# ----------------------------------------------------------------------------- units


def _tiny_epochs(n_ch: int = 3, n_t: int = 11, sfreq: float = 10.0):
    rng = np.random.default_rng(0)
    names = ["CPZ", "PZ", "FZ"][:n_ch]
    info = mne.create_info(names, sfreq, "eeg")
    md = pd.DataFrame({
        "epoch_id": ["e0", "e1", "e2", "e3", "e4"],
        "subject": "sub-01",
        "condition": ["ME", "ME", "MaE", "MaE", "ME"],
        "kept": [True, True, True, False, True],
        "emg_rms_uv": [1.0, 2.0, 5.0, 9.0, 3.0],
    })
    data = rng.normal(size=(5, n_ch, n_t)) * 1e-6
    kept = md[md["kept"]].reset_index(drop=True)
    epochs = mne.EpochsArray(data[md["kept"].to_numpy()], info, tmin=-0.2, metadata=kept, verbose=False)
    return epochs, md, data


def test_compute_evoked_counts_missing_condition_and_stack():
    epochs, md, data = _tiny_epochs()
    ev = erp.compute_evoked(epochs, md)  # full bookkeeping table: rejected e3 is matched away
    assert ev.dims == ("condition", "channel", "time")
    assert ev["n_epochs"].values.tolist() == [3, 1, 0]
    np.testing.assert_allclose(ev.sel(condition="ME").values, data[[0, 1, 4]].mean(0) * 1e6)
    np.testing.assert_allclose(ev.sel(condition="MaE").values, data[2] * 1e6)
    assert np.isnan(ev.sel(condition="NE").values).all()
    other = ev.copy()
    other.attrs = {**ev.attrs, "subject": "sub-02"}
    other = other.sel(condition=["ME", "MaE"])
    group = erp.stack_subjects([other, ev])
    assert group.dims == ("subject", "condition", "channel", "time")
    assert list(group["subject"].values) == ["sub-01", "sub-02"]
    assert np.isnan(group.sel(subject="sub-02", condition="NE")).all()
    assert group["n_epochs"].sel(subject="sub-02", condition="NE") == 0
    with pytest.raises(ValueError, match="duplicate"):
        erp.stack_subjects([ev, ev])
    diff = erp.contrast(group, "ME", "MaE")
    np.testing.assert_allclose(diff.values, (group.sel(condition="ME") - group.sel(condition="MaE")).values)
    assert diff.name == "ME-MaE"


def test_evoked_round_trip():
    rng = np.random.default_rng(1)
    names = ["FZ", "CZ", "PZ", "OZ"]
    info = mne.create_info(names, 250.0, "eeg")
    evoked = mne.EvokedArray(rng.normal(size=(4, 50)) * 1e-6, info, tmin=-0.1, nave=17, comment="ME")
    da = erp.from_evoked(evoked, subject="sub-01")
    assert da.dims == ("condition", "channel", "time") and da["n_epochs"].item() == 17
    np.testing.assert_allclose(da.values[0], evoked.data * 1e6)
    back = erp.to_evoked(da)
    np.testing.assert_allclose(back.data, evoked.data, rtol=1e-12, atol=1e-20)
    np.testing.assert_allclose(back.times, evoked.times, atol=1e-9)
    assert back.nave == 17 and back.comment == "ME" and back.ch_names == names
    assert back.info.get_montage() is not None  # Quik-Cap positions
    again = erp.from_evoked(back)
    xr.testing.assert_allclose(again.drop_attrs(), da.drop_attrs())
    with pytest.raises(ValueError, match="choose one"):
        erp.to_evoked(xr.concat([da, da.assign_coords(condition=["MaE"])], "condition"))


def test_measure_components_against_hand_computation():
    epochs, md, data = _tiny_epochs()
    kept = data[md["kept"].to_numpy()] * 1e6
    t = epochs.times  # -0.2 ... 0.8 s in 0.1-s steps
    table = erp.measure_components(epochs, {"P": (0.1, 0.3)}, {"roi": ["CPZ", "PZ"]}, metadata=md)
    assert len(table) == 4 and list(table["epoch_id"]) == ["e0", "e1", "e2", "e4"]
    sel = (t >= 0.1 - 1e-9) & (t <= 0.3 + 1e-9)
    assert sel.sum() == 3
    hand = kept[:, :2, :].mean(axis=1)[:, sel].mean(axis=1)
    np.testing.assert_allclose(table["amplitude_uv"], hand)
    assert table["latency_s"].isna().all() and (table["n_samples"] == 3).all()
    np.testing.assert_allclose(table["emg_rms_uv"], [1.0, 2.0, 5.0, 3.0])  # covariate carried over
    assert list(table["condition"]) == ["ME", "ME", "MaE", "ME"]
    peak = erp.measure_components(epochs, {"P": (0.1, 0.3)}, {"roi": ["CPZ", "PZ"]}, kind="peak", metadata=md,
                                  polarity="negative")  # fmt: skip
    wave = kept[:, :2, :].mean(axis=1)[:, sel]
    np.testing.assert_allclose(peak["amplitude_uv"], wave.min(axis=1))
    np.testing.assert_allclose(peak["latency_s"], t[sel][wave.argmin(axis=1)], atol=1e-9)
    # evoked input: one row per subject x condition, two ROIs
    group = erp.stack_subjects([erp.compute_evoked(epochs, md)])
    avg = erp.measure_components(group, {"P": (0.1, 0.3)}, {"a": "CPZ", "b": ["PZ", "FZ"]})
    assert len(avg) == 6 and set(avg["roi"]) == {"a", "b"}
    me = avg[(avg["condition"] == "ME") & (avg["roi"] == "a")]["amplitude_uv"].item()
    np.testing.assert_allclose(me, kept[[0, 1, 3], 0][:, sel].mean())
    with pytest.raises(ValueError, match="holds no sample"):
        erp.measure_components(group, {"late": (5.0, 6.0)}, "CPZ")
    with pytest.raises(ValueError, match="not in the data"):
        erp.measure_components(group, None, ["XX"])
    with pytest.raises(ValueError, match="kind"):
        erp.measure_components(group, None, "CPZ", kind="area")


def test_viz_panels_draw(tmp_path):
    import matplotlib.pyplot as plt

    from mmme_neuro.constants import SCALP_CHANNELS
    from mmme_neuro.stats import cluster_test
    from mmme_neuro.viz import erp as verp

    rng = np.random.default_rng(3)
    times = np.round(np.arange(-0.2, 0.8, 0.02), 9)
    shape = (6, 2, len(SCALP_CHANNELS), times.size)
    data = rng.normal(size=shape)
    roi = [SCALP_CHANNELS.index(c) for c in ("CPZ", "PZ", "CP1", "CP2", "P1", "P2")]
    bump = 5 * np.exp(-((times - 0.4) ** 2) / (2 * 0.05**2))
    data[:, 0][:, roi] += bump
    group = xr.DataArray(data, dims=("subject", "condition", "channel", "time"),
                         coords={"subject": [f"sub-0{i}" for i in range(1, 7)], "condition": ["ME", "MaE"],
                                 "channel": list(SCALP_CHANNELS), "time": xr.DataArray(times, dims="time", attrs={"units": "s"})})  # fmt: skip
    res = cluster_test(group, contrast=("ME", "MaE"))
    assert res.n_significant >= 1
    values = pd.DataFrame({"subject": np.repeat(group["subject"].values, 2), "condition": ["ME", "MaE"] * 6,
                           "emg_rms_uv": rng.normal(10, 1, 12)})  # fmt: skip
    fig = verp.plot_erp_overview(group, erp.DEFAULT_ROIS, clusters=[res], emg_values=values,
                                 emg_measures=("emg_rms_uv",), conditions=("ME", "MaE"))  # fmt: skip
    assert len(fig.axes) >= 4
    plt.close(fig)


def test_ica_stability_reported_only_when_checked(script_out):
    """The summary's ``ica_stability`` is null without the check; with it, the verdict and sizes reach summary.md."""
    from analyses.erp_me_vs_mae import _ica_stability_summary, build_markdown
    from mmme_neuro.preprocessing import ica_stability_table

    summary = json.loads((script_out / "summary.json").read_text())
    assert summary["results"]["ica_stability"] is None
    assert not (script_out / "ica_stability.csv").exists()
    assert "ICA reliability" not in build_markdown(summary)

    def record(removed, refits):
        stab = [{"seed": 43 + k, "n_iter": 100, "excluded_components": ex, "removed_match_r": r, "same_removal": same,
                 "max_abs_diff_uv": d, "rms_diff_uv": d / 10} for k, (ex, r, same, d) in enumerate(refits)]
        stable = all(f["same_removal"] for f in stab) and min((x for f in stab for x in f["removed_match_r"]), default=1) >= 0.95
        return {"steps": {"ica": {"excluded_components": removed, "stability": {"stable": stable, "refits": stab}}}}

    table = ica_stability_table({
        "sub-02": record([0], [([0], [0.999], True, 1.5), ([0], [0.998], True, 2.0)]),
        "sub-01": record([1], [([1], [0.999], True, 0.5), ([3], [0.41], False, 40.0)]),
        "sub-03": {"steps": {"ica": {"excluded_components": [0]}}},  # not checked
    })
    assert table["subject"].tolist() == ["sub-01", "sub-01", "sub-02", "sub-02"]
    stab = _ica_stability_summary(table)
    assert stab["unstable_subjects"] == ["sub-01"] and stab["n_subjects"] == 2 and stab["n_refits"] == 2
    assert stab["smallest_removed_r"] == 0.41 and stab["max_abs_diff_uv"] == 40.0
    summary["results"]["ica_stability"] = stab
    md = build_markdown(summary)
    assert "ICA reliability (2 refits with other seeds, 2 subjects" in md
    assert "removed components change: sub-01" in md and "up to 40.00 µV" in md
