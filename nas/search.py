"""Search an architecture space on GHN proxies: ``python -m nas.search --objective robustness``.

Each trial draws an architecture from the space (define-by-run), scores it with the objective's
proxies (seconds on a CPU), and records the architecture and every proxy value on the trial. The
study lives in an Optuna storage (a SQLite file under ``studies/`` by default; a journal file or a
PostgreSQL URL with ``--storage``, see ``nas.storage``), so ``optuna-dashboard <storage>`` opens it,
running the same command again continues it, and ``--workers N`` (or N commands on several hosts)
share it. Ctrl-C leaves the study consistent (the interrupted trial is marked FAIL). The study records
its objective, space, seed and the GHN's weight hash.

With ``--labels FILE`` (records of ``python -m nas.label`` on the same space), the accuracy,
robustness and trainability objectives are scored by property predictors fitted on those records
instead of the ones shipped beside the GHN: regressors from the GHN's graph embedding (and, on
DeepNets-1M, cheap graph features; ``nas.predictors.SPACE_DEFAULTS``) to the clean or noisy SGD
accuracy or the mean training accuracy (``nas.predictors.fit_property``). They are saved in the run
folder and recorded on the study (path, and the labels' digest, so a continued study cannot
silently switch labels).

``--space pool:FILE`` searches a fixed list of architectures (``nas.pool``). ``--label-budget K``
spends K labels instead of scoring proxies: each trial labels the candidate a model of the labels so
far expects best (``nas.budget``), by SGD or, with ``--label-from``, from a table (``nas.oracle``).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import multiprocessing
import platform
import socket
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import optuna
import torch
from optuna.trial import TrialState
from tqdm.auto import tqdm

from ghn_core import load_ghn
from ghn_core.data import load_split
from ghn_core.errors import DisconnectedGraphError, GhnNasError
from ghn_core.model.checkpoint import state_hash
from ghn_core.utils import lookup, non_negative_int, positive_int, resolve_device, user_errors

from .finalize import finalize
from .objectives import SHIPPED, resolve_objectives
from .predictors import (file_digest, fit_property, load_predictors, predictors_path, save_predictors,
                         shipped_properties)
from .proxies import ProxyContext, compute
from .report import architecture_file, axis_label, plural, top_trials, write_report
from .budget import (CLAIM, LabelBudgetSampler, label_objective, label_property, labelled_trials, make_candidates,
                     table_property)
from .label import RECIPES, SGDRecipe, read_labelled, sample_architectures
from .oracle import SGDOracle, TableOracle
from .pool import POOL_PREFIX, Pool
from .space import get_space
from .storage import dashboard_url, fail_own_trials, mask_url, open_storage, recover_orphans, worker_id

__all__ = ["SearchConfig", "make_objective", "open_study", "search_worker", "run_search", "main"]

log = logging.getLogger("nas.search")
GHN_PROXIES = ("ghn_accuracy", "ghn_robustness", "trainability")  # these write predicted parameters


@dataclass
class SearchConfig:
    objective: list[str] = field(default_factory=lambda: ["robustness"])
    space: str = "deepnets"
    trials: int = 100
    top_k: int = 3
    seed: int = 0
    study_name: str | None = None      # default: "<objectives>-<space>"
    storage: str | None = None         # default: sqlite:///studies/<study_name>.db
    ghn: str | None = None             # GHN checkpoint; None: the shipped one
    data_dir: str | None = None
    n_images: int = 512                # validation images the GHN proxies score on
    device: str = "auto"
    final_recipe: str = "cpu"          # nas.sgd recipe of the top-k's SGD training: the label recipe
    final_epochs: int | None = None    # overrides of the recipe: epochs (0: no final training),
    final_batches: int | None = None   # ... batches per epoch (0: the whole training set)
    final_eval_batches: int | None = None  # ... and test batches of 256 scored (0: all 10k)
    init: str = "random"               # SGD (labels, final training) from "random" init or the GHN's parameters ("ghn")
    out: str | None = None             # run folder for the report; default runs/<study_name>
    workers: int = 1                   # processes running trials on the study at once
    sampler: str = "auto"              # auto (TPE / NSGA-II), tpe, nsga2, random (a baseline)
    labels: str | None = None          # nas.label records: accuracy/robustness scored by a fitted regressor
    label_budget: int | None = None    # trials are labels (nas.budget): at most this many, chosen by a model
    label_from: str | None = None      # ... looked up in this labelled file (benchmarking) instead of SGD
    label_recipe: str = "cpu"          # ... else trained with this nas.sgd recipe from the GHN's parameters
    candidates: int = 500              # ... among this many seeded random architectures (a pool: all of it)

    def resolved_name(self) -> str:
        space = f"pool-{Path(self.space.removeprefix(POOL_PREFIX)).stem}" if self.is_pool else self.space
        return self.study_name or f"{'+'.join(self.objective)}-{space}"

    @property
    def is_pool(self) -> bool:
        return self.space.startswith(POOL_PREFIX)

    def base_space(self) -> str:
        """The space the architectures belong to: ``space``, or a pool's (``pool:FILE``)."""
        return get_space(self.space).name if self.is_pool else self.space

    def resolved_out(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / self.resolved_name()

    def final_sgd_recipe(self) -> SGDRecipe:
        """The final candidates' SGD recipe: ``final_recipe`` with the ``final_*`` overrides (0 batches: all)."""
        recipe = lookup(RECIPES, self.final_recipe, "final recipe")
        overrides = {"epochs": self.final_epochs, "max_batches": self.final_batches,
                     "eval_batches": self.final_eval_batches}
        return dataclasses.replace(recipe, **{name: (value if name == "epochs" else value or None)
                                              for name, value in overrides.items() if value is not None})

    def label_property(self) -> str:
        """The label a label-budget study maximises (``nas.budget.OBJECTIVE_LABELS``)."""
        if len(self.objective) != 1:
            raise ValueError(f"a label budget needs one objective, got {' '.join(self.objective)}")
        available = list(read_labelled(self.label_from).properties) if self.label_from else None
        return label_property(self.objective[0], available)

    def proxies(self) -> tuple[list[str], list[str]]:
        """(proxy names, directions) of the objectives: label regressors in place of GHN accuracy
        proxies when ``labels`` is set, else the predictors shipped beside the GHN where they exist;
        with a label budget, the label itself."""
        if self.label_budget is not None:
            return [f"label_{self.label_property()}"], ["maximize"]
        path = predictors_path(self.ghn)
        if self.ghn is None and not path.is_file() and self.labels is None:
            raise GhnNasError(f"the predictors shipped beside the GHN are missing ({path}): reinstall ghn-nas, or "
                              f"search on a raw GHN proxy (--objective ghn_accuracy, ghn_robustness)")
        # A user's own GHN without predictors beside it (not yet fitted) keeps the raw GHN proxies.
        return resolve_objectives(self.objective, regress=self.labels is not None, space=self.base_space(),
                                  shipped=shipped_properties(path) if path.is_file() else None, shipped_path=str(path))

    def resolved_storage(self) -> str:
        """The storage URL: ``--storage``, else a file under studies/ (SQLite for one worker, a
        journal file for several)."""
        if self.storage:
            return self.storage
        if self.workers > 1:
            return f"journal:studies/{self.resolved_name()}.journal"
        return f"sqlite:///studies/{self.resolved_name()}.db"


def make_objective(space, proxies: Sequence[str], ctx: ProxyContext) -> Callable[[optuna.Trial], float | tuple]:
    """The Optuna objective: build, score with each proxy, record values on the trial."""
    order = sorted(proxies, key=lambda p: p in GHN_PROXIES)  # proxies that predict parameters run last
    me = worker_id()
    device = _device_name(ctx.device)

    def objective(trial: optuna.Trial):
        trial.set_user_attr("worker", me)  # lets other workers fail this trial if this process dies
        trial.set_user_attr("device", device)  # where latencies were measured (the report's unit)
        model = space.suggest(trial)
        ctx.new_trial()  # GHN proxies share one trace and one prediction of this trial's net
        values = {}
        for name in order:
            try:
                values[name] = compute(name, model, ctx)
            except DisconnectedGraphError as err:  # a legal but useless draw: prune it, draw another
                trial.set_user_attr("pruned_because", str(err))
                raise optuna.TrialPruned(str(err)) from None
            trial.set_user_attr(f"proxy_{name}", values[name])
        result = tuple(values[p] for p in proxies)
        return result if len(result) > 1 else result[0]

    return objective


def _device_name(device) -> str:
    """``cuda:0 (NVIDIA H200) on host`` or ``cpu (x86_64) on host``: what a latency was measured on."""
    if device.type == "cuda":
        what = f"{device} ({torch.cuda.get_device_name(device)})"
    else:
        what = f"{device} ({platform.processor() or platform.machine() or 'unknown'})"
    return f"{what} on {socket.gethostname()}"


SAMPLERS = {"auto": None, "tpe": optuna.samplers.TPESampler, "nsga2": optuna.samplers.NSGAIISampler,
            "random": optuna.samplers.RandomSampler}


def make_sampler(name: str, seed: int, *, multi_objective: bool, pool: bool = False) -> optuna.samplers.BaseSampler:
    """``auto``: TPE for one objective, NSGA-II for several, and on a pool (whose index has no structure
    a model could learn) every architecture once in a seeded random order; ``random``: the random-search
    baseline."""
    if lookup(SAMPLERS, name, "sampler") is None:
        if pool:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable in use since 3.1
                return optuna.samplers.BruteForceSampler(seed=seed)
        name = "nsga2" if multi_objective else "tpe"
    return SAMPLERS[name](seed=seed)


def _count(study: optuna.Study, state: TrialState) -> int:
    return len(study.get_trials(deepcopy=False, states=(state,)))


def _complete(study: optuna.Study) -> int:
    return _count(study, TrialState.COMPLETE)


def open_study(cfg: SearchConfig) -> optuna.Study:
    """Create or load the study and check it was run with the same objective, space, seed, GHN and
    labels; fit and save the label regressors its proxies need. Every input (space, device, labels,
    GHN, image data) is checked before the storage is opened: a bad one leaves nothing written."""
    return _open_study(cfg)[0]


def _open_study(cfg: SearchConfig) -> tuple[optuna.Study, ProxyContext | None]:
    """``open_study``, also returning the proxy context (GHN on the device, images) it checked (None
    for a label-budget study)."""
    space = get_space(cfg.space)  # an unknown space or a bad pool fails before anything is written
    if cfg.label_budget is not None:
        _check_label_budget(cfg, space)
    elif cfg.is_pool and cfg.trials > len(space.pool):
        raise ValueError(f"--trials {cfg.trials} is more than the {len(space.pool)} architectures of the pool "
                         f"{space.pool.source}")
    proxies, directions = cfg.proxies()
    resolve_device(cfg.device)
    if cfg.labels is not None and not Path(cfg.labels).is_file():
        raise FileNotFoundError(f"no labels at {cfg.labels}: give the JSON lines python -m nas.label wrote")
    ghn = load_ghn(cfg.ghn)
    if (ghn.config.num_classes, ghn.config.image_size) != (10, 32):  # proxies score CIFAR-10 images
        raise GhnNasError(f"the GHN {cfg.ghn} predicts {ghn.config.num_classes}-class nets for "
                          f"{ghn.config.image_size} px images; the search scores CIFAR-10 (10 classes, 32 px): "
                          f"give a CIFAR-10 GHN (the shipped one, or ghn_core.train --dataset cifar10)")
    ghn_hash = state_hash(ghn.state_dict())
    labels_digest = file_digest(cfg.labels) if cfg.labels else None
    # Fitted before the storage is touched (bad labels: nothing written), saved once the study checks out.
    regressed = [p.removeprefix("predicted_") for p in proxies if p.startswith("predicted_")]
    shipped = _shipped_predictors(cfg, ghn, regressed)  # the ones beside the GHN (checked against it)
    if cfg.base_space() in SHIPPED and not predictors_path(cfg.ghn).is_file() and cfg.labels is None:
        log.info("no predictors beside %s: GHN proxies score the objectives (fit them: python -m nas.predictors fit)",
                 cfg.ghn)
    predictors = _fit_regressors(cfg, ghn, [label for label in regressed if label not in shipped])
    # The image data too (a missing or empty --data-dir), and only then the storage. Labels looked up in
    # a table need no images; labels trained need the training set.
    ctx = None  # a label-budget study scores no proxies: its worker needs the GHN only
    if cfg.label_budget is None:
        ctx = ProxyContext.from_data(ghn, n_images=cfg.n_images, seed=cfg.seed, data_dir=cfg.data_dir,
                                     device=cfg.device)
    elif not cfg.label_from:
        load_split("cifar10", "train", data_dir=cfg.data_dir)
    url = cfg.resolved_storage()
    if cfg.storage is None:
        Path("studies").mkdir(exist_ok=True)  # the default folder; a given path's folder must exist
    storage = open_storage(url)
    try:
        study = optuna.create_study(study_name=cfg.resolved_name(), storage=storage, directions=directions,
                                    load_if_exists=True)
    except Exception as err:  # e.g. the server went away between opening and creating
        raise GhnNasError(mask_url(f"cannot open the study storage {url!r}: {type(err).__name__}: {err}", url)) from None
    attrs = {"objective": cfg.objective, "proxies": proxies, "space": cfg.space, "seed": cfg.seed, "ghn_hash": ghn_hash,
             "sampler": cfg.sampler, "labels": labels_digest}
    if cfg.label_budget is not None:  # a continued study must label the same way
        attrs["label_budget"] = cfg.label_budget
        attrs["oracle"] = ({"table": cfg.label_from, "sha256": file_digest(cfg.label_from)} if cfg.label_from
                           else {"sgd": cfg.label_recipe, "init": cfg.init})
        attrs["candidates"] = "pool" if cfg.is_pool else cfg.candidates
    if shipped:  # which predictors scored the study: a continued study must use the same file
        path = predictors_path(cfg.ghn)
        attrs["shipped_predictors"] = {"path": str(path), "sha256": file_digest(path), "properties": shipped}
    for key, value in attrs.items():
        if key in study.user_attrs and study.user_attrs[key] != value:
            raise GhnNasError(f"study {cfg.resolved_name()!r} was run with {key}={study.user_attrs[key]!r}, "
                              f"not {value!r}; pick another --study-name")
        if key not in study.user_attrs:
            study.set_user_attr(key, value)
    if predictors:
        paths = {label: str(save_predictors([p], cfg.resolved_out() / f"predictor_{label}.joblib", ghn=ghn))
                 for label, p in predictors.items()}
        log.info("label regressors fitted on %s: %s", cfg.labels, ", ".join(paths.values()))
        study.set_user_attr("predictors", paths)
    if study.metric_names is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # metric names: stable in use
            study.set_metric_names(proxies)
    return study, ctx


def _fit_regressors(cfg: SearchConfig, ghn, labels: Sequence[str]) -> dict:
    """A property predictor (``nas.predictors.fit_property``) per label, fitted on ``cfg.labels``; an
    NB201 CSV's 200-epoch columns stand for clean and noisy accuracy (``nas.budget.table_property``)."""
    if not labels:
        return {}
    labelled = read_labelled(cfg.labels)
    if labelled.space != cfg.base_space():
        raise ValueError(f"{cfg.labels} labels the {labelled.space} space, but the search is on {cfg.base_space()}")
    return {label: fit_property(ghn, labelled, table_property(label, list(labelled.properties)), seed=cfg.seed)
            for label in labels}


def _check_label_budget(cfg: SearchConfig, space) -> None:
    """A label budget's inputs, checked before anything is written: one objective with a label, a table of
    the same space (or a known recipe), and no more labels than candidates."""
    cfg.label_property()  # one objective that has a label (in the table, if one is given)
    if cfg.label_from:
        if not cfg.is_pool:
            raise ValueError("--label-from looks labels up in a table: search a pool of its architectures "
                             "(--space pool:FILE)")
        oracle = TableOracle(read_labelled(cfg.label_from))
        missing = [arch for arch in space.pool.archs if arch not in oracle]
        if missing:
            raise ValueError(f"--label-from {cfg.label_from} has no label for {len(missing)} of the pool's "
                             f"{len(space.pool)} architectures (the first: {missing[0][:80]})")
    else:
        lookup(RECIPES, cfg.label_recipe, "label recipe")
    n = len(space.pool) if cfg.is_pool else cfg.candidates
    if cfg.label_budget > n:
        raise ValueError(f"--label-budget {cfg.label_budget} is more than the {n} candidate architectures"
                         + (f" of the pool {space.pool.source}" if cfg.is_pool else " (--candidates)"))


def _shipped_predictors(cfg: SearchConfig, ghn, labels: Sequence[str]) -> list[str]:
    """The labels among ``labels`` that the predictors shipped beside the GHN score on ``cfg.space``
    (without --labels; ``SearchConfig.proxies`` has checked that the file has them); loading them checks
    they were fitted on this GHN's embeddings."""
    space = cfg.base_space()
    wanted = [label for label in labels if f"predicted_{label}" in SHIPPED.get(space, {}).values()]
    if wanted and cfg.labels is None:
        load_predictors(ghn, predictors_path(cfg.ghn))
        return wanted
    return []


def search_worker(cfg: SearchConfig, index: int = 0, *, progress: bool = True,
                  ctx: ProxyContext | None = None) -> None:
    """One worker: run trials until the study has ``cfg.trials`` complete ones (counting every worker's).

    Before each trial it fails and retries the trials of dead workers (``nas.storage.recover_orphans``)
    and waits rather than starting a trial the running ones will make surplus. Two workers that check
    at the same instant can still both start one, so a study with several workers may end with up to
    ``workers - 1`` trials more than asked. ``ctx``: the proxy context ``open_study`` built (else one
    is built here).
    """
    proxies, directions = cfg.proxies()
    study = optuna.load_study(study_name=cfg.resolved_name(), storage=open_storage(cfg.resolved_storage()))
    if cfg.label_budget is not None:
        return _budget_worker(cfg, study, index, progress=progress, ctx=ctx)
    done = _complete(study)
    if done >= cfg.trials:
        return
    # A continued study must not replay the draws of its first run, and workers must not draw alike:
    # offset the seed by the trials already complete and by the worker index.
    seed = cfg.seed + done + 7919 * index
    study.sampler = make_sampler(cfg.sampler, seed, multi_objective=len(directions) > 1, pool=cfg.is_pool)
    if ctx is None:
        ctx = ProxyContext.from_data(load_ghn(cfg.ghn), n_images=cfg.n_images, seed=cfg.seed, data_dir=cfg.data_dir,
                                     device=cfg.device)
    ghn = ctx.ghn
    # each file holds one predictor, fitted on this GHN's embeddings (loading checks it)
    ctx.predictors = {label: next(iter(load_predictors(ghn, path).values()))
                      for label, path in study.user_attrs.get("predictors", {}).items()}
    if "shipped_predictors" in study.user_attrs:
        bundle = load_predictors(ghn, study.user_attrs["shipped_predictors"]["path"])
        ctx.predictors.update({label: bundle[(cfg.base_space(), label)]
                               for label in study.user_attrs["shipped_predictors"]["properties"]})
    objective = make_objective(get_space(cfg.space), proxies, ctx)
    run_until(study, objective, cfg.trials, desc=f"study {cfg.resolved_name()}", progress=progress)


def run_until(study: optuna.Study, objective: Callable[[optuna.Trial], float | tuple], target: int, *,
              counts: Callable[[optuna.Study], tuple[int, int]] | None = None, desc: str = "study",
              unit: str = "trial", progress: bool = True) -> None:
    """Run ``objective`` one trial at a time until ``counts(study)`` (done, running; default: complete
    and running trials, every worker's) has ``target`` done, retrying the trials of dead workers and
    waiting rather than starting a trial the running ones will make surplus."""
    if counts is None:
        def counts(study: optuna.Study) -> tuple[int, int]:
            return _complete(study), _count(study, TrialState.RUNNING)
    bar = tqdm(total=target, initial=min(counts(study)[0], target), desc=desc, unit=unit, disable=not progress)
    try:
        while True:
            recover_orphans(study)
            done, running = counts(study)
            bar.update(done - bar.n)
            if done >= target:
                break
            if done + running >= target:
                time.sleep(0.5)  # the study is finishing in other workers (or they died: recovered above)
                continue
            study.optimize(objective, n_trials=1)
    except KeyboardInterrupt:
        # Optuna fails the trial it was running unless Ctrl-C lands between its steps: make sure.
        fail_own_trials(study)
        raise
    finally:
        bar.close()


def _candidates_pool(cfg: SearchConfig) -> Pool:
    """What a label-budget study labels among: the pool, or ``cfg.candidates`` seeded draws of the space."""
    if cfg.is_pool:
        return get_space(cfg.space).pool
    archs = sample_architectures(cfg.space, cfg.candidates, cfg.seed)
    return Pool(cfg.space, tuple(archs), f"{len(archs)} random {cfg.space} architectures (seed {cfg.seed})")


def _oracle(cfg: SearchConfig, ghn):
    if cfg.label_from:
        return TableOracle(read_labelled(cfg.label_from))
    return SGDOracle(cfg.base_space(), RECIPES[cfg.label_recipe], ghn=ghn if cfg.init == "ghn" else None,
                     data_dir=cfg.data_dir, device=cfg.device, seed=cfg.seed)


def _budget_worker(cfg: SearchConfig, study: optuna.Study, index: int, *, progress: bool,
                   ctx: ProxyContext | None) -> None:
    """One worker of a label-budget study: label what :func:`nas.budget.propose` asks for until the study
    holds ``cfg.label_budget`` labels (every worker's)."""
    def counts(study: optuna.Study) -> tuple[int, int]:
        running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if CLAIM in t.user_attrs]
        return len(labelled_trials(study)), len(running)

    if counts(study)[0] >= cfg.label_budget:
        return  # a resumed study that is done labels nothing
    ghn = ctx.ghn if ctx is not None else load_ghn(cfg.ghn)
    candidates = make_candidates(ghn, _candidates_pool(cfg), objective=cfg.objective[0], progress=progress)
    study.sampler = LabelBudgetSampler(candidates, cfg.seed + 7919 * index)
    objective = label_objective(candidates, _oracle(cfg, ghn), cfg.label_property(), cfg.label_budget)
    run_until(study, objective, cfg.label_budget, counts=counts, desc=f"labels {cfg.resolved_name()}", unit="label",
              progress=progress)


def _drop_interrupt_traceback(record: logging.LogRecord) -> bool:
    """A logging filter: keep the record, without the traceback of a KeyboardInterrupt."""
    if record.exc_info and record.exc_info[0] is KeyboardInterrupt:
        record.exc_info = record.exc_text = None
    return True


def _spawned_worker(cfg: SearchConfig, index: int) -> None:
    logging.getLogger("optuna.study._optimize").addFilter(_drop_interrupt_traceback)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search_worker(cfg, index, progress=False)


def _check_counts(cfg: SearchConfig) -> None:
    """Counts out of range are refused before anything is written (as argparse does for the CLI)."""
    at_least = {"trials": 1, "n_images": 1, "workers": 1, "top_k": 0, "final_epochs": 0, "final_batches": 0,
                "final_eval_batches": 0, "label_budget": 1, "candidates": 1}
    for name, low in at_least.items():
        value = getattr(cfg, name)
        if value is None and name in ("final_epochs", "final_batches", "final_eval_batches", "label_budget"):
            continue  # None: the whole set
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")


def run_search(cfg: SearchConfig, *, progress: bool = True) -> optuna.Study:
    """Create or continue the study and run trials until it has ``cfg.trials`` complete ones,
    in this process (``cfg.workers == 1``) or in ``cfg.workers`` processes sharing the study."""
    _check_counts(cfg)
    lookup(SAMPLERS, cfg.sampler, "sampler")  # before anything is written
    cfg.final_sgd_recipe()
    resolve_device(cfg.device)  # a machine without the device: refused before the study exists
    if cfg.workers > 1 and cfg.resolved_storage().startswith("sqlite"):
        raise GhnNasError(f"{cfg.workers} workers on SQLite storage {mask_url(cfg.resolved_storage())!r} would wait "
                          f"on its lock: use --storage journal:FILE (one host) or a PostgreSQL URL")
    study, ctx = _open_study(cfg)
    if cfg.label_budget is None:
        log.info("study %s in %s: %d of %d trials complete", cfg.resolved_name(), mask_url(cfg.resolved_storage()),
                 _complete(study), cfg.trials)
    else:
        log.info("study %s in %s: %d of %d labels", cfg.resolved_name(), mask_url(cfg.resolved_storage()),
                 len(labelled_trials(study)), cfg.label_budget)
    if cfg.workers == 1:
        search_worker(cfg, 0, progress=progress, ctx=ctx)
    else:
        spawn = multiprocessing.get_context("spawn")
        procs = [spawn.Process(target=_spawned_worker, args=(cfg, i), name=f"nas-worker-{i}")
                 for i in range(1, cfg.workers)]
        for p in procs:
            p.start()
        try:
            search_worker(cfg, 0, progress=progress, ctx=ctx)
        finally:
            for p in procs:
                p.join()
        failed = [p.name for p in procs if p.exitcode != 0]
        if failed:
            log.warning("workers %s exited with an error; the others finished the study", ", ".join(failed))
    return study


def _table(study: optuna.Study, k: int) -> str:
    names = study.metric_names or [f"value{i}" for i in range(len(study.directions))]
    rows = [f"| trial | {' | '.join(axis_label(n) for n in names)} | params at C=32 (M) |", "|" + "---|" * (len(names) + 2)]
    for t in top_trials(study, k):
        params = t.user_attrs.get("num_params_c32")
        size = f"{params / 1e6:.2f}" if params is not None else "-"
        rows.append(f"| {t.number} | {' | '.join(f'{v:.3g}' for v in t.values)} | {size} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nas.search", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = SearchConfig()
    parser.add_argument("--objective", nargs="+", default=defaults.objective,
                        help="accuracy, robustness, efficiency, trainability, or a proxy's name (several: "
                             "multi-objective). Where property predictors ship beside the GHN they score the objective "
                             "(deepnets: accuracy, robustness, trainability; nb201: accuracy); a proxy's own name, e.g. "
                             "ghn_robustness, is the raw GHN proxy (default: %(default)s)")
    parser.add_argument("--space", default=defaults.space,
                        help="deepnets, nb201, or pool:FILE, a fixed list of architectures (a nas.label JSONL, an "
                             "NB201 CSV, or one architecture per line) (default: %(default)s)")
    parser.add_argument("--trials", type=positive_int, default=defaults.trials,
                        help="complete trials the study should have; a rerun continues up to this (default: %(default)s)")
    parser.add_argument("--top-k", type=non_negative_int, default=defaults.top_k,
                        help="best trials listed, SGD-trained and reported (0: none) (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed of the sampler, the proxy images and the final training; recorded on the "
                             "study (default: %(default)s)")
    parser.add_argument("--sampler", choices=SAMPLERS, default=defaults.sampler,
                        help="auto: TPE (one objective) or NSGA-II (several); random: a random-search baseline "
                             "(default: %(default)s)")
    parser.add_argument("--study-name", default=None,
                        help="name of the study in the storage (default: <objectives>-<space>, e.g. robustness-deepnets)")
    parser.add_argument("--storage", default=None,
                        help="sqlite:///FILE, journal:FILE (several workers, one host) or postgresql://... "
                             "(several hosts); default: a file in studies/")
    parser.add_argument("--workers", type=positive_int, default=defaults.workers,
                        help="processes running trials on the study at once (several: the default storage is a "
                             "journal file) (default: %(default)s)")
    parser.add_argument("--ghn", default=None, help="GHN checkpoint (default: the shipped one)")
    parser.add_argument("--data-dir", default=None,
                        help="CIFAR-10 ImageFolder tree or torchvision root (default: $GHN_NAS_DATA, else a "
                             "download into ~/.cache/ghn-nas/data)")
    parser.add_argument("--n-images", type=positive_int, default=defaults.n_images,
                        help="held-out validation images the GHN proxies score each net on (default: %(default)s)")
    parser.add_argument("--device", default=defaults.device,
                        help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N (default: %(default)s)")
    parser.add_argument("--final-recipe", default=defaults.final_recipe,
                        help=f"SGD recipe of the top-k's final training ({', '.join(RECIPES)}); the label recipe by "
                             f"default, so a study's true accuracy means what a label means (default: %(default)s)")
    parser.add_argument("--final-epochs", type=non_negative_int, default=None,
                        help="override the recipe's epochs (0: skip final training)")
    parser.add_argument("--final-batches", type=non_negative_int, default=None,
                        help="override the recipe's batches per epoch (0: the whole training set)")
    parser.add_argument("--final-eval-batches", type=non_negative_int, default=None,
                        help="override the recipe's test batches of 256 scored per candidate (0: the whole test set)")
    # random: on NB201, labels from the GHN's parameters ranked cells far worse (BENCHMARKS, "Label fidelity")
    parser.add_argument("--init", choices=["random", "ghn"], default=defaults.init,
                        help="SGD (the label budget's labels and the final training) from PyTorch's random init or "
                             "from the GHN's predicted parameters (default: %(default)s)")
    parser.add_argument("--labels", default=None,
                        help="nas.label JSON lines of this space: score accuracy/robustness/trainability by predictors "
                             "on GHN embeddings fitted on their clean/noisy/mean training accuracy (saved in the run folder)")
    parser.add_argument("--label-budget", type=positive_int, default=None, metavar="K",
                        help="spend K labels instead of scoring proxies: each trial labels the architecture a model "
                             "of the labels so far expects best (nas.budget); the final candidates are the labelled "
                             "ones (one objective: accuracy or robustness)")
    parser.add_argument("--label-from", default=None, metavar="FILE",
                        help="with --label-budget on a pool: look labels up in this labelled file (an NB201 CSV or "
                             "nas.label JSONL) instead of training; for benchmarking searches")
    parser.add_argument("--label-recipe", default=defaults.label_recipe,
                        help=f"with --label-budget: the SGD recipe of a label ({', '.join(RECIPES)}; "
                             f"its init: --init) (default: %(default)s)")
    parser.add_argument("--candidates", type=positive_int, default=defaults.candidates,
                        help="with --label-budget on a space (not a pool): seeded random architectures to choose "
                             "among (default: %(default)s)")
    parser.add_argument("--out", default=None,
                        help="run folder for report.md, trials.csv, plots and label regressors "
                             "(default: runs/<study name>)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = SearchConfig(**{k: v for k, v in vars(args).items() if k != "debug"})
    # Optuna logs the trial Ctrl-C interrupted with a 40-line traceback; the line below says what happened.
    logging.getLogger("optuna.study._optimize").addFilter(_drop_interrupt_traceback)
    with user_errors(args.debug, interrupted="the study is consistent, with the final candidates trained so far; "
                                             "run the same command to continue it"):
        study = run_search(cfg)
        print(f"study {cfg.resolved_name()} in {mask_url(cfg.resolved_storage())}: "
              f"{plural(_complete(study), 'complete trial')} ({_count(study, TrialState.PRUNED)} pruned, "
              f"{_count(study, TrialState.FAIL)} failed); top {cfg.top_k}:")
        print(_table(study, cfg.top_k))
        recipe = cfg.final_sgd_recipe()
        trained = recipe.epochs > 0 and cfg.top_k > 0 and cfg.label_budget is None  # labels are final
        if trained:
            finalize(study, get_space(cfg.space), cfg.top_k, recipe, init=cfg.init,
                     ghn=load_ghn(cfg.ghn) if cfg.init == "ghn" else None, data_dir=cfg.data_dir, device=cfg.device,
                     seed=cfg.seed)
        report = write_report(study, cfg.resolved_out(), top_k=cfg.top_k, show_final=trained)
        print(f"report: {report}")
        best = top_trials(study, 1)
        if best:
            path = architecture_file(cfg.resolved_out(), 1, best[0].number)
            print(f"best architecture (trial {best[0].number}): {path}")
            print(f"load it with: python -c \"import nas; model = nas.load_architecture('{path}')\"")
        print(f"open the study with: optuna-dashboard {mask_url(dashboard_url(cfg.resolved_storage()))}")
    log.debug("config: %s", asdict(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
