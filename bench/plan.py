"""The sizes of every section (full and --quick) and the printed time budget: rough costs
measured on one reference machine, scaled to the running machine by a short matmul probe of it
(a guide, not a measurement)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

from bench.common import DEFAULT_DECODE_MAX_LENGTH


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


# The reference machine of the costs below: the shared 2-core machine they were measured on, on
# 2026-11-24 (BENCHMARKS.md and smoke runs; /proc/cpuinfo "AMD EPYC", TF 2.21.0, load average
# 2-5 at the time), where float32 `tf.matmul` of two 2048 x 2048 matrices ran at 134.9 GFLOP/s
# (the B2 ceiling table of the generated block of BENCHMARKS.md, run that day). The probe below
# came later and was never timed there: its rate on that machine is taken to be that figure.
REFERENCE_GFLOPS = 135.0
# The probe: the fastest of a few float32 (1024 x 1024) . (1024 x 1024) numpy products (2.1 GFLOP
# each, 16 ms at the reference rate), after one warm-up, for about PROBE_SECONDS.
PROBE_SIZE = 1024
PROBE_SECONDS = 0.25
PROBE_MIN_TRIALS = 1
PROBE_MAX_TRIALS = 20

# Rough costs for the printed budget on the reference machine, all scaled alike by
# machine_factor: start-up to the first step of `nmt train` (TensorFlow import, pipeline, model,
# tracing) plus its final checkpoint, the same for `onmt-main train` (an estimate: heavier
# import and data loading), `nmt translate` and a worker; an NMTSmallV1 step at 4096 tokens
# (about proportional to batch_tokens; OpenNMT-tf's batch-64 step taken as 1.3x ours); seconds
# per 1000 test2016 lines of decoding after start-up.
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


def probe_gflops(
    size: int = PROBE_SIZE,
    seconds: float = PROBE_SECONDS,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """This machine's float32 matrix-product rate in GFLOP/s: the fastest of repeated numpy
    (size x size) . (size x size) products (at least PROBE_MIN_TRIALS, then until `seconds`
    have passed or PROBE_MAX_TRIALS), after one warm-up. The fastest, as a busy machine's
    other work slows some trials down."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b  # warm-up: the BLAS threads start
    best, trials, start = math.inf, 0, clock()
    while trials < PROBE_MIN_TRIALS or (trials < PROBE_MAX_TRIALS and clock() - start < seconds):
        begin = clock()
        a @ b
        best = min(best, clock() - begin)
        trials += 1
    return 2.0 * size**3 / max(best, 1e-9) / 1e9


def machine_factor(gflops: Optional[float]) -> float:
    """The reference machine's costs times this are this machine's: REFERENCE_GFLOPS / the
    probe's rate (1.0 without a usable rate)."""
    if gflops is None or not math.isfinite(gflops) or gflops <= 0:
        return 1.0
    return REFERENCE_GFLOPS / gflops


def budget_line(budget: Mapping[int, float], gflops: Optional[float]) -> str:
    """The printed plan: minutes per section and in all, and where the figures come from."""
    minutes = ", ".join(f"B{n} {v / 60:.1f} min" for n, v in budget.items())
    if machine_factor(gflops) == 1.0 and gflops != REFERENCE_GFLOPS:
        source = "the reference machine's costs, unscaled: no probe rate"
    else:
        source = (
            f"an estimate: the reference machine's costs x {machine_factor(gflops):.2f}, scaled "
            f"from a probe of this machine ({2 * PROBE_SIZE**3 / 1e9:.1f}-GFLOP float32 matmul "
            f"at {gflops:.1f} GFLOP/s, {REFERENCE_GFLOPS:.0f} on the reference machine)"
        )
    return f"planned budget ({source}): {minutes}; total {sum(budget.values()) / 60:.1f} min"


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
    gflops: Optional[float] = None,
) -> dict[int, float]:
    """Rough seconds per section (printed at the start; compared with the actual at the end):
    the reference machine's costs x machine_factor(gflops), the probe's rate of this machine
    (probe_gflops; None: the reference figures).

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
    factor = machine_factor(gflops)
    return {number: seconds * factor for number, seconds in budget.items()}
