"""nmt.export's move of a staged version into place: the previous version survives a failed
or interrupted move."""

from __future__ import annotations

import os

import pytest

from nmt import export
from nmt.errors import NmtError


def _dirs(tmp_path):
    staged, target = tmp_path / "tmp" / "model", tmp_path / "1"
    staged.mkdir(parents=True)
    (staged / "new").write_text("new")
    target.mkdir()
    (target / "old").write_text("old")
    return staged, target, tmp_path / "tmp" / "replaced"


def test_an_existing_version_is_replaced(tmp_path):
    staged, target, old = _dirs(tmp_path)
    export._move_into_place(staged, target, old)
    assert sorted(p.name for p in target.iterdir()) == ["new"]


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, OSError])
def test_the_previous_version_is_back_when_the_second_rename_fails(tmp_path, monkeypatch,
                                                                   interrupt):  # fmt: skip
    staged, target, old = _dirs(tmp_path)
    real_rename, calls = os.rename, []

    def rename(src, dst):
        calls.append(src)
        if len(calls) == 2:  # the old version is aside, the new one not yet in place
            raise interrupt(28, "No space left on device")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises((KeyboardInterrupt, NmtError)):
        export._move_into_place(staged, target, old)
    assert sorted(p.name for p in target.iterdir()) == ["old"]
    assert (target / "old").read_text() == "old"


def _staged(tmp_path):
    staged = tmp_path / "tmp" / "model"
    staged.mkdir(parents=True)
    (staged / "saved_model.pb").write_text("ours")
    return staged


def test_a_new_version_never_replaces_one_that_appeared_meanwhile(tmp_path):
    base = tmp_path / "base"
    (base / "1").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_text("theirs")  # another export got there first
    target = export._publish_new(_staged(tmp_path), base, 1, pick_next=True)
    assert target == base / "2" and (target / "saved_model.pb").read_text() == "ours"
    assert (base / "1" / "saved_model.pb").read_text() == "theirs"


def test_a_given_version_taken_meanwhile_is_an_error_and_is_left_alone(tmp_path):
    base = tmp_path / "base"
    (base / "3").mkdir(parents=True)
    (base / "3" / "saved_model.pb").write_text("theirs")
    staged = _staged(tmp_path)
    with pytest.raises(NmtError, match="3: version 3 appeared during the export"):
        export._publish_new(staged, base, 3, pick_next=False)
    assert (base / "3" / "saved_model.pb").read_text() == "theirs"
    assert staged.is_dir()  # the caller's cleanup removes it
