"""Section 2: training throughput, NMTSmallV1 shape, nmt vs OpenNMT-tf."""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import NMT_A, NMT_B, NOT_RUN, PEER_BATCH, PEER_NAME, SECTION_TITLES, BenchError
from bench.logs import LogWindow, parse_parameters, peer_steady_rate, steady_rate
from bench.markdown import command_block, fmt, format_table, mib
from bench.prose import fill

if TYPE_CHECKING:
    from bench.context import Benchmark


@dataclass
class TrainSeries:
    """Alternating runs of one system in section 2."""

    name: str
    model_dir: Path
    batch: str  # how batches are made, for the table
    runs: list[Any] = field(default_factory=list)  # ProcResult (ours) or PeerTrainRun
    windows: list[list[LogWindow]] = field(default_factory=list)
    steps: int = 0


def _matmul_ceiling(ctx: Benchmark) -> dict:
    """float32 `tf.matmul` rates of the square case and the products a step is made of."""
    plan = ctx.plan
    ceiling, _ = ctx.run_worker(
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
            "seconds_per_trial": 0.5 if not ctx.args.quick else 0.1,
        },
        "s2_matmul",
    )
    return ceiling


def _peer_round(ctx: Benchmark, series: TrainSeries, steps: int, r: int, commands: list) -> None:
    run = ctx.peer_train(series.model_dir, series.steps + steps)
    series.runs.append(run)
    series.steps = run.final_step
    ctx.record(
        2, series.name, f"train round {r + 1}", run.wall_seconds, run.cpu_seconds,
        run.peak_rss_bytes,
    )  # fmt: skip
    if r == 0:
        commands.append(shlex.join(run.command))


def _nmt_round(ctx, series: TrainSeries, config, steps, every, label, r, commands) -> None:
    total = series.steps + steps
    proc, windows = ctx.nmt_train(config, series.model_dir, total, every, label)
    if not windows or windows[-1].step != total:
        raise BenchError(f"{proc.log}: no report line for step {total}")
    series.runs.append(proc)
    series.windows.append(windows)
    series.steps = total
    ctx.record(2, series.name, f"train round {r + 1}", proc.wall, proc.cpu, proc.peak_rss)
    if r == 0:
        commands.append(shlex.join(proc.command))


def _train_rounds(ctx: Benchmark, root: Path, matched: int) -> tuple[list, list[str]]:
    """The alternating rounds: nmt (a), the peer, nmt (b), each continuing its own model."""
    plan = ctx.plan
    if root.exists():
        shutil.rmtree(root)  # fresh models: step counts as planned
    root.mkdir(parents=True)
    ours_a = TrainSeries(NMT_A, root / f"nmt_bt{matched}", f"batch_tokens {matched}")
    ours_b = TrainSeries(NMT_B, root / "nmt_bt4096", "batch_tokens 4096")
    peer = TrainSeries(PEER_NAME, root / "onmt", f"{PEER_BATCH} examples")
    configs = {
        "a": ctx.small_v1_yaml(matched, root / f"nmt_bt{matched}.yaml"),
        "b": ctx.small_v1_yaml(4096, root / "nmt_bt4096.yaml"),
    }
    commands: list[str] = []
    for r in range(plan.rounds):
        for key, series, steps, every in (
            ("a", ours_a, plan.steps_matched, plan.log_matched),
            ("peer", peer, plan.steps_matched, None),
            ("b", ours_b, plan.steps_4096, plan.log_4096),
        ):
            if key != "peer":
                label = f"s2_train_{key}_round{r + 1}"
                _nmt_round(ctx, series, configs[key], steps, every, label, r, commands)
            elif not ctx.args.skip_peer:
                _peer_round(ctx, series, steps, r, commands)
    return [ours_a, ours_b, peer], commands


def _ours_summary(series: TrainSeries, st: dict) -> dict:
    """One of our series: steady rates from its logs, process totals, the batches' work."""
    rate = steady_rate(series.windows, skip=1)
    gflops = None
    if rate and rate.step_seconds:
        gflops = st["mean_flops"] / rate.step_seconds / 1e9
    return {
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


def run(ctx: Benchmark) -> dict:
    """Vocabulary, matmul ceiling, batch statistics and the alternating training runs."""
    spm = ctx.spm_model()
    ctx.ensure_peer()
    ceiling = _matmul_ceiling(ctx)
    stats = ctx.batch_stats(spm, [1024, 4096], "s2_batchstats", target_sentences=PEER_BATCH)
    matched = stats["chosen"]
    by_bt = {r["batch_tokens"]: r for r in stats["rows"]}
    (ours_a, ours_b, peer), commands = _train_rounds(ctx, ctx.workdir / "s2", matched)
    out = {
        "matmul": ceiling,
        "matmul_threads": ceiling.get("threads"),
        "batchstats": stats["rows"],
        "matched_batch_tokens": matched,
        "commands": commands,
        "systems": [_ours_summary(ours_a, by_bt[matched]), _ours_summary(ours_b, by_bt[4096])],
    }
    if ctx.args.skip_peer:
        out["systems"].append({"name": peer.name, "batch": peer.batch, "not_run": True})
    else:
        out["systems"].append(peer_train_summary(ctx, peer))
    out["processes"] = [p for p in ctx.procs if p["section"] == 2]
    ctx.results["2"] = out
    ctx.save_results()
    return out


def peer_train_summary(ctx: Benchmark, series: TrainSeries) -> dict:
    rate = peer_steady_rate(series.runs, PEER_BATCH)
    return {
        "name": series.name,
        "batch": series.batch,
        "model_dir": str(series.model_dir),
        "mean_sentences": float(PEER_BATCH),
        "steps": series.steps,
        "timed_steps": rate["windows"] * ctx.plan.peer_report_every,
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


def systems_table(systems: list[dict]) -> str:
    """The table of section 2: one row per system ("not run" cells for a system left out)."""
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
    for s in systems:
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
    return format_table(columns, rows)


def ceiling_table(matmul_rows: list[dict]) -> str:
    """The matrix-product ceiling: one row per tf.matmul shape."""
    return format_table(
        [("tf.matmul (m x k) . (k x n)", "l"), ("ms", "r"), ("GFLOP/s", "r")],
        [
            [
                "({0} x {1}) . ({1} x {2})".format(*r["shape"]),
                fmt(r["seconds"] * 1e3, 2),
                fmt(r["gflops"], 1),
            ]
            for r in matmul_rows
        ],
    )


def render(ctx: Benchmark, out: dict) -> str:
    a, b = out["systems"][0], out["systems"][1]
    peer = out["systems"][2]
    plan = ctx.plan
    text = fill(
        "s2_train",
        title=SECTION_TITLES[2],
        provenance=ctx.provenance(),
        pair=ctx.pair,
        rounds=plan.rounds,
        steps_matched=plan.steps_matched,
        steps_4096=plan.steps_4096,
        ours_params=f" ({a['num_params']:,} parameters)" if a.get("num_params") else "",
        peer_batch=PEER_BATCH,
        peer_params=f", {peer['num_params']:,} parameters" if peer.get("num_params") else "",
        batch_sample=plan.batch_sample,
        log_matched=plan.log_matched,
        log_4096=plan.log_4096,
        peer_report_every=plan.peer_report_every,
        table=systems_table(out["systems"]),
        matmul_trials=plan.matmul_trials,
        matmul_threads=out.get("matmul_threads") or "default",
        ceiling=ceiling_table(out["matmul"]["rows"]),
        a_batch=a["batch"],
        a_sentences=f"{a['mean_sentences']:.1f}",
        a_tokens=f"{a['mean_tokens']:.0f}",
        b_batch=b["batch"],
        b_sentences=f"{b['mean_sentences']:.1f}",
        b_tokens=f"{b['mean_tokens']:.0f}",
    )
    return "\n".join([text, "", command_block(out["commands"])])
