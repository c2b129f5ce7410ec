"""Model directories: their layout, version checks, the saved config and training state,
and the atomic writes of their small files.

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

The checkpoint files themselves are written, listed and restored by nmt/checkpoint_files.py;
nmt/checkpoints.py loads a model for inference, nmt/averaging.py writes DIR/averaged.
config.yaml and train_state.json are written with `write_text_atomic` (nmt.fileio's atomic
write, fsynced), so a failed write leaves the previous version.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Union

from nmt import constants, fileio
from nmt.config import Config, from_dict
from nmt.errors import CheckpointError, ConfigError, DataError
from nmt.version import __version__

PathLike = Union[str, Path]

CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"
LOGS_DIR = "logs"
AVERAGED_DIR = "averaged"
TRAIN_STATE_FILE = "train_state.json"
SHORTLIST_FILE = "shortlist.npz"
CHECKPOINT_PREFIX = "ckpt"


# --------------------------------------------------------------------------------------------
# Errors and atomic writes of model-directory files


class CheckpointWriteError(CheckpointError, OSError):
    """Writing a checkpoint or a model-directory file failed (disk full, I/O error, ...);
    the previous version of what was being written is unchanged."""


def error_reason(e: BaseException) -> str:
    """One line saying why an operation failed: the strerror of an OSError ("No space left
    on device"), the reason of a TensorFlow file error (its "PATH; REASON [Op:NAME]" message
    without path, node and op names), else the first line of the message."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    line = first_line(getattr(e, "message", None) or str(e) or type(e).__name__)
    if type(e).__module__.startswith("tensorflow"):
        line = re.sub(r"\s*\[Op:\w+\]$", "", line).rsplit("; ", 1)[-1]
    return line


def first_line(text: str) -> str:
    """The first line of an error message (TensorFlow's function-node prefixes dropped),
    at most 300 characters."""
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text.strip())
    line = text.splitlines()[0] if text else "unknown error"
    return line[:300]


def write_text_atomic(path: PathLike, text: str) -> Path:
    """Write `text` to a temporary file beside `path`, fsync it, then rename it into place
    (`fileio.write_atomic`, the one atomic writer). CheckpointWriteError naming `path` when
    that fails; `path` is then unchanged.
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
# The saved config and version


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
