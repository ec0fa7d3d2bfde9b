"""The wheelhouse: built wheels plus a PEP 503 ``simple/`` index pip and uv can use."""

from __future__ import annotations

import contextlib
import functools
import html
import os
import threading
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from types import TracebackType

from packaging.utils import (
    BuildTag,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import Version

from buildprint.errors import StoreError
from buildprint.fsio import copy_file_hashing, place_atomic, stat_key, write_atomic
from buildprint.store.memo import Memo

__all__ = ["Wheelhouse"]

#: The memo of what is on disk. Its name changed when it began to hold the digest of the
#: bytes written (before, it held what a record claimed): an older memo is not trusted.
_MEMO = ".placed.json"
_OLD_MEMO = ".digests.json"


def _release(filename: str) -> tuple[NormalizedName, Version, BuildTag] | None:
    """A wheel file name's project, version and build tag; None if it is not one."""
    if not filename.endswith(".whl"):
        return None
    try:
        name, version, build, _tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    return canonicalize_name(name), version, build


class Wheelhouse:
    """``root/<wheel files>`` and ``root/simple/<project>/index.html`` (PEP 503).

    The sha256 of each placed wheel — of the bytes written, hashed while copying, never what
    a record claims — is remembered with the file's state, so placing a wheel that is
    already there (every reuse) reads nothing, and a file that is not (changed since, or
    written from other bytes) is written again.

    Placing writes the wheel only; the ``simple/`` pages of the projects that changed and
    the memo are written by :meth:`flush` (once per run, or per batch: a run of 100 wheels
    writes each page once, not once per wheel). Every write is atomic (temp file + rename).
    Use it as a context manager, or call :meth:`flush`, when done placing.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._digests = Memo(root / "simple" / _MEMO)
        #: Projects (normalized names) whose page no longer lists what is on disk.
        self._stale: set[str] = set()

    def _known_digest(self, path: Path) -> str | None:
        entry = self._digests.get(path.name)
        if isinstance(entry, dict) and entry.get("state") == stat_key(path):
            return str(entry["sha256"])
        return None

    def add(self, source: Path, filename: str, sha256: str) -> Path:
        """Place the file ``source`` (a fresh build, whose sha256 the caller knows) as
        ``filename``, atomically replacing a different older file."""
        return self.place(filename, sha256, functools.partial(copy_file_hashing, source))

    def place(self, filename: str, sha256: str, write: Callable[[Path], str]) -> Path:
        """Make ``filename`` hold the wheel whose sha256 is ``sha256``: nothing is read or
        written when it is known to (the memo), else ``write(temp path)`` writes the bytes
        and returns their sha256 (hashed while writing: ``LocalStore.copy_blob``), and they
        replace the file atomically. What ``write`` raises leaves the old file in place, and
        so do bytes that are not ``sha256`` (``StoreError``): the wheelhouse never holds a
        wheel other than the one asked for."""
        target = self.root / filename
        project = canonicalize_name(parse_wheel_filename(filename)[0])
        with self._lock:
            if self._known_digest(target) == sha256:
                return target

        def checked(tmp: Path) -> str:
            written = write(tmp)
            if written != sha256:
                raise StoreError(f"wrote bytes with sha256 {written}, not {sha256}", file=target)
            return written

        # Written outside the lock: workers place different wheels at once.
        written = place_atomic(target, checked)
        with self._lock:
            self._digests.put(filename, {"state": stat_key(target), "sha256": written})
            self._stale.add(project)
        return target

    def flush(self) -> None:
        """Write the ``simple/`` pages of the projects placed since the last flush, the
        project list, and the memo (each atomically); nothing when nothing was placed."""
        with self._lock:
            stale, self._stale = self._stale, set()
            if stale:
                self._write_pages(stale)
            self._digests.save()
            if stale:
                (self.root / "simple" / _OLD_MEMO).unlink(missing_ok=True)

    def prune(self, placed: Mapping[str, Collection[str]]) -> list[str]:
        """Remove the wheels a run superseded; the names of the files removed.

        ``placed`` maps each project the run placed wheels of (reused, fetched or built) to
        the file names it placed. Every other wheel of those projects whose version or build
        tag is not one of theirs is removed (a wheel of the same release for other tags — an
        interpreter the project used before — stays), then the projects' ``simple/`` pages
        and the memo are written again (:meth:`flush`). Projects not in ``placed`` are left
        as they are: a run that built one package must not empty the rest of the wheelhouse.
        """
        current: dict[str, set[tuple[Version, BuildTag]]] = {}
        for project, filenames in placed.items():
            releases = current.setdefault(canonicalize_name(project), set())
            for filename in filenames:
                release = _release(filename)
                if release is not None:
                    releases.add(release[1:])
        removed: list[str] = []
        with self._lock:
            try:
                entries = sorted(os.scandir(self.root), key=lambda e: e.name)
            except FileNotFoundError:
                entries = []
            for entry in entries:
                release = _release(entry.name)
                if release is None or release[0] not in current or not entry.is_file():
                    continue
                if release[1:] in current[release[0]]:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(entry.name)
                self._digests.drop(entry.name)
                self._stale.add(release[0])
            for filename in self._digests.names():  # wheels removed by hand, too
                release = _release(filename)
                gone = release is not None and release[0] in current
                if gone and not (self.root / filename).exists():
                    self._digests.drop(filename)
        self.flush()
        return removed

    def __enter__(self) -> Wheelhouse:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.flush()

    def _write_pages(self, projects: set[str]) -> None:
        """One listing of the folder for all of ``projects``' pages, then the project list."""
        wheels: dict[str, list[str]] = {}
        with os.scandir(self.root) as entries:
            for entry in entries:
                release = _release(entry.name)
                if release is not None and release[0] in projects and entry.is_file():
                    wheels.setdefault(release[0], []).append(entry.name)
        simple = self.root / "simple"
        for project in sorted(projects):
            links = []
            for name in sorted(wheels.get(project, [])):
                digest = self._known_digest(self.root / name)
                fragment = f"#sha256={digest}" if digest else ""
                shown = html.escape(name)
                links.append(f'<a href="../../{shown}{fragment}">{shown}</a><br/>')
            self._page(simple / project / "index.html", links)
        listed = sorted(d.name for d in simple.iterdir() if (d / "index.html").exists())
        self._page(
            simple / "index.html",
            [f'<a href="{html.escape(p)}/">{html.escape(p)}</a><br/>' for p in listed],
        )

    @staticmethod
    def _page(path: Path, links: list[str]) -> None:
        body = "\n".join(links)
        write_atomic(path, f"<!DOCTYPE html>\n<html><body>\n{body}\n</body></html>\n".encode())
