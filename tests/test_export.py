"""ghn_core.export with the yardstick: a GHN replaces the shipped one only if it is better beyond the noise."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import ghn_core.yardstick
from ghn_core import export as export_mod
from ghn_core.errors import GhnNasError
from ghn_core.model.checkpoint import state_hash

from test_cli_errors import assert_user_error, run_cli, snapshot
from test_dataset_classes import _run_checkpoint, fake_evaluation  # noqa: F401  (a fixture)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def yardstick_scores(monkeypatch):
    """Make the yardstick return the shipped report with the DeepNets-1M accuracies put in ``scores[0]``."""
    template = json.loads((REPO / "benchmarks" / "yardstick" / "shipped.json").read_text())
    scores = [np.array(template["deepnets"]["ghn"]["accuracies"])]

    def fake_yardstick(ghn, **kwargs):
        report = copy.deepcopy(template)
        report["deepnets"]["ghn"].update(accuracies=scores[0].tolist(), mean=float(scores[0].mean()))
        report["ghn"]["hash"] = state_hash(ghn.state_dict())
        return report

    monkeypatch.setattr(ghn_core.yardstick, "yardstick", fake_yardstick)
    return scores


def _other_weights(path: Path) -> Path:
    """A run checkpoint whose weights differ from ``_run_checkpoint``'s."""
    _run_checkpoint(path, "cifar10", 10)
    payload = torch.load(path, weights_only=False)
    with torch.no_grad():
        next(iter(payload["state_dict"].values())).add_(1.0)
    from ghn_core.model import save_checkpoint

    payload.pop("sha256", None)
    return save_checkpoint(path, {k: v for k, v in payload.items() if k in ("config", "state_dict", "train", "metrics")})


def test_export_replaces_the_shipped_ghn_only_beyond_the_yardsticks_noise(tmp_path, fake_evaluation,
                                                                          yardstick_scores):
    out = tmp_path / "out"
    first = export_mod.export(_run_checkpoint(tmp_path / "a.pt", "cifar10", 10), out, yardstick=True)
    shipped = {p.name: p.read_bytes() for p in out.iterdir()}
    candidate = _other_weights(tmp_path / "b.pt")
    rng = np.random.default_rng(0)
    base = yardstick_scores[0].copy()

    yardstick_scores[0] = base + rng.normal(0, 1, base.shape)  # no better: noise alone
    with pytest.raises(GhnNasError, match=r"not exported: .*paired difference .* not beyond two standard errors"):
        export_mod.export(candidate, out, yardstick=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == shipped  # nothing written

    yardstick_scores[0] = base + 1.0 + rng.normal(0, 1, base.shape)  # a point better on average
    better = export_mod.export(candidate, out, yardstick=True)
    assert better.weights_sha != first.weights_sha
    assert json.loads((out / "ghn2_cifar10.json").read_text())["weights_sha"] == better.weights_sha

    export_mod.export(candidate, out, yardstick=True)  # the same weights again: a re-export, not compared
    yardstick_scores[0] = base - 5.0
    export_mod.export(_run_checkpoint(tmp_path / "a.pt", "cifar10", 10), out, yardstick=True, force=True)
    assert json.loads((out / "ghn2_cifar10.json").read_text())["weights_sha"] == first.weights_sha


def test_check_improves_refuses_a_yardstick_of_other_nets():
    report = {"deepnets": {"ghn": {"names": ["test/0", "test/1"], "accuracies": [30.0, 31.0], "mean": 30.5}}}
    other = copy.deepcopy(report)
    other["deepnets"]["ghn"]["names"] = ["test/7", "test/8"]
    with pytest.raises(GhnNasError, match="other DeepNets-1M nets"):
        export_mod.check_improves(report, other, "shipped.pt")


def test_export_without_the_yardstick_never_replaces_another_ghn(tmp_path, fake_evaluation, yardstick_scores,
                                                                 cifar_dir):
    """Refused before any scoring, through the real command line: one line, exit 2, nothing written."""
    out = tmp_path / "out"
    export_mod.export(_run_checkpoint(tmp_path / "a.pt", "cifar10", 10), out, yardstick=True)
    candidate = _other_weights(tmp_path / "b.pt")
    before = snapshot(out)
    proc = run_cli("ghn_core.export", str(candidate), "--out", str(out), "--no-yardstick", "--device", "cpu",
                   cwd=tmp_path, data_dir=cifar_dir)
    assert_user_error(proc, "holds another GHN", "--force")
    assert snapshot(out) == before
    export_mod.export(candidate, out, force=True)  # what --force is for
    assert snapshot(out) != before
