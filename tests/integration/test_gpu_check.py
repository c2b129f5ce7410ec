"""scripts/gpu_check.sh on a machine without a GPU (CUDA_VISIBLE_DEVICES="" hides any): one line
says so, the CPU-only parts run on tiny shapes, the report files are written, exit 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.sh"


def _run(*args, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "NMT_PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": "", **env}
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def test_without_a_gpu_runs_the_cpu_parts_and_writes_the_report(tmp_path):
    out = tmp_path / "report"
    done = _run(out)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    said = [line for line in done.stdout.splitlines() if "no GPU visible" in line]
    assert len(said) == 1 and said[0].startswith("gpu_check: no GPU visible to TensorFlow")
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "cpu" and report["targets"] == []
    parts = report["parts"]
    assert parts["tests"]["status"] == "skipped"
    assert {n: p["status"] for n, p in parts.items() if n != "tests"} == {
        "env": "ok", "lstm": "ok", "train_tiny": "ok", "decode": "ok"}  # fmt: skip
    assert parts["env"]["result"]["gpus"] == []
    lstm = {(r["precision"], r["variant"]): r for r in parts["lstm"]["result"]["rows"]}
    ours = [r for (p, v), r in lstm.items() if p == "float32" and v.startswith("nmt")]
    assert ours and all(r["max_rel_diff"] < 1e-5 and r["tok_s"] > 0 for r in ours)
    train = parts["train_tiny"]["result"]["rows"]
    assert [r["variant"] for r in train] == ["nmt:float32", "nmt:mixed_float16"]
    decode = parts["decode"]["result"]["rows"]
    assert [r["precision"] for r in decode] == ["float32", "mixed_float16"]
    assert decode[0]["same_as_float32"] == 1.0 and decode[0]["sentences_s"] > 0
    text = (out / "report.md").read_text()
    assert "mode: **cpu**" in text and "| float32 | nmt" in text and "| 256 | nmt:float32" in text
    assert (out / "logs" / "train_tiny.log").exists()


def test_usage_error_without_a_directory():
    done = _run()
    assert done.returncode == 2 and "usage: bash scripts/gpu_check.sh OUTDIR" in done.stderr
