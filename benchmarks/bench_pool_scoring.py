"""Scoring the whole NAS-Bench-201 table with the shipped predictor: graphs, embeddings, predictions.

    python benchmarks/bench_pool_scoring.py [--n N] [--seed 0] [--threads 2] [--compare 200] [--workers 1]

Enumerates the 15,625 NB201 strings (5 ops on 6 edges; no labels needed), or a seeded sample of
``--n`` of them, and scores them the way ``nas.predictors.labelled_features`` and the shipped
predictor do: graphs straight from the strings (``ghn_core.graph.nb201.nb201_graph``, no net
built or traced), embeddings (``ghn.embed`` on 1024 held graphs at a time, one GHN pass per 16
nets), predictions (the ``("nb201", "cifar10_test_acc_200ep")`` predictor). It reports seconds per
phase, nets/s, and the time for all 15,625 (measured with the default ``--n``, else extrapolated).
``--workers 2 --threads 1`` spreads the strings over two processes of one thread each (every other
string to each: their scores are those of one process up to float rounding, as the GHN passes then
batch other nets together).

Old against new, in the same process, on a seeded sample of ``--compare`` of the strings: the old
path is ``labelled_features`` as of commit a668dc2 (build each net, trace it, then embed all the
graphs in one call), copied below with phase timers; the new one is ``labelled_features`` today.
Their features must be equal bit for bit (the script exits 1 otherwise).
"""
from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import platform
import random
import time
import warnings

import numpy as np
import torch

from ghn_core import load_ghn
from ghn_core.errors import GraphError
from ghn_core.graph import GraphWarning
from ghn_core.graph.nb201 import nb201_graph
from ghn_core.nb201 import NB201_OPS, cell_key, format_arch
from nas.label import build_architecture
from nas.predictors import labelled_features, load_predictors

PROPERTY = ("nb201", "cifar10_test_acc_200ep")
TABLE = 15_625
GOAL_S = 300          # the whole table in under 5 minutes on 2 CPU threads
CHUNK = 1024          # graphs held at once, as labelled_features


def all_archs() -> list[str]:
    archs = [format_arch(((a,), (b, c), (d, e, f))) for a, b, c, d, e, f in itertools.product(NB201_OPS, repeat=6)]
    assert len(archs) == TABLE
    return archs


def score_new(ghn, predictor, archs: list[str]) -> tuple[np.ndarray, dict[str, float]]:
    """``labelled_features``' loop for NB201 with a timer per phase, then the predictor:
    (predicted accuracy per string, NaN without a graph; seconds per phase)."""
    seconds = {"graphs": 0.0, "embed": 0.0, "predict": 0.0}
    X = np.full((len(archs), ghn.config.hid), np.nan)
    graphs, rows = [], []
    for i, arch in enumerate(archs):
        t0 = time.perf_counter()
        try:
            graphs.append(nb201_graph(arch, s_max=ghn.s_max))
            rows.append(i)
        except GraphError:
            pass
        seconds["graphs"] += time.perf_counter() - t0
        if graphs and (len(graphs) == CHUNK or i == len(archs) - 1):
            t0 = time.perf_counter()
            X[rows] = ghn.embed(graphs=graphs).numpy()
            seconds["embed"] += time.perf_counter() - t0
            graphs, rows = [], []
    ok = ~np.isnan(X[:, 0])
    t0 = time.perf_counter()
    scores = np.full(len(archs), np.nan)
    if ok.any():
        scores[ok] = predictor.predict(X[ok])
    seconds["predict"] = time.perf_counter() - t0
    return scores, seconds


def score_part(archs: list[str], threads: int) -> tuple[np.ndarray, dict[str, float]]:
    """:func:`score_new` in a worker process of its own (``--workers``)."""
    torch.set_num_threads(threads)
    warnings.simplefilter("ignore", GraphWarning)
    ghn = load_ghn()
    return score_new(ghn, load_predictors(ghn)[PROPERTY], archs)


def old_labelled_features(ghn, archs: list[str]) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """``labelled_features(ghn, "nb201", archs)`` as of a668dc2, with phase timers."""
    t0 = time.perf_counter()
    graphs, ok = [], np.zeros(len(archs), dtype=bool)
    for i, arch in enumerate(archs):
        try:
            graphs += ghn.graphs([build_architecture("nb201", arch)])
            ok[i] = True
        except GraphError:
            pass
    t1 = time.perf_counter()
    X = np.full((len(archs), ghn.config.hid), np.nan)
    if graphs:
        X[ok] = ghn.embed(graphs=graphs).numpy()
    return X, ok, {"build+trace": t1 - t0, "embed": time.perf_counter() - t1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=TABLE, help=f"strings scored (default: all {TABLE})")
    parser.add_argument("--seed", type=int, default=0, help="sample seed when --n < the table")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compare", type=int, default=200,
                        help="strings (a seeded sample of those scored) scored by the old and the new path")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes scoring every n-th string each, on --threads threads each")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", GraphWarning)   # dead ops of some cells: expected, listed in graph.skipped

    archs = all_archs()
    if args.n < TABLE:
        archs = random.Random(args.seed).sample(archs, args.n)
    sub = random.Random(args.seed).sample(archs, min(args.compare, len(archs)))
    ghn = load_ghn()
    predictor = load_predictors(ghn)[PROPERTY]
    score_new(ghn, predictor, sub[:20])                     # warm up imports and caches
    old_labelled_features(ghn, sub[:5])

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at start; torch {torch.__version__}, {torch.get_num_threads()} threads")

    # old against new, same strings, same process
    t0 = time.perf_counter()
    X_old, ok_old, old = old_labelled_features(ghn, sub)
    predictor.predict(X_old[ok_old])
    t_old = time.perf_counter() - t0
    t0 = time.perf_counter()
    X_new, ok_new = labelled_features(ghn, "nb201", sub)
    predictor.predict(X_new[ok_new])
    t_new = time.perf_counter() - t0
    same = np.array_equal(ok_old, ok_new) and np.array_equal(X_old, X_new, equal_nan=True)
    m = len(sub)
    print(f"\nold vs new on {m} strings (features and predictions):")
    print(f"  old  labelled_features (a668dc2): {t_old:7.2f} s  ({m / t_old:6.1f} nets/s; build+trace "
          f"{old['build+trace']:.2f} s, embed {old['embed']:.2f} s)")
    print(f"  new  labelled_features:           {t_new:7.2f} s  ({m / t_new:6.1f} nets/s)")
    print(f"  ratio {t_old / t_new:.1f}x; features bit-identical: {same} ({int(ok_new.sum())} of {m} with a graph)")

    # the table (or the sample), new path by phase
    t0 = time.perf_counter()
    if args.workers == 1:
        scores, seconds = score_new(ghn, predictor, archs)
    else:   # the workers' load_ghn is part of the time; phases are summed over the workers
        parts = [archs[i::args.workers] for i in range(args.workers)]
        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            results = pool.starmap(score_part, [(part, args.threads) for part in parts])
        scores = np.empty(len(archs))
        for i, (part_scores, _) in enumerate(results):
            scores[i::args.workers] = part_scores
        seconds = {phase: sum(r[1][phase] for r in results) for phase in results[0][1]}
    total = time.perf_counter() - t0
    n, ok = len(archs), ~np.isnan(scores)
    workers = f", {args.workers} worker processes (threads: {args.threads} each)" if args.workers > 1 else ""
    print(f"\nnew path on {n} strings{workers} ({int(ok.sum())} with a graph; the rest compute a constant):")
    print(f"| phase | {'s, summed over workers' if args.workers > 1 else 's'} | ms/net |\n|---|---|---|")
    for phase, s in seconds.items():
        print(f"| {phase} | {s:.1f} | {1e3 * s / n:.2f} |")
    print(f"| total (wall) | {total:.1f} | {1e3 * total / n:.2f} |")
    full = total * TABLE / n
    print(f"{n / total:.1f} nets/s; all {TABLE}: {full:.0f} s ({'measured' if n == TABLE else 'extrapolated'}), "
          f"goal {GOAL_S} s: {'met' if full < GOAL_S else 'NOT met'}")
    cells = len({cell_key(a) for a in all_archs()})
    print(f"the table holds {cells} distinct cells (cell_key): one string per cell would take "
          f"~{full * cells / TABLE:.0f} s (not done: strings of one cell have different graphs and embeddings)")
    best = np.argsort(-np.where(ok, scores, -np.inf))[:3]
    print("highest predicted: " + "; ".join(f"{archs[i]} {scores[i]:.2f}" for i in best))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
