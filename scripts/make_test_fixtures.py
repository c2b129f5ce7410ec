"""Rebuild the committed test fixture tests/data/tiny_joint.model (deterministic).

A joint unigram SentencePiece model with nmt's special ids (pad 0, unk 1, bos 2, eos 3),
256 pieces, trained on 2,000 pairs of the built-in demo task (nmt.demo_data, seed 7), so it
covers the demo vocabulary and needs no other corpus. It uses the "identity" normalisation
rule instead of the default nmt_nfkc, which keeps the file at a few KB (the NFKC table alone
is ~240 KB); for the ASCII-and-umlaut demo text the two behave the same.

Run from the repository root:  python scripts/make_test_fixtures.py [--check]
--check rebuilds in memory and exits 1 if the committed file differs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from nmt.config import VocabConfig
from nmt.demo_data import generate_pairs
from nmt.vocab import Vocab, _train_proto

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "tiny_joint.model"
DEMO_SEED = 7
PAIRS = 2000
CONFIG = VocabConfig(model_type="unigram", size=256, seed=1, input_sentence_size=0)


def build() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        src, tgt = Path(tmp) / "train.en", Path(tmp) / "train.de"
        pairs = list(generate_pairs(DEMO_SEED, PAIRS))
        src.write_text("".join(en + "\n" for en, _ in pairs), encoding="utf-8")
        tgt.write_text("".join(de + "\n" for _, de in pairs), encoding="utf-8")
        proto = _train_proto([src, tgt], CONFIG, str(CONFIG.seed), "identity")
    Vocab(proto)  # checks the special ids and pieces
    return proto


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    proto = build()
    if args.check:
        same = FIXTURE.exists() and FIXTURE.read_bytes() == proto
        print(f"{FIXTURE}: {'up to date' if same else 'DIFFERS from a rebuild'}")
        return 0 if same else 1
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_bytes(proto)
    print(f"wrote {FIXTURE} ({len(proto)} bytes, {CONFIG.size} pieces)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
