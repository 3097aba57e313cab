"""Write studies/README.md from the studies' storage, the shipped DeepNets-1M labels (the random
baseline) and the tabular search benchmarks in benchmarks/ (run by run.sh)."""
from __future__ import annotations

import json
import math
import platform
import statistics
from pathlib import Path

import numpy as np
import optuna
import torch

from nas.benchmark import ZERO_COST
from nas.label import read_labelled
from nas.predictors import architecture_key
from nas.report import plural, top_trials

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STORAGE = f"sqlite:///{HERE / 'studies.db'}"
SEARCHES = ["robustness", "accuracy", "efficiency", "trainability", "robustness+efficiency"]
RANDOM_LABELS = ROOT / "nas" / "data" / "deepnets_cpu.jsonl"  # a uniform sample of the space, the same recipe
FITTED_ON = 101  # its first lines, the labels the shipped predictors were fitted on when the studies ran (session 9)
BENCHMARKS = {"deepnets": ROOT / "benchmarks" / "search_deepnets_heldout101" / "benchmark.json",
              "deepnets_budget": ROOT / "benchmarks" / "search_deepnets_heldout" / "benchmark.json",
              "nb201": ROOT / "benchmarks" / "search_nb201" / "benchmark.json"}


def ordinal(x: float) -> str:
    n = round(x)
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def percentile(value: float, population: np.ndarray) -> float:
    """Share of the population below ``value``, ties counted half (in %)."""
    return 100 * (np.mean(population < value) + 0.5 * np.mean(population == value))


def recipe_fidelity(recipe: dict) -> str:
    """What the label fidelity benchmark measured for this SGD recipe on NB201 (clean label against
    200-epoch accuracy, noisy label against 200-epoch noisy accuracy), if it ran it."""
    def measured(name: str) -> dict | None:
        path = ROOT / "benchmarks" / "label_fidelity" / name
        rows = json.loads(path.read_text())["recipes"] if path.exists() else {}
        return next((r["all"] for r in rows.values() if r["recipe"] == recipe), None)

    clean, noisy = measured("fidelity.json"), measured("fidelity_noisy_truth.json")
    if clean is None:
        return "The label fidelity benchmark did not measure this recipe."
    text = (f"On {clean['n']} NB201 cells this recipe ranks like 200-epoch training at Spearman "
            f"{clean['spearman']:.2f} (BENCHMARKS.md, label fidelity).")
    if noisy is not None:
        text += (f" Its noisy label ranks the same cells' 200-epoch noisy accuracy at Spearman {noisy['spearman']:.2f} "
                 f"({noisy['n']} cells): it does not tell noise-robust nets apart, so the noisy accuracy below is "
                 "accuracy under noise after a short training, not robustness (BENCHMARKS.md, noise robustness).")
    return text


def completed(study: optuna.Study) -> int:
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def studies_table(studies: dict[str, optuna.Study]) -> list[str]:
    lines = ["| study | proxies | trials (complete / pruned) | top-1 by proxy | its proxy values | clean acc (%) "
             "| noisy acc (%) | report |", "|---|---|---|---|---|---|---|---|"]
    for name, s in studies.items():
        states = [t.state for t in s.trials]
        final = {r["trial"]: r for r in s.user_attrs.get("final", {}).get("trials", [])}
        best = top_trials(s, 1)[0]
        values = ", ".join(f"{n} {v:.3g}" for n, v in zip(s.metric_names, best.values))
        truth = final.get(best.number)
        clean, noisy = (f"{truth['clean_acc']:.2f}", f"{truth['noisy_acc']:.2f}") if truth else ("-", "-")
        lines.append(f"| `{name}` | {', '.join(s.metric_names)} | {states.count(optuna.trial.TrialState.COMPLETE)} / "
                     f"{states.count(optuna.trial.TrialState.PRUNED)} | {best.number} | {values} | {clean} | {noisy} "
                     f"| [report]({name}/report.md) |")
    return lines


def robust_against_random(study: optuna.Study) -> list[str]:
    labelled = read_labelled(RANDOM_LABELS)
    noisy = labelled.properties["noisy_acc"]
    median = float(np.median(noisy))
    final = study.user_attrs["final"]
    n_test = final["test_images"]
    seen = {architecture_key("deepnets", a) for a in labelled.archs}
    lines = [
        f"The random baseline is the {len(noisy)} nets of `nas/data/deepnets_cpu.jsonl`: a uniform sample of the "
        "space (`nas.label --space deepnets --sample 400 --seed 0`), labelled by the same recipe from random init. "
        f"The shipped noisy-accuracy predictor that scored the robust search had been fitted on the first {FITTED_ON} "
        f"of them (the rest were labelled after the study ran); the search draws new nets, so its picks were never "
        "labelled before.",
        "",
        "| robust search pick | trial | noisy acc (%) | clean acc (%) | percentile among the random nets |",
        "|---|---|---|---|---|",
    ]
    records = sorted(final["trials"], key=lambda r: r["proxy_rank"])
    by_number = {t.number: t for t in study.trials}
    for r in records:
        lines.append(f"| proxy rank {r['proxy_rank']} | {r['trial']} | {r['noisy_acc']:.2f} | {r['clean_acc']:.2f} "
                     f"| {percentile(r['noisy_acc'], noisy):.0f} |")
    reused = sum(architecture_key("deepnets", by_number[r["trial"]].user_attrs["architecture"]) in seen
                 for r in records)
    lines += ["", f"Random nets: median noisy accuracy **{median:.2f}%**, mean {noisy.mean():.2f}%, best "
              f"{noisy.max():.2f}%. A verdict needs a gap of two standard errors of one accuracy on {n_test} noisy "
              f"test images (binomial). {reused} of the {plural(len(records), 'pick')} are among the labelled nets.",
              ""]
    for what, acc in (("its top-1 by proxy", records[0]["noisy_acc"]),
                      (f"the best of its {plural(len(records), 'trained pick')}", max(r["noisy_acc"] for r in records))):
        se = 100 * math.sqrt(acc / 100 * (1 - acc / 100) / n_test)
        gap = acc - median
        verdict = "beats" if gap > 2 * se else "does not beat" if gap < -2 * se else "is within two standard errors of"
        lines.append(f"- The robust search, {what}: {acc:.2f}% **{verdict}** the random median "
                     f"({gap:+.2f} points, standard error {se:.2f}).")
    return lines + ["", "One search with one seed against one sample: evidence, not a distribution. The tabular "
                    "benchmark above repeats the choice over many seeds on nets the predictor never saw."]


def tabular_answers() -> list[str]:
    if not all(p.exists() for p in BENCHMARKS.values()):
        return ["The tabular benchmarks are not in `benchmarks/` yet (`python -m nas.benchmark`)."]
    deep, deep_budget, nb = (json.loads(p.read_text()) for p in BENCHMARKS.values())
    pick = next(k for k in deep if k.startswith("predictor@"))
    raw = next(k for k in deep if k.startswith("ghn_robustness@"))
    anchor = deep["random@1"]
    # The goal is for ghn-nas's own zero-label pick (a GHN strategy), not the zero-cost proxies it is judged against.
    zero = {k: v for k, v in nb.items() if k != "pool" and v["labels_spent"] == 0 and k.split("@")[0] not in ZERO_COST}
    naswot = nb["naswot@100"]["mean"]
    lines = [
        "- *Does the default robust search pick a net with higher true noisy accuracy than random picks, on the "
        f"labelled DeepNets-1M pool?* On {deep['pool']['size']} labelled nets the shipped predictor was not fitted "
        f"on (it was fitted on the {deep[pick]['labels_spent']} labelled before them), over {deep[pick]['seeds']} "
        f"seeds of {pick.split('@')[1]} random pool nets: its pick averages {deep[pick]['mean']:.2f}%, the pool's "
        f"{ordinal(deep[pick]['percentile'])} percentile, against {anchor['mean']:.2f}% ({ordinal(anchor['percentile'])}) "
        f"for a random pick and {deep[raw]['mean']:.2f}% ({ordinal(deep[raw]['percentile'])}) for the raw GHN proxy "
        f"(`ghn_robustness`, the default before). "
        "[benchmarks/search_deepnets_heldout101](../benchmarks/search_deepnets_heldout101/benchmark.md) On an "
        f"earlier pool of {deep_budget['pool']['size']} nets, the label-budget search finds "
        f"{deep_budget['budget@20']['mean']:.2f}% with 20 labels (pool best {deep_budget['pool']['best']:.2f}%). "
        "[benchmarks/search_deepnets_heldout](../benchmarks/search_deepnets_heldout/benchmark.md)",
        "- *Does the NB201 search beat the published anchors?* On the labelled NB201 CSV "
        f"({nb['pool']['size']:,} strings, best {nb['pool']['best']:.2f}%), over {nb['budget@20']['seeds']} seeds: "
        f"with 20 labels {nb['budget@20']['mean']:.2f}% and with 50 {nb['budget@50']['mean']:.2f}%, against "
        f"{nb['random@150']['mean']:.2f}% for random search with 150 labels on the same pool (exact). Without "
        f"labels, NASWOT's pick averages {naswot:.2f}% and synflow's {nb['synflow@100']['mean']:.2f}%; "
        + (", ".join(f"{k.split('@')[0]}'s (a GHN proxy) {v['mean']:.2f}%" for k, v in zero.items()) + "; "
           if zero else "no GHN strategy without NB201 labels was benchmarked; ")
        + ("a GHN pick without labels beats NASWOT's." if any(v["mean"] > naswot for v in zero.values())
           else "no GHN pick without NB201 labels beats NASWOT's.")
        + " [benchmarks/search_nb201](../benchmarks/search_nb201/benchmark.md)",
    ]
    return lines


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = {name: optuna.load_study(study_name=name, storage=STORAGE) for name in SEARCHES}
    first = studies["robustness"]
    recipe = first.user_attrs["final"]["recipe"]
    started = min(t.datetime_start for s in studies.values() for t in s.trials if t.datetime_start)
    lines = [
        "# Studies",
        "",
        "## The two questions, on tabular benchmarks",
        "",
        "Measured by `python -m nas.benchmark` (commands, tables and plots in BENCHMARKS.md):",
        "",
        *tabular_answers(),
        "",
        "## Searches on the DeepNets-1M space",
        "",
        f"`bash studies/run.sh`, run on {started:%Y-%m-%d} on the 2-core development machine ({platform.machine()}, no GPU), one "
        f"thread per process, torch {torch.__version__}: the main command on its defaults with the shipped GHN "
        f"(weights `{first.user_attrs['ghn_hash']}`) and its property predictors, seed {first.user_attrs['seed']}, "
        f"{plural(statistics.mode(completed(s) for s in studies.values()), 'complete trial')} per study. The proxies "
        "that are not predictors score each trial on 512 CIFAR-10 validation images. The top "
        f"{plural(len(first.user_attrs['final']['trials']), 'trial')} of each study by proxy are trained like a "
        f"label (`cpu` recipe, from {first.user_attrs['final']['init']} init): "
        f"{plural(recipe['epochs'], 'epoch')} of at most {plural(recipe['max_batches'], 'batch', 'batches')} of "
        f"{recipe['batch_size']} images at {recipe['resolution']} px, width x{recipe['width_scale']}, scored on "
        f"{recipe['eval_batches']} test batches of 256, clean and under Gaussian noise (sigma 0.08). "
        + recipe_fidelity(recipe),
        "",
        *studies_table(studies),
        "",
        "## The robust search against random nets",
        "",
        *robust_against_random(first),
        "",
        "Each study folder has `report.md` (top-k table, final training, plots) and `trials.csv` (every trial with "
        "its proxies and architecture). The storage itself (`studies/studies.db`) is not committed; "
        "`bash studies/run.sh` rebuilds it.",
    ]
    (HERE / "README.md").write_text("\n".join(lines) + "\n")
    print((HERE / "README.md").read_text())


if __name__ == "__main__":
    main()
