#!/usr/bin/env bash
# The prepared GPU check: one command, unattended, under 8 minutes on one NVIDIA GPU.
#
#   bash scripts/gpu_check.sh OUTDIR        (from anywhere; it runs in the repository root)
#
# Writes OUTDIR/report.md and OUTDIR/report.json (partial ones if a part fails or runs out
# of time) and the parts' logs in OUTDIR/logs/; what it runs is in scripts/gpu_check.py. On a
# machine where TensorFlow sees no GPU it says so in one line, runs its CPU-only parts on tiny
# shapes and exits 0 (CI runs it so). No prompts and no network.
#
# Python: $NMT_PYTHON if set, else the repository's .venv/bin/python, else python3 on PATH;
# the first one that imports the toolkit's dependencies (tensorflow, keras, sentencepiece,
# sacrebleu, click, yaml; pytest for the GPU tests, tensorflow_text for the export test) is
# used. The repository is put first on PYTHONPATH, so `pip install -e .` is not needed. On a
# fresh machine with a wheel directory (no index is contacted), NMT_WHEELS=DIR installs the
# missing requirements from it into that Python first:
#   NMT_WHEELS=/path/to/wheels NMT_PYTHON=/usr/bin/python3 bash scripts/gpu_check.sh report
# Other settings: NMT_GPU_CHECK_BUDGET (seconds for all parts, default 450), NMT_MULTI30K
# (Multi30k directory, default ../shared/data/multi30k or ./shared/data/multi30k),
# NMT_GPU_CHECK_MODEL (a trained model directory for the decoding benchmark).
#
# Exit status: 0 = every part that ran passed (missed speed targets are reported, not
# failures); 1 = a part failed or timed out (see the report); 2 = usage; 3 = no usable Python.
set -u
usage="usage: bash scripts/gpu_check.sh OUTDIR"
if [ $# -lt 1 ] || [ -z "$1" ]; then echo "$usage" >&2; exit 2; fi
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$1" || { echo "gpu_check: cannot make the report directory $1" >&2; exit 2; }
out="$(cd "$1" && pwd)"
shift
cd "$repo" || exit 2

required="tensorflow keras sentencepiece sacrebleu click yaml numpy"
optional="pytest tensorflow_text"
missing_of() {  # the modules of $2.. that python $1 cannot import (empty: all there)
  local py="$1"; shift
  "$py" - "$@" <<'PY' 2>/dev/null || echo "$*"
import importlib.util, sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
PY
}

candidates=()
[ -n "${NMT_PYTHON:-}" ] && candidates+=("$NMT_PYTHON")
[ -x "$repo/.venv/bin/python" ] && candidates+=("$repo/.venv/bin/python")
command -v python3 >/dev/null && candidates+=("$(command -v python3)")
python=""
notes=()
for py in "${candidates[@]}"; do
  missing="$(missing_of "$py" $required)"
  if [ -n "$missing" ] && [ -n "${NMT_WHEELS:-}" ]; then
    echo "gpu_check: $py lacks $missing: installing the requirements from $NMT_WHEELS (offline)"
    reqs="$("$py" - <<'PY'
import pathlib, re
block = re.search(r"INSTALL_REQUIRES = \[(.*?)\]", pathlib.Path("setup.py").read_text(), re.S)
print(" ".join(re.findall(r'"([^"]+)"', block.group(1))))
PY
)"
    # shellcheck disable=SC2086  # one word per requirement
    "$py" -m pip install --no-index --find-links "$NMT_WHEELS" --quiet $reqs pytest \
      || echo "gpu_check: the offline install from $NMT_WHEELS failed" >&2
    missing="$(missing_of "$py" $required)"
  fi
  if [ -z "$missing" ]; then python="$py"; break; fi
  notes+=("$py: missing $missing")
done

if [ -z "$python" ]; then
  {
    echo "# GPU check"
    echo
    echo "Not run: no usable Python found."
    for n in "${notes[@]}"; do echo "- $n"; done
    [ ${#candidates[@]} -eq 0 ] && echo "- no python3 on PATH and no NMT_PYTHON"
    echo
    echo "Set NMT_PYTHON to a Python with TensorFlow, or NMT_WHEELS to a wheel directory."
  } > "$out/report.md"
  printf '{"status": "no usable python", "candidates": "%s"}\n' "${notes[*]:-none}" \
    > "$out/report.json"
  echo "gpu_check: no usable Python (${notes[*]:-no python3 on PATH}); set NMT_PYTHON or NMT_WHEELS" >&2
  exit 3
fi
lacking="$(missing_of "$python" $optional)"
[ -n "$lacking" ] && echo "gpu_check: note: $python lacks $lacking (the parts needing it fail)"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" "$repo/scripts/gpu_check.py" "$out" "$@"
