"""The Seq2Seq model (attentional LSTM encoder-decoder) and its masked, smoothed loss."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf
from keras import ops

from nmt.config import (
    DROPOUT_KEYS,
    ModelConfig,
    attention_lr_scale_error,
    attention_scale_error,
    rate_error,
)
from nmt.constants import EOS_ID, PAD_ID
from nmt.decoder import BRIDGES, Decoder
from nmt.encoder import MERGES, Encoder
from nmt.errors import ConfigError
from nmt.layers.attention import SCALES, SCORES

# The constructor arguments handed on under the same name: to both sides, the encoder, the
# decoder. (encoder_layers and decoder_layers are their num_layers.)
_SHARED_SETTINGS = (
    "embedding_dim", "units", "dropout", "residual", "embedding_dropout", "hidden_dropout",
)  # fmt: skip
_ENCODER_SETTINGS = ("bidirectional", "bidirectional_merge", "memory_dropout")
_DECODER_SETTINGS = (
    "attention", "attention_scale", "output_dropout", "word_dropout", "attention_dropout",
    "attention_lr_scale", "input_feeding", "bridge", "tie_output_embeddings",
)  # fmt: skip


@keras.saving.register_keras_serializable(package="nmt")
class Seq2Seq(keras.Model):
    """Attentional LSTM encoder-decoder (Luong et al., 2015).

        memory, mask, (h^l, c^l)_l = Encoder(x)                  (see `Encoder`)
        state_0                    = bridge((h^l, c^l)_l), h~_0 = 0
        logits_t                   = Decoder(y_<t, memory, mask, state_0)   (see `Decoder`)

    Constructor arguments after the vocabulary sizes are the fields of `nmt.config.ModelConfig`,
    with the same names and defaults.

    Args:
        source_vocab_size: int.
        target_vocab_size: int.
        embedding_dim: int. Width of source and target embeddings.
        units: int. LSTM width of the decoder and the output width of every encoder layer.
        encoder_layers: int.
        decoder_layers: int.
        bidirectional: bool. Bidirectional encoder layers.
        bidirectional_merge: str. "concat" (units // 2 per direction) or "sum" (units each).
        attention: str. "dot", "general", "concat" or "bahdanau".
        attention_scale: str. "none", "sqrt" or "normed" (see
            `nmt.layers.attention.Attention`).
        attention_dropout: float. Dropout on the attention weights in training.
        attention_lr_scale: float. k of the score weights W = k V: k times Adam's step on W
            (see `Attention`).
        input_feeding: bool. Feed h~_{t-1} into the decoder's first layer.
        dropout: float. Base dropout rate (embeddings, between layers, h~).
        embedding_dropout, hidden_dropout, output_dropout: float or None. Per-site rates
            (None: `dropout`); memory_dropout: float, on the encoder output attention reads;
            word_dropout: float, whole target input words (see `Decoder`, `Encoder`).
        residual: bool. Residual connections from the second layer on.
        bridge: str. "copy", "dense" (both need encoder_layers == decoder_layers) or "none".
        tie_output_embeddings: bool. Output projection uses the target embedding matrix
            (needs embedding_dim == units).
        share_embeddings: bool. One embedding matrix for source and target (needs equal
            vocabulary sizes, i.e. a joint vocabulary).

    Call arguments:
        inputs: `(source_ids (B, S), target_in_ids (B, T))`, int, padded with PAD_ID.
        training: bool.
        return_attention: bool. Also return the attention weights `(B, T, S)` float32.
        positions: bool `(B, T)` or None. Logits only where it is True (training passes the
            non-pad target positions: the output layer and the loss skip the padding).
    Returns float32 logits `(B, T, V_target)`, or `(N, V_target)` for the N True `positions`
    in row-major order (with `return_attention`, `(logits, weights)`).

    Decoding API (for `nmt.search`): `encode`, `prepare_memory`, `step`.
    """

    def __init__(
        self,
        source_vocab_size: int,
        target_vocab_size: int,
        embedding_dim: int = 512,
        units: int = 512,
        encoder_layers: int = 2,
        decoder_layers: int = 2,
        bidirectional: bool = False,
        bidirectional_merge: str = "concat",
        attention: str = "bahdanau",
        input_feeding: bool = True,
        dropout: float = 0.3,
        residual: bool = True,
        bridge: str = "copy",
        tie_output_embeddings: bool = False,
        share_embeddings: bool = False,
        attention_scale: str = "none",
        embedding_dropout: float | None = None,
        hidden_dropout: float | None = None,
        output_dropout: float | None = None,
        memory_dropout: float = 0.0,
        word_dropout: float = 0.0,
        attention_dropout: float = 0.0,
        attention_lr_scale: float = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # === Config ===
        self.source_vocab_size = source_vocab_size
        self.target_vocab_size = target_vocab_size
        self.embedding_dim = embedding_dim
        self.units = units
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.bidirectional = bidirectional
        self.bidirectional_merge = bidirectional_merge
        self.attention = attention
        self.attention_scale = attention_scale
        self.embedding_dropout = embedding_dropout
        self.hidden_dropout = hidden_dropout
        self.output_dropout = output_dropout
        self.memory_dropout = memory_dropout
        self.word_dropout = word_dropout
        self.attention_dropout = attention_dropout
        self.attention_lr_scale = attention_lr_scale
        self.input_feeding = input_feeding
        self.dropout = dropout
        self.residual = residual
        self.bridge = bridge
        self.tie_output_embeddings = tie_output_embeddings
        self.share_embeddings = share_embeddings
        self._validate()
        self._make_layers()

    def _make_layers(self) -> None:
        """The encoder and the decoder (and the embedding they share, if shared)."""
        shared = None
        if self.share_embeddings:
            shared = keras.layers.Embedding(
                self.source_vocab_size,
                self.embedding_dim,
                dtype=self.dtype_policy,
                name="shared_embedding",
            )
        common = {key: getattr(self, key) for key in _SHARED_SETTINGS}
        common.update(embedding=shared, dtype=self.dtype_policy)
        self.encoder = Encoder(
            self.source_vocab_size,
            num_layers=self.encoder_layers,
            name="encoder",
            **common,
            **{key: getattr(self, key) for key in _ENCODER_SETTINGS},
        )
        self.decoder = Decoder(
            self.target_vocab_size,
            num_layers=self.decoder_layers,
            name="decoder",
            **common,
            **{key: getattr(self, key) for key in _DECODER_SETTINGS},
        )

    def _validate(self) -> None:
        """Raise ConfigError, naming the `model.` key, for values the layers cannot take."""
        for key in ("embedding_dim", "units", "encoder_layers", "decoder_layers"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"model.{key} must be a positive integer, got {value!r}")
        for key in ("source_vocab_size", "target_vocab_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= EOS_ID:
                raise ConfigError(
                    f"{key} must be an integer > {EOS_ID} (the special ids), got {value!r}"
                )
        choices = {
            "attention": SCORES,
            "attention_scale": SCALES,
            "bridge": BRIDGES,
            "bidirectional_merge": MERGES,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(
                    f"model.{key}: {getattr(self, key)!r} is not one of: {', '.join(allowed)}"
                )
        problem = attention_scale_error(
            self.attention, self.attention_scale, name_attention=False
        ) or attention_lr_scale_error(self.attention, self.attention_lr_scale)
        for key in DROPOUT_KEYS:
            problem = problem or rate_error(key, getattr(self, key.split(".")[1]))
        if problem:
            raise ConfigError(problem)
        if self.bidirectional and self.bidirectional_merge == "concat" and self.units % 2:
            raise ConfigError(
                f"model.units must be even for a bidirectional concat encoder, got {self.units}"
            )
        if self.bridge != "none" and self.encoder_layers != self.decoder_layers:
            raise ConfigError(
                f"model.bridge {self.bridge!r} needs model.encoder_layers == "
                f"model.decoder_layers (got {self.encoder_layers} and {self.decoder_layers}); "
                "use model.bridge: none for different depths"
            )
        if self.tie_output_embeddings and self.embedding_dim != self.units:
            raise ConfigError(
                "model.tie_output_embeddings needs model.embedding_dim == model.units "
                f"(got {self.embedding_dim} and {self.units})"
            )
        if self.share_embeddings and self.source_vocab_size != self.target_vocab_size:
            raise ConfigError(
                "model.share_embeddings needs one vocabulary for both sides (vocab.joint: true); "
                f"got source size {self.source_vocab_size} and target size "
                f"{self.target_vocab_size}"
            )

    @classmethod
    def from_model_config(
        cls, model_config: ModelConfig, source_vocab_size: int, target_vocab_size: int, **kwargs
    ) -> Seq2Seq:
        """A built model (weights exist) from a `ModelConfig` and the vocabulary sizes."""
        model = cls(
            source_vocab_size,
            target_vocab_size,
            **dataclasses.asdict(model_config),
            **kwargs,
        )
        model.build()
        return model

    def build(self, input_shape=None):
        self.encoder.build()
        self.decoder.build()
        self.built = True

    # === Training ===

    def call(self, inputs, training=False, return_attention=False, positions=None):
        source_ids, target_in_ids = inputs
        memory, memory_mask, state = self.encode(source_ids, training=training)
        return self.decoder(
            target_in_ids,
            memory,
            memory_mask,
            state,
            training=training,
            return_attention=return_attention,
            positions=positions,
        )

    # === Decoding ===

    def encode(self, source_ids, training=False):
        """`(memory (B, S, units), memory_mask bool (B, S), initial_state)`.

        `initial_state` is the decoder state nest `(layer_states, h_tilde)`: a tuple with one
        `(h, c)` per decoder layer and the input-feeding vector h~ (zeros), each `(B, units)`.
        """
        memory, memory_mask, final_states = self.encoder(source_ids, training=training)
        return memory, memory_mask, self.decoder.initial_state(final_states)

    def prepare_memory(self, memory, memory_mask):
        """Memory, mask and precomputed attention keys: a tuple of tensors with leading dim B."""
        return self.decoder.prepare_memory(memory, memory_mask)

    def step(self, ids, state, memory_bundle, training=False, output=None):
        """`(logits float32 (N, V), new_state, attention float32 (N, S))` for tokens `ids (N,)`;
        logits (N, K) over a shortlist when `output` is `output_subset(shortlist ids)`."""
        return self.decoder.step(ids, state, memory_bundle, training=training, output=output)

    def output_subset(self, ids):
        """The output layer's columns for vocabulary ids (K,): see `OutputProjection.subset`."""
        return self.decoder.output_projection.subset(ids)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "source_vocab_size": self.source_vocab_size,
                "target_vocab_size": self.target_vocab_size,
                **{f.name: getattr(self, f.name) for f in dataclasses.fields(ModelConfig)},
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def sequence_loss(labels, logits, label_smoothing: float = 0.0):
    """Masked, label-smoothed cross-entropy: `(loss_sum float32 (), token_count float32 ())`.

    With eps = label_smoothing and p = softmax(logits) over V classes, the target distribution
    is q = (1 - eps) one_hot(y) + eps / V (as in `keras.losses.CategoricalCrossentropy`), so

        loss_t = -sum_v q_v log p_v = (1 - eps) * (-log p_y) + eps * mean_v(-log p_v)

    summed over positions whose label is not PAD_ID, in float32 (see `_smoothed_xent` for how
    it is computed). `labels` (...) and `logits` (..., V) may have any leading shape (e.g.
    (B, T), or (N,) for the non-pad positions only). `label_smoothing` may be a Python float or
    a float32 scalar tensor. Divide loss_sum by token_count for the mean per-token loss.
    """
    logits = ops.cast(logits, "float32")  # (..., V)
    labels = ops.cast(labels, "int32")  # (...)
    mask = ops.not_equal(labels, PAD_ID)  # (...)
    classes = tf.shape(logits)[-1]
    flat = tf.reshape(logits, [-1, classes])  # (N, V)
    eps = tf.convert_to_tensor(label_smoothing, tf.float32)  # a tensor, not a variable
    loss = _smoothed_xent(flat, tf.reshape(labels, [-1]), eps)  # (N,)
    loss_sum = tf.reduce_sum(tf.where(tf.reshape(mask, [-1]), loss, 0.0))
    token_count = tf.reduce_sum(tf.cast(mask, "float32"))
    return loss_sum, token_count


def _smoothed_xent(logits, labels, eps):
    """Per-row -sum_v q_v log softmax(logits)_v for float32 logits (N, V), labels (N,).

    Forward, with m = max_v x_v, z = x - m and s = sum_v exp(z_v):

        loss = log s - (1 - eps) z_y - eps * mean_v z_v

    (on the shifted logits z, so that a confident prediction's small loss keeps its digits);
    backward dloss * (exp(z) / s - q), the exp kept from the forward pass and the
    (1 - eps) one-hot part subtracted by a scatter: a few multithreaded elementwise passes,
    measured 1.7x faster forward and backward on CPU than TensorFlow's fused
    softmax_cross_entropy_with_logits against a dense q (which runs single passes but more
    slowly), and equal to it to float32 rounding (BENCHMARKS.md section 7).
    """
    classes = tf.shape(logits)[-1]
    rows = tf.shape(logits)[0]
    off = eps / tf.cast(classes, tf.float32)  # eps / V

    @tf.custom_gradient
    def xent(x):
        shifted = x - tf.reduce_max(x, axis=-1, keepdims=True)  # (N, V) z = x - m
        exps = tf.exp(shifted)  # (N, V)
        total = tf.reduce_sum(exps, axis=-1)  # (N,)
        picked = tf.gather(shifted, labels[:, None], batch_dims=1)[:, 0]  # (N,) z_y
        mean = tf.reduce_mean(shifted, axis=-1)  # (N,)
        loss = tf.math.log(total) - (1.0 - eps) * picked - eps * mean  # (N,)

        def grad(d_loss):
            scale = (d_loss / total)[:, None]  # (N, 1)
            d_x = exps * scale - (d_loss * off)[:, None]  # (N, V) dloss (p - eps / V)
            at = tf.stack([tf.range(rows), labels], axis=1)  # (N, 2)
            return tf.tensor_scatter_nd_sub(d_x, at, d_loss * (1.0 - eps))  # - (1 - eps) onehot

        return loss, grad

    return xent(logits)
