"""scripts/attention_report.py: BLEU by source-length thirds and the Markdown rendering."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "attention_report.py"


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
