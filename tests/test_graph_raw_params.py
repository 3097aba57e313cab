"""Parameters of the user's own modules, used directly in forward, get nodes by how forward uses them."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from ghn_core.errors import UnsupportedModuleError
from ghn_core.graph import Graph, GraphWarning
from ghn_core.graph.vocab import RAW_PARAM_USES, raw_param_kind


class Block(nn.Module):
    """A torch.nn transformer layer, then a raw layer-scaled MLP residual."""

    def __init__(self, d):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(d, 2, 2 * d, dropout=0.0, batch_first=True)
        self.mlp = nn.Linear(d, d)
        self.gamma = nn.Parameter(torch.full((d,), 0.1))

    def forward(self, x):                                    # (B, T, d)
        x = self.layer(x)
        return x + self.gamma * self.mlp(x)


class TinyViT(nn.Module):
    """Patchify conv, raw positional embedding and class token, one block, a linear head."""

    def __init__(self, d=16, patch=8, image=32, classes=10):
        super().__init__()
        self.patchify = nn.Conv2d(3, d, patch, stride=patch)
        self.pos_embed = nn.Parameter(torch.randn(1, (image // patch) ** 2, d) * 0.02)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.block = Block(d)
        self.head = nn.Linear(d, classes)

    def forward(self, x):                                    # (B, 3, H, W)
        x = self.patchify(x).flatten(2).transpose(1, 2)      # (B, T, d)
        x = x + self.pos_embed
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)   # (B, 1 + T, d)
        return self.head(self.block(x)[:, 0])


def test_vit_like_model_has_a_node_for_every_parameter():
    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphWarning)
        g = Graph.from_module(TinyViT(), (2, 3, 32, 32), strict=True)
    assert g.skipped == {}
    covered = {n for n in (*g.node_name, *g.node_bias_name) if n}
    assert covered == {n for n, _ in TinyViT().named_parameters()}
    kind = {n: g.op_names[i] for i, n in enumerate(g.node_name) if n}
    assert kind["pos_embed"] == "pos_enc" and kind["cls_token"] == "cls_token" and kind["block.gamma"] == "layer_scale"
    # sources joined by a sum / concat node; the layer scale inline after the MLP bias
    edges = set(map(tuple, g.real_edge_index.T.tolist()))
    n = {name: i for i, name in enumerate(g.node_name) if name}
    into = {d: {g.op_names[s] for s, d2 in edges if d2 == d} for d in range(g.num_nodes)}
    assert not into[n["pos_embed"]] and not into[n["cls_token"]]
    assert any(s == n["pos_embed"] and g.op_names[d] == "sum" for s, d in edges)
    assert any(s == n["cls_token"] and g.op_names[d] == "concat" for s, d in edges)
    assert (n["block.mlp.bias"], n["block.gamma"]) in edges
    assert g.param_shape[n["pos_embed"]].tolist() == [1, 16, 4, 4]


class Odd(nn.Module):
    """Raw parameters used in ways no kind fits: an exponent, a matmul weight, a scalar factor."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.p = nn.Parameter(torch.ones(8))
        self.w = nn.Parameter(torch.randn(8, 8))
        self.t = nn.Parameter(torch.ones(()))

    def forward(self, x):                                    # (B, 8)
        return (self.fc(x).abs() ** self.p) @ self.w * self.t


def test_raw_parameters_that_fit_no_kind_still_warn_by_name():
    with pytest.warns(GraphWarning, match=r"p\b.*\bw\b|w\b.*\bp\b") as rec:
        g = Graph.from_module(Odd(), (1, 8))
    assert set(g.skipped) == {"p", "w", "t"} and all("Odd" in g.skipped[k] for k in g.skipped)
    assert "t" in str(rec[0].message)
    with pytest.raises(UnsupportedModuleError, match=r"register_module"):
        Graph.from_module(Odd(), (1, 8), strict=True)


def test_decision_table_by_function_and_shapes():
    assert set(RAW_PARAM_USES) == {"sum", "concat", "cse"}
    assert raw_param_kind("sum", (1, 16, 8), (2, 16, 8), (2, 16, 8)) == "pos_enc"
    assert raw_param_kind("sum", (8, 4, 4), (2, 8, 4, 4), (2, 8, 4, 4)) == "pos_enc"
    assert raw_param_kind("sum", (8,), (2, 16, 8), (2, 16, 8)) is None           # a bias, not positions
    assert raw_param_kind("concat", (2, 1, 8), (2, 16, 8), (2, 17, 8), dim=1) == "cls_token"
    assert raw_param_kind("concat", (2, 16, 1), (2, 16, 8), (2, 16, 9), dim=-1) is None  # features, not tokens
    assert raw_param_kind("concat", (2, 16, 8), (2, 16, 8), (2, 2, 16, 8), dim=1) is None  # stack
    assert raw_param_kind("cse", (8,), (2, 16, 8), (2, 16, 8)) == "layer_scale"
    assert raw_param_kind("cse", (8, 1, 1), (2, 8, 4, 4), (2, 8, 4, 4)) == "layer_scale"
    assert raw_param_kind("cse", (), (2, 8), (2, 8)) is None                       # a scalar factor
    assert raw_param_kind("cse", (3, 8), (2, 8), (3, 8)) is None                   # broadcasts the data up
    assert raw_param_kind("matmul", (8, 8), (2, 8), (2, 8)) is None


def test_shipped_ghn_predicts_every_parameter_of_the_vit_like_model():
    from ghn_core import load_ghn
    torch.manual_seed(0)
    model = TinyViT()
    before = {k: v.clone() for k, v in model.named_parameters()}
    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphWarning)
        load_ghn().predict(model)
    unchanged = [k for k, v in model.named_parameters() if torch.equal(v, before[k])]
    assert unchanged == []


def test_feature_map_uses_and_a_weight_through_a_transpose():
    class ConvNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.pe = nn.Parameter(torch.zeros(1, 8, 16, 16))
            self.scale = nn.Parameter(torch.ones(8))
            self.w = nn.Parameter(torch.randn(8, 10))

        def forward(self, x):                                # (B, 3, 16, 16)
            x = (self.conv(x) + self.pe) * self.scale.view(1, -1, 1, 1)
            return torch.nn.functional.linear(x.mean((2, 3)), self.w.t())

    g = Graph.from_module(ConvNet(), (1, 3, 16, 16), strict=True)
    assert g.op_names == ["input", "conv", "bias", "pos_enc", "sum", "layer_scale", "glob_avg", "conv"]
    assert g.node_name[-1] == "w" and g.skipped == {}
