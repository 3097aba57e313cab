"""Write studies/README.md from the studies' storage and the random baseline's labels (run by run.sh)."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import optuna
import torch

from nas.search import top_trials

HERE = Path(__file__).resolve().parent
STORAGE = f"sqlite:///{HERE / 'studies.db'}"
SEARCHES = ["accuracy", "robustness", "efficiency", "trainability", "robustness+efficiency"]
MIN_LABELLED = 5  # random-search architectures with SGD labels before a median means anything


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = {name: optuna.load_study(study_name=name, storage=STORAGE) for name in SEARCHES + ["random-robustness"]}
    first = studies["accuracy"]
    recipe = first.user_attrs["final"]["recipe"]
    started = min(t.datetime_start for s in studies.values() for t in s.trials if t.datetime_start)
    lines = [
        "# Studies",
        "",
        "Searches on the DeepNets-1M space (`--space deepnets`, nets built at C=32) with the shipped GHN "
        f"(weights `{first.user_attrs['ghn_hash']}`), run by `bash studies/run.sh` on {started:%Y-%m-%d} on a "
        f"2-core CPU (no GPU), one thread per process, parts in parallel, seed {first.user_attrs['seed']}. Proxies score each trial on 512 "
        "CIFAR-10 validation images (held out of the training images). Every trained net gets the same SGD "
        f"budget: {recipe['epochs']} epoch of at most {recipe['max_batches']} batches of {recipe['batch_size']} "
        f"images (lr {recipe['lr']}, cosine), scored on {recipe['eval_batches']} test batches of 256, clean "
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

    labels_path = HERE / "random-robustness" / "labels.jsonl"
    labels = [json.loads(line) for line in labels_path.read_text().splitlines()] if labels_path.exists() else []
    noisy = [r["noisy_acc"] for r in labels]
    robust_final = studies["robustness"].user_attrs["final"]["trials"]
    top1 = next(r for r in robust_final if r["proxy_rank"] == 1)
    random_states = [t.state for t in studies["random-robustness"].trials]
    random_trials = random_states.count(optuna.trial.TrialState.COMPLETE)
    killed = random_states.count(optuna.trial.TrialState.FAIL)
    lines += [
        "",
        "## Robust search against random search",
        "",
        f"The random-search baseline (`random-robustness`: {random_trials} complete trials drawn by Optuna's "
        f"RandomSampler, seed 1; {killed} trial(s) FAILED when its worker was killed mid-run and were retried "
        f"with the same architecture on the re-run) "
        f"is a uniform sample of the space; its architectures are trained with the same SGD budget "
        f"(`studies/random-robustness/labels.jsonl`) to estimate the median true noisy accuracy of a random pick.",
        "",
        "| | noisy acc (%) |",
        "|---|---|",
        f"| robust search, top-1 by proxy (trial {top1['trial']}) | {top1['noisy_acc']:.2f} |",
        f"| robust search, best of its top {len(robust_final)} | {max(r['noisy_acc'] for r in robust_final):.2f} |",
        *[f"| random search, trained architecture {i + 1} ({r['train_time_s']:.0f} s of training) | "
          f"{r['noisy_acc']:.2f} |" for i, r in enumerate(labels)],
        "",
    ]
    if len(labels) < MIN_LABELLED:
        lines += [f"**Not decided yet.** {len(labels)} random-search architecture(s) are labelled, fewer than the "
                  f"{MIN_LABELLED} a median needs. Most nets trained with this budget end at chance level (10%): they "
                  "have not started learning, so no comparison at this budget would say anything about the proxies. "
                  "The comparison needs the paper's SGD budget for the final candidates and the random sample "
                  "(`python -m nas.label --recipe paper` on a GPU).", ""]
    else:
        median = statistics.median(noisy)
        # Binomial standard error of one accuracy measured on n test images (the median's is larger).
        n_test = recipe["eval_batches"] * 256 if recipe["eval_batches"] else 10_000
        se = 100 * math.sqrt(top1["noisy_acc"] / 100 * (1 - top1["noisy_acc"] / 100) / n_test)
        gap = top1["noisy_acc"] - median
        verdict = ("beats" if gap > 2 * se else "does not beat" if gap < -2 * se
                   else "is within two standard errors of")
        lines += [f"The robust search's pick **{verdict}** the random-search median of {len(labels)}: "
                  f"{top1['noisy_acc']:.2f}% vs {median:.2f}%, a gap of {gap:+.2f} points against a standard error "
                  f"of {se:.2f} for one accuracy on {n_test} noisy test images (torch {torch.__version__}). Nets at "
                  f"chance level (10%) after this budget have not started learning: such a comparison says nothing "
                  f"about the proxies.", ""]
    lines += [
        "Each study folder has `report.md` (top-k table, final training, plots) and `trials.csv` (every trial with "
        "its proxies and architecture). The storage itself (`studies/studies.db`) is not committed; "
        "`bash studies/run.sh` rebuilds it.",
    ]
    (HERE / "README.md").write_text("\n".join(lines) + "\n")
    print((HERE / "README.md").read_text())


if __name__ == "__main__":
    main()
