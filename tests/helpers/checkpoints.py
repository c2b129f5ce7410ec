"""A model directory with checkpoints of random weights at given steps (no training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nmt import checkpoint_files
from nmt import checkpoints as ckpt
from nmt.config import save_config
from nmt.version import __version__
from tests.helpers.corpus import tiny_config


def make_model_dir(root: Path, steps=(1, 2, 3), seed: int = 0):
    """A model directory with checkpoints of random weights at `steps` (no training).

    Returns (model_dir, {step: weights}).
    """
    import tensorflow as tf

    from nmt.vocab import train_vocab

    config = tiny_config(root / "corpus")
    model_dir = root / "model"
    vocab = train_vocab(
        config.vocab, [config.data.train_source], [config.data.train_target], model_dir
    )
    save_config(config, model_dir / "config.yaml")
    (model_dir / "VERSION").write_text(__version__ + "\n")
    model = ckpt.build_model(config, vocab)
    rng = np.random.default_rng(seed)
    saved = {}
    for step in steps:
        values = [rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()]
        model.set_weights(values)
        saved[step] = values
        step_var = tf.Variable(step, dtype=tf.int64)
        checkpoint_files.write_checkpoint(
            ckpt.inference_checkpoint(model, step_var), model_dir / "checkpoints", step
        )
    return model_dir, saved
