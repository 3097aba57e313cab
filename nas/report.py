"""A study's report, read from its storage only: ``report.md`` plus PNG plots in a run folder.

Plots: optimisation history (every trial's value and the running best), the Pareto front of a
multi-objective study (first two objectives), and proxy against true accuracy for the SGD-trained
final candidates. ``trials.csv`` lists every trial with its proxies and architecture.
"""
from __future__ import annotations

import csv
from pathlib import Path

import optuna

__all__ = ["top_trials", "write_report", "write_trials_csv"]


def top_trials(study: optuna.Study, k: int) -> list[optuna.trial.FrozenTrial]:
    """The best ``k`` trials: by value (single objective), or the Pareto front first and then the rest,
    each part ordered by the first objective (several objectives)."""
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    if len(study.directions) == 1:
        return sorted(done, key=lambda t: sign * t.value)[:k]
    front = {t.number for t in study.best_trials}
    return sorted(done, key=lambda t: (t.number not in front, sign * t.values[0]))[:k]


def _plots(study: optuna.Study, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    files = []
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    xs, ys = [t.number for t in done], [t.values[0] for t in done]
    ax.scatter(xs, ys, s=10, label="trial")
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    best, running = [], None
    for y in ys:
        running = y if running is None else (max(running, y) if maximize else min(running, y))
        best.append(running)
    ax.plot(xs, best, color="C1", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(names[0])
    ax.set_title(f"optimisation history: {study.study_name}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "history.png")
    plt.close(fig)
    files.append("history.png")
    if len(study.directions) >= 2:  # several objectives: the front in the plane of the first two
        front = {t.number for t in study.best_trials}
        fig, ax = plt.subplots(figsize=(5, 4), dpi=110)
        for on_front, label in ((False, "trial"), (True, "Pareto front")):
            pts = [t.values for t in done if (t.number in front) == on_front]
            if pts:
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=12, label=label)
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
        ax.set_title("Pareto front" + (f" (of {len(names)} objectives)" if len(names) > 2 else ""))
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "pareto.png")
        plt.close(fig)
        files.append("pareto.png")
    final = study.user_attrs.get("final")
    if final:
        fig, ax = plt.subplots(figsize=(5, 4), dpi=110)
        for key, label in (("clean_acc", "clean"), ("noisy_acc", "noisy")):
            ax.scatter([r["proxy_values"][0] for r in final["trials"]], [r[key] for r in final["trials"]], label=label)
        ax.set_xlabel(f"proxy: {names[0]}")
        ax.set_ylabel("SGD-trained test accuracy (%)")
        ax.set_title("final candidates: proxy vs truth")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "proxy_vs_truth.png")
        plt.close(fig)
        files.append("proxy_vs_truth.png")
    return files


def write_trials_csv(study: optuna.Study, path: Path) -> Path:
    """Every trial: number, state, objective values, proxy values, parameters at C=32, architecture."""
    names = study.metric_names or [f"value{i}" for i in range(len(study.directions))]
    proxies = sorted({k for t in study.trials for k in t.user_attrs if k.startswith("proxy_")})
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["number", "state", *names, *proxies, "num_params_c32", "architecture"])
        for t in study.trials:
            values = t.values if t.values is not None else [""] * len(names)
            writer.writerow([t.number, t.state.name, *values, *(t.user_attrs.get(p, "") for p in proxies),
                             t.user_attrs.get("num_params_c32", ""), t.user_attrs.get("architecture", "")])
    return path


def write_report(study: optuna.Study, out: str | Path, *, top_k: int = 5) -> Path:
    """Write ``report.md``, its plots and ``trials.csv`` for ``study`` into ``out``; returns the report's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_trials_csv(study, out / "trials.csv")
    attrs = study.user_attrs
    names = study.metric_names or [f"value{i}" for i in range(len(study.directions))]
    finished = sum(t.state.is_finished() for t in study.trials)
    lines = [f"# Study `{study.study_name}`", "",
             f"Objective {attrs.get('objective')} (proxies {attrs.get('proxies')}), space `{attrs.get('space')}`, "
             f"seed {attrs.get('seed')}, GHN `{attrs.get('ghn_hash')}`; {finished} finished trials "
             f"({sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)} pruned by the filters).", "",
             f"## Top {top_k} by proxy", "", f"| trial | {' | '.join(names)} |", "|" + "---|" * (len(names) + 1)]
    lines += [f"| {t.number} | {' | '.join(f'{v:.3g}' for v in t.values)} |" for t in top_trials(study, top_k)]
    final = attrs.get("final")
    if final:
        lines += ["", f"## Final training ({final['init']} init, {final['recipe']['epochs']} epochs"
                      f"{', at most ' + str(final['recipe']['max_batches']) + ' batches each' if final['recipe']['max_batches'] else ''})",
                  "", "| trial | proxy rank | clean acc (%) | true rank | noisy acc (%) | true rank (noisy) |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['trial']} | {r['proxy_rank']} | {r['clean_acc']:.2f} | {r['true_rank_clean_acc']} | "
                  f"{r['noisy_acc']:.2f} | {r['true_rank_noisy_acc']} |" for r in final["trials"]]
    lines += ["", *[f"![{f}]({f})" for f in _plots(study, out)], "", "Every trial: [trials.csv](trials.csv)."]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
