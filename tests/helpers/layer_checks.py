"""Generic Keras layer contract checks, shared by the layer tests.

`check_layer(cls, init_kwargs, input_data, expected_shape)` asserts that a layer class
round-trips its config, calls symbolically on a `keras.KerasTensor`, calls eagerly with the
expected output shape(s), trains for one `fit` step (weights change, loss finite) and gives the
same result inside `tf.function` as eagerly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf


def _as_list(outputs: Any) -> list:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _shapes(expected_shape: Sequence) -> list[tuple]:
    """One shape tuple per output (a single shape is given as a tuple of ints)."""
    if expected_shape and isinstance(expected_shape[0], (tuple, list)):
        return [tuple(s) for s in expected_shape]
    return [tuple(expected_shape)]


def check_layer(
    cls: type[keras.layers.Layer],
    init_kwargs: dict[str, Any],
    input_data: np.ndarray,
    expected_shape: Sequence,
    *,
    atol: float = 1e-5,
) -> keras.layers.Layer:
    """Runs the contract checks; returns the layer used for the eager call."""
    expected = _shapes(expected_shape)

    # 1. Config round trip.
    layer = cls(**init_kwargs)
    config = layer.get_config()
    clone = cls.from_config(config)
    assert clone.get_config() == config, "get_config/from_config does not round-trip"
    for key, value in init_kwargs.items():
        if isinstance(value, (bool, int, float)) or value is None:
            assert config[key] == value, f"config[{key!r}] = {config[key]!r}, expected {value!r}"

    # 2. Symbolic call on a KerasTensor.
    inputs = keras.Input(shape=input_data.shape[1:], dtype=str(input_data.dtype))
    symbolic = _as_list(cls(**init_kwargs)(inputs))
    assert len(symbolic) == len(expected), f"{len(symbolic)} symbolic outputs"
    for tensor, shape in zip(symbolic, expected, strict=True):
        assert isinstance(tensor, keras.KerasTensor)
        assert tuple(tensor.shape) == (None, *shape[1:]), f"symbolic shape {tensor.shape}"

    # 3. Eager call.
    eager = _as_list(layer(input_data))
    assert [tuple(t.shape) for t in eager] == expected, [tuple(t.shape) for t in eager]
    for tensor in eager:
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(tensor)))

    # 4. tf.function gives the same values.
    traced = _as_list(tf.function(lambda x: layer(x))(tf.constant(input_data)))
    for a, b in zip(eager, traced, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=atol)

    # 5. One fit step on a functional model: loss finite, trainable weights move.
    model_in = keras.Input(shape=input_data.shape[1:], dtype=str(input_data.dtype))
    model_layer = cls(**init_kwargs)
    model = keras.Model(model_in, model_layer(model_in))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    before = [np.array(w) for w in model_layer.trainable_weights]
    targets = [np.ones(shape, dtype="float32") for shape in expected]
    history = model.fit(
        input_data,
        targets if len(targets) > 1 else targets[0],
        batch_size=len(input_data),
        epochs=1,
        verbose=0,
    )
    assert np.isfinite(history.history["loss"][0])
    after = [np.array(w) for w in model_layer.trainable_weights]
    assert before, "layer has no trainable weights"
    assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True)), (
        "fit did not change any weight"
    )
    return layer
