"""scripts/profile_search.py: the decoder FLOP count and a run on the tiny memorised model."""

from __future__ import annotations

import pytest

from nmt.config import ModelConfig
from tests.helpers import load_script


@pytest.fixture(scope="module")
def profile_search():
    return load_script("profile_search")


def test_decoder_step_flops_counts_every_matrix_product(profile_search):
    small_v1 = ModelConfig(embedding_dim=512, units=512, decoder_layers=2, input_feeding=True)
    want = (
        2 * 4 * 512 * (1024 + 512)  # first LSTM: [embedding, h~] and h
        + 2 * 4 * 512 * (512 + 512)  # second LSTM
        + 2 * 2 * 37 * 512  # scores and context over 37 positions
        + 2 * 1024 * 512  # h~ = tanh([c; h] W_c)
        + 2 * 512 * 8000  # output layer
    )
    assert profile_search.decoder_step_flops(small_v1, 8000, 37) == want == 19_802_112
    no_feed = ModelConfig(embedding_dim=256, units=512, decoder_layers=1, input_feeding=False)
    assert profile_search.decoder_step_flops(no_feed, 100, 1) == (
        2 * 4 * 512 * (256 + 512) + 2 * 2 * 512 + 2 * 1024 * 512 + 2 * 512 * 100
    )


def test_runs_on_a_model_and_reports_every_part(profile_search, tmp_path, tmp_path_factory, capsys):
    from tests.helpers.memorised import make_memorised_model

    memorised = make_memorised_model(tmp_path_factory.getbasetemp())
    src = tmp_path / "in.txt"
    src.write_text("".join(line + "\n" for line in memorised.sources), encoding="utf-8")
    argv = ["--model", str(memorised.model_dir), "--src", str(src), "--lines", "4"]
    assert profile_search.main([*argv, "--beam", "2", "--length", "3", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "4 sentences of in.txt" in out and "beam 2, 3 pieces each" in out
    parts = ("full beam search", "encoder", "3 decoder steps on 8 rows", "log-softmax", "search")
    for part in parts:
        assert f"| {part}" in out
    assert "GFLOP/s" in out


def test_bad_arguments_exit_2(profile_search, tmp_path, capsys):
    assert profile_search.main(["--model", str(tmp_path), "--src", str(tmp_path / "no")]) == 2
    assert "no: file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        profile_search.parse_args(["--model", "m", "--src", "s", "--beam", "0"])
    assert exc.value.code == 2


def test_runs_in_bfloat16_over_the_shortlist(profile_search, tmp_path, tmp_path_factory, capsys):
    import shutil

    from nmt.shortlist import make_shortlist
    from tests.helpers.memorised import make_memorised_model

    memorised = make_memorised_model(tmp_path_factory.getbasetemp())
    model = tmp_path / "model"
    shutil.copytree(memorised.model_dir, model)
    src = tmp_path / "in.txt"
    src.write_text("".join(line + "\n" for line in memorised.sources), encoding="utf-8")
    argv = ["--model", str(model), "--src", str(src), "--lines", "4", "--beam", "2"]
    argv += ["--length", "3", "--repeats", "1", "--shortlist"]
    assert profile_search.main(argv) == 2  # no table yet
    assert "no shortlist (shortlist.npz) for --shortlist" in capsys.readouterr().err
    make_shortlist(model)
    assert profile_search.main([*argv, "--precision", "mixed_bfloat16"]) == 0
    out = capsys.readouterr().out
    assert "over the shortlist (k=" in out and "precision mixed_bfloat16" in out
    assert "| 3 decoder steps on 8 rows" in out
