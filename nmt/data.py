"""Parallel text: streaming file checks and the tf.data training / evaluation pipelines.

Token layout of one example (ids from nmt/constants.py):

    source     = pieces(src) + [EOS]
    target_in  = [BOS] + pieces(tgt)
    target_out = pieces(tgt) + [EOS]

The training pipeline streams (nothing holds the corpus in Python):

    TextLineDataset(src) zip TextLineDataset(tgt)      plain text or .gz
      -> [shard(num_shards, index)]                    optional, for data parallelism
      -> batch(chunk) -> SentencepieceTokenizer        the tensorflow-text op the exported
                                                       model uses; chunked for speed
      -> skip pairs with an empty side, drop pairs with more than max_length pieces on
         either side (both counted in PipelineStats)  -> unbatch
      -> shuffle(shuffle_buffer, seed) -> [repeat]
      -> token-based batching in length buckets -> prefetch

Token-based batching. An example's length is L = max(len(source), len(target_in)).
Examples go to bucket k = (L - 1) // bucket_width, so a bucket holds lengths
k*w+1 .. (k+1)*w. Bucket k's batch size is

    B_k = max(1, batch_tokens // U_k),    U_k = min((k + 1) * w, max_length + 1)

and a batch is padded to its longest member, so its padded size is at most U_k on both
sides: max(S, T) * B <= U_k * B_k <= batch_tokens, padding included. In training every
example has L <= max_length + 1, so `batch_tokens >= max_length + 1` is required. The
evaluation pipeline drops nothing; there U_k = (k + 1) * w, and a single example longer
than batch_tokens forms a batch of one (the only case that exceeds the budget).

TensorFlow is imported inside the functions that need it, so the pure-Python helpers here
(`iter_lines`, `check_parallel_files`) stay cheap to import.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from nmt.constants import BOS_ID, EOS_ID, PAD_ID
from nmt.errors import ConfigError, DataError
from nmt.fileio import check_input, is_regular_file, iter_lines

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

    from nmt.config import DataConfig
    from nmt.vocab import Vocab

STDIN = "-"
TOKENIZE_CHUNK = 256  # lines tokenized per call of the SentencePiece op


# --------------------------------------------------------------------------------------------
# Reading text files (pure Python)


def _check_data_file(path: str | Path) -> None:
    """A training or dev file must be a regular file: tf.data reads it again every epoch."""
    check_input(path)
    if not is_regular_file(path):
        raise DataError(
            f"{path}: not a regular file (a pipe or device?); training reads its data files "
            "again every epoch and on resume, so save the data to a file first"
        )


@dataclass(frozen=True)
class ParallelFileStats:
    """What `check_parallel_files` found in one source/target pair of files."""

    source: str
    target: str
    lines: int  # sentence pairs (= lines in each file)
    empty_source: int  # pairs whose source line is empty or only whitespace
    empty_target: int
    empty_pairs: int  # pairs with at least one empty side (skipped in training)

    @property
    def usable_pairs(self) -> int:
        return self.lines - self.empty_pairs


def check_parallel_files(source: str | Path, target: str | Path) -> ParallelFileStats:
    """Stream both files once, checking they form a usable parallel corpus.

    Raises DataError for a missing or empty file, invalid UTF-8 (naming file and line), or
    different line counts (naming both files and both counts). Holds one line per side.
    """
    _check_data_file(source)
    _check_data_file(target)
    empty_source = empty_target = empty_pairs = 0
    counts = [0, 0]
    for pair in zip_longest(iter_lines(source), iter_lines(target)):
        for side, item in enumerate(pair):
            if item is not None:
                counts[side] = item[0]
        if pair[0] is None or pair[1] is None:
            continue
        src_empty = not pair[0][1].strip()
        tgt_empty = not pair[1][1].strip()
        empty_source += src_empty
        empty_target += tgt_empty
        empty_pairs += src_empty or tgt_empty
    for path, count in zip((source, target), counts, strict=True):
        if count == 0:
            raise DataError(f"{path}: file is empty")
    if counts[0] != counts[1]:
        raise DataError(
            f"{source} has {counts[0]} lines but {target} has {counts[1]}: "
            "parallel files must have the same number of lines"
        )
    if empty_pairs == counts[0]:
        raise DataError(f"{source} / {target}: every sentence pair has an empty side")
    return ParallelFileStats(
        source=str(source),
        target=str(target),
        lines=counts[0],
        empty_source=empty_source,
        empty_target=empty_target,
        empty_pairs=empty_pairs,
    )


# --------------------------------------------------------------------------------------------
# tf.data pipelines


def _tf():
    import tensorflow as tf

    return tf


class PipelineStats:
    """Counters the pipeline updates as it reads (int64 tf.Variables on the host).

    Counts accumulate over every pass through the data (each epoch of a repeated dataset
    adds again) and over every dataset built with this object; `reset()` zeroes them.
    `file_stats` holds the result of the up-front `check_parallel_files` when the pipeline
    ran it, and `max_length` the training length limit, for the summary line.
    """

    def __init__(self) -> None:
        tf = _tf()
        with tf.init_scope(), tf.device("/CPU:0"):
            self.pairs_read = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.empty_skipped = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.too_long_dropped = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.file_stats: Optional[ParallelFileStats] = None
        self.max_length: Optional[int] = None

    def as_dict(self) -> dict[str, int]:
        read = int(self.pairs_read.numpy())
        empty = int(self.empty_skipped.numpy())
        long = int(self.too_long_dropped.numpy())
        return {
            "pairs_read": read,
            "empty_skipped": empty,
            "too_long_dropped": long,
            "pairs_kept": read - empty - long,
        }

    def reset(self) -> None:
        for var in (self.pairs_read, self.empty_skipped, self.too_long_dropped):
            var.assign(0)

    def summary(self) -> str:
        d = self.as_dict()
        limit = f" (> {self.max_length} pieces)" if self.max_length is not None else ""
        return (
            f"read {d['pairs_read']} pairs: kept {d['pairs_kept']}, "
            f"skipped {d['empty_skipped']} with an empty side, "
            f"dropped {d['too_long_dropped']} too long{limit}"
        )


def _text_lines(path: str | Path):
    tf = _tf()
    compression = "GZIP" if str(path).endswith(".gz") else ""
    return tf.data.TextLineDataset(str(path), compression_type=compression)


def _parallelism(data_config: DataConfig) -> int:
    n = data_config.num_parallel_calls
    return _tf().data.AUTOTUNE if n == -1 else n


def _tokenized_pairs(
    source_path: str | Path,
    target_path: str | Path,
    vocab: Vocab,
    data_config: DataConfig,
    *,
    max_length: Optional[int],
    drop_empty: bool,
    stats: Optional[PipelineStats],
    shard: Optional[tuple[int, int]],
) -> tf.data.Dataset:
    """Lines -> (source, target_in, target_out) int32 vectors, filtered and counted."""
    tf = _tf()
    pairs = tf.data.Dataset.zip(_text_lines(source_path), _text_lines(target_path))
    if shard is not None:
        num_shards, index = shard
        if not 0 <= index < num_shards:
            raise ConfigError(f"shard index {index} is not in [0, {num_shards})")
        pairs = pairs.shard(num_shards, index)
    source_tokenizer = vocab.tf_tokenizer("source")
    target_tokenizer = vocab.tf_tokenizer("target")

    def tokenize(source_lines, target_lines):
        src = source_tokenizer.tokenize(source_lines)  # (C, None) ragged
        tgt = target_tokenizer.tokenize(target_lines)  # (C, None) ragged
        src_len = src.row_lengths()  # (C,)
        tgt_len = tgt.row_lengths()  # (C,)
        empty = tf.zeros_like(src_len, dtype=tf.bool)  # (C,)
        if drop_empty:
            empty = tf.logical_or(tf.equal(src_len, 0), tf.equal(tgt_len, 0))
        too_long = tf.zeros_like(empty)  # (C,)
        if max_length is not None:
            longer = tf.logical_or(src_len > max_length, tgt_len > max_length)
            too_long = tf.logical_and(longer, tf.logical_not(empty))
        keep = tf.logical_not(tf.logical_or(empty, too_long))  # (C,)
        if stats is not None:
            stats.pairs_read.assign_add(tf.size(keep, out_type=tf.int64))
            stats.empty_skipped.assign_add(tf.reduce_sum(tf.cast(empty, tf.int64)))
            stats.too_long_dropped.assign_add(tf.reduce_sum(tf.cast(too_long, tf.int64)))
        src = tf.ragged.boolean_mask(src, keep)  # (K, None)
        tgt = tf.ragged.boolean_mask(tgt, keep)  # (K, None)
        rows = src.nrows()
        eos = tf.fill(tf.stack([rows, 1]), tf.constant(EOS_ID, tf.int32))  # (K, 1)
        bos = tf.fill(tf.stack([rows, 1]), tf.constant(BOS_ID, tf.int32))  # (K, 1)
        source = tf.concat([src, eos], axis=1)  # (K, None)
        target_in = tf.concat([bos, tgt], axis=1)  # (K, None)
        target_out = tf.concat([tgt, eos], axis=1)  # (K, None)
        return source, target_in, target_out

    ds = pairs.batch(TOKENIZE_CHUNK).map(
        tokenize, num_parallel_calls=_parallelism(data_config), deterministic=True
    )
    # Unbatching ragged rows gives ragged-rank-0 values; the identity map makes them Tensors.
    return ds.unbatch().map(lambda s, ti, to: (s, ti, to))


def _batch_by_tokens(
    ds: tf.data.Dataset, batch_tokens: int, bucket_width: int, cap: Optional[int]
) -> tf.data.Dataset:
    """Group examples into length buckets and pad each batch to at most batch_tokens tokens."""
    tf = _tf()
    width = tf.constant(bucket_width, tf.int64)
    budget = tf.constant(batch_tokens, tf.int64)

    def bucket(source, target_in, target_out):
        length = tf.maximum(
            tf.shape(source, out_type=tf.int64)[0], tf.shape(target_in, out_type=tf.int64)[0]
        )
        return (length - 1) // width

    def batch_size(key):
        upper = (key + 1) * width
        if cap is not None:
            upper = tf.minimum(upper, tf.constant(cap, tf.int64))
        return tf.maximum(tf.constant(1, tf.int64), budget // upper)

    def batch(key, window):
        return window.padded_batch(
            batch_size(key),
            padded_shapes=([None], [None], [None]),
            padding_values=(PAD_ID, PAD_ID, PAD_ID),
        )

    ds = ds.group_by_window(bucket, batch, window_size_func=batch_size)
    return ds.map(lambda s, ti, to: ((s, ti), to))


def _check_budget(data_config: DataConfig) -> None:
    if data_config.batch_tokens < data_config.max_length + 1:
        raise ConfigError(
            f"data.batch_tokens ({data_config.batch_tokens}) must be at least "
            f"data.max_length + 1 ({data_config.max_length + 1}) so the longest pair fits"
        )
    if data_config.bucket_width <= 0:
        raise ConfigError(f"data.bucket_width must be positive, got {data_config.bucket_width}")


def make_training_dataset(
    source_path: str | Path,
    target_path: str | Path,
    vocab: Vocab,
    data_config: DataConfig,
    *,
    seed: int,
    shuffle: bool = True,
    repeat: bool = True,
    stats: Optional[PipelineStats] = None,
    shard: Optional[tuple[int, int]] = None,
    check_files: bool = True,
) -> tf.data.Dataset:
    """The training input: ((source_ids, target_in_ids), target_out_ids), int32, PAD-padded.

    Shapes (B, S), (B, T), (B, T) with max(S, T) * B <= data_config.batch_tokens. Pairs with
    an empty side are skipped and pairs longer than data_config.max_length pieces on either
    side are dropped; both are counted in `stats` when given. Deterministic for a seed.
    `shard=(num_shards, index)` keeps every num_shards-th pair for one worker.
    `check_files` first streams both files with `check_parallel_files` so bad input fails
    here with a clear DataError rather than mid-training.
    """
    _check_budget(data_config)
    if check_files:
        file_stats = check_parallel_files(source_path, target_path)
        if stats is not None:
            stats.file_stats = file_stats
    if stats is not None:
        stats.max_length = data_config.max_length
    ds = _tokenized_pairs(
        source_path,
        target_path,
        vocab,
        data_config,
        max_length=data_config.max_length,
        drop_empty=True,
        stats=stats,
        shard=shard,
    )
    if shuffle:
        ds = ds.shuffle(data_config.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = _batch_by_tokens(
        ds, data_config.batch_tokens, data_config.bucket_width, cap=data_config.max_length + 1
    )
    return ds.prefetch(_tf().data.AUTOTUNE)


def make_eval_dataset(
    source_path: str | Path,
    target_path: str | Path,
    vocab: Vocab,
    data_config: DataConfig,
    *,
    stats: Optional[PipelineStats] = None,
    check_files: bool = True,
) -> tf.data.Dataset:
    """Validation input, same structure as training: one pass, file order, nothing dropped.

    Every pair is kept (empty sides and long pairs too, nothing truncated) so the validation
    loss always covers the whole dev set. Batches follow the same token budget; a single
    pair longer than batch_tokens forms a batch of one.
    """
    if data_config.bucket_width <= 0:
        raise ConfigError(f"data.bucket_width must be positive, got {data_config.bucket_width}")
    if check_files:
        file_stats = check_parallel_files(source_path, target_path)
        if stats is not None:
            stats.file_stats = file_stats
    ds = _tokenized_pairs(
        source_path,
        target_path,
        vocab,
        data_config,
        max_length=None,
        drop_empty=False,
        stats=stats,
        shard=None,
    )
    ds = _batch_by_tokens(ds, data_config.batch_tokens, data_config.bucket_width, cap=None)
    return ds.prefetch(_tf().data.AUTOTUNE)
