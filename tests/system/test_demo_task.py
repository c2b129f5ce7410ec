"""The built-in demo task is learnable: the demo config reaches a BLEU threshold on its test set.

The model is the shared `demo_run` fixture, trained as scripts/demo.sh trains it;
test_demo_readme.py checks the figure the README states.
"""

import json

import pytest

THRESHOLD = 60.0  # sacreBLEU on the demo test set; a working model reaches 98 by step 900


@pytest.mark.slow
def test_demo_config_learns_demo_task(demo_run, run_python):
    out = run_python(
        "-m", "nmt", "evaluate", "--model", demo_run.model, "--src", demo_run.data / "test.en",
        "--ref", demo_run.data / "test.de", "--metrics", "bleu", "--json", cwd=demo_run.work,
    )  # fmt: skip
    bleu = json.loads(out)["bleu"]
    assert "case:mixed" in bleu["signature"]
    assert bleu["score"] >= THRESHOLD, bleu
