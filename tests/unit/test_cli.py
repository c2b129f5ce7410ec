"""The CLI shell: version, error exit codes (start-up without TensorFlow is checked in a fresh
process by tests/integration/test_fresh_process.py)."""

import json

from click.testing import CliRunner

from nmt import __version__
from nmt.cli import cli


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_score_command_json_and_errors(tmp_path):
    h, r = tmp_path / "h.txt", tmp_path / "r.txt"
    h.write_text("a b c d\n")
    r.write_text("a b c d\n")
    result = CliRunner().invoke(cli, ["score", str(h), str(r), "--json", "--metrics", "bleu"])
    assert result.exit_code == 0, result.output
    assert round(json.loads(result.output)["bleu"]["score"], 6) == 100.0
    h.write_text("A B C D\n")
    for flag, expected in (([], 0.0), (["--lowercase"], 100.0), (["-lc"], 100.0)):
        result = CliRunner().invoke(cli, ["score", str(h), str(r), "--json", *flag])
        assert result.exit_code == 0, result.output
        assert round(json.loads(result.output)["bleu"]["score"], 6) == expected
    h.write_text("a b c d\n")

    result = CliRunner().invoke(cli, ["score", str(h), str(tmp_path / "missing.txt")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"nmt: error: {tmp_path / 'missing.txt'}: file not found"
    ]

    result = CliRunner().invoke(cli, ["score", str(h), str(r), "--metrics", "bleu,rouge"])
    assert result.exit_code == 2 and "unknown metric 'rouge'" in result.output


def test_score_evaluate_and_vocab_refuse_standard_input_twice(tmp_path):
    result = CliRunner().invoke(cli, ["score", "-", "-"], input="a b\na b\n")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "nmt: error: HYP - and REF - both read standard input, so each would get only some "
        "of its lines; give at most one of them as -"
    ]
    # refused before the model is looked at: the directory does not even exist
    result = CliRunner().invoke(cli, ["evaluate", "--model", str(tmp_path / "none"), "--src",
                                      "-", "--ref", "-"], input="a\nb\n")  # fmt: skip
    assert result.exit_code == 2
    assert "--src - and --ref - both read standard input" in result.output
    output = tmp_path / "vocab"
    result = CliRunner().invoke(cli, ["vocab", "--source", "-", "--target", "-", "--output",
                                      str(output), "--size", "8"], input="a b\nc d\n")  # fmt: skip
    assert result.exit_code == 2 and not output.exists()
    assert "--source - and --target - both read standard input" in result.output


def test_debug_flag_shows_traceback(tmp_path):
    h = tmp_path / "h.txt"
    h.write_text("x\n")
    result = CliRunner().invoke(cli, ["--debug", "score", str(h), str(tmp_path / "nope")])
    assert result.exit_code != 0 and result.exception is not None
