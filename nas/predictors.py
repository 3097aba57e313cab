"""Regressors from GHN graph embeddings (and cheap features) to architecture properties.

Every regressor is a stock scikit-learn estimator built by a function in :data:`PREDICTORS`:

- ``svr``: the paper's (§4 of the reference): RBF SVR on the embedding, grid-searched with 5-fold
  cross-validation over C in {1, 10, 50, 100, 200, 500, 1000}, gamma in {auto, 0.05, 0.1, 0.2, 0.5},
  epsilon in {0.05, 0.1, 0.2};
- ``svr-rank``: the same SVR fitted on the normal scores of the labels' ranks;
- ``ridge``: standardised features into a cross-validated ridge regression.

A predictor reads one kind of features (:data:`FEATURE_KINDS`): the GHN graph embedding, or the
embedding followed by cheap graph features (log parameters, depth, node and op counts). Each space
has a default pair, the best of its scorecard (:data:`SPACE_DEFAULTS`).

Saved predictors carry the ghn-nas version, the feature width and the hash of the GHN whose
embeddings they were fitted on; loading with another GHN raises and names both.

:func:`fit_property` fits one property of a labelled set (an NB201 CSV, or the records ``python -m
nas.label`` writes), cross-validated by architecture. Those fitted beside a GHN ship with it
(:func:`save_predictors`, ``python -m nas.predictors fit``); ``nas.search --labels FILE`` fits its
own for the accuracy, robustness and trainability objectives.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import joblib
import numpy as np
from scipy.stats import kendalltau, spearmanr
from sklearn.base import RegressorMixin
from sklearn.compose import TransformedTargetRegressor
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import QuantileTransformer, StandardScaler
from sklearn.svm import SVR
from torch import nn
from tqdm.auto import tqdm

import ghn_core
from ghn_core.errors import GhnNasError, GraphError
from ghn_core.graph import Graph, GraphWarning
from ghn_core.graph.vocab import OP_INDEX, OP_NAMES
from ghn_core.model import GHN2
from ghn_core.model.checkpoint import state_hash
from ghn_core.utils import lookup, user_errors

from .label import LabelledSet

__all__ = ["PREDICTORS", "FEATURE_KINDS", "SPACE_DEFAULTS", "space_default", "make_predictor", "fit_predictor",
           "rank_correlations", "embedding_features", "graph_matrix", "join_features", "PropertyPredictor", "PredictorError",
           "predictors_path", "architecture_graph", "labelled_features", "distinct_rows", "file_digest", "fit_property",
           "save_predictors", "shipped_properties", "load_predictors", "score_predictors", "main"]

log = logging.getLogger("nas.predictors")


class PredictorError(GhnNasError, ValueError):
    """A predictors file that does not fit: another GHN's, corrupt, or without the property asked for."""


def _svr(seed: int) -> RegressorMixin:
    grid = {"C": [1, 10, 50, 100, 200, 500, 1000], "gamma": ["auto", 0.05, 0.1, 0.2, 0.5],
            "epsilon": [0.05, 0.1, 0.2]}
    return GridSearchCV(SVR(kernel="rbf"), grid, cv=KFold(5, shuffle=True, random_state=seed), n_jobs=1)


def _ridge(seed: int) -> RegressorMixin:
    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))


def _svr_rank(seed: int) -> RegressorMixin:
    # Accuracies crowd near the top (NB201: half the cells within 3 points of the best), so the paper's
    # SVR spends its fit on the few bad nets. Fitting it on the normal scores of the labels' ranks
    # spreads the crowd out; its predictions keep the labels' order, which is what a search uses.
    target = QuantileTransformer(n_quantiles=50, output_distribution="normal")  # fewer labels: one per label
    return TransformedTargetRegressor(_svr(seed), transformer=target)


PREDICTORS: dict[str, Callable[[int], RegressorMixin]] = {"svr": _svr, "svr-rank": _svr_rank, "ridge": _ridge}


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
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="n_quantiles .* is greater than the total number of samples")
        return make_predictor(name, seed=seed).fit(X, y)


def rank_correlations(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Spearman rho and Kendall tau between a proxy (or a regressor's predictions) and the truth."""
    return {"spearman": float(spearmanr(predicted, truth).statistic),
            "kendall": float(kendalltau(predicted, truth).statistic)}


CONV_KERNELS = (1, 3, 5, 7)
FEATURE_NAMES: tuple[str, ...] = ("log_params", "depth", "nodes", "edges", *(f"n_{op}" for op in OP_NAMES),
                                  *(f"conv_{k}x{k}" for k in CONV_KERNELS))


def graph_features(graph: Graph, model: nn.Module) -> np.ndarray:
    """Cheap architecture features (:data:`FEATURE_NAMES`), read off the graph without running the
    model: log parameters, depth (longest input-output path), nodes, real edges, a histogram of node
    types and the dense convolutions by kernel size."""
    n_params = sum(p.numel() for p in model.parameters())
    depth = int(graph.levels()[0].max()) + 1
    types = np.bincount(graph.node_op, minlength=len(OP_NAMES))
    kernels = graph.param_shape[graph.node_op == OP_INDEX["conv"], 2]
    return np.array([np.log(max(n_params, 1)), depth, graph.num_nodes, graph.real_edge_index.shape[1], *types,
                     *(int((kernels == k).sum()) for k in CONV_KERNELS)], dtype=np.float64)


def embedding_features(ghn: GHN2, models: Sequence[nn.Module]) -> np.ndarray:
    """(n, hid) GHN graph embeddings: the features the paper's property regressors are fitted on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GraphWarning)  # ops on dead nodes are reported, by design
        return ghn.embed(models).numpy()


#: What a predictor reads: name -> what it is.
FEATURE_KINDS: dict[str, str] = {
    "embedding": "the GHN graph embedding",
    "embedding+graph": "the GHN graph embedding, then the cheap graph features (FEATURE_NAMES)",
}


def join_features(kind: str, embedding: np.ndarray, cheap: np.ndarray | None) -> np.ndarray:
    """A predictor's input of feature kind ``kind`` (:data:`FEATURE_KINDS`) from the (n, hid) embeddings
    and the (n, len(FEATURE_NAMES)) :func:`graph_features` of the same nets."""
    lookup(FEATURE_KINDS, kind, "feature kind")
    return embedding if kind == "embedding" else np.hstack([embedding, cheap])


def graph_matrix(ghn: GHN2, graphs: Sequence[Graph], models: Sequence[nn.Module], kind: str) -> np.ndarray:
    """Features of kind ``kind`` of traced nets: their graphs' embeddings, then (``embedding+graph``)
    :func:`graph_features` of each graph and model."""
    cheap = np.stack([graph_features(g, m) for g, m in zip(graphs, models)]) if kind != "embedding" else None
    return join_features(kind, ghn.embed(graphs=graphs).numpy(), cheap)


# -- predictors shipped with a GHN ---------------------------------------------------------------------

DEFAULT_PREDICTOR = "svr-rank"
CV_FOLDS = 5
MIN_CV_FIT = -(-MIN_FIT * CV_FOLDS // (CV_FOLDS - 1))  # 13: each training fold keeps MIN_FIT nets

#: The regressor and feature kind ``fit`` and ``nas.search --labels`` use on each space: the best out of
#: fold in its scorecard (BENCHMARKS.md). On NB201 svr-rank on the embedding (Kendall 0.75 against 0.64
#: for ridge on embedding+graph, 200 cells); on our DeepNets-1M labels ridge on embedding+graph (0.25,
#: where both SVRs rank backwards out of fold, 43 nets).
SPACE_DEFAULTS: dict[str, tuple[str, str]] = {"nb201": ("svr-rank", "embedding"),
                                              "deepnets": ("ridge", "embedding+graph")}


def space_default(space: str) -> tuple[str, str]:
    """The (regressor, feature kind) a predictor of ``space`` gets unless told otherwise."""
    return SPACE_DEFAULTS.get(space, (DEFAULT_PREDICTOR, "embedding"))


def architecture_key(space: str, arch: str) -> str:
    """What makes two architectures the same net: the cell's function on NB201 (isomorphic strings
    share it), the canonical key on DeepNets-1M. A predictor is never scored on keys it was fitted on."""
    if space == "nb201":
        from ghn_core.nb201 import cell_key

        return cell_key(arch)
    from ghn_core.deepnets import Architecture

    return Architecture.from_json(arch).key()


@dataclass
class PropertyPredictor:
    """A regressor of one property of one space on features of kind ``features`` (:data:`FEATURE_KINDS`),
    and what it was fitted on.

    ``fitted_on`` names the labels (file, sha256, recipe, number of architectures); ``seen`` holds the
    keys (:func:`architecture_key`) of the fitted architectures; ``cv`` the rank correlations of a
    5-fold cross-validation at fit time.
    """

    space: str
    property: str
    predictor: str
    model: RegressorMixin
    fitted_on: dict[str, Any]
    seen: frozenset[str]
    cv: dict[str, float]
    features: str = "embedding"  # bundles from before feature kinds read the embedding

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict(np.asarray(X, dtype=np.float64))


def predictors_path(ghn_path: str | Path | None = None) -> Path:
    """Where the predictors of a GHN checkpoint live: beside it, ``<checkpoint>.predictors.joblib``."""
    ckpt = ghn_core.shipped_checkpoint() if ghn_path is None else Path(ghn_path)
    return ckpt.with_suffix(".predictors.joblib")


def architecture_graph(ghn: GHN2, space: str, arch: str, model: nn.Module | None = None) -> Graph:
    """The GHN's graph of one architecture line: an NB201 string's straight from the string
    (``nb201_graph``, equal to tracing the built net when the GHN's images fit), else by tracing the
    built net (``model``, if the caller has built it already). Raises ``GraphError`` for a net without
    an input-output path."""
    from ghn_core.graph.nb201 import nb201_graph

    from .label import build_architecture

    # nb201_graph equals tracing the built net (16 channels, 10 classes) at any side divisible by 4;
    # tracing also warns when the GHN has other classes than 10
    if space == "nb201" and ghn.config.image_size % 4 == 0 and ghn.config.num_classes == 10:
        return nb201_graph(arch, s_max=ghn.s_max)
    return ghn.graphs([model if model is not None else build_architecture(space, arch)])[0]


def labelled_features(ghn: GHN2, space: str, archs: Sequence[str], kind: str = "embedding"
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Features of kind ``kind`` of ``archs`` (n, d), NaN rows for nets without an input-output path (no
    graph; they compute a constant), and the (n,) mask of the rows that have one. One graph per net
    (:func:`architecture_graph`), embedded 1024 graphs at a time (memory stays bounded); graph features
    build each net."""
    from .label import build_architecture

    chunk = 1024   # a multiple of embed's batch of 16: every GHN pass holds the nets one call would
    emb = np.full((len(archs), ghn.config.hid), np.nan)
    cheap = np.full((len(archs), len(FEATURE_NAMES)), np.nan) if kind != "embedding" else None
    ok = np.zeros(len(archs), dtype=bool)
    graphs: list[Graph] = []
    rows: list[int] = []   # the row of each held graph
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GraphWarning)
        for i, arch in enumerate(tqdm(archs, desc="graphs", unit="net", disable=None if len(archs) >= 50 else True)):
            model = build_architecture(space, arch) if cheap is not None else None
            try:
                graph = architecture_graph(ghn, space, arch, model)
            except GraphError:
                graph = None
            if graph is not None:
                graphs.append(graph)
                ok[i] = True
                rows.append(i)
                if cheap is not None:
                    cheap[i] = graph_features(graph, model)
            if graphs and (len(graphs) == chunk or i == len(archs) - 1):
                emb[rows] = ghn.embed(graphs=graphs).numpy()
                graphs, rows = [], []
    return join_features(kind, emb, cheap), ok


def distinct_rows(labelled: LabelledSet) -> np.ndarray:
    """Indices of the first architecture of each key (:func:`architecture_key`) of a labelled set: a
    predictor is fitted on distinct nets (NB201 strings of one cell are one net)."""
    first: dict[str, int] = {}
    for i, arch in enumerate(labelled.archs):
        first.setdefault(architecture_key(labelled.space, arch), i)
    return np.array(sorted(first.values()), dtype=int)


def fit_property(ghn: GHN2, labelled: LabelledSet, prop: str, *, predictor: str | None = None,
                 features: str | None = None, seed: int = 0,
                 computed: tuple[np.ndarray, np.ndarray] | None = None) -> PropertyPredictor:
    """Fit ``predictor`` on features of kind ``features`` (None: the space's :data:`SPACE_DEFAULTS`) for
    one property of a labelled set, on its :func:`distinct_rows` that have a graph and a finite label:
    cross-validated first (5 folds, seeded), then fitted on all of them. ``computed``: the
    :func:`labelled_features` of those rows and that kind, if already computed."""
    if prop not in labelled.properties:
        raise ValueError(f"{labelled.source} has no {prop!r} labels; it has {', '.join(labelled.properties)}")
    default = space_default(labelled.space)
    predictor, features = predictor or default[0], features or default[1]
    rows = distinct_rows(labelled)
    X, ok = computed if computed is not None else labelled_features(ghn, labelled.space,
                                                                    [labelled.archs[i] for i in rows], features)
    y = labelled.properties[prop][rows]
    use = ok & np.isfinite(y)
    if use.sum() < MIN_CV_FIT:
        raise ValueError(f"{labelled.source}: expected at least {MIN_CV_FIT} distinct architectures with a graph "
                         f"and a finite {prop!r}, got {int(use.sum())}")
    Xf, yf = X[use], y[use]
    pred = np.empty(len(yf))
    for fit, test in KFold(CV_FOLDS, shuffle=True, random_state=seed).split(Xf):
        pred[test] = fit_predictor(predictor, Xf[fit], yf[fit], seed=seed).predict(Xf[test])
    fitted_on = {"labels": labelled.source, "sha256": file_digest(labelled.source), "recipe": labelled.recipe,
                 "n": int(use.sum())}
    seen = frozenset(architecture_key(labelled.space, labelled.archs[i]) for i in rows[use])
    return PropertyPredictor(labelled.space, prop, predictor, fit_predictor(predictor, Xf, yf, seed=seed), fitted_on,
                             seen, rank_correlations(pred, yf), features)


def save_predictors(predictors: Sequence[PropertyPredictor], path: str | Path, *, ghn: GHN2) -> Path:
    """Write predictors with the hash and width of the GHN whose embeddings they read (atomically). The
    predictors of a GHN ship beside it; a study saves those it fits on --labels the same way."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"version": ghn_core.__version__, "ghn_hash": state_hash(ghn.state_dict()), "n_features": ghn.config.hid,
              "predictors": [dataclasses.asdict(p) | {"model": p.model} for p in predictors]}
    tmp = path.with_name(path.name + ".tmp")
    joblib.dump(record, tmp)
    os.replace(tmp, path)
    return path


def _read_predictors(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"no predictors at {path}: fit them with python -m nas.predictors fit")
    try:
        record = joblib.load(path)
        record["predictors"]
    except Exception as err:  # truncated or foreign file
        raise PredictorError(f"{path} is not a predictors file of ghn-nas ({type(err).__name__}: {err})") from None
    return record


def shipped_properties(path: str | Path | None = None) -> set[tuple[str, str]]:
    """The (space, property) pairs a predictors file (None: the shipped one) has a predictor for."""
    record = _read_predictors(predictors_path() if path is None else Path(path))
    return {(entry["space"], entry["property"]) for entry in record["predictors"]}


def load_predictors(ghn: GHN2, path: str | Path | None = None) -> dict[tuple[str, str], PropertyPredictor]:
    """The predictors saved at ``path`` (None: the shipped ones), by (space, property); a file fitted on
    another GHN's embeddings raises and names both GHNs."""
    path = predictors_path() if path is None else Path(path)
    record = _read_predictors(path)
    entries = record["predictors"]
    ghn_hash = state_hash(ghn.state_dict())
    if record["ghn_hash"] != ghn_hash or record["n_features"] != ghn.config.hid:
        raise PredictorError(f"{path} was fitted on embeddings of GHN {record['ghn_hash']} ({record['n_features']} "
                             f"features), but the GHN in use is {ghn_hash} ({ghn.config.hid}); refit with "
                             f"python -m nas.predictors fit")
    loaded = [PropertyPredictor(**{**e, "seen": frozenset(e["seen"])}) for e in entries]
    return {(p.space, p.property): p for p in loaded}


def score_predictors(predictors: dict[tuple[str, str], PropertyPredictor], ghn: GHN2, labelled: LabelledSet
                     ) -> dict[str, dict[str, float]]:
    """Kendall tau and Spearman rho of each predictor of the labelled set's space and properties, on
    the architectures it was not fitted on (``n``; ``n_seen`` left out) that have a graph."""
    props = [p for p in labelled.properties if (labelled.space, p) in predictors]
    if not props:
        have = ", ".join(f"{s}:{p}" for s, p in predictors) or "none"
        raise PredictorError(f"no predictor for the properties of {labelled.source} ({labelled.space}: "
                             f"{', '.join(labelled.properties)}); the predictors have {have}")
    kinds = {predictors[(labelled.space, p)].features for p in props}
    computed = {kind: labelled_features(ghn, labelled.space, labelled.archs, kind) for kind in sorted(kinds)}
    keys = [architecture_key(labelled.space, a) for a in labelled.archs]
    table = {}
    for prop in props:
        model, y = predictors[(labelled.space, prop)], labelled.properties[prop]
        X, ok = computed[model.features]
        unseen = np.array([k not in model.seen for k in keys])
        rows = ok & unseen & np.isfinite(y)
        if rows.sum() < 2:
            raise PredictorError(f"{labelled.source}: fewer than 2 architectures of {prop!r} that the predictor "
                                 f"was not fitted on ({int((~unseen).sum())} were)")
        r = rank_correlations(model.predict(X[rows]), y[rows])
        table[prop] = {"kendall_tau": r["kendall"], "spearman_rho": r["spearman"], "n": int(rows.sum()),
                       "n_seen": int((~unseen).sum())}
    return table


def file_digest(path: str | Path) -> str:
    """The first 16 hex digits of a file's sha256: what studies and predictors record of their inputs."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _chosen_properties(labelled: LabelledSet, names: Sequence[str] | None) -> list[str]:
    """``names`` (all of them: the file's properties), each checked to be one of the file's."""
    if names is None:
        return list(labelled.properties)
    missing = [name for name in names if name not in labelled.properties]
    if missing:
        raise PredictorError(f"{labelled.source} has no {', '.join(map(repr, missing))}; it has "
                             f"{', '.join(labelled.properties)}")
    return list(names)


def _kept_predictors(ghn: GHN2, out: Path) -> dict[tuple[str, str], PropertyPredictor]:
    """The predictors already in ``out`` (none if it does not exist): a fit replaces the ones it refits and
    keeps the rest. A file of another GHN is refused: merging would mix two GHNs' embeddings."""
    if not out.exists():
        if not out.parent.is_dir():
            raise FileNotFoundError(f"--out {out}: the folder {out.parent} does not exist")
        return {}
    return load_predictors(ghn, out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nas.predictors",
                                     description="Fit or score the property predictors shipped with a GHN.")
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit one predictor per property of each labelled file (or --property) into --out")
    score = sub.add_parser("score", help="rank correlations of the predictors on a labelled file")
    for p in (fit, score):
        p.add_argument("--labels", nargs="+" if p is fit else None, required=True,
                       help="NAS-Bench-201 CSV or JSON lines of python -m nas.label")
        p.add_argument("--ghn", default=None, help="GHN checkpoint (default: the shipped one)")
        p.add_argument("--debug", action="store_true", help="show tracebacks")
    defaults = "; ".join(f"{space}: {p}" for space, (p, _) in SPACE_DEFAULTS.items())
    fit.add_argument("--predictor", default=None, help=f"one of {', '.join(PREDICTORS)} (default per space: {defaults})")
    fit.add_argument("--features", default=None, choices=list(FEATURE_KINDS),
                     help="what the predictor reads (default per space: "
                          + "; ".join(f"{space}: {f}" for space, (_, f) in SPACE_DEFAULTS.items()) + ")")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--out", required=True,
                     help="predictors file to write. One that exists (of the same GHN) keeps the predictors not "
                          "refitted; to refit the shipped ones, name their file, "
                          "ghn_core/checkpoints/ghn2_cifar10.predictors.joblib")
    fit.add_argument("--property", nargs="+", default=None, metavar="NAME",
                     help="the properties to fit, e.g. cifar10_noisy_acc_200ep (default: every property of each file)")
    score.add_argument("--predictors", default=None, help="default: the ones beside the GHN checkpoint")
    score.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with user_errors(args.debug):
        from .label import read_labelled

        if args.command == "fit":
            if args.predictor is not None:
                lookup(PREDICTORS, args.predictor, "predictor")
            sets = [read_labelled(path) for path in args.labels]  # all read and checked before any fit
            wanted = {labelled.source: _chosen_properties(labelled, args.property) for labelled in sets}
            ghn = ghn_core.load_ghn(args.ghn)
            kept = _kept_predictors(ghn, Path(args.out))
            fitted = []
            for labelled in sets:
                default = space_default(labelled.space)
                predictor, kind = args.predictor or default[0], args.features or default[1]
                computed = labelled_features(ghn, labelled.space,
                                             [labelled.archs[i] for i in distinct_rows(labelled)], kind)
                for prop in wanted[labelled.source]:
                    if np.isfinite(labelled.properties[prop]).sum() < MIN_CV_FIT:
                        log.info("%s: too few %s labels to fit, skipped", labelled.source, prop)
                        continue
                    p = fit_property(ghn, labelled, prop, predictor=predictor, features=kind, seed=args.seed,
                                     computed=computed)
                    log.info("%s %s: %s on %s of %d architectures, %d-fold CV Kendall %.3f, Spearman %.3f", p.space,
                             prop, p.predictor, p.features, p.fitted_on["n"], CV_FOLDS, p.cv["kendall"],
                             p.cv["spearman"])
                    fitted.append(p)
            if not fitted:
                raise PredictorError(f"no predictor fitted (each needs at least {MIN_CV_FIT} labelled architectures): "
                                     f"{args.out} is left as it was")
            refitted = {(p.space, p.property) for p in fitted}
            kept = [p for key, p in kept.items() if key not in refitted]
            out = save_predictors(kept + fitted, args.out, ghn=ghn)
            print(f"{len(fitted)} predictors fitted"
                  + (f", {len(kept)} kept ({', '.join(f'{p.space}:{p.property}' for p in kept)})" if kept else "")
                  + f": saved to {out}")
        else:
            labelled = read_labelled(args.labels)
            ghn = ghn_core.load_ghn(args.ghn)
            predictors = load_predictors(ghn, args.predictors or predictors_path(args.ghn))
            table = score_predictors(predictors, ghn, labelled)
            if args.json:
                print(json.dumps(table))
            else:
                for prop, row in table.items():
                    print(f"{labelled.space} {prop}: Kendall {row['kendall_tau']:.3f}, Spearman {row['spearman_rho']:.3f} "
                          f"on {row['n']} architectures ({row['n_seen']} seen in the fit, left out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
