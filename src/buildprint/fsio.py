"""File-system helpers: durable atomic writes (the one way buildprint replaces a file) and
the identity of a file's state."""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "can_sync_filesystem",
    "copy_atomic",
    "fsync_dir",
    "fsync_file",
    "stat_key",
    "sync_filesystem",
    "write_atomic",
]


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


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: temp file beside it, fsync, rename. A reader (or a
    process killed half-way) sees the old file or the new one, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
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
