"""Null calibration when subjects differ in their effect (``benchmarks/calibration*.py``).

The default suite runs the trial-level models, the families that were
miscalibrated, on 60 null data sets at a between-subject SD equal to the trial
noise: the default model must pass and the old random-intercept model with Wald
z must fail, so the check can fail. The slow suite (``-m slow``) runs every
family at s = 0, 0.5 and 1 with fewer data sets than the benchmark.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the benchmarks package sits next to tests/
    sys.path.insert(0, str(ROOT))

from benchmarks.calibration import TARGET, binomial_ci, false_positive_rate  # noqa: E402


def _calibrated(result: dict) -> bool:
    """The exact 95 % CI of the rate reaches into the target band [0.03, 0.07]."""
    return result["ci_low"] <= TARGET[1] and result["ci_high"] >= TARGET[0]


def test_binomial_ci_is_exact():
    lo, hi = binomial_ci(10, 200)
    assert lo == pytest.approx(0.02422, abs=1e-4) and hi == pytest.approx(0.09003, abs=1e-4)


@pytest.mark.parametrize("shape", ["erp_model", "erp_model_emg", "coupling_model"])
def test_trial_models_calibrated_when_subjects_differ(shape):
    from benchmarks.calibration_trial import FAMILIES

    fams = {f.name: f for f in FAMILIES}
    new = false_positive_rate(fams[shape], 1.0, 60)
    old = false_positive_rate(fams[f"{shape}_ri_wald"], 1.0, 60)
    assert _calibrated(new), new
    # sabotage: the random-intercept model with Wald z (what the project used before) fails
    assert not _calibrated(old) and old["rate"] > 0.2, old


def test_false_positive_rate_does_not_depend_on_processes():
    from benchmarks.calibration_trial import FAMILIES

    fam = next(f for f in FAMILIES if f.name == "physio_model_ri_wald")
    one = false_positive_rate(fam, 0.5, 8, n_jobs=1)
    two = false_positive_rate(fam, 0.5, 8, n_jobs=2)
    assert one == two


@pytest.mark.slow
@pytest.mark.parametrize("s", [0.0, 0.5, 1.0])
def test_every_family_calibrated(s):
    from benchmarks.bench_calibration import all_families

    bad = []
    for fam in all_families():
        if fam.name.endswith("_ri_wald"):
            continue
        res = false_positive_rate(fam, s, 60, n_jobs=2)
        if not _calibrated(res):
            bad.append((fam.name, res["rate"], res["ci_low"], res["ci_high"]))
    assert not bad, bad
