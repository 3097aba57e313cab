"""Every torchvision classifier gives a graph whose nodes cover all its parameters (or name the rest).

Models are built on the meta device (no memory, no initialisation), so the sweep takes seconds.
Sizes: 32x32 and 224x224, except the models that reject 32x32 inputs (listed in NEEDS_224), which
are checked at 224 only, plus a check that 32x32 gives a clear GraphError.
"""
from __future__ import annotations

import warnings

import pytest
import torchvision

from ghn_core.errors import GraphError
from ghn_core.graph import Graph, GraphWarning
from ghn_core.utils import torchvision_on_meta

MODELS = torchvision.models.list_models(module=torchvision.models)
# ViTs assert a 224 input; AlexNet, Inception-v3 and MaxViT shrink 32x32 below their kernels/partitions.
NEEDS_224 = {"alexnet", "inception_v3", "maxvit_t", "vit_b_16", "vit_b_32", "vit_h_14", "vit_l_16", "vit_l_32"}
# Auxiliary classifiers only run in training mode; graphs are traced in eval mode.
AUX_PREFIX = {"googlenet": ("aux1.", "aux2."), "inception_v3": ("AuxLogits.",)}
# Extension node types each family must show (None: at least one).
EXTENSIONS = {("vit_",): {"pos_enc": 1, "cls_token": 1}, ("convnext",): {"layer_scale": None},
              ("swin_v2",): {"layer_scale": None}, ("swin_b", "swin_s", "swin_t", "maxvit"): {"rel_pos_bias": None}}




def test_the_list_is_the_classifier_list():
    assert len(MODELS) == 80 and "vit_b_16" in MODELS and "maxvit_t" in MODELS


@pytest.mark.parametrize("name", MODELS)
def test_graph_covers_every_parameter(name):
    model = torchvision_on_meta(name)
    assert next(model.parameters()).device.type == "meta"
    params = set(dict(model.named_parameters()))
    expected_skipped = {p for p in params if p.startswith(AUX_PREFIX.get(name, ("\0",)))}
    for size in ((224,) if name in NEEDS_224 else (32, 224)):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always", GraphWarning)
            g = Graph.from_module(model, (1, 3, size, size))
        covered = {n for n in g.node_name if n} | {n for n in g.node_bias_name if n}
        assert covered | set(g.skipped) == params and not covered & set(g.skipped)
        assert set(g.skipped) == expected_skipped
        assert all(reason.startswith("not used in forward") for reason in g.skipped.values())
        if expected_skipped:   # the warning names every skipped parameter
            message = "\n".join(str(w.message) for w in rec if issubclass(w.category, GraphWarning))
            assert all(p in message for p in expected_skipped)
        else:
            assert not [w for w in rec if issubclass(w.category, GraphWarning)]
        real = g.real_edge_index
        assert g.op_names[0] == "input" and (real[0] < real[1]).all()
        classifier = [g.node_name[i] for i in g.node_is_classifier.nonzero()[0]]
        if name.startswith("squeezenet"):   # a 1x1 conv classifier, followed by global pooling
            assert classifier == ["classifier.1.weight", "classifier.1.bias"] and g.op_names[-1] == "glob_avg"
        elif name == "maxvit_t":            # its last Linear has no bias
            assert classifier == ["classifier.5.weight"] and g.node_is_classifier[-1]
        else:
            assert g.node_is_classifier[-2:].all() and g.op_names[-2:] == ["conv", "bias"]
        counts = g.op_counts()
        for prefixes, kinds in EXTENSIONS.items():
            if name.startswith(prefixes):
                for kind, n in kinds.items():
                    assert counts.get(kind, 0) == (n or counts.get(kind, 0)) > 0, kind
    if name in NEEDS_224:
        with pytest.raises(GraphError, match=r"forward failed on input of shape \(1, 3, 32, 32\)"):
            Graph.from_module(model, (1, 3, 32, 32))


def test_resnet50_matches_a_hand_count():
    g = Graph.from_module(torchvision_on_meta("resnet50"), (1, 3, 224, 224))
    # 53 convs + fc, 53 BN, 16 residual sums, stem max-pool, global pooling, fc bias, input
    assert g.op_counts() == {"input": 1, "conv": 54, "bn": 53, "sum": 16, "max_pool": 1, "glob_avg": 1, "bias": 1}
    assert g.param_shape[g.op_names.index("max_pool")].tolist() == [1, 1, 3, 3]


def test_vit_graph_is_a_transformer():
    g = Graph.from_module(torchvision_on_meta("vit_b_16"), (1, 3, 224, 224))
    c = g.op_counts()
    assert (c["msa"], c["ln"], c["sum"]) == (12, 25, 25)
    names = g.node_name
    pos, cls = names.index("encoder.pos_embedding"), names.index("class_token")
    assert g.param_shape[pos].tolist() == [1, 768, 14, 14] and g.param_shape[cls].tolist() == [1, 768, 1, 1]
    real = g.real_edge_index
    assert not (real[1] == pos).any() and not (real[1] == cls).any()    # sources, as pos_enc in GHN-2
    assert g.op_names[real[1][real[0] == cls][0]] == "concat" and g.op_names[real[1][real[0] == pos][0]] == "sum"
