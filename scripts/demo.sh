#!/usr/bin/env bash
# Set everything up, then a short search and a short fine-tune on the real PneumoniaMNIST, tracked in ./mlflow.db.
# Usage: bash scripts/demo.sh   (SSNAS_DATA_ROOT overrides the data folder; under 5 minutes on 2 CPU cores)
#
# Data: $SSNAS_DATA_ROOT, else ../shared/data/medmnist. When neither holds pneumoniamnist.npz, medmnist's own
# download fetches it (4 MB from Zenodo, MD5-checked, with a progress bar) into $SSNAS_DATA_ROOT or, when that is
# unset, medmnist's default folder ~/.medmnist; offline, the search stops with one line saying where to put it.
#
# The search is a quick start, not a result: 2 epochs on 512 images cannot converge (a converged FairDARTS
# search of PneumoniaMNIST takes about 11 epochs of the full long-tailed set), so it ends with the
# "did not converge" warning and the fine-tune repeats it. The fine-tune uses cross-entropy (the paper's
# focal + logit adjustment at tau 1 over-corrects toward the minority class) for 4 epochs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA_ROOT=${SSNAS_DATA_ROOT:-../shared/data/medmnist}
FETCH=()
if [ ! -f "$DATA_ROOT/pneumoniamnist.npz" ]; then
  [ -n "${SSNAS_DATA_ROOT:-}" ] || DATA_ROOT="$HOME/.medmnist"
  if [ ! -f "$DATA_ROOT/pneumoniamnist.npz" ]; then
    echo "demo: no local copy of PneumoniaMNIST; fetching it with medmnist into $DATA_ROOT" >&2
    FETCH=(--download)
  fi
fi
run=$(.venv/bin/ssnas search --dataset pneumoniamnist --data-root "$DATA_ROOT" "${FETCH[@]}" --limit-train 512 \
      --epochs 2)
.venv/bin/ssnas finetune --search-run "$run" --epochs 4 --loss ce
experiment=$(.venv/bin/python -c "from mlflow import MlflowClient as C; import sys
print(C(sys.argv[1]).get_run(sys.argv[2]).info.experiment_id)" "sqlite:///$PWD/mlflow.db" "$run")
echo "Search run $run. Open the MLflow UI with:"
echo "  .venv/bin/mlflow ui --app-name ssnas --backend-store-uri sqlite:///$PWD/mlflow.db"
echo "then http://127.0.0.1:5000/#/experiments/$experiment (the runs table: the ssnas app opens a new browser on"
echo "MLflow's training view; without it, add ?workflowType=machine_learning to the link)"
