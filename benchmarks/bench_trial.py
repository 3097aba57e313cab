"""Time of one search trial with the GHN proxies sharing one trace and one prediction, against the
old path (``ProxyContext.share=False``: every GHN proxy traces and predicts the net again), in one
process on N CPU threads.

Two objectives: ``robust`` (ghn_robustness alone: one trace either way, so the ratio is ~1) and
``multi`` (ghn_robustness, latency_b1, trainability: two GHN proxies, so the old path traces and
predicts twice). Each trial rebuilds the same NB201 nets with the same seed; the two paths alternate
so that load from other processes hits both alike. The GHN is GHN-2 at its default size, randomly
initialised (speed does not depend on its weights).

    python benchmarks/bench_trial.py [--threads 2] [--repeats 5] [--n-images 512]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import optuna
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ghn_core.model import create_ghn  # noqa: E402
from nas.proxies import ProxyContext  # noqa: E402
from nas.search import make_objective  # noqa: E402
from nas.space import get_space  # noqa: E402

OBJECTIVES = {"robust": ["ghn_robustness"], "multi": ["ghn_robustness", "latency_b1", "trainability"]}
CELLS = ["|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|",
         "|nor_conv_1x1~0|+|skip_connect~0|avg_pool_3x3~1|+|nor_conv_3x3~0|none~1|skip_connect~2|"]


def _params(cell: str) -> dict[str, str]:
    ops = [edge.split("~")[0] for node in cell.strip("|").split("|+|") for edge in node.split("|")]
    return {f"edge_{i}_{j}": op for (i, j), op in zip([(i, j) for j in range(1, 4) for i in range(j)], ops)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n-images", type=int, default=512)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=list(OBJECTIVES))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ctx = ProxyContext.from_data(create_ghn("ghn2"), n_images=args.n_images, seed=0, data_dir=args.data_dir,
                                 device="cpu")
    space = get_space("nb201")
    results = {}
    for name in args.objectives:
        proxies = OBJECTIVES[name]
        objective = make_objective(space, proxies, ctx)
        times = {True: [], False: []}
        for r in range(args.repeats + 1):  # the first round warms up
            for share in (True, False) if r % 2 else (False, True):
                ctx.share = share
                start = time.perf_counter()
                for cell in CELLS:
                    torch.manual_seed(0)
                    objective(optuna.trial.FixedTrial(_params(cell)))
                if r:
                    times[share].append((time.perf_counter() - start) / len(CELLS))
        new, old = statistics.median(times[True]), statistics.median(times[False])
        results[name] = {"proxies": proxies, "shared_s": new, "old_s": old, "old_over_shared": old / new,
                         "shared_all_s": times[True], "old_all_s": times[False]}
        print(f"{name:7s} ({', '.join(proxies)}): shared {new:.3f} s/trial, old {old:.3f} s/trial, "
              f"old/shared {old / new:.2f}x (median of {args.repeats}, {args.threads} threads; "
              f"all rounds: shared {[round(t, 2) for t in times[True]]}, old {[round(t, 2) for t in times[False]]})")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "n_images": args.n_images, **results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
