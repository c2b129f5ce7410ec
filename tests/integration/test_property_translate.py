"""Property-based tests (hypothesis) of `nmt translate` and the exported `serving_default`.

Inputs are arbitrary Unicode text stressed where text tools break: control characters
(NUL, ESC, DEL, vertical tab, form feed, carriage returns, the line and paragraph
separators U+2028/U+2029, NEL), emoji (with ZWJ sequences, flags, skin tones), right-to-left
text and direction marks, combining marks, lines of only spaces or tabs, very long lines,
a missing final newline. Properties:

- `nmt translate` (the CLI in process, file or stdin to file or stdout) exits 0 and writes
  exactly one output line per input line, by any reader's definition of a line
  (str.splitlines), as valid UTF-8; blank input lines give empty output lines;
- invalid UTF-8 anywhere is refused with one `nmt: error:` line naming FILE:LINE, exit 2,
  and a previous output file is left as it was;
- the exported signature returns one translation and one finite score per input, never
  raises, gives "" and 0 for inputs without pieces, and agrees with the Translator that
  `nmt translate` uses (same text, same score) on every input.

Uses the session's tiny model and export (tests/helpers/export.py `make_tiny_export`).
Example counts are bounded so that the file runs in well under a minute.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmt.cli import cli
from nmt.constants import SERVING_SIGNATURE
from tests.helpers.export import make_tiny_export

TRICKY = [
    "\x00",
    "\x1b[31m",
    "\x7f",
    "\t",
    "\x0b",
    "\x0c",
    "\r",
    "\x1c",
    "\x85",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\u200b",
    "\u200e",
    "\u200f",
    "\u202e",
    "\ufffd",
    "\U0001f600",
    "\U0001f469\u200d\U0001f469\u200d\U0001f467",
    "\U0001f1e9\U0001f1ea",
    "\U0001f44d\U0001f3fd",
    "שלום עולם",
    "مرحبا بالعالم",
    "e\u0301",
    "\u3000",
    "ein Hund läuft",
    "two men talk",
    " ",
]
CHARACTERS = st.characters(exclude_categories=("Cs",), exclude_characters="\n")
PIECE = st.one_of(st.sampled_from(TRICKY), st.text(CHARACTERS, max_size=6))
SHORT = st.lists(PIECE, max_size=8).map("".join)
LONG = st.tuples(st.sampled_from(TRICKY), st.integers(100, 3000)).map(lambda t: t[0] * t[1])
BLANK = st.tuples(st.sampled_from([" ", "\t"]), st.integers(1, 300)).map(lambda t: t[0] * t[1])
LINE = st.one_of(SHORT, SHORT, SHORT, LONG, BLANK)


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    return make_tiny_export(tmp_path_factory.getbasetemp())


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _expected_lines(data: bytes) -> int:
    """Lines as `nmt translate` reads them: split at b"\\n" only, a last line may lack it."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _input_lines(data: bytes) -> list[str]:
    text = data.decode("utf-8")
    lines = text.split("\n")
    if text.endswith("\n") or not text:
        lines = lines[:-1]
    return [line[:-1] if line.endswith("\r") else line for line in lines]


@settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    lines=st.lists(LINE, max_size=10),
    final_newline=st.booleans(),
    stdio=st.booleans(),
)
def test_cli_translate_writes_one_line_per_input_line(tiny_export, lines, final_newline, stdio):
    data = "\n".join(lines).encode("utf-8")
    if lines and final_newline:
        data += b"\n"
    with tempfile.TemporaryDirectory() as tmp:
        source, output = Path(tmp) / "in.txt", Path(tmp) / "out.txt"
        source.write_bytes(data)
        model = str(tiny_export.model_dir)
        if stdio:
            args = ["translate", "-", "--model", model, "--quiet"]
            result = CliRunner().invoke(cli, args, input=data)
            out = result.stdout_bytes
        else:
            args = ["translate", str(source), "-o", str(output), "--model", model, "--quiet"]
            result = CliRunner().invoke(cli, args)
            out = output.read_bytes() if output.exists() else b""
    assert result.exit_code == 0, (result.output[-2000:], result.exception)
    text = out.decode("utf-8")  # valid UTF-8
    expected = _expected_lines(data)
    assert text.count("\n") == expected and (not text or text.endswith("\n"))
    assert len(text.splitlines()) == expected  # no other character breaks a line
    for source_line, translation in zip(_input_lines(data), text.split("\n"), strict=False):
        if not source_line.strip(" \t"):
            assert translation == ""


@settings(max_examples=10, deadline=None, database=None)
@given(
    good=st.lists(SHORT, max_size=4),
    bad=st.binary(min_size=1, max_size=8).filter(lambda b: not _is_utf8(b)),
    position=st.integers(0, 4),
)
def test_cli_translate_refuses_invalid_utf8_naming_file_and_line(tiny_export, good, bad, position):
    lines = [line.encode("utf-8") for line in good]
    position = min(position, len(lines))
    lines.insert(position, bad.replace(b"\n", b""))
    data = b"\n".join(lines) + b"\n"
    first_bad = next(i for i, line in enumerate(data.split(b"\n")) if not _is_utf8(line)) + 1
    with tempfile.TemporaryDirectory() as tmp:
        source, output = Path(tmp) / "in.txt", Path(tmp) / "out.txt"
        source.write_bytes(data)
        output.write_bytes(b"previous\n")
        model = str(tiny_export.model_dir)
        args = ["translate", str(source), "-o", str(output), "--model", model, "--quiet"]
        result = CliRunner().invoke(cli, args)
        assert output.read_bytes() == b"previous\n"
        assert sorted(p.name for p in Path(tmp).iterdir()) == ["in.txt", "out.txt"]
    assert result.exit_code == 2, result.output
    lines_out = result.output.strip().splitlines()
    assert len(lines_out) == 1 and "Traceback" not in result.output
    assert lines_out[0].startswith(f"nmt: error: {source}:{first_bad}: invalid UTF-8")


@pytest.fixture(scope="module")
def served(tiny_export):
    """(the loaded export's text signature, the Translator `nmt translate` would use)."""
    from nmt.checkpoints import load_model
    from nmt.export import load_export
    from nmt.translator import Translator

    signature = load_export(tiny_export.version_dir).signatures[SERVING_SIGNATURE]
    loaded = load_model(tiny_export.model_dir)
    translator = Translator(loaded.model, loaded.vocab, loaded.config.decode, warn=lambda m: None)
    return signature, translator


@settings(max_examples=100, deadline=None, database=None)
@given(texts=st.lists(LINE, min_size=1, max_size=6))
def test_serving_signature_agrees_with_translate_on_any_text(served, texts):
    import tensorflow as tf

    signature, translator = served
    out = signature(text=tf.constant([t.encode("utf-8") for t in texts], tf.string))
    translations = [t.decode("utf-8") for t in out["translation"].numpy().tolist()]
    scores = [float(s) for s in out["score"].numpy()]
    assert len(translations) == len(scores) == len(texts)
    expected = [h[0] for h in translator.translate_hypotheses(texts)]
    assert translations == [h.text for h in expected]
    assert scores == pytest.approx([h.score for h in expected], abs=1e-4)
    for text, translation, score in zip(texts, translations, scores, strict=True):
        assert math.isfinite(score) and score <= 0.0
        if not text.strip(" \t"):
            assert (translation, score) == ("", 0.0)


@settings(max_examples=60, deadline=None, database=None)
@given(raw=st.lists(st.binary(max_size=64), min_size=1, max_size=6))
def test_serving_signature_takes_any_bytes(served, raw):
    """Clients can send any bytes ({"b64": ...}): never an exception, one output each."""
    import tensorflow as tf

    signature, _ = served
    out = signature(text=tf.constant(raw, tf.string))
    assert out["translation"].shape == (len(raw),) and out["score"].shape == (len(raw),)
    assert all(math.isfinite(float(s)) for s in out["score"].numpy())
