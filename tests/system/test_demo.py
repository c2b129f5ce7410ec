"""The shared demo model (tests/system/conftest.py trains it as scripts/demo.sh does): it learns
the task, reaches the BLEU that README.md states, and its attention looks at the source word
being translated.

One module, so that a parallel run (scripts/test.sh, one work unit per module) trains the demo
model once.
"""

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
ATTENTION_REPORT = REPO / "scripts" / "attention_report.py"

# sacreBLEU on the demo test set; a working model reaches 98 by step 900.
LEARNED_BLEU = 60.0
# Float rounding differs between CPUs (SIMD widths, oneDNN kernels) and may flip a few of the
# 500 test translations; one flipped word moves the score by about 0.05.
README_TOLERANCE = 1.0
STATED = re.compile(r"demo test set: \*\*(\d+\.\d) BLEU\*\* \(beam 5,\s+(\d+) steps")
# Measured on the demo test set (seed 1234): bahdanau, the demo config, 0.83 at step 900 (0.70 at
# step 600) trained in mixed_bfloat16, 0.87 (0.77) in float32; the same run with
# model.attention=general, whose attention collapses onto the final word and EOS (81% of the
# mass on the last two positions), 0.22 at steps 300, 600 and 900. 0.6 is below every healthy
# figure from step 600 on and nearly three times the collapsed one.
ALIGNMENT_THRESHOLD = 0.6


@pytest.mark.slow
def test_demo_config_learns_demo_task(demo_run, run_python):
    out = run_python(
        "-m", "nmt", "evaluate", "--model", demo_run.model, "--src", demo_run.data / "test.en",
        "--ref", demo_run.data / "test.de", "--metrics", "bleu", "--json", cwd=demo_run.work,
    )  # fmt: skip
    bleu = json.loads(out)["bleu"]
    assert "case:mixed" in bleu["signature"]
    assert bleu["score"] >= LEARNED_BLEU, bleu


def readme_figure() -> tuple[float, int]:
    found = STATED.findall(README.read_text("utf-8"))
    assert len(found) == 1, f"README.md must state the demo's BLEU once as {STATED.pattern}"
    return float(found[0][0]), int(found[0][1])


@pytest.mark.slow
def test_demo_reaches_the_bleu_the_readme_states(demo_run, run_python):
    """The demo's last two commands (`nmt translate` with the config's beam, `nmt score
    --metrics bleu,chrf`) on the model trained as the demo trains it (configs/demo.yaml stops
    on steps, in float32 with op determinism): the README's figure within README_TOLERANCE, on
    any machine."""
    from nmt import modeldir

    stated, steps = readme_figure()
    assert modeldir.read_train_state(demo_run.model)["step"] == steps
    hyp = demo_run.work / "test.hyp"
    run_python(
        "-m", "nmt", "translate", demo_run.data / "test.en", "-o", hyp, "--model", demo_run.model,
        cwd=demo_run.work,
    )  # fmt: skip
    out = run_python(
        "-m", "nmt", "score", hyp, demo_run.data / "test.de", "--metrics", "bleu,chrf",
        cwd=demo_run.work,
    )  # fmt: skip
    bleu = float(re.match(r"BLEU = (\d+\.\d+) ", out).group(1))
    assert abs(bleu - stated) <= README_TOLERANCE, f"BLEU {bleu}, README.md states {stated}:\n{out}"


@pytest.mark.slow
def test_demo_attention_agrees_with_the_word_alignments(demo_run, run_python):
    """`nmt demo-data` writes the true word alignments of its pairs (test.align); teacher-forcing
    the test references through the model, scripts/attention_report.py counts the target words
    whose most attended source word is one they are aligned to."""
    data = demo_run.data
    out = run_python(
        ATTENTION_REPORT, "--model", demo_run.model, "--src", data / "test.en", "--ref",
        data / "test.de", "--align", data / "test.align", "--json", cwd=demo_run.work,
    )  # fmt: skip
    report = json.loads(out)
    assert report["aligned_words"] == len((data / "test.de").read_text("utf-8").split())
    assert report["alignment_accuracy"] >= ALIGNMENT_THRESHOLD, report
