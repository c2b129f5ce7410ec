"""nmt/progress.py: when training logs, and an ETA that counts evaluations and checkpoints."""

import pytest

from nmt.progress import Eta, count_events, estimate_remaining, log_due, mean


def fmt(seconds: float) -> str:
    return f"{seconds:.0f}s"


@pytest.mark.parametrize(
    "step, max_steps, every, expected",
    [
        (0, 1000, 300, 4),  # 300, 600, 900 and the final one at 1000
        (0, 900, 300, 3),  # 300, 600, 900: the end is one of them
        (300, 900, 300, 2),  # the evaluation at step 300 is behind
        (299, 900, 300, 3),
        (899, 900, 300, 1),
        (900, 900, 300, 0),
        (950, 900, 300, 0),  # past the end (a resumed run with a lower max_steps)
        (10, 20, 0, 0),  # no dev set
    ],
)
def test_count_events_matches_a_walk_of_the_loop(step, max_steps, every, expected):
    assert count_events(step, max_steps, every) == expected
    if every:  # the loop evaluates at multiples of `every` and once more at the end
        walk = [s for s in range(step + 1, max_steps + 1) if s % every == 0 or s == max_steps]
        assert len(walk) == expected


def test_eta_adds_the_measured_evaluations_and_checkpoints_still_to_come():
    eta = estimate_remaining(
        400, 1000, 0.5, eval_every=300, eval_seconds=20.0,
        checkpoint_every=500, checkpoint_seconds=2.0,
    )  # fmt: skip
    # 600 steps x 0.5 s + evals at 600, 900, 1000 x 20 s + checkpoints at 500, 1000 x 2 s
    assert eta == Eta(300.0 + 60.0 + 4.0, 0)
    assert eta.text(fmt) == "364s"


def test_eta_counts_the_evaluation_of_the_step_just_logged():
    # the loop logs step 300 and then evaluates it; at the end it evaluates max_steps
    assert estimate_remaining(300, 900, 0.0, eval_every=300, eval_seconds=10.0) == Eta(30.0)
    assert estimate_remaining(900, 900, 1.0, eval_every=300, eval_seconds=10.0) == Eta(10.0)
    assert estimate_remaining(1000, 1000, 1.0, eval_every=300, eval_seconds=10.0) == Eta(10.0)


def test_eta_names_the_evaluations_it_cannot_time_yet():
    eta = estimate_remaining(100, 1000, 0.5, eval_every=300, checkpoint_every=500)
    assert eta == Eta(450.0, 4)  # checkpoints unmeasured count as free
    assert eta.text(fmt) == "450s + 4 evals"
    assert estimate_remaining(950, 1000, 1.0, eval_every=300).text(fmt) == "50s + 1 eval"


def test_eta_without_a_dev_set_is_the_steps_alone():
    assert estimate_remaining(0, 10, 2.0) == Eta(20.0, 0)
    assert estimate_remaining(10, 10, 2.0) == Eta(0.0, 0)


def test_eta_stops_at_the_time_limit():
    capped = estimate_remaining(0, 1000, 1.0, eval_every=100, eval_seconds=10.0, seconds_left=60.0)
    assert capped == Eta(60.0, 0)
    # an unmeasured evaluation cannot outlast the limit either
    assert estimate_remaining(0, 1000, 1.0, eval_every=100, seconds_left=60.0) == Eta(60.0, 0)
    assert estimate_remaining(0, 10, 1.0, eval_every=5, seconds_left=600.0) == Eta(10.0, 2)
    assert estimate_remaining(0, 10, 1.0, seconds_left=-5.0) == Eta(0.0, 0)


def test_log_due_by_steps_and_by_seconds_of_training():
    assert log_due(50, 50, 30.0, 0.1)
    assert not log_due(49, 50, 30.0, 29.9)
    assert log_due(7, 50, 30.0, 30.0)  # slow steps: a line after 30 s of training
    assert not log_due(7, 50, 0.0, 1e6)  # 0 turns time-based lines off


def test_mean():
    assert mean([]) is None
    assert mean([1.0, 2.0, 6.0]) == 3.0
