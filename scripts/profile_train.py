"""Where a training step's time goes, by kind of op, in each precision: the step's ceiling.

Builds the `nmt train` step of a config exactly as scripts/bench_train.py does (same batches,
same weights for every variant), runs it on ONE thread (inter- and intra-op), so that op times
add up to the step's CPU time instead of overlapping, and reads TensorFlow's profiler trace of
--rounds passes over --steps batches per variant, the variants alternating. Every op's time
goes to one kind: matrix products, casts, elementwise math, reductions, data movement (concat,
split, slice, transpose), loop lists (TensorArray / TensorList), random numbers (dropout),
optimizer updates, other. Tracing slows each op call,
so the profiled op times are compared with each other, and the step's wall time is measured
on the same batches unprofiled, just before each profiled pass.

The table's last lines are the precision ceiling: with variants A (the first) and B,
  - "matmul-only ratio": B's matrix-product time over A's, what the matrix units alone give;
  - "ratio if the rest were shared": B's op time / (A's matmul time + B's non-matmul time),
    the speed A would have if its non-matmul work cost what B's does;
  - the op kinds on which A spends more than B (work only the 16-bit path does).
A training-step ratio beyond the matmul-only ratio cannot come from the precision.

One thread is not how `nmt train` runs (it uses every core); the shares and ratios are what
matter here, and the wall times of scripts/bench_train.py are the speed figures.

Usage (repository root, this repository's venv):
    python scripts/profile_train.py --config configs/multi30k_en_de.yaml --batch-tokens 1200 \\
        --variants nmt:mixed_bfloat16,nmt:float32 [--steps 4] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

import bench_train  # noqa: E402  (the same model, batches and step as the speed benchmark)

KINDS = {
    "matmul": ("MatMul", "BatchMatMul", "Einsum", "FusedMatMul"),
    "cast": ("Cast",),
    "loop lists": ("TensorList",),
    "random": ("Random",),
    "optimizer": ("ResourceApply", "AssignVariable", "AssignAdd", "AssignSub"),
    "reductions": ("Sum", "Max", "Min", "Mean", "L2Loss", "Prod", "ArgMax", "Softmax"),
    "data movement": (
        "Concat",
        "Split",
        "Slice",
        "Transpose",
        "Reshape",
        "Pack",
        "Unpack",
        "Gather",
        "Scatter",
        "Reverse",
        "Tile",
        "BroadcastTo",
        "Fill",
        "ZerosLike",
        "OnesLike",
        "Identity",
    ),
    "elementwise": (
        "Sigmoid",
        "Tanh",
        "Mul",
        "Add",
        "Sub",
        "Exp",
        "Log",
        "Select",
        "Div",
        "Neg",
        "Square",
        "Sqrt",
        "Maximum",
        "Minimum",
        "Greater",
        "Less",
        "Equal",
        "Relu",
    ),
}


# Types that a KINDS marker would misfile ("Max" is a reduction, "Maximum" is not).
EXACT = {"Maximum": "elementwise", "Minimum": "elementwise", "TensorScatterSub": "data movement"}


def kind_of(op_type: str) -> str:
    """The kind an op type counts under (EXACT first, then by substring in KINDS' order)."""
    bare = op_type.removeprefix("_MklNative").removeprefix("_Mkl")
    if bare in EXACT:
        return EXACT[bare]
    for kind, markers in KINDS.items():
        if any(marker in bare for marker in markers):
            return kind
    return "other"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="model/train settings YAML")
    parser.add_argument("--data", type=Path, default=bench_train.DEFAULT_DATA)
    parser.add_argument("--pair", default="en-de")
    parser.add_argument("--batch-tokens", type=int, default=1200)
    parser.add_argument("--variants", default="nmt:mixed_bfloat16,nmt:float32")
    parser.add_argument("--steps", type=int, default=4, help="distinct batches, one pass each")
    parser.add_argument("--rounds", type=int, default=3, help="passes per variant, alternated")
    parser.add_argument("--warmup", type=int, default=3, help="unprofiled steps first")
    parser.add_argument("--top", type=int, default=12, help="op types listed per variant")
    parser.add_argument("--vocab-cache", type=Path, default=bench_train.DEFAULT_CACHE)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.set_defaults(jit=False)  # bench_train's recipe_config reads it
    args = parser.parse_args(argv)
    for name in ("steps", "rounds", "top"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}: expected at least 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup: expected 0 or more, got {args.warmup}")
    if len(args.variants.split(",")) != 2:
        parser.error(f"--variants: expected two, as A,B; got {args.variants!r}")
    return args


def op_times(trace_dir: str) -> tuple[collections.Counter, collections.Counter, int]:
    """({op type: seconds}, {op name: seconds}, op count) from the profiler's trace in
    `trace_dir`; names drop the function-body prefixes of loops (`.../body/_12/`)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    files = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
    if not files:
        raise SystemExit(f"profile_train: the profiler wrote no trace under {trace_dir}")
    space = xplane_pb2.XSpace()
    space.ParseFromString(Path(files[0]).read_bytes())
    times, by_name, count = collections.Counter(), collections.Counter(), 0
    for plane in space.planes:
        names = plane.event_metadata
        for line in plane.lines:
            for event in line.events:
                name = names[event.metadata_id].name
                # Ops are "name:Type"; executor and function-call events have "::" or none.
                if ":" not in name or "::" in name or name.startswith("EagerLocalExecute"):
                    continue
                op_type = name.rpartition(":")[2]
                if op_type.startswith("__inference") or op_type in ("_Arg", "_Retval"):
                    continue
                times[op_type] += event.duration_ps * 1e-12
                by_name[re.sub(r"^.*/body/_\d+/", "", name)] += event.duration_ps * 1e-12
                count += 1
    return times, by_name, count


def profile_once(trainer, batches) -> tuple[float, collections.Counter, collections.Counter, int]:
    """One pass of one variant over the batches unprofiled (wall s), then profiled (op type
    and op name seconds, op count): tracing slows every op call, so the wall time is apart."""
    import tensorflow as tf

    start = time.perf_counter()
    for batch in batches:
        bench_train._timed_step(trainer, *batch)
    wall = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="nmt-profile-") as trace_dir:
        tf.profiler.experimental.start(trace_dir)
        for batch in batches:
            bench_train._timed_step(trainer, *batch)
        tf.profiler.experimental.stop()
        times, by_name, count = op_times(trace_dir)
    return wall, times, by_name, count


def profile(trainers: dict, batches, warmup: int, rounds: int) -> dict:
    """{variant: wall s per step, {op type: s per step}, {op name: s per step}, ops per step},
    the variants alternating pass by pass (the order flips every round), so that a machine
    that slows down for a while slows all of them."""
    names = list(trainers)
    for name in names:
        for batch in (batches * (warmup // len(batches) + 1))[:warmup]:
            bench_train._timed_step(trainers[name], *batch)
    totals = {n: [0.0, collections.Counter(), collections.Counter(), 0] for n in names}
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            wall, times, by_name, count = profile_once(trainers[name], batches)
            total = totals[name]
            total[0] += wall
            total[1].update(times)
            total[2].update(by_name)
            total[3] += count
    n = rounds * len(batches)
    return {
        name: {
            "wall": wall / n,
            "ops": {op: seconds / n for op, seconds in times.items()},
            "names": {op: seconds / n for op, seconds in by_name.items()},
            "ops_per_step": count / n,
        }
        for name, (wall, times, by_name, count) in totals.items()
    }


def by_kind(ops: dict) -> dict:
    kinds = collections.Counter()
    for op_type, seconds in ops.items():
        kinds[kind_of(op_type)] += seconds
    return dict(kinds)


def ceiling(a: dict, b: dict) -> dict:
    """The precision ceiling of variant a against b (see the module docstring), from the
    profiled op times (tracing slows every op, so they are compared with each other only)."""
    ka, kb = by_kind(a["ops"]), by_kind(b["ops"])
    total_a, total_b = sum(ka.values()), sum(kb.values())
    matmul_a, matmul_b = ka.get("matmul", 0.0), kb.get("matmul", 0.0)
    extra = {k: ka.get(k, 0.0) - kb.get(k, 0.0) for k in set(ka) | set(kb)}
    return {
        "step_ratio": b["wall"] / a["wall"],
        "op_ratio": total_b / total_a,
        "matmul_ratio": matmul_b / max(matmul_a, 1e-12),
        "shared_rest_ratio": total_b / (matmul_a + total_b - matmul_b),
        "extra_in_a": {k: v for k, v in sorted(extra.items(), key=lambda kv: -kv[1]) if v > 0},
    }


def print_report(args, results: dict, names: list[str]) -> None:
    from nmt.precision import cpu_description

    ms = 1e3
    print(f"CPU: {cpu_description()}")
    print(
        f"one thread; {args.rounds} alternated rounds of {args.steps} batches, unprofiled then "
        f"profiled, after {args.warmup} warm-up steps; ms per step\n"
    )
    kinds = list(KINDS) + ["other"]
    print("| kind | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    per_kind = {name: by_kind(results[name]["ops"]) for name in names}
    for kind in kinds:
        cells = [f"{per_kind[n].get(kind, 0.0) * ms:.1f}" for n in names]
        print(f"| {kind} | " + " | ".join(cells) + " |")
    sums = [sum(results[n]["ops"].values()) for n in names]
    print("| **all ops (profiled)** | " + " | ".join(f"{t * ms:.1f}" for t in sums) + " |")
    print(
        "| step wall (unprofiled) | "
        + " | ".join(f"{results[n]['wall'] * ms:.1f}" for n in names)
        + " |"
    )
    print(
        "| ops per step | " + " | ".join(f"{results[n]['ops_per_step']:.0f}" for n in names) + " |"
    )
    top = ceiling(results[names[0]], results[names[1]])
    a, b = names
    print(
        f"\nstep ratio {b}/{a}: {top['step_ratio']:.2f}x (op time {top['op_ratio']:.2f}x); "
        f"matmul-only ratio "
        f"{top['matmul_ratio']:.2f}x; ratio if {a}'s non-matmul work cost what {b}'s does: "
        f"{top['shared_rest_ratio']:.2f}x"
    )
    extra = ", ".join(f"{k} +{v * ms:.1f} ms" for k, v in top["extra_in_a"].items())
    print(f"kinds on which {a} spends more than {b}: {extra or 'none'}")
    for kind in top["extra_in_a"]:
        names_a = results[a]["names"]
        ops = [(n, t) for n, t in names_a.items() if kind_of(n.rpartition(":")[2]) == kind]
        ops = sorted(ops, key=lambda kv: -kv[1])[:5]
        print(f"  {kind} in {a}: " + "; ".join(f"{n} {t * ms:.1f}" for n, t in ops))
    for name in names:
        ops = sorted(results[name]["ops"].items(), key=lambda kv: -kv[1])[: args.top]
        listed = ", ".join(f"{op} {seconds * ms:.1f}" for op, seconds in ops)
        print(f"\n{name}, top op types (ms per step): {listed}")


def main(argv=None) -> int:
    args = parse_args(argv)
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    names = args.variants.split(",")
    config, vocab = bench_train.prepare(args)
    trainers, batches, _ = bench_train.build_all(config, vocab, names, args.steps)
    results = profile(trainers, batches, args.warmup, args.rounds)
    print_report(args, results, names)
    if args.json:
        summary = {n: {"wall": r["wall"], "kinds": by_kind(r["ops"])} for n, r in results.items()}
        summary["ceiling"] = ceiling(results[names[0]], results[names[1]])
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
