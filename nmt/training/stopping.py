"""When training stops and when it cuts the learning rate: pure rules, no TensorFlow.

- `judge`: one evaluation's metric against the best so far: a new best, plateau decay
  (`train.decay: plateau`, after `train.plateau_patience` evaluations without gain) and early
  stopping (after `train.early_stopping` evaluations without gain).
- `StoppingRules`: after each step, `train.max_minutes` and a signal (SIGINT/SIGTERM). With
  several workers both are decided together at log boundaries (`boundary`) through
  `broadcast` (the chief's answer on every worker), so that all stop at the same step.
- `final_validation_due`: whether the weights a run ends with still need an evaluation.
`train.max_steps` is the loop's own bound.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from nmt.config import TrainConfig

Broadcast = Callable[[list[float]], list[float]]


@dataclass(frozen=True)
class Standing:
    """The best-so-far bookkeeping (checkpointed as `_State`'s variables)."""

    best_metric: float = -math.inf  # BLEU, or -dev loss without BLEU
    best_step: int = -1
    evals_without_gain: int = 0
    plateau_bad: int = 0  # evaluations without gain since the last plateau cut
    lr_factor: float = 1.0  # plateau decay multiplier


@dataclass(frozen=True)
class Verdict:
    standing: Standing  # after this evaluation
    gain: bool  # a new best (to be saved to DIR/best)
    decayed: bool  # plateau decay cut the learning rate
    early_stop: bool  # train.early_stopping evaluations without gain


def judge(before: Standing, metric: float, step: int, train: TrainConfig) -> Verdict:
    """The standing after an evaluation at `step` whose metric (higher is better) is `metric`."""
    gain = math.isfinite(metric) and metric > before.best_metric
    decayed = False
    if gain:
        after = dataclasses.replace(
            before, best_metric=metric, best_step=step, evals_without_gain=0, plateau_bad=0
        )
    else:
        after = dataclasses.replace(
            before,
            evals_without_gain=before.evals_without_gain + 1,
            plateau_bad=before.plateau_bad + 1,
        )
        if train.decay == "plateau" and after.plateau_bad >= train.plateau_patience:
            after = dataclasses.replace(
                after, lr_factor=after.lr_factor * train.decay_rate, plateau_bad=0
            )
            decayed = True
    patience = train.early_stopping
    early = bool(patience) and after.evals_without_gain >= patience
    return Verdict(after, gain, decayed, early)


def final_validation_due(
    has_dev: bool, stop_reason: str, step: int, start_step: int, eval_every: int
) -> bool:
    """Whether to evaluate once more at the end, so that `best` also considers the final
    weights: after max_steps or max_minutes, when the last step was no evaluation step."""
    return (
        has_dev
        and stop_reason in ("max_steps", "max_minutes")
        and step > start_step
        and step % eval_every != 0
    )


class StoppingRules:
    """The stops decided after a step: train.max_minutes, then a signal (`requested()`)."""

    def __init__(
        self,
        train: TrainConfig,
        start: float,
        *,
        num_workers: int = 1,
        broadcast: Optional[Broadcast] = None,
        requested: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.train, self.num_workers = train, num_workers
        self.broadcast, self.requested, self.clock = broadcast, requested, clock
        self.deadline = start + train.max_minutes * 60 if train.max_minutes else None

    def boundary(self, step: int) -> bool:
        """Log boundaries: where several workers take their collective decisions."""
        return step % self.train.log_every == 0 or step == self.train.max_steps

    def seconds_left(self, now: float) -> Optional[float]:
        return None if self.deadline is None else self.deadline - now

    def _together(self, mine: bool, boundary: bool) -> bool:
        """`mine` in one process; the chief's answer at boundaries with several workers."""
        if self.num_workers <= 1:
            return mine
        return boundary and self.broadcast([float(mine)])[0] > 0.5

    def after_step(self, boundary: bool) -> Optional[str]:
        """ "max_minutes", "interrupted" or None (train on)."""
        if self.deadline is not None and self._together(self.clock() > self.deadline, boundary):
            return "max_minutes"
        if self._interrupted(boundary):
            return "interrupted"
        return None

    def _interrupted(self, boundary: bool) -> bool:
        if self.num_workers > 1 and not boundary:  # the signal is not read off boundaries
            return False
        return self._together(self.requested(), boundary)
