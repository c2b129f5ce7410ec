#!/usr/bin/env bash
# Check an `nmt export` under the runtime that TF Serving 2.20 links (TensorFlow 2.20 +
# TensorFlow Text 2.20): load the SavedModel there, run both signatures on a few strings and
# compare with the project's own TensorFlow (translations and ids equal, scores to 1e-5).
#
#   scripts/check_serving_runtime.sh [EXPORT_VERSION_DIR]
#
# Without an argument a tiny random model is made and exported into a temporary directory.
# The serving venv (about 600 MB of wheels) is created once at $NMT_SERVING_VENV
# (default ~/.cache/nmt/venv-serving-tf220). Not run in CI.
#
# Environment: NMT_VENV (the project venv; default REPO/.venv, else ~/.cache/nmt/venv),
# NMT_SERVING_VENV, SERVING_TF (default 2.20.*), SERVING_TF_TEXT (default 2.20.*).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
main_venv="${NMT_VENV:-$repo/.venv}"
[ -x "$main_venv/bin/python" ] || main_venv="$HOME/.cache/nmt/venv"
main_py="$main_venv/bin/python"
serving_venv="${NMT_SERVING_VENV:-$HOME/.cache/nmt/venv-serving-tf220}"
serving_tf="${SERVING_TF:-2.20.*}"
serving_text="${SERVING_TF_TEXT:-2.20.*}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"

[ -x "$main_py" ] || { echo "check_serving_runtime: no project venv at $main_venv" >&2; exit 2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/nmt-serving-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT

if [ $# -ge 1 ]; then
  export_dir="$(cd "$1" && pwd)"
  [ -f "$export_dir/saved_model.pb" ] || {
    echo "check_serving_runtime: $export_dir: no saved_model.pb (pass EXPORT_BASE/N)" >&2
    exit 2
  }
else
  echo "== making a tiny model and exporting it"
  PYTHONPATH="$repo" "$main_py" - "$work" <<'EOF'
import sys
from pathlib import Path
from nmt.export import export_model
from tests.helpers.export import make_model_dir

work = Path(sys.argv[1])
print(export_model(make_model_dir(work / "model"), work / "export"))
EOF
  export_dir="$work/export/1"
fi

if ! "$serving_venv/bin/python" -c "import tensorflow, tensorflow_text" 2>/dev/null; then
  echo "== creating $serving_venv (tensorflow==$serving_tf, tensorflow-text==$serving_text)"
  base_py="$("$main_py" -c 'import sys; print(getattr(sys, "_base_executable", sys.executable))')"
  "$base_py" -m venv "$serving_venv"
  "$serving_venv/bin/pip" install -q --upgrade pip
  "$serving_venv/bin/pip" install -q "tensorflow==$serving_tf" "tensorflow-text==$serving_text"
fi

# Inputs: strings (with empty, blank, long and unknown-character lines) and their source ids.
"$main_py" - "$export_dir" "$work/inputs.json" <<'EOF'
import json, sys
from pathlib import Path
import sentencepiece as spm

export, out = Path(sys.argv[1]), sys.argv[2]
info = json.loads((export / "assets.extra" / "export.json").read_text())
sp = spm.SentencePieceProcessor(
    model_file=str(export / "assets.extra" / info["sentencepiece"]["source"])
)
texts = [
    "A dog runs across the grass.",
    "",
    "   ",
    "Two men are talking in a café near the station while a child plays " * 4,
    "ü ✓ 😀 Ωmega",
    "a",
]
pieces = [sp.encode(t) for t in texts]
width = max(len(p) for p in pieces)
json.dump(
    {
        "texts": texts,
        "source_ids": [p + [0] * (width - len(p)) for p in pieces],
        "source_lengths": [len(p) for p in pieces],
    },
    open(out, "w"),
)
EOF

cat > "$work/run.py" <<'EOF'
import json, sys
import tensorflow_text  # noqa: F401  (registers the SentencePiece ops)
import tensorflow as tf

export, inputs_path, out = sys.argv[1:4]
inputs = json.load(open(inputs_path))
model = tf.saved_model.load(export)
text = model.signatures["serving_default"](text=tf.constant(inputs["texts"], tf.string))
ids = model.signatures["translate_ids"](
    source_ids=tf.constant(inputs["source_ids"], tf.int32),
    source_lengths=tf.constant(inputs["source_lengths"], tf.int32),
)
json.dump(
    {
        "tensorflow": tf.__version__,
        "tensorflow_text": tensorflow_text.__version__,
        "translation": [t.decode("utf-8") for t in text["translation"].numpy().tolist()],
        "score": [float(s) for s in text["score"].numpy()],
        "target_ids": ids["target_ids"].numpy().tolist(),
        "target_lengths": ids["target_lengths"].numpy().tolist(),
        "ids_score": [float(s) for s in ids["score"].numpy()],
    },
    open(out, "w"),
)
EOF

echo "== running $export_dir with the project's TensorFlow"
"$main_py" "$work/run.py" "$export_dir" "$work/inputs.json" "$work/expected.json"
echo "== running it with the serving runtime"
"$serving_venv/bin/python" "$work/run.py" "$export_dir" "$work/inputs.json" "$work/got.json"

"$main_py" - "$work/expected.json" "$work/got.json" <<'EOF'
import json, sys

expected, got = (json.load(open(p)) for p in sys.argv[1:3])
problems = []
for key in ("translation", "target_ids", "target_lengths"):
    if expected[key] != got[key]:
        problems.append(f"{key} differs:\n  expected {expected[key]}\n  got      {got[key]}")
for key in ("score", "ids_score"):
    worst = max((abs(a - b) for a, b in zip(expected[key], got[key])), default=0.0)
    if len(expected[key]) != len(got[key]) or worst > 1e-5:
        problems.append(f"{key} differs by up to {worst:g}")
print(
    f"project: TF {expected['tensorflow']}, TF Text {expected['tensorflow_text']}; "
    f"serving runtime: TF {got['tensorflow']}, TF Text {got['tensorflow_text']}"
)
for line, score in zip(got["translation"], got["score"]):
    print(f"  {score:10.5f}  {line[:70]!r}")
if problems:
    print("check_serving_runtime: FAILED\n" + "\n".join(problems))
    sys.exit(1)
print("check_serving_runtime: OK (both signatures give the same results)")
EOF
