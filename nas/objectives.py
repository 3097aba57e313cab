"""Search objectives: each name maps to the proxies it optimises and their directions.

    accuracy      GHN-predicted-parameter accuracy on held-out validation images   (maximize)
    robustness    the same under Gaussian noise                                      (maximize)
    efficiency    accurate and fast: accuracy (max) and batch-1 latency (min), a Pareto study
    trainability  loss drop over a few SGD steps from the GHN's parameters           (maximize)

Several names at once make one multi-objective study over the union of their proxies. With labelled
architectures (``nas.search --labels``), accuracy and robustness are scored instead by a regressor
of the SGD label they stand for, fitted on the GHN's graph embeddings (:data:`REGRESSED`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ghn_core.utils import lookup

from .proxies import PROXIES

__all__ = ["Objective", "OBJECTIVES", "REGRESSED", "resolve_objectives"]


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
REGRESSED = {"ghn_accuracy": "predicted_clean_acc", "ghn_robustness": "predicted_noisy_acc"}


def resolve_objectives(names: Sequence[str], *, regress: bool = False) -> tuple[list[str], list[str]]:
    """Objective names -> (proxy names, Optuna directions), duplicates merged in order.

    ``regress``: GHN accuracy proxies give way to label regressors (:data:`REGRESSED`).
    """
    if not names:
        raise ValueError(f"expected at least one objective; known: {', '.join(OBJECTIVES)}")
    proxies: list[str] = []
    for name in names:
        for proxy in lookup(OBJECTIVES, name, "objective").proxies:
            proxy = REGRESSED.get(proxy, proxy) if regress else proxy
            if proxy not in proxies:
                proxies.append(proxy)
    return proxies, [PROXIES[p].direction for p in proxies]
