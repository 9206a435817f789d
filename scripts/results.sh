#!/usr/bin/env bash
# Reproduce docs/results.md: like-for-like results on PneumoniaMNIST (long-tailed at imbalance factor 10,
# and as released), architectures (ours, SSNAS, DARTS supervised, ResNet-18) x fine-tune losses (ce, ce-la,
# focal-la with post-hoc tau) x seeds. Resumable: runs already in docs/results/runs.jsonl and searches
# recorded in docs/results/searches/ are reused (see scripts/results.py --help).
# Budgets are environment variables; the paper's protocol is SEARCH_STOP=100 FT_EPOCHS=600 on a GPU.
#   bash scripts/results.sh                      # everything still missing
#   RHOS=10 ARCHS="ours ssnas" SEEDS=0 bash scripts/results.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/results.py \
  --rhos ${RHOS:-10 1} --archs ${ARCHS:-ours ssnas darts resnet18} --losses ${LOSSES:-ce ce-la focal-la} \
  --seeds ${SEEDS:-0 1 2} --search-epochs "${SEARCH_EPOCHS:-100}" --search-stop "${SEARCH_STOP:-15}" \
  --ft-epochs "${FT_EPOCHS:-30}" --jobs "${JOBS:-2}" "$@"
