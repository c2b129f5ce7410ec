"""Translation speed of a trained model: in-process greedy and beam search, and the CLI.

Three measurements on the same source file, printed as a Markdown table:

* greedy and beam (default 5), in process: `nmt.translator.Translator` on the model loaded once;
  a warm-up batch first (it traces the search function), then the whole file `--repeats` times;
  the median is reported. Target tokens are the SentencePiece pieces of the best hypotheses
  (EOS not counted). `traces` counts the tracings of the search function during the run
  (1 = traced once by the warm-up, no retracing per batch).
* `nmt translate --beam 5` as a subprocess, end to end: interpreter and TensorFlow start-up,
  model loading, tracing, translation and writing the output file (`--quiet`). Its output is
  compared with the in-process beam translations (printed below the table).

`seconds` is wall time and `CPU seconds` the CPU time of the process (all threads) over the
same span: when other work shares the machine, wall time grows while CPU time stays about the
same, so compare CPU seconds across runs made under different load.

Usage:
    python scripts/bench_translate.py --model DIR [--src FILE] [--checkpoint best]
                                      [--beam 5] [--batch-tokens N] [--repeats 3]
                                      [--lines N] [--no-cli]

The default source is ../shared/data/multi30k/test2016.en beside the repository.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

REPO = Path(__file__).resolve().parents[1]
MULTI30K = Path(os.environ.get("NMT_MULTI30K", REPO.parent / "shared" / "data" / "multi30k"))
DEFAULT_SRC = MULTI30K / "test2016.en"
WARMUP_LINES = 32


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="model directory")
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC, help="source text, one per line")
    parser.add_argument("--checkpoint", default="best", help="best, last or a checkpoint path")
    parser.add_argument("--beam", type=int, default=5, help="beam size of the beam runs")
    parser.add_argument(
        "--batch-tokens", type=int, help="source tokens per batch (default: the model's config)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the file")
    parser.add_argument("--lines", type=int, help="use only the first N lines")
    parser.add_argument("--no-cli", action="store_true", help="skip the end-to-end CLI run")
    args = parser.parse_args(argv)
    if args.beam < 2:
        parser.error("--beam must be at least 2 (greedy is always measured)")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def read_source(path: Path, limit: int | None) -> list[str]:
    from nmt.translator import iter_text_lines

    lines = [text for _, text in iter_text_lines(path)]
    return lines[:limit] if limit else lines


def time_translator(translator, lines: list[str], beam: int, repeats: int) -> dict:
    """Median wall time of translating `lines` after a warm-up batch; tokens of the output."""
    encoded = [translator.encode(line, number) for number, line in enumerate(lines, 1)]
    traced = translator.tracing_count()
    translator.translate_encoded(encoded[:WARMUP_LINES], beam_size=beam)
    seconds, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        hyps = translator.translate_encoded(encoded, beam_size=beam)
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {
        "run": "greedy" if beam == 1 else f"beam {beam}",
        "sentences": len(lines),
        "source_tokens": sum(len(ids) for ids in encoded),
        "target_tokens": sum(h[0].length for h in hyps),
        "seconds": statistics.median(seconds),
        "cpu_seconds": statistics.median(cpu),
        "traces": translator.tracing_count() - traced,
        "texts": [h[0].text for h in hyps],
    }


def nmt_command() -> list[str]:
    script = Path(sys.executable).with_name("nmt")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from nmt.cli import cli; cli()"]


def time_cli(args, lines: list[str], expected: list[str], source_tokens: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_translate.") as tmp:
        src = Path(tmp) / "src.txt"
        src.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        out = Path(tmp) / "out.txt"
        command = [*nmt_command(), "translate", str(src), "-o", str(out), "--model"]
        command += [str(args.model), "--checkpoint", args.checkpoint, "--beam", str(args.beam)]
        command += ["--quiet"]
        if args.batch_tokens:
            command += ["--batch-tokens", str(args.batch_tokens)]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            sys.exit(f"bench_translate: `{' '.join(command)}` failed:\n{done.stderr}")
        texts = out.read_text(encoding="utf-8").split("\n")[:-1]
    return {
        "run": f"`nmt translate --beam {args.beam}` (end to end)",
        "sentences": len(texts),
        "source_tokens": source_tokens,
        "target_tokens": None,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "traces": None,
        "same": texts == expected,
    }


def table(rows: list[dict]) -> str:
    head = "| run | sentences | source tokens | target tokens | seconds | CPU seconds "
    head += "| sentences/s | target tokens/s | traces |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|"
    out = [head]
    for r in rows:
        tgt = r["target_tokens"]
        cells = [
            r["run"],
            f"{r['sentences']}",
            f"{r['source_tokens']}",
            "" if tgt is None else f"{tgt}",
            f"{r['seconds']:.2f}",
            f"{r['cpu_seconds']:.2f}",
            f"{r['sentences'] / r['seconds']:.1f}",
            "" if tgt is None else f"{tgt / r['seconds']:.0f}",
            "" if r["traces"] is None else str(r["traces"]),
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv=None) -> None:
    args = parse_args(argv)
    if not args.src.exists():
        sys.exit(f"bench_translate: {args.src}: file not found (give --src)")
    import tensorflow as tf

    from nmt.checkpoints import load_model
    from nmt.translator import Translator

    lines = read_source(args.src, args.lines)
    loaded = load_model(args.model, args.checkpoint)
    decode = loaded.config.decode
    if args.batch_tokens:
        decode.batch_tokens = args.batch_tokens
    translator = Translator(loaded.model, loaded.vocab, decode)
    rows = [time_translator(translator, lines, beam, args.repeats) for beam in (1, args.beam)]
    if not args.no_cli:
        rows.append(time_cli(args, lines, rows[1]["texts"], rows[1]["source_tokens"]))

    params = sum(int(tf.size(w)) for w in loaded.model.weights)
    print(
        f"model {args.model} ({args.checkpoint}: {loaded.checkpoint_path.name}, "
        f"{params:,} parameters); source {args.src} ({len(lines)} lines)"
    )
    print(
        f"decode: batch_tokens {decode.batch_tokens}, length_penalty {decode.length_penalty}, "
        f"max length {decode.max_length_a} + {decode.max_length_b} x source; "
        f"median of {args.repeats} timed passes after a {WARMUP_LINES}-line warm-up"
    )
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, TensorFlow {tf.__version__}; "
        f"load average {os.getloadavg()[0]:.1f} at the end"
    )
    print()
    print(table(rows))
    if not args.no_cli:
        same = "identical to" if rows[2]["same"] else "DIFFERENT from"
        print(f"\nCLI output is {same} the in-process beam {args.beam} translations.")


if __name__ == "__main__":
    main()
