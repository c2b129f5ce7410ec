"""Bad command lines, configs, files and model directories, command by command.

Every case must end with exactly one line `nmt: error: ...` that names the problem (the
file, option, key or checkpoint), exit code 2 and no traceback; `--debug` shows the
traceback instead. Usage errors (missing or bad options) are one line too. An unexpected
exception is a bug: one `nmt: internal error:` line and exit code 1. A reader that closes
stdout early (`nmt ... | head`) ends the command quietly.

The cases run in process (click's CliRunner); {W} is a workspace of bad inputs, {M} the
session's tiny model directory (tests/helpers/export.py), {E} a copy of its export base,
{T} configs/tiny.yaml and {D} a directory of damaged copies of {M}.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from nmt.cli import cli
from nmt.errors import NmtError
from tests.helpers.corpus import TINY, write_corpus
from tests.helpers.export import make_tiny_export


def _damage_checkpoint(model: Path, how: str) -> None:
    (index,) = (model / "checkpoints").glob("*.index")
    (data,) = (model / "checkpoints").glob("*.data-*")
    if how == "truncated":
        data.write_bytes(data.read_bytes()[:100])
    elif how == "empty-index":
        index.write_bytes(b"")
    else:
        data.unlink()


DAMAGED = {
    "no-version": lambda m: (m / "VERSION").unlink(),
    "new-version": lambda m: (m / "VERSION").write_text("99.0.0\n"),
    "no-vocab": lambda m: (m / "joint.model").unlink(),
    "bad-vocab": lambda m: (m / "joint.model").write_bytes(b"garbage"),
    "bad-yaml": lambda m: (m / "config.yaml").write_text("model: [\n"),
    "bad-value": lambda m: (m / "config.yaml").write_text("model:\n  units: x\n"),
    "truncated": lambda m: _damage_checkpoint(m, "truncated"),
    "empty-index": lambda m: _damage_checkpoint(m, "empty-index"),
    "no-data": lambda m: _damage_checkpoint(m, "no-data"),
}


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, str]:
    tiny = make_tiny_export(tmp_path_factory.getbasetemp())
    w = tmp_path_factory.mktemp("bad-inputs")
    write_corpus(w / "data")
    (w / "in.txt").write_text("ein Hund\n", encoding="utf-8")
    (w / "two.txt").write_text("ein\nHund\n", encoding="utf-8")
    (w / "binary.txt").write_bytes(b"ok\n\xff\xfe\n")
    (w / "adir").mkdir()
    (w / "afile").write_text("x")
    (w / "notes").mkdir()
    (w / "notes" / "mine.txt").write_text("not a model")
    (w / "bad.yaml").write_text("data: [1, 2\n")
    (w / "binary.yaml").write_bytes(b"\xff\n")
    (w / "list.yaml").write_text("- a\n- b\n")
    (w / "section.yaml").write_text("data: 5\n")
    (w / "unknown.yaml").write_text("datum:\n  a: 1\n")
    shutil.copytree(tiny.export_base, w / "export")
    (w / "broken-export" / "1").mkdir(parents=True)
    (w / "broken-export" / "1" / "saved_model.pb").write_bytes(b"garbage")
    d = w / "damaged"
    for name, damage in DAMAGED.items():
        shutil.copytree(tiny.model_dir, d / name)
        damage(d / name)
    return {"W": str(w), "M": str(tiny.model_dir), "E": str(w / "export"), "T": str(TINY),
            "D": str(d)}  # fmt: skip


TRAIN = ["train", "--config", "{T}", "--model-dir", "{W}/new"]
DATA = ["--set", "data.train_source={W}/data/train.src", "--set",
        "data.train_target={W}/data/train.tgt"]  # fmt: skip
TRANSLATE = ["translate", "{W}/in.txt", "--model", "{M}"]
EVALUATE = ["evaluate", "--model", "{M}", "--src", "{W}/in.txt", "--ref", "{W}/in.txt"]
EXPORT = ["export", "--model", "{M}", "--output", "{W}/export-new"]
VOCAB = ["vocab", "--source", "{W}/in.txt", "--target", "{W}/in.txt"]
SERVE = ["serve", "--export-dir", "{E}", "--port", "0"]
AVERAGE = ["average", "--model", "{M}", "--last", "1"]
CORRUPT = "corrupt or truncated checkpoint"


# (id, arguments, what the error line must contain)
CASES = [
    # --- the group
    ("no-command", ["bogus"], "No such command 'bogus'"),
    ("no-option", ["--bogus"], "No such option '--bogus'"),
    # --- translate
    ("translate-no-file", ["translate", "--model", "{M}"], "Missing argument 'FILE'"),
    ("translate-no-model", ["translate", "{W}/in.txt"], "Missing option '--model'"),
    ("translate-missing-input", ["translate", "{W}/nope.txt", "--model", "{M}"],
     "{W}/nope.txt: file not found"),
    ("translate-input-dir", ["translate", "{W}/adir", "--model", "{M}"],
     "'{W}/adir' is a directory"),
    ("translate-input-binary", ["translate", "{W}/binary.txt", "--model", "{M}"],
     "{W}/binary.txt:2: invalid UTF-8"),
    ("translate-model-missing", ["translate", "{W}/in.txt", "--model", "{W}/nope"],
     "{W}/nope: model directory not found"),
    ("translate-model-empty", ["translate", "{W}/in.txt", "--model", "{W}/adir"],
     "{W}/adir: not a model directory (no config.yaml)"),
    ("translate-model-file", ["translate", "{W}/in.txt", "--model", "{W}/afile"],
     "'{W}/afile' is a file"),
    ("translate-checkpoint-name", [*TRANSLATE, "--checkpoint", "nope"],
     "nope: checkpoint not found"),
    ("translate-checkpoint-step", [*TRANSLATE, "--checkpoint", "{M}/checkpoints/ckpt-999"],
     "{M}/checkpoints/ckpt-999: checkpoint not found"),
    ("translate-checkpoint-empty-dir", [*TRANSLATE, "--checkpoint", "{W}/adir"],
     "{W}/adir: no checkpoint in this directory"),
    ("translate-checkpoint-file", [*TRANSLATE, "--checkpoint", "{W}/in.txt"],
     "{W}/in.txt: checkpoint not found"),
    ("translate-beam-0", [*TRANSLATE, "--beam", "0"], "'--beam': 0 is not in the range x>=1"),
    ("translate-beam-text", [*TRANSLATE, "--beam", "x"], "'--beam': 'x' is not a valid integer"),
    ("translate-beam-huge", [*TRANSLATE, "--beam", "100000"],
     "beam size 100000 exceeds the target vocabulary size"),
    ("translate-penalty", [*TRANSLATE, "--length-penalty", "-1"], "'--length-penalty'"),
    ("translate-batch-tokens", [*TRANSLATE, "--batch-tokens", "0"], "'--batch-tokens'"),
    ("translate-n-best-0", [*TRANSLATE, "--n-best", "0"], "'--n-best'"),
    ("translate-n-best-beam", [*TRANSLATE, "--n-best", "5", "--beam", "2"],
     "--n-best 5 cannot exceed the beam size 2"),
    ("translate-plot-lines", [*TRANSLATE, "--plot-attention", "{W}/plots", "--plot-lines", "a"],
     "--plot-lines"),
    ("translate-output-dir", [*TRANSLATE, "-o", "{W}/adir"], "'{W}/adir' is a directory"),
    ("translate-output-parent", [*TRANSLATE, "-o", "{W}/nope/out.txt"], "{W}/nope"),
    ("translate-no-version", ["translate", "{W}/in.txt", "--model", "{D}/no-version"],
     "{D}/no-version/VERSION: missing"),
    ("translate-new-version", ["translate", "{W}/in.txt", "--model", "{D}/new-version"],
     "written by nmt '99.0.0'"),
    ("translate-no-vocab", ["translate", "{W}/in.txt", "--model", "{D}/no-vocab"],
     "{D}/no-vocab: no joint.model or source.model + target.model"),
    ("translate-bad-vocab", ["translate", "{W}/in.txt", "--model", "{D}/bad-vocab"],
     "{D}/bad-vocab/joint.model: not a valid SentencePiece model"),
    ("translate-bad-config-yaml", ["translate", "{W}/in.txt", "--model", "{D}/bad-yaml"],
     "{D}/bad-yaml/config.yaml: cannot read the saved config: line 2:"),
    ("translate-bad-config-value", ["translate", "{W}/in.txt", "--model", "{D}/bad-value"],
     "{D}/bad-value/config.yaml: invalid saved config: model.units must be an integer"),
    ("translate-truncated-data", ["translate", "{W}/in.txt", "--model", "{D}/truncated"],
     f"{{D}}/truncated/checkpoints/ckpt-17: {CORRUPT}"),
    ("translate-empty-index", ["translate", "{W}/in.txt", "--model", "{D}/empty-index"],
     f"{{D}}/empty-index/checkpoints/ckpt-17: {CORRUPT}"),
    ("translate-no-data", ["translate", "{W}/in.txt", "--model", "{D}/no-data"],
     f"{{D}}/no-data/checkpoints/ckpt-17: {CORRUPT}"),
    ("translate-ensemble-member-missing", [*TRANSLATE, "--model", "{W}/nope"],
     "{W}/nope: model directory not found"),
    ("translate-ensemble-member-empty", [*TRANSLATE, "--model", "{W}/adir"],
     "{W}/adir: not a model directory (no config.yaml)"),
    ("translate-ensemble-checkpoints", [*TRANSLATE, "--model", "{M}", "--checkpoint", "best",
                                        "--checkpoint", "last", "--checkpoint", "best"],
     "2 --model but 3 --checkpoint"),
    ("translate-ensemble-checkpoint-missing", [*TRANSLATE, "--checkpoint", "last",
                                               "--checkpoint", "nope"],
     "nope: checkpoint not found"),
    # --- evaluate
    ("evaluate-no-src", ["evaluate", "--model", "{M}", "--ref", "{W}/in.txt"],
     "Missing option '--src'"),
    ("evaluate-missing-ref", ["evaluate", "--model", "{M}", "--src", "{W}/in.txt", "--ref",
                              "{W}/nope.txt"], "{W}/nope.txt: file not found"),
    ("evaluate-ref-dir", ["evaluate", "--model", "{M}", "--src", "{W}/in.txt", "--ref", "{W}/adir"],
     "'{W}/adir' is a directory"),
    ("evaluate-line-counts", ["evaluate", "--model", "{M}", "--src", "{W}/in.txt", "--ref",
                              "{W}/two.txt"], "{W}/in.txt has 1 lines but {W}/two.txt has 2"),
    ("evaluate-metric", [*EVALUATE, "--metrics", "rouge"], "unknown metric 'rouge'"),
    ("evaluate-ensemble-member-missing", [*EVALUATE, "--model", "{W}/nope"],
     "{W}/nope: model directory not found"),
    ("evaluate-model-empty", ["evaluate", "--model", "{W}/adir", "--src", "{W}/in.txt", "--ref",
                              "{W}/in.txt"], "{W}/adir: not a model directory"),
    ("evaluate-hyp-out-parent", [*EVALUATE, "--hyp-out", "{W}/nope/hyp.txt"], "{W}/nope/hyp.txt"),
    # --- score
    ("score-no-ref", ["score", "{W}/in.txt"], "Missing argument 'REF'"),
    ("score-missing", ["score", "{W}/in.txt", "{W}/nope.txt"], "{W}/nope.txt: file not found"),
    ("score-dir", ["score", "{W}/adir", "{W}/in.txt"], "'{W}/adir' is a directory"),
    ("score-binary", ["score", "{W}/binary.txt", "{W}/two.txt"], "{W}/binary.txt:2: invalid UTF-8"),
    ("score-line-counts", ["score", "{W}/in.txt", "{W}/two.txt"], "has 1 lines but"),
    ("score-metric", ["score", "{W}/in.txt", "{W}/in.txt", "--metrics", "rouge"],
     "unknown metric 'rouge'"),
    ("score-no-metric", ["score", "{W}/in.txt", "{W}/in.txt", "--metrics", ","],
     "give at least one metric"),
    # --- vocab
    ("vocab-no-target", ["vocab", "--source", "{W}/in.txt"], "give --source and --target"),
    ("vocab-missing-source", ["vocab", "--source", "{W}/nope.txt", "--target", "{W}/in.txt"],
     "{W}/nope.txt: file not found"),
    ("vocab-source-dir", ["vocab", "--source", "{W}/adir", "--target", "{W}/in.txt"],
     "'{W}/adir' is a directory"),
    ("vocab-binary", ["vocab", "--source", "{W}/binary.txt", "--target", "{W}/in.txt",
                      "--output", "{W}/v1", "--size", "8"],
     "{W}/binary.txt:2: invalid UTF-8"),
    ("vocab-size-0", [*VOCAB, "--size", "0"], "vocab.size must be positive"),
    ("vocab-size-text", [*VOCAB, "--size", "x"], "'--size': 'x' is not a valid integer"),
    ("vocab-size-huge", ["vocab", "--source", "{W}/data/train.src", "--target",
                         "{W}/data/train.tgt", "--size", "5000", "--output", "{W}/v2"],
     "vocab.size 5000 is too large"),
    ("vocab-coverage", [*VOCAB, "--character-coverage", "2"],
     "vocab.character_coverage must be in (0, 1]"),
    ("vocab-output-file", [*VOCAB, "--output", "{W}/afile"], "'{W}/afile' is a file"),
    ("vocab-config-yaml", ["vocab", "--config", "{W}/bad.yaml"], "{W}/bad.yaml: line 2:"),
    ("vocab-config-missing", ["vocab", "--config", "{W}/nope.yaml"],
     "{W}/nope.yaml: config file not found"),
    # --- demo-data
    ("demo-no-output", ["demo-data"], "Missing option '--output'"),
    ("demo-output-file", ["demo-data", "--output", "{W}/afile"], "'{W}/afile' is a file"),
    ("demo-output-under-file", ["demo-data", "--output", "{W}/afile/sub", "--train", "1"],
     "{W}/afile/sub: Not a directory"),
    ("demo-train", ["demo-data", "--output", "{W}/demo", "--train", "-1"], "'--train'"),
    ("demo-seed", ["demo-data", "--output", "{W}/demo", "--seed", "x"], "'--seed'"),
    # --- export
    ("export-no-output", ["export", "--model", "{M}"], "Missing option '--output'"),
    ("export-model-missing", ["export", "--model", "{W}/nope", "--output", "{W}/x"],
     "{W}/nope: model directory not found"),
    ("export-model-empty", ["export", "--model", "{W}/adir", "--output", "{W}/x"],
     "{W}/adir: not a model directory"),
    ("export-output-file", ["export", "--model", "{M}", "--output", "{W}/afile"],
     "'{W}/afile' is a file"),
    ("export-version-0", [*EXPORT, "--version", "0"], "'--version': 0 is not in the range"),
    ("export-version-exists", ["export", "--model", "{M}", "--output", "{E}", "--version", "1"],
     "{E}/1: version 1 already exists; pass --overwrite"),
    ("export-beam-0", [*EXPORT, "--beam", "0"], "'--beam'"),
    ("export-beam-huge", [*EXPORT, "--beam", "999"],
     "beam size 999 exceeds the target vocabulary size 40"),
    ("export-checkpoint", [*EXPORT, "--checkpoint", "nope"], "nope: checkpoint not found"),
    ("export-penalty", [*EXPORT, "--length-penalty", "-2"], "'--length-penalty'"),
    ("export-truncated", ["export", "--model", "{D}/truncated", "--output", "{W}/x"], CORRUPT),
    # --- serve
    ("serve-no-dir", ["serve"], "Missing option '--export-dir'"),
    ("serve-missing", ["serve", "--export-dir", "{W}/nope"],
     "{W}/nope: export directory not found"),
    ("serve-empty", ["serve", "--export-dir", "{W}/adir"], "{W}/adir: no exported versions"),
    ("serve-file", ["serve", "--export-dir", "{W}/afile"], "'{W}/afile' is a file"),
    ("serve-version-dir", ["serve", "--export-dir", "{E}/1"], "{E}/1: is a version directory"),
    ("serve-broken", ["serve", "--export-dir", "{W}/broken-export"],
     "{W}/broken-export/1: cannot load the export"),
    ("serve-port", [*SERVE[:3], "--port", "70000"], "'--port': 70000 is not in the range"),
    ("serve-batch", [*SERVE, "--max-batch-size", "0"], "'--max-batch-size'"),
    ("serve-timeout", [*SERVE, "--batch-timeout-ms", "-1"], "'--batch-timeout-ms'"),
    ("serve-body", [*SERVE, "--max-request-bytes", "0"], "'--max-request-bytes'"),
    ("serve-name", [*SERVE, "--model-name", "a b"], "--model-name 'a b'"),
    # --- train
    ("train-no-config", ["train", "--model-dir", "{W}/new"], "Missing option '--config'"),
    ("train-no-model-dir", ["train", "--config", "{T}"], "Missing option '--model-dir'"),
    ("train-config-missing", ["train", "--config", "{W}/nope.yaml", "--model-dir", "{W}/new"],
     "{W}/nope.yaml: config file not found"),
    ("train-config-dir", ["train", "--config", "{W}/adir", "--model-dir", "{W}/new"],
     "'{W}/adir' is a directory"),
    ("train-config-yaml", ["train", "--config", "{W}/bad.yaml", "--model-dir", "{W}/new"],
     "{W}/bad.yaml: line 2:"),
    ("train-config-binary", ["train", "--config", "{W}/binary.yaml", "--model-dir", "{W}/new"],
     "{W}/binary.yaml: cannot read config"),
    ("train-config-list", ["train", "--config", "{W}/list.yaml", "--model-dir", "{W}/new"],
     "a config must be a mapping of sections"),
    ("train-config-section", ["train", "--config", "{W}/section.yaml", "--model-dir", "{W}/new"],
     "section 'data' must be a mapping"),
    ("train-config-unknown", ["train", "--config", "{W}/unknown.yaml", "--model-dir", "{W}/new"],
     "unknown section 'datum' (did you mean 'data'?)"),
    ("train-model-dir-file", ["train", "--config", "{T}", "--model-dir", "{W}/afile"],
     "'{W}/afile' is a file"),
    ("train-set-syntax", [*TRAIN, "--set", "nokey"], "--set 'nokey': expected section.key=value"),
    ("train-set-depth", [*TRAIN, "--set", "a.b.c=1"],
     "--set 'a.b.c=1': expected section.key=value"),
    ("train-set-key", [*TRAIN, "--set", "model.unitz=3"],
     "unknown key model.unitz (did you mean 'units'?)"),
    ("train-set-section", [*TRAIN, "--set", "modl.units=3"], "unknown section 'modl'"),
    ("train-set-type", [*TRAIN, "--set", "model.units=abc"], "model.units must be an integer"),
    ("train-set-list", [*TRAIN, "--set", "model.units=[1, 2]"], "model.units must be an integer"),
    ("train-set-negative", [*TRAIN, "--set", "model.units=-4"], "model.units must be positive"),
    ("train-set-choice", [*TRAIN, "--set", "model.attention=foo"],
     "model.attention: 'foo' is not one of"),
    ("train-set-range", [*TRAIN, "--set", "model.dropout=1.5"], "model.dropout must be in [0, 1)"),
    ("train-set-named", [*TRAIN, "--set", "model.word_dropout=1"],
     "--set model.word_dropout=1: model.word_dropout must be in [0, 1), got 1.0"),
    ("train-set-scale", [*TRAIN, *DATA, "--set", "model.attention=bahdanau", "--set",
                         "model.attention_scale=sqrt"],
     "model.attention_scale 'sqrt' applies to dot and general attention, not model.attention "
     "'bahdanau'; use none"),
    ("train-set-steps", [*TRAIN, "--set", "train.max_steps=0"], "train.max_steps must be positive"),
    ("train-set-nan", [*TRAIN, "--set", "train.learning_rate=.nan", "--set",
                       "data.train_source={W}/nope.src", "--set",
                       "data.train_target={W}/nope.tgt"], "train.learning_rate must be a finite"),
    ("train-precision", [*TRAIN, "--precision", "float8"], "'--precision': 'float8' is not one of"),
    ("train-no-data", TRAIN, "data.train_source and data.train_target must be set"),
    ("train-data-missing", [*TRAIN, "--set", "data.train_source={W}/nope.src", "--set",
                            "data.train_target={W}/in.txt"], "{W}/nope.src: file not found"),
    ("train-data-dir", [*TRAIN, "--set", "data.train_source={W}/adir", "--set",
                        "data.train_target={W}/in.txt"], "{W}/adir: is a directory"),
    ("train-data-binary", [*TRAIN, "--set", "data.train_source={W}/binary.txt", "--set",
                           "data.train_target={W}/two.txt"],
     "{W}/binary.txt:2: invalid UTF-8"),
    ("train-data-lines", [*TRAIN, "--set", "data.train_source={W}/in.txt", "--set",
                          "data.train_target={W}/two.txt"],
     "parallel files must have the same number of lines"),
    ("train-dev-half", [*TRAIN, *DATA, "--set", "data.dev_source={W}/in.txt"],
     "data.dev_source and data.dev_target must be given together"),
    ("train-plateau-no-dev", [*TRAIN, *DATA, "--set", "train.decay=plateau"],
     "train.decay: plateau needs a dev set"),
    ("train-vocab-missing", [*TRAIN, *DATA, "--set", "vocab.path={W}/nope"],
     "{W}/nope: vocabulary not found"),
    ("train-vocab-garbage", [*TRAIN, *DATA, "--set", "vocab.path={W}/in.txt"],
     "{W}/in.txt: not a valid SentencePiece model"),
    ("train-not-model-dir", ["train", "--config", "{T}", "--model-dir", "{W}/notes", *DATA],
     "{W}/notes: directory is not empty and is not an nmt model directory"),
    ("train-other-model", ["train", "--config", "{T}", "--model-dir", "{M}", *DATA],
     "{M}: holds a model trained with another config"),
    ("train-damaged-model", ["train", "--config", "{T}", "--model-dir", "{D}/no-version", *DATA],
     "{D}/no-version/VERSION: missing"),
    # --- average
    ("average-no-last", ["average", "--model", "{M}"], "Missing option '--last'"),
    ("average-last-0", ["average", "--model", "{M}", "--last", "0"],
     "'--last': 0 is not in the range"),
    ("average-too-many", ["average", "--model", "{M}", "--last", "5"],
     "1 checkpoint(s), cannot average the last 5"),
    ("average-empty", ["average", "--model", "{W}/adir", "--last", "1"],
     "{W}/adir: not a model directory"),
    ("average-output-file", [*AVERAGE, "--output", "{W}/afile"], "'{W}/afile' is a file"),
    ("average-truncated", ["average", "--model", "{D}/truncated", "--last", "1", "--output",
                           "{W}/avg"], CORRUPT),
    # --- shortlist ({M} has none, and its config names no training data)
    ("shortlist-no-model", ["shortlist"], "Missing option '--model'"),
    ("shortlist-not-model", ["shortlist", "--model", "{W}/adir"],
     "{W}/adir: not a model directory"),
    ("shortlist-no-data", ["shortlist", "--model", "{M}"],
     "{M}: its config names no training data; give --source and --target"),
    ("shortlist-half-data", ["shortlist", "--model", "{M}", "--source", "{W}/in.txt"],
     "give --source and --target together"),
    ("shortlist-data-missing", ["shortlist", "--model", "{M}", "--source", "{W}/nope",
                                "--target", "{W}/in.txt"], "{W}/nope: file not found"),
    ("shortlist-top-k-0", ["shortlist", "--model", "{M}", "--top-k", "0"],
     "'--top-k': 0 is not in the range"),
    ("translate-shortlist-missing", [*TRANSLATE, "--shortlist"],
     "{M}: no shortlist (shortlist.npz) for --shortlist; make one with "
     "`nmt shortlist --model {M}`"),
    ("translate-shortlist-top-k-0", [*TRANSLATE, "--shortlist-top-k", "0"],
     "'--shortlist-top-k': 0 is not in the range"),
    ("evaluate-shortlist-missing", [*EVALUATE, "--shortlist-frequent", "5"],
     "{M}: no shortlist (shortlist.npz)"),
    ("export-shortlist-missing", ["export", "--model", "{M}", "--output", "{E}", "--shortlist"],
     "{M}: no shortlist (shortlist.npz)"),
]  # fmt: skip


def _fill(args: list[str], places: dict[str, str]) -> list[str]:
    return [a.format(**places) for a in args]


def _error_line(result) -> str:
    """The single `nmt: error:` line, last in the output, with no traceback."""
    lines = result.output.strip().splitlines()
    assert "Traceback" not in result.output, result.output
    errors = [line for line in lines if line.startswith("nmt: ")]
    assert errors == lines[-1:], result.output
    assert errors[0].startswith("nmt: error: "), result.output
    return errors[0]


@pytest.mark.parametrize("name, args, fragment", CASES)
def test_error_is_one_line_naming_the_problem_exit_2(places, name, args, fragment):
    result = CliRunner().invoke(cli, _fill(args, places))
    assert result.exit_code == 2, (result.output, result.exception)
    assert fragment.format(**places) in _error_line(result)


def test_every_command_has_error_cases():
    covered = set()
    for case in CASES:
        args = case.values[1] if hasattr(case, "marks") else case[1]
        covered.add(args[0])
    assert set(cli.commands) <= covered, set(cli.commands) - covered


def test_nothing_is_written_by_failed_commands(places):
    w = Path(places["W"])
    for name in ("new", "x", "export-new", "demo", "v1", "v2", "avg", "plots"):
        assert not (w / name).exists(), name
    assert sorted(p.name for p in (w / "export").iterdir()) == ["1"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["translate", "{W}/in.txt", "--model", "{W}/nope"], "CheckpointError"),
        (["train", "--config", "{W}/bad.yaml", "--model-dir", "{W}/new"], "ConfigError"),
        (["score", "{W}/in.txt", "{W}/nope.txt"], "DataError"),
    ],
)
def test_debug_shows_the_traceback(places, args, expected):
    result = CliRunner().invoke(cli, ["--debug", *_fill(args, places)])
    assert isinstance(result.exception, NmtError)
    assert type(result.exception).__name__ == expected
    assert result.exc_info is not None and result.exc_info[2] is not None  # the traceback
    assert "nmt: error:" not in result.output


def test_usage_error_with_debug_keeps_clicks_report(places):
    result = CliRunner().invoke(cli, ["--debug", "translate", "--model", places["M"]])
    assert result.exit_code == 2
    assert "Usage:" in result.output and "Missing argument 'FILE'" in result.output


def test_unexpected_exception_is_one_internal_error_line_exit_1(places, monkeypatch):
    import nmt.evaluation

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(nmt.evaluation, "score_files", broken)
    args = ["score", f"{places['W']}/in.txt", f"{places['W']}/in.txt"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "nmt: internal error: ZeroDivisionError: division by zero second line "
        "(run `nmt --debug ...` for the traceback and report it)"
    ]
    result = CliRunner().invoke(cli, ["--debug", *args])
    assert isinstance(result.exception, ZeroDivisionError)


def test_closed_stdout_ends_quietly(places):
    """`nmt score ... | head -c 0`: no traceback, no error line, exit 1 (click's EPIPE exit)."""
    w = places["W"]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from nmt.cli import cli; cli()", "score", "--json",
         f"{w}/data/train.src", f"{w}/data/train.tgt"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    proc.stdout.close()  # the reader went away before the command wrote
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert b"Traceback" not in stderr and b"nmt: error" not in stderr


def test_serve_on_a_busy_port_fails_before_loading_the_model(places, monkeypatch):
    import socket

    import nmt.serve

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded although the port is taken")

    monkeypatch.setattr(nmt.serve, "ModelServer", never)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = ["serve", "--export-dir", places["E"], "--host", "127.0.0.1", "--port", str(port)]
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert _error_line(result) == (
        f"nmt: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
