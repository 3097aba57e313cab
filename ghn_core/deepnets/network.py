"""Build a DeepNets-1M :class:`Architecture` into a plain ``nn.Module``, and count its parameters.

:func:`net_layout` decides channels, strides and spatial sizes once; :class:`Network` builds from
it and :func:`count_params` counts from it without building anything (module construction costs
about 60 us per layer, too slow for generating a million architectures).

Stems and reductions follow §1.1 of the reference ("Stems", "Macro structure"):

* stem_type 0: conv (kernel ``ks``, no bias) + norm (+ max-pool); 3C channels with ``preproc``, else C.
* stem_type 1 (DARTS): ``stem`` = conv(3 -> C/2, kernel ``ks``) + norm + ReLU + conv(C/2 -> C, 3) + norm,
  ``stem1`` = ReLU + strided conv(C -> C, 3) + norm; the cells read ``stem`` as s0, ``stem1`` as s1.
* ViT (any net with ``msa``, whatever ``stem_type``): ONE conv to C channels (never 3C), no bias,
  kernel = stride = 3 (padding 1) on CIFAR or 16 on ImageNet, then ``PosEnc`` (1, C, s, s).
* Reduction cells at ``n_cells // 3`` and ``2 * n_cells // 3``, never at index 0
  (:attr:`~ghn_core.deepnets.genotype.Architecture.reduction_cells`).

One deliberate difference: the reference builds a cell's input adapter (1x1 ReLU-Conv-BN or
FactorizedReduce) even when no live op reads that input, and counts it in its published sizes.
We never build dead parts (:func:`~ghn_core.deepnets.genotype.cell_plan`), so a net with an unread
cell input has fewer parameters here than in the reference; what the network computes is the same.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ArchitectureError
from .genotype import Architecture, CellPlan
from .ops import OPS, FactorizedReduce, PosEnc, ReLUConvBN, make_norm

__all__ = ["Network", "Cell", "NetLayout", "CellLayout", "net_layout", "count_params", "vit_patch",
           "preprocess0_kind", "preprocess1_kind"]


@dataclass(frozen=True)
class CellLayout:
    """Channels and strides of one cell instance."""

    plan: CellPlan
    reduction: bool       # built from the reduction genotype
    stride: int           # 2 on ops fed by the cell inputs of a (non-ViT) reduction cell
    C_prev_prev: int      # channels of input s0
    C_prev: int           # channels of input s1
    C: int                # channels of every op in the cell
    reduce_s0: bool       # s0 has twice the spatial size of s1 (the previous cell reduced)

    @property
    def C_out(self) -> int:
        return self.C * len(self.plan.concat)


@dataclass(frozen=True)
class NetLayout:
    stem_channels: int    # channels of the stem output(s)
    cells: tuple[CellLayout, ...]
    head_size: int        # spatial side of the last feature map
    pos_enc_size: int     # token grid side of ViT nets (0 otherwise)

    @property
    def num_features(self) -> int:
        """Width of the classifier input."""
        return self.cells[-1].C_out


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def vit_patch(imagenet: bool) -> tuple[int, int]:
    """(kernel = stride, padding) of the ViT patchify stem: 16x16 tokens on ImageNet, 3x3 on CIFAR."""
    return (16, 0) if imagenet else (3, 1)


def net_layout(arch: Architecture, C: int, imagenet: bool = False, image_size: int | None = None) -> NetLayout:
    """Channels, strides and spatial sizes of ``arch`` at width ``C``."""
    if C < 2:
        raise ArchitectureError(f"expected a width C >= 2, got C={C} instead")
    size = image_size or (224 if imagenet else 32)
    reduce_s0 = False
    pos_enc_size = 0
    if arch.is_vit:
        stem_C = C  # never 3C: the ViT stem ignores preproc
        patch, pad = vit_patch(imagenet)
        size = pos_enc_size = _conv_out(size, patch, patch, pad)
    elif arch.stem_type == 0:
        stem_C = 3 * C if arch.preproc else C
        size = _conv_out(size, arch.ks, 4 if imagenet else 1, arch.ks // 2)
        if arch.stem_pool:
            size = _conv_out(size, 3, 2, 1)
    else:  # DARTS ImageNet stem: stem0 (two convs) feeds the cells as s0, stem1 (one strided conv) as s1
        stem_C = C
        for k in (arch.ks, 3):
            size = _conv_out(size, k, 2 if imagenet else 1, k // 2)
        size = _conv_out(size, 3, 2, 1)
        reduce_s0 = True
    if size < 1:
        raise ArchitectureError(f"image size {image_size} is too small for this stem")

    cells = []
    C_pp, C_p, C_cell = stem_C, stem_C, C
    for i in range(arch.n_cells):
        reduction = i in arch.reduction_cells
        if reduction:
            C_cell *= arch.C_mult
        stride = 2 if reduction and not arch.is_vit else 1
        cell = CellLayout(arch.plan(reduction), reduction, stride, C_pp, C_p, C_cell, reduce_s0)
        cells.append(cell)
        if stride == 2:
            size = _conv_out(size, 3, 2, 1)
        reduce_s0 = stride == 2
        C_pp, C_p = C_p, cell.C_out
    return NetLayout(stem_C, tuple(cells), size, pos_enc_size)


def preprocess0_kind(cell: CellLayout, preproc: bool) -> str | None:
    """Which adapter s0 needs: 'reduce', 'conv' (1x1) or None (identity)."""
    if cell.reduce_s0:
        return "reduce"
    return "conv" if preproc or cell.C_prev_prev != cell.C else None


def preprocess1_kind(cell: CellLayout, preproc: bool) -> str | None:
    return "conv" if preproc or cell.C_prev != cell.C else None


class Cell(nn.Module):
    """One cell: adapt the two inputs to ``C`` channels, sum ops into nodes, concatenate the outputs."""

    def __init__(self, layout: CellLayout, norm: str | None, preproc: bool, track_running_stats: bool = True):
        super().__init__()
        plan, C = layout.plan, layout.C
        self.edges = plan.edges
        self.concat = plan.concat
        self.preprocess0 = self.preprocess1 = None
        if plan.uses_s0:
            kind = preprocess0_kind(layout, preproc)
            if kind == "reduce":
                self.preprocess0 = FactorizedReduce(layout.C_prev_prev, C, norm, track_running_stats)
            elif kind == "conv":
                self.preprocess0 = ReLUConvBN(layout.C_prev_prev, C, 1, 1, norm, track_running_stats)
        if plan.uses_s1 and preprocess1_kind(layout, preproc):
            self.preprocess1 = ReLUConvBN(layout.C_prev, C, 1, 1, norm, track_running_stats)
        self.ops = nn.ModuleList(
            OPS[op].build(C, layout.stride if inp < 2 else 1, norm, track_running_stats) for _, op, inp in plan.edges)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = {
            0: self.preprocess0(s0) if self.preprocess0 is not None else s0,
            1: self.preprocess1(s1) if self.preprocess1 is not None else s1,
        }
        for (node, _, inp), op in zip(self.edges, self.ops):
            out = op(states[inp])
            states[node] = out if node not in states else states[node] + out
        return torch.cat([states[c] for c in self.concat], dim=1) if len(self.concat) > 1 else states[self.concat[0]]


class Network(nn.Module):
    """A DeepNets-1M network as a plain ``nn.Module``.

    Args:
        arch: the architecture (genotype and network-level knobs).
        C: width of the first cell (channels double, or not, at reductions per ``arch.C_mult``).
        num_classes: classifier outputs.
        imagenet: use the ImageNet stems (stride-4 conv, stride-2 DARTS stem, 16x16 ViT patches)
            instead of the CIFAR ones; the default input size follows (224 vs 32).
        image_size: input side, for the flatten head's width; defaults to 224 or 32.
        track_running_stats: BatchNorm keeps running statistics (for SGD training and ``eval()``);
            False makes every BN use batch statistics, as in GHN training and evaluation.
        device: where to allocate parameters; ``"meta"`` allocates nothing (for a hypernetwork
            that supplies every tensor, e.g. through ``torch.func.functional_call``).
    """

    def __init__(self, arch: Architecture, C: int = 32, num_classes: int = 10, *, imagenet: bool = False,
                 image_size: int | None = None, track_running_stats: bool = True,
                 device: str | torch.device | None = None):
        super().__init__()
        self.arch, self.C, self.num_classes, self.imagenet = arch, C, num_classes, imagenet
        problem = arch.disconnection()
        if problem:
            raise ArchitectureError(f"cannot build a disconnected network: {problem}")
        layout = net_layout(arch, C, imagenet, image_size)
        norm, trs = arch.norm, track_running_stats
        with torch.device(device) if device is not None else contextlib.nullcontext():
            stem_C = layout.stem_channels
            if arch.is_vit:
                patch, pad = vit_patch(imagenet)
                self.stem = nn.Sequential(nn.Conv2d(3, stem_C, patch, patch, pad, bias=False),
                                          PosEnc(stem_C, layout.pos_enc_size))
                self.stem1 = None
            elif arch.stem_type == 0:
                stride = 4 if imagenet else 1
                layers = [nn.Conv2d(3, stem_C, arch.ks, stride, arch.ks // 2, bias=False), make_norm(stem_C, norm, trs)]
                if arch.stem_pool:
                    layers.append(nn.MaxPool2d(3, 2, 1))
                self.stem = nn.Sequential(*layers)
                self.stem1 = None
            else:
                s = 2 if imagenet else 1
                self.stem = nn.Sequential(
                    nn.Conv2d(3, C // 2, arch.ks, s, arch.ks // 2, bias=False), make_norm(C // 2, norm, trs),
                    nn.ReLU(inplace=False),
                    nn.Conv2d(C // 2, C, 3, s, 1, bias=False), make_norm(C, norm, trs))
                self.stem1 = nn.Sequential(
                    nn.ReLU(inplace=False), nn.Conv2d(C, C, 3, 2, 1, bias=False), make_norm(C, norm, trs))
            self.cells = nn.ModuleList(Cell(cell, norm, arch.preproc, trs) for cell in layout.cells)
            self.pool = nn.AdaptiveAvgPool2d(1) if arch.glob_avg else nn.Identity()
            self.head_size = None if arch.glob_avg else layout.head_size  # side of the flattened feature map
            num_features = layout.num_features * (1 if arch.glob_avg else layout.head_size ** 2)
            if arch.fc_layers == 1:
                self.classifier = nn.Linear(num_features, num_classes)
            else:
                self.classifier = nn.Sequential(nn.Linear(num_features, arch.fc_dim), nn.ReLU(inplace=False),
                                                nn.Dropout(0.5), nn.Linear(arch.fc_dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = self.stem(x)
        s1 = self.stem1(s0) if self.stem1 is not None else s0
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        x = self.pool(s1)
        if self.head_size is not None and x.shape[-1] != self.head_size:
            # Images of another size than the net was built for (a label recipe's 16 px): the flatten head
            # gets the map it expects. Not traced at the built size, so graphs are unchanged.
            x = F.adaptive_avg_pool2d(x, self.head_size)
        return self.classifier(torch.flatten(x, 1))

    def extra_repr(self) -> str:
        return f"C={self.C}, num_classes={self.num_classes}, imagenet={self.imagenet}"


def count_params(arch: Architecture, C: int = 32, num_classes: int = 10, *, imagenet: bool = False,
                 image_size: int | None = None) -> int:
    """Number of parameters of ``Network(arch, C, num_classes, ...)``, without building it."""
    layout = net_layout(arch, C, imagenet, image_size)
    norm = arch.norm
    bn = 2 if norm else 0
    stem_C = layout.stem_channels
    if arch.is_vit:
        patch, _ = vit_patch(imagenet)
        total = 3 * stem_C * patch * patch + stem_C * layout.pos_enc_size ** 2
    elif arch.stem_type == 0:
        total = 3 * stem_C * arch.ks ** 2 + bn * stem_C
    else:
        total = 3 * arch.ks ** 2 * (C // 2) + bn * (C // 2) + 9 * (C // 2) * C + bn * C + 9 * C * C + bn * C
    for cell in layout.cells:
        plan = cell.plan
        if plan.uses_s0:
            kind = preprocess0_kind(cell, arch.preproc)
            if kind == "reduce":
                total += FactorizedReduce.num_params(cell.C_prev_prev, cell.C, norm)
            elif kind == "conv":
                total += ReLUConvBN.num_params(cell.C_prev_prev, cell.C, 1, norm)
        if plan.uses_s1 and preprocess1_kind(cell, arch.preproc):
            total += ReLUConvBN.num_params(cell.C_prev, cell.C, 1, norm)
        total += sum(OPS[op].num_params(cell.C, cell.stride if inp < 2 else 1, norm) for _, op, inp in plan.edges)
    num_features = layout.num_features * (1 if arch.glob_avg else layout.head_size ** 2)
    if arch.fc_layers == 1:
        total += num_features * num_classes + num_classes
    else:
        total += num_features * arch.fc_dim + arch.fc_dim + arch.fc_dim * num_classes + num_classes
    return total
