"""What the plan says about one package: the decision (with its manifest and the record it
found) and the line ``plan`` prints for it."""

from __future__ import annotations

from dataclasses import dataclass

from buildprint.plan.graph import PackageNode
from buildprint.plan.inputs import DepResult
from buildprint.signature.diff import Change, changed_paths
from buildprint.signature.manifest import Manifest
from buildprint.states import Action
from buildprint.store.record import ActionRecord

__all__ = ["Decision", "PlanEntry", "edges", "pending"]


@dataclass(frozen=True)
class PlanEntry:
    """One package's line of a plan, as ``plan`` prints it (and a plan snapshot keeps it)."""

    name: str
    version: str
    signature: str | None
    action: Action
    changed: tuple[str, ...] = ()
    reason: str = ""
    pending_on: tuple[str, ...] = ()
    closest: str | None = None
    #: The package's graph edges: (dependency, kind ``build`` or ``install``, mode). A
    #: build edge puts the dependency's wheel in its build environment (its mode: how the
    #: dependency enters the signature); an install edge is a requirement of the wheel.
    edges: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class Decision:
    """What to do about one package, and why."""

    node: PackageNode
    action: Action
    manifest: Manifest | None = None
    record: ActionRecord | None = None
    changes: tuple[Change, ...] = ()
    reason: str = ""
    pending_on: tuple[str, ...] = ()
    closest: str | None = None  # signature of the stored build compared against
    #: The build stored under this signature whose discovered inputs no longer hold (a build
    #: then stores as its variant).
    stale: ActionRecord | None = None

    @property
    def signature(self) -> str | None:
        return self.manifest.signature if self.manifest else None

    def result(self) -> DepResult:
        if self.record is None:
            return DepResult(self.node.version, self.signature, None)
        artifact = self.record.artifacts[0].content_digest
        return DepResult(self.node.version, self.signature, artifact, self.record.signature)

    def entry(self) -> PlanEntry:
        return PlanEntry(
            self.node.name,
            self.node.version,
            self.signature,
            self.action,
            tuple(changed_paths(self.changes)),
            # How the source was chosen, when the plan has something to say about it.
            "; ".join(filter(None, (self.reason, getattr(self.node.source, "note", None)))),
            self.pending_on,
            self.closest,
            edges(self.node),
        )


def edges(node: PackageNode) -> tuple[tuple[str, str, str], ...]:
    """``node``'s edges as a :class:`PlanEntry` keeps them."""
    policy = node.settings.signature.policy()
    build = [(dep, "build", policy.dep_mode(dep)) for dep in node.deps]
    return (*build, *((dep, "install", "-") for dep in node.install_deps))


def pending(node: PackageNode, names: list[str] | tuple[str, ...]) -> Decision:
    """``node`` waits for the builds of ``names``."""
    return Decision(
        node, "pending", pending_on=tuple(names), reason="waits for " + ", ".join(names)
    )
