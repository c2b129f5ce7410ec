"""Probe a trained model's attention and its BLEU by source length.

Teacher-forces the references of a parallel set through the model and reports, over all real
target positions, the mean attention entropy (nats; beside the entropy of a uniform spread), and
the share of the attention mass on the last two source positions ("." and EOS), the figures that
`nmt train` logs at each evaluation. With `--hyp` (a translation of `--src`), it also scores
sacreBLEU (cased, 13a) on the thirds of the set by source length in words, to show whether long
sentences suffer. With `--align` (reference word alignments of the pairs in the Pharaoh "i-j"
format, as `nmt demo-data` writes them), it also measures how well the attention agrees with
them (`alignment_agreement`). Prints Markdown, or JSON with `--json`.

Usage:
    python scripts/attention_report.py --model DIR --src val.en --ref val.de
                                       [--hyp val.hyp] [--align val.align]
                                       [--checkpoint best] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def attention_summary(model, dataset) -> dict[str, float]:
    """Mean entropy, uniform entropy, final-two mass and peak share over every real target
    position."""
    import tensorflow as tf

    from nmt.constants import PAD_ID
    from nmt.layers.attention import attention_health

    ids = tf.TensorSpec([None, None], tf.int32)  # one trace (a static batch of 1 fails)

    @tf.function(input_signature=[ids] * 3)
    def batch_sums(source, target_in, target_out):
        _, weights = model((source, target_in), training=False, return_attention=True)
        return attention_health(weights, source != PAD_ID, target_out != PAD_ID)

    sums = [0.0] * 5
    for (source, target_in), target_out in dataset:
        sums = [
            a + float(b)
            for a, b in zip(sums, batch_sums(source, target_in, target_out), strict=True)
        ]
    count = max(sums[4], 1.0)
    return {
        "attention_entropy": sums[0] / count,
        "attention_final_mass": sums[1] / count,
        "attention_uniform_entropy": sums[2] / count,
        "attention_peak": sums[3] / count,
        "target_positions": int(sums[4]),
    }


def piece_words(pieces: Sequence[str]) -> list[int]:
    """The word index of each SentencePiece piece: a piece starting with "▁" begins a word."""
    words, index = [], -1
    for piece in pieces:
        if piece.startswith("▁") or index < 0:
            index += 1
        words.append(index)
    return words


def word_attention(weights, source_words: Sequence[int], target_words: Sequence[int]):
    """Piece attention `(T, S + 1)` (rows: target pieces; columns: source pieces, then EOS) ->
    word attention `(target words, source words + 1)`, the last column EOS: summed over the
    pieces of a source word, averaged over the pieces of a target word."""
    import numpy as np

    columns = np.zeros((len(source_words) + 1, source_words[-1] + 2))
    columns[np.arange(len(source_words)), source_words] = 1.0
    columns[-1, -1] = 1.0
    rows = np.zeros((target_words[-1] + 1, len(target_words)))
    rows[target_words, np.arange(len(target_words))] = 1.0
    rows /= rows.sum(axis=1, keepdims=True)
    return rows @ np.asarray(weights, dtype=np.float64) @ columns


def alignment_agreement(model, vocab, sources, targets, alignments, batch_size: int = 50) -> dict:
    """How well the attention, teacher-forcing the references, agrees with reference alignments.

    `alignments[n]`: the (source word, target word) links of pair n (0-based, whitespace
    words). Over every aligned target word: `alignment_accuracy` is the share whose most
    attended source word (EOS counts as a miss) is one it is aligned to; `aligned_mass` the mean
    attention mass on the words it is aligned to. Unaligned target words are left out.
    """
    import numpy as np
    import tensorflow as tf

    ids = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[ids] * 2)
    def attend(source, target_in):
        return model((source, target_in), training=False, return_attention=True)[1]

    pieces = (vocab.processor("source").id_to_piece, vocab.processor("target").id_to_piece)
    hits = mass = count = 0.0
    for start in range(0, len(sources), batch_size):
        rows = slice(start, start + batch_size)
        source_ids = vocab.encode_source(sources[rows])
        target_ids = vocab.encode_target(targets[rows])
        target_in = vocab.encode_target(targets[rows], add_bos=True)
        weights = attend(_padded(source_ids), _padded(target_in)).numpy()
        for n, (src, tgt, links) in enumerate(
            zip(source_ids, target_ids, alignments[rows], strict=True)
        ):
            words = [piece_words(pieces[0](src[:-1])), piece_words(pieces[1](tgt))]
            _check_words(words, sources[start + n], targets[start + n])
            attention = word_attention(weights[n, : len(tgt), : len(src)], *words)
            for j, aligned in _links_by_target(links).items():
                hits += int(np.argmax(attention[j])) in aligned
                mass += attention[j, sorted(aligned)].sum()
                count += 1
    return {
        "alignment_accuracy": hits / max(count, 1.0),
        "aligned_mass": mass / max(count, 1.0),
        "aligned_words": int(count),
    }


def _padded(rows: list[list[int]]):
    import numpy as np

    from nmt.constants import PAD_ID

    out = np.full((len(rows), max(map(len, rows))), PAD_ID, dtype=np.int32)
    for n, row in enumerate(rows):
        out[n, : len(row)] = row
    return out


def _check_words(words: list[list[int]], source: str, target: str) -> None:
    from nmt.errors import DataError

    for side, text in zip(words, (source, target), strict=True):
        if not side or side[-1] + 1 != len(text.split()):
            raise DataError(f"the pieces of {text!r} do not split into its words")


def _links_by_target(links) -> dict[int, set[int]]:
    by_target: dict[int, set[int]] = {}
    for i, j in links:
        by_target.setdefault(j, set()).add(i)
    return by_target


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
    parser.add_argument("--align", type=Path, help="word alignments of --src/--ref (i-j lines)")
    parser.add_argument("--checkpoint", default="best")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from nmt.checkpoints import load_model
    from nmt.data import make_eval_dataset
    from nmt.demo_align import parse_links
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
        if args.align:
            sources, refs, lines = (read_lines(p) for p in (args.src, args.ref, args.align))
            if not len(sources) == len(refs) == len(lines):
                raise NmtError(f"{args.align}: line counts of --src, --ref, --align differ")
            alignments = [parse_links(line) for line in lines]
            report.update(
                alignment_agreement(loaded.model, loaded.vocab, sources, refs, alignments)
            )
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
        "| attention entropy (nats) | uniform spread (nats) | mass on the last 2 positions "
        "| share on the most-attended position |",
        "|---|---|---|---|",
        f"| {report['attention_entropy']:.3f} | {report['attention_uniform_entropy']:.3f} | "
        f"{100 * report['attention_final_mass']:.1f}% | "
        f"{100 * report.get('attention_peak', float('nan')):.1f}% |",
    ]
    if "alignment_accuracy" in report:
        lines += [
            "",
            "| aligned target words | argmax on an aligned word | mass on aligned words |",
            "|---|---|---|",
            f"| {report['aligned_words']} | {100 * report['alignment_accuracy']:.1f}% | "
            f"{100 * report['aligned_mass']:.1f}% |",
        ]
    if "bleu_by_source_length" in report:
        lines += ["", "| source words | lines | BLEU |", "|---|---|---|"]
        for row in report["bleu_by_source_length"]:
            lines.append(f"| {row['words']} | {row['lines']} | {row['bleu']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
