"""Tests of mmme_neuro.connectivity: equality with mne-connectivity, known cases, edges, errors.

Tolerances: in double precision our values equal mne-connectivity's to
float64 round-off (observed <= 1e-15; asserted atol 1e-10, which leaves room
for BLAS/FFT summation-order differences across machines). In single precision
(the default) the inverse FFT, the phasors and the products are complex64:
relative error ~6e-8 per phasor, observed <= 5e-7 on PLV; asserted atol 1e-5.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from mne.time_frequency import tfr_array_morlet
from mne_connectivity import spectral_connectivity_time

from mmme_neuro.config import Config
from mmme_neuro.connectivity import (
    DEFINITIONS,
    _morlet,
    _wavelet_kernels,
    across_epoch_connectivity,
    band_frequencies,
    connectivity_dataarray,
    epoch_connectivity,
    required_padding,
)
from mmme_neuro.containers import load_netcdf, save_netcdf

SFREQ = 250.0
BANDS = {"theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0)}
FREQS = {"theta": np.array([5.0, 6.0, 7.0]), "alpha": np.array([8.0, 9.5, 11.0, 12.5]), "beta": np.arange(14.0, 30.0, 3.0)}
PAD = 0.4  # s; wavelets with n_cycles = f / 2 need 0.398 s


@pytest.fixture(scope="module")
def small() -> np.ndarray:
    """4 epochs x 8 channels x 2 s at 250 Hz, channel 1 partly driven by channel 0."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 8, 500))
    x[:, 1] += 0.7 * x[:, 0]
    return x


def _mne_conn(x: np.ndarray, freqs: np.ndarray, method: str, *, faverage: bool, decim: int = 1) -> np.ndarray:
    """mne-connectivity's full symmetric matrices: (epochs, ch, ch[, freqs])."""
    n_ep, n_ch = x.shape[:2]
    r = spectral_connectivity_time(x, freqs=freqs, method=method, sfreq=SFREQ, mode="cwt_morlet", n_cycles=freqs / 2,
                                   faverage=faverage, padding=PAD, decim=decim, verbose=False).get_data()  # fmt: skip
    r = r.reshape(n_ep, n_ch, n_ch, -1)
    r = r + np.swapaxes(r, 1, 2)  # mne-connectivity fills the lower triangle only
    return r[..., 0] if faverage else r


def _ours(x: np.ndarray, method: str, precision: str = "double", decim: int = 1) -> np.ndarray:
    last = (x.shape[-1] - 1) / SFREQ
    tmax = last - PAD if decim == 1 else (x.shape[-1] // decim - int(PAD * SFREQ / decim) - 1) * decim / SFREQ
    return epoch_connectivity(x, SFREQ, BANDS, method=method, freqs_per_band=FREQS, n_cycles=lambda f: f / 2,
                              zero_mean=False, tmin=PAD, tmax=tmax, decim=decim, precision=precision)  # fmt: skip


# --------------------------------------------------------------------------- equality with mne


@pytest.mark.parametrize("method", ["plv", "wpli", "coh"])
@pytest.mark.parametrize(("precision", "atol"), [("double", 1e-10), ("single", 1e-5)])
def test_equals_mne_connectivity(small, method, precision, atol):
    ours = _ours(small, method, precision)
    assert ours.shape == (4, 3, 8, 8)
    for ib, band in enumerate(BANDS):
        # one call per band: mne-connectivity 0.9's multi-band faverage averages wrong ranges
        ref = _mne_conn(small, FREQS[band], method, faverage=True)
        np.testing.assert_allclose(ours[:, ib], ref, rtol=0, atol=atol, err_msg=f"{method} {band}")


def test_ppc_equals_transformed_mne_plv(small):
    ours = _ours(small, "ppc")
    n = int(round(small.shape[-1] - 2 * PAD * SFREQ))  # samples in the window
    for ib, band in enumerate(BANDS):
        plv_f = _mne_conn(small, FREQS[band], "plv", faverage=False)
        ref = ((n * plv_f**2 - 1) / (n - 1)).mean(-1)
        ref[:, np.arange(8), np.arange(8)] = 0
        np.testing.assert_allclose(ours[:, ib], ref, rtol=0, atol=1e-10)


def test_decimation_matches_mne(small):
    ours = _ours(small, "plv", decim=2)
    for ib, band in enumerate(BANDS):
        ref = _mne_conn(small, FREQS[band], "plv", faverage=True, decim=2)
        np.testing.assert_allclose(ours[:, ib], ref, rtol=0, atol=1e-10)


def test_multiband_faverage_of_mne_connectivity_is_not_the_band_mean(small):
    """Documents why we compare per band: mne-connectivity 0.9 averages freqs[lo:2*hi] in one multi-band call."""
    freqs = np.arange(4.0, 31.0)
    per_f = _mne_conn(small, freqs, "plv", faverage=False)
    multi = spectral_connectivity_time(small, freqs=freqs, method="plv", sfreq=SFREQ, mode="cwt_morlet", n_cycles=freqs / 2,
                                       fmin=(4.0, 13.0), fmax=(8.0, 30.0), faverage=True, padding=PAD,
                                       verbose=False).get_data().reshape(4, 8, 8, 2)  # fmt: skip
    theta_mean = per_f[..., (freqs >= 4) & (freqs <= 8)].mean(-1)
    beta_mean = per_f[..., (freqs >= 13) & (freqs <= 30)].mean(-1)
    np.testing.assert_allclose(multi[:, 1, 0, 1], beta_mean[:, 1, 0], atol=1e-12)  # last band: correct
    assert not np.allclose(multi[:, 1, 0, 0], theta_mean[:, 1, 0], atol=1e-3)  # first band: 4-12 Hz mixed in


@pytest.mark.parametrize("zero_mean", [True, False])
def test_transform_equals_mne_tfr_array_morlet(small, zero_mean):
    freqs = np.array([3.0, 10.0, 40.0])
    ref = tfr_array_morlet(small, SFREQ, freqs, n_cycles=freqs / 2, zero_mean=zero_mean, output="complex")
    kernels, nfft = _wavelet_kernels(SFREQ, freqs, freqs / 2, zero_mean, small.shape[-1])
    ours = _morlet(small, kernels, nfft, small.shape[-1], slice(None), np.complex128, False)  # (e, f, c, t)
    np.testing.assert_allclose(ours.transpose(0, 2, 1, 3), ref, rtol=0, atol=1e-12 * np.abs(ref).max())


# --------------------------------------------------------------------------- known cases


def _locked(n_ep=6, seconds=4.0, lag_rad=np.pi / 4, noise=0.5, seed=3, mix_zero_lag=False) -> np.ndarray:
    """Channels 0, 1 share a 10 Hz oscillation (random phase per epoch) at a constant lag; 2, 3 independent noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SFREQ)) / SFREQ
    x = noise * rng.standard_normal((n_ep, 4, t.size))
    for e in range(n_ep):
        # phase wanders slowly (a real oscillation, not a pure tone) but identically in both channels
        phi = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.standard_normal(t.size)) * 0.02
        if mix_zero_lag:  # volume conduction: the same source, instantaneously mixed into both
            s = np.cos(2 * np.pi * 10 * t + phi)
            x[e, 0] += s
            x[e, 1] += 0.8 * s
        else:
            x[e, 0] += np.cos(2 * np.pi * 10 * t + phi)
            x[e, 1] += np.cos(2 * np.pi * 10 * t + phi - lag_rad)
    return x


def test_phase_locked_alpha_pair():
    x = _locked()
    bands = Config().bands
    names = list(bands)
    plv = epoch_connectivity(x, SFREQ, bands, tmin=0.5, tmax=3.4).mean(0)  # (band, ch, ch)
    assert plv[names.index("alpha"), 0, 1] > 0.9
    for b in ("delta", "beta", "gamma"):
        # the coupled pair is at the level of an independent pair (2, 3)
        ib = names.index(b)
        assert plv[ib, 0, 1] < plv[ib, 2, 3] + 0.1, b
    # theta: the default wavelets (n_cycles = f / 2, sigma_f = 2 Hz) leak 10 Hz into the 7.6 Hz wavelet ...
    assert plv[names.index("theta"), 0, 1] > 0.4
    # ... wavelets with twice the cycles (sigma_f = 1 Hz) do not
    sharp = epoch_connectivity(x, SFREQ, bands, tmin=0.8, tmax=3.1, n_cycles=lambda f: f).mean(0)
    th = names.index("theta")
    assert sharp[th, 0, 1] < sharp[th, 2, 3] + 0.1


def test_noise_plv_bias_and_ppc_near_zero():
    rng = np.random.default_rng(7)
    n_ep = 40
    x = rng.standard_normal((n_ep, 6, 500))
    bands = {"alpha": (8.0, 13.0), "beta": (13.0, 30.0)}
    iu = np.triu_indices(6, 1)
    plv = across_epoch_connectivity(x, SFREQ, bands, method="plv", tmin=PAD, tmax=1.5)
    expected = np.sqrt(np.pi / (4 * n_ep))  # mean of a Rayleigh-distributed |mean of n_ep unit phasors|
    assert abs(plv[:, iu[0], iu[1]].mean() - expected) < 0.1 * expected
    ppc = across_epoch_connectivity(x, SFREQ, bands, method="ppc", tmin=PAD, tmax=1.5)
    assert abs(ppc[:, iu[0], iu[1]].mean()) < 0.01
    # count-equalised PLV: the bias of the subset size
    sub = across_epoch_connectivity(x, SFREQ, bands, method="plv", tmin=PAD, tmax=1.5, subsample=10, n_draws=8)
    assert abs(sub[:, iu[0], iu[1]].mean() - np.sqrt(np.pi / 40)) < 0.1 * np.sqrt(np.pi / 40)
    # within-epoch: samples are autocorrelated, so the noise PLV exceeds sqrt(pi / (4 N)) of N independent samples
    within = epoch_connectivity(x, SFREQ, bands, method="plv", tmin=PAD, tmax=1.5)
    n = int(round((1.5 - PAD) * SFREQ)) + 1
    assert within[:, :, iu[0], iu[1]].mean() > 2 * np.sqrt(np.pi / (4 * n))


def test_wpli_volume_conduction_vs_quadrature():
    bands = {"alpha": (8.0, 13.0)}
    zero = epoch_connectivity(_locked(n_ep=4, seconds=10, noise=0.3, mix_zero_lag=True), SFREQ, bands,
                              method="wpli", tmin=PAD, tmax=9.5)  # fmt: skip
    quad = epoch_connectivity(_locked(n_ep=4, seconds=10, noise=0.3, lag_rad=np.pi / 2), SFREQ, bands,
                              method="wpli", tmin=PAD, tmax=9.5)  # fmt: skip
    plv_zero = epoch_connectivity(_locked(n_ep=4, seconds=10, noise=0.3, mix_zero_lag=True), SFREQ, bands,
                                  tmin=PAD, tmax=9.5)  # fmt: skip
    assert plv_zero[:, 0, 0, 1].mean() > 0.9  # PLV is fooled by zero-lag mixing ...
    assert zero[:, 0, 0, 1].mean() < 0.3  # ... wPLI is not
    assert quad[:, 0, 0, 1].mean() > 0.9


def test_wpli_of_identical_channels_is_zero_not_nan():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 500))
    x[:, 1] = x[:, 0]
    w = epoch_connectivity(x, SFREQ, {"alpha": (8.0, 13.0)}, method="wpli")
    assert np.all(np.isfinite(w)) and np.allclose(w[:, 0, 0, 1], 0)


@pytest.mark.parametrize("method", ["plv", "ppc", "wpli", "coh"])
def test_shape_symmetry_zero_diagonal(small, method):
    within = epoch_connectivity(small, SFREQ, BANDS, method=method, tmin=PAD, tmax=1.5)
    across = across_epoch_connectivity(small, SFREQ, BANDS, method=method, tmin=PAD, tmax=1.5)
    assert within.shape == (4, 3, 8, 8) and across.shape == (3, 8, 8)
    for arr in (within, across):
        assert arr.dtype == np.float64 and np.all(np.isfinite(arr))
        np.testing.assert_array_equal(arr, np.swapaxes(arr, -1, -2))
        assert np.all(np.diagonal(arr, axis1=-2, axis2=-1) == 0)
        if method in ("plv", "wpli", "coh"):
            assert arr.min() >= 0 and arr.max() <= 1 + 1e-9


@pytest.mark.parametrize("method", ["plv", "coh"])
def test_threads_give_identical_values(small, method):
    """n_jobs splits the epochs over threads: every epoch's values are those of one thread, bit for bit."""
    data = np.concatenate([small, small[:, ::-1], small[::-1]], axis=0)  # 12 epochs: uneven parts for 5 threads
    one = epoch_connectivity(data, SFREQ, BANDS, method=method, tmin=PAD, tmax=1.5)
    for n_jobs in (2, 5, -1, 50):  # more threads than epochs: at most one per epoch
        np.testing.assert_array_equal(epoch_connectivity(data, SFREQ, BANDS, method=method, tmin=PAD, tmax=1.5,
                                                         n_jobs=n_jobs), one)  # fmt: skip
    np.testing.assert_array_equal(one[:4], epoch_connectivity(small, SFREQ, BANDS, method=method, tmin=PAD, tmax=1.5))


def test_burst_in_padding_does_not_change_result(small):
    x = small.copy()
    t = np.arange(x.shape[-1]) / SFREQ
    burst = 20 * np.sin(2 * np.pi * 10 * t) * (t < 0.1)  # only in the first 0.1 s; window starts at 0.5 s
    x_burst = x + burst
    kw = dict(method="plv", tmin=0.5, tmax=1.5, precision="double")
    base = epoch_connectivity(x, SFREQ, BANDS, **kw)
    np.testing.assert_allclose(epoch_connectivity(x_burst, SFREQ, BANDS, **kw), base, rtol=0, atol=1e-12)
    # the same burst inside the window does change it
    inside = x + 20 * np.sin(2 * np.pi * 10 * t) * ((t > 0.9) & (t < 1.0))
    assert np.abs(epoch_connectivity(inside, SFREQ, BANDS, **kw) - base).max() > 0.05


def test_t0_shifts_the_window(small):
    a = epoch_connectivity(small, SFREQ, BANDS, tmin=0.4, tmax=1.5)
    b = epoch_connectivity(small, SFREQ, BANDS, t0=-1.0, tmin=-0.6, tmax=0.5)
    np.testing.assert_array_equal(a, b)


def test_edge_warning(small, caplog):
    with caplog.at_level(logging.WARNING, logger="mmme_neuro.connectivity"):
        epoch_connectivity(small, SFREQ, BANDS, tmin=0.1, tmax=1.5)
    assert "edge effects" in caplog.text


def test_padding_and_band_frequencies():
    pads = required_padding(Config().bands)
    assert all(abs(p - 5 / (4 * np.pi)) < 1e-12 for p in pads.values())  # n_cycles = f / 2 -> 0.398 s everywhere
    f = band_frequencies({"alpha": (8.0, 13.0)}, 5)["alpha"]
    np.testing.assert_allclose(f, [8.5, 9.5, 10.5, 11.5, 12.5])
    assert required_padding({"alpha": (8.0, 13.0)}, n_cycles=7.0)["alpha"] == pytest.approx(5 * 7 / (2 * np.pi * 8.5))


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(data=np.zeros((8, 500))), "3-D"),
        (dict(method="pli"), "method must be one of"),
        (dict(sfreq=-1.0), "sfreq"),
        (dict(bands={}), "non-empty mapping"),
        (dict(bands={"x": (13.0, 8.0)}), "low < high"),
        (dict(bands={"hi": (100.0, 140.0)}), "Nyquist"),
        (dict(tmin=1.9, tmax=1.9), "need >= 2"),
        (dict(tmin=1.5, tmax=0.5), "tmin <= tmax"),
        (dict(n_cycles=-1.0), "n_cycles must be positive"),
        (dict(n_cycles=20.0), "longer than"),
        (dict(freqs_per_band=0), "freqs_per_band"),
        (dict(freqs_per_band={"alpha": [9.0, 8.0]}), "increasing"),
        (dict(decim=0), "decim"),
        (dict(precision="half"), "precision"),
        (dict(n_jobs=0), "n_jobs"),
        (dict(n_jobs=2.0), "n_jobs"),
    ],
)
def test_bad_inputs(small, kwargs, match):
    args = dict(data=small, sfreq=SFREQ, bands={"alpha": (8.0, 13.0)})
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        epoch_connectivity(args.pop("data"), args.pop("sfreq"), args.pop("bands"), **args)


def test_bad_data_values(small):
    bad = small.copy()
    bad[0, 0, 10] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        epoch_connectivity(bad, SFREQ, BANDS)
    flat = small.copy()
    flat[1, 3] = 2.0
    with pytest.raises(ValueError, match="flat"):
        epoch_connectivity(flat, SFREQ, BANDS)
    with pytest.raises(ValueError, match="at least 2 epochs"):
        across_epoch_connectivity(small[:1], SFREQ, BANDS)
    with pytest.raises(ValueError, match="subsample"):
        across_epoch_connectivity(small, SFREQ, BANDS, subsample=5)
    with pytest.raises(ValueError, match="2 channels"):
        epoch_connectivity(small[:, :1], SFREQ, BANDS)


# --------------------------------------------------------------------------- container


def test_dataarray_epochs_and_roundtrip(small, tmp_path):
    conn, info = epoch_connectivity(small, SFREQ, BANDS, tmin=PAD, tmax=1.5, return_info=True)
    chans = [f"C{i}" for i in range(8)]
    cond = ["ME", "MaE", "MaE", "NE"]
    da = connectivity_dataarray(conn, channels=chans, bands=BANDS, method="plv", subject="sub-01", condition=cond,
                                info=info, config=Config())  # fmt: skip
    assert da.dims == ("epoch", "band", "node", "node_other")
    assert list(da.band.values) == list(BANDS) and list(da.condition.values) == cond
    assert da.attrs["definition"] == DEFINITIONS["plv"] and da.attrs["window"] == [0.4, 1.5]
    assert da.attrs["freqs"]["alpha"] == [8.5, 9.5, 10.5, 11.5, 12.5] and "config_hash" in da.attrs
    assert float(da.sel(node="C0", node_other="C1", band="alpha")[0]) == conn[0, 1, 0, 1]
    back = load_netcdf(save_netcdf(da, tmp_path / "conn.nc"))
    np.testing.assert_array_equal(back.values, da.values)
    assert back.attrs["n_cycles"] == info["n_cycles"]


def test_dataarray_condition_level(small):
    conn, info = across_epoch_connectivity(small, SFREQ, BANDS, return_info=True)
    da = connectivity_dataarray(conn, channels=[f"C{i}" for i in range(8)], bands=list(BANDS), method="ppc",
                                subject="sub-02", condition="ME", info=info)  # fmt: skip
    assert da.dims == ("subject", "condition", "band", "node", "node_other")
    assert da.attrs["estimator"] == "across-epoch"
    with pytest.raises(ValueError, match="does not match"):
        connectivity_dataarray(conn, channels=["a", "b"], bands=list(BANDS), method="ppc")
    asym = conn.copy()
    asym[0, 0, 1] += 1
    with pytest.raises(ValueError, match="symmetric"):
        connectivity_dataarray(asym, channels=[f"C{i}" for i in range(8)], bands=list(BANDS), method="ppc")
    with pytest.raises(ValueError, match="method"):
        connectivity_dataarray(conn, channels=[f"C{i}" for i in range(8)], bands=list(BANDS), method="pli")
