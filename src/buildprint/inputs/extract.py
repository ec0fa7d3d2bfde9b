"""Safe extraction of a source archive: every member checked before anything lands in place."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

from buildprint.errors import ArchiveError
from buildprint.inputs.archive import (
    CHUNK,
    DIR,
    FILE,
    HARDLINK,
    READ_ERRORS,
    SYMLINK,
    ArchiveLayout,
    ArchiveLimits,
    Member,
    archive_suffix,
    member_path,
    open_members,
)

__all__ = ["safe_extract"]


def _write_file(target: str, member: Member) -> None:
    assert member.read is not None
    if os.path.lexists(target):
        os.unlink(target)  # a later member of the same name wins, as with tar
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(target, flags | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        while chunk := member.read(CHUNK):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        _finish_file(fd, member)
    finally:
        os.close(fd)


def _finish_file(fd: int, member: Member) -> None:
    # Only the exec bit is meaningful; everything else gets a fixed mode.
    os.fchmod(fd, 0o755 if member.executable else 0o644)
    if member.mtime > 0:
        # Build systems (make, autotools) compare timestamps of shipped files.
        os.utime(fd, (member.mtime, member.mtime))


def safe_extract(path: Path, dest: Path, limits: ArchiveLimits | None = None) -> Path:
    """Extract ``path`` into ``dest`` and return the source root.

    The root is ``dest/<top>`` when every member sits under one top-level directory,
    else ``dest``. Members with ``..`` or absolute paths, links escaping the tree,
    devices and fifos are refused with :class:`ArchiveError` naming the member.
    The source root holds exactly the entries :func:`~buildprint.inputs.archive.archive_digest`
    digests: ignored members (``records.is_ignored``: VCS metadata, build debris) are
    left out, so the build sees nothing its signature does not describe.
    Members are unpacked into a private folder inside ``dest`` and only moved into
    place when the whole archive was read and checked, so a refused or corrupt
    archive leaves ``dest`` as it was and nothing is ever written outside it.
    An archive that would unpack past ``limits`` (default: the ones set for it with
    :func:`~buildprint.inputs.archive.use_limits`, else 1 GiB and 200x) is refused as soon
    as a header or the bytes read show it, before that member is written, and what was
    written is removed.
    """
    path, dest = Path(path), Path(dest)
    archive_suffix(path)  # refuse unknown types before touching dest
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchiveError(f"cannot create destination {dest}: {exc.strerror}", file=path) from None
    staging = tempfile.mkdtemp(prefix=".buildprint-extract-", dir=dest)
    layout = ArchiveLayout(path)
    try:
        with open_members(path, limits) as (members, finish):
            for member in members:
                layout.add(member)  # refuses before anything is written
                target = os.path.join(staging, member.name)
                # No symlink exists on disk yet (they are made last), so creating
                # parents cannot be redirected outside the staging folder.
                if member.kind == DIR:
                    os.makedirs(target, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(target), exist_ok=True)
                if member.kind == FILE:
                    _write_file(target, member)
                elif member.kind == HARDLINK:
                    source = member_path(member.target, path)
                    assert source is not None  # checked by layout.add
                    if os.path.lexists(target):
                        os.unlink(target)
                    shutil.copyfile(os.path.join(staging, source), target)
                    fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
                    try:
                        _finish_file(fd, member)
                    finally:
                        os.close(fd)
            finish()
        # What the digest covers is what stays: one member list drives both.
        layout.check_links()
        kept, dropped = layout.tree()
        for name in dropped:
            _remove(os.path.join(staging, name))
        for name, _, entry in kept:
            if entry.kind == SYMLINK:
                target = os.path.join(staging, name)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                if os.path.lexists(target):
                    os.unlink(target)
                os.symlink(entry.target, target)
        return _move_into_place(path, Path(staging), dest, layout.top())
    except ArchiveError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except READ_ERRORS as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ArchiveError(f"cannot extract archive: {exc}", file=path) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _remove(target: str) -> None:
    """Delete an ignored member from staging (no symlink exists there yet: safe to recurse)."""
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return  # an ignored symlink: never created
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(target)
    else:
        os.unlink(target)


def _move_into_place(archive: Path, staging: Path, dest: Path, top: str | None) -> Path:
    names = [top] if top is not None else sorted(os.listdir(staging))
    for name in names:
        if os.path.lexists(dest / name):
            raise ArchiveError(f"destination {dest} already contains {name!r}", file=archive)
    for name in names:
        os.replace(staging / name, dest / name)
    os.rmdir(staging)
    return dest / top if top is not None else dest
