#!/usr/bin/env bash
# Create .venv (if missing) and install Forgeline into it, with extras given as "$1" (e.g. dev).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch is pinned exactly in pyproject.toml: that CPU build is installed from the local wheel
# cache instead of downloading a multi-GB CUDA build.
.venv/bin/python -m pip install --quiet -e ".${1:+[$1]}"
