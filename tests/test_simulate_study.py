"""A whole synthetic study: files readable by the standard readers, ground truth = what was planted."""

from __future__ import annotations

import json

import mne
import numpy as np
import openpyxl
import pandas as pd
import pytest
import scipy.io

from mmme_neuro._utils import sha256_file, time_to_sample
from mmme_neuro.constants import ALL_EEG_FILE_CHANNELS, BIOPAC_LABELS
from mmme_neuro.simulate.design import design_study
from mmme_neuro.simulate.study import load_ground_truth, simulate_study

CODING_COLUMNS = [
    "Subject", "Filename", "Marker", "OnsetTime", "ApexTime", "OffsetTime", "OnsetFrame",
    "ApexFrame", "OffsetFrame", "Action Units", "Estimated Emotion", "Date", "dif",
]  # fmt: skip


def test_layout_and_ground_truth_header(ci_study):
    truth = load_ground_truth(ci_study.root)
    design = design_study("ci", 42)
    assert truth["params"]["scale"] == "ci" and truth["params"]["seed"] == 42
    assert truth["effects"]["null"] is False
    assert len(truth["subjects"]) == len(design.subjects) == 8
    files = sorted(p.name for p in ci_study.raw_dir.iterdir())
    expected = sorted(
        [f"{s.session_id}.{ext}" for s in design.subjects for ext in ("set", "fdt", "mat")]
        + ["coding_file.xlsx"]
    )
    assert files == expected


def test_eeg_files_read_back_with_mne(ci_study):
    truth = load_ground_truth(ci_study.root)
    for subj in truth["subjects"][:3]:
        raw = mne.io.read_raw_eeglab(ci_study.raw_dir / subj["eeg_file"], preload=False)
        assert raw.ch_names == list(ALL_EEG_FILE_CHANNELS)
        assert raw.info["sfreq"] == subj["eeg_sfreq"]
        assert raw.n_times == subj["eeg_n_samples"]
        got = sorted((int(round(o * raw.info["sfreq"])), d) for o, d in zip(raw.annotations.onset, raw.annotations.description, strict=True))
        want = sorted((m["eeg_sample"], str(m["code"])) for m in subj["markers"] if m["in_eeg"])
        assert got == want
        # planted expression onsets fall inside the recording for recorded clips only
        ex = pd.DataFrame(subj["expressions"])
        rec = ex[ex.recorded]
        assert (rec.eeg_onset_sample < raw.n_times).all()
        assert (rec.eeg_onset_sample == time_to_sample(rec.eeg_onset_s, subj["eeg_sfreq"])).all()


def test_physio_files_read_back_with_scipy(ci_study):
    truth = load_ground_truth(ci_study.root)
    for subj in truth["subjects"][:3]:
        mat = scipy.io.loadmat(ci_study.raw_dir / subj["physio_file"])
        data = mat["data"]
        assert data.shape == (subj["physio_n_samples"], 17)
        labels = [str(x).strip() for x in mat["labels"]]
        assert labels == list(BIOPAC_LABELS)
        sfreq = 1000.0 / float(np.squeeze(mat["isi"]))
        assert sfreq == subj["physio_sfreq"]
        bits = (data[:, 8:16] > 2.5).astype(int)
        code = bits @ (1 << np.arange(8))
        onsets = np.flatnonzero((code[1:] != 0) & (code[:-1] == 0)) + 1
        got = sorted(zip(onsets.tolist(), code[onsets].tolist(), strict=True))
        want = sorted((m["physio_sample"], m["code"]) for m in subj["markers"] if m["in_physio"])
        assert got == want
        # planted clock: the physiology sample of an EEG-clock time follows offset + drift
        for m in subj["markers"][:5]:
            t_phys = subj["physio_offset_s"] + (1 + subj["physio_drift_ppm"] * 1e-6) * m["eeg_time_s"]
            assert m["physio_sample"] == time_to_sample(t_phys, subj["physio_sfreq"])


def test_coding_file_reads_back_with_openpyxl(ci_study):
    truth = load_ground_truth(ci_study.root)
    wb = openpyxl.load_workbook(ci_study.coding_file, read_only=True)
    rows = list(wb.active.iter_rows(values_only=True))
    assert list(rows[0]) == CODING_COLUMNS
    n_true = sum(len(s["expressions"]) for s in truth["subjects"])
    n_rows = sum(len(s["coding_rows"]) for s in truth["subjects"])
    assert len(rows) - 1 == n_rows >= n_true
    table = pd.DataFrame(rows[1:], columns=CODING_COLUMNS)
    names = {s["name"] for s in truth["subjects"]}
    assert set(table.Subject) == names
    # every planted expression is coded with its clip-relative times and marker
    for subj in truth["subjects"]:
        coded = table[table.Subject == subj["name"]]
        keys = set(zip(coded.Marker, coded.OnsetTime.round(2), strict=True))
        for e in subj["expressions"]:
            assert (e["marker"], round(e["onset_s"], 2)) in keys


def test_planted_erp_is_in_the_eeg(ci_study):
    """ME - MaE at the planted channels and latency ~ planted amplitude difference; ~0 far away."""
    truth = load_ground_truth(ci_study.root)
    erp = truth["effects"]["erp"]
    want = erp["amplitude_uv"]["ME"] - erp["amplitude_uv"]["MaE"]
    diffs_planted, diffs_far = [], []
    for subj in truth["subjects"]:
        raw = mne.io.read_raw_eeglab(ci_study.raw_dir / subj["eeg_file"], preload=True)
        sf = raw.info["sfreq"]
        ex = pd.DataFrame(subj["expressions"])
        ex = ex[ex.recorded]
        lat = int(round(erp["latency_s"] * sf))
        win = int(round(0.03 * sf))
        base = (int(round(-0.5 * sf)), int(round(-0.1 * sf)))

        def amp(ch, kind, ex=ex, raw=raw, lat=lat, win=win, base=base):
            x = raw.get_data(picks=[ch])[0] * 1e6
            vals = []
            for s in ex[ex.kind == kind].eeg_onset_sample:
                vals.append(x[s + lat - win : s + lat + win].mean() - x[s + base[0] : s + base[1]].mean())
            return np.mean(vals)

        diffs_planted.append(np.mean([amp(ch, "ME") - amp(ch, "MaE") for ch in erp["channels"]]))
        diffs_far.append(amp("O1", "ME") - amp("O1", "MaE"))
    assert np.mean(diffs_planted) == pytest.approx(want, rel=0.35)
    assert abs(np.mean(diffs_far)) < 0.3 * want


def test_deterministic_bytes(tmp_path):
    a = simulate_study(tmp_path / "a", scale="ci", seed=3, n_subjects=2, progress=False)
    b = simulate_study(tmp_path / "b", scale="ci", seed=3, n_subjects=2, progress=False)
    c = simulate_study(tmp_path / "c", scale="ci", seed=4, n_subjects=2, progress=False)
    names = sorted(p.name for p in a.raw_dir.iterdir())
    assert names == sorted(p.name for p in b.raw_dir.iterdir())
    for n in names:
        assert sha256_file(a.raw_dir / n) == sha256_file(b.raw_dir / n), n
    assert sha256_file(a.ground_truth) == sha256_file(b.ground_truth)
    fdt = [n for n in names if n.endswith(".fdt")][0]
    assert sha256_file(a.raw_dir / fdt) != sha256_file(c.raw_dir / sorted(p.name for p in c.raw_dir.iterdir() if p.suffix == ".fdt")[0])
    with pytest.raises(FileExistsError):
        simulate_study(tmp_path / "a", scale="ci", seed=3, n_subjects=1, progress=False)


def test_null_study_records_null_effects(ci_null_study):
    truth = load_ground_truth(ci_null_study.root)
    assert truth["params"]["null"] is True
    eff = truth["effects"]
    assert eff["null"] is True
    assert set(eff["erp"]["amplitude_uv"].values()) == {0.0}
    assert all(set(o["relative_change"].values()) == {0.0} for o in eff["oscillations"])
    assert len(set(eff["emg"]["rms_uv"].values())) == 1
    assert json.loads((ci_null_study.root / "COMPLETE").read_text())["null"] is True


def test_ensure_study_reuses_and_regenerates(tmp_path, monkeypatch):
    import dataclasses

    from mmme_neuro.config import load_config
    from mmme_neuro.simulate import scales
    from mmme_neuro.simulate.study import ensure_study

    tiny = dataclasses.replace(scales.SCALES["ci"], n_subjects=1, n_clips=2)
    monkeypatch.setitem(scales.SCALES, "ci", tiny)
    cfg = load_config(None, paths={"data_dir": str(tmp_path)}, simulation={"scale": "ci"})
    first = ensure_study(cfg, progress=False)
    stamp = first.ground_truth.stat().st_mtime_ns
    assert ensure_study(cfg, progress=False).ground_truth.stat().st_mtime_ns == stamp  # reused
    monkeypatch.setitem(scales.SCALES, "ci", dataclasses.replace(tiny, me_per_clip=3.0))
    assert ensure_study(cfg, progress=False).ground_truth.stat().st_mtime_ns != stamp  # scale changed
