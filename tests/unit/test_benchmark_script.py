"""bench/ and scripts/benchmark.py: the pure parts (no TensorFlow, no training).

Markdown block replacement between the markers, section merging, atomic writes, the
`nmt train` log parser and steady-state rate, the builder of inputs of an exact piece count,
the table formatter, the choice of batch_tokens and the steady-state decode rates.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import pytest

from bench import common, inputs, logs, plan
from bench import markdown as md
from nmt import fileio
from nmt.errors import DataError
from tests.helpers import load_script, umask

REPO = Path(__file__).resolve().parents[2]


bm = load_script("benchmark", "benchmark_script")  # the command line (parse_args)


# ---- markers


def test_markers_appended_when_absent():
    text = "# Benchmarks\n\nhand-written\n"
    out = md.replace_between_markers(text, "generated\n")
    assert out == f"# Benchmarks\n\nhand-written\n\n{md.BEGIN}\ngenerated\n{md.END}\n"


def test_markers_appended_to_file_without_final_newline_and_to_empty_text():
    out = md.replace_between_markers("last line", "x")
    assert out == f"last line\n\n{md.BEGIN}\nx\n{md.END}\n"
    assert md.replace_between_markers("", "x\n") == f"{md.BEGIN}\nx\n{md.END}\n"


def test_only_text_between_markers_is_replaced():
    before, after = "# top\nkeep me\n", "\n## after\nkeep too\n"
    text = f"{before}{md.BEGIN}\nold table\nold line\n{md.END}{after}"
    out = md.replace_between_markers(text, "new table\n")
    assert out == f"{before}{md.BEGIN}\nnew table\n{md.END}{after}"
    assert md.replace_between_markers(out, "new table\n") == out  # idempotent


@pytest.mark.parametrize(
    "text, message",
    [
        (f"{md.BEGIN}\na\n{md.END}\n{md.BEGIN}\nb\n{md.END}\n", "found 2 and 2"),
        (f"{md.BEGIN}\na\n", "found 1 and 0"),
        (f"a\n{md.END}\n", "found 0 and 1"),
        (f"{md.END}\na\n{md.BEGIN}\n", "comes before"),
    ],
)
def test_broken_markers_are_an_error(text, message):
    with pytest.raises(common.BenchError, match=message):
        md.replace_between_markers(text, "x\n")


def _section(n: int, body: str) -> str:
    return f"{md.SECTION_MARK.format(n)}\n### B{n}\n{body}\n"


def test_update_markdown_replaces_selected_sections_and_keeps_the_rest(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\nmanual part\n", encoding="utf-8")
    md.update_markdown(path, "## head\n", {1: _section(1, "one"), 3: _section(3, "three")})
    md.update_markdown(path, "## head\n", {2: _section(2, "two"), 3: _section(3, "THREE")})
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nmanual part\n\n" + md.BEGIN + "\n## head\n")
    assert text.endswith(md.END + "\n")
    block = md.extract_block(text)
    head, sections = md.split_sections(block)
    assert head.strip() == "## head"
    assert sorted(sections) == [1, 2, 3]
    assert "one" in sections[1] and "two" in sections[2]
    assert "THREE" in sections[3] and "three" not in sections[3]
    assert block.index("### B1") < block.index("### B2") < block.index("### B3")
    assert [p.name for p in tmp_path.iterdir()] == ["BENCHMARKS.md"]  # no temporary left


def test_update_markdown_creates_a_missing_file(tmp_path):
    path = tmp_path / "sub" / "B.md"
    md.update_markdown(path, "", {4: "### B4\nbody\n"})
    text = path.read_text(encoding="utf-8")
    assert text == f"{md.BEGIN}\n{md.SECTION_MARK.format(4)}\n### B4\nbody\n{md.END}\n"


def test_write_atomic_keeps_the_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    path = tmp_path / "out.md"
    path.write_text("old\n", encoding="utf-8")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fileio.os, "replace", fail)  # nmt.fileio.write_atomic does the work
    with pytest.raises(DataError, match=r"out\.md: cannot write \(disk full\); it is unchanged"):
        md.write_atomic(path, "new\n")
    assert path.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.md"]


# ---- nmt train log


LOG = """\
[     9.100] training /tmp/m: 1 replica(s), precision float32, 22,000,000 parameters
[    30.000] step 5/20 loss 8.9 lr 0.0002 gnorm 3.1 150 tok/s elapsed 0:00:20 eta 0:01:00
[    40.000] step 10/20 loss 8.1 lr 0.0002 gnorm 2.5 1.2k tok/s elapsed 0:00:30 eta 0:00:30
[    60.000] step 15/20 loss 7.9 lr 0.0002 gnorm 2.1 900 tok/s elapsed 0:00:50 eta 0:00:10
[    60.500] eval step 15: dev loss 7.5 bleu 0.1 (greedy)
[    61.000] saved /tmp/m/checkpoints/ckpt-15; data: read 100 pairs
"""


def test_parse_nmt_train_log_reads_rates_with_k_suffix_and_times():
    windows = logs.parse_nmt_train_log(LOG)
    assert [(w.step, w.tokens_per_s, w.time) for w in windows] == [
        (5, 150.0, 30.0),
        (10, 1200.0, 40.0),
        (15, 900.0, 60.0),
    ]


def test_parse_nmt_train_log_without_time_prefix():
    text = "step 50/100000 loss 7.8526 lr 0.0005 gnorm 1.64 3.0k tok/s elapsed 0:01:56 eta 0:43:03"
    (window,) = logs.parse_nmt_train_log(text + "\nnot a step line 2.0k tok/s\n")
    assert (window.step, window.tokens_per_s, window.time) == (50, 3000.0, None)


def test_steady_rate_skips_the_first_window_and_weights_by_duration():
    rate = logs.steady_rate([logs.parse_nmt_train_log(LOG)], skip=1)
    # windows 2 and 3: 1200 tok/s for 10 s, 900 tok/s for 20 s -> 30000 tokens / 30 s
    assert rate.tokens_per_s == pytest.approx(1000.0)
    assert rate.step_seconds == pytest.approx(3.0)  # 30 s over 10 steps
    assert (rate.steps, rate.windows) == (10, 2)


def test_steady_rate_skips_the_first_window_of_every_run_and_means_without_times():
    run1 = [logs.LogWindow(2, 100.0), logs.LogWindow(4, 300.0), logs.LogWindow(6, 500.0)]
    run2 = [logs.LogWindow(8, 10_000.0), logs.LogWindow(10, 700.0)]  # resumed run: 8 is warm-up
    rate = logs.steady_rate([run1, run2], skip=1)
    assert rate.tokens_per_s == pytest.approx((300 + 500 + 700) / 3)
    assert rate.step_seconds is None
    assert (rate.steps, rate.windows) == (6, 3)


def test_steady_rate_without_windows_after_the_first_is_none():
    assert logs.steady_rate([[logs.LogWindow(3, 100.0, 5.0)]], skip=1) is None
    assert logs.steady_rate([], skip=1) is None


# ---- inputs of an exact number of pieces


@pytest.fixture(scope="module")
def tiny_spm(tmp_path_factory):
    spm = pytest.importorskip("sentencepiece")
    tmp = tmp_path_factory.mktemp("spm")
    rng = random.Random(7)
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "be", "do", "fu", "gi"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(300)]
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(400)]
    corpus = tmp / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(tmp / "tiny"),
        vocab_size=80,
        model_type="unigram",
        num_threads=1,
        minloglevel=2,
    )
    return spm.SentencePieceProcessor(model_file=str(tmp / "tiny.model")), lines


@pytest.mark.parametrize("length", [1, 10, 25, 60])
def test_build_length_inputs_gives_exact_piece_counts(tiny_spm, length):
    sp, lines = tiny_spm
    texts = inputs.build_length_inputs(lines, sp.encode, length, count=5)
    assert len(texts) == 5
    assert [len(sp.encode(t)) for t in texts] == [length] * 5
    assert len(set(texts)) == 5  # different inputs
    vocabulary = {w for line in lines for w in line.split()}
    for text in texts:  # whole words of the sentences, nothing invented or cut
        assert set(text.split()) <= vocabulary


def test_build_length_inputs_fails_when_the_text_is_too_short(tiny_spm):
    sp, lines = tiny_spm
    with pytest.raises(common.BenchError, match="of 2 inputs of exactly 100000 pieces"):
        inputs.build_length_inputs(lines[:20], sp.encode, 100_000, count=2)


def test_build_length_inputs_with_a_counting_encoder():
    # one piece per character (spaces included): exact lengths need whole-word boundaries
    sentences = ["ab cd", "efg", "h ij kl"]
    texts = inputs.build_length_inputs(sentences, list, 5, count=2)
    assert texts == ["ab cd", "efg h"]


# ---- tables and small helpers


def test_format_table_aligns_escapes_and_leaves_none_empty():
    table = md.format_table(
        [("system", "l"), ("tok/s", "r")], [["nmt | a", "1,234"], ["peer", None]]
    )
    assert table.splitlines() == [
        "| system | tok/s |",
        "|---|---:|",
        "| nmt \\| a | 1,234 |",
        "| peer |  |",
    ]


def test_format_table_rejects_a_row_of_the_wrong_width():
    with pytest.raises(ValueError, match="2 cells, the table 3 columns"):
        md.format_table([("a", "l"), ("b", "l"), ("c", "l")], [[1, 2]])


def test_fmt():
    assert md.fmt(12345.678, 1) == "12,345.7"
    assert md.fmt(None) == ""
    assert md.fmt(float("nan"), missing="n/a") == "n/a"


def test_pick_batch_tokens_scales_the_closest_measurement():
    assert inputs.pick_batch_tokens({1024: 54.1, 4096: 208.6}, 64) == 1208
    assert inputs.pick_batch_tokens({1200: 63.0, 1024: 54.0}, 64) == 1216


def test_finish_decode_row_cancels_start_up():
    row = {
        "full": {"wall": 30.0},
        "head": {"wall": 12.0},
        "full_lines": 1000,
        "head_lines": 100,
        "pieces": [2] * 100 + [4] * 900,
    }
    out = inputs.finish_decode_row(row, head_lines=100)
    assert out["sentences_per_s"] == pytest.approx(900 / 18)
    assert out["pieces_per_s"] == pytest.approx(3600 / 18)
    assert out["mean_pieces"] == pytest.approx(3.8)


@pytest.mark.parametrize("sections", ["0", "1,6", "x", ""])
def test_bad_sections_are_a_usage_error(sections, capsys):
    with pytest.raises(SystemExit) as exc:
        bm.parse_args(["--sections", sections])
    assert exc.value.code == 2
    assert "--sections" in capsys.readouterr().err


def test_planned_budget_covers_the_selected_sections():
    budget = plan.planned_budget(plan.FULL, [1, 3, 5], peer=True)
    assert sorted(budget) == [1, 3, 5]
    assert all(v > 0 for v in budget.values())
    assert sum(plan.planned_budget(plan.QUICK, [1, 2, 3, 5], peer=False).values()) < sum(
        plan.planned_budget(plan.FULL, [1, 2, 3, 5], peer=False).values()
    )


def _report(steps_per_sec: float, tokens_per_sec: int):
    from types import SimpleNamespace

    return SimpleNamespace(steps_per_sec=steps_per_sec, tokens_per_sec=tokens_per_sec)


def test_peer_steady_rate_skips_zero_and_first_reports_and_weights_by_duration():
    from types import SimpleNamespace

    run1 = SimpleNamespace(
        reports=[_report(0.0, 0), _report(0.5, 999), _report(0.5, 1000), _report(0.25, 400)]
    )
    run2 = SimpleNamespace(reports=[_report(0.5, 600)])  # a single report is kept
    rate = logs.peer_steady_rate([run1, run2], batch_size=64)
    # kept: (0.5, 1000), (0.25, 400), (0.5, 600); durations 2, 4, 2 s per window of 1 step
    assert rate["windows"] == 3
    assert rate["tokens_per_s"] == pytest.approx((2000 + 1600 + 1200) / 8)
    assert rate["tokens_per_s_nmt"] == pytest.approx(600 + 3 * 64 / 8)
    assert rate["step_seconds"] == pytest.approx(8 / 3)
    empty = logs.peer_steady_rate([SimpleNamespace(reports=[_report(0.0, 0)])], batch_size=64)
    assert empty["tokens_per_s"] is None and empty["windows"] == 0


def test_parse_parameters_from_the_nmt_train_log():
    line = (
        "[   107.330] training /w/s2/nmt_bt1144: 1 replica(s), precision float32, "
        "22,527,808 parameters, 29000 training pairs (0 with an empty side)\n"
    )
    assert logs.parse_parameters("noise\n" + line) == 22_527_808
    assert logs.parse_parameters("step 5/20 loss 8.9 150 tok/s\n") is None


# ---- section 3: the same output limit for both same-size models


def _model_dir(path: Path) -> Path:
    from nmt.config import Config, save_config

    path.mkdir()
    config = Config()
    config.decode.beam_size = 4
    save_config(config, path / "config.yaml")
    (path / "VERSION").write_text("0.1.0\n", encoding="utf-8")
    (path / "joint.model").write_bytes(b"spm")
    (path / "checkpoints").mkdir()
    for name in ("ckpt-5.index", "ckpt-5.data-00000-of-00001"):
        (path / "checkpoints" / name).write_bytes(b"x")
    return path


def test_limited_model_dir_sets_an_absolute_limit_on_the_same_checkpoints(tmp_path):
    from nmt.checkpoints import resolve_checkpoint
    from nmt.modeldir import read_config

    model = _model_dir(tmp_path / "model")
    original = (model / "config.yaml").read_bytes()
    view = inputs.limited_model_dir(model, tmp_path / "s3" / "model_max50", 50)
    config = read_config(view)
    assert (config.decode.max_length_a, config.decode.max_length_b) == (50.0, 0.0)
    assert config.decode.min_length == 0
    assert config.decode.beam_size == 4  # everything else as saved
    assert config.model == read_config(model).model
    assert (model / "config.yaml").read_bytes() == original  # the model dir is untouched
    prefix = resolve_checkpoint(view, "last")
    assert prefix == view / "checkpoints" / "ckpt-5"
    assert Path(str(prefix) + ".index").resolve() == model / "checkpoints" / "ckpt-5.index"
    assert (view / "joint.model").read_bytes() == b"spm"
    assert sorted(p.name for p in view.iterdir()) == sorted(p.name for p in model.iterdir())
    again = inputs.limited_model_dir(model, view, 7, 7)  # rebuilt over the earlier one
    assert read_config(again).decode.max_length_a == 7.0
    assert read_config(again).decode.min_length == 7
    assert (model / "checkpoints" / "ckpt-5.index").exists()  # links removed, not targets
    assert [p.name for p in view.parent.iterdir()] == ["model_max50"]  # no temporary left


def test_limited_model_dir_follows_the_umask(tmp_path):
    model = _model_dir(tmp_path / "model")
    with umask(0o002) as mode:
        view = inputs.limited_model_dir(model, tmp_path / "view", 50)
    assert view.stat().st_mode & 0o777 == mode == 0o775


def test_limited_model_dir_rejects_a_bad_limit_or_directory(tmp_path):
    model = _model_dir(tmp_path / "model")
    with pytest.raises(common.BenchError, match="at least 1, got 0"):
        inputs.limited_model_dir(model, tmp_path / "view", 0)
    message = r"minimum decoding length must be in 0\.\.5, got 6"
    with pytest.raises(common.BenchError, match=message):
        inputs.limited_model_dir(model, tmp_path / "view", 5, 6)
    with pytest.raises(common.BenchError, match="not a model directory"):
        inputs.limited_model_dir(tmp_path, tmp_path / "view", 50)
    (model / "config.yaml").write_text("decode: [1, 2]\n", encoding="utf-8")
    with pytest.raises(common.BenchError, match=r"config\.yaml: decode: not a mapping"):
        inputs.limited_model_dir(model, tmp_path / "view", 50)
    assert not (tmp_path / "view").exists()


def test_matched_decode_batch_tokens():
    # mean source length 14 pieces + EOS = 15, x 32 sentences = 480
    assert inputs.matched_decode_batch_tokens([13, 14, 15]) == 480
    assert inputs.matched_decode_batch_tokens([13, 14, 15], sentences=2) == 32  # 30 -> 32
    assert inputs.matched_decode_batch_tokens([0]) == 32  # 1 x 32
    assert inputs.matched_decode_batch_tokens([0], sentences=1) == 8  # at least one multiple
    with pytest.raises(common.BenchError, match="no source lines"):
        inputs.matched_decode_batch_tokens([])


def test_decode_length_options_and_default_model():
    args = bm.parse_args([])
    assert args.decode_max_length == common.DEFAULT_DECODE_MAX_LENGTH == 15
    assert args.decode_min_length == 15  # exactly L pieces unless told otherwise
    assert args.model == Path("runs") / "ende_b"  # relative: no machine path
    longer = bm.parse_args(["--decode-max-length", "80"])
    assert (longer.decode_max_length, longer.decode_min_length) == (80, 80)
    free = bm.parse_args(["--decode-max-length", "50", "--decode-min-length", "0"])
    assert (free.decode_max_length, free.decode_min_length) == (50, 0)


def test_bad_decode_max_length_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        bm.parse_args(["--decode-max-length", "0"])
    assert exc.value.code == 2
    assert "--decode-max-length" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        bm.parse_args(["--decode-max-length", "10", "--decode-min-length", "11"])
    assert exc.value.code == 2
    assert "--decode-min-length: expected 0 to --decode-max-length (10), got 11" in (
        capsys.readouterr().err
    )


def test_planned_decoding_grows_with_the_output_limit():
    short = plan.planned_budget(plan.FULL, [2, 3], peer=True, decode_max_length=50)
    long = plan.planned_budget(plan.FULL, [2, 3], peer=True, decode_max_length=250)
    assert long[2] == short[2] and long[3] > short[3]
    # worst case: 1100 lines (full + head) of the same-size models at beams 5 and 1: ours
    # twice (its own batch and the peer's), the peer's once
    extra = sum(
        1100 * (plan.babble_seconds_per_line(b, 250, p) - plan.babble_seconds_per_line(b, 50, p))
        for b in (5, 1)
        for p in (False, False, True)
    )
    assert long[3] - short[3] == pytest.approx(extra)
    no_peer = plan.planned_budget(plan.FULL, [3], peer=False, decode_max_length=250)
    assert no_peer[3] < plan.planned_budget(plan.FULL, [3], peer=True, decode_max_length=250)[3]
    assert plan.babble_seconds_per_line(5, 100, peer=True) == pytest.approx(
        2 * plan.babble_seconds_per_line(5, 50) * plan.PEER_STEP_FACTOR
    )


# ---- the time budget, scaled to this machine by the matmul probe


def test_planned_budget_scales_by_the_probe_rate_against_the_reference():
    sections = [1, 2, 3, 4, 5]
    reference = plan.planned_budget(plan.FULL, sections, peer=True)
    same = plan.planned_budget(plan.FULL, sections, peer=True, gflops=plan.REFERENCE_GFLOPS)
    assert same == pytest.approx(reference)
    half = plan.planned_budget(plan.FULL, sections, peer=True, gflops=plan.REFERENCE_GFLOPS / 2)
    quad = plan.planned_budget(plan.FULL, sections, peer=True, gflops=plan.REFERENCE_GFLOPS * 4)
    assert sorted(half) == sorted(quad) == sections
    for n in sections:  # a machine half as fast takes twice as long; four times as fast, 1/4
        assert half[n] == pytest.approx(2 * reference[n])
        assert quad[n] == pytest.approx(reference[n] / 4)
    assert plan.machine_factor(None) == plan.machine_factor(0.0) == 1.0
    assert plan.machine_factor(float("nan")) == 1.0


def test_budget_line_says_it_is_an_estimate_from_a_probe_of_this_machine():
    gflops = plan.REFERENCE_GFLOPS / 2
    budget = plan.planned_budget(plan.QUICK, [1, 2], peer=False, gflops=gflops)
    line = plan.budget_line(budget, gflops)
    assert line.startswith("planned budget (an estimate: the reference machine's costs x 2.00, ")
    assert "scaled from a probe of this machine" in line
    assert f"at {gflops:.1f} GFLOP/s, 135 on the reference machine" in line
    assert f"B1 {budget[1] / 60:.1f} min, B2 {budget[2] / 60:.1f} min; total " in line
    unscaled = plan.budget_line(plan.planned_budget(plan.QUICK, [1], peer=False), None)
    assert "unscaled: no probe rate" in unscaled


def test_probe_gflops_counts_the_flops_of_its_fastest_product():
    ticks = iter(range(1000))  # a clock of 5 ms ticks: every product takes one tick

    def clock():
        return 0.005 * next(ticks)

    rate = plan.probe_gflops(size=64, seconds=0.05, clock=clock)
    assert rate == pytest.approx(2 * 64**3 / 0.005 / 1e9)
    assert next(ticks) < 40  # stopped once `seconds` of fake time had passed


# ---- section 3's extra decoding rows


@pytest.mark.parametrize("bf16_units", [False, True])
def test_section3_rows_name_the_shortlist_defaults_and_add_bfloat16_only_where_auto_picks_it(
    bf16_units, monkeypatch
):
    import nmt.precision
    from bench.sections import s3_decode
    from nmt.config import DecodeConfig

    monkeypatch.setattr(nmt.precision, "cpu_bf16_flags", lambda: ["amx_bf16"] if bf16_units else [])
    rows = s3_decode.variants()
    decode = DecodeConfig()
    default = f"shortlist k={decode.shortlist_top_k} N={decode.shortlist_frequent}"
    assert rows[f"{common.NMT_A}, {default} (default)"] == ["--shortlist"]
    bf16 = {name: args for name, args in rows.items() if "mixed_bfloat16" in name}
    if not bf16_units:
        assert bf16 == {}
    else:
        assert bf16 == {
            f"{common.NMT_A}, mixed_bfloat16": ["--precision", "mixed_bfloat16"],
            f"{common.NMT_A}, mixed_bfloat16, {default}": [
                "--precision",
                "mixed_bfloat16",
                "--shortlist",
            ],
        }


class _Section3Context:
    """What section 3's model lookup reads of a Benchmark: results, args, log."""

    def __init__(self, results, skip_peer=False):
        self.results = results
        self.args = argparse.Namespace(skip_peer=skip_peer)
        self.logged = []

    def log(self, message):
        self.logged.append(message)


def test_section3_alone_trains_section2s_models_first(monkeypatch, tmp_path):
    from bench.sections import s2_train, s3_decode

    trained = {"systems": [{"model_dir": str(tmp_path)}]}
    calls = []
    monkeypatch.setattr(s2_train, "run", lambda ctx: calls.append(ctx) or trained)
    ctx = _Section3Context(results={})
    assert s3_decode._section2_models(ctx) is trained
    assert calls == [ctx]
    assert ctx.logged == ["section 3 needs the section 2 models: training them first"]


def test_section3_reuses_section2s_models_when_they_are_there(monkeypatch, tmp_path):
    from bench.sections import s2_train, s3_decode

    monkeypatch.setattr(s2_train, "run", lambda ctx: pytest.fail("trained again"))
    done = {"systems": [{"model_dir": str(tmp_path)}, {}, {"model_dir": str(tmp_path)}]}
    ctx = _Section3Context(results={"2": done})
    assert s3_decode._section2_models(ctx) is done
    assert ctx.logged == []
