"""What a search hands the user: architecture files that load in one line, and a report of this run."""
from __future__ import annotations

import json

import optuna
import pytest

import nas
from ghn_core.errors import ArchitectureError
from nas.proxies import PROXIES
from nas.label import SGDRecipe
from nas.report import UNITS, budget_check, top_trials, write_report
from nas.search import main
from nas.space import get_space


def _search(run, ghn_ckpt, cifar_dir) -> optuna.Study:
    """A tiny nb201 search through the command (1 trial, 32 proxy images, no final training) into ``run``."""
    storage = f"sqlite:///{run}/study.db"
    assert main(["--objective", "robustness", "--space", "nb201", "--trials", "1", "--top-k", "1",
                 "--n-images", "32", "--final-epochs", "0", "--ghn", ghn_ckpt, "--data-dir", str(cifar_dir),
                 "--storage", storage, "--device", "cpu", "--out", str(run / "out")]) == 0
    return optuna.load_study(study_name="robustness-nb201", storage=storage)


@pytest.fixture(scope="module")
def searched(tmp_path_factory, ghn_ckpt, cifar_dir):
    run = tmp_path_factory.mktemp("result")
    return run, _search(run, ghn_ckpt, cifar_dir)


def test_the_best_architecture_loads_in_one_line(searched):
    run, study = searched
    best = top_trials(study, 1)[0]
    path = run / "out" / "architectures" / f"rank1_trial{best.number}.json"
    assert path.is_file() and path.with_suffix(".png").is_file()
    record = json.loads(path.read_text())
    assert record["space"] == "nb201" and record["architecture"] == best.user_attrs["architecture"]
    assert record["proxies"] == {"ghn_robustness": best.value}
    model, same = nas.load_architecture(path), get_space("nb201").rebuild(best.user_attrs)
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in same.state_dict().items()}
    assert record["num_params"] == sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in same.parameters())
    report = (run / "out" / "report.md").read_text()
    assert f"architectures/rank1_trial{best.number}.json" in report and "FLOPs (M)" in report
    assert "% of noisy validation images" in report


def test_a_run_without_final_training_shows_no_earlier_table(searched, ghn_ckpt, cifar_dir, capsys):
    run, study = searched
    # An earlier run's final training, as nas.finalize stores it (trial, 1 epoch of 1 batch, 1 test batch).
    t = top_trials(study, 1)[0]
    recipe = {**SGDRecipe(epochs=1, max_batches=1, eval_batches=1).__dict__}
    study.set_user_attr("final", {"recipe": recipe, "init": "random", "seed": 0, "test_images": 256, "num_classes": 10,
                                  "trials": [{"trial": t.number, "proxy_rank": 1, "proxy_values": [t.value],
                                              "clean_acc": 12.5, "noisy_acc": 11.0, "true_rank_clean_acc": 1,
                                              "true_rank_noisy_acc": 1}]})
    report = write_report(study, run / "out", top_k=1).read_text()  # the run that trained it shows it
    assert "## Final training (random init, 1 epoch, at most 1 batch each)" in report
    assert "Rule: an accuracy measured on 256 test images" in report and "from chance" in report
    assert (run / "out" / "proxy_vs_truth.png").is_file()
    capsys.readouterr()
    study = _search(run, ghn_ckpt, cifar_dir)  # the same study again, --final-epochs 0
    assert "final" in study.user_attrs  # the earlier results stay in the storage ...
    report = (run / "out" / "report.md").read_text()
    assert "## Final training" not in report and "No final training in this run" in report  # ... not in this report
    assert not (run / "out" / "proxy_vs_truth.png").exists()
    out = capsys.readouterr().out
    assert f"best architecture (trial {t.number}): " in out and "nas.load_architecture(" in out


def test_a_bad_architecture_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no architecture file at .*missing.json"):
        nas.load_architecture(tmp_path / "missing.json")
    path = tmp_path / "arch.json"
    path.write_text("not json")
    with pytest.raises(ArchitectureError, match="arch.json is not an architecture file: not JSON"):
        nas.load_architecture(path)
    path.write_text(json.dumps({"space": "nb201"}))
    with pytest.raises(ArchitectureError, match=r"arch.json .*missing \['architecture'\]"):
        nas.load_architecture(path)
    path.write_text(json.dumps({"space": "nb202", "architecture": "x"}))
    with pytest.raises(ArchitectureError, match="arch.json: unknown search space 'nb202'.*Did you mean 'nb201'"):
        nas.load_architecture(path)
    path.write_text(json.dumps({"space": "deepnets", "architecture": "{}"}))
    with pytest.raises(ArchitectureError, match="arch.json: the deepnets space cannot build"):
        nas.load_architecture(path)


def test_every_proxy_has_a_unit():
    assert set(UNITS) == set(PROXIES)


def _final(clean: list[float], noisy: list[float], test_images: int) -> dict:
    rows = [{"clean_acc": c, "noisy_acc": n} for c, n in zip(clean, noisy)]
    return {"recipe": {"eval_batches": None}, "trials": rows, "test_images": test_images}


def test_the_report_says_when_the_budget_cannot_separate_candidates():
    # 10 classes: chance 10%, standard error 1.34 points on 500 images.
    assert "from chance" in budget_check(_final([11.0, 9.2], [10.4, 8.0], 500), 10)[-1]
    # Above chance, but 0.5 points apart where two standard errors are ~3.6.
    assert "from each other" in budget_check(_final([40.0, 40.5], [30.0, 35.0], 500), 10)[-1]
    assert "stand out from chance and from each other" in budget_check(_final([40.0, 60.0], [30.0, 45.0], 10_000), 10)[-1]
