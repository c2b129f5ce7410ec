"""decode.sampling_topk and decode.sampling_temperature: defaults, validation, old configs."""

from __future__ import annotations

import pytest

from nmt.config import ConfigError, from_dict, load_config


def test_sampling_keys_default_to_greedy_and_old_configs_load():
    decode = from_dict({"decode": {"beam_size": 4}}).decode
    assert (decode.sampling_topk, decode.sampling_temperature) == (1, 1.0)
    decode = from_dict({"decode": {"sampling_topk": 0, "sampling_temperature": 0.7}}).decode
    assert (decode.sampling_topk, decode.sampling_temperature) == (0, 0.7)


@pytest.mark.parametrize(
    "override, message",
    [
        ("decode.sampling_topk=-1", "decode.sampling_topk must be >= 0 (0: every word), got -1"),
        ("decode.sampling_temperature=0", "decode.sampling_temperature must be positive, got 0.0"),
        ("decode.sampling_temperature=-2", "must be positive, got -2.0"),
        ("decode.sampling_temperature=.inf", "must be a finite number, got inf"),
        ("decode.sampling_temperature=.nan", "must be a finite number, got nan"),
        ("decode.sampling_topk=0.5", "decode.sampling_topk must be an integer, got 0.5"),
    ],
)
def test_bad_sampling_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match="--set " + override.replace(".", r"\.")) as error:
        load_config(None, [override])
    assert message in str(error.value)
