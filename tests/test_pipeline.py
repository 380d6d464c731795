"""Study runner: per-subject cache (keys, exact round trip, resume), failures isolated, dask workers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import convert_ci

from mmme_neuro import pipeline as pl
from mmme_neuro.config import load_config

FAILING = "sub-03"


def toy_first_level(session, config):
    """Cheap first-level step: expression counts and onsets of one session (fails for FAILING)."""
    if session.subject == FAILING:
        raise ValueError("planted failure")
    ex = session.expressions
    table = pd.DataFrame({"subject": session.subject, "kind": ex["kind"].astype(str).to_numpy(),
                          "onset_s": ex["eeg_onset_s"].to_numpy(float), "me": ex["kind"].eq("ME").to_numpy(),
                          "note": [None if i % 3 else "" for i in range(len(ex))]})  # fmt: skip
    onsets = xr.DataArray(np.sort(table["onset_s"].to_numpy()), dims=("epoch",), name="onset",
                          attrs={"units": "s", "seed": int(config.seed)})  # fmt: skip
    return {"table": table, "onsets": onsets}


def scaled_first_level(session, config, *, scale: float = 1.0, names: tuple[str, ...] = ()):
    """First-level step with extra parameters (which must reach the cache key)."""
    return {"t": pd.DataFrame({"value": [scale], "names": [",".join(names)]})}


@pytest.fixture(scope="module")
def bids(_ci_bids_pristine, tmp_path_factory) -> Path:
    return convert_ci(_ci_bids_pristine, tmp_path_factory, "pipe_bids")


def test_table_round_trip_is_exact(tmp_path):
    df = pd.DataFrame({
        "f": [0.1, np.nan, 1 / 3, -1e-300], "i": [1, 2, 3, -4], "b": [True, False, True, False],
        "s": ["a", "", None, "x,y\n\"z\""], "ob": [True, None, False, True], "of": pd.Series([1.5, None, 2.0, None], dtype=object),
    })  # fmt: skip
    da = xr.DataArray(np.arange(6.0).reshape(2, 3), dims=("epoch", "channel"), coords={"channel": ["CZ", "PZ", "FZ"]})
    pl.save_result({"t": df, "a": da}, tmp_path / "r", {"key": "k"})
    back = pl.load_result(tmp_path / "r")
    pd.testing.assert_frame_equal(back["t"], df)
    assert back["t"]["of"].tolist() == [1.5, None, 2.0, None] and back["t"]["ob"].tolist() == [True, None, False, True]
    assert back["t"]["s"].tolist() == ["a", "", None, "x,y\n\"z\""] and back["t"]["f"].iloc[2] == 1 / 3
    xr.testing.assert_equal(back["a"], da)
    assert list(pl.load_result(tmp_path / "r", ["a"])) == ["a"]  # the other entries stay on disk
    with pytest.raises(KeyError, match="nope"):
        pl.load_result(tmp_path / "r", ["a", "nope"])
    with pytest.raises(TypeError, match="cannot store"):
        pl.save_result({"x": [1, 2]}, tmp_path / "bad")
    # nullable integers keep <NA>; dicts go through JSON
    ni = pd.DataFrame({"n": pd.array([1, None, 3], dtype="Int64")})
    pl.save_result({"ni": ni, "meta": {"a": [1, 2.5], "b": None}}, tmp_path / "r2")
    back2 = pl.load_result(tmp_path / "r2")
    pd.testing.assert_frame_equal(back2["ni"], ni)
    assert back2["meta"] == {"a": [1, 2.5], "b": None}
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad.*"))  # nothing half-written


def test_cache_resume_failures_and_keys(bids, monkeypatch):
    cfg = load_config(None)
    first = pl.run_subjects(toy_first_level, bids, cfg, stage="toy", progress=False)
    hashed: list[str] = []
    real_sha = pl.sha256_file
    monkeypatch.setattr(pl, "sha256_file", lambda p: hashed.append(Path(p).relative_to(bids).as_posix()) or real_sha(p))
    st = first.status.set_index("subject")["status"]
    assert st[FAILING] == "failed" and (st.drop(FAILING) == "computed").all()
    assert first.failed == [{"subject": FAILING, "reason": "ValueError: planted failure"}]
    assert FAILING not in first.results and len(first.results) == 7
    first.require(7)
    with pytest.raises(ValueError, match=f"toy: at least 8 subjects.*got 7.*{FAILING}: ValueError: planted failure"):
        first.require(8)
    # a re-run loads everything from the cache, recomputes only the failed subject
    again = pl.run_subjects(toy_first_level, bids, cfg, stage="toy", progress=False)
    st2 = again.status.set_index("subject")["status"]
    assert (st2.drop(FAILING) == "cached").all() and st2[FAILING] == "failed"
    for s, r in first.results.items():
        pd.testing.assert_frame_equal(again.results[s]["table"], r["table"])
    # checking the cache read no unchanged file again, not even the failed subject's (the study-wide hash index knows them)
    assert hashed == [], hashed
    hashed.clear()
    # changed input of one subject: only that one is recomputed; workers/cache settings do not change keys
    side = sorted((bids / "sub-02").rglob("*_eeg.json"))[0]
    side.write_text(side.read_text(encoding="utf-8").replace("}", ', "Note": "edited"}', 1), encoding="utf-8")
    third = pl.run_subjects(toy_first_level, bids, load_config(None, run={"workers": 1, "cache": True}), stage="toy",
                            progress=False)  # fmt: skip
    assert [h for h in hashed if h.startswith("sub-02/")] == [side.relative_to(bids).as_posix()]
    changed = third.status.set_index("subject")["status"]
    assert changed["sub-02"] == "computed" and changed.drop(["sub-02", FAILING]).eq("cached").all()
    # a different configuration recomputes every subject
    other = pl.run_subjects(toy_first_level, bids, load_config(None, seed=7), stage="toy", progress=False)
    assert other.status["status"].isin(["computed", "failed"]).all()
    assert int(other.results["sub-01"]["onsets"].attrs["seed"]) == 7
    manifest = json.loads((pl.cache_dir(bids, "toy", "sub-01") / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["key"] == pl.subject_key(bids, "sub-01", load_config(None, seed=7), "toy")


def test_parameters_reach_the_function_and_the_key(bids):
    cfg = load_config(None)
    a = pl.run_subjects(scaled_first_level, bids, cfg, stage="toy-p", subjects=["sub-01"], progress=False,
                        params={"scale": 2.0, "names": ("x", "y")})  # fmt: skip
    assert a.status["status"].tolist() == ["computed"] and a.results["sub-01"]["t"]["value"].iloc[0] == 2.0
    same = pl.run_subjects(scaled_first_level, bids, cfg, stage="toy-p", subjects=["sub-01"], progress=False,
                           params={"names": ("x", "y"), "scale": 2.0})  # fmt: skip
    assert same.status["status"].tolist() == ["cached"]
    other = pl.run_subjects(scaled_first_level, bids, cfg, stage="toy-p", subjects=["sub-01"], progress=False,
                            params={"scale": 3.0, "names": ("x", "y")})  # fmt: skip
    assert other.status["status"].tolist() == ["computed"] and other.results["sub-01"]["t"]["value"].iloc[0] == 3.0
    assert pl.subject_key(bids, "sub-01", cfg, "toy-p", {"scale": 2.0}) != pl.subject_key(bids, "sub-01", cfg, "toy-p")
    t = other.timing()
    assert t["n_computed"] == 1 and t["wall_s"] > 0 and t["peak_rss_mb"] > 10 and set(t["subject_s"]) == {"sub-01"}
    with pytest.raises(TypeError, match="JSON"):
        pl.run_subjects(scaled_first_level, bids, cfg, stage="toy-p", params={"scale": object()}, progress=False)


CALLS: list[str] = []


def counted_upstream(session, config, *, offset: float = 0.0):
    """Upstream step: records its calls (in-process runs only) and returns a dict and a table."""
    CALLS.append(session.subject)
    return {"info": {"subject": session.subject, "offset": offset, "n": np.int64(len(session.expressions))},
            "onsets": pd.DataFrame({"onset_s": session.expressions["eeg_onset_s"].to_numpy(float) + offset})}


def downstream(session, config, *, scale: float = 1.0, base=None):
    """Step that uses the upstream result it is given as ``base``."""
    return {"t": pd.DataFrame({"first": [float(base["onsets"]["onset_s"].iloc[0]) * scale],
                               "n": [base["info"]["n"]], "offset": [base["info"]["offset"]]})}  # fmt: skip


def test_upstream_step_is_computed_once_and_shared(bids):
    cfg = load_config(None)
    subjects = ["sub-01", "sub-02"]
    up = {"base": pl.Upstream(counted_upstream, "toy-up", {"offset": 1.0})}
    CALLS.clear()
    a = pl.run_subjects(downstream, bids, cfg, stage="toy-down-a", subjects=subjects, progress=False, upstream=up)
    assert CALLS == subjects and a.status["status"].eq("computed").all() and (a.status["upstream_s"] > 0).all()
    # a second step naming the same upstream reads it from the cache
    b = pl.run_subjects(downstream, bids, cfg, stage="toy-down-b", subjects=subjects, progress=False, upstream=up,
                        params={"scale": 2.0})  # fmt: skip
    assert CALLS == subjects
    for s in subjects:
        assert b.results[s]["t"]["first"].iloc[0] == 2 * a.results[s]["t"]["first"].iloc[0]
        assert a.results[s]["t"]["offset"].iloc[0] == 1.0
    stored = pl.load_result(pl.cache_dir(bids, "toy-up", "sub-01"))
    assert stored["info"] == {"subject": "sub-01", "offset": 1.0, "n": int(a.results["sub-01"]["t"]["n"].iloc[0])}
    # the upstream's parameters are part of the downstream key; its own configuration is used when given
    up2 = {"base": pl.Upstream(counted_upstream, "toy-up", {"offset": 2.0})}
    c = pl.run_subjects(downstream, bids, cfg, stage="toy-down-a", subjects=subjects, progress=False, upstream=up2)
    assert c.status["status"].eq("computed").all() and CALLS == subjects * 2
    assert c.results["sub-01"]["t"]["offset"].iloc[0] == 2.0
    up3 = {"base": pl.Upstream(counted_upstream, "toy-up", {"offset": 2.0}, load_config(None))}
    d = pl.run_subjects(downstream, bids, load_config(None, stats={"alpha": 0.01}), stage="toy-down-c",
                        subjects=subjects, progress=False, upstream=up3)  # fmt: skip
    assert d.status["status"].eq("computed").all() and CALLS == subjects * 2  # upstream cache hit despite another config
    with pytest.raises(ValueError, match="also parameters"):
        pl.run_subjects(downstream, bids, cfg, stage="toy-down-a", params={"base": 1}, upstream=up, progress=False)


ATTEMPTS: list[str] = []


def failing_upstream(session, config):
    """Upstream step that fails for FAILING (attempts recorded in-process)."""
    ATTEMPTS.append(session.subject)
    if session.subject == FAILING:
        raise ValueError("planted upstream failure")
    return counted_upstream(session, config)


def slow_upstream(session, config, *, sleep_s: float):
    """Upstream step that takes at least ``sleep_s`` seconds."""
    import time

    time.sleep(sleep_s)
    return counted_upstream(session, config)


def _graph(cfg, tag: str) -> list[pl.Step]:
    up = {"base": pl.Upstream(counted_upstream, f"{tag}-up", {"offset": 1.0})}
    bad = {"base": pl.Upstream(failing_upstream, f"{tag}-bad-up")}
    return [pl.Step(downstream, f"{tag}-a", cfg, upstream=up), pl.Step(downstream, f"{tag}-b", cfg, {"scale": 2.0}, up),
            pl.Step(toy_first_level, f"{tag}-toy", cfg), pl.Step(downstream, f"{tag}-bad", cfg, upstream=bad)]  # fmt: skip


def test_steps_run_as_one_graph(bids):
    """Several steps in one run: a shared upstream once per subject, failures passed on, same results on dask."""
    cfg = load_config(None)
    subjects = ["sub-01", "sub-02", FAILING]
    CALLS.clear()
    ATTEMPTS.clear()
    reps = pl.run_steps(_graph(cfg, "g"), bids, subjects=subjects, workers=1, progress=False)
    assert list(reps) == ["g-a", "g-b", "g-toy", "g-bad"]
    assert ATTEMPTS == subjects  # a failed upstream step is not tried again by the step that reads it
    assert sorted(CALLS) == sorted(subjects + subjects[:2])  # "g-up" once per subject for its two readers
    # the first reader is charged with computing the shared upstream result; the second only reads it
    a, b = reps["g-a"].status, reps["g-b"].status
    assert (a["upstream_s"] > b["upstream_s"]).all() and (a["seconds"] >= a["upstream_s"]).all()
    assert reps["g-toy"].failed == [{"subject": FAILING, "reason": "ValueError: planted failure"}]
    assert reps["g-bad"].failed == [{"subject": FAILING, "reason": "upstream step g-bad-up failed: ValueError: planted upstream failure"}]
    assert sorted(reps["g-bad"].results) == ["sub-01", "sub-02"]
    # the keys are those of one step at a time: nothing to recompute
    alone = pl.run_subjects(downstream, bids, cfg, stage="g-b", subjects=subjects, params={"scale": 2.0}, progress=False,
                            upstream={"base": pl.Upstream(counted_upstream, "g-up", {"offset": 1.0})})  # fmt: skip
    assert alone.status["status"].eq("cached").all() and len(CALLS) == 5
    # cache=False recomputes the upstream step once per subject too
    pl.run_steps(_graph(cfg, "g")[:2], bids, subjects=subjects, workers=1, cache=False, progress=False)
    assert len(CALLS) == 8
    # on 2 dask workers (upstream futures passed to the readers): the same results and failures
    there = pl.run_steps(_graph(cfg, "d"), bids, subjects=subjects, workers=2, progress=False)
    for name in ("a", "b", "toy", "bad"):
        here_r, there_r = reps[f"g-{name}"], there[f"d-{name}"]
        assert [{**f, "reason": f["reason"].replace("d-bad-up", "g-bad-up")} for f in there_r.failed] == here_r.failed
        assert sorted(there_r.results) == sorted(here_r.results)
        for s, res in here_r.results.items():
            for k, v in res.items():
                assert type(there_r.results[s][k]) is type(v)
                if isinstance(v, pd.DataFrame):
                    pd.testing.assert_frame_equal(there_r.results[s][k], v)
                else:
                    xr.testing.assert_identical(there_r.results[s][k], v)


def logged_failure(session, config, *, log: str):
    """Upstream step that appends the subject to the file ``log`` (any process) and fails for FAILING."""
    with open(log, "a", encoding="utf-8") as f:
        f.write(session.subject + "\n")
    if session.subject == FAILING:
        raise ValueError("planted logged failure")
    return counted_upstream(session, config)


def test_failures_are_remembered_only_inside_remember_failures(bids, tmp_path):
    """``mmme-neuro run``'s first level, then each script's own run: a failing subject is computed once."""
    cfg = load_config(None)
    subjects = ["sub-01", FAILING]
    log = tmp_path / "attempts.txt"
    up = {"base": pl.Upstream(logged_failure, "m-up", {"log": str(log)})}
    steps = [pl.Step(downstream, "m-a", cfg, upstream=up), pl.Step(toy_first_level, "m-toy", cfg)]

    def attempts() -> list[str]:
        return log.read_text(encoding="utf-8").split()

    why_up = "upstream step m-up failed: ValueError: planted logged failure"
    with pl.remember_failures():
        first = pl.run_steps(steps, bids, subjects=subjects, workers=1, progress=False)
        assert attempts() == subjects
        assert first["m-a"].failed == [{"subject": FAILING, "reason": why_up}]
        # later runs in the block (nested blocks share it): a new step reading the failed upstream step, on 2 dask
        # workers; the failures come back with the same reasons, nothing of the failing subject is computed again
        with pl.remember_failures():
            again = pl.run_steps(steps + [pl.Step(downstream, "m-b", cfg, {"scale": 2.0}, up)], bids, subjects=subjects,
                                 workers=2, progress=False)  # fmt: skip
        assert attempts() == subjects
        for name in ("m-a", "m-toy"):
            assert again[name].failed == first[name].failed
            st = again[name].status.set_index("subject")
            assert st.loc[FAILING, "seconds"] == 0.0 and st.loc["sub-01", "status"] == "cached"
        assert again["m-b"].failed == [{"subject": FAILING, "reason": why_up}]
        assert sorted(again["m-b"].results) == ["sub-01"]
        # cache=False retries them
        pl.run_steps(steps[:1], bids, subjects=[FAILING], workers=1, cache=False, progress=False)
        assert attempts() == subjects + [FAILING]
    # outside the block a re-run tries the failing subject again (its cause may have been fixed)
    out = pl.run_steps(steps[:1], bids, subjects=subjects, workers=1, progress=False)
    assert attempts() == subjects + [FAILING, FAILING] and out["m-a"].failed == first["m-a"].failed


def test_run_steps_rejects_ambiguous_graphs(bids):
    cfg = load_config(None)
    up1 = {"base": pl.Upstream(counted_upstream, "x-up", {"offset": 1.0})}
    up2 = {"base": pl.Upstream(counted_upstream, "x-up", {"offset": 2.0})}
    with pytest.raises(ValueError, match=r"'x-up' is defined twice .* upstream of 'x-a' and the upstream of 'x-b'"):
        pl.run_steps([pl.Step(downstream, "x-a", cfg, upstream=up1), pl.Step(downstream, "x-b", cfg, upstream=up2)], bids)
    with pytest.raises(ValueError, match="listed twice"):
        pl.run_steps([pl.Step(toy_first_level, "x", cfg), pl.Step(toy_first_level, "x", cfg)], bids)
    with pytest.raises(ValueError, match="no step"):
        pl.run_steps([], bids)
    with pytest.raises(ValueError, match="directory name"):
        pl.Step(toy_first_level, "a/b", cfg)
    with pytest.raises(TypeError, match="Config"):
        pl.Step(toy_first_level, "x", {"seed": 1})
    with pytest.raises(ValueError, match="also parameters"):
        pl.Step(downstream, "x", cfg, {"base": 1}, up1)
    with pytest.raises(TypeError, match=r"upstream values must be .*Upstream, got \{'base': 'function'\}"):
        pl.Step(downstream, "x", cfg, upstream={"base": counted_upstream})
    # an upstream step also listed as a step runs once, and has its own report (not charged to its reader)
    CALLS.clear()
    reps = pl.run_steps([pl.Step(slow_upstream, "y-up", cfg, {"sleep_s": 0.5}),
                         pl.Step(downstream, "y-a", cfg, upstream={"base": pl.Upstream(slow_upstream, "y-up", {"sleep_s": 0.5})})],
                        bids, subjects=["sub-01"], workers=1, progress=False)  # fmt: skip
    assert CALLS == ["sub-01"] and reps["y-up"].status["status"].tolist() == ["computed"]
    assert reps["y-up"].status["seconds"].iloc[0] >= 0.5 > reps["y-a"].status["upstream_s"].iloc[0]


def test_dask_workers_give_the_in_process_results(bids):
    cfg = load_config(None)
    local = pl.run_subjects(toy_first_level, bids, cfg, stage="toy-a", progress=False)
    dask = pl.run_subjects(toy_first_level, bids, cfg, stage="toy-b", workers=2, progress=False)
    assert dask.status.set_index("subject")["status"].to_dict() == local.status.set_index("subject")["status"].to_dict()
    for s in local.results:
        pd.testing.assert_frame_equal(dask.results[s]["table"], local.results[s]["table"])
    with pytest.raises(ValueError, match="workers"):
        pl.run_subjects(toy_first_level, bids, cfg, stage="toy", workers=0)


def test_results_do_not_depend_on_where_they_are_computed(bids):
    """ICA-cleaned ERPs: in-process (the machine's BLAS threads) == 2 dask workers (one thread each)."""
    from mmme_neuro import erp

    cfg = load_config(None)  # ICA on: an iterative fit, sensitive to the summation order of BLAS
    subjects = ["sub-01", "sub-02"]
    here = pl.run_subjects(erp.first_level, bids, cfg, stage="det-a", subjects=subjects, progress=False)
    there = pl.run_subjects(erp.first_level, bids, cfg, stage="det-b", subjects=subjects, workers=2, progress=False)
    for s in subjects:
        xr.testing.assert_identical(here.results[s]["evoked"], there.results[s]["evoked"])
        pd.testing.assert_frame_equal(here.results[s]["epochs"], there.results[s]["epochs"])


def test_mmme_neuro_run_isolates_a_failing_analysis(bids, tmp_path, monkeypatch):
    import analyses.physio_concordance as phys
    from mmme_neuro.cli import main

    def crash(argv=None):
        raise RuntimeError("planted crash")

    monkeypatch.setattr(phys, "main", crash)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[preprocessing]\nica = false\n\n[stats]\nn_permutations = 100\n", encoding="utf-8")
    out = tmp_path / "out"
    code = main(["run", "--bids-root", str(bids), "--config", str(cfg), "--analyses", "physio,erp",
                 "--workers", "2", "--out", str(out)])  # fmt: skip
    assert code == 1  # one analysis failed
    summary = json.loads((out / "run_summary.json").read_text(encoding="utf-8"))
    rows = {r["analysis"]: r for r in summary["analyses"]}
    assert list(rows) == ["erp_me_vs_mae", "physio_concordance"]  # data-flow order, not the given order
    assert rows["physio_concordance"]["status"] == "failed" and rows["physio_concordance"]["exit_code"] == 2
    erp = rows["erp_me_vs_mae"]
    assert erp["status"] == "ok" and erp["n_subjects"] == 8 and erp["epochs_per_condition"]["ME"] > 0
    assert (out / "erp_me_vs_mae" / "components.csv").is_file() and (out / "run_summary.md").is_file()
    # time per stage: the per-subject step (computed by 2 workers) and the group level
    assert erp["stages"]["first_level_computed"] + erp["stages"]["first_level_cached"] == 8
    assert erp["stages"]["first_level_s"] > 0 and erp["stages"]["group_s"] > 0
    assert "computed" in (out / "run_summary.md").read_text(encoding="utf-8")
    # both analyses' per-subject steps ran first, as one task graph; the scripts found them cached
    assert summary["first_level"]["status"] == "ok"
    assert summary["first_level"]["stages"]["erp"] == {"computed": 8, "cached": 0, "failed": 0}
    assert summary["first_level"]["stages"]["physio"]["computed"] == 8 and erp["stages"]["first_level_cached"] == 8
    assert "as one task graph" in (out / "run_summary.md").read_text(encoding="utf-8")
    # the per-subject results, and the preprocessing pass they share, were computed by the workers into the cache
    levels = bids / "derivatives" / "mmme-neuro" / "first-level"
    assert len(sorted((levels / "erp").glob("sub-*/manifest.json"))) == 8
    assert len(sorted((levels / "clean-epochs").glob("sub-*/epochs-epo.fif"))) == 8


def test_mmme_neuro_run_computes_a_failing_subject_once(_ci_bids_pristine, tmp_path_factory, tmp_path, monkeypatch,
                                                        capsys):  # fmt: skip
    """The scripts run after the first level find its failures as they find its results: not computed again."""
    import collections

    import mmme_neuro.dataset as ds
    from mmme_neuro.cli import main

    bids = convert_ci(_ci_bids_pristine, tmp_path_factory, "run_fail_bids")
    fdt = next((bids / FAILING / "eeg").glob("*_eeg.fdt"))
    with open(fdt, "r+b") as f:  # a truncated recording: MNE cannot read it
        f.truncate(fdt.stat().st_size // 2)
    opened: collections.Counter[str] = collections.Counter()
    real = ds.iter_sessions

    def counted(root, subjects=None, *args, **kwargs):
        opened.update(subjects or [])
        return real(root, subjects, *args, **kwargs)

    monkeypatch.setattr(ds, "iter_sessions", counted)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[preprocessing]\nica = false\n\n[stats]\nn_permutations = 100\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", "--bids-root", str(bids), "--config", str(cfg), "--analyses", "erp", "--workers", "1",
                 "--out", str(out)]) == 1  # fmt: skip  # no failed analysis, one failed subject
    assert f"failed: {FAILING} in erp_me_vs_mae: upstream step clean-epochs failed" in capsys.readouterr().err
    # first level: the shared preprocessing and the ERP step of each subject; the script found them all
    assert opened[FAILING] == 1 and all(n == 2 for s, n in opened.items() if s != FAILING), opened
    summary = json.loads((out / "run_summary.json").read_text(encoding="utf-8"))
    assert summary["first_level"]["stages"]["erp"] == {"computed": 7, "cached": 0, "failed": 1}
    erp = summary["analyses"][0]
    assert erp["n_subjects"] == 7 and erp["stages"]["first_level_cached"] == 7
    (failed,) = erp["failed_subjects"]
    assert failed["subject"] == FAILING and failed["reason"].startswith("upstream step clean-epochs failed: EEGReadError: ")
    assert f"{fdt.name} truncated" in failed["reason"]  # the file is named, not MNE's error at read time


def test_first_level_phase_reports_what_it_could_not_run(tmp_path, caplog):
    """``mmme-neuro run``'s first level as one graph: skipped without per-subject steps, a bad option named and left
    to the scripts (which report it themselves)."""
    from analyses.__main__ import _markdown, first_level

    assert first_level(["dataset"], [])["status"] == "none"
    bad = tmp_path / "missing.toml"
    with caplog.at_level("WARNING", logger="analyses"):
        row = first_level(["erp", "physio"], ["--config", str(bad)])
    assert row["status"] == "failed" and "missing.toml" in row["error"] and row["stages"] == {}
    assert "not run as one task graph" in caplog.text and "analyses.erp_me_vs_mae" in caplog.text
    assert "each analysis ran its own" in _markdown([], 1.0, row)


def test_a_new_stage_reuses_the_file_hashes_of_another(bids, monkeypatch):
    """The input files of a subject are hashed once for the study, not once per stage."""
    cfg = load_config(None)
    pl.run_subjects(toy_first_level, bids, cfg, stage="toy-h1", subjects=["sub-01"], progress=False)
    hashed: list[str] = []
    real_sha = pl.sha256_file
    monkeypatch.setattr(pl, "sha256_file", lambda p: hashed.append(Path(p).name) or real_sha(p))
    new = pl.run_subjects(toy_first_level, bids, cfg, stage="toy-h2", subjects=["sub-01"], progress=False)
    assert new.status["status"].tolist() == ["computed"] and hashed == []
    # an edited file is hashed again (size or modification time changed), and only that one
    side = sorted((bids / "sub-01").rglob("*_eeg.json"))[0]
    side.write_text(side.read_text(encoding="utf-8").replace("}", ', "Note": "again"}', 1), encoding="utf-8")
    pl.run_subjects(toy_first_level, bids, cfg, stage="toy-h3", subjects=["sub-01"], progress=False)
    assert hashed == [side.name]


def _worker_environ(modules: list[str]) -> tuple[str | None, str | None, list[str]]:
    import sys  # nothing imported here: the worker has what its start-up imported (and this test module)

    return (os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("OMP_NUM_THREADS"),
            [m for m in ["mmme_neuro.worker", *modules] if m not in sys.modules])  # fmt: skip


def test_local_cluster_workers_do_not_trim_malloc():
    """dask's MALLOC_TRIM_THRESHOLD_ (2x slower steps on workers, see pipeline.local_cluster) is not passed on;
    its other worker settings (one OpenMP thread) are; the analysis modules are imported when the worker starts."""
    from distributed import Client

    from mmme_neuro.pipeline import local_cluster

    with local_cluster(1) as cluster, Client(cluster) as client:
        from mmme_neuro.worker import MODULES

        assert client.submit(_worker_environ, list(MODULES), pure=False).result() == (None, "1", [])


def test_first_run_reuses_the_hashes_the_conversion_recorded(bids, monkeypatch):
    """The conversion records the SHA-256 of every BIDS file it wrote (the .fdt's is its input's: a byte copy);
    they are right, and a stage's first run then reads no subject file to key its cache."""
    import shutil

    subjects = sorted(p.name for p in bids.glob("sub-*"))
    subjects = [s for s in subjects if s not in ("sub-01", "sub-02")]  # other tests edit their sidecars
    fdt = 0
    for s in subjects:
        record = json.loads((bids / "derivatives" / "mmme-neuro" / "conversion" / f"{s}.json").read_text(encoding="utf-8"))
        for rel, size, mtime, sha in record["bids_files"]:
            assert [size, mtime] == list(pl.stat_key(bids / rel)) and sha == pl.sha256_file(bids / rel), rel
            fdt += rel.endswith(".fdt")
    assert fdt > 0  # EEGLAB subjects: the hash taken over from the input
    shutil.rmtree(bids / "derivatives" / "mmme-neuro" / "first-level" / ".file-hashes", ignore_errors=True)
    hashed: list[str] = []
    real_sha = pl.sha256_file
    monkeypatch.setattr(pl, "sha256_file", lambda p: hashed.append(Path(p).relative_to(bids).as_posix()) or real_sha(p))
    rep = pl.run_subjects(scaled_first_level, bids, load_config(None), stage="toy-fresh", subjects=subjects, progress=False)
    assert (rep.status["status"] == "computed").all()
    assert [h for h in hashed if h.startswith("sub-")] == [], hashed


def _tree_state(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file and directory under ``root``: size, modification time and SHA-256 (directories: '')."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.stat()
        out[p.relative_to(root).as_posix()] = (st.st_size if p.is_file() else 0, st.st_mtime_ns,
                                               pl.sha256_file(p) if p.is_file() else "")  # fmt: skip
    return out


def _read_only(root: Path) -> None:
    """Remove the write permission of every file and directory under ``root`` (no effect on root's own writes)."""
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode & ~0o222)


def _writable(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o200)


def test_read_only_study_is_analysed_with_the_derivatives_elsewhere(_ci_bids_pristine, tmp_path_factory, tmp_path):
    """Issue 24: ``run`` wrote its cache inside the BIDS root, so shared read-only data could not be analysed.
    With ``paths.derivatives_dir`` nothing under the BIDS root is created or modified (checked by the files'
    sizes, modification times and hashes: the tests may run as root, whom chmod does not stop)."""
    from mmme_neuro.cli import main

    bids = convert_ci(_ci_bids_pristine, tmp_path_factory, "read_only_bids")
    deriv = tmp_path / "my-derivatives"
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f"[paths]\nderivatives_dir = '{deriv.as_posix()}'\n\n[preprocessing]\nica = false\n\n"
                   "[stats]\nn_permutations = 100\n", encoding="utf-8")  # fmt: skip
    before = _tree_state(bids)
    _read_only(bids)
    try:
        out = tmp_path / "out"
        code = main(["run", "--bids-root", str(bids), "--config", str(cfg), "--analyses", "physio", "--workers", "1",
                     "--out", str(out)])  # fmt: skip
        assert code == 0
        assert _tree_state(bids) == before
        assert len(sorted((deriv / "first-level" / "physio").glob("sub-*/manifest.json"))) == 8
        assert len(sorted((deriv / "first-level" / ".file-hashes").glob("sub-*.json"))) == 8
        # the cache elsewhere is a cache: a second run reads it
        again = pl.run_steps([__import__("analyses.physio_concordance").physio_concordance.first_level_step(
            load_config(cfg))], bids, progress=False)["physio"]  # fmt: skip
        assert again.status["status"].eq("cached").all()
    finally:
        _writable(bids)
    # without derivatives_dir and a BIDS root that cannot be written: one clear error naming both ways out
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the derivatives directory would be", encoding="utf-8")
    with pytest.raises(PermissionError, match=r"first-level cache in .*blocked.*paths.derivatives_dir.*run.cache"):
        pl.run_subjects(toy_first_level, bids, load_config(None, paths={"derivatives_dir": str(blocked)}),
                        stage="toy", subjects=["sub-01"], progress=False)  # fmt: skip


def test_no_cache_writes_no_cache(bids, tmp_path, monkeypatch):
    """Issue 24: ``run.cache = false`` still wrote the cache (into the BIDS root). Now nothing is written: not in the
    BIDS root, not in derivatives_dir, and the temporary directory the results pass through is removed."""
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    deriv = tmp_path / "deriv"
    before = _tree_state(bids)
    CALLS.clear()
    for where, workers in (({}, 1), ({"derivatives_dir": str(deriv)}, 1), ({"derivatives_dir": str(deriv)}, 2)):
        cfg = load_config(None, run={"cache": False}, paths=where)
        reps = pl.run_steps(_graph(cfg, "nc")[:3], bids, subjects=["sub-01", "sub-02"], workers=workers, progress=False)
        assert reps["nc-a"].status["status"].eq("computed").all() and sorted(reps["nc-b"].results) == ["sub-01", "sub-02"]
        assert reps["nc-b"].results["sub-01"]["t"]["first"].iloc[0] == 2 * reps["nc-a"].results["sub-01"]["t"]["first"].iloc[0]
    assert len(CALLS) == 4  # in-process runs: the shared upstream step once per subject and run
    after = _tree_state(bids)
    assert {k: v for k, v in after.items() if before.get(k) != v} == {} and set(before) == set(after)
    assert not deriv.exists() and list(scratch.glob("mmme-neuro-*")) == []  # (dask keeps its own scratch space)
