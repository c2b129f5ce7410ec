"""`LSTMCell`: one LSTM time step, the Keras RNN cell (see nmt.layers.lstm for the layout and
the mixed-precision rule: h in the compute dtype, C in float32 under 16-bit policies)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import activations, constraints, initializers, ops, regularizers

from nmt.layers.lstm_kernel import cast, lstm_step, split4

__all__ = ["LSTMCell"]

_HALF_DTYPES = ("float16", "bfloat16")


def _state_dtype(compute_dtype: str) -> str:
    """Dtype of the cell state C for a given compute dtype (float32 for 16-bit floats)."""
    return "float32" if compute_dtype in _HALF_DTYPES else compute_dtype


def _dropout_masks(ones, rate: float, count: int, seed_generator):
    """`count` independent dropout masks (scaled by 1/(1-rate)) shaped like `ones`."""
    masks = [keras.random.dropout(ones, rate=rate, seed=seed_generator) for _ in range(count)]
    return tf.stack(masks)  # (count, B, n)


@keras.saving.register_keras_serializable(package="nmt")
class LSTMCell(keras.layers.Layer):
    """One LSTM time step (Keras RNN cell contract), computing exactly

        f  = σ(W_f·[h_prev, x] + b_f)
        i  = σ(W_i·[h_prev, x] + b_i)
        C̃  = tanh(W_C·[h_prev, x] + b_C)
        C  = f * C_prev + i * C̃
        o  = σ(W_o·[h_prev, x] + b_o)
        h  = o * tanh(C)

    where σ is `recurrent_activation` (sigmoid by default) and tanh is `activation`. The gate
    matrices are stored split by operand: W_g·[h, x] = h·recurrent_kernel[:, g] + x·kernel[:, g],
    with the gate blocks g packed in the order (i, f, C̃, o) as `keras.layers.LSTMCell` does.

    Args mirror `keras.layers.LSTMCell`: `unit_forget_bias=True` adds 1 to b_f at
    initialization; `dropout` drops input units and `recurrent_dropout` drops units of h_prev.
    As in Keras, with `recurrent_dropout > 0` each gate gets its own input and recurrent mask,
    otherwise one input mask is shared by the four gates. Masks are created on the first
    training call and reused until `reset_dropout_mask()` / `reset_recurrent_dropout_mask()`.
    A caller stepping the cell in a `tf.while_loop` gets one mask for the whole sequence by
    calling `get_dropout_mask(x_0)` / `get_recurrent_dropout_mask(h_0)` before the loop and the
    resets after it, as `keras.layers.RNN` does for its own cells (it does not reset this cell's
    masks: to train with dropout over whole sequences use `nmt.layers.LSTM`).

    Call: `h, [h, c] = cell(x, [h_prev, c_prev], training=...)` with x (B, input_dim) and
    h_prev, c_prev (B, units). h is in the compute dtype, c in float32 under 16-bit policies.
    """

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        unit_forget_bias: bool = True,
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        if int(units) != units or units <= 0:
            raise ValueError(
                f"Received an invalid value for argument `units`, expected a positive integer, "
                f"got {units}."
            )
        units = int(units)
        # `implementation` selects between two numerically equivalent Keras code paths.
        kwargs.pop("implementation", None)
        kwargs.pop("autocast", None)
        super().__init__(autocast=False, **kwargs)
        self.units = units
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.unit_forget_bias = unit_forget_bias
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.recurrent_constraint = constraints.get(recurrent_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.dropout = min(1.0, max(0.0, float(dropout)))
        self.recurrent_dropout = min(1.0, max(0.0, float(recurrent_dropout)))
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed=seed)
        self.state_size = [units, units]
        self.output_size = units
        self._dropout_mask = None
        self._recurrent_dropout_mask = None

    @property
    def state_dtype(self) -> str:
        """Dtype of the cell state C (float32 under 16-bit compute dtypes)."""
        return _state_dtype(self.compute_dtype)

    def build(self, input_shape) -> None:
        input_dim = input_shape[-1]
        u = self.units
        self.kernel = self.add_weight(
            shape=(input_dim, 4 * u),
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(u, 4 * u),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        if self.use_bias:
            if self.unit_forget_bias:
                base = self.bias_initializer

                def bias_initializer(shape, dtype=None):
                    return ops.concatenate(
                        [
                            base((u,), dtype=dtype),
                            initializers.Ones()((u,), dtype=dtype),
                            base((2 * u,), dtype=dtype),
                        ]
                    )

            else:
                bias_initializer = self.bias_initializer
            self.bias = self.add_weight(
                shape=(4 * u,),
                name="bias",
                initializer=bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None
        self.built = True

    # Dropout masks, cached across the steps of one sequence (Keras' DropoutRNNCell contract).
    def _input_mask_count(self) -> int:
        return 4 if self.recurrent_dropout > 0 else 1

    def get_dropout_mask(self, step_input):
        """Input dropout mask(s) for this sequence: (count, B, input_dim) with count 1 or 4."""
        if self._dropout_mask is None and self.dropout > 0:
            ones = ops.ones_like(step_input)
            self._dropout_mask = _dropout_masks(
                ones, self.dropout, self._input_mask_count(), self.seed_generator
            )
        return self._dropout_mask

    def get_recurrent_dropout_mask(self, step_state):
        """Recurrent dropout masks for this sequence: (4, B, units), one per gate."""
        if self._recurrent_dropout_mask is None and self.recurrent_dropout > 0:
            ones = ops.ones_like(step_state)
            self._recurrent_dropout_mask = _dropout_masks(
                ones, self.recurrent_dropout, 4, self.seed_generator
            )
        return self._recurrent_dropout_mask

    def reset_dropout_mask(self) -> None:
        self._dropout_mask = None

    def reset_recurrent_dropout_mask(self) -> None:
        self._recurrent_dropout_mask = None

    def call(self, inputs, states, training=False):
        cdt, sdt, u = self.compute_dtype, self.state_dtype, self.units
        x = cast(inputs, cdt)  # (B, D)
        h_prev = cast(states[0], cdt)  # (B, u)
        c_prev = cast(states[1], sdt)  # (B, u)
        kernel = cast(self.kernel, cdt)  # (D, 4u)
        recurrent_kernel = cast(self.recurrent_kernel, cdt)  # (u, 4u)

        if training and 0.0 < self.dropout < 1.0:
            dp = cast(self.get_dropout_mask(x), cdt)  # (1 or 4, B, D)
            x_per_gate = x[None] * dp  # (1 or 4, B, D)
        else:
            x_per_gate = x[None]  # (1, B, D)
        if x_per_gate.shape[0] == 1:
            z = tf.matmul(x_per_gate[0], kernel)  # (B, 4u)
        else:
            z = tf.concat(
                [tf.matmul(x_per_gate[k], w) for k, w in enumerate(split4(kernel, u))], axis=-1
            )  # (B, 4u)
        if training and 0.0 < self.recurrent_dropout < 1.0:
            rdp = cast(self.get_recurrent_dropout_mask(h_prev), cdt)  # (4, B, u)
            z += tf.concat(
                [tf.matmul(h_prev * rdp[k], w) for k, w in enumerate(split4(recurrent_kernel, u))],
                axis=-1,
            )  # (B, 4u)
        else:
            z += tf.matmul(h_prev, recurrent_kernel)  # (B, 4u)
        if self.use_bias:
            z += cast(self.bias, cdt)  # (B, 4u)

        h, c = lstm_step(z, c_prev, self.activation, self.recurrent_activation)  # (B, u)
        return h, [h, c]

    def get_initial_state(self, batch_size=None):
        return [
            ops.zeros((batch_size, self.units), dtype=self.compute_dtype),
            ops.zeros((batch_size, self.units), dtype=self.state_dtype),
        ]

    def get_config(self) -> dict[str, Any]:
        config = {
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "recurrent_activation": activations.serialize(self.recurrent_activation),
            "use_bias": self.use_bias,
            "unit_forget_bias": self.unit_forget_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "recurrent_constraint": constraints.serialize(self.recurrent_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }
        return {**super().get_config(), **config}
