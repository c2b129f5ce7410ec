"""The built-in demo task is learnable: the demo config reaches a BLEU threshold on its test set.

This is the README's demo in test form (fixed step count instead of a wall-clock limit, so the
result does not depend on the machine's speed).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
THRESHOLD = 60.0  # sacreBLEU on the demo test set; a working model reaches 80+ by step 900


def nmt(*args, cwd):
    result = subprocess.run(
        [sys.executable, "-m", "nmt", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_demo_config_learns_demo_task(tmp_path):
    data = tmp_path / "data"
    nmt("demo-data", "--output", data, cwd=tmp_path)
    sets = [
        f"--set=data.{key}={data / name}"
        for key, name in [
            ("train_source", "train.en"),
            ("train_target", "train.de"),
            ("dev_source", "dev.en"),
            ("dev_target", "dev.de"),
        ]
    ]
    nmt(
        "train", "--config", REPO / "configs" / "demo.yaml", "--model-dir", tmp_path / "model",
        *sets, "--set=train.max_steps=900", "--set=train.max_minutes=null", cwd=tmp_path,
    )  # fmt: skip
    out = nmt(
        "evaluate", "--model", tmp_path / "model", "--src", data / "test.en",
        "--ref", data / "test.de", "--metrics", "bleu", "--json", cwd=tmp_path,
    )  # fmt: skip
    bleu = json.loads(out)["bleu"]
    assert "case:mixed" in bleu["signature"]
    assert bleu["score"] >= THRESHOLD, bleu
