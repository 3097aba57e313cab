"""Scoring NB201 pools fast changes nothing: ``nb201_graph`` is the traced graph, field by field, and
``labelled_features`` gives the embeddings of tracing every net and embedding them in one call."""
from __future__ import annotations

import itertools
import random
import warnings

import numpy as np
import pytest
import torch
from test_deepnets_graph import assert_same_graph

from ghn_core.errors import ClassesWarning, DisconnectedGraphError, GraphError
from ghn_core.graph import Graph, GraphWarning
from ghn_core.graph.nb201 import nb201_graph
from ghn_core.nb201 import NB201_OPS, NB201Network, format_arch

torch.set_num_threads(1)

ALL = [format_arch(((a,), (b, c), (d, e, f))) for a, b, c, d, e, f in itertools.product(NB201_OPS, repeat=6)]
# Strings whose graphs take each rule of the emitter: dead ops (skipped, warned), a conv of a constant
# (fed by the input node), a pooling of a constant (none), a sum of one node with itself (none),
# and nets without an input-output path, one of them with nodes fed by constants only.
CORNERS = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|avg_pool_3x3~2|",
    "|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|skip_connect~0|none~1|none~2|",        # dead conv and pool
    "|none~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|none~1|skip_connect~2|",        # conv of zeros
    "|none~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|none~1|nor_conv_3x3~2|",        # pool of zeros
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|none~0|none~1|nor_conv_1x1~2|",  # x + x
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",                                  # all none
    "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|",                          # output zeros
    "|none~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|skip_connect~2|",                  # constants only
]
SAMPLE = CORNERS + random.Random(0).sample(ALL, 24)


def traced(arch: str, C: int = 16, num_classes: int = 10, size: int = 32, s_max: int = 50):
    """``Graph.from_module`` of the built net and its warnings, or the GraphError it raises."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            graph = Graph.from_module(NB201Network(arch, num_classes, C), (1, 3, size, size), s_max=s_max)
        except GraphError as err:
            return err, []
    return graph, [str(w.message) for w in caught if issubclass(w.category, GraphWarning)]


@pytest.mark.parametrize("arch", SAMPLE)
def test_nb201_graph_is_the_traced_graph(arch):
    expected, expected_warnings = traced(arch)
    if isinstance(expected, GraphError):
        with pytest.raises(type(expected), match="does not depend on its input"):
            nb201_graph(arch)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = nb201_graph(arch)
    assert_same_graph(graph, expected, arch)
    assert graph.output_shape == expected.output_shape == (1, 10)
    assert [str(w.message) for w in caught] == expected_warnings   # the dead ops, named the same way


def test_the_corner_cases_take_their_rules():
    with pytest.warns(GraphWarning, match="does not influence the output"):
        g = nb201_graph(CORNERS[2])
    assert "cells.0.ops.0_1.1.weight" in g.skipped and "cells.0.ops.0_1.1.weight" not in g.node_name
    assert g.op_counts()["avg_pool"] == 2     # the two residual blocks' only: the cells' pool is dead
    g = nb201_graph(CORNERS[3])
    conv = g.node_name.index("cells.0.ops.1_2.1.weight")
    assert g.real_edge_index[0, g.real_edge_index[1] == conv].tolist() == [0]   # zeros come from the input
    assert nb201_graph(CORNERS[4]).op_counts()["avg_pool"] == 2    # pooling zeros gives zeros, no node
    assert nb201_graph(CORNERS[5]).op_counts()["sum"] == 2         # x + x: no sum node in the cells
    for arch in CORNERS[6:]:
        with pytest.raises(DisconnectedGraphError):
            nb201_graph(arch)


@pytest.mark.parametrize("C, num_classes, size, s_max", [(8, 100, 16, 50), (16, 10, 64, 1), (4, 10, 8, 3)])
def test_nb201_graph_follows_width_classes_input_size_and_s_max(C, num_classes, size, s_max):
    for arch in SAMPLE[:3] + SAMPLE[-3:]:
        expected, _ = traced(arch, C, num_classes, size, s_max)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GraphWarning)
            assert_same_graph(nb201_graph(arch, C, num_classes, s_max=s_max), expected, f"{arch} {C} {size} {s_max}")


def old_labelled_features(ghn, archs):
    """labelled_features before nb201_graph: build and trace every net, then one ``embed`` call."""
    from nas.label import build_architecture

    graphs, ok = [], np.zeros(len(archs), dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GraphWarning)
        for i, arch in enumerate(archs):
            try:
                graphs += ghn.graphs([build_architecture("nb201", arch)])
                ok[i] = True
            except GraphError:
                pass
    X = np.full((len(archs), ghn.config.hid), np.nan)
    X[ok] = ghn.embed(graphs=graphs).numpy()
    return X, ok


def test_labelled_features_equal_tracing_every_net_bit_for_bit():
    from ghn_core import load_ghn
    from nas.predictors import labelled_features

    ghn = load_ghn()
    archs = SAMPLE + [CORNERS[6]]     # the last net has no graph: the held graphs are embedded anyway
    X, ok = labelled_features(ghn, "nb201", archs)
    X_old, ok_old = old_labelled_features(ghn, archs)
    assert ok.tolist() == ok_old.tolist() and (~ok).sum() == 4   # the three corners and the last
    assert np.array_equal(X, X_old, equal_nan=True)


def test_labelled_features_traces_for_a_ghn_of_other_classes():
    """nb201_graph stands in for tracing only where it is exact: another class count keeps the warning."""
    from ghn_core.model import create_ghn
    from nas.predictors import labelled_features

    torch.manual_seed(0)
    ghn = create_ghn("ghn2", num_classes=100)
    with pytest.warns(ClassesWarning):
        X, ok = labelled_features(ghn, "nb201", SAMPLE[:2])
    assert ok.all() and np.isfinite(X).all()
