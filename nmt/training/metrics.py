"""What training reports: TensorBoard scalars, the progress and evaluation log lines, the
collapsed-attention warning.

`TensorBoard` writes DIR/logs/train and DIR/logs/dev (on the chief only); the logs are not
essential, so a write error is a warning once and training goes on without them. The line
formats are pure functions of the figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from nmt import modeldir

Log = Callable[[str], None]

# Attention whose mass sits this much on the last two source positions ("." and EOS), or on
# any one source position of each sentence, on average over the dev set, has collapsed: the
# decoder reads the sentence from there, not from the words it translates. Healthy Multi30k
# models put 5-20% on the last two and 12-20% on their most-attended position; collapsed ones
# 86-99% and 80% or more (BENCHMARKS.md, "Attention").
COLLAPSED_FINAL_MASS = 0.6
COLLAPSED_PEAK = 0.6


def attention_warning(result: dict[str, float]) -> Optional[str]:
    """A warning when the dev-set attention statistics show a collapsed attention."""
    mass = result.get("attention_final_mass", math.nan)
    peak = result.get("attention_peak", math.nan)
    entropy = f"entropy {result.get('attention_entropy', math.nan):.2f} nats"
    advice = (
        "the model is not using it to align; --set train.coverage_loss=0.2 (or "
        'model.attention=bahdanau) keeps it spread (BENCHMARKS.md, "Attention")'
    )
    if math.isfinite(mass) and mass >= COLLAPSED_FINAL_MASS:
        where = f"{100 * mass:.0f}% of it on the last 2 source positions"
    elif math.isfinite(peak) and peak >= COLLAPSED_PEAK:
        where = f"{100 * peak:.0f}% of each sentence's on one source position"
    else:
        return None
    return f"attention looks collapsed: {where} ({entropy}); {advice}"


def format_time(seconds: float) -> str:
    """H:MM:SS of a duration (negative durations read 0:00:00)."""
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def rate(value: float) -> str:
    """A throughput figure: 950, 12.3k."""
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


def step_line(
    step: int, max_steps: int, loss: float, lr: float, norm: float, tokens_per_s: float
) -> str:
    """The start of a progress line (elapsed time and ETA follow)."""
    return (
        f"step {step}/{max_steps} loss {loss:.4f} lr {lr:.3g} "
        f"gnorm {norm:.3g} {rate(tokens_per_s)} tok/s"
    )


def eval_line(step: int, result: dict[str, float], gain: bool, best: str, best_step: int) -> str:
    """The log line of one evaluation; `best` is the best metric so far, formatted."""
    bleu = f" bleu {result['bleu']:.2f}" if "bleu" in result else ""
    return (
        f"eval step {step}: dev loss {result['dev_loss']:.4f} ppl "
        f"{result['dev_perplexity']:.2f}{bleu} ({'new best' if gain else 'best ' + best}"
        f" at step {best_step}); attention entropy "
        f"{result['attention_entropy']:.2f} nats (uniform "
        f"{result['attention_uniform_entropy']:.2f}), "
        f"{100 * result['attention_final_mass']:.0f}% on the last 2 source positions, "
        f"{100 * result['attention_peak']:.0f}% on the most-attended one"
    )


def dev_scalars(result: dict[str, float]) -> dict[str, Optional[float]]:
    """The TensorBoard scalars of one evaluation (group "dev")."""
    return {
        "loss": result["dev_loss"],
        "perplexity": result["dev_perplexity"],
        "bleu": result.get("bleu"),
        "attention_entropy": result["attention_entropy"],
        "attention_final_mass": result["attention_final_mass"],
        "attention_peak": result["attention_peak"],
    }


def _scalar_metadata():
    """Summary metadata that TensorBoard's scalar dashboard reads (plugin "scalars").

    `tf.summary.scalar` needs the tensorboard package; `tf.summary.write` with this metadata
    writes the same event records without it.
    """
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
        data_class=summary_pb2.DATA_CLASS_SCALAR,
    )


class TensorBoard:
    """The event files of DIR/logs/train and DIR/logs/dev, opened on the first write; a
    non-chief task writes none."""

    def __init__(self, model_dir: Path, is_chief: bool, log: Log):
        self.model_dir, self.is_chief, self.log = model_dir, is_chief, log
        self.writers: Optional[dict[str, Any]] = None  # {} after a failure: never reopened

    def _open(self) -> Optional[dict[str, Any]]:
        if self.writers is None and self.is_chief:
            import tensorflow as tf

            logs = self.model_dir / modeldir.LOGS_DIR
            self.writers = {
                "train": tf.summary.create_file_writer(str(logs / "train")),
                "dev": tf.summary.create_file_writer(str(logs / "dev")),
            }
        return self.writers

    def scalars(self, group: str, step: int, values: dict[str, Optional[float]]) -> None:
        """Write the finite `values` of group "train" or "dev" at `step`."""
        import tensorflow as tf

        try:
            writers = self._open()
            if not writers:
                return
            with writers[group].as_default(step=step):
                for name, value in values.items():
                    if value is not None and math.isfinite(value):
                        tf.summary.write(
                            name, tf.constant(value, tf.float32), metadata=_scalar_metadata()
                        )
        except tf.errors.OpError as e:
            self._failed(e)

    def _failed(self, error) -> None:
        """TensorBoard logs are not essential: warn once and train on without them."""
        reason = modeldir.error_reason(error)
        self.log(
            f"nmt: warning: cannot write TensorBoard logs to {self.model_dir / modeldir.LOGS_DIR} "
            f"({reason}); training continues without them"
        )
        self.writers = {}

    def flush(self, close: bool = False) -> None:
        if not self.writers:
            return
        import tensorflow as tf

        try:
            for w in self.writers.values():
                if close:
                    w.close()
                else:
                    w.flush()
        except tf.errors.OpError as e:
            self._failed(e)


@dataclass
class Window:
    """Throughput between two progress lines; validation and saving (`paused`) excluded."""

    start: float = 0.0
    tokens: float = 0.0
    steps: int = 0
    paused: float = 0.0  # seconds spent validating and saving within the window

    def elapsed(self, now: float) -> float:
        return now - self.start - self.paused

    def reset(self, now: float) -> None:
        self.start, self.tokens, self.steps, self.paused = now, 0.0, 0, 0.0
