"""Typed configuration: dataclasses loaded from YAML, validated with errors that name the key.

A config file has five sections, each optional except `data`:

    data:   where the parallel text is and how batches are made
    vocab:  how the SentencePiece model(s) are trained
    model:  the encoder-decoder's shape
    train:  optimisation, checkpoints, validation
    decode: search settings used by validation, `nmt translate` and export

Every field has a default, so that old model directories keep loading when fields are added.
This module does not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from nmt.errors import ConfigError


@dataclass
class DataConfig:
    train_source: Optional[str] = None  # plain text or .gz, one sentence a line
    train_target: Optional[str] = None
    dev_source: Optional[str] = None  # used for validation loss and BLEU
    dev_target: Optional[str] = None
    max_length: int = 100  # pieces per side; longer training pairs are dropped and counted
    batch_tokens: int = 4096  # tokens per batch and replica incl. padding (longer side)
    shuffle_buffer: int = 100_000  # sentence pairs held for shuffling
    bucket_width: int = 4  # length buckets are this many pieces wide
    num_parallel_calls: int = -1  # tf.data parallelism for tokenization; -1 = AUTOTUNE


@dataclass
class VocabConfig:
    model_type: Literal["unigram", "bpe"] = "unigram"
    size: int = 8000
    character_coverage: float = 1.0
    joint: bool = True  # one model for source and target, else one per side
    seed: int = 1234
    input_sentence_size: int = 1_000_000  # sentences sampled to train SentencePiece
    path: Optional[str] = None  # existing model(s) to reuse instead of training: file or dir


@dataclass
class ModelConfig:
    embedding_dim: int = 512
    units: int = 512  # LSTM hidden size of the decoder and of each encoder layer
    encoder_layers: int = 2
    decoder_layers: int = 2
    bidirectional: bool = False
    bidirectional_merge: Literal["concat", "sum"] = "concat"  # concat halves per-direction units
    # bahdanau (additive) learns alignments on Multi30k where general collapses onto the last
    # source positions (BENCHMARKS.md, "Attention"); it is the default since 0.1.
    attention: Literal["dot", "general", "concat", "bahdanau"] = "bahdanau"
    # dot/general only: divide the scores by sqrt(units) ("sqrt"), or use a cosine times a
    # learned gain ("normed"); neither stops general from collapsing (BENCHMARKS.md, "Attention")
    attention_scale: Literal["none", "sqrt", "normed"] = "none"
    # Two more remedies for general's collapse, off by default (see
    # nmt.layers.attention.Attention): dropout on the attention weights a_t(s) in training,
    # before the context sum (inverted, not renormalised; every score) ...
    attention_dropout: float = 0.0
    # ... and a learning-rate multiplier k for the score weights alone (W_a; v_a; W_1, W_2; not
    # W_c), as W = k V with V stored: with Adam/AdamW each update moves W by up to k times the
    # learning rate, with SGD k^2 times as far. The checkpoint holds V, so a model keeps the k
    # it was trained with. Not for dot (it has no score weights).
    attention_lr_scale: float = 1.0
    input_feeding: bool = True
    dropout: float = 0.3  # base rate for the three sites below when they are unset
    embedding_dropout: Optional[float] = None  # source and target embeddings (None: dropout)
    hidden_dropout: Optional[float] = None  # between stacked LSTM layers (None: dropout)
    output_dropout: Optional[float] = None  # on h~, before the output layer (None: dropout)
    memory_dropout: float = 0.0  # on the encoder output that attention reads (the context)
    word_dropout: float = 0.0  # zero whole target input words' embeddings with this probability
    residual: bool = True  # residual connections from the second layer on
    bridge: Literal["copy", "dense", "none"] = "copy"  # encoder final states -> decoder initial
    tie_output_embeddings: bool = False
    share_embeddings: bool = False  # needs vocab.joint


@dataclass
class TrainConfig:
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    learning_rate: float = 1e-3
    adam_beta_1: float = 0.9
    adam_beta_2: float = 0.999
    weight_decay: float = 0.0  # adamw only
    warmup_steps: int = 0
    decay: Literal["none", "rsqrt", "exponential", "plateau"] = "none"
    decay_rate: float = 0.5  # exponential: factor per decay_steps; plateau: factor per cut
    decay_steps: int = 10_000  # exponential: steps per factor
    decay_start: int = 0  # exponential: decay begins after this step
    plateau_patience: int = 2  # plateau: evaluations without gain before a cut
    min_learning_rate: float = 0.0
    clip_norm: float = 5.0  # gradient clipping by global norm; 0 disables
    label_smoothing: float = 0.1
    # weight of the doubly stochastic attention penalty (nmt.layers.attention.coverage_penalty):
    # every source position should receive its even share of the attention; 0 disables
    coverage_loss: float = 0.0
    max_steps: int = 10_000
    max_minutes: Optional[float] = None  # stop after this much wall time (per `nmt train` run)
    checkpoint_every: int = 500
    keep_checkpoints: int = 5
    eval_every: int = 500
    eval_bleu: bool = True  # greedy sacreBLEU on the dev set at each evaluation
    early_stopping: int = 0  # evaluations without BLEU gain before stopping; 0 disables
    log_every: int = 50  # a log line every this many steps ...
    log_every_seconds: float = 30.0  # ... and after this many seconds of training; 0: never
    seed: int = 1234
    precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"] = "auto"
    jit: bool = False  # XLA-compile the whole train step
    # XLA-compile only the input-feeding decoder's step loop (forward and backward): for GPUs,
    # where that loop is many small kernels per step; the rest keeps cuDNN (which XLA excludes)
    decoder_loop_jit: bool = False
    deterministic: bool = False  # tf.config.experimental.enable_op_determinism
    max_nonfinite_steps: int = 20  # float16: consecutive non-finite losses tolerated, then stop


@dataclass
class DecodeConfig:
    beam_size: int = 5
    length_penalty: float = 0.6  # GNMT alpha; 0 disables
    max_length_a: float = 10.0  # max output length = a + b * source length
    max_length_b: float = 2.0
    min_length: int = 0  # pieces; EOS is not allowed before this many (capped by max length)
    batch_tokens: int = 4096  # source tokens per translation batch
    n_best: int = 1
    max_source_length: int = 256  # pieces; longer inputs are truncated with a warning
    # Vocabulary shortlist (nmt/shortlist.py, made by `nmt shortlist`): score only the union of
    # the top-k targets of the batch's source pieces and the N most frequent target pieces.
    # For translate/evaluate/export (--shortlist); validation in training never uses it.
    # 20 and 200: val BLEU cost 0.25 on the Multi30k recipe's model, where 10 and 100 (the
    # first defaults) cost 0.5 at about the same speed (BENCHMARKS.md section 4).
    shortlist: bool = False
    shortlist_top_k: int = 20
    shortlist_frequent: int = 200
    # Sampling for `nmt translate` (back-translation, as OpenNMT-tf): draw each word from the
    # sampling_topk most probable (0: all), with probabilities ** (1 / temperature); 1 is
    # greedy. Sampling decodes with beam 1; validation and export never sample.
    sampling_topk: int = 1
    sampling_temperature: float = 1.0


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> Config:
        """Check values that types alone cannot; raises ConfigError naming the key."""
        for check in _CHECKS:  # in this order: the first problem found is the one raised
            check(self)
        return self


_SECTIONS = {f.name: f for f in dataclasses.fields(Config)}
DROPOUT_KEYS = tuple(
    f"model.{f.name}" for f in dataclasses.fields(ModelConfig) if f.name.endswith("dropout")
)


def rate_error(key: str, value: Optional[float]) -> Optional[str]:
    """Why `key` (a dropout rate or train.label_smoothing) cannot be `value`, or None."""
    if value is not None and not 0.0 <= value < 1.0:
        return f"{key} must be in [0, 1), got {value}"
    return None


def attention_scale_error(
    attention: str, scale: str, *, name_attention: bool = True
) -> Optional[str]:
    """Why `model.attention_scale` cannot be `scale` with `attention`, or None.

    `name_attention` False: the message gives the attention's value without its key (as the
    model's constructor says it).
    """
    if scale == "none" or attention in ("dot", "general"):
        return None
    other = f"model.attention {attention!r}" if name_attention else repr(attention)
    return (
        f"model.attention_scale {scale!r} applies to dot and general attention, not {other}; "
        "use none"
    )


def attention_lr_scale_error(attention: str, lr_scale: float) -> Optional[str]:
    """Why `model.attention_lr_scale` cannot be `lr_scale` with `attention`, or None."""
    if isinstance(lr_scale, bool) or not isinstance(lr_scale, (int, float)):
        return f"model.attention_lr_scale must be a number, got {lr_scale!r}"
    if not (math.isfinite(lr_scale) and lr_scale > 0):
        return f"model.attention_lr_scale must be positive, got {lr_scale}"
    if lr_scale != 1.0 and attention == "dot":
        return (
            "model.attention_lr_scale scales the score weights, which model.attention 'dot' "
            "has none of; use 1"
        )
    return None


# === Validation (Config.validate) ===

_POSITIVE = (
    "data.max_length",
    "data.batch_tokens",
    "data.bucket_width",
    "vocab.size",
    "model.embedding_dim",
    "model.units",
    "model.encoder_layers",
    "model.decoder_layers",
    "train.max_steps",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.eval_every",
    "train.log_every",
    "decode.beam_size",
    "decode.batch_tokens",
    "decode.n_best",
    "decode.max_source_length",
    "decode.shortlist_top_k",
)


def _check_positive(config: Config) -> None:
    for key in _POSITIVE:
        value = _get(config, key)
        if value <= 0:
            raise ConfigError(f"{key} must be positive, got {value}")


def _check_vocab(config: Config) -> None:
    vocab = config.vocab
    if vocab.input_sentence_size < 0:
        raise ConfigError("vocab.input_sentence_size must be 0 (all) or positive")
    if vocab.size < 8:
        raise ConfigError(f"vocab.size must be at least 8, got {vocab.size}")
    if not 0.0 < vocab.character_coverage <= 1.0:
        raise ConfigError("vocab.character_coverage must be in (0, 1]")


def _check_rates(config: Config) -> None:
    """The dropout rates and train.label_smoothing: in [0, 1)."""
    for key in (*DROPOUT_KEYS, "train.label_smoothing"):
        problem = rate_error(key, _get(config, key))
        if problem:
            raise ConfigError(problem)


def _check_train(config: Config) -> None:
    train = config.train
    if train.coverage_loss < 0:
        raise ConfigError(f"train.coverage_loss must be >= 0 (0: off), got {train.coverage_loss}")
    if train.learning_rate <= 0:
        raise ConfigError(f"train.learning_rate must be positive, got {train.learning_rate}")


def _check_decode(config: Config) -> None:
    decode = config.decode
    if decode.shortlist_frequent < 0:
        raise ConfigError(
            f"decode.shortlist_frequent must be >= 0, got {decode.shortlist_frequent}"
        )
    if decode.sampling_topk < 0:
        topk = decode.sampling_topk
        raise ConfigError(f"decode.sampling_topk must be >= 0 (0: every word), got {topk}")
    if decode.sampling_temperature <= 0:
        raise ConfigError(
            f"decode.sampling_temperature must be positive, got {decode.sampling_temperature}"
        )
    if decode.min_length < 0:
        raise ConfigError(f"decode.min_length must be >= 0, got {decode.min_length}")
    if decode.n_best > decode.beam_size:
        raise ConfigError(
            f"decode.n_best ({decode.n_best}) cannot exceed decode.beam_size ({decode.beam_size})"
        )


def _check_model(config: Config) -> None:
    model = config.model
    problem = attention_scale_error(model.attention, model.attention_scale) or (
        attention_lr_scale_error(model.attention, model.attention_lr_scale)
    )
    if problem:
        raise ConfigError(problem)
    if model.share_embeddings and not config.vocab.joint:
        raise ConfigError("model.share_embeddings needs vocab.joint: true")
    if model.bidirectional and model.bidirectional_merge == "concat" and model.units % 2:
        raise ConfigError("model.units must be even for a bidirectional concat encoder")


def _check_data(config: Config) -> None:
    for a, b in (("train_source", "train_target"), ("dev_source", "dev_target")):
        if (getattr(config.data, a) is None) != (getattr(config.data, b) is None):
            raise ConfigError(f"data.{a} and data.{b} must be given together")


_CHECKS = (
    _check_positive,
    _check_vocab,
    _check_rates,
    _check_train,
    _check_decode,
    _check_model,
    _check_data,
)


def _get(config: Config, dotted: str) -> Any:
    section, key = dotted.split(".")
    return getattr(getattr(config, section), key)


def _suggest(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check `value` against a field annotation; ints are accepted for floats."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            options = ", ".join(map(str, choices))
            raise ConfigError(
                f"{key}: {value!r} is not one of: {options}{_suggest(str(value), choices)}"
            )
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported annotation {annotation!r} for {key}")  # a bug, not user error


def _build_section(cls, values: Any, section: str):
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"section {section!r} must be a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown key {section}.{key}{_suggest(str(key), names)}")
        kwargs[key] = _coerce(value, hints[key], f"{section}.{key}")
    return cls(**kwargs)


def from_dict(values: dict[str, Any]) -> Config:
    """Build and validate a Config from nested dicts, as read from YAML."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError("a config must be a mapping of sections (data, vocab, model, ...)")
    for section in values:
        if section not in _SECTIONS:
            raise ConfigError(f"unknown section {section!r}{_suggest(str(section), _SECTIONS)}")
    hints = typing.get_type_hints(Config)
    sections = {name: _build_section(hints[name], values.get(name), name) for name in _SECTIONS}
    return Config(**sections).validate()


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `section.key=value` strings (values parsed as YAML scalars) to nested dicts."""
    if not isinstance(values, dict):
        raise ConfigError("a config must be a mapping of sections (data, vocab, model, ...)")
    values = {k: dict(v) if isinstance(v, dict) else v for k, v in values.items()}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        section, key = parts
        if section not in _SECTIONS:
            raise ConfigError(f"--set: unknown section {section!r}{_suggest(section, _SECTIONS)}")
        try:
            parsed = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            parsed = raw
        if not isinstance(values.get(section) or {}, dict):
            raise ConfigError(f"section {section!r} must be a mapping")
        values[section] = {**(values.get(section) or {}), key: parsed}
    return values


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config: {e}") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{where}: {problem}") from None
    return values or {}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config file (or defaults when path is None) with `--set` overrides."""
    values = read_yaml(path) if path is not None else {}
    values = apply_overrides(values, overrides or [])
    try:
        return from_dict(values)
    except ConfigError as e:
        # Name what the user typed: the `--set` that gave the value, else the file.
        for item in reversed(overrides or []):
            key = item.split("=", 1)[0].strip()
            message = str(e)
            if message.startswith((f"{key} ", f"{key}:", f"unknown key {key}")):
                raise ConfigError(f"--set {item}: {message}") from None
        if path is None:
            raise
        raise ConfigError(f"{path}: {e}") from None


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(
        yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=False),
        encoding="utf-8",
    )
