"""The run configuration of `onmt-main --model_type NMTSmallV1 --config F --auto_config`."""

from __future__ import annotations

from pathlib import Path

from bench.markdown import write_atomic
from bench.peer.base import REPORT_EVERY, PeerData


def _merge(base: dict, extra: dict) -> dict:
    """Recursive dict merge: values of `extra` win, nested dicts are merged."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def peer_config(
    data: PeerData,
    model_dir: Path,
    *,
    max_step: int,
    batch_size: int = 64,
    batch_type: str = "examples",
    beam_width: int = 5,
    extra: dict | None = None,
    report_every: int | None = None,
) -> dict:
    """The run configuration `write_peer_config` writes, as a dict."""
    report_every = REPORT_EVERY if report_every is None else report_every
    if report_every < 1:
        raise ValueError(f"report_every must be at least 1, got {report_every}")
    if max_step < 1:
        raise ValueError(f"max_step must be at least 1, got {max_step}")
    if batch_type not in ("examples", "tokens"):
        raise ValueError(f"batch_type must be 'examples' or 'tokens', got {batch_type!r}")
    config = {
        "model_dir": str(Path(model_dir).resolve()),
        "data": {
            "train_features_file": str(data.train_src),
            "train_labels_file": str(data.train_tgt),
            "eval_features_file": str(data.val_src),  # for `onmt-main eval` only
            "eval_labels_file": str(data.val_tgt),
            "source_vocabulary": str(data.vocab),
            "target_vocabulary": str(data.vocab),
        },
        "params": {"beam_width": beam_width},
        "train": {
            "max_step": max_step,
            "batch_size": batch_size,
            "batch_type": batch_type,
            "save_summary_steps": report_every,
            "save_checkpoints_steps": max_step,
        },
    }
    return _merge(config, extra or {})


def write_peer_config(
    data: PeerData, model_dir: Path, *, filename: str = "data.yml", **settings
) -> Path:
    """Write the run configuration for `onmt-main --model_type NMTSmallV1 --config F --auto_config`.

    `settings` are `peer_config`'s (`max_step`, `batch_size`, `batch_type`, `beam_width`,
    `extra`, `report_every`). Only what the benchmark needs is set (see the module docstring);
    everything else comes from `--auto_config`. `extra` is merged in last (nested dicts merge).
    `report_every` (default: the module's `REPORT_EVERY`) is `train.save_summary_steps`.
    Returns model_dir/filename.
    """
    import yaml

    config = peer_config(data, model_dir, **settings)
    path = Path(model_dir) / filename
    return write_atomic(path, yaml.safe_dump(config, sort_keys=False))
