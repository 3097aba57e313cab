"""How well do proxies rank architectures? ``python -m nas.scorecard --labels labelled.csv``.

For a labelled set, either a NAS-Bench-201 CSV (architecture string and 200-epoch accuracy) or the
JSON lines ``python -m nas.label`` writes (any space; ``--target clean_acc`` or ``noisy_acc``),
computes each proxy on a seeded sample of the architectures and reports Spearman rho and Kendall tau
against the labels;
embedding regressors (``nas.predictors``) are fitted on one half of the sample (GHN embeddings,
plus log-parameters for ``ridge+params``) and scored on the other half, where every proxy is scored
too, so the two compare on the same nets. Writes a markdown table, a JSON record and a scatter plot
per proxy to ``--out``.
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import random
import sys
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ghn_core import load_ghn
from ghn_core.errors import GraphError
from ghn_core.graph import Graph, GraphWarning
from ghn_core.nb201 import NB201Network
from ghn_core.utils import user_errors

from .label import build_architecture, read_labels
from .predictors import MIN_FIT, embedding_features, fit_predictor, rank_correlations
from .proxies import ProxyContext, compute

__all__ = ["score_proxies", "main"]

log = logging.getLogger("nas.scorecard")


def score_proxies(archs: list[str], labels: np.ndarray, proxies: Sequence[str], ctx: ProxyContext,
                  *, build: Callable[[str], nn.Module] = NB201Network, seed: int = 0,
                  progress: bool = True) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Rank correlations of every proxy (and, with a GHN and 20 or more architectures, of embedding
    regressors) with ``labels``. ``build`` turns an architecture into its network.

    Every architecture must have a graph (see ``main``). Returns the table and the per-net values.
    """
    values = {name: np.full(len(archs), np.nan) for name in proxies}
    for i, arch in enumerate(tqdm(archs, desc="proxies", unit="net", disable=not progress)):
        for name in proxies:
            torch.manual_seed(seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", GraphWarning)
                values[name][i] = compute(name, build(arch), ctx)
    def score(v: np.ndarray, where: np.ndarray) -> dict[str, float]:
        ok = where[np.isfinite(v[where])]
        return {**rank_correlations(v[ok], labels[ok]), "n": int(len(ok))}  # raw values, no sign flip

    everything = np.arange(len(archs))
    table = {name: {**score(v, everything), "scored_on": "all"} for name, v in values.items()}
    if ctx.ghn is not None and len(archs) >= 2 * MIN_FIT:
        order = np.random.default_rng(seed).permutation(len(archs))
        fit, test = order[: len(order) // 2], np.sort(order[len(order) // 2:])
        for name, v in values.items():
            table[name]["held_out"] = score(v, test)
        nets = [build(a) for a in archs]
        emb = embedding_features(ctx.ghn, nets)
        log_params = np.log([sum(p.numel() for p in net.parameters()) for net in nets])[:, None]
        for name, X in (("svr(embedding)", emb), ("ridge(embedding+log params)", np.hstack([emb, log_params]))):
            model = fit_predictor(name.split("(")[0], X[fit], labels[fit], seed=seed)
            pred = model.predict(X[test])
            values[name] = np.full(len(archs), np.nan)
            values[name][test] = pred
            held = score(values[name], test)
            table[name] = {**held, "scored_on": "held-out half", "held_out": held}
    return table, values


def _plots(values: dict[str, np.ndarray], labels: np.ndarray, table: dict, out: Path, label_name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, v in values.items():
        ok = np.isfinite(v)
        fig, ax = plt.subplots(figsize=(4, 3.2), dpi=110)
        ax.scatter(v[ok], labels[ok], s=6, alpha=0.5, label=f"{int(ok.sum())} architectures")
        ax.set_xlabel(name)
        ax.set_ylabel(label_name)
        ax.set_title(f"{name}: rho {table[name]['spearman']:.2f}, tau {table[name]['kendall']:.2f}")
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(out / f"scatter_{name.split('(')[0]}.png")
        plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nas.scorecard", description=__doc__)
    parser.add_argument("--labels", required=True,
                        help="a labelled NAS-Bench-201 CSV, or the JSON lines of python -m nas.label")
    parser.add_argument("--target", default="clean_acc", choices=["clean_acc", "noisy_acc"],
                        help="the label of a nas.label file (a NAS-Bench-201 CSV: CIFAR-10 accuracy)")
    parser.add_argument("--proxies", nargs="+", default=["params", "flops", "naswot", "synflow", "ghn_accuracy"])
    parser.add_argument("--n", type=int, default=500, help="architectures sampled from the labelled set")
    parser.add_argument("--ghn", default=None, help="GHN checkpoint (default: the shipped one)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/scorecard")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with user_errors(args.debug):
        space, rows, label_name = read_labels(args.labels, args.target)
        rows = random.Random(args.seed).sample(rows, min(args.n, len(rows)))
        build = functools.partial(build_architecture, space)
        # A net with no path from input to output computes a constant (chance accuracy): it has no graph,
        # so the GHN cannot take it; such architectures are left out for every proxy alike.
        kept = [r for r in rows if _has_graph(build(r[0]))]
        log.info("%d of %d sampled architectures have a graph; the rest are left out", len(kept), len(rows))
        archs, labels = [r[0] for r in kept], np.array([r[1] for r in kept])
        ghn = load_ghn(args.ghn)
        ctx = ProxyContext.from_data(ghn, data_dir=args.data_dir, seed=args.seed, device="cpu")
        table, values = score_proxies(archs, labels, args.proxies, ctx, build=build, seed=args.seed)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        lines = [f"{space} {label_name}: {len(archs)} architectures (a seeded sample, seed {args.seed}, of "
                 f"{args.labels}, less nets without an input-output path); GHN {args.ghn or 'shipped'}",
                 "", "| proxy | rho, all | tau, all | n | rho, held-out half | tau, held-out half | n |",
                 "|---|---|---|---|---|---|---|"]
        lines += [_row(name, row) for name, row in table.items()]
        if any("held_out" in row for row in table.values()):
            lines += ["", "Regressors are fitted on the other half of the sample; every row's held-out "
                      "columns are scored on the same nets."]
        (out / "scorecard.md").write_text("\n".join(lines) + "\n")
        (out / "scorecard.json").write_text(json.dumps({"args": vars(args), "table": table}, indent=1))
        _plots(values, labels, table, out, label_name)
        print("\n".join(lines))
    return 0


def _row(name: str, row: dict) -> str:
    """One markdown row: rank correlations over all nets (proxies only) and over the held-out half."""
    whole = (f"{row['spearman']:.3f} | {row['kendall']:.3f} | {row['n']}" if row["scored_on"] == "all"
             else "- | - | -")
    held = row.get("held_out")
    held = f"{held['spearman']:.3f} | {held['kendall']:.3f} | {held['n']}" if held else "- | - | -"
    return f"| {name} | {whole} | {held} |"


def _has_graph(model: nn.Module) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GraphWarning)  # ops on dead nodes are reported, by design
            Graph.from_module(model)
        return True
    except GraphError:
        return False


if __name__ == "__main__":
    sys.exit(main())
