"""The proxy scorecard end to end on a small NAS-Bench-201 sample."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ghn_core.model import create_ghn, save_checkpoint
from nas.scorecard import main

LABELS = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "labelled.csv"


def test_scorecard_writes_table_json_and_plots(tmp_path, cifar_dir):
    if not LABELS.is_file():
        pytest.fail(f"NAS-Bench-201 labels not found at {LABELS}")
    torch.manual_seed(0)
    ghn = create_ghn("ghn2")
    ckpt = save_checkpoint(tmp_path / "ghn.pt", {"config": ghn.config.to_dict(), "state_dict": ghn.state_dict()})
    out = tmp_path / "sc"
    assert main(["--labels", str(LABELS), "--n", "30", "--proxies", "params", "naswot", "--ghn", str(ckpt),
                 "--data-dir", str(cifar_dir), "--out", str(out)]) == 0
    table = json.loads((out / "scorecard.json").read_text())["table"]
    assert set(table) == {"params", "naswot", "svr(embedding)", "ridge(embedding+log params)"}
    # #params ranks NB201 accuracy well (rho 0.74 over the whole space); a 30-net sample keeps that sign.
    assert table["params"]["spearman"] > 0.3 and table["params"]["n"] >= 25
    # Proxies are also scored on the half the regressors are scored on: the same nets.
    n_all, held = table["params"]["n"], table["params"]["held_out"]
    assert held["n"] == table["svr(embedding)"]["n"] == table["naswot"]["held_out"]["n"] == n_all - n_all // 2
    assert table["svr(embedding)"]["scored_on"] == "held-out half" and table["params"]["scored_on"] == "all"
    assert (out / "scatter_params.png").is_file() and "| naswot |" in (out / "scorecard.md").read_text()


def test_scorecard_reads_nas_label_records_of_deepnets(tmp_path, cifar_dir, ghn_ckpt):
    from ghn_core.deepnets import SPLITS
    from ghn_core.deepnets.generate import generate_chunk
    from nas.label import build_architecture

    archs = [rec.arch.to_json() for rec in generate_chunk(SPLITS["search"], 0, 6)]
    sizes = [sum(p.numel() for p in build_architecture("deepnets", a).parameters()) for a in archs]
    labels = tmp_path / "labels.jsonl"
    # A label that is a monotone function of size: #params must rank it exactly (rho = tau = 1).
    labels.write_text("".join(json.dumps({"arch": a, "space": "deepnets", "clean_acc": 50 + s / 1e6,
                                          "noisy_acc": 0.0, "recipe": {"epochs": 1, "max_batches": 2}}) + "\n"
                              for a, s in zip(archs, sizes)))
    out = tmp_path / "sc"
    assert main(["--labels", str(labels), "--proxies", "params", "--ghn", ghn_ckpt, "--data-dir", str(cifar_dir),
                 "--out", str(out)]) == 0
    table = json.loads((out / "scorecard.json").read_text())["table"]
    assert set(table) == {"params"}  # too few nets to fit regressors
    assert table["params"]["spearman"] == pytest.approx(1.0) and table["params"]["kendall"] == pytest.approx(1.0)
    assert table["params"]["n"] == 6
    assert "deepnets clean_acc (%), SGD 1 epoch(s) x 2 batches" in (out / "scorecard.md").read_text()
