"""Parsers of training logs (`nmt train`'s step lines, OpenNMT-tf's reports) and steady-state
rates."""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional


@dataclass
class LogWindow:
    """One `step N/M ... X tok/s` line of `nmt train`: the rate over the steps since the last
    line; `time` is when the line arrived (seconds since the process started), when known."""

    step: int
    tokens_per_s: float
    time: Optional[float] = None


_STEP_LINE = re.compile(
    r"^(?:\[\s*(?P<time>\d+(?:\.\d+)?)\]\s*)?step (?P<step>\d+)/\d+ .*?"
    r"(?P<rate>\d+(?:\.\d+)?)(?P<k>k?) tok/s(?:\s|$)"
)


def parse_nmt_train_log(text: str) -> list[LogWindow]:
    """The report lines of one `nmt train` run, in order (`3.0k tok/s` = 3000 tokens/s).

    Lines may carry the `[  12.345] ` arrival-time prefix that `run_timed` writes.
    """
    windows = []
    for line in text.splitlines():
        m = _STEP_LINE.match(line.strip())
        if m:
            rate = float(m.group("rate")) * (1000.0 if m.group("k") else 1.0)
            when = float(m.group("time")) if m.group("time") is not None else None
            windows.append(LogWindow(int(m.group("step")), rate, when))
    return windows


@dataclass
class SteadyRate:
    tokens_per_s: float  # time-weighted mean of the reported rates (plain mean without times)
    step_seconds: Optional[float]  # wall seconds per step between report lines
    steps: int  # steps inside the windows used
    windows: int


def steady_rate(runs: Sequence[Sequence[LogWindow]], skip: int = 1) -> Optional[SteadyRate]:
    """Steady-state rate over several runs, leaving out the first `skip` windows of each run.

    The first window of a run includes tracing and the input pipeline's warm-up. With arrival
    times, each used window lasts from the previous line to its own and the rate is
    sum(rate * duration) / sum(duration), i.e. tokens / time; without them, the plain mean.
    None when no window is left.
    """
    rates, durations, steps = [], [], 0
    for windows in runs:
        for i in range(max(skip, 1) if skip else 0, len(windows)):
            w = windows[i]
            if i == 0:  # only reachable with skip=0: no previous line to measure from
                rates.append(w.tokens_per_s)
                durations.append(None)
                steps += w.step
                continue
            prev = windows[i - 1]
            steps += w.step - prev.step
            rates.append(w.tokens_per_s)
            if w.time is not None and prev.time is not None:
                durations.append(w.time - prev.time)
            else:
                durations.append(None)
    if not rates:
        return None
    if all(d is not None and d > 0 for d in durations):
        total = sum(durations)
        rate = sum(r * d for r, d in zip(rates, durations, strict=True)) / total
        step_seconds = total / steps if steps else None
    else:
        rate, step_seconds = statistics.fmean(rates), None
    return SteadyRate(rate, step_seconds, steps, len(rates))


def peer_steady_rate(runs: Sequence[Any], batch_size: int) -> dict:
    """OpenNMT-tf's steady state, computed like ours from its reports (bench_peer
    ThroughputReport: steps_per_sec, tokens_per_sec): the non-zero reports after the first of
    every run (all of a run's non-zero reports when it has only one; OpenNMT-tf reports zeros
    while it ignores a run's first updates), weighted by duration. The report windows are
    equally many steps, so a window's duration is 1 / its steps/s. `tokens_per_s_nmt` adds
    the EOS per source sentence nmt counts and OpenNMT-tf does not (steps/s x batch size)."""
    kept = []
    for run in runs:
        reports = [r for r in run.reports if r.steps_per_sec > 0]
        kept += reports[1:] or reports
    if not kept:
        return {"tokens_per_s": None, "tokens_per_s_nmt": None, "step_seconds": None, "windows": 0}
    durations = [1.0 / r.steps_per_sec for r in kept]
    total = sum(durations)
    own = sum(r.tokens_per_sec * d for r, d in zip(kept, durations, strict=True)) / total
    return {
        "tokens_per_s": own,
        "tokens_per_s_nmt": own + len(kept) * batch_size / total,
        "step_seconds": total / len(kept),
        "windows": len(kept),
    }


def parse_parameters(text: str) -> Optional[int]:
    """The parameter count `nmt train` logs (`training DIR: ..., 22,527,808 parameters, ...`)."""
    m = re.search(r"training .*?, ([\d,]+) parameters", text)
    return int(m.group(1).replace(",", "")) if m else None
