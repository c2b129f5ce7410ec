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
"$venv/bin/python" -m pytest -q -ra --durations=15 tests "$@"
