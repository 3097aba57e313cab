"""The on-disk DeepNets-1M store: one HDF5 file per split.

Layout of ``deepnets1m_<split>.h5``::

    attrs: title="DeepNets-1M", format_version, split, spec (JSON of the SplitSpec), target (nets
           asked for), chunk_size, count (nets stored and complete), next_chunk, complete
    key_hash       int64 (count,)   Architecture.key_hash(), for de-duplication and split checks
    C              int32 (count,)   base width (32 for train/search; drawn by §1.2 for eval splits)
    num_params_cifar10, num_params_imagenet  int64 (count,)  at C=32 with 10 classes
    arch_json      ragged uint8     compact JSON of each Architecture
    graph/...      ragged           (stores made with graphs) the CIFAR-10 graph of each net as built
                                    by ``store.network(i)``: node_op, param_shape (N*4), node_is_classifier,
                                    edge_src/edge_dst (real edges; virtual ones are recomputed on
                                    load), node_name and node_bias_name ('\n'-joined names)

A ragged field ``X`` is a flat data set ``X`` plus ``X_offsets`` (count+1,): net i owns
``X[X_offsets[i]:X_offsets[i+1]]``. Rows beyond ``count`` are leftovers of an interrupted write
and are cut off on the next open for writing.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


import h5py
import numpy as np

from ..errors import StoreError
from ..graph import Graph
from .genotype import Architecture
from .network import Network
from .sampler import SplitSpec, get_split

__all__ = ["NetRecord", "DeepNets1M", "StoreWriter", "store_path", "graph_rows"]

# 2: ragged fields X + X_offsets, optional graphs. 3: nets as built by the reference's stem and
# reduction rules (ks-sized first DARTS stem conv, C-wide bias-free ViT stem, no reduction at cell 0):
# parameter counts, graphs and key hashes (hence split membership) of format-2 stores are stale.
FORMAT_VERSION = 3
_PER_NET = {"key_hash": np.int64, "C": np.int32, "num_params_cifar10": np.int64, "num_params_imagenet": np.int64}
# Ragged fields of a stored graph, and how Graph.to_arrays() values map onto them.
_GRAPH_FIELDS = {"node_op": np.uint8, "param_shape": np.int32, "node_is_classifier": np.uint8,
                 "edge_src": np.int32, "edge_dst": np.int32, "node_name": np.uint8, "node_bias_name": np.uint8}
_RAGGED = {"arch_json": np.uint8, **{f"graph/{k}": v for k, v in _GRAPH_FIELDS.items()}}


def graph_rows(graph: Graph) -> dict[str, np.ndarray]:
    """A graph as the flat per-net rows of the store's ragged ``graph/`` fields."""
    a = graph.to_arrays()
    rows = {k: a[k].reshape(-1) for k in ("node_op", "param_shape", "node_is_classifier", "node_name",
                                           "node_bias_name")}
    rows["edge_src"], rows["edge_dst"] = a["edge_index"][0], a["edge_index"][1]
    return rows


@dataclass(frozen=True)
class NetRecord:
    """One stored net."""

    arch: Architecture
    key_hash: int
    C: int
    num_params_cifar10: int
    num_params_imagenet: int
    graph: dict[str, np.ndarray] | None = field(default=None, compare=False, repr=False)  # graph_rows()


def store_path(out_dir: str | Path, split: str) -> Path:
    """The file of split ``split`` in folder ``out_dir``: the one place the store's file name is spelt."""
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


def _format_version(f: h5py.File) -> int | None:
    version = f.attrs.get("format_version")
    return None if version is None else int(version)


def _ragged_row(f: h5py.File, name: str, i: int) -> np.ndarray:
    start, end = f[f"{name}_offsets"][i: i + 2]
    return f[name][start:end]


class DeepNets1M:
    """Read access to one split's store: ``len(store)``, ``store[i] -> NetRecord``, ``store.network(i)``.

    The HDF5 file is opened lazily, so a store object can be handed to DataLoader worker processes.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with _open(self.path, "r") as f:
            version = _format_version(f)
            if version != FORMAT_VERSION:
                raise StoreError(f"{self.path}: store format {version}, this ghn-nas reads format "
                                 f"{FORMAT_VERSION}; regenerate it with --overwrite")
            self.split = str(f.attrs["split"])
            self.spec = SplitSpec(**{k: tuple(v) if isinstance(v, list) else v
                                     for k, v in json.loads(f.attrs["spec"]).items()})
            self.complete = bool(f.attrs["complete"])
            self._len = int(f.attrs["count"])
            self.has_graphs = "graph" in f
            self.s_max = int(f.attrs.get("s_max", 50))
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
        arch = Architecture.from_json(_ragged_row(f, "arch_json", i).tobytes())
        return NetRecord(arch, **{k: int(f[k][i]) for k in _PER_NET})

    def graph(self, i: int, *, s_max: int | None = None) -> Graph:
        """The stored CIFAR-10 graph of net ``i`` (as built by ``network(i)``), virtual edges recomputed."""
        if not self.has_graphs:
            raise StoreError(f"{self.path} was generated without graphs; build them with "
                             f"ghn_core.deepnets.graph.architecture_graph, or regenerate with graphs")
        if not -self._len <= i < self._len:
            raise IndexError(f"net {i} out of range for the {self.split} split of {self._len} nets")
        f = self._f()
        row = {k: _ragged_row(f, f"graph/{k}", i % self._len) for k in _GRAPH_FIELDS}
        arrays = {**{k: row[k] for k in ("node_op", "node_is_classifier", "node_name", "node_bias_name")},
                  "param_shape": row["param_shape"].reshape(-1, 4),
                  "edge_index": np.stack([row["edge_src"], row["edge_dst"]]), "s_max": np.asarray(self.s_max)}
        return Graph.from_arrays(arrays, s_max=s_max)

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

    def __init__(self, path: Path, spec: SplitSpec, target: int, chunk_size: int, *, graphs: bool = True,
                 s_max: int = 50, overwrite: bool = False):
        self.path = path
        if path.exists() and overwrite:
            path.unlink()
        if path.exists():
            self.f = _open(path, "r+")
            attrs = self.f.attrs
            version = _format_version(self.f)
            if version != FORMAT_VERSION:
                self.f.close()
                raise StoreError(f"{path}: store format {version}, this ghn-nas writes "
                                 f"format {FORMAT_VERSION}; pass --overwrite to generate it again")
            stored_spec = json.loads(attrs["spec"])
            count, target_then, chunk_then = int(attrs["count"]), int(attrs["target"]), int(attrs["chunk_size"])
            if bool(attrs["complete"]):
                self.f.close()
                raise StoreError(f"{path} already holds the complete {spec.name} split ({count} nets); "
                                 f"pass --overwrite to generate it again")
            graphs_then = "graph" in self.f
            if (stored_spec != json.loads(json.dumps(asdict(spec))) or (target_then, chunk_then) != (target, chunk_size)
                    or graphs_then != graphs):
                self.f.close()
                raise StoreError(f"{path} holds an unfinished run with other settings (target {target_then}, "
                                 f"chunk size {chunk_then}, graphs {graphs_then}); resume it with the same "
                                 f"settings, or pass --overwrite")
            self._truncate(int(attrs["count"]))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.f = h5py.File(path, "w")
            a = self.f.attrs
            a["title"], a["format_version"], a["split"] = "DeepNets-1M", FORMAT_VERSION, spec.name
            a["spec"] = json.dumps(asdict(spec))
            a["target"], a["chunk_size"] = target, chunk_size
            a["count"], a["next_chunk"], a["complete"], a["s_max"] = 0, 0, False, s_max
            opts = dict(maxshape=(None,), compression="gzip", compression_opts=4)
            for name, dtype in _PER_NET.items():
                self.f.create_dataset(name, shape=(0,), dtype=dtype, chunks=(4096,), **opts)
            for name, dtype in _RAGGED.items():
                if name.startswith("graph/") and not graphs:
                    continue
                self.f.create_dataset(name, shape=(0,), dtype=dtype, chunks=(1 << 16,), **opts)
                self.f.create_dataset(f"{name}_offsets", data=np.zeros(1, np.int64), chunks=(4096,), **opts)
            self.f.flush()
        self.graphs = "graph" in self.f

    @property
    def count(self) -> int:
        return int(self.f.attrs["count"])

    @property
    def next_chunk(self) -> int:
        return int(self.f.attrs["next_chunk"])

    def key_hashes(self) -> np.ndarray:
        return self.f["key_hash"][: self.count]

    def _ragged_names(self) -> list[str]:
        return [name for name in _RAGGED if name in self.f]

    def _truncate(self, n: int) -> None:
        for name in _PER_NET:
            self.f[name].resize((n,))
        for name in self._ragged_names():
            offsets = self.f[f"{name}_offsets"]
            offsets.resize((n + 1,))
            self.f[name].resize((int(offsets[n]),))

    def _append_ragged(self, name: str, rows: list[np.ndarray], n: int) -> None:
        data, offsets = self.f[name], self.f[f"{name}_offsets"]
        base = int(offsets[n])
        flat = np.concatenate(rows) if rows else np.zeros(0, data.dtype)
        data.resize((base + flat.size,))
        data[base:] = flat
        offsets.resize((n + len(rows) + 1,))
        offsets[n + 1:] = base + np.cumsum([r.size for r in rows], dtype=np.int64)

    def append_chunk(self, records: list[NetRecord], chunk_index: int, complete: bool) -> None:
        n = self.count
        for name, dtype in _PER_NET.items():
            ds = self.f[name]
            ds.resize((n + len(records),))
            ds[n:] = np.asarray([getattr(r, name) for r in records], dtype=dtype)
        self._append_ragged("arch_json", [np.frombuffer(r.arch.to_json().encode(), np.uint8) for r in records], n)
        if self.graphs:
            missing = [r.arch.key_hash() for r in records if r.graph is None]
            if missing:
                raise StoreError(f"{self.path} keeps graphs, but {len(missing)} records came without one")
            for k, dtype in _GRAPH_FIELDS.items():
                self._append_ragged(f"graph/{k}", [np.asarray(r.graph[k], dtype=dtype) for r in records], n)
        self.f.flush()
        # The counters move only after the data is on disk: a crash before this line loses one chunk.
        self.f.attrs["count"] = n + len(records)
        self.f.attrs["next_chunk"] = chunk_index + 1
        self.f.attrs["complete"] = complete
        self.f.flush()

    def close(self) -> None:
        self.f.close()
