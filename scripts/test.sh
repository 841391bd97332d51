#!/usr/bin/env bash
# Install Forgeline with its development tools, then lint, type-check and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh dev
export HF_HUB_OFFLINE=1
.venv/bin/ruff check src tests benchmarks scripts examples
.venv/bin/ruff format --check src tests benchmarks scripts examples
.venv/bin/mypy
.venv/bin/python -m pytest -q --durations=25 "$@"
