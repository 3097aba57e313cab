"""nas.search end to end on tiny budgets: every objective, resume, and bad inputs."""
from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from ghn_core.errors import CheckpointError, GhnNasError
from nas.report import top_trials
from nas.search import SearchConfig, main, make_sampler, run_search


def _cfg(tmp_path, ghn_ckpt, cifar_dir, **kw) -> SearchConfig:
    base = dict(trials=2, ghn=ghn_ckpt, data_dir=str(cifar_dir), n_images=64, device="cpu",
                storage=f"sqlite:///{tmp_path}/study.db")
    return SearchConfig(**{**base, **kw})


@pytest.mark.parametrize("objectives", [["accuracy"], ["robustness"], ["trainability"], ["efficiency"],
                                        ["robustness", "efficiency"]])
def test_each_objective_end_to_end(tmp_path, ghn_ckpt, cifar_dir, objectives):
    study = run_search(_cfg(tmp_path, ghn_ckpt, cifar_dir, objective=objectives, space="nb201"), progress=False)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2 and len(study.directions) == len(study.user_attrs["proxies"])
    for t in done:
        assert "architecture" in t.user_attrs
        assert all(f"proxy_{p}" in t.user_attrs for p in study.user_attrs["proxies"])
    assert top_trials(study, 1)[0].number in {t.number for t in study.best_trials}  # a best trial comes first
    assert study.user_attrs["objective"] == objectives and study.user_attrs["space"] == "nb201"
    assert study.user_attrs["sampler"] == "auto"


def test_objectives_give_way_to_the_shipped_predictors_and_never_fall_back():
    from ghn_core.errors import GhnNasError
    from nas.objectives import resolve_objectives

    both = ["robustness", "efficiency"]
    # no predictors file (a user's own GHN): the raw GHN proxies
    assert resolve_objectives(both, space="deepnets")[0] == ["ghn_robustness", "ghn_accuracy", "latency_b1"]
    shipped = {("deepnets", "noisy_acc"), ("deepnets", "clean_acc"), ("nb201", "cifar10_test_acc_200ep"),
               ("nb201", "cifar10_noisy_acc_200ep")}
    assert resolve_objectives(both, space="deepnets", shipped=shipped) == (
        ["predicted_noisy_acc", "predicted_clean_acc", "latency_b1"], ["maximize", "maximize", "minimize"])
    assert resolve_objectives(["accuracy"], space="nb201", shipped=shipped)[0] == ["predicted_cifar10_test_acc_200ep"]
    assert resolve_objectives(["robustness"], space="nb201", shipped=shipped)[0] == ["predicted_cifar10_noisy_acc_200ep"]
    assert resolve_objectives(["ghn_robustness"], space="deepnets", shipped=shipped)[0] == ["ghn_robustness"]
    assert resolve_objectives(["trainability"], regress=True, shipped=shipped)[0] == ["predicted_train_acc_mean"]
    # a predictors file without the one an objective needs: refused, naming it and the raw proxy
    with pytest.raises(GhnNasError, match="noisy_acc predictor, which p.joblib does not have.*--objective ghn_robustness"):
        resolve_objectives(["robustness"], space="deepnets", shipped=shipped - {("deepnets", "noisy_acc")},
                           shipped_path="p.joblib")
    with pytest.raises(GhnNasError, match="cifar10_noisy_acc_200ep predictor"):
        resolve_objectives(["robustness"], space="nb201", shipped={("nb201", "cifar10_test_acc_200ep")})


def _study(directions: list[str], values: list) -> optuna.Study:
    """An in-memory study with one COMPLETE trial per value, then a FAIL and a PRUNED trial."""
    study = optuna.create_study(directions=directions)
    for v in values:
        study.add_trial(optuna.trial.create_trial(values=list(v) if isinstance(v, tuple) else [v]))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED))
    return study


def test_top_trials_ranks_by_direction():
    values = [0.3, 0.9, 0.1, 0.5]
    assert [t.number for t in top_trials(_study(["maximize"], values), 3)] == [1, 3, 0]
    assert [t.number for t in top_trials(_study(["minimize"], values), 3)] == [2, 0, 3]
    assert [t.number for t in top_trials(_study(["maximize"], values), 10)] == [1, 3, 0, 2]  # complete trials only
    assert top_trials(_study(["minimize"], values), 0) == []
    # Several objectives: the Pareto front first, each part by the first objective's direction.
    # (max acc, min size): front = trials 0 (0.9, 5), 1 (0.5, 1), 3 (0.7, 3); trial 2 (0.8, 9) is dominated by 0.
    study = _study(["maximize", "minimize"], [(0.9, 5.0), (0.5, 1.0), (0.8, 9.0), (0.7, 3.0)])
    assert [t.number for t in top_trials(study, 4)] == [0, 3, 1, 2]
    study = _study(["minimize", "maximize"], [(5.0, 0.9), (1.0, 0.5), (9.0, 0.8), (3.0, 0.7)])
    assert [t.number for t in top_trials(study, 4)] == [1, 3, 0, 2]


def test_random_sampler_baseline(tmp_path, ghn_ckpt, cifar_dir):
    study = run_search(_cfg(tmp_path, ghn_ckpt, cifar_dir, space="nb201", sampler="random"), progress=False)
    assert study.user_attrs["sampler"] == "random" and len(study.trials) >= 2
    assert isinstance(make_sampler("random", 0, multi_objective=False), optuna.samplers.RandomSampler)
    assert isinstance(make_sampler("auto", 0, multi_objective=True), optuna.samplers.NSGAIISampler)


def test_rerun_continues_the_study_without_replaying_it(tmp_path, ghn_ckpt, cifar_dir):
    run_search(_cfg(tmp_path, ghn_ckpt, cifar_dir, trials=3, space="nb201"), progress=False)
    study = run_search(_cfg(tmp_path, ghn_ckpt, cifar_dir, trials=6, space="nb201"), progress=False)
    archs = [t.user_attrs["architecture"] for t in study.trials]
    assert len(archs) == 6
    assert archs[3:] != archs[:3]  # the continued run draws new architectures
    # Another space gets its own study by default; forcing the same name is refused.
    with pytest.raises(GhnNasError, match="was run with space='nb201'"):
        run_search(_cfg(tmp_path, ghn_ckpt, cifar_dir, trials=7, space="deepnets", study_name=study.study_name),
                   progress=False)


def test_bad_inputs_are_clear_errors(tmp_path, ghn_ckpt, cifar_dir, capsys):
    with pytest.raises(ValueError, match="unknown objective 'robustnes'.*Did you mean 'robustness'"):
        run_search(_cfg(tmp_path, ghn_ckpt, cifar_dir, objective=["robustnes"]), progress=False)
    with pytest.raises(ValueError, match="unknown search space 'nb202'.*Did you mean 'nb201'"):
        run_search(_cfg(tmp_path, ghn_ckpt, cifar_dir, space="nb202"), progress=False)
    with pytest.raises(ValueError, match="unknown sampler 'grid'"):
        run_search(_cfg(tmp_path, ghn_ckpt, cifar_dir, sampler="grid"), progress=False)
    with pytest.raises(GhnNasError, match="cannot open the study storage"):
        run_search(_cfg(tmp_path, ghn_ckpt, cifar_dir, storage="postgresql://nobody@127.0.0.1:1/none"), progress=False)
    with pytest.raises(CheckpointError, match="no GHN checkpoint"):
        run_search(_cfg(tmp_path, str(tmp_path / "missing.pt"), cifar_dir), progress=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["--objective", "speed", "--ghn", ghn_ckpt, "--storage", f"sqlite:///{tmp_path}/s.db"])
    assert exit_info.value.code == 2 and "unknown objective 'speed'" in capsys.readouterr().err


def test_main_job_trains_the_top_k_and_writes_the_report(tmp_path, ghn_ckpt, cifar_dir, capsys):
    storage = f"sqlite:///{tmp_path}/main.db"
    assert main(["--objective", "efficiency", "--space", "nb201", "--trials", "4",
                 "--top-k", "2", "--final-epochs", "1", "--final-batches", "2", "--final-eval-batches", "2",
                 "--init", "ghn", "--n-images", "64",
                 "--ghn", ghn_ckpt, "--data-dir", str(cifar_dir), "--storage", storage, "--device", "cpu",
                 "--out", str(tmp_path / "run")]) == 0
    study = optuna.load_study(study_name="efficiency-nb201", storage=storage)
    final = study.user_attrs["final"]
    assert final["init"] == "ghn" and [r["proxy_rank"] for r in final["trials"]] == [1, 2]
    assert sorted(r["true_rank_clean_acc"] for r in final["trials"]) in ([1, 2], [1, 1])
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Final training (ghn init" in report and (tmp_path / "run" / "pareto.png").is_file()
    rows = (tmp_path / "run" / "trials.csv").read_text().splitlines()
    assert rows[0].startswith("number,state,ghn_accuracy,latency_b1,proxy_ghn_accuracy,proxy_latency_b1")
    assert len(rows) == 1 + len(study.trials)
    assert "report:" in capsys.readouterr().out


def test_a_net_whose_output_ignores_its_input_is_pruned_and_replaced(tmp_path, ghn_ckpt, cifar_dir):
    cfg = _cfg(tmp_path, ghn_ckpt, cifar_dir, space="nb201", trials=1, study_name="dead-cell")
    study = optuna.create_study(study_name=cfg.study_name, storage=cfg.storage, direction="maximize")
    study.enqueue_trial({f"edge_{i}_{j}": "none" for j in range(1, 4) for i in range(j)})
    study = run_search(cfg, progress=False)
    first, second = study.trials
    assert first.state == optuna.trial.TrialState.PRUNED and "does not depend on its input" in first.user_attrs["pruned_because"]
    assert second.state == optuna.trial.TrialState.COMPLETE


NB201_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "labelled.csv"


def test_nb201_accuracy_is_scored_by_the_shipped_predictor_without_labels(tmp_path, cifar_dir):
    from ghn_core import load_ghn
    from nas.predictors import embedding_features, load_predictors
    from nas.space import get_space

    cfg = _cfg(tmp_path, None, cifar_dir, objective=["accuracy"], space="nb201", top_k=0, out=str(tmp_path / "run"))
    study = run_search(cfg, progress=False)
    assert study.user_attrs["proxies"] == ["predicted_cifar10_test_acc_200ep"]
    assert study.user_attrs["shipped_predictors"]["properties"] == ["cifar10_test_acc_200ep"]
    ghn = load_ghn()
    predictor = load_predictors(ghn)[("nb201", "cifar10_test_acc_200ep")]
    for t in study.trials:  # every trial's value is the shipped predictor's, on the rebuilt net
        net = get_space("nb201").rebuild(t.user_attrs)
        assert t.value == pytest.approx(float(predictor.predict(embedding_features(ghn, [net]))[0]))
    # The raw GHN proxy stays available by name.
    raw = _cfg(tmp_path, None, cifar_dir, objective=["ghn_accuracy"], space="nb201", study_name="raw")
    assert raw.proxies() == (["ghn_accuracy"], ["maximize"])


def test_labels_turn_robustness_into_a_fitted_regressor(tmp_path, ghn_ckpt, cifar_dir):
    """--labels: the robustness objective is a property predictor on GHN embeddings, saved with the study."""
    from ghn_core import load_ghn
    from ghn_core.nb201 import load_labelled
    from nas.predictors import embedding_features, load_predictors
    from nas.space import get_space

    rows = load_labelled(NB201_CSV)[:20]  # at least 13 distinct cells: a cross-validated fit
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"arch": r.arch, "space": "nb201", "clean_acc": r.cifar10,
                                          "noisy_acc": r.cifar10 - 5.0, "recipe": {"epochs": 200}}) + "\n"
                              for r in rows))
    cfg = _cfg(tmp_path, ghn_ckpt, cifar_dir, objective=["robustness"], space="nb201", labels=str(labels),
               out=str(tmp_path / "run"))
    study = run_search(cfg, progress=False)
    assert study.user_attrs["proxies"] == ["predicted_noisy_acc"] and study.metric_names == ["predicted_noisy_acc"]
    path = study.user_attrs["predictors"]["noisy_acc"]
    assert Path(path) == tmp_path / "run" / "predictor_noisy_acc.joblib"
    # The saved regressor is the one that scored the trials.
    ghn = load_ghn(ghn_ckpt)
    regressor = load_predictors(ghn, path)[("nb201", "noisy_acc")]
    assert regressor.features == "embedding"  # NB201's default
    for t in study.trials:
        net = get_space("nb201").rebuild(t.user_attrs)
        assert t.value == pytest.approx(float(regressor.predict(embedding_features(ghn, [net]))[0]))
    # A continued study may not switch labels; labels of another space are refused.
    other = tmp_path / "other.jsonl"
    other.write_text(labels.read_text().replace('"noisy_acc": ', '"noisy_acc": 1'))
    with pytest.raises(GhnNasError, match="was run with labels="):
        run_search(_cfg(tmp_path, ghn_ckpt, cifar_dir, objective=["robustness"], space="nb201", labels=str(other),
                        out=str(tmp_path / "run"), trials=3), progress=False)
    with pytest.raises(ValueError, match="labels the nb201 space, but the search is on deepnets"):
        run_search(_cfg(tmp_path, ghn_ckpt, cifar_dir, objective=["robustness"], space="deepnets", labels=str(labels),
                        study_name="deepnets-with-nb201-labels", out=str(tmp_path / "run2")), progress=False)
