"""Section 4: peak resident memory of the processes of sections 2 and 3."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.common import NOT_RUN, PEER_NAME, SECTION_TITLES, BenchError
from bench.markdown import fmt, format_table, mib
from bench.prose import fill

if TYPE_CHECKING:
    from bench.context import Benchmark


def run(ctx: Benchmark) -> dict:
    """The timed processes that sections 2 and 3 recorded in results.json (nothing is run)."""
    procs = []
    for key in ("2", "3"):
        procs += ctx.results.get(key, {}).get("processes", [])
    if not procs:
        raise BenchError("section 4 reports sections 2 and 3: run them (same --workdir)")
    return {"processes": procs}


def render(ctx: Benchmark, out: dict) -> str:
    procs = out["processes"]
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
    if ctx.args.skip_peer:
        for phase in ("training", "decoding"):
            summary.setdefault((PEER_NAME, phase), [])
    summary_rows = [
        [system, phase, fmt(mib(max(v))) if v else NOT_RUN, len(v) or NOT_RUN]
        for (system, phase), v in sorted(summary.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]
    summary_columns = [
        ("system", "l"),
        ("phase", "l"),
        ("peak RSS MiB (max)", "r"),
        ("processes", "r"),
    ]
    return fill(
        "s4_memory",
        title=SECTION_TITLES[4],
        provenance=ctx.provenance(),
        summary=format_table(summary_columns, summary_rows),
        table=format_table(columns, rows),
    )
