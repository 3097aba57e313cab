"""``--dataset cifar100`` reaches everything that depends on the class count: the GHN that training
builds, the validation nets it scores, and the exported checkpoint and model card. A GHN decodes one
classifier row per class it was built for and tiles them over wider heads, so a 10-class GHN would
silently give a 100-class net only 10 distinct class rows. No training and no image data here."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import TINY
from ghn_core import export as export_mod
from ghn_core import evaluate as evaluate_mod
from ghn_core.deepnets import Architecture, Genotype, Network, SplitSpec, generate_split
from ghn_core.errors import GhnNasError
from ghn_core.evaluate import EvalResult
from ghn_core.model import create_ghn, save_checkpoint
from ghn_core.train import TrainConfig, _starting_point, _validate

torch.set_num_threads(1)

CELL = [("conv_3x3", 0), ("sep_conv_3x3", 1)]
ARCH = Architecture(Genotype(CELL, [2], CELL, [2]), n_cells=4)


def distinct_class_rows(ghn, num_classes: int) -> int:
    net = ghn.predict(Network(ARCH, 16, num_classes))
    return torch.unique(net.classifier.weight.detach(), dim=0).shape[0]


@pytest.mark.parametrize("dataset, classes", [("cifar10", 10), ("cifar100", 100)])
def test_a_fresh_run_builds_a_ghn_for_the_dataset_classes(dataset, classes, tmp_path):
    ghn = _starting_point(TrainConfig(dataset=dataset, out=str(tmp_path)), tmp_path, True).ghn
    assert ghn.config.num_classes == classes
    assert distinct_class_rows(ghn, classes) == classes


def test_a_ten_class_ghn_repeats_class_rows_of_a_hundred_class_net():
    # what the fix prevents: the decoder tiles its 10 class rows over the 100-row head
    torch.manual_seed(0)
    assert distinct_class_rows(create_ghn("ghn2"), 100) == 10


def test_a_checkpoint_for_other_classes_is_refused(ghn_ckpt, tmp_path):
    cfg = TrainConfig(dataset="cifar100", out=str(tmp_path / "run"), init=ghn_ckpt)
    with pytest.raises(GhnNasError, match="10 classes, but --dataset cifar100 has 100"):
        _starting_point(cfg, tmp_path / "run", True)
    resumed = tmp_path / "resumed"
    payload = torch.load(ghn_ckpt, weights_only=True)
    save_checkpoint(resumed / "last.pt", {**payload, "train": {"config": {}, "step": 1}, "optimizer": {}})
    with pytest.raises(GhnNasError, match="10 classes"):
        _starting_point(TrainConfig(dataset="cifar100", out=str(resumed)), resumed, True)


def test_validation_nets_have_the_dataset_classes(tmp_path, monkeypatch):
    store = generate_split(SplitSpec("val", 3, seed=5, buckets=tuple(range(64)), **TINY), 3, tmp_path,
                           workers=1, graphs=False, progress=False)
    seen: list[int] = []

    def fake_evaluate_nets(ghn, nets, loader, **kwargs):
        seen.extend(net.num_classes for _, net in nets)
        return EvalResult([name for name, _ in nets], [0.0] * len(nets))

    monkeypatch.setattr(evaluate_mod, "evaluate_nets", fake_evaluate_nets)
    ghn = create_ghn("ghn2", num_classes=100)
    metrics = _validate(ghn, store, None, TrainConfig(dataset="cifar100", eval_nets=2))
    assert metrics["val_nets"] == 2 and seen == [100, 100]


def _run_checkpoint(path: Path, dataset: str, num_classes: int) -> Path:
    torch.manual_seed(0)
    ghn = create_ghn("ghn2", num_classes=num_classes)
    return save_checkpoint(path, {"config": ghn.config.to_dict(), "state_dict": ghn.state_dict(),
                                  "train": {"dataset": dataset, "config": {"dataset": dataset}, "total_steps": 3,
                                            "step": 3, "train_nets": 10},
                                  "metrics": {}})


@pytest.fixture
def fake_evaluation(monkeypatch):
    """Replace image loading and scoring in ghn_core.export; record what they were asked for."""
    calls = {"loader": [], "classes": []}

    def fake_loader(dataset, split, **kwargs):
        calls["loader"].append(dataset)
        return None

    def fake_nets(split, *, n=None, num_classes=10, **kwargs):
        calls["classes"].append(num_classes)
        return [("test/0", None), ("test/1", None)] if split == "test" else [("resnet50", None), ("vit", None)]

    def fake_scores(ghn, nets, loader, **kwargs):
        return EvalResult([name for name, _ in nets], [1.0 + (ghn is None)] * len(nets))

    monkeypatch.setattr(export_mod, "eval_loader", fake_loader)
    monkeypatch.setattr(export_mod, "load_eval_nets", fake_nets)
    monkeypatch.setattr(export_mod, "evaluate_nets", fake_scores)
    return calls


def test_export_of_a_cifar100_run_makes_a_cifar100_card(tmp_path, fake_evaluation):
    ckpt = _run_checkpoint(tmp_path / "last.pt", "cifar100", 100)
    card = export_mod.export(ckpt, tmp_path / "out")
    assert (card.name, card.dataset, card.num_classes) == ("ghn2_cifar100", "cifar100", 100)
    assert fake_evaluation["loader"] == ["cifar100"] and fake_evaluation["classes"] == [100] * 4
    assert card.published == {}   # the paper's numbers are CIFAR-10's
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["MODEL_CARD_cifar100.md", "ghn2_cifar100.json", "ghn2_cifar100.pt"]
    assert json.loads((out / "ghn2_cifar100.json").read_text())["num_classes"] == 100
    text = (out / "MODEL_CARD_cifar100.md").read_text()
    assert "cifar100 classifiers at 32x32, 100 classes" in text and "none published" in text
    assert "5,000 held out" in text


def test_export_of_a_cifar10_run_keeps_the_shipped_names(tmp_path, fake_evaluation):
    card = export_mod.export(_run_checkpoint(tmp_path / "last.pt", "cifar10", 10), tmp_path / "out")
    assert (card.name, card.num_classes) == ("ghn2_cifar10", 10) and fake_evaluation["classes"] == [10] * 4
    assert card.published == export_mod.PUBLISHED["cifar10"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["MODEL_CARD.md", "ghn2_cifar10.json", "ghn2_cifar10.pt"]


def test_export_refuses_a_ghn_whose_classes_do_not_match_its_data(tmp_path, fake_evaluation):
    with pytest.raises(ValueError, match="predicts 10 classes, but it was trained on cifar100"):
        export_mod.export(_run_checkpoint(tmp_path / "last.pt", "cifar100", 10), tmp_path / "out")


def test_a_card_scored_on_one_net_and_the_preset_it_names(tmp_path, fake_evaluation, monkeypatch):
    monkeypatch.setattr(export_mod, "load_eval_nets", lambda split, **kw: [("test/0", None)] if split == "test"
                        else [("resnet50", None), ("vit", None)])
    ckpt = _run_checkpoint(tmp_path / "last.pt", "cifar10", 10)
    export_mod.export(ckpt, tmp_path / "out", test_nets=1)
    text = (tmp_path / "out" / "MODEL_CARD.md").read_text()
    assert "| DeepNets-1M test, first 1 nets | 1.00 % (one net) | 2.00 % (one net) |" in text  # no standard error
    assert "--preset paper" in text  # the run's config holds no preset's values: the paper's recipe
    cpu_small = {"batch_size": 32, "width_scale": 0.5, "max_nodes": 1600, "epochs": 10, "milestones": [7, 9],
                 "eval_nets": 10, "eval_batches": 2, "lr": 1e-3}
    assert export_mod.train_command(cpu_small) == "python -m ghn_core.train --preset cpu-small"
    # what differs from the nearest preset is spelled out; where and how long each run went is not
    run = {**cpu_small, "eval_nets": 0, "train_nets": 100000, "milestones": [5, 8], "out": "runs/x", "max_cpu_minutes": 20}
    assert (export_mod.train_command(run)
            == "python -m ghn_core.train --preset cpu-small --milestones 5 8 --eval-nets 0 --train-nets 100000")
