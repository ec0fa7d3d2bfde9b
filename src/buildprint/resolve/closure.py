"""``--with-deps``: the install dependencies of the requested packages, recursively, with
the versions chosen for the ones nobody pinned kept in the lock (``[dependencies]``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from buildprint.errors import InputError
from buildprint.resolve.lockfile import Lock, LockedBuildDeps
from buildprint.resolve.markers import applies, this_environment

__all__ = ["Locked", "with_dependencies"]


class Locked(Protocol):
    """A graph node as the closure sees it: its name, version and lock entry."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def locked(self) -> LockedBuildDeps: ...


N = TypeVar("N", bound=Locked)


def with_dependencies(
    requirements: list[Requirement],
    nodes: list[N],
    lock: Lock,
    load: Callable[[list[Requirement], set[str]], list[N]],
    *,
    origin: Path,
    environment: Mapping[str, str] | None = None,
) -> tuple[list[Requirement], list[N]]:
    """Add every install dependency, recursively, to the graph. ``load(requirements, new)``
    loads the graph again with the ``new`` names added. A dependency nobody pinned gets the
    newest version its requirers allow, once: that choice is locked (``lock.dependencies``)
    until ``lock --upgrade``. Requirers that disagree are an error naming them all (pin the
    dependency to settle it), about ``origin`` (the project). Markers are evaluated in
    ``environment`` (the build interpreter's; default: this one's)."""
    environment = environment or this_environment()
    extras: dict[str, set[str]] = {}
    for requirement in requirements:
        extras.setdefault(canonicalize_name(requirement.name), set()).update(requirement.extras)
    requested = {canonicalize_name(r.name) for r in requirements}
    while True:
        by_name = {node.name for node in nodes}
        new: dict[str, SpecifierSet] = {}
        grew = False
        for _, requirement in _install_requirements(nodes, extras, environment):
            name: str = canonicalize_name(requirement.name)
            if not requirement.extras <= extras.setdefault(name, set()):
                extras[name] |= requirement.extras
                grew = True
            if name not in by_name:
                new[name] = new.get(name, SpecifierSet()) & requirement.specifier
        if not new and not grew:
            break
        for name, specifier in sorted(new.items()):
            locked = lock.dependencies.get(name)
            version = locked if locked and specifier.contains(locked, True) else None
            pin = f"=={version}" if version else str(specifier)
            requirements.append(Requirement(f"{name}{pin}"))
        nodes = load(requirements, set(new))
    chosen = {node.name: node.version for node in nodes}
    conflicts = [
        f"{requirer} requires {requirement} but {chosen[name]} is chosen"
        for requirer, requirement in _install_requirements(nodes, extras, environment)
        if not requirement.specifier.contains(
            chosen[name := canonicalize_name(requirement.name)], True
        )
    ]
    if conflicts:
        raise InputError(
            "install dependencies disagree: " + "; ".join(conflicts) + ". Pin the "
            "dependency in the requirements to a version that suits all of them",
            file=origin,
        )
    lock.dependencies = {n: v for n, v in sorted(chosen.items()) if n not in requested}
    return requirements, nodes


def _install_requirements(
    nodes: Sequence[Locked], extras: Mapping[str, set[str]], environment: Mapping[str, str]
) -> list[tuple[str, Requirement]]:
    """(requirer, requirement) for every install requirement that applies: its marker holds
    in ``environment`` with no extra or with one the requirer was asked for."""
    found = []
    for node in nodes:
        for text in node.locked.runtime or ():
            requirement = Requirement(text)
            if applies(requirement, environment, extras.get(node.name, ())):
                found.append((node.name, requirement))
    return found
