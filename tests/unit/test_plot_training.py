"""scripts/plot_training.py: the wall-time axis from logs and from train_state.json."""

from __future__ import annotations

import json

import pytest

from tests.helpers import load_script


@pytest.fixture(scope="module")
def plot_training():
    return load_script("plot_training")


RUN1 = """training /m: 1 replica(s), precision float32, 100 parameters
step 50/900 loss 7.8 lr 0.0005 gnorm 1.6 3.0k tok/s elapsed 0:01:56 eta 0:43:03
step 100/900 loss 6.1 lr 0.001 gnorm 0.65 2.9k tok/s elapsed 0:03:55 eta 0:41:04
eval step 100: dev loss 5.4829 ppl 240.55 bleu 0.48 (new best at step 100)
step 120/900 loss 6.0 lr 0.001 gnorm 0.65 2.9k tok/s elapsed 0:04:30 eta 0:41:04
eval step 120: dev loss 5.1000 ppl 164.02 bleu 1.50 (new best at step 120)
"""
RUN2 = """resumed from /m/checkpoints/ckpt-120 (step 120)
step 150/900 loss 5.0 lr 0.001 gnorm 0.6 2.9k tok/s elapsed 1:00:10 eta 0:01:00
eval step 150: dev loss 4.9000 ppl 134.29 bleu 1.20 (best 1.50 at step 120)
"""


def test_logs_of_consecutive_runs_share_one_time_axis(plot_training, tmp_path):
    (tmp_path / "1.log").write_text(RUN1)
    (tmp_path / "2.log").write_text(RUN2)
    found = plot_training.from_logs([tmp_path / "1.log", tmp_path / "2.log"])
    assert [(e.step, e.seconds, e.bleu) for e in found] == [
        (100, 235.0, 0.48),
        (120, 270.0, 1.5),
        (150, 270.0 + 3610.0, 1.2),  # the second run starts where the first one stopped
    ]
    text = plot_training.table(found)
    assert "| 3:55 | 100 | 5.483 | 0.48 | 0.48 |" in text
    assert "| 64:40 | 150 | 4.900 | 1.20 | 1.50 |" in text  # best so far is kept


def test_eval_without_its_step_line_names_the_file_and_line(plot_training, tmp_path):
    log = tmp_path / "x.log"
    log.write_text("eval step 7: dev loss 1.0 ppl 2.72 bleu 3.0 (new best at step 7)\n")
    with pytest.raises(SystemExit, match=r"x.log:1: eval at step 7 has no step line"):
        plot_training.from_logs([log])


def test_model_dir_and_png(plot_training, tmp_path):
    state = {
        "evaluations": [
            {"step": 4, "dev_loss": 3.0, "bleu": 1.0, "train_seconds": 10.0},
            {"step": 8, "dev_loss": 2.0, "bleu": 2.5, "train_seconds": 21.5},
        ]
    }
    (tmp_path / "train_state.json").write_text(json.dumps(state))
    found = plot_training.from_model_dir(tmp_path)
    assert [(e.step, e.seconds, e.bleu) for e in found] == [(4, 10.0, 1.0), (8, 21.5, 2.5)]
    png = tmp_path / "out" / "bleu.png"
    assert plot_training.main(["--model", str(tmp_path), "--png", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    del state["evaluations"][0]["train_seconds"]
    (tmp_path / "train_state.json").write_text(json.dumps(state))
    with pytest.raises(SystemExit, match="step 4 has no train_seconds"):
        plot_training.from_model_dir(tmp_path)
