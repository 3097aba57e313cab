"""GHN-2's gated graph network: one forward and one backward sweep over the DAG (§3.2).

For each node ``v``, in topological order (forward sweep) and then in reverse (backward sweep)::

    m_v = sum_{u in N1(v)} MLP(h_u) + sum_{u: 1 <= s(u, v) <= s_max} MLP_sp(h_u) / s(u, v)
    h_v <- GRUCell(m_v, h_v)

``N1(v)`` are the real neighbours (predecessors in the forward sweep, successors in the backward
one) and ``s(u, v)`` the shortest-path distance of a virtual edge; as in the reference code the
second sum includes the real neighbours (s = 1). Without virtual edges only the first sum is used.

Sweeps run level by level: every node of one topological level, in every graph of the batch, is
updated in one call. No edge joins two nodes of one level (levels are longest-path depths over
real edges, and a virtual edge u -> v implies a real path u -> v), so each node still sees all of
its neighbours already updated, exactly as in the node-by-node sweep. Nodes with no neighbours in
a sweep's direction (the input node going forward, the output going backward) keep their state.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["GatedGNN", "SweepPlan", "sweep_plan"]


@dataclass(frozen=True)
class SweepPlan:
    """Per level: the nodes to update and the edges (src -> dst, dst at that level) feeding them."""

    nodes: tuple[torch.Tensor, ...]
    edge_src: tuple[torch.Tensor, ...]
    edge_dst: tuple[torch.Tensor, ...]
    edge_dist: tuple[torch.Tensor, ...]


def sweep_plan(edge_index: torch.Tensor, edge_dist: torch.Tensor, level: torch.Tensor, *, reverse: bool,
               s_max: int) -> SweepPlan:
    """Group the edges used by one sweep by the level of the node they update.

    ``level`` is the node's depth in the sweep's direction (0 = no neighbours to listen to).
    ``reverse=True`` flips edges, so messages flow from successors.
    """
    keep = edge_dist <= s_max
    src, dst = edge_index[0][keep], edge_index[1][keep]
    dist = edge_dist[keep]
    if reverse:
        src, dst = dst, src
    edge_level = level[dst]
    order = torch.argsort(edge_level, stable=True)
    src, dst, dist, edge_level = src[order], dst[order], dist[order], edge_level[order]
    num_levels = int(level.max()) + 1 if level.numel() else 0
    node_order = torch.argsort(level, stable=True)
    node_counts = torch.bincount(level, minlength=num_levels).tolist()
    edge_counts = torch.bincount(edge_level, minlength=num_levels).tolist()
    nodes = node_order.split(node_counts)
    srcs, dsts, dists = src.split(edge_counts), dst.split(edge_counts), dist.split(edge_counts)
    # Level 0 has no incoming edges by definition; it is skipped.
    return SweepPlan(nodes[1:], srcs[1:], dsts[1:], dists[1:])


class GatedGNN(nn.Module):
    """Forward + backward sweep of gated message passing (GHN-2's GatedGNN, T = 1 round).

    Args:
        hid: node-state width.
        virtual_edges: use the distance-weighted second message MLP (GHN-2); off for GHN-1.
        s_max: longest virtual edge used.

    Shapes:
        h: (N, hid) node states of all graphs of a batch -> (N, hid).
    """

    def __init__(self, hid: int = 32, *, virtual_edges: bool = True, s_max: int = 50):
        super().__init__()
        self.hid, self.virtual_edges, self.s_max = hid, virtual_edges, s_max if virtual_edges else 1
        inner = hid // 2 if virtual_edges else hid
        # The reference keeps a ReLU after both layers of each message MLP.
        self.mlp = nn.Sequential(nn.Linear(hid, inner), nn.ReLU(), nn.Linear(inner, hid), nn.ReLU())
        self.mlp_sp = (nn.Sequential(nn.Linear(hid, inner), nn.ReLU(), nn.Linear(inner, hid), nn.ReLU())
                       if virtual_edges else None)
        self.gru = nn.GRUCell(hid, hid)

    def node_messages(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-node halves of the messages: MLP(h) and MLP_sp(h), each (n, hid)."""
        return self.mlp(h), self.mlp_sp(h) if self.mlp_sp is not None else None

    def message(self, m_real: torch.Tensor, m_sp: torch.Tensor | None, dist: torch.Tensor) -> torch.Tensor:
        """(E, hid) messages from the per-node halves gathered at each edge's source."""
        msg = m_real * (dist == 1).unsqueeze(1).to(m_real.dtype)
        if m_sp is not None:
            msg = msg + m_sp / dist.unsqueeze(1).to(m_sp.dtype)
        return msg

    def aggregate(self, msg: torch.Tensor, dst: torch.Tensor, nodes: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Sum messages per destination: (E, hid) -> (len(nodes), hid)."""
        slot = torch.empty(h.shape[0], dtype=torch.long, device=h.device)
        slot[nodes] = torch.arange(len(nodes), device=h.device)
        out = torch.zeros(len(nodes), h.shape[1], dtype=msg.dtype, device=h.device)
        return out.index_add_(0, slot[dst], msg)

    def update(self, m: torch.Tensor, h_nodes: torch.Tensor) -> torch.Tensor:
        return self.gru(m, h_nodes)

    def sweep(self, h: torch.Tensor, plan: SweepPlan) -> torch.Tensor:
        # A message depends only on its source's state, and a source is final for the rest of the
        # sweep once its level is done: so the MLPs run once per node (refreshed as nodes update),
        # not once per edge (virtual edges outnumber nodes 50-100x).
        m_real, m_sp = self.node_messages(h)
        for nodes, src, dst, dist in zip(plan.nodes, plan.edge_src, plan.edge_dst, plan.edge_dist):
            msg = self.message(m_real[src], m_sp[src] if m_sp is not None else None, dist)
            new = self.update(self.aggregate(msg, dst, nodes, h), h[nodes])
            h = h.index_copy(0, nodes, new)
            new_real, new_sp = self.node_messages(new)
            m_real = m_real.index_copy(0, nodes, new_real)
            if m_sp is not None:
                m_sp = m_sp.index_copy(0, nodes, new_sp)
        return h

    def forward(self, h: torch.Tensor, forward_plan: SweepPlan, backward_plan: SweepPlan) -> torch.Tensor:
        return self.sweep(self.sweep(h, forward_plan), backward_plan)

    def reset_parameters(self) -> None:
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def extra_repr(self) -> str:
        return f"hid={self.hid}, virtual_edges={self.virtual_edges}, s_max={self.s_max}"


def sweep_node_by_node(gnn: GatedGNN, h: torch.Tensor, edge_index: torch.Tensor, edge_dist: torch.Tensor,
                       order: torch.Tensor) -> torch.Tensor:
    """Reference semantics for tests: visit nodes one at a time in ``order`` (forward, then reversed)."""
    keep = edge_dist <= gnn.s_max
    src, dst, dist = edge_index[0][keep], edge_index[1][keep], edge_dist[keep]
    for reverse in (False, True):
        s, d = (dst, src) if reverse else (src, dst)
        for v in (order.flip(0) if reverse else order).tolist():
            incoming = d == v
            if not incoming.any():
                continue
            m_real, m_sp = gnn.node_messages(h[s[incoming]])
            m = gnn.message(m_real, m_sp, dist[incoming]).sum(0, keepdim=True)
            h = h.clone()
            h[v] = gnn.update(m, h[v: v + 1])[0]
    return h
