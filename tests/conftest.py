"""Shared fixtures: synthetic studies generated once per test session (on disk, reused)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

SHARED = Path(__file__).resolve().parents[2] / "shared"
if not SHARED.is_dir():  # CI clones main next to shared/
    SHARED = Path(os.environ.get("MMME_SHARED", "/work/shared"))
REAL_CODING_FILE = SHARED / "data" / "mmme" / "coding_file.xlsx"
EEG_FORMATS = SHARED / "data" / "eeg_formats"


def _study(tmp_path_factory, name: str, **kwargs):
    from mmme_neuro.simulate.study import simulate_study

    root = tmp_path_factory.getbasetemp() / name
    if (root / "COMPLETE").is_file():
        from mmme_neuro.simulate.study import StudyPaths

        return StudyPaths.at(root)
    return simulate_study(root, progress=False, **kwargs)


@pytest.fixture(scope="session")
def ci_study(tmp_path_factory):
    """The `ci` synthetic study with planted effects (seed 42)."""
    return _study(tmp_path_factory, "ci-seed42", scale="ci", seed=42)


@pytest.fixture(scope="session")
def ci_null_study(tmp_path_factory):
    """The `ci` synthetic null study (nothing planted, seed 42)."""
    return _study(tmp_path_factory, "ci-seed42-null", scale="ci", seed=42, null=True)


def convert_ci(study, tmp_path_factory, name: str) -> Path:
    """A fresh BIDS conversion of a synthetic study under ``<tmp>/<name>/bids`` (every expression accounted for)."""
    from mmme_neuro.bids import convert_study

    root = tmp_path_factory.mktemp(name) / "bids"
    assert convert_study(study.raw_dir, root, progress=False).accounting_ok
    return root


def require_shared(path: Path) -> Path:
    """Return ``path`` (under shared/data); skip locally, fail in CI, if it is missing."""
    if not path.exists():
        msg = f"shared test data not found: {path} (set MMME_SHARED to the shared/ folder)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def real_coding_file():
    """The real MMME coding file (944 codings, 16 participants)."""
    return require_shared(REAL_CODING_FILE)


@pytest.fixture(autouse=True)
def _restore_logging_state():
    """Undo logger levels set by in-process script runs (``configure_logging``), so log
    assertions (e.g. "no name reaches the logs") never depend on test order."""
    import logging

    names = ("", "mmme_neuro", "analyses", "mne")
    levels = {n: logging.getLogger(n).level for n in names}
    yield
    for n, level in levels.items():
        logging.getLogger(n).setLevel(level)
