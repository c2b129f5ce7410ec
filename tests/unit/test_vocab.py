"""SentencePiece training and the Vocab: special ids, round trips, determinism, bad input."""

import gzip
import io
import re
from pathlib import Path

import pytest
import sentencepiece as spm

from nmt.config import VocabConfig
from nmt.constants import (
    BOS_ID,
    BOS_PIECE,
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
from nmt.demo_data import generate_pairs
from nmt.errors import CheckpointError, DataError
from nmt.vocab import Vocab, train_vocab
from tests.helpers import umask

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "tiny_joint.model"
SMALL = VocabConfig(size=120, seed=3)


def write_lines(path: Path, lines) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path, list[str], list[str]]:
    root = tmp_path_factory.mktemp("corpus")
    pairs = list(generate_pairs(11, 400))
    en = [e for e, _ in pairs]
    de = [d for _, d in pairs]
    return write_lines(root / "train.en", en), write_lines(root / "train.de", de), en, de


@pytest.fixture(scope="module")
def joint_vocab(corpus, tmp_path_factory) -> Vocab:
    src, tgt, _, _ = corpus
    return train_vocab(SMALL, [src], [tgt], tmp_path_factory.mktemp("vocab"))


def test_special_ids_and_pieces_follow_the_constants(joint_vocab):
    sp = joint_vocab.processor("source")
    assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (PAD_ID, UNK_ID, BOS_ID, EOS_ID)
    pieces = [sp.id_to_piece(i) for i in range(4)]
    assert pieces == [PAD_PIECE, UNK_PIECE, BOS_PIECE, EOS_PIECE]
    assert joint_vocab.joint and joint_vocab.source_size == joint_vocab.target_size == SMALL.size
    assert joint_vocab.source_model_path.name == JOINT_SPM
    assert joint_vocab.source_model_path.with_suffix(".vocab").exists()


def test_encode_decode_round_trip(joint_vocab, corpus):
    _, _, en, de = corpus
    source_ids = joint_vocab.encode_source(en)
    assert all(row[-1] == EOS_ID and EOS_ID not in row[:-1] for row in source_ids)
    assert joint_vocab.decode_source(source_ids) == en
    target_ids = joint_vocab.encode_target(de, add_bos=True, add_eos=True)
    assert all(row[0] == BOS_ID and row[-1] == EOS_ID for row in target_ids)
    assert joint_vocab.decode_target(target_ids) == de
    assert joint_vocab.encode_source(["x"], add_eos=False)[0][-1] != EOS_ID


def test_decode_target_stops_at_eos_and_drops_pad_and_bos(joint_vocab):
    ids = joint_vocab.encode_target(["Der Hund schläft."])[0]
    other = joint_vocab.encode_target(["Die Katze."])[0]
    row = [BOS_ID, *ids, EOS_ID, *other, PAD_ID]
    padded = [PAD_ID, BOS_ID, *ids[:2], PAD_ID, *ids[2:]]
    assert joint_vocab.decode_target([row, padded, [EOS_ID, *ids]]) == [
        "Der Hund schläft.",
        "Der Hund schläft.",
        "",
    ]
    import numpy as np

    assert joint_vocab.decode_target(np.array([row])) == ["Der Hund schläft."]
    assert joint_vocab.decode_target([]) == []


def test_training_is_deterministic_and_the_seed_matters(corpus, tmp_path):
    src, tgt, _, _ = corpus
    sampled = VocabConfig(size=100, seed=5, input_sentence_size=150)  # sample 150 of 800 lines
    a = train_vocab(sampled, [src], [tgt], tmp_path / "a").source_proto
    b = train_vocab(sampled, [src], [tgt], tmp_path / "b").source_proto
    other = VocabConfig(size=100, seed=6, input_sentence_size=150)
    c = train_vocab(other, [src], [tgt], tmp_path / "c").source_proto
    assert a == b
    assert (tmp_path / "a" / JOINT_SPM).read_bytes() == (tmp_path / "b" / JOINT_SPM).read_bytes()
    assert a != c


def test_separate_vocabularies_use_their_own_side(corpus, tmp_path):
    src, tgt, en, de = corpus
    config = VocabConfig(size=100, seed=3, joint=False, model_type="bpe")
    vocab = train_vocab(config, [src], [tgt], tmp_path)
    assert not vocab.joint
    assert sorted(p.name for p in tmp_path.glob("*.model")) == [SOURCE_SPM, TARGET_SPM]
    assert vocab.source_model_path.name == SOURCE_SPM
    assert vocab.target_model_path.name == TARGET_SPM
    assert vocab.source_proto != vocab.target_proto
    assert vocab.decode_source(vocab.encode_source(en[:20])) == en[:20]
    assert vocab.decode_target(vocab.encode_target(de[:20])) == de[:20]
    reference = spm.SentencePieceProcessor(model_file=str(tmp_path / TARGET_SPM))
    assert vocab.encode_target(de[:5]) == reference.encode(de[:5])
    loaded = Vocab.load(tmp_path)
    assert (loaded.source_proto, loaded.target_proto) == (vocab.source_proto, vocab.target_proto)


def test_the_vocabulary_directory_and_files_follow_the_umask(corpus, tmp_path):
    src, tgt, _, _ = corpus
    out = tmp_path / "new" / "vocab"
    with umask(0o002) as mode:
        train_vocab(SMALL, [src], [tgt], out)
    assert (out.stat().st_mode & 0o777) == mode == 0o775  # not mkdtemp's owner-only 0o700
    assert sorted(p.name for p in out.iterdir()) == [JOINT_SPM, "joint.vocab"]  # no staging
    assert {p.stat().st_mode & 0o777 for p in out.iterdir()} == {0o664}


def test_gzip_input_gives_the_same_model(corpus, tmp_path):
    src, tgt, _, _ = corpus
    gz = []
    for path in (src, tgt):
        target = tmp_path / (path.name + ".gz")
        target.write_bytes(gzip.compress(path.read_bytes()))
        gz.append(target)
    plain = train_vocab(SMALL, [src], [tgt], tmp_path / "plain")
    zipped = train_vocab(SMALL, [gz[0]], [gz[1]], tmp_path / "gz")
    assert plain.source_proto == zipped.source_proto


def test_save_and_load_forms(joint_vocab, tmp_path):
    written = joint_vocab.save(tmp_path / "copy")
    assert written == [tmp_path / "copy" / JOINT_SPM]
    for path in (tmp_path / "copy", tmp_path / "copy" / JOINT_SPM):
        loaded = Vocab.load(path)
        assert loaded.joint and loaded.source_proto == joint_vocab.source_proto
    assert Vocab.load(FIXTURE).source_size == 256


def test_tf_tokenizer_matches_python_encoding(joint_vocab, corpus):
    import tensorflow as tf

    _, _, en, _ = corpus
    tokenizer = joint_vocab.tf_tokenizer("source")
    ids = tokenizer.tokenize(tf.constant(en[:50])).to_list()
    assert ids == joint_vocab.encode_source(en[:50], add_eos=False)
    with pytest.raises(ValueError):
        joint_vocab.tf_tokenizer("both")


def test_vocab_size_too_large_names_the_maximum(corpus, tmp_path):
    src, tgt, _, _ = corpus
    with pytest.raises(DataError, match=r"at most (\d+) pieces") as info:
        train_vocab(VocabConfig(size=50_000), [src], [tgt], tmp_path / "big")
    assert not (tmp_path / "big" / JOINT_SPM).exists()
    maximum = int(re.search(r"at most (\d+) pieces", str(info.value)).group(1))
    vocab = train_vocab(VocabConfig(size=maximum), [src], [tgt], tmp_path / "max")
    assert vocab.source_size == maximum


@pytest.mark.parametrize(
    "content, message",
    [
        (None, r"missing\.txt: file not found"),
        (b"", r"bad\.txt: file is empty"),
        (b"\n  \n\n", r"bad\.txt: every line is empty"),
        (b"good line\nfine\nbroken \xff\xfe here\n", r"bad\.txt:3: invalid UTF-8"),
    ],
)
def test_bad_training_files(corpus, tmp_path, content, message):
    src, _, _, _ = corpus
    bad = tmp_path / ("missing.txt" if content is None else "bad.txt")
    if content is not None:
        bad.write_bytes(content)
    with pytest.raises(DataError, match=message):
        train_vocab(SMALL, [src], [bad], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written


def test_other_layout_in_output_dir_is_refused(joint_vocab, corpus, tmp_path):
    src, tgt, _, _ = corpus
    joint_vocab.save(tmp_path)
    with pytest.raises(DataError, match="already holds joint.model"):
        train_vocab(VocabConfig(size=100, joint=False), [src], [tgt], tmp_path)


def _foreign_model(corpus) -> bytes:
    """A SentencePiece model with the library's default ids (unk 0, bos 1, eos 2, no pad)."""
    src, _, _, _ = corpus
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        input=str(src), model_writer=buffer, vocab_size=100, minloglevel=2
    )
    return buffer.getvalue()


def test_load_errors(joint_vocab, corpus, tmp_path):
    with pytest.raises(DataError, match="vocabulary not found"):
        Vocab.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no joint\.model or source\.model \+ target\.model"):
        Vocab.load(tmp_path / "empty")
    half = tmp_path / "half"
    half.mkdir()
    (half / SOURCE_SPM).write_bytes(joint_vocab.source_proto)
    with pytest.raises(DataError, match=r"half/target\.model: not found"):
        Vocab.load(half)
    both = tmp_path / "both"
    both.mkdir()
    for name in (JOINT_SPM, SOURCE_SPM, TARGET_SPM):
        (both / name).write_bytes(joint_vocab.source_proto)
    with pytest.raises(DataError, match="keep only one layout"):
        Vocab.load(both)
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"this is not a protobuf")
    with pytest.raises(DataError, match="garbage.model: not a valid SentencePiece model"):
        Vocab.load(garbage)
    foreign = tmp_path / "foreign.model"
    foreign.write_bytes(_foreign_model(corpus))
    with pytest.raises(DataError, match="foreign.model: SentencePiece pad_id is -1, nmt needs 0"):
        Vocab.load(foreign)


def test_model_directory_problems_are_checkpoint_errors(corpus, tmp_path):
    (tmp_path / "config.yaml").write_text("data: {}\n")
    (tmp_path / JOINT_SPM).write_bytes(_foreign_model(corpus))
    with pytest.raises(CheckpointError, match="pad_id"):
        Vocab.load(tmp_path)
    (tmp_path / JOINT_SPM).unlink()
    with pytest.raises(CheckpointError, match="no joint.model"):
        Vocab.load(tmp_path)
