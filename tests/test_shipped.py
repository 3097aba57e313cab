"""The checkpoint that ships with the package: it loads, its model card describes it, it predicts."""
from __future__ import annotations

import json

import torch

from ghn_core import load_ghn, shipped_checkpoint
from ghn_core.deepnets import predefined_nets
from ghn_core.model import read_checkpoint
from ghn_core.model.checkpoint import state_hash


def test_shipped_checkpoint_matches_its_model_card():
    path = shipped_checkpoint()
    assert path.stat().st_size < 10 * 2**20  # ships inside the package: under 10 MB
    card = json.loads(path.with_suffix(".json").read_text())
    payload = read_checkpoint(path)
    assert json.loads(json.dumps(payload["card"])) == card  # the JSON beside it is the same record
    ghn = load_ghn()
    assert state_hash(ghn.state_dict()) == card["weights_sha"]
    assert ghn.num_params() == card["ghn_params"] and ghn.config.variant == card["variant"]
    assert card["training"]["steps"] > 0 and "deepnets_test" in card["evaluation"]
    text = (path.parent / "MODEL_CARD.md").read_text()
    assert text.count(card["weights_sha"]) == 1
    if card["training"].get("cpu_time_s"):  # cards since CPU-time budgets say how much CPU time it took
        assert f"{card['training']['cpu_time_s'] / 3600:.1f} CPU-hours" in text


def test_shipped_ghn_predicts_runnable_parameters():
    ghn = load_ghn()
    net = predefined_nets()["resnet50"]
    ghn.predict(net)
    with torch.no_grad():
        out = net(torch.randn(8, 3, 32, 32))
    assert out.shape == (8, 10) and torch.isfinite(out).all()
