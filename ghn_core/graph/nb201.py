"""NAS-Bench-201 string -> :class:`~ghn_core.graph.Graph`, without building or tracing the network.

    graph = nb201_graph(arch)          # == Graph.from_module(NB201Network(arch), (1, 3, 32, 32))

Building an :class:`~ghn_core.nb201.NB201Network` (~250 modules, 15-25 ms) and tracing its forward
(20-30 ms) cost ~40 ms per net on one core, which caps scoring the whole 15,625-string table at
~10 minutes. This module walks the string instead and emits the nodes the tracer would create while
``NB201Network.forward`` runs, in the same order, with the same edges, shapes and parameter names; the
tracer's own :func:`~ghn_core.graph.trace.finish_raw_graph` then prunes the dead ops, orders the
nodes, flags the classifier and lists the skipped parameters, and :meth:`Graph.from_raw` adds the
virtual edges. ``tests/test_pool_scoring.py`` checks equality field by field.

It mirrors two sources, and must change with them:

* ``ghn_core/nb201.py``: ``NB201Cell``, ``_ResidualReduction`` and ``NB201Network`` (:func:`nb201_graph`);
* ``graph/trace.py``: which calls of those forwards create nodes (:class:`_Emitter`).

A tensor is the one node whose output it holds, or ``None`` for a constant (``torch.zeros_like``: a
cell node without a live edge). As in the tracer, a conv or norm of a constant is fed by the input
node but does not carry the input, a pooling of a constant is a constant, and a sum creates a node
only for two different nodes.
"""
from __future__ import annotations

import warnings

from ..errors import DisconnectedGraphError
from ..nb201 import parse_arch
from .graph import Graph, skipped_warning
from .trace import finish_raw_graph
from .virtual_edges import DEFAULT_S_MAX

__all__ = ["nb201_graph"]

_NO_SHAPE = (0, 0, 0, 0)
_INPUT = 0   # node 0: the network input


class _Emitter:
    """Nodes and real edges in the tracer's creation order; every method takes and returns tensors
    (a node id, or ``None`` for a constant)."""

    def __init__(self):
        self.kinds: list[str] = ["input"]
        self.shapes: list[tuple[int, int, int, int]] = [_NO_SHAPE]
        self.names: list[str] = [""]
        self.bias_names: list[str] = [""]
        self.edges: list[tuple[int, int]] = []
        self.from_input: list[bool] = [True]   # per node: does its output depend on the network input?
        self.param_names: list[str] = []       # every parameter of the network, for the skipped list

    def node(self, kind: str, inputs: tuple[int | None, ...], shape=_NO_SHAPE, name: str = "",
             bias_name: str = "") -> int:
        v = len(self.kinds)
        fed = [u for u in inputs if u is not None]
        self.kinds.append(kind)
        self.shapes.append(shape)
        self.names.append(name)
        self.bias_names.append(bias_name)
        self.edges.extend((u, v) for u in (fed or [_INPUT]))   # trace.py's connect: constants come from the input
        self.from_input.append(any(self.from_input[u] for u in fed))
        self.param_names.extend(n for n in (name, bias_name) if n)
        return v

    def conv(self, name: str, shape: tuple[int, int, int, int], x: int | None) -> int:
        return self.node("conv", (x,), shape, f"{name}.weight")

    def bn(self, name: str, C: int, x: int | None) -> int:
        return self.node("bn", (x,), (C, 1, 1, 1), f"{name}.weight", f"{name}.bias")

    def relu_conv_bn(self, p: str, C_in: int, C_out: int, k: int, x: int | None) -> int:
        """:class:`~ghn_core.deepnets.ops.ReLUConvBN`: ``{p}.1`` conv, ``{p}.2`` BN (the ReLU has no node)."""
        return self.bn(f"{p}.2", C_out, self.conv(f"{p}.1", (C_out, C_in, k, k), x))

    def avg_pool(self, k: int, x: int | None) -> int | None:
        return None if x is None else self.node("avg_pool", (x,), (1, 1, k, k))

    def add(self, a: int | None, b: int | None) -> int | None:
        """``a + b``: a ``sum`` node for two different nodes; a constant term adds nothing."""
        if a is None or a == b:
            return b
        return a if b is None else self.node("sum", (a, b))


def _cell(e: _Emitter, p: str, edges: tuple[tuple[str, ...], ...], C: int, x: int | None) -> int | None:
    """``NB201Cell.forward``: node j sums op(node i) over its live edges, all ops of j before the sums."""
    nodes = [x]
    for j, row in enumerate(edges, start=1):
        terms = []
        for i, op in enumerate(row):
            if op == "none":
                continue
            if op == "skip_connect":
                terms.append(nodes[i])
            elif op == "avg_pool_3x3":
                terms.append(e.avg_pool(3, nodes[i]))
            else:
                terms.append(e.relu_conv_bn(f"{p}.ops.{i}_{j}", C, C, 1 if op == "nor_conv_1x1" else 3, nodes[i]))
        out = terms[0] if terms else None   # no live edge: torch.zeros_like, a constant
        for t in terms[1:]:
            out = e.add(out, t)
        nodes.append(out)
    return nodes[3]


def _reduction(e: _Emitter, p: str, C_in: int, C_out: int, x: int | None) -> int | None:
    """``_ResidualReduction.forward``: ``downsample(x) + conv_b(conv_a(x))``, downsample first."""
    down = e.conv(f"{p}.downsample.1", (C_out, C_in, 1, 1), e.avg_pool(2, x))
    a = e.relu_conv_bn(f"{p}.conv_a", C_in, C_out, 3, x)
    return e.add(down, e.relu_conv_bn(f"{p}.conv_b", C_out, C_out, 3, a))


def nb201_graph(arch: str, C: int = 16, num_classes: int = 10, *, s_max: int = DEFAULT_S_MAX) -> Graph:
    """The graph of ``NB201Network(arch, num_classes, C)`` without building it.

    Equal, field by field (``output_shape`` included), to ``Graph.from_module(network, (1, 3, S, S),
    s_max=s_max)`` for any input side S the network runs on (32 in the benchmark; no NB201 node
    depends on S): ~2 ms instead of ~40 ms to build and trace, on one core. Parameters of ops whose
    output is never used get a :class:`~ghn_core.graph.GraphWarning`, as from ``from_module``.

    Raises:
        ArchitectureError: a malformed string (``parse_arch``).
        DisconnectedGraphError: a cell with no path from its input to its output (the network
            computes a constant), as tracing raises.
    """
    edges = parse_arch(arch)
    e = _Emitter()
    x = e.bn("stem.1", C, e.conv("stem.0", (C, 3, 3, 3), _INPUT))
    k = 0
    for stage, width in enumerate((C, 2 * C, 4 * C)):
        if stage:
            x = _reduction(e, f"cells.{k}", width // 2, width, x)
            k += 1
        for _ in range(5):
            x = _cell(e, f"cells.{k}", edges, width, x)
            k += 1
    x = e.bn("lastact.0", 4 * C, x)
    x = None if x is None else e.node("glob_avg", (x,))      # nn.AdaptiveAvgPool2d(1)
    w = e.conv("classifier", (num_classes, 4 * C, 1, 1), x)    # nn.Linear: a conv-kind weight node, then its bias
    out = e.node("bias", (w,), (num_classes, 1, 1, 1), "classifier.bias")
    if not e.from_input[out]:
        raise DisconnectedGraphError("the output of NB201Network does not depend on its input")
    raw = finish_raw_graph(e.kinds, e.shapes, e.names, e.bias_names, e.edges, (out,), model_name="NB201Network",
                           param_names=e.param_names, output_shape=(1, num_classes))
    graph = Graph.from_raw(raw, s_max=s_max)
    if raw.skipped:
        warnings.warn(skipped_warning("NB201Network", raw.skipped, len(e.param_names)), stacklevel=2)
    return graph
