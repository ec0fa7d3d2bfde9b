"""Decisions: for each package, in dependency order, its manifest, then the local store and
the remotes, and ``reuse``, ``fetch``, ``build`` or ``pending``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from packaging.tags import Tag
from packaging.utils import canonicalize_name, parse_wheel_filename

from buildprint.errors import InputError
from buildprint.inputs.discovered import MISSING, SystemFiles, ignored_by, variant_key
from buildprint.plan.decision import Decision, pending
from buildprint.plan.graph import PackageNode
from buildprint.plan.inputs import DepResult, InputCollector
from buildprint.signature.compose import PendingDependencies
from buildprint.signature.diff import ABSENT, Change, diff
from buildprint.signature.manifest import DISCOVERED, Manifest
from buildprint.states import Action
from buildprint.store.index import IndexEntry
from buildprint.store.local import LocalStore
from buildprint.store.record import ActionRecord

__all__ = ["Explanation", "Found", "Planner", "RemoteLookup"]


class RemoteLookup(Protocol):
    def lookup(self, signature: str) -> ActionRecord | None: ...

    def lookup_many(self, signatures: Iterable[str]) -> dict[str, ActionRecord]: ...


@dataclass(frozen=True)
class Explanation:
    """``why NAME``: the current manifest against the closest stored build."""

    decision: Decision
    closest: Manifest | None
    changes: tuple[Change, ...] = ()


@dataclass(frozen=True)
class Found:
    """What :meth:`Planner.find` found: a valid build (and whether it is local), or the
    stored build that is no longer valid here and how its system files moved."""

    action: Action = "build"
    record: ActionRecord | None = None
    reason: str = ""
    stale: ActionRecord | None = None
    moved: list[Change] = field(default_factory=list)


class Planner:
    """Computes decisions; the builder calls :meth:`decide` again as dependencies finish."""

    def __init__(
        self,
        collector: InputCollector,
        store: LocalStore,
        *,
        remotes: RemoteLookup | None = None,
        force: Iterable[str] = (),
        reuse_by_version: Iterable[str] = (),
        tags: Callable[[], frozenset[Tag]] | None = None,
        system: SystemFiles | None = None,
    ) -> None:
        self.collector = collector
        self.store = store
        self.remotes = remotes
        self.force = {canonicalize_name(n) for n in force}
        self.reuse_by_version = {canonicalize_name(n) for n in reuse_by_version}
        #: The wheel tags the build interpreter installs: a wheel reused by version must
        #: carry one (None: any).
        self.tags = tags
        #: What the system files hold now, to check stored builds' discovered inputs against
        #: (None: not checked here, as on a coordinator whose builds run on a cluster).
        self.system = system
        #: Remote answers so far, by signature (None: no remote has it).
        self._remote_answers: dict[str, ActionRecord | None] = {}

    def manifest(self, node: PackageNode, deps: Mapping[str, DepResult]) -> Manifest:
        return self.collector.manifest(node, deps)

    def decide(
        self,
        node: PackageNode,
        deps: Mapping[str, DepResult],
        manifest: Manifest | None = None,
    ) -> Decision:
        """What to do for ``node`` given its dependencies' results (``manifest``: its
        manifest for them, when the caller composed it already)."""
        if node.lock_error is not None:
            first = node.lock_error.splitlines()[0]
            return Decision(
                node, "build", reason=f"its build requirements cannot be locked: {first}"
            )
        try:
            manifest = manifest or self.manifest(node, deps)
        except PendingDependencies as waiting:
            return pending(node, waiting.names)
        signature = manifest.signature
        forced = node.name in self.force
        found = Found()
        if not forced:
            found = self.find(node, signature, remotes=True)
            if found.record is not None:
                return Decision(node, found.action, manifest, found.record, reason=found.reason)
        stale, moved = found.stale, found.moved
        closest = self.closest(node, manifest)
        changes = moved + (diff(closest[1], manifest, self.lookup_manifest) if closest else [])
        if not forced and (node.settings.reuse == "version" or node.name in self.reuse_by_version):
            same_version = next(
                (r for r in self.store.find(node.name, node.version) if self._installable(r)),
                None,
            )
            if same_version is not None:
                old = Manifest.from_json(
                    same_version.manifest, source=f"store:{same_version.signature}"
                )
                return Decision(
                    node,
                    "reuse",
                    manifest,
                    same_version,
                    tuple(diff(old, manifest, self.lookup_manifest)),
                    reason="reuse by version: an existing wheel of the same version",
                    closest=same_version.signature,
                )
        if forced:
            reason = "forced"
        elif stale is not None:
            reason = found.reason
        else:
            reason = "inputs changed" if changes else "never built"
        return Decision(
            node,
            "build",
            manifest,
            changes=tuple(changes),
            reason=reason,
            closest=stale.signature if stale else closest[0].signature if closest else None,
            stale=stale,
        )

    def moved(self, node: PackageNode, record: ActionRecord) -> list[Change]:
        """How the system files ``record``'s build read differ here now (empty: it holds, or
        they are not checked: no record of them, ``discovered = false``, or no checks on
        this machine)."""
        policy = node.settings.signature.policy()
        recorded = record.discovered
        if self.system is None or not policy.discovered or not recorded:
            return []
        return [
            Change(
                f"{DISCOVERED}/{path}",
                ABSENT if old == MISSING else old,
                ABSENT if new == MISSING else new,
            )
            for path, old, new in self.system.changed(recorded, policy.discovered_ignore)
        ]

    def variant(self, node: PackageNode, record: ActionRecord) -> str:
        """The key a build of ``record``'s signature stores under when ``record``'s system
        files hold other content here (see :func:`variant_key`)."""
        assert self.system is not None
        ignore = node.settings.signature.policy().discovered_ignore
        paths = [p for p in record.discovered or {} if not ignored_by(p, ignore)]
        return variant_key(record.manifest_signature, paths, self.system)

    def find(self, node: PackageNode, signature: str, *, remotes: bool) -> Found:
        """The stored build of ``signature`` that is valid here: the one first stored under
        it while the system files it read hold, else the variant built against what they
        hold now; locally first, then (``remotes``) on the remotes."""
        local = self.store.get_record(signature)
        remote = None
        if local is None and remotes and self.remotes is not None:
            remote = self._remote_record(signature)
        primary = local or remote
        if primary is None:
            return Found()
        moved = self.moved(node, primary)
        if not moved:
            if primary is local:
                return Found("reuse", primary, reason="same signature in the local store")
            return Found("fetch", primary, reason="same signature in a remote cache")
        key = self.variant(node, primary)
        candidates: list[tuple[Action, ActionRecord | None]] = [
            ("reuse", self.store.get_record(key))
        ]
        if remotes and self.remotes is not None:
            candidates.append(("fetch", self._remote_record(key)))
            if local is not None:  # the remote's first build may be of what is here now
                candidates.append(("fetch", self._remote_record(signature)))
        for action, record in candidates:
            if (
                record is not None
                and record.manifest_signature == signature
                and not self.moved(node, record)
            ):
                where = "the local store" if action == "reuse" else "a remote cache"
                return Found(action, record, reason=f"same signature and system files in {where}")
        paths = ", ".join(c.path[len(DISCOVERED) + 1 :] for c in moved)
        if primary is local:
            return Found(
                stale=primary, moved=moved, reason=f"system files it read changed: {paths}"
            )
        why = f"a remote cache has it, built against other system files: {paths}"
        return Found(stale=primary, moved=moved, reason=why)

    def _installable(self, record: ActionRecord) -> bool:
        """Whether every wheel of ``record`` installs on the build interpreter."""
        if self.tags is None:
            return True
        tags = self.tags()
        return all(
            not tags.isdisjoint(parse_wheel_filename(a.filename)[3]) for a in record.artifacts
        )

    def lookup_manifest(self, signature: str) -> Manifest | None:
        """The stored manifest of ``signature`` (``None``: not stored, or unreadable)."""
        record = self.store.get_record(signature)
        if record is None:
            return None
        try:
            return Manifest.from_json(record.manifest, source=f"store:{signature}")
        except InputError:
            return None

    def closest(
        self, node: PackageNode, manifest: Manifest
    ) -> tuple[ActionRecord, Manifest] | None:
        """The stored build most like ``manifest``: same toolchain first, then same version,
        then the most equal components (Conan's ``graph explain`` order)."""
        entries = self.store.index_entries(node.name)
        if not entries:
            return None
        mine = {name: c.digest for name, c in manifest.components.items()}

        def rank(entry: IndexEntry) -> tuple[int, int, int]:
            same_toolchain = entry.components.get("toolchain") == mine.get("toolchain")
            same_version = entry.version == node.version
            equal = sum(1 for k, v in mine.items() if entry.components.get(k) == v)
            return (int(same_toolchain), int(same_version), equal)

        for entry in sorted(entries, key=rank, reverse=True):
            record = self.store.get_record(entry.signature)
            if record is None:
                continue
            try:
                return record, Manifest.from_json(
                    record.manifest, source=f"store:{record.signature}"
                )
            except InputError:
                continue
        return None

    def _remote_record(self, signature: str) -> ActionRecord | None:
        assert self.remotes is not None
        if signature not in self._remote_answers:
            self._remote_answers[signature] = self.remotes.lookup(signature)
        return self._remote_answers[signature]

    def plan(self, nodes: Sequence[PackageNode]) -> list[Decision]:
        """Decisions for all nodes, assuming nothing is built during the plan.

        Nodes are decided in waves (those whose dependencies are all decided), and each
        wave's signatures missing from the local store are looked up on the remotes at once
        (``lookup_many``, concurrent), not one request after another.
        """
        results: dict[str, DepResult] = {}
        decisions: dict[str, Decision] = {}
        while len(decisions) < len(nodes):
            wave = [
                n for n in nodes if n.name not in decisions and all(d in decisions for d in n.deps)
            ]
            if not wave:  # a cycle cannot come from the lock, but never loop forever
                wave = [n for n in nodes if n.name not in decisions]
            manifests: dict[str, Manifest] = {}
            for node in wave:
                if node.lock_error is None and all(d in results for d in node.deps):
                    with contextlib.suppress(PendingDependencies):
                        manifests[node.name] = self.manifest(node, _known(node, results))
            self._look_up_remotely(manifests)
            for node in wave:
                missing = [d for d in node.deps if d not in results]
                if missing:
                    decision = pending(node, missing)
                else:
                    decision = self.decide(node, _known(node, results), manifests.get(node.name))
                decisions[node.name] = decision
                if decision.action in ("reuse", "fetch"):
                    results[node.name] = decision.result()
                elif decision.action == "build" and decision.manifest is not None:
                    # Known signature, unknown artifact: dependents in artifact mode are pending.
                    results[node.name] = DepResult(node.version, decision.signature, None)
        return [decisions[n.name] for n in nodes]

    def _look_up_remotely(self, manifests: Mapping[str, Manifest]) -> None:
        """Ask the remotes at once for the signatures the local store lacks."""
        if self.remotes is None:
            return
        wanted = [
            m.signature
            for name, m in manifests.items()
            if name not in self.force
            and m.signature not in self._remote_answers
            and not self.store.has_record(m.signature)
        ]
        if wanted:
            found = self.remotes.lookup_many(wanted)
            for signature in wanted:
                self._remote_answers[signature] = found.get(signature)

    def explain(self, name: str, decisions: Sequence[Decision]) -> Explanation:
        """Compare what ``name`` would get now with the closest stored build. A package
        still waiting on a dependency's build is compared by a provisional manifest, in
        which each such dependency contributes ``(after NAME is built)``."""
        by_name = {d.node.name: d for d in decisions}
        decision = by_name[name]
        if decision.stale is not None:  # same signature; the system files it read moved
            stale = Manifest.from_json(
                decision.stale.manifest, source=f"store:{decision.stale.signature}"
            )
            return Explanation(decision, stale, decision.changes)
        if (
            decision.record is not None
            and decision.action in ("reuse", "fetch")
            and not decision.changes
        ):
            closest: Manifest | None = Manifest.from_json(decision.record.manifest)
            current = decision.manifest
        else:
            current = decision.manifest or self._provisional_manifest(name, decisions)
            candidate = self.closest(decision.node, current) if current else None
            closest = candidate[1] if candidate else None
        if closest is None or current is None:
            return Explanation(decision, closest)
        changes = diff(closest, current, self.lookup_manifest)
        return Explanation(decision, closest, tuple(changes))

    def _provisional_manifest(self, name: str, decisions: Sequence[Decision]) -> Manifest | None:
        results: dict[str, DepResult] = {}
        for decision in decisions:  # dependency order
            node = decision.node
            manifest = decision.manifest
            if manifest is None:
                known = _known(node, results)
                if len(known) < len(node.deps):
                    return None
                manifest = self.manifest(node, known)
            artifact = (
                decision.record.artifacts[0].content_digest
                if decision.record is not None
                else f"(after {node.name} is built)"
            )
            results[node.name] = DepResult(node.version, manifest.signature, artifact)
            if node.name == name:
                return manifest
        return None


def _known(node: PackageNode, results: Mapping[str, DepResult]) -> dict[str, DepResult]:
    return {d: results[d] for d in node.deps if d in results}
