"""Training runs of the peer and the parsing of OpenNMT-tf's training log."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

from bench.peer.base import (
    PEER_VENV,
    STEADY_SKIP,
    PeerData,
    PeerError,
    PeerTrainRun,
    ThroughputReport,
    _onmt_main,
)
from bench.peer.config import write_peer_config
from bench.peer.runner import _base_command, _run, _tail

# "2026-11-24 04:50:01.123000: I training.py:590] Step = 20 ; steps/s = 0.41, ..."
LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [DIWEF] ")
REPORT = re.compile(
    r"Step = (?P<step>\d+) ; steps/s = (?P<steps>[\d.]+), tokens/s = (?P<tokens>\d+) "
    r"\((?P<words>[^)]*)\) ; Learning rate = (?P<lr>[-+\d.eE]+) ; Loss = (?P<loss>[-+\d.eEnaif]+)"
)
WORDS = re.compile(r"(\d+) (\w+)")
NUM_PARAMS = re.compile(r"Number of model parameters: (\d+)")
CHECKPOINT_STATE = re.compile(r'^model_checkpoint_path: "(?:.*/)?ckpt-(\d+)"', re.M)


def parse_reports(text: str) -> list[ThroughputReport]:
    """The throughput reports (`Step = N ; steps/s = ...`) of an OpenNMT-tf training log."""
    reports = []
    for match in REPORT.finditer(text):
        words = {name: int(value) for value, name in WORDS.findall(match["words"])}
        reports.append(
            ThroughputReport(
                step=int(match["step"]),
                steps_per_sec=float(match["steps"]),
                tokens_per_sec=int(match["tokens"]),
                source_words_per_sec=words.get("source", 0),
                target_words_per_sec=words.get("target", 0),
                learning_rate=float(match["lr"]),
                loss=float(match["loss"]),
            )
        )
    return reports


def parse_effective_config(text: str) -> dict | None:
    """The YAML block OpenNMT-tf logs after `Using parameters:` (the merged run config)."""
    import yaml

    lines = text.splitlines()
    for i, line in enumerate(lines):
        if LOG_PREFIX.match(line) and line.rstrip().endswith("Using parameters:"):
            block = []
            for follow in lines[i + 1 :]:
                if LOG_PREFIX.match(follow):
                    break
                block.append(follow)
            try:
                config = yaml.safe_load("\n".join(block))
            except yaml.YAMLError:
                return None
            return config if isinstance(config, dict) else None
    return None


def parse_num_params(text: str) -> int | None:
    match = NUM_PARAMS.search(text)
    return int(match[1]) if match else None


def steady_state(reports: list[ThroughputReport], skip: int = STEADY_SKIP) -> dict:
    """Medians of the reports after the first `skip` (of all of them when no more remain)."""
    kept = reports[skip:] or reports
    if not kept:
        return {"source": None, "target": None, "tokens": None, "steps": None}
    return {
        "source": statistics.median(r.source_words_per_sec for r in kept),
        "target": statistics.median(r.target_words_per_sec for r in kept),
        "tokens": statistics.median(r.tokens_per_sec for r in kept),
        "steps": statistics.median(r.steps_per_sec for r in kept),
    }


def checkpoint_step(model_dir: Path) -> int:
    """Step of the latest checkpoint in `model_dir` (0 when there is none)."""
    state = Path(model_dir) / "checkpoint"
    if not state.exists():
        return 0
    match = CHECKPOINT_STATE.search(state.read_text(encoding="utf-8"))
    return int(match[1]) if match else 0


def train_peer(
    data: PeerData,
    model_dir: Path,
    steps: int,
    *,
    batch_size: int = 64,
    onmt_main: Path | None = None,
    log=print,
    report_every: int | None = None,
) -> PeerTrainRun:
    """Train NMTSmallV1 up to `steps` steps in total (continuing from model_dir's checkpoint).

    `report_every`: steps between throughput reports (default: the module's `REPORT_EVERY`).
    """
    model_dir = Path(model_dir)
    onmt_main = Path(onmt_main) if onmt_main else _onmt_main(PEER_VENV)
    start_step = checkpoint_step(model_dir)
    if start_step >= steps:
        raise PeerError(f"{model_dir} is already at step {start_step}; ask for more than {steps}")
    config = write_peer_config(
        data, model_dir, max_step=steps, batch_size=batch_size, report_every=report_every
    )
    command = [*_base_command(onmt_main, [config]), "train"]
    log_path = model_dir / f"train_{start_step}-{steps}.log"
    log(f"bench_peer: {' '.join(command)}  (log: {log_path})")
    wall, cpu, rss, status = _run(command, log_path)
    if status != 0:
        raise PeerError(
            f"onmt-main train exited with status {status}; last lines of {log_path}:\n"
            + _tail(log_path)
        )
    text = log_path.read_text(encoding="utf-8", errors="replace")
    final_step = checkpoint_step(model_dir)
    reports = [r for r in parse_reports(text) if r.step > start_step]
    steady = steady_state(reports)
    eos = None
    if steady["tokens"] is not None:
        eos = steady["tokens"] + steady["steps"] * batch_size
    return PeerTrainRun(
        wall_seconds=wall,
        cpu_seconds=cpu,
        peak_rss_bytes=rss,
        reports=reports,
        steady_source_words_per_sec=steady["source"],
        steady_target_words_per_sec=steady["target"],
        steady_tokens_per_sec=steady["tokens"],
        steady_tokens_per_sec_eos=eos,
        steady_steps_per_sec=steady["steps"],
        start_step=start_step,
        final_step=final_step,
        steps_run=final_step - start_step,
        num_params=parse_num_params(text),
        batch_size=batch_size,
        log_path=log_path,
        config_path=config,
        command=command,
        effective_config=parse_effective_config(text),
    )
