"""What a command line must never do to a user: wipe the shipped predictors, fall back silently when a
predictor is missing, lose the real error of an empty file, or end Ctrl-C with a traceback. Each case
runs the real ``python -m ...`` and checks the message, the exit status and what is left on disk."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_cli_errors import REPO, assert_usage_error, assert_user_error, run_cli, snapshot

CELLS = ["|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|none~0|nor_conv_1x1~1|nor_conv_3x3~2|",
         "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_3x3~0|skip_connect~1|avg_pool_3x3~2|",
         "|nor_conv_1x1~0|+|none~0|nor_conv_1x1~1|+|nor_conv_1x1~0|skip_connect~1|nor_conv_1x1~2|"]
NB201_CSV = REPO.parent / "shared" / "data" / "nb201" / "labelled.csv"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def shipped_predictors() -> Path:
    """The shipped predictors file, which every test here must leave byte for byte as it was."""
    from nas.predictors import predictors_path

    path = predictors_path()
    digest = sha256(path)
    yield path
    assert sha256(path) == digest, "a test changed the shipped predictors"


def test_a_fit_that_fits_nothing_writes_nothing_and_never_touches_the_shipped_file(tmp_path, shipped_predictors):
    records = [{"arch": cell, "space": "nb201", "clean_acc": 50.0 + i, "noisy_acc": 40.0 + i, "recipe": {"epochs": 1}}
               for i, cell in enumerate(CELLS)]
    (tmp_path / "tiny.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    # No --out: the shipped file is never a default target.
    proc = run_cli("nas.predictors", "fit", "--labels", "tiny.jsonl", cwd=tmp_path)
    assert_usage_error(proc, "the following arguments are required: --out")
    # Too few labels for any predictor: exit 2, and the file named by --out is left as it was.
    shutil.copy(shipped_predictors, tmp_path / "mine.joblib")
    before = snapshot(tmp_path)
    proc = run_cli("nas.predictors", "fit", "--labels", "tiny.jsonl", "--out", "mine.joblib", cwd=tmp_path)
    assert_user_error(proc, "no predictor fitted", "mine.joblib is left as it was")
    proc = run_cli("nas.predictors", "fit", "--labels", "tiny.jsonl", "--out", "new.joblib", cwd=tmp_path)
    assert_user_error(proc, "no predictor fitted")
    assert snapshot(tmp_path) == before


def test_a_fit_into_an_existing_file_keeps_the_predictors_it_did_not_refit(tmp_path, shipped_predictors):
    from nas.predictors import shipped_properties

    lines = NB201_CSV.read_text().splitlines()
    (tmp_path / "some.csv").write_text("\n".join(lines[:41]) + "\n")  # 40 strings: enough distinct cells
    shutil.copy(shipped_predictors, tmp_path / "mine.joblib")
    proc = run_cli("nas.predictors", "fit", "--labels", "some.csv", "--property", "cifar10_noisy_acc_200ep",
                   "--out", "mine.joblib", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    before, after = shipped_properties(shipped_predictors), shipped_properties(tmp_path / "mine.joblib")
    assert after == before | {("nb201", "cifar10_noisy_acc_200ep")}
    assert "kept" in proc.stdout
    # A property the file does not have is refused, naming the file's columns.
    proc = run_cli("nas.predictors", "fit", "--labels", "some.csv", "--property", "noisy", "--out", "x.joblib",
                   cwd=tmp_path)
    assert_user_error(proc, "some.csv has no 'noisy'", "cifar10_noisy_acc_200ep")
    assert not (tmp_path / "x.joblib").exists()


def test_a_search_whose_predictor_is_missing_stops_instead_of_falling_back(tmp_path, shipped_predictors, cifar_dir):
    """A GHN whose predictors file lacks the noisy-accuracy predictor: the robustness search says so."""
    from ghn_core import load_ghn, shipped_checkpoint
    from nas.predictors import load_predictors, save_predictors

    ghn_path = tmp_path / "ghn.pt"
    shutil.copy(shipped_checkpoint(), ghn_path)
    bundle = load_predictors(load_ghn(), shipped_predictors)
    save_predictors([p for key, p in bundle.items() if key != ("deepnets", "noisy_acc")],
                    tmp_path / "ghn.predictors.joblib", ghn=load_ghn())
    work = tmp_path / "work"
    work.mkdir()
    proc = run_cli("nas.search", "--objective", "robustness", "--ghn", str(ghn_path), "--trials", "1", cwd=work,
                   data_dir=cifar_dir)
    assert_user_error(proc, "noisy_acc predictor", "ghn.predictors.joblib does not have", "--objective ghn_robustness")
    assert list(work.iterdir()) == []  # no study, no run folder


@pytest.mark.parametrize("content", ["", "arch,cifar10_test_acc_200ep\n"], ids=["zero-bytes", "header-only"])
def test_empty_csv_files_keep_their_real_error(tmp_path, content):
    (tmp_path / "empty.csv").write_text(content)
    before = snapshot(tmp_path)
    for module, *args in (("nas.search", "--space", "pool:empty.csv", "--trials", "1"),
                          ("nas.predictors", "score", "--labels", "empty.csv"),
                          ("nas.benchmark", "--pool", "empty.csv"),
                          ("nas.scorecard", "--labels", "empty.csv")):
        proc = run_cli(module, *args, cwd=tmp_path)
        line = assert_user_error(proc, "empty.csv")
        assert "closed file" not in line
        assert ("an empty file" if not content else "has no labelled architectures") in line, line
    assert snapshot(tmp_path) == before


def test_property_columns_are_read_by_name_and_bad_cells_name_their_line(tmp_path):
    header = "arch,cifar10_test_acc_200ep,cifar10_noisy_acc_200ep"
    rows = [f"{CELLS[0]},91.5,30.1", f"{CELLS[1]},88.0,", f"{CELLS[2]},87.0,x"]
    (tmp_path / "t.csv").write_text("\n".join([header, *rows]) + "\n")
    from ghn_core.errors import ArchitectureError, ColumnError
    from nas.label import read_labelled

    labelled = read_labelled(tmp_path / "t.csv")
    assert list(labelled.properties) == ["cifar10_test_acc_200ep", "cifar10_noisy_acc_200ep"]
    assert labelled.properties["cifar10_test_acc_200ep"].tolist() == [91.5, 88.0, 87.0]  # the other column's gaps don't matter
    with pytest.raises(ArchitectureError, match=r"t.csv, line 3: cifar10_noisy_acc_200ep is '', not a number"):
        labelled.properties["cifar10_noisy_acc_200ep"]
    with pytest.raises(ColumnError, match="no column 'noisy'; its columns: arch, cifar10_test_acc_200ep, cifar10_noisy"):
        labelled.properties["noisy"]
    # through a command line: the chosen column's bad cell, one line
    proc = run_cli("nas.benchmark", "--pool", "t.csv", "--objective", "robustness", cwd=tmp_path)
    assert_user_error(proc, "t.csv, line 3: cifar10_noisy_acc_200ep is ''")


def _start(module: str, *args: str, cwd: Path, data_dir: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "GHN_NAS_DATA": str(data_dir)}
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=log.open("w"), text=True)


def _interrupt_when(proc: subprocess.Popen, log: Path, text: str, timeout: float = 300) -> str:
    """Send Ctrl-C once ``text`` shows in the process's stderr; return all of its stderr."""
    end = time.monotonic() + timeout
    try:
        while text not in log.read_text():
            if proc.poll() is not None or time.monotonic() > end:
                raise AssertionError(f"{text!r} never showed (exit {proc.poll()}): {log.read_text()[-3000:]}")
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return log.read_text()


def assert_interrupted(proc: subprocess.Popen, err: str, *needles: str) -> None:
    assert proc.returncode == 130, (proc.returncode, err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("interrupted:")]
    assert len(lines) == 1, err[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_ctrl_c_in_final_training_keeps_the_finished_candidates(tmp_path, ghn_ckpt, cifar_dir):
    args = ["--space", "nb201", "--objective", "accuracy", "--ghn", ghn_ckpt, "--trials", "3", "--top-k", "2",
            "--n-images", "32", "--final-epochs", "1", "--final-batches", "30", "--final-eval-batches", "1",
            "--storage", f"sqlite:///{tmp_path}/s.db", "--out", str(tmp_path / "run")]
    log = tmp_path / "first.log"
    proc = _start("nas.search", *args, cwd=tmp_path, data_dir=cifar_dir, log=log)
    err = _interrupt_when(proc, log, "(proxy rank 1): clean")  # rank 2 is training now
    assert_interrupted(proc, err, "the study is consistent", "run the same command")
    again = subprocess.run([sys.executable, "-m", "nas.search", *args], cwd=tmp_path, capture_output=True, text=True,
                           timeout=300, env={**os.environ, "GHN_NAS_DATA": str(cifar_dir),
                                             "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(proxy rank 1): trained by an earlier run, kept" in again.stderr
    assert "(proxy rank 2): clean" in again.stderr


def test_ctrl_c_while_labelling_keeps_the_labels_written(tmp_path, cifar_dir):
    (tmp_path / "archs.txt").write_text("\n".join(CELLS[:2]) + "\n")
    log = tmp_path / "label.log"
    proc = _start("nas.label", "--space", "nb201", "--archs", "archs.txt", "--out", "labels.jsonl", "--recipe", "cpu",
                  "--max-batches", "20", "--epochs", "1", cwd=tmp_path, data_dir=cifar_dir, log=log)
    err = _interrupt_when(proc, log, "[1/2] clean")
    assert_interrupted(proc, err, "labels.jsonl", "run the same command")
    assert len((tmp_path / "labels.jsonl").read_text().splitlines()) == 1


def test_user_errors_turns_ctrl_c_into_one_line_and_status_130(capsys):
    from ghn_core.utils import user_errors

    with pytest.raises(SystemExit) as exit_:
        with user_errors(interrupted="the checkpoints in runs/x are kept"):
            raise KeyboardInterrupt
    assert exit_.value.code == 130
    assert capsys.readouterr().err.strip() == "interrupted: the checkpoints in runs/x are kept"
    with pytest.raises(KeyboardInterrupt):  # --debug: the traceback
        with user_errors(debug=True):
            raise KeyboardInterrupt
