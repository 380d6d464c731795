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


@pytest.fixture(scope="session")
def ci7_study(tmp_path_factory):
    """A 2-subject `ci` study (seed 7): the raw recordings of the preprocessing, epoch and rejection tests."""
    return _study(tmp_path_factory, "epochs-ci-seed7", scale="ci", seed=7, n_subjects=2)


@pytest.fixture(scope="session")
def _ci_bids_pristine(ci_study, tmp_path_factory) -> Path:
    """The `ci` study converted to BIDS (QA reports included) once per test process; only ever copied.

    A conversion takes ~15 s (most of it the QA figures): the modules that need
    a converted study share this one instead of converting again.
    """
    from mmme_neuro.bids import convert_study

    base = tmp_path_factory.getbasetemp() / "ci-seed42-bids-pristine"
    if not (base / "COMPLETE").is_file():
        assert convert_study(ci_study.raw_dir, base / "bids", progress=False).accounting_ok
        (base / "COMPLETE").touch()
    return base / "bids"


@pytest.fixture(scope="session")
def ci_bids(_ci_bids_pristine, tmp_path_factory) -> Path:
    """The converted `ci` study shared by the analysis tests (session scope).

    Tests read it and write their outputs elsewhere. Its first-level cache
    (``derivatives/mmme-neuro/first-level``) is shared too: a script run with a
    configuration another test used reuses those per-subject results, as a
    user's re-run would. Tests of the conversion or of the cache itself take a
    fresh copy (:func:`convert_ci`).
    """
    return convert_ci(_ci_bids_pristine, tmp_path_factory, "ci-bids-shared")


def convert_ci(pristine: Path, tmp_path_factory, name: str) -> Path:
    """A fresh copy of the converted `ci` study (fixture ``_ci_bids_pristine``) under ``<tmp>/<name>/bids``.

    Its files and modification times are those of a conversion (``shutil.copytree``
    keeps them), with no first-level cache yet.
    """
    import shutil

    root = tmp_path_factory.mktemp(name) / "bids"
    shutil.copytree(pristine, root)
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


#: The longest test modules (wall seconds on the 2-core CI machine, stop 17: notebooks ~150, decoding ~90,
#: tfr ~50, pipeline ~47, bids ~39). ``pytest -n 2 --dist loadfile`` hands out whole modules in
#: collection order: started first, they no longer leave one worker running alone at the end.
_LONGEST_FIRST = ("test_notebooks.py", "test_decoding.py", "test_tfr.py", "test_pipeline.py", "test_bids.py")


def pytest_collection_modifyitems(config, items):
    """Collect the longest modules first (stable order otherwise)."""
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
