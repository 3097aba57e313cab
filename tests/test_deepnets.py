"""DeepNets-1M: sampler distributions, filters, networks of every op and split, store, CLI."""
from __future__ import annotations

import math
import random
from collections import Counter

import h5py
import numpy as np
import pytest
import torch

from ghn_core.deepnets import (
    PRIMITIVES, SPLITS, VIT_ARCH, Architecture, DeepNets1M, Genotype, Network, count_params, generate_split,
    get_split, predefined_nets, rejection_reason, sample_architecture,
)
from ghn_core.deepnets.__main__ import main as cli_main
from ghn_core.deepnets.generate import generate_chunk
from ghn_core.deepnets.sampler import NUM_BUCKETS, sample_width
from ghn_core.deepnets.store import StoreWriter
from ghn_core.errors import ArchitectureError, StoreError

N_SAMPLES = 6000


@pytest.fixture(scope="module")
def raw_archs() -> list[Architecture]:
    """Architectures straight from the train generator, before any filter."""
    rng = random.Random(12345)
    return [sample_architecture(rng) for _ in range(N_SAMPLES)]


def assert_freq(hits: int, total: int, p: float, what: str) -> None:
    """Binomial frequency within 4.5 standard errors (false alarm rate ~1e-5 per check)."""
    se = math.sqrt(p * (1 - p) / total)
    assert abs(hits / total - p) < 4.5 * se + 1e-9, f"{what}: {hits}/{total} = {hits / total:.3f}, expected {p:.3f}"


# -- sampler distributions (§1.1 of the reference) ---------------------------------------------------

def test_uniform_network_knobs(raw_archs):
    n = len(raw_archs)
    cells = Counter(a.n_cells for a in raw_archs)
    assert set(cells) == set(range(4, 19))
    for k in range(4, 19):
        assert_freq(cells[k], n, 1 / 15, f"n_cells={k}")
    for name, values in (("ks", (3, 5, 7)), ("C_mult", (1, 2)), ("fc_layers", (1, 2)), ("stem_type", (0, 1))):
        counts = Counter(getattr(a, name) for a in raw_archs)
        assert set(counts) == set(values), name
        for v in values:
            assert_freq(counts[v], n, 1 / len(values), f"{name}={v}")
    stem0 = [a for a in raw_archs if a.stem_type == 0]
    assert_freq(sum(a.stem_pool for a in stem0), len(stem0), 0.5, "stem_pool | stem_type 0")
    assert not any(a.stem_pool for a in raw_archs if a.stem_type == 1)
    assert all(a.fc_dim == 256 for a in raw_archs)


def test_steps_depend_on_depth(raw_archs):
    shallow = [a for a in raw_archs if a.n_cells <= 6]     # below every deep threshold U{7..10}
    deep = [a for a in raw_archs if a.n_cells > 10]        # above every threshold
    for s in range(1, 5):
        assert_freq(sum(a.genotype.steps == s for a in shallow), len(shallow), 0.25, f"steps={s} (shallow)")
    assert {a.genotype.steps for a in deep} == {1, 2}
    assert_freq(sum(a.genotype.steps == 1 for a in deep), len(deep), 0.5, "steps=1 (deep)")


def test_conditional_knobs(raw_archs):
    vit = [a for a in raw_archs if a.is_vit]
    assert vit and all(a.glob_avg for a in vit)
    assert all(a.glob_avg for a in raw_archs if a.n_cells > 10)
    shallow_cnn = [a for a in raw_archs if not a.is_vit and a.n_cells <= 6]
    assert_freq(sum(a.glob_avg for a in shallow_cnn), len(shallow_cnn), 0.9, "glob_avg (shallow, no ViT)")
    forced = [a for a in raw_archs if a.genotype.steps > 1 or a.C_mult > 1]
    assert all(a.preproc for a in forced)
    free_cnn = [a for a in raw_archs if a.genotype.steps == 1 and a.C_mult == 1 and not a.is_vit]
    assert all(a.preproc for a in free_cnn)
    free_vit = [a for a in raw_archs if a.genotype.steps == 1 and a.C_mult == 1 and a.is_vit]
    assert_freq(sum(a.preproc for a in free_vit), len(free_vit), 0.2, "preproc (free ViT)")
    small = [a for a in raw_archs if a.n_cells <= 5 and a.genotype.steps <= 2]
    assert_freq(sum(a.norm == "bn" for a in small), len(small), 0.5, "norm=bn (small nets)")
    assert all(a.norm == "bn" for a in raw_archs if a.n_cells > 5 or a.genotype.steps > 2)


def _p_none_on_selected_edge(m: int, rank: int) -> float:
    """P(the 'none' logit beats the best of 14 other logits on the edge ranked ``rank`` of ``m``).

    Edges are ranked by their best non-none logit; on a uniform scale that best value is the max of
    14 uniforms (CDF v**14), and 'none' wins with probability 1 - v. Integrates the rank-th largest
    of m such maxima numerically: an independent check of the DARTS discretisation.
    """
    v = np.linspace(0.0, 1.0, 200_001)
    G, g = v**14, 14 * v**13
    coef = math.factorial(m) / (math.factorial(rank - 1) * math.factorial(m - rank))
    density = coef * G ** (m - rank) * (1 - G) ** (rank - 1) * g
    return float(np.trapezoid((1 - v) * density, v))


def test_genotype_sampling(raw_archs):
    # Non-none ops are uniform on normal-cell edges; 'none' wins less often than 1/15 because the two
    # kept edges are those with the largest non-none logits (the reference's "in effect uniform").
    multi = [a for a in raw_archs if a.genotype.steps > 1]
    ops = Counter(op for a in multi for op, _ in a.genotype.normal)
    total = sum(ops.values())
    assert set(ops) == set(PRIMITIVES)
    for op in PRIMITIVES[1:]:
        assert_freq(ops[op], total - ops["none"], 1 / 14, f"op {op}")
    p_none = {(m, r): _p_none_on_selected_edge(m, r) for m in range(2, 6) for r in (1, 2)}
    assert abs(p_none[2, 1] + p_none[2, 2] - 2 / 15) < 1e-4  # two inputs: both kept, plain 1/15 each
    expected = sum(p_none[j + 2, 1] + p_none[j + 2, 2] for a in multi for j in range(a.genotype.steps))
    assert abs(ops["none"] - expected) < 4.5 * math.sqrt(expected), (ops["none"], expected)
    assert not any(op == "none" for a in raw_archs if a.genotype.steps == 1 for op, _ in a.genotype.normal)
    # Each node reads two distinct earlier states.
    for a in raw_archs[:500]:
        g = a.genotype
        for j in range(g.steps):
            inputs = [inp for _, inp in g.normal[2 * j: 2 * j + 2]]
            assert len(set(inputs)) == 2 and max(inputs) < j + 2
    # drop_concat (p=0.5 when steps > 1) keeps each non-last node with p=0.5: for steps=2, P(len 1) = 0.25.
    two = [a for a in raw_archs if a.genotype.steps == 2]
    assert_freq(sum(len(a.genotype.normal_concat) == 1 for a in two), len(two), 0.25, "dropped concat (steps=2)")
    # only_pool (p=0.5): the reduction cell draws from {none, pools, skip}; a free cell rarely lands there.
    pool_only = sum(all(op in ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect") for op, _ in a.genotype.reduce)
                    for a in raw_archs)
    assert 0.5 <= pool_only / len(raw_archs) < 0.5 + 0.1


# -- rejection filters ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def train_records():
    return [r for k in range(3) for r in generate_chunk(SPLITS["train"], k, 300)]


def test_filters_hold_on_generated_nets(train_records):
    assert len(train_records) == 900
    for rec in train_records:
        a = rec.arch
        for reduction in (False, True):
            ops = [op for _, op, _ in a.plan(reduction).edges]
            assert ops.count("cse") <= 1
            assert sum(op in ("conv_5x5", "conv_7x7") for op in ops) <= 1
        assert a.disconnection() is None
        assert any("conv" in op or op in ("msa", "cse") for op in a.live_ops())
        assert rec.num_params_cifar10 == count_params(a, 32, 10) <= 10**7
        assert rec.num_params_imagenet == count_params(a, 32, 10, imagenet=True) <= 10**7


def test_filters_reject_what_they_should():
    def arch(normal, concat=(2,), **kw):
        return Architecture(Genotype(normal, concat, [("max_pool_3x3", 0), ("conv_3x3", 1)], [2]), 8, **kw)

    assert rejection_reason(arch([("cse", 0), ("cse", 1)]))[0] == "two cse in a cell"
    assert rejection_reason(arch([("conv_5x5", 0), ("conv_7x7", 1)]))[0] == "two dense 5x5/7x7 convs in a cell"
    no_conv = Architecture(Genotype([("cse", 0), ("max_pool_3x3", 1)], [2], [("max_pool_3x3", 0), ("cse", 1)], [2]), 8)
    assert rejection_reason(no_conv)[0] == "cse without conv"
    pools = Architecture(Genotype([("max_pool_3x3", 0), ("skip_connect", 1)], [2],
                                  [("avg_pool_3x3", 0), ("max_pool_3x3", 1)], [2]), 8)
    assert rejection_reason(pools)[0] == "no learnable op"
    # Node 2 reads only 'none' edges; the cell's only output is empty.
    empty = arch([("none", 0), ("none", 1), ("conv_3x3", 0), ("conv_1x1", 1)], concat=(2,))
    assert rejection_reason(empty)[0].startswith("disconnected")
    # A normal cell that never reads s1 makes every other cell dead.
    skips_s1 = arch([("conv_3x3", 0), ("none", 1)])
    assert "never reach the classifier" in rejection_reason(skips_s1)[0]
    with pytest.raises(ArchitectureError, match="disconnected"):
        Network(skips_s1, 8)
    huge = Architecture(Genotype([("conv_7x7", 0), ("conv_3x3", 1)], [2], [("conv_3x3", 0), ("conv_3x3", 1)], [2]),
                        18, glob_avg=False, C_mult=2)
    reason, cifar, _ = rejection_reason(huge, max_params=10**6)
    assert reason == "too many parameters (CIFAR)" and cifar > 10**6


# -- networks -------------------------------------------------------------------------------------

def _single_op_arch(op: str, norm="bn") -> Architecture:
    # The op sits on both cell types; the reduction cell applies it with stride 2 on a cell input.
    g = Genotype([(op, 0), ("conv_1x1", 1)], [2], [(op, 1), ("conv_1x1", 0)], [2])
    return Architecture(g, 4, norm=norm)


@pytest.mark.parametrize("op", [op for op in PRIMITIVES if op != "none"])
@pytest.mark.parametrize("imagenet", [False, True])
def test_every_op_builds_runs_and_counts(op, imagenet):
    arch = _single_op_arch(op)
    size = 224 if imagenet else 32
    net = Network(arch, 16, 7, imagenet=imagenet)
    out = net(torch.randn(2, 3, size, size))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    assert sum(p.numel() for p in net.parameters()) == count_params(arch, 16, 7, imagenet=imagenet)


def test_none_op_is_never_built():
    g = Genotype([("none", 0), ("conv_1x1", 1)], [2], [("none", 0), ("sep_conv_3x3", 1)], [2])
    arch = Architecture(g, 4)  # node 2 = op(s1) only, in both cells
    net = Network(arch, 16)
    assert all(len(cell.ops) == 1 for cell in net.cells)
    assert net.cells[0].preprocess0 is None  # s0 unread in normal cells: no adapter, no dead parameters


@pytest.mark.parametrize("split", ["train", "val", "test", "wide", "deep", "dense", "bnfree", "search"])
def test_every_split_builds_and_runs(split):
    spec = get_split(split)
    recs = generate_chunk(spec, 0, 3)
    torch.manual_seed(0)
    for rec in recs:
        assert rec.key_hash % NUM_BUCKETS in spec.buckets
        net = Network(rec.arch, 8, 10)
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
        assert sum(p.numel() for p in net.parameters()) == count_params(rec.arch, 8, 10)
        if spec.norm == "none":
            assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    # One ImageNet-sized forward per split keeps the suite fast.
    big = Network(recs[0].arch, 8, 5, imagenet=True)
    assert big(torch.randn(1, 3, 224, 224)).shape == (1, 5)


def test_param_counts_match_modules(train_records):
    for rec in train_records[:60]:
        for imagenet in (False, True):
            net = Network(rec.arch, 32, 10, imagenet=imagenet, device="meta")
            assert sum(p.numel() for p in net.parameters()) == count_params(rec.arch, 32, 10, imagenet=imagenet)


def test_meta_network_allocates_nothing():
    net = Network(VIT_ARCH, 128, device="meta")
    assert all(p.is_meta for p in net.parameters())
    out = torch.func.functional_call(
        net, {k: torch.zeros(v.shape) for k, v in net.named_parameters()}, (torch.randn(1, 3, 32, 32),))
    assert out.shape == (1, 10)


def test_predefined_match_reference_sizes():
    nets = predefined_nets(10)
    # §5 of the reference: ResNet-50 23.52M, ViT 1.01M parameters on CIFAR-10.
    assert round(sum(p.numel() for p in nets["resnet50"].parameters()) / 1e6, 2) == 23.52
    assert round(sum(p.numel() for p in nets["vit"].parameters()) / 1e6, 2) == 1.01
    for net in nets.values():
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_sample_width_rule():
    rng = random.Random(0)
    small = Architecture(Genotype([("conv_3x3", 0), ("conv_1x1", 1)], [2], [("conv_3x3", 0), ("conv_1x1", 1)], [2]), 5)
    widths = {sample_width(rng, small, 100_000) for _ in range(400)}
    assert {C for C, _ in widths} == set(range(32, 129, 16))
    assert {fc for C, fc in widths if C <= 64} == set(range(64, 513, 64))
    assert {fc for C, fc in widths if C > 64} <= {64, 128, 192, 256}
    assert {sample_width(rng, small, 900_000)[0] for _ in range(50)} == {32}
    assert {sample_width(rng, small, 500_000)[0] for _ in range(100)} == {32, 48}
    assert {sample_width(rng, small.with_(glob_avg=False), 10_000)[0] for _ in range(50)} == {32}


# -- genotypes and keys ---------------------------------------------------------------------------

def test_json_round_trip(train_records):
    for rec in train_records[:200]:
        again = Architecture.from_json(rec.arch.to_json())
        assert again == rec.arch and again.key() == rec.arch.key()


def test_key_ignores_dead_parts_and_edge_order():
    base = Genotype([("conv_3x3", 0), ("sep_conv_3x3", 1), ("max_pool_3x3", 0), ("conv_1x1", 2)], [3],
                    [("conv_3x3", 0), ("conv_3x3", 1)], [2])
    swapped = Genotype([("sep_conv_3x3", 1), ("conv_3x3", 0), ("max_pool_3x3", 0), ("conv_1x1", 2)], [3],
                       [("conv_3x3", 1), ("conv_3x3", 0)], [2])
    a, b = Architecture(base, 6), Architecture(swapped, 6)
    assert a.key() == b.key() and a.key_hash() == b.key_hash()
    # A dead node (not in concat, unread) does not change the key...
    dead = Genotype([("conv_3x3", 0), ("sep_conv_3x3", 1), ("conv_5x5", 0), ("conv_7x7", 1)], [2],
                    [("conv_3x3", 0), ("conv_3x3", 1)], [2])
    alive = Genotype([("conv_3x3", 0), ("sep_conv_3x3", 1), ("max_pool_3x3", 0), ("skip_connect", 1)], [2],
                     [("conv_3x3", 0), ("conv_3x3", 1)], [2])
    assert Architecture(dead, 6).key() == Architecture(alive, 6).key()
    # ...but a live op or a knob does.
    assert Architecture(base, 6).key() != Architecture(base, 7).key()
    assert Architecture(base, 6).key() != Architecture(base, 6, C_mult=1).key()


def test_bad_genotypes_name_the_problem():
    with pytest.raises(ArchitectureError, match=r"unknown op 'sep_conv_3x4'.*Did you mean 'sep_conv_3x3'"):
        Genotype([("sep_conv_3x4", 0), ("conv_1x1", 1)], [2], [("conv_1x1", 0), ("conv_1x1", 1)], [2])
    with pytest.raises(ArchitectureError, match="reads state 5"):
        Genotype([("conv_1x1", 5), ("conv_1x1", 1)], [2], [("conv_1x1", 0), ("conv_1x1", 1)], [2])
    with pytest.raises(ArchitectureError, match="concat"):
        Genotype([("conv_1x1", 0), ("conv_1x1", 1)], [7], [("conv_1x1", 0), ("conv_1x1", 1)], [2])
    with pytest.raises(ArchitectureError, match="not valid JSON"):
        Architecture.from_json("{")
    with pytest.raises(ArchitectureError, match="unknown architecture fields"):
        Architecture.from_dict({**VIT_ARCH.to_dict(), "colour": "red"})
    with pytest.raises(ArchitectureError, match="unknown split"):
        get_split("tset")


# -- determinism and disjoint splits --------------------------------------------------------------

def test_same_seed_same_nets():
    a = generate_chunk(SPLITS["val"], 0, 20)
    b = generate_chunk(SPLITS["val"], 0, 20)
    assert [r.arch for r in a] == [r.arch for r in b] and [r.C for r in a] == [r.C for r in b]
    assert [r.arch for r in generate_chunk(SPLITS["val"], 1, 20)] != [r.arch for r in a]


def test_eval_splits_never_overlap_train(tmp_path, train_records):
    train_keys = {r.key_hash for r in train_records} | set(
        generate_split("train", 4000, tmp_path, workers=1, progress=False, graphs=False).key_hashes().tolist())
    seen = set()
    for split in ("val", "test", "deep", "dense", "bnfree"):
        keys = {r.key_hash for r in generate_chunk(SPLITS[split], 0, 60)}
        assert not keys & train_keys, split
        assert not keys & seen, split
        seen |= keys
    assert not {b for split in ("val", "test", "deep", "dense", "bnfree") for b in SPLITS[split].buckets} \
        & set(SPLITS["train"].buckets)


def test_wide_is_test_built_wider(tmp_path):
    test = generate_split("test", 12, tmp_path, workers=1, progress=False, chunk_size=6)
    wide = generate_split("wide", 12, tmp_path, workers=1, progress=False, chunk_size=6)
    for i in range(12):
        assert wide[i].arch == test[i].arch and wide[i].C == test[i].C
    assert wide.network(0, device="meta").C == 4 * test[0].C
    assert wide.network(0, imagenet=True, device="meta").C == 2 * test[0].C


# -- the store -----------------------------------------------------------------------------------

def test_store_round_trip_and_cli(tmp_path):
    assert cli_main(["generate", "--split", "val", "--n", "30", "--out", str(tmp_path), "--chunk-size", "10",
                     "--workers", "2"]) == 0
    store = DeepNets1M.open(tmp_path, "val")
    assert len(store) == 30 and store.complete
    expected = [r for k in range(3) for r in generate_chunk(SPLITS["val"], k, 10)]
    assert [store[i] for i in range(30)] == expected
    assert store[-1] == expected[-1]
    with pytest.raises(IndexError):
        store[30]
    store.close()
    # A finished split is never overwritten unless asked.
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["generate", "--split", "val", "--n", "30", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    with pytest.raises(StoreError, match="already holds the complete val split"):
        generate_split("val", 30, tmp_path, progress=False)
    again = generate_split("val", 20, tmp_path, progress=False, overwrite=True, workers=1, chunk_size=10)
    assert len(again) == 20 and again[5] == expected[5]


def test_interrupted_run_resumes_to_the_same_store(tmp_path, monkeypatch):
    full = generate_split("train", 700, tmp_path / "full", workers=1, chunk_size=100, progress=False)
    calls = {"n": 0}
    original = StoreWriter.append_chunk

    def dying_append(self, records, chunk_index, complete):
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the user pressed Ctrl-C after three chunks
        calls["n"] += 1
        original(self, records, chunk_index, complete)

    monkeypatch.setattr(StoreWriter, "append_chunk", dying_append)
    with pytest.raises(KeyboardInterrupt):
        generate_split("train", 700, tmp_path / "cut", workers=1, chunk_size=100, progress=False)
    monkeypatch.setattr(StoreWriter, "append_chunk", original)
    partial = DeepNets1M.open(tmp_path / "cut", "train")
    assert len(partial) == 300 and not partial.complete
    resumed = generate_split("train", 700, tmp_path / "cut", workers=2, chunk_size=100, progress=False)
    assert len(resumed) == 700
    assert np.array_equal(resumed.key_hashes(), full.key_hashes())
    assert [resumed[i] for i in (0, 299, 300, 699)] == [full[i] for i in (0, 299, 300, 699)]
    with pytest.raises(StoreError, match="other settings"):
        h5 = tmp_path / "cut2"
        generate_split("train", 50, h5, workers=1, chunk_size=10, progress=False)
        with h5py.File(h5 / "deepnets1m_train.h5", "r+") as f:
            f.attrs["complete"] = False
        generate_split("train", 60, h5, workers=1, chunk_size=10, progress=False)


def test_no_duplicates_within_a_split(tmp_path):
    store = generate_split("train", 3000, tmp_path, workers=2, progress=False, graphs=False)
    keys = store.key_hashes()
    assert len(np.unique(keys)) == len(keys) == 3000


def test_bad_store_files(tmp_path):
    with pytest.raises(StoreError, match="no DeepNets-1M store"):
        DeepNets1M.open(tmp_path, "test")
    (tmp_path / "deepnets1m_test.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(StoreError, match="not a readable HDF5 file"):
        DeepNets1M.open(tmp_path, "test")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["title"] = "something else"
    with pytest.raises(StoreError, match="not a DeepNets-1M store"):
        DeepNets1M(tmp_path / "other.h5")


def test_store_keeps_graphs_equal_to_tracing(tmp_path):
    from ghn_core.graph import Graph

    store = generate_split("wide", 6, tmp_path, workers=1, progress=False, chunk_size=6)
    assert store.has_graphs
    for i in range(6):
        stored = store.graph(i)
        traced = Graph.from_module(store.network(i, device="meta"))  # the 4x wider net of the WIDE split
        assert stored.node_name == traced.node_name and stored.node_bias_name == traced.node_bias_name
        for field in ("node_op", "param_shape", "node_is_classifier", "edge_index", "edge_dist"):
            assert np.array_equal(getattr(stored, field), getattr(traced, field)), field
    assert store.graph(0, s_max=1).edge_dist.max() == 1
    bare = generate_split("val", 3, tmp_path / "bare", workers=1, progress=False, graphs=False)
    with pytest.raises(StoreError, match="without graphs"):
        bare.graph(0)
    bare.close()
    with h5py.File(bare.path, "r+") as f:
        f.attrs["complete"] = False
    with pytest.raises(StoreError, match="other settings"):
        generate_split("val", 3, tmp_path / "bare", workers=1, progress=False, graphs=True)
