"""autoreject rules (mmme_neuro.rejection): planted artefacts found, clean epochs kept, wiring into make_epochs."""

from __future__ import annotations

import mne
import numpy as np
import pytest
from scipy.signal import lfilter

from mmme_neuro.config import Config
from mmme_neuro.constants import SCALP_CHANNELS
from mmme_neuro.epochs import epochs_from_session, reason_code
from mmme_neuro.ingest import find_sessions, ingest_session
from mmme_neuro.io.coding import read_coding
from mmme_neuro.montage import make_quikcap64_montage
from mmme_neuro.preprocessing import PreprocessOptions
from mmme_neuro.rejection import MIN_EPOCHS, autoreject_epochs

SF = 250.0
TMIN, TMAX = -1.0, 1.5
BROAD = (3, 11, 20, 33)  # epochs with a 500-µV artefact on 50 channels
ONE_CHANNEL = 27  # epoch with a 400-µV artefact on CZ only


def _epochs(plant: bool, seed: int = 0, n: int = 40) -> mne.EpochsArray:
    """Spatially smooth background (5 slow sources, AR(1)) + sensor noise, ~10 µV; artefacts where planted."""
    rng = np.random.default_rng(seed)
    names = [c for c in SCALP_CHANNELS if c not in ("M1", "M2")]
    info = mne.create_info(names, SF, "eeg")
    info.set_montage(make_quikcap64_montage(), on_missing="ignore")
    pos = np.array([info["chs"][i]["loc"][:3] for i in range(len(names))])
    centres = pos[rng.choice(len(names), 5, replace=False)]
    maps = np.exp(-(((pos[:, None, :] - centres[None]) ** 2).sum(-1)) / 0.004)  # channels x sources
    n_t = int(round((TMAX - TMIN) * SF)) + 1
    burn = 200  # AR(1) sources (slow, stationary), burn-in dropped
    src = lfilter([1.0], [1.0, -0.95], rng.normal(0, 1, (n, 5, n_t + burn)), axis=-1)[..., burn:] * 0.3
    x = np.einsum("cs,est->ect", maps, src) * 10e-6 + rng.normal(0, 5e-6, (n, len(names), n_t))
    x -= x.mean(axis=2, keepdims=True)
    if plant:
        t = np.arange(n_t) / SF
        bump = np.exp(-((t - 1.5) ** 2) / 0.02)  # at 0.5 s after the landmark, inside the analysis window
        for k in BROAD:
            x[k, :50] += 500e-6 * bump
        x[ONE_CHANNEL, names.index("CZ")] += 400e-6 * bump
    return mne.EpochsArray(x, info, tmin=TMIN, baseline=None, verbose=False)


@pytest.mark.parametrize("mode", ["global", "local"])
def test_planted_artefacts_are_rejected_and_clean_epochs_kept(mode):
    epochs = _epochs(plant=True)
    reasons, repaired, report = autoreject_epochs(epochs, mode, seed=1, window=(TMIN, TMAX))
    rejected = {k for k, r in enumerate(reasons) if r}
    assert set(BROAD) <= rejected, (mode, sorted(rejected))
    clean = set(range(len(epochs))) - set(BROAD) - {ONE_CHANNEL}
    assert len(rejected & clean) <= 0.1 * len(clean), (mode, sorted(rejected))
    assert report["mode"] == mode and report["n_rejected"] == len(rejected)
    if mode == "global":
        assert repaired is None
        assert all(r.startswith(f"autoreject_global>{report['threshold_uv']:.1f}uV on ") for r in reasons if r)
        assert ONE_CHANNEL in rejected  # one channel above the one threshold is enough
        assert reasons[ONE_CHANNEL].endswith(" on CZ")
        assert {reason_code(r) for r in reasons if r} == {"autoreject_global"}
    else:
        # the one bad channel is repaired, not the epoch thrown away
        assert ONE_CHANNEL not in rejected
        assert "CZ" in report["interpolated"][str(ONE_CHANNEL)]
        cz = epochs.ch_names.index("CZ")
        before = np.ptp(epochs.get_data()[ONE_CHANNEL, cz])
        after = np.ptp(repaired.get_data()[ONE_CHANNEL, cz])
        assert before > 350e-6 and after < 100e-6, (before, after)
        assert all(r.startswith(f"autoreject_local>{report['consensus']:g} of channels bad (") for r in reasons if r)
        assert {reason_code(r) for r in reasons if r} == {"autoreject_local"}
        assert len(repaired) == len(epochs)  # nothing dropped here: make_epochs records the reasons
        assert set(report["thresholds_uv"]) == set(epochs.ch_names)
        untouched = [k for k in range(len(epochs)) if str(k) not in report["interpolated"] and not reasons[k]]
        np.testing.assert_array_equal(repaired.get_data()[untouched], epochs.get_data()[untouched])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_null_epochs_are_mostly_kept_by_the_global_rule(seed):
    """No artefact: the learnt threshold rejects at most a few of the epochs (the tail of the background)."""
    epochs = _epochs(plant=False, seed=seed)
    reasons, _, report = autoreject_epochs(epochs, "global", seed=seed, window=(TMIN, TMAX))
    assert sum(bool(r) for r in reasons) <= 0.1 * len(epochs), report


def test_thresholds_learnt_on_the_analysis_window_only():
    """Artefacts in the padding (outside the window) neither reject nor move the threshold."""
    epochs = _epochs(plant=False, seed=3)
    x = epochs.get_data()
    x[BROAD, :50, :20] += 500e-6  # first 80 ms: padding before the -0.9 s window
    padded = mne.EpochsArray(x, epochs.info, tmin=TMIN, baseline=None, verbose=False)
    r_pad, _, rep_pad = autoreject_epochs(padded, "global", seed=0, window=(-0.9, TMAX))
    r_ref, _, rep_ref = autoreject_epochs(epochs, "global", seed=0, window=(-0.9, TMAX))
    assert r_pad == r_ref and rep_pad["threshold_uv"] == rep_ref["threshold_uv"]
    r_all, _, _ = autoreject_epochs(padded, "global", seed=0)  # the whole epoch: the padding counts
    assert all(r_all[k] for k in BROAD)


def test_validation_and_too_few_epochs():
    epochs = _epochs(plant=False, n=MIN_EPOCHS - 1)
    reasons, repaired, report = autoreject_epochs(epochs, "local", seed=0)
    assert reasons == [""] * len(epochs) and repaired is None and "at least 5" in report["skipped"]
    with pytest.raises(ValueError, match="'global' or 'local'"):
        autoreject_epochs(epochs, "both", seed=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not inside the epochs"):
        autoreject_epochs(_epochs(plant=False), "global", seed=0, window=(-2.0, 1.0))
    with pytest.raises(ValueError):
        Config(rejection={"autoreject": "yes"})
    with pytest.raises(ValueError, match="positive channel counts"):
        Config(rejection={"autoreject_n_interpolate": [0, 4]})
    assert Config(rejection={"autoreject_n_interpolate": [4, 1, 4]}).rejection.autoreject_n_interpolate == (1, 4)


def test_local_grid_bounds_the_repair():
    """With at most 1 channel interpolated per epoch, no kept epoch has more than 1 repaired channel."""
    epochs = _epochs(plant=True)
    reasons, _, report = autoreject_epochs(epochs, "local", seed=1, window=(TMIN, TMAX), n_interpolate=(1,))
    assert report["n_interpolate_grid"] == [1] and report["n_interpolate"] == 1
    assert all(len(v) <= 1 for v in report["interpolated"].values())
    assert report["interpolated"][str(ONE_CHANNEL)] == ["CZ"]
    assert all(reasons[k] for k in BROAD)


@pytest.fixture(scope="module")
def session(ci7_study):
    paths = ci7_study
    coding = read_coding(paths.coding_file)
    return ingest_session(find_sessions(paths.raw_dir, coding)[0], coding.expressions)


def _cfg(mode: str, **rej) -> Config:
    return Config(preprocessing={"ica": False}, rejection={"autoreject": mode, **rej})


def test_make_epochs_applies_autoreject_after_the_fixed_thresholds(session):
    opts = PreprocessOptions(detect_bads=False)
    ep_off, md_off = epochs_from_session(session, _cfg("off"), options=opts)
    assert "autoreject" not in md_off.attrs["preprocessing"]["steps"]
    # global, with a fixed threshold low enough to reject some epochs first: those keep their reason
    fixed = float(np.nanpercentile(md_off["ptp_max_uv"], 70))
    _, md_g = epochs_from_session(session, _cfg("global", peak_to_peak_uv=fixed), options=opts)
    rep = md_g.attrs["preprocessing"]["steps"]["autoreject"]
    assert rep["mode"] == "global" and rep["threshold_uv"] > 0
    first = md_g["ptp_max_uv"] > fixed
    assert md_g.loc[first, "reason"].str.startswith("peak_to_peak>").all()
    by_ar = md_g["reason"].str.startswith("autoreject_global>")
    assert (md_g.loc[by_ar, "ptp_max_uv"] > rep["threshold_uv"] - 1e-3).all()  # recorded to 1e-3 µV
    assert (md_g.loc[~by_ar & ~first & md_g["kept"], "ptp_max_uv"] <= rep["threshold_uv"] + 1e-3).all()
    assert rep["n_rejected"] == int(by_ar.sum())
    # local: bad channels of kept epochs repaired in the data that every analysis reads; the rest unchanged
    ep_loc, md_loc = epochs_from_session(session, _cfg("local"), options=opts)
    rep = md_loc.attrs["preprocessing"]["steps"]["autoreject"]
    assert rep["mode"] == "local"
    assert md_loc.attrs["provenance"]["preprocessing"]["autoreject"] == rep
    kept_off = md_off.index[md_off["kept"]].tolist()
    row = {i: j for j, i in enumerate(kept_off)}  # metadata row -> epoch index of ep_off
    kept_loc = md_loc.index[md_loc["kept"]].tolist()
    assert set(kept_loc) <= set(kept_off)
    x_off, x_loc = ep_off.get_data(), ep_loc.get_data()
    n_repaired = 0
    for j, i in enumerate(kept_loc):
        chans = rep["interpolated"].get(str(i), [])
        same = np.array_equal(x_loc[j], x_off[row[i]])
        assert same == (not chans), (i, chans)
        n_repaired += bool(chans)
    assert n_repaired == len(rep["interpolated"])


@pytest.mark.parametrize("mode", ["global", "local"])
def test_reasons_and_repairs_land_on_the_right_rows(mode):
    """make_epochs' helper: autoreject sees only the candidate rows; reasons and repairs go back to their rows."""
    from mmme_neuro.epochs import _autoreject

    ep = _epochs(plant=True)
    n = len(ep)
    extra = np.zeros((4,) + ep.get_data().shape[1:])
    # rows 0-3: not candidates (rejected before, e.g. by the fixed threshold), filled with a huge artefact
    data = np.concatenate([extra + 1e-3, ep.get_data()])
    candidates = np.r_[np.zeros(4, bool), np.ones(n, bool)]
    reason = np.array(["earlier"] * 4 + [""] * n, dtype=object)
    info = ep.info.copy()
    cfg = Config(rejection={"autoreject": mode})
    rep = _autoreject(data, candidates, reason, info, list(range(len(ep.ch_names))), TMIN, (TMIN, TMAX), cfg)
    assert (reason[:4] == "earlier").all()
    assert np.array_equal(data[:4], extra + 1e-3)
    direct, repaired, _ = autoreject_epochs(ep, mode, seed=cfg.seed, window=(TMIN, TMAX))
    assert list(reason[4:]) == direct
    assert all(reason[4 + k] for k in BROAD)
    if mode == "local":
        assert set(rep["interpolated"]) == {str(4 + int(k)) for k in _local_keys(direct, repaired, ep)}
        np.testing.assert_array_equal(data[4:], repaired.get_data())


def test_too_few_candidates_skip_with_the_subject_named(caplog):
    from mmme_neuro.epochs import _autoreject

    ep = _epochs(plant=False, n=8)
    data = ep.get_data()
    candidates = np.zeros(8, bool)
    candidates[:MIN_EPOCHS - 1] = True  # the fixed thresholds rejected the rest
    reason = np.array([""] * 8, dtype=object)
    with caplog.at_level("WARNING", logger="mmme_neuro.epochs"):
        rep = _autoreject(data, candidates, reason, ep.info, list(range(len(ep.ch_names))), TMIN, (TMIN, TMAX),
                          Config(rejection={"autoreject": "local"}), "sub-07")  # fmt: skip
    assert rep == {"mode": "local", "skipped": f"{MIN_EPOCHS - 1} epochs, at least {MIN_EPOCHS} needed"}
    assert "sub-07: autoreject (local) skipped" in caplog.text
    assert (reason == "").all() and np.array_equal(data, ep.get_data())
    # nothing left at all (MNE cannot build 0 epochs): the same record
    rep = _autoreject(data, np.zeros(8, bool), reason, ep.info, list(range(len(ep.ch_names))), TMIN, (TMIN, TMAX),
                      Config(rejection={"autoreject": "global"}), "sub-07")  # fmt: skip
    assert rep == {"mode": "global", "skipped": f"0 epochs, at least {MIN_EPOCHS} needed"}


def _local_keys(reasons, repaired, ep):
    """Kept epochs whose data the repair changed."""
    x, y = ep.get_data(), repaired.get_data()
    return [k for k in range(len(ep)) if not reasons[k] and not np.array_equal(x[k], y[k])]
