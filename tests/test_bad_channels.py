"""Bad channels and missing recordings (issue 24, finding 5): found at conversion, interpolated or excluded by
the analyses, and every coded expression of every subject accounted for in each analysis' exclusion table."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.io import loadmat, savemat

from mmme_neuro import channels
from mmme_neuro.bids import convert_study, read_bids_session
from mmme_neuro.config import load_config
from mmme_neuro.constants import EEG_CHANNELS
from mmme_neuro.io.coding import read_coding
from mmme_neuro.montage import make_quikcap64_montage, quikcap64_positions
from mmme_neuro.simulate.study import simulate_study

NAN_FROM_S, NAN_S = 12.0, 8.0


# ----------------------------------------------------------------------------- units


def _raw(n_times: int = 5000, sfreq: float = 250.0) -> mne.io.RawArray:
    names = list(EEG_CHANNELS) + ["VEO", "Trigger"]
    info = mne.create_info(names, sfreq, ["eeg"] * len(EEG_CHANNELS) + ["eog", "stim"])
    x = np.random.default_rng(0).normal(size=(len(names), n_times)) * 1e-5
    x[-1] = 0.0  # the trigger channel is constant: never reported
    raw = mne.io.RawArray(x, info, verbose=False)
    raw.set_montage(make_quikcap64_montage(), verbose=False)
    return raw


def test_scan_recording_reads_in_chunks_and_says_why():
    raw = _raw()
    sf = raw.info["sfreq"]
    raw._data[raw.ch_names.index("PZ"), int(NAN_FROM_S * sf):int((NAN_FROM_S + NAN_S) * sf)] = np.nan
    raw._data[raw.ch_names.index("CZ"), 100] = np.inf
    raw._data[raw.ch_names.index("O1")] = 3e-6
    raw._data[raw.ch_names.index("VEO")] = np.nan
    want = {"CZ": "non-finite values in 0.0 s (from 0.4 s)",
            "PZ": f"non-finite values in {NAN_S:.1f} s (from {NAN_FROM_S:.1f} s)",
            "O1": "flat: constant over the recording", "VEO": "non-finite values throughout the recording"}
    for chunk in (channels.SCAN_CHUNK_BYTES, 8 * 66 * 333):  # one chunk, or 15 (uneven) chunks
        got = channels.scan_recording(raw, chunk_bytes=chunk)
        assert got == {c: want[c] for c in raw.ch_names if c in want}
    assert channels.scan_recording(_raw()) == {}


def test_mark_channels_tsv_changes_only_the_bad_rows(tmp_path):
    path = tmp_path / "sub-01_task-mmme_channels.tsv"
    text = "name\ttype\tunits\tstatus\tstatus_description\nFZ\tEEG\tV\tgood\tn/a\nPZ\tEEG\tV\tgood\tn/a\n"
    path.write_text(text, encoding="utf-8")
    assert channels.mark_channels_tsv(path, {}) == [] and path.read_text(encoding="utf-8") == text
    assert channels.mark_channels_tsv(path, {"PZ": "non-finite values in 8.0 s (from 12.0 s)", "XX": "?"}) == ["PZ"]
    assert path.read_text(encoding="utf-8") == text.replace("PZ\tEEG\tV\tgood\tn/a",
                                                             "PZ\tEEG\tV\tbad\tnon-finite values in 8.0 s (from 12.0 s)")
    old = tmp_path / "old_channels.tsv"  # no status columns: added
    old.write_text("name\ttype\nFZ\tEEG\nPZ\tEEG\n", encoding="utf-8")
    channels.mark_channels_tsv(old, {"FZ": "flat: constant over the recording"})
    assert old.read_text(encoding="utf-8") == ("name\ttype\tstatus\tstatus_description\n"
                                               "FZ\tEEG\tbad\tflat: constant over the recording\nPZ\tEEG\tgood\tn/a\n")


def test_missing_channel_added_at_its_montage_place_and_position():
    raw = _raw()
    ref = raw.copy()
    # positions in another frame (rotated, scaled, shifted): the added channel follows the recording's frame
    theta = 0.3
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    for ch in raw.info["chs"]:
        if ch["kind"] == mne.io.constants.FIFF.FIFFV_EEG_CH:
            ch["loc"][:3] = 1.1 * rot @ ch["loc"][:3] + np.array([0.001, -0.002, 0.01])
    want = raw.info["chs"][raw.ch_names.index("CZ")]["loc"][:3].copy()
    raw.drop_channels(["CZ", "OZ"])
    assert channels.add_missing_channels(raw, ["OZ", "CZ", "FZ"]) == ["OZ", "CZ"]
    assert raw.ch_names == ref.ch_names  # montage order, auxiliaries after
    assert set(raw.info["bads"]) == {"CZ", "OZ"}
    assert np.allclose(raw.info["chs"][raw.ch_names.index("CZ")]["loc"][:3], want, atol=1e-9)
    assert not raw.get_data(picks=["CZ", "OZ"]).any()
    raw.interpolate_bads(reset_bads=True, method={"eeg": "spline"}, verbose=False)
    assert raw.info["bads"] == [] and np.isfinite(raw.get_data()).all()
    assert set(quikcap64_positions()) == set(EEG_CHANNELS)


def test_group_erp_names_the_subject_whose_channels_differ():
    from mmme_neuro.erp import stack_subjects

    def ev(subject: str, chans: list[str]) -> xr.DataArray:
        return xr.DataArray(np.zeros((1, len(chans), 3)), dims=("condition", "channel", "time"),
                            coords={"condition": ["ME"], "channel": chans, "time": [0.0, 0.1, 0.2]},
                            attrs={"subject": subject})  # fmt: skip

    full = ["FZ", "CZ", "PZ"]
    with pytest.raises(ValueError, match=r"sub-01 \(no CZ\)") as err:
        stack_subjects([ev("sub-01", ["FZ", "PZ"]), ev("sub-02", full), ev("sub-03", full)])
    assert "sub-02" not in str(err.value)


def test_physiology_step_without_a_recording_says_so():
    from mmme_neuro.physio import process_session

    class NoPhysio:
        subject, has_physio, physio_sidecar = "sub-07", False, None

    with pytest.raises(ValueError, match="sub-07: no physiology recording"):
        process_session(NoPhysio(), load_config())


# ----------------------------------------------------------------------------- a study with bad inputs


def _eeglab(stem: Path) -> tuple[dict, np.ndarray, list[str], float]:
    m = loadmat(stem.with_suffix(".set"), appendmat=False)
    n, p = int(m["nbchan"][0, 0]), int(m["pnts"][0, 0])
    labels = [str(np.ravel(c)[0]) for c in m["chanlocs"]["labels"][0]]
    return m, np.fromfile(stem.with_suffix(".fdt"), dtype="<f4").reshape(p, n), labels, float(m["srate"][0, 0])


@pytest.fixture(scope="module")
def bad_study(tmp_path_factory):
    """4 `ci` subjects: sub-01 with 8 s of NaN in PZ and a flat O1, sub-02 without CZ (header and data),
    sub-03 without physiology, sub-04 clean; converted (no QA), the conversion's channel warnings kept."""
    base = tmp_path_factory.mktemp("bad_channels")
    study = simulate_study(base / "study", scale="ci", seed=11, n_subjects=4, progress=False)
    raw = base / "raw"
    shutil.copytree(study.raw_dir, raw)
    inv = {p: n for n, p in read_coding(study.coding_file).mapping.items()}

    def stem(sub: str) -> Path:
        return next(raw.glob(f"{inv[sub]}_*.set")).with_suffix("")

    s1 = stem("sub-01")
    _, x, labels, sf = _eeglab(s1)
    x[int(NAN_FROM_S * sf):int((NAN_FROM_S + NAN_S) * sf), labels.index("PZ")] = np.nan
    x[:, labels.index("O1")] = 3.0
    x.tofile(s1.with_suffix(".fdt"))
    s2 = stem("sub-02")
    m, x, labels, _ = _eeglab(s2)
    j = labels.index("CZ")
    np.ascontiguousarray(np.delete(x, j, axis=1)).tofile(s2.with_suffix(".fdt"))
    out = {k: v for k, v in m.items() if not k.startswith("__")}
    out.update(chanlocs=np.delete(m["chanlocs"], j, axis=1), nbchan=np.array([[len(labels) - 1.0]]))
    savemat(s2.with_suffix(".set"), out, appendmat=False)
    stem("sub-03").with_suffix(".mat").unlink()

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    log = logging.getLogger("mmme_neuro")
    log.addHandler(handler)
    try:
        summary = convert_study(raw, base / "bids", progress=False, qa=False)
    finally:
        log.removeHandler(handler)
    assert summary.accounting_ok and summary.failed == []
    return {"bids": base / "bids", "summary": summary, "messages": [r.getMessage() for r in records], "base": base}


def test_conversion_marks_nan_and_flat_channels_and_logs_missing_ones(bad_study):
    bids, msgs = bad_study["bids"], bad_study["messages"]
    tsv = pd.read_csv(bids / "sub-01/eeg/sub-01_task-mmme_channels.tsv", sep="\t", keep_default_na=False)
    bad = tsv[tsv["status"] == "bad"].set_index("name")["status_description"].to_dict()
    assert bad == {"PZ": f"non-finite values in {NAN_S:.1f} s (from {NAN_FROM_S:.1f} s)",
                   "O1": "flat: constant over the recording"}
    for sub in ("sub-02", "sub-03", "sub-04"):
        t = pd.read_csv(bids / sub / "eeg" / f"{sub}_task-mmme_channels.tsv", sep="\t", keep_default_na=False)
        assert set(t["status"]) == {"good"} and set(t["status_description"]) == {"n/a"}
    assert any("sub-01_task-mmme_eeg.set" in m and "PZ" in m and "non-finite" in m for m in msgs)
    assert any("sub-01_task-mmme_eeg.set" in m and "O1" in m and "flat" in m for m in msgs)
    assert any("sub-02_task-mmme_eeg.set" in m and "CZ" in m and "missing" in m for m in msgs)
    subs = {s["participant_id"]: s for s in bad_study["summary"].subjects}
    assert subs["sub-02"]["channel_issues"] == {"missing": ["CZ"]}
    assert [b["channel"] for b in subs["sub-01"]["channel_issues"]["bad"]] == ["PZ", "O1"]
    assert "channel_issues" not in subs["sub-04"]
    # the BIDS copy keeps the data as they are (EEGLAB copied byte for byte): NaN, read back as bad
    raw = read_bids_session(bids, "sub-01").raw
    assert sorted(raw.info["bads"]) == ["O1", "PZ"]
    sf = raw.info["sfreq"]
    pz = raw.get_data(picks=["PZ"], start=int((NAN_FROM_S - 1) * sf), stop=int((NAN_FROM_S + NAN_S + 1) * sf))[0]
    assert int(np.isnan(pz).sum()) == int(NAN_S * sf)
    # no physiology: every expression of sub-03 excluded from the physiology, with the reason
    ex = pd.read_csv(bids / "derivatives/mmme-neuro/exclusions.tsv", sep="\t", keep_default_na=False)
    ev = pd.read_csv(bids / "sub-03/eeg/sub-03_task-mmme_events.tsv", sep="\t", keep_default_na=False)
    lost = ex[ex["reason_code"] == "no_physio_recording"]
    assert set(lost["scope"]) == {"physio"} and set(lost["subject"]) == {"sub-03"}
    assert sorted(lost["expression_id"]) == sorted(ev.loc[ev["trial_type"].isin(["ME", "MaE"]), "expression_id"])


def _config(bids: Path, **preprocessing):
    return load_config(None, paths={"bids_root": str(bids)}, run={"workers": 1},
                       **({"preprocessing": preprocessing} if preprocessing else {}))  # fmt: skip


def _check_accounting(bids: Path, out: Path, subjects: list[str]) -> pd.DataFrame:
    """rows_in == analysed + excluded: each coded expression of each subject (events.tsv, or excluded at
    conversion) once in the analysis' epochs.csv or once in its exclusions.csv."""
    ev = pd.concat([pd.read_csv(bids / s / "eeg" / f"{s}_task-mmme_events.tsv", sep="\t", keep_default_na=False)
                    for s in subjects], ignore_index=True)  # fmt: skip
    ev = ev[ev["trial_type"].isin(["ME", "MaE"])]
    conv = pd.read_csv(bids / "derivatives/mmme-neuro/exclusions.tsv", sep="\t", na_values=["n/a"], keep_default_na=False)
    conv = conv[(conv["scope"] == "all") & conv["subject"].isin(subjects)]
    epochs = pd.read_csv(out / "epochs.csv")
    analysed = epochs[epochs["condition"].isin(["ME", "MaE"])]
    excl = pd.read_csv(out / "exclusions.csv")
    assert len(ev) + len(conv) == len(analysed) + len(excl)
    ids = [*ev["expression_id"], *conv["expression_id"].dropna()]
    assert sorted(ids) == sorted([*analysed["expression_id"], *excl["expression_id"].dropna()])
    return excl


def test_erp_interpolates_nan_flat_and_missing_channels(bad_study, tmp_path):
    from analyses.erp_me_vs_mae import run

    bids = bad_study["bids"]
    summary = run(_config(bids), tmp_path, progress=False, figures=False)
    subjects = ["sub-01", "sub-02", "sub-03", "sub-04"]
    assert summary["subjects"] == subjects and summary["results"]["failed_subjects"] == []
    erp = xr.open_dataarray(tmp_path / "erp.nc")
    assert "CZ" in erp["channel"].values
    for s in ("sub-01", "sub-02"):
        assert np.isfinite(erp.sel(subject=s, condition=["ME", "MaE"]).values).all()
    excl = _check_accounting(bids, tmp_path, subjects)
    assert "subject_failed" not in set(excl["reason_code"])
    from mmme_neuro.pipeline import cache_dir, load_result
    from mmme_neuro.steps import CLEAN_STAGE

    steps = {s: load_result(cache_dir(bids, CLEAN_STAGE, s), ["report"])["report"]["preprocessing"]["steps"]
             for s in ("sub-01", "sub-02")}  # fmt: skip
    assert steps["sub-02"]["recording_bad_channels"]["added"] == ["CZ"]
    assert {"CZ"} <= set(steps["sub-02"]["interpolate"]["channels"])
    assert {"O1", "PZ"} <= set(steps["sub-01"]["interpolate"]["channels"])


def test_erp_excludes_them_when_configured_naming_subject_and_channel(bad_study, tmp_path):
    from analyses.erp_me_vs_mae import run

    bids = bad_study["bids"]
    summary = run(_config(bids, bad_channels="exclude", ica=False), tmp_path, progress=False, figures=False)
    assert summary["subjects"] == ["sub-03", "sub-04"]
    failed = {f["subject"]: f["reason"] for f in summary["results"]["failed_subjects"]}
    assert sorted(failed) == ["sub-01", "sub-02"]
    assert "sub-01: bad channels in the recording: " in failed["sub-01"] and "PZ (non-finite values in 8.0 s" in failed["sub-01"]
    assert "O1 (flat" in failed["sub-01"] and "bad_channels = 'exclude'" in failed["sub-01"]
    assert "sub-02: bad channel in the recording: CZ (missing from the recording)" in failed["sub-02"]
    excl = _check_accounting(bids, tmp_path, ["sub-01", "sub-02", "sub-03", "sub-04"])
    lost = excl[excl["reason_code"] == "subject_failed"]
    assert set(lost["subject"]) == {"sub-01", "sub-02"} and set(lost["stage"]) == {"analysis"}
    assert all(failed[s] == r for s, r in zip(lost["subject"], lost["reason"], strict=True))
    assert summary["exclusions_by_reason"]["subject_failed"] == len(lost)


def test_physio_analysis_excludes_the_subject_without_physiology(bad_study, tmp_path):
    from analyses.physio_concordance import run

    bids = bad_study["bids"]
    summary = run(_config(bids), tmp_path)
    assert summary["subjects"] == ["sub-01", "sub-02", "sub-04"]
    failed = summary["results"]["failed_subjects"]
    assert [f["subject"] for f in failed] == ["sub-03"] and "sub-03: no physiology recording" in failed[0]["reason"]
    excl = pd.read_csv(tmp_path / "exclusions.csv", keep_default_na=False)
    ev = pd.read_csv(bids / "sub-03/eeg/sub-03_task-mmme_events.tsv", sep="\t", keep_default_na=False)
    lost = excl[excl["reason_code"] == "subject_failed"]
    assert sorted(lost["expression_id"]) == sorted(ev.loc[ev["trial_type"].isin(["ME", "MaE"]), "expression_id"])
    assert set(lost["reason"]) == {failed[0]["reason"]} and not (excl["reason_code"] == "no_physio_recording").any()
    assert summary["exclusions_by_reason"]["subject_failed"] == len(lost)
    assert json.loads((tmp_path / "summary.json").read_text())["n_subjects"] == 3
