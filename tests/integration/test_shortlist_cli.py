"""`nmt shortlist`, then translate and evaluate with the shortlist, on the session's memorised
model (tests/helpers/memorised.py)."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from nmt.cli import cli
from tests.helpers.memorised import make_memorised_model


@pytest.fixture(scope="module")
def memorised_copy(tmp_path_factory):
    """A copy of the session's memorised model (whose config names its training data)."""
    memorised = make_memorised_model(tmp_path_factory.getbasetemp())
    copy = tmp_path_factory.mktemp("memorised") / "model"
    shutil.copytree(memorised.model_dir, copy)
    return memorised, copy


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_command_line_shortlist_end_to_end(memorised_copy, tmp_path):
    memorised, model = memorised_copy
    src = tmp_path / "src.txt"
    src.write_text("\n".join(memorised.sources) + "\n", encoding="utf-8")
    ref = tmp_path / "ref.txt"
    ref.write_text("\n".join(memorised.references) + "\n", encoding="utf-8")

    missing = run("translate", src, "--model", model, "--quiet", "--shortlist")
    assert missing.exit_code == 2
    assert missing.stderr.strip().splitlines() == [
        f"nmt: error: {model}: no shortlist (shortlist.npz) for --shortlist; make one with "
        f"`nmt shortlist --model {model}`"
    ]
    made = run("shortlist", "--model", model, "--top-k", "10")
    assert made.exit_code == 0, made.output
    assert made.stdout.startswith(f"wrote {model / 'shortlist.npz'} (20 pairs, 10 targets")
    plain = run("translate", src, "--model", model, "--quiet")
    listed = run("translate", src, "--model", model, "--quiet", "--shortlist-top-k", "10",
                 "--shortlist-frequent", "1000")  # fmt: skip
    assert listed.exit_code == 0, listed.output
    assert listed.stdout == plain.stdout
    small = run("evaluate", "--model", model, "--src", src, "--ref", ref, "--json",
                "--shortlist", "--shortlist-top-k", "3", "--shortlist-frequent", "2")  # fmt: skip
    assert small.exit_code == 0, small.output
    assert json.loads(small.stdout)["bleu"]["score"] > 90  # digits: the table finds them
    too_many = run("translate", src, "--model", model, "--quiet", "--shortlist-top-k", "11")
    assert too_many.exit_code == 2 and "--top-k 11" in too_many.stderr
    not_a_model = run("shortlist", "--model", tmp_path)
    assert not_a_model.exit_code == 2 and "not a model directory" in not_a_model.stderr
    half = run("shortlist", "--model", model, "--source", src)
    assert half.exit_code == 2 and "--source and --target together" in half.stderr


def test_a_top_k_beyond_the_vocabulary_stores_every_target_and_decodes_any_k(
    memorised_copy, tmp_path
):
    memorised, model = memorised_copy
    src = tmp_path / "src.txt"
    src.write_text("\n".join(memorised.sources) + "\n", encoding="utf-8")
    made = run("shortlist", "--model", model, "--top-k", "1000000000")
    assert made.exit_code == 0, made.output
    assert "(20 pairs, 16 targets per source" in made.stdout  # the 16-piece vocabulary
    plain = run("translate", src, "--model", model, "--quiet")
    wide = run("translate", src, "--model", model, "--quiet", "--shortlist-top-k", "500",
               "--shortlist-frequent", "1000")  # fmt: skip
    assert wide.exit_code == 0, wide.output
    assert wide.stdout == plain.stdout


def test_shortlist_refuses_one_stream_twice_a_directory_output_and_uneven_files(
    memorised_copy, tmp_path
):
    memorised, model = memorised_copy
    src, tgt = tmp_path / "src.txt", tmp_path / "tgt.txt"
    src.write_text("\n".join(memorised.sources) + "\n", encoding="utf-8")
    tgt.write_text("\n".join(memorised.references[:-1]) + "\n", encoding="utf-8")
    pairs = zip(memorised.sources, memorised.references, strict=True)
    lines = "".join(f"{s}\n{t}\n" for s, t in pairs)
    twice = CliRunner().invoke(cli, ["shortlist", "--model", str(model), "--source", "-",
                                     "--target", "-"], input=lines)  # fmt: skip
    assert twice.exit_code == 2
    assert twice.stderr.strip().splitlines() == [
        "nmt: error: --source - and --target - both read standard input, so each would get "
        "only some of its lines; give at most one of them as -"
    ]
    uneven = run("shortlist", "--model", model, "--source", src, "--target", tgt)
    assert uneven.exit_code == 2
    assert f"{tgt} ends at line 19 but {src} goes on (line 20)" in uneven.stderr
    uneven = run("shortlist", "--model", model, "--source", tgt, "--target", src)
    assert f"{tgt} ends at line 19 but {src} goes on (line 20)" in uneven.stderr
    table = model / "shortlist.npz"
    table.unlink(missing_ok=True)
    table.mkdir()
    blocked = run("shortlist", "--model", model)
    table.rmdir()
    assert blocked.exit_code == 2
    assert blocked.stderr.strip().splitlines() == [
        f"nmt: error: {table}: is a directory, expected an output file"
    ]
    assert "reading" not in blocked.stderr  # refused before any work


@pytest.mark.parametrize("damage", ["empty", "cut"])
def test_a_damaged_shortlist_file_is_a_one_line_error(memorised_copy, tmp_path, damage):
    memorised, model = memorised_copy
    made = run("shortlist", "--model", model, "--top-k", "10")
    assert made.exit_code == 0, made.output
    table = model / "shortlist.npz"
    data = table.read_bytes()
    table.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    src = tmp_path / "src.txt"
    src.write_text(memorised.sources[0] + "\n", encoding="utf-8")
    result = run("translate", src, "--model", model, "--quiet", "--shortlist")
    table.write_bytes(data)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"nmt: error: {table}: cannot read the shortlist"
    )
