"""SGD labels: a tiny budget trains and scores, the JSON-lines file resumes without duplicates."""
from __future__ import annotations

import json

import pytest

import nas.label as label
from ghn_core.nb201 import NB201Network
from nas.label import SGDRecipe, main, train_sgd

TINY = SGDRecipe(epochs=2, max_batches=4, eval_batches=1, batch_size=32, converged_at=0.0)
ARCHS = ["|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|none~0|nor_conv_1x1~1|nor_conv_3x3~2|",
         "|avg_pool_3x3~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|none~1|skip_connect~2|"]


def test_train_sgd_reports_every_label(cifar_dir):
    labels = train_sgd(NB201Network(ARCHS[0]), TINY, data_dir=str(cifar_dir), device="cpu")
    assert 0.0 <= labels["clean_acc"] <= 100.0 and 0.0 <= labels["noisy_acc"] <= 100.0
    assert labels["inference_ms"] > 0 and len(labels["train_acc_curve"]) == 2
    assert labels["epochs_to_converge"] == 1  # converged_at=0: the first epoch counts


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
