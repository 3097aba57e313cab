"""Where labels come from: SGD training (real use) or a table of known labels (benchmarks).

Both answer ``oracle.label(arch) -> {property: value, ..., "cost_s": seconds}`` for one architecture
line of their space, so a search that asks for labels (``nas.search --label-budget``) and the
labelling command (``nas.label``) run unchanged against either:

    oracle = SGDOracle("nb201", RECIPES["cpu"])           # trains: about a minute per NB201 cell on a CPU
    oracle = TableOracle(read_labelled("labelled.csv"))   # looks up: free, for benchmarking searches
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ghn_core.errors import ArchitectureError
from ghn_core.model import GHN2

from .label import LabelledSet
from .sgd import SGDRecipe, build_architecture, init_from_ghn, train_sgd

__all__ = ["SGDOracle", "TableOracle"]


@dataclass
class SGDOracle:
    """Labels by training with ``recipe``: from PyTorch's init, or from the GHN's predicted parameters
    when ``ghn`` is given (a head start the paper measured, but on NB201 such labels ranked cells far
    worse than from PyTorch's init: BENCHMARKS.md, "Label fidelity")."""

    space: str
    recipe: SGDRecipe
    ghn: GHN2 | None = None
    data_dir: str | None = None
    device: str = "auto"
    seed: int = 0

    def describe(self) -> dict[str, Any]:
        return {"oracle": "sgd", "recipe": asdict(self.recipe), "init": "ghn" if self.ghn else "random",
                "seed": self.seed}

    def label(self, arch: str) -> dict[str, Any]:
        start = time.perf_counter()
        torch.manual_seed(self.seed)
        model = build_architecture(self.space, arch, width_scale=self.recipe.width_scale)
        if self.ghn is not None:
            init_from_ghn(model, self.ghn)
        labels = train_sgd(model, self.recipe, data_dir=self.data_dir, device=self.device, seed=self.seed)
        return {**labels, "cost_s": round(time.perf_counter() - start, 1)}


class TableOracle:
    """Labels looked up in a labelled file (:func:`nas.label.read_labelled`), by architecture line."""

    def __init__(self, table: LabelledSet):
        self.table = table
        self.space = table.space
        self._row = {}
        for i, arch in enumerate(table.archs):
            self._row.setdefault(arch, i)

    def describe(self) -> dict[str, Any]:
        return {"oracle": "table", "labels": self.table.source, "recipe": self.table.recipe}

    def __contains__(self, arch: str) -> bool:
        return arch in self._row

    def label(self, arch: str) -> dict[str, Any]:
        if arch not in self._row:
            raise ArchitectureError(f"{self.table.source} has no label for {arch[:80]}")
        i = self._row[arch]
        values = {name: (None if np.isnan(v[i]) else float(v[i])) for name, v in self.table.properties.items()}
        return {**values, "cost_s": 0.0}
