"""Ensemble decoding: several models, or several checkpoints of one, decoding as one model.

At every step the ensemble predicts the mean of its N members' probabilities,

    log p(y_t | y_<t, x) = logsumexp_i log p_i(y_t | y_<t, x) - log N

(`search.average_log_probs`, fairseq's rule), and its attention is the mean of the members'
attention rows (alignments and plots show that mean). Every member encodes the same source
ids and keeps its own decoder state, so members may differ in size and architecture but must
share both vocabularies: the same target pieces (id -> piece) and the same source pieces and
scores. The first member's SentencePiece models encode and decode, and its config supplies
the decoding settings (beam, length penalty, maximum lengths, batch size).

`Ensemble` has the three methods decoding uses (`encode`, `prepare_memory`, `step`), so the
Translator, `translator.make_search_fn` and the in-graph searches decode it unchanged: one
`tf.while_loop` over `search.ensemble_step_fn`, with n-best lists, scores and attention as for
one model. No TensorFlow is imported before a model is loaded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from nmt.errors import CheckpointError, ConfigError, NmtError

if TYPE_CHECKING:
    from nmt.checkpoints import LoadedModel

PathLike = Union[str, Path]


class Ensemble:
    """Several loaded models behind the decoding interface of one `Seq2Seq`.

    Encoder outputs, memory bundles and decoder states are tuples with one entry per member;
    `step` returns the averaged log-probabilities as its logits (see the module docstring).
    """

    def __init__(self, models: Sequence[Any]):
        if len(models) < 2:
            raise ValueError(f"an ensemble needs at least 2 models, got {len(models)}")
        self.models = tuple(models)

    def encode(self, source_ids, training=False):
        """`(memories, memory_masks, initial_states)`: tuples of the members' `encode`."""
        encoded = [model.encode(source_ids, training=training) for model in self.models]
        memory, memory_mask, state = zip(*encoded, strict=True)
        return tuple(memory), tuple(memory_mask), tuple(state)

    def prepare_memory(self, memory, memory_mask):
        """A tuple of the members' memory bundles (each a tuple with leading dim B)."""
        return tuple(
            model.prepare_memory(m, mask)
            for model, m, mask in zip(self.models, memory, memory_mask, strict=True)
        )

    def output_subset(self, ids):
        """A tuple of the members' output-layer columns for a shortlist's ids (K,)."""
        return tuple(model.output_subset(ids) for model in self.models)

    def step(self, ids, state, memory_bundle, training=False, output=None):
        """`(log-probabilities float32 (N, V), new states, mean attention float32 (N, S))`;
        over a shortlist's K ids when `output` is `output_subset(ids)` (each member's
        probabilities normalised over the K ids, then averaged)."""
        from nmt import search

        outputs = (None,) * len(self.models) if output is None else output

        def member(model, bundle, out):
            options = {} if out is None else {"output": out}

            def step_fn(ids, step, state):
                return model.step(ids, state, bundle, training=training, **options)

            return step_fn

        members = zip(self.models, memory_bundle, outputs, strict=True)
        step_fns = [member(m, b, out) for m, b, out in members]
        return search.ensemble_step_fn(step_fns)(ids, None, state)


def pair_members(
    model_dirs: PathLike | Sequence[PathLike], checkpoints: str | Sequence[str] = ()
) -> list[tuple[Path, str]]:
    """The (model directory, checkpoint) of each member, from repeatable --model/--checkpoint.

    One directory and N checkpoints: N checkpoints of that model. N directories and at most
    one checkpoint: that checkpoint ("best" when none is given) of each. N and N: pairwise.
    """
    dirs = [model_dirs] if isinstance(model_dirs, (str, Path)) else list(model_dirs)
    names = [checkpoints] if isinstance(checkpoints, str) else list(checkpoints)
    if not dirs:
        raise ConfigError("give at least one model directory (--model)")
    names = names or ["best"]
    if len(dirs) == 1:
        dirs = dirs * len(names)
    elif len(names) == 1:
        names = names * len(dirs)
    elif len(names) != len(dirs):
        raise ConfigError(
            f"{len(dirs)} --model but {len(names)} --checkpoint: give one --checkpoint for "
            "every model, or one per --model"
        )
    return [(Path(d), str(c)) for d, c in zip(dirs, names, strict=True)]


def _pieces(sp, with_scores: bool) -> list:
    size = sp.get_piece_size()
    if with_scores:
        return [(sp.id_to_piece(i), sp.get_score(i)) for i in range(size)]
    return [sp.id_to_piece(i) for i in range(size)]


def _difference(first: list, other: list) -> str:
    if len(first) != len(other):
        return f"{len(other)} pieces, not {len(first)}"
    i = next(i for i, (a, b) in enumerate(zip(first, other, strict=True)) if a != b)
    return f"piece {i} is {other[i]!r}, not {first[i]!r}"


def check_vocabularies(vocabs: Sequence[Any], names: Sequence[str]) -> None:
    """CheckpointError naming the first member whose vocabulary differs from member 0's.

    Target side: the same pieces (id -> piece), since the members' probabilities are
    averaged id by id. Source side: the same pieces and scores, since every member reads
    the ids that member 0's SentencePiece model makes. Equal model bytes always match.
    """
    for side in ("target", "source"):
        first = vocabs[0]
        for vocab, name in zip(vocabs[1:], names[1:], strict=True):
            proto = vocab.target_proto if side == "target" else vocab.source_proto
            if proto == (first.target_proto if side == "target" else first.source_proto):
                continue
            want = _pieces(first.processor(side), side == "source")
            got = _pieces(vocab.processor(side), side == "source")
            if got != want:
                raise CheckpointError(
                    f"{name}: its {side} vocabulary differs from that of {names[0]} "
                    f"({_difference(want, got)}); ensemble members must share the {side} "
                    "SentencePiece model"
                )


def load_ensemble(
    model_dirs: PathLike | Sequence[PathLike],
    checkpoints: str | Sequence[str] = (),
    precision: str = "float32",
) -> LoadedModel:
    """A `checkpoints.LoadedModel` for one model, or for an ensemble of several.

    Members come from `pair_members`. Every member's directory, version, checkpoint and
    vocabulary are checked before any weights are loaded (`precision` as in
    `checkpoints.load_model`), and a problem raises
    CheckpointError naming that member. An ensemble's LoadedModel has `model` an `Ensemble`,
    `step` None, and the first member's config, vocabulary, directory and checkpoint path.
    """
    from nmt import checkpoints as ckpt
    from nmt import modeldir

    members = pair_members(model_dirs, checkpoints)
    if len(members) == 1:
        return ckpt.load_model(*members[0], precision=precision)
    vocabs = []
    for model_dir, checkpoint in members:
        modeldir.read_config(model_dir)
        modeldir.check_version(model_dir)
        ckpt.resolve_checkpoint(model_dir, checkpoint)
        try:
            vocabs.append(ckpt.load_vocab(model_dir))
        except NmtError as e:  # as load_model reports it
            raise CheckpointError(str(e)) from None
    check_vocabularies(vocabs, [str(model_dir) for model_dir, _ in members])
    loaded = [ckpt.load_model(dir_, checkpoint, precision) for dir_, checkpoint in members]
    return dataclasses.replace(
        loaded[0], model=Ensemble([member.model for member in loaded]), step=None
    )
