"""Speed of one GHN-2 training step: meta-batch of 8 DeepNets-1M nets (widths drawn as §1.2),
64 CIFAR-10 images, forward + backward + Adam, on N CPU threads (or CUDA when --device cuda).

The step's sampling (building 8 meta-device nets and their graphs) is timed apart from the step.
Baseline in the same process: graphs by tracing each net (``Graph.from_module``) instead of
``architecture_graph``.

    python benchmarks/bench_train_step.py [--threads 2] [--steps 20] [--device cpu] [--profile 3]

``--profile N`` profiles N more steps and prints where the time goes, by kind of operator.
"""
from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

import torch

from ghn_core.deepnets import Network, generate_split, sample_width
from ghn_core.graph import Graph
from ghn_core.model import create_ghn
from ghn_core.train import MetaBatch, sample_meta_batch, train_step


def traced_meta_batch(store, rng) -> MetaBatch:
    indices = [rng.randrange(len(store)) for _ in range(8)]
    nets = []
    for i in indices:
        rec = store[i]
        C, fc_dim = sample_width(rng, rec.arch, rec.num_params_cifar10)
        nets.append(Network(rec.arch.with_(fc_dim=fc_dim), C, 10, track_running_stats=False, device="meta"))
    return MetaBatch(indices, nets, [Graph.from_module(n) for n in nets])


# Operator kinds of the breakdown, by substring of the aten op name (first match wins).
OP_KINDS = [("convolution", ("convolution",)), ("attention", ("attention",)),
            ("batch norm", ("batch_norm",)), ("ReLU", ("clamp_min", "threshold", "relu")),
            ("matmul", ("mm", "addmm", "bmm", "linear", "gru")), ("copies", ("copy_", "cat", "index", "repeat"))]


def profile_steps(ghn, opt, store, x, y, steps: int) -> None:
    """Self CPU time of ``steps`` train steps, summed by operator kind."""
    from torch.profiler import profile

    with profile() as prof:
        for k in range(steps):
            meta = sample_meta_batch(store, random.Random(1000 + k), meta_batch=8, max_nodes=2200, num_classes=10)
            train_step(ghn, meta, x, y, optimizer=opt)
    totals = {name: 0.0 for name, _ in OP_KINDS} | {"other": 0.0}
    for e in prof.key_averages():
        if not e.key.startswith("aten::"):
            continue
        kind = next((name for name, keys in OP_KINDS if any(k in e.key for k in keys)), "other")
        totals[kind] += e.self_cpu_time_total / 1e6
    total = sum(totals.values())
    print(f"profile of {steps} steps (self CPU time of aten ops, {total:.1f} s):")
    for name, t in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {name:12s} {t:7.2f} s  {100 * t / total:5.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--width-scale", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="profile N more steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        store = generate_split("train", 5000, tmp, graphs=False, progress=False, workers=1)
        torch.manual_seed(0)
        ghn = create_ghn("ghn2").to(device)
        opt = torch.optim.Adam(ghn.parameters(), lr=1e-3, weight_decay=1e-5)
        x = torch.randn(args.batch_size, 3, 32, 32, device=device)
        y = torch.randint(0, 10, (args.batch_size,), device=device)
        sample_t, step_t, traced_t, nodes = [], [], [], []
        for k in range(args.steps + 2):
            rng = random.Random(k)
            t0 = time.perf_counter()
            meta = sample_meta_batch(store, rng, meta_batch=8, max_nodes=2200, num_classes=10,
                                     width_scale=args.width_scale)
            t1 = time.perf_counter()
            train_step(ghn, meta, x, y, optimizer=opt, amp=device.type == "cuda")
            if device.type == "cuda":
                torch.cuda.synchronize()
            t2 = time.perf_counter()
            traced_meta_batch(store, random.Random(k))
            t3 = time.perf_counter()
            if k >= 2:  # two warm-up steps
                sample_t.append(t1 - t0), step_t.append(t2 - t1), traced_t.append(t3 - t2), nodes.append(meta.num_nodes)
        if args.profile:
            profile_steps(ghn, opt, store, x, y, args.profile)
    med = statistics.median
    print(f"device {device}, {args.threads} threads, torch {torch.__version__}; meta-batch 8, "
          f"{args.batch_size} images, width x{args.width_scale}; median of {args.steps} steps "
          f"(mean {statistics.mean(nodes):.0f} graph nodes)")
    print(f"sampling (8 meta nets + graphs): {med(sample_t):.3f} s   (tracing baseline {med(traced_t):.3f} s, "
          f"{med(traced_t) / med(sample_t):.1f}x)")
    print(f"train step (fwd + bwd + Adam):   {med(step_t):.3f} s")
    print(f"total per step:                  {med(sample_t) + med(step_t):.3f} s")


if __name__ == "__main__":
    main()
