"""nmt.translator: Translator (batching, order, truncation, n-best, attention), text file
reading, output formatting and attention plots, on a tiny model that memorised 20 pairs.

tests/helpers/memorised.py `make_memorised_model` trains that model once per test session
(about 5 s).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from nmt.errors import DataError
from tests.helpers.memorised import (
    MAX_SOURCE_LENGTH,
    PNG_SIGNATURE,
    make_translator,
    random_digits,
)

# === The model ===


def test_memorised_pairs_translate_exactly(memorised, translator):
    assert translator.translate(memorised.sources) == memorised.references  # config beam 2
    assert translator.translate(memorised.sources, beam_size=1) == memorised.references
    assert translator.translate(memorised.sources, beam_size=4) == memorised.references


def reference_greedy(loaded, line: str, min_length: int = 0) -> tuple[list[int], float]:
    """Greedy decoding as a plain eager loop over model.step: (target ids, log-probability)."""
    import tensorflow as tf

    from nmt import constants

    decode = loaded.config.decode
    sp = loaded.vocab.processor("source")
    ids = sp.encode(line)[:MAX_SOURCE_LENGTH] + [constants.EOS_ID]
    model = loaded.model
    memory, mask, state = model.encode(tf.constant([ids], tf.int32), training=False)
    bundle = model.prepare_memory(memory, mask)
    max_length = int(np.floor(decode.max_length_a + decode.max_length_b * len(ids)))
    token, out, total = constants.BOS_ID, [], 0.0
    for step in range(max_length + 1):
        logits, state, _ = model.step(tf.constant([token], tf.int32), state, bundle)
        log_probs = tf.nn.log_softmax(tf.cast(logits[0], tf.float32)).numpy()  # (V,)
        if step < min(min_length, max_length):
            log_probs[constants.EOS_ID] = -np.inf
        token = constants.EOS_ID if step == max_length else int(log_probs.argmax())
        total += float(log_probs[token])
        if token == constants.EOS_ID:
            break
        out.append(token)
    return out, total


def test_greedy_search_equals_a_plain_argmax_loop(loaded, translator):
    lines = ["1 2 3", "9 8 7 6 5 4 3 2 1 0 9", "4", "0 0 0 0"]
    hyps = translator.translate_hypotheses(lines, beam_size=1)
    sp = loaded.vocab.processor("target")
    for line, (hyp,) in zip(lines, hyps, strict=True):
        ids, log_prob = reference_greedy(loaded, line)
        assert hyp.text == sp.decode(ids) and hyp.length == len(ids)
        assert hyp.score == pytest.approx(log_prob, abs=1e-4)


def test_min_length_keeps_outputs_from_ending_early(loaded, memorised):
    lines = ["1 2 3", "4", "0 0 0 0"]
    short, _ = make_translator(loaded, min_length=0)
    plain = [h[0].length for h in short.translate_hypotheses(lines, beam_size=1)]
    longer, _ = make_translator(loaded, min_length=8)
    sp = loaded.vocab.processor("target")
    greedy = longer.translate_hypotheses(lines, beam_size=1)
    beam = longer.translate_hypotheses(lines, beam_size=3)
    assert min(plain) < 8  # so min_length changes these outputs
    for line, (g,), (b,) in zip(lines, greedy, beam, strict=True):
        ids, log_prob = reference_greedy(loaded, line, min_length=8)
        assert g.text == sp.decode(ids) and g.length == len(ids) >= 8
        assert g.score == pytest.approx(log_prob, abs=1e-4)
        assert b.length >= 8


# === Batching and order ===


def test_order_restored_after_length_sorting(loaded, translator):
    lines = random_digits(40, seed=3)
    assert len({len(line) for line in lines}) > 10  # random length order
    together = translator.translate_hypotheses(lines)
    alone = [translator.translate_hypotheses([line])[0] for line in lines]
    assert [h[0].text for h in together] == [h[0].text for h in alone]
    np.testing.assert_allclose(
        [h[0].score for h in together], [h[0].score for h in alone], atol=1e-4
    )


def test_small_batch_tokens_gives_the_same_translations(loaded):
    lines = random_digits(60, seed=4) + ["", "  "]
    small, _ = make_translator(loaded, batch_tokens=10)
    large, _ = make_translator(loaded, batch_tokens=100_000)
    encoded = [small.encode(line) for line in lines]
    assert len(list(small._batches(encoded, 10))) >= 30  # many batches
    assert len(list(large._batches(encoded, 100_000))) == 1
    a = small.translate_hypotheses(lines, beam_size=3, n_best=2)
    b = large.translate_hypotheses(lines, beam_size=3, n_best=2)
    assert [[h.text for h in x] for x in a] == [[h.text for h in x] for x in b]
    np.testing.assert_allclose(
        [[h.score for h in x] for x in a], [[h.score for h in x] for x in b], atol=1e-4
    )
    assert small.tracing_count() == 1  # one trace for all batch shapes


def test_batches_cover_each_input_once_within_the_token_budget(translator):
    encoded = [[5] * n + [3] if n else [] for n in (3, 0, 9, 1, 4, 4, 12, 0, 2)]
    batches = list(translator._batches(encoded, 16))
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == [i for i, ids in enumerate(encoded) if ids]
    for batch in batches:
        width = max(len(encoded[i]) for i in batch)
        assert len(batch) == 1 or len(batch) * width <= 16


def test_blank_inputs_give_empty_outputs(memorised, translator):
    lines = ["", "   ", "\t", memorised.sources[0]]
    hyps = translator.translate_hypotheses(lines, beam_size=3, n_best=3)
    assert [[h.text for h in x] for x in hyps[:3]] == [["", "", ""]] * 3
    assert hyps[3][0].text == memorised.references[0] and len(hyps[3]) == 3
    hyps[0][0].text = "changed"  # each empty hypothesis is its own object
    assert hyps[0][1].text == "" and hyps[1][0].text == ""


def test_long_input_is_truncated_with_a_warning(memorised, loaded):
    translator, warnings = make_translator(loaded)
    line = " ".join(["1 2 3"] * 100)
    ids = translator.encode(line, 7, "in.txt")
    assert len(ids) == MAX_SOURCE_LENGTH + 1 and ids[-1] == 3  # EOS
    assert len(warnings) == 1 and warnings[0].startswith("in.txt:7: ")
    assert f"translating only the first {MAX_SOURCE_LENGTH}" in warnings[0]
    assert "decode.max_source_length" in warnings[0]
    out = translator.translate([line, memorised.sources[1]])
    assert len(out) == 2 and out[0] and out[1] == memorised.references[1]
    assert len(warnings) == 2 and warnings[1].startswith("an input: ")


def test_n_best_is_sorted_and_starts_with_the_best(memorised, translator):
    lines = memorised.sources[:5] + random_digits(5, seed=5)
    hyps = translator.translate_hypotheses(lines, beam_size=4, n_best=4)
    best = translator.translate(lines, beam_size=4)
    for x, text in zip(hyps, best, strict=True):
        scores = [h.score for h in x]
        assert len(x) == 4 and scores == sorted(scores, reverse=True)
        assert x[0].text == text


# === Ensembles ===


@pytest.mark.parametrize("beam_size", [1, 4])
def test_an_ensemble_of_a_model_with_itself_equals_the_model(memorised, translator, beam_size):
    from nmt.ensemble import Ensemble, load_ensemble

    both = load_ensemble([memorised.model_dir, memorised.model_dir])
    assert isinstance(both.model, Ensemble) and both.step is None
    pair = make_translator(both)[0]
    lines = memorised.sources[:4] + random_digits(8, seed=21) + [""]
    options = dict(beam_size=beam_size, n_best=beam_size, return_attention=True)
    alone = translator.translate_hypotheses(lines, **options)
    twice = pair.translate_hypotheses(lines, **options)
    assert [[h.text for h in x] for x in twice] == [[h.text for h in x] for x in alone]
    for x, y in zip(twice, alone, strict=True):
        assert len(x) == beam_size
        np.testing.assert_allclose([h.score for h in x], [h.score for h in y], atol=1e-4)
        for a, b in zip(x, y, strict=True):
            assert (a.attention is None) == (b.attention is None)
            if a.attention is not None:
                np.testing.assert_allclose(a.attention, b.attention, atol=1e-5)
    assert pair.tracing_count() == 1


def test_an_ensemble_of_two_checkpoints_is_its_own_model(memorised, loaded):
    from nmt.ensemble import load_ensemble

    ckpt_100 = str(memorised.model_dir / "checkpoints" / "ckpt-100")
    both = load_ensemble(memorised.model_dir, ["best", ckpt_100])
    pair = make_translator(both)[0]
    lines = ["1 2 3", "9 8 7 6 5 4 3 2 1 0 9", "4"]
    hyps = pair.translate_hypotheses(lines, beam_size=1)
    single = make_translator(loaded)[0].translate_hypotheses(lines, beam_size=1)
    sp = both.vocab.processor("target")
    for line, (hyp,), (one,) in zip(lines, hyps, single, strict=True):
        ids, log_prob = reference_greedy(both, line)  # an eager loop over Ensemble.step
        assert hyp.text == sp.decode(ids) and hyp.score == pytest.approx(log_prob, abs=1e-4)
        assert hyp.score != pytest.approx(one.score, abs=1e-3)  # both members count


def test_attention_and_alignment_shapes(loaded, translator):
    sp = loaded.vocab.processor("source")
    lines = ["1 2 3 4", "9 8"]
    hyps = translator.translate_hypotheses(lines, return_attention=True)
    for line, (hyp,) in zip(lines, hyps, strict=True):
        assert hyp.source_pieces == sp.encode(line, out_type=str)
        assert len(hyp.target_pieces) == hyp.length > 0
        assert hyp.attention.shape == (hyp.length, len(hyp.source_pieces) + 1)
        np.testing.assert_allclose(hyp.attention.sum(axis=-1), 1.0, atol=1e-5)
        pairs = [tuple(map(int, p.split("-"))) for p in hyp.alignment().split()]
        assert [t for _, t in pairs] == list(range(hyp.length))
        assert all(0 <= s < len(hyp.source_pieces) for s, _ in pairs)


def test_alignment_from_attention():
    from nmt.translator import Hypothesis

    attention = np.array([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4], [0.0, 0.1, 0.9]])  # EOS column 2
    hyp = Hypothesis("x y z", -1.0, ["a", "b"], ["x", "y", "z"], attention, 3)
    assert hyp.alignment() == "1-0 0-1 1-2"  # the EOS column is never aligned to
    assert Hypothesis("", 0.0).alignment() == ""


# === Files and formatting ===


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_iter_text_lines_splits_on_newline_only(tmp_path):
    from nmt.translator import iter_text_lines

    data = "a\r\n\nb\fc\u2028d\x85e\x00f\u2029\x1c\v g\r\nשלום 😀\nlast".encode()
    lines = list(iter_text_lines(write_bytes(tmp_path / "in.txt", data)))
    assert lines == [
        (1, "a"),
        (2, ""),
        (3, "b\fc\u2028d\x85e\x00f\u2029\x1c\v g"),
        (4, "שלום 😀"),
        (5, "last"),
    ]
    assert list(iter_text_lines(write_bytes(tmp_path / "empty.txt", b""))) == []


def test_iter_text_lines_errors_name_file_and_line(tmp_path):
    from nmt.translator import check_utf8, iter_text_lines

    bad = write_bytes(tmp_path / "bad.txt", b"ok\nfine\nab\xffcd\n")
    with pytest.raises(DataError) as e:
        check_utf8(bad)
    assert str(e.value) == f"{bad}:3: invalid UTF-8 (byte 0xff at offset 2 of the line)"
    with pytest.raises(DataError, match="nope.txt: file not found"):
        list(iter_text_lines(tmp_path / "nope.txt"))
    with pytest.raises(DataError, match="is a directory"):
        list(iter_text_lines(tmp_path))


def test_iter_text_lines_reads_stdin(monkeypatch):
    from nmt.translator import iter_text_lines

    stdin = io.TextIOWrapper(io.BytesIO("x\r\ny\xff".encode("latin-1")), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stdin)
    with pytest.raises(DataError, match=r"^<stdin>:2: invalid UTF-8"):
        list(iter_text_lines("-"))


def test_format_hypotheses():
    from nmt.translator import Hypothesis, format_hypotheses

    attention = np.eye(3)[:2]  # 2 target pieces, 2 source pieces + EOS
    a = Hypothesis("x\u2028y\r\nz\x85", -0.5, ["a", "b"], ["x", "y"], attention, 2)
    b = Hypothesis("w", -1.25, ["a", "b"], ["w"], attention[:1], 1)
    one = dict(n_best=1, with_scores=False, alignments=False)
    assert format_hypotheses(4, [a, b], **one) == ["x y  z "]
    assert format_hypotheses(4, [a], **{**one, "with_scores": True}) == ["x y  z  ||| -0.500000"]
    assert format_hypotheses(4, [a], **{**one, "alignments": True}) == ["x y  z  ||| 0-0 1-1"]
    assert format_hypotheses(4, [a, b], n_best=2, with_scores=False, alignments=True) == [
        "4 ||| x y  z  ||| -0.500000 ||| 0-0 1-1",
        "4 ||| w ||| -1.250000 ||| 0-0",
    ]
    for line in format_hypotheses(0, [a], **one):
        assert line.splitlines() == [line]


def test_plot_attention_writes_a_png(tmp_path, translator):
    from nmt.translator import Hypothesis, plot_attention

    (hyp,) = translator.translate_hypotheses(["3 1 4 1 5"], return_attention=True)[0]
    path = plot_attention(hyp, tmp_path / "sub" / "a.png")
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 0 and height > 0
    with pytest.raises(ValueError, match="no attention"):
        plot_attention(Hypothesis("", 0.0), tmp_path / "b.png")


# === Decoding options ===


def test_line_seed_is_an_int32_hash_of_seed_and_line():
    from nmt.translator import line_seed

    seeds = [line_seed(s, n) for s in (0, 1, 2**31 - 1) for n in range(1, 200)]
    assert all(-(2**31) <= x < 2**31 for x in seeds)
    assert len(set(seeds)) == len(seeds)  # no collisions among these
    assert line_seed(7, 3) == line_seed(7, 3) != line_seed(7, 4)


def test_prefix_and_sampling_through_the_translator(memorised, translator):
    lines = memorised.sources[:6]
    encoded = [translator.encode(line) for line in lines]
    prefix = translator.encode_prefix("9 9")
    forced = translator.translate_encoded(encoded, prefixes=[prefix] * 6, beam_size=3)
    assert all(h[0].text.startswith("9 9") for h in forced)
    assert all(h[0].length >= len(prefix) for h in forced)
    none = translator.translate_encoded(encoded, prefixes=[[]] * 6, beam_size=3)
    assert [h[0].text for h in none] == translator.translate(lines, beam_size=3)
    sampled = translator.translate_encoded(encoded, beam_size=1, sampling=(0, 5.0),
                                           seeds=list(range(6)))  # fmt: skip
    alone = translator.translate_encoded(encoded[2:3], beam_size=1, sampling=(0, 5.0), seeds=[2])
    assert sampled[2][0].text == alone[0][0].text  # a row's sample does not depend on the batch
    assert [h[0].text for h in sampled] != translator.translate(lines, beam_size=1)
    with pytest.raises(DataError, match="sampling decodes with beam size 1, not 3"):
        translator.translate_encoded(encoded, beam_size=3, sampling=(0, 1.0))
