"""Fast SHA-256 of a file's raw bytes, the primitive every source digest is built on."""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from pathlib import Path

from buildprint.errors import InputError

__all__ = ["CHUNK_SIZE", "LARGE_FILE", "SMALL_FILE", "digest_fd", "file_digest"]

#: Files up to this size are read with one ``read`` call: fewer syscalls and no
#: buffer juggling, which is what dominates when hashing thousands of small sources.
SMALL_FILE = 1 << 20

#: Read size for larger files. 1 MiB amortises the syscall and the ``update`` call
#: over enough bytes that SHA-256 itself is the only cost left.
CHUNK_SIZE = 1 << 20

#: From this size on, reading runs on a second thread while the first one hashes:
#: the copy out of the page cache then overlaps SHA-256 instead of adding to it.
LARGE_FILE = 32 << 20
_PIPELINE_CHUNK = 4 << 20

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


def digest_fd(fd: int, size_hint: int) -> str:
    """Hex SHA-256 of everything readable from ``fd`` from its current offset to EOF.

    ``size_hint`` (usually ``st_size``) only picks the strategy; the digest always
    covers what is actually read, so a file that grows or shrinks meanwhile is still
    hashed as read.
    """
    if size_hint <= SMALL_FILE:
        # One read of size+1 both fetches the content and proves EOF in the common case.
        data = os.read(fd, size_hint + 1)
        if len(data) <= size_hint:
            # A regular file only returns fewer bytes than asked at EOF.
            return hashlib.sha256(data).hexdigest()
        hasher = hashlib.sha256(data)
    else:
        hasher = hashlib.sha256()
        if hasattr(os, "posix_fadvise"):
            # Tell the kernel to read ahead aggressively; harmless if already cached.
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        if size_hint >= LARGE_FILE:
            return _digest_pipelined(fd, hasher)
    buf = bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    while True:
        n = os.readv(fd, [buf])
        if n == 0:
            break
        hasher.update(view[:n])
    return hasher.hexdigest()


def _digest_pipelined(fd: int, hasher: hashlib._Hash) -> str:
    """Hash ``fd`` to EOF with reads on a helper thread (both sides release the GIL)."""
    free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
    full: queue.SimpleQueue[tuple[bytearray, int] | OSError] = queue.SimpleQueue()
    for _ in range(3):
        free.put(bytearray(_PIPELINE_CHUNK))

    stop = threading.Event()

    def read_ahead() -> None:
        try:
            while True:
                buf = free.get()
                if stop.is_set():
                    return
                count = os.readv(fd, [buf])
                full.put((buf, count))
                if count == 0:
                    return
        except OSError as exc:
            full.put(exc)

    reader = threading.Thread(target=read_ahead, name="buildprint-read", daemon=True)
    reader.start()
    try:
        while True:
            item = full.get()
            if isinstance(item, OSError):
                raise item
            buf, count = item
            if count == 0:
                return hasher.hexdigest()
            with memoryview(buf) as view:
                hasher.update(view[:count])
            free.put(buf)
    finally:
        # Normally the reader already stopped at EOF or on error; if hashing was
        # interrupted, wake it so it can see the stop flag.
        stop.set()
        free.put(bytearray(0))
        reader.join()


def file_digest(path: Path) -> str:
    """Hex SHA-256 of the raw bytes of the file at ``path`` (symlinks are followed).

    A missing or unreadable file raises :class:`InputError` naming it.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
        try:
            return digest_fd(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}", file=path) from None
