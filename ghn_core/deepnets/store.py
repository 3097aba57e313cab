"""The on-disk DeepNets-1M store: one HDF5 file per split.

Layout of ``deepnets1m_<split>.h5``::

    attrs: title="DeepNets-1M", format_version, split, spec (JSON of the SplitSpec), target (nets
           asked for), chunk_size, count (nets stored and complete), next_chunk, complete
    arch_json      uint8 (bytes,)   compact JSON of every Architecture, concatenated
    arch_offsets   int64 (count+1,) net i is arch_json[offsets[i]:offsets[i+1]]
    key_hash       int64 (count,)   Architecture.key_hash(), for de-duplication and split checks
    C              int32 (count,)   base width (32 for train/search; drawn by §1.2 for eval splits)
    num_params_cifar10, num_params_imagenet  int64 (count,)  at C=32 with 10 classes

Further per-net ragged arrays (e.g. the precomputed graphs) follow the same pattern: a flat data
set plus an offsets data set, appended chunk by chunk. Rows beyond ``count`` are leftovers of an
interrupted write and are cut off on the next open for writing.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np

from ..errors import StoreError
from .genotype import Architecture
from .network import Network
from .sampler import SplitSpec, get_split

__all__ = ["NetRecord", "DeepNets1M", "StoreWriter", "store_path"]

FORMAT_VERSION = 1
_PER_NET = {"key_hash": np.int64, "C": np.int32, "num_params_cifar10": np.int64, "num_params_imagenet": np.int64}


@dataclass(frozen=True)
class NetRecord:
    """One stored net."""

    arch: Architecture
    key_hash: int
    C: int
    num_params_cifar10: int
    num_params_imagenet: int


def store_path(out_dir: str | Path, split: str) -> Path:
    return Path(out_dir) / f"deepnets1m_{split}.h5"


def _open(path: Path, mode: str) -> h5py.File:
    try:
        f = h5py.File(path, mode)
    except FileNotFoundError:
        raise StoreError(f"no DeepNets-1M store at {path}; create it with "
                         f"`python -m ghn_core.deepnets generate --split SPLIT --n N --out {path.parent}`") from None
    except OSError as err:
        if "already open" in str(err):
            raise StoreError(f"{path} is open elsewhere in this process (a DeepNets1M reader?); "
                             f"close it before writing") from None
        raise StoreError(f"{path} is not a readable HDF5 file ({err}); it may be corrupt: "
                         f"regenerate it with --overwrite") from None
    if f.attrs.get("title") != "DeepNets-1M" and len(f.attrs):
        f.close()
        raise StoreError(f"{path} is an HDF5 file but not a DeepNets-1M store (no title='DeepNets-1M')")
    return f


class DeepNets1M:
    """Read access to one split's store: ``len(store)``, ``store[i] -> NetRecord``, ``store.network(i)``.

    The HDF5 file is opened lazily, so a store object can be handed to DataLoader worker processes.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with _open(self.path, "r") as f:
            if f.attrs.get("format_version") != FORMAT_VERSION:
                raise StoreError(f"{self.path}: store format {f.attrs.get('format_version')!r}, "
                                 f"this ghn-nas reads format {FORMAT_VERSION}")
            self.split = str(f.attrs["split"])
            self.spec = SplitSpec(**{k: tuple(v) if isinstance(v, list) else v
                                     for k, v in json.loads(f.attrs["spec"]).items()})
            self.complete = bool(f.attrs["complete"])
            self._len = int(f.attrs["count"])
        self._file: h5py.File | None = None

    @classmethod
    def open(cls, out_dir: str | Path, split: str) -> "DeepNets1M":
        get_split(split)
        return cls(store_path(out_dir, split))

    def __len__(self) -> int:
        return self._len

    def _f(self) -> h5py.File:
        if self._file is None:
            self._file = _open(self.path, "r")
        return self._file

    def __getitem__(self, i: int) -> NetRecord:
        if not -self._len <= i < self._len:
            raise IndexError(f"net {i} out of range for the {self.split} split of {self._len} nets")
        i %= self._len
        f = self._f()
        start, end = f["arch_offsets"][i: i + 2]
        arch = Architecture.from_json(f["arch_json"][start:end].tobytes())
        return NetRecord(arch, **{k: int(f[k][i]) for k in _PER_NET})

    def network(self, i: int, num_classes: int = 10, *, imagenet: bool = False, **kwargs) -> Network:
        """Build net ``i`` at its stored width (times the split's width multiplier, e.g. WIDE)."""
        rec = self[i]
        C = rec.C * self.spec.width_multiplier_for(imagenet)
        return Network(rec.arch, C, num_classes, imagenet=imagenet, **kwargs)

    def key_hashes(self) -> np.ndarray:
        return self._f()["key_hash"][: self._len]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self):
        return {**self.__dict__, "_file": None}


class StoreWriter:
    """Appends records chunk by chunk; each completed chunk is flushed and counted atomically enough
    that an interrupted run resumes from the last completed chunk.
    """

    def __init__(self, path: Path, spec: SplitSpec, target: int, chunk_size: int, *, overwrite: bool = False):
        self.path = path
        if path.exists() and overwrite:
            path.unlink()
        if path.exists():
            self.f = _open(path, "r+")
            attrs = self.f.attrs
            stored_spec = json.loads(attrs["spec"])
            count, target_then, chunk_then = int(attrs["count"]), int(attrs["target"]), int(attrs["chunk_size"])
            if bool(attrs["complete"]):
                self.f.close()
                raise StoreError(f"{path} already holds the complete {spec.name} split ({count} nets); "
                                 f"pass --overwrite to generate it again")
            if stored_spec != json.loads(json.dumps(asdict(spec))) or (target_then, chunk_then) != (target, chunk_size):
                self.f.close()
                raise StoreError(f"{path} holds an unfinished run with other settings (target {target_then}, "
                                 f"chunk size {chunk_then}); resume it with the same --n, or pass --overwrite")
            self._truncate(int(attrs["count"]))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.f = h5py.File(path, "w")
            a = self.f.attrs
            a["title"], a["format_version"], a["split"] = "DeepNets-1M", FORMAT_VERSION, spec.name
            a["spec"] = json.dumps(asdict(spec))
            a["target"], a["chunk_size"] = target, chunk_size
            a["count"], a["next_chunk"], a["complete"] = 0, 0, False
            opts = dict(maxshape=(None,), compression="gzip", compression_opts=4)
            self.f.create_dataset("arch_json", shape=(0,), dtype=np.uint8, chunks=(1 << 16,), **opts)
            self.f.create_dataset("arch_offsets", data=np.zeros(1, np.int64), chunks=(4096,), **opts)
            for name, dtype in _PER_NET.items():
                self.f.create_dataset(name, shape=(0,), dtype=dtype, chunks=(4096,), **opts)
            self.f.flush()

    @property
    def count(self) -> int:
        return int(self.f.attrs["count"])

    @property
    def next_chunk(self) -> int:
        return int(self.f.attrs["next_chunk"])

    def key_hashes(self) -> np.ndarray:
        return self.f["key_hash"][: self.count]

    def _truncate(self, n: int) -> None:
        offsets = self.f["arch_offsets"]
        offsets.resize((n + 1,))
        self.f["arch_json"].resize((int(offsets[n]),))
        for name in _PER_NET:
            self.f[name].resize((n,))

    def append_chunk(self, records: list[NetRecord], chunk_index: int, complete: bool) -> None:
        n = self.count
        blobs = [r.arch.to_json().encode() for r in records]
        data = np.frombuffer(b"".join(blobs), dtype=np.uint8)
        offsets = self.f["arch_offsets"]
        base = int(offsets[n])
        arch_json = self.f["arch_json"]
        arch_json.resize((base + data.size,))
        arch_json[base:] = data
        offsets.resize((n + len(records) + 1,))
        offsets[n + 1:] = base + np.cumsum([len(b) for b in blobs], dtype=np.int64)
        for name, dtype in _PER_NET.items():
            ds = self.f[name]
            ds.resize((n + len(records),))
            ds[n:] = np.asarray([getattr(r, name) for r in records], dtype=dtype)
        self.f.flush()
        # The counters move only after the data is on disk: a crash before this line loses one chunk.
        self.f.attrs["count"] = n + len(records)
        self.f.attrs["next_chunk"] = chunk_index + 1
        self.f.attrs["complete"] = complete
        self.f.flush()

    def close(self) -> None:
        self.f.close()
