"""Configuration model: defaults, TOML round trip, validation messages."""

import pytest

from mmme_neuro.cli import main
from mmme_neuro.config import DEFAULT_BANDS, Config, ConfigError, load_config


def test_defaults_are_documented_values():
    cfg = Config()
    assert cfg.bands == DEFAULT_BANDS
    assert cfg.bands["gamma"] == (30.0, 47.0)
    assert cfg.coding.me_rule.max_duration_s == 0.5
    assert cfg.coding.me_rule.max_onset_to_apex_s == 0.25
    assert cfg.coding.duplicate_policy == "latest"
    assert cfg.network.densities()[0] == 0.05 and cfg.network.densities()[-1] == 0.5
    assert len(cfg.network.densities()) == 10
    # every leaf field carries a description: the documentation of its default
    from pydantic import BaseModel

    def leaves(model, prefix=""):
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                yield from leaves(ann, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}", field

    undocumented = [name for name, field in leaves(Config) if not field.description]
    assert undocumented == []


def test_toml_round_trip(tmp_path):
    cfg = load_config(None, seed=7, simulation={"scale": "ci", "null": True})
    path = tmp_path / "cfg.toml"
    path.write_text(cfg.to_toml())
    again = load_config(path)
    assert again == cfg
    assert again.hash() == cfg.hash()
    assert again.simulation_seed == 7


def test_hash_changes_with_any_value():
    assert Config().hash() != load_config(None, epochs={"tmax": 2.0}).hash()
    # how a run is executed is not part of what it computes
    assert Config().hash() == load_config(None, run={"workers": 2, "cache": False}).hash()
    assert Config().hash() == Config().hash()


def test_overrides_merge_into_file_sections(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[simulation]\nscale = "ci"\n[epochs]\ntmin = -1.2\n')
    cfg = load_config(path, simulation={"null": True})
    assert cfg.simulation.scale == "ci" and cfg.simulation.null
    assert cfg.epochs.tmin == -1.2


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("sed = 3\n", "sed"),  # typo: unknown keys are errors
        ("[epochs]\ntmin = 1.0\ntmax = 0.5\n", "tmin"),
        ("[epochs]\nbaseline = [-3.0, -2.0]\n", "baseline"),
        ("[bands]\ntheta = [8.0, 4.0]\n", "theta"),
        ("[coding]\nduplicate_policy = \"newest\"\n", "duplicate_policy"),
        ("[preprocessing]\nl_freq = 50.0\nh_freq = 40.0\n", "l_freq"),
        ("[preprocessing]\nl_freq = -0.1\n", "l_freq"),  # physics: a negative edge means nothing
        ("[preprocessing]\nresample_sfreq = 0\n", "resample_sfreq"),  # was a bare ZeroDivisionError in run
        ("[preprocessing]\nh_freq = 0\n", "h_freq"),
        ("[preprocessing]\nh_freq = 200.0\n", "Nyquist"),  # above half of resample_sfreq (250 Hz): aliasing
        ("[network]\ndensity_start = 0.6\n", "density"),
    ],
)
def test_invalid_values_name_the_key_and_file(tmp_path, text, needle):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert needle in str(err.value)
    assert str(path) in str(err.value)


def test_bad_toml_and_missing_file(tmp_path):
    bad = tmp_path / "x.toml"
    bad.write_text("[unclosed\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_cli_config_show_and_check(tmp_path, capsys):
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "[bands]" in out and Config().hash() in out
    good = tmp_path / "good.toml"
    good.write_text(out)
    assert load_config(good) == Config()
    assert main(["config", "check", str(good)]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("[stats]\nalpha = 2\n")
    assert main(["config", "check", str(bad)]) == 1
    assert "stats.alpha" in capsys.readouterr().err


def test_configuration_reference_is_up_to_date():
    from pathlib import Path

    from mmme_neuro.config import config_reference_markdown

    doc = Path(__file__).parents[1] / "docs" / "configuration.md"
    assert doc.read_text(encoding="utf-8") == config_reference_markdown(), (
        "docs/configuration.md is stale: run `mmme-neuro config doc > docs/configuration.md`"
    )
