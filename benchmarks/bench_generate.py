"""DeepNets-1M generation speed: architectures per second, parameter counts included.

Baseline in the same process: the same sampler and filters, but counting parameters the obvious
way (building both networks on the meta device and summing ``numel``) instead of analytically.

    python benchmarks/bench_generate.py [--n 20000]
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time

import torch

from ghn_core.deepnets import Network, generate_split
from ghn_core.deepnets.sampler import SPLITS, accepts, rejection_reason, sample_architecture


def baseline_rate(n: int) -> float:
    """Nets/s when parameter counts come from building the modules (one process)."""
    rng, spec = random.Random(0), SPLITS["train"]
    start, done = time.perf_counter(), 0
    while done < n:
        arch = sample_architecture(rng, spec)
        if not accepts(spec, arch) or arch.disconnection():
            continue
        counts = [sum(p.numel() for p in Network(arch, 32, 10, imagenet=imagenet, device="meta").parameters())
                  for imagenet in (False, True)]
        done += max(counts) <= spec.max_params
    return n / (time.perf_counter() - start)


def store_rate(n: int, workers: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        generate_split("train", n, out, workers=workers, progress=False, overwrite=True)
        return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--baseline-n", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)  # generation is pure Python; one thread per worker process
    base = baseline_rate(args.baseline_n)
    one = store_rate(args.n, 1)
    two = store_rate(args.n, 2)
    print(f"baseline (meta-module param counts, 1 process): {base:8.1f} nets/s")
    print(f"ghn-nas generate, 1 worker, HDF5 store:          {one:8.1f} nets/s  ({one / base:.1f}x baseline)")
    print(f"ghn-nas generate, 2 workers, HDF5 store:         {two:8.1f} nets/s  ({two / base:.1f}x baseline)")
    print(f"1M train nets at 2 workers: {1e6 / two / 60:.1f} min")


if __name__ == "__main__":
    main()
