"""Model directories: versions, atomic checkpoints, loading for inference, averaging."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from nmt import averaging, checkpoint_files, modeldir
from nmt import checkpoints as ckpt
from nmt.config import save_config
from nmt.errors import CheckpointError
from nmt.version import __version__
from tests.helpers.checkpoints import make_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("ckpt"))


def _assert_weights(model, expected):
    for got, want in zip(model.get_weights(), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def _copy(model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(model_dir, target)
    return target


@pytest.mark.parametrize(
    "saved, current, ok",
    [
        ("0.1.0", "0.1.3", True),
        ("0.1.0.dev0", "0.1.0", True),
        ("0.2.0", "0.1.0", False),  # 0.x: minor versions differ
        ("1.2.0", "1.4.1", True),
        ("1.5.0", "1.4.1", False),  # written by a newer minor version
        ("2.0.0", "1.4.1", False),
        ("garbage", "1.0.0", False),
    ],
)
def test_version_compatible(saved, current, ok):
    assert modeldir.version_compatible(saved, current) is ok


def test_train_state_json_round_trip_and_corruption(tmp_path):
    assert modeldir.read_train_state(tmp_path) == {}
    modeldir.write_json_atomic(tmp_path / "train_state.json", {"step": 3, "best_metric": 1.5})
    assert modeldir.read_train_state(tmp_path) == {"step": 3, "best_metric": 1.5}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left
    (tmp_path / "train_state.json").write_text("{oops")
    with pytest.raises(CheckpointError, match="train_state.json: cannot read"):
        modeldir.read_train_state(tmp_path)


def test_listing_ignores_incomplete_checkpoints(tmp_path):
    for name in ("ckpt-9.index", "ckpt-9.data-00000-of-00001", "ckpt-10.index", "ckpt-3.data-0"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".staging-abc").mkdir()
    (tmp_path / ".staging-abc" / "ckpt-11.index").write_bytes(b"x")
    assert [p.name for p in checkpoint_files.list_checkpoints(tmp_path)] == ["ckpt-9", "ckpt-10"]
    assert checkpoint_files.checkpoint_step(tmp_path / "ckpt-10") == 10
    checkpoint_files.remove_staging(tmp_path)
    assert not (tmp_path / ".staging-abc").exists()
    assert [p.name for p in checkpoint_files.prune_checkpoints(tmp_path, 1)] == ["ckpt-9"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-10.index", "ckpt-3.data-0"]


def test_write_is_atomic_when_interrupted(tmp_path, monkeypatch):
    import tensorflow as tf

    checkpoint = tf.train.Checkpoint(v=tf.Variable([1.0, 2.0]))
    checkpoint_files.write_checkpoint(checkpoint, tmp_path, 1)
    real_replace = os.replace

    def crash_on_index(src, dst):
        if str(dst).endswith(".index"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(checkpoint_files.os, "replace", crash_on_index)
    with pytest.raises(OSError, match="disk full"):
        checkpoint_files.write_checkpoint(checkpoint, tmp_path, 2)
    assert [p.name for p in checkpoint_files.list_checkpoints(tmp_path)] == ["ckpt-1"]
    assert not list(tmp_path.glob(".staging-*"))


def test_load_model_last_best_and_paths(model_dir, tmp_path):
    directory, saved = model_dir
    last = ckpt.load_model(directory, "last")
    assert last.step == 3 and last.checkpoint_path.name == "ckpt-3"
    _assert_weights(last.model, saved[3])
    assert last.vocab.joint and last.config.model.units == 16
    best = ckpt.load_model(directory)  # no best/ yet: falls back to the last checkpoint
    assert best.checkpoint_path.name == "ckpt-3"
    first = ckpt.load_model(directory, str(directory / "checkpoints" / "ckpt-1"))
    assert first.step == 1
    _assert_weights(first.model, saved[1])
    copy = _copy(directory, tmp_path)
    shutil.copytree(copy / "checkpoints", copy / "best")
    for name in ("ckpt-2", "ckpt-3"):
        checkpoint_files.delete_checkpoint(copy / "best" / name)
    best = ckpt.load_model(copy, "best")
    assert best.step == 1 and best.checkpoint_path.parent.name == "best"


def test_load_model_errors_name_the_path(model_dir, tmp_path):
    directory, _ = model_dir
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'nope'}: model directory not found"):
        ckpt.load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="empty: not a model directory"):
        ckpt.load_model(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="ckpt-7: checkpoint not found"):
        ckpt.load_model(directory, str(directory / "checkpoints" / "ckpt-7"))
    copy = _copy(directory, tmp_path)
    (copy / "VERSION").write_text("0.99.0\n")
    with pytest.raises(CheckpointError, match="written by nmt '0.99.0'"):
        ckpt.load_model(copy)
    (copy / "VERSION").write_text(__version__)
    shutil.rmtree(copy / "checkpoints")
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        ckpt.load_model(copy)


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty_index"])
def test_corrupt_checkpoint_is_reported(model_dir, tmp_path, damage):
    directory, _ = model_dir
    copy = _copy(directory, tmp_path)
    prefix = copy / "checkpoints" / "ckpt-3"
    data, index = Path(f"{prefix}.data-00000-of-00001"), Path(f"{prefix}.index")
    raw = data.read_bytes()
    if damage == "flip":
        flipped = bytearray(raw)
        flipped[len(raw) // 2] ^= 0xFF
        data.write_bytes(bytes(flipped))
    elif damage == "truncate":
        data.write_bytes(raw[: len(raw) // 2])
    else:
        index.write_bytes(b"")
    with pytest.raises(CheckpointError, match=f"{prefix}: corrupt or truncated checkpoint"):
        ckpt.load_model(copy, "last")


def test_checkpoint_of_another_model_shape_is_refused(model_dir, tmp_path):
    directory, _ = model_dir
    copy = _copy(directory, tmp_path)
    config = modeldir.read_config(copy)
    config.model.units = 24
    save_config(config, copy / "config.yaml")
    with pytest.raises(CheckpointError, match="ckpt-3"):
        ckpt.load_model(copy, "last")


def test_config_yaml_from_before_the_attention_remedies_loads_the_same_model(model_dir, tmp_path):
    """A config.yaml without model.attention_dropout and model.attention_lr_scale (written
    before they existed) loads with both off, restores every weight, gives the same logits."""
    directory, saved = model_dir
    copy = _copy(directory, tmp_path)
    values = yaml.safe_load((copy / "config.yaml").read_text())
    assert values["model"].pop("attention_dropout") == 0.0
    assert values["model"].pop("attention_lr_scale") == 1.0
    (copy / "config.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    old, new = ckpt.load_model(copy, "last"), ckpt.load_model(directory, "last")
    assert old.config == new.config
    _assert_weights(old.model, saved[3])
    source, target_in = np.array([[5, 6, 7, 2]], "int32"), np.array([[1, 5, 6]], "int32")
    np.testing.assert_array_equal(old.model((source, target_in)), new.model((source, target_in)))


def test_average_checkpoints_is_the_mean(model_dir, tmp_path):
    directory, saved = model_dir
    output = tmp_path / "avg"
    prefix = averaging.average_checkpoints(directory, 2, output)
    assert prefix == output / "ckpt-3"
    loaded = ckpt.load_model(directory, str(output))
    assert loaded.step == 3
    expected = [(a.astype(np.float64) + b) / 2 for a, b in zip(saved[2], saved[3], strict=True)]
    _assert_weights(loaded.model, expected)
    again = averaging.average_checkpoints(directory, 3, output)  # replaces the previous average
    _assert_weights(
        ckpt.load_model(directory, str(again)).model,
        [(a.astype(np.float64) + b + c) / 3 for a, b, c in zip(*saved.values(), strict=True)],
    )
    assert sorted(p.name for p in output.iterdir()) == [
        "averaged.json",
        "ckpt-3.data-00000-of-00001",
        "ckpt-3.index",
    ]
    with pytest.raises(CheckpointError, match="3 checkpoint\\(s\\), cannot average the last 4"):
        averaging.average_checkpoints(directory, 4)


def test_average_weights_keeps_integer_arrays_from_the_last():
    a = [np.array([1.0, 2.0], np.float32), np.array([1, 2])]
    b = [np.array([3.0, 5.0], np.float32), np.array([7, 8])]
    mean, counter = averaging.average_weights([a, b])
    np.testing.assert_array_equal(mean, np.array([2.0, 3.5], np.float32))
    assert mean.dtype == np.float32
    np.testing.assert_array_equal(counter, [7, 8])


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, OSError])
def test_average_interrupted_between_its_renames_keeps_the_previous_average(
    model_dir, tmp_path, monkeypatch, interrupt
):
    directory, _ = model_dir
    output = tmp_path / "avg"
    averaging.average_checkpoints(directory, 2, output)
    before = {p.name: p.read_bytes() for p in output.iterdir()}
    real_rename, calls = os.rename, []

    def rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the previous average is moved away; the new one not yet in
            raise interrupt("interrupted")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises((KeyboardInterrupt, CheckpointError)):
        averaging.average_checkpoints(directory, 3, output)
    monkeypatch.setattr(os, "rename", real_rename)
    assert {p.name: p.read_bytes() for p in output.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["avg"]  # no staging, no old copy


def test_average_into_an_existing_empty_directory_keeps_the_directory(model_dir, tmp_path):
    directory, _ = model_dir
    output = tmp_path / "shared"
    output.mkdir()
    os.chmod(output, 0o2770)  # setgid, group-writable: a team's directory
    inode = output.stat().st_ino
    averaging.average_checkpoints(directory, 2, output)
    assert output.stat().st_ino == inode and output.stat().st_mode & 0o7777 == 0o2770
    assert sorted(p.name for p in output.iterdir()) == [
        "averaged.json",
        "ckpt-3.data-00000-of-00001",
        "ckpt-3.index",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared"]  # no staging left
    assert ckpt.load_model(directory, str(output / "ckpt-3")).step == 3
