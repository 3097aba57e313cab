"""A study's report, read from its storage only: ``report.md`` plus PNG plots in a run folder.

The front door is the best architectures: each of the top-k trials is written to
``architectures/rank<R>_trial<N>.json`` (space, architecture, proxy values, parameters, FLOPs; read
back with ``nas.load_architecture(path)``) with a drawing of its graph next to it.

Plots: optimisation history (every trial's value and the running best), the Pareto front of a
multi-objective study (first two objectives), and proxy against true accuracy for the SGD-trained
final candidates. ``trials.csv`` lists every trial with its proxies and architecture.
"""
from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from ghn_core.errors import GhnNasError

from .proxies import PROXIES, ProxyContext, compute
from .space import get_space, save_architecture

__all__ = ["top_trials", "write_report", "write_trials_csv", "write_architectures", "architecture_file",
           "ArchitectureFile", "UNITS", "axis_label", "budget_check", "plural"]

log = logging.getLogger("nas.report")


def top_trials(study: optuna.Study, k: int) -> list[optuna.trial.FrozenTrial]:
    """The best ``k`` trials: by value (single objective), or the Pareto front first and then the rest,
    each part ordered by the first objective (several objectives)."""
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    if len(study.directions) == 1:
        return sorted(done, key=lambda t: sign * t.value)[:k]
    front = {t.number for t in study.best_trials}
    return sorted(done, key=lambda t: (t.number not in front, sign * t.values[0]))[:k]


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``1 epoch``, ``2 epochs``; ``nouns`` where adding an s is wrong (``plural(2, "batch", "batches")``)."""
    return f"{n} {noun}" if n == 1 else f"{n} {nouns or noun + 's'}"


@dataclass(frozen=True)
class Unit:
    short: str  # on plot axes, e.g. "%"
    long: str   # in the report's tables, e.g. "% of noisy validation images"; "{device}": where it was measured


#: The unit of every proxy, read from nas.proxies.PROXIES.
UNITS: dict[str, Unit] = {name: Unit(p.unit, p.meaning) for name, p in PROXIES.items()}  # one place: nas.proxies


def _direction(name: str) -> str:
    proxy = PROXIES.get(name)
    if proxy is None:
        return ""
    return "higher is better" if proxy.direction == "maximize" else "lower is better"


def axis_label(name: str) -> str:
    """A proxy's name with its unit and direction, e.g. ``ghn_robustness (%, higher is better)``."""
    parts = [p for p in (UNITS[name].short if name in UNITS else "", _direction(name)) if p]
    return f"{name} ({', '.join(parts)})" if parts else name


def _with_unit(name: str) -> str:
    return f"{name} ({UNITS[name].short})" if name in UNITS else name


def _devices(trials: list[optuna.trial.FrozenTrial]) -> str:
    found = sorted({t.user_attrs["device"] for t in trials if "device" in t.user_attrs})
    return ", ".join(found) if found else "the search's device (not recorded)"


def _plots(study: optuna.Study, out: Path, *, show_final: bool) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

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
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trial numbers
    ax.set_xlabel("trial")
    ax.set_ylabel(axis_label(names[0]))
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
        ax.set_xlabel(axis_label(names[0]))
        ax.set_ylabel(axis_label(names[1]))
        ax.set_title("Pareto front" + (f" (of {len(names)} objectives)" if len(names) > 2 else ""))
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "pareto.png")
        plt.close(fig)
        files.append("pareto.png")
    final = study.user_attrs.get("final")
    stale = out / "proxy_vs_truth.png"
    if final and show_final:
        fig, ax = plt.subplots(figsize=(5, 4), dpi=110)
        for key, label in (("clean_acc", "clean"), ("noisy_acc", "noisy")):
            ax.scatter([r["proxy_values"][0] for r in final["trials"]], [r[key] for r in final["trials"]], label=label)
        ax.set_xlabel(f"proxy: {axis_label(names[0])}")
        ax.set_ylabel("SGD-trained test accuracy (%, higher is better)")
        ax.set_title("final candidates: proxy vs truth")
        ax.legend()
        fig.tight_layout()
        fig.savefig(stale)
        plt.close(fig)
        files.append(stale.name)
    elif stale.exists():  # an earlier run's plot: this report shows no final training
        stale.unlink()
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


@dataclass(frozen=True)
class ArchitectureFile:
    """One written architecture: its rank by proxy, trial, JSON file, drawing (None when the graph
    could not be drawn), parameter count and forward FLOPs of one 32x32 image (millions)."""

    rank: int
    trial: int
    path: Path
    drawing: Path | None
    num_params: int
    flops_m: float


def architecture_file(out: str | Path, rank: int, trial: int) -> Path:
    """Where the report puts the architecture of ``trial``, ranked ``rank`` by proxy."""
    return Path(out) / "architectures" / f"rank{rank}_trial{trial}.json"


def _flops(model: torch.nn.Module) -> float:
    """The ``flops`` proxy on one blank 32x32 image (FLOPs do not depend on the pixels)."""
    blank = torch.zeros(1, 3, 32, 32)
    ctx = ProxyContext(None, blank, blank, torch.zeros(1, dtype=torch.long), torch.device("cpu"))
    return compute("flops", model, ctx)


def write_architectures(study: optuna.Study, out: str | Path, k: int) -> list[ArchitectureFile]:
    """Write the top ``k`` trials (at least the best) to ``out/architectures/``: per trial a JSON file for
    ``nas.load_architecture`` and a PNG drawing of its graph. Files of an earlier run are removed first."""
    from ghn_core.graph import Graph

    folder = Path(out) / "architectures"
    folder.mkdir(parents=True, exist_ok=True)
    for old in [*folder.glob("rank*_trial*.json"), *folder.glob("rank*_trial*.png")]:
        old.unlink()
    space_name = study.user_attrs["space"]
    space = get_space(space_name)
    written = []
    for rank, t in enumerate(top_trials(study, max(k, 1)), start=1):
        path = architecture_file(out, rank, t.number)
        model = space.rebuild(t.user_attrs)
        num_params = sum(p.numel() for p in model.parameters())
        drawing = path.with_suffix(".png")
        try:
            Graph.from_module(model, s_max=1).draw(drawing, title=f"{study.study_name}: trial {t.number} (rank {rank})")
        except GhnNasError as err:  # the network is still written; only its picture is missing
            log.warning("trial %d: no drawing of its graph: %s", t.number, err)
            drawing = None
        flops_m = float(t.user_attrs["proxy_flops"]) if "proxy_flops" in t.user_attrs else _flops(model)
        save_architecture(path, space.name, t.user_attrs, study=study.study_name, trial=t.number, rank=rank,
                          proxies={key.removeprefix("proxy_"): v for key, v in t.user_attrs.items()
                                   if key.startswith("proxy_")},
                          num_params=num_params, flops_m=flops_m,
                          load=f"import nas; model = nas.load_architecture({str(path)!r})")
        written.append(ArchitectureFile(rank, t.number, path, drawing, num_params, flops_m))
    return written


def _binomial_se(acc: float, n: int) -> float:
    """Standard error (points) of an accuracy ``acc`` (%) measured on ``n`` images."""
    p = min(max(acc / 100, 0.0), 1.0)
    return 100 * math.sqrt(p * (1 - p) / n)


def budget_check(final: dict[str, Any], num_classes: int) -> list[str]:
    """Markdown lines saying whether the final training separates its candidates from chance and from
    each other, and the rule used (two binomial standard errors on the test images scored)."""
    recipe = final["recipe"]
    n = final.get("test_images") or (recipe["eval_batches"] * 256 if recipe.get("eval_batches") else 10_000)
    chance = 100 / num_classes
    se_chance = _binomial_se(chance, n)
    rows = final["trials"]
    lines = [f"Rule: an accuracy measured on {n} test images has a binomial standard error of "
             f"100·sqrt(p(1-p)/{n}) points ({se_chance:.2f} at chance, 100/{num_classes} = {chance:.3g}%). "
             "The budget cannot tell the candidates from chance when every final accuracy (clean and noisy) "
             "is within two such standard errors of chance, and cannot tell them from each other when the "
             "spread of their accuracies (highest minus lowest) is under two standard errors at their mean."]
    accs = [r[key] for r in rows for key in ("clean_acc", "noisy_acc")]
    if accs and all(abs(a - chance) <= 2 * se_chance for a in accs):
        lines += ["", f"**This budget is too small to separate the candidates from chance:** every accuracy is "
                      f"within {2 * se_chance:.2f} points of {chance:.3g}%, so the true ranks above are noise. "
                      "Train longer (--final-epochs, --final-batches) or score more test images "
                      "(--final-eval-batches)."]
        return lines
    close = []
    for key, what in (("clean_acc", "clean"), ("noisy_acc", "noisy")):
        values = [r[key] for r in rows]
        if len(values) >= 2:
            spread, se = max(values) - min(values), _binomial_se(sum(values) / len(values), n)
            if spread < 2 * se:
                close.append(f"{what} spread {spread:.2f} < {2 * se:.2f}")
    if close:
        lines += ["", f"**This budget is too small to separate the candidates from each other** "
                      f"({'; '.join(close)} points): their true ranks there are noise. Score more test images "
                      "(--final-eval-batches) or train longer."]
    else:
        lines += ["", "By this rule the final accuracies stand out from chance"
                      + (" and from each other." if len(rows) >= 2 else ".")]
    return lines


def _num_classes(study: optuna.Study, final: dict[str, Any]) -> int:
    if "num_classes" in final:
        return int(final["num_classes"])
    return int(getattr(get_space(study.user_attrs["space"]), "num_classes", 10))


def write_report(study: optuna.Study, out: str | Path, *, top_k: int = 5, show_final: bool = True) -> Path:
    """Write ``report.md``, its plots, ``trials.csv`` and the top architectures (``write_architectures``)
    for ``study`` into ``out``; returns the report's path.

    ``show_final``: include the final training stored on the study. ``nas.search`` passes False when
    the run trained nothing (``--final-epochs 0`` or ``--top-k 0``), so an earlier run's table never
    passes for this run's.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_trials_csv(study, out / "trials.csv")
    attrs = study.user_attrs
    names = study.metric_names or [f"value{i}" for i in range(len(study.directions))]
    finished = sum(t.state.is_finished() for t in study.trials)
    lines = [f"# Study `{study.study_name}`", "",
             f"Objective {attrs.get('objective')} (proxies {attrs.get('proxies')}), space `{attrs.get('space')}`, "
             f"seed {attrs.get('seed')}, GHN `{attrs.get('ghn_hash')}`; {plural(finished, 'finished trial')} "
             f"({sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)} pruned by the filters)."]
    top = top_trials(study, max(top_k, 1))
    if not top:
        lines += ["", "No trial is complete: nothing to rank."]
    else:
        archs = write_architectures(study, out, top_k)
        best = archs[0]
        rel = best.path.relative_to(out)
        lines += ["", "## Best architecture", "",
                  f"Trial {best.trial}: [`{rel}`]({rel})"
                  + (f" ([drawing]({best.drawing.relative_to(out)}))" if best.drawing else "")
                  + ". Load it (a freshly initialised network) with:", "", "```python", "import nas",
                  f"model = nas.load_architecture({str(best.path)!r})", "```", "",
                  f"## Top {len(archs)} by proxy", "",
                  f"| rank | trial | {' | '.join(_with_unit(n) for n in names)} | parameters (M) | FLOPs (M) | files |",
                  "|" + "---|" * (len(names) + 5)]
        for a, t in zip(archs, top):
            files = f"[json]({a.path.relative_to(out)})" + (f", [png]({a.drawing.relative_to(out)})" if a.drawing else "")
            lines.append(f"| {a.rank} | {a.trial} | {' | '.join(f'{v:.3g}' for v in t.values)} | "
                         f"{a.num_params / 1e6:.3g} | {a.flops_m:.3g} | {files} |")
        devices = _devices(top)
        lines += ["", "Parameters and FLOPs (one 32x32 image) are those of the network `load_architecture` builds. "
                      "The proxies:", "", "| proxy | unit | better | how it is measured |", "|---|---|---|---|"]
        for name in names:
            unit = UNITS[name].long.format(device=devices) if name in UNITS else "?"
            doc = " ".join(PROXIES[name].doc.split()) if name in PROXIES else ""
            lines.append(f"| {name} | {unit} | {_direction(name).removesuffix(' is better') or '?'} | {doc} |")
    final = attrs.get("final")
    if final and show_final:
        recipe = final["recipe"]
        batches = f", at most {plural(recipe['max_batches'], 'batch', 'batches')} each" if recipe["max_batches"] else ""
        lines += ["", f"## Final training ({final['init']} init, {plural(recipe['epochs'], 'epoch')}{batches})",
                  "", "| trial | proxy rank | clean acc (%) | true rank | noisy acc (%) | true rank (noisy) |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['trial']} | {r['proxy_rank']} | {r['clean_acc']:.2f} | {r['true_rank_clean_acc']} | "
                  f"{r['noisy_acc']:.2f} | {r['true_rank_noisy_acc']} |" for r in final["trials"]]
        lines += ["", *budget_check(final, _num_classes(study, final))]
    elif final:
        lines += ["", f"No final training in this run. (The study holds an earlier run's SGD results for trials "
                      f"{', '.join(str(r['trial']) for r in final['trials'])}; they are not shown, as the top "
                      "trials may have changed since.)"]
    lines += ["", *[f"![{f}]({f})" for f in _plots(study, out, show_final=show_final)], "",
              "Every trial: [trials.csv](trials.csv)."]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
