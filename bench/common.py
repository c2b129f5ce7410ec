"""Defaults and names shared by every section: the data directory, the run directories, the system
labels, the section titles, BenchError."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
DEFAULT_DATA = Path(os.environ.get("NMT_MULTI30K", REPO.parent / "shared" / "data" / "multi30k"))
# Run directories: relative to the directory the benchmark runs in (the repository root).
DEFAULT_MODEL = Path("runs") / "ende_b"  # the recommended model of section 3
# Pieces: the same-size models' output length in section 3, minimum and maximum by default
# (equal work per sentence for both toolkits). 15 = the mean length of a test2016 German
# reference in an 8k joint unigram SentencePiece model of Multi30k en-de (14.99).
DEFAULT_DECODE_MAX_LENGTH = 15
DEFAULT_WORKDIR = Path("runs") / "bench"
NOT_RUN = "not run"
ALL_SECTIONS = (1, 2, 3, 4, 5)
PEER_BATCH = 64  # sentences per batch of OpenNMT-tf's NMTSmallV1 with --auto_config
NMT_A = "nmt NMTSmallV1 shape (a)"  # batch_tokens matched to the peer's 64 sentences
NMT_B = "nmt NMTSmallV1 shape (b)"  # batch_tokens 4096
NMT_A_MATCHED = "nmt NMTSmallV1 shape (a), peer's batch"  # decoding batch ~ the peer's 32
PEER_INFER_BATCH = 32  # sentences per decoding batch of OpenNMT-tf (infer.batch_size default)
PEER_NAME = "OpenNMT-tf NMTSmallV1"
SECTION_TITLES = {
    1: "B1. nmt.layers.LSTM vs keras.layers.LSTM",
    2: "B2. Training throughput, NMTSmallV1 shape: nmt vs OpenNMT-tf",
    3: "B3. Decoding test2016: nmt vs OpenNMT-tf",
    4: "B4. Peak resident memory",
    5: "B5. How cost grows with batch size, source length and beam",
}


class BenchError(Exception):
    """A step of the benchmark failed; the message names the command or file."""
