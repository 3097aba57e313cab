"""GHN-2 building blocks: shape vocabulary, level-parallel sweeps, sliced decoder, normalisation."""
from __future__ import annotations

import math

import pytest
import torch

from ghn_core.model.decoder import ConvDecoder, normalize_bias, normalize_norm_weight, normalize_weight, tile
from ghn_core.model.gnn import GatedGNN, sweep_node_by_node, sweep_plan
from ghn_core.model.shape import ShapeEncoder, canonical_shape, channel_vocabulary, spatial_vocabulary


def test_vocabularies_match_the_reference_sizes():
    assert len(channel_vocabulary(10)) == 391
    assert len(spatial_vocabulary(11)) == 8 and len(spatial_vocabulary(15)) == 10


def test_shape_lookup_rules():
    enc = ShapeEncoder(32)
    ch = enc._lookup(torch.tensor([1, 3, 4, 7, 8, 10, 64, 70, 9000, 0]), enc.channels) - 1
    values = enc.channels[ch.clamp(min=0)].tolist()
    assert values[:9] == [1, 3, 8, 8, 8, 10, 64, 80, 8192]  # 4-7 -> 8; above the range -> last
    assert ch[-1] == -1  # 0 = "no shape"
    sp = enc._lookup(torch.tensor([1, 2, 3, 12, 16, 31]), enc.spatial) - 1
    assert enc.spatial[sp].tolist() == [1, 3, 3, 14, 16, 16]
    assert enc(torch.tensor([[64, 3, 3, 3], [0, 0, 0, 0]])).shape == (2, 32)


def test_canonical_shapes():
    assert canonical_shape((7,)) == (7, 1, 1, 1)
    assert canonical_shape((10, 64)) == (10, 64, 1, 1)
    assert canonical_shape((1, 197, 768)) == (1, 768, 14, 14)
    assert canonical_shape((3, 4, 5)) == (3, 4, 5, 1)
    assert canonical_shape((64, 3, 7, 7)) == (64, 3, 7, 7)


def _random_dag(n: int, seed: int, s_max: int = 50):
    """A random DAG in topological order, with virtual edges = all longer shortest paths."""
    g = torch.Generator().manual_seed(seed)
    edges = {(i, i + 1) for i in range(n - 1)}
    for _ in range(2 * n):
        a, b = sorted(torch.randint(0, n, (2,), generator=g).tolist())
        if a != b:
            edges.add((a, b))
    INF = 10**9
    dist = [[INF] * n for _ in range(n)]
    for a, b in edges:
        dist[a][b] = 1
    for k in range(n):  # Floyd-Warshall on a tiny graph
        for i in range(n):
            for j in range(n):
                if dist[i][k] + dist[k][j] < dist[i][j]:
                    dist[i][j] = dist[i][k] + dist[k][j]
    pairs = [(i, j, dist[i][j]) for i in range(n) for j in range(n) if dist[i][j] <= s_max]
    edge_index = torch.tensor([[p[0] for p in pairs], [p[1] for p in pairs]])
    edge_dist = torch.tensor([p[2] for p in pairs])
    real = edge_dist == 1
    level_fwd = torch.zeros(n, dtype=torch.long)
    for a, b in sorted(edges, key=lambda e: e[1]):
        level_fwd[b] = max(level_fwd[b], level_fwd[a] + 1)
    level_bwd = torch.zeros(n, dtype=torch.long)
    for a, b in sorted(edges, key=lambda e: -e[0]):
        level_bwd[a] = max(level_bwd[a], level_bwd[b] + 1)
    assert real.sum() == len(edges)
    return edge_index, edge_dist, level_fwd, level_bwd


@pytest.mark.parametrize("virtual_edges", [True, False])
def test_level_parallel_sweep_equals_node_by_node(virtual_edges):
    torch.manual_seed(0)
    gnn = GatedGNN(16, virtual_edges=virtual_edges, s_max=3)
    # Two graphs in one batch, as GraphBatch lays them out (node offsets).
    e1, d1, f1, b1 = _random_dag(30, seed=1)
    e2, d2, f2, b2 = _random_dag(21, seed=2)
    edge_index = torch.cat([e1, e2 + 30], 1)
    edge_dist, lf, lb = torch.cat([d1, d2]), torch.cat([f1, f2]), torch.cat([b1, b2])
    h0 = torch.randn(51, 16)
    fwd = sweep_plan(edge_index, edge_dist, lf, reverse=False, s_max=gnn.s_max)
    bwd = sweep_plan(edge_index, edge_dist, lb, reverse=True, s_max=gnn.s_max)
    fast = gnn(h0, fwd, bwd)
    slow = sweep_node_by_node(gnn, h0, edge_index, edge_dist, torch.arange(51))
    assert torch.allclose(fast, slow, atol=1e-5)
    assert len(fwd.nodes) == int(lf.max())  # one call per level, not per node
    assert not torch.allclose(fast, h0)


def test_sliced_decoder_equals_full_block():
    torch.manual_seed(0)
    dec = ConvDecoder(8, max_spatial=5)  # blocks of 16 x 16 x 5 x 5
    h = torch.randn(3, 8)
    full = dec.full(h)
    for o, i, kh, kw in [(16, 16, 5, 5), (4, 1, 3, 3), (32, 7, 1, 1), (2, 20, 7, 2)]:
        part = dec(h, o, i, kh, kw)
        oo, ii, hh, ww = min(o, 16), min(i, 16), min(kh, 5), min(kw, 5)
        assert torch.allclose(part, full[:, :oo, :ii, :hh, :ww], atol=1e-5)


def test_tile_repeats_then_cuts():
    block = torch.arange(6.0).view(2, 3)
    out = tile(block, (5, 4))
    assert out.shape == (5, 4)
    assert out[:, 3].tolist() == block[:, 0].repeat(3)[:5].tolist()
    assert torch.equal(out[2:4, :3], block)


def test_normalisation_formulas_by_hand():
    w = torch.ones(8, 4, 3, 3)
    assert torch.allclose(normalize_weight(w), w * math.sqrt(2 / 36))
    dw = torch.ones(8, 1, 3, 3)  # depthwise: not followed by ReLU
    assert torch.allclose(normalize_weight(dw), dw * math.sqrt(1 / 9))
    half = torch.ones(8, 8, 1, 7)  # the 1x7 half of a 7x1/1x7 pair
    assert torch.allclose(normalize_weight(half), half * math.sqrt(1 / 56))
    lin = torch.ones(10, 64)
    assert torch.allclose(normalize_weight(lin), lin * math.sqrt(2 / 64))
    p = torch.tensor([-3.0, 0.0, 2.0])
    assert torch.allclose(normalize_norm_weight(p), 2 / (1 + torch.exp(-0.5 * p)))
    assert torch.allclose(normalize_bias(p), torch.tanh(0.2 * p))
