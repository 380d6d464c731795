"""One preprocessing pass shared by the EEG steps: its window, its cache key, and two steps reading one cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import convert_ci

from mmme_neuro import epochs as ep_mod
from mmme_neuro import erp, netanalysis, steps, tfr
from mmme_neuro import pipeline as pl
from mmme_neuro.config import Config, load_config


def test_shared_window_holds_every_analysis_window():
    cfg = Config()
    lo, hi = steps.shared_window(cfg)
    morlet, _ = tfr.padded_config(cfg, tfr.DEFAULT_FREQS, method="morlet")
    net = netanalysis.network_config(cfg)
    for c in (cfg, morlet, net):
        assert lo <= c.epochs.tmin and c.epochs.tmax <= hi
        assert steps.covers(cfg, c.epochs.tmin, c.epochs.tmax)
    assert lo in (morlet.epochs.tmin, net.epochs.tmin) and hi in (morlet.epochs.tmax, net.epochs.tmax)  # no wider
    up = steps.upstream(cfg)["clean"]
    assert up.stage == steps.CLEAN_STAGE and up.func is ep_mod.first_level
    assert up.params["extend_s"] == [round(cfg.epochs.tmin - lo, 9), round(hi - cfg.epochs.tmax, 9)]
    # a transform needing more padding than the shared epochs hold epochs on its own
    mt, _ = tfr.padded_config(cfg, tfr.DEFAULT_FREQS, method="multitaper")
    assert steps.tfr_upstream(cfg, "morlet") and (steps.tfr_upstream(cfg, "multitaper") == {}) == (
        not steps.covers(cfg, mt.epochs.tmin, mt.epochs.tmax))
    with pytest.raises(TypeError, match="Config"):
        steps.shared_window({"epochs": {}})


def test_shared_key_ignores_settings_the_pass_does_not_read():
    a = steps.upstream(load_config(None))["clean"]
    b = steps.upstream(load_config(None, stats={"n_permutations": 200}, decoding={"n_permutations": 10},
                                   network={"density_start": 0.1}))["clean"]  # fmt: skip
    assert a.config.hash() == b.config.hash() and a.params == b.params
    for changed in ({"seed": 7}, {"preprocessing": {"ica": False}}, {"rejection": {"peak_to_peak_uv": 100.0}},
                    {"epochs": {"tmax": 1.2}}):  # fmt: skip
        c = steps.upstream(load_config(None, **changed))["clean"]
        assert (c.config.hash(), c.params) != (a.config.hash(), a.params), changed


@pytest.fixture(scope="module")
def bids(_ci_bids_pristine, tmp_path_factory) -> Path:
    return convert_ci(_ci_bids_pristine, tmp_path_factory, "steps_bids")


def test_two_steps_read_one_preprocessing_pass(bids):
    cfg = load_config(None, preprocessing={"ica": False})
    subjects = ["sub-01", "sub-02"]
    up = steps.upstream(cfg)
    a = pl.run_subjects(erp.first_level, bids, cfg, stage="erp", subjects=subjects, progress=False, upstream=up)
    clean_dir = pl.cache_dir(bids, steps.CLEAN_STAGE, "sub-01")
    made = (clean_dir / "manifest.json").stat().st_mtime_ns
    b = pl.run_subjects(tfr.first_level, bids, cfg, stage="tfr-morlet", subjects=subjects, progress=False,
                        params={"method": "morlet"}, upstream=up)  # fmt: skip
    assert a.status["status"].eq("computed").all() and b.status["status"].eq("computed").all()
    assert (clean_dir / "manifest.json").stat().st_mtime_ns == made  # read, not recomputed
    # the ERP step from the shared pass equals the step given the same cropped epochs by hand
    clean = pl.load_result(clean_dir)
    direct = erp.first_level(next(iter(_sessions(bids, ["sub-01"]))), cfg, clean=clean)
    xr.testing.assert_identical(a.results["sub-01"]["evoked"], direct["evoked"])
    # every planned epoch of the shared pass is in both steps' bookkeeping, with the same fate
    for res in (a, b):
        table = res.results["sub-01"]["epochs"]
        assert table["epoch_id"].tolist() == clean["metadata"]["epoch_id"].tolist()
        assert np.array_equal(table["kept"].to_numpy(bool), clean["metadata"]["kept"].to_numpy(bool))


def _sessions(bids: Path, subjects: list[str]):
    from mmme_neuro.dataset import iter_sessions

    return iter_sessions(bids, subjects)


def test_physiology_ne_controls_are_the_eeg_ne_moments(bids):
    """Decoding joins EEG and physiology by event: NE controls must be drawn with the window of the shared pass."""
    from mmme_neuro import physio as ph

    cfg = load_config(None, preprocessing={"ica": False})
    up = steps.upstream(cfg)["clean"]
    session = next(iter(_sessions(bids, ["sub-02"])))
    clean = up.func(session, up.config, **up.params)
    md = clean["metadata"]
    ne = md[md["condition"] == "NE"]
    eeg = dict(zip(ne["matched_expression_id"], ne["landmark_s"], strict=True))

    def physio_ne(config):
        ev = ph.session_events(session, config, clips=False)
        ev = ev[ev["condition"] == "NE"]
        return dict(zip(ev["matched_expression_id"], ev["eeg_onset_s"], strict=True))

    same = physio_ne(ep_mod.planned_config(clean, cfg))
    assert same.keys() == eeg.keys() and len(eeg) > 5
    assert all(abs(same[k] - eeg[k]) <= 1 / session.raw.info["sfreq"] for k in eeg)
    # drawn with the analysis window alone, some NE controls would fall elsewhere (the test can fail)
    other = physio_ne(cfg)
    assert any(k not in other or abs(other[k] - eeg[k]) > 0.01 for k in eeg)
