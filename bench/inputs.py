"""Inputs of the measurements: source lines of an exact piece count, decoding batch sizes, model
directories with a decoding limit."""

from __future__ import annotations

import os
import shutil
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.common import PEER_INFER_BATCH, BenchError
from nmt import fileio


def build_length_inputs(
    sentences: Sequence[str], encode: Callable[[str], Sequence[int]], length: int, count: int
) -> list[str]:
    """`count` texts of exactly `length` pieces (len(encode(text)) == length).

    Each text is whole words of consecutive `sentences` joined by spaces, from a start
    sentence on (inputs that need fewer words than one sentence are its first words). Starts
    move forward through the sentences, so the texts differ; a start whose word boundaries
    skip over `length` (a word adds several pieces) is passed over. Raises BenchError when the
    sentences do not give `count` such texts.
    """
    if length < 1 or count < 1:
        raise ValueError("length and count must be positive")
    words_of = [s.split() for s in sentences]
    texts: list[str] = []
    start = 0
    while len(texts) < count and start < len(sentences):
        words: list[str] = []
        found, end, n = None, None, 0
        for i in range(start, len(sentences)):
            for word in words_of[i]:
                words.append(word)
                n = len(encode(" ".join(words)))
                if n >= length:
                    break
            if n >= length:
                end = i
                found = " ".join(words) if n == length else None
                break
        if end is None:
            break  # the rest of the sentences hold fewer pieces than `length`
        if found is not None:
            texts.append(found)
            start = end + 1  # the next text starts after the sentences this one used
        else:
            start += 1
    if len(texts) < count:
        raise BenchError(
            f"could build only {len(texts)} of {count} inputs of exactly {length} pieces"
        )
    return texts


def matched_decode_batch_tokens(
    source_pieces: Sequence[int], sentences: int = PEER_INFER_BATCH, multiple: int = 8
) -> int:
    """`nmt translate --batch-tokens` for batches of about `sentences` sentences: the mean
    source length in pieces plus EOS, times `sentences`, rounded to a multiple of `multiple`
    (our batches are length-sorted, so padding is small)."""
    if not source_pieces:
        raise BenchError("no source lines to size the decoding batch with")
    mean = sum(n + 1 for n in source_pieces) / len(source_pieces)
    return max(multiple, multiple * round(sentences * mean / multiple))


def pick_batch_tokens(measured: dict[int, float], target: float, multiple: int = 8) -> int:
    """batch_tokens expected to give `target` sentences per batch, from measured mean batch
    sizes (sentences per batch grows about linearly with batch_tokens): the measured setting
    closest to the target, scaled, rounded to `multiple`."""
    if not measured:
        raise ValueError("no measurements")
    tokens, sentences = min(measured.items(), key=lambda kv: abs(kv[1] - target))
    guess = tokens * target / sentences
    return max(multiple, int(round(guess / multiple)) * multiple)


def finish_decode_row(row: dict, head_lines: int) -> dict:
    """Steady-state rates from the full and head runs (the same method for every system)."""
    full, head = row["full"], row["head"]
    lines = row["full_lines"] - row["head_lines"]
    span = full["wall"] - head["wall"]
    pieces = row["pieces"]
    row["mean_pieces"] = statistics.fmean(pieces) if pieces else None
    if span > 0 and lines > 0:
        row["sentences_per_s"] = lines / span
        row["pieces_per_s"] = sum(pieces[head_lines:]) / span
    else:
        row["sentences_per_s"] = row["pieces_per_s"] = None
    return row


def spm_processor(path: Path):
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_file=str(path))


def limited_model_dir(model_dir: Path, dest: Path, max_length: int, min_length: int = 0) -> Path:
    """`dest`: `model_dir` decoding outputs of `min_length` to `max_length` pieces.

    `nmt translate` reads the limit from the model directory's config.yaml (DecodeConfig:
    floor(max_length_a + max_length_b x source length) pieces), and has no option for it. So
    `dest` gets a copy of that config with `decode.max_length_a: max_length`,
    `decode.max_length_b: 0`, `decode.min_length: min_length` and
    `decode.length_penalty: 0` like the peer's (checked with
    nmt.config.from_dict), and a symbolic link to every
    other entry of `model_dir` (checkpoints/, best/, the SentencePiece model, VERSION, ...): the
    same weights and vocabulary, and `model_dir` itself untouched. `dest` is built beside its
    final place and renamed over an earlier one.
    """
    import yaml

    from nmt.config import from_dict
    from nmt.errors import ConfigError

    model_dir, dest = Path(model_dir).resolve(), Path(dest)
    if max_length < 1:
        raise BenchError(f"the decoding length limit must be at least 1, got {max_length}")
    if not 0 <= min_length <= max_length:
        raise BenchError(
            f"the minimum decoding length must be in 0..{max_length}, got {min_length}"
        )
    config = model_dir / "config.yaml"
    if not config.is_file():
        raise BenchError(f"{model_dir}: not a model directory (no config.yaml)")
    try:
        values = yaml.safe_load(config.read_text(encoding="utf-8"))
        if not isinstance(values, dict):
            raise ConfigError("not a mapping of sections")
        decode = values.setdefault("decode", {})
        if not isinstance(decode, dict):
            raise ConfigError("decode: not a mapping")
        # no length penalty either: OpenNMT-tf's auto_config decodes with length_penalty 0
        decode.update(
            max_length_a=float(max_length),
            max_length_b=0.0,
            min_length=int(min_length),
            length_penalty=0.0,
        )
        from_dict(values)
    except (yaml.YAMLError, ConfigError) as e:
        raise BenchError(f"{config}: {e}") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = fileio.make_temp_dir(dest.parent, f".{dest.name}.")  # the umask's permissions
    try:
        for entry in sorted(model_dir.iterdir()):
            if entry.name != "config.yaml":
                (tmp / entry.name).symlink_to(entry)
        (tmp / "config.yaml").write_text(
            "# scripts/benchmark.py: "
            f"{config} with decode.max_length_a {max_length}, max_length_b 0, "
            f"min_length {min_length}\n" + yaml.safe_dump(values, sort_keys=False),
            encoding="utf-8",
        )
        if dest.is_symlink() or dest.is_file():
            dest.unlink()
        elif dest.exists():
            shutil.rmtree(dest)  # links only: their targets stay
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def target_spm(model_dir: Path) -> Path:
    joint = Path(model_dir) / "joint.model"
    return joint if joint.exists() else Path(model_dir) / "target.model"
