"""Dataset description tables against hand-computed values on a small handmade table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmme_neuro import describe


@pytest.fixture
def expr() -> pd.DataFrame:
    """Six expressions of two subjects (the schema of ``read_coding(...).expressions``)."""
    return pd.DataFrame(
        {
            "subject": ["sub-01", "sub-01", "sub-01", "sub-02", "sub-02", "sub-02"],
            "kind": ["ME", "ME", "MaE", "ME", "MaE", "MaE"],
            "emotion": ["disgust", "happy", "disgust", "surprise", "tense", "happy"],
            "composite_emotion": ["negative", "positive", "negative", "surprise", "negative", "positive"],
            "duration_s": [0.30, 0.40, 1.00, 0.50, 2.00, 1.50],
            "onset_to_apex_s": [0.10, 0.20, 0.50, 0.25, 1.00, 0.60],
            # AU4 twice in row 3 counts once; order within a cell does not matter
            "aus": ["AU4, AU7", "AU12, AU6", "AU4, AU9, AU4", "AU1, AU2", "AU14", "AU12, AU25"],
        }
    )


@pytest.fixture
def report() -> pd.DataFrame:
    """Six coding-file rows (the schema of ``read_coding(...).report``)."""
    return pd.DataFrame(
        {
            "source_row": [2, 3, 4, 5, 6, 7],
            "subject": ["sub-01"] * 3 + ["sub-02"] * 3,
            "marker": [101] * 6,
            "status": ["ok", "ok", "flagged", "flagged", "excluded", "excluded"],
            "issues": [
                "",
                "",
                "apex_equals_offset",
                "apex_equals_offset;fps_deviates",
                "duplicate_superseded;apex_equals_offset",
                "missing_value",
            ],
            "reason": ["", "", "", "", "Excel row 6 (sub-02, marker 101): superseded", "Excel row 7: empty cell"],
        }
    )


def test_parse_aus() -> None:
    assert describe.parse_aus("AU4, AU7, AU4") == [4, 7]
    assert describe.parse_aus("AU12,AU6") == [6, 12]
    assert describe.parse_aus("au 12") == [12]
    assert describe.parse_aus("") == []
    assert describe.parse_aus(np.nan) == []
    assert describe.parse_aus(None) == []


def test_format_mean_sd() -> None:
    assert describe.format_mean_sd(381.7, 100.5) == "381.7 ± 100.5"
    assert describe.format_mean_sd(400.0, np.nan) == "400.0"
    assert describe.format_mean_sd(np.nan, 1.0) == "n/a"


def test_emotion_counts(expr: pd.DataFrame) -> None:
    out = describe.emotion_counts(expr)
    assert list(out.columns) == ["emotion", "label", "kind", "count", "proportion"]
    assert len(out) == 7 * 2  # every MMME emotion x kind, zeros included
    assert list(dict.fromkeys(out["label"])) == ["Dis", "Fea", "Sur", "Hap", "Ang", "Sad", "Con"]
    assert list(out["kind"][:2]) == ["ME", "MaE"]
    wide = out.pivot(index="emotion", columns="kind", values="count")
    expected = {
        "disgust": (1, 1), "fear": (0, 0), "surprise": (1, 0), "happy": (1, 1),
        "angry": (0, 0), "sad": (0, 0), "tense": (0, 1),
    }  # fmt: skip
    for emotion, (me, mae) in expected.items():
        assert (wide.loc[emotion, "ME"], wide.loc[emotion, "MaE"]) == (me, mae), emotion
    row = out[(out["emotion"] == "disgust") & (out["kind"] == "ME")].iloc[0]
    assert row["proportion"] == pytest.approx(1 / 3)


def test_emotion_counts_unknown_emotion_last(expr: pd.DataFrame) -> None:
    extra = pd.concat([expr, expr.iloc[[0]].assign(emotion=None)], ignore_index=True)
    out = describe.emotion_counts(extra)
    assert out["emotion"].iloc[-1] == "unknown"
    assert out.loc[(out["emotion"] == "unknown") & (out["kind"] == "ME"), "count"].item() == 1


def test_composite_proportions(expr: pd.DataFrame) -> None:
    out = describe.composite_proportions(expr)
    assert list(out[["kind", "composite"]].itertuples(index=False, name=None)) == [
        ("ME", "negative"), ("ME", "positive"), ("ME", "surprise"),
        ("MaE", "negative"), ("MaE", "positive"), ("MaE", "surprise"),
    ]  # fmt: skip
    assert out["count"].tolist() == [1, 1, 1, 2, 1, 0]
    np.testing.assert_allclose(out["percent"], [100 / 3, 100 / 3, 100 / 3, 200 / 3, 100 / 3, 0.0])
    # without the composite column, the emotion is mapped
    out2 = describe.composite_proportions(expr.drop(columns="composite_emotion"))
    pd.testing.assert_frame_equal(out, out2)


def test_duration_stats(expr: pd.DataFrame) -> None:
    out = describe.duration_stats(expr).set_index(["kind", "measure"])
    me = out.loc[("ME", "duration")]
    assert me["n"] == 3
    assert me["mean_ms"] == pytest.approx(400.0)
    assert me["sd_ms"] == pytest.approx(100.0)  # sample SD of 300, 400, 500 ms
    assert me["median_ms"] == pytest.approx(400.0)
    assert (me["min_ms"], me["max_ms"]) == pytest.approx((300.0, 500.0))
    assert me["text"] == "400.0 ± 100.0"
    apex = out.loc[("ME", "onset_to_apex")]
    assert apex["mean_ms"] == pytest.approx(550 / 3)
    assert apex["sd_ms"] == pytest.approx(np.sqrt(35000 / 3 / 2))  # SS = 11666.7 ms², ddof 1
    mae = out.loc[("MaE", "duration")]
    assert (mae["mean_ms"], mae["sd_ms"], mae["text"]) == (pytest.approx(1500.0), pytest.approx(500.0), "1500.0 ± 500.0")
    everything = out.loc[("all", "duration")]
    assert everything["n"] == 6
    assert everything["mean_ms"] == pytest.approx(950.0)
    assert everything["sd_ms"] == pytest.approx(np.sqrt(467000.0))


def test_duration_stats_empty_kind(expr: pd.DataFrame) -> None:
    out = describe.duration_stats(expr[expr["kind"] == "ME"]).set_index(["kind", "measure"])
    assert out.loc[("MaE", "duration"), "n"] == 0
    assert np.isnan(out.loc[("MaE", "duration"), "mean_ms"])
    assert out.loc[("MaE", "duration"), "text"] == "n/a"


def test_au_table_me(expr: pd.DataFrame) -> None:
    out = describe.au_table(expr, kind="ME")
    assert list(out.columns) == ["au", "au_number", "description", "region", "count", "proportion"]
    assert out["au"].tolist() == ["AU1", "AU2", "AU4", "AU6", "AU7", "AU12"]
    assert out["count"].tolist() == [1] * 6
    assert out["region"].tolist() == ["upper", "upper", "upper", "upper", "mid", "mid"]
    assert out.set_index("au").loc["AU4", "description"] == "Brow Lowerer"
    assert out["proportion"].tolist() == pytest.approx([1 / 3] * 6)


def test_au_table_counts_each_au_once_per_expression(expr: pd.DataFrame) -> None:
    mae = describe.au_table(expr, kind="MaE").set_index("au")["count"].to_dict()
    assert mae == {"AU4": 1, "AU9": 1, "AU12": 1, "AU14": 1, "AU25": 1}
    everything = describe.au_table(expr, kind=None).set_index("au")["count"].to_dict()
    assert everything["AU4"] == 2 and everything["AU12"] == 2 and sum(everything.values()) == 11


def test_au_table_unknown_au() -> None:
    out = describe.au_table(pd.DataFrame({"kind": ["ME"], "aus": ["AU99"]}))
    assert out[["au", "region", "description"]].iloc[0].tolist() == ["AU99", "unknown", ""]


def test_au_region_counts(expr: pd.DataFrame) -> None:
    out = describe.au_region_counts(expr).set_index(["kind", "region"])
    assert list(out.index) == [(k, r) for k in ("ME", "MaE") for r in ("upper", "mid", "lower")]
    assert out["n_au"].tolist() == [4, 2, 0, 1, 2, 2]
    assert out["n_expressions"].tolist() == [3, 2, 0, 1, 2, 2]
    assert out.loc[("ME", "upper"), "proportion_expressions"] == pytest.approx(1.0)
    assert out.loc[("MaE", "mid"), "proportion_expressions"] == pytest.approx(2 / 3)


def test_subject_counts(expr: pd.DataFrame) -> None:
    out = describe.subject_counts(expr)
    assert list(out.columns) == ["subject", "kind", "count"]
    assert list(out.itertuples(index=False, name=None)) == [
        ("sub-01", "ME", 2), ("sub-01", "MaE", 1), ("sub-02", "ME", 1), ("sub-02", "MaE", 2),
    ]  # fmt: skip


def test_subject_counts_zero_filled(expr: pd.DataFrame) -> None:
    out = describe.subject_counts(expr[~((expr["subject"] == "sub-01") & (expr["kind"] == "MaE"))])
    assert out.set_index(["subject", "kind"]).loc[("sub-01", "MaE"), "count"] == 0


def test_quality_counts(report: pd.DataFrame) -> None:
    out = describe.quality_counts(report)
    assert list(out.columns) == ["issue", "status", "count"]
    assert list(dict.fromkeys(out["issue"])) == [
        "apex_equals_offset", "duplicate_superseded", "fps_deviates", "missing_value", "none",
    ]  # fmt: skip
    assert list(dict.fromkeys(out["status"])) == ["ok", "flagged", "excluded"]
    wide = out.pivot(index="issue", columns="status", values="count")
    assert wide.loc["apex_equals_offset"].to_dict() == {"ok": 0, "flagged": 2, "excluded": 1}
    assert wide.loc["fps_deviates"].to_dict() == {"ok": 0, "flagged": 1, "excluded": 0}
    assert wide.loc["duplicate_superseded", "excluded"] == 1
    assert wide.loc["missing_value", "excluded"] == 1
    assert wide.loc["none"].to_dict() == {"ok": 2, "flagged": 0, "excluded": 0}


def test_exclusion_reasons(report: pd.DataFrame) -> None:
    assert describe.exclusion_reasons(report) == {"duplicate_superseded": 1, "missing_value": 1}
    assert describe.exclusion_reasons(report, exclusion_codes=["missing_value"]) == {
        "missing_value": 1,
        "unspecified": 1,
    }


def test_empty_table(expr: pd.DataFrame) -> None:
    empty = expr.iloc[0:0]
    counts = describe.emotion_counts(empty)
    assert counts["count"].sum() == 0 and counts["proportion"].isna().all()
    assert describe.au_table(empty).empty
    assert describe.subject_counts(empty).empty
    assert describe.composite_proportions(empty)["count"].sum() == 0


def test_missing_column_is_named(expr: pd.DataFrame) -> None:
    with pytest.raises(KeyError, match="emotion"):
        describe.emotion_counts(expr.drop(columns="emotion"))


def test_inputs_not_modified(expr: pd.DataFrame, report: pd.DataFrame) -> None:
    before_e, before_r = expr.copy(), report.copy()
    for func in (describe.emotion_counts, describe.composite_proportions, describe.duration_stats,
                 describe.au_table, describe.au_region_counts, describe.subject_counts):  # fmt: skip
        func(expr)
    describe.quality_counts(report)
    describe.exclusion_reasons(report)
    pd.testing.assert_frame_equal(expr, before_e)
    pd.testing.assert_frame_equal(report, before_r)
