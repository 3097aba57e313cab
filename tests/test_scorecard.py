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
    assert (out / "scatter_params.png").is_file() and "| naswot |" in (out / "scorecard.md").read_text()
