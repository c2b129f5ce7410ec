"""Config loading: typed sections, unknown keys with suggestions, overrides, round-trip."""

from pathlib import Path

import pytest

from nmt import config as cfg
from nmt.errors import ConfigError


def test_defaults_validate():
    c = cfg.load_config()
    assert c.model.units == 512 and c.decode.beam_size == 5


def test_unknown_key_suggests_closest(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  unitz: 8\n")
    with pytest.raises(ConfigError, match=r"unknown key model.unitz \(did you mean 'units'\?\)"):
        cfg.load_config(p)


def test_unknown_section_suggests(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("modle:\n  units: 8\n")
    with pytest.raises(ConfigError, match="did you mean 'model'"):
        cfg.load_config(p)


@pytest.mark.parametrize(
    "text, message",
    [
        ("model:\n  units: eight\n", "model.units must be an integer"),
        ("model:\n  units: 8.5\n", "model.units must be an integer"),
        ("model:\n  bidirectional: 1\n", "model.bidirectional must be true or false"),
        ("model:\n  attention: luong\n", "model.attention: 'luong' is not one of"),
        ("train:\n  learning_rate: -1\n", "train.learning_rate must be positive"),
        ("model:\n  dropout: 1.5\n", r"model.dropout must be in \[0, 1\)"),
        ("data:\n  train_source: a.txt\n", "must be given together"),
        ("decode:\n  beam_size: 2\n  n_best: 3\n", "cannot exceed"),
        ("decode:\n  min_length: -2\n", "decode.min_length must be >= 0, got -2"),
        (
            "train:\n  coverage_loss: -0.5\n",
            r"train.coverage_loss must be >= 0 \(0: off\), got -0.5",
        ),
        ("model: [1, 2]\n", "section 'model' must be a mapping"),
        ("model:\n  units: [\n", "line"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, message):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        cfg.load_config(p)
    assert str(p) in str(info.value)


def test_int_accepted_for_float_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  learning_rate: 1\n")
    c = cfg.load_config(p, ["model.units=64", "model.attention=dot", "data.max_length=50"])
    assert c.train.learning_rate == 1.0 and isinstance(c.train.learning_rate, float)
    assert (c.model.units, c.model.attention, c.data.max_length) == (64, "dot", 50)


@pytest.mark.parametrize("item", ["model.units", "units=3", "a.b.c=1", "nope.units=3"])
def test_bad_override(item):
    with pytest.raises(ConfigError, match="--set"):
        cfg.load_config(None, [item])


def test_save_load_round_trip(tmp_path):
    c = cfg.load_config(None, ["model.units=32", "train.max_minutes=2.5", "vocab.joint=false"])
    cfg.save_config(c, tmp_path / "config.yaml")
    assert cfg.load_config(tmp_path / "config.yaml") == c


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        cfg.load_config(tmp_path / "nope.yaml")


CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg.load_config(path)


def test_multi30k_en_fr_is_the_en_de_recipe_with_other_files():
    import dataclasses

    de, fr = (cfg.load_config(CONFIGS / f"multi30k_en_{t}.yaml") for t in ("de", "fr"))
    for section in ("vocab", "model", "train", "decode"):
        assert getattr(de, section) == getattr(fr, section), section
    differ = {
        f.name
        for f in dataclasses.fields(de.data)
        if getattr(de.data, f.name) != getattr(fr.data, f.name)
    }
    assert differ == {"train_target", "dev_target"}
    assert fr.data.train_target.endswith("train.fr") and de.data.dev_target.endswith("val.de")


def test_multi30k_2h_is_the_en_de_recipe_run_to_6400_updates():
    import dataclasses

    short, long = (
        cfg.load_config(CONFIGS / n) for n in ("multi30k_en_de.yaml", "multi30k_en_de_2h.yaml")
    )
    assert short.data == long.data and short.vocab == long.vocab and short.decode == long.decode
    assert short.model == long.model
    train = {
        f.name
        for f in dataclasses.fields(short.train)
        if getattr(short.train, f.name) != getattr(long.train, f.name)
    }
    assert train == {"max_steps", "max_minutes"}
    # The 2-hour figures were measured at 6,400 updates per member (BENCHMARKS.md section 6).
    assert (long.train.max_steps, long.train.max_minutes) == (6400, 120)
    assert (short.model.attention, short.train.coverage_loss) == ("general", 0.2)
