"""The Multi30k benchmark behind scripts/benchmark.py and scripts/bench_peer.py (run from a
checkout; not shipped in the wheel: setup.py packages only nmt). One module per section in
bench/sections/ (`run(ctx) -> dict`, `render(ctx, out) -> str`), the one process runner
(proc), the OpenNMT-tf harness (peer), the plan and its time budget (plan), the Markdown
prose as templates in bench/templates/ filled by prose.fill."""
