"""GHN checkpoints: atomic writes, safe loads, and the record that travels with the weights.

A checkpoint is a plain dict saved with ``torch.save``::

    {"format": "ghn-nas/ghn", "version": 1, "config": GHN2Config as dict, "state_dict": ...,
     "train": {training arguments, data, step count, ...}, "metrics": {...},
     "optimizer": ..., "scheduler": ..., "rng": ...}   # the last three only in resumable files

Loading uses ``weights_only=True``, so a checkpoint cannot run code.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from .config import GHN2Config
from .ghn import GHN2

__all__ = ["save_checkpoint", "read_checkpoint", "ghn_from_checkpoint", "clean_state_dict", "state_hash"]

FORMAT = "ghn-nas/ghn"
VERSION = 1


def clean_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip the ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes wrappers add."""
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def state_hash(state: dict[str, torch.Tensor]) -> str:
    """A short content hash of a state dict (recorded with embeddings and studies)."""
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (with format tags added) to ``path`` atomically: temp file, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, **payload}
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a checkpoint is an ordinary shared file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and check a GHN checkpoint; any problem is a :class:`CheckpointError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no GHN checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"{path} is not a readable GHN checkpoint (corrupt or not a torch file): "
                              f"{type(err).__name__}: {err}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a torch file but not a ghn-nas GHN checkpoint "
                              f"(expected format {FORMAT!r})")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')!r}; "
                              f"this ghn-nas reads version {VERSION}")
    for key in ("config", "state_dict"):
        if key not in payload:
            raise CheckpointError(f"{path}: checkpoint has no {key!r}")
    return payload


def ghn_from_checkpoint(path: str | Path) -> tuple[GHN2, dict[str, Any]]:
    """Rebuild the GHN from the config stored in the checkpoint and load its weights."""
    payload = read_checkpoint(path)
    try:
        config = GHN2Config.from_dict(payload["config"])
        ghn = GHN2(config)
        ghn.load_state_dict(clean_state_dict(payload["state_dict"]))
    except (ValueError, RuntimeError, TypeError) as err:
        raise CheckpointError(f"{path}: weights do not fit the stored config: {err}") from None
    return ghn, payload
