"""Section 5: how cost grows with batch size, source length and beam."""

from __future__ import annotations

import io
import os
import shlex
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import SECTION_TITLES, BenchError
from bench.logs import steady_rate
from bench.markdown import command_block, fmt, format_table, mib, shown_path, write_atomic
from bench.prose import fill

if TYPE_CHECKING:
    from bench.context import Benchmark


def _measure(ctx: Benchmark) -> dict:
    plan, root = ctx.plan, ctx.workdir / "s5"
    spm = ctx.spm_model()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    stats = ctx.batch_stats(spm, list(plan.sweep_batch_tokens), "s5_batchstats")
    by_bt = {r["batch_tokens"]: r for r in stats["rows"]}
    train_rows, commands = [], []
    for bt, steps in plan.sweep_batch_tokens.items():
        config = ctx.small_v1_yaml(bt, root / f"nmt_bt{bt}.yaml")
        proc, windows = ctx.nmt_train(config, root / f"nmt_bt{bt}", steps, 1, f"s5_bt{bt}")
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
    model = ctx.args.model
    if not (model / "config.yaml").exists():
        raise BenchError(f"{model}: not a model directory (give --model)")
    sweep, proc = ctx.run_worker(
        "decode_sweep",
        {
            "model": str(model),
            "checkpoint": "best",
            "source": str(ctx.corpus("test2016", ctx.src_lang)),
            "lengths": plan.sweep_lengths,
            "beams": plan.sweep_beams,
            "count": plan.sweep_count,
        },
        "s5_decode_sweep",
    )
    sweep["peak_rss"] = proc.peak_rss
    out = {"train": train_rows, "decode": sweep, "commands": commands, "model": str(model)}
    ctx.results["5"] = out
    ctx.save_results()
    return out


def run(ctx: Benchmark) -> dict:
    out = _measure(ctx)
    return {**out, "plot": str(plot_growth(ctx, out))}


def train_table(rows: list[dict]) -> str:
    """Section 5's training sweep: one row per batch_tokens."""
    return format_table(
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
            for r in rows
        ],
    )


def decode_table(rows: list[dict]) -> str:
    """Section 5's decoding sweep: one row per beam and source length."""
    return format_table(
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
            for r in rows
        ],
    )


def render(ctx: Benchmark, out: dict) -> str:
    d = out["decode"]
    text = fill(
        "s5_growth",
        title=SECTION_TITLES[5],
        provenance=ctx.provenance(),
        train_table=train_table(out["train"]),
        model=shown_path(out["model"]),
        parameters=f"{d['parameters']:,}",
        checkpoint=shown_path(d["checkpoint"]),
        sweep_count=ctx.plan.sweep_count,
        batch_tokens=d["batch_tokens"],
        length_penalty=d["length_penalty"],
        rule=d["rule"],
        peak_rss=fmt(mib(d["peak_rss"])),
        decode_table=decode_table(d["rows"]),
        plot=os.path.relpath(Path(out["plot"]), ctx.args.out.resolve().parent),
    )
    return "\n".join([text, "", command_block(out["commands"])])


def plots_dir(ctx: Benchmark) -> Path:
    return ctx.args.plots


def plot_growth(ctx: Benchmark, out: dict) -> Path:
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
    return write_atomic(plots_dir(ctx) / "cost_growth.png", buffer.getvalue())
