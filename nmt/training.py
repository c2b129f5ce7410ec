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
   `train.keep_checkpoints` kept), see nmt/checkpoints.py. A checkpoint holds the model,
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
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from nmt import checkpoints as ckpt
from nmt import constants, fileio, interrupts, locking, progress
from nmt.config import Config, TrainConfig, from_dict, save_config
from nmt.errors import CheckpointError, ConfigError, NmtError
from nmt.precision import explain_precision
from nmt.version import __version__

PathLike = Union[str, Path]
Log = Callable[[str], None]

WORKER_WAIT_SECONDS = 600.0  # how long a worker waits for the chief's vocabulary
_SETUP_FILES = {
    constants.CONFIG_FILE,
    constants.VERSION_FILE,
    constants.JOINT_SPM,
    constants.SOURCE_SPM,
    constants.TARGET_SPM,
    "joint.vocab",
    "source.vocab",
    "target.vocab",
    ckpt.TRAIN_STATE_FILE,
    ckpt.LOGS_DIR,
    ckpt.CHECKPOINTS_DIR,
    ckpt.BEST_DIR,
}


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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


# --------------------------------------------------------------------------------------------
# Configuration helpers (no TensorFlow)


def resolve_paths(config: Config, cwd: Optional[PathLike] = None) -> Config:
    """A copy of `config` whose data and vocab paths are absolute (relative to `cwd`)."""
    base = Path(cwd) if cwd is not None else Path.cwd()

    def absolute(value: Optional[str]) -> Optional[str]:
        if value is None or value == "-":
            return value
        # abspath, not resolve: symlinks stay as typed (/dev/stdin is no /proc/N/fd/pipe:[M])
        return os.path.abspath(base / Path(value).expanduser())

    data = dataclasses.replace(
        config.data,
        **{
            k: absolute(getattr(config.data, k))
            for k in ("train_source", "train_target", "dev_source", "dev_target")
        },
    )
    vocab = dataclasses.replace(config.vocab, path=absolute(config.vocab.path))
    return dataclasses.replace(config, data=data, vocab=vocab)


def check_train_config(config: Config) -> None:
    """Checks that need the whole config at training time; ConfigError naming the key."""
    data, train = config.data, config.train
    if not data.train_source:
        raise ConfigError("data.train_source and data.train_target must be set to train")
    has_dev = bool(data.dev_source)
    if train.decay == "plateau" and not has_dev:
        raise ConfigError("train.decay: plateau needs a dev set (data.dev_source/dev_target)")
    if train.early_stopping and not has_dev:
        raise ConfigError("train.early_stopping needs a dev set (data.dev_source/dev_target)")
    if train.early_stopping < 0:
        raise ConfigError(f"train.early_stopping must be >= 0, got {train.early_stopping}")
    if train.warmup_steps < 0:
        raise ConfigError(f"train.warmup_steps must be >= 0, got {train.warmup_steps}")
    if train.decay_steps <= 0:
        raise ConfigError(f"train.decay_steps must be positive, got {train.decay_steps}")
    if not 0.0 < train.decay_rate <= 1.0:
        raise ConfigError(f"train.decay_rate must be in (0, 1], got {train.decay_rate}")
    if train.plateau_patience <= 0:
        raise ConfigError(f"train.plateau_patience must be positive, got {train.plateau_patience}")
    if train.clip_norm < 0:
        raise ConfigError(f"train.clip_norm must be >= 0, got {train.clip_norm}")
    if train.min_learning_rate < 0:
        raise ConfigError(f"train.min_learning_rate must be >= 0, got {train.min_learning_rate}")
    if train.max_minutes is not None and train.max_minutes <= 0:
        raise ConfigError(f"train.max_minutes must be positive, got {train.max_minutes}")
    if train.log_every_seconds < 0:
        raise ConfigError(
            f"train.log_every_seconds must be >= 0 (0: by steps only), "
            f"got {train.log_every_seconds}"
        )
    if train.weight_decay < 0:
        raise ConfigError(f"train.weight_decay must be >= 0, got {train.weight_decay}")


def _differences(saved: Any, new: Any, section: str, ignore: tuple[str, ...] = ()) -> list[str]:
    a, b = dataclasses.asdict(saved), dataclasses.asdict(new)
    return [
        f"{section}.{k}: {a[k]!r} -> {b[k]!r}" for k in a if k not in ignore and a[k] != b.get(k)
    ]


def data_changes(saved: Config, new: Config) -> list[str]:
    """Settings whose change makes a saved data-pipeline position meaningless."""
    paths = ("train_source", "train_target", "dev_source", "dev_target", "num_parallel_calls")
    changes = _differences(saved.data, new.data, "data", ignore=paths)
    if saved.train.seed != new.train.seed:
        changes.append(f"train.seed: {saved.train.seed!r} -> {new.train.seed!r}")
    return changes


def incompatible_changes(saved: Config, new: Config) -> list[str]:
    """The model/vocab keys whose values differ (vocab.path is only where it came from)."""
    return _differences(saved.model, new.model, "model") + _differences(
        saved.vocab, new.vocab, "vocab", ignore=("path",)
    )


# --------------------------------------------------------------------------------------------
# Learning rate


def learning_rate_at(step, factor, train: TrainConfig):
    """The learning rate of update number `step` (0-based); works on tensors and floats.

    With s = step + 1, w = warmup_steps, lr = learning_rate:
        warm(s) = min(1, s / w)                               (1 when w = 0)
        decay(s) = 1                                          none
                 = sqrt(max(w, 1) / max(s, w, 1))             rsqrt (1 during warm-up)
                 = decay_rate ** (max(0, s - decay_start) / decay_steps)   exponential
                 = factor                                     plateau (cut on dev metric)
        rate(s) = warm(s) * max(lr * decay(s), min_learning_rate)
    """
    import tensorflow as tf

    s = tf.cast(step, tf.float32) + 1.0
    w = float(train.warmup_steps)
    warm = tf.minimum(1.0, s / w) if w > 0 else tf.constant(1.0)
    if train.decay == "none":
        decay = tf.constant(1.0)
    elif train.decay == "rsqrt":
        decay = tf.sqrt(max(w, 1.0) / tf.maximum(s, max(w, 1.0)))
    elif train.decay == "exponential":
        exponent = tf.maximum(0.0, s - float(train.decay_start)) / float(train.decay_steps)
        decay = tf.pow(tf.constant(train.decay_rate, tf.float32), exponent)
    else:  # plateau
        decay = tf.cast(factor, tf.float32)
    rate = tf.maximum(train.learning_rate * decay, train.min_learning_rate)
    return warm * rate


def make_optimizer(train: TrainConfig, *, num_replicas: int = 1, loss_scaling: bool = False):
    """The Keras optimizer for `train` (clipping by global norm; wrapped for loss scaling).

    The train step gives the optimizer the replica-summed gradient divided by the number of
    replicas on every replica (the optimizer sums them again), so the clipping threshold is
    scaled by `num_replicas` to clip the summed gradient at `train.clip_norm`.
    """
    import keras

    clip = train.clip_norm * num_replicas if train.clip_norm > 0 else None
    common = {"learning_rate": train.learning_rate, "global_clipnorm": clip}
    if train.optimizer == "adam":
        optimizer = keras.optimizers.Adam(
            beta_1=train.adam_beta_1, beta_2=train.adam_beta_2, **common
        )
    elif train.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(
            weight_decay=train.weight_decay,
            beta_1=train.adam_beta_1,
            beta_2=train.adam_beta_2,
            **common,
        )
    elif train.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(**common)
    else:  # pragma: no cover - the config validates the choice
        raise ConfigError(f"train.optimizer: unknown {train.optimizer!r}")
    if loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


# --------------------------------------------------------------------------------------------
# Distribution


@dataclass
class Cluster:
    strategy: Any
    is_chief: bool = True
    num_workers: int = 1
    task: str = "local"

    @property
    def num_replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)


def _tf_config_tasks() -> tuple[int, Optional[str], Optional[int]]:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0, None, None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON: {e}") from None
    cluster = value.get("cluster") or {}
    tasks = sum(len(v) for k, v in cluster.items() if k in ("chief", "worker"))
    task = value.get("task") or {}
    return tasks, task.get("type"), task.get("index")


def make_cluster(strategy: Any = None) -> Cluster:
    """Pick the tf.distribute strategy: an explicit one, multi-worker, mirrored or default.

    `strategy` may be a tf.distribute.Strategy, "auto"/None (TF_CONFIG with several tasks ->
    MultiWorkerMirroredStrategy; several GPUs -> MirroredStrategy; else the default),
    "default", "mirrored" or "multi_worker". Must run before other TensorFlow work when
    multi-worker.
    """
    import tensorflow as tf

    tasks, task_type, task_index = _tf_config_tasks()
    if strategy is None or strategy == "auto":
        if tasks > 1:
            strategy = "multi_worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            strategy = "mirrored"
        else:
            strategy = "default"
    if isinstance(strategy, str):
        if strategy == "default":
            strategy = tf.distribute.get_strategy()
        elif strategy == "mirrored":
            strategy = tf.distribute.MirroredStrategy()
        elif strategy == "multi_worker":
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        else:
            raise ConfigError(
                f"unknown strategy {strategy!r}: choose auto, default, mirrored or multi_worker"
            )
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        resolver = strategy.cluster_resolver
        task_type, task_index = resolver.task_type, resolver.task_id
        spec = resolver.cluster_spec().as_dict()
        num_workers = sum(len(spec.get(k, [])) for k in ("chief", "worker"))
        has_chief = "chief" in spec
        is_chief = (
            task_type is None
            or task_type == "chief"
            or (task_type == "worker" and task_index == 0 and not has_chief)
        )
        return Cluster(strategy, is_chief, max(num_workers, 1), f"{task_type}:{task_index}")
    return Cluster(strategy)


# --------------------------------------------------------------------------------------------
# Model directory set-up


def _save_config_atomic(config: Config, path: Path) -> None:
    import yaml

    text = yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=False)
    ckpt.write_text_atomic(path, text)


def _wait_for_chief(model_dir: Path, log: Log) -> None:
    deadline = time.monotonic() + WORKER_WAIT_SECONDS
    logged = False
    while not ckpt.is_model_dir(model_dir):  # config.yaml is moved into DIR last
        if time.monotonic() > deadline:
            raise CheckpointError(
                f"{model_dir}: the chief did not set up the model directory within "
                f"{WORKER_WAIT_SECONDS:.0f} s (workers need a model directory they all share)"
            )
        if not logged:
            log(f"waiting for the chief to set up {model_dir}")
            logged = True
        time.sleep(0.2)


_SETUP_STAGING = ".setup-"


def _stale_setup(model_dir: Path) -> bool:
    """Whether DIR holds only set-up files of a run that never wrote a checkpoint."""
    if _has_checkpoint(model_dir):
        return False
    return all(p.name in _SETUP_FILES or p.name.startswith(".") for p in model_dir.iterdir())


def _unfinished_setup(model_dir: Path) -> bool:
    """Whether DIR is empty or holds only what a set-up cut short leaves (the lock, a hidden
    staging directory, vocabulary files and VERSION moved before config.yaml)."""
    if not model_dir.exists():
        return True
    if ckpt.is_model_dir(model_dir) or _has_checkpoint(model_dir):
        return False
    done = _SETUP_FILES - {constants.CONFIG_FILE, ckpt.TRAIN_STATE_FILE, ckpt.LOGS_DIR}
    return all(
        p.name == locking.LOCK_FILE or p.name.startswith(_SETUP_STAGING) or p.name in done
        for p in model_dir.iterdir()
    )


def _stage_model_dir(config: Config, model_dir: Path, log: Log) -> Path:
    """Build config.yaml, VERSION and the vocabulary in a hidden staging dir inside DIR."""
    from nmt.vocab import Vocab, train_vocab

    staging = ckpt.make_temp_dir(model_dir, _SETUP_STAGING)
    try:
        if config.vocab.path:
            log(f"vocabulary: {config.vocab.path}")
            Vocab.load(config.vocab.path).save(staging)
        else:
            log(
                f"training a {config.vocab.model_type} vocabulary of {config.vocab.size} pieces "
                f"({'joint' if config.vocab.joint else 'source and target'})"
            )
            train_vocab(
                config.vocab, [config.data.train_source], [config.data.train_target], staging
            )
        save_config(config, staging / constants.CONFIG_FILE)
        (staging / constants.VERSION_FILE).write_text(__version__ + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def _install_setup(staging: Path, model_dir: Path) -> None:
    """Replace what DIR holds (but its lock) by the staged files, config.yaml last: DIR
    counts as a model directory (`is_model_dir`) only once everything else is in place."""
    for entry in model_dir.iterdir():
        if entry.name != locking.LOCK_FILE and entry != staging:
            _remove(entry)
    for path in sorted(staging.iterdir(), key=lambda p: p.name == constants.CONFIG_FILE):
        os.replace(path, model_dir / path.name)
    staging.rmdir()


def _saved_config(config: Config, model_dir: Path) -> tuple[Config, list[str]]:
    """The config a non-empty DIR holds and what `config` changes in it that a resumed run
    cannot; CheckpointError when DIR is no nmt model directory or of another version."""
    if not ckpt.is_model_dir(model_dir):
        raise CheckpointError(
            f"{model_dir}: directory is not empty and is not an nmt model directory "
            f"(no {constants.CONFIG_FILE}); choose a new or empty --model-dir"
        )
    ckpt.check_version(model_dir)
    saved = ckpt.read_config(model_dir)
    return saved, incompatible_changes(saved, config)


def _changed_config_error(model_dir: Path, changes: list[str]) -> CheckpointError:
    return CheckpointError(
        f"{model_dir}: holds a model trained with another config "
        f"({'; '.join(changes)}); use a new --model-dir or the original config"
    )


def check_model_dir(config: Config, model_dir: PathLike) -> None:
    """What `prepare_model_dir` would refuse, found before TensorFlow is imported and without
    the lock (it checks again under it): a file, a directory that is no model directory or
    of another version, or one whose model was trained with an incompatible config."""
    model_dir = Path(model_dir)
    if model_dir.exists() and not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: exists and is not a directory")
    if _unfinished_setup(model_dir):
        return
    _, changes = _saved_config(config, model_dir)
    if changes and not _stale_setup(model_dir):
        raise _changed_config_error(model_dir, changes)


def prepare_model_dir(config: Config, model_dir: PathLike, *, is_chief: bool = True, log: Log):
    """Create or validate DIR (rules in the module docstring); returns
    `(vocab, created, saved_config)`: `created` when DIR was set up by this call, and the config
    DIR held before (None when created). Workers (not chief) wait for the chief's files.
    """
    from nmt.vocab import Vocab

    model_dir = Path(model_dir)
    if model_dir.exists() and not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: exists and is not a directory")
    if not is_chief:
        _wait_for_chief(model_dir, log)
    fresh = _unfinished_setup(model_dir)
    saved = None
    if not fresh:
        saved, changes = _saved_config(config, model_dir)
        if changes and is_chief and _stale_setup(model_dir):
            log(f"{model_dir}: holds no checkpoint yet; setting it up again for the new config")
            fresh, saved = True, None
        elif changes:
            raise _changed_config_error(model_dir, changes)
    if fresh:
        if not is_chief:  # pragma: no cover - _wait_for_chief waits for a model directory
            raise CheckpointError(f"{model_dir}: the chief has not set up the model directory")
        model_dir.mkdir(parents=True, exist_ok=True)
        for entry in model_dir.glob(f"{_SETUP_STAGING}*"):  # of a set-up cut short
            _remove(entry)
        _install_setup(_stage_model_dir(config, model_dir, log), model_dir)
        # Set-up directories that earlier nmt versions staged beside DIR (runs killed then).
        for stale in model_dir.parent.glob(f".{model_dir.name}.setup-*"):
            shutil.rmtree(stale, ignore_errors=True)
    elif is_chief:  # train/decode/data keys may change between runs
        _save_config_atomic(config, model_dir / constants.CONFIG_FILE)
    try:
        vocab = Vocab.load(model_dir)
    except NmtError as e:
        raise CheckpointError(str(e)) from None
    return vocab, fresh, saved


# --------------------------------------------------------------------------------------------
# Training


class _State:
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


def _seed_generator_states(model) -> list:
    """Dropout RNG states: in `model.variables` but not in `model.weights` (nor checkpointed
    with them), so saved explicitly to make a resumed run draw the same dropout masks."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


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


def _format_time(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _rate(value: float) -> str:
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


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
    advice = 'the model is not using it to align (BENCHMARKS.md, "Attention")'
    if math.isfinite(mass) and mass >= COLLAPSED_FINAL_MASS:
        where = f"{100 * mass:.0f}% of it on the last 2 source positions"
    elif math.isfinite(peak) and peak >= COLLAPSED_PEAK:
        where = f"{100 * peak:.0f}% of each sentence's on one source position"
    else:
        return None
    return f"attention looks collapsed: {where} ({entropy}); {advice}"


class _Trainer:
    def __init__(self, config: Config, model_dir: Path, cluster: Cluster, log: Log):
        self.config = config
        self.model_dir = model_dir
        self.cluster = cluster
        self.log = log
        self.train_cfg = config.train

    # ---- set-up

    def build(self, vocab, precision: str) -> None:
        import keras
        import tensorflow as tf

        from nmt.data import PipelineStats, make_training_dataset

        cfg, strategy = self.config, self.cluster.strategy
        self.vocab = vocab
        self.precision = precision
        self.loss_scaling = precision == "mixed_float16"
        keras.utils.set_random_seed(cfg.train.seed)
        with strategy.scope():
            self.model = ckpt.build_model(cfg, vocab)
            self.model.decoder.loop_jit = cfg.train.decoder_loop_jit
            self.optimizer = make_optimizer(
                cfg.train, num_replicas=self.cluster.num_replicas, loss_scaling=self.loss_scaling
            )
            self.optimizer.build(self.model.trainable_variables)
            self.state = _State()
        self.rng_states = _seed_generator_states(self.model)

        self.stats = PipelineStats()
        data_config = dataclasses.replace(
            cfg.data, batch_tokens=cfg.data.batch_tokens * self.cluster.num_replicas
        )
        dataset = make_training_dataset(
            cfg.data.train_source,
            cfg.data.train_target,
            vocab,
            data_config,
            seed=cfg.train.seed,
            stats=self.stats,
            check_files=False,
        )
        options = tf.data.Options()
        # The pipeline's counters are variables; they are checkpointed separately.
        options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
        self.dataset = dataset.with_options(options)
        self.iterator = iter(self.dataset)

        inner = self.optimizer.inner_optimizer if self.loss_scaling else self.optimizer
        own = len(self.optimizer.variables) - len(inner.variables)  # the loss scale's state
        self._objects = {
            "model": ckpt.model_checkpoint(self.model),
            "optimizer": ckpt.variables_checkpoint(inner.variables),
            "step": self.state.step,
            "state": self.state.checkpoint(),
            "rng": tf.train.Checkpoint(**{f"s{i}": v for i, v in enumerate(self.rng_states)}),
        }
        if self.loss_scaling:
            self._objects["loss_scale"] = ckpt.variables_checkpoint(self.optimizer.variables[:own])
        self._data_objects = {
            "data": self.iterator,
            "pipeline": tf.train.Checkpoint(
                pairs_read=self.stats.pairs_read,
                empty_skipped=self.stats.empty_skipped,
                too_long_dropped=self.stats.too_long_dropped,
            ),
        }
        self.checkpoint = self.checkpoint_for()
        self.best_checkpoint = ckpt.inference_checkpoint(self.model, self.state.step)
        self.train_step = self._make_train_step()
        self._broadcast_fn = None

    def checkpoint_for(self, data: bool = True, loss_scale: bool = True):
        """The training checkpoint, optionally without the data position or loss scale."""
        import tensorflow as tf

        objects = dict(self._objects)
        if not loss_scale:
            objects.pop("loss_scale", None)
        if data:
            objects.update(self._data_objects)
        return tf.train.Checkpoint(**objects)

    def _make_train_step(self):
        import tensorflow as tf

        from nmt.model import sequence_loss

        model, optimizer, state = self.model, self.optimizer, self.state
        strategy, train_cfg = self.cluster.strategy, self.train_cfg
        loss_scaling = self.loss_scaling
        variables = model.trainable_variables

        def forward_backward(source, target_in, target_out, total_tokens):
            with tf.GradientTape() as tape:
                logits = model((source, target_in), training=True)  # (B, T, V)
                loss_sum, _ = sequence_loss(target_out, logits, train_cfg.label_smoothing)
                loss = loss_sum / total_tokens
                if loss_scaling:
                    loss = optimizer.scale_loss(loss)
            grads = tape.gradient(loss, variables)
            return loss_sum, grads

        if train_cfg.jit:
            forward_backward = tf.function(forward_backward, jit_compile=True)

        def replica_step(source, target_in, target_out, total_tokens):
            ctx = tf.distribute.get_replica_context()
            replicas = ctx.num_replicas_in_sync
            if replicas > 1:  # this replica's rows of the global batch
                rows = tf.shape(source)[0]
                r = tf.cast(ctx.replica_id_in_sync_group, tf.int32)
                lo, hi = rows * r // replicas, rows * (r + 1) // replicas
                source = source[lo:hi]  # (B_r, S)
                target_in, target_out = target_in[lo:hi], target_out[lo:hi]  # (B_r, T)
            loss_sum, grads = forward_backward(source, target_in, target_out, total_tokens)
            # Embedding gradients come as IndexedSlices with repeated rows; their global norm
            # (and so the clipping) would be wrong without summing the repeats. Adam updates
            # the whole matrix anyway.
            grads = [tf.convert_to_tensor(g) for g in grads]
            if replicas > 1:
                grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
            norm = tf.linalg.global_norm(grads)
            if loss_scaling:
                norm = norm / tf.cast(optimizer.dynamic_scale, norm.dtype)
            if replicas > 1:  # the optimizer sums over replicas again
                grads = [g / tf.cast(replicas, g.dtype) for g in grads]
            optimizer.apply(grads, variables)
            return loss_sum, norm

        spec = tf.TensorSpec([None, None], tf.int32)

        @tf.function(input_signature=[spec, spec, spec])
        def train_step(source, target_in, target_out):
            lr = learning_rate_at(state.step, state.lr_factor, train_cfg)
            optimizer.learning_rate.assign(lr)
            total = tf.cast(tf.math.count_nonzero(target_out), tf.float32)  # () global batch
            source_tokens = tf.cast(tf.math.count_nonzero(source), tf.float32)  # ()
            loss_sum, norm = strategy.run(replica_step, args=(source, target_in, target_out, total))
            loss_sum = strategy.reduce(tf.distribute.ReduceOp.SUM, loss_sum, axis=None)
            norm = strategy.reduce(tf.distribute.ReduceOp.MEAN, norm, axis=None)
            loss = loss_sum / tf.maximum(total, 1.0)
            finite = tf.math.is_finite(loss)
            streak = tf.where(finite, tf.constant(0, tf.int64), state.nonfinite_streak + 1)
            state.nonfinite_streak.assign(streak)
            state.worst_streak.assign(tf.maximum(state.worst_streak, streak))
            state.step.assign_add(1)
            return loss, total + source_tokens, lr, norm

        return train_step

    # ---- validation

    def build_validation(self) -> None:
        import tensorflow as tf

        from nmt.constants import PAD_ID
        from nmt.data import iter_lines, make_eval_dataset
        from nmt.layers.attention import attention_health
        from nmt.model import sequence_loss
        from nmt.translator import Translator

        cfg = self.config
        self.has_dev = bool(cfg.data.dev_source)
        if not self.has_dev:
            return
        model = self.model
        self.dev_dataset = make_eval_dataset(
            cfg.data.dev_source, cfg.data.dev_target, self.vocab, cfg.data, check_files=False
        )
        spec = tf.TensorSpec([None, None], tf.int32)

        @tf.function(input_signature=[spec, spec, spec])
        def dev_loss(source, target_in, target_out):
            logits, weights = model((source, target_in), training=False, return_attention=True)
            health = attention_health(weights, source != PAD_ID, target_out != PAD_ID)
            return (*sequence_loss(target_out, logits, 0.0), *health)

        self.dev_loss_fn = dev_loss
        self.dev_sources = [text for _, text in iter_lines(cfg.data.dev_source)]
        self.dev_references = [text for _, text in iter_lines(cfg.data.dev_target)]
        self.translator = Translator(model, self.vocab, cfg.decode, warn=self.log)

    def evaluate(self) -> dict[str, float]:
        """Dev loss, perplexity and (optionally) greedy BLEU; the chief's values everywhere."""
        from nmt.evaluation import bleu

        values = [math.nan] * 7
        if self.cluster.is_chief:
            # loss, tokens, entropy, final mass, uniform entropy, peak share, count
            sums = [0.0] * 7
            for (source, target_in), target_out in self.dev_dataset:
                batch = self.dev_loss_fn(source, target_in, target_out)
                sums = [total + float(value) for total, value in zip(sums, batch, strict=True)]
            loss = sums[0] / max(sums[1], 1.0)
            count = max(sums[6], 1.0)
            values[:6] = [loss, math.exp(min(loss, 700.0)), *(v / count for v in sums[2:6])]
            if self.train_cfg.eval_bleu:
                hyps = self.translator.translate(self.dev_sources, beam_size=1)
                values[6] = float(bleu(hyps, self.dev_references).score)
        values = self.broadcast(values)
        result = {
            "dev_loss": values[0],
            "dev_perplexity": values[1],
            "attention_entropy": values[2],
            "attention_final_mass": values[3],
            "attention_uniform_entropy": values[4],
            "attention_peak": values[5],
        }
        if self.train_cfg.eval_bleu:
            result["bleu"] = values[6]
        return result

    def broadcast(self, values: list[float]) -> list[float]:
        """The chief's `values` on every worker (identity in one process)."""
        if self.cluster.num_workers <= 1:
            return values
        import numpy as np
        import tensorflow as tf

        strategy = self.cluster.strategy
        if self._broadcast_fn is None:

            @tf.function
            def fn(v):
                def replica(v):
                    ctx = tf.distribute.get_replica_context()
                    mine = tf.equal(ctx.replica_id_in_sync_group, 0)  # replica 0: the chief
                    return ctx.all_reduce(
                        tf.distribute.ReduceOp.SUM, tf.where(mine, v, tf.zeros_like(v))
                    )

                return strategy.run(replica, args=(v,))

            self._broadcast_fn = fn
        out = self._broadcast_fn(tf.constant(np.asarray(values, np.float32)))
        return [float(x) for x in strategy.experimental_local_results(out)[0].numpy()]


def _chief_temp_dir(cluster: Cluster, directory: Path) -> tuple[Path, Optional[Path]]:
    """Where this task writes checkpoints: DIR for the chief, a temporary dir for workers."""
    if cluster.is_chief:
        return directory, None
    temp = Path(tempfile.mkdtemp(prefix=f"nmt-worker-{cluster.task.replace(':', '-')}-"))
    return temp, temp


def set_threads(threads: int) -> None:
    """Size TensorFlow's intra- and inter-op thread pools; must run before any TF op."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"--threads must be a positive integer, got {threads!r}")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError as e:  # TensorFlow already started in this process
        raise NmtError(f"--threads: {e}") from None


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
                    _undo_setup(model_dir, remove_dir=new_dir)
            raise


def _train_locked(config, model_dir, cluster, log, stop, file_stats, setup) -> TrainResult:
    vocab, created, saved = prepare_model_dir(config, model_dir, is_chief=cluster.is_chief, log=log)
    setup["created"] = created
    import keras
    from tensorflow.python.framework import config as tf_config  # is/disable: not public API

    previous_policy = keras.mixed_precision.global_policy()
    was_deterministic = tf_config.is_op_determinism_enabled()
    precision, why = explain_precision(config.train.precision)
    saved_precision = ckpt.read_train_state(model_dir).get("precision") if saved else None
    if config.train.precision == "auto" and saved_precision and saved_precision != precision:
        precision, why = saved_precision, "auto: kept from the run being resumed"
    try:
        keras.mixed_precision.set_global_policy(precision)
        if config.train.deterministic:
            tf_config.enable_op_determinism()
        run = _Run(config, model_dir, cluster, log, vocab, precision, file_stats, saved)
        run.precision_reason = why
        return run.loop(stop)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        if config.train.deterministic and not was_deterministic:
            tf_config.disable_op_determinism()


def _has_checkpoint(model_dir: Path) -> bool:
    return any(
        ckpt.list_checkpoints(model_dir / sub) for sub in (ckpt.CHECKPOINTS_DIR, ckpt.BEST_DIR)
    )


def _undo_setup(model_dir: Path, remove_dir: bool) -> None:
    """Remove what set-up wrote into DIR (DIR itself when this run made it), unless DIR
    holds a checkpoint: a model directory with training progress is never deleted."""
    if not model_dir.is_dir() or _has_checkpoint(model_dir):
        return
    if remove_dir:
        shutil.rmtree(model_dir, ignore_errors=True)
        return
    for entry in model_dir.iterdir():
        if entry.name != locking.LOCK_FILE:
            _remove(entry)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class _Run:
    """One invocation of the training loop (set-up, resume, loop, final checkpoint)."""

    def __init__(self, config, model_dir, cluster, log, vocab, precision, file_stats, saved):
        self.config, self.model_dir, self.cluster, self.log = config, model_dir, cluster, log
        self.saved_config = saved
        self.train_cfg = config.train
        self.trainer = _Trainer(config, model_dir, cluster, log)
        self.trainer.build(vocab, precision)
        self.trainer.build_validation()
        self.precision = precision
        self.precision_reason = "train.precision"
        self.file_stats = file_stats
        self.ckpt_dir, self.temp_dir = _chief_temp_dir(cluster, model_dir / ckpt.CHECKPOINTS_DIR)
        self.best_dir = model_dir / ckpt.BEST_DIR
        self.writers = None
        self.history: list[dict] = []
        self.losses: list[float] = []
        self.evaluations: list[dict] = []
        self.pending: list = []  # step outputs not yet read back (avoids a sync every step)
        self.window_tokens, self.window_steps = 0.0, 0  # for tokens/s between log lines
        self.paused = 0.0  # seconds spent validating and saving within the current window
        self.save_seconds: list[float] = []  # how long each checkpoint took (for the ETA)
        # Wall seconds of training (validation included) before this invocation, and when this
        # invocation's loop started: evaluations record the cumulative figure (train_seconds).
        self.seconds_before, self.loop_start = 0.0, None

    # ---- resume

    def restore(self) -> Optional[Path]:
        """Restore the newest valid checkpoint of DIR/checkpoints; returns its prefix."""
        t = self.trainer
        checkpoints_dir = self.model_dir / ckpt.CHECKPOINTS_DIR
        if self.cluster.is_chief:
            removed = ckpt.remove_leftovers(self.model_dir)
            if removed:
                names = ", ".join(str(p.relative_to(self.model_dir)) for p in removed)
                self.log(f"removed what an interrupted write left behind: {names}")
        prefixes = ckpt.list_checkpoints(checkpoints_dir)
        data = loss_scale = True
        if prefixes and self.saved_config is not None:
            saved_state = ckpt.read_train_state(self.model_dir)
            changed = data_changes(self.saved_config, self.config)
            replicas = saved_state.get("replicas")
            if replicas not in (None, self.cluster.num_replicas):  # global batches differ
                changed.append(f"replicas: {replicas} -> {self.cluster.num_replicas}")
            if changed:
                self.log(
                    f"data settings changed ({'; '.join(changed)}): the data pipeline starts "
                    "afresh instead of resuming its position"
                )
                data = False
            precision = saved_state.get("precision")
            if precision and (precision == "mixed_float16") != t.loss_scaling:
                self.log(f"precision changed ({precision} -> {t.precision})")
                loss_scale = False  # float16 runs save a loss scale, others do not
        partial = not (data and loss_scale)
        checkpoint = t.checkpoint_for(data=data, loss_scale=loss_scale)
        for prefix in reversed(prefixes):
            try:
                ckpt.restore_checkpoint(checkpoint, prefix, partial=partial)
            except CheckpointError as e:
                older = "; trying the previous one" if prefix != prefixes[0] else ""
                self.log(f"nmt: warning: {e}{older}")
                continue
            self.log(f"resumed from {prefix} (step {int(t.state.step.numpy())})")
            return prefix
        if prefixes:
            raise CheckpointError(
                f"{checkpoints_dir}: no readable checkpoint among "
                f"{', '.join(p.name for p in prefixes)}; remove them to start again"
            )
        return None

    # ---- logging

    def _open_writers(self):
        if self.writers is None and self.cluster.is_chief:
            import tensorflow as tf

            logs = self.model_dir / ckpt.LOGS_DIR
            self.writers = {
                "train": tf.summary.create_file_writer(str(logs / "train")),
                "dev": tf.summary.create_file_writer(str(logs / "dev")),
            }
        return self.writers

    def scalars(self, group: str, step: int, values: dict[str, float]) -> None:
        import tensorflow as tf

        try:
            writers = self._open_writers()
            if not writers:
                return
            with writers[group].as_default(step=step):
                for name, value in values.items():
                    if value is not None and math.isfinite(value):
                        tf.summary.write(
                            name, tf.constant(value, tf.float32), metadata=_scalar_metadata()
                        )
        except tf.errors.OpError as e:
            self._logs_failed(e)

    def _logs_failed(self, error) -> None:
        """TensorBoard logs are not essential: warn once and train on without them."""
        reason = ckpt.error_reason(error)
        self.log(
            f"nmt: warning: cannot write TensorBoard logs to {self.model_dir / ckpt.LOGS_DIR} "
            f"({reason}); training continues without them"
        )
        self.writers = {}  # not None: never reopened

    def _flush_writers(self, close: bool = False) -> None:
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
            self._logs_failed(e)

    def flush_pending(self) -> list[tuple[float, float, float, float]]:
        """Read back the queued step outputs; NmtError when the loss went non-finite."""
        out = [tuple(float(x) for x in values) for values in self.pending]
        self.pending.clear()
        self.losses.extend(o[0] for o in out)
        self.window_tokens += sum(o[1] for o in out)
        self.window_steps += len(out)
        state = self.trainer.state
        worst = int(state.worst_streak.numpy())
        state.worst_streak.assign(int(state.nonfinite_streak.numpy()))
        allowed = self.config.train.max_nonfinite_steps if self.trainer.loss_scaling else 0
        if worst > allowed:
            step = int(state.step.numpy())
            last = ckpt.list_checkpoints(self.model_dir / ckpt.CHECKPOINTS_DIR)
            kept = f"; the last good checkpoint is {last[-1]}" if last else ""
            hint = (
                " even with dynamic loss scaling"
                if self.trainer.loss_scaling
                else " (try a lower train.learning_rate or train.clip_norm)"
            )
            raise NmtError(
                f"training diverged: the loss became NaN or infinite by step {step}{hint}{kept}"
            )
        return out

    def train_state(self, stop_reason: Optional[str] = None) -> dict:
        s = self.trainer.state
        best = float(s.best_metric.numpy())
        best_step = int(s.best_step.numpy())
        return {
            "step": int(s.step.numpy()),
            "metric": "bleu" if self.train_cfg.eval_bleu else "-dev_loss",
            "best_metric": best if math.isfinite(best) else None,
            "best_step": best_step if best_step >= 0 else None,
            "evaluations_without_gain": int(s.evals_without_gain.numpy()),
            "plateau_evaluations_without_gain": int(s.plateau_bad.numpy()),
            "learning_rate_factor": float(s.lr_factor.numpy()),
            "evaluations": self.history,
            "train_seconds": round(self.train_seconds(), 3),
            "stop_reason": stop_reason,
            "precision": self.precision,
            "replicas": self.cluster.num_replicas,
            "nmt_version": __version__,
        }

    def train_seconds(self) -> float:
        """Cumulative wall seconds of the training loop, over all runs of this model dir.

        Across a resume the figure continues from the one written with the restored
        checkpoint's train state (approximate when an older checkpoint had to be used)."""
        if self.loop_start is None:
            return self.seconds_before
        return self.seconds_before + time.perf_counter() - self.loop_start

    def write_train_state(self, stop_reason: Optional[str] = None) -> None:
        if self.cluster.is_chief:
            ckpt.write_json_atomic(
                self.model_dir / ckpt.TRAIN_STATE_FILE, self.train_state(stop_reason)
            )

    # ---- checkpoints

    def save(self, step: int) -> Path:
        self.flush_pending()  # never save after a non-finite loss
        start = time.perf_counter()
        prefix = ckpt.write_checkpoint(self.trainer.checkpoint, self.ckpt_dir, step)
        if self.cluster.is_chief:
            ckpt.prune_checkpoints(self.ckpt_dir, self.train_cfg.keep_checkpoints)
        else:
            ckpt.delete_checkpoint(prefix)
        self.write_train_state()
        self._flush_writers()
        self.save_seconds.append(time.perf_counter() - start)
        return self.model_dir / ckpt.CHECKPOINTS_DIR / prefix.name

    def save_best(self, step: int) -> None:
        target = self.best_dir if self.cluster.is_chief else self.temp_dir / "best"
        prefix = ckpt.write_checkpoint(self.trainer.best_checkpoint, target, step)
        if self.cluster.is_chief:
            ckpt.prune_checkpoints(target, 1)
        else:
            ckpt.delete_checkpoint(prefix)

    # ---- evaluation bookkeeping

    def validate(self, step: int) -> bool:
        """Evaluate, update best/plateau/early-stopping state; True to stop early."""
        t, s, cfg = self.trainer, self.trainer.state, self.train_cfg
        start = time.perf_counter()
        result = t.evaluate()
        metric = result["bleu"] if cfg.eval_bleu else -result["dev_loss"]
        gain = math.isfinite(metric) and metric > float(s.best_metric.numpy())
        if gain:
            s.best_metric.assign(metric)
            s.best_step.assign(step)
            s.evals_without_gain.assign(0)
            s.plateau_bad.assign(0)
            self.save_best(step)
        else:
            s.evals_without_gain.assign_add(1)
            s.plateau_bad.assign_add(1)
            if cfg.decay == "plateau" and int(s.plateau_bad.numpy()) >= cfg.plateau_patience:
                s.lr_factor.assign(float(s.lr_factor.numpy()) * cfg.decay_rate)
                s.plateau_bad.assign(0)
                self.log(
                    f"step {step}: no gain in {cfg.plateau_patience} evaluations; "
                    f"learning rate x {cfg.decay_rate}"
                )
        entry = {
            "step": step,
            **result,
            "best": gain,
            "seconds": time.perf_counter() - start,
            "train_seconds": round(self.train_seconds(), 3),
        }
        self.history.append(entry)
        self.evaluations.append(entry)
        bleu = f" bleu {result['bleu']:.2f}" if "bleu" in result else ""
        best = float(s.best_metric.numpy())
        best_text = f"{best:.2f}" if cfg.eval_bleu else f"{-best:.4f}"
        self.log(
            f"eval step {step}: dev loss {result['dev_loss']:.4f} ppl "
            f"{result['dev_perplexity']:.2f}{bleu} ({'new best' if gain else 'best ' + best_text}"
            f" at step {int(s.best_step.numpy())}); attention entropy "
            f"{result['attention_entropy']:.2f} nats (uniform "
            f"{result['attention_uniform_entropy']:.2f}), "
            f"{100 * result['attention_final_mass']:.0f}% on the last 2 source positions, "
            f"{100 * result['attention_peak']:.0f}% on the most-attended one"
        )
        warning = attention_warning(result)
        if warning:
            self.log(f"warning: step {step}: {warning}")
        self.scalars(
            "dev",
            step,
            {
                "loss": result["dev_loss"],
                "perplexity": result["dev_perplexity"],
                "bleu": result.get("bleu"),
                "attention_entropy": result["attention_entropy"],
                "attention_final_mass": result["attention_final_mass"],
                "attention_peak": result["attention_peak"],
            },
        )
        self.write_train_state()
        patience = cfg.early_stopping
        return bool(patience) and int(s.evals_without_gain.numpy()) >= patience

    # ---- the loop

    def loop(self, interrupt: Optional[interrupts.StopRequest] = None) -> TrainResult:
        t, cfg, log = self.trainer, self.train_cfg, self.log
        interrupt = interrupt or interrupts.StopRequest()
        restored = self.restore()
        previous = ckpt.read_train_state(self.model_dir) if restored else {}
        start_step = int(t.state.step.numpy())
        # Keep the evaluation history up to the restored step.
        earlier = previous.get("evaluations", [])
        self.history = [e for e in earlier if e.get("step", 0) <= start_step]
        self.seconds_before = float(previous.get("train_seconds", 0.0) or 0.0)
        last_checkpoint = (
            self.model_dir / ckpt.CHECKPOINTS_DIR / restored.name if restored else None
        )
        result = TrainResult(
            model_dir=self.model_dir,
            step=start_step,
            start_step=start_step,
            stop_reason="already_done",
            last_checkpoint=last_checkpoint,
            best_step=None,
            best_bleu=None,
            precision=self.precision,
            num_replicas=self.cluster.num_replicas,
        )
        fs = self.file_stats
        workers = self.cluster.num_workers
        parameters = sum(int(v.numpy().size) for v in t.model.trainable_variables)
        log(
            f"training {self.model_dir}: {self.cluster.num_replicas} replica(s)"
            f"{f' on {workers} workers' if workers > 1 else ''}, precision {self.precision} "
            f"({self.precision_reason}), "
            f"{parameters:,} parameters, {fs.lines} training pairs "
            f"({fs.empty_pairs} with an empty side)"
        )
        if start_step >= cfg.max_steps:
            log(f"already trained to step {start_step} (train.max_steps {cfg.max_steps})")
            return self._finish(result, start_step, "already_done")

        start = time.perf_counter()
        self.loop_start = start
        deadline = start + cfg.max_minutes * 60 if cfg.max_minutes else None
        window_start = start
        step = start_step
        stop_reason = "max_steps"
        saved_step = start_step if restored else -1
        interrupt.arm()
        while step < cfg.max_steps:
            (source, target_in), target_out = next(t.iterator)
            self.pending.append(t.train_step(source, target_in, target_out))
            step += 1
            # Collective decisions (several workers) happen at step-based boundaries only;
            # a slow run also logs every train.log_every_seconds of training.
            boundary = step % cfg.log_every == 0 or step == cfg.max_steps
            now = time.perf_counter()
            elapsed = now - window_start - self.paused
            if boundary or (
                self.cluster.num_workers == 1
                and progress.log_due(step, cfg.log_every, cfg.log_every_seconds, elapsed)
            ):
                outs = self.flush_pending()
                now = time.perf_counter()
                elapsed = now - window_start - self.paused
                tokens_per_s = self.window_tokens / max(elapsed, 1e-9)
                steps_per_s = self.window_steps / max(elapsed, 1e-9)
                eta = self._eta(step, 1.0 / max(steps_per_s, 1e-9), deadline, now)
                loss, _, lr, norm = outs[-1]
                mean_loss = sum(o[0] for o in outs) / len(outs)
                log(
                    f"step {step}/{cfg.max_steps} loss {mean_loss:.4f} lr {lr:.3g} "
                    f"gnorm {norm:.3g} {_rate(tokens_per_s)} tok/s "
                    f"elapsed {_format_time(now - start)} eta {eta.text(_format_time)}"
                )
                values = {
                    "loss": mean_loss,
                    "learning_rate": lr,
                    "tokens_per_second": tokens_per_s,
                    "grad_norm": norm,
                }
                if t.loss_scaling:
                    values["loss_scale"] = float(t.optimizer.dynamic_scale.numpy())
                self.scalars("train", step, values)
                window_start, self.paused = now, 0.0
                self.window_tokens, self.window_steps = 0.0, 0
            stop = None
            pause = time.perf_counter()
            if t.has_dev and step % cfg.eval_every == 0:
                self.flush_pending()
                if self.validate(step):
                    stop = "early_stopping"
                    log(f"early stopping: {cfg.early_stopping} evaluations without gain")
            if step % cfg.checkpoint_every == 0 and stop is None:
                last_checkpoint = self.save(step)
                saved_step = step
                if self.cluster.is_chief:
                    log(f"saved {last_checkpoint}; data: {t.stats.summary()}")
            self.paused += time.perf_counter() - pause
            if deadline is not None and stop is None:
                over = time.perf_counter() > deadline
                if self.cluster.num_workers > 1:  # decide together, at log boundaries
                    over = boundary and self.trainer.broadcast([float(over)])[0] > 0.5
                if over:
                    stop = "max_minutes"
                    log(f"stopping: train.max_minutes ({cfg.max_minutes}) reached")
            if stop is None and self._interrupted(interrupt, boundary):
                stop = "interrupted"
            if stop:
                stop_reason = stop
                break
        self.flush_pending()
        result.signal = interrupt.signum if stop_reason == "interrupted" else None
        if (
            t.has_dev
            and stop_reason in ("max_steps", "max_minutes")
            and step > start_step
            and step % cfg.eval_every != 0
        ):
            self.validate(step)  # so that `best` also considers the final weights
        if saved_step != step:
            last_checkpoint = self.save(step)
            log(f"saved {last_checkpoint}")
        result.last_checkpoint = last_checkpoint
        log(f"data: {t.stats.summary()}")
        return self._finish(result, step, stop_reason)

    def _eta(self, step: int, seconds_per_step: float, deadline, now: float) -> progress.Eta:
        """The rest of the run: steps, evaluations and checkpoints still to come."""
        cfg = self.train_cfg
        return progress.estimate_remaining(
            step,
            cfg.max_steps,
            seconds_per_step,
            eval_every=cfg.eval_every if self.trainer.has_dev else 0,
            eval_seconds=progress.mean([e["seconds"] for e in self.history if "seconds" in e]),
            checkpoint_every=cfg.checkpoint_every,
            checkpoint_seconds=progress.mean(self.save_seconds),
            seconds_left=None if deadline is None else deadline - now,
        )

    def _interrupted(self, interrupt: interrupts.StopRequest, boundary: bool) -> bool:
        """Whether a signal asked to stop (with several workers: the chief's, at log lines)."""
        if self.cluster.num_workers > 1:
            if not boundary:
                return False
            return self.trainer.broadcast([float(interrupt.requested)])[0] > 0.5
        return interrupt.requested

    def _finish(self, result: TrainResult, step: int, reason: str) -> TrainResult:
        s = self.trainer.state
        best = float(s.best_metric.numpy())
        best_step = int(s.best_step.numpy())
        result.step = step
        result.stop_reason = reason
        result.losses = list(self.losses)
        result.evaluations = list(self.evaluations)
        result.best_step = best_step if best_step >= 0 else None
        if self.train_cfg.eval_bleu and math.isfinite(best):
            result.best_bleu = best
        self.write_train_state(reason)
        self._flush_writers(close=True)
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        return result
