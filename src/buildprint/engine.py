"""The library entry point: open a project and plan, build, explain, show or move its builds.

Everything the CLI can do is one call here, so a Python caller can do it too. The engine only
wires the parts (resolve, plan, builder, store) and opens each when first used: a plan answered
by its snapshot opens none of them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from buildprint.builder.outcome import Outcome
from buildprint.builder.preparer import Preparer
from buildprint.builder.scheduler import Builder, Progress
from buildprint.builder.wheel import MemberDifference, compare_wheels, read_manifest
from buildprint.builder.wheelhouse import Wheelhouse
from buildprint.errors import BuildFailed, InputError
from buildprint.fsio import process_temp_dir, release_process_temp_dir
from buildprint.inputs.archive import ArchiveLimits
from buildprint.inputs.discovered import ReadReport, SystemFiles
from buildprint.inputs.toolchain import interpreter_identity
from buildprint.options import Options
from buildprint.plan.decision import Decision, PlanEntry
from buildprint.plan.graph import GraphLoader, PackageNode
from buildprint.plan.inputs import InputCollector
from buildprint.plan.planner import Explanation, Planner
from buildprint.plan.snapshot import (
    collect_checks,
    discard_snapshot,
    kept_entries,
    settle_snapshot,
    snapshot_key,
)
from buildprint.project.project import (
    Project,
    apply_constraints,
    combine_requirements,
    constraints_allow,
    is_pinned,
    parse_requirement,
    read_constraints,
    read_requirements,
)
from buildprint.resolve.closure import with_dependencies
from buildprint.resolve.index import PackageIndex, location_problem
from buildprint.resolve.lockfile import (
    Lock,
    explain_cycle,
    kept_lock_logs_on_cycle,
    load_lock,
    save_lock,
)
from buildprint.resolve.markers import marker_environment, this_environment
from buildprint.resolve.sources import SourceResolver
from buildprint.signature.diff import Change, diff
from buildprint.signature.manifest import Manifest
from buildprint.store.index import MIN_ABBREVIATION, reads_as_signature
from buildprint.store.local import LocalStore
from buildprint.store.maintenance import UNUSED_SECONDS, GcReport, collect_garbage, mark_used
from buildprint.store.memo import Memo
from buildprint.store.record import ActionRecord

if TYPE_CHECKING:
    from buildprint.cluster.coordinator import ClusterExecutor
    from buildprint.publish import Published
    from buildprint.store.cache import PushReport, RemoteCache, RemoteListing
    from buildprint.store.remote import Remote, RemoteTimeouts
    from buildprint.store.signing import SigningKey

__all__ = ["Comparison", "Engine", "Explanation", "Options", "RemoteContents"]

_SIGNATURE = re.compile(r"[0-9a-f]{64}")
#: Temp files younger than this may belong to a writer still at work: gc leaves them.
GC_GRACE_SECONDS = 3600


@dataclass(frozen=True)
class Comparison:
    """``diff A B``: two manifests and what differs between them."""

    old: Manifest
    new: Manifest
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class Audit:
    """``audit NAME``: the newest build of NAME in the local store, what it read (``None``
    when that was not recorded: ``note`` says why) and how its discovered inputs stand now."""

    record: ActionRecord
    reads: ReadReport | None
    note: str
    #: ``(path, recorded digest, digest now)`` of each discovered input that moved.
    moved: tuple[tuple[str, str, str], ...]
    checked: bool  # False: ``discovered = false`` for the package
    ignore: tuple[str, ...]  # the package's ``discovered-ignore``


@dataclass(frozen=True)
class Verification:
    """``verify``: one package rebuilt and compared with its stored wheel."""

    name: str
    version: str
    signature: str | None
    wheel: str | None = None
    differences: tuple[MemberDifference, ...] = ()
    skipped: str = ""  # why it was not rebuilt (no stored build to compare with)

    @property
    def reproducible(self) -> bool:
        return not self.skipped and not self.differences


@dataclass(frozen=True)
class RemoteContents:
    """``cache ls --remote``: one remote's entries."""

    url: str
    entries: list[RemoteListing]


class Engine:
    """One project, opened for one run (a context manager: :meth:`close` on exit)."""

    def __init__(self, project_dir: Path, options: Options | None = None) -> None:
        self.project_dir = project_dir
        self.options = options or Options()
        from buildprint.store.remote import check_remote_url

        for url in self.options.remotes:  # before anything, the plan snapshot included
            check_remote_url(url)
        self._requirement_files: list[Path] = []
        self._constraints: list[Requirement] = []  # -c lines and files, as read
        self._inspected: list[RemoteCache] = []  # opened to list or verify remotes
        self._ranged: list[str] = []  # requirements whose version an index chose
        #: How the last :meth:`plan_entries` used the plan snapshot.
        self.snapshot_note = ""
        #: Build tools built (or reused) while locking their dependents, by name: the build
        #: that follows counts them as done.
        self._early: dict[str, Outcome] = {}
        self._jobs: int = 1
        self._progress: Progress | None = None

    # -- the parts, opened when first used ---------------------------------------------------

    @cached_property
    def project(self) -> Project:
        """The project's settings (``buildprint.toml``; package settings as they are asked)."""
        return Project.load(self.project_dir)

    @cached_property
    def store_dir(self) -> Path:
        """The local store: ``--store``, else the project's (``.buildprint`` by default)."""
        return (self.options.store or self.project.store_dir).resolve()

    @cached_property
    def python(self) -> str:
        """The interpreter builds run with (``python`` in the settings, else this one)."""
        return self.project.interpreter() or sys.executable

    def _working_python(self) -> str:
        """:attr:`python`, once it has answered the identity probe (run once per process
        whatever calls it first): one that does not run is bad input at its setting."""
        try:
            interpreter_identity(self.python)
        except (OSError, subprocess.CalledProcessError, ValueError) as exc:
            if isinstance(exc, subprocess.CalledProcessError):
                said = (exc.stderr or "").strip().splitlines()[:1]
                why = f"exit status {exc.returncode}" + "".join(f": {line}" for line in said)
            elif isinstance(exc, OSError):
                why = exc.strerror or str(exc)
            else:
                why = "its answer is not what a Python interpreter prints"
            raise self.project.setting_error(
                ("project", "python"),
                f"python = {self.project.settings.project.python!r}: {self.python} does not "
                f"run as a Python interpreter ({why})",
            ) from None
        return self.python

    @cached_property
    def index(self) -> PackageIndex:
        """The package index and find-links; a location that cannot be one is bad input at
        its setting (or option), before anything asks it for a file."""
        settings, root = self.project.settings.project, self.project.root
        from_settings = self.options.index_url is None and settings.index_url is not None
        index_url = self.options.index_url or _project_path(root, settings.index_url)
        if index_url is not None:
            written = settings.index_url if from_settings else None
            problem = location_problem(index_url, written=written)
            if problem is not None and from_settings:
                raise self.project.setting_error(("project", "index-url"), problem)
            if problem is not None:
                raise InputError(f"--index-url: {problem}")
        find_links = [_project_path(root, f) or f for f in settings.find_links]
        for link, written in zip(find_links, settings.find_links, strict=True):
            problem = location_problem(link, kind="find-links", written=written)
            if problem is not None:
                raise self.project.setting_error(("project", "find-links"), problem)
        for link in self.options.find_links:
            problem = location_problem(link, kind="find-links")
            if problem is not None:
                raise InputError(f"--find-links: {problem}")
        extra = [_project_path(root, u) or u for u in settings.extra_index_url]
        for url, written in zip(extra, settings.extra_index_url, strict=True):
            problem = location_problem(url, kind="extra-index-url", written=written)
            if problem is not None:
                raise self.project.setting_error(
                    ("project", "extra-index-url"), problem, value=written
                )
        for url in self.options.extra_index_urls:
            problem = location_problem(url, kind="extra-index-url")
            if problem is not None:
                raise InputError(f"--extra-index-url: {problem}")
        where = self.project.setting_error(("project", "index-url"), "") if from_settings else None
        return PackageIndex(
            index_url,
            [*find_links, *self.options.find_links],
            extra_index_urls=[*extra, *self.options.extra_index_urls],
            cache_dir=self.store_dir / "downloads",
            settings_file=where.file if where else None,
            settings_line=where.line if where else None,
        )

    @cached_property
    def store(self) -> LocalStore:
        return LocalStore(self.store_dir)

    @cached_property
    def memo(self) -> Memo:
        return Memo(self.store_dir / "memo" / "inputs.json")

    @cached_property
    def resolver(self) -> SourceResolver:
        settings = self.project.settings.project
        limits = ArchiveLimits(settings.max_unpacked_size, settings.max_expansion_ratio)
        return SourceResolver(self.project.root, self.index, self.memo, limits=limits)

    @cached_property
    def lock_data(self) -> Lock:
        """``buildprint.lock`` as read (and as the run extends it)."""
        return load_lock(self.project.lock_file) if self.project.lock_file.exists() else Lock()

    @cached_property
    def collector(self) -> InputCollector:
        return InputCollector(self.project, self.memo, python=self._working_python())

    @cached_property
    def planner(self) -> Planner:
        self.project.validate()  # every settings file, before anything is written
        return Planner(
            self.collector,
            self.store,
            remotes=self.remote_cache,
            force=self.options.force,
            reuse_by_version=self.options.reuse_by_version,
            tags=lambda: self.preparer.tags,
            # With an executor the builds, and so the system files they read, are the
            # workers': each worker checks them against its own (docs/discovered.md).
            system=None if self.executor_url else self.system_files,
        )

    @cached_property
    def system_files(self) -> SystemFiles:
        """The system files' digests, memoized by stat (discovered inputs are checked)."""
        return SystemFiles(Memo(self.store_dir / "memo" / "system-files.json"))

    @cached_property
    def preparer(self) -> Preparer:
        # Libraries' temp folders (pyproject_hooks' input.json, uv's inputs) go in a work
        # folder named for this process: one a SIGKILL leaves is swept by the next run or gc.
        self.__dict__["_process_temp"] = process_temp_dir(self.store_dir / "work")
        return Preparer(
            self.index,
            self.resolver,
            self.store_dir / "work",
            self.store_dir / "logs",
            self.python,
            str(interpreter_identity(self._working_python())["python"]),
        )

    @cached_property
    def wheelhouse(self) -> Wheelhouse:
        return Wheelhouse(self.options.wheelhouse or self.project.wheelhouse_dir)

    @cached_property
    def remote_cache(self) -> RemoteCache | None:
        """The project's ``[[remote]]`` caches and ``--remote`` ones, or ``None``."""
        configured = [(r.url, r.read, r.write) for r in self.project.settings.remote]
        configured += [(url, True, True) for url in self.options.remotes]
        if not configured:
            return None
        # Imported here: boto3, httpx and cryptography cost a noticeable part of a no-op plan.
        from buildprint.store import open_remote
        from buildprint.store.signing import generate_key, load_signing_key

        remotes = [
            open_remote(url, writable=write, timeouts=self._remote_timeouts(url))
            for url, read, write in configured
            if read or write
        ]
        key = load_signing_key(self.store_dir)
        if key is None and any(write for _, _, write in configured):
            generate_key(self.store_dir)
            key = load_signing_key(self.store_dir)
        return self._cache_over(remotes, key)

    def _remote_timeouts(self, url: str) -> RemoteTimeouts:
        """The ``[[remote]]`` timeouts of ``url`` (the first entry naming it), else defaults."""
        from buildprint.store.remote import RemoteTimeouts

        for remote in self.project.settings.remote:
            if remote.url == url:
                return RemoteTimeouts.of(
                    remote.timeout, remote.connect_timeout, remote.read_timeout
                )
        return RemoteTimeouts()

    def _cache_over(self, remotes: list[Remote], key: SigningKey | None) -> RemoteCache:
        """A cache over ``remotes`` in front of the local store, trusting the project's
        trusted keys and its own ``key``."""
        from buildprint.store.cache import RemoteCache

        trusted = [k for r in self.project.settings.remote for k in r.trusted_keys]
        return RemoteCache(remotes, self.store, trusted, key)

    @property
    def problems(self) -> list[str]:
        """Warnings to show once (remotes down, untrusted records …)."""
        cache = self.__dict__.get("remote_cache")
        problems = list(cache.problems) if cache else []
        return [*problems, *self._unmatched_settings()]

    @property
    def notes(self) -> list[str]:
        """What the run did besides what it was asked (build tools built while locking)."""
        return [
            f"{o.decision.node.name} {o.decision.node.version}: {o.done} while locking what "
            "builds with it"
            for o in self._early.values()
            if o.done != "reused"
        ]

    def _unmatched_settings(self) -> list[str]:
        """Warnings for ``packages/*.toml`` files the run's packages do not read (with
        ``--with-deps``, known only once the graph was loaded)."""
        names = self.__dict__.get("_graph_names")
        if names is None and self.options.with_deps:
            return []
        try:
            names = names if names is not None else [r.name for r in self.requirements()]
        except InputError:
            return []
        return self.project.unmatched_settings(names)

    def close(self, *, save: bool = True) -> None:
        """Release resources; ``save=False`` (a run that ended in error) leaves the memo as it
        was, so bad input changes nothing in the store."""
        opened = self.__dict__
        for cache in [opened.get("remote_cache"), *self._inspected]:
            for remote in cache.remotes if cache is not None else ():
                remote.close()
        if save and "memo" in opened:
            self.memo.save()
        if save and "system_files" in opened:
            self.system_files.save()
        if save and "resolver" in opened:
            self.resolver.save()  # the folder sources' tree memos
        if "index" in opened:
            self.index.close()
        if "store" in opened:
            self.store.close()
        if opened.get("executor") is not None:
            opened["executor"].close()
        if "_tools_folder" in opened:
            shutil.rmtree(opened["_tools_folder"], ignore_errors=True)
        if "preparer" in opened:
            if "environments" in self.preparer.__dict__:
                self.preparer.environments.close()
            release_process_temp_dir(opened["_process_temp"])

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(save=exc_type is None)

    # -- the graph ---------------------------------------------------------------------------

    def requirements(self) -> list[Requirement]:
        """What to build: the options' requirements and files, else the project's file; as
        pip reads them (``project.combine_requirements``): markers evaluated for the build
        interpreter, a package required twice merged, the constraints (``-c``) applied."""
        files = self._requirement_files
        files.clear()
        constraints: list[Requirement] = []
        found: list[Requirement] = [parse_requirement(r) for r in self.options.requirements]
        for file in self.options.requirement_files:
            found.extend(read_requirements(file, files, constraints))
        if not found:
            file = self.project.root / self.project.settings.project.requirements
            files.append(file)  # checked even when absent: creating it changes the plan
            if file.exists():
                found = read_requirements(file, files, constraints)
        if not found:
            raise InputError(
                "nothing to build: give requirements, -r FILE, or a requirements file "
                f"({self.project.settings.project.requirements})",
                file=self.project.root,
            )
        for file in self.options.constraint_files:
            read_constraints(file, files, constraints)
        self._constraints = constraints
        combined = combine_requirements(found, constraints, self._marker_environment)
        if not combined:
            raise InputError(
                "nothing to build: the environment marker of every requirement is false for "
                f"the build interpreter ({self.python})",
                file=self.project.root,
            )
        return combined

    def _marker_environment(self) -> Mapping[str, str]:
        """What requirement markers are evaluated with: the build interpreter's values (asked
        of it when ``[project] python`` is set; no process otherwise)."""
        if self.project.settings.project.python is None:
            return this_environment()
        return marker_environment(self._working_python())

    def graph(self, *, upgrade: bool = False) -> list[PackageNode]:
        """The package graph in dependency order; packages not locked yet (with ``upgrade``,
        all of them) are locked, and ``buildprint.lock`` written when that changed it."""
        requirements = self.requirements()
        with self._lock_file_lock():
            # Another process may have locked (and written) packages while this one waited.
            self.__dict__.pop("lock_data", None)
            if upgrade:
                self.lock_data.packages.clear()
                self.lock_data.dependencies.clear()
            return self._graph(requirements)

    def _lock_file_lock(self) -> FileLock:
        """The lock between processes that read, complete and write ``buildprint.lock``
        (beside the project's default store, whichever store the run uses)."""
        folder = self.project.root / ".buildprint" / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        return FileLock(str(folder / "buildprint.lock.lock"))

    @property
    def from_source(self) -> bool:
        """Whether the whole closure is built from sdists (``--from-source`` or the setting)."""
        return self.options.from_source or self.project.settings.project.from_source

    def _graph(self, requirements: list[Requirement]) -> list[PackageNode]:
        lock, from_source = self.lock_data, self.from_source
        with_deps = self.options.with_deps or from_source
        before = (dict(lock.packages), dict(lock.dependencies))
        environment = self._marker_environment()
        loader = GraphLoader(
            self.project,
            self.resolver,
            lock,
            self.preparer.lock,
            install_requirements=with_deps,
            from_source=from_source,
            build_now=self._build_now,
            prebuilt=self.preparer.prebuilt,
            environment=environment,
            constrain=lambda wanted: apply_constraints(
                wanted, self._constraints, environment, via="a build requirement"
            ),
        )

        def load(wanted: list[Requirement], new: set[str]) -> list[PackageNode]:
            # Constraints narrow the install dependencies --with-deps adds, as pip's do.
            return loader.load(
                apply_constraints(
                    wanted, self._constraints, environment, via="an install dependency"
                )
            )

        # A --hash mismatch is found before anything is locked (nothing is written).
        self.resolver.check_hashes(requirements, self.project)
        try:
            with kept_lock_logs_on_cycle(self.store_dir / "logs"):
                nodes = load(requirements, set())
        except InputError as exc:  # a cycle: say which requirement of which package makes it
            raise explain_cycle(exc, lock, self.project.describe_source) from None
        if with_deps:  # a version locked before a constraint excluded it is chosen anew
            lock.dependencies = {
                name: version
                for name, version in lock.dependencies.items()
                if constraints_allow(self._constraints, name, version, environment)
            }
            requirements, nodes = with_dependencies(
                requirements, nodes, lock, load, origin=self.project.root, environment=environment
            )
        self._ranged = [
            canonicalize_name(r.name)
            for r in requirements
            if self.project.package_settings(r.name).source is None
            and r.url is None
            and not is_pinned(r)
        ]
        if (dict(lock.packages), dict(lock.dependencies)) != before:
            save_lock(self.project.lock_file, lock)
        self.__dict__["_graph_names"] = [node.name for node in nodes]
        return nodes

    def lock(self, *, upgrade: bool = False) -> list[PackageNode]:
        """Lock every package's build requirements (with ``upgrade``, all of them anew), write
        ``buildprint.lock`` and return the graph; a package whose backend failed to say its
        requirements has its ``lock_error`` set (the others are locked all the same)."""
        return self.graph(upgrade=upgrade)

    # -- planning and building -------------------------------------------------------------

    def plan(self) -> list[Decision]:
        """A decision per package, in dependency order, without building anything."""
        return self.planner.plan(self.graph())

    def plan_entries(self) -> list[PlanEntry]:
        """``plan`` as printed. While nothing a kept no-op plan rests on has changed, that plan
        is the answer, found in about the time of a stat of every input; otherwise the plan is
        made in full and, when it reuses everything, kept (see :mod:`buildprint.plan.snapshot`).
        :attr:`snapshot_note` then says which it was, and why."""
        file = self.store_dir / "memo" / "plan.json"
        key = snapshot_key(self.options, self.project, self.store_dir, self.python)
        if key is None:
            self.snapshot_note = "not used with --force"
        else:
            kept, self.snapshot_note = kept_entries(file, key, os.environ)
            if kept is not None:
                return kept
        started = time.time_ns()
        decisions = self.plan()
        if key is None:
            discard_snapshot(file)
        else:
            self.snapshot_note += "; " + settle_snapshot(
                file,
                key,
                decisions,
                started,
                lambda: collect_checks(
                    self.project,
                    decisions,
                    self.collector,
                    self.store,
                    requirement_files=self._requirement_files,
                    ranged=self._ranged,
                    environ=os.environ,
                    index=self.index,
                ),
            )
        return [d.entry() for d in decisions]

    def build(self, jobs: int = 1, progress: Progress | None = None) -> list[Outcome]:
        """Build what changed with ``jobs`` workers (or, with an executor, as tasks on its
        cluster); reuse or fetch the rest. A failed build fails its dependents, not the run:
        see each :class:`Outcome`."""
        self._jobs, self._progress = jobs, progress
        executor = self.executor  # a cluster build without a shared remote: bad input, first
        cache = self.remote_cache
        nodes = self.graph()  # locked once: the plan below and the run share it
        if cache is not None:
            decisions = self.planner.plan(nodes)
            if executor is not None and any(d.action in ("build", "pending") for d in decisions):
                executor.warm_up()  # connects while the rest is fetched and placed
            # What the plan already finds on a remote is fetched up front, all at once
            # (concurrent downloads, batched writes), instead of one package per worker.
            wanted = [d.record for d in decisions if d.action == "fetch" and d.record]
            fetched = {record.signature for record in cache.fetch_many(wanted)}
            self.builder.fetched = self.builder.fetched | fetched
        outcomes = self.builder.run(nodes, jobs, progress, done=self._early)
        placed = {
            o.decision.node.name: o.record
            for o in outcomes
            if o.record is not None and o.done != "failed"
        }
        mark_used(self.store, [record.signature for record in placed.values()])  # for gc
        if self.project.settings.project.wheelhouse_keep == "current":
            # The run's packages' other versions and build tags: superseded (docs/store.md).
            self.wheelhouse.prune(
                {name: {a.filename for a in r.artifacts} for name, r in placed.items()}
            )
        return outcomes

    @cached_property
    def builder(self) -> Builder:
        """The run's builder (one for the build tools built while locking and the rest)."""
        cache = self.remote_cache
        return Builder(
            self.planner,
            self.preparer,
            self.store,
            self.wheelhouse,
            self.preparer.logs,
            fetch=cache.fetch if cache else None,
            fetch_many=cache.fetch_many if cache else None,
            push=cache.push if cache and any(r.writable for r in cache.remotes) else None,
            remote_build=self.executor.build if self.executor else None,
        )

    @property
    def executor_url(self) -> str | None:
        """Where builds run: ``--executor``, else ``[executor] url``; None: here."""
        return self.options.executor or self.project.settings.executor.url

    @cached_property
    def executor(self) -> ClusterExecutor | None:
        """The cluster builds run on (connected when the first build is submitted), or None.
        It needs a writable remote its workers share: without one, bad input at once."""
        url = self.executor_url
        if url is None:
            return None
        from buildprint.project.settings import executor_problem

        problem = executor_problem(url)
        if problem is not None:
            raise InputError(f"--executor: {problem}")
        writable = [r.url for r in self.project.settings.remote if r.write]
        writable += list(self.options.remotes)
        cache = self.remote_cache
        if not writable or cache is None:
            raise InputError(
                f"a cluster build ({url}) needs a remote its workers share and can write: "
                "a [[remote]] with write = true, or --remote URL",
                file=self.project.root / "buildprint.toml",
            )
        import importlib.util

        if importlib.util.find_spec("distributed") is None:
            raise InputError(
                f"a cluster build ({url}) needs Dask's distributed: "
                "pip install 'buildprint[cluster]'"
            )
        from buildprint.cluster.coordinator import ClusterExecutor
        from buildprint.urls import redact_url

        return ClusterExecutor(
            url,
            remote=next(r for r in cache.remotes if r.writable),
            remote_url=redact_url(writable[0]),
            cache=cache,
            project=self.project,
            resolver=self.resolver,
            preparer=self.preparer,
            collector=self.collector,
            logs=self.preparer.logs,
            scratch=self.preparer.work_folder("cluster"),
            connect_timeout=self.project.settings.executor.connect_timeout,
            force=frozenset(self.planner.force),
        )

    def _build_now(self, nodes: Sequence[PackageNode]) -> dict[str, list[tuple[Path, str]]]:
        """Build (or reuse, or fetch) graph packages a package's lock needs installed, now;
        their wheels by name, copied out of the store (checked) into this run's folder."""
        outcomes = self.builder.run(nodes, self._jobs, self._progress, done=self._early)
        found: dict[str, list[tuple[Path, str]]] = {}
        for outcome in outcomes:
            node = outcome.decision.node
            if outcome.record is None:
                raise BuildFailed(
                    f"build requirement {node.name} {node.version} was not built: "
                    f"{outcome.error or outcome.done}"
                )
            self._early[node.name] = outcome
            found[node.name] = [
                (self._tool_wheel(a.filename, a.sha256, a.size), a.sha256)
                for a in outcome.record.artifacts
            ]
        return found

    def _tool_wheel(self, filename: str, sha256: str, size: int) -> Path:
        """A stored wheel as a file of this run's own, for build environments to install."""
        folder = self.__dict__.get("_tools_folder")
        if folder is None:
            folder = self.__dict__["_tools_folder"] = self.preparer.work_folder("tools")
        target = folder / sha256[:16] / filename
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            self.store.copy_blob(sha256, target, size=size)
        return target

    # -- explaining --------------------------------------------------------------------------

    def why(self, name: str) -> Explanation:
        """Compare what ``name`` would get now with the closest stored build (a package
        waiting on a dependency's build, by a provisional manifest)."""
        name = canonicalize_name(name)
        decisions = self.plan()
        if name not in {d.node.name for d in decisions}:
            raise InputError(f"{name} is not among the requirements", file=self.project.root)
        return self.planner.explain(name, decisions)

    def manifest_of(self, name: str) -> Manifest:
        """The manifest ``name`` would get now (stored dependencies' results filled in)."""
        name = canonicalize_name(name)
        for decision in self.plan():
            if decision.node.name == name:
                if decision.manifest is None and decision.pending_on:
                    raise InputError(
                        f"{name} depends on {', '.join(decision.pending_on)}, not built yet: "
                        "its signature is not known"
                    )
                if decision.manifest is None:  # its build requirements cannot be locked
                    raise InputError(f"{name}: its signature is not known: {decision.reason}")
                return decision.manifest
        raise InputError(f"{name} is not among the requirements", file=self.project.root)

    def show(self, what: str) -> Manifest:
        """The manifest of a wheel file, a manifest file, a signature in the store (or a
        unique prefix of one, 4 or more hex digits), or a package of the project (as it would
        be built now; a requirement's name wins over hex digits that spell it)."""
        if what.endswith(".whl") or _SIGNATURE.fullmatch(what) or Path(what).is_file():
            return self.load_manifest(what)
        if reads_as_signature(what) and not self._is_requirement(what):
            return self.load_manifest(what)
        return self.manifest_of(what)

    def _is_requirement(self, name: str) -> bool:
        try:
            wanted = {canonicalize_name(r.name) for r in self.requirements()}
        except InputError:  # no requirements (or none readable): not a package name, then
            return False
        return canonicalize_name(name) in wanted

    def resolve_signature(self, abbreviation: str) -> str:
        """The full signature of the stored build that ``abbreviation`` starts (at least 4
        hex digits, as git takes short hashes); bad input when none or several do."""
        if not self.store_dir.is_dir():  # nothing stored: do not create a store to say so
            raise InputError(
                f"no stored build has a signature starting with {abbreviation.lower()}",
                file=self.store_dir,
            )
        return self.store.resolve_signature(abbreviation)

    def load_manifest(self, what: str) -> Manifest:
        """A manifest from a wheel, a manifest file, or a signature in the store (or an
        abbreviation of one: :meth:`resolve_signature`)."""
        path = Path(what)
        if path.suffix == ".whl":
            if not path.is_file():
                raise InputError("no such wheel", file=path)
            data = read_manifest(path)
            if data is None:
                raise InputError("wheel carries no buildprint manifest", file=path)
            return Manifest.from_bytes(data, source=str(path))
        if path.is_file():
            return Manifest.from_bytes(path.read_bytes(), source=str(path))
        if _SIGNATURE.fullmatch(what):
            if self.store_dir.is_dir():
                record = self.store.get_record(what)
                if record is not None:
                    return Manifest.from_json(record.manifest, source=f"store:{what}")
            raise InputError(f"signature {what} is not in the store", file=self.store_dir)
        if reads_as_signature(what):
            return self.load_manifest(self.resolve_signature(what))
        raise InputError(
            f"{what!r} is neither a wheel, a manifest file nor a signature (or an abbreviation "
            f"of one: {MIN_ABBREVIATION} or more hex digits)"
        )

    def diff(self, a: str, b: str) -> Comparison:
        """Compare two manifests (each a signature, a wheel or a manifest file)."""
        old, new = self.load_manifest(a), self.load_manifest(b)
        return Comparison(old, new, tuple(diff(old, new)))

    # -- the store and the remotes ---------------------------------------------------------

    def audit(self, name: str) -> Audit:
        """What the newest build of ``name`` in the local store read."""
        name = canonicalize_name(name)
        records = self.store.find(name) if self.store_dir.is_dir() else []
        if not records:
            raise InputError(f"{name}: no build of it in the store", file=self.store_dir)
        record = max(records, key=lambda r: (r.created, r.version))
        policy = self.project.package_settings(name).signature.policy()
        reads, note = None, ""
        blob = self.store.blob_path(record.reads) if record.reads is not None else None
        if blob is not None:
            try:
                reads = ReadReport.from_json(json.loads(blob.read_bytes()))
            except (OSError, ValueError, KeyError, TypeError):
                note = "its read report in the store is unreadable"
        elif record.discovered is not None:
            note = "built elsewhere: only its discovered inputs travel with the record"
        else:
            note = (
                "what it read was not recorded: it ran untraced (no tracer, or "
                "BUILDPRINT_TRACE=off) or by a build_wheel hook"
            )
        moved = self.system_files.changed(record.discovered or {}, policy.discovered_ignore)
        return Audit(record, reads, note, tuple(moved), policy.discovered, policy.discovered_ignore)

    def verify_builds(self, names: Sequence[str], *, every: bool = False) -> list[Verification]:
        """Rebuild each named package (``every``: each package with a stored build) in a
        fresh work folder and environment, nothing stored, and compare the wheel with the
        stored one. A named package without a stored build valid here is bad input."""
        decisions = self.plan()
        by_name = {d.node.name: d for d in decisions}
        wanted: list[str] = [canonicalize_name(n) for n in names] or list(by_name)
        unknown = [n for n in wanted if n not in by_name]
        if unknown:
            raise InputError(
                f"{', '.join(unknown)}: not among the requirements", file=self.project.root
            )
        skipped: dict[str, str] = {}
        for name in wanted:  # all of them, before any rebuild
            decision = by_name[name]
            if decision.node.settings.prebuilt:
                skipped[name] = "prebuilt = true: the index wheel, as locked, never built"
            elif decision.action != "reuse" or decision.record is None:
                why = f"no stored build valid here to compare with (plan: {decision.action})"
                if not every:
                    raise InputError(f"{name}: {why}; build it first", file=self.project.root)
                skipped[name] = why
        results = {d.node.name: d.result() for d in decisions if d.record is not None}
        out: list[Verification] = []
        for name in wanted:
            decision = by_name[name]
            node = decision.node
            if name in skipped:
                out.append(
                    Verification(name, node.version, decision.signature, skipped=skipped[name])
                )
                continue
            assert decision.record is not None
            deps = {dep: results[dep] for dep in node.deps}
            artifact = decision.record.artifacts[0]
            scratch = self.preparer.work_folder(f"verify-{name}")
            try:
                stored = scratch / "stored" / artifact.filename
                stored.parent.mkdir()
                self.store.copy_blob(artifact.sha256, stored, size=artifact.size)
                rebuilt = self.builder.rebuild(decision, deps, scratch / "rebuilt")
                differences = compare_wheels(stored, rebuilt)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            out.append(
                Verification(
                    name, node.version, decision.signature, artifact.filename, tuple(differences)
                )
            )
        return out

    def records(self) -> list[ActionRecord]:
        """The builds in the local store, by name, version and date."""
        return sorted(self.store.records(), key=lambda r: (r.name, r.version, r.created))

    def verify_store(self) -> list[str]:
        """Re-hash every blob and check every record of the local store; the problems."""
        return self.store.verify()

    def collect_garbage(
        self,
        *,
        grace_seconds: float = GC_GRACE_SECONDS,
        unused_seconds: float = UNUSED_SECONDS,
        keep_current: bool = False,
        max_size: int | str | None = None,
        max_age_seconds: float | None = None,
    ) -> GcReport:
        """Collect the local store's garbage (``maintenance.collect_garbage``: damaged blobs
        quarantined, blobs no record refers to once older than ``grace_seconds``, temp files
        and folders of processes gone, stale locks, build environments and git checkouts
        unused for ``unused_seconds``); what was removed. With ``keep_current`` only the
        records the current plan reuses are kept; ``max_age_seconds`` removes records unused
        that long; ``max_size`` (bytes, or "10GiB") the least recently used ones while the
        store is over it. A record stored while this runs is never removed."""
        from buildprint.project.settings import parse_size

        started = time.time()
        try:
            limit = None if max_size is None else parse_size(max_size)
        except ValueError as exc:
            raise InputError(f"--max-size: {exc}") from None
        keep_only = None
        if keep_current:
            decisions = self.plan()
            keep_only = {d.record.signature for d in decisions if d.action == "reuse" and d.record}
        return collect_garbage(
            self.store,
            grace_seconds=grace_seconds,
            unused_seconds=unused_seconds,
            keep_only=keep_only,
            max_age_seconds=max_age_seconds,
            max_size=limit,
            started=started,
        )

    def push(self) -> PushReport:
        """Push every local build to the writable remotes: what landed where, and every
        upload that was refused (``PushReport.complete`` only if none was)."""
        cache = self._configured_cache()
        if not any(remote.writable for remote in cache.remotes):
            raise InputError(
                "no writable remote (write = true in [[remote]], or --remote URL)",
                file=self.project.root / "buildprint.toml",
            )
        return cache.push_many(self.store.records())

    def pull(self) -> tuple[int, int]:
        """Fetch from the remotes every planned package they hold: (fetched, found)."""
        cache = self._configured_cache()
        wanted = [d.record for d in self.plan() if d.action == "fetch" and d.record]
        return len(cache.fetch_many(wanted)), len(wanted)

    def _configured_cache(self) -> RemoteCache:
        if self.remote_cache is None:
            raise InputError("no remote configured ([[remote]] in buildprint.toml or --remote)")
        return self.remote_cache

    def list_remotes(
        self, urls: Sequence[str] = (), *, configured: bool = False, read_records: bool = True
    ) -> list[RemoteContents]:
        """The entries of the remotes at ``urls`` (and, with ``configured``, the project's
        ``[[remote]]`` ones), each record read and verified unless not ``read_records``."""
        cache = self._inspection_cache(urls, configured)
        return [
            RemoteContents(remote.url, cache.list_remote(remote, read_records=read_records))
            for remote in cache.remotes
        ]

    def verify_remotes(
        self, urls: Sequence[str] = (), *, configured: bool = False, download: bool = False
    ) -> list[str]:
        """Check every entry of those remotes (trusted signature, own name, blobs present, or
        re-hashed with ``download``); the problems. Nothing is changed anywhere."""
        cache = self._inspection_cache(urls, configured)
        return [
            p for remote in cache.remotes for p in cache.verify_remote(remote, download=download)
        ]

    def _inspection_cache(self, urls: Sequence[str], configured: bool) -> RemoteCache:
        """For listing and verifying: read-only remotes (closed with the engine)."""
        from buildprint.store import open_remote
        from buildprint.store.signing import load_signing_key

        settings = self.project.settings
        if configured and not settings.remote and not urls:
            raise InputError(
                "no [[remote]] in buildprint.toml", file=self.project.root / "buildprint.toml"
            )
        wanted = list(urls) + ([r.url for r in settings.remote] if configured else [])
        remotes = [
            open_remote(url, writable=False, timeouts=self._remote_timeouts(url))
            for url in dict.fromkeys(wanted)
        ]
        cache = self._cache_over(remotes, load_signing_key(self.store_dir))
        self._inspected.append(cache)
        return cache

    def generate_key(self) -> str:
        """Create the store's signing key (kept if it exists) and return its public id."""
        from buildprint.store.signing import generate_key

        return generate_key(self.store_dir)

    def publish(self, repository_url: str) -> list[Published]:
        """Upload the wheelhouse's wheels to a package index (pypiserver, devpi)."""
        from buildprint.publish import publish

        wheelhouse = self.project.wheelhouse_dir
        wheels = sorted(wheelhouse.glob("*.whl"))
        if not wheels:
            raise InputError("no wheels to publish", file=wheelhouse)
        return publish(wheels, repository_url)


def _project_path(root: Path, location: str | None) -> str | None:
    """Index and find-links entries that are relative folders are relative to the project."""
    if location is None or "://" in location or os.path.isabs(location):
        return location
    return str(root / location)
