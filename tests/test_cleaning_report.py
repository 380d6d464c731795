"""Preprocessing reports and MNE derivatives: files MNE opens, equal to the analyses' results; report sections."""

from __future__ import annotations

import json

import mne
import numpy as np
import pandas as pd
import pytest

from mmme_neuro import cleaning_report as cr
from mmme_neuro import erp, steps
from mmme_neuro.bids import read_bids_session
from mmme_neuro.config import load_config
from mmme_neuro.epochs import from_clean
from mmme_neuro.pipeline import (
    derivative_paths,
    derivatives_root,
    load_result,
    run_subjects,
    save_result,
)


@pytest.fixture(scope="module")
def reported(_ci_bids_pristine, tmp_path_factory):
    """One subject of the converted ci study through ``analyses.preprocessing_report`` (~15 s a subject)."""
    from conftest import convert_ci

    from analyses.preprocessing_report import main

    root = convert_ci(_ci_bids_pristine, tmp_path_factory, "cleaning-report")
    out = tmp_path_factory.mktemp("report-out")
    assert main(["--bids-root", str(root), "--out", str(out), "--subjects", "sub-02"]) == 0
    return root, out


def test_derivatives_open_in_mne_and_equal_the_analyses_results(reported):
    root, out = reported
    config = load_config(None)
    deriv = derivatives_root(root, config)
    up = steps.upstream(config)["clean"]
    clean = run_subjects(up.func, root, up.config, stage=up.stage, params=up.params, subjects=["sub-02"],
                         progress=False).results["sub-02"]  # fmt: skip
    paths = derivative_paths(deriv, "sub-02")
    # epochs: the analysis window of the shared pass, with every kept epoch's metadata
    epochs = mne.read_epochs(paths["epochs"], verbose=False)
    ref, md = from_clean(clean, config.epochs.tmin, config.epochs.tmax)
    # (MNE re-applies the stored baseline on reading: round-off)
    np.testing.assert_allclose(epochs.get_data(), ref.get_data(), rtol=1e-12, atol=1e-18)
    assert list(epochs.metadata["epoch_id"]) == list(md.loc[md["kept"], "epoch_id"])
    # the ICA: fitted on the session, its removed components those of the preprocessing report
    ica = mne.preprocessing.read_ica(paths["ica"], verbose=False)
    assert ica.exclude == clean["report"]["preprocessing"]["ica"]["excluded_components"] != []
    np.testing.assert_allclose(ica.unmixing_matrix_, clean["ica"].unmixing_matrix_, rtol=0, atol=0)
    # evoked responses: the ERP analysis' first-level averages (xarray, µV), to the single precision in which
    # MNE writes evoked data (no double-precision option)
    evokeds = mne.read_evokeds(paths["evoked"], verbose=False)
    session = read_bids_session(root, "sub-02")
    ours = erp.first_level(session, steps.step_config(config), clean=clean)["evoked"]
    assert [e.comment for e in evokeds] == [c for c in ours["condition"].values if int(ours["n_epochs"].sel(condition=c))]
    for ev in evokeds:
        back = erp.from_evoked(ev, condition=ev.comment).sel(condition=ev.comment)
        want = ours.sel(condition=ev.comment, channel=back["channel"]).values
        np.testing.assert_allclose(back.values, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
        assert ev.nave == int(ours["n_epochs"].sel(condition=ev.comment))
    # the cache stores the ICA and reads it back as it was
    back = load_result(save_result({"ica": clean["ica"]}, root.parent / "ica-cache"))["ica"]
    np.testing.assert_array_equal(back.unmixing_matrix_, clean["ica"].unmixing_matrix_)
    # the derivatives' description names this step and the configuration
    desc = json.loads((deriv / "dataset_description.json").read_text())
    run_hash = json.loads((out / "summary.json").read_text())["config_hash"]
    assert any(f"configuration {run_hash}" in g.get("Description", "") for g in desc["GeneratedBy"])


def test_subject_and_study_reports(reported):
    root, out = reported
    deriv = derivatives_root(root, load_config(None))
    page = derivative_paths(deriv, "sub-02")["report"].read_text(encoding="utf-8")
    for title in cr.SECTIONS:
        assert title in page, title
    assert page.count("data:image") >= 6  # spectra, ICA maps, drop log, EMG, evoked responses
    assert "ICA000" in page and "ocular: correlates with the EOG" in page  # the removed component and why
    study = (deriv / "report.html").read_text(encoding="utf-8")
    assert 'href="sub-02/eeg/sub-02_task-mmme_report.html"' in study and "sub-01" not in study
    table = pd.read_csv(out / "cleaning.csv")
    assert list(table["subject"]) == ["sub-02"]
    assert (table["ME_kept"] <= table["ME_planned"]).all() and (table["ica_removed"] >= 1).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["derivatives"]["files"]["sub-02"]["ica"] == "sub-02/eeg/sub-02_task-mmme_ica.fif"
    assert not [p for p in deriv.rglob("*") if p.name.startswith(".tmp-")]  # no temporary left


def test_reports_are_opt_in_and_named():
    from analyses.__main__ import ANALYSES, resolve

    assert "preprocessing_report" not in ANALYSES
    assert resolve(["report", "erp"]) == ["erp_me_vs_mae", "preprocessing_report"]
    with pytest.raises(ValueError, match="raw_psd_s must be a positive"):
        cr.subject_report({"report": {}}, load_config(None), subject="sub-01", raw_psd_s=0.0)
    with pytest.raises(ValueError, match="subject must be a BIDS pseudonym"):
        derivative_paths("d", "01")
