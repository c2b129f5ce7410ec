"""Bad inputs found while hunting for the kind of issue 13 (see RELIABILITY.md, "Found by
hunting"), each through the CLI: what used to lose data, hang or name the wrong thing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from nmt.cli import cli

REPO = Path(__file__).resolve().parents[2]


def invoke(args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*")
            if p.is_file()}  # fmt: skip


@pytest.fixture
def model_copy(tiny_model, tmp_path) -> Path:
    shutil.copytree(tiny_model, tmp_path / "model")
    return tmp_path / "model"


@pytest.mark.parametrize("where", ["model", "checkpoints", "best", "parent", "other"])
def test_average_never_replaces_a_directory_it_did_not_write(where, model_copy, tmp_path):
    """`--output MODEL` used to rename the model away and delete it (and `--output ~` the
    home directory); only a new directory or an earlier average is replaced."""
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine\n")
    output = {"model": model_copy, "checkpoints": model_copy / "checkpoints",
              "best": model_copy / "best", "parent": tmp_path,
              "other": tmp_path / "other"}[where]  # fmt: skip
    before = snapshot(tmp_path)
    result = invoke(["average", "--model", model_copy, "--last", "1", "--output", output])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"nmt: error: --output {output}: ")
    assert snapshot(tmp_path) == before


def test_train_uses_an_existing_empty_directory_in_place(tmp_path, corpus):
    """It used to be deleted and made again (its mode lost; a mount point could not be)."""
    model = tmp_path / "model"
    model.mkdir(mode=0o750)
    model.chmod(0o750)
    inode = model.stat().st_ino
    data = tmp_path / "data"
    sets = [f"data.train_source={data / 'train.src'}", f"data.train_target={data / 'train.tgt'}",
            "train.max_steps=1", "train.checkpoint_every=1"]  # fmt: skip
    result = invoke(["train", "--config", REPO / "configs" / "tiny.yaml", "--model-dir", model,
                     *[a for s in sets for a in ("--set", s)]])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert model.stat().st_ino == inode and (model.stat().st_mode & 0o777) == 0o750
    assert (model / "checkpoints" / "ckpt-1.index").exists()
    assert sorted(p.name for p in model.iterdir() if p.name.startswith(".")) == []


def test_sigterm_during_translate_leaves_no_temporary_and_keeps_the_output(
    tiny_model, tmp_path, monkeypatch
):
    """SIGTERM used to kill `nmt translate -o` outright, leaving `.out.txt.*` behind."""
    from nmt import translator

    src = tmp_path / "in.txt"
    src.write_text("ein Hund\n" * 10, encoding="utf-8")
    out = tmp_path / "out.txt"
    out.write_bytes(b"previous\n")
    real = translator.Translator.translate_encoded

    def slow(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(translator.Translator, "translate_encoded", slow)
    result = invoke(["translate", src, "--model", tiny_model, "-o", out, "--quiet"])
    assert result.exit_code == 143, result.output
    assert result.output.strip().endswith("nmt: interrupted (SIGTERM)")
    assert out.read_bytes() == b"previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt"]


def test_stdin_redirected_from_the_output_is_refused(tiny_model, tmp_path):
    """`nmt translate - -o f < f`: the input is the output file."""
    src = tmp_path / "in.txt"
    src.write_text("ein Hund\n", encoding="utf-8")
    with open(src, "rb") as stdin:
        done = subprocess.run(
            [sys.executable, "-m", "nmt", "translate", "-", "-o", str(src), "--model",
             str(tiny_model)],
            stdin=stdin, capture_output=True, text=True, timeout=300,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"nmt: error: -o {src}: is the same file as the input -" in done.stderr
    assert src.read_text(encoding="utf-8") == "ein Hund\n"


def test_evaluate_refuses_hyp_out_equal_to_ref(tiny_model, tmp_path):
    ref = tmp_path / "ref.txt"
    ref.write_text("ein Hund\n", encoding="utf-8")
    result = invoke(["evaluate", "--model", tiny_model, "--src", ref, "--ref", ref,
                     "--hyp-out", ref])  # fmt: skip
    assert result.exit_code == 2
    assert f"--hyp-out {ref}: is the same file as the input --src {ref}" in result.output
    assert ref.read_text(encoding="utf-8") == "ein Hund\n"


def test_export_into_a_read_only_directory_fails_before_loading(readonly_dir, tiny_model):
    result = invoke(["export", "--model", tiny_model, "--output", readonly_dir / "export"])
    assert result.exit_code == 2
    assert result.output.startswith(f"nmt: error: --output {readonly_dir / 'export'}: cannot "
                                    f"write in {readonly_dir}")  # fmt: skip


def test_score_two_empty_files_and_one_empty(tmp_path):
    (tmp_path / "a").write_bytes(b"")
    (tmp_path / "b").write_bytes(b"x\n")
    result = invoke(["score", tmp_path / "a", tmp_path / "a", "--metrics", "bleu,chrf,ter"])
    assert result.exit_code == 0 and "BLEU = 0.00" in result.output, result.output
    result = invoke(["score", tmp_path / "a", tmp_path / "b"])
    assert result.exit_code == 2
    assert result.output == f"nmt: error: {tmp_path / 'a'} has 0 lines but {tmp_path / 'b'} has 1\n"
