"""Faults in training: a run killed mid-step resumes from its last whole checkpoint; a write killed
midway leaves the old checkpoint whole; a corrupt checkpoint is detected and the previous one used."""
from __future__ import annotations

import io
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ghn_core.errors import CheckpointError
from ghn_core.model import create_ghn, read_checkpoint, save_checkpoint
from ghn_core.model.checkpoint import remove_partial_writes
from ghn_core.train import TrainConfig, train




@pytest.fixture
def one_thread():
    """One thread, as the killed subprocess used: the same kernels give the same bits."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _args(store: Path, out: Path, data: Path, **kw) -> dict:
    return dict(deepnets_dir=str(store), out=str(out), data_dir=str(data), width_scale=0.125, batch_size=16,
                meta_batch=2, eval_nets=0, log_every=1, device="cpu", **kw)


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_sigkill_mid_step_resumes_from_the_last_checkpoint(tiny_store, tmp_path, cifar_dir, one_thread):
    out = tmp_path / "killed"
    args = _args(tiny_store, out, cifar_dir, ckpt_every=2)
    cmd = [sys.executable, "-m", "ghn_core.train", "--max_steps", "6"]
    cmd += [x for k, v in args.items() for x in (f"--{k}", str(v))]
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL, stderr=err)
        try:
            # Step 3 logged: the checkpoint of step 2 is written and step 4 is running.
            deadline = time.monotonic() + 240
            while not ((out / "metrics.jsonl").exists() and any(r.get("step", 0) >= 3 for r in _log(out))):
                assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()[-3000:]
                assert time.monotonic() < deadline, "training never reached step 3"
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    saved = read_checkpoint(out / "last.pt")["train"]["step"]
    assert saved in (2, 4)

    resumed = read_checkpoint(train(TrainConfig(**args, max_steps=6), progress=False))
    assert [r["step"] for r in _log(out) if r.get("event") == "start"] == [0, saved]
    assert resumed["train"]["step"] == 6 and not list(out.glob("*.tmp"))
    # The same state as a run never stopped.
    straight = read_checkpoint(train(TrainConfig(**{**args, "out": str(tmp_path / "straight")}, max_steps=6),
                                     progress=False))
    for key, value in straight["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key


def _write_half_then_hang(path: Path, ready: Path) -> None:
    """In a child process: start overwriting ``path``, stop halfway through the bytes, wait for the kill."""
    real_save = torch.save

    def half_save(obj, f):
        buf = io.BytesIO()
        real_save(obj, buf)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        f.flush()
        ready.touch()
        time.sleep(120)

    torch.save = half_save
    save_checkpoint(path, {"config": {}, "state_dict": {"w": torch.ones(10_000)}}, previous=path.parent / "prev.pt")


def test_a_write_killed_midway_leaves_the_old_checkpoint_whole(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"config": {}, "state_dict": {"w": torch.zeros(10_000)}})
    child = multiprocessing.get_context("fork").Process(target=_write_half_then_hang, args=(path, tmp_path / "ready"))
    child.start()
    deadline = time.monotonic() + 60
    while not (tmp_path / "ready").exists():
        assert child.is_alive() and time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.join()

    assert torch.equal(read_checkpoint(path)["state_dict"]["w"], torch.zeros(10_000))  # old and whole
    assert not (tmp_path / "prev.pt").exists()  # rotation happens only after a whole write
    stray = list(tmp_path.glob("last.pt.*.tmp"))
    assert len(stray) == 1 and stray[0].stat().st_size > 0
    assert remove_partial_writes(path) == stray and not stray[0].exists()


def test_corrupt_last_checkpoint_falls_back_to_the_previous_one(tiny_store, tmp_path, cifar_dir, caplog, one_thread):
    out = tmp_path / "run"
    args = _args(tiny_store, out, cifar_dir, ckpt_every=1)
    train(TrainConfig(**args, max_steps=2), progress=False)
    assert read_checkpoint(out / "prev.pt")["train"]["step"] == 1
    truncated = (out / "last.pt").read_bytes()[:100_000]
    (out / "last.pt").write_bytes(truncated)              # a torn file on a failing disk
    (out / "last.pt.x1y2z3.tmp").write_bytes(b"partial")  # what a write killed midway leaves

    caplog.set_level("WARNING", logger="ghn_core.train")
    resumed = read_checkpoint(train(TrainConfig(**args, max_steps=3), progress=False))
    assert [r["step"] for r in _log(out) if r.get("event") == "start"] == [0, 1]
    assert resumed["train"]["step"] == 3 and read_checkpoint(out / "prev.pt")["train"]["step"] == 2
    assert (out / "last.pt.corrupt").read_bytes() == truncated  # kept for a look, out of the rotation
    assert not (out / "last.pt.x1y2z3.tmp").exists()
    warned = caplog.text
    assert "last.pt.x1y2z3.tmp" in warned and f"cannot resume from {out / 'last.pt'}" in warned
    assert f"resuming from {out / 'prev.pt'}" in warned


def test_no_readable_checkpoint_is_an_error_naming_each_file(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"not a checkpoint")
    ghn = create_ghn("ghn2")
    save_checkpoint(out / "prev.pt", {"config": ghn.config.to_dict(), "state_dict": ghn.state_dict()})
    with pytest.raises(CheckpointError) as err:
        train(TrainConfig(out=str(out), device="cpu"), progress=False)
    assert f"{out / 'last.pt'} is not a readable GHN checkpoint" in str(err.value)
    assert f"{out / 'prev.pt'} holds GHN weights but no training state" in str(err.value)
    assert sorted(p.name for p in out.iterdir()) == ["last.pt", "prev.pt"]  # nothing moved or deleted


def test_checksum_catches_a_flipped_byte_that_torch_loads_silently(tmp_path):
    path = save_checkpoint(tmp_path / "ghn.pt", {"config": {}, "state_dict": {"w": torch.arange(100_000.0)}})
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the tensor's bytes
    path.write_bytes(bytes(data))
    assert not torch.equal(torch.load(path, weights_only=True)["state_dict"]["w"], torch.arange(100_000.0))
    with pytest.raises(CheckpointError, match="checksum"):
        read_checkpoint(path)
    # Files written before the checksum existed still read.
    old = tmp_path / "old.pt"
    torch.save({"format": "ghn-nas/ghn", "version": 1, "config": {}, "state_dict": {}}, old)
    assert read_checkpoint(old)["state_dict"] == {}


@pytest.mark.parametrize("budget", ["max_minutes", "max_cpu_minutes"])
def test_a_time_budget_ends_the_run_at_a_checkpoint_and_a_rerun_continues(tiny_store, tmp_path, cifar_dir,
                                                                          one_thread, budget):
    """--max-minutes (wall clock) or --max-cpu-minutes: past the budget, the step just taken is the last
    (logged and checkpointed); the budget is per invocation, so running the command again trains on
    from there, and the checkpoint adds up both clocks."""
    out = tmp_path / "budget"
    args = _args(tiny_store, out, cifar_dir, ckpt_every=100, max_steps=5, **{budget: 0.0})
    first = read_checkpoint(train(TrainConfig(**args), progress=False))
    assert first["train"]["step"] == 1 and _log(out)[-1]["step"] == 1
    second = read_checkpoint(train(TrainConfig(**args), progress=False))
    for clock in ("wall_time_s", "cpu_time_s"):
        assert 0 < first["train"][clock] < second["train"][clock]
    assert second["train"]["step"] == 2 and [r["step"] for r in _log(out) if "loss" in r] == [1, 2]
