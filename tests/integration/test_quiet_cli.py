"""`nmt` is quiet by default, and errors that need no model come before TensorFlow (issue 16).

Real commands run as subprocesses in a user's environment (`run_nmt`: TF_CPP_MIN_LOG_LEVEL
unset) on the tiny data and model: stderr holds no TensorFlow log line, unless --verbose or
--debug. Errors that need no model exit 2 with one `nmt: error:` line and TensorFlow not
imported (the program prints whether `tensorflow` is in sys.modules at exit).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

TF_LOG = re.compile(r"^[IWEF]\d{4} |absl::InitializeLog|oneDNN|cuda", re.IGNORECASE | re.M)


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_model) -> dict[str, Path]:
    from tests.helpers.corpus import write_corpus

    root = tmp_path_factory.mktemp("quiet")
    train, train_ref = write_corpus(root / "data")
    dev, dev_ref = write_corpus(root / "data", n=6, seed=5, prefix="dev")
    return {"W": root, "M": tiny_model, "train": train, "train_ref": train_ref, "dev": dev,
            "ref": dev_ref}  # fmt: skip


def commands(w: dict[str, Path], tiny_yaml: Path) -> dict[str, list]:
    W, M = w["W"], w["M"]
    data = [f"data.train_source={w['train']}", f"data.train_target={w['train_ref']}",
            f"data.dev_source={w['dev']}", f"data.dev_target={w['ref']}", "train.max_steps=2",
            "train.log_every=1", "train.eval_every=2", "train.checkpoint_every=2"]  # fmt: skip
    return {
        "train": ["train", "--config", tiny_yaml, "--model-dir", W / "model",
                  *[a for s in data for a in ("--set", s)]],  # fmt: skip
        "translate": ["translate", "--model", M, w["dev"], "-o", W / "hyp.txt"],
        "evaluate": ["evaluate", "--model", M, "--src", w["dev"], "--ref", w["ref"]],
        "score": ["score", w["ref"], w["ref"]],
        "vocab": ["vocab", "--source", w["train"], "--target", w["train_ref"],
                  "--output", W / "vocab", "--size", "16", "--character-coverage", "1.0"],
        "average": ["average", "--model", M, "--last", "1", "--output", W / "averaged"],
        "export": ["export", "--model", M, "--output", W / "export"],
        "demo-data": ["demo-data", "--output", W / "demo", "--train", "20", "--dev", "5",
                      "--test", "5"],
    }  # fmt: skip


def tf_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if TF_LOG.search(line)]


@pytest.mark.parametrize("name", ["train", "translate", "evaluate", "score", "vocab", "average",
                                  "export", "demo-data"])  # fmt: skip
def test_commands_print_no_tensorflow_log_line(name, work, tiny_yaml, run_nmt):
    done = run_nmt(*commands(work, tiny_yaml)[name])
    assert done.returncode == 0, done.stderr
    assert tf_lines(done.stderr) == [], done.stderr


@pytest.mark.parametrize("flag,name", [("--verbose", "translate"), ("--debug", "average")])
def test_verbose_and_debug_show_tensorflow_logs(flag, name, work, tiny_yaml, run_nmt):
    args = commands(work, tiny_yaml)[name]
    if name == "average":
        args = [*args[:-1], work["W"] / "averaged-verbose"]
    done = run_nmt(flag, *args)
    assert done.returncode == 0, done.stderr
    # TensorFlow 2.21 logs on every import (absl's "before InitializeLog" lines and more).
    assert tf_lines(done.stderr), done.stderr


def test_serve_prints_no_tensorflow_log_line(work, run_nmt, nmt_env):
    """`nmt serve` up, one translation, SIGTERM: no TensorFlow line on stderr throughout."""
    export = work["W"] / "serve-export"
    assert run_nmt("export", "--model", work["M"], "--output", export).returncode == 0
    server = subprocess.Popen(
        [sys.executable, "-m", "nmt", "serve", "--export-dir", export, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=nmt_env,
    )  # fmt: skip
    try:
        line = server.stdout.readline()
        assert "serving model" in line, line
        url = line.rsplit(" at ", 1)[1].strip() + ":predict"
        body = json.dumps({"instances": ["1 2 3"]}).encode()
        request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            assert len(json.loads(response.read())["predictions"]) == 1
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=120)
    assert server.returncode == 0, stderr
    assert tf_lines(stderr) == [], stderr


# === Errors before TensorFlow ===

REPORT_TENSORFLOW = (
    "import sys\n"
    "from nmt.cli import cli\n"
    "try:\n"
    "    cli(sys.argv[1:], prog_name='nmt')\n"
    "finally:\n"
    "    print('tensorflow imported:', 'tensorflow' in sys.modules, file=sys.stderr)\n"
)

# (name, command line, the error's start); {W}: a workspace, {M}: the tiny model.
EARLY_ERRORS = [
    ("translate-no-model", ["translate", "--model", "{W}/nope", "{dev}"],
     "{W}/nope: model directory not found"),
    ("translate-not-model", ["translate", "--model", "{W}/data", "{dev}"],
     "{W}/data: not a model directory"),
    ("translate-no-input", ["translate", "--model", "{M}", "{W}/nope.txt"],
     "{W}/nope.txt: file not found"),
    ("translate-output-dir", ["translate", "--model", "{M}", "{dev}", "-o", "{W}/no/out.txt"],
     "-o {W}/no/out.txt: output directory {W}/no not found"),
    ("translate-checkpoint", ["translate", "--model", "{M}", "{dev}", "--checkpoint", "ckpt-9"],
     "ckpt-9: checkpoint not found"),
    ("translate-n-best", ["translate", "--model", "{M}", "{dev}", "--n-best", "9"],
     "--n-best 9 cannot exceed the beam size"),
    ("translate-beam", ["translate", "--model", "{M}", "{dev}", "--beam", "0"],
     "Invalid value for '--beam'"),
    ("evaluate-no-model", ["evaluate", "--model", "{W}/nope", "--src", "{dev}", "--ref", "{dev}"],
     "{W}/nope: model directory not found"),
    ("evaluate-no-ref", ["evaluate", "--model", "{M}", "--src", "{dev}", "--ref", "{W}/nope"],
     "{W}/nope: file not found"),
    ("evaluate-metric", ["evaluate", "--model", "{M}", "--src", "{dev}", "--ref", "{dev}",
                         "--metrics", "rouge"], "Invalid value for --metrics"),
    ("train-no-config", ["train", "--config", "{W}/nope.yaml", "--model-dir", "{W}/m"],
     "{W}/nope.yaml: config file not found"),
    ("train-bad-set", ["train", "--config", "{T}", "--model-dir", "{W}/m", "--set",
                       "train.max_steps=many"],
     "--set train.max_steps=many: train.max_steps must be an integer"),
    ("train-no-data", ["train", "--config", "{T}", "--model-dir", "{W}/m", "--set",
                       "data.train_source={W}/nope", "--set", "data.train_target={dev}"],
     "{W}/nope: file not found"),
    ("train-other-model", ["train", "--config", "{T}", "--model-dir", "{M}", "--set",
                           "data.train_source={dev}", "--set", "data.train_target={dev}",
                           "--set", "model.units=24"],
     "{M}: holds a model trained with another config"),
    ("average-not-model", ["average", "--model", "{W}/data", "--last", "1"],
     "{W}/data: not a model directory"),
    ("average-too-many", ["average", "--model", "{M}", "--last", "9"],
     "{M}/checkpoints: 1 checkpoint(s), cannot average the last 9"),
    ("export-no-model", ["export", "--model", "{W}/nope", "--output", "{W}/export"],
     "{W}/nope: model directory not found"),
    ("serve-no-export", ["serve", "--export-dir", "{W}/nope"],
     "{W}/nope: export directory not found"),
    ("vocab-no-config", ["vocab", "--config", "{W}/nope.yaml"],
     "{W}/nope.yaml: config file not found"),
]  # fmt: skip


@pytest.mark.parametrize("args,error", [c[1:] for c in EARLY_ERRORS],
                         ids=[c[0] for c in EARLY_ERRORS])  # fmt: skip
def test_errors_that_need_no_model_come_before_tensorflow(args, error, work, tiny_yaml, run_nmt):
    where = {"W": work["W"], "M": work["M"], "T": tiny_yaml, "dev": work["dev"]}
    done = run_nmt(*[a.format(**where) for a in args], code=REPORT_TENSORFLOW)
    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr
    assert lines[-1] == "tensorflow imported: False", done.stderr
    assert len(lines) == 2 and lines[0].startswith(f"nmt: error: {error.format(**where)}"), lines
