"""SGD labels: a tiny budget trains and scores, the JSON-lines file resumes without duplicates."""
from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import pytest
import torch

import nas.label as label
from ghn_core.data import BatchLoader, load_split
from ghn_core.deepnets import sample_architecture
from ghn_core.nb201 import NB201Network
from nas.label import SGDRecipe, build_architecture, main, read_labelled, train_sgd

TINY = SGDRecipe(epochs=2, max_batches=4, eval_batches=1, batch_size=32, converged_at=0.0)
_DEEPNETS = sample_architecture(random.Random(0)).to_json()
ARCHS = ["|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|none~0|nor_conv_1x1~1|nor_conv_3x3~2|",
         "|avg_pool_3x3~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|none~1|skip_connect~2|"]


def test_train_sgd_reports_every_label(cifar_dir):
    model = NB201Network(ARCHS[0])
    labels = train_sgd(model, TINY, data_dir=str(cifar_dir), device="cpu")
    # The clean label is the trained model's accuracy on the recipe's test batch, recomputed here.
    test = BatchLoader(load_split("cifar10", "test", data_dir=str(cifar_dir)), 256, shuffle=True, augment=False,
                       device="cpu", seed=1111)
    x, y = next(iter(test))
    with torch.no_grad():
        assert labels["clean_acc"] == pytest.approx(100.0 * (model.eval()(x).argmax(1) == y).float().mean().item())
    assert labels["inference_ms"] > 0 and len(labels["train_acc_curve"]) == 2
    assert labels["epochs_to_converge"] == 1  # converged_at=0: the first epoch counts
    assert labels["train_acc_mean"] == pytest.approx(sum(labels["train_acc_curve"]) / 2)
    never = train_sgd(NB201Network(ARCHS[0]), dataclasses.replace(TINY, converged_at=100.5),
                      data_dir=str(cifar_dir), device="cpu")
    assert never["epochs_to_converge"] is None  # no training accuracy reaches 100.5%


def test_recipe_resolution_width_and_schedule(cifar_dir):
    model = build_architecture("nb201", ARCHS[0], width_scale=0.5)
    assert model.stem[0].out_channels == 8
    seen = []
    model.stem.register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape[-2:])))
    train_sgd(model, dataclasses.replace(TINY, resolution=16, schedule="onecycle"), data_dir=str(cifar_dir),
              device="cpu")
    assert seen and set(seen) == {(16, 16)}  # training, test and timing images alike
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        SGDRecipe(schedule="step")
    assert build_architecture("deepnets", _DEEPNETS, width_scale=0.5).stem[0].out_channels == \
        build_architecture("deepnets", _DEEPNETS).stem[0].out_channels // 2


def _record(arch: str, **changes) -> str:
    record = {"arch": arch, "space": "nb201", "clean_acc": 50.0, "noisy_acc": 40.0, "inference_ms": 1.0,
              "epochs_to_converge": None, "recipe": dataclasses.asdict(TINY), "seed": 0}
    return json.dumps({k: v for k, v in {**record, **changes}.items() if v != "DROP"})


def test_read_labelled_checks_the_whole_file(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(_record(a) for a in ARCHS) + "\n")
    labelled = read_labelled(good)
    assert labelled.space == "nb201" and labelled.archs == ARCHS and labelled.recipe == dataclasses.asdict(TINY)
    assert labelled.properties["clean_acc"].tolist() == [50.0, 50.0]
    assert np.isnan(labelled.properties["epochs_to_converge"]).all()  # never converged: no value
    older = tmp_path / "older.jsonl"  # written before train_acc_mean was recorded: derived from the curve
    older.write_text(_record(ARCHS[0], train_acc_curve=[20.0, 30.0, 40.0]) + "\n")
    assert read_labelled(older).properties["train_acc_mean"].tolist() == [30.0]
    cases = {r"missing field\(s\) noisy_acc": [_record(ARCHS[0]), _record(ARCHS[1], noisy_acc="DROP")],
             "line 1: node 1 .*'conv_9x9~0'": [_record("|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|")],
             "mixes 2 recipes": [_record(ARCHS[0]), _record(ARCHS[1], recipe={"epochs": 50})],
             "line 2: not JSON": [_record(ARCHS[0]), "{"]}
    for message, lines in cases.items():
        bad = tmp_path / "bad.jsonl"
        bad.write_text("\n".join(lines) + "\n")
        with pytest.raises(ValueError, match=message):
            read_labelled(bad)


def test_label_command_appends_and_resumes(tmp_path, cifar_dir, monkeypatch):
    monkeypatch.setitem(label.RECIPES, "tiny", TINY)
    archs = tmp_path / "archs.txt"
    archs.write_text("\n".join(ARCHS) + "\n")
    out = tmp_path / "labels.jsonl"
    args = ["--space", "nb201", "--archs", str(archs), "--out", str(out), "--recipe", "tiny",
            "--data-dir", str(cifar_dir), "--device", "cpu"]
    assert main(args + ["--limit", "1"]) == 0
    assert main(args + ["--epochs", "1"]) == 0  # labels only the second one, with one epoch
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["arch"] for r in records] == ARCHS
    assert [r["recipe"]["epochs"] for r in records] == [2, 1] and all(r["seed"] == 0 for r in records)
    with pytest.raises(SystemExit):
        main(args[:-4] + ["--recipe", "papr"])


def test_noisy_labels_add_their_noise_at_the_resolution_the_net_sees():
    # Noise added before a 32 -> 16 px resize would be averaged down to about half its sd.
    from ghn_core.data import get_dataset_info, normalize
    from nas.sgd import _noisy_at

    info = get_dataset_info("cifar10")
    gray = normalize(torch.full((64, 3, 32, 32), 0.5), info)
    x = _noisy_at(16, info, torch.device("cpu"))(gray)
    std = torch.tensor(info.std)[:, None, None]
    mean = torch.tensor(info.mean)[:, None, None]
    pixels = x * std + mean
    assert x.shape == (64, 3, 16, 16)
    assert pixels.std().item() == pytest.approx(info.noise_sigma, rel=0.05)
    assert pixels.mean().item() == pytest.approx(0.5, abs=0.01)


def test_sample_architectures_is_seeded_distinct_and_valid():
    first = label.sample_architectures("deepnets", 5, seed=3)
    assert first == label.sample_architectures("deepnets", 5, seed=3) and len(set(first)) == 5
    assert first != label.sample_architectures("deepnets", 5, seed=4)
    for n, arch in enumerate(first + label.sample_architectures("nb201", 5, seed=3)):
        label.validate_architecture("deepnets" if arch.startswith("{") else "nb201", arch, where=f"draw {n}")
