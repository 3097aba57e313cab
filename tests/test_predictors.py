"""Property regressors: they learn a learnable target, report rank correlations exactly, and refuse
embeddings of another GHN."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import kendalltau, spearmanr

from nas.predictors import fit_predictor, load_predictor, make_predictor, rank_correlations, save_predictor


def _data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8))
    y = np.tanh(X[:, 0]) + 0.5 * X[:, 1] ** 2 + 0.05 * rng.normal(size=n)  # smooth, non-linear
    return X, y


@pytest.mark.parametrize("name", ["svr", "ridge"])
def test_predictors_rank_held_out_points(name):
    X, y = _data(200, 0)
    model = fit_predictor(name, X[:150], y[:150], seed=0)
    tau = rank_correlations(model.predict(X[150:]), y[150:])["kendall"]
    assert tau > (0.6 if name == "svr" else 0.25), tau  # the RBF SVR also captures the x1^2 term


def test_rank_correlations_match_scipy_on_a_fixture():
    a, b = np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([5.0, 6.0, 7.0, 8.0, 7.5])
    r = rank_correlations(a, b)
    assert r["spearman"] == pytest.approx(0.9) and r["kendall"] == pytest.approx(0.8)
    assert r["spearman"] == pytest.approx(spearmanr(a, b).statistic)
    assert r["kendall"] == pytest.approx(kendalltau(a, b).statistic)


def test_saved_predictors_check_their_ghn(tmp_path):
    X, y = _data(60, 1)
    model = fit_predictor("ridge", X, y)
    path = save_predictor(model, tmp_path / "p.joblib", ghn_hash="abc", n_features=8)
    again = load_predictor(path, ghn_hash="abc", n_features=8)
    assert np.allclose(again.predict(X), model.predict(X))
    with pytest.raises(ValueError, match="GHN abc.*GHN xyz"):
        load_predictor(path, ghn_hash="xyz", n_features=8)
    with pytest.raises(ValueError, match="expects 8 features"):
        load_predictor(path, ghn_hash="abc", n_features=32)


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown predictor"):
        make_predictor("gp")
    with pytest.raises(ValueError, match="at least 10"):
        fit_predictor("ridge", np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="expected X of shape"):
        fit_predictor("ridge", np.zeros((20, 2)), np.zeros(19))
