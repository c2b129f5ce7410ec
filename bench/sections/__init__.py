"""The five benchmark sections. Each module has `run(ctx) -> dict` (measures, in
subprocesses, and records its results in ctx.results) and `render(ctx, out) -> str` (the
section's Markdown from what `run` returned; ctx gives the plan, the arguments and the run's
provenance)."""

from __future__ import annotations

from bench.sections import s1_lstm, s2_train, s3_decode, s4_memory, s5_growth

SECTIONS = {1: s1_lstm, 2: s2_train, 3: s3_decode, 4: s4_memory, 5: s5_growth}
