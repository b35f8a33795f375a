"""Atomic output directories: build everything in a temp dir next to the target, then rename.

A failed or interrupted export therefore leaves nothing at the target (and the temp dir is removed);
an existing target is refused unless ``force``, and replaced only once the new one is complete.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from vedit.atomicio import umask
from vedit.errors import ExportError

TMP_SUFFIX = ".vedit-tmp"


def check_target(target: str | Path, *, force: bool) -> Path:
    """Resolve ``target`` and refuse it if it exists (unless ``force``) or is not a directory."""
    t = Path(target).expanduser().absolute()
    if t.exists() or t.is_symlink():
        if not t.is_dir():
            raise ExportError(f"output path exists and is not a directory: {t}")
        if not force:
            raise ExportError(f"output directory already exists: {t}; pass --force to replace it")
    return t


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


@contextmanager
def atomic_dir(target: str | Path, *, force: bool = False) -> Iterator[Path]:
    """Yield a fresh temp dir; on success it becomes ``target``, on any failure it is deleted.

    ``OSError(ENOSPC)`` anywhere inside becomes an :class:`ExportError` telling the user to free space.
    """
    t = check_target(target, force=force)
    try:
        t.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{t.name}.", suffix=TMP_SUFFIX, dir=t.parent))
        tmp.chmod(0o777 & ~umask())  # mkdtemp makes it 0700; the export should look like any new dir
    except OSError as exc:
        _raise_os_error(exc, t)
    try:
        yield tmp
        _replace(tmp, t)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _raise_os_error(exc, t)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _raise_os_error(exc: OSError, target: Path) -> None:
    """Turn the OS errors a user can act on into one-line :class:`ExportError`; re-raise the rest."""
    if exc.errno == errno.ENOSPC:
        raise ExportError(
            f"no space left on device while writing {target}; free some space or choose another output dir"
        ) from exc
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        raise ExportError(f"cannot write {target}: {exc.strerror}") from exc
    raise exc
