"""The TensorFlow parts, each run in its own subprocess (`scripts/benchmark.py --worker NAME IN
OUT`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import BenchError
from bench.inputs import build_length_inputs, pick_batch_tokens
from bench.markdown import write_atomic


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
