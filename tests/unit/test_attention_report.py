"""scripts/attention_report.py: BLEU by source-length thirds, agreement with word alignments,
and the Markdown rendering."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from nmt.constants import PAD_ID
from nmt.demo_data import generate_aligned
from nmt.vocab import Vocab

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "attention_report.py"
TINY_VOCAB = Path(__file__).resolve().parents[1] / "data" / "tiny_joint.model"


@pytest.fixture(scope="module")
def report_module():
    spec = importlib.util.spec_from_file_location("attention_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["attention_report"] = module
    spec.loader.exec_module(module)
    return module


def test_bleu_by_length_splits_by_source_words(report_module):
    sources = ["a b c d e f", "a", "a b c", "a b", "a b c d e", "a b c d"]
    refs = ["the cat sat on the mat"] * 6
    hyps = ["the cat sat on the mat" if len(s.split()) >= 5 else "dog" for s in sources]
    rows = report_module.bleu_by_length(sources, hyps, refs)
    assert [row["words"] for row in rows] == ["1-2", "3-4", "5-6"]
    assert [row["lines"] for row in rows] == [2, 2, 2]
    assert rows[0]["bleu"] == pytest.approx(0.0) and rows[2]["bleu"] == pytest.approx(100.0)


def test_render_shows_the_collapse_figures(report_module):
    report = {
        "model": "m",
        "step": 800,
        "target_positions": 10,
        "attention_entropy": 0.014,
        "attention_uniform_entropy": 2.9,
        "attention_final_mass": 0.99,
        "bleu_by_source_length": [{"words": "4-10", "lines": 3, "bleu": 32.9}],
    }
    text = report_module.render(report)
    assert "| 0.014 | 2.900 | 99.0% |" in text
    assert "| 4-10 | 3 | 32.90 |" in text


def test_missing_model_is_a_one_line_error(report_module, tmp_path, capsys):
    status = report_module.main(["--model", str(tmp_path / "none"), "--src", "s", "--ref", "r"])
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("attention_report: error: ") and "\n" not in err


def test_piece_words_start_a_word_at_each_word_boundary_piece(report_module):
    assert report_module.piece_words(["▁Der", "▁Ma", "nn", "▁sieht", "."]) == [0, 1, 1, 2, 2]
    assert report_module.piece_words(["▁", "Ü", "ber", "▁den"]) == [0, 0, 0, 1]
    assert report_module.piece_words(["ab", "▁c"]) == [0, 1]  # a first piece always starts one


def test_word_attention_sums_source_pieces_and_averages_target_pieces(report_module):
    weights = np.array(
        [  # source pieces: word 0, word 1, word 1, EOS
            [0.7, 0.1, 0.1, 0.1],  # target word 0
            [0.0, 0.5, 0.5, 0.0],  # target word 1, first piece
            [0.0, 0.0, 0.2, 0.8],  # target word 1, second piece
        ]
    )
    words = report_module.word_attention(weights, [0, 1, 1], [0, 1, 1])
    np.testing.assert_allclose(words, [[0.7, 0.2, 0.1], [0.0, 0.6, 0.4]])


class PointingModel:
    """Stands in for a model: all attention on the first source piece, or on EOS."""

    def __init__(self, on_eos: bool):
        self.on_eos = on_eos

    def __call__(self, inputs, training=False, return_attention=False):
        source, target_in = inputs
        eos = tf.reduce_sum(tf.cast(source != PAD_ID, tf.int32), axis=1) - 1
        at = eos if self.on_eos else tf.zeros_like(eos)
        weights = tf.one_hot(at, tf.shape(source)[1])[:, None, :]
        return None, tf.tile(weights, [1, tf.shape(target_in)[1], 1])


def test_alignment_agreement_counts_target_words_attending_an_aligned_word(report_module):
    vocab = Vocab.load(TINY_VOCAB)
    sources, targets, alignments = zip(*generate_aligned(7, 23), strict=True)  # 23: batch of 1
    on_first = [{j for i, j in links if i == 0} for links in alignments]
    target_words = sum(len(t.split()) for t in targets)
    expected = sum(map(len, on_first)) / target_words
    first = report_module.alignment_agreement(
        PointingModel(False), vocab, sources, targets, alignments, batch_size=11
    )
    assert first["aligned_words"] == target_words
    assert first["alignment_accuracy"] == pytest.approx(expected)
    assert 0 < first["aligned_mass"] <= first["alignment_accuracy"]
    eos = report_module.alignment_agreement(
        PointingModel(True), vocab, sources, targets, alignments
    )
    assert eos["alignment_accuracy"] == 0 and eos["aligned_mass"] == 0


def test_render_shows_the_alignment_agreement(report_module):
    report = {
        "model": "m",
        "step": 900,
        "target_positions": 10,
        "attention_entropy": 0.6,
        "attention_uniform_entropy": 2.6,
        "attention_final_mass": 0.02,
        "aligned_words": 8,
        "alignment_accuracy": 0.875,
        "aligned_mass": 0.7,
    }
    assert "| 8 | 87.5% | 70.0% |" in report_module.render(report)
