"""Which signals rank NAS-Bench-201 cells by their 200-epoch noisy accuracy, and how many labels they need.

    GHN_NAS_DATA=../shared/data/cifar10 python benchmarks/robustness_signals.py   # ~10 CPU-minutes, 1 thread

On the distinct cells of the labelled CSV (``ghn_core.nb201.cell_key``; one noisy value per cell, the
mean of its strings'), each regressor is fitted on n random cells and scored on a fixed held-out set of
the others (Spearman and Kendall), 3 seeded draws per n; n = 50, 100, 200, 400 and all but the held-out
cells. Features:

- ``embedding``: the shipped GHN's graph embedding (what the shipped predictor reads), svr-rank;
- ``op counts``: how many edges of each op the cell has;
- ``cell``: one-hot op per edge, counts of every input-output path by its op sequence, and path
  statistics (number of paths, convolutions and pools along them), extra trees;
- ``embedding+cell``: both, extra trees.

Zero-label scores are computed on every cell and fitted on nothing; their Spearman and Kendall
against noisy accuracy are over all cells:

- ``pool_first_share``: the share of input-output paths of the cell whose first op is a 3x3 average
  pool (a low-pass filter before anything else sees the noise). It was written after looking at the
  most robust cells of this CSV, so its figure here is not an unbiased test: the kept-aside cells are.
- ``init_feature_stability``: at PyTorch's init, the cosine similarity of the penultimate features of
  64 validation images with and without the noise (300 cells, one init).

Writes ``benchmarks/robustness_signals/signals.json`` and prints markdown tables.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from sklearn.ensemble import ExtraTreesRegressor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ghn_core.nb201 import NB201_OPS, NOISY_COLUMN, NB201Network, cell_key, parse_arch, read_table  # noqa: E402
from nas.predictors import fit_predictor, labelled_features, rank_correlations  # noqa: E402

HERE = Path(__file__).resolve().parent / "robustness_signals"
DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "labelled.csv"
SIZES = (50, 100, 200, 400)
HELD_OUT = 224     # cells every fit is scored on (the rest can be fitted on)
DRAWS = 3
LIVE_OPS = NB201_OPS[1:]


def cell_paths(arch: str) -> list[tuple[str, ...]]:
    """The op sequences of every path from the cell's input (node 0) to its output (node 3)."""
    edges = parse_arch(arch)
    paths: list[tuple[str, ...]] = []

    def walk(node: int, ops: tuple[str, ...]) -> None:
        if node == 3:
            paths.append(ops)
            return
        for j in range(node + 1, 4):
            if edges[j - 1][node] != "none":
                walk(j, ops + (edges[j - 1][node],))

    walk(0, ())
    return paths


def cell_features(arch: str) -> np.ndarray:
    edges = [op for row in parse_arch(arch) for op in row]
    onehot = [float(op == o) for op in edges for o in NB201_OPS]
    paths = cell_paths(arch)
    counts = defaultdict(float)
    for p in paths:
        counts[p] += 1
    by_sequence = [counts.get(seq, 0.0) for n in (1, 2, 3) for seq in itertools.product(LIVE_OPS, repeat=n)]
    conv = [sum(op.startswith("nor_conv") for op in p) for p in paths] or [0]
    pool = [sum(op == "avg_pool_3x3" for op in p) for p in paths] or [0]
    return np.array([*onehot, *by_sequence, len(paths), max(conv), min(conv), np.mean(conv), max(pool), min(pool)])


def op_counts(arch: str) -> np.ndarray:
    edges = [op for row in parse_arch(arch) for op in row]
    return np.array([edges.count(o) for o in NB201_OPS], dtype=float)


def pool_first_share(arch: str) -> float:
    paths = cell_paths(arch)
    return float(np.mean([p[0] == "avg_pool_3x3" for p in paths])) if paths else 0.0


def init_feature_stability(archs: list[str], data_dir: str | None) -> np.ndarray:
    from nas.proxies import ProxyContext

    ctx = ProxyContext.from_data(None, n_images=64, seed=0, data_dir=data_dir, device="cpu")
    values = []
    for arch in archs:
        torch.manual_seed(0)
        net = NB201Network(arch).train()  # batch statistics, as at the start of training
        feats = []
        net.classifier.register_forward_hook(lambda m, inputs, out: feats.append(inputs[0]))
        with torch.no_grad():
            net(ctx.images), net(ctx.noisy_images)
        values.append(torch.nn.functional.cosine_similarity(feats[0], feats[1], dim=1).mean().item())
    return np.array(values)


def _extra_trees(X: np.ndarray, y: np.ndarray) -> ExtraTreesRegressor:
    return ExtraTreesRegressor(500, min_samples_leaf=2, max_features=0.5, random_state=0, n_jobs=1).fit(X, y)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import ghn_core

    table = read_table(args.csv)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, arch in enumerate(table.archs):
        groups[cell_key(arch)].append(i)
    keys = sorted(groups)
    archs = [table.archs[groups[k][0]] for k in keys]
    y = np.array([table[NOISY_COLUMN][groups[k]].mean() for k in keys])
    emb, ok = labelled_features(ghn_core.load_ghn(), "nb201", archs, "embedding")
    assert ok.all(), "every labelled cell has an input-output path"
    cell = np.stack([cell_features(a) for a in archs])
    features = {"embedding (svr-rank)": (emb, lambda X, t: fit_predictor("svr-rank", X, t)),
                "op counts (extra trees)": (np.stack([op_counts(a) for a in archs]), _extra_trees),
                "cell (extra trees)": (cell, _extra_trees),
                "embedding+cell (extra trees)": (np.hstack([emb, cell]), _extra_trees)}
    order = np.random.default_rng(0).permutation(len(keys))
    held_out, pool = order[:HELD_OUT], order[HELD_OUT:]
    curve: dict[str, dict[str, dict]] = {}
    for name, (X, fit) in features.items():
        curve[name] = {}
        for n in (*SIZES, len(pool)):
            rows = [rank_correlations(fit(X[tr], y[tr]).predict(X[held_out]), y[held_out])
                    for tr in (np.random.default_rng(d).permutation(pool)[:n] for d in range(DRAWS if n < len(pool) else 1))]
            curve[name][str(n)] = {k: float(np.mean([r[k] for r in rows])) for k in ("spearman", "kendall")}
            print(f"{name}, n={n}: Spearman {curve[name][str(n)]['spearman']:.3f}", flush=True)
    zero = {"pool_first_share": {**rank_correlations(np.array([pool_first_share(a) for a in archs]), y),
                                 "n": len(keys)}}
    sub = np.random.default_rng(0).permutation(len(keys))[:300]
    zero["init_feature_stability"] = {**rank_correlations(init_feature_stability([archs[i] for i in sub], args.data_dir),
                                                          y[sub]), "n": len(sub)}
    result = {"csv": str(args.csv), "cells": len(keys), "held_out": HELD_OUT, "draws": DRAWS, "curve": curve,
              "zero_label": zero}
    HERE.mkdir(exist_ok=True)
    (HERE / "signals.json").write_text(json.dumps(result, indent=1) + "\n")
    sizes = [*map(str, SIZES), str(len(pool))]
    print(f"\nSpearman / Kendall on {HELD_OUT} held-out cells, fitted on n others (mean of {DRAWS} draws; all: one fit)\n")
    print("| features (regressor) | " + " | ".join(f"n={s}" for s in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name, row in curve.items():
        print(f"| {name} | " + " | ".join(f"{row[s]['spearman']:.2f} / {row[s]['kendall']:.2f}" for s in sizes) + " |")
    print("\n| zero-label score | cells | Spearman | Kendall |\n|---|---|---|---|")
    for name, row in zero.items():
        print(f"| {name} | {row['n']} | {row['spearman']:.3f} | {row['kendall']:.3f} |")
    return result


if __name__ == "__main__":
    main()
