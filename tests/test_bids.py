"""BIDS conversion of a synthetic MMME study: structure, round trip, accounting, privacy, resumability."""

from __future__ import annotations

import gzip
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmme_neuro import bids
from mmme_neuro._utils import time_to_sample
from mmme_neuro.bids import convert_study, read_bids_session
from mmme_neuro.cli import main
from mmme_neuro.io.coding import read_coding
from mmme_neuro.simulate.study import load_ground_truth, simulate_study

SEED = 7


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return simulate_study(tmp_path_factory.mktemp("bids") / "study", scale="ci", seed=SEED, n_subjects=3,
                          progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def truth(study):
    gt = load_ground_truth(study.root)
    mapping = read_coding(study.coding_file).mapping
    for sub in gt["subjects"]:
        sub["pseudonym"] = mapping[sub["name"]]
    return gt


@pytest.fixture(scope="module")
def converted(study, tmp_path_factory):
    root = tmp_path_factory.mktemp("bids") / "bids"
    summary = convert_study(study.raw_dir, root, progress=False)
    return summary, root


def _copy_raw(study, tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    shutil.copytree(study.raw_dir, raw)
    return raw


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _events(root: Path) -> pd.DataFrame:
    parts = [pd.read_csv(p, sep="\t", na_values=["n/a"], keep_default_na=False) for p in sorted(root.glob("sub-*/eeg/*_events.tsv"))]
    return pd.concat(parts, ignore_index=True)


def _exclusions(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "derivatives/mmme-neuro/exclusions.tsv", sep="\t", na_values=["n/a"], keep_default_na=False)


def _check_accounting(summary, root: Path, n_coding_rows: int) -> None:
    events = _events(root) if list(root.glob("sub-*/eeg/*_events.tsv")) else pd.DataFrame({"trial_type": []})
    n_expr = int(events["trial_type"].isin(["ME", "MaE"]).sum())
    excl = _exclusions(root)
    assert n_coding_rows == n_expr + int((excl["scope"] == "all").sum())
    assert summary.accounting_ok
    saved = json.loads((root / "derivatives/mmme-neuro/conversion_summary.json").read_text())
    assert saved["accounting"]["ok"] and saved["counts"]["expressions_in_events"] == n_expr


# ----------------------------------------------------------------------------- structure


def test_structure_and_sidecars(converted, truth):
    summary, root = converted
    assert sorted(summary.converted) == ["sub-01", "sub-02", "sub-03"] and not summary.failed
    desc = json.loads((root / "dataset_description.json").read_text())
    assert {"Name", "BIDSVersion", "DatasetType"} <= set(desc)
    assert any(g["Name"] == "mmme-neuro" for g in desc["GeneratedBy"])
    assert (root / "README").is_file() and (root / "participants.json").is_file()
    parts = pd.read_csv(root / "participants.tsv", sep="\t")
    assert list(parts["participant_id"]) == ["sub-01", "sub-02", "sub-03"]
    assert not (root / bids.STAGING).exists()
    for sub in ("sub-01", "sub-02", "sub-03"):
        eeg = root / sub / "eeg"
        stem = f"{sub}_task-mmme"
        for name in ("eeg.set", "eeg.fdt", "eeg.json", "channels.tsv", "events.tsv", "events.json",
                     "recording-biopac_physio.tsv.gz", "recording-biopac_physio.json"):  # fmt: skip
            assert (eeg / f"{stem}_{name}").is_file(), name
        assert (root / sub / f"{sub}_scans.tsv").is_file()
        sidecar = json.loads((eeg / f"{stem}_eeg.json").read_text())
        assert sidecar["TaskName"] == "mmme" and sidecar["SamplingFrequency"] == 250
        channels = pd.read_csv(eeg / f"{stem}_channels.tsv", sep="\t")
        assert {"EEG", "EOG", "ECG", "EMG", "TRIG"} <= set(channels["type"])
        events = pd.read_csv(eeg / f"{stem}_events.tsv", sep="\t", nrows=1)
        assert list(events.columns[:5]) == ["onset", "duration", "trial_type", "value", "sample"]
        ev_json = json.loads((eeg / f"{stem}_events.json").read_text())
        assert set(bids.EVENT_COLUMNS) <= set(ev_json)
        physio = json.loads((eeg / f"{stem}_recording-biopac_physio.json").read_text())
        assert {"SamplingFrequency", "StartTime", "Columns", "MMMEClockFit"} <= set(physio)
        assert all("Units" in physio[c] for c in physio["Columns"])
        with gzip.open(eeg / f"{stem}_recording-biopac_physio.tsv.gz", "rt") as fh:
            first = fh.readline().rstrip("\n").split("\t")
        assert len(first) == len(physio["Columns"])
        float(first[0])  # no header line
    for name in ("coding_report.csv", "exclusions.tsv", "sync.tsv", "markers.tsv", "conversion_summary.json",
                 "dataset_description.json", "conversion/sub-01.json"):  # fmt: skip
        assert (root / "derivatives/mmme-neuro" / name).is_file(), name


# ----------------------------------------------------------------------------- round trip


def test_round_trip_matches_ground_truth(converted, truth, study):
    _, root = converted
    for sub in truth["subjects"]:
        s = read_bids_session(root, sub["pseudonym"])
        assert not s.raw.preload
        ex = s.expressions
        psf = sub["physio_sfreq"]
        planted = [e for e in sub["expressions"] if e["recorded"]]
        assert len(planted) > 5
        for e in planted:
            hit = ex[(ex["marker"] == e["marker"]) & (ex["sample"] == e["eeg_onset_sample"])]
            assert len(hit) == 1, (sub["pseudonym"], e["expr_id"])
            assert hit["trial_type"].iloc[0] == e["kind"]
            k = s.eeg_time_to_physio_sample(float(hit["onset"].iloc[0]))
            assert abs(int(k) - e["physio_onset_sample"]) <= 1
        # onset and sample agree; the sidecar's rate is the nominal rate corrected for drift
        assert np.array_equal(time_to_sample(ex["onset"].to_numpy(), sub["eeg_sfreq"]), ex["sample"].to_numpy(dtype=int))
        sc = s.physio_sidecar
        assert sc["SamplingFrequency"] == pytest.approx(psf, rel=1e-4)
        assert len(s.physio) == sub["physio_n_samples"]
        assert np.all(s.physio["trigger"].to_numpy() >= 0)


def test_physio_values_round_trip(converted, study):
    from mmme_neuro.config import Config
    from mmme_neuro.ingest import find_sessions, ingest_session

    _, root = converted
    coding = read_coding(study.coding_file)
    files = find_sessions(study.raw_dir, coding)[0]
    session = ingest_session(files, coding.expressions, Config())
    back = read_bids_session(root, files.subject)
    assert back._physio is None and back.physio_file is not None  # read on first access only (EEG steps never pay)
    assert read_bids_session(root, files.subject, physio=False).physio is None
    dec = back.physio_sidecar["MMMEDecimals"]
    for i, ch in enumerate(session.physio_raw.ch_names):
        err = np.abs(back.physio[ch].to_numpy() - session.physio_raw._data[i])
        assert np.nanmax(err) <= 0.5 * 10.0 ** -dec[ch] * 1.0001, ch
    codes = back.physio["trigger"].to_numpy()
    assert np.array_equal(np.flatnonzero(codes), session.physio_events["sample"].to_numpy())


def test_physio_columns_read_on_demand(converted, tmp_path):
    """read_physio parses only the columns asked (then keeps them); values equal the full table's."""
    from mmme_neuro import physio as ph

    _, root = converted
    subject = sorted(p.name[4:] for p in root.glob("sub-*"))[0]
    part = read_bids_session(root, subject)
    assert part.has_physio and part._physio is None  # answered from the files, nothing parsed
    names = part.physio_sidecar["Columns"]
    signals = ph._signal_table(part)
    assert list(signals.columns) == ["PPG", "RSP", "SKT_A", "EDA", "ECG"] and set(names) > set(signals.columns)
    assert list(part._physio.columns) == list(signals.columns)  # the other columns were not parsed
    assert part.n_physio_rows == len(signals)
    full = read_bids_session(root, subject).physio
    pd.testing.assert_frame_equal(signals, full[list(signals.columns)])
    pd.testing.assert_frame_equal(part.physio, full)  # the rest parsed on demand, same column order
    with pytest.raises(ValueError, match=r"_physio\.tsv\.gz: no column\(s\) \['PULSE'\]"):
        part.read_physio(["PULSE"])
    assert not read_bids_session(root, subject, physio=False).has_physio
    # a truncated file: an error that names it (the table is never half-read)
    import dataclasses

    bad = tmp_path / part.physio_file.name
    data = part.physio_file.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    truncated = dataclasses.replace(read_bids_session(root, subject), physio_file=bad)
    with pytest.raises(ValueError, match=rf"{bad.name}: cannot read the physiology table"):
        truncated.read_physio(["ECG"])
    assert truncated._physio is None


def test_format_rows_edge_cases():
    cols = [np.array([np.nan, -1.5e-4, -4e-12, 0.0, 12.25, np.inf]), np.array([0, -3, 148, 7, 0, 1]),
            np.zeros(6)]  # fmt: skip
    dec = [bids._column_decimals(c) for c in cols]
    assert dec == [5, 0, 0]  # 1e-6 of the largest absolute value (12.25) -> 5 decimals
    text = bids._format_rows(cols, dec).decode()
    rows = [r.split("\t") for r in text.splitlines()]
    assert [r[0] for r in rows] == ["n/a", "-0.00015", "0.00000", "0.00000", "12.25000", "n/a"]
    assert [r[1] for r in rows] == ["0", "-3", "148", "7", "0", "1"]
    assert {r[2] for r in rows} == {"0"}


def test_physio_binary_copy_reads_as_the_text(converted, tmp_path, monkeypatch, caplog):
    """The conversion's binary copy is what is read (no text parsed) and gives the parsed text's values and
    dtypes exactly; a changed table is parsed again and a damaged copy is reported and ignored (the copy is
    never trusted over the .tsv.gz)."""
    import dataclasses
    import os

    _, root = converted
    texts = {}
    for sub_dir in sorted(root.glob("sub-*")):
        texts[sub_dir.name] = dataclasses.replace(read_bids_session(root, sub_dir.name), physio_binary=None).physio
    with monkeypatch.context() as m:
        m.setattr(bids.igzip, "open", lambda *a, **k: pytest.fail("the text was parsed"))
        for name, text in texts.items():
            s = read_bids_session(root, name)
            assert s.physio_binary is not None and s.physio_binary.parent.name == bids.PHYSIO_BINARY_DIR
            assert s.physio_binary.name.startswith(f"{name}_")
            pd.testing.assert_frame_equal(s.physio, text, check_exact=True)
            assert s.n_physio_rows == len(text)
    # a damaged copy: a warning naming it, and the text's values
    name = next(iter(texts))
    s = read_bids_session(root, name)
    damaged = tmp_path / s.physio_binary.name
    damaged.write_bytes(s.physio_binary.read_bytes()[:1000])
    damaged.with_suffix(".json").write_text(s.physio_binary.with_suffix(".json").read_text())
    with caplog.at_level(logging.WARNING, logger="mmme_neuro.bids"):
        got = dataclasses.replace(s, physio_binary=damaged).physio
    pd.testing.assert_frame_equal(got, texts[name], check_exact=True)
    assert any(damaged.name in r.getMessage() and "parsing the text" in r.getMessage() for r in caplog.records)
    # edge cases: n/a, inf, -0 after rounding, negative, integer, all-zero float and large float columns
    cols = [np.array([np.nan, -1.5e-4, -4e-12, 0.0, 12.25, np.inf, 3.3e-3, -7.77777]),
            np.array([0, -3, 148, 7, 0, 1, 2**40, -5]), np.zeros(8),
            np.array([2.5e9, -1.0, 3.0, 0.4999, 7.6, 8.0, 1.5, -2.5]),
            np.array([np.nan, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]) * 1e8,
            np.linspace(-1, 1, 8) / 3]  # fmt: skip
    names = ["A", "B", "C", "D", "E", "F"]
    dec = [bids._column_decimals(c) for c in cols]
    tsv, npy = tmp_path / "sub-x_physio.tsv.gz", tmp_path / "sub-x_physio.npy"
    bids._write_physio_tsv_gz(tsv, np.stack([c.astype(float) for c in cols if c.dtype.kind == "f"]), None,
                              [d for c, d in zip(cols, dec, strict=True) if c.dtype.kind == "f"])  # fmt: skip
    floats = [n for n, c in zip(names, cols, strict=True) if c.dtype.kind == "f"]
    fdec = [d for c, d in zip(cols, dec, strict=True) if c.dtype.kind == "f"]
    bids._write_physio_binary(npy, [c for c in cols if c.dtype.kind == "f"], fdec, floats, tsv)
    meta = json.loads(npy.with_suffix(".json").read_text())
    assert meta["Dtypes"] == ["float64", "int64", "int64", "float64", "float64"]  # as pandas infers the text
    assert np.load(npy).dtype == np.int64  # 2.5e9 does not fit 32 bits
    sess = bids.BidsSession(subject="sub-x", raw=None, events=None, physio_sidecar={"Columns": floats},
                            physio_file=tsv, physio_binary=npy)  # fmt: skip
    plain = dataclasses.replace(sess, physio_binary=None)
    pd.testing.assert_frame_equal(sess.physio, plain.physio, check_exact=True)
    assert np.signbit(sess.physio["A"].to_numpy()[2]) == np.signbit(plain.physio["A"].to_numpy()[2])
    ints = [c for c in cols if c.dtype.kind == "i"]
    bids._write_physio_binary(npy, ints, [0], ["B"], tsv)
    assert np.load(npy).dtype == np.int64 and json.loads(npy.with_suffix(".json").read_text())["Dtypes"] == ["int64"]
    # the table changed after the copy was written: the text is parsed (the changed values come back)
    bids._write_physio_binary(npy, [c for c in cols if c.dtype.kind == "f"], fdec, floats, tsv)
    bids._write_physio_tsv_gz(tsv, np.stack([c.astype(float) + 1 for c in cols if c.dtype.kind == "f"]), None,
                              fdec)  # fmt: skip
    os.utime(tsv, ns=(meta["SourceMtimeNs"] + 10**9, meta["SourceMtimeNs"] + 10**9))
    changed = dataclasses.replace(sess, _physio=None)
    pd.testing.assert_frame_equal(changed.physio, dataclasses.replace(plain, _physio=None).physio, check_exact=True)
    assert changed.physio["D"].iloc[1] == 0.0  # -1.0 + 1, not the copy's -1.0


def test_clock_recovered(converted, truth):
    _, root = converted
    sync = pd.read_csv(root / "derivatives/mmme-neuro/sync.tsv", sep="\t").set_index("participant_id")
    for sub in truth["subjects"]:
        row = sync.loc[sub["pseudonym"]]
        assert abs(row["offset_s"] - sub["physio_offset_s"]) < 1 / sub["physio_sfreq"]
        # drift is observable to about one sample over the recording
        tol_ppm = 1e6 / sub["physio_sfreq"] / (sub["eeg_n_samples"] / sub["eeg_sfreq"])
        assert abs(row["drift_ppm"] - sub["physio_drift_ppm"]) < tol_ppm


def test_accounting_and_exclusions(converted, study, truth):
    summary, root = converted
    coding = read_coding(study.coding_file)
    _check_accounting(summary, root, len(coding.report))
    excl = _exclusions(root)
    missing = next(s for s in truth["subjects"] if s["quirks"].get("missing_clips"))
    lost = coding.expressions[(coding.expressions["subject"] == missing["pseudonym"])
                              & coding.expressions["marker"].isin(missing["quirks"]["missing_clips"])]  # fmt: skip
    got = excl[excl["reason_code"] == "clip_not_in_eeg"]
    assert len(lost) > 0 and sorted(got["expression_id"]) == sorted(lost["expression_id"])
    coded_out = excl[excl["stage"] == "coding"]
    assert len(coded_out) == int((coding.report["status"] == "excluded").sum())
    dup = next(s for s in truth["subjects"] if s["quirks"].get("duplicated_marker"))
    markers = pd.read_csv(root / "derivatives/mmme-neuro/markers.tsv", sep="\t")
    assert ((markers["participant_id"] == dup["pseudonym"]) & (markers["rule"] == "duplicate")).any()


def test_no_names_anywhere(study, truth, tmp_path, caplog):
    names = [s["name"].lower() for s in truth["subjects"]]
    root = tmp_path / "bids"
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="mmme_neuro"):
        convert_study(study.raw_dir, root, progress=False)
    text = "\n".join(r.getMessage() for r in caplog.records).lower()
    assert text and not [n for n in names if n in text]
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
        low = data.lower()
        for n in names:
            assert n.encode() not in low and n.encode("utf-16-le") not in low, (path.name, n)
        assert not [n for n in names if n in path.name.lower()]


# ----------------------------------------------------------------------------- resumability


def test_rerun_skips_and_is_identical(converted, study):
    _, root = converted
    before = _snapshot(root)
    t0 = time.perf_counter()
    summary = convert_study(study.raw_dir, root, progress=False)
    assert time.perf_counter() - t0 < 10
    assert sorted(summary.skipped) == ["sub-01", "sub-02", "sub-03"] and not summary.converted
    assert _snapshot(root) == before


def test_changed_input_reconverts_only_that_subject(converted, study, tmp_path):
    from scipy.io import loadmat, savemat

    _, root0 = converted
    raw = _copy_raw(study, tmp_path)
    root = tmp_path / "bids"
    shutil.copytree(root0, root)
    coding = read_coding(study.coding_file)
    name = next(n for n, p in coding.mapping.items() if p == "sub-02")
    set_file = next(raw.glob(f"{name}_*.set"))
    mat = loadmat(set_file, appendmat=False)
    mat = {k: v for k, v in mat.items() if not k.startswith("__")}
    mat["comments"] = np.array(["edited"])
    savemat(set_file, mat, appendmat=False)
    before = _snapshot(root)
    summary = convert_study(raw, root, progress=False)
    assert summary.converted == ["sub-02"] and sorted(summary.skipped) == ["sub-01", "sub-03"]
    after = _snapshot(root)
    for key in before:
        if key.startswith(("sub-01/", "sub-03/")):
            assert after[key] == before[key], key
    assert after["sub-02/eeg/sub-02_task-mmme_events.tsv"] == before["sub-02/eeg/sub-02_task-mmme_events.tsv"]
    # analysis settings do not re-convert; conversion settings (coding, sync) do
    from mmme_neuro.config import load_config

    same = convert_study(raw, root, load_config(None, epochs={"tmax": 2.0}, decoding={"n_permutations": 50}), progress=False)
    assert not same.converted and len(same.skipped) == 3
    redo = convert_study(raw, root, load_config(None, sync={"max_residual_ms": 3.0}), progress=False)
    assert sorted(redo.converted) == ["sub-01", "sub-02", "sub-03"]


def test_killed_run_leaves_no_half_subject(study, tmp_path, monkeypatch):
    root = tmp_path / "bids"
    real = bids.convert_session

    def dying(session, stage_root, *, task="mmme", **kwargs):
        if session.subject == "sub-02":
            real(session, stage_root, task=task, **kwargs)  # staged files exist ...
            raise KeyboardInterrupt  # ... and the process is killed before the move
        return real(session, stage_root, task=task, **kwargs)

    monkeypatch.setattr(bids, "convert_session", dying)
    with pytest.raises(KeyboardInterrupt):
        convert_study(study.raw_dir, root, progress=False)
    assert (root / "sub-01").is_dir() and (root / "derivatives/mmme-neuro/conversion/sub-01.json").is_file()
    assert not (root / "sub-02").exists() and not (root / "sub-03").exists()
    assert not (root / "derivatives/mmme-neuro/conversion/sub-02.json").exists()
    monkeypatch.setattr(bids, "convert_session", real)
    summary = convert_study(study.raw_dir, root, progress=False)
    assert summary.skipped == ["sub-01"] and summary.converted == ["sub-02", "sub-03"]
    assert not (root / bids.STAGING).exists()
    _check_accounting(summary, root, len(read_coding(study.coding_file).report))


# ----------------------------------------------------------------------------- bad inputs


def test_swapped_physiology_fails_that_session(study, tmp_path):
    raw = _copy_raw(study, tmp_path)
    coding = read_coding(study.coding_file)
    inv = {p: n for n, p in coding.mapping.items()}
    a, b = (next(raw.glob(f"{inv[s]}_*.mat")) for s in ("sub-01", "sub-03"))
    tmp = a.with_suffix(".tmp")
    a.rename(tmp), b.rename(a), tmp.rename(b)
    root = tmp_path / "bids"
    summary = convert_study(raw, root, progress=False)
    assert sorted(summary.failed) == ["sub-01", "sub-03"] and summary.converted == ["sub-02"]
    excl = _exclusions(root)
    failed = excl[excl["reason_code"] == "session_failed"]
    assert set(failed["subject"]) == {"sub-01", "sub-03"}
    assert all(r.startswith(s) for s, r in zip(failed["subject"], failed["reason"], strict=True))
    assert not (root / "sub-01").exists()
    _check_accounting(summary, root, len(coding.report))


def test_truncated_fdt_and_missing_recording(study, tmp_path):
    raw = _copy_raw(study, tmp_path)
    coding = read_coding(study.coding_file)
    inv = {p: n for n, p in coding.mapping.items()}
    fdt = next(raw.glob(f"{inv['sub-01']}_*.fdt"))
    fdt.write_bytes(fdt.read_bytes()[: fdt.stat().st_size // 2])
    for p in raw.glob(f"{inv['sub-03']}_*"):
        p.unlink()
    root = tmp_path / "bids"
    summary = convert_study(raw, root, progress=False)
    assert summary.failed == ["sub-01"] and summary.converted == ["sub-02"]
    bad = next(s for s in summary.subjects if s["participant_id"] == "sub-01")
    assert "EEG" in bad["reason"] and "sub-01" in bad["reason"]
    excl = _exclusions(root)
    n_sub03 = int((coding.expressions["subject"] == "sub-03").sum())
    assert int((excl["reason_code"] == "no_recording").sum()) == n_sub03 > 0
    assert list(pd.read_csv(root / "participants.tsv", sep="\t")["participant_id"]) == ["sub-02"]
    _check_accounting(summary, root, len(coding.report))


def test_header_missing_a_channel_fails_that_session(study, tmp_path):
    """Issue 24: a .set listing one channel fewer than its .fdt holds was converted with one warning and
    'accounting ok', every BIDS channel holding another's samples. Now the session fails with the reason."""
    from scipy.io import loadmat, savemat

    raw = _copy_raw(study, tmp_path)
    coding = read_coding(study.coding_file)
    inv = {p: n for n, p in coding.mapping.items()}
    set_file = next(raw.glob(f"{inv['sub-01']}_*.set"))
    mat = {k: v for k, v in loadmat(set_file, appendmat=False).items() if not k.startswith("__")}
    nbchan, pnts = int(mat["nbchan"][0, 0]), int(mat["pnts"][0, 0])
    mat["nbchan"] = np.array([[nbchan - 1.0]])
    mat["chanlocs"] = mat["chanlocs"][:, :-1]
    savemat(set_file, mat, appendmat=False)
    root = tmp_path / "bids"
    summary = convert_study(raw, root, progress=False, qa=False)
    assert summary.failed == ["sub-01"] and summary.converted == ["sub-02", "sub-03"]
    reason = next(s["reason"] for s in summary.subjects if s["participant_id"] == "sub-01")
    size = nbchan * pnts * 4
    assert f"sub-01_{set_file.stem.split('_')[1]}.fdt holds {size} bytes, which is not nbchan {nbchan - 1} x " \
           f"pnts {pnts} x 4 bytes = {(nbchan - 1) * pnts * 4}; it would hold {nbchan} channels" in reason  # fmt: skip
    assert not (root / "sub-01").exists()  # no scrambled copy
    excl = _exclusions(root)
    lost = excl[(excl["subject"] == "sub-01") & (excl["stage"] == "conversion")]
    assert (lost["reason_code"] == "session_failed").all() and (lost["reason"] == reason).all()
    assert len(lost) == int((coding.expressions["subject"] == "sub-01").sum()) > 0
    _check_accounting(summary, root, len(coding.report))


def _text_of_every_file(root: Path) -> dict[str, bytes]:
    """Lower-cased bytes of every file under ``root`` (gzip inflated), keyed by relative path."""
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
        out[path.relative_to(root).as_posix()] = data.lower()
    return out


def test_renamed_files_leak_no_name(study, truth, tmp_path, caplog):
    """Issue 24: files renamed to pseudonyms keep the old names inside (EEGLAB setname/filename/data,
    subject, comments); those names reached exclusions.tsv, conversion_summary.json and qa/study_table.tsv.
    Now the renamed sessions convert, and no name of the coding file, of a header or of a physiology file
    reaches any output (every file of the BIDS root, QA reports included) or log record."""
    from scipy.io import loadmat, savemat

    from mmme_neuro.io.eeg import read_eeg

    raw = _copy_raw(study, tmp_path)
    rows = []
    for i, sub in enumerate(sorted(truth["subjects"], key=lambda s: s["pseudonym"])):
        for p in raw.glob(f"{sub['session_id']}.*"):
            p.rename(raw / f"P{i}{p.suffix}")
        rows.append({"subject": sub["name"], "session_date": sub["session_date"], "eeg_file": f"P{i}.set",
                     "physio_file": f"P{i}.mat"})  # fmt: skip
    session_map = tmp_path / "sessions.csv"  # holds the names: an input, kept apart from the outputs
    pd.DataFrame(rows).to_csv(session_map, index=False)
    names = [s["name"].lower() for s in truth["subjects"]]
    planted = "liu yang"  # in no coding file: a name only a header holds
    mat = {k: v for k, v in loadmat(raw / "P0.set", appendmat=False).items() if not k.startswith("__")}
    mat["subject"] = np.array(["Liu Yang"])
    mat["comments"] = np.array([f"{mat['comments'][0]}, participant Liu Yang"])
    savemat(raw / "P0.set", mat, appendmat=False)
    # a physiology column labelled with a participant's name (another one's, from the coding file)
    phys = loadmat(raw / "P1.mat", appendmat=False)
    phys = {k: v for k, v in phys.items() if not k.startswith("__")}
    phys["data"] = np.hstack([phys["data"], np.zeros((len(phys["data"]), 1))])
    phys["labels"] = np.array([*map(str, phys["labels"]), names[-1]])
    phys["units"] = np.array([*map(str, phys["units"]), "Volts"])
    savemat(raw / "P1.mat", phys, appendmat=False)

    root = tmp_path / "bids"
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="mmme_neuro"), \
            caplog.at_level(logging.DEBUG, logger="mne"):  # fmt: skip
        summary = convert_study(raw, root, session_map=session_map, progress=False)
    hidden = [*names, planted]
    files = _text_of_every_file(root)
    leaks = [(rel, n) for rel, data in files.items() for n in hidden
             if n.encode() in data or n.encode("utf-16-le") in data or n in rel.lower()]  # fmt: skip
    assert not leaks
    log = caplog.text.lower()
    assert not [n for n in hidden if n in log]
    assert sorted(summary.converted) == ["sub-01", "sub-02", "sub-03"] and not summary.failed
    assert {"derivatives/mmme-neuro/exclusions.tsv", "derivatives/mmme-neuro/conversion_summary.json",
            "derivatives/mmme-neuro/qa/study_table.tsv", "derivatives/mmme-neuro/qa/sub-02.html",
            "sub-01/eeg/sub-01_task-mmme_eeg.set"} <= set(files)  # fmt: skip
    _check_accounting(summary, root, len(read_coding(study.coding_file).report))
    # the BIDS copy holds the renamed session's data
    back = read_bids_session(root, "sub-01", physio=False).raw
    orig = read_eeg(raw / "P0.set")
    np.testing.assert_array_equal(back.get_data(picks="PZ", stop=2000), orig.get_data(picks="PZ", stop=2000))
    for i, sub in enumerate(("sub-01", "sub-02", "sub-03")):  # a file renamed P1 hides no channel P1
        assert read_bids_session(root, sub, physio=False).raw.ch_names == read_eeg(raw / f"P{i}.set").ch_names


@pytest.mark.parametrize("raw_name", ["s", "data"])
def test_raw_folder_named_like_a_word_leaves_messages_intact(study, tmp_path, monkeypatch, raw_name):
    """Issue 24: redaction replaced every occurrence of the raw folder's name, even inside words
    ('<raw>/<raw>ub-01.<raw>et ... 69 channel<raw>', 'EEGLAB <raw> file'). Now only the folder as a path
    prefix becomes <raw>."""
    coding = read_coding(study.coding_file)
    inv = {p: n for n, p in coding.mapping.items()}
    raw = tmp_path / raw_name
    raw.mkdir()
    for p in study.raw_dir.iterdir():
        if not p.name.startswith((inv["sub-02"], inv["sub-03"])):
            shutil.copyfile(p, raw / p.name)
    fdt = next(raw.glob(f"{inv['sub-01']}_*.fdt"))
    fdt.write_bytes(fdt.read_bytes()[: fdt.stat().st_size // 2])
    monkeypatch.chdir(tmp_path)
    summary = convert_study(raw_name, "bids", progress=False, qa=False)  # the raw folder given as a relative path
    assert summary.failed == ["sub-01"]
    date = fdt.stem.split("_")[1]
    excl = _exclusions(Path("bids")).query("subject == 'sub-01' and stage == 'conversion'")
    assert len(excl) > 0
    for reason in [*excl["reason"], summary.subjects[0]["reason"]]:
        assert reason.startswith(f"sub-01 {date[:4]}-{date[4:6]}-{date[6:]} (.set + .mat): EEG unreadable: "
                                 f"<raw>/sub-01_{date}.set: data file sub-01_{date}.fdt truncated: it holds ")  # fmt: skip
        assert reason.count("<raw>") == 1 and " samples of 69 channels; the header and the data disagree" in reason


# ----------------------------------------------------------------------------- CLI


def test_cli_convert(converted, study, tmp_path, capsys):
    _, root = converted
    assert main(["convert", str(study.raw_dir), str(root)]) == 0
    out = capsys.readouterr().out
    counts = json.loads(out[out.index("{"):])
    assert counts["expressions_in_events"] > 0 and "skipped 3" in out
    assert main(["convert", str(tmp_path / "nope"), str(tmp_path / "b")]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["convert", str(study.raw_dir), str(tmp_path / "b"), "--coding", str(tmp_path / "x.xlsx")]) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["convert", str(empty), str(tmp_path / "b")]) == 1


def test_bids_session_offers_the_ingest_interface(tmp_path):
    """Epoching accepts a BIDS session or an ingested one: same columns, same samples."""
    from mmme_neuro.bids import convert_study, read_bids_session
    from mmme_neuro.ingest import find_sessions, ingest_session
    from mmme_neuro.io.coding import read_coding
    from mmme_neuro.simulate.study import simulate_study

    study = simulate_study(tmp_path / "s", scale="ci", seed=3, n_subjects=2, progress=False)
    convert_study(study.raw_dir, tmp_path / "bids", progress=False)
    coding = read_coding(study.coding_file)
    si = ingest_session(find_sessions(study.raw_dir, coding)[0], coding.expressions)
    bs = read_bids_session(tmp_path / "bids", si.subject)
    a = si.expressions.sort_values("expression_id").reset_index(drop=True)
    b = bs.expressions.sort_values("expression_id").reset_index(drop=True)
    cols = ["expression_id", "kind", "marker", "eeg_onset_sample", "eeg_apex_sample", "eeg_offset_sample"]
    pd.testing.assert_frame_equal(a[cols], b[cols], check_dtype=False)
    for c in ("eeg_onset_s", "eeg_offset_s", "duration_s", "onset_to_apex_s"):
        np.testing.assert_allclose(a[c], b[c], atol=2e-6)
    np.testing.assert_array_equal(si.clips["marker"], bs.clips["marker"])
    np.testing.assert_array_equal(si.clips["eeg_sample"], bs.clips["eeg_sample"])
    assert bs.eeg_raw is bs.raw


def test_conversion_writes_qa_reports_and_study_table(tmp_path):
    from mmme_neuro.simulate.study import load_ground_truth, simulate_study

    study = simulate_study(tmp_path / "s", scale="ci", seed=4, n_subjects=3, progress=False)
    summary = convert_study(study.raw_dir, tmp_path / "bids", progress=False)
    qa = tmp_path / "bids" / "derivatives" / "mmme-neuro" / "qa"
    subs = sorted(p.stem for p in qa.glob("sub-*.html"))
    assert subs == sorted(s["participant_id"] for s in summary.subjects)
    table = pd.read_csv(qa / "study_table.tsv", sep="\t")
    assert len(table) == 3
    assert table["n_ME"].sum() + table["n_MaE"].sum() == summary.counts["expressions_in_events"]
    names = [s["name"] for s in load_ground_truth(study.root)["subjects"]]
    for f in qa.iterdir():
        text = f.read_text(encoding="utf-8", errors="ignore").lower()
        assert not any(n in text for n in names), f.name
