"""Benchmark: one leave-one-subject-out run of the decoding permutation test, the whole pipeline refitted vs ours.

Run on demand (NOT a test): ``.venv/bin/python -m benchmarks.bench_decoding``.

The permutation test of :func:`mmme_neuro.decoding.decode` re-runs the whole
cross-validation for every shuffle of the labels (101 runs per model, 15
models in ``analyses.decoding_multimodal``): its cost is the group level of
the decoding analysis. The workload here has the default study's shape: 12
subjects, 366 ME + MaE epochs, 1008 EEG features and 8 physiology features
(random values: the timing depends on the shape only), ME vs MaE, logistic
regression with ANOVA selection of 40 features. One LOSO run (12 fits), median
of 5 repeats, one thread, for three feature sets, three ways:

* ``refit_f_classif`` - the whole pipeline (imputation if needed, constant
  columns, ``SelectKBest(f_classif)``, scaling, classifier) cloned and fitted
  in every fold (:func:`mmme_neuro.decoding.cross_val_proba`: what ``decode`` did
  before stop 17);
* ``refit_anova_f`` - the same with :func:`mmme_neuro.decoding.anova_f` as the
  selection score;
* ``ours`` - what ``decode`` does: the label-free steps fitted once per fold
  (``_prepare_folds``, outside the timing: shared by all 101 runs) and only
  the selection, scaling and classifier refitted per run.

The three give the same out-of-fold probabilities (largest difference
printed; the test suite checks it). Also timed: the ANOVA F of one training
fold alone, sklearn's ``f_classif`` vs ``anova_f``; and one whole
:func:`mmme_neuro.decoding.time_resolved` run (ridge per time, 1000 label-flip
arrangements each re-running the LOSO, one process) on the default study's
epochs (12 subjects x (6 ME + 25 MaE), 62 channels, 60 samples: -0.2 to 1.0 s
at 50 Hz; and 100 samples), with and without the generalisation matrix. Prints a table and
writes ``benchmarks/results/decoding.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.bench_network import _median_time

RESULTS = Path(__file__).parent / "results"


def _table(seed: int = 0, n_subjects: int = 12, n_me: int = 6, n_mae: int = 25, n_eeg: int = 1008,
           n_phys: int = 8) -> pd.DataFrame:  # fmt: skip
    rng = np.random.default_rng(seed)
    n = n_me + n_mae
    cond = np.tile(["ME"] * n_me + ["MaE"] * n_mae, n_subjects)
    subj = np.repeat([f"sub-{s + 1:02d}" for s in range(n_subjects)], n)
    data = {"epoch_id": [f"{s}_ep{i:04d}" for i, s in enumerate(subj)], "subject": subj, "condition": cond}
    eeg = rng.standard_normal((cond.size, n_eeg)) + (cond == "ME")[:, None] * 0.2
    phys = rng.standard_normal((cond.size, n_phys))
    cols = {f"eeg_psd__b{j // 64}__C{j % 64}": eeg[:, j] for j in range(n_eeg)}
    cols |= {f"physio__f{j}": phys[:, j] for j in range(n_phys)}
    return pd.concat([pd.DataFrame(data), pd.DataFrame(cols)], axis=1)


@contextlib.contextmanager
def _selection_score(module: Any, func: Any) -> Iterator[None]:
    """``make_pipeline`` with ``func`` as the ANOVA selection's score (it looks ``anova_f`` up when called)."""
    saved = module.anova_f
    module.anova_f = func
    try:
        yield
    finally:
        module.anova_f = saved


def _time_set(table: pd.DataFrame, fset: str, fusion: str) -> dict[str, float]:
    """One LOSO run of ``fset``, the three ways (see the module docstring)."""
    from sklearn.feature_selection import f_classif

    from mmme_neuro import decoding as dec
    from mmme_neuro.config import Config

    cfg = Config()
    rows, y, classes, X, col_groups, _ = dec._task_matrix(table, "me_vs_mae", fset)  # noqa: N806
    groups = rows["subject"].to_numpy()
    splits = dec.cv_splits(y, groups)

    def refit() -> np.ndarray:
        est = dec._estimator(cfg.decoding, X.shape[1], col_groups, fusion, cfg.seed, label_free=True)
        return dec.cross_val_proba(X, y, splits, est, classes, groups=groups)[0]

    def f_classif_weighted(a: np.ndarray, b: np.ndarray, sample_weight: np.ndarray | None = None) -> np.ndarray:
        # sklearn's F takes no weights (the decoding fits weigh subjects' classes equally): it is timed
        # unweighted, and the probabilities are compared with the refit of the very pipeline
        return f_classif(a, b)[0]

    with _selection_score(dec, f_classif_weighted):  # the pipeline as it was: sklearn's F
        t_old, _ = _median_time(refit, 5)
    t_refit, p_old = _median_time(refit, 5)
    folds = dec._prepare_folds(X, splits, col_groups)
    t_ours, p_ours = _median_time(lambda: dec._cross_validate(X, y, groups, splits, col_groups, cfg.decoding, fusion, cfg.seed,
                                                              classes, folds)[0], 5)  # fmt: skip
    return {"n_features": X.shape[1], "refit_f_classif_s": t_old, "refit_anova_f_s": t_refit, "ours_s": t_ours,
            "max_abs_diff": float(np.nanmax(np.abs(p_old - p_ours)))}  # fmt: skip


def _time_resolved(n_times: int, generalization: bool, n_channels: int = 62) -> dict[str, float]:
    """Wall and CPU seconds of one ``time_resolved`` run on the default study's ME / MaE epochs."""
    import time

    import xarray as xr

    from mmme_neuro import decoding as dec
    from mmme_neuro.config import Config

    table = _table(n_eeg=1, n_phys=1)[["epoch_id", "subject", "condition"]]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((len(table), n_channels, n_times))
    x[(table["condition"] == "ME").to_numpy(), :, n_times // 2 : n_times // 2 + 5] += 0.3
    coords = {"epoch": table["epoch_id"].to_numpy(),
              "channel": [f"C{i}" for i in range(n_channels)],
              "time": np.round(-0.2 + 0.02 * np.arange(n_times), 3)}  # fmt: skip
    series = xr.DataArray(x, dims=("epoch", "channel", "time"), coords=coords)
    cfg = Config(stats={"n_permutations": 1000})
    dec.time_resolved(series.isel(time=slice(0, 3)), table, config=cfg, n_jobs=1)  # load the kernel
    wall, cpu = time.perf_counter(), time.process_time()
    res = dec.time_resolved(series, table, config=cfg, generalization=generalization, n_jobs=1)
    return {"n_times": n_times, "generalization": generalization,
            "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
            "n_permutations": res.test["n_permutations"],
            "found_planted": bool(res.clusters["significant"].any())}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table; write JSON."""
    from sklearn.feature_selection import f_classif
    from threadpoolctl import threadpool_limits

    from mmme_neuro import decoding as dec

    table = _table()
    res: dict[str, object] = {"n_subjects": 12, "machine": platform.machine(), "python": platform.python_version()}
    rows = ["One LOSO run (12 fits) of the permutation test, default study's shape, ME vs MaE "
            "(one thread, median of 5)", "", "| feature set | fusion | features | refit, f_classif (s) | "
            "refit, anova_f (s) | ours (s) | ours faster by | max diff |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    with threadpool_limits(1):
        for fset, fusion in (("eeg", "early"), ("physio", "early"), ("eeg+physio", "late")):
            r = _time_set(table, fset, fusion)
            res[f"{fset}_{fusion}"] = r
            rows.append(f"| {fset} | {fusion} | {r['n_features']} | {r['refit_f_classif_s']:.3f} | "
                        f"{r['refit_anova_f_s']:.3f} | {r['ours_s']:.3f} | {r['refit_f_classif_s'] / r['ours_s']:.1f}x | "
                        f"{r['max_abs_diff']:.1e} |")  # fmt: skip
        rows_t, y, _, X, _, _ = dec._task_matrix(table, "me_vs_mae", "eeg")  # noqa: N806
        tr = rows_t["subject"].to_numpy() != "sub-01"
        t_fc, f_ref = _median_time(lambda: f_classif(X[tr], y[tr])[0], 20)
        t_af, f_ours = _median_time(lambda: dec.anova_f(X[tr], y[tr]), 20)
    res["anova"] = {"rows": int(tr.sum()), "features": X.shape[1], "f_classif_ms": t_fc * 1e3, "anova_f_ms": t_af * 1e3,
                    "max_rel_diff": float(np.max(np.abs(f_ours / f_ref - 1)))}  # fmt: skip
    rows += ["", f"ANOVA F of one training fold ({int(tr.sum())} x {X.shape[1]}): sklearn f_classif "
             f"{t_fc * 1e3:.2f} ms, anova_f {t_af * 1e3:.2f} ms ({t_fc / t_af:.0f}x), largest relative difference "
             f"{res['anova']['max_rel_diff']:.1e}."]  # fmt: skip
    rows += ["", "One time_resolved run, default study's shape (12 subjects x (6 ME + 25 MaE), "
             "62 channels), 1000 label-flip arrangements each re-running the LOSO, one process", "",
             "| samples | generalisation | wall (s) | CPU (s) |",
             "| ---: | --- | ---: | ---: |"]  # fmt: skip
    res["time_resolved"] = []
    with threadpool_limits(1):
        for n_times, gen in ((60, False), (60, True), (100, True)):
            r = _time_resolved(n_times, gen)
            res["time_resolved"].append(r)
            rows.append(f"| {n_times} | {'yes' if gen else 'no'} | {r['wall_s']:.2f} | "
                        f"{r['cpu_s']:.2f} |")
    res["load_average_1min_at_end"] = os.getloadavg()[0]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "decoding.json").write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    sys.stdout.write("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
