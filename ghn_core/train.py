"""Train a GHN on DeepNets-1M: ``python -m ghn_core.train [--preset cpu-small] [--field value ...]``.

One loop, nanoGPT style: draw a meta-batch of architectures and a batch of images, predict every
parameter of every net, run the nets on the images, back-propagate the mean cross-entropy into
the GHN, clip, step. Defaults are the paper's recipe (:class:`TrainConfig`); presets override a few
fields for small budgets. Every random choice of step ``k`` is a function of (seed, k), so a
resumed run continues exactly where the stopped one was. The same entry point runs under
``torchrun``: each rank draws its own nets and images, gradients are averaged, rank 0 writes.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .data import BatchLoader, load_split
from .deepnets import DeepNets1M, Network, architecture_graph, generate_split, get_split, sample_width
from .errors import GhnNasError
from .graph import Graph
from .model import GHN2, create_ghn, ghn_from_checkpoint, read_checkpoint, save_checkpoint
from .model.checkpoint import state_hash
from .utils import resolve_device, user_errors

__all__ = ["TrainConfig", "PRESETS", "train", "train_step", "sample_meta_batch", "MetaBatch", "main"]

log = logging.getLogger("ghn_core.train")


@dataclass
class TrainConfig:
    """Training arguments. Defaults are the paper's GHN-2 recipe on CIFAR-10 (§3.5 of the reference)."""

    # what to train
    variant: str = "ghn2"
    dataset: str = "cifar10"
    data_dir: str | None = None
    deepnets_dir: str = "data/deepnets1m"
    train_nets: int = 1_000_000         # size of the train split (generated into deepnets_dir if missing)
    # optimisation
    epochs: float = 300                 # one epoch = one pass over the 45k training images
    max_steps: int | None = None        # stop earlier (budgeted runs)
    lr: float = 1e-3
    weight_decay: float = 1e-5
    milestones: tuple[float, ...] = (200, 250)  # epochs at which lr drops by gamma
    gamma: float = 0.1
    grad_clip: float = 5.0
    batch_size: int = 64                # images per step
    meta_batch: int = 8                 # architectures per step
    max_nodes: int = 2200               # a meta-batch with more graph nodes is redrawn
    width_scale: float = 1.0            # multiply the §1.2 widths (0.5: narrower nets for CPU budgets)
    # run
    out: str = "runs/ghn2"
    init: str | None = None             # start from this checkpoint's weights (e.g. the shipped one)
    seed: int = 1111
    device: str = "auto"
    amp: bool = True                    # bfloat16 autocast on CUDA
    log_every: int = 10
    ckpt_every: int = 100               # steps between checkpoints (and at the end)
    ckpt_every_minutes: float = 10.0    # ... or this often, whichever comes first
    max_failures: int = 20              # consecutive skipped (NaN/OOM) steps before giving up
    eval_nets: int = 20                 # val-split nets scored at each checkpoint (0: none)
    eval_batches: int = 4

    @classmethod
    def fields(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls)}


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # About 1-2 s/step on 2 CPU cores: narrower nets, half the image batch; the schedule is the
    # paper's compressed to the step budget.
    "cpu-small": {"batch_size": 32, "width_scale": 0.5, "max_nodes": 1600, "epochs": 10,
                  "milestones": (7, 9), "eval_nets": 10, "eval_batches": 2},
}


# -- one step ---------------------------------------------------------------------------------------

@dataclass
class MetaBatch:
    """The architectures of one step: meta-device networks (no weights) and their graphs."""

    indices: list[int]
    nets: list[nn.Module]
    graphs: list[Graph]

    @property
    def num_nodes(self) -> int:
        return sum(g.num_nodes for g in self.graphs)


def _scaled_width(rng: random.Random, rec, scale: float) -> tuple[int, int]:
    C, fc_dim = sample_width(rng, rec.arch, rec.num_params_cifar10)
    if scale != 1.0:
        C = max(8, int(round(C * scale / 8)) * 8)  # msa needs multiples of 8
        fc_dim = max(16, int(round(fc_dim * scale)))
    return C, fc_dim


def sample_meta_batch(store: DeepNets1M, rng: random.Random, *, meta_batch: int, max_nodes: int,
                      num_classes: int, width_scale: float = 1.0, image_size: int = 32,
                      s_max: int = 50) -> MetaBatch:
    """Draw ``meta_batch`` nets with widths by §1.2; redraw the whole batch if it has too many nodes.

    Graphs come from the architectures directly (``architecture_graph``, equal to tracing the net
    and ~35x faster), at the width drawn for this step.
    """
    for _ in range(100):
        indices = [rng.randrange(len(store)) for _ in range(meta_batch)]
        nets, graphs = [], []
        for i in indices:
            rec = store[i]
            C, fc_dim = _scaled_width(rng, rec, width_scale)
            arch = rec.arch.with_(fc_dim=fc_dim)
            nets.append(Network(arch, C, num_classes, track_running_stats=False, device="meta"))
            graphs.append(architecture_graph(arch, C, num_classes, image_size=image_size, s_max=s_max))
        batch = MetaBatch(indices, nets, graphs)
        if batch.num_nodes <= max_nodes:
            return batch
    raise GhnNasError(f"could not draw {meta_batch} nets with at most {max_nodes} graph nodes in 100 tries; "
                      f"raise --max_nodes or lower --meta_batch")


def train_step(ghn: GHN2, meta: MetaBatch, images: torch.Tensor, labels: torch.Tensor, *,
               optimizer: torch.optim.Optimizer | None = None, grad_clip: float = 5.0, amp: bool = False,
               world_size: int = 1) -> dict[str, float]:
    """Predict the nets' parameters, classify ``images`` with each, back-propagate into the GHN.

    Returns loss, accuracy (mean over nets) and gradient norm. With ``optimizer=None`` only the
    forward and backward run. A non-finite loss or gradient leaves the GHN untouched and returns
    ``{"skipped": 1.0, ...}``.
    """
    device = images.device
    # NHWC lets oneDNN/cuDNN pick their fast conv kernels.
    images = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
        params = ghn.predict_params(meta.nets, meta.graphs)
        losses, correct = [], 0.0
        for net, p in zip(meta.nets, params):
            logits = torch.func.functional_call(net, p, (images,), strict=False)
            losses.append(F.cross_entropy(logits.float(), labels))
            correct += (logits.argmax(1) == labels).float().mean().item()
        loss = torch.stack(losses).mean()
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
    if not torch.isfinite(loss):
        return {"loss": float(loss.detach()), "acc": correct / len(meta.nets), "grad_norm": float("nan"), "skipped": 1.0}
    loss.backward()
    if world_size > 1:
        for p in ghn.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= world_size
    grad_norm = float(nn.utils.clip_grad_norm_(ghn.parameters(), grad_clip))
    if not math.isfinite(grad_norm):
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        return {"loss": float(loss.detach()), "acc": correct / len(meta.nets), "grad_norm": grad_norm, "skipped": 1.0}
    if optimizer is not None:
        optimizer.step()
    loss = loss.detach()
    return {"loss": float(loss), "acc": correct / len(meta.nets), "grad_norm": grad_norm, "skipped": 0.0}


# -- the run ----------------------------------------------------------------------------------------

@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device: torch.device) -> _Dist:
    """All DDP decisions in one place: torchrun sets RANK/WORLD_SIZE/LOCAL_RANK."""
    if "RANK" not in os.environ:
        return _Dist()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    d = _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda":
        torch.cuda.set_device(d.local_rank)
    return d


def lr_at(cfg: TrainConfig, epoch: float) -> float:
    """Multi-step schedule as a pure function of the (fractional) epoch."""
    return cfg.lr * cfg.gamma ** sum(epoch >= m for m in cfg.milestones)


@dataclass
class _Start:
    """Where a run starts: a fresh GHN, another checkpoint's weights (--init), or its own last.pt."""

    ghn: GHN2
    optimizer_state: dict | None = None
    step: int = 0            # steps this run already did (resuming its own last.pt)
    prior_steps: int = 0     # steps behind the weights it started from (--init)
    wall_time: float = 0.0   # seconds this run already trained


def _starting_point(cfg: TrainConfig, last: Path) -> _Start:
    if last.exists():
        payload = read_checkpoint(last)
        ghn, _ = ghn_from_checkpoint(last)
        saved, now = payload["train"]["config"], json.loads(json.dumps(asdict(cfg)))
        changed = sorted(k for k in now if saved.get(k) != now[k])
        if changed:
            log.warning("resuming %s with changed settings: %s", last, changed)
        t = payload["train"]
        return _Start(ghn, payload.get("optimizer"), int(t["step"]), int(t.get("prior_steps", 0)),
                      float(t.get("wall_time_s", 0.0)))
    if cfg.init:
        ghn, payload = ghn_from_checkpoint(cfg.init)
        steps = int(payload.get("train", {}).get("total_steps", 0))
        log.info("initialised from %s (%d steps)", cfg.init, steps)
        return _Start(ghn, prior_steps=steps)
    torch.manual_seed(cfg.seed)
    return _Start(create_ghn(cfg.variant))


def _validate(ghn: GHN2, store: DeepNets1M, loader, cfg: TrainConfig) -> dict[str, float]:
    """Predicted-parameter accuracy on the first val-split nets (a quick learning signal)."""
    from .evaluate import evaluate_store

    result = evaluate_store(ghn, store, range(min(cfg.eval_nets, len(store))), loader,
                            max_batches=cfg.eval_batches, progress=False)
    ghn.train()
    return {"val_acc": result.mean, "val_acc_se": result.stderr, "val_nets": len(result.accuracies)}


def _open_train_store(cfg: TrainConfig, is_main: bool) -> DeepNets1M:
    path = Path(cfg.deepnets_dir) / "deepnets1m_train.h5"
    if not path.exists() and is_main:
        log.info("no train split at %s: generating %d nets", path, cfg.train_nets)
        generate_split("train", cfg.train_nets, cfg.deepnets_dir)
    if dist.is_initialized():
        dist.barrier()
    store = DeepNets1M(path)
    if not store.complete:
        raise GhnNasError(f"{path} is unfinished ({len(store)} nets); resume it with "
                          f"`python -m ghn_core.deepnets generate --split train --n {cfg.train_nets} "
                          f"--out {cfg.deepnets_dir}`")
    return store


def train(cfg: TrainConfig, *, progress: bool = True) -> Path:
    """Run (or resume) training; returns the path of the last checkpoint."""
    device = resolve_device(cfg.device)
    ddp = _setup_distributed(device)
    if ddp.world_size > 1 and device.type == "cuda":
        device = torch.device("cuda", ddp.local_rank)
    out = Path(cfg.out)
    last = out / "last.pt"

    start = _starting_point(cfg, last)
    ghn = start.ghn.to(device).train()
    optimizer = torch.optim.Adam(ghn.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if start.optimizer_state is not None:
        optimizer.load_state_dict(start.optimizer_state)
    start_step, prior_steps, wall_time = start.step, start.prior_steps, start.wall_time

    store = _open_train_store(cfg, ddp.is_main)
    images = load_split(cfg.dataset, "train", data_dir=cfg.data_dir)
    loader = BatchLoader(images, cfg.batch_size, shuffle=True, augment=True, device=device,
                         seed=cfg.seed + 7919 * ddp.rank, drop_last=True)
    steps_per_epoch = len(loader)
    total_steps = int(cfg.epochs * steps_per_epoch)
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    val_store = val_loader = None
    if cfg.eval_nets and ddp.is_main:
        from .evaluate import eval_loader

        val_store = DeepNets1M(_ensure_split(cfg, "val", ddp.is_main))
        val_loader = eval_loader(cfg.dataset, "val", data_dir=cfg.data_dir, device=device)

    metrics_path = out / "metrics.jsonl"
    if ddp.is_main:
        out.mkdir(parents=True, exist_ok=True)
        with metrics_path.open("a") as f:
            f.write(json.dumps({"event": "start", "step": start_step, "config": asdict(cfg),
                                "world_size": ddp.world_size, "device": str(device),
                                "torch": torch.__version__}) + "\n")

    def checkpoint(step: int, metrics: dict[str, float]) -> None:
        if not ddp.is_main:
            return
        save_checkpoint(last, {
            "config": ghn.config.to_dict(), "state_dict": ghn.state_dict(), "optimizer": optimizer.state_dict(),
            "train": {"config": asdict(cfg), "step": step, "total_steps": prior_steps + step,
                      "prior_steps": prior_steps, "steps_per_epoch": steps_per_epoch, "dataset": cfg.dataset,
                      "train_nets": len(store), "world_size": ddp.world_size, "device": str(device),
                      "wall_time_s": wall_time + time.perf_counter() - t_start},
            "metrics": metrics,
        })

    t_start = time.perf_counter()
    t_ckpt = time.perf_counter()
    bar = tqdm(total=total_steps, initial=start_step, desc="train ghn", unit="step",
               disable=not (progress and ddp.is_main))
    step, failures, skipped_total, window = start_step, 0, 0, []
    summary: dict[str, float] = {}
    epoch = start_step // steps_per_epoch
    while step < total_steps:
        loader.set_epoch(epoch)
        skip = step - epoch * steps_per_epoch  # batches of this epoch done before a resume
        for b, (x, y) in enumerate(loader):
            if b < skip:
                continue
            if step >= total_steps:
                break
            for group in optimizer.param_groups:
                group["lr"] = lr_at(cfg, step / steps_per_epoch)
            rng = random.Random((cfg.seed * 1_000_003 + step) * 64 + ddp.rank)
            torch.manual_seed(cfg.seed * 1_000_003 + step)  # dropout inside the sampled nets
            meta = sample_meta_batch(store, rng, meta_batch=cfg.meta_batch, max_nodes=cfg.max_nodes,
                                     num_classes=len(images.classes), width_scale=cfg.width_scale,
                                     s_max=max(ghn.config.virtual_edges, 1))
            t0 = time.perf_counter()
            try:
                stats = train_step(ghn, meta, x, y, optimizer=optimizer, grad_clip=cfg.grad_clip, amp=cfg.amp,
                                   world_size=ddp.world_size)
            except torch.OutOfMemoryError:
                optimizer.zero_grad(set_to_none=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                stats = {"loss": float("nan"), "acc": 0.0, "grad_norm": float("nan"), "skipped": 1.0}
            stats["step_time"] = time.perf_counter() - t0
            stats["nodes"] = meta.num_nodes
            if stats["skipped"]:
                failures += 1
                skipped_total += 1
                log.warning("step %d skipped (loss %s, grad norm %s); %d in a row", step, stats["loss"],
                            stats["grad_norm"], failures)
                if failures > cfg.max_failures:
                    raise GhnNasError(f"{failures} consecutive steps had a non-finite loss or ran out of memory; "
                                      f"stopping (last checkpoint: {last})")
            else:
                failures = 0
                window.append(stats)
            step += 1
            bar.update(1)
            if ddp.is_main and (step % cfg.log_every == 0 or step == total_steps) and window:
                summary = {k: sum(s[k] for s in window) / len(window) for k in ("loss", "acc", "grad_norm", "step_time")}
                bar.set_postfix(loss=f"{summary['loss']:.3f}", acc=f"{summary['acc']:.3f}")
                with metrics_path.open("a") as f:
                    f.write(json.dumps({"step": step, "epoch": step / steps_per_epoch, "lr": lr_at(cfg, step / steps_per_epoch),
                                        **summary, "skipped": skipped_total}) + "\n")
                window = []
            due = step % cfg.ckpt_every == 0 or time.perf_counter() - t_ckpt > 60 * cfg.ckpt_every_minutes
            if due or step == total_steps:
                metrics = {**summary, "skipped": skipped_total}
                if val_store is not None:
                    metrics.update(_validate(ghn, val_store, val_loader, cfg))
                    with metrics_path.open("a") as f:
                        f.write(json.dumps({"step": step, "event": "eval", **metrics}) + "\n")
                checkpoint(step, metrics)
                t_ckpt = time.perf_counter()
        epoch += 1
    bar.close()
    if ddp.is_main:
        log.info("done: %d steps, checkpoint %s (weights %s)", step, last, state_hash(ghn.state_dict()))
    return last


def _ensure_split(cfg: TrainConfig, split: str, is_main: bool) -> Path:
    path = Path(cfg.deepnets_dir) / f"deepnets1m_{split}.h5"
    if not path.exists() and is_main:
        generate_split(split, get_split(split).size, cfg.deepnets_dir, progress=False)
    return path


# -- command line -----------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> tuple[TrainConfig, bool]:
    """``--preset NAME`` first, then ``--field value`` overrides, type-checked against the defaults."""
    parser = argparse.ArgumentParser(prog="python -m ghn_core.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    defaults = TrainConfig()
    for name, f in TrainConfig.fields().items():
        value = getattr(defaults, name)
        kind = type(value) if value is not None else str
        if isinstance(value, bool):
            parser.add_argument(f"--{name}", type=lambda s: s.lower() in ("1", "true", "yes", "on"), default=None,
                                metavar="BOOL")
        elif isinstance(value, tuple):
            parser.add_argument(f"--{name}", type=float, nargs="+", default=None)
        elif name == "max_steps":
            parser.add_argument(f"--{name}", type=int, default=None)
        else:
            parser.add_argument(f"--{name}", type=kind, default=None)
    args = parser.parse_args(argv)
    values = {**PRESETS[args.preset]}
    values.update({k: (tuple(v) if isinstance(v, list) else v) for k, v in vars(args).items()
                   if k in TrainConfig.fields() and v is not None})
    return TrainConfig(**values), args.debug


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg, debug = parse_args(argv)
    with user_errors(debug):
        path = train(cfg)
    print(f"checkpoint: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
