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

__all__ = ["Decision", "PlanEntry", "pending"]


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

    @property
    def signature(self) -> str | None:
        return self.manifest.signature if self.manifest else None

    def result(self) -> DepResult:
        artifact = self.record.artifacts[0].content_digest if self.record else None
        return DepResult(self.node.version, self.signature, artifact)

    def entry(self) -> PlanEntry:
        return PlanEntry(
            self.node.name,
            self.node.version,
            self.signature,
            self.action,
            tuple(changed_paths(self.changes)),
            self.reason,
            self.pending_on,
            self.closest,
        )


def pending(node: PackageNode, names: list[str] | tuple[str, ...]) -> Decision:
    """``node`` waits for the builds of ``names``."""
    return Decision(
        node, "pending", pending_on=tuple(names), reason="waits for " + ", ".join(names)
    )
