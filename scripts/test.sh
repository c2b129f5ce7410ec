#!/usr/bin/env bash
# Set up the environment and run every test tier (unit, integration, system) plus lint.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${NMT_VENV:-$repo/.venv}"
bash "$repo/scripts/setup_env.sh"
bash "$repo/scripts/install_browser.sh"  # for the page test of `nmt serve`; skipped without
cd "$repo"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
"$venv/bin/ruff" check nmt tests scripts setup.py
"$venv/bin/ruff" format --check nmt tests scripts setup.py
# Tests run in parallel (pytest-xdist), one worker per core up to 4 (NMT_TEST_WORKERS overrides;
# 0 runs them in this process), one test module per unit of work; see tests/conftest.py.
workers="${NMT_TEST_WORKERS:-$(nproc)}"
if [ "$workers" -gt 4 ]; then workers=4; fi
"$venv/bin/python" -m pytest -q -ra --durations=15 -n "$workers" --dist loadfile \
  --no-loadscope-reorder tests "$@"
