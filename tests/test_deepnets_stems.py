"""The reference's stem and reduction rules (§1.1 "Stems", "Macro structure"): the built module, the
analytic parameter count and the no-tracing graph all follow them."""
from __future__ import annotations

import h5py
import pytest
import torch
from torch import nn

from ghn_core.deepnets import Architecture, Genotype, Network, count_params
from ghn_core.deepnets.graph import architecture_graph
from ghn_core.deepnets.network import net_layout
from ghn_core.deepnets.ops import PosEnc
from ghn_core.deepnets.sampler import SPLITS
from ghn_core.deepnets.store import FORMAT_VERSION, DeepNets1M, StoreWriter
from ghn_core.errors import StoreError

torch.set_num_threads(1)

CNN_CELL = [("sep_conv_3x3", 0), ("conv_3x3", 1), ("max_pool_3x3", 0), ("skip_connect", 2)]
VIT_CELL = [("msa", 1), ("conv_1x1", 0)]


def arch(cell, n_cells: int = 4, **knobs) -> Architecture:
    concat = [2, 3] if len(cell) == 4 else [2]
    return Architecture(Genotype(cell, concat, cell, concat), n_cells=n_cells, **knobs)


def num_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def stem_weight_shape(a: Architecture, C: int, imagenet: bool) -> list[int]:
    """Shape of ``stem.0.weight`` in the no-tracing graph."""
    g = architecture_graph(a, C, 10, imagenet=imagenet)
    return g.param_shape[g.node_name.index("stem.0.weight")].tolist()


@pytest.mark.parametrize("imagenet", [False, True])
@pytest.mark.parametrize("ks", [3, 5, 7])
def test_darts_stem_first_conv_uses_ks(ks, imagenet):
    a = arch(CNN_CELL, stem_type=1, ks=ks)
    net = Network(a, 16, 10, imagenet=imagenet)
    first, second = net.stem[0], net.stem[3]
    assert (first.in_channels, first.out_channels) == (3, 8)
    assert first.kernel_size == (ks, ks) and first.padding == (ks // 2, ks // 2) and first.bias is None
    assert first.stride == ((2, 2) if imagenet else (1, 1))
    assert second.kernel_size == (3, 3) and second.stride == first.stride
    assert net.stem1[1].kernel_size == (3, 3) and net.stem1[1].stride == (2, 2)
    assert num_params(net) == count_params(a, 16, 10, imagenet=imagenet)
    assert stem_weight_shape(a, 16, imagenet) == [8, 3, ks, ks]
    size = 224 if imagenet else 32
    assert net(torch.randn(2, 3, size, size)).shape == (2, 10)


def test_darts_stem_ks_changes_the_count_and_the_key():
    small, large = arch(CNN_CELL, stem_type=1, ks=3), arch(CNN_CELL, stem_type=1, ks=7)
    # only the first stem conv differs: (C/2) * 3 * (7*7 - 3*3) more weights at C=32
    assert count_params(large, 32) - count_params(small, 32) == 16 * 3 * (49 - 9)
    assert small.key() != large.key()


@pytest.mark.parametrize("imagenet", [False, True])
@pytest.mark.parametrize("stem", [dict(stem_type=0, ks=7), dict(stem_type=1, ks=5), dict(stem_type=0, stem_pool=True)])
@pytest.mark.parametrize("preproc", [True, False])
def test_vit_stem_is_one_c_wide_conv_without_bias(preproc, stem, imagenet):
    C = 32
    a = arch(VIT_CELL, preproc=preproc, **stem)
    assert a.is_vit
    net = Network(a, C, 10, imagenet=imagenet)
    assert net.stem1 is None and len(net.stem) == 2
    conv, pos = net.stem
    patch, pad, tokens = (16, 0, 14) if imagenet else (3, 1, 11)
    assert conv.out_channels == C and conv.bias is None                      # never 3C, whatever preproc
    assert conv.kernel_size == conv.stride == (patch, patch) and conv.padding == (pad, pad)
    assert isinstance(pos, PosEnc) and pos.weight.shape == (1, C, tokens, tokens)
    assert net_layout(a, C, imagenet).stem_channels == C
    assert num_params(net) == count_params(a, C, 10, imagenet=imagenet)
    assert stem_weight_shape(a, C, imagenet) == [C, 3, patch, patch]
    g = architecture_graph(a, C, 10, imagenet=imagenet)
    assert "stem.0.bias" not in g.node_name
    size = 224 if imagenet else 32
    assert net(torch.randn(2, 3, size, size)).shape == (2, 10)


def test_vit_key_ignores_stem_knobs():
    base = arch(VIT_CELL, stem_type=0, ks=3)
    assert base.key() == arch(VIT_CELL, stem_type=1, ks=7).key()
    assert count_params(base, 32) == count_params(arch(VIT_CELL, stem_type=1, ks=7), 32)


def test_stem_type_0_keeps_3c_with_preproc():
    a = arch(CNN_CELL, stem_type=0, ks=5, preproc=True)
    net = Network(a, 16)
    assert net.stem[0].out_channels == 48 and net.stem[0].kernel_size == (5, 5)
    assert Network(a.with_(preproc=False), 16).stem[0].out_channels == 16


@pytest.mark.parametrize("n_cells, expected", [(1, ()), (2, (1,)), (3, (1, 2)), (4, (1, 2)), (5, (1, 3)),
                                               (6, (2, 4)), (18, (6, 12))])
def test_reduction_cells_never_at_index_0(n_cells, expected):
    assert arch(CNN_CELL, n_cells).reduction_cells == expected


@pytest.mark.parametrize("n_cells", [1, 2, 3])
def test_first_cell_of_a_short_net_is_normal(n_cells):
    # distinct normal and reduction cells: the first cell must be built from the normal genotype, at stride 1
    normal = [("conv_3x3", 0), ("conv_1x1", 1)]
    reduce = [("avg_pool_3x3", 0), ("conv_5x5", 1)]
    a = Architecture(Genotype(normal, [2], reduce, [2]), n_cells=n_cells, C_mult=2)
    layout = net_layout(a, 16)
    assert not layout.cells[0].reduction and layout.cells[0].stride == 1 and layout.cells[0].C == 16
    net = Network(a, 16)
    assert net.cells[0].ops[0][1].kernel_size == (3, 3) and net.cells[0].ops[0][1].stride == (1, 1)
    reductions = [i for i, c in enumerate(layout.cells) if c.reduction]
    assert reductions == list(a.reduction_cells)
    assert layout.head_size == 32 // 2 ** len(reductions)
    assert num_params(net) == count_params(a, 16)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_old_store_format_is_refused(tmp_path):
    # stores of format 2 hold parameter counts, graphs and key hashes of the old stem/reduction rules
    path = tmp_path / "deepnets1m_test.h5"
    with h5py.File(path, "w") as f:
        f.attrs["title"], f.attrs["format_version"] = "DeepNets-1M", FORMAT_VERSION - 1
    assert FORMAT_VERSION >= 3
    with pytest.raises(StoreError, match=f"format {FORMAT_VERSION - 1}"):
        DeepNets1M(path)
    with pytest.raises(StoreError, match="--overwrite"):
        StoreWriter(path, SPLITS["test"], 10, 5)
    StoreWriter(path, SPLITS["test"], 10, 5, overwrite=True).close()
    assert DeepNets1M(path).split == "test"


@pytest.mark.parametrize("glob_avg", [True, False])
def test_vit_net_runs_at_another_resolution(glob_avg):
    # A label recipe trains at 16 px: the positional encoding is resized and a flatten head gets the map
    # size it was built for; no parameter changes shape.
    net = Network(arch(VIT_CELL, stem_type=1, ks=5, glob_avg=glob_avg), 8, 10)
    shapes = {name: p.shape for name, p in net.named_parameters()}
    for size in (16, 32):
        assert net(torch.randn(2, 3, size, size)).shape == (2, 10)
    assert {name: p.shape for name, p in net.named_parameters()} == shapes
