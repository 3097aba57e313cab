"""NAS-Bench-201: strings, networks (sizes match the benchmark's published range), graphs, labels."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from ghn_core.errors import ArchitectureError, GraphError
from ghn_core.graph import Graph, GraphWarning
from ghn_core.model import create_ghn
from ghn_core.nb201 import NB201Network, format_arch, load_labelled, parse_arch

LABELS = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "labelled.csv"
FULL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
EMPTY = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


def test_parameter_range_matches_the_benchmark():
    # NAS-Bench-201 reports 0.07M to 1.53M parameters on CIFAR-10.
    assert round(sum(p.numel() for p in NB201Network(FULL).parameters()) / 1e6, 2) == 1.53
    assert round(sum(p.numel() for p in NB201Network(EMPTY).parameters()) / 1e6, 2) == 0.07


def test_strings_round_trip_and_bad_strings():
    assert parse_arch(FULL)[2] == ("nor_conv_3x3",) * 3
    assert format_arch(parse_arch(FULL)) == FULL
    for bad in ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "|none~0|+|none~0|", "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|"):
        with pytest.raises(ArchitectureError):
            parse_arch(bad)


@pytest.mark.skipif(not LABELS.is_file(), reason=f"no NB201 labels at {LABELS}")
def test_labelled_set_loads_and_builds():
    rows = load_labelled(LABELS)
    assert len(rows) == 2554 and all(format_arch(parse_arch(r.arch)) == r.arch for r in rows)
    ghn = create_ghn("ghn2")
    for row in rows[:: len(rows) // 6]:
        net = NB201Network(row.arch)
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", GraphWarning)  # dead ops are reported, checked below
                graph = Graph.from_module(net)
        except GraphError as err:  # a cell with no path from input to output computes a constant
            assert "depend" in str(err) or "reach" in str(err), err
            continue
        # The benchmark's network builds every op, also those on a node nobody reads: their
        # parameters cannot influence the output, and the graph names them instead of predicting them.
        assert set(graph.skipped.values()) <= {"does not influence the output"}
        params = ghn.predict_params([net], [graph])[0]
        assert set(params) | set(graph.skipped) == {k for k, _ in net.named_parameters()}
        assert all(tuple(v.shape) == tuple(net.get_parameter(k).shape) for k, v in params.items())


def test_a_cell_without_a_path_is_a_clear_graph_error():
    with pytest.raises(GraphError):
        Graph.from_module(NB201Network(EMPTY))


def test_cell_key_groups_strings_that_compute_the_same_function():
    from ghn_core.nb201 import cell_key

    conv = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|"
    # Node 1's output is unused, so its op does not matter; a dead node 2 input is dropped.
    assert cell_key(conv) == cell_key("|avg_pool_3x3~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|") == "zero"
    chain = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|nor_conv_1x1~2|"
    assert cell_key(chain) == "nor_conv_1x1(nor_conv_3x3(in))"
    # skip_connect is the identity: routing the same conv through node 1 or node 2 is one cell.
    assert cell_key("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|skip_connect~1|skip_connect~2|") == \
        cell_key("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|skip_connect~1|none~2|")
    # Summing two paths is not the same function as one of them.
    assert cell_key("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|nor_conv_3x3~1|none~2|") != \
        cell_key("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|nor_conv_3x3~1|none~2|")
    # The shared CSV: 2,554 strings of the benchmark's 1,000 cells; this key is a little coarser.
    assert len({cell_key(r.arch) for r in load_labelled(LABELS)}) == 924
