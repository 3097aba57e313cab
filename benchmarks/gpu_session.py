"""One command for a session lent a GPU (issue 14): tests, a speed reading, training, evaluation.

    python benchmarks/gpu_session.py --device cuda --minutes 6      # on the GPU machine
    python benchmarks/gpu_session.py --device cpu --minutes 1       # dry run on a CPU (2-3 minutes)

Steps, in order; each runs as its own process, its output goes to ``OUT/session.log`` (a header with
the command before it, its exit status and duration after it), and a failing step is recorded and
the next one runs, so a partial run still brings back numbers. The command exits 1 at the end if
any step failed (0 otherwise). ``OUT/session.json`` is rewritten after every step.

1. ``tests``: the CUDA/AMP tests (``tests/test_gpu_session.py -k cuda``: a bfloat16-autocast train
   step against fp32, CUDA predictions against CPU ones, a CUDA+AMP run of ``ghn_core.train``).
   Skipped on ``--device cpu``.
2. ``bench``: ``benchmarks/bench_train_step.py --device DEVICE`` (seconds per training step, paper
   sizes: meta-batch 8, 64 images). Skipped on ``--device cpu``.
3. ``generate``: the DeepNets-1M splits training and evaluation read (a train split of
   ``--train-nets`` nets without stored graphs, training computes them; val on CUDA; test), timed.
4. ``train``: ``python -m ghn_core.train`` with the paper's recipe (AMP: bfloat16 autocast on CUDA),
   ``--init`` the shipped checkpoint, a checkpoint every minute, for ``--minutes`` of wall time
   (shortened if the whole command would pass ``--deadline-minutes``). ghn_core.train has no
   wall-clock budget, so the driver stops it: from one checkpoint interval before the budget ends
   it stops the run as soon as a new ``last.pt`` lands (no step is lost), and at the budget at the
   latest (a run with no checkpoint yet may go on for its first while the deadline allows). Run again with
   the same ``--out`` and training resumes exactly from ``OUT/train/last.pt``.
   On the CPU: the ``cpu-small`` preset with a meta-batch of 2 nets at a quarter width, 8 images.
5. ``evaluate``: ``python -m ghn_core.evaluate`` of the trained checkpoint on DeepNets-1M test
   nets, with the random-init baseline -> ``OUT/eval.json``.
6. ``evaluate_shipped``: the shipped checkpoint, same nets and batches (numbers in session.json).
   Skipped on ``--device cpu``.
7. ``export``: ``python -m ghn_core.export OUT/train/last.pt --out OUT/export`` (weights without the
   optimizer, under 10 MB, and a model card measured on a small budget: 5 test nets, 2 batches, and
   on CUDA the yardstick's DeepNets-1M and torchvision parts; the CPU dry run skips the yardstick).

The output folder (``--out``, default ``$OUT/gpu_session`` when ``$OUT`` is set, else
``runs/gpu_session``) holds at most 8 files, the most the device tool brings back: session.log,
session.json, eval.json, train/metrics.jsonl, train/last.pt (with the optimizer: about 20 MB,
over the tool's 16 MB per file, so bring back export/ghn2_cifar10.pt), export/ghn2_cifar10.pt,
export/ghn2_cifar10.json, export/MODEL_CARD.md. ``train/prev.pt`` is removed at the end.

Images: ``--data-dir``, else ``$GHN_NAS_DATA``, else ``data/cifar10`` (unpacked from
``data/cifar10.tgz`` if only that exists: make it here with ``--pack-data``, 20 MB, and carry it).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "ghn_core" / "checkpoints" / "ghn2_cifar10.pt"

# Sizes per device: (cuda, cpu).
PLAN = {
    "cuda": dict(train_nets=50_000, train_args=["--preset", "paper", "--amp", "true", "--log-every", "10"],
                 bench_args=["--steps", "10"], eval_nets=50, eval_batches=10, export_nets=5, export_batches=2,
                 export_args=["--device", "cuda"], shipped=True, after_train_s=150),
    "cpu": dict(train_nets=300, train_args=["--preset", "cpu-small", "--meta-batch", "2", "--batch-size", "8",
                                            "--width-scale", "0.25",
                                            "--eval-nets", "0", "--log-every", "1", "--amp", "false"],
                bench_args=None,  # CPU speed is BENCHMARKS.md's (bench_train_step.py --threads 2)
                eval_nets=2, eval_batches=1, export_nets=2, export_batches=1,
                export_args=["--device", "cpu", "--no-yardstick"], shipped=False, after_train_s=60),
}
STEP_CAPS_S = {"tests": 180, "bench": 150, "generate": 180, "evaluate": 240, "evaluate_shipped": 150, "export": 180}
STEPS = ["tests", "bench", "generate", "train", "evaluate", "evaluate_shipped", "export"]


class Session:
    def __init__(self, out: Path, device: str, deadline_s: float):
        self.out, self.device = out, device
        self.t0 = time.monotonic()
        self.deadline = self.t0 + deadline_s
        self.log = out / "session.log"
        self.record: dict = {"device": device, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             "steps": {}, "numbers": {}}

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def write(self, text: str) -> None:
        with self.log.open("a") as f:
            f.write(text)

    def save(self) -> None:
        self.record["elapsed_s"] = round(time.monotonic() - self.t0, 1)
        self.record["failed"] = [k for k, v in self.record["steps"].items() if v["status"] == "failed"]
        tmp = self.out / "session.json.tmp"
        tmp.write_text(json.dumps(self.record, indent=1, default=str))
        os.replace(tmp, self.out / "session.json")

    def skip(self, name: str, why: str) -> None:
        self.write(f"\n===== {name}: skipped ({why})\n")
        self.record["steps"][name] = {"status": "skipped", "why": why}
        self.save()
        print(f"[gpu_session] {name}: skipped ({why})", flush=True)

    def run(self, name: str, cmd: list[str], *, timeout: float, env: dict, watch=None) -> dict:
        """Run one step, its output appended to session.log; ``watch(proc, t_start)`` may stop it early."""
        timeout = max(5.0, min(timeout, self.remaining()))
        self.write(f"\n===== {name}: {shlex.join(cmd)}  (at most {timeout:.0f} s)\n")
        print(f"[gpu_session] {name}: {shlex.join(cmd)}", flush=True)
        t = time.monotonic()
        stopped = None
        with self.log.open("a") as f:
            try:
                proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                        start_new_session=True)
            except OSError as err:
                f.write(f"could not start: {err}\n")
                rc = None
            else:
                while proc.poll() is None:
                    elapsed = time.monotonic() - t
                    if watch is not None and (why := watch(elapsed)):
                        stopped = why
                    elif elapsed > timeout:
                        stopped = f"timeout after {timeout:.0f} s"
                    if stopped:
                        _stop(proc)
                        break
                    time.sleep(0.5)
                rc = proc.wait()
        info = {"cmd": shlex.join(cmd), "rc": rc, "seconds": round(time.monotonic() - t, 1)}
        if stopped:
            info["stopped"] = stopped
        info["status"] = "ok" if rc == 0 else "failed"
        self.write(f"===== {name}: exit {rc}{' (' + stopped + ')' if stopped else ''}, {info['seconds']} s\n")
        print(f"[gpu_session] {name}: exit {rc}{' (' + stopped + ')' if stopped else ''}, {info['seconds']} s",
              flush=True)
        self.record["steps"][name] = info
        self.save()
        return info


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the step's own process group (it was started in a new session), SIGKILL after 15 s."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _signature(path: Path):
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _last_record(path: Path, pred) -> dict | None:
    found = None
    try:
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if pred(rec):
                found = rec
    except FileNotFoundError:
        return None
    return found


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def resolve_data(arg: str | None) -> str | None:
    if arg:
        return str(Path(arg).resolve())
    if os.environ.get("GHN_NAS_DATA"):
        return os.environ["GHN_NAS_DATA"]
    folder, archive = REPO / "data" / "cifar10", REPO / "data" / "cifar10.tgz"
    if not (folder / "train").is_dir() and archive.is_file():
        print(f"[gpu_session] unpacking {archive} into {folder.parent}", flush=True)
        with tarfile.open(archive) as tar:
            tar.extractall(folder.parent, filter="data")
    return str(folder) if (folder / "train").is_dir() else None


def pack_data(data_dir: str | None) -> int:
    src = Path(data_dir or os.environ.get("GHN_NAS_DATA") or "")
    if not (src / "train").is_dir():
        print("--pack-data: no ImageFolder copy of CIFAR-10 (set GHN_NAS_DATA or --data-dir)", file=sys.stderr)
        return 2
    dest = REPO / "data" / "cifar10.tgz"   # data/ is git-ignored: name it in the device tool's carry
    dest.parent.mkdir(exist_ok=True)
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(src, arcname="cifar10")
    print(f"{dest} ({dest.stat().st_size / 2**20:.1f} MiB): carry data/cifar10.tgz")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--minutes", type=float, default=6.0, help="training wall time (default 6)")
    parser.add_argument("--deadline-minutes", type=float, default=9.5,
                        help="the whole command's wall time; training is shortened to fit (default 9.5)")
    parser.add_argument("--out", default=None, help="output folder (default $OUT/gpu_session or runs/gpu_session)")
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 ImageFolder (default $GHN_NAS_DATA, data/cifar10)")
    parser.add_argument("--deepnets-dir", default="data/deepnets1m", help="DeepNets-1M splits (default %(default)s)")
    parser.add_argument("--train-nets", type=int, default=None, help="train split size (cuda 50000, cpu 300)")
    parser.add_argument("--init", default=str(SHIPPED), help="weights to start from (default: the shipped GHN)")
    parser.add_argument("--skip", nargs="*", default=[], choices=STEPS, help="steps to leave out")
    parser.add_argument("--pack-data", action="store_true", help="write data/cifar10.tgz to carry, and stop")
    args = parser.parse_args(argv)
    if args.pack_data:
        return pack_data(args.data_dir)

    plan = PLAN[args.device]
    out = Path(args.out or (Path(os.environ["OUT"]) / "gpu_session" if os.environ.get("OUT") else REPO / "runs" / "gpu_session"))
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    deepnets = str((REPO / args.deepnets_dir) if not Path(args.deepnets_dir).is_absolute() else Path(args.deepnets_dir))
    train_nets = args.train_nets or plan["train_nets"]
    s = Session(out, args.device, 60 * args.deadline_minutes)
    s.write(f"\n##### gpu_session {s.record['started']}: {shlex.join(sys.argv)}\n")

    env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_MININTERVAL="20")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    data = resolve_data(args.data_dir)
    if data:
        env["GHN_NAS_DATA"] = data
    py = sys.executable
    s.record.update(minutes=args.minutes, deadline_minutes=args.deadline_minutes, data_dir=data,
                    deepnets_dir=deepnets, train_nets=train_nets, init=args.init, python=py)
    s.record["numbers"]["machine"] = _machine(py, env)
    s.save()

    # 1. CUDA/AMP tests
    if "tests" in args.skip:
        s.skip("tests", "--skip")
    elif args.device != "cuda":
        s.skip("tests", "CUDA tests need --device cuda")
    else:
        info = s.run("tests", [py, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-k", "cuda",
                               "tests/test_gpu_session.py"], timeout=STEP_CAPS_S["tests"], env=env)
        tail = _tail(s.log, 20)
        m = re.findall(r"(\d+) (passed|failed|skipped|error)", tail)
        s.record["numbers"]["tests"] = {k: int(v) for v, k in m}
        if info["status"] == "ok" and not s.record["numbers"]["tests"].get("passed"):
            info["status"] = "failed"  # every CUDA test skipped: CUDA is not usable here
            info["why"] = "no CUDA test passed"
        s.save()

    # 2. speed of one training step
    if "bench" in args.skip:
        s.skip("bench", "--skip")
    elif plan["bench_args"] is None:
        s.skip("bench", "the CPU step time is in BENCHMARKS.md (bench_train_step.py --threads 2)")
    else:
        start = s.log.stat().st_size
        s.run("bench", [py, "benchmarks/bench_train_step.py", "--device", args.device, *plan["bench_args"]],
              timeout=STEP_CAPS_S["bench"], env=env)
        text = s.log.read_text()[start:]
        bench = {}
        for key, pat in (("sampling_s", r"sampling .*?:\s+([\d.]+) s"), ("train_step_s", r"train step .*?:\s+([\d.]+) s"),
                         ("total_per_step_s", r"total per step:\s+([\d.]+) s")):
            if m := re.search(pat, text):
                bench[key] = float(m.group(1))
        s.record["numbers"]["bench"] = bench
        s.save()

    # 3. DeepNets-1M splits
    if "generate" in args.skip:
        s.skip("generate", "--skip")
    else:
        # train: no stored graphs (training computes them); val: for training's checkpoint scores
        code = ("import sys, time; from ghn_core.deepnets import generate_split\n"
                "out, n, val = sys.argv[1], int(sys.argv[2]), sys.argv[3] == 'val'\n"
                "for split, size, graphs in [('train', n, False)] + [('val', None, True)] * val + [('test', None, True)]:\n"
                "    t = time.perf_counter(); st = generate_split(split, size, out, graphs=graphs, progress=False)\n"
                "    print(f'{split}: {len(st)} nets in {time.perf_counter() - t:.1f} s', flush=True)\n")
        start = s.log.stat().st_size
        s.run("generate", [py, "-c", code, deepnets, str(train_nets), "val" if args.device == "cuda" else "-"], timeout=STEP_CAPS_S["generate"], env=env)
        text = s.log.read_text()[start:]
        s.record["numbers"]["generate"] = {m[0]: {"nets": int(m[1]), "seconds": float(m[2])}
                                           for m in re.findall(r"^(\w+): (\d+) nets in ([\d.]+) s", text, re.M)}
        s.save()

    # 4. training
    run_dir = out / "train"
    last = run_dir / "last.pt"
    if "train" in args.skip:
        s.skip("train", "--skip")
    else:
        budget = min(60 * args.minutes, s.remaining() - plan["after_train_s"])
        interval = min(1.0, args.minutes / 2)  # minutes between checkpoints
        # Past the budget, a run with no checkpoint yet may go on for its first one, as long as the
        # steps after training keep their time.
        limit = max(budget, s.remaining() - plan["after_train_s"])
        before = _signature(last)
        state = {"sig": before, "new_at": None}

        def watch(elapsed: float):
            sig = _signature(last)
            if sig is not None and sig != state["sig"]:  # a new checkpoint landed (written atomically)
                state["sig"], state["new_at"] = sig, elapsed
            if state["new_at"] is not None and state["new_at"] >= budget - 60 * interval:
                return f"budget: stopped after the checkpoint at {state['new_at']:.0f} s"
            if elapsed >= budget:
                if state["new_at"] is None:
                    return None  # no checkpoint from this run yet: wait for the first one (up to `limit`)
                return f"budget of {budget:.0f} s"
            return None

        cmd = [py, "-m", "ghn_core.train", *plan["train_args"], "--device", args.device, "--out", str(run_dir),
               "--init", args.init, "--deepnets-dir", deepnets, "--train-nets", str(train_nets),
               "--ckpt-every-minutes", f"{interval:g}", "--ckpt-every", "1000000"]
        if data:
            cmd += ["--data-dir", data]
        s.record["train_budget_s"] = round(budget, 1)
        info = s.run("train", cmd, timeout=limit, env=env, watch=watch)
        # Stopped by the driver after a new checkpoint: that is the planned end, not a failure.
        if info.get("stopped") and state["new_at"] is not None:
            info["status"] = "ok"
        if state["new_at"] is None and _signature(last) in (None, before):  # nothing to bring back
            info["status"], info["why"] = "failed", "no new checkpoint"
        rec = _last_record(run_dir / "metrics.jsonl", lambda r: "loss" in r and "step" in r)
        ev = _last_record(run_dir / "metrics.jsonl", lambda r: r.get("event") == "eval")
        start_rec = _last_record(run_dir / "metrics.jsonl", lambda r: r.get("event") == "start")
        s.record["numbers"]["train"] = {
            "last_logged": rec, "last_val": ev,
            "started_at_step": start_rec and start_rec.get("step"),
            "checkpoint_step": _ckpt_step(py, env, last)}
        s.save()

    # 5-6. evaluation
    for name, ckpt, extra in (("evaluate", last, []), ("evaluate_shipped", SHIPPED, ["--no-baseline"])):
        if name in args.skip:
            s.skip(name, "--skip")
            continue
        if name == "evaluate_shipped" and not plan["shipped"]:
            s.skip(name, "the dry run leaves it out; the shipped numbers are in its model card")
            continue
        if not Path(ckpt).is_file():
            s.skip(name, f"no checkpoint at {ckpt}")
            s.record["steps"][name]["status"] = "failed"
            s.save()
            continue
        with tempfile.TemporaryDirectory() as tmp:
            dest = out / "eval.json" if name == "evaluate" else Path(tmp) / "shipped.json"
            cmd = [py, "-m", "ghn_core.evaluate", "--ckpt", str(ckpt), "--split", "test", "--n", str(plan["eval_nets"]),
                   "--batches", str(plan["eval_batches"]), "--device", args.device, "--deepnets-dir", deepnets,
                   "--json", str(dest), *extra]
            if data:
                cmd += ["--data-dir", data]
            info = s.run(name, cmd, timeout=STEP_CAPS_S[name], env=env)
            try:
                rep = json.loads(dest.read_text())
            except (OSError, ValueError):
                rep = None
            if rep is None or not _finite(rep.get("ghn_mean")):
                info["status"] = "failed"
                info.setdefault("why", "no finite accuracy in the evaluation JSON")
            elif name == "evaluate_shipped":
                s.record["numbers"]["eval_shipped_report"] = rep
            if rep:
                s.record["numbers"][name] = {k: rep.get(k) for k in ("ghn_mean", "ghn_stderr", "random_mean",
                                                                    "random_stderr", "batches")}
                s.record["numbers"][name]["nets"] = len(rep.get("ghn", {}).get("accuracies", []))
            s.save()

    # 7. export
    if "export" in args.skip:
        s.skip("export", "--skip")
    elif not last.is_file():
        s.skip("export", f"no checkpoint at {last}")
        s.record["steps"]["export"]["status"] = "failed"
    else:
        cmd = [py, "-m", "ghn_core.export", str(last), "--out", str(out / "export"), "--test-nets",
               str(plan["export_nets"]), "--batches", str(plan["export_batches"]), "--deepnets-dir", deepnets,
               *plan["export_args"]]
        if data:
            cmd += ["--data-dir", data]
        s.run("export", cmd, timeout=STEP_CAPS_S["export"], env=env)

    (run_dir / "prev.pt").unlink(missing_ok=True)  # at most 8 files come back from the device
    s.record["files"] = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    s.save()
    failed = s.record["failed"]
    print(f"[gpu_session] done in {s.record['elapsed_s']} s; {'failed: ' + ', '.join(failed) if failed else 'all steps ok'}; "
          f"folder {out}", flush=True)
    print(json.dumps({k: v for k, v in s.record["numbers"].items() if k != "eval_shipped_report"}, default=str), flush=True)
    return 1 if failed else 0


def _tail(path: Path, lines: int) -> str:
    return "\n".join(path.read_text().splitlines()[-lines:])


def _machine(py: str, env: dict) -> dict:
    code = ("import json, os, torch; d = {'torch': torch.__version__, 'cuda': torch.cuda.is_available(), "
            "'cpus': os.cpu_count()}\n"
            "if d['cuda']: d['gpu'] = torch.cuda.get_device_name(0)\nprint(json.dumps(d))")
    try:
        res = subprocess.run([py, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        return json.loads(res.stdout.strip().splitlines()[-1])
    except Exception as err:  # the record is informative only
        return {"error": str(err)}


def _ckpt_step(py: str, env: dict, path: Path) -> dict | None:
    if not path.is_file():
        return None
    code = ("import json, sys; from ghn_core.model import read_checkpoint; t = read_checkpoint(sys.argv[1])['train']\n"
            "print(json.dumps({k: t.get(k) for k in ('step', 'total_steps', 'prior_steps', 'wall_time_s', 'device')}))")
    try:
        res = subprocess.run([py, "-c", code, str(path)], env=env, capture_output=True, text=True, timeout=120)
        return json.loads(res.stdout.strip().splitlines()[-1])
    except Exception as err:
        return {"error": str(err)}


if __name__ == "__main__":
    sys.exit(main())
