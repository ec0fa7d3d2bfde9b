"""The canonical source scheme: which entries count, one record per entry, their digest."""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "DIR_MARK",
    "EXEC_FILE_MARK",
    "FILE_MARK",
    "IGNORED_NAMES",
    "IGNORED_ROOT_NAMES",
    "IGNORED_SUFFIXES",
    "LINK_MARK",
    "MAX_LINK_HOPS",
    "SCHEME",
    "SDIST_MARKER",
    "SDIST_METADATA_SUFFIX",
    "SourceDigest",
    "canonical_digest",
    "dir_record",
    "encode_path",
    "file_record",
    "ignore_rules",
    "is_ignored",
    "link_escapes",
    "link_record",
]

#: Name of the canonical scheme; it prefixes the hashed stream so that a future
#: change of encoding can never collide with a digest made under this one.
#: v2: tool caches (``.pytest_cache``, ``.mypy_cache``, ``.ruff_cache``, ``.DS_Store``,
#: ``.coverage``) are ignored, and an sdist's ``*.egg-info`` counts (see SDIST_MARKER).
SCHEME = "buildprint-source-v2"
_HEADER = SCHEME.encode("ascii") + b"\0"

#: Names ignored at any depth: VCS metadata and build, test or tool debris that working
#: in a source tree creates inside it; hashing them would make every in-place build
#: or test run change the source digest, and building with them would let a stale
#: copy decide what the wheel holds.
IGNORED_NAMES = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "__pycache__",
        ".tox",
        ".nox",
        ".venv",
        ".buildprint",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".DS_Store",
        ".coverage",
    }
)
#: Name endings ignored at any depth (byte code, setuptools metadata directories).
IGNORED_SUFFIXES = (".pyc", ".egg-info")
#: Names ignored only directly under the source root: setuptools' output folders.
#: Deeper down they are ordinary sources (``src/build/`` is the ``build`` package).
IGNORED_ROOT_NAMES = frozenset({"build", "dist"})
#: A regular file of this name directly under the root makes the tree an **sdist**
#: (every sdist has one; a checkout has none). In an sdist, ``*.egg-info`` is content:
#: setuptools' sdist command wrote it, and a setuptools build of the sdist reads its
#: ``SOURCES.txt`` to decide which package data the wheel holds, as ``pip wheel`` does.
SDIST_MARKER = "PKG-INFO"
SDIST_METADATA_SUFFIX = ".egg-info"

_Rules = tuple[frozenset[str], tuple[str, ...]]
_RULES: dict[tuple[bool, bool], _Rules] = {
    (top_level, sdist): (
        IGNORED_NAMES | IGNORED_ROOT_NAMES if top_level else IGNORED_NAMES,
        tuple(s for s in IGNORED_SUFFIXES if not (sdist and s == SDIST_METADATA_SUFFIX)),
    )
    for top_level in (False, True)
    for sdist in (False, True)
}

#: Symlink chains longer than this are treated as loops (the Linux limit is 40).
MAX_LINK_HOPS = 40


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


def ignore_rules(top_level: bool, sdist: bool) -> _Rules:
    """The names and name endings ignored in one folder of a tree (``top_level``: the root).

    The one definition of what a source tree leaves out: :func:`is_ignored` (archives)
    and the folder walk of :mod:`buildprint.inputs.tree` both apply it, name by name,
    so what is digested and what lands in the build tree cannot drift apart.
    """
    return _RULES[top_level, sdist]


def is_ignored(parts: list[str], *, sdist: bool) -> bool:
    """Whether a root-relative path (split on ``/``) is left out of the source tree.

    ``sdist``: whether the tree's root holds a regular :data:`SDIST_MARKER` file.
    """
    for depth, name in enumerate(parts):
        names, suffixes = _RULES[depth == 0, sdist]
        if name in names or name.endswith(suffixes):
            return True
    return False


def link_escapes(name: str, links: Mapping[str, str], floor: int = 0) -> bool:
    """Whether the symlink ``name`` of a tree resolves outside it.

    ``links`` maps every symlink of the tree (root-relative ``/`` paths, or archive names
    with ``floor`` leading components that belong to the root) to its target. The target
    is resolved lexically from the link's folder, following the tree's other links (at
    most :data:`MAX_LINK_HOPS`); absolute targets always escape: the build tree is a copy
    somewhere else, where an absolute path names something that is not in it.
    """
    target = links[name]
    if target.startswith("/"):
        return True
    stack = name.split("/")[:-1]
    if len(stack) < floor:
        return True
    pending = collections.deque(target.split("/"))
    hops = 0
    while pending:
        part = pending.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            if len(stack) <= floor:
                return True
            stack.pop()
            continue
        stack.append(part)
        found = links.get("/".join(stack))
        if found is not None:
            hops += 1
            if hops > MAX_LINK_HOPS or found.startswith("/"):
                return True
            stack.pop()
            pending.extendleft(reversed(found.split("/")))
    return False


def encode_path(path: str) -> bytes:
    """The bytes of a path (or link target) in a record.

    surrogateescape round-trips names that were not valid UTF-8 to their raw bytes,
    the same bytes ``os.fsencode`` gives for them once extracted.
    """
    return path.encode("utf-8", "surrogateescape")
