"""Canonical content digest of a source directory, memoised so unchanged files are not re-read."""

from __future__ import annotations

import gc
import json
import os
import stat
import time
from pathlib import Path

from buildprint.errors import InputError
from buildprint.fsio import write_atomic
from buildprint.inputs.files import digest_fd
from buildprint.inputs.records import (
    DIR_MARK,
    EXEC_FILE_MARK,
    FILE_MARK,
    IGNORED_NAMES,
    IGNORED_ROOT_NAMES,
    IGNORED_SUFFIXES,
    LINK_MARK,
    SourceDigest,
    canonical_digest,
)

__all__ = ["MEMO_FORMAT", "RACY_WINDOW_NS", "TreeMemo", "tree_digest"]

#: Identifies the memo file layout; a file with another value is ignored (empty memo).
MEMO_FORMAT = "buildprint-tree-memo-1"

#: Files modified less than this long before a walk started are hashed but not
#: memoised: a second write within the file system's timestamp granularity could
#: leave size, mtime and inode unchanged ("racily clean", as git calls it).
RACY_WINDOW_NS = 2_000_000_000

_IGNORED_AT_ROOT = IGNORED_NAMES | IGNORED_ROOT_NAMES
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)

#: Memo value: (size, mtime_ns, inode, content digest as ASCII hex + NUL, i.e. the
#: tail of the file's canonical record, so a memo hit needs one concatenation).
_Stamp = tuple[int, int, int, bytes]


class TreeMemo:
    """Per-file content digests keyed by (relative path, size, mtime_ns, inode).

    Only content digests are memoised; file type and exec bit are always taken from
    the current ``lstat``, so a ``chmod +x`` is seen without re-reading the file.
    After each :func:`tree_digest` the memo holds exactly the files of that walk, so
    :meth:`save` drops entries for files that are gone.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.entries: dict[bytes, _Stamp] = {}
        #: Regular files the last walk took from the memo, and the ones it read and hashed.
        self.hits = 0
        self.reads = 0
        #: Whether the entries differ from the file (as loaded or last saved).
        self.changed = False

    def __len__(self) -> int:
        return len(self.entries)

    @classmethod
    def load(cls, path: Path) -> TreeMemo:
        """Read the memo at ``path``; a missing, unreadable or corrupt file gives an empty memo."""
        memo = cls(path)
        try:
            data = json.loads(Path(path).read_bytes())
            if not isinstance(data, dict) or data.get("format") != MEMO_FORMAT:
                return memo
            entries = data["entries"]
            loaded: dict[bytes, _Stamp] = {}
            for name, (size, mtime_ns, inode, digest) in entries.items():
                if not (
                    isinstance(size, int)
                    and isinstance(mtime_ns, int)
                    and isinstance(inode, int)
                    and isinstance(digest, str)
                    and len(digest) == 64
                ):
                    return memo
                loaded[name.encode("utf-8", "surrogateescape")] = (
                    size,
                    mtime_ns,
                    inode,
                    digest.encode("ascii") + b"\0",
                )
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return memo
        memo.entries = loaded
        return memo

    def save(self) -> None:
        """Write the memo atomically (:func:`buildprint.fsio.write_atomic`)."""
        if self.path is None:
            raise ValueError("this TreeMemo has no file to save to")
        entries = {
            name.decode("utf-8", "surrogateescape"): [size, mtime_ns, inode, digest[:-1].decode()]
            for name, (size, mtime_ns, inode, digest) in self.entries.items()
        }
        # ensure_ascii keeps undecodable names (lone surrogates) representable.
        payload = json.dumps({"format": MEMO_FORMAT, "entries": entries}, separators=(",", ":"))
        write_atomic(self.path, payload.encode("ascii"))
        self.changed = False


def tree_digest(root: Path, memo: TreeMemo | None = None) -> SourceDigest:
    """Canonical content digest of the directory ``root`` (same scheme as archives).

    Symlinks are recorded as links and never followed; VCS and build debris
    (``records.IGNORED_*``) is skipped. With ``memo``, files whose size, mtime and
    inode are unchanged are not read again, and the memo is updated in place.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError("source tree is not a directory", file=root)
    # The walk allocates a few objects per file and frees none; generational GC
    # passes over them would cost more than the walk itself on large trees.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _walk(root, memo)
    finally:
        if collecting:
            gc.enable()


def _walk(root: Path, memo: TreeMemo | None) -> SourceDigest:
    previous = memo.entries if memo is not None else {}
    current: dict[bytes, _Stamp] = {}
    racy_after = time.time_ns() - RACY_WINDOW_NS
    records: list[bytes] = []
    size = regular = links = reads = 0
    # Local names for everything touched per file: this loop is the warm cost.
    remember, add, suffixes = previous.get, records.append, IGNORED_SUFFIXES
    plain, executable, exec_bit = FILE_MARK, EXEC_FILE_MARK, stat.S_IXUSR
    # Directories are scanned through descriptors: scandir(fd) stats entries with
    # fstatat(fd, name), which skips resolving the whole path again for every file.
    # Only the root and the folder being scanned are open at any time.
    root_fd = _open_dir(root, os.fsencode(root), None)
    try:
        pending: list[bytes] = [b""]
        while pending:
            prefix = pending.pop()
            ignored = _IGNORED_AT_ROOT if not prefix else IGNORED_NAMES
            fd = _open_dir(root, prefix[:-1], root_fd) if prefix else root_fd
            try:
                with os.scandir(fd) as scan:
                    for entry in scan:
                        name = entry.name
                        if name in ignored or name.endswith(suffixes):
                            continue
                        relative = prefix + name.encode("utf-8", "surrogateescape")
                        # Regular files first: the common case, and is_file() is free.
                        if entry.is_file(follow_symlinks=False):
                            info = entry.stat(follow_symlinks=False)
                            stamp = remember(relative)
                            mode = info.st_mode
                            if (
                                stamp is None
                                or stamp[0] != info.st_size
                                or stamp[1] != info.st_mtime_ns
                                or stamp[2] != info.st_ino
                            ):
                                stamp, mode = _read(root, fd, name, relative)
                                reads += 1
                            if stamp[1] < racy_after:
                                current[relative] = stamp
                            size += stamp[0]
                            regular += 1
                            add(relative + (executable if mode & exec_bit else plain) + stamp[3])
                        elif entry.is_dir(follow_symlinks=False):
                            add(relative + DIR_MARK)
                            pending.append(relative + b"/")
                        elif entry.is_symlink():
                            target = os.readlink(name, dir_fd=fd).encode("utf-8", "surrogateescape")
                            add(relative + LINK_MARK + target + b"\0")
                            links += 1
                        else:
                            raise InputError(
                                f"{os.fsdecode(relative)!r} is not a regular file, "
                                "directory or symlink",
                                file=root,
                            )
            except OSError as exc:
                where = os.fsdecode(prefix) or "."
                raise InputError(f"cannot list {where!r}: {exc.strerror}", file=root) from None
            finally:
                if fd != root_fd:
                    os.close(fd)
    finally:
        os.close(root_fd)
    if memo is not None:
        # With nothing read, the new entries are a subset of the old: equal iff as many.
        memo.changed = memo.changed or reads > 0 or len(current) != len(previous)
        memo.entries = current
        memo.hits, memo.reads = regular - reads, reads
    return SourceDigest(canonical_digest(records), regular + links, size, None)


def _open_dir(root: Path, path: bytes, dir_fd: int | None) -> int:
    try:
        return os.open(path, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        where = os.fsdecode(path) if dir_fd is not None else "."
        raise InputError(f"cannot open folder {where!r}: {exc.strerror}", file=root) from None


def _read(root: Path, dir_fd: int, name: str, relative: bytes) -> tuple[_Stamp, int]:
    """Hash one file; the stamp comes from the open file so it matches what was read."""
    try:
        fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
        try:
            info = os.fstat(fd)
            digest = digest_fd(fd, info.st_size)
        finally:
            os.close(fd)
    except OSError as exc:
        where = os.fsdecode(relative)
        raise InputError(f"cannot read {where!r}: {exc.strerror}", file=root) from None
    stamp = (info.st_size, info.st_mtime_ns, info.st_ino, digest.encode("ascii") + b"\0")
    return stamp, info.st_mode
