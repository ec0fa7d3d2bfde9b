"""What happened to one package in a build run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from buildprint.plan.decision import Decision
from buildprint.plan.inputs import DepResult
from buildprint.states import Done
from buildprint.store.record import ActionRecord

__all__ = ["Outcome"]


@dataclass
class Outcome:
    """What happened to one package in a build run (its plan's :class:`Decision` is kept as
    it was made; what the run found out is here)."""

    decision: Decision
    done: Done
    record: ActionRecord | None = None
    error: str | None = None
    #: Why, when the run did other than decided (a failed fetch built instead).
    note: str | None = None
    seconds: float = 0.0
    log: Path | None = None
    signature_seconds: float = 0.0
    #: The cluster worker that built it (None: this machine, or not built).
    worker: str | None = None
    #: How long its build took there (the rest of :attr:`seconds` went to moving it).
    worker_seconds: float | None = None
    #: How long it waited for a free worker before it was submitted (the cluster was full).
    queued_seconds: float | None = None

    @property
    def reason(self) -> str:
        """Why it was reused, fetched or built: the run's note, else the decision's reason."""
        return self.note or self.decision.reason

    def result(self) -> DepResult | None:
        if self.record is None:
            return None
        return DepResult(
            self.decision.node.version,
            self.record.manifest_signature,
            self.record.artifacts[0].content_digest,
            self.record.signature,
        )
