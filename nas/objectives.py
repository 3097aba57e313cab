"""Search objectives: each name maps to the proxies it optimises and their directions.

    accuracy      GHN-predicted-parameter accuracy on held-out validation images   (maximize)
    robustness    the same under Gaussian noise                                      (maximize)
    efficiency    accurate and fast: accuracy (max) and batch-1 latency (min), a Pareto study
    trainability  loss drop over a few SGD steps from the GHN's parameters           (maximize)

Several names at once make one multi-objective study over the union of their proxies; a proxy's name
(``ghn_accuracy``, ``naswot``, ...) is an objective too. With labelled architectures (``nas.search
--labels``), accuracy and robustness are scored instead by a regressor of the SGD label they stand
for, fitted on the GHN's graph embeddings (:data:`REGRESSED`). Without labels, where a property
predictor of the space ships beside the GHN, the GHN proxy gives way to it (:data:`SHIPPED`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Sequence

from ghn_core.errors import GhnNasError
from ghn_core.utils import lookup

from .proxies import PROXIES

__all__ = ["Objective", "OBJECTIVES", "REGRESSED", "SHIPPED", "resolve_objectives"]


@dataclass(frozen=True)
class Objective:
    name: str
    proxies: tuple[str, ...]
    doc: str


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("accuracy", ("ghn_accuracy",), "GHN-predicted-parameter accuracy on validation images"),
    Objective("robustness", ("ghn_robustness",), "the same under Gaussian noise (sigma 0.08 on CIFAR)"),
    Objective("efficiency", ("ghn_accuracy", "latency_b1"), "accurate and fast: a Pareto front"),
    Objective("trainability", ("trainability",), "loss drop over a few SGD steps from the GHN's parameters"),
)}


# A GHN proxy -> the regressor of the SGD label it stands for (used when labels are given).
REGRESSED = {"ghn_accuracy": "predicted_clean_acc", "ghn_robustness": "predicted_noisy_acc",
             "trainability": "predicted_train_acc_mean"}

# Per space, a GHN proxy -> the property predictor shipped beside the GHN that replaces it by default,
# where the shipped predictors file has one for that space and property.
SHIPPED = {"nb201": {"ghn_accuracy": "predicted_cifar10_test_acc_200ep",
                     "ghn_robustness": "predicted_cifar10_noisy_acc_200ep"},
           "deepnets": {"ghn_accuracy": "predicted_clean_acc", "ghn_robustness": "predicted_noisy_acc",
                        "trainability": "predicted_train_acc_mean"}}


def resolve_objectives(names: Sequence[str], *, regress: bool = False, space: str | None = None,
                       shipped: Collection[tuple[str, str]] | None = None,
                       shipped_path: str = "the predictors file") -> tuple[list[str], list[str]]:
    """Objective names -> (proxy names, Optuna directions), duplicates merged in order.

    ``regress``: GHN proxies give way to label regressors (:data:`REGRESSED`); else, on a ``space``
    with predictors beside the GHN (``shipped``: their (space, property) pairs, read from
    ``shipped_path``), to the predictor :data:`SHIPPED` names, which must then be among them: a missing
    one raises, never falls back. ``shipped=None``: a GHN with no predictors, scored by its raw proxies.
    A proxy's own name is an objective too, taken as it is (e.g. ``ghn_accuracy`` for the raw GHN proxy).
    """
    if not names:
        raise ValueError(f"expected at least one objective; known: {', '.join(OBJECTIVES)}")
    substitute = REGRESSED if regress else ({} if shipped is None else SHIPPED.get(space, {}))
    proxies: list[str] = []
    for name in names:
        if name in PROXIES and name not in OBJECTIVES:
            chosen = [name]
        else:
            chosen = [substitute.get(p, p) for p in lookup(OBJECTIVES, name, "objective",
                                                            extra=f"; or a proxy: {', '.join(PROXIES)}").proxies]
            missing = [p for p in chosen if not regress and p in SHIPPED.get(space, {}).values()
                       and (space, p.removeprefix("predicted_")) not in shipped]
            if missing:
                raw = next(proxy for proxy, predicted in SHIPPED[space].items() if predicted == missing[0])
                raise GhnNasError(f"--objective {name} on {space} is scored by the {missing[0].removeprefix('predicted_')} "
                                  f"predictor, which {shipped_path} does not have: refit it (python -m nas.predictors "
                                  f"fit --out {shipped_path}), or search on the raw GHN proxy (--objective {raw})")
        proxies += [p for p in chosen if p not in proxies]
    return proxies, [PROXIES[p].direction for p in proxies]
