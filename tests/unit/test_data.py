"""Streaming file checks and the tf.data pipelines: layout, token budget, buckets, counts."""

import gzip
import io
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from nmt.config import DataConfig
from nmt.constants import BOS_ID, EOS_ID, PAD_ID
from nmt.data import (
    PipelineStats,
    check_parallel_files,
    iter_lines,
    make_eval_dataset,
    make_training_dataset,
)
from nmt.demo_data import generate_pairs
from nmt.errors import ConfigError, DataError
from nmt.vocab import Vocab

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "tiny_joint.model"
CONFIG = DataConfig(max_length=20, batch_tokens=64, bucket_width=3, shuffle_buffer=64)


def write_lines(path: Path, lines) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def vocab() -> Vocab:
    return Vocab.load(FIXTURE)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """300 demo pairs plus pairs with an empty side; many exceed 12 pieces."""
    root = tmp_path_factory.mktemp("corpus")
    pairs = list(generate_pairs(21, 300))
    pairs[10] = ("", pairs[10][1])
    pairs[50] = (pairs[50][0], "   ")
    pairs[90] = ("", "")
    en = [e for e, _ in pairs]
    de = [d for _, d in pairs]
    return write_lines(root / "c.en", en), write_lines(root / "c.de", de), en, de


def expected_filter(vocab, en, de, max_length):
    """(kept pairs, empty count, too-long count) computed with the Python SentencePiece."""
    src = vocab.encode_source(en, add_eos=False)
    tgt = vocab.encode_target(de)
    kept, empty, long = [], 0, 0
    for e, d, s, t in zip(en, de, src, tgt, strict=True):
        if not s or not t:
            empty += 1
        elif len(s) > max_length or len(t) > max_length:
            long += 1
        else:
            kept.append((e, d))
    return kept, empty, long


def batches(ds):
    return [((s.numpy(), ti.numpy()), to.numpy()) for (s, ti), to in ds]


def lengths(rows: np.ndarray) -> np.ndarray:
    return (rows != PAD_ID).sum(axis=1)


# ---- iter_lines and check_parallel_files


def test_iter_lines_plain_gzip_crlf_and_stdin(tmp_path, monkeypatch):
    raw = "eins\r\nzwei drei\n\nvier ü".encode()
    expected = [(1, "eins"), (2, "zwei drei"), (3, ""), (4, "vier ü")]
    (tmp_path / "a.txt").write_bytes(raw)
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(raw))
    assert list(iter_lines(tmp_path / "a.txt")) == expected
    assert list(iter_lines(tmp_path / "a.txt.gz")) == expected
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
    assert list(iter_lines("-")) == expected


def test_iter_lines_errors_name_file_and_line(tmp_path, monkeypatch):
    (tmp_path / "bad.txt").write_bytes(b"ok\nok\nab\xc3(\n")
    message = r"bad\.txt:3: invalid UTF-8 \(byte 0xc3 at offset 2 of the line\)"
    with pytest.raises(DataError, match=message):
        list(iter_lines(tmp_path / "bad.txt"))
    (tmp_path / "cut.gz").write_bytes(gzip.compress(b"a\n" * 5000)[:-30])
    with pytest.raises(DataError, match=r"cut\.gz:\d+: corrupt or truncated gzip"):
        list(iter_lines(tmp_path / "cut.gz"))
    (tmp_path / "fake.gz").write_bytes(b"plain text, not gzip\n")
    with pytest.raises(DataError, match=r"fake\.gz:1: corrupt or truncated gzip"):
        list(iter_lines(tmp_path / "fake.gz"))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"x\n\xff\n")))
    with pytest.raises(DataError, match=r"<stdin>:2: invalid UTF-8"):
        list(iter_lines("-"))
    with pytest.raises(DataError, match="is a directory"):
        list(iter_lines(tmp_path))


def test_check_parallel_files_counts(corpus, tmp_path):
    src, tgt, en, _ = corpus
    stats = check_parallel_files(src, tgt)
    assert (stats.lines, stats.empty_source, stats.empty_target) == (len(en), 2, 2)
    assert stats.empty_pairs == 3 and stats.usable_pairs == len(en) - 3
    gz = tmp_path / "c.de.gz"
    gz.write_bytes(gzip.compress(tgt.read_bytes()))
    assert check_parallel_files(src, gz).lines == len(en)


def test_check_parallel_files_errors(tmp_path):
    a = write_lines(tmp_path / "a.en", ["one", "two", "three"])
    b = write_lines(tmp_path / "b.de", ["eins", "zwei"])
    with pytest.raises(DataError, match=r"a\.en has 3 lines but .*b\.de has 2"):
        check_parallel_files(a, b)
    with pytest.raises(DataError, match=r"b\.de has 2 lines but .*a\.en has 3"):
        check_parallel_files(b, a)
    with pytest.raises(DataError, match=r"missing\.de: file not found"):
        check_parallel_files(a, tmp_path / "missing.de")
    (tmp_path / "empty.de").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.de: file is empty"):
        check_parallel_files(a, tmp_path / "empty.de")
    (tmp_path / "bad.de").write_bytes(b"eins\nzwei\ndr\xe4i\n")
    with pytest.raises(DataError, match=r"bad\.de:3: invalid UTF-8"):
        check_parallel_files(a, tmp_path / "bad.de")
    blank = write_lines(tmp_path / "blank.de", ["", " ", ""])
    with pytest.raises(DataError, match="every sentence pair has an empty side"):
        check_parallel_files(a, blank)


# ---- training pipeline


@pytest.mark.parametrize(
    "budget, width, max_length",
    [(64, 3, 20), (25, 1, 24), (13, 4, 12), (4096, 4, 100)],
)
def test_every_batch_respects_the_token_budget_and_layout(corpus, vocab, budget, width, max_length):
    src, tgt, _, _ = corpus
    config = DataConfig(max_length=max_length, batch_tokens=budget, bucket_width=width)
    ds = make_training_dataset(src, tgt, vocab, config, seed=1, repeat=False)
    spec = ds.element_spec
    assert [s.dtype.name for s in (spec[0][0], spec[0][1], spec[1])] == ["int32"] * 3
    seen = 0
    for (source, target_in), target_out in batches(ds):
        b, s = source.shape
        assert target_in.shape == target_out.shape and target_in.shape[0] == b
        assert b * max(s, target_in.shape[1]) <= budget
        src_len, tgt_len = lengths(source), lengths(target_in)
        assert src_len.max() == s and tgt_len.max() == target_in.shape[1]  # padded to longest
        for i in range(b):
            n, m = src_len[i], tgt_len[i]
            assert source[i, n - 1] == EOS_ID and EOS_ID not in source[i, : n - 1]
            assert n - 1 <= max_length and m - 1 <= max_length
            assert target_in[i, 0] == BOS_ID and target_out[i, m - 1] == EOS_ID
            np.testing.assert_array_equal(target_in[i, 1:m], target_out[i, : m - 1])
            assert not source[i, n:].any() and not target_out[i, m:].any()
        seen += b
    assert seen > 0


def test_batches_group_similar_lengths(corpus, vocab):
    src, tgt, _, _ = corpus
    config = DataConfig(max_length=40, batch_tokens=120, bucket_width=3, shuffle_buffer=500)
    sizes = []
    for (source, target_in), _ in batches(
        make_training_dataset(src, tgt, vocab, config, seed=3, repeat=False)
    ):
        longest = np.maximum(lengths(source), lengths(target_in))
        assert len(set((longest - 1) // 3)) == 1  # one bucket per batch
        assert longest.max() - longest.min() < 3
        sizes.append((longest.max(), len(longest)))
    # Short buckets get bigger batches: batch size is budget // bucket upper bound.
    by_len = sorted(sizes)
    assert max(b for _, b in by_len[:5]) > min(b for _, b in by_len[-5:])


@pytest.fixture(scope="module")
def epoch(corpus, vocab):
    """One shuffled epoch (seed 4) of the corpus with CONFIG, and its PipelineStats."""
    src, tgt, _, _ = corpus
    stats = PipelineStats()
    ds = make_training_dataset(src, tgt, vocab, CONFIG, seed=4, repeat=False, stats=stats)
    return batches(ds), stats


def flat(epoch_batches):
    return [np.concatenate([s.ravel(), ti.ravel(), to.ravel()]) for (s, ti), to in epoch_batches]


def test_round_trip_and_filter_counts(corpus, vocab, epoch):
    src, tgt, en, de = corpus
    kept, empty, long = expected_filter(vocab, en, de, CONFIG.max_length)
    assert empty == 3 and long > 20 and len(kept) > 50  # the corpus exercises both filters
    epoch_batches, stats = epoch
    pairs = []
    for (source, _), target_out in epoch_batches:
        pairs += zip(vocab.decode_source(source), vocab.decode_target(target_out), strict=True)
    assert Counter(pairs) == Counter(kept)
    assert stats.as_dict() == {
        "pairs_read": len(en),
        "empty_skipped": empty,
        "too_long_dropped": long,
        "pairs_kept": len(kept),
    }
    assert f"dropped {long} too long (> 20 pieces)" in stats.summary()
    assert stats.file_stats.lines == len(en)
    fresh = PipelineStats()
    fresh.pairs_read.assign(5)
    fresh.reset()
    assert fresh.as_dict()["pairs_read"] == 0


def test_seeded_determinism(corpus, vocab, epoch):
    src, tgt, _, _ = corpus

    def run(seed):
        return flat(
            batches(make_training_dataset(src, tgt, vocab, CONFIG, seed=seed, repeat=False))
        )

    first, again, other = flat(epoch[0]), run(4), run(8)
    assert len(first) == len(again) and all(map(np.array_equal, first, again))
    assert len(first) != len(other) or not all(map(np.array_equal, first, other))


def test_unshuffled_order_follows_the_file_within_a_bucket(corpus, vocab):
    src, tgt, en, de = corpus
    kept, _, _ = expected_filter(vocab, en, de, CONFIG.max_length)
    order = {pair[0]: i for i, pair in enumerate(kept)}
    ds = make_training_dataset(src, tgt, vocab, CONFIG, seed=0, shuffle=False, repeat=False)
    for (source, _), _ in batches(ds):
        positions = [order[line] for line in vocab.decode_source(source)]
        assert positions == sorted(positions)


def test_gzip_input_gives_the_same_batches(corpus, vocab, epoch, tmp_path):
    src, tgt, _, _ = corpus
    gz = []
    for path in (src, tgt):
        target = tmp_path / (path.name + ".gz")
        target.write_bytes(gzip.compress(path.read_bytes()))
        gz.append(target)
    zipped = flat(batches(make_training_dataset(*gz, vocab, CONFIG, seed=4, repeat=False)))
    plain = flat(epoch[0])
    assert len(plain) == len(zipped) and all(map(np.array_equal, plain, zipped))


def test_repeat_runs_past_one_epoch_and_stats_accumulate(corpus, vocab):
    src, tgt, en, de = corpus
    kept, _, _ = expected_filter(vocab, en, de, CONFIG.max_length)
    stats = PipelineStats()
    ds = make_training_dataset(src, tgt, vocab, CONFIG, seed=5, stats=stats)
    rows = sum(int(source.shape[0]) for (source, _), _ in ds.take(200))
    assert rows > 2 * len(kept)  # into the third epoch ...
    assert stats.as_dict()["pairs_read"] >= 2 * len(en)  # ... so two full passes were counted


def test_shards_partition_the_data(corpus, vocab):
    src, tgt, en, de = corpus
    kept, _, _ = expected_filter(vocab, en, de, CONFIG.max_length)
    seen = []
    for index in range(3):
        ds = make_training_dataset(
            src, tgt, vocab, CONFIG, seed=1, repeat=False, shard=(3, index), check_files=False
        )
        seen.append(Counter(line for (s, _), _ in batches(ds) for line in vocab.decode_source(s)))
    assert sum(seen, Counter()) == Counter(e for e, _ in kept)
    assert all(not (seen[i] & seen[j]) for i in range(3) for j in range(i + 1, 3))
    with pytest.raises(ConfigError, match="shard index 3"):
        make_training_dataset(src, tgt, vocab, CONFIG, seed=1, shard=(3, 3))


def test_budget_below_max_length_is_a_config_error(corpus, vocab):
    src, tgt, _, _ = corpus
    config = DataConfig(max_length=50, batch_tokens=50)
    with pytest.raises(ConfigError, match=r"data\.batch_tokens \(50\) must be at least .*\(51\)"):
        make_training_dataset(src, tgt, vocab, config, seed=1)


def test_pipeline_checks_files_first(corpus, vocab, tmp_path):
    src, _, en, _ = corpus
    short = write_lines(tmp_path / "short.de", ["Hallo."] * (len(en) - 1))
    with pytest.raises(DataError, match=rf"has {len(en)} lines but .*short\.de has {len(en) - 1}"):
        make_training_dataset(src, short, vocab, CONFIG, seed=1)
    with pytest.raises(DataError, match="file not found"):
        make_eval_dataset(src, tmp_path / "nope.de", vocab, CONFIG)


# ---- evaluation pipeline


def test_eval_dataset_keeps_every_pair(corpus, vocab):
    src, tgt, en, de = corpus
    stats = PipelineStats()
    config = DataConfig(max_length=12, batch_tokens=30, bucket_width=3)
    pairs, oversized = [], 0
    for (source, target_in), target_out in batches(
        make_eval_dataset(src, tgt, vocab, config, stats=stats)
    ):
        b = source.shape[0]
        if b * max(source.shape[1], target_in.shape[1]) > 30:
            assert b == 1  # only a single pair longer than the budget may exceed it
            oversized += 1
        pairs += zip(vocab.decode_source(source), vocab.decode_target(target_out), strict=True)
    # Empty sides come back as "" and nothing is truncated.
    assert Counter(pairs) == Counter((e, d.strip()) for e, d in zip(en, de, strict=True))
    assert oversized > 0
    assert stats.as_dict() == {
        "pairs_read": len(en),
        "empty_skipped": 0,
        "too_long_dropped": 0,
        "pairs_kept": len(en),
    }
