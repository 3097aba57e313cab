"""GHN checkpoints: atomic writes, safe loads, and the record that travels with the weights.

A checkpoint is a plain dict saved with ``torch.save``::

    {"format": "ghn-nas/ghn", "version": 1, "config": GHN2Config as dict, "state_dict": ...,
     "train": {training arguments, data, step count, ...}, "metrics": {...},
     "optimizer": ...,    # only in resumable (training) files
     "checksum": ...}     # sha256 of everything above; files written before it existed lack it

Loading uses ``weights_only=True``, so a checkpoint cannot run code. Writes are atomic (temp file,
fsync, rename), so a killed writer leaves the old file whole and at most a stray ``*.tmp``; the
checksum catches what the zip container does not (torch checks no CRC on load, so a flipped byte
inside a tensor would otherwise load silently).
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch

from ..errors import CheckpointError
from .config import GHN2Config
from .ghn import GHN2

__all__ = ["save_checkpoint", "read_checkpoint", "ghn_from_checkpoint", "clean_state_dict", "state_hash",
           "remove_partial_writes"]

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


def _walk(obj: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """(path, leaf) pairs of a nested payload in a fixed order (dict keys sorted)."""
    if isinstance(obj, dict):
        for k in sorted(obj, key=str):
            yield from _walk(obj[k], f"{key}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{key}/{i}")
    else:
        yield key, obj


def payload_checksum(payload: dict[str, Any]) -> str:
    """sha256 over every value of ``payload`` but its own ``checksum`` (tensors by their bytes)."""
    h = hashlib.sha256()
    for key, value in _walk({k: v for k, v in payload.items() if k != "checksum"}):
        h.update(key.encode())
        if isinstance(value, torch.Tensor):
            h.update(str(value.dtype).encode())
            h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            h.update(repr(value).encode())
    return h.hexdigest()


def save_checkpoint(path: str | Path, payload: dict[str, Any], *, previous: str | Path | None = None) -> Path:
    """Write ``payload`` (with format tags and a checksum added) to ``path`` atomically: temp file,
    fsync, rename. With ``previous``, the file already at ``path`` is first renamed to ``previous``,
    so that a checkpoint later found unreadable has a whole one to fall back on.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, **payload}
    payload["checksum"] = payload_checksum(payload)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a checkpoint is an ordinary shared file
        if previous is not None and path.exists():
            # A kill between these two renames leaves no `path`, and readers fall back to `previous`.
            os.replace(path, previous)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_partial_writes(path: str | Path) -> list[Path]:
    """Delete the temp files that writers of ``path`` killed mid-write left behind; returns them.

    Only for a file no live process is writing (e.g. a training run's own checkpoint at start).
    """
    path = Path(path)
    stray = sorted(path.parent.glob(path.name + ".*.tmp"))
    for tmp in stray:
        tmp.unlink(missing_ok=True)
    return stray


def _load_failure(err: Exception) -> str:
    """torch.load's reason, in one line and without its advice (which, for a file a safe load refuses,
    is to load it unsafely)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    if "WeightsUnpickler error:" in text:  # the unpickler's own reason follows torch's advice
        text = text.split("WeightsUnpickler error:", 1)[1]
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if first.startswith("Unsupported global"):
        name = first.split(" was not an allowed global")[0]
        return f"(it holds objects a safe load refuses: {name}; a GHN checkpoint holds only tensors and plain values)"
    first = first.split(". ")[0].rstrip(".")
    return f"(corrupt or not a torch file): {type(err).__name__}" + (f": {first}" if first else "")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and check a GHN checkpoint; any problem is a :class:`CheckpointError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no GHN checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"{path} is not a readable GHN checkpoint {_load_failure(err)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a torch file but not a ghn-nas GHN checkpoint "
                              f"(expected format {FORMAT!r})")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')!r}; "
                              f"this ghn-nas reads version {VERSION}")
    for key in ("config", "state_dict"):
        if key not in payload:
            raise CheckpointError(f"{path}: checkpoint has no {key!r}")
    if "checksum" in payload and payload["checksum"] != payload_checksum(payload):
        raise CheckpointError(f"{path} is corrupt: its contents do not match the checksum stored with them")
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
    bad = [name for name, p in ghn.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()]
    if bad:
        raise CheckpointError(f"{path}: {len(bad)} weight tensors hold NaN or Inf (first: {bad[0]}); "
                              f"the run that wrote it diverged or the file is damaged")
    return ghn, payload
