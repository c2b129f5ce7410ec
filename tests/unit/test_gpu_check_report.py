"""The GPU check's report: the issue's targets from measured rows, Markdown of a partial run."""

from __future__ import annotations

import json

from tests.helpers import load_script

report_module = load_script("gpu_check_report")


def _report(lstm_ratio: float, train_ratio: float) -> dict:
    lstm = [
        {"precision": p, "variant": v, "ms": 1.0, "tok_s": 1000.0, "max_rel_diff": 1e-7,
         "vs_keras": 1.0 if v.startswith("keras") else lstm_ratio}
        for p in ("float32", "mixed_float16")
        for v in ("keras.layers.LSTM", "nmt (cuDNN)", "nmt (no cuDNN)")
    ]  # fmt: skip
    train = [{"variant": "nmt:float32", "wall_s": 0.2, "target_tok_s": 1.0, "all_tok_s": 2.0,
              "vs_first": 1.0},
             {"variant": "nmt:mixed_float16", "wall_s": 0.1, "target_tok_s": 2.0,
              "all_tok_s": 4.0, "vs_first": train_ratio}]  # fmt: skip
    return {
        "started": "now", "budget_s": 450, "repo_commit": "abc", "python": "py", "mode": "gpu",
        "parts": {
            "lstm": {"status": "ok", "seconds": 3, "limit_s": 90,
                     "result": {"shape": {"batch": 1, "steps": 2, "input": 3, "units": 4,
                                          "timed": 5}, "rows": lstm, "notes": []}},
            "train_4k": {"status": "ok", "seconds": 3, "limit_s": 90,
                         "result": {"batch_tokens": 4096, "rows": train}},
            "decode": {"status": "timeout", "seconds": 75, "limit_s": 75,
                       "log_tail": ["tracing the search"]},
        },
    }  # fmt: skip


def test_targets_met_and_missed():
    met = report_module.targets(_report(0.95, 1.6))
    assert [t["met"] for t in met] == [True, True, True]
    missed = report_module.targets(_report(0.5, 1.2))
    assert [t["met"] for t in missed] == [False, False, False]
    assert missed[2]["value"] == 1.2 and missed[0]["value"] == 0.5


def test_targets_not_measured_and_partial_markdown():
    report = _report(1.0, 1.0)
    del report["parts"]["train_4k"]
    report["targets"] = report_module.targets(report)
    assert report["targets"][2] == {
        "target": "training step at 4k tokens: mixed_float16 / float32 >= 1.5",
        "value": None, "met": None}  # fmt: skip
    text = report_module.markdown(report)
    assert "finished (not yet)" in text and "| n/a | not measured |" in text
    assert "**decode**: TIMED OUT in 75 s (limit 75 s)" in text and "tracing the search" in text
    assert "| mixed_float16 | nmt (cuDNN) | 1.00 | 1,000 | 1.00x | 1.0e-07 |" in text


def test_write_report_replaces_both_files_whole(tmp_path):
    report = _report(1.0, 1.0)
    (tmp_path / "report.md").write_text("an earlier run\n", encoding="utf-8")
    report_module.write_report(tmp_path, report)
    assert json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))["budget_s"] == 450
    assert (tmp_path / "report.md").read_text(encoding="utf-8") == report_module.markdown(report)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md"]
