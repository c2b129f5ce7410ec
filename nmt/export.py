"""SavedModel export for TensorFlow Serving: strings in, strings out, beam search in the graph.

`export_model` writes one version of a model into the layout TF Serving watches:

    EXPORT_BASE/
      N/                          one directory per version (an integer)
        saved_model.pb            signatures `serving_default` and `translate_ids`
        variables/                the model weights
        assets/
        assets.extra/             files for clients and tools, not read by the graph:
          config.yaml             the resolved config (decode.* = the exported search settings)
          VERSION                 the model directory's format version
          export.json             nmt version, step, checkpoint, search settings (the
                                  shortlist's top_k and frequent, or null), signatures
          source.model, target.model (or joint.model)   the SentencePiece model(s)

Signatures (B = batch, S = source pieces, T = target pieces):

    serving_default   text (B,) string
                      -> translation (B,) string, score (B,) float32
    translate_ids     source_ids (B, S) int32  SentencePiece ids, no EOS, padded with 0
                      source_lengths (B,) int32
                      -> target_ids (B, T) int32 (no EOS, padded with 0),
                         target_lengths (B,) int32, score (B,) float32
    translate_attention  text (B,) string  (what `nmt serve`'s page draws; older exports lack it)
                      -> source_pieces (B, S+1) string (with "</s>"), source_length (B,),
                         target_pieces (B, T) string (no EOS), target_length (B,),
                         attention (B, T, S+1) float32: row t = the attention when target
                         piece t was predicted; an empty input runs as EOS alone

`nmt export --shortlist` decodes every batch over its vocabulary shortlist (nmt/shortlist.py):
the model directory's shortlist.npz, cut to decode.shortlist_top_k / shortlist_frequent, is
stored in the graph as constants, so the export needs no extra file.

Both run the same graph as `nmt translate` (`translator.make_search_fn`) with the same input
handling as `Translator.encode`: an input is cut to `decode.max_source_length` pieces and EOS is
appended; an input with no pieces gives "" (no ids) and score 0 without reaching the model.
`serving_default` tokenizes and detokenizes in the graph with tensorflow-text's
SentencepieceTokenizer (the model proto is stored in the graph), so a server needs the
tensorflow-text ops (stock TF Serving links them); `translate_ids` needs core TF only and
leaves SentencePiece to the client (the models are in assets.extra/).

A version directory is built in a hidden temporary directory beside it and renamed into place
only when complete, so TF Serving never sees a half-written version and a failed export leaves
nothing behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from nmt import constants
from nmt.errors import NmtError
from nmt.fileio import check_output_dir, make_temp_dir, replace_directory
from nmt.version import __version__

EXTRA_DIR = "assets.extra"
EXPORT_INFO_FILE = "export.json"
TEXT_INPUT = "text"
IDS_INPUTS = ("source_ids", "source_lengths")

_VERSION_NAME = re.compile(r"^[0-9]+$")
_TMP_PREFIX = ".nmt-export-"


# === Versions ===


def list_versions(export_base: str | Path) -> list[int]:
    """Version numbers under `export_base` (integer-named directories), ascending."""
    base = Path(export_base)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and _VERSION_NAME.match(p.name))


def next_version(export_base: str | Path) -> int:
    """The integer after the highest existing version, 1 for an empty or new base."""
    versions = list_versions(export_base)
    return versions[-1] + 1 if versions else 1


# === Graph ===


def _sentencepiece_tokenizer(proto: bytes):
    """A tensorflow-text SentencepieceTokenizer whose resource is named after its model.

    The SentencePiece kernel shares its model resource by node name. Inside a loaded
    SavedModel every tokenizer's initializer node is otherwise called
    "SentenceTokenizerInitializer/SentencepieceOp", so a second tokenizer (the target side,
    or another loaded export) would silently get the first one's model. Naming the scope
    after a hash of the model proto gives distinct models distinct resources.
    """
    import tensorflow as tf
    import tensorflow_text as tf_text

    digest = hashlib.sha256(proto).hexdigest()[:20]
    return tf_text.SentencepieceTokenizer(
        model=proto, out_type=tf.int32, name=f"nmt_sentencepiece_{digest}"
    )


def build_serving_functions(
    model, source_proto: bytes, target_proto: bytes, decode, shortlist=None
) -> dict[str, Any]:
    """The signature functions (plain Python, to be traced) and their tokenizers.

    They decode as `decode` (a `config.DecodeConfig`) says: beam size, length penalty, length
    limits, max_source_length; over `shortlist` (a `shortlist.Shortlist`) when given.
    Returns {"translate_text": fn(text), "translate_ids": fn(source_ids, source_lengths),
    "translate_attention": fn(text), "trackables": [tokenizers]}; the functions return
    dicts of output tensors.
    """
    import tensorflow as tf

    from nmt.translator import make_search_fn

    search, attention_search = (
        make_search_fn(
            model,
            beam_size=decode.beam_size,
            n_best=1,
            max_length_a=decode.max_length_a,
            max_length_b=decode.max_length_b,
            min_length=decode.min_length,
            return_attention=attention,
            shortlist=shortlist,
        )
        for attention in (False, True)
    )
    source_tokenizer = _sentencepiece_tokenizer(source_proto)
    if target_proto == source_proto:
        target_tokenizer = source_tokenizer
    else:
        target_tokenizer = _sentencepiece_tokenizer(target_proto)
    penalty, limit = float(decode.length_penalty), decode.max_source_length

    def translate_text(text):
        pieces = source_tokenizer.tokenize(text)  # ragged (B, None) int32
        pieces = pieces[:, :limit]
        source_ids = pieces.to_tensor(default_value=constants.PAD_ID)  # (B, S)
        source_lengths = tf.cast(pieces.row_lengths(), tf.int32)  # (B,)
        target_ids, target_lengths, scores = _translate_pieces(
            search, penalty, limit, source_ids, source_lengths
        )
        ragged = tf.RaggedTensor.from_tensor(target_ids, lengths=target_lengths)
        translation = target_tokenizer.detokenize(ragged)  # (B,) string
        return {"translation": translation, "score": scores}

    def translate_ids(source_ids, source_lengths):
        target_ids, target_lengths, scores = _translate_pieces(
            search, penalty, limit, source_ids, source_lengths
        )
        return {"target_ids": target_ids, "target_lengths": target_lengths, "score": scores}

    def translate_attention(text):
        tokenizers = (source_tokenizer, target_tokenizer)
        return _translate_attention(attention_search, penalty, limit, tokenizers, text)

    trackables = [source_tokenizer]
    if target_tokenizer is not source_tokenizer:
        trackables.append(target_tokenizer)
    return {
        "translate_text": translate_text,
        "translate_ids": translate_ids,
        "translate_attention": translate_attention,
        "trackables": trackables,
    }


def _translate_pieces(search, penalty: float, limit: int, source_ids, source_lengths):
    """Ids without EOS (B, S), lengths (B,) -> target ids (B, T), lengths (B,), scores (B,).

    Inputs are cut to `limit` pieces; rows without pieces skip the model (no ids, score 0).
    """
    import tensorflow as tf

    ids, lengths, batch = _with_eos(source_ids, source_lengths, limit)
    rows = tf.cast(tf.where(lengths > 0)[:, 0], tf.int32)  # (N,) rows with pieces

    def run():
        row_lengths = tf.gather(lengths, rows) + 1  # (N,) with EOS
        row_ids = tf.gather(ids, rows)[:, : tf.reduce_max(row_lengths)]  # (N, S'')
        result = search(row_ids, row_lengths, penalty)
        return result.ids[:, 0, :], result.lengths[:, 0], result.scores[:, 0]

    def skip():
        return (
            tf.zeros([0, 0], tf.int32),
            tf.zeros([0], tf.int32),
            tf.zeros([0], tf.float32),
        )

    found = tf.cond(tf.size(rows) > 0, run, skip)
    return _scatter_rows(found, rows, batch)


def _with_eos(source_ids, source_lengths, limit: int):
    """The checked inputs cut to `limit` pieces with EOS after each row's pieces:
    (ids (B, S'+1) int32 padded with PAD_ID, lengths (B,) without EOS, B)."""
    import tensorflow as tf

    source_ids = tf.convert_to_tensor(source_ids, tf.int32)
    lengths = tf.convert_to_tensor(source_lengths, tf.int32)  # (B,)
    batch = tf.shape(source_ids)[0]
    width = tf.shape(source_ids)[1]
    checks = [
        tf.debugging.assert_equal(
            tf.shape(lengths)[0], batch, message="source_lengths needs one entry per row"
        ),
        tf.debugging.assert_non_negative(lengths, message="source_lengths must be >= 0"),
        tf.debugging.assert_less_equal(
            lengths, width, message="source_lengths exceeds the width of source_ids"
        ),
    ]
    with tf.control_dependencies(checks):
        lengths = tf.minimum(lengths, limit)  # (B,) truncation
    ids = source_ids[:, :limit]  # (B, S')
    positions = tf.range(tf.shape(ids)[1] + 1)[None, :]  # (1, S'+1)
    ids = tf.pad(ids, [[0, 0], [0, 1]])  # (B, S'+1) room for EOS
    ids = tf.where(positions < lengths[:, None], ids, constants.PAD_ID)  # (B, S'+1)
    ids = tf.where(positions == lengths[:, None], constants.EOS_ID, ids)  # (B, S'+1)
    return ids, lengths, batch


def _scatter_rows(found, rows, batch):
    """The searched rows' (ids (N, T'), lengths (N,), scores (N,)) put back at `rows` (N,)
    of B: (target ids (B, T) cut to the longest, lengths (B,), scores (B,)); 0 elsewhere."""
    import tensorflow as tf

    out_ids, out_lengths, out_scores = found
    index = rows[:, None]  # (N, 1)
    target_lengths = tf.scatter_nd(index, out_lengths, [batch])  # (B,)
    scores = tf.scatter_nd(index, out_scores, [batch])  # (B,) 0 for empty inputs
    longest = tf.reduce_max(tf.concat([target_lengths, [0]], 0))
    out_ids = out_ids[:, :longest]  # (N, T)
    target_ids = tf.scatter_nd(index, out_ids, tf.stack([batch, longest]))  # (B, T)
    return target_ids, target_lengths, scores


def _translate_attention(search, penalty: float, limit: int, tokenizers, text):
    """The pieces of the best translation and the attention that produced them (for
    `nmt serve`'s page). Every row runs the model, an empty one as EOS alone."""
    import tensorflow as tf

    source_tokenizer, target_tokenizer = tokenizers
    pieces = source_tokenizer.tokenize(text)[:, :limit]  # ragged (B, None)
    eos = tf.fill([pieces.nrows(), 1], constants.EOS_ID)  # (B, 1)
    ragged_ids = tf.concat([pieces, tf.RaggedTensor.from_tensor(eos)], axis=1)
    source_ids = ragged_ids.to_tensor(default_value=constants.PAD_ID)  # (B, S+1)
    source_lengths = tf.cast(ragged_ids.row_lengths(), tf.int32)  # (B,) with EOS

    def run():
        result = search(source_ids, source_lengths, penalty)
        attention = tf.cast(result.attention[:, 0], tf.float32)  # (B, T, S+1)
        return result.ids[:, 0, :], result.lengths[:, 0], attention

    def skip():  # no rows: the encoder cannot run on an empty batch
        return tf.zeros([0, 0], tf.int32), tf.zeros([0], tf.int32), tf.zeros([0, 0, 0])

    target_ids, target_lengths, attention = tf.cond(tf.size(source_lengths) > 0, run, skip)
    return {
        "source_pieces": source_tokenizer.id_to_string(source_ids),  # (B, S+1)
        "source_length": source_lengths,
        "target_pieces": target_tokenizer.id_to_string(target_ids),  # (B, T)
        "target_length": target_lengths,  # (B,)
        "attention": attention,
    }


def write_saved_model(
    model, path: str | Path, functions: dict[str, Any], *, check_built: bool = True
) -> None:
    """Write `model`'s variables and the two signatures to `path` with keras ExportArchive."""
    import keras
    import tensorflow as tf

    if check_built and not model.built:
        raise NmtError("the model is not built; load it with nmt.checkpoints.load_model")
    archive = keras.export.ExportArchive()
    archive.track(model)
    for resource in functions["trackables"]:
        archive.track(resource)
    archive.add_endpoint(
        constants.SERVING_SIGNATURE,
        functions["translate_text"],
        input_signature=[tf.TensorSpec([None], tf.string, name=TEXT_INPUT)],
    )
    archive.add_endpoint(
        constants.IDS_SIGNATURE,
        functions["translate_ids"],
        input_signature=[
            tf.TensorSpec([None, None], tf.int32, name=IDS_INPUTS[0]),
            tf.TensorSpec([None], tf.int32, name=IDS_INPUTS[1]),
        ],
    )
    archive.add_endpoint(
        constants.ATTENTION_SIGNATURE,
        functions["translate_attention"],
        input_signature=[tf.TensorSpec([None], tf.string, name=TEXT_INPUT)],
    )
    archive.write_out(str(path), verbose=False)


# === Export ===


_SPECIAL_IDS = {
    "pad": constants.PAD_ID,
    "unk": constants.UNK_ID,
    "bos": constants.BOS_ID,
    "eos": constants.EOS_ID,
}
_SIGNATURES = {  # export.json's description of the signatures
    constants.SERVING_SIGNATURE: {
        "inputs": {TEXT_INPUT: "string (B,)"},
        "outputs": {"translation": "string (B,)", "score": "float32 (B,)"},
    },
    constants.IDS_SIGNATURE: {
        "inputs": {
            "source_ids": "int32 (B, S) SentencePiece ids without EOS, 0-padded",
            "source_lengths": "int32 (B,)",
        },
        "outputs": {
            "target_ids": "int32 (B, T) without EOS, 0-padded",
            "target_lengths": "int32 (B,)",
            "score": "float32 (B,)",
        },
    },
    constants.ATTENTION_SIGNATURE: {
        "inputs": {TEXT_INPUT: "string (B,)"},
        "outputs": {
            "source_pieces": "string (B, S) with EOS",
            "source_length": "int32 (B,)",
            "target_pieces": "string (B, T) without EOS",
            "target_length": "int32 (B,)",
            "attention": "float32 (B, T, S)",
        },
    },
}


def _write_extras(extra: Path, model_dir: Path | None, loaded, decode, shortlist) -> None:
    """assets.extra/: config.yaml, VERSION, the SentencePiece models and export.json."""
    from nmt.config import save_config

    extra.mkdir(parents=True, exist_ok=True)
    config = dataclasses.replace(loaded.config, decode=decode)
    save_config(config, extra / constants.CONFIG_FILE)
    model_dir_version = Path(model_dir) / constants.VERSION_FILE if model_dir else None
    if model_dir_version is not None and model_dir_version.is_file():
        shutil.copyfile(model_dir_version, extra / constants.VERSION_FILE)
    else:
        (extra / constants.VERSION_FILE).write_text(__version__ + "\n", encoding="utf-8")
    spm_files = loaded.vocab.model_files()
    for name, proto in spm_files.items():
        (extra / name).write_bytes(proto)
    info = _export_info(loaded, decode, shortlist, list(spm_files))
    (extra / EXPORT_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def _export_info(loaded, decode, shortlist, spm_names: list[str]) -> dict[str, Any]:
    """What export.json holds: versions, the search settings, the files, the signatures."""
    return {
        "nmt_version": __version__,
        "step": None if loaded.step is None else int(loaded.step),
        "checkpoint": None if loaded.checkpoint_path is None else str(loaded.checkpoint_path),
        "beam_size": decode.beam_size,
        "length_penalty": decode.length_penalty,
        "max_length_a": decode.max_length_a,
        "max_length_b": decode.max_length_b,
        "min_length": decode.min_length,
        "max_source_length": decode.max_source_length,
        "shortlist": None if shortlist is None else shortlist.describe(),
        "precision": getattr(getattr(loaded.model, "dtype_policy", None), "name", "float32"),
        "sentencepiece": {
            "source": spm_names[0],
            "target": spm_names[-1],
        },
        "special_ids": _SPECIAL_IDS,
        "signatures": _SIGNATURES,
    }


def _version_dir(base: Path, version: int | None, overwrite: bool) -> tuple[int, Path]:
    """(N, BASE/N) for `version` or the next free integer; refuses an existing one."""
    number = int(version) if version is not None else next_version(base)
    target = base / str(number)
    if target.exists() and not overwrite:
        raise NmtError(
            f"{target}: version {number} already exists; pass --overwrite to replace it "
            "or choose another --version"
        )
    return number, target


def export_model(
    model_dir: str | Path,
    export_base: str | Path,
    *,
    version: int | None = None,
    checkpoint: str = "best",
    beam_size: int | None = None,
    length_penalty: float | None = None,
    overwrite: bool = False,
    shortlist: bool | None = None,
    shortlist_top_k: int | None = None,
    shortlist_frequent: int | None = None,
    precision: str = "float32",
) -> Path:
    """Export a trained model as EXPORT_BASE/N (N = `version` or the next free integer).

    `precision` is the dtype policy the exported graph computes in wherever it is served
    (`nmt.precision`; "auto" resolves on the exporting machine), recorded in export.json.
    `shortlist*`: decode with the model directory's vocabulary shortlist (`shortlist.configure`).

    Raises NmtError when EXPORT_BASE/N exists (unless `overwrite`), when EXPORT_BASE is not a
    directory, or when the model cannot be loaded (CheckpointError from load_model).
    Returns the version directory written.
    """
    base = Path(export_base)
    check_output_dir(base, option="--output")  # a directory we can write in, before work
    if version is not None and (isinstance(version, bool) or int(version) < 1):
        raise NmtError(f"--version must be a positive integer, got {version}")
    if beam_size is not None and beam_size < 1:
        raise NmtError(f"--beam must be a positive integer, got {beam_size}")
    if length_penalty is not None and length_penalty < 0:
        raise NmtError(f"--length-penalty must be >= 0, got {length_penalty}")
    number, target = _version_dir(base, version, overwrite)

    from nmt import shortlist as shortlists
    from nmt.checkpoints import load_model

    loaded = load_model(model_dir, checkpoint, precision)
    decode, table = shortlists.prepare(loaded, shortlist, shortlist_top_k, shortlist_frequent)
    return export_loaded(
        dataclasses.replace(loaded, config=dataclasses.replace(loaded.config, decode=decode)),
        base,
        version=number,
        beam_size=beam_size,
        length_penalty=length_penalty,
        overwrite=overwrite,
        model_dir=model_dir,
        shortlist=table,
    )


def export_loaded(
    loaded,
    export_base: str | Path,
    *,
    version: int | None = None,
    beam_size: int | None = None,
    length_penalty: float | None = None,
    overwrite: bool = False,
    model_dir: str | Path | None = None,
    shortlist=None,
) -> Path:
    """Export an already loaded model (`checkpoints.LoadedModel`: config, vocab, model, step,
    checkpoint_path) as EXPORT_BASE/N, decoding over `shortlist` (a `shortlist.Shortlist`)
    when given; see `export_model`."""
    base = Path(export_base)
    number, target = _version_dir(base, version, overwrite)
    decode = _export_decode(loaded, beam_size, length_penalty, shortlist)
    base.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(base, f"{_TMP_PREFIX}{number}-")
    try:
        staged = tmp / "model"
        _stage_export(staged, target, loaded, decode, model_dir, shortlist)
        if overwrite:
            _move_into_place(staged, target, tmp / "replaced")
        else:
            target = _publish_new(staged, base, number, pick_next=version is None)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _export_decode(loaded, beam_size: int | None, length_penalty: float | None, shortlist):
    """The model's decode settings with the export's: --beam, --length-penalty, one best, the
    shortlist; refuses a beam larger than the shortlist or the target vocabulary holds."""
    decode = dataclasses.replace(loaded.config.decode)
    decode.beam_size = int(beam_size or decode.beam_size)
    if length_penalty is not None:
        decode.length_penalty = float(length_penalty)
    decode.n_best = 1
    decode.shortlist = shortlist is not None
    if shortlist is not None and decode.beam_size > shortlist.min_size:
        raise NmtError(
            f"beam size {decode.beam_size} exceeds the {shortlist.min_size} ids a shortlist is "
            "sure to hold; raise --shortlist-frequent"
        )
    target_size = getattr(loaded.vocab, "target_size", None)
    if target_size is not None and decode.beam_size > target_size:
        raise NmtError(
            f"beam size {decode.beam_size} exceeds the target vocabulary size {target_size}"
        )
    return decode


def _stage_export(staged: Path, target: Path, loaded, decode, model_dir, shortlist) -> None:
    """Write the whole version directory at `staged`; a failure other than an NmtError
    becomes one that names `target`."""
    try:
        staged.mkdir()  # the version directory: the umask's permissions, not TensorFlow's 0755
        functions = build_serving_functions(
            loaded.model, loaded.vocab.source_proto, loaded.vocab.target_proto, decode, shortlist
        )
        write_saved_model(loaded.model, staged, functions)
        _write_extras(staged / EXTRA_DIR, model_dir, loaded, decode, shortlist)
    except NmtError:
        raise
    except Exception as e:
        from nmt.modeldir import error_reason

        reason = error_reason(e)
        raise NmtError(
            f"{target}: export failed, nothing was written ({type(e).__name__}: {reason})"
        ) from e


def _publish_new(staged: Path, base: Path, number: int, *, pick_next: bool) -> Path:
    """Rename `staged` to BASE/N, never over a version that is there: the rename itself fails
    when BASE/N is a non-empty directory, so an export running beside this one cannot be
    replaced. With `pick_next` (no --version given) a number taken meanwhile moves this
    export on to the next free one; otherwise that is an error."""
    while True:
        target = base / str(number)
        try:
            os.rename(staged, target)
            return target
        except OSError as e:
            if not target.exists():
                raise NmtError(
                    f"{target}: cannot move the export into place: {e.strerror}"
                ) from None
        if not pick_next:
            raise NmtError(f"{target}: version {number} appeared during the export")
        number = max(number + 1, next_version(base))


def _move_into_place(staged: Path, target: Path, old: Path) -> None:
    """Rename `staged` to `target` (`fileio.replace_directory`: an existing target goes to
    `old`, which the caller's cleanup removes, and comes back when the move fails)."""
    try:
        replace_directory(staged, target, old)
    except OSError as e:
        raise NmtError(f"{target}: cannot move the export into place: {e.strerror}") from None


# === Loading ===


def load_export(path: str | Path):
    """tf.saved_model.load an exported version directory (registers tensorflow-text ops first)."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the SentencePiece ops)

    path = Path(path)
    if not (path / "saved_model.pb").is_file():
        raise NmtError(f"{path}: no saved_model.pb (expected an exported version directory)")
    try:
        return tf.saved_model.load(str(path))
    except (OSError, ValueError, tf.errors.OpError) as e:  # a damaged or partial export
        from nmt.modeldir import error_reason

        raise NmtError(f"{path}: cannot load the export ({error_reason(e)})") from None
