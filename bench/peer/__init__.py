"""The peer of the benchmark: OpenNMT-tf `NMTSmallV1` on the SentencePiece-encoded Multi30k.

OpenNMT-tf 2.32 pins TensorFlow 2.12, so it runs from its own venv (`PEER_VENV`, created by
`ensure_peer_venv` when `onmt-main` is missing) as a subprocess; this module runs in nmt's venv
and only needs the sentencepiece, sacrebleu and PyYAML packages from there.

Data. `prepare_peer_data` encodes train/val/test2016 of both sides with the same SentencePiece
model nmt uses (joint 8k unigram) into space-separated pieces, which OpenNMT-tf's default
`SpaceTokenizer` splits back into the same pieces. The OpenNMT-tf vocabulary file is one token
per line, the line number being the id, plus one out-of-vocabulary bucket appended after the
last line (opennmt/data/vocab.py `create_lookup_tables`); ids 0, 1, 2 must be `<blank>` (pad),
`<s>`, `</s>` (opennmt/constants.py). The file written here is therefore `<blank>`, `<s>`, `</s>`
followed by every SentencePiece piece that is neither a control symbol nor `<unk>`, in
SentencePiece id order -- the layout `onmt-build-vocab` produces from a SentencePiece vocabulary,
which drops `<unk>`, `<s>` and `</s>`. The SentencePiece specials map as: `<pad>` (id 0) to
`<blank>` (0), `<s>` (2) to `<s>` (1), `</s>` (3) to `</s>` (2), `<unk>` (1) to the OOV bucket
(the last id, printed as `<unk>` in predictions); every other piece keeps its order, with
OpenNMT-tf id = SentencePiece id - 1. The embedding and output layers get 3 + (8000 - 4) + 1 =
8000 rows, as in nmt. Characters SentencePiece cannot cover come out of `encode` as their surface
string, which is out of vocabulary on both sides (nmt maps them to `<unk>` too).

Training. `write_peer_config` keeps `--auto_config`'s values (`_RNNBase.auto_config` and
`SequenceToSequence.auto_config` in opennmt/models): Adam, learning rate 2e-4 (constant),
batch 64 examples, maximum source/target length 80 pieces (longer examples are dropped),
shuffle buffer -1 (the whole corpus), train `length_bucket_width` 2 (the runner's fallback,
auto_config does not set it); it overrides only `max_step`, `save_summary_steps` (the report
interval, `REPORT_EVERY`) and `save_checkpoints_steps` (= max_step, so checkpoints are written
at step 1 -- OpenNMT-tf always saves there on a fresh run -- and at the end). Evaluation runs
only with `onmt-main train --with_eval`, which is not passed. A run continues from the latest
checkpoint of the model directory (optimizer state included) up to `steps` in total, so runs of
the two toolkits can alternate.

Throughput. OpenNMT-tf logs every `save_summary_steps` steps (opennmt/training.py,
`TrainingStats.log`):
    Step = 20 ; steps/s = 0.41, tokens/s = 2512 (1188 source, 1324 target) ; ...
Each figure is a sum of `features["length"]` over the examples of the steps since the previous
report, divided by the wall time since then, truncated to an int. Source: the number of pieces
(the source gets no `<s>`/`</s>`; `data.sequence_controls` is not set). Target: pieces + 1, the
decoder input `<s> w1 .. wn` or equivalently the output `w1 .. wn </s>` (the labels inputter
adds both markers and `set_decoder_mode` shifts by one, so `length` = n + 1). The counters are
reset after each report and after the checkpoint at step 1, and ignored during the first 2
updates of every run (`warmup_steps=2`), so the tracing step is not in any report. For
comparison: nmt's `tok/s` counts source pieces + EOS and target pieces + EOS, i.e. one token per
source sentence more than OpenNMT-tf's `tokens/s`; `PeerTrainRun.steady_tokens_per_sec_eos`
adds that back, estimating source sentences/s as steps/s x batch size (full batches). The
steady figures are medians over the reports of the run after the first `STEADY_SKIP` (all
reports when there are no more). Loss is summed over target positions per sentence
(`average_loss_in_time` is false for example batches), so it reads ~100 early on.

Inference. `infer_peer` runs `onmt-main ... infer` with `params.beam_width` set (auto_config's
value is 4; `SequenceToSequence.auto_config`), `infer.batch_size` 32 examples and
`length_bucket_width` 5 from auto_config unless a batch size is given, length penalty 0 and
`maximum_decoding_length` 250 (the defaults in opennmt/models/sequence_to_sequence.py; neither is
set by auto_config). `max_decoding_length=N` sets `params.maximum_decoding_length` in the infer
run's config: `Runner._finalize_config` merges the user config over auto_config and the
defaults, `_init_model` hands `config["params"]` to the model, and
`SequenceToSequence._dynamic_decode` passes it as `maximum_iterations` to `dynamic_decode` (at
most N decoding steps, so at most N pieces besides `</s>`). Predictions are space-separated
pieces without `</s>`. With
`--log_prediction_time` OpenNMT-tf logs `Total prediction time (s)`: the loop over the batches
(prediction and writing) after the inference function is traced, kept as
`PeerInferRun.prediction_seconds` next to the end-to-end wall time.

Resources of a run: wall time around the child from start to exit (interpreter start, TensorFlow
import, data loading, tracing, checkpoints: end to end), the child's CPU time and peak resident
set from `os.wait4` (`ru_utime + ru_stime`, `ru_maxrss` KiB -> bytes).

The parts: bench/peer/base.py (settings, PeerError, the result records), venv.py (the venv and
its versions), data.py (pieces, vocabulary, detokenizing, BLEU), config.py (the run config),
runner.py (one `onmt-main` child), train.py (training runs, log parsing), infer.py (inference
runs), cli.py (scripts/bench_peer.py's command line). This package re-exports their names.

Usage:
    python scripts/bench_peer.py --pair en-de --steps 20 --workdir runs/bench/peer
                                 [--infer-lines 50] [--spm joint.model] [--beam 5]
                                 [--max-decoding-length 50]
"""

from __future__ import annotations

import os
import shutil  # noqa: F401  (tests patch shutil.which through bench.peer)

from bench.peer.base import (
    MANIFEST,
    MANIFEST_VERSION,
    MODEL_TYPE,
    ONMT_BOS,
    ONMT_DEFAULT_LENGTH_PENALTY,
    ONMT_DEFAULT_MAX_DECODING_LENGTH,
    ONMT_EOS,
    ONMT_PAD,
    ONMT_SPECIALS,
    ONMT_UNK,
    PEER_REQUIREMENT,
    PEER_VENV,
    REPORT_EVERY,
    SEED,
    SPLITS,
    STEADY_SKIP,
    PeerData,
    PeerError,
    PeerInferRun,
    PeerTrainRun,
    ThroughputReport,
)
from bench.peer.cli import (
    default_spm,
    main,
    parse_args,
)
from bench.peer.config import (
    peer_config,
    write_peer_config,
)
from bench.peer.data import _processor as _processor  # used by the tests
from bench.peer.data import (
    bleu,
    detokenize,
    encode_pieces,
    peer_vocab_tokens,
    prepare_peer_data,
    write_peer_vocab,
)
from bench.peer.infer import (
    PREDICTION_TIME,
    infer_peer,
)
from bench.peer.runner import _run as _run  # used by the tests
from bench.peer.train import (
    CHECKPOINT_STATE,
    LOG_PREFIX,
    NUM_PARAMS,
    REPORT,
    WORDS,
    checkpoint_step,
    parse_effective_config,
    parse_num_params,
    parse_reports,
    steady_state,
    train_peer,
)
from bench.peer.venv import (
    ensure_peer_venv,
    peer_versions,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__all__ = [
    "CHECKPOINT_STATE",
    "LOG_PREFIX",
    "MANIFEST",
    "MANIFEST_VERSION",
    "MODEL_TYPE",
    "NUM_PARAMS",
    "ONMT_BOS",
    "ONMT_DEFAULT_LENGTH_PENALTY",
    "ONMT_DEFAULT_MAX_DECODING_LENGTH",
    "ONMT_EOS",
    "ONMT_PAD",
    "ONMT_SPECIALS",
    "ONMT_UNK",
    "PEER_REQUIREMENT",
    "PEER_VENV",
    "PREDICTION_TIME",
    "PeerData",
    "PeerError",
    "PeerInferRun",
    "PeerTrainRun",
    "REPORT",
    "REPORT_EVERY",
    "SEED",
    "SPLITS",
    "STEADY_SKIP",
    "ThroughputReport",
    "WORDS",
    "bleu",
    "checkpoint_step",
    "default_spm",
    "detokenize",
    "encode_pieces",
    "ensure_peer_venv",
    "infer_peer",
    "main",
    "parse_args",
    "parse_effective_config",
    "parse_num_params",
    "parse_reports",
    "peer_config",
    "peer_versions",
    "peer_vocab_tokens",
    "prepare_peer_data",
    "steady_state",
    "train_peer",
    "write_peer_config",
    "write_peer_vocab",
]
