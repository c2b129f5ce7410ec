"""Throughput of a full `nmt train` step on Multi30k: our LSTM against keras.layers.LSTM.

The model is shaped like OpenNMT-tf's NMTSmallV1: 2 x 512 unidirectional LSTM encoder and
decoder, 512-dim embeddings, Luong "general" attention with input feeding, dropout 0.3, no
residual connections, encoder states copied to the decoder, an 8k joint SentencePiece
vocabulary (trained once on the training files and cached). The step is the one `nmt train`
runs (nmt.training: learning-rate update, forward, backward, gradient clipping by global norm,
Adam update, counters) on real token-based batches from `make_training_dataset`.

Two variants are built in one process with identical weights: `nmt` (nmt.layers.LSTM) and
`keras` (keras.layers.LSTM monkeypatched into nmt.encoder and nmt.decoder). The encoder runs
the whole-sequence LSTM layer; the input-feeding decoder runs its own step loop with the
cells' weights, so it computes the same in both variants. The variants alternate step by step
on the same batches (the order flips every round, so background load hits both alike); the
median wall and process-CPU time over the timed steps after warm-up are reported.

Tokens/s counts non-pad tokens (target, and source + target). GFLOP/s is an estimate: the
matrix multiplications of forward pass on the padded batch (2 FLOPs per multiply-add), times 3
for forward + backward; element-wise work and the optimizer update are left out.

A variant may name a precision after a colon (`nmt:mixed_bfloat16`, `keras:float32`; default
float32), so the precisions run side by side in one process on the same batches; a `+loopjit`
suffix (`nmt:mixed_bfloat16+loopjit`) XLA-compiles the decoder's step loop
(`train.decoder_loop_jit`); `--config`
takes the model and training settings from a YAML config (e.g. the Multi30k recipe,
configs/multi30k_en_de.yaml) instead of the NMTSmallV1 shape. The CPU model and its bfloat16
flags are printed with the table.

Usage:
    python scripts/bench_train.py [--data DIR] [--pair en-de] [--batch-tokens 4096]
                                  [--steps 8] [--warmup 2] [--batches 8] [--jit]
                                  [--variants nmt,keras] [--vocab-cache DIR] [--config F]
                                  [--json FILE]
    python scripts/bench_train.py --config configs/multi30k_en_de.yaml --batch-tokens 1200 \
        --variants nmt:float32,nmt:mixed_bfloat16 --steps 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("NMT_MULTI30K", REPO.parent / "shared" / "data" / "multi30k"))
DEFAULT_CACHE = Path.home() / ".cache" / "nmt" / "bench_train_vocab"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Multi30k directory")
    parser.add_argument("--pair", default="en-de", help="source-target languages")
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant")
    parser.add_argument("--batches", type=int, default=8, help="distinct batches cycled")
    parser.add_argument("--jit", action="store_true", help="XLA-compile forward + backward")
    parser.add_argument("--variants", default="nmt,keras")
    parser.add_argument("--vocab-cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--config", type=Path, help="model/train settings from this YAML")
    parser.add_argument("--json", type=Path, help="also write the table's figures here")
    return parser.parse_args(argv)


def recipe_config(args, train_source: Path, train_target: Path):
    """The `--config` file's settings on the chosen training files and batch size."""
    import dataclasses

    from nmt.config import load_config

    config = load_config(args.config)
    data = dataclasses.replace(
        config.data,
        train_source=str(train_source),
        train_target=str(train_target),
        dev_source=None,
        dev_target=None,
        batch_tokens=args.batch_tokens,
    )
    train = dataclasses.replace(config.train, precision="float32", jit=args.jit, seed=args.seed)
    return dataclasses.replace(config, data=data, train=train).validate()


def small_v1_config(args, train_source: Path, train_target: Path):
    from nmt.config import Config, DataConfig, ModelConfig, TrainConfig, VocabConfig

    return Config(
        data=DataConfig(
            train_source=str(train_source),
            train_target=str(train_target),
            batch_tokens=args.batch_tokens,
            max_length=100,
            shuffle_buffer=10_000,
        ),
        vocab=VocabConfig(size=8000, joint=True),
        model=ModelConfig(
            embedding_dim=512,
            units=512,
            encoder_layers=2,
            decoder_layers=2,
            bidirectional=False,
            attention="general",
            input_feeding=True,
            dropout=0.3,
            residual=False,
            bridge="copy",
        ),
        train=TrainConfig(
            optimizer="adam",
            learning_rate=2e-4,
            clip_norm=5.0,
            label_smoothing=0.1,
            precision="float32",
            jit=args.jit,
            seed=args.seed,
        ),
    ).validate()


def vocabulary(config, cache: Path):
    from nmt.vocab import Vocab, train_vocab

    if (cache / "joint.model").exists():
        return Vocab.load(cache)
    print(f"training the 8k joint vocabulary into {cache} (once)", file=sys.stderr)
    return train_vocab(config.vocab, [config.data.train_source], [config.data.train_target], cache)


def decoder_step_flops(model_config, vocab_size: int, source_length: int) -> float:
    """Matrix FLOPs of one decoder step for one row (2 per multiply-add).

    LSTM layers (input feeding widens the first), Luong scores and context over
    `source_length` memory positions (the keys are projected once per batch, not counted),
    the attentional layer h~ = tanh([c; h] W_c) and the output layer.
    """
    e, u = model_config.embedding_dim, model_config.units
    width = e + (u if model_config.input_feeding else 0)
    flops = 0.0
    for _ in range(model_config.decoder_layers):
        flops += 2 * 4 * u * (width + u)  # [x, h] W over the four gates
        width = u
    flops += 2 * 2 * source_length * u  # scores and context
    flops += 2 * (2 * u) * u  # h~ = tanh([c; h] W_c)
    flops += 2 * u * vocab_size  # output layer
    return float(flops)


def step_flops(source, target_in, model_config, vocab_size: int) -> float:
    """Matmul FLOPs of forward + backward (3 x forward) for one padded batch."""
    b, s = source.shape
    t = target_in.shape[1]
    e, u = model_config.embedding_dim, model_config.units
    enc = 0.0
    width = e
    for _ in range(model_config.encoder_layers):
        enc += 2 * 4 * u * (width + u) * b * s  # x W + h U
        width = u
    keys = 2 * u * u * b * s  # general: memory W_a, once per batch
    dec = decoder_step_flops(model_config, vocab_size, s) * b * t
    return 3.0 * (enc + keys + dec)


def build_trainer(config, vocab, variant: str):
    """A `nmt.training._Trainer` (the `nmt train` step) with nmt or Keras LSTM layers, in the
    variant's precision (`impl[:precision][+loopjit]`; `+loopjit` sets
    `train.decoder_loop_jit`)."""
    import dataclasses

    import keras
    import tensorflow as tf

    from nmt import decoder, encoder
    from nmt.training import Cluster, _Trainer

    variant, _, option = variant.partition("+")
    impl, _, precision = variant.partition(":")
    precision = precision or "float32"
    if option not in ("", "loopjit"):
        raise SystemExit(f"bench_train: unknown variant option +{option} (known: +loopjit)")
    if option:  # the input-feeding decoder's step loop XLA-compiled (train.decoder_loop_jit)
        train = dataclasses.replace(config.train, decoder_loop_jit=True)
        config = dataclasses.replace(config, train=train)
    originals = (encoder.LSTM, decoder.LSTM)
    previous = keras.mixed_precision.global_policy()
    if impl == "keras":
        encoder.LSTM = decoder.LSTM = keras.layers.LSTM
    try:
        keras.mixed_precision.set_global_policy(precision)
        trainer = _Trainer(config, Path("unused"), Cluster(tf.distribute.get_strategy()), print)
        trainer.build(vocab, precision)
    finally:
        encoder.LSTM, decoder.LSTM = originals
        keras.mixed_precision.set_global_policy(previous)
    return trainer


def build_all(config, vocab, variants: list[str], n_batches: int) -> tuple[dict, list, list]:
    """({variant: trainer}, fixed batches (source, target_in, target_out), the first trainer's
    initial weights), every trainer starting from those weights."""
    trainers, batches = {}, []
    for name in variants:
        # Build one at a time: a trainer seeds TF (tf.random.set_seed), which clears the eager
        # kernel cache and with it the SentencePiece resources of pipelines built before.
        trainers[name] = build_trainer(config, vocab, name)
        if not batches:  # fixed batches, the same for every variant
            for _ in range(n_batches):
                (source, target_in), target_out = next(trainers[name].iterator)
                batches.append((source, target_in, target_out))
    for name, trainer in trainers.items():
        layer = trainer.model.encoder.rnn_layers[0]
        print(f"{name}: encoder layers are {type(layer).__module__}.{type(layer).__name__}")
    reference = trainers[variants[0]].model.get_weights()
    for name in variants[1:]:
        trainers[name].model.set_weights(reference)  # same start: same numbers, same work
    return trainers, batches, reference


def _timed_step(trainer, source, target_in, target_out) -> tuple[float, float, float, object]:
    """(wall s, CPU s, loss, tokens) of one training step."""
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    loss, tokens, _, _ = trainer.train_step(source, target_in, target_out)
    loss = float(loss)  # waits for the step
    return time.perf_counter() - start_wall, time.process_time() - start_cpu, loss, tokens


def time_steps(args, trainers: dict, batches: list, config, vocab) -> dict:
    """Alternate the variants step by step (the order flips every round); the timed steps'
    wall, CPU and loss per variant, and each timed batch's FLOPs and token counts."""
    import tensorflow as tf

    variants = list(trainers)
    timings = {key: {v: [] for v in variants} for key in ("wall", "cpu", "losses")}
    timings.update(flops=[], target_tokens=[], all_tokens=[])
    for round_ in range(args.warmup + args.steps):
        source, target_in, target_out = batches[round_ % len(batches)]
        order = variants if round_ % 2 == 0 else list(reversed(variants))
        for name in order:
            wall, cpu, loss, tokens = _timed_step(trainers[name], source, target_in, target_out)
            if round_ >= args.warmup:
                timings["wall"][name].append(wall)
                timings["cpu"][name].append(cpu)
                timings["losses"][name].append(loss)
        if round_ >= args.warmup:
            timings["flops"].append(step_flops(source, target_in, config.model, vocab.target_size))
            timings["target_tokens"].append(int(tf.math.count_nonzero(target_out)))
            timings["all_tokens"].append(float(tokens))
    return timings


def result_rows(timings: dict, variants: list[str]) -> list[dict]:
    """One row per variant: median step wall/CPU seconds, tokens/s, GFLOP/s, speed vs the first."""
    step_work = statistics.median(timings["flops"])
    tgt_per_step = statistics.median(timings["target_tokens"])
    all_per_step = statistics.median(timings["all_tokens"])
    base = statistics.median(timings["wall"][variants[0]])
    rows = []
    for name in variants:
        w, c = statistics.median(timings["wall"][name]), statistics.median(timings["cpu"][name])
        rows.append({"variant": name, "wall_s": w, "cpu_s": c, "target_tok_s": tgt_per_step / w,
                     "all_tok_s": all_per_step / w, "gflop_s": step_work / w / 1e9,
                     "vs_first": base / w})  # fmt: skip
    return rows


def loss_gaps(timings: dict, variants: list[str]) -> dict[str, float]:
    """Largest |loss difference| of each later variant against the first over the timed steps."""
    first = timings["losses"][variants[0]]
    return {
        name: max(abs(a - b) for a, b in zip(timings["losses"][name], first, strict=True))
        for name in variants[1:]
    }


def print_setup(args, batches: list, reference: list) -> list:
    """The lines above the table: model, data, batch shapes, CPU, versions; returns the shapes."""
    import keras
    import numpy as np
    import tensorflow as tf

    from nmt.precision import cpu_description

    shapes = sorted({tuple(b[0].shape) + (b[1].shape[1],) for b in batches})
    shape = f"{args.config.name} model" if args.config else "NMTSmallV1-like model"
    print(
        f"{shape} ({sum(int(np.prod(w.shape)) for w in reference):,} parameters), "
        f"Multi30k {args.pair}, 8k joint SentencePiece, batch_tokens {args.batch_tokens} "
        f"(shapes B x S x T: {', '.join('x'.join(map(str, s)) for s in shapes[:4])}"
        f"{', ...' if len(shapes) > 4 else ''}), jit={args.jit}"
    )
    print(f"CPU: {cpu_description()}")
    print(
        f"TF {tf.__version__}, Keras {keras.__version__}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; median of {args.steps} alternated steps after {args.warmup} "
        "warm-up steps"
    )
    return shapes


def print_table(rows: list[dict], gaps: dict[str, float], step_work: float) -> None:
    first = rows[0]["variant"]
    print()
    print(
        f"| variant | step wall s | step CPU s | target tok/s | src+tgt tok/s | GFLOP/s | "
        f"vs {first} |"
    )
    print("|" + "---|" * 7)
    for r in rows:
        print(
            f"| {r['variant']} | {r['wall_s']:.3f} | {r['cpu_s']:.3f} | {r['target_tok_s']:,.0f} "
            f"| {r['all_tok_s']:,.0f} | {r['gflop_s']:.1f} | {r['vs_first']:.2f}x |"
        )
    print()
    for name, gap in gaps.items():
        print(f"largest |loss difference| {name} vs {first} over timed steps: {gap:.2e}")
    print(f"work per step: {step_work / 1e9:.1f} GFLOP (matmuls, forward + backward, padded)")


def prepare(args):
    """`(config, vocab)` for the parsed arguments (`--data`, `--pair`, `--config`, ...); exits
    with status 2 and a message when the training files are not there."""
    src_lang, tgt_lang = args.pair.split("-")
    train_source, train_target = args.data / f"train.{src_lang}", args.data / f"train.{tgt_lang}"
    if not train_source.exists():
        print(f"{Path(sys.argv[0]).stem}: {train_source} not found (set --data or NMT_MULTI30K)",
              file=sys.stderr)  # fmt: skip
        raise SystemExit(2)
    make_config = recipe_config if args.config else small_v1_config
    config = make_config(args, train_source, train_target)
    return config, vocabulary(config, args.vocab_cache / args.pair)


def main(argv=None) -> int:
    args = parse_args(argv)
    config, vocab = prepare(args)
    variants = [v for v in args.variants.split(",") if v]
    trainers, batches, reference = build_all(config, vocab, variants, args.batches)
    timings = time_steps(args, trainers, batches, config, vocab)
    shapes = print_setup(args, batches, reference)
    rows, gaps = result_rows(timings, variants), loss_gaps(timings, variants)
    print_table(rows, gaps, statistics.median(timings["flops"]))
    if args.json:
        args.json.write_text(json.dumps({"batch_tokens": args.batch_tokens, "rows": rows,
                                         "loss_gap": gaps, "steps": args.steps,
                                         "shapes": shapes}, indent=1) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
