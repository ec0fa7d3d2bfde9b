"""File-system helpers: durable atomic writes (the one way buildprint replaces a file) and
the identity of a file's state."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock, nothing is taken as unheld
    fcntl = None  # type: ignore[assignment]

_T = TypeVar("_T")
_CHUNK = 1 << 20

__all__ = [
    "HOST",
    "abandoned",
    "can_sync_filesystem",
    "copy_atomic",
    "copy_file_hashing",
    "copy_hashing",
    "fsync_dir",
    "fsync_file",
    "new_temp_file",
    "owner_tag",
    "place_atomic",
    "process_temp_dir",
    "release_process_temp_dir",
    "remove_unlocked",
    "shared_hold",
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


def copy_hashing(source: IO[bytes], target: IO[bytes]) -> tuple[str, int]:
    """Copy ``source`` to ``target`` in one pass, hashing the bytes as they go: their sha256
    and how many there were."""
    hasher = hashlib.sha256()
    size = 0
    while chunk := source.read(_CHUNK):
        hasher.update(chunk)
        target.write(chunk)
        size += len(chunk)
    return hasher.hexdigest(), size


def copy_file_hashing(source: Path, target: Path) -> str:
    """Write a copy of the file ``source`` at ``target`` (created or truncated); the sha256 of
    the bytes written, computed while copying."""
    with open(source, "rb") as src, open(target, "wb") as out:
        return copy_hashing(src, out)[0]


def place_atomic(target: Path, write: Callable[[Path], _T]) -> _T:
    """Replace ``target`` with what ``write`` puts in a temp file beside it (given its path),
    then a rename, like :func:`write_atomic`; ``write``'s answer. If ``write`` raises, the
    temp file is removed and ``target`` is left as it was."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = new_temp_file(target.parent, target.name)
    os.close(fd)
    try:
        result = write(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return result


def shared_hold(path: Path) -> int | None:
    """Hold a shared ``flock`` on the lock file ``path`` (created if absent) until the
    returned descriptor is closed (or the process ends): :func:`remove_unlocked`, and so
    ``gc``, leaves alone what a live process holds this way, and a ``FileLock`` on ``path``
    (an exclusive one) waits for every holder. ``None`` where there is no ``flock``. The hold
    is taken on the file the path names once it is held (one replaced meanwhile is
    retried), so it is never on a lock file ``gc`` has just unlinked."""
    if fcntl is None:  # pragma: no cover
        return None
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def remove_unlocked(path: Path, *, older_than: float = 0.0) -> bool:
    """Remove the lock file ``path`` if no process holds it (``flock``) and it was last
    opened (``FileLock`` truncates it, which sets its mtime) more than ``older_than``
    seconds ago; whether it was removed. It is unlinked while this process holds it, so a
    holder never loses it; one that opened it long ago and has not locked it yet could lock
    the unlinked file, which is why only old ones go."""
    if fcntl is None:  # pragma: no cover
        return False
    try:
        fd = os.open(path, os.O_RDWR)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # held
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return False
        if st.st_ino != os.fstat(fd).st_ino or time.time() - st.st_mtime < older_than:
            return False
        os.unlink(path)
        return True
    finally:
        os.close(fd)


#: The process temp folders made by :func:`process_temp_dir`, in order; the newest is
#: ``tempfile.tempdir`` while there is one.
_process_temps: list[tuple[Path, str | None]] = []
_process_temps_lock = threading.Lock()


def process_temp_dir(work_root: Path) -> Path:
    """Make a folder ``<work_root>/<host>.<pid>.tmp.<token>`` and point ``tempfile`` (so
    every library's ``TemporaryDirectory``: pyproject_hooks' ``input.json`` folders, uv's
    requirement files) at it until :func:`release_process_temp_dir`. A process killed
    meanwhile leaves it where the next run's sweep and ``gc`` find it by its owner tag,
    instead of an anonymous ``$TMPDIR/tmp…`` nobody removes."""
    work_root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{owner_tag()}.tmp.", dir=work_root))
    with _process_temps_lock:
        _process_temps.append((path, tempfile.tempdir))
        tempfile.tempdir = str(path)
    return path


def release_process_temp_dir(path: Path) -> None:
    """Remove a folder of :func:`process_temp_dir` and point ``tempfile`` back at the
    newest one still in use (or where it pointed before the first)."""
    with _process_temps_lock:
        for i, (held, before) in enumerate(_process_temps):
            if held == path:
                del _process_temps[i]
                if i < len(_process_temps):  # the next one falls back where this one did
                    _process_temps[i] = (_process_temps[i][0], before)
                break
        else:
            return
        if _process_temps:
            tempfile.tempdir = str(_process_temps[-1][0])
        elif tempfile.tempdir == str(path):
            tempfile.tempdir = before
    shutil.rmtree(path, ignore_errors=True)
