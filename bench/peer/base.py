"""What the parts of bench.peer share: settings, PeerError and the result records."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PEER_VENV = Path(os.environ.get("NMT_PEER_VENV", "~/.cache/nmt/venv-onmt")).expanduser()
PEER_REQUIREMENT = "opennmt-tf[tensorflow]"
MODEL_TYPE = "NMTSmallV1"
REPORT_EVERY = 10  # train.save_summary_steps: steps between throughput reports
STEADY_SKIP = 1  # reports of a run left out of the steady-state medians
SEED = 1234

# OpenNMT-tf's own pieces (opennmt/constants.py): ids 0, 1, 2; <unk> is the OOV bucket.
ONMT_PAD, ONMT_BOS, ONMT_EOS, ONMT_UNK = "<blank>", "<s>", "</s>", "<unk>"
ONMT_SPECIALS = (ONMT_PAD, ONMT_BOS, ONMT_EOS)
# Defaults in opennmt/models/sequence_to_sequence.py when params do not set them.
ONMT_DEFAULT_MAX_DECODING_LENGTH = 250
ONMT_DEFAULT_LENGTH_PENALTY = 0.0

SPLITS = ("train", "val", "test2016")
MANIFEST = "peer_data.json"
MANIFEST_VERSION = 1


class PeerError(RuntimeError):
    """OpenNMT-tf failed, or its inputs/outputs are not what the benchmark needs."""


@dataclass(frozen=True)
class PeerData:
    """Inputs of the peer: SentencePiece pieces (space-separated), raw test files, vocabulary."""

    src_lang: str
    tgt_lang: str
    train_src: Path
    train_tgt: Path
    val_src: Path
    val_tgt: Path
    test_src: Path
    test_tgt: Path
    test_src_raw: Path
    test_ref: Path  # raw test2016 target text: the BLEU reference
    vocab: Path  # OpenNMT-tf vocabulary (shared by source and target)
    spm_model: Path


@dataclass(frozen=True)
class ThroughputReport:
    """One `Step = ...` line of OpenNMT-tf's training log."""

    step: int
    steps_per_sec: float
    tokens_per_sec: int  # source + target
    source_words_per_sec: int  # source pieces
    target_words_per_sec: int  # target pieces + 1 (the <s> or </s>) per sentence
    learning_rate: float
    loss: float


@dataclass
class PeerTrainRun:
    wall_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    reports: list[ThroughputReport]
    steady_source_words_per_sec: float | None
    steady_target_words_per_sec: float | None
    steady_tokens_per_sec: float | None
    steady_tokens_per_sec_eos: float | None  # + one EOS per source sentence, as nmt counts
    steady_steps_per_sec: float | None
    start_step: int
    final_step: int
    steps_run: int
    num_params: int | None
    batch_size: int
    log_path: Path
    config_path: Path
    command: list[str]
    effective_config: dict | None = field(default=None, repr=False)  # "Using parameters:"


@dataclass
class PeerInferRun:
    wall_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    prediction_seconds: float | None  # OpenNMT-tf's own "Total prediction time"
    lines: int
    mean_pieces: float  # output pieces per sentence (no </s>)
    beam_width: int
    max_decoding_length: int
    min_decoding_length: int
    length_penalty: float
    batch_size: int | None
    step: int  # checkpoint step used
    predictions: Path
    log_path: Path
    config_path: Path
    command: list[str]
    effective_config: dict | None = field(default=None, repr=False)


def _onmt_main(venv: Path) -> Path:
    return venv / "bin" / "onmt-main"
