"""nmt.shortlist: the IBM-1 table, its file, the per-batch id set, decoding with it (identical
to no shortlist when it holds every id, never outside it otherwise), ensembles, the export
flag and the command-line errors."""

from __future__ import annotations

import random

import numpy as np
import pytest
from click.testing import CliRunner

from nmt import shortlist as sl
from nmt.cli import cli
from nmt.constants import EOS_ID, PAD_ID
from nmt.errors import ConfigError, DataError
from tests.helpers.export import (
    INPUTS,
    make_model_dir,
    make_tiny_export,
    read_export_info,
    run_text,
)

# === The table ===

DICTIONARY = {s: 30 + s for s in range(10, 20)}  # source id s translates to target id s + 30
THE = 50  # a target word in every sentence, explained by no source word


def synthetic_pairs(count: int, seed: int = 0):
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        source = rng.sample(sorted(DICTIONARY), rng.randint(2, 5))
        target = [DICTIONARY[s] for s in source] + [THE]
        rng.shuffle(target)
        pairs.append((source, target))
    return pairs


def test_the_learned_table_holds_the_obvious_pairs():
    table = sl.learn_table(synthetic_pairs(300), 25, 60, top_k=4, iterations=5)
    assert table.targets.shape == (25, 4) and table.targets.dtype == np.int32
    for s, t in DICTIONARY.items():
        assert table.targets[s, 0] == t, (s, table.targets[s], table.probs[s])
        assert table.probs[s, 0] > 0.5 and np.all(np.diff(table.probs[s]) <= 0)
    assert not table.targets[:10].any() and not table.probs[:10].any()  # unseen: all PAD
    assert table.frequent[0] == THE and len(table.frequent) == 60 - 4
    assert set(table.frequent[:11].tolist()) == {THE, *DICTIONARY.values()}
    assert not set(table.frequent.tolist()) & {0, 1, 2, 3}
    assert table.pairs == 300 and table.iterations == 5


def test_table_file_round_trip_and_bad_files(tmp_path):
    table = sl.learn_table(synthetic_pairs(50), 25, 60, digest="abc", top_k=3)
    path = table.save(tmp_path / "shortlist.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shortlist.npz"]
    again = sl.Table.load(path)
    np.testing.assert_array_equal(again.targets, table.targets)
    np.testing.assert_array_equal(again.probs, table.probs)
    np.testing.assert_array_equal(again.frequent, table.frequent)
    assert (again.digest, again.pairs, again.iterations, again.top_k) == ("abc", 50, 5, 3)
    good = path.read_bytes()
    damaged = {
        "bad.npz": b"not a table",
        "empty.npz": b"",  # np.load: EOFError
        "cut.npz": good[: len(good) // 2],  # zipfile.BadZipFile
        "flipped.npz": good[:-200] + bytes(b ^ 0xFF for b in good[-200:]),
    }
    for name, data in damaged.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError, match=f"{name}: cannot read the shortlist") as error:
            sl.Table.load(tmp_path / name)
        assert "pickle" not in str(error.value)  # numpy's advice to load pickles unsafely
    with pytest.raises(DataError, match=r"bad.npz: cannot read the shortlist \(not an .npz"):
        sl.Table.load(tmp_path / "bad.npz")
    with pytest.raises(ConfigError, match="--top-k"):
        sl.learn_table(synthetic_pairs(5), 25, 60, top_k=0)


def test_the_em_in_chunks_learns_the_same_table_as_in_one():
    pairs = synthetic_pairs(300, seed=3)
    whole = sl.learn_table(pairs, 25, 60, top_k=6, iterations=4)
    for chunk_links in (1, 37, 500):  # one pair a chunk, a few, many
        chunked = sl.learn_table(pairs, 25, 60, top_k=6, iterations=4, chunk_links=chunk_links)
        np.testing.assert_array_equal(chunked.targets, whole.targets)
        np.testing.assert_allclose(chunked.probs, whole.probs, rtol=1e-6)
        np.testing.assert_array_equal(chunked.frequent, whole.frequent)
    pair_src, _, prob, _ = sl.ibm1(pairs, 25, 60, 4, chunk_links=37)
    sums = np.bincount(pair_src, prob)  # p(. | s) sums to one for every s seen
    assert np.allclose(sums[np.unique(pair_src)], 1.0)


def test_a_top_k_beyond_the_target_vocabulary_keeps_every_target():
    table = sl.learn_table(synthetic_pairs(50), 25, 60, top_k=10**9)  # no (25, 10^9) array
    assert table.top_k == 60
    assert sl.learn_table(synthetic_pairs(50), 25, 60, top_k=60).top_k == 60


def test_shortlist_ids_are_the_sorted_union():
    table = sl.learn_table(synthetic_pairs(300), 25, 60, top_k=4)
    shortlist = sl.for_table(table, 60, top_k=2, frequent=3)
    source = np.array([[12, 15, EOS_ID], [17, EOS_ID, PAD_ID]], np.int32)
    want = {0, 1, 2, 3, *table.frequent[:3].tolist()}
    for s in source.ravel():
        want |= set(table.targets[s, :2].tolist())
    got = shortlist.ids(source).numpy()
    assert got.tolist() == sorted(want) and got.dtype == np.int32
    assert shortlist.min_size == 7 and shortlist.describe() == {"top_k": 2, "frequent": 3}


def test_configure_applies_the_command_line():
    from nmt.config import DecodeConfig

    decode = DecodeConfig()
    assert not decode.shortlist
    on = sl.configure(decode, None, 7, None)
    assert (on.shortlist, on.shortlist_top_k, on.shortlist_frequent) == (True, 7, 200)
    assert not decode.shortlist  # a copy
    assert not sl.configure(on, False).shortlist
    assert sl.configure(decode, True).shortlist
    with pytest.raises(ConfigError, match="--shortlist-frequent"):
        sl.configure(decode, True, None, -1)


# === Decoding ===


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random-weight model directory with its shortlist (from its own train.src/tgt)."""
    from nmt.checkpoints import load_model

    model_dir = make_model_dir(tmp_path_factory.mktemp("shortlist") / "model")
    made = sl.make_shortlist(
        model_dir, source=model_dir / "train.src", target=model_dir / "train.tgt", top_k=50
    )
    assert made.path == model_dir / "shortlist.npz" and made.pairs == 300
    return load_model(model_dir)


def decoder(loaded, shortlist=None, **decode):
    import dataclasses

    from nmt.translator import Translator

    config = dataclasses.replace(loaded.config.decode, **decode)
    return Translator(loaded.model, loaded.vocab, config, warn=lambda m: None, shortlist=shortlist)


def every_id(loaded):
    return sl.for_table(sl.Table.load(loaded.model_dir / "shortlist.npz"),
                        loaded.vocab.target_size, 50, loaded.vocab.target_size)  # fmt: skip


@pytest.mark.parametrize("beam_size", [1, 3])
def test_a_shortlist_of_the_whole_vocabulary_translates_identically(tiny, beam_size):
    everything = every_id(tiny)
    assert everything.min_size == tiny.vocab.target_size
    options = {"beam_size": beam_size, "n_best": beam_size, "return_attention": True}
    full = decoder(tiny).translate_hypotheses(INPUTS, **options)
    listed = decoder(tiny, everything).translate_hypotheses(INPUTS, **options)
    for a, b in zip(full, listed, strict=True):
        assert [h.text for h in a] == [h.text for h in b]
        assert [h.score for h in a] == [h.score for h in b]
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x.attention, y.attention)


def test_outputs_stay_inside_each_batch_shortlist(tiny):
    table = sl.Table.load(tiny.model_dir / "shortlist.npz")
    shortlist = sl.for_table(table, tiny.vocab.target_size, top_k=1, frequent=3)
    translator = decoder(tiny, shortlist, min_length=2)
    sp = tiny.vocab.processor("target")
    changed = 0
    full = decoder(tiny, min_length=2)
    for line in INPUTS:
        encoded = [translator.encode(line)]
        if not encoded[0]:
            continue
        (hyps,) = translator.translate_encoded(encoded, beam_size=3, n_best=3,
                                               return_attention=True)  # fmt: skip
        allowed = set(shortlist.ids(np.array(encoded, np.int32)).numpy().tolist())
        for h in hyps:
            assert {sp.piece_to_id(p) for p in h.target_pieces} <= allowed, line
            assert h.length >= 2
        changed += hyps[0].text != full.translate_encoded(encoded, beam_size=3)[0][0].text
    assert changed  # the shortlist is small enough to change some translations
    with pytest.raises(DataError, match="raise --shortlist-frequent"):
        translator.translate([INPUTS[0]], beam_size=8)


def test_an_ensemble_decodes_over_the_shortlist_too(tiny):
    import dataclasses

    from nmt.ensemble import Ensemble

    table = sl.Table.load(tiny.model_dir / "shortlist.npz")
    shortlist = sl.for_table(table, tiny.vocab.target_size, top_k=2, frequent=4)
    pair = dataclasses.replace(tiny, model=Ensemble([tiny.model, tiny.model]))
    one = decoder(tiny, shortlist).translate_hypotheses(INPUTS, beam_size=3)
    two = decoder(pair, shortlist).translate_hypotheses(INPUTS, beam_size=3)
    assert [h[0].text for h in one] == [h[0].text for h in two]
    np.testing.assert_allclose([h[0].score for h in one], [h[0].score for h in two], atol=1e-5)


def test_for_decoding_errors_name_the_fix(tiny, tmp_path):
    from nmt.config import DecodeConfig

    on = sl.configure(DecodeConfig(), True, 10, 5)
    assert sl.for_decoding(tiny.model_dir, tiny.vocab, DecodeConfig()) is None
    assert sl.for_decoding(tiny.model_dir, tiny.vocab, on).min_size == 9
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(DataError, match=r"no shortlist .*`nmt shortlist --model .*bare`"):
        sl.for_decoding(bare, tiny.vocab, on)
    table = sl.Table.load(tiny.model_dir / "shortlist.npz")
    assert table.top_k >= tiny.vocab.target_size  # rows as wide as the vocabulary: any k
    assert sl.for_decoding(tiny.model_dir, tiny.vocab, sl.configure(on, True, 60)) is not None
    narrow = sl.Table(table.targets[:, :4], table.probs[:, :4], table.frequent, table.digest,
                      1, 1)  # fmt: skip
    narrow.save(bare / "shortlist.npz")
    with pytest.raises(DataError, match="keeps 4 targets per source piece.*--top-k 5"):
        sl.for_decoding(bare, tiny.vocab, sl.configure(on, True, 5))
    other = sl.Table(table.targets, table.probs, table.frequent, "elsewhere", 1, 1)
    other.save(bare / "shortlist.npz")
    with pytest.raises(DataError, match="learned for another vocabulary"):
        sl.for_decoding(bare, tiny.vocab, on)


# === Export and command line ===


def test_export_with_the_shortlist_flag_reloads_and_translates(tiny, tmp_path):
    from nmt.config import load_config
    from nmt.export import load_export

    base = tmp_path / "export"
    result = CliRunner().invoke(cli, ["export", "--model", str(tiny.model_dir), "--output",
                                      str(base), "--shortlist-top-k", "2",
                                      "--shortlist-frequent", "4"])  # fmt: skip
    assert result.exit_code == 0, result.output
    info = read_export_info(base / "1")
    assert info["shortlist"] == {"top_k": 2, "frequent": 4}
    decode = load_config(base / "1" / "assets.extra" / "config.yaml").decode
    assert (decode.shortlist, decode.shortlist_top_k, decode.shortlist_frequent) == (True, 2, 4)
    table = sl.Table.load(tiny.model_dir / "shortlist.npz")
    shortlist = sl.for_table(table, tiny.vocab.target_size, top_k=2, frequent=4)
    want = decoder(tiny, shortlist).translate_hypotheses(INPUTS)
    texts, scores = run_text(load_export(base / "1"), INPUTS)
    assert texts == [h[0].text for h in want]
    np.testing.assert_allclose(scores, [h[0].score for h in want], rtol=1e-5, atol=1e-6)
    plain = make_tiny_export(tmp_path.parent.parent)  # the session's export, no flag
    assert read_export_info(plain.version_dir)["shortlist"] is None


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_help_lists_the_command_and_the_flags():
    assert "shortlist" in run("--help").stdout
    for command in ("translate", "evaluate", "export"):
        text = run(command, "--help").stdout
        assert "--shortlist / --no-shortlist" in text and "--shortlist-top-k" in text
