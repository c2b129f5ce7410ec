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
