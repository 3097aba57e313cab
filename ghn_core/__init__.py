"""ghn_core: GHN-2 graph hypernetworks, DeepNets-1M, and the image data they train on.

    from ghn_core import load_ghn
    ghn = load_ghn()                 # the checkpoint shipped with ghn-nas
    model = ghn.predict(model)       # every supported parameter predicted in one forward pass
    emb = ghn.embed([m1, m2])        # (2, 32) architecture embeddings
"""
from __future__ import annotations

from pathlib import Path

from .errors import (
    ArchitectureError, CheckpointError, DataError, GhnNasError, GraphError, StoreError, UnsupportedModuleError,
)
from .graph import Graph, GraphBatch
from .model import GHN2, create_ghn

__version__ = "0.1.0"
__all__ = [
    "load_ghn", "shipped_checkpoint", "GHN2", "create_ghn", "Graph", "GraphBatch", "GhnNasError", "DataError",
    "ArchitectureError", "GraphError", "UnsupportedModuleError", "StoreError", "CheckpointError", "__version__",
]

SHIPPED_CHECKPOINT = "ghn2_cifar10.pt"


def shipped_checkpoint() -> Path:
    """Path of the GHN-2 checkpoint that ships inside the package (see its model card beside it)."""
    return Path(__file__).parent / "checkpoints" / SHIPPED_CHECKPOINT


def load_ghn(path: str | Path | None = None, *, device: str = "cpu") -> GHN2:
    """Load a GHN checkpoint (None: the shipped one) in eval mode."""
    from .model import ghn_from_checkpoint
    from .utils import resolve_device

    ghn, _ = ghn_from_checkpoint(shipped_checkpoint() if path is None else path)
    return ghn.to(resolve_device(device)).eval()
