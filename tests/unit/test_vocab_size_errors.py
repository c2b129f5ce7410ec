"""A vocabulary size the corpus cannot give: one line naming the option that fixes it.

`nmt train` is configured with `--set`, `nmt vocab` with its own options; the error names the
one the caller takes, and the figure it suggests works.
"""

import re
from pathlib import Path

import pytest

from nmt.config import VocabConfig
from nmt.demo_data import generate_pairs
from nmt.errors import DataError
from nmt.vocab import train_vocab

VOCAB_CLI = {"size": "--size {}", "character_coverage": "--character-coverage {}"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("corpus")
    pairs = list(generate_pairs(5, 300))
    src, tgt = root / "train.en", root / "train.de"
    src.write_text("".join(e + "\n" for e, _ in pairs), encoding="utf-8")
    tgt.write_text("".join(d + "\n" for _, d in pairs), encoding="utf-8")
    return src, tgt


def test_too_large_names_the_set_option_and_the_largest_size_that_works(corpus, tmp_path):
    src, tgt = corpus
    with pytest.raises(DataError) as error:
        train_vocab(VocabConfig(size=8000), [src], [tgt], tmp_path / "a")
    message = str(error.value)
    most = re.search(r"use --set vocab\.size=(\d+) or less\)$", message)
    assert most and message.startswith("vocab.size 8000 is too large for "), message
    assert "--size" not in message and "\n" not in message
    assert not (tmp_path / "a" / "joint.model").exists()
    vocab = train_vocab(VocabConfig(size=int(most.group(1))), [src], [tgt], tmp_path / "b")
    assert vocab.source_size == int(most.group(1))


def test_too_small_for_the_characters_names_size_and_coverage(corpus, tmp_path):
    src, tgt = corpus
    with pytest.raises(DataError) as error:
        train_vocab(VocabConfig(size=16), [src], [tgt], tmp_path / "a")
    message = str(error.value)
    least = re.search(r"need (\d+) pieces \(use --set vocab\.size=\1 or more, or a lower "
                      r"--set vocab\.character_coverage=C\)$", message)  # fmt: skip
    assert least and message.startswith("vocab.size 16 is too small for "), message
    assert "character_coverage 1 keeps" in message and "required_chars" not in message
    vocab = train_vocab(VocabConfig(size=int(least.group(1))), [src], [tgt], tmp_path / "b")
    assert vocab.source_size == int(least.group(1))


def test_nmt_vocab_options_are_named_when_given(corpus, tmp_path):
    src, tgt = corpus
    with pytest.raises(DataError, match=r"use --size \d+ or less\)$"):
        train_vocab(VocabConfig(size=8000), [src], [tgt], tmp_path / "a", options=VOCAB_CLI)
    with pytest.raises(DataError, match=r"or a lower --character-coverage C\)$"):
        train_vocab(VocabConfig(size=16), [src], [tgt], tmp_path / "b", options=VOCAB_CLI)
