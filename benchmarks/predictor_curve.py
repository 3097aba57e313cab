"""How well property predictors rank NAS-Bench-201 cells they never saw, against the number of labelled cells.

For each size n and seed, n cells of the labelled CSV (one string per cell, cells by
``ghn_core.nb201.cell_key``) are drawn at random; each predictor of ``nas.predictors`` is fitted on
their GHN embeddings and 200-epoch accuracies and scored (Kendall tau, Spearman rho) on every other
cell, where #params is scored too. Cells without an input-output path have no graph and are left out.

    python benchmarks/predictor_curve.py --sizes 25 50 100 156 400 --seeds 3

Prints a markdown table and writes ``predictor_curve/curve.json`` and ``curve.png``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ghn_core import load_ghn  # noqa: E402
from nas.label import build_architecture, read_labelled  # noqa: E402
from nas.predictors import distinct_rows, fit_predictor, labelled_features, rank_correlations  # noqa: E402

HERE = Path(__file__).resolve().parent / "predictor_curve"
DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "labelled.csv"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 156, 400])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--predictors", nargs="+", default=["svr", "svr-rank"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plot-only", action="store_true", help="redraw curve.png from curve.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.plot_only:
        saved = json.loads((HERE / "curve.json").read_text())
        summary = {p: {int(n): v for n, v in by_n.items()} for p, by_n in saved["summary"].items()}
        _plot(summary, argparse.Namespace(**saved["args"]), HERE / "curve.png")
        return

    labelled = read_labelled(args.csv)
    rows = distinct_rows(labelled)
    archs = [labelled.archs[i] for i in rows]
    y_all = labelled.properties["cifar10_test_acc_200ep"][rows]
    X, ok = labelled_features(load_ghn(), "nb201", archs)
    X, y = X[ok], y_all[ok]
    log_params = np.log([sum(p.numel() for p in build_architecture("nb201", a).parameters())
                         for a, keep in zip(archs, ok) if keep])
    print(f"{len(archs)} cells in {args.csv}, {len(y)} with a graph\n")

    runs = []  # one per (size, seed, predictor)
    for n in args.sizes:
        for seed in range(args.seeds):
            order = np.random.default_rng(seed).permutation(len(y))
            fit, test = order[:n], order[n:]
            runs.append({"n": n, "seed": seed, "predictor": "#params", **rank_correlations(log_params[test], y[test])})
            for name in args.predictors:
                start = time.process_time()
                model = fit_predictor(name, X[fit], y[fit], seed=seed)
                runs.append({"n": n, "seed": seed, "predictor": name, **rank_correlations(model.predict(X[test]), y[test]),
                             "fit_cpu_s": round(time.process_time() - start, 1)})
            print(f"n={n} seed={seed}: " + ", ".join(f"{r['predictor']} {r['kendall']:.3f}" for r in runs[-1 - len(args.predictors):]),
                  flush=True)

    names = ["#params", *args.predictors]
    print("\n| labelled cells | " + " | ".join(f"{p}: tau / rho" for p in names) + " |")
    print("|---|" + "---|" * len(names))
    summary = {}
    for n in args.sizes:
        cells = []
        for p in names:
            sel = [r for r in runs if r["n"] == n and r["predictor"] == p]
            tau, rho = np.mean([r["kendall"] for r in sel]), np.mean([r["spearman"] for r in sel])
            sd = np.std([r["kendall"] for r in sel])
            summary.setdefault(p, {})[n] = {"kendall": tau, "kendall_sd": sd, "spearman": rho}
            cells.append(f"{tau:.3f} ± {sd:.3f} / {rho:.3f}")
        print(f"| {n} | " + " | ".join(cells) + " |")
    HERE.mkdir(exist_ok=True)
    (HERE / "curve.json").write_text(json.dumps({"args": {**vars(args), "csv": str(args.csv)}, "cells": len(y),
                                                 "summary": summary, "runs": runs}, indent=1) + "\n")
    _plot(summary, args, HERE / "curve.png")


def _plot(summary: dict, args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, by_n in summary.items():
        sizes = sorted(by_n)
        ax.errorbar(sizes, [by_n[n]["kendall"] for n in sizes], yerr=[by_n[n]["kendall_sd"] for n in sizes],
                    marker="o", capsize=3, label=name)
    ax.axhline(0.77, color="grey", ls="--", lw=1, label="FlowerFormer, 156 cells (0.77)")
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.set_xlabel("labelled NB201 cells the predictor is fitted on")
    ax.set_ylabel("Kendall tau on every other cell")
    ax.set_title(f"NB201: predictors vs labelled cells (mean ± sd, {args.seeds} seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
