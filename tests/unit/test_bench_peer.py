"""bench/peer without OpenNMT-tf: log parsing, vocabulary, data, config, runs, BLEU."""

import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from bench import peer as bp
from nmt.config import VocabConfig
from nmt.demo_data import generate_pairs
from nmt.vocab import train_vocab

REPO = Path(__file__).resolve().parents[2]


# Lines of a real `onmt-main --model_type NMTSmallV1 --auto_config train` log (OpenNMT-tf
# 2.32.0, TF 2.12.1), from our own smoke run of this script.
REAL_LOG = textwrap.dedent(
    """\
    2026-11-24 04:42:28.112000: W runner.py:212] No GPU is detected, falling back to CPU
    2026-11-24 04:42:28.114000: I main.py:325] Using parameters:
    data:
      source_vocabulary: runs/bench/peer/data/en-de/onmt.vocab
      target_vocabulary: runs/bench/peer/data/en-de/onmt.vocab
    infer:
      batch_size: 32
      batch_type: examples
      length_bucket_width: 5
    model_dir: runs/bench/peer/NMTSmallV1-en-de
    params:
      average_loss_in_time: false
      beam_width: 5
      learning_rate: 0.0002
      num_hypotheses: 1
      optimizer: Adam
    train:
      batch_size: 64
      batch_type: examples
      length_bucket_width: 2
      max_step: 20
      maximum_features_length: 80
      maximum_labels_length: 80
      sample_buffer_size: -1
      save_checkpoints_steps: 20
      save_summary_steps: 10

    2026-11-24 04:42:28.257000: I inputter.py:316] Initialized source input layer:
    2026-11-24 04:42:28.257000: I inputter.py:316]  - vocabulary size: 8000
    2026-11-24 04:42:28.327000: I dataset_ops.py:2481] Training on 29000 examples
    2026-11-24 04:42:58.719000: I runner.py:310] Number of model parameters: 22527808
    2026-11-24 04:42:58.720000: I runner.py:310] Number of model weights: 18 (trainable = 18, non trainable = 0)
    2026-11-24 04:42:59.478000: I training.py:176] Saved checkpoint runs/bench/peer/NMTSmallV1-en-de/ckpt-1
    2026-11-24 04:43:23.326000: I runner.py:310] Step = 10 ; steps/s = 0.40, tokens/s = 715 (344 source, 371 target) ; Learning rate = 0.000200 ; Loss = 99.579346
    2026-11-24 04:43:53.182000: I runner.py:310] Step = 20 ; steps/s = 0.34, tokens/s = 625 (297 source, 328 target) ; Learning rate = 0.000200 ; Loss = 105.853584
    2026-11-24 04:43:53.574000: I training.py:176] Saved checkpoint runs/bench/peer/NMTSmallV1-en-de/ckpt-20
    """  # noqa: E501
)


def write_lines(path: Path, lines) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A Multi30k-shaped directory (train/val/test2016 .en/.de) of synthetic pairs."""
    root = tmp_path_factory.mktemp("multi30k")
    pairs = list(generate_pairs(5, 460))
    for split, part in (("train", pairs[:400]), ("val", pairs[400:430]), ("test2016", pairs[430:])):
        write_lines(root / f"{split}.en", [en for en, _ in part])
        write_lines(root / f"{split}.de", [de for _, de in part])
    return root


@pytest.fixture(scope="module")
def spm_model(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("spm")
    vocab = train_vocab(
        VocabConfig(size=120, seed=3), [corpus / "train.en"], [corpus / "train.de"], out
    )
    return vocab.source_model_path


@pytest.fixture(scope="module")
def processor(spm_model):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(spm_model))


@pytest.fixture
def data(corpus, spm_model, tmp_path):
    return bp.prepare_peer_data(corpus, "en-de", spm_model, tmp_path / "data")


# ---- log parsing


def test_reports_parsed_from_a_real_log():
    reports = bp.parse_reports(REAL_LOG)
    assert reports == [
        bp.ThroughputReport(10, 0.40, 715, 344, 371, 0.0002, 99.579346),
        bp.ThroughputReport(20, 0.34, 625, 297, 328, 0.0002, 105.853584),
    ]
    assert all(r.source_words_per_sec + r.target_words_per_sec == r.tokens_per_sec for r in reports)


def test_steady_state_skips_the_first_report_unless_it_is_the_only_one():
    a, b = bp.parse_reports(REAL_LOG)
    c = bp.ThroughputReport(30, 0.5, 900, 400, 500, 0.0002, 90.0)
    assert bp.steady_state([a, b, c]) == pytest.approx(
        {"source": 348.5, "target": 414, "tokens": 762.5, "steps": 0.42}
    )
    assert bp.steady_state([a])["source"] == 344
    assert bp.steady_state([]) == {"source": None, "target": None, "tokens": None, "steps": None}


def test_effective_config_and_parameter_count_from_a_real_log():
    config = bp.parse_effective_config(REAL_LOG)
    assert config["params"] == {
        "average_loss_in_time": False,
        "beam_width": 5,
        "learning_rate": 0.0002,
        "num_hypotheses": 1,
        "optimizer": "Adam",
    }
    assert config["train"]["batch_size"] == 64 and config["train"]["save_summary_steps"] == 10
    assert config["infer"]["length_bucket_width"] == 5
    assert bp.parse_num_params(REAL_LOG) == 22527808
    assert bp.parse_effective_config("no parameters here") is None
    assert bp.parse_num_params("") is None


def test_checkpoint_step(tmp_path):
    assert bp.checkpoint_step(tmp_path) == 0
    (tmp_path / "checkpoint").write_text(
        'model_checkpoint_path: "ckpt-20"\nall_model_checkpoint_paths: "ckpt-1"\n'
        'all_model_checkpoint_paths: "ckpt-20"\n'
    )
    assert bp.checkpoint_step(tmp_path) == 20


# ---- vocabulary and data


def test_vocab_puts_onmt_specials_first_and_every_piece_once(spm_model, processor):
    tokens = bp.peer_vocab_tokens(spm_model)
    assert tokens[:3] == ["<blank>", "<s>", "</s>"]
    assert len(tokens) == len(set(tokens))
    regular = [processor.id_to_piece(i) for i in range(4, processor.get_piece_size())]
    assert tokens[3:] == regular  # SentencePiece order: OpenNMT-tf id = SentencePiece id - 1
    assert "<pad>" not in tokens and "<unk>" not in tokens  # <unk> is OpenNMT-tf's OOV bucket
    # + 1 OOV bucket: the same number of embedding rows as the SentencePiece model
    assert len(tokens) + 1 == processor.get_piece_size()


def test_prepare_writes_pieces_vocab_and_is_idempotent(data, corpus, processor):
    assert data.vocab.read_text(encoding="utf-8").splitlines() == bp.peer_vocab_tokens(
        data.spm_model
    )
    vocab = set(bp.peer_vocab_tokens(data.spm_model))
    for pieces, raw in (
        (data.train_src, corpus / "train.en"),
        (data.train_tgt, corpus / "train.de"),
        (data.val_src, corpus / "val.en"),
        (data.test_tgt, corpus / "test2016.de"),
    ):
        rows = [line.split(" ") for line in pieces.read_text(encoding="utf-8").splitlines()]
        originals = raw.read_text(encoding="utf-8").splitlines()
        assert [processor.decode_pieces(row) for row in rows] == originals
        assert all(piece in vocab for row in rows for piece in row)
    assert data.test_ref == (corpus / "test2016.de").resolve()
    stamps = {p: p.stat().st_mtime_ns for p in (data.train_src, data.vocab)}
    again = bp.prepare_peer_data(corpus, "en-de", data.spm_model, data.vocab.parent)
    assert again == data
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing rewritten


def test_prepare_redoes_outputs_when_an_input_changes(corpus, spm_model, tmp_path):
    source = tmp_path / "m30k"
    source.mkdir()
    for f in corpus.iterdir():
        (source / f.name).write_bytes(f.read_bytes())
    data = bp.prepare_peer_data(source, "en-de", spm_model, tmp_path / "data")
    lines = (source / "test2016.en").read_text(encoding="utf-8").splitlines()
    write_lines(source / "test2016.en", [lines[1], lines[0], *lines[2:]])
    bp.prepare_peer_data(source, "en-de", spm_model, tmp_path / "data")
    first = data.test_src.read_text(encoding="utf-8").splitlines()[0]
    assert first == " ".join(bp._processor(spm_model).encode(lines[1], out_type=str))


def test_prepare_names_a_missing_file_and_a_line_count_mismatch(corpus, spm_model, tmp_path):
    with pytest.raises(bp.PeerError, match=r"train\.fr: not found"):
        bp.prepare_peer_data(corpus, "en-fr", spm_model, tmp_path / "a")
    source = tmp_path / "m30k"
    source.mkdir()
    for f in corpus.iterdir():
        (source / f.name).write_bytes(f.read_bytes())
    lines = (source / "val.de").read_text(encoding="utf-8").splitlines()
    write_lines(source / "val.de", lines[:-1])
    with pytest.raises(bp.PeerError, match=r"val\.en has 30 lines but .*val\.de has 29"):
        bp.prepare_peer_data(source, "en-de", spm_model, tmp_path / "b")
    assert not (tmp_path / "b" / bp.MANIFEST).exists()
    with pytest.raises(bp.PeerError, match="pair must look like en-de"):
        bp.prepare_peer_data(corpus, "ende", spm_model, tmp_path / "c")


# ---- configuration


def test_config_round_trips_through_yaml(data, tmp_path):
    path = bp.write_peer_config(
        data,
        tmp_path / "model",
        max_step=40,
        beam_width=3,
        extra={"train": {"keep_checkpoint_max": 2}, "infer": {"batch_size": 8}},
    )
    assert path == tmp_path / "model" / "data.yml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert config["model_dir"] == str((tmp_path / "model").resolve())
    assert config["data"]["train_features_file"] == str(data.train_src)
    assert config["data"]["train_labels_file"] == str(data.train_tgt)
    assert (
        config["data"]["source_vocabulary"]
        == config["data"]["target_vocabulary"]
        == str(data.vocab)
    )
    assert config["params"] == {"beam_width": 3}
    assert config["train"] == {
        "max_step": 40,
        "batch_size": 64,
        "batch_type": "examples",
        "save_summary_steps": bp.REPORT_EVERY,
        "save_checkpoints_steps": 40,
        "keep_checkpoint_max": 2,
    }
    assert config["infer"] == {"batch_size": 8}
    assert "eval" not in config  # no evaluation settings: none runs without --with_eval
    with pytest.raises(ValueError, match="max_step"):
        bp.write_peer_config(data, tmp_path / "model", max_step=0)
    path = bp.write_peer_config(data, tmp_path / "model", max_step=40, report_every=5)
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["train"]["save_summary_steps"] == 5


# ---- detokenize and BLEU


def test_detokenize_round_trip(corpus, data, tmp_path):
    out = bp.detokenize(data.test_tgt, data.spm_model, tmp_path / "hyp.txt")
    assert out.read_text(encoding="utf-8") == (corpus / "test2016.de").read_text(encoding="utf-8")
    assert bp.bleu(out, data.test_ref) == pytest.approx(100.0)


def test_bleu_matches_sacrebleu_and_rejects_count_mismatch(tmp_path):
    import sacrebleu

    hyp = write_lines(tmp_path / "hyp", ["ein Mann läuft .", "zwei Hunde spielen im Schnee"])
    ref = write_lines(tmp_path / "ref", ["ein Mann rennt .", "zwei Hunde spielen im Schnee"])
    expected = sacrebleu.corpus_bleu(
        ["ein Mann läuft .", "zwei Hunde spielen im Schnee"],
        [["ein Mann rennt .", "zwei Hunde spielen im Schnee"]],
    ).score
    assert bp.bleu(hyp, ref) == pytest.approx(expected)
    write_lines(ref, ["ein Mann rennt ."])
    with pytest.raises(bp.PeerError, match="2 hypotheses but 1 references"):
        bp.bleu(hyp, ref)


# ---- running a child


def test_run_reports_status_cpu_and_peak_rss_of_the_child(tmp_path):
    code = "import sys; b = bytearray(96 * 2**20); print('big'); sys.exit(3)"
    wall, cpu, rss, status = bp._run([sys.executable, "-c", code], tmp_path / "log")
    assert status == 3
    assert rss >= 96 * 2**20  # the child's own peak, not this process's
    assert cpu > 0 and wall > 0
    assert (tmp_path / "log").read_text() == "big\n"


FAKE_ONMT = """\
#!{python}
# Stand-in for onmt-main: writes OpenNMT-tf-format log lines and a checkpoint state.
import os, sys, yaml
args = sys.argv[1:]
config = yaml.safe_load(open(args[args.index("--config") + 1]))
model_dir = config["model_dir"]
if os.environ.get("FAKE_FAIL"):
    print("Traceback (most recent call last):")
    print("ValueError: something broke")
    sys.exit(1)
print("2026-11-24 04:42:28.114000: I main.py:325] Using parameters:")
print(yaml.safe_dump(config))
if "train" in args:
    every = config["train"]["save_summary_steps"]
    for step in range(every, config["train"]["max_step"] + 1, every):
        print(
            "2026-11-24 04:43:23.326000: I runner.py:310] Step = %d ; steps/s = 0.50, "
            "tokens/s = %d (%d source, %d target) ; Learning rate = 0.000200 ; Loss = 9.5"
            % (step, 10 * step + 5, 4 * step, 6 * step + 5)
        )
    with open(os.path.join(model_dir, "checkpoint"), "w") as f:
        f.write('model_checkpoint_path: "ckpt-%d"\\n' % config["train"]["max_step"])
else:
    src = open(args[args.index("--features_file") + 1]).read().splitlines()
    drop = int(os.environ.get("FAKE_DROP", "0"))
    most = config["params"].get("maximum_decoding_length", 250)
    least = min(config["params"].get("minimum_decoding_length", 0), most)
    with open(args[args.index("--predictions_file") + 1], "w") as f:
        for line in src[drop:]:
            words = line.split()[: min(2, most)]
            words += ["x"] * (least - len(words))
            f.write(" ".join(words) + "\\n")
    print("2026-11-24 04:44:17.161000: I runner.py:471] Total prediction time (s): 1.754735")
"""


@pytest.fixture
def fake_onmt(tmp_path) -> Path:
    path = tmp_path / "bin" / "onmt-main"
    path.parent.mkdir()
    path.write_text(FAKE_ONMT.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_train_runs_up_to_total_steps_and_continues(data, tmp_path, fake_onmt):
    model_dir = tmp_path / "model"
    run = bp.train_peer(data, model_dir, 30, batch_size=16, onmt_main=fake_onmt, log=lambda _: None)
    assert (run.start_step, run.final_step, run.steps_run) == (0, 30, 30)
    assert [r.step for r in run.reports] == [10, 20, 30]
    assert run.steady_source_words_per_sec == 100  # median of reports 20 and 30
    assert run.steady_tokens_per_sec == 255
    assert run.steady_tokens_per_sec_eos == 255 + 0.5 * 16
    assert run.command[:2] == [str(fake_onmt), "--model_type"] and run.command[-1] == "train"
    assert "--auto_config" in run.command
    assert run.effective_config["train"]["max_step"] == 30
    assert run.log_path == model_dir / "train_0-30.log" and run.peak_rss_bytes > 0
    more = bp.train_peer(
        data, model_dir, 50, onmt_main=fake_onmt, log=lambda _: None, report_every=5
    )
    assert (more.start_step, more.steps_run) == (30, 20)
    assert [r.step for r in more.reports] == [35, 40, 45, 50]  # earlier steps are not this run's
    with pytest.raises(bp.PeerError, match="already at step 50"):
        bp.train_peer(data, model_dir, 50, onmt_main=fake_onmt, log=lambda _: None)


def test_train_failure_raises_with_the_end_of_the_log(data, tmp_path, fake_onmt, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL", "1")
    with pytest.raises(bp.PeerError, match=r"status 1(.|\n)*ValueError: something broke"):
        bp.train_peer(data, tmp_path / "model", 10, onmt_main=fake_onmt, log=lambda _: None)


def test_infer_counts_lines_and_pieces(data, tmp_path, fake_onmt, monkeypatch):
    model_dir = tmp_path / "model"
    with pytest.raises(bp.PeerError, match="no OpenNMT-tf checkpoint"):
        bp.infer_peer(data, model_dir, data.test_src, tmp_path / "out.sp", beam=5)
    bp.train_peer(data, model_dir, 10, onmt_main=fake_onmt, log=lambda _: None)
    out = tmp_path / "out.sp"
    run = bp.infer_peer(data, model_dir, data.test_src, out, beam=3, onmt_main=fake_onmt)
    lines = data.test_src.read_text(encoding="utf-8").splitlines()
    assert run.lines == len(lines) == len(out.read_text(encoding="utf-8").splitlines())
    assert run.mean_pieces == pytest.approx(sum(min(2, len(x.split())) for x in lines) / len(lines))
    assert (run.beam_width, run.max_decoding_length, run.step) == (3, 250, 10)
    assert run.prediction_seconds == pytest.approx(1.754735)
    assert run.command[run.command.index("--features_file") + 1] == str(data.test_src)
    monkeypatch.setenv("FAKE_DROP", "1")
    out.unlink()
    with pytest.raises(bp.PeerError, match=f"wrote {len(lines) - 1} lines for the {len(lines)}"):
        bp.infer_peer(data, model_dir, data.test_src, out, beam=3, onmt_main=fake_onmt)
    assert not out.exists()


def test_infer_sets_the_maximum_decoding_length_in_its_config(data, tmp_path, fake_onmt):
    model_dir = tmp_path / "model"
    bp.train_peer(data, model_dir, 10, onmt_main=fake_onmt, log=lambda _: None)
    out = tmp_path / "out.sp"
    default = bp.infer_peer(data, model_dir, data.test_src, out, beam=3, onmt_main=fake_onmt)
    written = yaml.safe_load(default.config_path.read_text(encoding="utf-8"))
    assert "maximum_decoding_length" not in written["params"]
    run = bp.infer_peer(
        data, model_dir, data.test_src, out, beam=3, onmt_main=fake_onmt, max_decoding_length=1
    )
    written = yaml.safe_load(run.config_path.read_text(encoding="utf-8"))
    assert written["params"] == {"beam_width": 3, "maximum_decoding_length": 1}
    assert run.config_path.name == "infer_beam3_max1.yml"
    assert run.command[run.command.index("--config") + 1] == str(run.config_path)
    assert run.effective_config["params"]["maximum_decoding_length"] == 1
    assert run.max_decoding_length == 1 and default.max_decoding_length == 250
    lines = data.test_src.read_text(encoding="utf-8").splitlines()
    assert run.mean_pieces == pytest.approx(sum(min(1, len(x.split())) for x in lines) / len(lines))
    with pytest.raises(bp.PeerError, match="max_decoding_length must be at least 1, got 0"):
        bp.infer_peer(
            data, model_dir, data.test_src, out, beam=3, onmt_main=fake_onmt, max_decoding_length=0
        )
    assert run.min_decoding_length == 0 and default.min_decoding_length == 0


def test_infer_sets_an_exact_decoding_length_with_min_and_max(data, tmp_path, fake_onmt):
    model_dir = tmp_path / "model"
    bp.train_peer(data, model_dir, 10, onmt_main=fake_onmt, log=lambda _: None)
    out = tmp_path / "out.sp"
    run = bp.infer_peer(
        data,
        model_dir,
        data.test_src,
        out,
        beam=3,
        onmt_main=fake_onmt,
        max_decoding_length=4,
        min_decoding_length=4,
    )
    written = yaml.safe_load(run.config_path.read_text(encoding="utf-8"))
    assert written["params"] == {
        "beam_width": 3,
        "minimum_decoding_length": 4,
        "maximum_decoding_length": 4,
    }
    assert run.config_path.name == "infer_beam3_min4_max4.yml"
    assert (run.min_decoding_length, run.max_decoding_length) == (4, 4)
    assert run.mean_pieces == 4.0  # the stand-in pads its outputs up to the minimum
    with pytest.raises(bp.PeerError, match="min_decoding_length must be >= 0, got -1"):
        bp.infer_peer(
            data, model_dir, data.test_src, out, beam=3, onmt_main=fake_onmt, min_decoding_length=-1
        )


# ---- the venv


def test_ensure_venv_returns_an_existing_onmt_main(tmp_path, monkeypatch):
    onmt_main = tmp_path / "venv" / "bin" / "onmt-main"
    onmt_main.parent.mkdir(parents=True)
    onmt_main.touch()
    monkeypatch.setattr(bp.shutil, "which", lambda name: pytest.fail("must not look for python"))
    assert bp.ensure_peer_venv(tmp_path / "venv", log=lambda _: None) == onmt_main


def test_ensure_venv_fails_with_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(bp.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="python3.11 not found"):
        bp.ensure_peer_venv(tmp_path / "venv", log=lambda _: None)
    fake = tmp_path / "python3.11"
    fake.write_text("#!/bin/sh\nmkdir -p \"$3/bin\"\necho 'Error: no space left' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(bp.shutil, "which", lambda name: str(fake))
    with pytest.raises(SystemExit) as excinfo:
        bp.ensure_peer_venv(tmp_path / "venv", log=lambda _: None)
    message = str(excinfo.value)
    assert "\n" not in message and message.endswith("Error: no space left")
    assert not (tmp_path / "venv").exists()
    assert os.listdir(tmp_path) == ["python3.11"]
