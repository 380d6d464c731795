"""Fuzzing of the coding-file reader with malformed rows (hypothesis).

Whatever the cells hold, :func:`read_coding` either raises
:class:`CodingFileError` (structural problem) or returns a result in which
every input row is accounted for and every exclusion has a reason.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmme_neuro.config import CodingConfig
from mmme_neuro.io.coding import ISSUE_CODES, REQUIRED_COLUMNS, CodingFileError, read_coding

_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Co", "Cn")), max_size=20)
_NUM = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.floats(min_value=-5, max_value=120).map(lambda x: round(x, 2)),
    st.integers(-(10**6), 10**6),
)
_BLANK = st.sampled_from([None, "", "  ", math.nan])
_NAMES = st.sampled_from(["alpha", "beta", "gamma", "Beta ", "ALPHA"])
_MARKERS = st.one_of(
    st.sampled_from([101, 146, 123, 147, 100, 77, 88, 0, -3]), st.integers(), _TEXT
)
_STAMP = st.one_of(
    st.builds(
        lambda h, m, s, ms, c: f"{h:02d}-{m:02d}-{s:02d}-{ms:03d}" + ("" if c is None else f"-{c:03d}"),
        st.integers(0, 30), st.integers(0, 70), st.integers(0, 70), st.integers(0, 999),
        st.one_of(st.none(), st.integers(0, 1200)),
    ),
    _TEXT,
)  # fmt: skip
_FILENAME = st.one_of(
    st.builds(
        lambda emo, order, marker, name, date: f"{emo}_{order}_{marker}_{name}_{date}.avi",
        st.sampled_from(["angry", "happy", "sad", "surprise", "x"]), st.integers(0, 9),
        st.sampled_from([101, 146, 123, 147, 999]), _NAMES,
        st.sampled_from(["20230801", "20231345", "2023"]),
    ),
    _TEXT,
)  # fmt: skip
_AUS = st.one_of(
    st.lists(st.integers(0, 120).map(lambda a: f"AU{a}"), max_size=4).map(", ".join),
    st.sampled_from(["au4，AU7", "AU4 AU7", "L12", "AU 4、AU 9"]),
    _TEXT,
)
_DATE = st.one_of(
    st.builds(
        lambda y, mo, d, h, mi: f"{y}年{mo:02d}月{d:02d}日-{h:02d}时{mi:02d}分",
        st.integers(1, 9999), st.integers(0, 13), st.integers(0, 32), st.integers(0, 25),
        st.integers(0, 61),
    ),
    _TEXT,
)  # fmt: skip


def _cell(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(strategy, _BLANK, _NUM, _TEXT)


_ROW = st.fixed_dictionaries(
    {
        "Subject": st.one_of(_NAMES, _BLANK, _NUM),
        "Filename": _cell(_FILENAME),
        "Marker": _cell(_MARKERS),
        "OnsetTime": _cell(st.floats(0, 60).map(lambda x: round(x, 2))),
        "ApexTime": _cell(st.floats(0, 60).map(lambda x: round(x, 2))),
        "OffsetTime": _cell(st.floats(0, 60).map(lambda x: round(x, 2))),
        "OnsetFrame": _cell(_STAMP),
        "ApexFrame": _cell(_STAMP),
        "OffsetFrame": _cell(_STAMP),
        "Action Units": _cell(_AUS),
        "Estimated Emotion": _cell(st.sampled_from(["angry", "Happy ", "sad", "bored"])),
        "Date": _cell(_DATE),
        "dif": _cell(st.integers(-5, 2000)),
    }
)

_VALID_ROW = {
    "Subject": "alpha", "Filename": "angry_1_146_alpha_20230801.avi", "Marker": 146,
    "OnsetTime": 10.0, "ApexTime": 10.2, "OffsetTime": 10.4, "OnsetFrame": "10-00-10-000-000",
    "ApexFrame": "10-00-10-200-030", "OffsetFrame": "10-00-10-400-060", "Action Units": "AU4",
    "Estimated Emotion": "angry", "Date": "2024年05月01日-10时00分", "dif": 31,
}  # fmt: skip


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    rows=st.lists(_ROW, min_size=0, max_size=12),
    n_valid=st.integers(0, 3),
    fmt=st.sampled_from(["csv", "csv", "xlsx"]),
    drop_column=st.one_of(st.none(), st.sampled_from(REQUIRED_COLUMNS)),
    policy=st.sampled_from(["latest", "first", "drop", "keep_all"]),
    macro_micro=st.one_of(
        st.none(),
        st.lists(_cell(st.sampled_from(["Macro", "Micro", "ME"])), min_size=15, max_size=15),
    ),
)
def test_reader_never_crashes(rows, n_valid, fmt, drop_column, policy, macro_micro):
    table = pd.DataFrame([*rows, *([_VALID_ROW] * n_valid)], columns=list(REQUIRED_COLUMNS))
    if macro_micro is not None:
        table["Macro/Micro"] = pd.Series(macro_micro[: len(table)], dtype=object)
    if drop_column is not None:
        table = table.drop(columns=drop_column)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"coding.{fmt}"
        if fmt == "csv":
            table.to_csv(path, index=False)
        else:
            table.to_excel(path, index=False)
        before = path.read_bytes()
        try:
            result = read_coding(path, CodingConfig(duplicate_policy=policy))
        except CodingFileError as err:
            assert "coding." in str(err)
            if drop_column is not None and table.shape[0] > 0:
                assert drop_column in str(err) or "no data rows" in str(err)
            return
        finally:
            assert path.read_bytes() == before
    assert drop_column is None
    n = result.counts()
    assert n["rows_in"] == len(result.report) <= len(table)
    assert n["rows_in"] == n["kept"] + n["excluded"]
    assert n["kept"] == len(result.expressions)
    assert n["kept"] >= (1 if n_valid and policy != "drop" else 0)
    rep = result.report
    assert set(rep.status) <= {"ok", "flagged", "excluded"}
    excluded = rep[rep.status == "excluded"]
    assert excluded.reason.str.len().gt(0).all()
    for issues, status in zip(rep.issues, rep.status, strict=True):
        codes = [c for c in issues.split(";") if c]
        assert all(c in ISSUE_CODES for c in codes)
        assert (status == "ok") == (not codes)
        assert (status == "excluded") == any(ISSUE_CODES[c][0] == "exclude" for c in codes)
    ex = result.expressions
    assert ex.expression_id.is_unique
    assert set(ex.kind) <= {"ME", "MaE"}
    if len(ex):
        assert (ex.onset_s < ex.offset_s).all()
        assert ((ex.apex_s >= ex.onset_s - 1e-9) & (ex.apex_s <= ex.offset_s + 1e-9)).all()
        assert ex.subject.str.fullmatch(r"sub-\d{2,}").all()
