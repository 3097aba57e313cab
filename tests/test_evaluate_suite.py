"""``python -m ghn_core.evaluate --suite yardstick``: the suite function on tiny sizes with an untrained
GHN (structure, ranges, the random-init baseline on the same nets and images), the NB201 cell
sample, and bad input as one line with exit status 2."""
from __future__ import annotations

import csv
import itertools
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ghn_core.nb201 import NB201_OPS, cell_key

REPO = Path(__file__).resolve().parents[1]


def tiny_csv(path: Path, n_cells: int = 16) -> tuple[Path, int]:
    """A labelled NB201 CSV of ``n_cells`` distinct cells with a graph, plus a second string of the
    first cell (isomorphic: it has an unused edge into a dead node) and a cell with no path (all none).
    Returns the path and the row of the duplicate string."""
    rows, keys = [], set()
    for a, b, c in itertools.product(NB201_OPS, repeat=3):
        arch = f"|{a}~0|+|{b}~0|{c}~1|+|nor_conv_3x3~0|none~1|skip_connect~2|"
        if cell_key(arch) not in keys:
            keys.add(cell_key(arch))
            rows.append(arch)
        if len(rows) == n_cells:
            break
    first = rows[0]  # |none~0|+|none~0|none~1|+|conv~0|none~1|skip~2|: node 1 is dead, so 1->2 adds nothing
    duplicate = first.replace("none~1|+|nor", "avg_pool_3x3~1|+|nor")
    assert duplicate != first and cell_key(duplicate) == cell_key(first)
    zero = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    archs = rows + [duplicate, zero]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "cifar10_test_acc_200ep", "cifar100_test_acc_200ep", "imagenet16_120_test_acc_200ep"])
        for i, arch in enumerate(archs):
            w.writerow([arch, 50.0 + i, 20.0 + i, 10.0 + i])
    return path, len(rows)


def test_nb201_sample_is_distinct_cells_with_a_graph_in_a_seeded_order(tmp_path):
    from ghn_core.yardstick import nb201_sample

    path, n = tiny_csv(tmp_path / "nb201.csv")
    archs, labels = nb201_sample(path, seed=0)
    assert len(archs) == n  # the isomorphic string and the no-path cell are left out
    assert len({cell_key(a) for a in archs}) == n and "zero" not in {cell_key(a) for a in archs}
    assert sorted(labels.tolist()) == [50.0 + i for i in range(n)]  # each cell labelled by its first string
    again, _ = nb201_sample(path, seed=0)
    other, _ = nb201_sample(path, seed=1)
    assert again == archs and sorted(other) == sorted(archs) and other != archs


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory, cifar_dir):
    """The suite on tiny sizes: 2 DeepNets-1M test nets, 2 classifiers, 4 + 15 NB201 cells, 1 batch."""
    from ghn_core.deepnets import generate_split
    from ghn_core.model import create_ghn
    from ghn_core.yardstick import YardstickConfig, yardstick

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("yardstick")
    deepnets_dir = tmp / "deepnets"
    generate_split("test", 2, deepnets_dir, workers=1, graphs=False, progress=False)
    csv_path, _ = tiny_csv(tmp / "nb201.csv")
    torch.manual_seed(0)
    ghn = create_ghn("ghn2", hid=8)
    cfg = YardstickConfig(deepnets_nets=2, deepnets_batches=1, torchvision=("resnet18", "vit_p4_6x128"),
                          torchvision_batches=1, nb201_acc_cells=4, nb201_acc_batches=1, nb201_cv_cells=15)
    report = yardstick(ghn, config=cfg, data_dir=str(cifar_dir), device="cpu", nb201_csv=csv_path,
                       deepnets_dir=deepnets_dir, checkpoint="tiny", progress=False)
    return report, cfg, deepnets_dir


def test_yardstick_report_structure_and_ranges(tiny_report):
    from dataclasses import asdict

    report, cfg, _ = tiny_report
    assert report["suite"] == "yardstick" and report["ghn"]["checkpoint"] == "tiny"
    assert len(report["ghn"]["hash"]) == 16
    assert report["settings"] | asdict(cfg) == report["settings"]  # every size and seed recorded
    for key, n, batches in (("deepnets", 2, 1), ("torchvision", 2, 1)):
        part = report[key]
        assert part["images_per_net"] == 64 * batches
        for side in ("ghn", "random"):
            accs = part[side]["accuracies"]
            assert len(accs) == n and all(0.0 <= a <= 100.0 for a in accs)
            assert math.isclose(part[side]["mean"], sum(accs) / n)
            assert math.isfinite(part[side]["stderr"]) and part[side]["stderr"] >= 0
        assert part["wall_s"] > 0
    assert report["torchvision"]["ghn"]["names"] == ["resnet18", "vit_p4_6x128"]
    acc = report["nb201_ghn_accuracy"]
    assert acc["n"] == 4 and len(acc["labels"]) == 4 and len(acc["ghn"]["accuracies"]) == 4
    cv = report["nb201_embedding_cv"]
    assert cv["n"] == 15 and cv["folds"] == 5 and len(cv["fold_kendall"]) == 5
    for value in (cv["kendall"], cv["spearman"], cv["fold_kendall_mean"]):
        assert -1.0 <= value <= 1.0
    assert -1.0 <= acc["kendall"] <= 1.0 or math.isnan(acc["kendall"])  # an untrained GHN may tie every cell
    assert report["wall_s"] >= sum(report[k]["wall_s"] for k in ("deepnets", "torchvision", "nb201_ghn_accuracy",
                                                                  "nb201_embedding_cv"))


def test_yardstick_labels_follow_their_cells(tiny_report, tmp_path):
    from ghn_core.nb201 import load_labelled

    report, _, _ = tiny_report
    label = {r.arch: r.cifar10 for r in load_labelled(tiny_csv(tmp_path / "again.csv")[0])}
    acc = report["nb201_ghn_accuracy"]
    assert acc["labels"] == [label[a] for a in acc["ghn"]["names"]]


def test_random_init_baseline_is_the_same_nets_and_images_untouched(tiny_report, cifar_dir):
    from ghn_core.evaluate import eval_loader, evaluate_nets, load_eval_nets

    report, cfg, deepnets_dir = tiny_report
    for key in ("deepnets", "torchvision"):
        assert report[key]["random"]["names"] == report[key]["ghn"]["names"]
    # scored again here, without the suite: the same freshly initialised nets on the same images
    loader = eval_loader("cifar10", "test", data_dir=str(cifar_dir), device="cpu", order_seed=cfg.order_seed)
    nets = load_eval_nets("test", n=2, deepnets_dir=str(deepnets_dir), seed_init=cfg.init_seed)
    again = evaluate_nets(None, nets, loader, max_batches=1, progress=False)
    assert again.names == report["deepnets"]["random"]["names"]
    assert again.accuracies == report["deepnets"]["random"]["accuracies"]


def test_predictor_is_the_one_the_search_uses():
    from nas.predictors import CV_FOLDS, DEFAULT_PREDICTOR

    from ghn_core.yardstick import YardstickConfig

    assert YardstickConfig().predictor == DEFAULT_PREDICTOR and YardstickConfig().cv_folds == CV_FOLDS


def test_format_table_without_nb201_says_skipped(tiny_report):
    from ghn_core.yardstick import format_table, json_ready

    report, _, _ = tiny_report
    text = format_table(report)
    assert "DeepNets-1M test (first 2)" in text and "vit_p4_6x128" in text and "svr-rank" in text
    skipped = {**report, "nb201_ghn_accuracy": {"skipped": "no CSV"}, "nb201_embedding_cv": {"skipped": "no CSV"}}
    assert "skipped: no CSV" in format_table(skipped)
    assert json_ready({"a": [float("nan"), 1.0]}) == {"a": [None, 1.0]}


def one_error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


def test_unknown_suite_is_one_line_and_exit_2(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "ghn_core.evaluate", "--suite", "nope", "--device", "cpu"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "unknown suite 'nope'; known: yardstick" in one_error_line(proc.stderr)
    assert list(tmp_path.iterdir()) == []  # nothing generated or written


@pytest.mark.parametrize("args, needle", [
    (["--suite", "yardstick", "--nb201-csv", "missing.csv"], "no NAS-Bench-201 labels at missing.csv"),
    (["--suite", "yardstick", "--split", "test"], "drop --split"),
    (["--suite", "yardstick", "--n", "3", "--batches", "1"], "drop --n, --batches"),
])
def test_bad_suite_input_is_one_line_and_exit_2(args, needle, capsys, tmp_path, monkeypatch):
    from ghn_core.evaluate import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--device", "cpu"])
    assert exit_.value.code == 2
    assert needle in one_error_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


def test_the_model_card_renders_a_report_read_back_from_json(tiny_report):
    import json

    from ghn_core.export import _yardstick_section
    from ghn_core.yardstick import format_table, json_ready

    report = tiny_report[0]
    back = json.loads(json.dumps(json_ready(report)))  # as the card record stores it
    section = _yardstick_section(back)
    assert section.startswith("\n## Yardstick") and format_table(back, header=False) in section
    assert report["ghn"]["hash"] not in section  # the card names its weights once, in its own header
    assert _yardstick_section({}) == ""  # exported without the yardstick: no section
