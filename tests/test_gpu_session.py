"""The GPU session command (``benchmarks/gpu_session.py``, issue 14): its CPU dry run end to end, a
failing step recorded without stopping the rest, and the CUDA/AMP tests that command runs on a GPU
(``-k cuda``; skipped on machines without CUDA)."""
from __future__ import annotations

import copy
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ghn_core.model import read_checkpoint

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_session.py"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run by benchmarks/gpu_session.py)")


def _session(tmp_path: Path, cifar_dir: Path, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "out"
    # One torch thread in every step, as elsewhere in the suite: on a busy 2-core machine the dry run's
    # export step took 62 s with two threads and 18 s with one.
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(out), "--deepnets-dir",
                           str(tmp_path / "deepnets"), "--data-dir", str(cifar_dir), *args],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    return proc, out


def _explain(proc: subprocess.CompletedProcess, out: Path) -> str:
    log = out / "session.log"
    return proc.stdout[-3000:] + proc.stderr[-3000:] + (log.read_text()[-4000:] if log.exists() else "")


def test_cpu_dry_run_brings_back_checkpoint_log_and_numbers(tmp_path, cifar_dir):
    proc, out = _session(tmp_path, cifar_dir, "--minutes", "0.2")
    assert proc.returncode == 0, _explain(proc, out)
    session = json.loads((out / "session.json").read_text())
    status = {name: step["status"] for name, step in session["steps"].items()}
    assert status == {"tests": "skipped", "bench": "skipped", "generate": "ok", "train": "ok", "evaluate": "ok",
                      "evaluate_shipped": "skipped", "export": "ok"}, session["steps"]
    assert session["failed"] == []
    # the checkpoint: the shipped weights trained further, resumable (optimizer state kept)
    ckpt = read_checkpoint(out / "train" / "last.pt")
    assert ckpt["train"]["step"] >= 1 and "optimizer" in ckpt
    assert ckpt["train"]["prior_steps"] > 0  # started from the shipped checkpoint (--init)
    # the train log: at least one logged step with a finite loss
    steps = [json.loads(line) for line in (out / "train" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in steps if "loss" in r and "step" in r]
    assert logged and logged[-1]["step"] >= 1 and math.isfinite(logged[-1]["loss"])
    # the evaluation JSON: a finite accuracy, with the random-init baseline beside it
    report = json.loads((out / "eval.json").read_text())
    assert 0.0 <= report["ghn_mean"] <= 100.0 and math.isfinite(report["ghn_mean"])
    assert math.isfinite(report["random_mean"])
    assert session["numbers"]["train"]["checkpoint_step"]["step"] == ckpt["train"]["step"]
    # the export, and no more files than the device tool brings back
    assert (out / "export" / "ghn2_cifar10.pt").is_file()
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8, files
    log = (out / "session.log").read_text()
    assert "===== train: exit" in log and "===== evaluate: exit 0" in log


def test_a_failing_step_is_recorded_and_the_rest_still_run(tmp_path, cifar_dir):
    proc, out = _session(tmp_path, cifar_dir, "--minutes", "0.1", "--init", str(tmp_path / "missing.pt"),
                         "--skip", "generate")
    assert proc.returncode == 1, _explain(proc, out)
    session = json.loads((out / "session.json").read_text())
    assert session["steps"]["train"]["status"] == "failed" and session["steps"]["train"]["rc"] != 0
    # the later steps were still reached (and fail for want of a checkpoint)
    assert session["steps"]["evaluate"]["status"] == "failed" and session["steps"]["export"]["status"] == "failed"
    assert set(session["failed"]) == {"train", "evaluate", "export"}
    assert "missing.pt" in (out / "session.log").read_text()


# -- run on a GPU by benchmarks/gpu_session.py (pytest -k cuda) -------------------------------------

def _meta_batch(tiny_store: Path, seed: int = 0):
    from ghn_core.deepnets import DeepNets1M
    from ghn_core.train import sample_meta_batch

    store = DeepNets1M(tiny_store / "deepnets1m_train.h5")
    return sample_meta_batch(store, random.Random(seed), meta_batch=4, max_nodes=2200, num_classes=10)


@needs_cuda
def test_cuda_amp_train_step_agrees_with_fp32(tiny_store):
    """bfloat16 autocast (the paper recipe's AMP) gives the fp32 loss and gradient direction on CUDA."""
    from ghn_core.model import create_ghn
    from ghn_core.train import train_step

    torch.manual_seed(0)
    ghn = create_ghn("ghn2").cuda().train()
    meta = _meta_batch(tiny_store)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, 32, 32, generator=gen).cuda()
    y = torch.randint(0, 10, (32,), generator=gen).cuda()
    runs = {}
    for amp in (False, True):
        g = copy.deepcopy(ghn)
        stats = train_step(g, meta, x, y, optimizer=None, amp=amp)
        assert stats["skipped"] == 0.0 and math.isfinite(stats["loss"]), (amp, stats)
        grad = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten().float()
                          for p in g.parameters()])
        assert torch.isfinite(grad).all() and grad.norm() > 0
        runs[amp] = stats["loss"], grad
    (loss32, grad32), (loss16, grad16) = runs[False], runs[True]
    assert abs(loss16 - loss32) <= 0.05 * abs(loss32) + 0.05, (loss16, loss32)
    assert torch.nn.functional.cosine_similarity(grad16, grad32, dim=0) > 0.9


@needs_cuda
def test_cuda_predictions_match_cpu():
    """The shipped GHN predicts the same parameters on CUDA as on the CPU (fp32, no autocast)."""
    from ghn_core import load_ghn
    from ghn_core.deepnets import Network, rejection_reason, sample_architecture

    rng = random.Random(3)
    arch = next(a for a in iter(lambda: sample_architecture(rng), None) if rejection_reason(a)[0] is None)
    torch.manual_seed(0)
    net = Network(arch, 32, num_classes=10)
    on_cpu, on_gpu = copy.deepcopy(net), copy.deepcopy(net).cuda()
    load_ghn(device="cpu").predict(on_cpu)
    load_ghn(device="cuda").predict(on_gpu)
    for (name, a), (_, b) in zip(on_cpu.state_dict().items(), on_gpu.state_dict().items()):
        if a.is_floating_point() and a.numel():
            err = (b.cpu() - a).norm() / a.norm().clamp_min(1e-12)
            assert err < 1e-2, (name, float(err))


@needs_cuda
def test_cuda_training_run_with_amp(tiny_store, tmp_path, cifar_dir):
    """python -m ghn_core.train's loop on CUDA with AMP, from the shipped weights: checkpoint and log."""
    import ghn_core
    from ghn_core.train import TrainConfig, train

    cfg = TrainConfig(deepnets_dir=str(tiny_store), out=str(tmp_path / "run"), data_dir=str(cifar_dir),
                      batch_size=32, meta_batch=4, eval_nets=0, log_every=1, max_steps=3, device="cuda", amp=True,
                      init=str(ghn_core.shipped_checkpoint()))
    ckpt = read_checkpoint(train(cfg, progress=False))
    assert ckpt["train"]["step"] == 3 and ckpt["train"]["device"].startswith("cuda")
    assert ckpt["train"]["prior_steps"] > 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
