"""Computational graphs: hand-counted nets, order, virtual edges, errors, the module table, storage, drawing."""
from __future__ import annotations

import subprocess
import sys
from collections import deque

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ghn_core.errors import GraphError, UnsupportedModuleError
from ghn_core.graph import (
    NUM_GHN2_OPS, OP_NAMES, Graph, GraphWarning, canonical_shape, register_module, registered_modules,
    shortest_path_edges,
)


def edges_of(g: Graph) -> set[tuple[int, int]]:
    return set(map(tuple, g.real_edge_index.T.tolist()))


def by_name(g: Graph) -> dict[str, int]:
    return {n: i for i, n in enumerate(g.node_name) if n}


def bfs_distances(g: Graph) -> dict[tuple[int, int], int]:
    """All directed hop distances over the real edges, by plain BFS from every node."""
    succ = [[] for _ in range(g.num_nodes)]
    for s, d in g.real_edge_index.T.tolist():
        succ[s].append(d)
    out = {}
    for s in range(g.num_nodes):
        dist = {s: 0}
        queue = deque([s])
        while queue:
            u = queue.popleft()
            for v in succ[u]:
                if v not in dist:
                    dist[v] = dist[u] + 1
                    queue.append(v)
        out.update({(s, v): d for v, d in dist.items() if d > 0})
    return out


def check_order(g: Graph) -> None:
    real = g.real_edge_index
    assert g.op_names[0] == "input" and g.op_names.count("input") == 1
    assert (real[0] < real[1]).all(), "every real edge must go forward in the node order"


# -- vocabulary ---------------------------------------------------------------------------------------

def test_vocabulary_keeps_ghn2_order_and_appends_extensions():
    assert OP_NAMES[:NUM_GHN2_OPS] == ("max_pool", "avg_pool", "sep_conv", "dil_conv", "conv", "msa", "cse", "sum",
                                       "concat", "input", "bias", "bn", "ln", "pos_enc", "glob_avg")
    assert set(OP_NAMES[NUM_GHN2_OPS:]) == {"cls_token", "layer_scale", "rel_pos_bias", "gn"}


def test_canonical_shapes_follow_the_reference():
    assert canonical_shape((7,)) == (7, 1, 1, 1)
    assert canonical_shape((10, 64)) == (10, 64, 1, 1)
    assert canonical_shape((1, 197, 768)) == (1, 768, 14, 14)     # ViT positional embedding
    assert canonical_shape((96, 1, 1)) == (96, 1, 1, 1)           # ConvNeXt layer scale
    assert canonical_shape((64, 3, 7, 7)) == (64, 3, 7, 7)


# -- hand-counted nets ----------------------------------------------------------------------------------

class ThreeLayerCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)                # 16x16
        x = F.avg_pool2d(F.relu(self.bn2(self.conv2(x))), 4)     # 4x4
        return self.fc(x.flatten(1))


def test_three_layer_cnn_by_hand():
    g = Graph.from_module(ThreeLayerCNN(), (2, 3, 32, 32), s_max=1)
    assert g.op_names == ["input", "conv", "bias", "max_pool", "conv", "bn", "avg_pool", "conv", "bias"]
    assert g.node_name == ["", "conv1.weight", "conv1.bias", "", "conv2.weight", "bn2.weight", "", "fc.weight",
                           "fc.bias"]
    assert g.node_bias_name[5] == "bn2.bias"
    assert edges_of(g) == {(i, i + 1) for i in range(8)}                 # a chain
    assert g.param_shape[3].tolist() == [1, 1, 2, 2] and g.param_shape[6].tolist() == [1, 1, 4, 4]
    assert g.param_shape[7].tolist() == [10, 256, 1, 1] and g.param_shape[4].tolist() == [16, 8, 3, 3]
    assert g.node_is_classifier.tolist() == [False] * 7 + [True, True]
    assert g.skipped == {}


def resnet_block_net():
    from torchvision.models.resnet import BasicBlock
    down = nn.Sequential(nn.Conv2d(16, 32, 1, stride=2, bias=False), nn.BatchNorm2d(32))
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), BasicBlock(16, 32, stride=2, downsample=down),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def test_resnet_block_by_hand():
    g = Graph.from_module(resnet_block_net(), (1, 3, 32, 32))
    check_order(g)
    assert g.op_counts() == {"input": 1, "conv": 5, "bn": 3, "sum": 1, "glob_avg": 1, "bias": 1}
    n = by_name(g)
    stem, c1, b1, c2, b2 = n["0.weight"], n["1.conv1.weight"], n["1.bn1.weight"], n["1.conv2.weight"], n["1.bn2.weight"]
    dc, db = n["1.downsample.0.weight"], n["1.downsample.1.weight"]
    add = g.op_names.index("sum")
    gap = g.op_names.index("glob_avg")
    assert edges_of(g) == {(0, stem), (stem, c1), (c1, b1), (b1, c2), (c2, b2), (stem, dc), (dc, db), (b2, add),
                           (db, add), (add, gap), (gap, n["4.weight"]), (n["4.weight"], n["4.bias"])}
    assert [g.node_name[-2], g.node_name[-1]] == ["4.weight", "4.bias"]


def test_grouped_and_dilated_convs_map_as_in_the_reference():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 8, 3, groups=8, dilation=2),
                        nn.Conv2d(8, 8, 3, dilation=2), nn.Conv2d(8, 8, 1, groups=2, bias=False),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    g = Graph.from_module(net, (1, 3, 32, 32))
    weights = [g.op_names[i] for i in range(g.num_nodes) if g.node_name[i].endswith("weight")]
    assert weights == ["conv", "sep_conv", "dil_conv", "conv", "sep_conv", "conv"]


class TinyAttention(nn.Module):
    """Hand-written attention: softmax over q @ k^T, then @ v, with a residual branch raised to a learned
    power: a direct use of ``gamma`` that fits no kind by use (``gamma * branch`` would be a layer scale)."""

    def __init__(self, d=16):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.gamma = nn.Parameter(torch.ones(d))

    def forward(self, x):                                     # (B, T, d)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        attn = (q @ k.transpose(-2, -1) / 4).softmax(dim=-1)
        return x + self.proj(attn @ v) ** self.gamma


class TokenNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(8, 16)
        self.block = TinyAttention()
        self.head = nn.Linear(16, 3)

    def forward(self, x):                                     # (B, T, 8)
        return self.head(self.block(self.embed(x)).mean(1))


def test_hand_written_attention_and_direct_parameter_kinds():
    with pytest.warns(GraphWarning, match=r"block\.gamma"):
        g = Graph.from_module(TokenNet(), (2, 5, 8))
    assert "block.gamma" in g.skipped and "TinyAttention" in g.skipped["block.gamma"]
    assert g.op_counts() == {"input": 1, "conv": 4, "bias": 4, "msa": 1, "sum": 1, "glob_avg": 1}

    g = Graph.from_module(TokenNet(), (2, 5, 8), module_kinds={TinyAttention: "layer_scale"})
    assert g.skipped == {}
    n = by_name(g)
    msa = g.op_names.index("msa")
    assert {(n["block.qkv.bias"], msa), (msa, n["block.proj.weight"]),
            (n["block.proj.bias"], n["block.gamma"])} <= edges_of(g)
    assert g.op_names[n["block.gamma"]] == "layer_scale"
    # the residual sum joins the block input and the scaled branch
    add = g.op_names.index("sum")
    assert {(n["embed.bias"], add), (n["block.gamma"], add)} <= edges_of(g)


def test_multihead_attention_module():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
            self.head = nn.Linear(16, 2)

        def forward(self, x):
            return self.head(self.attn(x, x, x, need_weights=False)[0][:, 0])

    g = Graph.from_module(Net(), (1, 6, 16))
    assert g.op_names == ["input", "conv", "bias", "msa", "conv", "bias", "conv", "bias"]
    assert g.node_name[1:3] == ["attn.in_proj_weight", "attn.in_proj_bias"]
    assert g.node_name[4:6] == ["attn.out_proj.weight", "attn.out_proj.bias"]


def test_parameter_used_twice_gets_a_node_per_use():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.fc(torch.relu(self.fc(x))))

    g = Graph.from_module(Twice(), (1, 4))
    assert g.node_name.count("fc.weight") == 2 and g.skipped == {}
    check_order(g)


# -- virtual edges ------------------------------------------------------------------------------------

@pytest.mark.parametrize("s_max", [1, 2, 5, 50])
def test_virtual_edges_equal_bfs_distances(s_max):
    from torchvision.models import resnet18
    g = Graph.from_module(resnet18(num_classes=10), (1, 3, 32, 32), s_max=s_max)
    got = {(s, d): k for (s, d), k in zip(g.edge_index.T.tolist(), g.edge_dist.tolist())}
    expected = {pair: d for pair, d in bfs_distances(g).items() if d <= s_max}
    assert got == expected
    assert g.edge_dist.max() == min(s_max, max(bfs_distances(g).values()))


def test_virtual_edges_of_a_small_dag():
    edges = np.array([[0, 1, 2, 0], [1, 2, 3, 4]])
    ei, ed = shortest_path_edges(edges, 5, s_max=50)
    assert dict(zip(map(tuple, ei.T.tolist()), ed.tolist())) == {
        (0, 1): 1, (1, 2): 1, (2, 3): 1, (0, 4): 1, (0, 2): 2, (1, 3): 2, (0, 3): 3}


# -- bad input -----------------------------------------------------------------------------------------

def test_forward_failure_names_shape_and_cause():
    with pytest.raises(GraphError, match=r"forward failed on input of shape \(1, 3, 8\).*"):
        Graph.from_module(ThreeLayerCNN(), (1, 3, 8))


def test_model_without_parameters():
    with pytest.raises(GraphError, match="no parameters"):
        Graph.from_module(nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1)))


def test_output_independent_of_input():
    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(torch.ones(1, 4))

    with pytest.raises(GraphError, match="does not depend on its input"):
        Graph.from_module(Constant(), (1, 4))


class PosTable(nn.Module):
    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.zeros(1, 4, 8))


class PosFromTable(nn.Module):
    """A linear layer fed by a positional table alone: unreachable from the input."""

    def __init__(self):
        super().__init__()
        self.pos = PosTable()
        self.mix = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):                                   # (B, 4, 8)
        return self.head((x + self.mix(self.pos.table)).mean(1))


def test_part_unreachable_from_input():
    with pytest.raises(GraphError, match=r"unreachable from the input: .*mix\.weight"):
        Graph.from_module(PosFromTable(), (1, 4, 8), module_kinds={PosTable: "pos_enc"})


def test_validate_catches_handmade_mistakes():
    g = Graph.from_module(ThreeLayerCNN(), (1, 3, 32, 32))
    g.validate()
    bad = g.with_virtual_edges(1)
    bad.edge_index = bad.edge_index[:, 1:]                  # drop input -> conv1: nothing reachable
    bad.edge_dist = bad.edge_dist[1:]
    with pytest.raises(GraphError, match="unreachable from the input"):
        bad.validate()
    bad = g.with_virtual_edges(1)
    bad.edge_index = bad.edge_index[::-1].copy()            # edges backwards
    with pytest.raises(GraphError, match="topological order"):
        bad.validate()
    bad = g.with_virtual_edges(1)
    bad.node_op = bad.node_op.copy()
    bad.node_op[3] = len(OP_NAMES)
    with pytest.raises(GraphError, match="node_op"):
        bad.validate()


def test_strict_mode_and_unsupported_warning():
    with pytest.raises(UnsupportedModuleError, match=r"block\.gamma.*register_module"):
        Graph.from_module(TokenNet(), (2, 5, 8), strict=True)


def test_unused_and_dead_parameters_are_reported():
    class Dead(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.Linear(4, 2)
            self.dead = nn.Linear(4, 2)
            self.unused = nn.Linear(4, 2)

        def forward(self, x):
            self.dead(x)
            return self.used(x)

    with pytest.warns(GraphWarning) as rec:
        g = Graph.from_module(Dead(), (1, 4))
    assert g.skipped == {"dead.weight": "does not influence the output", "dead.bias": "does not influence the output",
                         "unused.weight": "not used in forward (traced in eval mode)",
                         "unused.bias": "not used in forward (traced in eval mode)"}
    assert "dead.weight" in str(rec[0].message) and "unused.bias" in str(rec[0].message)


def test_register_module():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.s = nn.Parameter(torch.ones(4))

        def forward(self, x):
            return x * self.s

    net = nn.Sequential(nn.Linear(4, 4), Scale(), nn.Linear(4, 2))
    register_module(Scale, "layer_scale")
    g = Graph.from_module(net, (1, 4))
    assert g.op_names == ["input", "conv", "bias", "layer_scale", "conv", "bias"]
    assert edges_of(g) == {(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)}
    assert registered_modules()[f"{Scale.__module__}.{Scale.__qualname__}"] == "layer_scale"
    with pytest.raises(GraphError, match="already registered"):
        register_module(Scale, "layer_scale")
    with pytest.raises(GraphError, match="unknown node type 'layerscale'.*'layer_scale'"):
        register_module(type("Other", (nn.Module,), {}), "layerscale")
    with pytest.raises(GraphError, match="has no parameters"):
        register_module(type("Other2", (nn.Module,), {}), "sum")
    from torchvision.models.convnext import CNBlock
    with pytest.raises(GraphError, match="already registered"):
        register_module(CNBlock, "layer_scale")


# -- running the model ---------------------------------------------------------------------------------

def test_real_weights_are_untouched_and_graph_equals_meta_build():
    net = ThreeLayerCNN().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ids = [id(p) for p in net.parameters()]
    g = Graph.from_module(net, (1, 3, 32, 32))
    assert net.training and all(m.training for m in net.modules())
    assert [id(p) for p in net.parameters()] == ids
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with torch.device("meta"):
        meta_net = ThreeLayerCNN()
    assert Graph.from_module(meta_net, (1, 3, 32, 32)) == g


def test_data_dependent_forward_falls_back_to_real_tensors():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 2), nn.Linear(4, 2)

        def forward(self, x):
            return self.a(x) if x.sum() > -1e9 else self.b(x)   # needs values: fails on meta

    with pytest.warns(GraphWarning, match="b.weight"):
        g = Graph.from_module(Branchy(), (1, 4))
    assert g.node_name == ["", "a.weight", "a.bias"]
    with torch.device("meta"):
        meta_net = Branchy()
    with pytest.raises(GraphError, match="forward failed"):
        Graph.from_module(meta_net, (1, 4))


# -- storage and drawing --------------------------------------------------------------------------------

def test_arrays_round_trip_through_hdf5(tmp_path):
    import h5py
    with pytest.warns(GraphWarning):
        g = Graph.from_module(TokenNet(), (2, 5, 8))
    arrays = g.to_arrays()
    assert all(isinstance(v, np.ndarray) and v.dtype.kind in "iub" for v in arrays.values())
    with h5py.File(tmp_path / "g.h5", "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
    with h5py.File(tmp_path / "g.h5", "r") as f:
        back = Graph.from_arrays({k: f[k][()] for k in f})
    assert back == g and back.skipped == g.skipped
    assert Graph.from_arrays(arrays, s_max=1) == g.with_virtual_edges(1)
    with pytest.raises(GraphError, match="missing node_name"):
        Graph.from_arrays({k: v for k, v in arrays.items() if k != "node_name"})


def test_draw(tmp_path):
    from torchvision.models import resnet18
    g = Graph.from_module(resnet18(), (1, 3, 32, 32))
    out = g.draw(tmp_path / "resnet18.png", virtual=True)
    assert out.stat().st_size > 10_000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_matplotlib_is_imported_lazily():
    code = "import sys, ghn_core.graph; assert 'matplotlib' not in sys.modules, 'imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)
