"""The pure parts of nmt.training: stopping rules, resume plan, the train_state.json record,
the log lines, and the fault points (no training runs)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from nmt import faults
from nmt.config import Config
from nmt.training import metrics
from nmt.training.restore import resume_plan
from nmt.training.state import train_state_record
from nmt.training.stopping import Standing, StoppingRules, final_validation_due, judge
from nmt.version import __version__


def train_config(**changes):
    return dataclasses.replace(Config().train, **changes)


# === judge: best, plateau decay, early stopping ===


def test_a_gain_is_a_new_best_and_resets_both_counters():
    before = Standing(best_metric=10.0, best_step=5, evals_without_gain=2, plateau_bad=1)
    verdict = judge(before, 12.5, 20, train_config(early_stopping=3))
    assert verdict.gain and not verdict.decayed and not verdict.early_stop
    assert verdict.standing == Standing(12.5, 20, 0, 0, 1.0)


def test_no_gain_counts_then_plateau_cuts_the_rate_and_early_stopping_fires():
    cfg = train_config(decay="plateau", plateau_patience=2, decay_rate=0.5, early_stopping=3)
    s = Standing(best_metric=10.0, best_step=5)
    verdicts = []
    for step in (10, 15, 20):
        verdicts.append(judge(s, 9.0, step, cfg))
        s = verdicts[-1].standing
    assert [v.gain for v in verdicts] == [False, False, False]
    assert [v.decayed for v in verdicts] == [False, True, False]
    assert [v.early_stop for v in verdicts] == [False, False, True]
    assert s == Standing(10.0, 5, evals_without_gain=3, plateau_bad=1, lr_factor=0.5)


def test_equal_or_non_finite_metric_is_no_gain_and_no_decay_without_plateau():
    before = Standing(best_metric=10.0, best_step=5)
    for metric in (10.0, math.nan, -math.inf):
        verdict = judge(before, metric, 10, train_config(decay="none", early_stopping=0))
        assert not verdict.gain and not verdict.decayed and not verdict.early_stop
        assert verdict.standing.evals_without_gain == 1 and verdict.standing.lr_factor == 1.0
    assert judge(Standing(), -3.2, 10, train_config()).gain  # the first finite metric


def test_final_validation_only_when_the_last_step_was_no_evaluation():
    assert final_validation_due(True, "max_steps", 23, 0, 10)
    assert final_validation_due(True, "max_minutes", 23, 20, 10)
    assert not final_validation_due(True, "max_steps", 20, 0, 10)  # evaluated at step 20
    assert not final_validation_due(True, "interrupted", 23, 0, 10)
    assert not final_validation_due(True, "early_stopping", 23, 0, 10)
    assert not final_validation_due(True, "max_steps", 20, 20, 10)  # no step run
    assert not final_validation_due(False, "max_steps", 23, 0, 10)


# === StoppingRules: max_minutes, signals, several workers ===


class Clock:
    def __init__(self, now=0.0):
        self.now = now

    def __call__(self):
        return self.now


def test_max_minutes_stops_after_the_deadline_and_a_signal_after_it():
    clock, requested = Clock(), [False]
    rules = StoppingRules(train_config(max_minutes=1.0), 0.0, clock=clock,
                          requested=lambda: requested[0])  # fmt: skip
    assert rules.after_step(boundary=False) is None and rules.seconds_left(15.0) == 45.0
    requested[0] = True
    assert rules.after_step(boundary=False) == "interrupted"
    clock.now = 60.5
    assert rules.after_step(boundary=False) == "max_minutes"  # checked first
    assert StoppingRules(train_config(max_minutes=None), 0.0).seconds_left(5.0) is None


def test_several_workers_decide_together_at_boundaries_only():
    asked = []

    def broadcast(values):
        asked.append(values)
        return [1.0]  # the chief says yes

    clock = Clock(100.0)
    rules = StoppingRules(train_config(max_minutes=1.0, log_every=5, max_steps=12), 0.0,
                          num_workers=2, broadcast=broadcast, clock=clock,
                          requested=lambda: False)  # fmt: skip
    assert [rules.boundary(s) for s in (4, 5, 11, 12)] == [False, True, False, True]
    assert rules.after_step(boundary=False) is None and asked == []
    assert rules.after_step(boundary=True) == "max_minutes" and asked == [[1.0]]
    rules = StoppingRules(train_config(max_minutes=None), 0.0, num_workers=2,
                          broadcast=broadcast, requested=lambda: False)  # fmt: skip
    assert rules.after_step(boundary=True) == "interrupted"  # the chief's signal
    assert asked[-1] == [0.0]  # this worker had none


# === resume plan ===


def test_resume_plan_names_data_replica_and_precision_changes():
    saved = Config()
    same = resume_plan(saved, Config(), {"replicas": 1, "precision": "float32"}, 1, "float32")
    assert same.data and same.loss_scale and not same.partial and same.notes == []
    new = Config()
    new.data.shuffle_buffer = saved.data.shuffle_buffer + 1
    plan = resume_plan(saved, new, {"replicas": 2, "precision": "mixed_float16"}, 1, "float32")
    assert not plan.data and not plan.loss_scale and plan.partial
    assert plan.notes == [
        f"data settings changed (data.shuffle_buffer: {saved.data.shuffle_buffer} -> "
        f"{new.data.shuffle_buffer}; replicas: 2 -> 1): the data pipeline starts afresh "
        "instead of resuming its position",
        "precision changed (mixed_float16 -> float32)",
    ]
    bf16 = resume_plan(saved, Config(), {"precision": "float32"}, 1, "mixed_bfloat16")
    assert bf16.loss_scale and bf16.notes == []  # neither saves a loss scale


# === train_state.json ===


def test_train_state_record_fields():
    standing = Standing(best_metric=-math.inf, best_step=-1, evals_without_gain=2,
                        plateau_bad=1, lr_factor=0.5)  # fmt: skip
    record = train_state_record(7, standing, eval_bleu=False, evaluations=[{"step": 5}],
                                train_seconds=1.23456, stop_reason=None,
                                precision="float32", replicas=1)  # fmt: skip
    assert record == {
        "step": 7,
        "metric": "-dev_loss",
        "best_metric": None,
        "best_step": None,
        "evaluations_without_gain": 2,
        "plateau_evaluations_without_gain": 1,
        "learning_rate_factor": 0.5,
        "evaluations": [{"step": 5}],
        "train_seconds": 1.235,
        "stop_reason": None,
        "precision": "float32",
        "replicas": 1,
        "nmt_version": __version__,
    }
    best = train_state_record(9, Standing(31.5, 8), eval_bleu=True, evaluations=[],
                              train_seconds=0.0, stop_reason="max_steps",
                              precision="float32", replicas=2)  # fmt: skip
    assert (best["metric"], best["best_metric"], best["best_step"]) == ("bleu", 31.5, 8)


# === log lines ===


def test_progress_and_evaluation_lines():
    assert metrics.format_time(3725.9) == "1:02:05" and metrics.format_time(-3) == "0:00:00"
    assert (metrics.rate(950.4), metrics.rate(12345)) == ("950", "12.3k")
    assert metrics.step_line(5, 40, 2.65571, 0.01, 0.8481, 1234.0) == (
        "step 5/40 loss 2.6557 lr 0.01 gnorm 0.848 1.2k tok/s"
    )
    result = {"dev_loss": 1.5, "dev_perplexity": 4.4817, "attention_entropy": 1.234,
              "attention_uniform_entropy": 1.61, "attention_final_mass": 0.25,
              "attention_peak": 0.4, "bleu": 12.345}  # fmt: skip
    assert metrics.eval_line(10, result, False, "13.00", 5) == (
        "eval step 10: dev loss 1.5000 ppl 4.48 bleu 12.35 (best 13.00 at step 5); attention "
        "entropy 1.23 nats (uniform 1.61), 25% on the last 2 source positions, 40% on the "
        "most-attended one"
    )
    del result["bleu"]
    assert "ppl 4.48 (new best at step 10);" in metrics.eval_line(10, result, True, "", 10)
    assert metrics.dev_scalars(result)["bleu"] is None


def test_window_excludes_paused_time():
    window = metrics.Window()
    window.reset(10.0)
    window.paused += 2.0
    assert window.elapsed(15.0) == 3.0
    window.tokens, window.steps = 5.0, 2
    window.reset(15.0)
    assert (window.tokens, window.steps, window.paused, window.elapsed(16.0)) == (0.0, 0, 0.0, 1.0)


# === fault points ===


def test_fault_hooks_fire_only_while_installed():
    seen = []
    faults.fire(faults.STEP_END, step=1)  # nothing installed: a no-op
    remove = faults.install(faults.STEP_END, lambda step: seen.append(step))
    with faults.installed(faults.STEP_END, lambda step: seen.append(-step)):
        faults.fire(faults.STEP_END, step=2)
    faults.fire(faults.STEP_END, step=3)  # the first hook is back
    remove()
    faults.fire(faults.STEP_END, step=4)
    assert seen == [-2, 3]
    with pytest.raises(ValueError, match="unknown fault point 'step'"):
        faults.install("step", print)
