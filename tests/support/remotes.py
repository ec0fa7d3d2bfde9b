"""A remote lookup over a second local store: the protocol a RemoteCache offers the planner,
for tests of planning and scheduling without a server."""

from __future__ import annotations

from collections.abc import Iterable

from buildprint.store.local import LocalStore
from buildprint.store.record import ActionRecord

__all__ = ["StoreAsRemote"]


class StoreAsRemote:
    """Answers lookups from ``store`` and remembers what was asked, call by call."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        self.asked: list[list[str]] = []

    def lookup(self, signature: str) -> ActionRecord | None:
        self.asked.append([signature])
        return self.store.get_record(signature)

    def lookup_many(self, signatures: Iterable[str]) -> dict[str, ActionRecord]:
        wanted = list(signatures)
        self.asked.append(wanted)
        return self.store.get_records(wanted)
