"""DeepNets-1M generation speed: architectures per second, parameter counts included, with and
without each net's computational graph.

Baselines in the same process: counting parameters the obvious way (building both networks on
the meta device and summing ``numel``), and getting graphs by tracing (``Graph.from_module`` on a
meta ``Network``) instead of ``architecture_graph``.

    python benchmarks/bench_generate.py [--n 20000]
"""
from __future__ import annotations

import argparse
import os
import random
import tempfile
import time

import torch

from ghn_core.deepnets import Network, generate_split
from ghn_core.deepnets.sampler import SPLITS, accepts, rejection_reason, sample_architecture
from ghn_core.graph import Graph


def baseline_rate(n: int, *, graphs: bool) -> float:
    """Nets/s when counts come from built modules (and graphs from tracing), one process."""
    rng, spec = random.Random(0), SPLITS["train"]
    start, done = time.perf_counter(), 0
    while done < n:
        arch = sample_architecture(rng, spec)
        if not accepts(spec, arch) or rejection_reason(arch, 10**12)[0]:  # filters except the size cap
            continue
        nets = [Network(arch, 32, 10, imagenet=imagenet, device="meta") for imagenet in (False, True)]
        if max(sum(p.numel() for p in net.parameters()) for net in nets) > spec.max_params:
            continue
        if graphs:
            Graph.from_module(nets[0])
        done += 1
    return n / (time.perf_counter() - start)


def store_rate(n: int, workers: int, *, graphs: bool) -> float:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        generate_split("train", n, out, workers=workers, graphs=graphs, progress=False, overwrite=True)
        return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000, help="nets per store run")
    parser.add_argument("--baseline-n", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)  # generation is pure Python; one thread per worker process
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}; train split, C=32, 10 classes")
    print(f"{'':48s} {'nets/s':>9s} {'vs baseline':>12s} {'1M nets':>9s}")
    for graphs in (False, True):
        base = baseline_rate(args.baseline_n, graphs=graphs)
        what = "with graphs" if graphs else "no graphs"
        label = "modules + tracing" if graphs else "modules"
        print(f"baseline ({label}), 1 process, {what:12s}     {base:9.1f} {'1.0x':>12s} {1e6 / base / 3600:8.1f}h")
        for workers in (1, 2):
            rate = store_rate(args.n, workers, graphs=graphs)
            print(f"generate_split, {workers} worker(s), {what:12s}            {rate:9.1f} "
                  f"{rate / base:11.1f}x {1e6 / rate / 60:7.1f}min")


if __name__ == "__main__":
    main()
