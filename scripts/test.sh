#!/usr/bin/env bash
# Set up the environment and run every test tier (unit, integration, system) plus lint.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${NMT_VENV:-$repo/.venv}"
# Tests run in parallel (pytest-xdist), one worker per core up to 4 unless NMT_TEST_WORKERS says
# how many (0: all in this process), one test module per unit of work; see tests/conftest.py.
workers="${NMT_TEST_WORKERS-}"
if [ -z "$workers" ]; then
  workers="$(nproc)"
  if [ "$workers" -gt 4 ]; then workers=4; fi
fi
case "$workers" in
  *[!0-9]*) echo "scripts/test.sh: NMT_TEST_WORKERS must be a number of workers (0: one process), got '$workers'" >&2; exit 2 ;;
esac
bash "$repo/scripts/setup_env.sh"
bash "$repo/scripts/install_browser.sh"  # for the page test of `nmt serve`; skipped without
cd "$repo"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
"$venv/bin/ruff" check nmt tests scripts setup.py
"$venv/bin/ruff" format --check nmt tests scripts setup.py
"$venv/bin/python" -m pytest -q -ra --durations=15 -n "$workers" --dist loadfile \
  --no-loadscope-reorder tests "$@"
