"""SavedModel export: layout, signatures equal to `nmt translate`, atomic writes, refusals.

One tiny model directory (random weights, joint vocabulary) is made and exported once per
test session (tests/helpers/export.py `make_tiny_export`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from nmt.cli import cli
from nmt.constants import (
    ATTENTION_SIGNATURE,
    CONFIG_FILE,
    IDS_SIGNATURE,
    JOINT_SPM,
    SERVING_SIGNATURE,
    VERSION_FILE,
)
from nmt.errors import NmtError
from tests.helpers import umask
from tests.helpers.export import (
    BEAM,
    INPUTS,
    LENGTH_PENALTY,
    MAX_SOURCE_LENGTH,
    TinyExport,
    make_model_dir,
    make_tiny_export,
    read_export_info,
    run_text,
)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> TinyExport:
    return make_tiny_export(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def loaded_export(tiny):
    from nmt.export import load_export

    return load_export(tiny.version_dir)


@pytest.fixture(scope="session")
def translator(tiny):
    from nmt.checkpoints import load_model
    from nmt.translator import Translator

    loaded = load_model(tiny.model_dir)
    return Translator(loaded.model, loaded.vocab, loaded.config.decode, warn=lambda m: None)


# === Layout ===


def test_export_layout_and_assets(tiny):
    from nmt.config import load_config
    from nmt.export import list_versions

    assert list_versions(tiny.export_base) == [1]
    assert sorted(p.name for p in tiny.export_base.iterdir()) == ["1"]  # no temporary dirs left
    version = tiny.version_dir
    assert (version / "saved_model.pb").is_file()
    assert (version / "variables" / "variables.index").is_file()
    extra = version / "assets.extra"
    assert sorted(p.name for p in extra.iterdir()) == sorted(
        [CONFIG_FILE, VERSION_FILE, JOINT_SPM, "export.json"]
    )
    assert (extra / JOINT_SPM).read_bytes() == (tiny.model_dir / JOINT_SPM).read_bytes()
    assert (extra / VERSION_FILE).read_text() == (tiny.model_dir / VERSION_FILE).read_text()
    config = load_config(extra / CONFIG_FILE)
    assert config.decode.beam_size == BEAM and config.decode.max_source_length == 12
    info = read_export_info(version)
    assert info["step"] == 17 and info["beam_size"] == BEAM
    assert info["length_penalty"] == pytest.approx(LENGTH_PENALTY)
    assert set(info["signatures"]) == {SERVING_SIGNATURE, IDS_SIGNATURE, ATTENTION_SIGNATURE}


def test_list_and_next_version(tmp_path):
    from nmt.export import list_versions, next_version

    assert list_versions(tmp_path / "missing") == [] and next_version(tmp_path / "missing") == 1
    for name in ("3", "10", ".nmt-export-11-x", "notes", "7.bak"):
        (tmp_path / name).mkdir()
    (tmp_path / "12").write_text("a file, not a version")
    assert list_versions(tmp_path) == [3, 10]
    assert next_version(tmp_path) == 11


def test_saved_model_cli_lists_both_signatures(tiny):
    cli_path = Path(sys.executable).parent / "saved_model_cli"
    if not cli_path.exists():
        pytest.skip(f"{cli_path} not installed")
    result = subprocess.run(
        [str(cli_path), "show", "--all", "--dir", str(tiny.version_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    serving = out.split("signature_def['serving_default']:")[1].split("signature_def[")[0]
    ids = out.split("signature_def['translate_ids']:")[1].split("signature_def[")[0]
    assert "inputs['text']" in serving and "DT_STRING" in serving
    assert "outputs['translation']" in serving and "outputs['score']" in serving
    for name in ("inputs['source_ids']", "inputs['source_lengths']", "outputs['target_ids']"):
        assert name in ids
    assert "outputs['target_lengths']" in ids and "outputs['score']" in ids
    assert serving.count("tensorflow/serving/predict") == 1


# === Same results as Translator / nmt translate ===


def test_text_signature_equals_translator(loaded_export, translator):
    expected = translator.translate_hypotheses(INPUTS)
    texts, scores = run_text(loaded_export, INPUTS)
    assert texts == [h[0].text for h in expected]
    assert scores == pytest.approx([h[0].score for h in expected], abs=1e-5)
    # Inputs without pieces give "" and 0 without reaching the model; others do not.
    for line, text, score in zip(INPUTS, texts, scores, strict=True):
        if not line.strip():
            assert (text, score) == ("", 0.0)
        else:
            assert score < 0.0


def test_bfloat16_export_records_its_precision_and_translates(tiny, tmp_path):
    """An export in mixed_bfloat16 says so in export.json, computes in bfloat16 and scores
    within bfloat16 rounding of the same model decoding in bfloat16 in the library."""
    from nmt.checkpoints import load_model
    from nmt.export import export_model, load_export
    from nmt.translator import Translator

    path = export_model(tiny.model_dir, tmp_path / "bf16", precision="mixed_bfloat16")
    info = json.loads((path / "assets.extra" / "export.json").read_text())
    assert info["precision"] == "mixed_bfloat16"
    plain = json.loads((tiny.version_dir / "assets.extra" / "export.json").read_text())
    assert plain["precision"] == "float32"
    loaded = load_model(tiny.model_dir, precision="mixed_bfloat16")
    expected = Translator(loaded.model, loaded.vocab, loaded.config.decode).translate_hypotheses(
        INPUTS
    )
    texts, scores = run_text(load_export(path), INPUTS)
    assert texts == [h[0].text for h in expected]
    assert scores == pytest.approx([h[0].score for h in expected], abs=1e-3)


def test_truncation_to_max_source_length(loaded_export, translator):
    sp = translator._source_sp
    long_line = INPUTS[3]
    pieces = sp.encode(long_line)
    assert len(pieces) > MAX_SOURCE_LENGTH
    cut = sp.decode(pieces[:MAX_SOURCE_LENGTH])
    assert sp.encode(cut) == pieces[:MAX_SOURCE_LENGTH]
    (a, b), (score_a, score_b) = run_text(loaded_export, [long_line, cut])
    assert a == b and score_a == pytest.approx(score_b, abs=1e-5)


def test_translations_do_not_depend_on_batch_composition(loaded_export):
    together, together_scores = run_text(loaded_export, INPUTS)
    alone = [run_text(loaded_export, [line]) for line in INPUTS]
    assert together == [t[0] for t, _ in alone]
    assert together_scores == pytest.approx([s[0] for _, s in alone], abs=1e-5)
    reordered, reordered_scores = run_text(loaded_export, INPUTS[::-1] + INPUTS[:2])
    assert reordered == together[::-1] + together[:2]
    assert reordered_scores == pytest.approx(together_scores[::-1] + together_scores[:2], abs=1e-5)
    assert run_text(loaded_export, []) == ([], [])
    assert run_text(loaded_export, ["", " "]) == (["", ""], [0.0, 0.0])


def test_ids_signature_equals_text_signature(loaded_export, translator):
    import numpy as np
    import tensorflow as tf

    texts, scores = run_text(loaded_export, INPUTS)
    pieces = [translator._source_sp.encode(line) for line in INPUTS]
    width = max(len(p) for p in pieces)
    ids = np.zeros((len(pieces), width), np.int32)
    for row, p in enumerate(pieces):
        ids[row, : len(p)] = p
    lengths = np.array([len(p) for p in pieces], np.int32)
    out = loaded_export.signatures[IDS_SIGNATURE](
        source_ids=tf.constant(ids), source_lengths=tf.constant(lengths)
    )
    target_ids, target_lengths = out["target_ids"].numpy(), out["target_lengths"].numpy()
    assert target_ids.shape == (len(INPUTS), max(target_lengths))
    decoded = [
        translator._target_sp.decode(target_ids[i, : target_lengths[i]].tolist())
        for i in range(len(INPUTS))
    ]
    assert decoded == texts
    assert out["score"].numpy().tolist() == pytest.approx(scores, abs=1e-5)
    for i in range(len(INPUTS)):  # padding after each hypothesis, no EOS inside
        assert not target_ids[i, target_lengths[i] :].any()
        assert 3 not in target_ids[i, : target_lengths[i]].tolist()


def test_attention_signature_equals_translator_attention(loaded_export, translator):
    """translate_attention gives the pieces of serving_default's translation and the
    attention `nmt translate` computes for it (rows: target pieces; columns: source pieces
    and EOS)."""
    import numpy as np
    import tensorflow as tf

    lines = [line for line in INPUTS if line.strip()]
    out = loaded_export.signatures[ATTENTION_SIGNATURE](text=tf.constant(lines, tf.string))
    out = {name: value.numpy() for name, value in out.items()}
    hyps = translator.translate_hypotheses(lines, return_attention=True)
    texts, _ = run_text(loaded_export, lines)
    for i, (hyp,) in enumerate(hyps):
        n_source, n_target = out["source_length"][i], out["target_length"][i]
        source = [p.decode() for p in out["source_pieces"][i][:n_source]]
        target = [p.decode() for p in out["target_pieces"][i][:n_target]]
        assert source == hyp.source_pieces + ["</s>"]
        assert target == hyp.target_pieces
        assert translator._target_sp.decode_pieces(target) == texts[i] == hyp.text
        weights = out["attention"][i][:n_target, :n_source]  # (T, S+1)
        np.testing.assert_allclose(weights, hyp.attention, atol=1e-5)
        np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-4)
    empty = loaded_export.signatures[ATTENTION_SIGNATURE](text=tf.constant([], tf.string))
    assert {name: tuple(value.shape) for name, value in empty.items()} == {
        "source_pieces": (0, 0),
        "source_length": (0,),
        "target_pieces": (0, 0),
        "target_length": (0,),
        "attention": (0, 0, 0),
    }


def test_ids_signature_rejects_bad_lengths(loaded_export):
    import tensorflow as tf

    fn = loaded_export.signatures[IDS_SIGNATURE]
    with pytest.raises(tf.errors.InvalidArgumentError, match="exceeds the width"):
        fn(source_ids=tf.constant([[5, 6]]), source_lengths=tf.constant([3]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one entry per row"):
        fn(source_ids=tf.constant([[5, 6]]), source_lengths=tf.constant([1, 2]))


FRESH_PROCESS = """
import json, sys
import tensorflow_text  # registers the SentencePiece ops before loading
import tensorflow as tf
module = tf.saved_model.load(sys.argv[1])
lines = json.loads(sys.stdin.read())
out = module.signatures["serving_default"](text=tf.constant(lines, tf.string))
print(json.dumps({
    "translation": [t.decode("utf-8") for t in out["translation"].numpy().tolist()],
    "score": [float(s) for s in out["score"].numpy()],
}))
"""


def test_fresh_process_equals_nmt_translate(tiny, translator, tmp_path):
    # The CLI's `nmt translate` (one line per input line; inputs have no newlines).
    source = tmp_path / "input.txt"
    source.write_text("\n".join(INPUTS) + "\n", encoding="utf-8")
    output = tmp_path / "output.txt"
    result = CliRunner().invoke(
        cli,
        ["translate", str(source), "-o", str(output), "--model", str(tiny.model_dir), "--quiet"],
    )
    assert result.exit_code == 0, result.output
    cli_lines = output.read_text(encoding="utf-8").split("\n")[:-1]
    assert len(cli_lines) == len(INPUTS)

    proc = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(tiny.version_dir)],
        input=json.dumps(INPUTS),
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = json.loads(proc.stdout.strip().splitlines()[-1])
    assert served["translation"] == cli_lines
    expected_scores = [h[0].score for h in translator.translate_hypotheses(INPUTS)]
    assert served["score"] == pytest.approx(expected_scores, abs=1e-5)


def test_separate_vocabularies_and_greedy_export(tmp_path, loaded_export):
    """Source and target SentencePiece models differ; a second export loaded in the same
    process must not share tokenizer resources with the first one. Its config's
    decode.min_length reaches the serving signature."""
    from nmt.checkpoints import load_model
    from nmt.constants import SOURCE_SPM, TARGET_SPM
    from nmt.export import export_model, load_export
    from nmt.translator import Translator

    before = run_text(loaded_export, INPUTS)
    model_dir = make_model_dir(tmp_path / "model", joint=False, seed=11, min_length=6)
    path = export_model(model_dir, tmp_path / "export", version=5, beam_size=1)
    assert path == tmp_path / "export" / "5"
    extra = sorted(p.name for p in (path / "assets.extra").iterdir())
    assert SOURCE_SPM in extra and TARGET_SPM in extra and JOINT_SPM not in extra
    loaded = load_model(model_dir)
    translator = Translator(loaded.model, loaded.vocab, loaded.config.decode, warn=lambda m: None)
    expected = translator.translate_hypotheses(INPUTS, beam_size=1)
    assert all(h[0].length >= 6 for line, h in zip(INPUTS, expected, strict=True) if line.strip())
    assert json.loads((path / "assets.extra" / "export.json").read_text())["min_length"] == 6
    texts, scores = run_text(load_export(path), INPUTS)
    assert texts == [h[0].text for h in expected]
    assert scores == pytest.approx([h[0].score for h in expected], abs=1e-5)
    assert run_text(loaded_export, INPUTS) == before


def test_the_version_directory_follows_the_umask(tiny, tmp_path):
    from nmt.export import export_model

    with umask(0o002) as mode:
        path = export_model(tiny.model_dir, tmp_path / "export")
    # not mkdtemp's owner-only 0o700, nor the 0o755 TensorFlow makes directories with
    assert (path.stat().st_mode & 0o777) == mode == 0o775
    assert (path / "assets.extra").stat().st_mode & 0o777 == 0o775
    assert (path / "saved_model.pb").stat().st_mode & 0o777 == 0o664
    assert sorted(p.name for p in path.parent.iterdir()) == ["1"]


# === Refusals and atomicity ===


def test_existing_version_refused_without_overwrite(tiny, tmp_path):
    from nmt.export import export_model

    base = tmp_path / "export"
    (base / "1").mkdir(parents=True)
    (base / "1" / "marker").write_text("old")
    with pytest.raises(NmtError, match=r"version 1 already exists; pass --overwrite"):
        export_model(tiny.model_dir, base, version=1)
    assert (base / "1" / "marker").read_text() == "old"

    result = CliRunner().invoke(
        cli, ["export", "--model", str(tiny.model_dir), "--output", str(base), "--version", "1"]
    )
    assert result.exit_code == 2
    assert "already exists; pass --overwrite" in result.output

    result = CliRunner().invoke(
        cli,
        ["export", "--model", str(tiny.model_dir), "--output", str(base), "--version", "1"]
        + ["--overwrite", "--beam", "2", "--length-penalty", "0.2"],
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(base / "1")
    assert not (base / "1" / "marker").exists()
    info = json.loads((base / "1" / "assets.extra" / "export.json").read_text())
    assert info["beam_size"] == 2 and info["length_penalty"] == pytest.approx(0.2)
    assert sorted(p.name for p in base.iterdir()) == ["1"]


def test_failed_export_leaves_no_version_directory(tiny, tmp_path, monkeypatch):
    import tensorflow as tf

    def broken_save(*args, **kwargs):
        Path(args[1]).mkdir(parents=True, exist_ok=True)
        (Path(args[1]) / "saved_model.pb").write_bytes(b"half")  # a partial write
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    base = tmp_path / "export"
    result = CliRunner().invoke(
        cli, ["export", "--model", str(tiny.model_dir), "--output", str(base)]
    )
    assert result.exit_code == 2
    message = result.output.strip().splitlines()[-1]
    assert message.startswith(f"nmt: error: {base / '1'}: export failed, nothing was written")
    assert "No space left on device" in message
    assert list(base.iterdir()) == []


def test_export_errors_name_the_problem(tmp_path):
    from nmt.errors import CheckpointError
    from nmt.export import export_model

    with pytest.raises(CheckpointError, match="model directory not found"):
        export_model(tmp_path / "nope", tmp_path / "export")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NmtError, match="exists and is not a directory"):
        export_model(tmp_path / "nope", tmp_path / "file")
    assert not (tmp_path / "export").exists()


def test_beam_larger_than_vocabulary_refused(tiny, tmp_path):
    from nmt.export import export_model

    with pytest.raises(NmtError, match="beam size 1000 exceeds the target vocabulary size 40"):
        export_model(tiny.model_dir, tmp_path / "export", beam_size=1000)
    assert not (tmp_path / "export").exists()
