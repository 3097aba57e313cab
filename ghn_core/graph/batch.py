"""Many graphs as one set of tensors (one big disconnected graph), ready for the GHN."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from ..errors import GraphError
from .graph import Graph

__all__ = ["GraphBatch", "node_offset_fields"]


def node_offset_fields() -> tuple[str, ...]:
    """Fields whose values are node indices, shifted by the running node count when batching.

    The only place that says so: nothing is inferred from field names.
    """
    return ("edge_index",)


_TENSOR_FIELDS = ("node_op", "param_shape", "node_is_classifier", "edge_index", "edge_dist", "batch", "ptr",
                  "edge_ptr", "level_fwd", "level_bwd")


@dataclass(frozen=True, eq=False)
class GraphBatch:
    """B graphs concatenated: nodes stacked, edges offset, plus per-graph offsets and levels.

    Shapes (N nodes and E edges over all graphs, B graphs):
        node_op (N,) long; param_shape (N, 4) long; node_is_classifier (N,) bool;
        edge_index (2, E) long, node ids of the whole batch; edge_dist (E,) long (1 = real edge);
        batch (N,) long, the graph of each node; ptr (B+1,) long, node offsets;
        edge_ptr (B+1,) long, edge offsets; level_fwd (N,) long, longest real path from a
        source of its graph; level_bwd (N,) long, longest real path to a sink of its graph.
    No real edge joins two nodes of the same level (in either direction), so a GNN sweep may update
    all nodes of one level, in every graph, at once.

    Non-tensor fields keep what :meth:`to_graphs` needs: per-graph names, ``s_max`` and ``skipped``.
    """

    node_op: torch.Tensor
    param_shape: torch.Tensor
    node_is_classifier: torch.Tensor
    edge_index: torch.Tensor
    edge_dist: torch.Tensor
    batch: torch.Tensor
    ptr: torch.Tensor
    edge_ptr: torch.Tensor
    level_fwd: torch.Tensor
    level_bwd: torch.Tensor
    node_name: tuple[tuple[str, ...], ...]
    node_bias_name: tuple[tuple[str, ...], ...]
    s_max: tuple[int, ...]
    skipped: tuple[Mapping[str, str], ...]

    @classmethod
    def from_graphs(cls, graphs: Sequence[Graph], device: str | torch.device | None = None) -> "GraphBatch":
        """Concatenate ``graphs`` (in order) into one batch, on ``device`` (default CPU)."""
        graphs = list(graphs)
        if not graphs:
            raise GraphError("GraphBatch.from_graphs: expected at least one graph, got none")
        for i, g in enumerate(graphs):
            if not isinstance(g, Graph):
                raise GraphError(f"GraphBatch.from_graphs: item {i} is a {type(g).__name__}, expected a Graph")
        n_nodes = np.array([g.num_nodes for g in graphs], dtype=np.int64)
        n_edges = np.array([g.num_edges for g in graphs], dtype=np.int64)
        ptr = np.concatenate([[0], np.cumsum(n_nodes)])
        edge_ptr = np.concatenate([[0], np.cumsum(n_edges)])
        levels = [g.levels() for g in graphs]
        arrays = {
            "node_op": np.concatenate([g.node_op for g in graphs]),
            "param_shape": np.concatenate([g.param_shape for g in graphs]),
            "node_is_classifier": np.concatenate([g.node_is_classifier for g in graphs]).astype(bool),
            "edge_dist": np.concatenate([g.edge_dist for g in graphs]),
            "batch": np.repeat(np.arange(len(graphs)), n_nodes),
            "ptr": ptr, "edge_ptr": edge_ptr,
            "level_fwd": np.concatenate([lv[0] for lv in levels]),
            "level_bwd": np.concatenate([lv[1] for lv in levels]),
        }
        for name in node_offset_fields():
            arrays[name] = np.concatenate([getattr(g, name) + ptr[i] for i, g in enumerate(graphs)], axis=-1)
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) if device is not None
                   else torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        for k in _TENSOR_FIELDS:
            if k != "node_is_classifier":
                tensors[k] = tensors[k].long()
        return cls(**tensors,
                   node_name=tuple(tuple(g.node_name) for g in graphs),
                   node_bias_name=tuple(tuple(g.node_bias_name) for g in graphs),
                   s_max=tuple(int(g.s_max) for g in graphs),
                   skipped=tuple(dict(g.skipped) for g in graphs))

    # -- sizes ------------------------------------------------------------------------------------------
    @property
    def num_graphs(self) -> int:
        return int(self.ptr.numel() - 1)

    def __len__(self) -> int:
        return self.num_graphs

    @property
    def num_nodes(self) -> int:
        return int(self.node_op.numel())

    @property
    def num_edges(self) -> int:
        return int(self.edge_dist.numel())

    @property
    def device(self) -> torch.device:
        return self.node_op.device

    def num_levels(self, direction: str = "fwd") -> int:
        return int(self._level(direction).max()) + 1

    def _level(self, direction: str) -> torch.Tensor:
        if direction not in ("fwd", "bwd"):
            raise ValueError(f"expected direction 'fwd' or 'bwd', got {direction!r} instead")
        return self.level_fwd if direction == "fwd" else self.level_bwd

    def level_groups(self, direction: str = "fwd") -> list[torch.Tensor]:
        """Node ids of each level, level 0 first: the order of a forward (or backward) sweep."""
        level = self._level(direction)
        order = torch.argsort(level, stable=True)
        counts = torch.bincount(level, minlength=self.num_levels(direction)).tolist()
        return list(torch.split(order, counts))

    # -- moving and splitting -------------------------------------------------------------------------
    def to(self, device: str | torch.device, non_blocking: bool = False) -> "GraphBatch":
        """A new batch with every tensor on ``device`` (this one is unchanged)."""
        return dataclasses.replace(self, **{k: getattr(self, k).to(device, non_blocking=non_blocking)
                                            for k in _TENSOR_FIELDS})

    def split(self, values: torch.Tensor, dim: int = 0) -> list[torch.Tensor]:
        """Per-node results (size N along ``dim``) back per graph: a list of B tensors."""
        if values.shape[dim] != self.num_nodes:
            raise ValueError(f"expected {self.num_nodes} rows along dim {dim} (one per node), "
                             f"got {values.shape[dim]} instead")
        return list(torch.split(values, (self.ptr[1:] - self.ptr[:-1]).tolist(), dim=dim))

    def split_edges(self, values: torch.Tensor, dim: int = 0) -> list[torch.Tensor]:
        """Per-edge results (size E along ``dim``) back per graph."""
        if values.shape[dim] != self.num_edges:
            raise ValueError(f"expected {self.num_edges} rows along dim {dim} (one per edge), "
                             f"got {values.shape[dim]} instead")
        return list(torch.split(values, (self.edge_ptr[1:] - self.edge_ptr[:-1]).tolist(), dim=dim))

    def __getitem__(self, i: int) -> Graph:
        """Graph ``i`` of the batch, rebuilt from the batch tensors."""
        b = self.num_graphs
        if not -b <= i < b:
            raise IndexError(f"graph index {i} out of range for a batch of {b}")
        i %= b
        n0, n1 = int(self.ptr[i]), int(self.ptr[i + 1])
        e0, e1 = int(self.edge_ptr[i]), int(self.edge_ptr[i + 1])
        cpu = {k: getattr(self, k).cpu().numpy() for k in ("node_op", "param_shape", "node_is_classifier")}
        edges = {name: getattr(self, name)[..., e0:e1].cpu().numpy() - n0 for name in node_offset_fields()}
        return Graph(node_op=cpu["node_op"][n0:n1].copy(), param_shape=cpu["param_shape"][n0:n1].copy(),
                     node_name=list(self.node_name[i]), node_bias_name=list(self.node_bias_name[i]),
                     node_is_classifier=cpu["node_is_classifier"][n0:n1].copy(),
                     edge_dist=self.edge_dist[e0:e1].cpu().numpy().copy(), s_max=self.s_max[i],
                     skipped=dict(self.skipped[i]), **edges)

    def to_graphs(self) -> list[Graph]:
        """Every graph of the batch, in order."""
        return [self[i] for i in range(self.num_graphs)]

    def __repr__(self) -> str:
        return (f"GraphBatch(graphs={self.num_graphs}, nodes={self.num_nodes}, edges={self.num_edges}, "
                f"device={self.device})")
