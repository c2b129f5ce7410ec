"""Every command in README.md is run by a test, so the README cannot drift from the code.

`readme_commands` reads the shell commands of README.md (```bash blocks and indented blocks).
The tests here run them as written, in a scratch directory with small data in the places the
README names (`corpus/`, `data/multi30k/`), with these changes only:
- `nmt train` gets `--set` options that shrink the model and the run (SHRINK); when a config's
  vocabulary is too large for the small data, the error must name `--set vocab.size=N`, and
  the command is run again with it, as a user would;
- `nmt serve` listens on a free port, which replaces 8501 in the commands that follow; the
  `curl` commands of the Docker section run against `nmt serve` (the same REST API);
- `runs/de-en` (the Serving section's model) is the model the commands before it trained.
The commands that are not run here are named in ELSEWHERE with the tests that run them
(the demo, the test suite); `docker run` needs Docker and the network and is only listed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nmt.demo_data import generate_pairs

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
SHRINK = [
    "model.embedding_dim=8", "model.units=16", "model.encoder_layers=1",
    "model.decoder_layers=1", "data.batch_tokens=256", "train.max_steps=2",
    "train.warmup_steps=0", "train.max_minutes=null", "train.eval_every=2",
    "train.checkpoint_every=2", "train.log_every=1", "vocab.input_sentence_size=0",
]  # fmt: skip
# Commands run by other tests: the README's command -> files that hold its test, and what
# those files must contain (what the command runs).
ELSEWHERE = {
    "bash scripts/demo.sh": {
        "tests/system/conftest.py": ["demo-data", "demo.yaml", "train"],
        "tests/system/test_demo.py": ["translate", "score", "bleu,chrf"],
    },
    "bash scripts/test.sh": {".ci/run": ["bash scripts/test.sh"]},
}
NOT_RUN = ("docker ",)  # needs Docker and the network (scripts/check_serving_runtime.sh)
MULTI30K_SECTION = "Multi30k"


def readme_commands(text: str) -> list[tuple[str, str]]:
    """(section heading, command) for each shell command of README.md, in order.

    Commands are the lines of ```bash blocks and of 4-space indented blocks, with
    backslash continuations joined and `# comments` dropped."""
    commands, section, block, fenced = [], "", None, False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            block = [] if fenced and line.strip() == "```bash" else None
            continue
        if not fenced and line.startswith("#"):
            section = line.lstrip("#").strip()
            continue
        indented = not fenced and line.startswith("    ") and line.strip()
        if (fenced and block is not None) or indented:
            commands.append((section, line[4:] if indented else line))
    joined: list[tuple[str, str]] = []
    for section, line in commands:
        stripped = line.strip()
        if joined and joined[-1][1].endswith("\\"):
            joined[-1] = (section, joined[-1][1][:-1] + " " + stripped)
        elif stripped and not stripped.startswith("#"):
            joined.append((section, stripped))
    return [(s, shlex.join(shlex.split(c, comments=True))) for s, c in joined]


def commands_of(*, multi30k: bool) -> list[str]:
    out = []
    for section, command in readme_commands(README.read_text("utf-8")):
        if command in ELSEWHERE or command.startswith(NOT_RUN):
            continue
        if (section == MULTI30K_SECTION) == multi30k:
            out.append(command)
    return out


def test_every_readme_command_is_run_by_a_test():
    commands = [c for _, c in readme_commands(README.read_text("utf-8"))]
    assert len(commands) > 15 and "nmt score test.hyp corpus/test.de" in commands
    run_here = commands_of(multi30k=False) + commands_of(multi30k=True)
    elsewhere = [c for c in commands if c in ELSEWHERE]
    not_run = [c for c in commands if c.startswith(NOT_RUN)]
    assert sorted(run_here + elsewhere + not_run) == sorted(commands)
    assert len(not_run) == 1, not_run  # only the Docker command
    for command in ELSEWHERE:
        assert command in commands, f"ELSEWHERE names {command!r}, which README.md lost"
        for path, needles in ELSEWHERE[command].items():
            text = (REPO / path).read_text("utf-8")
            missing = [n for n in needles if n not in text]
            assert not missing, f"{path} does not run {missing} of {command!r}"
    for command in run_here:
        assert shlex.split(command)[0] in ("nmt", "curl", "bash", "python", "source"), command


def test_readme_commands_parse():
    text = (
        "# t\n```bash\nnmt a --x 1 \\\n  --y 2   # note\n# only a comment\n```\n```\nlayout\n```\n"
        "## S\n\n    bash s.sh out  # c\n"
    )
    assert readme_commands(text) == [("t", "nmt a --x 1 --y 2"), ("S", "bash s.sh out")]


class Runner:
    """Runs README commands in `work` (see the module docstring)."""

    def __init__(self, work: Path, env: dict[str, str]):
        self.work, self.env = work, env
        self.server: subprocess.Popen | None = None
        self.port: str | None = None
        self.deferred: list[str] = []  # curl commands, for the server of exports/de-en
        for name in ("configs", "scripts"):
            (work / name).symlink_to(REPO / name)

    def args(self, command: str) -> list[str]:
        if self.port:
            command = command.replace("8501", self.port)
        args = shlex.split(command)
        if args[0] == "nmt":
            return [sys.executable, "-m", "nmt", *args[1:]]
        if args[0] == "python":
            return [sys.executable, *args[1:]]
        return args

    def run(self, command: str) -> str:
        words = shlex.split(command)
        if words[0] == "source":
            return ""
        if words[0] == "curl" and not self.serving("exports/de-en"):
            self.deferred.append(command)
            return ""
        if words[:2] == ["nmt", "serve"]:
            return self.serve(command)
        if words[:2] == ["nmt", "train"]:
            return self.train(command)
        args = self.args(command)
        stdout = None
        if ">" in args:
            args, target = args[: args.index(">")], args[args.index(">") + 1 :]
            stdout = self.work / target[0]
        done = self.call(args, command)
        if stdout is not None:
            stdout.write_text(done.stdout, encoding="utf-8")
        if (
            words[:2] == ["nmt", "export"]
            and "runs/en-de" in words
            and not (self.work / "runs" / "de-en").exists()
        ):
            (self.work / "runs" / "de-en").symlink_to("en-de")  # the Serving section's model
        return done.stdout

    def call(self, args: list[str], command: str) -> subprocess.CompletedProcess:
        done = subprocess.run(args, cwd=self.work, env=self.env, capture_output=True,
                              text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, f"README command {command!r} failed:\n{done.stderr[-3000:]}"
        return done

    def train(self, command: str) -> str:
        args = self.args(command) + [f"--set={s}" for s in SHRINK]
        done = subprocess.run(args, cwd=self.work, env=self.env, capture_output=True,
                              text=True, timeout=600)  # fmt: skip
        hint = re.search(r"\(use --set vocab\.size=(\d+) or less\)$", done.stderr.strip())
        if done.returncode == 2 and hint:  # the small data: do what the error says
            assert done.stderr.count("nmt: error:") == 1 and "Traceback" not in done.stderr
            done = self.call([*args, f"--set=vocab.size={hint.group(1)}"], command)
        assert done.returncode == 0, f"README command {command!r} failed:\n{done.stderr[-3000:]}"
        return done.stdout

    def serving(self, export_dir: str) -> bool:
        return self.server is not None and export_dir in self.server.args

    def serve(self, command: str) -> str:
        self.stop()
        args = shlex.split(command.replace("--port 8501", "--port 0"))
        self.server = subprocess.Popen(self.args(shlex.join(args)), cwd=self.work, env=self.env,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)  # fmt: skip
        line = self.server.stdout.readline()
        assert "serving model" in line, f"{command!r}: {line!r} {self.server.stderr.read()[-3000:]}"
        self.port = line.rsplit(" at ", 1)[1].split(":")[2].split("/")[0]
        if self.serving("exports/de-en"):
            for deferred in self.deferred:
                self.check_curl(deferred, self.call(self.args(deferred), deferred).stdout)
            self.deferred.clear()
        return line

    @staticmethod
    def check_curl(command: str, out: str) -> None:
        assert '"error"' not in out, f"{command!r}: {out}"
        if ":predict" in command:
            assert '"translation"' in out and '"score"' in out, f"{command!r}: {out}"

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            self.server.wait(timeout=120)
        self.server = None


def write_corpus(directory: Path, train: int = 300, dev: int = 20, test: int = 20) -> None:
    """Demo-task pairs in DIR/{train,dev,test}.{en,de}: the README's `corpus/`."""
    directory.mkdir(parents=True)
    pairs = list(generate_pairs(7, train + dev + test))
    for name, rows in [("train", pairs[:train]), ("dev", pairs[train : train + dev]),
                       ("test", pairs[train + dev :])]:  # fmt: skip
        for side, lang in enumerate(("en", "de")):
            text = "".join(p[side] + "\n" for p in rows)
            (directory / f"{name}.{lang}").write_text(text, encoding="utf-8")


@pytest.fixture
def runner(tmp_path, nmt_env):
    runner = Runner(tmp_path, nmt_env)
    yield runner
    runner.stop()


def test_the_readme_commands_run_on_small_data(runner, tmp_path):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (the README's REST examples use it)")
    write_corpus(tmp_path / "corpus")
    (tmp_path / "input.txt").write_text("Two men are talking.\n", encoding="utf-8")
    commands = commands_of(multi30k=False)
    for command in commands:
        runner.run(command)
    assert not runner.deferred, "no `nmt serve` of exports/de-en for the curl commands"
    assert sorted(os.listdir(tmp_path / "exports" / "de-en")) == ["1", "2"]
    assert len((tmp_path / "test.hyp").read_text("utf-8").splitlines()) == 20
    assert len((tmp_path / "output.txt").read_text("utf-8").splitlines()) == 1


def test_the_readme_multi30k_commands_run(runner, tmp_path, multi30k_dir):
    commands = commands_of(multi30k=True)
    assert commands and "../shared/data/multi30k" in commands[0]
    runner.run(commands[0].replace("../shared/data/multi30k", str(multi30k_dir)))
    data = tmp_path / "data" / "multi30k"
    for path in data.iterdir():  # keep the rest of the commands small
        lines = path.read_text("utf-8").splitlines(keepends=True)
        path.write_text("".join(lines[: 300 if path.name.startswith("train") else 20]), "utf-8")
    for command in commands[1:]:
        runner.run(command)
