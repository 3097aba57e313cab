"""GHN training: exact resume, skipped non-finite steps, the command line, and a learning signal."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ghn_core import load_ghn
from ghn_core.deepnets import Network, SplitSpec
from ghn_core.deepnets.generate import generate_chunk
from conftest import TINY
from ghn_core.evaluate import eval_loader, evaluate_nets
from ghn_core.graph import Graph
from ghn_core.model import create_ghn, read_checkpoint
from ghn_core.train import PRESETS, MetaBatch, TrainConfig, parse_args, train, train_step


# Small nets: 4-5 cells, at most two nodes per cell, always BN. Train and held-out nets come from
# disjoint hash buckets of the same generator.



def _cfg(store: Path, out: Path, data: Path, **kw) -> TrainConfig:
    base = dict(deepnets_dir=str(store), out=str(out), data_dir=str(data), width_scale=0.125, batch_size=16,
                meta_batch=2, eval_nets=0, log_every=1, ckpt_every=1000, device="cpu")
    return TrainConfig(**{**base, **kw})


def test_resumed_run_equals_uninterrupted_run(tiny_store, tmp_path, cifar_dir):
    straight = read_checkpoint(train(_cfg(tiny_store, tmp_path / "a", cifar_dir, max_steps=4), progress=False))
    train(_cfg(tiny_store, tmp_path / "b", cifar_dir, max_steps=2), progress=False)
    resumed = read_checkpoint(train(_cfg(tiny_store, tmp_path / "b", cifar_dir, max_steps=4), progress=False))
    assert straight["train"]["step"] == resumed["train"]["step"] == 4
    for key, value in straight["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    exp_avg = [s["exp_avg"] for s in straight["optimizer"]["state"].values()]
    assert all(torch.equal(a, s["exp_avg"]) for a, s in zip(exp_avg, resumed["optimizer"]["state"].values()))
    # Another run can start from these weights (how training accumulates across sessions).
    continued = read_checkpoint(train(_cfg(tiny_store, tmp_path / "c", cifar_dir, max_steps=1,
                                           init=str(tmp_path / "a" / "last.pt")), progress=False))
    assert continued["train"]["total_steps"] == 5 and continued["train"]["step"] == 1
    # ... and carries on from them: the clocks add up, and the step drawn is step 5, not step 1 again
    for clock in ("wall_time_s", "cpu_time_s"):
        assert continued["train"][clock] > straight["train"][clock] > 0
    log_c = [json.loads(line) for line in (tmp_path / "c" / "metrics.jsonl").read_text().splitlines()]
    spe = straight["train"]["steps_per_epoch"]
    assert [r["epoch"] for r in log_c if "loss" in r] == [pytest.approx(5 / spe)]
    log = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r.get("event") == "start"] == [0, 2]
    assert log[0]["config"]["max_steps"] == 2  # the resolved config opens every run's log


def test_a_run_from_init_draws_the_steps_after_its_weights(tiny_store, tmp_path, cifar_dir, monkeypatch):
    import ghn_core.train as train_module

    first = train(_cfg(tiny_store, tmp_path / "a", cifar_dir, max_steps=2), progress=False)
    drawn = []
    real_seed = train_module._step_seed
    monkeypatch.setattr(train_module, "_step_seed", lambda seed, step, rank: drawn.append(step) or real_seed(seed, step, rank))
    train(_cfg(tiny_store, tmp_path / "b", cifar_dir, max_steps=2, init=str(first)), progress=False)
    assert drawn == [2, 3]


def test_non_finite_step_leaves_the_ghn_untouched():
    torch.manual_seed(0)
    ghn = create_ghn("ghn2")
    recs = generate_chunk(SplitSpec("train", 2, seed=11, buckets=tuple(range(64)), **TINY), 0, 2)
    nets = [Network(r.arch, 8, track_running_stats=False, device="meta") for r in recs]
    meta = MetaBatch([0, 1], nets, [Graph.from_module(n) for n in nets])
    before = {k: v.clone() for k, v in ghn.state_dict().items()}
    opt = torch.optim.Adam(ghn.parameters(), lr=1e-3)
    x = torch.full((4, 3, 32, 32), float("nan"))
    stats = train_step(ghn, meta, x, torch.zeros(4, dtype=torch.long), optimizer=opt)
    assert stats["skipped"] == 1.0
    assert all(torch.equal(before[k], v) for k, v in ghn.state_dict().items())


def test_command_line_presets_and_overrides():
    cfg, debug = parse_args(["--preset", "cpu-small", "--lr", "0.002", "--milestones", "3", "5", "--amp", "false"])
    assert cfg.lr == 0.002 and cfg.milestones == (3.0, 5.0) and cfg.amp is False and not debug
    assert cfg.batch_size == PRESETS["cpu-small"]["batch_size"]
    assert parse_args([])[0] == TrainConfig()  # the paper's recipe by default
    assert parse_args(["--resolution", "16"])[0].resolution == 16
    assert TrainConfig().lr == 1e-3 and TrainConfig().meta_batch == 8 and TrainConfig().batch_size == 64
    with pytest.raises(SystemExit):
        parse_args(["--learning_rate", "0.1"])  # unknown fields are rejected


def test_resolution_resizes_the_training_images(tiny_store, tmp_path, cifar_dir, monkeypatch):
    import ghn_core.train as train_module

    seen = []
    real_step = train_module.train_step

    def recording_step(ghn, meta, images, labels, **kw):
        seen.append(tuple(images.shape[-2:]))
        return real_step(ghn, meta, images, labels, **kw)

    monkeypatch.setattr(train_module, "train_step", recording_step)
    train(_cfg(tiny_store, tmp_path / "r", cifar_dir, max_steps=2, resolution=16), progress=False)
    assert seen == [(16, 16), (16, 16)]
    train(_cfg(tiny_store, tmp_path / "s", cifar_dir, max_steps=1), progress=False)
    assert seen[-1] == (32, 32)


@pytest.fixture
def one_thread():
    """One torch thread: on a busy 2-core machine, 20 steps of the run below (with loading the images)
    took 25 s with one thread and 107 s with two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_training_lifts_accuracy_on_held_out_nets(tiny_store, tmp_path, cifar_dir, one_thread):
    """A few minutes of CPU training beat the same GHN untrained and random init on unseen nets.

    Measured on this project's 2-core machine (one thread), after 150 steps at lr 3e-3, mean accuracy
    of the 8 held-out nets (256 validation images each), trained vs untrained vs random init, and the
    nets on which the trained GHN beat random init, for four training seeds:
    seed 1111 (the test's): 13.9 vs 9.7 vs 9.1 %, 8 of 8; seed 1: 13.1 vs 8.5 vs 9.1 %, 8 of 8;
    seed 2: 16.2 vs 10.1 vs 9.1 %, 7 of 8; seed 3: 15.0 vs 9.6 vs 9.1 %, 8 of 8.
    The smallest gains, +4.2 points over untrained and +4.0 over random init, stay above the asserted
    +3.0 and +2.5 (and 7 of 8 above 6 of 8). The former recipe, 250 steps at lr 2e-3 (1.7x the images),
    did no better: seed 2: +5.6 and +6.6, 7 of 8; seed 3: +4.9 and +5.4, 8 of 8. At 100 steps (lr 4e-3),
    or with half the nets or half the images per step, some seeds fell short of the margins, a few
    staying at chance.
    """
    cfg = _cfg(tiny_store, tmp_path / "run", cifar_dir, width_scale=0.25, batch_size=64, meta_batch=4, max_steps=150,
               lr=3e-3, log_every=50)
    torch.manual_seed(cfg.seed)
    untrained = create_ghn("ghn2")  # the same initialisation train() starts from
    trained = load_ghn(train(cfg, progress=False))
    held_out = generate_chunk(SplitSpec("held-out", 8, seed=12, buckets=(0,), **TINY), 0, 8)
    loader = eval_loader("cifar10", "val", data_dir=str(cifar_dir))

    def score(ghn):
        torch.manual_seed(0)
        nets = [(str(i), Network(r.arch, 16)) for i, r in enumerate(held_out)]
        return evaluate_nets(ghn, nets, loader, max_batches=4, progress=False)

    ours, before, random_init = score(trained), score(untrained), score(None)
    assert ours.mean > before.mean + 3.0, (ours.summary(), before.summary())
    assert ours.mean > random_init.mean + 2.5, (ours.summary(), random_init.summary())
    assert sum(a > b for a, b in zip(ours.accuracies, random_init.accuracies)) >= 6
