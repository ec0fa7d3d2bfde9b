"""File-system helpers: durable atomic writes (the one way buildprint replaces a file) and
the identity of a file's state."""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "HOST",
    "abandoned",
    "can_sync_filesystem",
    "copy_atomic",
    "fsync_dir",
    "fsync_file",
    "new_temp_file",
    "owner_tag",
    "stat_key",
    "sync_filesystem",
    "write_atomic",
]


#: This host, as temp names carry it (dots would split the name's fields).
HOST = socket.gethostname().replace(".", "_") or "host"


def owner_tag() -> str:
    """``<host>.<pid>``: the start of a temp file or folder name, so a later run can tell
    whether its writer is gone (:func:`abandoned`)."""
    return f"{HOST}.{os.getpid()}"


def abandoned(name: str) -> bool:
    """Whether a name made with :func:`owner_tag` belongs to a process of this host that is
    no longer running (names of other hosts, or not made that way, are never)."""
    parts = name.lstrip(".").split(".")
    if len(parts) < 3 or parts[0] != HOST or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def stat_key(path: str | os.PathLike[str]) -> str | None:
    """Identity of a file's current state: (size, mtime_ns, inode, ctime_ns); None if absent.
    ctime cannot be set by users, so any change to the content or metadata changes it."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_ctime_ns}"


def fsync_dir(path: Path) -> None:
    """Flush a directory entry: a rename is only durable once its folder is flushed too."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush the bytes of the file at ``path`` (opened again by name)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


def can_sync_filesystem() -> bool:
    """True where ``sync_filesystem`` works (Linux ``syncfs(2)``)."""
    return _syncfs() is not None


def sync_filesystem(path: Path) -> None:
    """Flush every pending write of the filesystem holding ``path`` (file bytes, new names,
    renames) with one ``syncfs(2)``: one call instead of an fsync per file and folder when many
    were written. It also flushes unrelated writes pending on that filesystem, so it is meant
    for batches. ``OSError`` if it fails; only call it where ``can_sync_filesystem()``."""
    function = _syncfs()
    if function is None:
        raise OSError(f"syncfs is not available on {sys.platform}")
    fd = os.open(path, os.O_RDONLY)
    try:
        if function(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"syncfs: {os.strerror(errno)}", str(path))
    finally:
        os.close(fd)


def _umask() -> int:
    """The process's umask, read without changing it (``os.umask`` sets it, which would race
    with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return _UMASK_AT_START


def _umask_at_start() -> int:
    # Where /proc is missing: read once while the module is imported (one thread, at start).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK_AT_START = _umask_at_start()


def new_temp_file(folder: Path, name: str, suffix: str = ".tmp") -> tuple[int, Path]:
    """A new temp file beside the file ``name`` in ``folder``, to be renamed over it: an open
    descriptor and its path. Its mode is what the umask gives a new file (``0644`` under the
    usual ``022``), not ``mkstemp``'s ``0600``: wheels, ``simple/`` pages and the lock file are
    read by other users (a web server serving the wheelhouse)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=suffix, dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, Path(tmp)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: temp file beside it, fsync, rename. A reader (or a
    process killed half-way) sees the old file or the new one, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = new_temp_file(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def copy_atomic(source: Path, target: Path, *, link: bool = False) -> None:
    """Replace ``target`` with a copy of ``source`` (with ``link``, a hard link where the file
    system allows one), through a temp file beside it and a rename, like :func:`write_atomic`
    (the caller flushes when the copy must survive a crash)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = new_temp_file(target.parent, target.name)
    os.close(fd)
    try:
        if link:
            os.unlink(tmp)
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
        else:
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
