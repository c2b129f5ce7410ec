"""nmt.ensemble without a trained model: pairing --model with --checkpoint, the vocabulary
checks, and the Ensemble's decoding interface on two stand-in models.

Decoding a real ensemble is tested in tests/integration/test_translator.py (a model with itself) and
tests/integration/test_translate_cli.py (the CLI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nmt.ensemble import Ensemble, check_vocabularies, pair_members
from nmt.errors import CheckpointError, ConfigError
from nmt.vocab import Vocab

TINY_VOCAB = Path(__file__).resolve().parents[1] / "data" / "tiny_joint.model"


def test_pair_members_rules():
    assert pair_members("m") == [(Path("m"), "best")]
    assert pair_members(["m"], ["last"]) == [(Path("m"), "last")]
    assert pair_members(["m"], ("best", "last", "m/x")) == [
        (Path("m"), "best"),
        (Path("m"), "last"),
        (Path("m"), "m/x"),
    ]
    assert pair_members(["a", "b"]) == [(Path("a"), "best"), (Path("b"), "best")]
    assert pair_members(["a", "b"], "last") == [(Path("a"), "last"), (Path("b"), "last")]
    assert pair_members(("a", "b"), ("x", "y")) == [(Path("a"), "x"), (Path("b"), "y")]
    with pytest.raises(ConfigError, match="2 --model but 3 --checkpoint"):
        pair_members(["a", "b"], ["x", "y", "z"])
    with pytest.raises(ConfigError, match="at least one"):
        pair_members([])


def edited_vocab(edit) -> Vocab:
    """tests/data/tiny_joint.model with `edit(model_proto)` applied."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(TINY_VOCAB.read_bytes())
    edit(proto)
    return Vocab(proto.SerializeToString())


def test_vocabularies_compare_pieces_not_bytes():
    base = Vocab.load(TINY_VOCAB)

    def rename(proto):
        proto.trainer_spec.model_prefix = "elsewhere"

    def change_piece(proto):
        proto.pieces[10].piece = "zzz"

    def change_score(proto):
        proto.pieces[10].score -= 1.0

    def drop_piece(proto):
        del proto.pieces[-1]

    renamed = edited_vocab(rename)
    assert renamed.target_proto != base.target_proto
    check_vocabularies([base, renamed, base], ["a", "b", "c"])  # same pieces: accepted
    with pytest.raises(CheckpointError, match=r"^b: its target vocabulary differs from that of a "
                       r"\(piece 10 is 'zzz', not 'r'\); ensemble members must share"):  # fmt: skip
        check_vocabularies([base, edited_vocab(change_piece)], ["a", "b"])
    with pytest.raises(CheckpointError, match=r"^c: its target .*\(255 pieces, not 256\)"):
        check_vocabularies([base, base, edited_vocab(drop_piece)], ["a", "b", "c"])
    # Scores change the source segmentation, not the meaning of target ids.
    with pytest.raises(CheckpointError, match=r"^b: its source vocabulary differs .*piece 10"):
        check_vocabularies([base, edited_vocab(change_score)], ["a", "b"])
    separate = Vocab(base.source_proto, edited_vocab(change_score).target_proto)
    check_vocabularies([base, separate], ["a", "b"])


class Member:
    """A stand-in model: memory = source ids * scale, logits from a fixed table, a counter state."""

    def __init__(self, seed: int, vocab: int = 7):
        self.table = np.random.default_rng(seed).normal(size=(vocab, vocab)).astype(np.float32)
        self.seed = seed

    def encode(self, source_ids, training=False):
        import tensorflow as tf

        memory = tf.cast(source_ids, tf.float32)[:, :, None] * self.seed  # (B, S, 1)
        state = (tf.zeros([tf.shape(source_ids)[0]], tf.int32),)
        return memory, source_ids > 0, state

    def prepare_memory(self, memory, memory_mask):
        return (memory, memory_mask)

    def step(self, ids, state, memory_bundle, training=False):
        import tensorflow as tf

        memory, mask = memory_bundle
        attention = tf.nn.softmax(tf.where(mask, memory[:, :, 0], -1e9))  # (N, S)
        return tf.gather(self.table, ids), (state[0] + 1,), attention


def test_ensemble_interface_averages_members():
    import tensorflow as tf

    members = [Member(1), Member(2)]
    ensemble = Ensemble(members)
    source = tf.constant([[4, 5, 3], [6, 3, 0]], tf.int32)
    memory, mask, state = ensemble.encode(source)
    assert len(memory) == len(mask) == len(state) == 2
    bundle = ensemble.prepare_memory(memory, mask)
    ids = tf.constant([2, 5], tf.int32)
    log_probs, new_state, attention = ensemble.step(ids, state, bundle)
    outs = [m.step(ids, s, b) for m, s, b in zip(members, state, bundle, strict=True)]
    probs = [tf.nn.softmax(o[0]).numpy() for o in outs]
    np.testing.assert_allclose(log_probs.numpy(), np.log((probs[0] + probs[1]) / 2), rtol=1e-5)
    want = (outs[0][2].numpy() + outs[1][2].numpy()) / 2
    np.testing.assert_allclose(attention.numpy(), want, rtol=1e-6)
    assert [s[0].numpy().tolist() for s in new_state] == [[1, 1], [1, 1]]
    with pytest.raises(ValueError, match="at least 2"):
        Ensemble(members[:1])
