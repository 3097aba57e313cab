"""The yardstick: one cheap, fixed measure of GHN quality, ``python -m ghn_core.evaluate --suite yardstick``.

Run it after every training session and on both sides of every checkpoint comparison: its sets,
sizes and seeds are fixed (:class:`YardstickConfig`), so two reports compare number for number.
It costs about 4 minutes of CPU time (225 s user on 2 threads; 391 s wall on a 2-core machine
shared with other jobs). On a shared machine set ``OMP_WAIT_POLICY=PASSIVE``: OpenMP's default
spin-waiting made it several times slower there. Four parts:

1. DeepNets-1M: the first 50 nets of the ``test`` split (the whole split, 500 nets, is generated
   into ``--deepnets-dir`` if missing: about 15 s, once), 2 batches of 64 test images per net;
2. torchvision classifiers at CIFAR size (32x32 images, 10 classes, the ImageNet architectures
   unchanged): ResNet-18, ResNet-50, MobileNetV3-Large, ConvNeXt-T and a small ViT
   (``VisionTransformer``: patch 4, 6 layers of width 128, 4 heads, MLP 256), 8 batches of 64 per net;
3. NAS-Bench-201, where the truth is known: the Kendall tau between the accuracy of GHN-predicted
   parameters (8 batches of 64 per cell) and the 200-epoch CIFAR-10 accuracy, on 80 cells. The cells'
   GHN accuracies differ by little (sd about 2 points), so image noise matters: on the shipped GHN
   the tau is 0.23 with 4 batches, 0.37-0.40 with 8 and 0.40-0.43 with 16 (100 and 80 cells). No
   random-init row: random parameters rank at tau 0 up to noise;
4. NAS-Bench-201: the Kendall tau of the ``svr-rank`` regressor on GHN embeddings (what the search
   uses most) under 5-fold cross-validation by cell, on 200 cells.

Parts 1 and 2 follow the paper's protocol (parameters predicted one net at a time, BatchNorm on the
statistics of each batch of 64) and give mean +- standard error over nets, next to the random-init
baseline: the same nets (those the GHN could take), PyTorch's default initialisation (seed 0), the
same images. Every net of every part sees the same images, in the same fixed class-mixing order
(seed 1111). The NB201 cells are one seeded sample (seed 0) of the CSV's distinct cells
(``cell_key``: isomorphic strings are one cell, labelled by their first string; cells with no
input-output path left out); part 3 takes its first 80, part 4 its first 200. Without an NB201 CSV,
parts 3 and 4 are skipped and the report says so. The image order comes from a generator of the
device's type (CPU and CUDA streams differ): compare reports made on the same device type.
"""
from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from scipy.stats import ConstantInputWarning, kendalltau, spearmanr
from torch import nn
from tqdm.auto import tqdm

from .evaluate import EvalResult, eval_loader, evaluate_nets, load_eval_nets
from .model import GHN2
from .model.checkpoint import state_hash
from .nb201 import NB201Network, cell_key, load_labelled
from .utils import lookup, resolve_device

__all__ = ["YardstickConfig", "CIFAR_CLASSIFIERS", "cifar_classifiers", "nb201_sample", "yardstick", "format_table",
           "SUITES"]

log = logging.getLogger("ghn_core.yardstick")


def _vit_small() -> nn.Module:
    from torchvision.models import VisionTransformer

    # 8x8 patches of 4x4 pixels; 0.8M parameters
    return VisionTransformer(image_size=32, patch_size=4, num_layers=6, num_heads=4, hidden_dim=128, mlp_dim=256,
                             num_classes=10)


def _torchvision(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return torchvision.models.get_model(name, weights=None, num_classes=10)
    return build


#: The torchvision classifiers of part 2 by name, each built for 10 classes and fed 32x32 images.
CIFAR_CLASSIFIERS: dict[str, Callable[[], nn.Module]] = {
    "resnet18": _torchvision("resnet18"),
    "resnet50": _torchvision("resnet50"),
    "mobilenet_v3_large": _torchvision("mobilenet_v3_large"),
    "convnext_tiny": _torchvision("convnext_tiny"),
    "vit_p4_6x128": _vit_small,
}


@dataclass(frozen=True)
class YardstickConfig:
    """The yardstick's fixed sets, sizes and seeds (recorded in every report). Change them and the
    numbers no longer compare with earlier reports."""

    deepnets_split: str = "test"
    deepnets_nets: int = 50            # the first 50 nets of the split
    deepnets_batches: int = 2          # batches of ``batch_size`` images per net
    torchvision: tuple[str, ...] = tuple(CIFAR_CLASSIFIERS)
    torchvision_batches: int = 8
    nb201_acc_cells: int = 80          # part 3: the first 80 cells of the sample
    nb201_acc_batches: int = 8         # 512 images a cell, as the ghn_accuracy proxy (see the docstring)
    nb201_cv_cells: int = 200          # part 4: the first 200 cells of the sample
    predictor: str = "svr-rank"        # nas.predictors.DEFAULT_PREDICTOR
    cv_folds: int = 5                  # nas.predictors.CV_FOLDS
    batch_size: int = 64               # the paper's evaluation batch (BatchNorm statistics come from it)
    order_seed: int = 1111             # the one order of the test images
    init_seed: int = 0                 # torch seed before building each part's nets
    sample_seed: int = 0               # the NB201 cell sample and the cross-validation folds


def cifar_classifiers(names: Sequence[str], *, seed: int = 0) -> list[tuple[str, nn.Module]]:
    """The named classifiers of :data:`CIFAR_CLASSIFIERS`, freshly initialised after ``torch.manual_seed(seed)``."""
    builders = [lookup(CIFAR_CLASSIFIERS, name, "yardstick classifier") for name in names]
    torch.manual_seed(seed)
    return [(name, build()) for name, build in zip(names, builders)]


def nb201_sample(csv: str | Path, *, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """The distinct cells of a labelled NB201 CSV in one seeded random order: each cell's first
    string and its 200-epoch CIFAR-10 accuracy. Cells with no input-output path (``cell_key`` "zero":
    a constant net, no graph) are left out."""
    rows = load_labelled(csv)
    first: dict[str, int] = {}
    for i, row in enumerate(rows):
        first.setdefault(cell_key(row.arch), i)
    first.pop("zero", None)
    order = np.random.default_rng(seed).permutation(sorted(first.values()))
    return [rows[i].arch for i in order], np.array([rows[i].cifar10 for i in order])


def _result(res: EvalResult) -> dict[str, Any]:
    return asdict(res) | {"mean": res.mean, "stderr": res.stderr}


def _accuracy_part(ghn: GHN2, build: Callable[[], list[tuple[str, nn.Module]]], loader, batches: int,
                   desc: str, progress: bool) -> dict[str, Any]:
    """GHN-predicted and random-init accuracy of the nets ``build()`` makes, on the same images; the
    random-init baseline is scored on the nets the GHN could take."""
    start = time.perf_counter()
    ghn_res = evaluate_nets(ghn, build(), loader, max_batches=batches, progress=progress, desc=f"{desc}: GHN")
    scored = set(ghn_res.names)
    nets = [(name, net) for name, net in build() if name in scored]
    rand_res = evaluate_nets(None, nets, loader, max_batches=batches, progress=progress, desc=f"{desc}: random init")
    return {"batches": batches, "images_per_net": batches * loader.batch_size, "ghn": _result(ghn_res),
            "random": _result(rand_res), "wall_s": time.perf_counter() - start}


def _rank(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Kendall tau-b and Spearman rho; NaN where either side is constant (e.g. a GHN whose nets all
    score alike), which the report shows as such."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        return {"kendall": float(kendalltau(predicted, truth).statistic),
                "spearman": float(spearmanr(predicted, truth).statistic)}


def _nb201_accuracy(ghn: GHN2, archs: list[str], labels: np.ndarray, loader, cfg: YardstickConfig,
                    progress: bool) -> dict[str, Any]:
    start = time.perf_counter()
    torch.manual_seed(cfg.init_seed)
    nets = [(arch, NB201Network(arch, 10)) for arch in archs]
    res = evaluate_nets(ghn, nets, loader, max_batches=cfg.nb201_acc_batches, progress=progress,
                        desc="NB201: GHN")
    truth = dict(zip(archs, labels))
    y = np.array([truth[a] for a in res.names])
    acc = np.array(res.accuracies)
    if len(acc) < 2:
        raise ValueError(f"expected at least 2 NB201 cells the GHN can take to rank, got {len(acc)}")
    return {"n": len(acc), "batches": cfg.nb201_acc_batches, "images_per_net": cfg.nb201_acc_batches * loader.batch_size,
            **_rank(acc, y), "ghn": _result(res), "labels": y.tolist(), "wall_s": time.perf_counter() - start}


def _nb201_embedding_cv(ghn: GHN2, archs: list[str], labels: np.ndarray, cfg: YardstickConfig,
                        progress: bool) -> dict[str, Any]:
    # ghn_core does not import nas; the regressor the search uses lives there, so it is imported here
    from nas.predictors import MIN_FIT, fit_predictor, labelled_features
    from sklearn.model_selection import KFold

    start = time.perf_counter()
    X, ok = labelled_features(ghn, "nb201", archs)
    X, y = X[ok], labels[ok]
    if len(y) - math.ceil(len(y) / cfg.cv_folds) < MIN_FIT:
        raise ValueError(f"expected enough NB201 cells for {cfg.cv_folds}-fold cross-validation (each fit on at "
                         f"least {MIN_FIT}), got {len(y)}")
    pred = np.empty(len(y))
    fold_kendall = []
    folds = KFold(cfg.cv_folds, shuffle=True, random_state=cfg.sample_seed).split(X)
    for fit, test in tqdm(list(folds), desc=f"NB201: {cfg.predictor} CV", unit="fold", disable=not progress):
        pred[test] = fit_predictor(cfg.predictor, X[fit], y[fit], seed=cfg.sample_seed).predict(X[test])
        fold_kendall.append(_rank(pred[test], y[test])["kendall"])
    return {"n": len(y), "predictor": cfg.predictor, "folds": cfg.cv_folds, **_rank(pred, y),
            "fold_kendall": fold_kendall, "fold_kendall_mean": float(np.mean(fold_kendall)),
            "fold_kendall_sd": float(np.std(fold_kendall, ddof=1)), "wall_s": time.perf_counter() - start}


def yardstick(ghn: GHN2, *, config: YardstickConfig = YardstickConfig(), data_dir: str | None = None,
              device: str | torch.device = "auto", nb201_csv: str | Path | None = None,
              deepnets_dir: str | Path = "data/deepnets1m", checkpoint: str | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Score ``ghn`` on the four parts of the module docstring; returns every number, the settings
    and the wall time of each part as one JSON-ready dict (non-finite floats stay floats here).

    ``nb201_csv`` None skips parts 3 and 4 (logged, and marked ``skipped`` in the report);
    ``checkpoint`` is only recorded. Inputs are read and checked before the first net is scored.
    """
    cfg = config
    if ghn.config.num_classes != 10 or ghn.config.image_size != 32:
        raise ValueError(f"the yardstick scores CIFAR-10 GHNs (32x32 images, 10 classes); this GHN has "
                         f"{ghn.config.image_size}x{ghn.config.image_size} images and {ghn.config.num_classes} classes")
    for name in cfg.torchvision:
        lookup(CIFAR_CLASSIFIERS, name, "yardstick classifier")
    total_start = time.perf_counter()
    device = resolve_device(device)
    cells = nb201_sample(nb201_csv, seed=cfg.sample_seed) if nb201_csv is not None else None
    loader = eval_loader("cifar10", "test", data_dir=data_dir, batch_size=cfg.batch_size, device=device,
                         order_seed=cfg.order_seed)

    def deepnets() -> list[tuple[str, nn.Module]]:
        nets = load_eval_nets(cfg.deepnets_split, n=cfg.deepnets_nets, deepnets_dir=str(deepnets_dir),
                              seed_init=cfg.init_seed)
        if len(nets) < cfg.deepnets_nets:  # e.g. a store whose generation was cut short
            raise ValueError(f"the DeepNets-1M {cfg.deepnets_split} split in {deepnets_dir} holds {len(nets)} nets, "
                             f"expected at least {cfg.deepnets_nets}")
        return nets

    report: dict[str, Any] = {
        "suite": "yardstick",
        "ghn": {"checkpoint": checkpoint, "hash": state_hash(ghn.state_dict()), "variant": ghn.config.variant},
        "settings": asdict(cfg) | {"device": str(device), "torch_threads": torch.get_num_threads(),
                                   "nb201_csv": None if nb201_csv is None else str(nb201_csv),
                                   "deepnets_dir": str(deepnets_dir), "images": "cifar10 test"},
    }
    log.info("yardstick 1/4: DeepNets-1M %s, first %d nets", cfg.deepnets_split, cfg.deepnets_nets)
    report["deepnets"] = _accuracy_part(ghn, deepnets, loader, cfg.deepnets_batches, "DeepNets-1M", progress)
    log.info("yardstick 2/4: torchvision classifiers at 32x32 (%s)", ", ".join(cfg.torchvision))
    report["torchvision"] = _accuracy_part(ghn, lambda: cifar_classifiers(cfg.torchvision, seed=cfg.init_seed),
                                           loader, cfg.torchvision_batches, "torchvision", progress)
    if cells is None:
        log.info("yardstick 3/4 and 4/4 (NAS-Bench-201) skipped: no --nb201-csv")
        skipped = {"skipped": "no NAS-Bench-201 CSV given (--nb201-csv)"}
        report["nb201_ghn_accuracy"], report["nb201_embedding_cv"] = dict(skipped), dict(skipped)
    else:
        archs, labels = cells
        log.info("yardstick 3/4: NB201 GHN-predicted accuracy vs 200-epoch accuracy, %d of %d distinct cells",
                 min(cfg.nb201_acc_cells, len(archs)), len(archs))
        report["nb201_ghn_accuracy"] = _nb201_accuracy(ghn, archs[: cfg.nb201_acc_cells],
                                                       labels[: cfg.nb201_acc_cells], loader, cfg, progress)
        log.info("yardstick 4/4: NB201 %s on GHN embeddings, %d-fold CV by cell, %d cells", cfg.predictor,
                 cfg.cv_folds, min(cfg.nb201_cv_cells, len(archs)))
        report["nb201_embedding_cv"] = _nb201_embedding_cv(ghn, archs[: cfg.nb201_cv_cells],
                                                           labels[: cfg.nb201_cv_cells], cfg, progress)
        report["settings"]["nb201_distinct_cells"] = len(archs)
    report["wall_s"] = time.perf_counter() - total_start
    return report


def _pm(mean: float, stderr: float | None) -> str:
    # a report read back from JSON has None where the standard error was not finite (one net)
    return f"{mean:.2f} ± {stderr:.2f}" if stderr is not None and math.isfinite(stderr) else f"{mean:.2f}"


def _corr(value: float | None) -> str:
    # undefined (every cell tied, e.g. an untrained GHN): NaN, or None once read back from JSON
    return f"{value:.3f}" if value is not None and math.isfinite(value) else "undefined"


def format_table(report: dict[str, Any], *, header: bool = True) -> str:
    """The report (as returned, or read back from JSON) as markdown tables: what the CLI prints.
    ``header``: open with the line naming the GHN, its weights and the wall time."""
    s = report["settings"]
    ghn = report["ghn"]
    lines = [f"Yardstick of GHN {ghn['checkpoint'] or '(unnamed)'} (weights {ghn['hash']}) on {s['device']}, "
             f"{s['torch_threads']} torch thread(s): {report['wall_s']:.0f} s", ""] if header else []
    lines += ["Top-1 accuracy (%) of predicted parameters on CIFAR-10 test images, BatchNorm on batch statistics "
             f"(batches of {s['batch_size']}), mean ± stderr over nets; random init: the same nets and images.", "",
             "| nets | n | images/net | GHN | random init | wall s |", "|---|---|---|---|---|---|"]
    parts = [("deepnets", f"DeepNets-1M {s['deepnets_split']} (first {s['deepnets_nets']})"),
             ("torchvision", "torchvision at 32x32")]
    for key, title in parts:
        p = report[key]
        g, r = p["ghn"], p["random"]
        failed = f" ({len(g['failed'])} failed)" if g["failed"] else ""
        lines.append(f"| {title}{failed} | {len(g['names'])} | {p['images_per_net']} | {_pm(g['mean'], g['stderr'])} | "
                     f"{_pm(r['mean'], r['stderr'])} | {p['wall_s']:.0f} |")
    tv = report["torchvision"]
    for name, a, b in zip(tv["ghn"]["names"], tv["ghn"]["accuracies"], tv["random"]["accuracies"]):
        lines.append(f"| &nbsp;&nbsp;{name} | | | {a:.2f} | {b:.2f} | |")
    for name, why in tv["ghn"]["failed"].items():
        lines.append(f"| &nbsp;&nbsp;{name} | | | failed: {why} | | |")
    lines += ["", "NAS-Bench-201 ranking against 200-epoch CIFAR-10 accuracy (distinct cells, one seeded sample):", "",
              "| ranking | cells | Kendall tau | Spearman rho | also | wall s |", "|---|---|---|---|---|---|"]
    acc, cv = report["nb201_ghn_accuracy"], report["nb201_embedding_cv"]
    if "skipped" in acc:
        lines.append(f"| NB201 parts | - | - | - | skipped: {acc['skipped']} | - |")
    else:
        lines.append(f"| GHN-predicted-parameter accuracy ({acc['images_per_net']} images/cell) | {acc['n']} | "
                     f"{_corr(acc['kendall'])} | {_corr(acc['spearman'])} | GHN accuracy "
                     f"{_pm(acc['ghn']['mean'], acc['ghn']['stderr'])} % | {acc['wall_s']:.0f} |")
        lines.append(f"| {cv['predictor']} on GHN embeddings, {cv['folds']}-fold CV by cell (out-of-fold) | {cv['n']} | "
                     f"{_corr(cv['kendall'])} | {_corr(cv['spearman'])} | per-fold tau {_corr(cv['fold_kendall_mean'])} ± "
                     f"{_corr(cv['fold_kendall_sd'])} (sd) | {cv['wall_s']:.0f} |")
    return "\n".join(lines)


def json_ready(obj: Any) -> Any:
    """``obj`` with every non-finite float as None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


#: Suites of ``python -m ghn_core.evaluate --suite NAME``.
SUITES: dict[str, Callable[..., dict[str, Any]]] = {"yardstick": yardstick}
