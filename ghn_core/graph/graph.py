"""The :class:`Graph` record: one network's computational graph, as GHN-2 sees it."""
from __future__ import annotations

import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import breadth_first_order
from torch import nn

from ..errors import GraphError
from .trace import GraphWarning, RawGraph, trace_module
from .virtual_edges import DEFAULT_S_MAX, shortest_path_edges
from .vocab import NODE_TYPES, OP_INDEX, OP_NAMES, SOURCE_KINDS

__all__ = ["Graph", "topological_levels", "skipped_warning", "ARRAY_FORMAT_VERSION"]

ARRAY_FORMAT_VERSION = 1
_POOL_IDS = frozenset(OP_INDEX[k] for k in ("max_pool", "avg_pool"))
_PARAM_IDS = frozenset(t.index for t in NODE_TYPES if t.has_params)
_SOURCE_IDS = frozenset(OP_INDEX[k] for k in SOURCE_KINDS)


def topological_levels(edge_index: np.ndarray, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Longest-path levels of a DAG whose edges all go from a lower to a higher node index.

    Returns ``(level_fwd, level_bwd)``, each (N,) int64: ``level_fwd[v]`` is the length of the
    longest path from a node without predecessors to v, ``level_bwd[v]`` the longest path from v to a
    node without successors. No edge joins two nodes of one level, so a sweep can update a whole level
    at once.
    """
    src, dst = (np.asarray(edge_index, dtype=np.int64).reshape(2, -1))
    fwd = [0] * num_nodes
    order = np.argsort(dst, kind="stable")
    for s, d in zip(src[order].tolist(), dst[order].tolist()):
        if fwd[s] >= fwd[d]:
            fwd[d] = fwd[s] + 1
    bwd = [0] * num_nodes
    order = np.argsort(-src, kind="stable")
    for s, d in zip(src[order].tolist(), dst[order].tolist()):
        if bwd[d] >= bwd[s]:
            bwd[s] = bwd[d] + 1
    return np.asarray(fwd, dtype=np.int64), np.asarray(bwd, dtype=np.int64)


def skipped_warning(model_name: str, skipped: Mapping[str, str], num_params: int) -> GraphWarning:
    """The warning naming the ``skipped`` parameters (name -> reason) of a model of ``num_params`` tensors."""
    by_reason = defaultdict(list)
    for name, reason in skipped.items():
        by_reason[reason].append(name)
    lines = "\n".join(f"  {reason}: {', '.join(names)}" for reason, names in by_reason.items())
    return GraphWarning(f"{model_name}: {len(skipped)} of {num_params} parameter tensors have no node in "
                        f"the graph and will not be predicted:\n{lines}")


def _join(strings: Sequence[str]) -> np.ndarray:
    return np.frombuffer("\n".join(strings).encode("utf-8"), dtype=np.uint8).copy()


def _split(value, n: int | None, what: str) -> list[str]:
    if isinstance(value, np.ndarray) and value.dtype == np.uint8:
        text = value.tobytes().decode("utf-8")
    elif isinstance(value, (bytes, np.bytes_)):
        text = bytes(value).decode("utf-8")
    elif isinstance(value, (str, np.str_)):
        text = str(value)
    else:
        raise GraphError(f"from_arrays: expected {what!r} as a uint8 array or a string, got {type(value).__name__}")
    parts = text.split("\n")
    if n is not None and len(parts) != n:
        raise GraphError(f"from_arrays: {what!r} holds {len(parts)} names for {n} nodes")
    return parts


@dataclass(eq=False)
class Graph:
    """The computational graph of one network.

    Nodes are in topological order: node 0 is the ``input``, real edges go from a lower to a higher
    index, and the classifier (last conv/linear weight and its bias) comes last. A node is one
    parameter tensor (a norm node covers weight and bias) or one parameter-free op of the vocabulary.

    Fields:
        node_op: (N,) int64, ids into :data:`~ghn_core.graph.vocab.OP_NAMES`.
        param_shape: (N, 4) int64, the parameter shape made 4-D as GHN-2 does (§3.1);
            (1, 1, k, k) for pooling, zeros for the other parameter-free nodes.
        node_name: N names; the parameter's name in ``model.named_parameters()`` (so
            ``model.get_parameter(name)`` is the tensor the node predicts), "" without parameter.
        node_bias_name: N names; the bias a norm node predicts together with its weight, else "".
        node_is_classifier: (N,) bool, the classifier weight and bias (GHN-2 decodes them apart).
        edge_index: (2, E) int64, real and virtual edges, sorted by (src, dst).
        edge_dist: (E,) int64, 1 for a real edge, k in 2..s_max for a virtual edge of k hops.
        s_max: the longest virtual edge (1: no virtual edges).
        skipped: parameters of the module without a node, name -> reason.
        output_shape: shape of the tensor the traced forward returned (None for graphs built
            from architecture records).
    """

    node_op: np.ndarray
    param_shape: np.ndarray
    node_name: list[str]
    node_bias_name: list[str]
    node_is_classifier: np.ndarray
    edge_index: np.ndarray
    edge_dist: np.ndarray
    s_max: int = DEFAULT_S_MAX
    skipped: dict[str, str] = field(default_factory=dict)
    output_shape: tuple[int, ...] | None = None

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def from_module(cls, model: nn.Module, input_shape: Sequence[int] = (1, 3, 32, 32), *,
                    s_max: int = DEFAULT_S_MAX, module_kinds: Mapping | None = None,
                    strict: bool = False) -> "Graph":
        """Trace ``model`` on an input of ``input_shape`` (see :mod:`ghn_core.graph.trace`).

        Args:
            model: any classifier; its weights are not read (tracing runs on meta copies) and
                nothing in it is changed.
            input_shape: the shape of one input batch, e.g. (1, 3, 224, 224).
            s_max: longest virtual edge (GHN-2: 50; 1 for none).
            module_kinds: per-call additions to the module table, ``{ModuleType: kind}`` (see
                :func:`~ghn_core.graph.vocab.register_module`).
            strict: raise :class:`~ghn_core.errors.UnsupportedModuleError` instead of warning
                when a parameter is used directly by a module type without a node kind.

        Parameters without a node (unknown direct use, dead branches, unused) are listed in
        ``graph.skipped`` and in one :class:`~ghn_core.graph.trace.GraphWarning`.

        Raises:
            GraphError: the forward fails on ``input_shape``, the model has no parameters, the
                output does not depend on the input, or part of the graph is unreachable from the input.
        """
        raw = trace_module(model, input_shape, module_kinds=module_kinds, strict=strict)
        graph = cls.from_raw(raw, s_max=s_max)
        if raw.skipped:
            warnings.warn(skipped_warning(type(model).__name__, raw.skipped, len(dict(model.named_parameters()))),
                          stacklevel=2)
        return graph

    @classmethod
    def from_raw(cls, raw: RawGraph, *, s_max: int = DEFAULT_S_MAX) -> "Graph":
        """The graph of a :class:`~ghn_core.graph.trace.RawGraph`: virtual edges added, validated."""
        n = len(raw.kinds)
        edge_index, edge_dist = shortest_path_edges(raw.edge_index, n, s_max)
        graph = cls(
            node_op=np.fromiter((OP_INDEX[k] for k in raw.kinds), dtype=np.int64, count=n),
            param_shape=np.asarray(raw.shapes, dtype=np.int64).reshape(n, 4),
            node_name=raw.names, node_bias_name=raw.bias_names, node_is_classifier=raw.is_classifier,
            edge_index=edge_index, edge_dist=edge_dist, s_max=int(s_max), skipped=raw.skipped,
            output_shape=raw.output_shape,
        )
        return graph.validate()

    def with_virtual_edges(self, s_max: int) -> "Graph":
        """The same graph with virtual edges recomputed up to ``s_max`` hops (1: none)."""
        edge_index, edge_dist = shortest_path_edges(self.real_edge_index, self.num_nodes, s_max)
        return Graph(self.node_op.copy(), self.param_shape.copy(), list(self.node_name),
                     list(self.node_bias_name), self.node_is_classifier.copy(), edge_index, edge_dist,
                     int(s_max), dict(self.skipped))

    # -- views ------------------------------------------------------------------------------------------
    @property
    def num_nodes(self) -> int:
        return int(self.node_op.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def real_edge_index(self) -> np.ndarray:
        """(2, E_real) the edges of the data flow (``edge_dist == 1``)."""
        return self.edge_index[:, self.edge_dist == 1]

    @property
    def op_names(self) -> list[str]:
        """The node type name of every node."""
        return [OP_NAMES[i] for i in self.node_op.tolist()]

    def op_counts(self) -> dict[str, int]:
        """Number of nodes of each type present."""
        return dict(Counter(self.op_names))

    def levels(self) -> tuple[np.ndarray, np.ndarray]:
        """``(level_fwd, level_bwd)`` over the real edges (see :func:`topological_levels`)."""
        return topological_levels(self.real_edge_index, self.num_nodes)

    # -- checks -----------------------------------------------------------------------------------------
    def validate(self) -> "Graph":
        """Check shapes, ranges, topological order and reachability; raise :class:`GraphError`."""
        name = type(self).__name__
        op = np.asarray(self.node_op)
        if op.ndim != 1 or op.shape[0] < 1 or not np.issubdtype(op.dtype, np.integer):
            raise GraphError(f"{name}.node_op: expected a non-empty (N,) int array, got {op.dtype} {op.shape}")
        n = op.shape[0]
        if op.min() < 0 or op.max() >= len(OP_NAMES):
            raise GraphError(f"{name}.node_op: expected ids in [0, {len(OP_NAMES)}), found {op.min()}..{op.max()}")
        shape = np.asarray(self.param_shape)
        if shape.shape != (n, 4) or (shape < 0).any():
            raise GraphError(f"{name}.param_shape: expected ({n}, 4) non-negative, got {shape.shape}")
        for what in ("node_name", "node_bias_name", "node_is_classifier"):
            if len(getattr(self, what)) != n:
                raise GraphError(f"{name}.{what}: expected {n} entries, got {len(getattr(self, what))}")
        ei, ed = np.asarray(self.edge_index), np.asarray(self.edge_dist)
        if ei.ndim != 2 or ei.shape[0] != 2 or ed.shape != (ei.shape[1],):
            raise GraphError(f"{name}.edge_index/edge_dist: expected (2, E) and (E,), got {ei.shape} and {ed.shape}")
        if ei.size and (ei.min() < 0 or ei.max() >= n):
            raise GraphError(f"{name}.edge_index: expected node ids in [0, {n}), found {ei.min()}..{ei.max()}")
        if ed.size and (ed.min() < 1 or ed.max() > self.s_max):
            raise GraphError(f"{name}.edge_dist: expected values in [1, s_max={self.s_max}], "
                             f"found {ed.min()}..{ed.max()}")
        if (ei[0] == ei[1]).any():
            raise GraphError(f"{name}.edge_index: self-loop at node {int(ei[0][ei[0] == ei[1]][0])}")
        key = ei[0] * n + ei[1]
        # Edges are stored sorted by (src, dst), so a strictly increasing key means no duplicates;
        # only an unsorted edge list pays for the full np.unique.
        if not (np.diff(key) > 0).all() and np.unique(key).size != ei.shape[1]:
            raise GraphError(f"{name}.edge_index: duplicate edges")
        real = ei[:, ed == 1]
        if (real[0] >= real[1]).any():
            k = int(np.argmax(real[0] >= real[1]))
            raise GraphError(f"{name}: nodes are not in topological order (edge {real[0, k]} -> {real[1, k]})")
        inputs = np.flatnonzero(op == OP_INDEX["input"])
        if inputs.tolist() != [0]:
            raise GraphError(f"{name}: expected exactly one input node, at index 0; found {inputs.tolist()}")
        for i, (k, nm) in enumerate(zip(op.tolist(), self.node_name)):
            if (k in _PARAM_IDS) != bool(nm):
                raise GraphError(f"{name}: node {i} ({OP_NAMES[k]}) "
                                 f"{'has no parameter name' if nm == '' else f'names parameter {nm!r}'}")
        # every node but the parameter sources (positional embeddings, class tokens) descends from the input
        adj = csr_matrix((np.ones(real.shape[1]), (real[0], real[1])), shape=(n, n))
        reached = np.zeros(n, dtype=bool)
        reached[breadth_first_order(adj, 0, directed=True, return_predecessors=False)] = True
        lost = [i for i in np.flatnonzero(~reached).tolist() if op[i] not in _SOURCE_IDS]
        if lost:
            desc = ", ".join(f"{i} ({OP_NAMES[op[i]]}{' ' + self.node_name[i] if self.node_name[i] else ''})"
                             for i in lost[:10])
            raise GraphError(f"{len(lost)} node(s) are unreachable from the input: {desc}"
                             f"{' ...' if len(lost) > 10 else ''}")
        return self

    # -- storage ----------------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """A compact, lossless, numeric-only record (for HDF5): real edges only, names as uint8.

        Virtual edges are recomputed by :meth:`from_arrays` from the real ones and ``s_max``.
        """
        real = self.real_edge_index
        return {
            "format_version": np.asarray(ARRAY_FORMAT_VERSION, dtype=np.int32),
            "node_op": self.node_op.astype(np.uint8),
            "param_shape": self.param_shape.astype(np.int32),
            "node_is_classifier": self.node_is_classifier.astype(np.uint8),
            "edge_index": real.astype(np.int32),
            "s_max": np.asarray(self.s_max, dtype=np.int32),
            "node_name": _join(self.node_name),
            "node_bias_name": _join(self.node_bias_name),
            "skipped": _join([f"{k}\t{v}" for k, v in self.skipped.items()]),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], *, s_max: int | None = None) -> "Graph":
        """Rebuild a graph written by :meth:`to_arrays` (``s_max`` overrides the stored one)."""
        required = ("node_op", "param_shape", "node_is_classifier", "edge_index", "s_max", "node_name",
                    "node_bias_name")
        missing = [k for k in required if k not in arrays]
        if missing:
            raise GraphError(f"from_arrays: missing {', '.join(missing)}; expected the keys of Graph.to_arrays()")
        version = int(np.asarray(arrays.get("format_version", ARRAY_FORMAT_VERSION)))
        if version != ARRAY_FORMAT_VERSION:
            raise GraphError(f"from_arrays: format version {version}, this ghn-nas reads {ARRAY_FORMAT_VERSION}")
        node_op = np.asarray(arrays["node_op"]).astype(np.int64)
        n = node_op.shape[0]
        skipped_lines = _split(arrays.get("skipped", ""), None, "skipped")
        skipped = dict(line.split("\t", 1) for line in skipped_lines if line)
        stored_s_max = int(np.asarray(arrays["s_max"]))
        s = stored_s_max if s_max is None else int(s_max)
        edge_index, edge_dist = shortest_path_edges(np.asarray(arrays["edge_index"]).astype(np.int64), n, s)
        graph = cls(
            node_op=node_op,
            param_shape=np.asarray(arrays["param_shape"]).astype(np.int64).reshape(-1, 4),
            node_name=_split(arrays["node_name"], n, "node_name"),
            node_bias_name=_split(arrays["node_bias_name"], n, "node_bias_name"),
            node_is_classifier=np.asarray(arrays["node_is_classifier"]).astype(bool),
            edge_index=edge_index, edge_dist=edge_dist, s_max=s, skipped=skipped,
        )
        return graph.validate()

    # -- drawing / comparison ---------------------------------------------------------------------------
    def draw(self, path: str | Path, **kwargs) -> Path:
        """Render the graph to ``path`` with matplotlib (see :func:`ghn_core.graph.draw.draw_graph`)."""
        from .draw import draw_graph
        return draw_graph(self, path, **kwargs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return (self.s_max == other.s_max and self.node_name == other.node_name
                and self.node_bias_name == other.node_bias_name and self.skipped == other.skipped
                and all(np.array_equal(getattr(self, f), getattr(other, f)) for f in
                        ("node_op", "param_shape", "node_is_classifier", "edge_index", "edge_dist")))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        real = int((self.edge_dist == 1).sum())
        return (f"Graph(nodes={self.num_nodes}, real_edges={real}, virtual_edges={self.num_edges - real}, "
                f"s_max={self.s_max}, skipped={len(self.skipped)})")
