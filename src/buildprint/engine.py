"""The library entry point: open a project and plan, build, explain or show its packages.

Everything the CLI can do goes through here, so a Python caller can do it too.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from buildprint import __version__
from buildprint.builder.runner import Builder, Outcome, Preparer, Progress
from buildprint.builder.wheelhouse import Wheelhouse
from buildprint.errors import InputError
from buildprint.inputs.host import HOST_VARIABLE
from buildprint.inputs.patches import PatchFolders
from buildprint.inputs.toolchain import compiler_command, interpreter_identity
from buildprint.plan.planner import Decision, DepResult, PackageNode, Planner
from buildprint.plan.snapshot import (
    Checks,
    PlanEntry,
    PlanSnapshot,
    discard_snapshot,
    load_snapshot,
    save_snapshot,
)
from buildprint.project.project import (
    PROJECT_FILE,
    Project,
    is_pinned,
    parse_requirement,
    read_requirements,
)
from buildprint.resolve.index import PackageIndex
from buildprint.resolve.lockfile import Lock, load_lock, save_lock
from buildprint.resolve.sources import SourceResolver
from buildprint.signature.canonical import digest_value
from buildprint.signature.diff import Change, diff
from buildprint.signature.manifest import SCHEME, Manifest
from buildprint.store.local import LocalStore
from buildprint.store.memo import Memo

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
    with_deps: bool = False  # also build the install dependencies, resolved and locked


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
        settings = self.project.settings.project
        self.store_dir = (self.options.store or self.project.store_dir).resolve()
        self.python = settings.python or sys.executable
        self._requirement_files: list[Path] = []
        self._ranged: list[str] = []  # requirements whose version an index chose
        self.snapshot_note = ""  # how the last plan_entries() used the plan snapshot
        # The rest is opened when first used: a plan answered by its snapshot needs none of it.

    @cached_property
    def index(self) -> PackageIndex:
        settings = self.project.settings.project
        return PackageIndex(
            self.options.index_url or _project_path(self.project.root, settings.index_url),
            [
                *(_project_path(self.project.root, f) or f for f in settings.find_links),
                *self.options.find_links,
            ],
            cache_dir=self.store_dir / "downloads",
        )

    @cached_property
    def store(self) -> LocalStore:
        return LocalStore(self.store_dir)

    @cached_property
    def memo(self) -> Memo:
        return Memo(self.store_dir / "memo" / "inputs.json")

    @cached_property
    def resolver(self) -> SourceResolver:
        return SourceResolver(self.project.root, self.index, self.memo)

    @cached_property
    def lock(self) -> Lock:
        return load_lock(self.project.lock_file) if self.project.lock_file.exists() else Lock()

    @cached_property
    def planner(self) -> Planner:
        self.project.validate()  # every settings file, before anything is written
        return Planner(
            self.project,
            self.store,
            self.resolver,
            self.lock,
            remotes=self.remote_cache,
            force=self.options.force,
            reuse_by_version=self.options.reuse_by_version,
            python=self.python,
        )

    @cached_property
    def preparer(self) -> Preparer:
        return Preparer(
            self.index,
            self.resolver,
            self.store_dir / "work",
            self.store_dir / "logs",
            self.python,
            str(interpreter_identity(self.python)["python"]),
        )

    @cached_property
    def wheelhouse(self) -> Wheelhouse:
        return Wheelhouse(self.project.wheelhouse_dir)

    @cached_property
    def remote_cache(self) -> RemoteCache | None:
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
        cache = self.__dict__.get("remote_cache")
        return list(cache.problems) if cache else []

    def close(self, *, save: bool = True) -> None:
        """Release resources; ``save=False`` (a run that ended in error) leaves the memo as it
        was, so bad input changes nothing in the store."""
        opened = self.__dict__
        if opened.get("remote_cache") is not None:
            for remote in opened["remote_cache"].remotes:
                remote.close()
        if save and "memo" in opened:
            self.memo.save()
        if "index" in opened:
            self.index.close()
        if "store" in opened:
            self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(save=exc_type is None)

    # -- the graph -------------------------------------------------------------------------

    def requirements(self) -> list[Requirement]:
        files = self._requirement_files
        files.clear()
        found = [parse_requirement(r) for r in self.options.requirements]
        for file in self.options.requirement_files:
            found.extend(read_requirements(file, files))
        if not found:
            file = self.project.root / self.project.settings.project.requirements
            files.append(file)  # checked even when absent: creating it changes the plan
            if file.exists():
                found = read_requirements(file, files)
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
        self.preparer.read_install_requirements = self.options.with_deps
        before = (dict(self.lock.packages), dict(self.lock.dependencies))
        nodes = self.planner.load_graph(
            requirements, self.preparer.lock, install_requirements=self.options.with_deps
        )
        if self.options.with_deps:
            requirements, nodes = self._with_dependencies(requirements, nodes)
        self._ranged = [
            canonicalize_name(r.name)
            for r in requirements
            if self.project.package_settings(r.name).source is None and not is_pinned(r)
        ]
        if (dict(self.lock.packages), dict(self.lock.dependencies)) != before:
            save_lock(self.project.lock_file, self.lock)
        return nodes

    def _with_dependencies(
        self, requirements: list[Requirement], nodes: list[PackageNode]
    ) -> tuple[list[Requirement], list[PackageNode]]:
        """Add every install dependency, recursively, to the graph. A dependency nobody
        pinned gets the newest version its requirers allow, once: that choice is locked
        (``[dependencies]`` in the lock) until ``lock --upgrade``. Requirers that disagree
        are an error naming them all; pin the dependency to settle it."""
        extras: dict[str, set[str]] = {}
        for requirement in requirements:
            extras.setdefault(canonicalize_name(requirement.name), set()).update(requirement.extras)
        requested = {canonicalize_name(r.name) for r in requirements}
        while True:
            by_name = {node.name: node for node in nodes}
            wanted = _install_requirements(nodes, extras)
            new: dict[str, SpecifierSet] = {}
            grew = False
            for _, requirement in wanted:
                name: str = canonicalize_name(requirement.name)
                if not requirement.extras <= extras.setdefault(name, set()):
                    extras[name] |= requirement.extras
                    grew = True
                if name not in by_name:
                    new[name] = new.get(name, SpecifierSet()) & requirement.specifier
            if not new and not grew:
                break
            for name, specifier in sorted(new.items()):
                locked = self.lock.dependencies.get(name)
                version = locked if locked and specifier.contains(locked, True) else None
                pin = f"=={version}" if version else str(specifier)
                requirements.append(Requirement(f"{name}{pin}"))
            self.preparer.built_names |= set(new)
            nodes = self.planner.load_graph(
                requirements, self.preparer.lock, install_requirements=True
            )
        chosen = {node.name: node.version for node in nodes}
        conflicts = [
            f"{requirer} requires {requirement} but {chosen[name]} is chosen"
            for requirer, requirement in _install_requirements(nodes, extras)
            if not requirement.specifier.contains(
                chosen[name := canonicalize_name(requirement.name)], True
            )
        ]
        if conflicts:
            raise InputError(
                "install dependencies disagree: " + "; ".join(conflicts) + ". Pin the "
                "dependency in the requirements to a version that suits all of them",
                file=self.project.root,
            )
        self.lock.dependencies = {n: v for n, v in sorted(chosen.items()) if n not in requested}
        return requirements, nodes

    # -- commands --------------------------------------------------------------------------

    def plan(self) -> list[Decision]:
        return self.planner.plan(self.graph())

    def plan_entries(self) -> list[PlanEntry]:
        """``plan`` as printed. While nothing a kept no-op plan rests on has changed, that plan
        is the answer, found in about the time of a stat of every input; otherwise the plan is
        made in full and, when it reuses everything, kept (see :mod:`.snapshot`).
        :attr:`snapshot_note` then says which it was, and why."""
        file = self.store_dir / "memo" / "plan.json"
        key = self._snapshot_key()
        if key is None:
            self.snapshot_note = "not used with --force"
        else:
            kept = load_snapshot(file)
            changed = kept.checks.first_change(os.environ) if kept and kept.key == key else None
            if kept and kept.key == key and changed is None:
                self.snapshot_note = "used: nothing it rests on changed"
                return kept.entries
            self.snapshot_note = f"full plan: {changed} changed" if changed else "full plan"
        started = time.time_ns()
        decisions = self.plan()
        entries = [d.entry() for d in decisions]
        if key is None:
            discard_snapshot(file)
            return entries
        checks = self._plan_checks(decisions) if _all_reused(decisions) else None
        why_not = _why_not_kept(checks, started) if checks else "not every package is reused"
        if checks is not None and why_not is None:
            save_snapshot(file, PlanSnapshot(key, entries, checks))
            self.snapshot_note += "; kept"
        else:
            discard_snapshot(file)
            self.snapshot_note += f"; not kept: {why_not}"
        return entries

    def _snapshot_key(self) -> str | None:
        """The run options a kept plan is valid for; ``None``: never keep one (``--force``)."""
        if self.options.force:
            return None
        return digest_value(
            {
                "buildprint": __version__,
                "scheme": SCHEME,
                "interpreter": sys.version,
                # The same interpreter, however it was named (a console script's shebang and
                # `python -m` differ), is the same key.
                "python": os.path.realpath(shutil.which(self.python) or self.python),
                "project": str(self.project.root),
                "store": str(self.store_dir),
                "requirements": list(self.options.requirements),
                "requirement-files": [str(p.resolve()) for p in self.options.requirement_files],
                "reuse-by-version": sorted(self.options.reuse_by_version),
                "with-deps": self.options.with_deps,
                "index-url": self.options.index_url,
                "find-links": list(self.options.find_links),
            }
        )

    def _plan_checks(self, decisions: Sequence[Decision]) -> Checks:
        """Everything the plan just made rests on (see :mod:`.snapshot`)."""
        checks = Checks()
        environ = os.environ
        project, planner = self.project, self.planner
        for path in (
            project.root / PROJECT_FILE,
            project.lock_file,
            project.root / "packages",
            project.patches_dir,
            *self._requirement_files,
        ):
            checks.note_file(path)
        folders = PatchFolders(project.patches_dir)
        for decision in decisions:
            node = decision.node
            checks.note_file(node.settings_file)
            for path in (*folders.for_package(node.name, node.version), *node.patches):
                checks.note_file(path)
            if node.source.local is not None:
                if node.source.local.is_dir():
                    checks.volatile.append(f"{node.name}: source folder {node.source.local}")
                checks.note_file(node.source.local)
            if decision.record is not None:
                checks.note_file(self.store.record_path(decision.record.signature))
        checks.volatile += [f"{name}: version chosen by the index" for name in self._ranged]
        for files in planner.code_files.values():
            checks.files.update(files)
        for distribution in sorted(planner.code_distributions):
            checks.note_version(distribution)
        reads = planner.hook_reads
        checks.files.update(reads.paths)
        checks.volatile += sorted(f"a plugin hook used {event}" for event in reads.volatile)
        names = {
            HOST_VARIABLE,
            "CC",
            "PATH",
            *project.settings.signature.env_pass_through,
            *reads.env,
        }
        for name in sorted(names):
            checks.note_env(name, environ)
        # The toolchain probes: the interpreter and compiler binaries.
        for program in (self.python, *compiler_command()[:1]):
            found = shutil.which(program)
            if found is not None:
                checks.note_file(os.path.realpath(found))
        # buildprint's own code: an upgrade may compose signatures differently.
        for name, module in list(sys.modules.items()):
            file = getattr(module, "__file__", None)
            if name.startswith("buildprint") and file:
                checks.note_file(file)
        return checks

    def build(self, jobs: int = 1, progress: Progress | None = None) -> list[Outcome]:
        cache = self.remote_cache
        fetched: set[str] = set()
        if cache is not None:
            # What the plan already finds on a remote is fetched up front, all at once
            # (concurrent downloads, batched writes), instead of one package per worker.
            wanted = [d.record for d in self.plan() if d.action == "fetch" and d.record]
            fetched = {record.signature for record in cache.fetch_many(wanted)}
        builder = Builder(
            self.planner,
            self.preparer,
            self.store,
            self.wheelhouse,
            self.preparer.logs,
            fetch=cache.fetch if cache else None,
            push=cache.push if cache and any(r.writable for r in cache.remotes) else None,
            fetched=fetched,
        )
        return builder.run(self.graph(), jobs, progress)

    def why(self, name: str) -> Explanation:
        """Compare what ``name`` would get now with the closest stored build. A package
        still waiting on a dependency's build is compared by a provisional manifest, in
        which each such dependency contributes ``(after NAME is built)``."""
        name = canonicalize_name(name)
        decisions = {d.node.name: d for d in self.plan()}
        if name not in decisions:
            raise InputError(f"{name} is not among the requirements", file=self.project.root)
        decision = decisions[name]
        if (
            decision.record is not None
            and decision.action in ("reuse", "fetch")
            and not decision.changes
        ):
            closest: Manifest | None = Manifest.from_json(decision.record.manifest)
            current = decision.manifest
        else:
            current = decision.manifest or self._provisional_manifest(name, decisions)
            candidate = self.planner.closest(decision.node, current) if current else None
            closest = candidate.manifest_obj if candidate else None
        if closest is None or current is None:
            return Explanation(decision, closest)
        return Explanation(decision, closest, diff(closest, current, self.planner.lookup_manifest))

    def _provisional_manifest(
        self, name: str, decisions: Mapping[str, Decision]
    ) -> Manifest | None:
        results: dict[str, DepResult] = {}
        for node_name, decision in decisions.items():  # dependency order
            manifest = decision.manifest
            if manifest is None:
                known = {d: results[d] for d in decision.node.deps if d in results}
                if len(known) < len(decision.node.deps):
                    return None
                manifest = self.planner.manifest(decision.node, known)
            artifact = (
                decision.record.artifacts[0].content_digest
                if decision.record is not None
                else f"(after {node_name} is built)"
            )
            results[node_name] = DepResult(decision.node.version, manifest.signature, artifact)
            if node_name == name:
                return manifest
        return None

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


def _install_requirements(
    nodes: Sequence[PackageNode], extras: Mapping[str, set[str]]
) -> list[tuple[str, Requirement]]:
    """(requirer, requirement) for every install requirement that applies here: its marker
    holds for this interpreter with no extra or with one the requirer was asked for."""
    found = []
    for node in nodes:
        for text in node.locked.runtime or ():
            requirement = Requirement(text)
            marker = requirement.marker
            asked = ("", *sorted(extras.get(node.name, ())))
            if marker is None or any(marker.evaluate({"extra": extra}) for extra in asked):
                found.append((node.name, requirement))
    return found


def _all_reused(decisions: Sequence[Decision]) -> bool:
    return all(d.action == "reuse" and not d.changes for d in decisions)


def _why_not_kept(checks: Checks, started_ns: int) -> str | None:
    """Why a plan resting on ``checks`` cannot be kept (``None``: it can)."""
    if checks.volatile:
        return checks.volatile[0]
    racy = checks.changed_since(started_ns)
    return f"{racy} changed as the plan ran" if racy else None


def _project_path(root: Path, location: str | None) -> str | None:
    """Index and find-links entries that are relative folders are relative to the project."""
    if location is None or "://" in location or os.path.isabs(location):
        return location
    return str(root / location)
