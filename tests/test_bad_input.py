"""What each entry point does with bad input: one test per row of README's "Bad input" table.
Each checks the error (or warning) names the problem, and that nothing stored is changed."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from ghn_core import load_ghn
from ghn_core.errors import CheckpointError, GhnNasError, GraphError, UnsupportedModuleError
from ghn_core.graph import Graph
from ghn_core.graph.trace import GraphWarning
from ghn_core.model import create_ghn, save_checkpoint


@pytest.fixture(scope="module")
def ghn():
    torch.manual_seed(0)
    return create_ghn("ghn2").eval()


def small_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


class Gated(nn.Module):
    """Uses a bare parameter in forward, in a way no node kind fits (a scalar factor; a per-class
    factor would be a layer scale): a module type the graph builder has no node kind for."""

    def __init__(self):
        super().__init__()
        self.body = small_net()
        self.gate = nn.Parameter(torch.full((10,), 0.5))

    def forward(self, x):
        return self.body(x) * self.gate.sum()


def test_unknown_module_type_warns_and_keeps_those_parameters(ghn):
    model = Gated()
    with pytest.warns(GraphWarning, match=r"(?s)register_module\(Gated, kind\).*: gate"):
        ghn.predict(model)
    assert torch.equal(model.gate.detach(), torch.full((10,), 0.5))  # not predicted: left as it was
    with pytest.raises(UnsupportedModuleError, match=r"gate.*register_module"):
        Graph.from_module(Gated(), strict=True)


def test_wrong_input_size_names_the_shape(ghn):
    model = nn.Sequential(nn.Flatten(), nn.Linear(100, 10))  # wants 100 features, gets 3x32x32
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(GraphError, match=r"forward failed on input of shape \(1, 3, 32, 32\).*3072"):
        ghn.predict(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("model", [nn.Sequential(nn.Conv2d(3, 8, 3, padding=1)),
                                   nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(0))])
def test_non_classifier_is_refused(ghn, model):
    with pytest.raises(GraphError, match=r"is not a classifier: .* returned shape .*\(batch, classes\) logits"):
        ghn.predict(model)


def test_corrupt_checkpoint(tmp_path):
    good = create_ghn("ghn2")
    path = save_checkpoint(tmp_path / "ghn.pt", {"config": good.config.to_dict(), "state_dict": good.state_dict()})
    data = path.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pt is not a readable GHN checkpoint"):
        load_ghn(tmp_path / "truncated.pt")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="foreign.pt is a torch file but not a ghn-nas GHN checkpoint"):
        load_ghn(tmp_path / "foreign.pt")
    state = {k: v.clone() for k, v in good.state_dict().items()}
    next(v for v in state.values() if v.is_floating_point()).fill_(float("nan"))
    save_checkpoint(tmp_path / "nan.pt", {"config": good.config.to_dict(), "state_dict": state})
    with pytest.raises(CheckpointError, match="nan.pt: 1 weight tensors hold NaN or Inf"):
        load_ghn(tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="no GHN checkpoint at"):
        load_ghn(tmp_path / "missing.pt")


def test_nan_predictions_are_refused_and_nothing_is_written(ghn):
    broken = copy.deepcopy(ghn)
    with torch.no_grad():
        for p in broken.decoder.parameters():
            p.fill_(float("nan"))
    model = small_net()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(GhnNasError, match=r"predicted non-finite values for Sequential .*corrupt or diverged"):
        broken.predict(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_single_nan_value_is_caught(ghn):
    """Not only a tensor's first value: NaN in one input column of the classifier is refused too."""
    broken = copy.deepcopy(ghn)
    with torch.no_grad():
        broken.decoder.conv2.bias[5] = float("nan")  # block entry (out 0, in 5): classifier column 5
    model = small_net()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(GhnNasError, match="predicted non-finite values for Sequential"):
        broken.predict(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_empty_labelled_set(tmp_path, capsys):
    from nas.predictors import fit_predictor
    from nas.scorecard import main as scorecard

    empty = tmp_path / "labels.csv"
    empty.write_text("arch,cifar10_test_acc_200ep,cifar100_test_acc_200ep,imagenet16_120_test_acc_200ep\n")
    with pytest.raises(SystemExit) as exit_info:
        scorecard(["--labels", str(empty), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "has no labelled architectures" in capsys.readouterr().err
    with pytest.raises(ValueError, match="at least 10 labelled architectures to fit a predictor, got 0"):
        fit_predictor("svr", torch.zeros(0, 32).numpy(), torch.zeros(0).numpy())


@pytest.mark.parametrize("storage", ["sqlite:////proc/ghn-nas/study.db", "journal:/proc/ghn-nas/study.journal"])
def test_unwritable_storage(tmp_path, ghn_ckpt, cifar_dir, storage, capsys):
    from nas.search import main as search

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(SystemExit) as exit_info:
            search(["--storage", storage, "--ghn", ghn_ckpt, "--data-dir", str(cifar_dir), "--trials", "1"])
    assert exit_info.value.code == 2 and "cannot open the study storage" in capsys.readouterr().err
