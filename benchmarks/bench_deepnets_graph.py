"""DeepNets-1M graphs: architecture_graph vs tracing a meta Network, nets per second on one thread.

    OMP_NUM_THREADS=1 python benchmarks/bench_deepnets_graph.py --split train --n 200

Both paths get the same nets (the first ``--n`` of chunk 0 of the split) in the same process. The
baseline is what generation would do without the fast path: ``Network(..., device="meta")`` then
``Graph.from_module``; building the module is part of its time. Every pair of graphs is compared.
The fast path's time is also split into its two shared stages (virtual edges, ``Graph.validate``),
timed again on the graphs it produced (best of ``--repeats`` passes, as the fast path). The 1M
estimate assumes two independent worker processes, one per core (generation runs one per core).
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from ghn_core.deepnets import SPLITS, Network
from ghn_core.deepnets.generate import generate_chunk
from ghn_core.deepnets.graph import architecture_graph
from ghn_core.graph import Graph, shortest_path_edges

GOAL_NETS_PER_S = 200      # on 2 cores: 1M nets with graphs in under 90 min


def timed(fn, items) -> tuple[float, list]:
    t0 = time.perf_counter()
    out = [fn(x) for x in items]
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="train", choices=list(SPLITS))
    parser.add_argument("--n", type=int, default=200, help="nets timed (both paths)")
    parser.add_argument("--imagenet", action="store_true", help="ImageNet stems and 224x224 inputs")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--s-max", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3, help="fast-path passes over the nets (best is kept)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    records = generate_chunk(SPLITS[args.split], 0, args.n)
    size = 224 if args.imagenet else 32
    kw = dict(imagenet=args.imagenet)

    def fast(rec):
        return architecture_graph(rec.arch, rec.C, args.num_classes, s_max=args.s_max, **kw)

    def traced(rec):
        net = Network(rec.arch, rec.C, args.num_classes, device="meta", **kw)
        return Graph.from_module(net, (1, 3, size, size), s_max=args.s_max)

    fast(records[0]), traced(records[0])                      # warm up imports and caches
    t_fast = min(timed(fast, records)[0] for _ in range(args.repeats))
    _, fast_graphs = timed(fast, records)
    t_traced, traced_graphs = timed(traced, records)
    mismatches = sum(a != b for a, b in zip(fast_graphs, traced_graphs))

    real = [(g.real_edge_index, g.num_nodes) for g in fast_graphs]
    t_virtual = min(timed(lambda r: shortest_path_edges(*r, args.s_max), real)[0] for _ in range(args.repeats))
    t_validate = min(timed(Graph.validate, fast_graphs)[0] for _ in range(args.repeats))

    n = len(records)
    nodes = np.array([g.num_nodes for g in fast_graphs])
    edges = np.array([g.num_edges for g in fast_graphs])
    rate_fast, rate_traced = n / t_fast, n / t_traced
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, numpy {np.__version__}, "
          f"1 thread")
    print(f"split {args.split}, {n} nets, {'ImageNet 224' if args.imagenet else 'CIFAR 32'}, s_max {args.s_max}: "
          f"nodes mean {nodes.mean():.0f} (max {nodes.max()}), edges incl. virtual mean {edges.mean():.0f}")
    print(f"{'path':<34}{'nets/s':>10}{'ms/net':>10}")
    print(f"{'Network(meta) + Graph.from_module':<34}{rate_traced:>10.1f}{1e3 / rate_traced:>10.2f}")
    print(f"{'architecture_graph':<34}{rate_fast:>10.1f}{1e3 / rate_fast:>10.2f}")
    print(f"{'  of which shortest_path_edges':<34}{'':>10}{1e3 * t_virtual / n:>10.2f}")
    print(f"{'  of which Graph.validate':<34}{'':>10}{1e3 * t_validate / n:>10.2f}")
    print(f"speed-up: {rate_fast / rate_traced:.1f}x; graphs identical: {n - mismatches}/{n}")
    print(f"1M nets on 2 cores: {1e6 / (2 * rate_fast) / 60:.1f} min with architecture_graph "
          f"({2 * rate_fast:.0f} nets/s; goal {GOAL_NETS_PER_S}), "
          f"{1e6 / (2 * rate_traced) / 3600:.1f} h by tracing")
    return 1 if mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
