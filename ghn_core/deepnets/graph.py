"""DeepNets-1M architecture -> :class:`~ghn_core.graph.Graph`, straight from the genotype.

    graph = architecture_graph(arch, C=32, num_classes=10)      # == Graph.from_module(Network(...), ...)

:meth:`Graph.from_module` on a meta :class:`~ghn_core.deepnets.network.Network` gives the same
graph, but building the modules (~60 us per layer) and tracing their forward (25-60 ms per net)
caps generation at ~10-15 nets/s per core. This module walks the architecture instead and emits the
nodes the tracer would create while ``Network.forward`` runs, in the same order, with the same
edges, shapes and parameter names. ``tests/test_deepnets_graph.py`` checks equality field by field.

It mirrors three sources, and must change with them:

* ``ops.py``: one function per op below (:data:`OP_GRAPHS`, keyed like :data:`~ghn_core.deepnets.ops.OPS`);
* ``network.py``: stems, cells and classifier (:func:`architecture_graph`), with the layout
  (:func:`~ghn_core.deepnets.network.net_layout`) and input-adapter decisions taken from there;
* ``graph/trace.py``: which torch calls create nodes (:class:`_Emitter`), and the final reachability
  check and ordering (:func:`_finish`).

Provenance is one node id per tensor. The tracer tracks sets of nodes, but in these networks every
set it builds has one element: a sum, gate or concat of tensors of different provenance creates a
node, and one of tensors of equal provenance (``skip(s1) + skip(s1)``, two identical inputs to a
concat) creates none and keeps that provenance (:meth:`_Emitter.add`, :meth:`_Emitter.cat`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import ArchitectureError, GraphError
from ..graph.graph import Graph
from ..graph.virtual_edges import DEFAULT_S_MAX, shortest_path_edges
from ..graph.vocab import CONV_KINDS, OP_INDEX
from .genotype import Architecture
from .network import CellLayout, preprocess0_kind, preprocess1_kind, vit_patch, net_layout
from .ops import MSA, OPS

__all__ = ["architecture_graph", "OP_GRAPHS"]

_NO_SHAPE = (0, 0, 0, 0)
_INPUT = 0   # node 0: the network input


class _Emitter:
    """Nodes and real edges in the tracer's creation order. Every method takes and returns node ids
    (the provenance of a tensor); a node's edges all come from nodes created before it."""

    def __init__(self):
        self.kinds: list[str] = ["input"]
        self.shapes: list[tuple[int, int, int, int]] = [_NO_SHAPE]
        self.names: list[str] = [""]
        self.bias_names: list[str] = [""]
        self.src: list[int] = []
        self.dst: list[int] = []

    def node(self, kind: str, inputs: tuple[int, ...] = (), shape=_NO_SHAPE, name: str = "",
             bias_name: str = "") -> int:
        v = len(self.kinds)
        self.kinds.append(kind)
        self.shapes.append(shape)
        self.names.append(name)
        self.bias_names.append(bias_name)
        for u in inputs:
            self.src.append(u)
            self.dst.append(v)
        return v

    # -- layers with parameters (trace.py: ``layer`` / ``op_norm``) --
    def conv(self, name: str, shape: tuple[int, int, int, int], x: int, *, bias: bool = False,
             groups: int = 1, dilation: int = 1) -> int:
        """``F.conv2d``/``F.linear``: the weight node fed by ``x``, then the bias node after it.

        ``name`` is the module path; a grouped conv is ``sep_conv``, or ``dil_conv`` when dilated.
        """
        kind = "conv" if groups == 1 else ("dil_conv" if dilation > 1 else "sep_conv")
        w = self.node(kind, (x,), shape, f"{name}.weight")
        return self.node("bias", (w,), (shape[0], 1, 1, 1), f"{name}.bias") if bias else w

    def linear(self, name: str, c_out: int, c_in: int, x: int, *, bias: bool = True) -> int:
        return self.conv(name, (c_out, c_in, 1, 1), x, bias=bias)

    def norm(self, kind: str | None, name: str, C: int, x: int) -> int:
        """One node for weight and bias (``bn`` or ``ln``); ``None`` is ``nn.Identity`` (BN-free)."""
        if kind is None:
            return x
        return self.node(kind, (x,), (C, 1, 1, 1), f"{name}.weight", f"{name}.bias")

    def source(self, kind: str, name: str, shape: tuple[int, int, int, int]) -> int:
        """A parameter used directly in forward by a ``source`` module kind (``PosEnc``): no inputs."""
        return self.node(kind, (), shape, name)

    # -- parameter-free nodes (``op_pool``, ``op_mean``/``op_adaptive_pool``, ``op_sdpa``, ``_merge``) --
    def pool(self, kind: str, k: int, x: int) -> int:
        return self.node(kind, (x,), (1, 1, k, k))

    def glob_avg(self, x: int) -> int:
        return self.node("glob_avg", (x,))

    def attention(self, qkv: int) -> int:
        return self.node("msa", (qkv,))

    def add(self, a: int, b: int) -> int:
        """``a + b``: a ``sum`` node, unless both hold the same provenance (then no node)."""
        return a if a == b else self.node("sum", (a, b))

    def gate(self, x: int, w: int) -> int:
        """``x * w`` (squeeze-excitation): a ``cse`` node, unless both hold the same provenance."""
        return x if x == w else self.node("cse", (x, w))

    def cat(self, xs: list[int]) -> int:
        """``torch.cat``: a ``concat`` node fed by each distinct provenance, if there are two or more."""
        distinct = tuple(dict.fromkeys(xs))
        return distinct[0] if len(distinct) == 1 else self.node("concat", distinct)


# -- ops.py, one function per op: (emitter, module path, input node, C, stride, norm) -> output node ----

def relu_conv_bn(e: _Emitter, p: str, x: int, C_in: int, C_out: int, k: int, norm: str | None) -> int:
    """:class:`~ghn_core.deepnets.ops.ReLUConvBN`: ``{p}.1`` conv, ``{p}.2`` norm."""
    x = e.conv(f"{p}.1", (C_out, C_in, k, k), x)
    return e.norm(norm, f"{p}.2", C_out, x)


def conv7x1_1x7(e: _Emitter, p: str, x: int, C: int, norm: str | None) -> int:
    x = e.conv(f"{p}.1", (C, C, 1, 7), x)
    x = e.conv(f"{p}.2", (C, C, 7, 1), x)
    return e.norm(norm, f"{p}.3", C, x)


def dil_conv(e: _Emitter, p: str, x: int, C: int, k: int, dilation: int, norm: str | None) -> int:
    """:class:`~ghn_core.deepnets.ops.DilConv`: depthwise ``{p}.1``, pointwise ``{p}.2``, norm ``{p}.3``."""
    x = e.conv(f"{p}.1", (C, 1, k, k), x, groups=C, dilation=dilation)
    x = e.conv(f"{p}.2", (C, C, 1, 1), x)
    return e.norm(norm, f"{p}.3", C, x)


def sep_conv(e: _Emitter, p: str, x: int, C: int, k: int, norm: str | None) -> int:
    x = dil_conv(e, f"{p}.0", x, C, k, 1, norm)
    return dil_conv(e, f"{p}.1", x, C, k, 1, norm)


def factorized_reduce(e: _Emitter, p: str, x: int, C_in: int, C_out: int, norm: str | None) -> int:
    """Two strided 1x1 convs on the same (shifted) input, concatenated, then the norm."""
    a = e.conv(f"{p}.conv_1", (C_out // 2, C_in, 1, 1), x)
    b = e.conv(f"{p}.conv_2", (C_out - C_out // 2, C_in, 1, 1), x)
    return e.norm(norm, f"{p}.norm", C_out, e.cat([a, b]))


def msa(e: _Emitter, p: str, x: int, C: int) -> int:
    """Pre-LN transformer layer: ln1 -> qkv -> attention -> proj (+ residual), ln2 -> fc1 -> fc2 (+ residual)."""
    if C % MSA.num_heads:   # as MSA.__init__
        raise ArchitectureError(f"msa needs channels divisible by {MSA.num_heads}, got C={C} instead")
    h = e.linear(f"{p}.qkv", 3 * C, C, e.norm("ln", f"{p}.ln1", C, x), bias=False)
    x = e.add(x, e.linear(f"{p}.proj", C, C, e.attention(h)))
    h = e.linear(f"{p}.fc1", C, C, e.norm("ln", f"{p}.ln2", C, x))
    return e.add(x, e.linear(f"{p}.fc2", C, C, h))


def cse(e: _Emitter, p: str, x: int, C: int) -> int:
    """Mean over H, W -> squeeze conv -> excite conv -> Hardswish, times the input."""
    w = e.conv(f"{p}.squeeze", (C // 2, C, 1, 1), e.glob_avg(x), bias=True)
    w = e.conv(f"{p}.excite", (C, C // 2, 1, 1), w, bias=True)
    return e.gate(x, w)


def _skip(e, p, x, C, stride, norm):
    return x if stride == 1 else factorized_reduce(e, p, x, C, C, norm)


def _conv(k: int) -> Callable:
    return lambda e, p, x, C, stride, norm: relu_conv_bn(e, p, x, C, C, k, norm)


OpGraph = Callable[[_Emitter, str, int, int, int, "str | None"], int]
# Same keys as ops.OPS except "none" (never built); never mutated after import.
OP_GRAPHS: dict[str, OpGraph] = {
    "max_pool_3x3": lambda e, p, x, C, stride, norm: e.pool("max_pool", 3, x),
    "avg_pool_3x3": lambda e, p, x, C, stride, norm: e.pool("avg_pool", 3, x),
    "skip_connect": _skip,
    "sep_conv_3x3": lambda e, p, x, C, stride, norm: sep_conv(e, p, x, C, 3, norm),
    "sep_conv_5x5": lambda e, p, x, C, stride, norm: sep_conv(e, p, x, C, 5, norm),
    "dil_conv_3x3": lambda e, p, x, C, stride, norm: dil_conv(e, p, x, C, 3, 2, norm),
    "dil_conv_5x5": lambda e, p, x, C, stride, norm: dil_conv(e, p, x, C, 5, 2, norm),
    "conv_1x1": _conv(1),
    "conv_7x1_1x7": lambda e, p, x, C, stride, norm: conv7x1_1x7(e, p, x, C, norm),
    "conv_3x3": _conv(3),
    "conv_5x5": _conv(5),
    "conv_7x7": _conv(7),
    "msa": lambda e, p, x, C, stride, norm: msa(e, p, x, C),
    "cse": lambda e, p, x, C, stride, norm: cse(e, p, x, C),
}
if set(OP_GRAPHS) != set(OPS) - {"none"}:   # ops.py gained or lost an op: give it a graph function here
    raise ImportError(f"deepnets.graph: OP_GRAPHS {sorted(OP_GRAPHS)} does not match ops.OPS {sorted(OPS)}")


# -- network.py: stems, cells, classifier -------------------------------------------------------------

def _stem(e: _Emitter, arch: Architecture, C: int, stem_C: int, pos_enc_size: int, imagenet: bool
          ) -> tuple[int, int]:
    """(s0, s1) after ``stem`` and ``stem1``."""
    norm = arch.norm
    if arch.is_vit:
        patch, _ = vit_patch(imagenet)
        x = e.conv("stem.0", (stem_C, 3, patch, patch), _INPUT)
        # PosEnc: the tracer meets the parameter (a source node) in ``x + self.weight``, then adds the sum
        pos = e.source("pos_enc", "stem.1.weight", (1, stem_C, pos_enc_size, pos_enc_size))
        s0 = e.add(x, pos)
        return s0, s0
    if arch.stem_type == 0:
        s0 = e.norm(norm, "stem.1", stem_C, e.conv("stem.0", (stem_C, 3, arch.ks, arch.ks), _INPUT))
        if arch.stem_pool:
            s0 = e.pool("max_pool", 3, s0)
        return s0, s0
    x = e.norm(norm, "stem.1", C // 2, e.conv("stem.0", (C // 2, 3, arch.ks, arch.ks), _INPUT))
    s0 = e.norm(norm, "stem.4", C, e.conv("stem.3", (C, C // 2, 3, 3), x))
    s1 = e.norm(norm, "stem1.2", C, e.conv("stem1.1", (C, C, 3, 3), s0))
    return s0, s1


def _cell(e: _Emitter, p: str, cell: CellLayout, s0: int, s1: int, norm: str | None, preproc: bool) -> int:
    """``Cell.forward``: input adapters (s0 first), the live edges in order, the concat."""
    plan, C = cell.plan, cell.C
    if plan.uses_s0:
        kind = preprocess0_kind(cell, preproc)
        if kind == "reduce":
            s0 = factorized_reduce(e, f"{p}.preprocess0", s0, cell.C_prev_prev, C, norm)
        elif kind == "conv":
            s0 = relu_conv_bn(e, f"{p}.preprocess0", s0, cell.C_prev_prev, C, 1, norm)
    if plan.uses_s1 and preprocess1_kind(cell, preproc):
        s1 = relu_conv_bn(e, f"{p}.preprocess1", s1, cell.C_prev, C, 1, norm)
    states = {0: s0, 1: s1}
    for j, (node, op, inp) in enumerate(plan.edges):
        out = OP_GRAPHS[op](e, f"{p}.ops.{j}", states[inp], C, cell.stride if inp < 2 else 1, norm)
        states[node] = e.add(states[node], out) if node in states else out
    return e.cat([states[c] for c in plan.concat])


def _classifier(e: _Emitter, arch: Architecture, num_features: int, num_classes: int, x: int) -> int:
    if arch.fc_layers == 1:
        return e.linear("classifier", num_classes, num_features, x)
    x = e.linear("classifier.0", arch.fc_dim, num_features, x)
    return e.linear("classifier.3", num_classes, arch.fc_dim, x)


def architecture_graph(arch: Architecture, C: int = 32, num_classes: int = 10, *, imagenet: bool = False,
                       image_size: int | None = None, s_max: int = DEFAULT_S_MAX) -> Graph:
    """The graph of ``Network(arch, C, num_classes, imagenet=..., image_size=...)`` without building it.

    Equal, field by field, to ``Graph.from_module(network, (1, 3, S, S), s_max=s_max)`` with
    ``S = image_size or (224 if imagenet else 32)``: ~5 ms instead of ~60 ms for a training net on
    one core (``benchmarks/bench_deepnets_graph.py``), most of it in the virtual edges and
    :meth:`Graph.validate`, which both paths share.

    Raises:
        ArchitectureError: what ``Network`` raises: a disconnected architecture, a width below 2, an
            image too small for the stem, ``msa`` at a width not divisible by its heads.
    """
    problem = arch.disconnection()
    if problem:
        raise ArchitectureError(f"cannot build a disconnected network: {problem}")
    layout = net_layout(arch, C, imagenet, image_size)
    e = _Emitter()
    s0, s1 = _stem(e, arch, C, layout.stem_channels, layout.pos_enc_size, imagenet)
    for i, cell in enumerate(layout.cells):
        s0, s1 = s1, _cell(e, f"cells.{i}", cell, s0, s1, arch.norm, arch.preproc)
    if arch.glob_avg:
        s1 = e.glob_avg(s1)      # nn.AdaptiveAvgPool2d(1); the flatten head has no node
    num_features = layout.num_features * (1 if arch.glob_avg else layout.head_size ** 2)
    out = _classifier(e, arch, num_features, num_classes, s1)
    return _finish(e, out, s_max)


def _finish(e: _Emitter, out: int, s_max: int) -> Graph:
    """trace.py's ``_finish``: check every node reaches ``out``, sort, flag the classifier, add virtual edges.

    The tracer drops nodes that do not reach the output and sorts the rest topologically, ties
    broken by creation order. Here no node is dead (checked), and every edge goes from an older to a
    newer node, so that order is the creation order itself: the smallest unsorted node never waits
    on a predecessor.
    """
    n = len(e.kinds)
    kinds, names = e.kinds, e.names

    # reverse sweep: edges were appended by destination, each from an older node, so one backward
    # pass over them finds every node that reaches the output
    keep = [False] * n
    keep[out] = keep[_INPUT] = True
    for s, d in zip(reversed(e.src), reversed(e.dst)):
        if keep[d]:
            keep[s] = True
    if not all(keep):   # cell_plan drops dead ops and Network rejects disconnected nets: cannot happen
        dead = [names[v] or kinds[v] for v in range(n) if not keep[v]]
        raise GraphError(f"internal error: nodes that do not reach the output: {', '.join(dead[:10])}")

    src = np.asarray(e.src, dtype=np.int64)
    dst = np.asarray(e.dst, dtype=np.int64)
    # the classifier: the last conv/linear weight and the bias node right after it
    is_cls = np.zeros(n, dtype=bool)
    last_w = max(i for i, k in enumerate(kinds) if k in CONV_KINDS)
    is_cls[last_w] = True
    for d in dst[src == last_w].tolist():
        if kinds[d] == "bias":
            is_cls[d] = True

    edge_index, edge_dist = shortest_path_edges(np.stack([src, dst]), n, s_max)
    graph = Graph(
        node_op=np.fromiter((OP_INDEX[k] for k in kinds), dtype=np.int64, count=n),
        param_shape=np.asarray(e.shapes, dtype=np.int64).reshape(n, 4),
        node_name=names, node_bias_name=e.bias_names, node_is_classifier=is_cls,
        edge_index=edge_index, edge_dist=edge_dist, s_max=int(s_max),
    )
    return graph.validate()
