"""How good is the architecture a strategy hands back? ``python -m nas.benchmark --pool labelled.csv``.

Runs search strategies against a labelled pool (an NB201 CSV or a ``nas.label`` JSONL), over seeds,
and looks up the true label of each strategy's final pick:

    random@K          random search that spends K labels and keeps the best, computed exactly
    <proxy>@N         no labels: the best of N random pool nets by a proxy (NASWOT's protocol, N = 100;
                      ``--sample N``: a smaller N gives each seed of a small pool its own draw)
    predictor@N       the same with the property predictor shipped beside the GHN
    deepnets-predictor@N  on another space's pool: the DeepNets-1M predictor of the objective's label
                      (fitted on our DeepNets-1M labels, none of this pool's), a zero-label strategy
    budget@K          nas.search --label-budget K, run unchanged against the table (nas.budget)

Each strategy reports the mean and standard deviation of its pick's true label over the seeds, its
regret to the pool's best, its percentile within the pool, and ``labels_spent``: every label of the
pool's own benchmark its choices rest on, whether spent during the search or before it (a predictor
fitted on the pool's cells counts them). Nets that compute the same function (NB201 strings of one
cell) share the proxy values and features of the first of them; each keeps its own label.

Proxy values are kept per net (``nas.proxies.ProxyStore``, under ``~/.cache/ghn-nas/proxies`` or
``$GHN_NAS_CACHE``), so pools that share nets share them and a run resumes where it stopped;
``--out`` gets ``benchmark.md``, ``benchmark.json`` and ``benchmark.png``.
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import optuna
from scipy.special import gammaln
from tqdm.auto import tqdm

from ghn_core.utils import lookup, positive_int, user_errors

from .budget import Candidates, LabelBudgetSampler, label_objective, label_property, labelled_trials, make_candidates
from .oracle import TableOracle
from .pool import Pool, read_pool

__all__ = ["random_search_curve", "pick_stats", "run_benchmark", "main"]

log = logging.getLogger("nas.benchmark")

ZERO_COST = ("params", "naswot", "synflow")
GHN_RAW = {"accuracy": "ghn_accuracy", "robustness": "ghn_robustness", "trainability": "trainability"}
RANDOM_KS = (1, 10, 20, 50, 100, 150)
BUDGET_KS = (10, 20, 50)
PROXY_SAMPLE = 100


def random_search_curve(y: np.ndarray, k: int) -> tuple[float, float, float]:
    """Exact (mean, sd, mean percentile) of the best label among ``k`` pool nets drawn without
    replacement: P(best is the i-th smallest) = [C(i, k) - C(i-1, k)] / C(n, k)."""
    y = np.sort(np.asarray(y, dtype=float))
    n = len(y)
    if not 1 <= k <= n:
        raise ValueError(f"random search with {k} labels on a pool of {n}")
    i = np.arange(1, n + 1)

    def log_comb(a: np.ndarray, b: int) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            out = gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)
        return np.where(a >= b, out, -np.inf)

    p = np.exp(log_comb(i, k) - log_comb(np.array(n), k)) - np.exp(log_comb(i - 1, k) - log_comb(np.array(n), k))
    mean = float(p @ y)
    sd = float(np.sqrt(max(p @ y**2 - mean**2, 0.0)))
    return mean, sd, float(p @ _percentiles(y))


def _percentiles(y: np.ndarray) -> np.ndarray:
    """Each label's percentile in the pool: the % of the pool's labels at or below it."""
    return 100.0 * np.searchsorted(np.sort(y), y, side="right") / len(y)


def pick_stats(y: np.ndarray, picks: Sequence[int], labels_spent: int) -> dict[str, float]:
    """Summary of one strategy's picks (pool row indices, one per seed)."""
    values = y[list(picks)]
    return {"mean": float(values.mean()), "std": float(values.std()), "regret": float(y.max() - values.mean()),
            "percentile": float(_percentiles(y)[list(picks)].mean()), "labels_spent": int(labels_spent),
            "seeds": len(values), "distinct_picks": len(set(picks))}


@dataclass
class BenchmarkInputs:
    pool: Pool
    property: str
    y: np.ndarray                    # (n,) the true label of each pool net
    candidates: Candidates
    scores: dict[str, np.ndarray]    # strategy name -> (n,) zero-label score (higher is better; NaN: none)
    seen: dict[str, int]             # strategy name -> labels of this pool it was fitted on
    proxy_rows: np.ndarray | None = None  # (n,) the rows the proxies were computed on (None: all)


def _sample(n: int, seed: int, size: int) -> np.ndarray:
    """The pool rows a zero-label strategy looks at for ``seed``."""
    return np.random.default_rng(seed).permutation(n)[:size]


def looked_at(n: int, seeds: int, sample: int) -> np.ndarray:
    """(n,) mask of the rows some seed's zero-label strategy looks at: the only ones a proxy is needed on."""
    mask = np.zeros(n, dtype=bool)
    for seed in range(seeds):
        mask[_sample(n, seed, min(sample, n))] = True
    return mask


def _pick_by_score(score: np.ndarray, seed: int, n: int) -> int:
    """NASWOT's protocol: the best-scored of ``n`` random nets (nets without a score never win)."""
    sample = _sample(len(score), seed, n)
    values = np.where(np.isfinite(score[sample]), score[sample], -np.inf)
    return int(sample[np.argmax(values)])


def _budget_pick(inputs: BenchmarkInputs, k: int, seed: int) -> int:
    """``nas.search --label-budget k`` against the table: its sampler and objective, in memory."""
    from .search import run_until

    study = optuna.create_study(direction="maximize", sampler=LabelBudgetSampler(inputs.candidates, seed))
    objective = label_objective(inputs.candidates, TableOracle(inputs.pool.labelled), inputs.property, k)
    counts = (lambda s: (len(labelled_trials(s)), 0))
    run_until(study, objective, k, counts=counts, progress=False)
    return int(study.best_trial.params["pool_index"])


def run_benchmark(inputs: BenchmarkInputs, seeds: int, *, budgets: Sequence[int] = BUDGET_KS,
                  random_ks: Sequence[int] = RANDOM_KS, sample: int = PROXY_SAMPLE,
                  progress: bool = True) -> dict[str, dict]:
    """Every strategy over ``seeds`` seeds (random search exactly): ``{strategy: pick_stats(...)}``.
    Zero-label strategies pick among ``sample`` random pool nets per seed (all of a smaller pool)."""
    y, n = inputs.y, len(inputs.y)
    results: dict[str, dict] = {}
    for k in random_ks:
        if k <= n:
            mean, sd, pct = random_search_curve(y, k)
            results[f"random@{k}"] = {"mean": mean, "std": sd, "regret": float(y.max() - mean), "percentile": pct,
                                      "labels_spent": k, "seeds": "exact"}
    sample = min(sample, n)
    if inputs.proxy_rows is not None and (looked_at(n, seeds, sample) & ~inputs.proxy_rows).any():
        raise ValueError(f"{seeds} seeds of {sample} nets look at nets the proxies were not computed on: "
                         f"prepare() with these seeds and sample")
    for name, score in inputs.scores.items():
        picks = [_pick_by_score(score, seed, sample) for seed in range(seeds)]
        results[f"{name}@{sample}"] = pick_stats(y, picks, inputs.seen.get(name, 0))
    for k in budgets:
        if k <= len(set(inputs.candidates.keys)):
            picks = [_budget_pick(inputs, k, seed) for seed in tqdm(range(seeds), desc=f"budget@{k}", unit="seed",
                                                                   disable=not progress or None)]
            results[f"budget@{k}"] = pick_stats(y, picks, k)
    return results


def _proxy_scores(pool: Pool, candidates: Candidates, proxies: Sequence[str], ghn, rows: np.ndarray, *,
                  n_images: int, data_dir: str | None, progress: bool) -> dict[str, np.ndarray]:
    """Each proxy's value (higher is better) on the pool nets of ``rows`` (a mask; NaN elsewhere), from the
    GHN's :class:`ProxyStore`."""
    from .label import build_architecture
    from .proxies import PROXIES, ProxyStore

    store = ProxyStore.for_ghn(pool.space, ghn, n_images=n_images, data_dir=data_dir)
    index = np.flatnonzero(rows)
    nets = [(candidates.keys[i], functools.partial(build_architecture, pool.space, pool.archs[i])
             if candidates.has_features[i] else lambda: None) for i in index]
    scores = {}
    for name in proxies:
        scores[name] = np.full(len(pool), np.nan)
        sign = 1.0 if PROXIES[name].direction == "maximize" else -1.0
        scores[name][index] = sign * store.values(name, nets, progress=progress)
    return scores


def prepare(pool_path: str, objective: str | None, *, ghn_path: str | None = None, n_images: int = 512,
            data_dir: str | None = None, proxies: Sequence[str] | None = None, progress: bool = True,
            prop: str | None = None, seeds: int | None = None, sample: int = PROXY_SAMPLE) -> BenchmarkInputs:
    """Read the pool, embed its nets, and score them with every zero-label strategy. Picks are judged by
    ``prop`` (any property of the pool, by name), else by the objective's label (``nas.budget.label_property``:
    robustness by noisy accuracy, never by clean). With ``seeds``, the proxies are computed only on the nets
    that ``seeds`` seeds of ``sample`` nets look at (:func:`looked_at`; the predictors score every net)."""
    from ghn_core import load_ghn

    from .predictors import join_features, load_predictors, predictors_path

    pool = read_pool(pool_path)
    if pool.labelled is None:
        raise ValueError(f"{pool_path} has no labels: a benchmark pool is an NB201 CSV or nas.label JSONL")
    available = list(pool.labelled.properties)
    if objective is None:
        objective = "robustness" if "noisy_acc" in available else "accuracy"
    prop = prop or label_property(objective, available)
    y = pool.labelled.properties[prop]  # an unknown name: ColumnError listing the pool's properties
    if not np.isfinite(y).all():
        raise ValueError(f"{pool_path}: {int((~np.isfinite(y)).sum())} nets have no {prop}")
    ghn = load_ghn(ghn_path)
    candidates = make_candidates(ghn, pool, objective=objective, progress=progress)
    proxies = list(proxies if proxies is not None else (*ZERO_COST, GHN_RAW[objective]))
    rows = looked_at(len(pool), seeds, sample) if seeds is not None else np.ones(len(pool), dtype=bool)
    scores = _proxy_scores(pool, candidates, proxies, ghn, rows, n_images=n_images, data_dir=data_dir,
                           progress=progress)
    seen: dict[str, int] = {}
    shipped = predictors_path(ghn_path)
    bundle = load_predictors(ghn, shipped) if shipped.is_file() else {}
    has = candidates.has_features

    def predicted(predictor) -> np.ndarray:
        score = np.full(len(pool), np.nan)
        score[has] = predictor.predict(join_features(predictor.features, candidates.embedding[has],
                                                     candidates.cheap[has]))
        return score

    if (pool.space, prop) in bundle:
        predictor = bundle[(pool.space, prop)]
        scores["predictor"] = predicted(predictor)
        # Honest accounting: every label of this benchmark the predictor was fitted on counts, in the pool or not.
        seen["predictor"] = int(predictor.fitted_on["n"])
        overlap = len(predictor.seen & set(candidates.keys))
        if overlap:
            log.warning("the shipped %s predictor was fitted on %d of this pool's %d nets: its pick is not a "
                        "zero-label result", prop, overlap, len(set(candidates.keys)))
    deepnets_label = label_property(objective)  # clean_acc, noisy_acc, train_acc_mean
    if pool.space != "deepnets" and ("deepnets", deepnets_label) in bundle:
        # fitted on DeepNets-1M nets only: no label of this pool's space (so none of its labels) spent
        scores["deepnets-predictor"] = predicted(bundle[("deepnets", deepnets_label)])
    return BenchmarkInputs(pool, prop, y, candidates, scores, seen, None if seeds is None else rows)


def markdown(results: dict[str, dict], pool: dict) -> str:
    """The results as a markdown table, best first within each kind of strategy."""
    rows = [f"Pool: {pool['source']} ({pool['size']} nets, {pool['property']}; best {pool['best']:.2f}, "
            f"median {pool['median']:.2f})", "",
            "| strategy | labels spent | true label of the pick | regret | percentile in pool | seeds |",
            "|---|---|---|---|---|---|"]
    for name, r in results.items():
        # a small pool can leave a strategy no choice: every seed picks the same net
        seeds = f"{r['seeds']} (one pick)" if r.get("distinct_picks") == 1 else r["seeds"]
        rows.append(f"| {name} | {r['labels_spent']} | {r['mean']:.2f} ± {r['std']:.2f} | {r['regret']:.2f} | "
                    f"{r['percentile']:.1f} | {seeds} |")
    return "\n".join(rows) + "\n"


def plot(results: dict[str, dict], pool: dict, y: np.ndarray, path: Path) -> None:
    """True label of the pick against labels spent: random search's exact curve, the label-budget
    search, and the zero-label strategies as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = np.unique(np.geomspace(1, min(200, len(y)), 60).astype(int))
    curve = np.array([random_search_curve(y, k)[0] for k in ks])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(ks, curve, color="0.3", label="random search (exact)")
    budget = [(r["labels_spent"], r["mean"], r["std"]) for n, r in results.items() if n.startswith("budget@")]
    if budget:
        k, m, s = map(np.array, zip(*budget))
        ax.errorbar(k, m, yerr=s, fmt="o-", color="C3", capsize=3, label="label-budget search (mean ± sd)")
    for i, (name, r) in enumerate((n, r) for n, r in results.items() if not n.startswith(("random@", "budget@"))):
        spent = f"fitted on {r['labels_spent']} labels" if r["labels_spent"] else "no labels"
        ax.axhline(r["mean"], color=f"C{i}", ls="--", lw=1, label=f"{name} ({spent})")
    ax.axhline(pool["best"], color="k", ls=":", lw=1, label="pool's best")
    ax.set_xscale("log")
    ax.set_xlabel("labels spent")
    ax.set_ylabel(f"true {pool['property']} of the pick")
    # the top half of the pool, stretched down to show every strategy's pick
    picks = [r["mean"] for name, r in results.items() if not name.startswith("random@")]
    ax.set_ylim(min([np.percentile(y, 50), *(m - 0.5 for m in picks)]), pool["best"] + 0.2)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"{Path(pool['source']).name}: {pool['size']} nets", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nas.benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", required=True, help="a labelled pool: an NB201 CSV or nas.label JSONL")
    parser.add_argument("--objective", choices=list(GHN_RAW), default=None,
                        help="what the picks are judged by (default: robustness if the pool has noisy_acc, "
                             "else accuracy)")
    parser.add_argument("--property", default=None, metavar="NAME",
                        help="judge the picks by this property of the pool, e.g. a column of an NB201 CSV (default: "
                             "the objective's label: accuracy cifar10_test_acc_200ep or clean_acc, robustness "
                             "cifar10_noisy_acc_200ep or noisy_acc)")
    parser.add_argument("--seeds", type=positive_int, default=20, help="seeds per strategy (default: %(default)s)")
    parser.add_argument("--budgets", type=positive_int, nargs="*", default=list(BUDGET_KS),
                        help="label budgets of the label-budget search (default: %(default)s)")
    parser.add_argument("--sample", type=positive_int, default=PROXY_SAMPLE,
                        help="zero-label strategies pick the best of this many random pool nets per seed "
                             "(default: %(default)s, NASWOT's protocol)")
    parser.add_argument("--proxies", nargs="*", default=None,
                        help=f"zero-label proxies (default: {' '.join(ZERO_COST)} and the objective's raw GHN proxy)")
    parser.add_argument("--n-images", type=positive_int, default=512,
                        help="validation images the proxies score on (default: %(default)s)")
    parser.add_argument("--ghn", default=None, help="GHN checkpoint (default: the shipped one)")
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 folder (default: $GHN_NAS_DATA, else a download)")
    parser.add_argument("--out", default=None, help="folder for benchmark.md/.json/.png (default: none written)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with user_errors(args.debug, interrupted="the proxy values computed so far are stored; run the same command to go on from there"):
        from .proxies import PROXIES

        for name in args.proxies or ():
            lookup(PROXIES, name, "proxy")
        inputs = prepare(args.pool, args.objective, ghn_path=args.ghn, n_images=args.n_images, data_dir=args.data_dir,
                         proxies=args.proxies, progress=not args.json, prop=args.property, seeds=args.seeds,
                         sample=args.sample)
        results = run_benchmark(inputs, args.seeds, budgets=args.budgets, sample=args.sample, progress=not args.json)
        y = inputs.y
        pool = {"size": len(y), "best": float(y.max()), "median": float(np.median(y)), "property": inputs.property,
                "source": args.pool}
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            (out / "benchmark.json").write_text(json.dumps({**results, "pool": pool}, indent=1) + "\n")
            (out / "benchmark.md").write_text(markdown(results, pool))
            plot(results, pool, y, out / "benchmark.png")
        if args.json:
            print(json.dumps({**results, "pool": pool}))
        else:
            print(markdown(results, pool), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
