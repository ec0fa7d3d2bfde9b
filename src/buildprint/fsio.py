"""File-system helpers: durable atomic writes (the one way buildprint replaces a file) and
the identity of a file's state."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["fsync_dir", "stat_key", "write_atomic"]


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
