"""The command lines as a user meets them: each bad input below runs the real ``python -m ...`` in a
subprocess and must print one ``error: ...`` line naming the problem, exit 2, show no traceback, and
leave the folder it ran in (where the default storage, run folders and data would go) as it was."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(module: str, *args: str, cwd: Path, data_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    if data_dir is not None:
        env["GHN_NAS_DATA"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2, no traceback, exactly one ``error:`` line, and it contains every needle."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def workdir(tmp_path) -> Path:
    """An empty folder to run in, with one file that must survive untouched."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("unchanged\n")
    return work


def test_missing_files_are_one_line(workdir, ghn_ckpt, cifar_dir):
    before = snapshot(workdir)
    proc = run_cli("nas.search", "--labels", "missing.jsonl", "--ghn", ghn_ckpt, "--trials", "1", cwd=workdir,
                   data_dir=cifar_dir)
    assert_user_error(proc, "no labels at missing.jsonl")
    proc = run_cli("nas.scorecard", "--labels", "missing.csv", "--out", "sc", cwd=workdir, data_dir=cifar_dir)
    assert_user_error(proc, "missing.csv")
    proc = run_cli("ghn_core.evaluate", "--split", "nb201", "--nb201-csv", "missing.csv", "--device", "cpu",
                   cwd=workdir, data_dir=cifar_dir)
    assert_user_error(proc, "no NAS-Bench-201 labels at missing.csv")
    proc = run_cli("ghn_core.export", "runs/missing/last.pt", "--out", "exported", "--device", "cpu", cwd=workdir,
                   data_dir=cifar_dir)
    assert_user_error(proc, "no training checkpoint at runs/missing/last.pt")
    assert snapshot(workdir) == before


def test_user_message_is_one_line():
    from ghn_core.utils import user_message

    assert user_message(FileNotFoundError(2, "No such file or directory", "x.csv")) == "No such file or directory: x.csv"
    assert user_message(IsADirectoryError(21, "Is a directory", "runs")) == "Is a directory: runs"
    assert user_message(ValueError("first line\nadvice\nmore advice")) == "first line (--debug shows the rest)"
    assert user_message(FileNotFoundError("no labels at x.jsonl")) == "no labels at x.jsonl"


def test_a_device_this_machine_lacks_is_refused_before_anything_is_stored(workdir, ghn_ckpt, cifar_dir):
    import torch

    from ghn_core import load_ghn

    missing = f"cuda:{torch.cuda.device_count()}"  # no CUDA: cuda:0; one GPU: cuda:1
    before = snapshot(workdir)
    proc = run_cli("nas.search", "--device", missing, "--ghn", ghn_ckpt, "--trials", "1", "--space", "nb201",
                   cwd=workdir, data_dir=cifar_dir)
    assert_user_error(proc, f"device '{missing}'")
    proc = run_cli("ghn_core.evaluate", "--device", missing, "--split", "predefined", "--json", "out.json",
                   cwd=workdir, data_dir=cifar_dir)
    assert_user_error(proc, f"device '{missing}'")
    assert snapshot(workdir) == before  # no studies/, no runs/, no data/
    with pytest.raises(ValueError, match=f"device '{missing}'"):
        load_ghn(ghn_ckpt, device=missing)


def test_a_corrupt_checkpoint_is_one_line_naming_the_file(workdir, ghn_ckpt, cifar_dir):
    import datetime

    import torch

    data = Path(ghn_ckpt).read_bytes()
    (workdir / "truncated.pt").write_bytes(data[: len(data) // 2])
    torch.save({"saved": datetime.datetime(2020, 1, 1)}, workdir / "unsafe.pt")  # a safe load refuses it
    before = snapshot(workdir)
    proc = run_cli("nas.search", "--ghn", "unsafe.pt", "--trials", "1", "--space", "nb201", "--device", "cpu",
                   cwd=workdir, data_dir=cifar_dir)
    line = assert_user_error(proc, "unsafe.pt is not a readable GHN checkpoint", "datetime.datetime")
    assert "weights_only" not in proc.stderr and "trusted source" not in proc.stderr, line
    proc = run_cli("ghn_core.evaluate", "--ckpt", "truncated.pt", "--split", "predefined", "--device", "cpu",
                   cwd=workdir, data_dir=cifar_dir)
    assert_user_error(proc, "truncated.pt is not a readable GHN checkpoint (corrupt or not a torch file)")
    assert snapshot(workdir) == before


def test_a_ghn_for_another_dataset_is_refused_before_anything_is_stored(workdir, cifar_dir):
    import torch

    from ghn_core.model import create_ghn, save_checkpoint

    torch.manual_seed(0)
    ghn = create_ghn("ghn2", num_classes=100)
    save_checkpoint(workdir / "ghn100.pt", {"config": ghn.config.to_dict(), "state_dict": ghn.state_dict()})
    before = snapshot(workdir)
    proc = run_cli("nas.search", "--ghn", "ghn100.pt", "--trials", "1", "--space", "nb201", "--device", "cpu",
                   cwd=workdir, data_dir=cifar_dir)
    assert_user_error(proc, "predicts 100-class nets for 32 px images", "CIFAR-10")
    assert snapshot(workdir) == before


def assert_usage_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """argparse's refusal: usage, then one ``prog: error: ...`` line; exit 2, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("usage:"), proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert ": error: " in last and all(needle in last for needle in needles), last


@pytest.mark.parametrize("args, needle", [(["--trials", "0"], "argument --trials: expected a positive integer, got 0"),
                                          (["--top-k", "-1"], "argument --top-k: expected an integer >= 0, got -1")])
def test_search_counts_out_of_range_are_refused(workdir, ghn_ckpt, cifar_dir, args, needle, capsys):
    before = snapshot(workdir)
    assert_usage_error(run_cli("nas.search", *args, "--ghn", ghn_ckpt, cwd=workdir, data_dir=cifar_dir), needle)
    assert snapshot(workdir) == before


def test_search_counts_out_of_range_in_process(tmp_path, ghn_ckpt, monkeypatch, capsys):
    from nas.search import SearchConfig, main, run_search

    monkeypatch.chdir(tmp_path)
    for args, needle in [(["--trials", "-3"], "--trials: expected a positive integer, got -3"),
                         (["--n-images", "0"], "--n-images: expected a positive integer, got 0"),
                         (["--workers", "x"], "--workers: expected a positive integer, got 'x'")]:
        with pytest.raises(SystemExit) as exit_info:
            main([*args, "--ghn", ghn_ckpt])
        assert exit_info.value.code == 2 and needle in capsys.readouterr().err
    for field, value in [("trials", 0), ("n_images", 0), ("top_k", -1), ("final_batches", -1), ("label_budget", 0)]:
        with pytest.raises(ValueError, match=f"--{field.replace('_', '-')} must be an integer >= "):
            run_search(SearchConfig(**{field: value}, ghn=ghn_ckpt, device="cpu"), progress=False)
    assert list(tmp_path.iterdir()) == []  # no studies/, no runs/


def test_search_checks_data_and_storage_folder_before_creating_the_study(workdir, ghn_ckpt, cifar_dir):
    (workdir / "empty").mkdir()
    before = snapshot(workdir)
    common = ["--ghn", ghn_ckpt, "--trials", "1", "--space", "nb201", "--device", "cpu", "--n-images", "8"]
    proc = run_cli("nas.search", *common, "--data-dir", "empty", cwd=workdir)
    assert_user_error(proc, "looked in", "empty")
    proc = run_cli("nas.search", *common, "--data-dir", "missing", cwd=workdir)
    assert_user_error(proc, "the data folder for cifar10 does not exist")
    assert not (workdir / "studies").exists() and not (workdir / "runs").exists()
    proc = run_cli("nas.search", *common, "--storage", "sqlite:///nofolder/s.db", cwd=workdir, data_dir=cifar_dir)
    assert_user_error(proc, f"the folder {workdir / 'nofolder'} does not exist")
    assert snapshot(workdir) == before and sorted(p.name for p in workdir.iterdir()) == ["empty", "keep.txt"]


def test_storage_errors_never_show_the_password():
    from ghn_core.errors import GhnNasError
    from nas.storage import mask_url, open_storage

    url = "postgresql://bob:hunter2@127.0.0.1:1/none"
    with pytest.raises(GhnNasError, match=r"cannot open the study storage 'postgresql://bob:\*\*\*@127.0.0.1:1/none'") as err:
        open_storage(url)
    assert "hunter2" not in str(err.value)
    assert mask_url("driver said: password hunter2 rejected", url) == "driver said: password *** rejected"
    assert mask_url("sqlite:///studies/x.db") == "sqlite:///studies/x.db"


def test_help_texts_show_defaults_and_train_takes_hyphens(tmp_path, capsys):
    import re

    proc = run_cli("nas.search", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split("options:", 1)[1].split())
    for option in ["--trials", "--top-k", "--seed", "--study-name", "--data-dir", "--n-images", "--device", "--init",
                   "--out"]:
        entry = re.search(rf"{option} \S+ (.*?) (?=--[a-z]|$)", text)
        assert entry and "default" in entry.group(1), (option, entry and entry.group(1))
    assert re.search(r"--debug show the traceback", text)

    from ghn_core.train import parse_args

    cfg, debug = parse_args(["--preset", "cpu-small", "--batch-size", "16", "--max_steps", "3", "--width-scale", "0.25"])
    assert (cfg.batch_size, cfg.max_steps, cfg.width_scale, debug) == (16, 3, 0.25, False)
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--batch-size BATCH_SIZE, --batch_size BATCH_SIZE images per step" in help_text
    assert "(paper default: 64)" in help_text


@pytest.mark.parametrize("args, needle", [(["--resolution", "0"], "expected resolution > 0, got 0 instead"),
                                          (["--batch-size", "0"], "expected batch_size > 0, got 0 instead"),
                                          (["--width-scale", "-1"], "expected width_scale > 0, got -1.0 instead")])
def test_train_refuses_counts_and_sizes_below_one_before_writing(tmp_path, args, needle):
    assert_usage_error(run_cli("ghn_core.train", *args, "--out", "run", "--deepnets-dir", "nets", cwd=tmp_path), needle)
    assert list(tmp_path.iterdir()) == []


def test_evaluate_says_where_it_generates_a_missing_split(tmp_path, monkeypatch, caplog):
    """The split is not really generated (500 nets): the generator is stubbed to stop right there."""
    import logging

    import ghn_core.evaluate as evaluate

    def stop(split, size, out, **kwargs):
        raise SystemExit(f"would generate {size} nets into {out}")

    monkeypatch.setattr(evaluate, "generate_split", stop)
    monkeypatch.setattr(evaluate, "eval_loader", lambda *a, **k: None)  # no image data needed to get there
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO, logger="ghn_core.evaluate"), pytest.raises(SystemExit, match="500 nets"):
        evaluate.main(["--split", "test", "--device", "cpu"])
    expected = f"generating the DeepNets-1M test split (500 nets) into {tmp_path / 'data/deepnets1m/deepnets1m_test.h5'}"
    assert expected in caplog.text
