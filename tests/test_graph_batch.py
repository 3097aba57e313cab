"""GraphBatch: concatenation, offsets, levels, device moves, and splitting back per graph."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from ghn_core.errors import GraphError
from ghn_core.graph import OP_NAMES, Graph, GraphBatch, node_offset_fields


def _graphs() -> list[Graph]:
    from torchvision.models import mobilenet_v3_small, resnet18
    from torchvision.models.vision_transformer import VisionTransformer
    tiny_vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                                 num_classes=10)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, 10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")        # none of these may skip a parameter
        return [Graph.from_module(resnet18(num_classes=10), (1, 3, 32, 32)),
                Graph.from_module(tiny_vit, (1, 3, 32, 32)),
                Graph.from_module(mlp, (1, 3, 8, 8), s_max=3),
                Graph.from_module(mobilenet_v3_small(num_classes=10), (1, 3, 32, 32))]


@pytest.fixture(scope="module")
def graphs() -> list[Graph]:
    return _graphs()


def test_round_trip(graphs):
    batch = GraphBatch.from_graphs(graphs)
    assert len(batch) == 4 and batch.num_nodes == sum(g.num_nodes for g in graphs)
    assert batch.to_graphs() == graphs
    assert batch[-1] == graphs[-1] and batch[1] == graphs[1]
    with pytest.raises(IndexError):
        batch[4]
    assert batch.ptr.tolist() == np.cumsum([0] + [g.num_nodes for g in graphs]).tolist()
    assert torch.equal(batch.batch, torch.repeat_interleave(torch.arange(4), torch.tensor([g.num_nodes for g in graphs])))
    assert node_offset_fields() == ("edge_index",)
    for i, g in enumerate(graphs):   # each graph's edges stay inside its node range
        e = batch.edge_index[:, batch.edge_ptr[i]:batch.edge_ptr[i + 1]]
        assert torch.equal(e - batch.ptr[i], torch.from_numpy(g.edge_index))


def test_levels_are_exact_for_level_sweeps(graphs):
    batch = GraphBatch.from_graphs(graphs)
    real = batch.edge_index[:, batch.edge_dist == 1]
    assert (batch.level_fwd[real[1]] > batch.level_fwd[real[0]]).all()
    assert (batch.level_bwd[real[0]] > batch.level_bwd[real[1]]).all()
    # longest path from the input, by brute-force relaxation on one graph
    g = graphs[0]
    best = np.zeros(g.num_nodes, dtype=int)
    for _ in range(g.num_nodes):
        for s, d in g.real_edge_index.T:
            best[d] = max(best[d], best[s] + 1)
    assert batch.level_fwd[: g.num_nodes].tolist() == best.tolist()
    groups = batch.level_groups("fwd")
    assert sum(len(x) for x in groups) == batch.num_nodes
    assert all((batch.level_fwd[x] == lv).all() for lv, x in enumerate(groups))


def _sweep(batch: GraphBatch, weight: torch.Tensor) -> torch.Tensor:
    """A toy GatedGNN-like computation: embed ops, then a forward level sweep with real and virtual edges."""
    h = torch.nn.functional.one_hot(batch.node_op, len(OP_NAMES)).float() @ weight        # (N, d)
    h = h + batch.param_shape.float().log1p() @ weight[:4]
    src, dst = batch.edge_index
    scale = (1.0 / batch.edge_dist.float()).unsqueeze(1)                                    # (E, 1)
    for nodes in batch.level_groups("fwd")[1:]:
        incoming = torch.isin(dst, nodes)
        msg = torch.zeros_like(h).index_add_(0, dst[incoming], h[src[incoming]] * scale[incoming])
        h = h.clone()
        h[nodes] = torch.tanh(h[nodes] + msg[nodes])
    return h


def test_split_equals_per_graph_processing(graphs):
    weight = torch.randn(len(OP_NAMES), 8, generator=torch.Generator().manual_seed(0))
    batch = GraphBatch.from_graphs(graphs)
    together = batch.split(_sweep(batch, weight))
    alone = [_sweep(GraphBatch.from_graphs([g]), weight) for g in graphs]
    assert len(together) == len(alone)
    for a, b in zip(together, alone):
        torch.testing.assert_close(a, b)
    edge_vals = batch.split_edges(batch.edge_dist)
    assert [e.numel() for e in edge_vals] == [g.num_edges for g in graphs]
    with pytest.raises(ValueError, match="one per node"):
        batch.split(torch.zeros(3))


def test_to_device_returns_a_new_batch(graphs):
    batch = GraphBatch.from_graphs(graphs)
    moved = batch.to("meta")
    assert moved is not batch and moved.device.type == "meta" and batch.device.type == "cpu"
    assert moved.node_name == batch.node_name
    back = GraphBatch.from_graphs(graphs, device="cpu").to("cpu")
    assert back.to_graphs() == graphs


def test_bad_input():
    with pytest.raises(GraphError, match="at least one graph"):
        GraphBatch.from_graphs([])
    with pytest.raises(GraphError, match="item 0 is a str"):
        GraphBatch.from_graphs(["graph"])
