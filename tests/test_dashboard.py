"""optuna-dashboard opens a study nas.search wrote: named metrics, genotypes and proxy values,
read back through its HTTP API from a server started on loopback."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from nas.search import SearchConfig, run_search
from nas.storage import dashboard_url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 60):
    end = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.5)


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_dashboard_reads_the_study_back(tmp_path, ghn_ckpt, cifar_dir, kind):
    storage = f"sqlite:///{tmp_path}/study.db" if kind == "sqlite" else f"journal:{tmp_path}/study.journal"
    cfg = SearchConfig(objective=["efficiency"], space="nb201", trials=2, ghn=ghn_ckpt, data_dir=str(cifar_dir),
                       n_images=32, device="cpu", storage=storage, study_name="dash")
    run_search(cfg, progress=False)
    exe = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent)) or "optuna-dashboard"
    port = _free_port()
    server = subprocess.Popen([exe, dashboard_url(storage), "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        studies = _get(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
        (summary,) = [s for s in studies if s["study_name"] == "dash"]
        detail = _get(f"http://127.0.0.1:{port}/api/studies/{summary['study_id']}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert detail["objective_names"] == ["ghn_accuracy", "latency_b1"]
    assert detail["directions"] == ["maximize", "minimize"]
    trials = detail["trials"]
    assert len(trials) == 2 and all(t["state"] == "Complete" for t in trials)
    for t in trials:
        attrs = {a["key"]: a["value"] for a in t["user_attrs"]}
        assert "architecture" in attrs and "proxy_ghn_accuracy" in attrs and "proxy_latency_b1" in attrs
        assert len(t["values"]) == 2
    study_attrs = {a["key"]: a["value"] for a in summary["user_attrs"]}
    assert "ghn_hash" in study_attrs
