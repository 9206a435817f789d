#!/usr/bin/env bash
# Set everything up, then a short search and a short fine-tune on the real PneumoniaMNIST, tracked in ./mlflow.db.
# Usage: bash scripts/demo.sh   (SSNAS_DATA_ROOT overrides the data folder; about 8 minutes on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA_ROOT=${SSNAS_DATA_ROOT:-../shared/data/medmnist}
run=$(.venv/bin/ssnas search --dataset pneumoniamnist --data-root "$DATA_ROOT" --limit-train 512 --epochs 2)
.venv/bin/ssnas finetune --search-run "$run" --epochs 2
echo "Search run $run. Open the MLflow UI with:"
echo "  .venv/bin/mlflow ui --backend-store-uri sqlite:///$PWD/mlflow.db   # then http://127.0.0.1:5000"
