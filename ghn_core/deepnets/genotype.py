"""Genotypes and architecture records of DeepNets-1M, their JSON form, liveness and canonical key.

A cell has ``steps`` summation nodes. Node ``j`` (state ``j + 2``) sums one op applied to each of
its two inputs, picked among the states before it (0 and 1 are the cell inputs). The cell outputs
the channel-wise concatenation of the states in ``concat``.

Ops that cannot influence the cell output (a ``none`` edge, an input that is itself empty, a node
nobody reads) are never built; :func:`cell_plan` computes what is live once, and both the network
builder and the canonical key use it, so two genotypes that differ only in dead parts are the same
network.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Sequence

from ..errors import ArchitectureError
from .ops import get_op

__all__ = ["Genotype", "Architecture", "CellPlan", "cell_plan"]

Edge = tuple[str, int]  # (op name, input state index)


def _as_edges(value: Any, what: str) -> tuple[Edge, ...]:
    try:
        edges = tuple((str(op), int(inp)) for op, inp in value)
    except (TypeError, ValueError):
        raise ArchitectureError(f"expected {what} as a list of [op, input] pairs, got {value!r} instead") from None
    return edges


@dataclass(frozen=True)
class Genotype:
    """A DARTS-style genotype: two edges per node for the normal and the reduction cell."""

    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self):
        for cell in ("normal", "reduce"):
            edges = _as_edges(getattr(self, cell), cell)
            concat = tuple(int(c) for c in getattr(self, f"{cell}_concat"))
            object.__setattr__(self, cell, edges)
            object.__setattr__(self, f"{cell}_concat", concat)
            if not edges or len(edges) % 2:
                raise ArchitectureError(f"{cell} cell: expected an even, non-zero number of edges (two per node), "
                                        f"got {len(edges)} instead")
            for j, (op, inp) in enumerate(edges):
                get_op(op)
                node = j // 2 + 2
                if not 0 <= inp < node:
                    raise ArchitectureError(f"{cell} cell: edge {j} ({op}) of node {node} reads state {inp}; "
                                            f"expected a state in 0..{node - 1}")
            steps = len(edges) // 2
            if not concat or any(not 2 <= c < steps + 2 for c in concat):
                raise ArchitectureError(f"{cell}_concat: expected node states in 2..{steps + 1}, got {concat!r} instead")

    @property
    def steps(self) -> int:
        return len(self.normal) // 2

    def to_dict(self) -> dict[str, list]:
        return {k: [list(e) if isinstance(e, tuple) else e for e in v] for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Genotype":
        missing = {"normal", "normal_concat", "reduce", "reduce_concat"} - set(d)
        if missing:
            raise ArchitectureError(f"genotype is missing {sorted(missing)}; got keys {sorted(d)}")
        return cls(d["normal"], d["normal_concat"], d["reduce"], d["reduce_concat"])


@dataclass(frozen=True)
class CellPlan:
    """The live part of one cell: the edges to build, the states to concatenate, which inputs are read."""

    edges: tuple[tuple[int, str, int], ...]  # (node state, op, input state)
    concat: tuple[int, ...]
    uses_s0: bool
    uses_s1: bool

    @property
    def is_empty(self) -> bool:
        return not self.concat


def cell_plan(edges: Sequence[Edge], concat: Sequence[int]) -> CellPlan:
    """Prune a cell to what can influence its output."""
    steps = len(edges) // 2
    nonempty = [True, True]
    for j in range(steps):
        nonempty.append(any(op != "none" and nonempty[inp] for op, inp in edges[2 * j: 2 * j + 2]))
    live_concat = tuple(c for c in concat if nonempty[c])
    used = set(live_concat)
    for j in reversed(range(steps)):
        if j + 2 in used:
            used.update(inp for op, inp in edges[2 * j: 2 * j + 2] if op != "none" and nonempty[inp])
    live_edges = tuple((j // 2 + 2, op, inp) for j, (op, inp) in enumerate(edges)
                       if j // 2 + 2 in used and op != "none" and nonempty[inp])
    return CellPlan(live_edges, live_concat, 0 in used, 1 in used)


@dataclass(frozen=True)
class Architecture:
    """One DeepNets-1M network: a genotype plus the network-level knobs (§1.1 of the reference).

    Width (``C``) is not part of the architecture: the same architecture is built at any width.
    """

    genotype: Genotype
    n_cells: int
    stem_type: int = 0        # 0: conv (+BN, optional max-pool); 1: DARTS ImageNet 3-conv stem; ViT nets ignore it
    stem_pool: bool = False   # max-pool after a stem_type 0 stem
    norm: str | None = "bn"   # "bn" or None (BN-free)
    preproc: bool = True      # 1x1 ReLU-Conv-BN adapters on the cell inputs
    fc_layers: int = 1        # 1 or 2 classifier layers
    fc_dim: int = 256         # hidden width of a 2-layer classifier
    glob_avg: bool = True     # global average pooling head; else flatten (VGG-style)
    ks: int = 3               # kernel of the first stem conv (stem_type 0 and 1; not ViT)
    C_mult: int = 2           # channel multiplier at each reduction cell
    _plans: tuple[CellPlan, CellPlan] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not isinstance(self.genotype, Genotype):
            raise ArchitectureError(f"expected a Genotype, got {type(self.genotype).__name__} instead")
        checks = [
            (self.n_cells >= 1, "n_cells >= 1"), (self.stem_type in (0, 1), "stem_type in {0, 1}"),
            (self.norm in ("bn", None), "norm 'bn' or None"), (self.fc_layers in (1, 2), "fc_layers in {1, 2}"),
            (self.fc_dim >= 1, "fc_dim >= 1"), (self.ks % 2 == 1, "an odd stem kernel size ks"),
            (self.C_mult >= 1, "C_mult >= 1"),
        ]
        for ok, expected in checks:
            if not ok:
                raise ArchitectureError(f"expected {expected}, got {self} instead")
        g = self.genotype
        object.__setattr__(self, "_plans", (cell_plan(g.normal, g.normal_concat), cell_plan(g.reduce, g.reduce_concat)))

    # -- structure -----------------------------------------------------------------------------
    @property
    def is_vit(self) -> bool:
        """Nets with a transformer op use the ViT patchify stem and never reduce spatially."""
        return any(op == "msa" for op, _ in self.genotype.normal + self.genotype.reduce)

    @property
    def reduction_cells(self) -> tuple[int, ...]:
        """Indices of the reduction cells: ``n_cells // 3`` and ``2 * n_cells // 3``, never cell 0."""
        return tuple(i for i in sorted({self.n_cells // 3, 2 * self.n_cells // 3}) if i > 0)

    def plan(self, reduction: bool) -> CellPlan:
        """The live edges of the normal (``reduction=False``) or reduction cell."""
        return self._plans[int(reduction)]

    def live_ops(self) -> list[str]:
        """Op names of all live edges over both cell types (one entry per edge, not per cell instance)."""
        return [op for plan in self._plans for _, op, _ in plan.edges]

    def disconnection(self) -> str | None:
        """Why the network's output does not depend on every built cell, or None when it does.

        States are numbered: 0 = stem0, 1 = stem1 (the same tensor as stem0 for one-output stems),
        2 + i = output of cell i. Cell i reads states i (as s0) and i + 1 (as s1).
        """
        n = self.n_cells
        reads: dict[int, set[int]] = {}
        for i in range(n):
            plan = self.plan(i in self.reduction_cells)
            if plan.is_empty:
                kind = "reduction" if i in self.reduction_cells else "normal"
                return f"the {kind} cell has no live path from its inputs to its output"
            reads[i + 2] = {s for s, used in ((i, plan.uses_s0), (i + 1, plan.uses_s1)) if used}
        live, frontier = set(), [n + 1]
        while frontier:
            s = frontier.pop()
            if s not in live:
                live.add(s)
                frontier.extend(reads.get(s, ()))
        dead = [s - 2 for s in range(2, n + 2) if s not in live]
        if dead:
            return f"cells {dead} never reach the classifier"
        if self.stem_type == 1 and 1 not in live:
            return "the second stem never reaches the classifier"
        return None

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if not k.startswith("_")}
        d["genotype"] = self.genotype.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Architecture":
        d = dict(d)
        try:
            genotype = Genotype.from_dict(d.pop("genotype"))
        except KeyError:
            raise ArchitectureError(f"architecture record has no 'genotype'; got keys {sorted(d)}") from None
        known = {k for k in cls.__dataclass_fields__ if not k.startswith("_")} - {"genotype"}
        unknown = set(d) - known
        if unknown:
            raise ArchitectureError(f"unknown architecture fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(genotype, **d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> "Architecture":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as err:
            raise ArchitectureError(f"architecture is not valid JSON: {err}") from None
        return cls.from_dict(d)

    def with_(self, **changes: Any) -> "Architecture":
        return replace(self, **changes)

    # -- identity ------------------------------------------------------------------------------
    def key(self) -> str:
        """Canonical text of what the network computes (live cells, knobs; not fc_dim or width).

        Edges of a node are sorted, dead edges dropped and the concat list reduced to live states, so
        genotypes that build the same network share a key. Knobs that do not change the built network
        are normalised (``stem_pool`` only exists for stem_type 0; ViT nets replace the stem, so
        their ``stem_type`` and ``ks`` do not count).
        """
        cells = []
        for plan in self._plans:
            nodes: dict[int, list[tuple[str, int]]] = {}
            for node, op, inp in plan.edges:
                nodes.setdefault(node, []).append((op, inp))
            cells.append([[node, sorted(e)] for node, e in sorted(nodes.items())] + [list(plan.concat)])
        vit = self.is_vit
        knobs = [self.n_cells, -1 if vit else self.stem_type, (not vit and self.stem_type == 0 and self.stem_pool),
                 self.norm, self.preproc, self.fc_layers, self.glob_avg,
                 -1 if vit else self.ks, self.C_mult]
        return json.dumps([cells, knobs], separators=(",", ":"))

    def key_hash(self) -> int:
        """A 63-bit integer hash of :meth:`key`, stable across processes and Python versions."""
        return int.from_bytes(hashlib.blake2b(self.key().encode(), digest_size=8).digest(), "little") >> 1

