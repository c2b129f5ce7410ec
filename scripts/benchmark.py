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
   plus our recommended model (--model, default /work/runs/ende_b, its `best/` checkpoint and
   its own decode config) with its BLEU. The two same-size models are barely trained, so left
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
planned time of each section is printed at the start and the actual time at the end (section
3's plan assumes every output of the same-size models runs to --decode-max-length). A section
that fails leaves its earlier tables in place; the others still run and the exit status is 1.

Usage (repository root, this repository's venv):
    python scripts/benchmark.py [--sections 1,2,3,4,5] [--quick] [--skip-peer]
        [--out BENCHMARKS.md] [--plots docs/benchmarks] [--workdir /work/runs/bench]
        [--model /work/runs/ende_b] [--decode-max-length 15] [--decode-min-length 15]
        [--data ../shared/data/multi30k]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib
import importlib.metadata
import inspect
import io
import json
import math
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))  # bench_lstm, bench_train, bench_translate, bench_peer

DEFAULT_DATA = Path(os.environ.get("NMT_MULTI30K", REPO.parent / "shared" / "data" / "multi30k"))
DEFAULT_MODEL = Path("/work/runs/ende_b")
# Pieces: the same-size models' output length in section 3, minimum and maximum by default
# (equal work per sentence for both toolkits). 15 = the mean length of a test2016 German
# reference in an 8k joint unigram SentencePiece model of Multi30k en-de (14.99).
DEFAULT_DECODE_MAX_LENGTH = 15
DEFAULT_WORKDIR = Path("/work/runs/bench")
BEGIN = "<!-- benchmark.py:begin -->"
END = "<!-- benchmark.py:end -->"
SECTION_MARK = "<!-- benchmark.py:section {} -->"
_SECTION_RE = re.compile(r"^<!-- benchmark\.py:section (\d+) -->$", re.MULTILINE)
NOT_RUN = "not run"
ALL_SECTIONS = (1, 2, 3, 4, 5)
PEER_BATCH = 64  # sentences per batch of OpenNMT-tf's NMTSmallV1 with --auto_config
NMT_A = "nmt NMTSmallV1 shape (a)"  # batch_tokens matched to the peer's 64 sentences
NMT_B = "nmt NMTSmallV1 shape (b)"  # batch_tokens 4096
NMT_A_MATCHED = "nmt NMTSmallV1 shape (a), peer's batch"  # decoding batch ~ the peer's 32
PEER_INFER_BATCH = 32  # sentences per decoding batch of OpenNMT-tf (infer.batch_size default)
PEER_NAME = "OpenNMT-tf NMTSmallV1"
SECTION_TITLES = {
    1: "B1. nmt.layers.LSTM vs keras.layers.LSTM",
    2: "B2. Training throughput, NMTSmallV1 shape: nmt vs OpenNMT-tf",
    3: "B3. Decoding test2016: nmt vs OpenNMT-tf",
    4: "B4. Peak resident memory",
    5: "B5. How cost grows with batch size, source length and beam",
}


class BenchError(Exception):
    """A step of the benchmark failed; the message names the command or file."""


# ============================================================================================
# Pure helpers (unit-tested): Markdown block, tables, log parsing, inputs of a given length
# ============================================================================================


def replace_between_markers(text: str, block: str) -> str:
    """`text` with everything between BEGIN and END replaced by `block`.

    Without the markers, they are appended (with `block`) at the end. The markers must each
    occur at most once, BEGIN before END; anything else raises BenchError.
    """
    block = block if block.endswith("\n") or not block else block + "\n"
    begins, ends = text.count(BEGIN), text.count(END)
    if begins == 0 and ends == 0:
        prefix = text if not text or text.endswith("\n") else text + "\n"
        if prefix:
            prefix += "\n"
        return f"{prefix}{BEGIN}\n{block}{END}\n"
    if begins != 1 or ends != 1:
        raise BenchError(
            f"expected one {BEGIN} and one {END}, found {begins} and {ends}; fix the file by hand"
        )
    start, stop = text.index(BEGIN), text.index(END)
    if stop < start:
        raise BenchError(f"{END} comes before {BEGIN}; fix the file by hand")
    return text[: start + len(BEGIN)] + "\n" + block + text[stop:]


def extract_block(text: str) -> str:
    """What lies between the markers ('' when they are absent)."""
    if BEGIN not in text or END not in text:
        return ""
    start = text.index(BEGIN) + len(BEGIN)
    stop = text.index(END)
    return text[start:stop].strip("\n") + "\n" if stop > start else ""


def split_sections(block: str) -> tuple[str, dict[int, str]]:
    """(text before the first section marker, {section number: its text incl. the marker})."""
    matches = list(_SECTION_RE.finditer(block))
    if not matches:
        return block, {}
    head = block[: matches[0].start()]
    sections = {}
    for i, m in enumerate(matches):
        stop = matches[i + 1].start() if i + 1 < len(matches) else len(block)
        sections[int(m.group(1))] = block[m.start() : stop].rstrip("\n") + "\n"
    return head, sections


def merge_block(old_block: str, head: str, new_sections: dict[int, str]) -> str:
    """A block with `head`, the old block's sections, and `new_sections` replacing theirs.

    Each new section's text must start with its SECTION_MARK line (added when missing).
    Sections are ordered by number.
    """
    _, sections = split_sections(old_block)
    for number, text in new_sections.items():
        mark = SECTION_MARK.format(number)
        if not text.startswith(mark):
            text = f"{mark}\n{text}"
        sections[number] = text.rstrip("\n") + "\n"
    parts = [head.rstrip("\n") + "\n"] if head.strip() else []
    parts += [sections[n] for n in sorted(sections)]
    return "\n".join(parts)


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write `data` to a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    kwargs = {} if isinstance(data, bytes) else {"encoding": "utf-8", "newline": ""}
    with tempfile.NamedTemporaryFile(
        mode, dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False, **kwargs
    ) as f:
        tmp = Path(f.name)
        try:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise
    try:
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def update_markdown(path: Path, head: str, sections: dict[int, str]) -> None:
    """Replace `sections` (and the head) inside the markers of `path`, atomically."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = merge_block(extract_block(text), head, sections)
    write_atomic(path, replace_between_markers(text, block))


def format_table(columns: Sequence[tuple[str, str]], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table. `columns`: (header, "l" or "r"); a cell of None is left empty.

    Cells are str() of the value with `|` escaped; floats should be formatted by the caller.
    """
    header = "| " + " | ".join(name for name, _ in columns) + " |"
    rule = "|" + "|".join("---:" if align == "r" else "---" for _, align in columns) + "|"
    out = [header, rule]
    for row in rows:
        row = list(row)
        if len(row) != len(columns):
            raise ValueError(f"row has {len(row)} cells, the table {len(columns)} columns: {row}")
        cells = ["" if cell is None else str(cell).replace("|", "\\|") for cell in row]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def fmt(value: Optional[float], digits: int = 0, *, missing: str = "") -> str:
    """A number with thousands separators and `digits` decimals; `missing` for None/NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return f"{value:,.{digits}f}"


def mib(nbytes: Optional[int]) -> Optional[float]:
    return None if nbytes is None else nbytes / 2**20


@dataclass
class LogWindow:
    """One `step N/M ... X tok/s` line of `nmt train`: the rate over the steps since the last
    line; `time` is when the line arrived (seconds since the process started), when known."""

    step: int
    tokens_per_s: float
    time: Optional[float] = None


_STEP_LINE = re.compile(
    r"^(?:\[\s*(?P<time>\d+(?:\.\d+)?)\]\s*)?step (?P<step>\d+)/\d+ .*?"
    r"(?P<rate>\d+(?:\.\d+)?)(?P<k>k?) tok/s(?:\s|$)"
)


def parse_nmt_train_log(text: str) -> list[LogWindow]:
    """The report lines of one `nmt train` run, in order (`3.0k tok/s` = 3000 tokens/s).

    Lines may carry the `[  12.345] ` arrival-time prefix that `run_timed` writes.
    """
    windows = []
    for line in text.splitlines():
        m = _STEP_LINE.match(line.strip())
        if m:
            rate = float(m.group("rate")) * (1000.0 if m.group("k") else 1.0)
            when = float(m.group("time")) if m.group("time") is not None else None
            windows.append(LogWindow(int(m.group("step")), rate, when))
    return windows


@dataclass
class SteadyRate:
    tokens_per_s: float  # time-weighted mean of the reported rates (plain mean without times)
    step_seconds: Optional[float]  # wall seconds per step between report lines
    steps: int  # steps inside the windows used
    windows: int


def steady_rate(runs: Sequence[Sequence[LogWindow]], skip: int = 1) -> Optional[SteadyRate]:
    """Steady-state rate over several runs, leaving out the first `skip` windows of each run.

    The first window of a run includes tracing and the input pipeline's warm-up. With arrival
    times, each used window lasts from the previous line to its own and the rate is
    sum(rate * duration) / sum(duration), i.e. tokens / time; without them, the plain mean.
    None when no window is left.
    """
    rates, durations, steps = [], [], 0
    for windows in runs:
        for i in range(max(skip, 1) if skip else 0, len(windows)):
            w = windows[i]
            if i == 0:  # only reachable with skip=0: no previous line to measure from
                rates.append(w.tokens_per_s)
                durations.append(None)
                steps += w.step
                continue
            prev = windows[i - 1]
            steps += w.step - prev.step
            rates.append(w.tokens_per_s)
            if w.time is not None and prev.time is not None:
                durations.append(w.time - prev.time)
            else:
                durations.append(None)
    if not rates:
        return None
    if all(d is not None and d > 0 for d in durations):
        total = sum(durations)
        rate = sum(r * d for r, d in zip(rates, durations, strict=True)) / total
        step_seconds = total / steps if steps else None
    else:
        rate, step_seconds = statistics.fmean(rates), None
    return SteadyRate(rate, step_seconds, steps, len(rates))


def peer_steady_rate(runs: Sequence[Any], batch_size: int) -> dict:
    """OpenNMT-tf's steady state, computed like ours from its reports (bench_peer
    ThroughputReport: steps_per_sec, tokens_per_sec): the non-zero reports after the first of
    every run (all of a run's non-zero reports when it has only one; OpenNMT-tf reports zeros
    while it ignores a run's first updates), weighted by duration. The report windows are
    equally many steps, so a window's duration is 1 / its steps/s. `tokens_per_s_nmt` adds
    the EOS per source sentence nmt counts and OpenNMT-tf does not (steps/s x batch size)."""
    kept = []
    for run in runs:
        reports = [r for r in run.reports if r.steps_per_sec > 0]
        kept += reports[1:] or reports
    if not kept:
        return {"tokens_per_s": None, "tokens_per_s_nmt": None, "step_seconds": None, "windows": 0}
    durations = [1.0 / r.steps_per_sec for r in kept]
    total = sum(durations)
    own = sum(r.tokens_per_sec * d for r, d in zip(kept, durations, strict=True)) / total
    return {
        "tokens_per_s": own,
        "tokens_per_s_nmt": own + len(kept) * batch_size / total,
        "step_seconds": total / len(kept),
        "windows": len(kept),
    }


def parse_parameters(text: str) -> Optional[int]:
    """The parameter count `nmt train` logs (`training DIR: ..., 22,527,808 parameters, ...`)."""
    m = re.search(r"training .*?, ([\d,]+) parameters", text)
    return int(m.group(1).replace(",", "")) if m else None


def build_length_inputs(
    sentences: Sequence[str], encode: Callable[[str], Sequence[int]], length: int, count: int
) -> list[str]:
    """`count` texts of exactly `length` pieces (len(encode(text)) == length).

    Each text is whole words of consecutive `sentences` joined by spaces, from a start
    sentence on (inputs that need fewer words than one sentence are its first words). Starts
    move forward through the sentences, so the texts differ; a start whose word boundaries
    skip over `length` (a word adds several pieces) is passed over. Raises BenchError when the
    sentences do not give `count` such texts.
    """
    if length < 1 or count < 1:
        raise ValueError("length and count must be positive")
    words_of = [s.split() for s in sentences]
    texts: list[str] = []
    start = 0
    while len(texts) < count and start < len(sentences):
        words: list[str] = []
        found, end, n = None, None, 0
        for i in range(start, len(sentences)):
            for word in words_of[i]:
                words.append(word)
                n = len(encode(" ".join(words)))
                if n >= length:
                    break
            if n >= length:
                end = i
                found = " ".join(words) if n == length else None
                break
        if end is None:
            break  # the rest of the sentences hold fewer pieces than `length`
        if found is not None:
            texts.append(found)
            start = end + 1  # the next text starts after the sentences this one used
        else:
            start += 1
    if len(texts) < count:
        raise BenchError(
            f"could build only {len(texts)} of {count} inputs of exactly {length} pieces"
        )
    return texts


def matched_decode_batch_tokens(
    source_pieces: Sequence[int], sentences: int = PEER_INFER_BATCH, multiple: int = 8
) -> int:
    """`nmt translate --batch-tokens` for batches of about `sentences` sentences: the mean
    source length in pieces plus EOS, times `sentences`, rounded to a multiple of `multiple`
    (our batches are length-sorted, so padding is small)."""
    if not source_pieces:
        raise BenchError("no source lines to size the decoding batch with")
    mean = sum(n + 1 for n in source_pieces) / len(source_pieces)
    return max(multiple, multiple * round(sentences * mean / multiple))


def pick_batch_tokens(measured: dict[int, float], target: float, multiple: int = 8) -> int:
    """batch_tokens expected to give `target` sentences per batch, from measured mean batch
    sizes (sentences per batch grows about linearly with batch_tokens): the measured setting
    closest to the target, scaled, rounded to `multiple`."""
    if not measured:
        raise ValueError("no measurements")
    tokens, sentences = min(measured.items(), key=lambda kv: abs(kv[1] - target))
    guess = tokens * target / sentences
    return max(multiple, int(round(guess / multiple)) * multiple)


# ============================================================================================
# Processes: timed subprocesses and workers
# ============================================================================================


@dataclass
class ProcResult:
    label: str
    command: list[str]
    returncode: int
    wall: float  # seconds from start to exit
    cpu: float  # user + system CPU seconds of the process (and its waited-for children)
    peak_rss: int  # bytes (ru_maxrss)
    log: Path
    text: str = ""  # the process' output with arrival-time prefixes

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["log"] = str(self.log)
        d.pop("text")
        return d


def child_env() -> dict[str, str]:
    return {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "KERAS_BACKEND": "tensorflow",
        "PYTHONUNBUFFERED": "1",
    }


def run_timed(
    command: Sequence[str], log_path: Path, label: str, *, cwd: Optional[Path] = None
) -> ProcResult:
    """Run `command`, stream its stdout+stderr into `log_path` with arrival times, and return
    wall time, CPU time and peak RSS of that process (os.wait4). Raises BenchError on failure,
    quoting the end of the log."""
    command = [str(c) for c in command]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    start = time.perf_counter()
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        bufsize=1,
        env=child_env(),
        cwd=cwd,
    )
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"$ {shlex.join(command)}\n")
        assert proc.stdout is not None
        for line in proc.stdout:
            stamped = f"[{time.perf_counter() - start:10.3f}] {line}"
            lines.append(stamped)
            log.write(stamped)
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.write(f"# exit {proc.returncode}, wall {wall:.2f} s\n")
    result = ProcResult(
        label=label,
        command=command,
        returncode=proc.returncode,
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        peak_rss=usage.ru_maxrss * 1024,
        log=log_path,
        text="".join(lines),
    )
    if proc.returncode != 0:
        tail = "".join(lines[-15:])
        raise BenchError(
            f"`{shlex.join(command)}` exited with {proc.returncode} (log {log_path}):\n{tail}"
        )
    return result


def nmt_cli() -> list[str]:
    from bench_translate import nmt_command

    return nmt_command()


def load_peer():
    """scripts/bench_peer.py (the OpenNMT-tf side), imported lazily."""
    if not (SCRIPTS / "bench_peer.py").exists():
        raise BenchError("scripts/bench_peer.py not found: run with --skip-peer")
    return importlib.import_module("bench_peer")


# ============================================================================================
# Workers: the TensorFlow parts, each run in its own subprocess (`--worker NAME IN OUT`)
# ============================================================================================


def worker_lstm(p: dict) -> dict:
    """bench_lstm.run_config for each configuration (steps and warm-up per configuration)."""
    import bench_lstm

    rows = []
    for name, steps, warmup in p["configs"]:
        args = argparse.Namespace(steps=steps, warmup=warmup, jit=False, mode="both")
        for row in bench_lstm.run_config(bench_lstm.CONFIGS[name], args):
            cfg = row.pop("config")
            rows.append({**row, **dataclasses.asdict(cfg), "steps": steps, "warmup": warmup})
    return {"rows": rows}


def worker_matmul(p: dict) -> dict:
    """tf.matmul rate (float32) for each (m, k, n): median over trials of repeated products."""
    import numpy as np
    import tensorflow as tf

    rows = []
    rng = np.random.default_rng(0)
    for m, k, n in p["shapes"]:
        a = tf.constant(rng.standard_normal((m, k)), tf.float32)
        b = tf.constant(rng.standard_normal((k, n)), tf.float32)
        flops = 2.0 * m * k * n
        for _ in range(3):  # warm-up (oneDNN primitive creation)
            tf.matmul(a, b).numpy()
        start = time.perf_counter()
        tf.matmul(a, b).numpy()
        one = max(time.perf_counter() - start, 1e-6)
        reps = max(1, int(p["seconds_per_trial"] / one))
        trials = []
        for _ in range(p["trials"]):
            start = time.perf_counter()
            for _ in range(reps):
                c = tf.matmul(a, b)
            c.numpy()  # eager CPU ops run synchronously; this only reads the last result
            trials.append((time.perf_counter() - start) / reps)
        seconds = statistics.median(trials)
        rows.append({"shape": [m, k, n], "seconds": seconds, "gflops": flops / seconds / 1e9})
    return {"rows": rows, "threads": tf.config.threading.get_intra_op_parallelism_threads()}


def worker_batchstats(p: dict) -> dict:
    """Mean sentences, tokens and matmul FLOPs per batch of the real training pipeline.

    For each batch_tokens in p["batch_tokens"] (p["batches_at_1k"] batches at 1024, fewer in
    proportion for larger settings), and then (when p["target_sentences"] is set)
    for settings searched so that the mean batch holds about that many sentences.
    """
    import numpy as np
    from bench_train import small_v1_config, step_flops

    from nmt.data import make_training_dataset
    from nmt.vocab import Vocab

    vocab = Vocab.load(p["vocab"])
    src, tgt = p["train_source"], p["train_target"]

    def measure(batch_tokens: int) -> dict:
        ns = argparse.Namespace(batch_tokens=batch_tokens, jit=False, seed=p["seed"])
        config = small_v1_config(ns, src, tgt)
        ds = make_training_dataset(src, tgt, vocab, config.data, seed=p["seed"], check_files=False)
        sizes, tokens, flops, shapes = [], [], [], []
        batches = max(10, p["batches_at_1k"] * 1024 // batch_tokens)  # about as many pairs
        for (source, target_in), target_out in ds.take(batches):
            source, target_out = source.numpy(), target_out.numpy()
            sizes.append(source.shape[0])
            tokens.append(int(np.count_nonzero(source)) + int(np.count_nonzero(target_out)))
            flops.append(step_flops(source, target_in, config.model, vocab.target_size))
            shapes.append(source.shape[1] + target_out.shape[1])
        return {
            "batch_tokens": batch_tokens,
            "batches": len(sizes),
            "mean_sentences": statistics.fmean(sizes),
            "mean_tokens": statistics.fmean(tokens),
            "mean_flops": statistics.fmean(flops),
            "mean_padded_length": statistics.fmean(shapes) / 2,
        }

    rows = {bt: measure(bt) for bt in p["batch_tokens"]}
    target = p.get("target_sentences")
    chosen = None
    if target:
        for _ in range(p.get("search_rounds", 3)):
            guess = pick_batch_tokens({bt: r["mean_sentences"] for bt, r in rows.items()}, target)
            if guess in rows:
                break
            rows[guess] = measure(guess)
        chosen = min(rows, key=lambda bt: abs(rows[bt]["mean_sentences"] - target))
    return {"rows": [rows[bt] for bt in sorted(rows)], "chosen": chosen}


def worker_decode_sweep(p: dict) -> dict:
    """Decoding time per sentence vs source length and beam, in process after a warm-up."""
    from nmt.checkpoints import load_model
    from nmt.translator import Translator, iter_text_lines

    loaded = load_model(p["model"], p["checkpoint"])
    decode = loaded.config.decode
    translator = Translator(loaded.model, loaded.vocab, decode)
    sp = loaded.vocab.processor("source")
    sentences = [text for _, text in iter_text_lines(p["source"])]
    inputs = {
        length: build_length_inputs(sentences, sp.encode, length, p["count"])
        for length in p["lengths"]
    }
    rows = []
    for beam in p["beams"]:
        warm = [translator.encode(s) for s in sentences[:8]]
        translator.translate_encoded(warm, beam_size=beam)  # traces the search for this beam
        for length, texts in inputs.items():
            encoded = [translator.encode(t) for t in texts]
            bad = [len(e) - 1 for e in encoded if len(e) - 1 != length]
            if bad:
                raise BenchError(f"inputs of {length} pieces encode to {bad} pieces")
            start, start_cpu = time.perf_counter(), time.process_time()
            hyps = translator.translate_encoded(encoded, beam_size=beam)
            seconds = time.perf_counter() - start
            cpu = time.process_time() - start_cpu
            out = [h[0].length for h in hyps]
            rows.append(
                {
                    "beam": beam,
                    "source_pieces": length,
                    "sentences": len(texts),
                    "seconds": seconds,
                    "cpu_seconds": cpu,
                    "mean_output": statistics.fmean(out),
                    "max_output": max(out),
                    "limit": int(
                        math.floor(decode.max_length_a + decode.max_length_b * (length + 1))
                    ),
                }
            )
    params = sum(int(w.numpy().size) for w in loaded.model.weights)
    return {
        "rows": rows,
        "rule": f"floor({decode.max_length_a:g} + {decode.max_length_b:g} x (pieces + EOS))",
        "batch_tokens": decode.batch_tokens,
        "length_penalty": decode.length_penalty,
        "parameters": params,
        "checkpoint": str(loaded.checkpoint_path),
    }


WORKERS: dict[str, Callable[[dict], dict]] = {
    "lstm": worker_lstm,
    "matmul": worker_matmul,
    "batchstats": worker_batchstats,
    "decode_sweep": worker_decode_sweep,
}


def worker_main(argv: list[str]) -> int:
    name, inp, out = argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    params = json.loads(Path(inp).read_text(encoding="utf-8"))
    result = WORKERS[name](params)
    write_atomic(Path(out), json.dumps(result, indent=1))
    return 0


# ============================================================================================
# The machine
# ============================================================================================


def cpu_model() -> str:
    from nmt.precision import cpu_info

    return cpu_info()[0]


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


@dataclass
class Machine:
    cores: int
    cpu: str
    python: str
    tensorflow: str
    keras: str
    peer: Optional[dict] = None  # bench_peer.peer_versions()

    def describe(self) -> str:
        ours = (
            f"{self.cores} cores ({self.cpu}), Python {self.python}, "
            f"TensorFlow {self.tensorflow}, Keras {self.keras}"
        )
        if not self.peer:
            return ours + "; OpenNMT-tf not run"
        peer = ", ".join(f"{k} {v}" for k, v in self.peer.items())
        return f"{ours}; peer venv: {peer}"


def machine_info() -> Machine:
    return Machine(
        cores=os.cpu_count() or 0,
        cpu=cpu_model(),
        python=platform.python_version(),
        tensorflow=package_version("tensorflow"),
        keras=package_version("keras"),
    )


# ============================================================================================
# The plan: sizes of every section, full and --quick
# ============================================================================================


@dataclass
class Plan:
    lstm_configs: list[tuple[str, int, int]]  # (bench_lstm config, steps, warm-up)
    matmul_square: int
    matmul_trials: int
    batch_sample: int  # batches sampled per batch_tokens setting for the batch statistics
    rounds: int  # alternations in section 2
    steps_matched: int  # steps per run: ours (a) and the peer
    log_matched: int  # report interval of ours (a)
    peer_report_every: int  # report interval of the peer (OpenNMT-tf save_summary_steps)
    steps_4096: int  # steps per run of ours (b)
    log_4096: int
    test_lines: Optional[int]  # None: the whole test2016 file
    head_lines: int
    beams: list[int]
    sweep_batch_tokens: dict[int, int]  # batch_tokens -> steps (reported every step)
    sweep_lengths: list[int]
    sweep_beams: list[int]
    sweep_count: int  # inputs per source length


FULL = Plan(
    lstm_configs=[("small", 20, 3), ("default", 20, 3)],
    matmul_square=2048,
    matmul_trials=5,
    batch_sample=300,
    rounds=2,
    steps_matched=20,
    log_matched=5,
    peer_report_every=5,
    steps_4096=4,
    log_4096=1,
    test_lines=None,
    head_lines=100,
    beams=[5, 1],
    sweep_batch_tokens={1024: 4, 2048: 4, 4096: 3, 8192: 3, 16384: 3},
    sweep_lengths=[10, 25, 50, 100, 200],
    sweep_beams=[1, 5, 10],
    sweep_count=16,
)
QUICK = Plan(
    lstm_configs=[("small", 3, 1)],
    matmul_square=512,
    matmul_trials=2,
    batch_sample=20,
    rounds=2,
    steps_matched=4,
    log_matched=1,
    peer_report_every=1,
    steps_4096=2,
    log_4096=1,
    test_lines=20,
    head_lines=5,
    beams=[5, 1],
    sweep_batch_tokens={512: 2, 1024: 2},
    sweep_lengths=[10, 25],
    sweep_beams=[1, 5],
    sweep_count=2,
)

# Rough costs for the printed budget, measured on this 2-core machine (BENCHMARKS.md and smoke
# runs): start-up to the first step of `nmt train` (TensorFlow import, pipeline, model, tracing)
# plus its final checkpoint, the same for `onmt-main train` (an estimate: heavier import and
# data loading), `nmt translate` and a worker; an NMTSmallV1 step at 4096 tokens (about
# proportional to batch_tokens; OpenNMT-tf's batch-64 step taken as 1.3x ours); seconds per 1000
# test2016 lines of decoding after start-up.
STARTUP_S = 13.0
PEER_STARTUP_S = 25.0
DECODE_STARTUP_S = 8.0
WORKER_STARTUP_S = 6.0
STEP_4096_S = 8.5
PEER_STEP_FACTOR = 1.3
DECODE_S_PER_1000 = {
    "small_v1": {5: 32.0, 1: 6.0},
    "recommended": {5: 18.0, 1: 3.0},
    "peer": {5: 45.0, 1: 15.0},
}
# Decoder step of the NMTSmallV1 shape: about 15 ms for up to 16 x beam rows (as for section 5),
# i.e. per output piece of one sentence 0.015 * (1 + beam / 5) / 16 s (an upper bound: larger
# batches cost less per row); the peer's step taken as PEER_STEP_FACTOR x ours.
DECODE_STEP_S = 0.015
DECODE_STEP_ROWS = 16


def babble_seconds_per_line(beam: int, max_length: int, peer: bool = False) -> float:
    """Decoding seconds per sentence when the output runs to `max_length` pieces (worst case)."""
    per_piece = DECODE_STEP_S * (1 + beam / 5) / DECODE_STEP_ROWS
    return per_piece * max_length * (PEER_STEP_FACTOR if peer else 1.0)


def step_estimate(batch_tokens: int) -> float:
    return STEP_4096_S * batch_tokens / 4096


def planned_budget(
    plan: Plan,
    sections: Sequence[int],
    peer: bool,
    decode_max_length: int = DEFAULT_DECODE_MAX_LENGTH,
) -> dict[int, float]:
    """Rough seconds per section (printed at the start; compared with the actual at the end).

    Section 3 assumes the worst case for the barely trained same-size models: every output
    runs to `decode_max_length` pieces (`babble_seconds_per_line`), unless the measured rate of
    DECODE_S_PER_1000 is higher.
    """
    lines = plan.test_lines or 1000
    budget = {}
    if 1 in sections:
        per_step = {"small": 0.05, "default": 0.6, "large": 8.0}  # train + forward, both layers
        steps = sum(per_step[n] * (s + w) for n, s, w in plan.lstm_configs)
        budget[1] = WORKER_STARTUP_S + steps
    matched = STARTUP_S + plan.steps_matched * step_estimate(1150)
    peer_run = PEER_STARTUP_S + plan.steps_matched * step_estimate(1150) * PEER_STEP_FACTOR
    big = STARTUP_S + plan.steps_4096 * step_estimate(4096)
    # vocabulary + peer data (cached in --workdir), matmul ceiling, batch statistics, runs
    train = 15 + 2 * WORKER_STARTUP_S + 30
    train += plan.rounds * (matched + big + (peer_run if peer else 0))
    if 2 in sections:
        budget[2] = train
    if 3 in sections:
        # the same-size model twice (its own batch and the peer's), the recommended model
        systems = ["small_v1", "small_v1", "recommended"] + (["peer"] if peer else [])
        decode = 0.0
        for system in systems:
            startup = PEER_STARTUP_S if system == "peer" else DECODE_STARTUP_S
            for beam in plan.beams:
                rate = DECODE_S_PER_1000[system].get(beam, 30.0) / 1000
                if system != "recommended":
                    worst = babble_seconds_per_line(beam, decode_max_length, system == "peer")
                    rate = max(rate, worst)
                decode += 2 * startup + (lines + plan.head_lines) * rate
        # without section 2 in the run, section 3 trains its models (when not in --workdir)
        budget[3] = decode + (0 if 2 in sections else train)
    if 4 in sections:
        budget[4] = 0.0
    if 5 in sections:
        sweep = sum(STARTUP_S + s * step_estimate(bt) for bt, s in plan.sweep_batch_tokens.items())
        # about 15 ms per decoder step for up to 16 x beam rows; output about as long as input
        decode = sum(
            0.015 * (1 + beam / 5) * length * plan.sweep_count / 16
            for beam in plan.sweep_beams
            for length in plan.sweep_lengths
        )
        budget[5] = 2 * WORKER_STARTUP_S + 25 + sweep + decode
    return budget


# ============================================================================================
# The benchmark
# ============================================================================================


@dataclass
class TrainSeries:
    """Alternating runs of one system in section 2."""

    name: str
    model_dir: Path
    batch: str  # how batches are made, for the table
    runs: list[Any] = field(default_factory=list)  # ProcResult (ours) or PeerTrainRun
    windows: list[list[LogWindow]] = field(default_factory=list)
    steps: int = 0


class Benchmark:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.plan = QUICK if args.quick else FULL
        self.workdir: Path = args.workdir
        self.data: Path = args.data
        self.pair = args.pair
        self.src_lang, self.tgt_lang = args.pair.split("-")
        self.machine = machine_info()
        self.results = self._load_results()
        self.procs: list[dict] = []  # every timed process of this run (label, rss, ...)
        self.peer = None
        self.peer_data = None
        self.onmt_main = None
        self.command = self._command_line()
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self.section_times: dict[int, float] = {}

    # ---- bookkeeping

    def log(self, message: str) -> None:
        print(f"[benchmark {time.strftime('%H:%M:%S')}] {message}", flush=True)

    def _command_line(self) -> str:
        parts = ["python", "scripts/benchmark.py", *sys.argv[1:]]
        nice = os.nice(0) if hasattr(os, "nice") else 0
        prefix = f"nice -n {nice} " if nice else ""
        return prefix + shlex.join(parts)

    def _load_results(self) -> dict:
        path = self.workdir / "results.json"
        if path.exists():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return {}
        return {}

    def save_results(self) -> None:
        write_atomic(self.workdir / "results.json", json.dumps(self.results, indent=1))

    def provenance(self) -> str:
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        return (
            f"Command: `{self.command}` (repository root, venv `{sys.executable}`), "
            f"{now}. Machine: {self.machine.describe()}; load average {load:.1f} at the end "
            "of the section."
        )

    def run(self, command: Sequence[str], label: str) -> ProcResult:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)
        self.log(f"{label}: {shlex.join(str(c) for c in command)}")
        result = run_timed(command, self.workdir / "logs" / f"{safe}.log", label)
        self.log(
            f"{label}: {result.wall:.1f} s wall, {result.cpu:.1f} s CPU, "
            f"peak RSS {mib(result.peak_rss):.0f} MiB"
        )
        return result

    def run_worker(self, name: str, params: dict, label: str) -> tuple[dict, ProcResult]:
        folder = self.workdir / "workers"
        folder.mkdir(parents=True, exist_ok=True)
        inp, out = folder / f"{label}.in.json", folder / f"{label}.out.json"
        write_atomic(inp, json.dumps(params, indent=1))
        out.unlink(missing_ok=True)
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", name, inp, out]
        proc = self.run(command, label)
        return json.loads(out.read_text(encoding="utf-8")), proc

    def record(
        self, section: int, system: str, what: str, wall: float, cpu: float, peak_rss: int
    ) -> None:
        """Note a timed process for section 4."""
        self.procs.append(
            {
                "section": section,
                "system": system,
                "what": what,
                "wall": wall,
                "cpu": cpu,
                "peak_rss": peak_rss,
            }
        )

    @contextlib.contextmanager
    def peer_errors(self):
        """bench_peer's failures (PeerError; SystemExit from a failed venv install) as
        BenchError, so that the section fails with one message and the others still run."""
        try:
            yield
        except SystemExit as e:
            raise BenchError(f"OpenNMT-tf: {e.code}") from None
        except Exception as e:
            if self.peer is not None and isinstance(e, self.peer.PeerError):
                raise BenchError(f"OpenNMT-tf: {e}") from None
            raise

    # ---- shared inputs

    def corpus(self, split: str, lang: str) -> Path:
        path = self.data / f"{split}.{lang}"
        if not path.exists():
            raise BenchError(f"{path}: not found (give --data, the Multi30k directory)")
        return path

    def batch_stats(self, spm: Path, batch_tokens: list[int], label: str, **extra) -> dict:
        """Sentences and tokens per batch of the real training pipeline (the batchstats worker)."""
        src, tgt = self.corpus("train", self.src_lang), self.corpus("train", self.tgt_lang)
        params = {
            "vocab": str(spm),
            "train_source": str(src),
            "train_target": str(tgt),
            "batch_tokens": batch_tokens,
            **extra,
            "batches_at_1k": self.plan.batch_sample,
            "seed": 1234,
        }
        return self.run_worker("batchstats", params, label)[0]

    def spm_model(self) -> Path:
        """The 8k joint SentencePiece model both systems use (trained once into the workdir)."""
        out = self.workdir / "spm"
        model = out / "joint.model"
        if not model.exists():
            src, tgt = self.corpus("train", self.src_lang), self.corpus("train", self.tgt_lang)
            command = [*nmt_cli(), "vocab", "--source", src, "--target", tgt, "--output", out]
            command += ["--size", "8000", "--model-type", "unigram", "--joint", "--seed", "1234"]
            self.run(command, "spm_train")
        return model

    def ensure_peer(self) -> None:
        """bench_peer, its venv (created when missing), versions and SentencePiece data."""
        if self.args.skip_peer or self.peer_data is not None:
            return
        self.peer = load_peer()
        with self.peer_errors():
            self.onmt_main = self.peer.ensure_peer_venv(self.peer.PEER_VENV, log=self.log)
            self.machine.peer = self.peer.peer_versions(self.peer.PEER_VENV)
            self.peer_data = self.peer.prepare_peer_data(
                self.data, self.pair, self.spm_model(), self.workdir / "peer_data"
            )

    def peer_train(self, model_dir: Path, total_steps: int):
        """bench_peer.train_peer up to `total_steps`, reporting every plan.peer_report_every."""
        kwargs: dict[str, Any] = {
            "batch_size": PEER_BATCH,
            "onmt_main": self.onmt_main,
            "log": self.log,
        }
        if "report_every" in inspect.signature(self.peer.train_peer).parameters:
            kwargs["report_every"] = self.plan.peer_report_every
        else:  # bench_peer reads its module setting when it writes the run config
            self.peer.REPORT_EVERY = self.plan.peer_report_every
        with self.peer_errors():
            run = self.peer.train_peer(self.peer_data, model_dir, total_steps, **kwargs)
        self.log(
            f"onmt-main train to step {run.final_step}: {run.wall_seconds:.1f} s wall, "
            f"{run.cpu_seconds:.1f} s CPU, peak RSS {mib(run.peak_rss_bytes):.0f} MiB"
        )
        return run

    def small_v1_yaml(self, batch_tokens: int, path: Path) -> Path:
        """Our NMTSmallV1-shaped config (bench_train.small_v1_config) on the shared vocabulary."""
        import yaml
        from bench_train import small_v1_config

        ns = argparse.Namespace(batch_tokens=batch_tokens, jit=False, seed=1234)
        src, tgt = self.corpus("train", self.src_lang), self.corpus("train", self.tgt_lang)
        values = small_v1_config(ns, src, tgt).to_dict()
        values["vocab"]["path"] = str(self.spm_model())
        values["train"].update(checkpoint_every=1_000_000, keep_checkpoints=1, max_steps=1)
        text = "# NMTSmallV1 shape for scripts/benchmark.py (bench_train.small_v1_config)\n"
        text += yaml.safe_dump(values, sort_keys=False)
        return write_atomic(path, text)

    def nmt_train(
        self, config: Path, model_dir: Path, max_steps: int, log_every: int, label: str
    ) -> tuple[ProcResult, list[LogWindow]]:
        command = [*nmt_cli(), "train", "--config", config, "--model-dir", model_dir]
        command += [
            "--set",
            f"train.max_steps={max_steps}",
            "--set",
            f"train.log_every={log_every}",
        ]
        proc = self.run(command, label)
        return proc, parse_nmt_train_log(proc.text)

    # ---- section 1

    def section1(self) -> str:
        result, proc = self.run_worker("lstm", {"configs": self.plan.lstm_configs}, "s1_lstm")
        self.results["1"] = result
        columns = [
            ("config", "l"),
            ("mode", "l"),
            ("batch", "r"),
            ("length", "r"),
            ("input", "r"),
            ("units", "r"),
            ("keras.layers.LSTM tok/s", "r"),
            ("nmt LSTM tok/s", "r"),
            ("ratio (wall)", "r"),
            ("ratio (CPU)", "r"),
            ("max rel diff", "r"),
            ("steps", "r"),
        ]
        rows = [
            [
                r["name"],
                r["mode"],
                r["batch"],
                r["length"],
                r["input_dim"],
                r["units"],
                fmt(r["keras"]),
                fmt(r["ours"]),
                f"{r['ratio']:.2f}x",
                f"{r['cpu_ratio']:.2f}x",
                f"{r['max_diff']:.1e}",
                f"{r['steps']} (+{r['warmup']})",
            ]
            for r in result["rows"]
        ]
        return "\n".join(
            [
                f"### {SECTION_TITLES[1]}",
                "",
                self.provenance(),
                "",
                "scripts/bench_lstm.py's `run_config` in one subprocess "
                f"({proc.wall:.0f} s): identical weights and inputs, the two layers' steps "
                "alternate (order flipped every round); train = forward + backward + Adam in one "
                "`tf.function`, forward = forward pass only; tokens/s = batch x length / median "
                "wall seconds; ratio = Keras time / our time (wall, and process CPU time).",
                "",
                format_table(columns, rows),
            ]
        )

    # ---- section 2

    def section2_train(self) -> dict:
        """Vocabulary, matmul ceiling, batch statistics and the alternating training runs."""
        plan, root = self.plan, self.workdir / "s2"
        spm = self.spm_model()
        self.ensure_peer()
        ceiling, proc = self.run_worker(
            "matmul",
            {
                "shapes": [
                    [plan.matmul_square] * 3,
                    [64, 1024, 2048],  # LSTM layer, batch 64: [x; h] (512 + 512) -> 4 x 512
                    [64, 1536, 2048],  # first decoder layer with input feeding
                    [2048, 512, 64],  # our feature-major recurrent step (4u, u) . (u, B)
                    [64, 512, 8000],  # output projection onto the 8k vocabulary
                ],
                "trials": plan.matmul_trials,
                "seconds_per_trial": 0.5 if not self.args.quick else 0.1,
            },
            "s2_matmul",
        )
        stats = self.batch_stats(spm, [1024, 4096], "s2_batchstats", target_sentences=PEER_BATCH)
        matched = stats["chosen"]
        by_bt = {r["batch_tokens"]: r for r in stats["rows"]}
        if root.exists():
            shutil.rmtree(root)  # fresh models: step counts as planned
        root.mkdir(parents=True)
        ours_a = TrainSeries(NMT_A, root / f"nmt_bt{matched}", f"batch_tokens {matched}")
        ours_b = TrainSeries(NMT_B, root / "nmt_bt4096", "batch_tokens 4096")
        peer = TrainSeries(PEER_NAME, root / "onmt", f"{PEER_BATCH} examples")
        configs = {
            "a": self.small_v1_yaml(matched, root / f"nmt_bt{matched}.yaml"),
            "b": self.small_v1_yaml(4096, root / "nmt_bt4096.yaml"),
        }
        commands: list[str] = []
        for r in range(plan.rounds):
            for key, series, steps, every in (
                ("a", ours_a, plan.steps_matched, plan.log_matched),
                ("peer", peer, plan.steps_matched, None),
                ("b", ours_b, plan.steps_4096, plan.log_4096),
            ):
                if key == "peer":
                    if self.args.skip_peer:
                        continue
                    run = self.peer_train(series.model_dir, series.steps + steps)
                    series.runs.append(run)
                    series.steps = run.final_step
                    self.record(
                        2,
                        series.name,
                        f"train round {r + 1}",
                        run.wall_seconds,
                        run.cpu_seconds,
                        run.peak_rss_bytes,
                    )
                    if r == 0:
                        commands.append(shlex.join(run.command))
                    continue
                total = series.steps + steps
                label = f"s2_train_{key}_round{r + 1}"
                proc, windows = self.nmt_train(configs[key], series.model_dir, total, every, label)
                if not windows or windows[-1].step != total:
                    raise BenchError(f"{proc.log}: no report line for step {total}")
                series.runs.append(proc)
                series.windows.append(windows)
                series.steps = total
                self.record(
                    2, series.name, f"train round {r + 1}", proc.wall, proc.cpu, proc.peak_rss
                )
                if r == 0:
                    commands.append(shlex.join(proc.command))
        out = {
            "matmul": ceiling,
            "matmul_threads": ceiling.get("threads"),
            "batchstats": stats["rows"],
            "matched_batch_tokens": matched,
            "commands": commands,
            "systems": [],
        }
        for series, bt in ((ours_a, matched), (ours_b, 4096)):
            rate = steady_rate(series.windows, skip=1)
            st = by_bt[bt]
            gflops = None
            if rate and rate.step_seconds:
                gflops = st["mean_flops"] / rate.step_seconds / 1e9
            out["systems"].append(
                {
                    "name": series.name,
                    "batch": series.batch,
                    "model_dir": str(series.model_dir),
                    "mean_sentences": st["mean_sentences"],
                    "mean_tokens": st["mean_tokens"],
                    "steps": series.steps,
                    "tokens_per_s": rate.tokens_per_s if rate else None,
                    "tokens_per_s_nmt": rate.tokens_per_s if rate else None,
                    "step_seconds": rate.step_seconds if rate else None,
                    "timed_steps": rate.steps if rate else 0,
                    "gflops": gflops,
                    "flops_per_step": st["mean_flops"],
                    "cpu": sum(p.cpu for p in series.runs),
                    "wall": sum(p.wall for p in series.runs),
                    "peak_rss": max(p.peak_rss for p in series.runs),
                    "runs": len(series.runs),
                    "num_params": parse_parameters(series.runs[0].text),
                }
            )
        if self.args.skip_peer:
            out["systems"].append({"name": peer.name, "batch": peer.batch, "not_run": True})
        else:
            out["systems"].append(self.peer_train_summary(peer))
        out["processes"] = [p for p in self.procs if p["section"] == 2]
        self.results["2"] = out
        self.save_results()
        return out

    def peer_train_summary(self, series: TrainSeries) -> dict:
        rate = peer_steady_rate(series.runs, PEER_BATCH)
        return {
            "name": series.name,
            "batch": series.batch,
            "model_dir": str(series.model_dir),
            "mean_sentences": float(PEER_BATCH),
            "steps": series.steps,
            "timed_steps": rate["windows"] * self.plan.peer_report_every,
            "gflops": None,
            "cpu": sum(r.cpu_seconds for r in series.runs),
            "wall": sum(r.wall_seconds for r in series.runs),
            "peak_rss": max(r.peak_rss_bytes for r in series.runs),
            "runs": len(series.runs),
            "num_params": series.runs[0].num_params,
            "tokens_per_s": rate["tokens_per_s"],
            "tokens_per_s_nmt": rate["tokens_per_s_nmt"],
            "step_seconds": rate["step_seconds"],
        }

    def section2(self) -> str:
        out = self.section2_train()
        columns = [
            ("system", "l"),
            ("batching", "l"),
            ("mean sentences/batch", "r"),
            ("steps (runs)", "r"),
            ("tok/s, own count (steady)", "r"),
            ("tok/s, as nmt counts", "r"),
            ("step s", "r"),
            ("GFLOP/s", "r"),
            ("CPU s (all runs)", "r"),
            ("wall s (all runs)", "r"),
            ("peak RSS MiB", "r"),
        ]
        rows = []
        for s in out["systems"]:
            if s.get("not_run"):
                rows.append([s["name"], s["batch"], *[NOT_RUN] * (len(columns) - 2)])
                continue
            rows.append(
                [
                    s["name"],
                    s["batch"],
                    fmt(s["mean_sentences"], 1),
                    f"{s['steps']} ({s['runs']})",
                    fmt(s["tokens_per_s"]),
                    fmt(s["tokens_per_s_nmt"]),
                    fmt(s["step_seconds"], 2),
                    fmt(s["gflops"], 1, missing="n/a"),
                    fmt(s["cpu"]),
                    fmt(s["wall"]),
                    fmt(mib(s["peak_rss"])),
                ]
            )
        ceiling = format_table(
            [("tf.matmul (m x k) . (k x n)", "l"), ("ms", "r"), ("GFLOP/s", "r")],
            [
                [
                    "({0} x {1}) . ({1} x {2})".format(*r["shape"]),
                    fmt(r["seconds"] * 1e3, 2),
                    fmt(r["gflops"], 1),
                ]
                for r in out["matmul"]["rows"]
            ],
        )
        a, b = out["systems"][0], out["systems"][1]
        peer = out["systems"][2]
        params = f", {peer['num_params']:,} parameters" if peer.get("num_params") else ""
        ours = f" ({a['num_params']:,} parameters)" if a.get("num_params") else ""
        lines = [
            f"### {SECTION_TITLES[2]}",
            "",
            self.provenance(),
            "",
            "Both systems train the same model shape (2 x 512 unidirectional LSTM encoder and "
            "decoder, 512-dim embeddings, Luong general attention, input feeding, dropout 0.3, "
            "no residual, encoder states copied to the decoder, Adam 2e-4, label smoothing 0.1) "
            f"on Multi30k {self.pair} train with the same 8k joint SentencePiece model, from "
            f"scratch, in {self.plan.rounds} alternating rounds (nmt (a) "
            f"{self.plan.steps_matched} steps, OpenNMT-tf {self.plan.steps_matched} steps, "
            f"nmt (b) {self.plan.steps_4096} steps, then again), every run continuing from its "
            f"own last checkpoint. Ours{ours} runs `nmt train`; the peer is OpenNMT-tf "
            "`NMTSmallV1` with `--auto_config` "
            f"(batch {PEER_BATCH} examples{params}), run config written by "
            "scripts/bench_peer.py. nmt (a) uses the batch_tokens whose mean batch holds about "
            f"{PEER_BATCH} sentences, measured on up to {self.plan.batch_sample} batches of "
            "the real pipeline; nmt (b) our recommended 4096. Our run config is "
            "scripts/bench_train.py's `small_v1_config` with `vocab.path` set to the shared "
            "SentencePiece model, written to the workdir (`nmt_bt*.yaml`).",
            "",
            "Steady-state tokens/s is each tool's own figure from its own log, leaving out the "
            "first report of every run (tracing, pipeline warm-up), averaged over the other "
            "report windows weighted by their duration. nmt (a report every "
            f"{self.plan.log_matched} steps for (a), {self.plan.log_4096} for (b)) counts "
            "non-pad source pieces + EOS and target pieces + EOS; OpenNMT-tf (a report every "
            f"{self.plan.peer_report_every} steps) counts source pieces and target pieces + 1, "
            "i.e. one token per source sentence fewer: `as nmt counts` adds it back (steps/s x "
            "64). step s = wall time between report lines / steps (the peer: 1 / its steps/s). "
            "GFLOP/s (nmt) = matmul FLOPs of forward + backward per step "
            "(scripts/bench_train.py `step_flops`: padded batches, 3 x forward, element-wise "
            "work and Adam left out, so a lower bound of the work) averaged over the sampled "
            "batches of that batch_tokens / step s. CPU seconds, wall seconds and peak RSS are "
            "of the processes (os.wait4), start-up and checkpoint writing included.",
            "",
            format_table(columns, rows),
            "",
            "Matrix-product ceiling measured in the same run (float32 `tf.matmul`, eager, median "
            f"of {self.plan.matmul_trials} trials, "
            f"{out.get('matmul_threads') or 'default'} intra-op threads): the square product "
            "is the best case; the batch-64 shapes are the products a step of this model is "
            "made of (LSTM layer [x; h] -> 4 gates, the input-feeding first decoder layer, our "
            "feature-major recurrent step, the 8k output projection).",
            "",
            ceiling,
            "",
            f"Batch statistics of our pipeline (sampled): {a['batch']} -> "
            f"{a['mean_sentences']:.1f} sentences, {a['mean_tokens']:.0f} tokens per batch; "
            f"{b['batch']} -> {b['mean_sentences']:.1f} sentences, {b['mean_tokens']:.0f} "
            "tokens.",
            "",
            "Commands of the first round:",
            "",
            *[f"    {c}" for c in out["commands"]],
        ]
        return "\n".join(lines)

    # ---- section 3

    def head_file(self, source: Path, lines: int, dest: Path) -> Path:
        with open(source, encoding="utf-8") as f:
            text = "".join(line for _, line in zip(range(lines), f, strict=False))
        return write_atomic(dest, text)

    def section3_decode(self) -> dict:
        from nmt.evaluation import score

        plan, root = self.plan, self.workdir / "s3"
        s2 = self.results.get("2")
        need_train = not s2 or not Path(s2["systems"][0]["model_dir"]).exists()
        if not need_train and not self.args.skip_peer:
            need_train = (
                s2["systems"][2].get("not_run") or not Path(s2["systems"][2]["model_dir"]).exists()
            )
        if need_train:
            self.log("section 3 needs the section 2 models: training them first")
            s2 = self.section2_train()
        root.mkdir(parents=True, exist_ok=True)
        test_src = self.corpus("test2016", self.src_lang)
        test_ref = self.corpus("test2016", self.tgt_lang)
        n_file = sum(1 for _ in open(test_src, encoding="utf-8"))
        n_full = min(plan.test_lines or n_file, n_file)
        full_src = test_src
        if n_full < n_file:
            full_src = self.head_file(test_src, n_full, root / f"test_{n_full}.{self.src_lang}")
        head_src = self.head_file(test_src, plan.head_lines, root / f"head.{self.src_lang}")
        ref_lines = test_ref.read_text(encoding="utf-8").splitlines()[:n_full]
        model = self.args.model
        if not (model / "config.yaml").exists():
            raise BenchError(f"{model}: not a model directory (give --model)")
        max_length, min_length = self.args.decode_max_length, self.args.decode_min_length
        small_dir = Path(s2["systems"][0]["model_dir"])
        limited = limited_model_dir(
            small_dir,
            root / f"{small_dir.name}_min{min_length}_max{max_length}",
            max_length,
            min_length,
        )
        self.log(
            f"{limited}: {small_dir} with decode.max_length_a {max_length}, max_length_b 0, "
            f"min_length {min_length}"
        )
        from nmt.config import load_config
        from nmt.vocab import Vocab

        sp = Vocab.load(small_dir).processor("source")
        with open(full_src, encoding="utf-8") as f:
            matched = matched_decode_batch_tokens([len(sp.encode(line.rstrip("\n"))) for line in f])
        own_batch_tokens = load_config(limited / "config.yaml").decode.batch_tokens
        systems = [(NMT_A, limited, "last", None), (NMT_A_MATCHED, limited, "last", matched)]
        if not self.args.skip_peer:
            self.ensure_peer()
            peer_dir = Path(s2["systems"][2]["model_dir"])
            systems.append((PEER_NAME, peer_dir, None, None))
            peer_full = self.peer_data.test_src
            if n_full < n_file:
                peer_full = self.head_file(peer_full, n_full, root / f"test_{n_full}.pieces")
            peer_head = self.head_file(
                self.peer_data.test_src, plan.head_lines, root / "head.pieces"
            )
        systems.append((f"nmt recommended ({model.name})", model, "best", None))
        rows = []
        for beam in plan.beams:
            for name, model_dir, checkpoint, batch_tokens in systems:
                row: dict[str, Any] = {"system": name, "beam": beam}
                tag = re.sub(r"\W+", "_", f"{name.split(' ')[0]}_{model_dir.name}")
                if batch_tokens:
                    tag += f"_bt{batch_tokens}"
                for part in ("full", "head"):
                    out = root / f"{tag}_beam{beam}_{part}.txt"
                    if checkpoint is None:
                        pieces_src = peer_full if part == "full" else peer_head
                        run = self.peer_decode(
                            model_dir, pieces_src, out, beam, max_length, min_length
                        )
                    else:
                        src = full_src if part == "full" else head_src
                        run = self.nmt_decode(model_dir, checkpoint, src, out, beam, batch_tokens)
                    hyp = out.read_text(encoding="utf-8").splitlines()
                    what = f"beam {beam}, {part} ({len(hyp)} lines)"
                    self.record(3, name, what, run["wall"], run["cpu"], run["peak_rss"])
                    row[part] = {k: run[k] for k in ("wall", "cpu", "peak_rss")}
                    row[f"{part}_lines"] = len(hyp)
                    if part == "full":
                        row.update(
                            pieces=run["pieces"],
                            bleu=score(hyp, ref_lines[: len(hyp)]).score,
                            command=run["command"],
                            batch=run["batch"],
                            limit=run["limit"],
                        )
                rows.append(finish_decode_row(row, plan.head_lines))
        out = {
            "rows": rows,
            "lines": n_full,
            "head_lines": plan.head_lines,
            "steps": s2["systems"][0]["steps"],
            "max_length": max_length,
            "min_length": min_length,
            "batch_tokens": own_batch_tokens,
            "limited_model_dir": str(limited),
            "small_model_dir": str(small_dir),
            "processes": [p for p in self.procs if p["section"] == 3],
        }
        self.results["3"] = out
        self.save_results()
        return out

    def nmt_decode(
        self,
        model_dir: Path,
        checkpoint: str,
        src: Path,
        out: Path,
        beam: int,
        batch_tokens: Optional[int] = None,
    ):
        """`nmt translate` end to end (`--batch-tokens` when given, else the model's config);
        output pieces by re-encoding our detokenized output."""
        from nmt.config import load_config

        command = [*nmt_cli(), "translate", src, "--model", model_dir, "--checkpoint", checkpoint]
        command += ["--beam", str(beam), "-o", out, "--quiet"]
        if batch_tokens:
            command += ["--batch-tokens", str(batch_tokens)]
        proc = self.run(command, f"s3_{out.stem}")
        sp = spm_processor(target_spm(model_dir))
        # SentencePiece decode + encode round-trips up to rare non-canonical segmentations.
        pieces = [len(sp.encode(line)) for line in out.read_text(encoding="utf-8").splitlines()]
        decode = load_config(model_dir / "config.yaml").decode
        return {
            "wall": proc.wall,
            "cpu": proc.cpu,
            "peak_rss": proc.peak_rss,
            "pieces": pieces,
            "command": shlex.join(proc.command),
            "batch": f"{batch_tokens or decode.batch_tokens} tokens",
            "limit": (
                (f"{decode.min_length}-" if decode.min_length else "")
                + (
                    f"{decode.max_length_a:g}"
                    if decode.max_length_b == 0
                    else f"{decode.max_length_a:g} + {decode.max_length_b:g} x (source + 1)"
                )
            ),
        }

    def peer_decode(
        self,
        model_dir: Path,
        pieces_src: Path,
        out: Path,
        beam: int,
        max_length: int,
        min_length: int = 0,
    ):
        """`onmt-main infer` end to end (bench_peer.infer_peer, `max_length` and
        `min_length` as its maximum_ and minimum_decoding_length), then detokenized."""
        out_pieces = out.with_suffix(".pieces")
        self.log(f"{out.stem}: onmt-main infer {pieces_src} (beam {beam})")
        with self.peer_errors():
            run = self.peer.infer_peer(
                self.peer_data,
                model_dir,
                pieces_src,
                out_pieces,
                beam=beam,
                onmt_main=self.onmt_main,
                max_decoding_length=max_length,
                min_decoding_length=min_length,
            )
            self.peer.detokenize(out_pieces, self.peer_data.spm_model, out)
        self.log(
            f"{out.stem}: {run.wall_seconds:.1f} s wall, {run.cpu_seconds:.1f} s CPU, "
            f"peak RSS {mib(run.peak_rss_bytes):.0f} MiB"
        )
        text = out_pieces.read_text(encoding="utf-8")
        return {
            "wall": run.wall_seconds,
            "cpu": run.cpu_seconds,
            "peak_rss": run.peak_rss_bytes,
            "pieces": [len(line.split()) for line in text.splitlines()],
            "command": shlex.join(run.command),
            "batch": f"{run.batch_size} examples" if run.batch_size else "default",
            "limit": (f"{run.min_decoding_length}-" if run.min_decoding_length else "")
            + f"{run.max_decoding_length}",
        }

    def section3(self) -> str:
        out = self.section3_decode()
        columns = [
            ("system", "l"),
            ("beam", "r"),
            ("BLEU", "r"),
            ("end-to-end s", "r"),
            ("CPU s", "r"),
            ("peak RSS MiB", "r"),
            (f"first {out['head_lines']} lines s", "r"),
            ("steady sentences/s", "r"),
            ("mean output pieces", "r"),
            ("steady target pieces/s", "r"),
            ("batch", "l"),
            ("length limit", "l"),
        ]
        rows = []
        for r in out["rows"]:
            rows.append(
                [
                    r["system"],
                    r["beam"],
                    fmt(r["bleu"], 2),
                    fmt(r["full"]["wall"], 1),
                    fmt(r["full"]["cpu"], 1),
                    fmt(mib(r["full"]["peak_rss"])),
                    fmt(r["head"]["wall"], 1),
                    fmt(r["sentences_per_s"], 1, missing="n/a"),
                    fmt(r["mean_pieces"], 1),
                    fmt(r["pieces_per_s"], missing="n/a"),
                    r["batch"],
                    r["limit"],
                ]
            )
        if self.args.skip_peer:
            for beam in self.plan.beams:
                rows.append([PEER_NAME, beam, *[NOT_RUN] * (len(columns) - 2)])
        commands = [r["command"] for r in out["rows"]]
        n, h = out["lines"], out["head_lines"]
        limit = out.get("max_length", self.args.decode_max_length)
        least = out.get("min_length", 0)
        limited = out.get("limited_model_dir", "")
        if least == limit:
            length_rule = (
                f"both decode exactly {limit} pieces per sentence (besides the "
                "end-of-sentence), so both do the same decoding work whatever their training: "
                f"the peer with `params: minimum_decoding_length: {limit}` and "
                f"`maximum_decoding_length: {limit}` in its infer config, ours through"
            )
        elif least:
            length_rule = (
                f"both decode {least} to {limit} pieces per sentence (besides the "
                f"end-of-sentence): the peer with `params: minimum_decoding_length: {least}` "
                f"and `maximum_decoding_length: {limit}` in its infer config, ours through"
            )
        else:
            length_rule = (
                "they may stop early or repeat pieces up to their length limit, hence the "
                f"output length and pieces/s columns; both get the same limit of {limit} output "
                "pieces (besides the end-of-sentence): the peer as "
                f"`params: maximum_decoding_length: {limit}` in its infer config, ours through"
            )
        lines = [
            f"### {SECTION_TITLES[3]}",
            "",
            self.provenance(),
            "",
            f"Source: the first {n} lines of test2016.{self.src_lang} (the peer reads the same "
            "lines as SentencePiece pieces); BLEU: sacreBLEU (13a, cased) of the detokenized "
            f"output against test2016.{self.tgt_lang}. The NMTSmallV1-shaped models are those "
            f"of B2, both trained {out['steps']} steps (barely trained, so their BLEU is near "
            f"0); {length_rule} "
            f"`{limited}`, a copy of the B2 model directory's config.yaml with "
            f"`decode.min_length: {least}`, `decode.max_length_a: {limit}` and "
            "`decode.max_length_b: 0` beside links to its checkpoints and vocabulary "
            f"(`--decode-min-length {least} --decode-max-length {limit}`). "
            "end-to-end = wall time of the whole process (interpreter and TensorFlow start-up, "
            "model loading, translation, writing the output). steady sentences/s = "
            f"({n} - {h}) / (end-to-end time on the {n} lines - end-to-end time on the first "
            f"{h}), the same for every system, which cancels start-up; steady target pieces/s "
            "likewise with the pieces written for those lines. Output pieces: the peer's "
            "tokenized output counted directly; ours is detokenized text, re-encoded with the "
            "model's SentencePiece model. Otherwise the peer uses OpenNMT-tf's inference "
            "defaults (batch in the table, length penalty 0) and ours the model's decode config "
            f"(batches of {out.get('batch_tokens', 'its config')} source tokens), once more with "
            f"`--batch-tokens` set for about the peer's {PEER_INFER_BATCH} sentences a batch "
            '(the mean source length plus EOS times 32: "peer\'s batch"); '
            "the recommended model decodes with its own config (length limit in the table, in "
            "pieces).",
            "",
            format_table(columns, rows),
            "",
            f"Commands ({n} lines):",
            "",
            *[f"    {c}" for c in dict.fromkeys(commands)],
        ]
        return "\n".join(lines)

    # ---- section 4

    def section4(self) -> str:
        procs = []
        for key in ("2", "3"):
            procs += self.results.get(key, {}).get("processes", [])
        if not procs:
            raise BenchError("section 4 reports sections 2 and 3: run them (same --workdir)")
        columns = [
            ("section", "r"),
            ("system", "l"),
            ("process", "l"),
            ("wall s", "r"),
            ("CPU s", "r"),
            ("peak RSS MiB", "r"),
        ]
        rows = [
            [
                f"B{p['section']}",
                p["system"],
                p["what"],
                fmt(p["wall"], 1),
                fmt(p["cpu"], 1),
                fmt(mib(p["peak_rss"])),
            ]
            for p in procs
        ]
        summary: dict[tuple[str, str], list[int]] = {}
        for p in procs:
            phase = "training" if p["section"] == 2 else "decoding"
            if p["peak_rss"] is not None:
                summary.setdefault((p["system"], phase), []).append(p["peak_rss"])
        if self.args.skip_peer:
            for phase in ("training", "decoding"):
                summary.setdefault((PEER_NAME, phase), [])
        summary_rows = [
            [system, phase, fmt(mib(max(v))) if v else NOT_RUN, len(v) or NOT_RUN]
            for (system, phase), v in sorted(summary.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        ]
        return "\n".join(
            [
                f"### {SECTION_TITLES[4]}",
                "",
                self.provenance(),
                "",
                "Peak resident set size (ru_maxrss from os.wait4) of each process of sections "
                "B2 and B3, as recorded in their runs; summary: the largest per system and phase.",
                "",
                format_table(
                    [
                        ("system", "l"),
                        ("phase", "l"),
                        ("peak RSS MiB (max)", "r"),
                        ("processes", "r"),
                    ],
                    summary_rows,
                ),
                "",
                format_table(columns, rows),
            ]
        )

    # ---- section 5

    def section5_run(self) -> dict:
        plan, root = self.plan, self.workdir / "s5"
        spm = self.spm_model()
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        stats = self.batch_stats(spm, list(plan.sweep_batch_tokens), "s5_batchstats")
        by_bt = {r["batch_tokens"]: r for r in stats["rows"]}
        train_rows, commands = [], []
        for bt, steps in plan.sweep_batch_tokens.items():
            config = self.small_v1_yaml(bt, root / f"nmt_bt{bt}.yaml")
            proc, windows = self.nmt_train(config, root / f"nmt_bt{bt}", steps, 1, f"s5_bt{bt}")
            rate = steady_rate([windows], skip=1)
            st = by_bt[bt]
            train_rows.append(
                {
                    "batch_tokens": bt,
                    "steps": steps,
                    "timed_steps": rate.steps if rate else 0,
                    "mean_sentences": st["mean_sentences"],
                    "mean_tokens": st["mean_tokens"],
                    "tokens_per_s": rate.tokens_per_s if rate else None,
                    "step_seconds": rate.step_seconds if rate else None,
                    "gflops": st["mean_flops"] / rate.step_seconds / 1e9
                    if rate and rate.step_seconds
                    else None,
                    "wall": proc.wall,
                    "cpu": proc.cpu,
                    "peak_rss": proc.peak_rss,
                }
            )
            commands.append(shlex.join(proc.command))
            shutil.rmtree(root / f"nmt_bt{bt}", ignore_errors=True)  # 270 MB of checkpoint
        model = self.args.model
        if not (model / "config.yaml").exists():
            raise BenchError(f"{model}: not a model directory (give --model)")
        sweep, proc = self.run_worker(
            "decode_sweep",
            {
                "model": str(model),
                "checkpoint": "best",
                "source": str(self.corpus("test2016", self.src_lang)),
                "lengths": plan.sweep_lengths,
                "beams": plan.sweep_beams,
                "count": plan.sweep_count,
            },
            "s5_decode_sweep",
        )
        sweep["peak_rss"] = proc.peak_rss
        out = {"train": train_rows, "decode": sweep, "commands": commands, "model": str(model)}
        self.results["5"] = out
        self.save_results()
        return out

    def section5(self) -> str:
        out = self.section5_run()
        plot = self.plot_growth(out)
        train_table = format_table(
            [
                ("batch_tokens", "r"),
                ("mean sentences/batch", "r"),
                ("mean tokens/batch", "r"),
                ("steps (timed)", "r"),
                ("src+tgt tok/s", "r"),
                ("step s", "r"),
                ("GFLOP/s", "r"),
                ("peak RSS MiB", "r"),
                ("process wall s", "r"),
            ],
            [
                [
                    r["batch_tokens"],
                    fmt(r["mean_sentences"], 1),
                    fmt(r["mean_tokens"]),
                    f"{r['steps']} ({r['timed_steps']})",
                    fmt(r["tokens_per_s"]),
                    fmt(r["step_seconds"], 2),
                    fmt(r["gflops"], 1),
                    fmt(mib(r["peak_rss"])),
                    fmt(r["wall"]),
                ]
                for r in out["train"]
            ],
        )
        d = out["decode"]
        decode_table = format_table(
            [
                ("beam", "r"),
                ("source pieces", "r"),
                ("sentences", "r"),
                ("ms/sentence", "r"),
                ("CPU ms/sentence", "r"),
                ("mean output pieces", "r"),
                ("max output pieces", "r"),
                ("length limit", "r"),
            ],
            [
                [
                    r["beam"],
                    r["source_pieces"],
                    r["sentences"],
                    fmt(1e3 * r["seconds"] / r["sentences"], 1),
                    fmt(1e3 * r["cpu_seconds"] / r["sentences"], 1),
                    fmt(r["mean_output"], 1),
                    r["max_output"],
                    r["limit"],
                ]
                for r in d["rows"]
            ],
        )
        rel = os.path.relpath(plot, self.args.out.resolve().parent)
        lines = [
            f"### {SECTION_TITLES[5]}",
            "",
            self.provenance(),
            "",
            "Training (NMTSmallV1 shape as in B2, from scratch, one `nmt train` process per "
            "batch_tokens, a report every step; the first step is left out): tok/s as in B2; "
            "mean sentences and tokens per batch from the sampled pipeline.",
            "",
            train_table,
            "",
            f"Decoding with {out['model']} ({d['parameters']:,} parameters, {d['checkpoint']}): "
            f"{self.plan.sweep_count} inputs per source length, each exactly that many "
            "SentencePiece pieces (whole words of consecutive test2016 sentences, checked by "
            "re-encoding; EOS added by the translator), translated together as one call "
            f"(decode batch_tokens {d['batch_tokens']}) in one process after a warm-up that "
            f"traces each beam's search; length penalty {d['length_penalty']}, length limit "
            f"{d['rule']} from the model's config. ms/sentence = wall time of the call / inputs. "
            f"Peak RSS of that process: {fmt(mib(d['peak_rss']))} MiB.",
            "",
            decode_table,
            "",
            f"![cost growth]({rel})",
            "",
            "Commands:",
            "",
            *[f"    {c}" for c in out["commands"]],
        ]
        return "\n".join(lines)

    def plots_dir(self) -> Path:
        return self.args.plots

    def plot_growth(self, out: dict) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
        train = out["train"]
        bts = [r["batch_tokens"] for r in train]
        ax = axes[0][0]
        ax.plot(bts, [r["tokens_per_s"] or float("nan") for r in train], "o-")
        ax.set_ylim(bottom=0)
        ax.set(
            xlabel="batch_tokens",
            ylabel="src+tgt tokens/s",
            title="training throughput",
        )
        ax = axes[0][1]
        ax.plot(bts, [r["peak_rss"] / 2**20 for r in train], "s-", color="tab:red")
        ax.set_ylim(bottom=0)
        ax.set(xlabel="batch_tokens", ylabel="peak RSS (MiB)", title="training memory")
        rows = out["decode"]["rows"]
        for beam in sorted({r["beam"] for r in rows}):
            sel = [r for r in rows if r["beam"] == beam]
            xs = [r["source_pieces"] for r in sel]
            axes[1][0].plot(
                xs, [1e3 * r["seconds"] / r["sentences"] for r in sel], "o-", label=f"beam {beam}"
            )
            axes[1][1].plot(xs, [r["mean_output"] for r in sel], "o-", label=f"beam {beam}")
        limits = sorted({(r["source_pieces"], r["limit"]) for r in rows})
        axes[1][1].plot(*zip(*limits, strict=True), "k--", label="length limit")
        axes[1][0].set(
            xlabel="source pieces", ylabel="ms per sentence", title="decoding time per sentence"
        )
        axes[1][1].set(xlabel="source pieces", ylabel="output pieces (mean)", title="output length")
        for ax in axes[1]:
            ax.legend()
        for ax in axes[0]:
            ax.set_xscale("log", base=2)
            ax.set_xticks(bts, [str(bt) for bt in bts])
            ax.minorticks_off()
        for ax in axes.flat:
            ax.grid(alpha=0.3)
        fig.suptitle("nmt on Multi30k: cost vs batch size, source length and beam")
        fig.tight_layout()
        buffer = io.BytesIO()
        try:
            fig.savefig(buffer, format="png", dpi=100)
        finally:
            plt.close(fig)
        return write_atomic(self.plots_dir() / "cost_growth.png", buffer.getvalue())

    # ---- the whole run

    def head(self) -> str:
        return "\n".join(
            [
                "## Multi30k benchmark: nmt vs OpenNMT-tf (scripts/benchmark.py)",
                "",
                "Written by `scripts/benchmark.py` (issue #7); everything between the "
                "`benchmark.py` markers is replaced by its next run, section by section. Each "
                "section states the command, date and machine of the run that produced it.",
                "",
            ]
        )

    def main(self, sections: Sequence[int]) -> int:
        self.workdir.mkdir(parents=True, exist_ok=True)
        budget = planned_budget(
            self.plan, sections, not self.args.skip_peer, self.args.decode_max_length
        )
        self.log(
            "planned budget (rough, quiet 2-core machine): "
            + ", ".join(f"B{n} {v / 60:.1f} min" for n, v in budget.items())
            + f"; total {sum(budget.values()) / 60:.1f} min"
        )
        builders = {
            1: self.section1,
            2: self.section2,
            3: self.section3,
            4: self.section4,
            5: self.section5,
        }
        texts: dict[int, str] = {}
        failed: dict[int, str] = {}
        for number in sections:
            start = time.perf_counter()
            self.log(f"section {number}: {SECTION_TITLES[number]}")
            try:
                texts[number] = SECTION_MARK.format(number) + "\n" + builders[number]()
            except BenchError as e:
                failed[number] = str(e)
                self.log(f"section {number} FAILED: {e}")
            finally:
                self.section_times[number] = time.perf_counter() - start
            if number in texts:  # write as we go: a later failure keeps what was measured
                update_markdown(self.args.out, self.head(), {number: texts[number]})
                self.log(f"section {number}: written into {self.args.out}")
        self.log(
            "time per section: "
            + ", ".join(
                f"B{n} {t / 60:.1f} min (planned {budget.get(n, 0) / 60:.1f})"
                for n, t in self.section_times.items()
            )
            + f"; total {sum(self.section_times.values()) / 60:.1f} min"
        )
        for number, message in failed.items():
            print(f"benchmark: section {number} failed: {message}", file=sys.stderr)
        return 1 if failed else 0


def finish_decode_row(row: dict, head_lines: int) -> dict:
    """Steady-state rates from the full and head runs (the same method for every system)."""
    full, head = row["full"], row["head"]
    lines = row["full_lines"] - row["head_lines"]
    span = full["wall"] - head["wall"]
    pieces = row["pieces"]
    row["mean_pieces"] = statistics.fmean(pieces) if pieces else None
    if span > 0 and lines > 0:
        row["sentences_per_s"] = lines / span
        row["pieces_per_s"] = sum(pieces[head_lines:]) / span
    else:
        row["sentences_per_s"] = row["pieces_per_s"] = None
    return row


def spm_processor(path: Path):
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_file=str(path))


def limited_model_dir(model_dir: Path, dest: Path, max_length: int, min_length: int = 0) -> Path:
    """`dest`: `model_dir` decoding outputs of `min_length` to `max_length` pieces.

    `nmt translate` reads the limit from the model directory's config.yaml (DecodeConfig:
    floor(max_length_a + max_length_b x source length) pieces), and has no option for it. So
    `dest` gets a copy of that config with `decode.max_length_a: max_length`,
    `decode.max_length_b: 0`, `decode.min_length: min_length` and
    `decode.length_penalty: 0` like the peer's (checked with
    nmt.config.from_dict), and a symbolic link to every
    other entry of `model_dir` (checkpoints/, best/, the SentencePiece model, VERSION, ...): the
    same weights and vocabulary, and `model_dir` itself untouched. `dest` is built beside its
    final place and renamed over an earlier one.
    """
    import yaml

    from nmt.config import from_dict
    from nmt.errors import ConfigError

    model_dir, dest = Path(model_dir).resolve(), Path(dest)
    if max_length < 1:
        raise BenchError(f"the decoding length limit must be at least 1, got {max_length}")
    if not 0 <= min_length <= max_length:
        raise BenchError(
            f"the minimum decoding length must be in 0..{max_length}, got {min_length}"
        )
    config = model_dir / "config.yaml"
    if not config.is_file():
        raise BenchError(f"{model_dir}: not a model directory (no config.yaml)")
    try:
        values = yaml.safe_load(config.read_text(encoding="utf-8"))
        if not isinstance(values, dict):
            raise ConfigError("not a mapping of sections")
        decode = values.setdefault("decode", {})
        if not isinstance(decode, dict):
            raise ConfigError("decode: not a mapping")
        # no length penalty either: OpenNMT-tf's auto_config decodes with length_penalty 0
        decode.update(
            max_length_a=float(max_length),
            max_length_b=0.0,
            min_length=int(min_length),
            length_penalty=0.0,
        )
        from_dict(values)
    except (yaml.YAMLError, ConfigError) as e:
        raise BenchError(f"{config}: {e}") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        for entry in sorted(model_dir.iterdir()):
            if entry.name != "config.yaml":
                (tmp / entry.name).symlink_to(entry)
        (tmp / "config.yaml").write_text(
            "# scripts/benchmark.py: "
            f"{config} with decode.max_length_a {max_length}, max_length_b 0, "
            f"min_length {min_length}\n" + yaml.safe_dump(values, sort_keys=False),
            encoding="utf-8",
        )
        tmp.chmod(0o755)
        if dest.is_symlink() or dest.is_file():
            dest.unlink()
        elif dest.exists():
            shutil.rmtree(dest)  # links only: their targets stay
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def target_spm(model_dir: Path) -> Path:
    joint = Path(model_dir) / "joint.model"
    return joint if joint.exists() else Path(model_dir) / "target.model"


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
