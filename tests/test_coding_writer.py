"""The synthetic coding file round-trips through the reader to the planted expressions."""

from __future__ import annotations

import openpyxl
import pandas as pd
import pytest

from mmme_neuro.io.coding import read_coding
from mmme_neuro.simulate.coding_writer import (
    CODING_COLUMNS,
    TRUTH_COLUMNS,
    coding_rows,
    write_coding_file,
)
from mmme_neuro.simulate.design import design_study, subject_rng


@pytest.fixture(scope="module")
def design():
    return design_study("ci", seed=1)


@pytest.fixture(scope="module")
def rows(design) -> pd.DataFrame:
    return pd.concat(
        [coding_rows(s, subject_rng(1, s.index, "coding")) for s in design.subjects],
        ignore_index=True,
    )


@pytest.fixture(scope="module")
def written(rows, tmp_path_factory):
    path = tmp_path_factory.mktemp("coding") / "coding_file.xlsx"
    return write_coding_file(rows, path)


def test_columns_exact(rows, written):
    wb = openpyxl.load_workbook(written)
    ws = wb.worksheets[0]
    values = list(ws.iter_rows(values_only=True))
    assert len(wb.worksheets) == 1
    assert list(values[0]) == list(CODING_COLUMNS)
    assert len(values) - 1 == len(rows)
    assert not set(TRUTH_COLUMNS) & set(values[0])
    first = values[1]
    assert (
        isinstance(first[2], int)
        and isinstance(first[3], float | int)
        and isinstance(first[12], int)
    )
    assert first[11].startswith("2024年") and first[11].endswith("分")
    assert list(rows.columns) == [*CODING_COLUMNS, *TRUTH_COLUMNS]


def test_conventions(design, rows):
    planted = sum(len(s.expressions) for s in design.subjects)
    assert len(rows) == planted + len(design.subjects)  # one double coding each
    assert (~rows.is_true_coding).sum() == len(design.subjects)
    fn = rows.Filename.str.extract(r"^(\w+?)_(\d+)_(\d+)_(\w+)_(\d{8})\.avi$")
    assert fn.notna().all().all()
    assert (fn[2].astype(int) == rows.Marker).all() and (fn[3] == rows.Subject).all()
    counter = rows.OnsetFrame.str.fullmatch(r"\d{2}-\d{2}-\d{2}-\d{3}-\d{3}")
    ms = rows.OnsetFrame.str.fullmatch(r"\d{2}-\d{2}-\d{2}-\d{3}")
    assert (counter | ms).all() and (counter == (rows.stamp_format == "counter")).all()
    assert 0.55 < counter.mean() < 0.85
    # rows of unrecorded clips are still listed
    missing = design.subjects[1].clips.query("not recorded").marker
    assert len(missing) and rows[~rows.recorded].Marker.isin(missing).all()
    true_rows = rows[rows.is_true_coding]
    assert (~true_rows.recorded).sum() == (~design.subjects[1].expressions.recorded).sum() > 0
    # double codings: same onset, different apex/offset/AUs, earlier annotation date
    dates = pd.to_datetime(rows.Date, format="%Y年%m月%d日-%H时%M分")
    for _, pair in rows.groupby("expr_id"):
        if len(pair) == 1:
            continue
        true, second = pair[pair.is_true_coding].iloc[0], pair[~pair.is_true_coding].iloc[0]
        assert second.OnsetTime == true.OnsetTime and second.OnsetFrame[:12] == true.OnsetFrame[:12]
        assert second.OffsetTime != true.OffsetTime and second.ApexTime != true.ApexTime
        assert second["Action Units"] != true["Action Units"]
        assert dates[second.name] < dates[true.name]
        assert second.OnsetTime < second.ApexTime <= second.OffsetTime


def test_deterministic_and_options(design):
    subj = design.subjects[0]
    a = coding_rows(subj, subject_rng(1, 0, "coding"))
    b = coding_rows(subj, subject_rng(1, 0, "coding"))
    pd.testing.assert_frame_equal(a, b)
    none = coding_rows(subj, subject_rng(1, 0, "coding"), n_double_codings=0, counter_fraction=0.0)
    assert none.is_true_coding.all() and (none.stamp_format == "ms").all()
    allc = coding_rows(subj, subject_rng(1, 0, "coding"), n_double_codings=3, counter_fraction=1.0)
    assert (~allc.is_true_coding).sum() == 3 and (allc.stamp_format == "counter").all()
    with pytest.raises(ValueError, match="counter_fraction"):
        coding_rows(subj, subject_rng(1, 0, "coding"), counter_fraction=1.5)
    with pytest.raises(ValueError, match="lack"):
        write_coding_file(a.drop(columns="dif"), "/tmp/never-written.xlsx")


def test_read_back_equals_planted(design, rows, written):
    res = read_coding(written)
    n = res.counts()
    assert n["rows_in"] == len(rows) == n["kept"] + n["excluded"]
    assert n["excluded"] == len(design.subjects)
    assert n["by_issue"]["duplicate_superseded"] == len(design.subjects)
    assert n["by_issue"]["dif_in_milliseconds"] == (rows.stamp_format == "ms").sum()
    for code in ("dif_inconsistent", "stamp_time_mismatch", "fps_deviates", "unknown_au",
                 "filename_mismatch", "emotion_differs_from_clip", "apex_equals_offset"):  # fmt: skip
        assert code not in n["by_issue"]
    # every excluded row is a planted conflicting coding, superseded by its true row
    rep = res.report.set_index("source_row")
    rows_by_excel = rows.set_index(rows.index + 2)
    excluded = rep.index[rep.status == "excluded"]
    assert (~rows_by_excel.loc[excluded, "is_true_coding"]).all()
    assert rows_by_excel.loc[rep.index[rep.status != "excluded"], "is_true_coding"].all()

    names = {p: name for name, p in res.mapping.items()}
    ex = res.expressions.assign(name=res.expressions.subject.map(names))
    planted = pd.concat(
        [s.expressions.assign(name=s.name) for s in design.subjects], ignore_index=True
    )
    assert len(ex) == len(planted)
    merged = planted.merge(
        ex, on=["name", "marker", "onset_s"], suffixes=("_true", ""), validate="1:1"
    )
    assert len(merged) == len(planted)
    for col in ("apex_s", "offset_s", "kind", "emotion", "aus", "clip_order", "clip_emotion"):
        assert (merged[col] == merged[f"{col}_true"]).all(), col
    assert (merged.kind_source == "rule").all()
    sessions = {s.name: pd.Timestamp(s.session_date) for s in design.subjects}
    assert (merged.session_date == merged.name.map(sessions)).all()
    # effective frame rate of the synthetic camera: 150 fps
    fps = res.expressions.groupby("subject").fps_effective.first()
    assert fps.notna().all() and ((fps - 150).abs() < 1.5).all()
    # wall-clock onset = camera start + EEG onset time (to one frame)
    starts = {s.name: s.camera_start for s in design.subjects}
    midnight = merged.name.map(lambda n: (starts[n] - starts[n].replace(hour=0, minute=0, second=0,
                                                                       microsecond=0)).total_seconds())  # fmt: skip
    assert ((merged.onset_wallclock_s - midnight - merged.eeg_onset_s).abs() < 1 / 150 + 1e-3).all()
