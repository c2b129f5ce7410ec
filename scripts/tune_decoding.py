"""Pick the beam size and length penalty on a dev set: one model load, a grid of searches.

Translates the dev source once per (beam, alpha) pair with the model loaded once, scores each
with sacreBLEU against the dev reference (cased, 13a, as `nmt evaluate`) and prints a Markdown
table with the best pair marked. Use the validation set, never the test set.

Usage:
    python scripts/tune_decoding.py --model DIR --src val.en --ref val.de
                                    [--beams 1,5,10] [--alphas 0,0.6,1.0] [--checkpoint best]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def numbers(text: str, kind):
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list: {text!r}") from e


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--src", required=True, type=Path)
    parser.add_argument("--ref", required=True, type=Path)
    parser.add_argument("--checkpoint", default="best")
    parser.add_argument("--beams", type=lambda t: numbers(t, int), default=[1, 5, 10])
    parser.add_argument("--alphas", type=lambda t: numbers(t, float), default=[0.0, 0.6, 1.0])
    args = parser.parse_args(argv)

    from nmt.checkpoints import load_model
    from nmt.errors import NmtError
    from nmt.evaluation import read_lines, score
    from nmt.translator import Translator

    try:
        sources, refs = read_lines(args.src), read_lines(args.ref)
        if len(sources) != len(refs):
            raise NmtError(f"{args.src} has {len(sources)} lines but {args.ref} has {len(refs)}")
        loaded = load_model(args.model, args.checkpoint)
    except NmtError as e:
        print(f"tune_decoding: error: {e}", file=sys.stderr)
        return 2
    translator = Translator(loaded.model, loaded.vocab, loaded.config.decode)
    encoded = [translator.encode(s, n, str(args.src)) for n, s in enumerate(sources, 1)]
    rows = []
    for beam in args.beams:
        # alpha changes nothing for greedy search: one row
        for alpha in args.alphas if beam > 1 else [0.0]:
            start = time.perf_counter()
            outputs = translator.translate_encoded(encoded, beam_size=beam, length_penalty=alpha)
            seconds = time.perf_counter() - start
            hyps = [o[0].text for o in outputs]
            bleu = score(hyps, refs, "bleu")
            rows.append((beam, alpha, bleu.score, seconds))
            print(f"beam {beam} alpha {alpha}: BLEU {bleu.score:.2f} ({seconds:.1f} s)", flush=True)
    best = max(rows, key=lambda r: r[2])
    print(f"\nmodel {args.model} ({args.checkpoint}, step {loaded.step}), dev {args.src.name}\n")
    print("| beam | length penalty | dev BLEU | seconds |\n|---|---|---|---|")
    for r in rows:
        mark = " **best**" if r is best else ""
        print(f"| {r[0]} | {r[1]:g} | {r[2]:.2f}{mark} | {r[3]:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
