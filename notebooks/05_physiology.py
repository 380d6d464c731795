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
# # Physiology: heart rate, skin conductance and respiration after expressions
#
# A facial expression is not only a movement of the face. The orienting response that
# accompanies an emotional event slows the heart for a few seconds (a *deceleration* under
# vagal control), sympathetic activation produces a skin-conductance response (SCR) 1-3 s
# later, and breathing changes. If micro-expressions are leaks of emotions people try to hide,
# their autonomic signature may be as strong as, or stronger than, that of macro-expressions:
# that is the question of *expression-physiology concordance* (Zou et al. 2022), asked over
# several post-onset windows because each signal has its own delay.
#
# This tutorial follows `python -m analyses.physio_concordance` (method and defaults: the
# *Physiology and concordance* analysis page) on the `ci` synthetic study, whose BIOPAC
# recordings (ECG, PPG, RSP, EDA, SKT) carry planted responses that are stronger for ME.

# %%
import logging
import tempfile
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from mmme_neuro import concordance as co
from mmme_neuro import physio as ph
from mmme_neuro.bids import convert_study
from mmme_neuro.config import load_config
from mmme_neuro.pipeline import run_subjects
from mmme_neuro.simulate.study import load_ground_truth, simulate_study
from mmme_neuro.stats import mixed_model
from mmme_neuro.viz import physio as vph

pd.set_option("display.width", 160)
work = Path(tempfile.mkdtemp(prefix="mmme-physio-"))
study = simulate_study(work / "raw", scale="ci", seed=42, progress=False)
bids = work / "bids"
convert_study(study.raw_dir, bids, progress=False, qa=False)  # QA reports: tutorial 06
config = load_config(None, preprocessing={"ica": False})
planted = load_ground_truth(study.root)["effects"]["physio"]
planted

# %% [markdown]
# ## Per subject: process the signals, cut events, extract features
#
# `concordance.first_level` processes one session's physiology (ECG R peaks and heart rate,
# phasic/tonic EDA with an SCR detector, respiration amplitude and rate; each 10-s segment
# checked for dropouts, flat lines, clipping and implausible rates and set to NaN if poor),
# places the events on the physiology clock (ME, MaE, NE controls drawn like the EEG NE epochs,
# clip onsets), and returns event time courses, per-epoch features and the features of the
# concordance windows.
#
# **Clean baseline.** Expressions can follow each other by 2.5 s while a cardiac response lasts
# ~9 s: averaged over all expressions, the baseline of one holds the response to the previous,
# and the change nearly vanishes. An event has a *clean baseline* when no other expression
# began in the preceding 8 s (`clean_baseline_s`); heart-rate and respiration averages use
# those events only.

# %%
step = run_subjects(co.first_level, bids, config, stage="physio", params={"clean_baseline_s": 8.0}, progress=False)
results = list(step.results.values())
print(step.status[["subject", "status", "seconds"]].to_string(index=False))
quality = pd.concat([r["quality"] for r in results], ignore_index=True)
print("signal quality (seconds per reason):", quality.groupby(["signal", "reason"])["seconds"].sum().round(0).to_dict())

# %%
features = pd.concat([r["features"] for r in results], ignore_index=True)
main = features[features["condition"].isin(["ME", "MaE", "NE"])]
main.groupby("condition").agg(events=("event_id", "size"), clean_baseline=("clean_baseline", "sum"))

# %% [markdown]
# ## Event-related time courses
#
# Baseline -2 to 0 s, one mean per subject and condition over clean-baseline events (as the
# script does), then mean ± 95 % CI over subjects.

# %%
group = ph.group_timecourses([r["timecourses"] for r in results], clean_only=True)
vph.plot_timecourses(group)
plt.show()

# %%
hr = group.sel(signal="hr").mean("subject").sel(time=slice(0.0, 6.0))
peak = pd.DataFrame({"min HR change 0-6 s (bpm)": hr.min("time").to_series(),
                     "at (s)": hr.idxmin("time").to_series()}).round(2)
peak.insert(0, "planted (bpm)", pd.Series(planted["hr_change_bpm"]))
print("planted peak at", planted["hr_peak_s"], "s")
peak

# %% [markdown]
# The ME deceleration peaks near the planted 2.5 s. Later in the window, MaE and NE drift
# down too: NE moments lie only `epochs.ne_min_distance_s` (3 s) from the nearest expression,
# so the responses to expressions that *follow* an event enter the end of its window; "clean
# baseline" protects only the baseline.
#
# Why clean-baseline events for EDA too: over all events, the phasic EDA of the previous
# response decays through the baseline and pulls the average down. Compare the EDA peak
# (0-6 s) over all events with that over clean-baseline events:

# %%
eda_all = ph.group_timecourses([r["timecourses"] for r in results], clean_only=False).sel(signal="eda")
pd.DataFrame({"all events": eda_all.sel(time=slice(0, 6)).mean("subject").max("time").to_series(),
              "clean baseline": group.sel(signal="eda", time=slice(0, 6)).mean("subject").max("time").to_series()}).round(3)

# %% [markdown]
# ## Per-epoch responses against what was planted
#
# HR change is the mean change over 0.5-6 s (clean baseline); an SCR counts when a response of
# at least 0.02 µS begins 1-4 s after onset; respiration amplitude change is relative to the
# baseline. NE controls are moments of the same clips without an expression: their SCR rate
# is the *chance* rate of spontaneous SCRs.

# %%
clean = main[main["clean_baseline"].astype(bool)]
found = pd.DataFrame({
    "HR change (bpm, clean)": clean.groupby("condition")["hr_change_bpm"].mean(),
    "HR peak change (bpm, clean)": clean.groupby("condition")["hr_peak_change_bpm"].mean(),
    "SCR rate": main.groupby("condition")["scr_occurred"].mean(),
    "SCR amplitude (µS)": main.groupby("condition")["scr_amplitude_us"].mean(),
    "resp. amplitude change (clean)": clean.groupby("condition")["rsp_amplitude_change"].mean(),
}).T
found["planted ME"] = [planted["hr_change_bpm"]["ME"], planted["hr_change_bpm"]["ME"], planted["scr_probability"]["ME"],
                       planted["scr_amplitude_us"]["ME"], planted["rsp_amplitude_change"]["ME"]]
found["planted MaE"] = [planted["hr_change_bpm"]["MaE"], planted["hr_change_bpm"]["MaE"],
                        planted["scr_probability"]["MaE"], planted["scr_amplitude_us"]["MaE"],
                        planted["rsp_amplitude_change"]["MaE"]]
found.round(2)

# %% [markdown]
# The planted HR change is the depth of the deceleration; the mean over 0.5-6 s is smaller
# (the response rises and decays) and the peak of single noisy epochs deeper. The SCR rate
# after ME and MaE is close to the planted probability (plus a few spontaneous SCRs), and
# the NE rate is the chance level.
#
# ## Mixed models, epoch level
#
# `measure ~ condition + (1 + condition | subject)`: every epoch counts, the subject intercept
# absorbs baseline differences between people, and the random condition slope lets each person
# have their own ME effect (without it the test is anti-conservative when people differ). The
# condition is tested with t on n_subjects - 1 df, and `paired_p` is the subject-level paired
# t-test of the same contrast. ME vs MaE and ME vs NE.
#
# With few subjects, or a binary measure such as SCR occurrence, the optimiser may not
# converge cleanly: the library then tries several optimisers, reports the best fit, flags it
# (`converged` False) and logs a warning rather than failing. We silence those messages here
# (and the numerical warnings of statsmodels) and show the flag in the tables instead.

# %%
logging.getLogger("mmme_neuro.stats").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", category=RuntimeWarning, module="statsmodels")
rows = []
for measure, only_clean in (("hr_change_bpm", True), ("scr_occurred", False), ("scr_magnitude_us", False),
                            ("rsp_amplitude_change", True)):
    d = (clean if only_clean else main).dropna(subset=[measure])
    for reference in ("MaE", "NE"):
        t = mixed_model(d, measure=measure, reference=reference, conditions=("ME", reference))
        rows.append(t[t["kind"] == "condition"])
models = pd.concat(rows, ignore_index=True)
models[["measure", "term", "estimate", "ci_low", "ci_high", "t", "df", "p", "paired_p", "random_effects",
        "converged"]].round({"estimate": 3, "ci_low": 3, "ci_high": 3, "t": 2, "p": 4, "paired_p": 4})

# %% [markdown]
# ## Concordance over post-onset windows
#
# For windows 0-2, 0-4, ... 0-10 s: HRV time-domain features (mean RR, SDNN, RMSSD, pNN50 where
# the window holds enough beats), HR change, SCR occurrence, phasic EDA and respiration
# features per epoch; for each window x feature a mixed model (ME vs MaE, ME vs NE) and a
# repeated-measures correlation with expression occurrence, FDR-corrected across windows x
# features within each family (a test is skipped, p NaN, when a window has too few epochs or
# the feature is constant).

# %%
windows = pd.concat([r["windows"] for r in results], ignore_index=True)
conc = co.concordance_tests(windows, alpha=config.stats.alpha, fdr_method=config.stats.fdr_method)
print(f"{int(conc['p'].notna().sum())} tests, {int(conc['significant'].sum())} significant after FDR, "
      f"{int(conc['converged'].eq(False).sum())} fits flagged not converged")
conc[(conc["test"] == "lmm") & (conc["feature"].isin(["hr_change_bpm", "scr_occurred"]))].pivot_table(
    index=["contrast", "feature"], columns="window_s", values="estimate").round(2)

# %%
vph.plot_concordance_heatmap(conc, contrast="ME-MaE", alpha=config.stats.alpha)
plt.show()

# %% [markdown]
# ## Timing: latencies and the SCR rate against chance
#
# How often is an expression followed by an SCR, compared with the NE chance rate (pooled
# binomial test, and a paired t-test over subjects of the per-subject rates), and when do the
# SCR onset and the HR deceleration peak occur?

# %%
rates, timing = co.response_timing(features, config=config)
print(f"chance (NE) SCR rate: {timing['chance_scr_rate']:.2f}")
pd.DataFrame({c: {"SCR rate": timing[c]["scr_rate"],
                  "SCR latency median (s)": timing[c]["scr_latency_s"]["median"],
                  "HR peak latency median (s)": timing[c]["hr_peak_latency_s"]["median"],
                  "binomial p vs chance": timing[c].get("vs_chance", {}).get("p"),
                  "paired t vs chance": timing[c].get("vs_chance", {}).get("paired_t")}
              for c in ("ME", "MaE", "NE")}).round(3)

# %%
vph.plot_latencies(features)
plt.show()

# %% [markdown]
# ## Planted vs found
#
# - heart-rate deceleration stronger for ME: the group HR time course dips deepest after ME
#   (peak near the planted 2.5 s), MaE in between, NE flat; ME vs MaE and ME vs NE significant
#   in the epoch models;
# - SCRs after ME at about the planted 0.9 probability, after MaE at about 0.5, both far above
#   the NE chance rate, with onsets 1-3 s after the expression;
# - respiration amplitude reduced more after ME.
#
# `brain_body_coupling` (not shown) relates a per-epoch EEG measure, e.g. the P3 amplitude of
# the ERP analysis, to the HR change of the same expression: `python -m analyses.physio_concordance
# --eeg-trials figures/erp_me_vs_mae/components.csv`.
