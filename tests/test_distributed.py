"""Training on several ranks (gloo on CPU): averaged steps, identical replicas, torchrun end to end."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ghn_core.deepnets import Network, SplitSpec
from ghn_core.deepnets.generate import generate_chunk
from conftest import TINY
from ghn_core.graph import Graph
from ghn_core.model import create_ghn, read_checkpoint
from ghn_core.train import MetaBatch, TrainConfig, train, train_step

STEPS, RANKS = 3, 2


@pytest.fixture
def one_thread():
    """Each rank (and the reference) computes on one thread: the machine has two cores, and the
    same kernels on both sides keep the comparison tight."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _shards() -> list[list[tuple[MetaBatch, torch.Tensor, torch.Tensor]]]:
    """shards[step][rank]: one net and 8 images per rank; in the last step rank 1's images are NaN."""
    recs = generate_chunk(SplitSpec("train", STEPS * RANKS, seed=11, buckets=tuple(range(64)), **TINY), 0, STEPS * RANKS)
    gen = torch.Generator().manual_seed(0)
    shards = []
    for s in range(STEPS + 1):
        row = []
        for r in range(RANKS):
            net = Network(recs[(s * RANKS + r) % len(recs)].arch, 8, track_running_stats=False, device="meta")
            x = torch.randn(8, 3, 32, 32, generator=gen)
            if s == STEPS and r == 1:
                x = torch.full_like(x, float("nan"))
            row.append((MetaBatch([r], [net], [Graph.from_module(net)]), x, torch.randint(0, 10, (8,), generator=gen)))
        shards.append(row)
    return shards


def _fresh() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    ghn = create_ghn("ghn2")
    return ghn, torch.optim.Adam(ghn.parameters(), lr=1e-3, weight_decay=1e-5)


def _rank(rank: int, init_file: str, shards, out: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=RANKS)
    ghn, opt = _fresh()
    for s, row in enumerate(shards):
        meta, x, y = row[rank]
        torch.manual_seed(1000 * s + rank)  # dropout in the net's classifier
        stats = train_step(ghn, meta, x, y, optimizer=opt, world_size=RANKS)
        torch.save({"stats": stats, "state": ghn.state_dict()}, out / f"rank{rank}-step{s}.pt")
    dist.destroy_process_group()


def test_two_ranks_take_the_step_of_one_process_with_both_batches(tmp_path, one_thread):
    shards = _shards()
    mp.start_processes(_rank, args=(str(tmp_path / "pg"), shards, tmp_path), nprocs=RANKS, start_method="fork")
    result = [[torch.load(tmp_path / f"rank{r}-step{s}.pt") for r in range(RANKS)] for s in range(STEPS + 1)]

    # One process, both shards: gradients of each, averaged, then clipped and stepped as train_step does.
    ghn, opt = _fresh()
    init = {k: v.clone() for k, v in ghn.state_dict().items()}
    for s in range(STEPS):
        grads, losses = [], []
        for r, (meta, x, y) in enumerate(shards[s]):
            ghn.zero_grad(set_to_none=True)
            torch.manual_seed(1000 * s + r)
            losses.append(train_step(ghn, meta, x, y, grad_clip=math.inf)["loss"])
            grads.append([p.grad.clone() for p in ghn.parameters()])
        assert not all(torch.allclose(a, b) for a, b in zip(*grads))  # the shards' gradients differ
        for p, g0, g1 in zip(ghn.parameters(), *grads):
            p.grad = (g0 + g1) / 2
        torch.nn.utils.clip_grad_norm_(ghn.parameters(), 5.0)
        opt.step()

        rank0, rank1 = result[s]
        for key, value in rank0["state"].items():
            assert torch.equal(value, rank1["state"][key]), (s, key)  # the replicas stay identical
            torch.testing.assert_close(value, ghn.state_dict()[key], rtol=1e-5, atol=1e-6, msg=f"step {s}: {key}")
        assert rank0["stats"] == rank1["stats"] and rank0["stats"]["skipped"] == 0.0
        assert rank0["stats"]["loss"] == pytest.approx(sum(losses) / 2, rel=1e-5)  # logged loss: mean of ranks
    assert any(not torch.equal(init[k], v) for k, v in ghn.state_dict().items())

    # A non-finite loss on rank 1 alone: both ranks skip the step (no hang), weights unchanged.
    last, skipped = result[STEPS - 1], result[STEPS]
    assert all(s["stats"]["skipped"] == 1.0 for s in skipped)
    for r in range(RANKS):
        assert all(torch.equal(v, last[r]["state"][k]) for k, v in skipped[r]["state"].items())


# -- end to end: torchrun with 2 ranks, then resumed on 1 ---------------------------------------------


def test_torchrun_two_ranks_then_resume_on_one(tiny_store, tmp_path, cifar_dir, one_thread):
    out = tmp_path / "run"
    args = dict(deepnets_dir=str(tiny_store), data_dir=str(cifar_dir), out=str(out), width_scale=0.125,
                batch_size=16, meta_batch=2, eval_nets=0, log_every=1, ckpt_every=2, device="cpu")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "ghn_core.train", "--max_steps", "3"]
    cmd += [x for k, v in args.items() for x in (f"--{k}", str(v))]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # Rank 0 alone wrote: one start record, each step logged once, two rotated checkpoints.
    assert sorted(p.name for p in out.iterdir()) == ["last.pt", "metrics.jsonl", "prev.pt"]
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["world_size"]) for r in log if r.get("event") == "start"] == [(0, 2)]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) for r in log if "loss" in r)
    ckpt = read_checkpoint(out / "last.pt")
    assert (ckpt["train"]["step"], ckpt["train"]["world_size"]) == (3, 2)
    assert read_checkpoint(out / "prev.pt")["train"]["step"] == 2

    resumed = read_checkpoint(train(TrainConfig(**args, max_steps=5), progress=False))
    assert (resumed["train"]["step"], resumed["train"]["world_size"]) == (5, 1)
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["world_size"]) for r in log if r.get("event") == "start"] == [(0, 2), (3, 1)]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4, 5]
