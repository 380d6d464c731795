"""Tests of the MMME coding-file reader on the real public file and on small edited tables.

The expected numbers on the real file were derived independently of the
reader (scratch pandas analysis of the raw cells) and agree with it.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
from conftest import REAL_CODING_FILE as REAL  # noqa: E402

from mmme_neuro._utils import sha256_file
from mmme_neuro.config import CodingConfig, MeRule
from mmme_neuro.io.coding import (
    EXPRESSION_COLUMNS,
    ISSUE_CODES,
    REQUIRED_COLUMNS,
    CodingFileError,
    read_coding,
    read_pseudonym_mapping,
    write_coding_report,
    write_pseudonym_mapping,
)

#: Exact-onset grouping of double codings (only identical onsets are one expression).
EXACT = CodingConfig(duplicate_onset_tolerance_s=0.0)
needs_real = pytest.mark.skipif(not REAL.is_file(), reason="real MMME coding file not available")

#: Expected validation counts on the real file with exact-onset grouping of double codings.
REAL_BY_ISSUE_EXACT = {
    "apex_equals_offset": 433,
    "dif_in_milliseconds": 269,
    "duplicate_kept": 8,
    "duplicate_superseded": 8,
    "fps_deviates": 18,
    "overlaps_other_coding": 442,
    "stamp_time_mismatch": 93,
}
#: Rows of the 8 double-coded expressions: (earlier annotation date, later), Excel row numbers.
DUPLICATE_PAIRS_OLD_NEW = [(43, 648), (367, 915), (469, 470), (472, 75), (475, 80), (476, 82),
                           (492, 117), (615, 21)]  # fmt: skip
OLDER = sorted(old for old, _ in DUPLICATE_PAIRS_OLD_NEW)
NEWER = sorted(new for _, new in DUPLICATE_PAIRS_OLD_NEW)
FILE_ORDER_SECOND = sorted(max(pair) for pair in DUPLICATE_PAIRS_OLD_NEW)


def _excluded_rows(result) -> list[int]:
    rep = result.report
    return sorted(rep.loc[rep.status == "excluded", "source_row"].tolist())


@pytest.fixture(scope="module")
def real():
    return read_coding(REAL, EXACT)


@pytest.fixture(scope="module")
def real_names() -> list[str]:
    wb = openpyxl.load_workbook(REAL, read_only=True)
    ws = wb.worksheets[0]
    names = {str(r[0]).strip() for r in ws.iter_rows(min_row=2, values_only=True) if r[0]}
    wb.close()
    return sorted(names)


@pytest.fixture(scope="module")
def real_table() -> pd.DataFrame:
    return pd.read_excel(REAL, dtype=object)


# ----------------------------------------------------------------------------- real file


@needs_real
def test_real_counts_default_merges_two_annotation_rounds():
    """Default: overlapping codings of a clip with onsets <= 0.3 s apart are one expression.

    Checked independently (networkx connected components on the raw cells):
    199 groups of 2-3 codings hold 401 rows; 202 codings are superseded by the
    latest annotation; the 742 kept are 370 ME and 372 MaE.
    """
    res = read_coding(REAL)
    n = res.counts()
    assert (n["rows_in"], n["kept"], n["excluded"]) == (944, 742, 202)
    assert (n["me"], n["mae"]) == (370, 372)
    assert n["by_issue"] == {
        "apex_equals_offset": 433,
        "dif_in_milliseconds": 269,
        "duplicate_kept": 199,
        "duplicate_superseded": 202,
        "fps_deviates": 18,
        "overlaps_other_coding": 66,
        "stamp_time_mismatch": 93,
    }
    # every exact-onset pair is among the merged groups, resolved to its later coding
    excluded = set(_excluded_rows(res))
    assert set(OLDER) <= excluded and not set(NEWER) & excluded
    dropped = read_coding(REAL, CodingConfig(duplicate_policy="drop")).counts()
    assert dropped["excluded"] == 401


@needs_real
def test_real_counts_exact_onset_grouping(real):
    n = real.counts()
    assert n["rows_in"] == 944
    assert n["kept"] + n["excluded"] == n["rows_in"]
    assert (n["kept"], n["excluded"], n["flagged"]) == (936, 8, 809)
    assert n["by_issue"] == REAL_BY_ISSUE_EXACT
    assert (n["me"], n["mae"]) == (465, 471)
    assert len(real.expressions) == 936
    assert real.expressions["subject"].nunique() == 16
    assert sorted(real.mapping.values()) == [f"sub-{i:02d}" for i in range(1, 17)]
    assert list(real.expressions.columns) == list(EXPRESSION_COLUMNS)
    assert real.source == "coding_file.xlsx"
    assert real.sha256 == sha256_file(REAL)
    assert set(real.report.status) == {"ok", "flagged", "excluded"}
    assert (real.report.status == "ok").sum() == 127


@needs_real
@pytest.mark.parametrize(
    ("policy", "excluded", "code", "me", "mae"),
    [
        ("latest", OLDER, "duplicate_superseded", 465, 471),
        ("first", FILE_ORDER_SECOND, "duplicate_superseded", 465, 471),
        ("drop", sorted(OLDER + NEWER), "duplicate_dropped", 462, 466),
        ("keep_all", [], None, 468, 476),
    ],
)
def test_real_duplicate_policies(policy, excluded, code, me, mae):
    res = read_coding(REAL, CodingConfig(duplicate_policy=policy, duplicate_onset_tolerance_s=0.0))
    n = res.counts()
    assert _excluded_rows(res) == excluded
    assert n["kept"] + n["excluded"] == 944
    assert (n["me"], n["mae"]) == (me, mae)
    # flags evaluated on every row do not depend on the policy
    assert n["by_issue"]["apex_equals_offset"] == 433
    assert n["by_issue"]["dif_in_milliseconds"] == 269
    if code:
        assert n["by_issue"][code] == len(excluded)
    if policy == "keep_all":
        assert n["by_issue"]["duplicate_kept"] == 16
        assert n["by_issue"]["overlaps_other_coding"] == 458
        assert res.expressions.expression_id.is_unique
        assert res.expressions.expression_id.str.endswith("_b").sum() == 8
    elif policy in ("latest", "first"):
        kept_dup = res.report.loc[res.report.issues.str.contains("duplicate_kept"), "source_row"]
        winners = NEWER if policy == "latest" else sorted(min(p) for p in DUPLICATE_PAIRS_OLD_NEW)
        assert sorted(kept_dup) == winners


@needs_real
def test_real_stamps_and_dif(real_table):
    res = read_coding(REAL, CodingConfig(duplicate_policy="keep_all"))
    ex = res.expressions
    assert (ex.stamp_format == "counter").sum() == 675
    assert (ex.stamp_format == "ms").sum() == 269
    ctr = ex[ex.stamp_format == "counter"]
    direct = ctr.apex_frame >= ctr.onset_frame
    # 616 direct + 59 wrapped as printed; one direct row has its apex counter printed as 1000,
    # which the reader stores as 0 (mod 1000), so it counts as wrapped here
    assert int(direct.sum()) == 615 and int((~direct).sum()) == 60
    assert ((ctr.apex_frame - ctr.onset_frame) % 1000 + 1 == ctr.dif).all()
    ms_rows = ex[ex.stamp_format == "ms"]
    assert ms_rows.onset_frame.isna().all()
    assert ms_rows.issues.str.contains("dif_in_milliseconds").all()
    assert not ex.issues.str.contains("dif_inconsistent").any()
    # the two stamps printed with counter 1000 are read as counter 0
    assert ((ex.apex_frame == 0) | (ex.offset_frame == 0)).sum() >= 2
    assert (ex.apex_s == ex.offset_s).sum() == 433
    assert ex.onset_s.min() == 1.0 and ex.offset_s.max() == pytest.approx(58.94)
    assert not (ex.onset_wallclock_s.isna() | ex.offset_wallclock_s.isna()).any()
    first = ex.set_index("source_row").loc[2]
    assert (first.onset_s, first.apex_s, first.offset_s) == (24.33, 24.59, 25.33)
    assert first.onset_wallclock_s == pytest.approx(16 * 3600 + 31.433)
    assert (first.onset_frame, first.apex_frame, first.offset_frame) == (685, 723, 831)
    assert first.annotated_at == pd.Timestamp("2024-06-30 14:31")
    assert first.dif == 39 and first.kind == "MaE" and first.kind_source == "rule"


@needs_real
def test_real_fps_and_pseudonym_order(real, real_table):
    ex = real.expressions
    fps = ex.groupby("subject").fps_effective.first()
    assert fps.notna().all()
    deviating = ex.loc[ex.issues.str.contains("fps_deviates"), "subject"].unique()
    assert sorted(deviating) == sorted(fps[(fps / 150 - 1).abs() > 0.1].index)
    assert len(deviating) == 3
    assert fps.max() == pytest.approx(150.0) and round(fps.min(), 2) == 68.72
    # pseudonyms follow the session date (first), then the name
    dates = real_table.Filename.str.extract(r"_(\d{8})\.avi$")[0]
    order = sorted(set(zip(dates, real_table.Subject.str.strip(), strict=True)))
    assert [real.mapping[name] for _, name in order] == [f"sub-{i:02d}" for i in range(1, 17)]
    by_subject = ex.groupby("subject").session_date.first()
    assert by_subject.is_monotonic_increasing


@needs_real
def test_real_labels(real):
    ex = real.expressions
    assert set(ex.emotion) == {"happy", "disgust", "angry", "fear", "sad", "surprise", "tense"}
    assert (ex.emotion == ex.clip_emotion).all()
    assert set(ex.composite_emotion) == {"negative", "positive", "surprise"}
    assert (ex.n_aus == ex.aus.str.count("AU")).all()
    assert ex.au_regions.str.len().gt(0).all()
    assert (
        ex.marker.map({146: 1, 107: 2}).dropna() == ex.clip_order[ex.marker.isin([146, 107])]
    ).all()
    assert ex.expression_id.is_unique
    assert ex.expression_id.str.fullmatch(r"sub-\d{2}_m1\d{2}_t\d{6}").all()
    assert (ex.kind_source == "rule").all()
    assert (ex.session_date.dt.year == 2023).all()


@needs_real
def test_real_me_rule_changes(real):
    base = real.counts()["me"]
    stricter = read_coding(REAL, CodingConfig(me_rule=MeRule(max_duration_s=0.3), duplicate_onset_tolerance_s=0.0)).counts()
    assert stricter["me"] < base
    both = read_coding(REAL, CodingConfig(me_rule=MeRule(combine="and"), duplicate_onset_tolerance_s=0.0)).counts()
    assert (both["me"], both["mae"]) == (229, 707)
    # 27 kept rows last exactly 0.50 s and 49 reach apex in exactly 0.25 s: the tolerance keeps them ME
    ex = real.expressions
    assert ((ex.duration_s - 0.5).abs() < 1e-9).sum() == 27
    assert ex.loc[(ex.duration_s - 0.5).abs() < 1e-9, "kind"].eq("ME").all()


@needs_real
def test_no_real_names_anywhere(real, real_names, tmp_path, caplog):
    assert len(real_names) == 16
    with caplog.at_level(logging.DEBUG, logger="mmme_neuro"):
        res = read_coding(REAL, CodingConfig(duplicate_policy="drop"))
    for result in (real, res):
        for frame in (result.expressions, result.report):
            text = "\n".join(frame.astype(str).to_numpy().ravel()) + "\n".join(frame.columns)
            lowered = text.lower()
            for name in real_names:
                assert name.lower() not in lowered
        assert ".avi" not in "\n".join(result.report.astype(str).to_numpy().ravel())
    out = write_coding_report(real, tmp_path / "report.csv")
    content = out.read_text(encoding="utf-8").lower()
    assert all(name.lower() not in content for name in real_names)
    assert all(name.lower() not in caplog.text.lower() for name in real_names)
    assert pd.read_csv(out).shape[0] == 944
    assert sorted(real.mapping) == real_names  # the mapping itself does hold the names


@needs_real
def test_input_not_modified(tmp_path):
    before = sha256_file(REAL)
    read_coding(REAL)
    assert sha256_file(REAL) == before


@needs_real
def test_mapping_stable_and_reusable(real, tmp_path):
    again = read_coding(REAL, EXACT)
    assert again.mapping == real.mapping
    path = write_pseudonym_mapping(real, tmp_path / "private" / "mapping.csv")
    assert read_pseudonym_mapping(path) == real.mapping
    reused = read_coding(REAL, EXACT, mapping=path)
    pd.testing.assert_frame_equal(reused.expressions, real.expressions)
    # a registry from an earlier batch: known names keep their pseudonyms, new ones come after
    names = sorted(real.mapping, key=real.mapping.get)
    earlier = {names[0]: "sub-07", names[1]: "sub-03"}
    extended = read_coding(REAL, mapping=earlier)
    assert extended.mapping[names[0]] == "sub-07" and extended.mapping[names[1]] == "sub-03"
    new = [extended.mapping[n] for n in names[2:]]
    assert new == [f"sub-{i:02d}" for i in range(8, 22)]
    with pytest.raises(CodingFileError, match="pseudonym"):
        read_coding(REAL, mapping={names[0]: "sub-01", names[1]: "sub-01"})


@needs_real
def test_csv_equals_xlsx(real, real_table, tmp_path):
    csv_path = tmp_path / "coding_file.csv"
    real_table.to_csv(csv_path, index=False, encoding="utf-8")
    from_csv = read_coding(csv_path, EXACT)
    pd.testing.assert_frame_equal(from_csv.expressions, real.expressions)
    cols = ["source_row", "subject", "marker", "status", "issues", "expression_id"]
    pd.testing.assert_frame_equal(from_csv.report[cols], real.report[cols])
    assert from_csv.counts() == real.counts()
    assert (
        from_csv.report.reason[from_csv.report.status == "excluded"]
        .str.startswith("csv line")
        .all()
    )
    assert real.report.reason[real.report.status == "excluded"].str.startswith("Excel row").all()


@needs_real
def test_macro_micro_column_is_honoured(real_table, tmp_path):
    table = real_table.copy()
    labels = np.where(np.arange(len(table)) % 2 == 0, "Macro", "Micro").astype(object)
    labels[5] = "??"  # unrecognised: the rule labels the row
    table.insert(11, "Macro/Micro", labels)
    path = tmp_path / "combined.xlsx"
    table.to_excel(path, index=False)
    res = read_coding(path, CodingConfig(duplicate_policy="keep_all"))
    ex = res.expressions.set_index("source_row")
    assert (ex.kind_source == "column").sum() == 943
    assert ex.loc[7, "kind_source"] == "rule"
    assert "unknown_kind_label" in ex.loc[7, "issues"]
    col = ex[ex.kind_source == "column"]
    expected = np.where((col.index - 2) % 2 == 0, "MaE", "ME")
    assert (col.kind.to_numpy() == expected).all()
    assert res.counts()["by_issue"]["kind_differs_from_rule"] > 0
    ignored = read_coding(
        path, CodingConfig(duplicate_policy="keep_all", me_rule=MeRule(use_column=False))
    )
    assert (ignored.expressions.kind_source == "rule").all()
    assert (ignored.counts()["me"], ignored.counts()["mae"]) == (468, 476)


# ----------------------------------------------------------------------------- structure


def _base_rows() -> pd.DataFrame:
    """A small valid coding table (fictitious names)."""
    rows = [
        ["alpha", "angry_1_146_alpha_20230801.avi", 146, 10.0, 10.2, 10.4,
         "10-00-10-000-000", "10-00-10-200-030", "10-00-10-400-060", "AU4", "angry",
         "2024年05月01日-10时00分", 31],
        ["alpha", "happy_1_123_alpha_20230801.avi", 123, 5.0, 6.0, 7.0,
         "10-10-05-000", "10-10-06-000", "10-10-07-000", "AU6, AU12", "happy",
         "2024年05月02日-10时00分", 1],
        ["beta", "sad_1_101_beta_20230715.avi", 101, 20.0, 20.5, 20.5,
         "11-00-20-000-500", "11-00-20-500-575", "11-00-20-500-575", "AU1, AU4", "sad",
         "2024年05月03日-10时00分", 76],
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=list(REQUIRED_COLUMNS))


def _write(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        df.to_excel(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_small_table_ok(tmp_path, suffix):
    res = read_coding(_write(_base_rows(), tmp_path / f"c{suffix}"))
    n = res.counts()
    assert (n["rows_in"], n["kept"], n["excluded"]) == (3, 3, 0)
    ex = res.expressions.set_index("source_row")
    assert (
        ex.loc[2, "subject"] == "sub-02" and ex.loc[4, "subject"] == "sub-01"
    )  # beta recorded first
    assert ex.loc[2, "kind"] == "ME" and ex.loc[3, "kind"] == "MaE" and ex.loc[4, "kind"] == "ME"
    assert ex.loc[2, "fps_effective"] == pytest.approx(150.0)
    assert ex.loc[2, "issues"] == "" and ex.loc[3, "issues"] == "dif_in_milliseconds"
    assert ex.loc[4, "issues"] == "apex_equals_offset"
    assert ex.loc[3, "au_regions"] == "upper, mid"
    assert ex.loc[2, "expression_id"] == "sub-02_m146_t010000"


@pytest.mark.parametrize(
    ("column", "value", "code"),
    [
        ("OnsetTime", None, "missing_value"),
        ("OnsetTime", "abc", "unparseable_time"),
        ("ApexTime", -1.0, "negative_time"),
        ("OnsetFrame", "10-00-99-000-000", "unparseable_stamp"),
        ("OffsetFrame", "1000", "unparseable_stamp"),
        ("Marker", 199, "unknown_marker"),
        ("Marker", "x", "unknown_marker"),
        ("Filename", "angry_1_146_alpha.avi", "unparseable_filename"),
        ("Filename", "angry_1_107_alpha_20230801.avi", "filename_mismatch"),
        ("Filename", "angry_1_146_gamma_20230801.avi", "filename_mismatch"),
        ("Filename", "happy_1_146_alpha_20230801.avi", "filename_mismatch"),
        ("ApexTime", 10.6, "apex_outside_onset_offset"),
        ("OffsetTime", 9.0, "onset_after_offset"),
        ("OffsetTime", 10.0, "onset_after_offset"),
    ],
)
def test_row_exclusions(tmp_path, column, value, code):
    df = _base_rows().astype(object)
    df.loc[0, column] = value
    res = read_coding(_write(df, tmp_path / "c.csv"))
    rep = res.report.set_index("source_row")
    assert rep.loc[2, "status"] == "excluded"
    assert code in rep.loc[2, "issues"].split(";")
    assert rep.loc[2, "reason"].startswith("csv line 2")
    assert "alpha" not in rep.loc[2, "reason"]
    assert res.counts()["kept"] == 2


@pytest.mark.parametrize(
    ("column", "value", "code"),
    [
        ("Action Units", "AU4, AU99", "unknown_au"),
        ("Action Units", "AU4, smile", "unknown_au"),
        ("Action Units", None, "missing_aus"),
        ("Estimated Emotion", "happy", "emotion_differs_from_clip"),
        ("Estimated Emotion", "bored", "unknown_emotion"),
        ("Date", "yesterday", "unparseable_date"),
        ("dif", 7, "dif_inconsistent"),
        ("dif", None, "dif_inconsistent"),
        ("OffsetTime", 95.0, "time_beyond_clip"),
        ("ApexFrame", "10-00-10-200", "stamp_format_mixed"),
        ("OffsetFrame", "10-00-11-400-060", "stamp_time_mismatch"),
        ("Filename", "angry_4_146_alpha_20230801.avi", "clip_order_differs"),
    ],
)
def test_row_flags(tmp_path, column, value, code):
    df = _base_rows().astype(object)
    df.loc[0, column] = value
    res = read_coding(_write(df, tmp_path / "c.csv"))
    rep = res.report.set_index("source_row")
    assert rep.loc[2, "status"] == "flagged"
    assert code in rep.loc[2, "issues"].split(";")
    assert code in ISSUE_CODES and ISSUE_CODES[code][0] == "flag"


def test_au_normalisation_and_exact_duplicates(tmp_path):
    df = _base_rows().astype(object)
    df.loc[0, "Action Units"] = " au7，AU4 , AU 4、AU12"
    df = pd.concat([df, df.iloc[[1]]], ignore_index=True)  # row 5 repeats row 3
    res = read_coding(_write(df, tmp_path / "c.xlsx"))
    ex = res.expressions.set_index("source_row")
    assert ex.loc[2, "aus"] == "AU4, AU7, AU12" and ex.loc[2, "n_aus"] == 3
    assert ex.loc[2, "au_regions"] == "upper, mid"
    rep = res.report.set_index("source_row")
    assert rep.loc[5, "issues"] == "exact_duplicate;dif_in_milliseconds"
    assert "Excel row 3" in rep.loc[5, "reason"]
    assert res.counts()["rows_in"] == 4 and res.counts()["kept"] == 3


def test_latest_policy_with_missing_date(tmp_path):
    df = _base_rows().astype(object)
    second = df.iloc[[0]].copy()
    second["ApexTime"], second["ApexFrame"], second["dif"] = 10.3, "10-00-10-300-045", 46
    second["Date"] = None
    df = pd.concat([df, second], ignore_index=True)
    res = read_coding(_write(df, tmp_path / "c.csv"))
    rep = res.report.set_index("source_row")
    assert rep.loc[5, "status"] == "excluded"  # an undated coding never supersedes a dated one
    assert rep.loc[5, "issues"].startswith("duplicate_superseded")
    assert "duplicate_kept" in rep.loc[2, "issues"]


def test_structural_errors(tmp_path):
    with pytest.raises(CodingFileError, match="not found"):
        read_coding(tmp_path / "nope.xlsx")
    bad = tmp_path / "coding.json"
    bad.write_text("{}")
    with pytest.raises(CodingFileError, match=r"coding\.json"):
        read_coding(bad)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(CodingFileError, match="empty"):
        read_coding(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text(",".join(REQUIRED_COLUMNS) + "\n")
    with pytest.raises(CodingFileError, match="no data rows"):
        read_coding(header_only)
    corrupt = tmp_path / "corrupt.xlsx"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CodingFileError, match=r"corrupt\.xlsx"):
        read_coding(corrupt)


@pytest.mark.parametrize("column", ["ApexTime", "Action Units", "dif"])
def test_missing_column_names_file_and_column(tmp_path, column):
    path = _write(_base_rows().drop(columns=column), tmp_path / "nocol.xlsx")
    with pytest.raises(CodingFileError) as err:
        read_coding(path)
    assert column in str(err.value) and "nocol.xlsx" in str(err.value)


def test_header_variants_and_extra_columns(tmp_path):
    df = _base_rows()
    df.columns = [c.upper().replace(" ", "_") for c in df.columns]
    df["Comment"] = "x"
    res = read_coding(_write(df, tmp_path / "c.csv"))
    assert res.counts()["kept"] == 3


def test_report_and_mapping_writers(tmp_path):
    res = read_coding(_write(_base_rows(), tmp_path / "c.csv"))
    rep = pd.read_csv(
        write_coding_report(res, tmp_path / "out" / "report.csv"), keep_default_na=False
    )
    assert list(rep.columns[:6]) == [
        "source_row",
        "subject",
        "marker",
        "status",
        "issues",
        "reason",
    ]
    assert rep.shape[0] == 3 and not list(tmp_path.joinpath("out").glob(".*tmp"))
    mp = write_pseudonym_mapping(res, tmp_path / "map.csv")
    assert mp.read_text(encoding="utf-8").splitlines()[0] == "name,pseudonym"
    assert read_pseudonym_mapping(mp) == {"beta": "sub-01", "alpha": "sub-02"}
    bad = tmp_path / "bad_map.csv"
    bad.write_text("name,code\na,b\n")
    with pytest.raises(CodingFileError, match="pseudonym"):
        read_pseudonym_mapping(bad)


def test_many_subjects_widen_pseudonyms(tmp_path):
    base = _base_rows().iloc[[0]]
    rows = []
    for i in range(120):
        r = base.copy()
        r["Subject"] = f"p{i:03d}"
        r["Filename"] = f"angry_1_146_p{i:03d}_20230801.avi"
        rows.append(r)
    res = read_coding(_write(pd.concat(rows), tmp_path / "c.csv"))
    assert sorted(res.mapping.values())[0] == "sub-001"
    assert res.mapping["p119"] == "sub-120"
    assert math.isclose(res.expressions.fps_effective.iloc[0], 150.0)
