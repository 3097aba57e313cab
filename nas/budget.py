"""Label-efficient search: spend ``K`` labels where a model of the labels so far expects the best.

``nas.search --label-budget K`` runs a study whose trials are labels. Each trial labels one
candidate (a pool's architectures, or a seeded sample of the space) with a :mod:`nas.oracle`: a
short SGD run from the GHN's predicted parameters, or a lookup in a table when benchmarking. The
next candidate is chosen by :func:`propose`:

1. the first ``N_INIT`` labels go to the candidates a zero-label prior ranks highest among a seeded
   random sample of ``PRIOR_SAMPLE`` (:data:`OBJECTIVE_PRIOR`: log parameters, a strong zero-cost proxy
   of accuracy; for robustness none, so the sample's seeded random order);
2. after that, a Gaussian process on the candidates' features (GHN graph embedding and cheap graph
   features, standardised) is fitted to the normal scores of the labels' ranks, and the candidate
   with the highest upper confidence bound (mean + ``KAPPA`` sd) is labelled next.

The final candidates are the labelled ones; the study's best trial is the best label. Labels are
claimed through the study's storage, so several workers never label the same net (nor the same
NB201 cell twice), a resumed study does not relabel, and the budget is never exceeded: a worker
that finds its claim taken or over budget gives the trial up (PRUNED) before labelling.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import optuna
from optuna.trial import TrialState
from scipy.stats import norm, rankdata

from .pool import Pool, PoolSpace
from .storage import worker_id

__all__ = ["OBJECTIVE_LABELS", "OBJECTIVE_PRIOR", "label_property", "propose", "Candidates", "make_candidates", "LabelBudgetSampler",
           "label_objective", "labelled_trials",
           "N_INIT", "PRIOR_SAMPLE", "KAPPA"]

log = logging.getLogger("nas.budget")

N_INIT = 5            # labels placed by the zero-label prior before a model is fitted
PRIOR_SAMPLE = 100    # ... among this many random candidates (seeded), as NASWOT's protocol picks
KAPPA = 2.0           # upper confidence bound: mean + KAPPA * sd (in normal scores)
CLAIM = "label_key"   # trial user attribute: the net (architecture key) the trial labels

#: Objective -> the label properties that measure it, in order of preference.
#: A nas.label record's property comes first, then the NAS-Bench-201 CSV column that measures the same.
OBJECTIVE_LABELS: dict[str, tuple[str, ...]] = {"accuracy": ("clean_acc", "cifar10_test_acc_200ep"),
                                                 "robustness": ("noisy_acc", "cifar10_noisy_acc_200ep"),
                                                 "trainability": ("train_acc_mean",)}


#: Objective -> the zero-label prior that places the first labels: a cheap graph feature, or None (the
#: seeded random order). On NB201 #params picks fragile cells (26.9% noisy accuracy, below a random
#: pick's 28.7%), and with it the robustness search found 44.8% with 20 labels against 52.1% without
#: (labelled pool, 20 seeds; BENCHMARKS.md "Noise robustness").
OBJECTIVE_PRIOR: dict[str, str | None] = {"accuracy": "log_params", "robustness": None, "trainability": "log_params"}


def label_property(objective: str, available: Sequence[str] | None = None) -> str:
    """The label an objective is judged by; with ``available`` (a table's properties), one it has."""
    if objective not in OBJECTIVE_LABELS:
        raise ValueError(f"a label budget needs one objective of {', '.join(OBJECTIVE_LABELS)}, got {objective!r}")
    wanted = OBJECTIVE_LABELS[objective]
    if available is None:
        return wanted[0]
    found = [p for p in wanted if p in available]
    if not found:
        raise ValueError(f"the labels have no {' or '.join(wanted)} (for {objective}); they have "
                         f"{', '.join(available)}")
    return found[0]


def table_property(label: str, available: Sequence[str]) -> str:
    """The property of a labelled file that measures a nas.label property: ``label`` itself, or the
    column of an NB201 CSV that stands for it (``noisy_acc`` -> ``cifar10_noisy_acc_200ep``)."""
    same = next((props for props in OBJECTIVE_LABELS.values() if label in props), (label,))
    return next((p for p in same if p in available), label)


def _normal_scores(values: np.ndarray) -> np.ndarray:
    return norm.ppf((rankdata(values) - 0.5) / len(values))


def propose(X: np.ndarray, labelled: Sequence[int], values: Sequence[float], blocked: np.ndarray, *,
            prior: np.ndarray, seed: int) -> tuple[int, dict[str, float]]:
    """The next candidate to label, and what the model expected of it.

    ``X``: (n, d) standardised features of every candidate; ``labelled``/``values``: the candidates
    labelled so far and their labels (higher is better); ``blocked``: (n,) candidates that must not
    be proposed (labelled, claimed, or without features); ``prior``: (n,) zero-label scores.
    """
    free = np.flatnonzero(~blocked)
    if free.size == 0:
        raise ValueError("every candidate is labelled or claimed: nothing left to propose")
    if len(labelled) < N_INIT:
        rng = np.random.default_rng(seed)
        sample = rng.permutation(len(X))[:PRIOR_SAMPLE]  # the same sample at every step of one seed
        sample = sample[~blocked[sample]]
        pick = sample[np.argmax(prior[sample])] if sample.size else rng.choice(free)
        return int(pick), {"prior": float(prior[pick])}
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    kernel = ConstantKernel(1.0) * RBF(length_scale=np.sqrt(X.shape[1])) + WhiteKernel(0.1)
    gp = GaussianProcessRegressor(kernel, normalize_y=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a bound reached on a few labels: still usable
        gp.fit(X[list(labelled)], _normal_scores(np.asarray(values, dtype=float)))
    mean, sd = gp.predict(X[free], return_std=True)
    best = int(np.argmax(mean + KAPPA * sd))
    return int(free[best]), {"mean": float(mean[best]), "sd": float(sd[best])}


def labelled_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's labels: complete trials that claimed a net."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if CLAIM in t.user_attrs]


@dataclass
class Candidates:
    """What a label-budget study chooses among: a pool, each net's key, standardised features and prior."""

    pool: Pool
    keys: list[str]
    X: np.ndarray                 # (n, d); rows of nets without a graph are never proposed
    has_features: np.ndarray      # (n,) bool
    prior: np.ndarray             # (n,) zero-label score, higher is better
    embedding: np.ndarray         # (n, hid) raw GHN embeddings (NaN rows: no graph), what predictors read
    cheap: np.ndarray             # (n, len(FEATURE_NAMES)) raw graph features (NaN rows: no graph)
    _rows_of: dict[str, list[int]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for i, key in enumerate(self.keys):
            self._rows_of.setdefault(key, []).append(i)

    def blocked(self, keys: set[str]) -> np.ndarray:
        mask = ~self.has_features.copy()
        for key in keys:
            mask[self._rows_of.get(key, [])] = True
        return mask


def make_candidates(ghn, pool: Pool, *, objective: str = "accuracy", progress: bool = True) -> Candidates:
    """Features and prior (the objective's :data:`OBJECTIVE_PRIOR`) of every pool architecture, computed
    once per distinct net (NB201 strings of one cell share the first one's): one graph each
    (``architecture_graph``), embeddings in batches of 256."""
    from ghn_core.errors import GraphError
    from ghn_core.graph import GraphWarning
    from sklearn.preprocessing import StandardScaler
    from tqdm.auto import tqdm

    from .label import build_architecture
    from .predictors import FEATURE_NAMES, architecture_graph, architecture_key, graph_features

    keys = [architecture_key(pool.space, arch) for arch in pool.archs]
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    graphs, cheap, traced = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GraphWarning)  # ops on dead nodes are reported, by design
        for key, i in tqdm(first.items(), desc="candidate graphs", unit="net", disable=not progress or None):
            model = build_architecture(pool.space, pool.archs[i])
            try:
                graph = architecture_graph(ghn, pool.space, pool.archs[i], model)
            except GraphError:
                continue  # no input-output path: nothing to embed, never proposed
            graphs.append(graph)
            cheap.append(graph_features(graph, model))
            traced.append(key)
    if not graphs:
        raise ValueError(f"no architecture of {pool.source} has a graph the GHN can embed")
    emb = np.vstack([ghn.embed(graphs=graphs[s: s + 256]).numpy() for s in range(0, len(graphs), 256)])
    feats = np.hstack([emb, np.array(cheap)])
    feats = StandardScaler().fit_transform(feats[:, feats.std(0) > 0])  # unsupervised: no label is used
    row = {key: j for j, key in enumerate(traced)}
    has = np.array([key in row for key in keys])
    rows = [row[key] for key, ok in zip(keys, has) if ok]  # each pool net's traced net
    X = np.zeros((len(keys), feats.shape[1]))
    X[has] = feats[rows]
    prior = np.full(len(keys), -np.inf)
    feature = OBJECTIVE_PRIOR[objective]
    prior[has] = np.array(cheap)[rows, FEATURE_NAMES.index(feature)] if feature else 0.0  # 0: the sample's order
    embedding = np.full((len(keys), emb.shape[1]), np.nan)
    embedding[has] = emb[rows]
    raw_cheap = np.full((len(keys), len(FEATURE_NAMES)), np.nan)
    raw_cheap[has] = np.array(cheap)[rows]
    return Candidates(pool, keys, X, has, prior, embedding, raw_cheap)


class LabelBudgetSampler(optuna.samplers.BaseSampler):
    """Draws ``pool_index`` with :func:`propose` from the study's labels so far (every worker's)."""

    def __init__(self, candidates: Candidates, seed: int):
        self.candidates = candidates
        self.seed = seed

    def infer_relative_search_space(self, study, trial) -> dict:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict:
        return {}

    def sample_independent(self, study, trial, param_name: str, param_distribution) -> Any:
        if param_name != "pool_index":
            raise ValueError(f"a label-budget study draws pool_index only, not {param_name!r}")
        done = labelled_trials(study)
        claimed = {t.user_attrs[CLAIM] for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                   if CLAIM in t.user_attrs}
        keys = {t.user_attrs[CLAIM] for t in done} | claimed
        index, expected = propose(self.candidates.X, [t.params["pool_index"] for t in done],
                                  [t.value for t in done], self.candidates.blocked(keys),
                                  prior=self.candidates.prior, seed=self.seed)
        study._storage.set_trial_user_attr(trial._trial_id, "expected", expected)
        return index


def label_objective(candidates: Candidates, oracle, prop: str, budget: int,
                    on_label: Callable[[int, dict], None] | None = None) -> Callable[[optuna.Trial], float]:
    """The trial: claim the drawn net, check the claim and the budget against every worker's, label it."""
    space = PoolSpace(candidates.pool)
    me = worker_id()

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", me)
        space.suggest(trial)  # records pool_index and the architecture, as a pool search does
        index = trial.params["pool_index"]
        key = candidates.keys[index]
        trial.set_user_attr(CLAIM, key)  # claim first, then look: of two racing claims one sees the other
        others = [t for t in trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE))
                  if t.number != trial.number and CLAIM in t.user_attrs]
        if any(t.user_attrs[CLAIM] == key for t in others):
            raise optuna.TrialPruned(f"another trial labels {key[:60]}")
        if len(others) >= budget:
            raise optuna.TrialPruned(f"the label budget of {budget} is spent")
        labels = oracle.label(candidates.pool.archs[index])
        for name, value in labels.items():
            if name != "train_acc_curve":
                trial.set_user_attr(f"label_{name}", value)
        if on_label is not None:
            on_label(index, labels)
        if labels.get(prop) is None:
            raise ValueError(f"the oracle gave no {prop} for {candidates.pool.archs[index][:80]}")
        return float(labels[prop])

    return objective
