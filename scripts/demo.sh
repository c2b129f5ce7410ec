#!/usr/bin/env bash
# The demo, end to end on the built-in corpus: set up, make data, train (vocab included),
# translate the test set with beam search, score it with sacreBLEU, export a SavedModel.
# Usage: bash scripts/demo.sh [WORK_DIR]   (default: demo/; the model is retrained from scratch)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${NMT_VENV:-$repo/.venv}"
bash "$repo/scripts/setup_env.sh"
nmt="$venv/bin/nmt"
work="${1:-$repo/demo}"
start=$(date +%s)

rm -rf "$work/model" "$work/export" "$work/test.hyp"
"$nmt" demo-data --output "$work/data"
"$nmt" train --config "$repo/configs/demo.yaml" --model-dir "$work/model" \
  --set data.train_source="$work/data/train.en" --set data.train_target="$work/data/train.de" \
  --set data.dev_source="$work/data/dev.en" --set data.dev_target="$work/data/dev.de"
"$nmt" translate "$work/data/test.en" -o "$work/test.hyp" --model "$work/model"
"$nmt" export --model "$work/model" --output "$work/export"
echo "demo: test set, beam 5, $(( $(date +%s) - start )) s end to end:"
"$nmt" score "$work/test.hyp" "$work/data/test.de" --metrics bleu,chrf
