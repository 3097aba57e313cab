"""Where studies live, and how several workers share one without losing a trial.

``--storage`` takes:

    sqlite:///studies/x.db            one process (the default: a file under studies/)
    journal:studies/x.journal         several processes on one host (Optuna's JournalStorage, file locks)
    postgresql://user@host/db         several hosts (any SQLAlchemy URL Optuna's RDBStorage accepts)

A worker killed in the middle of a trial leaves it RUNNING. Every worker records itself on its trials
(user attr ``worker`` = ``host:pid``); before each new trial, workers fail the RUNNING trials of dead
processes on their host (and trials no worker claimed within a minute) and enqueue a retry with the
same parameters, so the same architecture. On RDB storages a heartbeat does the same for workers on
other hosts once ``GRACE_S`` has passed.
"""
from __future__ import annotations

import functools
import os
import re
import signal
import socket
import threading
import warnings
from datetime import datetime
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from ghn_core.errors import GhnNasError

__all__ = ["open_storage", "mask_url", "dashboard_url", "worker_id", "recover_orphans", "fail_own_trials", "MAX_RETRY"]

MAX_RETRY = 2          # retries of one trial whose worker died, before it stays FAILED
HEARTBEAT_S = 20       # RDB storages: seconds between heartbeats of a running trial
GRACE_S = 60           # ... and without one after which another host's trial counts as dead
UNCLAIMED_S = 60       # a RUNNING trial no worker claimed for this long was left by a dead one
with warnings.catch_warnings():
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable in use since Optuna 2.8
    _retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)


def _journal_path(url: str) -> str | None:
    if url.startswith("journal:"):
        return url[len("journal:"):]
    if "://" not in url and url.endswith((".journal", ".log")):
        return url
    return None


_PASSWORD = re.compile(r"(?P<head>://[^/:@\s]*:)(?P<password>[^@\s]*)@")


def mask_url(text: str, url: str | None = None) -> str:
    """``text`` with the password of any ``scheme://user:password@host`` URL in it replaced by ``***``
    (and, given the ``url`` it came from, that password wherever else it appears, e.g. in a driver's
    message)."""
    if url is not None:
        found = _PASSWORD.search(url)
        if found and found["password"]:
            text = text.replace(found["password"], "***")
    return _PASSWORD.sub(lambda m: f"{m['head']}***@", text)


def _missing_folder(url: str, journal: str | None) -> Path | None:
    """The folder a file storage (SQLite, journal) would be written into, if it does not exist."""
    if journal is not None:
        path = journal
    elif url.startswith("sqlite:"):
        from sqlalchemy.engine import make_url

        path = make_url(url).database
        if not path or path == ":memory:" or path.startswith("file:"):
            return None
    else:
        return None
    folder = Path(path).expanduser().absolute().parent
    return None if folder.is_dir() else folder


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url`` (see the module doc); a clear error if it cannot be opened.
    A SQLite or journal file's folder must exist (it is not created); errors never show a password."""
    journal = _journal_path(url)
    try:
        folder = _missing_folder(url, journal)
        if folder is not None:
            raise GhnNasError(f"cannot open the study storage {mask_url(url)!r}: the folder {folder} does not exist")
        if journal is not None:
            from optuna.storages.journal import JournalFileBackend

            return _atomic_to_ctrl_c(optuna.storages.JournalStorage(JournalFileBackend(journal)))
        if "://" not in url:
            raise GhnNasError(f"storage {mask_url(url)!r} is neither a URL (sqlite:///x.db, postgresql://...) "
                              f"nor a journal file (journal:x.journal)")
        driver_url = _postgres_driver(url) if url.startswith("postgresql://") else url
        # SQLite: wait for a lock instead of failing with "database is locked" at once.
        engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat: stable in use
            return _atomic_to_ctrl_c(optuna.storages.RDBStorage(
                driver_url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                heartbeat_stale_trial_callback=_retry))
    except GhnNasError:
        raise
    except Exception as err:  # SQLAlchemy and the drivers raise many types for a bad URL or a dead server
        raise GhnNasError(mask_url(f"cannot open the study storage {url!r}: {type(err).__name__}: {err}", url)) from None


class _CtrlC:
    """Ctrl-C in the main thread waits for the storage call it lands in (a second one does not wait).

    Interrupted inside a write, a storage can keep its lock: SQLite's write lock held by a session
    nobody closes, or a journal's lock file. The cleanup after Ctrl-C then waits for that lock.
    """

    depth = 0
    pending = False

    @classmethod
    def defer(cls, signum: int, frame) -> None:
        if cls.pending:
            cls.pending = False
            raise KeyboardInterrupt
        cls.pending = True


def _atomic_to_ctrl_c(storage: optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    """``storage`` with every public method shielded from Ctrl-C while it runs (see :class:`_CtrlC`).
    The methods are wrapped on the instance, so it stays an instance of its class for Optuna."""
    def shielded(method):
        @functools.wraps(method)
        def call(*args, **kwargs):
            if threading.current_thread() is not threading.main_thread():
                return method(*args, **kwargs)  # signals reach the main thread only
            if _CtrlC.depth == 0:
                previous = signal.signal(signal.SIGINT, _CtrlC.defer)
            _CtrlC.depth += 1
            try:
                return method(*args, **kwargs)
            finally:
                _CtrlC.depth -= 1
                if _CtrlC.depth == 0:
                    signal.signal(signal.SIGINT, previous)
                    if _CtrlC.pending:
                        _CtrlC.pending = False
                        signal.raise_signal(signal.SIGINT)  # the user's handler runs now, the call done

        return call

    for name in dir(type(storage)):
        if not name.startswith("_") and callable(getattr(type(storage), name)):
            setattr(storage, name, shielded(getattr(storage, name)))
    return storage


def _postgres_driver(url: str) -> str:
    """SQLAlchemy's plain ``postgresql://`` means psycopg2; use psycopg 3 (the ``postgres`` extra) if
    that is what is installed."""
    import importlib.util

    if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg") is not None:
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def dashboard_url(url: str) -> str:
    """What to pass to ``optuna-dashboard`` to open the study stored at ``url``."""
    journal = _journal_path(url)
    if journal is not None:
        return journal  # the dashboard reads a plain file path as a journal
    return _postgres_driver(url) if url.startswith("postgresql://") else url


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not reaped yet is a zombie: dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def recover_orphans(study: optuna.Study) -> list[int]:
    """Fail the RUNNING trials whose worker (on this host) is dead and enqueue their retries.

    Returns the numbers of the trials it failed. Two workers racing for the same orphan are safe:
    the storage lets only one of them finish the trial, and only that one enqueues the retry.
    """
    if isinstance(study._storage, optuna.storages.RDBStorage) and study._storage.get_heartbeat_interval():
        optuna.storages.fail_stale_trials(study)  # other hosts' dead workers, once their grace has passed
    host = socket.gethostname()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("worker")
        if owner is None:  # a worker records itself first thing: one that has not after a minute died
            started = trial.datetime_start or datetime.now()
            if (datetime.now() - started).total_seconds() < UNCLAIMED_S:
                continue
        else:
            owner_host, _, pid = owner.rpartition(":")
            if owner_host != host or not pid.isdigit() or _alive(int(pid)):
                continue
        try:
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # another worker got there first
        _retry(study, study._storage.get_trial(trial._trial_id))
        failed.append(trial.number)
    return failed


def fail_own_trials(study: optuna.Study) -> list[int]:
    """Fail the RUNNING trials this process claimed (after Ctrl-C); they are not retried."""
    me, failed = worker_id(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get("worker") == me:
            try:
                study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:
                continue
            failed.append(trial.number)
    return failed
