#!/usr/bin/env bash
# Set everything up and run a short search on the real PneumoniaMNIST, tracked in ./mlflow.db.
# Usage: bash scripts/demo.sh [extra ssnas search flags]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA_ROOT=${SSNAS_DATA_ROOT:-../shared/data/medmnist}
.venv/bin/ssnas search --dataset pneumoniamnist --data-root "$DATA_ROOT" \
  --limit-train 512 --epochs 2 --batch-size 32 "$@"
