"""Long short-term memory: a one-step cell and a fast sequence layer.

`LSTMCell` (nmt/layers/lstm_cell.py) computes one time step; `LSTM` runs it over a sequence
and is a drop-in swap for `keras.layers.LSTM` (same arguments, same weights, same results) that
trains faster on CPU and, like Keras', runs as one cuDNN call on a GPU (nmt/layers/cudnn.py).
Every step of both is the kernel in nmt/layers/lstm_kernel.py.

Weights are laid out exactly as in `keras.layers.LSTMCell`, so `get_weights()` / `set_weights()`
copy across both ways: `kernel` (input_dim, 4u), `recurrent_kernel` (u, 4u) and `bias` (4u,),
created in that order, each packed in gate order (i, f, C̃, o) along the last axis.

Mixed precision: under `mixed_float16` / `mixed_bfloat16` the matmuls and gates run in the
compute dtype while the variables stay float32 and the cell state C is kept in float32 all the
way (update, tanh(C), the returned state, stateful storage, the backward pass). A 16-bit C would
be rounded at every step (bfloat16 keeps 8 mantissa bits), and C is an unbounded running sum
that the forget gate carries across the whole sequence, so the rounding error would accumulate.
h, the outputs and the gates stay in the compute dtype. The state dtype is therefore:
h: compute dtype; C: float32 when the compute dtype is a 16-bit float, else the compute dtype.
Both layers cast their inputs and variables themselves (they are built with `autocast=False`),
because Keras' automatic input casting would otherwise turn a float32 C back into 16 bits.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import activations, constraints, initializers, regularizers

from nmt.layers import cudnn
from nmt.layers.lstm_cell import LSTMCell, _dropout_masks
from nmt.layers.lstm_kernel import (
    cast,
    is_standard,
    project_feature_major,
    recurrence_fused,
    recurrence_generic,
    split4,
)

__all__ = ["LSTM", "LSTMCell"]


@keras.saving.register_keras_serializable(package="nmt")
class LSTM(keras.layers.RNN):
    """LSTM over a sequence; a drop-in swap for `keras.layers.LSTM`.

    Every step applies the `LSTMCell` equations (i, f, C̃, o gates; C = f * C_prev + i * C̃;
    h = o * tanh(C)). Constructor arguments, defaults, weights, masking, `initial_state`,
    `return_sequences` / `return_state` / `go_backwards` / `stateful` / `unroll` /
    `zero_output_for_mask`, `reset_state()`, `Bidirectional` and the config all behave as in
    `keras.layers.LSTM`; `.cell` is the `LSTMCell` that owns the weights.

    Masking (as Keras): a masked step leaves h and C unchanged. The output at a masked step is
    the output of the previous step (zeros before the first real step), or zeros when
    `zero_output_for_mask=True`; the returned final h and C are those after the last real step.

    How it runs (default sigmoid/tanh activations, no active recurrent dropout): kernelᵀ·x_t + b
    for all T steps is ONE (4u, D)·(D, T·B) matmul outside the recurrence; the recurrence is one
    `tf.while_loop` (a Python loop with `unroll=True`) doing one (4u, u)·(u, B) matmul per step,
    with a hand-written backward pass (`recurrence_fused` in nmt/layers/lstm_kernel.py, the
    step kernel every LSTM step of the toolkit uses). States are kept feature-major,
    (u, B), inside the loop: on this CPU (oneDNN) that orientation of the per-step matmul and of
    the large gradient matmuls measured faster than the batch-major one (scripts/bench_lstm.py).
    Other activations, or recurrent dropout in training, run a batch-major loop of the kernel's
    `lstm_step` (`recurrence_generic`). Both compute the same equations as Keras to float32
    rounding.

    `use_cudnn` ("auto", True, False; nmt/layers/cudnn.py) as in Keras: with a GPU,
    tanh/sigmoid, no recurrent dropout, `unroll=False`, a bias, a 16/32/64-bit float compute
    dtype, outside XLA-compiled functions, and a right-padded mask (or none), the whole
    recurrence is one cuDNN call ("auto" and True); otherwise, and on every CPU, our kernel
    ("auto"), or Keras' ValueError (True; a mask that is not right-padded fails at run time, as
    in Keras). Unlike Keras' cuDNN path, the outputs at masked steps are the same on GPU as on
    CPU (the rule above). Under 16-bit policies cuDNN keeps C in the compute dtype; it is
    returned in float32. `implementation` is accepted and ignored (Keras' two implementations
    compute the same function).
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
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        use_cudnn: bool | str = "auto",
        zero_output_for_mask: bool = False,
        **kwargs: Any,
    ) -> None:
        cudnn.check_use_cudnn(use_cudnn)
        kwargs.pop("implementation", None)
        kwargs.pop("autocast", None)
        cell = LSTMCell(
            units,
            activation=activation,
            recurrent_activation=recurrent_activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            unit_forget_bias=unit_forget_bias,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            seed=seed,
            dtype=kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True),
            name="lstm_cell",
        )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            zero_output_for_mask=zero_output_for_mask,
            activity_regularizer=activity_regularizer,
            autocast=False,
            **kwargs,
        )
        self.input_spec = keras.InputSpec(ndim=3)
        self.use_cudnn = use_cudnn
        if use_cudnn in (True, "auto") and cudnn.gpu_available():
            if cudnn.arguments_support_cudnn(activation, recurrent_activation, unroll, use_bias):
                self.supports_jit = False  # as keras.layers.LSTM: cuDNN ops are not XLA ops

    # The constructor arguments, read back from the cell (as keras.layers.LSTM exposes them).
    @property
    def units(self) -> int:
        return self.cell.units

    @property
    def activation(self):
        return self.cell.activation

    @property
    def recurrent_activation(self):
        return self.cell.recurrent_activation

    @property
    def use_bias(self) -> bool:
        return self.cell.use_bias

    @property
    def unit_forget_bias(self) -> bool:
        return self.cell.unit_forget_bias

    @property
    def kernel_initializer(self):
        return self.cell.kernel_initializer

    @property
    def recurrent_initializer(self):
        return self.cell.recurrent_initializer

    @property
    def bias_initializer(self):
        return self.cell.bias_initializer

    @property
    def kernel_regularizer(self):
        return self.cell.kernel_regularizer

    @property
    def recurrent_regularizer(self):
        return self.cell.recurrent_regularizer

    @property
    def bias_regularizer(self):
        return self.cell.bias_regularizer

    @property
    def kernel_constraint(self):
        return self.cell.kernel_constraint

    @property
    def recurrent_constraint(self):
        return self.cell.recurrent_constraint

    @property
    def bias_constraint(self):
        return self.cell.bias_constraint

    @property
    def dropout(self) -> float:
        return self.cell.dropout

    @property
    def recurrent_dropout(self) -> float:
        return self.cell.recurrent_dropout

    @property
    def seed(self) -> int | None:
        return self.cell.seed

    def compute_output_spec(self, sequences, initial_state=None, mask=None, training=False):
        shapes = self.compute_output_shape(tuple(sequences.shape))
        cdt, sdt = self.compute_dtype, self.cell.state_dtype
        if self.return_state:
            output_shape, h_shape, c_shape = shapes
            return (
                keras.KerasTensor(output_shape, dtype=cdt),
                keras.KerasTensor(h_shape, dtype=cdt),
                keras.KerasTensor(c_shape, dtype=sdt),
            )
        return keras.KerasTensor(shapes, dtype=cdt)

    def _input_projection(self, xt, dp):
        """x_t·kernel + bias for every step in one matmul, batch-major: xt (T, B, D) -> (T, B, 4u).

        `dp` is None or the input dropout masks (count, B, D): one shared by the four gates, or
        one per gate (count 4, Keras' behaviour when recurrent_dropout > 0).
        """
        cell = self.cell
        cdt, u = cell.compute_dtype, cell.units
        kernel = cast(cell.kernel, cdt)  # (D, 4u)
        n, b, d = tf.shape(xt)[0], tf.shape(xt)[1], kernel.shape[0]
        if dp is not None and dp.shape[0] == 4:
            xk = tf.reshape(xt[None] * dp[:, None], [4, -1, d])  # (4, T·B, D)
            xw = tf.matmul(xk, tf.stack(split4(kernel, u)))  # (4, T·B, u)
            xw = tf.reshape(tf.transpose(xw, [1, 0, 2]), [-1, 4 * u])  # (T·B, 4u)
        else:
            if dp is not None:
                xt = xt * dp[0]  # (T, B, D)
            xw = tf.matmul(tf.reshape(xt, [-1, d]), kernel)  # (T·B, 4u)
        if cell.use_bias:
            xw = xw + cast(cell.bias, cdt)  # (T·B, 4u)
        return tf.reshape(xw, [n, b, 4 * u])  # (T, B, 4u)

    def _initial_state(self, x, initial_state):
        """(h0 in the compute dtype, c0 in the state dtype), each (B, u)."""
        cell = self.cell
        if initial_state is None:
            if self.stateful:
                initial_state = self.states
            else:
                initial_state = cell.get_initial_state(batch_size=tf.shape(x)[0])
        if self.stateful and self._expected_batch_size is not None:
            if x.shape[0] is not None and x.shape[0] != self._expected_batch_size:
                raise ValueError(
                    "If an RNN is stateful, the batch size of the input sequences must be the "
                    "same as the batch size of the initial state.\n"
                    f"- Expected batch size: {self._expected_batch_size}\n"
                    f"- Received batch size: {x.shape[0]}"
                )
        initial_state = list(initial_state) if isinstance(initial_state, (list, tuple)) else []
        if len(initial_state) != 2:
            raise ValueError(
                f"LSTM expects initial_state=[h, c] (two tensors); got {len(initial_state)}."
            )
        return cast(initial_state[0], cell.compute_dtype), cast(initial_state[1], cell.state_dtype)

    def _dropout_masks(self, x, h0, training):
        """(input masks (count, B, D) or None, recurrent masks (4, B, u) or None)."""
        cell, cdt = self.cell, self.cell.compute_dtype
        dp = rdp = None
        if training and 0.0 < cell.dropout < 1.0:
            count = 4 if cell.recurrent_dropout > 0 else 1  # per-gate masks, as Keras does
            ones = tf.ones_like(x[:, 0])  # (B, D)
            dp = cast(_dropout_masks(ones, cell.dropout, count, cell.seed_generator), cdt)
        if training and 0.0 < cell.recurrent_dropout < 1.0:
            ones = tf.ones_like(h0)  # (B, u)
            rdp = _dropout_masks(ones, cell.recurrent_dropout, 4, cell.seed_generator)
            rdp = cast(rdp, cdt)  # (4, B, u)
        return dp, rdp

    def _cudnn_wanted(self) -> bool:
        """Whether this call goes to cuDNN (mask permitting); raises as Keras where it cannot."""
        cell = self.cell
        possible = (
            not cell.recurrent_dropout
            and cudnn.arguments_support_cudnn(
                cell.activation, cell.recurrent_activation, self.unroll, cell.use_bias
            )
            and cell.compute_dtype in cudnn.CUDNN_DTYPES
            and cudnn.gpu_available()
            and not cudnn.in_xla_context()
        )
        if self.use_cudnn in ("auto", True) and possible:
            return True
        if self.use_cudnn is True:
            raise ValueError(cudnn.UNSUPPORTED)
        return False

    def _recurrence(self, x, h0, c0, mask, dp, rdp):
        """Our kernel: (states (B, T, u) in processing order or None, h_last, C_last)."""
        cell = self.cell
        cdt = cell.compute_dtype
        if self.go_backwards:
            x = tf.reverse(x, [1])
            if mask is not None:
                mask = tf.reverse(mask, [1])
        n_steps, static_steps = tf.shape(x)[1], x.shape[1]
        fused = (
            is_standard(cell.activation, cell.recurrent_activation)
            and rdp is None
            and (dp is None or dp.shape[0] == 1)
        )
        if not fused:
            xw = self._input_projection(tf.transpose(x, [1, 0, 2]), dp)  # (T, B, 4u)
            hs, c_last = recurrence_generic(
                xw,
                h0,
                c0,
                cast(cell.recurrent_kernel, cdt),
                None if mask is None else tf.transpose(mask)[:, :, None],  # (T, B, 1)
                cell.activation,
                cell.recurrent_activation,
                rdp,
                self.unroll,
            )  # (T, B, u), (B, u)
            seq = tf.transpose(hs, [1, 0, 2]) if self.return_sequences else None  # (B, T, u)
            return seq, hs[-1], c_last
        if dp is not None:
            x = x * dp[0][:, None, :]  # (B, T, D)
        kernel_t = tf.transpose(cast(cell.kernel, cdt))  # (4u, D)
        x2 = tf.reshape(tf.transpose(x, [2, 1, 0]), [kernel_t.shape[1], -1])  # (D, T·B)
        bias = cast(cell.bias, cdt) if cell.use_bias else None  # (4u,)
        hs, c_last = recurrence_fused(
            project_feature_major(x2, kernel_t, bias),  # (4u, T·B)
            tf.transpose(h0),
            tf.transpose(c0),
            tf.transpose(cast(cell.recurrent_kernel, cdt)),
            None if mask is None else tf.transpose(mask)[:, None, :],  # (T, 1, B)
            n_steps,
            static_steps,
            self.unroll,
        )  # (T, u, B), (u, B)
        seq = tf.transpose(hs, [2, 0, 1]) if self.return_sequences else None  # (B, T, u)
        return seq, tf.transpose(hs[-1]), tf.transpose(c_last)

    def _cudnn_or_ours(self, x, h0, c0, mask, dp, rdp):
        """The cuDNN recurrence where the mask allows it (right-padded), else ours."""

        def tensors(result):  # tf.cond's branches return tensors only
            seq, h, c = result
            return (h, c) if seq is None else (seq, h, c)

        def run_cudnn():
            x_in = x if dp is None else x * dp[0][:, None, :]  # (B, T, D)
            return tensors(
                cudnn.run_cudnn(
                    x_in, h0, c0, self.cell, mask, self.go_backwards, self.return_sequences
                )
            )

        if mask is None:
            result = run_cudnn()
        elif self.use_cudnn is True:
            ok = cudnn.mask_is_right_padded(mask)
            with tf.control_dependencies([tf.debugging.Assert(ok, [cudnn.MASK_NOT_RIGHT_PADDED])]):
                result = run_cudnn()
        else:
            ours = lambda: tensors(self._recurrence(x, h0, c0, mask, dp, rdp))  # noqa: E731
            result = tf.cond(cudnn.mask_is_right_padded(mask), run_cudnn, ours)
        return result if self.return_sequences else (None, *result)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        x = cast(sequences, self.cell.compute_dtype)  # (B, T, D)
        if self.unroll and x.shape[1] is None:
            raise ValueError(
                "Cannot unroll a RNN if the time dimension is undefined. Pass an `Input()` "
                "with a fixed time dimension (`shape=` or `batch_shape=`)."
            )
        h0, c0 = self._initial_state(x, initial_state)  # (B, u) each
        if mask is not None:
            if isinstance(mask, (list, tuple)):
                mask = mask[0]
            mask = tf.cast(mask, tf.bool)  # (B, T)
        dp, rdp = self._dropout_masks(x, h0, training)
        if self._cudnn_wanted():
            seq, h_last, c_last = self._cudnn_or_ours(x, h0, c0, mask, dp, rdp)
        else:
            seq, h_last, c_last = self._recurrence(x, h0, c0, mask, dp, rdp)

        if self.stateful:
            for variable, value in zip(self.states, (h_last, c_last), strict=True):
                variable.assign(cast(value, variable.dtype))

        # Outputs as Keras gives them at masked steps (see the class docstring).
        if mask is not None and self.go_backwards:
            mask = tf.reverse(mask, [1])  # processing order
        if mask is None:
            valid = None
        elif self.zero_output_for_mask:
            valid = mask[:, :, None]  # (B, T, 1)
        else:
            valid = tf.cumsum(tf.cast(mask, tf.int32), axis=1)[:, :, None] > 0  # (B, T, 1)
        if self.return_sequences:
            output = seq if valid is None else tf.where(valid, seq, tf.zeros_like(seq))
        else:
            output = h_last if valid is None else tf.where(valid[:, -1], h_last, 0.0)
        output = cast(output, self.compute_dtype)
        if self.return_state:
            return output, h_last, c_last
        return output

    def get_config(self) -> dict[str, Any]:
        config = {
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "recurrent_activation": activations.serialize(self.recurrent_activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "unit_forget_bias": self.unit_forget_bias,
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": regularizers.serialize(self.activity_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "recurrent_constraint": constraints.serialize(self.recurrent_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }
        if self.use_cudnn != "auto":
            # Kept when set. keras.layers.LSTM (3.15) leaves it out of its config altogether;
            # leaving out the default keeps our default config key for key equal to Keras'.
            config["use_cudnn"] = self.use_cudnn
        base = super().get_config()
        del base["cell"]
        return {**base, **config}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LSTM:
        return cls(**config)
