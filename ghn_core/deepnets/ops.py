"""The 15 DeepNets-1M operations: one table from op name to module builder and parameter count.

The genotype sampler draws names from :data:`OPS`, the network builder builds from it, and the
analytic parameter counter reads from it, so the three cannot drift apart. Every op maps ``C``
channels to ``C`` channels; ``stride=2`` halves the spatial size (reduction cells).

``norm`` is ``"bn"`` (BatchNorm2d after each conv stack) or ``None`` (BN-free nets). Following
DARTS, convs inside cells carry no bias; BN carries the affine pair.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ArchitectureError
from ..utils import lookup

__all__ = [
    "OPS", "PRIMITIVES", "CONV_OPS", "DENSE_LARGE_CONV_OPS", "POOL_OPS", "get_op",
    "ReLUConvBN", "Conv7x1_1x7", "DilConv", "SepConv", "FactorizedReduce", "MSA", "CSE", "PosEnc",
    "make_norm",
]


def make_norm(C: int, norm: str | None, track_running_stats: bool = True) -> nn.Module:
    """BatchNorm2d for ``norm="bn"``, identity for BN-free nets."""
    if norm is None:
        return nn.Identity()
    if norm != "bn":
        raise ArchitectureError(f"expected norm 'bn' or None, got {norm!r} instead")
    return nn.BatchNorm2d(C, track_running_stats=track_running_stats)


def _norm_params(C: int, norm: str | None) -> int:
    return 2 * C if norm else 0


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv k x k (no bias) -> BN: the ``conv_*`` ops and the 1x1 cell-input adapters."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int = 1,
                 norm: str | None = "bn", track_running_stats: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride, padding=kernel_size // 2, bias=False),
            make_norm(C_out, norm, track_running_stats),
        )

    @staticmethod
    def num_params(C_in: int, C_out: int, kernel_size: int, norm: str | None) -> int:
        return C_in * C_out * kernel_size * kernel_size + _norm_params(C_out, norm)


class Conv7x1_1x7(nn.Sequential):
    """ReLU -> Conv 1x7 -> Conv 7x1 -> BN (the ``conv_7x1_1x7`` op)."""

    def __init__(self, C: int, stride: int = 1, norm: str | None = "bn", track_running_stats: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
            nn.Conv2d(C, C, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
            make_norm(C, norm, track_running_stats),
        )

    @staticmethod
    def num_params(C: int, norm: str | None) -> int:
        return 2 * 7 * C * C + _norm_params(C, norm)


class DilConv(nn.Sequential):
    """ReLU -> depthwise k x k (dilated) -> pointwise 1x1 -> BN."""

    def __init__(self, C: int, kernel_size: int, stride: int, dilation: int,
                 norm: str | None = "bn", track_running_stats: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, kernel_size, stride, padding=dilation * (kernel_size - 1) // 2,
                      dilation=dilation, groups=C, bias=False),
            nn.Conv2d(C, C, 1, bias=False),
            make_norm(C, norm, track_running_stats),
        )

    @staticmethod
    def num_params(C: int, kernel_size: int, norm: str | None) -> int:
        return C * kernel_size * kernel_size + C * C + _norm_params(C, norm)


class SepConv(nn.Sequential):
    """Two stacked undilated :class:`DilConv` blocks (DARTS separable conv); only the first strides."""

    def __init__(self, C: int, kernel_size: int, stride: int,
                 norm: str | None = "bn", track_running_stats: bool = True):
        super().__init__(
            DilConv(C, kernel_size, stride, 1, norm, track_running_stats),
            DilConv(C, kernel_size, 1, 1, norm, track_running_stats),
        )

    @staticmethod
    def num_params(C: int, kernel_size: int, norm: str | None) -> int:
        return 2 * DilConv.num_params(C, kernel_size, norm)


class FactorizedReduce(nn.Module):
    """Halve the spatial size with two strided 1x1 convs, one on a one-pixel-shifted input, concatenated.

    The shifted input is zero-padded back to the original size, so odd sizes work too.
    """

    def __init__(self, C_in: int, C_out: int, norm: str | None = "bn", track_running_stats: bool = True):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out - C_out // 2, 1, stride=2, bias=False)
        self.norm = make_norm(C_out, norm, track_running_stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.norm(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))

    @staticmethod
    def num_params(C_in: int, C_out: int, norm: str | None) -> int:
        return C_in * C_out + _norm_params(C_out, norm)


class MSA(nn.Module):
    """A pre-LN transformer layer over the spatial tokens (the ``msa`` op).

    8 heads of size C/8, QKV projection without bias, MLP of ratio 1 with GELU, two residual
    connections. ``stride=2`` subsamples tokens spatially before the layer.
    """

    num_heads = 8

    def __init__(self, C: int, stride: int = 1):
        super().__init__()
        if C % self.num_heads:
            raise ArchitectureError(f"msa needs channels divisible by {self.num_heads}, got C={C} instead")
        self.stride = stride
        self.ln1 = nn.LayerNorm(C)
        self.qkv = nn.Linear(C, 3 * C, bias=False)
        self.proj = nn.Linear(C, C)
        self.ln2 = nn.LayerNorm(C)
        self.fc1 = nn.Linear(C, C)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(C, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        B, C, H, W = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        q, k, v = self.qkv(self.ln1(tokens)).view(B, H * W, 3, self.num_heads, C // self.num_heads).unbind(2)
        attn = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))  # (B, h, HW, C/h)
        tokens = tokens + self.proj(attn.transpose(1, 2).reshape(B, H * W, C))
        tokens = tokens + self.fc2(self.act(self.fc1(self.ln2(tokens))))
        return tokens.transpose(1, 2).reshape(B, C, H, W)

    @staticmethod
    def num_params(C: int) -> int:
        return 2 * C + 3 * C * C + (C * C + C) + 2 * C + 2 * (C * C + C)


class CSE(nn.Module):
    """Channel squeeze-excitation with reduction 2 and a Hardswish gate (the ``cse`` op).

    The reference uses Hardswish where the usual SE uses a sigmoid; the gate is therefore not
    bounded to [0, 1], which is why nets with two CSE in a cell are rejected (NaN losses).
    """

    def __init__(self, C: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        self.squeeze = nn.Conv2d(C, C // 2, 1)
        self.relu = nn.ReLU(inplace=False)
        self.excite = nn.Conv2d(C // 2, C, 1)
        self.gate = nn.Hardswish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        w = self.gate(self.excite(self.relu(self.squeeze(x.mean((2, 3), keepdim=True)))))
        return x * w

    @staticmethod
    def num_params(C: int) -> int:
        return 2 * C * (C // 2) + C // 2 + C


class PosEnc(nn.Module):
    """Learned additive positional encoding of shape (1, C, s, s) after the ViT patchify stem. Images of
    another size get it resized bilinearly (as ViTs fine-tune at a new resolution), so a net built for
    32 px also runs, e.g., a label recipe's 16 px."""

    def __init__(self, C: int, size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(1, C, size, size))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if weight.shape[-2:] != x.shape[-2:]:
            weight = nn.functional.interpolate(weight, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return x + weight


@dataclass(frozen=True)
class OpSpec:
    """How to build one op (``build(C, stride, norm, track_running_stats)``) and count its parameters."""

    build: Callable[[int, int, "str | None", bool], nn.Module]
    num_params: Callable[[int, int, "str | None"], int]


def _pool(kind: str) -> OpSpec:
    def build(C, stride, norm, trs):
        if kind == "max":
            return nn.MaxPool2d(3, stride=stride, padding=1)
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    return OpSpec(build, lambda C, stride, norm: 0)


def _conv(k: int) -> OpSpec:
    return OpSpec(lambda C, stride, norm, trs: ReLUConvBN(C, C, k, stride, norm, trs),
                  lambda C, stride, norm: ReLUConvBN.num_params(C, C, k, norm))


def _skip_build(C, stride, norm, trs):
    return nn.Identity() if stride == 1 else FactorizedReduce(C, C, norm, trs)


def _none_build(C, stride, norm, trs):
    raise ArchitectureError("the 'none' op is never built: it contributes nothing to a cell")


# Order is the sampler's order (the reference's op list); never mutated after import.
OPS: dict[str, OpSpec] = {
    "none": OpSpec(_none_build, lambda C, stride, norm: 0),
    "max_pool_3x3": _pool("max"),
    "avg_pool_3x3": _pool("avg"),
    "skip_connect": OpSpec(_skip_build,
                           lambda C, stride, norm: 0 if stride == 1 else FactorizedReduce.num_params(C, C, norm)),
    "sep_conv_3x3": OpSpec(lambda C, s, n, t: SepConv(C, 3, s, n, t), lambda C, s, n: SepConv.num_params(C, 3, n)),
    "sep_conv_5x5": OpSpec(lambda C, s, n, t: SepConv(C, 5, s, n, t), lambda C, s, n: SepConv.num_params(C, 5, n)),
    "dil_conv_3x3": OpSpec(lambda C, s, n, t: DilConv(C, 3, s, 2, n, t), lambda C, s, n: DilConv.num_params(C, 3, n)),
    "dil_conv_5x5": OpSpec(lambda C, s, n, t: DilConv(C, 5, s, 2, n, t), lambda C, s, n: DilConv.num_params(C, 5, n)),
    "conv_1x1": _conv(1),
    "conv_7x1_1x7": OpSpec(lambda C, s, n, t: Conv7x1_1x7(C, s, n, t), lambda C, s, n: Conv7x1_1x7.num_params(C, n)),
    "conv_3x3": _conv(3),
    "conv_5x5": _conv(5),
    "conv_7x7": _conv(7),
    "msa": OpSpec(lambda C, s, n, t: MSA(C, s), lambda C, s, n: MSA.num_params(C)),
    "cse": OpSpec(lambda C, s, n, t: CSE(C, s), lambda C, s, n: CSE.num_params(C)),
}
PRIMITIVES: tuple[str, ...] = tuple(OPS)
CONV_OPS = frozenset(name for name in OPS if "conv" in name)
DENSE_LARGE_CONV_OPS = frozenset({"conv_5x5", "conv_7x7"})
POOL_OPS = frozenset({"max_pool_3x3", "avg_pool_3x3"})
# Ops whose presence makes a net "learnable" (the rest are pools, identity and none).
LEARNABLE_OPS = CONV_OPS | {"msa", "cse"}


def get_op(name: str) -> OpSpec:
    """Look up an op by name; an unknown name lists the known ones and the closest match."""
    return lookup(OPS, name, "op", ArchitectureError)
