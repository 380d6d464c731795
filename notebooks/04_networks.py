# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Functional networks: phase coupling, graph metrics, NBS
#
# Do micro-expressions engage a different large-scale network than macro-expressions? The
# ME/MaE/NE EEG network papers (Zhao et al. 2022, 2024; Chen et al. 2025) answer with
# **phase-locking value (PLV) networks**: one 64-node graph per epoch and frequency band whose
# edges are the consistency of the phase difference between two electrodes, binarised at a
# range of edge densities, summarised by graph metrics (nodal and global efficiency,
# clustering, path length), and compared between conditions per node, per edge component (the
# network-based statistic, NBS) and globally.
#
# This tutorial follows `python -m analyses.network_nodal_efficiency` (method and defaults: the
# *Functional networks* analysis page) on the `ci` synthetic study, in which an alpha-band
# (10 Hz) phase coupling among ten lateral fronto-centro-parietal electrodes was planted for
# ME only. It ends by checking the graph metrics against the Brain Connectivity Toolbox.

# %%
import itertools
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mmme_neuro import epochs as ep_mod
from mmme_neuro import netanalysis as na
from mmme_neuro import network as nw
from mmme_neuro.bids import convert_study
from mmme_neuro.config import load_config
from mmme_neuro.pipeline import run_subjects
from mmme_neuro.simulate.study import load_ground_truth, simulate_study
from mmme_neuro.viz import network as vnet

pd.set_option("display.width", 160)
work = Path(tempfile.mkdtemp(prefix="mmme-networks-"))
study = simulate_study(work / "raw", scale="ci", seed=42, progress=False)
bids = work / "bids"
convert_study(study.raw_dir, bids, progress=False, qa=False)  # QA reports: tutorial 06
coupling = load_ground_truth(study.root)["effects"]["coupling"]
print({k: coupling[k] for k in ("band", "freq_hz", "nodes", "window_s", "amplitude_uv", "phase_lag_rad")})

# %% [markdown]
# ## Configuration: longer epochs for narrow-band wavelets
#
# The network analysis uses wavelets with `n_cycles = f` (a 1-Hz frequency resolution), so that
# a 10-Hz alpha coupling does not leak into the theta band. The price is long kernels: the
# post-onset window 0-1.2 s is free of edge effects only with ~0.8 s of data on both sides, so
# `network_config` lengthens the epochs. ICA is off to keep the tutorial fast, and the node
# and NBS permutation tests use 200 permutations instead of 1000 (`stats.n_permutations`).

# %%
base = load_config(None, preprocessing={"ica": False}, stats={"n_permutations": 200})
config = na.network_config(base)
print(f"epochs {base.epochs.tmin}..{base.epochs.tmax} s -> {config.epochs.tmin}..{config.epochs.tmax} s; "
      f"window {na.DEFAULT_WINDOW} s; densities {config.network.densities()[0]:.2f}-{config.network.densities()[-1]:.2f}")

# %% [markdown]
# ## Per subject: one network per epoch and band, averaged per condition
#
# `netanalysis.first_level` computes the within-epoch PLV of every epoch and band in 0-1.2 s
# (`per_epoch`), and the mean over count-equalised epochs of each condition (`connectivity`):
# ME has fewer epochs than MaE, and a mean over fewer epochs is noisier, which changes the rank
# order of the edges that a proportional threshold keeps.

# %%
step = run_subjects(na.first_level, bids, config, stage="network", progress=False)
print(step.status[["subject", "status", "seconds"]].to_string(index=False))
first = next(iter(step.results.values()))
print("per epoch:", dict(first["per_epoch"].sizes))
first["connectivity"]

# %% [markdown]
# Stack the subjects into `(subject, condition, band, node, node_other)` and apply the
# minimum-count rule (a condition with fewer than 3 clean epochs is set to NaN for that subject).

# %%
md = pd.concat([r["epochs"] for r in step.results.values()], ignore_index=True)
conn = na.stack_subjects({s: r["connectivity"] for s, r in step.results.items()})
_, min_count = ep_mod.apply_min_count(md, config, conditions=na.CONDITIONS)
for row in min_count[~min_count["included"]].itertuples():
    conn.loc[{"subject": row.subject, "condition": row.condition}] = np.nan
print(dict(conn.sizes), "| subject x condition excluded:", int((~min_count["included"]).sum()))

# %% [markdown]
# ## First look: PLV among the planted nodes
#
# Before any graph theory: the mean PLV over the 45 pairs of planted nodes and over all other
# pairs, per band and condition. The coupling should stand out in alpha, for ME.

# %%
nodes = [str(n) for n in conn["node"].values]
planted = coupling["nodes"]
in_set = np.isin(nodes, planted)
pair_planted = np.outer(in_set, in_set) & ~np.eye(len(nodes), dtype=bool)
pair_other = ~np.outer(in_set, in_set) & ~np.eye(len(nodes), dtype=bool)
mean_plv = conn.mean("subject")
plv = pd.DataFrame({
    "planted pairs": mean_plv.where(pair_planted).mean(("node", "node_other")).to_series(),
    "other pairs": mean_plv.where(pair_other).mean(("node", "node_other")).to_series(),
}).unstack("condition").round(3)
plv

# %% [markdown]
# ## Graph metrics over densities
#
# Each condition network is thresholded to keep its strongest 5 %, 10 %, ... 50 % of edges
# (proportional thresholds, binary graphs), so that conditions are compared at equal numbers
# of edges; metrics are computed at every density and summarised by their area under the
# density curve (AUC), which avoids choosing one arbitrary threshold.

# %%
metrics = na.subject_graph_metrics(conn, config)
print(list(metrics.data_vars))
vnet.plot_density_curves(metrics, "global_efficiency")
plt.show()

# %% [markdown]
# ## Nodes: which electrodes gain efficiency for ME?
#
# Nodal efficiency (the mean inverse shortest-path length from a node to all others) measures
# how well a node is integrated. Per band, a paired sign-flip permutation test per node
# (ME - MaE of the AUC), corrected over the 62 nodes with the max-statistic (FWER) and FDR.

# %%
nodal = na.nodal_contrasts(metrics, ("ME", "MaE"), config)
alpha_nodes = nodal[nodal["band"] == "alpha"].sort_values("t", ascending=False)
print("significant (max-stat):", nodal.loc[nodal["significant"], ["band", "node"]].values.tolist())
top = alpha_nodes.head(len(planted))
print(f"alpha: {int(top['node'].isin(planted).sum())} of the {len(planted)} nodes with the largest t are planted")
print("mean t, planted vs other nodes:", round(alpha_nodes.loc[alpha_nodes["node"].isin(planted), "t"].mean(), 2),
      round(alpha_nodes.loc[~alpha_nodes["node"].isin(planted), "t"].mean(), 2))
top[["node", "mean_diff", "t", "p", "p_maxstat", "p_fdr", "cohen_dz"]].round(3)

# %%
vnet.plot_nodal_topomaps(metrics, ("ME", "MaE"), nodal)
plt.show()

# %% [markdown]
# With 8 subjects the per-node test is conservative (62 nodes per band, max-statistic): the
# planted nodes dominate the top of the alpha ranking, but few of them pass the correction.
#
# ### More power without equalising: the mean of per-epoch nodal efficiency
#
# The mean network above averages only as many MaE epochs as there are ME epochs. Each epoch's
# own network has the same window length whatever the condition, so its nodal efficiency is
# not biased by the epoch count: the mean over *all* kept epochs of a condition uses every
# epoch. That is what the analysis script tests node by node
# (`netanalysis.epoch_metric_means`). Compare the planted alpha nodes under both estimators:

# %%
per_epoch = [r["per_epoch"] for r in step.results.values()]
included = conn.notnull().any(("band", "node", "node_other"))  # the same minimum-count rule
node_metrics = na.epoch_metric_means(per_epoch, config, metadata=md).where(included)
nodal_epochs = na.nodal_contrasts(node_metrics, ("ME", "MaE"), config)
alpha_epochs = nodal_epochs[nodal_epochs["band"] == "alpha"]
print("median t of the planted alpha nodes: mean network",
      round(alpha_nodes.loc[alpha_nodes["node"].isin(planted), "t"].median(), 2),
      "| mean of per-epoch metrics", round(alpha_epochs.loc[alpha_epochs["node"].isin(planted), "t"].median(), 2))
print("significant (max-stat):", nodal_epochs.loc[nodal_epochs["significant"], ["band", "node", "t"]].round(1).values.tolist())

# %% [markdown]
# With proportional thresholds a contrast is relative: nodes that gain edges for ME take them
# from the rest of the graph, so a node outside the coupled set can also come out lower.
# Note the gamma map: temporal nodes lose efficiency for ME relative to MaE. That is again the
# facial EMG (larger for MaE), which couples the temporal electrodes among themselves at high
# frequencies; a network difference at temporal sites in beta/gamma needs the same EMG checks
# as in tutorial 03 (the analysis script fits trial-level models with the EMG covariate).
#
# ## Edges: the network-based statistic
#
# The NBS (Zalesky et al. 2010) tests edges jointly: a paired t per edge, a primary threshold
# (|t| > 3.0, p < 0.02 with df = 7), connected components of supra-threshold edges, and the
# component size compared with the largest component under random sign flips. It has more
# power than per-edge tests for an effect that spans a connected subnetwork, like ours.

# %%
nbs = na.network_based_statistic(conn.sel(band="alpha"), ("ME", "MaE"), config, threshold=3.0)
print(f"{nbs.n_subjects} subjects, {nbs.n_permutations} permutations")
nbs.components[["component", "direction", "n_edges", "n_nodes", "p", "significant", "max_t"]]

# %%
edges = nbs.significant_edges()
positive = edges[edges["direction"] == "+"]
planted_pairs = {frozenset(p) for p in itertools.combinations(planted, 2)}
hit = positive.apply(lambda r: frozenset((r["node"], r["node_other"])) in planted_pairs, axis=1)
print(f"positive (ME > MaE) component: {len(positive)} edges, {int(hit.sum())} between planted nodes "
      f"({hit.sum() / len(planted_pairs):.0%} of the {len(planted_pairs)} planted pairs)")
print("planted nodes in it:", sorted((set(positive["node"]) | set(positive["node_other"])) & set(planted)))
negative = edges[edges["direction"] == "-"]
ends = negative["node"].isin(planted).astype(int) + negative["node_other"].isin(planted).astype(int)
print(f"negative (ME < MaE) component: {len(negative)} edges; planted nodes at their ends (0/1/2):",
      ends.value_counts().reindex([0, 1, 2], fill_value=0).to_dict())
vnet.plot_connectome(positive, nodes, title=f"NBS alpha ME > MaE: {len(positive)} edges")
plt.show()

# %% [markdown]
# The negative component (ME < MaE) is mostly the other face of the same coupling: most of its
# edges join a planted node to a node outside the set, none joins two planted nodes. At the
# planted nodes the phase is dominated by the shared 10-Hz source for ME, so their coupling
# with the rest of the scalp drops. Whether that is an interesting "decoupling" or a by-product is a
# question the data alone cannot answer: it is why knowing the ground truth of a simulation
# helps to read real results.
#
# ## Checking the graph metrics against the Brain Connectivity Toolbox
#
# `mmme_neuro.network` computes the metrics on whole stacks of graphs at once (vectorised), but
# they must be the field's metrics. The Brain Connectivity Toolbox (`bctpy`) has no nodal
# efficiency function; its reference is the mean of `1 / bct.distance_bin(A)` over the other
# nodes. On a few subjects' alpha networks at three densities:

# %%
import bct  # noqa: E402  (bctpy, in the dev extras)

rows = []
for subject, cond, density in itertools.product(conn["subject"].values[:3], ("ME", "MaE"), (0.05, 0.2, 0.5)):
    W = conn.sel(subject=subject, condition=cond, band="alpha").values.astype(float)
    A = (bct.threshold_proportional(W, density) > 0).astype(float)  # bct's binary graph
    with np.errstate(divide="ignore"):
        inv = 1.0 / bct.distance_bin(A)  # 1/0 on the diagonal, set to 0 below
    np.fill_diagonal(inv, 0.0)
    rows.append({"subject": subject, "condition": cond, "density": density,
                 "same edges": bool((nw.threshold_proportional(W, density) == A).all()),
                 "nodal efficiency": np.max(np.abs(nw.nodal_efficiency(A) - inv.sum(axis=1) / (len(A) - 1))),
                 "global efficiency": abs(float(nw.global_efficiency(A)) - bct.efficiency_bin(A)),
                 "clustering": np.max(np.abs(nw.clustering_coefficient(A) - bct.clustering_coef_bu(A)))})
check = pd.DataFrame(rows)
print(f"{len(check)} graphs, identical thresholded edges: {check['same edges'].all()}; max |mmme_neuro - bct|:",
      check[["nodal efficiency", "global efficiency", "clustering"]].max().map("{:.1e}".format).to_dict())

# %% [markdown]
# The functions take whole stacks: here every subject, condition and band at ten densities at
# once. In an interactive session, `n_jobs=-1` spreads a large stack over the cores; each part
# runs the same single-threaded code, so the values do not depend on it (the analysis scripts
# leave it at 1: their parallelism is one dask worker per core).

# %%
densities = np.round(np.arange(0.05, 0.51, 0.05), 2)
W_all = conn.transpose(..., "node", "node_other").values
A_all = np.stack([nw.threshold_proportional(W_all, p) for p in densities], axis=-3).astype(bool)
E_all = nw.nodal_efficiency(A_all, n_jobs=-1)
print(f"{A_all[..., 0, 0].size} graphs {A_all.shape[:-2]} -> nodal efficiency {E_all.shape}; "
      f"identical with one thread: {np.array_equal(E_all, nw.nodal_efficiency(A_all))}")
