"""Tensor-shape embedding of GHN-2 (§3.1 of the reference).

Every parameter shape is first made 4-D, ``(out, in, h, w)``; each dimension is looked up in a
vocabulary (channels for out/in, spatial sizes for h/w) and the four embeddings are concatenated.
Parameter-free nodes (all-zero shape) use index 0, "no shape".
"""
from __future__ import annotations

import torch
from torch import nn

from ..graph import canonical_shape

__all__ = ["channel_vocabulary", "spatial_vocabulary", "ShapeEncoder", "canonical_shape"]


def channel_vocabulary(num_classes: int = 10) -> list[int]:
    """{1, 3, num_classes} | {8..56 by 8} | {64..4080 by 16} | {4096..8192 by 32}: 391 sizes for 10 classes."""
    values = {1, 3, num_classes} | set(range(8, 57, 8)) | set(range(64, 4081, 16)) | set(range(4096, 8193, 32))
    return sorted(values)


def spatial_vocabulary(max_spatial: int = 11) -> list[int]:
    """Odd sizes up to ``max_spatial`` plus 14 and 16: 8 sizes for CIFAR (11), 10 for ImageNet (15)."""
    return sorted(set(range(1, max_spatial + 1, 2)) | {14, 16})


class ShapeEncoder(nn.Module):
    """Embeds (N, 4) integer shapes into (N, hid): concat of out, in, h, w embeddings of hid/4 each.

    A size outside the vocabulary maps to the nearest entry at or above it (channels 4-7 -> 8,
    spatial 2 -> 3), and to the last entry beyond the range.
    """

    def __init__(self, hid: int, num_classes: int = 10, max_spatial: int = 11):
        super().__init__()
        if hid % 4:
            raise ValueError(f"expected a hidden size divisible by 4, got {hid} instead")
        self.register_buffer("channels", torch.tensor(channel_vocabulary(num_classes)), persistent=False)
        self.register_buffer("spatial", torch.tensor(spatial_vocabulary(max_spatial)), persistent=False)
        self.embed_channel = nn.Embedding(len(self.channels) + 1, hid // 4)
        self.embed_spatial = nn.Embedding(len(self.spatial) + 1, hid // 4)

    @staticmethod
    def _lookup(values: torch.Tensor, vocab: torch.Tensor) -> torch.Tensor:
        idx = torch.searchsorted(vocab, values).clamp_(max=len(vocab) - 1) + 1
        return torch.where(values > 0, idx, torch.zeros_like(idx))  # 0 = "no shape"

    def forward(self, shapes: torch.Tensor) -> torch.Tensor:
        """shapes: (N, 4) long -> (N, hid)."""
        ch = self._lookup(shapes[:, :2].contiguous(), self.channels)
        sp = self._lookup(shapes[:, 2:].contiguous(), self.spatial)
        return torch.cat([self.embed_channel(ch[:, 0]), self.embed_channel(ch[:, 1]),
                          self.embed_spatial(sp[:, 0]), self.embed_spatial(sp[:, 1])], dim=1)

    def reset_parameters(self) -> None:
        self.embed_channel.reset_parameters()
        self.embed_spatial.reset_parameters()
