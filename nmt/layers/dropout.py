"""Dropout rates per site (embeddings, between layers, memory, h~) on top of one base rate."""

from __future__ import annotations

import keras


def resolve_rate(rate: float | None, base: float) -> float:
    """`rate`, or the base `model.dropout` when the site's own key is unset (None)."""
    return base if rate is None else rate


def extra_dropouts(base: float, rates: dict[str, float], dtype) -> dict[str, keras.layers.Layer]:
    """A Dropout layer for each site whose rate is neither 0 nor `base`.

    Sites at the base rate share the owner's existing base-rate layer, so a config that sets no
    per-site rate builds exactly the layers (and draws exactly the random masks) it did before
    the per-site keys existed; checkpoints of such models keep their layout.
    """
    return {
        site: keras.layers.Dropout(rate, dtype=dtype, name=f"{site}_dropout")
        for site, rate in rates.items()
        if rate and rate != base
    }
