"""Canonical content digest of a source directory, memoised so unchanged files are not re-read."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
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
    LINK_MARK,
    SDIST_MARKER,
    SourceDigest,
    canonical_digest,
    encode_path,
    ignore_rules,
    link_escapes,
)

__all__ = ["MEMO_FORMAT", "RACY_WINDOW_NS", "TreeMemo", "copy_tree", "tree_digest"]

#: Identifies the memo file layout; a file with another value is ignored (empty memo).
MEMO_FORMAT = "buildprint-tree-memo-1"

#: Files modified less than this long before a walk started are hashed but not
#: memoised: a second write within the file system's timestamp granularity could
#: leave size, mtime and inode unchanged ("racily clean", as git calls it).
RACY_WINDOW_NS = 2_000_000_000

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
_OPEN_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
#: Read size when copying a file.
_CHUNK = 1 << 20

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


def tree_digest(
    root: Path, memo: TreeMemo | None = None, *, entries: list[str] | None = None
) -> SourceDigest:
    """Canonical content digest of the directory ``root`` (same scheme as archives).

    Symlinks are recorded as links and never followed; one that resolves outside
    ``root`` is refused with :class:`InputError` naming it and its target. VCS and
    build debris (``records.ignore_rules``) is skipped. With ``memo``, files whose
    size, mtime and inode are unchanged are not read again, and the memo is updated
    in place. ``entries`` (if given) receives the root-relative path of every entry
    digested: exactly what :func:`copy_tree` copies.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError("source tree is not a directory", file=root)
    return _walk_quietly(root, memo, None, entries)


def copy_tree(root: Path, dest: Path, *, entries: list[str] | None = None) -> SourceDigest:
    """Copy the source tree ``root`` to the new folder ``dest``; return the digest of the copy.

    The copy walks exactly the entries :func:`tree_digest` digests (debris left out,
    symlinks copied as links, escaping ones refused) and the digest is taken from the
    bytes copied, so a caller comparing it with the digest its signature holds knows
    the copy is the tree that was signed. Files get mode ``0o755`` (exec bit set) or
    ``0o644`` and keep their mtime, as :func:`~buildprint.inputs.extract.safe_extract`
    does. ``dest`` must not exist; on any error it is removed again.
    """
    root, dest = Path(root), Path(dest)
    if not root.is_dir():
        raise InputError("source tree is not a directory", file=root)
    try:
        os.mkdir(dest, 0o755)
    except OSError as exc:
        raise InputError(f"cannot create {dest}: {exc.strerror}", file=root) from None
    try:
        return _walk_quietly(root, None, dest, entries)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _walk_quietly(
    root: Path, memo: TreeMemo | None, dest: Path | None, entries: list[str] | None
) -> SourceDigest:
    # The walk allocates a few objects per file and frees none; generational GC
    # passes over them would cost more than the walk itself on large trees.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _walk(root, memo, dest, entries)
    finally:
        if collecting:
            gc.enable()


def _walk(
    root: Path, memo: TreeMemo | None, dest: Path | None, entries: list[str] | None
) -> SourceDigest:
    previous = memo.entries if memo is not None else {}
    current: dict[bytes, _Stamp] = {}
    racy_after = time.time_ns() - RACY_WINDOW_NS
    records: list[bytes] = []
    links: dict[str, str] = {}
    size = regular = reads = 0
    # Local names for everything touched per file: this loop is the warm cost.
    remember, add = previous.get, records.append
    plain, executable, exec_bit = FILE_MARK, EXEC_FILE_MARK, stat.S_IXUSR
    # Directories are scanned through descriptors: scandir(fd) stats entries with
    # fstatat(fd, name), which skips resolving the whole path again for every file.
    # Only the root and the folder being scanned are open at any time (and, when
    # copying, their counterparts in ``dest``).
    root_fd = _open_dir(root, os.fsencode(root), None)
    out_root: int | None = None
    try:
        if dest is not None:
            out_root = _open_dir(root, os.fsencode(dest), None, copy=True)
        sdist = _is_sdist(root_fd)
        rules = {top: ignore_rules(top, sdist) for top in (True, False)}
        pending: list[bytes] = [b""]
        while pending:
            prefix = pending.pop()
            ignored, suffixes = rules[not prefix]
            fd = _open_dir(root, prefix[:-1], root_fd) if prefix else root_fd
            out = out_root
            try:
                if out_root is not None and prefix:
                    out = _open_dir(root, prefix[:-1], out_root, copy=True)
                with os.scandir(fd) as scan:
                    for entry in scan:
                        name = entry.name
                        if name in ignored or name.endswith(suffixes):
                            continue
                        relative = prefix + name.encode("utf-8", "surrogateescape")
                        # Regular files first: the common case, and is_file() is free.
                        if entry.is_file(follow_symlinks=False):
                            if out is None:
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
                            else:  # copying: what is hashed is what was written
                                stamp, mode = _copy(root, fd, name, relative, out)
                                reads += 1
                            size += stamp[0]
                            regular += 1
                            add(relative + (executable if mode & exec_bit else plain) + stamp[3])
                        elif entry.is_dir(follow_symlinks=False):
                            if out is not None:
                                _make_dir(root, name, relative, out)
                            add(relative + DIR_MARK)
                            pending.append(relative + b"/")
                        elif entry.is_symlink():
                            target = os.readlink(name, dir_fd=fd)
                            links[os.fsdecode(relative)] = target
                            add(relative + LINK_MARK + encode_path(target) + b"\0")
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
                if out is not None and out != out_root:
                    os.close(out)
        for link, target in links.items():
            if link_escapes(link, links):
                raise InputError(
                    f"{link!r} is a symlink to {target!r}, which points outside the source tree",
                    file=root,
                )
        if out_root is not None:
            # Made last, once every link was checked, so no write ever goes through one.
            for link, target in links.items():
                try:
                    os.symlink(target, link, dir_fd=out_root)
                except OSError as exc:
                    raise InputError(
                        f"cannot copy symlink {link!r} to {dest}: {exc.strerror}", file=root
                    ) from None
    finally:
        os.close(root_fd)
        if out_root is not None:
            os.close(out_root)
    if memo is not None:
        # With nothing read, the new entries are a subset of the old: equal iff as many.
        memo.changed = memo.changed or reads > 0 or len(current) != len(previous)
        memo.entries = current
        memo.hits, memo.reads = regular - reads, reads
    if entries is not None:
        entries.extend(
            record[: record.index(b"\0")].decode("utf-8", "surrogateescape") for record in records
        )
    return SourceDigest(canonical_digest(records), regular + len(links), size, None)


def _is_sdist(root_fd: int) -> bool:
    """Whether the tree is an sdist: a regular ``PKG-INFO`` directly under its root."""
    try:
        info = os.stat(SDIST_MARKER, dir_fd=root_fd, follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode)


def _open_dir(root: Path, path: bytes, dir_fd: int | None, *, copy: bool = False) -> int:
    try:
        # The copy's folders were all made by the walk; never follow a link there.
        return os.open(path, _DIR_FLAGS | (_NOFOLLOW if copy else 0), dir_fd=dir_fd)
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


def _make_dir(root: Path, name: str, relative: bytes, out_fd: int) -> None:
    try:
        os.mkdir(name, 0o755, dir_fd=out_fd)
    except OSError as exc:
        where = os.fsdecode(relative)
        raise InputError(f"cannot copy folder {where!r}: {exc.strerror}", file=root) from None


def _copy(root: Path, dir_fd: int, name: str, relative: bytes, out_fd: int) -> tuple[_Stamp, int]:
    """Copy one file into the folder ``out_fd``, hashing the bytes as they are written."""
    where = os.fsdecode(relative)
    try:
        fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise InputError(f"cannot read {where!r}: {exc.strerror}", file=root) from None
    try:
        info = os.fstat(fd)
        try:
            out = os.open(name, _CREATE_FLAGS, 0o600, dir_fd=out_fd)
        except OSError as exc:
            raise InputError(f"cannot copy {where!r}: {exc.strerror}", file=root) from None
        try:
            sha = hashlib.sha256()
            copied = 0
            while True:
                try:
                    chunk = os.read(fd, _CHUNK)
                except OSError as exc:
                    raise InputError(f"cannot read {where!r}: {exc.strerror}", file=root) from None
                if not chunk:
                    break
                sha.update(chunk)
                copied += len(chunk)
                view = memoryview(chunk)
                try:
                    while view:
                        view = view[os.write(out, view) :]
                except OSError as exc:
                    raise InputError(f"cannot copy {where!r}: {exc.strerror}", file=root) from None
            # Only the exec bit counts; build systems (make) compare mtimes.
            os.fchmod(out, 0o755 if info.st_mode & stat.S_IXUSR else 0o644)
            os.utime(out, ns=(info.st_mtime_ns, info.st_mtime_ns))
        finally:
            os.close(out)
    finally:
        os.close(fd)
    stamp = (copied, info.st_mtime_ns, info.st_ino, sha.hexdigest().encode("ascii") + b"\0")
    return stamp, info.st_mode
