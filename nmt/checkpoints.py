"""Model directories: layout, atomic checkpoints, loading for inference, averaging.

A model directory DIR written by `nmt train` holds:

    config.yaml        the resolved config the model was trained with
    VERSION            the nmt version that wrote DIR (see `check_version`)
    joint.model        SentencePiece model(s) (or source.model + target.model), with *.vocab
    checkpoints/       the last `train.keep_checkpoints` training checkpoints, ckpt-STEP.*:
                       model, optimizer (slots, loss scale), step, schedule and bookkeeping
                       state, the tf.data iterator position and dropout RNG states
    best/              the best checkpoint by dev BLEU (model weights and step only)
    logs/              TensorBoard event files (train/ and dev/)
    train_state.json   best BLEU, evaluations without gain, history (human-readable mirror of
                       the bookkeeping state kept in the checkpoints)
    averaged/          written by `nmt average` (model weights and step only)
    shortlist.npz      written by `nmt shortlist`: the decoding shortlist (nmt/shortlist.py)

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

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from nmt import constants, faults, fileio, locking
from nmt.config import Config, from_dict
from nmt.errors import CheckpointError, ConfigError, DataError, NmtError
from nmt.version import __version__

PathLike = Union[str, Path]

CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"
LOGS_DIR = "logs"
AVERAGED_DIR = "averaged"
TRAIN_STATE_FILE = "train_state.json"
SHORTLIST_FILE = "shortlist.npz"
CHECKPOINT_PREFIX = "ckpt"
_STAGING_PREFIX = ".staging-"
_CHECKPOINT_RE = re.compile(rf"^{CHECKPOINT_PREFIX}-(\d+)\.index$")


# --------------------------------------------------------------------------------------------
# Small atomic file helpers


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_temp_dir(parent: PathLike, prefix: str) -> Path:
    """mkdtemp with the permissions of an ordinary mkdir (mkdtemp makes it owner-only)."""
    path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    os.chmod(path, 0o777 & ~_umask())
    return path


class CheckpointWriteError(CheckpointError, OSError):
    """Writing a checkpoint or a model-directory file failed (disk full, I/O error, ...);
    the previous version of what was being written is unchanged."""


def error_reason(e: BaseException) -> str:
    """One line saying why an operation failed: the strerror of an OSError ("No space left
    on device"), the reason of a TensorFlow file error (its "PATH; REASON [Op:NAME]" message
    without path, node and op names), else the first line of the message."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    line = _first_line(getattr(e, "message", None) or str(e) or type(e).__name__)
    if type(e).__module__.startswith("tensorflow"):
        line = re.sub(r"\s*\[Op:\w+\]$", "", line).rsplit("; ", 1)[-1]
    return line


def write_text_atomic(path: PathLike, text: str) -> Path:
    """Write `text` to a temporary file beside `path`, fsync it, then rename it into place
    (`fileio.open_output`). CheckpointWriteError naming `path` when that fails; `path` is
    then unchanged.
    """
    try:
        return fileio.write_atomic(path, text, fsync=True)
    except DataError as e:
        cause = e.__cause__ or e
        raise CheckpointWriteError(
            f"{path}: cannot write ({error_reason(cause)}); the previous version is unchanged"
        ) from cause


def write_json_atomic(path: PathLike, value: Any) -> Path:
    return write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def read_train_state(model_dir: PathLike) -> dict[str, Any]:
    """The parsed train_state.json of a model directory ({} when there is none)."""
    path = Path(model_dir) / TRAIN_STATE_FILE
    if not path.exists():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read training state: {e}") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: training state must be a JSON object")
    return value


# --------------------------------------------------------------------------------------------
# Model directory: config, version, vocabulary


def is_model_dir(path: PathLike) -> bool:
    return (Path(path) / constants.CONFIG_FILE).is_file()


def _version_key(version: str) -> tuple[int, int]:
    match = re.match(r"^\s*(\d+)\.(\d+)", version)
    if not match:
        raise ValueError(version)
    return int(match.group(1)), int(match.group(2))


def version_compatible(saved: str, current: str = __version__) -> bool:
    """Whether nmt `current` can read a model directory written by nmt `saved`.

    Same major version, and not written by a newer minor version; before 1.0 the minor
    version must match as well (0.x releases may change the checkpoint layout).
    """
    try:
        s_major, s_minor = _version_key(saved)
        c_major, c_minor = _version_key(current)
    except ValueError:
        return False
    if s_major != c_major:
        return False
    if c_major == 0:
        return s_minor == c_minor
    return s_minor <= c_minor


def check_version(model_dir: PathLike) -> str:
    """Read DIR/VERSION; CheckpointError if missing or written by an incompatible nmt."""
    path = Path(model_dir) / constants.VERSION_FILE
    try:
        saved = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise CheckpointError(
            f"{path}: missing; {model_dir} is not a complete model directory"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read: {e}") from None
    if not version_compatible(saved, __version__):
        raise CheckpointError(
            f"{model_dir}: written by nmt {saved!r}, which nmt {__version__} cannot load "
            f"(model directories are compatible within one {'minor' if _is_zero() else 'major'} "
            "version); use the nmt version that trained it"
        )
    return saved


def _is_zero() -> bool:
    try:
        return _version_key(__version__)[0] == 0
    except ValueError:  # pragma: no cover - our own version always parses
        return False


def read_config(model_dir: PathLike) -> Config:
    """The Config saved in DIR/config.yaml; CheckpointError when missing or invalid."""
    import yaml

    model_dir = Path(model_dir)
    if not model_dir.exists():
        raise CheckpointError(f"{model_dir}: model directory not found")
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: not a directory")
    path = model_dir / constants.CONFIG_FILE
    if not path.exists():
        raise CheckpointError(f"{model_dir}: not a model directory (no {constants.CONFIG_FILE})")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise CheckpointError(f"{path}: cannot read the saved config:{where} {problem}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read the saved config: {e}") from None
    try:
        return from_dict(values)
    except ConfigError as e:
        raise CheckpointError(f"{path}: invalid saved config: {e}") from None


def load_vocab(model_dir: PathLike):
    from nmt.vocab import Vocab

    return Vocab.load(model_dir)


def build_model(config: Config, vocab, dtype: Optional[str] = None) -> Any:
    """A built Seq2Seq for `config.model` and the vocabulary sizes (variables created), with
    the Keras dtype policy `dtype` (default: the global policy)."""
    from nmt.model import Seq2Seq

    kwargs = {"dtype": dtype} if dtype else {}
    return Seq2Seq.from_model_config(config.model, vocab.source_size, vocab.target_size, **kwargs)


# --------------------------------------------------------------------------------------------
# Checkpoint files


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
        staging = Path(tempfile.mkdtemp(dir=directory, prefix=_STAGING_PREFIX))
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
        reason = _first_line(getattr(e, "message", None) or str(e))
        raise CheckpointError(f"{prefix}: corrupt or truncated checkpoint ({reason})") from None
    except AssertionError as e:
        raise CheckpointError(
            f"{prefix}: checkpoint does not match the model ({_first_line(str(e))}); "
            "was it written with another config?"
        ) from None


def _first_line(text: str) -> str:
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text.strip())
    line = text.splitlines()[0] if text else "unknown error"
    return line[:300]


# --------------------------------------------------------------------------------------------
# Loading for inference


@dataclass
class LoadedModel:
    config: Config
    vocab: Any  # nmt.vocab.Vocab
    model: Any  # nmt.model.Seq2Seq, built, weights restored
    step: Optional[int]
    checkpoint_path: Path
    model_dir: Path


def variables_checkpoint(variables: Sequence[Any]):
    """A tf.train.Checkpoint of variables by position: v0, v1, ... in the given order.

    Keras 3 layers kept in Python lists are not part of TensorFlow's object graph, so
    `tf.train.Checkpoint(model=model)` can silently miss weights. The order of
    `model.weights` (and of `optimizer.variables`) is fixed by the model code and config,
    and a restore checks every variable's presence and shape.
    """
    import tensorflow as tf

    return tf.train.Checkpoint(**{f"v{i}": v for i, v in enumerate(variables)})


def model_checkpoint(model):
    """The model weights (trainable and not) as a checkpointable object."""
    return variables_checkpoint(model.weights)


def inference_checkpoint(model, step=None):
    """The tf.train.Checkpoint holding what inference needs: model weights (and the step)."""
    import tensorflow as tf

    objects = {"model": model_checkpoint(model)}
    if step is not None:
        objects["step"] = step
    return tf.train.Checkpoint(**objects)


def resolve_checkpoint(model_dir: PathLike, checkpoint: str = "best") -> Path:
    """A checkpoint prefix for "best" (falls back to "last"), "last", or a PATH.

    PATH is a checkpoint prefix (`DIR/checkpoints/ckpt-500`, with or without `.index`) or a
    directory holding checkpoints (the newest is used), such as DIR/averaged.
    """
    model_dir = Path(model_dir)
    if checkpoint in ("best", "last"):
        if checkpoint == "best":
            best = list_checkpoints(model_dir / BEST_DIR)
            if best:
                return best[-1]
        last = list_checkpoints(model_dir / CHECKPOINTS_DIR)
        if not last:
            raise CheckpointError(
                f"{model_dir}: no checkpoint in {model_dir / CHECKPOINTS_DIR} "
                "(has training written one yet?)"
            )
        return last[-1]
    path = Path(checkpoint)
    if path.name.endswith(".index"):
        path = path.with_name(path.name[: -len(".index")])
    if path.is_dir():
        found = list_checkpoints(path)
        if not found:
            raise CheckpointError(f"{path}: no checkpoint in this directory")
        return found[-1]
    if not Path(str(path) + ".index").exists():
        raise CheckpointError(
            f"{checkpoint}: checkpoint not found (use best, last, a ckpt-N prefix or a "
            "directory of checkpoints)"
        )
    return path


def load_model(
    model_dir: PathLike, checkpoint: str = "best", precision: str = "float32"
) -> LoadedModel:
    """Config, vocabulary and a model with restored weights from a model directory.

    `checkpoint`: "best" (by dev BLEU; the last checkpoint when there is no best), "last",
    or a path (see `resolve_checkpoint`). `precision`: the dtype policy to compute in
    (`nmt.precision`; weights stay float32 whatever it is). Raises CheckpointError naming
    the path for a missing directory, a directory that is not a model directory, an
    incompatible version, or a missing, corrupt or mismatched checkpoint. Everything but the
    weights is checked before TensorFlow is imported, so such errors come at once.
    """
    model_dir = Path(model_dir)
    config = read_config(model_dir)
    check_version(model_dir)
    prefix = resolve_checkpoint(model_dir, checkpoint)
    try:
        vocab = load_vocab(model_dir)
    except NmtError as e:
        raise CheckpointError(str(e)) from None
    import tensorflow as tf

    from nmt.precision import resolve_precision

    model = build_model(config, vocab, dtype=resolve_precision(precision))
    step = tf.Variable(-1, dtype=tf.int64, trainable=False)
    restore_checkpoint(inference_checkpoint(model, step), prefix, partial=True)
    value = int(step.numpy())
    return LoadedModel(
        config=config,
        vocab=vocab,
        model=model,
        step=value if value >= 0 else None,
        checkpoint_path=prefix,
        model_dir=model_dir,
    )


# --------------------------------------------------------------------------------------------
# Averaging


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
    if _is_within(model_dir, target):
        raise CheckpointError(f"{label}: holds the model directory {model_dir}, which the "
                              "average would replace; choose a new directory")  # fmt: skip
    real_model = Path(os.path.realpath(model_dir))
    if target.parent == real_model and target.name in (CHECKPOINTS_DIR, BEST_DIR, LOGS_DIR):
        raise CheckpointError(f"{label}: is the model's {target.name}/ directory, which the "
                              "average would replace; choose a new directory")  # fmt: skip
    if target.is_dir() and any(target.iterdir()) and not (target / "averaged.json").exists():
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
    import tensorflow as tf  # once all that can be checked without it is

    model = build_model(config, vocab)
    weights = []
    for prefix in chosen:
        restore_checkpoint(inference_checkpoint(model), prefix, partial=True)
        weights.append([v.numpy() for v in model.weights])
    for variable, value in zip(model.weights, average_weights(weights), strict=True):
        variable.assign(value)
    last_step = checkpoint_step(chosen[-1])
    step = tf.Variable(last_step, dtype=tf.int64, trainable=False)

    output.parent.mkdir(parents=True, exist_ok=True)
    staging = make_temp_dir(output.parent, f".{output.name}.tmp-")
    old = None
    unchanged = f"{given} is unchanged" if output.exists() else "nothing was written"
    try:
        try:
            write_checkpoint(inference_checkpoint(model, step), staging, last_step)
            write_json_atomic(
                staging / "averaged.json",
                {"checkpoints": [p.name for p in chosen], "step": last_step, "nmt": __version__},
            )
        except CheckpointWriteError as e:
            raise CheckpointWriteError(
                f"{given}: cannot write the averaged checkpoint "
                f"({error_reason(e.__cause__ or e)}); {unchanged}"
            ) from e
        try:
            if output.exists():
                old = output.parent / f".{output.name}.old-{os.getpid()}"
                os.rename(output, old)
            os.rename(staging, output)
            staging = None
        except OSError as e:
            if old is not None and not output.exists():
                os.rename(old, output)  # put the previous average back
                old = None
            raise CheckpointWriteError(
                f"{given}: cannot move the averaged checkpoint into place "
                f"({error_reason(e)}); {unchanged}"
            ) from e
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    if log:
        log(f"averaged {', '.join(p.name for p in chosen)} -> {given}")
    return given / f"{CHECKPOINT_PREFIX}-{last_step}"
