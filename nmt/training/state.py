"""What a training run remembers: the checkpointed bookkeeping variables (`State`), the
state file DIR/train_state.json (`StateFile`, `train_state_record`), the cumulative training
time (`Clock`) and what `train` returns (`TrainResult`)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from nmt import modeldir
from nmt.training.stopping import Standing
from nmt.version import __version__


@dataclass
class TrainResult:
    model_dir: Path
    step: int  # global step reached
    start_step: int  # step this run resumed from (0 for a new model)
    stop_reason: str  # "max_steps", "max_minutes", "early_stopping", "already_done", "interrupted"
    last_checkpoint: Optional[Path]
    best_step: Optional[int]
    best_bleu: Optional[float]
    losses: list[float] = field(default_factory=list)  # mean train loss of each step run here
    evaluations: list[dict] = field(default_factory=list)  # evaluations made in this run
    precision: str = "float32"
    num_replicas: int = 1
    signal: Optional[int] = None  # the signal that interrupted training ("interrupted")


class State:
    """Bookkeeping variables that live in the checkpoint (restored exactly on resume)."""

    def __init__(self):
        import tensorflow as tf

        def var(value, dtype):
            return tf.Variable(value, dtype=dtype, trainable=False)

        self.step = var(0, tf.int64)
        self.lr_factor = var(1.0, tf.float32)  # plateau decay multiplier
        self.best_metric = var(-math.inf, tf.float64)  # BLEU, or -dev loss without BLEU
        self.best_step = var(-1, tf.int64)
        self.evals_without_gain = var(0, tf.int64)
        self.plateau_bad = var(0, tf.int64)
        self.nonfinite_streak = var(0, tf.int64)  # consecutive steps with non-finite loss
        self.worst_streak = var(0, tf.int64)  # largest streak since the last check

    def checkpoint(self):
        import tensorflow as tf

        return tf.train.Checkpoint(
            lr_factor=self.lr_factor,
            best_metric=self.best_metric,
            best_step=self.best_step,
            evals_without_gain=self.evals_without_gain,
            plateau_bad=self.plateau_bad,
            nonfinite_streak=self.nonfinite_streak,
        )

    def standing(self) -> Standing:
        return Standing(
            best_metric=float(self.best_metric.numpy()),
            best_step=int(self.best_step.numpy()),
            evals_without_gain=int(self.evals_without_gain.numpy()),
            plateau_bad=int(self.plateau_bad.numpy()),
            lr_factor=float(self.lr_factor.numpy()),
        )

    def set_standing(self, before: Standing, after: Standing) -> None:
        """Assign what changed from `before` to `after` (the others keep their exact values)."""
        for name in ("best_metric", "best_step", "evals_without_gain", "plateau_bad"):
            if getattr(after, name) != getattr(before, name):
                getattr(self, name).assign(getattr(after, name))
        if after.lr_factor != before.lr_factor:
            self.lr_factor.assign(after.lr_factor)


def train_state_record(
    step: int,
    standing: Standing,
    *,
    eval_bleu: bool,
    evaluations: list[dict],
    train_seconds: float,
    stop_reason: Optional[str],
    precision: str,
    replicas: int,
) -> dict[str, Any]:
    """The content of DIR/train_state.json."""
    best, best_step = standing.best_metric, standing.best_step
    return {
        "step": step,
        "metric": "bleu" if eval_bleu else "-dev_loss",
        "best_metric": best if math.isfinite(best) else None,
        "best_step": best_step if best_step >= 0 else None,
        "evaluations_without_gain": standing.evals_without_gain,
        "plateau_evaluations_without_gain": standing.plateau_bad,
        "learning_rate_factor": standing.lr_factor,
        "evaluations": evaluations,
        "train_seconds": round(train_seconds, 3),
        "stop_reason": stop_reason,
        "precision": precision,
        "replicas": replicas,
        "nmt_version": __version__,
    }


class Clock:
    """Cumulative wall seconds of the training loop (validation included), over all runs of
    a model directory: the figure read from the restored train state plus this run's.

    Across a resume the figure continues from the one written with the restored
    checkpoint's train state (approximate when an older checkpoint had to be used)."""

    def __init__(self, seconds_before: float = 0.0):
        self.seconds_before = seconds_before
        self.loop_start: Optional[float] = None

    def start(self) -> float:
        self.loop_start = time.perf_counter()
        return self.loop_start

    def train_seconds(self) -> float:
        if self.loop_start is None:
            return self.seconds_before
        return self.seconds_before + time.perf_counter() - self.loop_start


class StateFile:
    """DIR/train_state.json, written atomically by the chief (other workers write none)."""

    def __init__(self, model_dir: Path, is_chief: bool):
        self.path = model_dir / modeldir.TRAIN_STATE_FILE
        self.model_dir, self.is_chief = model_dir, is_chief

    def read(self) -> dict[str, Any]:
        return modeldir.read_train_state(self.model_dir)

    def write(self, record: dict[str, Any]) -> None:
        if self.is_chief:
            modeldir.write_json_atomic(self.path, record)
