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


def _strip_digital_lines(mat_path) -> None:
    """Rewrite an AcqKnowledge .mat export without its 8 digital lines (no trigger markers)."""
    import numpy as np
    import scipy.io

    m = scipy.io.loadmat(mat_path)
    keep = [i for i, label in enumerate(m["labels"]) if not str(label).startswith("Digital")]
    out = {k: v for k, v in m.items() if not k.startswith("__")}
    out.update(data=m["data"][:, keep], labels=np.asarray(m["labels"])[keep], units=np.asarray(m["units"])[keep])
    scipy.io.savemat(mat_path, out)


def _rename_eeglab_header(set_path, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` in the text fields of an EEGLAB header (its own and its .fdt's file names)."""
    import numpy as np
    import scipy.io

    m = scipy.io.loadmat(set_path, appendmat=False)
    out = {k: (np.array([str(v[0]).replace(old, new)]) if isinstance(v, np.ndarray) and v.dtype.kind == "U" and v.size
               else v) for k, v in m.items() if not k.startswith("__")}  # fmt: skip
    scipy.io.savemat(set_path, out, appendmat=False)


def test_hostile_sessions_are_reported_and_keep_what_is_usable(ci_study, tmp_path, caplog):
    """Issue 24: (3) a recording whose file name differs from the coded name only in letter case was silently
    `no_recording`, and coded subjects without a recording were not reported: now a warning, a reason naming the
    near match by its pseudonym, and one line per such subject at the end of the conversion; (4) a physiology
    file without digital lines discarded the EEG too: now the EEG is kept and the physiology marked unusable."""
    from mmme_neuro.bids import convert_study, read_bids_session

    coding = read_coding(ci_study.coding_file)
    inv = {p: n for n, p in coding.mapping.items()}
    raw = tmp_path / "raw"
    shutil.copytree(ci_study.raw_dir, raw)
    # sub-02's recordings named in another letter case (the EEGLAB header renamed with them)
    renamed = inv["sub-02"].swapcase()
    assert renamed != inv["sub-02"]
    for p in sorted(raw.glob(f"{inv['sub-02']}_*")):
        if p.suffix == ".set":
            _rename_eeglab_header(p, inv["sub-02"], renamed)
        p.rename(p.with_name(p.name.replace(inv["sub-02"], renamed)))
    # sub-05 has no recording at all; sub-04's physiology has no digital lines
    for p in raw.glob(f"{inv['sub-05']}_*"):
        p.unlink()
    _strip_digital_lines(next(raw.glob(f"{inv['sub-04']}_*.mat")))

    root = tmp_path / "bids"
    with caplog.at_level(logging.WARNING, logger="mmme_neuro"):
        summary = convert_study(raw, root, qa=False, progress=False)
    assert summary.accounting_ok
    excl = pd.read_csv(root / "derivatives" / "mmme-neuro" / "exclusions.tsv", sep="\t", dtype=str)
    n_coded = coding.expressions["subject"].value_counts()

    # (3) the case-only near match: named (by pseudonym) in the warning and in every exclusion reason
    # the renamed recordings became a participant without coded rows
    recorded_as = sorted(set(summary.converted) - set(coding.expressions["subject"]))
    assert len(recorded_as) == 1 and not summary.failed
    near = excl[(excl["subject"] == "sub-02") & (excl["reason_code"] == "no_recording")]
    assert len(near) == n_coded["sub-02"]
    assert near["reason"].str.contains(f"near match: the recording of {recorded_as[0]} is named like this "
                                       "participant up to letter case").all()  # fmt: skip
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith(f"sub-02 is coded but has no recording; the recording of {recorded_as[0]}") for m in warnings)
    plain = excl[(excl["subject"] == "sub-05") & (excl["reason_code"] == "no_recording")]
    assert len(plain) == n_coded["sub-05"] and not plain["reason"].str.contains("near match").any()
    # one line per coded subject without a recording, at the end of the conversion
    tail = [m for m in warnings if m.startswith("no recording: ")]
    assert [m.split(":")[1].strip() for m in tail] == ["sub-02", "sub-05"]
    assert warnings[-2:] == tail and f"{n_coded['sub-05']} coded expression(s) not converted" in tail[1]
    assert "near match" in tail[0] and "near match" not in tail[1]

    # (4) no digital lines: the EEG and every coded expression are kept, the physiology is marked unusable
    assert "sub-04" in summary.converted
    session = read_bids_session(root, "sub-04")
    lost = (excl["subject"] == "sub-04") & (excl["scope"] == "all") & (excl["stage"] != "coding")
    assert len(session.expressions) == n_coded["sub-04"] - int(lost.sum())
    assert session.physio_file is None and not session.expressions["in_physio"].any()
    unusable = excl[(excl["subject"] == "sub-04") & (excl["reason_code"] == "physio_unusable")]
    assert len(unusable) == len(session.expressions) > 0 and (unusable["scope"] == "physio").all()
    assert unusable["reason"].str.contains("no trigger markers").all()
    assert summary.counts["by_reason_code"]["physio_unusable"] == len(unusable)

    # no name anywhere: log records, exclusion reasons
    names = [n.lower() for n in coding.mapping]
    assert not any(n in caplog.text.lower() for n in names)
    assert not any(n in " ".join(excl["reason"].fillna("")).lower() for n in names)
