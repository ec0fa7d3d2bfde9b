"""Where a package's source comes from, and its content digest (memoized)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_sdist_filename
from packaging.version import InvalidVersion, Version

from buildprint.errors import InputError
from buildprint.fsio import stat_key
from buildprint.inputs.archive import archive_digest
from buildprint.inputs.tree import TreeMemo, tree_digest
from buildprint.project.project import is_pinned
from buildprint.project.settings import SourceSpec
from buildprint.resolve.index import DistFile, PackageIndex
from buildprint.signature.canonical import digest_bytes
from buildprint.store.memo import Memo
from buildprint.urls import redact_url

__all__ = ["ResolvedSource", "SourceResolver"]


@dataclass(frozen=True)
class ResolvedSource:
    """A package's source: where it is, the canonical content digest, and provenance."""

    name: str
    version: str
    location: str  # a local path or a URL (credentials removed)
    digest: str
    files: int
    size: int
    raw_sha256: str | None
    dist: DistFile | None = None  # set when the source comes from an index or URL
    local: Path | None = None  # set when the source is on this machine

    def provenance(self) -> dict[str, str | int | None]:
        return {
            "location": self.location,
            "raw_sha256": self.raw_sha256,
            "files": self.files,
            "size": self.size,
        }


def _version_from_filename(path: Path) -> str | None:
    try:
        return str(parse_sdist_filename(path.name)[1])
    except Exception:
        return None


class SourceResolver:
    """Finds each package's source and its digest. Digests are memoized by raw archive
    sha256 (immutable) and by file state for local paths, so a no-op plan reads no archive.
    A folder source is digested with its own :class:`TreeMemo`, kept in ``trees/`` beside the
    input memo and written by :meth:`save`, so an unchanged folder costs a stat walk."""

    def __init__(self, root: Path, index: PackageIndex, memo: Memo) -> None:
        self.root = root
        self.index = index
        self.memo = memo
        #: Where the tree memos live: the input memo's folder (the store's ``memo/``).
        self.tree_memo_dir = memo.path.parent / "trees"
        self._trees: dict[Path, TreeMemo] = {}
        self._trees_lock = threading.RLock()

    def tree_memo(self, folder: Path) -> TreeMemo:
        """The memo of folder source ``folder``, loaded from :attr:`tree_memo_dir` on first use
        (one file per folder, named by the digest of its real path)."""
        key = folder.resolve()
        with self._trees_lock:
            memo = self._trees.get(key)
            if memo is None:
                name = digest_bytes(os.fsencode(key)) + ".json"
                memo = self._trees[key] = TreeMemo.load(self.tree_memo_dir / name)
            return memo

    def save(self) -> None:
        """Write the tree memos that changed. Call it where the input memo is saved, after a
        run that succeeded, so that bad input changes nothing in the store."""
        with self._trees_lock:
            for memo in self._trees.values():
                if memo.changed:
                    memo.save()

    def resolve(
        self, requirement: Requirement, spec: SourceSpec | None, settings_file: Path
    ) -> ResolvedSource:
        name = canonicalize_name(requirement.name)
        if spec is not None and spec.path is not None:
            return self._local(name, requirement, (self.root / spec.path), settings_file)
        if spec is not None and spec.url is not None:
            version = self._pinned(requirement)
            if version is None:
                raise InputError(
                    f"{name}: a 'url' source needs a pinned requirement ({name}==VERSION)",
                    file=settings_file,
                )
            assert spec.sha256 is not None  # validated with the settings
            dist = DistFile(
                filename=spec.url.rsplit("/", 1)[-1],
                url=spec.url,
                sha256=spec.sha256,
                name=name,
                version=Version(version),
                kind="sdist",
            )
            try:
                return self._from_dist(name, version, dist)
            except InputError as exc:
                # The sha256 (or the URL) that does not hold is the settings file's.
                where = exc.file or redact_url(spec.url)
                raise InputError(f"source {where}: {exc.message}", file=settings_file) from None
        version = self._pinned(requirement) or self._newest(requirement)
        key = f"index:{self.index.index_url}:{name}:{version}"
        cached = self.memo.get(key)
        if cached is not None:
            dist = DistFile(
                filename=cached["filename"],
                url=cached["url"],
                sha256=cached["sha256"],
                name=name,
                version=Version(version),
                kind="sdist",
            )
        else:
            dist = self.index.find_sdist(name, version)
        resolved = self._from_dist(name, version, dist)
        if dist.sha256 is not None and not dist.is_local:
            self.memo.put(key, {"filename": dist.filename, "url": dist.url, "sha256": dist.sha256})
        return resolved

    def _location(self, path: Path) -> str:
        """Where a local source is, as recorded in the manifest: project-relative when inside
        the project, so equal builds on two machines embed equal manifests."""
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)

    @staticmethod
    def _pinned(requirement: Requirement) -> str | None:
        return next(iter(requirement.specifier)).version if is_pinned(requirement) else None

    def _newest(self, requirement: Requirement) -> str:
        candidates = [
            v for v in self.index.versions(requirement.name) if v in requirement.specifier
        ]
        if not candidates:
            raise InputError(f"no version of {requirement.name} matches {requirement}")
        return str(max(candidates))

    def _local(
        self, name: str, requirement: Requirement, path: Path, settings_file: Path
    ) -> ResolvedSource:
        state = stat_key(path)
        if state is None:
            raise InputError(f"source path {path} does not exist", file=settings_file)
        version = self._pinned(requirement) or _version_from_filename(path)
        if version is None:
            raise InputError(
                f"{name}: cannot tell the version of {path.name}; pin it ({name}==VERSION)",
                file=settings_file,
            )
        try:
            Version(version)
        except InvalidVersion:
            raise InputError(f"{name}: invalid version {version!r}", file=settings_file) from None
        if path.is_dir():
            with self._trees_lock:
                digest = tree_digest(path, self.tree_memo(path))
            return ResolvedSource(
                name,
                version,
                self._location(path),
                digest.digest,
                digest.files,
                digest.size,
                None,
                local=path,
            )
        key = f"path:{path.resolve()}"
        cached = self.memo.get(key)
        if cached is None or cached.get("state") != state:
            found = archive_digest(path)
            cached = {
                "state": state,
                "digest": found.digest,
                "files": found.files,
                "size": found.size,
                "raw_sha256": found.raw_sha256,
            }
            self.memo.put(key, cached)
        return ResolvedSource(
            name,
            version,
            self._location(path),
            cached["digest"],
            cached["files"],
            cached["size"],
            cached["raw_sha256"],
            local=path,
        )

    def _from_dist(self, name: str, version: str, dist: DistFile) -> ResolvedSource:
        key = f"sha256:{dist.sha256}" if dist.sha256 else None
        cached = self.memo.get(key) if key else None
        if cached is None:
            path = self.index.download(dist)
            found = archive_digest(path)
            if dist.sha256 is not None and found.raw_sha256 not in (None, dist.sha256):
                raise InputError(
                    f"{dist.filename}: sha256 {found.raw_sha256} does not match the published "
                    f"{dist.sha256}",
                    file=dist.url,
                )
            cached = {"digest": found.digest, "files": found.files, "size": found.size}
            self.memo.put(f"sha256:{found.raw_sha256}", cached)
        return ResolvedSource(
            name,
            version,
            dist.url,
            cached["digest"],
            cached["files"],
            cached["size"],
            dist.sha256,
            dist=dist,
        )

    def fetch(self, source: ResolvedSource) -> Path:
        """The source on this machine (downloaded and verified when remote)."""
        if source.local is not None:
            return source.local
        assert source.dist is not None
        return self.index.download(source.dist)
