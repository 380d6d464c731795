"""Study-level reliability of a BIDS conversion (issue 24): the lock, the study manifest, exit codes, clear errors.

Every test works on copies of one small converted study (3 subjects of the `ci` scale); the
hostile conditions (a killed conversion, a second conversion, a full disk, a read-only root)
are simulated by monkeypatching or a helper process, so the tests also hold when run as root.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mmme_neuro import bids
from mmme_neuro.bids import convert_study
from mmme_neuro.cli import MAX_EXIT_CODE, main
from mmme_neuro.io.coding import read_coding
from mmme_neuro.manifest import LOCK_FILE, MANIFEST, StudyStateError, check_study
from mmme_neuro.simulate.study import simulate_study

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return simulate_study(tmp_path_factory.mktemp("integrity") / "study", scale="ci", seed=7, n_subjects=3,
                          progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def pristine(study, tmp_path_factory) -> Path:
    """The study converted once (QA reports included, as the CLI writes them); only ever copied."""
    root = tmp_path_factory.mktemp("integrity-bids") / "bids"
    assert convert_study(study.raw_dir, root, progress=False).accounting_ok
    return root


def _copies(study, pristine: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A raw directory and a converted root of our own (copies keep the modification times: nothing to redo)."""
    raw, root = tmp_path / "raw", tmp_path / "bids"
    shutil.copytree(study.raw_dir, raw)
    shutil.copytree(pristine, root)
    return raw, root


def _drop_last_coding_row(coding_file: Path) -> None:
    from openpyxl import load_workbook

    wb = load_workbook(coding_file)
    ws = wb.active
    ws.delete_rows(ws.max_row)
    wb.save(coding_file)


def _one_line_error(err: str, *needles: str) -> str:
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    for n in needles:
        assert n in last, (n, last)
    return last


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


# ----------------------------------------------------------------------------- A: manifest


def test_complete_conversion_writes_a_manifest_that_checks(pristine, study):
    manifest = check_study(pristine)
    assert manifest["status"] == "complete" and sorted(manifest["subjects"]) == ["sub-01", "sub-02", "sub-03"]
    assert manifest["coding_sha256"] == read_coding(study.coding_file).sha256
    saved = json.loads((pristine / "derivatives/mmme-neuro/conversion_summary.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["expressions_in_events"] == saved["counts"]["expressions_in_events"]
    assert all(e["inputs"] and e["record_sha256"] for e in manifest["subjects"].values())
    assert not (pristine / LOCK_FILE).exists()  # released


def test_killed_reconversion_after_the_coding_file_changed_is_refused_then_repaired(
        study, pristine, tmp_path, monkeypatch, capsys):  # fmt: skip
    """Killed between two subjects of a re-conversion: old and new subjects mixed, a stale summary.
    Before: `run` analysed it ("ok"). Now: refused until convert is re-run, which ends consistent."""
    raw, root = _copies(study, pristine, tmp_path)
    _drop_last_coding_row(raw / study.coding_file.name)  # every subject's fingerprint changes
    real = bids.convert_session

    def dying(session, stage_root, *, task="mmme", **kwargs):
        if session.subject == "sub-02":
            raise KeyboardInterrupt  # the process is killed while sub-02 is written
        return real(session, stage_root, task=task, **kwargs)

    monkeypatch.setattr(bids, "convert_session", dying)
    with pytest.raises(KeyboardInterrupt):
        convert_study(raw, root, progress=False)
    monkeypatch.setattr(bids, "convert_session", real)
    assert (root / "sub-02").is_dir() and (root / "sub-03").is_dir()  # old subjects next to the new sub-01
    with pytest.raises(StudyStateError, match="did not finish.*re-run mmme-neuro convert"):
        check_study(root)

    # mmme-neuro run refuses before analysing anything
    out = tmp_path / "out"
    assert main(["run", "--bids-root", str(root), "--analyses", "erp", "--out", str(out)]) == 1
    _one_line_error(capsys.readouterr().err, str(root), "did not finish", "re-run mmme-neuro convert")
    assert not (out / "run_summary.json").exists()
    # so does the analyses' entry point, and a script run alone
    from analyses.erp_me_vs_mae import main as erp_main
    from mmme_neuro.config import load_config
    from mmme_neuro.dataset import prepare_bids

    with pytest.raises(StudyStateError, match="did not finish"):
        prepare_bids(load_config(None, paths={"bids_root": str(root)}), progress=False)
    assert erp_main(["--bids-root", str(root), "--out", str(tmp_path / "erp")]) == 1

    # re-running the conversion ends in a consistent study
    assert main(["convert", str(raw), str(root)]) == 0
    manifest = check_study(root)
    coding = read_coding(raw / study.coding_file.name)
    assert manifest["coding_sha256"] == coding.sha256 != read_coding(study.coding_file).sha256
    saved = json.loads((root / "derivatives/mmme-neuro/conversion_summary.json").read_text(encoding="utf-8"))
    assert saved["coding_sha256"] == coding.sha256 and saved["accounting"]["ok"]
    assert saved["counts"]["coding_rows"] == len(coding.report)
    for sub in ("sub-01", "sub-02", "sub-03"):
        rec = json.loads(bids.conversion_record(root, sub).read_text(encoding="utf-8"))
        assert rec["fingerprint"]["coding_sha256"] == coding.sha256, sub


def test_a_study_that_no_longer_matches_its_manifest_is_refused(study, pristine, tmp_path, capsys):
    raw, root = _copies(study, pristine, tmp_path)
    check_study(root)
    shutil.copytree(root / "sub-01", root / "sub-09")  # a subject the conversion did not write
    with pytest.raises(StudyStateError, match="sub-09 in the root but not in its last conversion"):
        check_study(root)
    shutil.rmtree(root / "sub-09")
    summary = root / "derivatives/mmme-neuro/conversion_summary.json"
    summary.write_text(summary.read_text(encoding="utf-8").replace('"ok": true', '"ok": false'), encoding="utf-8")
    with pytest.raises(StudyStateError, match="conversion_summary.json does not match the manifest"):
        check_study(root)
    (root / MANIFEST).unlink()
    with pytest.raises(StudyStateError, match="no conversion manifest"):
        check_study(root)
    assert main(["convert", str(raw), str(root)]) == 0  # a re-run (nothing to convert) repairs it
    check_study(root)

    # a subject whose recording left the raw directory: its coded rows would count twice (events + no_recording)
    name = next(n for n, p in read_coding(study.coding_file).mapping.items() if p == "sub-03")
    for p in raw.glob(f"{name}_*"):
        p.unlink()
    assert main(["convert", str(raw), str(root)]) == 2
    _one_line_error(capsys.readouterr().err, "stale: sub-03", str(root / "sub-03"))
    with pytest.raises(StudyStateError, match="sub-03 in the root but not in its last conversion"):
        check_study(root)
    shutil.rmtree(root / "sub-03")
    assert main(["convert", str(raw), str(root)]) == 0
    assert sorted(check_study(root)["subjects"]) == ["sub-01", "sub-02"]


# ----------------------------------------------------------------------------- A: lock


def test_second_conversion_fails_at_once_while_one_holds_the_lock(study, pristine, tmp_path, capsys):
    raw, root = _copies(study, pristine, tmp_path)
    manifest = (root / MANIFEST).read_bytes()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom mmme_neuro.manifest import study_lock\n"
         "with study_lock(sys.argv[1]):\n    print('locked', flush=True)\n    sys.stdin.read()\n", str(root)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env(), cwd=REPO,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["convert", str(raw), str(root)]) == 1
        _one_line_error(capsys.readouterr().err, f"another conversion (pid {holder.pid}, started ", str(root))
        assert (root / MANIFEST).read_bytes() == manifest  # the refused conversion touched nothing
        check_study(root)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert not (root / LOCK_FILE).exists()


def test_stale_lock_of_a_dead_process_is_taken_over(study, pristine, tmp_path, caplog):
    raw, root = _copies(study, pristine, tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)  # fmt: skip
    pid = int(dead.stdout)
    (root / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": socket.gethostname(),
                                              "started": "2024-01-01T00:00:00+00:00"}), encoding="utf-8")  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="mmme_neuro"):
        summary = convert_study(raw, root, progress=False)
    assert len(summary.skipped) == 3
    assert any("stale lock" in r.getMessage() and f"pid {pid}" in r.getMessage() for r in caplog.records)
    assert not (root / LOCK_FILE).exists()
    check_study(root)


def test_two_real_conversions_of_one_root(study, pristine, tmp_path, capsys):
    """Before: a traceback (trash-sub-03) in one and a false success with sub-03 incomplete in the other."""
    raw, root = _copies(study, pristine, tmp_path)
    first = subprocess.Popen([sys.executable, "-m", "mmme_neuro.cli", "convert", str(raw), str(root), "--overwrite"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO)  # fmt: skip
    try:
        import time

        t0 = time.monotonic()
        while not (root / LOCK_FILE).exists() and first.poll() is None and time.monotonic() - t0 < 120:
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()
        assert main(["convert", str(raw), str(root)]) == 1
        _one_line_error(capsys.readouterr().err, f"another conversion (pid {first.pid}", str(root))
    finally:
        out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert "converted 3, skipped 0, failed 0" in out and "Traceback" not in err
    check_study(root)


# ----------------------------------------------------------------------------- B: exit codes


def test_convert_exits_non_zero_when_every_subject_fails_on_a_full_disk(study, pristine, tmp_path, monkeypatch,
                                                                       capsys):  # fmt: skip
    raw, root = _copies(study, pristine, tmp_path)

    def full(session, stage_root, *, task="mmme", **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(stage_root / session.subject))

    monkeypatch.setattr(bids, "convert_session", full)
    assert main(["convert", str(raw), str(root), "--overwrite"]) == 2
    cap = capsys.readouterr()
    assert "converted 0, skipped 0, failed 3" in cap.out
    lines = [ln for ln in cap.err.splitlines() if ln.startswith("failed: ")]
    assert [ln.split()[1] for ln in lines] == ["sub-01", "sub-02", "sub-03"]
    assert all("No space left on device" in ln for ln in lines) and "Traceback" not in cap.err


def test_run_exit_code_counts_failed_subjects(monkeypatch, tmp_path, capsys):
    import analyses.__main__ as runner

    rows = [{"analysis": "erp_me_vs_mae", "status": "ok", "exit_code": 0, "seconds": 1.0,
             "failed_subjects": [{"subject": "sub-02", "reason": "EEGReadError: x.fdt\ntruncated"},
                                 {"subject": "sub-05", "reason": "boom"}]},
            {"analysis": "tfr_me_vs_mae", "status": "ok", "exit_code": 0, "seconds": 1.0,
             "failed_subjects": [{"subject": "sub-02", "reason": "upstream step clean-epochs failed"}]}]  # fmt: skip
    monkeypatch.setattr(runner, "run_study", lambda names, args, out_root=None: (0, rows))
    assert main(["run", "--analyses", "erp,tfr", "--out", str(tmp_path)]) == 2  # two subjects, each counted once
    err = capsys.readouterr().err
    assert "failed: sub-02 in erp_me_vs_mae: EEGReadError: x.fdt truncated" in err.splitlines()
    assert "failed: sub-05 in erp_me_vs_mae: boom" in err.splitlines()
    failed = [{"analysis": "network_nodal_efficiency", "status": "failed", "exit_code": 1, "seconds": 0.1,
               "error": "no subject left"}]  # fmt: skip
    monkeypatch.setattr(runner, "run_study", lambda names, args, out_root=None: (1, rows + failed))
    assert main(["run", "--out", str(tmp_path)]) == 3
    assert "failed: analysis network_nodal_efficiency (exit code 1): no subject left" in capsys.readouterr().err
    many = [{**rows[0], "failed_subjects": [{"subject": f"sub-{i:03d}", "reason": "x"} for i in range(300)]}]
    monkeypatch.setattr(runner, "run_study", lambda names, args, out_root=None: (0, many))
    assert main(["run", "--out", str(tmp_path)]) == MAX_EXIT_CODE  # 300 would wrap around to 44


# ----------------------------------------------------------------------------- C: clear errors


def test_output_path_that_is_a_file_or_under_a_file(study, tmp_path, capsys):
    target = tmp_path / "out.txt"
    target.write_text("not a directory\n", encoding="utf-8")
    assert main(["convert", str(study.raw_dir), str(target)]) == 1
    _one_line_error(capsys.readouterr().err, str(target), "is not a directory")
    assert main(["convert", str(study.raw_dir), str(target / "bids")]) == 1
    _one_line_error(capsys.readouterr().err, str(target / "bids"), "a parent of it is a file")
    assert target.read_text(encoding="utf-8") == "not a directory\n"


def _deny_writes_under(monkeypatch, top: Path) -> None:
    """Simulate a read-only directory (chmod does not stop root): creating anything under ``top`` fails."""
    real_open, real_mkdir = os.open, os.mkdir
    top = str(top)

    def inside(path) -> bool:
        p = os.fspath(path)
        return p == top or p.startswith(top + os.sep)

    def guarded_open(path, flags, *args, **kwargs):
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    def guarded_mkdir(path, *args, **kwargs):
        if inside(path):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)
    monkeypatch.setattr(os, "mkdir", guarded_mkdir)


def test_read_only_output_directory_or_parent(study, pristine, tmp_path, monkeypatch, capsys):
    raw, root = _copies(study, pristine, tmp_path)
    manifest = (root / MANIFEST).read_bytes()
    with monkeypatch.context() as m:
        _deny_writes_under(m, root)
        assert main(["convert", str(raw), str(root)]) == 1
    _one_line_error(capsys.readouterr().err, str(root), "Permission denied")
    assert (root / MANIFEST).read_bytes() == manifest
    parent = tmp_path / "locked"
    parent.mkdir()
    with monkeypatch.context() as m:
        _deny_writes_under(m, parent)
        assert main(["convert", str(raw), str(parent / "bids")]) == 1
    _one_line_error(capsys.readouterr().err, "cannot create the BIDS root", str(parent / "bids"), "Permission denied")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_output_directory_for_real(study, tmp_path, capsys):
    root = tmp_path / "bids"
    root.mkdir()
    root.chmod(0o555)
    try:
        assert main(["convert", str(study.raw_dir), str(root)]) == 1
        _one_line_error(capsys.readouterr().err, str(root), "Permission denied")
    finally:
        root.chmod(0o755)


def test_non_utf8_toml(study, tmp_path, capsys):
    cfg = tmp_path / "latin1.toml"
    cfg.write_bytes("# réglages\n[coding]\n".encode("latin-1"))
    assert main(["config", "check", str(cfg)]) == 1
    _one_line_error(capsys.readouterr().err, str(cfg), "not UTF-8")
    assert main(["convert", str(study.raw_dir), str(tmp_path / "bids"), "--config", str(cfg)]) == 1
    _one_line_error(capsys.readouterr().err, str(cfg), "not UTF-8")
    assert not (tmp_path / "bids").exists()
    assert main(["coding", str(study.coding_file), "--config", str(cfg)]) == 1
    _one_line_error(capsys.readouterr().err, str(cfg), "not UTF-8")


def test_write_failure_in_the_middle_of_an_overwrite_rerun(study, pristine, tmp_path, monkeypatch, capsys):
    raw, root = _copies(study, pristine, tmp_path)
    real = bids._swap_into_place

    def full_disk(staged, final, trash):
        if final.name == "sub-02":
            raise OSError(errno.ENOSPC, "No space left on device", str(final))
        return real(staged, final, trash)

    monkeypatch.setattr(bids, "_swap_into_place", full_disk)
    assert main(["convert", str(raw), str(root), "--overwrite"]) == 1
    _one_line_error(capsys.readouterr().err, f"the conversion of {root} stopped", str(root / "sub-02"),
                    "No space left on device", "re-run mmme-neuro convert")  # fmt: skip
    with pytest.raises(StudyStateError, match="did not finish"):
        check_study(root)
    assert not (root / LOCK_FILE).exists()
    monkeypatch.setattr(bids, "_swap_into_place", real)
    assert main(["convert", str(raw), str(root)]) == 0
    out = capsys.readouterr().out
    assert "converted 1, skipped 2, failed 0" in out  # sub-01 was redone before the failure, sub-03 never touched
    check_study(root)


def test_lock_without_file_locks_falls_back_to_exclusive_creation(tmp_path, monkeypatch, caplog):
    """On a file system without flock (ENOLCK), the lock file is created with O_EXCL; a live holder blocks."""
    import fcntl

    from mmme_neuro.manifest import StudyLockError, lock_holder, study_lock

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with study_lock(tmp_path) as info:
        assert lock_holder(tmp_path)["pid"] == info["pid"] == os.getpid()
        with pytest.raises(StudyLockError, match=f"another conversion \\(pid {os.getpid()}, started "):
            with study_lock(tmp_path):
                pass
    assert not (tmp_path / LOCK_FILE).exists()
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname()}),
                                      encoding="utf-8")  # fmt: skip  # above the default pid_max: not running
    with caplog.at_level(logging.WARNING, logger="mmme_neuro"), study_lock(tmp_path):
        pass
    assert any("stale lock" in r.getMessage() for r in caplog.records)
