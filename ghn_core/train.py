"""Train a GHN on DeepNets-1M: ``python -m ghn_core.train [--preset cpu-small] [--field value ...]``.

One loop, nanoGPT style: draw a meta-batch of architectures and a batch of images, predict every
parameter of every net, run the nets on the images, back-propagate the mean cross-entropy into
the GHN, clip, step. Defaults are the paper's recipe (:class:`TrainConfig`); presets override a few
fields for small budgets. Every random choice of step ``k`` is a function of (seed, k), so a
resumed run continues exactly where the stopped one was.

The same entry point runs under ``torchrun --nproc_per_node N -m ghn_core.train ...``:
``batch_size`` and ``meta_batch`` stay totals per step, split evenly over the ranks; each rank draws
its own nets and trains on its own 1/N of the images; gradients are averaged in one all-reduce, so
every rank takes the same step; rank 0 alone writes the log and the checkpoints. A run resumes on
any number of ranks. Checkpoints rotate ``last.pt`` -> ``prev.pt``; a restart uses the newest
one that reads cleanly.
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

from .data import BatchLoader, get_dataset_info, load_split, resize
from .deepnets import DeepNets1M, Network, architecture_graph, generate_split, get_split, sample_width
from .deepnets.store import store_path
from .errors import CheckpointError, GhnNasError
from .graph import Graph
from .model import GHN2, create_ghn, ghn_from_checkpoint, save_checkpoint
from .model.checkpoint import remove_partial_writes, state_hash
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
    max_minutes: float | None = None    # stop after this many minutes of this run (equal wall-clock comparisons)
    max_cpu_minutes: float | None = None  # ... of this process's CPU time, all threads (equal compute on a shared machine)
    lr: float = 1e-3
    weight_decay: float = 1e-5
    milestones: tuple[float, ...] = (200, 250)  # epochs at which lr drops by gamma
    gamma: float = 0.1
    grad_clip: float = 5.0
    batch_size: int = 64                # images per step (all ranks together)
    meta_batch: int = 8                 # architectures per step (all ranks together)
    max_nodes: int = 2200               # a meta-batch with more graph nodes is redrawn (per rank: its share)
    width_scale: float = 1.0            # multiply the §1.2 widths (0.5: narrower nets for CPU budgets)
    resolution: int | None = None       # training images resized to this side (None: as stored; validation never)
    # run
    out: str = "runs/ghn2"
    # The optimizer starts afresh from --init; the step count, the clocks, the draw of nets and images
    # and the lr schedule carry on from the checkpoint's own totals.
    init: str | None = None             # continue from this checkpoint's weights (e.g. the shipped one)
    seed: int = 1111
    device: str = "auto"
    amp: bool = True                    # bfloat16 autocast on CUDA
    log_every: int = 10
    ckpt_every: int = 100               # steps between checkpoints (and at the end)
    ckpt_every_minutes: float = 10.0    # ... or this often, whichever comes first
    max_failures: int = 20              # consecutive skipped (NaN/OOM) steps before giving up
    eval_nets: int = 20                 # val-split nets scored at each checkpoint (0: none)
    eval_batches: int = 4

    def __post_init__(self) -> None:
        # Checked before anything is generated or loaded: a zero here would otherwise surface as a
        # crash (or a 1M-net split being generated) far into the run.
        for name in _POSITIVE_FIELDS:
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"expected {name} > 0, got {value!r} instead")

    @classmethod
    def fields(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls)}


#: Fields that must be above zero when set (None: unbounded or as stored). Time budgets may be 0: one step.
_POSITIVE_FIELDS = ("train_nets", "epochs", "max_steps", "lr", "batch_size", "meta_batch", "max_nodes", "width_scale",
                    "resolution")


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
        drawn, graphs = [], []
        for i in indices:
            rec = store[i]
            C, fc_dim = _scaled_width(rng, rec, width_scale)
            drawn.append((rec.arch.with_(fc_dim=fc_dim), C))
            graphs.append(architecture_graph(drawn[-1][0], C, num_classes, image_size=image_size, s_max=s_max))
        if sum(g.num_nodes for g in graphs) <= max_nodes:  # the modules are built for a kept batch only
            nets = [Network(arch, C, num_classes, track_running_stats=False, device="meta") for arch, C in drawn]
            return MetaBatch(indices, nets, graphs)
    raise GhnNasError(f"could not draw {meta_batch} nets with at most {max_nodes} graph nodes in 100 tries; "
                      f"raise --max_nodes or lower --meta_batch")


def train_step(ghn: GHN2, meta: MetaBatch, images: torch.Tensor, labels: torch.Tensor, *,
               optimizer: torch.optim.Optimizer | None = None, grad_clip: float = 5.0, amp: bool = False,
               world_size: int = 1) -> dict[str, float]:
    """Predict the nets' parameters, classify ``images`` with each, back-propagate into the GHN.

    Returns loss, accuracy (mean over nets) and gradient norm. With ``optimizer=None`` only the
    forward and backward run. A non-finite loss or gradient, or running out of memory, leaves the
    GHN untouched and returns ``{"skipped": 1.0, ...}``.

    With ``world_size > 1`` (under ``torchrun``) each rank passes its own nets and images; the
    gradients, loss and accuracy are averaged over the ranks, so every rank takes the same step,
    and a step that fails on any rank is skipped by all of them.
    """
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
    try:
        loss, acc = _forward_backward(ghn, meta, images, labels, amp)
    except torch.OutOfMemoryError:
        ghn.zero_grad(set_to_none=True)
        if images.device.type == "cuda":
            torch.cuda.empty_cache()
        loss, acc = float("nan"), 0.0
    if world_size > 1:
        loss, acc = _average_over_ranks(ghn, loss, acc, world_size)
    if not math.isfinite(loss):  # under torchrun: on any rank, as the mean is then non-finite too
        ghn.zero_grad(set_to_none=True)
        return {"loss": loss, "acc": acc, "grad_norm": float("nan"), "skipped": 1.0}
    grad_norm = float(nn.utils.clip_grad_norm_(ghn.parameters(), grad_clip))
    if not math.isfinite(grad_norm):
        ghn.zero_grad(set_to_none=True)
        return {"loss": loss, "acc": acc, "grad_norm": grad_norm, "skipped": 1.0}
    if optimizer is not None:
        optimizer.step()
    return {"loss": loss, "acc": acc, "grad_norm": grad_norm, "skipped": 0.0}


def _forward_backward(ghn: GHN2, meta: MetaBatch, images: torch.Tensor, labels: torch.Tensor,
                      amp: bool) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of the meta-batch's nets; back-propagates a finite loss."""
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
    if torch.isfinite(loss):
        loss.backward()
    return float(loss.detach()), correct / len(meta.nets)


def _average_over_ranks(ghn: GHN2, loss: float, acc: float, world_size: int) -> tuple[float, float]:
    """Average the gradients, loss and accuracy over all ranks; returns the mean loss and accuracy.

    Everything travels in one flat buffer, so a step costs one all-reduce rather than one per
    tensor. (torch's DistributedDataParallel would hook the backward instead, but the GHN's
    forward is ``predict_params`` + ``functional_call``, and a rank that skips its backward would
    leave the others waiting.) Every rank joins, even one whose loss is non-finite: the mean loss
    is then non-finite on all ranks, and all skip the step. A parameter no rank used keeps
    ``grad=None``.
    """
    params = list(ghn.parameters())
    sizes = [p.numel() for p in params]
    n = sum(sizes)
    grads = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
    extra = [float(p.grad is not None) for p in params] + [loss, acc]
    flat = torch.cat(grads + [torch.tensor(extra, dtype=grads[0].dtype, device=grads[0].device)])
    dist.all_reduce(flat)
    flat /= world_size
    used = flat[n:n + len(params)].tolist()
    for p, g, u in zip(params, flat[:n].split(sizes), used):
        p.grad = g.view_as(p) if u > 0 else None
    return float(flat[-2]), float(flat[-1])


# -- the run ----------------------------------------------------------------------------------------

@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # train() set up the process group, so it tears it down

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device: torch.device) -> _Dist:
    """All DDP decisions in one place: torchrun sets RANK/WORLD_SIZE/LOCAL_RANK."""
    if "RANK" not in os.environ:
        return _Dist()
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    d = _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), owns_group)
    if d.world_size > 64:
        raise GhnNasError(f"at most 64 ranks are supported (each step has 64 per-rank seeds), got {d.world_size}")
    if device.type == "cuda":
        torch.cuda.set_device(d.local_rank)
    return d


def _step_seed(seed: int, step: int, rank: int) -> int:
    """The seed of everything random in one rank's step: a resumed run redraws the same."""
    return (seed * 1_000_003 + step) * 64 + rank


def _check_replicas(ghn: GHN2, step: int) -> None:
    """Stop if the ranks' GHNs differ: they start equal and take the same averaged steps, so a
    difference means a rank resumed from another file or skipped a step the others took."""
    mine = (step, state_hash(ghn.state_dict()))
    everyone: list = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    if any(other != everyone[0] for other in everyone):
        raise GhnNasError(f"the ranks' GHNs differ at step {step}: (step, weights hash) per rank: {everyone}; "
                          f"all ranks must see the same --out folder")


def lr_at(cfg: TrainConfig, epoch: float) -> float:
    """Multi-step schedule as a pure function of the (fractional) epoch."""
    return cfg.lr * cfg.gamma ** sum(epoch >= m for m in cfg.milestones)


@dataclass
class _Start:
    """Where a run starts: a fresh GHN, another checkpoint's weights (--init), or its own checkpoint."""

    ghn: GHN2
    optimizer_state: dict | None = None
    step: int = 0            # steps this run already did (resuming its own checkpoint)
    prior_steps: int = 0     # steps behind the weights it started from (--init)
    wall_time: float = 0.0   # seconds the weights already trained (this run's and, after --init, its source's)
    cpu_time: float = 0.0    # ... and CPU-seconds of rank 0's processes (all threads)
    world_size: int = 1      # ranks of the run that wrote the checkpoint resumed from


def _read_resumable(paths: Sequence[Path], *, is_main: bool) -> tuple[Path, GHN2, dict]:
    """The first of ``paths`` (newest first) that is a whole, resumable checkpoint.

    Rank 0 warns about each unreadable one and renames it to ``*.corrupt``, so that the next
    rotation cannot push it over the good one. If none reads, the error names each file and its
    problem, and every file stays where it is.
    """
    bad: list[tuple[Path, CheckpointError]] = []
    for path in paths:
        try:
            ghn, payload = ghn_from_checkpoint(path)
            if "train" not in payload or "optimizer" not in payload:
                raise CheckpointError(f"{path} holds GHN weights but no training state to resume")
        except CheckpointError as err:
            bad.append((path, err))
            continue
        if is_main:
            for skipped, err in bad:
                kept = skipped.with_name(skipped.name + ".corrupt")
                os.replace(skipped, kept)
                log.warning("cannot resume from %s (%s); resuming from %s instead, the bad file is kept as %s",
                            skipped, err, path, kept)
        return path, ghn, payload
    raise CheckpointError("no checkpoint to resume from reads cleanly: " + "; ".join(str(e) for _, e in bad)
                          + ". Move these files away to start afresh, or use another --out.")


def _check_classes(ghn: GHN2, cfg: TrainConfig, source: Path | str) -> None:
    """A GHN decodes ``num_classes`` classifier rows and tiles them over wider heads: one trained for
    another class count would run, with wrong (repeated) class rows, so it is refused here."""
    classes = get_dataset_info(cfg.dataset).num_classes
    if ghn.config.num_classes != classes:
        raise GhnNasError(f"{source} holds a GHN for {ghn.config.num_classes} classes, but --dataset {cfg.dataset} "
                          f"has {classes}; start afresh (no --init, another --out) to train one for {cfg.dataset}")


def _starting_point(cfg: TrainConfig, out: Path, is_main: bool) -> _Start:
    found = [p for p in (out / "last.pt", out / "prev.pt") if p.exists()]
    if found:
        path, ghn, payload = _read_resumable(found, is_main=is_main)
        _check_classes(ghn, cfg, path)
        # Through JSON both sides compare alike (a saved tuple would differ from a list).
        saved, now = (json.loads(json.dumps(c)) for c in (payload["train"]["config"], asdict(cfg)))
        per_run = ("max_minutes", "max_cpu_minutes")  # budgets of one invocation: no news when they differ
        changed = sorted(k for k in now if saved.get(k) != now[k] and k not in per_run)
        if changed and is_main:
            log.warning("resuming %s with changed settings: %s", path, changed)
        t = payload["train"]
        return _Start(ghn, payload["optimizer"], int(t["step"]), int(t.get("prior_steps", 0)),
                      float(t.get("wall_time_s", 0.0)), float(t.get("cpu_time_s", 0.0)), int(t.get("world_size", 1)))
    if cfg.init:
        ghn, payload = ghn_from_checkpoint(cfg.init)
        _check_classes(ghn, cfg, cfg.init)
        behind = payload.get("train", {})
        steps = int(behind.get("total_steps", 0))
        log.info("initialised from %s (%d steps)", cfg.init, steps)
        return _Start(ghn, prior_steps=steps, wall_time=float(behind.get("wall_time_s", 0.0)),
                      cpu_time=float(behind.get("cpu_time_s", 0.0)))
    torch.manual_seed(cfg.seed)
    # the decoder predicts one row per class of the dataset (10 rows tiled to 100 would repeat classes)
    return _Start(create_ghn(cfg.variant, num_classes=get_dataset_info(cfg.dataset).num_classes))


def _validate(ghn: GHN2, store: DeepNets1M, loader, cfg: TrainConfig) -> dict[str, float]:
    """Predicted-parameter accuracy on the first val-split nets (a quick learning signal)."""
    from .evaluate import evaluate_nets

    num_classes = get_dataset_info(cfg.dataset).num_classes   # the nets' heads match the images' labels
    nets = [(f"{store.split}/{i}", store.network(i, num_classes)) for i in range(min(cfg.eval_nets, len(store)))]
    result = evaluate_nets(ghn, nets, loader, max_batches=cfg.eval_batches, progress=False)
    ghn.train()
    return {"val_acc": result.mean, "val_acc_se": result.stderr, "val_nets": len(result.accuracies)}


def _open_train_store(cfg: TrainConfig, is_main: bool) -> DeepNets1M:
    path = store_path(cfg.deepnets_dir, "train")
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
    if cfg.batch_size % ddp.world_size or cfg.meta_batch % ddp.world_size:
        raise GhnNasError(f"--batch_size {cfg.batch_size} and --meta_batch {cfg.meta_batch} are totals per step, "
                          f"split evenly over the {ddp.world_size} ranks: use multiples of {ddp.world_size}")
    batch_size, meta_batch = cfg.batch_size // ddp.world_size, cfg.meta_batch // ddp.world_size
    max_nodes = cfg.max_nodes * meta_batch // cfg.meta_batch  # the node cap scales with the nets drawn
    out = Path(cfg.out)
    last, prev = out / "last.pt", out / "prev.pt"

    if ddp.is_main:
        for tmp in remove_partial_writes(last):
            log.warning("removed %s, left by a run killed while writing a checkpoint", tmp)
    start = _starting_point(cfg, out, ddp.is_main)
    if start.step and ddp.is_main:
        log.info("resuming at step %d (written by %d rank(s), continuing on %d)", start.step,
                 start.world_size, ddp.world_size)
    ghn = start.ghn.to(device).train()
    optimizer = torch.optim.Adam(ghn.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if start.optimizer_state is not None:
        optimizer.load_state_dict(start.optimizer_state)
    start_step, prior_steps, wall_time, cpu_time = start.step, start.prior_steps, start.wall_time, start.cpu_time
    if ddp.world_size > 1:
        _check_replicas(ghn, start_step)

    store = _open_train_store(cfg, ddp.is_main)
    images = load_split(cfg.dataset, "train", data_dir=cfg.data_dir)
    steps_per_epoch = len(images) // cfg.batch_size
    if ddp.world_size > 1:  # each rank draws its batches from its own 1/N of the images
        images = images.subset(torch.arange(ddp.rank, len(images), ddp.world_size))
    loader = BatchLoader(images, batch_size, shuffle=True, augment=True, device=device,
                         seed=cfg.seed + 7919 * ddp.rank, drop_last=True)
    # Steps count from the weights' own beginning (prior_steps behind an --init), so that a
    # continued run neither redraws the nets and images already seen nor restarts the schedule.
    total_steps = int(cfg.epochs * steps_per_epoch) - prior_steps
    if total_steps <= 0:
        raise GhnNasError(f"{cfg.init} already has {prior_steps} steps, the whole schedule of --epochs {cfg.epochs:g}; "
                          f"raise --epochs to train on")
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    val_store = val_loader = None
    if cfg.eval_nets and ddp.is_main:
        from .evaluate import eval_loader

        val_store = DeepNets1M(_ensure_split(cfg, "val"))
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
                      "wall_time_s": wall_time + time.perf_counter() - t_start,
                      "cpu_time_s": cpu_time + time.process_time() - c_start},
            "metrics": metrics,
        }, previous=prev)

    t_start, c_start = time.perf_counter(), time.process_time()
    t_ckpt = time.perf_counter()
    bar = tqdm(total=total_steps, initial=start_step, desc="train ghn", unit="step",
               disable=not (progress and ddp.is_main))
    step, failures, skipped_total, window = start_step, 0, 0, []
    summary: dict[str, float] = {}
    epoch = (prior_steps + start_step) // steps_per_epoch
    while step < total_steps:
        loader.set_epoch(epoch)
        skip = prior_steps + step - epoch * steps_per_epoch  # batches of this epoch done before a resume
        for b, (x, y) in zip(range(steps_per_epoch), loader):
            if b < skip:
                continue
            if step >= total_steps:
                break
            for group in optimizer.param_groups:
                group["lr"] = lr_at(cfg, (prior_steps + step) / steps_per_epoch)
            seed = _step_seed(cfg.seed, prior_steps + step, ddp.rank)
            rng = random.Random(seed)
            torch.manual_seed(seed)  # dropout inside the sampled nets
            meta = sample_meta_batch(store, rng, meta_batch=meta_batch, max_nodes=max_nodes,
                                     num_classes=len(images.classes), width_scale=cfg.width_scale,
                                     s_max=max(ghn.config.virtual_edges, 1))
            t0 = time.perf_counter()
            stats = train_step(ghn, meta, resize(x, cfg.resolution), y, optimizer=optimizer,
                               grad_clip=cfg.grad_clip, amp=cfg.amp, world_size=ddp.world_size)
            stats["step_time"] = time.perf_counter() - t0
            stats["nodes"] = meta.num_nodes
            if stats["skipped"]:  # all ranks agree (train_step averages over them)
                failures += 1
                skipped_total += 1
                if ddp.is_main:
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
            if _out_of_time(cfg, t_start, c_start, ddp.world_size, device):
                total_steps = step  # this step is the last: logged, validated and checkpointed as such
            if ddp.is_main and (step % cfg.log_every == 0 or step == total_steps) and window:
                summary = {k: sum(s[k] for s in window) / len(window) for k in ("loss", "acc", "grad_norm", "step_time")}
                bar.set_postfix(loss=f"{summary['loss']:.3f}", acc=f"{summary['acc']:.3f}")
                with metrics_path.open("a") as f:
                    epoch_now = (prior_steps + step) / steps_per_epoch
                    f.write(json.dumps({"step": step, "epoch": epoch_now, "lr": lr_at(cfg, epoch_now),
                                        **summary, "skipped": skipped_total}) + "\n")
                window = []
            # Only rank 0 acts on a checkpoint; the time-based trigger may differ between ranks.
            due = step % cfg.ckpt_every == 0 or time.perf_counter() - t_ckpt > 60 * cfg.ckpt_every_minutes
            if due or step == total_steps:
                metrics = {**summary, "skipped": skipped_total}
                if val_store is not None:
                    metrics.update(_validate(ghn, val_store, val_loader, cfg))
                    with metrics_path.open("a") as f:
                        f.write(json.dumps({"step": step, "event": "eval", **metrics}) + "\n")
                checkpoint(step, metrics)
                t_ckpt = time.perf_counter()
            if ddp.world_size > 1 and (step % cfg.ckpt_every == 0 or step == total_steps):
                _check_replicas(ghn, step)
        epoch += 1
    bar.close()
    if ddp.is_main:
        log.info("done: %d steps, checkpoint %s (weights %s)", step, last, state_hash(ghn.state_dict()))
    if ddp.owns_group:
        dist.destroy_process_group()
    return last


def _out_of_time(cfg: TrainConfig, t_start: float, c_start: float, world_size: int, device: torch.device) -> bool:
    """Whether this run has used ``cfg.max_minutes`` or ``cfg.max_cpu_minutes``; every rank gets rank 0's
    answer (clocks differ)."""
    if cfg.max_minutes is None and cfg.max_cpu_minutes is None:
        return False
    wall_over = cfg.max_minutes is not None and time.perf_counter() - t_start > 60 * cfg.max_minutes
    cpu_over = cfg.max_cpu_minutes is not None and time.process_time() - c_start > 60 * cfg.max_cpu_minutes
    over = torch.tensor(float(wall_over or cpu_over), device=device)
    if world_size > 1:
        dist.broadcast(over, src=0)
    return bool(over.item())


def _ensure_split(cfg: TrainConfig, split: str) -> Path:
    path = store_path(cfg.deepnets_dir, split)
    if not path.exists():
        generate_split(split, get_split(split).size, cfg.deepnets_dir, progress=False)
    return path


# -- command line -----------------------------------------------------------------------------------

def _field_notes() -> dict[str, str]:
    """The comment next to each ``TrainConfig`` field, as its ``--help`` text."""
    import inspect
    import re

    try:
        source = inspect.getsource(TrainConfig)
    except OSError:  # no source (a frozen install): options without help
        return {}
    found = re.findall(r"^\s+(\w+): [^=\n]+=[^#\n]*#\s*(.+)$", source, flags=re.MULTILINE)
    notes = {"variant": "GHN variant: ghn2, ghn1 or mlp", "dataset": "image dataset: cifar10, cifar100 or imagenet",
             "data_dir": "image data folder ($GHN_NAS_DATA when not given)",
             "deepnets_dir": "folder of the DeepNets-1M splits", "lr": "Adam learning rate",
             "weight_decay": "Adam weight decay", "gamma": "learning-rate factor at each milestone",
             "grad_clip": "gradient-norm clip", "eval_batches": "image batches per scored net"}
    notes.update((name, note.strip()) for name, note in found)
    return {name: note.replace("%", "%%") for name, note in notes.items()}


def parse_args(argv: Sequence[str] | None = None) -> tuple[TrainConfig, bool]:
    """``--preset NAME`` first, then ``--field value`` overrides, type-checked against the defaults."""
    parser = argparse.ArgumentParser(prog="python -m ghn_core.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="paper", choices=sorted(PRESETS),
                        help="a set of overrides for small budgets, applied before the options below "
                             "(default: %(default)s)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    defaults, notes = TrainConfig(), _field_notes()
    for name, f in TrainConfig.fields().items():
        value = getattr(defaults, name)
        kind = type(value) if value is not None else str
        # --batch-size and --batch_size alike; the field name stays the destination.
        flags = [f"--{name.replace('_', '-')}", f"--{name}"] if "_" in name else [f"--{name}"]
        shown = " ".join(map(str, value)) if isinstance(value, tuple) else value
        common = dict(dest=name, default=None, help=f"{notes.get(name, '')} (paper default: {shown})".lstrip())
        if isinstance(value, bool):
            parser.add_argument(*flags, type=lambda s: s.lower() in ("1", "true", "yes", "on"), metavar="BOOL",
                                **common)
        elif isinstance(value, tuple):
            parser.add_argument(*flags, type=float, nargs="+", **common)
        elif name in ("max_steps", "resolution", "max_minutes", "max_cpu_minutes"):  # None by default
            parser.add_argument(*flags, type=int if name in ("max_steps", "resolution") else float, **common)
        else:
            parser.add_argument(*flags, type=kind, **common)
    args = parser.parse_args(argv)
    values = {**PRESETS[args.preset]}
    values.update({k: (tuple(v) if isinstance(v, list) else v) for k, v in vars(args).items()
                   if k in TrainConfig.fields() and v is not None})
    try:
        return TrainConfig(**values), args.debug
    except ValueError as err:
        parser.error(str(err))  # usage and one line, exit 2, before anything is written


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg, debug = parse_args(argv)
    with user_errors(debug, interrupted=f"the checkpoints in {cfg.out} are kept; the same command resumes from "
                                        f"the last one"):
        path = train(cfg)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, once
        print(f"checkpoint: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
