"""nas.label and nas.predictors as a user meets them: bad labelled files, a property no predictor has, and
predictors of another GHN each print one error line naming the problem, exit 2, and change nothing saved."""
from __future__ import annotations

import json
from pathlib import Path

from test_cli_errors import assert_usage_error, assert_user_error, run_cli, snapshot

CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|none~0|nor_conv_1x1~1|nor_conv_3x3~2|"
RECORD = {"arch": CELL, "space": "nb201", "clean_acc": 50.0, "noisy_acc": 40.0, "recipe": {"epochs": 1}}


def test_label_checks_every_line_before_training(tmp_path):
    (tmp_path / "archs.txt").write_text(f"{CELL}\n|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|\n")
    before = snapshot(tmp_path)
    proc = run_cli("nas.label", "--space", "nb201", "--archs", "archs.txt", "--out", "labels.jsonl", cwd=tmp_path)
    assert_user_error(proc, "archs.txt, line 2", "conv_9x9")
    assert snapshot(tmp_path) == before  # no labels file: the first line was not trained


def test_predictors_refuse_bad_labels_other_properties_and_other_ghns(tmp_path, ghn_ckpt):
    (tmp_path / "missing.jsonl").write_text(json.dumps({k: v for k, v in RECORD.items() if k != "noisy_acc"}) + "\n")
    (tmp_path / "deepnets.jsonl").write_text(json.dumps(RECORD) + "\n")
    (tmp_path / "out.joblib").write_bytes(b"an earlier fit")
    before = snapshot(tmp_path)
    proc = run_cli("nas.predictors", "fit", "--labels", "missing.jsonl", "--out", "out.joblib", cwd=tmp_path)
    assert_user_error(proc, "missing.jsonl, line 1", "missing field(s) noisy_acc")
    proc = run_cli("nas.predictors", "score", "--labels", "deepnets.jsonl", cwd=tmp_path)
    assert_user_error(proc, "no predictor for the properties of deepnets.jsonl", "nb201:cifar10_test_acc_200ep")
    assert snapshot(tmp_path) == before  # the earlier fit is still there, byte for byte
    # Predictors fitted on the shipped GHN's embeddings, read with another GHN's.
    proc = run_cli("nas.predictors", "score", "--labels", "deepnets.jsonl", "--ghn", ghn_ckpt, "--predictors",
                   str(_shipped_predictors()), cwd=tmp_path)
    assert_user_error(proc, "fitted on embeddings of GHN", "but the GHN in use is")
    assert snapshot(tmp_path) == before


def _shipped_predictors() -> Path:
    from nas.predictors import predictors_path

    return predictors_path()



def test_unknown_feature_kind_and_empty_sample_are_refused(tmp_path):
    """Options added with feature kinds and pool samples: argparse's usage and one error line, exit 2,
    nothing written."""
    proc = run_cli("nas.predictors", "fit", "--labels", "x.csv", "--features", "pixels", "--out", "p.joblib", cwd=tmp_path)
    assert_usage_error(proc, "argument --features: invalid choice: 'pixels'")
    proc = run_cli("nas.benchmark", "--pool", "x.csv", "--sample", "0", "--out", "out", cwd=tmp_path)
    assert_usage_error(proc, "argument --sample: expected a positive integer, got 0")
    assert list(tmp_path.iterdir()) == []
