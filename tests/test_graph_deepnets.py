"""DeepNets-1M networks give the graphs GHN-2 would see: each op by hand, a whole net by hand, every split."""
from __future__ import annotations

import random
import warnings
from collections import Counter

import pytest
from torch import nn

from ghn_core.deepnets import OPS, SPLITS, VIT_ARCH, Architecture, Genotype, Network, sample_architecture
from ghn_core.graph import Graph, GraphBatch

C = 16
BASE = Counter({"input": 1, "conv": 2, "glob_avg": 1, "bias": 1})   # stem conv, pooling head, classifier
# op -> (stride, node types the op adds), counted from ops.py by hand
OP_NODES = {
    "max_pool_3x3": (1, {"max_pool": 1}),
    "avg_pool_3x3": (1, {"avg_pool": 1}),
    "skip_connect": (1, {}),
    "sep_conv_3x3": (1, {"sep_conv": 2, "conv": 2, "bn": 2}),       # 2 x (depthwise, pointwise, BN)
    "sep_conv_5x5": (1, {"sep_conv": 2, "conv": 2, "bn": 2}),
    "dil_conv_3x3": (1, {"dil_conv": 1, "conv": 1, "bn": 1}),
    "dil_conv_5x5": (1, {"dil_conv": 1, "conv": 1, "bn": 1}),
    "conv_1x1": (1, {"conv": 1, "bn": 1}),
    "conv_7x1_1x7": (1, {"conv": 2, "bn": 1}),
    "conv_3x3": (1, {"conv": 1, "bn": 1}),
    "conv_5x5": (1, {"conv": 1, "bn": 1}),
    "conv_7x7": (1, {"conv": 1, "bn": 1}),
    # LN, qkv (no bias), attention, proj + bias, residual sum, LN, fc1 + bias, fc2 + bias, residual sum
    "msa": (1, {"ln": 2, "conv": 4, "bias": 3, "msa": 1, "sum": 2}),
    # mean -> squeeze conv + bias -> excite conv + bias -> Hardswish gate times the input
    "cse": (1, {"glob_avg": 1, "conv": 2, "bias": 2, "cse": 1}),
}


def op_net(op: str, stride: int, norm: str | None = "bn") -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), OPS[op].build(C, stride, norm, True),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(C, 10))


@pytest.mark.parametrize("op", sorted(OP_NODES))
def test_each_op_by_hand(op):
    stride, nodes = OP_NODES[op]
    g = Graph.from_module(op_net(op, stride), (1, 3, 16, 16))
    assert Counter(g.op_counts()) == BASE + Counter(nodes)
    assert g.skipped == {}
    if op != "skip_connect":     # BN-free variant: the same minus the BN nodes
        g = Graph.from_module(op_net(op, stride, norm=None), (1, 3, 16, 16))
        assert Counter(g.op_counts()) == BASE + Counter({k: v for k, v in nodes.items() if k != "bn"})


def test_strided_ops():
    g = Graph.from_module(op_net("skip_connect", 2), (1, 3, 16, 16))   # FactorizedReduce
    assert Counter(g.op_counts()) == BASE + Counter({"conv": 2, "concat": 1, "bn": 1})
    for op in ("msa", "cse", "max_pool_3x3"):
        g = Graph.from_module(op_net(op, 2), (1, 3, 16, 16))
        assert Counter(g.op_counts()) == BASE + Counter(OP_NODES[op][1])


def test_cse_gate_joins_input_and_excitation():
    g = Graph.from_module(op_net("cse", 1), (1, 3, 16, 16))
    real = g.real_edge_index
    cse = g.op_names.index("cse")
    preds = sorted(g.node_name[i] for i in real[0][real[1] == cse])
    assert preds == ["0.weight", "1.excite.bias"]


def test_a_whole_network_by_hand():
    cell = [("conv_3x3", 0), ("max_pool_3x3", 1)]
    arch = Architecture(Genotype(cell, [2], cell, [2]), n_cells=1, preproc=False, C_mult=1)   # one cell (normal: cell 0 never reduces)
    g = Graph.from_module(Network(arch, C=C, device="meta"), (1, 3, 32, 32))
    assert g.op_names == ["input", "conv", "bn", "conv", "bn", "max_pool", "sum", "glob_avg", "conv", "bias"]
    assert g.node_name[1:5] == ["stem.0.weight", "stem.1.weight", "cells.0.ops.0.1.weight", "cells.0.ops.0.2.weight"]
    assert set(map(tuple, g.real_edge_index.T.tolist())) == {
        (0, 1), (1, 2), (2, 3), (3, 4), (2, 5), (4, 6), (5, 6), (6, 7), (7, 8), (8, 9)}
    assert g.node_is_classifier.tolist() == [False] * 8 + [True, True]


def test_predefined_vit():
    g = Graph.from_module(Network(VIT_ARCH, 128, 10, device="meta"), (1, 3, 32, 32))
    counts = g.op_counts()
    assert counts["msa"] == 10 and counts["avg_pool"] == 2 and counts["pos_enc"] == 1 and g.skipped == {}
    pos = g.op_names.index("pos_enc")
    real = g.real_edge_index
    assert not (real[1] == pos).any()                                   # no incoming edge, as in GHN-2
    (succ,) = real[1][real[0] == pos]
    assert g.op_names[succ] == "sum" and g.param_shape[pos].tolist() == [1, 128, 11, 11]


def sampled_nets(split: str, n: int, seed: int):
    rng = random.Random(seed)
    nets = []
    while len(nets) < n:
        arch = sample_architecture(rng, SPLITS[split])
        try:
            nets.append(Network(arch, 32, 10, device="meta"))
        except Exception:   # disconnected samples are rejected by the generator too
            continue
    return nets


@pytest.mark.parametrize("split", list(SPLITS))
def test_sampled_nets_of_every_split(split):
    nets = sampled_nets(split, 6, seed=len(split))
    graphs = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # every parameter must be a node
        for net in nets:
            g = Graph.from_module(net, (1, 3, 32, 32))
            covered = {n for n in g.node_name if n} | {n for n in g.node_bias_name if n}
            assert covered == set(dict(net.named_parameters()))
            assert g.op_names[-2:] == ["conv", "bias"] and g.node_is_classifier[-2:].all()
            assert Graph.from_arrays(g.to_arrays()) == g
            graphs.append(g)
    assert GraphBatch.from_graphs(graphs).to_graphs() == graphs
    if split == "deep":
        assert max(g.num_nodes for g in graphs) > 150


def test_predefined_split():
    from ghn_core.deepnets import predefined_nets
    for imagenet, size in ((False, 32), (True, 224)):
        nets = predefined_nets(10, imagenet=imagenet)
        graphs = {name: Graph.from_module(net, (1, 3, size, size)) for name, net in nets.items()}
        assert all(g.skipped == {} for g in graphs.values())
        # CIFAR ResNet-50 loses the stem max-pool; both sit near the reference's 126-129 nodes
        assert graphs["resnet50"].num_nodes == (127 if imagenet else 126)
        assert graphs["vit"].num_nodes == 129   # the ViT stem conv has no bias node


def test_imagenet_stems():
    for net in sampled_nets("test", 4, seed=3):
        imagenet = Network(net.arch, 32, 1000, imagenet=True, device="meta")
        g = Graph.from_module(imagenet, (1, 3, 224, 224))
        assert g.skipped == {} and g.param_shape[-2].tolist()[0] == 1000
