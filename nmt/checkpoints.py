"""Loading a model directory for inference: the checkpoint a name stands for (best, last,
a path), the model built from the saved config, its weights restored; and the checkpoint
objects (weights by position) that training and averaging write.

The directory's layout, version and config are nmt/modeldir.py's; the checkpoint files
(atomic writes, listing, restoring) nmt/checkpoint_files.py's.

TensorFlow is imported inside functions so that importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from nmt.checkpoint_files import list_checkpoints, restore_checkpoint
from nmt.config import Config
from nmt.errors import CheckpointError, NmtError
from nmt.modeldir import BEST_DIR, CHECKPOINTS_DIR, PathLike, check_version, read_config

# --------------------------------------------------------------------------------------------
# The vocabulary and the model of a model directory


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
