"""Regressors from GHN graph embeddings (and cheap features) to architecture properties.

Every regressor is a stock scikit-learn estimator built by a function in :data:`PREDICTORS`:

- ``svr``: the paper's (§4 of the reference): RBF SVR on the embedding, grid-searched with 5-fold
  cross-validation over C in {1, 10, 50, 100, 200, 500, 1000}, gamma in {auto, 0.05, 0.1, 0.2, 0.5},
  epsilon in {0.05, 0.1, 0.2};
- ``ridge``: standardised features into a cross-validated ridge regression (fast, a sanity baseline).

Saved predictors carry the ghn-nas version, the feature width and the hash of the GHN whose
embeddings they were fitted on; loading with another GHN raises and names both.

:func:`fit_on_labels` fits the paper's SVR on the records ``python -m nas.label`` writes; with
``nas.search --labels FILE`` such a regressor scores the accuracy and robustness objectives.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Callable, Sequence

import joblib
import numpy as np
from scipy.stats import kendalltau, spearmanr
from sklearn.base import RegressorMixin
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR
from torch import nn

import ghn_core
from ghn_core.errors import GraphError
from ghn_core.graph import GraphWarning
from ghn_core.model import GHN2
from ghn_core.utils import lookup

__all__ = ["PREDICTORS", "make_predictor", "fit_predictor", "rank_correlations", "save_predictor", "load_predictor",
           "embedding_features", "fit_on_labels"]

log = logging.getLogger("nas.predictors")


def _svr(seed: int) -> RegressorMixin:
    grid = {"C": [1, 10, 50, 100, 200, 500, 1000], "gamma": ["auto", 0.05, 0.1, 0.2, 0.5],
            "epsilon": [0.05, 0.1, 0.2]}
    return GridSearchCV(SVR(kernel="rbf"), grid, cv=KFold(5, shuffle=True, random_state=seed), n_jobs=1)


def _ridge(seed: int) -> RegressorMixin:
    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))


PREDICTORS: dict[str, Callable[[int], RegressorMixin]] = {"svr": _svr, "ridge": _ridge}


def make_predictor(name: str = "svr", *, seed: int = 0) -> RegressorMixin:
    """An unfitted regressor by name; an unknown name lists the known ones."""
    return lookup(PREDICTORS, name, "predictor")(seed)


MIN_FIT = 10  # labelled architectures below which a grid-searched, cross-validated fit means nothing


def fit_predictor(name: str, X: np.ndarray, y: np.ndarray, *, seed: int = 0) -> RegressorMixin:
    """Fit a regressor on features ``X`` (n, d) and targets ``y`` (n,)."""
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"expected X of shape (n, d) and y of shape (n,), got {X.shape} and {y.shape} instead")
    if X.shape[0] < MIN_FIT:
        raise ValueError(f"expected at least {MIN_FIT} labelled architectures to fit a predictor, got {X.shape[0]}")
    return make_predictor(name, seed=seed).fit(X, y)


def rank_correlations(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Spearman rho and Kendall tau between a proxy (or a regressor's predictions) and the truth."""
    return {"spearman": float(spearmanr(predicted, truth).statistic),
            "kendall": float(kendalltau(predicted, truth).statistic)}


def save_predictor(model: RegressorMixin, path: str | Path, *, ghn_hash: str, n_features: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump({"model": model, "ghn_hash": ghn_hash, "n_features": n_features,
                 "version": ghn_core.__version__}, path)
    return path


def load_predictor(path: str | Path, *, ghn_hash: str, n_features: int) -> RegressorMixin:
    """Load a saved predictor, checking it was fitted on embeddings of the same GHN and width."""
    record = joblib.load(path)
    if record["ghn_hash"] != ghn_hash:
        raise ValueError(f"{path} was fitted on embeddings of GHN {record['ghn_hash']}, "
                         f"but the embeddings now come from GHN {ghn_hash}; refit it")
    if record["n_features"] != n_features:
        raise ValueError(f"{path} expects {record['n_features']} features, got {n_features}")
    return record["model"]


def embedding_features(ghn: GHN2, models: Sequence[nn.Module]) -> np.ndarray:
    """(n, hid) GHN graph embeddings: the features the property regressors are fitted on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GraphWarning)  # ops on dead nodes are reported, by design
        return ghn.embed(models).numpy()


def fit_on_labels(ghn: GHN2, path: str | Path, target: str, *, space: str, seed: int = 0) -> RegressorMixin:
    """The paper's RBF SVR from GHN embedding to ``target`` (e.g. ``noisy_acc``), fitted on the
    ``python -m nas.label`` records in ``path``, which must be of ``space``.

    Architectures without an input-output path (no graph, so no embedding) are left out.
    """
    from .label import build_architecture, read_labels

    labelled_space, rows, _ = read_labels(str(path), target)
    if labelled_space != space:
        raise ValueError(f"{path} labels the {labelled_space} space, but the search is on {space}")
    features, y = [], []
    for arch, value in rows:
        try:
            features.append(embedding_features(ghn, [build_architecture(space, arch)])[0])
        except GraphError:
            continue
        y.append(value)
    if len(rows) > len(y):
        log.info("%d of %d labelled architectures have no graph and are left out", len(rows) - len(y), len(rows))
    return fit_predictor("svr", np.array(features).reshape(len(y), -1), np.array(y), seed=seed)
