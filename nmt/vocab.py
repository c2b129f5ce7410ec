"""SentencePiece vocabularies: training (`train_vocab`) and the `Vocab` used everywhere else.

Every model we train fixes the special ids and pieces of nmt/constants.py:
pad=0 `<pad>`, unk=1 `<unk>`, bos=2 `<s>`, eos=3 `</s>`. A vocabulary is either one joint
model (`joint.model`, shared by source and target) or one model per side (`source.model`,
`target.model`); a model directory holds the same files.

Determinism. Training is deterministic for a given seed: when the corpus has more
non-empty lines than `input_sentence_size`, *we* pick the sample (seeded `random.Random`,
indices chosen after a counting pass, lines streamed in file order) and SentencePiece gets
exactly those lines with its own sampling and shuffling switched off. (SentencePiece's
global `set_random_generator_seed` only takes effect the first time its generator is used
in a process, so it cannot give per-call seeds.) The thread count is fixed as well, because
unigram EM statistics are summed per thread and the float sums depend on the split.

Vocabulary size. `hard_vocab_limit` stays on: if the corpus cannot support the requested
size, training fails with a DataError that states the largest size that works, rather than
silently producing a smaller vocabulary than the config says.
"""

from __future__ import annotations

import io
import random
import re
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional, Union

from nmt.config import VocabConfig
from nmt.constants import (
    BOS_ID,
    BOS_PIECE,
    CONFIG_FILE,
    EOS_ID,
    EOS_PIECE,
    JOINT_SPM,
    PAD_ID,
    PAD_PIECE,
    SOURCE_SPM,
    TARGET_SPM,
    UNK_ID,
    UNK_PIECE,
)
from nmt.errors import CheckpointError, DataError, NmtError
from nmt.fileio import (
    LineSource,
    check_distinct_inputs,
    check_input,
    check_output_dir,
    make_temp_dir,
    reason,
    write_atomic,
)

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow_text

SPM_THREADS = 4  # fixed: unigram results depend on the thread count
SPECIALS = ((PAD_ID, PAD_PIECE), (UNK_ID, UNK_PIECE), (BOS_ID, BOS_PIECE), (EOS_ID, EOS_PIECE))
Side = Literal["source", "target"]
PathLike = Union[str, Path]


# --------------------------------------------------------------------------------------------
# Vocab


def _processor(proto: bytes, origin: str, error: type[NmtError]):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(proto)
    except Exception:  # sentencepiece raises RuntimeError/OSError for a bad proto
        raise error(f"{origin}: not a valid SentencePiece model") from None
    specials = {
        "pad_id": (sp.pad_id(), PAD_ID),
        "unk_id": (sp.unk_id(), UNK_ID),
        "bos_id": (sp.bos_id(), BOS_ID),
        "eos_id": (sp.eos_id(), EOS_ID),
    }
    for name, (got, want) in specials.items():
        if got != want:
            raise error(
                f"{origin}: SentencePiece {name} is {got}, nmt needs {want} "
                "(retrain it with `nmt vocab`)"
            )
    for i, piece in SPECIALS:
        if sp.id_to_piece(i) != piece:
            raise error(
                f"{origin}: piece {i} is {sp.id_to_piece(i)!r}, nmt needs {piece!r} "
                "(retrain it with `nmt vocab`)"
            )
    return sp


def _ids(row) -> list[int]:
    """A list/array/tensor row of ids as Python ints."""
    if hasattr(row, "numpy"):
        row = row.numpy()
    if hasattr(row, "tolist"):
        row = row.tolist()
    return [int(i) for i in row]


class Vocab:
    """Source and target SentencePiece models (the same one when `joint`).

    Ids follow nmt/constants.py. `encode_source` gives model input (pieces + EOS);
    `decode_target` turns model output back into text (stops at EOS, drops PAD and BOS).
    `tf_tokenizer(side)` gives the tensorflow-text op for graphs (tf.data, SavedModel).
    """

    def __init__(
        self,
        source_proto: bytes,
        target_proto: Optional[bytes] = None,
        *,
        source_model_path: Optional[PathLike] = None,
        target_model_path: Optional[PathLike] = None,
        origin: str = "vocabulary",
        error: type[NmtError] = DataError,
    ) -> None:
        self.joint = target_proto is None
        self._source_proto = bytes(source_proto)
        self._target_proto = self._source_proto if self.joint else bytes(target_proto)
        self.source_model_path = Path(source_model_path) if source_model_path else None
        self.target_model_path = (
            Path(target_model_path) if target_model_path else self.source_model_path
        )
        self._source_sp = _processor(self._source_proto, str(source_model_path or origin), error)
        self._target_sp = (
            self._source_sp
            if self.joint
            else _processor(self._target_proto, str(target_model_path or origin), error)
        )

    # ---- loading and saving

    @classmethod
    def load(cls, path: PathLike) -> Vocab:
        """Load from a directory with joint.model or source.model + target.model, or a .model file.

        A directory holding config.yaml is a model directory: problems raise CheckpointError
        there, DataError otherwise.
        """
        path = Path(path)
        is_model_dir = path.is_dir() and (path / CONFIG_FILE).exists()
        error: type[NmtError] = CheckpointError if is_model_dir else DataError
        if not path.exists():
            raise error(f"{path}: vocabulary not found")
        if path.is_file():
            return cls(_read(path, error), source_model_path=path, error=error)
        joint, source, target = path / JOINT_SPM, path / SOURCE_SPM, path / TARGET_SPM
        if joint.exists() and (source.exists() or target.exists()):
            raise error(
                f"{path}: holds both {JOINT_SPM} and {SOURCE_SPM}/{TARGET_SPM}; "
                "keep only one layout"
            )
        if joint.exists():
            return cls(_read(joint, error), source_model_path=joint, error=error)
        if source.exists() and target.exists():
            return cls(
                _read(source, error),
                _read(target, error),
                source_model_path=source,
                target_model_path=target,
                error=error,
            )
        if source.exists() or target.exists():
            missing = target if source.exists() else source
            raise error(f"{missing}: not found ({SOURCE_SPM} and {TARGET_SPM} go together)")
        raise error(f"{path}: no {JOINT_SPM} or {SOURCE_SPM} + {TARGET_SPM} in this directory")

    def model_files(self) -> dict[str, bytes]:
        """File name -> serialized model, as `save` writes them."""
        if self.joint:
            return {JOINT_SPM: self._source_proto}
        return {SOURCE_SPM: self._source_proto, TARGET_SPM: self._target_proto}

    def save(self, directory: PathLike) -> list[Path]:
        """Write the model file(s) into `directory` (created if needed); returns their paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name, proto in self.model_files().items():
            written.append(write_atomic(directory / name, proto))
        return written

    # ---- properties

    @property
    def source_proto(self) -> bytes:
        """The serialized source SentencePiece model (for tensorflow_text)."""
        return self._source_proto

    @property
    def target_proto(self) -> bytes:
        return self._target_proto

    @property
    def source_size(self) -> int:
        return self._source_sp.get_piece_size()

    @property
    def target_size(self) -> int:
        return self._target_sp.get_piece_size()

    def processor(self, side: Side):
        """The sentencepiece.SentencePieceProcessor of one side."""
        return self._source_sp if _side(side) == "source" else self._target_sp

    def tf_tokenizer(self, side: Side) -> tensorflow_text.SentencepieceTokenizer:
        """A new tensorflow_text.SentencepieceTokenizer (int32 ids, no BOS/EOS) for a side."""
        import tensorflow as tf
        import tensorflow_text as tf_text

        proto = self._source_proto if _side(side) == "source" else self._target_proto
        return tf_text.SentencepieceTokenizer(model=proto, out_type=tf.int32)

    # ---- encoding and decoding

    def encode_source(self, lines: Sequence[str], add_eos: bool = True) -> list[list[int]]:
        """Source lines -> ids: pieces + [EOS] (the model input layout)."""
        ids = self._source_sp.encode(list(lines), out_type=int)
        return [row + [EOS_ID] for row in ids] if add_eos else ids

    def encode_target(
        self, lines: Sequence[str], add_bos: bool = False, add_eos: bool = False
    ) -> list[list[int]]:
        """Target lines -> piece ids, optionally with BOS in front and/or EOS at the end."""
        ids = self._target_sp.encode(list(lines), out_type=int)
        return [([BOS_ID] if add_bos else []) + row + ([EOS_ID] if add_eos else []) for row in ids]

    def decode_target(self, ids_lists: Iterable) -> list[str]:
        """Model output ids -> text: each row stops at its first EOS; PAD and BOS are dropped."""
        return self._decode(self._target_sp, ids_lists)

    def decode_source(self, ids_lists: Iterable) -> list[str]:
        """Source ids -> text, with the same rules as decode_target."""
        return self._decode(self._source_sp, ids_lists)

    @staticmethod
    def _decode(sp, ids_lists: Iterable) -> list[str]:
        rows = []
        for row in ids_lists:
            ids = _ids(row)
            if EOS_ID in ids:
                ids = ids[: ids.index(EOS_ID)]
            rows.append([i for i in ids if i not in (PAD_ID, BOS_ID)])
        return sp.decode(rows) if rows else []

    def __repr__(self) -> str:
        if self.joint:
            return f"Vocab(joint, size={self.source_size}, path={self.source_model_path})"
        return (
            f"Vocab(source_size={self.source_size}, target_size={self.target_size}, "
            f"paths={self.source_model_path}, {self.target_model_path})"
        )


def _side(side: str) -> str:
    if side not in ("source", "target"):
        raise ValueError(f"side must be 'source' or 'target', got {side!r}")
    return side


def _read(path: Path, error: type[NmtError]) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror or e}") from None
    if not data:
        raise error(f"{path}: empty file, not a SentencePiece model")
    return data


# --------------------------------------------------------------------------------------------
# Training


def _count_lines(files: Sequence[LineSource]) -> int:
    """Validate every file (exists, UTF-8, not empty) and count its non-empty lines."""
    total = 0
    for path in files:
        lines = nonempty = 0
        for lines, text in path:  # noqa: B007 - last number is the line count
            nonempty += bool(text.strip())
        if lines == 0:
            raise DataError(f"{path.name}: file is empty")
        if nonempty == 0:
            raise DataError(f"{path.name}: every line is empty")
        total += nonempty
    return total


def _sampled_lines(files: Sequence[LineSource], total: int, limit: int, rng) -> Iterator[str]:
    """Stream the non-empty lines of `files`, keeping a seeded sample of `limit` when needed."""
    chosen = None
    if 0 < limit < total:
        chosen = iter(sorted(rng.sample(range(total), limit)))
    wanted = next(chosen) if chosen is not None else None
    index = 0
    for path in files:
        for _, text in path:
            if not text.strip():
                continue
            if chosen is None:
                yield text
            elif index == wanted:
                yield text
                wanted = next(chosen, None)
                if wanted is None:
                    return
            index += 1


_SIZE_TOO_HIGH = re.compile(
    r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)"
)
_SIZE_TOO_LOW = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")

# How the user sets a vocab key, for error messages: `nmt train` takes `--set`, `nmt vocab`
# its own options (VOCAB_CLI_OPTIONS in nmt/cli.py).
SET_OPTIONS = {
    "size": "--set vocab.size={}",
    "character_coverage": "--set vocab.character_coverage={}",
}


def _train_proto(
    files: Sequence[PathLike],
    vocab_config: VocabConfig,
    sample_seed: str,
    normalization_rule_name: str = "nmt_nfkc",
    options: Optional[dict] = None,
) -> bytes:
    """Train one SentencePiece model on the non-empty lines of `files`; returns its bytes."""

    files = list(files)
    if not files:
        raise DataError("no training files given for the vocabulary")
    sources = [LineSource(f) for f in files]  # a pipe is read once, for both passes
    try:
        total = _count_lines(sources)
        rng = random.Random(sample_seed)
        lines = _sampled_lines(sources, total, vocab_config.input_sentence_size, rng)
        return _run_trainer(
            lines, files, vocab_config, normalization_rule_name, options or SET_OPTIONS
        )
    finally:
        for source in sources:
            source.close()


def _run_trainer(
    lines: Iterator[str],
    files: Sequence[PathLike],
    vocab_config: VocabConfig,
    normalization_rule_name: str,
    options: dict,
) -> bytes:
    import sentencepiece as spm

    buffer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=lines,
            model_writer=buffer,
            model_type=vocab_config.model_type,
            vocab_size=vocab_config.size,
            character_coverage=vocab_config.character_coverage,
            normalization_rule_name=normalization_rule_name,
            input_sentence_size=0,  # we sampled already
            shuffle_input_sentence=False,
            num_threads=SPM_THREADS,
            hard_vocab_limit=True,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            pad_piece=PAD_PIECE,
            unk_piece=UNK_PIECE,
            bos_piece=BOS_PIECE,
            eos_piece=EOS_PIECE,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise _trainer_error(e, files, vocab_config, options) from None
    return buffer.getvalue()


def _trainer_error(
    error: RuntimeError, files: Sequence[PathLike], vocab_config: VocabConfig, options: dict
) -> DataError:
    """SentencePiece's failure in our words, naming the option that fixes it."""
    names = ", ".join(str(f) for f in files)
    too_high = _SIZE_TOO_HIGH.search(str(error))
    if too_high:
        most = too_high.group(2)
        return DataError(
            f"vocab.size {too_high.group(1)} is too large for {names}: this data supports "
            f"at most {most} pieces (use {options['size'].format(most)} or less)"
        )
    too_low = _SIZE_TOO_LOW.search(str(error))
    if too_low:
        least, coverage = too_low.group(2), vocab_config.character_coverage
        return DataError(
            f"vocab.size {too_low.group(1)} is too small for {names}: the characters that "
            f"vocab.character_coverage {coverage:g} keeps need {least} pieces (use "
            f"{options['size'].format(least)} or more, or a lower "
            f"{options['character_coverage'].format('C')})"
        )
    reason = str(error).rsplit("] ", 1)[-1].strip()
    return DataError(f"SentencePiece training on {names} failed: {reason}")


def _vocab_text(proto: bytes) -> bytes:
    """The human-readable `piece<TAB>score` listing SentencePiece writes as *.vocab."""
    from sentencepiece import sentencepiece_model_pb2

    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString(proto)
    return "".join(f"{p.piece}\t{p.score:g}\n" for p in model.pieces).encode("utf-8")


def train_vocab(
    vocab_config: VocabConfig,
    source_files: Sequence[PathLike],
    target_files: Sequence[PathLike],
    output_dir: PathLike,
    options: Optional[dict] = None,
) -> Vocab:
    """Train SentencePiece model(s) and write them into `output_dir`; returns the loaded Vocab.

    Joint (`vocab_config.joint`): one `joint.model` on source and target lines together.
    Otherwise `source.model` on the source files and `target.model` on the target files.
    Each `*.model` comes with a readable `*.vocab` listing. Files may be plain or .gz.
    Empty lines are ignored. Deterministic for `vocab_config.seed`. Raises DataError naming
    the file (and line) for missing, empty or non-UTF-8 input, and for a vocabulary size the
    data cannot support (stating the maximum) or that its characters do not fit in, naming
    the option that sets the key (`options`, default SET_OPTIONS: `--set vocab.size=N`).
    Nothing is written unless training succeeds.
    """
    source_files, target_files = list(source_files), list(target_files)
    if not source_files:
        raise DataError("no source files given for the vocabulary")
    if not target_files:
        raise DataError("no target files given for the vocabulary")
    for path in source_files + target_files:
        check_input(path)
    check_distinct_inputs([(f"--source {p}", p) for p in source_files]
                          + [(f"--target {p}", p) for p in target_files])  # fmt: skip
    output_dir = Path(output_dir)
    check_output_dir(output_dir, option="--output")
    other = [SOURCE_SPM, TARGET_SPM] if vocab_config.joint else [JOINT_SPM]
    stale = [name for name in other if (output_dir / name).exists()]
    if stale:
        raise DataError(
            f"{output_dir}: already holds {', '.join(stale)} from a "
            f"{'separate' if vocab_config.joint else 'joint'} vocabulary; "
            "remove it or choose another output directory"
        )
    seed = vocab_config.seed
    if vocab_config.joint:
        protos = {
            JOINT_SPM: _train_proto(
                source_files + target_files, vocab_config, f"{seed}", options=options
            )
        }
    else:
        protos = {
            SOURCE_SPM: _train_proto(source_files, vocab_config, f"{seed}:source", options=options),
            TARGET_SPM: _train_proto(target_files, vocab_config, f"{seed}:target", options=options),
        }
    # Check before writing anything, then move finished files into place.
    for name, proto in protos.items():
        _processor(proto, name, DataError)
    try:
        _write_models(protos, output_dir)
    except OSError as e:
        raise DataError(
            f"{output_dir}: cannot write the vocabulary ({reason(e)}); no model file there "
            "was changed"
        ) from e
    return Vocab.load(output_dir)


def _write_models(protos: dict[str, bytes], output_dir: Path) -> None:
    """Write each model and its .vocab into a staging dir, then move them all into place."""
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = make_temp_dir(output_dir, ".vocab-")
    try:
        for name, proto in protos.items():
            (staging / name).write_bytes(proto)
            (staging / name).with_suffix(".vocab").write_bytes(_vocab_text(proto))
        for name in protos:
            for suffix in (".model", ".vocab"):
                file = Path(name).with_suffix(suffix).name
                (staging / file).replace(output_dir / file)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
