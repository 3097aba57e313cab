"""Drawing a training step's nets: ``sample_meta_batch`` against the old path that built every drawn net.

``cpu-small`` caps a meta-batch of 8 nets at 1,600 graph nodes, and about a third of the draws go over
and are drawn again. The old path built the (meta-device) modules of every drawn net before checking
the cap; ``sample_meta_batch`` builds the graphs first and the modules of a kept batch only. Both
consume the random stream alike, so they return the same batches (checked here).

    python benchmarks/bench_meta_batch.py --threads 1 --draws 30
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ghn_core.deepnets import DeepNets1M, Network, architecture_graph, generate_split  # noqa: E402
from ghn_core.deepnets.store import store_path  # noqa: E402
from ghn_core.train import PRESETS, MetaBatch, _scaled_width, sample_meta_batch  # noqa: E402


def old_sample_meta_batch(store, rng, *, meta_batch, max_nodes, num_classes, width_scale=1.0, image_size=32,
                          s_max=50) -> MetaBatch:
    """The path before: every drawn net's modules built, then the cap checked."""
    for _ in range(100):
        indices = [rng.randrange(len(store)) for _ in range(meta_batch)]
        nets, graphs = [], []
        for i in indices:
            rec = store[i]
            C, fc_dim = _scaled_width(rng, rec, width_scale)
            arch = rec.arch.with_(fc_dim=fc_dim)
            nets.append(Network(arch, C, num_classes, track_running_stats=False, device="meta"))
            graphs.append(architecture_graph(arch, C, num_classes, image_size=image_size, s_max=s_max))
        batch = MetaBatch(indices, nets, graphs)
        if batch.num_nodes <= max_nodes:
            return batch
    raise RuntimeError("no batch under the cap")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--draws", type=int, default=30)
    parser.add_argument("--nets", type=int, default=2000, help="train-split nets generated to draw from")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = PRESETS["cpu-small"]
    with tempfile.TemporaryDirectory() as tmp:
        generate_split("train", args.nets, tmp, workers=1, graphs=False, progress=False)
        store = DeepNets1M(store_path(tmp, "train"))
        print(f"cpu-small: meta-batch 8, at most {cfg['max_nodes']} nodes, width x{cfg['width_scale']}; "
              f"{args.nets} train nets, {args.draws} draws, {args.threads} thread(s)")
        times, drawn = {}, {}
        for _ in range(2):  # alternate, to share the machine's drift
            for name, fn in (("old (modules of every draw)", old_sample_meta_batch), ("sample_meta_batch", sample_meta_batch)):
                rng = random.Random(0)
                start = time.perf_counter()
                drawn[name] = [fn(store, rng, meta_batch=8, max_nodes=cfg["max_nodes"], num_classes=10,
                                  width_scale=cfg["width_scale"]).indices for _ in range(args.draws)]
                times.setdefault(name, []).append((time.perf_counter() - start) / args.draws)
        for name, ts in times.items():
            print(f"{name:30s} {min(ts):.3f} s per step's draw (best of 2 rounds)")
        old, new = (min(ts) for ts in times.values())
        print(f"speed-up {old / new:.1f}x; same batches: {len(set(map(str, drawn.values()))) == 1}")


if __name__ == "__main__":
    main()
