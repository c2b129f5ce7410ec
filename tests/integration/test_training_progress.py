"""The training loop's log lines: time-based as well as step-based, with an ETA that counts
the evaluations still to come (nmt/progress.py has the arithmetic)."""

import re
from pathlib import Path

from nmt.config import load_config
from nmt.demo_data import generate_pairs

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"


def test_slow_steps_log_by_time_and_the_eta_counts_evaluations(tmp_path):
    from nmt.training import train

    pairs = list(generate_pairs(3, 40))
    src, tgt = tmp_path / "train.en", tmp_path / "train.de"
    src.write_text("".join(e + "\n" for e, _ in pairs), encoding="utf-8")
    tgt.write_text("".join(d + "\n" for _, d in pairs), encoding="utf-8")
    config = load_config(TINY, [
        f"data.train_source={src}", f"data.train_target={tgt}",
        f"data.dev_source={src}", f"data.dev_target={tgt}", "vocab.size=64",
        "train.max_steps=5", "train.eval_every=3", "train.checkpoint_every=3",
        "train.log_every=1000",  # never by steps (but the last step) ...
        "train.log_every_seconds=0.000001",  # ... and after every step by time
    ])  # fmt: skip
    lines: list[str] = []
    train(config, tmp_path / "model", log=lines.append)
    steps = [line for line in lines if line.startswith("step ")]
    assert [s.split()[1] for s in steps] == [f"{n}/5" for n in range(1, 6)], lines
    etas = [re.search(r" eta (\d+:\d\d:\d\d)(.*)$", s) for s in steps]
    assert all(etas), steps
    # evaluations at steps 3 and 5 (the end), each after its step's line: unmeasured until
    # the first one has run
    assert [e.group(2) for e in etas] == [" + 2 evals"] * 3 + ["", ""]
