"""Search spaces as Optuna define-by-run functions: a trial in, an architecture out.

Each space draws its choices with ``trial.suggest_*``, stores what it built on the trial as JSON
(``trial.user_attrs["architecture"]``), and rebuilds the same network from that record alone, so a
study's storage is enough to retrain any trial. An architecture the DeepNets-1M filters reject
(disconnected, two CSE in a cell, too many parameters, ...) prunes the trial with the reason.

    space = get_space("deepnets")
    model = space.suggest(trial)                         # inside an Optuna objective
    same = space.rebuild(trial.user_attrs)               # later, from the storage

A search saves its best architectures as small JSON files (``save_architecture``) that
``load_architecture(path)`` turns back into the network, with no storage needed.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import optuna
from torch import nn

from ghn_core.deepnets import PRIMITIVES, Architecture, Genotype, Network, rejection_reason
from ghn_core.errors import ArchitectureError
from ghn_core.nb201 import NB201_OPS, NB201Network, format_arch
from ghn_core.utils import lookup

__all__ = ["DeepNetsSpace", "NB201Space", "CustomSpace", "SPACES", "get_space", "save_architecture",
           "load_architecture"]

ATTR = "architecture"  # the trial user attribute holding the built architecture (JSON)


@dataclass(frozen=True)
class DeepNetsSpace:
    """The DeepNets-1M SEARCH split's ranges: 6-20 cells, 1-6 nodes per cell (1-3 past 10 cells),
    two inputs per node with one of the 15 ops each, always BN; nets are built at width ``C``."""

    C: int = 32
    num_classes: int = 10
    max_params: int = 10**7
    name: str = "deepnets"

    def suggest_architecture(self, trial: optuna.Trial) -> Architecture:
        n_cells = trial.suggest_int("n_cells", 6, 20)
        # Deep nets get fewer nodes per cell; the two ranges are separate parameters (define-by-run).
        steps = (trial.suggest_int("steps", 1, 6) if n_cells <= 10 else trial.suggest_int("steps_deep", 1, 3))
        ops = list(PRIMITIVES)  # one choice set per parameter name (Optuna); 'none' may disconnect -> pruned
        cells = {}
        for cell in ("normal", "reduce"):
            edges = []
            for j in range(steps):
                for k in range(2):
                    edges.append((trial.suggest_categorical(f"{cell}_{j}_{k}_op", ops),
                                  trial.suggest_int(f"{cell}_{j}_{k}_input", 0, j + 1)))
            cells[cell] = edges
        concat = list(range(2, steps + 2))
        genotype = Genotype(cells["normal"], concat, cells["reduce"], concat)
        is_vit = any(op == "msa" for op, _ in genotype.normal + genotype.reduce)
        stem_type = trial.suggest_int("stem_type", 0, 1)
        return Architecture(
            genotype, n_cells, stem_type=stem_type,
            stem_pool=stem_type == 0 and trial.suggest_categorical("stem_pool", [False, True]),
            norm="bn", preproc=True, fc_layers=trial.suggest_int("fc_layers", 1, 2), fc_dim=256,
            glob_avg=is_vit or n_cells > 10 or trial.suggest_categorical("glob_avg", [True, False]),
            ks=trial.suggest_categorical("ks", [3, 5, 7]), C_mult=trial.suggest_int("C_mult", 1, 2))

    def suggest(self, trial: optuna.Trial) -> nn.Module:
        arch = self.suggest_architecture(trial)
        reason, params, _ = rejection_reason(arch, self.max_params)
        trial.set_user_attr(ATTR, arch.to_json())
        if reason is not None:
            raise optuna.TrialPruned(f"rejected architecture: {reason}")
        trial.set_user_attr("num_params_c32", params)
        return self.build(arch)

    def build(self, arch: Architecture) -> nn.Module:
        return Network(arch, self.C, self.num_classes)

    def rebuild(self, user_attrs: Mapping[str, Any]) -> nn.Module:
        return self.build(Architecture.from_json(_record(user_attrs)))


@dataclass(frozen=True)
class NB201Space:
    """NAS-Bench-201: one of 5 ops on each of the 6 edges of the cell, in the benchmark's macro network
    (first stage of width ``C``: 16 in the benchmark)."""

    C: int = 16
    num_classes: int = 10
    name: str = "nb201"

    def suggest(self, trial: optuna.Trial) -> nn.Module:
        edges = tuple(tuple(trial.suggest_categorical(f"edge_{i}_{j}", list(NB201_OPS)) for i in range(j))
                      for j in range(1, 4))
        arch = format_arch(edges)
        trial.set_user_attr(ATTR, json.dumps(arch))
        return NB201Network(arch, self.num_classes, C=self.C)

    def rebuild(self, user_attrs: Mapping[str, Any]) -> nn.Module:
        return NB201Network(json.loads(_record(user_attrs)), self.num_classes, C=self.C)


@dataclass(frozen=True)
class CustomSpace:
    """A user's space: ``build(trial) -> nn.Module``; ``rebuild`` replays the trial's parameters."""

    build_fn: Callable[[optuna.Trial], nn.Module]
    name: str = "custom"

    def suggest(self, trial: optuna.Trial) -> nn.Module:
        return self.build_fn(trial)

    def rebuild(self, params: Mapping[str, Any]) -> nn.Module:
        """Build again from a finished trial's ``params`` (a FixedTrial answers every suggest)."""
        return self.build_fn(optuna.trial.FixedTrial(dict(params)))


def _record(user_attrs: Mapping[str, Any]) -> str:
    if ATTR not in user_attrs:
        raise ValueError(f"expected the trial's user attributes to hold {ATTR!r} (set by the space), "
                         f"got keys {sorted(user_attrs)} instead")
    return user_attrs[ATTR]


SPACES: dict[str, Callable[..., Any]] = {"deepnets": DeepNetsSpace, "nb201": NB201Space}


def get_space(name: str, **kwargs: Any):
    """A built-in space by name (``deepnets``, ``nb201``), or ``pool:FILE`` (a fixed list, ``nas.pool``);
    an unknown name lists the known ones."""
    if name.startswith("pool:"):
        from .pool import PoolSpace, read_pool

        return PoolSpace(read_pool(name.removeprefix("pool:")))
    return lookup(SPACES, name, "search space", extra="; or pool:FILE")(**kwargs)


def save_architecture(path: str | os.PathLike, space: str, user_attrs: Mapping[str, Any], **info: Any) -> Path:
    """Write one trial's architecture as JSON: the space's name, the architecture as the trial's user
    attributes hold it, and ``info`` (trial number, proxy values, ...), for ``load_architecture``.
    The file is written whole or not at all (a temporary file, then ``os.replace``)."""
    get_space(space)  # an unknown space is refused here, not when the file is read back
    path = Path(path)
    record = {"space": space, ATTR: _record(user_attrs), **info}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def load_architecture(path: str | os.PathLike) -> nn.Module:
    """The network of an architecture file a search wrote (``runs/<study>/architectures/*.json``),
    freshly initialised: ``get_space(space).rebuild(...)`` on the file's record.

        model = nas.load_architecture("runs/robustness-deepnets/architectures/rank1_trial12.json")

    Raises FileNotFoundError for a missing file and ArchitectureError (a ValueError) for a file that
    is not JSON, lacks ``space`` or ``architecture``, names an unknown space or holds an architecture
    the space cannot build; each message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no architecture file at {path}: give a JSON file nas.search wrote "
                                f"(runs/<study>/architectures/rank1_trial<N>.json)")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArchitectureError(f"{path} is not an architecture file: not JSON ({err})") from None
    missing = [key for key in ("space", ATTR) if not isinstance(record, dict) or key not in record]
    if missing:
        found = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise ArchitectureError(f"{path} is not an architecture file: expected the keys 'space' and {ATTR!r}, "
                                f"missing {missing} (found {found})")
    try:
        space = lookup(SPACES, record["space"], "search space", ArchitectureError)()
    except ArchitectureError as err:
        raise ArchitectureError(f"{path}: {err}") from None
    try:
        return space.rebuild({ATTR: record[ATTR]})
    except (ValueError, TypeError, KeyError) as err:
        raise ArchitectureError(f"{path}: the {record['space']} space cannot build its architecture: "
                                f"{type(err).__name__}: {err}") from None
