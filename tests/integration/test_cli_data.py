"""`nmt demo-data` and `nmt vocab` through the CLI, then the pipeline on what they wrote."""

import gzip
import re
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from nmt.cli import cli
from nmt.config import DataConfig, VocabConfig
from nmt.constants import JOINT_SPM, SOURCE_SPM, TARGET_SPM


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    result = run("demo-data", "--output", str(out), "--seed", "9", "--train", "600",
                 "--dev", "40", "--test", "40")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"{out / 'train.en'} (600 lines)" in result.output
    return out


def test_demo_data_is_reproducible_through_the_cli(demo, tmp_path):
    result = run("demo-data", "--output", str(tmp_path), "--seed", "9", "--train", "600",
                 "--dev", "40", "--test", "40")  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in ("train.en", "train.de", "dev.en", "dev.de", "test.en", "test.de"):
        assert (tmp_path / name).read_bytes() == (demo / name).read_bytes()
    bad = run("demo-data", "--output", str(tmp_path / "x"), "--train", "-5")
    assert bad.exit_code == 2 and "--train" in bad.output


def test_vocab_command_then_pipeline_round_trip(demo, tmp_path):
    out = tmp_path / "vocab"
    result = run("vocab", "--source", str(demo / "train.en"), "--target", str(demo / "train.de"),
                 "--output", str(out), "--size", "200", "--seed", "3")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"wrote {out / JOINT_SPM} (200 pieces, unigram, seed 3)" in result.output

    from nmt.data import PipelineStats, make_eval_dataset, make_training_dataset
    from nmt.vocab import Vocab

    vocab = Vocab.load(out)
    config = DataConfig(max_length=100, batch_tokens=512, bucket_width=4)
    stats = PipelineStats()
    dev = make_eval_dataset(demo / "dev.en", demo / "dev.de", vocab, config, stats=stats)
    lines = []
    for (source, _), target_out in dev:
        lines += zip(vocab.decode_source(source), vocab.decode_target(target_out), strict=True)
    expected = zip(
        (demo / "dev.en").read_text(encoding="utf-8").splitlines(),
        (demo / "dev.de").read_text(encoding="utf-8").splitlines(),
        strict=True,
    )
    assert Counter(lines) == Counter(expected)
    train = make_training_dataset(demo / "train.en", demo / "train.de", vocab, config, seed=1)
    (source, target_in), target_out = next(iter(train))
    assert source.shape[0] * max(source.shape[1], target_in.shape[1]) <= 512


def test_vocab_command_separate_bpe_from_gzip_and_config(demo, tmp_path):
    gz = tmp_path / "train.de.gz"
    gz.write_bytes(gzip.compress((demo / "train.de").read_bytes()))
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data:\n  train_source: {demo / 'train.en'}\n  train_target: {gz}\n"
        "vocab:\n  model_type: bpe\n  size: 150\n  joint: false\n",
        encoding="utf-8",
    )
    out = tmp_path / "sep"
    result = run("vocab", "--config", str(config), "--output", str(out))
    assert result.exit_code == 0, result.output
    assert f"wrote {out / SOURCE_SPM} (150 pieces, bpe" in result.output
    assert f"wrote {out / TARGET_SPM} (150 pieces, bpe" in result.output
    override = run("vocab", "--config", str(config), "--output", str(tmp_path / "j"), "--joint",
                   "--size", "120")  # fmt: skip
    assert override.exit_code == 0 and "j/joint.model (120 pieces, bpe" in override.output


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (None, ["--source", "{d}/missing.en"], r"missing\.en: file not found"),
        (b"fine\n\xc3\x28 broken\n", ["--source", "{d}/bad.en"], r"bad\.en:2: invalid UTF-8"),
        (b"", ["--source", "{d}/bad.en"], r"bad\.en: file is empty"),
        (None, ["--size", "100000"], r"at most \d+ pieces \(use --size \d+ or less\)"),
        (None, ["--size", "4"], r"vocab\.size must be at least 8"),
        (None, ["--character-coverage", "1.5"], r"character_coverage must be in"),
    ],
)
def test_vocab_command_bad_input_exits_2(demo, tmp_path, setup, args, message):
    if setup is not None:
        (tmp_path / "bad.en").write_bytes(setup)
    args = [a.replace("{d}", str(tmp_path)) for a in args]
    base = {"--source": str(demo / "train.en"), "--target": str(demo / "train.de")}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    flat = [x for kv in base.items() for x in kv]
    result = run("vocab", *flat, "--output", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert result.stderr.startswith("nmt: error: ") and result.stderr.count("\n") == 1
    assert re.search(message, result.stderr), result.stderr
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_vocab_command_needs_files(tmp_path):
    result = run("vocab", "--output", str(tmp_path))
    assert result.exit_code == 2 and "give --source and --target" in result.output


@pytest.mark.multi30k
def test_multi30k_files_check_and_pipeline(multi30k_dir, tmp_path):
    from nmt.data import PipelineStats, check_parallel_files, make_training_dataset
    from nmt.vocab import train_vocab

    stats = check_parallel_files(multi30k_dir / "train.en", multi30k_dir / "train.de")
    assert (stats.lines, stats.empty_pairs) == (29000, 0)
    config = VocabConfig(size=2000, seed=1, input_sentence_size=4000)
    vocab = train_vocab(config, [multi30k_dir / "train.en"], [multi30k_dir / "train.de"], tmp_path)
    counters = PipelineStats()
    data = DataConfig(max_length=20, batch_tokens=1024)
    train = make_training_dataset(
        multi30k_dir / "train.en", multi30k_dir / "train.de", vocab, data, seed=1, stats=counters
    )
    rows = 0
    for (source, target_in), _ in train.take(30):
        assert source.shape[0] * max(source.shape[1], target_in.shape[1]) <= 1024
        rows += source.shape[0]
    summary = counters.as_dict()
    assert rows > 0 and summary["too_long_dropped"] > 0  # some Multi30k pairs exceed 20 pieces
