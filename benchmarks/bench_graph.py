"""Graph construction speed: ResNet-50 (the headline number) and every torchvision classifier.

    python benchmarks/bench_graph.py [--out FILE]   (results: the graph section of BENCHMARKS.md)

Times are medians of warm calls of ``Graph.from_module(model, (1, 3, S, S))`` with virtual edges
(s_max = 50), on ``--threads`` CPU threads. ResNet-50 is built on the CPU with real (random)
weights, as a user would have it; the sweep builds every other model on the meta device (so that
the 600M-parameter RegNet-Y-128GF and ViT-H/14 need no memory); ``from_module`` traces on meta in
both cases, so the two agree (the ResNet-50 rows show both).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings
from pathlib import Path

import torch
import torchvision
from torch import nn

from ghn_core.errors import GraphError
from ghn_core.graph import Graph, GraphWarning
from ghn_core.utils import torchvision_on_meta

REFERENCE_RESNET50_S = 0.058   # ppuda's graph builder on the same machine (from the issue)
GOAL_RESNET50_S = 0.03




def median_time(model: nn.Module, size: int, repeats: int, warmup: int = 2) -> tuple[float, Graph]:
    shape = (1, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GraphWarning)
        for _ in range(warmup):
            graph = Graph.from_module(model, shape)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            graph = Graph.from_module(model, shape)
            times.append(time.perf_counter() - t0)
    return statistics.median(times), graph


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30, help="warm calls timed for ResNet-50")
    parser.add_argument("--sweep-repeats", type=int, default=5, help="warm calls timed per model in the sweep")
    parser.add_argument("--models", nargs="*", default=None, help="subset of torchvision classifiers")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown report here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    lines = [
        "# Graph construction (`ghn_core.graph`)", "",
        f"Command: `python benchmarks/bench_graph.py --threads {args.threads} --repeats {args.repeats} "
        f"--sweep-repeats {args.sweep_repeats}{' --out ' + str(args.out) if args.out else ''}`", "",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads; "
        f"Python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}.", "",
        "`Graph.from_module(model, (1, 3, S, S))`, virtual edges up to s_max = 50 included, median of warm calls.", "",
        "## ResNet-50", "",
        "| model built on | input | nodes | real edges | virtual edges | median (s) | reference (s) | goal (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    cpu_resnet = torchvision.models.resnet50(weights=None)
    for where, model in (("CPU (random weights)", cpu_resnet), ("meta", torchvision_on_meta("resnet50"))):
        for size in (224, 32):
            t, g = median_time(model, size, args.repeats)
            real = int((g.edge_dist == 1).sum())
            lines.append(f"| {where} | {size}x{size} | {g.num_nodes} | {real} | {g.num_edges - real} | {t:.4f} | "
                         f"{REFERENCE_RESNET50_S} | {GOAL_RESNET50_S} |")
            print(lines[-1], flush=True)

    names = args.models or torchvision.models.list_models(module=torchvision.models)
    rows, full, partial, failing = [], [], [], []
    for name in names:
        model = torchvision_on_meta(name)
        n_params = len(dict(model.named_parameters()))
        cells, graph, errors = {}, None, []
        for size in (32, 224):
            try:
                t, graph_s = median_time(model, size, args.sweep_repeats, warmup=1)
                cells[size] = f"{t:.4f}"
                graph = graph_s
            except GraphError as err:
                cells[size] = "rejects input"
                errors.append(str(err).split(":")[0])
        if graph is None:
            failing.append(name)
            rows.append(f"| {name} | - | - | - | failed | failed |")
            continue
        (partial if graph.skipped else full).append(name)
        skipped = f"{len(graph.skipped)} ({', '.join(sorted({n.split('.')[0] for n in graph.skipped}))})" \
            if graph.skipped else "0"
        rows.append(f"| {name} | {graph.num_nodes} | {n_params} | {skipped} | {cells[32]} | {cells[224]} |")
        print(rows[-1], flush=True)

    lines += [
        "", "## Every torchvision classifier", "",
        f"`torchvision.models.list_models(module=torchvision.models)`: {len(names)} models. "
        f"**{len(full)} fully covered** (every parameter tensor is a node), **{len(partial)} partially** "
        f"(parameters without a node are named in a `GraphWarning` and `graph.skipped`), "
        f"**{len(failing)} failing**.", "",
    ]
    if partial:
        lines.append(f"Partial: {', '.join(partial)}: their auxiliary classifiers (`aux1`, `aux2`, `AuxLogits`) "
                     "run only in training mode, and graphs are traced in eval mode.")
    if failing:
        lines.append(f"Failing: {', '.join(failing)}.")
    lines += [
        "", "Models built on the meta device; 'rejects input' = the model's own forward refuses 32x32 "
        "(ViTs assert 224; AlexNet, Inception-v3 and MaxViT shrink it below a kernel or partition), "
        "which `from_module` reports as a `GraphError`.", "",
        "| model | nodes | parameter tensors | skipped | 32x32 median (s) | 224x224 median (s) |",
        "|---|---|---|---|---|---|", *rows, "",
    ]
    report = "\n".join(lines)
    if args.out:
        args.out.write_text(report)
        print(f"wrote {args.out}")
    else:
        print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
