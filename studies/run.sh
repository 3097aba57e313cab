#!/usr/bin/env bash
# Reproduce the committed studies (studies/README.md says what they found):
#   bash studies/run.sh [PART ...]   # from the repository root; GHN_NAS_DATA must point at CIFAR-10
# PART: a study name (accuracy, robustness, efficiency, trainability, robustness+efficiency),
# baseline or summary; all of them in that order by default.
# Five searches on the DeepNets-1M space with the shipped GHN, their top-k trained with SGD, and a
# random-search baseline (same trials, random sampler) whose first LABELLED architectures are
# trained with the same SGD recipe, so the robust search can be compared with it on true noisy accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
TRIALS=${TRIALS:-30}      # trials per study
TOP_K=${TOP_K:-2}         # final candidates trained per study
LABELLED=${LABELLED:-10}  # random-search architectures trained for the baseline
BATCHES=${BATCHES:-30}    # SGD budget of every trained net: 1 epoch of at most BATCHES batches of 96
EVAL=${EVAL:-10}          # ... scored on EVAL test batches of 256 (clean and noisy)
storage="sqlite:///studies/studies.db"
common=(--space deepnets --trials "$TRIALS" --top-k "$TOP_K" --final-epochs 1 --final-batches "$BATCHES"
        --final-eval-batches "$EVAL" --device cpu --seed 0 --storage "$storage")

search() {  # $1: a study name, the objectives joined by '+'
    # shellcheck disable=SC2086  # "robustness+efficiency" becomes two --objective words on purpose
    python -m nas.search --objective ${1//+/ } "${common[@]}" --study-name "$1" --out "studies/$1"
}

baseline() {
    # Seed 1: the TPE studies' first (random start-up) trials come from seed 0; this is an independent sample.
    python -m nas.search --objective robustness --sampler random "${common[@]}" --seed 1 --final-epochs 0 \
        --study-name random-robustness --out studies/random-robustness
    # The random sampler's draws do not depend on the proxies: its first trials are a uniform sample.
    python -c '
import csv
rows = [r for r in csv.DictReader(open("studies/random-robustness/trials.csv")) if r["state"] == "COMPLETE"]
open("studies/random-robustness/archs.txt", "w").write("".join(r["architecture"] + "\n" for r in rows))'
    python -m nas.label --space deepnets --archs studies/random-robustness/archs.txt --limit "$LABELLED" \
        --out studies/random-robustness/labels.jsonl --recipe cpu --epochs 1 --max-batches "$BATCHES" \
        --eval-batches "$EVAL" --device cpu --seed 0
}

# Parts may run in separate processes (e.g. two at a time on two cores); the summary comes last.
for part in "${@:-accuracy robustness efficiency trainability robustness+efficiency baseline summary}"; do
    for target in $part; do
        case $target in
            baseline) baseline ;;
            summary) python studies/summarize.py ;;
            *) search "$target" ;;
        esac
    done
done
