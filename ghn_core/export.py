"""Turn a training checkpoint into the shipped one: ``python -m ghn_core.export RUN/last.pt``.

Keeps the weights, config and training record (not the optimizer, so the file stays under 10 MB),
measures the numbers the model card reports with the paper's protocol on a CPU-sized budget
(DeepNets-1M test nets, ResNet-50, ViT, and the random-initialisation baseline of the same nets),
and writes ``ghn2_cifar10.pt``, ``ghn2_cifar10.json`` (the card as data) and ``MODEL_CARD.md``. A run
on another data set (``--dataset cifar100``) is scored on that data set's images with nets of its class
count, and written as ``ghn2_<dataset>.pt``/``.json`` and ``MODEL_CARD_<dataset>.md``.
Training can continue from the shipped file with ``python -m ghn_core.train --init ...``.

A GHN replaces another one already in ``--out`` only if the yardstick shows it better beyond the
noise: on the yardstick's DeepNets-1M test nets (the same nets and images), the mean paired
difference must exceed two standard errors. Without the yardstick (``--no-yardstick``, or a data set
other than CIFAR-10) it is refused before any scoring. ``--force`` exports anyway; re-exporting the
same weights is always allowed.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .data import get_dataset_info
from .errors import GhnNasError
from .evaluate import EvalResult, eval_loader, evaluate_nets, load_eval_nets
from .model import ghn_from_checkpoint, read_checkpoint, save_checkpoint
from .model.checkpoint import state_hash
from .utils import resolve_device, user_errors

__all__ = ["ModelCard", "export", "main"]

log = logging.getLogger("ghn_core.export")


@dataclass
class ModelCard:
    """What travels with shipped weights: how they were made and what they measure."""

    name: str
    variant: str
    dataset: str
    image_size: int
    num_classes: int
    max_shape: list[int]
    ghn_params: int
    weights_sha: str
    training: dict[str, Any]
    evaluation: dict[str, Any] = field(default_factory=dict)
    published: dict[str, float] = field(default_factory=dict)  # the paper's numbers for this dataset, if any
    yardstick: dict[str, Any] = field(default_factory=dict)    # ghn_core.yardstick's report (CIFAR-10), if run
    created: str = ""
    commit: str = ""


# GHN-2's published accuracies (300 epochs, reference §4), per dataset the card can compare against.
PUBLISHED: dict[str, dict[str, float]] = {"cifar10": {"deepnets_test_mean": 66.9, "resnet50": 58.6, "vit": 11.4}}


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _result(r: EvalResult) -> dict[str, Any]:
    return {"mean": round(r.mean, 2), "stderr": round(r.stderr, 2) if r.stderr == r.stderr else None,
            "nets": len(r.accuracies), "per_net": dict(zip(r.names, [round(a, 2) for a in r.accuracies]))}


def export(run_ckpt: str | Path, out_dir: str | Path, *, test_nets: int = 50, batches: int = 10,
           deepnets_dir: str = "data/deepnets1m", data_dir: str | None = None,
           device: str | torch.device = "cpu", yardstick: bool = False, nb201_csv: str | None = None,
           force: bool = False) -> ModelCard:
    """Write the shipped files of ``run_ckpt`` into ``out_dir`` and return the card. ``yardstick``: also
    run ``ghn_core.yardstick`` into the card, for a CIFAR-10 GHN (its NB201 parts need ``nb201_csv``),
    and refuse, unless ``force``, a GHN that does not beat the one in ``out_dir`` (see the module doc)."""
    payload = read_checkpoint(run_ckpt)
    ghn, _ = ghn_from_checkpoint(run_ckpt)
    ghn.eval()
    train = payload.get("train", {})
    cfg = ghn.config
    # the data set the run trained on (checkpoints from before it was recorded are CIFAR-10 runs)
    dataset = train.get("dataset") or (train.get("config") or {}).get("dataset") or "cifar10"
    num_classes = get_dataset_info(dataset).num_classes
    if cfg.num_classes != num_classes:
        raise ValueError(f"{run_ckpt}: the GHN predicts {cfg.num_classes} classes, but it was trained on {dataset} "
                         f"({num_classes} classes); expected a checkpoint whose GHN matches its data set")
    shipped = Path(out_dir) / f"{card_name(dataset)}.pt"
    replaces = (not force and shipped.is_file()
                and state_hash(read_checkpoint(shipped)["state_dict"]) != state_hash(ghn.state_dict()))
    scored = yardstick and dataset == "cifar10"  # the yardstick's nets and images are CIFAR-10's
    if replaces and not scored:  # checked before any scoring: nothing else could show the new GHN better
        raise GhnNasError(f"{shipped} holds another GHN: replacing it needs the yardstick to show this one better "
                          f"(a CIFAR-10 GHN, without --no-yardstick), or --force")
    loader = eval_loader(dataset, "test", data_dir=data_dir, device=device)
    evaluation: dict[str, Any] = {"protocol": f"{dataset} test images in one fixed seeded order, first {batches} "
                                              f"batches of 64 per net, BN batch statistics",
                                  "deepnets_test_nets": test_nets}
    start = time.perf_counter()
    for split, n in (("test", test_nets), ("predefined", None)):
        nets = dict(n=n, deepnets_dir=deepnets_dir, num_classes=num_classes)
        ghn_r = evaluate_nets(ghn, load_eval_nets(split, **nets), loader, max_batches=batches)
        rand_r = evaluate_nets(None, load_eval_nets(split, **nets), loader, max_batches=batches)
        if split == "test":
            evaluation["deepnets_test"] = _result(ghn_r)
            evaluation["deepnets_test_random_init"] = _result(rand_r)
        else:
            for name, acc, base in zip(ghn_r.names, ghn_r.accuracies, rand_r.accuracies):
                evaluation[name] = round(acc, 2)
                evaluation[f"{name}_random_init"] = round(base, 2)
    evaluation["eval_time_s"] = round(time.perf_counter() - start, 1)
    yardstick_report = {}
    if scored:
        from .yardstick import json_ready, yardstick as run_yardstick

        yardstick_report = json_ready(run_yardstick(ghn, data_dir=data_dir, device=device, nb201_csv=nb201_csv,
                                                    deepnets_dir=deepnets_dir, checkpoint=f"{card_name(dataset)}.pt"))
        if replaces:
            check_improves(yardstick_report, _shipped_yardstick(shipped, data_dir=data_dir, device=device,
                                                                deepnets_dir=deepnets_dir), str(shipped))
    card = ModelCard(
        name=card_name(dataset), variant=cfg.variant, dataset=dataset, image_size=cfg.image_size,
        num_classes=cfg.num_classes, max_shape=[2 * cfg.hid, 2 * cfg.hid, cfg.max_spatial, cfg.max_spatial],
        ghn_params=ghn.num_params(), weights_sha=state_hash(ghn.state_dict()),
        training={"steps": train.get("total_steps"), "steps_this_run": train.get("step"),
                  "config": train.get("config"), "wall_time_s": round(train.get("wall_time_s", 0.0)),
                  "cpu_time_s": round(train.get("cpu_time_s", 0.0)),
                  "device": train.get("device"), "train_nets": train.get("train_nets"),
                  "host": f"{platform.machine()}, {torch.get_num_threads()} threads", "metrics": payload.get("metrics")},
        evaluation=evaluation, published=dict(PUBLISHED.get(dataset, {})), yardstick=yardstick_report,
        created=time.strftime("%Y-%m-%d"), commit=_commit())
    out = Path(out_dir)
    save_checkpoint(out / f"{card.name}.pt", {"config": cfg.to_dict(), "state_dict": ghn.state_dict(),
                                             "train": {**train, "config": train.get("config")},
                                             "metrics": payload.get("metrics", {}), "card": asdict(card)})
    (out / f"{card.name}.json").write_text(json.dumps(asdict(card), indent=1) + "\n")
    # the shipped CIFAR-10 card keeps its name; a card for another data set sits next to it
    (out / ("MODEL_CARD.md" if dataset == "cifar10" else f"MODEL_CARD_{dataset}.md")).write_text(card_markdown(card))
    return card


def card_name(dataset: str) -> str:
    return f"ghn2_{dataset}"


def card_markdown(card: ModelCard) -> str:
    """The human-readable card; every number comes from the card record."""
    t, e, p = card.training, card.evaluation, card.published
    cfg = t.get("config") or {}
    hours = (t.get("wall_time_s") or 0) / 3600
    # CPU time counts the training process's threads; on a shared machine wall time grows with the load
    cpu = f"{t['cpu_time_s'] / 3600:.1f} CPU-hours of the training process, " if t.get("cpu_time_s") else ""
    origin = f"starting from `{cfg['init']}`" if cfg.get("init") else "from scratch"
    test, rand = e["deepnets_test"], e["deepnets_test_random_init"]
    info = get_dataset_info(card.dataset)
    held_out = info.val_per_class * info.num_classes

    def pub(key: str) -> str:
        return f"{p[key]} %" if key in p else "none published"

    return f"""# Model card: `{card.name}.pt`

GHN-2 ({card.variant}, {card.ghn_params:,} parameters, decoder block {card.max_shape}) for
{card.dataset} classifiers at {card.image_size}x{card.image_size}, {card.num_classes} classes. Weights hash
`{card.weights_sha}`, exported {card.created} at commit `{card.commit}` by `python -m ghn_core.export`.

## How it was trained

- Data: DeepNets-1M train split ({t.get('train_nets')} generated nets), {card.dataset} training images
  ({held_out:,} held out for validation).
- Recipe: `{train_command(cfg)}`:
  Adam lr {cfg.get('lr')}, weight decay {cfg.get('weight_decay')}, meta-batch {cfg.get('meta_batch')} nets,
  {cfg.get('batch_size')} images per step{f" resized to {cfg['resolution']} px" if cfg.get('resolution') else ''}, widths drawn by the paper's rule times {cfg.get('width_scale')},
  at most {cfg.get('max_nodes')} graph nodes per meta-batch, gradient clip {cfg.get('grad_clip')}, seed {cfg.get('seed')}.
- Budget: {t.get('steps')} steps in total {origin}, {cpu}{hours:.1f} h of training wall time on {t.get('device')}.
  The paper trains for about 210,000 steps (300 epochs) on a GPU.

## What it measures

Protocol: {e['protocol']}; the random-initialisation baseline is the same nets with PyTorch's default
initialisation, scored the same way.

| nets | this GHN | random init | published GHN-2 (300 epochs, full test set) |
|---|---|---|---|
| DeepNets-1M test, first {test['nets']} nets | {_mean_pm(test)} | {_mean_pm(rand)} | {pub('deepnets_test_mean')} |
| ResNet-50 (CIFAR stem) | {e['resnet50']:.2f} % | {e['resnet50_random_init']:.2f} % | {pub('resnet50')} |
| ViT (12 cells, C=128) | {e['vit']:.2f} % | {e['vit_random_init']:.2f} % | {pub('vit')} |

At this budget the GHN is far from the published one. Training continues by resuming from this
file: `python -m ghn_core.train --preset cpu-small --init ghn_core/checkpoints/{card.name}.pt`
(or the paper's recipe on a GPU), then exporting again.
{_yardstick_section(card.yardstick)}"""


def _yardstick_section(report: dict[str, Any]) -> str:
    if not report:
        return ""
    from .yardstick import format_table

    s = report["settings"]
    return (f"\n## Yardstick\n\n`python -m ghn_core.evaluate --suite yardstick` (fixed sets, sizes and seeds: "
            f"`ghn_core/yardstick.py`), run at export on {s['device']} with {s['torch_threads']} torch thread(s) in "
            f"{report['wall_s']:.0f} s. Compare checkpoints by it.\n\n{format_table(report, header=False)}\n")


def _shipped_yardstick(path: Path, **kwargs) -> dict:
    """The yardstick of the GHN at ``path``: its card's, or, for a card from before the yardstick, the
    DeepNets-1M part run now on its weights."""
    from .yardstick import YardstickConfig, json_ready, yardstick

    stored = read_checkpoint(path).get("card", {}).get("yardstick")
    if stored:
        return stored
    log.info("%s has no yardstick in its card: scoring its weights on the DeepNets-1M part", path)
    ghn, _ = ghn_from_checkpoint(path)
    return json_ready(yardstick(ghn.eval(), config=YardstickConfig(torchvision=()), checkpoint=str(path),
                                progress=False, **kwargs))


def check_improves(new: dict, old: dict, old_name: str) -> None:
    """Raise unless the ``new`` yardstick's DeepNets-1M accuracy beats ``old``'s by more than two paired
    standard errors over the same nets."""
    a, b = new["deepnets"]["ghn"], old["deepnets"]["ghn"]
    if a["names"] != b["names"]:
        raise GhnNasError(f"cannot compare with {old_name}: its yardstick scored other DeepNets-1M nets; "
                          f"pass --force to export anyway")
    d = np.asarray(a["accuracies"]) - np.asarray(b["accuracies"])
    gain, se = float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("inf")
    if not gain > 2 * se:
        raise GhnNasError(f"not exported: on the yardstick's {len(d)} DeepNets-1M test nets this GHN scores "
                          f"{a['mean']:.2f}% against {b['mean']:.2f}% for {old_name} (paired difference {gain:+.2f} "
                          f"+- {se:.2f}), not beyond two standard errors; pass --force to export anyway")


def _mean_pm(r: dict) -> str:
    """"mean +- standard error %"; one net has no standard error (stored as None)."""
    return f"{r['mean']:.2f} +- {r['stderr']:.2f} %" if r["stderr"] is not None else f"{r['mean']:.2f} % (one net)"


#: Training fields that say where a run was, how long each invocation ran and how it logged, not
#: what it learned: left out of the card's training command.
_RUN_FIELDS = {"data_dir", "deepnets_dir", "out", "init", "device", "max_steps", "max_minutes", "max_cpu_minutes",
               "log_every", "ckpt_every", "ckpt_every_minutes", "max_failures"}


def train_command(cfg: dict) -> str:
    """The ``ghn_core.train`` command that trains with ``cfg``: the preset it differs least from, then
    its other learning-relevant values as options."""
    from .train import PRESETS, TrainConfig

    def same(a, b) -> bool:
        return list(a) == list(b) if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) else a == b

    def option(key: str, value: Any) -> str:
        shown = " ".join(f"{v:g}" for v in value) if isinstance(value, (list, tuple)) else value
        return f" --{key.replace('_', '-')} {shown}"

    defaults = {f.name: f.default for f in TrainConfig.fields().values()}
    best = None
    for name, values in PRESETS.items():  # "paper" first: a tie names the paper's recipe
        base = {**defaults, **values}
        diff = {k: v for k, v in cfg.items() if k in base and k not in _RUN_FIELDS and not same(v, base[k])}
        if best is None or len(diff) < len(best[1]):
            best = (name, diff)
    name, diff = best
    return f"python -m ghn_core.train --preset {name}" + "".join(option(k, v) for k, v in diff.items())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ghn_core.export", description=__doc__)
    parser.add_argument("checkpoint", help="a training checkpoint (RUN/last.pt)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "checkpoints"))
    parser.add_argument("--test-nets", type=int, default=50)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--deepnets-dir", default="data/deepnets1m")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="auto", help="where the nets are scored (default: %(default)s)")
    parser.add_argument("--no-yardstick", action="store_true",
                        help="skip the yardstick suite (run by default on CIFAR-10 GHNs; a few CPU-minutes)")
    parser.add_argument("--nb201-csv", default=None,
                        help="labelled NAS-Bench-201 CSV for the yardstick's ranking parts (without it they are skipped)")
    parser.add_argument("--force", action="store_true",
                        help="replace the GHN in --out even if the yardstick does not show it better")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with user_errors(args.debug):
        device = resolve_device(args.device)
        if not Path(args.checkpoint).is_file():
            raise FileNotFoundError(f"no training checkpoint at {args.checkpoint}")
        if args.nb201_csv is not None and not Path(args.nb201_csv).is_file():
            raise FileNotFoundError(f"no NAS-Bench-201 labels at {args.nb201_csv}")
        card = export(args.checkpoint, args.out, test_nets=args.test_nets, batches=args.batches,
                      deepnets_dir=args.deepnets_dir, data_dir=args.data_dir, device=device,
                      yardstick=not args.no_yardstick, nb201_csv=args.nb201_csv, force=args.force)
        print(json.dumps(card.evaluation, indent=1)[:2000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
