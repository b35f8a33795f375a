"""Atomic file writes: all or nothing, and ordinary permissions."""

from __future__ import annotations

import os
import stat

import pytest

from vedit.atomicio import atomic_open, umask


def test_file_appears_whole_with_umask_permissions(tmp_path):
    target = tmp_path / "sub" / "report.md"
    with atomic_open(target) as f:
        f.write("héllo\n")
        assert not target.exists()  # nothing under the real name until the block ends
    assert target.read_text(encoding="utf-8") == "héllo\n"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~umask()
    with atomic_open(target, "wb") as f:
        f.write(b"\x89PNG")
    assert target.read_bytes() == b"\x89PNG"
    assert [p.name for p in target.parent.iterdir()] == ["report.md"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "data.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]
