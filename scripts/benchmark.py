"""The Multi30k benchmark of issue #7: nmt and OpenNMT-tf side by side, written into BENCHMARKS.md.

One command runs every measurement as its own subprocess (clean start-up; wall time, CPU time
and peak resident memory of that process from `os.wait4`) and writes Markdown tables, with the
exact commands, the date and the machine, between the markers
`<!-- benchmark.py:begin -->` and `<!-- benchmark.py:end -->` of BENCHMARKS.md (appended at the
end of the file when absent; only what lies between them is replaced, and a run of some
sections keeps the others' earlier tables). PNG plots go to docs/benchmarks/ (or --plots).

Sections (--sections 1,2,3,4,5):

1. nmt.layers.LSTM vs keras.layers.LSTM: scripts/bench_lstm.py's alternating training and
   forward steps, tokens/s and ratio.
2. Training throughput, same model size: our NMTSmallV1-shaped model (bench_train.small_v1_config:
   2x512 unidirectional LSTM encoder and decoder, 512-dim embeddings, general attention, input
   feeding, dropout 0.3, no residual, copy bridge, Adam 2e-4) trained with `nmt train` and
   OpenNMT-tf's NMTSmallV1 with `onmt-main train --auto_config` (scripts/bench_peer.py), both on
   the same 8k joint SentencePiece model and Multi30k train set, in alternating short runs that
   each continue from their own checkpoint. Ours runs at (a) batch_tokens chosen so that the
   mean number of sentences per batch is about 64 (the peer's batch size; measured on the real
   pipeline) and (b) batch_tokens 4096. Steady-state tokens/s comes from each tool's own log,
   skipping the first report of every run (tracing, warm-up). GFLOP/s of ours is set beside
   tf.matmul's rate on this machine for a large square product and the model's batch-64 shapes.
3. Decoding test2016 (1000 lines): `nmt translate --beam B` vs `onmt-main infer` with the same
   beam (5 and 1), end to end, with the section-2 models (same shape, same number of steps),
   plus our recommended model (--model, default runs/ende_b, its `best/` checkpoint and its own
   decode config) with its BLEU. The two same-size models are barely trained, so left
   alone they stop after a piece or two (or babble to their limit) and the rows would time
   start-up and unequal work. So both decode exactly the same number of pieces per sentence:
   at least --decode-min-length M and at most --decode-max-length L (default M = L = 15, the
   mean test2016 reference length; `--decode-min-length 0` gives a limit only). The peer gets
   them as OpenNMT-tf's `params.minimum_decoding_length` / `maximum_decoding_length`, ours
   through a copy of the section-2 model directory's config.yaml with `decode.min_length: M`,
   `decode.max_length_a: L`, `decode.max_length_b: 0` beside links to its checkpoints and
   vocabulary (nmt's limit is floor(a + b x source length)). Steady-
   state sentences/s is derived the same way for every system: (lines of the full file - lines
   of the head) / (wall time of the full file - wall time of its first 100 lines), which cancels
   start-up.
4. Peak resident memory of every process of sections 2 and 3, with a summary per system.
5. How cost grows: training tokens/s, step time and peak RSS at batch_tokens 1k..16k
   (NMTSmallV1 shape, a few steps each), and decoding time per sentence vs source length
   (inputs of exactly 10..200 SentencePiece pieces built from concatenated test2016 sentences)
   and beam size (1, 5, 10) with the recommended model; a table and one PNG.

`--quick` shrinks every section to a smoke run; `--skip-peer` leaves OpenNMT-tf out (its cells
read "not run"). Scratch files, logs (with arrival times) and results.json go to --workdir. The
planned time of each section is printed at the start and the actual time at the end; the plan
is an estimate, one reference machine's costs scaled by a quarter-second float32 matmul probe
of this one (its GFLOP/s printed with it), and section 3's assumes every output of the
same-size models runs to --decode-max-length. A section that fails leaves its earlier tables
in place; the others still run and the exit status is 1.

The work is done by the bench/ package (not shipped in the wheel): one module per section in
bench/sections/ (`run(ctx) -> dict`, `render(ctx, out) -> str`, the explanatory prose in
bench/templates/), the one process runner (bench/proc.py), the plan and its time budget
(bench/plan.py), the workers that run the TensorFlow parts in their own processes
(bench/workers.py). This file is its command line.

Usage (repository root, this repository's venv):
    python scripts/benchmark.py [--sections 1,2,3,4,5] [--quick] [--skip-peer]
        [--out BENCHMARKS.md] [--plots docs/benchmarks] [--workdir runs/bench]
        [--model runs/ende_b] [--decode-max-length 15] [--decode-min-length 15]
        [--data ../shared/data/multi30k]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python scripts/benchmark.py`: bench/ is beside nmt/
    sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    ALL_SECTIONS,
    DEFAULT_DATA,
    DEFAULT_DECODE_MAX_LENGTH,
    DEFAULT_MODEL,
    DEFAULT_WORKDIR,
    BenchError,
)
from bench.context import Benchmark  # noqa: E402
from bench.workers import worker_main  # noqa: E402


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", default="1,2,3,4,5", help="comma list of 1-5")
    parser.add_argument("--quick", action="store_true", help="smoke run of every section")
    parser.add_argument("--skip-peer", action="store_true", help="leave OpenNMT-tf out")
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--plots", type=Path, default=REPO / "docs" / "benchmarks")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="recommended model")
    parser.add_argument(
        "--decode-max-length",
        type=int,
        default=DEFAULT_DECODE_MAX_LENGTH,
        metavar="L",
        help="output limit in pieces of both same-size models in section 3 "
        f"(default {DEFAULT_DECODE_MAX_LENGTH}; the recommended model keeps its own config)",
    )
    parser.add_argument(
        "--decode-min-length",
        type=int,
        metavar="M",
        help="minimum output length in pieces of both same-size models in section 3 "
        "(default: the same as --decode-max-length, i.e. exactly L pieces; 0: no minimum)",
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Multi30k directory")
    parser.add_argument("--pair", default="en-de", help="source-target languages")
    args = parser.parse_args(argv)
    try:
        sections = sorted({int(s) for s in args.sections.split(",") if s.strip()})
    except ValueError:
        parser.error(f"--sections: expected numbers from 1 to 5, got {args.sections!r}")
    if not sections or any(s not in ALL_SECTIONS for s in sections):
        parser.error(f"--sections: expected numbers from 1 to 5, got {args.sections!r}")
    if args.pair.count("-") != 1:
        parser.error(f"--pair: expected SRC-TGT like en-de, got {args.pair!r}")
    if args.decode_max_length < 1:
        parser.error(f"--decode-max-length: expected at least 1, got {args.decode_max_length}")
    if args.decode_min_length is None:
        args.decode_min_length = args.decode_max_length
    if not 0 <= args.decode_min_length <= args.decode_max_length:
        parser.error(
            f"--decode-min-length: expected 0 to --decode-max-length "
            f"({args.decode_max_length}), got {args.decode_min_length}"
        )
    args.section_list = sections
    args.out = args.out.resolve()
    args.plots = args.plots.resolve()
    args.workdir = args.workdir.resolve()
    return args


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker_main(argv[1:])
    args = parse_args(argv)
    bench = Benchmark(args)
    try:
        return bench.main(args.section_list)
    except BenchError as e:
        print(f"benchmark: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
