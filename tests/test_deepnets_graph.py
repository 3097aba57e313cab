"""architecture_graph builds exactly the graph that tracing a meta Network gives: every op, stem, head, split."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ghn_core.deepnets import OPS, SPLITS, VIT_ARCH, Architecture, Genotype, Network
from ghn_core.deepnets.generate import generate_chunk
from ghn_core.deepnets.graph import OP_GRAPHS, architecture_graph
from ghn_core.errors import ArchitectureError
from ghn_core.graph import Graph

torch.set_num_threads(1)

OPS_BUILT = sorted(set(OPS) - {"none"})


def assert_same_graph(a: Graph, b: Graph, what: str = "") -> None:
    """Every field of two graphs equal; the message names the field and the first difference."""
    where = f"{what}: " if what else ""
    n = min(a.num_nodes, b.num_nodes)
    nodes_a, nodes_b = list(zip(a.op_names, a.node_name)), list(zip(b.op_names, b.node_name))
    first = next((i for i in range(n) if nodes_a[i] != nodes_b[i]), n)
    assert a.num_nodes == b.num_nodes and first == n, (
        f"{where}node lists differ ({a.num_nodes} vs {b.num_nodes} nodes), first at node {first}: "
        f"{nodes_a[first:first + 3]} vs {nodes_b[first:first + 3]}")
    for field in ("node_op", "param_shape", "node_is_classifier", "edge_index", "edge_dist"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype, f"{where}{field}: dtype {x.dtype} vs {y.dtype}"
        assert x.shape == y.shape, f"{where}{field}: shape {x.shape} vs {y.shape}"
        if not np.array_equal(x, y):
            diff = np.argwhere(x != y)[0].tolist()
            pytest.fail(f"{where}{field} differs first at {diff}: {x[tuple(diff)]} vs {y[tuple(diff)]}")
    for field in ("node_name", "node_bias_name"):
        x, y = getattr(a, field), getattr(b, field)
        diff = next((i for i, (u, v) in enumerate(zip(x, y)) if u != v), None)
        assert diff is None, f"{where}{field}[{diff}]: {x[diff]!r} vs {y[diff]!r}"
    assert a.s_max == b.s_max, f"{where}s_max: {a.s_max} vs {b.s_max}"
    assert a.skipped == b.skipped, f"{where}skipped: {a.skipped} vs {b.skipped}"
    assert a == b  # Graph.__eq__ agrees


def check(arch: Architecture, C: int = 16, num_classes: int = 10, *, imagenet: bool = False,
          image_size: int | None = None, s_max: int = 50) -> Graph:
    """Trace the meta Network and build the fast graph; assert they are equal; return the graph."""
    S = image_size or (224 if imagenet else 32)
    net = Network(arch, C, num_classes, imagenet=imagenet, image_size=image_size, device="meta")
    traced = Graph.from_module(net, (1, 3, S, S), s_max=s_max)
    fast = architecture_graph(arch, C, num_classes, imagenet=imagenet, image_size=image_size, s_max=s_max)
    what = f"C={C} classes={num_classes} imagenet={imagenet} size={image_size} s_max={s_max} {arch}"
    assert_same_graph(fast, traced, what)
    assert fast.skipped == {}
    return fast


def arch_with(cell: list, concat: list, n_cells: int = 3, **knobs) -> Architecture:
    """Same genotype in the normal and the reduction cells; 3 cells = one normal, two reduction."""
    return Architecture(Genotype(cell, concat, cell, concat), n_cells=n_cells, **knobs)


def test_assert_same_graph_names_the_difference():
    g = architecture_graph(arch_with([("conv_3x3", 0), ("cse", 1)], [2]), 16)
    assert_same_graph(g, g.with_virtual_edges(g.s_max))
    renamed = g.with_virtual_edges(g.s_max)
    renamed.node_bias_name[2] = "x"
    with pytest.raises(AssertionError, match=r"node_bias_name\[2\]"):
        assert_same_graph(renamed, g)
    with pytest.raises(AssertionError, match="edge_index: shape"):
        assert_same_graph(g.with_virtual_edges(3), g)
    reshaped = g.with_virtual_edges(g.s_max)
    reshaped.param_shape[1, 2] += 1
    with pytest.raises(pytest.fail.Exception, match=r"param_shape differs first at \[1, 2\]"):
        assert_same_graph(reshaped, g)


def test_op_table_matches_ops():
    assert set(OP_GRAPHS) == set(OPS) - {"none"}


@pytest.mark.parametrize("norm", ["bn", None])
@pytest.mark.parametrize("op", OPS_BUILT)
def test_each_op_in_normal_and_reduction_cells(op, norm):
    # the op on both cell inputs (stride 2 in reduction cells) and on an inner node (stride 1)
    cell = [(op, 0), (op, 1), (op, 2), ("skip_connect", 1)]
    graph = check(arch_with(cell, [2, 3], norm=norm))
    if op in ("max_pool_3x3", "avg_pool_3x3", "cse", "msa"):
        assert graph.op_counts()[{"max_pool_3x3": "max_pool", "avg_pool_3x3": "avg_pool"}.get(op, op)] == 9


@pytest.mark.parametrize("op", OPS_BUILT)
def test_each_op_without_input_adapters(op):
    # preproc=False and a constant width: the cell inputs are the stem output itself (identity adapters)
    check(arch_with([(op, 0), ("conv_3x3", 1), (op, 1), (op, 2)], [2, 3], n_cells=4, preproc=False, C_mult=1))


def test_merges_of_equal_provenance_add_no_node():
    # cell 0 (normal) reads the stem output as s0 and as s1 (no adapters): skip(s0) + skip(s1) is that
    # tensor twice (no sum node), and concatenating state 2 twice gives the concat node one input for it
    normal = [("skip_connect", 0), ("skip_connect", 1), ("conv_1x1", 1), ("skip_connect", 0)]
    reduce = [("conv_1x1", 0), ("avg_pool_3x3", 1)]
    arch = Architecture(Genotype(normal, [2, 3, 2], reduce, [2]), n_cells=3, preproc=False, C_mult=1)
    counts = check(arch).op_counts()
    assert counts["sum"] == 1 + 2        # node 3 of cell 0, node 2 of each reduction cell; not node 2 of cell 0
    assert counts["concat"] == 1 + 1     # cell 0's output, and the FactorizedReduce adapter of cell 2
    check(arch_with([("skip_connect", 0), ("skip_connect", 1)], [2], preproc=False, C_mult=1))


STEMS = {
    "conv": dict(stem_type=0),
    "conv_pool": dict(stem_type=0, stem_pool=True),
    "conv_ks5": dict(stem_type=0, ks=5),
    "conv_ks7_pool_no_preproc": dict(stem_type=0, ks=7, stem_pool=True, preproc=False),
    "darts": dict(stem_type=1),
    "darts_no_preproc": dict(stem_type=1, preproc=False),
    "darts_ks7": dict(stem_type=1, ks=7),
    "darts_ks5_no_preproc": dict(stem_type=1, ks=5, preproc=False),
}


@pytest.mark.parametrize("imagenet", [False, True])
@pytest.mark.parametrize("norm", ["bn", None])
@pytest.mark.parametrize("stem", list(STEMS))
def test_stems(stem, norm, imagenet):
    cell = [("sep_conv_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 0), ("conv_3x3", 2)]
    check(arch_with(cell, [2, 3], n_cells=4, norm=norm, **STEMS[stem]), imagenet=imagenet)


@pytest.mark.parametrize("imagenet", [False, True])
@pytest.mark.parametrize("preproc", [True, False])
def test_vit_stem(preproc, imagenet):
    cell = [("msa", 1), ("cse", 0), ("avg_pool_3x3", 2), ("skip_connect", 1)]
    graph = check(arch_with(cell, [2, 3], n_cells=4, preproc=preproc), imagenet=imagenet)
    assert graph.op_counts()["pos_enc"] == 1


@pytest.mark.parametrize("glob_avg", [True, False])
@pytest.mark.parametrize("fc_layers", [1, 2])
def test_classifier_heads(fc_layers, glob_avg):
    arch = arch_with([("conv_3x3", 0), ("dil_conv_3x3", 1)], [2], fc_layers=fc_layers, glob_avg=glob_avg, fc_dim=64)
    graph = check(arch, num_classes=100)
    names = [n for n, c in zip(graph.node_name, graph.node_is_classifier) if c]
    head = "classifier." if fc_layers == 1 else "classifier.3."
    assert names == [head + "weight", head + "bias"]
    check(arch, imagenet=True)
    check(arch, image_size=48)       # the flatten head's width follows the image size


@pytest.mark.parametrize("imagenet", [False, True])
def test_predefined_vit(imagenet):
    graph = check(VIT_ARCH, 128, imagenet=imagenet)
    assert graph.num_nodes == 129   # the ViT stem conv has no bias node


@pytest.mark.parametrize("s_max", [1, 2, 7])
def test_s_max(s_max):
    graph = check(arch_with([("sep_conv_5x5", 0), ("cse", 1), ("conv_7x1_1x7", 2), ("msa", 0)], [2, 3]), s_max=s_max)
    assert graph.s_max == s_max and graph.edge_dist.max() <= s_max


def test_same_errors_as_network():
    dead = arch_with([("none", 0), ("none", 1)], [2])
    with pytest.raises(ArchitectureError, match="disconnected"):
        Network(dead, 16, device="meta")
    with pytest.raises(ArchitectureError, match="disconnected"):
        architecture_graph(dead, 16)
    msa = arch_with([("msa", 0), ("conv_1x1", 1)], [2])
    for build in (lambda: Network(msa, 12, device="meta"), lambda: architecture_graph(msa, 12)):
        with pytest.raises(ArchitectureError, match="divisible"):
            build()
    with pytest.raises(ArchitectureError, match="C >= 2"):
        architecture_graph(arch_with([("conv_1x1", 0), ("conv_1x1", 1)], [2]), 1)


# 8 splits x 25 nets = 200 random nets at their own widths, a few at other widths, classes and stems
RANDOM_PER_SPLIT = 25


@pytest.mark.parametrize("split", list(SPLITS))
def test_random_nets_of_every_split(split):
    records = generate_chunk(SPLITS[split], 0, RANDOM_PER_SPLIT)
    for k, rec in enumerate(records):
        check(rec.arch, rec.C)
    # other widths and heads: C in (8, 48, 128) with 100 classes, and the ImageNet stems
    for k, C in enumerate((8, 48, 128)):
        check(records[k].arch, C, 100)
    check(records[3].arch, records[3].C, 1000, imagenet=True)
