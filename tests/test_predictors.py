"""Property regressors: they learn a learnable target, report rank correlations exactly, and refuse
embeddings of another GHN."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import kendalltau, spearmanr

from nas.predictors import fit_predictor, make_predictor, rank_correlations


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


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown predictor"):
        make_predictor("gp")
    with pytest.raises(ValueError, match="at least 10"):
        fit_predictor("ridge", np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="expected X of shape"):
        fit_predictor("ridge", np.zeros((20, 2)), np.zeros(19))


def test_svr_rank_is_reproducible_from_its_seed_and_ranks_held_out_points():
    X, y = _data(80, 2)
    a = fit_predictor("svr-rank", X[:60], y[:60], seed=3)
    b = fit_predictor("svr-rank", X[:60], y[:60], seed=3)
    assert np.array_equal(a.predict(X[60:]), b.predict(X[60:]))
    assert rank_correlations(a.predict(X[60:]), y[60:])["kendall"] > 0.5


NB201_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "labelled.csv"


@pytest.fixture(scope="module")
def nb201_sets(tmp_path_factory):
    """Two small labelled NB201 files cut from the shared CSV: a fit set and a score set."""
    from ghn_core.nb201 import cell_key

    header, *rows = NB201_CSV.read_text().splitlines()
    folder = tmp_path_factory.mktemp("nb201")
    fit_rows, score_rows = rows[:40], rows[1000:1040]
    assert not {cell_key(r.split(",")[0]) for r in fit_rows} <= {cell_key(r.split(",")[0]) for r in score_rows}
    (folder / "fit.csv").write_text("\n".join([header, *fit_rows]) + "\n")
    (folder / "score.csv").write_text("\n".join([header, *score_rows]) + "\n")
    return folder / "fit.csv", folder / "score.csv"


def test_fit_save_load_score_round_trip(nb201_sets, tmp_path):
    from ghn_core import create_ghn, load_ghn
    from nas.label import read_labelled
    from nas.predictors import (PredictorError, fit_property, load_predictors, save_predictors,
                                score_predictors)

    ghn = load_ghn()
    fit_set, score_set = (read_labelled(p) for p in nb201_sets)
    fitted = fit_property(ghn, fit_set, "cifar10_test_acc_200ep", predictor="ridge", seed=0)
    assert fitted.fitted_on["labels"] == str(nb201_sets[0]) and fitted.fitted_on["n"] == len(fitted.seen)
    path = save_predictors([fitted], tmp_path / "p.joblib", ghn=ghn)
    loaded = load_predictors(ghn, path)[("nb201", "cifar10_test_acc_200ep")]
    table = score_predictors({("nb201", "cifar10_test_acc_200ep"): loaded}, ghn, score_set)
    row = table["cifar10_test_acc_200ep"]
    # Strings of a cell the predictor saw are left out of the score; the rest (with a graph) are scored.
    assert row["n_seen"] == sum(a in fitted.seen for a in map(_key, score_set.archs))
    assert 0 < row["n"] <= len(score_set.archs) - row["n_seen"]
    with pytest.raises(PredictorError, match="fitted on embeddings of GHN .* but the GHN in use is"):
        load_predictors(create_ghn("ghn2"), path)
    with pytest.raises(PredictorError, match="no predictor for the properties"):
        score_predictors({}, ghn, score_set)


def _key(arch):
    from ghn_core.nb201 import cell_key

    return cell_key(arch)


def test_shipped_predictors_load_with_the_shipped_ghn():
    from ghn_core import load_ghn
    from nas.predictors import load_predictors

    shipped = load_predictors(load_ghn())
    nb201 = shipped[("nb201", "cifar10_test_acc_200ep")]
    assert nb201.predictor == "svr-rank" and nb201.fitted_on["n"] >= 500 and nb201.cv["kendall"] > 0.5


def test_fit_property_needs_enough_nets_for_every_cross_validation_fold(tmp_path):
    # Each of the 5 training folds must keep MIN_FIT (10) nets: 13 is the least that does.
    from nas.label import read_labelled
    from nas.predictors import fit_property

    from test_pool_budget import nb201_cells, write_csv

    rng = np.random.default_rng(0)
    for n, fits in ((12, False), (13, True)):
        labelled = read_labelled(write_csv(tmp_path / f"{n}.csv", nb201_cells(n), list(80 + rng.random(n))))
        computed = (rng.normal(size=(n, 8)), np.ones(n, dtype=bool))
        if fits:
            assert fit_property(None, labelled, "cifar10_test_acc_200ep", predictor="ridge", computed=computed).cv
        else:
            with pytest.raises(ValueError, match="expected at least 13 distinct architectures"):
                fit_property(None, labelled, "cifar10_test_acc_200ep", predictor="ridge", computed=computed)


DEEPNETS_LABELS = Path(__file__).resolve().parents[1] / "nas" / "data" / "deepnets_cpu.jsonl"


def test_deepnets_predictors_read_the_embedding_and_graph_features(tmp_path):
    """A DeepNets-1M predictor is ridge on the embedding plus graph features (its scorecard's best); the
    feature kind is saved with it, and the search's proxy builds the same input as the fit did."""
    import joblib
    import torch

    from ghn_core import load_ghn
    from nas.label import build_architecture, read_labelled
    from nas.predictors import (FEATURE_NAMES, SPACE_DEFAULTS, fit_property, labelled_features, load_predictors,
                                save_predictors)
    from nas.proxies import ProxyContext, compute

    ghn = load_ghn()
    labelled = read_labelled(DEEPNETS_LABELS)
    fitted = fit_property(ghn, labelled, "noisy_acc", seed=0)
    assert (fitted.predictor, fitted.features) == SPACE_DEFAULTS["deepnets"] == ("ridge", "embedding+graph")
    path = save_predictors([fitted], tmp_path / "p.joblib", ghn=ghn)
    loaded = load_predictors(ghn, path)[("deepnets", "noisy_acc")]
    assert loaded.features == "embedding+graph"
    archs = labelled.archs[:3]
    X, ok = labelled_features(ghn, "deepnets", archs, "embedding+graph")
    assert ok.all() and X.shape == (3, ghn.config.hid + len(FEATURE_NAMES))
    # The scorecard reads the embedding off the front of embedding+graph rather than embedding twice.
    np.testing.assert_allclose(X[:, :ghn.config.hid], labelled_features(ghn, "deepnets", archs)[0], rtol=1e-6)
    empty = torch.zeros(0)
    for share in (True, False):
        ctx = ProxyContext(ghn, empty, empty, empty, torch.device("cpu"), predictors={"noisy_acc": loaded},
                           share=share)
        for arch, expected in zip(archs, loaded.predict(X)):
            ctx.new_trial()
            # float32 embeddings of a batch of 3 and of one net differ in the last bits
            assert compute("predicted_noisy_acc", build_architecture("deepnets", arch), ctx) == pytest.approx(expected, rel=1e-5)
    # A bundle from before feature kinds (no "features" in its entries) reads the embedding.
    record = joblib.load(path)
    del record["predictors"][0]["features"]
    joblib.dump(record, tmp_path / "old.joblib")
    assert load_predictors(ghn, tmp_path / "old.joblib")[("deepnets", "noisy_acc")].features == "embedding"
