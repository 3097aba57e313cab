"""Speed of ``ghn.predict``: all parameters of torchvision ResNet-50, graph included.

Warm calls (median) and the first call in a fresh process, on N CPU threads. The first call is
timed twice: as it comes, and after ``gc.collect()``. Importing torch and torchvision leaves CPython
owing a full garbage collection over ~350k objects (about 0.2 s); it lands in whichever code runs
first, so the script reports that pause apart (timed with ``gc.callbacks``). Baseline in the same
process: the same GHN with the reference's decoding, which computes the whole 64x64x11x11 block for
every node and slices it afterwards (``ConvDecoder.full``), instead of only the kept positions and
channels.

    python benchmarks/bench_predict.py [--threads 2] [--repeats 10]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch

FIRST_CALL = """
import gc, time, torch, torchvision
torch.set_num_threads({threads})
from ghn_core.model import create_ghn
torch.manual_seed(0)
ghn = create_ghn("ghn2").eval()
model = torchvision.models.resnet50(num_classes=10)
if {collect_first}:
    gc.collect()
pauses = []
gc.callbacks.append(lambda phase, info: pauses.append(time.perf_counter() * (1 if phase == "stop" else -1)))
t = time.perf_counter(); ghn.predict(model); t = time.perf_counter() - t; gc_time = sum(pauses)
print(t, gc_time)  # total, and the time spent in garbage collection during the call
"""


def first_calls(threads: int, collect_first: bool, n: int = 3) -> list[tuple[float, float]]:
    """``n`` first calls, each in a fresh process: (seconds, of which garbage collection)."""
    code = FIRST_CALL.format(threads=threads, collect_first=collect_first)
    out = [subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
           for _ in range(n)]
    return [tuple(float(v) for v in o.split()[-2:]) for o in out]


def full_block_decode(self, h, o, i, kh, kw):
    """The reference decoding: the full (2d, 2d, s, s) block, then the slice."""
    return self.full(h)[:, :o, :i, :kh, :kw]


def warm_median(ghn, model, repeats: int) -> float:
    ghn.predict(model)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        ghn.predict(model)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import torchvision

    from ghn_core.model import create_ghn
    from ghn_core.model.decoder import ConvDecoder

    torch.manual_seed(0)
    ghn = create_ghn("ghn2").eval()
    model = torchvision.models.resnet50(num_classes=10)
    ours = warm_median(ghn, model, args.repeats)
    sliced = ConvDecoder.forward
    ConvDecoder.forward = lambda self, h, o, i, kh, kw: full_block_decode(self, h, min(o, self.block),
                                                                           min(i, self.block), min(kh, self.s),
                                                                           min(kw, self.s))
    base = warm_median(ghn, model, args.repeats)
    ConvDecoder.forward = sliced
    as_comes = first_calls(args.threads, collect_first=False)
    collected = first_calls(args.threads, collect_first=True)
    print(f"ResNet-50 (23.5M parameters), CIFAR-10 GHN-2, {args.threads} threads, torch {torch.__version__}")
    print(f"warm predict, median of {args.repeats}:  {ours:.3f} s   (full-block baseline {base:.3f} s, "
          f"{base / ours:.1f}x)")
    for label, runs in (("first call in a fresh process", as_comes),
                        ("first call after gc.collect()", collected)):
        print(f"{label}, median of {len(runs)}: {statistics.median(t for t, _ in runs):.3f} s  "
              f"(each: {', '.join(f'{t:.3f}' for t, _ in runs)}; of which garbage collection: "
              f"{', '.join(f'{g:.3f}' for _, g in runs)})")


if __name__ == "__main__":
    main()
