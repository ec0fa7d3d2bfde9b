"""The package graph: each requirement's source, patches and locked build requirements, in
dependency order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from buildprint.errors import BuildFailed, InputError
from buildprint.inputs.patches import PatchFolders, find_patches, patches_value
from buildprint.project.project import Project
from buildprint.project.settings import PackageSettings
from buildprint.resolve.lockfile import Lock, LockedBuildDeps
from buildprint.resolve.sources import ResolvedSource, SourceResolver
from buildprint.signature.canonical import digest_value
from buildprint.signature.compose import reduce_version

__all__ = ["HookVersion", "LockStep", "PackageNode", "PackageView", "load_graph"]


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

    @property
    def view(self) -> PackageView:
        return PackageView(self.name, HookVersion(self.version), self.settings)


#: Locks one package's build requirements: (name, its previous lock entry or None, source,
#: patches, settings). The previous pins are kept where they still fit: no drift.
LockStep = Callable[
    [str, LockedBuildDeps | None, ResolvedSource, list[Path], PackageSettings], LockedBuildDeps
]


def load_graph(
    project: Project,
    resolver: SourceResolver,
    lock: Lock,
    requirements: Sequence[Requirement],
    lock_step: LockStep,
    *,
    install_requirements: bool = False,
) -> list[PackageNode]:
    """Nodes in dependency order. Packages missing from ``lock`` (or, with
    ``install_requirements``, locked without them), or locked from another source, are locked
    via ``lock_step`` (which may build an environment) and set in ``lock``; the caller saves
    it."""
    resolver.check(requirements)  # refused direct references, before anything is resolved
    seen: dict[str, Requirement] = {}
    for req in requirements:
        name: str = canonicalize_name(req.name)
        if name in seen and str(seen[name].specifier) != str(req.specifier):
            raise InputError(f"{name} is required twice: {seen[name]} and {req}")
        seen[name] = req
    nodes: dict[str, PackageNode] = {}
    folders = PatchFolders(project.patches_dir)
    for name, req in seen.items():
        settings = project.package_settings(name)
        settings_file = project.settings_file(name)
        source = resolver.resolve(req, settings.source, settings_file)
        patches = find_patches(project.patches_dir, name, source.version, folders)
        patch_digests = patches_value(patches)
        locked = lock.get(name)
        source_key = _lock_source_key(source, digest_value(patch_digests))
        lock_error = None
        if (
            locked is None
            or locked.source != source_key
            or (install_requirements and locked.runtime is None)
        ):
            try:
                locked = replace(
                    lock_step(name, locked, source, patches, settings), source=source_key
                )
                lock.set(name, locked)
            except BuildFailed as failed:
                locked, lock_error = LockedBuildDeps([], []), str(failed)
        nodes[name] = PackageNode(
            name,
            source.version,
            settings,
            settings_file,
            source,
            patches,
            locked,
            patch_digests=patch_digests,
            lock_error=lock_error,
        )
    for node in nodes.values():
        node.deps = tuple(
            sorted(
                {canonicalize_name(Requirement(r).name) for r in node.locked.requires}
                & set(nodes) - {node.name}
            )
        )
    return _topological(nodes)


def _lock_source_key(source: ResolvedSource, patches: str) -> str:
    """What build requirements are read from: the source as patched."""
    return digest_value({"source": source.digest, "patches": patches})


def _topological(nodes: dict[str, PackageNode]) -> list[PackageNode]:
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
            visit(dep, (*path, name))
        state[name] = 2
        order.append(nodes[name])

    for name in sorted(nodes):
        visit(name, ())
    return order
