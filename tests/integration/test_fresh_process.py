"""What only a fresh Python process shows: `nmt --help` and every command's help import no
TensorFlow, `python -m nmt` and `python -m nmt.cli` run the command, and TensorFlow's errors
at import get through nmt's log filter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nmt.cli import cli
from nmt.version import __version__
from tests.helpers.noise import NOISE

REPO = Path(__file__).resolve().parents[2]


def test_help_does_not_import_tensorflow():
    code = (
        "import sys; from click.testing import CliRunner; from nmt.cli import cli; "
        "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0, r.output; "
        "bad = [m for m in ('tensorflow', 'keras', 'sentencepiece') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_command_help_is_tensorflow_free():
    names = sorted(cli.commands)
    code = (
        "import sys; from click.testing import CliRunner; from nmt.cli import cli; "
        f"names = {names!r}; "
        "codes = [CliRunner().invoke(cli, [n, '--help']).exit_code for n in names]; "
        "assert codes == [0] * len(names), codes; assert 'tensorflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("module", ["nmt", "nmt.cli"])
def test_python_dash_m_runs_the_command(module, nmt_env):
    done = subprocess.run([sys.executable, "-m", module, "--version"], env=nmt_env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (0, f"nmt, version {__version__}\n", "")


FAKE_TENSORFLOW = """\
import os, sys
os.write(2, {noise!r})
os.write(2, b"F0000 00:00:1.5 7 fake.cc:1] Check failed: boom\\n")
print("python line", file=sys.stderr)
if os.environ.get("FAKE_ABORT"):
    os.abort()
raise ImportError("fake tensorflow is broken")
"""


def import_fake_tensorflow(tmp_path: Path, abort: bool) -> subprocess.CompletedProcess:
    package = tmp_path / "tensorflow"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text(FAKE_TENSORFLOW.format(noise=b"".join(NOISE)))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}", "FAKE_ABORT": "1" * abort}
    code = "from nmt.quiet import silence_tensorflow; silence_tensorflow(); import tensorflow"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)


def test_errors_at_import_still_show(tmp_path):
    done = import_fake_tensorflow(tmp_path, abort=False)
    lines = done.stderr.decode().splitlines()
    assert done.returncode == 1
    assert lines[:2] == ["F0000 00:00:1.5 7 fake.cc:1] Check failed: boom", "python line"]
    assert lines[-1] == "ImportError: fake tensorflow is broken"
    assert not any(
        b"oneDNN" in line or b"absl::InitializeLog" in line for line in done.stderr.splitlines()
    )


def test_a_crash_at_import_still_shows_its_last_words(tmp_path):
    done = import_fake_tensorflow(tmp_path, abort=True)
    assert done.returncode < 0  # killed by SIGABRT
    assert done.stderr.decode().splitlines() == [
        "F0000 00:00:1.5 7 fake.cc:1] Check failed: boom",
        "python line",
    ]
