"""Throughput of the tf.data training pipeline (nmt.data.make_training_dataset).

Streams whole epochs of a parallel corpus (default: Multi30k en-de train, 29k pairs) through
the real pipeline (TextLineDataset -> SentencePiece op -> filters -> shuffle -> token
batching) and reports, per batch_tokens setting:

  pairs/s      sentence pairs delivered per second
  tokens/s     real (non-pad) tokens per second: source + target_out pieces incl. EOS
  padded/s     batch cells per second: B * (S + T), what the model actually processes
  pad %        share of those cells that are padding
  batches, mean B

Time runs from the first `next()` to the end of the epoch(s), so dataset construction
(tracing) is reported separately as `build s`. Training consumes roughly 1-3k tokens/s on
a 2-core CPU; the input should deliver at least 10x that.

    python scripts/bench_data.py                                # Multi30k, trains a vocab
    python scripts/bench_data.py --vocab vocab/ --batch-tokens 2048 4096 8192 --epochs 2
    python scripts/bench_data.py --data-dir DIR --src en --tgt fr
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "multi30k"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="train", help="file stem: train, val, test2016")
    parser.add_argument("--src", default="en")
    parser.add_argument("--tgt", default="de")
    parser.add_argument("--vocab", help="existing vocabulary (dir or .model); else train one")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--batch-tokens", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--max-length", type=int, default=100)
    parser.add_argument("--bucket-width", type=int, default=4)
    parser.add_argument("--shuffle-buffer", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=1, help="epochs timed per setting")
    parser.add_argument("--seed", type=int, default=1234)
    return parser.parse_args(argv)


def load_vocab(args, source: Path, target: Path):
    """(vocabulary, how it was obtained): `--vocab`, or a joint unigram trained here."""
    from nmt.config import VocabConfig
    from nmt.vocab import Vocab, train_vocab

    with tempfile.TemporaryDirectory() as tmp:
        if args.vocab:
            return Vocab.load(args.vocab), str(args.vocab)
        start = time.perf_counter()
        config = VocabConfig(size=args.vocab_size, seed=args.seed)
        vocab = train_vocab(config, [source], [target], tmp)
        seconds = time.perf_counter() - start
        return vocab, f"joint unigram {args.vocab_size} trained here in {seconds:.1f} s"


def time_setting(args, source: Path, target: Path, vocab, budget: int):
    """Stream `--epochs` epochs at batch_tokens `budget`: (the table row, the PipelineStats)."""
    from nmt.config import DataConfig
    from nmt.data import PipelineStats, make_training_dataset

    data = DataConfig(
        max_length=args.max_length,
        batch_tokens=budget,
        bucket_width=args.bucket_width,
        shuffle_buffer=args.shuffle_buffer,
    )
    stats = PipelineStats()
    start = time.perf_counter()
    ds = make_training_dataset(
        source, target, vocab, data, seed=args.seed, repeat=False, stats=stats, check_files=False
    )
    ds = ds.repeat(args.epochs)
    build = time.perf_counter() - start
    pairs = real = cells = batches = 0
    start = time.perf_counter()
    for (src, tgt_in), tgt_out in ds:
        b, s = src.shape
        t = tgt_in.shape[1]
        pairs += b
        batches += 1
        cells += b * (s + t)
        real += int((src.numpy() != 0).sum() + (tgt_out.numpy() != 0).sum())
    seconds = time.perf_counter() - start
    row = (
        f"| {budget} | {build:.2f} | {pairs / seconds:,.0f} | {real / seconds:,.0f} | "
        f"{cells / seconds:,.0f} | {100 * (1 - real / cells):.1f} | {batches} | "
        f"{pairs / batches:.1f} |"
    )
    return row, stats


def main(argv=None) -> int:
    args = parse_args(argv)
    source = args.data_dir / f"{args.split}.{args.src}"
    target = args.data_dir / f"{args.split}.{args.tgt}"
    if not source.exists():
        print(f"{source} not found (use --data-dir)", file=sys.stderr)
        return 2
    from nmt.data import check_parallel_files

    file_stats = check_parallel_files(source, target)
    vocab, vocab_note = load_vocab(args, source, target)
    print(f"corpus: {source} / {target} ({file_stats.lines} pairs)")
    print(f"vocab: {vocab_note}; max_length {args.max_length}, bucket_width {args.bucket_width}")
    print(f"cpus: {os.cpu_count()}, epochs timed per row: {args.epochs}\n")
    header = "| batch_tokens | build s | pairs/s | tokens/s | padded/s | pad % | batches | mean B |"
    print(header)
    print("|" + "---:|" * (header.count("|") - 1))
    for budget in args.batch_tokens:
        row, stats = time_setting(args, source, target, vocab, budget)
        print(row)
    print(f"\nfilters (last row): {stats.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
