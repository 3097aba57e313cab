"""Proxy conformance: every proxy returns a finite float, deterministic where it should be, with a
declared direction, on a DeepNets-1M net and a NAS-Bench-201 net."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ghn_core.deepnets import SPLITS, Network
from ghn_core.errors import GhnNasError
from ghn_core.deepnets.generate import generate_chunk
from ghn_core.model import create_ghn
from ghn_core.nb201 import NB201Network
from nas.predictors import FEATURE_NAMES, PropertyPredictor, fit_predictor
from nas.proxies import PROXIES, ProxyContext, compute, list_proxies

TIMING = {"latency_b1", "latency_b64"}
FULL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"


@pytest.fixture(scope="module")
def ctx(cifar_dir) -> ProxyContext:
    torch.manual_seed(0)
    ctx = ProxyContext.from_data(create_ghn("ghn2"), n_images=128, seed=0, data_dir=str(cifar_dir), device="cpu")
    # The label regressors (nas.search --labels): any fitted one conforms; here ridges on random features,
    # one of each feature kind.
    rng = np.random.default_rng(0)

    def predictor(features: str, width: int) -> PropertyPredictor:
        regressor = fit_predictor("ridge", rng.normal(size=(12, width)), rng.uniform(10, 90, size=12))
        return PropertyPredictor("any", "any", "ridge", regressor, {}, frozenset(), {}, features)

    hid = ctx.ghn.config.hid
    ctx.predictors = {"clean_acc": predictor("embedding", hid), "noisy_acc": predictor("embedding+graph",
                                                                                       hid + len(FEATURE_NAMES)),
                      "train_acc_mean": predictor("embedding", hid), "cifar10_test_acc_200ep": predictor("embedding", hid),
                      "cifar10_noisy_acc_200ep": predictor("embedding", hid)}
    return ctx


def _models():
    arch = generate_chunk(SPLITS["val"], 0, 1)[0].arch
    return {"deepnets": lambda: (torch.manual_seed(0), Network(arch, 16))[1],
            "nb201": lambda: (torch.manual_seed(0), NB201Network(FULL))[1]}


@pytest.mark.parametrize("name", list_proxies())
@pytest.mark.parametrize("family", ["deepnets", "nb201"])
def test_every_proxy_conforms(ctx, name, family):
    make = _models()[family]
    value = compute(name, make(), ctx)
    assert isinstance(value, float) and math.isfinite(value)
    assert PROXIES[name].direction in ("maximize", "minimize") and PROXIES[name].doc
    if name not in TIMING:
        assert compute(name, make(), ctx) == value  # fresh model, same seed: same value


def test_proxies_see_real_differences(ctx):
    small, big = NB201Network("|none~0|+|skip_connect~0|none~1|+|none~0|skip_connect~1|avg_pool_3x3~2|"), NB201Network(FULL)
    assert compute("params", big, ctx) > compute("params", small, ctx)
    assert compute("flops", big, ctx) > compute("flops", small, ctx)
    noisy_vs_clean = ctx.noisy_images - ctx.images
    assert noisy_vs_clean.abs().mean() > 0.05  # the robustness proxy really sees other pixels


def test_unknown_proxy_and_missing_ghn(ctx):
    with pytest.raises(ValueError, match=r"unknown proxy 'nawsot'.*Did you mean 'naswot'"):
        compute("nawsot", NB201Network(FULL), ctx)
    no_ghn = ProxyContext(None, ctx.images, ctx.noisy_images, ctx.labels, ctx.device)
    with pytest.raises(ValueError, match="needs a GHN"):
        compute("ghn_accuracy", NB201Network(FULL), no_ghn)
    no_labels = ProxyContext(ctx.ghn, ctx.images, ctx.noisy_images, ctx.labels, ctx.device)
    with pytest.raises(GhnNasError, match="predicted_noisy_acc needs a GHN and a regressor fitted on noisy_acc labels"):
        compute("predicted_noisy_acc", NB201Network(FULL), no_labels)


def test_trial_shares_one_trace_and_prediction(ghn_ckpt, cifar_dir, monkeypatch):
    """A multi-objective trial traces and predicts its net once; every proxy value equals the one
    computed proxy by proxy with a fresh trace and prediction each (ctx.share=False: the old path)."""
    import optuna

    from ghn_core import load_ghn
    from nas.search import make_objective
    from nas.space import get_space

    ctx = ProxyContext.from_data(load_ghn(ghn_ckpt), n_images=64, seed=0, data_dir=str(cifar_dir), device="cpu")
    traces = []
    graphs = ctx.ghn.graphs
    monkeypatch.setattr(ctx.ghn, "graphs", lambda models, **kw: (traces.append(len(models)), graphs(models, **kw))[1])
    # trainability before ghn_robustness: the robustness proxy must not see the trained net
    proxies = ["ghn_accuracy", "params", "trainability", "ghn_robustness"]
    objective = make_objective(get_space("nb201"), proxies, ctx)
    for cell in (FULL, "|nor_conv_1x1~0|+|skip_connect~0|avg_pool_3x3~1|+|nor_conv_3x3~0|none~1|skip_connect~2|"):
        ops = [edge.split("~")[0] for node in cell.strip("|").split("|+|") for edge in node.split("|")]
        params = {f"edge_{i}_{j}": op for (i, j), op in zip([(i, j) for j in range(1, 4) for i in range(j)], ops)}
        values = {}
        for share in (True, False):
            ctx.share = share
            traces.clear()
            torch.manual_seed(0)
            values[share] = objective(optuna.trial.FixedTrial(params))
            assert len(traces) == (1 if share else 3)  # GHN proxies: one trace, or one each
        assert values[True] == values[False]
        assert all(math.isfinite(v) for v in values[True])


def test_proxy_store_scores_each_net_once_and_keeps_only_storable_proxies(ctx, tmp_path, monkeypatch):
    import nas.proxies
    from nas.proxies import ProxyStore

    calls = []
    monkeypatch.setattr(nas.proxies, "compute", lambda name, model, c: calls.append(name) or compute(name, model, c))
    store = ProxyStore(tmp_path / "store", lambda: ctx)
    small = "|none~0|+|skip_connect~0|none~1|+|none~0|skip_connect~1|avg_pool_3x3~2|"
    nets = [("small", lambda: NB201Network(small)), ("full", lambda: NB201Network(FULL)),
            ("small", lambda: NB201Network(FULL)), ("no graph", lambda: None)]  # a key's first net stands for it
    first = store.values("params", nets, progress=False)
    assert calls == ["params", "params"] and first[0] == first[2] and np.isnan(first[3])
    assert first[1] == compute("params", NB201Network(FULL), ctx)
    calls.clear()
    again = ProxyStore(tmp_path / "store", lambda: ctx).values("params", nets, progress=False)  # read back
    assert calls == [] and np.array_equal(again, first, equal_nan=True)
    store.values("latency_b1", nets[:2], progress=False)  # depends on the machine's load: never kept
    store.values("latency_b1", nets[:2], progress=False)
    assert calls == ["latency_b1"] * 4 and sorted(p.name for p in (tmp_path / "store").iterdir()) == ["params.jsonl"]


def test_proxy_store_keeps_ghn_free_values_across_ghns(cifar_dir, tmp_path, monkeypatch):
    """A new GHN scores its GHN proxies again; the values that do not depend on it are read back."""
    import nas.proxies
    from nas.proxies import ProxyStore

    monkeypatch.setenv("GHN_NAS_CACHE", str(tmp_path / "cache"))
    calls = []
    monkeypatch.setattr(nas.proxies, "compute", lambda name, model, c: calls.append(name) or compute(name, model, c))
    nets = [("full", lambda: NB201Network(FULL))]
    for seed in (0, 1):
        torch.manual_seed(seed)
        store = ProxyStore.for_ghn("nb201", create_ghn("ghn2"), n_images=64, data_dir=str(cifar_dir))
        for name in ("params", "ghn_accuracy"):
            store.values(name, nets, progress=False)
    assert calls == ["params", "ghn_accuracy", "ghn_accuracy"]
    assert store.folder.parent == tmp_path / "cache" / "proxies" and store.ghn_folder.parent == store.folder
