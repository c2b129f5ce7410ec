#!/usr/bin/env bash
# Create (once) and update the project's virtual environment from setup.py.
# NMT_VENV chooses where it lives (default: .venv in the repository). Re-runs are fast:
# dependencies are reinstalled only when setup.py changes.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${NMT_VENV:-$repo/.venv}"
python="${PYTHON:-python3}"

key="$(cat "$repo/setup.py" | sha256sum | cut -c1-16)"
stamp="$venv/.nmt-deps-$key"
if [ ! -x "$venv/bin/python" ]; then
  echo "setup_env: creating $venv" >&2
  "$python" -m venv "$venv"
fi
if [ ! -f "$stamp" ]; then
  echo "setup_env: installing dependencies into $venv (first run: a few minutes)" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -e "$repo[dev]"
  rm -f "$venv"/.nmt-deps-*
  touch "$stamp"
else
  # Dependencies are current; (re)link this checkout.
  "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$repo"
fi
