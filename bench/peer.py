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

Usage:
    python scripts/bench_peer.py --pair en-de --steps 20 --workdir runs/bench/peer
                                 [--infer-lines 50] [--spm joint.model] [--beam 5]
                                 [--max-decoding-length 50]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import DEFAULT_DATA, DEFAULT_WORKDIR, SCRIPTS
from bench.markdown import write_atomic
from bench.proc import child_env, wait_timed

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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

# "2026-11-24 04:50:01.123000: I training.py:590] Step = 20 ; steps/s = 0.41, ..."
LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [DIWEF] ")
REPORT = re.compile(
    r"Step = (?P<step>\d+) ; steps/s = (?P<steps>[\d.]+), tokens/s = (?P<tokens>\d+) "
    r"\((?P<words>[^)]*)\) ; Learning rate = (?P<lr>[-+\d.eE]+) ; Loss = (?P<loss>[-+\d.eEnaif]+)"
)
WORDS = re.compile(r"(\d+) (\w+)")
NUM_PARAMS = re.compile(r"Number of model parameters: (\d+)")
PREDICTION_TIME = re.compile(r"Total prediction time \(s\): ([\d.]+)")
CHECKPOINT_STATE = re.compile(r'^model_checkpoint_path: "(?:.*/)?ckpt-(\d+)"', re.M)


class PeerError(RuntimeError):
    """OpenNMT-tf failed, or its inputs/outputs are not what the benchmark needs."""


# --------------------------------------------------------------------------------------------
# Results


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


# --------------------------------------------------------------------------------------------
# The venv


def _onmt_main(venv: Path) -> Path:
    return venv / "bin" / "onmt-main"


def ensure_peer_venv(venv: Path = PEER_VENV, log=print) -> Path:
    """Path of `onmt-main` in `venv`; creates the venv and installs OpenNMT-tf when missing.

    Uses this machine's `python3.11` (TensorFlow 2.12, which opennmt-tf 2.32 resolves to, has no
    wheels for newer Pythons). Raises SystemExit with a one-line message when creation fails; a
    venv directory created by a failed attempt is removed.
    """
    venv = Path(venv).expanduser()
    onmt_main = _onmt_main(venv)
    if onmt_main.exists():
        return onmt_main
    python = shutil.which("python3.11")
    if python is None:
        raise SystemExit(
            f"bench_peer: python3.11 not found on PATH; it is needed to create {venv} "
            f'(python3.11 -m venv {venv} && {venv}/bin/pip install "{PEER_REQUIREMENT}")'
        )
    created = not venv.exists()
    steps = [
        [python, "-m", "venv", str(venv)],
        [str(venv / "bin" / "pip"), "install", "-q", PEER_REQUIREMENT],
    ]
    for command in steps:
        log(f"bench_peer: {' '.join(command)}")
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            if created:
                shutil.rmtree(venv, ignore_errors=True)
            lines = [line for line in (result.stderr or result.stdout).splitlines() if line]
            reason = lines[-1] if lines else f"exit status {result.returncode}"
            raise SystemExit(f"bench_peer: creating {venv} failed at `{command[0]}`: {reason}")
    if not onmt_main.exists():
        raise SystemExit(f"bench_peer: {onmt_main} missing after installing {PEER_REQUIREMENT}")
    log(f"bench_peer: installed {peer_versions(venv)}")
    return onmt_main


def peer_versions(venv: Path = PEER_VENV) -> dict:
    """Installed versions in the peer venv: python, opennmt-tf, tensorflow, tensorflow-addons."""
    code = (
        "import importlib.metadata as m, json, platform\n"
        "v = {'python': platform.python_version()}\n"
        "for name in ('opennmt-tf', 'tensorflow', 'tensorflow-addons'):\n"
        "    try:\n"
        "        v[name] = m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        v[name] = None\n"
        "print(json.dumps(v))\n"
    )
    python = Path(venv).expanduser() / "bin" / "python"
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        raise PeerError(f"{python}: cannot read package versions: {result.stderr.strip()}")
    return json.loads(result.stdout)


# --------------------------------------------------------------------------------------------
# Data


def _processor(spm_model: Path):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor()
    try:
        sp.Load(str(spm_model))
    except (OSError, RuntimeError):
        raise PeerError(f"{spm_model}: not a valid SentencePiece model") from None
    return sp


def peer_vocab_tokens(spm_model: Path) -> list[str]:
    """The OpenNMT-tf vocabulary for a SentencePiece model, one token per id (see module doc).

    `<blank>`, `<s>`, `</s>`, then every piece that is not a control symbol (`<pad>`, `<s>`,
    `</s>`) or `<unk>`, in SentencePiece id order. Raises PeerError when a piece would collide
    with OpenNMT-tf's specials or contains whitespace (the space tokenizer would split it).
    """
    sp = _processor(spm_model)
    tokens = list(ONMT_SPECIALS)
    for i in range(sp.get_piece_size()):
        if sp.is_control(i) or sp.is_unknown(i):
            continue
        piece = sp.id_to_piece(i)
        if piece in ONMT_SPECIALS or piece == ONMT_UNK:
            raise PeerError(
                f"{spm_model}: piece {i} {piece!r} is not a control symbol but OpenNMT-tf "
                "reserves it"
            )
        if not piece or any(c.isspace() for c in piece):
            raise PeerError(f"{spm_model}: piece {i} {piece!r} is empty or contains whitespace")
        tokens.append(piece)
    return tokens


def write_peer_vocab(spm_model: Path, out: Path) -> Path:
    """Write `peer_vocab_tokens(spm_model)` to `out`, one per line (atomically)."""
    tokens = peer_vocab_tokens(spm_model)
    return write_atomic(out, "".join(token + "\n" for token in tokens))


def _write_lines_atomic(path: Path, lines: Iterable[str]) -> int:
    """Write `lines` (each ended by "\\n") to `path` atomically; returns how many."""
    text = [line + "\n" for line in lines]
    write_atomic(path, "".join(text))
    return len(text)


def _read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file without terminators; errors name the file and line."""
    from nmt.data import iter_lines
    from nmt.errors import DataError

    if not path.is_file():
        raise PeerError(f"{path}: file not found")
    try:
        return [text for _, text in iter_lines(path)]
    except DataError as e:
        raise PeerError(str(e)) from None


def encode_pieces(sp, source: Path, out: Path, chunk: int = 4096) -> int:
    """Encode each line of `source` into space-separated pieces in `out`; returns the count."""
    lines = _read_lines(source)

    def pieces():
        for start in range(0, len(lines), chunk):
            for row in sp.encode(lines[start : start + chunk], out_type=str):
                yield " ".join(row)

    return _write_lines_atomic(out, pieces())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare_peer_data(multi30k: Path, pair: str, spm_model: Path, workdir: Path) -> PeerData:
    """Encode train/val/test2016 of `pair` with `spm_model` and write the peer vocabulary.

    Outputs in `workdir`: `{split}.{lang}.sp` (space-separated pieces) and `onmt.vocab`, plus
    `peer_data.json` recording the inputs' SHA-256; when it matches and every output exists,
    nothing is redone. Returns the paths.
    """
    src_lang, tgt_lang = _split_pair(pair)
    multi30k, workdir = Path(multi30k), Path(workdir)
    spm_model = Path(spm_model).resolve()
    if not spm_model.is_file():
        raise PeerError(f"{spm_model}: SentencePiece model not found")
    raw = {
        (split, lang): multi30k / f"{split}.{lang}"
        for split in SPLITS
        for lang in (src_lang, tgt_lang)
    }
    for path in raw.values():
        if not path.is_file():
            raise PeerError(f"{path}: not found (Multi30k {pair} needs {', '.join(SPLITS)})")
    encoded = {key: workdir / f"{key[0]}.{key[1]}.sp" for key in raw}
    vocab = workdir / "onmt.vocab"
    data = PeerData(
        src_lang=src_lang,
        tgt_lang=tgt_lang,
        train_src=encoded["train", src_lang],
        train_tgt=encoded["train", tgt_lang],
        val_src=encoded["val", src_lang],
        val_tgt=encoded["val", tgt_lang],
        test_src=encoded["test2016", src_lang],
        test_tgt=encoded["test2016", tgt_lang],
        test_src_raw=raw["test2016", src_lang].resolve(),
        test_ref=raw["test2016", tgt_lang].resolve(),
        vocab=vocab,
        spm_model=spm_model,
    )
    inputs = {str(spm_model): _sha256(spm_model)}
    inputs.update({str(path.resolve()): _sha256(path) for path in raw.values()})
    wanted = {
        "version": MANIFEST_VERSION,
        "inputs": inputs,
        "outputs": sorted(str(p) for p in [*encoded.values(), vocab]),
    }
    manifest = workdir / MANIFEST
    if manifest.exists() and all(p.exists() for p in [*encoded.values(), vocab]):
        try:
            if json.loads(manifest.read_text(encoding="utf-8")) == wanted:
                return data
        except (OSError, ValueError):
            pass
    manifest.unlink(missing_ok=True)  # outputs are stale until the new manifest is written
    sp = _processor(spm_model)
    counts = {}
    for key, path in raw.items():
        counts[key] = encode_pieces(sp, path, encoded[key])
    for split in SPLITS:
        if counts[split, src_lang] != counts[split, tgt_lang]:
            raise PeerError(
                f"{raw[split, src_lang]} has {counts[split, src_lang]} lines but "
                f"{raw[split, tgt_lang]} has {counts[split, tgt_lang]}"
            )
    write_peer_vocab(spm_model, vocab)
    write_atomic(manifest, json.dumps(wanted, indent=1) + "\n")
    return data


def _split_pair(pair: str) -> tuple[str, str]:
    parts = pair.split("-")
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise PeerError(f"pair must look like en-de, got {pair!r}")
    return parts[0], parts[1]


# --------------------------------------------------------------------------------------------
# Configuration


def _merge(base: dict, extra: dict) -> dict:
    """Recursive dict merge: values of `extra` win, nested dicts are merged."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def peer_config(
    data: PeerData,
    model_dir: Path,
    *,
    max_step: int,
    batch_size: int = 64,
    batch_type: str = "examples",
    beam_width: int = 5,
    extra: dict | None = None,
    report_every: int | None = None,
) -> dict:
    """The run configuration `write_peer_config` writes, as a dict."""
    report_every = REPORT_EVERY if report_every is None else report_every
    if report_every < 1:
        raise ValueError(f"report_every must be at least 1, got {report_every}")
    if max_step < 1:
        raise ValueError(f"max_step must be at least 1, got {max_step}")
    if batch_type not in ("examples", "tokens"):
        raise ValueError(f"batch_type must be 'examples' or 'tokens', got {batch_type!r}")
    config = {
        "model_dir": str(Path(model_dir).resolve()),
        "data": {
            "train_features_file": str(data.train_src),
            "train_labels_file": str(data.train_tgt),
            "eval_features_file": str(data.val_src),  # for `onmt-main eval` only
            "eval_labels_file": str(data.val_tgt),
            "source_vocabulary": str(data.vocab),
            "target_vocabulary": str(data.vocab),
        },
        "params": {"beam_width": beam_width},
        "train": {
            "max_step": max_step,
            "batch_size": batch_size,
            "batch_type": batch_type,
            "save_summary_steps": report_every,
            "save_checkpoints_steps": max_step,
        },
    }
    return _merge(config, extra or {})


def write_peer_config(
    data: PeerData,
    model_dir: Path,
    *,
    max_step: int,
    batch_size: int = 64,
    batch_type: str = "examples",
    beam_width: int = 5,
    extra: dict | None = None,
    filename: str = "data.yml",
    report_every: int | None = None,
) -> Path:
    """Write the run configuration for `onmt-main --model_type NMTSmallV1 --config F --auto_config`.

    Only what the benchmark needs is set (see the module docstring); everything else comes from
    `--auto_config`. `extra` is merged in last (nested dicts merge). `report_every` (default:
    the module's `REPORT_EVERY`) is `train.save_summary_steps`. Returns model_dir/filename.
    """
    import yaml

    config = peer_config(
        data,
        model_dir,
        max_step=max_step,
        batch_size=batch_size,
        batch_type=batch_type,
        beam_width=beam_width,
        extra=extra,
        report_every=report_every,
    )
    path = Path(model_dir) / filename
    return write_atomic(path, yaml.safe_dump(config, sort_keys=False))


# --------------------------------------------------------------------------------------------
# Log parsing


def parse_reports(text: str) -> list[ThroughputReport]:
    """The throughput reports (`Step = N ; steps/s = ...`) of an OpenNMT-tf training log."""
    reports = []
    for match in REPORT.finditer(text):
        words = {name: int(value) for value, name in WORDS.findall(match["words"])}
        reports.append(
            ThroughputReport(
                step=int(match["step"]),
                steps_per_sec=float(match["steps"]),
                tokens_per_sec=int(match["tokens"]),
                source_words_per_sec=words.get("source", 0),
                target_words_per_sec=words.get("target", 0),
                learning_rate=float(match["lr"]),
                loss=float(match["loss"]),
            )
        )
    return reports


def parse_effective_config(text: str) -> dict | None:
    """The YAML block OpenNMT-tf logs after `Using parameters:` (the merged run config)."""
    import yaml

    lines = text.splitlines()
    for i, line in enumerate(lines):
        if LOG_PREFIX.match(line) and line.rstrip().endswith("Using parameters:"):
            block = []
            for follow in lines[i + 1 :]:
                if LOG_PREFIX.match(follow):
                    break
                block.append(follow)
            try:
                config = yaml.safe_load("\n".join(block))
            except yaml.YAMLError:
                return None
            return config if isinstance(config, dict) else None
    return None


def parse_num_params(text: str) -> int | None:
    match = NUM_PARAMS.search(text)
    return int(match[1]) if match else None


def steady_state(reports: list[ThroughputReport], skip: int = STEADY_SKIP) -> dict:
    """Medians of the reports after the first `skip` (of all of them when no more remain)."""
    kept = reports[skip:] or reports
    if not kept:
        return {"source": None, "target": None, "tokens": None, "steps": None}
    return {
        "source": statistics.median(r.source_words_per_sec for r in kept),
        "target": statistics.median(r.target_words_per_sec for r in kept),
        "tokens": statistics.median(r.tokens_per_sec for r in kept),
        "steps": statistics.median(r.steps_per_sec for r in kept),
    }


def checkpoint_step(model_dir: Path) -> int:
    """Step of the latest checkpoint in `model_dir` (0 when there is none)."""
    state = Path(model_dir) / "checkpoint"
    if not state.exists():
        return 0
    match = CHECKPOINT_STATE.search(state.read_text(encoding="utf-8"))
    return int(match[1]) if match else 0


# --------------------------------------------------------------------------------------------
# Running onmt-main


def _run(command: list[str], log_path: Path) -> tuple[float, float, int, int]:
    """Run `command` (the peer's venv: no PYTHONPATH) with its output as it came into
    `log_path`: (wall s, CPU s, peak RSS bytes, exit status)."""
    status, wall, cpu, rss, _ = wait_timed(command, log_path, env=child_env(isolated=True),
                                           stamp=False)  # fmt: skip
    return wall, cpu, rss, status


def _tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])


def _base_command(onmt_main: Path, configs: list[Path]) -> list[str]:
    return [
        str(onmt_main),
        "--model_type",
        MODEL_TYPE,
        "--config",
        *(str(c) for c in configs),
        "--auto_config",
        "--seed",
        str(SEED),
    ]


def train_peer(
    data: PeerData,
    model_dir: Path,
    steps: int,
    *,
    batch_size: int = 64,
    onmt_main: Path | None = None,
    log=print,
    report_every: int | None = None,
) -> PeerTrainRun:
    """Train NMTSmallV1 up to `steps` steps in total (continuing from model_dir's checkpoint).

    `report_every`: steps between throughput reports (default: the module's `REPORT_EVERY`).
    """
    model_dir = Path(model_dir)
    onmt_main = Path(onmt_main) if onmt_main else _onmt_main(PEER_VENV)
    start_step = checkpoint_step(model_dir)
    if start_step >= steps:
        raise PeerError(f"{model_dir} is already at step {start_step}; ask for more than {steps}")
    config = write_peer_config(
        data, model_dir, max_step=steps, batch_size=batch_size, report_every=report_every
    )
    command = [*_base_command(onmt_main, [config]), "train"]
    log_path = model_dir / f"train_{start_step}-{steps}.log"
    log(f"bench_peer: {' '.join(command)}  (log: {log_path})")
    wall, cpu, rss, status = _run(command, log_path)
    if status != 0:
        raise PeerError(
            f"onmt-main train exited with status {status}; last lines of {log_path}:\n"
            + _tail(log_path)
        )
    text = log_path.read_text(encoding="utf-8", errors="replace")
    final_step = checkpoint_step(model_dir)
    reports = [r for r in parse_reports(text) if r.step > start_step]
    steady = steady_state(reports)
    eos = None
    if steady["tokens"] is not None:
        eos = steady["tokens"] + steady["steps"] * batch_size
    return PeerTrainRun(
        wall_seconds=wall,
        cpu_seconds=cpu,
        peak_rss_bytes=rss,
        reports=reports,
        steady_source_words_per_sec=steady["source"],
        steady_target_words_per_sec=steady["target"],
        steady_tokens_per_sec=steady["tokens"],
        steady_tokens_per_sec_eos=eos,
        steady_steps_per_sec=steady["steps"],
        start_step=start_step,
        final_step=final_step,
        steps_run=final_step - start_step,
        num_params=parse_num_params(text),
        batch_size=batch_size,
        log_path=log_path,
        config_path=config,
        command=command,
        effective_config=parse_effective_config(text),
    )


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def infer_peer(
    data: PeerData,
    model_dir: Path,
    src_pieces: Path,
    out_pieces: Path,
    *,
    beam: int,
    onmt_main: Path | None = None,
    batch_size: int | None = None,
    max_decoding_length: int | None = None,
    min_decoding_length: int | None = None,
) -> PeerInferRun:
    """Translate `src_pieces` with the latest checkpoint of `model_dir` into `out_pieces`.

    `max_decoding_length`: when given, `params.maximum_decoding_length` of this run, written
    into its config file (`infer_beam{beam}_max{N}.yml`): the decoder runs at most N steps, so
    an output has at most N pieces besides `</s>` (OpenNMT-tf's default N is 250).
    `min_decoding_length`: when given, `params.minimum_decoding_length` (OpenNMT-tf gives
    `</s>` a -inf logit before that step; default 0); with both equal to N every output has
    exactly N pieces (config file `infer_beam{beam}_min{N}_max{N}.yml`).
    """
    model_dir, src_pieces, out_pieces = Path(model_dir), Path(src_pieces), Path(out_pieces)
    onmt_main = Path(onmt_main) if onmt_main else _onmt_main(PEER_VENV)
    if max_decoding_length is not None and max_decoding_length < 1:
        raise PeerError(f"max_decoding_length must be at least 1, got {max_decoding_length}")
    if min_decoding_length is not None and min_decoding_length < 0:
        raise PeerError(f"min_decoding_length must be >= 0, got {min_decoding_length}")
    step = checkpoint_step(model_dir)
    if step == 0:
        raise PeerError(f"{model_dir}: no OpenNMT-tf checkpoint to translate with")
    if not src_pieces.is_file():
        raise PeerError(f"{src_pieces}: file not found")
    extra: dict = {}
    if batch_size:
        extra["infer"] = {"batch_size": batch_size}
    limits: dict = {}
    name = f"infer_beam{beam}"
    if min_decoding_length is not None:
        limits["minimum_decoding_length"] = int(min_decoding_length)
        name += f"_min{int(min_decoding_length)}"
    if max_decoding_length is not None:
        limits["maximum_decoding_length"] = int(max_decoding_length)
        name += f"_max{int(max_decoding_length)}"
    if limits:
        extra["params"] = limits
    filename = f"{name}.yml"
    config = write_peer_config(
        data,
        model_dir,
        max_step=step,
        beam_width=beam,
        extra=extra or None,
        filename=filename,
    )
    out_pieces.parent.mkdir(parents=True, exist_ok=True)
    partial = out_pieces.with_name(f".{out_pieces.name}.partial")
    command = [
        *_base_command(onmt_main, [config]),
        "infer",
        "--features_file",
        str(src_pieces),
        "--predictions_file",
        str(partial),
        "--log_prediction_time",
    ]
    log_path = out_pieces.with_name(out_pieces.name + ".log")
    wall, cpu, rss, status = _run(command, log_path)
    if status != 0:
        partial.unlink(missing_ok=True)
        raise PeerError(
            f"onmt-main infer exited with status {status}; last lines of {log_path}:\n"
            + _tail(log_path)
        )
    expected, got = _count_lines(src_pieces), _count_lines(partial)
    if got != expected:
        partial.unlink(missing_ok=True)
        raise PeerError(f"onmt-main infer wrote {got} lines for the {expected} of {src_pieces}")
    partial.replace(out_pieces)
    with out_pieces.open(encoding="utf-8") as f:
        pieces = sum(len(line.split()) for line in f)
    text = log_path.read_text(encoding="utf-8", errors="replace")
    effective = parse_effective_config(text)
    params = (effective or {}).get("params", {})
    infer = (effective or {}).get("infer", {})
    timed = PREDICTION_TIME.search(text)
    return PeerInferRun(
        wall_seconds=wall,
        cpu_seconds=cpu,
        peak_rss_bytes=rss,
        prediction_seconds=float(timed[1]) if timed else None,
        lines=got,
        mean_pieces=pieces / got if got else 0.0,
        beam_width=int(params.get("beam_width", beam)),
        max_decoding_length=int(
            params.get(
                "maximum_decoding_length",
                ONMT_DEFAULT_MAX_DECODING_LENGTH
                if max_decoding_length is None
                else max_decoding_length,
            )
        ),
        min_decoding_length=int(
            params.get(
                "minimum_decoding_length",
                0 if min_decoding_length is None else min_decoding_length,
            )
        ),
        length_penalty=float(params.get("length_penalty", ONMT_DEFAULT_LENGTH_PENALTY)),
        batch_size=infer.get("batch_size", batch_size),
        step=step,
        predictions=out_pieces,
        log_path=log_path,
        config_path=config,
        command=command,
        effective_config=effective,
    )


# --------------------------------------------------------------------------------------------
# Scoring


def detokenize(pieces_file: Path, spm_model: Path, out: Path) -> Path:
    """Space-separated SentencePiece pieces -> text, line by line (`spm_decode` on pieces)."""
    sp = _processor(Path(spm_model))
    lines = _read_lines(Path(pieces_file))
    _write_lines_atomic(Path(out), (sp.decode_pieces(line.split()) for line in lines))
    return Path(out)


def bleu(hyp: Path, ref: Path) -> float:
    """sacreBLEU corpus BLEU (13a, cased) of `hyp` against the raw reference `ref`.

    The same scorer as `nmt evaluate` (nmt.evaluation.score); line counts must match.
    """
    from nmt.errors import DataError
    from nmt.evaluation import read_lines, score

    try:
        return score(read_lines(hyp), read_lines(ref), "bleu").score
    except DataError as e:
        raise PeerError(f"{hyp} vs {ref}: {e}") from None


# --------------------------------------------------------------------------------------------
# CLI


def _load_script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def default_spm(data_dir: Path, pair: str, cache: Path | None = None) -> Path:
    """The joint 8k SentencePiece model scripts/bench_train.py trains once and caches."""
    bench_train = _load_script("bench_train")
    src_lang, tgt_lang = _split_pair(pair)
    args = argparse.Namespace(batch_tokens=4096, jit=False, seed=SEED)
    config = bench_train.small_v1_config(
        args, data_dir / f"train.{src_lang}", data_dir / f"train.{tgt_lang}"
    )
    cache = cache or bench_train.DEFAULT_CACHE
    vocab = bench_train.vocabulary(config, cache / pair)
    return Path(vocab.source_model_path)


def _head(source: Path, out: Path, lines: int) -> Path:
    with source.open(encoding="utf-8") as f:
        head = [line.rstrip("\n") for _, line in zip(range(lines), f, strict=False)]
    _write_lines_atomic(out, head)
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pair", default="en-de", help="source-target languages")
    parser.add_argument("--steps", type=int, default=20, help="total training steps")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR / "peer")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Multi30k directory")
    parser.add_argument("--spm", type=Path, help="SentencePiece model (default: bench_train's)")
    parser.add_argument("--vocab-cache", type=Path, help="bench_train's vocabulary cache")
    parser.add_argument("--infer-lines", type=int, help="translate only the first N test lines")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument(
        "--max-decoding-length",
        type=int,
        help="params.maximum_decoding_length of the infer run (OpenNMT-tf's default: 250)",
    )
    parser.add_argument(
        "--min-decoding-length",
        type=int,
        help="params.minimum_decoding_length of the infer run (OpenNMT-tf's default: 0)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="training batch (examples)")
    parser.add_argument("--venv", type=Path, default=PEER_VENV)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        onmt_main = ensure_peer_venv(args.venv)
        versions = peer_versions(args.venv)
        spm_model = args.spm or default_spm(args.data, args.pair, args.vocab_cache)
        data = prepare_peer_data(args.data, args.pair, spm_model, args.workdir / "data" / args.pair)
        model_dir = args.workdir / f"{MODEL_TYPE}-{args.pair}"
        train = train_peer(
            data, model_dir, args.steps, batch_size=args.batch_size, onmt_main=onmt_main
        )
        src, ref = data.test_src, data.test_ref
        if args.infer_lines:
            src = _head(src, args.workdir / f"test2016.head{args.infer_lines}.sp", args.infer_lines)
            ref = _head(
                ref, args.workdir / f"test2016.head{args.infer_lines}.ref", args.infer_lines
            )
        out = model_dir / f"test2016.beam{args.beam}.step{train.final_step}.sp"
        infer = infer_peer(
            data,
            model_dir,
            src,
            out,
            beam=args.beam,
            onmt_main=onmt_main,
            max_decoding_length=args.max_decoding_length,
            min_decoding_length=args.min_decoding_length,
        )
        text = detokenize(out, data.spm_model, out.with_suffix(".txt"))
        score = bleu(text, ref)
    except PeerError as e:
        print(f"bench_peer: error: {e}", file=sys.stderr)
        return 2

    effective = train.effective_config or {}
    params, train_cfg = effective.get("params", {}), effective.get("train", {})
    mib = 1 << 20

    def fmt(value, spec=",.0f"):
        return "-" if value is None else format(value, spec)

    print(
        f"OpenNMT-tf {versions.get('opennmt-tf')} (TF {versions.get('tensorflow')}, Python "
        f"{versions.get('python')}), {MODEL_TYPE} --auto_config, "
        f"{fmt(train.num_params)} parameters; nmt side: Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs"
    )
    print(
        f"optimizer {params.get('optimizer')} lr {params.get('learning_rate')}, batch "
        f"{train_cfg.get('batch_size')} {train_cfg.get('batch_type')}, max length "
        f"{train_cfg.get('maximum_features_length')}/{train_cfg.get('maximum_labels_length')}, "
        f"beam {infer.beam_width}, decoding length {infer.min_decoding_length}-"
        f"{infer.max_decoding_length}"
    )
    print()
    print("| run | steps | wall s | CPU s | peak RSS MiB | src words/s | tgt words/s | steps/s |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| train {train.start_step}->{train.final_step} | {train.steps_run} | "
        f"{train.wall_seconds:.1f} | {train.cpu_seconds:.1f} | {train.peak_rss_bytes / mib:,.0f} | "
        f"{fmt(train.steady_source_words_per_sec)} | {fmt(train.steady_target_words_per_sec)} | "
        f"{fmt(train.steady_steps_per_sec, '.2f')} |"
    )
    print()
    print("| run | lines | wall s | CPU s | predict s | peak RSS MiB | pieces/line | BLEU |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| infer beam {infer.beam_width} | {infer.lines} | {infer.wall_seconds:.1f} | "
        f"{infer.cpu_seconds:.1f} | {fmt(infer.prediction_seconds, '.1f')} | "
        f"{infer.peak_rss_bytes / mib:,.0f} | {infer.mean_pieces:.1f} | {score:.2f} |"
    )
    print()
    print(
        f"throughput reports: {len(train.reports)} (steady = median after the first {STEADY_SKIP})"
    )
    print(f"train log: {train.log_path}\ninfer log: {infer.log_path}\nhypotheses: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
