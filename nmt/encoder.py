"""The encoder: embeddings and a stack of (bidirectional) LSTM layers over the source."""

from __future__ import annotations

import keras
from keras import ops

from nmt.constants import PAD_ID
from nmt.layers.dropout import extra_dropouts, resolve_rate
from nmt.layers.lstm import LSTM

MERGES = ("concat", "sum")


@keras.saving.register_keras_serializable(package="nmt")
class Encoder(keras.layers.Layer):
    """Embeddings followed by `num_layers` LSTM layers, optionally bidirectional.

        (1) m_s     = (x_s != PAD)                                   source mask
        (2) in_1    = dropout_emb(E x_s)
        (3) h^l     = LSTM_l(in_l)           masked: padding never updates a state
        (4) out_l   = h^l + in_l  if residual and l >= 2, else h^l
        (5) in_l+1  = dropout_hidden(out_l)
        (6) memory  = dropout_memory(out_L)  (the final states are not dropped)

    Bidirectional layers run one LSTM forward and one backward; `bidirectional_merge` "concat"
    gives each direction units // 2 (outputs and final states concatenated [fw; bw]), "sum"
    gives each direction `units` (outputs and final states summed). Either way every layer's
    output, and so the memory, is `units` wide, which makes the residual widths match from
    layer 2 on.

    Args:
        vocab_size: int. Source vocabulary size.
        embedding_dim: int. Width of the source embeddings.
        units: int. Output width of every layer (must be even for bidirectional concat).
        num_layers: int. Number of LSTM layers.
        bidirectional: bool. Bidirectional layers.
        bidirectional_merge: str. "concat" or "sum".
        dropout: float. Base dropout rate: on the embeddings and between layers unless
            `embedding_dropout` / `hidden_dropout` say otherwise.
        embedding_dropout: float or None. Rate on the embeddings (None: `dropout`).
        hidden_dropout: float or None. Rate between layers (None: `dropout`).
        memory_dropout: float. Rate on the memory, the output that attention reads.
        residual: bool. Residual connections from the second layer on.
        embedding: optional `keras.layers.Embedding` to use (shared with the decoder) instead
            of creating one. Not serialized as shared: `from_config` creates a new one.

    Call arguments:
        source_ids: int `(B, S)`, padded with PAD_ID (0).
        training: bool.
    Returns `(memory, mask, final_states)`: memory `(B, S, units)`, mask bool `(B, S)` and a
    tuple with one `(h, c)` pair per layer, each `(B, units)`, taken at the last real token.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 512,
        units: int = 512,
        num_layers: int = 2,
        bidirectional: bool = False,
        bidirectional_merge: str = "concat",
        dropout: float = 0.0,
        residual: bool = True,
        embedding: keras.layers.Embedding | None = None,
        embedding_dropout: float | None = None,
        hidden_dropout: float | None = None,
        memory_dropout: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if bidirectional_merge not in MERGES:
            raise ValueError(
                f"bidirectional_merge must be concat or sum, got {bidirectional_merge!r}"
            )
        if bidirectional and bidirectional_merge == "concat" and units % 2:
            raise ValueError(f"units must be even for a bidirectional concat encoder, got {units}")
        # === Config ===
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.units = units
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.bidirectional_merge = bidirectional_merge
        self.dropout = dropout
        self.residual = residual
        self.embedding_dropout = embedding_dropout
        self.hidden_dropout = hidden_dropout
        self.memory_dropout = memory_dropout

        # === Layers ===
        if embedding is None:
            embedding = keras.layers.Embedding(
                vocab_size, embedding_dim, dtype=self.dtype_policy, name="embedding"
            )
        self.embedding = embedding
        base = resolve_rate(embedding_dropout, dropout)
        self.dropout_layer = keras.layers.Dropout(base, dtype=self.dtype_policy)
        direction_units = units // 2 if bidirectional and bidirectional_merge == "concat" else units
        self.rnn_layers = []
        for i in range(num_layers):
            lstm = LSTM(
                direction_units,
                return_sequences=True,
                return_state=True,
                dtype=self.dtype_policy,
                name=f"lstm_{i}",
            )
            if bidirectional:
                lstm = keras.layers.Bidirectional(
                    lstm,
                    merge_mode=bidirectional_merge,
                    dtype=self.dtype_policy,
                    name=f"bidirectional_{i}",
                )
            self.rnn_layers.append(lstm)
        self.site_dropouts = extra_dropouts(base, self._rates(), self.dtype_policy)

    def _rates(self) -> dict[str, float]:
        return {
            "embedding": resolve_rate(self.embedding_dropout, self.dropout),
            "hidden": resolve_rate(self.hidden_dropout, self.dropout),
            "memory": self.memory_dropout,
        }

    def _drop(self, site, x, training):
        """Dropout at `site` with its own rate (the base-rate layer when they agree)."""
        if not self._rates()[site]:
            return x
        return self.site_dropouts.get(site, self.dropout_layer)(x, training=training)

    def build(self, input_shape=None):
        if not self.embedding.built:
            self.embedding.build((None, None))
        width = self.embedding_dim
        for layer in self.rnn_layers:
            layer.build((None, None, width))
            width = self.units
        self.built = True

    def call(self, source_ids, training=False):
        mask = ops.not_equal(source_ids, PAD_ID)  # (B, S)
        outputs = self.embedding(source_ids)  # (B, S, E)
        final_states = []
        for i, layer in enumerate(self.rnn_layers):
            site = "hidden" if i else "embedding"
            inputs = self._drop(site, outputs, training)  # (B, S, E or units)
            results = layer(inputs, mask=mask, training=training)
            outputs = results[0]  # (B, S, units)
            if self.bidirectional:
                fw_h, fw_c, bw_h, bw_c = results[1:]  # each (B, units // 2 or units)
                if self.bidirectional_merge == "concat":
                    h = ops.concatenate([fw_h, bw_h], axis=-1)  # (B, units)
                    c = ops.concatenate([fw_c, bw_c], axis=-1)  # (B, units)
                else:
                    h, c = fw_h + bw_h, fw_c + bw_c  # (B, units)
            else:
                h, c = results[1], results[2]  # (B, units)
            if self.residual and i > 0 and inputs.shape[-1] == outputs.shape[-1]:
                outputs = outputs + inputs
            final_states.append((h, c))
        outputs = self._drop("memory", outputs, training)  # (B, S, units)
        return outputs, mask, tuple(final_states)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocab_size": self.vocab_size,
                "embedding_dim": self.embedding_dim,
                "units": self.units,
                "num_layers": self.num_layers,
                "bidirectional": self.bidirectional,
                "bidirectional_merge": self.bidirectional_merge,
                "dropout": self.dropout,
                "residual": self.residual,
                "embedding_dropout": self.embedding_dropout,
                "hidden_dropout": self.hidden_dropout,
                "memory_dropout": self.memory_dropout,
            }
        )
        return config
