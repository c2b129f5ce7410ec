"""Training and inference throughput of nmt.layers.LSTM against keras.layers.LSTM.

Both layers get identical weights and inputs. A training step is forward + backward + one Adam
update inside one `tf.function` (optionally `jit_compile=True`), the way `model.fit` runs it; an
inference step is the forward pass alone. The two layers' steps alternate within one process
(the order flips every round, so background load hits both alike) and the median over the timed
steps, after warm-up, is reported as tokens/s (batch · length / seconds), with the ratio ours /
Keras. Before timing, the outputs and gradients of the two layers are compared (largest
difference relative to the tensor's largest magnitude).

Usage:
    python scripts/bench_lstm.py [--configs small,default,large] [--steps 20] [--warmup 3]
                                 [--jit] [--mode both|train|forward]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from nmt.layers import LSTM  # noqa: E402


@dataclass(frozen=True)
class BenchConfig:
    name: str
    batch: int
    length: int
    input_dim: int
    units: int


CONFIGS = {
    "small": BenchConfig("small", batch=32, length=20, input_dim=128, units=256),
    "default": BenchConfig("default", batch=64, length=30, input_dim=256, units=512),
    "large": BenchConfig("large", batch=64, length=50, input_dim=512, units=1024),
}


def make_steps(layer: keras.layers.Layer, x: tf.Tensor, target: tf.Tensor, jit: bool):
    """Compiled training step (forward, backward, Adam update) and forward step for `layer`."""
    optimizer = keras.optimizers.Adam(learning_rate=1e-4)
    optimizer.build(layer.trainable_variables)

    @tf.function(jit_compile=jit)
    def train_step():
        with tf.GradientTape() as tape:
            y = layer(x, training=True)  # (B, T, u)
            loss = tf.reduce_mean(tf.square(y - target))
        grads = tape.gradient(loss, layer.trainable_variables)
        optimizer.apply(grads, layer.trainable_variables)
        return loss

    @tf.function(jit_compile=jit)
    def forward_step():
        return layer(x, training=False)  # (B, T, u)

    return train_step, forward_step


def check_agreement(ours: LSTM, ref: keras.layers.LSTM, x: tf.Tensor) -> float:
    """Largest difference between the two layers' outputs and gradients (inputs and weights),
    each relative to the largest magnitude of that tensor."""
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y_ours, y_ref = ours(x), ref(x)
        loss_ours = tf.reduce_sum(tf.sin(y_ours))
        loss_ref = tf.reduce_sum(tf.sin(y_ref))
    g_ours = tape.gradient(loss_ours, [x, *ours.trainable_variables])
    g_ref = tape.gradient(loss_ref, [x, *ref.trainable_variables])
    pairs = [(y_ours, y_ref), *zip(g_ours, g_ref, strict=True)]
    return float(
        max(
            np.max(np.abs(a.numpy() - b.numpy())) / max(np.max(np.abs(b.numpy())), 1e-30)
            for a, b in pairs
        )
    )


def time_alternating(
    fns: dict[str, Callable[[], object]], steps: int, warmup: int
) -> dict[str, tuple[float, float]]:
    """Median (wall seconds, process CPU seconds) per call of each function.

    Calls alternate between the functions, the order flipping every round. Process CPU time
    (all threads) is reported too: on a shared machine it moves far less with background load
    than wall time does, so its ratio is the steadier of the two.
    """
    for fn in fns.values():
        for _ in range(warmup):
            _block(fn())
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(steps):
        for name in names if r % 2 == 0 else reversed(names):
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            _block(fns[name]())
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start_wall)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in fns}


def _block(result) -> None:
    np.asarray(tf.nest.flatten(result)[0])


def run_config(cfg: BenchConfig, args: argparse.Namespace) -> list[dict]:
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(cfg.batch, cfg.length, cfg.input_dim)), tf.float32)
    target = tf.constant(rng.normal(size=(cfg.batch, cfg.length, cfg.units)), tf.float32)
    ours = LSTM(cfg.units, return_sequences=True)
    ref = keras.layers.LSTM(cfg.units, return_sequences=True)
    ours.build(x.shape)
    ref.build(x.shape)
    ours.set_weights(ref.get_weights())
    max_diff = check_agreement(ours, ref, x)

    ours_train, ours_fwd = make_steps(ours, x, target, args.jit)
    ref_train, ref_fwd = make_steps(ref, x, target, args.jit)
    rows = []
    modes = ["train", "forward"] if args.mode == "both" else [args.mode]
    for mode in modes:
        fns = {"ours": ours_train, "keras": ref_train}
        if mode == "forward":
            fns = {"ours": ours_fwd, "keras": ref_fwd}
        med = time_alternating(fns, args.steps, args.warmup)
        (wall_ref, cpu_ref), (wall_ours, cpu_ours) = med["keras"], med["ours"]
        tokens = cfg.batch * cfg.length
        rows.append(
            {
                "config": cfg,
                "mode": mode,
                "keras": tokens / wall_ref,
                "ours": tokens / wall_ours,
                "ratio": wall_ref / wall_ours,
                "cpu_ratio": cpu_ref / cpu_ours,
                "max_diff": max_diff,
            }
        )
        print(
            f"# {cfg.name} {mode}: keras {wall_ref * 1e3:.1f} ms ({cpu_ref * 1e3:.0f} ms CPU), "
            f"ours {wall_ours * 1e3:.1f} ms ({cpu_ours * 1e3:.0f} ms CPU)",
            file=sys.stderr,
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="small,default,large", help="comma list")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per layer and mode")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--jit", action="store_true", help="jit_compile=True on the steps")
    parser.add_argument("--mode", choices=["both", "train", "forward"], default="both")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown config(s) {unknown}; choose from {sorted(CONFIGS)}")

    rows = [row for name in names for row in run_config(CONFIGS[name], args)]
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {platform.processor() or ''} "
        f"{os.cpu_count()} CPUs, jit_compile={args.jit}, median of {args.steps} alternated "
        f"steps after {args.warmup} warm-up\n"
    )
    print(
        "| config | mode | batch | length | input | units | keras.layers.LSTM tok/s "
        "| nmt LSTM tok/s | ratio (wall) | ratio (CPU time) | max rel diff |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        c = row["config"]
        print(
            f"| {c.name} | {row['mode']} | {c.batch} | {c.length} | {c.input_dim} | {c.units} "
            f"| {row['keras']:.0f} | {row['ours']:.0f} | {row['ratio']:.2f}x "
            f"| {row['cpu_ratio']:.2f}x | {row['max_diff']:.1e} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
