"""Accuracy of GHN-predicted parameters: ``python -m ghn_core.evaluate --split test [--ckpt PATH]``.

The paper's protocol (§4 of the reference): parameters are predicted for one net at a time; every
BatchNorm uses the statistics of its evaluation batch of 64; the ``val`` architecture split is
scored on the held-out validation images, the others on the test images. Our ImageFolder copy of
CIFAR-10 is sorted by class, and a batch of one class would skew batch statistics, so images are
read in one fixed, seeded order (as the reference does for ImageNet) that is the same for every net.
Results are mean +- standard error over nets, with the random-initialisation baseline (the same
nets with PyTorch's default initialisation, same protocol) next to them.

``--suite yardstick`` (instead of ``--split``) runs the fixed, cheap measure of GHN quality that every
checkpoint comparison uses (``ghn_core.yardstick``, a few minutes on 2 CPU threads): DeepNets-1M test
nets and torchvision classifiers against random init, and, with ``--nb201-csv``, how well the GHN's
predicted-parameter accuracy and its embeddings rank NAS-Bench-201 cells (skipped without it).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from .data import BatchLoader, load_split
from .deepnets import DeepNets1M, generate_split, get_split, predefined_nets
from .deepnets.store import store_path
from .errors import GraphError
from .model import GHN2, use_batch_statistics
from .utils import lookup, resolve_device, user_errors

__all__ = ["EvalResult", "accuracy", "latency_ms", "eval_loader", "evaluate_nets", "evaluate_store", "load_eval_nets", "main"]

log = logging.getLogger("ghn_core.evaluate")


@dataclass
class EvalResult:
    """Top-1 accuracies (percent) of named nets."""

    names: list[str] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # nets the GHN cannot take (name -> why)

    @property
    def mean(self) -> float:
        return sum(self.accuracies) / len(self.accuracies) if self.accuracies else float("nan")

    @property
    def stderr(self) -> float:
        n = len(self.accuracies)
        if n < 2:
            return float("nan")
        m = self.mean
        return math.sqrt(sum((a - m) ** 2 for a in self.accuracies) / (n - 1) / n)

    def summary(self) -> str:
        failed = f" ({len(self.failed)} nets failed: see .failed)" if self.failed else ""
        return f"{self.mean:.2f} +- {self.stderr:.2f} % over {len(self.accuracies)} nets{failed}"


@torch.no_grad()
def accuracy(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], max_batches: int | None = None,
             *, batch_statistics: bool = True, channels_last: bool = True) -> float:
    """Top-1 accuracy (percent) of ``model`` (in eval mode) over the (x, y) batches.

    The one accuracy loop of ghn-nas: GHN evaluation, the GHN proxies and SGD labels all call it.
    ``batch_statistics``: switch BatchNorm to the statistics of each batch first (the GHN protocol);
    False keeps the model's own (e.g. running statistics after SGD). ``channels_last``: feed the
    images in channels-last memory format (faster convolutions; the same values up to rounding).
    """
    if batch_statistics:
        use_batch_statistics(model)
    model.eval()
    correct = total = 0
    for b, (x, y) in enumerate(batches):
        if max_batches is not None and b >= max_batches:
            break
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        correct += (model(x).argmax(1) == y).sum().item()
        total += y.numel()
    if total == 0:
        raise ValueError("accuracy: expected at least one batch of images, got none")
    return 100.0 * correct / total


@torch.no_grad()
def latency_ms(model: nn.Module, x: torch.Tensor, *, repeats: int = 5, warmup: int = 2) -> float:
    """Median wall time (ms) of ``model(x)`` in eval mode over ``repeats`` runs after ``warmup`` runs.

    The one latency timer of ghn-nas (latency proxies, SGD labels). On CUDA the timed region is
    bracketed by ``torch.cuda.synchronize()``: kernels run asynchronously, so without it the clock
    would stop when the kernels are queued, not when they are done.
    """
    model.eval()
    cuda = x.device.type == "cuda"
    times = []
    for k in range(warmup + repeats):
        if cuda:
            torch.cuda.synchronize(x.device)
        start = time.perf_counter()
        model(x)
        if cuda:
            torch.cuda.synchronize(x.device)
        if k >= warmup:
            times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def eval_loader(dataset: str = "cifar10", image_split: str = "test", *, data_dir: str | None = None,
                batch_size: int = 64, noise_sigma: float = 0.0, device: str | torch.device = "cpu",
                order_seed: int = 1111) -> BatchLoader:
    """Evaluation batches: no augmentation, one fixed class-mixing order (``order_seed``)."""
    images = load_split(dataset, image_split, data_dir=data_dir)
    return BatchLoader(images, batch_size, shuffle=True, augment=False, noise_sigma=noise_sigma,
                       device=device, seed=order_seed)


def evaluate_nets(ghn: GHN2 | None, nets: Sequence[tuple[str, nn.Module]], loader: BatchLoader, *,
                  max_batches: int | None = None, progress: bool = True, desc: str = "evaluate") -> EvalResult:
    """Predict each net's parameters with ``ghn`` (None: keep their random init) and score them
    (``desc``: the progress bar's label)."""
    device = loader.device
    result = EvalResult()
    if ghn is not None:
        ghn = ghn.to(device).eval()
    for name, net in tqdm(nets, desc=desc, unit="net", disable=not progress):
        net = net.to(device)
        if ghn is not None:
            try:
                ghn.predict(net)
            except GraphError as err:  # e.g. an NB201 cell with no path from input to output
                log.warning("skipping %s: %s", name, err)
                result.failed[name] = str(err)
                continue
        loader.set_epoch(0)  # the same images, in the same order, for every net
        result.names.append(name)
        result.accuracies.append(accuracy(net, loader, max_batches))
    return result


def load_eval_nets(split: str, *, n: int | None = None, deepnets_dir: str = "data/deepnets1m",
                   num_classes: int = 10, imagenet: bool = False, nb201_csv: str | None = None,
                   seed_init: int = 0) -> list[tuple[str, nn.Module]]:
    """Named nets to evaluate (freshly, reproducibly initialised, for the random-init baseline):

    a DeepNets-1M split (generated into ``deepnets_dir`` if missing); ``predefined`` (ResNet-50, ViT);
    ``torchvision:NAME[,NAME...]``; or ``nb201`` (the architectures of the CSV ``nb201_csv``).
    """
    torch.manual_seed(seed_init)
    if split == "predefined":
        nets = list(predefined_nets(num_classes, imagenet=imagenet).items())
    elif split.startswith("torchvision:"):
        import torchvision

        names = [name for name in split.split(":", 1)[1].split(",") if name]
        known = set(torchvision.models.list_models(module=torchvision.models))
        unknown = [name for name in names if name not in known]
        if not names or unknown:
            raise ValueError(f"unknown torchvision classifier(s) {unknown or names}; known: {', '.join(sorted(known))}")
        nets = [(name, torchvision.models.get_model(name, weights=None, num_classes=num_classes)) for name in names]
    elif split == "nb201":
        from .nb201 import NB201Network, load_labelled

        if nb201_csv is None:
            raise ValueError("the nb201 split needs the labelled CSV: pass --nb201-csv PATH")
        rows = load_labelled(nb201_csv)[:n]
        nets = [(row.arch, NB201Network(row.arch, num_classes)) for row in rows]
    else:
        spec = get_split(split)
        path = store_path(deepnets_dir, split)
        if not path.exists():
            log.info("generating the DeepNets-1M %s split (%d nets) into %s: once, later runs read it "
                     "(--deepnets-dir chooses the folder)", split, spec.size, path.resolve())
            generate_split(split, spec.size, deepnets_dir, progress=False)
        store = DeepNets1M(path)
        count = len(store) if n is None else min(n, len(store))
        nets = [(f"{split}/{i}", store.network(i, num_classes, imagenet=imagenet)) for i in range(count)]
    return nets[:n]


def evaluate_store(ghn: GHN2, store: DeepNets1M, indices: Iterable[int], loader: BatchLoader, **kwargs) -> EvalResult:
    """Score nets ``indices`` of a store (give the ``val`` split a loader of the held-out val images)."""
    nets = [(f"{store.split}/{i}", store.network(i)) for i in indices]
    return evaluate_nets(ghn, nets, loader, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ghn_core.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default=None, help="GHN checkpoint (default: the one shipped with ghn-nas)")
    parser.add_argument("--split", default=None,
                        help="a DeepNets-1M split (val, test, wide, deep, dense, bnfree), 'predefined', "
                             "'torchvision:resnet18,vgg11_bn', or 'nb201' (with --nb201-csv); default: test")
    parser.add_argument("--suite", default=None,
                        help="instead of --split: a fixed suite of measures; 'yardstick' (see ghn_core.yardstick)")
    parser.add_argument("--nb201-csv", default=None,
                        help="labelled NAS-Bench-201 CSV: for --split nb201, and for the NB201 parts of --suite "
                             "yardstick (skipped without it)")
    parser.add_argument("--n", type=int, default=None, help="first N nets of the split (default: all)")
    parser.add_argument("--deepnets-dir", default="data/deepnets1m",
                        help="folder of the DeepNets-1M splits; a missing split is generated into it, relative "
                             "to the current folder (default: %(default)s)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--batches", type=int, default=None, help="at most this many batches of 64 images per net")
    parser.add_argument("--noise", type=float, default=0.0, help="Gaussian noise sigma (0.08: robustness)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the random-init baseline")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default=None, help="write the per-net results (with --suite: the whole report) here")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with user_errors(args.debug):
        from . import load_ghn

        # Cheap checks first: a typo must not cost a data decode, a split generation or a full evaluation.
        device = resolve_device(args.device)
        if args.suite is not None:
            from .yardstick import SUITES

            run_suite = lookup(SUITES, args.suite, "suite")
            given = [flag for flag, is_set in (("--split", args.split is not None), ("--n", args.n is not None),
                                               ("--batches", args.batches is not None), ("--noise", args.noise != 0),
                                               ("--no-baseline", args.no_baseline)) if is_set]
            if given:
                raise ValueError(f"--suite {args.suite} has fixed sets and sizes, so its numbers compare across "
                                 f"checkpoints; drop {', '.join(given)}")
        if args.nb201_csv is not None and not Path(args.nb201_csv).is_file():
            raise FileNotFoundError(f"no NAS-Bench-201 labels at {args.nb201_csv}")
        if args.json and not Path(args.json).resolve().parent.is_dir():
            raise FileNotFoundError(f"--json {args.json}: the folder {Path(args.json).resolve().parent} does not exist")
        ghn = load_ghn(args.ckpt)
        if args.suite is not None:
            from .yardstick import format_table, json_ready

            report = run_suite(ghn, data_dir=args.data_dir, device=device, nb201_csv=args.nb201_csv,
                               deepnets_dir=args.deepnets_dir, checkpoint=args.ckpt or "shipped")  # the report records the weights' hash too
            print(format_table(report))
            if args.json:
                Path(args.json).write_text(json.dumps(json_ready(report), indent=1) + "\n")
            return 0
        args.split = args.split or "test"
        loader = eval_loader("cifar10", "val" if args.split == "val" else "test", data_dir=args.data_dir,
                             noise_sigma=args.noise, device=device)
        nets = load_eval_nets(args.split, n=args.n, deepnets_dir=args.deepnets_dir, nb201_csv=args.nb201_csv)
        ghn_result = evaluate_nets(ghn, nets, loader, max_batches=args.batches)
        print(f"GHN ({args.ckpt or 'shipped'}) on {args.split}: {ghn_result.summary()}")
        report = {"split": args.split, "noise": args.noise, "batches": args.batches, "ghn": asdict(ghn_result),
                  "ghn_mean": ghn_result.mean, "ghn_stderr": ghn_result.stderr}
        if not args.no_baseline:
            nets = load_eval_nets(args.split, n=args.n, deepnets_dir=args.deepnets_dir, nb201_csv=args.nb201_csv)
            base = evaluate_nets(None, nets, loader, max_batches=args.batches)
            print(f"random init on {args.split}: {base.summary()}")
            report.update(random=asdict(base), random_mean=base.mean, random_stderr=base.stderr)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
