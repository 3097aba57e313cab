"""The GHN-2 hypernetwork: config and variants, model, checkpoints, BatchNorm helpers."""
from .batchnorm import calibrate_bn, use_batch_statistics
from .checkpoint import ghn_from_checkpoint, read_checkpoint, save_checkpoint
from .config import GHN2Config, get_config, list_ghns
from .ghn import GHN2, ParamTarget, param_targets

__all__ = [
    "GHN2", "GHN2Config", "ParamTarget", "param_targets", "get_config", "list_ghns", "create_ghn",
    "save_checkpoint", "read_checkpoint", "ghn_from_checkpoint", "calibrate_bn", "use_batch_statistics",
]


def create_ghn(variant: str = "ghn2", **overrides) -> GHN2:
    """A freshly initialised GHN of a named variant (``list_ghns()``), e.g. ``create_ghn("ghn2")``."""
    from ..graph import OP_NAMES

    overrides.setdefault("num_op_types", len(OP_NAMES))
    return GHN2(get_config(variant, **overrides))
