"""Where a package's source comes from (the index, a ``url`` or ``path`` source, a PEP 508
direct reference), and its content digest (memoized)."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import InvalidSdistFilename, canonicalize_name, parse_sdist_filename
from packaging.version import InvalidVersion, Version

from buildprint.errors import InputError
from buildprint.fsio import stat_key
from buildprint.inputs.archive import (
    ARCHIVE_SUFFIXES,
    DEFAULT_LIMITS,
    ArchiveLimits,
    archive_digest,
    use_limits,
)
from buildprint.inputs.records import SCHEME as SOURCE_SCHEME
from buildprint.inputs.tree import TreeMemo, tree_digest
from buildprint.project.project import LocatedRequirement, Project, is_pinned
from buildprint.project.project import where as written_at
from buildprint.project.settings import SourceSpec
from buildprint.resolve.direct import (
    DirectRef,
    DirectReferenceError,
    GitCheckouts,
    Metadata,
    archive_metadata,
    check_direct_references,
    parse_direct,
    tree_metadata,
)
from buildprint.resolve.index import (
    INDEX_SETTINGS_HINT,
    DistFile,
    PackageIndex,
    newest_first,
)
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
    #: git references: the full commit the ref resolved to (its checkout is :attr:`local`,
    #: immutable) and the ref as written (a branch, tag or the commit itself).
    commit: str | None = None
    ref: str | None = None
    #: Why a plan that used this source cannot be kept as a snapshot: a git branch or tag
    #: is resolved anew by every plan. None for sources that cannot move, or whose files'
    #: state says whether they did (a ``local`` path that is not a git checkout).
    volatile: str | None = None
    #: What the plan says about how the source was chosen (``certifi 2024.8.30: newest
    #: with an sdist (2024.12.14 has wheels only)``); None when there is nothing to say.
    note: str | None = None

    def provenance(self) -> dict[str, str | int | None]:
        found: dict[str, str | int | None] = {
            "location": self.location,
            "raw_sha256": self.raw_sha256,
            "files": self.files,
            "size": self.size,
        }
        if self.commit is not None:
            found["commit"] = self.commit
            found["ref"] = self.ref
        return found


def _version_from_filename(path: Path) -> str | None:
    try:
        return str(parse_sdist_filename(path.name)[1])
    except Exception:
        return None


def _sdist_name(filename: str) -> tuple[str, str] | None:
    """(normalized name, version) an sdist file name gives (any archive suffix), or None."""
    lowered = filename.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if lowered.endswith(suffix):
            try:
                name, version = parse_sdist_filename(filename[: -len(suffix)] + ".tar.gz")
            except (InvalidSdistFilename, InvalidVersion):
                return None
            return str(name), str(version)
    return None


def _at_requirement(requirement: Requirement, error: InputError) -> InputError:
    """``error`` (the index lacks what ``requirement`` asks for) at the requirement's file and
    line (a command-line requirement has none), naming the other lines it was merged from and
    the constraints that narrowed it; the index stays named in the text."""
    if not isinstance(requirement, LocatedRequirement):
        return error
    if requirement.file is not None:
        kind = ""
    else:
        kind = f" ({requirement.via})" if requirement.via else " (argument)"
    return InputError(
        f"requirement{kind} {requirement}{requirement.also()}: {error.message}",
        file=requirement.file,
        line=requirement.line,
    )


def _hashes(requirement: Requirement) -> frozenset[str]:
    """The ``--hash`` sha256 digests ``requirement`` carries (empty: none to check)."""
    return requirement.hashes if isinstance(requirement, LocatedRequirement) else frozenset()


def _hash_error(
    requirement: Requirement, what: str, actual: str | None, hashes: frozenset[str]
) -> InputError:
    """The archive ``what`` (its sha256 ``actual``; None: not an archive) is none of the
    ``--hash`` values of ``requirement``: at the line that gave them."""
    assert isinstance(requirement, LocatedRequirement)
    origin = requirement.hash_origin or requirement
    listed = ", ".join(f"sha256:{h}" for h in sorted(hashes))
    if actual is None:
        problem = f"{what} is not an archive, so it has no sha256 to match --hash ({listed})"
    else:
        problem = (
            f"{what} has sha256:{actual}, which is none of the --hash values "
            f"({listed}); refusing to use it"
        )
    shown = "" if origin.file is not None else " (argument)"
    return InputError(f"requirement{shown} {origin}: {problem}", file=origin.file, line=origin.line)


class SourceResolver:
    """Finds each package's source and its digest. Digests are memoized by raw archive
    sha256 (immutable) and by file state for local paths, so a no-op plan reads no archive.
    A folder source is digested with its own :class:`TreeMemo`, kept in ``trees/`` beside the
    input memo and written by :meth:`save`, so an unchanged folder costs a stat walk.

    A requirement's PEP 508 direct reference (``name @ URL``, see :mod:`.direct`) is its
    source; git checkouts are kept under ``sources_dir`` (default: ``sources/`` in the store
    holding the memo) and digested once per commit.

    Archives are read with ``limits`` (the project's ``max-unpacked-size`` and
    ``max-expansion-ratio``): one that would unpack past them is refused when digested, and
    :meth:`fetch` hands the same limits to the extraction of the file it returns."""

    def __init__(
        self,
        root: Path,
        index: PackageIndex,
        memo: Memo,
        *,
        sources_dir: Path | None = None,
        limits: ArchiveLimits = DEFAULT_LIMITS,
    ) -> None:
        self.root = root
        self.limits = limits
        self.index = index
        self.memo = memo
        #: Where the tree memos live: the input memo's folder (the store's ``memo/``).
        self.tree_memo_dir = memo.path.parent / "trees"
        self.sources_dir = sources_dir or memo.path.parent.parent / "sources"
        self.git = GitCheckouts(self.sources_dir / "git")
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

    @staticmethod
    def check(requirements: Sequence[Requirement]) -> None:
        """Refuse, before anything is resolved or fetched, a direct reference that is not
        honoured and a package given by a direct reference and required otherwise too."""
        check_direct_references(requirements)

    def check_hashes(self, requirements: Sequence[Requirement], project: Project) -> None:
        """Resolve every requirement that has ``--hash`` values, so that an archive matching
        none of them is refused before anything is locked or built (:meth:`resolve` checks
        them). Sources whose sha256 is known beforehand (an index's published one, a ``url``
        source's) are checked before they are downloaded."""
        check_direct_references(requirements)
        for requirement in requirements:
            if _hashes(requirement):
                settings = project.package_settings(requirement.name)
                self.resolve(requirement, settings.source, project.settings_file(requirement.name))

    def resolve(
        self, requirement: Requirement, spec: SourceSpec | None, settings_file: Path
    ) -> ResolvedSource:
        """The source of ``requirement`` (``spec``: its ``source`` setting, from
        ``settings_file``). Its ``--hash`` values, when it has some, must include the
        archive's sha256; the version must satisfy the constraints it carries (a source
        whose version is not the index's choice: a path, a direct reference)."""
        resolved = self._resolve(requirement, spec, settings_file)
        hashes = _hashes(requirement)
        if hashes:
            actual = resolved.raw_sha256
            if actual is None and resolved.dist is not None:
                actual = self.index.sha256(resolved.dist)
            if actual not in hashes:
                what = resolved.dist.filename if resolved.dist else resolved.location
                raise _hash_error(requirement, what, actual, hashes)
        if isinstance(requirement, LocatedRequirement):
            for constraint in requirement.constraints:
                if not constraint.specifier.contains(resolved.version, prereleases=True):
                    raise InputError(
                        f"constraint {constraint}: {resolved.name} {resolved.version} "
                        f"({resolved.location}, required at {written_at(requirement)}) is not "
                        "a version it allows",
                        file=constraint.file,
                        line=constraint.line,
                    )
        return resolved

    def _resolve(
        self, requirement: Requirement, spec: SourceSpec | None, settings_file: Path
    ) -> ResolvedSource:
        name = canonicalize_name(requirement.name)
        direct = parse_direct(requirement)
        if direct is not None:
            if spec is not None:
                raise direct.error(
                    f"{settings_file} sets a `source` for {name} too; give the source in one "
                    "place (the direct reference or the settings file)"
                )
            return self._direct(direct)
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
            if _hashes(requirement) and spec.sha256 not in _hashes(requirement):
                shown = redact_url(spec.url)
                raise _hash_error(requirement, shown, spec.sha256, _hashes(requirement))
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
        note = None
        try:
            version = self._pinned(requirement)
            if version is None:
                version, note = self._newest(requirement)
            key = f"index:{self.index.key}:{name}:{version}"
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
        except InputError as exc:
            raise _at_requirement(requirement, exc) from None
        hashes = _hashes(requirement)
        if hashes and dist.sha256 is not None and dist.sha256 not in hashes:
            raise _hash_error(requirement, dist.filename, dist.sha256, hashes)  # not fetched
        resolved = self._from_dist(name, version, dist)
        if dist.sha256 is not None and not dist.is_local:
            self.memo.put(key, {"filename": dist.filename, "url": dist.url, "sha256": dist.sha256})
        return resolved if note is None else replace(resolved, note=note)

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

    def _newest(self, requirement: Requirement) -> tuple[str, str | None]:
        """The newest version ``requirement`` allows that has an sdist (not yanked), and a
        note when newer ones it allows have none (wheels only)."""
        name = canonicalize_name(requirement.name)
        offered = self.index.versions(name)
        candidates = [v for v in offered if v in requirement.specifier]
        if not candidates:
            listed = newest_first(offered) if offered else "none: the index has no files for it"
            raise InputError(
                f"no version of {requirement.name} matches {requirement} on "
                f"{self.index.describe()}; offered: {listed} ({INDEX_SETTINGS_HINT})"
            )
        with_sdist = self.index.sdist_versions(name)
        chosen = [v for v in candidates if v in with_sdist]
        if not chosen:
            newest = (
                f"the newest version with an sdist is {max(with_sdist)}"
                if with_sdist
                else "the index has no sdist of it at all"
            )
            raise InputError(
                f"no version of {requirement.name} that {requirement} allows has an sdist on "
                f"{self.index.describe()} ({newest_first(candidates)}: wheels only); "
                f"{newest}; buildprint builds from sdists ({INDEX_SETTINGS_HINT})"
            )
        best = max(chosen)
        skipped = [v for v in candidates if v > best]
        if not skipped:
            return str(best), None
        yanked = {f.version for f in self.index.files(name) if f.kind == "sdist"}
        why = [
            f"{newest_first(group)} {'has' if len(group) == 1 else 'have'} {what}"
            for group, what in (
                ([v for v in skipped if v not in yanked], "wheels only"),
                ([v for v in skipped if v in yanked], "only a yanked sdist"),
            )
            if group
        ]
        return str(best), f"{name} {best}: newest with an sdist ({'; '.join(why)})"

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
        return self._archive_source(name, version, path, self._archive(path))

    # -- direct references -----------------------------------------------------------------

    def _direct(self, ref: DirectRef) -> ResolvedSource:
        try:
            if ref.kind == "git":
                return self._git(ref)
            if ref.kind == "archive":
                return self._direct_archive(ref)
            return self._direct_file(ref)
        except DirectReferenceError:
            raise  # already about the reference, at its file and line
        except InputError as exc:
            raise ref.error(str(exc)) from None

    def _direct_archive(self, ref: DirectRef) -> ResolvedSource:
        """An ``https://`` sdist with its ``#sha256=``: downloaded (cached) and verified."""
        assert ref.sha256 is not None
        by_name = _sdist_name(ref.filename)

        def dist_at(version: str) -> DistFile:
            return DistFile(ref.filename, ref.url, ref.sha256, ref.name, Version(version), "sdist")

        if by_name is not None and by_name[0] == ref.name:
            version = self._valid_version(ref, by_name[1])
        else:
            key = f"direct-meta:sha256:{ref.sha256}"
            cached = self.memo.get(key)
            if cached is None:
                path = self.index.download(dist_at("0"))
                cached = self._named_version(ref, archive_metadata(path), ref.filename)
                self.memo.put(key, cached)
            version = cached
        return self._from_dist(ref.name, version, dist_at(version))

    def _direct_file(self, ref: DirectRef) -> ResolvedSource:
        """A ``file://`` sdist (its ``#sha256=`` checked when given) or folder."""
        path = ref.path
        if not path.exists():
            raise ref.error(f"{path} does not exist")
        if path.is_dir():
            if ref.sha256 is not None:
                raise ref.error("'#sha256=' applies to an archive, not to a folder")
            root = path / ref.subdirectory if ref.subdirectory else path
            if not root.is_dir():
                raise ref.error(f"there is no folder {ref.subdirectory!r} in {path}")
            version = self._named_version(ref, tree_metadata(root), str(root))
            with self._trees_lock:
                digest = tree_digest(root, self.tree_memo(root))
            return ResolvedSource(
                ref.name,
                version,
                self._location(root),
                digest.digest,
                digest.files,
                digest.size,
                None,
                local=root,
            )
        if ref.subdirectory is not None:
            raise ref.error("'#subdirectory=' applies to a folder or git reference")
        if not path.name.lower().endswith(ARCHIVE_SUFFIXES):
            raise ref.error(
                f"{path.name!r} is not an archive name (want one of {', '.join(ARCHIVE_SUFFIXES)})"
            )
        cached = self._archive(path)
        if ref.sha256 is not None and cached["raw_sha256"] != ref.sha256:
            raise ref.error(
                f"{path.name}: sha256 {cached['raw_sha256']} does not match the "
                f"'#sha256={ref.sha256}' of the reference; refusing to use it"
            )
        by_name = _sdist_name(path.name)
        if by_name is not None and by_name[0] == ref.name:
            version = self._valid_version(ref, by_name[1])
        else:
            key = f"direct-meta:sha256:{cached['raw_sha256']}"
            version = self.memo.get(key)
            if version is None:
                version = self._named_version(ref, archive_metadata(path), path.name)
                self.memo.put(key, version)
        return self._archive_source(ref.name, version, path, cached)

    def _git(self, ref: DirectRef) -> ResolvedSource:
        """A git reference: its ref resolved to a commit (once per run), the commit checked
        out under the store (once), its tree digested (once per commit and subdirectory)."""
        assert ref.ref is not None
        commit = self.git.commit(ref)
        checkout = self.git.checkout(ref, commit)
        root = checkout / ref.subdirectory if ref.subdirectory else checkout
        if not root.is_dir():
            raise ref.error(f"commit {commit} has no folder {ref.subdirectory!r}")
        version = self._named_version(ref, tree_metadata(root), f"commit {commit}")
        key = f"git:{SOURCE_SCHEME}:{commit}:{ref.subdirectory or ''}"
        cached = self.memo.get(key)
        if cached is None:
            # The checkout is immutable (written once, named by its commit): read it once.
            found = tree_digest(root)
            cached = {"digest": found.digest, "files": found.files, "size": found.size}
            self.memo.put(key, cached)
        location = f"git+{redact_url(ref.url)}@{commit}"
        if ref.subdirectory:
            location += f"#subdirectory={ref.subdirectory}"
        moving = ref.ref.lower() != commit
        return ResolvedSource(
            ref.name,
            version,
            location,
            cached["digest"],
            cached["files"],
            cached["size"],
            None,
            local=root,
            commit=commit,
            ref=ref.ref,
            volatile=(
                f"git ref {ref.ref!r} of {redact_url(ref.url)} is resolved anew by every plan"
                if moving
                else None
            ),
        )

    @staticmethod
    def _valid_version(ref: DirectRef, version: str) -> str:
        try:
            return str(Version(version))
        except InvalidVersion:
            raise ref.error(f"invalid version {version!r}") from None

    def _named_version(self, ref: DirectRef, found: Metadata, what: str) -> str:
        """The version static metadata gives, after checking it names this package."""
        if found.name is not None and canonicalize_name(found.name) != ref.name:
            raise ref.error(f"{what} is the source of {found.name!r}, not of {ref.name!r}")
        if found.version is None:
            raise ref.error(
                f"cannot tell the version of {what} ({found.looked}). A direct reference "
                "carries no version (PEP 508 allows no '==' with '@'), so buildprint reads a "
                "static one without running the build backend: set `version` in the "
                "[project] table of pyproject.toml (not in `dynamic`), or ship a PKG-INFO; "
                f"otherwise build from a copy with packages/{ref.name}.toml "
                f'`source = {{ path = "…" }}` and the requirement {ref.name}==VERSION'
            )
        return self._valid_version(ref, found.version)

    def _archive(self, path: Path) -> dict[str, Any]:
        """The digest of the local archive ``path``, memoized by its state."""
        state = stat_key(path)
        key = f"path:{SOURCE_SCHEME}:{path.resolve()}"
        cached: dict[str, Any] | None = self.memo.get(key)
        if cached is None or cached.get("state") != state:
            found = archive_digest(path, limits=self.limits)
            cached = {
                "state": state,
                "digest": found.digest,
                "files": found.files,
                "size": found.size,
                "raw_sha256": found.raw_sha256,
            }
            self.memo.put(key, cached)
        return cached

    def _archive_source(
        self, name: str, version: str, path: Path, cached: Mapping[str, Any]
    ) -> ResolvedSource:
        """The source of a local archive whose digest :meth:`_archive` gave."""
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
        key = f"sha256:{SOURCE_SCHEME}:{dist.sha256}" if dist.sha256 else None
        cached = self.memo.get(key) if key else None
        if cached is None and key is None and dist.is_local:
            # A folder index publishes no sha256: its file is digested once per state, as a
            # local archive is (a no-op plan reads no archive).
            cached = self._archive(dist.local_path)
        if cached is None:
            path = self.index.download(dist)
            found = archive_digest(path, limits=self.limits)
            if dist.sha256 is not None and found.raw_sha256 not in (None, dist.sha256):
                raise InputError(
                    f"{dist.filename}: sha256 {found.raw_sha256} does not match the published "
                    f"{dist.sha256}",
                    file=dist.url,
                )
            cached = {"digest": found.digest, "files": found.files, "size": found.size}
            self.memo.put(f"sha256:{SOURCE_SCHEME}:{found.raw_sha256}", cached)
        return ResolvedSource(
            name,
            version,
            redact_url(dist.url),
            cached["digest"],
            cached["files"],
            cached["size"],
            dist.sha256,
            dist=dist,
        )

    def fetch(self, source: ResolvedSource) -> Path:
        """The source on this machine (downloaded and verified when remote)."""
        if source.local is not None:
            located = source.local
        else:
            assert source.dist is not None
            located = self.index.download(source.dist)
        if not located.is_dir():
            use_limits(located, self.limits)  # the builder extracts it knowing only its path
        return located
