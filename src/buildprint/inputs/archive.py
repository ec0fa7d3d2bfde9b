"""Reading source archives (tar and zip) member by member, checked, and their canonical digest."""

from __future__ import annotations

import bz2
import collections
import hashlib
import io
import lzma
import os
import stat
import tarfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Literal, cast

from isal import igzip, isal_zlib

from buildprint.errors import ArchiveError
from buildprint.inputs.records import (
    SDIST_MARKER,
    SourceDigest,
    canonical_digest,
    dir_record,
    encode_path,
    file_record,
    is_ignored,
    link_escapes,
    link_record,
)

__all__ = [
    "ARCHIVE_SUFFIXES",
    "CHUNK",
    "DEFAULT_LIMITS",
    "DIR",
    "FILE",
    "HARDLINK",
    "READ_ERRORS",
    "SYMLINK",
    "ArchiveLayout",
    "ArchiveLimits",
    "Member",
    "MemberKind",
    "archive_digest",
    "archive_suffix",
    "format_size",
    "limits_for",
    "member_path",
    "open_members",
    "use_limits",
]

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar", ".zip")

#: Read size for member contents and decompressed streams.
CHUNK = 1 << 20
# tarfile's internal read size: large enough to amortise Python calls, small enough
# that its per-header buffer slicing stays cheap for archives of many small files.
_TAR_BUFSIZE = 64 << 10
# A symlink target longer than this is not a path any tool wrote on purpose.
_MAX_LINK = 4096
# Gaps between reads this small are hashed from the file at once, so the raw
# digest of a zip advances in one pass despite skipped data descriptors.
_GAP_FILL = 1 << 16

#: What an archive member is (tar hard links become regular files in the layout).
MemberKind = Literal["file", "dir", "symlink", "hardlink"]
FILE: Final = "file"
DIR: Final = "dir"
SYMLINK: Final = "symlink"
HARDLINK: Final = "hardlink"

#: What a broken or truncated archive raises somewhere in the decompression and
#: parsing stack; all of it is reported as ArchiveError, never as a traceback.
READ_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    zlib.error,
    # isal's stub declares ``error`` as an instance; at run time it is the exception class.
    cast("type[BaseException]", isal_zlib.error),
    lzma.LZMAError,
    UnicodeError,
    NotImplementedError,  # zip compression methods zipfile does not know
    RuntimeError,  # encrypted zip members
)


# -- how much an archive may unpack to ---------------------------------------------------


def format_size(size: int) -> str:
    """``size`` bytes for a message: ``1 GiB``, ``10 MiB``, ``512 KiB``, ``300 bytes``."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            value = size / (1 << shift)
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"


@dataclass(frozen=True)
class ArchiveLimits:
    """How far an archive may expand before it is refused as a decompression bomb.

    ``max_unpacked`` bounds the total of the decompressed stream (tar) or of the members'
    contents (zip); ``max_ratio`` bounds that total over the archive's size on disk, once the
    total passes ``ratio_floor`` (small sdists of text compress far better than 200x and are
    harmless). Set in ``buildprint.toml``: ``[project] max-unpacked-size``,
    ``max-expansion-ratio``.
    """

    max_unpacked: int = 1 << 30
    max_ratio: int = 200
    ratio_floor: int = 64 << 20


#: The limits of a project that sets none.
DEFAULT_LIMITS: Final = ArchiveLimits()

_SETTINGS_HINT = "under [project] in buildprint.toml"


class _Budget:
    """Counts what an archive unpacks to and refuses it as soon as a limit is passed."""

    def __init__(self, archive: Path, limits: ArchiveLimits, packed: int) -> None:
        self.archive = archive
        self.limits = limits
        self.packed = max(packed, 1)
        self.unpacked = 0

    def check(self, total: int) -> None:
        """Refuse the archive if it unpacks to ``total`` bytes (so far, or as declared)."""
        limits = self.limits
        if total > limits.max_unpacked:
            raise ArchiveError(
                f"archive unpacks to more than {format_size(limits.max_unpacked)} "
                f"(max-unpacked-size {_SETTINGS_HINT}); refusing to unpack it",
                file=self.archive,
            )
        if total > limits.ratio_floor and total > self.packed * limits.max_ratio:
            raise ArchiveError(
                f"archive expands more than {limits.max_ratio}x "
                f"({format_size(total)} from {format_size(self.packed)}; "
                f"max-expansion-ratio {_SETTINGS_HINT}); refusing to unpack it",
                file=self.archive,
            )

    def add(self, count: int) -> None:
        """Count ``count`` more bytes actually decompressed."""
        self.unpacked += count
        self.check(self.unpacked)

    def counted(
        self, read: Callable[[int], bytes | memoryview]
    ) -> Callable[[int], bytes | memoryview]:
        """``read``, counting every byte it returns."""

        def counting(size: int) -> bytes | memoryview:
            chunk = read(size)
            self.add(len(chunk))
            return chunk

        return counting


# The limits the project of each archive set, for readers not handed them (extraction
# happens in the builder, which knows the archive by its path only).
_LIMITS: dict[str, ArchiveLimits] = {}
_LIMITS_LOCK = threading.Lock()


def use_limits(path: Path, limits: ArchiveLimits) -> None:
    """Read ``path`` with ``limits`` wherever no limits are passed explicitly."""
    with _LIMITS_LOCK:
        _LIMITS[os.path.abspath(path)] = limits


def limits_for(path: Path) -> ArchiveLimits:
    """The limits set for ``path`` by :func:`use_limits`, else :data:`DEFAULT_LIMITS`."""
    with _LIMITS_LOCK:
        return _LIMITS.get(os.path.abspath(path), DEFAULT_LIMITS)


# -- reading the archive file once ------------------------------------------------------


class _RawHasher(io.RawIOBase):
    """The archive file, hashed as it is read so its sha256 costs no second pass.

    Reads may seek (zip); bytes are hashed in file order as soon as the read
    position reaches the hashed prefix, and :meth:`finish` hashes whatever was
    never read (zip central directory read first, tar padding).
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed in close()
        self._sha = hashlib.sha256()
        self._pos = 0
        self._hashed = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        start = self._pos
        count = self._file.readinto(buffer) or 0
        self._pos += count
        if count:
            if start > self._hashed and start - self._hashed <= _GAP_FILL:
                self._sha.update(os.pread(self._file.fileno(), start - self._hashed, self._hashed))
                self._hashed = start
            if start <= self._hashed < start + count:
                with memoryview(buffer) as view:
                    self._sha.update(view[self._hashed - start : count])
                self._hashed = start + count
        return count

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._pos = self._file.seek(offset, whence)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        self._file.close()
        super().close()

    def finish(self) -> str:
        """Hash the bytes never read and return the file's hex sha256."""
        fd = self._file.fileno()
        while True:
            block = os.pread(fd, CHUNK, self._hashed)
            if not block:
                return self._sha.hexdigest()
            self._sha.update(block)
            self._hashed += len(block)


class _TarStream:
    """The decompressed tar stream as tarfile reads it, remembering its last bytes.

    ``read`` hands out zero-copy slices of 1 MiB decompressed chunks (short reads
    are fine for tarfile). The most recent bytes are kept so the end-of-archive
    block can be checked once tarfile stops. Decompression stays on this thread:
    a worker thread measured slower on a busy 2-core machine than inline work.
    """

    def __init__(self, source: IO[bytes], keep: int, budget: _Budget) -> None:
        self._source = source
        self._budget = budget
        self._chunk = memoryview(b"")
        self._offset = 0
        self._eof = False
        self.delivered = 0
        self._keep = keep
        self._recent: collections.deque[tuple[int, memoryview]] = collections.deque()
        self._recent_size = 0

    def read(self, size: int) -> bytes | memoryview:
        if self._offset >= len(self._chunk):
            if self._eof:
                return b""
            data = self._source.read(CHUNK)
            if not data:
                self._eof = True
                return b""
            self._budget.add(len(data))  # every decompressed byte, headers and padding too
            self._chunk = memoryview(data)
            self._offset = 0
        piece = self._chunk[self._offset : self._offset + size]
        self._offset += len(piece)
        self._recent.append((self.delivered, piece))
        self._recent_size += len(piece)
        while self._recent_size - len(self._recent[0][1]) >= self._keep:
            self._recent_size -= len(self._recent.popleft()[1])
        self.delivered += len(piece)
        return piece

    def recent(self, start: int, size: int) -> bytes | None:
        """Bytes ``[start, start+size)`` of the stream if still kept, else None."""
        data = b"".join(piece for _, piece in self._recent)
        first = self._recent[0][0] if self._recent else self.delivered
        if start < first or start + size > first + len(data):
            return None
        return data[start - first : start - first + size]


# -- members ------------------------------------------------------------------------------


@dataclass(slots=True)
class Member:
    """One archive member, path already normalised and checked."""

    name: str
    original: str
    kind: MemberKind
    executable: bool = False
    target: str = ""
    mtime: int = 0
    read: Callable[[int], bytes | memoryview] | None = None


@dataclass(slots=True)
class _Entry:
    kind: MemberKind
    executable: bool = False
    digest: str = ""
    size: int = 0
    target: str = ""


def member_path(name: str, archive: Path, what: str = "member") -> str | None:
    """Root-relative POSIX path of a member name; None for the root itself."""
    if "\0" in name:
        raise ArchiveError(f"{what} {name!r} has a NUL byte in its name", file=archive)
    if name.startswith("/"):
        raise ArchiveError(f"{what} {name!r} has an absolute path", file=archive)
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"{what} {name!r} has a '..' path component", file=archive)
    return "/".join(parts) if parts else None


def _iter_tar(tar: tarfile.TarFile, archive: Path, budget: _Budget) -> Iterator[Member]:
    for info in tar:
        # The header says how far the stream will go: refuse before the member is read.
        budget.check(info.offset_data + info.size)
        name = member_path(info.name, archive)
        if name is None:
            continue  # "./": the root directory itself
        executable = bool(info.mode & stat.S_IXUSR)
        if info.issparse():
            raise ArchiveError(f"member {info.name!r} is a sparse file", file=archive)
        if info.isreg():
            content = tar.extractfile(info)
            assert content is not None  # regular members always have content
            # .raw skips BufferedReader's extra copy of every chunk.
            yield Member(name, info.name, FILE, executable, "", int(info.mtime), content.raw.read)  # type: ignore[attr-defined]
        elif info.isdir():
            yield Member(name, info.name, DIR)
        elif info.issym():
            yield Member(name, info.name, SYMLINK, target=info.linkname)
        elif info.islnk():
            yield Member(name, info.name, HARDLINK, executable, info.linkname, int(info.mtime))
        elif info.ischr() or info.isblk():
            raise ArchiveError(f"member {info.name!r} is a device file", file=archive)
        elif info.isfifo():
            raise ArchiveError(f"member {info.name!r} is a fifo", file=archive)
        else:
            raise ArchiveError(
                f"member {info.name!r} has unsupported tar type {info.type!r}", file=archive
            )


def _iter_zip(zipped: zipfile.ZipFile, archive: Path, budget: _Budget) -> Iterator[Member]:
    # What the central directory declares is refused before anything is read; what is
    # actually decompressed is counted too, as a header may lie.
    budget.check(sum(info.file_size for info in zipped.infolist()))
    # File order keeps the raw hash advancing in a single pass over the file.
    for info in sorted(zipped.infolist(), key=lambda item: item.header_offset):
        name = member_path(info.filename, archive)
        if name is None:
            continue
        mode = info.external_attr >> 16 if info.create_system == 3 else 0
        kind = stat.S_IFMT(mode)
        mtime = int(_zip_mtime(info))
        if info.is_dir() or kind == stat.S_IFDIR:
            yield Member(name, info.filename, DIR)
        elif kind == stat.S_IFLNK:
            if info.file_size > _MAX_LINK:
                raise ArchiveError(
                    f"member {info.filename!r}: symlink target too long", file=archive
                )
            data = zipped.read(info)
            budget.add(len(data))
            target = data.decode("utf-8", "surrogateescape")
            yield Member(name, info.filename, SYMLINK, target=target)
        elif kind in (stat.S_IFCHR, stat.S_IFBLK):
            raise ArchiveError(f"member {info.filename!r} is a device file", file=archive)
        elif kind == stat.S_IFIFO:
            raise ArchiveError(f"member {info.filename!r} is a fifo", file=archive)
        elif kind not in (0, stat.S_IFREG):
            raise ArchiveError(f"member {info.filename!r} has unsupported type", file=archive)
        else:
            with zipped.open(info) as content:
                yield Member(
                    name,
                    info.filename,
                    FILE,
                    bool(mode & stat.S_IXUSR),
                    "",
                    mtime,
                    budget.counted(content.read),
                )


def _zip_mtime(info: zipfile.ZipInfo) -> float:
    """Seconds since the epoch of a zip member's DOS timestamp (local time, as zip says)."""
    try:
        return time.mktime((*info.date_time, 0, 0, -1))
    except (OverflowError, ValueError):
        return 0.0


def archive_suffix(path: Path) -> str:
    """The archive type of ``path``, by its name (one of :data:`ARCHIVE_SUFFIXES`)."""
    lowered = path.name.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if lowered.endswith(suffix):
            return suffix
    raise ArchiveError(
        f"unsupported archive type (expected one of {', '.join(ARCHIVE_SUFFIXES)})", file=path
    )


@contextmanager
def open_members(
    path: Path, limits: ArchiveLimits | None = None
) -> Iterator[tuple[Iterator[Member], Callable[[], str]]]:
    """Open ``path`` and yield its members plus a function giving the raw sha256.

    The raw function may only be called once every member was consumed; for tar it
    also proves the archive is complete (end-of-archive block, compression trailer).
    An archive that unpacks past ``limits`` (default: :func:`limits_for` the path) is
    refused with :class:`ArchiveError` as soon as a header or the bytes read so far show it.
    """
    suffix = archive_suffix(path)
    try:
        raw = _RawHasher(path)
        packed = os.stat(path).st_size
    except OSError as exc:
        raise ArchiveError(f"cannot open archive: {exc.strerror or exc}", file=path) from None
    budget = _Budget(path, limits or limits_for(path), packed)
    with raw:
        if suffix == ".zip":
            with zipfile.ZipFile(raw) as zipped:
                yield _iter_zip(zipped, path, budget), raw.finish
            return
        source: IO[bytes]
        if suffix in (".tar.gz", ".tgz"):
            source = cast(IO[bytes], igzip.IGzipFile(fileobj=raw, mode="rb"))  # type: ignore[no-untyped-call]
        elif suffix == ".tar.bz2":
            source = bz2.BZ2File(io.BufferedReader(raw, CHUNK))
        elif suffix == ".tar.xz":
            source = lzma.LZMAFile(io.BufferedReader(raw, CHUNK))  # noqa: SIM115
        else:
            source = io.BufferedReader(raw, CHUNK)
        stream = _TarStream(source, keep=2 * _TAR_BUFSIZE + 1024, budget=budget)
        try:
            tar = tarfile.open(  # type: ignore[call-overload]  # noqa: SIM115
                fileobj=stream,
                mode="r|",
                bufsize=_TAR_BUFSIZE,
                encoding="utf-8",
                errors="surrogateescape",
            )

            def finish() -> str:
                # tarfile stops silently at EOF or at a garbage header; only a zero
                # block where it stopped proves the archive was not cut short.
                block = stream.recent(tar.offset, tarfile.BLOCKSIZE)
                if block is None or block.count(0) != tarfile.BLOCKSIZE:
                    raise ArchiveError(
                        f"archive is truncated or corrupt at byte {tar.offset} of its tar stream",
                        file=path,
                    )
                while stream.read(CHUNK):  # reach EOF so the compressor checks its trailer
                    pass
                return raw.finish()

            yield _iter_tar(tar, path, budget), finish
        finally:
            source.close()


# -- the layout of an archive ---------------------------------------------------------------


class ArchiveLayout:
    """The tree an archive describes, checked member by member before anything is written."""

    def __init__(self, archive: Path) -> None:
        self.archive = archive
        self.entries: dict[str, _Entry] = {}

    def _fail(self, member: Member, why: str) -> ArchiveError:
        return ArchiveError(f"member {member.original!r} {why}", file=self.archive)

    def add(self, member: Member) -> _Entry:
        entries = self.entries
        parts = member.name.split("/")
        for depth in range(1, len(parts)):
            ancestor = "/".join(parts[:depth])
            found = entries.get(ancestor)
            if found is None:
                entries[ancestor] = _Entry(DIR)
            elif found.kind != DIR:
                raise self._fail(member, f"lies inside {ancestor!r}, which is a {found.kind}")
        existing = entries.get(member.name)
        if existing is not None and (existing.kind == DIR) != (member.kind == DIR):
            raise self._fail(member, f"replaces a {existing.kind} of the same name")
        if member.kind == DIR:
            return existing or entries.setdefault(member.name, _Entry(DIR))
        if member.kind == SYMLINK:
            if not member.target or "\0" in member.target:
                raise self._fail(member, "is a symlink with an empty or invalid target")
            if member.target.startswith("/"):
                raise self._fail(member, f"is a symlink to an absolute path {member.target!r}")
            entry = _Entry(SYMLINK, target=member.target)
        elif member.kind == HARDLINK:
            target = member_path(member.target, self.archive, f"hard link {member.original!r} to")
            source = entries.get(target) if target is not None else None
            if source is None or source.kind != FILE:
                raise self._fail(
                    member, f"is a hard link to {member.target!r}, not an earlier regular file"
                )
            entry = _Entry(FILE, member.executable, source.digest, source.size)
        else:
            entry = _Entry(FILE, member.executable)
        entries[member.name] = entry
        return entry

    def top(self) -> str | None:
        """The single top-level directory every member sits under, if there is one."""
        tops = {name.partition("/")[0] for name in self.entries}
        if len(tops) == 1:
            (top,) = tops
            if self.entries[top].kind == DIR:
                return top
        return None

    def tree(self) -> tuple[list[tuple[str, str, _Entry]], list[str]]:
        """The source tree the archive holds, and what it leaves out.

        The first list is every entry of the tree as ``(member name, root-relative path,
        entry)``: what the digest covers and :func:`~buildprint.inputs.extract.safe_extract`
        leaves in place. The second names the outermost ignored members (an ignored folder,
        not everything below it), which extraction removes.
        """
        top = self.top()
        cut = len(top) + 1 if top is not None else 0
        marker = self.entries.get(f"{top}/{SDIST_MARKER}" if top is not None else SDIST_MARKER)
        sdist = marker is not None and marker.kind == FILE
        kept: list[tuple[str, str, _Entry]] = []
        dropped: list[str] = []
        for name, entry in self.entries.items():
            relative = name[cut:]
            if not relative:
                continue
            parts = relative.split("/")
            if is_ignored(parts, sdist=sdist):
                # Only the outermost: its parent (if any) is part of the tree.
                if len(parts) == 1 or not is_ignored(parts[:-1], sdist=sdist):
                    dropped.append(name)
                continue
            kept.append((name, relative, entry))
        return kept, dropped

    def check_links(self) -> None:
        """Refuse symlinks that resolve outside the source root (following other links).

        Like every other check of a member, this covers all of them, ignored ones too:
        an archive holding an escaping link is refused even where the link would be
        left out of the tree.
        """
        links = {name: e.target for name, e in self.entries.items() if e.kind == SYMLINK}
        floor = 1 if self.top() is not None else 0
        for name, target in links.items():
            if link_escapes(name, links, floor):
                raise ArchiveError(
                    f"member {name!r} is a symlink to {target!r}, "
                    "which points outside the source tree",
                    file=self.archive,
                )

    def source_digest(
        self, raw_sha256: str | None, entries: list[str] | None = None
    ) -> SourceDigest:
        """The digest of :meth:`tree`; ``entries`` (if given) receives its paths."""
        self.check_links()
        kept, _ = self.tree()
        records: list[bytes] = []
        files = size = 0
        for _, relative, entry in kept:
            path = encode_path(relative)
            if entry.kind == DIR:
                records.append(dir_record(path))
            elif entry.kind == SYMLINK:
                files += 1
                records.append(link_record(path, encode_path(entry.target)))
            else:
                files += 1
                size += entry.size
                records.append(file_record(path, entry.executable, entry.digest))
        if entries is not None:
            entries.extend(relative for _, relative, _ in kept)
        return SourceDigest(canonical_digest(records), files, size, raw_sha256)


# -- the digest -----------------------------------------------------------------------------


def _hash_content(read: Callable[[int], bytes | memoryview]) -> tuple[str, int]:
    sha = hashlib.sha256()
    size = 0
    while chunk := read(CHUNK):
        sha.update(chunk)
        size += len(chunk)
    return sha.hexdigest(), size


def archive_digest(
    path: Path, *, entries: list[str] | None = None, limits: ArchiveLimits | None = None
) -> SourceDigest:
    """Canonical content digest of an sdist or other source archive, in one streaming pass.

    The single top-level directory (``name-version/``) is stripped, so the result
    equals ``tree_digest(safe_extract(path, dest))``. Unsafe members are refused
    exactly as :func:`buildprint.inputs.extract.safe_extract` refuses them.
    ``entries`` (if given) receives the root-relative path of every entry digested:
    exactly the paths ``safe_extract`` leaves in the source root. An archive expanding past
    ``limits`` (see :func:`open_members`) is refused.
    """
    path = Path(path)
    layout = ArchiveLayout(path)
    try:
        with open_members(path, limits) as (members, finish):
            for member in members:
                entry = layout.add(member)
                if member.read is not None:
                    entry.digest, entry.size = _hash_content(member.read)
            raw_sha256 = finish()
    except ArchiveError:
        raise
    except READ_ERRORS as exc:
        raise ArchiveError(f"cannot read archive: {exc}", file=path) from None
    return layout.source_digest(raw_sha256, entries)
