"""The library entry point: open a project and plan, build, explain or show its packages.

Everything the CLI can do goes through here, so a Python caller can do it too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from buildprint.build.index import PackageIndex
from buildprint.build.lock import Lock, load_lock, save_lock
from buildprint.build.memo import Memo
from buildprint.build.planner import Decision, PackageNode, Planner
from buildprint.build.runner import Builder, Outcome, Preparer, Progress
from buildprint.build.sources import SourceResolver
from buildprint.build.wheelhouse import Wheelhouse
from buildprint.errors import InputError
from buildprint.inputs.toolchain import interpreter_identity
from buildprint.project.project import Project, parse_requirement, read_requirements
from buildprint.signature.diff import Change, diff
from buildprint.signature.manifest import Manifest
from buildprint.store.local import LocalStore

if TYPE_CHECKING:
    from buildprint.store.cache import RemoteCache

__all__ = ["Engine", "Explanation", "Options"]


@dataclass(frozen=True)
class Options:
    """Run options that come from the command line rather than the project files."""

    requirements: Sequence[str] = ()
    requirement_files: Sequence[Path] = ()
    force: Sequence[str] = ()
    reuse_by_version: Sequence[str] = ()
    store: Path | None = None
    index_url: str | None = None
    find_links: Sequence[str] = ()
    remotes: Sequence[str] = ()  # extra remote caches (read and write), tried after settings'


@dataclass
class Explanation:
    """``why NAME``: the current manifest against the closest stored build."""

    decision: Decision
    closest: Manifest | None
    changes: list[Change] = field(default_factory=list)


class Engine:
    """One project, opened for one run."""

    def __init__(self, project_dir: Path, options: Options | None = None) -> None:
        self.options = options or Options()
        self.project = Project.load(project_dir)
        self.project.validate()  # every settings file, before anything is written
        settings = self.project.settings.project
        self.store_dir = (self.options.store or self.project.store_dir).resolve()
        self.python = settings.python or sys.executable
        self.index = PackageIndex(
            self.options.index_url or _project_path(self.project.root, settings.index_url),
            [
                *(_project_path(self.project.root, f) or f for f in settings.find_links),
                *self.options.find_links,
            ],
            cache_dir=self.store_dir / "downloads",
        )
        self.store = LocalStore(self.store_dir)
        self.memo = Memo(self.store_dir / "memo" / "inputs.json")
        self.resolver = SourceResolver(self.project.root, self.index, self.memo)
        self.lock: Lock = (
            load_lock(self.project.lock_file) if self.project.lock_file.exists() else Lock()
        )
        self.planner = Planner(
            self.project,
            self.store,
            self.resolver,
            self.lock,
            force=self.options.force,
            reuse_by_version=self.options.reuse_by_version,
            python=self.python,
        )
        self.preparer = Preparer(
            self.index,
            self.resolver,
            self.store_dir / "work",
            self.python,
            str(interpreter_identity(self.python)["python"]),
        )
        self.wheelhouse = Wheelhouse(self.project.wheelhouse_dir)
        self.remote_cache = self._remote_cache()
        self.planner.remotes = self.remote_cache

    def _remote_cache(self) -> RemoteCache | None:
        configured = [(r.url, r.read, r.write) for r in self.project.settings.remote]
        configured += [(url, True, True) for url in self.options.remotes]
        if not configured:
            return None
        # Imported here: boto3, httpx and cryptography cost a noticeable part of a no-op plan.
        from buildprint.store.cache import RemoteCache
        from buildprint.store.remote import open_remote
        from buildprint.store.signing import generate_key, load_signing_key

        remotes = [
            open_remote(url, writable=write) for url, read, write in configured if read or write
        ]
        key = load_signing_key(self.store_dir)
        if key is None and any(write for _, _, write in configured):
            generate_key(self.store_dir)
            key = load_signing_key(self.store_dir)
        trusted = [k for r in self.project.settings.remote for k in r.trusted_keys]
        return RemoteCache(remotes, self.store, trusted, key)

    @property
    def problems(self) -> list[str]:
        """Warnings to show once (remotes down, untrusted records …)."""
        return list(self.remote_cache.problems) if self.remote_cache else []

    def close(self, *, save: bool = True) -> None:
        """Release resources; ``save=False`` (a run that ended in error) leaves the memo as it
        was, so bad input changes nothing in the store."""
        if self.remote_cache is not None:
            for remote in self.remote_cache.remotes:
                remote.close()
        if save:
            self.memo.save()
        self.index.close()
        self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(save=exc_type is None)

    # -- the graph -------------------------------------------------------------------------

    def requirements(self) -> list[Requirement]:
        found = [parse_requirement(r) for r in self.options.requirements]
        for file in self.options.requirement_files:
            found.extend(read_requirements(file))
        if not found:
            found = self.project.requirements()
        if not found:
            raise InputError(
                "nothing to build: give requirements, -r FILE, or a requirements file "
                f"({self.project.settings.project.requirements})",
                file=self.project.root,
            )
        return found

    def graph(self) -> list[PackageNode]:
        requirements = self.requirements()
        self.preparer.built_names = {canonicalize_name(r.name) for r in requirements}
        before = dict(self.lock.packages)
        nodes = self.planner.load_graph(requirements, self.preparer.lock)
        if dict(self.lock.packages) != before:
            save_lock(self.project.lock_file, self.lock)
        return nodes

    # -- commands --------------------------------------------------------------------------

    def plan(self) -> list[Decision]:
        return self.planner.plan(self.graph())

    def build(self, jobs: int = 1, progress: Progress | None = None) -> list[Outcome]:
        cache = self.remote_cache
        builder = Builder(
            self.planner,
            self.preparer,
            self.store,
            self.wheelhouse,
            self.store_dir / "logs",
            fetch=cache.fetch if cache else None,
            push=cache.push if cache and any(r.writable for r in cache.remotes) else None,
        )
        return builder.run(self.graph(), jobs, progress)

    def why(self, name: str) -> Explanation:
        """Compare what ``name`` would get now with the closest stored build."""
        name = canonicalize_name(name)
        decisions = {d.node.name: d for d in self.plan()}
        if name not in decisions:
            raise InputError(f"{name} is not among the requirements", file=self.project.root)
        decision = decisions[name]
        if decision.manifest is None:
            return Explanation(decision, None)
        if (
            decision.record is not None
            and decision.action in ("reuse", "fetch")
            and not decision.changes
        ):
            closest: Manifest | None = Manifest.from_json(decision.record.manifest)
        else:
            candidate = self.planner.closest(decision.node, decision.manifest)
            closest = candidate.manifest_obj if candidate else None
        changes = diff(closest, decision.manifest, self.planner.lookup_manifest) if closest else []
        return Explanation(decision, closest, changes)

    def manifest_of(self, name: str) -> Manifest:
        """The manifest ``name`` would get now (stored dependencies' results filled in)."""
        name = canonicalize_name(name)
        for decision in self.plan():
            if decision.node.name == name:
                if decision.manifest is None:
                    raise InputError(
                        f"{name} depends on {', '.join(decision.pending_on)}, not built yet: "
                        "its signature is not known"
                    )
                return decision.manifest
        raise InputError(f"{name} is not among the requirements", file=self.project.root)


def _project_path(root: Path, location: str | None) -> str | None:
    """Index and find-links entries that are relative folders are relative to the project."""
    if location is None or "://" in location or os.path.isabs(location):
        return location
    return str(root / location)
