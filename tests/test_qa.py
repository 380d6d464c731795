"""Tests of the session QA report and the study table (:mod:`mmme_neuro.qa`)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from mmme_neuro import qa
from mmme_neuro.ingest import find_sessions, ingest_session
from mmme_neuro.io.coding import read_coding
from mmme_neuro.simulate.study import load_ground_truth, simulate_study


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """3-subject ci study (seed 5), its coding file, ground truth and ingested sessions."""
    paths = simulate_study(tmp_path_factory.mktemp("qa") / "study", scale="ci", seed=5, n_subjects=3,
                           progress=False)  # fmt: skip
    coding = read_coding(paths.coding_file)
    files = find_sessions(paths.raw_dir, coding)
    sessions = [ingest_session(f, coding.expressions) for f in files]
    truth = load_ground_truth(paths.root)
    return {"paths": paths, "coding": coding, "sessions": sessions, "truth": truth}


def _session_of_index(study, index: int):
    subj = next(s for s in study["truth"]["subjects"] if s["index"] == index)
    pseudonym = study["coding"].mapping[subj["name"]]
    return next(s for s in study["sessions"] if s.subject == pseudonym)


def _secrets(study) -> list[str]:
    """Names and raw file names/stems of every synthetic subject."""
    out = []
    for subj in study["truth"]["subjects"]:
        out.append(subj["name"])
        for key in ("eeg_file", "physio_file"):
            out += [subj[key], Path(subj[key]).stem]
    return out


def test_report_html_sections_and_privacy(study, tmp_path, caplog):
    session = _session_of_index(study, 1)  # lacks two clips -> clip_not_in_eeg exclusions
    assert (session.exclusions["reason_code"] == "clip_not_in_eeg").any()
    before = set(plt.get_fignums())
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="mmme_neuro"):
        out = qa.save_session_report(
            session, tmp_path / "qa" / f"{session.subject}_qa.html", psd_segment_s=30
        )
    assert out.is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temporary file left
    text = out.read_text(encoding="utf-8")
    # deterministic: MNE's footer time of saving is removed (two saves of a session differed only there)
    assert "Created via" in text and not qa._MNE_TIMESTAMP.search(text)
    assert set(plt.get_fignums()) == before  # every figure closed
    for title in qa.SECTION_TITLES:
        assert title in text
    assert session.subject in text
    assert f"<title>MMME session QA: {session.files.label}" in text
    assert "clip_not_in_eeg" in text
    for eid in session.exclusions["expression_id"]:
        assert eid in text
    logs = "\n".join(r.getMessage() for r in caplog.records)
    low_text, low_logs = text.lower(), logs.lower()
    for secret in _secrets(study):
        assert secret.lower() not in low_text, secret
        assert secret.lower() not in low_logs, secret


def test_psd_reads_only_requested_seconds(study, monkeypatch):
    session = _session_of_index(study, 1)
    raw = session.eeg_raw
    assert not raw.preload
    read = []
    orig = type(raw)._read_segment_file  # MNE calls the reader through the class

    def spy(self, data, idx, fi, start, stop, *args, **kwargs):
        read.append(stop - start)
        return orig(self, data, idx, fi, start, stop, *args, **kwargs)

    monkeypatch.setattr(type(raw), "_read_segment_file", spy)
    psd_s = 20.0
    report = qa.session_report(session, psd_segment_s=psd_s)
    assert isinstance(report, qa.mne.Report)
    assert not raw.preload
    assert read, "the PSD read no EEG"
    assert sum(read) <= psd_s * session.eeg_sfreq + len(read)
    assert sum(read) >= 0.9 * psd_s * session.eeg_sfreq


def test_psd_segments_spread_and_bounded():
    sf = 1000.0
    n = int(73 * 60 * sf)
    segs = qa._psd_segments(n, sf, 60.0)
    assert len(segs) == 6
    assert sum(b - a for a, b in segs) == 60_000
    assert (
        segs[0][0] > 0
        and segs[-1][1] < n
        and all(a2 > b1 for (_, b1), (a2, _) in itertools.pairwise(segs))
    )
    short = qa._psd_segments(5_000, 250.0, 60.0)  # 20-s recording: all of it, once
    assert sum(b - a for a, b in short) <= 5_000 and short[0][0] >= 0 and short[-1][1] <= 5_000


def test_summary_json_serialisable(study):
    for session in study["sessions"]:
        summary = qa.session_summary(session)
        back = json.loads(json.dumps(summary, allow_nan=False))
        assert back == summary
        assert summary["subject"] == session.subject
        assert summary["n_ME"] == int((session.expressions["kind"] == "ME").sum())
        assert summary["n_excluded"] == len(session.exclusions)
        assert summary["failed"] is None


def test_study_table_counts_and_failures(study):
    sessions = study["sessions"]
    counts = qa.coded_counts(study["coding"].expressions)
    failures = {"sub-99": "sub-99 2023-09-01 (.set + .mat): EEG unreadable"}
    table = qa.study_table(sessions, failures=failures, coding_counts=counts)
    assert list(table["subject"]) == sorted([s.subject for s in sessions] + ["sub-99"])
    assert table["subject"].is_unique
    for code in qa.EXCLUSION_REASONS:
        assert f"excluded_{code}" in table
    by_subject = table.set_index("subject")
    for s in sessions:
        row = by_subject.loc[s.subject]
        assert row["failed"] is None
        for kind in ("ME", "MaE"):
            placed = int((s.expressions["kind"] == kind).sum())
            lost = int(((s.exclusions["kind"] == kind) & (s.exclusions["scope"] == "all")).sum())
            assert row[f"n_{kind}"] == placed
            assert row[f"coded_{kind}"] == placed + lost == counts[s.subject][kind]
        assert row["excluded_clip_not_in_eeg"] == int(
            (s.exclusions["reason_code"] == "clip_not_in_eeg").sum()
        )
        assert row["eeg_markers_kept"] == len(s.eeg_events)
        assert row["sync_n_matched"] == s.clock.n_matched
        assert row["sync_offset_s"] == pytest.approx(s.clock.offset_s)
        assert row["sync_max_abs_residual_ms"] == pytest.approx(s.clock.max_abs_residual_ms)
    n_missing = sum(int((s.exclusions["reason_code"] == "clip_not_in_eeg").sum()) for s in sessions)
    assert by_subject["excluded_clip_not_in_eeg"].sum() == n_missing > 0
    failed = by_subject.loc["sub-99"]
    assert failed["failed"] == failures["sub-99"]
    assert pd.isna(failed["n_ME"]) and pd.isna(failed["sync_offset_s"])

    # the same table from JSON-kept summaries
    kept = [json.loads(json.dumps(qa.session_summary(s))) for s in sessions]
    from_dicts = qa.study_table(kept, failures=failures, coding_counts=counts)
    pd.testing.assert_frame_equal(from_dicts, table)


def test_study_table_failed_session_counts_its_coded_expressions(study):
    sessions = study["sessions"]
    counts = qa.coded_counts(study["coding"].expressions)
    lost = sessions[0].subject
    table = qa.study_table(
        sessions[1:], failures={lost: "clocks do not match"}, coding_counts=counts
    )
    row = table.set_index("subject").loc[lost]
    assert row["failed"] == "clocks do not match"
    assert row["excluded_session_failed"] == counts[lost]["ME"] + counts[lost]["MaE"]
    # a coded subject with neither a session nor a failure: no recording
    table = qa.study_table(sessions[1:], coding_counts=counts)
    row = table.set_index("subject").loc[lost]
    assert row["failed"].startswith("no_recording")
    assert row["excluded_no_recording"] == counts[lost]["ME"] + counts[lost]["MaE"]
    with pytest.raises(ValueError, match="both"):
        qa.study_table(sessions, failures={lost: "x"})


def test_report_without_physiology(study):
    s = dataclasses.replace(study["sessions"][0], physio_raw=None, physio_events=None,
                            physio_marker_report=None, clock=None)  # fmt: skip
    report = qa.session_report(s, psd_segment_s=8)
    assert len(report.html) == len(qa.SECTION_TITLES)
    summary = qa.session_summary(s)
    assert summary["sync_offset_s"] is None and summary["physio_sfreq_hz"] is None
    json.dumps(summary, allow_nan=False)
    row = qa.study_table([s]).iloc[0]
    assert pd.isna(row["sync_drift_ppm"]) and row["n_ME"] == summary["n_ME"]


def test_bad_arguments(study, tmp_path):
    s = study["sessions"][0]
    with pytest.raises(ValueError, match="psd_segment_s"):
        qa.session_report(s, psd_segment_s=0)
    with pytest.raises(ValueError, match="html"):
        qa.save_session_report(s, tmp_path / "report.pdf")
    assert np.isfinite(qa.session_summary(s)["eeg_duration_s"])
