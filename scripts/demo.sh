#!/usr/bin/env bash
# Set everything up, then a short search and a short fine-tune on the real PneumoniaMNIST, tracked in ./mlflow.db.
# Usage: bash scripts/demo.sh   (SSNAS_DATA_ROOT overrides the data folder; under 5 minutes on 2 CPU cores)
#
# The search is a quick start, not a result: 2 epochs on 512 images cannot converge (a converged FairDARTS
# search of PneumoniaMNIST takes about 11 epochs of the full long-tailed set), so it ends with the
# "did not converge" warning and the fine-tune repeats it. The fine-tune uses cross-entropy (the paper's
# focal + logit adjustment at tau 1 over-corrects toward the minority class) for 4 epochs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA_ROOT=${SSNAS_DATA_ROOT:-../shared/data/medmnist}
run=$(.venv/bin/ssnas search --dataset pneumoniamnist --data-root "$DATA_ROOT" --limit-train 512 --epochs 2)
.venv/bin/ssnas finetune --search-run "$run" --epochs 4 --loss ce
echo "Search run $run. Open the MLflow UI with:"
echo "  .venv/bin/mlflow ui --backend-store-uri sqlite:///$PWD/mlflow.db   # then http://127.0.0.1:5000"
