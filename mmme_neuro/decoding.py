"""Decoding expression type and emotion from per-epoch EEG, physiology and their fusion.

Works on the tidy feature table of :mod:`mmme_neuro.features` (one row per
epoch, ``subject`` and ``condition`` columns, feature columns by set) and on
the epoch time series for time-resolved decoding. Nothing here reads data.

Honest evaluation
-----------------
* **Leave-one-subject-out** (LOSO) by default: every fold tests one subject
  with a model fitted on the others. Imputation, scaling, feature selection
  and the classifier are one scikit-learn :class:`~sklearn.pipeline.Pipeline`
  fitted on the training fold only, so no epoch of the test subject
  influences training. (The steps that look at no label, imputation and
  constant columns, are fitted once per training fold and reused by every
  permutation of the labels: the same values as refitting them.)
  :func:`leakage_check` verifies this for any
  evaluation procedure: the prediction for one epoch of a test subject must
  not change when the subject's *other* epochs (features and labels) are
  replaced. It catches normalising or selecting features before splitting.
* ``cv="within_subject"`` (stratified k-fold over epochs, stratified by
  subject and label) puts epochs of every subject in training and test: it is
  optimistic (subject identity, session drifts and the muscle pattern of a
  person are learnt), and every output says so (``optimistic`` flag).
* Metrics as the micro-expression field reports them (MEGC convention):
  accuracy, **UF1** (unweighted mean of per-class F1) and **UAR**
  (unweighted average recall), computed on the out-of-fold predictions of all
  folds pooled, with a per-subject breakdown and the confusion matrix.
* Permutations run in parallel with ``decoding.n_jobs`` (joblib); each has
  its own seed, so the null distribution does not depend on ``n_jobs``.
* Chance level is not 1/n_classes (classes are unbalanced: ~6 ME vs ~26 MaE
  per subject): a permutation test shuffles labels *within subject* (keeping
  every subject's class counts) and re-runs the whole cross-validation; the
  null mean is the reported chance level, p = (1 + #null >= observed) /
  (1 + n_permutations).

Fusion
------
*Early* fusion concatenates feature sets (one pipeline, the selection sees all
features); *late* fusion fits one pipeline per set in each training fold and
averages their class probabilities (:class:`LateFusionClassifier`).

Time-resolved decoding
----------------------
:func:`time_resolved` fits a classifier per time point
(:class:`mne.decoding.SlidingEstimator`) and, optionally, tests it at every
other time point (:class:`mne.decoding.GeneralizingEstimator`) in LOSO folds,
scoring ROC AUC per test subject (subjects with both classes). The subjects'
AUC time courses are tested against 0.5 with a one-sided cluster-based
sign-flip permutation test over time (``mne.stats.permutation_cluster_1samp_test``;
the folds share training subjects, so this is the usual, slightly liberal,
group-level practice of MNE's examples rather than an exact test).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.feature_selection import SelectFromModel, SelectKBest, VarianceThreshold
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, f1_score, recall_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from . import __version__
from .config import Config, DecodingConfig
from .constants import COMPOSITE_EMOTION, EXPRESSION_EMOTIONS
from .features import feature_columns

__all__ = [
    "TASKS",
    "DecodingResult",
    "LateFusionClassifier",
    "Task",
    "TimeDecodingResult",
    "anova_f",
    "cross_val_proba",
    "cv_splits",
    "decode",
    "leakage_check",
    "make_pipeline",
    "pipeline_leakage_check",
    "scores",
    "summary_table",
    "task_data",
    "time_resolved",
]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Task:
    """A classification task: which epochs, which label.

    Attributes
    ----------
    name : str
        Identifier (``me_vs_mae``...).
    conditions : tuple of str
        Epoch conditions used.
    label : str
        ``"condition"``, ``"emotion3"`` (composite negative/positive/surprise
        of the coded emotion) or ``"emotion7"`` (the seven coded emotions).
    description : str
        Human-readable.
    """

    name: str
    conditions: tuple[str, ...]
    label: str
    description: str


#: The tasks of the MMME decoding benchmarks.
TASKS: dict[str, Task] = {
    "me_vs_mae": Task("me_vs_mae", ("ME", "MaE"), "condition", "micro- vs macro-expression"),
    "me_vs_ne": Task("me_vs_ne", ("ME", "NE"), "condition", "micro-expression vs no expression"),
    "emotion3": Task("emotion3", ("ME",), "emotion3", "emotion of micro-expressions: negative / positive / surprise"),
    "emotion7": Task("emotion7", ("ME",), "emotion7", "emotion of micro-expressions: the seven coded emotions"),
}


def _emotion(table: pd.DataFrame) -> pd.Series:
    e = table["emotion"] if "emotion" in table.columns else pd.Series([None] * len(table), index=table.index)
    e = e.astype(object).where(e.notna(), table.get("clip_emotion"))
    return e.astype(str).str.strip().str.lower()


def task_data(table: pd.DataFrame, task: str | Task, *, min_class_count: int = 10) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Rows and labels of a task.

    Parameters
    ----------
    table : pandas.DataFrame
        Feature table (``subject``, ``condition``, and ``emotion``/``clip_emotion``
        for emotion tasks).
    task : str | Task
        A :data:`TASKS` name or a :class:`Task`.
    min_class_count : int
        Emotion tasks: classes with fewer epochs overall are dropped ("where
        counts allow"; logged).

    Returns
    -------
    rows : pandas.DataFrame
        The task's rows (original index kept).
    y : numpy.ndarray of str
        Labels.
    classes : list of str
        Sorted classes.

    Raises
    ------
    ValueError
        Unknown task, missing columns, or fewer than two classes.
    """
    if isinstance(task, str):
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; known: {sorted(TASKS)}")
        task = TASKS[task]
    for c in ("subject", "condition"):
        if c not in table.columns:
            raise ValueError(f"the feature table has no {c!r} column")
    rows = table[table["condition"].isin(task.conditions)]
    if task.label == "condition":
        y = rows["condition"].astype(str).to_numpy()
    else:
        emo = _emotion(rows)
        if task.label == "emotion3":
            y = emo.map(lambda e: COMPOSITE_EMOTION.get(e)).to_numpy(dtype=object)
        else:
            y = emo.where(emo.isin(EXPRESSION_EMOTIONS)).to_numpy(dtype=object)
        ok = pd.notna(y)
        if not ok.all():
            logger.info("%s: %d epochs without a usable emotion label left out", task.name, int((~ok).sum()))
        rows, y = rows[ok], y[ok].astype(str)
        counts = pd.Series(y).value_counts()
        small = sorted(counts[counts < min_class_count].index)
        if small:
            logger.info("%s: classes with < %d epochs dropped: %s", task.name, min_class_count, small)
            keep = ~np.isin(y, small)
            rows, y = rows[keep], y[keep]
    classes = sorted(set(y))
    if len(classes) < 2:
        raise ValueError(f"task {task.name}: fewer than two classes in the table ({classes})")
    return rows, y, classes


# ----------------------------------------------------------------------------- pipelines


def _cfg(config: Config | DecodingConfig | None) -> DecodingConfig:
    if config is None:
        return DecodingConfig()
    return config.decoding if isinstance(config, Config) else config


def make_pipeline(config: Config | DecodingConfig | None = None, *, n_features: int | None = None, seed: int = 0,
                  impute: bool = True, label_free: bool = True) -> Pipeline:  # fmt: skip
    """The decoding pipeline: impute -> drop constants -> select -> scale -> classify.

    Every step is fitted on training data only when the pipeline is fitted
    in a cross-validation fold.

    Parameters
    ----------
    config : Config | DecodingConfig | None
        ``classifier``, ``feature_selection``, ``n_features``.
    n_features : int | None
        Number of input features; the selection keeps ``min(n_features,
        config.n_features)`` (all if None or smaller).
    seed : int
        Random state of stochastic steps (forests, SVM probability calibration).
    impute : bool
        Median imputation of missing values (fitted on the training fold).
        False for data without NaN: the imputer is a third of the fit time
        of a 1000-feature EEG set and would do nothing.
    label_free : bool
        Include the steps that do not look at labels (imputation, constant
        columns dropped). False for data that went through them already
        (:func:`decode` fits them once per fold and reuses them for every
        permutation of the labels).

    Returns
    -------
    pipeline : sklearn.pipeline.Pipeline
    """
    dec = _cfg(config)
    steps = _label_free_steps(impute) if label_free else []
    k = dec.n_features if n_features is None else min(dec.n_features, int(n_features))
    if dec.feature_selection != "none" and (n_features is None or n_features > k):
        # both selectors are invariant to per-feature scaling: select first, scale only the k kept
        if dec.feature_selection == "anova":
            steps.append(("select", SelectKBest(anova_f, k=k)))
        else:
            forest = RandomForestClassifier(n_estimators=200, class_weight="balanced", random_state=seed, n_jobs=1)
            steps.append(("select", SelectFromModel(forest, max_features=k, threshold=-np.inf)))
    steps.append(("scale", StandardScaler()))
    clf: Any
    if dec.classifier == "logreg":
        clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000)
    elif dec.classifier == "svm":
        clf = SVC(kernel="linear", C=1.0, class_weight="balanced", probability=True, random_state=seed)
    elif dec.classifier == "rf":
        clf = RandomForestClassifier(n_estimators=300, class_weight="balanced", random_state=seed, n_jobs=1)
    else:
        clf = HistGradientBoostingClassifier(class_weight="balanced", random_state=seed)
    steps.append(("classify", clf))
    return Pipeline(steps)


def _label_free_steps(impute: bool) -> list[tuple[str, Any]]:
    """Median imputation (if ``impute``) and constant columns dropped: fitted on rows, never on labels."""
    steps: list[tuple[str, Any]] = [
        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
        ("constant", VarianceThreshold(0.0)),
    ]
    return steps[0 if impute else 1 :]


def anova_f(X: np.ndarray, y: np.ndarray) -> np.ndarray:  # noqa: N803 (sklearn naming)
    """One-way ANOVA F of every column of ``X`` between the classes of ``y``.

    The F values of :func:`sklearn.feature_selection.f_classif` (equal to
    1e-10 relative, tested), without its p-values and per-class copies of
    ``X``: 0.5 ms instead of 6 ms for 341 epochs x 1008 features, where it
    was the largest part of a decoding fit (``benchmarks/bench_decoding.py``).
    Constant columns give NaN (sklearn: NaN, or the ratio of two round-off
    residues, ~0 or not depending on the machine's summation order; both
    rank last in :class:`~sklearn.feature_selection.SelectKBest`), columns
    without variance within the classes inf, as there.

    Parameters
    ----------
    X : numpy.ndarray
        ``(n_samples, n_features)``.
    y : numpy.ndarray
        ``(n_samples,)`` class labels.

    Returns
    -------
    f : numpy.ndarray
        ``(n_features,)``.
    """
    X = np.asarray(X, dtype=float)  # noqa: N806
    y = np.asarray(y)
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise ValueError(f"ANOVA F needs X (samples, features) and y (samples,), got shapes {X.shape} and {y.shape}")
    classes, code = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise ValueError(f"ANOVA F needs at least 2 classes, got {classes.size}")
    onehot = np.zeros((code.size, classes.size))
    onehot[np.arange(code.size), code] = 1.0
    n_per_class = onehot.sum(axis=0)
    sums = onehot.T @ X  # (n_classes, n_features)
    total = sums.sum(axis=0)
    correction = total**2 / code.size
    ss_between = (sums**2 / n_per_class[:, None]).sum(axis=0) - correction
    ss_within = np.einsum("ij,ij->j", X, X) - correction - ss_between
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (ss_between / (classes.size - 1)) / (ss_within / (code.size - classes.size))
    f[X.max(axis=0) == X.min(axis=0)] = np.nan  # both sums of squares are round-off there: not a score
    return f


class LateFusionClassifier(ClassifierMixin, BaseEstimator):
    """Late fusion: one pipeline per column group, class probabilities averaged.

    Parameters
    ----------
    estimator : sklearn estimator
        Pipeline cloned for every group (must implement ``predict_proba``).
    groups : sequence of sequence of int
        Column indices of each modality in ``X``.
    weights : sequence of float | None
        Weights of the groups' probabilities (default equal).
    """

    def __init__(self, estimator: Any, groups: Sequence[Sequence[int]], weights: Sequence[float] | None = None):
        self.estimator = estimator
        self.groups = groups
        self.weights = weights

    def fit(self, X: np.ndarray, y: np.ndarray) -> LateFusionClassifier:  # noqa: N803 (sklearn naming)
        """Fit one clone per column group on the same rows."""
        X = np.asarray(X)
        self.classes_ = np.unique(y)
        self.estimators_ = [clone(self.estimator).fit(X[:, list(g)], y) for g in self.groups]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """Weighted mean of the groups' class probabilities."""
        X = np.asarray(X)
        w = np.ones(len(self.groups)) if self.weights is None else np.asarray(self.weights, float)
        out = np.zeros((len(X), len(self.classes_)))
        for wi, est, g in zip(w, self.estimators_, self.groups, strict=True):
            p = est.predict_proba(X[:, list(g)])
            out[:, np.searchsorted(self.classes_, est.classes_)] += wi * p
        return out / w.sum()

    def predict(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """Class of highest fused probability."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


# ----------------------------------------------------------------------------- cross-validation


def cv_splits(y: Sequence[Any], groups: Sequence[Any], *, cv: str = "loso", n_folds: int = 10,
              seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """Train/test index pairs.

    Parameters
    ----------
    y, groups : sequence
        Labels and subjects of the rows.
    cv : {'loso', 'within_subject'}
        Leave-one-subject-out (one fold per subject, in sorted order), or
        stratified k-fold over rows stratified by subject x label (optimistic).
    n_folds : int
        Folds of ``within_subject``.
    seed : int
        Shuffling seed of ``within_subject``.

    Returns
    -------
    splits : list of (train, test) index arrays
    """
    y, groups = np.asarray(y), np.asarray(groups)
    if y.shape != groups.shape:
        raise ValueError(f"y and groups differ in length ({y.size} vs {groups.size})")
    if cv == "loso":
        subjects = sorted(set(groups.tolist()))
        if len(subjects) < 2:
            raise ValueError(f"leave-one-subject-out needs >= 2 subjects, got {len(subjects)}")
        idx = np.arange(y.size)
        return [(idx[groups != s], idx[groups == s]) for s in subjects]
    if cv == "within_subject":
        strata = np.char.add(np.char.add(groups.astype(str), "|"), y.astype(str))
        smallest = int(pd.Series(strata).value_counts().min())
        k = max(2, min(int(n_folds), smallest))
        if smallest < 2:
            # strata with a single epoch cannot be split: stratify on label only for them
            strata = np.where(pd.Series(strata).map(pd.Series(strata).value_counts()).to_numpy() < 2, y.astype(str), strata)
            k = max(2, min(int(n_folds), int(pd.Series(strata).value_counts().min())))
        if k < n_folds:
            logger.info("within-subject cross-validation: %d folds instead of %d (smallest subject x class stratum)", k, n_folds)
        skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        return [(tr, te) for tr, te in skf.split(np.zeros(y.size), strata)]
    raise ValueError(f"cv must be 'loso' or 'within_subject', got {cv!r}")


def cross_val_proba(X: np.ndarray, y: np.ndarray, splits: Sequence[tuple[np.ndarray, np.ndarray]], estimator: Any,  # noqa: N803
                    classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Out-of-fold class probabilities.

    Returns
    -------
    proba : numpy.ndarray
        ``(n_rows, n_classes)`` in the order of ``classes`` (0 for a class
        absent from a training fold); NaN for rows in no test fold.
    fold : numpy.ndarray of int
        Test fold of each row (-1: none).
    """
    folds = [_Fold(tr, te, X[tr], X[te], []) for tr, te in splits]
    return _folds_proba(folds, y, lambda _: clone(estimator), classes)


@dataclass
class _Fold:
    """A training/test split and its feature matrices (after the label-free steps, if :func:`_prepare_folds`)."""

    train: np.ndarray
    test: np.ndarray
    X_train: np.ndarray  # noqa: N815
    X_test: np.ndarray  # noqa: N815
    col_groups: list[list[int]]


def _prepare_folds(X: np.ndarray, splits: Sequence[tuple[np.ndarray, np.ndarray]],  # noqa: N803
                   col_groups: list[list[int]]) -> list[_Fold]:  # fmt: skip
    """The label-free steps (:func:`_label_free_steps`) fitted on each training fold and applied to its test rows.

    They look at no label, so the permutations of a leave-one-subject-out test
    (same folds, labels shuffled) reuse them instead of refitting (measured in
    ``benchmarks/bench_decoding.py``). The steps work column by column, so
    applying them to all columns before a late fusion's per-set pipelines
    gives those pipelines the values they would compute: ``col_groups`` are
    mapped to the kept columns (a set with none left is an error, as in the
    pipeline itself). An imputer is among the steps when ``X`` (all rows) has
    a missing value: a structural choice fitted on nothing, so it cannot leak.
    """
    impute = bool(np.isnan(X).any())
    folds = []
    for i, (tr, te) in enumerate(splits):
        prep = Pipeline(_label_free_steps(impute)).fit(X[tr])
        keep = prep[-1].get_support()
        position = np.cumsum(keep) - 1
        groups = [position[np.asarray(g)][keep[np.asarray(g)]].tolist() for g in col_groups]
        empty = [k for k, g in enumerate(groups) if not g]
        if empty:
            raise ValueError(f"feature set {empty[0] + 1} of {len(groups)}: no column varies in the training rows "
                             f"of fold {i + 1} of {len(splits)}")  # fmt: skip
        folds.append(_Fold(tr, te, prep.transform(X[tr]), prep.transform(X[te]), groups))
    return folds


def _folds_proba(folds: Sequence[_Fold], y: np.ndarray, estimator_for: Callable[[_Fold], Any],
                 classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Fit ``estimator_for(fold)`` on each fold's training rows; out-of-fold probabilities (see :func:`cross_val_proba`)."""
    classes = np.asarray(classes)
    n = len(y)
    proba = np.full((n, classes.size), np.nan)
    fold_of = np.full(n, -1)
    for i, f in enumerate(folds):
        est = estimator_for(f).fit(f.X_train, y[f.train])
        out = np.zeros((f.test.size, classes.size))
        out[:, np.searchsorted(classes, est.classes_)] = est.predict_proba(f.X_test)
        proba[f.test] = out
        fold_of[f.test] = i
    return proba, fold_of


def scores(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> dict[str, float]:
    """Accuracy, UF1 and UAR.

    UF1 is the unweighted mean over ``classes`` of per-class F1 (a class never
    predicted nor present counts 0); UAR is the unweighted mean of per-class
    recall over the classes present in ``y_true``.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.size == 0:
        return {"accuracy": np.nan, "uf1": np.nan, "uar": np.nan}
    present = [c for c in classes if (y_true == c).any()]
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "uf1": float(f1_score(y_true, y_pred, labels=list(classes), average="macro", zero_division=0)),
        "uar": float(recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
    }


def _shuffle_within(y: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = y.copy()
    for s in np.unique(groups):
        idx = np.flatnonzero(groups == s)
        out[idx] = y[rng.permutation(idx)]
    return out


# ----------------------------------------------------------------------------- results


@dataclass
class DecodingResult:
    """Cross-validated decoding of one task with one feature set.

    Attributes
    ----------
    task, feature_set, fusion : str
        What was decoded from what; fusion ``"none"``, ``"early"`` or ``"late"``.
    cv : str
        ``"loso"`` or ``"within_subject"``.
    optimistic : bool
        True for within-subject cross-validation.
    classes : list of str
    scores : dict
        Pooled ``accuracy``, ``uf1``, ``uar``.
    chance : dict
        Mean of the permutation null per metric (NaN without permutations).
    p_values : dict
        Permutation p per metric.
    null : pandas.DataFrame
        One row per permutation: ``accuracy``, ``uf1``, ``uar``.
    predictions : pandas.DataFrame
        ``epoch_id``, ``subject``, ``y_true``, ``y_pred``, ``fold``, ``proba_<class>``.
    per_subject : pandas.DataFrame
        ``subject``, ``n_epochs``, ``n_<class>``, ``accuracy``, ``uf1``, ``uar``.
    confusion : xarray.DataArray
        ``(true, predicted)`` counts.
    n_features : int
        Input features.
    """

    task: str
    feature_set: str
    fusion: str
    cv: str
    optimistic: bool
    classes: list[str]
    scores: dict[str, float]
    chance: dict[str, float]
    p_values: dict[str, float]
    null: pd.DataFrame
    predictions: pd.DataFrame
    per_subject: pd.DataFrame
    confusion: xr.DataArray
    n_features: int
    attrs: dict[str, Any] = field(default_factory=dict)

    def summary_row(self) -> dict[str, Any]:
        """One tidy row: task, set, fusion, cv, counts, metrics, chance, p."""
        row: dict[str, Any] = {"task": self.task, "feature_set": self.feature_set, "fusion": self.fusion, "cv": self.cv,
                               "optimistic": self.optimistic, "n_subjects": int(self.predictions["subject"].nunique()),
                               "n_epochs": len(self.predictions), "n_features": self.n_features,
                               "classes": "/".join(self.classes)}  # fmt: skip
        for m in ("accuracy", "uf1", "uar"):
            row[m] = self.scores[m]
            row[f"{m}_chance"] = self.chance.get(m, np.nan)
            row[f"{m}_p"] = self.p_values.get(m, np.nan)
        row["n_permutations"] = len(self.null)
        row["n_epochs_without_features"] = len(self.attrs.get("epochs_without_features", []))
        return row


def _set_groups(table: pd.DataFrame, feature_set: str, exclude: Sequence[str] = ()) -> tuple[list[str], list[list[int]]]:
    """Columns of a (possibly fused) set and, for late fusion, the column groups per component set."""
    comps = feature_set.split("+") if "+" in feature_set else [feature_set]
    cols: list[str] = []
    groups: list[list[int]] = []
    drop = set(exclude)
    for c in comps:
        cc = [x for x in feature_columns(table, c) if x not in cols and x not in drop]
        if not cc:
            raise ValueError(f"feature set {c!r}: every column is excluded")
        groups.append(list(range(len(cols), len(cols) + len(cc))))
        cols += cc
    return cols, groups


def _one_thread(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``func`` with BLAS/OpenMP limited to one thread.

    The models here are small (hundreds of epochs x tens of features):
    multithreaded BLAS brings nothing, and with several processes on few
    cores (pytest-xdist, dask workers, joblib) its spinning threads made a
    decoding run up to 10x slower in our measurements.
    """
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with threadpool_limits(limits=1):
            return func(*args, **kwargs)

    return wrapper


def _task_matrix(table: pd.DataFrame, task: str | Task, feature_set: str, exclude: Sequence[str] = ()
                 ) -> tuple[pd.DataFrame, np.ndarray, list[str], np.ndarray, list[list[int]], list[str]]:  # fmt: skip
    """Rows, labels, classes, feature matrix and column groups of a task; epochs without any feature value left out."""
    rows, y, classes = task_data(table, task)
    cols, col_groups = _set_groups(rows, feature_set, exclude)
    X = rows[cols].to_numpy(float)  # noqa: N806
    usable = np.isfinite(X).any(axis=1)
    left_out = rows.loc[~usable, "epoch_id"].astype(str).tolist() if "epoch_id" in rows else []
    if not usable.all():
        logger.info("%s/%s: %d epochs without any feature value left out", getattr(task, "name", task), feature_set,
                    int((~usable).sum()))  # fmt: skip
        rows, y, X = rows[usable], y[usable], X[usable]  # noqa: N806
    return rows, y, classes, X, col_groups, left_out


def _estimator(dec: DecodingConfig, n_columns: int, col_groups: list[list[int]], fusion: str, seed: int,
               label_free: bool = False) -> Any:  # fmt: skip
    """The estimator :func:`decode` cross-validates: one pipeline (early fusion) or one per set (late).

    It expects data after :func:`_prepare_folds`; ``label_free=True`` puts
    the constant-column step back (no imputer) for data without NaN.
    """
    if len(col_groups) > 1 and fusion == "late":
        return LateFusionClassifier(_GroupPipeline(dec, seed, impute=False, label_free=label_free), col_groups)
    return make_pipeline(dec, n_features=n_columns, seed=seed, impute=False, label_free=label_free)


def _cross_validate(X: np.ndarray, y: np.ndarray, splits: Sequence[tuple[np.ndarray, np.ndarray]],  # noqa: N803
                    col_groups: list[list[int]], dec: DecodingConfig, fusion: str, seed: int,
                    classes: Sequence[str], folds: Sequence[_Fold] | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Out-of-fold probabilities of :func:`decode`'s estimator; ``folds`` from :func:`_prepare_folds` if at hand."""
    if folds is None:
        folds = _prepare_folds(X, splits, col_groups)
    return _folds_proba(folds, y, lambda f: _estimator(dec, f.X_train.shape[1], f.col_groups, fusion, seed), classes)


@_one_thread
def decode(
    table: pd.DataFrame,
    task: str | Task,
    feature_set: str,
    *,
    config: Config | None = None,
    fusion: str = "early",
    n_permutations: int | None = None,
    seed: int | None = None,
    progress: bool = False,
    exclude_columns: Sequence[str] = (),
    label: str | None = None,
    n_jobs: int | None = None,
) -> DecodingResult:
    """Cross-validated decoding with a within-subject label-permutation test.

    Parameters
    ----------
    table : pandas.DataFrame
        Feature table (:mod:`mmme_neuro.features`), with ``epoch_id``,
        ``subject``, ``condition``.
    task : str | Task
        :data:`TASKS` name (``me_vs_mae``, ``me_vs_ne``, ``emotion3``, ``emotion7``).
    feature_set : str
        A :data:`mmme_neuro.features.FEATURE_SETS` name or ``"a+b"`` (sets
        fused as ``fusion`` says).
    config : Config | None
        ``decoding`` (cv, classifier, selection, permutations) and ``seed``.
    fusion : {'early', 'late'}
        How the sets of an ``"a+b"`` set are combined (ignored for one set).
    n_permutations : int | None
        Override ``decoding.n_permutations``; 0 skips the test.
    seed : int | None
        Override ``config.seed``.
    progress : bool
        Show a progress bar over permutations.
    exclude_columns : sequence of str
        Feature columns left out of the set (e.g.
        :func:`mmme_neuro.features.emg_prone_columns`).
    label : str | None
        Name of the feature set in the result (default ``feature_set``).
    n_jobs : int | None
        Override ``decoding.n_jobs`` (parallel permutations; the results do
        not depend on it).

    Returns
    -------
    DecodingResult
    """
    config = config or Config()
    dec = config.decoding
    seed = config.seed if seed is None else int(seed)
    if fusion not in ("early", "late"):
        raise ValueError(f"fusion must be 'early' or 'late', got {fusion!r}")
    rows, y, classes, X, col_groups, left_out = _task_matrix(table, task, feature_set, exclude_columns)  # noqa: N806
    task_name = task if isinstance(task, str) else task.name
    groups = rows["subject"].astype(str).to_numpy()
    kind = "none" if len(col_groups) == 1 else fusion
    splits = cv_splits(y, groups, cv=dec.cv, n_folds=dec.n_folds, seed=seed)
    # leave-one-subject-out folds do not depend on labels: their label-free steps serve every permutation
    folds = _prepare_folds(X, splits, col_groups) if dec.cv == "loso" else None
    proba, fold = _cross_validate(X, y, splits, col_groups, dec, fusion, seed, classes, folds)
    cls = np.asarray(classes)
    pred = cls[np.argmax(proba, axis=1)]
    sc = scores(y, pred, classes)
    n_perm = dec.n_permutations if n_permutations is None else int(n_permutations)

    def one_permutation(i: int) -> dict[str, float]:
        # each permutation has its own seed: the null is the same whatever n_jobs
        yp = _shuffle_within(y, groups, np.random.default_rng([seed, 7919, i]))
        sp = splits if folds is not None else cv_splits(yp, groups, cv=dec.cv, n_folds=dec.n_folds, seed=seed)
        pp, _ = _cross_validate(X, yp, sp, col_groups, dec, fusion, seed, classes, folds)
        return scores(yp, cls[np.argmax(pp, axis=1)], classes)

    perms = tqdm(range(n_perm), desc=f"{task_name}/{feature_set} permutations", disable=not progress, leave=False)
    null_rows = Parallel(n_jobs=dec.n_jobs if n_jobs is None else int(n_jobs))(delayed(one_permutation)(i) for i in perms)
    null = pd.DataFrame(null_rows, columns=["accuracy", "uf1", "uar"])
    chance = {m: float(null[m].mean()) if len(null) else np.nan for m in null.columns}
    pvals = {m: float((1 + (null[m] >= sc[m] - 1e-12).sum()) / (1 + len(null))) if len(null) else np.nan
             for m in null.columns}  # fmt: skip
    preds = pd.DataFrame({"epoch_id": rows["epoch_id"].astype(str).to_numpy() if "epoch_id" in rows else np.arange(len(y)),
                          "subject": groups, "y_true": y, "y_pred": pred, "fold": fold})  # fmt: skip
    for j, c in enumerate(classes):
        preds[f"proba_{c}"] = proba[:, j]
    per = []
    for s, d in preds.groupby("subject", sort=True):
        r = {"subject": s, "n_epochs": len(d), **{f"n_{c}": int((d["y_true"] == c).sum()) for c in classes}}
        r.update(scores(d["y_true"], d["y_pred"], classes))
        per.append(r)
    cm = confusion_matrix(y, pred, labels=classes)
    conf = xr.DataArray(cm, dims=("true", "predicted"), coords={"true": classes, "predicted": classes}, name="confusion",
                        attrs={"units": "epochs"})  # fmt: skip
    attrs = {"mmme_neuro_version": __version__, "config_hash": config.hash(), "seed": seed,
             "classifier": dec.classifier, "feature_selection": dec.feature_selection, "n_features_selected": dec.n_features}  # fmt: skip
    attrs["excluded_columns"] = sorted(set(exclude_columns) & set(rows.columns))
    attrs["epochs_without_features"] = left_out  # not decoded: every feature of the set is missing
    return DecodingResult(task_name, label or feature_set, kind, dec.cv, dec.cv != "loso", list(classes), sc, chance, pvals, null,
                          preds, pd.DataFrame(per), conf, X.shape[1], attrs)  # fmt: skip


class _GroupPipeline(BaseEstimator):
    """A decoding pipeline whose selection size adapts to the number of columns it is fitted on."""

    def __init__(self, config: DecodingConfig, seed: int = 0, impute: bool = True, label_free: bool = True):
        self.config = config
        self.seed = seed
        self.impute = impute
        self.label_free = label_free

    def fit(self, X: np.ndarray, y: np.ndarray) -> _GroupPipeline:  # noqa: N803
        self.pipeline_ = make_pipeline(self.config, n_features=X.shape[1], seed=self.seed, impute=self.impute,
                                       label_free=self.label_free).fit(X, y)  # fmt: skip
        self.classes_ = self.pipeline_.classes_
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        return self.pipeline_.predict_proba(X)


# ----------------------------------------------------------------------------- leakage


def leakage_check(
    evaluate: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    X: np.ndarray,  # noqa: N803
    y: np.ndarray,
    groups: np.ndarray,
    *,
    n_subjects: int = 2,
    seed: int = 0,
    tol: float = 1e-9,
) -> pd.DataFrame:
    """Check that an evaluation procedure keeps test subjects out of training.

    ``evaluate(X, y, groups)`` must return out-of-fold predictions (class
    probabilities or decision values) for every row. For a test subject ``s``
    and one of its epochs ``i``, the prediction for ``i`` may depend only on
    the training subjects and on ``x_i``. The check replaces the *other*
    epochs of ``s`` (features: far-off random values; labels: rotated) and
    re-evaluates: any change of the prediction for ``i`` means that those
    epochs reached the model, e.g. by normalising, imputing or selecting
    features on all data before splitting, or by within-subject folds.

    Parameters
    ----------
    evaluate : callable
        ``(X, y, groups) -> (n_rows, ...) array``; deterministic.
    X, y, groups : numpy.ndarray
        Data, labels, subjects.
    n_subjects : int
        Subjects probed (those with the most epochs first).
    seed : int
        Seed of the replacement values.
    tol : float
        Largest change counted as no change.

    Returns
    -------
    report : pandas.DataFrame
        ``subject``, ``probe_row``, ``max_abs_change``, ``leak`` (bool).
        ``report["leak"].any()`` is the verdict.
    """
    X, y, groups = np.asarray(X, float), np.asarray(y), np.asarray(groups)  # noqa: N806
    base = np.asarray(evaluate(X, y, groups), float)
    rng = np.random.default_rng(seed)
    counts = pd.Series(groups).value_counts(sort=False)
    subjects = sorted(counts[counts >= 2].index, key=lambda s: (-counts[s], str(s)))[:n_subjects]
    if not subjects:
        raise ValueError("leakage check needs a subject with at least two epochs")
    labels = np.unique(y)
    scale = np.nanstd(X, axis=0) + 1.0
    rows = []
    for s in subjects:
        idx = np.flatnonzero(groups == s)
        probe, others = idx[0], idx[1:]
        X2, y2 = X.copy(), y.copy()  # noqa: N806
        X2[others] = np.nanmean(X, axis=0) + 10 * scale * rng.standard_normal((others.size, X.shape[1]))
        y2[others] = labels[(np.searchsorted(labels, y[others]) + 1) % labels.size]
        out = np.asarray(evaluate(X2, y2, groups), float)
        change = float(np.nanmax(np.abs(np.atleast_1d(out[probe] - base[probe]))))
        rows.append({"subject": str(s), "probe_row": int(probe), "max_abs_change": change, "leak": change > tol})
    return pd.DataFrame(rows)


def pipeline_leakage_check(table: pd.DataFrame, task: str | Task, feature_set: str, *, config: Config | None = None,
                           fusion: str = "early", exclude_columns: Sequence[str] = (),
                           n_subjects: int = 2) -> pd.DataFrame:  # fmt: skip
    """:func:`leakage_check` of the very estimator, rows and folds :func:`decode` uses (no permutations).

    Parameters are those of :func:`decode`; see :func:`leakage_check` for the report.
    """
    config = config or Config()
    dec = config.decoding
    rows, y, classes, X, col_groups, _ = _task_matrix(table, task, feature_set, exclude_columns)  # noqa: N806

    def evaluate(Xe: np.ndarray, ye: np.ndarray, ge: np.ndarray) -> np.ndarray:  # noqa: N803
        splits = cv_splits(ye, ge, cv=dec.cv, n_folds=dec.n_folds, seed=config.seed)
        return _cross_validate(Xe, ye, splits, col_groups, dec, fusion, config.seed, classes)[0]

    return leakage_check(evaluate, X, y, rows["subject"].astype(str).to_numpy(), n_subjects=n_subjects, seed=config.seed)


# ----------------------------------------------------------------------------- time-resolved


@dataclass
class TimeDecodingResult:
    """Time-resolved (and temporal-generalisation) decoding.

    Attributes
    ----------
    scores : xarray.DataArray
        ``(subject, time)`` ROC AUC of each test subject.
    generalization : xarray.DataArray | None
        ``(subject, train_time, test_time)`` AUC.
    clusters : pandas.DataFrame
        Clusters of AUC > 0.5 over time: ``start_s``, ``stop_s``, ``mass``, ``p``, ``significant``.
    significant : xarray.DataArray
        ``(time,)`` bool, inside a significant cluster.
    first_significant_s : float
        Earliest time in a significant cluster (NaN if none): when the
        information appears relative to the landmark.
    gen_significant : xarray.DataArray | None
        ``(train_time, test_time)`` bool.
    skipped_subjects : list of dict
        ``subject`` and ``reason`` of subjects not tested (AUC needs both classes).
    """

    scores: xr.DataArray
    generalization: xr.DataArray | None
    clusters: pd.DataFrame
    significant: xr.DataArray
    first_significant_s: float
    gen_significant: xr.DataArray | None
    skipped_subjects: list[dict[str, str]] = field(default_factory=list)


def _mask(cluster: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Boolean mask of a cluster given as MNE indices (tuple of index arrays)."""
    m = np.zeros(shape, bool)
    m[tuple(np.asarray(i) for i in cluster)] = True
    return m


@_one_thread
def time_resolved(
    series: xr.DataArray,
    table: pd.DataFrame,
    task: str | Task = "me_vs_mae",
    *,
    config: Config | None = None,
    generalization: bool = True,
    seed: int | None = None,
    n_jobs: int | None = None,
) -> TimeDecodingResult:
    """Sliding-estimator decoding over time with LOSO folds and a cluster test.

    Parameters
    ----------
    series : xarray.DataArray
        ``(epoch, channel, time)`` (:func:`mmme_neuro.features.time_series`),
        ``epoch`` = ``epoch_id`` of ``table``.
    table : pandas.DataFrame
        Rows with ``epoch_id``, ``subject``, ``condition`` (a feature table).
    task : str | Task
        A binary task (``me_vs_mae``, ``me_vs_ne``).
    config : Config | None
        ``stats`` (permutations, cluster-forming p, alpha) and ``seed``.
    generalization : bool
        Also train at each time and test at every time.
    seed : int | None
        Override ``config.seed``.
    n_jobs : int | None
        Processes over the folds and the cluster test's permutations
        (default ``decoding.n_jobs``; the results do not depend on it).

    Returns
    -------
    TimeDecodingResult
    """
    from mne.decoding import GeneralizingEstimator, SlidingEstimator
    from mne.stats import permutation_cluster_1samp_test
    from scipy import stats as sstats

    config = config or Config()
    seed = config.seed if seed is None else int(seed)
    n_jobs = config.decoding.n_jobs if n_jobs is None else int(n_jobs)
    rows, y, classes = task_data(table, task)
    if len(classes) != 2:
        raise ValueError(f"time-resolved decoding needs a binary task, got classes {classes}")
    ids = rows["epoch_id"].astype(str).to_numpy()
    have = set(map(str, series["epoch"].values))
    ok = np.isin(ids, list(have))
    rows, y, ids = rows[ok], y[ok], ids[ok]
    X = series.sel(epoch=ids).transpose("epoch", "channel", "time").values.astype(float)  # noqa: N806
    yb = (y == classes[0]).astype(int)  # positive class: the first (ME)
    groups = rows["subject"].astype(str).to_numpy()
    base = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000))])
    times = series["time"].values
    subjects, skipped, folds = [], [], []
    for tr, te in cv_splits(yb, groups, cv="loso"):
        if len(np.unique(yb[te])) < 2 or len(np.unique(yb[tr])) < 2:
            present = sorted(set(y[te]))
            skipped.append({"subject": str(groups[te][0]), "reason": f"only {present} epochs: AUC undefined"})
            logger.info("time-resolved %s: %s skipped (%s)", getattr(task, "name", task), *skipped[-1].values())
            continue
        folds.append((tr, te))
        subjects.append(groups[te][0])

    def one_fold(tr: np.ndarray, te: np.ndarray) -> np.ndarray:
        if generalization:
            # the generalising estimator fits the very per-time models of the sliding one (deterministic
            # fits): its diagonal is the sliding score, so the models are fitted once, not twice
            return GeneralizingEstimator(clone(base), scoring="roc_auc", verbose=False).fit(X[tr], yb[tr]).score(X[te], yb[te])
        return SlidingEstimator(clone(base), scoring="roc_auc", verbose=False).fit(X[tr], yb[tr]).score(X[te], yb[te])

    # folds in parallel (one process's fits are as in serial: the scores do not depend on n_jobs)
    fold_scores = Parallel(n_jobs=n_jobs)(delayed(one_fold)(tr, te) for tr, te in folds)
    gen_scores = fold_scores if generalization else []
    subj_scores = [np.diag(g).copy() for g in fold_scores] if generalization else fold_scores
    if len(subjects) < 2:
        raise ValueError(f"time-resolved decoding needs >= 2 test subjects with both classes, got {len(subjects)}")
    sc = xr.DataArray(np.asarray(subj_scores), dims=("subject", "time"), coords={"subject": subjects, "time": times},
                      name="auc", attrs={"units": "1", "chance": 0.5, "task": rows.attrs.get("task", str(task)),
                                         "positive_class": classes[0]})  # fmt: skip
    sc["time"].attrs["units"] = "s"
    n = len(subjects)
    thr = float(sstats.t.ppf(1 - config.stats.cluster_forming_p, n - 1))
    t_obs, clusters, pv, _ = permutation_cluster_1samp_test(
        sc.values - 0.5, threshold=thr, tail=1, n_permutations=config.stats.n_permutations,
        rng=np.random.default_rng(seed), out_type="indices", n_jobs=n_jobs, verbose=False)  # fmt: skip
    rows_c, sig = [], np.zeros(times.size, bool)
    for cl, p in zip(clusters, pv, strict=True):
        m = _mask(cl, (times.size,))
        idx = np.flatnonzero(m)
        rows_c.append({"start_s": float(times[idx[0]]), "stop_s": float(times[idx[-1]]), "mass": float(t_obs[m].sum()),
                       "p": float(p), "significant": bool(p < config.stats.alpha)})  # fmt: skip
        if p < config.stats.alpha:
            sig |= m
    gen = gsig = None
    if generalization:
        gen = xr.DataArray(np.asarray(gen_scores), dims=("subject", "train_time", "test_time"),
                           coords={"subject": subjects, "train_time": times, "test_time": times}, name="auc",
                           attrs={"units": "1", "chance": 0.5})  # fmt: skip
        gen["train_time"].attrs["units"] = "s"
        gen["test_time"].attrs["units"] = "s"
        _, gcl, gpv, _ = permutation_cluster_1samp_test(gen.values - 0.5, threshold=thr, tail=1,
                                                        n_permutations=config.stats.n_permutations,
                                                        rng=np.random.default_rng(seed), out_type="indices",
                                                        n_jobs=n_jobs, verbose=False)  # fmt: skip
        gmask = np.zeros((times.size, times.size), bool)
        for cl, p in zip(gcl, gpv, strict=True):
            if p < config.stats.alpha:
                gmask |= _mask(cl, gmask.shape)
        gsig = xr.DataArray(gmask, dims=("train_time", "test_time"), coords={"train_time": times, "test_time": times})
    first = float(times[np.flatnonzero(sig)[0]]) if sig.any() else float("nan")
    clusters_df = pd.DataFrame(rows_c, columns=["start_s", "stop_s", "mass", "p", "significant"])
    return TimeDecodingResult(sc, gen, clusters_df, xr.DataArray(sig, dims=("time",), coords={"time": times}), first, gsig,
                              skipped)  # fmt: skip


def summary_table(results: Sequence[DecodingResult]) -> pd.DataFrame:
    """One row per :class:`DecodingResult` (:meth:`DecodingResult.summary_row`)."""
    return pd.DataFrame([r.summary_row() for r in results])

