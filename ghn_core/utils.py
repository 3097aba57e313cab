"""Small helpers shared across ghn_core: devices and seeds."""
from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` (CUDA when present, else CPU) or any torch device spec into a device."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"expected a device such as 'auto', 'cpu' or 'cuda:0', got {device!r} instead") from err


def torch_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` seeded with ``seed``; seeds are required, never None."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"expected an int seed, got {seed!r} instead")
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen
