"""Atomic file writes: all or nothing, and ordinary permissions."""

from __future__ import annotations

import os
import stat

import pytest

from vedit.atomicio import atomic_dir, atomic_open, sha256_file, umask
from vedit.errors import OutputError


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


def test_atomic_dir_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
        assert not target.exists()
    assert (target / "a").read_text() == "1"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o777 & ~umask()
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "b").write_text("2")
            raise RuntimeError("crash mid-build")
    assert sorted(p.name for p in target.iterdir()) == ["a"]  # the old result, untouched
    with atomic_dir(target) as tmp:
        (tmp / "c").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp or old dirs left


def test_atomic_dir_refuses_or_keeps_an_existing_target(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "mine").write_text("x")
    with pytest.raises(OutputError, match="already exists: .*; pass --force to replace it"):
        with atomic_dir(target, force=False):
            pass
    with atomic_dir(target, first_wins=True) as tmp:  # another process made it meanwhile: keep theirs
        (tmp / "late").write_text("y")
    assert sorted(p.name for p in target.iterdir()) == ["mine"]
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="exists and is not a directory"):
        with atomic_dir(tmp_path / "file"):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "out"]


def test_atomic_dir_disk_full_is_one_line(tmp_path):
    with pytest.raises(OutputError, match=r"no space left on device while writing .*out; free some space"):
        with atomic_dir(tmp_path / "out") as tmp:
            raise OSError(28, "No space left on device", str(tmp / "x"))
    assert list(tmp_path.iterdir()) == []


def test_sha256_file_matches_hashlib(tmp_path):
    import hashlib

    p = tmp_path / "w.bin"
    p.write_bytes(os.urandom(3 * (1 << 20) + 7))
    assert sha256_file(p) == hashlib.sha256(p.read_bytes()).hexdigest()
