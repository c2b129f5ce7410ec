"""The model directory of a training run: its config checks, set-up and resume rules.

`prepare_model_dir` creates or validates DIR (the rules are in the `nmt.training` docstring):
a new DIR is built in a hidden staging directory inside it and its files moved in with
config.yaml last; an existing DIR is resumed when its `model` and `vocab` sections match, and
refused otherwise (unless it holds no checkpoint yet). `check_model_dir` finds the same
refusals before TensorFlow is imported; `undo_setup` removes what a failed first run set up.
No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, Union

from nmt import checkpoint_files, constants, faults, fileio, locking, modeldir
from nmt.config import Config, save_config
from nmt.errors import CheckpointError, ConfigError, NmtError
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
    modeldir.TRAIN_STATE_FILE,
    modeldir.LOGS_DIR,
    modeldir.CHECKPOINTS_DIR,
    modeldir.BEST_DIR,
}


# --------------------------------------------------------------------------------------------
# Configuration checks (no model directory needed)


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
# Set-up


def _save_config_atomic(config: Config, path: Path) -> None:
    import yaml

    text = yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=False)
    modeldir.write_text_atomic(path, text)


def _wait_for_chief(model_dir: Path, log: Log) -> None:
    deadline = time.monotonic() + WORKER_WAIT_SECONDS
    logged = False
    while not modeldir.is_model_dir(model_dir):  # config.yaml is moved into DIR last
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
    if has_checkpoint(model_dir):
        return False
    return all(p.name in _SETUP_FILES or p.name.startswith(".") for p in model_dir.iterdir())


def _unfinished_setup(model_dir: Path) -> bool:
    """Whether DIR is empty or holds only what a set-up cut short leaves (the lock, a hidden
    staging directory, vocabulary files and VERSION moved before config.yaml)."""
    if not model_dir.exists():
        return True
    if modeldir.is_model_dir(model_dir) or has_checkpoint(model_dir):
        return False
    done = _SETUP_FILES - {constants.CONFIG_FILE, modeldir.TRAIN_STATE_FILE, modeldir.LOGS_DIR}
    return all(
        p.name == locking.LOCK_FILE or p.name.startswith(_SETUP_STAGING) or p.name in done
        for p in model_dir.iterdir()
    )


def _stage_model_dir(config: Config, model_dir: Path, log: Log) -> Path:
    """Build config.yaml, VERSION and the vocabulary in a hidden staging dir inside DIR."""
    from nmt.vocab import Vocab, train_vocab

    staging = fileio.make_temp_dir(model_dir, _SETUP_STAGING)
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
        faults.fire(faults.SETUP_STAGED, staging=staging)
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
    if not modeldir.is_model_dir(model_dir):
        raise CheckpointError(
            f"{model_dir}: directory is not empty and is not an nmt model directory "
            f"(no {constants.CONFIG_FILE}); choose a new or empty --model-dir"
        )
    modeldir.check_version(model_dir)
    saved = modeldir.read_config(model_dir)
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


def has_checkpoint(model_dir: Path) -> bool:
    return any(
        checkpoint_files.list_checkpoints(model_dir / sub)
        for sub in (modeldir.CHECKPOINTS_DIR, modeldir.BEST_DIR)
    )


def undo_setup(model_dir: Path, remove_dir: bool) -> None:
    """Remove what set-up wrote into DIR (DIR itself when this run made it), unless DIR
    holds a checkpoint: a model directory with training progress is never deleted."""
    if not model_dir.is_dir() or has_checkpoint(model_dir):
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
