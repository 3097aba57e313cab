"""Write studies/README.md from the studies' storage and the random baseline's labels (run by run.sh)."""
from __future__ import annotations

import json
import statistics
import subprocess
from pathlib import Path

import optuna
import torch

from nas.search import top_trials

HERE = Path(__file__).resolve().parent
STORAGE = f"sqlite:///{HERE / 'studies.db'}"
SEARCHES = ["accuracy", "robustness", "efficiency", "trainability", "robustness+efficiency"]


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = {name: optuna.load_study(study_name=name, storage=STORAGE) for name in SEARCHES + ["random-robustness"]}
    first = studies["accuracy"]
    recipe = first.user_attrs["final"]["recipe"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# Studies",
        "",
        "Searches on the DeepNets-1M space (`--space deepnets`, nets built at C=32) with the shipped GHN "
        f"(weights `{first.user_attrs['ghn_hash']}`), run by `bash studies/run.sh` (code at `{commit}`) on a "
        f"2-core CPU, one thread per process, seed {first.user_attrs['seed']}. Proxies score each trial on 512 "
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

    labels = [json.loads(line) for line in (HERE / "random-robustness" / "labels.jsonl").read_text().splitlines()]
    noisy = [r["noisy_acc"] for r in labels]
    robust = studies["robustness"]
    robust_final = robust.user_attrs["final"]["trials"]
    top1 = next(r for r in robust_final if r["proxy_rank"] == 1)
    median = statistics.median(noisy)
    verdict = "beats" if top1["noisy_acc"] > median else "does not beat"
    random_trials = sum(t.state == optuna.trial.TrialState.COMPLETE for t in studies["random-robustness"].trials)
    lines += [
        "",
        "## Robust search against random search",
        "",
        f"The random-search baseline (`random-robustness`: the same {random_trials} trials drawn by Optuna's "
        f"RandomSampler) is a uniform sample of the space; its first {len(labels)} architectures were trained "
        f"with the same SGD budget (`studies/random-robustness/labels.jsonl`) to estimate the median true noisy "
        f"accuracy of a random-search pick.",
        "",
        "| | noisy acc (%) |",
        "|---|---|",
        f"| robust search, top-1 by proxy (trial {top1['trial']}) | {top1['noisy_acc']:.2f} |",
        f"| robust search, best of its top {len(robust_final)} | {max(r['noisy_acc'] for r in robust_final):.2f} |",
        f"| random search, median of {len(labels)} trained | {median:.2f} |",
        f"| random search, min / max of those | {min(noisy):.2f} / {max(noisy):.2f} |",
        "",
        f"The robust search's pick **{verdict}** the random-search median "
        f"({top1['noisy_acc']:.2f}% vs {median:.2f}%, {recipe['eval_batches'] * 256} noisy test images; "
        f"torch {torch.__version__}).",
        "",
        "Each study folder has `report.md` (top-k table, final training, plots) and `trials.csv` (every trial with "
        "its proxies and architecture). The storage itself (`studies/studies.db`) is not committed; "
        "`bash studies/run.sh` rebuilds it.",
    ]
    (HERE / "README.md").write_text("\n".join(lines) + "\n")
    print((HERE / "README.md").read_text())


if __name__ == "__main__":
    main()
