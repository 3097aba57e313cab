"""How well do proxies and predictors rank architectures? ``python -m nas.scorecard --labels labelled.csv``.

For a labelled set, either a NAS-Bench-201 CSV (architecture string and 200-epoch CIFAR-10 accuracy)
or the JSON lines ``python -m nas.label`` writes (any space; ``--target clean_acc``, ``noisy_acc``,
...), takes a seeded sample of its distinct nets (``nas.predictors.distinct_rows``: the NB201 strings
of one cell are one net) and scores, against the labels, by Kendall tau and Spearman rho:

- every proxy (``--proxies``: #params, FLOPs, the zero-cost proxies, the raw GHN proxies), computed
  once per net and kept (``nas.proxies.ProxyStore``: a rerun, another target or a grown labelled set
  computes only the nets it has not seen);
- every predictor (``--predictors``: the ``nas.predictors`` regressors on GHN embeddings, alone or with
  cheap graph features), by its out-of-fold predictions under 5-fold cross-validation over the nets,
  so no net (cell) is ever predicted by a fit that saw it.

Each row is scored over all nets and on each of the 5 test folds (mean and sd of the per-fold
Kendall tau), so proxies and predictors are compared on the same nets and the same folds. Nets
without an input-output path (no graph, so no GHN embedding) are left out of everything. Writes a
markdown table, a JSON record (the table and every net's label, fold and values) and a scatter plot
per row to ``--out``.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.model_selection import KFold

from ghn_core import load_ghn
from ghn_core.utils import lookup, user_errors

from .label import LabelledSet, build_architecture, read_labelled
from .predictors import (CV_FOLDS, DEFAULT_PREDICTOR, MIN_FIT, architecture_key, distinct_rows, fit_predictor,
                         labelled_features, rank_correlations)
from .proxies import ProxyStore

__all__ = ["PREDICTORS", "Score", "cv_folds", "out_of_fold", "score", "main"]

log = logging.getLogger("nas.scorecard")

#: The predictors the scorecard cross-validates: row name -> (``nas.predictors`` regressor, features).
#: Features are a kind of ``nas.predictors.FEATURE_KINDS``: "embedding" (the GHN graph embedding) or
#: "embedding+graph" (the embedding, then ``graph_features``). ``fit`` ships, per space, the best row.
PREDICTORS: dict[str, tuple[str, str]] = {
    "svr": ("svr", "embedding"),  # the paper's
    DEFAULT_PREDICTOR: (DEFAULT_PREDICTOR, "embedding"),  # shipped for NB201
    # Standardised, so the graph features' raw counts do not swamp the embedding (the SVRs take
    # features as they come).
    "ridge+features": ("ridge", "embedding+graph"),  # shipped for DeepNets-1M
}


@dataclass
class Score:
    """Rank correlations of one proxy's values, or one predictor's out-of-fold predictions, with the
    labels: over all nets with a finite value (``n`` of them), and per test fold."""

    kind: str                    # "proxy" or "predictor"
    kendall: float
    spearman: float
    n: int
    fold_kendall: list[float]    # on each test fold (NaN where the values are constant); empty without folds
    fold_kendall_mean: float | None
    fold_kendall_sd: float | None  # sample sd over the folds


def cv_folds(n: int, seed: int) -> np.ndarray | None:
    """The test fold (0 to 4) of each of ``n`` nets under seeded 5-fold cross-validation, or None when
    the smallest training fold would hold fewer than ``MIN_FIT`` nets (fewer than 13 nets)."""
    if n - math.ceil(n / CV_FOLDS) < MIN_FIT:
        return None
    fold = np.empty(n, dtype=int)
    for k, (_, test) in enumerate(KFold(CV_FOLDS, shuffle=True, random_state=seed).split(np.arange(n))):
        fold[test] = k
    return fold


def out_of_fold(predictor: str, X: np.ndarray, y: np.ndarray, fold: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Predictions (n,) of ``predictor`` for every net by a fit on the other folds' nets."""
    pred = np.empty(len(y))
    for k in range(CV_FOLDS):
        test = fold == k
        pred[test] = fit_predictor(predictor, X[~test], y[~test], seed=seed).predict(X[test])
    return pred


def score(values: np.ndarray, labels: np.ndarray, fold: np.ndarray | None, kind: str) -> Score:
    """Rank correlations of ``values`` with ``labels`` over all nets and on each test fold, leaving
    out nets where ``values`` is not finite. Raw values: a proxy that ranks backwards scores negative."""
    ok = np.isfinite(values)
    whole = rank_correlations(values[ok], labels[ok])
    per_fold = [] if fold is None else [
        rank_correlations(values[ok & (fold == k)], labels[ok & (fold == k)])["kendall"] for k in range(CV_FOLDS)]
    return Score(kind, whole["kendall"], whole["spearman"], int(ok.sum()), per_fold,
                 float(np.mean(per_fold)) if per_fold else None,
                 float(np.std(per_fold, ddof=1)) if per_fold else None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nas.scorecard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", required=True,
                        help="a labelled NAS-Bench-201 CSV, or the JSON lines of python -m nas.label")
    parser.add_argument("--target", default=None,
                        help="the labelled property to rank (default: cifar10_test_acc_200ep for a NAS-Bench-201 "
                             "CSV, clean_acc for nas.label records)")
    parser.add_argument("--proxies", nargs="+", default=["params", "flops", "naswot", "synflow", "ghn_accuracy"])
    parser.add_argument("--predictors", nargs="+", default=list(PREDICTORS), help=f"of {', '.join(PREDICTORS)}")
    parser.add_argument("--n", type=int, default=500, help="distinct architectures sampled from the labelled set")
    parser.add_argument("--ghn", default=None, help="GHN checkpoint (default: the shipped one)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/scorecard")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with user_errors(args.debug, interrupted="the proxy values computed so far are stored; run the same command to go on from there"):
        if args.n < 2:
            raise ValueError(f"expected --n of at least 2 architectures to rank, got {args.n} instead")
        for name in args.predictors:
            lookup(PREDICTORS, name, "scorecard predictor")
        labelled = read_labelled(args.labels)
        # The first property of a file is its main label: NB201 CSV cifar10_test_acc_200ep, nas.label clean_acc.
        target = args.target or next(iter(labelled.properties))
        if target not in labelled.properties:
            raise ValueError(f"{args.labels} has no {target!r} labels; it has {', '.join(labelled.properties)}")
        rows = distinct_rows(labelled)
        rows = rows[np.isfinite(labelled.properties[target][rows])]  # e.g. epochs_to_converge of a net that never did
        sample = np.sort(np.random.default_rng(args.seed).permutation(rows)[: args.n])
        archs = [labelled.archs[i] for i in sample]
        ghn = load_ghn(args.ghn)
        # One pass builds every feature kind the predictors read: the embedding is the first columns of
        # embedding+graph (nas.predictors.join_features).
        kinds = {PREDICTORS[name][1] for name in args.predictors}
        kind = "embedding+graph" if "embedding+graph" in kinds else "embedding"
        full, has_graph = labelled_features(ghn, labelled.space, archs, kind)
        # A net with no path from input to output computes a constant (chance accuracy): it has no graph,
        # so the GHN cannot take it; such architectures are left out for every proxy and predictor alike.
        log.info("%d of %d sampled distinct architectures have a graph; the rest are left out",
                 has_graph.sum(), len(archs))
        archs, full = [a for a, ok in zip(archs, has_graph) if ok], full[has_graph]
        features = {"embedding": full[:, :ghn.config.hid], kind: full}
        labels = labelled.properties[target][sample[has_graph]]
        if len(archs) < 2:
            raise ValueError(f"{args.labels}: expected at least 2 sampled architectures with a graph and a finite "
                             f"{target!r} to rank, got {len(archs)}")
        build = functools.partial(build_architecture, labelled.space)
        fold = cv_folds(len(archs), args.seed)
        store = ProxyStore.for_ghn(labelled.space, ghn, seed=args.seed, data_dir=args.data_dir)
        nets = [(architecture_key(labelled.space, a), functools.partial(build, a)) for a in archs]
        values = {name: store.values(name, nets) for name in args.proxies}
        table = {name: score(v, labels, fold, "proxy") for name, v in values.items()}
        if fold is None:
            log.info("%d nets are too few for %d-fold cross-validation: no predictors", len(archs), CV_FOLDS)
        else:
            for name in args.predictors:
                predictor, kind = PREDICTORS[name]
                values[name] = out_of_fold(predictor, features[kind], labels, fold, seed=args.seed)
                table[name] = score(values[name], labels, fold, "predictor")
        lines = _markdown(table, labelled, target, args, n_distinct=len(rows), n=len(archs), cv=fold is not None)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "scorecard.md").write_text("\n".join(lines) + "\n")
        nets = [{"arch": a, "label": float(labels[i]), "fold": None if fold is None else int(fold[i]),
                 **{name: _finite_or_none(v[i]) for name, v in values.items()}} for i, a in enumerate(archs)]
        record = {"args": vars(args), "space": labelled.space, "target": target, "recipe": labelled.recipe,
                  "cv": f"{CV_FOLDS}-fold, by distinct net" if fold is not None else None,
                  "table": {name: dataclasses.asdict(row) for name, row in table.items()}, "nets": nets}
        (out / "scorecard.json").write_text(json.dumps(record, indent=1))
        _plots(values, labels, table, out, f"{target} ({_recipe_name(labelled)})")
        print("\n".join(lines))
    return 0


def _markdown(table: dict[str, Score], labelled: LabelledSet, target: str, args: argparse.Namespace, *,
              n_distinct: int, n: int, cv: bool) -> list[str]:
    """The table and what it was measured on, as BENCHMARKS.md shows it."""
    lines = [f"{labelled.space} {target} ({_recipe_name(labelled)}): {n} architectures, a seeded sample (seed "
             f"{args.seed}) of the {n_distinct} distinct nets of {args.labels}, less nets without an input-output "
             f"path; GHN {args.ghn or 'shipped'}.", "",
             "| proxy or predictor | Kendall tau | Spearman rho | Kendall tau per test fold, mean ± sd | n |",
             "|---|---|---|---|---|"]
    for name, row in table.items():
        folds = "-" if row.fold_kendall_mean is None else f"{row.fold_kendall_mean:.3f} ± {row.fold_kendall_sd:.3f}"
        shown = f"{name} (out-of-fold)" if row.kind == "predictor" else name
        lines.append(f"| {shown} | {row.kendall:.3f} | {row.spearman:.3f} | {folds} | {row.n} |")
    if cv:
        lines += ["", f"Predictors are scored by out-of-fold predictions: {CV_FOLDS}-fold cross-validation by cell "
                  f"(by distinct net, so isomorphic strings of one NB201 cell are one net and never on both sides), "
                  f"seed {args.seed}. Every proxy is computed once per net and scored on the same nets and the same "
                  f"{CV_FOLDS} test folds."]
    return lines


def _recipe_name(labelled: LabelledSet) -> str:
    recipe = labelled.recipe
    return recipe.get("name") or f"SGD {recipe.get('epochs')} epoch(s) x {recipe.get('max_batches') or 'all'} batches"


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None  # JSON has no NaN


def _plots(values: dict[str, np.ndarray], labels: np.ndarray, table: dict[str, Score], out: Path,
           label_name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, v in values.items():
        ok = np.isfinite(v)
        fig, ax = plt.subplots(figsize=(4, 3.2), dpi=110)
        ax.scatter(v[ok], labels[ok], s=6, alpha=0.5, label=f"{int(ok.sum())} architectures")
        ax.set_xlabel(f"{name} (out-of-fold)" if table[name].kind == "predictor" else name)
        ax.set_ylabel(label_name)
        ax.set_title(f"{name}: tau {table[name].kendall:.2f}, rho {table[name].spearman:.2f}")
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(out / f"scatter_{name}.png")
        plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
