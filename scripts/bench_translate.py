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

With `--shortlist K:N` (repeatable) the script instead compares beam search without and with
vocabulary shortlists (nmt/shortlist.py; the model directory needs `nmt shortlist`): top-K
targets per source piece plus the N most frequent. The variants' timed passes alternate
(none, K:N, ..., none, K:N, ...) so that load on a shared machine hits them alike; each row
gives the median, the speed-up over no shortlist, the mean shortlist size per batch and,
with `--ref`, sacreBLEU of the (deterministic) translations. `--precision float32,mixed_bfloat16`
runs every variant in each precision (one model loaded per precision), all alternating.

`seconds` is wall time and `CPU seconds` the CPU time of the process (all threads) over the
same span: when other work shares the machine, wall time grows while CPU time stays about the
same, so compare CPU seconds across runs made under different load.

Usage:
    python scripts/bench_translate.py --model DIR [--src FILE] [--checkpoint best]
                                      [--beam 5] [--batch-tokens N] [--repeats 3]
                                      [--lines N] [--no-cli]
                                      [--shortlist K:N ...] [--ref FILE]
                                      [--precision float32[,mixed_bfloat16]]

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
    parser.add_argument(
        "--shortlist",
        action="append",
        default=[],
        metavar="K:N",
        type=shortlist_setting,
        help="compare beam search with this shortlist (top-K per source piece, N frequent)",
    )
    parser.add_argument("--ref", type=Path, help="references: BLEU of each shortlist variant")
    parser.add_argument(
        "--precision",
        default="float32",
        help="comma-separated dtype policies to compare with --shortlist (nmt.precision)",
    )
    args = parser.parse_args(argv)
    if args.beam < 2:
        parser.error("--beam must be at least 2 (greedy is always measured)")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def shortlist_setting(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K:N, got {text!r}") from None
    if k < 1 or n < 0:
        raise argparse.ArgumentTypeError(f"K must be >= 1 and N >= 0, got {text!r}")
    return k, n


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


def mean_shortlist_size(translator, encoded: list[list[int]]) -> float:
    """Mean K over the batches the translator makes of `encoded` (its shortlist per batch)."""
    sizes = []
    for batch in translator._batches(encoded, translator.decode_config.batch_tokens):
        width = max(len(encoded[i]) for i in batch)
        rows = [encoded[i] + [0] * (width - len(encoded[i])) for i in batch]
        sizes.append(int(translator.shortlist.ids(rows).shape[0]))
    return statistics.mean(sizes)


def shortlist_variants(args, loaded, decode) -> list[tuple[str, object]]:
    """(name, Translator) without and with each --shortlist, for each --precision."""
    from nmt import shortlist as shortlists
    from nmt.checkpoints import load_model
    from nmt.translator import Translator

    tables = [("no shortlist", None)]
    for k, n in args.shortlist:
        options = shortlists.configure(decode, True, k, n)
        tables.append(
            (f"shortlist k={k} N={n}", shortlists.for_decoding(args.model, loaded.vocab, options))
        )
    variants = []
    for precision in args.precision.split(","):
        model = (
            loaded.model
            if precision == "float32"
            else load_model(args.model, args.checkpoint, precision).model
        )
        for name, table in tables:
            translator = Translator(model, loaded.vocab, decode, shortlist=table)
            variants.append((f"{precision}, {name}", translator))
    return variants


def compare_shortlists(args, loaded, decode, lines: list[str]) -> list[dict]:
    """Beam search without and with each --shortlist, timed passes alternating."""
    from nmt.evaluation import score
    from nmt.translator import iter_text_lines

    variants = shortlist_variants(args, loaded, decode)
    translators = [translator for _, translator in variants]
    encoded = [translators[0].encode(line, number) for number, line in enumerate(lines, 1)]
    for translator in translators:  # warm-up: traces each search function
        translator.translate_encoded(encoded[:WARMUP_LINES], beam_size=args.beam)
    seconds = [[] for _ in variants]
    cpu = [[] for _ in variants]
    texts = [None for _ in variants]
    for _ in range(args.repeats):
        for i, translator in enumerate(translators):
            start, start_cpu = time.perf_counter(), time.process_time()
            hyps = translator.translate_encoded(encoded, beam_size=args.beam)
            seconds[i].append(time.perf_counter() - start)
            cpu[i].append(time.process_time() - start_cpu)
            texts[i] = [h[0].text for h in hyps]
    refs = [t for _, t in iter_text_lines(args.ref)][: len(lines)] if args.ref else None
    rows = []
    for i, (name, translator) in enumerate(variants):
        table = translator.shortlist
        size = mean_shortlist_size(translator, encoded) if table else loaded.vocab.target_size
        rows.append({
            "run": f"beam {args.beam}, {name}",
            "seconds": statistics.median(seconds[i]),
            "cpu_seconds": statistics.median(cpu[i]),
            "size": size,
            "bleu": score(texts[i], refs).score if refs else None,
            "same": texts[i] == texts[0],
        })  # fmt: skip
    return rows


def shortlist_table(rows: list[dict], sentences: int) -> str:
    head = "| run | mean K | seconds | CPU seconds | sentences/s | speed-up | BLEU | same as none |"
    out = [head, "|---|--:|--:|--:|--:|--:|--:|---|"]
    for r in rows:
        bleu = "" if r["bleu"] is None else f"{r['bleu']:.2f}"
        cells = [r["run"], f"{r['size']:.0f}", f"{r['seconds']:.2f}", f"{r['cpu_seconds']:.2f}",
                 f"{sentences / r['seconds']:.1f}", f"{rows[0]['seconds'] / r['seconds']:.2f}x",
                 bleu, "yes" if r["same"] else "no"]  # fmt: skip
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
    if args.shortlist:
        rows = compare_shortlists(args, loaded, decode, lines)
        print_setting(args, loaded, decode, lines, tf)
        print(shortlist_table(rows, len(lines)))
        return
    translator = Translator(loaded.model, loaded.vocab, decode)
    rows = [time_translator(translator, lines, beam, args.repeats) for beam in (1, args.beam)]
    if not args.no_cli:
        rows.append(time_cli(args, lines, rows[1]["texts"], rows[1]["source_tokens"]))

    print_setting(args, loaded, decode, lines, tf)
    print(table(rows))
    if not args.no_cli:
        same = "identical to" if rows[2]["same"] else "DIFFERENT from"
        print(f"\nCLI output is {same} the in-process beam {args.beam} translations.")


def print_setting(args, loaded, decode, lines, tf) -> None:
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
    from nmt.precision import cpu_description

    print(f"CPU: {cpu_description()}")
    print()


if __name__ == "__main__":
    main()
