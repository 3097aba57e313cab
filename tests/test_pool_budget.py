"""Pools, label oracles, the label-budget search and the search benchmark (nas.pool, nas.oracle,
nas.budget, nas.benchmark), on small NB201 pools with made-up labels whose answers are known."""
from __future__ import annotations

import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import optuna
import pytest

from ghn_core import load_ghn
from ghn_core.errors import ArchitectureError
from ghn_core.nb201 import cell_key, format_arch
from nas.benchmark import main as benchmark_main
from nas.benchmark import random_search_curve
from nas.budget import CLAIM, label_objective, labelled_trials, make_candidates
from nas.label import read_labelled
from nas.oracle import SGDOracle, TableOracle
from nas.pool import PoolSpace, read_pool
from nas.search import main as search_main
from nas.search import make_sampler
from nas.sgd import SGDRecipe
from nas.storage import open_storage

from test_cli_errors import assert_user_error, run_cli

OPS = ("skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def nb201_cells(n: int) -> list[str]:
    """``n`` NB201 strings of distinct cells (no 'none' edge: each has an input-output path)."""
    cells, keys = [], set()
    for ops in itertools.product(OPS, repeat=6):
        arch = format_arch((ops[:1], ops[1:3], ops[3:6]))
        if cell_key(arch) not in keys:
            keys.add(cell_key(arch))
            cells.append(arch)
        if len(cells) == n:
            return cells
    raise AssertionError("not enough cells")


def write_csv(path: Path, archs: list[str], accs: list[float]) -> Path:
    rows = ["arch,cifar10_test_acc_200ep,cifar100_test_acc_200ep,imagenet16_120_test_acc_200ep"]
    rows += [f"{a},{acc},{acc - 20},{acc - 40}" for a, acc in zip(archs, accs)]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def pool_csv(tmp_path) -> Path:
    archs = nb201_cells(12)
    return write_csv(tmp_path / "pool.csv", archs, [80.0 + i for i in range(12)])


def test_random_search_curve_is_exact():
    y = np.array([3.0, 9.0, 1.0, 7.0, 4.0, 8.0, 2.0])
    pct = {v: 100.0 * (y <= v).mean() for v in y}
    for k in range(1, len(y) + 1):
        best = np.array([max(c) for c in itertools.combinations(y, k)])
        mean, sd, percentile = random_search_curve(y, k)
        assert mean == pytest.approx(best.mean())
        assert sd == pytest.approx(best.std())
        assert percentile == pytest.approx(np.mean([pct[b] for b in best]))
    with pytest.raises(ValueError):
        random_search_curve(y, 8)


def test_pool_round_trips_and_the_default_sampler_draws_each_net_once(tmp_path):
    archs = nb201_cells(6)
    path = tmp_path / "archs.txt"
    path.write_text("\n".join(archs) + "\n")
    space = PoolSpace(read_pool(path))
    for i in (0, 3, 5):
        trial = optuna.trial.FixedTrial({"pool_index": i})
        model = space.suggest(trial)
        assert model.arch == archs[i] and trial.user_attrs["pool_index"] == i
        assert space.rebuild(trial.user_attrs).arch == archs[i]  # the storage's record alone rebuilds it
    study = optuna.create_study(sampler=make_sampler("auto", 0, multi_objective=False, pool=True))
    study.optimize(lambda t: float(space.suggest(t).arch == archs[0]), n_trials=6)
    assert sorted(t.params["pool_index"] for t in study.trials) == list(range(6))


def test_read_pool_formats_and_refusals(tmp_path, pool_csv):
    pool = read_pool(pool_csv)
    assert pool.space == "nb201" and len(pool) == 12 and pool.labelled is not None
    with pytest.raises(ArchitectureError, match="no architecture of the deepnets space"):
        read_pool(pool_csv, space="deepnets")
    cases = {"garbage.txt": ("hello\n", "line 1: neither"), "empty.txt": ("\n", "lists no architecture"),
             "mixed.txt": (nb201_cells(1)[0] + '\n{"genotype": 1}\n', "line 2: neither"),
             "binary.bin": (b"\xff\xfe\x00\x01", "not a text file")}
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(ArchitectureError, match=message):
            read_pool(path)


def test_bad_pools_and_budgets_on_the_command_line(tmp_path, pool_csv):
    """Each case is its own run of the command; they run side by side (each spends seconds importing torch)."""
    (tmp_path / "garbage.txt").write_text("not an architecture\n")
    (tmp_path / "archs.txt").write_text("\n".join(nb201_cells(3)) + "\n")
    cases = [
        (("nas.search", "--space", f"pool:{tmp_path / 'garbage.txt'}"), "garbage.txt, line 1"),
        (("nas.search", "--space", f"pool:{pool_csv}", "--objective", "accuracy", "--label-budget", "13",
          "--label-from", str(pool_csv)), "--label-budget 13 is more than the 12"),
        (("nas.search", "--space", "nb201", "--objective", "accuracy", "--label-budget", "2", "--label-from",
          str(pool_csv)), "--label-from looks labels up in a table: search a pool"),
        (("nas.search", "--space", f"pool:{pool_csv}", "--objective", "accuracy", "robustness", "--label-budget", "2",
          "--label-from", str(pool_csv)), "a label budget needs one objective"),
        (("nas.benchmark", "--pool", str(tmp_path / "archs.txt")), "has no labels"),
    ]
    with ThreadPoolExecutor(len(cases)) as pool:
        procs = list(pool.map(lambda case: run_cli(*case[0], cwd=tmp_path), cases))
    for proc, (args, needle) in zip(procs, cases):
        assert_user_error(proc, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archs.txt", "garbage.txt", "pool.csv"]


class CountingOracle(TableOracle):
    calls = 0

    def label(self, arch):
        CountingOracle.calls += 1
        return super().label(arch)


def test_oracles_are_interchangeable(pool_csv, ghn_ckpt, cifar_dir):
    pool = read_pool(pool_csv)
    candidates = make_candidates(load_ghn(ghn_ckpt), pool, progress=False)
    tiny = SGDRecipe(epochs=1, batch_size=16, max_batches=2, eval_batches=1, resolution=16, width_scale=0.25)
    oracles = {"table": TableOracle(pool.labelled),
               "sgd": SGDOracle("nb201", tiny, data_dir=str(cifar_dir), device="cpu")}
    props = {"table": "cifar10_test_acc_200ep", "sgd": "clean_acc"}
    for kind, oracle in oracles.items():
        study = optuna.create_study(direction="maximize")
        study.enqueue_trial({"pool_index": 4})
        study.optimize(label_objective(candidates, oracle, props[kind], budget=1), n_trials=1)
        trial = study.best_trial
        assert trial.params["pool_index"] == 4 and trial.user_attrs[CLAIM] == candidates.keys[4]
        assert trial.value == trial.user_attrs[f"label_{props[kind]}"] and "label_cost_s" in trial.user_attrs
    assert study.best_trial.user_attrs["label_cost_s"] > 0  # SGD costs time; the table lookup is free


def test_claims_and_budget_are_checked_before_labelling(pool_csv, ghn_ckpt):
    pool = read_pool(pool_csv)
    candidates = make_candidates(load_ghn(ghn_ckpt), pool, progress=False)
    oracle = CountingOracle(pool.labelled)
    CountingOracle.calls = 0
    objective = label_objective(candidates, oracle, "cifar10_test_acc_200ep", budget=2)
    study = optuna.create_study(direction="maximize")
    other = study.ask()  # another worker, labelling net 0 right now
    study._storage.set_trial_user_attr(other._trial_id, CLAIM, candidates.keys[0])
    study.enqueue_trial({"pool_index": 0})
    study.optimize(objective, n_trials=1)
    assert study.trials[-1].state == optuna.trial.TrialState.PRUNED and CountingOracle.calls == 0
    for index in (1, 2):  # net 1 takes the budget's second label; net 2 finds it spent
        study.enqueue_trial({"pool_index": index})
        study.optimize(objective, n_trials=1)
    assert [t.state.name for t in study.trials[-2:]] == ["COMPLETE", "PRUNED"] and CountingOracle.calls == 1


def test_label_budget_search_is_never_exceeded_and_resumes_without_relabelling(tmp_path, pool_csv, ghn_ckpt,
                                                                               monkeypatch):
    monkeypatch.setattr("nas.search.TableOracle", CountingOracle)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    argv = ["--space", f"pool:{pool_csv}", "--objective", "accuracy", "--label-budget", "6", "--label-from",
            str(pool_csv), "--ghn", ghn_ckpt, "--storage", storage, "--study-name", "b", "--out", str(tmp_path / "run"),
            "--top-k", "2"]
    CountingOracle.calls = 0
    assert search_main(argv) == 0
    study = optuna.load_study(study_name="b", storage=storage)
    labels = labelled_trials(study)
    assert len(labels) == 6 == CountingOracle.calls
    assert len({t.user_attrs[CLAIM] for t in labels}) == 6
    truth = dict(zip(read_labelled(pool_csv).archs, read_labelled(pool_csv).properties["cifar10_test_acc_200ep"]))
    assert all(t.value == truth[json.loads(t.user_attrs["architecture"])] for t in labels)
    assert study.user_attrs["oracle"]["table"] == str(pool_csv) and study.user_attrs["label_budget"] == 6
    assert search_main(argv) == 0  # resumed: nothing left to label
    assert len(labelled_trials(optuna.load_study(study_name="b", storage=storage))) == 6 == CountingOracle.calls


def test_benchmark_reports_exact_figures(tmp_path, pool_csv, ghn_ckpt, cifar_dir, capsys, monkeypatch):
    monkeypatch.setenv("GHN_NAS_CACHE", str(tmp_path / "cache"))
    argv = ["--pool", str(pool_csv), "--ghn", ghn_ckpt, "--proxies", "params", "--seeds", "2", "--budgets", "6",
            "--n-images", "16", "--data-dir", str(cifar_dir), "--json", "--out", str(tmp_path / "out")]
    assert benchmark_main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    y = 80.0 + np.arange(12)
    assert result["pool"]["size"] == 12 and result["pool"]["best"] == 91.0
    assert result["random@1"]["mean"] == pytest.approx(y.mean())
    assert result["random@1"]["regret"] == pytest.approx(91.0 - y.mean())
    assert result["random@10"]["mean"] == pytest.approx(random_search_curve(y, 10)[0])
    # No labels: every seed's sample is the whole pool, so params picks the net with most parameters.
    from nas.label import build_architecture

    n_params = [sum(p.numel() for p in build_architecture("nb201", a).parameters())
                for a in read_labelled(pool_csv).archs]
    assert result["params@12"]["mean"] == y[int(np.argmax(n_params))] and result["params@12"]["labels_spent"] == 0
    assert result["params@12"]["distinct_picks"] == 1  # said in the table: the seeds are not 2 picks
    assert "| params@12 | 0 | " in (tmp_path / "out" / "benchmark.md").read_text().split("2 (one pick)")[0]
    budget = result["budget@6"]
    assert budget["labels_spent"] == 6 and budget["seeds"] == 2 and 86.0 <= budget["mean"] <= 91.0
    assert budget["percentile"] == pytest.approx(100.0 * (y <= budget["mean"]).mean(), abs=100 / 12)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["benchmark.json", "benchmark.md", "benchmark.png"]
    # --sample 3: each seed picks the best of its own 3 random nets (values come from the proxy store).
    assert benchmark_main([*argv[:argv.index("--out")], "--sample", "3", "--seeds", "8", "--budgets"]) == 0
    sampled = json.loads(capsys.readouterr().out)["params@3"]
    assert sampled["seeds"] == 8 and sampled["distinct_picks"] > 1


def test_robustness_benchmark_is_judged_by_the_noisy_column_never_the_clean_one(tmp_path, ghn_ckpt, cifar_dir, capsys,
                                                                               monkeypatch):
    """Clean and noisy accuracy in reverse order: every figure of a robustness benchmark is the noisy one's."""
    monkeypatch.setenv("GHN_NAS_CACHE", str(tmp_path / "cache"))
    archs = nb201_cells(12)
    clean, noisy = 80.0 + np.arange(12), 40.0 - 2.0 * np.arange(12)
    rows = ["arch,cifar10_test_acc_200ep,cifar10_noisy_acc_200ep"]
    rows += [f"{a},{c},{n}" for a, c, n in zip(archs, clean, noisy)]
    (tmp_path / "pool.csv").write_text("\n".join(rows) + "\n")
    argv = ["--pool", str(tmp_path / "pool.csv"), "--ghn", ghn_ckpt, "--proxies", "params", "--seeds", "2",
            "--budgets", "6", "--n-images", "16", "--data-dir", str(cifar_dir), "--json"]
    assert benchmark_main([*argv, "--objective", "robustness"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pool"]["property"] == "cifar10_noisy_acc_200ep" and result["pool"]["best"] == 40.0
    assert result["random@1"]["mean"] == pytest.approx(noisy.mean())
    assert result["random@10"]["mean"] == pytest.approx(random_search_curve(noisy, 10)[0])
    assert result["budget@6"]["mean"] in noisy.tolist() and result["budget@6"]["labels_spent"] == 6
    from nas.label import build_architecture

    n_params = [sum(p.numel() for p in build_architecture("nb201", a).parameters()) for a in archs]
    assert result["params@12"]["mean"] == noisy[int(np.argmax(n_params))]
    # The same pool judged by accuracy reads the clean column; --property picks any column by name.
    assert benchmark_main([*argv, "--objective", "accuracy", "--budgets"]) == 0
    assert json.loads(capsys.readouterr().out)["pool"]["best"] == 91.0
    assert benchmark_main([*argv, "--objective", "accuracy", "--property", "cifar10_noisy_acc_200ep", "--budgets"]) == 0
    assert json.loads(capsys.readouterr().out)["random@1"]["mean"] == pytest.approx(noisy.mean())
    # what a label-budget study of robustness labels with, from such a table (nas.search --label-from)
    from nas.budget import label_property

    assert label_property("robustness", list(read_labelled(tmp_path / "pool.csv").properties)) == "cifar10_noisy_acc_200ep"


def test_two_workers_share_one_budget_without_labelling_a_net_twice(tmp_path, pool_csv, ghn_ckpt):
    # Table labels are instant, so the workers may or may not overlap: the race itself is
    # test_claims_and_budget_are_checked_before_labelling; this checks the whole command holds its budget.
    storage = f"journal:{tmp_path / 's.journal'}"
    argv = ["--space", f"pool:{pool_csv}", "--objective", "accuracy", "--label-budget", "8", "--label-from",
            str(pool_csv), "--ghn", ghn_ckpt, "--storage", storage, "--study-name", "w", "--workers", "2",
            "--out", str(tmp_path / "run"), "--top-k", "1"]
    assert search_main(argv) == 0
    study = optuna.load_study(study_name="w", storage=open_storage(storage))
    labels = labelled_trials(study)
    assert len(labels) == 8 and len({t.user_attrs[CLAIM] for t in labels}) == 8
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]


def test_benchmark_proxy_values_resume_at_the_next_net(tmp_path, pool_csv, ghn_ckpt, cifar_dir, monkeypatch):
    """A proxy run killed midway keeps the values it computed: the rerun computes only the rest, and
    another pool of the same nets computes none."""
    import nas.proxies
    from nas.benchmark import prepare
    from nas.label import build_architecture

    monkeypatch.setenv("GHN_NAS_CACHE", str(tmp_path / "cache"))
    compute, calls = nas.proxies.compute, []

    def interrupted_after_5(name, model, ctx):
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(name)
        return compute(name, model, ctx)

    monkeypatch.setattr(nas.proxies, "compute", interrupted_after_5)
    kwargs = dict(ghn_path=ghn_ckpt, n_images=16, data_dir=str(cifar_dir), proxies=["params"], progress=False)
    with pytest.raises(KeyboardInterrupt):
        prepare(str(pool_csv), None, **kwargs)
    [values] = (tmp_path / "cache" / "proxies").glob("nb201-16img-seed0/params.jsonl")
    assert len(values.read_text().splitlines()) == 5
    calls.clear()
    monkeypatch.setattr(nas.proxies, "compute", lambda *a: calls.append(a[0]) or compute(*a))
    resumed = prepare(str(pool_csv), None, **kwargs).scores["params"]
    assert len(calls) == 12 - 5 and len(values.read_text().splitlines()) == 12
    archs = read_labelled(pool_csv).archs
    expected = [sum(p.numel() for p in build_architecture("nb201", a).parameters()) / 1e6 for a in archs]
    assert resumed.tolist() == pytest.approx(expected)
    calls.clear()
    subset = write_csv(tmp_path / "subset.csv", archs[::-1][:6], [80.0 + i for i in range(6)])
    assert prepare(str(subset), None, **kwargs).scores["params"].tolist() == pytest.approx(expected[::-1][:6])
    assert calls == []


def test_benchmark_computes_proxies_only_on_the_nets_its_seeds_look_at(tmp_path, pool_csv, ghn_ckpt, cifar_dir,
                                                                        monkeypatch):
    """With seeds, a proxy runs on the union of the seeds' samples alone, and every pick is the one the
    proxy's value on every net would give; more seeds than prepared are refused, not picked from NaN."""
    import nas.proxies
    from nas.benchmark import looked_at, prepare, run_benchmark

    monkeypatch.setenv("GHN_NAS_CACHE", str(tmp_path / "cache"))
    compute, calls = nas.proxies.compute, []
    monkeypatch.setattr(nas.proxies, "compute", lambda *a: calls.append(a[0]) or compute(*a))
    kwargs = dict(ghn_path=ghn_ckpt, n_images=16, data_dir=str(cifar_dir), proxies=["params"], progress=False)
    sampled = prepare(str(pool_csv), None, seeds=2, sample=3, **kwargs)
    rows = looked_at(12, 2, 3)
    assert 3 <= rows.sum() <= 6 and len(calls) == rows.sum()
    assert np.isfinite(sampled.scores["params"]).tolist() == rows.tolist()
    full = prepare(str(pool_csv), None, **kwargs)
    assert len(calls) == 12  # the other nets now, the looked-at ones from the store
    options = dict(budgets=(), random_ks=(), sample=3, progress=False)
    assert run_benchmark(sampled, 2, **options) == run_benchmark(full, 2, **options)
    with pytest.raises(ValueError, match="the proxies were not computed on"):
        run_benchmark(sampled, 12, **options)


def test_sgd_labels_start_from_pytorch_init_unless_asked(tmp_path, pool_csv, ghn_ckpt, cifar_dir, monkeypatch):
    """The label budget's SGD oracle trains from PyTorch's init by default (GHN-initialised labels ranked
    NB201 cells worse); ``--init ghn`` hands it the GHN. The study records which."""
    made = []

    class RecordingOracle(SGDOracle):
        def label(self, arch):
            made.append(self.ghn)
            return {"clean_acc": 50.0, "cost_s": 0.0}

    monkeypatch.setattr("nas.search.SGDOracle", RecordingOracle)
    for init in ("random", "ghn"):
        storage = f"sqlite:///{tmp_path / f'{init}.db'}"
        argv = ["--space", f"pool:{pool_csv}", "--objective", "accuracy", "--label-budget", "2", "--ghn", ghn_ckpt,
                "--data-dir", str(cifar_dir), "--storage", storage, "--study-name", "s", "--out", str(tmp_path / init),
                "--top-k", "0", *(["--init", "ghn"] if init == "ghn" else [])]
        made.clear()
        assert search_main(argv) == 0
        assert len(made) == 2 and all((ghn is None) == (init == "random") for ghn in made)
        assert optuna.load_study(study_name="s", storage=storage).user_attrs["oracle"]["init"] == init
