"""Network analysis (mmme_neuro.netanalysis), its figures and analyses.network_nodal_efficiency.

The planted-coupling test runs the script once on the `ci` study (BIDS,
ocular ICA off) and checks its outputs against the ground truth: alpha
(10 Hz) coupling among F3 FC3 C3 CP3 P3 F4 FC4 C4 CP4 P4 after ME onset only.
The null test runs the library on the `ci` null study.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from mmme_neuro import netanalysis as na
from mmme_neuro.config import Config
from mmme_neuro.containers import load_netcdf
from mmme_neuro.reporting import validate_summary
from mmme_neuro.simulate.study import load_ground_truth

NO_ICA = "[preprocessing]\nica = false\n"


def _no_ica(cfg: Config) -> Config:
    return cfg.model_copy(update={"preprocessing": cfg.preprocessing.model_copy(update={"ica": False})})


# ----------------------------------------------------------------------------- NBS on synthetic matrices


def _synthetic(planted: bool, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n_sub, n = 12, 20
    d = rng.standard_normal((n_sub, n, n))
    d = (d + d.transpose(0, 2, 1)) / np.sqrt(2)
    if planted:
        sub = [2, 5, 7, 11, 13]
        for i in sub:
            for j in sub:
                if i != j:
                    d[:, i, j] += 1.5
    idx = np.arange(n)
    d[:, idx, idx] = 0
    return d


def test_nbs_finds_planted_subnetwork():
    res = na.nbs_core(_synthetic(True), 3.0, n_permutations=500, seed=0, tail=0)
    sig = [c for c in res["components"] if c["p"] < 0.05]
    assert len(sig) == 1
    assert sig[0]["direction"] == "+"
    assert set(sig[0]["nodes"]) == {2, 5, 7, 11, 13}
    assert sig[0]["n_edges"] >= 8  # most of the 10 planted edges
    # seeded: identical on repeat
    again = na.nbs_core(_synthetic(True), 3.0, n_permutations=500, seed=0, tail=0)
    assert np.array_equal(res["null_max"], again["null_max"])


def test_nbs_null_finds_nothing():
    for seed in (1, 2, 3):
        res = na.nbs_core(_synthetic(False, seed), 3.0, n_permutations=300, seed=seed)
        assert not [c for c in res["components"] if c["p"] < 0.05]


def test_nbs_dataarray_and_errors():
    d = _synthetic(True)
    n_sub, n = d.shape[:2]
    nodes = [f"N{i}" for i in range(n)]
    a = xr.DataArray(np.stack([d, np.zeros_like(d)], axis=1), dims=("subject", "condition", "node", "node_other"),
                     coords={"subject": [f"s{i}" for i in range(n_sub)], "condition": ["ME", "MaE"], "node": nodes,
                             "node_other": nodes})  # fmt: skip
    res = na.network_based_statistic(a, ("ME", "MaE"), Config(), n_permutations=200)
    assert res.n_significant == 1
    assert set(res.significant_edges()[["node", "node_other"]].to_numpy().ravel()) == {"N2", "N5", "N7", "N11", "N13"}
    with pytest.raises(ValueError, match="n_subjects, n_nodes"):
        na.nbs_core(d[0])
    with pytest.raises(ValueError, match="tail"):
        na.nbs_core(d, tail=2)


def test_epoch_metric_means_equal_direct_computation():
    """Mean over kept epochs of each epoch's nodal-efficiency AUC, per subject and condition (bctpy-checked kernels)."""
    import bct

    rng = np.random.default_rng(3)
    cfg = Config()
    nodes = [f"N{i}" for i in range(12)]
    per_epoch, rows = [], []
    for subj, conds in (("sub-01", ["ME", "MaE", "MaE", "NE"]), ("sub-02", ["ME", "ME", "MaE", "NE", "NE"])):
        a = rng.uniform(0, 1, (len(conds), 2, 12, 12))
        a = (a + a.transpose(0, 1, 3, 2)) / 2
        a[:, :, np.arange(12), np.arange(12)] = 0
        ids = [f"{subj}-{i}" for i in range(len(conds))]
        per_epoch.append(xr.DataArray(a, dims=("epoch", "band", "node", "node_other"),
                                      coords={"epoch": ids, "band": ["theta", "alpha"], "node": nodes, "node_other": nodes,
                                              "subject": ("epoch", [subj] * len(conds)), "condition": ("epoch", conds)}))  # fmt: skip
        rows += [{"epoch_id": e, "kept": not (subj == "sub-02" and i == 1)} for i, e in enumerate(ids)]
    md = pd.DataFrame(rows)
    out = na.epoch_metric_means(per_epoch, cfg, metadata=md)
    assert dict(out["nodal_efficiency_auc"].sizes) == {"subject": 2, "condition": 3, "band": 2, "node": 12}
    assert out["n_epochs"].sel(subject="sub-02").values.tolist() == [1, 1, 2]  # one ME epoch not kept
    dens = np.array(cfg.network.densities())

    def auc(w):  # bctpy: proportional threshold, binarised, nodal efficiency = mean 1 / distance; trapezoid over density
        vals = []
        for d in dens:
            dist = bct.distance_bin(bct.binarize(bct.threshold_proportional(w, d)))
            with np.errstate(divide="ignore"):
                inv = np.where(np.isfinite(dist) & (dist > 0), 1 / dist, 0.0)
            vals.append(inv.sum(axis=1) / 11)
        return np.trapezoid(np.array(vals), dens, axis=0)

    pe = per_epoch[1]
    want = np.mean([auc(pe.values[i, 1]) for i in (3, 4)], axis=0)  # sub-02, NE, alpha
    np.testing.assert_allclose(out["nodal_efficiency_auc"].sel(subject="sub-02", condition="NE", band="alpha"), want,
                               rtol=0, atol=1e-10)  # fmt: skip
    want_me = auc(per_epoch[1].values[0, 0])  # sub-02 ME theta: only the first ME epoch is kept
    np.testing.assert_allclose(out["nodal_efficiency_auc"].sel(subject="sub-02", condition="ME", band="theta"), want_me,
                               rtol=0, atol=1e-10)  # fmt: skip
    with pytest.raises(ValueError, match="no per-epoch"):
        na.epoch_metric_means([], cfg)


def test_network_config_pads_epochs():
    cfg = na.network_config(Config())
    assert cfg.epochs.tmax == pytest.approx(2.0)  # 1.2 s + 5 sigma_t (0.80 s) of n_cycles = f
    assert cfg.epochs.tmin == pytest.approx(-1.0)


# ----------------------------------------------------------------------------- planted effect via the script


@pytest.fixture(scope="module")
def script_out(ci_bids, tmp_path_factory) -> Path:
    from analyses.network_nodal_efficiency import main

    cfg = tmp_path_factory.mktemp("net_cfg") / "noica.toml"
    cfg.write_text(NO_ICA, encoding="utf-8")
    out = tmp_path_factory.mktemp("net_out")
    assert main(["--bids-root", str(ci_bids), "--config", str(cfg), "--out", str(out)]) == 0
    return out


def test_planted_alpha_coupling_recovered(script_out, ci_study):
    truth = load_ground_truth(ci_study.root)["effects"]["coupling"]
    planted = set(truth["nodes"])
    assert truth["band"] == "alpha"
    nodal = pd.read_csv(script_out / "nodal_me_vs_mae.csv")
    alpha = nodal[nodal["band"] == "alpha"]
    sig = alpha[alpha["significant"]]
    # nodal efficiency: planted nodes higher in ME; significant nodes are planted ones, with ME > MaE
    assert len(sig) >= 1 and set(sig["node"]) <= planted and (sig["t"] > 0).all()
    t_pl = alpha[alpha["node"].isin(planted)]["t"]
    t_ot = alpha[~alpha["node"].isin(planted)]["t"]
    assert t_pl.median() > t_ot.quantile(0.9)
    assert (t_pl > 0).mean() >= 0.7
    # no copy of the coupling in another band (n_cycles = f keeps alpha out of theta): no planted node
    # significantly higher elsewhere (temporal gamma nodes may differ: that is the planted facial EMG)
    other_sig = nodal[(nodal["band"] != "alpha") & nodal["significant"]]
    assert not other_sig[other_sig["node"].isin(planted) & (other_sig["t"] > 0)].shape[0], other_sig
    # edges: NBS finds one positive alpha component spanning most planted nodes
    comps = pd.read_csv(script_out / "nbs_components_me_vs_mae.csv")
    pos = comps[(comps["band"] == "alpha") & comps["significant"] & (comps["direction"] == "+")]
    assert len(pos) == 1
    assert len(planted & set(pos["nodes"].iloc[0].split(","))) >= 8
    # no leaked copy of it in the other bands (theta and beta have their own planted power effects
    # on frontal-midline / central nodes, which may change PLV there: not a leak of the alpha coupling)
    other = comps[(comps["band"] != "alpha") & comps["significant"] & (comps["direction"] == "+")]
    for nodes in other["nodes"]:
        assert len(planted & set(nodes.split(","))) < 5, nodes


def test_script_outputs_valid(script_out):
    summary = json.loads((script_out / "summary.json").read_text(encoding="utf-8"))
    validate_summary(summary)
    assert summary["analysis"] == "network_nodal_efficiency" and summary["n_subjects"] == 8
    kinds = {c["kind"] for c in summary["contrasts"]}
    assert {"node", "nbs_component", "global"} <= kinds
    for c in summary["contrasts"]:
        assert c["band"] in Config().bands and c["p"] is not None and c["effect_size"] is not None
    conn = load_netcdf(script_out / "connectivity.nc")
    assert conn.dims == ("subject", "condition", "band", "node", "node_other") and conn.sizes["node"] == 62
    ds = load_netcdf(script_out / "graph_metrics.nc")
    assert {"nodal_efficiency_auc", "global_efficiency_auc", "mean_clustering_auc"} <= set(ds.data_vars)
    assert ds["density"].values.tolist() == pytest.approx(list(Config().network.densities()))
    # equalised counts: every present condition of a subject averages the same number of epochs
    n = conn["n_epochs"].values
    for row in n:
        assert len(set(row[row > 0].tolist())) == 1
    trials = pd.read_csv(script_out / "trial_efficiency.csv")
    assert {"global_efficiency_auc", "nodal_efficiency_auc", "emg_rms_uv"} <= set(trials.columns)
    for name in ("topomaps_me_vs_mae", "nbs_me_vs_mae", "density_curves", "topomaps_me_vs_ne"):
        assert (script_out / f"{name}.png").stat().st_size > 1000
    assert (script_out / "summary.md").read_text(encoding="utf-8").startswith("# Functional networks")


def test_planned_contrast_and_emg_matching_reported(script_out):
    planned = pd.read_csv(script_out / "planned.csv")
    row = planned.iloc[0]
    assert (
        row["name"] == "alpha_lateral"
        and row["band"] == "alpha"
        and row["measure"] == "nodal_efficiency_auc"
    )
    assert (
        row["mean_diff"] > 0 and row["p_corrected"] < 0.05
    )  # the planted alpha coupling among these nodes
    summary = json.loads((script_out / "summary.json").read_text(encoding="utf-8"))
    rec = next(c for c in summary["contrasts"] if c["kind"] == "planned")
    assert (
        rec["statistic_name"] == "t" and rec["df"] == 7 and rec["location"] == row["roi"].split(",")
    )
    block = summary["results"]["emg_matched"]
    # the ci study's EMG overlaps in some subjects only: the flags follow whether the matched test ran
    tested = bool(block["test"]["tested"])
    assert block["n_subjects"] == 8 and (not tested or block["n_subjects_matched"] >= 2)
    nodes = [c for c in summary["contrasts"] if c["kind"] == "node" and c["contrast"] == "ME-MaE"]
    assert nodes and all(
        isinstance(c["survives_emg_matching"], bool) if tested else c["survives_emg_matching"] is None
        for c in nodes
    )
    assert "## EMG-matched ME - MaE" in (script_out / "summary.md").read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- null study


def test_null_study_no_significant_nodes(ci_null_study):
    from mmme_neuro.epochs import epochs_from_session
    from mmme_neuro.ingest import find_sessions, ingest_session
    from mmme_neuro.io.coding import read_coding

    cfg = na.network_config(_no_ica(Config()))
    coding = read_coding(ci_null_study.coding_file)
    conns, per_epoch, mds = {}, [], []
    for f in find_sessions(ci_null_study.raw_dir, coding):
        s = ingest_session(f, coding.expressions)
        ep, md = epochs_from_session(s, cfg)
        pe = na.epoch_networks(ep, cfg)
        conns[s.subject] = na.condition_networks(pe, cfg, metadata=md)
        per_epoch.append(pe)
        mds.append(md)
    # both estimators: metrics of the equalised mean network, and means of per-epoch metrics (the script's nodal test)
    for metrics in (na.subject_graph_metrics(na.stack_subjects(conns), cfg),
                    na.epoch_metric_means(per_epoch, cfg, metadata=pd.concat(mds, ignore_index=True))):  # fmt: skip
        n_sig = 0
        for contrast in (("ME", "MaE"), ("ME", "NE")):
            tab = na.nodal_contrasts(metrics, contrast, cfg)
            n_sig += int(tab["significant"].sum())
            # FDR: no more discoveries than the nominal rate allows
            assert tab["significant_fdr"].mean() <= cfg.stats.alpha
        assert n_sig <= 1, n_sig  # max-stat FWER 5 % per band-contrast family (10 families)


def test_connectome_figure_panels_colour_scale_and_mni_positions(tmp_path):
    """The NBS figure: one glass-brain panel per band (nilearn), a symmetric colour scale, template MNI nodes."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from mmme_neuro.constants import SCALP_CHANNELS
    from mmme_neuro.viz import network as vnet

    nodes = list(SCALP_CHANNELS)
    coords = vnet._mni_coords(nodes)
    cz, oz, fpz = (coords[nodes.index(c)] for c in ("CZ", "OZ", "FPZ"))
    assert cz[2] > 60 and abs(cz[0]) < 5 and fpz[1] > 60 > -oz[1] - 100  # mm: vertex up, nose forward
    edges = pd.DataFrame({"node": ["FC3", "FC3", "CP1"], "node_other": ["CP4", "C4", "PZ"], "t": [3.5, 4.1, -3.2],
                          "band": ["alpha", "alpha", "beta"]})  # fmt: skip
    adj = vnet._adjacency(edges, nodes)
    assert adj[nodes.index("CP1"), nodes.index("PZ")] == adj[nodes.index("PZ"), nodes.index("CP1")] == -3.2
    assert np.count_nonzero(adj) == 6
    fig = vnet.plot_connectome(edges, nodes, title="NBS ME-MaE", bands=["alpha", "beta", "theta"])
    texts = [t.get_text() for t in fig.findobj(plt.Text)]
    assert {"alpha: 2 edges", "beta: 1 edge", "theta: 0 edges", "NBS ME-MaE"} <= set(texts)
    # one colour scale for all panels, symmetric around 0 at the largest |t|
    scales = [ax.get_ylim() for ax in fig.axes if ax.get_ylabel() == "t"]
    assert scales == [(-4.1, 4.1)], scales
    fig.savefig(tmp_path / "nbs.png")
    plt.close(fig)
    with pytest.raises(ValueError, match="no Quik-Cap 64 position"):
        vnet._mni_coords(["CZ", "X9"])


def test_connectivity_derivatives_open_in_mne_connectivity(script_out, ci_bids):
    """The script's per-subject networks as mne-connectivity files (read_connectivity) equal connectivity.nc."""
    from mne_connectivity import read_connectivity

    from mmme_neuro.pipeline import derivative_paths, derivatives_root

    conn = load_netcdf(script_out / "connectivity.nc")
    paths = derivative_paths(derivatives_root(ci_bids), "sub-01")
    for cond in ("ME", "MaE", "NE"):
        obj = read_connectivity(paths[f"connectivity_{cond}"])
        assert obj.method == conn.attrs["method"] and obj.attrs["condition"] == cond
        assert obj.n_epochs_used == int(conn["n_epochs"].sel(subject="sub-01", condition=cond))
        back = na.from_connectivity(obj)
        want = conn.sel(subject="sub-01", condition=cond).transpose("band", "node", "node_other")
        assert list(back["band"].values) == list(want["band"].values)
        np.testing.assert_allclose(back.values, want.values, rtol=1e-12, atol=0)
        lo, hi = Config().bands[str(back["band"].values[0])]
        assert obj.freqs[0] == pytest.approx((lo + hi) / 2)


def test_interactive_connectome_views_written(script_out):
    """An interactive 3-D view per contrast and band with significant NBS edges (nilearn view_connectome)."""
    views = sorted(p.name for p in script_out.glob("nbs_*_3d.html"))
    for a, b in (("me", "mae"), ("me", "ne")):
        edges = pd.read_csv(script_out / f"nbs_edges_{a}_vs_{b}.csv")
        bands = sorted(set(edges.loc[edges["significant"].astype(bool), "band"]))
        assert [v for v in views if v.startswith(f"nbs_{a}_vs_{b}_")] == [f"nbs_{a}_vs_{b}_{x}_3d.html" for x in bands]
    assert views, "no significant NBS edge in the ci study, whose alpha coupling is planted"
    for v in views:
        assert (script_out / v).read_text(encoding="utf-8")[:200].lower().startswith("<!doctype html")
