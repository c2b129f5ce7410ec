"""Data of the peer (see bench.peer's docstring): SentencePiece pieces, the OpenNMT-tf
vocabulary, and back from pieces to text for BLEU."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from bench.markdown import write_atomic
from bench.peer.base import (
    MANIFEST,
    MANIFEST_VERSION,
    ONMT_SPECIALS,
    ONMT_UNK,
    SPLITS,
    PeerData,
    PeerError,
)


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
    outputs = [*encoded.values(), vocab]
    wanted = _manifest(spm_model, list(raw.values()), outputs)
    manifest = workdir / MANIFEST
    if _up_to_date(manifest, wanted, outputs):
        return data
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


def _manifest(spm_model: Path, raw: list[Path], outputs: list[Path]) -> dict:
    """What `peer_data.json` records: the inputs' SHA-256 and the outputs' paths."""
    inputs = {str(spm_model): _sha256(spm_model)}
    inputs.update({str(path.resolve()): _sha256(path) for path in raw})
    return {
        "version": MANIFEST_VERSION,
        "inputs": inputs,
        "outputs": sorted(str(p) for p in outputs),
    }


def _up_to_date(manifest: Path, wanted: dict, outputs: list[Path]) -> bool:
    """Whether `manifest` records `wanted` and every output exists."""
    if not (manifest.exists() and all(p.exists() for p in outputs)):
        return False
    try:
        return json.loads(manifest.read_text(encoding="utf-8")) == wanted
    except (OSError, ValueError):
        return False


def _split_pair(pair: str) -> tuple[str, str]:
    parts = pair.split("-")
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise PeerError(f"pair must look like en-de, got {pair!r}")
    return parts[0], parts[1]


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
