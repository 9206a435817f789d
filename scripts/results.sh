#!/usr/bin/env bash
# Reproduce docs/results.md: PneumoniaMNIST as released and long-tailed (normal class subsampled to
# imbalance factor 10, train only), our method, SSNAS, ResNet-18 CE and ResNet-18 focal+LA.
# Budgets are environment variables so the same script serves a CPU smoke run and the paper's protocol
# (SEARCH_EPOCHS=100 FT_EPOCHS=600 SEARCH_LIMIT=0 on a GPU).
#   bash scripts/results.sh            # then: .venv/bin/ssnas report --experiment results-rho1 (and -rho10)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SSNAS=.venv/bin/ssnas
DATA_ROOT=${SSNAS_DATA_ROOT:-../shared/data/medmnist}
SEARCH_EPOCHS=${SEARCH_EPOCHS:-5}
SEARCH_LIMIT=${SEARCH_LIMIT:-1000}
FT_EPOCHS=${FT_EPOCHS:-6}
RESNET_EPOCHS=${RESNET_EPOCHS:-3}
RHOS=${RHOS:-"10 1"}
COMMON=(--dataset pneumoniamnist --data-root "$DATA_ROOT" --seed "${SEED:-0}")
for rho in $RHOS; do
  exp="results-rho$rho"
  for method in "sigmoid barlow-twins focal-la" "softmax simclr ce"; do
    set -- $method
    run=$($SSNAS search "${COMMON[@]}" --imbalance-factor "$rho" --limit-train "$SEARCH_LIMIT" \
          --epochs "$SEARCH_EPOCHS" --relaxation "$1" --ssl "$2" --experiment "$exp")
    $SSNAS finetune --search-run "$run" --epochs "$FT_EPOCHS" --loss "$3" --experiment "$exp" >/dev/null
  done
  for loss in ce focal-la; do
    $SSNAS baseline --model resnet18 --loss "$loss" "${COMMON[@]}" --imbalance-factor "$rho" \
      --epochs "$RESNET_EPOCHS" --experiment "$exp" >/dev/null
  done
  $SSNAS report --experiment "$exp" --out "docs/results/$exp" >/dev/null
done
