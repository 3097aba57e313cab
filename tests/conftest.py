"""Shared fixtures. The suite needs the CIFAR-10 ImageFolder copy: tests that use it fail with a
message saying how to point at it, rather than skip and pass unnoticed."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    path = Path(os.environ.get("GHN_NAS_DATA") or REPO / "../shared/data/cifar10").resolve()
    if not (path / "train").is_dir() or not (path / "test").is_dir():
        pytest.fail(f"CIFAR-10 ImageFolder copy not found at {path}: set GHN_NAS_DATA to a folder with "
                    f"train/<class>/*.jpg and test/<class>/*.jpg (as README's test command does)")
    return path


@pytest.fixture(scope="session")
def ghn_ckpt(tmp_path_factory) -> str:
    """An untrained GHN-2 checkpoint (seed 0): enough for the search machinery, cheap to load."""
    import torch

    from ghn_core.model import create_ghn, save_checkpoint

    torch.manual_seed(0)
    ghn = create_ghn("ghn2")
    return str(save_checkpoint(tmp_path_factory.mktemp("ghn") / "ghn.pt",
                               {"config": ghn.config.to_dict(), "state_dict": ghn.state_dict()}))


# Small DeepNets-1M nets for training tests: 4-5 cells, at most two nodes per cell, always BN. Train
# and held-out nets come from disjoint hash buckets of the same generator.
TINY = dict(n_cells=(4, 5), steps_shallow=(1, 2), steps_deep=(1, 2), norm="bn")


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory) -> Path:
    """A train split of 1000 tiny nets (no stored graphs)."""
    from ghn_core.deepnets import SplitSpec, generate_split

    out = tmp_path_factory.mktemp("deepnets")
    generate_split(SplitSpec("train", 1000, seed=11, buckets=tuple(range(8, 64)), **TINY), 1000, out,
                   workers=1, graphs=False, progress=False)
    return out
