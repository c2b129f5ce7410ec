"""The attentional LSTM decoder: teacher forcing over a whole target and one step at a time."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from nmt.feeding_loop import FeedingLoop, state_dtype
from nmt.layers.attention import SCORES, Attention
from nmt.layers.dropout import extra_dropouts, resolve_rate
from nmt.layers.lstm import LSTM

BRIDGES = ("copy", "dense", "none")


@keras.saving.register_keras_serializable(package="nmt")
class OutputProjection(keras.layers.Layer):
    """Logits over the target vocabulary: the product in the compute dtype, logits in float32.

        logits = float32(h~ W_o) + b_o   W_o: (units, V), or W_o = E^T when tied to the
                                          target embeddings E: (V, units)

    Under a mixed policy the kernel is stored in float32 and read in the compute dtype, so the
    (N, units) x (units, V) product, the largest in the model, runs on the machine's 16-bit
    units (bfloat16 on CPUs with AMX/AVX512-BF16, float16 on GPUs); its result is cast to
    float32 before the bias, so the softmax and the loss over the logits are float32, as the
    Keras mixed-precision guide prescribes for a model's last layer. Under float32 nothing is
    cast.

    Args:
        vocab_size: int. V.
        tied_embedding: optional `keras.layers.Embedding` whose matrix is used as W_o^T
            (its width must equal the input width). Not serialized: the owner re-ties it.

    Call arguments:
        inputs: float `(..., units)`.
    Returns float32 logits `(..., V)`.

    A vocabulary shortlist (nmt/shortlist.py) scores only the ids `s` (K,): `subset(s)`
    gathers W_s = W_o[:, s] and b_s = b_o[s] once per batch, and `project(h~, (W_s, b_s))`
    gives logits_s = float32(h~ W_s) + b_s, (N, K), an (N, units) x (units, K) product.
    """

    def __init__(self, vocab_size: int, tied_embedding=None, **kwargs):
        kwargs.pop("autocast", None)
        super().__init__(autocast=False, **kwargs)
        self.vocab_size = vocab_size
        self.tied_embedding = tied_embedding

    def build(self, input_shape):
        width = int(input_shape[-1])
        if self.tied_embedding is None:
            self.kernel = self.add_weight(
                name="kernel", shape=(width, self.vocab_size), initializer="glorot_uniform"
            )
        elif self.tied_embedding.output_dim != width:
            raise ValueError(
                f"tied output embeddings need embedding width ({self.tied_embedding.output_dim}) "
                f"== decoder units ({width})"
            )
        self.bias = self.add_weight(name="bias", shape=(self.vocab_size,), initializer="zeros")
        self.built = True

    def call(self, inputs):
        dtype = self.compute_dtype
        inputs = ops.cast(inputs, dtype)
        flat = tf.reshape(inputs, [-1, tf.shape(inputs)[-1]])  # (N, units)
        if self.tied_embedding is None:
            logits = tf.matmul(flat, ops.cast(self.kernel, dtype))  # (N, V)
        else:
            embeddings = ops.cast(self.tied_embedding.embeddings, dtype)  # (V, units)
            logits = tf.matmul(flat, embeddings, transpose_b=True)  # (N, V)
        logits = ops.cast(logits, "float32") + ops.cast(self.bias, "float32")
        return tf.reshape(logits, tf.concat([tf.shape(inputs)[:-1], [self.vocab_size]], 0))

    def subset(self, ids):
        """`(W_o[:, ids] (units, K) in the compute dtype, b_o[ids] float32 (K,))` for int `ids`."""
        if self.tied_embedding is None:
            kernel = tf.gather(self.kernel, ids, axis=1)  # (units, K)
        else:
            kernel = tf.transpose(tf.gather(self.tied_embedding.embeddings, ids))  # (units, K)
        bias = tf.gather(self.bias, ids)  # (K,)
        return ops.cast(kernel, self.compute_dtype), ops.cast(bias, "float32")

    def project(self, inputs, subset):
        """Logits over a shortlist: inputs float (N, units), `subset()`'s pair -> float32 (N, K)."""
        kernel, bias = subset
        logits = tf.matmul(ops.cast(inputs, kernel.dtype), kernel)  # (N, K)
        return ops.cast(logits, "float32") + bias

    def get_config(self):
        config = super().get_config()
        config.update({"vocab_size": self.vocab_size})
        return config


def _check_arguments(attention, bridge, tie_output_embeddings, embedding_dim, units):
    if attention not in SCORES:
        raise ValueError(f"attention must be one of {', '.join(SCORES)}, got {attention!r}")
    if bridge not in BRIDGES:
        raise ValueError(f"bridge must be one of {', '.join(BRIDGES)}, got {bridge!r}")
    if tie_output_embeddings and embedding_dim != units:
        raise ValueError(
            f"tie_output_embeddings needs embedding_dim == units, got {embedding_dim} and {units}"
        )


@keras.saving.register_keras_serializable(package="nmt")
class Decoder(keras.layers.Layer):
    """Attentional LSTM decoder (Luong et al., 2015) with input feeding and a bridge.

    At target step t, with y_t the previous target token (BOS first):

        (0) e_t    = dropout_emb(word_drop(E y_t))   word_drop zeroes whole words
        (1) in_1   = [e_t; h~_{t-1}]   with input feeding (h~_0 = 0), e_t without
        (2) h^l_t  = LSTM_l(in_l, state^l_{t-1})
        (3) out_l  = h^l_t + in_l  if residual and l >= 2, else h^l_t
        (4) in_l+1 = dropout_hidden(out_l)
        (5) c_t, a_t = Attention(query = out_L, memory)             (see `Attention`)
        (6) h~_t   = dropout_out(tanh([c_t; out_L] W_c))           (Luong eq. 5)
        (7) logits = h~_t W_o + b_o   float32 logits                (see `OutputProjection`)

    Initial states (the bridge from the encoder's final per-layer (h, c)):
        copy:  decoder layer l starts from encoder layer l's (h, c) (needs equal layer counts;
               the encoder has already merged the two directions of a bidirectional layer);
        dense: state = Dense(encoder state), one learned Dense for each h and c of each layer;
        none:  zeros.

    `call()` (teacher forcing) and `step()` (one token) use the same weights and give the same
    logits. `call()` is arranged for speed:
      - with input feeding the recurrence is sequential, so the embedding part of the first
        layer's input projection (E y_t W_1[:emb] + b_1, all t) is one matmul before a
        `tf.while_loop`; in the loop each layer does one matmul of [input; h] with the
        stacked [W; U]; dropout masks for the loop are drawn before it; the loop's matmuls
        have a hand-made backward pass (plain-matmul input gradients, weight gradients as one
        matmul after the loop; see `LoopMatmul`), about 30% faster than autodiff on CPU;
        the attention's memory-side gradients are batched matmuls after the loop
        (`LoopMemory` in nmt/feeding_loop.py);
      - without input feeding every layer runs as a whole-sequence LSTM call and attention is
        one batched contraction for all steps;
      - either way the vocabulary projection is one (B*T, units) x (units, V) matmul;
      - `loop_jit = True` (config `train.decoder_loop_jit`) XLA-compiles each step of the
        input-feeding loop (forward and backward): on a GPU that fuses the many small kernels
        of a step (the loop cannot be one cuDNN call: attention feeds each step's input). The
        whole loop cannot be one XLA function: its gradient would pass TensorLists across the
        XLA boundary, which TensorFlow does not support.

    Args:
        vocab_size: int. Target vocabulary size V.
        embedding_dim: int. Width of the target embeddings.
        units: int. Width of every LSTM layer, of h~ and of the encoder memory.
        num_layers: int. Number of LSTM layers.
        attention: str. Attention score: "dot", "general", "concat" or "bahdanau".
        attention_scale: str. "none", "sqrt" or "normed" (see `Attention`).
        attention_dropout, attention_lr_scale: float. `Attention`'s `dropout` and `lr_scale`.
        embedding_dropout, hidden_dropout, output_dropout: float or None. Rates on the target
            embeddings, between layers and on h~ (None: `dropout`).
        word_dropout: float. Probability of zeroing a whole target input word's embedding.
        input_feeding: bool. Feed h~_{t-1} to the first layer.
        dropout: float. Base dropout rate: on the embeddings, between layers and on h~ unless
            the per-site rates below say otherwise.
        residual: bool. Residual connections from the second layer on.
        bridge: str. "copy", "dense" or "none".
        tie_output_embeddings: bool. Use the target embedding matrix as W_o^T (needs
            embedding_dim == units).
        embedding: optional `keras.layers.Embedding` to use (shared with the encoder).
            Not serialized as shared: `from_config` creates a new one.

    Call arguments:
        target_ids: int `(B, T)`, the decoder inputs [BOS, y_1, ..., y_{T-1}].
        memory: float `(B, S, units)`, the encoder output.
        memory_mask: bool `(B, S)`, True at real source tokens.
        initial_state: the state nest from `initial_state()`.
        training: bool.
        return_attention: bool. Also return the attention weights.
        positions: bool `(B, T)` or None. Project only these positions (see `Seq2Seq`).
    Returns float32 logits `(B, T, V)` (`(N, V)` with `positions`), or `(logits, attention
    float32 (B, T, S))` with `return_attention`.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 512,
        units: int = 512,
        num_layers: int = 2,
        attention: str = "general",
        input_feeding: bool = True,
        dropout: float = 0.0,
        residual: bool = True,
        bridge: str = "copy",
        tie_output_embeddings: bool = False,
        embedding: keras.layers.Embedding | None = None,
        attention_scale: str = "none",
        embedding_dropout: float | None = None,
        hidden_dropout: float | None = None,
        output_dropout: float | None = None,
        word_dropout: float = 0.0,
        attention_dropout: float = 0.0,
        attention_lr_scale: float = 1.0,
        **kwargs,
    ):
        # No automatic input casting: under 16-bit policies the cell states c of
        # `initial_state` are float32 (see nmt.layers.lstm) and must stay so. Every tensor and
        # weight is cast explicitly below.
        kwargs.pop("autocast", None)
        super().__init__(autocast=False, **kwargs)
        _check_arguments(attention, bridge, tie_output_embeddings, embedding_dim, units)
        # === Config ===
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.units = units
        self.num_layers = num_layers
        self.attention = attention
        self.attention_scale = attention_scale
        self.embedding_dropout = embedding_dropout
        self.hidden_dropout = hidden_dropout
        self.output_dropout = output_dropout
        self.word_dropout = word_dropout
        self.attention_dropout = attention_dropout
        self.attention_lr_scale = attention_lr_scale
        self.input_feeding = input_feeding
        self.dropout = dropout
        self.residual = residual
        self.bridge = bridge
        self.tie_output_embeddings = tie_output_embeddings
        # Runtime switch, not config (set from `train.decoder_loop_jit`): XLA-compile each
        # step of the input-feeding loop of `call()`.
        self.loop_jit = False
        self._make_layers(embedding)

    def _make_layers(self, embedding):
        """The sublayers and seed generators, in the order of the checkpoint layout."""
        policy, units, rates = self.dtype_policy, self.units, self._rates()
        if embedding is None:
            embedding = keras.layers.Embedding(
                self.vocab_size, self.embedding_dim, dtype=policy, name="embedding"
            )
        self.embedding = embedding
        self.dropout_layer = keras.layers.Dropout(rates["embedding"], dtype=policy)
        # Draws the input-feeding loop's masks (h~ and between layers) all at once.
        loop_noise = rates["output"] > 0 or rates["hidden"] > 0
        self.seed_generator = keras.random.SeedGenerator() if loop_noise else None
        self.word_seed = keras.random.SeedGenerator() if self.word_dropout > 0 else None
        self.rnn_layers = [
            LSTM(units, return_sequences=True, dtype=policy, name=f"lstm_{i}")
            for i in range(self.num_layers)
        ]
        self.attention_layer = Attention(
            self.attention,
            scale=self.attention_scale,
            dropout=self.attention_dropout,
            lr_scale=self.attention_lr_scale,
            dtype=policy,
            name="attention",
        )
        self.bridge_layers = [
            keras.layers.Dense(units, dtype=policy, name=f"bridge_{part}{i}")
            for i in range(self.num_layers if self.bridge == "dense" else 0)
            for part in ("h", "c")
        ]
        self.output_projection = OutputProjection(
            self.vocab_size,
            tied_embedding=embedding if self.tie_output_embeddings else None,
            dtype=policy,
            name="output_projection",
        )
        self.site_dropouts = extra_dropouts(rates["embedding"], rates, policy)

    def _rates(self) -> dict[str, float]:
        return {
            "embedding": resolve_rate(self.embedding_dropout, self.dropout),
            "hidden": resolve_rate(self.hidden_dropout, self.dropout),
            "output": resolve_rate(self.output_dropout, self.dropout),
        }

    def _drop(self, site, x, training):
        """Dropout at `site` with its own rate (the base-rate layer when they agree)."""
        if not self._rates()[site]:
            return x
        return self.site_dropouts.get(site, self.dropout_layer)(x, training=training)

    def _embed(self, ids, training):
        """e = dropout_emb(word_drop(E y)): `(..., E)` for ids `(...)`."""
        embedded = self.embedding(ids)  # (..., E)
        if training and self.word_dropout > 0:
            shape = (*ops.shape(embedded)[:-1], 1)  # one draw per word
            embedded = keras.random.dropout(
                embedded, self.word_dropout, noise_shape=shape, seed=self.word_seed
            )
        return self._drop("embedding", embedded, training)

    def build(self, input_shape=None):
        if not self.embedding.built:
            self.embedding.build((None, None))
        width = self.embedding_dim + (self.units if self.input_feeding else 0)
        for layer in self.rnn_layers:
            layer.build((None, None, width))
            width = self.units
        self.attention_layer.build((None, self.units), (None, None, self.units))
        for layer in self.bridge_layers:
            layer.build((None, self.units))
        self.output_projection.build((None, self.units))
        self.built = True

    # === Encoder interface ===

    def initial_state(self, encoder_states):
        """The decoder state nest from the encoder's final per-layer `(h, c)`.

        Returns `(layer_states, h_tilde)`: a tuple of one `(h, c)` per decoder layer and the
        input-feeding vector h~_0 = 0, every tensor `(B, units)`. h and h~ are in the compute
        dtype, c in the cell's state dtype (float32 under 16-bit policies).
        """
        if self.bridge == "none":
            zeros = ops.zeros_like(encoder_states[0][0])  # (B, units)
            layer_states = tuple((zeros, zeros) for _ in range(self.num_layers))
        else:
            if len(encoder_states) != self.num_layers:
                raise ValueError(
                    f"bridge {self.bridge!r} needs as many encoder layers as decoder layers, "
                    f"got {len(encoder_states)} and {self.num_layers}"
                )
            if self.bridge == "copy":
                layer_states = tuple((h, c) for h, c in encoder_states)
            else:
                layer_states = tuple(
                    (self.bridge_layers[2 * i](h), self.bridge_layers[2 * i + 1](c))
                    for i, (h, c) in enumerate(encoder_states)
                )
        layer_states = tuple(
            (ops.cast(h, self.compute_dtype), ops.cast(c, state_dtype(layer.cell)))
            for (h, c), layer in zip(layer_states, self.rnn_layers, strict=True)
        )
        return layer_states, ops.zeros_like(layer_states[-1][0])

    def prepare_memory(self, memory, memory_mask):
        """`(memory, memory_mask, *keys)`: everything attention needs, leading dim B."""
        memory = ops.cast(memory, self.compute_dtype)
        return (memory, memory_mask, *self.attention_layer.prepare(memory))

    # === Teacher forcing ===

    def call(
        self,
        target_ids,
        memory,
        memory_mask,
        initial_state,
        training=False,
        return_attention=False,
        positions=None,
    ):
        memory, memory_mask, *keys = self.prepare_memory(memory, memory_mask)
        embedded = self._embed(target_ids, training)  # (B, T, E)
        run = self._feeding_loop if self.input_feeding else self._whole_sequence
        h_tilde, attention = run(
            embedded, memory, memory_mask, tuple(keys), initial_state, training, return_attention
        )
        if positions is not None:  # only the positions asked for (training: no padding)
            h_tilde = tf.boolean_mask(h_tilde, positions)  # (N, units)
        logits = self.output_projection(h_tilde)  # (B, T, V) or (N, V) float32
        return (logits, attention) if return_attention else logits

    def _whole_sequence(
        self, embedded, memory, memory_mask, keys, initial_state, training, return_attention
    ):
        """Without input feeding: whole-sequence LSTM layers, then batched attention.

        Returns `(h~ (B, T, units), attention float32 (B, T, S))`.
        """
        layer_states, _ = initial_state
        outputs = embedded  # (B, T, E)
        for i, layer in enumerate(self.rnn_layers):
            if i > 0:
                outputs = self._drop("hidden", outputs, training)  # (B, T, units)
            inputs = outputs
            h, c = layer_states[i]
            outputs = layer(inputs, initial_state=[h, c], training=training)  # (B, T, units)
            if self._residual_at(i, inputs):
                outputs = outputs + inputs
        params = self.attention_layer.parameters(self.compute_dtype)
        context, weights = self.attention_layer.attend(
            outputs, memory, memory_mask, keys, params, training=training
        )
        h_tilde = self.attention_layer.attentional_hidden(context, outputs, params)  # (B, T, u)
        return self._drop("output", h_tilde, training), weights

    def _feeding_loop(
        self, embedded, memory, memory_mask, keys, initial_state, training, return_attention
    ):
        """With input feeding: `FeedingLoop`, one tf.while_loop over t (`loop_jit`: XLA steps).

        Returns `(h~ (B, T, units), attention float32 (B, T, S) or None)`; the attention
        weights are kept only when `return_attention` is set.
        """
        noise = weights = None  # the loop's dropout masks, drawn outside it (and outside XLA)
        if bool(training) and self.seed_generator is not None:
            steps, batch = tf.shape(embedded)[1], tf.shape(embedded)[0]
            noise = self._loop_masks(steps, batch, self.compute_dtype)  # (T, L, B, units)
        if bool(training) and self.attention_dropout > 0:  # attention dropout, float32 (T, B, S)
            shape = (tf.shape(embedded)[1], tf.shape(memory)[0], tf.shape(memory)[1])
            weights = self.attention_layer.weight_noise(shape, True)
        cells = [layer.cell for layer in self.rnn_layers]
        loop = FeedingLoop(
            cells, self.attention_layer, self._residual_at, self.compute_dtype, self.loop_jit
        )
        bundle = (memory, memory_mask, keys)
        return loop.run(embedded, bundle, initial_state, (noise, weights), return_attention)

    def _loop_masks(self, steps, batch, dtype):
        """Dropout masks for h~ (index 0) and the inputs of layers 2..L (index l), all steps:
        `(T, L, B, units)`, scaled by 1 / (1 - rate). One draw when the two rates agree."""
        rates, num_layers, units = self._rates(), self.num_layers, self.units

        def masks(rate, count):
            ones = ops.ones([steps, count, batch, units], dtype)
            return keras.random.dropout(ones, rate, seed=self.seed_generator) if rate else ones

        if rates["output"] == rates["hidden"]:
            return masks(rates["output"], num_layers)
        parts = [masks(rates["output"], 1)]
        if num_layers > 1:
            parts.append(masks(rates["hidden"], num_layers - 1))
        return ops.concatenate(parts, axis=1)

    def _residual_at(self, i, inputs):
        return self.residual and i > 0 and inputs.shape[-1] == self.units

    # === One step ===

    def step(self, ids, state, memory_bundle, training=False, output=None):
        """One decoding step for tokens `ids` int `(N,)`.

        `state` is the nest from `initial_state()` (or a previous step), `memory_bundle` is
        `prepare_memory(...)` (tiled like the state for beam search), `output` None or a
        shortlist's `output_projection.subset(ids)` (then the logits are over its K ids).
        Returns `(logits float32 (N, V) or (N, K), new_state, attention float32 (N, S))`.
        """
        layer_states, feed = state
        memory, memory_mask, *keys = memory_bundle
        inputs = self._embed(ids, training)  # (N, E)
        if self.input_feeding:
            inputs = ops.concatenate([inputs, ops.cast(feed, inputs.dtype)], axis=-1)
        new_states, outputs = [], inputs
        for i, layer in enumerate(self.rnn_layers):
            if i > 0:
                outputs = self._drop("hidden", outputs, training)  # (N, units)
            inputs = outputs
            h, c = layer_states[i]
            outputs, (h, c) = layer.cell(inputs, [h, c], training=training)  # (N, units)
            new_states.append((h, c))
            if self._residual_at(i, inputs):
                outputs = outputs + inputs
        params = self.attention_layer.parameters(self.compute_dtype)
        context, weights = self.attention_layer.attend(
            outputs, memory, memory_mask, tuple(keys), params, training=training
        )
        h_tilde = self.attention_layer.attentional_hidden(context, outputs, params)  # (N, units)
        h_tilde = self._drop("output", h_tilde, training)
        if output is None:
            logits = self.output_projection(h_tilde)  # (N, V) float32
        else:
            logits = self.output_projection.project(h_tilde, output)  # (N, K) float32
        return logits, (tuple(new_states), h_tilde), weights

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocab_size": self.vocab_size,
                "embedding_dim": self.embedding_dim,
                "units": self.units,
                "num_layers": self.num_layers,
                "attention": self.attention,
                "attention_scale": self.attention_scale,
                "embedding_dropout": self.embedding_dropout,
                "hidden_dropout": self.hidden_dropout,
                "output_dropout": self.output_dropout,
                "word_dropout": self.word_dropout,
                "attention_dropout": self.attention_dropout,
                "attention_lr_scale": self.attention_lr_scale,
                "input_feeding": self.input_feeding,
                "dropout": self.dropout,
                "residual": self.residual,
                "bridge": self.bridge,
                "tie_output_embeddings": self.tie_output_embeddings,
            }
        )
        return config
