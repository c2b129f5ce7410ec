"""Tiny digit-reversal corpora and configs/tiny.yaml on them, and a log callable that keeps
its lines."""

from __future__ import annotations

import random
from pathlib import Path

from nmt.config import load_config

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny.yaml"


def write_corpus(directory: Path, n: int = 20, seed: int = 13, prefix: str = "train"):
    """`n` seeded pairs: 3-7 random digits and the same digits reversed."""
    rng = random.Random(seed)
    sources, targets = [], []
    for _ in range(n):
        words = [str(rng.randint(0, 9)) for _ in range(rng.randint(3, 7))]
        sources.append(" ".join(words))
        targets.append(" ".join(reversed(words)))
    directory.mkdir(parents=True, exist_ok=True)
    src, tgt = directory / f"{prefix}.src", directory / f"{prefix}.tgt"
    src.write_text("".join(s + "\n" for s in sources), encoding="utf-8")
    tgt.write_text("".join(t + "\n" for t in targets), encoding="utf-8")
    return src, tgt


def tiny_config(corpus_dir: Path, *overrides: str, dev: bool = True):
    """configs/tiny.yaml on the corpus in `corpus_dir`, with `section.key=value` overrides."""
    src, tgt = write_corpus(corpus_dir)
    paths = [f"data.train_source={src}", f"data.train_target={tgt}"]
    if dev:
        paths += [f"data.dev_source={src}", f"data.dev_target={tgt}"]
    return load_config(TINY, [*paths, *overrides])


class Lines:
    """A `log` callable that keeps the lines."""

    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, message: str) -> None:
        self.lines.append(message)

    def text(self) -> str:
        return "\n".join(self.lines)
