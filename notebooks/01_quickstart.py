# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Quickstart: synthetic study -> BIDS -> ME vs MaE ERP
#
# This tutorial runs the whole path on the small `ci` synthetic study (8 subjects, seconds to
# generate): the raw files in MMME's formats, their conversion to a validated BIDS study, epochs
# aligned to expression onset, the per-subject ERPs, a cluster test and the figure. Replace
# `scale="ci"` by `"default"` for the study that `make figures` analyses, or point
# `convert_study` at your own MMME exports (the coding file plus one EEG and one BIOPAC file per
# session; `mmme-neuro convert --help`).
#
# The synthetic study has *planted* effects: a centro-parietal component at 400 ms, larger for
# micro-expressions (ME) than for macro-expressions (MaE). We should find it.

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

from mmme_neuro import epochs as ep_mod
from mmme_neuro import erp
from mmme_neuro.bids import convert_study
from mmme_neuro.config import load_config
from mmme_neuro.dataset import iter_sessions
from mmme_neuro.simulate.study import simulate_study
from mmme_neuro.stats import cluster_test
from mmme_neuro.viz.erp import plot_erp_waveforms

work = Path(tempfile.mkdtemp(prefix="mmme-quickstart-"))
study = simulate_study(work / "raw", scale="ci", seed=42, progress=False)
summary = convert_study(study.raw_dir, work / "bids", progress=False, qa=False)  # QA reports: tutorial 06
print(summary.counts, "accounting ok:", summary.accounting_ok)

# %% [markdown]
# Every coded expression is either in the BIDS `events.tsv` of its subject or in
# `derivatives/mmme-neuro/exclusions.tsv` with its reason. Now epochs and ERPs, one subject at a
# time (ICA is switched off here to keep the tutorial fast; it is on by default).

# %%
config = load_config(None, preprocessing={"ica": False})
evokeds = []
for session in iter_sessions(work / "bids"):
    epochs, metadata = ep_mod.epochs_from_session(session, config)
    evokeds.append(erp.compute_evoked(epochs, metadata, conditions=erp.CONDITIONS, subject=session.subject))
group = erp.stack_subjects(evokeds, config=config)
group

# %% [markdown]
# `group` is an `xarray.DataArray` with named dimensions `(subject, condition, channel, time)`,
# values in µV and provenance in `attrs`. A cluster-based permutation test over channels x time:

# %%
result = cluster_test(group, contrast=("ME", "MaE"), config=config)
result.clusters.head()

# %%
roi = ["CP1", "CPZ", "CP2", "P1", "PZ", "P2"]
axes = plot_erp_waveforms(group, {"centro-parietal": roi}, clusters=result)
plt.show()

# %% [markdown]
# ## The data model in five lines
#
# Select by name, average over named dimensions, go to MNE and back, save with provenance.

# %%
me_minus_mae = group.sel(condition="ME") - group.sel(condition="MaE")
peak = me_minus_mae.sel(channel=roi).mean(("subject", "channel"))
print("ME - MaE peak (µV) at", float(peak.idxmax("time")), "s:", round(float(peak.max()), 2))
evoked = erp.to_evoked(group.mean("subject"), condition="ME")  # an mne.EvokedArray
back = erp.from_evoked(evoked)
print(evoked, back.dims)
print({k: group.attrs[k] for k in ("units", "config_hash", "mmme_neuro_version") if k in group.attrs})
