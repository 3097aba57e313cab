"""Which GHN training recipe learns most per CPU-minute: ``cpu-small`` and one-knob variants at equal compute.

Every variant of :data:`VARIANTS` is ``PRESETS["cpu-small"]`` with one knob changed, trained with the same
seed on the same threads for the same minutes of training (``--minutes``, default 30) on one clock
(``--clock``): by default the training process's CPU time, all threads (``TrainConfig.max_cpu_minutes``),
which a busy machine does not shrink; ``--clock wall`` counts wall-clock time (``max_minutes``) for a
quiet machine. Training runs in chunks of ``--chunk`` minutes (each chunk resumes the run's
``last.pt``), so the checkpoint of chunk k holds about k x ``--chunk`` minutes of training (the
checkpoint's cumulative ``cpu_time_s`` or ``wall_time_s``, which count the training loop only: not
loading images, not scoring). After each chunk the checkpoint gets one curve point, the yardstick's
part 1 alone (``ghn_core.yardstick.yardstick`` called with ``YardstickConfig(torchvision=())`` and no
NB201 CSV: the first 50 DeepNets-1M test nets, 2 batches of 64 test images each, with the random-init
baseline on the same nets and images). At the end of a variant the whole yardstick runs once on its
last checkpoint (its DeepNets-1M part is that variant's last curve point). Each point is one JSON line
of ``curve.jsonl``, appended as soon as it is scored; a rerun resumes every run where it stopped and
skips what is scored.

    python benchmarks/recipe_study.py run --minutes 30 --chunk 5 --threads 1 --train-nets 100000
    python benchmarks/recipe_study.py run --variants base images-16 ...   # some variants (in this order)
    python benchmarks/recipe_study.py report                              # table (report.md) and curves.png

The train split is generated into ``--deepnets-dir`` before the first chunk if missing (the nets of a
smaller split are the first nets of the full one: chunks of the split are seeded by their index). Its
size is recorded with every point. Without ``--train-nets`` it is the preset's (1M nets: about 1.2 GB,
and roughly an hour to generate on 2 busy cores, extrapolated from 2,000 nets in 12 s), and
``--deepnets-dir`` defaults to ``data/deepnets1m``; with it, to ``data/deepnets1m-train{N}``, so a
partial split never stands in for the full one there. 100,000 nets are plenty for 30 minutes: a
variant draws at most ~10,000 nets in that time, each at a freshly drawn width.

How to compare: at equal minutes on the study's clock, same seed, same threads. The curve points of
all variants are scored on the same 50 nets and the same images, so a variant's gain over ``base`` at
the same point is a paired difference over the 50 nets (``report`` prints it at the last point, with
its paired standard error), and a ratio of (score - random init) at equal minutes says how much more
the recipe teaches per minute. Wall time on a shared machine drifts with the load (on a 2-core machine
at load average 7, a cpu-small step took 9 s instead of 1-2 s); CPU time drifts much less (caches and
memory bandwidth are still shared), which is why it is the default clock. Each point records both
clocks and the load average; ``curves.png`` plots the score against both.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from ghn_core.deepnets import DeepNets1M, generate_split  # noqa: E402
from ghn_core.deepnets.store import store_path  # noqa: E402
from ghn_core.model import ghn_from_checkpoint, read_checkpoint  # noqa: E402
from ghn_core.model.checkpoint import state_hash  # noqa: E402
from ghn_core.train import PRESETS, TrainConfig, train  # noqa: E402
from ghn_core.utils import user_errors  # noqa: E402
from ghn_core.yardstick import YardstickConfig, format_table, json_ready, yardstick  # noqa: E402

log = logging.getLogger("recipe_study")

REPO = Path(__file__).resolve().parents[1]
HERE = REPO / "benchmarks" / "recipe_study"
DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "labelled.csv"
PRESET = "cpu-small"

#: Settings every variant shares that change what is measured, not what is learned. In-run validation
#: (``eval_nets`` val nets scored at each checkpoint, every 100 steps) is switched off: the curve
#: points score the checkpoints outside the training clock, and inside it validation would cost
#: ~10 s per 100 steps, a tax that grows with a variant's steps per minute. Each step's nets, widths
#: and dropout are drawn from (seed, step) alone, so the training itself is the preset's step for step.
COMMON: dict[str, Any] = {"eval_nets": 0}

#: One knob at a time on top of ``PRESETS["cpu-small"]`` (batch 32 images, meta-batch 8, width x0.5,
#: lr 1e-3, at most 1600 graph nodes per meta-batch). Not varied, because ``TrainConfig`` has no such
#: knob: learning-rate warm-up (the schedule is constant ``lr`` up to the epoch milestones, and
#: cpu-small's first milestone, epoch 7 = ~9,800 steps of 32 images, is not reached in 30 minutes, so
#: within the study every variant trains at a constant rate).
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "images-16": {"batch_size": 16},                    # images per step, shared by the step's nets
    "images-64": {"batch_size": 64},
    # nets per step. max_nodes caps the nodes of the whole meta-batch, so it scales with the nets to
    # keep cpu-small's 200 nodes per net: a meta-batch of 16 under 1600 nodes could never be drawn
    # (16 nets have ~3,000 nodes on average) and one of 4 would never be redrawn.
    "nets-4": {"meta_batch": 4, "max_nodes": 800},
    "nets-16": {"meta_batch": 16, "max_nodes": 3200},
    "width-0.25": {"width_scale": 0.25},                # narrower sampled nets (C and fc x0.25)
    "lr-2e-3": {"lr": 2e-3},
    # The node cap. Sampled nets average ~190 nodes at width x0.5, so 8 of them fit under 1600 in
    # 67% of draws, under 1200 in 12%, under 2200 in 99% (the paper's cap: bigger nets, no redraws).
    # Redraws run inside the training clock: drawing a step's meta-batch took 0.9 s at 1600, 4.7 s
    # at 1200 and 0.3 s at 2200 (2 busy cores, mean of 5 steps). 800, as the issue suggested, fits
    # in 0.05% of draws: train() would give up after its 100 tries on nearly every step.
    "nodes-1200": {"max_nodes": 1200},
    "nodes-2200": {"max_nodes": 2200},
    # Training images at 16 px (TrainConfig.resolution): a quarter of the activations per conv; the
    # yardstick still scores at 32 px, so it measures whether what is learned at 16 px carries over.
    "res-16": {"resolution": 16},
}

#: The cheap curve point: the yardstick's part 1 (DeepNets-1M test nets) with its own sets, sizes and
#: seeds; no torchvision classifiers, and no NB201 CSV is passed (parts 3 and 4 skipped).
CURVE_YARDSTICK = YardstickConfig(torchvision=())


# -- configuration ----------------------------------------------------------------------------------

def default_deepnets_dir(train_nets: int | None) -> Path:
    return REPO / "data" / ("deepnets1m" if train_nets is None else f"deepnets1m-train{train_nets}")


def variant_config(name: str, args: argparse.Namespace) -> TrainConfig:
    """The training config of variant ``name`` (without ``max_minutes``, which each chunk sets)."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    values = {**PRESETS[PRESET], **COMMON, **VARIANTS[name]}
    if args.train_nets is not None:
        values["train_nets"] = args.train_nets
    return TrainConfig(**values, out=str(args.out_dir / name), deepnets_dir=str(args.deepnets_dir),
                       data_dir=args.data_dir, seed=args.seed, device="cpu")


#: The clocks a study can be budgeted on: the checkpoint's cumulative seconds and train()'s per-call limit.
CLOCKS = {"cpu": ("cpu_time_s", "max_cpu_minutes"), "wall": ("wall_time_s", "max_minutes")}


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A saved or new config as JSON values, without the per-chunk time limits."""
    return {k: v for k, v in json.loads(json.dumps(config)).items() if k not in ("max_minutes", "max_cpu_minutes")}


def ensure_train_split(cfg: TrainConfig, workers: int) -> None:
    """Generate the train split of ``cfg.train_nets`` nets if missing; refuse one of another size."""
    path = store_path(cfg.deepnets_dir, "train")
    if path.exists():
        store = DeepNets1M(path)
        if store.complete and len(store) != cfg.train_nets:
            raise ValueError(f"{path} holds {len(store)} train nets, expected --train-nets {cfg.train_nets}; "
                             f"give another --deepnets-dir")
        if store.complete:
            return
    log.info("generating the train split (%d nets) into %s", cfg.train_nets, cfg.deepnets_dir)
    generate_split("train", cfg.train_nets, cfg.deepnets_dir, workers=workers, progress=False)


# -- state ------------------------------------------------------------------------------------------

def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _checkpoint_state(last: Path, cfg: TrainConfig, clock: str) -> dict[str, Any] | None:
    """Step, cumulative training seconds (``train_s`` on the study's ``clock``; wall and CPU) and planned
    steps of the run's checkpoint (None: none yet); a checkpoint written under another config is refused."""
    if not last.exists():
        return None
    t = read_checkpoint(last)["train"]
    saved, now = _comparable(t["config"]), _comparable(asdict(cfg))
    changed = sorted(k for k in now if saved.get(k) != now[k])
    if changed:
        diff = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
        raise ValueError(f"{last} was trained with other settings ({diff}); give another --out-dir, "
                         f"or move {last.parent} away to start this variant afresh")
    planned = int(cfg.epochs * t["steps_per_epoch"])
    if cfg.max_steps is not None:
        planned = min(planned, cfg.max_steps)
    return {"step": int(t["step"]), "train_s": float(t[CLOCKS[clock][0]]), "wall_s": float(t["wall_time_s"]),
            "cpu_s": float(t["cpu_time_s"]), "planned_steps": planned, "train_nets": int(t["train_nets"])}


def _next_point_s(lines: list[dict], chunk_s: float, target_s: float) -> float:
    """Training seconds at which the next curve point is due: the first multiple of the chunk beyond
    the last scored point, or the target (points stay on one grid whatever the chunks overshot)."""
    scored = max((r["train_s"] for r in lines), default=0.0)
    return min((math.floor(scored / chunk_s + 1e-9) + 1) * chunk_s, target_s)


# -- scoring ----------------------------------------------------------------------------------------

def score_checkpoint(last: Path, *, full: bool, args: argparse.Namespace, report_path: Path) -> dict[str, Any]:
    """The yardstick on ``last``: part 1 alone, or (``full``) every part, saved as JSON and text at
    ``report_path`` (reused if it already scored these weights)."""
    ghn, _ = ghn_from_checkpoint(last)
    weights = state_hash(ghn.state_dict())
    json_path = report_path.with_suffix(".json")
    if full and json_path.exists():
        saved = json.loads(json_path.read_text())
        if saved["ghn"]["hash"] == weights:
            return saved
    csv = args.nb201_csv if full and args.nb201_csv.is_file() else None
    if full and csv is None:
        log.warning("no NB201 CSV at %s: the final yardstick skips its NB201 parts", args.nb201_csv)
    report = yardstick(ghn, config=YardstickConfig() if full else CURVE_YARDSTICK, data_dir=args.data_dir,
                       device="cpu", nb201_csv=csv, deepnets_dir=args.deepnets_dir, checkpoint=str(last),
                       progress=False)
    report = json_ready(report)
    if full:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=1) + "\n")
        report_path.with_suffix(".txt").write_text(format_table(report) + "\n")
    return report


def _loss_at_checkpoint(out: Path, step: int) -> float | None:
    """Mean training loss of the last logged window up to ``step`` (from the run's metrics.jsonl)."""
    rows = [r for r in _read(out / "metrics.jsonl") if "loss" in r and r.get("step", 0) <= step]
    return rows[-1]["loss"] if rows else None


# -- run --------------------------------------------------------------------------------------------

def run_variant(name: str, args: argparse.Namespace) -> None:
    cfg = variant_config(name, args)
    last = Path(cfg.out) / "last.pt"
    target_s, chunk_s = 60 * args.minutes, 60 * args.chunk
    lines = [r for r in _read(args.curve) if r["variant"] == name]
    loadavg = None  # load averages as the train() call behind the checkpoint ended (None: not this run's)
    while True:
        state = _checkpoint_state(last, cfg, args.clock)
        if state is not None and state["step"] != (lines[-1]["step"] if lines else None):
            due = _next_point_s(lines, chunk_s, target_s)
            exhausted = state["step"] >= state["planned_steps"]
            if state["train_s"] + 1e-6 >= due or exhausted:
                final = state["train_s"] + 1e-6 >= target_s or exhausted
                lines.append(_score_point(name, cfg, state, final=final, loadavg=loadavg, args=args))
                loadavg = None
                continue
        if state is not None and (state["train_s"] + 1e-6 >= target_s or state["step"] >= state["planned_steps"]):
            if not lines[-1]["final"]:  # scored as an intermediate point under a larger --minutes
                lines.append(_score_point(name, cfg, state, final=True, loadavg=lines[-1].get("loadavg"), args=args))
            log.info("%s: done (%d steps, %.1f %s minutes of training)", name, state["step"], state["train_s"] / 60,
                     args.clock)
            return
        trained = state["train_s"] if state else 0.0
        minutes = (_next_point_s(lines, chunk_s, target_s) - trained) / 60
        log.info("%s: training %.2f %s min from %.1f min (step %d)", name, minutes, args.clock, trained / 60,
                 state["step"] if state else 0)
        train(replace(cfg, **{CLOCKS[args.clock][1]: minutes}), progress=args.progress)
        loadavg = [round(x, 2) for x in os.getloadavg()]


def _score_point(name: str, cfg: TrainConfig, state: dict[str, Any], *, final: bool, loadavg: list[float] | None,
                 args: argparse.Namespace) -> dict[str, Any]:
    """Score the run's checkpoint and append its curve line."""
    last = Path(cfg.out) / "last.pt"
    cpu0, wall0 = time.process_time(), time.perf_counter()
    report = score_checkpoint(last, full=final, args=args,
                              report_path=args.study_dir / "yardstick" / f"{name}.txt")
    d = report["deepnets"]
    record = {
        "variant": name, "step": state["step"], "clock": args.clock, "train_s": round(state["train_s"], 2),
        "train_wall_s": round(state["wall_s"], 2), "train_cpu_s": round(state["cpu_s"], 2),
        "point_min": min(math.floor(state["train_s"] / (60 * args.chunk) + 1e-6) * args.chunk, args.minutes),
        "final": final,
        "score": d["ghn"]["mean"], "score_se": d["ghn"]["stderr"], "n_nets": len(d["ghn"]["accuracies"]),
        "random_init": d["random"]["mean"], "accuracies": d["ghn"]["accuracies"],
        "train_loss": _loss_at_checkpoint(Path(cfg.out), state["step"]),
        # 1-, 5- and 15-minute load averages as the chunk ended: wall-clock comparisons need a quiet machine
        "loadavg": loadavg,
        "eval_wall_s": round(time.perf_counter() - wall0, 1), "eval_cpu_s": round(time.process_time() - cpu0, 1),
        "weights": report["ghn"]["hash"], "yardstick": "full" if final else "part 1 (DeepNets-1M)",
        "threads": args.threads, "seed": cfg.seed, "train_nets": state["train_nets"],
        "minutes": args.minutes, "chunk_min": args.chunk, "preset": PRESET, "overrides": VARIANTS[name],
        "common": COMMON, "config": _comparable(asdict(cfg)), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if final:
        acc, cv = report["nb201_ghn_accuracy"], report["nb201_embedding_cv"]
        record["nb201_acc_tau"] = acc.get("kendall")
        record["nb201_cv_tau"] = cv.get("kendall")
        record["torchvision"] = report["torchvision"]["ghn"]["mean"]
    args.curve.parent.mkdir(parents=True, exist_ok=True)
    with args.curve.open("a") as f:
        f.write(json.dumps(record) + "\n")
    log.info("%s: step %d, %.1f min: DeepNets-1M %.2f +- %.2f %% (random init %.2f)%s", name, state["step"],
             state["train_s"] / 60, record["score"], record["score_se"] or float("nan"), record["random_init"],
             " [full yardstick]" if final else "")
    return record


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)  # deliberately: every variant on the same threads
    names = args.variants or list(VARIANTS)
    for name in names:
        variant_config(name, args)  # unknown names fail before any work
    ensure_train_split(variant_config(names[0], args), workers=args.threads)
    for name in names:
        run_variant(name, args)


# -- report -----------------------------------------------------------------------------------------

def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _paired(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mean and standard error of the per-net differences a - b (the same nets, the same images)."""
    d = [x - y for x, y in zip(a, b)]
    m = sum(d) / len(d)
    se = math.sqrt(sum((x - m) ** 2 for x in d) / (len(d) - 1) / len(d)) if len(d) > 1 else float("nan")
    return m, se


def report(args: argparse.Namespace) -> str:
    """A markdown table (printed, and written to report.md) and curves.png from curve.jsonl."""
    latest: dict[tuple[str, int], dict] = {}  # a point scored again (as the final one) replaces the first
    for r in _read(args.curve):
        latest[r["variant"], r["step"]] = r
    by_variant: dict[str, list[dict]] = {}
    for r in sorted(latest.values(), key=lambda r: r["train_s"]):
        by_variant.setdefault(r["variant"], []).append(r)
    if not by_variant:
        raise SystemExit(f"no curve points in {args.curve}; run `python {Path(__file__).name} run` first")
    order = [n for n in VARIANTS if n in by_variant] + sorted(n for n in by_variant if n not in VARIANTS)
    points = sorted({r["point_min"] for rows in by_variant.values() for r in rows})
    base = {r["point_min"]: r for r in by_variant.get("base", [])}
    any_r = next(iter(by_variant.values()))[0]
    header = ["variant", "knob", "steps", "wall min", "s/step", "CPU min"] + [f"{p:g} min" for p in points] + [
        "final DeepNets-1M", "Δ vs base (paired)", "gain / CPU min", "torchvision", "NB201 acc τ", "NB201 CV τ"]
    lines = [f"DeepNets-1M test accuracy (%) of predicted parameters (yardstick part 1: first {any_r['n_nets']} nets, "
             f"128 images each; random init {_fmt(any_r['random_init'])}) against minutes of training on the "
             f"{any_r['clock']} clock (CPU: the training process's CPU time, all threads); "
             f"preset {any_r['preset']} ({', '.join(f'{k}={v}' for k, v in any_r['common'].items())} for all), seed "
             f"{any_r['seed']}, {any_r['threads']} thread(s), train split of {any_r['train_nets']} nets. "
             f"Final: the whole yardstick on the last checkpoint; Δ vs base: paired over the same nets at the "
             f"same point; gain / CPU min: (final - random init) points per CPU minute of training.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in order:
        rows = by_variant[name]
        end = rows[-1]
        at = {r["point_min"]: r for r in rows}
        knob = ", ".join(f"{k}={v}" for k, v in end["overrides"].items()) or "(cpu-small)"
        delta = "-"
        if name != "base" and end["point_min"] in base:
            m, se = _paired(end["accuracies"], base[end["point_min"]]["accuracies"])
            delta = f"{m:+.2f} ± {_fmt(se)}"
        cells = [name, knob, str(end["step"]), _fmt(end["train_wall_s"] / 60, 1),
                 _fmt(end["train_wall_s"] / max(end["step"], 1)),
                 _fmt(end["train_cpu_s"] / 60, 1)]
        cells += [_fmt(at[p]["score"]) if p in at else "" for p in points]
        final = f"{_fmt(end['score'])} ± {_fmt(end['score_se'])}" if end["final"] else "(not finished)"
        gain = (end["score"] - end["random_init"]) / (end["train_cpu_s"] / 60) if end["train_cpu_s"] else None
        cells += [final, delta, _fmt(gain, 3), _fmt(end.get("torchvision")), _fmt(end.get("nb201_acc_tau"), 3),
                  _fmt(end.get("nb201_cv_tau"), 3)]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    args.study_dir.mkdir(parents=True, exist_ok=True)
    (args.study_dir / "report.md").write_text(table + "\n")
    _plot(by_variant, order, args.study_dir / "curves.png")
    print(table)
    return table


def _plot(by_variant: dict[str, list[dict]], order: list[str], path: Path) -> None:
    """Score against training wall-clock minutes (left) and against CPU minutes of training (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    any_r = next(iter(by_variant.values()))[0]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, key, label in ((axes[0], "train_wall_s", "training wall-clock minutes (scoring excluded)"),
                           (axes[1], "train_cpu_s", "CPU minutes of training, all threads (scoring excluded)")):
        for name in order:
            rows = [r for r in by_variant[name] if r[key] is not None]
            ax.errorbar([r[key] / 60 for r in rows], [r["score"] for r in rows],
                        yerr=[r["score_se"] or 0.0 for r in rows], marker="o", ms=3, capsize=2, label=name,
                        ls="-" if name == "base" else "--", lw=2 if name == "base" else 1)
        ax.axhline(any_r["random_init"], color="grey", ls=":", label="random init")
        ax.set_xlabel(label, fontsize=8)
    axes[0].set_ylabel(f"DeepNets-1M test accuracy, % (first {any_r['n_nets']} nets)")
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"GHN recipes at equal {any_r['clock']} time: {any_r['preset']} and one-knob variants "
                 f"({any_r['threads']} threads, seed {any_r['seed']}; bars: standard error over nets)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- command line -----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["run", "report"])
    parser.add_argument("--variants", nargs="*", choices=list(VARIANTS), help="default: all, in table order")
    parser.add_argument("--minutes", type=float, default=30.0, help="minutes of training per variant (see --clock)")
    parser.add_argument("--chunk", type=float, default=5.0, help="minutes of training between curve points")
    parser.add_argument("--clock", choices=list(CLOCKS), default="cpu",
                        help="what --minutes and --chunk count: the training process's CPU time (all threads; "
                             "fair on a shared machine) or wall-clock time (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (and train-split generation workers)")
    parser.add_argument("--train-nets", type=int, default=None,
                        help=f"size of the train split (default: the preset's, {TrainConfig.train_nets:,})")
    parser.add_argument("--deepnets-dir", type=Path, default=None,
                        help="folder of the train and test splits (default: data/deepnets1m, or "
                             "data/deepnets1m-train{N} with --train-nets N)")
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 folder ($GHN_NAS_DATA when not given)")
    parser.add_argument("--nb201-csv", type=Path, default=DEFAULT_CSV,
                        help="labelled NB201 CSV for the final yardstick (missing: its NB201 parts are skipped)")
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--study-dir", type=Path, default=HERE,
                        help="curve.jsonl, the final yardstick reports, report.md and curves.png "
                             "(default: %(default)s)")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="one training run per variant (default: STUDY_DIR/runs)")
    parser.add_argument("--progress", action="store_true", help="show the training progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    if args.chunk <= 0 or args.minutes <= 0:
        parser.error(f"--minutes and --chunk must be positive, got {args.minutes} and {args.chunk}")
    args.deepnets_dir = args.deepnets_dir or default_deepnets_dir(args.train_nets)
    args.out_dir = args.out_dir or args.study_dir / "runs"
    args.curve = args.study_dir / "curve.jsonl"
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with user_errors(args.debug):
        run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    main()
