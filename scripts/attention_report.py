"""Probe a trained model's attention and its BLEU by source length.

Teacher-forces the references of a parallel set through the model and reports, over all real
target positions, the mean attention entropy (nats; beside the entropy of a uniform spread), and
the share of the attention mass on the last two source positions ("." and EOS), the figures that
`nmt train` logs at each evaluation. With `--hyp` (a translation of `--src`), it also scores
sacreBLEU (cased, 13a) on the thirds of the set by source length in words, to show whether long
sentences suffer. Prints Markdown, or JSON with `--json`.

Usage:
    python scripts/attention_report.py --model DIR --src val.en --ref val.de
                                       [--hyp val.hyp] [--checkpoint best] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def attention_summary(model, dataset) -> dict[str, float]:
    """Mean entropy, uniform entropy and final-two mass over every real target position."""
    import tensorflow as tf

    from nmt.constants import PAD_ID
    from nmt.layers.attention import attention_health

    @tf.function
    def batch_sums(source, target_in, target_out):
        _, weights = model((source, target_in), training=False, return_attention=True)
        return attention_health(weights, source != PAD_ID, target_out != PAD_ID)

    sums = [0.0] * 4
    for (source, target_in), target_out in dataset:
        sums = [
            a + float(b)
            for a, b in zip(sums, batch_sums(source, target_in, target_out), strict=True)
        ]
    count = max(sums[3], 1.0)
    return {
        "attention_entropy": sums[0] / count,
        "attention_final_mass": sums[1] / count,
        "attention_uniform_entropy": sums[2] / count,
        "target_positions": int(sums[3]),
    }


def bleu_by_length(sources: list[str], hyps: list[str], refs: list[str]) -> list[dict]:
    """sacreBLEU on the thirds of the set sorted by source length in words."""
    from nmt.evaluation import bleu

    order = sorted(range(len(sources)), key=lambda i: len(sources[i].split()))
    thirds = [order[k * len(order) // 3 : (k + 1) * len(order) // 3] for k in range(3)]
    rows = []
    for part in thirds:
        if not part:
            continue
        lengths = [len(sources[i].split()) for i in part]
        score = bleu([hyps[i] for i in part], [refs[i] for i in part]).score
        rows.append({"words": f"{min(lengths)}-{max(lengths)}", "lines": len(part), "bleu": score})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--src", required=True, type=Path)
    parser.add_argument("--ref", required=True, type=Path)
    parser.add_argument("--hyp", type=Path, help="a translation of --src for BLEU by length")
    parser.add_argument("--checkpoint", default="best")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from nmt.checkpoints import load_model
    from nmt.data import make_eval_dataset
    from nmt.errors import NmtError
    from nmt.evaluation import read_lines

    try:
        loaded = load_model(args.model, args.checkpoint)
        dataset = make_eval_dataset(args.src, args.ref, loaded.vocab, loaded.config.data)
        report = {"model": str(args.model), "step": loaded.step}
        report.update(attention_summary(loaded.model, dataset))
        if args.hyp:
            sources, refs, hyps = (read_lines(p) for p in (args.src, args.ref, args.hyp))
            if not len(sources) == len(refs) == len(hyps):
                raise NmtError(f"{args.hyp}: line counts of --src, --ref, --hyp differ")
            report["bleu_by_source_length"] = bleu_by_length(sources, hyps, refs)
    except NmtError as e:
        print(f"attention_report: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


def render(report: dict) -> str:
    lines = [
        f"model {report['model']} (step {report['step']}), {report['target_positions']} target "
        "positions teacher-forced",
        "",
        "| attention entropy (nats) | uniform spread (nats) | mass on the last 2 positions |",
        "|---|---|---|",
        f"| {report['attention_entropy']:.3f} | {report['attention_uniform_entropy']:.3f} | "
        f"{100 * report['attention_final_mass']:.1f}% |",
    ]
    if "bleu_by_source_length" in report:
        lines += ["", "| source words | lines | BLEU |", "|---|---|---|"]
        for row in report["bleu_by_source_length"]:
            lines.append(f"| {row['words']} | {row['lines']} | {row['bleu']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
