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
  per subject). A permutation test re-runs the whole cross-validation with
  the classes of every subject renamed by its own random permutation (two
  classes: ME <-> MaE for a random half of the subjects;
  ``decoding.null = "relabel_subjects"``) and scores the predictions, mapped
  back, against the observed labels; the null mean is the reported chance
  level, p = (1 + #null >= observed) / (1 + n_permutations). Renaming whole
  subjects keeps each subject's own difference between its classes, which
  real subjects have (their own muscle pattern, their own strategy) even
  when the population has none; shuffling labels within subject (the option
  ``"shuffle_within_subject"``, what this module did before) erases it, and
  since every subject's labels train the classifiers of all other folds,
  the held-out scores vary more than that null says (see the calibration
  benchmark). Every fit weighs each subject's classes equally
  (:func:`subject_class_weights`), so that renaming a subject moves no
  weight between classes.

Fusion
------
*Early* fusion concatenates feature sets (one pipeline, the selection sees all
features); *late* fusion fits one pipeline per set in each training fold and
averages their class probabilities (:class:`LateFusionClassifier`).

Time-resolved decoding
----------------------
:func:`time_resolved` fits a ridge classifier per time point and,
optionally, tests it at every other time point (temporal generalisation) in
LOSO folds, scoring ROC AUC per test subject (subjects with both classes).
The subjects' AUC - 0.5 are tested with a one-sided cluster-mass test over
time whose null re-runs the whole LOSO with the labels of random subjects
flipped (ME <-> MaE). Sign flips of the subjects' AUCs (MNE's
``permutation_cluster_1samp_test``, what this module did before) assume
independent scores, but the folds share training subjects: the AUCs are
positively correlated and that test rejected in 14 % of null data sets at
alpha = .05 (see the function's Notes). The classifier's weights are linear
in the labels, so each relabelling costs matrix products, not refits.
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
    "WeightedKBest",
    "anova_f",
    "cross_val_proba",
    "cv_splits",
    "decode",
    "leakage_check",
    "make_pipeline",
    "pipeline_leakage_check",
    "scores",
    "subject_class_weights",
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
                  impute: bool = True, label_free: bool = True, class_weight: str | None = "balanced") -> Pipeline:  # fmt: skip
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
    class_weight : {'balanced', None}
        Class weights of the classifier (and of the forest of the
        ``rf_importance`` selection). ``None`` for fits with sample weights
        that balance the classes themselves: :func:`decode` fits with
        :func:`subject_class_weights` (``fit(X, y, select__sample_weight=w,
        classify__sample_weight=w)``; the ANOVA selection weighs its class
        means and variances by them).

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
            steps.append(("select", WeightedKBest(anova_f, k=k)))
        else:
            forest = RandomForestClassifier(n_estimators=200, class_weight=class_weight, random_state=seed, n_jobs=1)
            steps.append(("select", SelectFromModel(forest, max_features=k, threshold=-np.inf)))
    steps.append(("scale", StandardScaler()))
    clf: Any
    if dec.classifier == "logreg":
        clf = LogisticRegression(C=1.0, class_weight=class_weight, max_iter=5000)
    elif dec.classifier == "svm":
        clf = SVC(kernel="linear", C=1.0, class_weight=class_weight, probability=True, random_state=seed)
    elif dec.classifier == "rf":
        clf = RandomForestClassifier(n_estimators=300, class_weight=class_weight, random_state=seed, n_jobs=1)
    else:
        clf = HistGradientBoostingClassifier(class_weight=class_weight, random_state=seed)
    steps.append(("classify", clf))
    return Pipeline(steps)


def _label_free_steps(impute: bool) -> list[tuple[str, Any]]:
    """Median imputation (if ``impute``) and constant columns dropped: fitted on rows, never on labels."""
    steps: list[tuple[str, Any]] = [
        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
        ("constant", VarianceThreshold(0.0)),
    ]
    return steps[0 if impute else 1 :]


def anova_f(X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> np.ndarray:  # noqa: N803 (sklearn naming)
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
    sample_weight : numpy.ndarray | None
        ``(n_samples,)`` positive weights (frequency weights scaled to sum
        to ``n_samples``): weighted class means and sums of squares, the
        degrees of freedom of the unweighted test. None: all 1.

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
    w = np.ones(code.size)
    if sample_weight is not None:
        w = np.asarray(sample_weight, dtype=float)
        if w.shape != (code.size,) or not (np.isfinite(w).all() and (w > 0).all()):
            raise ValueError(f"sample_weight must be {code.size} positive finite weights, got shape {w.shape}")
        w = w * (code.size / w.sum())
    onehot = np.zeros((code.size, classes.size))
    onehot[np.arange(code.size), code] = w
    n_per_class = onehot.sum(axis=0)
    sums = onehot.T @ X  # (n_classes, n_features)
    total = sums.sum(axis=0)
    correction = total**2 / code.size
    ss_between = (sums**2 / n_per_class[:, None]).sum(axis=0) - correction
    ss_within = np.einsum("ij,ij,i->j", X, X, w) - correction - ss_between
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (ss_between / (classes.size - 1)) / (ss_within / (code.size - classes.size))
    f[X.max(axis=0) == X.min(axis=0)] = np.nan  # both sums of squares are round-off there: not a score
    return f


class WeightedKBest(SelectKBest):
    """:class:`~sklearn.feature_selection.SelectKBest` whose ``fit`` takes sample weights.

    ``fit(X, y, sample_weight=w)`` scores the columns with
    ``score_func(X, y, sample_weight=w)`` (:func:`anova_f` takes them);
    without weights it is ``SelectKBest``.
    """

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> WeightedKBest:  # noqa: N803
        """Score the columns (weighted if ``sample_weight``) and keep the ``k`` best."""
        if sample_weight is None:
            return super().fit(X, y)
        X = np.asarray(X, dtype=float)  # noqa: N806
        self._check_params(X, y)
        self.scores_ = np.asarray(self.score_func(X, np.asarray(y), sample_weight=sample_weight), dtype=float)
        self.pvalues_ = None
        self.n_features_in_ = X.shape[1]
        return self


def subject_class_weights(y: Sequence[Any], groups: Sequence[Any]) -> np.ndarray:
    """Sample weights that give every subject's every class the same total weight (mean weight 1).

    An epoch of class ``c`` of subject ``s`` weighs ``n / (n_cells x n_sc)``
    (``n_sc`` epochs of ``c`` in ``s``; ``n_cells`` subject x class cells
    present). Every subject then contributes the same weight to each class,
    whatever its class counts, so that its own mean level (shared by its
    classes) cancels from the class contrast the classifier learns. It is
    what makes :func:`decode`'s null, which renames the classes of whole
    subjects, exchangeable by construction: a renamed subject's epochs keep
    their weights. With weights balanced over all epochs instead, a renamed
    subject with 25 "ME" epochs would outweigh the other subjects in the ME
    class and its level would enter the classifier, which the observed
    labelling never does. (On 80 null data sets at s = 1 the two rejected
    5 and 6 times: the construction, not that count, is the reason.) With
    equal class proportions in every subject these are the usual balanced
    weights.
    """
    cell = pd.Series(np.asarray(groups).astype(str)) + "\x00" + pd.Series(np.asarray(y).astype(str))
    counts = cell.map(cell.value_counts()).to_numpy(float)
    return cell.size / (cell.nunique() * counts)


def _fit_weighted(est: Any, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None) -> Any:  # noqa: N803
    """``est.fit(X, y)`` with ``sample_weight`` routed to the steps of a pipeline that take it."""
    if sample_weight is None:
        return est.fit(X, y)
    if isinstance(est, Pipeline):
        params = {f"{name}__sample_weight": sample_weight for name, _ in est.steps if name in ("select", "classify")}
        return est.fit(X, y, **params)
    return est.fit(X, y, sample_weight=sample_weight)


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

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> LateFusionClassifier:  # noqa: N803
        """Fit one clone per column group on the same rows (with the same ``sample_weight``, if given)."""
        X = np.asarray(X)
        self.classes_ = np.unique(y)
        self.estimators_ = [_fit_weighted(clone(self.estimator), X[:, list(g)], y, sample_weight) for g in self.groups]
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
                    classes: Sequence[str], *, groups: Sequence[Any] | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Out-of-fold class probabilities.

    With ``groups`` (subjects) each training fold is fitted with
    :func:`subject_class_weights` of its rows (a pipeline: routed to its
    ``select`` and ``classify`` steps; else ``fit(..., sample_weight=)``),
    as :func:`decode` does.

    Returns
    -------
    proba : numpy.ndarray
        ``(n_rows, n_classes)`` in the order of ``classes`` (0 for a class
        absent from a training fold); NaN for rows in no test fold.
    fold : numpy.ndarray of int
        Test fold of each row (-1: none).
    """
    folds = [_Fold(tr, te, X[tr], X[te], []) for tr, te in splits]
    return _folds_proba(folds, y, lambda _: clone(estimator), classes, None if groups is None else np.asarray(groups))


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
                 classes: Sequence[str], groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Fit ``estimator_for(fold)`` on each fold's training rows; out-of-fold probabilities (see :func:`cross_val_proba`).

    With ``groups``, every fit has the :func:`subject_class_weights` of its training rows.
    """
    classes = np.asarray(classes)
    n = len(y)
    proba = np.full((n, classes.size), np.nan)
    fold_of = np.full(n, -1)
    for i, f in enumerate(folds):
        w = None if groups is None else subject_class_weights(y[f.train], groups[f.train])
        est = _fit_weighted(estimator_for(f), f.X_train, y[f.train], w)
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


def _relabel_subjects(y: np.ndarray, groups: np.ndarray, classes: Sequence[str],
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Rename each subject's classes by its own random permutation of ``classes``.

    Returns the relabelled ``y`` and, per row, the inverse permutation as
    class codes (``back[k, j]``: the original class of row ``k``'s subject
    named ``classes[j]`` in the relabelled data), so that predictions can be
    scored against the original labels: a prediction is right for the
    relabelled data exactly when its inverse image is right for the original
    labels, and scoring with the original labels keeps the class prevalences
    of the observed data, on which F1 depends. With two classes this swaps
    the labels of a random half of the subjects.
    """
    cls = np.asarray(classes)
    _, g = np.unique(groups, return_inverse=True)
    perm = np.array([rng.permutation(cls.size) for _ in range(g.max() + 1)])
    back = np.argsort(perm, axis=1)
    return cls[perm[g, pd.Index(cls).get_indexer(y)]], back[g]


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
    the constant-column step back (no imputer) for data without NaN. It has
    no class weights: :func:`_cross_validate` fits it with
    :func:`subject_class_weights`.
    """
    if len(col_groups) > 1 and fusion == "late":
        return LateFusionClassifier(_GroupPipeline(dec, seed, impute=False, label_free=label_free, class_weight=None), col_groups)
    return make_pipeline(dec, n_features=n_columns, seed=seed, impute=False, label_free=label_free, class_weight=None)


def _cross_validate(X: np.ndarray, y: np.ndarray, groups: np.ndarray, splits: Sequence[tuple[np.ndarray, np.ndarray]],  # noqa: N803
                    col_groups: list[list[int]], dec: DecodingConfig, fusion: str, seed: int,
                    classes: Sequence[str], folds: Sequence[_Fold] | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Out-of-fold probabilities of :func:`decode`'s estimator, fitted with :func:`subject_class_weights`.

    ``folds`` from :func:`_prepare_folds` if at hand.
    """
    if folds is None:
        folds = _prepare_folds(X, splits, col_groups)
    return _folds_proba(folds, y, lambda f: _estimator(dec, f.X_train.shape[1], f.col_groups, fusion, seed), classes,
                        np.asarray(groups))  # fmt: skip


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
    """Cross-validated decoding with a label-permutation test whose null renames whole subjects' classes.

    The classifier of every fold is fitted with
    :func:`subject_class_weights` (each subject's classes weigh the same).
    The test (``decoding.null``, see the module docstring) re-runs the
    cross-validation ``n_permutations`` times.

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
    proba, fold = _cross_validate(X, y, groups, splits, col_groups, dec, fusion, seed, classes, folds)
    cls = np.asarray(classes)
    pred = cls[np.argmax(proba, axis=1)]
    sc = scores(y, pred, classes)
    n_perm = dec.n_permutations if n_permutations is None else int(n_permutations)

    def one_permutation(i: int) -> dict[str, float]:
        # each permutation has its own seed: the null is the same whatever n_jobs
        rng = np.random.default_rng([seed, 7919, i])
        if dec.null == "relabel_subjects":
            yp, back = _relabel_subjects(y, groups, classes, rng)
        else:
            yp, back = _shuffle_within(y, groups, rng), None
        sp = splits if folds is not None else cv_splits(yp, groups, cv=dec.cv, n_folds=dec.n_folds, seed=seed)
        pp, _ = _cross_validate(X, yp, groups, sp, col_groups, dec, fusion, seed, classes, folds)
        code = np.argmax(pp, axis=1)
        if back is None:
            return scores(yp, cls[code], classes)
        return scores(y, cls[back[np.arange(code.size), code]], classes)

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
    attrs = {"mmme_neuro_version": __version__, "config_hash": config.hash(), "seed": seed, "null": dec.null,
             "classifier": dec.classifier, "feature_selection": dec.feature_selection, "n_features_selected": dec.n_features}  # fmt: skip
    attrs["excluded_columns"] = sorted(set(exclude_columns) & set(rows.columns))
    attrs["epochs_without_features"] = left_out  # not decoded: every feature of the set is missing
    return DecodingResult(task_name, label or feature_set, kind, dec.cv, dec.cv != "loso", list(classes), sc, chance, pvals, null,
                          preds, pd.DataFrame(per), conf, X.shape[1], attrs)  # fmt: skip


class _GroupPipeline(BaseEstimator):
    """A decoding pipeline whose selection size adapts to the number of columns it is fitted on."""

    def __init__(self, config: DecodingConfig, seed: int = 0, impute: bool = True, label_free: bool = True,
                 class_weight: str | None = "balanced"):  # fmt: skip
        self.config = config
        self.seed = seed
        self.impute = impute
        self.label_free = label_free
        self.class_weight = class_weight

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> _GroupPipeline:  # noqa: N803
        pipe = make_pipeline(self.config, n_features=X.shape[1], seed=self.seed, impute=self.impute,
                             label_free=self.label_free, class_weight=self.class_weight)  # fmt: skip
        self.pipeline_ = _fit_weighted(pipe, X, y, sample_weight)
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
        return _cross_validate(Xe, ye, ge, splits, col_groups, dec, fusion, config.seed, classes)[0]

    return leakage_check(evaluate, X, y, rows["subject"].astype(str).to_numpy(), n_subjects=n_subjects, seed=config.seed)


# ----------------------------------------------------------------------------- time-resolved

#: Ridge penalty of the time-resolved classifier, as a fraction of the mean eigenvalue of the
#: training fold's within-subject scatter of the standardised channels. ``"ledoit_wolf"``
#: (default): ``a / (1 - a)`` with ``a`` the Ledoit-Wolf shrinkage intensity of that fold and
#: time, i.e. the shrinkage LDA of EEG decoding (Blankertz et al. 2011); it adapts to the
#: number of channels and epochs and does not depend on the labels. A fixed 1.0 (this
#: project's first choice) had 0.62 power on ``benchmarks/calibration_decoding.py`` (8
#: channels; Ledoit-Wolf 0.57) but a peak ME-vs-NE AUC of 0.63 on the default study's 62
#: channels (Ledoit-Wolf 0.68, the earlier logistic regression 0.76).
TIME_RIDGE: float | str = "ledoit_wolf"
#: What the null of the time-resolved cluster tests is, as results and summaries record it.
TIME_NULL = "class labels swapped in random subjects, whole LOSO re-run"
#: Null arrangements scored together: bounds memory; fixed, so results do not depend on n_jobs.
_FLIP_BLOCK = 100


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
        Clusters of AUC > 0.5 over time: ``start_s``, ``stop_s``, ``mass``, ``p``,
        ``significant``.
    significant : xarray.DataArray
        ``(time,)`` bool, inside a significant cluster.
    first_significant_s : float
        Earliest time in a significant cluster (NaN if none): when the
        information appears relative to the landmark.
    gen_significant : xarray.DataArray | None
        ``(train_time, test_time)`` bool.
    skipped_subjects : list of dict
        ``subject`` and ``reason`` of subjects not tested (AUC needs both classes).
    test : dict
        How the clusters were tested: ``null`` (:data:`TIME_NULL`),
        ``n_permutations`` (null arrangements the p counts, the observed one
        included: the smallest p is ``1 / n_permutations``), ``exact`` (all
        distinct arrangements enumerated), ``classifier``, ``ridge``,
        ``cluster_forming_t``, ``tail``.
    """

    scores: xr.DataArray
    generalization: xr.DataArray | None
    clusters: pd.DataFrame
    significant: xr.DataArray
    first_significant_s: float
    gen_significant: xr.DataArray | None
    skipped_subjects: list[dict[str, str]] = field(default_factory=list)
    test: dict[str, Any] = field(default_factory=dict)


@dataclass
class _TimeFold:
    """One leave-one-subject-out fold: each training subject's share of the test decisions.

    The fold's classifier is linear in the training labels, so its decision
    for a test epoch is the sum over training subjects of that subject's
    share (``diag[t, i, k]``: test epoch ``i`` at time ``t``, training
    subject ``k``); flipping subject ``k``'s labels negates its share.
    """

    subject: int  # the test subject, index among the flipped subjects
    sources: np.ndarray  # the training subjects with both classes (indices as ``subject``)
    pos: np.ndarray  # test epochs of the positive class (positions among the test rows)
    neg: np.ndarray
    diag: np.ndarray  # (time, n_test, n_sources)
    gen: np.ndarray | None  # (train_time, test_time, n_test, n_sources)


def _subject_codes(yb: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Regression targets ``+1/n_pos`` and ``-1/n_neg`` within each subject (0: one class)."""
    codes = np.zeros(yb.size)
    for s in np.unique(groups):
        m = groups == s
        n_pos = int(yb[m].sum())
        n_neg = int(m.sum()) - n_pos
        if n_pos and n_neg:
            codes[m] = np.where(yb[m] == 1, 1.0 / n_pos, -1.0 / n_neg)
    return codes


def _ridge_penalty(zc: np.ndarray) -> float:
    """The ridge penalty, relative to the mean eigenvalue of the scatter of ``zc``.

    ``TIME_RIDGE = "ledoit_wolf"``: the Ledoit-Wolf shrinkage intensity ``a``
    of the (subject-centred) training data gives ``(1 - a) S + a mu I``, i.e. a
    penalty ``a / (1 - a)``; it does not depend on the labels. ``inf`` when
    ``a`` is 1 (uncorrelated channels): the classifier is then the
    difference of the class means.
    """
    if TIME_RIDGE != "ledoit_wolf":
        return float(TIME_RIDGE)
    from sklearn.covariance import ledoit_wolf_shrinkage

    a = float(ledoit_wolf_shrinkage(zc, assume_centered=True))
    return np.inf if a >= 1.0 else a / (1.0 - a)


def _time_fold(
    X: np.ndarray,  # noqa: N803
    yb: np.ndarray,
    groups: np.ndarray,
    codes: np.ndarray,
    source: np.ndarray,
    tr: np.ndarray,
    te: np.ndarray,
    subject: int,
    generalization: bool,
) -> _TimeFold:
    """The fold's ridge classifiers (one per time), split into the training subjects' shares.

    ``source`` is each row's subject among the flipped subjects (-1: a
    subject with one class, whose epochs enter the scaling and the scatter
    only).
    """
    n_tr, n_ch, n_times = tr.size, X.shape[1], X.shape[2]
    s_tr = source[tr]
    sources = np.unique(s_tr[s_tr >= 0])
    targets = np.zeros((n_tr, sources.size))  # one column per training subject
    for k, s in enumerate(sources):
        targets[s_tr == s, k] = codes[tr][s_tr == s]
    x_tr = X[tr]
    centred = x_tr.copy()  # each training subject's mean removed: offsets say nothing of ME/MaE
    for g in np.unique(groups[tr]):
        rows = groups[tr] == g
        centred[rows] -= centred[rows].mean(axis=0)
    x_te = X[te]
    rows_te = x_te.transpose(2, 0, 1).reshape(-1, n_ch)  # (test time x test epoch, channel)
    diag = np.empty((n_times, te.size, sources.size))
    gen = np.empty((n_times, n_times, te.size, sources.size)) if generalization else None
    for t in range(n_times):
        mu, sd = x_tr[:, :, t].mean(axis=0), x_tr[:, :, t].std(axis=0)
        sd[sd == 0] = 1.0  # as StandardScaler: a constant channel stays 0
        zc = centred[:, :, t] / sd
        penalty = _ridge_penalty(zc)
        if not np.isfinite(penalty):  # the limit of an infinite penalty, up to scale: Zc'T
            w = zc.T @ targets
        elif n_ch <= n_tr:  # primal: (Zc'Zc + lam I)^-1 Zc'T
            scatter = zc.T @ zc
            lam = penalty * np.trace(scatter) / n_ch or 1.0
            w = np.linalg.solve(scatter + lam * np.eye(n_ch), zc.T @ targets)
        else:  # dual: Zc'(Zc Zc' + lam I)^-1 T, the same weights
            gram = zc @ zc.T
            lam = penalty * np.trace(gram) / n_ch or 1.0
            w = zc.T @ np.linalg.solve(gram + lam * np.eye(n_tr), targets)
        diag[t] = ((x_te[:, :, t] - mu) / sd) @ w
        if gen is not None:
            gen[t] = (rows_te @ (w / sd[:, None])).reshape(n_times, te.size, -1) - (mu / sd) @ w
            gen[t, t] = diag[t]  # the same values: the diagonal is the sliding score exactly
    y_te = yb[te]
    return _TimeFold(subject, sources, np.flatnonzero(y_te == 1), np.flatnonzero(y_te == 0),
                     diag, gen)  # fmt: skip


def _flip_auc(fold: _TimeFold, eps: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """AUC of the fold's test subject with the labels of the subjects where ``eps`` is -1 flipped.

    ``eps`` is ``(n_flipped, n)``, one column per arrangement. Flipping a
    training subject negates its share of the decisions; flipping the test
    subject's labels turns its AUC ``a`` into ``1 - a``. Returns the AUC over
    time ``(time, n)`` and, when the fold has the generalisation, over
    ``(train_time, test_time, n)`` (whose diagonal is the former).
    """
    from ._decoding_kernels import flip_auc

    signs = np.ascontiguousarray(eps[fold.sources], dtype=float)
    shares = fold.diag if fold.gen is None else fold.gen.reshape(-1, *fold.gen.shape[2:])
    out = np.empty((shares.shape[0], signs.shape[1]))
    flip_auc(shares, signs, fold.pos, fold.neg, out)
    out = 0.5 + eps[fold.subject] * (out - 0.5)
    if fold.gen is None:
        return out, None
    g = out.reshape(*fold.gen.shape[:2], -1)
    return np.diagonal(g).T.copy(), g


def _t_over_subjects(total: np.ndarray, squares: np.ndarray, n: int) -> np.ndarray:
    """One-sample t of AUC - 0.5 across ``n`` subjects from the sums of AUC and of AUC^2."""
    mean = total / n
    var = np.maximum(squares - n * mean**2, 0.0) / (n - 1)
    return (mean - 0.5) / np.maximum(np.sqrt(var / n), 1e-12)


def _runs(t: np.ndarray, thr: float) -> list[np.ndarray]:
    """Indices of each run of consecutive ``t > thr``."""
    above = np.concatenate([[False], t > thr, [False]])
    edges = np.flatnonzero(np.diff(above.astype(int)))
    return [np.arange(a, b) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _max_mass_1d(t: np.ndarray, thr: float) -> np.ndarray:
    """Largest cluster mass (sum of ``t`` over a run above ``thr``) of each column; 0 if none."""
    current = np.zeros(t.shape[1])
    best = np.zeros(t.shape[1])
    for row in t:
        current = np.where(row > thr, current + row, 0.0)
        np.maximum(best, current, out=best)
    return best


def _labels_2d(t: np.ndarray, thr: float) -> tuple[np.ndarray, np.ndarray]:
    """Clusters of ``t > thr`` (4-connected, as MNE's lattice): labels and masses."""
    from scipy import ndimage

    labels, n = ndimage.label(t > thr)
    return labels, np.bincount(labels.ravel(), weights=t.ravel(), minlength=n + 1)[1:]


def _flip_block(folds: Sequence[_TimeFold], eps: np.ndarray,
                thr: float) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    """Largest cluster mass over time (and over the generalisation) under each column of ``eps``."""
    sums = squares = gsums = gsquares = 0.0
    for f in folds:  # in fold order: the same sums whatever process runs the block
        a, g = _flip_auc(f, eps)
        sums, squares = sums + a, squares + a**2
        if g is not None:
            gsums, gsquares = gsums + g, gsquares + g**2
    n = len(folds)
    best = _max_mass_1d(_t_over_subjects(sums, squares, n), thr)
    if folds[0].gen is None:
        return best, None
    gt = _t_over_subjects(gsums, gsquares, n)
    return best, np.array([max(_labels_2d(gt[..., i], thr)[1], default=0.0)
                           for i in range(eps.shape[1])])  # fmt: skip


def _flips(n_flipped: int, n_permutations: int,
           rng: np.random.Generator) -> tuple[np.ndarray, bool]:  # fmt: skip
    """Label flips ``(n_flipped, n)`` of the null, and whether they are all the distinct ones.

    Flipping every subject renames the classes and changes no AUC, so there
    are ``2^(n_flipped - 1)`` distinct arrangements (the observed one among
    them); when ``n_permutations + 1`` reaches that number all are
    enumerated (the first subject never flipped), else ``n_permutations``
    are drawn.
    """
    distinct = 2 ** (n_flipped - 1)
    if n_permutations + 1 >= distinct:
        bits = (np.arange(distinct)[None, :] >> np.arange(n_flipped - 1)[:, None]) & 1
        return np.vstack([np.ones((1, distinct)), 1.0 - 2.0 * bits]), True
    return 1.0 - 2.0 * rng.integers(0, 2, size=(n_flipped, n_permutations)), False


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
    n_permutations: int | None = None,
) -> TimeDecodingResult:
    """Decoding at every time in LOSO folds; a cluster test whose null re-runs the whole LOSO.

    At each time (and, with ``generalization``, trained at each time and
    tested at every time) a linear classifier is fitted on the training
    subjects of a leave-one-subject-out fold and scored on the test subject
    by ROC AUC (subjects with both classes). The subjects' AUC - 0.5 are
    tested with a one-sided cluster-mass test over time (over train x test
    time for the generalisation) whose null is the whole procedure run on
    the data with the labels of random subjects swapped.

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
        Processes over the blocks of null arrangements (default
        ``decoding.n_jobs``; the results do not depend on it).
    n_permutations : int | None
        Random label-flip arrangements of the null (default
        ``stats.n_permutations``); all distinct ones when they are not more.

    Returns
    -------
    TimeDecodingResult

    Notes
    -----
    **Classifier.** Per fold and time, the channels are standardised on the
    training epochs (as :class:`~sklearn.preprocessing.StandardScaler`) and
    a ridge regression (penalty :data:`TIME_RIDGE`: by default the
    Ledoit-Wolf shrinkage of the fold and time, as in shrinkage LDA) predicts targets ``+1/n_ME`` (ME) and ``-1/n_MaE`` (the
    other class) set *within each training subject*, from the training data
    with each subject's mean removed. Each training subject contributes its
    own class-mean difference with equal weight: the classes are unbalanced
    (~6 ME vs ~26 MaE a subject) and the class-size targets balance them as
    balanced class weights would, and subject offsets, which cannot change a
    within-subject AUC, do not steer the weights. The weights are linear in
    the targets, so a test epoch's decision is a sum of one share per
    training subject, computed once, and relabelling whole subjects costs a
    matrix product instead of refits. The generalisation applies the
    weights (and scaling) of each training time to every test time; its
    diagonal is the sliding score.

    **Why not sign flips of the scores.** The test subjects' AUCs are not
    independent: subject ``j``'s epochs and labels train the classifier of
    every other fold, so a chance alignment of two subjects' label-feature
    patterns raises both AUCs. On the null data of
    ``benchmarks/calibration_decoding.py`` (family ``decoding_time_cluster``)
    the AUCs of two subjects correlated 0.06 (the logistic regression used
    before) to 0.09 (ridge), the variance of their mean was 1.75-2.2 times
    the ``var/n`` a t-test across subjects assumes, and sign flips of the
    scores (MNE's ``permutation_cluster_1samp_test``, which assumes
    independent, symmetric scores) rejected in 14-18 % of null data sets at
    alpha = .05.

    **The null.** The group question is whether the *population-average*
    ME/MaE difference is decodable. Subjects may each have their own
    difference (muscle pattern, strategy); under the null these are
    symmetric around zero. Swapping the ME and MaE labels of a subject turns
    its difference into its negative, so under that null data with the
    labels of any subset of subjects swapped are as likely as the observed
    data. Each arrangement re-runs the whole LOSO, classifiers refitted on
    the swapped labels, so the dependence between folds is in the null as
    in the observed statistic (with the within-subject targets a swap
    negates exactly that subject's share of every decision, and the test
    subject's AUC ``a`` becomes ``1 - a``). Per arrangement: the subjects'
    AUCs, the t of AUC - 0.5 across subjects at each time, clusters of t
    above the one-sided ``t(n - 1)`` quantile of
    ``stats.cluster_forming_p``, and the largest cluster mass (sum of t); an
    observed cluster's ``p = (1 + #null maxima >= its mass) / (1 +
    n_permutations)``, or the share of all ``2^(n-1)`` distinct
    arrangements when there are not more (swapping every subject renames
    the classes: nothing changes). Permuting labels *within* subjects and
    re-running the LOSO, as :func:`decode` does, tests the sharp null that
    no subject differs: exact when none does, but when subjects differ the
    permuted data lose the structure the real data keep, the null is too
    narrow, and on the benchmark it rejected in 8.5 % (between-subject SD
    of the difference s = 0.5) and 10.5 % (s = 1) of 200 null data sets;
    the subject label swaps held 4.9-5.3 % of 1000 at s = 0, 0.5 and 1.
    """
    from scipy import stats as sstats

    config = config or Config()
    seed = config.seed if seed is None else int(seed)
    n_jobs = config.decoding.n_jobs if n_jobs is None else int(n_jobs)
    n_perm = int(config.stats.n_permutations if n_permutations is None else n_permutations)
    if n_perm < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_perm}")
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
    times = series["time"].values
    subjects, skipped, splits = [], [], []
    for tr, te in cv_splits(yb, groups, cv="loso"):
        if len(np.unique(yb[te])) < 2:
            present = sorted(set(y[te]))
            skipped.append({"subject": str(groups[te][0]),
                            "reason": f"only {present} epochs: AUC undefined"})  # fmt: skip
            logger.info("time-resolved %s: %s skipped (%s)", getattr(task, "name", task),
                        *skipped[-1].values())  # fmt: skip
            continue
        splits.append((tr, te))
        subjects.append(groups[te][0])
    n = len(subjects)
    if n < 2:
        raise ValueError(f"time-resolved decoding needs >= 2 test subjects with both classes, "
                         f"got {n}")  # fmt: skip
    # the flipped subjects: those with both classes (the others carry no contrast to flip)
    source = np.full(yb.size, -1)
    for k, s in enumerate(subjects):
        source[groups == s] = k
    codes = _subject_codes(yb, groups)
    folds = [_time_fold(X, yb, groups, codes, source, tr, te, k, generalization)
             for k, (tr, te) in enumerate(splits)]  # fmt: skip
    thr = float(sstats.t.ppf(1 - config.stats.cluster_forming_p, n - 1))
    observed = [_flip_auc(f, np.ones((n, 1))) for f in folds]
    eps, exact = _flips(n, n_perm, np.random.default_rng(seed))
    blocks = [eps[:, i : i + _FLIP_BLOCK] for i in range(0, eps.shape[1], _FLIP_BLOCK)]
    null = Parallel(n_jobs=n_jobs)(delayed(_flip_block)(folds, b, thr) for b in blocks)

    def p_value(mass: float, maxima: np.ndarray) -> float:
        hits = int(np.count_nonzero(maxima >= mass - 1e-9 * max(1.0, abs(mass))))
        return hits / maxima.size if exact else (1 + hits) / (1 + maxima.size)

    auc = np.stack([a[:, 0] for a, _ in observed])
    sc = xr.DataArray(auc, dims=("subject", "time"), coords={"subject": subjects, "time": times},
                      name="auc", attrs={"units": "1", "chance": 0.5, "positive_class": classes[0],
                                         "task": rows.attrs.get("task", str(task))})  # fmt: skip
    sc["time"].attrs["units"] = "s"
    t_obs = _t_over_subjects(auc.sum(axis=0), (auc**2).sum(axis=0), n)
    null_max = np.concatenate([m for m, _ in null])
    rows_c, sig = [], np.zeros(times.size, bool)
    for idx in _runs(t_obs, thr):
        mass = float(t_obs[idx].sum())
        p = p_value(mass, null_max)
        rows_c.append({"start_s": float(times[idx[0]]), "stop_s": float(times[idx[-1]]),
                       "mass": mass, "p": p,
                       "significant": bool(p < config.stats.alpha)})  # fmt: skip
        if p < config.stats.alpha:
            sig[idx] = True
    gen = gsig = None
    if generalization:
        g = np.stack([g for _, g in observed])[..., 0]
        tt = {"train_time": times, "test_time": times}
        gen = xr.DataArray(g, dims=("subject", "train_time", "test_time"),
                           coords={"subject": subjects, **tt}, name="auc",
                           attrs={"units": "1", "chance": 0.5})  # fmt: skip
        gen["train_time"].attrs["units"] = "s"
        gen["test_time"].attrs["units"] = "s"
        gnull = np.concatenate([m for _, m in null])
        labels, masses = _labels_2d(_t_over_subjects(g.sum(axis=0), (g**2).sum(axis=0), n), thr)
        gmask = np.zeros((times.size, times.size), bool)
        for k, mass in enumerate(masses, start=1):
            if p_value(float(mass), gnull) < config.stats.alpha:
                gmask |= labels == k
        gsig = xr.DataArray(gmask, dims=("train_time", "test_time"), coords=tt)
    first = float(times[np.flatnonzero(sig)[0]]) if sig.any() else float("nan")
    clusters_df = pd.DataFrame(rows_c, columns=["start_s", "stop_s", "mass", "p", "significant"])
    test = {"null": TIME_NULL, "n_permutations": int(eps.shape[1] + (not exact)), "exact": exact,
            "classifier": "ridge, within-subject class-size targets", "ridge": TIME_RIDGE,
            "cluster_forming_t": thr, "tail": "greater"}  # fmt: skip
    significant = xr.DataArray(sig, dims=("time",), coords={"time": times})
    return TimeDecodingResult(sc, gen, clusters_df, significant, first, gsig, skipped, test)


def summary_table(results: Sequence[DecodingResult]) -> pd.DataFrame:
    """One row per :class:`DecodingResult` (:meth:`DecodingResult.summary_row`)."""
    return pd.DataFrame([r.summary_row() for r in results])

