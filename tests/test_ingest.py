"""Ingestion: coded expressions placed on the EEG and physiology clocks, exclusions, privacy."""

from __future__ import annotations

import logging
import shutil

import pandas as pd
import pytest

from mmme_neuro.ingest import (
    IngestError,
    find_sessions,
    ingest_session,
    no_recording_exclusions,
)
from mmme_neuro.io.coding import read_coding
from mmme_neuro.simulate.study import load_ground_truth


@pytest.fixture(scope="module")
def ingested(ci_study):
    coding = read_coding(ci_study.coding_file)
    sessions = find_sessions(ci_study.raw_dir, coding)
    return coding, sessions, [ingest_session(s, coding.expressions) for s in sessions]


def _truth_by_subject(ci_study, coding):
    truth = load_ground_truth(ci_study.root)
    return {coding.mapping[s["name"]]: s for s in truth["subjects"]}


def test_every_planted_expression_lands_on_its_sample(ci_study, ingested):
    coding, _, done = ingested
    truth = _truth_by_subject(ci_study, coding)
    for si in done:
        t = pd.DataFrame(truth[si.subject]["expressions"])
        t = t[t.recorded]
        m = si.expressions.merge(t, on=["marker", "onset_s"], suffixes=("", "_t"), validate="one_to_one")
        assert len(m) == len(t) == len(si.expressions)
        assert (m.kind == m.kind_t).all()
        assert (m.eeg_onset_sample == m.eeg_onset_sample_t).all()  # sample-exact on the EEG
        assert (m.physio_onset_sample - m.physio_onset_sample_t).abs().max() <= 1  # one physio sample
        assert m.in_physio.all()


def test_planted_clock_recovered(ci_study, ingested):
    coding, _, done = ingested
    truth = _truth_by_subject(ci_study, coding)
    for si in done:
        t = truth[si.subject]
        sf = t["physio_sfreq"]
        # the mapping error over the whole session stays below one physiology sample
        for tt in (0.0, t["eeg_n_samples"] / t["eeg_sfreq"]):
            want = t["physio_offset_s"] + (1 + t["physio_drift_ppm"] * 1e-6) * tt
            assert abs(si.clock.to_physio_time(tt) - want) * sf < 1.0
        assert si.clock.max_abs_residual_ms <= 1000.0 / sf


def test_accounting_and_missing_clips(ci_study, ingested):
    coding, sessions, done = ingested
    n_placed = sum(len(si.expressions) for si in done)
    excl = pd.concat([si.exclusions for si in done])
    assert n_placed + (excl.scope == "all").sum() == coding.counts()["kept"]
    truth = _truth_by_subject(ci_study, coding)
    for si in done:
        missing = truth[si.subject]["quirks"].get("missing_clips", [])
        lost = si.exclusions[si.exclusions.reason_code == "clip_not_in_eeg"]
        assert set(lost.marker) == set(missing) & set(coding.expressions.marker[coding.expressions.subject == si.subject])
        assert lost.reason.str.contains("not in the EEG").all()
    assert (excl.reason_code == "clip_not_in_eeg").sum() > 0  # the ci study plants missing clips


def test_no_name_reaches_logs_or_errors(ci_study, caplog, tmp_path):
    names = [s["name"] for s in load_ground_truth(ci_study.root)["subjects"]]
    coding = read_coding(ci_study.coding_file)
    sessions = find_sessions(ci_study.raw_dir, coding)
    # set the levels of the loggers themselves: a script run earlier in this process may have raised them
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="mmme_neuro"), \
            caplog.at_level(logging.DEBUG, logger="mne"):  # fmt: skip
        si = ingest_session(sessions[0], coding.expressions)
    text = caplog.text.lower()
    assert sessions[0].subject in caplog.text
    assert not any(n.lower() in text for n in names)
    assert not any(n.lower() in si.files.label.lower() for n in names)
    # a session whose physiology belongs to another session: a clear error, pseudonym only
    raw = tmp_path / "raw"
    shutil.copytree(ci_study.raw_dir, raw)
    before = find_sessions(raw, coding)
    a, b = before[0].physio, before[1].physio
    tmp = raw / "swap.tmp"
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    sessions = find_sessions(raw, coding)
    with pytest.raises(IngestError) as err:
        ingest_session(sessions[0], coding.expressions)
    msg = str(err.value)
    assert sessions[0].subject in msg
    assert not any(n.lower() in msg.lower() for n in names)


def test_redaction_hides_whole_tokens_and_path_prefixes():
    """Issue 24: the raw folder's name was replaced inside words ('<raw>/<raw>ub-01.<raw>et ... 69 channel<raw>',
    'EEGLAB <raw> file'). Names are hidden as whole tokens (any case), the raw folder only as a path prefix."""
    import datetime as dt
    import os
    from pathlib import Path

    from mmme_neuro.ingest import SessionFiles, _anonymous
    from mmme_neuro.io.eeg import EEGReadError

    for folder in ("s", "data", os.path.abspath("data")):
        files = SessionFiles("sub-01", dt.date(2023, 7, 18), Path(folder) / "wang_20230718.set", None)
        err = EEGReadError(f"{folder}/wang_20230718.set: data file wang_20230718.fdt truncated: 69 channels x 9 "
                           "samples; the EEGLAB data file of Wang is not the newest; dataset wanglab_2")  # fmt: skip
        assert _anonymous(err, files) == (
            "<raw>/sub-01_20230718.set: data file sub-01_20230718.fdt truncated: 69 channels x 9 samples; the "
            "EEGLAB data file of sub-01 is not the newest; dataset wanglab_2"
        )
    renamed = SessionFiles("sub-02", dt.date(2023, 7, 18), Path("raw") / "P1.set", Path("raw") / "P0.mat")
    assert _anonymous(EEGReadError("raw/P0.mat: channel P1 is flat"), renamed) == "<raw>/sub-02.mat: channel P1 is flat"
    from mmme_neuro._privacy import Redactor

    r = Redactor({"li": "sub-02"}, {"data": "<raw>"})
    assert r("Li, li_20230718.set, LI.fdt; linear; EEGLAB data file; data/x.set; ./data") == \
        "sub-02, sub-02_20230718.set, sub-02.fdt; linear; EEGLAB data file; <raw>/x.set; ./data"  # fmt: skip
    abs_data = os.path.abspath("data")
    assert r(f"'{abs_data}/x.fdt' and {abs_data}. and {abs_data}x/y") == f"'<raw>/x.fdt' and <raw>. and {abs_data}x/y"


def test_find_sessions_rules(ci_study, tmp_path):
    coding = read_coding(ci_study.coding_file)
    raw = tmp_path / "raw"
    shutil.copytree(ci_study.raw_dir, raw)
    # remove one session's recordings: its coded expressions become `no_recording` exclusions
    gone = sorted(raw.glob("*.set"))[0]
    for p in raw.glob(gone.stem + ".*"):
        p.unlink()
    sessions = find_sessions(raw, coding)
    assert len(sessions) == 7
    lost = no_recording_exclusions(coding.expressions, sessions)
    assert len(lost) > 0 and (lost.reason_code == "no_recording").all()
    assert lost.subject.nunique() == 1
    # a second EEG file for one session is ambiguous
    other = sorted(raw.glob("*.set"))[0]
    shutil.copy(other, other.with_suffix(".vhdr"))
    with pytest.raises(IngestError, match="two eeg files"):
        find_sessions(raw, coding)


def test_session_map_csv(ci_study, tmp_path):
    coding = read_coding(ci_study.coding_file)
    truth = load_ground_truth(ci_study.root)
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = []
    for i, s in enumerate(truth["subjects"][:2]):
        for ext in ("set", "fdt", "mat"):
            src = ci_study.raw_dir / f"{s['session_id']}.{ext}"
            (raw / f"P{i}.{ext}").symlink_to(src)
        rows.append({"subject": s["name"], "session_date": s["session_date"],
                     "eeg_file": f"P{i}.set", "physio_file": f"P{i}.mat"})  # fmt: skip
    # EEGLAB headers name their .fdt: keep the original names reachable too
    for s in truth["subjects"][:2]:
        (raw / f"{s['session_id']}.fdt").symlink_to(ci_study.raw_dir / f"{s['session_id']}.fdt")
    pd.DataFrame(rows).to_csv(tmp_path / "map.csv", index=False)
    sessions = find_sessions(raw, coding, session_map=tmp_path / "map.csv")
    assert [s.subject for s in sessions] == sorted(coding.mapping[r["subject"]] for r in rows)
    si = ingest_session(sessions[0], coding.expressions)
    assert len(si.expressions) > 0


def test_dataset_prepares_synthetic_bids_and_iterates(tmp_path):
    from mmme_neuro.config import load_config
    from mmme_neuro.dataset import bids_root_for, iter_sessions, list_subjects, prepare_bids

    cfg = load_config(None, paths={"data_dir": str(tmp_path)}, simulation={"scale": "ci"}, seed=9)
    root = prepare_bids(cfg, progress=False)
    assert root == bids_root_for(cfg) and (root / "dataset_description.json").is_file()
    subs = list_subjects(root)
    assert len(subs) == 8
    first = next(iter_sessions(root, subs[:1]))
    assert first.subject == subs[0] and not first.eeg_raw.preload
    assert {"kind", "eeg_onset_sample", "clip_emotion"} <= set(first.expressions.columns)
    # a second call converts no subject again (resumable); study tables are rewritten identically
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.glob("sub-*/**/*.*")}
    study_tables = {p: p.read_bytes() for p in (root / "derivatives").rglob("*.tsv")}
    prepare_bids(cfg, progress=False)
    assert before == {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.glob("sub-*/**/*.*")}
    assert study_tables == {p: p.read_bytes() for p in (root / "derivatives").rglob("*.tsv")}
