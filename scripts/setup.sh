#!/usr/bin/env bash
# Create ./.venv (once) with ssnas, its tracking/data extras and the test tools.
# torch==2.14.1 / torchvision==0.29.1 come from the machine's local wheels when present.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import ssnas_core, mlflow, medmnist, optuna, pytest" >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.ssnas-installed ]; then
  .venv/bin/pip install --quiet --no-compile --disable-pip-version-check -e '.[app,studies,dev]' 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import ssnas_core, mlflow, medmnist, optuna, pytest"
  touch .venv/.ssnas-installed
fi
# Build the compiled CPU kernels once now (about 40 s; torch caches them), not inside the first search or test.
.venv/bin/python -c "from ssnas_core.search_space import cpu_kernels; cpu_kernels.kernels()"
