#!/usr/bin/env bash
# Set everything up and run the test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check ssnas_core tests scripts
# Two workers, each taking whole test files (module fixtures, such as the MLflow UI's server, start once):
# half the suite's time is spent waiting on servers and subprocesses. SSNAS_TEST_WORKERS=0 runs in one process.
.venv/bin/python -m pytest -n "${SSNAS_TEST_WORKERS:-2}" --dist loadfile "$@"
