"""analyses.dataset_summary on the real MMME coding file, plus the shared script/summary scaffolding.

The script runs in-process (``main(argv)``). On the real file it must write
every output, never a participant name, and a summary.json that follows
``docs/summary-json.md`` and agrees with the coding reader.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from PIL import Image  # noqa: E402

import analyses.dataset_summary as ds  # noqa: E402
from analyses._common import build_parser, setup  # noqa: E402
from mmme_neuro.config import Config, load_config  # noqa: E402
from mmme_neuro.io.coding import read_coding  # noqa: E402
from mmme_neuro.reporting import (  # noqa: E402
    BASE_KEYS,
    CONTRAST_KEYS,
    SCHEMA_VERSION,
    base_summary,
    dataset_hash,
    dumps_summary,
    hash_inputs,
    make_contrast,
    to_jsonable,
    validate_summary,
    write_summary,
)

REPO = Path(__file__).resolve().parents[1]
REAL_CODING = Path("/work/shared/data/mmme/coding_file.xlsx")
DOC = REPO / "docs" / "summary-json.md"

FIGURES = ("overview", "emotion_counts", "composite_pies", "durations", "au_counts",
           "subject_counts", "annotation_quality")  # fmt: skip
TABLES = ("emotion_counts", "composite_proportions", "durations", "au_table_me", "au_table_mae",
          "au_region_counts", "subject_counts", "quality_counts", "coding_report")  # fmt: skip

needs_real = pytest.mark.skipif(not REAL_CODING.is_file(), reason="real MMME coding file not available")


# --------------------------------------------------------------------------- helpers


def _real_names() -> list[str]:
    """The participant names of the real coding file (read only to check they never leak)."""
    subjects = pd.read_excel(REAL_CODING, usecols=["Subject"])["Subject"].dropna().astype(str).str.strip()
    names = sorted(set(subjects))
    assert len(names) == 16
    return names


def _pdf_text(data: bytes) -> str:
    """Raw PDF bytes plus every decompressed stream, as latin-1 text."""
    parts = [data]
    for match in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        try:
            parts.append(zlib.decompress(match.group(1)))
        except zlib.error:
            parts.append(match.group(1))
    return b"\n".join(parts).decode("latin-1")


def _file_text(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".pdf":
        return _pdf_text(data)
    if path.suffix == ".png":
        with Image.open(path) as img:
            meta = " ".join(f"{k}={v}" for k, v in img.info.items())
        return data.decode("latin-1") + meta
    return data.decode("utf-8")


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the script twice on the real file (PNG, PDF and SVG), recording all figure text."""
    if not REAL_CODING.is_file():
        pytest.skip("real MMME coding file not available")
    root = tmp_path_factory.mktemp("dataset_summary")
    figure_text: list[str] = []
    original = ds.save_figure

    def recording_save(fig, path_stem, formats=("png", "pdf"), **kwargs):
        figure_text.extend(t.get_text() for t in fig.findobj(Text))
        return original(fig, path_stem, formats, **kwargs)

    codes = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ds, "save_figure", recording_save)
        mp.setattr(ds, "FIGURE_FORMATS", ("png", "pdf", "svg"))
        for run in ("a", "b"):
            codes.append(ds.main(["--coding", str(REAL_CODING), "--out", str(root / run)]))
    return {"a": root / "a", "b": root / "b", "codes": codes, "figure_text": figure_text}


# --------------------------------------------------------------------------- the script on the real file


@needs_real
def test_writes_all_outputs(real_runs: dict) -> None:
    assert real_runs["codes"] == [0, 0]
    out = real_runs["a"]
    for name in FIGURES:
        for ext in ("png", "pdf", "svg"):
            assert (out / f"{name}.{ext}").is_file(), f"{name}.{ext}"
        with Image.open(out / f"{name}.png") as img:
            img.load()
            assert img.info["dpi"] == pytest.approx((300, 300), abs=0.1)
        assert (out / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    for name in TABLES:
        table = pd.read_csv(out / f"{name}.csv")
        assert len(table) > 0, name
    for name in ("summary.json", "summary.md"):
        assert (out / name).stat().st_size > 0
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


@needs_real
def test_no_real_name_in_any_output(real_runs: dict) -> None:
    names = [n.lower() for n in _real_names()]
    files = sorted(p for run in ("a", "b") for p in real_runs[run].iterdir())
    assert len(files) >= 2 * (3 * len(FIGURES) + len(TABLES) + 2)
    for path in files:
        text = _file_text(path).lower()
        leaked = [n for n in names if n in text]
        assert not leaked, f"{path.name} contains {len(leaked)} participant name(s)"
    figure_text = " ".join(real_runs["figure_text"]).lower()
    assert figure_text.strip()
    assert not [n for n in names if n in figure_text], "a figure shows a participant name"
    # the SVGs keep text as text, so they are a real check of the figure contents
    svg = (real_runs["a"] / "subject_counts.svg").read_text(encoding="utf-8")
    assert "Subject (sub-)" in svg and ">01<" in svg


@needs_real
def test_outputs_are_deterministic(real_runs: dict) -> None:
    a, b = real_runs["a"], real_runs["b"]
    names_a = sorted(p.name for p in a.iterdir())
    assert names_a == sorted(p.name for p in b.iterdir())
    differ = [n for n in names_a if hashlib.sha256((a / n).read_bytes()).digest() != hashlib.sha256((b / n).read_bytes()).digest()]
    assert not differ, f"outputs differ between two identical runs: {differ}"


@needs_real
def test_summary_json_schema_and_counts(real_runs: dict) -> None:
    summary = json.loads((real_runs["a"] / "summary.json").read_text(encoding="utf-8"))
    validate_summary(summary)
    assert summary["schema_version"] == SCHEMA_VERSION
    assert summary["analysis"] == "dataset_summary"
    assert summary["config_hash"] == Config().hash()
    assert summary["seed"] == Config().seed

    result = read_coding(REAL_CODING, Config().coding)
    counts = result.counts()
    res = summary["results"]
    assert res["coding_counts"] == counts
    assert res["expressions"] == {"ME": counts["me"], "MaE": counts["mae"]}
    assert summary["inputs"] == {"coding_file": result.sha256}
    assert summary["dataset_hash"] == dataset_hash({"x": result.sha256})
    assert summary["n_subjects"] == result.expressions["subject"].nunique() == len(summary["subjects"])
    assert all(re.fullmatch(r"sub-\d{2,}", s) for s in summary["subjects"])
    assert sum(summary["exclusions_by_reason"].values()) == counts["excluded"]
    assert sum(e["ME"] for e in res["emotion_counts"].values()) == counts["me"]
    assert sum(e["MaE"] for e in res["emotion_counts"].values()) == counts["mae"]
    assert sum(s["ME"] + s["MaE"] for s in res["expressions_per_subject"].values()) == counts["kept"]
    assert res["duration_ms"]["ME"]["duration"]["n"] == counts["me"]
    me_ms = result.expressions.loc[result.expressions["kind"] == "ME", "duration_s"] * 1000
    assert res["duration_ms"]["ME"]["duration"]["mean"] == pytest.approx(me_ms.mean(), abs=1e-3)
    assert res["duration_ms"]["ME"]["duration"]["sd"] == pytest.approx(me_ms.std(ddof=1), abs=1e-3)
    for kind in ("ME", "MaE"):
        assert sum(res["composite_percent"][kind].values()) == pytest.approx(100.0, abs=0.02)
    assert summary["contrasts"] == [] and summary["epochs_per_condition"] == {}


@needs_real
def test_summary_keys_are_documented(real_runs: dict) -> None:
    summary = json.loads((real_runs["a"] / "summary.json").read_text(encoding="utf-8"))
    doc = DOC.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", doc, flags=re.M))
    assert set(BASE_KEYS) <= documented
    assert set(CONTRAST_KEYS) <= documented
    assert set(summary) == set(BASE_KEYS)
    section = doc.split("## `results` of `dataset_summary`", 1)[1].split("\n## ", 1)[0]
    assert set(summary["results"]) == set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.M))
    assert f"**Schema version: `{SCHEMA_VERSION}`**" in doc


@needs_real
def test_tables_and_markdown_agree_with_reader(real_runs: dict) -> None:
    out = real_runs["a"]
    result = read_coding(REAL_CODING)
    counts = result.counts()
    emotions = pd.read_csv(out / "emotion_counts.csv")
    assert emotions.groupby("kind")["count"].sum().to_dict() == {"ME": counts["me"], "MaE": counts["mae"]}
    report = pd.read_csv(out / "coding_report.csv")
    assert len(report) == counts["rows_in"]
    assert "Filename" not in report.columns
    subjects = pd.read_csv(out / "subject_counts.csv")
    assert set(subjects["subject"]) == set(result.expressions["subject"])
    au = pd.read_csv(out / "au_table_me.csv")
    assert {"au", "description", "region", "count"} <= set(au.columns)
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert f"{counts['me']} ME and {counts['mae']} MaE" in md
    assert "16 subjects" in md
    assert re.search(r"ME duration \(onset to offset\) \*\*\d+\.\d ± \d+\.\d ms\*\*", md)


def test_missing_coding_file_fails_cleanly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        code = ds.main(["--coding", str(tmp_path / "absent.xlsx"), "--out", str(tmp_path / "out")])
    assert code == 1
    assert "absent.xlsx" in caplog.text


def test_synthetic_default_study(tmp_path: Path) -> None:
    """Without --coding the script describes the synthetic default study (ci scale here)."""
    study = pytest.importorskip("mmme_neuro.simulate.study")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[paths]\ndata_dir = "{(tmp_path / "data").as_posix()}"\n', encoding="utf-8")
    config = load_config(cfg, simulation={"scale": "ci"})
    try:
        paths = study.ensure_study(config, progress=False)
    except (ImportError, NotImplementedError) as err:  # the generator is still being written
        pytest.skip(f"synthetic study generator not available: {err}")
    code = ds.main(["--config", str(cfg), "--scale", "ci", "--out", str(tmp_path / "out")])
    assert code == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    counts = read_coding(paths.coding_file).counts()
    assert summary["results"]["coding_counts"] == counts
    assert summary["inputs"]["coding_file"] == hashlib.sha256(Path(paths.coding_file).read_bytes()).hexdigest()


def test_bids_root_is_described_from_its_stored_coding(ci_bids: Path, ci_study, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Issue 24: ``--bids-root X`` described a freshly simulated synthetic study, not X. Now X's coding, from the
    pseudonymised copy its conversion stored: the counts are those of X's events and exclusions, and the same as
    the coding file gives; no name reaches an output; ``mmme-neuro run --bids-root X`` does the same."""
    import mmme_neuro.simulate.study as sim
    from mmme_neuro.cli import main

    def no_synthetic(*args, **kwargs):
        raise AssertionError("the synthetic default study was used instead of the BIDS study")

    monkeypatch.setattr(sim, "ensure_study", no_synthetic)
    out = tmp_path / "out"
    assert ds.main(["--bids-root", str(ci_bids), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    # X's events (kept expressions) plus the coded expressions its conversion excluded after the coding stage
    events = pd.concat([pd.read_csv(f, sep="\t", dtype=str) for f in sorted(ci_bids.glob("sub-*/eeg/*_events.tsv"))])
    events = events[events["trial_type"].isin(["ME", "MaE"])]
    excl = pd.read_csv(ci_bids / "derivatives" / "mmme-neuro" / "exclusions.tsv", sep="\t", dtype=str)
    lost = excl[(excl["scope"] == "all") & (excl["stage"] != "coding")]
    for kind in ("ME", "MaE"):
        assert summary["results"]["expressions"][kind] == int((events["kind"] == kind).sum()) + int((lost["kind"] == kind).sum())
    coded = read_coding(ci_study.coding_file)
    assert summary["results"]["coding_counts"] == coded.counts()
    assert summary["subjects"] == sorted(coded.expressions["subject"].unique())
    assert set(summary["inputs"]) == {"coded_expressions", "coding_report"}
    # the same description as from the coding file itself
    direct = tmp_path / "direct"
    assert ds.main(["--coding", str(ci_study.coding_file), "--out", str(direct)]) == 0
    from_file = json.loads((direct / "summary.json").read_text(encoding="utf-8"))
    assert {k: v for k, v in summary["results"].items() if k != "coding_sha256"} == from_file["results"]
    assert summary["results"]["coding_sha256"] == coded.sha256
    for name in TABLES:
        assert (out / f"{name}.csv").read_bytes() == (direct / f"{name}.csv").read_bytes(), name
    names = [n for n in coded.mapping if len(n) > 2]
    assert names
    for f in sorted(out.iterdir()):
        text = _file_text(f)
        assert not [n for n in names if n in text], f.name
    # mmme-neuro run --bids-root X --analyses dataset
    assert main(["run", "--bids-root", str(ci_bids), "--analyses", "dataset", "--out", str(tmp_path / "run")]) == 0
    ran = json.loads((tmp_path / "run" / "dataset_summary" / "summary.json").read_text(encoding="utf-8"))
    assert ran["results"] == summary["results"]
    # a study converted before the copy was stored: a clear error naming the missing file and the remedy
    old = tmp_path / "old-bids"
    (old / "derivatives" / "mmme-neuro").mkdir(parents=True)
    (old / "dataset_description.json").write_text("{}", encoding="utf-8")
    assert ds.main(["--bids-root", str(old), "--out", str(tmp_path / "o")]) == 1


# --------------------------------------------------------------------------- analyses._common


def test_build_parser_defaults_and_name() -> None:
    parser = build_parser("Demo.")
    args = parser.parse_args([])
    assert args.analysis == "test_dataset_summary"  # the calling module's name
    assert (args.config, args.out, args.scale, args.null, args.seed, args.verbose) == (None, None, None, None, None, 0)
    args = build_parser("Demo.", analysis="demo").parse_args(["--scale", "ci", "--null", "--seed", "7", "-vv"])
    assert (args.analysis, args.scale, args.null, args.seed, args.verbose) == ("demo", "ci", True, 7, 2)
    with pytest.raises(SystemExit):
        build_parser("Demo.").parse_args(["--scale", "huge"])


def test_setup_overrides_and_default_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "c.toml"
    cfg.write_text('seed = 3\n[paths]\nfigures_dir = "figs"\n[simulation]\nscale = "full"\n', encoding="utf-8")
    parser = build_parser("Demo.", analysis="demo")
    config, out = setup(parser.parse_args(["--config", str(cfg)]))
    assert (config.seed, config.simulation.scale, config.simulation.null) == (3, "full", False)
    assert out == Path("figs") / "demo" and out.is_dir()
    config, out = setup(parser.parse_args(["--config", str(cfg), "--scale", "ci", "--null", "--seed", "9", "--out", "o"]))
    assert (config.seed, config.simulation.scale, config.simulation.null) == (9, "ci", True)
    assert out == Path("o") and out.is_dir()
    assert logging.getLogger("mmme_neuro").level == logging.WARNING
    assert config.simulation.between_subject_sd == 1.0
    config, _ = setup(parser.parse_args(["--config", str(cfg), "--between-subject-sd", "0.5"]))
    assert config.simulation.between_subject_sd == 0.5


def test_run_passes_between_subject_sd_on(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """``mmme-neuro run --between-subject-sd X`` hands X to every script; out of range: exit 1, nothing run."""
    import analyses.__main__ as runner
    from mmme_neuro.cli import main

    seen = []
    monkeypatch.setattr(runner, "run_study", lambda names, script_args, out_root: (seen.append(script_args), (0, []))[1])
    assert main(["run", "--analyses", "erp", "--null", "--between-subject-sd", "0.5", "--out", "o"]) == 0
    # without a study it says that it analyses the synthetic one
    assert "no --bids-root" in capsys.readouterr().err
    args = seen[0]
    assert args[args.index("--between-subject-sd") + 1] == "0.5" and "--null" in args
    assert main(["run", "--analyses", "erp", "--between-subject-sd", "11"]) == 1
    assert len(seen) == 1 and "between_subject_sd" in capsys.readouterr().err


# --------------------------------------------------------------------------- mmme_neuro.reporting


def test_to_jsonable_and_dumps() -> None:
    obj = {
        "b": np.float32(1.5), "a": np.int64(3), "nan": float("nan"), "inf": np.inf, "arr": np.array([1.0, np.nan]),
        "tup": (1, 2), "flag": np.bool_(True), 4: "int key", "path": Path("x/y"), "na": pd.NA,
        "series": pd.Series({"ME": np.int64(2)}),
    }  # fmt: skip
    out = to_jsonable(obj)
    assert out == {"b": 1.5, "a": 3, "nan": None, "inf": None, "arr": [1.0, None], "tup": [1, 2], "flag": True,
                   "4": "int key", "path": "x/y", "na": None, "series": {"ME": 2}}  # fmt: skip
    text = dumps_summary(obj)
    assert text.endswith("\n") and "NaN" not in text and "Infinity" not in text
    keys = list(json.loads(text))
    assert keys == sorted(keys)
    with pytest.raises(TypeError):
        to_jsonable(object())


def test_base_summary_and_write(tmp_path: Path) -> None:
    data = tmp_path / "in.txt"
    data.write_text("abc", encoding="utf-8")
    folder = tmp_path / "bids"
    (folder / "sub-01").mkdir(parents=True)
    (folder / "sub-01" / "x.tsv").write_text("1\n", encoding="utf-8")
    config = Config()
    summary = base_summary("demo", config, {"coding_file": data, "bids": folder})
    assert set(summary) == set(BASE_KEYS)
    digest = hashlib.sha256(b"abc").hexdigest()
    assert summary["inputs"]["coding_file"] == digest
    assert summary["dataset_hash"] == dataset_hash(summary["inputs"])
    assert summary["config_hash"] == config.hash() and summary["seed"] == 42
    # a precomputed digest is taken as is; names do not change the dataset hash
    assert hash_inputs({"other": digest}) == {"other": digest}
    assert dataset_hash({"x": digest}) == dataset_hash({"y": digest})
    with pytest.raises(FileNotFoundError):
        hash_inputs({"missing": tmp_path / "nope.csv"})

    # the tool's own records, caches and reports in the BIDS tree are not data: the hash ignores them
    own = folder / "derivatives" / "mmme-neuro"
    (own / "exclusions.tsv").parent.mkdir(parents=True)
    (own / "exclusions.tsv").write_text("expression_id\treason\n", encoding="utf-8")
    before = hash_inputs({"bids": folder})
    for sub in ("conversion", "physio-binary", "qa", "first-level"):  # e.g. records holding modification times
        (own / sub).mkdir()
        (own / sub / "sub-01.json").write_text(f'{{"mtime_ns": {time.time_ns()}}}', encoding="utf-8")
    # the conversion's summary records the configuration hash: a new configuration key is not new data
    (own / "conversion_summary.json").write_text('{"config_hash": "e608b218f55bbc9e"}', encoding="utf-8")
    assert hash_inputs({"bids": folder}) == before
    (own / "exclusions.tsv").write_text("expression_id\treason\nE1\tno_eeg\n", encoding="utf-8")  # data: counted
    assert hash_inputs({"bids": folder}) != before

    summary["contrasts"].append(make_contrast("ME-MaE", kind="cluster", location=["FZ", "CZ"], time_s=[0.1, 0.3],
                                              statistic=np.float64(12.5), p=0.01, statistic_name="cluster_mass"))  # fmt: skip
    summary["results"]["value"] = np.nan
    j1, m1 = write_summary(tmp_path / "out", summary, "# Demo")
    first = j1.read_bytes()
    write_summary(tmp_path / "out", summary, "# Demo")
    assert j1.read_bytes() == first  # deterministic
    assert m1.read_text(encoding="utf-8") == "# Demo\n"
    loaded = json.loads(first)
    validate_summary(loaded)
    assert loaded["results"]["value"] is None
    assert loaded["contrasts"][0]["freq_hz"] is None and loaded["contrasts"][0]["statistic"] == 12.5


def test_validate_summary_reports_problems() -> None:
    good = base_summary("demo", Config(), {})
    validate_summary(good)
    with pytest.raises(ValueError, match="missing key 'contrasts'"):
        validate_summary({k: v for k, v in good.items() if k != "contrasts"})
    with pytest.raises(ValueError, match=r"contrasts\[0\] lacks"):
        validate_summary({**good, "contrasts": [{"contrast": "ME-MaE"}]})
    with pytest.raises(ValueError, match="'subjects' must be a list"):
        validate_summary({**good, "subjects": "sub-01"})
    record = make_contrast("ME-NE", kind="node", location="PZ", effect_size=0.4, effect_size_name="cohen_dz")
    assert list(record)[: len(CONTRAST_KEYS)] == list(CONTRAST_KEYS)
    assert record["effect_size_name"] == "cohen_dz"
