#!/usr/bin/env bash
# Reproduce the committed studies (studies/README.md says what they found):
#   bash studies/run.sh [PART ...]   # from the repository root; GHN_NAS_DATA must point at CIFAR-10
# PART: a study name (accuracy, robustness, efficiency, trainability, robustness+efficiency),
# baseline, compare, labelled or summary; all of them in that order by default.
# Five searches on the DeepNets-1M space with the shipped GHN, their top-k trained with SGD, and a
# random-search baseline (same trials, random sampler); `compare` trains the robust search's top-k
# and the baseline's first COMPARE architectures alike, to compare them on true noisy accuracy;
# `labelled` runs the robust search again, scored by an SVR fitted on those random nets' labels.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
TRIALS=${TRIALS:-30}      # trials per study
TOP_K=${TOP_K:-2}         # final candidates trained per study
COMPARE=${COMPARE:-30}    # random-search architectures trained for the robust-vs-random comparison
COMPARE_BATCHES=${COMPARE_BATCHES:-50}  # its budget (the main job's): at 30, most nets are still at chance
BATCHES=${BATCHES:-30}    # SGD budget of every trained net: 1 epoch of at most BATCHES batches of 96
EVAL=${EVAL:-10}          # ... scored on EVAL test batches of 256 (clean and noisy)
storage="sqlite:///studies/studies.db"
common=(--space deepnets --trials "$TRIALS" --top-k "$TOP_K" --final-recipe paper --final-epochs 1 --final-batches "$BATCHES"
        --final-eval-batches "$EVAL" --device cpu --seed 0 --storage "$storage")
label=(--space deepnets --recipe cpu --epochs 1 --max-batches "$COMPARE_BATCHES" --eval-batches "$EVAL"
       --device cpu --seed 0)   # the comparison's SGD labels

ranked_archs() {  # $1: a study name; its complete trials' architectures, best first, as nas.search ranks them
    python - "$storage" "$1" <<'EOF'
import sys
import optuna
from nas.report import top_trials
storage, name = sys.argv[1:]
study = optuna.load_study(study_name=name, storage=storage)
sys.stdout.write("".join(t.user_attrs["architecture"] + "\n" for t in top_trials(study, len(study.trials))))
EOF
}

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
}

compare() {
    # The robust search's top-k and the random sample's first COMPARE nets, trained alike by nas.label.
    mkdir -p studies/compare
    ranked_archs robustness > studies/compare/robust_archs.txt
    python -m nas.label --archs studies/compare/robust_archs.txt --limit "$TOP_K" \
        --out studies/compare/robust.jsonl "${label[@]}"
    python -m nas.label --archs studies/random-robustness/archs.txt --limit "$COMPARE" \
        --out studies/compare/random.jsonl "${label[@]}"
}

labelled() {
    # The paper's property predictor as the objective: an SVR from the GHN embedding to noisy accuracy,
    # fitted on the random baseline's labels (compare); its top-k trained like the others.
    python -m nas.search --objective robustness --labels studies/compare/random.jsonl "${common[@]}" \
        --final-epochs 0 --study-name robustness-labelled --out studies/robustness-labelled
    ranked_archs robustness-labelled > studies/compare/labelled_archs.txt
    python -m nas.label --archs studies/compare/labelled_archs.txt --limit "$TOP_K" \
        --out studies/compare/labelled.jsonl "${label[@]}"
}

# Parts may run in separate processes (e.g. two at a time on two cores); the summary comes last.
for part in "${@:-accuracy robustness efficiency trainability robustness+efficiency baseline compare labelled summary}"; do
    for target in $part; do
        case $target in
            baseline) baseline ;;
            compare) compare ;;
            labelled) labelled ;;
            summary) python studies/summarize.py ;;
            *) search "$target" ;;
        esac
    done
done
