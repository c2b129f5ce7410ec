"""Section 1: nmt.layers.LSTM vs keras.layers.LSTM (scripts/bench_lstm.py's steps)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.common import SECTION_TITLES
from bench.markdown import fmt, format_table
from bench.prose import fill

if TYPE_CHECKING:
    from bench.context import Benchmark


def run(ctx: Benchmark) -> dict:
    result, proc = ctx.run_worker("lstm", {"configs": ctx.plan.lstm_configs}, "s1_lstm")
    ctx.results["1"] = result
    return {**result, "wall": proc.wall}


def render(ctx: Benchmark, result: dict) -> str:
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
    return fill(
        "s1_lstm",
        title=SECTION_TITLES[1],
        provenance=ctx.provenance(),
        wall=f"{result['wall']:.0f}",
        table=format_table(columns, rows),
    )
