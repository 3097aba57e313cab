"""How well a CPU-sized SGD label ranks NAS-Bench-201 cells, against their 200-epoch accuracy.

A sample of cells from the labelled NB201 CSV, stratified over its accuracy quantiles, is trained
with each candidate recipe of :data:`CANDIDATES` (``nas.label``'s ``train_sgd``). Every label is one
JSON line, appended as soon as it is done, so the run resumes; cells are taken in a fixed order,
all recipes of a cell before the next cell, so every recipe is always scored on the same cells.

    python benchmarks/label_fidelity.py run --threads 1              # resumable; --shard 0/2 and 1/2 split it
    python benchmarks/label_fidelity.py run --recipes A B --first 24 # the costlier recipes on fewer cells
    python benchmarks/label_fidelity.py run --train-seed 1 ...      # a second label per cell: the label's own noise
    python benchmarks/label_fidelity.py report                       # table, JSON and plot
    python benchmarks/label_fidelity.py run --truth cifar10_noisy_acc_200ep --out benchmarks/label_fidelity/noisy_labels.jsonl
                                      # noisy labels against 200-epoch noisy accuracy, cells spread over its range

``report`` prints, per recipe, Spearman rho and Kendall tau of the label against the 200-epoch
CIFAR-10 test accuracy over the cells every recipe has labelled, and the median CPU-seconds per label
(``time.process_time`` of the training process, with the thread count it ran on). The table reads
the labels of training seed 0; where a recipe also has labels of another training seed
(``--train-seed``), it reports their rank agreement with seed 0 (the ceiling the label's own noise
puts on its fidelity) and the fidelity of the two seeds' mean.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nas.label import SGDRecipe, build_architecture, train_sgd  # noqa: E402
from nas.sgd import init_from_ghn  # noqa: E402
from nas.predictors import rank_correlations  # noqa: E402

HERE = Path(__file__).resolve().parent / "label_fidelity"
DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "labelled.csv"

# One knob at a time around a base of half width (8 channels) at 16 px; test accuracy on 2,560 images.
_BASE = SGDRecipe(epochs=1, lr=0.1, batch_size=128, max_batches=40, eval_batches=10, schedule="onecycle",
                  resolution=16, width_scale=0.5)
CANDIDATES: dict[str, SGDRecipe] = {
    "w8-r16-b40x1": _BASE,
    "w8-r16-b40x3": dataclasses.replace(_BASE, epochs=3),                       # epochs
    "w8-r16-b120x1": dataclasses.replace(_BASE, max_batches=120),               # as many images, none repeated
    "w8-r16-b40x3-cosine": dataclasses.replace(_BASE, epochs=3, schedule="cosine", lr=0.05),  # schedule
    "w8-r32-b40x1": dataclasses.replace(_BASE, resolution=32),                  # resolution
    "w16-r16-b40x3": dataclasses.replace(_BASE, epochs=3, width_scale=1.0),            # width
    "w8-r16-b120x3": dataclasses.replace(_BASE, epochs=3, max_batches=120),     # 3x the images: RECIPES["cpu"]
    "w8-r16-b200x3": dataclasses.replace(_BASE, epochs=3, max_batches=200),     # 5x the images, ~110 CPU-s
}
#: Candidates whose SGD starts from the shipped GHN's predicted parameters instead of PyTorch's init
#: (``nas.sgd.init_from_ghn``, as the label-budget search's SGD oracle trains).
CANDIDATES["w8-r16-b120x3-ghn"] = CANDIDATES["w8-r16-b120x3"]
GHN_INIT = {"w8-r16-b120x3-ghn"}


#: The label of a recipe that is judged against each truth column of the CSV.
LABEL_OF = {"cifar10_test_acc_200ep": "clean_acc", "cifar10_noisy_acc_200ep": "noisy_acc"}


def unique_cells(csv: Path, truth: str = "cifar10_test_acc_200ep") -> list[tuple[str, float]]:
    """(string, its value in the column ``truth``) for the first string of each cell of the CSV
    (cells by :func:`ghn_core.nb201.cell_key`), sorted by that value."""
    from ghn_core.nb201 import cell_key, read_table

    table = read_table(csv)
    cells: dict[str, tuple[str, float]] = {}
    for arch, value in zip(table.archs, table[truth]):
        cells.setdefault(cell_key(arch), (arch, float(value)))
    return sorted(cells.values(), key=lambda c: c[1])


def stratified_sample(cells: list[tuple[str, float]], n: int, seed: int) -> list[tuple[str, float]]:
    """One cell from each of ``n`` equal-count accuracy bins, in a seeded random order."""
    rng = random.Random(seed)
    edges = np.linspace(0, len(cells), n + 1).astype(int)
    sample = [cells[rng.randrange(lo, hi)] for lo, hi in zip(edges[:-1], edges[1:])]
    rng.shuffle(sample)
    return sample


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    recipes = {name: CANDIDATES[name] for name in (args.recipes or CANDIDATES)}
    args.truth = args.truth or "cifar10_test_acc_200ep"
    sample = stratified_sample(unique_cells(args.csv, args.truth), args.cells, args.seed)[: args.first]
    shard, n_shards = map(int, args.shard.split("/"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["cell"], r["recipe"], r["seed"]) for r in _read(args.out)}
    for i, (cell, truth) in enumerate(sample):
        if i % n_shards != shard:
            continue
        for name, recipe in recipes.items():
            if (cell, name, args.train_seed) in done:
                continue
            cpu, wall = time.process_time(), time.perf_counter()
            torch.manual_seed(args.train_seed)  # the net's own init, alike for every recipe
            model = build_architecture("nb201", cell, width_scale=recipe.width_scale)
            if name in GHN_INIT:
                init_from_ghn(model, _shipped_ghn())
            labels = train_sgd(model, recipe, data_dir=args.data_dir, device="cpu", seed=args.train_seed)
            record = {"cell": cell, "truth": truth, "truth_column": args.truth, "recipe": name, "clean_acc": labels["clean_acc"],
                      "noisy_acc": labels["noisy_acc"], "cpu_s": round(time.process_time() - cpu, 2),
                      "wall_s": round(time.perf_counter() - wall, 2), "threads": args.threads, "seed": args.train_seed,
                      "init": "ghn" if name in GHN_INIT else "random", "recipe_fields": dataclasses.asdict(recipe)}
            with args.out.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"[{i + 1}/{len(sample)}] {name}: {labels[LABEL_OF[args.truth]]:.2f}% (truth {truth:.2f}%), "
                  f"{record['cpu_s']:.0f} CPU-s", flush=True)


@functools.cache
def _shipped_ghn():
    from ghn_core import load_ghn

    return load_ghn()


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def report(args: argparse.Namespace) -> dict:
    """Per recipe: rank correlations over the cells every recipe labelled (a like-for-like comparison)
    and over all the cells it labelled; median CPU-seconds per label."""
    by_recipe: dict[str, dict[str, dict]] = defaultdict(dict)      # seed 0's labels
    reseeded: dict[str, dict[str, dict]] = defaultdict(dict)       # another training seed's
    for r in _read(args.out):
        (by_recipe if r["seed"] == 0 else reseeded)[r["recipe"]][r["cell"]] = r
    if not by_recipe:
        raise SystemExit(f"no labels in {args.out}; run `python {Path(__file__).name} run` first")
    columns = {r.get("truth_column", "cifar10_test_acc_200ep") for cells in by_recipe.values() for r in cells.values()}
    if len(columns) != 1:
        raise SystemExit(f"{args.out} mixes truths {sorted(columns)}: one file per truth column")
    column = columns.pop()
    if args.truth and args.truth != column:  # judge the labels against another column of the CSV
        from ghn_core.nb201 import cell_key

        truth = {cell_key(arch): value for arch, value in unique_cells(args.csv, args.truth)}
        for cells in (*by_recipe.values(), *reseeded.values()):
            for r in cells.values():
                r["truth"] = truth[cell_key(r["cell"])]
        column = args.truth
    label = LABEL_OF[column]
    common = sorted(set.intersection(*(set(cells) for cells in by_recipe.values())))

    def score(cells: dict[str, dict], keys: list[str]) -> dict:
        values, truth = (np.array([cells[c][k] for c in keys]) for k in (label, "truth"))
        return {**rank_correlations(values, truth), "n": len(keys)}

    rows = {}
    for name, cells in by_recipe.items():
        rows[name] = {"common": score(cells, common), "all": score(cells, sorted(cells)),
                      "cpu_s_median": statistics.median(r["cpu_s"] for r in cells.values()),
                      "threads": sorted({r["threads"] for r in cells.values()}),
                      "recipe": next(iter(cells.values()))["recipe_fields"]}
    print(f"{len(common)} cells labelled by every recipe ({args.out})\n")
    print("| recipe | rho / tau, common cells | rho / tau, all its cells (n) | CPU-s per label (median) |")
    print("|---|---|---|---|")
    for name, row in sorted(rows.items(), key=lambda kv: kv[1]["cpu_s_median"]):
        c, a = row["common"], row["all"]
        print(f"| {name} | {c['spearman']:.3f} / {c['kendall']:.3f} | {a['spearman']:.3f} / {a['kendall']:.3f} "
              f"({a['n']}) | {row['cpu_s_median']:.0f} |")
    paired = _paired_with(by_recipe, BASELINE, label)
    if paired:
        print(f"\nSpearman of {BASELINE} minus each recipe's, on the cells both labelled: a paired bootstrap "
              f"over those cells ({BOOTSTRAP} resamples, seed 0)\n")
        print("| recipe | cells | difference | 95% interval | resamples reversing it |")
        print("|---|---|---|---|---|")
        for name, row in paired.items():
            lo, hi = row["interval"]
            print(f"| {name} | {row['n']} | {row['difference']:+.3f} | [{lo:+.3f}, {hi:+.3f}] | "
                  f"{row['reversed']:.4f} |")
    noise = _seed_noise(by_recipe, reseeded, label)
    if noise:
        print("\n| recipe | cells with 2 seeds | seed 0 vs other seed, rho / tau | mean of the 2 seeds vs truth, rho / tau |")
        print("|---|---|---|---|")
        for name, row in noise.items():
            a, m = row["agreement"], row["mean_fidelity"]
            print(f"| {name} | {row['n']} | {a['spearman']:.3f} / {a['kendall']:.3f} | "
                  f"{m['spearman']:.3f} / {m['kendall']:.3f} |")
    stem = args.out.stem.replace("labels", "fidelity")  # labels.jsonl -> fidelity.json, noisy_labels -> noisy_fidelity
    if label == "noisy_acc" and not stem.startswith("noisy"):
        stem = f"{stem}_noisy_truth"  # labels.jsonl judged by noisy truth: fidelity_noisy_truth.json
    (args.out.parent / f"{stem}.json").write_text(json.dumps({"common_cells": len(common), "label": label,
                                                             "recipes": rows,
                                                    "paired_with_" + BASELINE: paired, "seed_noise": noise},
                                                   indent=1) + "\n")
    _plot(rows, len(common), args.out.parent / f"{stem}_vs_cost.png", label)
    return rows


BASELINE = "w8-r16-b120x3"   # RECIPES["cpu"]
BOOTSTRAP = 5000


def _paired_with(by_recipe: dict[str, dict[str, dict]], baseline: str, label: str) -> dict:
    """Per recipe: Spearman of ``baseline`` minus the recipe's on the cells both labelled, with a
    bootstrap over those cells (the same resampled cells for both): its 95% interval, and the share
    of resamples where the difference is zero or reversed."""
    if baseline not in by_recipe:
        return {}
    paired = {}
    for name, cells in by_recipe.items():
        keys = sorted(set(cells) & set(by_recipe[baseline]))
        if name == baseline or len(keys) < 5:
            continue
        truth, base, other = (np.array([src[c][k] for c in keys]) for src, k in
                              ((cells, "truth"), (by_recipe[baseline], label), (cells, label)))
        rng = np.random.default_rng(0)
        diffs = []
        for _ in range(BOOTSTRAP):
            i = rng.integers(0, len(keys), len(keys))
            diffs.append(spearmanr(base[i], truth[i]).statistic - spearmanr(other[i], truth[i]).statistic)
        diffs = np.array(diffs)
        diffs = diffs[np.isfinite(diffs)]  # a resample of tied labels has no rank correlation
        paired[name] = {"n": len(keys), "difference": float(spearmanr(base, truth).statistic
                                                            - spearmanr(other, truth).statistic),
                        "interval": [float(q) for q in np.percentile(diffs, [2.5, 97.5])],
                        "reversed": float((diffs <= 0).mean())}
    return paired


def _seed_noise(by_recipe: dict[str, dict[str, dict]], reseeded: dict[str, dict[str, dict]], label: str) -> dict:
    """Per recipe with labels of a second training seed, on the cells that have both: how the two
    seeds' labels agree, and how their mean ranks against the truth."""
    noise = {}
    for name, other in reseeded.items():
        cells = sorted(set(other) & set(by_recipe.get(name, {})))
        if len(cells) < 3:
            continue
        first, second = (np.array([labels[c][label] for c in cells]) for labels in (by_recipe[name], other))
        truth = np.array([other[c]["truth"] for c in cells])
        noise[name] = {"n": len(cells), "agreement": rank_correlations(first, second),
                       "mean_fidelity": rank_correlations((first + second) / 2, truth)}
    return noise


def _plot(rows: dict, n_common: int, path: Path, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, row in rows.items():
        ax.scatter(row["cpu_s_median"], row["common"]["spearman"], label=name)
    if label == "clean_acc":
        ax.axhline(0.61, color="grey", ls="--", label="EcoNAS reduced training (rho 0.61)")
    ax.set_xlabel("CPU-seconds per label (median, 1 thread)")
    ax.set_ylabel(f"Spearman rho of {label} vs 200-epoch {'noisy ' if label == 'noisy_acc' else ''}accuracy")
    ax.set_title(f"NB201 label fidelity vs cost ({n_common} cells labelled by every recipe)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["run", "report"])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="labelled NB201 CSV")
    parser.add_argument("--out", type=Path, default=HERE / "labels.jsonl", help="JSON lines, appended and resumed")
    parser.add_argument("--cells", type=int, default=60, help="cells sampled, one per bin of the truth column")
    parser.add_argument("--truth", default=None, choices=list(LABEL_OF),
                        help="the CSV column the labels are judged by (run: and the cells spread over; default "
                             "cifar10_test_acc_200ep; report: default the one the labels were run against); "
                             "clean_acc labels are judged by 200-epoch accuracy, noisy_acc ones by 200-epoch noisy accuracy")
    parser.add_argument("--recipes", nargs="*", choices=list(CANDIDATES), help="default: all candidates")
    parser.add_argument("--first", type=int, default=None, help="label only the first N cells of the sample")
    parser.add_argument("--shard", default="0/1", help="i/n: this process labels cells i, i+n, ...")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0, help="seed of the cell sample")
    parser.add_argument("--train-seed", type=int, default=0, help="seed of the SGD labels (0: the table's)")
    args = parser.parse_args(argv)
    run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    main()
