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
# # Working with your own MMME files
#
# The other tutorials run on synthetic studies. This one is about the files you receive: the
# MMME **coding file** (one row per coded expression), the **EEG recordings** (Curry, EEGLAB
# and other formats) and the **BIOPAC physiology exports**, how they must be laid out, how to
# point the configuration at them, how to convert them to a validated BIDS study, and how to
# run an analysis on it.
#
# Parts (a) and (b) read real files from the project's `shared/data` folder: the public MMME
# coding file (944 real codings of 16 participants) and small real EEG recordings in the
# formats MMME data arrive in (MNE-Python's testing data). If that folder is missing, those
# parts say so and are skipped. Parts (c) and (d) use a synthetic study written exactly like
# the MMME authors' exports.
#
# **Privacy.** The coding file holds real participant names. They never leave the reader:
# every table below uses pseudonyms (`sub-01` ...), and this notebook never prints raw cells
# of the spreadsheet.

# %%
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

import mmme_neuro
from mmme_neuro.bids import convert_study
from mmme_neuro.config import load_config
from mmme_neuro.io.coding import ISSUE_CODES, read_coding
from mmme_neuro.io.eeg import read_eeg
from mmme_neuro.io.markers import read_eeg_markers
from mmme_neuro.simulate.study import simulate_study

pd.set_option("display.width", 160)
work = Path(tempfile.mkdtemp(prefix="mmme-own-files-"))


def find_shared() -> Path | None:
    """The shared data folder: next to the package's repository, else $MMME_SHARED, else /work/shared."""
    candidates = [Path(mmme_neuro.__file__).resolve().parents[2] / "shared"]
    if os.environ.get("MMME_SHARED"):
        candidates.append(Path(os.environ["MMME_SHARED"]))
    candidates.append(Path("/work/shared"))
    return next((p for p in candidates if (p / "data").is_dir()), None)


shared = find_shared()
print("shared data folder:", shared if shared else "not found (set MMME_SHARED): parts (a) and (b) are skipped")

# %% [markdown]
# ## (a) The real MMME coding file
#
# `read_coding` reads the xlsx (or a csv export), checks every row, applies the rules of the
# configuration and returns the kept expressions, a report with one row per input row, and the
# name -> pseudonym mapping (kept in memory; written only if you ask, with
# `write_pseudonym_mapping`, and then stored apart from results). The rules (`[coding]` of the
# configuration):

# %%
config = load_config(None)
print(config.coding.model_dump())
coding_file = shared / "data" / "mmme" / "coding_file.xlsx" if shared else None
have_coding = coding_file is not None and coding_file.is_file()
if have_coding:
    coding = read_coding(coding_file, config.coding)
    counts = coding.counts()
    print(f"{coding.source}: {counts['rows_in']} rows -> {counts['kept']} kept ({counts['me']} ME, "
          f"{counts['mae']} MaE) + {counts['excluded']} excluded; {counts['flagged']} kept rows carry a flag")
    print("rows_in == kept + excluded:", counts["rows_in"] == counts["kept"] + counts["excluded"])
else:
    print("coding file not found: part (a) skipped")

# %% [markdown]
# **Duplicates.** Some expressions were coded twice with conflicting apex, offset or action
# units. Codings of the same subject and clip whose intervals overlap and whose onsets differ by
# at most 0.3 s are one expression; under the default policy `latest` the coding with the later
# annotation date is kept and the others are excluded as `duplicate_superseded`, each with a
# reason naming its Excel row and the row that replaced it (pseudonyms only).
#
# **ME or MaE.** This public file has no `Macro/Micro` column, so every label comes from the
# rule (CASME II convention): ME if the expression lasts at most 0.5 s or reaches its apex
# within 0.25 s.

# %%
if have_coding:
    report = coding.report
    print(report["status"].value_counts().to_dict())
    excluded = report[report["status"] == "excluded"]
    print("exclusion reasons:", Counter(c for i in excluded["issues"] for c in i.split(";")
                                        if ISSUE_CODES[c][0] == "exclude"))
    for reason in excluded["reason"].head(3):
        print("  e.g.", reason)
    print("ME/MaE label from:", coding.expressions["kind_source"].value_counts().to_dict())

# %% [markdown]
# Flags do not exclude a row; they record quirks of the file (apex equal to offset in about
# half the rows, two frame-stamp formats, a `dif` column in milliseconds for stamps without a
# frame counter ...):

# %%
if have_coding:
    flags = pd.DataFrame([{"flag": k, "rows": v, "meaning": ISSUE_CODES[k][1]}
                          for k, v in counts["by_issue"].items() if ISSUE_CODES[k][0] == "flag"])
    print(flags.to_string(index=False))

# %% [markdown]
# Kept expressions per pseudonymised participant, and the durations that decide the label:

# %%
if have_coding:
    ex = coding.expressions
    per_subject = ex.groupby(["subject", "kind"]).size().unstack(fill_value=0)
    print(per_subject.T.to_string())
    print(ex.groupby("kind")[["duration_s", "onset_to_apex_s"]].median().round(3))
    fig, ax = plt.subplots(figsize=(5, 2.5))
    for kind, d in ex.groupby("kind"):
        ax.hist(d["duration_s"].clip(upper=4), bins=40, range=(0, 4), histtype="step", label=f"{kind} (n={len(d)})")
    ax.axvline(config.coding.me_rule.max_duration_s, color="k", lw=0.8, ls=":")
    ax.set_xlabel("duration, onset to offset (s; clipped at 4)")
    ax.set_ylabel("expressions")
    ax.legend(frameon=False)
    plt.show()

# %% [markdown]
# The same check from a shell, with a per-row CSV report (pseudonyms only):
# `mmme-neuro coding coding_file.xlsx --report coding_report.csv`.
#
# ## (b) Reading EEG recordings in MMME's formats
#
# MMME's EEG comes from a Neuroscan amplifier as Curry files (`.cdt` + `.dpa`), and the
# authors also exported EEGLAB `.set`/`.fdt`; `read_eeg` reads these and BrainVision, Neuroscan
# CNT, EDF/BDF and FIF with one call, never loads a 73-minute session into memory unless asked,
# types the auxiliary channels (HEO/VEO -> eog, EKG -> ecg, EMG -> emg, Trigger -> stim), and
# gives Quik-Cap 64 channels the template positions. `read_eeg_markers` extracts the numeric
# stimulus codes and reports every marker it drops, with the rule. Four small real files:

# %%
eeg_dir = shared / "data" / "eeg_formats" if shared else None
files = {"Curry 8": "curry/test_bdf_stim_channel Curry 8.cdt", "EEGLAB": "eeglab/test_raw_chanloc.set",
         "BrainVision": "brainvision/test_NO.vhdr", "Neuroscan CNT": "neuroscan_cnt/scan41_short.cnt"}
rows = []
for fmt, name in files.items():
    path = eeg_dir / name if eeg_dir else None
    if path is None or not path.is_file():
        print(f"{fmt}: file not found, skipped")
        continue
    raw = read_eeg(path, verbose="error")
    events, dropped = read_eeg_markers(raw)
    note = raw.info["temp"]["mmme_neuro"]["channels"]
    rows.append({"format": fmt, "file": path.name, "channels": raw.info["nchan"], "sfreq (Hz)": raw.info["sfreq"],
                 "duration (s)": round(raw.n_times / raw.info["sfreq"], 2),
                 "types": dict(Counter(raw.get_channel_types())), "Quik-Cap names": len(note["quikcap_eeg"]),
                 "montage": note["montage"], "markers": len(events),
                 "dropped": dict(Counter(dropped["rule"])) if len(dropped) else {}})
eeg_table = pd.DataFrame(rows)
eeg_table

# %% [markdown]
# The CNT header of this file does not give its sample format, so the reader guessed it from
# the data and said so (pass `data_format=` to be explicit). The EEGLAB file is a 10-10 cap with
# its own positions, which are kept; BrainVision's two `EMG*` channels are typed `emg`; the
# Curry file's 9 extra events with code 50000 are not stimulus codes and are reported as dropped.
#
# ## (c) Laying out your MMME exports, configuring, converting
#
# The converter expects one folder with the coding file and, per session, one EEG recording
# and one BIOPAC export named `<name>_<yyyymmdd>.<ext>`, as the MMME authors name them (the
# name as in the coding file's `Subject` column, the date of the session). If your files are
# named otherwise, a CSV `session_map` pairs names, dates and files
# (`mmme-neuro convert --session-map`). The synthetic study below is written in exactly that
# layout (with synthetic names; in real data these are participants' names, so we mask them):

# %%
study = simulate_study(work / "mmme_exports", scale="ci", seed=42, progress=False)
raw_dir = study.raw_dir
layout = sorted(re.sub(r"^[a-z]+_", "<name>_", p.name) for p in raw_dir.iterdir())
print(raw_dir.name + "/")
print("\n".join(f"    {n}" for n in layout[:7]), "\n    ...", len(layout), "files:",
      dict(Counter(p.suffix for p in raw_dir.iterdir())))

# %% [markdown]
# Each session's EEG file is read like the files of part (b): 64 Quik-Cap channels (M1/M2 are
# the mastoids, CB1/CB2 the cerebellar sites) plus HEO, VEO, EKG, EMG and Trigger.

# %%
eeg_file = next(raw_dir.glob("*.set"))
raw = read_eeg(eeg_file, verbose="error")
note = raw.info["temp"]["mmme_neuro"]["channels"]
print(dict(Counter(raw.get_channel_types())), "| mastoids:", note["mastoids"], "| aux:", note["aux"])
print(note["montage"])
raw.copy().pick("eeg").plot_sensors(show_names=True, show=False)
plt.show()

# %% [markdown]
# **Configuration.** One TOML file says where the data are and overrides any default
# (`mmme-neuro config doc` lists every setting). Here: the raw folder, where the BIDS study and
# the results go, and - to keep this tutorial fast - ICA off and 200 permutations (the
# defaults are ICA on and 1000).

# %%
bids = work / "bids"
config_file = work / "my_study.toml"
config_file.write_text(f"""\
[paths]
raw_root = "{raw_dir.as_posix()}"
bids_root = "{bids.as_posix()}"
data_dir = "{(work / 'data').as_posix()}"
figures_dir = "{(work / 'figures').as_posix()}"

[preprocessing]
ica = false

[stats]
n_permutations = 200
""", encoding="utf-8")


def mmme_neuro_cli(*args: str) -> str:
    """Run the ``mmme-neuro`` command line (as from a shell) and return its output."""
    done = subprocess.run([sys.executable, "-m", "mmme_neuro.cli", *args], capture_output=True, text=True, check=True)
    return done.stdout


shown = mmme_neuro_cli("config", "show", "--config", str(config_file))
print("\n".join(shown.splitlines()[:9]))
print(mmme_neuro_cli("convert", "--help"))

# %% [markdown]
# **Conversion.** `mmme-neuro convert RAW_DIR BIDS_ROOT --config my_study.toml` from a shell,
# or `convert_study` from Python. It reads the coding file, reads each recording, fits the
# EEG <-> physiology clock (offset and drift) from the shared markers, places every expression
# on both clocks, and writes a BIDS study with per-subject QA reports. It is resumable (an
# unchanged subject is not reconverted) and atomic, and nothing is lost: every coded
# expression ends up in an `events.tsv` or in `exclusions.tsv` with its reason.

# %%
my_config = load_config(config_file)
summary = convert_study(my_config.paths.raw_root, my_config.paths.bids_root, my_config, progress=False)
print(json.dumps({k: v for k, v in summary.counts.items()}, indent=1))
print("accounting ok (coding rows == events + exclusions):", summary.accounting_ok)

# %%
derivatives = bids / "derivatives" / "mmme-neuro"
exclusions = pd.read_csv(derivatives / "exclusions.tsv", sep="\t")
print(exclusions.groupby(["stage", "reason_code", "scope"]).size().to_string())
exclusions[["subject", "source_row", "marker", "kind", "reason_code", "reason"]].head()

# %% [markdown]
# The QA folder has one HTML report per subject (open them in a browser) and a study table:
# counts per subject and the quality of the clock fit (residuals of the shared markers after
# the offset + drift model; a residual of a few ms means EEG and physiology are aligned). At
# the 250-Hz rate of this small study marker times are quantised to 4 ms, so a subject whose
# small drift never moves a marker by half a sample fits "exactly" (drift 0, residual 0); at
# MMME's 1000 Hz the resolution is 1 ms.

# %%
print(sorted(p.name for p in (derivatives / "qa").iterdir()))
qa = pd.read_csv(derivatives / "qa" / "study_table.tsv", sep="\t")
qa[["subject", "n_ME", "n_MaE", "n_excluded", "sync_drift_ppm", "sync_max_abs_residual_ms", "sync_n_matched",
    "eeg_duration_s", "physio_duration_s"]].round(2)

# %% [markdown]
# ## (d) Running an analysis script on the converted study
#
# Every analysis of `analyses/` is a script (`python -m analyses.erp_me_vs_mae --bids-root ...
# --config ... --out ...`) whose `main` can also be called from Python with the same
# arguments. It writes tables, figures and a `summary.json` (documented in the *summary.json*
# reference) into `--out`. The ERP analysis, ME vs MaE:

# %%
from analyses import erp_me_vs_mae  # noqa: E402  (the analysis scripts ship with the package)

out = work / "figures" / "erp_me_vs_mae"
code = erp_me_vs_mae.main(["--bids-root", str(bids), "--config", str(config_file), "--out", str(out)])
print("exit code", code, "|", sorted(p.name for p in out.glob("*.png")))

# %%
result = json.loads((out / "summary.json").read_text(encoding="utf-8"))
print(result["n_subjects"], "subjects; epochs", result["epochs_per_condition"], "; exclusions",
      result["exclusions_by_reason"])
print("P3 effect significant with the EMG covariate:", result["results"]["erp_effect_survives_emg_covariate"],
      "| EMG vs condition VIF:", round(result["results"]["emg_condition_collinearity"]["vif"], 1))
pd.DataFrame([{k: c.get(k) for k in ("contrast", "kind", "time_s", "model", "measure", "p", "effect_size",
                                     "effect_size_name", "peak_channel")} for c in result["contrasts"]])

# %% [markdown]
# The planted centro-parietal component (larger for ME) gives a significant ME - MaE cluster
# and a significant P3 mixed model; the EMG rows show how strongly the facial EMG separates ME
# from MaE, which is why the script also fits the P3 model with the EMG covariate. Here the
# EMG and the condition are almost collinear (VIF > 100): the adjusted model cannot tell them
# apart, so its non-significant condition term is uninformative, not evidence against the
# effect (tutorial 03 discusses the same confound for oscillations).

# %%
fig, ax = plt.subplots(figsize=(8, 4))
ax.imshow(plt.imread(out / "erp_waveforms.png"))
ax.axis("off")
plt.show()

# %% [markdown]
# With your own data, only the TOML changes: `raw_root` pointing at your exports (and
# `coding_file` if the coding file is elsewhere). `mmme-neuro run --config my_study.toml`
# then runs the per-subject steps of every analysis as one dask task graph (the shared
# preprocessing pass once per subject; `mmme_neuro.pipeline.run_steps`), then every group
# level in data-flow order, and writes a run summary.
