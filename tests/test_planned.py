"""Planned ROI x window (x band) contrasts: stats.planned_contrasts and the planned
configuration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from statsmodels.stats.multitest import multipletests

from mmme_neuro.config import Config, ConfigError, load_config
from mmme_neuro.constants import SCALP_CHANNELS
from mmme_neuro.reporting import planned_markdown, planned_records
from mmme_neuro.stats import PLANNED_COLUMNS, planned_contrasts

P3 = ("CP1", "CPZ", "CP2", "P1", "PZ", "P2")


def _erp(seed: int, effect_uv: float = 0.0, n_subjects: int = 10) -> xr.DataArray:
    """Subject-level ERPs (µV): white noise (SD 4 µV per sample), a P3-window ME - MaE effect
    varying between subjects."""
    rng = np.random.default_rng(seed)
    times = np.round(np.arange(-0.2, 0.8001, 0.01), 9)
    x = rng.normal(0.0, 4.0, size=(n_subjects, 3, len(SCALP_CHANNELS), times.size))
    amp = effect_uv * (1 + 0.5 * rng.normal(size=n_subjects))
    roi = [SCALP_CHANNELS.index(c) for c in P3]
    win = (times >= 0.3) & (times <= 0.5)
    for i, a in enumerate(amp):
        x[i, 0][np.ix_(roi, np.flatnonzero(win))] += a
    return xr.DataArray(
        x,
        dims=("subject", "condition", "channel", "time"),
        coords={
            "subject": [f"sub-{i:02d}" for i in range(n_subjects)],
            "condition": ["ME", "MaE", "NE"],
            "channel": list(SCALP_CHANNELS),
            "time": times,
        },
    )


SPEC = {"name": "P3", "contrast": ("ME", "MaE"), "channels": P3, "window_s": (0.3, 0.5)}


def test_planted_effect_found_and_null_not():
    hit = planned_contrasts(_erp(1, effect_uv=1.4), [SPEC])
    null = planned_contrasts(_erp(1, effect_uv=0.0), [SPEC])
    assert list(hit.columns) == list(PLANNED_COLUMNS)
    h, n = hit.iloc[0], null.iloc[0]
    assert (
        h["p"] < 0.05
        and h["significant"]
        and h["mean_diff"] > 0
        and h["df"] == 9
        and h["n_subjects"] == 10
    )
    assert n["p"] > 0.05 and not n["significant"]
    assert h["ci_low"] < h["mean_diff"] < h["ci_high"] and h["cohen_dz"] > 0
    assert (h["roi"], h["tmin_s"], h["tmax_s"], h["n_sites"]) == (",".join(P3), 0.3, 0.5, 6)
    # the subject-level values are the ROI x window means: check against a hand computation
    da = _erp(1, effect_uv=1.4)
    v = da.sel(channel=list(P3)).sel(time=slice(0.3, 0.5)).mean(("channel", "time"))
    d = (v.sel(condition="ME") - v.sel(condition="MaE")).values
    assert h["mean_diff"] == pytest.approx(d.mean())
    assert h["t"] == pytest.approx(d.mean() / (d.std(ddof=1) / np.sqrt(d.size)))


def test_holm_within_the_family_equals_multipletests():
    da = _erp(2, effect_uv=1.0)
    specs = [
        SPEC,
        {"name": "early", "contrast": ("ME", "MaE"), "channels": P3, "window_s": (0.0, 0.2)},
        {
            "name": "frontal",
            "contrast": ("ME", "NE"),
            "channels": ("FZ", "FCZ"),
            "window_s": (0.3, 0.5),
        },
        {"name": "late", "contrast": ("MaE", "NE"), "channels": ("OZ",), "window_s": (0.6, 0.8)},
    ]
    tab = planned_contrasts(da, specs)
    assert (
        tab["name"].tolist() == ["P3", "early", "frontal", "late"]
        and (tab["family_size"] == 4).all()
    )
    np.testing.assert_allclose(tab["p_corrected"], multipletests(tab["p"], method="holm")[1])
    bonf = planned_contrasts(da, specs, correction="bonferroni")
    np.testing.assert_allclose(bonf["p_corrected"], np.minimum(1, 4 * tab["p"]))
    none = planned_contrasts(da, specs, correction="none")
    np.testing.assert_allclose(none["p_corrected"], tab["p"])
    assert (tab["significant"] == (tab["p_corrected"] < 0.05)).all()


def test_band_and_node_data():
    rng = np.random.default_rng(4)
    freqs = np.array([5.0, 7.0, 10.0, 20.0])
    x = rng.normal(size=(8, 2, 3, freqs.size, 11))
    x[:, 0, :, :2, 5:] += 3.0  # theta (5, 7 Hz) after 0.5 s in ME
    ersp = xr.DataArray(
        x,
        dims=("subject", "condition", "channel", "freq", "time"),
        coords={
            "subject": list("abcdefgh"),
            "condition": ["ME", "MaE"],
            "channel": ["FZ", "CZ", "PZ"],
            "freq": freqs,
            "time": np.round(np.arange(11) * 0.1, 9),
        },
    )
    bands = {"theta": (4.0, 8.0), "alpha": (8.0, 13.0)}
    tab = planned_contrasts(
        ersp,
        [
            {"name": "th", "channels": ["FZ"], "window_s": (0.5, 1.0), "band": "theta"},
            {"name": "al", "channels": ["FZ"], "window_s": (0.5, 1.0), "band": "alpha"},
        ],
        bands=bands,
    )
    assert tab.loc[0, "p"] < 0.001 and tab.loc[1, "p"] > 0.01
    assert (tab.loc[0, "fmin_hz"], tab.loc[0, "fmax_hz"], tab.loc[0, "band"]) == (4.0, 8.0, "theta")
    ds = xr.Dataset(
        {
            "nodal_efficiency_auc": (
                ("subject", "condition", "band", "node"),
                rng.normal(size=(8, 2, 2, 3)),
            )
        },
        coords={
            "subject": list("abcdefgh"),
            "condition": ["ME", "MaE"],
            "band": ["theta", "alpha"],
            "node": ["C3", "C4", "PZ"],
        },
    )
    ds["nodal_efficiency_auc"].loc[{"condition": "ME", "band": "alpha", "node": "C3"}] += 2.0
    net = planned_contrasts(
        ds,
        [{"name": "a", "nodes": ["C3"], "band": "alpha", "measure": "nodal_efficiency_auc"}],
        bands=bands,
    )
    assert (
        net.loc[0, "p"] < 0.001
        and np.isnan(net.loc[0, "tmin_s"])
        and net.loc[0, "measure"] == "nodal_efficiency_auc"
    )
    # a subject missing a condition (minimum-count rule: NaN) leaves that contrast, counted
    ds["nodal_efficiency_auc"].loc[{"subject": "a", "condition": "MaE"}] = np.nan
    again = planned_contrasts(
        ds, [{"name": "a", "nodes": ["C3"], "band": "alpha", "measure": "nodal_efficiency_auc"}]
    )
    assert (
        again.loc[0, "n_subjects"] == 7
        and again.loc[0, "n_dropped"] == 1
        and again.loc[0, "df"] == 6
    )


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"channels": ("CPZ", "XYZ")}, "XYZ"),
        ({"window_s": (0.3, 1.4)}, "1.4"),
        ({"window_s": (0.5, 0.3)}, "start must be before end"),
        ({"contrast": ("ME", "Neutral")}, "Neutral"),
        ({"band": "theta"}, "band"),
        ({"channels": "CPZ"}, "list"),
    ],
)
def test_bad_contrasts_name_the_value(spec, needle):
    with pytest.raises(ValueError, match=needle):
        planned_contrasts(_erp(0), [{**SPEC, **spec}])


def test_bad_family_arguments():
    with pytest.raises(ValueError, match="duplicate"):
        planned_contrasts(_erp(0), [SPEC, SPEC])
    with pytest.raises(ValueError, match="correction"):
        planned_contrasts(_erp(0), [SPEC], correction="tukey")
    with pytest.raises(ValueError, match="sequence"):
        planned_contrasts(_erp(0), SPEC)


def test_records_and_markdown_name_test_and_df():
    tab = planned_contrasts(
        _erp(1, effect_uv=1.4), [SPEC, {**SPEC, "name": "late", "window_s": (0.6, 0.8)}]
    )
    recs = planned_records(tab, units="µV")
    assert [r["kind"] for r in recs] == ["planned", "planned"]
    r = recs[0]
    assert (
        r["statistic_name"] == "t"
        and r["df"] == 9
        and r["correction"] == "holm"
        and r["test"].startswith("paired t")
    )
    assert r["p"] == pytest.approx(tab.loc[0, "p_corrected"]) and r[
        "p_uncorrected"
    ] == pytest.approx(tab.loc[0, "p"])
    assert r["location"] == list(P3) and r["time_s"] == [0.3, 0.5] and r["freq_hz"] is None
    text = "\n".join(planned_markdown(recs))
    assert (
        "paired t(9) = " in text
        and "holm" in text
        and "P3 (ME-MaE; CP1, CPZ, CP2, P1, PZ, P2; 0.3-0.5 s)" in text
    )


# ----------------------------------------------------------------------------- configuration


def test_default_planned_contrasts_are_valid_and_named():
    cfg = Config()
    assert [c.name for c in cfg.planned.erp] == ["P3"] and cfg.planned.erp[0].channels == P3
    assert cfg.planned.erp[0].window_s == (0.3, 0.5)
    assert [(c.name, c.band) for c in cfg.planned.tfr] == [
        ("frontal_theta", "theta"),
        ("central_beta", "beta"),
    ]
    assert cfg.planned.network[0].band == "alpha" and len(cfg.planned.network[0].nodes) == 10
    assert cfg.planned.correction == "holm" and cfg.emg_matching.method == "nearest"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            '[[planned.erp]]\nname = "N2"\nchannels = ["FZ", "FCZ9"]\nwindow_s = [0.2, 0.3]\n',
            "FCZ9",
        ),
        ('[[planned.erp]]\nname = "N2"\nchannels = ["FZ"]\nwindow_s = [0.2, 2.5]\n', "2.5"),
        (
            '[[planned.tfr]]\nname = "mu"\nchannels = ["C3"]\nwindow_s = [0.0, 0.5]\nband = "mu"\n',
            "mu",
        ),
        (
            '[[planned.network]]\nname = "x"\nnodes = ["C3"]\nband = "alpha"\n'
            'contrast = ["ME", "ME"]\n',
            "itself",
        ),
        (
            '[[planned.erp]]\nname = "a"\nchannels = ["FZ"]\nwindow_s = [0.2, 0.3]\n'
            '[[planned.erp]]\nname = "a"\nchannels = ["CZ"]\nwindow_s = [0.2, 0.3]\n',
            "duplicate",
        ),
        ('[emg_matching]\nmethod = "random"\n', "emg_matching.method"),
        ("[emg_matching]\ncaliper_sd = 0\n", "caliper_sd"),
    ],
)
def test_bad_planned_configuration_names_the_value(tmp_path, text, needle):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert needle in str(err.value) and str(path) in str(err.value)


def test_given_contrasts_replace_the_defaults_and_round_trip(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(
        '[planned]\ncorrection = "bonferroni"\n[[planned.erp]]\nname = "N2"\n'
        'channels = ["FZ", "FCZ"]\n'
        'window_s = [0.2, 0.3]\ncontrast = ["ME", "NE"]\n',
        encoding="utf-8",
    )
    cfg = load_config(path)
    assert [c.name for c in cfg.planned_contrasts("erp")] == [
        "N2"
    ] and cfg.planned.correction == "bonferroni"
    assert [c.name for c in cfg.planned_contrasts("tfr")] == ["frontal_theta", "central_beta"]
    again = tmp_path / "again.toml"
    again.write_text(cfg.to_toml(), encoding="utf-8")
    assert load_config(again) == cfg


def test_defaults_that_do_not_fit_a_custom_epoch_are_left_out():
    cfg = load_config(None, epochs={"tmin": -0.8, "tmax": 0.45, "baseline": [-0.8, -0.5]})
    assert cfg.planned_contrasts("erp") == () and cfg.planned_contrasts("tfr") == ()
    assert [c.name for c in cfg.planned_contrasts("network")] == ["alpha_lateral"]
    no_beta = load_config(None, bands={"theta": [4.0, 8.0], "alpha": [8.0, 13.0]})
    assert [c.name for c in no_beta.planned_contrasts("tfr")] == ["frontal_theta"]
    with pytest.raises(ValueError, match="family"):
        cfg.planned_contrasts("decoding")


def test_planned_table_of_the_erp_script_uses_the_configuration():
    from analyses.erp_me_vs_mae import planned_table

    cfg = load_config(None, planned={"correction": "none"})
    tab = planned_table(
        _erp(1, effect_uv=1.4).transpose("subject", "condition", "channel", "time"), cfg
    )
    assert (
        tab["name"].tolist() == ["P3"]
        and tab.loc[0, "correction"] == "none"
        and tab.loc[0, "measure"] == "amplitude_uv"
    )
    short = load_config(None, epochs={"tmin": -0.8, "tmax": 0.45, "baseline": [-0.8, -0.5]})
    assert planned_table(_erp(1), short).empty and list(
        planned_table(_erp(1), short).columns
    ) == list(PLANNED_COLUMNS)
    assert isinstance(tab, pd.DataFrame)
