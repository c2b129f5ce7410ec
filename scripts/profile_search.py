"""Where beam search spends its time: the parts of one search, timed apart on one batch.

Loads a model directory, takes the first --lines lines of --src as one batch (padded to the
longest, as one translator batch), and times, each as one compiled tf.function after a warm-up
call (median of --repeats):

    search     the full beam search (nmt.translator.make_search_fn) with every output forced
               to exactly --length pieces (decode.min_length = maximum), so that an untrained
               model does the same work as a trained one
    encoder    model.encode + prepare_memory
    steps      --length decoder steps (model.step) on batch x beam rows, argmax fed back
    steps+topk the same plus log_softmax and top-k over the vocabulary at every step

and reports the decoder steps' rate by a count of their matrix work (bench_train's
`decoder_step_flops`, the decoder part of its training-step count).
What is left of `search` after the encoder and `steps+topk` is the search's own bookkeeping
(reordering the state, gathers, finished sets).

Usage (repository root, this repository's venv):
    python scripts/profile_search.py --model DIR [--checkpoint last] --src test2016.en
        [--lines 264] [--beam 5] [--length 15] [--repeats 3] [--precision P] [--shortlist]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

from bench_train import decoder_step_flops  # noqa: E402  (one count for training and here)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="model directory")
    parser.add_argument("--checkpoint", default="last", help="best, last or a path")
    parser.add_argument("--src", type=Path, required=True, help="source text, one per line")
    parser.add_argument("--lines", type=int, default=264, help="batch size in sentences")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--length", type=int, default=15, help="output pieces per sentence")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--precision",
        default="float32",
        help="dtype policy to decode in (auto, float32, mixed_bfloat16, ...)",
    )
    parser.add_argument(
        "--shortlist",
        action="store_true",
        help="decode over the model's shortlist (decode.shortlist_* defaults)",
    )
    args = parser.parse_args(argv)
    for name in ("lines", "beam", "length", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}: expected at least 1, got {getattr(args, name)}")
    return args


def median_seconds(fn, repeats: int) -> float:
    fn()  # trace and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def source_batch(loaded, src: Path, n_lines: int):
    """The first `n_lines` lines of `src` as one padded batch: (source (B, S) int32,
    lengths (B,), the id rows with EOS)."""
    import numpy as np
    import tensorflow as tf

    from nmt import constants

    sp = loaded.vocab.processor("source")
    with open(src, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for _, line in zip(range(n_lines), f, strict=False)]
    ids = [sp.encode(line) + [constants.EOS_ID] for line in lines]
    source = np.zeros((len(ids), max(map(len, ids))), np.int32)
    for i, row in enumerate(ids):
        source[i, : len(row)] = row
    return tf.constant(source), tf.constant([len(r) for r in ids], tf.int32), ids


def decoder_steps_fn(model, source, k: int, steps: int, with_top_k: bool, shortlist=None):
    """A tf.function running `steps` decoder steps on batch x k rows, argmax fed back (with
    log-softmax and top-k over the vocabulary at every step when `with_top_k`); with a
    shortlist, over the batch's shortlist columns (the ids fed back are then column indices,
    which changes the embeddings looked up, not the work)."""
    import tensorflow as tf

    from nmt import constants, search
    from nmt.translator import _decode_vocabulary

    memory, mask, state0 = model.encode(source, training=False)
    tiled = search.tile_beams(model.prepare_memory(memory, mask), k)
    state = search.tile_beams(state0, k)
    first = tf.fill([int(source.shape[0]) * k], constants.BOS_ID)

    @tf.function(autograph=False)
    def run():
        _, options = _decode_vocabulary(model, shortlist, source, None)
        x, s, out = first, state, None
        for _ in range(steps):
            logits, s, _ = model.step(x, s, tiled, training=False, **options)  # (N, V or K)
            if with_top_k:
                log_probs = tf.nn.log_softmax(logits)  # (N, V)
                out, words = tf.math.top_k(log_probs, k=k)  # (N, K)
                x = words[:, 0]
            else:
                out = logits
                x = tf.argmax(logits, axis=-1, output_type=tf.int32)  # (N,)
        return out

    return run


def time_parts(
    model, source, lengths, k: int, steps: int, repeats: int, shortlist=None
) -> dict[str, float]:
    """Median seconds of the full search, the encoder, the decoder steps with and without
    top-k."""
    import tensorflow as tf

    from nmt.translator import make_search_fn

    searcher = make_search_fn(
        model,
        beam_size=k,
        max_length_a=steps,
        max_length_b=0.0,
        min_length=steps,
        shortlist=shortlist,
    )
    full = tf.function(lambda s, n: searcher(s, n, 0.0).ids, autograph=False)

    @tf.function(autograph=False)
    def encode():
        memory, mask, _ = model.encode(source, training=False)
        return model.prepare_memory(memory, mask)[0]

    plain = decoder_steps_fn(model, source, k, steps, False, shortlist)
    topk = decoder_steps_fn(model, source, k, steps, True, shortlist)
    return {
        "search": median_seconds(lambda: full(source, lengths).numpy(), repeats),
        "encoder": median_seconds(lambda: encode().numpy(), repeats),
        "steps": median_seconds(lambda: plain().numpy(), repeats),
        "steps+topk": median_seconds(lambda: topk().numpy(), repeats),
    }


def print_profile(args, loaded, ids: list, timings: dict[str, float]) -> None:
    import numpy as np

    batch, width, k, steps = len(ids), max(map(len, ids)), args.beam, args.length
    vocab_size = int(loaded.model.target_vocab_size)
    mean_source = float(np.mean([len(r) for r in ids]))
    row_flops = decoder_step_flops(loaded.config.model, vocab_size, width)
    flops = row_flops * batch * k * steps
    rows = [
        ("full beam search", timings["search"]),
        ("encoder", timings["encoder"]),
        (f"{steps} decoder steps on {batch * k} rows", timings["steps"]),
        ("log-softmax + top-k at every step", timings["steps+topk"] - timings["steps"]),
        (
            "search bookkeeping (the rest)",
            timings["search"] - timings["encoder"] - timings["steps+topk"],
        ),
    ]
    listed = "the whole target vocabulary"
    if args.shortlist:
        decode = loaded.config.decode
        listed = (f"the shortlist (k={decode.shortlist_top_k} N={decode.shortlist_frequent}; "
                  "the decoder-step count below is for the whole vocabulary)")  # fmt: skip
    print(
        f"{args.model} ({args.checkpoint}), {batch} sentences of {args.src.name} (mean "
        f"{mean_source:.1f} pieces with EOS, padded to {width}), beam {k}, {steps} pieces each, "
        f"target vocabulary {vocab_size}, over {listed}, precision {args.precision}; median "
        f"of {args.repeats}"
    )
    print()
    print("| part | seconds | share of the search |")
    print("|---|--:|--:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} | {seconds / timings['search']:.0%} |")
    print()
    print(
        f"decoder steps: {flops / 1e9:.0f} GFLOP by count "
        f"({row_flops / 1e6:.1f} MFLOP a row "
        f"and step), {flops / timings['steps'] / 1e9:.0f} GFLOP/s"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.src.is_file():
        print(f"profile_search: {args.src}: file not found", file=sys.stderr)
        return 2
    from nmt import shortlist as shortlists
    from nmt.checkpoints import load_model
    from nmt.errors import NmtError
    from nmt.precision import resolve_precision

    try:
        loaded = load_model(args.model, args.checkpoint, resolve_precision(args.precision))
        table = shortlists.prepare(loaded, True)[1] if args.shortlist else None
    except NmtError as e:
        print(f"profile_search: {e}", file=sys.stderr)
        return 2
    source, lengths, ids = source_batch(loaded, args.src, args.lines)
    timings = time_parts(loaded.model, source, lengths, args.beam, args.length, args.repeats, table)
    print_profile(args, loaded, ids, timings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
