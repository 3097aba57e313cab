"""SGD ground truth for architectures: ``python -m nas.label --space nb201 --archs archs.txt --out labels.jsonl``.

Each architecture is trained from scratch (or from GHN-predicted parameters) with SGD and scored on
the test images, clean and under Gaussian noise, with its inference time and the first epoch at
which training accuracy reaches 90% (epochs to convergence; null if it never does), and the mean
training accuracy over the epochs (convergence speed that a short CPU recipe can measure). One JSON line
per architecture, appended as soon as it is done; a re-run skips architectures already labelled.
The paper's recipe is the default; ``--recipe cpu`` is a budget for CPU-only machines.

This module holds the label file formats and the command; the training itself is ``nas.sgd``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ghn_core.utils import lookup, user_errors

# Training and measuring a candidate live in nas.sgd; re-exported here, where label users look.
from .sgd import RECIPES, SGDRecipe, build_architecture, train_acc_mean, train_sgd

__all__ = ["SGDRecipe", "RECIPES", "PROPERTIES", "LabelledSet", "train_sgd", "build_architecture", "read_labelled",
           "sample_architectures", "validate_architecture", "main"]

log = logging.getLogger("nas.label")


#: What each property of a ``nas.label`` record means; ``nas.predictors`` fits one regressor per property.
#: A NAS-Bench-201 CSV offers every column it has (``../shared/data/nb201/README.md`` says what each is).
PROPERTIES: dict[str, str] = {
    "clean_acc": "test accuracy (%) after the label recipe's SGD",
    "noisy_acc": "test accuracy (%) under Gaussian noise (CIFAR: sigma 0.08) after the label recipe's SGD",
    "inference_ms": "inference time (ms) of a batch of 64 images on the labelling machine",
    "epochs_to_converge": "epochs until training accuracy reached the recipe's threshold",
    "train_acc_mean": "mean training accuracy (%) over the recipe's epochs: convergence speed at any budget",
}
_RECORD_FIELDS = ("arch", "space", "clean_acc", "noisy_acc", "recipe")


@dataclass
class LabelledSet:
    """Architectures of one space with their labels, read from a NAS-Bench-201 CSV or nas.label lines.

    ``properties`` maps a property (a column of an NB201 CSV, a field of :data:`PROPERTIES` of nas.label
    records) to one value per architecture (NaN where a record has none, e.g. a net that never
    converged). An NB201 CSV's columns are parsed when first asked for (``ghn_core.nb201.LabelledTable``). ``recipe`` says how the labels were made.
    """

    space: str
    archs: list[str]
    properties: Mapping[str, np.ndarray]
    recipe: dict[str, Any]
    source: str


def read_labelled(path: str | Path) -> LabelledSet:
    """Read a labelled file, checking it whole first: every record complete, every architecture valid
    for its space, one space and one recipe (labels of two recipes never mix silently)."""
    from ghn_core.nb201 import read_table

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no labels at {path}: give a NAS-Bench-201 CSV or the JSON lines of python -m nas.label")
    if path.suffix != ".jsonl":
        table = read_table(path)
        for n, arch in enumerate(table.archs, start=2):
            validate_architecture("nb201", arch, where=f"{path}, line {n}")
        return LabelledSet("nb201", table.archs, table, {"name": "NAS-Bench-201", "epochs": 200}, str(path))
    records = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {n}: not JSON ({err.msg})") from None
        missing = [f for f in _RECORD_FIELDS if f not in record]
        if missing:
            raise ValueError(f"{path}, line {n}: missing field(s) {', '.join(missing)} of a nas.label record")
        validate_architecture(record["space"], record["arch"], where=f"{path}, line {n}")
        records.append(record)
    if not records:
        raise ValueError(f"{path} has no labelled architectures")
    for field_, what in (("space", "spaces"), ("recipe", "recipes")):
        values = {json.dumps(r[field_], sort_keys=True) for r in records}
        if len(values) > 1:
            raise ValueError(f"{path} mixes {len(values)} {what} ({'; '.join(sorted(values))}): "
                             f"labels of one file must be comparable, split it")
    for r in records:  # records written before train_acc_mean was recorded derive it from their curve
        if "train_acc_mean" not in r and r.get("train_acc_curve"):
            r["train_acc_mean"] = train_acc_mean(r["train_acc_curve"])
    properties = {name: np.array([np.nan if r.get(name) is None else float(r[name]) for r in records])
                  for name in PROPERTIES if name in records[0]}
    return LabelledSet(records[0]["space"], [r["arch"] for r in records], properties, records[0]["recipe"], str(path))


def validate_architecture(space: str, arch: str, *, where: str) -> None:
    """Raise ``ArchitectureError`` naming ``where`` if ``arch`` is no architecture of ``space``."""
    from ghn_core.errors import ArchitectureError

    try:
        if space == "nb201":
            from ghn_core.nb201 import parse_arch

            parse_arch(arch)
        elif space == "deepnets":
            from ghn_core.deepnets import Architecture

            Architecture.from_json(arch)
        else:
            raise ArchitectureError(f"unknown space {space!r}; known: deepnets, nb201")
    except (ArchitectureError, ValueError, KeyError, TypeError) as err:
        raise ArchitectureError(f"{where}: {err}") from None


def sample_architectures(space: str, n: int, seed: int = 0) -> list[str]:
    """``n`` distinct architectures drawn as the search's random sampler draws them (seeded), minus
    those the space rejects: the same list for the same arguments, so a labelling run resumes."""
    import optuna

    from .space import ATTR, get_space

    if n < 1:
        raise ValueError(f"expected a sample of at least 1 architecture, got {n}")
    space_ = get_space(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    archs: dict[str, None] = {}  # insertion-ordered set
    for _ in range(100 * n):
        trial = study.ask()
        try:
            space_.suggest(trial)
            record = trial.user_attrs[ATTR]
            archs.setdefault(json.loads(record) if space == "nb201" else record)  # NB201 stores a JSON string
        except optuna.TrialPruned:
            pass  # rejected by the space's filters (DeepNets-1M: disconnected, too large, ...)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        if len(archs) == n:
            return list(archs)
    raise ValueError(f"the {space} space gave only {len(archs)} distinct architectures in {100 * n} draws")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nas.label", description=__doc__)
    parser.add_argument("--space", required=True, choices=["deepnets", "nb201"])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--archs", help="one architecture per line (NB201 string or DeepNets JSON)")
    source.add_argument("--sample", type=int, metavar="N",
                        help="label N distinct architectures drawn at random from the space (seeded by --seed)")
    parser.add_argument("--out", required=True, help="JSON-lines file; appended to and resumed")
    parser.add_argument("--recipe", default="paper", help=f"one of {', '.join(RECIPES)}")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    parser.add_argument("--max-batches", type=int, default=None, help="override the recipe's batches per epoch")
    parser.add_argument("--eval-batches", type=int, default=None, help="override the recipe's test batches")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # --sample's throwaway study is no news
    with user_errors(args.debug, interrupted=f"the labels finished so far are in {args.out}; run the same command "
                                             f"to label the rest"):
        recipe = lookup(RECIPES, args.recipe, "recipe")
        overrides = {"epochs": args.epochs, "max_batches": args.max_batches, "eval_batches": args.eval_batches}
        recipe = dataclasses.replace(recipe, **{k: v for k, v in overrides.items() if v is not None})
        if args.sample is not None:
            archs = sample_architectures(args.space, args.sample, args.seed)[: args.limit]
        else:
            archs = [line.strip() for line in Path(args.archs).read_text().splitlines() if line.strip()][: args.limit]
            for n, arch in enumerate(archs, start=1):  # every line checked before any training
                validate_architecture(args.space, arch, where=f"{args.archs}, line {n}")
        out = Path(args.out)
        done = set()
        if out.exists():
            done = {json.loads(line)["arch"] for line in out.read_text().splitlines() if line.strip()}
        todo = [a for a in archs if a not in done]
        log.info("%d architectures, %d already labelled in %s", len(archs), len(archs) - len(todo), out)
        from .oracle import SGDOracle

        oracle = SGDOracle(args.space, recipe, data_dir=args.data_dir, device=args.device, seed=args.seed)
        for i, arch in enumerate(todo):
            labels = oracle.label(arch)
            cost = labels.pop("cost_s")
            record = {"arch": arch, "space": args.space, **labels, "recipe": asdict(recipe), "seed": args.seed,
                      "train_time_s": cost}
            with out.open("a") as f:
                f.write(json.dumps(record) + "\n")
            log.info("[%d/%d] clean %.2f%% noisy %.2f%% (%.0f s)", i + 1, len(todo), labels["clean_acc"],
                     labels["noisy_acc"], record["train_time_s"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
