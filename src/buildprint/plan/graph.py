"""The package graph: each requirement's source, patches and locked build requirements, in
dependency order."""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from buildprint.errors import BuildFailed, InputError
from buildprint.inputs.patches import PatchFolders, find_patches, patches_value
from buildprint.project.project import Project
from buildprint.project.settings import PackageSettings
from buildprint.resolve.lockfile import Lock, LockedBuildDeps, explain_cycle
from buildprint.resolve.markers import applies, this_environment
from buildprint.resolve.sources import ResolvedSource, SourceResolver
from buildprint.signature.canonical import digest_value
from buildprint.signature.compose import reduce_version

__all__ = [
    "BuildNow",
    "GraphLoader",
    "HookVersion",
    "LockContext",
    "LockStep",
    "PackageNode",
    "PackageView",
    "PrebuiltStep",
    "Provided",
    "load_graph",
]


class HookVersion(str):
    """A version string with the granularities hooks ask for (``pkg.version.major_minor``)."""

    __slots__ = ()

    @property
    def major_minor(self) -> str:
        return reduce_version(self, "minor")

    @property
    def major(self) -> str:
        return reduce_version(self, "major")


@dataclass(frozen=True)
class PackageView:
    """What plugin hooks see as ``pkg``."""

    name: str
    version: HookVersion
    settings: PackageSettings


@dataclass
class PackageNode:
    """One package of the graph, with everything found about it before signing."""

    name: str
    version: str
    settings: PackageSettings
    settings_file: Path
    source: ResolvedSource
    patches: list[Path]
    locked: LockedBuildDeps
    deps: tuple[str, ...] = ()
    patch_digests: dict[str, str] = field(default_factory=dict)
    #: Why its build requirements could not be locked (the backend failed): the package
    #: then fails on its own, and its dependents with it, while the rest of the run goes on.
    lock_error: str | None = None
    #: The graph's packages among its install requirements (edges of kind ``install``:
    #: shown in the graph; they do not change how it builds).
    install_deps: tuple[str, ...] = ()

    @property
    def view(self) -> PackageView:
        return PackageView(self.name, HookVersion(self.version), self.settings)


@dataclass(frozen=True)
class Provided:
    """Build requirements split the way a build environment gets them: from the index (as
    wheels, pinned by the lock) or built in this graph."""

    #: Requirements to pin from the index: the declared ones not built here, and the install
    #: requirements of the graph's build tools that are not built here either (markers
    #: evaluated for the build interpreter, so none is left).
    index: list[str]
    #: The graph's own wheels the environment holds, ``(path, sha256)``, built (or reused)
    #: before the package is locked.
    built: list[tuple[Path, str]]


class LockContext(Protocol):
    """What a lock step gets besides the package: whether to read its install requirements,
    and the graph's build tools, built on demand."""

    @property
    def install_requirements(self) -> bool: ...

    def provide(self, requirements: Sequence[str]) -> Provided: ...


#: Locks one package's build requirements: (name, its previous lock entry or None, source,
#: patches, settings, context). The previous pins are kept where they still fit: no drift.
LockStep = Callable[
    [str, LockedBuildDeps | None, ResolvedSource, list[Path], PackageSettings, LockContext],
    LockedBuildDeps,
]

#: A ``prebuilt = true`` package's index wheel as its source, and its lock entry: (name,
#: requirement, previous lock entry or None, settings file).
PrebuiltStep = Callable[
    [str, Requirement, LockedBuildDeps | None, Path], tuple[ResolvedSource, LockedBuildDeps]
]

#: Builds (or reuses) graph packages now, their own dependencies first, and returns each
#: one's wheels ``(path, sha256)`` by name: a package's build requirements are read by its
#: backend, which must be installed to answer.
BuildNow = Callable[[Sequence[PackageNode]], Mapping[str, list[tuple[Path, str]]]]


def load_graph(
    project: Project,
    resolver: SourceResolver,
    lock: Lock,
    requirements: Sequence[Requirement],
    lock_step: LockStep,
    *,
    install_requirements: bool = False,
) -> list[PackageNode]:
    """:meth:`GraphLoader.load` with a loader of its own (no build tools built on demand)."""
    loader = GraphLoader(
        project, resolver, lock, lock_step, install_requirements=install_requirements
    )
    return loader.load(requirements)


class GraphLoader:
    """Loads the package graph: each package's source, patches and lock entry, in
    dependency order.

    A build requirement that is a package of the graph is installed into its dependents'
    build environments as the graph's own wheel, with its install requirements (recursively,
    the graph's where they are in it, else pinned from the index); that closure is a
    package's ``deps``, and each is built before it. With ``from_source``, every build
    requirement (and, through ``--with-deps``, every install requirement) joins the graph,
    built from its sdist, or taken as its index wheel (sha256 locked) when its settings say
    ``prebuilt = true``. Locking a package runs its backend, so the graph's build tools it
    needs are built first, through ``build_now``: bootstrapping in dependency order.
    """

    def __init__(
        self,
        project: Project,
        resolver: SourceResolver,
        lock: Lock,
        lock_step: LockStep,
        *,
        install_requirements: bool = False,
        from_source: bool = False,
        build_now: BuildNow | None = None,
        prebuilt: PrebuiltStep | None = None,
        environment: Mapping[str, str] | None = None,
        constrain: Callable[[list[Requirement]], list[Requirement]] = list,
    ) -> None:
        self.project = project
        self.resolver = resolver
        self.lock = lock
        self.lock_step = lock_step
        self.install_requirements = install_requirements
        self.from_source = from_source
        self.build_now = build_now
        self.prebuilt = prebuilt
        #: Narrows the requirements the graph grows by (the run's constraints, ``-c``).
        self.constrain = constrain
        self.environment: Mapping[str, str] = environment or this_environment()
        #: Build requirements the graph grew by (``from_source``), kept across loads.
        self.added: dict[str, Requirement] = {}
        self._wanted: dict[str, Requirement] = {}
        self._nodes: dict[str, PackageNode] = {}
        self._stack: list[str] = []
        self._loading: dict[str, PackageNode] = {}
        self._asked: dict[str, list[str]] = {}
        self._relocked: set[tuple[str, bool]] = set()
        self._folders = PatchFolders(project.patches_dir)

    def load(self, requirements: Sequence[Requirement]) -> list[PackageNode]:
        """Nodes in dependency order. Packages missing from the lock (or locked without what
        this run needs of them), or locked from another source, are locked via the lock step
        and set in the lock; the caller saves it."""
        self.resolver.check(requirements)  # refused direct references, before anything else
        seen: dict[str, Requirement] = {}
        for req in requirements:
            name: str = canonicalize_name(req.name)
            if name in seen and str(seen[name].specifier) != str(req.specifier):
                raise InputError(f"{name} is required twice: {seen[name]} and {req}")
            seen[name] = req
        self._wanted = {**{n: r for n, r in self.added.items() if n not in seen}, **seen}
        self._nodes, self._stack, self._asked, self._relocked = {}, [], {}, set()
        while pending := [name for name in self._wanted if name not in self._nodes]:
            for name in pending:
                self._node(name)
        for node in self._nodes.values():
            node.install_deps = tuple(
                sorted(
                    {
                        dep
                        for text in node.locked.runtime or ()
                        if applies(req := Requirement(text), self.environment)
                        and (dep := canonicalize_name(req.name)) in self._nodes
                    }
                    - {node.name}
                )
            )
        return _topological(self._nodes)

    # -- one package -------------------------------------------------------------------------

    def _node(self, name: str, *, runtime: bool = False) -> PackageNode:
        """Package ``name``, loaded (locked when it must be); with ``runtime``, its install
        requirements read too (it is a build tool of another package)."""
        node = self._nodes.get(name)
        if node is not None:
            if (
                runtime
                and node.locked.runtime is None
                and node.lock_error is None
                and not node.settings.prebuilt
            ):
                self._lock(node, self.lock.get(name), runtime=True)
            return node
        if name in self._stack:
            raise self._cycle(name)
        self._stack.append(name)
        try:
            node = self._load(name, runtime=runtime)
        finally:
            self._stack.pop()
            self._loading.pop(name, None)
        self._nodes[name] = node
        return node

    def _load(self, name: str, *, runtime: bool) -> PackageNode:
        settings = self.project.package_settings(name)
        settings_file = self.project.settings_file(name)
        if settings.prebuilt:
            return self._load_prebuilt(name, settings, settings_file)
        source = self.resolver.resolve(self._wanted[name], settings.source, settings_file)
        patches = find_patches(self.project.patches_dir, name, source.version, self._folders)
        patch_digests = patches_value(patches)
        node = PackageNode(
            name,
            source.version,
            settings,
            settings_file,
            source,
            patches,
            LockedBuildDeps([], []),
            patch_digests=patch_digests,
        )
        self._loading[name] = node
        locked = self.lock.get(name)
        if (
            locked is None
            or locked.source != self._source_key(node)
            or ((self.install_requirements or runtime) and locked.runtime is None)
        ):
            self._lock(node, locked, runtime=runtime)
        else:
            node.locked = locked
            split = self._split(locked.requires, name)
            node.deps = tuple(sorted(split.built))
            if not _pins_cover(locked, split):
                self._lock(node, locked, runtime=runtime)
        return node

    def _load_prebuilt(
        self, name: str, settings: PackageSettings, settings_file: Path
    ) -> PackageNode:
        """A package taken as its index wheel: nothing to build with, no patches."""
        if self.prebuilt is None:
            raise InputError(f"{name}: prebuilt = true is not supported here", file=settings_file)
        source, locked = self.prebuilt(name, self._wanted[name], self.lock.get(name), settings_file)
        patches = find_patches(self.project.patches_dir, name, source.version, self._folders)
        if patches:
            raise InputError(
                f"{name} is prebuilt (its wheel comes from the index), so its patches "
                f"({patches[0].parent.name}/) cannot apply: remove one or the other",
                file=settings_file,
            )
        locked = replace(locked, source=source.digest)
        if self.lock.get(name) != locked:
            self.lock.set(name, locked)
        return PackageNode(name, source.version, settings, settings_file, source, [], locked)

    def _lock(self, node: PackageNode, previous: LockedBuildDeps | None, *, runtime: bool) -> None:
        """Lock ``node`` anew (at most once per load for what is asked of it: a step may not
        read install requirements when asked to)."""
        runtime = self.install_requirements or runtime
        if (node.name, runtime) in self._relocked:
            return
        self._relocked.add((node.name, runtime))
        context = _Context(self, node.name, runtime)
        try:
            locked = self.lock_step(
                node.name, previous, node.source, node.patches, node.settings, context
            )
        except BuildFailed as failed:
            node.locked, node.lock_error, node.deps = LockedBuildDeps([], []), str(failed), ()
            return
        node.locked = replace(locked, source=self._source_key(node))
        node.lock_error = None
        self.lock.set(node.name, node.locked)
        node.deps = self._build_closure(node)

    def _source_key(self, node: PackageNode) -> str:
        """What build requirements are read from: the source as patched."""
        return digest_value(
            {"source": node.source.digest, "patches": digest_value(node.patch_digests)}
        )

    # -- build requirements ------------------------------------------------------------------

    def _build_closure(self, node: PackageNode) -> tuple[str, ...]:
        """The graph's packages in ``node``'s build environment."""
        return tuple(sorted(self._split(node.locked.requires, node.name).built))

    def _split(self, requirements: Sequence[str], requester: str) -> _Split:
        """``requirements`` of ``requester``'s build, split between the graph (with the
        install requirements of what it takes from there, recursively) and the index."""
        split = _Split({}, [], [])
        queue = deque((text, frozenset[str](), False) for text in requirements)
        while queue:
            text, extras, inherited = queue.popleft()
            req = _parsed(text)
            if not applies(req, self.environment, extras):
                continue
            dep = canonicalize_name(req.name)
            if dep == requester or not self._in_graph(dep, req):
                split.index.append(_unmarked(text))
                if inherited:
                    split.inherited.append(_unmarked(text))
                continue
            node = self._node(dep, runtime=True)
            if not req.specifier.contains(node.version, prereleases=True):
                raise InputError(
                    f"{requester} needs {req} to build, but {dep} {node.version} is chosen "
                    f"({self.project.describe_source(dep)}); pin {dep} in the requirements to "
                    "a version that suits both",
                    file=self.project.root,
                )
            known = split.built.get(dep)
            if known is not None and req.extras <= known:
                continue
            asked = split.built[dep] = (known or set()) | req.extras
            queue.extend((text, frozenset(asked), True) for text in node.locked.runtime or ())
        return split

    def _in_graph(self, name: str, req: Requirement) -> bool:
        """Whether ``name`` is built in this graph (from source, it joins it: built, or
        taken from the index when ``prebuilt``)."""
        if name in self._wanted:
            return True
        if not self.from_source:
            return False
        (wanted,) = self.constrain([Requirement(f"{name}{req.specifier}")])
        kept = self.lock.dependencies.get(name)
        if kept and wanted.specifier.contains(kept, prereleases=True):
            wanted = Requirement(f"{name}=={kept}")
        self.added[name] = self._wanted[name] = wanted
        return True

    def provide(self, requester: str, requirements: Sequence[str]) -> Provided:
        """``requester``'s build requirements as its build environment gets them: the graph's
        build tools (and their install requirements) built now, the rest for the index."""
        self._asked[requester] = list(requirements)
        split = self._split(requirements, requester)
        built, index = split.built, split.index
        for dep in sorted(built):
            failed = self._nodes[dep].lock_error
            if failed is not None:
                raise BuildFailed(
                    f"{requester}: its build requirement {dep} cannot be locked: {failed}"
                )
        if not built:
            return Provided(index, [])
        if self.build_now is None:
            raise BuildFailed(
                f"{requester}: its build requirements {', '.join(sorted(built))} must be built "
                "first, which this run does not do"
            )
        wheels = self.build_now(self._with_deps(built))
        return Provided(index, [wheel for dep in sorted(built) for wheel in wheels[dep]])

    def _with_deps(self, names: Iterable[str]) -> list[PackageNode]:
        """The nodes ``names`` and everything they build with, in dependency order."""
        found: dict[str, PackageNode] = {}
        todo = list(names)
        while todo:
            name = todo.pop()
            if name not in found:
                found[name] = self._nodes[name]
                todo.extend(found[name].deps)
        return _topological(found)

    def _cycle(self, name: str) -> InputError:
        """The cycle closing at ``name``, each step named with the requirement making it."""
        names = [*self._stack[self._stack.index(name) :], name]
        asked = Lock(
            {
                n: LockedBuildDeps(self._asked.get(n) or self._loading[n].locked.requires, [])
                for n in names[:-1]
            }
        )
        plain = InputError(f"dependency cycle: {' -> '.join(names)}")
        return explain_cycle(plain, asked, self.project.describe_source)


@dataclass(frozen=True)
class _Split:
    """Build requirements split between the graph and the index."""

    #: The graph's packages in the environment, with the extras asked of them.
    built: dict[str, set[str]]
    #: Requirements for the index (markers evaluated away)...
    index: list[str]
    #: ... of which these come from the install requirements of the graph's packages.
    inherited: list[str]


@dataclass(frozen=True)
class _Context:
    """The :class:`LockContext` of one package's lock step."""

    loader: GraphLoader
    name: str
    install_requirements: bool

    def provide(self, requirements: Sequence[str]) -> Provided:
        return self.loader.provide(self.name, requirements)


def _pins_cover(locked: LockedBuildDeps, split: _Split) -> bool:
    """Whether the lock's index wheels still hold the install requirements of the graph's
    build tools that are not built here (they move with the tool's version)."""
    pins = {canonicalize_name(w.name): w.version for w in locked.wheels}
    for text in split.inherited:
        req = _parsed(text)
        version = pins.get(canonicalize_name(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            return False
    return True


@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> Requirement:
    """A requirement read once per process (graphs ask for the same ones many times); not
    to be changed by callers."""
    return Requirement(text)


@functools.lru_cache(maxsize=4096)
def _unmarked(text: str) -> str:
    """``text`` without its marker (evaluated already), for the index."""
    req = Requirement(text)
    req.marker = None
    return str(req)


def _topological(nodes: Mapping[str, PackageNode]) -> list[PackageNode]:
    order: list[PackageNode] = []
    state: dict[str, int] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join((*path[path.index(name) :], name))
            raise InputError(f"dependency cycle: {cycle}")
        state[name] = 1
        for dep in nodes[name].deps:
            if dep in nodes:
                visit(dep, (*path, name))
        state[name] = 2
        order.append(nodes[name])

    for name in sorted(nodes):
        visit(name, ())
    return order
