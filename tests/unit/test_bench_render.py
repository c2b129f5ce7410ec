"""bench/prose.py and the sections' render(): every section rendered from a fixed result dict
(tests/helpers/bench_samples.py) with each template placeholder filled, no `$` left, each
paragraph on one line, and the figures of the dict in the text."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench import markdown, prose
from bench.common import SECTION_TITLES, BenchError
from bench.sections import SECTIONS
from tests.helpers import bench_samples as samples

REPO = Path(__file__).resolve().parents[2]


def _cases(root: Path) -> dict[str, tuple[dict, int, dict, list[str]]]:
    """name: (context overrides, section, result dict, figures the text must show)."""
    plot = root / "plots" / "cost_growth.png"
    return {
        "s1": ({}, 1, samples.s1_result(), ["(21 s)", "33,015", "88,080", "1.67x", "6.2e-07"]),
        "s2": (
            {},
            2,
            samples.s2_result(),
            ["en-de train", "in 2 alternating rounds", "(nmt (a) 20 steps", "nmt (b) 4 steps"]
            + ["Ours (22,527,808 parameters)", "(batch 64 examples, 22,527,808 parameters)"]
            + ["up to 300 batches", "1,933", "1,626", "134.9", "2 intra-op threads"]
            + ["batch_tokens 1176 -> 64.1 sentences, 2002 tokens", "-> 224.9 sentences"],
        ),
        "s2 skip-peer": (
            {"skip_peer": True, "quick": True},
            2,
            samples.s2_result(skip_peer=True),
            ["(batch 64 examples)", "| not run |", "in 2 alternating rounds (nmt (a) 4 steps"],
        ),
        "s3 exact": (
            {},
            3,
            samples.s3_result(),
            ["both decode exactly 15 pieces", "`maximum_decoding_length: 15`", "(1000 - 100)"]
            + ["`runs/bench/s3/nmt_bt1176_min15_max15`", "trained 40 steps", "60.1"]
            + ["22.36", "about the peer's 32 sentences", "times 32:", "batches of 4096 source"],
        ),
        "s3 range": ({}, 3, samples.s3_result(5, 50), ["both decode 5 to 50 pieces"]),
        "s3 limit only": (
            {"decode_min_length": 0, "decode_max_length": 50},
            3,
            samples.s3_result(0, 50),
            ["they may stop early", "same limit of 50 output pieces", "min_length: 0`"],
        ),
        "s4": ({}, 4, samples.s4_result(), ["| OpenNMT-tf NMTSmallV1 | training | 1,650 | 1 |"]),
        "s4 skip-peer": ({"skip_peer": True}, 4, samples.s4_result(), ["| not run | not run |"]),
        "s5": (
            {},
            5,
            samples.s5_result(plot),
            ["Decoding with runs/ende_b (12,660,544 parameters, runs/ende_b/best/ckpt-3593)"]
            + ["16 inputs per source length", "length penalty 1.0", "1,832", "102.4"]
            + ["Peak RSS of that process: 940 MiB.", "![cost growth](plots/cost_growth.png)"],
        ),
    }


CASES = list(_cases(Path("unused")))  # the names


@pytest.mark.parametrize("case", CASES)
def test_every_section_renders_its_figures_from_a_fixed_dict(case, tmp_path):
    overrides, number, result, figures = _cases(tmp_path)[case]
    ctx = samples.sample_context(tmp_path, **overrides)
    text = SECTIONS[number].render(ctx, result)
    assert "$" not in text
    assert text.startswith(f"### {SECTION_TITLES[number]}\n\nCommand: `{ctx.command}`")
    for figure in figures:
        assert figure in text, figure
    for paragraph in text.split("\n\n"):  # prose on one line; tables and commands line by line
        lines = paragraph.splitlines()
        assert len(lines) == 1 or all(line.startswith(("|", "    ")) for line in lines), lines[:2]
    if number in (2, 3, 5):  # the commands close the section, indented as code
        commands = result.get("commands") or [r["command"] for r in result["rows"]]
        assert text.endswith(":\n\n" + "\n".join(f"    {c}" for c in dict.fromkeys(commands)))


def test_every_template_is_used_by_some_render(tmp_path, monkeypatch):
    used = []
    load = prose.load
    monkeypatch.setattr(prose, "load", lambda name: used.append(name) or load(name))
    for overrides, number, result, _ in _cases(tmp_path).values():
        SECTIONS[number].render(samples.sample_context(tmp_path, **overrides), result)
    samples.sample_context(tmp_path).head()
    files = {path.name.removesuffix(".md") for path in prose.TEMPLATES.glob("*.md")}
    assert prose.TEMPLATES == REPO / "bench" / "templates"
    assert set(used) == files


def test_head_and_provenance(tmp_path):
    ctx = samples.sample_context(tmp_path)
    head = ctx.head()
    assert head.startswith("## Multi30k benchmark: nmt vs OpenNMT-tf (scripts/benchmark.py)\n\n")
    assert head.endswith("that produced it.\n") and head.count("\n") == 3
    line = ctx.provenance()
    assert line.startswith(f"Command: `{ctx.command}` (repository root, venv `")
    assert f"Machine: {ctx.machine.describe()}; load average " in line
    assert "\n" not in line and "$" not in line


@pytest.fixture
def templates(tmp_path, monkeypatch):
    """bench/prose reading its templates from tmp_path."""
    monkeypatch.setattr(prose, "TEMPLATES", tmp_path)
    prose.load.cache_clear()
    yield tmp_path
    prose.load.cache_clear()


def test_fill_joins_each_paragraph_into_one_line(templates):
    (templates / "t.md").write_text(
        "### $title\n\nOne paragraph\n  wrapped over $n lines,\ncosting $$5.\n \n$table\n",
        encoding="utf-8",
    )
    text = prose.fill("t", title="T", n=3, table="| a |\n|---|")
    assert text == "### T\n\nOne paragraph wrapped over 3 lines, costing $5.\n\n| a |\n|---|"


def test_fill_wants_exactly_the_placeholders(templates):
    (templates / "t.md").write_text("$a and ${b}\n", encoding="utf-8")
    assert prose.fill("t", a=1, b=2) == "1 and 2"
    with pytest.raises(BenchError, match="no value for b; no placeholder for -"):
        prose.fill("t", a=1)
    with pytest.raises(BenchError, match="no value for -; no placeholder for c"):
        prose.fill("t", a=1, b=2, c=3)


def test_fill_rejects_a_bad_dollar_and_a_missing_template(templates):
    (templates / "bad.md").write_text("first\n\ncosts $ 5\n", encoding="utf-8")
    with pytest.raises(BenchError, match=r"bad\.md: paragraph 2: a '\$' without a name"):
        prose.fill("bad")
    with pytest.raises(BenchError, match=r"missing\.md: cannot read the template"):
        prose.fill("missing")


# ---- paths and command lines as BENCHMARKS.md shows them


def test_shown_path_is_relative_to_the_repository_or_beside_it(tmp_path):
    repo, home = tmp_path / "work" / "nmt", tmp_path / "home"
    where = {"repo": repo, "home": home}
    assert markdown.shown_path(repo / "runs" / "bench" / "s3", **where) == "runs/bench/s3"
    shared = repo.parent / "shared" / "data" / "multi30k" / "test2016.en"
    assert markdown.shown_path(shared, **where) == "../shared/data/multi30k/test2016.en"
    assert markdown.shown_path(f"{repo}/runs/../runs/x", **where) == "runs/x"
    assert markdown.shown_path(repo, **where) == "."
    venv = home / ".cache" / "nmt" / "venv-onmt"
    assert markdown.shown_path(venv, **where) == "~/.cache/nmt/venv-onmt"
    assert markdown.shown_path("runs/ende_b", **where) == "runs/ende_b"  # relative: kept
    assert markdown.shown_path("", **where) == ""
    assert markdown.shown_path("/elsewhere/x", **where) == "/elsewhere/x"  # nothing to shorten


def test_shown_command_relativises_every_absolute_path(tmp_path):
    repo, home = tmp_path / "nmt", tmp_path / "home"
    data = repo.parent / "shared" / "data" / "multi30k"
    command = [
        home / "venv" / "bin" / "python3.11",
        repo / "scripts" / "benchmark.py",
        "translate",
        data / "test2016.en",
        "--model",
        "runs/ende_b",
        "--set",
        f"data.train_source={data / 'train.en'}",
        f"--out={repo / 'my out.txt'}",
    ]
    shown = markdown.shown_command(command, repo=repo, home=home)
    assert shown == (
        "python scripts/benchmark.py translate ../shared/data/multi30k/test2016.en --model "
        "runs/ende_b --set data.train_source=../shared/data/multi30k/train.en '--out=my out.txt'"
    )
    onmt = f"{home}/.cache/nmt/venv-onmt/bin/onmt-main --config {repo}/runs/data.yml train"
    assert markdown.shown_command(onmt, repo=repo, home=home) == (
        "onmt-main --config runs/data.yml train"
    )
    kept = "nmt train --config  runs/a.yaml --set 'train.max_steps=20'"
    assert markdown.shown_command(kept, repo=repo, home=home) == kept  # nothing to change


def test_sections_render_commands_without_this_machines_paths(tmp_path):
    ctx = samples.sample_context(tmp_path)
    data = REPO.parent / "shared" / "data" / "multi30k"
    nmt = f"{Path(sys.executable).with_name('nmt')} translate {data / 'test2016.en'}"
    onmt = f"{Path.home()}/.cache/nmt/venv-onmt/bin/onmt-main --config {REPO}/runs/d.yml infer"
    s2 = {**samples.s2_result(), "commands": [f"{nmt} --model {REPO / 'runs' / 'a'}", onmt]}
    text = SECTIONS[2].render(ctx, s2)
    assert text.endswith(
        ":\n\n    nmt translate ../shared/data/multi30k/test2016.en --model runs/a\n"
        "    onmt-main --config runs/d.yml infer"
    )
    s3 = samples.s3_result()
    s3["rows"] = [{**row, "command": nmt} for row in s3["rows"]]
    s3["limited_model_dir"] = str(REPO / "runs" / "bench" / "s3" / "limited")
    text = SECTIONS[3].render(ctx, s3)
    assert text.endswith(":\n\n    nmt translate ../shared/data/multi30k/test2016.en")
    assert "`runs/bench/s3/limited`" in text
    s5 = samples.s5_result(tmp_path / "plots" / "cost_growth.png")
    s5.update(model=str(REPO / "runs" / "ende_b"), commands=[nmt])
    s5["decode"] = {**s5["decode"], "checkpoint": str(REPO / "runs/ende_b/best/ckpt-3593")}
    text = SECTIONS[5].render(ctx, s5)
    assert "Decoding with runs/ende_b (12,660,544 parameters, runs/ende_b/best/ckpt-3593)" in text
    machine = [str(REPO)] + ([str(Path.home())] if Path.home() != Path("/") else [])
    for rendered in (SECTIONS[2].render(ctx, s2), text, ctx.provenance()):
        assert not any(path in rendered for path in machine), rendered
