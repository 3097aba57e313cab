"""GHN configurations: one dataclass, and a table of named variants (``create_ghn("ghn2")``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Callable

from ..utils import lookup

__all__ = ["GHN2Config", "VARIANTS", "get_config", "list_ghns"]


@dataclass(frozen=True)
class GHN2Config:
    """Everything needed to build a :class:`~ghn_core.model.GHN2`; stored in every checkpoint.

    ``max_spatial`` sets the decoder block (2*hid, 2*hid, s, s): 11 for CIFAR, 16 for ImageNet.
    """

    variant: str = "ghn2"
    hid: int = 32
    num_classes: int = 10
    max_spatial: int = 11
    image_size: int = 32           # input side the GHN traces networks at (32 CIFAR, 224 ImageNet)
    num_op_types: int = 0          # 0: the graph vocabulary's size at build time
    gnn: str = "gatedgnn"          # "gatedgnn" or "mlp" (no message passing: the MLP ablation)
    virtual_edges: int = 50        # s_max; 0 turns virtual edges off (GHN-1)
    layernorm: bool = True         # LayerNorm on the final node states
    weight_norm: bool = True       # operation-dependent normalisation of predicted tensors

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GHN2Config":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown GHN config fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


def _ghn2(**kw) -> GHN2Config:
    """The paper's GHN-2: hid 32, virtual edges up to 50 hops, LayerNorm, normalisation."""
    return GHN2Config(variant="ghn2", **kw)


def _ghn1(**kw) -> GHN2Config:
    """GHN-1 as re-implemented in the paper: no virtual edges, no LayerNorm, no normalisation."""
    return GHN2Config(variant="ghn1", virtual_edges=0, layernorm=False, weight_norm=False, **kw)


def _mlp(**kw) -> GHN2Config:
    """The MLP ablation: GHN-2 with a per-node MLP in place of message passing."""
    return GHN2Config(variant="mlp", gnn="mlp", **kw)


VARIANTS: dict[str, Callable[..., GHN2Config]] = {"ghn2": _ghn2, "ghn1": _ghn1, "mlp": _mlp}


def list_ghns() -> list[str]:
    return sorted(VARIANTS)


def get_config(variant: str = "ghn2", **overrides: Any) -> GHN2Config:
    """The config of a named variant, with overrides (e.g. ``max_spatial=16`` for ImageNet)."""
    config = lookup(VARIANTS, variant, "GHN variant")()
    known = {f.name for f in fields(GHN2Config)} - {"variant"}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown GHN config fields {sorted(unknown)}; known: {sorted(known)}")
    return replace(config, **overrides)
