"""``nas.benchmark`` at full-table scale: the 15,625 NAS-Bench-201 strings, the default proxies.

    python benchmarks/bench_full_table.py [--seeds 5] [--threads 2] [--per-net 10] [--n N] [--out DIR]

Runs ``python -m nas.benchmark`` (its ``main``, in this process) on a pool of all 15,625 NB201
strings with the default proxies (params, naswot, synflow, ghn_accuracy) and ``--seeds`` seeds, in a
fresh proxy store, then the same command again on the filled store. The pool's labels are a stand-in
(a seeded uniform draw per string): this measures time only, never quality (the real full table is
kept aside). ``--n``: a seeded sample of the strings instead (a quick check of the script).

Baseline, in the same process: before, every proxy ran on every distinct net of the pool. Running that
takes hours, so it is estimated as each proxy's seconds per net (measured here on ``--per-net`` seeded
cells, fresh nets each) times the pool's distinct nets; the nets each proxy was computed on in the run
are counted from its store. Also: NASWOT's kernel from all ReLU codes concatenated in float64 (the
textbook formula, as before) against ``nas.proxies.naswot`` (per ReLU, exact float32) on the same
cells, whose values must be equal (exit 1 otherwise).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ghn_core import load_ghn
from ghn_core.errors import GraphError
from ghn_core.graph.nb201 import nb201_graph
from ghn_core.nb201 import NB201_OPS, cell_key, format_arch
from nas.benchmark import PROXY_SAMPLE, ZERO_COST, looked_at, main as benchmark_main
from nas.label import build_architecture
from nas.proxies import ProxyContext, compute, naswot

PROXIES = (*ZERO_COST, "ghn_accuracy")


def all_strings() -> list[str]:
    return [format_arch((ops[:1], ops[1:3], ops[3:6])) for ops in itertools.product(NB201_OPS, repeat=6)]


@torch.no_grad()
def naswot_concatenated(model: nn.Module, ctx: ProxyContext) -> float:
    """NASWOT as before: every ReLU's codes in one float64 matrix, two products."""
    model = model.to(ctx.device).train()
    codes = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: codes.append((out > 0).flatten(1).float()))
             for m in model.modules() if isinstance(m, nn.ReLU)]
    model(ctx.images[: ctx.batch_size])
    for h in hooks:
        h.remove()
    c = torch.cat(codes, 1).double()
    return float(torch.slogdet(c @ c.t() + (1 - c) @ (1 - c).t())[1])


def has_path(arch: str) -> bool:
    """Whether the cell's output depends on its input (a net without a path has no proxy value)."""
    try:
        nb201_graph(arch)
    except GraphError:
        return False
    return True


def timed(fn, *args) -> tuple[float, float]:
    t = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--per-net", type=int, default=10, help="cells timed per proxy for the baseline")
    parser.add_argument("--n", type=int, default=None, help="a seeded sample of this many strings (default: all)")
    parser.add_argument("--out", default="benchmarks/full_table", help="folder for result.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data_dir = os.environ.get("GHN_NAS_DATA")
    archs = all_strings()
    if args.n:
        archs = [archs[i] for i in sorted(np.random.default_rng(1).choice(len(archs), args.n, replace=False))]
    distinct = len({cell_key(a) for a in archs})
    result = {"setup": {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                        "torch_threads": args.threads, "torch": torch.__version__, "seeds": args.seeds,
                        "sample": PROXY_SAMPLE, "proxies": list(PROXIES), "pool_strings": len(archs),
                        "pool_distinct_nets": distinct}}

    # Per-net cost of each proxy on seeded cells (fresh nets), and NASWOT's kernel old against new.
    ghn = load_ghn()
    ctx = ProxyContext.from_data(ghn, n_images=512, data_dir=data_dir)
    cells = [archs[i] for i in np.random.default_rng(0).choice(len(archs), 4 * args.per_net, replace=False)
             if "nor_conv" in archs[i] and has_path(archs[i])][: args.per_net]  # ReLUs: NASWOT needs them
    compute("params", build_architecture("nb201", cells[0]), ctx)  # warm-up: first trace, first conv
    per_net, old_naswot = {}, []
    for name in PROXIES:
        seconds = 0.0
        for arch in cells:
            torch.manual_seed(0)
            ctx.new_trial()
            _, dt = timed(compute, name, build_architecture("nb201", arch), ctx)
            seconds += dt
        per_net[name] = seconds / len(cells)
    mismatched = 0
    for arch in cells:
        torch.manual_seed(0)
        old, dt_old = timed(naswot_concatenated, build_architecture("nb201", arch), ctx)
        torch.manual_seed(0)
        new, dt_new = timed(naswot, build_architecture("nb201", arch), ctx)
        mismatched += old != new
        old_naswot.append((dt_old, dt_new))
    old_s, new_s = (float(np.mean(t)) for t in zip(*old_naswot))
    result["naswot_kernel"] = {"cells": len(cells), "concatenated_s": old_s, "per_relu_s": new_s,
                               "speedup": old_s / new_s, "values_equal": not mismatched}
    result["per_net_s"] = per_net
    result["baseline_estimate_s"] = {
        "every_distinct_net, naswot as before": distinct * (sum(per_net.values()) - per_net["naswot"] + old_s),
        "every_distinct_net, naswot today": distinct * sum(per_net.values())}

    # The command itself, cold store then warm, on the stand-in pool.
    with tempfile.TemporaryDirectory() as tmp:
        pool = Path(tmp) / "nb201_all_strings_standin.csv"
        labels = np.random.default_rng(0).uniform(10, 95, len(archs))
        pool.write_text("arch,cifar10_test_acc_200ep\n" + "".join(f"{a},{v:.4f}\n" for a, v in zip(archs, labels)))
        cache = Path(tmp) / "cache"  # a fresh proxy store; the decoded images stay as they are
        cache.mkdir()
        for decoded in Path(os.environ.get("GHN_NAS_CACHE", Path.home() / ".cache" / "ghn-nas")).glob("*.pt"):
            (cache / decoded.name).symlink_to(decoded.resolve())
        os.environ["GHN_NAS_CACHE"] = str(cache)
        argv = ["--pool", str(pool), "--seeds", str(args.seeds), "--json"]
        if data_dir:
            argv += ["--data-dir", data_dir]
        runs = []
        for run in ("cold store", "warm store"):
            t = time.perf_counter()
            rc = benchmark_main(argv)
            runs.append(time.perf_counter() - t)
            print(f"{run}: nas.benchmark exit {rc} in {runs[-1]:.0f} s", file=sys.stderr, flush=True)
        stores = list((Path(tmp) / "cache" / "proxies").glob("**/*.jsonl"))
        computed = {p.stem: len(p.read_text().splitlines()) for p in stores}
    result["command"] = {"argv": ["python -m nas.benchmark", "--pool", f"<{len(archs)} NB201 strings, stand-in labels>",
                                  "--seeds", str(args.seeds)], "cold_s": runs[0], "warm_s": runs[1],
                         "nets_computed": computed,
                         "nets_looked_at": int(looked_at(len(archs), args.seeds, PROXY_SAMPLE).sum())}
    best_baseline = result["baseline_estimate_s"]["every_distinct_net, naswot as before"]
    result["speedup_vs_baseline_estimate"] = best_baseline / runs[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0 if not mismatched else 1


if __name__ == "__main__":
    sys.exit(main())
