"""Computational graphs of any classifier, as GHN-2 sees them: trace, vocabulary, virtual edges, batching.

    graph = Graph.from_module(model, input_shape=(1, 3, 32, 32))   # trace on meta; s_max=50
    batch = GraphBatch.from_graphs([g1, g2, ...]).to(device)        # one set of tensors
    per_graph = batch.split(node_outputs)                           # back per graph

Files: ``vocab.py`` (node types and the op/module table, :func:`register_module`), ``trace.py``
(module -> raw graph), ``virtual_edges.py``, ``graph.py`` (:class:`Graph`), ``batch.py``
(:class:`GraphBatch`), ``draw.py``, ``nb201.py`` (NAS-Bench-201 string -> the traced graph, without
a network; imported on use).
"""
from .batch import GraphBatch, node_offset_fields
from .graph import Graph, topological_levels
from .trace import GraphWarning, canonical_shape
from .virtual_edges import DEFAULT_S_MAX, shortest_path_edges
from .vocab import (
    CONV_KINDS, FUNCTION_OPS, MODULE_KINDS, NODE_TYPES, NORM_KINDS, NUM_GHN2_OPS, OP_INDEX, OP_NAMES, PARAM_KINDS,
    SOURCE_KINDS, NodeType, op_index, register_module, registered_modules,
)

__all__ = [
    "Graph", "GraphBatch", "GraphWarning", "register_module", "registered_modules",
    "NODE_TYPES", "OP_NAMES", "OP_INDEX", "NUM_GHN2_OPS", "NodeType", "op_index", "SOURCE_KINDS", "PARAM_KINDS",
    "CONV_KINDS", "NORM_KINDS", "FUNCTION_OPS", "MODULE_KINDS", "shortest_path_edges", "DEFAULT_S_MAX",
    "topological_levels", "canonical_shape", "node_offset_fields",
]
