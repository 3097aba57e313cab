"""How well do proxies rank architectures? ``python -m nas.scorecard --labels labelled.csv``.

For a labelled NAS-Bench-201 set (architecture string and accuracy), computes each proxy on a
seeded sample of the architectures and reports Spearman rho and Kendall tau against the labels;
embedding regressors (``nas.predictors``) are fitted on one half of the sample (GHN embeddings,
plus log-parameters for ``ridge+params``) and scored on the other half. Writes a markdown table,
a JSON record and a scatter plot per proxy to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ghn_core import load_ghn
from ghn_core.errors import GraphError
from ghn_core.graph import Graph, GraphWarning
from ghn_core.nb201 import NB201Network, load_labelled
from ghn_core.utils import user_errors

from .predictors import fit_predictor, rank_correlations
from .proxies import ProxyContext, compute

__all__ = ["score_proxies", "main"]

log = logging.getLogger("nas.scorecard")


def score_proxies(archs: list[str], labels: np.ndarray, proxies: Sequence[str], ctx: ProxyContext,
                  *, seed: int = 0, progress: bool = True) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Rank correlations of every proxy (and, with a GHN, of embedding regressors) with ``labels``.

    Every architecture must have a graph (see ``main``). Returns the table and the per-net values.
    """
    values = {name: np.full(len(archs), np.nan) for name in proxies}
    for i, arch in enumerate(tqdm(archs, desc="proxies", unit="net", disable=not progress)):
        for name in proxies:
            torch.manual_seed(seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", GraphWarning)
                values[name][i] = compute(name, NB201Network(arch), ctx)
    table = {}
    for name, v in values.items():
        ok = np.isfinite(v)
        table[name] = {**rank_correlations(v[ok], labels[ok]), "n": int(ok.sum())}  # raw values, no sign flip
    if ctx.ghn is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GraphWarning)
            emb = ctx.ghn.embed([NB201Network(a) for a in archs]).numpy()
        order = np.random.default_rng(seed).permutation(len(archs))
        fit, test = order[: len(order) // 2], order[len(order) // 2:]
        log_params = np.log([sum(p.numel() for p in NB201Network(a).parameters()) for a in archs])[:, None]
        for name, X in (("svr(embedding)", emb), ("ridge(embedding+log params)", np.hstack([emb, log_params]))):
            model = fit_predictor(name.split("(")[0], X[fit], labels[fit], seed=seed)
            pred = model.predict(X[test])
            values[name] = np.full(len(archs), np.nan)
            values[name][test] = pred
            table[name] = {**rank_correlations(pred, labels[test]), "n": int(len(test))}
    return table, values


def _plots(values: dict[str, np.ndarray], labels: np.ndarray, table: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, v in values.items():
        ok = np.isfinite(v)
        fig, ax = plt.subplots(figsize=(4, 3.2), dpi=110)
        ax.scatter(v[ok], labels[ok], s=6, alpha=0.5)
        ax.set_xlabel(name)
        ax.set_ylabel("CIFAR-10 test accuracy (%)")
        ax.set_title(f"{name}: rho {table[name]['spearman']:.2f}, tau {table[name]['kendall']:.2f}")
        fig.tight_layout()
        fig.savefig(out / f"scatter_{name.split('(')[0]}.png")
        plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nas.scorecard", description=__doc__)
    parser.add_argument("--labels", required=True, help="labelled NAS-Bench-201 CSV")
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
        rows = load_labelled(args.labels)
        rows = random.Random(args.seed).sample(rows, min(args.n, len(rows)))
        # A cell with no path from input to output computes a constant (chance accuracy): it has no graph,
        # so the GHN cannot take it; such architectures are left out for every proxy alike.
        kept = [r for r in rows if _has_graph(r.arch)]
        log.info("%d of %d sampled architectures have a graph; the rest are left out", len(kept), len(rows))
        rows = kept
        archs, labels = [r.arch for r in rows], np.array([r.cifar10 for r in rows])
        ghn = load_ghn(args.ghn)
        ctx = ProxyContext.from_data(ghn, data_dir=args.data_dir, seed=args.seed, device="cpu")
        table, values = score_proxies(archs, labels, args.proxies, ctx, seed=args.seed)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        lines = [f"NAS-Bench-201 CIFAR-10: {len(archs)} architectures (a seeded sample, seed {args.seed}, of "
                 f"{args.labels}, less cells without an input-output path); GHN {args.ghn or 'shipped'}",
                 "", "| proxy | Spearman rho | Kendall tau | n |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['spearman']:.3f} | {v['kendall']:.3f} | {v['n']} |" for k, v in table.items()]
        (out / "scorecard.md").write_text("\n".join(lines) + "\n")
        (out / "scorecard.json").write_text(json.dumps({"args": vars(args), "table": table}, indent=1))
        _plots(values, labels, table, out)
        print("\n".join(lines))
    return 0


def _has_graph(arch: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GraphWarning)  # ops on dead nodes are reported, by design
            Graph.from_module(NB201Network(arch))
        return True
    except GraphError:
        return False


if __name__ == "__main__":
    sys.exit(main())
