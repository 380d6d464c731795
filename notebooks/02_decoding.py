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
# # Decoding ME vs MaE from EEG, physiology and their fusion - honestly
#
# Per-epoch features of every modality, computed per subject in parallel and cached
# (`mmme_neuro.pipeline.run_subjects`), then leave-one-subject-out decoding with UF1/UAR and a
# permutation chance level that renames whole subjects' classes, a leakage check, and time-resolved decoding.
# Runs on the `ci` synthetic study (planted ERP, oscillation, coupling and physiological effects,
# and facial EMG larger for MaE: the confound to keep out of "EEG" results).

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import xarray as xr

from mmme_neuro import decoding as dec
from mmme_neuro import features as ft
from mmme_neuro.bids import convert_study
from mmme_neuro.config import load_config
from mmme_neuro.pipeline import run_subjects
from mmme_neuro.simulate.study import simulate_study
from mmme_neuro.viz.decoding import plot_scores, plot_time_decoding

work = Path(tempfile.mkdtemp(prefix="mmme-decoding-"))
study = simulate_study(work / "raw", scale="ci", seed=42, progress=False)
bids = work / "bids"
convert_study(study.raw_dir, bids, progress=False, qa=False)  # QA reports: tutorial 06
config = load_config(None, preprocessing={"ica": False}, decoding={"n_permutations": 20},
                     stats={"n_permutations": 200})

# %% [markdown]
# One row per epoch; columns `<set>__<what>__<where>`. A second call reads the cache.

# %%
report = run_subjects(ft.first_level, bids, config, stage="decoding-features", progress=False)
table = pd.concat([r["table"] for r in report.results.values()], ignore_index=True)
series = xr.concat([r["series"] for r in report.results.values()], dim="epoch")
print(report.status["status"].value_counts().to_dict(), table.shape)
table.filter(regex="^(subject|condition|physio__hr_change_bpm|emg__emg_rms_uv)$").head()

# %% [markdown]
# EEG features that facial EMG can produce by itself (temporal channels, gamma band) are left out
# of the `eeg` set; `emg` alone shows what the muscle artefact would give.

# %%
prone = ft.emg_prone_columns(table.columns, config)
results = [dec.decode(table, "me_vs_mae", s, config=config, fusion=f, exclude_columns=prone if s != "emg" else ())
           for s, f in (("eeg", "early"), ("physio", "early"), ("eeg+physio", "early"), ("eeg+physio", "late"),
                        ("emg", "early"))]
scores = dec.summary_table(results)
scores[["feature_set", "fusion", "uf1", "uf1_chance", "uf1_p", "uar", "uar_chance", "uar_p"]]

# %%
plot_scores(scores)
plt.show()

# %% [markdown]
# Is the evaluation honest? Replace a test subject's other epochs and check that the prediction of
# one of its epochs does not move (it would if anything was normalised or selected on all data).

# %%
dec.pipeline_leakage_check(table, "me_vs_mae", "eeg+physio", config=config)

# %% [markdown]
# When does ME/MaE information appear? A classifier per time point, tested on each left-out
# subject, cluster-corrected over time.

# %%
timed = dec.time_resolved(series, table, "me_vs_mae", config=config)
print("first significant time (s):", timed.first_significant_s)
plot_time_decoding(timed.scores, timed.significant, timed.generalization, timed.gen_significant)
plt.show()
