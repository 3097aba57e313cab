"""GHN-2 decoders (§3.3) and the operation-dependent normalisation of predicted tensors (§3.4).

The conv decoder maps a node state to a (2d, 2d, s, s) block (64x64x11x11 for CIFAR):
Linear(d -> 4d*s*s) + ReLU, a 1x1 conv 4d -> 8d + ReLU, a 1x1 conv 8d -> (2d)^2. The 1x1 convs
act on each spatial position alone, so only the positions (and output rows) a target tensor keeps
are computed: the top-left (min(kh, s), min(kw, s)) crop and the leading (min(o, 2d), min(i, 2d))
channel block. The block is then tiled (repeated and truncated) along every axis to the target
shape. This equals computing the full block and slicing it, at a fraction of the cost.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvDecoder", "Decoder1D", "tile", "weight_scale", "normalize_weight", "normalize_norm_weight", "normalize_bias"]


def tile(block: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Repeat ``block`` along each axis as often as needed and cut it to ``shape`` (same ndim)."""
    reps = [math.ceil(t / b) for t, b in zip(shape, block.shape)]
    if any(r > 1 for r in reps):
        block = block.repeat(*reps)
    return block[tuple(slice(0, t) for t in shape)]


class ConvDecoder(nn.Module):
    """Node state (n, d) -> weight blocks (n, o', i', kh', kw') for one group of same-sized targets.

    Shapes:
        h: (n, d); returns (n, min(o, 2d), min(i, 2d), min(kh, s), min(kw, s)).
    """

    def __init__(self, hid: int = 32, max_spatial: int = 11):
        super().__init__()
        self.hid, self.s, self.block = hid, max_spatial, 2 * hid
        self.fc = nn.Linear(hid, 4 * hid * max_spatial * max_spatial)
        self.conv1 = nn.Conv2d(4 * hid, 8 * hid, 1)
        self.conv2 = nn.Conv2d(8 * hid, self.block * self.block, 1)

    def forward(self, h: torch.Tensor, o: int, i: int, kh: int, kw: int) -> torch.Tensor:
        d, s, B = self.hid, self.s, self.block
        o, i, kh, kw = min(o, B), min(i, B), min(kh, s), min(kw, s)
        # fc rows are laid out (4d, s, s): keep the rows of the top-left kh x kw positions only.
        w_fc = self.fc.weight.view(4 * d, s, s, d)[:, :kh, :kw].reshape(-1, d)
        b_fc = self.fc.bias.view(4 * d, s, s)[:, :kh, :kw].reshape(-1)
        x = F.relu(F.linear(h, w_fc, b_fc)).view(-1, 4 * d, kh * kw)             # (n, 4d, P)
        x = F.relu(torch.einsum("ck,nkp->ncp", self.conv1.weight[:, :, 0, 0], x)
                   + self.conv1.bias[None, :, None])                               # (n, 8d, P)
        # conv2 rows are laid out (B out, B in): keep the leading (o, i) block.
        w2 = self.conv2.weight[:, :, 0, 0].view(B, B, 8 * d)[:o, :i].reshape(o * i, 8 * d)
        b2 = self.conv2.bias.view(B, B)[:o, :i].reshape(o * i)
        x = torch.einsum("rc,ncp->nrp", w2, x) + b2[None, :, None]                # (n, o*i, P)
        return x.view(-1, o, i, kh, kw)

    def full(self, h: torch.Tensor) -> torch.Tensor:
        """The whole (n, 2d, 2d, s, s) block, as the reference's first version computed it (for tests)."""
        d, s, B = self.hid, self.s, self.block
        x = F.relu(self.fc(h)).view(-1, 4 * d, s, s)
        x = self.conv2(F.relu(self.conv1(x)))
        return x.view(-1, B, B, s, s)


class Decoder1D(nn.Module):
    """Node state (n, d) -> (n, 2, 2d): row 0 a norm weight (gamma), row 1 a bias (beta or a conv bias)."""

    def __init__(self, hid: int = 32):
        super().__init__()
        self.block = 2 * hid
        self.net = nn.Sequential(nn.Linear(hid, 2 * hid), nn.ReLU(), nn.Linear(2 * hid, 4 * hid))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h).view(-1, 2, self.block)


def weight_scale(shape: tuple[int, ...]) -> float:
    """sqrt(beta / fan_in) for a (>= 2-D) weight of ``shape``, fan_in = numel(w[0]).

    beta = 1 for layers not followed by a ReLU (depthwise convs, the 1x7 half of a 7x1/1x7 pair),
    beta = 2 otherwise (He scaling), as in the reference.
    """
    fan_in = math.prod(shape[1:])
    not_relu = len(shape) == 4 and (shape[1] == 1 or shape[2] < shape[3])
    return math.sqrt((1.0 if not_relu else 2.0) / fan_in)


def normalize_weight(w: torch.Tensor) -> torch.Tensor:
    """Scale a (>= 2-D) predicted weight by :func:`weight_scale` of its shape."""
    return w * weight_scale(tuple(w.shape))


def normalize_norm_weight(p: torch.Tensor) -> torch.Tensor:
    """BN/LN gamma in (0, 2)."""
    return 2 * torch.sigmoid(0.5 * p)


def normalize_bias(p: torch.Tensor) -> torch.Tensor:
    """Biases (BN/LN beta, conv/linear bias) in (-1, 1)."""
    return torch.tanh(0.2 * p)
