"""The canonical source scheme: which entries count, one record per entry, their digest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = [
    "DIR_MARK",
    "EXEC_FILE_MARK",
    "FILE_MARK",
    "IGNORED_NAMES",
    "IGNORED_ROOT_NAMES",
    "IGNORED_SUFFIXES",
    "LINK_MARK",
    "SCHEME",
    "SourceDigest",
    "canonical_digest",
    "dir_record",
    "encode_path",
    "file_record",
    "is_ignored",
    "link_record",
]

#: Name of the canonical scheme; it prefixes the hashed stream so that a future
#: change of encoding can never collide with a digest made under this one.
SCHEME = "buildprint-source-v1"
_HEADER = SCHEME.encode("ascii") + b"\0"

#: Names ignored at any depth: VCS metadata and build or tool debris that a build
#: creates inside a source tree; hashing them would make every in-place build
#: change the source digest.
IGNORED_NAMES = frozenset(
    {".git", ".hg", ".svn", "__pycache__", ".tox", ".nox", ".venv", ".buildprint"}
)
#: Name endings ignored at any depth (byte code, setuptools metadata directories).
IGNORED_SUFFIXES = (".pyc", ".egg-info")
#: Names ignored only directly under the source root: setuptools' output folders.
#: Deeper down they are ordinary sources (``src/build/`` is the ``build`` package).
IGNORED_ROOT_NAMES = frozenset({"build", "dist"})


@dataclass(frozen=True)
class SourceDigest:
    """The ``source`` component: canonical content digest plus provenance.

    ``digest`` identifies the content (see docs/source-digest.md); ``files`` counts
    regular files and symlinks, ``size`` sums regular-file bytes, ``raw_sha256`` is
    the sha256 of the archive file itself (None for a directory).
    """

    digest: str
    files: int
    size: int
    raw_sha256: str | None


#: Record markers. Every record starts with the path and a NUL, and paths never hold
#: NUL, so plain byte order of whole records is the byte order of their paths.
DIR_MARK = b"\0D\0"
FILE_MARK = b"\0F\0-\0"
EXEC_FILE_MARK = b"\0F\0x\0"
LINK_MARK = b"\0L\0"


def dir_record(path: bytes) -> bytes:
    """Canonical record of a directory at root-relative ``path``."""
    return path + DIR_MARK


def file_record(path: bytes, executable: bool, digest: str) -> bytes:
    """Canonical record of a regular file: path, exec bit, hex sha256 of its content."""
    return path + (EXEC_FILE_MARK if executable else FILE_MARK) + digest.encode("ascii") + b"\0"


def link_record(path: bytes, target: bytes) -> bytes:
    """Canonical record of a symbolic link: path and the target exactly as stored."""
    return path + LINK_MARK + target + b"\0"


def canonical_digest(records: list[bytes]) -> str:
    """Digest of one record per entry; sorting makes member and walk order irrelevant."""
    records.sort()
    return hashlib.sha256(_HEADER + b"".join(records)).hexdigest()


def is_ignored(parts: list[str]) -> bool:
    """Whether a root-relative path (split on ``/``) is excluded from source digests."""
    if parts and parts[0] in IGNORED_ROOT_NAMES:
        return True
    return any(name in IGNORED_NAMES or name.endswith(IGNORED_SUFFIXES) for name in parts)


def encode_path(path: str) -> bytes:
    """The bytes of a path (or link target) in a record.

    surrogateescape round-trips names that were not valid UTF-8 to their raw bytes,
    the same bytes ``os.fsencode`` gives for them once extracted.
    """
    return path.encode("utf-8", "surrogateescape")
