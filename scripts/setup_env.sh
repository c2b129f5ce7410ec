#!/usr/bin/env bash
# Create (once) and update the project's virtual environment from setup.py.
# NMT_VENV chooses where it lives (default: .venv in the repository). Re-runs are fast:
# dependencies are reinstalled only when setup.py changes.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${NMT_VENV:-$repo/.venv}"
python="${PYTHON:-python3}"

key="$(sha256sum < "$repo/setup.py" | cut -c1-16)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
quiet() {  # run pip quietly; show its output only when it fails
  if ! "$@" > "$log" 2>&1; then cat "$log" >&2; echo "setup_env: failed: $*" >&2; exit 1; fi
}
stamp="$venv/.nmt-deps-$key"
if [ ! -x "$venv/bin/python" ]; then
  echo "setup_env: creating $venv" >&2
  "$python" -m venv "$venv"
fi
if [ ! -f "$stamp" ]; then
  echo "setup_env: installing dependencies into $venv (first run: a few minutes)" >&2
  quiet "$venv/bin/python" -m pip install --upgrade pip
  quiet "$venv/bin/python" -m pip install -e "$repo[dev]"
  rm -f "$venv"/.nmt-deps-*
  touch "$stamp"
else
  # Dependencies are current; (re)link this checkout.
  quiet "$venv/bin/python" -m pip install --no-deps --no-build-isolation -e "$repo"
fi
