"""NAS-Bench-201 cells and networks (a second, labelled architecture space).

An architecture string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` lists, for nodes 1, 2, 3 of the cell,
the op applied to each earlier node; node 0 is the cell input, node 3 its output, and a node sums
its incoming edges. Ops: ``none``, ``skip_connect``, ``nor_conv_1x1``, ``nor_conv_3x3``
(ReLU-Conv-BN) and ``avg_pool_3x3``. The macro network (the benchmark's paper): a 3x3 conv stem
with 16 channels and BN; three stages of 5 cells with 16, 32 and 64 channels; a residual block of
stride 2 between stages; BN-ReLU, global average pooling and a linear classifier.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

import torch
from torch import nn

from .deepnets.ops import ReLUConvBN
from .errors import ArchitectureError, ColumnError

__all__ = ["NB201_OPS", "NB201Cell", "NB201Network", "parse_arch", "format_arch", "cell_key", "load_labelled",
           "read_table", "LabelledTable", "ACCURACY_COLUMNS", "NOISY_COLUMN"]

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: The CSV's 200-epoch test accuracies, and CIFAR-10 accuracy of those weights under the GHN-2 paper's
#: Gaussian noise (sigma 0.08; ``../shared/data/nb201/README.md``).
ACCURACY_COLUMNS = ("cifar10_test_acc_200ep", "cifar100_test_acc_200ep", "imagenet16_120_test_acc_200ep")
NOISY_COLUMN = "cifar10_noisy_acc_200ep"
Edges = tuple[tuple[str, ...], ...]  # edges[j - 1][i] = op from node i to node j


def parse_arch(arch: str) -> Edges:
    """``|op~0|+|op~0|op~1|+|...|`` -> ((op01,), (op02, op12), (op03, op13, op23))."""
    nodes = arch.strip().split("+")
    if len(nodes) != 3:
        raise ArchitectureError(f"expected a NAS-Bench-201 string with 3 nodes joined by '+', got {arch!r}")
    edges = []
    for j, node in enumerate(nodes, start=1):
        ops = [tok for tok in node.strip("|").split("|")]
        if len(ops) != j:
            raise ArchitectureError(f"node {j} of {arch!r}: expected {j} inputs, got {len(ops)}")
        row = []
        for i, tok in enumerate(ops):
            op, _, src = tok.partition("~")
            if op not in NB201_OPS or src != str(i):
                raise ArchitectureError(f"node {j} of {arch!r}: expected 'op~{i}' with op in {NB201_OPS}, got {tok!r}")
            row.append(op)
        edges.append(tuple(row))
    return tuple(edges)


def format_arch(edges: Edges) -> str:
    return "+".join("|" + "|".join(f"{op}~{i}" for i, op in enumerate(row)) + "|" for row in edges)


class NB201Cell(nn.Module):
    """Node j = sum over i < j of op(i -> j)(node i); 'none' edges are not built (they add zero)."""

    def __init__(self, edges: Edges, C: int):
        super().__init__()
        self.edges = edges
        self.ops = nn.ModuleDict()
        for j, row in enumerate(edges, start=1):
            for i, op in enumerate(row):
                if op == "none":
                    continue
                if op == "skip_connect":
                    module = nn.Identity()
                elif op == "avg_pool_3x3":
                    module = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
                else:
                    module = ReLUConvBN(C, C, 1 if op == "nor_conv_1x1" else 3)
                self.ops[f"{i}_{j}"] = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in range(1, 4):
            terms = [self.ops[f"{i}_{j}"](nodes[i]) for i in range(j) if f"{i}_{j}" in self.ops]
            out = terms[0] if terms else torch.zeros_like(x)
            for t in terms[1:]:
                out = out + t
            nodes.append(out)
        return nodes[3]


class _ResidualReduction(nn.Module):
    """The stride-2 residual block between stages."""

    def __init__(self, C_in: int, C_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(C_in, C_out, 3, stride=2)
        self.conv_b = ReLUConvBN(C_out, C_out, 3)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(C_in, C_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    """The NAS-Bench-201 macro network for a cell string (16 channels, 5 cells per stage)."""

    def __init__(self, arch: str, num_classes: int = 10, C: int = 16, cells_per_stage: int = 5):
        super().__init__()
        self.arch = arch
        edges = parse_arch(arch)
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers: list[nn.Module] = []
        for stage, width in enumerate((C, 2 * C, 4 * C)):
            if stage:
                layers.append(_ResidualReduction(width // 2, width))
            layers.extend(NB201Cell(edges, width) for _ in range(cells_per_stage))
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(4 * C), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * C, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


@dataclass(frozen=True)
class LabelledArch:
    arch: str
    cifar10: float
    cifar100: float
    imagenet16_120: float


class LabelledTable(Mapping[str, np.ndarray]):
    """A labelled NB201 CSV: its ``arch`` strings, and every other column as a property by name.

    ``table[name]`` is that column as floats (one per string, in file order); it is parsed when first
    asked for, so a column with an empty or non-numeric cell only fails when it is the one chosen,
    with the file and line of that cell. An unknown name raises ``ColumnError`` (a ``KeyError``) listing the columns.
    """

    def __init__(self, path: Path, archs: list[str], cells: dict[str, list[str]]):
        self.path, self.archs, self._cells = path, archs, cells
        self._parsed: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._cells:
            raise ColumnError(f"{self.path} has no column {name!r}; its columns: arch, {', '.join(self._cells)}")
        if name not in self._parsed:
            values = np.empty(len(self.archs))
            for i, text in enumerate(self._cells[name]):
                try:
                    values[i] = float(text)
                except ValueError:
                    raise ArchitectureError(f"{self.path}, line {i + 2}: {name} is {text!r}, not a number") from None
            self._parsed[name] = values
        return self._parsed[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._cells)

    def __len__(self) -> int:
        return len(self._cells)


def read_table(path: str | Path) -> LabelledTable:
    """A labelled NB201 CSV (an ``arch`` column, then property columns), checked for its header and
    rows; columns are converted to numbers as they are asked for (:class:`LabelledTable`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no NAS-Bench-201 labels at {path}")
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)  # None: an empty file
        rows = list(reader)
    if not header or "arch" not in header or len(header) < 2:
        raise ArchitectureError(f"{path}: expected a header with an 'arch' column and property columns, got "
                                f"{','.join(header or []) or 'an empty file'}")
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise ArchitectureError(f"{path} has no labelled architectures (a header and no rows)")
    for n, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise ArchitectureError(f"{path}, line {n}: {len(row)} fields, the header has {len(header)}")
    at = header.index("arch")
    cells = {name: [r[j].strip() for r in rows] for j, name in enumerate(header) if j != at}
    return LabelledTable(path, [r[at].strip() for r in rows], cells)


def load_labelled(path: str | Path) -> list[LabelledArch]:
    """Rows of a labelled NB201 CSV with its three 200-epoch accuracies (``cifar10_test_acc_200ep``,
    ``cifar100_...``, ``imagenet16_120_...``); :func:`read_table` reads any column by name."""
    table = read_table(path)
    columns = [table[name] for name in ACCURACY_COLUMNS]  # a missing one: ColumnError naming the columns
    return [LabelledArch(arch, *(float(c[i]) for c in columns)) for i, arch in enumerate(table.archs)]


def cell_key(arch: str) -> str:
    """A canonical form of the function a cell computes, equal for isomorphic cells.

    A node is the sorted multiset of the terms it sums: ``op(node i)`` per live incoming edge, with
    ``skip_connect`` splicing in node i's own terms (identity, and sums are associative); ``none``
    edges and edges from nodes with no live input (zeros) are dropped. On the labelled CSV's 2,554
    strings this gives 924 cells, a little coarser than the benchmark's own isomorphism (1,000), so
    strings it groups can never land on both sides of a fit/score split. NAS-Bench-201 trained every
    string apart, so strings of one cell carry different measured accuracies.
    """
    edges = parse_arch(arch)
    nodes: list[tuple[str, ...] | None] = [("in",)]
    for row in edges:
        terms: list[str] = []
        for i, op in enumerate(row):
            if op == "none" or nodes[i] is None:
                continue
            terms.extend(nodes[i] if op == "skip_connect" else [f"{op}({'+'.join(nodes[i])})"])
        nodes.append(tuple(sorted(terms)) if terms else None)
    return "+".join(nodes[3]) if nodes[3] else "zero"
