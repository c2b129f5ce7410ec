"""The one runner of timed subprocesses (wall, CPU and peak RSS from `os.wait4`) and their
environment."""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from bench.common import BenchError


@dataclass
class ProcResult:
    label: str
    command: list[str]
    returncode: int
    wall: float  # seconds from start to exit
    cpu: float  # user + system CPU seconds of the process (and its waited-for children)
    peak_rss: int  # bytes (ru_maxrss)
    log: Path
    text: str = ""  # the process' output with arrival-time prefixes

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["log"] = str(self.log)
        d.pop("text")
        return d


def child_env(*, isolated: bool = False) -> dict[str, str]:
    """The environment of a measured process; `isolated`: without PYTHONPATH and PYTHONHOME
    (a tool of another venv, e.g. OpenNMT-tf's, must not see this checkout's)."""
    drop = ("PYTHONPATH", "PYTHONHOME") if isolated else ()
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow", PYTHONUNBUFFERED="1")
    return env


def wait_timed(
    command: Sequence[str],
    log_path: Path,
    *,
    env: Optional[dict[str, str]] = None,
    cwd: Optional[Path] = None,
    stamp: bool = True,
) -> tuple[int, float, float, int, str]:
    """The one runner of measured processes: run `command` with stdout+stderr into `log_path`
    and return (exit status, wall s, CPU s, peak RSS bytes, output), CPU and RSS of that
    process from `os.wait4` (`ru_utime + ru_stime`; `ru_maxrss` KiB -> bytes). `stamp`: each
    line with its arrival time, between the command line and an exit line; otherwise the
    output as it came (for parsers of the tool's own log lines)."""
    command = [str(c) for c in command]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, errors="replace", bufsize=1,
                            env=child_env() if env is None else env, cwd=cwd)  # fmt: skip
    try:
        with open(log_path, "w", encoding="utf-8") as log:
            if stamp:
                log.write(f"$ {shlex.join(command)}\n")
            assert proc.stdout is not None
            for line in proc.stdout:
                line = f"[{time.perf_counter() - start:10.3f}] {line}" if stamp else line
                lines.append(line)
                log.write(line)
            proc.stdout.close()
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
            if stamp:
                log.write(f"# exit {proc.returncode}, wall {wall:.2f} s\n")
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
        raise
    cpu, rss = usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024
    return proc.returncode, wall, cpu, rss, "".join(lines)


def run_timed(
    command: Sequence[str], log_path: Path, label: str, *, cwd: Optional[Path] = None
) -> ProcResult:
    """`wait_timed` with a stamped log; raises BenchError on failure, quoting the end of the
    log."""
    command = [str(c) for c in command]
    returncode, wall, cpu, peak_rss, text = wait_timed(command, log_path, cwd=cwd)
    result = ProcResult(
        label=label,
        command=command,
        returncode=returncode,
        wall=wall,
        cpu=cpu,
        peak_rss=peak_rss,
        log=log_path,
        text=text,
    )
    if returncode != 0:
        tail = "".join(text.splitlines(keepends=True)[-15:])
        raise BenchError(
            f"`{shlex.join(command)}` exited with {returncode} (log {log_path}):\n{tail}"
        )
    return result


def nmt_cli() -> list[str]:
    from bench_translate import nmt_command

    return nmt_command()
