"""Training progress: when the loop writes a log line, and how long the rest of the run takes.

Pure functions of step counts and measured seconds (no TensorFlow), used by nmt/training/run.py.

A log line is due every `train.log_every` steps and, when steps are slow, also once
`train.log_every_seconds` seconds of training (evaluations and checkpoints excluded) have
passed since the last one, so that the first line of a large model comes after seconds, not
minutes.

The ETA is the training time of the steps still to come plus the evaluations and checkpoints
still to come, each at the mean duration measured so far: the loop evaluates every
`eval_every` steps and saves every `checkpoint_every` steps, and once more at `max_steps`
when that is no multiple of them (`count_events`). Evaluations not yet measured are not
guessed: `Eta.unmeasured` says how many the figure leaves out. With `train.max_minutes`, the
ETA is at most the time left to that limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Eta:
    seconds: float  # estimated wall seconds until the run ends
    unmeasured: int = 0  # evaluations to come whose duration the estimate leaves out

    def text(self, format_time) -> str:
        """`0:05:00`, or `0:05:00 + 3 evals` while no evaluation has been timed yet."""
        extra = ""
        if self.unmeasured:
            extra = f" + {self.unmeasured} eval{'s' if self.unmeasured > 1 else ''}"
        return f"{format_time(self.seconds)}{extra}"


def count_events(step: int, max_steps: int, every: int) -> int:
    """How many of steps step+1 .. max_steps evaluate (or save) when that happens every
    `every` steps and at `max_steps` itself."""
    if every <= 0 or step >= max_steps:
        return 0
    return max_steps // every - step // every + (1 if max_steps % every else 0)


def mean(values: Sequence[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def estimate_remaining(
    step: int,
    max_steps: int,
    seconds_per_step: float,
    *,
    eval_every: int = 0,
    eval_seconds: Optional[float] = None,
    checkpoint_every: int = 0,
    checkpoint_seconds: Optional[float] = None,
    seconds_left: Optional[float] = None,
) -> Eta:
    """The time the rest of a run takes after training `step` (see the module docstring):
    the evaluation and checkpoint of `step` itself are still to come, since the loop logs first.

    `eval_every` 0 means no evaluations (no dev set); `eval_seconds` and `checkpoint_seconds`
    are the mean measured durations, None when none was measured yet (a checkpoint then
    counts as free, an evaluation as unmeasured). `seconds_left`: time to `train.max_minutes`.
    """
    steps_left = max(0, max_steps - step)
    seconds = steps_left * max(0.0, seconds_per_step)
    done = max(0, min(step, max_steps) - 1)  # the loop logs `step` before evaluating it
    evals = count_events(done, max_steps, eval_every)
    unmeasured = 0
    if eval_seconds is None:
        unmeasured = evals
    else:
        seconds += evals * eval_seconds
    seconds += count_events(done, max_steps, checkpoint_every) * (checkpoint_seconds or 0.0)
    if seconds_left is not None and seconds >= seconds_left:
        return Eta(max(0.0, seconds_left))  # the time limit ends the run first, evals or not
    return Eta(seconds, unmeasured)


def log_due(step: int, log_every: int, log_every_seconds: float, seconds_since_log: float) -> bool:
    """Whether the loop logs after `step`: every `log_every` steps, or when
    `log_every_seconds` (> 0) seconds of training passed since the last line."""
    if step % log_every == 0:
        return True
    return log_every_seconds > 0 and seconds_since_log >= log_every_seconds
