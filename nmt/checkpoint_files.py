"""Checkpoint files in a directory (DIR/checkpoints, DIR/best, DIR/averaged): written
atomically, listed, pruned, restored, and the leftovers of a killed write removed.

Checkpoints are written to a staging directory and their files moved into place with the
`.index` file last; a checkpoint exists (is listed) only when its `.index` is present, so a
crash mid-write never lists a half-written checkpoint. The listing is read from the files
themselves (not from TensorFlow's `checkpoint` state file), so a damaged state file cannot
hide checkpoints. A truncated or corrupted checkpoint is detected when it is restored
(TensorFlow checks sizes and CRC32C checksums) and training falls back to the previous one.
A write that fails (disk full, I/O error) raises CheckpointWriteError and leaves the earlier
checkpoints as they were; what a killed write leaves behind (a staging directory, data shards
without their .index, temporary files of atomic writes) is removed by `remove_leftovers`.

TensorFlow is imported inside functions so that importing this module stays cheap.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from nmt import constants, faults
from nmt.errors import CheckpointError
from nmt.fileio import make_temp_dir
from nmt.modeldir import (
    BEST_DIR,
    CHECKPOINT_PREFIX,
    CHECKPOINTS_DIR,
    TRAIN_STATE_FILE,
    CheckpointWriteError,
    PathLike,
    error_reason,
    first_line,
)

_STAGING_PREFIX = ".staging-"
_CHECKPOINT_RE = re.compile(rf"^{CHECKPOINT_PREFIX}-(\d+)\.index$")


def checkpoint_step(prefix: PathLike) -> int:
    """The step number in a checkpoint prefix such as DIR/checkpoints/ckpt-500."""
    match = re.search(rf"{CHECKPOINT_PREFIX}-(\d+)$", str(prefix))
    if not match:
        raise CheckpointError(f"{prefix}: not a checkpoint name (expected {CHECKPOINT_PREFIX}-N)")
    return int(match.group(1))


def list_checkpoints(directory: PathLike) -> list[Path]:
    """Checkpoint prefixes in `directory` (those with an .index file), oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        match = _CHECKPOINT_RE.match(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), directory / f"{CHECKPOINT_PREFIX}-{match.group(1)}"))
    return [prefix for _, prefix in sorted(found)]


def checkpoint_files(prefix: PathLike) -> list[Path]:
    """The files of one checkpoint: its .index and .data-* shards."""
    prefix = Path(prefix)
    if not prefix.parent.is_dir():
        return []
    names = [prefix.name + ".index"]
    files = [p for p in prefix.parent.iterdir() if p.name.startswith(prefix.name + ".data-")]
    return [prefix.parent / n for n in names if (prefix.parent / n).exists()] + sorted(files)


def delete_checkpoint(prefix: PathLike) -> None:
    """Remove a checkpoint, its .index first so that it is never listed half-deleted."""
    faults.fire(faults.CHECKPOINT_DELETE, prefix=Path(prefix))
    for path in checkpoint_files(prefix):
        path.unlink(missing_ok=True)


def write_checkpoint(checkpoint, directory: PathLike, step: int) -> Path:
    """Write `checkpoint` (a tf.train.Checkpoint) as DIR/ckpt-STEP, atomically.

    The files are written into a staging directory inside DIR and moved into place, data
    shards first and the .index last: the checkpoint is listed only once complete. When
    writing fails (disk full, I/O error) CheckpointWriteError names the checkpoint; the
    checkpoints written before are untouched.
    """
    import tensorflow as tf

    directory = Path(directory)
    name = f"{CHECKPOINT_PREFIX}-{int(step)}"
    staging = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        staging = make_temp_dir(directory, _STAGING_PREFIX, private=True)
        _ = checkpoint.save_counter  # created on restore, so always written (see restore)
        faults.fire(faults.CHECKPOINT_WRITE, directory=directory, step=int(step))
        checkpoint.write(str(staging / name))
        faults.fire(faults.CHECKPOINT_STAGED, directory=directory, staging=staging)
        staged = sorted(staging.iterdir(), key=lambda p: p.name.endswith(".index"))
        target = directory / name
        delete_checkpoint(target)  # a stale checkpoint of the same step (e.g. after a fallback)
        for path in staged:
            faults.fire(faults.CHECKPOINT_MOVE, src=path, dst=directory / path.name)
            os.replace(path, directory / path.name)
    except (OSError, tf.errors.OpError) as e:
        if staging is not None:  # data shards moved before the failure are not a checkpoint
            remove_orphan_shards(directory)
        kept = list_checkpoints(directory)
        previous = f"; {kept[-1].name} is the newest checkpoint there" if kept else ""
        raise CheckpointWriteError(
            f"{directory / name}: cannot write the checkpoint ({error_reason(e)}){previous}"
        ) from e
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return directory / name


def remove_staging(directory: PathLike) -> None:
    """Remove staging directories left by a process killed while writing a checkpoint."""
    directory = Path(directory)
    if directory.is_dir():
        for entry in directory.iterdir():
            if entry.name.startswith(_STAGING_PREFIX) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)


def remove_orphan_shards(directory: PathLike) -> list[Path]:
    """Delete data shards whose .index is missing (a write or delete cut short); returns them.

    Such shards are never a checkpoint: the .index is moved into place last and deleted first.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    pattern = re.compile(rf"^({CHECKPOINT_PREFIX}-\d+)\.data-\d+-of-\d+$")
    removed = []
    for entry in directory.iterdir():
        match = pattern.match(entry.name)
        if match and not (directory / f"{match.group(1)}.index").exists():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def remove_leftovers(model_dir: PathLike) -> list[Path]:
    """Remove what a process killed while writing DIR leaves behind; returns the paths.

    Staging directories and orphan data shards in DIR/checkpoints and DIR/best, and the
    temporary files of atomic writes of DIR/config.yaml and DIR/train_state.json. Call it
    only when no other process is writing DIR (training does, before it resumes).
    """
    model_dir = Path(model_dir)
    removed: list[Path] = []
    for sub in (CHECKPOINTS_DIR, BEST_DIR):
        directory = model_dir / sub
        if directory.is_dir():
            staging = [p for p in directory.iterdir() if p.name.startswith(_STAGING_PREFIX)]
            remove_staging(directory)
            removed += staging + remove_orphan_shards(directory)
    if model_dir.is_dir():
        temp_prefixes = (f".{constants.CONFIG_FILE}.", f".{TRAIN_STATE_FILE}.")
        for entry in model_dir.iterdir():
            if entry.name.startswith(temp_prefixes) and entry.is_file():
                entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


def prune_checkpoints(directory: PathLike, keep: int) -> list[Path]:
    """Delete all but the newest `keep` checkpoints in `directory`; returns those deleted."""
    faults.fire(faults.CHECKPOINT_PRUNE, directory=Path(directory), keep=keep)
    prefixes = list_checkpoints(directory)
    old = prefixes[: max(0, len(prefixes) - keep)]
    for prefix in old:
        delete_checkpoint(prefix)
    return old


def restore_checkpoint(checkpoint, prefix: PathLike, *, partial: bool = False) -> None:
    """Restore `checkpoint` from `prefix`, turning any failure into a CheckpointError.

    Every object in `checkpoint` must find its values (so a checkpoint from another model
    shape is refused); values of the file that `checkpoint` does not use are allowed when
    `partial` (e.g. the optimizer slots when loading weights for inference).
    """
    import tensorflow as tf

    prefix = Path(prefix)
    if not Path(str(prefix) + ".index").exists():
        raise CheckpointError(f"{prefix}: checkpoint not found (no {prefix.name}.index)")
    try:
        _ = checkpoint.save_counter  # restore() creates it; every checkpoint we write has one
        status = checkpoint.restore(str(prefix))
        status.assert_existing_objects_matched()
        if partial:
            status.expect_partial()
        else:
            status.assert_consumed()
    except (tf.errors.OpError, IndexError, ValueError) as e:
        reason = first_line(getattr(e, "message", None) or str(e))
        raise CheckpointError(f"{prefix}: corrupt or truncated checkpoint ({reason})") from None
    except AssertionError as e:
        raise CheckpointError(
            f"{prefix}: checkpoint does not match the model ({first_line(str(e))}); "
            "was it written with another config?"
        ) from None
