"""Cheap signals about an architecture, each costing seconds on a CPU.

Every proxy is a function ``(model, ctx) -> float`` registered in :data:`PROXIES` with the
direction in which it is better. :class:`ProxyContext` holds what proxies share: the GHN, a fixed
batch of validation images (never the test set), the device and the seed.

    ctx = ProxyContext.from_data(load_ghn(), dataset="cifar10", n_images=512, seed=0)
    score = compute("ghn_robustness", model, ctx)

GHN proxies predict the model's parameters first (the model is changed in place: pass a fresh one).
``predicted_<label>`` proxies are regressors of SGD labels on the GHN's graph embedding (and graph features)
(``nas.predictors.fit_property``), set in ``ctx.predictors`` under the label's name.
The baselines every GHN proxy is compared with are ``params``, ``flops``, ``naswot`` and ``synflow``.

:class:`ProxyStore` keeps proxy values of nets on disk, so that benchmarks and scorecards score a
net once, whatever pools, samples or targets it appears in.
"""
from __future__ import annotations

import contextlib
import copy
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ghn_core.data import add_noise, get_dataset_info, load_split, normalize, to_float
from ghn_core.errors import GhnNasError
from ghn_core.evaluate import accuracy, latency_ms
from ghn_core.graph import Graph, GraphWarning
from ghn_core.model import GHN2, use_batch_statistics
from ghn_core.utils import lookup, resolve_device, torch_generator
from tqdm.auto import tqdm

__all__ = ["ProxyContext", "Proxy", "PROXIES", "ProxyStore", "compute", "list_proxies"]


@dataclass
class ProxyContext:
    """Inputs shared by all proxies: clean and noisy normalised images with labels, on ``device``."""

    ghn: GHN2 | None
    images: torch.Tensor          # (n, 3, H, W) normalised
    noisy_images: torch.Tensor    # the same images with Gaussian noise, normalised
    labels: torch.Tensor
    device: torch.device
    seed: int = 0
    batch_size: int = 64
    predictors: dict[str, Any] = field(default_factory=dict)  # label name -> PropertyPredictor
    share: bool = True  # trace and predict each net once for all GHN proxies (False: once per proxy, as before)
    _shared: "_Shared | None" = field(default=None, init=False, repr=False, compare=False)

    def new_trial(self) -> None:
        """Forget the shared graph and prediction of the last net (``make_objective`` calls it per trial)."""
        self._shared = None

    @classmethod
    def from_data(cls, ghn: GHN2 | None, *, dataset: str = "cifar10", n_images: int = 512, seed: int = 0,
                  data_dir: str | None = None, device: str = "auto") -> "ProxyContext":
        """A fixed, seeded, class-mixed subset of the held-out validation images."""
        device = resolve_device(device)
        val = load_split(dataset, "val", data_dir=data_dir)
        pick = torch.randperm(len(val), generator=torch_generator(seed))[:n_images]
        info = get_dataset_info(dataset)
        x01 = to_float(val.images[pick])
        noisy = add_noise(x01, info.noise_sigma, torch_generator(seed + 1))
        return cls(ghn.to(device).eval() if ghn is not None else None, normalize(x01, info).to(device),
                   normalize(noisy, info).to(device), val.labels[pick].to(device), device, seed)


@dataclass(frozen=True)
class Proxy:
    name: str
    direction: str  # "maximize" or "minimize"
    fn: Callable[[nn.Module, ProxyContext], float]
    doc: str
    unit: str       # short, for axis labels
    meaning: str    # what one unit is, for reports ("{device}": where it was measured)
    # a function of the net, the GHN and the images alone (latency also depends on the machine's
    # load, a predictor proxy on the fitted regressor): ProxyStore keeps only these
    storable: bool = True
    uses_ghn: bool = False  # its value depends on the GHN's weights (stored per GHN)


@dataclass
class _Shared:
    """What the GHN proxies of one trial share for its net: one trace, one prediction."""

    model: nn.Module
    graph: Graph | None = None
    trace_warnings: list = field(default_factory=list)  # GraphWarnings of the trace, shown once by a prediction
    predicted: dict[str, torch.Tensor] | None = None    # every parameter right after the GHN's prediction


def _shared(model: nn.Module, ctx: ProxyContext) -> _Shared:
    # One net at a time: a new model object replaces the last one (bounded memory outside trials too).
    if ctx._shared is None or ctx._shared.model is not model:
        ctx._shared = _Shared(model)
    return ctx._shared


def _graph(model: nn.Module, ctx: ProxyContext) -> Graph:
    shared = _shared(model, ctx)
    if shared.graph is None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", GraphWarning)
            shared.graph = ctx.ghn.graphs([model])[0]
        shared.trace_warnings = [w for w in caught if issubclass(w.category, GraphWarning)]
        for w in caught:
            if not issubclass(w.category, GraphWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return shared.graph


def _predict(model: nn.Module, ctx: ProxyContext) -> nn.Module:
    """``model`` with the GHN's predicted parameters (BatchNorm on batch statistics).

    With ``ctx.share``, the net is traced and predicted once per trial; later GHN proxies get every
    parameter restored to that prediction (trainability trains the net, the next proxy must not see it).
    """
    if ctx.ghn is None:
        raise ValueError("this proxy needs a GHN: build the ProxyContext with one (e.g. load_ghn())")
    model = model.to(ctx.device)
    if not ctx.share:
        ctx.ghn.predict(model)
        return model
    shared = _shared(model, ctx)
    if shared.predicted is None:
        graph = _graph(model, ctx)
        for w in shared.trace_warnings:  # shown where predict() would have shown them
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        ctx.ghn.predict(model, graph=graph)
        shared.predicted = {name: p.detach().clone() for name, p in model.named_parameters()}
    else:
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(shared.predicted[name])
        use_batch_statistics(model)
    return model


def _accuracy(model: nn.Module, images: torch.Tensor, ctx: ProxyContext) -> float:
    batches = ((images[s: s + ctx.batch_size], ctx.labels[s: s + ctx.batch_size])
               for s in range(0, len(images), ctx.batch_size))
    # predict() already switched BatchNorm to batch statistics; images as stored (no channels-last).
    return accuracy(model, batches, batch_statistics=False, channels_last=False)


def ghn_accuracy(model: nn.Module, ctx: ProxyContext) -> float:
    """Top-1 (%) of GHN-predicted parameters on the fixed validation images (BN batch statistics)."""
    return _accuracy(_predict(model, ctx), ctx.images, ctx)


def ghn_robustness(model: nn.Module, ctx: ProxyContext) -> float:
    """Accuracy (%) with GHN-predicted parameters on the validation images under Gaussian noise (sigma 0.08
    on CIFAR, added before normalisation)."""
    return _accuracy(_predict(model, ctx), ctx.noisy_images, ctx)


def trainability(model: nn.Module, ctx: ProxyContext, steps: int = 5, lr: float = 0.025) -> float:
    """Relative loss drop over a few SGD steps (momentum 0.9) on one batch, from the GHN's parameters."""
    model = _predict(model, ctx).train()
    torch.manual_seed(ctx.seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    x, y = ctx.images[: ctx.batch_size], ctx.labels[: ctx.batch_size]
    losses = []
    for _ in range(steps + 1):
        loss = F.cross_entropy(model(x), y)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (losses[0] - losses[-1]) / max(losses[0], 1e-8)


def params(model: nn.Module, ctx: ProxyContext) -> float:
    """Number of parameters (millions)."""
    return sum(p.numel() for p in model.parameters()) / 1e6


@torch.no_grad()
def flops(model: nn.Module, ctx: ProxyContext) -> float:
    """Forward FLOPs (millions) for one image, by torch's own counter."""
    counter = FlopCounterMode(display=False)
    with counter:
        model.to(ctx.device).eval()(ctx.images[:1])
    return counter.get_total_flops() / 1e6


def _latency(model: nn.Module, ctx: ProxyContext, batch: int) -> float:
    x = ctx.images[:1].expand(batch, -1, -1, -1).contiguous()
    return latency_ms(model.to(ctx.device), x)


def latency_b1(model: nn.Module, ctx: ProxyContext) -> float:
    """Median forward time (ms) of one image on the context's device."""
    return _latency(model, ctx, 1)


def latency_b64(model: nn.Module, ctx: ProxyContext) -> float:
    """Median forward time (ms) of a batch of 64."""
    return _latency(model, ctx, 64)


@torch.no_grad()
def naswot(model: nn.Module, ctx: ProxyContext) -> float:
    """NASWOT (Mellor et al. 2021): log-determinant of the kernel of binary ReLU activation codes
    over one batch, K_ij = #units - Hamming(c_i, c_j)."""
    model = model.to(ctx.device).train()
    x = ctx.images[: ctx.batch_size]
    kernel = torch.zeros(len(x), len(x), dtype=torch.float64, device=ctx.device)
    relus = 0

    def add_codes(_m, _i, out: torch.Tensor) -> None:
        # Agreements of the 0/1 codes c: c c^T + (1-c)(1-c)^T = 2 c c^T - r_i - r_j + #units (r: row
        # sums), one ReLU at a time, no concatenation. The products are exact integers in float32 below
        # 2^24 units; the rest adds up in float64.
        nonlocal relus
        relus += 1
        c = (out > 0).flatten(1)
        c = c.float() if c.shape[1] < 2**24 else c.double()
        r = c.sum(1, keepdim=True).double()
        kernel.add_(2 * (c @ c.t()).double() - r - r.t() + c.shape[1])

    hooks = [m.register_forward_hook(add_codes) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    if not relus:
        raise ValueError(f"naswot needs ReLU modules; {type(model).__name__} has none")
    return float(torch.slogdet(kernel)[1])


def synflow(model: nn.Module, ctx: ProxyContext) -> float:
    """SynFlow (Tanaka et al. 2020): sum |theta * dR/dtheta| with R the output sum for an all-ones
    input through |theta| (double precision, BN in eval mode with unit statistics)."""
    net = copy.deepcopy(model).to(ctx.device).double().eval()
    for m in net.modules():  # identity statistics: BN only rescales by |gamma|
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.reset_running_stats()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net.zero_grad()
    net(torch.ones_like(ctx.images[:1], dtype=torch.float64)).sum().backward()
    return float(sum((p.detach() * p.grad).abs().sum() for p in net.parameters() if p.grad is not None))


def _regressed(label: str) -> Callable[[nn.Module, ProxyContext], float]:
    def predicted(model: nn.Module, ctx: ProxyContext) -> float:
        from .predictors import graph_matrix

        if ctx.ghn is None or label not in ctx.predictors:
            raise GhnNasError(f"predicted_{label} needs a GHN and a regressor fitted on {label} labels: the predictors shipped "
                              f"beside the GHN, or nas.search --labels FILE (records of python -m nas.label)")
        predictor = ctx.predictors[label]
        if ctx.share:
            graph = _graph(model, ctx)  # the trial's one trace (its GraphWarnings are reported once, not here)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", GraphWarning)  # ops on dead nodes are reported, by design
                graph = ctx.ghn.graphs([model])[0]
        return float(predictor.predict(graph_matrix(ctx.ghn, [graph], [model], predictor.features))[0])

    predicted.__doc__ = (f"{label} (%) after SGD, as a regressor on the GHN embedding (and graph features) fitted on "
                         f"labelled nets predicts it.")
    return predicted


PROXIES: dict[str, Proxy] = {p.name: p for p in (
    Proxy("ghn_accuracy", "maximize", ghn_accuracy, ghn_accuracy.__doc__, "%",
          "% of validation images, with GHN-predicted parameters", uses_ghn=True),
    Proxy("ghn_robustness", "maximize", ghn_robustness, ghn_robustness.__doc__, "%",
          "% of noisy validation images, with GHN-predicted parameters", uses_ghn=True),
    Proxy("trainability", "maximize", trainability, trainability.__doc__, "fraction",
          "fraction of the first loss lost in 5 SGD steps", uses_ghn=True),
    Proxy("latency_b1", "minimize", latency_b1, latency_b1.__doc__, "ms",
          "ms per image on {device}", storable=False),
    Proxy("latency_b64", "minimize", latency_b64, latency_b64.__doc__, "ms",
          "ms per batch of 64 on {device}", storable=False),
    Proxy("flops", "minimize", flops, flops.__doc__, "MFLOPs",
          "millions of FLOPs per image"),
    Proxy("params", "maximize", params, "Parameters (millions); as an accuracy baseline, more is better.", "M",
          "millions of parameters"),
    Proxy("naswot", "maximize", naswot, naswot.__doc__, "log-det",
          "log-determinant, no unit"),
    Proxy("synflow", "maximize", synflow, synflow.__doc__, "score",
          "sum of |theta * dR/dtheta|, no unit"),
    *(Proxy(f"predicted_{label}", "maximize", _regressed(label), _regressed(label).__doc__, "%", f"{what}, as predicted",
            storable=False)
      for label, what in (("clean_acc", "% of test images after SGD"), ("noisy_acc", "% of noisy test images after SGD"),
                          ("train_acc_mean", "mean % of training images over the SGD epochs"))),
    *(Proxy(f"predicted_{column}", "maximize", _regressed(column),
            f"NAS-Bench-201 CIFAR-10 test accuracy (%) after 200 epochs{what}, as the predictor shipped beside the "
            f"GHN predicts it.", "%", f"% of{noisy} CIFAR-10 test images after 200 epochs, as predicted", storable=False)
      for column, what, noisy in (("cifar10_test_acc_200ep", "", ""),
                                  ("cifar10_noisy_acc_200ep", " under Gaussian noise (sigma 0.08)", " noisy"))),
)}


def list_proxies() -> list[str]:
    return list(PROXIES)


def compute(name: str, model: nn.Module, ctx: ProxyContext) -> float:
    """Value of proxy ``name`` for ``model``; an unknown name lists the known ones."""
    return float(lookup(PROXIES, name, "proxy").fn(model, ctx))


class ProxyStore:
    """Proxy values of nets, computed once and kept on disk.

    ``folder/<proxy>.jsonl`` holds one ``[net key, value]`` line per net, appended as soon as the value
    is computed, so an interrupted run resumes at the next net. The folder names what a value depends
    on: the space and the validation images (count and seed); the values of GHN proxies
    (:attr:`Proxy.uses_ghn`) live in ``ghn_folder``, named by the GHN's weights, so a new GHN scores
    only those again. Proxies that depend on more (:attr:`Proxy.storable` False: latency,
    predictors) are computed afresh every time.
    """

    def __init__(self, folder: Path, make_ctx: Callable[[], ProxyContext], seed: int = 0,
                 ghn_folder: Path | None = None):
        self.folder, self.seed = Path(folder), seed
        self.ghn_folder = Path(ghn_folder) if ghn_folder is not None else self.folder
        self._make_ctx, self._ctx = make_ctx, None

    @classmethod
    def for_ghn(cls, space: str, ghn: GHN2, *, n_images: int = 512, seed: int = 0,
                data_dir: str | None = None) -> "ProxyStore":
        """The store of ``ghn``'s proxies on ``space`` under the user cache (``$GHN_NAS_CACHE``), scored
        on CPU with ``ProxyContext.from_data`` (built when a value is first missing)."""
        from ghn_core.data import resolve_cache_dir
        from ghn_core.model.checkpoint import state_hash

        folder = resolve_cache_dir() / "proxies" / f"{space}-{n_images}img-seed{seed}"
        return cls(folder, lambda: ProxyContext.from_data(ghn, n_images=n_images, seed=seed, data_dir=data_dir,
                                                          device="cpu"), seed,
                   ghn_folder=folder / f"ghn-{state_hash(ghn.state_dict())[:12]}")

    def values(self, name: str, nets: Sequence[tuple[str, Callable[[], nn.Module | None]]], *,
               progress: bool = True) -> np.ndarray:
        """``name``'s value for each ``(key, build)`` of ``nets``: ``build()`` makes a fresh net, or
        returns None for one with no graph (NaN). Nets of one key (NB201 strings of one cell) get the
        value of the first of them."""
        proxy = lookup(PROXIES, name, "proxy")
        path = (self.ghn_folder if proxy.uses_ghn else self.folder) / f"{name}.jsonl"
        text = path.read_text() if proxy.storable and path.is_file() else ""
        known = dict(_parse_values(text))
        todo: dict[str, Callable[[], nn.Module | None]] = {}
        for key, build in nets:
            if key not in known:
                todo.setdefault(key, build)  # the first net of a key stands for all of them
        if todo:
            if proxy.storable:
                path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") if proxy.storable else contextlib.nullcontext() as f:
                if f is not None and text and not text.endswith("\n"):
                    f.write("\n")  # a line a kill cut short stays on its own
                for key, build in tqdm(todo.items(), desc=name, unit="net", disable=not progress or None):
                    torch.manual_seed(self.seed)
                    model = build()
                    if model is None:
                        known[key] = float("nan")  # no graph: constant output, no score
                    else:
                        if self._ctx is None:
                            self._ctx = self._make_ctx()
                        self._ctx.new_trial()
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", GraphWarning)  # ops on dead nodes are reported, by design
                            known[key] = compute(name, model, self._ctx)
                    if f is not None:
                        f.write(json.dumps([key, known[key]]) + "\n")
                        f.flush()
        return np.array([known[key] for key, _ in nets])


def _parse_values(text: str) -> list[tuple[str, float]]:
    """The ``[net key, value]`` lines of a store file; a line cut short by a kill is dropped."""
    pairs = []
    for line in text.splitlines():
        try:
            key, value = json.loads(line)
        except ValueError:
            continue
        pairs.append((key, float(value)))
    return pairs
