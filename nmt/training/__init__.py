"""Training: model directory set-up, a custom distributed training loop, validation, resume.

`train(config, model_dir)` trains (or resumes training of) the model in `model_dir`:

1. Set-up. `nmt train` holds DIR's lock (nmt/locking.py) from before set-up to the end, so
   a second writer of DIR is refused. A new DIR is made (an empty one is used as it is) and
   built in a hidden staging directory inside it (vocabulary trained or copied from
   `vocab.path`, config.yaml with absolute data paths, VERSION), whose files are moved into
   DIR with config.yaml last: DIR is a model directory only once complete, and one that
   holds only what a set-up cut short leaves is set up again. If training fails before its
   first checkpoint, what this run set up is removed again (DIR too when this run made it),
   so a re-run is never blocked; a DIR with any checkpoint is never removed. An existing DIR
   with the same `model` and `vocab` sections is resumed; a different one is refused
   (CheckpointError), unless it holds no checkpoint yet (left by a killed run), in which
   case it is set up again. Relative data paths in a config are relative to the current
   directory. SIGINT or SIGTERM (nmt/interrupts.py): the first one ends the current step,
   writes a checkpoint and stops (`stop_reason` "interrupted", `signal` set); a second one
   aborts at once.
2. Loop. One `tf.function` train step with an input signature of unknown (None, None) shapes
   (variable batch shapes never retrace), optionally XLA-compiled (`train.jit`). The loss is
   the label-smoothed cross-entropy summed over target tokens divided by the number of
   target tokens in the (global) batch. Gradients are clipped by their global norm; the
   learning rate follows `learning_rate_at`.
3. Precision and determinism. `train.precision`: auto = mixed_float16 with a GPU,
   mixed_bfloat16 on a CPU with bfloat16 units (AVX512-BF16 or AMX), float32 on other CPUs;
   a resumed run keeps the precision it was started with. float16 uses
   `keras.optimizers.LossScaleOptimizer` (dynamic loss scaling); it unscales the gradients
   before the inner optimizer clips them, so clipping sees true gradients. A step whose
   gradients overflow (inf/NaN) changes no weight or optimizer slot and halves the scale;
   its logged gnorm is inf, its loss stays finite, and the step counter (so the learning-rate
   schedule) still advances. The scale and its growth counter are checkpointed and resumed.
   Variables stay float32. The global Keras policy is restored when `train` returns, and
   so is TensorFlow's op determinism, which `train.deterministic` turns on while training.
4. Checkpoints every `train.checkpoint_every` steps and at the end (last
   `train.keep_checkpoints` kept), see nmt/checkpoint_files.py. A checkpoint holds the model,
   optimizer slots and loss scale, step, schedule and early-stopping state, dropout RNG states
   and the tf.data iterator (shuffle buffer included), so a resumed run continues exactly as
   an uninterrupted one would. A corrupt newest checkpoint is reported and the previous one
   used.
5. Validation every `train.eval_every` steps: dev loss and perplexity (no label smoothing),
   greedy sacreBLEU (`train.eval_bleu`); the best checkpoint is copied to DIR/best/; early
   stopping after `train.early_stopping` evaluations without gain; plateau decay of the
   learning rate. Without `train.eval_bleu` the dev loss is the metric.
6. Distribution. Several local GPUs: MirroredStrategy; TF_CONFIG with several tasks:
   MultiWorkerMirroredStrategy (only the chief writes the model directory; other workers
   write their checkpoints to a local temporary directory and delete it, as the TF
   multi-worker guide prescribes, and wait for the chief's vocabulary). `data.batch_tokens`
   is per replica: every process builds the same global batch of batch_tokens x replicas
   (same seed, same files) and replica r trains on rows [B r / R, B (r+1) / R). The plain
   tf.data iterator therefore stays checkpointable (a tf.distribute iterator is not), and the
   loss of every replica is divided by the token count of the whole global batch.
   Gradients are summed over replicas before clipping and loss-scale checks, so every
   replica sees the same gradient.

The parts (see docs/architecture.md): `setup` (config checks, the model directory),
`optim` (learning rate, optimizer), `cluster` (strategy, threads), `metrics` (TensorBoard, log
lines), `stopping` (best/plateau/early stopping, max_minutes, signals), `state` (checkpointed
variables, train_state.json), `keeping` (which checkpoints are kept), `restore` (resume),
`step` (`Trainer`: the TensorFlow objects and compiled steps), `run` (`Run`: the loop). This
module holds `train`, the entry point, and re-exports the names other modules use.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, Optional

from nmt import fileio, interrupts, locking, modeldir
from nmt.config import Config, from_dict, save_config
from nmt.precision import explain_precision
from nmt.training.cluster import Cluster, chief_temp_dir, make_cluster, set_threads
from nmt.training.metrics import COLLAPSED_FINAL_MASS, COLLAPSED_PEAK, attention_warning
from nmt.training.optim import clip_to_global_norm, learning_rate_at, make_optimizer
from nmt.training.run import Run
from nmt.training.setup import (
    WORKER_WAIT_SECONDS,
    Log,
    PathLike,
    check_model_dir,
    check_train_config,
    data_changes,
    has_checkpoint,
    incompatible_changes,
    prepare_model_dir,
    resolve_paths,
    undo_setup,
)
from nmt.training.state import State, TrainResult
from nmt.training.step import Trainer

# The names these classes had before training was split into parts (tests and scripts use them).
_Trainer, _Run, _State = Trainer, Run, State

__all__ = [
    "COLLAPSED_FINAL_MASS",
    "COLLAPSED_PEAK",
    "WORKER_WAIT_SECONDS",
    "Cluster",
    "Run",
    "State",
    "TrainResult",
    "Trainer",
    "attention_warning",
    "check_model_dir",
    "check_train_config",
    "chief_temp_dir",
    "clip_to_global_norm",
    "data_changes",
    "has_checkpoint",
    "incompatible_changes",
    "learning_rate_at",
    "make_cluster",
    "make_optimizer",
    "prepare_model_dir",
    "resolve_paths",
    "save_config",
    "set_threads",
    "train",
    "undo_setup",
]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train(
    config: Config,
    model_dir: PathLike,
    *,
    log: Optional[Log] = None,
    strategy: Any = None,
    threads: Optional[int] = None,
) -> TrainResult:
    """Train or resume the model in `model_dir` (see the module docstring).

    `strategy`: a tf.distribute.Strategy or "auto" (default), "default", "mirrored",
    "multi_worker". `threads`: CPU threads for TensorFlow's op pools (default: all cores), so
    that trials can run side by side. Raises ConfigError, DataError or CheckpointError for
    user errors, and NmtError when the loss becomes NaN or infinite (the last good checkpoint
    is kept).
    """
    log = log or _stderr
    model_dir = Path(model_dir)
    config = resolve_paths(config)
    config = from_dict(config.to_dict())  # re-validate (a Config may be built by hand)
    check_train_config(config)
    from nmt.data import check_parallel_files

    # What can be checked without TensorFlow comes before it is imported (fast errors).
    file_stats = check_parallel_files(config.data.train_source, config.data.train_target)
    if config.data.dev_source:
        check_parallel_files(config.data.dev_source, config.data.dev_target)
    check_model_dir(config, model_dir)
    if threads is not None:
        set_threads(threads)
    cluster = make_cluster(strategy)  # before any other TensorFlow work (multi-worker)

    is_chief = cluster.is_chief
    new_dir = not model_dir.exists()
    if is_chief:
        fileio.check_output_dir(model_dir, option="--model-dir")
        model_dir.mkdir(parents=True, exist_ok=True)
    lock = locking.model_dir_lock(model_dir, "nmt train", warn=log) if is_chief else None
    setup = {"created": False}
    with lock or contextlib.nullcontext(), interrupts.StopRequest(log) as stop:
        try:
            return _train_locked(config, model_dir, cluster, log, stop, file_stats, setup)
        except BaseException as e:
            # What this run set up is undone when DIR holds no checkpoint, so that a re-run
            # starts clean; a DIR with any checkpoint, or one stopped by a signal, is kept.
            if is_chief and not isinstance(e, KeyboardInterrupt):
                if new_dir or setup["created"]:
                    undo_setup(model_dir, remove_dir=new_dir)
            raise


def _train_locked(config, model_dir, cluster, log, stop, file_stats, setup) -> TrainResult:
    vocab, created, saved = prepare_model_dir(config, model_dir, is_chief=cluster.is_chief, log=log)
    setup["created"] = created
    import keras
    from tensorflow.python.framework import config as tf_config  # is/disable: not public API

    previous_policy = keras.mixed_precision.global_policy()
    was_deterministic = tf_config.is_op_determinism_enabled()
    precision, why = explain_precision(config.train.precision)
    saved_precision = modeldir.read_train_state(model_dir).get("precision") if saved else None
    if config.train.precision == "auto" and saved_precision and saved_precision != precision:
        precision, why = saved_precision, "auto: kept from the run being resumed"
    try:
        keras.mixed_precision.set_global_policy(precision)
        if config.train.deterministic:
            tf_config.enable_op_determinism()
        run = Run(config, model_dir, cluster, log, vocab, precision, file_stats, saved)
        run.precision_reason = why
        return run.loop(stop)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        if config.train.deterministic and not was_deterministic:
            tf_config.disable_op_determinism()
