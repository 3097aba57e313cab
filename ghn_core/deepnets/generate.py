"""Generate a DeepNets-1M split into its store, in parallel, resumably.

Work is cut into chunks of ``chunk_size`` accepted nets. Chunk ``k`` of a split draws from its own
``random.Random`` seeded by (split seed, k), so chunks are independent (workers make them in any
order) and the split is the same whatever the number of workers. The writer takes chunks in order,
drops nets whose key it has already stored, and stops at the target count; a killed run resumes
at the first chunk not yet written.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import random
from dataclasses import replace
from pathlib import Path

from tqdm.auto import tqdm

from .graph import architecture_graph
from .sampler import SplitSpec, accepts, get_split, rejection_reason, sample_architecture, sample_width
from .store import DeepNets1M, NetRecord, StoreWriter, graph_rows, store_path

__all__ = ["generate_chunk", "generate_split", "DEFAULT_CHUNK_SIZE"]

log = logging.getLogger(__name__)
DEFAULT_CHUNK_SIZE = 250


def chunk_rng(spec: SplitSpec, chunk_index: int) -> random.Random:
    return random.Random(spec.seed * 1_000_003 + chunk_index)


def generate_chunk(spec: SplitSpec, chunk_index: int, chunk_size: int = DEFAULT_CHUNK_SIZE, *,
                   graphs: bool = False, s_max: int = 50) -> list[NetRecord]:
    """The ``chunk_size`` nets of chunk ``chunk_index``: sampled, filtered, counted (and widths drawn);
    with ``graphs``, also the CIFAR-10 graph of each net at its stored width."""
    rng = chunk_rng(spec, chunk_index)
    records: list[NetRecord] = []
    while len(records) < chunk_size:
        arch = sample_architecture(rng, spec)
        if not accepts(spec, arch):
            continue
        reason, cifar, imagenet = rejection_reason(arch, spec.max_params)
        if reason is not None:
            continue
        C = 32
        if spec.sample_width:
            C, fc_dim = sample_width(rng, arch, cifar)
            arch = replace(arch, fc_dim=fc_dim)
        graph = None
        if graphs:
            graph = graph_rows(architecture_graph(arch, C * spec.width_multiplier_for(False), 10, s_max=s_max))
        records.append(NetRecord(arch, arch.key_hash(), C, cifar, imagenet, graph))
    return records


def _chunk_job(args: tuple[SplitSpec, int, int, bool]) -> tuple[int, list[NetRecord]]:
    spec, k, size, graphs = args
    return k, generate_chunk(spec, k, size, graphs=graphs)


def generate_split(split: str | SplitSpec, n: int | None, out_dir: str | Path, *, workers: int | None = None,
                   chunk_size: int = DEFAULT_CHUNK_SIZE, graphs: bool = True, overwrite: bool = False,
                   progress: bool = True) -> DeepNets1M:
    """Generate ``n`` nets of a split (default: the published size) into ``out_dir``; resume if unfinished.

    With ``graphs`` (default) the store keeps each net's computational graph (see ``DeepNets1M.graph``).
    """
    spec = get_split(split) if isinstance(split, str) else split
    n = spec.size if n is None else n
    if n < 1:
        raise ValueError(f"expected a positive number of nets, got n={n} instead")
    workers = workers or os.cpu_count() or 1
    path = store_path(out_dir, spec.name)
    writer = StoreWriter(path, spec, n, chunk_size, graphs=graphs, overwrite=overwrite)
    seen = set(writer.key_hashes().tolist())
    start_count, start_chunk = writer.count, writer.next_chunk
    if start_count:
        log.info("resuming %s at net %d (chunk %d)", path, start_count, start_chunk)
    bar = tqdm(total=n, initial=start_count, desc=f"deepnets1m {spec.name}", unit="net", disable=not progress)
    pool = mp.get_context("fork" if os.name == "posix" else "spawn").Pool(workers) if workers > 1 else None
    try:
        count, k = start_count, start_chunk
        while count < n:
            # Bounded rounds: Pool.imap would otherwise queue an endless job stream all at once.
            round_size = min(4 * workers, -(-(n - count) // chunk_size))
            jobs = [(spec, j, chunk_size, graphs) for j in range(k, k + round_size)]
            k += round_size
            for j, records in (pool.imap(_chunk_job, jobs) if pool else map(_chunk_job, jobs)):
                fresh = []
                for rec in records:
                    if rec.key_hash not in seen and count + len(fresh) < n:
                        seen.add(rec.key_hash)
                        fresh.append(rec)
                count += len(fresh)
                writer.append_chunk(fresh, j, complete=count >= n)
                bar.update(len(fresh))
                if count >= n:
                    break
    finally:
        if pool:
            pool.terminate()
        bar.close()
        writer.close()
    return DeepNets1M(path)
