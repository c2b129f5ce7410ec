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
    made = run("shortlist", "--model", model, "--top-k", "20")
    assert made.exit_code == 0, made.output
    assert made.stdout.startswith(f"wrote {model / 'shortlist.npz'} (20 pairs, 20 targets")
    plain = run("translate", src, "--model", model, "--quiet")
    listed = run("translate", src, "--model", model, "--quiet", "--shortlist-top-k", "20",
                 "--shortlist-frequent", "1000")  # fmt: skip
    assert listed.exit_code == 0, listed.output
    assert listed.stdout == plain.stdout
    small = run("evaluate", "--model", model, "--src", src, "--ref", ref, "--json",
                "--shortlist", "--shortlist-top-k", "3", "--shortlist-frequent", "2")  # fmt: skip
    assert small.exit_code == 0, small.output
    assert json.loads(small.stdout)["bleu"]["score"] > 90  # digits: the table finds them
    too_many = run("translate", src, "--model", model, "--quiet", "--shortlist-top-k", "21")
    assert too_many.exit_code == 2 and "--top-k 21" in too_many.stderr
    not_a_model = run("shortlist", "--model", tmp_path)
    assert not_a_model.exit_code == 2 and "not a model directory" in not_a_model.stderr
    half = run("shortlist", "--model", model, "--source", src)
    assert half.exit_code == 2 and "--source and --target together" in half.stderr
