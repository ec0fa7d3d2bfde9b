"""Fast SHA-256 of a file's raw bytes, the primitive every source digest is built on."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from buildprint.errors import InputError

__all__ = ["SMALL_FILE", "digest_fd", "file_digest"]

#: Files up to this size are read with one ``read`` call: fewer syscalls and no
#: buffer juggling, which is what dominates when hashing thousands of small sources.
SMALL_FILE = 1 << 20

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
    # Large files: SHA-256 itself is the bottleneck (the copy out of the page cache
    # is a few percent), so hashlib's own loop (reused buffer, readinto, no
    # allocation per chunk) is as fast as it gets; a read-ahead thread measured no
    # steadier gain on a busy 2-core machine.
    with open(fd, "rb", buffering=0, closefd=False) as stream:
        return hashlib.file_digest(stream, lambda: hasher).hexdigest()


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
