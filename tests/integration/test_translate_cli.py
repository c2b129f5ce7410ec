"""`nmt translate`, `nmt evaluate` and `nmt score` end to end on the session's memorised tiny
model (tests/helpers/memorised.py `make_memorised_model`): line preservation, order,
stdin/stdout, beam/n-best/scores/alignments/plots, checkpoints, errors, and BLEU."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from nmt.cli import cli
from tests.helpers.memorised import (
    MAX_SOURCE_LENGTH,
    PNG_SIGNATURE,
    make_translator,
    random_digits,
)


def run(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def translate(memorised, path, *options, input=None):
    """`nmt translate PATH --model M --quiet OPTIONS` -> (result, stdout lines)."""
    result = run(
        "translate", path, "--model", memorised.model_dir, "--quiet", *options, input=input
    )
    assert result.exit_code == 0, result.output
    return result, result.stdout.split("\n")[:-1] if result.stdout else []


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# === One output line per input line ===

AWKWARD = [
    "{0}",
    "",
    "   ",
    "{1}\r",  # a CRLF line ending
    "{2}\fx",  # form feed inside a line
    "a\u2028{3}",  # LINE SEPARATOR
    "{4}\x85b",  # NEXT LINE (U+0085)
    "\x00{5}\x00",  # NUL bytes
    "😀 {6} 🎉",
    "שלום עולם {7}",  # right-to-left script
    "\t",
    "{8}",
]


def awkward_lines(memorised) -> list[str]:
    return [line.format(*memorised.sources) for line in AWKWARD]


def test_every_input_line_gives_exactly_one_output_line(memorised, translator, tmp_path):
    lines = awkward_lines(memorised)
    src = write(tmp_path / "in.txt", "\n".join(lines))  # no final newline
    out = tmp_path / "out.txt"
    result, _ = translate(memorised, src, "-o", out)
    assert result.stdout == ""
    text = out.read_text(encoding="utf-8")
    assert text.endswith("\n") and text.count("\n") == len(lines)
    got = text.split("\n")[:-1]
    assert got[0] == memorised.references[0] and got[-1] == memorised.references[8]
    for line, translation in zip(lines, got, strict=True):
        assert (translation == "") == (line.strip() == "")
    # The same translations as the library gives for the lines as read (CR dropped).
    assert got == translator.translate([line.removesuffix("\r") for line in lines])


def test_empty_file_gives_an_empty_output_file(memorised, tmp_path):
    out = tmp_path / "out.txt"
    translate(memorised, write(tmp_path / "in.txt", b""), "-o", out)
    assert out.read_bytes() == b""
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's 0o600
    out.chmod(0o640)  # replacing a file keeps its permissions
    translate(memorised, write(tmp_path / "blank.txt", b"\n\n  \n"), "-o", out)
    assert out.read_text() == "\n\n\n" and out.stat().st_mode & 0o777 == 0o640


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_very_long_line_is_truncated_with_a_warning_naming_it(memorised, loaded, tmp_path):
    long_line = " ".join(["5 3 1 4 2"] * 1000)  # 5,000 tokens
    pieces = len(loaded.vocab.processor("source").encode(long_line))
    lines = [memorised.sources[0], long_line, "", memorised.sources[2]]
    src = write(tmp_path / "in.txt", "".join(line + "\n" for line in lines))
    result, got = translate(memorised, src)
    assert len(got) == 4 and got[1] != "" and got[2] == ""
    assert got[0] == memorised.references[0] and got[3] == memorised.references[2]
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [
        f"nmt: warning: {src}:2: {pieces} pieces, translating only the first "
        f"{MAX_SOURCE_LENGTH} (decode.max_source_length)"
    ]


def test_invalid_utf8_exits_2_and_writes_nothing(memorised, tmp_path):
    src = write(tmp_path / "in.txt", b"1 2 3\n4 5 6\n7 \xe2\x82 8\n9\n")
    out = tmp_path / "out.txt"
    result = run("translate", src, "--model", memorised.model_dir, "-o", out)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"nmt: error: {src}:3: invalid UTF-8 (byte 0xe2 at offset 2 of the line)"
    ]
    assert not out.exists()
    out.write_text("previous\n")
    result = run("translate", src, "--model", memorised.model_dir, "-o", out)
    assert result.exit_code == 2 and out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt"]  # no temp file
    result = run("translate", "-", "--model", memorised.model_dir, input=b"1 2\n\xff\n")
    assert result.exit_code == 2
    assert "nmt: error: <stdin>:2: invalid UTF-8" in result.stderr


# === Order, stdin/stdout, batching ===


def test_order_restored_and_stdin_stdout(memorised, translator, tmp_path):
    lines = random_digits(8, seed=11) + memorised.sources[:12]
    random.Random(2).shuffle(lines)  # random length order
    data = "".join(line + "\n" for line in lines)
    _, from_stdin = translate(memorised, "-", "--batch-tokens", "20", input=data.encode())
    assert from_stdin == [translator.translate([line])[0] for line in lines]  # each alone
    references = dict(zip(memorised.sources, memorised.references, strict=True))
    for line, got in zip(lines, from_stdin, strict=True):
        if line in references:
            assert got == references[line]
    out = tmp_path / "out.txt"
    translate(memorised, write(tmp_path / "in.txt", data), "-o", out, "--batch-tokens", "4096")
    assert out.read_text().split("\n")[:-1] == from_stdin


def test_translate_file_equals_translator(memorised, translator, tmp_path):
    from nmt.translation_job import translate_file

    lines = random_digits(25, seed=12) + ["", memorised.sources[5]]
    src = write(tmp_path / "in.txt", "".join(line + "\n" for line in lines))
    out = tmp_path / "out.txt"
    report = translate_file(memorised.model_dir, str(src), str(out), progress=False)
    assert report.lines == len(lines)
    assert out.read_text().split("\n")[:-1] == translator.translate(lines)


# === Search options ===


def test_beam_1_is_greedy(memorised, translator, tmp_path):
    lines = random_digits(12, seed=13)
    src = write(tmp_path / "in.txt", "".join(line + "\n" for line in lines))
    _, got = translate(memorised, src, "--beam", "1", "--with-scores")
    hyps = translator.translate_hypotheses(lines, beam_size=1)  # greedy_search
    assert got == [f"{h[0].text} ||| {h[0].score:.6f}" for h in hyps]


def test_min_length_option_equals_translator_and_is_checked(memorised, loaded, tmp_path):
    lines = random_digits(6, seed=17, lengths=(1, 3))
    src = write(tmp_path / "in.txt", "".join(line + "\n" for line in lines))
    _, got = translate(memorised, src, "--min-length", "9", "--with-scores")
    longer = make_translator(loaded, min_length=9)[0]
    hyps = longer.translate_hypotheses(lines)
    assert got == [f"{h[0].text} ||| {h[0].score:.6f}" for h in hyps]
    assert all(h[0].length >= 9 for h in hyps)
    _, plain = translate(memorised, src, "--with-scores")
    assert plain != got  # the memorised outputs are shorter than 9 pieces
    bad = run("translate", src, "--model", memorised.model_dir, "--min-length", "-1")
    assert bad.exit_code == 2 and "--min-length" in bad.output


def test_n_best_format_and_scores(memorised, tmp_path):
    lines = [memorised.sources[3], "", *random_digits(4, seed=14)]
    src = write(tmp_path / "in.txt", "".join(line + "\n" for line in lines))
    _, got = translate(memorised, src, "--beam", "3", "--n-best", "3")
    assert len(got) == 3 * len(lines)
    _, best = translate(memorised, src, "--beam", "3", "--with-scores")
    for i in range(len(lines)):
        group = [line.split(" ||| ") for line in got[3 * i : 3 * i + 3]]
        assert all(len(fields) == 3 and fields[0] == str(i) for fields in group)
        scores = [float(fields[2]) for fields in group]
        assert scores == sorted(scores, reverse=True)
        assert " ||| ".join(group[0][1:]) == best[i]  # the 1-best with its score
        assert all(fields[1] for fields in group) == bool(lines[i])  # empty for a blank line
    assert got[0].startswith(f"0 ||| {memorised.references[3]} ||| ")
    result = run("translate", src, "--model", memorised.model_dir, "--beam", "2", "--n-best", "3")
    assert result.exit_code == 2
    assert "nmt: error: --n-best 3 cannot exceed the beam size 2" in result.stderr


def test_alignments_are_pharaoh_pairs_within_bounds(memorised, loaded, translator, tmp_path):
    lines = [*memorised.sources[:6], "", "7", *random_digits(6, seed=15)]
    src = write(tmp_path / "in.txt", "".join(line + "\n" for line in lines))
    _, got = translate(memorised, src, "--alignments")
    plain = translator.translate(lines)
    source_sp = loaded.vocab.processor("source")
    target_sp = loaded.vocab.processor("target")
    assert len(got) == len(lines)
    for line, output, text in zip(lines, got, plain, strict=True):
        translation, alignment = output.split(" ||| ")
        assert translation == text
        if not line:
            assert alignment == ""
            continue
        assert re.fullmatch(r"\d+-\d+( \d+-\d+)*", alignment), alignment
        pairs = [tuple(map(int, pair.split("-"))) for pair in alignment.split()]
        n_source = len(source_sp.encode(line))
        assert all(0 <= s < n_source for s, _ in pairs)
        targets = [t for _, t in pairs]
        assert targets == list(range(len(targets)))  # one source per target piece
        assert target_sp.decode(target_sp.encode(translation)) == translation


def test_plot_attention_writes_pngs(memorised, tmp_path):
    lines = [memorised.sources[0], memorised.sources[1], "", memorised.sources[2]]
    src = write(tmp_path / "in.txt", "".join(line + "\n" for line in lines))
    plots = tmp_path / "plots"
    result, got = translate(memorised, src, "--plot-attention", plots, "--plot-lines", "1,2,3,9")
    assert got == [*memorised.references[:2], "", memorised.references[2]]
    assert sorted(p.name for p in plots.iterdir()) == ["attention_line1.png", "attention_line2.png"]
    for png in plots.iterdir():
        data = png.read_bytes()
        assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
        assert int.from_bytes(data[16:20], "big") > 0 and int.from_bytes(data[20:24], "big") > 0
    assert f"nmt: warning: {src}:3: empty line, no attention plot" in result.stderr
    assert f"nmt: warning: {src} has 4 lines: nothing to plot for line(s) [9]" in result.stderr
    result = run("translate", src, "--model", memorised.model_dir, "--plot-lines", "0,1")
    assert result.exit_code == 2 and "line numbers start at 1" in result.output


# === Checkpoints and errors ===


def test_checkpoint_best_last_and_path(memorised, tmp_path):
    from nmt.checkpoints import load_model
    from nmt.translator import Translator

    lines = [*memorised.sources[:4], *random_digits(4, seed=16)]
    src = write(tmp_path / "in.txt", "".join(line + "\n" for line in lines))
    model_dir = memorised.model_dir
    ckpt_100 = model_dir / "checkpoints" / "ckpt-100"
    outputs = {}
    for checkpoint, expected_step in ((None, 300), ("last", 400), (ckpt_100, 100)):
        options = ["--checkpoint", checkpoint] if checkpoint else []  # default: best
        _, outputs[checkpoint] = translate(memorised, src, *options, "--beam", "1", "--with-scores")
        loaded = load_model(model_dir, str(checkpoint or "best"))
        assert loaded.step == expected_step
        translator = Translator(loaded.model, loaded.vocab, loaded.config.decode)
        hyps = translator.translate_hypotheses(lines, beam_size=1)
        assert outputs[checkpoint] == [f"{h[0].text} ||| {h[0].score:.6f}" for h in hyps]
    assert outputs[None] != outputs["last"] != outputs[ckpt_100]
    result = run("translate", src, "--model", model_dir, "--checkpoint", tmp_path / "ckpt-7")
    assert result.exit_code == 2 and "ckpt-7: checkpoint not found" in result.stderr


def test_missing_model_or_input_exits_2_with_a_clear_message(memorised, tmp_path):
    src = write(tmp_path / "in.txt", "1 2 3\n")
    out = tmp_path / "out.txt"
    missing = tmp_path / "no-model"
    result = run("translate", src, "--model", missing, "-o", out)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"nmt: error: {missing}: model directory not found"]
    assert not out.exists()
    result = run("translate", src, "--model", tmp_path, "-o", out)
    assert result.exit_code == 2 and "not a model directory" in result.stderr
    result = run("translate", tmp_path / "nope.txt", "--model", memorised.model_dir)
    assert result.exit_code == 2 and "nope.txt: file not found" in result.stderr
    result = run("translate", src, "--model", memorised.model_dir, "-o", tmp_path / "d" / "o")
    assert result.exit_code == 2
    assert f"output directory {tmp_path / 'd'} not found" in result.stderr


# === Ensembles ===

TINY_VOCAB = Path(__file__).resolve().parents[1] / "data" / "tiny_joint.model"


def scored(lines: list[str]) -> list[tuple[str, float]]:
    """`index ||| text ||| score` lines -> (index ||| text, score)."""
    return [(line.rsplit(" ||| ", 1)[0], float(line.rsplit(" ||| ", 1)[1])) for line in lines]


def test_ensemble_translate_and_evaluate(memorised, tmp_path):
    lines = [*memorised.sources[:6], *random_digits(6, seed=31)]
    src = write(tmp_path / "in.txt", "".join(line + "\n" for line in lines))
    options = ["--beam", "3", "--n-best", "3"]
    _, alone = translate(memorised, src, *options)
    _, twice = translate(memorised, src, "--model", memorised.model_dir, *options)
    assert len(twice) == 3 * len(lines)
    assert [t for t, _ in scored(twice)] == [t for t, _ in scored(alone)]
    np.testing.assert_allclose([s for _, s in scored(twice)], [s for _, s in scored(alone)],
                               atol=2e-6)  # fmt: skip

    # Two checkpoints of one model: both memorised the pairs, so their ensemble did too.
    pair = ["--checkpoint", "best", "--checkpoint", "last"]
    _, got = translate(memorised, src, *pair, "--alignments")
    assert [line.split(" ||| ")[0] for line in got[:6]] == memorised.references[:6]
    assert all(re.fullmatch(r"(\d+-\d+ ?)+", line.split(" ||| ")[1]) for line in got[:6])
    ref = write(tmp_path / "ref.txt", "".join(t + "\n" for t in memorised.references))
    src = write(tmp_path / "src.txt", "".join(s + "\n" for s in memorised.sources))
    result = run("evaluate", "--model", memorised.model_dir, *pair, "--src", src, "--ref", ref,
                 "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["bleu"]["score"] == pytest.approx(100.0)


def test_ensemble_errors_exit_2_with_one_line(memorised, tmp_path):
    import shutil

    from nmt.vocab import Vocab

    src = write(tmp_path / "in.txt", "1 2 3\n")
    out = tmp_path / "out.txt"
    other = tmp_path / "other-vocab"
    shutil.copytree(memorised.model_dir, other)
    (other / "joint.model").write_bytes(TINY_VOCAB.read_bytes())
    size = Vocab.load(memorised.model_dir).target_size
    message = (
        f"nmt: error: {other}: its target vocabulary differs from that of "
        f"{memorised.model_dir} (256 pieces, not {size}); ensemble members must share the "
        "target SentencePiece model"
    )
    models = ["--model", memorised.model_dir, "--model", other]
    result = run("translate", src, *models, "-o", out)
    assert result.exit_code == 2 and result.stderr.splitlines() == [message]
    assert not out.exists()
    ref = write(tmp_path / "ref.txt", "3 2 1\n")
    result = run("evaluate", *models, "--src", src, "--ref", ref)
    assert result.exit_code == 2 and result.stderr.splitlines() == [message]

    missing = tmp_path / "no-model"
    result = run("translate", src, "--model", memorised.model_dir, "--model", missing)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"nmt: error: {missing}: model directory not found"]
    result = run("translate", src, *models, "--checkpoint", "best", "--checkpoint", "last",
                 "--checkpoint", "best")  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "nmt: error: 2 --model but 3 --checkpoint: give one --checkpoint for every model, "
        "or one per --model"
    ]
    result = run("translate", src, "--model", memorised.model_dir, "--checkpoint", "best",
                 "--checkpoint", tmp_path / "ckpt-7")  # fmt: skip
    assert result.exit_code == 2 and "ckpt-7: checkpoint not found" in result.stderr


# === evaluate and score ===


def test_evaluate_memorised_pairs_bleu_100(memorised, tmp_path):
    src = write(tmp_path / "src.txt", "".join(s + "\n" for s in memorised.sources))
    ref = write(tmp_path / "ref.txt", "".join(t + "\n" for t in memorised.references))
    hyp = tmp_path / "hyp.txt"
    result = run(
        "evaluate", "--model", memorised.model_dir, "--src", src, "--ref", ref, "--json",
        "--hyp-out", hyp,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert set(scores) == {"bleu", "chrf"}
    assert scores["bleu"]["score"] == pytest.approx(100.0)
    assert scores["chrf"]["score"] == pytest.approx(100.0)
    assert scores["bleu"]["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp")
    assert hyp.read_text() == ref.read_text()

    result = run("score", hyp, ref, "--metrics", "bleu,ter", "--json")
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["bleu"]["score"] == pytest.approx(100.0)
    assert scores["ter"]["score"] == pytest.approx(0.0)

    # A wrong reference lowers BLEU: the score depends on the translations.
    wrong = write(tmp_path / "wrong.txt", "".join(s + "\n" for s in memorised.sources))
    result = run("evaluate", "--model", memorised.model_dir, "--src", src, "--ref", wrong, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["bleu"]["score"] < 50


def test_evaluate_and_score_line_count_mismatch_exit_2(memorised, tmp_path):
    src = write(tmp_path / "src.txt", "".join(s + "\n" for s in memorised.sources))
    ref = write(tmp_path / "ref.txt", "".join(t + "\n" for t in memorised.references[:-1]))
    result = run("evaluate", "--model", memorised.model_dir, "--src", src, "--ref", ref)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"nmt: error: {src} has {len(memorised.sources)} lines but {ref} has "
        f"{len(memorised.sources) - 1}"
    ]
    result = run("score", src, ref)
    assert result.exit_code == 2
    assert f"{src} has 20 lines but {ref} has 19" in result.stderr
    result = run(
        "evaluate", "--model", memorised.model_dir, "--src", src, "--ref", ref, "--metrics", "nope"
    )
    assert result.exit_code == 2 and "unknown metric 'nope'" in result.output


def test_precision_option_decodes_in_bfloat16_with_the_same_translations(memorised, tmp_path):
    """bfloat16 runs on any CPU (slowly without bf16 units); on the memorised pairs its
    translations equal float32's, and evaluate still scores 100."""
    from nmt.checkpoints import load_model

    bf16 = load_model(memorised.model_dir, precision="mixed_bfloat16")
    assert bf16.model.compute_dtype == "bfloat16"
    assert bf16.model.decoder.output_projection.compute_dtype == "bfloat16"
    assert all(w.dtype == "float32" for w in bf16.model.weights)  # weights stay float32
    src = write(tmp_path / "src.txt", "".join(s + "\n" for s in memorised.sources))
    _, plain = translate(memorised, src)
    _, half = translate(memorised, src, "--precision", "mixed_bfloat16")
    assert half == plain == list(memorised.references)
    ref = write(tmp_path / "ref.txt", "".join(t + "\n" for t in memorised.references))
    result = run(
        "evaluate", "--model", memorised.model_dir, "--src", src, "--ref", ref, "--json",
        "--precision", "mixed_bfloat16",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["bleu"]["score"] == pytest.approx(100.0)
    result = run("translate", src, "--model", memorised.model_dir, "--precision", "half")
    assert result.exit_code == 2 and "--precision" in result.output
