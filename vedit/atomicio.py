"""Files and directories that appear complete or not at all, and the one content hash.

Everything vedit writes (datasets, students, exports, grammars, Triton repositories, reports) goes
through here: data is built in a temp file or directory beside the target and renamed over it, so a
crash or a full disk never leaves a half-written result that a later run would take for complete.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from vedit.errors import OutputError

TMP_SUFFIX = ".vedit-tmp"


def umask() -> int:
    """The process umask (reading it means setting it, so it is put straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (weights can be gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


@contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open ``path`` for writing (``"w"``: UTF-8 text, ``"wb"``: bytes); it appears when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes 0600; the file should look like any new file
        text = {} if "b" in mode else {"encoding": "utf-8", "newline": "\n"}
        with os.fdopen(fd, mode, **text) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_target(target: str | Path, *, force: bool) -> Path:
    """Resolve ``target``; refuse it if it exists (unless ``force``) or is not a directory."""
    t = Path(target).expanduser().absolute()
    if t.exists() or t.is_symlink():
        if not t.is_dir():
            raise OutputError(f"output path exists and is not a directory: {t}")
        if not force:
            raise OutputError(f"output directory already exists: {t}; pass --force to replace it")
    return t


@contextmanager
def atomic_dir(target: str | Path, *, force: bool = True, first_wins: bool = False) -> Iterator[Path]:
    """Yield a fresh temp dir beside ``target``; on success it becomes ``target``, on failure it goes.

    ``force=False`` refuses an existing ``target`` (the CLI's ``--force``). An existing target is
    replaced only once the new one is complete, in two renames, so a crash leaves the old directory
    or the new one. ``first_wins``: for caches other processes may be using, a target that appeared
    meanwhile is kept and the new copy dropped. Disk-full and permission errors become one-line
    :class:`OutputError`.
    """
    t = check_target(target, force=force)
    try:
        t.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{t.name}.", suffix=TMP_SUFFIX, dir=t.parent))
        tmp.chmod(0o777 & ~umask())  # mkdtemp makes it 0700; the result should look like any new dir
    except OSError as exc:
        _raise_os_error(exc, t)
    try:
        yield tmp
        if first_wins and t.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            _replace(tmp, t)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _raise_os_error(exc, t)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace(tmp: Path, target: Path) -> None:
    if not target.exists():
        os.replace(tmp, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.rmdir(old)
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _raise_os_error(exc: OSError, target: Path) -> None:
    """Turn the OS errors a user can act on into one-line :class:`OutputError`; re-raise the rest."""
    if exc.errno == errno.ENOSPC:
        raise OutputError(
            f"no space left on device while writing {target}; free some space or choose another output dir"
        ) from exc
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        raise OutputError(f"cannot write {target}: {exc.strerror}") from exc
    raise exc


__all__ = ["TMP_SUFFIX", "atomic_dir", "atomic_open", "check_target", "sha256_file", "umask"]
