"""Training and measuring one candidate with SGD: the ground truth behind labels and finalists.

:func:`train_sgd` trains a network with an :class:`SGDRecipe` and measures it: test accuracy,
clean and under Gaussian noise, inference time and convergence (epochs to a training accuracy, and
the mean training accuracy over the epochs). ``nas.label`` writes
these measures to label files; ``nas.finalize`` stores them on a study.

    model = build_architecture("nb201", arch, width_scale=recipe.width_scale)
    labels = train_sgd(model, RECIPES["cpu"], device="cpu")
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ghn_core.data import BatchLoader, add_noise, get_dataset_info, load_split, normalize, resize
from ghn_core.evaluate import accuracy, latency_ms
from ghn_core.utils import resolve_device, torch_generator

from .space import ATTR, get_space

__all__ = ["SGDRecipe", "RECIPES", "SCHEDULES", "train_sgd", "train_acc_mean", "build_architecture", "rebuild_scaled", "init_from_ghn"]

SCHEDULES = ("cosine", "onecycle")


@dataclass(frozen=True)
class SGDRecipe:
    """Training of a candidate. Defaults are the paper's CIFAR-10 recipe (§4 of the reference)."""

    epochs: int = 50
    lr: float = 0.025
    momentum: float = 0.9
    weight_decay: float = 3e-4
    batch_size: int = 96
    grad_clip: float = 5.0
    max_batches: int | None = None      # per epoch, for CPU budgets
    eval_batches: int | None = None     # test batches scored (None: the whole test set)
    converged_at: float = 90.0          # training accuracy (%) that counts as converged
    schedule: str = "cosine"            # "cosine" (from lr to 0) or "onecycle" (warm-up to lr, then down)
    resolution: int | None = None       # train and test images resized to this side (None: as stored)
    width_scale: float = 1.0            # every layer's channels times this (0.5: NB201 16 -> 8, DeepNets C 32 -> 16)

    def __post_init__(self) -> None:
        if not self.width_scale > 0:
            raise ValueError(f"expected width_scale > 0, got {self.width_scale} instead")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; known: {', '.join(SCHEDULES)}")


RECIPES: dict[str, SGDRecipe] = {
    "paper": SGDRecipe(),
    # The best-ranking recipe under two CPU-minutes per NB201 cell in benchmarks/label_fidelity.py:
    # half width, 16 px, 3 epochs of 120 batches of 128, one-cycle to lr 0.1, 2,560 test images.
    "cpu": SGDRecipe(epochs=3, lr=0.1, batch_size=128, max_batches=120, eval_batches=10, schedule="onecycle",
                     resolution=16, width_scale=0.5),
}


def _test_accuracy(model: nn.Module, loader: BatchLoader, max_batches: int | None,
                   to_input: Callable[[torch.Tensor], torch.Tensor]) -> float:
    loader.set_epoch(0)
    # Running statistics of the training just done; images as the loader gives them (no channels-last).
    return accuracy(model, ((to_input(x), y) for x, y in loader), max_batches, batch_statistics=False,
                    channels_last=False)


def _noisy_at(resolution: int, info, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """Normalised test images -> the net's input at ``resolution`` with the dataset's Gaussian noise
    added to its [0, 1] pixels. Noise added before resizing would be averaged away (at 16 px its sd
    halves), so noisy accuracy would read as clean accuracy."""
    mean = torch.tensor(info.mean, device=device)[:, None, None]
    std = torch.tensor(info.std, device=device)[:, None, None]
    generator = torch_generator(1112, device)

    def to_input(x: torch.Tensor) -> torch.Tensor:
        x01 = (resize(x, resolution) * std + mean).clamp_(0, 1)
        return normalize(add_noise(x01, info.noise_sigma, generator), info)

    return to_input


def train_sgd(model: nn.Module, recipe: SGDRecipe, *, dataset: str = "cifar10", data_dir: str | None = None,
              device: str = "auto", seed: int = 0) -> dict[str, Any]:
    """Train ``model`` with SGD (the recipe's schedule) and return its labels and training curve."""
    device = resolve_device(device)
    torch.manual_seed(seed)
    model = model.to(device)
    train = BatchLoader(load_split(dataset, "train", data_dir=data_dir), recipe.batch_size, shuffle=True,
                        augment=True, device=device, seed=seed, drop_last=True)
    test_set = load_split(dataset, "test", data_dir=data_dir)
    # The ImageFolder copy is sorted by class: a fixed seeded order keeps partial test passes fair.
    test = BatchLoader(test_set, 256, shuffle=True, augment=False, device=device, seed=1111)
    info = get_dataset_info(dataset)
    resized = recipe.resolution is not None and recipe.resolution != test_set.images.shape[-1]
    if resized:  # noise on the pixels the net sees
        noisy, noisy_input = test, _noisy_at(recipe.resolution, info, device)
    else:
        noisy = BatchLoader(test_set, 256, shuffle=True, augment=False, device=device, seed=1111,
                            noise_sigma=info.noise_sigma)
        noisy_input = (lambda x: x)
    steps_per_epoch = min(len(train), recipe.max_batches or len(train))
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    total_steps = recipe.epochs * steps_per_epoch
    if recipe.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, recipe.lr, total_steps=total_steps, pct_start=0.25)
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total_steps)
    curve, converged = [], None
    for epoch in range(recipe.epochs):
        model.train()
        train.set_epoch(epoch)
        correct = seen = 0
        for b, (x, y) in enumerate(train):
            if b >= steps_per_epoch:
                break
            out = model(resize(x, recipe.resolution))
            loss = F.cross_entropy(out, y)
            if not torch.isfinite(loss):
                raise ValueError(f"the loss became {loss.item()} in epoch {epoch + 1}: lower the learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            opt.step()
            sched.step()
            correct += (out.argmax(1) == y).sum().item()
            seen += len(y)
        curve.append(100.0 * correct / seen)
        if converged is None and curve[-1] >= recipe.converged_at:
            converged = epoch + 1
    sample = resize(test_set.images[:64].to(device).float() / 255, recipe.resolution)
    clean_input = (lambda x: resize(x, recipe.resolution))
    return {"clean_acc": _test_accuracy(model, test, recipe.eval_batches, clean_input),
            "noisy_acc": _test_accuracy(model, noisy, recipe.eval_batches, noisy_input),
            "inference_ms": latency_ms(model, sample),
            "epochs_to_converge": converged, "train_acc_mean": train_acc_mean(curve), "train_acc_curve": curve}


def train_acc_mean(curve: Sequence[float]) -> float:
    """Convergence speed that a short recipe can measure: the mean of the per-epoch training accuracies
    (the area under the training curve). A threshold such as 90% is never reached in a few CPU epochs."""
    return float(np.mean(curve))


def init_from_ghn(model: nn.Module, ghn) -> nn.Module:
    """Copy the GHN's predicted parameters into ``model`` (in place) as its starting point for SGD.
    Predicted tensors only: BatchNorm keeps its running statistics for ordinary training."""
    params = ghn.predict_params([model])[0]
    with torch.no_grad():
        for name, tensor in params.items():
            model.get_parameter(name).copy_(tensor)
    return model


def rebuild_scaled(space, user_attrs: dict[str, Any], width_scale: float = 1.0) -> nn.Module:
    """``space.rebuild(user_attrs)`` with the space's first-stage width (NB201 16, DeepNets-1M C=32)
    times ``width_scale``: label recipes train narrower copies. A pool builds as its space does."""
    space = getattr(space, "base", space)
    if width_scale != 1.0:
        if not hasattr(space, "C"):
            raise ValueError(f"the recipe scales widths by {width_scale}, but the {space.name} space has no width C: "
                             f"pick a recipe with width_scale 1")
        space = dataclasses.replace(space, C=max(1, round(space.C * width_scale)))
    return space.rebuild(user_attrs)


def build_architecture(space: str, arch: str, num_classes: int = 10, width_scale: float = 1.0) -> nn.Module:
    """The network of one architecture line (an NB201 string or a DeepNets-1M JSON record), built by
    the search space ``space`` as its ``rebuild`` would, at ``width_scale`` (see :func:`rebuild_scaled`)."""
    record = {ATTR: arch if space == "deepnets" else json.dumps(arch)}
    return rebuild_scaled(get_space(space, num_classes=num_classes), record, width_scale)
