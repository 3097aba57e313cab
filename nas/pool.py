"""A fixed list of architectures to search instead of a whole space: ``nas.search --space pool:FILE``.

A pool file is one of:

    labels.jsonl     records of ``python -m nas.label`` (any space; the labels come along)
    labelled.csv     a NAS-Bench-201 CSV (``arch,cifar10_test_acc_200ep,...``; the labels come along)
    archs.txt        one architecture per line: NB201 strings or DeepNets-1M JSON records, not both

Its architectures are indexed in file order; a trial draws an index (``pool_index``) and records
the architecture as its space would, so reports, the dashboard and ``nas.load_architecture`` work as
for the space itself, and the same index always rebuilds the same network.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import optuna
from torch import nn

from ghn_core.errors import ArchitectureError

from .label import LabelledSet, read_labelled, validate_architecture
from .space import ATTR, get_space

__all__ = ["Pool", "PoolSpace", "read_pool", "architecture_record", "POOL_PREFIX"]

POOL_PREFIX = "pool:"
FORMATS = "a nas.label JSONL, a NAS-Bench-201 CSV, or one NB201 string or DeepNets-1M JSON record per line"


def architecture_record(space: str, arch: str) -> str:
    """What a trial of ``space`` stores under ``user_attrs["architecture"]`` for one architecture line."""
    return json.dumps(arch) if space == "nb201" else arch


@dataclass(frozen=True)
class Pool:
    """Architectures of one space, in file order, with their labels when the file has them."""

    space: str
    archs: tuple[str, ...]
    source: str
    labelled: LabelledSet | None = None

    def __len__(self) -> int:
        return len(self.archs)


def _line_space(line: str) -> str | None:
    """The space an architecture line belongs to, or None if it is neither's."""
    for space in ("nb201", "deepnets"):
        try:
            validate_architecture(space, line, where="")
            return space
        except ArchitectureError:
            continue
    return None


def read_pool(path: str | Path, space: str | None = None) -> Pool:
    """Read a pool file (see the module docstring), checked whole; ``space``: the space it must hold."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no pool at {path}: give {FORMATS}")
    if path.suffix in (".jsonl", ".csv"):
        labelled = read_labelled(path)
        pool = Pool(labelled.space, tuple(labelled.archs), str(path), labelled)
    else:
        try:
            lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise ArchitectureError(f"{path}: not a text file; a pool is {FORMATS}") from None
        if not lines:
            raise ArchitectureError(f"{path} lists no architecture; a pool is {FORMATS}")
        spaces = []
        for n, line in enumerate(lines, start=1):
            found = _line_space(line)
            if found is None:
                raise ArchitectureError(f"{path}, line {n}: neither a NAS-Bench-201 string nor a DeepNets-1M "
                                        f"architecture; a pool is {FORMATS}")
            spaces.append(found)
        other = next((n for n, s in enumerate(spaces, start=1) if s != spaces[0]), None)
        if other is not None:
            raise ArchitectureError(f"{path} mixes spaces: line 1 is {spaces[0]}, line {other} {spaces[other - 1]}; "
                                    f"one space per pool")
        pool = Pool(spaces[0], tuple(lines), str(path))
    if space is not None and pool.space != space:
        raise ArchitectureError(f"{path} holds no architecture of the {space} space (its {len(pool)} are {pool.space})")
    return pool


@dataclass(frozen=True)
class PoolSpace:
    """A search space over a :class:`Pool`: a trial draws ``pool_index``, the pool's space builds it."""

    pool: Pool

    @property
    def name(self) -> str:
        """The space of the pool's architectures (what saved architecture files record)."""
        return self.pool.space

    @property
    def base(self):
        return get_space(self.pool.space)

    @property
    def num_classes(self) -> int:
        return self.base.num_classes

    def suggest(self, trial: optuna.Trial) -> nn.Module:
        index = trial.suggest_int("pool_index", 0, len(self.pool) - 1)
        trial.set_user_attr("pool_index", index)
        trial.set_user_attr(ATTR, architecture_record(self.pool.space, self.pool.archs[index]))
        return self.rebuild(trial.user_attrs)

    def rebuild(self, user_attrs: Mapping[str, Any]) -> nn.Module:
        return self.base.rebuild(user_attrs)
