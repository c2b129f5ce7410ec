"""Running `onmt-main`: one child process, its log, wall and CPU time and peak RSS."""

from __future__ import annotations

from pathlib import Path

from bench.peer.base import MODEL_TYPE, SEED
from bench.proc import child_env, wait_timed


def _run(command: list[str], log_path: Path) -> tuple[float, float, int, int]:
    """Run `command` (the peer's venv: no PYTHONPATH) with its output as it came into
    `log_path`: (wall s, CPU s, peak RSS bytes, exit status)."""
    status, wall, cpu, rss, _ = wait_timed(command, log_path, env=child_env(isolated=True),
                                           stamp=False)  # fmt: skip
    return wall, cpu, rss, status


def _tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])


def _base_command(onmt_main: Path, configs: list[Path]) -> list[str]:
    return [
        str(onmt_main),
        "--model_type",
        MODEL_TYPE,
        "--config",
        *(str(c) for c in configs),
        "--auto_config",
        "--seed",
        str(SEED),
    ]


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)
