"""Fixed result dicts of the five benchmark sections (what each section's `run` returns, figures
from a real run) and a Benchmark context that needs no data, for rendering without measuring."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import NMT_A, NMT_A_MATCHED, NMT_B, PEER_NAME


def sample_args(root: Path, **overrides) -> argparse.Namespace:
    """The parsed command line of scripts/benchmark.py with every path under `root`."""
    values = dict(
        quick=False,
        skip_peer=False,
        workdir=root / "work",
        data=root / "multi30k",
        pair="en-de",
        model=root / "ende_b",
        decode_max_length=15,
        decode_min_length=15,
        out=root / "BENCHMARKS.md",
        plots=root / "plots",
        section_list=[1, 2, 3, 4, 5],
    )
    values.update(overrides)
    return argparse.Namespace(**values)


def sample_context(root: Path, **overrides):
    """A Benchmark over `sample_args` (no data read; the machine is this one)."""
    from bench.context import Benchmark

    ctx = Benchmark(sample_args(root, **overrides))
    ctx.command = "python scripts/benchmark.py --sections 1,2,3,4,5"
    return ctx


def s1_result() -> dict:
    row = dict(batch=32, length=20, input_dim=128, units=256, steps=20, warmup=3)
    return {
        "wall": 21.4,
        "rows": [
            {**row, "name": "small", "mode": "train", "keras": 19779.2, "ours": 33015.0}
            | {"ratio": 1.669, "cpu_ratio": 1.681, "max_diff": 6.2e-07},
            {**row, "name": "small", "mode": "forward", "keras": 76109.0, "ours": 88080.4}
            | {"ratio": 1.157, "cpu_ratio": 1.131, "max_diff": 6.2e-07},
        ],
    }


def _ours(name: str, batch: str, sentences: float, tokens: float, steps: int, **kw) -> dict:
    return {
        "name": name,
        "batch": batch,
        "model_dir": f"runs/bench/s2/{batch.replace(' ', '_')}",
        "mean_sentences": sentences,
        "mean_tokens": tokens,
        "steps": steps,
        "runs": 2,
        "num_params": 22_527_808,
        **kw,
    }


def s2_result(skip_peer: bool = False) -> dict:
    a = _ours(NMT_A, "batch_tokens 1176", 64.13, 2002.4, 40, tokens_per_s=1933.2)
    a.update(tokens_per_s_nmt=1933.2, step_seconds=1.031, gflops=97.31, cpu=101.2, wall=78.3)
    a.update(peak_rss=1548 * 2**20, timed_steps=30)
    b = _ours(NMT_B, "batch_tokens 4096", 224.87, 7001.2, 8, tokens_per_s=2066.0)
    b.update(tokens_per_s_nmt=2066.0, step_seconds=3.392, gflops=103.8, cpu=74.1, wall=50.2)
    b.update(peak_rss=2371 * 2**20, timed_steps=6)
    if skip_peer:
        peer = {"name": PEER_NAME, "batch": "64 examples", "not_run": True}
    else:
        peer = _ours(PEER_NAME, "64 examples", 64.0, None, 40, tokens_per_s=1570.4, gflops=None)
        peer.update(tokens_per_s_nmt=1626.1, step_seconds=1.163, cpu=134.0, wall=90.2)
        peer.update(peak_rss=1650 * 2**20, timed_steps=30)
    shapes = [(2048, 2048, 2048, 0.12732, 134.9), (64, 1024, 2048, 0.00277, 96.8)]
    return {
        "matmul": {
            "rows": [{"shape": [m, k, n], "seconds": s, "gflops": g} for m, k, n, s, g in shapes],
            "threads": 2,
        },
        "matmul_threads": 2,
        "batchstats": [],
        "matched_batch_tokens": 1176,
        "commands": [
            "nmt train --config runs/bench/s2/nmt_bt1176.yaml --set train.max_steps=20",
            "onmt-main --model_type NMTSmallV1 --config data.yml --auto_config train",
        ],
        "systems": [a, b, peer],
    }


def _decode_row(system: str, beam: int, bleu: float, wall: float, rate: float, limit: str):
    return {
        "system": system,
        "beam": beam,
        "bleu": bleu,
        "full": {"wall": wall, "cpu": 1.7 * wall, "peak_rss": 1033 * 2**20},
        "head": {"wall": 7.2, "cpu": 9.0, "peak_rss": 886 * 2**20},
        "sentences_per_s": rate,
        "mean_pieces": 15.0,
        "pieces_per_s": 15 * rate,
        "batch": "4096 tokens",
        "limit": limit,
        "command": f"nmt translate test2016.en --beam {beam} --model {system.split()[0]}",
    }


def s3_result(min_length: int = 15, max_length: int = 15, skip_peer: bool = False) -> dict:
    rows = [
        _decode_row(NMT_A, 5, 0.0213, 22.13, 60.14, "15-15"),
        _decode_row(NMT_A_MATCHED, 5, 0.0213, 22.81, 58.02, "15-15"),
        _decode_row("nmt recommended (ende_b)", 1, 22.364, 9.52, 235.96, "10 + 2 x (source + 1)"),
    ]
    if not skip_peer:
        rows.append(_decode_row(PEER_NAME, 5, 0.0411, 30.07, 62.43, "15-15"))
    return {
        "rows": rows,
        "lines": 1000,
        "head_lines": 100,
        "steps": 40,
        "max_length": max_length,
        "min_length": min_length,
        "batch_tokens": 4096,
        "limited_model_dir": f"runs/bench/s3/nmt_bt1176_min{min_length}_max{max_length}",
        "small_model_dir": "runs/bench/s2/nmt_bt1176",
    }


def s4_result() -> dict:
    def proc(section: int, system: str, what: str, wall: float, rss_mib) -> dict:
        rss = None if rss_mib is None else rss_mib * 2**20
        return dict(section=section, system=system, what=what, wall=wall, cpu=1.5 * wall) | {
            "peak_rss": rss
        }

    procs = [
        proc(2, NMT_A, "train round 1", 30.94, 1508),
        proc(2, PEER_NAME, "train round 1", 45.12, 1650),
        proc(3, NMT_A, "beam 5, full (1000 lines)", 22.13, 1033),
        proc(3, PEER_NAME, "beam 5, head (100 lines)", 15.61, None),
    ]
    return {"processes": procs}


def s5_result(plot: Path) -> dict:
    train = [
        dict(batch_tokens=bt, steps=4, timed_steps=3, mean_sentences=s, mean_tokens=t)
        | dict(tokens_per_s=r, step_seconds=st, gflops=g, peak_rss=m * 2**20, wall=w, cpu=w)
        for bt, s, t, r, st, g, m, w in [
            (1024, 55.81, 1745.2, 1832.4, 0.952, 92.04, 1407, 14.2),
            (4096, 224.9, 7001.3, 2000.1, 3.431, 102.42, 2211, 20.3),
        ]
    ]
    decode_rows = [
        dict(beam=1, source_pieces=10, sentences=16, seconds=0.104, cpu_seconds=0.19)
        | dict(mean_output=12.81, max_output=32, limit=32),
        dict(beam=5, source_pieces=25, sentences=16, seconds=0.552, cpu_seconds=1.01)
        | dict(mean_output=26.3, max_output=33, limit=62),
    ]
    decode = {
        "rows": decode_rows,
        "parameters": 12_660_544,
        "checkpoint": "runs/ende_b/best/ckpt-3593",
        "batch_tokens": 4096,
        "length_penalty": 1.0,
        "rule": "floor(10 + 2 x (pieces + EOS))",
        "peak_rss": 940 * 2**20,
    }
    return {
        "train": train,
        "decode": decode,
        "commands": ["nmt train --config runs/bench/s5/nmt_bt1024.yaml"],
        "model": "runs/ende_b",
        "plot": str(plot),
    }
