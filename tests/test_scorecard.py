"""The proxy and predictor scorecard: 5-fold cross-validation by cell, end to end on small labelled sets."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from ghn_core.nb201 import cell_key
from nas import scorecard
from nas.scorecard import cv_folds, main, out_of_fold

LABELS = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "labelled.csv"


def nb201_csv(path: Path, n_cells: int) -> tuple[Path, str, str]:
    """A CSV of ``n_cells`` distinct NB201 cells spread over 50-95% accuracy (so every one has a graph)
    whose first cell comes twice, as two isomorphic strings; returns it, the first string and its twin."""
    if not LABELS.is_file():
        pytest.fail(f"NAS-Bench-201 labels not found at {LABELS}")
    with LABELS.open() as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, [r for r in reader if float(r["cifar10_test_acc_200ep"]) > 50]
    by_cell: dict[str, list[dict]] = {}
    for r in rows:
        by_cell.setdefault(cell_key(r["arch"]), []).append(r)
    twins = next(strings for strings in by_cell.values() if len(strings) >= 2)
    singles = sorted((strings[0] for strings in by_cell.values() if strings is not twins),
                     key=lambda r: float(r["cifar10_test_acc_200ep"]))
    singles = [singles[i] for i in np.linspace(0, len(singles) - 1, n_cells - 1).astype(int)]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, header)
        writer.writeheader()
        writer.writerows([twins[0], *singles, twins[1]])
    return path, twins[0]["arch"], twins[1]["arch"]


def test_nb201_scorecard_cross_validates_by_cell(tmp_path, cifar_dir, ghn_ckpt, monkeypatch):
    monkeypatch.setenv("GHN_NAS_CACHE", str(tmp_path / "cache"))  # proxy values computed here, not read
    labels, first, twin = nb201_csv(tmp_path / "labels.csv", 15)
    assert first != twin and cell_key(first) == cell_key(twin)
    out = tmp_path / "sc"
    assert main(["--labels", str(labels), "--proxies", "params", "naswot", "--ghn", ghn_ckpt,
                 "--data-dir", str(cifar_dir), "--out", str(out)]) == 0
    record = json.loads((out / "scorecard.json").read_text())
    assert record["target"] == "cifar10_test_acc_200ep"
    # The two strings of one cell are one net: the first is kept, the twin is in no fold.
    archs = [net["arch"] for net in record["nets"]]
    assert len(archs) == 15 and first in archs and twin not in archs
    assert len({cell_key(a) for a in archs}) == 15
    folds = [net["fold"] for net in record["nets"]]
    assert sorted(set(folds)) == [0, 1, 2, 3, 4] and all(folds.count(k) == 3 for k in range(5))
    table = record["table"]
    assert {n: row["kind"] for n, row in table.items()} == {
        "params": "proxy", "naswot": "proxy", "svr": "predictor", "svr-rank": "predictor",
        "ridge+features": "predictor"}
    for name, row in table.items():
        assert row["n"] == 15 and np.isfinite(row["kendall"]) and np.isfinite(row["spearman"])
        assert len(row["fold_kendall"]) == 5
        assert row["fold_kendall_mean"] == pytest.approx(np.mean(row["fold_kendall"]))
        assert all(net[name] is not None for net in record["nets"])  # every net has an out-of-fold prediction
    # #params ranks NB201 accuracy well (rho 0.74 over the whole space); 15 cells spread over it keep that sign.
    assert table["params"]["spearman"] > 0.3
    md = (out / "scorecard.md").read_text()
    assert "| svr-rank (out-of-fold) |" in md and "| naswot |" in md
    assert "5-fold cross-validation by cell" in md
    assert (out / "scatter_params.png").is_file() and (out / "scatter_ridge+features.png").is_file()


def test_out_of_fold_never_predicts_a_net_from_a_fit_on_it(monkeypatch):
    class Memory:
        """A fake regressor that predicts 1 for a row it was fitted on, 0 otherwise."""

        def __init__(self, X):
            self.seen = {tuple(x) for x in X}

        def predict(self, X):
            return np.array([float(tuple(x) in self.seen) for x in X])

    monkeypatch.setattr(scorecard, "fit_predictor", lambda name, X, y, seed: Memory(X))
    X = np.arange(40, dtype=float).reshape(20, 2)
    fold = cv_folds(20, seed=0)
    assert (out_of_fold("svr", X, np.zeros(20), fold) == 0).all()
    assert np.bincount(fold).tolist() == [4] * 5


def test_folds_need_enough_nets_to_fit():
    assert cv_folds(12, seed=0) is None  # its smallest training fold would hold 9 < MIN_FIT nets
    assert np.bincount(cv_folds(13, seed=0)).tolist() == [3, 3, 3, 2, 2]
    assert (cv_folds(30, seed=1) == cv_folds(30, seed=1)).all() and (cv_folds(30, seed=1) != cv_folds(30, seed=2)).any()


@pytest.mark.parametrize("flag, value, message", [
    ("--target", "noisy_acc", "has no 'noisy_acc' labels; it has cifar10_test_acc_200ep"),
    ("--predictors", "gp", "unknown scorecard predictor 'gp'; known: svr, svr-rank, ridge+features")])
def test_unknown_target_or_predictor_is_one_line(tmp_path, capsys, flag, value, message):
    labels, _, _ = nb201_csv(tmp_path / "labels.csv", 3)
    with pytest.raises(SystemExit) as exit_info:
        main(["--labels", str(labels), flag, value, "--out", str(tmp_path / "sc")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "sc").exists()


def test_scorecard_reads_nas_label_records_of_deepnets(tmp_path, cifar_dir, ghn_ckpt, monkeypatch):
    monkeypatch.setenv("GHN_NAS_CACHE", str(tmp_path / "cache"))
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
    record = json.loads((out / "scorecard.json").read_text())
    assert record["target"] == "clean_acc" and record["cv"] is None
    table = record["table"]
    assert set(table) == {"params"}  # too few nets to cross-validate predictors
    assert table["params"]["spearman"] == pytest.approx(1.0) and table["params"]["kendall"] == pytest.approx(1.0)
    assert table["params"]["n"] == 6 and table["params"]["fold_kendall"] == []
    assert "deepnets clean_acc (SGD 1 epoch(s) x 2 batches): 6 architectures" in (out / "scorecard.md").read_text()
