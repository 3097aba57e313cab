"""Sampling DeepNets-1M architectures: the splits, the generator's knobs and its rejection filters.

Everything follows §1.1-1.3 of the reference digest. Randomness comes from a ``random.Random``
passed in (scalar draws from it are ~20x cheaper than from numpy, and its state pickles).

Splits never overlap: every architecture's canonical key hashes to one of 64 buckets; each
evaluation split owns one bucket and the training and search splits own the other 59. A net is
kept only if its bucket belongs to the split, so the splits are disjoint by construction and
without either split having to know the other's contents, while the kept nets still follow the
generator's distribution (the hash is independent of every knob).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from ..errors import ArchitectureError
from ..utils import lookup
from .genotype import Architecture, Genotype
from .network import count_params
from .ops import DENSE_LARGE_CONV_OPS, LEARNABLE_OPS, PRIMITIVES, POOL_OPS, CONV_OPS

__all__ = [
    "SplitSpec", "SPLITS", "get_split", "sample_genotype", "sample_architecture", "rejection_reason",
    "sample_width", "NUM_BUCKETS",
]

NUM_BUCKETS = 64
_SHARED_BUCKETS = tuple(range(8, NUM_BUCKETS))  # train and search; 5..7 are kept in reserve


@dataclass(frozen=True)
class SplitSpec:
    """How one split is generated. Ranges are inclusive ``(low, high)``."""

    name: str
    size: int                                  # the published split size
    seed: int
    buckets: tuple[int, ...]                   # key-hash buckets this split accepts
    n_cells: tuple[int, int] = (4, 18)
    deep_layers: tuple[int, int] = (7, 10)     # threshold between "shallow" and "deep" nets
    steps_shallow: tuple[int, int] = (1, 4)    # steps when n_cells <= deep_layers
    steps_deep: tuple[int, int] = (1, 2)       # steps when n_cells > deep_layers
    norm: str = "sample"                       # "sample" (the default rule), "bn" (always) or "none"
    max_params: int = 10**7                    # at C=32, 10 classes, CIFAR and ImageNet stems
    width_multiplier: int = 1                  # WIDE: test nets with C x4 (CIFAR) / x2 (ImageNet)
    sample_width: bool = False                 # evaluation nets get a fixed width drawn by §1.2

    def width_multiplier_for(self, imagenet: bool) -> int:
        """Width multiplier on a data set: WIDE nets are x4 on CIFAR but x2 on ImageNet."""
        return min(self.width_multiplier, 2) if imagenet else self.width_multiplier


SPLITS: dict[str, SplitSpec] = {
    "train": SplitSpec("train", 1_000_000, seed=1, buckets=_SHARED_BUCKETS),
    "val": SplitSpec("val", 500, seed=2, buckets=(0,), sample_width=True),
    "test": SplitSpec("test", 500, seed=3, buckets=(1,), sample_width=True),
    # WIDE = the test generator (same seed, same nets, same order), built 4x wider on CIFAR.
    "wide": SplitSpec("wide", 100, seed=3, buckets=(1,), sample_width=True, width_multiplier=4),
    "deep": SplitSpec("deep", 100, seed=4, buckets=(2,), n_cells=(10, 36), deep_layers=(18, 18),
                      max_params=10**8, sample_width=True),
    "dense": SplitSpec("dense", 100, seed=5, buckets=(3,), steps_shallow=(2, 10), steps_deep=(2, 6),
                       max_params=10**8, sample_width=True),
    "bnfree": SplitSpec("bnfree", 100, seed=6, buckets=(4,), norm="none", sample_width=True),
    "search": SplitSpec("search", 100_000, seed=7, buckets=_SHARED_BUCKETS, n_cells=(6, 20),
                        deep_layers=(10, 10), steps_shallow=(1, 6), steps_deep=(1, 3), norm="bn"),
}


def get_split(name: str) -> SplitSpec:
    return lookup(SPLITS, name, "split", ArchitectureError, extra=", and 'predefined' (built on the fly)")


def sample_genotype(rng: random.Random, steps: int, *, only_pool: bool = False, drop_concat: bool = False,
                    allow_none: bool = True, allow_transformer: bool = True) -> Genotype:
    """Sample normal and reduction cells with the DARTS discretisation of random logits.

    For each node, logits ``alpha ~ 1e-3 N(0, 1)`` over (incoming edges x ops) are drawn; the two
    edges with the largest non-``none`` weight are kept, and each kept edge takes its arg-max op
    (``none`` included when allowed). With ``only_pool`` the reduction cell draws only from pools,
    skip and none. With ``drop_concat`` each node but the last is kept in the output with p=0.5.
    """
    base_ops = [op for op in PRIMITIVES if allow_transformer or op != "msa"]
    pool_ops = [op for op in PRIMITIVES if op in POOL_OPS or op in ("none", "skip_connect")]

    def cell(ops: list[str]) -> tuple[list[tuple[str, int]], list[int]]:
        non_none = [k for k, op in enumerate(ops) if op != "none"]
        edges = []
        for j in range(steps):
            weights = [[rng.gauss(0.0, 1e-3) for _ in ops] for _ in range(j + 2)]  # softmax is monotone
            best = sorted(range(j + 2), key=lambda i: -max(weights[i][k] for k in non_none))[:2]
            for i in sorted(best):
                choices = range(len(ops)) if allow_none else non_none
                edges.append((ops[max(choices, key=lambda k: weights[i][k])], i))
        concat = list(range(2, steps + 2))
        if drop_concat:
            concat = [c for c in concat[:-1] if rng.random() < 0.5] + concat[-1:]
        return edges, concat

    normal, normal_concat = cell(base_ops)
    reduce, reduce_concat = cell(pool_ops if only_pool else base_ops)
    return Genotype(normal, normal_concat, reduce, reduce_concat)


def _randint(rng: random.Random, bounds: tuple[int, int]) -> int:
    return rng.randint(bounds[0], bounds[1])


def sample_architecture(rng: random.Random, spec: SplitSpec = SPLITS["train"]) -> Architecture:
    """Draw one architecture from the split's generator (before the rejection filters)."""
    n_cells = _randint(rng, spec.n_cells)
    deep_layers = _randint(rng, spec.deep_layers)
    steps = _randint(rng, spec.steps_shallow if n_cells <= deep_layers else spec.steps_deep)
    genotype = sample_genotype(rng, steps, only_pool=rng.random() < 0.5,
                               drop_concat=steps > 1 and rng.random() < 0.5, allow_none=steps > 1)
    is_vit = any(op == "msa" for op, _ in genotype.normal + genotype.reduce)
    ks = rng.choice((3, 5, 7))
    C_mult = rng.choice((1, 2))
    fc_layers = rng.choice((1, 2))
    stem_type = rng.choice((0, 1))
    stem_pool = stem_type == 0 and rng.random() < 0.5
    if steps > 1 or C_mult > 1:
        preproc = True
    else:
        preproc = rng.random() < 0.2 if is_vit else True
    glob_avg = is_vit or n_cells > deep_layers or rng.random() < 0.9
    if spec.norm == "sample":
        norm = ("bn" if rng.random() < 0.5 else None) if n_cells <= 5 and steps <= 2 else "bn"
    else:
        norm = "bn" if spec.norm == "bn" else None
    return Architecture(genotype, n_cells, stem_type=stem_type, stem_pool=stem_pool, norm=norm, preproc=preproc,
                        fc_layers=fc_layers, fc_dim=256, glob_avg=glob_avg, ks=ks, C_mult=C_mult)


def rejection_reason(arch: Architecture, max_params: int = 10**7) -> tuple[str | None, int, int]:
    """Apply the generator's filters. Returns (reason or None, CIFAR params, ImageNet params) at C=32.

    Filters: a CSE without any conv; more than one CSE in a cell; more than one dense 5x5/7x7 conv in
    a cell; no learnable op; a disconnected net; more than ``max_params`` parameters at C=32 with 10
    classes in either the CIFAR or the ImageNet instantiation. Counts are 0 when not computed.
    """
    ops = arch.live_ops()
    if "cse" in ops and not CONV_OPS.intersection(ops):
        return "cse without conv", 0, 0
    for cell in (arch.plan(False), arch.plan(True)):
        cell_ops = [op for _, op, _ in cell.edges]
        if cell_ops.count("cse") > 1:
            return "two cse in a cell", 0, 0
        if sum(op in DENSE_LARGE_CONV_OPS for op in cell_ops) > 1:
            return "two dense 5x5/7x7 convs in a cell", 0, 0
    if not LEARNABLE_OPS.intersection(ops):
        return "no learnable op", 0, 0
    problem = arch.disconnection()
    if problem:
        return f"disconnected: {problem}", 0, 0
    cifar = count_params(arch, 32, 10, imagenet=False)
    if cifar > max_params:
        return "too many parameters (CIFAR)", cifar, 0
    imagenet = count_params(arch, 32, 10, imagenet=True)
    if imagenet > max_params:
        return "too many parameters (ImageNet)", cifar, imagenet
    return None, cifar, imagenet


# Widths drawn at GHN-training time (§1.2): channels 32..128 by 16, classifier hidden 64..512 by 64.
NUM_CH = tuple(range(32, 129, 16))
FC_DIM = tuple(range(64, 513, 64))


def sample_width(rng: random.Random, arch: Architecture, num_params: int) -> tuple[int, int]:
    """Draw (C, fc_dim) for a net by the training loader's rule (§1.2 of the reference).

    ``num_params`` is the net's stored count at C=32 (the CIFAR count, or the ImageNet one when
    training on ImageNet). Large, deep, flatten-head or dense-5x5/7x7 nets stay at C=32.
    """
    p = num_params / 1e6
    big_conv = bool(DENSE_LARGE_CONV_OPS.intersection(arch.live_ops()))
    fc_choices = FC_DIM[:4]
    if p > 0.8 or not arch.glob_avg or big_conv or arch.n_cells > 12:
        C = 32
    elif p > 0.4 or arch.n_cells > 10:
        C = rng.choice(NUM_CH[:2])
    elif p > 0.2 or arch.n_cells > 8:
        C = rng.choice(NUM_CH[:3])
    else:
        C = rng.choice(NUM_CH)
        if C <= 64:
            fc_choices = FC_DIM
    fc_dim = rng.choice(fc_choices)
    return C, fc_dim


def accepts(spec: SplitSpec, arch: Architecture) -> bool:
    """Whether ``arch`` hashes into one of the split's buckets (see the module docstring)."""
    return arch.key_hash() % NUM_BUCKETS in spec.buckets

