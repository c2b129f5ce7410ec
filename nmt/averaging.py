"""`nmt average`: the mean of the model weights of a model directory's last checkpoints,
written as one checkpoint (DIR/averaged by default) that `load_model` loads.

TensorFlow is imported inside functions so that importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

from nmt import fileio, locking
from nmt.checkpoint_files import (
    checkpoint_step,
    list_checkpoints,
    restore_checkpoint,
    write_checkpoint,
)
from nmt.checkpoints import build_model, inference_checkpoint, load_vocab
from nmt.errors import CheckpointError, NmtError
from nmt.modeldir import (
    AVERAGED_DIR,
    BEST_DIR,
    CHECKPOINT_PREFIX,
    CHECKPOINTS_DIR,
    LOGS_DIR,
    CheckpointWriteError,
    PathLike,
    check_version,
    error_reason,
    read_config,
    write_json_atomic,
)
from nmt.version import __version__

AVERAGED_JSON = "averaged.json"  # what marks a directory written by `nmt average`


def average_weights(weight_lists: Sequence[Sequence[Any]]) -> list[Any]:
    """Element-wise mean of several lists of numpy arrays (float64 sums, original dtypes).

    Non-float arrays (counters) are taken from the last list.
    """
    import numpy as np

    if not weight_lists:
        raise ValueError("nothing to average")
    averaged = []
    for values in zip(*weight_lists, strict=True):
        last = np.asarray(values[-1])
        if np.issubdtype(last.dtype, np.floating):
            total = np.zeros(last.shape, np.float64)
            for v in values:
                total += np.asarray(v, np.float64)
            averaged.append((total / len(values)).astype(last.dtype))
        else:
            averaged.append(last)
    return averaged


def average_checkpoints(
    model_dir: PathLike,
    last_n: int,
    output: Optional[PathLike] = None,
    *,
    log: Optional[Callable[[str], None]] = None,
) -> Path:
    """Average the model weights of the last `last_n` training checkpoints of DIR.

    Writes a checkpoint (model weights + the newest step) into `output` (default
    DIR/averaged/, replaced atomically) that `load_model(DIR, checkpoint=output)` loads.
    Returns the prefix written. Holds the model directory's lock when writing into it.
    """
    model_dir = Path(model_dir)
    if isinstance(last_n, bool) or not isinstance(last_n, int) or last_n < 1:
        raise CheckpointError(f"--last must be a positive integer, got {last_n!r}")
    read_config(model_dir)  # a model directory, before anything is made
    given = Path(output) if output is not None else model_dir / AVERAGED_DIR
    target = _average_output(model_dir, given)
    inside = _is_within(target, model_dir)
    lock = locking.model_dir_lock(model_dir, "nmt average") if inside else None
    with lock or contextlib.nullcontext():
        return _average_into(model_dir, last_n, given, target, log)


def _is_within(path: Path, directory: Path) -> bool:
    path, directory = Path(os.path.realpath(path)), Path(os.path.realpath(directory))
    return path == directory or directory in path.parents


def _average_output(model_dir: Path, output: Path) -> Path:
    """Where the average goes (a symlink's target: the link stays), checked before work.

    It must be new or a directory written by `nmt average` (it is replaced as a whole), and
    neither hold the model directory nor be one of its own directories.
    """
    fileio.check_output_dir(output, option="--output")
    target = Path(os.path.realpath(output))
    label = f"--output {output}"
    if target.exists() and not os.access(target.parent, os.W_OK | os.X_OK):
        raise CheckpointError(f"{label}: cannot replace it, no write access to "
                              f"{target.parent}")  # fmt: skip
    if _is_within(model_dir, target):
        raise CheckpointError(f"{label}: holds the model directory {model_dir}, which the "
                              "average would replace; choose a new directory")  # fmt: skip
    real_model = Path(os.path.realpath(model_dir))
    if target.parent == real_model and target.name in (CHECKPOINTS_DIR, BEST_DIR, LOGS_DIR):
        raise CheckpointError(f"{label}: is the model's {target.name}/ directory, which the "
                              "average would replace; choose a new directory")  # fmt: skip
    if target.is_dir() and any(target.iterdir()) and not (target / AVERAGED_JSON).exists():
        raise CheckpointError(
            f"{label}: exists and was not written by `nmt average` (no averaged.json), so it "
            "is not replaced; choose a new directory"
        )
    return target


def _average_into(model_dir, last_n, given, output, log) -> Path:
    config = read_config(model_dir)
    check_version(model_dir)
    prefixes = list_checkpoints(model_dir / CHECKPOINTS_DIR)
    if len(prefixes) < last_n:
        raise CheckpointError(
            f"{model_dir / CHECKPOINTS_DIR}: {len(prefixes)} checkpoint(s), cannot average the "
            f"last {last_n}"
        )
    chosen = prefixes[-last_n:]
    try:
        vocab = load_vocab(model_dir)
    except NmtError as e:
        raise CheckpointError(str(e)) from None
    model = _averaged_model(config, vocab, chosen)
    last_step = checkpoint_step(chosen[-1])
    _write_average(model, last_step, chosen, given, output)
    if log:
        log(f"averaged {', '.join(p.name for p in chosen)} -> {given}")
    return given / f"{CHECKPOINT_PREFIX}-{last_step}"


def _averaged_model(config, vocab, chosen: list[Path]):
    """A model holding the mean of the weights of the checkpoints `chosen`."""
    model = build_model(config, vocab)  # imports TensorFlow, once all else is checked
    weights = []
    for prefix in chosen:
        restore_checkpoint(inference_checkpoint(model), prefix, partial=True)
        weights.append([v.numpy() for v in model.weights])
    for variable, value in zip(model.weights, average_weights(weights), strict=True):
        variable.assign(value)
    return model


def _write_average(model, last_step: int, chosen: list[Path], given: Path, output: Path):
    """Write the averaged checkpoint (step `last_step`) and averaged.json into a staging
    directory beside `output`, then move it into place, the previous `output` kept if not."""
    import tensorflow as tf

    step = tf.Variable(last_step, dtype=tf.int64, trainable=False)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = fileio.make_temp_dir(output.parent, f".{output.name}.tmp-")
    unchanged = f"{given} is unchanged" if output.exists() else "nothing was written"
    try:
        try:
            write_checkpoint(inference_checkpoint(model, step), staging, last_step)
            write_json_atomic(
                staging / AVERAGED_JSON,
                {"checkpoints": [p.name for p in chosen], "step": last_step, "nmt": __version__},
            )
        except CheckpointWriteError as e:
            raise CheckpointWriteError(
                f"{given}: cannot write the averaged checkpoint "
                f"({error_reason(e.__cause__ or e)}); {unchanged}"
            ) from e
        try:
            _move_average(staging, output)
        except OSError as e:
            raise CheckpointWriteError(
                f"{given}: cannot move the averaged checkpoint into place "
                f"({error_reason(e)}); {unchanged}"
            ) from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone once renamed; else what is left of it


def _move_average(staging: Path, output: Path) -> None:
    """Put the staged average at `output`: into an existing empty directory entry by entry,
    averaged.json first (the directory keeps its owner, mode and ACLs; an interrupted move
    leaves a directory that the next `nmt average` replaces), else by renaming `staging`
    over it, a previous average moved aside first and removed after, or put back when the
    rename fails or is interrupted."""
    if output.is_dir() and not any(output.iterdir()):
        for path in sorted(staging.iterdir(), key=lambda p: p.name != AVERAGED_JSON):
            os.replace(path, output / path.name)
        return
    old = output.parent / f".{output.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
    if fileio.replace_directory(staging, output, old):
        shutil.rmtree(old, ignore_errors=True)
