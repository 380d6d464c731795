"""EMG matching (mmme_neuro.matching): balance, determinism, reporting, and the survival flags.

The flag tests build subject-level arrays from synthetic epochs in which one
ME - MaE difference is carried only by the high-EMG epochs (muscle) and one
is independent of EMG (brain), and run the same steps the analyses run:
match, re-average, cluster-test, flag.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from mmme_neuro import matching
from mmme_neuro.config import load_config
from mmme_neuro.epochs import apply_min_count
from mmme_neuro.matching import cluster_effects, match_emg, node_survival
from mmme_neuro.stats import cluster_test

CALIPER = 0.2


def _table(
    seed: int = 0, n_me: int = 14, n_mae: int = 36, shift: float = 1.2, subjects: int = 4
) -> pd.DataFrame:
    """MaE EMG larger on average than ME (by ``shift`` SD) but overlapping it; one row per epoch."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(subjects):
        scale = 1.0 + s  # subjects differ in EMG level and spread: the caliper is per subject
        for c, n, mu in (("ME", n_me, 10.0), ("MaE", n_mae, 10.0 + shift * 2.0)):
            for i in range(n):
                rows.append(
                    {
                        "epoch_id": f"sub-{s:02d}_{c}{i:03d}",
                        "subject": f"sub-{s:02d}",
                        "condition": c,
                        "emg_rms_uv": scale * rng.normal(mu, 2.0),
                        "kept": True,
                    }
                )
        rows.append(
            {
                "epoch_id": f"sub-{s:02d}_NE000",
                "subject": f"sub-{s:02d}",
                "condition": "NE",
                "emg_rms_uv": 1.0,
                "kept": True,
            }
        )
    return pd.DataFrame(rows)


def _smd(table: pd.DataFrame, ids: set[str], subject: str) -> float:
    """SMD (ME - MaE) of the epochs ``ids`` of one subject, scaled by the subject's pooled SD of
    all its epochs."""
    sub = table[(table["subject"] == subject) & table["condition"].isin(["ME", "MaE"])]
    sd = np.sqrt(
        (
            sub.loc[sub.condition == "ME", "emg_rms_uv"].var()
            + sub.loc[sub.condition == "MaE", "emg_rms_uv"].var()
        )
        / 2
    )
    sel = sub[sub["epoch_id"].isin(ids)]
    return float(
        (
            sel.loc[sel.condition == "ME", "emg_rms_uv"].mean()
            - sel.loc[sel.condition == "MaE", "emg_rms_uv"].mean()
        )
        / sd
    )


def _balanced(table: pd.DataFrame, ids: set[str], bound: float = CALIPER) -> bool:
    """Every subject's selected epochs have |SMD| within the caliper-implied bound (and both
    conditions)."""
    for s in table["subject"].unique():
        smd = _smd(table, ids, s)
        if not np.isfinite(smd) or abs(smd) > bound + 1e-12:
            return False
    return True


# ----------------------------------------------------------------------------- matching


def test_nearest_matching_balances_emg_within_the_caliper():
    table = _table()
    m = match_emg(table, caliper_sd=CALIPER)
    ids = set(m.epoch_ids)
    everything = set(table.loc[table.condition.isin(["ME", "MaE"]), "epoch_id"])
    # before: MaE clearly larger in every subject; after: within the bound the caliper implies
    assert (m.report["smd_before"] < -1.0).all(), m.report
    assert (m.report["smd_after"].abs() <= CALIPER + 1e-12).all(), m.report
    assert _balanced(table, ids)
    assert not _balanced(table, everything)  # sabotage: no matching fails the same check
    np.testing.assert_allclose(
        m.report["smd_after"], [_smd(table, ids, s) for s in m.report["subject"]]
    )
    # 1:1 pairs within the caliper, without replacement, NE untouched
    rep = m.report.set_index("subject")
    assert (rep["n_after_ME"] == rep["n_after_MaE"]).all() and (rep["n_after_ME"] >= 3).all()
    assert (rep["max_pair_diff"] <= rep["caliper"] + 1e-12).all()
    assert m.selected["epoch_id"].is_unique and not m.selected["epoch_id"].str.contains("NE").any()
    pairs = m.selected.groupby("match_group")
    assert (pairs.size() == 2).all() and (pairs["condition"].nunique() == 2).all()
    np.testing.assert_allclose(rep["caliper"], CALIPER * rep["pooled_sd"])


def test_matching_is_deterministic_and_ties_go_to_the_smaller_epoch_id():
    table = _table(seed=3)
    a = match_emg(table)
    b = match_emg(table.sample(frac=1.0, random_state=7))  # row order does not matter
    assert a.epoch_ids == b.epoch_ids
    pd.testing.assert_frame_equal(a.report, b.report)
    pd.testing.assert_frame_equal(a.selected, b.selected)
    for method in ("nearest", "strata"):
        assert (
            match_emg(table, method=method).epoch_ids == match_emg(table, method=method).epoch_ids
        )
    ties = pd.DataFrame(
        {
            "epoch_id": ["m1", "x2", "x1", "m2"],
            "subject": "s",
            "condition": ["ME", "MaE", "MaE", "ME"],
            "emg_rms_uv": [1.0, 1.1, 0.9, 5.0],
        }
    )
    m = match_emg(ties, caliper_sd=0.2)  # m1 is 0.1 from x1 and x2: x1 (smaller id) wins
    assert m.epoch_ids == ("m1", "x1")


def test_subjects_without_overlap_are_reported_not_dropped():
    table = _table(subjects=2)
    far = pd.DataFrame(
        {
            "epoch_id": [f"far_{c}{i}" for c in ("ME", "MaE") for i in range(5)],
            "subject": "sub-far",
            "condition": ["ME"] * 5 + ["MaE"] * 5,
            "emg_rms_uv": [1.0, 1.1, 1.2, 1.3, 1.4, 90.0, 91.0, 92.0, 93.0, 94.0],
        }
    )
    only_me = pd.DataFrame(
        {
            "epoch_id": ["solo_ME0", "solo_ME1", "solo_MaE0"],
            "subject": "sub-solo",
            "condition": ["ME", "ME", "MaE"],
            "emg_rms_uv": [2.0, 3.0, np.nan],
        }
    )
    table = pd.concat([table, far.assign(kept=True), only_me.assign(kept=True)], ignore_index=True)
    for method in ("nearest", "strata"):
        m = match_emg(table, method=method)
        rep = m.report.set_index("subject")
        assert set(rep.index) == {"sub-00", "sub-01", "sub-far", "sub-solo"}
        assert (
            rep.loc["sub-far", "status"] == "no_overlap" and rep.loc["sub-far", "n_after_ME"] == 0
        )
        assert (
            "caliper" in rep.loc["sub-far", "reason"] or "stratum" in rep.loc["sub-far", "reason"]
        )
        assert (
            rep.loc["sub-solo", "status"] == "missing_condition"
            and rep.loc["sub-solo", "n_missing"] == 1
        )
        assert "MaE" in rep.loc["sub-solo", "reason"]
        block = matching.summary_block(
            m,
            pd.DataFrame({"subject": [], "condition": [], "included": [], "reason": []}),
            {"tested": False, "reason": "x"},
            [],
        )
        assert set(block["subjects_not_matched"]) == {"sub-far", "sub-solo"}
        text = "\n".join(matching.markdown_lines(block))
        assert "sub-far (no_overlap" in text and "sub-solo (missing_condition" in text


def test_strata_keep_equal_counts_per_stratum_and_reduce_imbalance():
    table = _table(seed=5, shift=0.8)
    m = match_emg(table, method="strata", n_strata=5)
    counts = m.selected.groupby(["match_group", "condition"]).size().unstack()
    assert (counts["ME"] == counts["MaE"]).all()
    assert (m.report["smd_after"].abs() < m.report["smd_before"].abs()).all(), m.report
    assert m.report["caliper"].isna().all()


def test_apply_restricts_kept_and_leaves_ne():
    table = _table(subjects=1)
    table.loc[3, "kept"] = False  # a rejected ME epoch is never matched
    m = match_emg(table)
    assert table.loc[3, "epoch_id"] not in m.epoch_ids
    md = m.apply(table)
    assert md["kept"].sum() == len(m.epoch_ids) + 1  # the matched epochs and the NE epoch
    assert (
        md.loc[md.condition == "NE", "kept"].all()
        and not md.loc[md.condition == "NE", "emg_matched"].any()
    )
    assert set(md.loc[md["emg_matched"], "epoch_id"]) == set(m.epoch_ids)
    assert table["kept"].sum() == len(table) - 1  # the input is not changed


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"method": "random"}, "method"),
        ({"caliper_sd": 0}, "caliper_sd"),
        ({"caliper_sd": float("nan")}, "caliper_sd"),
        ({"method": "strata", "n_strata": 1}, "n_strata"),
        ({"measure": "emg_nope"}, "emg_nope"),
        ({"conditions": ("ME", "ME")}, "conditions"),
    ],
)
def test_match_emg_validates_arguments(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        match_emg(_table(subjects=1), **kwargs)


def test_match_emg_rejects_text_measure_and_duplicate_ids():
    t = _table(subjects=1)
    with pytest.raises(ValueError, match="numeric"):
        match_emg(t.assign(emg_rms_uv=t["emg_rms_uv"].astype(str)))
    with pytest.raises(ValueError, match="unique"):
        match_emg(pd.concat([t, t.iloc[:1]]))


def test_matching_options_follow_the_configuration():
    assert matching.matching_options(load_config(None, emg_matching={"method": "off"})) is None
    opts = matching.matching_options(
        load_config(None, emg_matching={"method": "strata", "n_strata": 4})
    )
    assert opts == {"measure": "emg_rms_uv", "method": "strata", "caliper_sd": 0.2, "n_strata": 4}


# ----------------------------------------------------------------------------- survival flags

#: Channels of the synthetic arrays: a temporal group (the muscle) and a parietal one (the brain),
#: far apart.
TEMPORAL = ("FT7", "T7", "TP7", "FC5", "C5", "CP5")
PARIETAL = ("CP1", "CPZ", "CP2", "P1", "PZ", "P2")
CHANNELS = TEMPORAL + PARIETAL + ("FZ", "FCZ", "CZ", "O1", "OZ", "O2", "FP1", "FP2")


def _synthetic_epochs(seed: int = 11, n_subjects: int = 12):
    """Per-epoch data (subject, epoch, channel, time).

    Noise, a muscle artefact proportional to each epoch's EMG on the temporal
    channels (ME and MaE alike), and a brain effect on the parietal ones in ME only.
    """
    rng = np.random.default_rng(seed)
    times = np.round(np.arange(30) * 0.04, 9)
    win = (times >= 0.4) & (times <= 0.8)
    rows, data = [], {}
    for s in range(n_subjects):
        subj = f"sub-{s:02d}"
        for c, n, mu in (("ME", 24, 10.0), ("MaE", 48, 13.0)):
            for i in range(n):
                emg = rng.normal(mu, 2.5)
                x = rng.normal(0.0, 1.0, size=(len(CHANNELS), times.size))
                x[: len(TEMPORAL)][:, win] += 1.0 * (emg - 10.0)  # muscle: only where EMG is high
                if c == "ME":
                    x[len(TEMPORAL) : 2 * len(TEMPORAL)][:, win] += 2.0  # brain: independent of EMG
                eid = f"{subj}_{c}{i:03d}"
                rows.append(
                    {
                        "epoch_id": eid,
                        "subject": subj,
                        "condition": c,
                        "emg_rms_uv": emg,
                        "kept": True,
                    }
                )
                data[eid] = x
    return pd.DataFrame(rows), data, times


def _average(md: pd.DataFrame, data: dict[str, np.ndarray], times: np.ndarray) -> xr.DataArray:
    subjects = sorted(md["subject"].unique())
    out = np.full((len(subjects), 2, len(CHANNELS), times.size), np.nan)
    for i, s in enumerate(subjects):
        for j, c in enumerate(("ME", "MaE")):
            ids = md.loc[(md.subject == s) & (md.condition == c) & md.kept, "epoch_id"]
            if len(ids) >= 3:
                out[i, j] = np.mean([data[e] for e in ids], axis=0)
    return xr.DataArray(
        out,
        dims=("subject", "condition", "channel", "time"),
        coords={
            "subject": subjects,
            "condition": ["ME", "MaE"],
            "channel": list(CHANNELS),
            "time": times,
        },
    )


def test_effect_carried_by_high_emg_epochs_is_flagged_and_a_real_one_survives():
    md, data, times = _synthetic_epochs()
    main = cluster_test(
        _average(md, data, times), contrast=("ME", "MaE"), n_permutations=1000, seed=1
    )
    m = match_emg(md, caliper_sd=CALIPER)
    assert (m.report["n_after_ME"] >= 5).all()
    group_m = _average(m.apply(md), data, times)
    matched = cluster_test(group_m, contrast=("ME", "MaE"), n_permutations=1000, seed=1)
    effects = cluster_effects(main, matched, matched_data=group_m)
    tab = main.clusters.set_index("cluster")
    by_region = {}
    for e in effects:
        chans = set(tab.loc[e["cluster"], "channels"].split(","))
        # clusters may reach a neighbour or two of the subset's sparse Delaunay graph: name them by
        # majority
        region = (
            "temporal"
            if len(chans & set(TEMPORAL)) >= 5
            else "parietal"
            if len(chans & set(PARIETAL)) >= 5
            else "other"
        )
        by_region[region] = e
    assert set(by_region) == {"temporal", "parietal"}, main.clusters
    muscle, brain = by_region["temporal"], by_region["parietal"]
    assert (
        muscle["sign"] < 0 and muscle["survives_emg_matching"] is False
    )  # MaE > ME: their EMG is larger
    assert abs(muscle["matched_mean_diff"]) < 0.25 * abs(
        muscle["mean_diff"]
    )  # it shrinks, not only gets noisier
    assert brain["sign"] > 0 and brain["survives_emg_matching"] is True and brain["retained"] > 0.7
    # the summary block and the summary.md section name the cluster that disappears
    _, report = apply_min_count(m.apply(md), load_config(None), conditions=("ME", "MaE"))
    block = matching.summary_block(m, report, matching.cluster_test_info(matched), effects)
    assert block["n_disappear"] == 1 and block["test"]["tested"]
    lines = matching.markdown_lines(
        block, lambda t: f"{t['n_significant']} significant", what="cluster"
    )
    gone = next(x for x in lines if "disappear under EMG matching" in x)
    assert f"cluster {muscle['cluster']}" in gone and f"cluster {brain['cluster']}" not in gone


def test_without_matching_nothing_disappears_and_untestable_is_unknown():
    """The flag can fail: the unmatched data as "matched" data keep every cluster; no matched test
    gives None."""
    md, data, times = _synthetic_epochs(seed=12)
    group = _average(md, data, times)
    main = cluster_test(group, contrast=("ME", "MaE"), n_permutations=500, seed=2)
    same = cluster_effects(main, main, matched_data=group)
    assert same and all(e["survives_emg_matching"] is True for e in same)
    assert all(e["survives_emg_matching"] is None for e in cluster_effects(main, None))
    with pytest.raises(ValueError, match="same features"):
        matching.cluster_survival(
            main, cluster_test(group.isel(time=slice(0, 20)), n_permutations=100, seed=2)
        )


def test_node_survival_rule():
    main = pd.DataFrame(
        {
            "band": ["alpha"] * 3,
            "node": ["C3", "C4", "PZ"],
            "t": [4.0, -3.5, 1.0],
            "p_maxstat": [0.01, 0.03, 0.9],
            "p_fdr": [0.01, 0.02, 0.9],
            "significant": [True, True, False],
            "significant_fdr": [True, True, False],
        }
    )
    matched = main.assign(t=[3.0, 3.2, 1.0], p_maxstat=[0.02, 0.04, 0.9])  # C4 flips sign
    out = node_survival(main, matched).set_index("node")
    assert list(out.index) == ["C3", "C4"]
    assert bool(out.loc["C3", "survives_emg_matching"])
    assert not out.loc["C4", "survives_emg_matching"]
    weak = node_survival(main, matched.assign(p_maxstat=0.2)).set_index("node")
    assert not weak["survives_emg_matching"].any()
    assert node_survival(main, None)["survives_emg_matching"].isna().all()
