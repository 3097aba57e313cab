#!/usr/bin/env bash
# Reproduce the committed studies (studies/README.md says what they found):
#   bash studies/run.sh [PART ...]   # from the repository root; GHN_NAS_DATA must point at CIFAR-10
# PART: a study name (robustness, accuracy, efficiency, trainability, robustness+efficiency) or
# summary; all of them in that order by default. Parts may run in separate processes (e.g. two at a
# time on two cores); the summary comes last.
# Each study is the main command on its defaults (the shipped GHN and property predictors, TPE or
# NSGA-II, seed 0, its top-k trained from random init by the `cpu` label recipe) with its own name and
# storage. The random baseline is no study: nas/data/deepnets_cpu.jsonl holds the labels of a
# uniform sample of the space (`nas.label --space deepnets --sample N --seed 0`) under the same recipe.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
TRIALS=${TRIALS:-100}   # nas.search's default
TOP_K=${TOP_K:-3}       # final candidates SGD-trained per study: nas.search's default
storage="sqlite:///studies/studies.db"

search() {  # $1: a study name, the objectives joined by '+'
    # shellcheck disable=SC2086  # "robustness+efficiency" becomes two --objective words on purpose
    python -m nas.search --objective ${1//+/ } --trials "$TRIALS" --top-k "$TOP_K" --device cpu \
        --storage "$storage" --study-name "$1" --out "studies/$1"
}

for part in "${@:-robustness accuracy efficiency trainability robustness+efficiency summary}"; do
    for target in $part; do
        case $target in
            summary) python studies/summarize.py ;;
            *) search "$target" ;;
        esac
    done
done
