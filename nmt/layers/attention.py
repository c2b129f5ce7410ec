"""Global attention over an encoder memory with a source mask (Luong et al., 2015)."""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import ops

SCORES = ("dot", "general", "concat", "bahdanau")
# How the multiplicative scores (dot, general) are scaled; the additive ones are bounded by
# their tanh and take "none" only.
SCALES = ("none", "sqrt", "normed")
_MULTIPLICATIVE = ("dot", "general")

# Added to the scores of masked source positions before the float32 softmax: exp(-1e9 - max)
# underflows to exactly 0, so masked positions get exactly zero weight.
_MASKED_SCORE = -1e9


@keras.saving.register_keras_serializable(package="nmt")
class Attention(keras.layers.Layer):
    """Global attention: scores, masked softmax, context and the attentional hidden state.

    The query h_t is the output of the top decoder layer at target step t (for every score,
    including `bahdanau`, which in Bahdanau et al. (2015) used the previous decoder state; here
    all four share Luong's query). The memory h_s, s = 1..S, is the encoder output.

        dot:       score(h_t, h_s) = h_t . h_s                       (needs D_q == D_m)
        general:   score(h_t, h_s) = h_t . (h_s W_a)                 W_a: (D_m, D_q)
        concat:    score(h_t, h_s) = v_a . tanh([h_t; h_s] W_a)      W_a: (D_q + D_m, A)
                   (Luong eq. 8)
        bahdanau:  score(h_t, h_s) = v_a . tanh(h_t W_1 + h_s W_2)   W_1: (D_q, A), W_2: (D_m, A)

    `concat` and `bahdanau` are the same function family (W_a's rows split into W_1 and W_2);
    they differ only in parameterisation: one kernel versus two. None of the scores has a bias.

    With `scale="sqrt"` the multiplicative scores are divided by sqrt(D_q), as in scaled
    dot-product attention (Vaswani et al., 2017); with `scale="normed"` they are a cosine times a
    learned gain g (initial value sqrt(D_q)), so no weight can make them grow without bound:

        dot, general (sqrt):    score(h_t, h_s) = h_t . k_s / sqrt(D_q)
        dot, general (normed):  score(h_t, h_s) = g (h_t . k_s) / (|h_t| |k_s|)
                                with k_s = h_s (dot) or h_s W_a (general)

    Unscaled, the scores of 512-wide states start with a spread of several units. On Multi30k
    `general` attention collapses within 400 updates onto the final "." and EOS (whose memory
    carries a summary of the sentence), scaled or normed alike, and `concat` onto the first
    position (where the backward LSTM ends), while `bahdanau` learns alignments; scaled `dot`
    stays spread but nearly uniform. The measurements are in
    BENCHMARKS.md, "Attention". The scale is folded into the keys by `prepare`, so it costs
    nothing per decoding step.

        (1) a_t(s) = exp(score(h_t, h_s)) / sum_{s' unmasked} exp(score(h_t, h_s'))
            and a_t(s) = 0 exactly for masked s                     (softmax in float32)
        (2) c_t  = sum_s a_t(s) h_s                                  (Luong eq. 1-2)
        (3) h~_t = tanh([c_t; h_t] W_c)                              W_c: (D_m + D_q, D_q)
            (Luong eq. 5)

    The memory-only part of each score (the "keys": h_s W_a for general, the h_s rows of W_a
    for concat, h_s W_2 for bahdanau; nothing for dot) is computed once per sequence by
    `prepare(memory)`, so that a decoder step costs one (B, S, .) contraction per score.

    Two remedies against the collapse of the learned scores, both off by default (and then
    adding no op and no variable):

      - `dropout` (config `model.attention_dropout`): in training, inverted dropout on the
        weights a_t(s) after the masked softmax and before the context sum (2), as
        `keras.layers.Dropout` applies it: each weight is zeroed with probability `dropout`, the
        others divided by 1 - `dropout`, and the row is not renormalised. The mask is drawn by
        `weight_noise` and passed to `attend` as `noise` (the decoder's input-feeding loop draws
        the masks of all steps before the loop). `attend` returns the weights before dropout.
      - `lr_scale` k (config `model.attention_lr_scale`): the score weights (W_a of general,
        W_a and v_a of concat, W_1, W_2 and v_a of bahdanau; not W_c, nor the normed gain g)
        are stored as V and used as W = k V, with V initialised to W_init / k. Neither the
        function of W nor the initial W (the same random draws) depends on k. The gradient on
        V is k times that on W, so an optimizer that normalises the gradient per entry (Adam,
        AdamW) moves W by up to k times its learning rate per update, and SGD k^2 times as far.
        Under `train.clip_norm` those gradients count k times in the global norm. The
        checkpoint stores V: a model must be loaded with the k it was trained with (its
        config.yaml records it). k = 1 is exactly the layer without it.

    Args:
        score: str. One of "dot", "general", "concat", "bahdanau".
        units: int or None. Width A of the additive scores (concat, bahdanau); defaults to the
            query width. Ignored by dot and general.
        scale: str. "none" (default), "sqrt" or "normed" (the last two for dot and general).
        dropout: float in [0, 1). Dropout rate on the attention weights in training.
        lr_scale: float > 0. k of the reparameterised score weights W = k V (not for dot).

    Call arguments:
        query: float `(B, D_q)` for one target step or `(B, T, D_q)` for all steps at once.
        memory: float `(B, S, D_m)`.
        memory_mask: bool `(B, S)`, True at real (non-padding) source positions; None for
            no mask.
        keys: tuple from `prepare(memory)`, or None to compute it here.
        training: bool. Apply `dropout` to the weights used for the context.
    Returns `(context, weights)`: `(B, D_m)` and `(B, S)` float32 for a rank-2 query,
    `(B, T, D_m)` and `(B, T, S)` float32 for a rank-3 query.
    """

    def __init__(
        self,
        score: str = "general",
        units: int | None = None,
        scale: str = "none",
        dropout: float = 0.0,
        lr_scale: float = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if score not in SCORES:
            raise ValueError(f"attention score must be one of {', '.join(SCORES)}, got {score!r}")
        if scale not in SCALES:
            raise ValueError(f"attention scale must be one of {', '.join(SCALES)}, got {scale!r}")
        if scale in ("sqrt", "normed") and score not in _MULTIPLICATIVE:
            raise ValueError(f"attention scale {scale!r} applies to dot and general, not {score!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"attention dropout must be in [0, 1), got {dropout!r}")
        if not (math.isfinite(lr_scale) and lr_scale > 0):
            raise ValueError(f"attention lr_scale must be a positive number, got {lr_scale!r}")
        if lr_scale != 1.0 and score == "dot":
            raise ValueError("attention lr_scale applies to learned scores; dot has no weights")
        self.score = score
        self.units = units
        self.scale = scale
        self.dropout = float(dropout)
        self.lr_scale = float(lr_scale)
        # Only a nonzero rate creates the seed state, so that models without attention dropout
        # keep their variables (and checkpoint layout) as before the key existed.
        self.seed_generator = keras.random.SeedGenerator() if dropout > 0 else None

    @property
    def score_scale(self) -> float:
        """The factor applied to dot/general scores: 1/sqrt(D_q) when scaled, else 1."""
        return self.query_dim**-0.5 if self.scale == "sqrt" else 1.0

    def build(self, query_shape, memory_shape):
        query_dim, memory_dim = int(query_shape[-1]), int(memory_shape[-1])
        self.query_dim, self.memory_dim = query_dim, memory_dim
        attention_dim = self.units or query_dim
        init = "glorot_uniform"
        if self.score == "dot" and query_dim != memory_dim:
            raise ValueError(
                f"dot attention needs query width == memory width, got {query_dim} and {memory_dim}"
            )
        if self.score == "general":
            self.memory_kernel = self._score_variable("memory_kernel", (memory_dim, query_dim))
        elif self.score == "concat":
            shape = (query_dim + memory_dim, attention_dim)
            self.score_kernel = self._score_variable("score_kernel", shape)
        elif self.score == "bahdanau":
            self.query_kernel = self._score_variable("query_kernel", (query_dim, attention_dim))
            self.memory_kernel = self._score_variable("memory_kernel", (memory_dim, attention_dim))
        if self.score in ("concat", "bahdanau"):
            self.score_vector = self._score_variable("score_vector", (attention_dim,))
        if self.scale == "normed":
            self.score_gain = self.add_weight(
                name="score_gain",
                shape=(),
                initializer=keras.initializers.Constant(query_dim**0.5),
            )
        self.output_kernel = self.add_weight(
            name="output_kernel", shape=(memory_dim + query_dim, query_dim), initializer=init
        )
        self.built = True

    def _score_variable(self, name, shape):
        """The variable V of a score weight W = k V, initialised to W_init / k (Glorot)."""
        return self.add_weight(
            name=name, shape=shape, initializer=_divided("glorot_uniform", self.lr_scale)
        )

    # === Precomputation ===

    def prepare(self, memory):
        """The memory-only part of the scores, once per sequence: a tuple of `(B, S, .)`.

        For dot and general the keys carry the score scale (see the class docstring); unscaled
        dot attention needs no keys and returns `()`.
        """
        dtype = memory.dtype
        scale = self.score_scale
        if self.scale == "normed":
            keys = memory
            if self.score == "general":
                kernel = self._score_weight(self.memory_kernel, dtype)  # (D_m, D_q)
                keys = ops.matmul(memory, kernel)  # (B, S, D_q)
            return (_unit(keys),)  # (B, S, D_q)
        if self.score == "dot":
            return () if scale == 1.0 else (memory * ops.cast(scale, dtype),)  # (B, S, D_m)
        if self.score == "general":
            kernel = self._score_weight(self.memory_kernel, dtype)  # (D_m, D_q)
            if scale != 1.0:
                kernel = kernel * ops.cast(scale, dtype)
        elif self.score == "concat":
            kernel = self._score_weight(self.score_kernel, dtype)[self.query_dim :]  # (D_m, A)
        else:
            kernel = self._score_weight(self.memory_kernel, dtype)  # (D_m, A)
        return (ops.matmul(memory, kernel),)  # (B, S, D_q or A)

    def parameters(self, dtype):
        """Query-side weights cast to `dtype`, read once before a decoding loop."""
        params = {"output_kernel": ops.cast(self.output_kernel, dtype)}
        if self.scale == "normed":
            params["score_gain"] = ops.cast(self.score_gain, dtype)
        if self.score == "concat":
            params["query_kernel"] = self._score_weight(self.score_kernel, dtype)[: self.query_dim]
        elif self.score == "bahdanau":
            params["query_kernel"] = self._score_weight(self.query_kernel, dtype)
        if self.score in ("concat", "bahdanau"):
            params["score_vector"] = self._score_weight(self.score_vector, dtype)
        return params

    def _score_weight(self, variable, dtype):
        """A score weight W = k V in `dtype` from its variable V (no multiply at k = 1)."""
        weight = ops.cast(variable, dtype)
        return weight if self.lr_scale == 1.0 else weight * ops.cast(self.lr_scale, dtype)

    def weight_noise(self, shape, training):
        """The attention-dropout mask for weights of `shape` ((B, [T,] S), or time-major for
        the decoder's loop): float32, 0 or 1 / (1 - rate); None at inference or rate 0."""
        if not training or self.seed_generator is None:
            return None
        ones = ops.ones(shape, "float32")
        return keras.random.dropout(ones, self.dropout, seed=self.seed_generator)

    # === Attention ===

    @property
    def multiplicative(self) -> bool:
        """Whether the score is one product of the query with a per-position key (dot, general)."""
        return self.score in _MULTIPLICATIVE

    def scores(self, query, memory, keys, params, products=None):
        """Unmasked scores: `(B, S)` for a `(B, D_q)` query, `(B, T, S)` for `(B, T, D_q)`.

        `products` (one step only): the decoder loop's `LoopMemory` step, which computes the
        multiplicative score's key product (see nmt/feeding_loop.py).
        """
        single = len(query.shape) == 2
        if self.score in _MULTIPLICATIVE:
            target = keys[0] if keys else memory  # (B, S, D_q)
            if self.scale == "normed":
                query = _unit(query) * params["score_gain"]  # (B, [T,] D_q)
            if products is not None:
                return products.score(target, query)  # (B, S)
            # Batched products as tf.matmul / tensordot, not einsum: inside the decoder's step
            # loop the einsum forms and their gradients took 1.5-1.8x as long on CPU, and the
            # bahdanau training step 5-10% more CPU time (BENCHMARKS.md section 7).
            if single:
                return tf.squeeze(tf.matmul(target, query[:, :, None]), -1)  # (B, S)
            return tf.matmul(query, target, transpose_b=True)  # (B, T, S)
        projected = ops.matmul(query, params["query_kernel"])  # (B, [T,] A)
        if single:
            hidden = ops.tanh(keys[0] + projected[:, None, :])  # (B, S, A)
        else:
            hidden = ops.tanh(keys[0][:, None, :, :] + projected[:, :, None, :])  # (B, T, S, A)
        return tf.tensordot(hidden, params["score_vector"], 1)  # (B, [T,] S): one matmul

    def attend(self, query, memory, mask, keys, params, noise=None, training=False, products=None):
        """Masked softmax and context; `(context, weights float32)` (see the class docstring).

        Attention dropout: `noise` (from `weight_noise`, the weights' shape) multiplies the
        weights that make the context; without it, `training` draws it here. The weights
        returned are those before dropout. `products`: see `scores` (it also computes the
        context product).
        """
        single = len(query.shape) == 2
        scores = self.scores(query, memory, keys, params, products)  # (B, [T,] S)
        scores = ops.cast(scores, "float32")
        if mask is not None:
            mask = mask if single else mask[:, None, :]  # (B, [1,] S)
            scores = ops.where(mask, scores, _MASKED_SCORE)
        weights = tf.nn.softmax(scores, axis=-1)  # (B, [T,] S)
        if noise is None:
            noise = self.weight_noise(ops.shape(weights), training)
        kept = weights if noise is None else weights * noise  # (B, [T,] S) attention dropout
        cast_weights = ops.cast(kept, memory.dtype)
        if products is not None:
            context = products.context(cast_weights, memory)  # (B, D_m)
        elif single:
            context = tf.squeeze(tf.matmul(cast_weights[:, None, :], memory), 1)  # (B, D_m)
        else:
            context = tf.matmul(cast_weights, memory)  # (B, T, D_m)
        return context, weights

    def attentional_hidden(self, context, query, params):
        """h~ = tanh([c; h] W_c): `(B, [T,] D_q)`."""
        joined = ops.concatenate([context, query], axis=-1)  # (B, [T,] D_m + D_q)
        return ops.tanh(ops.matmul(joined, params["output_kernel"]))  # (B, [T,] D_q)

    def call(self, query, memory, memory_mask=None, keys=None, training=False):
        if keys is None:
            keys = self.prepare(memory)
        params = self.parameters(query.dtype)
        return self.attend(query, memory, memory_mask, keys, params, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "score": self.score,
                "units": self.units,
                "scale": self.scale,
                "dropout": self.dropout,
                "lr_scale": self.lr_scale,
            }
        )
        return config


def _divided(initializer, k: float):
    """`initializer` divided by k (the initializer itself at k = 1). A new initializer each
    call, as `add_weight` makes one from a name, so the draws are those of k = 1."""
    if k == 1.0:
        return initializer
    base = keras.initializers.get(initializer)

    def init(shape, dtype=None):
        return base(shape, dtype=dtype) / k

    return init


def _unit(x):
    """x / ||x|| over the last axis (0 stays 0)."""
    norm = ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))
    return x / ops.maximum(norm, ops.cast(1e-6, x.dtype))


def attention_health(weights, memory_mask, target_mask, final: int = 2):
    """Sums that tell whether attention spreads over the source or has collapsed.

    Over the real target positions t of a batch (those with `target_mask`), with a_t the
    weights over the S_b real source positions of sentence b:

        entropy        H(a_t) = -sum_s a_t(s) log a_t(s)        (0: one position; log S_b: uniform)
        final mass     sum of a_t(s) over the last `final` real source positions
        uniform        log S_b, the entropy of a uniform spread, for scale

        peak           per sentence, the share of its attention (summed over its target
                       positions) held by its most-attended source position: max_s mean_t a_t(s)
                       (1/S_b for a uniform spread, also about 1/S_b for a diagonal alignment,
                       1 when every target word looks at one position)

    A collapsed attention (every target word looking at the final "." and EOS) has an entropy
    near 0 and a final mass near 1. Attention can also collapse onto another position that
    carries a summary of the sentence (with `memory_dropout`, Luong `general` attention
    collapses onto the first source position, where the backward LSTM ends): the final mass
    misses that, the peak share does not.

    Args:
        weights: float32 `(B, T, S)`.
        memory_mask: bool `(B, S)`, True at real source positions (a prefix of each row).
        target_mask: bool `(B, T)`, True at real target positions.
    Returns float32 scalars `(entropy_sum, final_mass_sum, uniform_entropy_sum, peak_sum,
    count)`; each sum is over target positions (the peak share of a sentence counts once per
    target position), so sum / count is a mean per target word.
    """
    weights = ops.cast(weights, "float32")  # (B, T, S)
    logs = ops.log(ops.maximum(weights, 1e-30))  # (B, T, S)
    entropy = -ops.sum(ops.where(weights > 0, weights * logs, 0.0), axis=-1)  # (B, T)
    lengths = ops.sum(ops.cast(memory_mask, "int32"), axis=-1)  # (B,)
    positions = ops.arange(ops.shape(memory_mask)[1], dtype="int32")  # (S,)
    is_final = ops.logical_and(
        memory_mask, positions[None, :] >= (lengths - final)[:, None]
    )  # (B, S)
    final_mass = ops.sum(weights * ops.cast(is_final, "float32")[:, None, :], axis=-1)  # (B, T)
    uniform = ops.log(ops.cast(ops.maximum(lengths, 1), "float32"))  # (B,)
    real = ops.cast(target_mask, "float32")  # (B, T)
    received = ops.sum(weights * real[:, :, None], axis=1)  # (B, S) attention each position got
    peak = ops.max(received, axis=-1)  # (B,) = peak share x target length
    return (
        ops.sum(entropy * real),
        ops.sum(final_mass * real),
        ops.sum(uniform[:, None] * real),
        ops.sum(peak),
        ops.sum(real),
    )


def coverage_penalty(weights, memory_mask, target_mask):
    """The doubly stochastic attention penalty (Xu et al., 2015, eq. 14), summed over a batch.

    Each target word spends one unit of attention, so a sentence of T_b target words hands out
    T_b units over its S_b source positions. The penalty asks every real source position to
    receive its even share of them:

        penalty = sum_b sum_{s real} (sum_{t real} a_t(s) - T_b / S_b)^2

    It is 0 when every position gets T_b / S_b (a uniform spread, and about so for a
    one-to-one alignment) and about T_b^2 when every target word looks at one position, the
    collapse of Luong `general` attention onto "." and EOS (BENCHMARKS.md, section 6). Used as a
    training loss term (`train.coverage_loss` times this, divided by the target tokens), it
    acts on the collapse itself, whichever position carries the sentence summary.

    Args:
        weights: `(B, T, S)` attention weights.
        memory_mask: bool `(B, S)`, True at real source positions.
        target_mask: bool `(B, T)`, True at real target positions.
    Returns a float32 scalar.
    """
    weights = ops.cast(weights, "float32")  # (B, T, S)
    real_target = ops.cast(target_mask, "float32")  # (B, T)
    real_source = ops.cast(memory_mask, "float32")  # (B, S)
    received = ops.sum(weights * real_target[:, :, None], axis=1)  # (B, S)
    share = ops.sum(real_target, axis=-1) / ops.maximum(ops.sum(real_source, axis=-1), 1.0)  # (B,)
    gap = (received - share[:, None]) * real_source  # (B, S)
    return ops.sum(gap * gap)
