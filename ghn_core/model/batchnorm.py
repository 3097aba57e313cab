"""BatchNorm of networks with predicted parameters: batch statistics, or calibrated running ones."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

__all__ = ["use_batch_statistics", "calibrate_bn"]


def _bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def use_batch_statistics(model: nn.Module) -> nn.Module:
    """Make every BatchNorm layer normalise with the statistics of the current batch, in train and
    eval mode alike (the GHN-2 evaluation protocol): running statistics are dropped."""
    for bn in _bn_layers(model):
        bn.track_running_stats = False
        bn.running_mean = bn.running_var = bn.num_batches_tracked = None
    return model


@torch.no_grad()
def calibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor], *, max_batches: int = 10) -> nn.Module:
    """Recompute BatchNorm running statistics from a few input batches, so ``model.eval()`` uses them.

    Each BN layer gets fresh running buffers, accumulated as an exact average over the batches
    (momentum None); the model is left in eval mode.
    """
    layers = _bn_layers(model)
    for bn in layers:
        device = bn.weight.device if bn.weight is not None else None
        bn.track_running_stats = True
        bn.running_mean = torch.zeros(bn.num_features, device=device)
        bn.running_var = torch.ones(bn.num_features, device=device)
        bn.num_batches_tracked = torch.tensor(0, dtype=torch.long, device=device)
        bn.momentum = None
    model.train()
    seen = 0
    for x in batches:
        if seen == max_batches:
            break
        model(x)
        seen += 1
    if seen == 0 and layers:
        raise ValueError("calibrate_bn: expected at least one input batch, got none")
    return model.eval()
