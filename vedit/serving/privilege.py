"""Least privilege for tritonserver and its python-backend stubs.

Started as root (a container's default, ``sudo vedit triton serve``), tritonserver would run every
model's Python as root with the caller's whole environment. Instead:

- it runs as the dedicated system user :data:`SERVICE_USER` (created with ``useradd --system``
  when missing; ``nobody`` only if it cannot be created, which shares that user with nginx's
  workers and is logged as a warning), without supplementary groups;
- with umask 077, so the stubs' shared-memory regions under /dev/shm (which carry the intents and
  answers) and anything else it writes are its own;
- with a minimal environment (:func:`minimal_environment`): no tokens, proxies or credentials of
  the caller leak into model code;
- on a repository it can read: used in place when every directory down to it is open to others,
  otherwise staged (hard links, or copies of private files) into a private directory it owns.

Not root: nothing changes but the environment and the umask (an ordinary user cannot switch users).
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vedit.errors import TritonRepoError

log = logging.getLogger(__name__)

SERVICE_USER = "vedit-triton"
#: Variables passed to tritonserver (and so to model code) besides PATH/LD_LIBRARY_PATH/HOME.
ENV_KEEP = ("LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONHASHSEED", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
            "CUDA_VISIBLE_DEVICES")
ENV_KEEP_PREFIXES = ("VEDIT_", "OMP_", "ORT_", "NVIDIA_", "CUDA_MODULE_")


@dataclass(frozen=True)
class Account:
    """Who tritonserver runs as (``None`` uid: as the caller)."""

    name: str
    uid: int | None
    gid: int | None

    @property
    def switches(self) -> bool:
        return self.uid is not None


def service_account(user: str | None = None) -> Account:
    """The account for tritonserver: ``user`` if given (root only), else :data:`SERVICE_USER` when
    running as root (created if missing), else the caller."""
    if os.geteuid() != 0:
        if user not in (None, pwd.getpwuid(os.geteuid()).pw_name):
            raise TritonRepoError(f"only root can run tritonserver as {user!r}; start as root or drop --user")
        return Account(pwd.getpwuid(os.geteuid()).pw_name, None, None)
    name = user or SERVICE_USER
    if name == "root":
        return Account("root", None, None)
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        if user is not None:
            raise TritonRepoError(f"no user {user!r} on this machine; create it or leave --user out") from None
        pw = _create_service_user(name)
    if pw.pw_uid == 0:
        raise TritonRepoError(f"user {name!r} has uid 0; pick an unprivileged user")
    return Account(pw.pw_name, pw.pw_uid, pw.pw_gid)


def _create_service_user(name: str) -> pwd.struct_passwd:
    useradd = shutil.which("useradd") or shutil.which("useradd", path="/usr/sbin:/sbin")
    if useradd:
        done = subprocess.run([useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                               "--shell", "/usr/sbin/nologin", name], capture_output=True, text=True)
        try:
            return pwd.getpwnam(name)  # also when another server created it meanwhile
        except KeyError:
            reason = done.stderr.strip() or f"exit {done.returncode}"
    else:
        reason = "useradd not found"
    log.warning("cannot create user %s (%s): tritonserver runs as nobody", name, reason)
    return pwd.getpwnam("nobody")


def minimal_environment(path: str, ld_library_path: str, home: str) -> dict[str, str]:
    """What tritonserver and the model code see: nothing of the caller's beyond the runtime knobs."""
    env = {"PATH": path, "LD_LIBRARY_PATH": ld_library_path, "HOME": home}
    for key, value in os.environ.items():
        if key in ENV_KEEP or key.startswith(ENV_KEEP_PREFIXES):
            env[key] = value
    return env


def drop_to(account: Account):
    """A ``preexec_fn`` body: umask 077, then (root) no supplementary groups, the account's gid and uid."""

    def drop() -> None:
        os.umask(0o077)
        if account.switches:
            os.setgroups([])
            os.setgid(account.gid)
            os.setuid(account.uid)

    return drop


def open_to_others(path: Path) -> bool:
    """Whether another user can read everything under ``path`` (every directory down to it and
    inside it searchable, every file readable by others)."""
    path = path.resolve()
    if not all(p.stat().st_mode & stat.S_IXOTH for p in path.parents):
        return False
    for root, dirs, files in os.walk(path):
        if os.stat(root).st_mode & (stat.S_IXOTH | stat.S_IROTH) != (stat.S_IXOTH | stat.S_IROTH):
            return False
        if any(not os.stat(os.path.join(root, f)).st_mode & stat.S_IROTH for f in files):
            return False
    return True


def reachable(path: Path) -> bool:
    """Whether another user can get to ``path`` (every directory above it is searchable)."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in Path(path).resolve().parents)


def stage_tree(source: Path, account: Account, target: Path) -> Path:
    """A copy of ``source`` at ``target/<name>`` that only the account can enter, with hard links to
    the files others may read anyway and private copies (owned by it) of the rest."""

    def place(src: str, dst: str) -> str:
        if os.stat(src).st_mode & stat.S_IROTH:
            try:
                os.link(src, dst)
                return dst
            except OSError:  # another file system
                pass
        shutil.copy2(src, dst)
        os.chown(dst, account.uid, account.gid)
        os.chmod(dst, 0o600)
        return dst

    staged = target / source.name
    shutil.copytree(source, staged, symlinks=False, copy_function=place)
    for root, dirs, _ in os.walk(staged):
        for d in [root, *(os.path.join(root, d) for d in dirs)]:
            os.chown(d, account.uid, account.gid)
            os.chmod(d, 0o700)
    return staged


def private_dir(account: Account) -> Path:
    """A fresh directory under /tmp that only the account can enter (its HOME and staged files)."""
    d = Path(tempfile.mkdtemp(prefix="vedit-triton-"))
    if account.switches:
        os.chown(d, account.uid, account.gid)
    return d


__all__ = ["Account", "SERVICE_USER", "drop_to", "minimal_environment", "open_to_others", "private_dir", "reachable",
           "service_account", "stage_tree"]
