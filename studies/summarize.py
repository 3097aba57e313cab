"""Write studies/README.md from the studies' storage and the random baseline's labels (run by run.sh)."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import optuna
import torch

from nas.report import plural, top_trials

HERE = Path(__file__).resolve().parent
STORAGE = f"sqlite:///{HERE / 'studies.db'}"
SEARCHES = ["accuracy", "robustness", "efficiency", "trainability", "robustness+efficiency"]
MIN_LABELLED = 5  # random-search architectures with SGD labels before their median means anything


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = {name: optuna.load_study(study_name=name, storage=STORAGE) for name in SEARCHES + ["random-robustness"]}
    first = studies["accuracy"]
    recipe = first.user_attrs["final"]["recipe"]
    card_json = json.loads((HERE.parent / "ghn_core" / "checkpoints" / "ghn2_cifar10.json").read_text())
    card = {"deepnets_test": card_json["evaluation"]["deepnets_test"]["mean"], "steps": card_json["training"]["steps"]}
    started = min(t.datetime_start for s in studies.values() for t in s.trials if t.datetime_start)
    lines = [
        "# Studies",
        "",
        "Searches on the DeepNets-1M space (`--space deepnets`, nets built at C=32) with the shipped GHN "
        f"(weights `{first.user_attrs['ghn_hash']}`), run by `bash studies/run.sh` on {started:%Y-%m-%d} on a "
        f"2-core CPU (no GPU), one thread per process, parts in parallel, seed {first.user_attrs['seed']}. Proxies score each trial on 512 "
        "CIFAR-10 validation images (held out of the training images). Every trained net gets the same SGD "
        f"budget: {plural(recipe['epochs'], 'epoch')} of at most {plural(recipe['max_batches'], 'batch', 'batches')} "
        f"of {recipe['batch_size']} images (lr {recipe['lr']}, cosine), scored on {recipe['eval_batches']} test "
        "batches of 256, clean "
        "and under Gaussian noise (sigma 0.08). At this budget true accuracies are low and close together: "
        "they rank how fast nets start learning, not their 50-epoch accuracy.",
        "",
        "| study | objectives | trials (complete / pruned) | top-1 by proxy | its proxy values | clean acc (%) | noisy acc (%) | report |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in SEARCHES:
        s = studies[name]
        states = [t.state for t in s.trials]
        final = {r["trial"]: r for r in s.user_attrs["final"]["trials"]}
        best = top_trials(s, 1)[0]
        values = ", ".join(f"{n} {v:.3g}" for n, v in zip(s.metric_names, best.values))
        lines.append(f"| `{name}` | {', '.join(s.metric_names)} | {states.count(optuna.trial.TrialState.COMPLETE)} / "
                     f"{states.count(optuna.trial.TrialState.PRUNED)} | {best.number} | {values} | "
                     f"{final[best.number]['clean_acc']:.2f} | {final[best.number]['noisy_acc']:.2f} | "
                     f"[report]({name}/report.md) |")

    def read(name: str) -> list[dict]:
        path = HERE / "compare" / name
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def position(r: dict, archs: str) -> int:  # records are appended in the order they finish
        return (HERE / archs).read_text().splitlines().index(r["arch"]) + 1

    picks = {  # search -> (its top-k by proxy, trained; the file ranking its architectures)
        "robust search": (sorted(read("robust.jsonl"), key=lambda r: position(r, "compare/robust_archs.txt")),
                          "compare/robust_archs.txt"),
        "label-guided robust search": (
            sorted(read("labelled.jsonl"), key=lambda r: position(r, "compare/labelled_archs.txt")),
            "compare/labelled_archs.txt"),
    }
    random_ = sorted(read("random.jsonl"), key=lambda r: position(r, "random-robustness/archs.txt"))
    random_states = [t.state for t in studies["random-robustness"].trials]
    killed = random_states.count(optuna.trial.TrialState.FAIL)
    budget = random_[0]["recipe"] if random_ else None
    lines += [
        "",
        "## Robust search against random search",
        "",
        f"The random-search baseline (`random-robustness`) has {random_states.count(optuna.trial.TrialState.COMPLETE)} "
        f"complete trials drawn by Optuna's RandomSampler (seed 1; {killed} trial(s) FAILED when its worker was "
        "killed mid-run and were retried with the same architecture on the re-run): a uniform sample of the space. "
        "`bash studies/run.sh compare` trains the robust search's top architectures by proxy and the baseline's "
        "architectures with one `nas.label` recipe (`studies/compare/*.jsonl`)"
        + (f": {plural(budget['epochs'], 'epoch')} of {plural(budget['max_batches'], 'batch', 'batches')} of "
           f"{budget['batch_size']}, scored on {budget['eval_batches']} test batches of 256." if budget else ".")
        + " `bash studies/run.sh labelled` runs the robust search once more with `--labels "
        "studies/compare/random.jsonl`: its objective is then the paper's property predictor, an RBF SVR from "
        "the GHN's graph embedding to those random nets' noisy accuracy, and its top architectures are "
        "trained alike. That search has seen the random baseline's labels, so it costs their SGD training "
        "too; it answers whether the GHN's embedding carries what a search needs, where the GHN's "
        "predicted parameters (the plain robust search) do not.",
        "",
        "| | architecture | noisy acc (%) | clean acc (%) | training (s) |",
        "|---|---|---|---|---|",
    ]
    for search, (rows, archs) in picks.items():
        lines += [f"| {search}, proxy rank {position(r, archs)} | line {position(r, archs)} of `{archs}` | "
                  f"{r['noisy_acc']:.2f} | {r['clean_acc']:.2f} | {r['train_time_s']:.0f} |" for r in rows]
    lines += [f"| random search | line {position(r, 'random-robustness/archs.txt')} of `random-robustness/archs.txt` | "
              f"{r['noisy_acc']:.2f} | {r['clean_acc']:.2f} | {r['train_time_s']:.0f} |" for r in random_]
    lines.append("")
    if len(random_) < MIN_LABELLED:
        lines += [f"**Not decided yet.** {plural(len(random_), 'random-search architecture')} "
                  f"{'is' if len(random_) == 1 else 'are'} trained; the comparison "
                  f"needs at least {MIN_LABELLED}.", ""]
    else:
        median = statistics.median(r["noisy_acc"] for r in random_)
        # Binomial standard error of one accuracy measured on n test images (the median's is larger).
        n_test = budget["eval_batches"] * 256 if budget["eval_batches"] else 10_000
        lines += [f"Median noisy accuracy of the {len(random_)} random-search architectures: **{median:.2f}%**. "
                  "A verdict needs a gap of two standard errors of one accuracy on "
                  f"{n_test} noisy test images (binomial; torch {torch.__version__}).", ""]
        for search, (rows, _) in picks.items():
            if not rows:
                lines += [f"- {search}: not trained yet.", ""]
                continue
            for what, acc in (("its top-1 by proxy", rows[0]["noisy_acc"]),
                              (f"the best of its {plural(len(rows), 'trained finalist')}", max(r["noisy_acc"] for r in rows))):
                se = 100 * math.sqrt(acc / 100 * (1 - acc / 100) / n_test)
                gap = acc - median
                verdict = ("beats" if gap > 2 * se else "does not beat" if gap < -2 * se
                           else "is within two standard errors of")
                lines.append(f"- {search}, {what}: {acc:.2f}% **{verdict}** the random median "
                             f"({gap:+.2f} points, standard error {se:.2f}).")
            lines.append("")
        seen = set((HERE / "random-robustness" / "archs.txt").read_text().splitlines())
        reused = sum(r["arch"] in seen for r in picks["label-guided robust search"][0])
        if picks["label-guided robust search"][0]:
            lines += [f"{reused} of the label-guided search's {len(picks['label-guided robust search'][0])} trained "
                      f"finalists are among the {len(random_)} labelled random nets its regressor was fitted on.", ""]
        card_path = HERE.parent / "benchmarks" / "scorecard_deepnets" / "scorecard.json"
        if card_path.exists() and picks["label-guided robust search"][0]:
            svr = json.loads(card_path.read_text())["table"]["svr(embedding)"]
            lines += ["How much of the label-guided search's lead is the regressor and how much is chance is not "
                      "settled. On these labels the same SVR, fitted on half of the random nets, ranks the other "
                      f"{svr['n']} at Spearman {svr['spearman']:.2f} "
                      "([benchmarks/scorecard_deepnets](../benchmarks/scorecard_deepnets/scorecard.md)). The search "
                      "fits it on all of them, and it is one search with one seed.", ""]
        lines += [f"This is one SGD budget far below the paper's 50 epochs, one seed and {len(random_)} random "
                  "nets: evidence at this budget, not a ranking of 50-epoch accuracy. The plain robust proxy rests on "
                  f"a GHN whose predicted parameters reach {card['deepnets_test']:.1f}% on DeepNets-1M test nets after "
                  f"{card['steps']:,} CPU training steps (its model card); its ranking is only as good as that GHN.", ""]
    lines += [
        "Each study folder has `report.md` (top-k table, final training, plots) and `trials.csv` (every trial with "
        "its proxies and architecture). The storage itself (`studies/studies.db`) is not committed; "
        "`bash studies/run.sh` rebuilds it.",
    ]
    (HERE / "README.md").write_text("\n".join(lines) + "\n")
    print((HERE / "README.md").read_text())


if __name__ == "__main__":
    main()
