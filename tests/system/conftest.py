"""The demo model that the system tests share: trained once per session (CI has 2 cores).

`demo_run` runs what scripts/demo.sh runs (`nmt demo-data`, then `nmt train` with
configs/demo.yaml as it is, which stops on a step count), so the tests check the README's demo.
"""

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run_python(*args, cwd) -> str:
    """stdout of `python ARGS` (e.g. "-m", "nmt", ... or a script path); fails the test on error."""
    result = subprocess.run(
        [sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@dataclass(frozen=True)
class DemoRun:
    data: Path  # `nmt demo-data` output: {train,dev,test}.{en,de,align}
    model: Path  # configs/demo.yaml trained on it, as scripts/demo.sh does
    work: Path  # a scratch directory to run commands in


@pytest.fixture(scope="session")
def run_python():
    """`run_python(*args, cwd=...)`: stdout of `python ARGS`; fails the test on error."""
    return _run_python


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> DemoRun:
    work = tmp_path_factory.mktemp("demo")
    data, model = work / "data", work / "model"
    _run_python("-m", "nmt", "demo-data", "--output", data, cwd=work)
    sets = [
        f"--set=data.{key}={data / name}"
        for key, name in [
            ("train_source", "train.en"),
            ("train_target", "train.de"),
            ("dev_source", "dev.en"),
            ("dev_target", "dev.de"),
        ]
    ]
    _run_python(
        "-m", "nmt", "train", "--config", REPO / "configs" / "demo.yaml", "--model-dir", model,
        *sets, cwd=work,
    )  # fmt: skip
    return DemoRun(data, model, work)
